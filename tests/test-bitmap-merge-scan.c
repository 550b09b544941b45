/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-merge-scan.c — precopy__bitmap_merge_scan() (the KVM
 * harvest's merge, bitmap/merge_scan.h) against the bit-by-bit reference,
 * for every SIMD variant the CPU has: the destination as precopy_bitmap_merge
 * leaves it, the newly-set count, and what it reports of the source (set
 * bits, first and last non-zero word) at offsets 0..127, lengths around
 * word, vector and 32-word group boundaries, densities from empty to full,
 * single set bits at every word of a group, garbage in the source's tail
 * (which must count for nothing), page-guarded sources so over-reads fault. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../bitmap/merge_scan.h"
#include "lib/bitref.h"
#include "lib/variants.h"

#define CTX "merge_scan[%s] dst_bit=%" PRIu64 " nbits=%" PRIu64 " seed=%#" PRIx64

/* The expected scan of src bits [0, nbits). */
static void ref_scan(const uint64_t *src, uint64_t nbits, struct precopy__bitmap_scan *sc)
{
	uint64_t nw = bitref_words(nbits);

	sc->bits = bitref_count(src, 0, nbits);
	sc->first = nw;
	sc->last = 0;
	for (uint64_t w = 0; w < nw; w++) {
		if (bitref_count(src, w * 64, w + 1 < nw ? 64 : nbits - w * 64) == 0)
			continue;
		if (sc->first == nw)
			sc->first = w;
		sc->last = w;
	}
}

/* One case on a source already filled (tail garbage set here). */
static void scan_case(enum precopy_simd v, uint64_t off, uint64_t nbits, uint64_t *src, uint64_t seed)
{
	struct precopy__bitmap_scan want, got;
	struct bitref_rng r;
	struct bitref_dst d;
	uint64_t *ref, dst_nbits;
	int64_t exp;
	uint64_t cnt;

	bitref_set_tail(src, nbits);
	bitref_rng_seed(&r, seed);
	dst_nbits = off + nbits + bitref_rng_below(&r, 100);
	bitref_dst_init(&d, dst_nbits, bitref_rng_below(&r, 2) ? 0.0 : 0.4, &r);
	ref = malloc(d.nwords * 8);
	cr_assert_not_null(ref);
	memcpy(ref, d.bm.words, d.nwords * 8);
	exp = bitref_merge(ref, off, src, nbits);
	ref_scan(src, nbits, &want);
	memset(&got, 0xa5, sizeof(got));

	cnt = precopy__bitmap_merge_scan(&d.bm, off, src, nbits, &got);

	cr_assert_eq((int64_t)cnt, exp, CTX ": newly set %" PRIu64 ", expected %" PRId64, VNAME(v), off, nbits, seed,
		     cnt, exp);
	cr_assert_eq(bitref_first_diff(d.bm.words, ref, d.nwords), -1, CTX ": destination differs", VNAME(v), off,
		     nbits, seed);
	cr_assert(bitref_dst_guards_ok(&d), CTX ": wrote outside the destination", VNAME(v), off, nbits, seed);
	cr_assert_eq(got.bits, want.bits, CTX ": bits %" PRIu64 ", expected %" PRIu64, VNAME(v), off, nbits, seed,
		     got.bits, want.bits);
	cr_assert_eq(got.first, want.first, CTX ": first %" PRIu64 ", expected %" PRIu64, VNAME(v), off, nbits,
		     seed, got.first, want.first);
	cr_assert_eq(got.last, want.last, CTX ": last %" PRIu64 ", expected %" PRIu64, VNAME(v), off, nbits, seed,
		     got.last, want.last);
	free(ref);
	bitref_dst_free(&d);
}

static void random_source(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 63, 64, 65, 511, 512, 513, 2047, 2048, 2049, 4096, 4097, 100003 };
	static const uint64_t offs[] = { 0, 1, 13, 63, 64, 65, 127, 128, 4096 };
	static const double dens[] = { 0.0, 0.00002, 0.0005, 0.01, 0.5, 1.0 };

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		uint64_t nbits = lens[li], nw = bitref_words(nbits);
		uint64_t *src = bitref_guarded_alloc(nw);

		for (size_t oi = 0; oi < sizeof(offs) / sizeof(offs[0]); oi++)
			for (size_t di = 0; di < sizeof(dens) / sizeof(dens[0]); di++) {
				uint64_t seed = case_seed(nbits, offs[oi], di, 0x5ca9);
				struct bitref_rng r;

				bitref_rng_seed(&r, seed);
				bitref_fill_random(src, nbits, dens[di], &r);
				scan_case(v, offs[oi], nbits, src, seed);
			}
		bitref_guarded_free(src, nw);
	}
}
VARIANT_TESTS(merge_scan, random_sources, random_source, .timeout = 300)

/* Exactly one or two set bits, placed at every word of the first two
 * 32-word groups and the vector tail: first and last must name them. */
static void sparse_positions(enum precopy_simd v)
{
	static const uint64_t lens[] = { 64 * 75, 64 * 75 + 9 };
	static const uint64_t offs[] = { 0, 5, 64 };

	for (size_t li = 0; li < 2; li++) {
		uint64_t nbits = lens[li], nw = bitref_words(nbits);
		uint64_t *src = bitref_guarded_alloc(nw);

		for (size_t oi = 0; oi < 3; oi++)
			for (uint64_t a = 0; a < nw; a++)
				for (uint64_t b = a; b < nw; b += (b < 70 ? 7 : 1)) {
					uint64_t abit = a * 64 + (a * 37) % 64, bbit = b * 64 + (b * 11) % 64;

					if (abit >= nbits || bbit >= nbits)
						continue;
					memset(src, 0, nw * 8);
					bitref_set(src, abit);
					bitref_set(src, bbit);
					scan_case(v, offs[oi], nbits, src, case_seed(a, b, offs[oi], nbits));
				}
		bitref_guarded_free(src, nw);
	}
}
VARIANT_TESTS(merge_scan, sparse_positions, sparse_positions, .timeout = 300)

/* Only tail garbage set: nothing to report, nothing merged. */
static void tail_only(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 7, 65, 2049, 4103 };

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		uint64_t nbits = lens[li], nw = bitref_words(nbits);
		uint64_t *src = bitref_guarded_alloc(nw);

		for (uint64_t off = 0; off < 70; off += 3) {
			memset(src, 0, nw * 8);
			scan_case(v, off, nbits, src, case_seed(nbits, off, 1, 2));
		}
		bitref_guarded_free(src, nw);
	}
}
VARIANT_TESTS(merge_scan, tail_garbage_only, tail_only)
