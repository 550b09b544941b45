/* SPDX-License-Identifier: MIT */
/* The source engine in RAM_KVM mode against the real /dev/kvm, end to end.
 *
 * A real-mode guest (tests/lib/kvm_guest.c, the "oracle writer") keeps
 * writing pseudo-random pages of slot 0 from a vCPU thread while the test,
 * playing the VMM's migration thread, runs the engine: sync, copy the page
 * runs it hands out from guest memory into a destination buffer, pump the
 * device data, account, decide. Two fake VFIO devices (the fake kernel's sys
 * table serves their fds and passes the VM's real fds to the kernel) DMA
 * real bytes into slot 1, which the guest never writes, and log them. The
 * VMM's own writes to guest memory (the guest's mailbox, a page it fills
 * after the vCPU stopped) are reported through the engine's optional live
 * bitmap, since KVM logs only guest writes. After the decision the guest
 * writes one more burst and the devices DMA once more; then the vCPU stops,
 * the engine switches over (final sync) and hands out the last pages. The
 * destination buffer must equal guest memory byte for byte, and each
 * destination device must have loaded its source's state.
 *
 * Classic, manual (with and without INITIALLY_SET) and dirty-ring modes;
 * and a control: without the VMM bitmap, the page the VMM wrote after the
 * vCPU stopped does not reach the destination. Skipped with a message where
 * /dev/kvm or a log mode is absent. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "lib/kvm_guest.h"
#include "precopy.h"
#include "precopy/fake.h"
#include "../ioctl/uapi_compat.h"

#define PS 4096u
#define NDEV 2
#define MIN_ITER 6
#define MAX_ITER 60
#define STOP 0xffffu
#define VMM_PAGE 5u /* a page only the VMM writes, after the vCPU stopped */

/* mailbox words (kvm_guest.h) */
#define MB_ITER 0
#define MB_ACK 1
#define MB_GO 2
#define MB_NPAGES 3
#define MB_FIRST 4
#define MB_COUNT 8 /* u32 write counter */

static _Atomic uint64_t vnow = 1000;
static uint64_t v_now(void *c) { (void)c; return atomic_load(&vnow); }
static void v_adv(void *c, uint64_t ns) { (void)c; atomic_fetch_add(&vnow, ns); }
static const struct precopy_fake_clock vclock = { v_now, v_adv, NULL };

struct kvm_mig {
	struct kvm_guest g;
	struct precopy_fake_kernel *sfk, *dfk;
	int sfd[NDEV], dfd[NDEV];
	struct precopy_fake_vfio *sdev[NDEV], *ddev[NDEV];
	int st[2], rp[2];
	struct precopy_bitmap vmm; /* the VMM's own writes */
	uint8_t *dst;              /* destination guest RAM, KG_PAGES pages */
	struct precopy_engine *src;
	struct precopy_dest *dest;
	volatile uint16_t *mb;
	uint64_t rng;
	/* vCPU thread */
	pthread_t vcpu;
	_Atomic int acked, ring_full, stopped, quit, vcpu_err;
};

static struct kvm_mig M;

static uint64_t rnd(void)
{
	M.rng ^= M.rng << 13;
	M.rng ^= M.rng >> 7;
	M.rng ^= M.rng << 17;
	return M.rng;
}

static void *vcpu_main(void *arg)
{
	(void)arg;
	for (;;) {
		int r = kvm_guest_run(&M.g);

		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r == KVM_EXIT_IO && kvm_guest_io_port(&M.g) == KG_PORT_ACK) {
			atomic_store(&M.acked, M.mb[MB_ACK]);
			continue;
		}
		if (r == KVM_EXIT_IO && kvm_guest_io_port(&M.g) == KG_PORT_DONE)
			break;
		if (r == KVM_EXIT_DIRTY_RING_FULL) {
			/* re-enter only after the migration thread synced */
			atomic_store(&M.ring_full, 1);
			while (atomic_load(&M.ring_full) && !atomic_load(&M.quit))
				sched_yield();
			if (atomic_load(&M.quit))
				break;
			continue;
		}
		atomic_store(&M.vcpu_err, r < 0 ? r : 1000 + r);
		break;
	}
	atomic_store(&M.stopped, 1);
	return NULL;
}

