/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-errors.c — table-driven bad input for the bitmap API:
 * each row gives the exact -errno, and after every error the destination
 * (compared with a copy, guard words included) must be untouched. Merge
 * rows run under every SIMD variant the CPU has. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

#define KiB 1024ull
#define U64MAX UINT64_MAX

/* Runs fn once per supported variant (forced); returns how many ran. */
static int each_variant(void (*fn)(enum precopy_simd))
{
	static const enum precopy_simd vs[] = { PRECOPY_SIMD_SCALAR, PRECOPY_SIMD_AVX2, PRECOPY_SIMD_AVX512 };
	size_t i;
	int n = 0;

	for (i = 0; i < 3; i++) {
		if (!precopy_bitmap_simd_supported(vs[i])) {
			cr_log_warn("skipping the %s variant: this CPU lacks it", VNAME(vs[i]));
			continue;
		}
		cr_assert_eq(precopy_bitmap_simd_force(vs[i]), 0);
		fn(vs[i]);
		n++;
	}
	cr_assert_eq(precopy_bitmap_simd_force(PRECOPY_SIMD_AUTO), 0);
	return n;
}

/* ---- merge ---------------------------------------------------------------- */

struct merge_row {
	const char *what;
	int null_dst, null_src;
	uint64_t dst_bit, nbits;
	int64_t want; /* -errno, or >= 0: success expected (boundary control) */
};

/* dst has 1000 bits */
static const struct merge_row merge_rows[] = {
	{ "zero length", 0, 0, 0, 0, -EINVAL },
	{ "zero length at the end", 0, 0, 1000, 0, -EINVAL },
	{ "NULL dst", 1, 0, 0, 10, -EINVAL },
	{ "NULL src", 0, 1, 0, 10, -EINVAL },
	{ "one bit past the end", 0, 0, 990, 11, -ERANGE },
	{ "starting at the end", 0, 0, 1000, 1, -ERANGE },
	{ "longer than dst", 0, 0, 0, 1001, -ERANGE },
	{ "far past the end", 0, 0, 1u << 30, 1, -ERANGE },
	{ "dst_bit + nbits overflows", 0, 0, U64MAX, 2, -ERANGE },
	{ "dst_bit + nbits overflows to a small value", 0, 0, U64MAX - 5, 10, -ERANGE },
	{ "huge nbits overflows", 0, 0, 2, U64MAX, -ERANGE },
	{ "control: last bit", 0, 0, 999, 1, 0 },
	{ "control: whole", 0, 0, 0, 1000, 0 },
};

static void merge_errors(enum precopy_simd v)
{
	size_t i;

	for (i = 0; i < sizeof(merge_rows) / sizeof(merge_rows[0]); i++) {
		const struct merge_row *m = &merge_rows[i];
		struct bitref_rng r;
		struct bitref_dst d;
		uint64_t src[16], copy[16 + 2 * BITREF_GUARD];
		int64_t got;

		bitref_rng_seed(&r, i);
		bitref_dst_init(&d, 1000, 0.5, &r);
		bitref_fill_random(src, 1000, 1.0, &r);
		memcpy(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8);
		got = precopy_bitmap_merge(m->null_dst ? NULL : &d.bm, m->dst_bit, m->null_src ? NULL : src, m->nbits);
		if (m->want < 0) {
			cr_expect_eq(got, m->want, "merge[%s] %s: returned %" PRId64 ", expected %" PRId64, VNAME(v),
				     m->what, got, m->want);
			cr_expect_eq(memcmp(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8), 0,
				     "merge[%s] %s: dst written on error", VNAME(v), m->what);
		} else {
			cr_expect_geq(got, 0, "merge[%s] %s: returned %" PRId64, VNAME(v), m->what, got);
		}
		cr_expect(bitref_dst_guards_ok(&d));
		bitref_dst_free(&d);
	}
}

Test(errors, merge_table)
{
	each_variant(merge_errors);
}

/* ---- merge_scaled ---------------------------------------------------------- */

struct scaled_row {
	const char *what;
	int null_dst, null_src;
	uint64_t dps, offset, src_bits, sps;
	int64_t want;
};

