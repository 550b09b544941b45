/* SPDX-License-Identifier: MIT */
/* AVX2 kernels (+ BMI2, POPCNT). Compiled with those flags (Makefile:
 * *_avx2.c); only called where the CPU has them. Vector bodies handle
 * whole 4-word blocks; the few tail words go through the scalar helpers. */
#include <immintrin.h>

#include "kernels.h"

/* Per-qword popcount of a 256-bit vector (nibble lookup + SAD). */
static inline __m256i popcnt256(__m256i v)
{
	const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
					     2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
	const __m256i low = _mm256_set1_epi8(0x0f);
	__m256i lo = _mm256_and_si256(v, low);
	__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
	__m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));

	return _mm256_sad_epu8(c, _mm256_setzero_si256());
}

static inline uint64_t hsum256(__m256i v)
{
	__m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	return (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_extract_epi64(s, 1);
}

static inline __m256i or_vec(uint64_t *d, __m256i s, __m256i acc)
{
	__m256i old = _mm256_loadu_si256((const __m256i *)d);

	_mm256_storeu_si256((__m256i *)d, _mm256_or_si256(old, s));
	return _mm256_add_epi64(acc, popcnt256(_mm256_andnot_si256(old, s)));
}

static uint64_t v256_or_count(uint64_t *d, const uint64_t *s, size_t n)
{
	__m256i acc = _mm256_setzero_si256();
	uint64_t cnt = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
		__m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 4));
		__m256i o = _mm256_or_si256(a, b);

		if (_mm256_testz_si256(o, o)) /* sparse: skip the destination */
			continue;
		acc = or_vec(d + i, a, acc);
		acc = or_vec(d + i + 4, b, acc);
	}
	for (; i < n; i++)
		cnt += or_word(&d[i], s[i]);
	return cnt + hsum256(acc);
}

/* Bit j set for each non-zero 64-bit lane j of v. */
static inline unsigned nonzero4(__m256i v)
{
	__m256i z = _mm256_cmpeq_epi64(v, _mm256_setzero_si256());

	return ~(unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(z)) & 0xfu;
}

static uint64_t v256_or_count_scan(uint64_t *d, const uint64_t *s, size_t n, struct precopy__bitmap_scan *sc)
{
	__m256i acc = _mm256_setzero_si256(), bacc = _mm256_setzero_si256();
	uint64_t cnt = 0, bits = 0;
	size_t first = n, last = 0, i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(s + i));
		__m256i b = _mm256_loadu_si256((const __m256i *)(s + i + 4));
		__m256i o = _mm256_or_si256(a, b);

		if (_mm256_testz_si256(o, o)) /* sparse: the source is only read */
			continue;
		unsigned k = nonzero4(a) | nonzero4(b) << 4;

		if (first == n)
			first = i + (unsigned)__builtin_ctz(k);
		last = i + 31 - (unsigned)__builtin_clz(k);
		acc = or_vec(d + i, a, acc);
		acc = or_vec(d + i + 4, b, acc);
		bacc = _mm256_add_epi64(bacc, _mm256_add_epi64(popcnt256(a), popcnt256(b)));
	}
	for (; i < n; i++) {
		if (!s[i])
			continue;
		if (first == n)
			first = i;
		last = i;
		bits += (uint64_t)_mm_popcnt_u64(s[i]);
		cnt += or_word(&d[i], s[i]);
	}
	sc->bits = bits + hsum256(bacc);
	sc->first = first;
	sc->last = last;
	return cnt + hsum256(acc);
}

