/* SPDX-License-Identifier: MIT */
/* Cancel at every phase, and faults injected at each fake-kernel call the
 * engine makes: each ends with a clear error, every device RUNNING, the
 * migration's fds closed; then a new migration on the same engine works. */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_faults, .fini = fini);

static void setup2(void)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	h_setup(2, flags, 1);
	h_engines();
}

/* No data session left open on any source device. */
static void assert_no_session(void)
{
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_engine_dev_info di;
		struct precopy_engine_stats st;
		cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)i, &di), 0);
		cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
		cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE);
	}
	assert_all_running();
}

/* ---- cancel at every phase ---------------------------------------------- */

enum { AT_START, AT_SYNC, AT_PUMP, AT_DECIDE, AT_SWITCHED };

static void cancel_at(int phase)
{
	struct precopy_decision d;

	setup2();
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	if (phase >= AT_SYNC)
		cr_assert_geq(precopy_engine_sync(H.src), 0);
	if (phase >= AT_PUMP)
		cr_assert_geq(precopy_engine_pump(H.src, 0), 0);
	if (phase >= AT_DECIDE) {
		cr_assert_eq(precopy_engine_account(H.src, 4096, 4096), 0);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	}
	if (phase >= AT_SWITCHED) {
		cr_assert_eq(dest_drain(), 0);
		cr_assert_eq(precopy_engine_switchover(H.src), 0);
		cr_assert_eq(fake_state(H.sdev[0]), VFIO_DEVICE_STATE_STOP_COPY);
	}
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_no_session();
	cr_assert_eq(precopy_engine_cancel(H.src), 0, "cancel twice is harmless");
	cr_assert_eq(precopy_engine_sync(H.src), -EBUSY);
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats s;
		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		cr_assert_eq(s.logging, 0, "device %d still logging after cancel", i);
	}
	h_migrate_ok();
}

Test(engine_faults, cancel_after_start) { cancel_at(AT_START); }
Test(engine_faults, cancel_after_sync) { cancel_at(AT_SYNC); }
Test(engine_faults, cancel_after_pump) { cancel_at(AT_PUMP); }
Test(engine_faults, cancel_after_decide) { cancel_at(AT_DECIDE); }
Test(engine_faults, cancel_after_switchover) { cancel_at(AT_SWITCHED); }

/* ---- injected faults ------------------------------------------------------ */

struct fcase {
	const char *name;
	int kind;           /* 0: sys fault rule, 1: failing arc, 2: failing arc into ERROR */
	struct precopy_fault f;
	uint32_t from, to;  /* kind 1, 2 */
	int err;            /* the engine's -errno */
	const char *msg;    /* in precopy_engine_strerror() */
};

#define FEAT(feat, n) { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE, .match_feature = 1, \
			.feature = (feat), .nth = (n), .err = EIO }

static const struct fcase cases[] = {
	{ "dma log report", 0, FEAT(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, 3), 0, 0, -EIO, "dirty log report" },
	{ "dma log start", 0, FEAT(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 1), 0, 0, -EIO, "DMA logging start" },
	{ "precopy info", 0, { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_MIG_GET_PRECOPY_INFO, .nth = 1, .err = EIO },
	  0, 0, -EIO, "precopy info" },
	{ "data fd read", 0, { .op = PRECOPY_FAKE_OP_READ, .nth = 1, .err = EIO }, 0, 0, -EIO, "data read" },
	/* calls 1-2: start reads both states, 3-4: RUNNING -> PRE_COPY */
	{ "set state (mid-migration, at switchover)", 0, FEAT(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 5), 0, 0, -EIO,
	  "switchover: device 10: PRE_COPY -> PRE_COPY_P2P" },
	{ "state read at start", 0, FEAT(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 2), 0, 0, -EIO,
	  "start: device 11 (fake): reading its state: Input/output error" },
	{ "RUNNING->PRE_COPY, recovered", 1, { 0 }, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_PRE_COPY, -EIO,
	  "RUNNING -> PRE_COPY" },
	{ "RUNNING->PRE_COPY, device in ERROR, reset", 2, { 0 }, VFIO_DEVICE_STATE_RUNNING,
	  VFIO_DEVICE_STATE_PRE_COPY, -EIO, "RUNNING -> PRE_COPY" },
	{ "PRE_COPY->PRE_COPY_P2P at switchover", 1, { 0 }, VFIO_DEVICE_STATE_PRE_COPY,
	  VFIO_DEVICE_STATE_PRE_COPY_P2P, -EIO, "switchover" },
	{ "PRE_COPY_P2P->STOP_COPY at switchover, ERROR", 2, { 0 }, VFIO_DEVICE_STATE_PRE_COPY_P2P,
	  VFIO_DEVICE_STATE_STOP_COPY, -EIO, "STOP_COPY" },
};

