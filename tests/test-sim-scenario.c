/* SPDX-License-Identifier: MIT */
/* precopy-sim scenarios: units, every parse error with its exact message
 * (file, line, key), the built-in scenario equal to sim/scenarios/default.ini,
 * and a run of every shipped example (scaled down 8x: every byte size and
 * rate divided by 8 keeps every duration, and so the outcome) against the
 * outcome its "; expect:" line states. Run from the source tree's root (as
 * `make test` does). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "precopy/engine.h"
#include "../sim/simulator.h"

#define SCEN_DIR "sim/scenarios"

/* ---- units ---------------------------------------------------------------- */

struct unit_case {
	int kind; /* 0 size, 1 rate, 2 time */
	const char *in;
	int err;
	uint64_t out;
};

static const struct unit_case units[] = {
	{ 0, "64G", 0, 64ull << 30 },      { 0, "4K", 0, 4096 },             { 0, "4k", 0, 4096 },
	{ 0, "1T", 0, 1ull << 40 },        { 0, "300M", 0, 300ull << 20 },   { 0, "1.5G", 0, 3ull << 29 },
	{ 0, "512", 0, 512 },              { 0, "2GiB", 0, 2ull << 30 },     { 0, " 8 M ", 0, 8ull << 20 },
	{ 0, "64Q", -EINVAL, 0 },          { 0, "", -EINVAL, 0 },            { 0, "G", -EINVAL, 0 },
	{ 0, "-1G", -EINVAL, 0 },          { 0, "1.G", -EINVAL, 0 },         { 0, "16777216T", -ERANGE, 0 },
	{ 0, "99999999999999999999", -ERANGE, 0 },
	/* 2^64 - 1 is the largest integer written out (the scenario fuzzer
	 * found it refused: what "17179869183.9999999995G" parses to) */
	{ 0, "18446744073709551615", 0, UINT64_MAX }, { 0, "18446744073709551616", -ERANGE, 0 },
	{ 0, "17179869183.9999999995G", 0, UINT64_MAX },
	/* the rounded fraction carries past 2^64 - 1: an error, not a wrap to 0 */
	{ 0, "17179869183.9999999999G", -ERANGE, 0 }, { 0, "16777215.99999999999999999T", -ERANGE, 0 },
	{ 0, "17179869183.4G", 0, 0xFFFFFFFFC0000000ull + 429496730ull },
	{ 0, "16777215.99999999999T", 0, 0xFFFFFFFFFFFFFFF5ull },
	{ 1, "17179869183.9999999999G/s", -ERANGE, 0 }, { 1, "18446744073.7095516159999Gbit/s", -ERANGE, 0 },
	{ 2, "18446744073.7095516159999s", -ERANGE, 0 },
	{ 1, "500M/s", 0, 500ull << 20 },  { 1, "1250M/s", 0, 1250ull << 20 }, { 1, "10Gbit/s", 0, 1250000000ull },
	{ 1, "1Gbit/s", 0, 125000000ull }, { 1, "100Mbit/s", 0, 12500000ull }, { 1, "8bit/s", 0, 1 },
	{ 1, "2G/s", 0, 2ull << 30 },      { 1, "25 Gbit/s", 0, 3125000000ull }, { 1, "500M", -EINVAL, 0 },
	{ 1, "10Gbps", -EINVAL, 0 },       { 1, "10Gbit", -EINVAL, 0 },      { 1, "1G/h", -EINVAL, 0 },
	{ 1, "10Gbit/s x", -EINVAL, 0 },
	{ 2, "300ms", 0, 300000000ull },   { 2, "1.5s", 0, 1500000000ull },  { 2, "600s", 0, 600000000000ull },
	{ 2, "500us", 0, 500000ull },      { 2, "0ms", 0, 0 },               { 2, "300", -EINVAL, 0 },
	{ 2, "3m", -EINVAL, 0 },           { 2, "1h", -EINVAL, 0 },          { 2, "ms", -EINVAL, 0 },
};

