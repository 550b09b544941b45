/* SPDX-License-Identifier: MIT */
/* perf/lib/bench.h — shared helpers for the perf/bench-* programs.
 *
 * What every benchmark here does the same way:
 *  - time with CLOCK_MONOTONIC around one call (bench_now_ns);
 *  - repeat each measurement, interleaving the figure with its limit, and
 *    report the MEDIAN of the repetitions for both (struct bench_samples);
 *  - measure the machine's limit in the same run, on the same warm buffers,
 *    with plain loops the compiler vectorizes (bench_limit_*), trying every
 *    vector width the CPU runs and keeping the fastest;
 *  - print one "key=value ..." line per case, or JSON with --json
 *    (struct bench_report).
 *
 * Thread safety: the limit loops are reentrant. A struct bench_team, a
 * struct bench_report and a struct bench_samples are used by one thread at a
 * time (the team's workers are internal).
 */
#ifndef PRECOPY_PERF_BENCH_H
#define PRECOPY_PERF_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- time and statistics ---------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* CPU time of the whole process (all threads), CLOCK_PROCESS_CPUTIME_ID, in
 * nanoseconds: compared with the wall time of a call, it shows whether the
 * benchmark kept its CPU(s) or was preempted by other work on the machine. */
uint64_t bench_cpu_ns(void);

#define BENCH_MAX_REPS 1000

/* Durations of the repetitions of one measurement, in nanoseconds. */
struct bench_samples {
	uint64_t ns[BENCH_MAX_REPS];
	int n;
};

/* Append one duration (ignored beyond BENCH_MAX_REPS). */
void bench_samples_add(struct bench_samples *s, uint64_t ns);
/* Median (mean of the two middle values for an even count); 0 if empty. */
double bench_samples_median(const struct bench_samples *s);
/* The q-quantile (0 <= q <= 1, linear interpolation between ranks). */
double bench_samples_quantile(const struct bench_samples *s, double q);
double bench_samples_min(const struct bench_samples *s);
double bench_samples_max(const struct bench_samples *s);

/* GB/s (10^9 bytes per second) for `bytes` moved in `ns` nanoseconds. */
double bench_gbps(uint64_t bytes, double ns);

/* Keep a value alive so the compiler cannot drop the code computing it. */
void bench_sink(uint64_t v);

/* ---- limit loops -------------------------------------------------------- */

/* Instruction sets the limit loops are compiled for. Each is the same plain
 * C loop, vectorized by the compiler at -O3 for that target. */
enum bench_isa {
	BENCH_ISA_SSE2 = 0,   /* x86-64 baseline, 128-bit vectors */
	BENCH_ISA_AVX2 = 1,   /* 256-bit vectors */
	BENCH_ISA_AVX512 = 2, /* 512-bit vectors */
	BENCH_ISA_COUNT
};

/* 1 if this CPU runs `isa`. */
int bench_isa_supported(enum bench_isa isa);
/* "sse2", "avx2", "avx512". */
const char *bench_isa_name(enum bench_isa isa);

/* b[i] |= a[i] for i < n: read A, read B, write B. */
void bench_limit_or(enum bench_isa isa, uint64_t *b, const uint64_t *a, size_t n);
/* OR-reduce of a[0..n): a plain read of A. Returns the reduction. */
uint64_t bench_limit_read(enum bench_isa isa, const uint64_t *a, size_t n);
/* b[i] |= x for i < n: read B, write B (no second stream). */
void bench_limit_rmw(enum bench_isa isa, uint64_t *b, uint64_t x, size_t n);
/* b[i] |= a[i]; a[i] = 0 for i < n: the plain (non-atomic) snapshot-and-clear. */
void bench_limit_or_clear(enum bench_isa isa, uint64_t *b, uint64_t *a, size_t n);

/* ---- a team of threads for multi-threaded measurements ---------------- */

/* Runs fn(arg, index, nthreads) on nthreads threads at once: the caller is
 * index 0, the others are persistent workers (created once, so thread
 * creation is never timed). */
