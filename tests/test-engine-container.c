/* SPDX-License-Identifier: MIT */
/* Container dirty tracking in the engine, end to end over the fake kernel:
 * devices without DMA logging whose DMA is seen by the IOMMU they sit
 * behind, a VFIO type1 container or an iommufd hardware page table, and
 * the engine uses that container's dirty source as the devices' tracker.
 * Device DMA lands only in pages the guest never writes (slot 0 pages
 * 100..127), so the byte comparison of destination and source RAM proves
 * those pages travelled through the tracker. Controls: the same DMA behind
 * no IOMMU the tracker watches loses pages. Several devices behind one
 * container share one tracker: it is started, read and stopped once. */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_container, .fini = fini);

static struct precopy_dirty_source *tracker;

static void free_tracker(void)
{
	precopy_engine_free(H.src);
	H.src = NULL;
	precopy_dirty_source_free(tracker);
	tracker = NULL;
}

/* The VMM maps guest RAM in the container: each slot at its GPA. */
static void type1_map(int ct)
{
	for (int s = 0; s < 2; s++) {
		struct vfio_iommu_type1_dma_map m = {
			.argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uintptr_t)H.smem[s], .iova = H.slots[s].gpa, .size = H.slots[s].size,
		};
		cr_assert_eq(precopy_sys_ioctl(H.ssys, ct, VFIO_IOMMU_MAP_DMA, &m), 0);
	}
}

static void migrate_expect(int equal, uint32_t tracking)
{
	struct run_result rr;
	int r;

	h_engines();
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "migration: %d: %s / %s", r, precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_engine_dev_info di;
		struct precopy_fake_vfio_stats s, d;

		cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)i, &di), 0);
		cr_assert_eq(di.tracking, tracking, "device %d tracking %u", i, di.tracking);
		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_gt(s.dma_pages, 0, "device %d wrote no page", i);
		cr_assert_eq(d.resume_ok, 1);
	}
	if (equal)
		cr_assert(ram_equal(), "destination RAM differs: a DMA page was lost");
	else
		cr_assert_not(ram_equal(), "DMA pages arrived although nothing tracked them");
	/* the guest-only slot always matches */
	cr_assert(!memcmp(H.smem[1], H.dmem[1], SLOT1_PAGES * PS));
}

static void setup_nodma(int ndev)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF };

	h_setup(ndev, flags, 0); /* no DMA logging */
}

/* type1: pinned_scope devices (mediated-device style) are tracked exactly;
 * one container, one tracker for both devices. attach 0: the devices sit
 * behind no IOMMU the tracker watches (control). */
static void type1_run(int pinned, int attach)
{
	struct precopy_fake_type1_cfg tc = { 0 };
	struct precopy_fake_type1 *ct;
	int ctfd, err;

	setup_nodma(2);
	if (!pinned)
		H.cfg.policy.downtime_limit_ns = 2000000; /* every mapped page, every sync */
	ctfd = precopy_fake_type1_new(H.sfk, &tc, &ct);
	cr_assert_geq(ctfd, 0);
	type1_map(ctfd);
	for (int i = 0; i < H.ndev && attach; i++)
		cr_assert_eq(precopy_fake_type1_attach(ct, H.sdev[i], pinned), 0);
	tracker = precopy_vfio_type1_dirty_new(H.ssys, ctfd, 0, &err);
	cr_assert_not_null(tracker, "type1 dirty source: %d", err);
	for (int i = 0; i < H.ndev; i++)
		H.devs[i].tracker = tracker;
	migrate_expect(attach, PRECOPY_TRACK_TRACKER);
	free_tracker();
}

Test(engine_container, type1_pinned_shared_tracker) { type1_run(1, 1); }
Test(engine_container, type1_iommu_backed_reports_all_mapped) { type1_run(0, 1); }
Test(engine_container, type1_devices_not_in_container_lose_pages) { type1_run(1, 0); }

/* iommufd: the devices on HWPTs with dirty tracking; shared: both on one
 * HWPT (one tracker), else one HWPT and one tracker each. */
