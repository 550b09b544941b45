/* SPDX-License-Identifier: MIT */
/* Walking set bits: next set bit, bulk extraction into page numbers, and
 * coalescing into (first, count) runs. */
#include <errno.h>

#include "kernels.h"

/* Words per extraction block: small enough to stay in L1 between the
 * popcount that sizes it and the extraction that reads it again. */
#define BLOCK_WORDS 256u

PRECOPY_API uint64_t precopy_bitmap_next_set(const struct precopy_bitmap *bm, uint64_t from)
{
	const struct precopy__bitmap_kernels *k = precopy__bitmap_kernels();
	uint64_t w, nw, x;

	if (!bm || !bm->words || from >= bm->nbits)
		return bm ? bm->nbits : 0;
	w = from >> 6;
	nw = PRECOPY_BITMAP_WORDS(bm->nbits);
	x = bm->words[w] & (~0ull << (from & 63));
	if (!x) {
		w++;
		w += k->find_nonzero(bm->words + w, nw - w);
		if (w >= nw)
			return bm->nbits;
		x = bm->words[w];
	}
	from = w * 64 + (unsigned)__builtin_ctzll(x);
	return from < bm->nbits ? from : bm->nbits; /* a tail bit is not a page */
}

/* Extract set bits of one word (masked) with a capacity limit; returns the
 * number written and leaves *rest with the bits that did not fit. */
static size_t extract_word(uint64_t *out, size_t room, uint64_t x, uint64_t base, uint64_t *rest)
{
	size_t c = 0;

	while (x && c < room) {
		out[c++] = base + (unsigned)__builtin_ctzll(x);
		x &= x - 1;
	}
	*rest = x;
	return c;
}

PRECOPY_API int64_t precopy_bitmap_extract(const struct precopy_bitmap *bm, uint64_t *cursor,
					   uint64_t *pages, size_t max)
{
	const struct precopy__bitmap_kernels *k = precopy__bitmap_kernels();
	uint64_t pos, full, rest;
	size_t c = 0;

	if (!bm || !bm->words || !cursor || !pages || !max)
		return -EINVAL;
	pos = *cursor;
	if (pos >= bm->nbits) {
		*cursor = bm->nbits;
		return 0;
	}
	full = bm->nbits >> 6; /* words with no tail bits */
	/* the cursor's own word, from the cursor bit on */
	if (pos & 63) {
		uint64_t w = pos >> 6, x = bm->words[w] & (~0ull << (pos & 63));

		if (w == full)
			x &= low_mask(bm->nbits & 63);
		c = extract_word(pages, max, x, w * 64, &rest);
		if (rest) {
			*cursor = w * 64 + (unsigned)__builtin_ctzll(rest);
			return (int64_t)c;
		}
		pos = (w + 1) * 64;
	}
	/* whole blocks where they fit, then word by word */
	for (uint64_t w = pos >> 6; w < full;) {
		uint64_t n = full - w < BLOCK_WORDS ? full - w : BLOCK_WORDS;

		if (max - c >= n * 64 || k->popcount(bm->words + w, n) <= max - c) {
			c += k->extract(pages + c, bm->words + w, n, w * 64);
			w += n;
			continue;
		}
		for (uint64_t e = w + n; w < e; w++) {
			c += extract_word(pages + c, max - c, bm->words[w], w * 64, &rest);
			if (rest) {
				*cursor = w * 64 + (unsigned)__builtin_ctzll(rest);
				return (int64_t)c;
			}
		}
	}
	if ((bm->nbits & 63) && pos <= full * 64) {
		uint64_t x = bm->words[full] & low_mask(bm->nbits & 63);

		c += extract_word(pages + c, max - c, x, full * 64, &rest);
		if (rest) {
			*cursor = full * 64 + (unsigned)__builtin_ctzll(rest);
			return (int64_t)c;
		}
	}
	*cursor = bm->nbits;
	return (int64_t)c;
}

