/* SPDX-License-Identifier: MIT */
/* perf/lib/bench.c — timing, statistics, limit loops, thread team, options
 * and output for the perf/bench-* programs. See bench.h. */
#include "bench.h"

#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- time and statistics ---------------------------------------------- */

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_samples_add(struct bench_samples *s, uint64_t ns)
{
	if (s->n < BENCH_MAX_REPS)
		s->ns[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

double bench_samples_quantile(const struct bench_samples *s, double q)
{
	uint64_t v[BENCH_MAX_REPS];
	double pos, frac;
	int i;

	if (s->n == 0)
		return 0;
	memcpy(v, s->ns, sizeof(v[0]) * (size_t)s->n);
	qsort(v, (size_t)s->n, sizeof(v[0]), cmp_u64);
	q = q < 0 ? 0 : q > 1 ? 1 : q;
	pos = q * (s->n - 1);
	i = (int)pos;
	frac = pos - i;
	if (i + 1 >= s->n)
		return (double)v[s->n - 1];
	return (double)v[i] * (1 - frac) + (double)v[i + 1] * frac;
}

double bench_samples_median(const struct bench_samples *s)
{
	return bench_samples_quantile(s, 0.5);
}

double bench_samples_min(const struct bench_samples *s)
{
	uint64_t m = UINT64_MAX;

	for (int i = 0; i < s->n; i++)
		m = s->ns[i] < m ? s->ns[i] : m;
	return s->n ? (double)m : 0;
}

double bench_samples_max(const struct bench_samples *s)
{
	uint64_t m = 0;

	for (int i = 0; i < s->n; i++)
		m = s->ns[i] > m ? s->ns[i] : m;
	return (double)m;
}

double bench_gbps(uint64_t bytes, double ns)
{
	return ns > 0 ? (double)bytes / ns : 0;
}

static volatile uint64_t sink;

void bench_sink(uint64_t v)
{
	sink ^= v;
}

/* ---- limit loops -------------------------------------------------------- */

/* The limit loops are the plainest C that does the job; the compiler
 * vectorizes them (GCC: -O3 for these functions only, whatever CFLAGS say;
 * clang vectorizes at -O2 already and has no `optimize` attribute). They are
 * noinline and take their buffers through restrict pointers, so the
 * vectorizer needs no aliasing checks, and their results are stored to
 * memory the caller owns (or returned and sunk), so nothing is dropped. */
#if defined(__clang__)
#define VEC_OPT
#define T_AVX512 __attribute__((target("avx512f")))
#else
#define VEC_OPT __attribute__((optimize("O3,tree-vectorize")))
#define T_AVX512 __attribute__((target("avx512f,prefer-vector-width=512")))
#endif
#define T_AVX2 __attribute__((target("avx2")))
#define T_SSE2

#define DEFINE_LIMITS(sfx, tgt)                                                          \
	__attribute__((noinline)) VEC_OPT tgt static void                                \
	or_##sfx(uint64_t *restrict b, const uint64_t *restrict a, size_t n)             \
	{                                                                                \
		for (size_t i = 0; i < n; i++)                                           \
			b[i] |= a[i];                                                    \
	}                                                                                \
	__attribute__((noinline)) VEC_OPT tgt static uint64_t                            \
	read_##sfx(const uint64_t *restrict a, size_t n)                                 \
	{                                                                                \
		uint64_t r = 0;                                                          \
		for (size_t i = 0; i < n; i++)                                           \
			r |= a[i];                                                       \
		return r;                                                                \
	}                                                                                \
	__attribute__((noinline)) VEC_OPT tgt static void                                \
	rmw_##sfx(uint64_t *restrict b, uint64_t x, size_t n)                            \
	{                                                                                \
		for (size_t i = 0; i < n; i++)                                           \
			b[i] |= x;                                                       \
	}                                                                                \
	__attribute__((noinline)) VEC_OPT tgt static void                                \
	or_clear_##sfx(uint64_t *restrict b, uint64_t *restrict a, size_t n)             \
	{                                                                                \
		for (size_t i = 0; i < n; i++) {                                         \
			b[i] |= a[i];                                                    \
			a[i] = 0;                                                        \
		}                                                                        \
	}

DEFINE_LIMITS(sse2, T_SSE2)
DEFINE_LIMITS(avx2, T_AVX2)
DEFINE_LIMITS(avx512, T_AVX512)

int bench_isa_supported(enum bench_isa isa)
{
	__builtin_cpu_init();
	switch (isa) {
	case BENCH_ISA_SSE2:
		return 1;
	case BENCH_ISA_AVX2:
		return __builtin_cpu_supports("avx2") != 0;
	case BENCH_ISA_AVX512:
		return __builtin_cpu_supports("avx512f") != 0;
	default:
		return 0;
	}
}

const char *bench_isa_name(enum bench_isa isa)
{
	static const char *const names[BENCH_ISA_COUNT] = {
		[BENCH_ISA_SSE2] = "sse2",
		[BENCH_ISA_AVX2] = "avx2",
		[BENCH_ISA_AVX512] = "avx512",
	};

	return (unsigned int)isa < BENCH_ISA_COUNT ? names[isa] : "?";
}

void bench_limit_or(enum bench_isa isa, uint64_t *b, const uint64_t *a, size_t n)
{
	switch (isa) {
	case BENCH_ISA_AVX512: or_avx512(b, a, n); break;
	case BENCH_ISA_AVX2: or_avx2(b, a, n); break;
	default: or_sse2(b, a, n); break;
	}
}

uint64_t bench_limit_read(enum bench_isa isa, const uint64_t *a, size_t n)
{
	switch (isa) {
	case BENCH_ISA_AVX512: return read_avx512(a, n);
	case BENCH_ISA_AVX2: return read_avx2(a, n);
	default: return read_sse2(a, n);
	}
}

void bench_limit_rmw(enum bench_isa isa, uint64_t *b, uint64_t x, size_t n)
{
	switch (isa) {
	case BENCH_ISA_AVX512: rmw_avx512(b, x, n); break;
	case BENCH_ISA_AVX2: rmw_avx2(b, x, n); break;
	default: rmw_sse2(b, x, n); break;
	}
}

void bench_limit_or_clear(enum bench_isa isa, uint64_t *b, uint64_t *a, size_t n)
{
	switch (isa) {
	case BENCH_ISA_AVX512: or_clear_avx512(b, a, n); break;
	case BENCH_ISA_AVX2: or_clear_avx2(b, a, n); break;
	default: or_clear_sse2(b, a, n); break;
	}
}

/* ---- thread team ---------------------------------------------------------- */

struct bench_team {
	unsigned int n;
	pthread_barrier_t start, done;
	bench_team_fn fn;
	void *arg;
	int stop;
	struct worker {
		struct bench_team *team;
		unsigned int index;
		pthread_t tid;
	} w[64];
};

static void *team_main(void *p)
{
	struct worker *w = p;
	struct bench_team *t = w->team;

	for (;;) {
		pthread_barrier_wait(&t->start);
		if (t->stop)
			return NULL;
		t->fn(t->arg, w->index, t->n);
		pthread_barrier_wait(&t->done);
	}
}

struct bench_team *bench_team_new(unsigned int nthreads)
{
	struct bench_team *t;
	unsigned int i;
	int err;

	if (nthreads < 1 || nthreads > 64) {
		fprintf(stderr, "bench: team of %u threads: out of [1, 64]\n", nthreads);
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		fprintf(stderr, "bench: out of memory\n");
		return NULL;
	}
	t->n = nthreads;
	if (nthreads == 1)
		return t;
	pthread_barrier_init(&t->start, NULL, nthreads);
	pthread_barrier_init(&t->done, NULL, nthreads);
	for (i = 1; i < nthreads; i++) {
		t->w[i].team = t;
		t->w[i].index = i;
		err = pthread_create(&t->w[i].tid, NULL, team_main, &t->w[i]);
		if (err) {
			fprintf(stderr, "bench: pthread_create: %s\n", strerror(err));
			/* The barriers count nthreads: they cannot release the
			 * workers already started, so this is fatal. */
			exit(2);
		}
	}
	return t;
}

void bench_team_run(struct bench_team *t, bench_team_fn fn, void *arg)
{
	if (t->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	t->fn = fn;
	t->arg = arg;
	pthread_barrier_wait(&t->start);
	fn(arg, 0, t->n);
	pthread_barrier_wait(&t->done);
}

void bench_team_free(struct bench_team *t)
{
	if (!t)
		return;
	if (t->n > 1) {
		t->stop = 1;
		pthread_barrier_wait(&t->start);
		for (unsigned int i = 1; i < t->n; i++)
			pthread_join(t->w[i].tid, NULL);
		pthread_barrier_destroy(&t->start);
		pthread_barrier_destroy(&t->done);
	}
	free(t);
}

void bench_split(size_t n, size_t align, unsigned int index, unsigned int nthreads,
		 size_t *begin, size_t *end)
{
	size_t per = n / nthreads;

	*begin = per * index / align * align;
	*end = index + 1 == nthreads ? n : per * (index + 1) / align * align;
	if (*begin > n)
		*begin = n;
	if (*end < *begin)
		*end = *begin;
}

/* ---- random numbers ----------------------------------------------------- */

uint64_t bench_rng_next(struct bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double bench_rng_unit(struct bench_rng *r)
{
	return ((double)(bench_rng_next(r) >> 11) + 1.0) / 9007199254740992.0;
}

/* ---- options -------------------------------------------------------------- */

int bench_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	default: break;
	}
	if (mul > 1 && (!strcmp(end, "iB") || !strcmp(end, "ib") || !strcmp(end, "B")))
		end += strlen(end);
	if (*end || v == 0 || v > UINT64_MAX / mul)
		return -EINVAL;
	*bytes = v * mul;
	return 0;
}

static void usage(FILE *f, const char *prog, const char *extra, int default_reps)
{
	fprintf(f,
		"usage: %s [--case NAME] [--size BYTES] [--variant V] [--reps N] [--json] [--list]\n"
		"       [--no-limit] [--aa]\n"
		"  --case NAME    run only the cases matching NAME (a name or a shell pattern)\n"
		"  --size BYTES   source bitmap size for every case (e.g. 64M, 1G; default per case)\n"
		"  --variant V    implementation variant (see below)\n"
		"  --reps N       repetitions per measurement (default %d; median reported)\n"
		"  --json         print one JSON object instead of one line per case\n"
		"  --list         print the case names and exit\n"
		"  --no-limit     skip the limit loops (for profiling the figure alone)\n"
		"  --aa           A/A check: time the limit loop in place of the measured call;\n"
		"                 every ratio should come out near 1 (validates the method)\n"
		"%s",
		prog, default_reps, extra ? extra : "");
}

int bench_parse_opts(struct bench_opts *o, int argc, char **argv, const char *extra,
		     int default_reps)
{
	static const struct option longopts[] = {
		{ "case", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "variant", required_argument, NULL, 'v' },
		{ "reps", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "list", no_argument, NULL, 'l' },
		{ "no-limit", no_argument, NULL, 'n' },
		{ "aa", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;
	long v;

	memset(o, 0, sizeof(*o));
	o->reps = default_reps;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:v:r:jlnah", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->case_pattern = optarg;
			break;
		case 's':
			if (bench_parse_size(optarg, &o->size_bytes) < 0) {
				fprintf(stderr, "%s: bad --size '%s' (want e.g. 4096, 64K, 32M, 1G)\n",
					argv[0], optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			o->variant = optarg;
			break;
		case 'r':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > BENCH_MAX_REPS) {
				fprintf(stderr, "%s: bad --reps '%s' (want 1..%d)\n", argv[0], optarg,
					BENCH_MAX_REPS);
				return -EINVAL;
			}
			o->reps = (int)v;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'l':
			o->list = 1;
			break;
		case 'n':
			o->no_limit = 1;
			break;
		case 'a':
			o->aa = 1;
			break;
		case 'h':
			usage(stdout, argv[0], extra, default_reps);
			return 1;
		default:
			usage(stderr, argv[0], extra, default_reps);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0], extra, default_reps);
		return -EINVAL;
	}
	return 0;
}

int bench_case_selected(const struct bench_opts *o, const char *name)
{
	return !o->case_pattern || fnmatch(o->case_pattern, name, 0) == 0;
}

/* ---- output ------------------------------------------------------------- */

void bench_line_init(struct bench_line *l, const char *name, double gbps, double limit_gbps)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->gbps = gbps;
	l->limit_gbps = limit_gbps;
}

static void line_add(struct bench_line *l, const char *key, const char *val, int is_str)
{
	if (l->nfields >= BENCH_MAX_FIELDS)
		return;
	snprintf(l->f[l->nfields].key, sizeof(l->f[0].key), "%s", key);
	snprintf(l->f[l->nfields].val, sizeof(l->f[0].val), "%s", val);
	l->f[l->nfields].is_str = is_str;
	l->nfields++;
}

void bench_line_num(struct bench_line *l, const char *key, const char *fmt, double v)
{
	char buf[64];

	if (!isfinite(v)) {
		line_add(l, key, "null", 0);
		return;
	}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(buf, sizeof(buf), fmt, v);
#pragma GCC diagnostic pop
	line_add(l, key, buf, 0);
}

void bench_line_int(struct bench_line *l, const char *key, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	line_add(l, key, buf, 0);
}

void bench_line_str(struct bench_line *l, const char *key, const char *v)
{
	line_add(l, key, v, 1);
}

static void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (strncmp(line, "model name", 10) || !p)
			continue;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		p[strcspn(p, "\n")] = 0;
		snprintf(buf, len, "%s", p);
		break;
	}
	fclose(f);
}

