/* SPDX-License-Identifier: MIT */
/* Scenario files: INI parsed with libinih, every key checked against a table
 * of known keys with its unit, errors naming the file, the line and the key:
 *
 *   FILE:LINE: [section] key: problem
 *
 * Sizes take K, M, G, T (powers of 1024); byte rates are sizes per second
 * ("500M/s"); bit rates say so ("10Gbit/s": powers of 1000, bits); times
 * take "us", "ms" or "s". The reader that feeds libinih counts lines itself,
 * so messages have line numbers whatever options libinih was built with,
 * and it sees section headers (even of empty sections) as they come. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "precopy/engine.h"
#include "simulator.h"

const char sim_default_scenario[] =
	"; precopy-sim built-in scenario (also sim/scenarios/default.ini):\n"
	"; a 64 GiB VM writing 400 MiB/s (70% into a 2 GiB hot set), one NIC-like\n"
	"; device with pre-copy data and DMA, 10 Gbit/s, 300 ms downtime limit.\n"
	"; expect: switchover\n"
	"; expect-limit: met\n"
	"; expect-stall: none\n"
	"[vm]\n"
	"memory = 64G\n"
	"page_size = 4K\n"
	"vcpus = 8\n"
	"\n"
	"[workload]\n"
	"model = hotset\n"
	"rate = 400M/s\n"
	"hot_size = 2G\n"
	"hot_fraction = 0.7\n"
	"seed = 1\n"
	"\n"
	"[link]\n"
	"bandwidth = 10Gbit/s\n"
	"latency = 1ms\n"
	"\n"
	"[migration]\n"
	"downtime_limit = 300ms\n"
	"policy = precopy\n"
	"timeout = 600s\n"
	"timeout_action = cancel\n"
	"fixed_downtime = 5ms\n"
	"\n"
	"[device.nic0]\n"
	"initial = 300M\n"
	"dirty_rate = 20M/s\n"
	"stop_copy = 64M\n"
	"dma_rate = 50M/s\n"
	"transition = 20ms\n"
	"dest_load = 1500ms\n";

/* ---- units ---------------------------------------------------------------- */

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A non-negative decimal number (digits, optional fraction) at *s. */
static int number(const char **s, uint64_t *ip, double *frac, int *has_frac)
{
	const char *p = *s;
	uint64_t v = 0;
	int digits = 0;

	*frac = 0.0;
	*has_frac = 0;
	while (*p >= '0' && *p <= '9') {
		uint64_t d = (uint64_t)(*p - '0');

		/* exactly 2^64 - 1 fits; one more does not */
		if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
			return -ERANGE;
		v = v * 10 + d;
		p++;
		digits++;
	}
	if (*p == '.') {
		double scale = 0.1;
		p++;
		*has_frac = 1;
		if (!(*p >= '0' && *p <= '9'))
			return -EINVAL;
		while (*p >= '0' && *p <= '9') {
			*frac += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
	}
	if (!digits)
		return -EINVAL;
	*ip = v;
	*s = p;
	return 0;
}

/* ip.frac x mult, the fraction rounded to the nearest unit. The rounded
 * fraction is what is added, so a value whose rounding carries past
 * 2^64 - 1 ("17179869183.9999999999G") is -ERANGE, not a wrap to 0. */
static int scaled(uint64_t ip, double frac, uint64_t mult, uint64_t *out)
{
	double f = floor(frac * (double)mult + 0.5);
	uint64_t add;

	if (mult && ip > UINT64_MAX / mult)
		return -ERANGE;
	ip *= mult;
	if (!(f < 0x1.0p64))
		return -ERANGE;
	add = (uint64_t)f;
	if (add > UINT64_MAX - ip)
		return -ERANGE;
	*out = ip + add;
	return 0;
}

static uint64_t binary_mult(char c)
{
	switch (c) {
	case 'K': case 'k': return 1ull << 10;
	case 'M': return 1ull << 20;
	case 'G': return 1ull << 30;
	case 'T': return 1ull << 40;
	}
	return 0;
}

static uint64_t decimal_mult(char c)
{
	switch (c) {
	case 'K': case 'k': return 1000ull;
	case 'M': return 1000000ull;
	case 'G': return 1000000000ull;
	case 'T': return 1000000000000ull;
	}
	return 0;
}

/* size: number [K|M|G|T] [B|iB], leaves *s after it */
static int size_at(const char **s, uint64_t *out)
{
	uint64_t ip, mult = 1;
	double frac;
	int hf, r = number(s, &ip, &frac, &hf);

	if (r < 0)
		return r;
	*s = skip_ws(*s);
	if (binary_mult(**s)) {
		mult = binary_mult(**s);
		(*s)++;
		if (**s == 'i' && (*s)[1] == 'B')
			*s += 2;
		else if (**s == 'B')
			(*s)++;
	} else if (**s == 'B') {
		(*s)++;
	}
	return scaled(ip, frac, mult, out);
}

int sim_parse_size(const char *s, uint64_t *out)
{
	int r;

	s = skip_ws(s);
	r = size_at(&s, out);
	if (r < 0)
		return r;
	return *skip_ws(s) ? -EINVAL : 0;
}

int sim_parse_rate(const char *s, uint64_t *out)
{
	const char *p = skip_ws(s), *q;
	uint64_t ip, mult = 1, bits;
	double frac;
	int hf, r;

	/* a bit rate: number [K|M|G|T] "bit/s", decimal */
	q = p;
	r = number(&q, &ip, &frac, &hf);
	if (r == -ERANGE)
		return r;
	if (r == 0) {
		q = skip_ws(q);
		if (decimal_mult(*q) && !strncmp(q + 1, "bit/s", 5)) {
			mult = decimal_mult(*q);
			q += 1;
		}
		if (!strncmp(q, "bit/s", 5)) {
			if (*skip_ws(q + 5))
				return -EINVAL;
			r = scaled(ip, frac, mult, &bits);
			if (r < 0)
				return r;
			*out = bits / 8;
			return 0;
		}
	}
	/* a byte rate: size "/s" */
	r = size_at(&p, out);
	if (r < 0)
		return r;
	p = skip_ws(p);
	if (strncmp(p, "/s", 2) || *skip_ws(p + 2))
		return -EINVAL;
	return 0;
}

int sim_parse_time(const char *s, uint64_t *ns)
{
	uint64_t ip, mult;
	double frac;
	int hf, r;

	s = skip_ws(s);
	r = number(&s, &ip, &frac, &hf);
	if (r < 0)
		return r;
	s = skip_ws(s);
	if (!strncmp(s, "ms", 2))
		mult = 1000000ull, s += 2;
	else if (!strncmp(s, "us", 2))
		mult = 1000ull, s += 2;
	else if (*s == 's')
		mult = 1000000000ull, s += 1;
	else
		return -EINVAL;
	if (*skip_ws(s))
		return -EINVAL;
	return scaled(ip, frac, mult, ns);
}

/* ---- reading a file --------------------------------------------------------- */

/* The whole of a regular file of at most max bytes, NUL-terminated, in
 * *text (free() it). Anything else (a FIFO, a device such as /dev/zero, a
 * directory, a larger file, a NUL byte) is refused with "PATH: why" in
 * err: -EINVAL, or -errno when the file cannot be opened or read. The open
 * does not block on a FIFO (O_NONBLOCK), and a file that grows after the
 * fstat is still cut at max + 1 bytes and refused. */
static int read_text_file(const char *path, size_t max, const char *what, char **text, char *err,
			  size_t err_len)
{
	struct stat st;
	size_t len = 0;
	char *buf;
	int fd, r;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, err_len, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file (%s must be a plain file)", path, what);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		snprintf(err, err_len, "%s: too large (%llu bytes; %s is at most %zu bytes)", path,
			 (unsigned long long)st.st_size, what, max);
		close(fd);
		return -EINVAL;
	}
	buf = malloc(max + 2);
	if (!buf) {
		snprintf(err, err_len, "%s: out of memory", path);
		close(fd);
		return -ENOMEM;
	}
	while (len < max + 1) {
		ssize_t n = read(fd, buf + len, max + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			snprintf(err, err_len, "%s: read error: %s", path, strerror(errno));
			free(buf);
			close(fd);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > max) {
		snprintf(err, err_len, "%s: too large (it grew; %s is at most %zu bytes)", path, what, max);
		free(buf);
		return -EINVAL;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		snprintf(err, err_len, "%s: not a text file (NUL byte)", path);
		free(buf);
		return -EINVAL;
	}
	*text = buf;
	return 0;
}