Test(engine_faults, every_fault_then_migrate_again)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct fcase *fc = &cases[c];
		struct run_result rr;
		int r, target = (int)(c % 2); /* the second device half of the time */

		setup2();
		if (fc->kind == 0)
			cr_assert_eq(precopy_fake_fault_add(H.sfk, &fc->f), 0, "%s", fc->name);
		else
			cr_assert_eq(precopy_fake_vfio_fail_arc(H.sdev[target], fc->from, fc->to, EIO,
								fc->kind == 2 ? VFIO_DEVICE_STATE_ERROR : fc->from, 1),
				     0);
		h_relink();
		r = run_migration(200, &rr);
		cr_assert_eq(r, fc->err, "%s: got %d (%s)", fc->name, r, precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), fc->msg), "%s: message \"%s\"", fc->name,
			  precopy_engine_strerror(H.src));
		cr_assert_eq(precopy_engine_error(H.src), fc->err);
		assert_no_session();
		if (fc->kind == 2) {
			struct precopy_engine_dev_info di;
			cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)target, &di), 0);
			cr_assert_eq(di.was_reset, 1, "%s: a device in ERROR must be reset", fc->name);
		}
		if (fc->kind == 1) {
			struct precopy_engine_dev_info di;
			cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)target, &di), 0);
			cr_assert_eq(di.recovered, 1, "%s", fc->name);
		}
		precopy_fake_fault_clear(H.sfk);
		h_migrate_ok();
		cr_assert_eq(precopy_engine_error(H.src), 0, "a new migration clears the error");
		h_teardown();
		memset(&H, 0, sizeof(H));
	}
}

/* A failed stop-copy size query blocks switchover instead of guessing. */
Test(engine_faults, unknown_stop_copy_size_blocks_switchover)
{
	struct precopy_fault f = FEAT(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, 1);
	struct precopy_decision d;

	f.times = 1000;
	setup2();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &f), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_ack(H.src), -EPROTO); /* still too early: initial bytes unsent */
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_pump(H.src, 0), 0);
	cr_assert_eq(precopy_engine_ack(H.src), 0);
	for (int i = 0; i < 10; i++) {
		cr_assert_geq(precopy_engine_sync(H.src), 0);
		uint64_t b = copy_pages();
		cr_assert_geq(precopy_engine_pump(H.src, 0), 0);
		cr_assert_eq(precopy_engine_account(H.src, b + 4096, b + 4096), 0);
		atomic_fetch_add(&vnow, 1000);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
		cr_assert(d.blocked & PRECOPY_BLOCK_UNKNOWN_SIZE);
		cr_assert_eq(d.expected_downtime_ns, PRECOPY_UNBOUNDED);
		cr_assert_neq(d.action, PRECOPY_SWITCHOVER);
	}
	precopy_fake_fault_clear(H.sfk);
	cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	cr_assert_eq(d.blocked & PRECOPY_BLOCK_UNKNOWN_SIZE, 0, "the exact query retries the size");
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_no_session();
}

