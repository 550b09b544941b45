/* SPDX-License-Identifier: MIT */
/* The forecast (include/precopy/estimator.h, "Forecast"): the pass
 * recurrence of a migration that has not started, played through a real
 * estimator so that its switchover test, throttle rule, floors and timeout
 * are the engine's. Why the model is what it is: docs/decisions.md. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/estimator.h"
#include "../common/util.h"

#define MAX_ITERATIONS 1000000u /* a guard: the recurrence is then stuck */
#define MAX_CHECKS 100000.0     /* switchover tests inside one pass, at most */
#define STUCK_PERIODS 4u        /* no throttle step in this many periods: none will come */
#define STUCK_DECISIONS 3u      /* stalled decisions in a row before calling it stuck */
#define STUCK_PASSES 8u         /* ... and pending bytes over this many passes */
#define STUCK_SHRINK 1e-3       /* ... shrinking by less than this fraction */

/* D(t): distinct pages dirtied in t ns (see the header). */
struct dcurve {
	size_t n;                 /* points, (0, 0) included */
	double t[PRECOPY_FORECAST_MAX_SAMPLES + 1], d[PRECOPY_FORECAST_MAX_SAMPLES + 1];
	double cap;               /* RAM pages */
	int tail;                 /* 0: flat, 1: linear, 2: saturating */
	double rate, w, tau;      /* tail: pages/ns; W and tau of W (1 - exp(-t / tau)) */
};

static int cmp_sample(const void *a, const void *b)
{
	const struct precopy_forecast_sample *x = a, *y = b;

	return x->interval_ns < y->interval_ns ? -1 : x->interval_ns > y->interval_ns;
}

/* (1 - e^(-tb/tau)) / (1 - e^(-ta/tau)): from 1 (tau -> 0) to tb/ta (tau -> inf) */
static double sat_ratio(double ta, double tb, double tau)
{
	return -expm1(-tb / tau) / -expm1(-ta / tau);
}

static int dcurve_build(struct dcurve *c, const struct precopy_forecast_sample *in, size_t n, double cap)
{
	struct precopy_forecast_sample s[PRECOPY_FORECAST_MAX_SAMPLES];
	size_t i = 0;

	memcpy(s, in, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_sample);
	c->n = 1;
	c->t[0] = c->d[0] = 0;
	c->cap = cap;
	while (i < n) {
		size_t j = i;
		double sum = 0;

		while (j < n && s[j].interval_ns == s[i].interval_ns)
			sum += (double)s[j++].dirty_pages;
		if (s[i].interval_ns) {
			double d = sum / (double)(j - i);

			d = d > cap ? cap : d;
			d = d < c->d[c->n - 1] ? c->d[c->n - 1] : d; /* nondecreasing */
			c->t[c->n] = (double)s[i].interval_ns;
			c->d[c->n] = d;
			c->n++;
		}
		i = j;
	}
	if (c->n < 2)
		return -EINVAL;
	/* the tail, from the two longest intervals (or the origin and the one) */
	{
		double ta = c->t[c->n - 2], da = c->d[c->n - 2], tb = c->t[c->n - 1], db = c->d[c->n - 1];
		double ratio, lo, hi;

		c->rate = (db - da) / (tb - ta);
		if (db <= 0 || db >= cap || c->rate <= 0) {
			c->tail = 0;
			return 0;
		}
		if (c->n < 3 || da <= 0) {
			c->tail = 1;
			return 0;
		}
		ratio = db / da;
		if (ratio >= tb / ta * (1 - 1e-9)) {
			c->tail = 1; /* no saturation seen */
			return 0;
		}
		/* tau by bisection on its logarithm: sat_ratio rises with tau */
		lo = log(tb) - 60;
		hi = log(tb) + 60;
		for (int k = 0; k < 200; k++) {
			double mid = (lo + hi) / 2;

			if (sat_ratio(ta, tb, exp(mid)) < ratio)
				lo = mid;
			else
				hi = mid;
		}
		c->tau = exp((lo + hi) / 2);
		c->w = db / -expm1(-tb / c->tau);
		c->tail = 2;
	}
	return 0;
}

