/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-harvest.c — precopy_bitmap_harvest(): single-threaded
 * semantics against the reference (live cleared, snap OR'ed, count of newly
 * set bits, tails), and under concurrency: writer threads set bits with
 * precopy_bitmap_set_atomic() while a harvester takes successive snapshots;
 * in the end the union of snapshots is exactly the set of bits written, and
 * the harvested counts add up to the writers' "newly set" returns. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

static const double densities[] = { 0.0, 0.0001, 0.01, 0.5, 1.0 };
static const uint64_t sizes[] = { 1, 63, 64, 65, 511, 513, 4097, 100003 };

#define CTX "harvest[%s] nbits=%" PRIu64 " density=%g seed=%#" PRIx64

static void single(enum precopy_simd v)
{
	size_t si, di;

	for (si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (di = 0; di < sizeof(densities) / sizeof(densities[0]); di++) {
			uint64_t n = sizes[si], seed = case_seed(n, di, 11, 0), *rs, i, exp = 0;
			struct bitref_rng r;
			struct bitref_dst live, snap;
			int64_t got;

			bitref_rng_seed(&r, seed);
			bitref_dst_init(&live, n, densities[di], &r);
			bitref_dst_init(&snap, n, di % 2 ? 0.3 : 0.0, &r);
			rs = malloc(snap.nwords * 8);
			for (i = 0; i < snap.nwords; i++) {
				exp += (uint64_t)__builtin_popcountll(live.bm.words[i] & ~snap.bm.words[i]);
				rs[i] = snap.bm.words[i] | live.bm.words[i];
			}
			got = precopy_bitmap_harvest(&live.bm, &snap.bm);
			cr_assert_eq(got, (int64_t)exp, CTX ": returned %" PRId64 ", expected %" PRIu64, VNAME(v), n,
				     densities[di], seed, got, exp);
			cr_assert_eq(bitref_popcount(live.bm.words, live.nwords), 0, CTX ": live not cleared", VNAME(v),
				     n, densities[di], seed);
			cr_assert_eq(bitref_first_diff(snap.bm.words, rs, snap.nwords), -1, CTX ": snap content",
				     VNAME(v), n, densities[di], seed);
			cr_assert(bitref_dst_guards_ok(&live) && bitref_dst_guards_ok(&snap),
				  CTX ": wrote outside a bitmap", VNAME(v), n, densities[di], seed);
			/* a second harvest finds nothing */
			got = precopy_bitmap_harvest(&live.bm, &snap.bm);
			cr_assert_eq(got, 0, CTX ": second harvest returned %" PRId64, VNAME(v), n, densities[di], seed,
				     got);
			cr_assert_eq(bitref_first_diff(snap.bm.words, rs, snap.nwords), -1);
			free(rs);
			bitref_dst_free(&live);
			bitref_dst_free(&snap);
		}
	}
}
VARIANT_TESTS(harvest, single_thread_semantics, single, .timeout = 120)

/* Garbage in live's tail (a wrapped buffer) does not reach snap or the count. */
static void tail(enum precopy_simd v)
{
	static const uint64_t ns[] = { 1, 65, 127, 1000 };
	size_t i;

	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t n = ns[i], nw = bitref_words(n);
		uint64_t *lw = calloc(nw, 8), *sw = calloc(nw, 8);
		struct precopy_bitmap live, snap;
		int64_t got;

		cr_assert_eq(precopy_bitmap_wrap(&live, lw, n), 0);
		cr_assert_eq(precopy_bitmap_wrap(&snap, sw, n), 0);
		bitref_set(lw, 0);
		bitref_set_tail(lw, n);
		got = precopy_bitmap_harvest(&live, &snap);
		cr_assert_eq(got, 1, "harvest[%s] nbits=%" PRIu64 ": tail bits counted (%" PRId64 ")", VNAME(v), n,
			     got);
		cr_assert(bitref_tail_is_zero(sw, n), "harvest[%s] nbits=%" PRIu64 ": tail copied into snap",
			  VNAME(v), n);
		cr_assert(bitref_get(sw, 0));
		cr_assert_eq(bitref_count(lw, 0, n), 0);
		free(lw);
		free(sw);
	}
}
VARIANT_TESTS(harvest, tail_of_live_ignored, tail)

Test(harvest, bad_input_nothing_written)
{
	uint64_t a[3] = { 1, 2, 3 }, b[3] = { 4, 5, 6 };
	struct precopy_bitmap live, snap, snap_short;

	cr_assert_eq(precopy_bitmap_wrap(&live, a, 190), 0);
	cr_assert_eq(precopy_bitmap_wrap(&snap, b, 190), 0);
	cr_assert_eq(precopy_bitmap_wrap(&snap_short, b, 189), 0);
	cr_assert_eq(precopy_bitmap_harvest(&live, &snap_short), -EINVAL);
	cr_assert_eq(precopy_bitmap_harvest(NULL, &snap), -EINVAL);
	cr_assert_eq(precopy_bitmap_harvest(&live, NULL), -EINVAL);
	cr_assert(a[0] == 1 && a[1] == 2 && a[2] == 3, "live changed on error");
	cr_assert(b[0] == 4 && b[1] == 5 && b[2] == 6, "snap changed on error");
}

/* ---- concurrency ------------------------------------------------------------ */

