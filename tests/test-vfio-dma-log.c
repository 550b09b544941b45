/* SPDX-License-Identifier: MIT */
/* Device DMA logging as a dirty source, against the fake device: START
 * validation and range combining, REPORT merged chunk by chunk into a RAM
 * bitmap with page-size conversion, and a failing REPORT marking its range
 * dirty. Expected bits are computed from the DMA the test makes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/bitmap.h"
#include "precopy/fake.h"
#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"

static uint64_t vnow;
static uint64_t v_now(void *c) { (void)c; return vnow; }
static const struct precopy_fake_clock vclock = { v_now, NULL, NULL };
static struct precopy_fake_kernel *fk;
static const struct precopy_sys *sys;

#define BASE (1ull << 32)
#define MEMLEN (4ull << 20) /* 4 MiB of guest memory = 1024 RAM pages */
static uint8_t *mem;

static void setup(void)
{
	vnow = 1;
	fk = precopy_fake_kernel_new(&vclock, NULL);
	cr_assert(fk);
	sys = precopy_fake_kernel_sys(fk);
	mem = calloc(1, MEMLEN);
	cr_assert(mem);
}
static void teardown(void)
{
	precopy_fake_kernel_free(fk);
	free(mem);
}
TestSuite(vfio_dma_log, .init = setup, .fini = teardown);

static int mkdev(uint64_t page_min, uint32_t max_ranges, struct precopy_fake_vfio **m)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = VFIO_MIGRATION_STOP_COPY, .dma_logging = 1,
					   .log_page_min = page_min, .max_ranges = max_ranges };
	int fd = precopy_fake_vfio_new(fk, &c, m);
	cr_assert_geq(fd, 0);
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(*m, BASE, mem, MEMLEN), 0);
	return fd;
}

Test(vfio_dma_log, new_and_start_rules)
{
	struct precopy_fake_vfio *m;
	int err, fd = mkdev(4096, 0, &m);
	int nolog = precopy_fake_vfio_new(fk, &(struct precopy_fake_vfio_cfg){ .mig_flags = 1 }, NULL);
	struct precopy_dirty_source *s;
	struct precopy_dirty_range ok = { BASE, 1 << 20 }, ovl[2] = { { BASE, 8192 }, { BASE + 4096, 4096 } },
				   mis = { BASE + 512, 4096 }, zero = { BASE, 0 };

	cr_expect_null(precopy_vfio_dma_log_new(sys, nolog, 0, 0, &err));
	cr_expect_eq(err, -EOPNOTSUPP);
	cr_expect_null(precopy_vfio_dma_log_new(sys, -1, 0, 0, &err));
	cr_expect_eq(err, -EINVAL);
	s = precopy_vfio_dma_log_new(sys, fd, 0, 0, &err);
	cr_assert(s, "%d", err);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 0, 4096), -EINVAL);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 1, 2048), -EINVAL);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 1, 12288), -EINVAL);
	cr_expect_eq(precopy_dirty_source_start(s, ovl, 2, 4096), -EINVAL);
	cr_expect_eq(precopy_dirty_source_start(s, &mis, 1, 4096), -EINVAL);
	cr_expect_eq(precopy_dirty_source_start(s, &zero, 1, 4096), -EINVAL);
	cr_expect_eq(precopy_dirty_source_page_size(s), 0);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 1, 4096), 0);
	cr_expect_eq(precopy_dirty_source_page_size(s), 4096);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 1, 4096), -EBUSY);
	cr_expect_eq(precopy_dirty_source_stop(s), 0);
	cr_expect_eq(precopy_dirty_source_stop(s), 0);
	cr_expect_eq(precopy_dirty_source_start(s, &ok, 1, 4096), 0, "restart after stop");
	precopy_dirty_source_free(s); /* stops the device's logging */
	struct precopy_fake_vfio_stats st;
	precopy_fake_vfio_get_stats(m, &st);
	cr_expect_eq(st.logging, 0);
}

/* The device tracks 64 KiB pages; RAM has 4 KiB pages: one DMA byte dirties
 * 16 RAM pages. Small buffers force many chunks. */
