/* SPDX-License-Identifier: MIT */
/* Estimates (bandwidth, dirty rate, rho, expected downtime, prediction)
 * and the switchover decision. Pure arithmetic on caller-measured numbers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/estimator.h"
#include "../common/json.h"
#include "../common/util.h"

#define MAX_WINDOW 64u
#define WS_RECORDS 64u /* iterations kept to find a working set */
#define WS_MIN 3u      /* at least this many show it */
#define WS_SPREAD 8u   /* their pending bytes within 1/8 of each other */
#define WS_SPAN 2u     /* over at least 2 x the time to send W */

struct sample {
	uint64_t bytes, send_ns, dirtied, interval_ns;
};

struct precopy_estimator {
	struct precopy_policy pol;
	struct sample win[MAX_WINDOW];
	unsigned nwin, head;         /* ring of the last pol.bw_window samples */
	uint64_t iterations;
	uint64_t start_ns, last_end_ns;
	uint64_t ram_pending;
	uint64_t best_pending;       /* for "no progress over K iterations" */
	uint64_t since_progress;
	uint32_t throttle;
	uint64_t stalled_since_ns;
	/* the throttle period being filled, and the run of periods that
	 * outpaced (dirtied > sent / 2) */
	uint64_t per_sent, per_dirtied, per_ns;
	uint32_t outpaced;
	int period_ended;            /* since the last decision */
	/* the RAM pending after each of the last WS_RECORDS iterations, and
	 * when each ended */
	uint64_t ws_pending[WS_RECORDS], ws_end[WS_RECORDS];
	unsigned ws_n, ws_head;
};

/* bytes / (bytes per second) in ns, saturating; bw 0 = unbounded. */
static uint64_t xfer_ns(uint64_t bytes, uint64_t bw)
{
	long double ns;

	if (!bytes)
		return 0;
	if (!bw || bytes == UINT64_MAX)
		return PRECOPY_UNBOUNDED;
	ns = (long double)bytes * 1e9L / (long double)bw;
	return ns >= (long double)UINT64_MAX ? PRECOPY_UNBOUNDED : (uint64_t)ns;
}

PRECOPY_API void precopy_policy_defaults(struct precopy_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->version = PRECOPY_POLICY_VERSION;
	p->downtime_limit_ns = 300000000ull;
	p->fixed_downtime_ns = 5000000ull;
	p->throttle_initial = 20;
	p->throttle_increment = 10;
	p->throttle_max = 99;
	p->stall_iterations = 4;
	p->bw_window = 5;
	p->timeout_action = PRECOPY_TIMEOUT_CANCEL;
	p->throttle_period_ns = 1000000000ull;
}

static int say(char *msg, size_t len, const char *text)
{
	if (msg && len)
		snprintf(msg, len, "%s", text);
	return -EINVAL;
}

PRECOPY_API int precopy_policy_check(const struct precopy_policy *p, char *msg, size_t len)
{
	if (msg && len)
		msg[0] = 0;
	if (!p)
		return say(msg, len, "policy: NULL");
	if (p->version != PRECOPY_POLICY_VERSION)
		return say(msg, len, "policy.version: not PRECOPY_POLICY_VERSION (start from precopy_policy_defaults())");
	if (!p->downtime_limit_ns)
		return say(msg, len, "policy.downtime_limit_ns: must be > 0");
	if (p->throttle_max > 99)
		return say(msg, len, "policy.throttle_max: at most 99 (percent)");
	if (p->throttle_initial > p->throttle_max)
		return say(msg, len, "policy.throttle_initial: above throttle_max");
	if (p->throttle_initial && !p->throttle_increment)
		return say(msg, len, "policy.throttle_increment: must be > 0 when throttle_initial is");
	if (p->throttle_initial && !p->throttle_period_ns)
		return say(msg, len, "policy.throttle_period_ns: must be > 0 when throttle_initial is");
	if (!p->stall_iterations)
		return say(msg, len, "policy.stall_iterations: must be >= 1");
	if (!p->bw_window || p->bw_window > MAX_WINDOW)
		return say(msg, len, "policy.bw_window: must be 1..64");
	if (p->timeout_action > PRECOPY_TIMEOUT_FORCE)
		return say(msg, len, "policy.timeout_action: not a PRECOPY_TIMEOUT_* value");
	return 0;
}

