/* SPDX-License-Identifier: MIT */
/* Estimates and switchover decisions: table-driven. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "precopy/engine.h"

#define MS 1000000ull
#define S 1000000000ull
#define MiB (1024ull * 1024)
#define GB 1000000000ull

static struct precopy_estimator *make(struct precopy_policy *p)
{
	int err = 1;
	struct precopy_estimator *e = precopy_estimator_new(p, &err);

	cr_assert_not_null(e, "estimator_new failed: %d", err);
	cr_assert_eq(err, 0);
	return e;
}

/* One iteration of `dur` ns sending `sent` bytes at full time, dirtying `dirtied`. */
static void rec(struct precopy_estimator *e, uint64_t *t, uint64_t dur, uint64_t sent,
		uint64_t dirtied, uint64_t pending)
{
	struct precopy_iteration it = {
		.send_ns = dur, .bytes_sent = sent, .dirtied_bytes = dirtied, .ram_pending = pending,
	};
	*t += dur;
	it.end_ns = *t;
	cr_assert_eq(precopy_estimator_record(e, &it), 0);
}

struct model_case {
	const char *name;
	uint64_t ram, bw, fixed;
	struct precopy_device_status dev[2];
	size_t ndev;
	uint64_t expect_ns;
	uint64_t expect_pending;
};

Test(decide, downtime_model_table)
{
	const uint64_t U = PRECOPY_UNBOUNDED;
	struct model_case cases[] = {
		{ "ram only", 100 * MiB, 100 * MiB, 0, {{0}}, 0, 1 * S, 100 * MiB },
		{ "ram + fixed", 50 * MiB, 100 * MiB, 5 * MS, {{0}}, 0, 505 * MS, 50 * MiB },
		{ "device stop-copy counted", 0, 100 * MiB, 0,
		  { { .stop_copy_bytes = 100 * MiB, .stop_copy_known = 1 } }, 1, 1 * S, 100 * MiB },
		{ "precopy bytes + transitions", 0, 100 * MiB, 0,
		  { { .initial_bytes = 10 * MiB, .dirty_bytes = 40 * MiB, .stop_copy_known = 1,
		      .transition_ns = 20 * MS },
		    { .stop_copy_bytes = 50 * MiB, .stop_copy_known = 1, .transition_ns = 30 * MS } },
		  2, 1 * S + 50 * MS, 100 * MiB },
		{ "unknown stop-copy size is unbounded", 0, 100 * MiB, 0,
		  { { .stop_copy_bytes = 1, .stop_copy_known = 0 } }, 1, U, U },
		{ "absurd device size saturates", 1, 100 * MiB, 0,
		  { { .stop_copy_bytes = UINT64_MAX - 1, .stop_copy_known = 1 },
		    { .stop_copy_bytes = UINT64_MAX, .stop_copy_known = 1 } }, 2, U, U },
		{ "no bandwidth is unbounded", 1, 0, 0, {{0}}, 0, U, 1 },
		{ "nothing pending, no bandwidth: fixed only", 0, 0, 7 * MS, {{0}}, 0, 7 * MS, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct precopy_decision d;
		struct model_case *c = &cases[i];

		memset(&d, 0, sizeof(d));
		precopy_downtime_model(c->ram, c->dev, c->ndev, c->bw, c->fixed, &d);
		cr_expect_eq(d.expected_downtime_ns, c->expect_ns, "%s: downtime %llu, want %llu", c->name,
			     (unsigned long long)d.expected_downtime_ns, (unsigned long long)c->expect_ns);
		cr_expect_eq(d.pending_bytes, c->expect_pending, "%s: pending %llu, want %llu", c->name,
			     (unsigned long long)d.pending_bytes, (unsigned long long)c->expect_pending);
	}
}

struct decide_case {
	const char *name;
	uint64_t ram_pending;
	struct precopy_device_status dev;
	size_t ndev;
	int ack;
	uint32_t action;
	uint32_t blocked;
};

Test(decide, switchover_conditions_table)
{
	/* bandwidth 1 GB/s measured; limit 300 ms, fixed 0 */
	struct decide_case cases[] = {
		{ "fits, no devices", 100 * 1000 * 1000, {0}, 0, 0, PRECOPY_SWITCHOVER, 0 },
		{ "too big", 400 * 1000 * 1000, {0}, 0, 0, PRECOPY_CONTINUE, PRECOPY_BLOCK_DOWNTIME },
		{ "precopy device still has initial bytes", 0,
		  { .initial_bytes = 1, .stop_copy_known = 1, .pre_copy = 1 }, 1, 1, PRECOPY_CONTINUE,
		  PRECOPY_BLOCK_INITIAL_BYTES },
		{ "precopy device done, no ack yet", 0, { .stop_copy_known = 1, .pre_copy = 1 }, 1, 0,
		  PRECOPY_WAIT_ACK, PRECOPY_BLOCK_ACK },
		{ "precopy device done, ack", 0, { .stop_copy_known = 1, .pre_copy = 1 }, 1, 1,
		  PRECOPY_SWITCHOVER, 0 },
		{ "device without PRE_COPY needs no ack", 0,
		  { .stop_copy_bytes = 1000, .stop_copy_known = 1 }, 1, 0, PRECOPY_SWITCHOVER, 0 },
		{ "unknown stop-copy size blocks", 0, { .stop_copy_known = 0 }, 1, 1, PRECOPY_CONTINUE,
		  PRECOPY_BLOCK_UNKNOWN_SIZE | PRECOPY_BLOCK_DOWNTIME },
		{ "device state pushes past the limit", 100 * 1000 * 1000,
		  { .stop_copy_bytes = 250 * 1000 * 1000, .stop_copy_known = 1 }, 1, 1, PRECOPY_CONTINUE,
		  PRECOPY_BLOCK_DOWNTIME },
		{ "transition latency pushes past the limit", 250 * 1000 * 1000,
		  { .stop_copy_known = 1, .transition_ns = 60 * MS }, 1, 1, PRECOPY_CONTINUE,
		  PRECOPY_BLOCK_DOWNTIME },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct precopy_policy p;
		struct precopy_decision d;
		struct decide_case *c = &cases[i];
		uint64_t t = 0;

		precopy_policy_defaults(&p);
		p.fixed_downtime_ns = 0;
		struct precopy_estimator *e = make(&p);
		rec(e, &t, 1 * S, 1 * GB, 0, c->ram_pending);
		cr_assert_eq(precopy_estimator_decide(e, &c->dev, c->ndev, c->ack, t, &d), 0);
		cr_expect_eq(d.action, c->action, "%s: action %s, want %s", c->name,
			     precopy_action_name(d.action), precopy_action_name(c->action));
		cr_expect_eq(d.blocked, c->blocked, "%s: blocked %#x, want %#x", c->name, d.blocked,
			     c->blocked);
		precopy_estimator_free(e);
	}
}

Test(decide, nothing_measured_yet)
{
	struct precopy_policy p;
	struct precopy_decision d;

	precopy_policy_defaults(&p);
	struct precopy_estimator *e = make(&p);
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, 0, &d), 0);
	cr_expect_eq(d.action, PRECOPY_CONTINUE);
	cr_expect(d.blocked & PRECOPY_BLOCK_NO_BANDWIDTH);
	precopy_estimator_free(e);
}

