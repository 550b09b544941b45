/* SPDX-License-Identifier: MIT */
/* fd-based back-ends as engine devices, end to end over the fake kernel and
 * the fake back-end model (precopy/fake.h): each back-end's state moves at
 * switchover, after the vCPUs and its queues stop, through a pipe into the
 * stream and on the destination through another pipe into its twin, which
 * checks every byte and the length. With and without VFIO devices, a state
 * larger than a pipe and an empty one. Then the faults, on either side,
 * each ending with a clear error, every VFIO device RUNNING and the engine
 * back in IDLE, followed by a successful migration with healthy back-ends. */
#include <signal.h>

#include "test-engine.h"

static void init(void)
{
	/* the back-end models stand for other processes: a write into a pipe
	 * whose reader went away must fail with EPIPE, not kill the test */
	signal(SIGPIPE, SIG_IGN);
}
static void fini(void) { h_teardown(); }
TestSuite(engine_backend, .init = init, .fini = fini);

#define BIG 200000u /* three pipes' worth: the transfer must flow, not fit */

static void setup(int ndev, int nbe, const uint64_t *sizes)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF };

	h_setup(ndev, flags, 1);
	/* the back-ends' states count in the downtime: 200 KB at 1 GB/s */
	H.cfg.policy.downtime_limit_ns = 2000000;
	h_backends(nbe, sizes);
	h_engines();
}

static int migrate(void)
{
	struct run_result rr;

	H.threaded = 1; /* the destination reads while the source writes the state */
	return run_migration(200, &rr);
}

/* Each back-end's state arrived whole and was checked on both sides. */
static void check_backends(const uint64_t *sizes)
{
	for (int i = 0; i < H.nbe; i++) {
		struct precopy_engine_backend_info bi;
		uint64_t bytes;
		int checked;

		cr_assert_eq(precopy_engine_backend_info(H.src, (uint32_t)i, &bi), 0);
		cr_assert_eq(bi.id, 50u + (uint32_t)i);
		cr_assert_eq(bi.checked, 1, "back-end %d: save not checked", i);
		cr_assert_eq(bi.err, 0);
		cr_assert_eq(bi.bytes_sent, sizes[i]);
		cr_assert_eq(precopy_dest_backend_state(H.dst, (uint32_t)i, &bytes, &checked), 0);
		cr_assert_eq(bytes, sizes[i]);
		cr_assert_eq(checked, 1, "back-end %d: load not checked", i);
		cr_assert_eq(precopy_fake_backend_bytes(H.sbe[i].cur), sizes[i]);
		cr_assert_eq(precopy_fake_backend_bytes(H.dbe[i].cur), sizes[i]);
	}
	cr_assert_eq(precopy_engine_backend_info(H.src, (uint32_t)H.nbe, &(struct precopy_engine_backend_info){ 0 }),
		     -ENOENT);
}

static void migrate_ok(void)
{
	int r = migrate();

	cr_assert_eq(r, 0, "migration: %d: %s / %s", r, precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	cr_assert(ram_equal());
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats d;
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_eq(d.resume_ok, 1);
	}
}

Test(engine_backend, backend_only)
{
	uint64_t sizes[] = { BIG };
	struct precopy_engine_stats st;

	setup(0, 1, sizes);
	migrate_ok();
	check_backends(sizes);
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.downtime.device_bytes, BIG, "the back-end's state moved inside the downtime");
}

Test(engine_backend, devices_and_backends)
{
	uint64_t sizes[] = { BIG, 0, 4097 };

	setup(2, 3, sizes);
	migrate_ok();
	check_backends(sizes);
	/* a second migration on the same engines, once the VMM has resumed
	 * the source devices (the first one left them in STOP) */
	for (int i = 0; i < 2; i++) {
		struct vfio_device_feature_mig_state ms = { .device_state = VFIO_DEVICE_STATE_RUNNING, .data_fd = -1 };
		cr_assert_eq(precopy_vfio_feature(H.ssys, H.sfd[i], VFIO_DEVICE_FEATURE_SET,
						  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms)), 0);
	}
	for (int i = 0; i < 3; i++) {
		be_swap(&H.sbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 1);
		be_swap(&H.dbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 0);
	}
	H.threaded = 1;
	h_migrate_ok();
	check_backends(sizes);
}

