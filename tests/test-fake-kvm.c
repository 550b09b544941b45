/* SPDX-License-Identifier: MIT */
/* The fake KVM VM dirty log against real KVM: the same tables run on both
 * back-ends, so the model cannot drift from the kernel.
 *  - an ioctl script (capabilities, slot rules, GET/CLEAR rules) with the
 *    exact result or -errno of each step;
 *  - the unchanged precopy_kvm_log_* code (classic, manual, manual with
 *    INITIALLY_SET) over each back-end, with guest writes to known pages,
 *    expecting exactly those pages in the RAM log.
 * Both back-ends use the standard layout of tests/lib/kvm_guest.h. The
 * real one runs the list-writer guest; the fake one writes with
 * precopy_fake_kvm_write(). Real runs skip where /dev/kvm is absent. The
 * dirty ring is not modelled by the fake (its capabilities read 0).
 * KVM_CAP_MULTI_ADDRESS_SPACE is left out of the script: it depends on the
 * host's configuration (2 with SMM support; this test host reports 0); the
 * fake models two address spaces, and the script only uses space 0 and an
 * invalid space 2, which both configurations refuse alike. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "lib/kvm_guest.h"
#include "precopy.h"
#include "precopy/fake.h"

enum backend { FAKE = 0, REAL = 1 };

struct vmb {
	enum backend kind;
	const struct precopy_sys *sys;
	int vm_fd;
	uint8_t *host[2];
	struct kvm_guest g;	       /* REAL */
	struct precopy_fake_kernel *fk; /* FAKE */
	struct precopy_fake_kvm *vm;
};

static const uint32_t slot_pages[2] = { KG_SLOT0_PAGES, KG_SLOT1_PAGES };
static const uint64_t slot_gpa[2] = { 0, KG_SLOT1_GPA };

