/* SPDX-License-Identifier: MIT */
/* Engine API: config validation (exact -errno per missing or bad member),
 * calls in the wrong phase, and the decision plumbing: every decision the
 * engine returns equals what estimator/estimator.c returns for the inputs the
 * engine fed it (replayed into a fresh estimator). */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_api, .fini = fini);

static void base(void)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	h_setup(2, flags, 1);
}

static int try_new(void)
{
	int err = 1;
	struct precopy_engine *e = precopy_engine_new(&H.cfg, &err);
	if (e) {
		precopy_engine_free(e);
		return 0;
	}
	return err;
}

Test(engine_api, config_table)
{
	struct precopy_engine_device dup[2];
	struct precopy_bitmap small;
	uint64_t w[8];

	base();
	cr_assert_eq(try_new(), 0);
	H.cfg.version = PRECOPY_ENGINE_CONFIG_VERSION + 1;			cr_assert_eq(try_new(), -EINVAL); H.cfg.version = PRECOPY_ENGINE_CONFIG_VERSION;
	H.cfg.clock.now_ns = NULL;		cr_assert_eq(try_new(), -EINVAL); H.cfg.clock.now_ns = clk_now;
	H.cfg.sys = NULL;			cr_assert_eq(try_new(), -EINVAL); H.cfg.sys = H.ssys;
	H.cfg.nslots = 0;			cr_assert_eq(try_new(), -EINVAL); H.cfg.nslots = 2;
	H.slots[1].page_size = 8192;		cr_assert_eq(try_new(), -EINVAL); H.slots[1].page_size = PS;
	H.slots[1].gpa = 4096 * 3;		cr_assert_eq(try_new(), -EINVAL, "overlap"); H.slots[1].gpa = SLOT1_GPA;
	H.slots[0].size = 100;			cr_assert_eq(try_new(), -EINVAL); H.slots[0].size = SLOT0_PAGES * PS;
	H.cfg.ram_source = 7;			cr_assert_eq(try_new(), -EINVAL); H.cfg.ram_source = PRECOPY_RAM_BITMAP;
	H.cfg.ram_bitmap = NULL;		cr_assert_eq(try_new(), -EINVAL); H.cfg.ram_bitmap = &H.live;
	precopy_bitmap_wrap(&small, w, 100);
	H.cfg.ram_bitmap = &small;		cr_assert_eq(try_new(), -EINVAL, "nbits"); H.cfg.ram_bitmap = &H.live;
	H.cfg.ram_source = PRECOPY_RAM_KVM;	cr_assert_eq(try_new(), -EINVAL, "no vm fd"); H.cfg.ram_source = PRECOPY_RAM_BITMAP;
	/* KVM mode: the optional VMM bitmap must match the log too (checked
	 * before anything reaches KVM, so any fd will do here) */
	H.cfg.ram_source = PRECOPY_RAM_KVM; H.cfg.kvm_vm_fd = H.st[0]; H.cfg.ram_bitmap = &small;
	cr_assert_eq(try_new(), -EINVAL, "KVM: VMM bitmap nbits");
	small.words = NULL;			cr_assert_eq(try_new(), -EINVAL, "KVM: VMM bitmap without words");
	small.words = w;
	H.cfg.ram_source = PRECOPY_RAM_BITMAP; H.cfg.kvm_vm_fd = -1; H.cfg.ram_bitmap = &H.live;
	H.cfg.devices = NULL;			cr_assert_eq(try_new(), -EINVAL); H.cfg.devices = H.devs;
	dup[0] = H.devs[0]; dup[1] = H.devs[1]; dup[1].id = dup[0].id;
	H.cfg.devices = dup;			cr_assert_eq(try_new(), -EINVAL, "duplicate id"); H.cfg.devices = H.devs;
	H.devs[0].id = PRECOPY_STREAM_DEV_NONE;	cr_assert_eq(try_new(), -EINVAL); H.devs[0].id = 10;
	H.devs[0].device_fd = -1;		cr_assert_eq(try_new(), -EINVAL); H.devs[0].device_fd = H.sfd[0];
	H.devs[0].name = "tab\there";		cr_assert_eq(try_new(), -EINVAL); H.devs[0].name = "fake";
	H.cfg.sink = (precopy_engine_sink_fn)1;	cr_assert_eq(try_new(), -EINVAL, "both fd and sink"); H.cfg.sink = NULL;
	H.cfg.stream_fd = -1;			cr_assert_eq(try_new(), -EINVAL, "neither"); H.cfg.stream_fd = H.st[0];
	H.cfg.max_chunk = 100;			cr_assert_eq(try_new(), -EINVAL); H.cfg.max_chunk = 0;
	H.cfg.policy.downtime_limit_ns = 0;	cr_assert_eq(try_new(), -EINVAL); H.cfg.policy.downtime_limit_ns = 200000;
	H.devs[1].device_fd = H.dfd[0] + 1000;	cr_assert_lt(try_new(), 0, "not a device"); H.devs[1].device_fd = H.sfd[1];
	cr_assert_eq(try_new(), 0);
	cr_assert_null(precopy_engine_new(NULL, NULL));
}

