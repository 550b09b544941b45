/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-parallel.c — precopy_bitmap_merge_parallel() with pools
 * of 1, 2 and 3 workers against the reference and the serial merge, at many
 * offsets and lengths (below 4 KiB of destination up to 2^24 bits), pool
 * reuse, and the error cases. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

#define CTX "parallel[%s] workers=%u dst_bit=%" PRIu64 " nbits=%" PRIu64 " density=%g"

static struct precopy_merge_pool *pools[3];

static void make_pools(void)
{
	unsigned i;

	for (i = 0; i < 3; i++) {
		int err = 1;

		pools[i] = precopy_merge_pool_new(i + 1, &err);
		cr_assert_not_null(pools[i], "pool of %u: err %d", i + 1, err);
	}
}

static void free_pools(void)
{
	unsigned i;

	for (i = 0; i < 3; i++)
		precopy_merge_pool_free(pools[i]);
}

/* One (offset, length, density): the reference result is computed once and
 * every pool must produce it, as must the serial merge. */
static void par_case(enum precopy_simd v, uint64_t off, uint64_t len, double dens, uint64_t seed, int with_ref)
{
	struct bitref_rng r;
	struct bitref_dst d;
	uint64_t nw = bitref_words(len), *src = malloc(nw * 8), *orig, *exp, dst_nbits;
	int64_t want, got;
	unsigned p;

	cr_assert_not_null(src);
	bitref_rng_seed(&r, seed);
	bitref_fill_random(src, len, dens, &r);
	bitref_set_tail(src, len);
	dst_nbits = off + len + (bitref_rng_below(&r, 2) ? bitref_rng_below(&r, 5000) : 0);
	bitref_dst_init(&d, dst_nbits, 0.2, &r);
	orig = malloc((d.nwords + 2 * BITREF_GUARD) * 8);
	exp = malloc(d.nwords * 8);
	cr_assert(orig && exp);
	memcpy(orig, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8);
	memcpy(exp, d.bm.words, d.nwords * 8);
	if (with_ref) {
		want = bitref_merge(exp, off, src, len);
	} else {
		struct precopy_bitmap s = d.bm;

		s.words = exp;
		want = precopy_bitmap_merge(&s, off, src, len);
		cr_assert_geq(want, 0);
	}
	for (p = 0; p < 3; p++) {
		int64_t diff;

		memcpy(d.mem, orig, (d.nwords + 2 * BITREF_GUARD) * 8);
		got = precopy_bitmap_merge_parallel(pools[p], &d.bm, off, src, len);
		cr_assert_eq(got, want, CTX ": returned %" PRId64 ", expected %" PRId64, VNAME(v), p + 1, off, len,
			     dens, got, want);
		diff = bitref_first_diff(d.bm.words, exp, d.nwords);
		cr_assert_eq(diff, -1, CTX ": word %" PRId64 " is %#" PRIx64 ", expected %#" PRIx64, VNAME(v), p + 1,
			     off, len, dens, diff, d.bm.words[diff < 0 ? 0 : diff], exp[diff < 0 ? 0 : diff]);
		cr_assert(bitref_dst_guards_ok(&d), CTX ": wrote outside dst", VNAME(v), p + 1, off, len, dens);
		cr_assert(bitref_tail_is_zero(d.bm.words, dst_nbits), CTX ": set a tail bit", VNAME(v), p + 1, off,
			  len, dens);
	}
	free(orig);
	free(exp);
	free(src);
	bitref_dst_free(&d);
}

static const double densities[] = { 0.0, 0.01, 0.5, 1.0 };

/* Below, around and above 4 KiB of destination (32768 bits) and a few
 * pieces per worker; every offset class. */
static void moderate(enum precopy_simd v)
{
	static const uint64_t lens[] = { 1, 63, 64, 65, 4095, 32767, 32768, 32769, 65537, 100003, 3 * 32768 + 1 };
	static const uint64_t offs[] = { 0, 1, 63, 64, 65, 4097, 32767, 32768, 32773, 65536 + 9 };
	size_t i, j, k;

	make_pools();
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (j = 0; j < sizeof(offs) / sizeof(offs[0]); j++)
			for (k = 0; k < sizeof(densities) / sizeof(densities[0]); k++)
				par_case(v, offs[j], lens[i], densities[k], case_seed(lens[i], offs[j], k, 21), 1);
	free_pools();
}
VARIANT_TESTS(parallel, matches_reference, moderate, .timeout = 300)

/* Random offsets and lengths up to 2^20 bits. */
Test(parallel, random_cases, .timeout = 300)
{
	struct bitref_rng r;
	int i;

	make_pools();
	bitref_rng_seed(&r, 0x706172ull);
	for (i = 0; i < 60; i++) {
		uint64_t off = bitref_rng_below(&r, 200000), len = 1 + bitref_rng_below(&r, 1u << 20);

		par_case(precopy_bitmap_simd_active(), off, len, densities[bitref_rng_below(&r, 4)],
			 case_seed(off, len, (uint64_t)i, 22), 1);
	}
	free_pools();
}

