/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-live.c — precopy_live_bitmap_*: a double-buffered
 * dirty log. Single-threaded semantics against a reference (snap OR'ed,
 * count of newly set bits, second harvest empty, tails), refusals that
 * change nothing, the -EBUSY path (a writer that stays in its section:
 * nothing written, nothing lost, taken by the next harvest), and writer
 * threads against a harvester: the union of snapshots is exactly the set
 * of bits written. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

static const uint64_t sizes[] = { 1, 63, 64, 65, 511, 513, 4097, 100003 };

static int bitref_test(const uint64_t *w, uint64_t bit)
{
	return bitref_count(w, bit, 1) != 0;
}

static struct precopy_live_bitmap *mk(uint64_t n)
{
	int err = 0;
	struct precopy_live_bitmap *l = precopy_live_bitmap_new(n, PRECOPY_NUMA_LOCAL, &err);

	cr_assert_not_null(l, "precopy_live_bitmap_new(%" PRIu64 ") failed: %d", n, err);
	cr_assert_eq(precopy_live_bitmap_nbits(l), n);
	return l;
}

static void single(enum precopy_simd v)
{
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t n = sizes[si], nw = bitref_words(n), seed = case_seed(n, 5, 7, 0), exp = 0;
		uint64_t *want = calloc(nw, 8);
		struct precopy_live_bitmap *l = mk(n);
		struct precopy_bitmap snap;
		struct bitref_rng r;
		int64_t got;

		cr_assert_not_null(want);
		cr_assert_eq(precopy_bitmap_alloc(&snap, n, PRECOPY_NUMA_LOCAL), 0);
		bitref_rng_seed(&r, seed);
		/* snap already holds some bits: they stay and are not counted */
		for (uint64_t i = 0; i < n / 7 + 1; i++) {
			uint64_t b = bitref_rng_below(&r, n);

			precopy_bitmap_set_atomic(&snap, b);
			bitref_set(want, b);
		}
		for (uint64_t i = 0; i < n / 3 + 1; i++) {
			uint64_t b = bitref_rng_below(&r, n);
			int rc, was = bitref_test(want, b);

			rc = precopy_live_bitmap_set(l, b);
			cr_assert(rc == 0 || rc == 1, "set(%" PRIu64 ") = %d", b, rc);
			if (!was) {
				exp++;
				bitref_set(want, b);
			}
		}
		/* the last bit through a section, as a batch would */
		{
			struct precopy_live_section s;

			cr_assert_eq(precopy_live_bitmap_enter(l, &s), 0);
			cr_assert_not_null(s.bm);
			cr_assert_eq(s.bm->nbits, n);
			precopy_bitmap_set_atomic(s.bm, n - 1);
			precopy_live_bitmap_exit(&s);
			cr_assert_null(s.bm, "exit leaves the section's buffer pointer set");
			if (!bitref_test(want, n - 1)) {
				exp++;
				bitref_set(want, n - 1);
			}
		}
		got = precopy_live_bitmap_harvest(l, &snap);
		cr_assert_eq(got, (int64_t)exp, "live[%s] n=%" PRIu64 ": harvest returned %" PRId64 ", expected %" PRIu64,
			     VNAME(v), n, got, exp);
		cr_assert_eq(bitref_first_diff(snap.words, want, nw), -1, "live[%s] n=%" PRIu64 ": snap content",
			     VNAME(v), n);
		got = precopy_live_bitmap_harvest(l, &snap);
		cr_assert_eq(got, 0, "live[%s] n=%" PRIu64 ": second harvest returned %" PRId64, VNAME(v), n, got);
		/* both buffers were used once now; a third round uses the first again */
		cr_assert_eq(precopy_live_bitmap_set(l, 0), 1, "bit 0 still set in a buffer after its harvest");
		precopy_bitmap_zero(&snap);
		cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), 1);
		cr_assert_eq(bitref_popcount(snap.words, nw), 1);
		cr_assert(bitref_tail_is_zero(snap.words, n));
		precopy_bitmap_free(&snap);
		precopy_live_bitmap_free(l);
		free(want);
	}
}
VARIANT_TESTS(live, single_thread_semantics, single, .timeout = 120)

