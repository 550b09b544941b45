/* KVM dirty log against the real /dev/kvm: a real-mode guest writes a known
 * set of pages; each mode must report exactly that set, at the right bits
 * of the RAM log, and nothing on the next sync. Plus every -errno the API
 * documents, the ones only a failing kernel can produce injected through a
 * wrapping sys table. Skips where /dev/kvm is absent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "lib/kvm_guest.h"
#include "precopy.h"

/* Where the test puts each slot in its RAM log: deliberately not 64-aligned. */
#define LOG_BIT0 5u
#define LOG_BIT1 140u
#define LOG_NBITS 250u

static uint64_t page_bit(unsigned page)
{
	return page < KG_SLOT0_PAGES ? LOG_BIT0 + page : LOG_BIT1 + (page - KG_SLOT0_PAGES);
}

static void need_kvm(void)
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
	long ext_cap;           /* KVM_CHECK_EXTENSION(ext_cap) returns ext_val */
	int ext_val;
	int reset_bias;         /* added to KVM_RESET_DIRTY_RINGS' result */
	int mmap_err;
	int calls_get, calls_clear, calls_reset, calls_setmem, calls_mmap;
	struct kvm_userspace_memory_region last_setmem;
};

static int inj_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct inject *in = ctx;
	const struct precopy_sys *real = precopy_sys_real();
	int r;

	if (req == KVM_GET_DIRTY_LOG)
		in->calls_get++;
	if (req == KVM_CLEAR_DIRTY_LOG)
		in->calls_clear++;
	if (req == KVM_RESET_DIRTY_RINGS)
		in->calls_reset++;
	if (req == KVM_SET_USER_MEMORY_REGION) {
		in->calls_setmem++;
		in->last_setmem = *(struct kvm_userspace_memory_region *)arg;
	}
	if (req == KVM_CHECK_EXTENSION && in->ext_cap && (long)arg == in->ext_cap)
		return in->ext_val;
	if (req == in->fail_req && ++in->seen == in->fail_nth)
		return in->fail_err;
	r = precopy_sys_ioctl(real, fd, req, arg);
	if (req == KVM_RESET_DIRTY_RINGS && r >= 0)
		r += in->reset_bias;
	return r;
}

static ssize_t inj_read(void *c, int fd, void *b, size_t n) { return precopy_sys_read(precopy_sys_real(), fd, b, n); }
static ssize_t inj_write(void *c, int fd, const void *b, size_t n) { return precopy_sys_write(precopy_sys_real(), fd, b, n); }
static ssize_t inj_splice(void *c, int i, int o, size_t n, unsigned int f) { return precopy_sys_splice(precopy_sys_real(), i, o, n, f); }
static int inj_poll(void *c, struct pollfd *p, unsigned int n, int t) { return precopy_sys_poll(precopy_sys_real(), p, n, t); }
static int inj_open(void *c, const char *p, int f) { return precopy_sys_open(precopy_sys_real(), p, f); }
static int inj_close(void *c, int fd) { return precopy_sys_close(precopy_sys_real(), fd); }
static int inj_munmap(void *c, void *a, size_t n) { return precopy_sys_munmap(precopy_sys_real(), a, n); }
static int inj_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, void **out)
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
};

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	struct kvm_guest g;
	struct precopy_bitmap ram;
	struct precopy_kvm_log *log;
	struct inject in;
	struct precopy_sys sys;
};

static struct precopy_kvm_slot slot_desc(struct fx *f, int i)
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

static struct precopy_kvm_log_config mode_cfg(enum precopy_kvm_mode mode, uint32_t flags)
{
	struct precopy_kvm_log_config c = { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = mode, .flags = flags };
	return c;
}

/* VM with the list writer, a RAM log, the log in `mode` over both slots,
 * logging started, the vCPU created (after the log, as the ring needs). */
static void fx_open(struct fx *f, enum precopy_kvm_mode mode, uint32_t flags)
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

static void fx_close(struct fx *f)
{
	precopy_kvm_log_free(f->log);
	precopy_bitmap_free(&f->ram);
	kvm_guest_close(&f->g);
}

/* Have the guest write `val` to each listed page, once. */
static void guest_write(struct fx *f, const uint16_t *pages, unsigned n, uint16_t val)
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
static void expect_log(struct fx *f, const struct precopy_bitmap *want)
{
	for (uint64_t b = 0; b < LOG_NBITS; b++)
		cr_assert_eq(precopy_bitmap_test(&f->ram, b), precopy_bitmap_test(want, b),
			     "RAM log bit %lu differs", (unsigned long)b);
}

