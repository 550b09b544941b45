/* SPDX-License-Identifier: MIT */
/* precopy-sim --forecast: measure the scenario's guest for a window, as a
 * VMM would with dirty logging on before sending anything, and feed
 * precopy_forecast() (estimator/forecast.c); the report sets the forecast
 * beside the simulated migration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"
#include "simulator.h"

#define MS 1000000ull
#define SIM_MIN_ITER_NS (10 * MS) /* sim/simulate.c's least iteration */

const uint64_t sim_forecast_intervals_ns[SIM_FORECAST_SAMPLES] = { 100 * MS, 200 * MS, 400 * MS, 800 * MS };

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* One device's DMA over dt ns: random 4 KiB writes (the fake device's
 * model), each marking its log page in the guest-page bitmap. */
static void dma_run(const struct sim_scenario *sc, const struct sim_device *d, struct precopy_bitmap *bm,
		    uint64_t *rng, unsigned __int128 *credit, uint64_t dt)
{
	uint64_t gran = d->page_size > 4096 ? d->page_size : 4096, n, slots = sc->memory / 4096;

	*credit += (unsigned __int128)dt * (d->dma_rate_Bps / 4096);
	n = (uint64_t)(*credit / 1000000000u);
	*credit %= 1000000000u;
	for (uint64_t i = 0; i < n && slots; i++) {
		uint64_t addr = (uint64_t)(((unsigned __int128)splitmix(rng) * slots) >> 64) * 4096;
		uint64_t lo = addr / gran * gran, hi = lo + gran, first, last;

		if (hi > sc->memory)
			hi = sc->memory;
		first = lo / sc->page_size;
		last = (hi - 1) / sc->page_size;
		precopy_bitmap_set_range(bm, first, last - first + 1);
	}
}

int sim_forecast_measure(const struct sim_scenario *sc, const uint64_t *intervals_ns, size_t n,
			 struct precopy_forecast_sample *out)
{
	struct precopy_bitmap bm;
	struct sim_workload *w;
	unsigned __int128 credit[SIM_MAX_DEVICES] = { 0 };
	uint64_t rng = sc ? sc->seed * 0x2545F4914F6CDD1Dull + 17 : 0, t = 0;
	int err;

	if (!sc || !intervals_ns || !out || !sc->page_size || sc->ndevs > SIM_MAX_DEVICES)
		return -EINVAL;
	err = precopy_bitmap_alloc(&bm, sc->memory / sc->page_size, PRECOPY_NUMA_LOCAL);
	if (err < 0)
		return err;
	w = sim_workload_new(sc, &bm, &err);
	if (!w) {
		precopy_bitmap_free(&bm);
		return err;
	}
	for (size_t i = 0; i < n; i++) {
		sim_workload_run(w, t + intervals_ns[i]);
		for (uint32_t k = 0; k < sc->ndevs; k++)
			if (sc->devs[k].dma_rate_Bps)
				dma_run(sc, &sc->devs[k], &bm, &rng, &credit[k], intervals_ns[i]);
		t += intervals_ns[i];
		out[i].interval_ns = intervals_ns[i];
		out[i].dirty_pages = precopy_bitmap_count(&bm);
		precopy_bitmap_zero(&bm); /* the sync */
	}
	sim_workload_free(w);
	precopy_bitmap_free(&bm);
	return 0;
}

/* State arcs a device takes inside the downtime (engine/estimate.c's
 * count): its own path to STOP_COPY, then the destination's from RESUMING
 * to RUNNING. */
static uint64_t downtime_arcs(const struct sim_device *d)
{
	uint64_t flags = VFIO_MIGRATION_STOP_COPY | (d->p2p ? VFIO_MIGRATION_P2P : 0) |
			 (d->pre_copy ? VFIO_MIGRATION_PRE_COPY : 0);
	int a = precopy_vfio_fsm_path(d->pre_copy ? VFIO_DEVICE_STATE_PRE_COPY : VFIO_DEVICE_STATE_RUNNING,
				      VFIO_DEVICE_STATE_STOP_COPY, flags, NULL, 0);
	int b = precopy_vfio_fsm_path(VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, flags, NULL, 0);

	return (uint64_t)(a > 0 ? a : 1) + (uint64_t)(b > 0 ? b : 2);
}

