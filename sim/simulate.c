/* SPDX-License-Identifier: MIT */
/* The simulator's driver: the real source engine (precopy_engine_*) and the
 * real destination engine (precopy_dest_*) run over two fake kernels on one
 * virtual clock. The VMM's role around them is the one the engine suites
 * play too (harness/vmm_role.h: device pairs, the loop's steps, the
 * switchover, the destination's resume); this file is its world: the
 * link, the guest, the destination's timing, other VMMs' rules.
 *
 * The model (what a run means):
 *
 *  - Time. One virtual clock (ns). The engines and the fake kernels read
 *    only it. It moves when bytes cross the link, when a fake device takes a
 *    state transition (its `transition` latency, through the fake kernel's
 *    advance hook), and when the driver idles (below). Nothing else takes
 *    virtual time: the engines' own computation is free.
 *
 *  - The link. One pipe of `bandwidth` bytes per second shared in turn by RAM
 *    pages and the device-state stream; B bytes take B / bandwidth (exact
 *    integer arithmetic with the remainder carried, so no drift). Guest
 *    pages cost their page size on the wire; stream bytes cost what the
 *    engine writes (records with their headers). `latency` is one way and
 *    is paid where a round trip is on the critical path, not per page: the
 *    destination sees the initial data of a device `latency` after it was
 *    sent, the switchover-ack needs `latency` to come back, and the last
 *    byte of the downtime arrives `latency` after it left.
 *
 *  - The guest. A workload (sim/workload.c) sets bits in the engine's live
 *    RAM bitmap (PRECOPY_RAM_BITMAP) at `rate` x (1 - throttle) bytes per
 *    virtual second. It is brought up to the clock lazily, right before
 *    anything can harvest the bitmap (each sync, each decide, whose exact
 *    query syncs, and the switchover), which is the same as writing
 *    continuously because only harvests observe the bitmap. The vCPUs stop
 *    at switchover: the workload writes nothing after it.
 *
 *  - Devices. Fake VFIO devices (fake/vfio*.c) with the scenario's
 *    initial bytes, stop-copy size, pre-copy dirty rate, transition latency
 *    and DMA rate, all on the virtual clock. Their DMA lands anywhere in
 *    guest RAM and marks only their DMA log (dma_log_only: guest RAM is
 *    never backed by memory), which the engine merges into the RAM log.
 *    State bytes are real bytes through the fake data fds, the engine's
 *    stream, the destination engine and the destination's fake devices,
 *    which check every byte.
 *
 *  - An iteration: bring the guest up to the clock, sync, take every dirty
 *    page (RAM bytes cross the link), pump device pre-copy data with a
 *    budget of max(the RAM bytes of the iteration, 250 ms of link time),
 *    account, decide. An iteration lasts at least 10 ms (the cost of a sync
 *    and of scheduling: without it a converged guest would iterate without
 *    bound in no time), 100 ms while the engine waits for the ACK only.
 *
 *  - The destination. The stream goes straight into precopy_dest_feed() as
 *    the engine writes it. A device with pre-copy loads its initial data in
 *    `dest_load` once that data arrived; the destination engine's RP_ACK is
 *    held until every such load is done, then needs `latency` to reach the
 *    source (precopy_engine_rp_feed()). So with switchover-ack dest_load
 *    happens before the switchover. A device without pre-copy has all its
 *    state in the stop-copy phase: its dest_load falls in the downtime.
 *
 *  - Downtime: from the vCPU stop (before precopy_engine_switchover()) to
 *    the destination resuming: device quiesce/STOP_COPY transitions, the
 *    device-state drain, the final RAM pages, `latency`, the destination
 *    loads of devices without pre-copy (in parallel: the longest), the
 *    policy's fixed cost, and the destination devices' transitions to
 *    RUNNING (precopy_dest_complete()), all on the virtual clock.
 *
 *  - The end. The engine's decision ends the run: SWITCHOVER, ABORT (the
 *    timeout with timeout_action=cancel: outcome "cancelled") or
 *    FORCE_SWITCHOVER (outcome "forced"). max_iterations (default 100000)
 *    applies the timeout action itself, as a last guard.
 *
 *  - Other VMMs' rules (sc->policy qemu, ch, xen: sim/policy.c, their sources
 *    in docs/policies.md). The same engine measures and makes its exact
 *    query at every decision; the rule is asked after every 100 ms window
 *    of RAM link time (QEMU) or between passes (CH, Xen) and its answer
 *    replaces the engine's action and throttle. No rule switches over
 *    before the switchover-ack: the time it was held counts as ack wait.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/fake.h"
#include "../harness/vmm_role.h"
#include "../ioctl/uapi_compat.h"
#include "policy.h"
#include "simulator.h"
#include "../common/util.h"

#define T0_NS 1000000000ull          /* the virtual clock at the start */
#define MIN_ITER_NS 10000000ull      /* 10 ms */
#define ACK_POLL_NS 100000000ull     /* 100 ms */
#define PUMP_SLICE_NS 250000000ull   /* 250 ms of link per iteration for devices */
#define SAMPLE_NS 100000000ull       /* pending bytes sampled inside a pass without windows */
#define DEFAULT_MAX_ITER 100000ull

