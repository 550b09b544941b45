/* SPDX-License-Identifier: MIT */
/* Feeding the estimator (estimator/estimator.c): the VMM's account of each
 * iteration, the cheap estimate (cached device sizes, RAM pending at the
 * last sync) and the exact query (fresh precopy info and stop-copy sizes,
 * a RAM sync) that runs when the cheap one says switchover may be near,
 * then one record and one decision per iteration. No arithmetic of its
 * own beyond unit conversion: the model and the policy live in decide.c. */
#include <errno.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../common/util.h"

int precopy__eng_account(struct precopy_engine *e, uint64_t ram_bytes, uint64_t send_ns)
{
	e->ram_sent = sat_add(e->ram_sent, ram_bytes);
	if (e->phase == PRECOPY_ENGINE_SWITCHED) {
		e->dt.final_ram_ns = sat_add(e->dt.final_ram_ns, send_ns);
		return 0;
	}
	e->it_ram_bytes = sat_add(e->it_ram_bytes, ram_bytes);
	e->it_send_ns = sat_add(e->it_send_ns, send_ns);
	return 0;
}

/* Arcs a device still has to take into STOP_COPY inside the downtime. */
static uint64_t arcs_to_stop_copy(const struct edev *d)
{
	int n = precopy_vfio_fsm_path(precopy__eng_dev_state(d), VFIO_DEVICE_STATE_STOP_COPY, d->mig_flags, NULL, 0);

	return n > 0 ? (uint64_t)n : 1;
}

/* Arcs inside the downtime window: the source's path to STOP_COPY, then
 * the destination's RESUMING -> RUNNING once its state is loaded (the same
 * device model, so the source's measured per-arc latency estimates it).
 * STOP_COPY -> STOP on the source happens after the window. */
static uint64_t arcs_in_downtime(const struct edev *d)
{
	int n = precopy_vfio_fsm_path(VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, d->mig_flags,
				      NULL, 0);

	return arcs_to_stop_copy(d) + (n > 0 ? (uint64_t)n : 2);
}

static void fill_status(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		const struct edev *d = &e->devs[i];
		struct precopy_device_status *s = &e->dstat[i];

		memset(s, 0, sizeof(*s));
		s->stop_copy_bytes = d->stop_copy;
		s->stop_copy_known = (uint8_t)d->sc_known;
		s->stop_copy_guess = (uint8_t)d->sc_guess;
		s->pre_copy = (uint8_t)d->pre_copy;
		if (d->pre_copy) {
			s->initial_bytes = d->init_left;
			s->dirty_bytes = d->dirty;
		}
		e->devs[i].arcs = (uint32_t)arcs_in_downtime(d);
		s->transition_ns = sat_mul(d->trans_est, e->devs[i].arcs);
		s->drain_concurrent = (uint8_t)precopy__mover_concurrent(e);
		s->read_Bps = precopy__mover_read_rate(e, i);
	}
	precopy__eng_be_fill_status(e, e->dstat + e->ndev);
}

/* Fresh sizes from every device, then a RAM sync. A failed stop-copy size
 * query leaves the size unknown (switchover blocked); a failed precopy
 * info or sync fails the migration. */
static int exact_query(struct precopy_engine *e)
{
	uint64_t cursor;
	int64_t n;

	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		uint64_t sz = 0;
		int r = precopy__eng_dev_refresh_info(e, d, 0);

		if (r < 0)
			return r;
		if (d->vu) {
			precopy__eng_vu_size(e, d, &d->sc_guess);
			continue;
		}
		r = precopy_vfio_dev_stop_copy_size(d->vd, &sz);
		d->sc_known = r == 0;
		d->stop_copy = r == 0 ? sz : 0;
	}
	/* In the middle of a pass the sync must not move the hand-out back to
	 * the first page: pages after the cursor (still to be sent in this
	 * pass) would wait behind pages re-dirtied before it, for ever with a
	 * hot set at the start of RAM. Pages it finds before the cursor go in
	 * the next pass. */
	cursor = e->cursor;
	n = precopy__eng_sync(e);
	if (e->dirty_count && cursor < e->log.nbits)
		e->cursor = cursor;
	return n < 0 ? (int)n : 0;
}

/* The cheap estimate: cached device sizes and `pages` of RAM at the last
 * measured bandwidth, into *tmp. 0 if it cannot be made (no decision yet,
 * no bandwidth, a device size unknown). */
