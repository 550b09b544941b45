/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-scaled.c — precopy_bitmap_merge_scaled() against the
 * reference, for every SIMD variant: every power-of-two page ratio from 1/512
 * to 512 (plus the 2^20 limit), offsets in several alignment classes (0, one
 * dst page, odd page counts, a combining source starting mid dst page),
 * lengths with partial final groups. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

#define CTX                                                                                        \
	"scaled[%s] dst_page=%" PRIu64 " src_page=%" PRIu64 " offset=%" PRIu64 " src_bits=%" PRIu64 \
	" density=%g seed=%#" PRIx64

/* Destination pages the range touches: one past the last. */
static uint64_t needed_dst_bits(uint64_t dps, uint64_t offset, uint64_t src_bits, uint64_t sps)
{
	return (offset + src_bits * sps - 1) / dps + 1;
}

/* density < 0 means a clustered source. */
static void scaled_case(enum precopy_simd v, uint64_t dps, uint64_t sps, uint64_t offset, uint64_t src_bits,
			double dens, uint64_t seed)
{
	struct bitref_rng r;
	struct bitref_dst d;
	uint64_t nw = bitref_words(src_bits), dst_nbits, *src, *src_copy, *ref;
	int64_t exp, got, diff;

	bitref_rng_seed(&r, seed);
	src = malloc(nw * 8);
	src_copy = malloc(nw * 8);
	cr_assert(src && src_copy);
	if (dens < 0)
		bitref_fill_clustered(src, src_bits, 8, 20, &r);
	else
		bitref_fill_random(src, src_bits, dens, &r);
	bitref_set_tail(src, src_bits);
	memcpy(src_copy, src, nw * 8);

	dst_nbits = needed_dst_bits(dps, offset, src_bits, sps);
	if (bitref_rng_below(&r, 3))
		dst_nbits += bitref_rng_below(&r, 200);
	bitref_dst_init(&d, dst_nbits, 0.1, &r);
	ref = malloc(d.nwords * 8);
	cr_assert_not_null(ref);
	memcpy(ref, d.bm.words, d.nwords * 8);

	exp = bitref_merge_scaled(ref, dps, offset, src, src_bits, sps);
	got = precopy_bitmap_merge_scaled(&d.bm, dps, offset, src, src_bits, sps);

	cr_assert_eq(got, exp, CTX ": returned %" PRId64 ", expected %" PRId64, VNAME(v), dps, sps, offset,
		     src_bits, dens, seed, got, exp);
	diff = bitref_first_diff(d.bm.words, ref, d.nwords);
	cr_assert_eq(diff, -1, CTX ": dst word %" PRId64 " is %#" PRIx64 ", expected %#" PRIx64, VNAME(v), dps, sps,
		     offset, src_bits, dens, seed, diff, d.bm.words[diff < 0 ? 0 : diff], ref[diff < 0 ? 0 : diff]);
	cr_assert(bitref_dst_guards_ok(&d), CTX ": wrote outside dst", VNAME(v), dps, sps, offset, src_bits, dens,
		  seed);
	cr_assert(bitref_tail_is_zero(d.bm.words, dst_nbits), CTX ": set a dst tail bit", VNAME(v), dps, sps,
		  offset, src_bits, dens, seed);
	cr_assert_eq(memcmp(src, src_copy, nw * 8), 0, CTX ": modified the source", VNAME(v), dps, sps, offset,
		     src_bits, dens, seed);
	free(ref);
	free(src);
	free(src_copy);
	bitref_dst_free(&d);
}

static const double densities[] = { 0.0, 0.01, 0.5, 1.0, -1.0 };
#define NDENS (sizeof(densities) / sizeof(densities[0]))