Test(engine_api, wrong_phase_and_null)
{
	struct precopy_decision d;
	struct precopy_ram_run run;

	base();
	h_engines();
	cr_assert_eq(precopy_engine_sync(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_pump(H.src, 0), -EBUSY);
	cr_assert_eq(precopy_engine_decide(H.src, &d), -EBUSY);
	cr_assert_eq(precopy_engine_switchover(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_complete(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_next_pages(H.src, &run, 1, 0), -EBUSY);
	cr_assert_eq(precopy_engine_ack(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_start(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_complete(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_next_pages(H.src, NULL, 1, 0), -EINVAL);
	cr_assert_eq(precopy_engine_next_pages(H.src, &run, 0, 0), -EINVAL);
	cr_assert_eq(precopy_engine_decide(H.src, NULL), -EINVAL);
	cr_assert_eq(precopy_engine_sync(NULL), -EINVAL);
	cr_assert_eq(precopy_dest_complete(H.dst), -EBUSY);
	cr_assert_eq(precopy_dest_feed(H.dst, "x", 1), -EBUSY);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}

/* precopy_engine_set_policy() refuses what precopy_engine_new() refuses
 * and a different bw_window, and leaves the policy in force as it was. */
Test(engine_api, set_policy_refusals)
{
	struct precopy_policy p, q;
	struct precopy_engine_stats st;

	base();
	h_engines();
	p = H.cfg.policy;
	cr_assert_eq(precopy_engine_set_policy(NULL, &p), -EINVAL);
	cr_assert_eq(precopy_engine_set_policy(H.src, NULL), -EINVAL);
	q = p;
	q.bw_window = p.bw_window + 1;
	cr_assert_eq(precopy_engine_set_policy(H.src, &q), -EINVAL, "bw_window cannot change");
	q = p;
	q.downtime_limit_ns = 0;
	cr_assert_eq(precopy_policy_check(&q, NULL, 0), -EINVAL);
	cr_assert_eq(precopy_engine_set_policy(H.src, &q), -EINVAL, "an invalid policy");
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.downtime_limit_ns, p.downtime_limit_ns, "a refused policy changed nothing");
	q = p;
	q.downtime_limit_ns = p.downtime_limit_ns * 2;
	cr_assert_eq(precopy_engine_set_policy(H.src, &q), 0);
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.downtime_limit_ns, q.downtime_limit_ns);
}

Test(engine_api, first_pass_hands_out_every_page_once)
{
	struct precopy_ram_run runs[4];
	uint64_t pages = 0;
	int64_t n;

	base();
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	while ((n = precopy_engine_next_pages(H.src, runs, 4, 10)) > 0) {
		uint64_t batch = 0;
		for (int64_t i = 0; i < n; i++)
			batch += runs[i].pages;
		cr_assert_leq(batch, 10, "max_pages bounds a batch");
		pages += batch;
	}
	cr_assert_eq(pages, SLOT0_PAGES + SLOT1_PAGES, "holes are never dirty");
	cr_assert_eq(precopy_engine_next_pages(H.src, runs, 4, 0), 0);
	guest_writes(1);
	cr_assert_eq(precopy_engine_sync(H.src), 1);
	cr_assert_eq(precopy_engine_next_pages(H.src, runs, 4, 0), 1);
	cr_assert_eq(runs[0].pages, 1);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}

Test(engine_api, decisions_match_decide_c)
{
	struct precopy_estimator *ref;
	int err, saw_switch = 0;

	base();
	H.cfg.policy.downtime_limit_ns = 50000; /* makes it iterate and throttle for a while */
	h_engines();
	ref = precopy_estimator_new(&H.cfg.policy, &err);
	cr_assert(ref);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	for (int i = 0; i < 40 && !saw_switch; i++) {
		struct precopy_decision d, r;
		struct precopy_engine_decide_input in;
		struct precopy_device_status devs[MAXDEV];
		uint64_t b;

		cr_assert_geq(precopy_engine_sync(H.src), 0);
		b = copy_pages();
		cr_assert_geq(precopy_engine_pump(H.src, 16384), 0);
		cr_assert_eq(dest_drain(), 0);
		cr_assert_eq(precopy_engine_account(H.src, b, b), 0);
		guest_writes(4 + i % 5);
		device_dma();
		atomic_fetch_add(&vnow, 20000);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
		cr_assert_eq(precopy_engine_last_input(H.src, &in, devs, MAXDEV), 2);
		cr_assert_eq(precopy_estimator_record(ref, &in.iteration), 0);
		cr_assert_eq(precopy_estimator_decide(ref, devs, 2, in.ack_received, in.now_ns, &r), 0);
		cr_assert_str_eq(r.reason, d.reason);
		r.reason = d.reason;
		cr_assert_eq(memcmp(&r, &d, sizeof(r)), 0, "iteration %d: engine %s, decide.c %s", i,
			     precopy_action_name(d.action), precopy_action_name(r.action));
		saw_switch = d.action == PRECOPY_SWITCHOVER;
	}
	precopy_estimator_free(ref);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}

Test(engine_api, stats_json)
{
	struct precopy_engine_iter_stats it = { .iteration = 3, .rho = 0.5, .device_stop_copy = PRECOPY_UNBOUNDED,
						.expected_downtime_ns = PRECOPY_UNBOUNDED, .action = PRECOPY_WAIT_ACK };
	struct precopy_engine_downtime dt = { .total_ns = 10, .final_ram_ns = 4, .device_drain_ns = 3,
					      .transitions_ns = 2, .fixed_ns = 1, .expected_ns = 9 };
	char buf[1024];
	int n = precopy_engine_iter_json(&it, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_lt((size_t)n, sizeof(buf));
	cr_assert(strstr(buf, "\"device_stop_copy\":null"));
	cr_assert(strstr(buf, "\"action\":\"wait_ack\""));
	cr_assert(strstr(buf, "\"rho\":0.5"));
	n = precopy_engine_downtime_json(&dt, buf, sizeof(buf));
	cr_assert_str_eq(buf, "{\"total_ns\":10,\"final_ram_ns\":4,\"final_ram_pages\":0,\"device_drain_ns\":3,"
			      "\"device_bytes\":0,\"transitions_ns\":2,\"fixed_ns\":1,\"expected_ns\":9}");
	cr_assert_eq(precopy_engine_iter_json(NULL, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(precopy_engine_downtime_json(&dt, buf, 4), n);
	cr_assert_eq(strlen(buf), 3);
}

/* A completed migration leaves the source devices in STOP. A new start
 * reads every device's state and refuses, naming the device and its state,
 * until the VMM has resumed each one; nothing is moved or started before.
 * Then the migration works. */
Test(engine_api, restart_needs_running_devices)
{
	struct precopy_fake_vfio_stats before, after;
	struct precopy_engine_stats st;
	struct run_result rr;
	struct vfio_device_feature_mig_state ms = { .device_state = VFIO_DEVICE_STATE_RUNNING, .data_fd = -1 };

	base();
	h_engines();
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert_eq(fake_state(H.sdev[0]), VFIO_DEVICE_STATE_STOP);
	precopy_fake_vfio_get_stats(H.sdev[1], &before);
	cr_assert_eq(precopy_engine_start(H.src), -EINVAL);
	cr_assert_str_eq(precopy_engine_strerror(H.src),
			 "start: device 10 (fake) is in STOP, not RUNNING: resume it before migrating");
	/* the VMM resumes the first device only */
	cr_assert_eq(precopy_vfio_feature(H.ssys, H.sfd[0], VFIO_DEVICE_FEATURE_SET,
					  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms)), 0);
	cr_assert_eq(precopy_engine_start(H.src), -EINVAL);
	cr_assert_str_eq(precopy_engine_strerror(H.src),
			 "start: device 11 (fake) is in STOP, not RUNNING: resume it before migrating");
	precopy_fake_vfio_get_stats(H.sdev[1], &after);
	cr_assert_eq(after.arcs, before.arcs, "start moved a device although it refused");
	cr_assert_eq(after.logging, 0, "start began DMA logging although it refused");
	cr_assert_eq(fake_state(H.sdev[0]), VFIO_DEVICE_STATE_RUNNING);
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.phase, PRECOPY_ENGINE_DONE);
	cr_assert_eq(precopy_vfio_feature(H.ssys, H.sfd[1], VFIO_DEVICE_FEATURE_SET,
					  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms)), 0);
	h_migrate_ok();
	cr_assert_eq(fake_state(H.sdev[0]), VFIO_DEVICE_STATE_STOP);
}