/* ---- the key table ------------------------------------------------------ */

enum sec { SEC_NONE = -1, SEC_VM, SEC_WORKLOAD, SEC_LINK, SEC_MIGRATION, SEC_DEVICE, SEC_COUNT };
static const char *const sec_names[] = { "vm", "workload", "link", "migration", "device" };

enum kind { K_SIZE, K_RATE, K_TIME, K_U32, K_U64, K_FRACTION, K_POSITIVE, K_BOOL, K_MODEL, K_ACTION,
	    K_POLICY, K_PHASES, K_TRACE, K_PERCENT, K_RATE_OPT };

struct key {
	int sec;
	const char *name;
	int kind;
	size_t off; /* into struct sim_scenario, or struct sim_device for SEC_DEVICE */
	const char *help; /* for --help (sim_scenario_keys_help()) */
};

#define SC(f) offsetof(struct sim_scenario, f)
#define DV(f) offsetof(struct sim_device, f)

static const struct key keys[] = {
	{ SEC_VM, "memory", K_SIZE, SC(memory), "guest RAM" },
	{ SEC_VM, "page_size", K_SIZE, SC(page_size), "guest page (a power of two >= 4K)" },
	{ SEC_VM, "vcpus", K_U32, SC(vcpus), "vCPUs (>= 1)" },
	{ SEC_WORKLOAD, "model", K_MODEL, SC(model), "uniform, hotset, zipf, sequential, phases or trace" },
	{ SEC_WORKLOAD, "rate", K_RATE, SC(rate_Bps), "guest page writes, in bytes per second" },
	{ SEC_WORKLOAD, "hot_size", K_SIZE, SC(hot_size),
	  "hotset: the hot set, at the start of RAM; sequential: the range swept (0: all RAM)" },
	{ SEC_WORKLOAD, "wp_fault", K_TIME, SC(wp_fault_ns),
	  "guest time a page's first write after each sync costs (write protection; 0s: none)" },
	{ SEC_WORKLOAD, "hot_fraction", K_FRACTION, SC(hot_fraction), "hotset: the share of writes into it (0..1)" },
	{ SEC_WORKLOAD, "zipf_s", K_POSITIVE, SC(zipf_s), "zipf: the exponent (> 0)" },
	{ SEC_WORKLOAD, "phases", K_PHASES, 0, "phases: DURATION:RATE,... repeated" },
	{ SEC_WORKLOAD, "trace", K_TRACE, 0, "trace: a file of \"time_ms,pages\" lines" },
	{ SEC_WORKLOAD, "seed", K_U64, SC(seed), "random seed (0..2^64-1; --seed overrides)" },
	{ SEC_LINK, "bandwidth", K_RATE, SC(bandwidth_Bps), "the migration link" },
	{ SEC_LINK, "latency", K_TIME, SC(latency_ns), "one way" },
	{ SEC_MIGRATION, "downtime_limit", K_TIME, SC(downtime_limit_ns), "the limit the engine plans for" },
	{ SEC_MIGRATION, "policy", K_POLICY, SC(policy),
	  "who decides: precopy (the engine), qemu, ch or xen (their rules: docs/policies.md)" },
	{ SEC_MIGRATION, "timeout", K_TIME, SC(timeout_ns), "then timeout_action (0s: none)" },
	{ SEC_MIGRATION, "timeout_action", K_ACTION, SC(timeout_action), "cancel or force" },
	{ SEC_MIGRATION, "switchover_bandwidth", K_RATE_OPT, SC(switchover_bw_Bps), "for the downtime estimate (empty: measured)" },
	{ SEC_MIGRATION, "throttle_initial", K_PERCENT, SC(throttle_initial), "auto-converge first throttle, % (0: off)" },
	{ SEC_MIGRATION, "throttle_increment", K_PERCENT, SC(throttle_increment), "auto-converge step, %" },
	{ SEC_MIGRATION, "throttle_max", K_PERCENT, SC(throttle_max), "auto-converge ceiling, % (<= 99)" },
	{ SEC_MIGRATION, "fixed_downtime", K_TIME, SC(fixed_downtime_ns), "the VMM's own cost inside the downtime" },
	{ SEC_MIGRATION, "max_iterations", K_U64, SC(max_iterations), "then the timeout action (0: 100000)" },
	{ SEC_MIGRATION, "serial_drain", K_BOOL, SC(serial_drain),
	  "drain device state one device after another at switchover (default: concurrently)" },
	{ SEC_MIGRATION, "decide_window", K_TIME, SC(window_ns),
	  "RAM link time between two questions to the engine inside a pass (0s: per pass)" },
	{ SEC_DEVICE, "initial", K_SIZE, DV(initial_bytes), "pre-copy initial data" },
	{ SEC_DEVICE, "dirty_rate", K_RATE, DV(dirty_rate_Bps), "state dirtied per second in pre-copy" },
	{ SEC_DEVICE, "stop_copy", K_SIZE, DV(stop_copy_bytes), "state left at stop-copy" },
	{ SEC_DEVICE, "dma_rate", K_RATE, DV(dma_rate_Bps), "guest RAM the device writes per second" },
	{ SEC_DEVICE, "pre_copy", K_BOOL, DV(pre_copy), "the device has pre-copy (VFIO_MIGRATION_PRE_COPY)" },
	{ SEC_DEVICE, "p2p", K_BOOL, DV(p2p), "the device has P2P states" },
	{ SEC_DEVICE, "transition", K_TIME, DV(transition_ns), "each VFIO state arc" },
	{ SEC_DEVICE, "dest_load", K_TIME, DV(dest_load_ns), "destination load of its state" },
	{ SEC_DEVICE, "read_rate", K_RATE_OPT, DV(read_rate_Bps),
	  "how fast the data fd delivers its state (empty: unlimited)" },
	{ SEC_DEVICE, "page_size", K_SIZE, DV(page_size), "DMA-logging page" },
	{ SEC_DEVICE, "max_ranges", K_U32, DV(max_ranges), "DMA-logging tracker ranges (>= 1)" },
	{ SEC_DEVICE, "dma_logging", K_BOOL, DV(dma_logging), "the device supports DMA logging" },
	{ SEC_DEVICE, "pollable", K_BOOL, DV(pollable),
	  "its data fd has a poll method (no: reads only block until the device delivers)" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* ---- the parse ---------------------------------------------------------- */

struct pctx {
	struct sim_scenario *sc;
	const char *name;   /* the file as messages call it */
	const char *dir_of; /* path the trace file is relative to */
	const char *text;   /* what the reader reads */
	size_t pos;
	int line;
	int sec;            /* current section */
	char secname[128];
	struct sim_device *dev;
	int failed, err_line;
	char *err;
	size_t err_len;
	int seen_line[SIM_MAX_DEVICES + 1][NKEYS]; /* [0]: scenario keys; [1 + i]: device i */
};

static int perr(struct pctx *p, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(struct pctx *p, const char *key, const char *fmt, ...)
{
	char msg[SIM_ERR_MAX];
	va_list ap;

	if (p->failed)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (key && !p->line) /* a value from elsewhere: sim_scenario_set() */
		snprintf(p->err, p->err_len, "%s: [%s] %s: %s", p->name, p->secname, key, msg);
	else if (key)
		snprintf(p->err, p->err_len, "%s:%d: [%s] %s: %s", p->name, p->line, p->secname, key, msg);
	else
		snprintf(p->err, p->err_len, "%s:%d: %s", p->name, p->line, msg);
	p->failed = 1;
	p->err_line = p->line;
	return 0;
}

/* The reader libinih calls for each line: one line of p->text, counted. */
static char *reader(char *str, int num, void *stream)
{
	struct pctx *p = stream;
	size_t n = 0;

	if (!p->text[p->pos] || num < 2 || p->failed)
		return NULL;
	while (p->text[p->pos] && n + 1 < (size_t)num) {
		char c = p->text[p->pos++];
		str[n++] = c;
		if (c == '\n')
			break;
	}
	str[n] = '\0';
	p->line++;
	if (n && str[n - 1] != '\n' && p->text[p->pos]) {
		if (p->text[p->pos] == '\n') {
			p->pos++; /* the line fits without its newline */
		} else {
			/* libinih would take the rest of the line as a line of its own */
			perr(p, NULL, "line too long (at most %d characters)", num - 1);
			return NULL;
		}
	}
	return str;
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > PRECOPY_STREAM_NAME_MAX)
		return 0;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

static int enter_section(struct pctx *p, const char *section)
{
	snprintf(p->secname, sizeof(p->secname), "%s", section);
	p->dev = NULL;
	for (int i = 0; i < SEC_DEVICE; i++)
		if (!strcmp(section, sec_names[i])) {
			p->sec = i;
			return 1;
		}
	if (!strncmp(section, "device.", 7)) {
		const char *name = section + 7;
		struct sim_scenario *sc = p->sc;

		p->sec = SEC_DEVICE;
		if (!valid_name(name))
			return perr(p, NULL, "[%s]: a device name must be 1..%u printable characters without spaces",
				    section, PRECOPY_STREAM_NAME_MAX);
		for (uint32_t i = 0; i < sc->ndevs; i++)
			if (!strcmp(sc->devs[i].name, name))
				return perr(p, NULL, "[%s]: device defined twice (first on line %d)", section,
					    sc->devs[i].line);
		if (sc->ndevs == SIM_MAX_DEVICES)
			return perr(p, NULL, "[%s]: too many devices (at most %u)", section, SIM_MAX_DEVICES);
		p->dev = &sc->devs[sc->ndevs++];
		sim_device_init(p->dev, name);
		p->dev->line = p->line;
		return 1;
	}
	p->sec = SEC_NONE;
	return perr(p, NULL, "[%s]: unknown section (known: vm, workload, link, migration, device.NAME)", section);
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcmp(v, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_uint(const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	if (!(*v >= '0' && *v <= '9'))
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || x > max)
		return -ERANGE;
	*out = x;
	return 0;
}

static int parse_double(const char *v, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(v, &end);
	if (end == v || *end || errno == ERANGE || !isfinite(*out))
		return -EINVAL;
	return 0;
}

static int parse_phases(struct pctx *p, const char *key, const char *v)
{
	struct sim_scenario *sc = p->sc;
	char buf[4096], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", v);
	sc->nphases = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		struct sim_phase ph;

		if (!colon)
			return perr(p, key, "bad phase \"%s\" (DURATION:RATE, e.g. 10s:50M/s)", tok);
		*colon = '\0';
		if (sim_parse_time(tok, &ph.duration_ns) < 0 || !ph.duration_ns)
			return perr(p, key, "bad phase duration \"%s\" (a time > 0 with ms or s)", tok);
		if (sim_parse_rate(colon + 1, &ph.rate_Bps) < 0)
			return perr(p, key, "bad phase rate \"%s\" (e.g. 50M/s or 1Gbit/s)", colon + 1);
		if (sc->nphases == SIM_MAX_PHASES)
			return perr(p, key, "too many phases (at most %u)", SIM_MAX_PHASES);
		sc->phases[sc->nphases++] = ph;
	}
	if (!sc->nphases)
		return perr(p, key, "no phase (DURATION:RATE,...)");
	return 1;
}

/* The trace file: "time_ms,pages" per line, times not decreasing; blank
 * lines and lines starting with '#' are skipped. A regular file of at most
 * SIM_TRACE_MAX_BYTES. */
static int parse_trace(struct pctx *p, const char *key, const char *v)
{
	struct sim_scenario *sc = p->sc;
	char path[PATH_MAX], msg[SIM_ERR_MAX], *text, *line, *next;
	int ln = 0, r;
	size_t cap = 0;

	if (v[0] != '/' && p->dir_of) {
		const char *slash = strrchr(p->dir_of, '/');
		int dl = slash ? (int)(slash - p->dir_of) + 1 : 0;
		snprintf(path, sizeof(path), "%.*s%s", dl, p->dir_of, v);
	} else {
		snprintf(path, sizeof(path), "%s", v);
	}
	snprintf(sc->trace_path, sizeof(sc->trace_path), "%s", v);
	r = read_text_file(path, SIM_TRACE_MAX_BYTES, "a trace", &text, msg, sizeof(msg));
	if (r < 0) {
		if (r == -EINVAL)
			return perr(p, key, "cannot use trace %s", msg);
		return perr(p, key, "cannot read trace \"%s\": %s", path, strerror(-r));
	}
	free(sc->trace);
	sc->trace = NULL;
	sc->ntrace = 0;
	for (line = text; *line; line = next) {
		unsigned long long t, n;
		char extra;
		const char *s = skip_ws(line);

		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = '\0';
		ln++;
		if (*s == '#' || *s == '\r' || !*s)
			continue;
		if (sscanf(s, "%llu , %llu %c", &t, &n, &extra) != 2 || t > UINT64_MAX / 1000000 ||
		    strchr(s, '-')) {
			free(text);
			return perr(p, key, "%s:%d: bad trace line (time_ms,pages)", path, ln);
		}
		if (n > SIM_MAX_TRACE_PAGES) {
			free(text);
			return perr(p, key, "%s:%d: %llu page writes in one event is too many (at most %llu)", path,
				    ln, n, (unsigned long long)SIM_MAX_TRACE_PAGES);
		}
		if (sc->ntrace && t * 1000000 < sc->trace[sc->ntrace - 1].t_ns) {
			free(text);
			return perr(p, key, "%s:%d: trace time goes backwards", path, ln);
		}
		if (sc->ntrace == cap) {
			size_t nc = cap ? cap * 2 : 256;
			struct sim_trace_event *ne = realloc(sc->trace, nc * sizeof(*ne));
			if (!ne) {
				free(text);
				return perr(p, key, "out of memory");
			}
			sc->trace = ne;
			cap = nc;
		}
		sc->trace[sc->ntrace].t_ns = t * 1000000;
		sc->trace[sc->ntrace].pages = n;
		sc->ntrace++;
	}
	free(text);
	if (!sc->ntrace)
		return perr(p, key, "trace \"%s\" has no event", path);
	return 1;
}

static int set_value(struct pctx *p, const struct key *k, const char *v)
{
	void *base = k->sec == SEC_DEVICE ? (void *)p->dev : (void *)p->sc;
	void *dst = (char *)base + k->off;
	uint64_t u;
	double d;
	int b, r;

	switch (k->kind) {
	case K_SIZE:
		r = sim_parse_size(v, &u);
		if (r == -ERANGE)
			return perr(p, k->name, "size \"%s\" is too large", v);
		if (r < 0)
			return perr(p, k->name, "bad size \"%s\" (a number with K, M, G or T, e.g. 64G)", v);
		*(uint64_t *)dst = u;
		return 1;
	case K_RATE_OPT:
		if (!*v) {
			*(uint64_t *)dst = 0;
			return 1;
		}
		/* fall through */
	case K_RATE:
		r = sim_parse_rate(v, &u);
		if (r == -ERANGE)
			return perr(p, k->name, "rate \"%s\" is too large", v);
		if (r < 0)
			return perr(p, k->name, "bad rate \"%s\" (bytes: 500M/s; bits: 10Gbit/s)", v);
		*(uint64_t *)dst = u;
		return 1;
	case K_TIME:
		r = sim_parse_time(v, &u);
		if (r == -ERANGE)
			return perr(p, k->name, "time \"%s\" is too large", v);
		if (r < 0)
			return perr(p, k->name, "bad time \"%s\" (a number with ms or s, e.g. 300ms)", v);
		*(uint64_t *)dst = u;
		return 1;
	case K_U32:
	case K_PERCENT:
		r = parse_uint(v, k->kind == K_PERCENT ? 99 : UINT32_MAX, &u);
		if (r == -ERANGE)
			return perr(p, k->name, "%s is out of range (0..%u)", v, k->kind == K_PERCENT ? 99u : UINT32_MAX);
		if (r < 0)
			return perr(p, k->name, "bad number \"%s\"", v);
		*(uint32_t *)dst = (uint32_t)u;
		return 1;
	case K_U64:
		r = parse_uint(v, UINT64_MAX, &u);
		if (r == -ERANGE)
			return perr(p, k->name, "%s is out of range (0..%llu)", v, (unsigned long long)UINT64_MAX);
		if (r < 0)
			return perr(p, k->name, "bad number \"%s\"", v);
		*(uint64_t *)dst = u;
		return 1;
	case K_FRACTION:
	case K_POSITIVE:
		if (parse_double(v, &d) < 0)
			return perr(p, k->name, "bad number \"%s\"", v);
		if (k->kind == K_FRACTION && (d < 0.0 || d > 1.0))
			return perr(p, k->name, "%s is out of range (0..1)", v);
		if (k->kind == K_POSITIVE && !(d > 0.0))
			return perr(p, k->name, "%s must be > 0", v);
		*(double *)dst = d;
		return 1;
	case K_BOOL:
		if (parse_bool(v, &b) < 0)
			return perr(p, k->name, "bad boolean \"%s\" (yes or no)", v);
		*(int *)dst = b;
		return 1;
	case K_MODEL: {
		static const char *const m[] = { "uniform", "hotset", "zipf", "sequential", "phases", "trace" };
		for (int i = 0; i < 6; i++)
			if (!strcmp(v, m[i])) {
				*(int *)dst = i;
				return 1;
			}
		return perr(p, k->name, "unknown model \"%s\" (uniform, hotset, zipf, sequential, phases, trace)", v);
	}
	case K_ACTION:
		if (!strcmp(v, "cancel"))
			*(uint32_t *)dst = PRECOPY_TIMEOUT_CANCEL;
		else if (!strcmp(v, "force"))
			*(uint32_t *)dst = PRECOPY_TIMEOUT_FORCE;
		else
			return perr(p, k->name, "unknown action \"%s\" (cancel or force)", v);
		return 1;
	case K_POLICY: {
		int pol = sim_policy_parse(v);

		if (pol < 0)
			return perr(p, k->name, "unknown policy \"%s\" (precopy, qemu, ch or xen)", v);
		*(int *)dst = pol;
		return 1;
	}
	case K_PHASES:
		return parse_phases(p, k->name, v);
	case K_TRACE:
		return parse_trace(p, k->name, v);
	}
	return perr(p, k->name, "internal: unknown kind");
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *p = user;
	int (*seen)[NKEYS];
	char known[512] = "";

	if (p->failed)
		return 1;
	(void)section; /* the reader tracks sections, with their lines */
	if (p->sec == SEC_NONE && !p->secname[0])
		return perr(p, NULL, "%s: key outside of any section", name);
	if (p->sec == SEC_NONE)
		return 1; /* the unknown section was reported */
	seen = p->sec == SEC_DEVICE ? &p->seen_line[1 + (p->dev - p->sc->devs)] : &p->seen_line[0];
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].sec != p->sec)
			continue;
		if (strcmp(keys[i].name, name)) {
			size_t n = strlen(known);
			snprintf(known + n, sizeof(known) - n, "%s%s", n ? ", " : "", keys[i].name);
			continue;
		}
		if ((*seen)[i])
			return perr(p, name, "set twice (first on line %d)", (*seen)[i]);
		(*seen)[i] = p->line;
		if (!*value && keys[i].kind != K_RATE_OPT)
			return perr(p, name, "no value");
		return set_value(p, &keys[i], value);
	}
	return perr(p, name, "unknown key (known: %s)", known);
}

