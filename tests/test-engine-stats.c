/* SPDX-License-Identifier: MIT */
/* precopy_engine_stats_json(): QEMU query-migrate's fields from the engine,
 * before, during and after a migration, and after a failure. */
#include <stdio.h>
#include <stdlib.h>

#include "test-engine.h"
#include "lib/jsonv.h"

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

/* The schema (docs/stats-json.md) parsed strictly: every field, in order,
 * with its type, before a migration, during one, after it and after a
 * cancel; the per-device breakdown against precopy_engine_device_info(). */
static struct jv *parsed(void)
{
	char err[256];
	const char *j = json();
	struct jv *o = jv_parse(j, err, sizeof(err));

	cr_assert_not_null(o, "not JSON (%s): %s", err, j);
	cr_assert_eq(jv_check_stats(o, 0, err, sizeof(err)), 0, "%s: %s", err, j);
	return o;
}

static void check_devices(const struct jv *o)
{
	const struct jv *devs = jv_get(o, "devices");

	cr_assert_eq(devs->nkids, (size_t)H.ndev);
	for (int i = 0; i < H.ndev; i++) {
		const struct jv *d = &devs->kids[i];
		struct precopy_engine_dev_info di;

		cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)i, &di), 0);
		cr_expect_eq(jv_get(d, "id")->num, di.id);
		cr_expect_eq(jv_get(d, "transferred")->num, (double)di.bytes_sent);
		cr_expect_eq(jv_get(d, "pre-copy-sent")->num, (double)di.precopy_bytes_sent);
		cr_expect_leq(di.precopy_bytes_sent, di.bytes_sent);
		cr_expect_eq(jv_get(d, "transitions")->num, di.downtime_arcs);
		cr_expect_str_eq(jv_get(d, "kind")->str, "vfio");
		if (di.stop_copy_known)
			cr_expect_eq(jv_get(d, "stop-copy")->num, (double)di.stop_copy_bytes);
	}
}

Test(engine_stats, schema_every_field_and_type)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_decision d;
	struct run_result rr;
	struct jv *o;

	h_setup(2, flags, 1);
	h_engines();
	o = parsed();
	cr_expect_str_eq(jv_get(o, "status")->str, "none");
	cr_expect_eq(jv_get(o, "action")->type, JV_NULL, "no decision yet");
	cr_expect_eq(jv_get(o, "expected-downtime")->type, JV_NULL);
	cr_expect_eq(jv_get(o, "stalled")->num, 0);
	cr_expect_eq(jv_get(o, "downtime-limit")->num, H.cfg.policy.downtime_limit_ns / 1e6);
	cr_expect_eq(jv_get(&jv_get(o, "devices")->kids[0], "tracking")->type, JV_NULL, "no tracking before start");
	jv_free(o);

	/* during: one pass and a decision */
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_sync(H.src), 0);
	{
		uint64_t bytes = copy_pages();

		atomic_fetch_add(&vnow, bytes);
		cr_assert_geq(precopy_engine_pump(H.src, 4096), 0);
		cr_assert_eq(precopy_engine_account(H.src, bytes, bytes), 0);
	}
	cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	o = parsed();
	cr_expect_str_eq(jv_get(o, "status")->str, "active");
	cr_expect_str_eq(jv_get(o, "action")->str, precopy_action_name(d.action));
	cr_expect_eq(jv_get(o, "blocked-reasons")->nkids, (size_t)__builtin_popcount(d.blocked));
	cr_expect_str_eq(jv_get(&jv_get(o, "devices")->kids[0], "tracking")->str, "dma-log");
	cr_expect_gt(jv_get(&jv_get(o, "devices")->kids[0], "pre-copy-pending")->num, 0,
		     "initial data of the device not all sent after a 4 KiB pump");
	check_devices(o);
	jv_free(o);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	o = parsed();
	cr_expect_str_eq(jv_get(o, "status")->str, "cancelled");
	jv_free(o);

	/* after: a whole migration */
	h_relink();
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	o = parsed();
	cr_expect_str_eq(jv_get(o, "status")->str, "completed");
	cr_expect_str_eq(jv_get(o, "action")->str, "switchover");
	cr_expect_eq(jv_get(o, "blocked-reasons")->nkids, 0);
	cr_expect_eq(jv_get(o, "downtime")->type, JV_NUM);
	cr_expect_eq(jv_get(o, "stalled")->num, 0);
	check_devices(o);
	for (int i = 0; i < H.ndev; i++) {
		const struct jv *dv = &jv_get(o, "devices")->kids[i];

		cr_expect_lt(jv_get(dv, "pre-copy-sent")->num, jv_get(dv, "transferred")->num,
			     "device %d: its stop-copy state came after the pre-copy data", i);
		cr_expect_eq(jv_get(dv, "pre-copy-pending")->num, 0);
	}
	jv_free(o);
}

/* "stalled" holds from the first stalled decision while the limit is not
 * met, also where the estimator's own flag drops (the timeout's decision
 * carries none): a limit no pass can meet, then the timeout. */
Test(engine_stats, stalled_stays_true_while_the_stall_lasts)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct precopy_engine_stats st;
	struct precopy_decision d;
	int first = -1, flips = 0, est_off = 0;

	h_setup(1, flags, 1);
	H.cfg.policy.downtime_limit_ns = 1000; /* 1 us: never met */
	H.cfg.policy.stall_iterations = 1;
	H.cfg.policy.timeout_ns = 3000000; /* 3 ms of the virtual clock */
	H.cfg.policy.timeout_action = PRECOPY_TIMEOUT_CANCEL;
	h_engines();
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	for (int i = 0; i < 200; i++) {
		uint64_t bytes;
		struct jv *o;

		cr_assert_geq(precopy_engine_sync(H.src), 0);
		bytes = copy_pages();
		atomic_fetch_add(&vnow, bytes);
		cr_assert_geq(precopy_engine_pump(H.src, 48 * 1024), 0);
		cr_assert_eq(precopy_engine_account(H.src, bytes, bytes), 0);
		cr_assert_eq(dest_drain(), 0);
		guest_writes(6);
		atomic_fetch_add(&vnow, 100000);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0, "%s", precopy_engine_strerror(H.src));
		cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
		if (st.stalled && first < 0)
			first = i;
		if (first >= 0 && !st.stalled)
			flips++;
		if (first >= 0 && !d.stalled)
			est_off++;
		o = parsed();
		cr_expect_eq(jv_get(o, "stalled")->num, st.stalled);
		cr_expect_eq(jv_get(o, "stalled-since")->type, st.stalled ? JV_NUM : JV_NULL);
		jv_free(o);
		if (d.action == PRECOPY_ABORT)
			break;
	}
	cr_assert_geq(first, 0, "never stalled");
	cr_expect_eq(d.action, PRECOPY_ABORT, "the timeout ended it");
	cr_expect_geq(est_off, 1, "the estimator's flag never dropped: nothing tested");
	cr_expect_eq(flips, 0, "the stall was reported over while the limit was still not met");
	cr_log_info("stalled from decision %d; the estimator's own flag dropped %d times", first + 1, est_off);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}
