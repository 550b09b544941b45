/* SPDX-License-Identifier: MIT */
/* KVM dirty log oracle, in the spirit of the kernel's dirty_log_test: a
 * real-mode guest writes the current iteration number into pseudo-random
 * pages while a vCPU thread keeps it running, and the main thread harvests
 * at random moments. Two checks:
 *
 *  - per iteration: at the boundary between iteration k and k+1 the guest is
 *    parked (it has acknowledged k+1 and waits for "go"), so every write of
 *    k is done. After a harvest there, the union R_k of everything harvested
 *    during iteration k satisfies, for every data page p:
 *        p in R_k  <=>  page p holds k,   and every page holds <= k.
 *    A page missing from R_k but holding k is a lost dirty page; a page in
 *    R_k holding an older value is an invented one.
 *  - migration: after each harvest the host "sends" the reported pages
 *    (copies them after the sync returned); once the vCPU has stopped and a
 *    last harvest is done, the copy must equal guest memory everywhere.
 *
 * The guest acknowledges with an `out`, so the vCPU leaves guest mode at
 * every boundary: that flushes a CPU-side dirty buffer (Intel PML) into the
 * ring, as a VMM must before relying on a ring harvest being complete. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <linux/kvm.h>

#include "lib/kvm_guest.h"
#include "precopy.h"

#define LOG_BIT0 3u   /* slot 0 at RAM log bit 3, slot 1 at 133: neither 64-aligned */
#define LOG_BIT1 133u
#define LOG_NBITS (LOG_BIT1 + KG_SLOT1_PAGES)
#define ITERATIONS 40
#define STOP 0xffffu

/* mailbox layout (see kvm_guest.h) */
#define MB_ITER 0
#define MB_ACK 1
#define MB_GO 2
#define MB_NPAGES 3
#define MB_FIRST 4

static uint64_t page_bit(unsigned page)
{
	return page < KG_SLOT0_PAGES ? LOG_BIT0 + page : LOG_BIT1 + (page - KG_SLOT0_PAGES);
}

struct oracle {
	struct kvm_guest g;
	struct precopy_kvm_log *log;
	struct precopy_bitmap ram;   /* the RAM dirty log the library merges into */
	struct precopy_bitmap snap;  /* one harvest, taken out of ram */
	struct precopy_bitmap round; /* R_k */
	uint16_t copy[KG_PAGES];     /* the "destination" */
	volatile uint16_t *mb;
	pthread_t vcpu;
	int acked;                   /* last iteration the guest acknowledged (atomic) */
	int ring_full;               /* the vCPU is waiting for a harvest (atomic) */
	int stopped;                 /* the vCPU thread has ended (atomic) */
	int vcpu_err;                /* the vCPU thread's failure, or 0 */
	uint64_t syncs, exits;
};

static uint16_t page_val(struct oracle *o, unsigned p)
{
	return __atomic_load_n((uint16_t *)kvm_guest_ptr(&o->g, p * 4096ull), __ATOMIC_ACQUIRE);
}