_Static_assert(SIM_MAX_DEVICES <= VMM_ROLE_MAX_DEVICES, "the VMM's role holds every device");

struct vclock {
	uint64_t now;
};

static uint64_t vc_now(void *c)
{
	return ((struct vclock *)c)->now;
}

static void vc_advance(void *c, uint64_t ns)
{
	((struct vclock *)c)->now += ns;
}

struct run {
	const struct sim_scenario *sc;
	struct sim_result *res;
	struct vclock clk;
	unsigned __int128 link_rem;
	struct vmm_role vr; /* the fake kernels, the device pairs, the loop's steps */
	struct precopy_bitmap live;
	struct sim_workload *wl;
	struct precopy_engine *e;
	struct precopy_dest *d;
	struct precopy_sys_ops serial_ops;
	struct precopy_sys serial_sys;
	/* the return path */
	uint8_t rp[256];
	size_t rp_len;
	int rp_pending;
	uint64_t rp_emit_ns;
	uint64_t init_arrival[SIM_MAX_DEVICES]; /* 0: not yet */
	int dest_err;
	uint64_t writes_mark;
	uint64_t iter_start; /* the current iteration's start */
	int waiting_ack;     /* ... is one of waiting for the ACK */
	uint64_t link_bytes; /* everything put on the link */
	/* a foreign policy (sc->policy != PRECOPY) plays the VMM's decisions */
	int foreign;
	struct sim_vmm vmm;
	struct sim_vmm_decision vd; /* its last decision */
	uint64_t dev_precopy, dev_stop_copy; /* the engine's last exact device figures */
	int ack_ok; /* as of the engine's last decision: the ack is in or not needed */
	uint64_t dev_pending; /* device bytes of the last decision (samples) */
	uint64_t t0; /* the clock when the migration started (the guest's time 0) */
	uint64_t window_ns; /* this iteration's questions inside a pass (0: none) */
};

static uint64_t now_rel(const struct run *r)
{
	return r->clk.now - r->t0;
}

/* B bytes cross the link. */
static void link_send(struct run *r, uint64_t bytes)
{
	unsigned __int128 t = (unsigned __int128)bytes * 1000000000u + r->link_rem;

	r->link_bytes += bytes;
	r->clk.now += (uint64_t)(t / r->sc->bandwidth_Bps);
	r->link_rem = t % r->sc->bandwidth_Bps;
}

/* The VMM's role in this world: guest pages only take link time; the
 * last ones, inside the downtime, also the latency to the destination. */
static uint64_t role_now(void *ctx)
{
	return ((struct run *)ctx)->clk.now;
}

static void role_send_pages(void *ctx, uint64_t bytes, int final)
{
	struct run *r = ctx;

	link_send(r, bytes);
	if (final)
		r->clk.now += r->sc->latency_ns;
}

static void seterr(struct run *r, const char *what, int err, const char *detail)
{
	if (r->res->error[0])
		return;
	snprintf(r->res->error, sizeof(r->res->error), "%s: %s%s%s", what, strerror(err < 0 ? -err : err),
		 detail && *detail ? ": " : "", detail ? detail : "");
}

/* Which pre-copy devices have their initial data at the destination now. */
static void note_arrivals(struct run *r)
{
	for (uint32_t i = 0; i < r->sc->ndevs; i++) {
		const struct sim_device *sd = &r->sc->devs[i];
		uint32_t st;
		uint64_t bytes;

		if (!sd->pre_copy || r->init_arrival[i])
			continue;
		if (precopy_dest_device_state(r->d, i, &st, &bytes) == 0 && bytes >= sd->initial_bytes)
			r->init_arrival[i] = r->clk.now + r->sc->latency_ns;
	}
}

/* The engine's stream: over the link, straight into the destination. */
static int stream_sink(void *ctx, const void *buf, size_t len)
{
	struct run *r = ctx;
	int e;

	link_send(r, len);
	if (!r->d)
		return 0; /* not set up yet */
	e = precopy_dest_feed(r->d, buf, len);
	if (e < 0) {
		r->dest_err = e;
		return e;
	}
	note_arrivals(r);
	return 0;
}

