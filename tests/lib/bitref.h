/* SPDX-License-Identifier: MIT */
/* tests/lib/bitref.h — a plain, bit-by-bit reference for the bitmap engine,
 * plus test helpers (seeded PRNG, random and clustered bitmaps, guarded
 * buffers). Test-only: nothing here is fast, everything here is obvious.
 *
 * The reference functions work on raw uint64_t words with the same
 * little-endian bit order as include/precopy/bitmap.h. They assume valid
 * input (the tests compute expected error codes from tables, not from here).
 *
 * Thread safety: every function touches only its arguments; a bitref_rng
 * must not be shared between threads.
 */
#ifndef TESTS_LIB_BITREF_H
#define TESTS_LIB_BITREF_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/bitmap.h"

/* ---- PRNG (splitmix64) -------------------------------------------------- */

struct bitref_rng {
	uint64_t s;
};

void bitref_rng_seed(struct bitref_rng *r, uint64_t seed);
uint64_t bitref_rng_next(struct bitref_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t bitref_rng_below(struct bitref_rng *r, uint64_t n);

/* ---- single bits ---------------------------------------------------------- */

static inline int bitref_get(const uint64_t *w, uint64_t bit)
{
	return (int)((w[bit / 64] >> (bit % 64)) & 1);
}

static inline void bitref_set(uint64_t *w, uint64_t bit)
{
	w[bit / 64] |= 1ull << (bit % 64);
}

static inline void bitref_clear(uint64_t *w, uint64_t bit)
{
	w[bit / 64] &= ~(1ull << (bit % 64));
}

static inline uint64_t bitref_words(uint64_t nbits)
{
	return (nbits + 63) / 64;
}

/* ---- fills ------------------------------------------------------------------ */

/* Bits [0, nbits) set independently with probability `density` (0..1;
 * exactly 0 gives none, exactly 1 gives all); tail bits cleared. */
void bitref_fill_random(uint64_t *w, uint64_t nbits, double density, struct bitref_rng *r);

/* Runs of set bits separated by gaps; run and gap lengths uniform in
 * [1, 2*mean_run] and [1, 2*mean_gap]. Tail bits cleared. */
void bitref_fill_clustered(uint64_t *w, uint64_t nbits, uint64_t mean_run, uint64_t mean_gap,
			   struct bitref_rng *r);

/* Set every tail bit (positions >= nbits in the last word): garbage that a
 * source's consumer must ignore. No-op when nbits is a multiple of 64. */
void bitref_set_tail(uint64_t *w, uint64_t nbits);

/* 1 if every tail bit is clear. */
int bitref_tail_is_zero(const uint64_t *w, uint64_t nbits);

/* ---- reference operations ------------------------------------------------ */

/* OR src bits [0, nbits) into dst at dst_bit. Returns the newly set count. */
int64_t bitref_merge(uint64_t *dst, uint64_t dst_bit, const uint64_t *src, uint64_t nbits);

/* Scaled merge with the semantics of precopy_bitmap_merge_scaled(): source
 * bit i covers bytes [offset + i*sps, offset + (i+1)*sps) relative to dst bit
 * 0's address; every destination page (dps bytes) touching a dirty source
 * page is set. Returns the newly set count. */
int64_t bitref_merge_scaled(uint64_t *dst, uint64_t dps, uint64_t offset, const uint64_t *src,
			    uint64_t src_bits, uint64_t sps);

/* Set / clear [first, first + count): returns bits newly set / that were set. */
int64_t bitref_set_range(uint64_t *w, uint64_t first, uint64_t count);
int64_t bitref_clear_range(uint64_t *w, uint64_t first, uint64_t count);

/* Set bits in [first, first + count). */
uint64_t bitref_count(const uint64_t *w, uint64_t first, uint64_t count);

/* First set bit in [from, nbits), or nbits. */
uint64_t bitref_next_set(const uint64_t *w, uint64_t nbits, uint64_t from);

/* All set bits in [from, nbits) into out (which must hold them all).
 * Returns how many. */
uint64_t bitref_extract(const uint64_t *w, uint64_t nbits, uint64_t from, uint64_t *out);

/* Maximal runs of set bits in [from, nbits) (a run starting before `from` is
 * clipped to start at from). Returns how many. */
uint64_t bitref_runs(const uint64_t *w, uint64_t nbits, uint64_t from, struct precopy_page_run *out);

/* Index of the first differing word among n, or -1. */
int64_t bitref_first_diff(const uint64_t *a, const uint64_t *b, uint64_t n);

/* ---- buffers ------------------------------------------------------------- */

/* nwords words (>= 1) whose end abuts a PROT_NONE page, so any read past
 * the last word faults even without ASan. Aborts on failure. */
uint64_t *bitref_guarded_alloc(uint64_t nwords);
void bitref_guarded_free(uint64_t *p, uint64_t nwords);

/* A destination bitmap with BITREF_GUARD guard words on each side holding
 * BITREF_GUARD_PATTERN, so writes outside the bitmap's words are caught. */
#define BITREF_GUARD 4
#define BITREF_GUARD_PATTERN 0xa5c3f00fdeadbeefull

struct bitref_dst {
	uint64_t *mem;  /* guard + words + guard */
	uint64_t nwords;
	struct precopy_bitmap bm;  /* wraps mem + BITREF_GUARD */
};

/* Allocate (aborts on failure) and fill bits with density `density`, tail
 * clear. */
void bitref_dst_init(struct bitref_dst *d, uint64_t nbits, double density, struct bitref_rng *r);
void bitref_dst_free(struct bitref_dst *d);
/* 1 if all guard words still hold the pattern. */
int bitref_dst_guards_ok(const struct bitref_dst *d);

/* Popcount of nwords words (tail included: callers keep tails clear). */
uint64_t bitref_popcount(const uint64_t *w, uint64_t nwords);

#endif /* TESTS_LIB_BITREF_H */