/* dst has 1000 bits */
static const struct scaled_row scaled_rows[] = {
	{ "zero length", 0, 0, 4 * KiB, 0, 0, 4 * KiB, -EINVAL },
	{ "NULL dst", 1, 0, 4 * KiB, 0, 1, 4 * KiB, -EINVAL },
	{ "NULL src", 0, 1, 4 * KiB, 0, 1, 4 * KiB, -EINVAL },
	{ "dst page 0", 0, 0, 0, 0, 1, 4 * KiB, -EINVAL },
	{ "dst page 3", 0, 0, 3, 0, 1, 4 * KiB, -EINVAL },
	{ "dst page 12288", 0, 0, 12288, 0, 1, 4 * KiB, -EINVAL },
	{ "src page 0", 0, 0, 4 * KiB, 0, 1, 0, -EINVAL },
	{ "src page 3", 0, 0, 4 * KiB, 0, 1, 3, -EINVAL },
	{ "src page 12288", 0, 0, 4 * KiB, 0, 1, 12288, -EINVAL },
	{ "src page 2^63 + 4096", 0, 0, 4 * KiB, 0, 1, (1ull << 63) + 4096, -EINVAL },
	{ "expansion ratio 2^21", 0, 0, 4 * KiB, 0, 1, 4 * KiB << 21, -EINVAL },
	{ "combining ratio 2^21", 0, 0, 4 * KiB << 21, 0, 1, 4 * KiB, -EINVAL },
	{ "ratio 2^21 with 1-byte pages", 0, 0, 1, 0, 1, 1ull << 21, -EINVAL },
	{ "ratio 2^63", 0, 0, 1, 0, 1, 1ull << 63, -EINVAL },
	{ "expansion offset not a dst page multiple", 0, 0, 4 * KiB, 2 * KiB, 1, 64 * KiB, -EINVAL },
	{ "expansion offset one byte off", 0, 0, 4 * KiB, 4 * KiB + 1, 1, 64 * KiB, -EINVAL },
	{ "combining offset not a src page multiple", 0, 0, 16 * KiB, 2 * KiB, 1, 4 * KiB, -EINVAL },
	{ "equal sizes offset misaligned", 0, 0, 4 * KiB, 100, 1, 4 * KiB, -EINVAL },
	{ "equal: one page past the end", 0, 0, 4 * KiB, 999 * 4 * KiB, 2, 4 * KiB, -ERANGE },
	{ "equal: starting at the end", 0, 0, 4 * KiB, 1000 * 4 * KiB, 1, 4 * KiB, -ERANGE },
	{ "expansion past the end", 0, 0, 4 * KiB, 0, 63, 64 * KiB, -ERANGE },
	{ "expansion last group past the end", 0, 0, 4 * KiB, 9 * 4 * KiB, 1000 / 16, 64 * KiB, -ERANGE },
	{ "combining past the end", 0, 0, 16 * KiB, 0, 4001, 4 * KiB, -ERANGE },
	{ "combining partial page past the end", 0, 0, 16 * KiB, 3 * 4 * KiB, 3998, 4 * KiB, -ERANGE },
	{ "offset + length overflows", 0, 0, 4 * KiB, U64MAX - 4095, 2, 4 * KiB, -ERANGE },
	{ "src_bits * page overflows", 0, 0, 4 * KiB, 0, U64MAX, 4 * KiB, -ERANGE },
	{ "src_bits * 2M overflows", 0, 0, 4 * KiB, 0, 1ull << 44, 2048 * KiB, -ERANGE },
	{ "control: equal, last page", 0, 0, 4 * KiB, 999 * 4 * KiB, 1, 4 * KiB, 0 },
	{ "control: expansion to the end", 0, 0, 4 * KiB, 8 * 4 * KiB, 62, 64 * KiB, 0 },
	{ "control: combining to the end", 0, 0, 16 * KiB, 4 * KiB, 3999, 4 * KiB, 0 },
	{ "ratio 2^20 is accepted, then out of range", 0, 0, 1, 0, 1, 1ull << 20, -ERANGE },
	{ "control: ratio 2^20 combining", 0, 0, 1ull << 20, 0, 1, 1, 0 },
};