Test(vfio_dma_log, report_converts_page_size_in_chunks)
{
	struct precopy_fake_vfio *m;
	int err, fd = mkdev(65536, 0, &m);
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 0, 1 /* 64 bits per chunk */, &err);
	struct precopy_dirty_range r[2] = { { BASE, 1 << 20 }, { BASE + (2 << 20), 2 << 20 } };
	struct precopy_bitmap ram, want;
	uint64_t newly = 0;
	static const uint64_t hits[] = { 0, 65536 + 5, (1 << 20) - 1, (2 << 20) + 123456, (4 << 20) - 4096 };

	cr_assert(s, "%d", err);
	cr_assert_eq(precopy_bitmap_alloc(&ram, MEMLEN / 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&want, MEMLEN / 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_dirty_source_start(s, r, 2, 4096), 0);
	cr_expect_eq(precopy_dirty_source_page_size(s), 65536, "the device's choice is read back");
	for (size_t i = 0; i < sizeof(hits) / sizeof(hits[0]); i++) {
		cr_assert_geq(precopy_fake_vfio_dma_write(m, BASE + hits[i], 1, 0x5a), 0);
		cr_expect_eq(mem[hits[i]], 0x5a, "real bytes in guest memory");
		precopy_bitmap_set_range(&want, (hits[i] & ~65535ull) / 4096, 16);
	}
	precopy_bitmap_set_atomic(&ram, 700); /* bits already in the RAM log stay */
	precopy_bitmap_set_atomic(&want, 700);
	cr_assert_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), 0);
	cr_expect_eq(newly, 5 * 16);
	cr_expect_eq(memcmp(ram.words, want.words, MEMLEN / 4096 / 8), 0);
	cr_assert_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), 0);
	cr_expect_eq(newly, 0, "the device log was read and cleared");
	/* RAM with 2 MiB pages: combining instead of expanding */
	struct precopy_bitmap huge;
	cr_assert_eq(precopy_bitmap_alloc(&huge, 2, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_geq(precopy_fake_vfio_dma_write(m, BASE + (3 << 20), 8, 1), 0);
	cr_assert_eq(precopy_dirty_source_report(s, &huge, BASE, 2 << 20, &newly), 0);
	cr_expect_eq(newly, 1);
	cr_expect_eq(precopy_bitmap_test(&huge, 1), 1);
	cr_expect_eq(precopy_bitmap_test(&huge, 0), 0);
	/* a RAM log that does not cover the ranges */
	struct precopy_bitmap small;
	cr_assert_eq(precopy_bitmap_alloc(&small, 16, PRECOPY_NUMA_LOCAL), 0);
	cr_expect_eq(precopy_dirty_source_report(s, &small, BASE, 4096, &newly), -ERANGE);
	precopy_bitmap_free(&small);
	precopy_bitmap_free(&huge);
	precopy_bitmap_free(&ram);
	precopy_bitmap_free(&want);
	precopy_dirty_source_free(s);
}

Test(vfio_dma_log, ranges_are_combined_for_the_device)
{
	struct precopy_fake_vfio *m;
	struct precopy_fake_vfio_stats st;
	int err, fd = mkdev(4096, 2, &m);
	/* gaps: 4 KiB, 1 MiB, 8 KiB -> a 2-range device gets the 4 KiB and 8 KiB gaps closed */
	struct precopy_dirty_range r[4] = {
		{ BASE, 65536 }, { BASE + 69632, 65536 }, { BASE + 135168 + (1 << 20), 65536 },
		{ BASE + 200704 + (1 << 20) + 8192, 65536 },
	};
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 2, 0, &err);
	struct precopy_bitmap ram;
	uint64_t newly;

	cr_assert(s);
	cr_assert_eq(precopy_bitmap_alloc(&ram, MEMLEN / 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_dirty_source_start(s, r, 4, 4096), 0);
	cr_expect_eq(precopy_dirty_source_device_ranges(s), 2);
	precopy_fake_vfio_get_stats(m, &st);
	cr_expect_eq(st.log_ranges, 2);
	/* DMA into a closed gap is logged by the device but is not guest RAM we
	 * report: only the guest ranges reach the RAM log */
	cr_assert_eq(precopy_fake_vfio_dma_write(m, BASE + 65536, 4096, 1), 1);
	cr_assert_eq(precopy_fake_vfio_dma_write(m, BASE + 69632, 4096, 1), 1);
	cr_assert_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), 0);
	cr_expect_eq(newly, 1);
	cr_expect_eq(precopy_bitmap_test(&ram, 17), 1);
	cr_expect_eq(precopy_bitmap_test(&ram, 16), 0);
	precopy_bitmap_free(&ram);
	precopy_dirty_source_free(s);
}

Test(vfio_dma_log, too_many_ranges_retry_combined)
{
	struct precopy_fake_vfio *m;
	int err, fd = mkdev(4096, 1000, &m);
	struct precopy_dirty_range r[300];
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 1000, 0, &err);

	for (int i = 0; i < 300; i++)
		r[i].iova = BASE + (uint64_t)i * 8192, r[i].length = 4096;
	cr_assert(s);
	cr_assert_eq(precopy_dirty_source_start(s, r, 300, 4096), 0);
	cr_expect_eq(precopy_dirty_source_device_ranges(s), 150, "E2BIG at 300, retried with half");
	precopy_dirty_source_free(s);
}

