/* SPDX-License-Identifier: MIT */
/* perf/bench-bitmap.c — the bitmap engine against this machine's limits.
 *
 * One line per case:
 *   case=<name> gbps=<GB/s> limit_gbps=<GB/s> ratio=<gbps/limit> ...
 * gbps is GB/s (10^9 bytes/s) of the SOURCE bitmap processed, except for the
 * expansion case, whose line says basis=dst: there it is GB/s of the
 * DESTINATION bitmap written (also printed as gbps_dst=).
 *
 * The limit is measured in the same run, on the same (warm) buffers, by a
 * plain loop the compiler vectorizes (perf/lib/bench.c), for every vector
 * width the CPU runs (sse2, avx2, avx512); the fastest one is the limit and
 * its name is printed (limit=<loop>.<isa>). Figure and limit repetitions are
 * interleaved and both are reported as the median over --reps repetitions
 * (cases whose buffers total under 16 MiB are repeated up to 64x more; the
 * line's reps= says how many).
 * Before every timed call (figure or limit) the destination is reset to the
 * same state, untimed.
 *
 * Each case also checks the library's result (the returned count and the
 * destination's contents) against a plain reference, untimed: a wrong
 * result prints check=FAIL and makes the exit status 1.
 *
 * See perf/README.md for what each case measures and the targets.
 */
#include "lib/bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <precopy.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)

enum kind { K_MERGE, K_SCALED, K_EXTRACT, K_RUNS, K_HARVEST, K_LIVE, K_PARALLEL };
enum fill { F_DENSE, F_RANDOM, F_CLUSTER };
enum limk { L_OR, L_READ, L_RMW, L_OR_CLEAR, L_CH_RUNS };
enum tgt { T_NONE, T_RATIO_MIN, T_GBPS_MIN, T_NSPP_MAX };

static const char *const limk_name[] = {
	[L_OR] = "or", [L_READ] = "read", [L_RMW] = "rmw", [L_OR_CLEAR] = "or+clear",
	[L_CH_RUNS] = "ch-runs",
};

/* Bits per cluster for F_CLUSTER: a 2 MiB region of 4 KiB pages (a huge
 * page or a DMA burst), starting at any bit. */
#define CLUSTER_BITS 512

/* Batch size for extraction and runs: what a sender would hand to one
 * writev/io_uring submission. 32 KiB of indices fit in L1. */
#define BATCH 4096

struct bcase {
	const char *name;
	enum kind kind;
	uint64_t src_bytes; /* default source bitmap size (--size overrides) */
	enum fill fill;
	double density;     /* F_RANDOM, F_CLUSTER: fraction of bits set */
	uint64_t dst_bit;   /* K_MERGE: where source bit 0 lands */
	uint64_t src_ps, dst_ps; /* K_SCALED: page sizes */
	unsigned int nthreads;   /* K_PARALLEL */
	enum limk lim;
	enum tgt tkind;
	double target;
	const char *what;
};

