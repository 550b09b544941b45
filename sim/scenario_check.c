/* SPDX-License-Identifier: MIT */
/* Scenario defaults and the checks that span several keys. Kept apart from
 * the INI parser (sim/scenario.c, which needs libinih) so that programs
 * building scenarios in code (the benchmark) link without it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/engine.h"
#include "simulator.h"

void sim_device_init(struct sim_device *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
	d->initial_bytes = 300ull << 20;
	d->dirty_rate_Bps = 20ull << 20;
	d->stop_copy_bytes = 100ull << 20;
	d->dma_rate_Bps = 0;
	d->pre_copy = 1;
	d->p2p = 1;
	d->dma_logging = 1;
	d->pollable = 1;
	d->transition_ns = 20000000;
	d->dest_load_ns = 0;
	d->page_size = 4096;
	d->max_ranges = 8;
}

void sim_scenario_init(struct sim_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->source, sizeof(sc->source), "built-in");
	sc->memory = 64ull << 30;
	sc->page_size = 4096;
	sc->vcpus = 8;
	sc->model = SIM_MODEL_UNIFORM;
	sc->rate_Bps = 200ull << 20;
	sc->hot_size = 0;
	sc->hot_fraction = 0.9;
	sc->zipf_s = 1.1;
	sc->seed = 1;
	sc->bandwidth_Bps = 1250000000ull; /* 10 Gbit/s */
	sc->latency_ns = 1000000;
	sc->downtime_limit_ns = 300000000;
	sc->timeout_ns = 0;
	sc->timeout_action = PRECOPY_TIMEOUT_CANCEL;
	sc->throttle_initial = 20;
	sc->throttle_increment = 10;
	sc->throttle_max = 99;
	sc->fixed_downtime_ns = 5000000;
	sc->window_ns = 100000000;
}

void sim_scenario_release(struct sim_scenario *sc)
{
	if (!sc)
		return;
	free(sc->trace);
	sc->trace = NULL;
	sc->ntrace = 0;
}

static int fail(char *err, size_t len, const char *msg)
{
	if (err && len)
		snprintf(err, len, "%s", msg);
	return -EINVAL;
}

#define RATE_WHY "1T/s, beyond any host's memory bandwidth"

/* "[section] key: VALUE UNIT is above the limit of LIMIT UNIT (why)" */
static int above(char *err, size_t len, const char *what, uint64_t v, const char *unit, uint64_t limit,
		 const char *why)
{
	if (err && len)
		snprintf(err, len, "%s: %llu %s is above the limit of %llu %s (%s)", what, (unsigned long long)v, unit,
			 (unsigned long long)limit, unit, why);
	return -EINVAL;
}

