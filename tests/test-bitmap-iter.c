/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-iter.c — count, count_range, next_set, extract, runs,
 * test, set/clear range and zero against the reference, for every SIMD
 * variant, at densities 40%, 1%, 0.01%, 0, 100% and clustered, odd sizes;
 * extract and runs with small `max` so they resume many times. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

static const double densities[] = { 0.4, 0.01, 0.0001, 0.0, 1.0, -1.0 /* clustered */ };
#define NDENS (sizeof(densities) / sizeof(densities[0]))
static const uint64_t sizes[] = { 1, 2, 63, 64, 65, 127, 129, 1000, 4097, 65553, 100003 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

#define CTX "[%s] nbits=%" PRIu64 " density=%g seed=%#" PRIx64

static void make(struct bitref_dst *d, uint64_t nbits, double dens, uint64_t seed)
{
	struct bitref_rng r;

	bitref_rng_seed(&r, seed);
	bitref_dst_init(d, nbits, dens < 0 ? 0.0 : dens, &r);
	if (dens < 0)
		bitref_fill_clustered(d->bm.words, nbits, 40, 200, &r);
}

/* ---- count, count_range, next_set ------------------------------------------ */

static void counting(enum precopy_simd v)
{
	size_t si, di;

	for (si = 0; si < NSIZES; si++) {
		for (di = 0; di < NDENS; di++) {
			uint64_t n = sizes[si], seed = case_seed(n, di, 1, 0), i, exp, got;
			struct bitref_dst d;
			struct bitref_rng r;

			make(&d, n, densities[di], seed);
			bitref_rng_seed(&r, seed + 1);
			exp = bitref_count(d.bm.words, 0, n);
			got = precopy_bitmap_count(&d.bm);
			cr_assert_eq(got, exp, "count" CTX ": %" PRIu64 " expected %" PRIu64, VNAME(v), n,
				     densities[di], seed, got, exp);
			for (i = 0; i < 300; i++) {
				uint64_t first, cnt;
				int64_t g;

				if (i < 100 && n <= 200) { /* small: sweep starts */
					first = i % n;
					cnt = 1 + (i * 7) % (n - first);
				} else {
					first = bitref_rng_below(&r, n);
					cnt = 1 + bitref_rng_below(&r, n - first);
				}
				if (i == 0) {
					first = 0;
					cnt = n;
				}
				g = precopy_bitmap_count_range(&d.bm, first, cnt);
				cr_assert_eq(g, (int64_t)bitref_count(d.bm.words, first, cnt),
					     "count_range" CTX " first=%" PRIu64 " count=%" PRIu64 ": %" PRId64, VNAME(v),
					     n, densities[di], seed, first, cnt, g);
			}
			/* next_set from every position (sampled when large) and past the end */
			for (i = 0; i < n + 3; i += (n > 5000 ? 1 + bitref_rng_below(&r, 97) : 1)) {
				uint64_t ns = precopy_bitmap_next_set(&d.bm, i);

				cr_assert_eq(ns, bitref_next_set(d.bm.words, n, i < n ? i : n),
					     "next_set" CTX " from=%" PRIu64 ": %" PRIu64, VNAME(v), n, densities[di],
					     seed, i, ns);
			}
			cr_assert_eq(precopy_bitmap_next_set(&d.bm, UINT64_MAX), n, "next_set(UINT64_MAX)" CTX,
				     VNAME(v), n, densities[di], seed);
			cr_assert(bitref_dst_guards_ok(&d));
			bitref_dst_free(&d);
		}
	}
}
VARIANT_TESTS(iter, count_count_range_next_set, counting, .timeout = 300)

/* Garbage in the tail of a wrapped bitmap is not counted or returned. */
static void tail_ignored(enum precopy_simd v)
{
	static const uint64_t ns[] = { 1, 63, 65, 127, 1000, 4097 };
	size_t i;

	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t n = ns[i], *w = calloc(bitref_words(n), 8), cur = 0, pages[4];
		struct precopy_bitmap bm;
		struct precopy_page_run runs[2];

		cr_assert_eq(precopy_bitmap_wrap(&bm, w, n), 0);
		bitref_set_tail(w, n);
		bitref_set(w, n - 1);
		cr_assert_eq(precopy_bitmap_count(&bm), 1, "[%s] nbits=%" PRIu64 ": tail counted", VNAME(v), n);
		cr_assert_eq(precopy_bitmap_count_range(&bm, 0, n), 1, "[%s] nbits=%" PRIu64, VNAME(v), n);
		cr_assert_eq(precopy_bitmap_next_set(&bm, n - 1), n - 1);
		cr_assert_eq(precopy_bitmap_extract(&bm, &cur, pages, 4), 1, "[%s] nbits=%" PRIu64, VNAME(v), n);
		cr_assert_eq(pages[0], n - 1);
		cr_assert_eq(cur, n);
		cur = 0;
		cr_assert_eq(precopy_bitmap_runs(&bm, &cur, runs, 2), 1, "[%s] nbits=%" PRIu64, VNAME(v), n);
		cr_assert_eq(runs[0].first, n - 1);
		cr_assert_eq(runs[0].count, 1, "[%s] nbits=%" PRIu64 ": run ran into the tail", VNAME(v), n);
		if (n % 64) {
			bitref_clear(w, n - 1);
			cr_assert_eq(precopy_bitmap_next_set(&bm, 0), n, "[%s] nbits=%" PRIu64 ": tail found",
				     VNAME(v), n);
		}
		precopy_bitmap_free(&bm);
		free(w);
	}
}
VARIANT_TESTS(iter, tail_bits_ignored, tail_ignored)