static const struct bcase cases[] = {
	{ "merge-dense-1M", K_MERGE, 1 * MiB, F_DENSE, 0.5, 0, 0, 0, 0, L_OR, T_NONE, 0,
	  "precopy_bitmap_merge, aligned, 50% random, L2-resident (kernel speed); limit B|=A" },
	{ "merge-dense-32M", K_MERGE, 32 * MiB, F_DENSE, 0.5, 0, 0, 0, 0, L_OR, T_RATIO_MIN, 0.95,
	  "precopy_bitmap_merge, aligned, 50% random source; limit B|=A" },
	{ "merge-dense-256M", K_MERGE, 256 * MiB, F_DENSE, 0.5, 0, 0, 0, 0, L_OR, T_RATIO_MIN, 0.95,
	  "precopy_bitmap_merge, aligned, 50% random source; limit B|=A" },
	{ "merge-sparse-1pct", K_MERGE, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_READ, T_RATIO_MIN,
	  0.70, "precopy_bitmap_merge, 1% of bits set at random; limit plain read of A" },
	{ "merge-sparse-1pct-vs-or", K_MERGE, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_OR, T_NONE, 0,
	  "merge-sparse-1pct judged against B|=A: 99.4% of its 64-byte lines hold a set bit, so "
	  "B must be read and written almost whole" },
	{ "merge-sparse-0.01pct", K_MERGE, 32 * MiB, F_RANDOM, 0.0001, 0, 0, 0, 0, L_READ,
	  T_RATIO_MIN, 0.70,
	  "precopy_bitmap_merge, 0.01% of bits set at random; limit plain read of A" },
	{ "merge-sparse-1pct-clustered", K_MERGE, 32 * MiB, F_CLUSTER, 0.01, 0, 0, 0, 0, L_READ,
	  T_NONE, 0, "precopy_bitmap_merge, 1% of bits set in runs of 512; limit plain read of A" },
	{ "merge-unaligned-13", K_MERGE, 32 * MiB, F_DENSE, 0.5, 13, 0, 0, 0, L_OR, T_RATIO_MIN,
	  0.90, "precopy_bitmap_merge at dst_bit 13, 50% random source; limit aligned B|=A" },
	{ "expand-64k-4k", K_SCALED, 128 * KiB, F_DENSE, 0.5, 0, 64 * KiB, 4 * KiB, 0, L_RMW,
	  T_GBPS_MIN, 10.0,
	  "precopy_bitmap_merge_scaled 64K->4K (x16), 2 MiB dst (L2), GB/s of DESTINATION; limit dst read-modify-write" },
	{ "expand-64k-4k-32M", K_SCALED, 2 * MiB, F_DENSE, 0.5, 0, 64 * KiB, 4 * KiB, 0, L_RMW,
	  T_NONE, 0,
	  "precopy_bitmap_merge_scaled 64K->4K (x16), 32 MiB dst (DRAM), GB/s of DESTINATION; limit dst read-modify-write" },
	{ "combine-4k-64k", K_SCALED, 32 * MiB, F_DENSE, 0.5, 0, 4 * KiB, 64 * KiB, 0, L_READ,
	  T_NONE, 0, "precopy_bitmap_merge_scaled 4K->64K (/16); limit plain read of A" },
	{ "extract-40pct", K_EXTRACT, 32 * MiB, F_RANDOM, 0.40, 0, 0, 0, 0, L_READ, T_NSPP_MAX, 0.5,
	  "precopy_bitmap_extract in batches of 4096, 40% random; limit plain read" },
	{ "extract-1pct", K_EXTRACT, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_READ, T_NONE, 0,
	  "precopy_bitmap_extract in batches of 4096, 1% random; limit plain read" },
	{ "extract-0.01pct", K_EXTRACT, 32 * MiB, F_RANDOM, 0.0001, 0, 0, 0, 0, L_READ, T_RATIO_MIN,
	  0.60, "precopy_bitmap_extract in batches of 4096, 0.01% random; limit plain read" },
	{ "runs-1pct-clustered", K_RUNS, 32 * MiB, F_CLUSTER, 0.01, 0, 0, 0, 0, L_READ, T_NONE, 0,
	  "precopy_bitmap_runs in batches of 4096, runs of 512; limit plain read" },
	{ "runs-40pct", K_RUNS, 32 * MiB, F_RANDOM, 0.40, 0, 0, 0, 0, L_READ, T_NONE, 0,
	  "precopy_bitmap_runs in batches of 4096, 40% random (short runs); limit plain read" },
	{ "runs-1pct-vs-ch", K_RUNS, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_CH_RUNS, T_RATIO_MIN,
	  1.2, "precopy_bitmap_runs, 1% random (isolated pages); peer: Cloud Hypervisor's algorithm" },
	{ "runs-1pct-clustered-vs-ch", K_RUNS, 32 * MiB, F_CLUSTER, 0.01, 0, 0, 0, 0, L_CH_RUNS,
	  T_RATIO_MIN, 2.0, "precopy_bitmap_runs, runs of 512; peer: Cloud Hypervisor's algorithm" },
	{ "runs-40pct-vs-ch", K_RUNS, 32 * MiB, F_RANDOM, 0.40, 0, 0, 0, 0, L_CH_RUNS, T_RATIO_MIN,
	  2.0, "precopy_bitmap_runs, 40% random (short runs); peer: Cloud Hypervisor's algorithm" },
	{ "harvest-1pct", K_HARVEST, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_OR_CLEAR, T_NONE, 0,
	  "precopy_bitmap_harvest (atomic xchg), 1% random live; limit plain B|=A;A=0" },
	{ "harvest-0.01pct", K_HARVEST, 32 * MiB, F_RANDOM, 0.0001, 0, 0, 0, 0, L_OR_CLEAR, T_NONE,
	  0, "precopy_bitmap_harvest (atomic xchg), 0.01% random live; limit plain B|=A;A=0" },
	{ "live-harvest-1pct", K_LIVE, 32 * MiB, F_RANDOM, 0.01, 0, 0, 0, 0, L_OR_CLEAR, T_RATIO_MIN,
	  0.5, "precopy_live_bitmap_harvest (flip, wait, plain drain), 1% random; limit plain B|=A;A=0" },
	{ "live-harvest-0.01pct", K_LIVE, 32 * MiB, F_RANDOM, 0.0001, 0, 0, 0, 0, L_OR_CLEAR,
	  T_NONE, 0, "precopy_live_bitmap_harvest, 0.01% random; limit plain B|=A;A=0" },
	{ "merge-parallel-1", K_PARALLEL, 64 * MiB, F_DENSE, 0.5, 0, 0, 0, 1, L_OR, T_NONE, 0,
	  "precopy_bitmap_merge_parallel, 1 worker; limit B|=A on 1 thread" },
	{ "merge-parallel-2", K_PARALLEL, 64 * MiB, F_DENSE, 0.5, 0, 0, 0, 2, L_OR, T_NONE, 0,
	  "precopy_bitmap_merge_parallel, 2 workers; limit B|=A split over 2 threads" },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* The state of one case while it runs. */
struct run {
	const struct bcase *c;
	struct precopy_bitmap src;  /* source; the live bitmap for harvest */
	struct precopy_bitmap dst;  /* destination; the snapshot for harvest */
	struct precopy_bitmap tmpl; /* harvest: what live is reset to */
	struct precopy_live_bitmap *live; /* K_LIVE; src is then the limit's copy */
	uint64_t src_bits, src_words, dst_bits, dst_words;
	uint64_t *pages;
	struct precopy_page_run *runs;
	struct precopy_merge_pool *pool;
	struct bench_team *team;
	int64_t expect;      /* the count the figure call must return */
	uint64_t ref_sum;    /* extract: sum of set-bit numbers; runs: sum of firsts */
	enum bench_isa isa;  /* for the team's limit loop */
};

/* ---- fills and references (untimed) ----------------------------------- */

static void set_bits(uint64_t *w, uint64_t first, uint64_t count, uint64_t nbits)
{
	uint64_t end = first + count < nbits ? first + count : nbits;

	for (uint64_t b = first; b < end; b++)
		w[b / 64] |= 1ull << (b % 64);
}

static void fill(uint64_t *w, uint64_t nbits, enum fill f, double p, uint64_t seed)
{
	struct bench_rng rng = { seed };
	uint64_t nwords = PRECOPY_BITMAP_WORDS(nbits);
	double lq;
	uint64_t pos;

	if (f == F_DENSE) {
		for (uint64_t i = 0; i < nwords; i++)
			w[i] = bench_rng_next(&rng);
		return;
	}
	memset(w, 0, nwords * 8);
	/* Gaps between set bits (or cluster starts) are geometric, so every
	 * bit (or cluster start) is independently chosen. */
	if (f == F_RANDOM) {
		lq = log1p(-p);
		for (pos = (uint64_t)floor(log(bench_rng_unit(&rng)) / lq); pos < nbits;
		     pos += 1 + (uint64_t)floor(log(bench_rng_unit(&rng)) / lq))
			w[pos / 64] |= 1ull << (pos % 64);
		return;
	}
	/* F_CLUSTER: clusters of CLUSTER_BITS, started with probability q per
	 * free bit so that the expected density is p. */
	lq = log1p(-(p / (1 - p)) / CLUSTER_BITS);
	for (pos = (uint64_t)floor(log(bench_rng_unit(&rng)) / lq); pos < nbits;
	     pos += CLUSTER_BITS + (uint64_t)floor(log(bench_rng_unit(&rng)) / lq))
		set_bits(w, pos, CLUSTER_BITS, nbits);
}

/* The destination's state before every timed call: a set bit every 8th
 * word, so merges have both new and already-set bits to count. */
static inline uint64_t pat(uint64_t j)
{
	return j % 8 == 0 ? 0x0101010101010101ull : 0;
}

static void dst_reset(uint64_t *w, uint64_t nwords)
{
	/* one pass over the memory */
	for (uint64_t j = 0; j < nwords; j += 8) {
		uint64_t rest = nwords - j - 1 < 7 ? nwords - j - 1 : 7;

		w[j] = pat(j);
		memset(&w[j + 1], 0, rest * 8);
	}
}

/* What the source contributes to destination word j. */
static uint64_t contrib(const struct run *r, uint64_t j)
{
	const struct bcase *c = r->c;
	const uint64_t *s = r->src.words;
	uint64_t v = 0;

	if (c->kind == K_SCALED && c->src_ps > c->dst_ps) {
		uint64_t ratio = c->src_ps / c->dst_ps, per = 64 / ratio;
		uint64_t m = ratio == 64 ? ~0ull : (1ull << ratio) - 1;

		for (uint64_t k = 0; k < per; k++) {
			uint64_t b = j * per + k;

			if (b < r->src_bits && (s[b / 64] >> (b % 64) & 1))
				v |= m << (k * ratio);
		}
		return v;
	}
	if (c->kind == K_SCALED) {
		uint64_t ratio = c->dst_ps / c->src_ps;
		uint64_t m = ratio == 64 ? ~0ull : (1ull << ratio) - 1;

		for (uint64_t k = 0; k < 64; k++) {
			uint64_t g = j * 64 + k, b = g * ratio; /* first source bit of group */

			if (b < r->src_bits && (s[b / 64] >> (b % 64) & m))
				v |= 1ull << k;
		}
		return v;
	}
	/* K_MERGE, K_PARALLEL: source bit i lands on dst bit dst_bit + i. */
	uint64_t q = c->dst_bit / 64, sh = c->dst_bit % 64;

	if (j >= q && j - q < r->src_words)
		v |= s[j - q] << sh;
	if (sh && j >= q + 1 && j - q - 1 < r->src_words)
		v |= s[j - q - 1] >> (64 - sh);
	return v;
}

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(w[i]);
	return c;
}

