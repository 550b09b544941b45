/* KVM dirty log against the real /dev/kvm: a real-mode guest writes a known
 * set of pages; each mode must report exactly that set, at the right bits
 * of the RAM log, and nothing on the next sync. Plus every -errno the API
 * documents, the ones only a failing kernel can produce injected through a
 * wrapping sys table. Skips where /dev/kvm is absent. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
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

static int inj_ioctl(void *ctx, int fd, unsigned long req, void *arg)
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

/* ---- -errno: creation --------------------------------------------------- */

struct new_case {
	const char *what;
	struct precopy_kvm_log_config cfg;
	int bad_fd;     /* pass -1 as the VM fd */
	long cap[2];    /* injected KVM_CHECK_EXTENSION answers */
	int val[2];
	int expect;
};

#define CFG(m, f, rb, cc) { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = (m), .flags = (f), \
			    .ring_bytes = (rb), .clear_chunk_pages = (cc) }

static const struct new_case new_cases[] = {
	{ "bad fd", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 0, 0), 1, {0}, {0}, -EBADF },
	{ "version 0", { .version = 0, .mode = PRECOPY_KVM_LOG_CLASSIC }, 0, {0}, {0}, -EINVAL },
	{ "mode 0", CFG(0, 0, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "mode 9", CFG(9, 0, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + INITIALLY_SET", CFG(PRECOPY_KVM_LOG_CLASSIC, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + ring size", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 65536, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + chunk", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 0, 64), 0, {0}, {0}, -EINVAL },
	{ "manual unknown flag", CFG(PRECOPY_KVM_LOG_MANUAL, 1u << 7, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "manual + ring size", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 65536, 0), 0, {0}, {0}, -EINVAL },
	{ "manual chunk 100", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 100), 0, {0}, {0}, -EINVAL },
	{ "manual chunk 2^32", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 1ull << 32), 0, {0}, {0}, -EINVAL },
	{ "ring 5000 bytes", CFG(PRECOPY_KVM_LOG_RING, 0, 5000, 0), 0, {0}, {0}, -EINVAL },
	{ "ring 2048 bytes", CFG(PRECOPY_KVM_LOG_RING, 0, 2048, 0), 0, {0}, {0}, -EINVAL },
	{ "ring + flag", CFG(PRECOPY_KVM_LOG_RING, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "ring + chunk", CFG(PRECOPY_KVM_LOG_RING, 0, 0, 64), 0, {0}, {0}, -EINVAL },
	{ "manual absent", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 0), 0,
	  { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 }, { 0 }, -EOPNOTSUPP },
	{ "INITIALLY_SET absent", CFG(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0,
	  { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 }, { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE }, -EOPNOTSUPP },
	{ "ring absent", CFG(PRECOPY_KVM_LOG_RING, 0, 0, 0), 0,
	  { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING }, { 0, 0 }, -EOPNOTSUPP },
	{ "ring above max", CFG(PRECOPY_KVM_LOG_RING, 0, 1u << 20, 0), 0,
	  { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING }, { 1 << 19, 1 << 19 }, -E2BIG },
};

Test(kvm_log_errors, new_rejects_each_bad_config)
{
	need_kvm();
	for (size_t i = 0; i < sizeof(new_cases) / sizeof(new_cases[0]); i++) {
		const struct new_case *c = &new_cases[i];
		struct kvm_guest g;
		struct inject in;
		struct precopy_sys sys = { .ops = &inj_ops, .ctx = &in };
		int err = 1;

		memset(&in, 0, sizeof(in));
		for (int k = 0; k < 2; k++) {
			in.ext_cap[k] = c->cap[k];
			in.ext_val[k] = c->val[k];
		}
		cr_assert_eq(kvm_guest_open(&g), 0);
		struct precopy_kvm_log *log = precopy_kvm_log_new(&sys, c->bad_fd ? -1 : g.vm_fd, &c->cfg, &err);
		cr_assert_null(log, "%s: created", c->what);
		cr_assert_eq(err, c->expect, "%s: %d, expected %d", c->what, err, c->expect);
		kvm_guest_close(&g);
	}
}

Test(kvm_log_errors, new_null_arguments)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_CLASSIC, 0);
	struct precopy_sys_ops bad_ops = inj_ops;
	struct precopy_sys bad = { .ops = &bad_ops, .ctx = NULL };
	int err = 0;

	bad_ops.version = 99;
	cr_assert_null(precopy_kvm_log_new(NULL, 3, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(&bad, 3, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), 3, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), 3, NULL, NULL)); /* err optional */
	cr_assert_eq(precopy_kvm_log_probe(NULL, 3, PRECOPY_KVM_LOG_CLASSIC), -EINVAL);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), -1, PRECOPY_KVM_LOG_CLASSIC), -EBADF);
	cr_assert_eq(precopy_kvm_log_add_slot(NULL, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_add_vcpu(NULL, 3, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_start(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_stop(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_sync(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_stats(NULL, NULL), -EINVAL);
	precopy_kvm_log_free(NULL);
}

Test(kvm_log_errors, probe_and_new_pass_kernel_errors_through)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_MANUAL, 0);
	struct kvm_guest g;
	int err = 0;

	need_kvm();
	cr_assert_eq(kvm_guest_open(&g), 0);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), g.vm_fd, 7), -EINVAL);
	/* /dev/kvm itself is not a VM fd for the dirty log ioctls, but a
	 * descriptor with no KVM ioctls at all fails KVM_CHECK_EXTENSION. */
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(devnull, 0);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), devnull, PRECOPY_KVM_LOG_RING), -ENOTTY);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), devnull, &cfg, &err));
	cr_assert_eq(err, -ENOTTY);
	close(devnull);

	/* KVM_ENABLE_CAP failing is returned as is. */
	struct inject in = { .fail_req = KVM_ENABLE_CAP, .fail_nth = 1, .fail_err = -EIO };
	struct precopy_sys sys = { .ops = &inj_ops, .ctx = &in };
	cr_assert_null(precopy_kvm_log_new(&sys, g.vm_fd, &cfg, &err));
	cr_assert_eq(err, -EIO);
	kvm_guest_close(&g);
}

