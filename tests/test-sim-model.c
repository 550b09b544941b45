/* SPDX-License-Identifier: MIT */
/* precopy-sim against the models it must follow: the geometric series of a
 * sequential workload (round i sends M * rho^i), the expected count of
 * distinct pages under uniform random writes (N (1 - (1 - 1/N)^k)), no
 * convergence at rho >= 1 (the timeout action ends it), the downtime floor of
 * a hot set (W / bandwidth: a lower limit is reported as a stall early),
 * switchover-ack moving the destination's load out of the downtime, and
 * determinism. Scenarios are built in code and scaled down (1-4 GiB guests)
 * so the suite takes seconds. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/engine.h"
#include "../sim/simulator.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define MS 1000000ull
#define S 1000000000ull

static struct sim_scenario base(uint64_t memory, uint64_t bw, uint64_t rate, int model)
{
	struct sim_scenario sc;

	sim_scenario_init(&sc);
	snprintf(sc.source, sizeof(sc.source), "test");
	sc.memory = memory;
	sc.bandwidth_Bps = bw;
	sc.rate_Bps = rate;
	sc.model = model;
	sc.latency_ns = 0;
	sc.throttle_initial = 0; /* the pure model: no throttling */
	sc.timeout_ns = 120 * S;
	sc.window_ns = 0; /* whole passes: the model's rounds */
	return sc;
}

static void run_ok(const struct sim_scenario *sc, struct sim_result *r)
{
	int e = sim_run(sc, r, NULL, NULL);
	cr_assert_eq(e, 0, "sim_run: %d: %s", e, r->error);
	cr_assert_neq(r->outcome, SIM_FAILED, "run failed: %s", r->error);
}

/* Passes: iterations summed until one ends its pass (a mid-pass decision
 * ends an iteration, not the pass). writes[i] are the guest's page writes
 * during pass i. Returns how many. */
static size_t passes(const struct sim_result *r, double *bytes, double *writes, size_t max)
{
	size_t n = 0;
	double b = 0, w = 0;

	for (size_t i = 0; i < r->niters && n < max; i++) {
		b += (double)r->iters[i].ram_bytes;
		w += (double)r->iters[i].page_writes;
		if (r->iters[i].midpass)
			continue;
		bytes[n] = b;
		writes[n++] = w;
		b = w = 0;
	}
	return n;
}

Test(sim_model, sequential_follows_the_geometric_series)
{
	/* M = 4 GiB, bandwidth 1 GiB/s, 512 MiB/s of distinct pages: rho = 0.5 */
	struct sim_scenario sc = base(4 * GiB, GiB, GiB / 2, SIM_MODEL_SEQUENTIAL);
	struct sim_result r;
	double worst = 0, bytes[64], writes[64];
	size_t checked = 0, np;

	sc.downtime_limit_ns = 10 * MS;
	sc.fixed_downtime_ns = 1 * MS;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	np = passes(&r, bytes, writes, 64);
	for (size_t i = 0; i < np; i++) {
		double want = (double)sc.memory * pow(0.5, (double)i), got = bytes[i], rel;

		if (want < 32.0 * MiB) /* beyond: rounds shorter than the 10 ms iteration floor */
			break;
		rel = fabs(got - want) / want;
		worst = fmax(worst, rel);
		cr_assert_lt(rel, 0.02, "pass %zu sent %.0f bytes, the model says %.0f (%.3f%%)", i, got, want, rel * 100);
		checked++;
	}
	cr_assert_geq(checked, 7, "only %zu passes checked", checked);
	fprintf(stderr, "sim_model: geometric: %zu passes, worst relative error %.4f%%\n", checked, worst * 100);
	sim_result_release(&r);
}

