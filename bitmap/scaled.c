/* SPDX-License-Identifier: MIT */
/* Merging a log kept at another page size: expansion (a bigger source
 * page marks several destination pages) and combining (any dirty source
 * sub-page marks the destination page), and the chunked merge loop that
 * reads a large device range piece by piece. */
#include <errno.h>
#include <string.h>

#include "kernels.h"

/* Working buffer in destination-format words, small enough for L1. */
#define TMP_WORDS 1024u

struct scaled_plan {
	uint64_t first;    /* destination bit of the source range's start */
	uint64_t phase;    /* combining: source pages before the source start in its dst page */
	unsigned log2r;    /* log2 of the page-size ratio */
	int dir;           /* >0 expand, <0 combine, 0 same size */
};

/* Validate everything; on success fill *p. Nothing is written. */
static int plan_scaled(const struct precopy_bitmap *dst, uint64_t dps, uint64_t offset,
		       const uint64_t *src, uint64_t nbits, uint64_t sps, struct scaled_plan *p)
{
	uint64_t last;

	if (!dst || !dst->words || !src || !nbits || !is_pow2(dps) || !is_pow2(sps))
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	if (sps >= dps) {
		uint64_t r = sps / dps;

		if (r > PRECOPY_BITMAP_MAX_RATIO || offset % dps)
			return -EINVAL;
		p->log2r = log2_u64(r);
		p->dir = r > 1;
		p->first = offset / dps;
		if (nbits > (UINT64_MAX >> p->log2r))
			return -ERANGE;
		if (p->first > dst->nbits || (nbits << p->log2r) > dst->nbits - p->first)
			return -ERANGE;
		return 0;
	}
	if (dps / sps > PRECOPY_BITMAP_MAX_RATIO || offset % sps)
		return -EINVAL;
	p->log2r = log2_u64(dps / sps);
	p->dir = -1;
	p->first = offset / dps;
	p->phase = (offset % dps) / sps;
	/* last destination bit touched: first + (phase + nbits - 1) / r */
	if (nbits - 1 > UINT64_MAX - p->phase)
		return -ERANGE;
	last = (p->phase + nbits - 1) >> p->log2r;
	if (p->first >= dst->nbits || last >= dst->nbits - p->first)
		return -ERANGE;
	return 0;
}

/* Copy nbits source bits starting at bit `from` into out (bit 0 onward),
 * zeroing the bits after them in the last word. Reads only the source
 * words that hold those bits. */
static void copy_bits(uint64_t *out, const uint64_t *src, uint64_t from, uint64_t nbits)
{
	const uint64_t *s = src + (from >> 6);
	unsigned sh = from & 63;
	uint64_t nw = PRECOPY_BITMAP_WORDS(nbits);
	uint64_t have = PRECOPY_BITMAP_WORDS(sh + nbits); /* source words readable */

	for (uint64_t i = 0; i < nw; i++) {
		uint64_t v = s[i] >> sh;

		if (sh && i + 1 < have)
			v |= s[i + 1] << (64 - sh);
		out[i] = v;
	}
	if (nbits & 63)
		out[nw - 1] &= low_mask(nbits & 63);
}

static uint64_t merge_at(const struct precopy__bitmap_kernels *k, struct precopy_bitmap *dst, uint64_t bit,
			 const uint64_t *src, uint64_t nbits)
{
	return precopy__bitmap_merge_window(k, dst->words + (bit >> 6), bit & 63, src, nbits, 0, UINT64_MAX);
}

