/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-merge.c — precopy_bitmap_merge() against the bit-by-bit
 * reference, for every SIMD variant the CPU has: every destination offset
 * 0..127, lengths around word and vector boundaries, source densities from
 * empty to full, random destination content, garbage in the source's tail,
 * guard words around the destination and exactly sized (or page-guarded)
 * source buffers so over-reads fault. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

static const double densities[] = { 0.0, 0.0001, 0.01, 0.5, 1.0 };
#define NDENS (sizeof(densities) / sizeof(densities[0]))

#define CTX "merge[%s] dst_bit=%" PRIu64 " nbits=%" PRIu64 " dst_nbits=%" PRIu64 " density=%g seed=%#" PRIx64

/* One differential case. src holds exactly bitref_words(len) words; its
 * content is (re)generated here from the seed (src density `dens`, tail
 * bits set as garbage). cluster != 0 uses clustered source and dst. */
static void merge_case(enum precopy_simd v, uint64_t off, uint64_t len, double dens, uint64_t seed,
		       uint64_t *src, int cluster)
{
	static const double dst_dens[] = { 0.0, 0.3, 0.5, 0.97 };
	struct bitref_rng r;
	struct bitref_dst d;
	uint64_t extra, dst_nbits, nw = bitref_words(len), *ref, *src_copy;
	int64_t exp, got, diff;

	bitref_rng_seed(&r, seed);
	if (cluster)
		bitref_fill_clustered(src, len, 1 + bitref_rng_below(&r, 100), 1 + bitref_rng_below(&r, 300), &r);
	else
		bitref_fill_random(src, len, dens, &r);
	bitref_set_tail(src, len);
	extra = bitref_rng_below(&r, 4) == 0 ? 0 : bitref_rng_below(&r, 300);
	dst_nbits = off + len + extra;
	bitref_dst_init(&d, dst_nbits, dst_dens[bitref_rng_below(&r, 4)], &r);
	if (cluster)
		bitref_fill_clustered(d.bm.words, dst_nbits, 50, 50, &r);

	ref = malloc(d.nwords * 8);
	src_copy = malloc(nw * 8);
	cr_assert(ref && src_copy);
	memcpy(ref, d.bm.words, d.nwords * 8);
	memcpy(src_copy, src, nw * 8);

	exp = bitref_merge(ref, off, src, len);
	got = precopy_bitmap_merge(&d.bm, off, src, len);

	cr_assert_eq(got, exp, CTX ": returned %" PRId64 ", expected %" PRId64, VNAME(v), off, len, dst_nbits,
		     dens, seed, got, exp);
	diff = bitref_first_diff(d.bm.words, ref, d.nwords);
	cr_assert_eq(diff, -1, CTX ": dst word %" PRId64 " is %#" PRIx64 ", expected %#" PRIx64, VNAME(v), off, len,
		     dst_nbits, dens, seed, diff, d.bm.words[diff < 0 ? 0 : diff], ref[diff < 0 ? 0 : diff]);
	cr_assert(bitref_dst_guards_ok(&d), CTX ": wrote outside the destination's words", VNAME(v), off, len,
		  dst_nbits, dens, seed);
	cr_assert(bitref_tail_is_zero(d.bm.words, dst_nbits), CTX ": set a dst tail bit", VNAME(v), off, len,
		  dst_nbits, dens, seed);
	cr_assert_eq(memcmp(src, src_copy, nw * 8), 0, CTX ": modified the source", VNAME(v), off, len, dst_nbits,
		     dens, seed);
	cr_assert_eq(d.bm.nbits, dst_nbits);
	free(ref);
	free(src_copy);
	bitref_dst_free(&d);
}

/* Run every offset in offs[] (or 0..127 when offs is NULL) and every
 * density for one length, alternating an exactly-sized malloc'd source (ASan
 * sees over- and under-reads) and a page-guarded one (over-reads fault even
 * in a plain build). */