static void scaled_errors(enum precopy_simd v)
{
	size_t i;

	for (i = 0; i < sizeof(scaled_rows) / sizeof(scaled_rows[0]); i++) {
		const struct scaled_row *s = &scaled_rows[i];
		struct bitref_rng r;
		struct bitref_dst d;
		uint64_t src[64], copy[16 + 2 * BITREF_GUARD];
		int64_t got;

		bitref_rng_seed(&r, i);
		bitref_dst_init(&d, 1000, 0.5, &r);
		memset(src, 0xff, sizeof(src));
		memcpy(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8);
		got = precopy_bitmap_merge_scaled(s->null_dst ? NULL : &d.bm, s->dps, s->offset,
						  s->null_src ? NULL : src, s->src_bits, s->sps);
		if (s->want < 0) {
			cr_expect_eq(got, s->want, "scaled[%s] %s: returned %" PRId64 ", expected %" PRId64, VNAME(v),
				     s->what, got, s->want);
			cr_expect_eq(memcmp(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8), 0,
				     "scaled[%s] %s: dst written on error", VNAME(v), s->what);
		} else {
			cr_expect_geq(got, 0, "scaled[%s] %s: returned %" PRId64, VNAME(v), s->what, got);
		}
		cr_expect(bitref_dst_guards_ok(&d));
		bitref_dst_free(&d);
	}
}

Test(errors, scaled_table)
{
	each_variant(scaled_errors);
}

/* ---- ranges, count_range, single bits --------------------------------------- */

struct range_row {
	const char *what;
	int null_bm;
	uint64_t first, count;
	int64_t want;
};

/* bitmap of 1000 bits */
static const struct range_row range_rows[] = {
	{ "NULL", 1, 0, 1, -EINVAL },
	{ "count 0", 0, 0, 0, -EINVAL },
	{ "past the end", 0, 990, 11, -ERANGE },
	{ "at the end", 0, 1000, 1, -ERANGE },
	{ "overflow", 0, U64MAX, 2, -ERANGE },
	{ "huge count", 0, 1, U64MAX, -ERANGE },
};

Test(errors, range_table)
{
	size_t i;

	for (i = 0; i < sizeof(range_rows) / sizeof(range_rows[0]); i++) {
		const struct range_row *g = &range_rows[i];
		struct bitref_rng r;
		struct bitref_dst d;
		uint64_t copy[16 + 2 * BITREF_GUARD];
		struct precopy_bitmap *bm;
		int64_t got;

		bitref_rng_seed(&r, i);
		bitref_dst_init(&d, 1000, 0.5, &r);
		memcpy(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8);
		bm = g->null_bm ? NULL : &d.bm;
		got = precopy_bitmap_set_range(bm, g->first, g->count);
		cr_expect_eq(got, g->want, "set_range %s: %" PRId64, g->what, got);
		got = precopy_bitmap_clear_range(bm, g->first, g->count);
		cr_expect_eq(got, g->want, "clear_range %s: %" PRId64, g->what, got);
		got = precopy_bitmap_count_range(bm, g->first, g->count);
		cr_expect_eq(got, g->want, "count_range %s: %" PRId64, g->what, got);
		cr_expect_eq(memcmp(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8), 0, "%s: bitmap written on error",
			     g->what);
		bitref_dst_free(&d);
	}
}

Test(errors, single_bits)
{
	uint64_t w[2] = { 0, 0 };
	struct precopy_bitmap bm;

	cr_assert_eq(precopy_bitmap_wrap(&bm, w, 100), 0);
	cr_expect_eq(precopy_bitmap_set_atomic(NULL, 0), -EINVAL);
	cr_expect_eq(precopy_bitmap_set_atomic(&bm, 100), -ERANGE);
	cr_expect_eq(precopy_bitmap_set_atomic(&bm, U64MAX), -ERANGE);
	cr_expect_eq(precopy_bitmap_test(&bm, 100), -ERANGE);
	cr_expect_eq(precopy_bitmap_test(&bm, U64MAX), -ERANGE);
	cr_expect(w[0] == 0 && w[1] == 0, "written on error");
	cr_expect_eq(precopy_bitmap_set_atomic(&bm, 99), 1);
	cr_expect_eq(precopy_bitmap_set_atomic(&bm, 99), 0);
	cr_expect_eq(precopy_bitmap_test(&bm, 99), 1);
	cr_expect_eq(w[1], 1ull << 35);
}