/* Section headers, as the reader passes them to libinih. */
static void watch_sections(struct pctx *p, const char *line)
{
	const char *s = skip_ws(line), *e;
	char name[128];

	if (*s != '[' || p->failed)
		return;
	e = strchr(s, ']');
	if (!e)
		return; /* libinih reports the syntax error */
	snprintf(name, sizeof(name), "%.*s", (int)(e - s - 1), s + 1);
	/* libinih strips the name's blanks the same way */
	{
		char *a = name, *z = name + strlen(name);
		while (*a == ' ' || *a == '\t')
			a++;
		while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
			*--z = '\0';
		memmove(name, a, strlen(a) + 1);
	}
	enter_section(p, name);
}

static char *counting_reader(char *str, int num, void *stream)
{
	char *r = reader(str, num, stream);

	if (r)
		watch_sections(stream, r);
	return r;
}

/* Find the line of the key a cross-key message names ("[sec] key: ..."). */
static int line_of(struct pctx *p, const char *msg, const char **rest)
{
	char sec[128], key[64];
	int n = 0;

	*rest = msg;
	if (sscanf(msg, "[%127[^]]] %63[^:]:%n", sec, key, &n) != 2 || !n)
		return 0;
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].name, key))
			continue;
		if (keys[i].sec == SEC_DEVICE && !strncmp(sec, "device.", 7)) {
			for (uint32_t d = 0; d < p->sc->ndevs; d++)
				if (!strcmp(p->sc->devs[d].name, sec + 7))
					return p->seen_line[1 + d][i] ? p->seen_line[1 + d][i] : p->sc->devs[d].line;
		} else if (keys[i].sec != SEC_DEVICE && !strcmp(sec_names[keys[i].sec], sec)) {
			if (p->seen_line[0][i])
				return p->seen_line[0][i];
		}
	}
	/* not set: point at the model line for workload needs */
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].sec == SEC_WORKLOAD && !strcmp(keys[i].name, "model") && !strcmp(sec, "workload"))
			return p->seen_line[0][i];
	return 0;
}