Test(sim_model, uniform_writes_leave_the_expected_distinct_pages)
{
	/* N = 262144 pages, writes at 0.8 x bandwidth */
	struct sim_scenario sc = base(GiB, GiB, 4 * GiB / 5, SIM_MODEL_UNIFORM);
	struct sim_result r;
	double n = (double)(sc.memory / sc.page_size), worst = 0, bytes[256], writes[256];
	size_t checked = 0, np;

	sc.downtime_limit_ns = 20 * MS;
	sc.fixed_downtime_ns = 1 * MS;
	sc.seed = 7;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	np = passes(&r, bytes, writes, 256);
	for (size_t i = 0; i + 1 < np; i++) {
		double k = writes[i], want = n * (1.0 - pow(1.0 - 1.0 / n, k));
		double got = bytes[i + 1] / (double)sc.page_size, rel;

		if (want < 10000) /* a few hundred pages of random noise is no model error */
			break;
		rel = fabs(got - want) / want;
		worst = fmax(worst, rel);
		cr_assert_lt(rel, 0.02, "pass %zu: %.0f writes left %.0f distinct pages, the model says %.0f", i + 1, k, got,
			     want);
		checked++;
	}
	cr_assert_geq(checked, 3, "only %zu passes checked", checked);
	fprintf(stderr, "sim_model: uniform: %zu passes, worst relative error %.4f%%\n", checked, worst * 100);
	sim_result_release(&r);
}

static void rho_above_one(uint32_t action, int outcome)
{
	struct sim_scenario sc = base(GiB, GiB, 3 * GiB, SIM_MODEL_UNIFORM);
	struct sim_result r;

	sc.timeout_ns = 20 * S;
	sc.timeout_action = action;
	sc.window_ns = 100 * MS; /* the engine asked inside passes too */
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, outcome, "outcome %s", sim_outcome_name(r.outcome));
	cr_assert_geq(r.total_ns, sc.timeout_ns, "ended at %.3f s, before the timeout", r.total_ns / 1e9);
	for (size_t i = 0; i < r.niters; i++)
		cr_assert(r.iters[i].expected_downtime_ns > sc.downtime_limit_ns, "iteration %zu met the limit", i + 1);
	cr_assert_geq(r.stalled_at_ns, 0, "no stall reported");
	cr_assert_lt((uint64_t)r.stalled_at_ns, sc.timeout_ns / 2, "stall reported late: %.3f s",
		     r.stalled_at_ns / 1e9);
	if (outcome == SIM_FORCED) {
		cr_assert_gt(r.downtime_ns, sc.downtime_limit_ns);
		cr_assert_gt(r.final_ram_bytes, 0);
	}
	sim_result_release(&r);
}

Test(sim_model, rho_at_or_above_one_never_converges_cancel) { rho_above_one(PRECOPY_TIMEOUT_CANCEL, SIM_CANCELLED); }
Test(sim_model, rho_at_or_above_one_never_converges_force) { rho_above_one(PRECOPY_TIMEOUT_FORCE, SIM_FORCED); }

/* A 256 MiB hot set written at twice the bandwidth: the floor is W / bw. */
static struct sim_scenario hotset(uint64_t limit_ns)
{
	struct sim_scenario sc = base(2 * GiB, GiB, 2 * GiB, SIM_MODEL_HOTSET);

	sc.hot_size = 256 * MiB;
	sc.hot_fraction = 1.0;
	sc.window_ns = 100 * MS; /* the engine asked inside passes too */
	sc.downtime_limit_ns = limit_ns;
	sc.fixed_downtime_ns = 1 * MS;
	sc.timeout_ns = 60 * S;
	return sc;
}

Test(sim_model, hotset_below_the_floor_is_reported_early)
{
	struct sim_scenario sc = hotset(125 * MS); /* half the 250 ms floor */
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_CANCELLED);
	cr_assert_geq(r.stalled_at_ns, 0, "the engine never said the limit is out of reach");
	/* the first pass of 2 GiB takes 2 s; the stall must come within a few
	 * iterations of it, long before the 60 s timeout */
	cr_assert_lt((uint64_t)r.stalled_at_ns, 10 * S, "stall reported at %.3f s", r.stalled_at_ns / 1e9);
	for (size_t i = 1; i < r.niters; i++)
		cr_assert_geq(r.iters[i].expected_downtime_ns, 125 * MS, "iteration %zu below the floor", i + 1);
	fprintf(stderr, "sim_model: hot set floor 250 ms, limit 125 ms: stall reported at %.3f s, timeout 60 s\n",
		r.stalled_at_ns / 1e9);
	sim_result_release(&r);
}

