/* SPDX-License-Identifier: MIT */
/* Scalar kernels: portable C, no ISA extension. The reference the SIMD
 * variants are tested against, and the fallback on CPUs without AVX2. */
#include "kernels.h"

static uint64_t sc_or_count(uint64_t *d, const uint64_t *s, size_t n)
{
	uint64_t cnt = 0;

	for (size_t i = 0; i < n; i++)
		cnt += or_word(&d[i], s[i]);
	return cnt;
}

static uint64_t sc_or_count_scan(uint64_t *d, const uint64_t *s, size_t n, struct precopy__bitmap_scan *sc)
{
	uint64_t cnt = 0, bits = 0;
	size_t first = n, last = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t x;

		/* skip empty stretches eight words at a time */
		while (i + 8 <= n && !(s[i] | s[i + 1] | s[i + 2] | s[i + 3] | s[i + 4] | s[i + 5] | s[i + 6] | s[i + 7]))
			i += 8;
		if (i == n)
			break;
		x = s[i];
		if (!x)
			continue;
		if (first == n)
			first = i;
		last = i;
		bits += popcount64(x);
		cnt += or_word(&d[i], x);
	}
	sc->bits = bits;
	sc->first = first;
	sc->last = last;
	return cnt;
}

static uint64_t sc_or_count_shift(uint64_t *d, const uint64_t *s, size_t n, unsigned sh)
{
	uint64_t cnt = 0;

	for (size_t i = 0; i < n; i++)
		cnt += or_word(&d[i], (s[i] << sh) | (s[(ptrdiff_t)i - 1] >> (64 - sh)));
	return cnt;
}

static uint64_t sc_popcount(const uint64_t *w, size_t n)
{
	uint64_t cnt = 0;

	for (size_t i = 0; i < n; i++)
		cnt += popcount64(w[i]);
	return cnt;
}

static size_t sc_find_nonzero(const uint64_t *w, size_t n)
{
	size_t i = 0;

	while (i < n && !w[i])
		i++;
	return i;
}

/* Bit i -> bit 2i, for x < 2^32. */
static uint64_t spread2(uint64_t x)
{
	x = (x | (x << 16)) & 0x0000ffff0000ffffull;
	x = (x | (x << 8)) & 0x00ff00ff00ff00ffull;
	x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0full;
	x = (x | (x << 2)) & 0x3333333333333333ull;
	x = (x | (x << 1)) & 0x5555555555555555ull;
	return x;
}

/* Bit 2i -> bit i (odd bits must be clear). */
static uint64_t compact2(uint64_t x)
{
	x = (x | (x >> 1)) & 0x3333333333333333ull;
	x = (x | (x >> 2)) & 0x0f0f0f0f0f0f0f0full;
	x = (x | (x >> 4)) & 0x00ff00ff00ff00ffull;
	x = (x | (x >> 8)) & 0x0000ffff0000ffffull;
	x = (x | (x >> 16)) & 0x00000000ffffffffull;
	return x;
}

/* Mask with bit 0 of every r-bit group set. */
static uint64_t group_lsb_mask(unsigned log2r)
{
	static const uint64_t m[7] = {
		~0ull, 0x5555555555555555ull, 0x1111111111111111ull, 0x0101010101010101ull,
		0x0001000100010001ull, 0x0000000100000001ull, 1ull,
	};
	return m[log2r];
}

static void sc_expand(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	unsigned r = 1u << log2r, per = 64u >> log2r; /* source bits per output word */
	uint64_t fill = low_mask(r);

	for (size_t i = 0; i < n; i++) {
		uint64_t w = s[i];

		for (unsigned j = 0; j < r; j++, w >>= per) {
			uint64_t x = w & low_mask(per);

			for (unsigned l = 0; l < log2r; l++)
				x = spread2(x);
			*out++ = x * fill; /* groups are r apart: no carries */
		}
	}
}

static void sc_combine(uint64_t *out, const uint64_t *s, size_t n, unsigned log2r)
{
	unsigned r = 1u << log2r, per = 64u >> log2r; /* output bits per source word */
	uint64_t acc = 0, mask = group_lsb_mask(log2r);
	unsigned pos = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t y = s[i];

		for (unsigned f = 1; f < r; f <<= 1)
			y |= y >> f;
		y &= mask;
		for (unsigned l = 0; l < log2r; l++)
			y = compact2(y);
		acc |= y << pos;
		pos += per;
		if (pos == 64) {
			*out++ = acc;
			acc = 0;
			pos = 0;
		}
	}
}

static size_t sc_extract(uint64_t *out, const uint64_t *w, size_t n, uint64_t base)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t x = w[i];

		while (x) {
			out[c++] = base + i * 64 + (unsigned)__builtin_ctzll(x);
			x &= x - 1;
		}
	}
	return c;
}

const struct precopy__bitmap_kernels precopy__bitmap_kernels_scalar = {
	.variant = PRECOPY_SIMD_SCALAR,
	.or_count = sc_or_count,
	.or_count_scan = sc_or_count_scan,
	.or_count_shift = sc_or_count_shift,
	.popcount = sc_popcount,
	.find_nonzero = sc_find_nonzero,
	.expand = sc_expand,
	.combine = sc_combine,
	.extract = sc_extract,
};