static int policy_valid(const struct precopy_policy *p)
{
	return precopy_policy_check(p, NULL, 0) == 0;
}

PRECOPY_API struct precopy_estimator *precopy_estimator_new(const struct precopy_policy *policy, int *err)
{
	struct precopy_estimator *e;

	if (!policy_valid(policy)) {
		if (err)
			*err = -EINVAL;
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	e->pol = *policy;
	e->best_pending = UINT64_MAX;
	if (err)
		*err = 0;
	return e;
}

PRECOPY_API void precopy_estimator_free(struct precopy_estimator *est)
{
	free(est);
}

PRECOPY_API int precopy_estimator_set_policy(struct precopy_estimator *e, const struct precopy_policy *policy)
{
	if (!e || !policy_valid(policy) || policy->bw_window != e->pol.bw_window)
		return -EINVAL;
	e->pol = *policy;
	if (e->throttle > e->pol.throttle_max)
		e->throttle = e->pol.throttle_max;
	return 0;
}

PRECOPY_API int precopy_estimator_record(struct precopy_estimator *e, const struct precopy_iteration *it)
{
	struct sample s;

	if (!e || !it)
		return -EINVAL;
	if (e->iterations && it->end_ns < e->last_end_ns)
		return -EINVAL;
	s.bytes = it->bytes_sent;
	s.send_ns = it->send_ns;
	s.dirtied = it->dirtied_bytes;
	/* The first iteration's interval is its send time; later ones span
	 * from the previous sync to this one. */
	s.interval_ns = e->iterations ? it->end_ns - e->last_end_ns : it->send_ns;
	if (!e->iterations)
		e->start_ns = it->end_ns >= it->send_ns ? it->end_ns - it->send_ns : 0;
	e->win[e->head] = s;
	e->head = (e->head + 1) % e->pol.bw_window;
	if (e->nwin < e->pol.bw_window)
		e->nwin++;
	e->iterations++;
	e->last_end_ns = it->end_ns;
	e->ram_pending = it->ram_pending;
	/* the throttle period: closed once it spans throttle_period_ns */
	e->per_sent = sat_add(e->per_sent, s.bytes);
	e->per_dirtied = sat_add(e->per_dirtied, s.dirtied);
	e->per_ns = sat_add(e->per_ns, s.interval_ns);
	if (e->per_ns >= e->pol.throttle_period_ns) {
		e->outpaced = e->per_dirtied > e->per_sent / 2 ? e->outpaced + 1 : 0;
		e->period_ended = 1;
		e->per_sent = e->per_dirtied = e->per_ns = 0;
	}
	e->ws_pending[e->ws_head] = it->ram_pending;
	e->ws_end[e->ws_head] = it->end_ns;
	e->ws_head = (e->ws_head + 1) % WS_RECORDS;
	if (e->ws_n < WS_RECORDS)
		e->ws_n++;
	return 0;
}

static void window_rates(const struct precopy_estimator *e, uint64_t *bw, uint64_t *dirty)
{
	uint64_t bytes = 0, ns = 0, dirtied = 0, ins = 0;

	for (unsigned i = 0; i < e->nwin; i++) {
		bytes = sat_add(bytes, e->win[i].bytes);
		ns = sat_add(ns, e->win[i].send_ns);
		dirtied = sat_add(dirtied, e->win[i].dirtied);
		ins = sat_add(ins, e->win[i].interval_ns);
	}
	*bw = ns ? (uint64_t)((long double)bytes * 1e9L / (long double)ns) : 0;
	*dirty = ins ? (uint64_t)((long double)dirtied * 1e9L / (long double)ins) : 0;
}

/* The switchover drain time of the devices' state at bandwidth bw: those
 * drained together take the longer of all their bytes over the link and
 * the slowest one's read; the others follow one after another. With
 * floor set, a device in PRE_COPY counts only what pre-copy cannot move
 * first: its stop-copy size less its pre-copy pending (initial + dirty),
 * which VFIO_DEVICE_FEATURE_MIG_DATA_SIZE includes. Sets *stop_out to the
 * bytes counted and *unknown to 1 when a size is unknown. */
static uint64_t drain_time(const struct precopy_device_status *devs, size_t ndevs, uint64_t bw, int floor,
			   uint64_t *stop_out, int *unknown)
{
	uint64_t stop = 0, conc = 0, conc_read = 0, alone = 0, t;

	for (size_t i = 0; i < ndevs; i++) {
		const struct precopy_device_status *s = &devs[i];
		uint64_t bytes = s->stop_copy_bytes, pre = sat_add(s->initial_bytes, s->dirty_bytes);
		uint64_t rd;

		if (!s->stop_copy_known)
			*unknown = 1;
		if (floor && s->pre_copy)
			bytes = bytes > pre ? bytes - pre : 0;
		rd = s->read_Bps ? xfer_ns(bytes, s->read_Bps) : 0;
		stop = sat_add(stop, bytes);
		if (s->drain_concurrent) {
			conc = sat_add(conc, bytes);
			conc_read = rd > conc_read ? rd : conc_read;
		} else {
			alone = sat_add(alone, sat_add(rd, xfer_ns(bytes, bw)));
		}
	}
	t = xfer_ns(conc, bw);
	*stop_out = stop;
	return sat_add(t > conc_read ? t : conc_read, alone);
}

PRECOPY_API void precopy_downtime_model(uint64_t ram_pending, const struct precopy_device_status *devs,
					size_t ndevs, uint64_t bw, uint64_t fixed_ns,
					struct precopy_decision *out)
{
	uint64_t stop, floor_stop, pre = 0, trans = 0, t, drain, floor_drain;
	uint32_t guessed = 0;
	int unknown = 0;

	for (size_t i = 0; i < ndevs; i++) {
		guessed += devs[i].stop_copy_guess != 0;
		pre = sat_add(pre, sat_add(devs[i].initial_bytes, devs[i].dirty_bytes));
		trans = sat_add(trans, devs[i].transition_ns);
	}
	drain = drain_time(devs, ndevs, bw, 0, &stop, &unknown);
	floor_drain = drain_time(devs, ndevs, bw, 1, &floor_stop, &unknown);
	out->ram_pending = ram_pending;
	out->stop_copy_guessed = guessed;
	out->device_stop_copy = unknown ? PRECOPY_UNBOUNDED : stop;
	out->device_precopy = pre;
	out->device_drain_ns = unknown ? PRECOPY_UNBOUNDED : drain;
	out->pending_bytes = sat_add(ram_pending, sat_add(out->device_stop_copy, pre));
	out->transitions_ns = trans;
	out->device_floor_ns = unknown || !bw ? PRECOPY_UNBOUNDED : sat_add(sat_add(floor_drain, fixed_ns), trans);
	t = unknown ? PRECOPY_UNBOUNDED : sat_add(xfer_ns(sat_add(ram_pending, pre), bw), drain);
	out->expected_downtime_ns = sat_add(sat_add(t, fixed_ns), trans);
}

/* Iterations and time until the pending bytes fit the budget, if each
 * round sends what is pending while rho of it is dirtied again. */
static void predict(struct precopy_decision *d, uint64_t limit_ns, uint64_t fixed_ns)
{
	long double budget, p = (long double)d->pending_bytes, n, rho = d->rho;
	uint64_t overhead = sat_add(fixed_ns, d->transitions_ns);

	if (d->expected_downtime_ns <= limit_ns) {
		d->predicted_iterations = 0;
		d->predicted_time_ns = 0;
		return;
	}
	d->predicted_iterations = PRECOPY_UNBOUNDED;
	d->predicted_time_ns = PRECOPY_UNBOUNDED;
	if (!d->bandwidth_Bps || d->device_stop_copy == PRECOPY_UNBOUNDED || !(rho < 1.0) ||
	    overhead >= limit_ns)
		return;
	budget = (long double)(limit_ns - overhead) * (long double)d->bandwidth_Bps / 1e9L;
	if (budget <= 0)
		return;
	if (rho <= 0) { /* nothing is dirtied again: one more round */
		n = 1;
	} else {
		n = ceill(logl(budget / p) / logl(rho));
		if (n < 1)
			n = 1;
	}
	if (n > 1e15L)
		return;
	d->predicted_iterations = (uint64_t)n;
	long double sent = rho <= 0 ? p : p * (1 - powl(rho, n)) / (1 - rho);
	long double ns = sent * 1e9L / (long double)d->bandwidth_Bps;
	d->predicted_time_ns = ns >= (long double)UINT64_MAX ? PRECOPY_UNBOUNDED : (uint64_t)ns;
}

/* The working set (see the header): walking back from the newest
 * iteration, the RAM pending after each stays within 1/WS_SPREAD of the
 * smallest (W) for at least WS_MIN iterations spanning WS_SPAN times the
 * time W takes at bw. Returns W, or 0. */
static uint64_t working_set(const struct precopy_estimator *e, uint64_t bw)
{
	uint64_t lo = UINT64_MAX, hi = 0, newest;
	unsigned newest_i = (e->ws_head + WS_RECORDS - 1) % WS_RECORDS;

	if (e->ws_n < WS_MIN || !bw)
		return 0;
	newest = e->ws_end[newest_i];
	for (unsigned k = 0; k < e->ws_n; k++) {
		unsigned i = (newest_i + WS_RECORDS - k) % WS_RECORDS;

		lo = e->ws_pending[i] < lo ? e->ws_pending[i] : lo;
		hi = e->ws_pending[i] > hi ? e->ws_pending[i] : hi;
		if (!lo || hi - lo > lo / WS_SPREAD)
			return 0;
		if (k + 1 >= WS_MIN && newest - e->ws_end[i] >= sat_mul(xfer_ns(lo, bw), WS_SPAN))
			return lo;
	}
	return 0;
}

PRECOPY_API int precopy_estimator_decide(struct precopy_estimator *e,
					 const struct precopy_device_status *devs, size_t ndevs,
					 int ack_received, uint64_t now_ns, struct precopy_decision *d)
{
	const struct precopy_policy *pol;
	uint64_t bw, dirty, ws;
	int need_ack = 0, initial_left = 0, timed_out, period_ended;

	if (!e || !d || (ndevs && !devs))
		return -EINVAL;
	pol = &e->pol;
	period_ended = e->period_ended; /* one throttle step per period at most */
	e->period_ended = 0;
	memset(d, 0, sizeof(*d));
	d->reason = "";
	d->iteration = e->iterations;
	window_rates(e, &bw, &dirty);
	if (pol->switchover_bw_Bps)
		bw = pol->switchover_bw_Bps;
	d->bandwidth_Bps = bw;
	d->dirty_rate_Bps = dirty;
	d->rho = bw ? (double)dirty / (double)bw : INFINITY;
	precopy_downtime_model(e->ram_pending, devs, ndevs, bw, pol->fixed_downtime_ns, d);
	predict(d, pol->downtime_limit_ns, pol->fixed_downtime_ns);
	/* device_floor_ns (the model): what no RAM convergence, pre-copy
	 * or throttle can lower */
	d->throttle = e->throttle;
	ws = working_set(e, bw);
	if (ws) {
		d->working_set_bytes = ws;
		d->working_set_floor_ns = d->device_floor_ns == PRECOPY_UNBOUNDED
						  ? PRECOPY_UNBOUNDED
						  : sat_add(xfer_ns(ws, bw), d->device_floor_ns);
	}

	for (size_t i = 0; i < ndevs; i++) {
		if (!devs[i].pre_copy)
			continue;
		need_ack = 1;
		if (devs[i].initial_bytes)
			initial_left = 1;
	}
	if (!e->iterations || !bw)
		d->blocked |= PRECOPY_BLOCK_NO_BANDWIDTH;
	if (d->device_stop_copy == PRECOPY_UNBOUNDED)
		d->blocked |= PRECOPY_BLOCK_UNKNOWN_SIZE;
	if (d->expected_downtime_ns > pol->downtime_limit_ns)
		d->blocked |= PRECOPY_BLOCK_DOWNTIME;
	if (e->iterations && bw && d->device_floor_ns != PRECOPY_UNBOUNDED &&
	    d->device_floor_ns > pol->downtime_limit_ns)
		d->blocked |= PRECOPY_BLOCK_DEVICE_FLOOR;
	if (ws && (d->blocked & PRECOPY_BLOCK_DOWNTIME) && d->working_set_floor_ns != PRECOPY_UNBOUNDED &&
	    d->working_set_floor_ns > pol->downtime_limit_ns) {
		d->blocked |= PRECOPY_BLOCK_WORKING_SET;
		d->predicted_iterations = PRECOPY_UNBOUNDED; /* rho < 1 or not */
		d->predicted_time_ns = PRECOPY_UNBOUNDED;
	}
	if (initial_left)
		d->blocked |= PRECOPY_BLOCK_INITIAL_BYTES;
	if (need_ack && !ack_received)
		d->blocked |= PRECOPY_BLOCK_ACK;

	if (!d->blocked) {
		d->action = PRECOPY_SWITCHOVER;
		return 0;
	}
	d->stalled_since_ns = e->stalled_since_ns; /* a timeout decision still says since when */
	timed_out = pol->timeout_ns && e->iterations && now_ns >= e->start_ns &&
		    now_ns - e->start_ns >= pol->timeout_ns;
	if (timed_out) {
		if (pol->timeout_action == PRECOPY_TIMEOUT_FORCE && !(d->blocked & PRECOPY_BLOCK_ACK)) {
			d->action = PRECOPY_FORCE_SWITCHOVER;
			d->reason = "timeout: forcing switchover above the downtime limit";
		} else {
			d->action = PRECOPY_ABORT;
			d->reason = (d->blocked & PRECOPY_BLOCK_ACK) && pol->timeout_action == PRECOPY_TIMEOUT_FORCE
					    ? "timeout: switchover-ack never arrived; cannot force without it"
					    : "timeout: downtime limit not met";
		}
		return 0;
	}
	if (d->blocked == PRECOPY_BLOCK_ACK) {
		d->action = PRECOPY_WAIT_ACK;
		return 0;
	}
	/* A device floor above the limit: the limit cannot be met whatever the
	 * guest does; report it as a stall at once and never throttle (a
	 * throttle lowers the RAM part only). The timeout then applies its
	 * action. */
	if (d->blocked & PRECOPY_BLOCK_DEVICE_FLOOR) {
		d->stalled = 1;
		if (!e->stalled_since_ns)
			e->stalled_since_ns = e->last_end_ns;
		d->stalled_since_ns = e->stalled_since_ns;
		d->action = PRECOPY_CONTINUE;
		d->reason = "device floor above the limit: device stop-copy state, transitions and fixed costs alone exceed it";
		return 0;
	}
	/* Stall: the limit is not met and the rates say it will not be. */
	if (e->iterations) {
		if ((d->blocked & PRECOPY_BLOCK_DOWNTIME) && !(d->blocked & PRECOPY_BLOCK_UNKNOWN_SIZE)) {
			if (d->pending_bytes < e->best_pending - e->best_pending / 16) {
				e->best_pending = d->pending_bytes;
				e->since_progress = 0;
			} else {
				e->since_progress++;
			}
			if ((e->nwin >= 2 && d->rho >= 1.0) || e->since_progress >= pol->stall_iterations ||
			    (d->blocked & PRECOPY_BLOCK_WORKING_SET))
				d->stalled = 1;
		}
	}
	if (d->stalled && !e->stalled_since_ns)
		e->stalled_since_ns = e->last_end_ns;
	d->stalled_since_ns = e->stalled_since_ns;
	/* Throttle: dirtying outpaced sending in the periods that count (two
	 * in a row for the first step, the last one for each next step). */
	if (pol->throttle_initial && period_ended && e->throttle < pol->throttle_max &&
	    (d->blocked & PRECOPY_BLOCK_DOWNTIME) && !(d->blocked & PRECOPY_BLOCK_UNKNOWN_SIZE) &&
	    e->outpaced >= (e->throttle ? 1u : 2u) && d->predicted_time_ns > pol->throttle_period_ns) {
		uint32_t next = e->throttle ? e->throttle + pol->throttle_increment : pol->throttle_initial;

		e->throttle = next > pol->throttle_max ? pol->throttle_max : next;
		e->outpaced = 0;
		e->since_progress = 0; /* the new level gets its chance */
		e->best_pending = d->pending_bytes;
		d->throttle = e->throttle;
		d->action = PRECOPY_THROTTLE;
		d->reason = d->blocked & PRECOPY_BLOCK_WORKING_SET
				    ? "working-set floor above the limit: the vCPUs rewrite their set faster than a pass drains it"
				    : "dirtying outpaces sending: more than half of what was sent was dirtied again";
		return 0;
	}
	if (d->blocked & PRECOPY_BLOCK_WORKING_SET)
		d->reason = "working-set floor above the limit: the vCPUs rewrite their set faster than a pass drains it";
	d->action = PRECOPY_CONTINUE;
	return 0;
}

PRECOPY_API const char *precopy_action_name(uint32_t action)
{
	static const char *const names[] = {
		[PRECOPY_CONTINUE] = "continue",
		[PRECOPY_SWITCHOVER] = "switchover",
		[PRECOPY_WAIT_ACK] = "wait_ack",
		[PRECOPY_THROTTLE] = "throttle",
		[PRECOPY_ABORT] = "abort",
		[PRECOPY_FORCE_SWITCHOVER] = "force_switchover",
	};
	return action < sizeof(names) / sizeof(names[0]) ? names[action] : "unknown";
}

PRECOPY_API const char *precopy_block_name(uint32_t bit)
{
	static const char *const names[] = { "downtime", "unknown_size", "initial_bytes", "ack",
					     "no_bandwidth", "device_floor", "working_set" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bit == 1u << i)
			return names[i];
	return "unknown";
}

PRECOPY_API int precopy_blocked_json(uint32_t blocked, char *buf, size_t len)
{
	size_t need = 1; /* '[' */
	int first = 1;

	if (len)
		snprintf(buf, len, "[");
	for (uint32_t i = 0; i < 32; i++) {
		const char *n;
		size_t o = need;

		if (!(blocked & (1u << i)))
			continue;
		n = precopy_block_name(1u << i);
		need += strlen(n) + 2 + !first;
		if (o < len)
			snprintf(buf + o, len - o, "%s\"%s\"", first ? "" : ",", n);
		first = 0;
	}
	if (need < len)
		snprintf(buf + need, len - need, "]");
	need++;
	if (len && need >= len)
		buf[len - 1] = 0;
	return (int)need;
}

PRECOPY_API int precopy_decision_json(const struct precopy_decision *d, char *buf, size_t len)
{
	char blocked[160];

	char a[24], b[24], c[24], e[24], f[24], g[24], h[24], fl[24], wf[24], rho[32];

	if (!d)
		return -EINVAL;
	json_double(rho, sizeof(rho), d->rho);
	/* reason strings are static ASCII without quotes or backslashes */
	return snprintf(buf, len,
			"{\"action\":\"%s\",\"blocked\":%u,\"blocked_reasons\":%s,\"throttle\":%u,\"stalled\":%s,"
			"\"reason\":\"%s\",\"iteration\":%llu,\"bandwidth_Bps\":%llu,"
			"\"dirty_rate_Bps\":%llu,\"rho\":%s,\"ram_pending\":%llu,"
			"\"device_stop_copy\":%s,\"device_precopy\":%s,\"pending_bytes\":%s,"
			"\"transitions_ns\":%s,\"expected_downtime_ns\":%s,"
			"\"predicted_iterations\":%s,\"predicted_time_ns\":%s,\"stalled_since_ns\":%llu,"
			"\"device_floor_ns\":%s,\"working_set_bytes\":%llu,\"working_set_floor_ns\":%s,"
			"\"stop_copy_guessed\":%u}",
			precopy_action_name(d->action), d->blocked,
			(precopy_blocked_json(d->blocked, blocked, sizeof(blocked)), blocked), d->throttle,
			d->stalled ? "true" : "false", d->reason, (unsigned long long)d->iteration,
			(unsigned long long)d->bandwidth_Bps, (unsigned long long)d->dirty_rate_Bps, rho,
			(unsigned long long)d->ram_pending, json_u64(a, sizeof(a), d->device_stop_copy),
			json_u64(b, sizeof(b), d->device_precopy), json_u64(c, sizeof(c), d->pending_bytes),
			json_u64(e, sizeof(e), d->transitions_ns), json_u64(f, sizeof(f), d->expected_downtime_ns),
			json_u64(g, sizeof(g), d->predicted_iterations),
			json_u64(h, sizeof(h), d->predicted_time_ns),
			(unsigned long long)d->stalled_since_ns, json_u64(fl, sizeof(fl), d->device_floor_ns),
			(unsigned long long)d->working_set_bytes, json_u64(wf, sizeof(wf), d->working_set_floor_ns),
			d->stop_copy_guessed);
}