Test(kvm_log_errors, ring_after_vcpu_creation_is_the_kernels_einval)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct kvm_guest g;
	int err = 0;

	need_kvm();
	cr_assert_eq(kvm_guest_std_open(&g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(kvm_guest_add_vcpu(&g, KG_CODE_GPA), 0);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), g.vm_fd, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	kvm_guest_close(&g);
}

/* On x86 the ring also works through the original capability. */
Test(kvm_log, ring_falls_back_to_the_tso_capability)
{
#if defined(__x86_64__)
	struct fx f;
	struct precopy_kvm_log_stats st;
	static const uint16_t pages[] = { 20, 21, 140 };

	need_kvm();
	memset(&f, 0, sizeof(f));
	f.in.ext_cap[0] = KVM_CAP_DIRTY_LOG_RING_ACQ_REL; /* hide ACQ_REL */
	f.in.ext_val[0] = 0;
	f.sys.ops = &inj_ops;
	f.sys.ctx = &f.in;
	/* fx_open resets f; redo its work with the injection kept. */
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	int err = 0;
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(&f.sys, f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(f.log, "%d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&f.g, KG_CODE_GPA), 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.ring_cap, KVM_CAP_DIRTY_LOG_RING);
	cr_assert_eq(st.ring_bytes, PRECOPY_KVM_RING_DEFAULT_BYTES);
	guest_write(&f, pages, 3, 9);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 3);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
#else
	cr_skip_test("the TSO-only ring capability exists only on x86");
#endif
}

/* ---- -errno: slots, vCPUs, start/stop ------------------------------------ */

Test(kvm_log_errors, add_slot_validates_each_field)
{
	struct fx f;
	struct precopy_bitmap other = { 0 };

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_stop(f.log), 0);
	cr_assert_eq(precopy_kvm_log_stop(f.log), -EALREADY);

	struct precopy_kvm_slot base = slot_desc(&f, 0);
	base.slot = 7; /* a new number, so only the field under test can fail */
	struct { const char *what; struct precopy_kvm_slot s; int expect; } cases[8];
	int n = 0;
#define CASE(w, field, value, e) do { cases[n].what = (w); cases[n].s = base; cases[n].s.field = (value); \
				      cases[n].expect = (e); n++; } while (0)
	CASE("no RAM log", log, NULL, -EINVAL);
	CASE("RAM log without words", log, &other, -EINVAL);
	CASE("size 0", memory_size, 0, -EINVAL);
	CASE("size not 4K", memory_size, 4095, -EINVAL);
	CASE("gpa not 4K", guest_phys_addr, 0x800, -EINVAL);
	CASE("uaddr not 4K", userspace_addr, base.userspace_addr + 8, -EINVAL);
	CASE("guest_memfd flag", flags, 1u << 2, -EINVAL);
	CASE("gpa + size overflows", guest_phys_addr, ~0xfffull, -ERANGE);
