/* SPDX-License-Identifier: MIT */
/* Container dirty tracking against the fake kernel: the type1 container
 * (VFIO_IOMMU_DIRTY_PAGES) and iommufd (IOMMU_HWPT_*_DIRTY_*), first as raw
 * ioctls with the exact -errno of each misuse (tables), then as dirty
 * sources behind the common precopy_dirty_source_* calls: reports merged
 * into a 4 KiB RAM log from a 64 KiB container page or a 2 MiB IOPTE,
 * GET_BITMAP chunked to the capability's limit, and a failing report
 * marking its range dirty and returning the error. Expected bits come from
 * the DMA the test makes through the fake device. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "precopy.h"
#include "precopy/fake.h"
#include "../ioctl/uapi_compat.h"

#define K64 (64ull << 10)
#define M2 (2ull << 20)
#define BASE (1ull << 32)
#define MEMLEN (16ull << 20) /* 16 MiB of guest memory: 4096 RAM pages */
#define RAM_PG 4096ull

static struct precopy_fake_kernel *fk;
static const struct precopy_sys *sys;
static uint8_t *mem;

static void setup(void)
{
	fk = precopy_fake_kernel_new(NULL, NULL);
	cr_assert(fk);
	sys = precopy_fake_kernel_sys(fk);
	mem = aligned_alloc(M2, MEMLEN); /* mappings need page-aligned vaddr */
	cr_assert(mem);
	memset(mem, 0, MEMLEN);
}
static void teardown(void)
{
	precopy_fake_kernel_free(fk);
	free(mem);
}
TestSuite(vfio_container, .init = setup, .fini = teardown);

static struct precopy_fake_vfio *mkdev(void)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = VFIO_MIGRATION_STOP_COPY };
	struct precopy_fake_vfio *d;

	cr_assert_geq(precopy_fake_vfio_new(fk, &c, &d), 0);
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(d, BASE, mem, MEMLEN), 0);
	return d;
}

static int map(int ct, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
					      .vaddr = (uintptr_t)mem + (iova - BASE), .iova = iova, .size = size };
	return precopy_sys_ioctl(sys, ct, VFIO_IOMMU_MAP_DMA, &m);
}

static int dirty_flag(int ct, uint32_t flags)
{
	struct vfio_iommu_type1_dirty_bitmap d = { .argsz = sizeof(d), .flags = flags };
	return precopy_sys_ioctl(sys, ct, VFIO_IOMMU_DIRTY_PAGES, &d);
}

struct t1get {
	struct vfio_iommu_type1_dirty_bitmap hdr;
	struct vfio_iommu_type1_dirty_bitmap_get get;
};

static int get_bitmap(int ct, uint32_t argsz, uint64_t iova, uint64_t size, uint64_t pgsize, uint64_t bsize,
		      uint64_t *data)
{
	struct t1get a;
	memset(&a, 0, sizeof(a));
	a.hdr.argsz = argsz;
	a.hdr.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	a.get.iova = iova;
	a.get.size = size;
	a.get.bitmap.pgsize = pgsize;
	a.get.bitmap.size = bsize;
	a.get.bitmap.data = (__u64 *)data;
	return precopy_sys_ioctl(sys, ct, VFIO_IOMMU_DIRTY_PAGES, &a);
}

/* ---- type1: the kernel's checks, one table ------------------------------- */

enum t1op { T1_GET, T1_FLAGS, T1_MAP, T1_START, T1_STOP };

struct t1case {
	const char *what;
	enum t1op op;
	uint32_t argsz, flags;
	uint64_t iova, size, pgsize, bsize;
	int null_data;
	int want;
};