Test(sim_scenario, units_table)
{
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		const struct unit_case *u = &units[i];
		uint64_t out = 0xdead;
		int r = u->kind == 0 ? sim_parse_size(u->in, &out) : u->kind == 1 ? sim_parse_rate(u->in, &out)
										      : sim_parse_time(u->in, &out);

		cr_assert_eq(r, u->err, "\"%s\": %d, want %d", u->in, r, u->err);
		if (!u->err)
			cr_assert_eq(out, u->out, "\"%s\": %llu, want %llu", u->in, (unsigned long long)out,
				     (unsigned long long)u->out);
	}
}

/* ---- parse errors -------------------------------------------------------- */

struct err_case {
	const char *text;
	const char *msg; /* exact */
};

static const struct err_case errs[] = {
	{ "[vm]\nmemory = 64Q\n", "t.ini:2: [vm] memory: bad size \"64Q\" (a number with K, M, G or T, e.g. 64G)" },
	{ "[vm]\nmemroy = 64G\n", "t.ini:2: [vm] memroy: unknown key (known: memory, page_size, vcpus)" },
	{ "[vm]\nmemory = 64G\nmemory = 32G\n", "t.ini:3: [vm] memory: set twice (first on line 2)" },
	{ "[vm]\nvcpus = eight\n", "t.ini:2: [vm] vcpus: bad number \"eight\"" },
	{ "[vm]\nvcpus = 99999999999\n", "t.ini:2: [vm] vcpus: 99999999999 is out of range (0..4294967295)" },
	{ "[vm]\nmemory =\n", "t.ini:2: [vm] memory: no value" },
	{ "\n\n[vm]\npage_size = 3K\n", "t.ini:4: [vm] page_size: must be a power of two >= 4K" },
	{ "[vm]\nmemory = 10000\n", "t.ini:2: [vm] memory: must be a non-zero multiple of page_size" },
	{ "[vm]\nmemory = 16777215.99999999999T\n",
	  "t.ini:2: [vm] memory: 18446744073709551605 bytes is above the limit of 4503599627370496 bytes (4096T, a 52-bit "
	  "guest physical address space)" },
	{ "[vm]\nmemory = 4097T\n",
	  "t.ini:2: [vm] memory: 4504699138998272 bytes is above the limit of 4503599627370496 bytes (4096T, a 52-bit "
	  "guest physical address space)" },
	{ "[vm]\nvcpus = 0\n", "t.ini:2: [vm] vcpus: must be >= 1" },
	{ "[workload]\nseed = -1\n", "t.ini:2: [workload] seed: bad number \"-1\"" },
	{ "[workload]\nseed = 18446744073709551616\n",
	  "t.ini:2: [workload] seed: 18446744073709551616 is out of range (0..18446744073709551615)" },
	{ "[link]\nbandwidth = 1025G/s\n",
	  "t.ini:2: [link] bandwidth: 1100585369600 B/s is above the limit of 1099511627776 B/s (1T/s: the virtual "
	  "clock counts whole ns, and a 4K page must take a few of them)" },
	{ "[link]\nbandwidth = 9223372036854775807bit/s\n",
	  "t.ini:2: [link] bandwidth: 1152921504606846975 B/s is above the limit of 1099511627776 B/s (1T/s: the "
	  "virtual clock counts whole ns, and a 4K page must take a few of them)" },
	{ "[migration]\nswitchover_bandwidth = 2T/s\n",
	  "t.ini:2: [migration] switchover_bandwidth: 2199023255552 B/s is above the limit of 1099511627776 B/s (1T/s, "
	  "as [link] bandwidth)" },
	{ "[workload]\nrate = 16777215T/s\n",
	  "t.ini:2: [workload] rate: 18446742974197923840 B/s is above the limit of 1099511627776 B/s (1T/s, beyond any "
	  "host's memory bandwidth)" },
	{ "[workload]\nmodel = phases\nphases = 1s:1M/s,2s:2T/s\n",
	  "t.ini:3: [workload] phases: phase 2's rate: 2199023255552 B/s is above the limit of 1099511627776 B/s (1T/s, "
	  "beyond any host's memory bandwidth)" },
	{ "[device.d]\ndma_rate = 1025G/s\n",
	  "t.ini:2: [device.d] dma_rate: 1100585369600 B/s is above the limit of 1099511627776 B/s (1T/s, beyond any "
	  "host's memory bandwidth)" },
	{ "memory = 64G\n", "t.ini:1: memory: key outside of any section" },
	{ "[vm]\n[network]\nbandwidth = 1G/s\n",
	  "t.ini:2: [network]: unknown section (known: vm, workload, link, migration, device.NAME)" },
	{ "[vm\nmemory = 1G\n", "t.ini:1: syntax error (expected [section] or key = value)" },
	{ "[vm]\njust some words\n", "t.ini:2: syntax error (expected [section] or key = value)" },
	{ "[vm]\n; 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	  "012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234\n",
	  "t.ini:2: line too long (at most 199 characters)" },
	{ "[workload]\nmodel = random\n",
	  "t.ini:2: [workload] model: unknown model \"random\" (uniform, hotset, zipf, sequential, phases, trace)" },
	{ "[workload]\nrate = 200M\n", "t.ini:2: [workload] rate: bad rate \"200M\" (bytes: 500M/s; bits: 10Gbit/s)" },
	{ "[workload]\nhot_fraction = 1.5\n", "t.ini:2: [workload] hot_fraction: 1.5 is out of range (0..1)" },
	{ "[workload]\nzipf_s = 0\n", "t.ini:2: [workload] zipf_s: 0 must be > 0" },
	{ "[workload]\nmodel = hotset\n",
	  "t.ini:2: [workload] hot_size: model=hotset needs 0 < hot_size <= [vm] memory" },
	{ "[vm]\nmemory = 1G\n[workload]\nmodel = hotset\nhot_size = 2G\n",
	  "t.ini:5: [workload] hot_size: model=hotset needs 0 < hot_size <= [vm] memory" },
	{ "[workload]\nmodel = phases\n",
	  "t.ini:2: [workload] phases: model=phases needs phases=DURATION:RATE,..." },
	{ "[workload]\nphases = 10s:50M/s,5s\n",
	  "t.ini:2: [workload] phases: bad phase \"5s\" (DURATION:RATE, e.g. 10s:50M/s)" },
	{ "[workload]\nphases = 10:50M/s\n",
	  "t.ini:2: [workload] phases: bad phase duration \"10\" (a time > 0 with ms or s)" },
	{ "[workload]\nphases = 10s:fast\n",
	  "t.ini:2: [workload] phases: bad phase rate \"fast\" (e.g. 50M/s or 1Gbit/s)" },
	{ "[workload]\ntrace = /nonexistent/trace.csv\n",
	  "t.ini:2: [workload] trace: cannot read trace \"/nonexistent/trace.csv\": No such file or directory" },
	{ "[link]\nbandwidth = 10Gbps\n", "t.ini:2: [link] bandwidth: bad rate \"10Gbps\" (bytes: 500M/s; bits: 10Gbit/s)" },
	{ "[link]\nbandwidth = 0M/s\n", "t.ini:2: [link] bandwidth: must be > 0" },
	{ "[link]\nlatency = 1\n", "t.ini:2: [link] latency: bad time \"1\" (a number with ms or s, e.g. 300ms)" },
	{ "[migration]\ndowntime_limit = 0ms\n", "t.ini:2: [migration] downtime_limit: must be > 0" },
	{ "[migration]\npolicy = postcopy\n", "t.ini:2: [migration] policy: unknown policy \"postcopy\" (precopy, qemu, ch or xen)" },
	{ "[migration]\ntimeout_action = retry\n",
	  "t.ini:2: [migration] timeout_action: unknown action \"retry\" (cancel or force)" },
	{ "[migration]\nthrottle_max = 100\n", "t.ini:2: [migration] throttle_max: 100 is out of range (0..99)" },
	{ "[migration]\nthrottle_initial = 50\nthrottle_max = 40\n",
	  "t.ini: [migration] throttle: throttle_increment must be >= 1 and throttle_initial <= throttle_max" },
	{ "[migration]\nswitchover_bandwidth = fast\n",
	  "t.ini:2: [migration] switchover_bandwidth: bad rate \"fast\" (bytes: 500M/s; bits: 10Gbit/s)" },
	{ "[device.gpu0]\npre_copy = maybe\n", "t.ini:2: [device.gpu0] pre_copy: bad boolean \"maybe\" (yes or no)" },
	{ "[device.gpu0]\ncolor = green\n",
	  "t.ini:2: [device.gpu0] color: unknown key (known: initial, dirty_rate, stop_copy, dma_rate, pre_copy, p2p, "
	  "transition, dest_load, read_rate, page_size, max_ranges, dma_logging, pollable)" },
	{ "[device.a]\ninitial = 1M\n[device.a]\n", "t.ini:3: [device.a]: device defined twice (first on line 1)" },
	{ "[device.]\n", "t.ini:1: [device.]: a device name must be 1..64 printable characters without spaces" },
	{ "[device.gpu0]\npage_size = 6K\n", "t.ini:2: [device.gpu0] page_size: must be a power of two >= 4K" },
	{ "[device.gpu0]\nmax_ranges = 0\n", "t.ini:2: [device.gpu0] max_ranges: must be >= 1" },
	{ "[device.gpu0]\ndirty_rate = 2G/s\n",
	  "t.ini:2: [device.gpu0] dirty_rate: must be below [link] bandwidth (the device's own pre-copy data could "
	  "never be sent)" },
	{ "[device.gpu0]\npre_copy = no\nstop_copy = 0\n",
	  "t.ini:3: [device.gpu0] stop_copy: a device must have some state" },
	{ "[device.x]\ntransition = 20\n",
	  "t.ini:2: [device.x] transition: bad time \"20\" (a number with ms or s, e.g. 300ms)" },
};