static void merge_length(enum precopy_simd v, uint64_t len, const uint64_t *offs, size_t noffs)
{
	uint64_t nw = bitref_words(len);
	uint64_t *heap = malloc(nw * 8), *guarded = bitref_guarded_alloc(nw);
	size_t i, di, n = offs ? noffs : 128;

	cr_assert_not_null(heap);
	for (i = 0; i < n; i++) {
		uint64_t off = offs ? offs[i] : i;

		for (di = 0; di < NDENS; di++)
			merge_case(v, off, len, densities[di], case_seed(len, off, di, 1),
				   (i + di) % 2 ? guarded : heap, 0);
	}
	free(heap);
	bitref_guarded_free(guarded, nw);
}

static void every_offset_small(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 2, 3, 63, 64, 65, 127, 128, 129, 255, 256, 257,
					 511, 512, 513, 1023, 1024, 1025 };
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		merge_length(v, lens[i], NULL, 0);
}
VARIANT_TESTS(merge, every_offset_small_lengths, every_offset_small, .timeout = 300)

static void every_offset_vector(enum precopy_simd v)
{
	static const uint64_t lens[] = { 2047, 2048, 2049, 4095, 4096, 4097 };
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		merge_length(v, lens[i], NULL, 0);
}
VARIANT_TESTS(merge, every_offset_vector_lengths, every_offset_vector, .timeout = 300)

static void large_lengths(enum precopy_simd v)
{
	static const uint64_t lens[] = { 8191, 8193, 65535, 65537, 100003 };
	static const uint64_t offs[] = { 0, 1, 2, 7, 31, 32, 33, 63, 64, 65, 96, 127, 128, 4095, 4097 };
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		merge_length(v, lens[i], offs, sizeof(offs) / sizeof(offs[0]));
}
VARIANT_TESTS(merge, large_lengths, large_lengths, .timeout = 300)

/* Random offsets up to 2^16 and lengths up to 5000, random and clustered. */
static void random_cases(enum precopy_simd v)
{
	struct bitref_rng r;
	int i;

	bitref_rng_seed(&r, 0x6d65726765ull);
	for (i = 0; i < 1500; i++) {
		uint64_t off = bitref_rng_below(&r, 4) ? bitref_rng_below(&r, 1024) : bitref_rng_below(&r, 65536);
		uint64_t len = 1 + bitref_rng_below(&r, 5000);
		size_t di = (size_t)bitref_rng_below(&r, NDENS);
		uint64_t *src = malloc(bitref_words(len) * 8);

		cr_assert_not_null(src);
		merge_case(v, off, len, densities[di], case_seed(off, len, di, (uint64_t)i), src, i % 3 == 0);
		free(src);
	}
}
VARIANT_TESTS(merge, random_offsets_and_clusters, random_cases, .timeout = 300)

/* The whole destination at once: dst_bit 0 and nbits == dst->nbits (the
 * tail word of dst is the tail word of the source range). */
static void whole_bitmap(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 64, 65, 511, 512, 513, 100003 };
	size_t i, di;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (di = 0; di < NDENS; di++) {
			uint64_t len = lens[i], *src = bitref_guarded_alloc(bitref_words(len)), *ref;
			struct bitref_rng r;
			struct bitref_dst d;
			int64_t exp, got;

			bitref_rng_seed(&r, case_seed(len, di, 7, 7));
			bitref_fill_random(src, len, densities[di], &r);
			bitref_set_tail(src, len);
			bitref_dst_init(&d, len, 0.25, &r);
			ref = malloc(d.nwords * 8);
			cr_assert_not_null(ref);
			memcpy(ref, d.bm.words, d.nwords * 8);
			exp = bitref_merge(ref, 0, src, len);
			got = precopy_bitmap_merge(&d.bm, 0, src, len);
			cr_assert_eq(got, exp, "merge[%s] whole len=%" PRIu64 " density=%g", VNAME(v), len,
				     densities[di]);
			cr_assert_eq(bitref_first_diff(d.bm.words, ref, d.nwords), -1,
				     "merge[%s] whole len=%" PRIu64 " density=%g: content", VNAME(v), len, densities[di]);
			cr_assert(bitref_tail_is_zero(d.bm.words, len), "merge[%s] whole len=%" PRIu64 ": tail set",
				  VNAME(v), len);
			cr_assert(bitref_dst_guards_ok(&d));
			/* merging the same thing again sets nothing new */
			got = precopy_bitmap_merge(&d.bm, 0, src, len);
			cr_assert_eq(got, 0, "merge[%s] whole len=%" PRIu64 ": second merge returned %" PRId64,
				     VNAME(v), len, got);
			free(ref);
			bitref_dst_free(&d);
			bitref_guarded_free(src, bitref_words(len));
		}
	}
}
VARIANT_TESTS(merge, whole_bitmap_and_idempotence, whole_bitmap)