#undef CASE
	for (int i = 0; i < n; i++)
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &cases[i].s), cases[i].expect, "%s", cases[i].what);
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, NULL), -EINVAL);

	/* The RAM log bounds: one page past the end, the start past the end,
	 * and exactly fitting. */
	struct precopy_kvm_slot s = base;
	s.log_bit = LOG_NBITS - KG_SLOT0_PAGES + 1;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = LOG_NBITS + 1;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = ~0ull;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = LOG_NBITS - KG_SLOT0_PAGES;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	/* Same number again; and the fixture's slot 0. */
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EEXIST);
	s = slot_desc(&f, 0);
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EEXIST);

	struct precopy_kvm_log_stats st;
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.nslots, 3);
	cr_assert_eq(precopy_kvm_log_stats(f.log, NULL), -EINVAL);

	/* Slot 7 is not a KVM slot: start() would ask KVM to create it, at
	 * slot 0's address, and KVM refuses the overlap with -EEXIST; start
	 * then switches slots 1 and 0 back. */
	f.in.calls_setmem = 0;
	cr_assert_eq(precopy_kvm_log_start(f.log), -EEXIST);
	cr_assert_eq(f.in.calls_setmem, 3 + 2); /* 0, 1, 7 (refused), then 1, 0 back */
	cr_assert_eq(f.in.last_setmem.slot, 0);
	cr_assert_eq(f.in.last_setmem.flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ENOENT, "logging must be off after the rollback");
	fx_close(&f);
}

Test(kvm_log_errors, start_stop_sequence)
{
	struct fx f;
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_CLASSIC, 0);
	int err;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), -EALREADY);
	struct precopy_kvm_slot s = slot_desc(&f, 1);
	s.slot = 9;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EBUSY);
	cr_assert_eq(precopy_kvm_log_stop(f.log), 0);
	/* Logging off: KVM has no log to give. */
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ENOENT);

	/* A failure on the second slot switches the first one back. */
	f.in.fail_req = KVM_SET_USER_MEMORY_REGION;
	f.in.fail_nth = f.in.seen + 2;
	f.in.fail_err = -EIO;
	f.in.calls_setmem = 0;
	cr_assert_eq(precopy_kvm_log_start(f.log), -EIO);
	cr_assert_eq(f.in.calls_setmem, 3);
	cr_assert_eq(f.in.last_setmem.slot, 0);
	cr_assert_eq(f.in.last_setmem.flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0, "a failed start leaves the log stopped");

	/* A description whose size differs from KVM's slot: KVM refuses. */
	struct precopy_kvm_log *l2 = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(l2);
	s = slot_desc(&f, 1);
	s.memory_size -= 4096;
	cr_assert_eq(precopy_kvm_log_add_slot(l2, &s), 0);
	cr_assert_eq(precopy_kvm_log_start(l2), -EINVAL);
	precopy_kvm_log_free(l2);

	/* An empty log has nothing to start. */
	l2 = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(l2);
	cr_assert_eq(precopy_kvm_log_start(l2), -ENOENT);
	cr_assert_eq(precopy_kvm_log_sync(l2), 0);
	precopy_kvm_log_free(l2);
	fx_close(&f);
}