/* A writer that set_range()s over a buffer's tail cannot put bits past
 * nbits into the snapshot or its count. */
Test(live, tail_bits_stay_out)
{
	static const uint64_t ns[] = { 1, 65, 127, 1000 };

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t n = ns[i];
		struct precopy_live_bitmap *l = mk(n);
		struct precopy_live_section s;
		struct precopy_bitmap snap;

		cr_assert_eq(precopy_bitmap_alloc(&snap, n, PRECOPY_NUMA_LOCAL), 0);
		cr_assert_eq(precopy_live_bitmap_enter(l, &s), 0);
		cr_assert_eq(precopy_bitmap_set_range(s.bm, 0, n), (int64_t)n);
		/* garbage past the end, as a buggy or wrapped writer might leave */
		bitref_set_tail(s.bm->words, n);
		precopy_live_bitmap_exit(&s);
		cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), (int64_t)n, "n=%" PRIu64, n);
		cr_assert(bitref_tail_is_zero(snap.words, n), "n=%" PRIu64 ": tail bits reached snap", n);
		precopy_bitmap_free(&snap);
		precopy_live_bitmap_free(l);
	}
}

Test(live, refusals_change_nothing)
{
	struct precopy_live_bitmap *l = mk(190);
	struct precopy_bitmap snap, shorter;
	struct precopy_live_section s;
	uint64_t b[3] = { 4, 5, 6 };
	int err = 0;

	cr_assert_null(precopy_live_bitmap_new(0, PRECOPY_NUMA_LOCAL, &err));
	cr_assert_eq(err, -EINVAL);
	err = 0;
	cr_assert_null(precopy_live_bitmap_new(64, -100, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_live_bitmap_new(0, PRECOPY_NUMA_LOCAL, NULL));
	cr_assert_eq(precopy_live_bitmap_nbits(NULL), 0);
	precopy_live_bitmap_free(NULL);
	precopy_live_bitmap_exit(NULL);

	cr_assert_eq(precopy_live_bitmap_set(NULL, 0), -EINVAL);
	cr_assert_eq(precopy_live_bitmap_set(l, 190), -ERANGE);
	cr_assert_eq(precopy_live_bitmap_set(l, UINT64_MAX), -ERANGE);
	cr_assert_eq(precopy_live_bitmap_enter(NULL, &s), -EINVAL);
	cr_assert_eq(precopy_live_bitmap_enter(l, NULL), -EINVAL);
	cr_assert_eq(precopy_live_bitmap_set(l, 189), 1);

	cr_assert_eq(precopy_bitmap_wrap(&snap, b, 190), 0);
	cr_assert_eq(precopy_bitmap_wrap(&shorter, b, 189), 0);
	cr_assert_eq(precopy_live_bitmap_harvest(NULL, &snap), -EINVAL);
	cr_assert_eq(precopy_live_bitmap_harvest(l, NULL), -EINVAL);
	cr_assert_eq(precopy_live_bitmap_harvest(l, &shorter), -EINVAL);
	/* one of its own buffers as the snapshot */
	cr_assert_eq(precopy_live_bitmap_enter(l, &s), 0);
	{
		struct precopy_bitmap *own = s.bm;

		precopy_live_bitmap_exit(&s);
		cr_assert_eq(precopy_live_bitmap_harvest(l, own), -EINVAL);
	}
	cr_assert(b[0] == 4 && b[1] == 5 && b[2] == 6, "snap changed on a refusal");
	/* the bit set before the refusals is still there */
	b[2] = 0;
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), 1);
	cr_assert_eq(b[2], 1ull << (189 - 128));
	precopy_live_bitmap_free(l);
}

/* The harvesting thread itself stays inside a section: the harvest cannot
 * wait it out, says -EBUSY and writes nothing; bits set meanwhile, in either
 * buffer, all arrive with the first harvest after the section ends. */