#define A48 ((uint32_t)sizeof(struct t1get))
/* Container: pages 64 KiB | 2 MiB; mappings [BASE, +1 MiB) and [BASE + 1 MiB, +1 MiB). */
static const struct t1case t1cases[] = {
	{ "GET_BITMAP before START", T1_GET, A48, 0, BASE, 1 << 20, K64, 8, 0, -EINVAL },
	{ "START", T1_START, .want = 0 },
	{ "START again is a no-op", T1_START, .want = 0 },
	{ "whole first mapping", T1_GET, A48, 0, BASE, 1 << 20, K64, 8, 0, 0 },
	{ "both mappings at once", T1_GET, A48, 0, BASE, 2 << 20, K64, 8, 0, 0 },
	{ "pgsize other than the smallest", T1_GET, A48, 0, BASE, 2 << 20, M2, 8, 0, -EINVAL },
	{ "pgsize 4 KiB (below the IOMMU's)", T1_GET, A48, 0, BASE, 1 << 20, 4096, 64, 0, -EINVAL },
	{ "bitmap size too small", T1_GET, A48, 0, BASE, 8 << 20, K64, 8, 0, -EINVAL },
	{ "bitmap size 0", T1_GET, A48, 0, BASE, 1 << 20, K64, 0, 0, -EINVAL },
	{ "bitmap size above the maximum", T1_GET, A48, 0, BASE, 1 << 20, K64, 4096, 0, -EINVAL },
	{ "iova not aligned", T1_GET, A48, 0, BASE + 4096, 1 << 20, K64, 8, 0, -EINVAL },
	{ "size not aligned", T1_GET, A48, 0, BASE, (1 << 20) + 4096, K64, 8, 0, -EINVAL },
	{ "size 0", T1_GET, A48, 0, BASE, 0, K64, 8, 0, -EINVAL },
	{ "iova + size wraps", T1_GET, A48, 0, ~0ull - K64 + 1, 2 * K64, K64, 8, 0, -EINVAL },
	{ "range cuts a mapping at its start", T1_GET, A48, 0, BASE + K64, 15 * K64, K64, 8, 0, -EINVAL },
	{ "range cuts a mapping at its end", T1_GET, A48, 0, BASE, K64 * 24, K64, 8, 0, -EINVAL },
	{ "argsz without the range", T1_GET, 8, 0, BASE, 1 << 20, K64, 8, 0, -EINVAL },
	{ "NULL bitmap", T1_GET, A48, 0, BASE, 1 << 20, K64, 8, 1, -EFAULT },
	{ "unmapped range: nothing to report", T1_GET, A48, 0, BASE + (8 << 20), 1 << 20, K64, 8, 0, 0 },
	{ "START|STOP at once", T1_FLAGS, 8, VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, .want = -EINVAL },
	{ "no operation", T1_FLAGS, 8, 0, .want = -EINVAL },
	{ "unknown flag", T1_FLAGS, 8, 1u << 3, .want = -EINVAL },
	{ "argsz below the header", T1_FLAGS, 4, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, .want = -EINVAL },
	{ "MAP overlapping", T1_MAP, .iova = BASE + K64, .size = K64, .want = -EEXIST },
	{ "MAP unaligned to the smallest page", T1_MAP, .iova = BASE + (4 << 20) + 4096, .size = K64, .want = -EINVAL },
	{ "MAP size 0", T1_MAP, .iova = BASE + (4 << 20), .size = 0, .want = -EINVAL },
	{ "STOP", T1_STOP, .want = 0 },
	{ "STOP again is a no-op", T1_STOP, .want = 0 },
	{ "GET_BITMAP after STOP", T1_GET, A48, 0, BASE, 1 << 20, K64, 8, 0, -EINVAL },
};

