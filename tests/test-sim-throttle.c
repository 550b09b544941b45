/* SPDX-License-Identifier: MIT */
/* The engine's throttle rule (estimator/estimator.c, docs/decisions.md)
 * driving precopy-sim end to end: a guest that dirties twice what the link
 * carries is throttled two 1 s periods after the migration starts, one step
 * per period at most, and converges within 10% of QEMU's auto-converge
 * rule on the same engine and workload; a device floor above the limit is
 * never throttled; on the shipped trace.ini (issue 18's target) the
 * engine's total time is at most 10% above QEMU's, both meeting the limit. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "precopy/engine.h"
#include "../sim/simulator.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define MS 1000000ull
#define S 1000000000ull

/* 1 GiB guest writing random pages at 2 GiB/s over a 1 GiB/s link, 300 ms
 * limit, throttle 20 / +10 / 99 (the engine's and QEMU's). */
static struct sim_scenario outpacing(int policy)
{
	struct sim_scenario sc;

	sim_scenario_init(&sc);
	snprintf(sc.source, sizeof(sc.source), "test");
	sc.memory = 1 * GiB;
	sc.bandwidth_Bps = 1 * GiB;
	sc.rate_Bps = 2 * GiB;
	sc.model = SIM_MODEL_UNIFORM;
	sc.latency_ns = 0;
	sc.downtime_limit_ns = 300 * MS;
	sc.throttle_initial = 20;
	sc.throttle_increment = 10;
	sc.throttle_max = 99;
	sc.timeout_ns = 60 * S;
	sc.policy = policy;
	return sc;
}

static void run_ok(const struct sim_scenario *sc, struct sim_result *r)
{
	int e = sim_run(sc, r, NULL, NULL);

	cr_assert_eq(e, 0, "sim_run: %d: %s", e, r->error);
	cr_assert_neq(r->outcome, SIM_FAILED, "run failed: %s", r->error);
}

Test(sim_throttle, starts_when_dirtying_outpaces_sending, .timeout = 120)
{
	struct sim_scenario sc = outpacing(SIM_POLICY_PRECOPY);
	struct sim_result r, q;
	uint64_t first = 0, last = 0;
	unsigned steps = 0;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER, "%s (%s)", sim_outcome_name(r.outcome), r.error);
	cr_assert_leq(r.downtime_ns, r.downtime_limit_ns, "downtime %llu ns", (unsigned long long)r.downtime_ns);
	for (size_t i = 0; i < r.niters; i++) {
		if (r.iters[i].action != PRECOPY_THROTTLE)
			continue;
		if (!first)
			first = r.iters[i].t_ns;
		else
			cr_assert_geq(r.iters[i].t_ns - last, 1 * S, "steps %.3f s and %.3f s: closer than a period",
				      last / 1e9, r.iters[i].t_ns / 1e9);
		last = r.iters[i].t_ns;
		steps++;
	}
	/* the first pass takes about 1 s; two periods of 1 s later at most */
	cr_assert_gt(first, 0, "never throttled");
	cr_assert_leq(first, 3200 * MS, "first throttle at %.3f s", first / 1e9);
	cr_assert_geq(steps, 2, "%u steps", steps);
	cr_assert_eq(r.max_throttle, 20 + 10 * (steps - 1), "max %u%% after %u steps", r.max_throttle, steps);

	sc = outpacing(SIM_POLICY_QEMU);
	run_ok(&sc, &q);
	cr_assert_eq(q.outcome, SIM_SWITCHOVER, "qemu: %s", sim_outcome_name(q.outcome));
	cr_assert_leq(r.total_ns, q.total_ns + q.total_ns / 10, "engine %.3f s, qemu's rule %.3f s", r.total_ns / 1e9,
		      q.total_ns / 1e9);
	cr_log_info("sim_throttle: engine %.3f s (first step %.3f s, max %u%%), qemu's rule %.3f s (max %u%%)",
		    r.total_ns / 1e9, first / 1e9, r.max_throttle, q.total_ns / 1e9, q.max_throttle);
	sim_result_release(&r);
	sim_result_release(&q);
}

Test(sim_throttle, device_floor_is_never_throttled, .timeout = 60)
{
	/* the same guest, plus a device whose 400 MiB of stop-copy state alone
	 * takes 390 ms at the bandwidth: no throttle can meet 300 ms */
	struct sim_scenario sc = outpacing(SIM_POLICY_PRECOPY);
	struct sim_result r;

	sc.timeout_ns = 20 * S;
	sc.ndevs = 1;
	sim_device_init(&sc.devs[0], "gpu0");
	sc.devs[0].stop_copy_bytes = 400 * MiB;
	sc.devs[0].transition_ns = 5 * MS;
	sc.devs[0].pre_copy = 0;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_CANCELLED, "%s (%s)", sim_outcome_name(r.outcome), r.error);
	cr_assert_eq(r.max_throttle, 0, "throttled to %u%% under a device floor", r.max_throttle);
	cr_assert_geq(r.stalled_at_ns, 0, "the floor was never reported");
	cr_assert_leq((uint64_t)r.stalled_at_ns, 2 * S, "the floor reported at %.3f s", r.stalled_at_ns / 1e9);
	sim_result_release(&r);
}

Test(sim_throttle, trace_ini_within_ten_percent_of_qemu, .timeout = 300)
{
	struct sim_scenario sc;
	struct sim_result r, q;
	char err[256];

	sim_scenario_init(&sc);
	cr_assert_eq(sim_scenario_load(&sc, "sim/scenarios/trace.ini", err, sizeof(err)), 0,
		     "%s (run the tests from the source tree's root)", err);
	sc.policy = SIM_POLICY_PRECOPY;
	run_ok(&sc, &r);
	sc.policy = SIM_POLICY_QEMU;
	run_ok(&sc, &q);
	cr_assert_eq(q.outcome, SIM_SWITCHOVER, "qemu's rule: %s", sim_outcome_name(q.outcome));
	cr_assert_leq(q.downtime_ns, q.downtime_limit_ns, "qemu's rule no longer meets the limit");
	cr_assert_eq(r.outcome, SIM_SWITCHOVER, "engine: %s (%s)", sim_outcome_name(r.outcome), r.error);
	cr_assert_leq(r.downtime_ns, r.downtime_limit_ns, "engine downtime %.1f ms", r.downtime_ns / 1e6);
	cr_assert_leq(r.total_ns, q.total_ns + q.total_ns / 10, "engine %.2f s, qemu's rule %.2f s", r.total_ns / 1e9,
		      q.total_ns / 1e9);
	cr_log_info("sim_throttle: trace.ini: engine %.2f s, qemu's rule %.2f s", r.total_ns / 1e9, q.total_ns / 1e9);
	sim_result_release(&r);
	sim_result_release(&q);
	sim_scenario_release(&sc);
}
