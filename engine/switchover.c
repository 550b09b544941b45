/* SPDX-License-Identifier: MIT */
/* Switchover and completion on the source: quiesce every device (P2P
 * states) before stopping any, STOP_COPY, the final sync once nothing can
 * dirty memory any more, every device's state to its end of data, the end
 * of the stream; then, after the downtime window, DMA logging off and the
 * devices STOP_COPY -> STOP. */
#include <errno.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../common/util.h"

/* Move every device to the quiesced state that matches where it is:
 * RUNNING -> RUNNING_P2P, PRE_COPY -> PRE_COPY_P2P, for devices with P2P. */
static int quiesce_all(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		uint32_t cur = precopy__eng_dev_state(d), target;
		int r;

		if (!(d->mig_flags & VFIO_MIGRATION_P2P))
			continue;
		target = cur == VFIO_DEVICE_STATE_PRE_COPY ? VFIO_DEVICE_STATE_PRE_COPY_P2P : VFIO_DEVICE_STATE_RUNNING_P2P;
		r = precopy__eng_dev_move(e, d, target, VFIO_DEVICE_STATE_RUNNING);
		e->dt.transitions_ns = sat_add(e->dt.transitions_ns, d->trans_last);
		if (r < 0) {
			precopy__eng_seterr(e, r, "switchover: device %u: %s -> %s: %s", d->cfg.id, precopy_vfio_state_name(cur),
				   precopy_vfio_state_name(target), strerror(-r));
			return r;
		}
	}
	return 0;
}

static int stop_copy_all(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		uint32_t cur = precopy__eng_dev_state(d);
		int r = precopy__eng_dev_move(e, d, VFIO_DEVICE_STATE_STOP_COPY, VFIO_DEVICE_STATE_RUNNING);

		e->dt.transitions_ns = sat_add(e->dt.transitions_ns, d->trans_last);
		if (r < 0) {
			precopy__eng_seterr(e, r, "switchover: device %u: %s -> STOP_COPY: %s", d->cfg.id,
				   precopy_vfio_state_name(cur), strerror(-r));
			return r;
		}
	}
	return 0;
}

int precopy__eng_switchover(struct precopy_engine *e)
{
	uint64_t t;
	int64_t n;
	int r;
	uint8_t *rec;

	/* An ACK (or an error) still queued on the return path is judged now. */
	r = precopy__eng_rp_poll(e);
	if (r < 0)
		return r;
	e->switch_decided = 1;
	memset(&e->dt, 0, sizeof(e->dt));
	e->dt.fixed_ns = e->cfg.policy.fixed_downtime_ns;
	e->dt.expected_ns = e->last_expected;
	e->sw_start_ns = precopy__eng_now(e);
	for (uint32_t i = 0; i < e->ndev; i++) {
		e->devs[i].trans_last = 0;
		e->devs[i].precopy_sent = e->devs[i].bytes_sent;
	}
	r = quiesce_all(e);
	if (r == 0)
		r = stop_copy_all(e);
	if (r < 0)
		return r;
	/* vCPUs (the VMM) and devices are stopped: nothing dirties RAM now. */
	n = precopy__eng_sync(e);
	if (n < 0)
		return n;
	e->dt.final_ram_pages = e->dirty_count;
	t = precopy__eng_now(e);
	/* every device's and back-end's state to its end (the VMM stopped the
	 * back-ends' queues with the vCPUs): concurrently where it can */
	n = precopy__mover_drain(e);
	if (n < 0)
		return n;
	e->dt.device_bytes = sat_add(e->dt.device_bytes, (uint64_t)n);
	rec = e->rec;
	r = precopy_stream_encode_stream_end(rec, e->rec_cap);
	if (r > 0)
		r = precopy__eng_emit(e, rec, (size_t)r);
	if (r < 0)
		return r;
	e->dt.device_drain_ns = precopy__eng_now(e) - t;
	e->phase = PRECOPY_ENGINE_SWITCHED;
	precopy__eng_log(e, PRECOPY_LOG_INFO,
			 "switchover: %llu device bytes drained in %.3f ms (%s), %llu RAM pages left, "
			 "transitions %.3f ms",
			 (unsigned long long)e->dt.device_bytes, e->dt.device_drain_ns / 1e6,
			 precopy__mover_concurrent(e) ? "concurrently" : "one device after another",
			 (unsigned long long)e->dt.final_ram_pages, e->dt.transitions_ns / 1e6);
	return 0;
}

int precopy__eng_complete(struct precopy_engine *e)
{
	int first = 0, r;

	/* The downtime window closed when the VMM called us. */
	e->dt.total_ns = precopy__eng_now(e) - e->sw_start_ns;
	r = precopy__eng_tracking_stop(e, "complete");
	if (r < 0)
		first = r;
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];

		/* STOP_COPY -> STOP ends the session; recovery is pointless here:
		 * the guest runs on the destination. */
		r = precopy__eng_dev_move(e, d, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_ERROR);
		if (r < 0 && !first) {
			first = r;
			precopy__eng_seterr(e, r, "complete: device %u: STOP_COPY -> STOP: %s", d->cfg.id, strerror(-r));
		}
		if (d->vd)
			precopy_vfio_dev_end_session(d->vd);
	}
	if (e->kvm_started) {
		r = precopy_kvm_log_stop(e->kvm);
		e->kvm_started = 0;
		if (r < 0 && !first) {
			first = r;
			precopy__eng_seterr(e, r, "complete: KVM dirty logging off: %s", strerror(-r));
		}
	}
	precopy__mover_close(e);
	precopy__eng_rp_close(e);
	precopy__eng_stream_close(e);
	e->phase = PRECOPY_ENGINE_DONE;
	e->end_ns = precopy__eng_now(e);
	precopy__eng_log(e, first ? PRECOPY_LOG_WARNING : PRECOPY_LOG_INFO,
			 "complete: downtime %.3f ms (expected %.3f ms)%s%s", e->dt.total_ns / 1e6,
			 e->dt.expected_ns == PRECOPY_UNBOUNDED ? -1.0 : e->dt.expected_ns / 1e6,
			 first ? "; " : "", first ? e->errmsg : "");
	return first;
}