Test(sim_model, hotset_above_the_floor_converges)
{
	struct sim_scenario sc = hotset(400 * MS);
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	cr_assert_leq(r.downtime_ns, 400 * MS, "downtime %.3f ms", r.downtime_ns / 1e6);
	/* what remains fits the limit at the link's bandwidth (the hot set and
	 * possibly cold pages the pass had not reached when it fitted) */
	cr_assert_leq(r.final_ram_bytes, (sc.downtime_limit_ns - sc.fixed_downtime_ns) * (sc.bandwidth_Bps / MiB) / 1000 * MiB / 1000000);
	sim_result_release(&r);
}

/* One device whose destination needs 1.5 s to load its initial data. */
static void ack_run(int pre_copy, struct sim_result *r)
{
	struct sim_scenario sc = base(GiB, GiB, 64 * MiB, SIM_MODEL_UNIFORM);
	struct sim_device *d = &sc.devs[0];

	sc.ndevs = 1;
	sim_device_init(d, "slowdest");
	d->pre_copy = pre_copy;
	d->initial_bytes = 64 * MiB;
	d->stop_copy_bytes = pre_copy ? 16 * MiB : 80 * MiB;
	d->dirty_rate_Bps = 4 * MiB;
	d->dest_load_ns = 1500 * MS;
	d->transition_ns = 1 * MS;
	sc.latency_ns = 1 * MS;
	run_ok(&sc, r);
	cr_assert_eq(r->outcome, SIM_SWITCHOVER, "outcome %s: %s", sim_outcome_name(r->outcome), r->error);
}

Test(sim_model, switchover_ack_moves_dest_load_out_of_the_downtime)
{
	struct sim_result with, without;

	ack_run(1, &with);
	ack_run(0, &without);
	/* with pre-copy: the ACK waits for the load, the downtime does not */
	cr_assert_gt(with.ack_at_ns, 1500 * MS, "ACK at %.3f ms, before the load could finish", with.ack_at_ns / 1e6);
	cr_assert_eq(with.dt_dest_load_ns, 0);
	cr_assert_leq(with.downtime_ns, with.downtime_limit_ns, "downtime %.3f ms", with.downtime_ns / 1e6);
	/* without: the whole state loads during the downtime */
	cr_assert_eq(without.ack_at_ns, 0, "no ACK without a pre-copy device");
	cr_assert_eq(without.dt_dest_load_ns, 1500 * MS);
	cr_assert_geq(without.downtime_ns, 1500 * MS);
	cr_assert_geq(without.downtime_ns - with.downtime_ns, 1400 * MS, "with %.3f ms, without %.3f ms",
		      with.downtime_ns / 1e6, without.downtime_ns / 1e6);
	fprintf(stderr, "sim_model: dest_load 1500 ms: downtime %.1f ms with switchover-ack, %.1f ms without\n",
		with.downtime_ns / 1e6, without.downtime_ns / 1e6);
	sim_result_release(&with);
	sim_result_release(&without);
}

static char *json_of(const struct sim_scenario *sc)
{
	struct sim_result r;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert(f);
	run_ok(sc, &r);
	cr_assert_eq(sim_report_json(f, sc, &r), 0);
	fclose(f);
	sim_result_release(&r);
	return buf;
}

