/* SPDX-License-Identifier: MIT */
/* tests/lib/kvm_fixture.h — shared by the KVM dirty-log suites
 * (test-kvm-log.c, test-kvm-errors.c): the RAM log layout, a sys table that
 * forwards to the real kernel but can fail or bend chosen calls, and a
 * fixture that opens the standard VM with a log in one mode. Header-only
 * (static inline) because it asserts with Criterion.
 * Thread safety: single-threaded test code. */
#ifndef TESTS_KVM_FIXTURE_H
#define TESTS_KVM_FIXTURE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "lib/kvm_guest.h"
#include "precopy.h"

#define LOG_BIT0 5u
#define LOG_BIT1 140u
#define LOG_NBITS 250u

static inline uint64_t page_bit(unsigned page)
{
	return page < KG_SLOT0_PAGES ? LOG_BIT0 + page : LOG_BIT1 + (page - KG_SLOT0_PAGES);
}

static inline void need_kvm(void)
{
	const char *why = kvm_guest_skip_reason();
	if (why)
		cr_skip_test("%s", why);
}

/* ---- fault-injecting sys table: forwards to the real one ---------------- */

struct inject {
	unsigned long fail_req; /* ioctl to fail ... */
	int fail_nth;           /* ... on its nth call (1-based; 0 never) */
	int fail_err;
	int seen;               /* calls of fail_req so far */
	long ext_cap[2];        /* KVM_CHECK_EXTENSION(ext_cap[i]) returns ext_val[i] */
	int ext_val[2];
	int reset_bias;         /* added to KVM_RESET_DIRTY_RINGS' result */
	int mmap_err;
	int calls_get, calls_clear, calls_reset, calls_setmem, calls_mmap;
	struct kvm_userspace_memory_region last_setmem;
	/* every KVM_CLEAR_DIRTY_LOG: its arguments and its first two words */
	struct clear_rec { uint32_t slot, num; uint64_t first, w[2]; } clears[16];
	int nclears;
};

static inline int inj_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct inject *in = ctx;
	const struct precopy_sys *real = precopy_sys_real();
	int r;

	if (req == KVM_GET_DIRTY_LOG)
		in->calls_get++;
	if (req == KVM_CLEAR_DIRTY_LOG) {
		const struct kvm_clear_dirty_log *c = arg;
		const uint64_t *w = c->dirty_bitmap;
		if (in->nclears < 16) {
			struct clear_rec *rec = &in->clears[in->nclears++];
			rec->slot = c->slot;
			rec->num = c->num_pages;
			rec->first = c->first_page;
			rec->w[0] = w[0];
			rec->w[1] = c->num_pages > 64 ? w[1] : 0;
		}
		in->calls_clear++;
	}
	if (req == KVM_RESET_DIRTY_RINGS)
		in->calls_reset++;
	if (req == KVM_SET_USER_MEMORY_REGION) {
		in->calls_setmem++;
		in->last_setmem = *(struct kvm_userspace_memory_region *)arg;
	}
	for (int i = 0; i < 2; i++)
		if (req == KVM_CHECK_EXTENSION && in->ext_cap[i] && (long)arg == in->ext_cap[i])
			return in->ext_val[i];
	if (req == in->fail_req && ++in->seen == in->fail_nth)
		return in->fail_err;
	r = precopy_sys_ioctl(real, fd, req, arg);
	if (req == KVM_RESET_DIRTY_RINGS && r >= 0)
		r += in->reset_bias;
	return r;
}

static inline ssize_t inj_read(void *c, int fd, void *b, size_t n) { return precopy_sys_read(precopy_sys_real(), fd, b, n); }
static inline ssize_t inj_write(void *c, int fd, const void *b, size_t n) { return precopy_sys_write(precopy_sys_real(), fd, b, n); }
static inline ssize_t inj_splice(void *c, int i, int o, size_t n, unsigned int f) { return precopy_sys_splice(precopy_sys_real(), i, o, n, f); }
static inline int inj_poll(void *c, struct pollfd *p, unsigned int n, int t) { return precopy_sys_poll(precopy_sys_real(), p, n, t); }
static inline int inj_open(void *c, const char *p, int f) { return precopy_sys_open(precopy_sys_real(), p, f); }
static inline int inj_close(void *c, int fd) { return precopy_sys_close(precopy_sys_real(), fd); }
static inline int inj_munmap(void *c, void *a, size_t n) { return precopy_sys_munmap(precopy_sys_real(), a, n); }
static inline int inj_pipe2(void *c, int fds[2], int f) { return precopy_sys_pipe2(precopy_sys_real(), fds, f); }
static inline int inj_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	struct inject *in = ctx;
	in->calls_mmap++;
	if (in->mmap_err)
		return in->mmap_err;
	return precopy_sys_mmap(precopy_sys_real(), len, prot, flags, fd, off, out);
}

