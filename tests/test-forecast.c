/* SPDX-License-Identifier: MIT */
/* precopy_forecast() (estimator/forecast.c): cases computed by hand (fits
 * at once, converges in N passes, never converges without a throttle and
 * converges with one, device floor, working-set floor, the fitted W), and
 * the forecast against the simulated migration that follows it on steady
 * workloads (uniform, hot set, sequential, Zipf; uniform throttled; the
 * shipped nonconverging.ini and gpu.ini): same outcome, total time within
 * 20% (issue 18); a throttled sweep: the same outcome only. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "precopy/estimator.h"
#include "../sim/simulator.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define MS 1000000ull
#define S 1000000000ull
#define PS 4096ull

static struct precopy_policy pol(uint64_t limit_ns, uint32_t throttle_initial, uint64_t timeout_ns)
{
	struct precopy_policy p;

	precopy_policy_defaults(&p);
	p.downtime_limit_ns = limit_ns;
	p.throttle_initial = throttle_initial;
	p.throttle_increment = throttle_initial ? 10 : 0;
	p.timeout_ns = timeout_ns;
	return p;
}

/* samples of a guest dirtying `rate` bytes/s of distinct pages, linear (no
 * saturation) up to `w` bytes */
static void linear(struct precopy_forecast_sample *s, uint64_t rate, uint64_t w)
{
	static const uint64_t ms[4] = { 100, 200, 400, 800 };

	for (int i = 0; i < 4; i++) {
		uint64_t b = rate / 1000 * ms[i];

		s[i].interval_ns = ms[i] * MS;
		s[i].dirty_pages = (b < w ? b : w) / PS;
	}
}

static struct precopy_forecast_input input(const struct precopy_forecast_sample *s, uint64_t ram, uint64_t bw)
{
	struct precopy_forecast_input in;

	memset(&in, 0, sizeof(in));
	in.ram_bytes = ram;
	in.page_size = PS;
	in.samples = s;
	in.nsamples = 4;
	in.bandwidth_Bps = bw;
	return in;
}

static void near(double got, double want, double tol, const char *what)
{
	cr_assert(fabs(got - want) <= tol * want, "%s: %.6g, expected %.6g (+-%.0f%%)", what, got, want, tol * 100);
}

Test(forecast, rejects_bad_input)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(300 * MS, 0, 0);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 0, 0);
	in = input(s, GiB, GiB);
	cr_assert_eq(precopy_forecast(NULL, &in, &f), -EINVAL);
	cr_assert_eq(precopy_forecast(&p, NULL, &f), -EINVAL);
	cr_assert_eq(precopy_forecast(&p, &in, NULL), -EINVAL);
	in.bandwidth_Bps = 0;
	cr_assert_eq(precopy_forecast(&p, &in, &f), -EINVAL);
	in = input(s, GiB, GiB);
	in.nsamples = 0;
	cr_assert_eq(precopy_forecast(&p, &in, &f), -EINVAL);
	in = input(s, GiB, GiB);
	for (int i = 0; i < 4; i++)
		s[i].interval_ns = 0;
	cr_assert_eq(precopy_forecast(&p, &in, &f), -EINVAL, "every interval 0");
	linear(s, 0, 0);
	p.downtime_limit_ns = 0;
	cr_assert_eq(precopy_forecast(&p, &in, &f), -EINVAL, "bad policy");
}

/* 1 GiB at 1 GiB/s, nothing dirtied: one pass of 1 s, then 5 ms fixed. */
Test(forecast, fits_at_once)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(300 * MS, 20, 0);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 0, 0);
	in = input(s, GiB, GiB);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES);
	cr_assert_eq(f.end, PRECOPY_SWITCHOVER);
	cr_assert_eq(f.iterations, 1);
	cr_assert_eq(f.first_pass_ns, 1 * S);
	cr_assert_eq(f.downtime_ns, 5 * MS);
	cr_assert_eq(f.total_ns, 1 * S + 5 * MS);
	cr_assert_eq(f.throttle, 0);
	cr_assert_eq(f.floor_ns, 0);
	cr_assert_eq(f.device_floor_ns, 5 * MS);
	cr_assert_str_eq(precopy_forecast_outcome_name(f.outcome), "converges");
}