/* 0 if dst holds pat | contrib everywhere, else the first bad word + 1. */
static uint64_t verify_merge(const struct run *r)
{
	for (uint64_t j = 0; j < r->dst_words; j++)
		if (r->dst.words[j] != (pat(j) | contrib(r, j)))
			return j + 1;
	return 0;
}

/* ---- setup ---------------------------------------------------------------- */

static int alloc_bm(struct precopy_bitmap *bm, uint64_t nbits, const char *what)
{
	int err = precopy_bitmap_alloc(bm, nbits, PRECOPY_NUMA_LOCAL);

	if (err < 0)
		fprintf(stderr, "bench-bitmap: precopy_bitmap_alloc(%s, %llu bits): %s\n", what,
			(unsigned long long)nbits, strerror(-err));
	return err;
}

static int setup(struct run *r, const struct bcase *c, uint64_t src_bytes)
{
	int err;

	memset(r, 0, sizeof(*r));
	r->c = c;
	src_bytes = (src_bytes + 4095) & ~4095ull;
	r->src_words = src_bytes / 8;
	r->src_bits = src_bytes * 8;
	switch (c->kind) {
	case K_SCALED:
		r->dst_bits = c->src_ps > c->dst_ps ? r->src_bits * (c->src_ps / c->dst_ps)
						    : r->src_bits / (c->dst_ps / c->src_ps);
		break;
	case K_MERGE:
	case K_PARALLEL:
		r->dst_bits = (r->src_bits + c->dst_bit + 63) / 64 * 64;
		break;
	default:
		r->dst_bits = r->src_bits;
		break;
	}
	r->dst_words = PRECOPY_BITMAP_WORDS(r->dst_bits);

	err = alloc_bm(&r->src, r->src_bits, "src");
	if (err < 0)
		return err;
	if (c->kind != K_EXTRACT && c->kind != K_RUNS) {
		err = alloc_bm(&r->dst, r->dst_bits, "dst");
		if (err < 0)
			return err;
		dst_reset(r->dst.words, r->dst_words); /* touch every page */
	}
	fill(r->src.words, r->src_bits, c->fill, c->density, 0x5eed0000ull + (uint64_t)(c - cases));

	switch (c->kind) {
	case K_MERGE:
	case K_PARALLEL:
	case K_SCALED:
		r->expect = 0;
		for (uint64_t j = 0; j < r->dst_words; j++)
			r->expect += __builtin_popcountll(contrib(r, j) & ~pat(j));
		break;
	case K_EXTRACT: {
		r->expect = (int64_t)popcount_words(r->src.words, r->src_words);
		for (uint64_t i = 0; i < r->src_words; i++)
			for (uint64_t w = r->src.words[i]; w; w &= w - 1)
				r->ref_sum += i * 64 + (uint64_t)__builtin_ctzll(w);
		r->pages = malloc(BATCH * sizeof(*r->pages));
		if (!r->pages)
			return -ENOMEM;
		break;
	}
	case K_RUNS: {
		uint64_t carry = 0;

		for (uint64_t i = 0; i < r->src_words; i++) {
			uint64_t w = r->src.words[i], starts = w & ~(w << 1 | carry);

			r->expect += __builtin_popcountll(starts);
			for (; starts; starts &= starts - 1)
				r->ref_sum += i * 64 + (uint64_t)__builtin_ctzll(starts);
			carry = w >> 63;
		}
		r->runs = malloc(BATCH * sizeof(*r->runs));
		if (!r->runs)
			return -ENOMEM;
		break;
	}
	case K_LIVE:
		r->live = precopy_live_bitmap_new(r->src_bits, PRECOPY_NUMA_LOCAL, &err);
		if (!r->live) {
			fprintf(stderr, "bench-bitmap: precopy_live_bitmap_new: %s\n", strerror(-err));
			return err < 0 ? err : -ENOMEM;
		}
		/* fall through */
	case K_HARVEST:
		err = alloc_bm(&r->tmpl, r->src_bits, "template");
		if (err < 0)
			return err;
		memcpy(r->tmpl.words, r->src.words, r->src_words * 8);
		r->expect = (int64_t)popcount_words(r->tmpl.words, r->src_words);
		break;
	}
	if (c->kind == K_PARALLEL) {
		r->pool = precopy_merge_pool_new(c->nthreads, &err);
		if (!r->pool) {
			fprintf(stderr, "bench-bitmap: precopy_merge_pool_new(%u): %s\n", c->nthreads,
				strerror(-err));
			return err < 0 ? err : -EINVAL;
		}
		r->team = bench_team_new(c->nthreads);
		if (!r->team)
			return -ENOMEM;
	}
	return 0;
}