Test(kvm_log_errors, add_vcpu_errors)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), -EINVAL, "not in ring mode");
	fx_close(&f);

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), -EEXIST);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vm_fd, NULL), -ENODEV, "a VM fd has no ring to map");
	f.in.mmap_err = -ENOMEM;
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, 1000, NULL), -ENOMEM);
	struct precopy_kvm_log_stats st;
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.nvcpus, 1);
	fx_close(&f);
}

/* ---- -errno from the kernel during sync: nothing is lost ---------------- */

static const uint16_t both_slots[] = { 20, 30, 150, 200 };

Test(kvm_log_errors, classic_get_failure_keeps_the_rest_in_the_kernel)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_GET_DIRTY_LOG;
	f.in.fail_nth = 2; /* slot 1's GET */
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 2, "slot 0 was merged");
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2, "slot 1's pages are still in the kernel");
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
}

Test(kvm_log_errors, manual_clear_failure_reports_the_pages_again)
{
	struct fx f;
	struct precopy_kvm_log_stats st;

	fx_open(&f, PRECOPY_KVM_LOG_MANUAL, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_CLEAR_DIRTY_LOG;
	f.in.fail_nth = 1;
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 2, "slot 0 was merged before its CLEAR failed");
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2, "slot 1 is new; slot 0 is reported again");
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_pages, 4);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
}

Test(kvm_log_errors, ring_reset_count_mismatch_is_eproto)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.reset_bias = 1;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EPROTO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4, "the harvest was merged");
	f.in.reset_bias = 0;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	guest_write(&f, both_slots, 2, 2);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2);
	fx_close(&f);
}

Test(kvm_log_errors, ring_reset_failure_is_retried_next_sync)
{
	struct fx f;
	struct precopy_kvm_log_stats st;

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_RESET_DIRTY_RINGS;
	f.in.fail_nth = 1;
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4, "the harvest was merged");
	/* The next reset covers the 4 pending entries plus the new ones. */
	guest_write(&f, &both_slots[2], 2, 2);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "pages 150, 200 are already in the RAM log");
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	/* Whether KVM logs 150 and 200 again before the reset is its business;
	 * the reset must count the 4 pending entries plus whatever came now. */
	cr_assert_leq(st.last_pages, 2);
	cr_assert_eq(st.last_reset, 4 + st.last_entries);
	guest_write(&f, both_slots, 4, 3);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 4);
	fx_close(&f);
}

Test(kvm_log_errors, sync_rechecks_the_ram_log_bounds_first)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	guest_write(&f, both_slots, 4, 1);
	uint64_t nbits = f.ram.nbits;
	f.ram.nbits = LOG_BIT1 + 10; /* the caller broke the rule: slot 1 no longer fits */
	int calls = f.in.calls_get;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ERANGE);
	cr_assert_eq(f.in.calls_get, calls, "nothing taken from the kernel");
	f.ram.nbits = nbits;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 4);
	fx_close(&f);
}

/* ---- manual mode: CLEAR exactly what was harvested, 64-page aligned ------ */

struct clear_case {
	uint64_t chunk;            /* clear_chunk_pages (0 = default) */
	uint16_t pages[8];
	unsigned npages;
	struct clear_rec want[4];  /* expected CLEARs, in order */
	int nwant;
};

#define B(n) (1ull << (n))
static const struct clear_case clear_cases[] = {
	/* One window per word: slot 1's last chunk is 36 pages, ending at its end. */
	{ 64, { 16, 63, 64, 127, 128, 191, 192, 227 }, 8,
	  { { 0, 64, 0, { B(16) | B(63) } }, { 0, 64, 64, { B(0) | B(63) } },
	    { 1, 64, 0, { B(0) | B(63) } }, { 1, 36, 64, { B(0) | B(35) } } }, 4 },
	/* Default window: one CLEAR per slot, clean leading words skipped. */
	{ 0, { 70, 127, 130, 227 }, 4,
	  { { 0, 64, 64, { B(6) | B(63) } }, { 1, 100, 0, { B(2), B(35) } } }, 2 },
	/* Only slot 1's first word: a whole 64-page chunk, not to the end. */
	{ 128, { 129, 140 }, 2, { { 1, 64, 0, { B(1) | B(12) } } }, 1 },
};
#undef B

