/* SPDX-License-Identifier: MIT */
/* Merge at any bit offset (fused OR + count), single bits, ranges, counts. */
#include <errno.h>
#include <string.h>

#include "kernels.h"

int precopy__bitmap_check_range(const struct precopy_bitmap *bm, uint64_t first, uint64_t count)
{
	if (!bm || !bm->words || !count)
		return -EINVAL;
	if (first > bm->nbits || count > bm->nbits - first)
		return -ERANGE;
	return 0;
}

/* Clip [lo, hi) to the window [wlo, whi). */
static int clip(uint64_t *lo, uint64_t *hi, uint64_t wlo, uint64_t whi)
{
	if (*lo < wlo)
		*lo = wlo;
	if (*hi > whi)
		*hi = whi;
	return *lo < *hi;
}

uint64_t precopy__bitmap_merge_window(const struct precopy__bitmap_kernels *k, uint64_t *d, unsigned o,
			     const uint64_t *src, uint64_t nbits, uint64_t wlo, uint64_t whi)
{
	uint64_t nsw = nbits >> 6; /* full source words */
	unsigned tail = nbits & 63;
	uint64_t t = tail ? src[nsw] & low_mask(tail) : 0; /* the partial word, masked */
	uint64_t cnt = 0, lo, hi;

#define IN_WINDOW(w) ((w) >= wlo && (w) < whi)
	if (o == 0) {
		/* destination word i <- source word i */
		lo = 0, hi = nsw;
		if (clip(&lo, &hi, wlo, whi))
			cnt += k->or_count(d + lo, src + lo, hi - lo);
		if (tail && IN_WINDOW(nsw))
			cnt += or_word(&d[nsw], t);
		return cnt;
	}
	/* Destination word i (i >= 1) <- (s[i] << o) | (s[i-1] >> (64 - o)),
	 * where s is the source with its partial word masked and zeros after. */
	if (nsw == 0) {
		if (IN_WINDOW(0))
			cnt += or_word(&d[0], t << o);
		if (o + tail > 64 && IN_WINDOW(1))
			cnt += or_word(&d[1], t >> (64 - o));
		return cnt;
	}
	if (IN_WINDOW(0))
		cnt += or_word(&d[0], src[0] << o);
	lo = 1, hi = nsw; /* words whose two source words are both full */
	if (clip(&lo, &hi, wlo, whi))
		cnt += k->or_count_shift(d + lo, src + lo, hi - lo, o);
	if (IN_WINDOW(nsw))
		cnt += or_word(&d[nsw], (src[nsw - 1] >> (64 - o)) | (t << o));
	if (tail && o + tail > 64 && IN_WINDOW(nsw + 1))
		cnt += or_word(&d[nsw + 1], t >> (64 - o));
#undef IN_WINDOW
	return cnt;
}

uint64_t precopy__bitmap_merge_scan(struct precopy_bitmap *dst, uint64_t dst_bit, const uint64_t *src,
				    uint64_t nbits, struct precopy__bitmap_scan *sc)
{
	const struct precopy__bitmap_kernels *k = precopy__bitmap_kernels();
	uint64_t *d = dst->words + (dst_bit >> 6);
	uint64_t nsw = nbits >> 6, nw = PRECOPY_BITMAP_WORDS(nbits), cnt;
	unsigned o = dst_bit & 63, tail = nbits & 63;
	uint64_t t = tail ? src[nsw] & low_mask(tail) : 0; /* the partial word, masked */

	if (o == 0) {
		cnt = k->or_count_scan(d, src, nsw, sc);
		if (sc->first == nsw)
			sc->first = nw;
		if (t) {
			sc->bits += popcount64(t);
			if (sc->first == nw)
				sc->first = nsw;
			sc->last = nsw;
			cnt += or_word(&d[nsw], t);
		}
		return cnt;
	}
	/* The funnel-shifted merge has no scanning kernel: count and locate
	 * in a second pass, still vectorised. */
	cnt = precopy__bitmap_merge_window(k, d, o, src, nbits, 0, UINT64_MAX);
	sc->bits = k->popcount(src, nsw) + popcount64(t);
	sc->first = k->find_nonzero(src, nsw);
	sc->last = 0;
	if (t) {
		sc->last = nsw; /* and first <= nsw already */
	} else if (sc->first == nsw) {
		sc->first = nw;
	} else {
		uint64_t w = nsw - 1;

		while (!src[w])
			w--;
		sc->last = w;
	}
	return cnt;
}