Test(decide, bandwidth_is_windowed_and_overridable)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t t = 0;

	precopy_policy_defaults(&p);
	p.bw_window = 2;
	struct precopy_estimator *e = make(&p);
	rec(e, &t, 1 * S, 100 * GB, 0, 0); /* old outlier, falls out of the window */
	rec(e, &t, 1 * S, 1 * GB, 0, 0);
	rec(e, &t, 1 * S, 3 * GB, 0, 0);
	precopy_estimator_decide(e, NULL, 0, 0, t, &d);
	cr_expect_eq(d.bandwidth_Bps, 2 * GB, "windowed bandwidth %llu",
		     (unsigned long long)d.bandwidth_Bps);
	precopy_estimator_free(e);

	p.switchover_bw_Bps = 5 * GB;
	e = make(&p);
	t = 0;
	rec(e, &t, 1 * S, 1 * GB, 0, 0);
	precopy_estimator_decide(e, NULL, 0, 0, t, &d);
	cr_expect_eq(d.bandwidth_Bps, 5 * GB);
	precopy_estimator_free(e);
}

/* A policy replaced between decisions applies to the next one; the
 * records and the throttle level stay (the level under the new maximum). */
Test(decide, set_policy_applies_to_the_next_decision)
{
	struct precopy_policy p, q;
	struct precopy_decision d;
	uint64_t t = 0;

	precopy_policy_defaults(&p);
	p.fixed_downtime_ns = 5 * MS;
	struct precopy_estimator *e = make(&p);
	rec(e, &t, 1 * S, 1 * GB, 0, 250 * 1000000ull); /* 250 ms at 1 GB/s */
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, t, &d), 0);
	cr_expect_eq(d.action, PRECOPY_SWITCHOVER);
	cr_expect_eq(d.expected_downtime_ns, 255 * MS);

	q = p;
	q.fixed_downtime_ns = 60 * MS; /* measured: the stop path is slow now */
	cr_assert_eq(precopy_estimator_set_policy(e, &q), 0);
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, t, &d), 0);
	cr_expect_eq(d.expected_downtime_ns, 310 * MS);
	cr_expect_eq(d.action, PRECOPY_CONTINUE);
	cr_expect(d.blocked & PRECOPY_BLOCK_DOWNTIME);

	q.downtime_limit_ns = 400 * MS;
	cr_assert_eq(precopy_estimator_set_policy(e, &q), 0);
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, t, &d), 0);
	cr_expect_eq(d.action, PRECOPY_SWITCHOVER);

	/* refused: the policy in force stays */
	q.bw_window = p.bw_window + 1;
	cr_expect_eq(precopy_estimator_set_policy(e, &q), -EINVAL);
	q.bw_window = p.bw_window;
	q.downtime_limit_ns = 0;
	cr_expect_eq(precopy_estimator_set_policy(e, &q), -EINVAL);
	cr_expect_eq(precopy_estimator_set_policy(NULL, &p), -EINVAL);
	cr_expect_eq(precopy_estimator_set_policy(e, NULL), -EINVAL);
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, t, &d), 0);
	cr_expect_eq(d.action, PRECOPY_SWITCHOVER, "the 400 ms limit still applies");
	precopy_estimator_free(e);

	/* a throttle level above a lowered maximum comes down to it */
	precopy_policy_defaults(&p);
	p.throttle_initial = 50;
	p.throttle_increment = 10;
	e = make(&p);
	t = 0;
	for (int i = 0; i < 3 && d.action != PRECOPY_THROTTLE; i++) {
		rec(e, &t, 1 * S, 1 * GB, 1 * GB, 2 * GB);
		precopy_estimator_decide(e, NULL, 0, 0, t, &d);
	}
	cr_assert_eq(d.action, PRECOPY_THROTTLE);
	cr_assert_eq(d.throttle, 50);
	q = p;
	q.throttle_initial = 20;
	q.throttle_max = 30;
	cr_assert_eq(precopy_estimator_set_policy(e, &q), 0);
	rec(e, &t, 100 * MS, 100 * MiB, 100 * MiB, 2 * GB); /* within the period: no step */
	cr_assert_eq(precopy_estimator_decide(e, NULL, 0, 0, t, &d), 0);
	cr_expect_eq(d.throttle, 30, "level %u", d.throttle);
	precopy_estimator_free(e);
}