static double dcurve_at(const struct dcurve *c, double t)
{
	double d;
	size_t i;

	if (t <= 0)
		return 0;
	for (i = 1; i < c->n; i++) {
		if (t <= c->t[i])
			return c->d[i - 1] + (c->d[i] - c->d[i - 1]) * (t - c->t[i - 1]) / (c->t[i] - c->t[i - 1]);
	}
	switch (c->tail) {
	case 1: d = c->d[c->n - 1] + c->rate * (t - c->t[c->n - 1]); break;
	case 2: d = c->w * -expm1(-t / c->tau); break;
	default: d = c->d[c->n - 1]; break;
	}
	return d > c->cap ? c->cap : d;
}

/* the saturation W in pages: the fitted one, the last count when flat,
 * else all RAM */
static double dcurve_w(const struct dcurve *c)
{
	switch (c->tail) {
	case 0: return c->d[c->n - 1] > 0 ? c->d[c->n - 1] : 0;
	case 2: return c->w < c->cap ? c->w : c->cap;
	default: return c->cap;
	}
}

#define SYNC_MARGIN 2.0 /* the engine's exact query (a sync) runs once the
			 * cheap estimate is under 200% of the limit */
#define INT_STEPS 64     /* steps of the integral below */

/* The RAM pages dirty at time tau of a pass of length T (tau = T: what the
 * next pass sends), with syncs every c from ts on (ts >= T: none). A page
 * the pass sends at s is dirty again at tau if written after s: before
 * the first sync, every page written since the pass began (D(tau) of them,
 * the live bitmap keeps them), from its pages' share s / T; a page sent
 * after ts was harvested at most about c / 2 before it went out: D(tau - s
 * + c / 2) of its share ds / T. Pages ahead of the cursor written before
 * the first sync are sent in this pass. */
static double dirty_at(const struct dcurve *cv, double thr_f, double T, double tau, double ts, double c)
{
	double head = ts < tau ? ts : tau, sum, ds;

	sum = head / T * dcurve_at(cv, tau * thr_f);
	if (ts >= tau)
		return sum;
	ds = (tau - ts) / INT_STEPS;
	for (int k = 0; k < INT_STEPS; k++) {
		double sv = ts + (k + 0.5) * ds, u = tau - sv + c / 2;

		sum += ds / T * dcurve_at(cv, u * thr_f);
	}
	return sum;
}

static uint64_t to_u64(double x)
{
	if (!(x >= 0))
		return 0;
	return x >= 1.8e19 ? PRECOPY_UNBOUNDED : (uint64_t)(x + 0.5);
}

PRECOPY_API const char *precopy_forecast_outcome_name(uint32_t outcome)
{
	switch (outcome) {
	case PRECOPY_FORECAST_CONVERGES: return "converges";
	case PRECOPY_FORECAST_DEVICE_FLOOR: return "device floor";
	case PRECOPY_FORECAST_WORKING_SET: return "working-set floor";
	case PRECOPY_FORECAST_TIMEOUT: return "timeout";
	default: return "unknown";
	}
}

/* The devices' pre-copy bytes as one sum on the model's devices (the model
 * adds every device's initial + dirty bytes, so where they sit does not
 * matter). */
static void set_dev_precopy(struct precopy_device_status *d, size_t n, uint64_t bytes)
{
	for (size_t i = 0; i < n; i++)
		d[i].initial_bytes = d[i].dirty_bytes = 0;
	if (n)
		d[0].dirty_bytes = bytes;
}

/* What the recurrence carries from one decision to the next. */
struct fstate {
	const struct precopy_policy *pol;
	struct precopy_forecast *out;
	uint32_t thr, stalled_run;
	double thr_f, last_change;
};

/* Take decision *d made at `now` (ns): 1 when it ends the run (out filled
 * but for the totals), else 0 (a throttle step applied). */