/* The destination's return path: held until it may reach the source. */
static int rp_sink(void *ctx, const void *buf, size_t len)
{
	struct run *r = ctx;

	if (r->rp_len + len > sizeof(r->rp))
		return -ENOBUFS;
	memcpy(r->rp + r->rp_len, buf, len);
	r->rp_len += len;
	if (!r->rp_pending) {
		r->rp_pending = 1;
		r->rp_emit_ns = r->clk.now;
	}
	return 0;
}

/* When the held return-path bytes reach the source: after every pre-copy
 * device's initial data arrived and was loaded, plus the trip back. */
static uint64_t ack_due(const struct run *r)
{
	uint64_t t = r->rp_emit_ns;

	for (uint32_t i = 0; i < r->sc->ndevs; i++) {
		const struct sim_device *sd = &r->sc->devs[i];
		uint64_t ready;

		if (!sd->pre_copy)
			continue;
		ready = (r->init_arrival[i] ? r->init_arrival[i] : r->rp_emit_ns) + sd->dest_load_ns;
		if (ready > t)
			t = ready;
	}
	return t + r->sc->latency_ns;
}

static int deliver_rp(struct run *r)
{
	int e;

	if (!r->rp_pending || r->clk.now < ack_due(r))
		return 0;
	r->res->ack_at_ns = ack_due(r) - r->t0;
	r->rp_pending = 0;
	e = precopy_engine_rp_feed(r->e, r->rp, r->rp_len);
	r->rp_len = 0;
	if (e < 0)
		seterr(r, "return path", e, precopy_engine_strerror(r->e));
	return e;
}

/* ---- setup ------------------------------------------------------------- */

static struct precopy_fake_vfio_cfg fake_cfg(const struct sim_scenario *sc, uint32_t i, int dest)
{
	const struct sim_device *d = &sc->devs[i];
	struct precopy_fake_vfio_cfg c = {
		.mig_flags = VFIO_MIGRATION_STOP_COPY | (d->p2p ? VFIO_MIGRATION_P2P : 0) |
			     (d->pre_copy ? VFIO_MIGRATION_PRE_COPY : 0),
		.dma_logging = d->dma_logging,
		.initial_bytes = d->initial_bytes,
		.dirty_rate = d->dirty_rate_Bps,
		.stop_copy_bytes = d->stop_copy_bytes,
		.log_page_min = d->page_size,
		.log_page_max = d->page_size,
		.max_ranges = d->max_ranges,
		.transition_ns = d->transition_ns,
		.dma_pages_per_sec = dest ? 0 : d->dma_rate_Bps / 4096,
		.seed = (uint32_t)(sc->seed * 0x9E3779B1u + i + 1),
		.dma_log_only = 1,
		.read_rate = dest ? 0 : d->read_rate_Bps,
		.no_poll = dest ? 0 : !d->pollable,
	};
	return c;
}

void sim_engine_policy(const struct sim_scenario *sc, struct precopy_policy *p)
{
	precopy_policy_defaults(p);
	p->downtime_limit_ns = sc->downtime_limit_ns;
	p->switchover_bw_Bps = sc->switchover_bw_Bps;
	p->fixed_downtime_ns = sc->fixed_downtime_ns;
	p->throttle_initial = sc->throttle_initial;
	p->throttle_increment = sc->throttle_initial ? sc->throttle_increment : 0;
	p->throttle_max = sc->throttle_max;
	p->timeout_ns = sc->timeout_ns;
	p->timeout_action = sc->timeout_action;
	if (sc->policy != SIM_POLICY_PRECOPY) {
		/* the foreign rule throttles and times out on its own */
		p->throttle_initial = p->throttle_increment = 0;
		p->timeout_ns = 0;
	}
}