int sim_scenario_check(const struct sim_scenario *sc, char *err, size_t len)
{
	char m[SIM_ERR_MAX];

	if (!sc)
		return fail(err, len, "no scenario");
	if (!sc->page_size || (sc->page_size & (sc->page_size - 1)) || sc->page_size < 4096)
		return fail(err, len, "[vm] page_size: must be a power of two >= 4K");
	if (sc->page_size > SIM_MAX_MEMORY)
		return above(err, len, "[vm] page_size", sc->page_size, "bytes", SIM_MAX_MEMORY, "4096T");
	if (sc->memory > SIM_MAX_MEMORY)
		return above(err, len, "[vm] memory", sc->memory, "bytes", SIM_MAX_MEMORY,
			     "4096T, a 52-bit guest physical address space");
	if (!sc->memory || sc->memory % sc->page_size)
		return fail(err, len, "[vm] memory: must be a non-zero multiple of page_size");
	if (!sc->vcpus)
		return fail(err, len, "[vm] vcpus: must be >= 1");
	if (!sc->bandwidth_Bps)
		return fail(err, len, "[link] bandwidth: must be > 0");
	if (sc->bandwidth_Bps > SIM_MAX_BANDWIDTH_BPS)
		return above(err, len, "[link] bandwidth", sc->bandwidth_Bps, "B/s", SIM_MAX_BANDWIDTH_BPS,
			     "1T/s: the virtual clock counts whole ns, and a 4K page must take a few of them");
	if (sc->switchover_bw_Bps > SIM_MAX_BANDWIDTH_BPS)
		return above(err, len, "[migration] switchover_bandwidth", sc->switchover_bw_Bps, "B/s",
			     SIM_MAX_BANDWIDTH_BPS, "1T/s, as [link] bandwidth");
	if (sc->rate_Bps > SIM_MAX_RATE_BPS)
		return above(err, len, "[workload] rate", sc->rate_Bps, "B/s", SIM_MAX_RATE_BPS, RATE_WHY);
	for (uint32_t i = 0; i < sc->nphases; i++)
		if (sc->phases[i].rate_Bps > SIM_MAX_RATE_BPS) {
			snprintf(m, sizeof(m), "[workload] phases: phase %u's rate", i + 1);
			return above(err, len, m, sc->phases[i].rate_Bps, "B/s", SIM_MAX_RATE_BPS, RATE_WHY);
		}
	if (!sc->downtime_limit_ns)
		return fail(err, len, "[migration] downtime_limit: must be > 0");
	if (sc->model == SIM_MODEL_SEQUENTIAL && sc->hot_size > sc->memory)
		return fail(err, len, "[workload] hot_size: model=sequential sweeps at most [vm] memory");
	if (sc->wp_fault_ns > 1000000000ull)
		return fail(err, len, "[workload] wp_fault: at most 1s per fault");
	/* with faults the workload runs one write at a time */
	if (sc->wp_fault_ns && sc->rate_Bps > (16ull << 30))
		return fail(err, len, "[workload] rate: at most 16G/s with wp_fault (writes are simulated one by one)");
	if (sc->wp_fault_ns && (sc->model == SIM_MODEL_PHASES || sc->model == SIM_MODEL_TRACE))
		return fail(err, len, "[workload] wp_fault: only for uniform, hotset, zipf and sequential");
	if (sc->model == SIM_MODEL_HOTSET && (!sc->hot_size || sc->hot_size > sc->memory))
		return fail(err, len, "[workload] hot_size: model=hotset needs 0 < hot_size <= [vm] memory");
	if (sc->hot_fraction < 0.0 || sc->hot_fraction > 1.0)
		return fail(err, len, "[workload] hot_fraction: must be within 0..1");
	if (sc->model == SIM_MODEL_ZIPF && !(sc->zipf_s > 0.0))
		return fail(err, len, "[workload] zipf_s: must be > 0");
	if (sc->model == SIM_MODEL_PHASES && !sc->nphases)
		return fail(err, len, "[workload] phases: model=phases needs phases=DURATION:RATE,...");
	if (sc->model == SIM_MODEL_TRACE && !sc->ntrace)
		return fail(err, len, "[workload] trace: model=trace needs a trace file with at least one line");
	if (sc->throttle_max > 99 || sc->throttle_initial > 99)
		return fail(err, len, "[migration] throttle_initial/throttle_max: at most 99");
	if (sc->throttle_initial && (!sc->throttle_increment || sc->throttle_initial > sc->throttle_max))
		return fail(err, len,
			    "[migration] throttle: throttle_increment must be >= 1 and throttle_initial <= throttle_max");
	for (uint32_t i = 0; i < sc->ndevs; i++) {
		const struct sim_device *d = &sc->devs[i];

		if (!d->page_size || (d->page_size & (d->page_size - 1)) || d->page_size < 4096) {
			snprintf(m, sizeof(m), "[device.%s] page_size: must be a power of two >= 4K", d->name);
			return fail(err, len, m);
		}
		if (d->dma_rate_Bps > SIM_MAX_RATE_BPS) {
			snprintf(m, sizeof(m), "[device.%s] dma_rate", d->name);
			return above(err, len, m, d->dma_rate_Bps, "B/s", SIM_MAX_RATE_BPS, RATE_WHY);
		}
		if (!d->max_ranges) {
			snprintf(m, sizeof(m), "[device.%s] max_ranges: must be >= 1", d->name);
			return fail(err, len, m);
		}
		if (d->dirty_rate_Bps && d->dirty_rate_Bps >= sc->bandwidth_Bps && d->pre_copy) {
			snprintf(m, sizeof(m),
				 "[device.%s] dirty_rate: must be below [link] bandwidth (the device's own "
				 "pre-copy data could never be sent)",
				 d->name);
			return fail(err, len, m);
		}
		if (!d->stop_copy_bytes && !(d->pre_copy && d->initial_bytes)) {
			snprintf(m, sizeof(m), "[device.%s] stop_copy: a device must have some state", d->name);
			return fail(err, len, m);
		}
	}
	return 0;
}