Test(live, busy_writer_loses_nothing)
{
	struct precopy_live_bitmap *l = mk(1000);
	struct precopy_live_section s;
	struct precopy_bitmap snap;

	cr_assert_eq(precopy_bitmap_alloc(&snap, 1000, PRECOPY_NUMA_LOCAL), 0);
	cr_assert_eq(precopy_live_bitmap_set(l, 7), 1);
	cr_assert_eq(precopy_live_bitmap_enter(l, &s), 0);
	cr_assert_eq(precopy_bitmap_set_atomic(s.bm, 500), 1);
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), -EBUSY);
	cr_assert_eq(precopy_bitmap_count(&snap), 0, "a harvest that said -EBUSY wrote to snap");
	/* writers after the flip go to the other buffer, also while one is stuck */
	cr_assert_eq(precopy_live_bitmap_set(l, 999), 1);
	cr_assert_eq(precopy_live_bitmap_set(l, 7), 1, "bit 7 is new in the buffer after the flip");
	/* still inside: the next harvest cannot fold the stuck buffer either */
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), -EBUSY);
	cr_assert_eq(precopy_bitmap_count(&snap), 0);
	cr_assert_eq(precopy_bitmap_set_atomic(s.bm, 501), 1, "the stuck section's buffer still takes bits");
	precopy_live_bitmap_exit(&s);
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), 4);
	cr_assert(precopy_bitmap_test(&snap, 7) && precopy_bitmap_test(&snap, 500) &&
		  precopy_bitmap_test(&snap, 501) && precopy_bitmap_test(&snap, 999));
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), 0);
	precopy_bitmap_zero(&snap);
	cr_assert_eq(precopy_live_bitmap_harvest(l, &snap), 0, "bits left behind after the recovery");
	precopy_bitmap_free(&snap);
	precopy_live_bitmap_free(l);
}

/* ---- concurrency ------------------------------------------------------------ */

struct writer {
	pthread_t t;
	struct precopy_live_bitmap *live;
	uint64_t nbits, seed, min_iters;
	uint64_t *written; /* private record of every bit this writer set */
	uint64_t newly;    /* returns of 1 */
	int bad;
	int batch;         /* 0: precopy_live_bitmap_set(); else sections of this many bits */
};

static atomic_int writers_running;
static atomic_int stop_writers;

static uint64_t pick(struct bitref_rng *r, uint64_t n)
{
	/* half the time a narrow hot window, so writers collide on words */
	return bitref_rng_below(r, 2) ? bitref_rng_below(r, n) : bitref_rng_below(r, n < 256 ? n : 256);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct bitref_rng r;
	uint64_t i = 0;

	bitref_rng_seed(&r, w->seed);
	while (i < w->min_iters || !atomic_load_explicit(&stop_writers, memory_order_relaxed)) {
		struct precopy_live_section s;
		int rc;

		if (!w->batch) {
			uint64_t bit = pick(&r, w->nbits);

			bitref_set(w->written, bit);
			rc = precopy_live_bitmap_set(w->live, bit);
			w->newly += rc == 1;
			w->bad |= rc != 0 && rc != 1;
			i++;
			continue;
		}
		w->bad |= precopy_live_bitmap_enter(w->live, &s) != 0;
		for (int k = 0; k < w->batch; k++, i++) {
			uint64_t bit = pick(&r, w->nbits);

			bitref_set(w->written, bit);
			rc = precopy_bitmap_set_atomic(s.bm, bit);
			w->newly += rc == 1;
			w->bad |= rc != 0 && rc != 1;
		}
		precopy_live_bitmap_exit(&s);
	}
	atomic_fetch_sub(&writers_running, 1);
	return NULL;
}