static void *vcpu_main(void *arg)
{
	struct oracle *o = arg;

	for (;;) {
		int r = kvm_guest_run(&o->g);
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r == KVM_EXIT_IO && kvm_guest_io_port(&o->g) == KG_PORT_ACK) {
			o->exits++;
			__atomic_store_n(&o->acked, o->mb[MB_ACK], __ATOMIC_RELEASE);
			continue;
		}
		if (r == KVM_EXIT_IO && kvm_guest_io_port(&o->g) == KG_PORT_DONE)
			break;
		if (r == KVM_EXIT_DIRTY_RING_FULL) {
			/* Re-entering is only useful after the host harvested. */
			__atomic_store_n(&o->ring_full, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&o->ring_full, __ATOMIC_ACQUIRE))
				sched_yield();
			continue;
		}
		o->vcpu_err = r < 0 ? r : 1000 + r;
		break;
	}
	__atomic_store_n(&o->stopped, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* One harvest: sync, take the new bits out of the RAM log, "send" those
 * pages (read after the sync returned), and add them to R_k. */
static void harvest(struct oracle *o)
{
	int64_t n = precopy_kvm_log_sync(o->log);
	cr_assert_geq(n, 0, "sync: %ld", (long)n);
	o->syncs++;
	__atomic_store_n(&o->ring_full, 0, __ATOMIC_RELEASE);
	cr_assert_geq(precopy_bitmap_harvest(&o->ram, &o->snap), 0);
	for (unsigned p = KG_DATA_FIRST; p < KG_DATA_END; p++)
		if (precopy_bitmap_test(&o->snap, page_bit(p)) == 1)
			o->copy[p] = page_val(o, p);
	cr_assert_geq(precopy_bitmap_merge(&o->round, 0, o->snap.words, LOG_NBITS), 0);
	precopy_bitmap_zero(&o->snap);
}

static void check_round(struct oracle *o, unsigned k)
{
	unsigned reported = 0;

	for (unsigned p = KG_DATA_FIRST; p < KG_DATA_END; p++) {
		uint16_t v = page_val(o, p);
		int in = precopy_bitmap_test(&o->round, page_bit(p));
		cr_assert_leq(v, k, "page %u holds %u during iteration %u", p, v, k);
		if (in)
			cr_assert_eq(v, k, "iteration %u: page %u reported dirty but holds %u", k, p, v);
		else
			cr_assert_lt(v, k, "iteration %u: page %u holds %u but was never reported: lost", k, p, v);
		reported += (unsigned)in;
	}
	/* The guest writes at least one batch of 32 per iteration. */
	cr_assert_gt(reported, 0, "iteration %u wrote nothing", k);
	precopy_bitmap_zero(&o->round);
}

static void nap(unsigned max_us)
{
	struct timespec ts = { 0, (long)(rand() % (max_us + 1)) * 1000 };
	nanosleep(&ts, NULL);
}

static void run_oracle(enum precopy_kvm_mode mode, uint32_t flags)
{
	struct precopy_kvm_log_config cfg = { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = mode, .flags = flags };
	struct oracle *o = calloc(1, sizeof(*o));
	const char *why = kvm_guest_skip_reason();
	int err = 0;

	cr_assert_not_null(o);
	if (why)
		cr_skip_test("%s", why);
	cr_assert_eq(kvm_guest_std_open(&o->g, kvm_guest_oracle_code, kvm_guest_oracle_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), o->g.vm_fd, mode) == -EOPNOTSUPP)
		cr_skip_test("this kernel lacks KVM dirty log mode %d", mode);
	cr_assert_eq(precopy_bitmap_alloc(&o->ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&o->snap, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&o->round, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	o->log = precopy_kvm_log_new(precopy_sys_real(), o->g.vm_fd, &cfg, &err);
	cr_assert_not_null(o->log, "precopy_kvm_log_new: %d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = {
			.slot = o->g.mem[i].slot,
			.guest_phys_addr = o->g.mem[i].gpa,
			.memory_size = o->g.mem[i].size,
			.userspace_addr = (uintptr_t)o->g.mem[i].host,
			.log = &o->ram,
			.log_bit = i ? LOG_BIT1 : LOG_BIT0,
		};
		cr_assert_eq(precopy_kvm_log_add_slot(o->log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&o->g, KG_CODE_GPA), 0);
	if (mode == PRECOPY_KVM_LOG_RING)
		cr_assert_eq(precopy_kvm_log_add_vcpu(o->log, o->g.vcpu_fd, NULL), 0);

	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	cr_log_info("oracle mode %d flags %u seed %u", mode, flags, seed);
	o->mb = kvm_guest_ptr(&o->g, KG_MBOX_GPA);
	o->mb[MB_NPAGES] = KG_DATA_END - KG_DATA_FIRST;
	o->mb[MB_FIRST] = KG_DATA_FIRST;
	*(volatile uint32_t *)&o->mb[6] = (uint32_t)rand() | 1; /* guest LCG seed at +0xc */
	o->mb[MB_ITER] = 1;

	/* Start logging, then take the initial full copy (all zero). */
	cr_assert_eq(precopy_kvm_log_start(o->log), 0);
	harvest(o);
	uint64_t initial = precopy_bitmap_count(&o->round);
	cr_assert_eq(initial, flags & PRECOPY_KVM_INITIALLY_SET ? KG_PAGES : 0,
		     "initial harvest: %lu pages", (unsigned long)initial);
	precopy_bitmap_zero(&o->round);

	cr_assert_eq(pthread_create(&o->vcpu, NULL, vcpu_main, o), 0);
	for (unsigned k = 1; k <= ITERATIONS; k++) {
		/* Boundary: the guest has finished every write of k-1. */
		while (__atomic_load_n(&o->acked, __ATOMIC_ACQUIRE) != (int)k) {
			cr_assert_eq(__atomic_load_n(&o->stopped, __ATOMIC_ACQUIRE), 0, "vCPU: %d", o->vcpu_err);
			if (__atomic_load_n(&o->ring_full, __ATOMIC_ACQUIRE))
				harvest(o);
			sched_yield();
		}
		harvest(o);
		if (k > 1) {
			check_round(o, k - 1);
		} else {
			/* Before the first "go" the guest wrote only its mailbox. */
			for (unsigned p = KG_DATA_FIRST; p < KG_DATA_END; p++)
				cr_assert_eq(precopy_bitmap_test(&o->round, page_bit(p)), 0, "page %u", p);
			precopy_bitmap_zero(&o->round);
		}
		/* The guest is parked: every write it counted so far was of k-1. */
		uint32_t before = __atomic_load_n((uint32_t *)&o->mb[8], __ATOMIC_ACQUIRE);
		__atomic_store_n(&o->mb[MB_GO], (uint16_t)k, __ATOMIC_RELEASE);
		/* Iteration k: harvest at random moments while the guest writes. */
		for (int h = rand() % 4; h > 0; h--) {
			nap(3000);
			harvest(o);
		}
		nap(3000);
		/* Let at least one batch of k land before moving on, or a parked
		 * guest could see STOP before go and the last iteration would
		 * check nothing. */
		while (__atomic_load_n((uint32_t *)&o->mb[8], __ATOMIC_ACQUIRE) - before < 32) {
			cr_assert_eq(__atomic_load_n(&o->stopped, __ATOMIC_ACQUIRE), 0, "vCPU: %d", o->vcpu_err);
			if (__atomic_load_n(&o->ring_full, __ATOMIC_ACQUIRE))
				harvest(o);
			sched_yield();
		}
		__atomic_store_n(&o->mb[MB_ITER], k < ITERATIONS ? (uint16_t)(k + 1) : STOP, __ATOMIC_RELEASE);
	}
	/* The guest finishes its batch of ITERATIONS and stops. */
	while (!__atomic_load_n(&o->stopped, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&o->ring_full, __ATOMIC_ACQUIRE))
			harvest(o);
		sched_yield();
	}
	pthread_join(o->vcpu, NULL);
	cr_assert_eq(o->vcpu_err, 0, "vCPU thread: %d", o->vcpu_err);
	harvest(o);
	check_round(o, ITERATIONS);
	cr_assert_eq(precopy_kvm_log_sync(o->log), 0, "nothing runs: the last sync is empty");

	for (unsigned p = KG_DATA_FIRST; p < KG_DATA_END; p++)
		cr_assert_eq(o->copy[p], page_val(o, p), "page %u: sent %u, guest has %u", p, o->copy[p],
			     page_val(o, p));
	uint32_t writes = *(volatile uint32_t *)&o->mb[8];
	cr_log_info("%u guest writes, %lu syncs, %lu ack exits", writes, (unsigned long)o->syncs,
		    (unsigned long)o->exits);
	cr_assert_geq(writes, 32u * ITERATIONS);

	precopy_kvm_log_free(o->log);
	precopy_bitmap_free(&o->ram);
	precopy_bitmap_free(&o->snap);
	precopy_bitmap_free(&o->round);
	kvm_guest_close(&o->g);
	free(o);
}

Test(kvm_oracle, classic) { run_oracle(PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(kvm_oracle, manual) { run_oracle(PRECOPY_KVM_LOG_MANUAL, 0); }
Test(kvm_oracle, manual_initially_set) { run_oracle(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }
Test(kvm_oracle, ring) { run_oracle(PRECOPY_KVM_LOG_RING, 0); }
