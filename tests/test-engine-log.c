/* SPDX-License-Identifier: MIT */
/* The engines' log callback (precopy/log.h) and configs built against the
 * version 1 headers: a migration tells the callback what it does, a
 * failure arrives as the same text as *_strerror(), levels filter, and a
 * version 1 struct (which ends before `log`) is read only up to its end. */
#include <stdio.h>
#include <stdlib.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_log, .fini = fini);

struct logbook {
	int n[4];
	char last[4][256];
	char all[8192];
};

static void logfn(void *ctx, int level, const char *msg)
{
	struct logbook *b = ctx;
	size_t len = strlen(b->all);

	cr_assert(level >= PRECOPY_LOG_ERROR && level <= PRECOPY_LOG_DEBUG, "level %d", level);
	cr_assert_lt(strlen(msg), 256u);
	cr_assert(!strchr(msg, '\n'), "a newline in \"%s\"", msg);
	b->n[level]++;
	snprintf(b->last[level], sizeof(b->last[level]), "%s", msg);
	snprintf(b->all + len, sizeof(b->all) - len, "%s: %s\n", precopy_log_level_name(level), msg);
}

Test(engine_log, a_migration_tells_the_callback)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct logbook src, dst;
	struct run_result rr;

	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	h_setup(2, flags, 1);
	H.cfg.log = logfn;
	H.cfg.log_ctx = &src;
	H.cfg.log_level = PRECOPY_LOG_DEBUG;
	H.dcfgx.log = logfn;
	H.dcfgx.log_ctx = &dst;
	H.dcfgx.log_level = PRECOPY_LOG_INFO;
	h_engines();
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	cr_log_info("source:\n%s", src.all);
	cr_assert_eq(src.n[PRECOPY_LOG_ERROR], 0);
	cr_assert_geq(src.n[PRECOPY_LOG_INFO], 3, "start, a decision, switchover, complete");
	cr_assert(strstr(src.all, "info: start: 2 devices"), "%s", src.all);
	cr_assert(strstr(src.all, "info: iteration 1: "), "%s", src.all);
	cr_assert(strstr(src.all, "info: switchover: "), "%s", src.all);
	cr_assert(strstr(src.all, "info: complete: downtime "), "%s", src.all);
	cr_assert(strstr(src.all, "debug: device 10 (fake): RUNNING -> PRE_COPY"), "%s", src.all);
	cr_assert_eq(dst.n[PRECOPY_LOG_DEBUG], 0, "the destination asked for info at most");
	cr_assert(strstr(dst.all, "info: switchover-ack sent"), "%s", dst.all);
	cr_assert(strstr(dst.all, "info: complete: 2 devices"), "%s", dst.all);
}

Test(engine_log, a_failure_is_logged_as_strerror_says)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct logbook src;
	struct run_result rr;

	memset(&src, 0, sizeof(src));
	for (int i = 0; i < 1; i++)
		h_stop_copy[i] = 1u << 20;
	h_stop_copy_set = 1;
	h_setup(1, flags, 1);
	h_stop_copy_set = 0;
	H.cfg.log = logfn;
	H.cfg.log_ctx = &src;
	H.cfg.log_level = PRECOPY_LOG_ERROR;
	H.cfg.policy.downtime_limit_ns = 60ull * 1000000000u;
	h_engines();
	H.threaded = 1;
	cr_assert_eq(precopy_fake_vfio_fail_read(H.sdev[0], EIO, 4096), 0);
	cr_assert_eq(run_migration(200, &rr), -EIO);
	cr_assert_eq(src.n[PRECOPY_LOG_ERROR], 1, "%s", src.all);
	cr_assert_str_eq(src.last[PRECOPY_LOG_ERROR], precopy_engine_strerror(H.src));
	cr_assert_eq(src.n[PRECOPY_LOG_INFO] + src.n[PRECOPY_LOG_DEBUG] + src.n[PRECOPY_LOG_WARNING], 0,
		     "errors only: %s", src.all);
}

/* A caller built against the version 1 headers passes a struct that ends
 * where `log` begins: copied into exactly that many heap bytes, the
 * engines must read nothing past it (AddressSanitizer would say). */
Test(engine_log, version_1_configs_still_work)
{
	uint64_t flags[MAXDEV] = { ALLF };
	size_t n1 = offsetof(struct precopy_engine_config, log), d1 = offsetof(struct precopy_dest_config, log);
	struct precopy_engine_config *c1;
	struct precopy_dest_config *dc1;
	struct run_result rr;
	char msg[256];
	int err;

	h_setup(1, flags, 1);
	c1 = malloc(n1);
	dc1 = malloc(d1);
	cr_assert(c1 && dc1);
	H.cfg.version = 1;
	H.dcfgx.version = 1;
	memcpy(c1, &H.cfg, n1);
	memcpy(dc1, &H.dcfgx, d1);
	cr_assert_eq(precopy_engine_config_check(c1, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(precopy_dest_config_check(dc1, msg, sizeof(msg)), 0, "%s", msg);
	H.src = precopy_engine_new(c1, &err);
	cr_assert_not_null(H.src, "engine_new: %d", err);
	H.dst = precopy_dest_new(dc1, &err);
	cr_assert_not_null(H.dst, "dest_new: %d", err);
	free(c1);
	free(dc1);
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(ram_equal());

	H.cfg.version = PRECOPY_ENGINE_CONFIG_VERSION + 1;
	cr_assert_eq(precopy_engine_config_check(&H.cfg, msg, sizeof(msg)), -EINVAL);
	char want[64];
	snprintf(want, sizeof(want), "this library takes 1 to %u", PRECOPY_ENGINE_CONFIG_VERSION);
	cr_assert(strstr(msg, want), "%s", msg);
	H.cfg.version = PRECOPY_ENGINE_CONFIG_VERSION;
	H.cfg.log_level = 4;
	cr_assert_eq(precopy_engine_config_check(&H.cfg, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "log_level"), "%s", msg);
	cr_assert_str_eq(precopy_log_level_name(PRECOPY_LOG_WARNING), "warning");
	cr_assert_str_eq(precopy_log_level_name(9), "?");
}