static void teardown(struct run *r)
{
	precopy_merge_pool_free(r->pool);
	bench_team_free(r->team);
	free(r->pages);
	free(r->runs);
	precopy_bitmap_free(&r->src);
	precopy_bitmap_free(&r->dst);
	precopy_bitmap_free(&r->tmpl);
	precopy_live_bitmap_free(r->live);
}

/* ---- the timed calls ------------------------------------------------------ */

/* Before every timed call, figure or limit. */
static void reset(struct run *r)
{
	switch (r->c->kind) {
	case K_MERGE:
	case K_PARALLEL:
	case K_SCALED:
		dst_reset(r->dst.words, r->dst_words);
		break;
	case K_LIVE: {
		/* the buffer writers are in now, as writers would leave it */
		struct precopy_live_section s;

		precopy_live_bitmap_enter(r->live, &s);
		memcpy(s.bm->words, r->tmpl.words, r->src_words * 8);
		precopy_live_bitmap_exit(&s);
		/* and src is what the limit drains */
		memcpy(r->src.words, r->tmpl.words, r->src_words * 8);
		memset(r->dst.words, 0, r->dst_words * 8);
		break;
	}
	case K_HARVEST:
		memcpy(r->src.words, r->tmpl.words, r->src_words * 8);
		memset(r->dst.words, 0, r->dst_words * 8);
		break;
	default:
		break;
	}
}