static uint64_t expand(const struct precopy__bitmap_kernels *k, struct precopy_bitmap *dst,
		       const struct scaled_plan *p, const uint64_t *src, uint64_t nbits)
{
	uint64_t tmp[TMP_WORDS], cnt = 0, r = 1ull << p->log2r;

	if (p->log2r >= 6) {
		/* Each source bit covers whole destination words or more: fill
		 * ranges for the set bits only; the extraction is vectorised. */
		uint64_t pages[256];
		uint64_t wi = 0, nw = PRECOPY_BITMAP_WORDS(nbits);

		while (wi < nw) {
			uint64_t span = nw - wi < 4 ? nw - wi : 4, n;

			memcpy(tmp, src + wi, span * 8);
			if (wi + span == nw && (nbits & 63))
				tmp[span - 1] &= low_mask(nbits & 63);
			n = k->extract(pages, tmp, span, wi * 64);
			for (uint64_t j = 0; j < n; j++)
				cnt += precopy__bitmap_set_bits(dst->words, p->first + (pages[j] << p->log2r), r);
			wi += span;
		}
		return cnt;
	}
	/* r = 2..32: expand a block of source words into tmp, then one fused
	 * merge of tmp at the destination offset. */
	uint64_t per = TMP_WORDS >> p->log2r; /* source words per block */
	for (uint64_t done = 0; done < nbits;) {
		uint64_t bits = nbits - done < per * 64 ? nbits - done : per * 64;
		uint64_t nw = PRECOPY_BITMAP_WORDS(bits);
		const uint64_t *s = src + (done >> 6);
		uint64_t last[1];

		if (bits & 63) { /* a partial final word: expand it masked */
			if (nw > 1)
				k->expand(tmp, s, nw - 1, p->log2r);
			last[0] = s[nw - 1] & low_mask(bits & 63);
			k->expand(tmp + ((nw - 1) << p->log2r), last, 1, p->log2r);
		} else {
			k->expand(tmp, s, nw, p->log2r);
		}
		cnt += merge_at(k, dst, p->first + (done << p->log2r), tmp, bits << p->log2r);
		done += bits;
	}
	return cnt;
}

/* 1 if any of source bits [from, from + n) is set. */
static int any_bits(const struct precopy__bitmap_kernels *k, const uint64_t *src, uint64_t from, uint64_t n)
{
	uint64_t w = from >> 6, last = from + n - 1, lw = last >> 6;
	uint64_t head = ~0ull << (from & 63), tailm = ~0ull >> (63 - (last & 63));

	if (w == lw)
		return !!(src[w] & head & tailm);
	if (src[w] & head || src[lw] & tailm)
		return 1;
	return k->find_nonzero(src + w + 1, lw - w - 1) < lw - w - 1;
}

static uint64_t combine(const struct precopy__bitmap_kernels *k, struct precopy_bitmap *dst,
			const struct scaled_plan *p, const uint64_t *src, uint64_t nbits)
{
	uint64_t r = 1ull << p->log2r, cnt = 0, pos = 0, out = p->first;

	if (p->phase) { /* the source starts inside a destination page */
		uint64_t head = r - p->phase < nbits ? r - p->phase : nbits;

		if (any_bits(k, src, 0, head))
			cnt += precopy__bitmap_set_bits(dst->words, out, 1);
		pos = head;
		out++;
	}
	if (pos == nbits)
		return cnt;
	if (p->log2r > 6) {
		/* Groups of whole words: test each group, gather 64 results. */
		uint64_t acc[1];

		while (pos < nbits) {
			unsigned j = 0;

			acc[0] = 0;
			for (; j < 64 && pos < nbits; j++) {
				uint64_t n = nbits - pos < r ? nbits - pos : r;

				acc[0] |= (uint64_t)any_bits(k, src, pos, n) << j;
				pos += n;
			}
			cnt += merge_at(k, dst, out, acc, j);
			out += j;
		}
		return cnt;
	}
	/* r = 2..64: blocks of source words (copied when not word-aligned or
	 * partial), combined by the kernel, merged at the destination. */
	uint64_t tmp[TMP_WORDS], res[TMP_WORDS / 2];
	const uint64_t blk_bits = (uint64_t)TMP_WORDS * 64; /* multiple of 64 * r */

	while (pos < nbits) {
		uint64_t bits = nbits - pos < blk_bits ? nbits - pos : blk_bits;
		uint64_t groups = (bits + r - 1) >> p->log2r; /* output bits */
		uint64_t nw = ((groups + 63) / 64) << p->log2r; /* source words the kernel reads */
		const uint64_t *s;

		if ((pos & 63) || bits != blk_bits) {
			copy_bits(tmp, src, pos, bits);
			memset(tmp + PRECOPY_BITMAP_WORDS(bits), 0, (nw - PRECOPY_BITMAP_WORDS(bits)) * 8);
			s = tmp;
		} else {
			s = src + (pos >> 6);
		}
		k->combine(res, s, nw, p->log2r);
		cnt += merge_at(k, dst, out, res, groups);
		out += groups;
		pos += bits;
	}
	return cnt;
}

