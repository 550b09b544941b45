/* SPDX-License-Identifier: MIT */
/* Shared harness for the engine suites: a source and a destination engine
 * over two fake kernels, connected by a socketpair (stream) and another
 * (return path); guest RAM as two memory slots per side; fake VFIO devices
 * whose DMA writes real bytes into the source RAM. The VMM's role is the
 * one precopy-sim plays too (harness/vmm_role.h: the fake kernels, the
 * device pairs, the loop's steps, the switchover, the destination's
 * resume); this file is the tests' world around it: guest writes setting
 * the caller-supplied live bitmap, page runs copied from source to
 * destination RAM at 1 GB/s of virtual time, the destination fed from its
 * socket in this thread or in its own, and the suites' assertions. */
#ifndef TEST_ENGINE_H
#define TEST_ENGINE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/fake.h"
#include "../harness/vmm_role.h"
#include "../ioctl/uapi_compat.h"

#define PS 4096u
#define SLOT0_GPA 0x0ull
#define SLOT0_PAGES 128u
#define SLOT1_GPA 0x100000ull /* a hole between the slots */
#define SLOT1_PAGES 64u
#define SPAN_PAGES ((SLOT1_GPA / PS) + SLOT1_PAGES)
#ifndef MAXDEV
#define MAXDEV 4 /* a suite may define more before including this */
#endif
#define ALLF (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)
#define DEV_DMA_FIRST 100u /* device DMA lands in slot 0 pages 100..127, which the guest never writes */

static _Atomic uint64_t vnow;
static uint64_t v_now(void *c) { (void)c; return atomic_load(&vnow); }
static void v_adv(void *c, uint64_t ns) { (void)c; atomic_fetch_add(&vnow, ns); }
static const struct precopy_fake_clock vclock = { v_now, v_adv, NULL };

_Static_assert(MAXDEV <= VMM_ROLE_MAX_DEVICES, "the VMM's role holds every device");

struct harness {
	struct vmm_role vr;                /* owns the fake kernels and devices; the
					    * fields below are the suites' names for them */
	struct precopy_fake_kernel *sfk, *dfk;
	const struct precopy_sys *ssys, *dsys;
	struct precopy_sys lying;          /* ssys, but DMA log reports come back empty */
	struct precopy_sys_ops lying_ops;
	uint8_t *smem[2], *dmem[2];
	uint64_t live_words[PRECOPY_BITMAP_WORDS(SPAN_PAGES)];
	struct precopy_bitmap live;
	int ndev;
	int sfd[MAXDEV], dfd[MAXDEV];
	struct precopy_fake_vfio *sdev[MAXDEV], *ddev[MAXDEV];
	struct precopy_fake_vfio_cfg dcfg[MAXDEV];
	int st[2], rp[2];
	struct precopy_engine_config cfg;
	struct precopy_ram_slot slots[2];
	struct precopy_engine_device devs[MAXDEV];
	struct precopy_engine *src;
	struct precopy_dest_config dcfgx;
	struct precopy_dest_device ddevs[MAXDEV];
	struct precopy_dest *dst;
	uint64_t rng;
	/* destination thread */
	pthread_t thr;
	int threaded;
	_Atomic int hold_dest, stop_thr, dest_acked; /* dest_acked: published by the destination's thread */
	_Atomic int src_done;              /* the source wrote its whole stream (or failed) */
	_Atomic int thr_err;
	/* fd-based back-ends (h_backends()): fake models behind forwarding
	 * ops, so a test can swap a faulty model for a healthy one */
	int nbe;
	struct fwd_be { struct precopy_fake_backend *cur; } sbe[MAXDEV], dbe[MAXDEV];
	struct precopy_engine_backend bes[MAXDEV];
	struct precopy_dest_backend dbes[MAXDEV];
	int keep_be_running;               /* run_migration: do not stop the back-ends */
	uint64_t window_pages;             /* run_migration: pages per question to the
					    * engine inside a pass; 0: whole passes */
	int vary_policy;                   /* run_migration: a new fixed_downtime_ns
					    * (0 .. 2 x the limit) before each question */
};

static struct harness H;

