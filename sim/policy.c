/* SPDX-License-Identifier: MIT */
/* Other VMMs' pre-copy rules as decision functions (sim/policy.h). Written
 * here from the rules as docs/policies.md states them, with the source each
 * comes from; no code of those projects is in this file. */
#include <string.h>

#include "precopy/engine.h"
#include "policy.h"
#include "simulator.h"

static const char *const names[SIM_POLICY_COUNT] = { "precopy", "qemu", "ch", "xen" };

const char *sim_policy_name(int policy)
{
	return policy >= 0 && policy < SIM_POLICY_COUNT ? names[policy] : NULL;
}

int sim_policy_parse(const char *name)
{
	for (int i = 0; name && i < SIM_POLICY_COUNT; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* bytes at bytes/s, in ns (UINT64_MAX without a bandwidth) */
static uint64_t xfer_ns(uint64_t bytes, uint64_t bw)
{
	unsigned __int128 t;

	if (!bw || bytes == UINT64_MAX)
		return UINT64_MAX;
	t = (unsigned __int128)bytes * 1000000000u / bw;
	return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

void sim_vmm_init(struct sim_vmm *v, const struct sim_vmm_params *p)
{
	memset(v, 0, sizeof(*v));
	v->p = *p;
}

/* The operator's timeout, where the rule has none of its own (QEMU) or as
 * the rule's own (CH). Returns 1 if it decided. */
static int timed_out(const struct sim_vmm *v, const struct sim_vmm_input *in, uint64_t timeout_ns,
		     struct sim_vmm_decision *d)
{
	if (!timeout_ns || in->now_ns < timeout_ns)
		return 0;
	if (v->p.timeout_action == PRECOPY_TIMEOUT_FORCE) {
		if (!in->ack_ok) { /* a forced switchover still needs the ack */
			d->ack_held = 1;
			return 0;
		}
		d->action = SIM_VMM_FORCE;
		d->reason = "timeout: switching over regardless of the downtime limit";
	} else {
		d->action = SIM_VMM_CANCEL;
		d->reason = "timeout: the limit was not met";
	}
	return 1;
}

/* ---- QEMU ---------------------------------------------------------------
 * After every rate-limit window the migration thread asks for the bytes
 * still to send (RAM dirty in the migration bitmap, a VFIO device's pre-copy
 * bytes); when that estimate is under bandwidth x limit it syncs the dirty
 * log and asks again with the devices' stop-copy sizes; it completes when
 * the exact figure is under the threshold (or zero) and the ack is in.
 * The bandwidth is the last window's: bytes put on the wire over the time
 * since the window began, recomputed once at least 100 ms have passed.
 * Auto-converge, evaluated in each sync once a period of more than a second
 * has gone by: dirtied bytes in the period above 50% of the bytes sent in
 * it counts once; the second count (not necessarily consecutive) starts the
 * throttle at its initial value or raises it by the increment, up to the
 * maximum. */
static void qemu_counters(struct sim_vmm *v, const struct sim_vmm_input *in)
{
	uint64_t spent = in->now_ns - v->win_start_ns, bw;

	if (in->now_ns < v->win_start_ns || spent < SIM_QEMU_WINDOW_NS)
		return;
	v->bw = (uint64_t)((unsigned __int128)(in->link_bytes - v->win_start_bytes) * 1000000000u / spent);
	bw = v->p.switchover_bw_Bps ? v->p.switchover_bw_Bps : v->bw;
	v->threshold = (uint64_t)((unsigned __int128)bw * v->p.limit_ns / 1000000000u);
	v->win_start_ns = in->now_ns;
	v->win_start_bytes = in->link_bytes;
}

static void qemu_auto_converge(struct sim_vmm *v, const struct sim_vmm_input *in)
{
	uint64_t xfer;

	v->period_dirty = sat_add(v->period_dirty, in->dirtied_bytes);
	if (in->now_ns <= v->period_start_ns + SIM_QEMU_PERIOD_NS)
		return;
	xfer = in->link_bytes - v->period_start_bytes;
	if (v->p.throttle_initial &&
	    (unsigned __int128)v->period_dirty * 100u > (unsigned __int128)xfer * SIM_QEMU_TRIGGER_PCT &&
	    ++v->high_cnt >= 2) {
		v->high_cnt = 0;
		if (!v->throttle)
			v->throttle = v->p.throttle_initial;
		else
			v->throttle = v->throttle + v->p.throttle_increment > v->p.throttle_max
					      ? v->p.throttle_max
					      : v->throttle + v->p.throttle_increment;
	}
	v->period_start_ns = in->now_ns;
	v->period_start_bytes = in->link_bytes;
	v->period_dirty = 0;
}

static void qemu_decide(struct sim_vmm *v, const struct sim_vmm_input *in, struct sim_vmm_decision *d)
{
	uint64_t pending, bw;

	qemu_counters(v, in);
	bw = v->p.switchover_bw_Bps ? v->p.switchover_bw_Bps : v->bw;
	if (in->point == SIM_VMM_WINDOW) {
		pending = sat_add(in->ram_pending, in->dev_precopy);
		d->expected_downtime_ns = xfer_ns(pending, bw);
		if (pending < v->threshold) {
			d->action = SIM_VMM_SYNC;
			return;
		}
		timed_out(v, in, v->p.timeout_ns, d);
		return;
	}
	qemu_auto_converge(v, in);
	pending = sat_add(sat_add(in->ram_pending, in->dev_precopy), in->dev_stop_copy);
	d->expected_downtime_ns = xfer_ns(pending, bw);
	if (!pending || pending < v->threshold) {
		if (in->ack_ok) {
			d->action = SIM_VMM_SWITCHOVER;
			d->reason = "pending bytes under bandwidth x limit";
			return;
		}
		d->ack_held = 1;
	}
	timed_out(v, in, v->p.timeout_ns, d);
}

/* ---- Cloud Hypervisor v52 -----------------------------------------------
 * Each pass starts with the dirty log; the bytes it holds over the last
 * pass's memory bandwidth (bytes of that pass over its transfer time) is
 * the expected downtime, devices not counted. Converged when nothing is
 * dirty or that estimate is within the limit; otherwise, once the timeout
 * (default one hour) has passed, cancel or ignore the limit. No throttle. */
static void ch_decide(struct sim_vmm *v, const struct sim_vmm_input *in, struct sim_vmm_decision *d)
{
	uint64_t est;

	if (in->point != SIM_VMM_SYNCED || !in->pass_end)
		return; /* CH decides only between passes */
	if (in->pass_ram_ns)
		v->ch_bw = (uint64_t)((unsigned __int128)in->pass_ram_bytes * 1000000000u / in->pass_ram_ns);
	est = in->ram_pending ? xfer_ns(in->ram_pending, v->ch_bw) : 0;
	d->expected_downtime_ns = est;
	if (!in->ram_pending || est <= v->p.limit_ns) {
		if (in->ack_ok) {
			d->action = SIM_VMM_SWITCHOVER;
			d->reason = in->ram_pending ? "memory delta / last pass's bandwidth within the limit"
						    : "no dirty memory left";
			return;
		}
		d->ack_held = 1;
	}
	timed_out(v, in, v->p.timeout_ns ? v->p.timeout_ns : SIM_CH_DEFAULT_TIMEOUT_NS, d);
}

/* ---- Xen (libxenguest's default precopy policy) ------------------------
 * Before each live pass: fewer than 50 dirty pages, or 5 passes done, means
 * stop-and-copy; the pages found dirty are still sent live first when the
 * count was the reason. No downtime limit, no bandwidth, no device state. */
static void xen_decide(struct sim_vmm *v, const struct sim_vmm_input *in, struct sim_vmm_decision *d)
{
	uint64_t dirty_pages;

	if (in->point != SIM_VMM_SYNCED || !in->pass_end)
		return;
	v->passes++;
	dirty_pages = v->p.page_size ? in->ram_pending / v->p.page_size : 0;
	if (v->last_pass || !dirty_pages) {
		d->reason = "fewer than 50 dirty pages: stop-and-copy";
	} else if (v->passes >= SIM_XEN_MAX_ITERATIONS) {
		d->reason = "5 live passes done: stop-and-copy regardless";
	} else {
		if (dirty_pages < SIM_XEN_TARGET_DIRTY)
			v->last_pass = 1; /* send them live, then stop */
		return;
	}
	if (in->ack_ok) {
		d->action = SIM_VMM_SWITCHOVER;
		return;
	}
	d->reason = "";
	d->ack_held = 1;
}

void sim_vmm_decide(struct sim_vmm *v, const struct sim_vmm_input *in, struct sim_vmm_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->reason = "";
	d->expected_downtime_ns = UINT64_MAX;
	switch (v->p.policy) {
	case SIM_POLICY_QEMU: qemu_decide(v, in, d); break;
	case SIM_POLICY_CH: ch_decide(v, in, d); break;
	case SIM_POLICY_XEN: xen_decide(v, in, d); break;
	default: break;
	}
	d->throttle = v->throttle;
	d->bandwidth_Bps = v->p.policy == SIM_POLICY_CH ? v->ch_bw : v->bw;
}
