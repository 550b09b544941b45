/* SPDX-License-Identifier: MIT */
/* AVX-512 kernels (F/BW/VL/DQ + VPOPCNTDQ + VBMI2 + BMI2). Compiled with
 * those flags (Makefile: *_avx512.c); only called where the CPU has them.
 *
 * Tails shorter than a vector use masked loads and stores, which do not
 * fault on masked-out lanes, so no kernel reads or writes past n words. */
#include <immintrin.h>

#include "kernels.h"

static inline __mmask8 tail8(size_t left)
{
	return (__mmask8)((1u << left) - 1);
}

/* d |= s over one vector (masked), count newly set, skip when s is zero. */
static inline __m512i or_vec(uint64_t *d, __m512i s, __mmask8 m, __m512i acc)
{
	__m512i old = _mm512_maskz_loadu_epi64(m, d);
	__m512i nw = _mm512_andnot_si512(old, s);

	_mm512_mask_storeu_epi64(d, m, _mm512_or_si512(old, s));
	return _mm512_add_epi64(acc, _mm512_popcnt_epi64(nw));
}

/* Software prefetch of the source, in words (2 KiB ahead). Only the source:
 * prefetching the destination for writing (PREFETCHW) as well made the
 * dense merge 5-20% slower both in cache and at 256 MiB on the development
 * VM (perf/README.md), and the hardware prefetcher follows it anyway. */
#define PF_WORDS 256

static inline __m512i merge_line(uint64_t *d, __m512i a, __m512i acc)
{
	__m512i old = _mm512_loadu_si512(d);

	_mm512_storeu_si512(d, _mm512_or_si512(old, a));
	return _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_andnot_si512(old, a)));
}

static uint64_t v512_or_count(uint64_t *d, const uint64_t *s, size_t n)
{
	__m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
	size_t i = 0;

	/* Four cache lines per step; an all-zero group (sparse logs) costs the
	 * source loads only: the destination is neither read nor written. */
	for (; i + 32 <= n; i += 32) {
		__m512i a = _mm512_loadu_si512(s + i), b = _mm512_loadu_si512(s + i + 8);
		__m512i c = _mm512_loadu_si512(s + i + 16), e = _mm512_loadu_si512(s + i + 24);
		__m512i any = _mm512_or_si512(_mm512_or_si512(a, b), _mm512_or_si512(c, e));

		if (i + PF_WORDS + 32 <= n) {
			_mm_prefetch((const char *)(s + i + PF_WORDS), _MM_HINT_T0);
			_mm_prefetch((const char *)(s + i + PF_WORDS + 16), _MM_HINT_T0);
		}
		if (!_mm512_test_epi64_mask(any, any))
			continue;
		__mmask8 ka = _mm512_test_epi64_mask(a, a), kb = _mm512_test_epi64_mask(b, b);
		__mmask8 kc = _mm512_test_epi64_mask(c, c), ke = _mm512_test_epi64_mask(e, e);
		/* only lines with a dirty bit are read and written */
		if (ka)
			acc0 = merge_line(d + i, a, acc0);
		if (kb)
			acc1 = merge_line(d + i + 8, b, acc1);
		if (kc)
			acc0 = merge_line(d + i + 16, c, acc0);
		if (ke)
			acc1 = merge_line(d + i + 24, e, acc1);
	}
	for (; i < n; i += 8) {
		__mmask8 m = n - i >= 8 ? 0xff : tail8(n - i);
		__m512i a = _mm512_maskz_loadu_epi64(m, s + i);
		__mmask8 nz = _mm512_test_epi64_mask(a, a);

		if (nz)
			acc0 = or_vec(d + i, a, nz, acc0);
	}
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
}