/* JSON string body: the values printed here are plain ASCII names, but
 * escape anyway. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void bench_report_begin(struct bench_report *r, const char *bench, const struct bench_opts *o,
			const char *notes)
{
	char model[128], date[32];
	time_t now = time(NULL);
	struct tm tm;

	memset(r, 0, sizeof(*r));
	r->json = o->json;
	r->out = stdout;
	r->bench = bench;
	cpu_model(model, sizeof(model));
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (r->json) {
		fprintf(r->out, "{\"bench\": ");
		json_str(r->out, bench);
		fprintf(r->out, ", \"date\": \"%s\", \"machine\": {\"cpus\": %ld, \"model\": ", date,
			sysconf(_SC_NPROCESSORS_ONLN));
		json_str(r->out, model);
		fprintf(r->out, "}, \"stat\": \"median\", \"reps\": %d, \"notes\": ", o->reps);
		json_str(r->out, notes ? notes : "");
		fprintf(r->out, ",\n \"cases\": [");
	} else {
		fprintf(r->out, "# %s %s cpus=%ld cpu=\"%s\" stat=median reps=%d\n", bench, date,
			sysconf(_SC_NPROCESSORS_ONLN), model, o->reps);
		if (notes)
			fprintf(r->out, "# %s\n", notes);
	}
	fflush(r->out);
}

void bench_report_line(struct bench_report *r, const struct bench_line *l)
{
	double ratio = l->limit_gbps > 0 ? l->gbps / l->limit_gbps : NAN;
	int i;

	if (r->json) {
		fprintf(r->out, "%s\n  {\"case\": ", r->ncases ? "," : "");
		json_str(r->out, l->name);
		fprintf(r->out, ", \"gbps\": %.3f, \"limit_gbps\": %.3f, \"ratio\": ", l->gbps,
			l->limit_gbps);
		if (isfinite(ratio))
			fprintf(r->out, "%.3f", ratio);
		else
			fprintf(r->out, "null");
		for (i = 0; i < l->nfields; i++) {
			fprintf(r->out, ", ");
			json_str(r->out, l->f[i].key);
			fprintf(r->out, ": ");
			if (l->f[i].is_str)
				json_str(r->out, l->f[i].val);
			else
				fprintf(r->out, "%s", l->f[i].val);
		}
		fprintf(r->out, "}");
	} else {
		fprintf(r->out, "case=%s gbps=%.3f limit_gbps=%.3f ratio=", l->name, l->gbps,
			l->limit_gbps);
		if (isfinite(ratio))
			fprintf(r->out, "%.3f", ratio);
		else
			fprintf(r->out, "nan");
		for (i = 0; i < l->nfields; i++)
			fprintf(r->out, " %s=%s", l->f[i].key,
				!l->f[i].is_str && !strcmp(l->f[i].val, "null") ? "nan" : l->f[i].val);
		fprintf(r->out, "\n");
	}
	fflush(r->out);
	r->ncases++;
}

void bench_report_end(struct bench_report *r)
{
	if (r->json)
		fprintf(r->out, "\n ]}\n");
	fflush(r->out);
}