static int cheap(struct precopy_engine *e, uint64_t pages, struct precopy_decision *tmp)
{
	uint64_t bw = e->cfg.policy.switchover_bw_Bps ? e->cfg.policy.switchover_bw_Bps : e->last_bw;

	/* in the first pass: what the VMM accounted so far */
	if (!bw && e->it_send_ns)
		bw = (uint64_t)((long double)e->it_ram_bytes * 1e9L / (long double)e->it_send_ns);
	if (!bw)
		return 0;
	for (uint32_t i = 0; i < e->ndev; i++)
		if (!e->devs[i].sc_known)
			return 0; /* retry the size that blocks switchover */
	memset(tmp, 0, sizeof(*tmp));
	precopy_downtime_model(sat_mul(pages, e->ps), e->dstat, e->ndev + e->nbe, bw,
			       e->cfg.policy.fixed_downtime_ns, tmp);
	tmp->bandwidth_Bps = bw;
	return 1;
}

static int within_margin(const struct precopy_engine *e, const struct precopy_decision *tmp)
{
	uint64_t limit = e->cfg.policy.downtime_limit_ns;

	return (unsigned __int128)tmp->expected_downtime_ns * 100u <=
	       (unsigned __int128)limit * e->cfg.exact_margin_pct;
}

/* Does the cheap estimate say switchover may be near? */
static int near(struct precopy_engine *e)
{
	struct precopy_decision tmp;

	return !e->have_decision || !cheap(e, e->last_sync_pending, &tmp) || within_margin(e, &tmp);
}

/* A call in the middle of a pass (pages still dirty and not handed out):
 * if the pages still to send, at the measured bandwidth, are not within the
 * exact query's margin of the limit, say CONTINUE from the cheap estimate
 * without recording an iteration. Returns 1 if it did, 0 if the call is to
 * end the iteration (sync, record, decide) as at the end of a pass. */
static int midpass_check(struct precopy_engine *e, uint64_t now, struct precopy_decision *d)
{
	const struct precopy_policy *pol = &e->cfg.policy;

	int have;

	if (!e->dirty_count || e->cursor >= e->log.nbits)
		return 0; /* the end of a pass */
	if (e->have_decision && pol->timeout_ns && now >= e->first_record_ns &&
	    now - e->first_record_ns >= pol->timeout_ns)
		return 0; /* the estimator applies the timeout action */
	have = cheap(e, e->dirty_count, d);
	if (have && within_margin(e, d))
		return 0;
	if (!have) {
		/* no bandwidth yet (the first pass) or a device size unknown:
		 * the pass goes on, the end of it asks again */
		memset(d, 0, sizeof(*d));
		d->ram_pending = sat_mul(e->dirty_count, e->ps);
		d->pending_bytes = d->ram_pending;
		d->expected_downtime_ns = PRECOPY_UNBOUNDED;
	}
	d->action = PRECOPY_CONTINUE;
	d->reason = "";
	d->iteration = e->iterations;
	d->throttle = e->last_iter.throttle;
	d->blocked = have ? PRECOPY_BLOCK_DOWNTIME : PRECOPY_BLOCK_NO_BANDWIDTH;
	d->dirty_rate_Bps = e->last_dirty_rate;
	d->rho = e->last_iter.rho;
	d->predicted_iterations = PRECOPY_UNBOUNDED;
	d->predicted_time_ns = PRECOPY_UNBOUNDED;
	return 1;
}

static void iter_stats(struct precopy_engine *e, const struct precopy_decision *d, int exact)
{
	struct precopy_engine_iter_stats *s = &e->last_iter;

	s->iteration = e->iterations;
	s->end_ns = e->last_in.iteration.end_ns;
	s->dirty_pages = e->it_dirty_pages;
	s->ram_bytes = e->it_ram_bytes;
	s->device_bytes = e->it_dev_bytes;
	s->bandwidth_Bps = d->bandwidth_Bps;
	s->ram_pending = d->ram_pending;
	s->device_precopy = d->device_precopy;
	s->device_stop_copy = d->device_stop_copy;
	s->expected_downtime_ns = d->expected_downtime_ns;
	s->rho = d->rho;
	s->predicted_time_ns = d->predicted_time_ns;
	s->throttle = d->throttle;
	s->action = d->action;
	s->exact = exact;
}