static uint64_t v512_or_count_scan(uint64_t *d, const uint64_t *s, size_t n, struct precopy__bitmap_scan *sc)
{
	__m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
	__m512i bacc = _mm512_setzero_si512();
	size_t first = n, last = 0, i = 0;

	/* v512_or_count's loop; a group with a set bit also adds its source
	 * popcount and moves the span: an empty group costs its loads only. */
	for (; i + 32 <= n; i += 32) {
		__m512i a = _mm512_loadu_si512(s + i), b = _mm512_loadu_si512(s + i + 8);
		__m512i c = _mm512_loadu_si512(s + i + 16), e = _mm512_loadu_si512(s + i + 24);
		__m512i any = _mm512_or_si512(_mm512_or_si512(a, b), _mm512_or_si512(c, e));

		if (i + PF_WORDS + 32 <= n) {
			_mm_prefetch((const char *)(s + i + PF_WORDS), _MM_HINT_T0);
			_mm_prefetch((const char *)(s + i + PF_WORDS + 16), _MM_HINT_T0);
		}
		if (!_mm512_test_epi64_mask(any, any))
			continue;
		__mmask8 ka = _mm512_test_epi64_mask(a, a), kb = _mm512_test_epi64_mask(b, b);
		__mmask8 kc = _mm512_test_epi64_mask(c, c), ke = _mm512_test_epi64_mask(e, e);
		uint32_t k = (uint32_t)ka | (uint32_t)kb << 8 | (uint32_t)kc << 16 | (uint32_t)ke << 24;

		if (first == n)
			first = i + (unsigned)__builtin_ctz(k);
		last = i + 31 - (unsigned)__builtin_clz(k);
		/* No branch per line: at 0.01-1% density whether a line holds
		 * a bit is close to a coin toss, and a fresh log's pattern is
		 * not in the predictor. Each line's non-zero words are read and
		 * written under their mask (a zero mask touches no memory). */
		acc0 = or_vec(d + i, a, ka, acc0);
		acc1 = or_vec(d + i + 8, b, kb, acc1);
		acc0 = or_vec(d + i + 16, c, kc, acc0);
		acc1 = or_vec(d + i + 24, e, ke, acc1);
		bacc = _mm512_add_epi64(bacc, _mm512_add_epi64(_mm512_add_epi64(_mm512_popcnt_epi64(a),
										 _mm512_popcnt_epi64(b)),
							       _mm512_add_epi64(_mm512_popcnt_epi64(c),
										 _mm512_popcnt_epi64(e))));
	}
	for (; i < n; i += 8) {
		__mmask8 m = n - i >= 8 ? 0xff : tail8(n - i);
		__m512i a = _mm512_maskz_loadu_epi64(m, s + i);
		__mmask8 nz = _mm512_test_epi64_mask(a, a);

		if (!nz)
			continue;
		if (first == n)
			first = i + (unsigned)__builtin_ctz(nz);
		last = i + 31 - (unsigned)__builtin_clz(nz);
		acc0 = or_vec(d + i, a, nz, acc0);
		bacc = _mm512_add_epi64(bacc, _mm512_popcnt_epi64(a));
	}
	sc->bits = (uint64_t)_mm512_reduce_add_epi64(bacc);
	sc->first = first;
	sc->last = last;
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
}

static uint64_t v512_or_count_shift(uint64_t *d, const uint64_t *s, size_t n, unsigned sh)
{
	__m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
	__m512i cnt = _mm512_set1_epi64(sh);
	/* s[i - 1 .. i + 6] is built from registers (VALIGNQ) rather than loaded
	 * at s + i - 1, which would split every load across two cache lines.
	 * Lane 7 of `last` is s[i - 1]; the masked load reads only that word. */
	__m512i last = _mm512_maskz_loadu_epi64(0x80, s - 8);
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m512i c0 = _mm512_loadu_si512(s + i), c1 = _mm512_loadu_si512(s + i + 8);
		__m512i p0 = _mm512_alignr_epi64(c0, last, 7), p1 = _mm512_alignr_epi64(c1, c0, 7);
		/* funnel shift: (cur << sh) | (prev >> (64 - sh)) in one VPSHLDVQ */
		__m512i v0 = _mm512_shldv_epi64(c0, p0, cnt), v1 = _mm512_shldv_epi64(c1, p1, cnt);
		__m512i any = _mm512_or_si512(v0, v1);

		last = c1;
		if (i + PF_WORDS + 16 <= n)
			_mm_prefetch((const char *)(s + i + PF_WORDS), _MM_HINT_T0);
		if (!_mm512_test_epi64_mask(any, any))
			continue;
		acc0 = merge_line(d + i, v0, acc0);
		acc1 = merge_line(d + i + 8, v1, acc1);
	}
	for (; i < n; i += 8) {
		__mmask8 m = n - i >= 8 ? 0xff : tail8(n - i);
		__m512i cur = _mm512_maskz_loadu_epi64(m, s + i);
		__m512i prev = _mm512_maskz_loadu_epi64(m, s + i - 1);
		__m512i v = _mm512_shldv_epi64(cur, prev, cnt);

		acc0 = or_vec(d + i, v, m & _mm512_test_epi64_mask(v, v), acc0);
	}
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
}

