/* SPDX-License-Identifier: MIT */
/* bench-sim — precopy-sim at scale: the real engine over the fake kernel on
 * a virtual clock, with bitmaps of the simulated size.
 *
 * case=sim_1t: a 1 TiB guest of 4 KiB pages (a 32 MiB live bitmap, the
 * engine's 32 MiB RAM log), 4 devices with DMA logging at 64 KiB pages
 * (a 2 MiB tracker each, 4 MiB/s of 4 KiB DMA writes each, every one
 * dirtying a 64 KiB log page), over 100 Gbit/s, a guest writing 16 GiB/s into a
 * 2 GiB hot set (floor 172 ms) against a 100 ms limit: it cannot converge
 * and runs exactly 100 iterations (max_iterations, then cancel). Target: under 30 s on the
 * 2-core development machine.
 *
 * The limit printed beside it: one plain read pass over a 32 MiB bitmap
 * (the fastest vector loop of perf/lib, bench_limit_read) times the
 * iterations. Every iteration must at least look at the RAM bitmap once, so
 * this is a floor no simulator of this size can beat; the real work per
 * iteration is several passes (harvest, device-log merges, page hand-out)
 * plus the guest's page writes, so the ratio shows how many bitmap passes'
 * worth of time one iteration costs. The first iteration also carries the
 * whole first pass of guest writes (minutes of virtual time).
 *
 * SIM_DEV_PAGE=4096 (environment) tracks device DMA at 4 KiB instead, with
 * 50 MiB/s of DMA per device: 32 MiB trackers that the fake device scans
 * on every REPORT (1024 per device per sync), which then dominates (the
 * fake's tracker scan is memory-bound: about 4 x 32 MiB per sync).
 *
 * Options: the common ones (perf/lib/bench.h); --size sets the guest size
 * (default 1T), --reps the repetitions (default 1: one run is ~10-30 s). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bench.h"
#include "precopy/engine.h"
#include "../sim/simulator.h"

#define ITERS 100

/* The workload's page writes as plain stores: n bit sets at pseudo-random
 * pages of the hot set (words of the bitmap), the least any simulator of
 * this workload does. Returns the time in ns. */
static uint64_t store_floor(uint64_t *bm, uint64_t hot_words, uint64_t n)
{
	uint64_t x = 0x9E3779B97F4A7C15ull, t0 = bench_now_ns();

	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		bm[(x >> 6) % hot_words] |= 1ull << (x & 63);
	}
	bench_sink(bm[x % hot_words]);
	return bench_now_ns() - t0;
}