Test(kvm_log, manual_clears_exactly_the_harvested_pages_in_aligned_chunks)
{
	for (size_t i = 0; i < sizeof(clear_cases) / sizeof(clear_cases[0]); i++) {
		const struct clear_case *c = &clear_cases[i];
		struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_MANUAL, 0);
		struct fx f;
		int err;

		fx_open(&f, PRECOPY_KVM_LOG_MANUAL, 0);
		/* Swap in a log with this case's chunk size. */
		precopy_kvm_log_free(f.log);
		cfg.clear_chunk_pages = c->chunk;
		f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
		cr_assert_not_null(f.log, "%d", err);
		for (int k = 0; k < 2; k++) {
			struct precopy_kvm_slot s = slot_desc(&f, k);
			cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
		}
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
		guest_write(&f, c->pages, c->npages, 5);
		f.in.nclears = 0;
		cr_assert_eq(precopy_kvm_log_sync(f.log), c->npages);
		cr_assert_eq(f.in.nclears, c->nwant, "case %zu: %d CLEARs", i, f.in.nclears);
		for (int k = 0; k < c->nwant; k++) {
			const struct clear_rec *got = &f.in.clears[k], *want = &c->want[k];
			cr_assert_eq(got->slot, want->slot, "case %zu clear %d", i, k);
			cr_assert_eq(got->first, want->first, "case %zu clear %d", i, k);
			cr_assert_eq(got->num, want->num, "case %zu clear %d", i, k);
			cr_assert_eq(got->w[0], want->w[0], "case %zu clear %d: %#lx", i, k, (unsigned long)got->w[0]);
			cr_assert_eq(got->w[1], want->w[1], "case %zu clear %d", i, k);
		}
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "the CLEARs re-armed every page");
		fx_close(&f);
	}
}

/* ---- ring: the VMM's own mapping, and a ring that fills up --------------- */

Test(kvm_log, ring_full_exit_then_sync_loses_nothing)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct precopy_kvm_log_stats st;
	struct fx f;
	int err = -EINVAL;

	need_kvm();
	memset(&f, 0, sizeof(f));
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	/* The smallest ring KVM takes: it reserves entries for the CPU's own
	 * dirty buffer, so 4096 bytes may be refused with -EINVAL. */
	for (cfg.ring_bytes = 4096; cfg.ring_bytes <= 65536 && !f.log; cfg.ring_bytes *= 2) {
		f.log = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
		if (!f.log)
			cr_assert_eq(err, -EINVAL);
	}
	cr_assert_not_null(f.log);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&f.g, KG_CODE_GPA), 0);
	/* The VMM maps the ring itself and lends it. */
	void *ring = mmap(NULL, st.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f.g.vcpu_fd,
			  (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
	cr_assert_neq(ring, MAP_FAILED);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), -EEXIST);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0);

	/* Every page but code and mailbox, in one run. */
	uint16_t pages[KG_PAGES];
	unsigned n = 0;
	for (unsigned p = 3; p < KG_PAGES; p++)
		pages[n++] = (uint16_t)p;
	uint16_t *mb = kvm_guest_ptr(&f.g, KG_MBOX_GPA);
	mb[0] = (uint16_t)n;
	mb[1] = 0x77;
	memcpy(&mb[8], pages, n * sizeof(uint16_t));
	int fulls = 0;
	int64_t total = 0, r;
	for (;;) {
		int ex = kvm_guest_run(&f.g);
		if (ex == KVM_EXIT_DIRTY_RING_FULL) {
			fulls++;
			r = precopy_kvm_log_sync(f.log);
			cr_assert_gt(r, 0);
			total += r;
			continue;
		}
		cr_assert_eq(ex, KVM_EXIT_IO, "exit %d", ex);
		break;
	}
	r = precopy_kvm_log_sync(f.log);
	cr_assert_geq(r, 0);
	total += r;
	cr_assert_eq(total, n);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(pages[i])), 1, "page %u", pages[i]);
	cr_assert_eq(precopy_bitmap_count(&f.ram), n);
	cr_log_info("ring of %u bytes: %d ring-full exits for %u pages", st.ring_bytes, fulls, n);
	if (!fulls)
		cr_skip_test("a %u-byte ring holds %u pages here: the ring-full path was not reached",
			     st.ring_bytes, n);
	fx_close(&f);
	munmap(ring, st.ring_bytes);
}