static uint64_t v512_popcount(const uint64_t *w, size_t n)
{
	__m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_loadu_si512(w + i)));
		acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(_mm512_loadu_si512(w + i + 8)));
	}
	for (; i < n; i += 8) {
		__mmask8 m = n - i >= 8 ? 0xff : tail8(n - i);
		acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_maskz_loadu_epi64(m, w + i)));
	}
	return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
}

static size_t v512_find_nonzero(const uint64_t *w, size_t n)
{
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		__m512i a = _mm512_or_si512(_mm512_loadu_si512(w + i), _mm512_loadu_si512(w + i + 8));
		__m512i b = _mm512_or_si512(_mm512_loadu_si512(w + i + 16), _mm512_loadu_si512(w + i + 24));
		__m512i o = _mm512_or_si512(a, b);

		if (_mm512_test_epi64_mask(o, o))
			break;
	}
	for (; i < n; i += 8) {
		__mmask8 m = n - i >= 8 ? 0xff : tail8(n - i);
		__m512i a = _mm512_maskz_loadu_epi64(m, w + i);
		__mmask8 nz = _mm512_test_epi64_mask(a, a);

		if (nz)
			return i + (unsigned)__builtin_ctz(nz);
	}
	return n;
}

/* Expansion: the mask-to-vector instructions turn each source bit into a
 * byte, word, dword or qword of ones (r = 8, 16, 32, 64); PDEP spreads
 * bits for r = 2 and 4. */
static void v512_expand(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	switch (log2r) {
	case 1:
		for (size_t i = 0; i < n; i++) {
			out[2 * i] = _pdep_u64(s[i], 0x5555555555555555ull) * 3;
			out[2 * i + 1] = _pdep_u64(s[i] >> 32, 0x5555555555555555ull) * 3;
		}
		return;
	case 2:
		for (size_t i = 0; i < n; i++)
			for (unsigned j = 0; j < 4; j++)
				out[4 * i + j] = _pdep_u64(s[i] >> (16 * j), 0x1111111111111111ull) * 0xf;
		return;
	case 3:
		for (size_t i = 0; i < n; i++)
			_mm512_storeu_si512(out + 8 * i, _mm512_movm_epi8((__mmask64)s[i]));
		return;
	case 4:
		for (size_t i = 0; i < n; i++) {
			_mm512_storeu_si512(out + 16 * i, _mm512_movm_epi16((__mmask32)s[i]));
			_mm512_storeu_si512(out + 16 * i + 8, _mm512_movm_epi16((__mmask32)(s[i] >> 32)));
		}
		return;
	case 5:
		for (size_t i = 0; i < n; i++)
			for (unsigned j = 0; j < 4; j++)
				_mm512_storeu_si512(out + 32 * i + 8 * j,
						    _mm512_movm_epi32((__mmask16)(s[i] >> (16 * j))));
		return;
	}
}

/* Combining: a vector test per lane width gives one mask bit per group
 * (r = 8..64); r = 2 and 4 fold the groups and gather with PEXT. */