/* A transition fails into ERROR and the reset behind it fails too: the
 * device is left in ERROR. The migration fails once with a message naming
 * the arc and the stuck device, every other device is RUNNING, nothing
 * loops; a new start refuses at once while the device stays in ERROR; once
 * the VMM has reset it, a migration works. At start and at switchover. */
Test(engine_faults, reset_fails_too_device_left_in_error)
{
	static const struct {
		uint32_t from, to;
		const char *msg;
	} arcs[] = {
		{ VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_PRE_COPY, "start: device 11: RUNNING -> PRE_COPY" },
		{ VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_STOP_COPY, "-> STOP_COPY" },
	};

	for (size_t c = 0; c < sizeof(arcs) / sizeof(arcs[0]); c++) {
		struct precopy_engine_dev_info di;
		struct precopy_engine_stats st;
		struct precopy_fake_vfio_stats before, after;
		struct run_result rr;
		int r;

		setup2();
		cr_assert_eq(precopy_fake_vfio_fail_arc(H.sdev[1], arcs[c].from, arcs[c].to, EIO,
							VFIO_DEVICE_STATE_ERROR, 1), 0);
		cr_assert_eq(precopy_fake_vfio_fail_reset(H.sdev[1], EIO, 1), 0);
		h_relink();
		r = run_migration(200, &rr);
		cr_assert_eq(r, -EIO, "case %zu: got %d (%s)", c, r, precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), arcs[c].msg), "case %zu: \"%s\"", c,
			  precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src),
				 "device 11 left in ERROR (its reset failed too: Input/output error)"),
			  "case %zu: \"%s\"", c, precopy_engine_strerror(H.src));
		cr_assert_eq(precopy_engine_device_info(H.src, 1, &di), 0);
		cr_assert_eq(di.state, VFIO_DEVICE_STATE_ERROR);
		cr_assert_eq(di.reset_err, -EIO);
		cr_assert_eq(di.was_reset, 0);
		cr_assert_eq(fake_state(H.sdev[1]), VFIO_DEVICE_STATE_ERROR);
		cr_assert_eq(fake_state(H.sdev[0]), VFIO_DEVICE_STATE_RUNNING, "the other device is unwound");
		cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
		cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE);
		cr_assert_eq(precopy_engine_cancel(H.src), 0, "nothing left to cancel");
		/* a new start refuses before touching anything */
		precopy_fake_vfio_get_stats(H.sdev[0], &before);
		cr_assert_eq(precopy_engine_start(H.src), -EIO);
		cr_assert(strstr(precopy_engine_strerror(H.src), "device 11 is in ERROR"), "\"%s\"",
			  precopy_engine_strerror(H.src));
		precopy_fake_vfio_get_stats(H.sdev[0], &after);
		cr_assert_eq(after.arcs, before.arcs, "start moved a device although it refused");
		cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
		cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE);
		/* the VMM resets the device itself; the engine sees it at start */
		cr_assert_eq(precopy_sys_ioctl(H.ssys, H.sfd[1], VFIO_DEVICE_RESET, NULL), 0);
		h_migrate_ok();
		h_teardown();
		memset(&H, 0, sizeof(H));
	}
}

/* ---- a DMA logging stop that fails ---------------------------------------- */

static const struct precopy_fault stop_fault = FEAT(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, 1);

static int fake_logging(int i)
{
	struct precopy_fake_vfio_stats s;
	precopy_fake_vfio_get_stats(H.sdev[i], &s);
	return s.logging;
}

/* The VMM resumes the source devices after a completed migration (the
 * guest comes back, e.g. the destination failed later): STOP -> RUNNING. */
static void resume_source_devices(void)
{
	for (int i = 0; i < H.ndev; i++) {
		struct vfio_device_feature_mig_state m = { .device_state = VFIO_DEVICE_STATE_RUNNING, .data_fd = -1 };
		cr_assert_eq(precopy_vfio_feature(H.ssys, H.sfd[i], VFIO_DEVICE_FEATURE_SET,
						  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m, sizeof(m)), 0);
	}
}