/* The VMM writes a guest mailbox word and reports the page. */
static void vmm_mb(int word, uint16_t v)
{
	__atomic_store_n(&M.mb[word], v, __ATOMIC_RELEASE);
	cr_assert_geq(precopy_bitmap_set_atomic(&M.vmm, KG_MBOX_GPA / PS), 0);
}

static uint32_t guest_writes(void)
{
	return __atomic_load_n((volatile uint32_t *)&M.mb[MB_COUNT], __ATOMIC_ACQUIRE);
}

/* A sync the vCPU may be waiting for (ring full). */
static void sync_if_ring_full(void)
{
	if (atomic_load(&M.ring_full)) {
		cr_assert_geq(precopy_engine_sync(M.src), 0, "%s", precopy_engine_strerror(M.src));
		atomic_store(&M.ring_full, 0);
	}
}

static uint64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One round of waiting for the vCPU thread: sync if it waits for a harvest
 * (ring full), fail rather than hang after a minute of real time. */
static void wait_round(uint64_t start_ms, const char *what, int may_stop)
{
	if (!may_stop)
		cr_assert_eq(atomic_load(&M.stopped), 0, "vCPU stopped while waiting for %s: %d", what,
			     atomic_load(&M.vcpu_err));
	cr_assert_lt(real_ms() - start_ms, 60000u, "no progress in 60 s waiting for %s", what);
	sync_if_ring_full();
	sched_yield();
}

/* Let at least n more guest writes land. */
static void let_guest_write(uint32_t n)
{
	uint32_t before = guest_writes();
	uint64_t t0 = real_ms();

	while (guest_writes() - before < n)
		wait_round(t0, "guest writes", 0);
}

/* The guest acknowledged iteration k and is parked, waiting for go. */
static void wait_acked(uint16_t k)
{
	uint64_t t0 = real_ms();

	while (atomic_load(&M.acked) != k)
		wait_round(t0, "the guest's acknowledgement", 0);
}

static void device_dma(void)
{
	for (int i = 0; i < NDEV; i++) {
		uint64_t page = rnd() % KG_SLOT1_PAGES;
		int r = precopy_fake_vfio_dma_write(M.sdev[i], KG_SLOT1_GPA + page * PS, PS, (uint8_t)rnd());
		cr_assert_geq(r, 0, "dma_write: %d", r);
	}
}

static uint64_t copy_pages(void)
{
	struct precopy_ram_run runs[8];
	uint64_t bytes = 0;
	int64_t n;

	while ((n = precopy_engine_next_pages(M.src, runs, 8, 32)) > 0) {
		for (int64_t i = 0; i < n; i++) {
			for (uint64_t p = 0; p < runs[i].pages; p++) {
				uint64_t gpa = runs[i].gpa + p * PS;
				void *h = kvm_guest_ptr(&M.g, gpa);
				cr_assert_not_null(h, "run outside guest RAM: %#llx", (unsigned long long)gpa);
				memcpy(M.dst + gpa, h, PS);
			}
			bytes += runs[i].pages * PS;
		}
	}
	cr_assert_geq(n, 0);
	return bytes;
}

/* Feed the destination as a VMM's loop does: -EAGAIN means "call again".
 * until_end 0: what the stream holds now; 1: until the stream's end. */
static void dest_drain(int until_end)
{
	for (int idle = 0; idle < 1000;) {
		int64_t r;

		if (until_end && precopy_dest_ended(M.dest) == 1)
			return;
		r = precopy_dest_poll(M.dest, until_end ? 10 : 0);
		cr_assert(r >= 0 || r == -EAGAIN, "destination: %ld: %s", (long)r, precopy_dest_strerror(M.dest));
		if (r == 0 || (r == -EAGAIN && !until_end))
			return;
		idle = r > 0 ? 0 : idle + 1;
	}
	cr_assert_fail("destination: no end of stream after 1000 empty polls");
}

static uint64_t clk(void *c) { (void)c; return atomic_load(&vnow); }