Test(vfio_container, type1_dirty_pages_errno_table)
{
	struct precopy_fake_type1_cfg cfg = { .pgsize_bitmap = K64 | M2, .max_bitmap_bytes = 64 };
	uint64_t bm[16];
	int ct = precopy_fake_type1_new(fk, &cfg, NULL);

	cr_assert_geq(ct, 0);
	cr_assert_eq(map(ct, BASE, 1 << 20), 0);
	cr_assert_eq(map(ct, BASE + (1 << 20), 1 << 20), 0);
	for (size_t i = 0; i < sizeof(t1cases) / sizeof(t1cases[0]); i++) {
		const struct t1case *c = &t1cases[i];
		int r = 0;
		memset(bm, 0, sizeof(bm));
		switch (c->op) {
		case T1_GET:
			r = get_bitmap(ct, c->argsz, c->iova, c->size, c->pgsize, c->bsize, c->null_data ? NULL : bm);
			break;
		case T1_FLAGS: {
			struct vfio_iommu_type1_dirty_bitmap d = { .argsz = c->argsz, .flags = c->flags };
			r = precopy_sys_ioctl(sys, ct, VFIO_IOMMU_DIRTY_PAGES, &d);
			break;
		}
		case T1_MAP:
			r = map(ct, c->iova, c->size);
			break;
		case T1_START:
			r = dirty_flag(ct, VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
			break;
		case T1_STOP:
			r = dirty_flag(ct, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
			break;
		}
		cr_expect_eq(r, c->want, "case %zu (%s): got %d, want %d", i, c->what, r, c->want);
	}
}

Test(vfio_container, type1_v1_and_capability_rules)
{
	struct precopy_fake_type1_cfg v1 = { .v1 = 1 }, nocap = { .no_migration_cap = 1 }, bad = { .pgsize_bitmap = 512 };
	int a = precopy_fake_type1_new(fk, &v1, NULL), b = precopy_fake_type1_new(fk, &nocap, NULL), err = 0;

	cr_assert_geq(a, 0);
	cr_assert_geq(b, 0);
	cr_expect_eq(dirty_flag(a, VFIO_IOMMU_DIRTY_PAGES_FLAG_START), -EACCES, "type1 v1 has no dirty tracking");
	cr_expect_eq(precopy_fake_type1_new(fk, &bad, NULL), -EINVAL);
	cr_expect_null(precopy_vfio_type1_dirty_new(sys, b, 0, &err));
	cr_expect_eq(err, -EOPNOTSUPP, "no migration capability");
	cr_expect_null(precopy_vfio_type1_dirty_new(sys, -1, 0, &err));
	cr_expect_eq(err, -EINVAL);
	cr_expect_null(precopy_vfio_type1_dirty_new(NULL, b, 0, &err));
	cr_expect_eq(err, -EINVAL);
	/* GET_INFO with only the fixed part: argsz grows, no capability copied */
	struct vfio_iommu_type1_info info = { .argsz = sizeof(info), .cap_offset = 77 };
	cr_assert_eq(precopy_sys_ioctl(sys, a, VFIO_IOMMU_GET_INFO, &info), 0);
	cr_expect(info.flags & VFIO_IOMMU_INFO_CAPS);
	cr_expect_gt(info.argsz, sizeof(info));
	cr_expect_eq(info.cap_offset, 0);
	info.argsz = 8;
	cr_expect_eq(precopy_sys_ioctl(sys, a, VFIO_IOMMU_GET_INFO, &info), -EINVAL);
}

/* ---- type1 as a dirty source ---------------------------------------------- */

/* 4 KiB RAM log over the guest memory; expected bits from DMA at 64 KiB. */
struct ramlog {
	struct precopy_bitmap ram, want;
};

static void ramlog_init(struct ramlog *l)
{
	cr_assert_eq(precopy_bitmap_alloc(&l->ram, MEMLEN / RAM_PG, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&l->want, MEMLEN / RAM_PG, PRECOPY_NUMA_LOCAL), 0);
}

static void ramlog_free(struct ramlog *l)
{
	precopy_bitmap_free(&l->ram);
	precopy_bitmap_free(&l->want);
}

/* Expect every RAM page of [iova, iova + len) rounded out to `pg`. */
static void want_span(struct ramlog *l, uint64_t iova, uint64_t len, uint64_t pg)
{
	uint64_t lo = (iova - BASE) & ~(pg - 1), hi = ((iova - BASE + len + pg - 1) & ~(pg - 1));
	cr_assert_geq(precopy_bitmap_set_range(&l->want, lo / RAM_PG, (hi - lo) / RAM_PG), 0);
}

static void expect_equal(const struct ramlog *l, const char *what)
{
	for (uint64_t b = 0; b < MEMLEN / RAM_PG; b++)
		cr_assert_eq(precopy_bitmap_test(&l->ram, b), precopy_bitmap_test(&l->want, b), "%s: RAM page %lu", what,
			     (unsigned long)b);
}

Test(vfio_container, type1_pinned_device_report_expands_64k_pages_into_the_4k_log)
{
	struct precopy_fake_type1_cfg cfg = { .pgsize_bitmap = K64 | M2 };
	struct precopy_fake_type1 *m;
	struct precopy_fake_vfio *dev = mkdev();
	struct precopy_dirty_range rg[2] = { { BASE, 4 << 20 }, { BASE + (8 << 20), 4 << 20 } };
	struct ramlog l;
	uint64_t newly;
	int err, ct = precopy_fake_type1_new(fk, &cfg, &m);

	cr_assert_geq(ct, 0);
	cr_assert_eq(precopy_fake_type1_attach(m, dev, 1), 0);
	cr_assert_eq(precopy_fake_type1_attach(m, dev, 1), -EBUSY);
	cr_assert_eq(map(ct, rg[0].iova, rg[0].length), 0);
	cr_assert_eq(map(ct, rg[1].iova, rg[1].length), 0);
	cr_expect_eq(precopy_fake_vfio_dma_write(dev, BASE + (5 << 20), 8, 1), -EFAULT, "no mapping there");
	ramlog_init(&l);
	struct precopy_dirty_source *s = precopy_vfio_type1_dirty_new(sys, ct, 0, &err);
	cr_assert_not_null(s, "%d", err);
	cr_assert_eq(precopy_dirty_source_page_size(s), 0);
	cr_assert_eq(precopy_dirty_source_start(s, rg, 2, 4096), 0);
	cr_assert_eq(precopy_dirty_source_page_size(s), K64, "the kernel's smallest page");
	cr_assert_eq(precopy_dirty_source_device_ranges(s), 2);
	/* DMA: one byte, a 4 KiB page straddling two 64 KiB pages, the last byte */
	const uint64_t w[3][2] = { { BASE + 100, 1 }, { BASE + (8 << 20) + K64 - 2048, 4096 }, { BASE + (12 << 20) - 1, 1 } };
	for (int i = 0; i < 3; i++) {
		cr_assert_geq(precopy_fake_vfio_dma_write(dev, w[i][0], w[i][1], 0xab), 0);
		want_span(&l, w[i][0], w[i][1], K64);
	}
	cr_assert_eq(mem[100], 0xab, "the DMA wrote real bytes");
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
	cr_expect_eq(newly, 4 * K64 / RAM_PG, "four 64 KiB pages, 16 RAM pages each");
	expect_equal(&l, "first report");
	precopy_bitmap_zero(&l.ram);
	precopy_bitmap_zero(&l.want);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
	cr_expect_eq(newly, 0, "a report clears");
	/* a RAM log with 2 MiB pages combines (any dirty 64 KiB sub-page) */
	struct precopy_bitmap big;
	cr_assert_eq(precopy_bitmap_alloc(&big, MEMLEN / M2, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (9 << 20) + 7, 1, 1), 0);
	cr_assert_eq(precopy_dirty_source_report(s, &big, BASE, M2, &newly), 0);
	cr_expect_eq(newly, 1);
	cr_expect_eq(precopy_bitmap_test(&big, 4), 1, "[BASE + 8 MiB, + 2 MiB) is the fifth 2 MiB page");
	precopy_bitmap_free(&big);
	cr_assert_eq(precopy_dirty_source_stop(s), 0);
	cr_expect_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, NULL), -EINVAL, "stopped");
	/* restart works, with the same page size */
	cr_assert_eq(precopy_dirty_source_start(s, rg, 1, 4096), 0);
	cr_assert_eq(precopy_dirty_source_page_size(s), K64);
	precopy_dirty_source_free(s);
	ramlog_free(&l);
}