/* Every offset class and length for one page-size pair. */
static void scaled_pair(enum precopy_simd v, uint64_t dps, uint64_t sps)
{
	uint64_t offs[12], lens[24], r;
	size_t no = 0, nl = 0, i, j, k;
	static const uint64_t base_lens[] = { 1, 2, 3, 63, 64, 65, 127, 129, 511, 513 };

	if (sps > dps) { /* expansion: offsets in dst pages */
		r = sps / dps;
		offs[no++] = 0;
		offs[no++] = dps;
		offs[no++] = 3 * dps;
		offs[no++] = 63 * dps;
		offs[no++] = 64 * dps;
		offs[no++] = 65 * dps;
		offs[no++] = sps;
		offs[no++] = sps + dps;
		offs[no++] = 2 * sps + (r - 1) * dps;
	} else if (sps < dps) { /* combining: offsets in source pages, some mid dst page */
		r = dps / sps;
		offs[no++] = 0;
		offs[no++] = sps;
		offs[no++] = dps;
		offs[no++] = dps + sps;
		offs[no++] = 3 * dps + 5 * sps;
		offs[no++] = 63 * sps;
		offs[no++] = 65 * dps + (r - 1) * sps;
		offs[no++] = 127 * sps;
	} else {
		r = 1;
		offs[no++] = 0;
		offs[no++] = dps;
		offs[no++] = 63 * dps;
		offs[no++] = 64 * dps;
		offs[no++] = 65 * dps;
		offs[no++] = 127 * dps;
	}
	for (i = 0; i < sizeof(base_lens) / sizeof(base_lens[0]); i++)
		lens[nl++] = base_lens[i];
	if (sps < dps) { /* partial final groups of r source bits */
		lens[nl++] = r - 1 ? r - 1 : 1;
		lens[nl++] = r;
		lens[nl++] = r + 1;
		lens[nl++] = 3 * r + 5;
		lens[nl++] = 7 * r - 1;
	}

	for (i = 0; i < no; i++) {
		for (j = 0; j < nl; j++) {
			/* keep the bit-by-bit reference affordable */
			if (sps > dps && lens[j] * r > (1u << 16))
				continue;
			for (k = 0; k < NDENS; k++)
				scaled_case(v, dps, sps, offs[i], lens[j], densities[k],
					    case_seed(dps ^ (sps << 1), offs[i], lens[j], k));
		}
	}
}

/* dst 4 KiB, source 4 KiB .. 2 MiB (ratios 1 .. 512). */
static void expansion(enum precopy_simd v)
{
	int k;

	for (k = 0; k <= 9; k++)
		scaled_pair(v, 4 * KiB, (4 * KiB) << k);
}
VARIANT_TESTS(scaled, expansion_4k_dst_ratio_1_to_512, expansion, .timeout = 300)

/* source 4 KiB, dst 8 KiB .. 2 MiB (ratios 1/2 .. 1/512). */
static void combining(enum precopy_simd v)
{
	int k;

	for (k = 1; k <= 9; k++)
		scaled_pair(v, (4 * KiB) << k, 4 * KiB);
}
VARIANT_TESTS(scaled, combining_4k_src_ratio_half_to_1_512, combining, .timeout = 300)

/* Other page sizes: 8K/16K pages, sub-4K pages, 64K/16K. */
static void other_sizes(enum precopy_simd v)
{
	static const uint64_t pairs[][2] = {
		{ 8 * KiB, 16 * KiB }, { 16 * KiB, 8 * KiB }, { 8 * KiB, 2 * MiB }, { 2 * MiB, 8 * KiB },
		{ 16 * KiB, 64 * KiB }, { 64 * KiB, 16 * KiB }, { 16 * KiB, 16 * KiB }, { 512, 4 * KiB },
		{ 4 * KiB, 512 }, { 1, 2 }, { 2, 1 }, { 64 * KiB, 64 * KiB },
	};
	size_t i;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		scaled_pair(v, pairs[i][0], pairs[i][1]);
}
VARIANT_TESTS(scaled, other_page_sizes, other_sizes, .timeout = 300)

/* Big groups: 2 MiB over 4 KiB with many source bits, and the documented
 * maximum ratio 2^20 both ways (accepted, not -EINVAL). */