Test(decide, geometric_prediction)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t t = 0;

	precopy_policy_defaults(&p);
	p.fixed_downtime_ns = 0;
	struct precopy_estimator *e = make(&p);
	/* 1 GB/s, half of what is sent is dirtied again: rho = 0.5 */
	rec(e, &t, 1 * S, 1 * GB, GB / 2, 1 * GB);
	precopy_estimator_decide(e, NULL, 0, 0, t, &d);
	cr_expect(fabs(d.rho - 0.5) < 1e-9, "rho %g", d.rho);
	/* budget 0.3 GB: 1 GB * 0.5^n <= 0.3 GB -> n = 2; time = 1 GB (1 - 0.25) / 0.5 / 1 GB/s */
	cr_expect_eq(d.predicted_iterations, 2);
	cr_expect(llabs((long long)d.predicted_time_ns - (long long)(1500 * MS)) < 1000,
		  "predicted %llu ns", (unsigned long long)d.predicted_time_ns);
	cr_expect_eq(d.stalled, 0);
	precopy_estimator_free(e);
}

Test(decide, rho_at_or_above_one_stalls_and_throttles_step_by_step)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t t = 0;
	uint32_t seen[16];
	unsigned nthrottle = 0;

	precopy_policy_defaults(&p); /* 1 s throttle periods: one per iteration here */
	p.stall_iterations = 2;
	p.throttle_initial = 30;
	p.throttle_increment = 30;
	p.throttle_max = 80;
	struct precopy_estimator *e = make(&p);
	for (int i = 0; i < 12; i++) {
		rec(e, &t, 1 * S, 1 * GB, 1 * GB, 2 * GB); /* rho = 1: never converges */
		precopy_estimator_decide(e, NULL, 0, 0, t, &d);
		cr_expect(d.action == PRECOPY_CONTINUE || d.action == PRECOPY_THROTTLE);
		if (i >= 1)
			cr_expect_eq(d.stalled, 1, "iteration %d not stalled", i);
		if (d.action == PRECOPY_THROTTLE)
			seen[nthrottle++] = d.throttle;
	}
	cr_assert_eq(nthrottle, 3, "throttle steps %u", nthrottle);
	cr_expect_eq(seen[0], 30);
	cr_expect_eq(seen[1], 60);
	cr_expect_eq(seen[2], 80);
	cr_expect_eq(d.throttle, 80, "level is remembered");
	cr_expect_eq(d.stalled_since_ns, 2 * S, "first stall reported at the second iteration");
	cr_expect_eq(d.predicted_iterations, PRECOPY_UNBOUNDED);
	precopy_estimator_free(e);
}