Test(sim_scenario, every_error_names_file_line_and_key)
{
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct sim_scenario sc;
		char err[SIM_ERR_MAX] = "";
		int r = sim_scenario_parse_string(&sc, "t.ini", errs[i].text, err, sizeof(err));

		cr_assert_eq(r, -EINVAL, "case %zu (%s): %d", i, errs[i].text, r);
		cr_assert_str_eq(err, errs[i].msg, "case %zu", i);
		sim_scenario_release(&sc);
	}
}

Test(sim_scenario, files_missing_and_not_text)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX], path[] = "/tmp/precopy-sim-test-XXXXXX";
	int fd;

	cr_assert_eq(sim_scenario_load(&sc, "/nonexistent/x.ini", err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/x.ini: cannot open: No such file or directory");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "[vm]\0x", 6), 6);
	close(fd);
	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a text file"), "%s", err);
	unlink(path);
}

/* A file of n bytes: comment lines (c, then padding), then tail. */
static void write_sized(const char *path, size_t n, char c, const char *tail)
{
	FILE *f = fopen(path, "w");
	size_t pad = n - strlen(tail);

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	for (size_t i = 0; i < pad; i++)
		fputc(i == pad - 1 || i % 64 == 63 ? '\n' : i % 64 ? '-' : c, f);
	fputs(tail, f);
	cr_assert_eq(fclose(f), 0);
}

Test(sim_scenario, only_regular_files_up_to_1_MiB)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX], dir[] = "/tmp/precopy-sim-test-XXXXXX", path[64], text[256];

	cr_assert_not_null(mkdtemp(dir));
	/* devices, directories and FIFOs: refused at once, even a FIFO with no writer */
	cr_assert_eq(sim_scenario_load(&sc, "/dev/zero", err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "/dev/zero: not a regular file (a scenario must be a plain file)");
	cr_assert_eq(sim_scenario_load(&sc, dir, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a regular file"), "%s", err);
	unlink(path);

	/* 1 MiB is accepted, one byte more is not */
	snprintf(path, sizeof(path), "%s/big.ini", dir);
	write_sized(path, SIM_SCENARIO_MAX_BYTES, ';', "[vm]\nmemory = 1G\n");
	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sc.memory, 1ull << 30);
	sim_scenario_release(&sc);
	write_sized(path, SIM_SCENARIO_MAX_BYTES + 1, ';', "[vm]\nmemory = 1G\n");
	cr_assert_eq(sim_scenario_load(&sc, path, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%s: too large (1048577 bytes; a scenario is at most 1048576 bytes)", path);
	cr_assert_str_eq(err, text);
	unlink(path);

	/* the trace it names: the same rule, the message on the key's line */
	cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", "[workload]\nmodel = trace\ntrace = /dev/zero\n", err,
					       sizeof(err)),
		     -EINVAL);
	cr_assert_str_eq(err, "t.ini:3: [workload] trace: cannot use trace /dev/zero: not a regular file (a trace "
			      "must be a plain file)");
	sim_scenario_release(&sc);
	snprintf(path, sizeof(path), "%s/t.csv", dir);
	write_sized(path, 64, '#', "0,1\n10,4294967297\n");
	snprintf(text, sizeof(text), "[workload]\nmodel = trace\ntrace = %s\n", path);
	cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", text, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":3: 4294967297 page writes in one event is too many (at most 4294967296)"), "%s", err);
	sim_scenario_release(&sc);
	write_sized(path, 64, '#', "0,1\n10,-1\n");
	cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", text, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":3: bad trace line (time_ms,pages)"), "%s", err);
	sim_scenario_release(&sc);
	unlink(path);
	rmdir(dir);
}

Test(sim_scenario, values_land_where_they_belong)
{
	struct sim_scenario sc;
	char err[SIM_ERR_MAX];
	const char *text = "[vm]\nmemory=1T\npage_size=2M\nvcpus=64\n"
			   "[workload]\nmodel=phases\nphases=10s:50M/s, 5s:2G/s\nseed=42\n"
			   "[link]\nbandwidth=1250M/s\nlatency=2ms\n"
			   "[migration]\ndowntime_limit=250ms\npolicy=precopy\ntimeout=1.5s\ntimeout_action=force\n"
			   "switchover_bandwidth=\nthrottle_initial=30\nthrottle_increment=5\nthrottle_max=90\n"
			   "fixed_downtime=7ms\nmax_iterations=12\n"
			   "[device.gpu0]\ninitial=8G\ndirty_rate=1G/s\nstop_copy=2G\ndma_rate=100M/s\npre_copy=no\n"
			   "p2p=off\ntransition=30ms\ndest_load=2s\npage_size=64K\nmax_ranges=4\ndma_logging=no\n"
			   "pollable=no\n"
			   "[device.nic]\n";

	cr_assert_eq(sim_scenario_parse_string(&sc, "v.ini", text, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sc.memory, 1ull << 40);
	cr_assert_eq(sc.page_size, 2ull << 20);
	cr_assert_eq(sc.vcpus, 64);
	cr_assert_eq(sc.model, SIM_MODEL_PHASES);
	cr_assert_eq(sc.nphases, 2);
	cr_assert_eq(sc.phases[1].duration_ns, 5000000000ull);
	cr_assert_eq(sc.phases[1].rate_Bps, 2ull << 30);
	cr_assert_eq(sc.seed, 42);
	cr_assert_eq(sc.bandwidth_Bps, 1250ull << 20);
	cr_assert_eq(sc.latency_ns, 2000000);
	cr_assert_eq(sc.downtime_limit_ns, 250000000);
	cr_assert_eq(sc.timeout_ns, 1500000000);
	cr_assert_eq(sc.timeout_action, PRECOPY_TIMEOUT_FORCE);
	cr_assert_eq(sc.switchover_bw_Bps, 0);
	cr_assert_eq(sc.throttle_initial, 30);
	cr_assert_eq(sc.throttle_increment, 5);
	cr_assert_eq(sc.throttle_max, 90);
	cr_assert_eq(sc.fixed_downtime_ns, 7000000);
	cr_assert_eq(sc.max_iterations, 12);
	cr_assert_eq(sc.ndevs, 2, "an empty device section is a device with defaults");
	cr_assert_str_eq(sc.devs[0].name, "gpu0");
	cr_assert_eq(sc.devs[0].initial_bytes, 8ull << 30);
	cr_assert_eq(sc.devs[0].dirty_rate_Bps, 1ull << 30);
	cr_assert_eq(sc.devs[0].stop_copy_bytes, 2ull << 30);
	cr_assert_eq(sc.devs[0].dma_rate_Bps, 100ull << 20);
	cr_assert_eq(sc.devs[0].pre_copy, 0);
	cr_assert_eq(sc.devs[0].p2p, 0);
	cr_assert_eq(sc.devs[0].transition_ns, 30000000);
	cr_assert_eq(sc.devs[0].dest_load_ns, 2000000000ull);
	cr_assert_eq(sc.devs[0].page_size, 65536);
	cr_assert_eq(sc.devs[0].max_ranges, 4);
	cr_assert_eq(sc.devs[0].dma_logging, 0);
	cr_assert_str_eq(sc.devs[1].name, "nic");
	cr_assert_eq(sc.devs[0].pollable, 0);
	cr_assert_eq(sc.devs[1].pre_copy, 1);
	cr_assert_eq(sc.devs[1].pollable, 1, "a data fd polls unless told");
	sim_scenario_release(&sc);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert(f, "%s: %s (run the tests from the source tree's root)", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	cr_assert(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

Test(sim_scenario, builtin_is_the_shipped_default)
{
	char *text = slurp(SCEN_DIR "/default.ini");

	cr_assert_str_eq(text, sim_default_scenario, "sim/scenarios/default.ini differs from the built-in scenario");
	free(text);
}

/* Every byte size and rate divided by k: durations, and so the run, stay. */
static void scale_down(struct sim_scenario *sc, uint64_t k)
{
	sc->memory /= k;
	sc->rate_Bps /= k;
	sc->hot_size /= k;
	sc->bandwidth_Bps /= k;
	sc->switchover_bw_Bps /= k;
	for (uint32_t i = 0; i < sc->nphases; i++)
		sc->phases[i].rate_Bps /= k;
	for (size_t i = 0; i < sc->ntrace; i++)
		sc->trace[i].pages /= k;
	for (uint32_t i = 0; i < sc->ndevs; i++) {
		struct sim_device *d = &sc->devs[i];
		d->initial_bytes /= k;
		d->dirty_rate_Bps /= k;
		d->stop_copy_bytes /= k;
		d->dma_rate_Bps /= k;
	}
}

/* The value of an "; expect-KEY: " line, NUL-terminated in place, or NULL. */
static char *claim(char *text, const char *key)
{
	char needle[64], *p;

	snprintf(needle, sizeof(needle), "; expect-%s: ", key);
	p = strstr(text, needle);
	if (!p)
		return NULL;
	p += strlen(needle);
	p[strcspn(p, "\n")] = '\0';
	return p;
}

/* What each shipped scenario's comment claims, checked on the scenario as
 * shipped (not scaled down): "; expect-limit: met|missed|none" (none: no
 * switchover) and "; expect-stall: none|before Ns" (when the engine
 * reported the limit unreachable). */
Test(sim_scenario, every_shipped_scenario_keeps_its_comment_true, .timeout = 180)
{
	DIR *dir = opendir(SCEN_DIR);
	struct dirent *de;
	int n = 0;

	cr_assert(dir, SCEN_DIR ": %s (run the tests from the source tree's root)", strerror(errno));
	while ((de = readdir(dir))) {
		char path[512], err[SIM_ERR_MAX], *text, *lim, *stall;
		struct sim_scenario sc;
		struct sim_result r;
		size_t len = strlen(de->d_name);
		int e;

		if (len < 5 || strcmp(de->d_name + len - 4, ".ini"))
			continue;
		snprintf(path, sizeof(path), SCEN_DIR "/%s", de->d_name);
		text = slurp(path);
		lim = claim(text, "limit");
		cr_assert(lim, "%s has no \"; expect-limit:\" line", path);
		stall = claim(lim + strlen(lim) + 1, "stall");
		cr_assert(stall, "%s has no \"; expect-stall:\" line after its expect-limit", path);
		e = sim_scenario_load(&sc, path, err, sizeof(err));
		cr_assert_eq(e, 0, "%s", err);
		e = sim_run(&sc, &r, NULL, NULL);
		cr_assert_eq(e, 0, "%s: %s", path, r.error);
		if (!strcmp(lim, "none"))
			cr_assert_eq(r.downtime_ns, 0, "%s: a switchover happened", path);
		else
			cr_assert_eq(r.downtime_ns <= r.downtime_limit_ns, !strcmp(lim, "met"),
				     "%s: downtime %.1f ms, limit %.1f ms, the comment says %s", path, r.downtime_ns / 1e6,
				     r.downtime_limit_ns / 1e6, lim);
		if (!strcmp(stall, "none")) {
			cr_assert_lt(r.stalled_at_ns, 0, "%s: a stall at %.1f s", path, r.stalled_at_ns / 1e9);
		} else {
			double s = 0;

			cr_assert_eq(sscanf(stall, "before %lfs", &s), 1, "%s: expect-stall: \"%s\"", path, stall);
			cr_assert(r.stalled_at_ns >= 0 && (double)r.stalled_at_ns < s * 1e9,
				  "%s: stall at %.1f s, the comment says before %.0f s", path, r.stalled_at_ns / 1e9, s);
		}
		sim_result_release(&r);
		sim_scenario_release(&sc);
		free(text);
		n++;
	}
	closedir(dir);
	cr_assert_geq(n, 5, "only %d scenarios in " SCEN_DIR, n);
}

Test(sim_scenario, every_shipped_scenario_runs_as_expected, .timeout = 120)
{
	DIR *dir = opendir(SCEN_DIR);
	struct dirent *de;
	int n = 0;

	cr_assert(dir, SCEN_DIR ": %s (run the tests from the source tree's root)", strerror(errno));
	while ((de = readdir(dir))) {
		char path[512], err[SIM_ERR_MAX], *text, *exp;
		struct sim_scenario sc;
		struct sim_result r;
		size_t len = strlen(de->d_name);
		int e;

		if (len < 5 || strcmp(de->d_name + len - 4, ".ini"))
			continue;
		snprintf(path, sizeof(path), SCEN_DIR "/%s", de->d_name);
		text = slurp(path);
		exp = strstr(text, "; expect: ");
		cr_assert(exp, "%s has no \"; expect: OUTCOME\" line", path);
		exp += 10;
		exp[strcspn(exp, "\n")] = '\0';
		e = sim_scenario_load(&sc, path, err, sizeof(err));
		cr_assert_eq(e, 0, "%s", err);
		scale_down(&sc, 8);
		e = sim_run(&sc, &r, NULL, NULL);
		cr_assert_eq(e, 0, "%s: %s", path, r.error);
		cr_assert_str_eq(sim_outcome_name(r.outcome), exp, "%s: %s (%s)", path, sim_outcome_name(r.outcome),
				 r.error);
		cr_assert_geq(r.iterations, 1);
		fprintf(stderr, "sim_scenario: %-28s %-10s %4llu iterations, %8.1f s virtual, downtime %7.1f ms "
				"(limit %.0f), %.2f s real\n",
			de->d_name, sim_outcome_name(r.outcome), (unsigned long long)r.iterations, r.total_ns / 1e9,
			r.downtime_ns / 1e6, r.downtime_limit_ns / 1e6, r.wall_s);
		sim_result_release(&r);
		sim_scenario_release(&sc);
		free(text);
		n++;
	}
	closedir(dir);
	cr_assert_geq(n, 5, "only %d scenarios in " SCEN_DIR, n);
}

/* precopy-sim --help's key list comes from the parser's table: the same
 * keys as the parser's "known:" list for every section, and each default
 * shown, fed back to the parser, gives the default itself. */
Test(sim_scenario, help_lists_every_key_with_its_true_default)
{
	char *buf = NULL, line[256], sec[64] = "", known[512] = "", listed[512] = "";
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int nsec = 0, nkeys = 0;

	cr_assert_not_null(f);
	sim_scenario_keys_help(f);
	cr_assert_eq(fclose(f), 0);
	f = fmemopen(buf, len, "r");
	cr_assert_not_null(f);
	for (int more = 1; more;) {
		char key[64], kind[32], def[64];

		more = fgets(line, sizeof(line), f) != NULL;
		if (!more || sscanf(line, "  [%63[^]]]", key) == 1) {
			/* a section ends: its keys against the parser's list */
			if (sec[0]) {
				struct sim_scenario sc;
				char text[128], err[SIM_ERR_MAX], *k;

				snprintf(text, sizeof(text), "[%s]\nno_such_key = 1\n", sec);
				cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", text, err, sizeof(err)), -EINVAL);
				k = strstr(err, "(known: ");
				cr_assert_not_null(k, "%s", err);
				snprintf(known, sizeof(known), "%s", k + 8);
				known[strlen(known) - 1] = 0;
				cr_expect_str_eq(listed, known, "[%s]: --help lists other keys than the parser knows", sec);
				sim_scenario_release(&sc);
				nsec++;
			}
			if (more)
				snprintf(sec, sizeof(sec), "%s", strcmp(key, "device.NAME") ? key : "device.d");
			listed[0] = 0;
			continue;
		}
		if (!sec[0] || sscanf(line, "    %63s %31s %63s", key, kind, def) != 3)
			continue;
		snprintf(listed + strlen(listed), sizeof(listed) - strlen(listed), "%s%s", listed[0] ? ", " : "", key);
		nkeys++;
		if (def[0] != '(') {
			struct sim_scenario sc, want;
			char text[256], err[SIM_ERR_MAX];

			snprintf(text, sizeof(text), "[%s]\n%s = %s\n", sec, key, def);
			cr_assert_eq(sim_scenario_parse_string(&sc, "t.ini", text, err, sizeof(err)), 0, "%s: %s", text, err);
			sim_scenario_init(&want);
			snprintf(want.source, sizeof(want.source), "t.ini");
			if (!strncmp(sec, "device.", 7)) {
				sim_device_init(&want.devs[0], "d");
				want.devs[0].line = 1;
				want.ndevs = 1;
			}
			cr_expect(!memcmp(&sc, &want, sizeof(sc)), "[%s] %s: the default shown, %s, is not the default",
				  sec, key, def);
			sim_scenario_release(&sc);
		}
	}
	fclose(f);
	free(buf);
	cr_expect_eq(nsec, 5, "%d sections", nsec);
	cr_expect_geq(nkeys, 30, "%d keys", nkeys);
}