/* The runs of a word none of whose runs crosses its edges (the bit before
 * it is clear, and so is its bit 63): starts s = x & ~(x << 1), ends (the
 * clear bit after each run) e = ~x & (x << 1), paired in order. A sparse
 * log has zero, one or two runs in most words: those are written without a
 * branch (an empty slot is written and not counted; the caller leaves room
 * for 64), so the cost does not hinge on predicting how many there are. */
static inline void w_runs_inside(struct precopy_page_run *runs, size_t *c, uint64_t x,
				 uint64_t base)
{
	const uint64_t hi = 1ull << 63; /* keeps the bit scan defined on 0 */
	uint64_t s = x & ~(x << 1), e = ~x & (x << 1);
	size_t n = *c;

	for (int i = 0; i < 2; i++) {
		unsigned a = (unsigned)__builtin_ctzll(s | hi), b = (unsigned)__builtin_ctzll(e | hi);

		runs[n].first = base + a;
		runs[n].count = b - a;
		n += s != 0;
		s &= s - 1;
		e &= e - 1;
	}
	for (; s; s &= s - 1, e &= e - 1) {
		unsigned a = (unsigned)__builtin_ctzll(s), b = (unsigned)__builtin_ctzll(e);

		runs[n].first = base + a;
		runs[n].count = b - a;
		n++;
	}
	*c = n;
}

/* Runs are found a word at a time: with x the word's bits and `in` whether
 * the bit before it is set, (x & ~(x << 1 | in)) marks run starts and
 * (~x & (x << 1 | in)) marks the first clear bit after a run. Their union
 * is walked with count-trailing-zeros, so the cost follows the number of
 * runs, and empty or full words are skipped whole. */
PRECOPY_API int64_t precopy_bitmap_runs(const struct precopy_bitmap *bm, uint64_t *cursor,
					struct precopy_page_run *runs, size_t max)
{
	const struct precopy__bitmap_kernels *k = precopy__bitmap_kernels();
	uint64_t pos, nw, w, first = 0;
	size_t c = 0;
	int in = 0;

	if (!bm || !bm->words || !cursor || !runs || !max)
		return -EINVAL;
	pos = *cursor;
	if (pos >= bm->nbits) {
		*cursor = bm->nbits;
		return 0;
	}
	nw = PRECOPY_BITMAP_WORDS(bm->nbits);
	for (w = pos >> 6; w < nw; w++) {
		uint64_t x = bm->words[w];

		if (w == pos >> 6)
			x &= ~0ull << (pos & 63); /* bits before the cursor are not ours */
		if (w == nw - 1 && (bm->nbits & 63))
			x &= low_mask(bm->nbits & 63); /* nor are tail bits */
		if (!in && w + 4 <= nw && !(x | bm->words[w + 1] | bm->words[w + 2] | bm->words[w + 3])) {
			/* four empty words: skip the rest of the gap a vector at
			 * a time (a shorter gap is cheaper to walk through) */
			w += 3 + k->find_nonzero(bm->words + w + 4, nw - w - 4);
			continue;
		}
		if (!in && !(x >> 63) && max - c >= 64) {
			w_runs_inside(runs, &c, x, w * 64);
			continue;
		}
		if (in && x == ~0ull)
			continue;
		uint64_t prev = (x << 1) | (uint64_t)in;
		uint64_t t = (x & ~prev) | (~x & prev);

		while (t) {
			unsigned b = (unsigned)__builtin_ctzll(t);

			t &= t - 1;
			if (!in) {
				if (c == max) { /* full: resume at this run's start */
					*cursor = w * 64 + b;
					return (int64_t)c;
				}
				first = w * 64 + b;
				in = 1;
			} else {
				runs[c].first = first;
				runs[c].count = w * 64 + b - first;
				c++;
				in = 0;
			}
		}
	}
	if (in) { /* a run reaching the end of the bitmap */
		runs[c].first = first;
		runs[c].count = bm->nbits - first;
		c++;
	}
	*cursor = bm->nbits;
	return (int64_t)c;
}