static int setup(struct run *r)
{
	const struct sim_scenario *sc = r->sc;
	struct precopy_fake_clock fclk = { vc_now, vc_advance, &r->clk };
	struct vmm_role_world world = { .ctx = r, .now = role_now, .send_pages = role_send_pages };
	struct precopy_ram_slot slot = { .gpa = 0, .size = sc->memory, .page_size = sc->page_size };
	struct precopy_clock clk = { vc_now, &r->clk };
	struct precopy_engine_config cfg;
	struct precopy_dest_config dcfg;
	int err;

	r->clk.now = r->t0 = T0_NS;
	err = vmm_role_init(&r->vr, &world, sc->page_size, &fclk, &fclk);
	if (err < 0)
		return seterr(r, r->vr.step, err, NULL), err;
	err = precopy_bitmap_alloc(&r->live, sc->memory / sc->page_size, PRECOPY_NUMA_LOCAL);
	if (err < 0)
		return seterr(r, "live RAM bitmap", err, NULL), err;
	r->wl = sim_workload_new(sc, &r->live, &err);
	if (!r->wl)
		return seterr(r, "workload", err, NULL), err;
	for (uint32_t i = 0; i < sc->ndevs; i++) {
		struct precopy_fake_vfio_cfg sc_cfg = fake_cfg(sc, i, 0), dc_cfg = fake_cfg(sc, i, 1);

		err = vmm_role_add_device(&r->vr, &sc_cfg, &dc_cfg, i + 1, sc->devs[i].name,
					  sc->devs[i].transition_ns);
		if (err < 0)
			return seterr(r, r->vr.step, err, sc->devs[i].name), err;
		err = precopy_fake_vfio_set_guest_mem(r->vr.sdev[i], 0, NULL, sc->memory);
		if (err < 0)
			return seterr(r, "source device guest memory", err, sc->devs[i].name), err;
	}
	vmm_role_engine_config(&r->vr, clk, &cfg);
	if (r->sc->serial_drain) {
		/* the same fake kernel through a version 3 table: no asynchronous
		 * queue, so the engine drains one device after another */
		r->serial_ops = *cfg.sys->ops;
		r->serial_ops.version = 3;
		r->serial_sys = (struct precopy_sys){ &r->serial_ops, cfg.sys->ctx };
		cfg.sys = &r->serial_sys;
	}
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_bitmap = &r->live;
	cfg.sink = stream_sink;
	cfg.sink_ctx = r;
	sim_engine_policy(sc, &cfg.policy);
	/* a foreign rule wants fresh figures at every decision: the exact
	 * query (a sync that keeps the pass's cursor) each time */
	if (r->foreign)
		cfg.exact_margin_pct = UINT32_MAX;
	r->e = r->vr.e = precopy_engine_new(&cfg, &err);
	if (!r->e)
		return seterr(r, "source engine", err, NULL), err;
	/* also without devices: the destination reads the stream's header and
	 * end, as a VMM's would */
	vmm_role_dest_config(&r->vr, clk, &dcfg);
	dcfg.rp_sink = rp_sink;
	dcfg.rp_ctx = r;
	r->d = r->vr.d = precopy_dest_new(&dcfg, &err);
	if (!r->d)
		return seterr(r, "destination engine", err, NULL), err;
	return 0;
}

static void teardown(struct run *r)
{
	precopy_engine_free(r->e);
	precopy_dest_free(r->d);
	sim_workload_free(r->wl);
	precopy_bitmap_free(&r->live);
	vmm_role_fini(&r->vr);
}

/* ---- the run --------------------------------------------------------------- */