struct writer {
	pthread_t t;
	struct precopy_bitmap *live;
	uint64_t nbits, seed, min_iters;
	uint64_t *written;  /* private record of every bit this writer set */
	uint64_t newly;     /* set_atomic returns of 1 */
	uint64_t iters;     /* how many it did */
	int bad;            /* a return that was neither 0 nor 1 */
};

static atomic_int writers_running;
static atomic_int stop_writers; /* set by the harvester after enough snapshots */

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct bitref_rng r;
	uint64_t i;

	bitref_rng_seed(&r, w->seed);
	/* write until the harvester has taken its snapshots (and at least
	 * min_iters bits), so writing and harvesting really overlap */
	for (i = 0; i < w->min_iters || !atomic_load_explicit(&stop_writers, memory_order_relaxed); i++) {
		/* half the time a narrow hot window, so writers collide on words
		 * the harvester is exchanging */
		uint64_t bit = bitref_rng_below(&r, 2) ? bitref_rng_below(&r, w->nbits)
						       : bitref_rng_below(&r, w->nbits < 256 ? w->nbits : 256);
		int rc;

		bitref_set(w->written, bit);
		rc = precopy_bitmap_set_atomic(w->live, bit);
		if (rc == 1)
			w->newly++;
		else if (rc != 0)
			w->bad = 1;
	}
	w->iters = i;
	atomic_fetch_sub(&writers_running, 1);
	return NULL;
}

static void concurrent(enum precopy_simd v, unsigned nwriters, uint64_t nbits, uint64_t iters, uint64_t target)
{
	struct precopy_bitmap live, snap;
	struct writer w[3];
	uint64_t nw = bitref_words(nbits), *uni = calloc(nw, 8), *wrote = calloc(nw, 8), harvested = 0, newly = 0;
	uint64_t snapshots = 0, i;
	unsigned k;
	int64_t got;

	cr_assert(uni && wrote);
	cr_assert_eq(precopy_bitmap_alloc(&live, nbits, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_bitmap_alloc(&snap, nbits, PRECOPY_NUMA_LOCAL), 0);
	atomic_store(&writers_running, (int)nwriters);
	atomic_store(&stop_writers, 0);
	for (k = 0; k < nwriters; k++) {
		w[k] = (struct writer){ .live = &live, .nbits = nbits, .seed = case_seed(nbits, k, iters, 3),
					.min_iters = iters, .written = calloc(nw, 8) };
		cr_assert_not_null(w[k].written);
		cr_assert_eq(pthread_create(&w[k].t, NULL, writer_main, &w[k]), 0);
	}
	/* harvest while they write, then once more after they stopped */
	for (;;) {
		int last = atomic_load(&writers_running) == 0;

		precopy_bitmap_zero(&snap);
		got = precopy_bitmap_harvest(&live, &snap);
		cr_assert_geq(got, 0, "harvest[%s] returned %" PRId64, VNAME(v), got);
		cr_assert_eq((uint64_t)got, bitref_popcount(snap.words, nw),
			     "harvest[%s]: count %" PRId64 " but the fresh snapshot holds %" PRIu64, VNAME(v), got,
			     bitref_popcount(snap.words, nw));
		harvested += (uint64_t)got;
		for (i = 0; i < nw; i++)
			uni[i] |= snap.words[i];
		snapshots++;
		if (snapshots == target)
			atomic_store(&stop_writers, 1);
		if (last)
			break;
	}
	for (k = 0; k < nwriters; k++) {
		pthread_join(w[k].t, NULL);
		cr_assert_eq(w[k].bad, 0, "set_atomic returned something other than 0/1");
		newly += w[k].newly;
		for (i = 0; i < nw; i++)
			wrote[i] |= w[k].written[i];
		free(w[k].written);
	}
	cr_assert_eq(precopy_bitmap_count(&live), 0, "harvest[%s]: bits left in live after the final harvest",
		     VNAME(v));
	for (i = 0; i < nw; i++) {
		cr_assert_eq(uni[i] & ~wrote[i], 0,
			     "harvest[%s] %u writers nbits=%" PRIu64 ": invented bits %#" PRIx64 " in word %" PRIu64,
			     VNAME(v), nwriters, nbits, uni[i] & ~wrote[i], i);
		cr_assert_eq(wrote[i] & ~uni[i], 0,
			     "harvest[%s] %u writers nbits=%" PRIu64 ": lost bits %#" PRIx64 " in word %" PRIu64,
			     VNAME(v), nwriters, nbits, wrote[i] & ~uni[i], i);
	}
	cr_assert_eq(harvested, newly,
		     "harvest[%s] %u writers nbits=%" PRIu64 ": harvested %" PRIu64 " bits over %" PRIu64
		     " snapshots, writers newly set %" PRIu64,
		     VNAME(v), nwriters, nbits, harvested, snapshots, newly);
	cr_assert(bitref_tail_is_zero(snap.words, nbits));
	precopy_bitmap_free(&live);
	precopy_bitmap_free(&snap);
	free(uni);
	free(wrote);
}

static void concurrent_cases(enum precopy_simd v)
{
	concurrent(v, 2, 1000, 20000, 100000);       /* tiny: constant re-dirtying of harvested bits */
	concurrent(v, 3, 4096 + 17, 20000, 20000);  /* odd size, hot window + spread */
	concurrent(v, 3, 1u << 20, 20000, 100);      /* sparse */
}
VARIANT_TESTS(harvest, concurrent_nothing_lost_nothing_invented, concurrent_cases, .timeout = 300)