/* ---- the reference itself, on cases worked out by hand ------------------- */

Test(bitref, merge_by_hand)
{
	uint64_t dst[3] = { 0x1, 0, 0 }, src[2] = { 0x8000000000000003ull, 0x1 };

	/* 65 source bits: bits 0, 1, 63, 64 set; at dst bit 62 they land on 62,
	 * 63, 125, 126; dst bit 0 was already set and is not touched. */
	cr_assert_eq(bitref_merge(dst, 62, src, 65), 4);
	cr_assert_eq(dst[0], 0xc000000000000001ull);
	cr_assert_eq(dst[1], 0x6000000000000000ull);
	cr_assert_eq(dst[2], 0);
	/* bits past nbits are ignored: only 64 bits, bit 64 not merged */
	memset(dst, 0, sizeof(dst));
	cr_assert_eq(bitref_merge(dst, 1, src, 64), 3);
	cr_assert_eq(dst[0], 0x6ull);
	cr_assert_eq(dst[1], 0x1ull);
}

Test(bitref, scaled_by_hand)
{
	uint64_t dst[2] = { 0, 0 }, src[1] = { 0x5 };

	/* expansion: 16 KiB source pages over 4 KiB dst pages, starting one dst
	 * page in: source bit 0 -> dst 1..4, bit 2 -> dst 9..12 */
	cr_assert_eq(bitref_merge_scaled(dst, 4096, 4096, src, 3, 16384), 8);
	cr_assert_eq(dst[0], 0x1e1eull);
	/* combining: 4 KiB source pages into 16 KiB dst pages, starting at the
	 * 3rd sub-page of dst page 0: bit 0 -> dst 0, bit 2 -> dst 1 */
	memset(dst, 0, sizeof(dst));
	cr_assert_eq(bitref_merge_scaled(dst, 16384, 8192, src, 3, 4096), 2);
	cr_assert_eq(dst[0], 0x3ull);
}

Test(bitref, iterate_by_hand)
{
	uint64_t w[2] = { 0x8000000000000006ull, 0x3 }, out[8];
	struct precopy_page_run runs[4];

	cr_assert_eq(bitref_count(w, 0, 128), 5);
	cr_assert_eq(bitref_count(w, 2, 63), 3); /* bits 2, 63, 64 */
	cr_assert_eq(bitref_next_set(w, 128, 3), 63);
	cr_assert_eq(bitref_next_set(w, 66, 66), 66);
	cr_assert_eq(bitref_extract(w, 128, 2, out), 4);
	cr_assert_eq(out[0], 2);
	cr_assert_eq(out[3], 65);
	cr_assert_eq(bitref_runs(w, 128, 0, runs), 2);
	cr_assert_eq(runs[0].first, 1);
	cr_assert_eq(runs[0].count, 2);
	cr_assert_eq(runs[1].first, 63);
	cr_assert_eq(runs[1].count, 3);
	cr_assert_eq(bitref_runs(w, 128, 64, runs), 1);
	cr_assert_eq(runs[0].first, 64);
	cr_assert_eq(runs[0].count, 2);
}

Test(bitref, random_density_is_plausible)
{
	uint64_t *w = malloc(bitref_words(100000) * 8);
	struct bitref_rng r;
	uint64_t n;

	bitref_rng_seed(&r, 1);
	bitref_fill_random(w, 100000, 0.01, &r);
	n = bitref_count(w, 0, 100000);
	cr_assert(n > 800 && n < 1200, "1%% of 100000 gave %" PRIu64, n);
	bitref_fill_random(w, 100000, 1.0, &r);
	cr_assert_eq(bitref_count(w, 0, 100000), 100000);
	cr_assert(bitref_tail_is_zero(w, 100000));
	free(w);
}