static void v512_combine(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	size_t o = 0;

	switch (log2r) {
	case 1:
		for (size_t i = 0; i < n; i += 2) {
			uint64_t a = s[i] | (s[i] >> 1), b = s[i + 1] | (s[i + 1] >> 1);
			out[o++] = _pext_u64(a, 0x5555555555555555ull) |
				   (_pext_u64(b, 0x5555555555555555ull) << 32);
		}
		return;
	case 2:
		for (size_t i = 0; i < n; i += 4) {
			uint64_t acc = 0;

			for (unsigned j = 0; j < 4; j++) {
				uint64_t y = s[i + j];

				y |= y >> 1;
				y |= y >> 2;
				acc |= _pext_u64(y, 0x1111111111111111ull) << (16 * j);
			}
			out[o++] = acc;
		}
		return;
	case 3:
		for (size_t i = 0; i < n; i += 8) {
			__m512i v = _mm512_loadu_si512(s + i);
			out[o++] = _mm512_test_epi8_mask(v, v);
		}
		return;
	case 4:
		for (size_t i = 0; i < n; i += 16) {
			__m512i a = _mm512_loadu_si512(s + i), b = _mm512_loadu_si512(s + i + 8);
			out[o++] = (uint64_t)_mm512_test_epi16_mask(a, a) |
				   ((uint64_t)_mm512_test_epi16_mask(b, b) << 32);
		}
		return;
	case 5:
		for (size_t i = 0; i < n; i += 32) {
			uint64_t acc = 0;

			for (unsigned j = 0; j < 4; j++) {
				__m512i v = _mm512_loadu_si512(s + i + 8 * j);
				acc |= (uint64_t)_mm512_test_epi32_mask(v, v) << (16 * j);
			}
			out[o++] = acc;
		}
		return;
	case 6:
		for (size_t i = 0; i < n; i += 64) {
			uint64_t acc = 0;

			for (unsigned j = 0; j < 8; j++) {
				__m512i v = _mm512_loadu_si512(s + i + 8 * j);
				acc |= (uint64_t)_mm512_test_epi64_mask(v, v) << (8 * j);
			}
			out[o++] = acc;
		}
		return;
	}
}

/* Extraction: VPCOMPRESSB packs the indices of the set bits of a word into
 * bytes; they are widened eight at a time, offset and stored with a mask,
 * so nothing is written past the last index. */
static size_t v512_extract(uint64_t *out, const uint64_t *w, size_t n, uint64_t base)
{
	const __m512i idx = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50,
					    49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36,
					    35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22,
					    21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7,
					    6, 5, 4, 3, 2, 1, 0);
	size_t c = 0;
	size_t i = 0;

	while (i < n) {
		uint64_t x = w[i];

		if (!x) { /* skip runs of empty words a vector at a time */
			i += v512_find_nonzero(w + i, n - i);
			continue;
		}
		unsigned k = (unsigned)_mm_popcnt_u64(x);
		__m512i packed = _mm512_maskz_compress_epi8((__mmask64)x, idx);
		__m512i b = _mm512_set1_epi64((long long)(base + i * 64));

		for (unsigned j = 0; j < k; j += 8) {
			__m128i bytes = _mm512_castsi512_si128(packed);
			__m512i v = _mm512_add_epi64(_mm512_cvtepu8_epi64(bytes), b);
			__mmask8 m = k - j >= 8 ? 0xff : tail8(k - j);

			_mm512_mask_storeu_epi64(out + c + j, m, v);
			packed = _mm512_alignr_epi64(packed, packed, 1); /* next 8 bytes */
		}
		c += k;
		i++;
	}
	return c;
}

const struct precopy__bitmap_kernels precopy__bitmap_kernels_avx512 = {
	.variant = PRECOPY_SIMD_AVX512,
	.or_count = v512_or_count,
	.or_count_scan = v512_or_count_scan,
	.or_count_shift = v512_or_count_shift,
	.popcount = v512_popcount,
	.find_nonzero = v512_find_nonzero,
	.expand = v512_expand,
	.combine = v512_combine,
	.extract = v512_extract,
};