static int fwd_running(void *c) { return precopy_fake_backend_ops()->queues_running(((struct fwd_be *)c)->cur); }
static int fwd_set_fd(void *c, uint32_t dir, uint32_t phase, int fd, int *reply)
{
	return precopy_fake_backend_ops()->set_state_fd(((struct fwd_be *)c)->cur, dir, phase, fd, reply);
}
static int fwd_check(void *c) { return precopy_fake_backend_ops()->check_state(((struct fwd_be *)c)->cur); }
static const struct precopy_backend_ops fwd_ops = {
	.version = PRECOPY_BACKEND_OPS_VERSION, .queues_running = fwd_running, .set_state_fd = fwd_set_fd,
	.check_state = fwd_check,
};

/* Replace the model behind w (the old one is wound down and freed). */
__attribute__((unused)) static void be_swap(struct fwd_be *w, uint32_t fault, uint64_t size, uint64_t seed,
					    uint64_t fault_offset, int running)
{
	struct precopy_fake_backend_config c = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION, .fault = fault,
						 .state_size = size, .seed = seed, .fault_offset = fault_offset };
	int err;

	precopy_fake_backend_free(w->cur);
	w->cur = precopy_fake_backend_new(&c, &err);
	cr_assert_not_null(w->cur, "fake back-end: %d", err);
	cr_assert_eq(precopy_fake_backend_set_running(w->cur, running), 0);
}

static uint64_t rnd(void)
{
	H.rng ^= H.rng << 13;
	H.rng ^= H.rng >> 7;
	H.rng ^= H.rng << 17;
	return H.rng;
}

static const struct precopy_sys_ops *orig_ops;
static int lying_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	if (req == VFIO_DEVICE_FEATURE && arg) {
		struct vfio_device_feature *f = arg;
		if ((f->flags & VFIO_DEVICE_FEATURE_MASK) == VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT &&
		    (f->flags & VFIO_DEVICE_FEATURE_GET) && !(f->flags & VFIO_DEVICE_FEATURE_PROBE))
			return 0; /* a device that reports nothing */
	}
	return orig_ops->ioctl(ctx, fd, req, arg);
}

static uint64_t clk_now(void *c) { (void)c; return atomic_load(&vnow); }

/* A suite may set device i's stop-copy size (h_stop_copy_set) and read
 * rate before h_setup(). */
static uint64_t h_stop_copy[MAXDEV], h_read_rate[MAXDEV], h_write_rate[MAXDEV];
static int h_stop_copy_set;
static int h_no_poll[MAXDEV]; /* device i's data fd has no poll method (source side) */
static int h_dest_virtual; /* the destination's fake kernel on the virtual clock too */

/* Device i's fake configuration (source and destination share the seed). */
static struct precopy_fake_vfio_cfg dev_cfg(int i, uint64_t flags)
{
	struct precopy_fake_vfio_cfg c = {
		.mig_flags = flags, .dma_logging = 1, .initial_bytes = 20000 + 1000 * (uint64_t)i,
		.dirty_rate = 2000000, .stop_copy_bytes = 10000 + 500 * (uint64_t)i, .transition_ns = 1000,
		.seed = (uint32_t)(i + 1), .read_rate = h_read_rate[i],
		.write_rate = h_write_rate[i], .no_poll = h_no_poll[i],
	};
	if (h_stop_copy_set)
		c.stop_copy_bytes = h_stop_copy[i];
	return c;
}

static uint8_t *page_ptr(uint8_t **mem, uint64_t gpa)
{
	if (gpa >= SLOT1_GPA)
		return mem[1] + (gpa - SLOT1_GPA);
	return mem[0] + (gpa - SLOT0_GPA);
}

/* The tests' world for the VMM's role: a page run is copied from source
 * to destination RAM; pages cross at 1 GB/s of virtual time (the last
 * ones at switchover too). */
static void v_copy_run(void *c, const struct precopy_ram_run *run)
{
	(void)c;
	memcpy(page_ptr(H.dmem, run->gpa), page_ptr(H.smem, run->gpa), run->pages * PS);
}
static void v_send_pages(void *c, uint64_t bytes, int final)
{
	(void)c;
	(void)final;
	atomic_fetch_add(&vnow, bytes);
}

/* The role drives the engines the suite holds now (a suite may make its
 * own). */
static struct vmm_role *role(void)
{
	H.vr.e = H.src;
	H.vr.d = H.dst;
	return &H.vr;
}