Test(vfio_container, type1_ordinary_device_makes_every_mapped_page_dirty_every_time)
{
	struct precopy_fake_type1_cfg cfg = { 0 }; /* 4 KiB | 2 MiB | 1 GiB */
	struct precopy_fake_type1 *m;
	struct precopy_fake_vfio *dev = mkdev();
	struct precopy_dirty_range rg = { BASE, 4 << 20 };
	struct ramlog l;
	uint64_t newly;
	int err, ct = precopy_fake_type1_new(fk, &cfg, &m);

	cr_assert_geq(ct, 0);
	cr_assert_eq(precopy_fake_type1_attach(m, dev, 0), 0);
	cr_assert_eq(map(ct, BASE, 1 << 20), 0);
	cr_assert_eq(map(ct, BASE + (2 << 20), 1 << 20), 0); /* a hole between */
	ramlog_init(&l);
	struct precopy_dirty_source *s = precopy_vfio_type1_dirty_new(sys, ct, 0, &err);
	cr_assert_not_null(s, "%d", err);
	cr_assert_eq(precopy_dirty_source_start(s, &rg, 1, 4096), 0);
	cr_assert_eq(precopy_dirty_source_page_size(s), 4096);
	want_span(&l, BASE, 1 << 20, RAM_PG);
	want_span(&l, BASE + (2 << 20), 1 << 20, RAM_PG);
	for (int i = 0; i < 2; i++) {
		precopy_bitmap_zero(&l.ram);
		cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
		cr_expect_eq(newly, 512, "report %d: both mapped MiB, without any DMA", i);
		expect_equal(&l, "all mapped");
	}
	precopy_dirty_source_free(s);
	ramlog_free(&l);
}