/* 1 GiB at 1 GiB/s, 256 MiB/s dirtied, no saturation, 100 ms limit:
 * pass 0 takes 1 s and leaves 256 MiB (250 ms + 5 ms > 100 ms); pass 1
 * takes 250 ms and leaves 64 MiB (62.5 ms + 5 ms): switchover after 2
 * passes, 1.25 s + 67.5 ms. */
Test(forecast, converges_in_two_passes)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(100 * MS, 20, 0);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 256 * MiB, GiB);
	in = input(s, GiB, GiB);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_eq(f.iterations, 2);
	near((double)f.precopy_ns, 1.25e9, 0.001, "pre-copy time");
	near((double)f.downtime_ns, 67.5e6, 0.001, "downtime");
	near((double)f.total_ns, 1.3175e9, 0.001, "total");
	near((double)f.dirty_rate_Bps, 256.0 * MiB, 0.001, "dirty rate");
	cr_assert_eq(f.working_set_bytes, GiB, "no saturation seen: all RAM");
	cr_assert_eq(f.throttle, 0, "dirtied 1/4 of sent: no period outpaces");
	cr_assert_eq(f.stalled_at_ns, 0);

	/* asked every 50 ms inside passes: the engine's syncs near the end
	 * of pass 1 only shorten it (pages sent after a sync are dirty
	 * again only if written after), never lengthen it */
	in.check_ns = 50 * MS;
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES);
	cr_assert_leq(f.precopy_ns, 1250 * MS);
	cr_assert_leq(f.downtime_ns, 100 * MS);
}

/* Twice the bandwidth dirtied, throttle off: each pass leaves all RAM
 * dirty (1 GiB, 1 s at 1 GiB/s): the working-set floor of 1 s + 5 ms; the
 * 30 s timeout cancels. With the throttle on it converges, throttled
 * above 50% (below that the guest still outpaces the link). */
Test(forecast, never_converges_without_throttle)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(300 * MS, 0, 30 * S);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 2 * GiB, GiB);
	in = input(s, GiB, GiB);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_WORKING_SET, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_eq(f.end, PRECOPY_ABORT);
	cr_assert_eq(f.floor_bytes, GiB);
	near((double)f.floor_ns, 1.005e9, 0.001, "floor");
	cr_assert_geq(f.total_ns, 30 * S);
	cr_assert_leq(f.total_ns, 31 * S + 5 * MS, "the first decision after the timeout");
	cr_assert_gt(f.stalled_at_ns, 0);
	cr_assert_eq(f.throttle, 0);
	cr_assert_str_eq(precopy_forecast_outcome_name(f.outcome), "working-set floor");

	p.timeout_action = PRECOPY_TIMEOUT_FORCE;
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.end, PRECOPY_FORCE_SWITCHOVER);
	cr_assert_eq(f.total_ns, f.precopy_ns + f.downtime_ns);

	p = pol(300 * MS, 20, 0);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_geq(f.throttle, 60, "throttle %u%%", f.throttle);
	cr_assert_geq(f.throttle_at_ns, 2 * S, "two periods first");
	cr_assert_leq(f.downtime_ns, 300 * MS);

	/* no timeout, no throttle: never ends */
	p = pol(300 * MS, 0, 0);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.end, PRECOPY_CONTINUE);
	cr_assert_eq(f.total_ns, PRECOPY_UNBOUNDED);
}

/* A device with 1 GiB of stop-copy state at 1 GiB/s, 2 x 10 ms of
 * transitions: a floor of 1 s + 20 ms + 5 ms above a 300 ms limit, with a
 * quiet guest and the throttle on: never throttled, the timeout cancels.
 * The same device with 200 MiB fits: 195.3 ms + 25 ms. */