/* Build both sides. flags[i]: each device's migration flags. */
static void h_setup(int ndev, const uint64_t *flags, int dma_logging)
{
	const struct vmm_role_world world = { .now = v_now, .page_run = v_copy_run, .send_pages = v_send_pages };
	const struct precopy_clock clk = { clk_now, NULL };
	int err;

	memset(&H, 0, sizeof(H));
	atomic_store(&vnow, 1000);
	H.rng = 0x9E3779B97F4A7C15ull;
	err = vmm_role_init(&H.vr, &world, PS, &vclock, h_dest_virtual ? &vclock : NULL);
	cr_assert_eq(err, 0, "%s: %d", H.vr.step, err);
	H.sfk = H.vr.sfk;
	H.dfk = H.vr.dfk;
	H.ssys = precopy_fake_kernel_sys(H.sfk);
	H.dsys = precopy_fake_kernel_sys(H.dfk);
	orig_ops = H.ssys->ops;
	H.lying_ops = *H.ssys->ops;
	H.lying_ops.ioctl = lying_ioctl;
	H.lying.ops = &H.lying_ops;
	H.lying.ctx = H.ssys->ctx;
	for (int s = 0; s < 2; s++) {
		size_t len = (s ? SLOT1_PAGES : SLOT0_PAGES) * (size_t)PS;
		H.smem[s] = aligned_alloc(PS, len); /* page aligned, as an IOMMU maps it */
		H.dmem[s] = calloc(1, len);
		cr_assert(H.smem[s] && H.dmem[s]);
		for (size_t k = 0; k < len; k++)
			H.smem[s][k] = (uint8_t)rnd();
	}
	cr_assert_eq(precopy_bitmap_wrap(&H.live, H.live_words, SPAN_PAGES), 0);
	H.ndev = ndev;
	for (int i = 0; i < ndev; i++) {
		struct precopy_fake_vfio_cfg c = dev_cfg(i, flags[i]);
		c.dma_logging = dma_logging;
		err = vmm_role_add_device(&H.vr, &c, &c, 10 + (uint32_t)i, "fake", 500);
		cr_assert_eq(err, i, "%s: %d", H.vr.step, err);
		H.sfd[i] = H.vr.sfd[i];
		H.dfd[i] = H.vr.dfd[i];
		H.sdev[i] = H.vr.sdev[i];
		H.ddev[i] = H.vr.ddev[i];
		cr_assert_eq(precopy_fake_vfio_set_guest_mem(H.sdev[i], SLOT0_GPA, H.smem[0], SLOT0_PAGES * PS), 0);
		H.dcfg[i] = c;
		/* the suites' own copies: they rename devices and change estimates */
		H.devs[i] = H.vr.edevs[i];
		H.ddevs[i] = H.vr.ddevs[i];
	}
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, H.st), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, H.rp), 0);
	H.slots[0] = (struct precopy_ram_slot){ .gpa = SLOT0_GPA, .size = SLOT0_PAGES * PS, .page_size = PS };
	H.slots[1] = (struct precopy_ram_slot){ .gpa = SLOT1_GPA, .size = SLOT1_PAGES * PS, .page_size = PS };
	vmm_role_engine_config(&H.vr, clk, &H.cfg);
	H.cfg.slots = H.slots;
	H.cfg.nslots = 2;
	H.cfg.ram_bitmap = &H.live;
	H.cfg.devices = H.devs;
	H.cfg.stream_fd = H.st[0];
	H.cfg.rp_fd = H.rp[0];
	H.cfg.policy.downtime_limit_ns = 200000;
	H.cfg.policy.fixed_downtime_ns = 10000;
	vmm_role_dest_config(&H.vr, clk, &H.dcfgx);
	H.dcfgx.devices = H.ddevs;
	H.dcfgx.stream_fd = H.st[1];
	H.dcfgx.rp_fd = H.rp[1];
}

static void h_engines(void)
{
	int err;

	H.src = precopy_engine_new(&H.cfg, &err);
	cr_assert(H.src, "engine_new: %d", err);
	H.dst = precopy_dest_new(&H.dcfgx, &err);
	cr_assert(H.dst, "dest_new: %d", err);
}

/* n back-ends, state sizes[i], on both sides (call between h_setup and
 * h_engines). The source models run (the VM runs), the destination's are
 * stopped (the guest has not started there). */