Test(vfio_container, type1_get_bitmap_is_chunked_to_the_capability_limit_and_a_fault_marks_the_rest)
{
	/* 8-byte bitmaps: 64 pages of 64 KiB (4 MiB) per GET_BITMAP; mappings
	 * of 4 MiB so that each chunk covers whole mappings. */
	struct precopy_fake_type1_cfg cfg = { .pgsize_bitmap = K64, .max_bitmap_bytes = 8 };
	struct precopy_fake_type1 *m;
	struct precopy_fake_vfio *dev = mkdev();
	struct precopy_dirty_range rg = { BASE, 12 << 20 };
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_IOMMU_DIRTY_PAGES, .nth = 3, .err = EIO };
	struct ramlog l;
	uint64_t newly, before;
	int err, ct = precopy_fake_type1_new(fk, &cfg, &m);

	cr_assert_geq(ct, 0);
	cr_assert_eq(precopy_fake_type1_attach(m, dev, 1), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(map(ct, BASE + ((uint64_t)i << 22), 4 << 20), 0);
	ramlog_init(&l);
	struct precopy_dirty_source *s = precopy_vfio_type1_dirty_new(sys, ct, 0, &err);
	cr_assert_not_null(s, "%d", err);
	cr_assert_eq(precopy_dirty_source_start(s, &rg, 1, 4096), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + 5, 1, 1), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (9 << 20), 1, 1), 0);
	want_span(&l, BASE + 5, 1, K64);
	want_span(&l, BASE + (9 << 20), 1, K64);
	before = precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
	cr_expect_eq(precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL) - before, 3, "12 MiB in three GET_BITMAPs");
	cr_expect_eq(newly, 2 * K64 / RAM_PG);
	expect_equal(&l, "chunked");

	/* The third DIRTY_PAGES ioctl from now (the third chunk of the next
	 * report) fails: chunks one and two are exact, the third is all dirty. */
	precopy_bitmap_zero(&l.ram);
	precopy_bitmap_zero(&l.want);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (4 << 20) + 3 * K64, 1, 1), 0);
	want_span(&l, BASE + (4 << 20) + 3 * K64, 1, K64);
	want_span(&l, BASE + (8 << 20), 4 << 20, RAM_PG);
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), -EIO);
	cr_expect_eq(newly, 16 + 1024);
	expect_equal(&l, "failed third chunk");
	precopy_fake_fault_clear(fk);
	precopy_dirty_source_free(s);
	ramlog_free(&l);
}