/* ---- extract / runs ----------------------------------------------------------- */

Test(errors, extract_and_runs)
{
	uint64_t w[2] = { 0xff, 0 }, cur = 0, pages[4] = { 7, 7, 7, 7 };
	struct precopy_page_run runs[2] = { { 7, 7 }, { 7, 7 } };
	struct precopy_bitmap bm;

	cr_assert_eq(precopy_bitmap_wrap(&bm, w, 100), 0);
	cr_expect_eq(precopy_bitmap_extract(NULL, &cur, pages, 4), -EINVAL);
	cr_expect_eq(precopy_bitmap_extract(&bm, NULL, pages, 4), -EINVAL);
	cr_expect_eq(precopy_bitmap_extract(&bm, &cur, NULL, 4), -EINVAL);
	cr_expect_eq(precopy_bitmap_extract(&bm, &cur, pages, 0), -EINVAL);
	cr_expect_eq(precopy_bitmap_runs(NULL, &cur, runs, 2), -EINVAL);
	cr_expect_eq(precopy_bitmap_runs(&bm, NULL, runs, 2), -EINVAL);
	cr_expect_eq(precopy_bitmap_runs(&bm, &cur, NULL, 2), -EINVAL);
	cr_expect_eq(precopy_bitmap_runs(&bm, &cur, runs, 0), -EINVAL);
	cr_expect_eq(cur, 0, "cursor moved on error");
	cr_expect(pages[0] == 7 && pages[3] == 7 && runs[0].first == 7 && runs[1].count == 7, "output written on error");
}

/* ---- allocation / wrap ------------------------------------------------------------ */

Test(errors, alloc_and_wrap)
{
	struct precopy_bitmap bm, pattern;
	uint64_t w[1];
	static const struct {
		const char *what;
		uint64_t nbits;
		int placement;
	} rows[] = {
		{ "nbits 0", 0, PRECOPY_NUMA_LOCAL },
		{ "placement -3", 64, -3 },
		{ "placement INT_MIN", 64, INT_MIN },
	};
	size_t i;

	memset(&pattern, 0xab, sizeof(pattern));
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bm = pattern;
		cr_expect_eq(precopy_bitmap_alloc(&bm, rows[i].nbits, rows[i].placement), -EINVAL, "alloc %s",
			     rows[i].what);
		cr_expect_eq(memcmp(&bm, &pattern, sizeof(bm)), 0, "alloc %s: *bm written on error", rows[i].what);
	}
	cr_expect_eq(precopy_bitmap_alloc(NULL, 64, PRECOPY_NUMA_LOCAL), -EINVAL);
	bm = pattern;
	cr_expect_eq(precopy_bitmap_wrap(&bm, w, 0), -EINVAL);
	cr_expect_eq(precopy_bitmap_wrap(&bm, NULL, 64), -EINVAL);
	cr_expect_eq(precopy_bitmap_wrap(NULL, w, 64), -EINVAL);
	cr_expect_eq(memcmp(&bm, &pattern, sizeof(bm)), 0, "wrap: *bm written on error");
}

/* Sizes that cannot be mapped are -ENOMEM, not a tiny or wrapped allocation.
 * PRECOPY_BITMAP_WORDS(UINT64_MAX) wraps to 0 in 64-bit arithmetic, so an
 * implementation that uses it naively would "succeed" with no words. */
Test(errors, alloc_impossible_sizes)
{
	static const uint64_t sizes[] = { 1ull << 62, U64MAX, U64MAX - 62 };
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct precopy_bitmap bm, pattern;
		int rc;

		memset(&pattern, 0xab, sizeof(pattern));
		bm = pattern;
		rc = precopy_bitmap_alloc(&bm, sizes[i], PRECOPY_NUMA_LOCAL);
		cr_expect_eq(rc, -ENOMEM, "alloc of %#" PRIx64 " bits: %d (words %p, alloc_bytes %zu)", sizes[i], rc,
			     (void *)bm.words, bm.alloc_bytes);
		if (rc == 0) {
			precopy_bitmap_free(&bm);
			continue;
		}
		/* "On any error nothing has been written" */
		cr_expect_eq(memcmp(&bm, &pattern, sizeof(bm)), 0, "alloc of %#" PRIx64 " bits: *bm written on -ENOMEM",
			     sizes[i]);
	}
}