Test(decide, working_set_floor_is_reported_before_timeout)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t t = 0;
	int stalled_at = -1;

	precopy_policy_defaults(&p);
	p.throttle_initial = 0; /* detection only */
	p.timeout_ns = 600 * S;
	struct precopy_estimator *e = make(&p);
	/* rho 0.2 but 1 GB stays dirty (hot set): no progress. W = 1 GB takes
	 * 1 s at 1 GB/s: flat over 2 s, i.e. from the third iteration on, it is
	 * the working-set floor (and no longer the 4 iterations of "no
	 * progress") */
	for (int i = 0; i < 10; i++) {
		rec(e, &t, 1 * S, 1 * GB, GB / 5, 1 * GB);
		precopy_estimator_decide(e, NULL, 0, 0, t, &d);
		if (d.stalled && stalled_at < 0)
			stalled_at = i;
		cr_expect_eq(d.action, PRECOPY_CONTINUE);
	}
	cr_expect_eq(stalled_at, 2, "stall first reported at iteration %d", stalled_at);
	cr_expect(d.stalled_since_ns < p.timeout_ns);
	cr_expect(d.blocked & PRECOPY_BLOCK_WORKING_SET, "blocked %#x", d.blocked);
	cr_expect_eq(d.working_set_bytes, 1 * GB);
	cr_expect_eq(d.working_set_floor_ns, 1 * S + 5 * MS, "floor %llu", (unsigned long long)d.working_set_floor_ns);
	cr_expect(d.rho < 1.0, "rho %g", d.rho);
	cr_expect_eq(d.predicted_time_ns, PRECOPY_UNBOUNDED, "a floor is not predicted to converge");
	cr_expect(strstr(d.reason, "working-set floor"), "reason \"%s\"", d.reason);
	precopy_estimator_free(e);
}

Test(decide, converging_run_is_not_a_stall)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t t = 0, pending = 8 * GB;

	precopy_policy_defaults(&p);
	struct precopy_estimator *e = make(&p);
	for (int i = 0; i < 6; i++) {
		rec(e, &t, 1 * S, 1 * GB, GB / 2, pending);
		pending /= 2;
		precopy_estimator_decide(e, NULL, 0, 0, t, &d);
		cr_expect_eq(d.stalled, 0, "iteration %d", i);
	}
	precopy_estimator_free(e);
}

struct timeout_case {
	const char *name;
	uint32_t action_policy;
	int pre_copy, ack;
	uint32_t want;
	const char *reason_part;
};

