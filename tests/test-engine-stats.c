/* SPDX-License-Identifier: MIT */
/* precopy_engine_stats_json(): QEMU query-migrate's fields from the engine,
 * before, during and after a migration, and after a failure. */
#include <stdio.h>
#include <stdlib.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_stats, .fini = fini);

static char *json(void)
{
	static char buf[4096];
	int n = precopy_engine_stats_json(H.src, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_lt((size_t)n, sizeof(buf), "truncated");
	cr_assert_eq(precopy_engine_stats_json(H.src, NULL, 0), n, "the length needed, as snprintf");
	return buf;
}

/* The number after "key": in s (the first occurrence). */
static double num(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	cr_assert(p, "no %s in %s", key, s);
	return strtod(p + strlen(pat), NULL);
}

Test(engine_stats, query_migrate_fields)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_engine_stats st;
	struct run_result rr;
	const char *j;

	h_setup(2, flags, 1);
	h_engines();
	j = json();
	cr_assert(strstr(j, "\"status\":\"none\""), "%s", j);
	cr_assert(strstr(j, "\"error\":null"), "%s", j);
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(ram_equal());
	j = json();
	cr_log_info("%s", j);
	cr_assert(strstr(j, "\"status\":\"completed\""), "%s", j);
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_gt(st.ram_bytes_sent, 0);
	cr_assert_eq(num(j, "transferred"), (double)st.ram_bytes_sent);
	cr_assert_eq(num(j, "total"), (double)(SPAN_PAGES * PS), "the RAM log's span");
	cr_assert_eq(num(j, "remaining"), 0, "nothing dirty after the final pages");
	cr_assert_geq(num(j, "dirty-sync-count"), 2, "at least one pass and the final sync");
	cr_assert_eq(num(j, "dirty-sync-count"), (double)st.syncs);
	cr_assert_geq(num(j, "total-time"), num(j, "setup-time"));
	cr_assert_gt(num(j, "total-time"), 0);
	cr_assert_geq(num(j, "downtime"), 0);
	cr_assert_gt(st.device_bytes_sent, 0);
	cr_assert(strstr(j, "\"page-size\":4096"), "%s", j);
	cr_assert(strstr(j, "\"cpu-throttle-percentage\":"), "%s", j);
}

Test(engine_stats, a_failure_says_failed_and_why)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct run_result rr;
	const char *j;

	h_stop_copy[0] = 1u << 20;
	h_stop_copy_set = 1;
	h_setup(1, flags, 1);
	h_stop_copy_set = 0;
	H.cfg.policy.downtime_limit_ns = 60ull * 1000000000u;
	h_engines();
	H.threaded = 1;
	cr_assert_eq(precopy_fake_vfio_fail_read(H.sdev[0], EIO, 4096), 0);
	cr_assert_eq(run_migration(200, &rr), -EIO);
	j = json();
	cr_assert(strstr(j, "\"status\":\"failed\""), "%s", j);
	cr_assert(strstr(j, "\"error\":\"switchover: device 10 (fake): data read: Input/output error\""), "%s", j);
	cr_assert(strstr(j, "\"downtime\":null"), "%s", j);
}

/* The status calls added with the data-path work refuse bad arguments with
 * the exact -errno their headers name. */
Test(engine_stats, bad_arguments_exact_errno)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct precopy_dest_stats ds;
	struct precopy_dest_backend_info bi;
	struct precopy_dest_dev_info di;
	char buf[64];

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_stats_json(NULL, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(precopy_engine_stats_json(H.src, NULL, 8), -EINVAL, "NULL buffer with a length");
	cr_assert_eq(precopy_dest_stats(NULL, &ds), -EINVAL);
	cr_assert_eq(precopy_dest_stats(H.dst, NULL), -EINVAL);
	cr_assert_eq(precopy_dest_stats(H.dst, &ds), 0);
	cr_assert_eq(ds.phase, PRECOPY_DEST_IDLE);
	cr_assert_eq(precopy_dest_backend_info(H.dst, 0, &bi), -ENOENT, "no back-end configured");
	cr_assert_eq(precopy_dest_backend_info(H.dst, 0, NULL), -EINVAL);
	cr_assert_eq(precopy_dest_backend_info(NULL, 0, &bi), -EINVAL);
	cr_assert_eq(precopy_dest_device_info(NULL, 0, &di), -EINVAL);
	cr_assert_eq(precopy_dest_device_info(H.dst, 1, &di), -ENOENT);
	cr_assert_eq(precopy_fake_vfio_fail_read(NULL, EIO, 0), -EINVAL);
	cr_assert_eq(precopy_fake_vfio_fail_read(H.sdev[0], -1, 0), -EINVAL);
	cr_assert_eq(precopy_fake_vfio_fail_read(H.sdev[0], 0, 0), 0, "0 clears the rule");
}