Test(vfio_container, type1_start_refuses_ranges_off_the_kernel_page)
{
	struct precopy_fake_type1_cfg cfg = { .pgsize_bitmap = K64 };
	struct precopy_dirty_range rg = { BASE + 4096, K64 };
	int err, ct = precopy_fake_type1_new(fk, &cfg, NULL);
	struct precopy_dirty_source *s = precopy_vfio_type1_dirty_new(sys, ct, 0, &err);

	cr_assert_not_null(s, "%d", err);
	cr_expect_eq(precopy_dirty_source_start(s, &rg, 1, 4096), -EINVAL);
	cr_expect_eq(precopy_dirty_source_page_size(s), 0, "not started");
	precopy_dirty_source_free(s);
}

/* ---- iommufd ----------------------------------------------------------------- */

static int set_track(int fd, uint32_t size, uint32_t flags, uint32_t hwpt, uint32_t rsv)
{
	struct {
		struct iommu_hwpt_set_dirty_tracking c;
		uint8_t tail[8];
	} a;
	memset(&a, 0, sizeof(a));
	a.c.size = size;
	a.c.flags = flags;
	a.c.hwpt_id = hwpt;
	a.c.__reserved = rsv;
	a.tail[0] = size > sizeof(a.c) ? 1 : 0;
	return precopy_sys_ioctl(sys, fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &a);
}

struct fdcase {
	const char *what;
	int set; /* 1: SET_DIRTY_TRACKING, 0: GET_DIRTY_BITMAP */
	uint32_t size, flags, hwpt, rsv;
	uint64_t iova, length, page_size;
	int null_data;
	int want;
};

#define GSZ ((uint32_t)sizeof(struct iommu_hwpt_get_dirty_bitmap))
#define SSZ ((uint32_t)sizeof(struct iommu_hwpt_set_dirty_tracking))
/* HWPT 2 tracks dirty, HWPT 3 cannot; mapped: [BASE, + 4 MiB) and [BASE + 8 MiB, + 4 MiB). */
static const struct fdcase fdcases[] = {
	{ "GET before tracking is on", 0, GSZ, 0, 2, 0, BASE, 1 << 20, 4096, 0, -EINVAL },
	{ "SET on an unknown HWPT", 1, SSZ, 1, 99, 0, .want = -ENOENT },
	{ "SET on a HWPT without dirty tracking", 1, SSZ, 1, 3, 0, .want = -EOPNOTSUPP },
	{ "SET with an unknown flag", 1, SSZ, 2, 2, 0, .want = -EOPNOTSUPP },
	{ "SET below its size", 1, 12, 1, 2, 0, .want = -EINVAL },
	{ "SET with non-zero bytes past the struct", 1, SSZ + 8, 1, 2, 0, .want = -E2BIG },
	{ "SET enable", 1, SSZ, 1, 2, 0, .want = 0 },
	{ "GET on a mapped range", 0, GSZ, 0, 2, 0, BASE, 4 << 20, 4096, 0, 0 },
	{ "GET NO_CLEAR", 0, GSZ, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 2, 0, BASE, 1 << 20, 4096, 0, 0 },
	{ "GET unknown flag", 0, GSZ, 2, 2, 0, BASE, 1 << 20, 4096, 0, -EOPNOTSUPP },
	{ "GET __reserved set", 0, GSZ, 0, 2, 1, BASE, 1 << 20, 4096, 0, -EOPNOTSUPP },
	{ "GET below its size", 0, GSZ - 8, 0, 2, 0, BASE, 1 << 20, 4096, 0, -EINVAL },
	{ "GET unknown HWPT", 0, GSZ, 0, 7, 0, BASE, 1 << 20, 4096, 0, -ENOENT },
	{ "GET on a HWPT without dirty tracking", 0, GSZ, 0, 3, 0, BASE, 1 << 20, 4096, 0, -EOPNOTSUPP },
	{ "GET iova + length wraps", 0, GSZ, 0, 2, 0, ~0ull - 4095, 8192, 4096, 0, -EOVERFLOW },
	{ "GET iova off the IOVA alignment", 0, GSZ, 0, 2, 0, BASE + 512, 4096, 512, 0, -EINVAL },
	{ "GET iova off page_size", 0, GSZ, 0, 2, 0, BASE + 4096, 8192, 8192, 0, -EINVAL },
	{ "GET end off page_size", 0, GSZ, 0, 2, 0, BASE, 12288, 8192, 0, -EINVAL },
	{ "GET page_size 0", 0, GSZ, 0, 2, 0, BASE, 1 << 20, 0, 0, -EINVAL },
	{ "GET over a hole", 0, GSZ, 0, 2, 0, BASE, 12 << 20, 4096, 0, -EINVAL },
	{ "GET NULL data", 0, GSZ, 0, 2, 0, BASE, 1 << 20, 4096, 1, -EFAULT },
	{ "SET disable", 1, SSZ, 0, 2, 0, .want = 0 },
	{ "GET after disable", 0, GSZ, 0, 2, 0, BASE, 1 << 20, 4096, 0, -EINVAL },
};