static void setup(enum precopy_kvm_mode mode, uint32_t kflags, int vmm_bitmap)
{
	const char *why = kvm_guest_skip_reason();
	struct precopy_engine_device devs[NDEV];
	struct precopy_dest_device ddevs[NDEV];
	struct precopy_ram_slot slots[2];
	int err;

	if (why)
		cr_skip_test("%s", why);
	memset(&M, 0, sizeof(M));
	M.rng = 0x2545F4914F6CDD1Dull;
	cr_assert_eq(kvm_guest_std_open(&M.g, kvm_guest_oracle_code, kvm_guest_oracle_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), M.g.vm_fd, mode) == -EOPNOTSUPP)
		cr_skip_test("this kernel lacks KVM dirty log mode %d", mode);
	if (kflags & PRECOPY_KVM_INITIALLY_SET) {
		int64_t f = precopy_kvm_log_probe(precopy_sys_real(), M.g.vm_fd, mode);
		if (!(f & KVM_DIRTY_LOG_INITIALLY_SET))
			cr_skip_test("this kernel lacks KVM_DIRTY_LOG_INITIALLY_SET");
	}
	M.sfk = precopy_fake_kernel_new(&vclock, &err);
	M.dfk = precopy_fake_kernel_new(NULL, &err);
	cr_assert(M.sfk && M.dfk);
	M.dst = calloc(KG_PAGES, PS);
	cr_assert_not_null(M.dst);
	cr_assert_eq(precopy_bitmap_alloc(&M.vmm, KG_PAGES, PRECOPY_NUMA_LOCAL), 0);
	for (int i = 0; i < NDEV; i++) {
		struct precopy_fake_vfio_cfg c = {
			.mig_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | (i ? 0 : VFIO_MIGRATION_PRE_COPY),
			.dma_logging = 1, .initial_bytes = 20000, .dirty_rate = 2000000,
			.stop_copy_bytes = 10000 + 3000 * (uint64_t)i, .transition_ns = 1000, .seed = (uint32_t)(i + 7),
		};
		M.sfd[i] = precopy_fake_vfio_new(M.sfk, &c, &M.sdev[i]);
		M.dfd[i] = precopy_fake_vfio_new(M.dfk, &c, &M.ddev[i]);
		cr_assert(M.sfd[i] >= 0 && M.dfd[i] >= 0);
		cr_assert_eq(precopy_fake_vfio_set_guest_mem(M.sdev[i], KG_SLOT1_GPA, M.g.mem[1].host,
							     KG_SLOT1_PAGES * PS), 0);
		devs[i] = (struct precopy_engine_device){ .id = 1 + (uint32_t)i, .device_fd = M.sfd[i], .name = "kvm-fake" };
		ddevs[i] = (struct precopy_dest_device){ .id = 1 + (uint32_t)i, .device_fd = M.dfd[i] };
	}
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, M.st), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, M.rp), 0);
	for (int i = 0; i < 2; i++)
		slots[i] = (struct precopy_ram_slot){ .gpa = M.g.mem[i].gpa, .size = M.g.mem[i].size, .page_size = PS,
						      .kvm_slot = M.g.mem[i].slot,
						      .userspace_addr = (uintptr_t)M.g.mem[i].host };
	struct precopy_engine_config cfg = {
		.version = PRECOPY_ENGINE_CONFIG_VERSION, .clock = { clk, NULL },
		.sys = precopy_fake_kernel_sys(M.sfk), .slots = slots, .nslots = 2, .ram_source = PRECOPY_RAM_KVM,
		.ram_bitmap = vmm_bitmap ? &M.vmm : NULL, .kvm_vm_fd = M.g.vm_fd,
		.kvm = { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = mode, .flags = kflags },
		.devices = devs, .ndevices = NDEV, .stream_fd = M.st[0], .rp_fd = M.rp[0],
	};
	precopy_policy_defaults(&cfg.policy);
	cfg.policy.switchover_bw_Bps = 1000000000ull; /* 1 GB/s: the whole guest fits in 1 ms */
	cfg.policy.downtime_limit_ns = 2000000;
	cfg.policy.fixed_downtime_ns = 10000;
	M.src = precopy_engine_new(&cfg, &err);
	cr_assert_not_null(M.src, "engine_new (KVM mode %d): %d", mode, err);
	struct precopy_dest_config dc = {
		.version = PRECOPY_DEST_CONFIG_VERSION, .clock = { clk, NULL }, .sys = precopy_fake_kernel_sys(M.dfk),
		.devices = ddevs, .ndevices = NDEV, .stream_fd = M.st[1], .rp_fd = M.rp[1],
	};
	M.dest = precopy_dest_new(&dc, &err);
	cr_assert_not_null(M.dest, "dest_new: %d", err);
	/* the vCPU after the engine: ring mode is enabled before any vCPU */
	cr_assert_eq(kvm_guest_add_vcpu(&M.g, KG_CODE_GPA), 0);
	if (mode == PRECOPY_KVM_LOG_RING)
		cr_assert_eq(precopy_engine_kvm_add_vcpu(M.src, M.g.vcpu_fd, NULL), 0);
	else
		cr_assert_eq(precopy_engine_kvm_add_vcpu(M.src, M.g.vcpu_fd, NULL), -EINVAL);
	M.mb = kvm_guest_ptr(&M.g, KG_MBOX_GPA);
	M.mb[MB_NPAGES] = KG_SLOT0_PAGES - KG_DATA_FIRST; /* the guest writes slot 0 only */
	M.mb[MB_FIRST] = KG_DATA_FIRST;
	*(volatile uint32_t *)&M.mb[6] = 0x12345679u; /* the guest's LCG seed */
}