int sim_scenario_parse_string(struct sim_scenario *sc, const char *name, const char *text, char *err,
			      size_t err_len)
{
	struct pctx *p;
	char msg[SIM_ERR_MAX];
	int r, ln;
	const char *rest;

	sim_scenario_init(sc);
	snprintf(sc->source, sizeof(sc->source), "%s", name);
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, err_len, "%s: out of memory", name);
		return -ENOMEM;
	}
	p->sc = sc;
	p->name = name;
	p->dir_of = name;
	p->text = text;
	p->sec = SEC_NONE;
	p->err = err;
	p->err_len = err_len;
	r = ini_parse_stream(counting_reader, p, handler, p);
	if (r > 0 && (!p->failed || r < p->err_line)) {
		/* libinih's own complaint comes first (a line it could not read) */
		snprintf(err, err_len, "%s:%d: syntax error (expected [section] or key = value)", name, r);
		free(p);
		return -EINVAL;
	}
	if (p->failed) {
		free(p);
		return -EINVAL;
	}
	if (r != 0) {
		snprintf(err, err_len, "%s:%d: syntax error (expected [section] or key = value)", name, r);
		free(p);
		return -EINVAL;
	}
	if (sim_scenario_check(sc, msg, sizeof(msg)) < 0) {
		ln = line_of(p, msg, &rest);
		if (ln)
			snprintf(err, err_len, "%s:%d: %s", name, ln, msg);
		else
			snprintf(err, err_len, "%s: %s", name, msg);
		free(p);
		return -EINVAL;
	}
	free(p);
	return 0;
}

