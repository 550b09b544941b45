/* SPDX-License-Identifier: MIT */
/* Runtime choice of SIMD variant: CPU detection, PRECOPY_SIMD, forcing. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const struct precopy__bitmap_kernels *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

PRECOPY_API int precopy_bitmap_simd_supported(enum precopy_simd v)
{
	switch (v) {
	case PRECOPY_SIMD_AUTO:
	case PRECOPY_SIMD_SCALAR:
		return 1;
	case PRECOPY_SIMD_AVX2:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
		       __builtin_cpu_supports("popcnt");
	case PRECOPY_SIMD_AVX512:
		/* __builtin_cpu_supports also checks that the OS saves ZMM state. */
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
		       __builtin_cpu_supports("avx512vpopcntdq") &&
		       __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512vbmi") &&
		       __builtin_cpu_supports("avx512bitalg") && __builtin_cpu_supports("bmi2");
	}
	return 0;
}

static const struct precopy__bitmap_kernels *table_of(enum precopy_simd v)
{
	switch (v) {
	case PRECOPY_SIMD_AVX512:
		return &precopy__bitmap_kernels_avx512;
	case PRECOPY_SIMD_AVX2:
		return &precopy__bitmap_kernels_avx2;
	default:
		return &precopy__bitmap_kernels_scalar;
	}
}

static const struct precopy__bitmap_kernels *best(void)
{
	const char *env = getenv("PRECOPY_SIMD");
	enum precopy_simd want = PRECOPY_SIMD_AUTO;

	if (env && *env) {
		if (!strcmp(env, "scalar"))
			want = PRECOPY_SIMD_SCALAR;
		else if (!strcmp(env, "avx2"))
			want = PRECOPY_SIMD_AVX2;
		else if (!strcmp(env, "avx512"))
			want = PRECOPY_SIMD_AVX512;
		/* "auto" or anything else: detect (an unsupported request too,
		 * rather than crash on an illegal instruction). */
		if (want != PRECOPY_SIMD_AUTO && precopy_bitmap_simd_supported(want))
			return table_of(want);
	}
	if (precopy_bitmap_simd_supported(PRECOPY_SIMD_AVX512))
		return &precopy__bitmap_kernels_avx512;
	if (precopy_bitmap_simd_supported(PRECOPY_SIMD_AVX2))
		return &precopy__bitmap_kernels_avx2;
	return &precopy__bitmap_kernels_scalar;
}

static void init_once(void)
{
	__builtin_cpu_init();
	__atomic_store_n(&active, best(), __ATOMIC_RELEASE);
}

const struct precopy__bitmap_kernels *precopy__bitmap_kernels(void)
{
	const struct precopy__bitmap_kernels *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);

	if (k)
		return k;
	pthread_once(&once, init_once);
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

PRECOPY_API int precopy_bitmap_simd_force(enum precopy_simd v)
{
	if ((unsigned)v > PRECOPY_SIMD_AVX512)
		return -EINVAL;
	pthread_once(&once, init_once);
	if (v == PRECOPY_SIMD_AUTO) {
		__atomic_store_n(&active, best(), __ATOMIC_RELEASE);
		return 0;
	}
	if (!precopy_bitmap_simd_supported(v))
		return -ENOTSUP;
	__atomic_store_n(&active, table_of(v), __ATOMIC_RELEASE);
	return 0;
}

PRECOPY_API enum precopy_simd precopy_bitmap_simd_active(void)
{
	return precopy__bitmap_kernels()->variant;
}

PRECOPY_API const char *precopy_bitmap_simd_name(enum precopy_simd v)
{
	switch (v) {
	case PRECOPY_SIMD_AUTO:
		return "auto";
	case PRECOPY_SIMD_SCALAR:
		return "scalar";
	case PRECOPY_SIMD_AVX2:
		return "avx2";
	case PRECOPY_SIMD_AVX512:
		return "avx512";
	}
	return "unknown";
}