static void teardown(void)
{
	if (M.vcpu) {
		__atomic_store_n(&M.mb[MB_ITER], STOP, __ATOMIC_RELEASE);
		atomic_store(&M.quit, 1);
		pthread_join(M.vcpu, NULL);
	}
	precopy_engine_free(M.src);
	precopy_dest_free(M.dest);
	for (int i = 0; i < 2; i++) {
		if (M.st[i] > 0)
			close(M.st[i]);
		if (M.rp[i] > 0)
			close(M.rp[i]);
	}
	precopy_fake_kernel_free(M.sfk);
	precopy_fake_kernel_free(M.dfk);
	precopy_bitmap_free(&M.vmm);
	free(M.dst);
	kvm_guest_close(&M.g);
	memset(&M, 0, sizeof(M));
}

TestSuite(engine_kvm, .fini = teardown);

/* Pages of guest RAM that differ between the guest and the destination. */
static unsigned differing(unsigned *first)
{
	unsigned n = 0;

	*first = KG_PAGES;
	for (unsigned p = 0; p < KG_PAGES; p++) {
		if (memcmp(M.dst + (uint64_t)p * PS, kvm_guest_ptr(&M.g, (uint64_t)p * PS), PS)) {
			if (!n)
				*first = p;
			n++;
		}
	}
	return n;
}