/* A value of a key's kind as a scenario would write it (for defaults). */
static void format_value(char *b, size_t n, int kind, const void *dst)
{
	static const char units[] = "KMGT";
	uint64_t u = kind == K_U32 || kind == K_PERCENT || kind == K_ACTION ? *(const uint32_t *)dst
		     : kind == K_SIZE || kind == K_RATE || kind == K_RATE_OPT || kind == K_TIME || kind == K_U64
			     ? *(const uint64_t *)dst
			     : 0;
	int i;

	switch (kind) {
	case K_SIZE:
	case K_RATE:
	case K_RATE_OPT:
		if (kind == K_RATE_OPT && !u) {
			snprintf(b, n, "(measured)");
			return;
		}
		for (i = 3; i >= 0 && (!u || u % (1ull << (10 * (i + 1)))); i--)
			;
		if (kind != K_SIZE && u && i < 0 && u <= UINT64_MAX / 8 && !(u * 8 % 1000000000ull))
			snprintf(b, n, "%lluGbit/s", (unsigned long long)(u * 8 / 1000000000ull));
		else if (i >= 0)
			snprintf(b, n, "%llu%c%s", (unsigned long long)(u >> (10 * (i + 1))), units[i],
				 kind == K_SIZE ? "" : "/s");
		else
			snprintf(b, n, "%llu%s", (unsigned long long)u, kind == K_SIZE ? "" : "/s");
		return;
	case K_TIME:
		if (u % 1000000ull)
			snprintf(b, n, "%lluus", (unsigned long long)(u / 1000));
		else if (u % 1000000000ull)
			snprintf(b, n, "%llums", (unsigned long long)(u / 1000000));
		else
			snprintf(b, n, "%llus", (unsigned long long)(u / 1000000000ull));
		return;
	case K_U32:
	case K_U64:
	case K_PERCENT:
		snprintf(b, n, "%llu", (unsigned long long)u);
		return;
	case K_FRACTION:
	case K_POSITIVE:
		snprintf(b, n, "%g", *(const double *)dst);
		return;
	case K_BOOL:
		snprintf(b, n, "%s", *(const int *)dst ? "yes" : "no");
		return;
	case K_MODEL: {
		static const char *const m[] = { "uniform", "hotset", "zipf", "sequential", "phases", "trace" };
		int v = *(const int *)dst;
		snprintf(b, n, "%s", v >= 0 && v < 6 ? m[v] : "?");
		return;
	}
	case K_ACTION:
		snprintf(b, n, "%s", u == PRECOPY_TIMEOUT_FORCE ? "force" : "cancel");
		return;
	case K_POLICY:
		snprintf(b, n, "%s", sim_policy_name(*(const int *)dst) ? sim_policy_name(*(const int *)dst) : "?");
		return;
	}
	snprintf(b, n, "(none)");
}