/* The harvest logic on a ring the test writes itself (lent as the VMM's
 * mapping): repeats counted once, foreign slots and offsets counted and
 * handed back, index wrap-around, at most one ring's worth per sync. KVM's
 * real rings are empty here, so its reset count is biased by the entries
 * the fake ring held. */
Test(kvm_log, ring_harvest_dedupes_and_skips_foreign_entries)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct precopy_kvm_log_stats st;
	struct fx f;
	int err;

	need_kvm();
	memset(&f, 0, sizeof(f));
	f.sys.ops = &inj_ops;
	f.sys.ctx = &f.in;
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(&f.sys, f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(f.log, "%d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	const uint32_t n = st.ring_bytes / (uint32_t)sizeof(struct kvm_dirty_gfn);
	struct kvm_dirty_gfn *ring = calloc(n, sizeof(*ring));
	cr_assert_not_null(ring);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), 0);

	static const struct { uint32_t slot; uint64_t off; } e1[] = {
		{ 0, 16 }, { 0, 16 } /* repeat */, { 1, 5 }, { 9, 1 } /* no such slot */,
		{ 0, 128 } /* past slot 0's end */, { 1, 99 }, { (1u << 16) | 1, 5 } /* other address space */,
		{ 1, 5 } /* repeat */,
	};
	const uint32_t k1 = sizeof(e1) / sizeof(e1[0]);
	for (uint32_t i = 0; i < k1; i++) {
		ring[i].slot = e1[i].slot;
		ring[i].offset = e1[i].off;
		ring[i].flags = KVM_DIRTY_GFN_F_DIRTY;
	}
	f.in.reset_bias = (int)k1;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 3);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_entries, k1);
	cr_assert_eq(st.last_pages, 3);
	cr_assert_eq(st.last_repeats, 2);
	cr_assert_eq(st.last_foreign, 3);
	cr_assert_eq(st.last_reset, k1);
	for (uint32_t i = 0; i < k1; i++)
		cr_assert_eq(ring[i].flags, KVM_DIRTY_GFN_F_RESET, "entry %u handed back", i);
	cr_assert_eq(ring[k1].flags, 0);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(16)), 1);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(KG_SLOT0_PAGES + 5)), 1);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(KG_SLOT0_PAGES + 99)), 1);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 3);

	/* KVM "resets" those entries (flags 0), then publishes a full ring,
	 * wrapping around: slot 1, offsets cycling over all 100 pages. */
	for (uint32_t i = 0; i < k1; i++)
		ring[i].flags = 0;
	precopy_bitmap_zero(&f.ram);
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_dirty_gfn *e = &ring[(k1 + i) % n];
		e->slot = 1;
		e->offset = i % KG_SLOT1_PAGES;
		e->flags = KVM_DIRTY_GFN_F_DIRTY;
	}
	f.in.reset_bias = (int)n;
	cr_assert_eq(precopy_kvm_log_sync(f.log), KG_SLOT1_PAGES);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_entries, n, "one ring's worth, no more");
	cr_assert_eq(st.last_pages, KG_SLOT1_PAGES);
	cr_assert_eq(st.last_repeats, n - KG_SLOT1_PAGES);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(ring[i].flags, KVM_DIRTY_GFN_F_RESET);
	/* Nothing newly published: nothing read, no reset issued. */
	int resets = f.in.calls_reset;
	f.in.reset_bias = 0;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	cr_assert_eq(f.in.calls_reset, resets);
	precopy_kvm_log_free(f.log);
	f.log = NULL;
	free(ring);
	fx_close(&f);
}
