/* SPDX-License-Identifier: MIT */
/* The policy's throttle and timeout decisions reached end to end: a guest
 * that dirties far more than a slow link can carry (the VMM applies each
 * THROTTLE level to it, which slows it but not enough), on the engine's
 * virtual clock. The throttle must rise from its initial level by its
 * increment up to its maximum; then the timeout ends the migration:
 * ABORT under the cancel policy (the VMM cancels, every device RUNNING, and
 * a later migration of a quieter guest succeeds), FORCE_SWITCHOVER under
 * the force policy (the switchover happens above the limit and the
 * destination still gets every page). */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_policy, .fini = fini);

#define LINK_NS_PER_BYTE 10 /* 100 MB/s */
#define TIMEOUT_NS 150000000ull

struct outcome {
	uint32_t levels[16];
	int nlevels;
	int iterations;
	struct precopy_decision last;
};

static void stuck(uint32_t timeout_action, struct outcome *o)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	uint32_t throttle = 0;
	uint64_t t0;

	memset(o, 0, sizeof(*o));
	h_setup(2, flags, 1);
	/* the devices alone need ~0.22 ms at 100 MB/s (20500 stop-copy bytes,
	 * fixed, transitions): a 1 ms limit leaves the RAM as what is stuck */
	H.cfg.policy.downtime_limit_ns = 1000000;
	H.cfg.policy.throttle_initial = 20;
	H.cfg.policy.throttle_increment = 10;
	H.cfg.policy.throttle_max = 60;
	H.cfg.policy.stall_iterations = 2;
	H.cfg.policy.throttle_period_ns = 10000000; /* steps every >= 10 ms of this short run */
	H.cfg.policy.bw_window = 3;
	H.cfg.policy.timeout_ns = TIMEOUT_NS;
	H.cfg.policy.timeout_action = timeout_action;
	h_engines();
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	t0 = atomic_load(&vnow);
	for (o->iterations = 1; o->iterations < 300; o->iterations++) {
		struct precopy_decision *d = &o->last;
		uint64_t bytes, send_ns;

		cr_assert_geq(precopy_engine_sync(H.src), 0, "%s", precopy_engine_strerror(H.src));
		bytes = copy_pages();
		send_ns = bytes * LINK_NS_PER_BYTE;
		atomic_fetch_add(&vnow, send_ns);
		cr_assert_geq(precopy_engine_pump(H.src, 0), 0, "%s", precopy_engine_strerror(H.src));
		cr_assert_eq(precopy_engine_account(H.src, bytes, send_ns), 0);
		cr_assert_eq(dest_drain(), 0, "%s", precopy_dest_strerror(H.dst));
		/* the guest, slowed by the throttle the VMM applies */
		guest_writes((int)(150 * (100 - throttle) / 100));
		device_dma();
		atomic_fetch_add(&vnow, 1000000);
		cr_assert_eq(precopy_engine_decide(H.src, d), 0, "%s", precopy_engine_strerror(H.src));
		cr_assert_neq(d->action, PRECOPY_SWITCHOVER, "iteration %d: this workload cannot meet the limit",
			      o->iterations);
		if (d->action == PRECOPY_THROTTLE) {
			cr_assert_lt(o->nlevels, 16);
			o->levels[o->nlevels++] = d->throttle;
			throttle = d->throttle;
		}
		cr_assert_eq(d->throttle, throttle, "decisions report the level in force");
		if (d->action == PRECOPY_ABORT || d->action == PRECOPY_FORCE_SWITCHOVER)
			break;
	}
	cr_assert(o->last.action == PRECOPY_ABORT || o->last.action == PRECOPY_FORCE_SWITCHOVER,
		  "no timeout decision in %d iterations", o->iterations);
	/* the timeout is measured on the engine's clock from the first iteration */
	cr_assert_geq(o->last.iteration, 2);
	cr_assert_geq(atomic_load(&vnow) - t0, TIMEOUT_NS);
	cr_assert(o->last.blocked & PRECOPY_BLOCK_DOWNTIME);
	cr_assert_eq(o->last.blocked & PRECOPY_BLOCK_ACK, 0, "the ACK arrived: only the downtime blocks");
	cr_assert(o->last.expected_downtime_ns > H.cfg.policy.downtime_limit_ns);
	cr_assert_neq(o->last.stalled_since_ns, 0);
	/* 20, 30, 40, 50, 60: every step, in order, up to the maximum */
	cr_assert_eq(o->nlevels, 5, "throttle levels seen: %d", o->nlevels);
	for (int i = 0; i < o->nlevels; i++)
		cr_assert_eq(o->levels[i], 20u + 10u * (uint32_t)i, "level %d is %u", i, o->levels[i]);
}

Test(engine_policy, throttle_then_abort_on_timeout)
{
	struct outcome o;
	struct precopy_engine_stats st;

	stuck(PRECOPY_TIMEOUT_CANCEL, &o);
	cr_assert_eq(o.last.action, PRECOPY_ABORT);
	cr_assert_str_eq(o.last.reason, "timeout: downtime limit not met");
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.last.action, PRECOPY_ABORT);
	cr_assert_eq(st.last.throttle, 60);
	/* the VMM cancels: the VM keeps running on the source */
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
	/* a quieter guest then migrates on the same engine */
	h_migrate_ok();
}

Test(engine_policy, throttle_then_force_on_timeout)
{
	struct outcome o;
	struct precopy_engine_stats st;
	uint64_t bytes;

	stuck(PRECOPY_TIMEOUT_FORCE, &o);
	cr_assert_eq(o.last.action, PRECOPY_FORCE_SWITCHOVER);
	cr_assert_str_eq(o.last.reason, "timeout: forcing switchover above the downtime limit");
	/* the VMM stops the vCPUs and switches over anyway */
	cr_assert_eq(precopy_engine_switchover(H.src), 0, "%s", precopy_engine_strerror(H.src));
	bytes = copy_pages();
	cr_assert_eq(precopy_engine_account(H.src, bytes, bytes * LINK_NS_PER_BYTE), 0);
	cr_assert_eq(dest_drain(), 0);
	cr_assert_eq(precopy_dest_ended(H.dst), 1);
	cr_assert_eq(precopy_dest_complete(H.dst), 0, "%s", precopy_dest_strerror(H.dst));
	cr_assert_eq(precopy_engine_complete(H.src), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(ram_equal(), "a forced switchover still moves every page");
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert(st.downtime.expected_ns > H.cfg.policy.downtime_limit_ns,
		  "the downtime breakdown records the expected overrun: %llu",
		  (unsigned long long)st.downtime.expected_ns);
	cr_assert_gt(st.downtime.final_ram_pages, 0);
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats d;
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_eq(d.resume_ok, 1);
	}
}