static void concurrent(enum precopy_simd v, unsigned nwriters, uint64_t nbits, uint64_t iters, uint64_t target)
{
	struct precopy_live_bitmap *l = mk(nbits);
	struct precopy_bitmap snap;
	struct writer w[3];
	uint64_t nw = bitref_words(nbits), *uni = calloc(nw, 8), *wrote = calloc(nw, 8);
	uint64_t harvested = 0, newly = 0, snapshots = 0, busy = 0;

	cr_assert(uni && wrote);
	cr_assert_eq(precopy_bitmap_alloc(&snap, nbits, PRECOPY_NUMA_LOCAL), 0);
	atomic_store(&writers_running, (int)nwriters);
	atomic_store(&stop_writers, 0);
	for (unsigned k = 0; k < nwriters; k++) {
		w[k] = (struct writer){ .live = l, .nbits = nbits, .seed = case_seed(nbits, k, iters, 9),
					.min_iters = iters, .written = calloc(nw, 8), .batch = (int)k * 8 };
		cr_assert_not_null(w[k].written);
		cr_assert_eq(pthread_create(&w[k].t, NULL, writer_main, &w[k]), 0);
	}
	for (;;) {
		int last = atomic_load(&writers_running) == 0;
		int64_t got;

		precopy_bitmap_zero(&snap);
		got = precopy_live_bitmap_harvest(l, &snap);
		if (got == -EBUSY && !last) {
			/* a writer was descheduled inside its section (two cores,
			 * three writers): allowed, and the next harvest has its bits */
			busy++;
			continue;
		}
		cr_assert_geq(got, 0, "live[%s] harvest returned %" PRId64, VNAME(v), got);
		cr_assert_eq((uint64_t)got, bitref_popcount(snap.words, nw),
			     "live[%s]: count %" PRId64 " but the fresh snapshot holds %" PRIu64, VNAME(v), got,
			     bitref_popcount(snap.words, nw));
		harvested += (uint64_t)got;
		for (uint64_t i = 0; i < nw; i++)
			uni[i] |= snap.words[i];
		if (++snapshots == target)
			atomic_store(&stop_writers, 1);
		if (last)
			break;
	}
	for (unsigned k = 0; k < nwriters; k++) {
		pthread_join(w[k].t, NULL);
		cr_assert_eq(w[k].bad, 0, "a writer saw a return other than 0/1");
		newly += w[k].newly;
		for (uint64_t i = 0; i < nw; i++)
			wrote[i] |= w[k].written[i];
		free(w[k].written);
	}
	for (uint64_t i = 0; i < nw; i++) {
		cr_assert_eq(uni[i] & ~wrote[i], 0, "live[%s] nbits=%" PRIu64 ": invented bits %#" PRIx64 " in word %" PRIu64,
			     VNAME(v), nbits, uni[i] & ~wrote[i], i);
		cr_assert_eq(wrote[i] & ~uni[i], 0, "live[%s] nbits=%" PRIu64 ": lost bits %#" PRIx64 " in word %" PRIu64,
			     VNAME(v), nbits, wrote[i] & ~uni[i], i);
	}
	/* Without a -EBUSY every bit a writer newly set was counted exactly
	 * once; after one, a bit set in both buffers is counted once. */
	if (busy)
		cr_assert_leq(harvested, newly);
	else
		cr_assert_eq(harvested, newly,
			     "live[%s] nbits=%" PRIu64 ": harvested %" PRIu64 " over %" PRIu64
			     " snapshots, writers newly set %" PRIu64,
			     VNAME(v), nbits, harvested, snapshots, newly);
	precopy_bitmap_free(&snap);
	precopy_live_bitmap_free(l);
	free(uni);
	free(wrote);
}

static void concurrent_cases(enum precopy_simd v)
{
	concurrent(v, 2, 1000, 20000, 20000);      /* tiny: constant re-dirtying of harvested bits */
	concurrent(v, 3, 4096 + 17, 20000, 5000);  /* odd size, hot window + spread */
	concurrent(v, 3, 1u << 20, 20000, 100);    /* sparse */
}
VARIANT_TESTS(live, concurrent_nothing_lost_nothing_invented, concurrent_cases, .timeout = 300)