/* The library call. Returns its result (a count or -errno). */
static int64_t figure(struct run *r)
{
	const struct bcase *c = r->c;
	uint64_t cursor = 0;
	int64_t n, total = 0;

	switch (c->kind) {
	case K_MERGE:
		return precopy_bitmap_merge(&r->dst, c->dst_bit, r->src.words, r->src_bits);
	case K_PARALLEL:
		return precopy_bitmap_merge_parallel(r->pool, &r->dst, c->dst_bit, r->src.words,
						     r->src_bits);
	case K_SCALED:
		return precopy_bitmap_merge_scaled(&r->dst, c->dst_ps, 0, r->src.words, r->src_bits,
						   c->src_ps);
	case K_EXTRACT:
		while ((n = precopy_bitmap_extract(&r->src, &cursor, r->pages, BATCH)) > 0)
			total += n;
		return n < 0 ? n : total;
	case K_RUNS:
		while ((n = precopy_bitmap_runs(&r->src, &cursor, r->runs, BATCH)) > 0)
			total += n;
		return n < 0 ? n : total;
	case K_HARVEST:
		return precopy_bitmap_harvest(&r->src, &r->dst);
	case K_LIVE:
		return precopy_live_bitmap_harvest(r->live, &r->dst);
	}
	return -EINVAL;
}

static void team_or(void *arg, unsigned int index, unsigned int nthreads)
{
	struct run *r = arg;
	size_t b, e;

	bench_split(r->src_words, 512, index, nthreads, &b, &e);
	bench_limit_or(r->isa, r->dst.words + b, r->src.words + b, e - b);
}

/* The peer for the runs-*-vs-ch cases, written here after the algorithm of
 * Cloud Hypervisor's MemoryRangeTable::from_dirty_bitmap (vm-migration,
 * protocol.rs): a word at a time, each set bit found by a trailing-zero
 * scan, either extends the current range (it is the page right after it)
 * or starts a new one. Ranges go into the same BATCH-sized buffer the
 * library fills (flushed, as a sender would, when full), so that the two
 * differ in algorithm only, not in allocation. Returns the range count. */
static int64_t ch_runs(const uint64_t *words, uint64_t nwords, struct precopy_page_run *out)
{
	uint64_t end = UINT64_MAX; /* one past the current range's last page */
	size_t c = 0;
	int64_t total = 0;

	for (uint64_t i = 0; i < nwords; i++) {
		for (uint64_t w = words[i]; w; w &= w - 1) {
			uint64_t page = i * 64 + (uint64_t)__builtin_ctzll(w);

			if (c && page == end) {
				out[c - 1].count++;
			} else {
				if (c == BATCH) {
					total += (int64_t)c;
					bench_sink(out[c - 1].first);
					c = 0;
				}
				out[c].first = page;
				out[c].count = 1;
				c++;
			}
			end = page + 1;
		}
	}
	return total + (int64_t)c;
}

/* The limit kinds that are one loop, not one per ISA (a peer's algorithm,
 * compiled as the library is): timed under the first ISA only. */
static int limit_isa_ok(const struct bcase *c, int isa)
{
	return bench_isa_supported((enum bench_isa)isa) && (c->lim != L_CH_RUNS || isa == 0);
}

/* The plain loop that stands for the machine's limit. */
static void limit(struct run *r, enum bench_isa isa)
{
	const struct bcase *c = r->c;

	switch (c->lim) {
	case L_OR:
		if (r->team) {
			r->isa = isa;
			bench_team_run(r->team, team_or, r);
		} else {
			bench_limit_or(isa, r->dst.words, r->src.words, r->src_words);
		}
		break;
	case L_READ:
		bench_sink(bench_limit_read(isa, r->src.words, r->src_words));
		break;
	case L_RMW:
		bench_limit_rmw(isa, r->dst.words, r->src.words[0] | 1, r->dst_words);
		break;
	case L_OR_CLEAR:
		bench_limit_or_clear(isa, r->dst.words, r->src.words, r->src_words);
		break;
	case L_CH_RUNS:
		bench_sink((uint64_t)ch_runs(r->src.words, r->src_words, r->runs));
		break;
	}
}

/* ---- checks --------------------------------------------------------------- */

/* Check the figure call's result and what it left behind; a message into
 * why on failure. Returns 0 if right. */