static int take(struct fstate *st, const struct precopy_decision *d, double now)
{
	struct precopy_forecast *out = st->out;

	if (d->stalled && !out->stalled_at_ns)
		out->stalled_at_ns = to_u64(now);
	/* a timeout decision does not judge the stall: the last one holds */
	if (d->action != PRECOPY_ABORT && d->action != PRECOPY_FORCE_SWITCHOVER)
		st->stalled_run = d->stalled ? st->stalled_run + 1 : 0;
	out->device_floor_ns = d->device_floor_ns;
	if (d->action == PRECOPY_SWITCHOVER || d->action == PRECOPY_FORCE_SWITCHOVER || d->action == PRECOPY_ABORT) {
		out->end = d->action;
		out->downtime_ns = d->expected_downtime_ns;
		if (d->action != PRECOPY_SWITCHOVER) {
			out->outcome = (d->blocked & PRECOPY_BLOCK_DEVICE_FLOOR) ? PRECOPY_FORECAST_DEVICE_FLOOR
				       : st->stalled_run ? PRECOPY_FORECAST_WORKING_SET
							 : PRECOPY_FORECAST_TIMEOUT;
			out->floor_ns = out->outcome == PRECOPY_FORECAST_DEVICE_FLOOR ? d->device_floor_ns
					: out->outcome == PRECOPY_FORECAST_WORKING_SET ? d->expected_downtime_ns
										   : 0;
			out->floor_bytes = out->outcome == PRECOPY_FORECAST_WORKING_SET ? d->ram_pending : 0;
		}
		return 1;
	}
	if (d->action == PRECOPY_THROTTLE) {
		st->thr = d->throttle;
		st->thr_f = (100.0 - st->thr) / 100.0;
		st->last_change = now;
		if (st->thr > out->throttle)
			out->throttle = st->thr;
		if (!out->throttle_at_ns)
			out->throttle_at_ns = to_u64(now);
	}
	return 0;
}

PRECOPY_API int precopy_forecast(const struct precopy_policy *pol, const struct precopy_forecast_input *in,
				 struct precopy_forecast *out)
{
	struct precopy_estimator *est;
	struct precopy_device_status *devs = NULL;
	struct dcurve c;
	struct precopy_decision d;
	double ps, bw, t = 0, ram_pend, dev_pend = 0, sent = 0;
	uint64_t bw_sw, iter = 0;
	struct fstate st = { pol, out, 0, 0, 1.0, 0 };
	int err = 0, need_ack = 0;
	double ack_at = 0, hist[STUCK_PASSES] = { 0 }, rd_num = 0, rd_den = 0, rd_ns_per_byte;

	if (!pol || !in || !out || !in->ram_bytes || !in->page_size || !in->bandwidth_Bps || !in->samples ||
	    !in->nsamples || in->nsamples > PRECOPY_FORECAST_MAX_SAMPLES || (in->ndevs && !in->devs) ||
	    precopy_policy_check(pol, NULL, 0) < 0)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	ps = (double)in->page_size;
	if (dcurve_build(&c, in->samples, in->nsamples, floor((double)in->ram_bytes / ps)) < 0)
		return -EINVAL;
	bw = (double)in->bandwidth_Bps / 1e9; /* bytes per ns */
	bw_sw = pol->switchover_bw_Bps ? pol->switchover_bw_Bps : in->bandwidth_Bps;
	out->dirty_rate_Bps = to_u64(c.d[1] * ps / c.t[1] * 1e9);
	out->working_set_bytes = to_u64(dcurve_w(&c) * ps);
	if (in->ndevs) {
		devs = malloc(in->ndevs * sizeof(*devs));
		if (!devs)
			return -ENOMEM;
		memcpy(devs, in->devs, in->ndevs * sizeof(*devs));
	}
	est = precopy_estimator_new(pol, &err);
	if (!est) {
		free(devs);
		return err ? err : -ENOMEM;
	}
	ram_pend = c.cap * ps;
	for (size_t i = 0; i < in->ndevs; i++) {
		dev_pend += (double)sat_add(devs[i].initial_bytes, devs[i].dirty_bytes);
		need_ack |= devs[i].pre_copy;
	}
	/* pre-copy bytes come out of the data fds one device after another
	 * at their read rates (0: not limited): ns per byte, the devices
	 * weighted by their bytes (alike when none has any) */
	for (size_t i = 0; i < in->ndevs; i++) {
		double w = dev_pend > 0 ? (double)sat_add(devs[i].initial_bytes, devs[i].dirty_bytes) : 1;

		if (!devs[i].pre_copy)
			continue;
		if (devs[i].read_Bps)
			rd_num += w / ((double)devs[i].read_Bps / 1e9);
		rd_den += w;
	}
	rd_ns_per_byte = rd_den > 0 ? rd_num / rd_den : 0;