/* One failed STOP in cancel: the error names the device; the next start
 * stops it again first, so the device (which, like mlx5, refuses a second
 * START with -EINVAL) starts logging again and the migration works. */
Test(engine_faults, dma_log_stop_fails_once_in_cancel)
{
	setup2();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &stop_fault), 0);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_sync(H.src), 0);
	cr_assert_eq(precopy_engine_cancel(H.src), -EIO);
	cr_assert_str_eq(precopy_engine_strerror(H.src), "cancel: device 10 (fake): DMA logging stop: Input/output error");
	cr_assert_eq(precopy_engine_error(H.src), -EIO);
	cr_assert_eq(fake_logging(0), 1, "the failed STOP left device 0 logging");
	cr_assert_eq(fake_logging(1), 0);
	assert_no_session();
	h_migrate_ok();
	cr_assert_eq(fake_logging(0), 0);
	cr_assert_eq(fake_logging(1), 0);
}

/* The same in complete: the migration is done (DONE, -EIO, the device
 * named); once the VMM has resumed the devices, a new migration works. */
Test(engine_faults, dma_log_stop_fails_once_in_complete)
{
	struct precopy_engine_stats st;
	struct run_result rr;
	int r;

	setup2();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &stop_fault), 0);
	r = run_migration(200, &rr);
	cr_assert_eq(r, -EIO, "got %d (%s)", r, precopy_engine_strerror(H.src));
	cr_assert_str_eq(precopy_engine_strerror(H.src),
			 "complete: device 10 (fake): DMA logging stop: Input/output error");
	cr_assert(ram_equal(), "the migration itself completed");
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.phase, PRECOPY_ENGINE_DONE);
	cr_assert_eq(fake_logging(0), 1);
	cr_assert_eq(fake_logging(1), 0);
	resume_source_devices();
	h_migrate_ok();
	cr_assert_eq(fake_logging(0), 0);
	cr_assert_eq(fake_logging(1), 0);
}

/* STOP keeps failing: every device is named at cancel, the next start
 * refuses at once with a message naming the stop (not the device's
 * "DMA logging start: Invalid argument") and moves nothing; once STOP
 * works again, start succeeds. */
Test(engine_faults, dma_log_stop_fails_persistently)
{
	struct precopy_fault f = stop_fault;
	struct precopy_fake_vfio_stats before, after;
	struct precopy_engine_stats st;
	const char *m;

	f.times = 1000;
	setup2();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &f), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_cancel(H.src), -EIO);
	cr_assert_str_eq(precopy_engine_strerror(H.src), "cancel: device 10 (fake): DMA logging stop: Input/output error; "
			 "cancel: device 11 (fake): DMA logging stop: Input/output error");
	precopy_fake_vfio_get_stats(H.sdev[0], &before);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(precopy_engine_start(H.src), -EIO);
		m = precopy_engine_strerror(H.src);
		cr_assert(strstr(m, "start: device 10 (fake): DMA logging left on by the last migration: "
				    "stop failed again: Input/output error"), "\"%s\"", m);
		cr_assert(strstr(m, "device 11 (fake)"), "\"%s\"", m);
		cr_assert_null(strstr(m, "DMA logging start"), "\"%s\"", m);
		cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
		cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE);
	}
	precopy_fake_vfio_get_stats(H.sdev[0], &after);
	cr_assert_eq(after.arcs, before.arcs, "start moved a device although it refused");
	cr_assert_eq(fake_logging(0), 1);
	precopy_fake_fault_clear(H.sfk);
	h_migrate_ok();
}

/* A stop still pending when the engine is freed is tried once more. */
Test(engine_faults, dma_log_stop_retried_at_free)
{
	setup2();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &stop_fault), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_cancel(H.src), -EIO);
	cr_assert_eq(fake_logging(0), 1);
	precopy_engine_free(H.src);
	H.src = NULL;
	cr_assert_eq(fake_logging(0), 0, "free left the device logging");
}