static void fake_iommufd(int *fd, struct precopy_fake_iommufd **x, uint64_t iopte, uint32_t *hw)
{
	uint32_t nodirty;

	*fd = precopy_fake_iommufd_new(fk, 0, x);
	cr_assert_geq(*fd, 0);
	cr_assert_eq(precopy_fake_iommufd_hwpt_alloc(*x, 1, iopte, hw), 0);
	cr_assert_eq(precopy_fake_iommufd_hwpt_alloc(*x, 0, 0, &nodirty), 0);
	cr_assert_eq(*hw, 2);
	cr_assert_eq(nodirty, 3);
	cr_assert_eq(precopy_fake_iommufd_map(*x, BASE, 4 << 20), 0);
	cr_assert_eq(precopy_fake_iommufd_map(*x, BASE + (8 << 20), 4 << 20), 0);
	cr_assert_eq(precopy_fake_iommufd_map(*x, BASE + K64, 4096), -EEXIST);
}

Test(vfio_container, iommufd_dirty_tracking_errno_table)
{
	struct precopy_fake_iommufd *x;
	uint32_t hw;
	uint64_t bm[256];
	int fd;

	fake_iommufd(&fd, &x, 0, &hw);
	for (size_t i = 0; i < sizeof(fdcases) / sizeof(fdcases[0]); i++) {
		const struct fdcase *c = &fdcases[i];
		int r;
		if (c->set) {
			r = set_track(fd, c->size, c->flags, c->hwpt, c->rsv);
		} else {
			struct iommu_hwpt_get_dirty_bitmap g = { .size = c->size, .hwpt_id = c->hwpt, .flags = c->flags,
								 .__reserved = c->rsv, .iova = c->iova, .length = c->length,
								 .page_size = c->page_size,
								 .data = c->null_data ? 0 : (uintptr_t)bm };
			memset(bm, 0, sizeof(bm));
			r = precopy_sys_ioctl(sys, fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g);
		}
		cr_expect_eq(r, c->want, "case %zu (%s): got %d, want %d", i, c->what, r, c->want);
	}
	cr_expect_eq(precopy_sys_ioctl(sys, fd, _IO(IOMMUFD_TYPE, 0x80), NULL), -ENOTTY);
	int err;
	cr_expect_null(precopy_iommufd_dirty_new(sys, fd, hw, 1u << 5, 0, &err));
	cr_expect_eq(err, -EINVAL, "unknown flag");
	struct precopy_dirty_source *s = precopy_iommufd_dirty_new(sys, fd, 3, 0, 0, &err);
	struct precopy_dirty_range rg = { BASE, 4 << 20 };
	cr_assert_not_null(s);
	cr_expect_eq(precopy_dirty_source_start(s, &rg, 1, 4096), -EOPNOTSUPP, "HWPT without dirty tracking");
	precopy_dirty_source_free(s);
}

