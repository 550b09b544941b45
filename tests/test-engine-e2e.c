/* SPDX-License-Identifier: MIT */
/* End to end over the fake kernel: a source and a destination engine over
 * socketpairs, 1-4 devices, guest RAM written by a synthetic workload and
 * by device DMA. At the end the destination RAM equals the source RAM byte
 * for byte and every destination device loaded exactly its source's state.
 * The same run with device DMA logs that report nothing must fail the
 * comparison: the merge of device logs is what carries DMA-only pages. */
#include <stdio.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_e2e, .fini = fini);

static void check_devices(void)
{
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats s, d;
		uint32_t st;
		uint64_t bytes;

		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_eq(s.state, VFIO_DEVICE_STATE_STOP, "source device %d in %s", i,
			     precopy_vfio_state_name(s.state));
		cr_assert_eq(d.state, VFIO_DEVICE_STATE_RUNNING);
		cr_assert_eq(d.resume_ok, 1, "device %d did not load a valid state", i);
		cr_assert_gt(s.bytes_out, 0);
		cr_assert_eq(d.bytes_in, s.bytes_out, "device %d: %llu bytes loaded, %llu saved", i,
			     (unsigned long long)d.bytes_in, (unsigned long long)s.bytes_out);
		cr_assert_eq(precopy_dest_device_state(H.dst, (uint32_t)i, &st, &bytes), 0);
		cr_assert_eq(bytes, s.bytes_out);
		cr_assert_eq(s.logging, 0, "DMA logging still on after complete");
	}
}

static void migrate_ok(int ndev, int threaded)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF };
	struct run_result rr;
	struct precopy_engine_stats st;
	int r;

	h_setup(ndev, flags, 1);
	h_engines();
	H.threaded = threaded;
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "migration: %d: %s / %s", r, precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	cr_assert_eq(rr.switched_before_ack, 0);
	cr_assert(ram_equal(), "destination RAM differs from source RAM");
	check_devices();
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert_eq(st.phase, PRECOPY_ENGINE_DONE);
	cr_assert_geq(st.iterations, 1);
	for (int i = 0; i < ndev; i++) {
		struct precopy_engine_dev_info di;
		cr_assert_eq(precopy_engine_device_info(H.src, (uint32_t)i, &di), 0);
		cr_assert_eq(di.tracking, PRECOPY_TRACK_DMA_LOG);
		cr_assert_eq(di.initial_sent, 1);
		cr_assert_eq(di.initial_bytes, 0);
		/* the fake device's arcs take 1000 ns of virtual time each: the
		 * last measurement (STOP_COPY -> STOP) says so, and the estimate
		 * moved from the configured 500 toward it */
		cr_assert_eq(di.last_transition_ns, 1000);
		cr_assert(di.transition_ns > 900 && di.transition_ns <= 1000, "estimate %llu",
			  (unsigned long long)di.transition_ns);
	}
}

/* The VMM asks the engine after every few pages, not only after a pass:
 * the engine syncs in the middle of passes (its exact query near the
 * limit) and may switch over with pages of the pass still unsent; the
 * destination RAM must still equal the source's. */
static void migrate_midpass(int ndev, uint64_t window, int vary_policy)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF };
	struct run_result rr;
	int r;

	h_setup(ndev, flags, 1);
	h_engines();
	H.window_pages = window;
	H.vary_policy = vary_policy;
	r = run_migration(20000, &rr);
	cr_assert_eq(r, 0, "window %llu: migration: %d after %d iterations, last action %s: %s / %s",
		     (unsigned long long)window, r, rr.iterations, precopy_action_name(rr.last_action), precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	fprintf(stderr, "window %llu: %d iterations\n", (unsigned long long)window, rr.iterations);
	cr_assert_eq(rr.switched_before_ack, 0);
	cr_assert(ram_equal(), "destination RAM differs from source RAM (window %llu pages)",
		  (unsigned long long)window);
	check_devices();
}

Test(engine_e2e, one_device) { migrate_ok(1, 0); }
Test(engine_e2e, mid_pass_windows_lose_nothing)
{
	static const uint64_t windows[] = { 3, 16, 64 };

	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
		migrate_midpass(2, windows[i], 0);
		h_teardown();
	}
}
/* The VMM changes the policy between questions (precopy_engine_set_policy:
 * here a fixed cost drawn anew each time, above the limit half the time),
 * so the answer flips between CONTINUE and SWITCHOVER in the middle of
 * passes, after exact queries that kept the cursor: no page is lost. */
Test(engine_e2e, policy_changed_mid_pass_loses_nothing)
{
	static const uint64_t windows[] = { 3, 64 };

	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
		migrate_midpass(2, windows[i], 1);
		h_teardown();
	}
}
Test(engine_e2e, two_devices) { migrate_ok(2, 0); }
Test(engine_e2e, four_devices_threaded_destination) { migrate_ok(4, 1); }

Test(engine_e2e, ignoring_device_dma_logs_loses_pages)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct run_result rr;
	int r;

	h_setup(2, flags, 1);
	H.cfg.sys = &H.lying; /* REPORT returns an empty bitmap */
	h_engines();
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "migration: %d: %s", r, precopy_engine_strerror(H.src));
	cr_assert_not(ram_equal(), "pages written only by device DMA arrived without the device logs");
	cr_assert(!memcmp(H.smem[1], H.dmem[1], SLOT1_PAGES * PS), "guest-only slot must still match");
}