int precopy__eng_decide(struct precopy_engine *e, struct precopy_decision *d)
{
	struct precopy_iteration it;
	uint64_t now, dev_dirtied = 0;
	int exact, r;

	r = precopy__eng_rp_poll(e);
	if (r < 0)
		return r;
	fill_status(e);
	if (midpass_check(e, precopy__eng_now(e), d))
		return 0;
	exact = e->dirty_count || near(e);
	if (exact) {
		r = exact_query(e);
		if (r < 0)
			return r;
		fill_status(e);
	}
	now = precopy__eng_now(e);
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *dv = &e->devs[i];
		uint64_t grown = sat_add(dv->dirty, dv->dirty_read);

		if (dv->pre_copy && grown > dv->dirty_prev)
			dev_dirtied = sat_add(dev_dirtied, grown - dv->dirty_prev);
		dv->dirty_prev = dv->dirty;
		dv->dirty_read = 0;
	}
	memset(&it, 0, sizeof(it));
	it.end_ns = now;
	it.send_ns = sat_add(e->it_send_ns, e->it_dev_ns);
	it.bytes_sent = sat_add(e->it_ram_bytes, e->it_dev_bytes);
	it.dirtied_bytes = sat_add(sat_mul(e->it_dirty_pages, e->ps), dev_dirtied);
	it.ram_pending = sat_mul(exact ? e->dirty_count : e->last_sync_pending, e->ps);
	if (!e->iterations)
		e->first_record_ns = now >= it.send_ns ? now - it.send_ns : 0;
	r = precopy_estimator_record(e->est, &it);
	if (r < 0) {
		precopy__eng_seterr(e, r, "decide: the clock went backwards");
		return r;
	}
	e->iterations++;
	r = precopy_estimator_decide(e->est, e->dstat, e->ndev + e->nbe, e->acked, now, d);
	if (r < 0) {
		precopy__eng_seterr(e, r, "decide: estimator: %s", strerror(-r));
		return r;
	}
	e->last_in.iteration = it;
	e->last_in.ack_received = e->acked;
	e->last_in.now_ns = now;
	e->last_in.exact = exact;
	e->have_decision = 1;
	e->last_bw = d->bandwidth_Bps;
	e->last_dirty_rate = d->dirty_rate_Bps;
	e->last_expected = d->expected_downtime_ns;
	e->last_blocked = d->blocked;
	/* the stall lasts from the first decision that reports one until a
	 * decision finds the limit met (the estimator's own flag may drop
	 * for an iteration while a new throttle level gets its chance) */
	if (d->stalled && !e->stalled) {
		e->stalled = 1;
		e->stalled_since_ns = now;
	} else if (!(d->blocked & (PRECOPY_BLOCK_DOWNTIME | PRECOPY_BLOCK_DEVICE_FLOOR | PRECOPY_BLOCK_WORKING_SET |
				    PRECOPY_BLOCK_UNKNOWN_SIZE))) {
		e->stalled = 0;
		e->stalled_since_ns = 0;
	}
	iter_stats(e, d, exact);
	precopy__eng_log(e, PRECOPY_LOG_INFO,
			 "iteration %llu: %s, expected downtime %.1f ms (limit %.1f ms), pending %llu bytes, "
			 "bandwidth %.1f MB/s, throttle %u%%%s%s",
			 (unsigned long long)e->iterations, precopy_action_name(d->action),
			 d->expected_downtime_ns == PRECOPY_UNBOUNDED ? -1.0 : d->expected_downtime_ns / 1e6,
			 e->cfg.policy.downtime_limit_ns / 1e6, (unsigned long long)d->pending_bytes,
			 d->bandwidth_Bps / 1e6, d->throttle, d->reason[0] ? ": " : "", d->reason);
	e->it_ram_bytes = e->it_send_ns = e->it_dev_bytes = e->it_dev_ns = e->it_dirty_pages = 0;
	if (d->action == PRECOPY_SWITCHOVER || d->action == PRECOPY_FORCE_SWITCHOVER)
		e->switch_decided = 1;
	return 0;
}

PRECOPY_API int precopy_engine_last_input(const struct precopy_engine *e, struct precopy_engine_decide_input *in,
					  struct precopy_device_status *devs, size_t max)
{
	if (!e || !in || (max && !devs))
		return -EINVAL;
	if (!e->have_decision)
		return -ENOENT;
	*in = e->last_in;
	for (size_t i = 0; i < max && i < e->ndev + e->nbe; i++)
		devs[i] = e->dstat[i];
	return (int)(e->ndev + e->nbe);
}