	for (;;) {
		double bytes = ram_pend + dev_pend, send = bytes / bw, len = send, dirt, ddirt, ts, step = 0;
		double prev = 0; /* when in the pass the last record was made */
		struct precopy_iteration it;
		int ack_ok;

		len += dev_pend * rd_ns_per_byte; /* reading the devices' data */
		/* Nothing left to send: only time changes something, the
		 * switchover-ack; then the last decision stands (passes that
		 * send nothing measure no bandwidth: none is recorded). */
		if (iter && bytes <= 0) {
			if (need_ack && t < ack_at) {
				t = ack_at;
				precopy_estimator_decide(est, devs, in->ndevs, 1, to_u64(t), &d);
				if (take(&st, &d, t))
					break;
			}
			goto stuck;
		}
		if ((double)in->min_iteration_ns > len)
			len = (double)in->min_iteration_ns;
		/* Inside the pass (check_ns): once the RAM left is under
		 * SYNC_MARGIN x the limit (ts), the engine syncs at each check,
		 * records an iteration and decides. */
		ts = INFINITY;
		if (iter && in->check_ns && send > (double)in->check_ns) {
			int done = 0;

			step = (double)in->check_ns;
			if (send / step > MAX_CHECKS)
				step = send / MAX_CHECKS;
			/* no sync before the RAM left could be under the
			 * margin at the switchover bandwidth alone */
			double first = (ram_pend - SYNC_MARGIN * (double)pol->downtime_limit_ns * (double)bw_sw / 1e9) / bw;

			first = first > step ? floor(first / step) * step : step;
			for (double tau = first; tau < send; tau += step) {
				double left = ram_pend - bw * tau, dirty;
				struct precopy_decision m;

				left = left > 0 ? left : 0;
				set_dev_precopy(devs, in->ndevs, to_u64(dev_pend + (double)in->device_dirty_Bps * tau / 1e9));
				if (ts == INFINITY) {
					precopy_downtime_model(to_u64(left), devs, in->ndevs, bw_sw, pol->fixed_downtime_ns,
							       &m);
					if ((double)m.expected_downtime_ns >= SYNC_MARGIN * (double)pol->downtime_limit_ns)
						continue;
					ts = tau;
				}
				dirty = dirty_at(&c, st.thr_f, send, tau, ts, step) * ps;
				memset(&it, 0, sizeof(it));
				it.end_ns = to_u64(t + tau);
				it.send_ns = to_u64(tau - prev);
				it.bytes_sent = to_u64(bw * (tau - prev));
				it.dirtied_bytes = to_u64(floor(dcurve_at(&c, (tau - prev) * st.thr_f)) * ps);
				it.ram_pending = to_u64(left + dirty);
				precopy_estimator_record(est, &it);
				ack_ok = !need_ack || t + tau >= ack_at;
				precopy_estimator_decide(est, devs, in->ndevs, ack_ok, to_u64(t + tau), &d);
				prev = tau;
				iter++;
				if (take(&st, &d, t + tau)) {
					t += tau;
					sent += bw * tau;
					done = 1;
					break;
				}
			}
			if (done)
				break;
		}
		t += len;
		sent += bytes;
		iter++;
		if (iter == 1) {
			out->first_pass_ns = to_u64(len);
			ack_at = t + (double)in->ack_delay_ns;
		}
		dirt = ts < send ? floor(dirty_at(&c, st.thr_f, send, send, ts, step) +
					 dcurve_at(&c, len * st.thr_f) - dcurve_at(&c, send * st.thr_f)) * ps
				 : floor(dcurve_at(&c, len * st.thr_f)) * ps;
		ddirt = (double)in->device_dirty_Bps * len / 1e9;
		memset(&it, 0, sizeof(it));
		it.end_ns = to_u64(t);
		it.send_ns = to_u64(send - prev);
		it.bytes_sent = to_u64(bytes - bw * prev);
		it.dirtied_bytes = to_u64((prev > 0 ? floor(dcurve_at(&c, (len - prev) * st.thr_f)) * ps : dirt) + ddirt);
		it.ram_pending = to_u64(dirt);
		precopy_estimator_record(est, &it);
		set_dev_precopy(devs, in->ndevs, to_u64(ddirt));
		precopy_estimator_decide(est, devs, in->ndevs, !need_ack || t >= ack_at, to_u64(t), &d);
		ram_pend = dirt;
		dev_pend = ddirt;
		if (take(&st, &d, t))
			break;
		if (d.action == PRECOPY_THROTTLE)
			continue;
		/* stuck: stalled, the pending bytes no longer shrink (a fixed
		 * point: a floor), and nothing will change (no throttle step can
		 * come, or none came in STUCK_PERIODS periods) */
		hist[iter % STUCK_PASSES] = ram_pend + dev_pend;
		if ((st.stalled_run >= STUCK_DECISIONS && iter > STUCK_PASSES &&
		     ram_pend + dev_pend >= hist[(iter + 1) % STUCK_PASSES] * (1 - STUCK_SHRINK) &&
		     ((d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR) || !pol->throttle_initial || st.thr >= pol->throttle_max ||
		      t - st.last_change >= (double)STUCK_PERIODS * (double)pol->throttle_period_ns)) ||
		    iter >= MAX_ITERATIONS) {
stuck:
			out->outcome = (d.blocked & PRECOPY_BLOCK_DEVICE_FLOOR) ? PRECOPY_FORECAST_DEVICE_FLOOR
										: PRECOPY_FORECAST_WORKING_SET;
			out->floor_ns = out->outcome == PRECOPY_FORECAST_DEVICE_FLOOR ? d.device_floor_ns
										      : d.expected_downtime_ns;
			out->floor_bytes = out->outcome == PRECOPY_FORECAST_WORKING_SET ? d.ram_pending : 0;
			out->downtime_ns = d.expected_downtime_ns;
			if (!pol->timeout_ns) {
				out->end = PRECOPY_CONTINUE;
				t = INFINITY;
			} else {
				/* the same passes until the first decision at or
				 * after the timeout */
				double plen = (ram_pend + dev_pend) / bw, k;

				plen = plen > (double)in->min_iteration_ns ? plen : (double)in->min_iteration_ns;
				k = 0;
				if (t < (double)pol->timeout_ns) {
					if (plen <= 0) { /* nothing to send: idle until the timeout */
						plen = (double)pol->timeout_ns - t;
						k = 1;
					} else {
						k = ceil(((double)pol->timeout_ns - t) / plen);
					}
				}
				t += k * plen;
				sent += k * (ram_pend + dev_pend);
				iter += (uint64_t)k;
				out->end = pol->timeout_action == PRECOPY_TIMEOUT_FORCE ? PRECOPY_FORCE_SWITCHOVER
											: PRECOPY_ABORT;
			}
			break;
		}
	}
	if (out->end == PRECOPY_SWITCHOVER)
		out->outcome = PRECOPY_FORECAST_CONVERGES;
	out->iterations = iter;
	out->precopy_ns = to_u64(t);
	out->bytes_sent = to_u64(sent);
	switch (out->end) {
	case PRECOPY_SWITCHOVER:
	case PRECOPY_FORCE_SWITCHOVER: out->total_ns = sat_add(out->precopy_ns, out->downtime_ns); break;
	case PRECOPY_ABORT: out->total_ns = out->precopy_ns; break;
	default: out->total_ns = PRECOPY_UNBOUNDED; break;
	}
	precopy_estimator_free(est);
	free(devs);
	return 0;
}