struct bench_team;
typedef void (*bench_team_fn)(void *arg, unsigned int index, unsigned int nthreads);

/* Returns NULL on failure (and says why on stderr). nthreads in [1, 64]. */
struct bench_team *bench_team_new(unsigned int nthreads);
/* Run fn on every thread of the team and return when all have finished. */
void bench_team_run(struct bench_team *team, bench_team_fn fn, void *arg);
void bench_team_free(struct bench_team *team);

/* [begin, end) of part `index` of `nthreads` equal parts of n items, each
 * boundary rounded down to a multiple of `align` items (the last part ends
 * at n). */
void bench_split(size_t n, size_t align, unsigned int index, unsigned int nthreads,
		 size_t *begin, size_t *end);

/* ---- random numbers ----------------------------------------------------- */

/* splitmix64: a fast, seedable, reproducible generator. */
struct bench_rng {
	uint64_t s;
};
uint64_t bench_rng_next(struct bench_rng *r);
/* Uniform double in (0, 1]. */
double bench_rng_unit(struct bench_rng *r);

/* ---- options -------------------------------------------------------------- */

struct bench_opts {
	const char *case_pattern; /* --case: a case name or fnmatch pattern */
	uint64_t size_bytes;      /* --size: 0 = each case's default */
	const char *variant;      /* --variant: benchmark-specific, NULL = default */
	int reps;                 /* --reps: repetitions per measurement */
	int json;                 /* --json */
	int list;                 /* --list: print the case names and exit */
	int no_limit;             /* --no-limit: skip the limit loops (profiling) */
	int aa;                   /* --aa: time the limit loop in place of the figure
				   * (an A/A check of the method: ratios near 1) */
};

/* Parse the common options. Returns 0, 1 if --help was printed (exit 0),
 * or -EINVAL after printing the problem and the usage to stderr. */
int bench_parse_opts(struct bench_opts *o, int argc, char **argv, const char *usage_extra,
		     int default_reps);

/* Parse "256M", "32MiB", "4096", "1G", "64K" as bytes. Returns 0 or -EINVAL. */
int bench_parse_size(const char *s, uint64_t *bytes);

/* 1 if case `name` is selected by the options. */
int bench_case_selected(const struct bench_opts *o, const char *name);

/* ---- output ------------------------------------------------------------- */

#define BENCH_MAX_FIELDS 32

/* One result line: case=<name> gbps=<g> limit_gbps=<l> ratio=<g/l> and then
 * extra fields in the order they were added. */
struct bench_line {
	char name[64];
	double gbps, limit_gbps;
	int nfields;
	struct {
		char key[32];
		char val[96];
		int is_str; /* quote in JSON */
	} f[BENCH_MAX_FIELDS];
};

void bench_line_init(struct bench_line *l, const char *name, double gbps, double limit_gbps);
/* Add a numeric field printed with printf format `fmt` (e.g. "%.3f"). */
void bench_line_num(struct bench_line *l, const char *key, const char *fmt, double v);
void bench_line_int(struct bench_line *l, const char *key, int64_t v);
void bench_line_str(struct bench_line *l, const char *key, const char *v);

/* Collects the lines of one run. Text mode prints each line as it comes
 * (header lines start with '#'); JSON mode prints one object at the end:
 *   {"bench": ..., "machine": {...}, "stat": "median", "reps": N,
 *    "cases": [{"case": ..., "gbps": ..., ...}, ...]} */
struct bench_report {
	int json;
	int ncases;
	FILE *out;
	const char *bench;
};

/* Start a report: prints the header (machine, date, statistic). */
void bench_report_begin(struct bench_report *r, const char *bench, const struct bench_opts *o,
			const char *notes);
void bench_report_line(struct bench_report *r, const struct bench_line *l);
void bench_report_end(struct bench_report *r);

#endif /* PRECOPY_PERF_BENCH_H */