Test(sim_model, same_scenario_and_seed_same_json)
{
	struct sim_scenario sc = base(GiB, GiB, 300 * MiB, SIM_MODEL_ZIPF);
	char *a, *b, *c;

	sc.ndevs = 2;
	sim_device_init(&sc.devs[0], "nic");
	sim_device_init(&sc.devs[1], "gpu");
	sc.devs[0].initial_bytes = 8 * MiB;
	sc.devs[0].stop_copy_bytes = 4 * MiB;
	sc.devs[0].dma_rate_Bps = 20 * MiB;
	sc.devs[1].initial_bytes = 32 * MiB;
	sc.devs[1].stop_copy_bytes = 8 * MiB;
	sc.devs[1].dma_rate_Bps = 40 * MiB;
	sc.throttle_initial = 20;
	sc.latency_ns = 1 * MS;
	a = json_of(&sc);
	b = json_of(&sc);
	cr_assert_str_eq(a, b);
	sc.seed = 2;
	c = json_of(&sc);
	cr_assert_str_neq(a, c, "another seed must give another run");
	free(a);
	free(b);
	free(c);
}

Test(sim_model, device_dma_reaches_the_ram_log)
{
	/* no guest writes at all: every page sent after the first pass was
	 * dirtied by device DMA, reported through its DMA log */
	struct sim_scenario sc = base(GiB, GiB, 0, SIM_MODEL_UNIFORM);
	struct sim_result r;
	uint64_t later = 0;

	sc.ndevs = 1;
	sim_device_init(&sc.devs[0], "dma");
	sc.devs[0].initial_bytes = 4 * MiB;
	sc.devs[0].stop_copy_bytes = 4 * MiB;
	sc.devs[0].dma_rate_Bps = 100 * MiB;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	for (size_t i = 1; i < r.niters; i++)
		later += r.iters[i].ram_bytes;
	later += r.final_ram_bytes;
	/* about 1 s of first pass at 100 MiB/s of DMA: tens of MiB re-sent */
	cr_assert_gt(later, 10 * MiB, "only %llu bytes re-sent", (unsigned long long)later);
	sim_result_release(&r);
}

Test(sim_model, converging_guest_reports_no_stall)
{
	/* rho = 0.3 of random pages: it converges in a few rounds and at no
	 * point is the limit out of reach */
	struct sim_scenario sc = base(4 * GiB, GiB, 3 * GiB / 10, SIM_MODEL_UNIFORM);
	struct sim_result r;

	sc.throttle_initial = 20;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER);
	for (size_t i = 0; i < r.niters; i++)
		cr_assert(r.iters[i].rho < 1.0, "iteration %zu: rho %.3f (dirty rate measured above bandwidth)", i + 1,
			  r.iters[i].rho);
	cr_assert_eq(r.stalled_at_ns, -1, "stall reported at %.3f s", r.stalled_at_ns / 1e9);
	cr_assert_eq(r.max_throttle, 0);
	sim_result_release(&r);
}

/* Uniform writes at 1.2x the bandwidth over 1 GiB, no throttling, 300 ms:
 * decided once per pass, the pending bytes settle near 330 MiB (the pages
 * a whole pass leaves dirty) and the run is cancelled at the timeout;
 * asked every 100 ms, the engine syncs when the pages still to send come
 * near the limit and finds about 218 MiB pending (a short interval leaves
 * fewer distinct pages, and those already pending count once): it
 * switches over within the limit. */
Test(sim_model, mid_pass_decisions_catch_what_passes_miss)
{
	struct sim_scenario sc = base(GiB, GiB, 6 * GiB / 5, SIM_MODEL_UNIFORM);
	struct sim_result pass, mid;

	sc.timeout_ns = 20 * S;
	run_ok(&sc, &pass);
	sc.window_ns = 100 * MS;
	run_ok(&sc, &mid);
	cr_assert_eq(pass.outcome, SIM_CANCELLED, "per pass: %s", sim_outcome_name(pass.outcome));
	cr_assert_eq(mid.outcome, SIM_SWITCHOVER, "mid-pass: %s (%s)", sim_outcome_name(mid.outcome), mid.error);
	cr_assert_leq(mid.downtime_ns, sc.downtime_limit_ns, "downtime %.1f ms", mid.downtime_ns / 1e6);
	cr_assert_lt(mid.total_ns, 10 * S, "took %.3f s", mid.total_ns / 1e9);
	fprintf(stderr, "sim_model: uniform 1.2x bw: per pass %s at %.1f s; mid-pass %s at %.2f s, downtime %.1f ms\n",
		sim_outcome_name(pass.outcome), pass.total_ns / 1e9, sim_outcome_name(mid.outcome), mid.total_ns / 1e9,
		mid.downtime_ns / 1e6);
	sim_result_release(&pass);
	sim_result_release(&mid);
}