static int check(struct run *r, int64_t got, char *why, size_t len)
{
	const struct bcase *c = r->c;
	uint64_t bad, cursor = 0, sum = 0, prev_end = 0, nruns = 0, npages = 0;
	int64_t n;

	if (got < 0) {
		snprintf(why, len, "error:%s", strerror((int)-got));
		return -1;
	}
	if (got != r->expect) {
		snprintf(why, len, "count:%lld!=%lld", (long long)got, (long long)r->expect);
		return -1;
	}
	switch (c->kind) {
	case K_MERGE:
	case K_PARALLEL:
	case K_SCALED:
		bad = verify_merge(r);
		if (bad) {
			snprintf(why, len, "dst_word:%llu", (unsigned long long)(bad - 1));
			return -1;
		}
		break;
	case K_HARVEST:
		for (uint64_t i = 0; i < r->src_words; i++) {
			if (r->src.words[i] || r->dst.words[i] != r->tmpl.words[i]) {
				snprintf(why, len, "word:%llu", (unsigned long long)i);
				return -1;
			}
		}
		break;
	case K_LIVE:
		for (uint64_t i = 0; i < r->src_words; i++) {
			if (r->dst.words[i] != r->tmpl.words[i]) {
				snprintf(why, len, "word:%llu", (unsigned long long)i);
				return -1;
			}
		}
		/* nothing left behind in either buffer */
		for (int k = 0; k < 2; k++) {
			memset(r->dst.words, 0, r->dst_words * 8);
			n = precopy_live_bitmap_harvest(r->live, &r->dst);
			if (n != 0) {
				snprintf(why, len, "left:%lld", (long long)n);
				return -1;
			}
		}
		break;
	case K_EXTRACT:
		/* A second, untimed pass that looks at every number. */
		while ((n = precopy_bitmap_extract(&r->src, &cursor, r->pages, BATCH)) > 0) {
			for (int64_t i = 0; i < n; i++) {
				if ((npages || i) && r->pages[i] <= prev_end) {
					snprintf(why, len, "order");
					return -1;
				}
				prev_end = r->pages[i];
				sum += r->pages[i];
			}
			npages += (uint64_t)n;
		}
		if (n < 0 || sum != r->ref_sum || npages != (uint64_t)r->expect) {
			snprintf(why, len, "pages");
			return -1;
		}
		break;
	case K_RUNS:
		while ((n = precopy_bitmap_runs(&r->src, &cursor, r->runs, BATCH)) > 0) {
			for (int64_t i = 0; i < n; i++) {
				/* maximal runs: at least one clear bit between two */
				if (!r->runs[i].count || (nruns && r->runs[i].first <= prev_end)) {
					snprintf(why, len, "runs");
					return -1;
				}
				prev_end = r->runs[i].first + r->runs[i].count;
				sum += r->runs[i].first;
				npages += r->runs[i].count;
				nruns++;
			}
		}
		if (n < 0 || sum != r->ref_sum || nruns != (uint64_t)r->expect ||
		    npages != popcount_words(r->src.words, r->src_words)) {
			snprintf(why, len, "runs");
			return -1;
		}
		break;
	}
	return 0;
}

/* ---- one case --------------------------------------------------------- */

struct ctx {
	struct bench_opts o;
	struct bench_report rep;
	int failed; /* a check failed or a case could not run */
};

static struct bench_samples fig_s, cpu_s, lim_s[BENCH_ISA_COUNT], limt_s;

/* One limit-loop call from the reset state; its time into s (NULL: untimed). */
static void time_limit(struct run *r, int isa, struct bench_samples *s)
{
	uint64_t t0;

	reset(r);
	t0 = bench_now_ns();
	limit(r, (enum bench_isa)isa);
	if (s)
		bench_samples_add(s, bench_now_ns() - t0);
}