void sim_scenario_keys_help(FILE *f)
{
	static const char *const kinds[] = {
		[K_SIZE] = "size", [K_RATE] = "rate", [K_TIME] = "time", [K_U32] = "integer", [K_U64] = "integer",
		[K_FRACTION] = "number", [K_POSITIVE] = "number", [K_BOOL] = "yes/no", [K_MODEL] = "name",
		[K_ACTION] = "name", [K_POLICY] = "name", [K_PHASES] = "list", [K_TRACE] = "path",
		[K_PERCENT] = "percent", [K_RATE_OPT] = "rate",
	};
	struct sim_scenario sc;
	struct sim_device dev;
	int sec = SEC_NONE;

	sim_scenario_init(&sc);
	sim_device_init(&dev, "d");
	fprintf(f, "scenario keys (KEY  KIND  DEFAULT  meaning):\n"
		   "  sizes take K, M, G, T (powers of 1024); rates are sizes per second (500M/s)\n"
		   "  or bits per second (10Gbit/s, powers of 1000); times take us, ms or s\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char def[64];

		if (k->sec != sec) {
			sec = k->sec;
			fprintf(f, "  [%s%s]\n", sec_names[sec], sec == SEC_DEVICE ? ".NAME" : "");
		}
		if (k->kind == K_PHASES || k->kind == K_TRACE)
			snprintf(def, sizeof(def), "(none)");
		else
			format_value(def, sizeof(def), k->kind,
				     (const char *)(k->sec == SEC_DEVICE ? (const void *)&dev : (const void *)&sc) + k->off);
		fprintf(f, "    %-20s %-8s %-12s %s\n", k->name, kinds[k->kind], def, k->help);
	}
	sim_scenario_release(&sc);
}