/* 2^24 bits (2 MiB of bitmap): against the reference once per offset. */
Test(parallel, huge, .timeout = 300)
{
	static const uint64_t offs[] = { 0, 5, 32768 + 3 };
	size_t j;

	make_pools();
	for (j = 0; j < sizeof(offs) / sizeof(offs[0]); j++)
		par_case(precopy_bitmap_simd_active(), offs[j], 1u << 24, j == 1 ? 0.001 : 0.5,
			 case_seed(offs[j], 24, 0, 23), 1);
	par_case(precopy_bitmap_simd_active(), 12345, (1u << 24) + 77, 0.5, 24, 0);
	free_pools();
}

Test(parallel, pool_new_bad_counts)
{
	int err = 0;

	cr_assert_null(precopy_merge_pool_new(0, &err));
	cr_assert_eq(err, -EINVAL);
	err = 0;
	cr_assert_null(precopy_merge_pool_new(65, &err));
	cr_assert_eq(err, -EINVAL);
	err = 0;
	cr_assert_null(precopy_merge_pool_new(~0u, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_merge_pool_new(0, NULL), "err may be NULL");
	precopy_merge_pool_free(NULL);
}

Test(parallel, pool_of_64)
{
	int err = 1;
	struct precopy_merge_pool *p = precopy_merge_pool_new(64, &err);
	uint64_t w[1024] = { 0 }, src[512];
	struct precopy_bitmap bm;

	cr_assert_not_null(p, "pool of 64: %d", err);
	memset(src, 0xff, sizeof(src));
	cr_assert_eq(precopy_bitmap_wrap(&bm, w, 65536), 0);
	cr_assert_eq(precopy_bitmap_merge_parallel(p, &bm, 3, src, 32768), 32768);
	cr_assert_eq(precopy_bitmap_count(&bm), 32768);
	cr_assert_eq(precopy_bitmap_next_set(&bm, 0), 3);
	precopy_merge_pool_free(p);
}

Test(parallel, errors_nothing_written)
{
	static const struct {
		const char *what;
		int null_pool, null_dst, null_src;
		uint64_t dst_bit, nbits;
		int64_t want;
	} rows[] = {
		{ "NULL pool", 1, 0, 0, 0, 10, -EINVAL },
		{ "NULL dst", 0, 1, 0, 0, 10, -EINVAL },
		{ "NULL src", 0, 0, 1, 0, 10, -EINVAL },
		{ "zero length", 0, 0, 0, 0, 0, -EINVAL },
		{ "past the end", 0, 0, 0, 1, 100000, -ERANGE },
		{ "at the end", 0, 0, 0, 100000, 1, -ERANGE },
		{ "overflow", 0, 0, 0, UINT64_MAX, 2, -ERANGE },
		{ "huge nbits", 0, 0, 0, 2, UINT64_MAX, -ERANGE },
	};
	size_t i;
	uint64_t src[bitref_words(100000)];

	memset(src, 0xff, sizeof(src));
	make_pools();
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		unsigned p;

		for (p = 0; p < 3; p++) {
			struct bitref_rng r;
			struct bitref_dst d;
			uint64_t *copy;
			int64_t got;

			bitref_rng_seed(&r, i);
			bitref_dst_init(&d, 100000, 0.3, &r);
			copy = malloc((d.nwords + 2 * BITREF_GUARD) * 8);
			memcpy(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8);
			got = precopy_bitmap_merge_parallel(rows[i].null_pool ? NULL : pools[p],
							    rows[i].null_dst ? NULL : &d.bm, rows[i].dst_bit,
							    rows[i].null_src ? NULL : src, rows[i].nbits);
			cr_expect_eq(got, rows[i].want, "%s (pool %u): %" PRId64, rows[i].what, p + 1, got);
			cr_expect_eq(memcmp(copy, d.mem, (d.nwords + 2 * BITREF_GUARD) * 8), 0,
				     "%s (pool %u): dst written", rows[i].what, p + 1);
			free(copy);
			bitref_dst_free(&d);
		}
	}
	/* the pools still work after errors */
	par_case(precopy_bitmap_simd_active(), 7, 70000, 0.5, 25, 1);
	free_pools();
}

/* The calling thread is one of the workers, but its CPU affinity belongs to
 * the caller: a parallel merge must not change it. */
Test(parallel, caller_affinity_untouched)
{
	cpu_set_t before, after, one;
	uint64_t n = 1u << 22, *src = calloc(bitref_words(n), 8);
	struct precopy_bitmap bm;
	int cpu, rc;

	cr_assert_not_null(src);
	cr_assert_eq(sched_getaffinity(0, sizeof(before), &before), 0);
	for (cpu = 0; cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &before); cpu++)
		;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	make_pools();
	memset(src, 0x11, bitref_words(n) * 8);
	cr_assert_eq(precopy_bitmap_alloc(&bm, n + 64, 0), 0);
	rc = (int)precopy_bitmap_merge_parallel(pools[2], &bm, 64, src, n);
	cr_assert_geq(rc, 0);
	cr_assert_eq(sched_getaffinity(0, sizeof(after), &after), 0);
	cr_expect(CPU_EQUAL(&after, &one), "the caller was pinned to CPU %d; after merge_parallel it may run on %d CPUs",
		  cpu, CPU_COUNT(&after));
	precopy_bitmap_free(&bm);
	free_pools();
	free(src);
}