static void run_case(struct ctx *x, const struct bcase *c)
{
	struct run r;
	struct bench_line l;
	char why[64] = "", buf[160], target[48] = "";
	uint64_t t0, t1, c0, c1, basis_bytes, nthr = c->kind == K_PARALLEL ? c->nthreads : 1;
	int64_t got;
	int ok, isa, best = -1;
	double fig_ns, lim_ns = 0, gbps, lim_gbps = 0;
	int met = -1;

	if (setup(&r, c, x->o.size_bytes ? x->o.size_bytes : c->src_bytes) < 0) {
		bench_line_init(&l, c->name, NAN, NAN);
		bench_line_str(&l, "check", "FAIL:setup");
		bench_report_line(&x->rep, &l);
		x->failed = 1;
		teardown(&r);
		return;
	}

	/* Warm-up: one untimed figure call, checked, and one of each limit. */
	reset(&r);
	got = figure(&r);
	ok = check(&r, got, why, sizeof(why)) == 0;
	for (isa = 0; isa < BENCH_ISA_COUNT && !x->o.no_limit; isa++) {
		if (!limit_isa_ok(c, isa))
			continue;
		time_limit(&r, isa, NULL);
	}

	/* Small (cache-resident) cases take well under a millisecond per call:
	 * repeat them more, up to 64x --reps, so their medians are as stable. */
	uint64_t touched = (r.src_words + (r.dst.words ? r.dst_words : 0)) * 8;
	int reps = x->o.reps;

	if (touched < 16 * MiB) {
		uint64_t m = 16 * MiB / touched;

		m = m > 64 ? 64 : m;
		reps = (int)((uint64_t)reps * m > BENCH_MAX_REPS ? BENCH_MAX_REPS : (uint64_t)reps * m);
	}
	memset(&fig_s, 0, sizeof(fig_s));
	memset(&cpu_s, 0, sizeof(cpu_s));
	memset(lim_s, 0, sizeof(lim_s));
	memset(&limt_s, 0, sizeof(limt_s));

	/* Calibration: which ISA's limit loop is fastest here, from repetitions
	 * of its own. Choosing it from the timed samples instead (the best of
	 * three medians against the library's one) would bias the limit upward
	 * by the noise alone: on this VM that cost 5-10% of ratio even when the
	 * library call *was* the limit loop (see --aa and perf/README.md). */
	for (int rep = 0; ok && rep < (reps < 3 ? 3 : reps); rep++) {
		for (isa = 0; isa < BENCH_ISA_COUNT && !x->o.no_limit; isa++) {
			if (!limit_isa_ok(c, isa))
				continue;
			time_limit(&r, isa, &lim_s[isa]);
		}
	}
	for (isa = 0; isa < BENCH_ISA_COUNT; isa++)
		if (lim_s[isa].n && (best < 0 || bench_samples_median(&lim_s[isa]) <
						 bench_samples_median(&lim_s[best])))
			best = isa;

	/* Timed repetitions: the chosen limit loop and the library call, one
	 * each, in alternating order (limit first on even repetitions), so
	 * neither side always runs on the caches the other left behind. */
	for (int rep = 0; ok && rep < reps; rep++) {
		for (int side = 0; side < 2; side++) {
			if ((side == 0) == (rep % 2 == 0)) {
				if (best >= 0)
					time_limit(&r, best, &limt_s);
				continue;
			}
			reset(&r);
			c0 = bench_cpu_ns();
			t0 = bench_now_ns();
			if (x->o.aa && best >= 0) {
				limit(&r, best);
				got = r.expect;
			} else {
				got = figure(&r);
			}
			t1 = bench_now_ns();
			c1 = bench_cpu_ns();
			bench_samples_add(&fig_s, t1 - t0);
			/* CPU share in parts per million of (wall time x threads) */
			bench_samples_add(&cpu_s, t1 > t0 ? (c1 - c0) * 1000000 / ((t1 - t0) * nthr) : 0);
			if (got != r.expect) { /* check() says how */
				check(&r, got, why, sizeof(why));
				ok = 0;
			}
			bench_sink((uint64_t)got);
		}
	}

	/* Bytes the GB/s figures are counted in: the source bitmap, except
	 * for expansion, where it is the destination written. */
	int dst_basis = c->kind == K_SCALED && c->src_ps > c->dst_ps;
	basis_bytes = dst_basis ? r.dst_words * 8 : r.src_words * 8;

	fig_ns = bench_samples_median(&fig_s);
	gbps = ok ? bench_gbps(basis_bytes, fig_ns) : NAN;
	/* limits= lists every ISA's calibration figure; the limit itself is
	 * the chosen loop's median over the timed repetitions. */
	buf[0] = 0;
	for (isa = 0; isa < BENCH_ISA_COUNT; isa++) {
		if (!lim_s[isa].n)
			continue;
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s:%.2f", buf[0] ? "/" : "",
			 bench_isa_name(isa), bench_gbps(basis_bytes, bench_samples_median(&lim_s[isa])));
	}
	if (limt_s.n) {
		lim_ns = bench_samples_median(&limt_s);
		lim_gbps = bench_gbps(basis_bytes, lim_ns);
	}
	if (!ok || x->o.no_limit)
		lim_gbps = NAN;

	/* Paired ratio: per repetition, the limit loop's time over the library
	 * call's time in that same repetition (a fraction of a second apart),
	 * then the median. Robust when the machine's speed shifts mid-case. */
	struct bench_samples paired = { .n = 0 };

	for (int i = 0; ok && i < fig_s.n && i < limt_s.n; i++)
		if (fig_s.ns[i])
			bench_samples_add(&paired, limt_s.ns[i] * 1000000 / fig_s.ns[i]);

	double nspp = fig_ns / (double)(dst_basis ? r.dst_bits : r.src_bits);
	switch (c->tkind) {
	case T_RATIO_MIN:
		snprintf(target, sizeof(target), "ratio>=%.2f", c->target);
		met = isfinite(lim_gbps) ? gbps / lim_gbps >= c->target : -1;
		break;
	case T_GBPS_MIN:
		snprintf(target, sizeof(target), "gbps_dst>=%.1f", c->target);
		met = gbps >= c->target;
		break;
	case T_NSPP_MAX:
		snprintf(target, sizeof(target), "ns_per_page<=%.2f", c->target);
		met = nspp <= c->target;
		break;
	case T_NONE:
		break;
	}

	bench_line_init(&l, c->name, gbps, lim_gbps);
	bench_line_num(&l, "ratio_paired", "%.3f", paired.n ? bench_samples_median(&paired) / 1e6 : NAN);
	if (c->tkind != T_NONE) {
		bench_line_str(&l, "target", target);
		bench_line_str(&l, "met", !ok || met < 0 ? "n/a" : met ? "yes" : "no");
	}
	bench_line_str(&l, "basis", dst_basis ? "dst" : "src");
	if (dst_basis) {
		bench_line_num(&l, "gbps_dst", "%.3f", gbps);
		bench_line_num(&l, "gbps_src", "%.3f", ok ? bench_gbps(r.src_words * 8, fig_ns) : NAN);
	}
	if (best >= 0) {
		char lname[32];

		snprintf(lname, sizeof(lname), "%s.%s", limk_name[c->lim], bench_isa_name(best));
		bench_line_str(&l, "limit", lname);
		bench_line_str(&l, "limits", buf);
	}
	if (c->kind == K_PARALLEL)
		bench_line_int(&l, "threads", c->nthreads);
	bench_line_str(&l, "variant", precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
	bench_line_num(&l, "src_mib", "%.3g", (double)(r.src_words * 8) / MiB);
	if (c->kind == K_SCALED || c->kind == K_MERGE || c->kind == K_PARALLEL)
		bench_line_num(&l, "dst_mib", "%.3g", (double)(r.dst_words * 8) / MiB);
	bench_line_num(&l, "ns_per_page", "%.4f", ok ? nspp : NAN);
	if (c->kind == K_EXTRACT && r.expect > 0)
		bench_line_num(&l, "ns_per_set", "%.3f", ok ? fig_ns / (double)r.expect : NAN);
	bench_line_num(&l, "ms", "%.3f", ok ? fig_ns / 1e6 : NAN);
	bench_line_num(&l, "limit_ms", "%.3f", ok && best >= 0 ? lim_ns / 1e6 : NAN);
	/* Interquartile range of the figure's times over their median: how
	 * noisy this machine was during the case. */
	bench_line_num(&l, "iqr", "%.2f",
		       ok && fig_ns > 0 ? (bench_samples_quantile(&fig_s, 0.75) -
					   bench_samples_quantile(&fig_s, 0.25)) / fig_ns
				        : NAN);
	/* Below ~0.9, other work on the machine took the CPU during the calls:
	 * the figure is pessimistic (the limit loops suffer the same). */
	bench_line_num(&l, "cpu", "%.2f", ok ? bench_samples_median(&cpu_s) / 1e6 : NAN);
	bench_line_int(&l, "reps", reps);
	bench_line_int(&l, c->kind == K_RUNS ? "runs" : c->kind == K_EXTRACT ? "pages" : "newly",
		       r.expect);
	if (ok) {
		bench_line_str(&l, "check", "ok");
	} else {
		snprintf(buf, sizeof(buf), "FAIL:%s", why);
		bench_line_str(&l, "check", buf);
		x->failed = 1;
	}
	bench_report_line(&x->rep, &l);
	teardown(&r);
}