static uint64_t v256_or_count_shift(uint64_t *d, const uint64_t *s, size_t n, unsigned sh)
{
	__m256i acc = _mm256_setzero_si256();
	__m128i l = _mm_cvtsi32_si128((int)sh), r = _mm_cvtsi32_si128((int)(64 - sh));
	uint64_t cnt = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		__m256i cur = _mm256_loadu_si256((const __m256i *)(s + i));
		__m256i prev = _mm256_loadu_si256((const __m256i *)(s + i - 1));
		__m256i v = _mm256_or_si256(_mm256_sll_epi64(cur, l), _mm256_srl_epi64(prev, r));

		if (!_mm256_testz_si256(v, v))
			acc = or_vec(d + i, v, acc);
	}
	for (; i < n; i++)
		cnt += or_word(&d[i], (s[i] << sh) | (s[i - 1] >> (64 - sh)));
	return cnt + hsum256(acc);
}

static uint64_t v256_popcount(const uint64_t *w, size_t n)
{
	__m256i acc = _mm256_setzero_si256();
	uint64_t cnt = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4)
		acc = _mm256_add_epi64(acc, popcnt256(_mm256_loadu_si256((const __m256i *)(w + i))));
	for (; i < n; i++)
		cnt += (uint64_t)_mm_popcnt_u64(w[i]);
	return cnt + hsum256(acc);
}

static size_t v256_find_nonzero(const uint64_t *w, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256i a = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(w + i)),
					    _mm256_loadu_si256((const __m256i *)(w + i + 4)));
		__m256i b = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(w + i + 8)),
					    _mm256_loadu_si256((const __m256i *)(w + i + 12)));
		__m256i o = _mm256_or_si256(a, b);

		if (!_mm256_testz_si256(o, o))
			break;
	}
	while (i < n && !w[i])
		i++;
	return i;
}

/* PDEP places each source bit at the bottom of its r-bit group; the
 * multiply fills the group (groups are r apart, so nothing carries). */
static void v256_expand(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	static const uint64_t dep[6] = {
		0, 0x5555555555555555ull, 0x1111111111111111ull, 0x0101010101010101ull,
		0x0001000100010001ull, 0x0000000100000001ull,
	};
	unsigned r = 1u << log2r, per = 64u >> log2r;
	uint64_t fill = low_mask(r), m = dep[log2r];

	for (size_t i = 0; i < n; i++) {
		uint64_t w = s[i];

		for (unsigned j = 0; j < r; j++, w >>= per)
			*out++ = _pdep_u64(w, m) * fill;
	}
}

/* Fold each r-bit group onto its lowest bit, then PEXT gathers those bits. */
static void v256_combine(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	static const uint64_t ext[7] = {
		0, 0x5555555555555555ull, 0x1111111111111111ull, 0x0101010101010101ull,
		0x0001000100010001ull, 0x0000000100000001ull, 1ull,
	};
	unsigned r = 1u << log2r, per = 64u >> log2r;
	uint64_t acc = 0;
	unsigned pos = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t y = s[i];

		for (unsigned f = 1; f < r; f <<= 1)
			y |= y >> f;
		acc |= _pext_u64(y, ext[log2r]) << pos;
		pos += per;
		if (pos == 64) {
			*out++ = acc;
			acc = 0;
			pos = 0;
		}
	}
}

static size_t v256_extract(uint64_t *out, const uint64_t *w, size_t n, uint64_t base)
{
	size_t c = 0, i = 0;

	while (i < n) {
		uint64_t x = w[i];

		if (!x) {
			i += v256_find_nonzero(w + i, n - i);
			continue;
		}
		uint64_t b = base + i * 64;
		do {
			out[c++] = b + _tzcnt_u64(x);
			x = _blsr_u64(x);
		} while (x);
		i++;
	}
	return c;
}

const struct precopy__bitmap_kernels precopy__bitmap_kernels_avx2 = {
	.variant = PRECOPY_SIMD_AVX2,
	.or_count = v256_or_count,
	.or_count_scan = v256_or_count_scan,
	.or_count_shift = v256_or_count_shift,
	.popcount = v256_popcount,
	.find_nonzero = v256_find_nonzero,
	.expand = v256_expand,
	.combine = v256_combine,
	.extract = v256_extract,
};
