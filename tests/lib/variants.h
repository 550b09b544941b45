/* SPDX-License-Identifier: MIT */
/* tests/lib/variants.h — run one test body once per SIMD variant.
 *
 * VARIANT_TESTS(suite, name, fn) defines three Criterion tests,
 * suite/name_scalar, suite/name_avx2 and suite/name_avx512; each forces its
 * variant with precopy_bitmap_simd_force() (Criterion runs every test in its
 * own process, so the forcing does not leak) and calls fn(variant), or
 * skips with a message when the CPU lacks the variant.
 *
 * Thread safety: test-only; one test per process.
 */
#ifndef TESTS_LIB_VARIANTS_H
#define TESTS_LIB_VARIANTS_H

#include <criterion/criterion.h>

#include "precopy/bitmap.h"

static inline void variant_enter(enum precopy_simd v)
{
	int r;

	if (!precopy_bitmap_simd_supported(v))
		cr_skip_test("this CPU lacks the %s variant", precopy_bitmap_simd_name(v));
	r = precopy_bitmap_simd_force(v);
	cr_assert_eq(r, 0, "precopy_bitmap_simd_force(%s) = %d", precopy_bitmap_simd_name(v), r);
	cr_assert_eq(precopy_bitmap_simd_active(), v, "forced %s but active is %s",
		     precopy_bitmap_simd_name(v), precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
}

#define VARIANT_TESTS(suite, name, fn, ...)                                  \
	Test(suite, name##_scalar, ##__VA_ARGS__)                           \
	{                                                                    \
		variant_enter(PRECOPY_SIMD_SCALAR);                          \
		fn(PRECOPY_SIMD_SCALAR);                                     \
	}                                                                    \
	Test(suite, name##_avx2, ##__VA_ARGS__)                             \
	{                                                                    \
		variant_enter(PRECOPY_SIMD_AVX2);                            \
		fn(PRECOPY_SIMD_AVX2);                                       \
	}                                                                    \
	Test(suite, name##_avx512, ##__VA_ARGS__)                           \
	{                                                                    \
		variant_enter(PRECOPY_SIMD_AVX512);                          \
		fn(PRECOPY_SIMD_AVX512);                                     \
	}

/* Short name of a variant for failure messages. */
#define VNAME(v) precopy_bitmap_simd_name(v)

/* A reproducible per-case seed. */
static inline uint64_t case_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	uint64_t h = 0x243f6a8885a308d3ull;

	h = (h ^ a) * 0x100000001b3ull;
	h = (h ^ b) * 0x100000001b3ull;
	h = (h ^ c) * 0x100000001b3ull;
	h = (h ^ d) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

#endif /* TESTS_LIB_VARIANTS_H */