Test(forecast, device_floor)
{
	struct precopy_forecast_sample s[4];
	struct precopy_device_status dev = { .stop_copy_bytes = GiB, .stop_copy_known = 1, .transition_ns = 20 * MS };
	struct precopy_policy p = pol(300 * MS, 20, 20 * S);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 2 * GiB, GiB);
	in = input(s, GiB, GiB);
	in.devs = &dev;
	in.ndevs = 1;
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_DEVICE_FLOOR, "%s", precopy_forecast_outcome_name(f.outcome));
	near((double)f.floor_ns, 1.025e9, 0.001, "floor");
	cr_assert_eq(f.device_floor_ns, f.floor_ns);
	cr_assert_eq(f.throttle, 0, "a throttle cannot lower a device floor");
	cr_assert_eq(f.end, PRECOPY_ABORT);
	cr_assert_eq(f.stalled_at_ns, 1 * S, "stall at the first decision");

	/* a quiet guest, no least iteration: nothing to send after pass 0,
	 * the forecast still ends, at the timeout */
	linear(s, 0, 0);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_DEVICE_FLOOR);
	cr_assert_eq(f.end, PRECOPY_ABORT);
	cr_assert_eq(f.total_ns, 20 * S);
	in.min_iteration_ns = 10 * MS; /* the same with empty 10 ms passes */
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_DEVICE_FLOOR);
	near((double)f.floor_ns, 1.025e9, 0.001, "floor");
	in.min_iteration_ns = 0;

	dev.stop_copy_bytes = 200 * MiB;
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES);
	near((double)f.downtime_ns, 200.0 / 1024 * 1e9 + 25e6, 0.001, "downtime");
	cr_assert_eq(f.total_ns, 1 * S + f.downtime_ns);
}

/* A guest rewriting 512 MiB, saturated within 100 ms, over 1 GiB/s: each
 * pass leaves the 512 MiB, a floor of 500 ms + 5 ms above 300 ms, found
 * whatever the rate (throttle off); the samples give W exactly. */
Test(forecast, working_set_floor)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(300 * MS, 0, 60 * S);
	struct precopy_forecast_input in;
	struct precopy_forecast f;

	linear(s, 8 * GiB, 512 * MiB);
	in = input(s, 4 * GiB, GiB);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.working_set_bytes, 512 * MiB);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_WORKING_SET, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_eq(f.floor_bytes, 512 * MiB);
	near((double)f.floor_ns, 505e6, 0.001, "floor");
	cr_assert_eq(f.end, PRECOPY_ABORT);

	/* a 600 ms limit: it fits after pass 0 */
	p.downtime_limit_ns = 600 * MS;
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_CONVERGES);
	cr_assert_eq(f.iterations, 1);
}

/* Samples of uniform random writes, D(t) = N (1 - exp(-r t / N)): the
 * fitted W is N and the curve beyond the window follows it. */
Test(forecast, fits_the_saturating_curve)
{
	struct precopy_forecast_sample s[4];
	struct precopy_policy p = pol(300 * MS, 0, 0);
	struct precopy_forecast_input in;
	struct precopy_forecast f;
	double n = 2.0 * GiB / PS, r = 1.0 * GiB / PS; /* pages, pages/s */

	for (int i = 0; i < 4; i++) {
		double t = 0.1 * (1 << i);

		s[i].interval_ns = (uint64_t)(t * 1e9);
		s[i].dirty_pages = (uint64_t)(n * -expm1(-r * t / n));
	}
	in = input(s, 4 * GiB, 2 * GiB);
	cr_assert_eq(precopy_forecast(&p, &in, &f), 0);
	near((double)f.working_set_bytes, 2.0 * GiB, 0.01, "W");
	/* pass 0: 2 s leaves N (1 - e^-1) = 1.264 GiB */
	cr_assert_eq(f.first_pass_ns, 2 * S);
	cr_assert_gt(f.iterations, 1);
}

/* ---- against the simulator -------------------------------------------------- */

/* 8 GiB guests over 10 Gbit/s, 300 ms limit, 300 s timeout, no device;
 * `fast` writes faster than the link carries, so the throttle (20 / +10)
 * is needed. The sequential range (512 MiB, 1 GiB) is swept within the
 * 800 ms window: a longer sweep would look unbounded to the window. */
static struct sim_scenario steady(int model, int fast)
{
	struct sim_scenario sc;