__attribute__((unused)) static void h_backends(int n, const uint64_t *sizes)
{
	H.nbe = n;
	for (int i = 0; i < n; i++) {
		be_swap(&H.sbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 1);
		be_swap(&H.dbe[i], PRECOPY_FAKE_BE_OK, sizes[i], 77 + (uint64_t)i, 0, 0);
		H.bes[i] = (struct precopy_engine_backend){ .id = 50 + (uint32_t)i, .name = "fake-backend",
							    .ops = &fwd_ops, .ctx = &H.sbe[i],
							    .state_bytes = sizes[i] };
		H.dbes[i] = (struct precopy_dest_backend){ .id = 50 + (uint32_t)i, .ops = &fwd_ops, .ctx = &H.dbe[i] };
	}
	H.cfg.backends = H.bes;
	H.cfg.nbackends = (uint32_t)n;
	H.dcfgx.backends = H.dbes;
	H.dcfgx.nbackends = (uint32_t)n;
}

static void h_teardown(void)
{
	precopy_engine_free(H.src);
	precopy_dest_free(H.dst);
	H.src = NULL;
	H.dst = NULL;
	for (int i = 0; i < H.nbe; i++) {
		precopy_fake_backend_free(H.sbe[i].cur);
		precopy_fake_backend_free(H.dbe[i].cur);
		H.sbe[i].cur = H.dbe[i].cur = NULL;
	}
	for (int i = 0; i < 2; i++) {
		if (H.st[i] > 0)
			close(H.st[i]);
		if (H.rp[i] > 0)
			close(H.rp[i]);
	}
	vmm_role_fini(&H.vr); /* the fake kernels and their devices */
	for (int s = 0; s < 2; s++) {
		free(H.smem[s]);
		free(H.dmem[s]);
	}
	/* everything released: a second teardown (the suite's fini after a
	 * test's own) is a no-op */
	memset(&H, 0, sizeof(H));
}

/* The guest writes n random pages outside the devices' DMA area. */
static void guest_writes(int n)
{
	for (int k = 0; k < n; k++) {
		uint64_t r = rnd(), page;
		uint8_t *p;

		if (r & 1)
			page = (r >> 8) % DEV_DMA_FIRST;
		else
			page = SLOT1_GPA / PS + (r >> 8) % SLOT1_PAGES;
		p = page_ptr(H.smem, page * PS);
		memset(p + (r >> 32) % 2048, (int)(r >> 40), 1024);
		cr_assert_geq(precopy_bitmap_set_atomic(&H.live, page), 0);
	}
}

/* Each device writes one page of its own area (real bytes, its own log). */
static void device_dma(void)
{
	for (int i = 0; i < H.ndev; i++) {
		uint64_t page = DEV_DMA_FIRST + (rnd() % (SLOT0_PAGES - DEV_DMA_FIRST));
		int r = precopy_fake_vfio_dma_write(H.sdev[i], page * PS, PS, (uint8_t)rnd());
		cr_assert_geq(r, 0, "dma_write: %d", r);
	}
}

/* Copy every page the engine hands out now (the rest of the pass).
 * Returns bytes copied. */
__attribute__((unused)) static uint64_t copy_pages(void)
{
	int drained;
	int64_t n = vmm_role_take_pages(role(), 0, &drained);

	cr_assert_geq(n, 0, "next_pages: %lld", (long long)n);
	return (uint64_t)n * PS;
}

/* Feed the destination from its socket in this thread (harness/vmm_role.h:
 * vmm_role_dest_feed()). */
static int dest_drain_to(int until_end)
{
	return vmm_role_dest_feed(role(), H.st[1], until_end);
}

/* Feed the destination whatever is on the stream now. */
static int dest_drain(void)
{
	return dest_drain_to(0);
}

static void *dest_thread(void *arg)
{
	(void)arg;
	while (!atomic_load(&H.stop_thr)) {
		int64_t r;

		if (atomic_load(&H.hold_dest)) {
			usleep(1000);
			continue;
		}
		if (atomic_load(&H.thr_err)) {
			/* the destination failed: swallow the rest of the stream so the
			 * source never blocks on a full socket, until it is done */
			uint8_t sink[4096];
			struct pollfd p = { .fd = H.st[1], .events = POLLIN };

			if (atomic_load(&H.src_done))
				break;
			if (poll(&p, 1, 10) > 0 && recv(H.st[1], sink, sizeof(sink), MSG_DONTWAIT) == 0)
				break;
			continue;
		}
		r = precopy_dest_poll(H.dst, 10);
		atomic_store(&H.dest_acked, precopy_dest_acked(H.dst));
		if (precopy_dest_ended(H.dst) == 1)
			break;
		if (r == 0 || (r < 0 && r != -EAGAIN))
			atomic_store(&H.thr_err, r ? (int)r : -EPIPE);
	}
	return NULL;
}