static void iommufd_run(int shared, int attach)
{
	struct precopy_fake_iommufd *x;
	struct precopy_dirty_source *own[2] = { NULL, NULL };
	uint32_t hw[2];
	int fd, err;

	setup_nodma(2);
	fd = precopy_fake_iommufd_new(H.sfk, 0, &x);
	cr_assert_geq(fd, 0);
	for (int s = 0; s < 2; s++)
		cr_assert_eq(precopy_fake_iommufd_map(x, H.slots[s].gpa, H.slots[s].size), 0);
	for (int i = 0; i < 2; i++) {
		if (i == 0 || !shared)
			cr_assert_eq(precopy_fake_iommufd_hwpt_alloc(x, 1, 0, &hw[i]), 0);
		else
			hw[i] = hw[0];
		if (attach)
			cr_assert_eq(precopy_fake_iommufd_attach(x, hw[i], H.sdev[i]), 0);
		if (i == 0 || !shared) {
			own[i] = precopy_iommufd_dirty_new(H.ssys, fd, hw[i], 0, 0, &err);
			cr_assert_not_null(own[i], "iommufd dirty source: %d", err);
		}
		H.devs[i].tracker = own[shared ? 0 : i];
	}
	migrate_expect(attach, PRECOPY_TRACK_TRACKER);
	precopy_engine_free(H.src);
	H.src = NULL;
	precopy_dirty_source_free(own[0]);
	precopy_dirty_source_free(own[1]);
}

Test(engine_container, iommufd_shared_hwpt) { iommufd_run(1, 1); }
Test(engine_container, iommufd_hwpt_per_device) { iommufd_run(0, 1); }
Test(engine_container, iommufd_devices_not_attached_lose_pages) { iommufd_run(1, 0); }

/* One device with its own DMA logging, one behind an iommufd HWPT that has
 * no DMA logging of its own (PRECOPY_ENGINE_DEV_NO_DMA_LOG set on a device
 * that could log: the engine must not use its log). */
Test(engine_container, dma_log_and_tracker_mixed)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_fake_iommufd *x;
	struct precopy_engine_dev_info di;
	uint32_t hw;
	int fd, err;

	h_setup(2, flags, 1);
	fd = precopy_fake_iommufd_new(H.sfk, 0, &x);
	cr_assert_geq(fd, 0);
	for (int s = 0; s < 2; s++)
		cr_assert_eq(precopy_fake_iommufd_map(x, H.slots[s].gpa, H.slots[s].size), 0);
	cr_assert_eq(precopy_fake_iommufd_hwpt_alloc(x, 1, 0, &hw), 0);
	cr_assert_eq(precopy_fake_iommufd_attach(x, hw, H.sdev[1]), 0);
	tracker = precopy_iommufd_dirty_new(H.ssys, fd, hw, 0, 0, &err);
	cr_assert_not_null(tracker, "%d", err);
	H.devs[1].tracker = tracker;
	H.devs[1].flags = PRECOPY_ENGINE_DEV_NO_DMA_LOG;
	h_engines();
	{
		struct run_result rr;
		int r = run_migration(200, &rr);
		cr_assert_eq(r, 0, "migration: %d: %s", r, precopy_engine_strerror(H.src));
	}
	cr_assert(ram_equal());
	cr_assert_eq(precopy_engine_device_info(H.src, 0, &di), 0);
	cr_assert_eq(di.tracking, PRECOPY_TRACK_DMA_LOG);
	cr_assert_eq(precopy_engine_device_info(H.src, 1, &di), 0);
	cr_assert_eq(di.tracking, PRECOPY_TRACK_TRACKER);
	free_tracker();
}

/* A shared tracker's report failure fails the migration once, names a
 * device, and the tracker is stopped; a new migration works. */
Test(engine_container, shared_tracker_report_fault)
{
	struct precopy_fake_type1_cfg tc = { 0 };
	struct precopy_fake_type1 *ct;
	/* VFIO_IOMMU_DIRTY_PAGES and VFIO_DEVICE_FEATURE are one ioctl number
	 * (VFIO_BASE + 17): calls 1-2 read the device states at start, 3 is the
	 * tracker's START, 4-5 RUNNING -> PRE_COPY, 6 the first GET_BITMAP */
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_IOMMU_DIRTY_PAGES, .nth = 6, .err = EIO };
	struct run_result rr;
	int ctfd, err, r;

	setup_nodma(2);
	ctfd = precopy_fake_type1_new(H.sfk, &tc, &ct);
	cr_assert_geq(ctfd, 0);
	type1_map(ctfd);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(precopy_fake_type1_attach(ct, H.sdev[i], 1), 0);
	tracker = precopy_vfio_type1_dirty_new(H.ssys, ctfd, 0, &err);
	cr_assert_not_null(tracker);
	H.devs[0].tracker = H.devs[1].tracker = tracker;
	h_engines();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &f), 0);
	h_relink();
	r = run_migration(200, &rr);
	cr_assert_eq(r, -EIO, "got %d: %s", r, precopy_engine_strerror(H.src));
	cr_assert(strstr(precopy_engine_strerror(H.src), "dirty log report"), "%s", precopy_engine_strerror(H.src));
	assert_all_running();
	precopy_fake_fault_clear(H.sfk);
	h_migrate_ok();
	free_tracker();
}