Test(engine_e2e, device_without_dma_logging_marks_all_ram)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct run_result rr;
	struct precopy_engine_dev_info di;
	int r;

	h_setup(1, flags, 0);
	/* all 192 pages are pending after every sync: 786 us at 1 GB/s */
	H.cfg.policy.downtime_limit_ns = 2000000;
	h_engines();
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "migration: %d: %s", r, precopy_engine_strerror(H.src));
	cr_assert(ram_equal());
	cr_assert_eq(precopy_engine_device_info(H.src, 0, &di), 0);
	cr_assert_eq(di.tracking, PRECOPY_TRACK_ALL);
}

/* ---- the engine's sync against concurrent setters --------------------------- */

#define RAM_PAGES (SLOT0_PAGES + SLOT1_PAGES)
#define ROUNDS 400

static _Atomic int set_round, set_done; /* the round the setters may run; setters done with it */

static uint64_t ram_page(uint64_t k) /* k-th page of RAM, as a log bit */
{
	return k < SLOT0_PAGES ? k : SLOT1_GPA / PS + (k - SLOT0_PAGES);
}

/* Setter i sets pages i, i + 2, i + 4, ... once each per round, in an order
 * that changes every round: the two setters share every word of the log. */
static void *setter_main(void *arg)
{
	uint64_t i = (uint64_t)(uintptr_t)arg, x = 0x9E3779B97F4A7C15ull * (i + 1);

	for (int r = 1; r <= ROUNDS; r++) {
		uint64_t start, step;

		while (atomic_load(&set_round) < r)
			sched_yield();
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		start = x % (RAM_PAGES / 2);
		step = (x >> 32) % (RAM_PAGES / 2) | 1;
		if (step % 3 == 0)
			step += 2; /* coprime with 96 = 2^5 * 3: a permutation */
		for (uint64_t k = 0; k < RAM_PAGES / 2; k++) {
			uint64_t page = ram_page(2 * ((start + k * step) % (RAM_PAGES / 2)) + i);
			cr_assert_eq(precopy_bitmap_set_atomic(&H.live, page), 1, "page %llu set twice",
				     (unsigned long long)page);
		}
		atomic_fetch_add(&set_done, 1);
	}
	return NULL;
}

/* Hand out everything pending into got (counting each page handed out).
 * Returns pages. */
static uint64_t hand_out(uint8_t *got)
{
	struct precopy_ram_run runs[8];
	uint64_t pages = 0;
	int64_t n;

	while ((n = precopy_engine_next_pages(H.src, runs, 8, 0)) > 0)
		for (int64_t i = 0; i < n; i++)
			for (uint64_t p = 0; p < runs[i].pages; p++) {
				got[(runs[i].gpa - SLOT0_GPA) / PS + p]++;
				pages++;
			}
	cr_assert_geq(n, 0);
	return pages;
}

/* Two setter threads (vCPUs' dirty logging) set pages in the live bitmap
 * with precopy_bitmap_set_atomic() while the engine syncs and hands out
 * pages. Each round every RAM page is set exactly once; after the setters
 * finish it, one more sync: each page must have been handed out exactly
 * once in the round (a set lost between the harvest's look and its clear,
 * or harvested twice, shows). Run under ThreadSanitizer by make tsan. */
Test(engine_e2e, sync_against_concurrent_setters)
{
	uint64_t flags[MAXDEV] = { 0 }, syncs = 0;
	uint8_t got[SPAN_PAGES];
	pthread_t t[2];
	int err;

	h_setup(0, flags, 1);
	H.src = precopy_engine_new(&H.cfg, &err); /* RAM only: no destination needed */
	cr_assert_not_null(H.src, "engine_new: %d", err);
	cr_assert_eq(precopy_engine_start(H.src), 0, "%s", precopy_engine_strerror(H.src));
	memset(got, 0, sizeof(got));
	cr_assert_eq(hand_out(got), RAM_PAGES, "the first pass hands out all RAM");
	atomic_store(&set_round, 0);
	atomic_store(&set_done, 0);
	for (uintptr_t i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, setter_main, (void *)i), 0);
	for (int r = 1; r <= ROUNDS; r++) {
		memset(got, 0, sizeof(got));
		atomic_store(&set_round, r);
		while (atomic_load(&set_done) < 2 * r) {
			cr_assert_geq(precopy_engine_sync(H.src), 0, "%s", precopy_engine_strerror(H.src));
			hand_out(got);
			syncs++;
		}
		cr_assert_geq(precopy_engine_sync(H.src), 0);
		hand_out(got);
		for (uint64_t k = 0; k < RAM_PAGES; k++)
			cr_assert_eq(got[ram_page(k)], 1, "round %d: page %llu handed out %u times", r,
				     (unsigned long long)ram_page(k), got[ram_page(k)]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_log_info("%d rounds of %u sets against %llu syncs", ROUNDS, RAM_PAGES, (unsigned long long)syncs);
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
}