Test(decide, timeout_table)
{
	struct timeout_case cases[] = {
		{ "cancel", PRECOPY_TIMEOUT_CANCEL, 0, 0, PRECOPY_ABORT, "downtime limit" },
		{ "force", PRECOPY_TIMEOUT_FORCE, 0, 0, PRECOPY_FORCE_SWITCHOVER, "forcing" },
		{ "force with ack", PRECOPY_TIMEOUT_FORCE, 1, 1, PRECOPY_FORCE_SWITCHOVER, "forcing" },
		{ "force never skips the ack", PRECOPY_TIMEOUT_FORCE, 1, 0, PRECOPY_ABORT, "ack" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct precopy_policy p;
		struct precopy_decision d;
		struct precopy_device_status dev = { .stop_copy_known = 1, .pre_copy = 1 };
		uint64_t t = 0;

		precopy_policy_defaults(&p);
		p.timeout_ns = 10 * S;
		p.timeout_action = cases[i].action_policy;
		struct precopy_estimator *e = make(&p);
		rec(e, &t, 1 * S, 1 * GB, 0, 50 * GB);
		precopy_estimator_decide(e, &dev, cases[i].pre_copy, cases[i].ack, 5 * S, &d);
		cr_expect_neq(d.action, cases[i].want, "%s: acted before the timeout", cases[i].name);
		precopy_estimator_decide(e, &dev, cases[i].pre_copy, cases[i].ack, 10 * S, &d);
		cr_expect_eq(d.action, cases[i].want, "%s: %s", cases[i].name, precopy_action_name(d.action));
		cr_expect(strstr(d.reason, cases[i].reason_part), "%s: reason '%s'", cases[i].name, d.reason);
		precopy_estimator_free(e);
	}
}

Test(decide, bad_input)
{
	struct precopy_policy p;
	struct precopy_decision d;
	struct precopy_iteration it = { .end_ns = 10 };
	int err = 0;

	precopy_policy_defaults(&p);
	struct precopy_policy bad[8];
	for (int i = 0; i < 8; i++)
		bad[i] = p;
	bad[0].version = 99;
	bad[1].downtime_limit_ns = 0;
	bad[2].throttle_max = 100;
	bad[3].throttle_initial = 50, bad[3].throttle_max = 40;
	bad[4].stall_iterations = 0;
	bad[5].bw_window = 0;
	bad[6].bw_window = 65;
	bad[7].timeout_action = 2;
	for (int i = 0; i < 8; i++) {
		cr_expect_null(precopy_estimator_new(&bad[i], &err), "bad policy %d accepted", i);
		cr_expect_eq(err, -EINVAL, "bad policy %d: %d", i, err);
	}
	cr_expect_null(precopy_estimator_new(NULL, &err));
	cr_expect_eq(err, -EINVAL);

	struct precopy_estimator *e = make(&p);
	cr_expect_eq(precopy_estimator_record(e, &it), 0);
	it.end_ns = 5;
	cr_expect_eq(precopy_estimator_record(e, &it), -EINVAL, "time going backwards");
	cr_expect_eq(precopy_estimator_record(NULL, &it), -EINVAL);
	cr_expect_eq(precopy_estimator_decide(e, NULL, 1, 0, 0, &d), -EINVAL);
	cr_expect_eq(precopy_estimator_decide(e, NULL, 0, 0, 0, NULL), -EINVAL);
	precopy_estimator_free(e);
}

Test(decide, json)
{
	struct precopy_decision d;
	struct precopy_device_status dev = { .stop_copy_known = 0 };
	char buf[1024];
	int n;

	memset(&d, 0, sizeof(d));
	d.reason = "";
	precopy_downtime_model(10, &dev, 1, 100, 0, &d);
	d.rho = INFINITY;
	n = precopy_decision_json(&d, buf, sizeof(buf));
	cr_assert(n > 0 && (size_t)n < sizeof(buf));
	cr_expect(strstr(buf, "\"expected_downtime_ns\":null"), "%s", buf);
	cr_expect(strstr(buf, "\"rho\":null"), "%s", buf);
	cr_expect(strstr(buf, "\"action\":\"continue\""), "%s", buf);
	/* truncation is reported, like snprintf */
	cr_expect_eq(precopy_decision_json(&d, buf, 10), n);
	cr_expect_eq(strlen(buf), 9);
}

/* The floor counts what pre-copy cannot move first: a device in PRE_COPY
 * whose stop-copy size (VFIO's MIG_DATA_SIZE) includes 300 MB of pre-copy
 * data still pending has a floor of the rest, 64 MB, and blocks nothing;
 * the same size on a device without PRE_COPY is its floor and blocks. At
 * 1 GB/s with 5 ms fixed and 20 ms of transitions. */
Test(decide, device_floor_excludes_pre_copy_pending)
{
	const uint64_t pend = 300 * 1000000ull, rest = 64 * 1000000ull;
	struct precopy_device_status pre = { .stop_copy_bytes = pend + rest, .stop_copy_known = 1,
					     .transition_ns = 20 * MS, .pre_copy = 1, .initial_bytes = 200 * 1000000ull,
					     .dirty_bytes = 100 * 1000000ull };
	struct precopy_device_status plain = { .stop_copy_bytes = pend + rest, .stop_copy_known = 1,
					       .transition_ns = 20 * MS };
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t now = 0;

	precopy_policy_defaults(&p);
	struct precopy_estimator *e = make(&p);
	rec(e, &now, 1 * S, 1 * GB, 0, 0);
	cr_assert_eq(precopy_estimator_decide(e, &pre, 1, 1, now, &d), 0);
	cr_assert_eq(d.device_floor_ns, rest + 25 * MS, "floor %llu ns", (unsigned long long)d.device_floor_ns);
	cr_assert(!(d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR), "pre-copy pending counted in the floor");
	cr_assert_eq(d.stalled, 0);
	cr_assert_eq(precopy_estimator_decide(e, &plain, 1, 1, now, &d), 0);
	cr_assert_eq(d.device_floor_ns, pend + rest + 25 * MS);
	cr_assert(d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR);
	/* pending above the size: the floor is the transitions and fixed */
	pre.stop_copy_bytes = 100 * 1000000ull;
	cr_assert_eq(precopy_estimator_decide(e, &pre, 1, 1, now, &d), 0);
	cr_assert_eq(d.device_floor_ns, 25 * MS);
	precopy_estimator_free(e);
}

/* A device floor (stop-copy bytes at the bandwidth + transitions + fixed)
 * above the limit blocks with its own bit, is a stall from the first
 * iteration, and never throttles, whatever the RAM does; just below the
 * limit it blocks nothing and the RAM's own rules apply. At 1 GB/s with
 * 5 ms fixed and 20 ms of transitions, 300 ms of limit leave 275 MB. */
Test(decide, device_floor_table)
{
	static const struct {
		const char *name;
		uint64_t stop_copy, ram_pending, dirtied;
		int floor_blocks;
	} t[] = {
		{ "floor 1 ms below the limit, RAM fits", 274 * 1000000ull, 0, 0, 0 },
		{ "floor 1 ms above the limit, RAM fits", 276 * 1000000ull, 0, 0, 1 },
		{ "floor above, RAM dirtier than the link", 357 * 1000000ull, 2 * GB, 2 * GB, 1 },
		{ "floor below, RAM dirtier than the link", 100 * 1000000ull, 2 * GB, 2 * GB, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_policy p;
		struct precopy_device_status dev = { .stop_copy_bytes = t[i].stop_copy, .stop_copy_known = 1,
						     .transition_ns = 20 * MS };
		struct precopy_decision d;
		uint64_t now = 0;
		int throttled = 0;

		precopy_policy_defaults(&p); /* 300 ms, 5 ms fixed, throttle 20/+10 */
		p.stall_iterations = 2;
		struct precopy_estimator *e = make(&p);
		for (int k = 0; k < 8; k++) {
			rec(e, &now, 1 * S, 1 * GB, t[i].dirtied, t[i].ram_pending);
			cr_assert_eq(precopy_estimator_decide(e, &dev, 1, 1, now, &d), 0);
			throttled |= d.action == PRECOPY_THROTTLE;
			if (t[i].floor_blocks) {
				cr_assert(d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR, "%s: iteration %d not blocked by the floor",
					  t[i].name, k + 1);
				cr_assert_eq(d.stalled, 1, "%s: iteration %d: the floor is a stall", t[i].name, k + 1);
				cr_assert_eq(d.stalled_since_ns, 1 * S, "%s: reported from the first iteration", t[i].name);
				cr_assert(strstr(d.reason, "device floor"), "%s: reason \"%s\"", t[i].name, d.reason);
			} else {
				cr_assert(!(d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR), "%s: blocked by the floor", t[i].name);
			}
		}
		cr_assert_eq(d.device_floor_ns, t[i].stop_copy + 25 * MS, "%s: floor %llu ns", t[i].name,
			     (unsigned long long)d.device_floor_ns);
		if (t[i].floor_blocks)
			cr_assert(!throttled, "%s: throttled although the floor is the devices'", t[i].name);
		else if (t[i].ram_pending)
			cr_assert(throttled, "%s: the RAM's stall no longer throttles", t[i].name);
		else
			cr_assert_eq(d.action, PRECOPY_SWITCHOVER, "%s: %s", t[i].name, precopy_action_name(d.action));
		precopy_estimator_free(e);
	}
}

/* The throttle rule on hand-made traces: iterations of `iter_ns` sending
 * 1 GB/s for their whole length, dirtying `dirty_pct` percent of what they
 * sent (or alternating with `alt_pct` when it is not 0), with `pending`
 * bytes still dirty after the first, times `pend_pct` percent after each
 * next one (100: flat). 1 GB/s, 300 ms limit, 5 ms fixed, throttle
 * 20 / +10 / 99 in 1 s periods. The times of the THROTTLE decisions must be
 * the expected ones (time since the start, in ms): the first after two
 * periods that outpaced (dirtied > 50% of sent), then one per period,
 * whatever the number of iterations in a period. */
Test(decide, throttle_trigger_table)
{
	static const struct {
		const char *name;
		uint64_t iter_ns;
		uint32_t dirty_pct, alt_pct;
		uint64_t pending;
		uint32_t pend_pct;
		uint64_t dev_stop_copy; /* a device of that stop-copy size, 20 ms of transitions */
		uint64_t run_ns;
		uint64_t steps_ms[8]; /* 0-terminated */
		uint32_t last_level;
	} t[] = {
		{ "1 s iterations, 75%: two periods, then one per period", 1 * S, 75, 0, 2 * GB, 100, 0, 5 * S,
		  { 2000, 3000, 4000, 5000 }, 50 },
		{ "100 ms iterations, 75%: the same times, 10 iterations a step", 100 * MS, 75, 0, 2 * GB, 100, 0,
		  5 * S, { 2000, 3000, 4000, 5000 }, 50 },
		{ "4 s iterations, 75%: an iteration is a period alone", 4 * S, 75, 0, 2 * GB, 100, 0, 16 * S,
		  { 8000, 12000, 16000 }, 40 },
		{ "40%: dirtying does not outpace sending", 1 * S, 40, 0, 2 * GB, 100, 0, 10 * S, { 0 }, 0 },
		{ "exactly 50%: not more than half", 1 * S, 50, 0, 2 * GB, 100, 0, 10 * S, { 0 }, 0 },
		{ "75% and 40% alternating: never two in a row", 1 * S, 75, 40, 2 * GB, 100, 0, 10 * S, { 0 }, 0 },
		{ "300 ms iterations, 75% and 40%: periods of 4 average 57%", 300 * MS, 75, 40, 2 * GB, 100, 0, 5 * S,
		  { 2400, 3600, 4800 }, 40 },
		{ "device floor above the limit: no throttle", 1 * S, 75, 0, 2 * GB, 100, 400 * 1000000ull, 10 * S,
		  { 0 }, 0 },
		{ "device floor below the limit: RAM throttled", 1 * S, 75, 0, 2 * GB, 100, 100 * 1000000ull, 3 * S,
		  { 2000, 3000 }, 30 },
		{ "converging within a period: no throttle", 1 * S, 60, 0, 400 * 1000000ull, 90, 0, 5 * S, { 0 }, 0 },
		{ "limit met: switchover, no throttle", 1 * S, 75, 0, 100 * 1000000ull, 100, 0, 1 * S, { 0 }, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_policy p;
		struct precopy_device_status dev = { .stop_copy_bytes = t[i].dev_stop_copy, .stop_copy_known = 1,
						     .transition_ns = 20 * MS };
		struct precopy_decision d;
		uint64_t now = 0, sent = (uint64_t)((unsigned __int128)GB * t[i].iter_ns / S);
		uint64_t pending = t[i].pending;
		unsigned nsteps = 0, want = 0, k = 0;

		while (want < 8 && t[i].steps_ms[want])
			want++;
		precopy_policy_defaults(&p);
		p.timeout_ns = 0;
		struct precopy_estimator *e = make(&p);
		while (now < t[i].run_ns) {
			uint32_t pct = t[i].alt_pct && (k & 1) ? t[i].alt_pct : t[i].dirty_pct;

			rec(e, &now, t[i].iter_ns, sent, sent / 100 * pct, pending);
			pending = pending / 100 * t[i].pend_pct;
			k++;
			cr_assert_eq(precopy_estimator_decide(e, &dev, t[i].dev_stop_copy ? 1 : 0, 1, now, &d), 0);
			if (d.action == PRECOPY_SWITCHOVER)
				break;
			if (d.action != PRECOPY_THROTTLE)
				continue;
			cr_assert_lt(nsteps, want, "%s: an extra step at %llu ms (%u%%)", t[i].name,
				     (unsigned long long)(now / MS), d.throttle);
			cr_assert_eq(now / MS, t[i].steps_ms[nsteps], "%s: step %u at %llu ms, want %llu ms",
				     t[i].name, nsteps + 1, (unsigned long long)(now / MS),
				     (unsigned long long)t[i].steps_ms[nsteps]);
			cr_assert(strlen(d.reason) > 0, "%s: a throttle says why", t[i].name);
			nsteps++;
		}
		cr_assert_eq(nsteps, want, "%s: %u steps, want %u", t[i].name, nsteps, want);
		cr_assert_eq(d.throttle, t[i].last_level, "%s: level %u, want %u", t[i].name, d.throttle,
			     t[i].last_level);
		if (t[i].dev_stop_copy > 300 * 1000000ull)
			cr_assert(d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR, "%s", t[i].name);
		precopy_estimator_free(e);
	}
}

/* The throttle stops at throttle_max and a period of 0 is refused when
 * throttling. */
Test(decide, throttle_period_rules)
{
	struct precopy_policy p;
	struct precopy_decision d;
	uint64_t now = 0;
	char msg[128];

	precopy_policy_defaults(&p);
	p.throttle_max = 45;
	struct precopy_estimator *e = make(&p);
	for (int i = 0; i < 20; i++) {
		rec(e, &now, 1 * S, 1 * GB, GB, 2 * GB);
		precopy_estimator_decide(e, NULL, 0, 0, now, &d);
	}
	cr_assert_eq(d.throttle, 45);
	cr_assert_eq(d.action, PRECOPY_CONTINUE);
	precopy_estimator_free(e);

	precopy_policy_defaults(&p);
	p.throttle_period_ns = 0;
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "policy.throttle_period_ns"), "%s", msg);
	p.throttle_initial = 0;
	p.throttle_increment = 0;
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), 0, "no throttle, no period needed: %s", msg);
}