/* ---- SIMD control ----------------------------------------------------------------- */

Test(errors, simd_force_invalid)
{
	enum precopy_simd before = precopy_bitmap_simd_active();
	static const int bad[] = { 4, 5, 99, -1, INT_MAX, INT_MIN };
	size_t i;

	cr_assert_neq(before, PRECOPY_SIMD_AUTO, "active variant is never AUTO");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(precopy_bitmap_simd_force((enum precopy_simd)bad[i]), -EINVAL, "force(%d)", bad[i]);
		cr_expect_eq(precopy_bitmap_simd_active(), before, "force(%d) changed the active variant", bad[i]);
		cr_expect_eq(precopy_bitmap_simd_supported((enum precopy_simd)bad[i]), 0, "supported(%d)", bad[i]);
	}
}

Test(errors, simd_force_unsupported)
{
	static const enum precopy_simd vs[] = { PRECOPY_SIMD_AVX2, PRECOPY_SIMD_AVX512 };
	size_t i;
	int tried = 0;

	cr_assert_eq(precopy_bitmap_simd_supported(PRECOPY_SIMD_SCALAR), 1);
	for (i = 0; i < 2; i++) {
		if (precopy_bitmap_simd_supported(vs[i]))
			continue;
		tried = 1;
		cr_expect_eq(precopy_bitmap_simd_force(vs[i]), -ENOTSUP);
	}
	if (!tried)
		cr_skip_test("this CPU supports every variant: -ENOTSUP cannot be provoked");
}

Test(errors, simd_names_and_auto)
{
	cr_expect_str_eq(precopy_bitmap_simd_name(PRECOPY_SIMD_SCALAR), "scalar");
	cr_expect_str_eq(precopy_bitmap_simd_name(PRECOPY_SIMD_AVX2), "avx2");
	cr_expect_str_eq(precopy_bitmap_simd_name(PRECOPY_SIMD_AVX512), "avx512");
	cr_expect_str_eq(precopy_bitmap_simd_name(PRECOPY_SIMD_AUTO), "auto");
	cr_assert_not_null(precopy_bitmap_simd_name((enum precopy_simd)42), "name of an unknown value is NULL");
	cr_assert_eq(precopy_bitmap_simd_force(PRECOPY_SIMD_SCALAR), 0);
	cr_assert_eq(precopy_bitmap_simd_active(), PRECOPY_SIMD_SCALAR);
	unsetenv("PRECOPY_SIMD");
	cr_assert_eq(precopy_bitmap_simd_force(PRECOPY_SIMD_AUTO), 0);
	cr_expect_eq(precopy_bitmap_simd_active(),
		     precopy_bitmap_simd_supported(PRECOPY_SIMD_AVX512) ? PRECOPY_SIMD_AVX512
		     : precopy_bitmap_simd_supported(PRECOPY_SIMD_AVX2) ? PRECOPY_SIMD_AVX2
									  : PRECOPY_SIMD_SCALAR,
		     "AUTO without $PRECOPY_SIMD is the best variant, got %s",
		     precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
}

/* "PRECOPY_SIMD_AUTO returns to ... what the environment variable
 * PRECOPY_SIMD names" */
Test(errors, simd_auto_honours_environment)
{
	cr_assert_eq(setenv("PRECOPY_SIMD", "scalar", 1), 0);
	cr_assert_eq(precopy_bitmap_simd_force(PRECOPY_SIMD_AUTO), 0);
	cr_expect_eq(precopy_bitmap_simd_active(), PRECOPY_SIMD_SCALAR, "PRECOPY_SIMD=scalar gave %s",
		     precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
	if (precopy_bitmap_simd_supported(PRECOPY_SIMD_AVX2)) {
		cr_assert_eq(setenv("PRECOPY_SIMD", "avx2", 1), 0);
		cr_assert_eq(precopy_bitmap_simd_force(PRECOPY_SIMD_AUTO), 0);
		cr_expect_eq(precopy_bitmap_simd_active(), PRECOPY_SIMD_AVX2, "PRECOPY_SIMD=avx2 gave %s",
			     precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
	}
	unsetenv("PRECOPY_SIMD");
}