/* Open a VM with the two standard slots (no flags) on a back-end. */
static void vmb_open(struct vmb *b, enum backend kind)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	if (kind == REAL) {
		const char *why = kvm_guest_skip_reason();
		if (why)
			cr_skip_test("real KVM half: %s", why);
		cr_assert_eq(kvm_guest_std_open(&b->g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
		cr_assert_eq(kvm_guest_add_vcpu(&b->g, KG_CODE_GPA), 0);
		b->sys = precopy_sys_real();
		b->vm_fd = b->g.vm_fd;
		b->host[0] = b->g.mem[0].host;
		b->host[1] = b->g.mem[1].host;
		return;
	}
	b->fk = precopy_fake_kernel_new(NULL, NULL);
	cr_assert_not_null(b->fk);
	b->sys = precopy_fake_kernel_sys(b->fk);
	b->vm_fd = precopy_fake_kvm_new(b->fk, &b->vm);
	cr_assert_geq(b->vm_fd, 0);
	for (int i = 0; i < 2; i++) {
		struct kvm_userspace_memory_region r = { .slot = (uint32_t)i, .guest_phys_addr = slot_gpa[i],
							 .memory_size = slot_pages[i] * 4096ull };
		b->host[i] = mmap(NULL, r.memory_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(b->host[i], MAP_FAILED);
		r.userspace_addr = (uintptr_t)b->host[i];
		cr_assert_eq(precopy_sys_ioctl(b->sys, b->vm_fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	}
}

static void vmb_close(struct vmb *b)
{
	if (b->kind == REAL) {
		kvm_guest_close(&b->g);
		return;
	}
	precopy_fake_kernel_free(b->fk);
	for (int i = 0; i < 2; i++)
		munmap(b->host[i], slot_pages[i] * 4096ull);
}

/* Guest page p (0..KG_PAGES) as a guest-physical address. */
static uint64_t page_gpa(unsigned p)
{
	return p < KG_SLOT0_PAGES ? p * 4096ull : KG_SLOT1_GPA + (p - KG_SLOT0_PAGES) * 4096ull;
}

/* The guest writes val to offset 0 of each listed page. */
static void vmb_write(struct vmb *b, const uint16_t *pages, unsigned n, uint16_t val)
{
	if (b->kind == REAL) {
		uint16_t *mb = kvm_guest_ptr(&b->g, KG_MBOX_GPA);
		mb[0] = (uint16_t)n;
		mb[1] = val;
		memcpy(&mb[8], pages, n * sizeof(uint16_t));
		cr_assert_eq(kvm_guest_run(&b->g), KVM_EXIT_IO);
		cr_assert_eq(kvm_guest_io_port(&b->g), KG_PORT_DONE);
	} else {
		for (unsigned i = 0; i < n; i++) {
			uint8_t le[2] = { (uint8_t)val, (uint8_t)(val >> 8) };
			cr_assert_geq(precopy_fake_kvm_write(b->vm, page_gpa(pages[i]), 1, le[0]), 0);
			cr_assert_geq(precopy_fake_kvm_write(b->vm, page_gpa(pages[i]) + 1, 1, le[1]), 0);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		unsigned p = pages[i], s = p >= KG_SLOT0_PAGES;
		uint16_t got;
		memcpy(&got, b->host[s] + (p - (s ? KG_SLOT0_PAGES : 0)) * 4096ull, 2);
		cr_assert_eq(got, val, "page %u not written", p);
	}
}

/* ---- the ioctl script ------------------------------------------------------ */

enum op { CHECK, ENABLE, SETMEM, GET, CLEAR };

struct step {
	enum op op;
	long cap;	     /* CHECK, ENABLE */
	uint64_t arg0;	     /* ENABLE args[0] */
	uint32_t cflags;     /* ENABLE flags */
	uint32_t slot;	     /* SETMEM, GET, CLEAR */
	uint32_t flags;	     /* SETMEM */
	int64_t gpa, size;   /* SETMEM: -1 = the slot's own */
	int64_t uoff;	     /* SETMEM: userspace_addr = host of slot (uslot) + uoff */
	int uslot;
	uint64_t first, num; /* CLEAR */
	int want;
	const char *what;
};

#define OWN (-1)
static const struct step script[] = {
	{ CHECK, .cap = KVM_CAP_USER_MEMORY, .want = 1, .what = "USER_MEMORY" },
	{ CHECK, .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .want = 3, .what = "MANUAL_PROTECT2 offers ENABLE|INITIALLY_SET" },
	{ CHECK, .cap = KVM_CAP_READONLY_MEM, .want = 1, .what = "READONLY_MEM" },
	{ CHECK, .cap = KVM_CAP_NR_MEMSLOTS, .want = 32764, .what = "NR_MEMSLOTS" },
	{ GET, .slot = 0, .want = -ENOENT, .what = "GET on a slot that does not log" },
	{ GET, .slot = 5, .want = -ENOENT, .what = "GET on a missing slot" },
	{ GET, .slot = 40000, .want = -EINVAL, .what = "GET on a slot id past the user slots" },
	{ GET, .slot = 2u << 16, .want = -EINVAL, .what = "GET in address space 2" },
	{ CLEAR, .slot = 0, .first = 0, .num = 64, .want = -ENOENT, .what = "CLEAR on a slot that does not log" },
	{ SETMEM, .slot = 2, .gpa = 0x100000, .size = 4097, .uoff = 0, .want = -EINVAL, .what = "size not page aligned" },
	{ SETMEM, .slot = 2, .gpa = 0x100001, .size = 4096, .uoff = 0, .want = -EINVAL, .what = "gpa not page aligned" },
	{ SETMEM, .slot = 2, .gpa = 0x100000, .size = 4096, .uoff = 8, .want = -EINVAL, .what = "userspace_addr not page aligned" },
	{ SETMEM, .slot = 2, .flags = 1u << 7, .gpa = 0x100000, .size = 4096, .want = -EINVAL, .what = "unknown flag" },
	{ SETMEM, .slot = 2, .gpa = 0x4000, .size = 4096, .want = -EEXIST, .what = "overlaps slot 0" },
	{ SETMEM, .slot = 2, .gpa = -4096, .size = 8192, .want = -EINVAL, .what = "gpa + size wraps" },
	{ SETMEM, .slot = 0, .gpa = OWN, .size = 64 * 4096, .want = -EINVAL, .what = "resize an existing slot" },
	{ SETMEM, .slot = 0, .gpa = OWN, .size = OWN, .uoff = 4096, .want = -EINVAL, .what = "move userspace_addr" },
	{ SETMEM, .slot = 0, .flags = KVM_MEM_READONLY, .gpa = OWN, .size = OWN, .want = -EINVAL, .what = "toggle READONLY" },
	{ SETMEM, .slot = 7, .gpa = 0x200000, .size = 0, .want = -EINVAL, .what = "delete a missing slot" },
	{ SETMEM, .slot = 40000, .gpa = 0x200000, .size = 4096, .want = -EINVAL, .what = "slot id past the user slots" },
	{ SETMEM, .slot = 0, .gpa = OWN, .size = OWN, .want = 0, .what = "re-issue unchanged" },
	{ ENABLE, .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .arg0 = KVM_DIRTY_LOG_INITIALLY_SET, .want = -EINVAL, .what = "INITIALLY_SET without ENABLE" },
	{ ENABLE, .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .arg0 = 4, .want = -EINVAL, .what = "unknown manual-protect bit" },
	{ ENABLE, .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .arg0 = 1, .cflags = 1, .want = -EINVAL, .what = "enable_cap flags" },
	{ SETMEM, .slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .gpa = OWN, .size = OWN, .want = 0, .what = "logging on for slot 0" },
	{ GET, .slot = 0, .want = 0, .what = "GET on a logging slot" },
	{ CLEAR, .slot = 0, .first = 1, .num = 64, .want = -EINVAL, .what = "first_page not 64-aligned" },
	{ CLEAR, .slot = 0, .first = 0, .num = 63, .want = -EINVAL, .what = "num_pages not 64-aligned before the end" },
	{ CLEAR, .slot = 0, .first = 64, .num = 64, .want = 0, .what = "the last 64 pages" },
	{ CLEAR, .slot = 0, .first = 64, .num = 65, .want = -EINVAL, .what = "past the slot's end" },
	{ CLEAR, .slot = 0, .first = 192, .num = 0, .want = -EINVAL, .what = "first_page past the end" },
	{ CLEAR, .slot = 0, .first = 128, .num = 0, .want = 0, .what = "empty at the end" },
	{ SETMEM, .slot = 1, .flags = KVM_MEM_LOG_DIRTY_PAGES, .gpa = OWN, .size = OWN, .uslot = 1, .want = 0, .what = "logging on for slot 1" },
	{ CLEAR, .slot = 1, .first = 64, .num = 36, .want = 0, .what = "unaligned count ending at the slot end" },
	{ CLEAR, .slot = 1, .first = 0, .num = 100, .want = 0, .what = "the whole 100-page slot" },
	{ CLEAR, .slot = 1, .first = 0, .num = 99, .want = -EINVAL, .what = "99 pages, not at the end" },
	{ SETMEM, .slot = 2, .gpa = 0x200000, .size = 8192, .uslot = 1, .want = 0, .what = "create slot 2" },
	{ SETMEM, .slot = 2, .gpa = 0x300000, .size = 8192, .uslot = 1, .want = 0, .what = "move slot 2" },
	{ SETMEM, .slot = 2, .gpa = 0x80000, .size = 8192, .uslot = 1, .want = -EEXIST, .what = "move slot 2 onto slot 1" },
	{ SETMEM, .slot = 2, .gpa = 0x300000, .size = 0, .uslot = 1, .want = 0, .what = "delete slot 2" },
	{ GET, .slot = 2, .want = -ENOENT, .what = "GET on the deleted slot" },
	{ SETMEM, .slot = 1, .flags = 0, .gpa = OWN, .size = OWN, .uslot = 1, .want = 0, .what = "logging off for slot 1" },
	{ GET, .slot = 1, .want = -ENOENT, .what = "GET after logging off" },
	{ ENABLE, .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .arg0 = 3, .want = 0, .what = "manual protect with INITIALLY_SET" },
};

static int run_step(struct vmb *b, const struct step *s)
{
	uint64_t bm[4] = { 0 };

	switch (s->op) {
	case CHECK:
		return precopy_sys_ioctl(b->sys, b->vm_fd, KVM_CHECK_EXTENSION, (void *)s->cap);
	case ENABLE: {
		struct kvm_enable_cap c;
		memset(&c, 0, sizeof(c));
		c.cap = (uint32_t)s->cap;
		c.flags = s->cflags;
		c.args[0] = s->arg0;
		return precopy_sys_ioctl(b->sys, b->vm_fd, KVM_ENABLE_CAP, &c);
	}
	case SETMEM: {
		unsigned own = s->slot < 2 ? s->slot : 0;
		struct kvm_userspace_memory_region r = {
			.slot = s->slot,
			.flags = s->flags,
			.guest_phys_addr = s->gpa == OWN ? slot_gpa[own] : (uint64_t)s->gpa,
			.memory_size = s->size == OWN ? slot_pages[own] * 4096ull : (uint64_t)s->size,
			.userspace_addr = (uintptr_t)b->host[s->uslot] + (uint64_t)s->uoff,
		};
		return precopy_sys_ioctl(b->sys, b->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
	}
	case GET: {
		uint64_t big[8] = { 0 };
		struct kvm_dirty_log l;
		memset(&l, 0, sizeof(l));
		l.slot = s->slot;
		l.dirty_bitmap = big;
		return precopy_sys_ioctl(b->sys, b->vm_fd, KVM_GET_DIRTY_LOG, &l);
	}
	case CLEAR: {
		struct kvm_clear_dirty_log c;
		memset(&c, 0, sizeof(c));
		c.slot = s->slot;
		c.first_page = s->first;
		c.num_pages = (uint32_t)s->num;
		c.dirty_bitmap = bm;
		return precopy_sys_ioctl(b->sys, b->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);
	}
	}
	return -EINVAL;
}

static void script_on(enum backend kind)
{
	struct vmb b;

	vmb_open(&b, kind);
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		int r = run_step(&b, &script[i]);
		cr_expect_eq(r, script[i].want, "%s step %zu (%s): got %d, want %d", kind == REAL ? "real" : "fake", i,
			     script[i].what, r, script[i].want);
	}
	vmb_close(&b);
}

Test(fake_kvm, ioctl_script_on_the_fake) { script_on(FAKE); }
Test(fake_kvm, ioctl_script_on_real_kvm) { script_on(REAL); }

/* ---- the unchanged library over both back-ends ----------------------------- */

/* Pages on both sides of each 64-page word and slot edge, the last page of
 * the 100-page slot, a repeat. */
static const uint16_t rounds[][8] = {
	{ 16, 63, 64, 127, 128, 191, 192, 227 },
	{ 20, 21, 22, 20, 200, 0, 0, 0 },
	{ 100, 0, 0, 0, 0, 0, 0, 0 },
};
static const unsigned round_n[] = { 8, 5, 1 };

#define LOG_NBITS 250u
#define LOG_BIT0 5u
#define LOG_BIT1 140u

static uint64_t bit_of(unsigned p)
{
	return p < KG_SLOT0_PAGES ? LOG_BIT0 + p : LOG_BIT1 + (p - KG_SLOT0_PAGES);
}

static void log_rounds(enum backend kind, enum precopy_kvm_mode mode, uint32_t flags)
{
	struct precopy_kvm_log_config cfg = { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = mode, .flags = flags };
	struct precopy_bitmap ram, want;
	struct precopy_kvm_log *log;
	struct vmb b;
	int err;

	vmb_open(&b, kind);
	cr_assert_gt(precopy_kvm_log_probe(b.sys, b.vm_fd, mode), 0);
	cr_assert_eq(precopy_bitmap_alloc(&ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&want, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	log = precopy_kvm_log_new(b.sys, b.vm_fd, &cfg, &err);
	cr_assert_not_null(log, "log_new: %d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = { .slot = (uint32_t)i, .guest_phys_addr = slot_gpa[i],
					      .memory_size = slot_pages[i] * 4096ull, .userspace_addr = (uintptr_t)b.host[i],
					      .log = &ram, .log_bit = i ? LOG_BIT1 : LOG_BIT0 };
		cr_assert_eq(precopy_kvm_log_add_slot(log, &s), 0);
	}
	cr_assert_eq(precopy_kvm_log_start(log), 0);
	cr_assert_eq(precopy_kvm_log_sync(log), flags & PRECOPY_KVM_INITIALLY_SET ? KG_PAGES : 0);
	precopy_bitmap_zero(&ram);
	cr_assert_eq(precopy_kvm_log_sync(log), 0);
	for (size_t r = 0; r < sizeof(round_n) / sizeof(round_n[0]); r++) {
		unsigned fresh = 0;
		for (unsigned i = 0; i < round_n[r]; i++) {
			int n = precopy_bitmap_set_atomic(&want, bit_of(rounds[r][i]));
			cr_assert_geq(n, 0);
			fresh += (unsigned)n;
		}
		vmb_write(&b, rounds[r], round_n[r], (uint16_t)(r + 1));
		cr_assert_eq(precopy_kvm_log_sync(log), fresh, "%s mode %d round %zu", kind == REAL ? "real" : "fake",
			     mode, r);
		for (uint64_t bit = 0; bit < LOG_NBITS; bit++)
			cr_assert_eq(precopy_bitmap_test(&ram, bit), precopy_bitmap_test(&want, bit),
				     "%s mode %d round %zu bit %lu", kind == REAL ? "real" : "fake", mode, r,
				     (unsigned long)bit);
		cr_assert_eq(precopy_kvm_log_sync(log), 0, "second sync must be empty");
	}
	cr_assert_eq(precopy_kvm_log_stop(log), 0);
	cr_assert_eq(precopy_kvm_log_sync(log), -ENOENT, "logging is off");
	precopy_kvm_log_free(log);
	precopy_bitmap_free(&ram);
	precopy_bitmap_free(&want);
	vmb_close(&b);
}

Test(fake_kvm, classic_on_the_fake) { log_rounds(FAKE, PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(fake_kvm, classic_on_real_kvm) { log_rounds(REAL, PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(fake_kvm, manual_on_the_fake) { log_rounds(FAKE, PRECOPY_KVM_LOG_MANUAL, 0); }
Test(fake_kvm, manual_on_real_kvm) { log_rounds(REAL, PRECOPY_KVM_LOG_MANUAL, 0); }
Test(fake_kvm, manual_initially_set_on_the_fake) { log_rounds(FAKE, PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }
Test(fake_kvm, manual_initially_set_on_real_kvm) { log_rounds(REAL, PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }

/* The fake's own rules for the writes it is driven by, and the ring it
 * does not model. */
Test(fake_kvm, writes_and_ring_absence)
{
	struct vmb b;
	struct kvm_userspace_memory_region ro = { .slot = 3, .flags = KVM_MEM_READONLY, .guest_phys_addr = 0x400000,
						  .memory_size = 4096 };
	struct kvm_enable_cap ring = { .cap = KVM_CAP_DIRTY_LOG_RING, .args = { 65536 } };

	vmb_open(&b, FAKE);
	ro.userspace_addr = (uintptr_t)b.host[1];
	cr_assert_eq(precopy_sys_ioctl(b.sys, b.vm_fd, KVM_SET_USER_MEMORY_REGION, &ro), 0);
	cr_expect_eq(precopy_fake_kvm_write(b.vm, 0x400000, 1, 1), -EACCES);
	cr_expect_eq(precopy_fake_kvm_write(b.vm, 0x900000, 1, 1), -EFAULT);
	cr_expect_eq(precopy_fake_kvm_write(b.vm, KG_SLOT1_GPA + KG_SLOT1_PAGES * 4096ull - 1, 2, 1), -EFAULT,
		     "runs off slot 1");
	cr_expect_eq(b.host[1][KG_SLOT1_PAGES * 4096ull - 1], 0, "nothing written");
	cr_expect_eq(precopy_fake_kvm_write(b.vm, 0, 0, 1), -EINVAL);
	cr_expect_eq(precopy_fake_kvm_write(NULL, 0, 1, 1), -EINVAL);
	cr_expect_eq(precopy_fake_kvm_write(b.vm, 0, 4096 * 3, 7), 0, "no slot logs: nothing newly dirty");
	cr_expect_eq(b.host[0][4096 * 3 - 1], 7);
	cr_expect_eq(precopy_kvm_log_probe(b.sys, b.vm_fd, PRECOPY_KVM_LOG_RING), -EOPNOTSUPP);
	cr_expect_eq(precopy_sys_ioctl(b.sys, b.vm_fd, KVM_ENABLE_CAP, &ring), -EINVAL);
	cr_expect_eq(precopy_sys_ioctl(b.sys, b.vm_fd, KVM_RUN, NULL), -ENOTTY);
	vmb_close(&b);
}