/* The working-set floor on hand-made traces: iterations of `iter_ns`
 * (1 GB/s, the whole iteration sending), the RAM pending after each given
 * by `pend` (a function of the iteration number), 300 ms limit, 5 ms fixed,
 * no throttle. Detected when the pending stays within 1/8 of its smallest
 * value W over at least three iterations spanning 2 x W / bandwidth, and
 * blocking when W / bandwidth + the device floor exceeds the limit. */
static uint64_t pend_flat_1g(unsigned k) { (void)k; return 1 * GB; }
static uint64_t pend_wobble(unsigned k) { return k & 1 ? 1100 * 1000000ull : 1000 * 1000000ull; }
static uint64_t pend_halving(unsigned k) { return (8 * GB) >> (k < 20 ? k : 20); }
static uint64_t pend_rho09(unsigned k) { uint64_t p = 8 * GB; while (k--) p = p / 10 * 9; return p; }
static uint64_t pend_saturating(unsigned k) { return 400 * 1000000ull + (4 * GB >> (k < 20 ? k : 20)); }
static uint64_t pend_just_fits(unsigned k) { return k & 1 ? 320 * 1000000ull : 290 * 1000000ull; }

Test(decide, working_set_floor_table)
{
	static const struct {
		const char *name;
		uint64_t iter_ns;
		uint64_t (*pend)(unsigned);
		uint64_t dev_stop_copy;
		int runs;
		int blocked_at; /* first iteration (1-based) with PRECOPY_BLOCK_WORKING_SET; 0 never */
		uint64_t w, floor_ns;
	} t[] = {
		{ "1 GB flat, 1 s iterations: the 3rd", 1 * S, pend_flat_1g, 0, 10, 3, 1 * GB, 1005 * MS },
		{ "1 GB flat, 100 ms iterations: after 2 s", 100 * MS, pend_flat_1g, 0, 40, 21, 1 * GB, 1005 * MS },
		{ "1.0 / 1.1 GB alternating: W is the smaller", 1 * S, pend_wobble, 0, 10, 3, 1000 * 1000000ull,
		  1005 * MS },
		{ "plus a device: W + the device floor", 1 * S, pend_flat_1g, 100 * 1000000ull, 10, 3, 1 * GB,
		  1125 * MS },
		{ "geometric, rho 0.5: no floor", 1 * S, pend_halving, 0, 20, 0, 0, 0 },
		{ "geometric, rho 0.9: slow, no floor", 1 * S, pend_rho09, 0, 30, 0, 0, 0 },
		{ "saturating at 400 MB: found once flat", 1 * S, pend_saturating, 0, 20, 9, 415625000ull,
		  420625 * 1000ull },
		{ "W of 290 MB fits: not a floor", 1 * S, pend_just_fits, 0, 20, 0, 0, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_policy p;
		struct precopy_device_status dev = { .stop_copy_bytes = t[i].dev_stop_copy, .stop_copy_known = 1,
						     .transition_ns = 20 * MS };
		struct precopy_decision d;
		uint64_t now = 0, sent = (uint64_t)((unsigned __int128)GB * t[i].iter_ns / S);
		int first = 0;

		precopy_policy_defaults(&p);
		p.throttle_initial = 0;
		p.throttle_increment = 0;
		struct precopy_estimator *e = make(&p);
		for (int k = 0; k < t[i].runs; k++) {
			rec(e, &now, t[i].iter_ns, sent, sent / 5, t[i].pend((unsigned)k));
			cr_assert_eq(precopy_estimator_decide(e, &dev, t[i].dev_stop_copy ? 1 : 0, 1, now, &d), 0);
			if ((d.blocked & PRECOPY_BLOCK_WORKING_SET) && !first) {
				first = k + 1;
				cr_assert_eq(d.working_set_bytes, t[i].w ? t[i].w : d.working_set_bytes,
					     "%s: W %llu", t[i].name, (unsigned long long)d.working_set_bytes);
				if (t[i].floor_ns)
					cr_assert_eq(d.working_set_floor_ns, t[i].floor_ns, "%s: floor %llu ns",
						     t[i].name, (unsigned long long)d.working_set_floor_ns);
				cr_assert_eq(d.stalled, 1, "%s: a floor is a stall", t[i].name);
				cr_assert_eq(d.predicted_iterations, PRECOPY_UNBOUNDED, "%s", t[i].name);
			}
			if (first)
				cr_assert(d.blocked & PRECOPY_BLOCK_WORKING_SET, "%s: iteration %d lost the floor",
					  t[i].name, k + 1);
			cr_assert_neq(d.action, PRECOPY_THROTTLE, "%s: throttling is off", t[i].name);
		}
		cr_assert_eq(first, t[i].blocked_at, "%s: first blocked at iteration %d, want %d", t[i].name, first,
			     t[i].blocked_at);
		precopy_estimator_free(e);
	}
}

/* Where throttling lowers the floor (a working set the vCPUs write) the
 * throttle rule runs and says why; where it does not (the devices') it
 * never does, although the RAM outpaces the link as well. */
Test(decide, working_set_floor_throttles_device_floor_does_not)
{
	static const struct {
		const char *name;
		uint64_t dev_stop_copy;
		uint32_t want_level;
		uint32_t want_block;
	} t[] = {
		{ "working set alone", 0, 40, PRECOPY_BLOCK_WORKING_SET },
		{ "working set and a device floor above the limit", 400 * 1000000ull, 0, PRECOPY_BLOCK_DEVICE_FLOOR },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_policy p;
		struct precopy_device_status dev = { .stop_copy_bytes = t[i].dev_stop_copy, .stop_copy_known = 1 };
		struct precopy_decision d;
		uint64_t now = 0;
		int ws_reason = 0;

		precopy_policy_defaults(&p);
		struct precopy_estimator *e = make(&p);
		/* a 1 GB set rewritten as fast as it is sent */
		for (int k = 0; k < 4; k++) {
			rec(e, &now, 1 * S, 1 * GB, 1 * GB, 1 * GB);
			cr_assert_eq(precopy_estimator_decide(e, &dev, t[i].dev_stop_copy ? 1 : 0, 1, now, &d), 0);
			if (d.action == PRECOPY_THROTTLE && strstr(d.reason, "working-set floor"))
				ws_reason = 1;
		}
		cr_assert_eq(d.throttle, t[i].want_level, "%s: level %u", t[i].name, d.throttle);
		cr_assert(d.blocked & t[i].want_block, "%s: blocked %#x", t[i].name, d.blocked);
		cr_assert_eq(d.stalled, 1, "%s", t[i].name);
		if (t[i].want_level)
			cr_assert(ws_reason, "%s: the throttle names the working set", t[i].name);
		precopy_estimator_free(e);
	}
}
