/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz-scenario.c — libFuzzer harness for precopy-sim's scenario
 * parser (sim/scenario.c, built by `make fuzz`).
 *
 * The input, cut at its first NUL byte (a scenario file with one is refused
 * before parsing), is parsed as a scenario named "fuzz.ini", and its first
 * line is also given to the three unit parsers. Checked on every input:
 *  - the parse returns 0 or -EINVAL (a trace file it names may also give
 *    -ENOMEM); the message is NUL-terminated, non-empty on failure and
 *    starts with "fuzz.ini:" or "fuzz.ini: ";
 *  - a scenario that parses passes sim_scenario_check() again and is
 *    within the model's limits (SIM_MAX_* in sim/simulator.h);
 *  - a unit parser returns 0, -EINVAL or -ERANGE, and a value it accepts
 *    reads back to itself when written in plain units (bytes, B/s, us).
 * Any violation aborts. A trace path is read relative to the current
 * directory (run from an empty directory to keep it from reading files).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sim/simulator.h"

#define MAX_INPUT (64u << 10)

#define CHECK(c)                                                                           \
	do {                                                                               \
		if (!(c)) {                                                                \
			fprintf(stderr, "fuzz-scenario: check failed: %s (line %d)\n", #c, \
				__LINE__);                                                 \
			abort();                                                           \
		}                                                                          \
	} while (0)

static void units(const char *s)
{
	char back[64];
	uint64_t v, w;
	int r;

	r = sim_parse_size(s, &v);
	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
		CHECK(sim_parse_size(back, &w) == 0 && w == v);
	}
	r = sim_parse_rate(s, &v);
	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		snprintf(back, sizeof(back), "%llu/s", (unsigned long long)v);
		CHECK(sim_parse_rate(back, &w) == 0 && w == v);
	}
	r = sim_parse_time(s, &v);
	CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0 && v % 1000 == 0) {
		snprintf(back, sizeof(back), "%lluus", (unsigned long long)(v / 1000));
		CHECK(sim_parse_time(back, &w) == 0 && w == v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX], *text, *nl;
	int r;

	if (size > MAX_INPUT)
		size = MAX_INPUT;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	memset(err, 0x5a, sizeof(err));
	r = sim_scenario_parse_string(&sc, "fuzz.ini", text, err, sizeof(err));
	CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
	if (r < 0) {
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		CHECK(!strncmp(err, "fuzz.ini:", 9));
		CHECK(strlen(err) > 10);
	} else {
		char msg[SIM_ERR_MAX];

		CHECK(sim_scenario_check(&sc, msg, sizeof(msg)) == 0);
		CHECK(sc.memory && sc.memory <= SIM_MAX_MEMORY && sc.memory % sc.page_size == 0);
		CHECK(sc.vcpus >= 1);
		CHECK(sc.bandwidth_Bps && sc.bandwidth_Bps <= SIM_MAX_BANDWIDTH_BPS);
		CHECK(sc.rate_Bps <= SIM_MAX_RATE_BPS);
		CHECK(sc.ndevs <= SIM_MAX_DEVICES && sc.nphases <= SIM_MAX_PHASES);
		for (uint32_t i = 0; i < sc.nphases; i++)
			CHECK(sc.phases[i].duration_ns && sc.phases[i].rate_Bps <= SIM_MAX_RATE_BPS);
		for (uint32_t i = 0; i < sc.ndevs; i++) {
			CHECK(sc.devs[i].name[0] && sc.devs[i].max_ranges >= 1);
			CHECK(sc.devs[i].dma_rate_Bps <= SIM_MAX_RATE_BPS);
		}
		for (size_t i = 0; i < sc.ntrace; i++)
			CHECK(sc.trace[i].pages <= SIM_MAX_TRACE_PAGES && (!i || sc.trace[i].t_ns >= sc.trace[i - 1].t_ns));
	}
	sim_scenario_release(&sc);

	nl = strchr(text, '\n');
	if (nl)
		*nl = '\0';
	units(text);
	free(text);
	return 0;
}