static int push_iter(struct sim_result *res, const struct sim_iter *it)
{
	if (res->niters == res->cap) {
		size_t nc = res->cap ? res->cap * 2 : 64;
		struct sim_iter *n = realloc(res->iters, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		res->iters = n;
		res->cap = nc;
	}
	res->iters[res->niters++] = *it;
	return 0;
}

/* Record one sample of pending bytes now (dropped without memory: the
 * plot then has fewer points, the run is the same). */
static void sample(struct run *r, uint64_t pending)
{
	struct sim_result *res = r->res;

	if (res->nsamples == res->samples_cap) {
		size_t nc = res->samples_cap ? res->samples_cap * 2 : 256;
		struct sim_sample *n = realloc(res->samples, nc * sizeof(*n));

		if (!n)
			return;
		res->samples = n;
		res->samples_cap = nc;
	}
	res->samples[res->nsamples++] = (struct sim_sample){ now_rel(r), pending };
}

static int engine_fail(struct run *r, const char *step, int err)
{
	if (r->dest_err && r->d)
		seterr(r, step, r->dest_err, precopy_dest_strerror(r->d));
	else
		seterr(r, step, err, precopy_engine_strerror(r->e));
	r->res->outcome = SIM_FAILED;
	return 0;
}

/* Bring the guest up to the clock, deliver a due return path, then ask
 * the engine. Returns 0 or -errno (the failure recorded). */
static int ask(struct run *r, struct precopy_decision *d)
{
	int e;

	sim_workload_run(r->wl, now_rel(r));
	if ((e = deliver_rp(r)) < 0)
		return e;
	e = precopy_engine_decide(r->e, d);
	if (e < 0)
		return engine_fail(r, "decide", e), e;
	return 0;
}

/* Ask the foreign rule (r->vd gets its answer). At SIM_VMM_SYNCED, *d is
 * the engine's decision that just made the exact query: its figures are
 * the rule's inputs; at SIM_VMM_WINDOW the log's count of unsent pages
 * and the last known device figures are. */
static void vmm_ask(struct run *r, int point, int pass_end, const struct precopy_decision *d, uint64_t pass_ram,
		    uint64_t pass_ns)
{
	struct sim_vmm_input in;
	struct precopy_engine_stats st;

	memset(&in, 0, sizeof(in));
	precopy_engine_stats(r->e, &st);
	in.point = point;
	in.pass_end = pass_end;
	in.now_ns = now_rel(r);
	in.link_bytes = r->link_bytes;
	if (point == SIM_VMM_SYNCED) {
		r->dev_precopy = d->device_precopy;
		r->dev_stop_copy = d->device_stop_copy;
		r->ack_ok = !(d->blocked & PRECOPY_BLOCK_ACK);
		in.ram_pending = d->ram_pending;
		in.dirtied_bytes = st.last.dirty_pages * r->sc->page_size;
		in.pass_ram_bytes = pass_ram;
		in.pass_ram_ns = pass_ns;
	} else {
		in.ram_pending = st.dirty_now * r->sc->page_size;
	}
	in.ack_ok = r->ack_ok;
	in.dev_precopy = r->dev_precopy;
	in.dev_stop_copy = r->dev_stop_copy;
	sim_vmm_decide(&r->vmm, &in, &r->vd);
}

/* The foreign rule's answer as the engine's action names it. */
static uint32_t vmm_action(const struct sim_vmm_decision *vd)
{
	switch (vd->action) {
	case SIM_VMM_SWITCHOVER: return PRECOPY_SWITCHOVER;
	case SIM_VMM_FORCE: return PRECOPY_FORCE_SWITCHOVER;
	case SIM_VMM_CANCEL: return PRECOPY_ABORT;
	default: return vd->ack_held ? PRECOPY_WAIT_ACK : PRECOPY_CONTINUE;
	}
}

static int vmm_ends(const struct sim_vmm_decision *vd)
{
	return vd->action == SIM_VMM_SWITCHOVER || vd->action == SIM_VMM_FORCE || vd->action == SIM_VMM_CANCEL;
}

/* The world's part of an iteration (harness/vmm_role.h). */

/* After a window that left pages: a sample of the pending bytes; then,
 * where the iteration asks inside a pass, the foreign rule, or the engine
 * from its cheap estimate, may end the iteration (it syncs when
 * switchover may be near). */
static int sim_midpass(void *ctx, struct precopy_decision *d, const struct vmm_role_iter *ri)
{
	struct run *r = ctx;
	struct precopy_engine_stats st;
	int e;

	precopy_engine_stats(r->e, &st);
	sample(r, sat_add(sat_mul(st.dirty_now, r->sc->page_size), r->dev_pending));
	if (!r->window_ns)
		return 0;
	if (r->foreign) {
		vmm_ask(r, SIM_VMM_WINDOW, 0, NULL, 0, 0);
		if (r->vd.action == SIM_VMM_CONTINUE)
			return 0;
		/* the exact figure (a sync), or the end: the engine records
		 * the iteration either way */
		if ((e = ask(r, d)) < 0)
			return e;
		if (r->vd.action == SIM_VMM_SYNC) {
			if (d->iteration == ri->iteration0)
				return 0; /* no exact query possible yet */
			vmm_ask(r, SIM_VMM_SYNCED, 0, d, ri->ram_bytes, ri->ram_ns);
		}
		return 1;
	}
	if ((e = ask(r, d)) < 0)
		return e;
	/* the engine synced and recorded an iteration, or acts */
	return d->iteration != ri->iteration0 || d->action != PRECOPY_CONTINUE;
}

/* Device pre-copy data: max(the iteration's RAM bytes, 250 ms of link),
 * none without devices or when a mid-pass decision ends the migration. */
static uint64_t sim_pump_budget(void *ctx, const struct precopy_decision *d, const struct vmm_role_iter *ri)
{
	struct run *r = ctx;
	uint64_t slice = (uint64_t)(((unsigned __int128)r->sc->bandwidth_Bps * PUMP_SLICE_NS) / 1000000000u);

	if (!r->sc->ndevs)
		return 0;
	if (ri->decided && (r->foreign ? vmm_ends(&r->vd)
				       : d->action == PRECOPY_SWITCHOVER || d->action == PRECOPY_FORCE_SWITCHOVER ||
						 d->action == PRECOPY_ABORT))
		return 0;
	return ri->ram_bytes > slice ? ri->ram_bytes : slice;
}

/* An iteration lasts at least MIN_ITER_NS, ACK_POLL_NS while waiting for
 * the ACK (no longer than until it arrives). */
static int sim_settle(void *ctx, const struct vmm_role_iter *ri)
{
	struct run *r = ctx;
	uint64_t min_ns = r->waiting_ack ? ACK_POLL_NS : MIN_ITER_NS;

	(void)ri;
	if (r->clk.now - r->iter_start < min_ns) {
		uint64_t idle_to = r->iter_start + min_ns;

		if (r->waiting_ack && r->rp_pending && ack_due(r) < idle_to && ack_due(r) > r->clk.now)
			idle_to = ack_due(r);
		if (idle_to > r->clk.now)
			r->clk.now = idle_to;
	}
	return 0;
}

static int sim_decide(void *ctx, struct precopy_decision *d, const struct vmm_role_iter *ri)
{
	struct run *r = ctx;
	int e = ask(r, d);

	if (e < 0)
		return e;
	if (r->foreign)
		vmm_ask(r, SIM_VMM_SYNCED, 1, d, ri->ram_bytes, ri->ram_ns);
	return 0;
}

/* One iteration; fills *it and *d. Returns 0 or -errno (engine failed).
 * Pages go out in windows of window_ns of link time (0: one window); after
 * each window that leaves pages behind, the engine (or the foreign rule)
 * is asked mid-pass. */
static int iterate(struct run *r, int waiting_ack, struct sim_iter *it, struct precopy_decision *d)
{
	struct precopy_engine_stats st;
	struct vmm_role_iter ri;
	struct vmm_role_iter_ops ops = { .ctx = r, .midpass = sim_midpass, .pump_budget = sim_pump_budget,
					 .settle = sim_settle, .decide = sim_decide };
	uint64_t window_ns;
	int e;

	memset(it, 0, sizeof(*it));
	memset(&r->vd, 0, sizeof(r->vd));
	r->iter_start = r->clk.now;
	r->waiting_ack = waiting_ack;
	sim_workload_run(r->wl, now_rel(r));
	if ((e = deliver_rp(r)) < 0)
		return e;
	/* QEMU looks after every rate-limit window; CH and Xen between passes */
	window_ns = !r->foreign ? r->sc->window_ns : r->sc->policy == SIM_POLICY_QEMU ? SIM_QEMU_WINDOW_NS : 0;
	r->window_ns = window_ns;
	/* without questions inside a pass the pages still go out in windows
	 * of SAMPLE_NS, for the samples only: the same bytes, link time and
	 * account sums, so the same run */
	ops.window_pages = (uint64_t)(((unsigned __int128)r->sc->bandwidth_Bps * (window_ns ? window_ns : SAMPLE_NS)) /
				      1000000000u) / r->sc->page_size;
	if (!ops.window_pages)
		ops.window_pages = 1;
	/* a pass that a mid-pass decision interrupted goes on where it
	 * stopped (the engine synced then); a new pass starts with a sync */
	e = vmm_role_iterate(&r->vr, &ops, d, &ri);
	if (e < 0) {
		if (r->vr.step) /* else a hook's ask() recorded it */
			engine_fail(r, r->vr.step, e);
		return e;
	}
	precopy_engine_stats(r->e, &st);
	it->iteration = st.last.iteration;
	it->t_ns = now_rel(r);
	it->dirty_pages = st.last.dirty_pages;
	it->page_writes = sim_workload_writes(r->wl) - r->writes_mark;
	r->writes_mark = sim_workload_writes(r->wl);
	it->ram_bytes = ri.ram_bytes;
	it->device_bytes = st.last.device_bytes;
	it->duration_ns = r->clk.now - r->iter_start;
	it->bandwidth_Bps = d->bandwidth_Bps;
	it->pending_bytes = d->pending_bytes;
	it->expected_downtime_ns = d->expected_downtime_ns;
	it->rho = d->rho;
	it->throttle = d->throttle;
	it->action = d->action;
	it->stalled = st.stalled; /* the engine's: true while the stall lasts */
	if (d->pending_bytes != PRECOPY_UNBOUNDED) {
		r->dev_pending = d->pending_bytes > d->ram_pending ? d->pending_bytes - d->ram_pending : 0;
		sample(r, d->pending_bytes);
	}
	it->blocked = d->blocked;
	it->midpass = ri.decided;
	r->vr.pass_open = ri.decided;
	if (r->foreign) {
		it->action = vmm_action(&r->vd);
		it->throttle = r->vd.throttle;
	}
	return 0;
}

/* vCPUs stop; the engine switches over; the last pages; the destination
 * resumes. */
static int switch_over(struct run *r)
{
	struct sim_result *res = r->res;
	struct vmm_role_final f;
	uint64_t t_sw, t, load = 0;
	int e;

	sim_workload_run(r->wl, now_rel(r));
	sim_workload_stop(r->wl);
	t_sw = r->clk.now;
	e = vmm_role_switchover(&r->vr, &f);
	res->dt_switchover_ns = f.switchover_ns;
	res->dt_final_ram_ns = f.pages_ns;
	res->final_ram_bytes = f.bytes;
	res->ram_bytes += f.bytes;
	if (e < 0)
		return engine_fail(r, r->vr.step, e), e;
	for (uint32_t i = 0; i < r->sc->ndevs; i++)
		if (!r->sc->devs[i].pre_copy && r->sc->devs[i].dest_load_ns > load)
			load = r->sc->devs[i].dest_load_ns;
	r->clk.now += load;
	res->dt_dest_load_ns = load;
	r->clk.now += r->sc->fixed_downtime_ns;
	res->dt_fixed_ns = r->sc->fixed_downtime_ns;
	t = r->clk.now;
	e = vmm_role_resume(&r->vr);
	if (e < 0) {
		seterr(r, r->vr.step, e, e == -EPROTO ? "the stream did not end" : precopy_dest_strerror(r->d));
		res->outcome = SIM_FAILED;
		return e;
	}
	res->dt_dest_resume_ns = r->clk.now - t;
	res->downtime_ns = r->clk.now - t_sw;
	res->total_ns = now_rel(r);
	e = vmm_role_complete(&r->vr);
	if (e < 0)
		return engine_fail(r, r->vr.step, e), e;
	return 0;
}

static void cancel(struct run *r)
{
	vmm_role_cancel(&r->vr);
	r->res->total_ns = now_rel(r);
}

/* The engine's forecast window before the migration (sim_run_ex()): the
 * guest and the devices run, the engine syncs after each interval; then
 * the guest starts afresh (same seed) at the migration's time 0, as the
 * run without a window has it. */
static int forecast_window(struct run *r, const struct sim_engine_window *w)
{
	int e = precopy_engine_forecast_begin(r->e);

	if (e < 0)
		return seterr(r, "forecast begin", e, precopy_engine_strerror(r->e)), e;
	for (size_t i = 0; i < w->n; i++) {
		int64_t n;

		r->clk.now += w->intervals_ns[i];
		sim_workload_run(r->wl, now_rel(r));
		n = precopy_engine_forecast_sample(r->e);
		if (n < 0)
			return seterr(r, "forecast sample", (int)n, precopy_engine_strerror(r->e)), (int)n;
	}
	e = precopy_engine_forecast_end(r->e, w->params, w->out);
	if (e < 0)
		return seterr(r, "forecast end", e, precopy_engine_strerror(r->e)), e;
	sim_workload_free(r->wl);
	precopy_bitmap_zero(&r->live);
	r->wl = sim_workload_new(r->sc, &r->live, &e);
	if (!r->wl)
		return seterr(r, "workload", e, NULL), e;
	return 0;
}

const char *sim_outcome_name(int outcome)
{
	switch (outcome) {
	case SIM_SWITCHOVER: return "switchover";
	case SIM_CANCELLED: return "cancelled";
	case SIM_FORCED: return "forced";
	default: return "failed";
	}
}

int sim_run(const struct sim_scenario *sc, struct sim_result *res, sim_progress_fn progress, void *ctx)
{
	return sim_run_ex(sc, res, progress, ctx, NULL);
}

int sim_run_ex(const struct sim_scenario *sc, struct sim_result *res, sim_progress_fn progress, void *ctx,
	       const struct sim_engine_window *window)
{
	struct run *r;
	struct timespec w0, w1;
	uint64_t max_iter = sc && sc->max_iterations ? sc->max_iterations : DEFAULT_MAX_ITER;
	int e, waiting = 0;

	memset(res, 0, sizeof(*res));
	res->stalled_at_ns = -1;
	res->outcome = SIM_FAILED;
	if (sim_scenario_check(sc, res->error, sizeof(res->error)) < 0)
		return -EINVAL;
	res->downtime_limit_ns = sc->downtime_limit_ns;
	res->memory = sc->memory;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->sc = sc;
	r->res = res;
	res->policy = sc->policy;
	r->foreign = sc->policy != SIM_POLICY_PRECOPY;
	if (r->foreign) {
		struct sim_vmm_params vp = {
			.policy = sc->policy, .limit_ns = sc->downtime_limit_ns, .timeout_ns = sc->timeout_ns,
			.timeout_action = sc->timeout_action, .throttle_initial = sc->throttle_initial,
			.throttle_increment = sc->throttle_increment, .throttle_max = sc->throttle_max,
			.switchover_bw_Bps = sc->switchover_bw_Bps, .page_size = sc->page_size,
		};

		sim_vmm_init(&r->vmm, &vp);
		r->ack_ok = 1;
		for (uint32_t i = 0; i < sc->ndevs; i++)
			if (sc->devs[i].pre_copy)
				r->ack_ok = 0;
	}
	for (uint32_t i = 0; i < sc->ndevs; i++)
		r->dev_pending = sat_add(r->dev_pending, sat_add(sc->devs[i].stop_copy_bytes,
								  sc->devs[i].pre_copy ? sc->devs[i].initial_bytes : 0));
	clock_gettime(CLOCK_MONOTONIC, &w0);
	e = setup(r);
	if (e < 0)
		goto out;
	if ((e = vmm_role_start_dest(&r->vr)) < 0) {
		seterr(r, r->vr.step, e, precopy_dest_strerror(r->d));
		goto out;
	}
	if (window && (e = forecast_window(r, window)) < 0)
		goto out;
	/* the migration starts now: the guest's time axis and the report's */
	if (!window)
		r->clk.now = T0_NS;
	r->t0 = r->clk.now;
	if ((e = vmm_role_start_source(&r->vr)) < 0) {
		engine_fail(r, r->vr.step, e);
		goto out;
	}
	for (;;) {
		struct precopy_decision d;
		struct sim_iter it;

		e = iterate(r, waiting, &it, &d);
		if (e < 0)
			goto out_ok; /* outcome FAILED, error set */
		if (waiting)
			res->ack_wait_ns += it.duration_ns;
		if (r->foreign) { /* the rule decides; the engine's figures stay */
			d.action = it.action;
			d.throttle = it.throttle;
			d.reason = r->vd.reason;
		}
		res->ram_bytes += it.ram_bytes;
		res->iterations = it.iteration;
		res->expected_downtime_ns = it.expected_downtime_ns;
		if (it.throttle > res->max_throttle)
			res->max_throttle = it.throttle;
		if (it.stalled && res->stalled_at_ns < 0)
			res->stalled_at_ns = (int64_t)it.t_ns;
		if (push_iter(res, &it) < 0) {
			e = -ENOMEM;
			goto out;
		}
		if (progress)
			progress(ctx, res, &it, it.t_ns);
		sim_workload_throttle(r->wl, d.throttle);
		waiting = d.action == PRECOPY_WAIT_ACK;
		if (d.action == PRECOPY_ABORT) {
			cancel(r);
			res->outcome = SIM_CANCELLED;
			snprintf(res->error, sizeof(res->error), "%s", d.reason ? d.reason : "");
			break;
		}
		if (d.action == PRECOPY_SWITCHOVER || d.action == PRECOPY_FORCE_SWITCHOVER) {
			res->outcome = d.action == PRECOPY_SWITCHOVER ? SIM_SWITCHOVER : SIM_FORCED;
			if (r->foreign)
				snprintf(res->error, sizeof(res->error), "%s", d.reason ? d.reason : "");
			if (switch_over(r) < 0)
				goto out_ok;
			break;
		}
		if (res->iterations >= max_iter) {
			if (sc->timeout_action == PRECOPY_TIMEOUT_FORCE) {
				res->outcome = SIM_FORCED;
				snprintf(res->error, sizeof(res->error), "max_iterations reached: forced");
				if (switch_over(r) < 0)
					goto out_ok;
			} else {
				cancel(r);
				res->outcome = SIM_CANCELLED;
				snprintf(res->error, sizeof(res->error), "max_iterations reached: cancelled");
			}
			break;
		}
	}
	{
		uint64_t devb = 0;
		for (uint32_t i = 0; i < sc->ndevs; i++) {
			struct precopy_engine_dev_info di;
			if (precopy_engine_device_info(r->e, i, &di) == 0)
				devb = sat_add(devb, di.bytes_sent);
		}
		res->device_bytes = devb;
	}
out_ok:
	e = 0;
	if (res->outcome == SIM_FAILED && !res->total_ns)
		res->total_ns = now_rel(r);
out:
	if (r->e) { /* the engine's own statistics, the JSON's common part */
		int n = precopy_engine_stats_json(r->e, NULL, 0);

		if (n > 0 && (res->engine_json = malloc((size_t)n + 1)))
			precopy_engine_stats_json(r->e, res->engine_json, (size_t)n + 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &w1);
	res->wall_s = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
	teardown(r);
	free(r);
	return e;
}

void sim_result_release(struct sim_result *res)
{
	if (!res)
		return;
	free(res->iters);
	res->iters = NULL;
	res->niters = res->cap = 0;
	free(res->samples);
	res->samples = NULL;
	res->nsamples = res->samples_cap = 0;
	free(res->engine_json);
	res->engine_json = NULL;
}