int sim_run_engine_forecast(const struct sim_scenario *sc, struct sim_result *res, struct precopy_forecast *fc)
{
	uint64_t initial[SIM_MAX_DEVICES] = { 0 };
	struct precopy_engine_forecast_params p = { 0 };
	struct sim_engine_window w = { sim_forecast_intervals_ns, SIM_FORECAST_SAMPLES, &p, fc };

	if (!sc || !res || !fc || sc->ndevs > SIM_MAX_DEVICES)
		return -EINVAL;
	for (uint32_t i = 0; i < sc->ndevs; i++) {
		const struct sim_device *d = &sc->devs[i];

		if (!d->pre_copy)
			continue;
		initial[i] = d->initial_bytes;
		p.device_dirty_Bps += d->dirty_rate_Bps;
		if (d->dest_load_ns + 2 * sc->latency_ns > p.ack_delay_ns)
			p.ack_delay_ns = d->dest_load_ns + 2 * sc->latency_ns;
	}
	p.initial_bytes = initial;
	p.bandwidth_Bps = sc->bandwidth_Bps;
	p.min_iteration_ns = SIM_MIN_ITER_NS;
	p.check_ns = sc->window_ns;
	return sim_run_ex(sc, res, NULL, NULL, &w);
}

int sim_forecast(const struct sim_scenario *sc, struct precopy_forecast *fc, struct precopy_forecast_sample *samples)
{
	struct precopy_forecast_sample s[SIM_FORECAST_SAMPLES];
	struct precopy_device_status devs[SIM_MAX_DEVICES];
	struct precopy_forecast_input in;
	struct sim_scenario eng;
	struct precopy_policy pol;
	int e;

	if (!sc || !fc)
		return -EINVAL;
	e = sim_forecast_measure(sc, sim_forecast_intervals_ns, SIM_FORECAST_SAMPLES, s);
	if (e < 0)
		return e;
	if (samples)
		memcpy(samples, s, sizeof(s));
	memset(&in, 0, sizeof(in));
	memset(devs, 0, sizeof(devs));
	for (uint32_t i = 0; i < sc->ndevs; i++) {
		const struct sim_device *d = &sc->devs[i];

		devs[i].stop_copy_bytes = d->stop_copy_bytes;
		devs[i].stop_copy_known = 1;
		devs[i].pre_copy = (uint8_t)d->pre_copy;
		devs[i].initial_bytes = d->pre_copy ? d->initial_bytes : 0;
		devs[i].transition_ns = d->transition_ns * downtime_arcs(d);
		devs[i].drain_concurrent = (uint8_t)!sc->serial_drain;
		devs[i].read_Bps = d->read_rate_Bps;
		if (d->pre_copy) {
			uint64_t ack = d->dest_load_ns + 2 * sc->latency_ns;

			in.device_dirty_Bps += d->dirty_rate_Bps;
			in.ack_delay_ns = ack > in.ack_delay_ns ? ack : in.ack_delay_ns;
		}
	}
	in.ram_bytes = sc->memory;
	in.page_size = sc->page_size;
	in.samples = s;
	in.nsamples = SIM_FORECAST_SAMPLES;
	in.devs = devs;
	in.ndevs = sc->ndevs;
	in.bandwidth_Bps = sc->bandwidth_Bps;
	in.min_iteration_ns = SIM_MIN_ITER_NS;
	in.check_ns = sc->window_ns;
	eng = *sc;
	eng.policy = SIM_POLICY_PRECOPY; /* the forecast is the engine's */
	sim_engine_policy(&eng, &pol);
	return precopy_forecast(&pol, &in, fc);
}

static const char *end_name(uint32_t end)
{
	switch (end) {
	case PRECOPY_SWITCHOVER: return "switchover";
	case PRECOPY_ABORT: return "cancelled";
	case PRECOPY_FORCE_SWITCHOVER: return "forced";
	default: return "never ends";
	}
}

static void put_time(char *buf, size_t len, uint64_t ns)
{
	if (ns == PRECOPY_UNBOUNDED)
		snprintf(buf, len, "unbounded");
	else if (ns < 10000000000ull)
		snprintf(buf, len, "%.0f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.1f s", (double)ns / 1e9);
}

static void put_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (double)(1ull << 30));
	else
		snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ull << 20));
}