/* Add the pages' bits to `want`; returns how many were not there yet. */
static unsigned want_pages(struct precopy_bitmap *want, const uint16_t *pages, unsigned n)
{
	unsigned added = 0;
	for (unsigned i = 0; i < n; i++) {
		int r = precopy_bitmap_set_atomic(want, page_bit(pages[i]));
		cr_assert_geq(r, 0);
		added += (unsigned)r;
	}
	return added;
}

static unsigned distinct(const uint16_t *pages, unsigned n)
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

/* Pages on both sides of every 64-page word and slot edge, a repeat, and
 * the last page of the 100-page slot. */
static const uint16_t edge_pages[] = { 16, 63, 64, 65, 127, 128, 129, 191, 192, 64, 226, 227 };

static void exact_rounds(enum precopy_kvm_mode mode, uint32_t flags)
{
	struct fx f;
	struct precopy_kvm_log_stats st;
	struct precopy_bitmap want;
	uint16_t pages[64];
	int64_t n;

	fx_open(&f, mode, flags);
	cr_assert_eq(precopy_bitmap_alloc(&want, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	/* Logging just started: nothing written, except that INITIALLY_SET
	 * reports every page of both slots once. */
	n = precopy_kvm_log_sync(f.log);
	cr_assert_eq(n, flags & PRECOPY_KVM_INITIALLY_SET ? KG_PAGES : 0);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "second sync after start must be empty");

	srand(7);
	for (int round = 0; round < 6; round++) {
		unsigned cnt;
		if (round == 0) {
			cnt = sizeof(edge_pages) / sizeof(edge_pages[0]);
			memcpy(pages, edge_pages, sizeof(edge_pages));
		} else {
			cnt = 1 + (unsigned)rand() % 60;
			for (unsigned i = 0; i < cnt; i++)
				pages[i] = (uint16_t)(KG_DATA_FIRST + (unsigned)rand() % (KG_DATA_END - KG_DATA_FIRST));
		}
		guest_write(&f, pages, cnt, (uint16_t)(round + 1));
		unsigned fresh = want_pages(&want, pages, cnt);
		n = precopy_kvm_log_sync(f.log);
		cr_assert_eq(n, fresh, "round %d: %ld newly dirty, expected %u", round, (long)n, fresh);
		expect_log(&f, &want);
		cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
		cr_assert_eq(st.last_pages, distinct(pages, cnt), "round %d: KVM reported %lu pages, wrote %u",
			     round, (unsigned long)st.last_pages, distinct(pages, cnt));
		cr_assert_eq(st.last_new, fresh);
		if (mode == PRECOPY_KVM_LOG_RING) {
			cr_assert_geq(st.last_entries, st.last_pages);
			cr_assert_eq(st.last_entries, st.last_pages + st.last_repeats + st.last_foreign);
			cr_assert_eq(st.last_reset, st.last_entries);
			cr_assert_eq(st.last_foreign, 0);
		}
		/* A second harvest is empty, and says so in the stats too. */
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
		cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
		cr_assert_eq(st.last_pages, 0);
		expect_log(&f, &want);
		/* Odd rounds keep the RAM log, so the next round's pages that are
		 * already set there are not counted as new. */
		if (round % 2 == 0) {
			precopy_bitmap_zero(&f.ram);
			precopy_bitmap_zero(&want);
		}
	}
	/* Every sync went through the seam. */
	if (mode == PRECOPY_KVM_LOG_RING) {
		cr_assert_eq(f.in.calls_get, 0);
		cr_assert_gt(f.in.calls_reset, 0);
	} else {
		cr_assert_eq(f.in.calls_get, 2 * 14); /* 2 slots x (2 + 6 x 2) syncs */
		if (mode == PRECOPY_KVM_LOG_MANUAL)
			cr_assert_gt(f.in.calls_clear, 0);
		else
			cr_assert_eq(f.in.calls_clear, 0);
	}
	precopy_bitmap_free(&want);
	fx_close(&f);
}

Test(kvm_log, classic_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(kvm_log, manual_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_MANUAL, 0); }
Test(kvm_log, manual_initially_set_reports_all_then_exact) { exact_rounds(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }
Test(kvm_log, ring_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_RING, 0); }