static void scenario(struct sim_scenario *sc, uint64_t memory)
{
	sim_scenario_init(sc);
	snprintf(sc->source, sizeof(sc->source), "bench sim_1t");
	sc->memory = memory;
	sc->page_size = 4096;
	sc->model = SIM_MODEL_HOTSET;
	sc->rate_Bps = 16ull << 30;
	sc->hot_size = 2ull << 30;
	if (sc->hot_size > memory / 4)
		sc->hot_size = memory / 4;
	sc->hot_fraction = 1.0;
	sc->bandwidth_Bps = 12500000000ull; /* 100 Gbit/s */
	sc->latency_ns = 1000000;
	sc->downtime_limit_ns = 100000000;
	sc->throttle_initial = 0;
	sc->max_iterations = ITERS;
	sc->timeout_action = PRECOPY_TIMEOUT_CANCEL;
	sc->ndevs = 4;
	for (uint32_t i = 0; i < 4; i++) {
		struct sim_device *d = &sc->devs[i];
		char name[16];

		snprintf(name, sizeof(name), "dev%u", i);
		sim_device_init(d, name);
		d->initial_bytes = 64ull << 20;
		d->stop_copy_bytes = 32ull << 20;
		d->dirty_rate_Bps = 0;
		d->dma_rate_Bps = getenv("SIM_DEV_PAGE") ? 50ull << 20 : 4ull << 20;
		d->page_size = getenv("SIM_DEV_PAGE") ? strtoull(getenv("SIM_DEV_PAGE"), NULL, 0) : 65536;
		d->max_ranges = 8;
	}
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_report rep;
	struct bench_samples t = { .n = 0 }, lim = { .n = 0 }, stores = { .n = 0 };
	uint64_t page_writes = 0;
	struct sim_scenario sc;
	uint64_t memory, words;
	uint64_t *bm;
	int r, bad = 0;

	r = bench_parse_opts(&o, argc, argv, "  --size BYTES   guest size (default 1T)\n", 1);
	if (r)
		return r > 0 ? 0 : 2;
	if (o.aa) {
		fprintf(stderr, "%s: --aa is not supported here (bench-bitmap has it)\n", argv[0]);
		return 2;
	}
	if (o.list) {
		printf("sim_1t  1 TiB guest, 4 KiB pages, 4 devices, 100 iterations of precopy-sim\n");
		return 0;
	}
	if (!bench_case_selected(&o, "sim_1t"))
		return 0;
	memory = o.size_bytes ? o.size_bytes : 1ull << 40;
	memory &= ~((64ull << 12) - 1);
	scenario(&sc, memory);
	words = memory / 4096 / 64;
	bm = aligned_alloc(4096, words * 8);
	if (!bm) {
		fprintf(stderr, "bench-sim: out of memory\n");
		return 1;
	}
	for (uint64_t i = 0; i < words; i++)
		bm[i] = i * 0x9E3779B97F4A7C15ull;
	bench_report_begin(&rep, "bench-sim", &o,
			   "limit = one plain read pass over the RAM bitmap per iteration + the workload's page writes as "
			   "plain stores (a floor; target: at most 3x it)");
	for (int rep_i = 0; rep_i < o.reps; rep_i++) {
		struct sim_result res;
		uint64_t t0, best = UINT64_MAX;

		if (!o.no_limit) {
			for (int k = 0; k < 5; k++) {
				enum bench_isa isa;
				for (isa = 0; isa < BENCH_ISA_COUNT; isa++) {
					if (!bench_isa_supported(isa))
						continue;
					t0 = bench_now_ns();
					bench_sink(bench_limit_read(isa, bm, words));
					t0 = bench_now_ns() - t0;
					if (t0 < best)
						best = t0;
				}
			}
			bench_samples_add(&lim, best * ITERS);
		}
		t0 = bench_now_ns();
		r = sim_run(&sc, &res, NULL, NULL);
		bench_samples_add(&t, bench_now_ns() - t0);
		if (!o.no_limit && r == 0) {
			uint64_t writes = 0, hot_words = sc.hot_size / 4096 / 64;

			for (size_t k = 0; k < res.niters; k++)
				writes += res.iters[k].page_writes;
			page_writes = writes;
			bench_samples_add(&stores, store_floor(bm, hot_words ? hot_words : 1, writes));
		}
		if (r < 0 || res.outcome != SIM_CANCELLED || res.iterations != ITERS) {
			fprintf(stderr, "bench-sim: run: %d, outcome %s, %llu iterations: %s\n", r,
				sim_outcome_name(res.outcome), (unsigned long long)res.iterations, res.error);
			bad = 1;
		}
		if (rep_i == o.reps - 1 || bad) {
			struct bench_line l;
			double s = bench_samples_median(&t) / 1e9,
			       ls = o.no_limit ? 0 : (bench_samples_median(&lim) + bench_samples_median(&stores)) / 1e9;
			char buf[64];

			/* "gbps": RAM bitmap bytes per iteration x iterations / time */
			/* ratio = floor time / run time (gbps over the same bytes) */
			bench_line_init(&l, "sim_1t", bench_gbps(words * 8 * ITERS, s * 1e9),
					o.no_limit ? 0 : bench_gbps(words * 8 * ITERS, ls * 1e9));
			bench_line_num(&l, "s", "%.2f", s);
			bench_line_num(&l, "limit_s", "%.3f", ls);
			bench_line_num(&l, "read_floor_s", "%.3f", o.no_limit ? 0 : bench_samples_median(&lim) / 1e9);
			bench_line_num(&l, "store_floor_s", "%.3f", o.no_limit ? 0 : bench_samples_median(&stores) / 1e9);
			bench_line_int(&l, "page_writes", (int64_t)page_writes);
			bench_line_num(&l, "x_floor", "%.1f", ls > 0 ? s / ls : 0);
			bench_line_str(&l, "target", "x_floor<=3");
			bench_line_str(&l, "met", ls > 0 && s <= 3 * ls ? "yes" : "no");
			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(memory >> 30));
			bench_line_str(&l, "guest_gib", buf);
			bench_line_int(&l, "iterations", (int64_t)res.iterations);
			bench_line_num(&l, "ms_per_iter", "%.1f", s * 1000 / ITERS);
			bench_line_num(&l, "virtual_s", "%.1f", res.total_ns / 1e9);
			bench_line_int(&l, "ram_gib_sent", (int64_t)(res.ram_bytes >> 30));
			bench_line_int(&l, "dev_mib_sent", (int64_t)(res.device_bytes >> 20));
			bench_line_str(&l, "check", bad ? "FAIL" : "ok");
			bench_report_line(&rep, &l);
		}
		sim_result_release(&res);
		if (bad)
			break;
	}
	bench_report_end(&rep);
	free(bm);
	return bad;
}