int sim_scenario_set(struct sim_scenario *sc, const char *origin, const char *section, const char *key,
		     const char *value, char *err, size_t err_len)
{
	struct pctx *p;
	char msg[SIM_ERR_MAX];
	int r = -EINVAL;

	if (err_len)
		err[0] = '\0';
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, err_len, "%s: out of memory", origin);
		return -ENOMEM;
	}
	p->sc = sc;
	p->name = origin;
	p->err = err;
	p->err_len = err_len;
	p->sec = SEC_NONE;
	snprintf(p->secname, sizeof(p->secname), "%s", section);
	for (int i = 0; i < SEC_DEVICE; i++)
		if (!strcmp(section, sec_names[i]))
			p->sec = i;
	for (size_t i = 0; i < NKEYS && p->sec != SEC_NONE; i++) {
		if (keys[i].sec != p->sec || strcmp(keys[i].name, key))
			continue;
		if (!*value && keys[i].kind != K_RATE_OPT)
			perr(p, key, "no value");
		else
			set_value(p, &keys[i], value);
		if (p->failed)
			break;
		if (sim_scenario_check(sc, msg, sizeof(msg)) < 0) {
			snprintf(err, err_len, "%s: %s", origin, msg);
			break;
		}
		r = 0;
		break;
	}
	if (r < 0 && !p->failed && !err[0])
		snprintf(err, err_len, "%s: [%s] %s: no such key", origin, section, key);
	free(p);
	return r;
}

int sim_scenario_load(struct sim_scenario *sc, const char *path, char *err, size_t err_len)
{
	char *text;
	int r;

	sim_scenario_init(sc);
	r = read_text_file(path, SIM_SCENARIO_MAX_BYTES, "a scenario", &text, err, err_len);
	if (r < 0)
		return r;
	r = sim_scenario_parse_string(sc, path, text, err, err_len);
	free(text);
	return r;
}