/* The distinct pages n writes leave, expected from each page's chance
 * 1 - (1 - p_page)^n, against the workload on an empty bitmap: below N
 * writes one bitmap write per write, from N writes on the per-page path. */
static double expect_distinct(const struct sim_scenario *sc, uint64_t npages, uint64_t n)
{
	double e = 0, N = (double)npages;

	if (sc->model == SIM_MODEL_UNIFORM)
		return N * -expm1((double)n * log1p(-1.0 / N));
	if (sc->model == SIM_MODEL_HOTSET) {
		double hp = (double)(sc->hot_size / sc->page_size), f = sc->hot_fraction;
		double ph = f / hp + (1 - f) / N, pc = (1 - f) / N;
		return hp * -expm1((double)n * log1p(-ph)) + (N - hp) * -expm1((double)n * log1p(-pc));
	}
	double h = 0;
	for (uint64_t k = 1; k <= npages; k++)
		h += pow((double)k, -sc->zipf_s);
	for (uint64_t k = 1; k <= npages; k++)
		e += -expm1((double)n * log1p(-pow((double)k, -sc->zipf_s) / h));
	return e;
}

Test(sim_model, many_writes_per_step_match_the_model_and_cost_memory_not_rate)
{
	/* the second hot set takes every write: no write reaches the cold pages */
	static const int models[] = { SIM_MODEL_UNIFORM, SIM_MODEL_HOTSET, SIM_MODEL_HOTSET, SIM_MODEL_ZIPF };
	static const double per_page[] = { 0.5, 0.999, 1.0, 3.0, 20.0, 1e6 };
	const uint64_t npages = 1 << 16;

	for (size_t m = 0; m < 4; m++) {
		for (size_t j = 0; j < sizeof(per_page) / sizeof(per_page[0]); j++) {
			struct sim_scenario sc = base(npages * 4096, GiB, 0, models[m]);
			uint64_t n = (uint64_t)(per_page[j] * (double)npages);
			struct precopy_bitmap bm;
			struct sim_workload *w;
			double want, got, sd;
			int err;

			sc.hot_size = npages * 4096 / 16;
			sc.hot_fraction = m == 2 ? 1.0 : 0.9;
			sc.zipf_s = 1.1;
			sc.seed = 3 + j;
			sc.rate_Bps = n * 4096; /* n writes in one second */
			cr_assert_eq(precopy_bitmap_alloc(&bm, npages, PRECOPY_NUMA_LOCAL), 0);
			w = sim_workload_new(&sc, &bm, &err);
			cr_assert_not_null(w, "%d", err);
			cr_assert_eq(sim_workload_run(w, S), n);
			got = (double)precopy_bitmap_count(&bm);
			want = expect_distinct(&sc, npages, n);
			/* independent pages: the variance is at most want (1 - want / N) */
			sd = sqrt(want * (1 - want / (double)npages));
			cr_assert(fabs(got - want) <= 5 * sd + 2, "model %d, %g writes per page: %.0f distinct pages, %.1f expected",
				  models[m], per_page[j], got, want);
			sim_workload_free(w);
			precopy_bitmap_free(&bm);
		}
	}
}

Test(sim_model, huge_rate_on_a_small_vm_runs_in_seconds, .timeout = 60)
{
	/* 1 GiB written at 1T/s for 600 s of virtual time: 1.6e11 page writes,
	 * which took 5 minutes one bitmap write at a time */
	struct sim_scenario sc = base(GiB, GiB, SIM_MAX_RATE_BPS, SIM_MODEL_UNIFORM);
	struct sim_result r;

	sc.timeout_ns = 600 * S;
	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_CANCELLED);
	cr_assert_geq(r.total_ns, sc.timeout_ns);
	for (size_t i = 1; i < r.niters; i++)
		cr_assert_eq(r.iters[i].ram_bytes, sc.memory, "iteration %zu: not every page dirty", i + 1);
	cr_assert_lt(r.wall_s, 20.0, "took %.1f s", r.wall_s);
	sim_result_release(&r);
}