/* The estimator counts a back-end's state as stop-copy bytes. */
Test(engine_backend, state_size_in_the_estimate)
{
	uint64_t sizes[] = { 123456 };
	struct precopy_engine_decide_input in;
	struct precopy_device_status ds[3];
	struct precopy_decision d;

	struct precopy_ram_run runs[64];

	setup(1, 1, sizes);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	/* the end of a pass: every dirty page handed out */
	while (precopy_engine_next_pages(H.src, runs, 64, 0) > 0)
		;
	cr_assert_eq(precopy_engine_account(H.src, 4096, 4096), 0);
	cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	cr_assert_eq(precopy_engine_last_input(H.src, &in, ds, 3), 2, "one device and one back-end");
	cr_assert_eq(ds[1].stop_copy_bytes, 123456);
	cr_assert_eq(ds[1].stop_copy_known, 1);
	cr_assert_eq(ds[1].pre_copy, 0);
	cr_assert_geq(d.device_stop_copy, 123456);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}

Test(engine_backend, config_errors)
{
	uint64_t sizes[] = { 10, 10 };
	struct precopy_backend_ops bad = fwd_ops;
	int err;

	setup(2, 2, sizes);
	precopy_engine_free(H.src);
	precopy_dest_free(H.dst);
	H.src = NULL;
	H.dst = NULL;
#define SRC_EINVAL(what) cr_assert_null(precopy_engine_new(&H.cfg, &err), what); cr_assert_eq(err, -EINVAL, what)
#define DST_EINVAL(what) cr_assert_null(precopy_dest_new(&H.dcfgx, &err), what); cr_assert_eq(err, -EINVAL, what)
	H.bes[1].id = H.devs[0].id;		SRC_EINVAL("back-end id = a device id"); H.bes[1].id = 51;
	H.bes[1].id = 50;			SRC_EINVAL("two back-ends, one id"); H.bes[1].id = 51;
	H.bes[0].id = PRECOPY_STREAM_DEV_NONE;	SRC_EINVAL("NONE id"); H.bes[0].id = 50;
	H.bes[0].name = "bad\nname";		SRC_EINVAL("name"); H.bes[0].name = NULL;
	H.cfg.backends = NULL;			SRC_EINVAL("backends NULL"); H.cfg.backends = H.bes;
	bad.check_state = NULL; H.bes[0].ops = &bad; SRC_EINVAL("ops without check_state"); H.bes[0].ops = &fwd_ops;
	H.dbes[1].id = H.ddevs[1].id;		DST_EINVAL("back-end id = a device id"); H.dbes[1].id = 51;
	H.dbes[0].id = PRECOPY_STREAM_DEV_NONE;	DST_EINVAL("NONE id"); H.dbes[0].id = 50;
	H.dcfgx.backends = NULL;		DST_EINVAL("backends NULL"); H.dcfgx.backends = H.dbes;
	H.dbes[0].ops = &bad;			DST_EINVAL("ops without check_state"); H.dbes[0].ops = &fwd_ops;
	/* nothing to load is a VM without devices: accepted */
	H.dcfgx.ndevices = 0; H.dcfgx.nbackends = 0;
	{
		struct precopy_dest *none = precopy_dest_new(&H.dcfgx, &err);

		cr_assert_not_null(none, "no devices, no back-ends: %d", err);
		precopy_dest_free(none);
	}
	H.dcfgx.nbackends = PRECOPY_STREAM_CAP_MAX_DEVICES + 1; /* no device at this point */
	cr_assert_null(precopy_dest_new(&H.dcfgx, &err));
	cr_assert_eq(err, -E2BIG);
	H.dcfgx.nbackends = 2;
	H.cfg.nbackends = PRECOPY_STREAM_CAP_MAX_DEVICES;
	cr_assert_null(precopy_engine_new(&H.cfg, &err));
	cr_assert_eq(err, -E2BIG);
	H.cfg.nbackends = 2;
	H.src = precopy_engine_new(&H.cfg, &err);
	cr_assert_not_null(H.src, "%d", err);
	H.dst = precopy_dest_new(&H.dcfgx, &err);
	cr_assert_not_null(H.dst, "back-ends only on the destination: %d", err);
#undef SRC_EINVAL
#undef DST_EINVAL
}