Test(vfio_container, iommufd_report_expands_2m_iopte_and_no_clear_keeps_bits)
{
	struct precopy_fake_iommufd *x;
	struct precopy_fake_vfio *dev = mkdev();
	struct precopy_dirty_range rg[2] = { { BASE, 4 << 20 }, { BASE + (8 << 20), 4 << 20 } };
	struct ramlog l;
	uint32_t hw;
	uint64_t newly;
	int fd, err;

	fake_iommufd(&fd, &x, M2, &hw);
	cr_assert_eq(precopy_fake_iommufd_attach(x, 77, dev), -ENOENT);
	cr_assert_eq(precopy_fake_iommufd_attach(x, hw, dev), 0);
	cr_expect_eq(precopy_fake_vfio_dma_write(dev, BASE + (5 << 20), 1, 1), -EFAULT, "not mapped");
	ramlog_init(&l);
	struct precopy_dirty_source *s = precopy_iommufd_dirty_new(sys, fd, hw, 0, 0, &err);
	struct precopy_dirty_source *nc = precopy_iommufd_dirty_new(sys, fd, hw, PRECOPY_IOMMUFD_DIRTY_NO_CLEAR, 0, &err);
	cr_assert_not_null(s, "%d", err);
	cr_assert_not_null(nc, "%d", err);
	/* a write before tracking starts is not reported */
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (3 << 20), 1, 1), 0);
	cr_assert_eq(precopy_dirty_source_start(s, rg, 2, 4096), 0);
	cr_assert_eq(precopy_dirty_source_page_size(s), 4096);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + 10, 1, 1), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (10 << 20) + 4096, 100, 1), 0);
	want_span(&l, BASE + 10, 1, M2);
	want_span(&l, BASE + (10 << 20) + 4096, 100, M2);
	/* NO_CLEAR first (started on the same HWPT through a second source) */
	cr_assert_eq(precopy_dirty_source_start(nc, rg, 2, 4096), 0); /* re-enabling clears: write again */
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + 10, 1, 1), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(dev, BASE + (10 << 20) + 4096, 100, 1), 0);
	for (int i = 0; i < 2; i++) {
		precopy_bitmap_zero(&l.ram);
		cr_assert_eq(precopy_dirty_source_report(nc, &l.ram, BASE, RAM_PG, &newly), 0);
		cr_expect_eq(newly, 2 * 512, "NO_CLEAR report %d: two 2 MiB IOPTEs", i);
		expect_equal(&l, "no clear");
	}
	precopy_bitmap_zero(&l.ram);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
	cr_expect_eq(newly, 1024);
	expect_equal(&l, "clearing report");
	precopy_bitmap_zero(&l.ram);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), 0);
	cr_expect_eq(newly, 0, "cleared");

	/* a failing GET marks its range dirty and returns the error */
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_IOCTL, .request = IOMMU_HWPT_GET_DIRTY_BITMAP, .nth = 2,
				   .err = EIO };
	precopy_bitmap_zero(&l.want);
	want_span(&l, rg[1].iova, rg[1].length, RAM_PG);
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
	cr_assert_eq(precopy_dirty_source_report(s, &l.ram, BASE, RAM_PG, &newly), -EIO);
	cr_expect_eq(newly, 1024, "the second range, all dirty");
	expect_equal(&l, "failed report");
	precopy_fake_fault_clear(fk);
	cr_assert_eq(precopy_dirty_source_stop(s), 0);
	precopy_dirty_source_free(nc);
	precopy_dirty_source_free(s);
	ramlog_free(&l);
}