PRECOPY_API int64_t precopy_bitmap_merge_scaled(struct precopy_bitmap *dst, uint64_t dst_page_size,
						uint64_t offset, const uint64_t *src, uint64_t src_bits,
						uint64_t src_page_size)
{
	const struct precopy__bitmap_kernels *k = precopy__bitmap_kernels();
	struct scaled_plan p;
	int r = plan_scaled(dst, dst_page_size, offset, src, src_bits, src_page_size, &p);

	if (r)
		return r;
	if (p.dir == 0)
		return (int64_t)merge_at(k, dst, p.first, src, src_bits);
	if (p.dir > 0)
		return (int64_t)expand(k, dst, &p, src, src_bits);
	return (int64_t)combine(k, dst, &p, src, src_bits);
}

PRECOPY_API int precopy_bitmap_merge_chunked(struct precopy_bitmap *dst, uint64_t dst_base,
					     uint64_t dst_page_size, uint64_t addr, uint64_t len,
					     uint64_t chunk_bytes, const struct precopy_chunk_reader *reader,
					     uint64_t *buf, size_t buf_words, uint64_t *newly_dirty)
{
	struct scaled_plan p;
	uint64_t ps, end, total = 0;
	int r;

	if (newly_dirty)
		*newly_dirty = 0;
	if (!reader || !reader->read || !buf || !len || !chunk_bytes)
		return -EINVAL;
	ps = reader->page_size;
	if (!is_pow2(ps) || addr % ps || len % ps || chunk_bytes % ps)
		return -EINVAL;
	if (chunk_bytes / ps > (uint64_t)buf_words * 64)
		return -EINVAL;
	if (addr < dst_base || len > UINT64_MAX - addr)
		return -ERANGE;
	/* Validating the whole range validates every chunk of it. */
	r = plan_scaled(dst, dst_page_size, addr - dst_base, buf, len / ps, ps, &p);
	if (r)
		return r;
	end = addr + len; /* no overflow: checked above */
	/* Driven by the bytes done, so an address range ending at 2^64 cannot
	 * wrap; each chunk starts at addr + done (advance by the chunk length). */
	for (uint64_t done = 0, c; done < len; done += c) {
		uint64_t a = addr + done;
		int64_t m;

		c = len - done < chunk_bytes ? len - done : chunk_bytes;
		memset(buf, 0, PRECOPY_BITMAP_WORDS(c / ps) * 8);
		r = reader->read(reader->ctx, a, c, ps, buf);
		if (r < 0) {
			/* The log for [a, end) is lost: all of it counts as dirty. */
			uint64_t lo = (a - dst_base) / dst_page_size;
			uint64_t span = end - dst_base; /* <= dst->nbits * dst_page_size */
			uint64_t hi = span / dst_page_size + !!(span % dst_page_size);

			total += precopy__bitmap_set_bits(dst->words, lo, hi - lo);
			if (newly_dirty)
				*newly_dirty = total;
			return r;
		}
		m = precopy_bitmap_merge_scaled(dst, dst_page_size, a - dst_base, buf, c / ps, ps);
		if (m < 0) /* cannot happen after plan_scaled; never ignore it */
			return (int)m;
		total += (uint64_t)m;
	}
	if (newly_dirty)
		*newly_dirty = total;
	return 0;
}