/* ---- source-side faults ------------------------------------------------ */

struct scase {
	const char *name;
	uint32_t fault;       /* the source model's fault */
	uint64_t offset;
	int running;          /* queues left running at switchover */
	int pipe_fault;       /* pipe2 fails with EMFILE */
	int err;
	const char *msg;
};

static const struct scase scases[] = {
	{ "short state", PRECOPY_FAKE_BE_SHORT, 70000, 0, 0, -EIO, "reports its save failed" },
	{ "check fails", PRECOPY_FAKE_BE_CHECK_FAIL, 0, 0, 0, -EIO, "reports its save failed" },
	{ "set_state_fd rejected", PRECOPY_FAKE_BE_REJECT, 0, 0, 0, -EIO, "handing it the state fd (SAVE)" },
	{ "queues running", PRECOPY_FAKE_BE_OK, 0, 1, 0, -EBUSY, "its queues are running" },
	{ "no end of data", PRECOPY_FAKE_BE_HANG, 5000, 0, 0, -ETIMEDOUT, "no end of data" },
	{ "pipe2 fails", PRECOPY_FAKE_BE_OK, 0, 0, 1, -EMFILE, "creating the state pipe" },
};

Test(engine_backend, source_faults_then_migrate_again, .timeout = 60)
{
	for (size_t c = 0; c < sizeof(scases) / sizeof(scases[0]); c++) {
		const struct scase *sc = &scases[c];
		uint64_t sizes[] = { BIG, 3000 };
		int victim = (int)(c % 2), r;

		setup(2, 2, sizes);
		be_swap(&H.sbe[victim], sc->fault, sizes[victim], 77 + (uint64_t)victim, sc->offset, 1);
		H.keep_be_running = sc->running;
		if (sc->running) /* only the victim keeps its queues running */
			cr_assert_eq(precopy_fake_backend_set_running(H.sbe[!victim].cur, 0), 0);
		if (sc->pipe_fault) {
			struct precopy_fault f = { .op = PRECOPY_FAKE_OP_PIPE2, .nth = 1 + (uint64_t)victim,
						   .err = EMFILE };
			cr_assert_eq(precopy_fake_fault_add(H.sfk, &f), 0);
		}
		if (sc->fault == PRECOPY_FAKE_BE_HANG) {
			/* bounded on any clock: poll intervals count as waiting */
			precopy_engine_free(H.src);
			H.cfg.io_timeout_ns = 100000000;
			H.src = precopy_engine_new(&H.cfg, NULL);
			cr_assert_not_null(H.src);
		}
		r = migrate();
		cr_assert_eq(r, sc->err, "%s: got %d (%s)", sc->name, r, precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), sc->msg), "%s: message \"%s\"", sc->name,
			  precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), victim ? "back-end 51" : "back-end 50"),
			  "%s: the message names the back-end: \"%s\"", sc->name, precopy_engine_strerror(H.src));
		{
			struct precopy_engine_backend_info bi;
			struct precopy_engine_stats st;
			cr_assert_eq(precopy_engine_backend_info(H.src, (uint32_t)victim, &bi), 0);
			cr_assert_eq(bi.err, sc->err);
			cr_assert_eq(bi.checked, 0);
			cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
			cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE);
		}
		assert_all_running();
		/* the VMM restarts its back-ends' queues, reconnects the failed one,
		 * and migrates again */
		precopy_fake_fault_clear(H.sfk);
		H.keep_be_running = 0;
		for (int i = 0; i < 2; i++) {
			be_swap(&H.sbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 1);
			be_swap(&H.dbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 0);
		}
		H.threaded = 1;
		h_migrate_ok();
		check_backends(sizes);
		h_teardown();
		memset(&H, 0, sizeof(H));
	}
}

/* ---- destination-side faults ------------------------------------------- */

/* Every destination device back in RUNNING (its load abandoned). */
static void assert_dest_running(void)
{
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING);
}

/* The destination's back-end fails its load check (corrupt or short
 * state): the destination fails with a clear error and an RP_ERROR naming
 * the back-end; the source, already switched over, is cancelled by its VMM:
 * every device RUNNING again. */