static void limits(enum precopy_simd v)
{
	uint64_t max = PRECOPY_BITMAP_MAX_RATIO;

	scaled_case(v, 4 * KiB, 2 * MiB, 0, 513, 0.5, 11);
	scaled_case(v, 4 * KiB, 2 * MiB, 4 * KiB, 200, -1.0, 12);
	scaled_case(v, 4 * KiB, 4 * KiB * max, 0, 2, 1.0, 13);
	scaled_case(v, 4 * KiB, 4 * KiB * max, 4 * KiB * 3, 3, 0.5, 14);
	scaled_case(v, 4 * KiB * max, 4 * KiB, 0, max + 3, 0.0001, 15);
	scaled_case(v, 4 * KiB * max, 4 * KiB, 4 * KiB * 5, 2 * max, 0.00001, 16);
	scaled_case(v, 1, max, 0, 3, 1.0, 17);
	scaled_case(v, max, 1, 7, max + 1, 0.000001, 18);
}
VARIANT_TESTS(scaled, big_groups_and_max_ratio, limits, .timeout = 300)

/* Random combinations: page sizes 2^9..2^22 each side, random aligned
 * offsets, random lengths. */
static void random_scaled(enum precopy_simd v)
{
	struct bitref_rng r;
	int i;

	bitref_rng_seed(&r, 0x7363616c6564ull);
	for (i = 0; i < 600; i++) {
		uint64_t dps = 1ull << (9 + bitref_rng_below(&r, 14));
		uint64_t sps = 1ull << (9 + bitref_rng_below(&r, 14));
		uint64_t unit = sps > dps ? dps : sps, ratio = sps > dps ? sps / dps : 1;
		uint64_t len = 1 + bitref_rng_below(&r, 3000), offset = unit * bitref_rng_below(&r, 3000);

		if (len * ratio > (1u << 17))
			len = 1 + (1u << 17) / ratio;
		scaled_case(v, dps, sps, offset, len, densities[bitref_rng_below(&r, NDENS)],
			    case_seed((uint64_t)i, dps, sps, 99));
	}
}
VARIANT_TESTS(scaled, random_page_sizes, random_scaled, .timeout = 300)

/* Equal page sizes behave exactly like precopy_bitmap_merge(). */
static void equal_is_merge(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 63, 64, 65, 511, 513, 4097 };
	size_t i;
	uint64_t off;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (off = 0; off < 130; off += 13) {
			struct bitref_rng r;
			struct bitref_dst a, b;
			uint64_t *src = malloc(bitref_words(lens[i]) * 8);
			int64_t ga, gb;

			cr_assert_not_null(src);
			bitref_rng_seed(&r, case_seed(lens[i], off, 5, 5));
			bitref_fill_random(src, lens[i], 0.5, &r);
			bitref_set_tail(src, lens[i]);
			bitref_dst_init(&a, off + lens[i] + 7, 0.5, &r);
			bitref_dst_init(&b, off + lens[i] + 7, 0.0, &r);
			memcpy(b.bm.words, a.bm.words, a.nwords * 8);
			ga = precopy_bitmap_merge_scaled(&a.bm, 64 * KiB, off * 64 * KiB, src, lens[i], 64 * KiB);
			gb = precopy_bitmap_merge(&b.bm, off, src, lens[i]);
			cr_assert_eq(ga, gb, "scaled[%s] 64K/64K off=%" PRIu64 " len=%" PRIu64 ": %" PRId64
				     " vs merge %" PRId64, VNAME(v), off, lens[i], ga, gb);
			cr_assert_eq(bitref_first_diff(a.bm.words, b.bm.words, a.nwords), -1,
				     "scaled[%s] 64K/64K off=%" PRIu64 " len=%" PRIu64 ": content differs from merge",
				     VNAME(v), off, lens[i]);
			bitref_dst_free(&a);
			bitref_dst_free(&b);
			free(src);
		}
	}
}
VARIANT_TESTS(scaled, equal_sizes_match_merge, equal_is_merge)