/* ---- extract ------------------------------------------------------------------ */

static void extract_all(enum precopy_simd v, const struct bitref_dst *d, double dens, uint64_t seed, size_t max,
			uint64_t start)
{
	uint64_t n = d->bm.nbits, *exp = malloc((n + 1) * 8), nexp, got = 0, cur = start, calls = 0;
	uint64_t *pages = malloc(max * 8); /* exactly max: writing past it is caught */

	cr_assert(exp && pages);
	nexp = bitref_extract(d->bm.words, n, start, exp);
	for (;;) {
		uint64_t before = cur, i;
		int64_t r = precopy_bitmap_extract(&d->bm, &cur, pages, max);

		cr_assert_geq(r, 0, "extract" CTX " max=%zu cursor=%" PRIu64 ": %" PRId64, VNAME(v), n, dens, seed,
			      max, before, r);
		cr_assert_leq((uint64_t)r, max);
		cr_assert(++calls <= nexp + 2, "extract" CTX " max=%zu: does not terminate", VNAME(v), n, dens, seed,
			  max);
		for (i = 0; i < (uint64_t)r; i++) {
			cr_assert_lt(got + i, nexp, "extract" CTX " max=%zu start=%" PRIu64 ": too many bits", VNAME(v),
				     n, dens, seed, max, start);
			cr_assert_eq(pages[i], exp[got + i],
				     "extract" CTX " max=%zu start=%" PRIu64 ": bit #%" PRIu64 " is %" PRIu64
				     ", expected %" PRIu64,
				     VNAME(v), n, dens, seed, max, start, got + i, pages[i], exp[got + i]);
		}
		got += (uint64_t)r;
		if (r == 0) {
			cr_assert_eq(cur, n, "extract" CTX ": cursor %" PRIu64 " at the end", VNAME(v), n, dens, seed,
				     cur);
			break;
		}
		/* the cursor is past the last page written and not past the next one */
		cr_assert_gt(cur, pages[r - 1], "extract" CTX " max=%zu: cursor %" PRIu64 " not past %" PRIu64,
			     VNAME(v), n, dens, seed, max, cur, pages[r - 1]);
		cr_assert_leq(cur, got < nexp ? exp[got] : n,
			      "extract" CTX " max=%zu: cursor %" PRIu64 " skips set bits", VNAME(v), n, dens, seed, max,
			      cur);
		if ((size_t)r < max)
			cr_assert_eq(cur, n, "extract" CTX " max=%zu: short batch but cursor %" PRIu64, VNAME(v), n,
				     dens, seed, max, cur);
	}
	cr_assert_eq(got, nexp, "extract" CTX " max=%zu start=%" PRIu64 ": %" PRIu64 " bits, expected %" PRIu64,
		     VNAME(v), n, dens, seed, max, start, got, nexp);
	free(exp);
	free(pages);
}