static void dest_load_fails(int corrupt_at_source)
{
	uint64_t sizes[] = { BIG };
	int r;

	setup(2, 1, sizes);
	if (corrupt_at_source)
		be_swap(&H.sbe[0], PRECOPY_FAKE_BE_CORRUPT, BIG, 77, 150000, 1);
	else
		be_swap(&H.dbe[0], PRECOPY_FAKE_BE_CHECK_FAIL, BIG, 77, 0, 0);
	r = migrate();
	cr_assert_eq(r, corrupt_at_source ? -EBADMSG : -EIO, "got %d: %s", r, precopy_dest_strerror(H.dst));
	cr_assert(strstr(precopy_dest_strerror(H.dst), "back-end 50: the back-end reports its load failed"), "\"%s\"",
		  precopy_dest_strerror(H.dst));
	expect_rp_error(50, corrupt_at_source ? EBADMSG : EIO);
	assert_dest_running();
	cr_assert_eq(precopy_engine_cancel(H.src), 0, "the VMM resumes on the source");
	assert_all_running();
	be_swap(&H.sbe[0], PRECOPY_FAKE_BE_OK, BIG, 77, 0, 1);
	be_swap(&H.dbe[0], PRECOPY_FAKE_BE_OK, BIG, 77, 0, 0);
	H.threaded = 1;
	h_migrate_ok();
	check_backends(sizes);
}

Test(engine_backend, dest_check_fails) { dest_load_fails(0); }
Test(engine_backend, corrupt_state_caught_by_dest) { dest_load_fails(1); }

/* The destination's back-end stops reading early: its pipe breaks (EPIPE)
 * or it reports the short state; either way a clear failure. */
Test(engine_backend, dest_backend_stops_reading)
{
	uint64_t sizes[] = { BIG };
	int r;

	setup(1, 1, sizes);
	be_swap(&H.dbe[0], PRECOPY_FAKE_BE_SHORT, BIG, 77, 1000, 0);
	r = migrate();
	cr_assert(r == -EPIPE || r == -EIO, "got %d: %s", r, precopy_dest_strerror(H.dst));
	cr_assert(strstr(precopy_dest_strerror(H.dst), "back-end 50"), "\"%s\"", precopy_dest_strerror(H.dst));
	expect_rp_error(50, -r);
	assert_dest_running();
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
}

/* The destination's back-end still runs its queues: start refuses. */
Test(engine_backend, dest_queues_running)
{
	uint64_t sizes[] = { 100 };
	struct run_result rr;

	setup(2, 1, sizes);
	cr_assert_eq(precopy_fake_backend_set_running(H.dbe[0].cur, 1), 0);
	cr_assert_eq(run_migration(10, &rr), -EBUSY);
	cr_assert(strstr(precopy_dest_strerror(H.dst), "back-end 50: its queues are running"), "\"%s\"",
		  precopy_dest_strerror(H.dst));
	assert_dest_running();
	expect_rp_error(50, EBUSY);
	cr_assert_eq(precopy_fake_backend_set_running(H.dbe[0].cur, 0), 0);
	H.threaded = 1;
	h_migrate_ok();
	check_backends(sizes);
}

/* Cancel with back-ends at every phase: nothing waits for a back-end. */
Test(engine_backend, cancel_before_and_after_switchover)
{
	uint64_t sizes[] = { 5000 };

	setup(1, 1, sizes);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
	h_relink();
	be_swap(&H.dbe[0], PRECOPY_FAKE_BE_OK, 5000, 77, 0, 0);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_pump(H.src, 0), 0);
	cr_assert_eq(precopy_fake_backend_set_running(H.sbe[0].cur, 0), 0);
	cr_assert_eq(precopy_engine_switchover(H.src), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
	/* the destination abandons its load: its devices hold a partial state,
	 * which RESUMING -> STOP refuses (-EINVAL), so they are reset; the
	 * back-end's load is abandoned without waiting for it */
	cr_assert_eq(precopy_dest_cancel(H.dst), -EINVAL);
	assert_dest_running();
	be_swap(&H.sbe[0], PRECOPY_FAKE_BE_OK, 5000, 77, 0, 1);
	be_swap(&H.dbe[0], PRECOPY_FAKE_BE_OK, 5000, 77, 0, 0);
	H.threaded = 1;
	h_migrate_ok();
	check_backends(sizes);
}
