/* SPDX-License-Identifier: MIT */
/* The forecast on the engine (precopy_engine_forecast_*): before a
 * migration, dirty logging on and nothing sent, the engine's own syncs
 * count the pages the guest and the devices dirty over the caller's
 * intervals; the end stops the logging and feeds those counts, the
 * devices' sizes and the engine's policy to precopy_forecast()
 * (estimator/forecast.c). No device changes state and no stream is
 * opened: a migration may start right after. */
#include <errno.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../common/util.h"

/* Undo what begin set up; the first -errno met. */
static int stop_logging(struct precopy_engine *e, const char *step)
{
	int first = precopy__eng_tracking_stop(e, step), r;

	if (e->kvm_started) {
		r = precopy_kvm_log_stop(e->kvm);
		if (r < 0 && !first) {
			precopy__eng_seterr(e, r, "%s: KVM dirty logging stop: %s", step, strerror(-r));
			first = r;
		}
		e->kvm_started = 0;
	}
	for (uint32_t i = 0; i < e->ndev; i++)
		e->devs[i].tracking = 0;
	precopy_bitmap_zero(&e->log);
	e->dirty_count = e->last_sync_pending = e->it_dirty_pages = 0;
	e->fc_active = 0;
	return first;
}

/* One sync into the emptied log: the pages dirty since the last one. */
static int64_t count_dirty(struct precopy_engine *e)
{
	int64_t n;

	precopy_bitmap_zero(&e->log);
	e->dirty_count = 0;
	n = precopy__eng_sync(e);
	precopy_bitmap_zero(&e->log);
	e->dirty_count = e->last_sync_pending = e->it_dirty_pages = 0;
	return n;
}

int precopy__eng_fc_begin(struct precopy_engine *e)
{
	int64_t n;
	int r;

	e->err = 0;
	e->errmsg[0] = 0;
	r = precopy__eng_tracking_retry(e, "forecast");
	if (r < 0)
		return r;
	e->fc_active = 1;
	e->fc_n = 0;
	if (e->kvm) {
		r = precopy_kvm_log_start(e->kvm);
		if (r < 0) {
			precopy__eng_seterr(e, r, "forecast: KVM dirty logging: %s", strerror(-r));
			stop_logging(e, "forecast");
			return r;
		}
		e->kvm_started = 1;
	}
	for (uint32_t i = 0; i < e->ndev; i++)
		e->devs[i].tracking_src = NULL;
	r = precopy__eng_tracking_start(e);
	if (r < 0) {
		stop_logging(e, "forecast");
		return r;
	}
	/* what was dirty before the window is not the guest's rate */
	n = count_dirty(e);
	if (n < 0) {
		stop_logging(e, "forecast");
		return (int)n;
	}
	e->fc_last_ns = precopy__eng_now(e);
	return 0;
}

int64_t precopy__eng_fc_sample(struct precopy_engine *e)
{
	uint64_t now;
	int64_t n;

	if (e->fc_n >= PRECOPY_FORECAST_MAX_SAMPLES)
		return -ENOSPC;
	n = count_dirty(e);
	if (n < 0) {
		stop_logging(e, "forecast");
		return n;
	}
	now = precopy__eng_now(e);
	e->fc_samples[e->fc_n].interval_ns = now > e->fc_last_ns ? now - e->fc_last_ns : 0;
	e->fc_samples[e->fc_n].dirty_pages = (uint64_t)n;
	e->fc_n++;
	e->fc_last_ns = now;
	return n;
}

/* Arcs a device will take inside the downtime once it is migrating: from
 * PRE_COPY (or RUNNING without pre-copy) to STOP_COPY, then the
 * destination's RESUMING -> RUNNING (engine/estimate.c's count). */
static uint64_t arcs(const struct edev *d)
{
	uint32_t from = d->mig_flags & VFIO_MIGRATION_PRE_COPY ? VFIO_DEVICE_STATE_PRE_COPY : VFIO_DEVICE_STATE_RUNNING;
	int a = precopy_vfio_fsm_path(from, VFIO_DEVICE_STATE_STOP_COPY, d->mig_flags, NULL, 0);
	int b = precopy_vfio_fsm_path(VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, d->mig_flags, NULL, 0);

	return (uint64_t)(a > 0 ? a : 1) + (uint64_t)(b > 0 ? b : 2);
}

static void device_status(struct precopy_engine *e, const struct precopy_engine_forecast_params *p,
			  struct precopy_device_status *st)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		const struct edev *d = &e->devs[i];
		struct precopy_device_status *s = &st[i];
		uint64_t sz = 0;

		memset(s, 0, sizeof(*s));
		if (d->vu) { /* no size query outside a migration: the hint, the last drain */
			s->stop_copy_bytes = d->sc_hint ? d->sc_hint : d->sc_last;
			s->stop_copy_known = s->stop_copy_bytes != 0;
			s->stop_copy_guess = !d->sc_hint;
		} else if (precopy_vfio_dev_stop_copy_size(d->vd, &sz) == 0) {
			s->stop_copy_bytes = sz;
			s->stop_copy_known = 1;
		}
		s->pre_copy = (d->mig_flags & VFIO_MIGRATION_PRE_COPY) != 0;
		if (s->pre_copy && p->initial_bytes)
			s->initial_bytes = p->initial_bytes[i];
		s->transition_ns = sat_mul(d->trans_est, arcs(d));
		s->drain_concurrent = (uint8_t)precopy_sys_has_aio(e->cfg.sys);
		s->read_Bps = precopy__mover_read_rate(e, i);
	}
	precopy__eng_be_fill_status(e, st + e->ndev);
}

int precopy__eng_fc_end(struct precopy_engine *e, const struct precopy_engine_forecast_params *p,
			struct precopy_forecast *out)
{
	struct precopy_forecast_input in;
	uint64_t ram = 0;
	int r = 0, s;

	if (p && out) {
		/* sizes while the devices are as the migration will find them */
		device_status(e, p, e->dstat);
		for (uint32_t i = 0; i < e->cfg.nslots; i++)
			ram = sat_add(ram, e->slots[i].size);
		memset(&in, 0, sizeof(in));
		in.ram_bytes = ram;
		in.page_size = e->ps;
		in.samples = e->fc_samples;
		in.nsamples = e->fc_n;
		in.devs = e->dstat;
		in.ndevs = e->ndev + e->nbe;
		in.device_dirty_Bps = p->device_dirty_Bps;
		in.bandwidth_Bps = p->bandwidth_Bps;
		in.min_iteration_ns = p->min_iteration_ns;
		in.check_ns = p->check_ns;
		in.ack_delay_ns = p->ack_delay_ns;
		r = precopy_forecast(&e->cfg.policy, &in, out);
		if (r < 0)
			precopy__eng_seterr(e, r, "forecast: %s", r == -EINVAL && !e->fc_n ? "no sample taken"
								   : r == -EINVAL ? "no bandwidth, or every interval 0"
								   : strerror(-r));
	}
	s = stop_logging(e, "forecast");
	return r < 0 ? r : s;
}