static void extract(enum precopy_simd v)
{
	static const size_t maxes[] = { 1, 2, 3, 7, 64, 1000, 1u << 20 };
	size_t si, di, mi;

	for (si = 0; si < NSIZES; si++) {
		for (di = 0; di < NDENS; di++) {
			uint64_t n = sizes[si], seed = case_seed(n, di, 2, 0);
			struct bitref_dst d;

			make(&d, n, densities[di], seed);
			for (mi = 0; mi < sizeof(maxes) / sizeof(maxes[0]); mi++) {
				if (maxes[mi] == 1u << 20 && n < 60000)
					continue;
				extract_all(v, &d, densities[di], seed, maxes[mi], 0);
				extract_all(v, &d, densities[di], seed, maxes[mi], n / 3 + 1 < n ? n / 3 + 1 : 0);
				extract_all(v, &d, densities[di], seed, maxes[mi], n - 1);
			}
			/* cursor already at the end */
			{
				uint64_t cur = n, p;

				cr_assert_eq(precopy_bitmap_extract(&d.bm, &cur, &p, 1), 0);
				cr_assert_eq(cur, n);
			}
			cr_assert(bitref_dst_guards_ok(&d));
			bitref_dst_free(&d);
		}
	}
}
VARIANT_TESTS(iter, extract_resumes, extract, .timeout = 300)

/* ---- runs ------------------------------------------------------------------- */

static void runs_all(enum precopy_simd v, const struct bitref_dst *d, double dens, uint64_t seed, size_t max,
		     uint64_t start)
{
	uint64_t n = d->bm.nbits, nexp, got = 0, cur = start, calls = 0;
	struct precopy_page_run *exp = malloc((n / 2 + 2) * sizeof(*exp)), *runs = malloc(max * sizeof(*runs));

	cr_assert(exp && runs);
	nexp = bitref_runs(d->bm.words, n, start, exp);
	for (;;) {
		uint64_t before = cur, i;
		int64_t r = precopy_bitmap_runs(&d->bm, &cur, runs, max);

		cr_assert_geq(r, 0, "runs" CTX " max=%zu cursor=%" PRIu64 ": %" PRId64, VNAME(v), n, dens, seed, max,
			      before, r);
		cr_assert_leq((uint64_t)r, max);
		cr_assert(++calls <= nexp + 2, "runs" CTX " max=%zu: does not terminate", VNAME(v), n, dens, seed,
			  max);
		for (i = 0; i < (uint64_t)r; i++) {
			cr_assert_lt(got + i, nexp, "runs" CTX " max=%zu start=%" PRIu64 ": too many runs", VNAME(v), n,
				     dens, seed, max, start);
			cr_assert(runs[i].first == exp[got + i].first && runs[i].count == exp[got + i].count,
				  "runs" CTX " max=%zu start=%" PRIu64 ": run #%" PRIu64 " is [%" PRIu64 " +%" PRIu64
				  "], expected [%" PRIu64 " +%" PRIu64 "] (split across calls?)",
				  VNAME(v), n, dens, seed, max, start, got + i, runs[i].first, runs[i].count,
				  exp[got + i].first, exp[got + i].count);
		}
		got += (uint64_t)r;
		if (r == 0) {
			cr_assert_eq(cur, n, "runs" CTX ": cursor %" PRIu64 " at the end", VNAME(v), n, dens, seed, cur);
			break;
		}
		cr_assert_geq(cur, runs[r - 1].first + runs[r - 1].count,
			      "runs" CTX " max=%zu: cursor %" PRIu64 " inside the last run", VNAME(v), n, dens, seed,
			      max, cur);
		cr_assert_leq(cur, got < nexp ? exp[got].first : n,
			      "runs" CTX " max=%zu: cursor %" PRIu64 " past the start of the next run", VNAME(v), n,
			      dens, seed, max, cur);
		if ((size_t)r < max)
			cr_assert_eq(cur, n, "runs" CTX " max=%zu: short batch but cursor %" PRIu64, VNAME(v), n, dens,
				     seed, max, cur);
	}
	cr_assert_eq(got, nexp, "runs" CTX " max=%zu start=%" PRIu64 ": %" PRIu64 " runs, expected %" PRIu64,
		     VNAME(v), n, dens, seed, max, start, got, nexp);
	free(exp);
	free(runs);
}

static void runs(enum precopy_simd v)
{
	static const size_t maxes[] = { 1, 2, 5, 100, 100000 };
	size_t si, di, mi;

	for (si = 0; si < NSIZES; si++) {
		for (di = 0; di < NDENS; di++) {
			uint64_t n = sizes[si], seed = case_seed(n, di, 3, 0);
			struct bitref_dst d;

			make(&d, n, densities[di], seed);
			for (mi = 0; mi < sizeof(maxes) / sizeof(maxes[0]); mi++) {
				runs_all(v, &d, densities[di], seed, maxes[mi], 0);
				/* starting inside a run (if any) clips it */
				runs_all(v, &d, densities[di], seed, maxes[mi], n / 2);
			}
			cr_assert(bitref_dst_guards_ok(&d));
			bitref_dst_free(&d);
		}
	}
}
VARIANT_TESTS(iter, runs_never_split, runs, .timeout = 300)

