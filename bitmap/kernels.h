/* SPDX-License-Identifier: MIT */
/* Internal: the per-ISA kernels behind the bitmap API, and the dispatcher.
 *
 * Every kernel works on whole 64-bit words; the callers in merge.c,
 * scaled.c and iter.c deal with bit offsets, heads and tails, so each
 * variant stays small and can be tested differentially against scalar. */
#ifndef PRECOPY_BITMAP_KERNELS_H
#define PRECOPY_BITMAP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/bitmap.h"
#include "merge_scan.h"

struct precopy__bitmap_kernels {
	enum precopy_simd variant;
	/* d[i] |= s[i] for i < n. Returns the count of bits newly set in d.
	 * Words of d whose s word is zero are not written. */
	uint64_t (*or_count)(uint64_t *d, const uint64_t *s, size_t n);
	/* or_count, and in the same pass over s: sc->bits = the set bits of
	 * s[0..n), sc->first and sc->last = the first and last non-zero words
	 * (first = n, last = 0 when there is none). */
	uint64_t (*or_count_scan)(uint64_t *d, const uint64_t *s, size_t n, struct precopy__bitmap_scan *sc);
	/* d[i] |= (s[i] << sh) | (s[i - 1] >> (64 - sh)) for i < n, 1 <= sh <= 63
	 * (reads s[-1 .. n-1]): a source shifted left by sh bits across words.
	 * Returns the count of bits newly set. */
	uint64_t (*or_count_shift)(uint64_t *d, const uint64_t *s, size_t n, unsigned sh);
	/* Set bits in w[0..n). */
	uint64_t (*popcount)(const uint64_t *w, size_t n);
	/* Index of the first non-zero word in w[0..n), or n. */
	size_t (*find_nonzero)(const uint64_t *w, size_t n);
	/* Expansion by r = 2^log2r (1 <= log2r <= 5): source bit i becomes output
	 * bits [i*r, (i+1)*r). Reads n source words, writes n*r output words. */
	void (*expand)(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r);
	/* Combining by r = 2^log2r (1 <= log2r <= 6): output bit j is set if any
	 * of source bits [j*r, (j+1)*r) is. Reads n source words (n*64/r must
	 * be a multiple of 64), writes n*64/r/64 output words. */
	void (*combine)(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r);
	/* Append base + index of every set bit of w[0..n) (bit index over the
	 * whole array) to out, in order. out must hold popcount(w[0..n)) entries.
	 * Returns the number written. */
	size_t (*extract)(uint64_t *out, const uint64_t *w, size_t n, uint64_t base);
};

extern const struct precopy__bitmap_kernels precopy__bitmap_kernels_scalar;
extern const struct precopy__bitmap_kernels precopy__bitmap_kernels_avx2;
extern const struct precopy__bitmap_kernels precopy__bitmap_kernels_avx512;

/* The kernels in use (forced or detected). Never NULL. */
const struct precopy__bitmap_kernels *precopy__bitmap_kernels(void);

/* ---- small shared helpers ---------------------------------------------- */

/* Low n bits set, 1 <= n <= 64. */
static inline uint64_t low_mask(unsigned n)
{
	return ~0ull >> (64 - n);
}

/* Portable popcount (no ISA assumption: the scalar variant must run
 * anywhere; variants compiled with -mpopcnt get the instruction). */
static inline unsigned popcount64(uint64_t x)
{
#if defined(__POPCNT__)
	return (unsigned)__builtin_popcountll(x);
#else
	x = x - ((x >> 1) & 0x5555555555555555ull);
	x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* OR v into *d, return the count of newly set bits; no store when v is 0. */
static inline uint64_t or_word(uint64_t *d, uint64_t v)
{
	uint64_t old;

	if (!v)
		return 0;
	old = *d;
	*d = old | v;
	return popcount64(v & ~old);
}

static inline int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline unsigned log2_u64(uint64_t x)
{
	return 63u - (unsigned)__builtin_clzll(x);
}

/* Internal entry points shared by the public functions. */

/* Merge nbits source bits so that source bit 0 lands on bit `o` (0..63) of
 * d[0], restricted to destination words [wlo, whi) relative to d (the
 * parallel merge gives each worker its own window; the serial merge passes
 * 0, UINT64_MAX). Returns the newly-set count. No bounds checks. */
uint64_t precopy__bitmap_merge_window(const struct precopy__bitmap_kernels *k, uint64_t *d, unsigned o,
			     const uint64_t *src, uint64_t nbits, uint64_t wlo, uint64_t whi);

/* Set bits [first, first + count) of words; returns the count newly set. */
uint64_t precopy__bitmap_set_bits(uint64_t *words, uint64_t first, uint64_t count);

/* Validate a bit range against a bitmap: -EINVAL for NULL / zero count,
 * -ERANGE past the end. */
int precopy__bitmap_check_range(const struct precopy_bitmap *bm, uint64_t first, uint64_t count);

#endif /* PRECOPY_BITMAP_KERNELS_H */