__attribute__((unused)) static int ram_equal(void)
{
	return !memcmp(H.smem[0], H.dmem[0], SLOT0_PAGES * PS) && !memcmp(H.smem[1], H.dmem[1], SLOT1_PAGES * PS);
}

__attribute__((unused)) static uint32_t fake_state(struct precopy_fake_vfio *m)
{
	struct precopy_fake_vfio_stats st;
	precopy_fake_vfio_get_stats(m, &st);
	return st.state;
}

/* Every source device RUNNING, no session fd left. */
__attribute__((unused)) static void assert_all_running(void)
{
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_engine_dev_info di;
		cr_assert_eq(fake_state(H.sdev[i]), VFIO_DEVICE_STATE_RUNNING, "device %d in %s", i,
			     precopy_vfio_state_name(fake_state(H.sdev[i])));
		cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)i, &di), 0);
		cr_assert_eq(di.state, VFIO_DEVICE_STATE_RUNNING);
	}
}

/* The tests' part of an iteration (harness/vmm_role.h): the pump takes
 * 48 KiB; then the destination takes what is on the stream (unless its
 * thread does), the guest writes pages (per whole pass, or one per
 * window inside passes), each device one page, and 100 us pass. */
static uint64_t t_pump_budget(void *c, const struct precopy_decision *d, const struct vmm_role_iter *it)
{
	(void)c;
	(void)d;
	(void)it;
	return 48 * 1024;
}

static int t_settle(void *c, const struct vmm_role_iter *it)
{
	int r;

	(void)c;
	(void)it;
	if (!H.threaded && (r = dest_drain()) < 0)
		return r;
	guest_writes(H.window_pages ? 1 : 6);
	device_dma();
	atomic_fetch_add(&vnow, 100000);
	if (H.vary_policy) {
		struct precopy_policy p = H.cfg.policy;

		p.fixed_downtime_ns = rnd() % (2 * p.downtime_limit_ns);
		cr_assert_eq(precopy_engine_set_policy(H.src, &p), 0);
	}
	return 0;
}

/* Run a whole migration as the VMM would. Returns 0 and fills the stats,
 * or the first -errno. max_iter bounds the loop. dest: 1 = threaded. */
struct run_result {
	int iterations, wait_acks, switched_before_ack;
	uint32_t last_action;
};