PRECOPY_API int64_t precopy_bitmap_merge(struct precopy_bitmap *dst, uint64_t dst_bit,
					 const uint64_t *src, uint64_t nbits)
{
	int r = precopy__bitmap_check_range(dst, dst_bit, nbits);

	if (r)
		return r;
	if (!src)
		return -EINVAL;
	return (int64_t)precopy__bitmap_merge_window(precopy__bitmap_kernels(), dst->words + (dst_bit >> 6),
					    dst_bit & 63, src, nbits, 0, UINT64_MAX);
}

uint64_t precopy__bitmap_set_bits(uint64_t *words, uint64_t first, uint64_t count)
{
	uint64_t w = first >> 6, last = first + count - 1, lw = last >> 6, cnt = 0;
	uint64_t head = ~0ull << (first & 63), tailm = ~0ull >> (63 - (last & 63));

	if (w == lw)
		return or_word(&words[w], head & tailm);
	cnt += or_word(&words[w], head);
	for (uint64_t i = w + 1; i < lw; i++) {
		cnt += 64 - popcount64(words[i]);
		words[i] = ~0ull;
	}
	return cnt + or_word(&words[lw], tailm);
}

PRECOPY_API int64_t precopy_bitmap_set_range(struct precopy_bitmap *bm, uint64_t first, uint64_t count)
{
	int r = precopy__bitmap_check_range(bm, first, count);

	return r ? r : (int64_t)precopy__bitmap_set_bits(bm->words, first, count);
}

PRECOPY_API int64_t precopy_bitmap_clear_range(struct precopy_bitmap *bm, uint64_t first, uint64_t count)
{
	int r = precopy__bitmap_check_range(bm, first, count);
	uint64_t w, lw, last, head, tailm, cnt = 0;

	if (r)
		return r;
	w = first >> 6, last = first + count - 1, lw = last >> 6;
	head = ~0ull << (first & 63), tailm = ~0ull >> (63 - (last & 63));
	if (w == lw) {
		cnt = popcount64(bm->words[w] & head & tailm);
		bm->words[w] &= ~(head & tailm);
		return (int64_t)cnt;
	}
	cnt += popcount64(bm->words[w] & head);
	bm->words[w] &= ~head;
	cnt += precopy__bitmap_kernels()->popcount(bm->words + w + 1, lw - w - 1);
	memset(bm->words + w + 1, 0, (lw - w - 1) * 8);
	cnt += popcount64(bm->words[lw] & tailm);
	bm->words[lw] &= ~tailm;
	return (int64_t)cnt;
}

PRECOPY_API void precopy_bitmap_zero(struct precopy_bitmap *bm)
{
	if (bm && bm->words)
		memset(bm->words, 0, PRECOPY_BITMAP_WORDS(bm->nbits) * 8);
}

PRECOPY_API int precopy_bitmap_test(const struct precopy_bitmap *bm, uint64_t bit)
{
	if (!bm || !bm->words)
		return -EINVAL;
	if (bit >= bm->nbits)
		return -ERANGE;
	return (int)((__atomic_load_n(&bm->words[bit >> 6], __ATOMIC_RELAXED) >> (bit & 63)) & 1);
}

PRECOPY_API int precopy_bitmap_set_atomic(struct precopy_bitmap *bm, uint64_t bit)
{
	uint64_t m, old;

	if (!bm || !bm->words)
		return -EINVAL;
	if (bit >= bm->nbits)
		return -ERANGE;
	m = 1ull << (bit & 63);
	old = __atomic_fetch_or(&bm->words[bit >> 6], m, __ATOMIC_RELEASE);
	return !(old & m);
}

PRECOPY_API uint64_t precopy_bitmap_count(const struct precopy_bitmap *bm)
{
	uint64_t full;

	if (!bm || !bm->words || !bm->nbits)
		return 0;
	full = bm->nbits >> 6;
	return precopy__bitmap_kernels()->popcount(bm->words, full) +
	       ((bm->nbits & 63) ? popcount64(bm->words[full] & low_mask(bm->nbits & 63)) : 0);
}

PRECOPY_API int64_t precopy_bitmap_count_range(const struct precopy_bitmap *bm, uint64_t first,
					       uint64_t count)
{
	int r = precopy__bitmap_check_range(bm, first, count);
	uint64_t w, lw, last, head, tailm;

	if (r)
		return r;
	w = first >> 6, last = first + count - 1, lw = last >> 6;
	head = ~0ull << (first & 63), tailm = ~0ull >> (63 - (last & 63));
	if (w == lw)
		return popcount64(bm->words[w] & head & tailm);
	return (int64_t)(popcount64(bm->words[w] & head) +
			 precopy__bitmap_kernels()->popcount(bm->words + w + 1, lw - w - 1) +
			 popcount64(bm->words[lw] & tailm));
}
