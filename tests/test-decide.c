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

	precopy_policy_defaults(&p);
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
	/* rho 0.2 but 1 GB stays dirty (hot set): no progress */
	for (int i = 0; i < 10; i++) {
		rec(e, &t, 1 * S, 1 * GB, GB / 5, 1 * GB);
		precopy_estimator_decide(e, NULL, 0, 0, t, &d);
		if (d.stalled && stalled_at < 0)
			stalled_at = i;
		cr_expect_eq(d.action, PRECOPY_CONTINUE);
	}
	cr_expect_eq(stalled_at, 4, "stall first reported at iteration %d", stalled_at);
	cr_expect(d.stalled_since_ns < p.timeout_ns);
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