	sim_scenario_init(&sc);
	snprintf(sc.source, sizeof(sc.source), "test-forecast");
	sc.memory = 8 * GiB;
	sc.bandwidth_Bps = 1250000000ull; /* 10 Gbit/s */
	sc.latency_ns = 1 * MS;
	sc.downtime_limit_ns = 300 * MS;
	sc.timeout_ns = 300 * S;
	sc.model = model;
	sc.seed = 4;
	sc.throttle_initial = fast ? 20 : 0;
	switch (model) {
	case SIM_MODEL_UNIFORM: sc.rate_Bps = fast ? 1000 * MiB : 400 * MiB; break;
	case SIM_MODEL_HOTSET:
		sc.rate_Bps = 1 * GiB;
		sc.hot_size = 1 * GiB;
		sc.hot_fraction = 0.9;
		break;
	case SIM_MODEL_SEQUENTIAL:
		sc.rate_Bps = fast ? 1500 * MiB : 1000 * MiB;
		sc.hot_size = fast ? 1 * GiB : 512 * MiB;
		break;
	default:
		sc.rate_Bps = 500 * MiB;
		sc.zipf_s = 1.1;
		break;
	}
	return sc;
}

static int same_end(uint32_t end, int outcome)
{
	switch (end) {
	case PRECOPY_SWITCHOVER: return outcome == SIM_SWITCHOVER;
	case PRECOPY_ABORT: return outcome == SIM_CANCELLED;
	case PRECOPY_FORCE_SWITCHOVER: return outcome == SIM_FORCED;
	default: return 0;
	}
}

/* The forecast f and the simulated run r end alike and their total times
 * are within 20% (err: (f - r) / r). */
static void matches(const char *name, const struct precopy_forecast *f, const struct sim_result *r, double err)
{
	cr_assert(same_end(f->end, r->outcome), "%s: predicted %s, simulated %s", name,
		  precopy_forecast_outcome_name(f->outcome), sim_outcome_name(r->outcome));
	cr_assert(fabs(err) <= 0.20, "%s: predicted %.2f s, simulated %.2f s (%+.1f%%)", name, f->total_ns / 1e9,
		  r->total_ns / 1e9, 100 * err);
}

static void against_sim(struct sim_scenario sc, const char *name)
{
	struct precopy_forecast f;
	struct sim_result r;
	double err;

	cr_assert_eq(sim_forecast(&sc, &f, NULL), 0, "%s: forecast", name);
	cr_assert_eq(sim_run(&sc, &r, NULL, NULL), 0, "%s: %s", name, r.error);
	err = ((double)f.total_ns - (double)r.total_ns) / (double)r.total_ns;
	printf("forecast %-10s predicted %s %.2f s, %u%%; simulated %s %.2f s, %u%% (%+.1f%%)\n", name,
	       precopy_forecast_outcome_name(f.outcome), f.total_ns / 1e9, f.throttle,
	       sim_outcome_name(r.outcome), r.total_ns / 1e9, r.max_throttle, 100 * err);
	matches(name, &f, &r, err);
	sim_result_release(&r);
}

Test(forecast_sim, uniform, .timeout = 300)
{
	against_sim(steady(SIM_MODEL_UNIFORM, 0), "uniform");
}

Test(forecast_sim, uniform_throttled, .timeout = 300)
{
	against_sim(steady(SIM_MODEL_UNIFORM, 1), "uniform+t");
}

Test(forecast_sim, hotset, .timeout = 300)
{
	against_sim(steady(SIM_MODEL_HOTSET, 0), "hotset");
}

Test(forecast_sim, sequential, .timeout = 300)
{
	against_sim(steady(SIM_MODEL_SEQUENTIAL, 0), "sequential");
}

/* A sweep the throttle must slow: the same outcome and throttling, but
 * the time is not within 20% (measured: 10.6 s predicted, 13.6 s
 * simulated, 30% against 40%): the engine's send cursor chasing the
 * guest's sweep is not in the model (docs/decisions.md, "Forecast"). */
Test(forecast_sim, sequential_throttled, .timeout = 300)
{
	struct sim_scenario sc = steady(SIM_MODEL_SEQUENTIAL, 1);
	struct precopy_forecast f;
	struct sim_result r;

	cr_assert_eq(sim_forecast(&sc, &f, NULL), 0);
	cr_assert_eq(sim_run(&sc, &r, NULL, NULL), 0, "%s", r.error);
	cr_assert(same_end(f.end, r.outcome), "predicted %s, simulated %s", precopy_forecast_outcome_name(f.outcome),
		  sim_outcome_name(r.outcome));
	cr_assert_gt(f.throttle, 0);
	cr_assert_gt(r.max_throttle, 0);
	cr_assert_leq(r.downtime_ns, sc.downtime_limit_ns);
	sim_result_release(&r);
}