/* ---- main ------------------------------------------------------------------- */

static const char usage_extra[] =
	"  variants: scalar, avx2, avx512, auto (precopy_bitmap_simd_force; default auto)\n"
	"  gbps is GB/s (1e9 B/s) of the source bitmap (expand-*: of the destination,\n"
	"  basis=dst); limit_gbps is the fastest plain loop (sse2/avx2/avx512) over the\n"
	"  same buffers in the same run; both are medians of --reps repetitions.\n"
	"  Exit status 1 if a result was wrong (check=FAIL), 2 on bad usage.\n";

int main(int argc, char **argv)
{
	struct ctx x;
	int err, any = 0;
	enum precopy_simd v = PRECOPY_SIMD_AUTO;

	memset(&x, 0, sizeof(x));
	err = bench_parse_opts(&x.o, argc, argv, usage_extra, 9);
	if (err)
		return err > 0 ? 0 : 2;
	if (x.o.list) {
		for (size_t i = 0; i < NCASES; i++)
			printf("%-28s %s\n", cases[i].name, cases[i].what);
		return 0;
	}
	if (x.o.variant) {
		if (!strcmp(x.o.variant, "scalar"))
			v = PRECOPY_SIMD_SCALAR;
		else if (!strcmp(x.o.variant, "avx2"))
			v = PRECOPY_SIMD_AVX2;
		else if (!strcmp(x.o.variant, "avx512"))
			v = PRECOPY_SIMD_AVX512;
		else if (strcmp(x.o.variant, "auto")) {
			fprintf(stderr, "%s: unknown --variant '%s' (scalar, avx2, avx512, auto)\n",
				argv[0], x.o.variant);
			return 2;
		}
		err = precopy_bitmap_simd_force(v);
		if (err < 0) {
			fprintf(stderr, "%s: --variant %s: %s\n", argv[0], x.o.variant,
				err == -ENOTSUP ? "this CPU lacks it" : strerror(-err));
			return 2;
		}
	}
	for (size_t i = 0; i < NCASES; i++)
		any |= bench_case_selected(&x.o, cases[i].name);
	if (!any) {
		fprintf(stderr, "%s: no case matches '%s' (see --list)\n", argv[0], x.o.case_pattern);
		return 2;
	}

	bench_report_begin(&x.rep, "bench-bitmap", &x.o,
			   "gbps: GB/s of the source bitmap (basis=dst: of the destination); "
			   "limit: fastest plain vectorized loop, same buffers, same run; "
			   "ratio = gbps / limit_gbps; figures are medians");
	for (size_t i = 0; i < NCASES; i++)
		if (bench_case_selected(&x.o, cases[i].name))
			run_case(&x, &cases[i]);
	bench_report_end(&x.rep);
	return x.failed ? 1 : 0;
}