Test(vfio_dma_log, report_error_marks_range_dirty)
{
	struct precopy_fake_vfio *m;
	int err, fd = mkdev(4096, 0, &m);
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 0, 1, &err); /* 64 pages per chunk */
	struct precopy_dirty_range r[2] = { { BASE, 1 << 20 }, { BASE + (2 << 20), 1 << 20 } };
	struct precopy_bitmap ram;
	uint64_t newly = 0;

	cr_assert(s);
	cr_assert_eq(precopy_bitmap_alloc(&ram, MEMLEN / 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_dirty_source_start(s, r, 2, 4096), 0);
	cr_assert_eq(precopy_fake_vfio_dma_write(m, BASE + 5 * 4096, 1, 1), 1);
	cr_assert_eq(precopy_fake_vfio_dma_write(m, BASE + (2 << 20) + 7 * 4096, 1, 1), 1);
	/* the 2nd REPORT call (range 0, chunk 1: pages 64..127) fails */
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL,
		.request = VFIO_DEVICE_FEATURE, .match_feature = 1, .feature = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
		.nth = 2, .err = EIO }), 0);
	cr_expect_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), -EIO, "never swallowed");
	/* range 0: page 5 from chunk 0, then pages 64..255 all dirty; range 1 reported normally */
	cr_expect_eq(precopy_bitmap_count_range(&ram, 0, 256), 1 + 192);
	cr_expect_eq(precopy_bitmap_test(&ram, 5), 1);
	cr_expect_eq(precopy_bitmap_count_range(&ram, 64, 192), 192);
	cr_expect_eq(precopy_bitmap_count_range(&ram, 256, 256), 0, "the gap is not guest RAM");
	cr_expect_eq(precopy_bitmap_count_range(&ram, 512, 256), 1);
	cr_expect_eq(precopy_bitmap_test(&ram, 512 + 7), 1);
	cr_expect_eq(newly, 194);
	precopy_fake_fault_clear(fk);
	cr_expect_eq(precopy_dirty_source_stop(s), 0);
	cr_expect_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), -EINVAL, "not started");
	precopy_bitmap_free(&ram);
	precopy_dirty_source_free(s);
}

Test(vfio_dma_log, background_dma_reaches_the_ram_log)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = 1, .dma_logging = 1, .dma_pages_per_sec = 10000, .seed = 11 };
	struct precopy_fake_vfio *m;
	int err, fd = precopy_fake_vfio_new(fk, &c, &m);
	struct precopy_dirty_range r = { BASE, MEMLEN };
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 0, 0, &err);
	struct precopy_bitmap ram;
	uint64_t newly;

	cr_assert(s);
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(m, BASE, mem, MEMLEN), 0);
	cr_assert_eq(precopy_bitmap_alloc(&ram, MEMLEN / 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_dirty_source_start(s, &r, 1, 4096), 0);
	vnow += 50000000; /* 50 ms: 500 page writes */
	cr_assert_eq(precopy_dirty_source_report(s, &ram, BASE, 4096, &newly), 0);
	/* every page the device changed is in the RAM log */
	for (uint64_t p = 0; p < MEMLEN / 4096; p++) {
		int touched = 0;
		for (uint64_t b = 0; b < 4096 && !touched; b++)
			touched = mem[p * 4096 + b] != 0;
		if (touched)
			cr_assert_eq(precopy_bitmap_test(&ram, p), 1, "page %lu dirtied by the device only", (unsigned long)p);
	}
	cr_expect_gt(newly, 300);
	precopy_bitmap_free(&ram);
	precopy_dirty_source_free(s);
}

/* A STOP the device fails leaves it logging, so the source stays started:
 * a second stop is sent (and succeeds), and free tries once more. Had the
 * source forgotten, the device (like mlx5) would refuse the next START. */
Test(vfio_dma_log, failed_stop_stays_started_and_retries)
{
	struct precopy_fake_vfio *m;
	struct precopy_fake_vfio_stats st;
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE, .match_feature = 1,
				   .feature = VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, .nth = 1, .err = EIO };
	struct precopy_dirty_range ok = { BASE, 1 << 20 };
	int err, fd = mkdev(4096, 0, &m);
	struct precopy_dirty_source *s = precopy_vfio_dma_log_new(sys, fd, 0, 0, &err);

	cr_assert(s, "%d", err);
	cr_assert_eq(precopy_dirty_source_start(s, &ok, 1, 4096), 0);
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
	cr_assert_eq(precopy_dirty_source_stop(s), -EIO);
	precopy_fake_vfio_get_stats(m, &st);
	cr_assert_eq(st.logging, 1, "the fake must still be logging after a failed STOP");
	cr_assert_eq(precopy_dirty_source_page_size(s), 4096, "a failed stop must leave the source started");
	cr_assert_eq(precopy_dirty_source_start(s, &ok, 1, 4096), -EBUSY);
	cr_assert_eq(precopy_dirty_source_stop(s), 0, "the retry reaches the device");
	precopy_fake_vfio_get_stats(m, &st);
	cr_assert_eq(st.logging, 0);
	cr_assert_eq(precopy_dirty_source_start(s, &ok, 1, 4096), 0, "a new start after the retried stop");
	/* fails once more: free retries */
	precopy_fake_fault_clear(fk);
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
	cr_assert_eq(precopy_dirty_source_stop(s), -EIO);
	precopy_dirty_source_free(s);
	precopy_fake_vfio_get_stats(m, &st);
	cr_assert_eq(st.logging, 0, "free must stop a source whose stop failed");
}