/* The whole migration. Returns the pages that differ at the end. */
static unsigned migrate(void)
{
	struct precopy_decision d;
	struct precopy_engine_stats st;
	uint16_t k;
	unsigned first, diff;
	int switched = 0;

	cr_assert_eq(precopy_dest_start(M.dest), 0);
	cr_assert_eq(precopy_engine_start(M.src), 0, "%s", precopy_engine_strerror(M.src));
	/* the guest starts writing: iteration 1, go */
	vmm_mb(MB_ITER, 1);
	cr_assert_eq(pthread_create(&M.vcpu, NULL, vcpu_main, NULL), 0);
	for (k = 1; k <= MAX_ITER; k++) {
		uint64_t bytes;
		int64_t n;

		/* the guest acknowledged iteration k (parked): let it go on */
		wait_acked(k);
		vmm_mb(MB_GO, k);
		let_guest_write(32);
		/* the migration thread's iteration, with the guest writing */
		n = precopy_engine_sync(M.src);
		cr_assert_geq(n, 0, "sync: %s", precopy_engine_strerror(M.src));
		atomic_store(&M.ring_full, 0);
		bytes = copy_pages();
		atomic_fetch_add(&vnow, bytes);
		cr_assert_geq(precopy_engine_pump(M.src, 0), 0, "%s", precopy_engine_strerror(M.src));
		cr_assert_eq(precopy_engine_account(M.src, bytes, bytes), 0);
		/* a destination that catches up only after MIN_ITER iterations:
		 * the ACK, hence switchover, cannot come earlier */
		if (k >= MIN_ITER)
			dest_drain(0);
		device_dma();
		atomic_fetch_add(&vnow, 100000);
		cr_assert_eq(precopy_engine_decide(M.src, &d), 0, "decide: %s", precopy_engine_strerror(M.src));
		if (k < MIN_ITER)
			cr_assert_neq(d.action, PRECOPY_SWITCHOVER, "switchover before the ACK");
		/* the next iteration number parks the guest at its next batch */
		vmm_mb(MB_ITER, (uint16_t)(k + 1));
		if (d.action == PRECOPY_SWITCHOVER) {
			switched = 1;
			break;
		}
		cr_assert(d.action == PRECOPY_CONTINUE || d.action == PRECOPY_WAIT_ACK, "action %s (%s)",
			  precopy_action_name(d.action), d.reason);
	}
	cr_assert(switched, "no switchover in %d iterations", MAX_ITER);
	cr_assert_geq(k, MIN_ITER);
	/* after the decision the guest and the devices still run a while */
	wait_acked((uint16_t)(k + 1));
	vmm_mb(MB_GO, (uint16_t)(k + 1));
	let_guest_write(64);
	device_dma();
	/* stop the vCPU: it finishes its batch and exits */
	vmm_mb(MB_ITER, STOP);
	{
		uint64_t t0 = real_ms();
		while (!atomic_load(&M.stopped))
			wait_round(t0, "the vCPU to stop", 1);
	}
	pthread_join(M.vcpu, NULL);
	M.vcpu = 0;
	cr_assert_eq(atomic_load(&M.vcpu_err), 0, "vCPU thread: %d", atomic_load(&M.vcpu_err));
	/* the VMM writes guest memory after the vCPU stopped (device emulation) */
	memset(kvm_guest_ptr(&M.g, VMM_PAGE * PS), 0xa5, PS);
	cr_assert_geq(precopy_bitmap_set_atomic(&M.vmm, VMM_PAGE), 0);

	cr_assert_eq(precopy_engine_switchover(M.src), 0, "switchover: %s", precopy_engine_strerror(M.src));
	{
		uint64_t bytes = copy_pages();
		cr_assert_eq(precopy_engine_account(M.src, bytes, bytes), 0);
	}
	dest_drain(1);
	cr_assert_eq(precopy_dest_ended(M.dest), 1, "%s", precopy_dest_strerror(M.dest));
	cr_assert_eq(precopy_dest_complete(M.dest), 0, "%s", precopy_dest_strerror(M.dest));
	cr_assert_eq(precopy_engine_complete(M.src), 0, "complete: %s", precopy_engine_strerror(M.src));
	cr_assert_eq(precopy_engine_stats(M.src, &st), 0);
	cr_log_info("%u guest writes, %llu iterations, %llu final pages", guest_writes(),
		    (unsigned long long)st.iterations, (unsigned long long)st.downtime.final_ram_pages);
	cr_assert_geq(guest_writes(), 32u * MIN_ITER);
	for (int i = 0; i < NDEV; i++) {
		struct precopy_fake_vfio_stats s, t;
		struct precopy_engine_dev_info di;

		precopy_fake_vfio_get_stats(M.sdev[i], &s);
		precopy_fake_vfio_get_stats(M.ddev[i], &t);
		cr_assert_gt(s.dma_pages, 0);
		cr_assert_eq(s.state, VFIO_DEVICE_STATE_STOP);
		cr_assert_eq(s.logging, 0);
		cr_assert_eq(t.resume_ok, 1, "destination device %d did not load a valid state", i);
		cr_assert_eq(t.bytes_in, s.bytes_out);
		cr_assert_eq(t.state, VFIO_DEVICE_STATE_RUNNING);
		cr_assert_eq(precopy_engine_device_info(M.src, (uint32_t)i, &di), 0);
		cr_assert_eq(di.tracking, PRECOPY_TRACK_DMA_LOG);
	}
	diff = differing(&first);
	if (diff)
		cr_log_info("%u pages differ, the first is page %u", diff, first);
	return diff;
}

static void run(enum precopy_kvm_mode mode, uint32_t kflags)
{
	setup(mode, kflags, 1);
	cr_assert_eq(migrate(), 0, "destination RAM differs from guest RAM");
}

Test(engine_kvm, classic) { run(PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(engine_kvm, manual) { run(PRECOPY_KVM_LOG_MANUAL, 0); }
Test(engine_kvm, manual_initially_set) { run(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }
Test(engine_kvm, ring) { run(PRECOPY_KVM_LOG_RING, 0); }

/* KVM does not see the VMM's writes: without the VMM bitmap, the page the
 * VMM wrote after the vCPU stopped (and the mailbox words it wrote last)
 * never reach the destination. */
Test(engine_kvm, vmm_writes_without_bitmap_are_lost)
{
	unsigned first;

	setup(PRECOPY_KVM_LOG_CLASSIC, 0, 0);
	cr_assert_gt(migrate(), 0, "pages only the VMM wrote arrived without being reported");
	cr_assert(memcmp(M.dst + VMM_PAGE * PS, kvm_guest_ptr(&M.g, VMM_PAGE * PS), PS) != 0);
	(void)differing(&first);
}