static int run_migration(int max_iter, struct run_result *rr)
{
	const struct vmm_role_iter_ops ops = { .window_pages = H.window_pages, .pump_budget = t_pump_budget,
					       .settle = t_settle };
	struct vmm_role *vr = role();
	struct vmm_role_iter it;
	struct precopy_decision d;
	int r;

	memset(rr, 0, sizeof(*rr));
	atomic_store(&H.src_done, 0);
	atomic_store(&H.thr_err, 0);
	r = vmm_role_start_dest(vr);
	if (r < 0)
		return r;
	r = vmm_role_start_source(vr);
	if (r < 0)
		return r;
	if (H.threaded) {
		atomic_store(&H.stop_thr, 0);
		cr_assert_eq(pthread_create(&H.thr, NULL, dest_thread, NULL), 0);
	}
	for (rr->iterations = 0; rr->iterations < max_iter; rr->iterations++) {
		/* a window of pages (or the whole pass), the pump, the
		 * guest's writes, the decision */
		r = vmm_role_iterate(vr, &ops, &d, &it);
		if (r < 0)
			goto fail;
		rr->last_action = d.action;
		if (d.action == PRECOPY_WAIT_ACK)
			rr->wait_acks++;
		if (d.action == PRECOPY_SWITCHOVER || d.action == PRECOPY_FORCE_SWITCHOVER) {
			int need = 0;
			for (int i = 0; i < H.ndev; i++)
				need |= (int)(H.dcfg[i].mig_flags & VFIO_MIGRATION_PRE_COPY);
			if (need && !(H.threaded ? atomic_load(&H.dest_acked) : precopy_dest_acked(H.dst)))
				rr->switched_before_ack = 1;
			break;
		}
		if (d.action == PRECOPY_ABORT)
			return -ECANCELED;
		if (H.threaded && atomic_load(&H.hold_dest) && rr->wait_acks >= 3)
			atomic_store(&H.hold_dest, 0); /* the slow destination catches up */
		if (H.threaded && d.action == PRECOPY_WAIT_ACK && !atomic_load(&H.hold_dest)) {
			/* give the destination thread real time (up to 10 s) */
			for (int w = 0; w < 10000 && !atomic_load(&H.dest_acked) && !H.thr_err; w++)
				usleep(1000);
		}
	}
	if (rr->iterations >= max_iter) {
		r = -ETIMEDOUT;
		goto fail;
	}
	/* stop the vCPUs and the back-ends' queues: the guest writes nothing more */
	for (int i = 0; i < H.nbe && !H.keep_be_running; i++)
		cr_assert_eq(precopy_fake_backend_set_running(H.sbe[i].cur, 0), 0);
	r = vmm_role_switchover(vr, NULL); /* the last pages copied too */
	atomic_store(&H.src_done, 1);
	if (r < 0)
		goto fail;
	if (H.threaded) {
		pthread_join(H.thr, NULL);
		H.threaded = 0;
		if ((r = atomic_load(&H.thr_err)) < 0)
			return r; /* the destination failed: precopy_dest_strerror() says why */
	} else if ((r = dest_drain_to(1)) < 0) {
		goto fail;
	}
	cr_assert_eq(precopy_dest_ended(H.dst), 1, "%s", precopy_dest_strerror(H.dst));
	r = vmm_role_resume(vr);
	if (r < 0)
		return r;
	return vmm_role_complete(vr);
fail:
	if (H.threaded) {
		atomic_store(&H.stop_thr, 1);
		pthread_join(H.thr, NULL);
		H.threaded = 0;
	}
	return r;
}

/* A fresh stream and return path on the same fd numbers (the engines keep
 * theirs), the destination cancelled and its RAM cleared: ready for
 * another migration after a failed or cancelled one. */
__attribute__((unused)) static void h_relink(void)
{
	int st[2], rp[2];

	precopy_dest_cancel(H.dst);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rp), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_geq(dup2(st[i], H.st[i]), 0);
		cr_assert_geq(dup2(rp[i], H.rp[i]), 0);
		close(st[i]);
		close(rp[i]);
	}
	memset(H.dmem[0], 0, SLOT0_PAGES * PS);
	memset(H.dmem[1], 0, SLOT1_PAGES * PS);
}

static int rp_ev_copy(void *opaque, const struct precopy_stream_rp_event *ev)
{
	*(struct precopy_stream_rp_event *)opaque = *ev;
	return 0;
}

/* The return path (source end) holds an RP_ERROR for dev_id with code. */
__attribute__((unused)) static void expect_rp_error(uint32_t dev_id, int code)
{
	struct precopy_stream_rp_decoder *dec;
	struct precopy_stream_rp_event ev = { 0 };
	uint8_t buf[512];
	ssize_t n;

	cr_assert_eq(precopy_stream_rp_decoder_new(&dec, rp_ev_copy, &ev), 0);
	while ((n = recv(H.rp[0], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		cr_assert_geq(precopy_stream_rp_decoder_feed(dec, buf, (size_t)n), 0);
	precopy_stream_rp_decoder_free(dec);
	cr_assert_eq(ev.type, PRECOPY_STREAM_RP_EV_ERROR, "no RP_ERROR on the return path");
	cr_assert_eq(ev.dev_id, dev_id, "RP_ERROR for device %u, expected %u", ev.dev_id, dev_id);
	cr_assert_eq(ev.code, code, "RP_ERROR code %d, expected %d", ev.code, code);
}

/* Guest pages all equal and devices loaded: a successful migration. */
__attribute__((unused)) static void h_migrate_ok(void)
{
	struct run_result rr;
	int r;

	h_relink();
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "migration after recovery: %d: %s / %s", r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	cr_assert(ram_equal());
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats d;
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_geq(d.resume_ok, 1);
		cr_assert_eq(d.state, VFIO_DEVICE_STATE_RUNNING);
	}
}

#endif /* TEST_ENGINE_H */