int sim_report_forecast(FILE *f, const struct sim_scenario *sc, const struct precopy_forecast *fc,
			const struct precopy_forecast_sample *samples, const struct sim_result *r)
{
	char a[32], b[32], c[32];
	uint64_t window = 0;

	if (r)
		goto compare;
	for (size_t i = 0; i < SIM_FORECAST_SAMPLES; i++)
		window += samples ? samples[i].interval_ns : 0;
	fprintf(f, "forecast for %s (measured %.1f s, nothing sent):\n", sc->source, (double)window / 1e9);
	if (samples) {
		fprintf(f, "  dirty pages after");
		for (size_t i = 0; i < SIM_FORECAST_SAMPLES; i++)
			fprintf(f, "%s %.0f ms: %llu", i ? "," : "", (double)samples[i].interval_ns / 1e6,
				(unsigned long long)samples[i].dirty_pages);
		fprintf(f, "\n");
	}
	put_bytes(a, sizeof(a), fc->working_set_bytes);
	fprintf(f, "  dirty rate %.1f MiB/s at first; dirty set saturating at %s%s\n",
		(double)fc->dirty_rate_Bps / (double)(1ull << 20), a,
		fc->working_set_bytes >= sc->memory ? " (all RAM: no saturation seen)" : "");
	put_time(a, sizeof(a), fc->total_ns);
	put_time(b, sizeof(b), fc->first_pass_ns);
	fprintf(f, "  outcome: %s; end: %s after %llu passes, total %s (first pass %s)\n",
		precopy_forecast_outcome_name(fc->outcome), end_name(fc->end), (unsigned long long)fc->iterations,
		a, b);
	put_time(a, sizeof(a), fc->downtime_ns);
	put_time(b, sizeof(b), sc->downtime_limit_ns);
	fprintf(f, "  expected downtime %s (limit %s); throttle up to %u%%", a, b, fc->throttle);
	if (fc->throttle_at_ns) {
		put_time(c, sizeof(c), fc->throttle_at_ns);
		fprintf(f, " (first at %s)", c);
	}
	fprintf(f, "\n");
	put_time(a, sizeof(a), fc->device_floor_ns);
	fprintf(f, "  device floor %s", a);
	if (fc->outcome == PRECOPY_FORECAST_DEVICE_FLOOR || fc->outcome == PRECOPY_FORECAST_WORKING_SET) {
		put_time(b, sizeof(b), fc->floor_ns);
		fprintf(f, "; stopped by the %s: %s", precopy_forecast_outcome_name(fc->outcome), b);
		if (fc->floor_bytes) {
			put_bytes(c, sizeof(c), fc->floor_bytes);
			fprintf(f, " (%s still dirty after each pass)", c);
		}
	}
	if (fc->stalled_at_ns) {
		put_time(c, sizeof(c), fc->stalled_at_ns);
		fprintf(f, "; stall reported at %s", c);
	}
	fprintf(f, "\n");
	return ferror(f) ? -EIO : 0;
compare:
	fprintf(f, "predicted vs simulated:\n");
	fprintf(f, "  %-14s %-14s %-14s\n", "", "predicted", "simulated");
	fprintf(f, "  %-14s %-14s %-14s\n", "outcome", end_name(fc->end), sim_outcome_name(r->outcome));
	put_time(a, sizeof(a), fc->total_ns);
	put_time(b, sizeof(b), r->total_ns);
	put_time(a, sizeof(a), fc->precopy_ns);
	put_time(b, sizeof(b), r->total_ns - r->downtime_ns);
	fprintf(f, "  %-14s %-14s %-14s\n", "pre-copy", a, b);
	put_time(a, sizeof(a), fc->total_ns);
	put_time(b, sizeof(b), r->total_ns);
	fprintf(f, "  %-14s %-14s %-14s", "total time", a, b);
	if (fc->total_ns != PRECOPY_UNBOUNDED && r->total_ns)
		fprintf(f, " (%+.1f%%)", 100.0 * ((double)fc->total_ns - (double)r->total_ns) / (double)r->total_ns);
	fprintf(f, "\n");
	put_time(a, sizeof(a), fc->end == PRECOPY_ABORT || fc->end == PRECOPY_CONTINUE ? 0 : fc->downtime_ns);
	put_time(b, sizeof(b), r->downtime_ns);
	fprintf(f, "  %-14s %-14s %-14s (the engine's expected downtime at the end: ", "downtime", a, b);
	put_time(a, sizeof(a), r->expected_downtime_ns);
	fprintf(f, "%s)\n", a);
	fprintf(f, "  %-14s %-14u %-14u\n", "max throttle", fc->throttle, r->max_throttle);
	fprintf(f, "  %-14s %-14llu %-14llu\n", "iterations", (unsigned long long)fc->iterations,
		(unsigned long long)r->iterations);
	return ferror(f) ? -EIO : 0;
}