static const struct precopy_sys_ops inj_ops = {
	.version = PRECOPY_SYS_OPS_VERSION,
	.ioctl = inj_ioctl, .read = inj_read, .write = inj_write, .splice = inj_splice,
	.poll = inj_poll, .open = inj_open, .close = inj_close, .mmap = inj_mmap, .munmap = inj_munmap,
	.pipe2 = inj_pipe2,
};

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	struct kvm_guest g;
	struct precopy_bitmap ram;
	struct precopy_kvm_log *log;
	struct inject in;
	struct precopy_sys sys;
};

static inline struct precopy_kvm_slot slot_desc(struct fx *f, int i)
{
	struct precopy_kvm_slot s = {
		.slot = f->g.mem[i].slot,
		.guest_phys_addr = f->g.mem[i].gpa,
		.memory_size = f->g.mem[i].size,
		.userspace_addr = (uintptr_t)f->g.mem[i].host,
		.log = &f->ram,
		.log_bit = i == 0 ? LOG_BIT0 : LOG_BIT1,
	};
	return s;
}

static inline struct precopy_kvm_log_config mode_cfg(enum precopy_kvm_mode mode, uint32_t flags)
{
	struct precopy_kvm_log_config c = { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = mode, .flags = flags };
	return c;
}

/* VM with the list writer, a RAM log, the log in `mode` over both slots,
 * logging started, the vCPU created (after the log, as the ring needs). */
static inline void fx_open(struct fx *f, enum precopy_kvm_mode mode, uint32_t flags)
{
	struct precopy_kvm_log_config cfg = mode_cfg(mode, flags);
	int err = 0;

	need_kvm();
	memset(f, 0, sizeof(*f));
	f->sys.ops = &inj_ops;
	f->sys.ctx = &f->in;
	cr_assert_eq(kvm_guest_std_open(&f->g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	int64_t p = precopy_kvm_log_probe(&f->sys, f->g.vm_fd, mode);
	if (p == -EOPNOTSUPP)
		cr_skip_test("this kernel lacks KVM dirty log mode %d", mode);
	cr_assert_gt(p, 0);
	cr_assert_eq(precopy_bitmap_alloc(&f->ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	f->log = precopy_kvm_log_new(&f->sys, f->g.vm_fd, &cfg, &err);
	cr_assert_not_null(f->log, "precopy_kvm_log_new: %d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f->log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&f->g, KG_CODE_GPA), 0);
	if (mode == PRECOPY_KVM_LOG_RING)
		cr_assert_eq(precopy_kvm_log_add_vcpu(f->log, f->g.vcpu_fd, NULL), 0);
	cr_assert_eq(precopy_kvm_log_start(f->log), 0);
}

static inline void fx_close(struct fx *f)
{
	precopy_kvm_log_free(f->log);
	precopy_bitmap_free(&f->ram);
	kvm_guest_close(&f->g);
}

/* Have the guest write `val` to each listed page, once. */
static inline void guest_write(struct fx *f, const uint16_t *pages, unsigned n, uint16_t val)
{
	uint16_t *mb = kvm_guest_ptr(&f->g, KG_MBOX_GPA);

	cr_assert_lt(n, (4096 - 0x10) / 2);
	mb[0] = (uint16_t)n;
	mb[1] = val;
	memcpy(&mb[8], pages, n * sizeof(uint16_t));
	int r = kvm_guest_run(&f->g);
	cr_assert_eq(r, KVM_EXIT_IO, "exit %d", r);
	cr_assert_eq(kvm_guest_io_port(&f->g), KG_PORT_DONE);
	for (unsigned i = 0; i < n; i++) {
		uint16_t *p = kvm_guest_ptr(&f->g, pages[i] * 4096ull);
		cr_assert_eq(*p, val, "guest did not write page %u", pages[i]);
	}
}

/* The RAM log equals `want` bit for bit. */
static inline void expect_log(struct fx *f, const struct precopy_bitmap *want)
{
	for (uint64_t b = 0; b < LOG_NBITS; b++)
		cr_assert_eq(precopy_bitmap_test(&f->ram, b), precopy_bitmap_test(want, b),
			     "RAM log bit %lu differs", (unsigned long)b);
}

/* Add the pages' bits to `want`; returns how many were not there yet. */
static inline unsigned want_pages(struct precopy_bitmap *want, const uint16_t *pages, unsigned n)
{
	unsigned added = 0;
	for (unsigned i = 0; i < n; i++) {
		int r = precopy_bitmap_set_atomic(want, page_bit(pages[i]));
		cr_assert_geq(r, 0);
		added += (unsigned)r;
	}
	return added;
}

static inline unsigned distinct(const uint16_t *pages, unsigned n)
{
	unsigned d = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned j = 0;
		while (j < i && pages[j] != pages[i])
			j++;
		d += j == i;
	}
	return d;
}

#endif /* TESTS_KVM_FIXTURE_H */