Test(forecast_sim, zipf, .timeout = 300)
{
	against_sim(steady(SIM_MODEL_ZIPF, 0), "zipf");
}

/* Shipped scenarios with a steady guest: nonconverging.ini (uniform, no
 * throttle: the forecast names the working-set floor and the timeout
 * cancels both) and gpu.ini (Zipf, a device with pre-copy data). */
static void shipped(const char *path)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX];

	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), 0, "%s", err);
	against_sim(sc, strrchr(path, '/') + 1);
	sim_scenario_release(&sc);
}

Test(forecast_sim, nonconverging_ini, .timeout = 300)
{
	struct sim_scenario sc;
	struct precopy_forecast f;
	char err[SIM_ERR_MAX];

	shipped("sim/scenarios/nonconverging.ini");
	cr_assert_eq(sim_scenario_load(&sc, "sim/scenarios/nonconverging.ini", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sim_forecast(&sc, &f, NULL), 0);
	cr_assert_eq(f.outcome, PRECOPY_FORECAST_WORKING_SET, "%s", precopy_forecast_outcome_name(f.outcome));
	cr_assert_gt(f.floor_ns, sc.downtime_limit_ns);
	sim_scenario_release(&sc);
}

Test(forecast_sim, gpu_ini, .timeout = 300)
{
	shipped("sim/scenarios/gpu.ini");
}

/* The forecast on the engine (precopy_engine_forecast_begin/sample/end):
 * the run's own engine measures the guest and the fake devices on the
 * virtual clock through its syncs, forecasts, then migrates: the same
 * outcome and the total time within 20% on steady guests. */
static void engine_against_sim(struct sim_scenario sc, const char *name)
{
	struct precopy_forecast f, p;
	struct sim_result r;
	double err;

	cr_assert_eq(sim_run_engine_forecast(&sc, &r, &f), 0, "%s: %s", name, r.error);
	cr_assert_eq(sim_forecast(&sc, &p, NULL), 0);
	err = ((double)f.total_ns - (double)r.total_ns) / (double)r.total_ns;
	printf("engine forecast %-18s predicted %s %.2f s, %u%% (the sim's measure: %.2f s); simulated %s %.2f s, "
	       "%u%% (%+.1f%%)\n",
	       name, precopy_forecast_outcome_name(f.outcome), f.total_ns / 1e9, f.throttle, p.total_ns / 1e9,
	       sim_outcome_name(r.outcome), r.total_ns / 1e9, r.max_throttle, 100 * err);
	matches(name, &f, &r, err);
	sim_result_release(&r);
}

Test(forecast_engine, uniform, .timeout = 300)
{
	engine_against_sim(steady(SIM_MODEL_UNIFORM, 0), "uniform");
}

Test(forecast_engine, uniform_throttled, .timeout = 300)
{
	engine_against_sim(steady(SIM_MODEL_UNIFORM, 1), "uniform+t");
}

Test(forecast_engine, hotset, .timeout = 300)
{
	engine_against_sim(steady(SIM_MODEL_HOTSET, 0), "hotset");
}

Test(forecast_engine, sequential, .timeout = 300)
{
	engine_against_sim(steady(SIM_MODEL_SEQUENTIAL, 0), "sequential");
}

Test(forecast_engine, zipf, .timeout = 300)
{
	engine_against_sim(steady(SIM_MODEL_ZIPF, 0), "zipf");
}

static void engine_shipped(const char *path)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX];

	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), 0, "%s", err);
	engine_against_sim(sc, strrchr(path, '/') + 1);
	sim_scenario_release(&sc);
}

Test(forecast_engine, gpu_ini, .timeout = 300)
{
	engine_shipped("sim/scenarios/gpu.ini");
}

Test(forecast_engine, nonconverging_ini, .timeout = 300)
{
	engine_shipped("sim/scenarios/nonconverging.ini");
}

Test(forecast_engine, default_scenario, .timeout = 300)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX];

	cr_assert_eq(sim_scenario_parse_string(&sc, "built-in", sim_default_scenario, err, sizeof(err)), 0, "%s", err);
	engine_against_sim(sc, "built-in");
	sim_scenario_release(&sc);
}