/* Runs that cross word and vector boundaries exactly. */
Test(iter, runs_across_words)
{
	uint64_t w[16] = { 0 }, cur = 0;
	struct precopy_bitmap bm;
	struct precopy_page_run r[4];

	cr_assert_eq(precopy_bitmap_wrap(&bm, w, 1024), 0);
	bitref_set_range(w, 60, 8);    /* 60..67 */
	bitref_set_range(w, 128, 512); /* 128..639 */
	bitref_set_range(w, 1023, 1);
	cr_assert_eq(precopy_bitmap_runs(&bm, &cur, r, 4), 3);
	cr_assert_eq(r[0].first, 60);
	cr_assert_eq(r[0].count, 8);
	cr_assert_eq(r[1].first, 128);
	cr_assert_eq(r[1].count, 512);
	cr_assert_eq(r[2].first, 1023);
	cr_assert_eq(r[2].count, 1);
	cr_assert_eq(cur, 1024);
	cur = 0;
	cr_assert_eq(precopy_bitmap_runs(&bm, &cur, r, 1), 1);
	cr_assert_eq(cur, 128, "cursor after one run should stop at the next run's start, got %" PRIu64, cur);
}

/* ---- test / set_atomic / set_range / clear_range / zero ------------------------ */

static void bits_and_ranges(enum precopy_simd v)
{
	size_t si, di;

	for (si = 0; si < NSIZES; si++) {
		for (di = 0; di < NDENS; di++) {
			uint64_t n = sizes[si], seed = case_seed(n, di, 4, 0), i, *ref;
			struct bitref_dst d;
			struct bitref_rng r;

			make(&d, n, densities[di], seed);
			bitref_rng_seed(&r, seed);
			ref = malloc(d.nwords * 8);
			memcpy(ref, d.bm.words, d.nwords * 8);
			for (i = 0; i < n; i += n > 5000 ? 37 : 1)
				cr_assert_eq(precopy_bitmap_test(&d.bm, i), bitref_get(ref, i), "test" CTX " bit=%" PRIu64,
					     VNAME(v), n, densities[di], seed, i);
			cr_assert_eq(precopy_bitmap_test(&d.bm, n), -ERANGE);
			cr_assert_eq(precopy_bitmap_test(&d.bm, UINT64_MAX), -ERANGE);
			for (i = 0; i < 200; i++) {
				uint64_t first = bitref_rng_below(&r, n), cnt = 1 + bitref_rng_below(&r, n - first);
				int64_t e, g;
				int op = (int)bitref_rng_below(&r, 3);

				if (op == 0) {
					e = bitref_set_range(ref, first, cnt);
					g = precopy_bitmap_set_range(&d.bm, first, cnt);
				} else if (op == 1) {
					e = bitref_clear_range(ref, first, cnt);
					g = precopy_bitmap_clear_range(&d.bm, first, cnt);
				} else {
					e = !bitref_get(ref, first);
					bitref_set(ref, first);
					g = precopy_bitmap_set_atomic(&d.bm, first);
				}
				cr_assert_eq(g, e, "%s" CTX " first=%" PRIu64 " count=%" PRIu64 ": %" PRId64
					     " expected %" PRId64,
					     op == 0 ? "set_range" : op == 1 ? "clear_range" : "set_atomic", VNAME(v), n,
					     densities[di], seed, first, cnt, g, e);
				cr_assert_eq(bitref_first_diff(d.bm.words, ref, d.nwords), -1,
					     "%s" CTX " first=%" PRIu64 " count=%" PRIu64 ": content",
					     op == 0 ? "set_range" : op == 1 ? "clear_range" : "set_atomic", VNAME(v), n,
					     densities[di], seed, first, cnt);
			}
			cr_assert(bitref_tail_is_zero(d.bm.words, n));
			precopy_bitmap_zero(&d.bm);
			cr_assert_eq(bitref_popcount(d.bm.words, d.nwords), 0, "zero" CTX, VNAME(v), n, densities[di],
				     seed);
			cr_assert(bitref_dst_guards_ok(&d), "wrote outside the bitmap" CTX, VNAME(v), n, densities[di],
				  seed);
			free(ref);
			bitref_dst_free(&d);
		}
	}
}
VARIANT_TESTS(iter, test_set_clear_zero, bits_and_ranges, .timeout = 300)