Test(sim_model, bandwidth_at_the_limit_is_measured_and_above_it_refused)
{
	struct sim_scenario sc = base(4 * GiB, SIM_MAX_BANDWIDTH_BPS, GiB, SIM_MODEL_UNIFORM);
	struct sim_result r;

	run_ok(&sc, &r);
	cr_assert_eq(r.outcome, SIM_SWITCHOVER, "%s (%s)", sim_outcome_name(r.outcome), r.error);
	cr_assert_gt(r.niters, 0);
	for (size_t i = 0; i < r.niters; i++)
		cr_assert_gt(r.iters[i].bandwidth_Bps, 0, "iteration %zu measured no bandwidth", i + 1);
	sim_result_release(&r);
	/* 2^60 B/s: every send took 0 ns and the converging VM was cancelled */
	sc.bandwidth_Bps = 1ull << 60;
	cr_assert_eq(sim_run(&sc, &r, NULL, NULL), -EINVAL);
	cr_assert(strstr(r.error, "[link] bandwidth: 1152921504606846976 B/s is above the limit"), "%s", r.error);
	sim_result_release(&r);
}

/* wp_fault: a write to a page whose bit is clear (protected again since the
 * last harvest) also costs the fault's time. 1000 pages swept at one write
 * per microsecond with a 4 us fault: the first sweep takes 5 ms (1000
 * writes), the next 5 ms find every page dirty (5000 writes); after a
 * harvest the pages fault again. Half the time under a 50% throttle. */
Test(sim_model, write_protection_faults_cost_guest_time)
{
	struct sim_scenario sc = base(4096 * 4096ull, GiB, 4096000000ull, SIM_MODEL_SEQUENTIAL);
	struct precopy_bitmap bm, snap;
	struct sim_workload *w;
	int err;

	sc.hot_size = 1000 * 4096ull; /* the sweep: pages 0..999 of 4096 */
	sc.wp_fault_ns = 4000;
	cr_assert_eq(sim_scenario_check(&sc, NULL, 0), 0);
	cr_assert_eq(precopy_bitmap_alloc(&bm, 4096, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&snap, 4096, PRECOPY_NUMA_LOCAL), 0);
	w = sim_workload_new(&sc, &bm, &err);
	cr_assert_not_null(w, "%d", err);
	cr_assert_eq(sim_workload_run(w, 5 * MS), 1000, "the first sweep: one fault per page");
	cr_assert_eq(precopy_bitmap_count(&bm), 1000);
	cr_assert_eq(precopy_bitmap_count_range(&bm, 1000, 4096 - 1000), 0, "wrote outside the swept range");
	cr_assert_eq(sim_workload_run(w, 10 * MS), 5000, "dirty pages take no fault");
	cr_assert_geq(precopy_bitmap_harvest(&bm, &snap), 0); /* the engine's sync */
	cr_assert_eq(sim_workload_run(w, 15 * MS), 1000, "after the harvest every page faults again");
	sim_workload_throttle(w, 50);
	cr_assert_eq(sim_workload_run(w, 25 * MS), 5000, "50%% throttle: 5 ms of writes in 10 ms");
	sim_workload_free(w);
	precopy_bitmap_free(&bm);
	precopy_bitmap_free(&snap);

	/* the check: sweep range within RAM, faults only where modelled */
	sc.hot_size = 8192 * 4096ull;
	cr_assert_lt(sim_scenario_check(&sc, NULL, 0), 0);
	sc.hot_size = 0;
	sc.model = SIM_MODEL_PHASES;
	cr_assert_lt(sim_scenario_check(&sc, NULL, 0), 0);
}
