/* SPDX-License-Identifier: MIT */
/* precopy_engine_forecast_begin/sample/end on the fake kernel: the counts
 * are the pages the guest and the devices dirtied in each interval, the
 * devices never leave RUNNING and their logging is stopped at the end,
 * a migration starts right after, misuse is refused with the errno the
 * header names, and a failing step is named and leaves nothing logging.
 * (Forecast against the migration that follows: tests/test-forecast.c,
 * forecast_engine.) */
#include <stdio.h>
#include <stdlib.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_forecast, .fini = fini);

static const struct precopy_engine_forecast_params params = {
	.bandwidth_Bps = 1000000000ull, .min_iteration_ns = 100000,
};

static int logging(int i)
{
	struct precopy_fake_vfio_stats st;

	precopy_fake_vfio_get_stats(H.sdev[i], &st);
	return st.logging;
}

static uint32_t state(int i)
{
	struct precopy_fake_vfio_stats st;

	precopy_fake_vfio_get_stats(H.sdev[i], &st);
	return st.state;
}

Test(engine_forecast, counts_what_was_dirtied_then_migrates)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_forecast f;
	struct precopy_engine_stats st;
	struct run_result rr;
	uint64_t arcs0[2];

	h_setup(2, flags, 1);
	h_engines();
	for (int i = 0; i < 2; i++) {
		struct precopy_fake_vfio_stats s;

		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		arcs0[i] = s.arcs;
	}
	guest_writes(20); /* before the window: not counted */
	cr_assert_eq(precopy_engine_forecast_begin(H.src), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(logging(0) && logging(1), "DMA logging on during the window");
	for (int k = 1; k <= 4; k++) {
		int64_t n;

		/* k distinct guest pages (slot 1, outside the devices' area) and
		 * one page of DMA per device (their own area) */
		for (int p = 0; p < k; p++)
			cr_assert_geq(precopy_bitmap_set_atomic(&H.live, SLOT1_GPA / PS + (uint64_t)(10 * k + p)), 0);
		for (int i = 0; i < 2; i++)
			cr_assert_geq(precopy_fake_vfio_dma_write(H.sdev[i], (DEV_DMA_FIRST + (uint64_t)(2 * k + i)) * PS,
								  PS, 1), 0);
		atomic_fetch_add(&vnow, 100000000ull << (k - 1));
		n = precopy_engine_forecast_sample(H.src);
		cr_assert_eq(n, k + 2, "interval %d: %lld pages, want %d", k, (long long)n, k + 2);
	}
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.phase, PRECOPY_ENGINE_IDLE, "no migration during the window");
	cr_assert_eq(precopy_engine_start(H.src), -EBUSY, "start while the window is open");
	cr_assert_eq(precopy_engine_forecast_begin(H.src), -EBUSY, "a second window");
	cr_assert_eq(precopy_engine_forecast_end(H.src, &params, NULL), -EINVAL);
	cr_assert_eq(precopy_engine_forecast_end(H.src, &params, &f), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(!logging(0) && !logging(1), "DMA logging stopped at the end");
	for (int i = 0; i < 2; i++) {
		struct precopy_fake_vfio_stats s;

		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		cr_assert_eq(s.arcs, arcs0[i], "device %d moved during the window", i);
		cr_assert_eq(state(i), VFIO_DEVICE_STATE_RUNNING);
	}
	/* a few pages per 100 ms on a 1.3 MiB guest at 1 GB/s: converges */
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_eq(f.end, PRECOPY_SWITCHOVER);
	cr_assert_gt(f.dirty_rate_Bps, 0);
	cr_assert_eq(precopy_engine_forecast_sample(H.src), -EBUSY, "closed");
	cr_assert_eq(precopy_engine_forecast_end(H.src, NULL, NULL), -EBUSY, "closed");
	/* the migration that follows */
	cr_assert_eq(run_migration(200, &rr), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert(ram_equal());
}

Test(engine_forecast, misuse_and_close_without_forecast)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct precopy_forecast f;

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_forecast_begin(NULL), -EINVAL);
	cr_assert_eq(precopy_engine_forecast_sample(NULL), -EINVAL);
	cr_assert_eq(precopy_engine_forecast_end(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(precopy_engine_forecast_sample(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_forecast_end(H.src, &params, &f), -EBUSY);
	cr_assert_eq(precopy_engine_forecast_begin(H.src), 0);
	/* no sample: precopy_forecast() refuses, the window is closed anyway */
	cr_assert_eq(precopy_engine_forecast_end(H.src, &params, &f), -EINVAL);
	cr_assert(strstr(precopy_engine_strerror(H.src), "forecast: no sample"), "%s", precopy_engine_strerror(H.src));
	cr_assert(!logging(0));
	cr_assert_eq(precopy_engine_forecast_begin(H.src), 0);
	for (int k = 0; k < PRECOPY_FORECAST_MAX_SAMPLES; k++) {
		atomic_fetch_add(&vnow, 1000000);
		cr_assert_geq(precopy_engine_forecast_sample(H.src), 0);
	}
	cr_assert_eq(precopy_engine_forecast_sample(H.src), -ENOSPC);
	cr_assert(logging(0), "the window stays open after -ENOSPC");
	cr_assert_eq(precopy_engine_forecast_end(H.src, NULL, NULL), 0);
	cr_assert(!logging(0));
	/* a migration is no window: begin refused while it runs */
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_forecast_begin(H.src), -EBUSY);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}

/* A device whose DMA logging will not start: begin names the step and the
 * device and leaves the other device's logging stopped; a report failing
 * at a sample closes the window. Free with a window open stops it too. */
Test(engine_forecast, failures_are_named_and_undone)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_fault start = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE, .match_feature = 1,
				       .feature = VFIO_DEVICE_FEATURE_DMA_LOGGING_START, .nth = 2, .err = EIO };
	struct precopy_fault report = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE, .match_feature = 1,
					.feature = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, .nth = 1, .err = EIO };

	h_setup(2, flags, 1);
	h_engines();
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &start), 0);
	cr_assert_eq(precopy_engine_forecast_begin(H.src), -EIO);
	cr_assert(strstr(precopy_engine_strerror(H.src), "device 11") &&
		  strstr(precopy_engine_strerror(H.src), "DMA logging start"), "%s", precopy_engine_strerror(H.src));
	cr_assert(!logging(0) && !logging(1), "the first device's logging stopped again");
	precopy_fake_fault_clear(H.sfk);
	cr_assert_eq(precopy_engine_forecast_begin(H.src), 0, "%s", precopy_engine_strerror(H.src));
	cr_assert_eq(precopy_fake_fault_add(H.sfk, &report), 0);
	atomic_fetch_add(&vnow, 1000000);
	cr_assert_eq(precopy_engine_forecast_sample(H.src), -EIO);
	cr_assert(strstr(precopy_engine_strerror(H.src), "dirty log report"), "%s", precopy_engine_strerror(H.src));
	cr_assert(!logging(0) && !logging(1), "a failed sample closes the window");
	cr_assert_eq(precopy_engine_forecast_end(H.src, NULL, NULL), -EBUSY);
	precopy_fake_fault_clear(H.sfk);
	cr_assert_eq(precopy_engine_forecast_begin(H.src), 0);
	cr_assert(logging(0) && logging(1));
	precopy_engine_free(H.src);
	H.src = NULL;
	cr_assert(!logging(0) && !logging(1), "free closes an open window");
}
