/* SPDX-License-Identifier: MIT */
/* A dirty log that writer threads set bits in while one harvester takes
 * snapshots: two buffers, writers in the current one, the harvester flips
 * and drains the other with plain vector code once its writers have left.
 * The memory-ordering argument is in docs/live-bitmap.md. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Writers announce themselves in one of these counters, chosen per thread,
 * so that vCPU threads do not share a cache line on every section. */
#define STRIPES 16

/* How long the harvester waits for writers to leave the buffer it flipped
 * away from: spins with a pause, then yields. A writer's section is a few
 * stores long; one that stays across this many yields is not making
 * progress, and the harvest says -EBUSY rather than wait for it. */
#define WAIT_SPINS  256u
#define WAIT_YIELDS 4096u

struct stripe {
	_Alignas(64) unsigned long active[2]; /* writers inside buffer 0 / 1 */
};

struct precopy_live_bitmap {
	struct precopy_bitmap buf[2];
	_Alignas(64) unsigned cur; /* the buffer writers enter */
	unsigned pending;          /* 1 + a flipped buffer not yet drained, or 0 */
	struct stripe stripe[STRIPES];
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static unsigned next_stripe;
static __thread unsigned my_stripe; /* 1 + this thread's stripe, 0 unset */

static unsigned long *stripe_of(struct precopy_live_bitmap *l, unsigned idx)
{
	if (!my_stripe)
		my_stripe = 1 + __atomic_fetch_add(&next_stripe, 1, __ATOMIC_RELAXED) % STRIPES;
	return &l->stripe[my_stripe - 1].active[idx];
}

PRECOPY_API struct precopy_live_bitmap *precopy_live_bitmap_new(uint64_t nbits, int placement,
								 int *err)
{
	struct precopy_live_bitmap *l;
	int r = -ENOMEM;

	if (!nbits || placement < PRECOPY_NUMA_INTERLEAVE) {
		r = -EINVAL;
		goto out;
	}
	l = aligned_alloc(64, sizeof(*l));
	if (!l)
		goto out;
	memset(l, 0, sizeof(*l));
	r = precopy_bitmap_alloc(&l->buf[0], nbits, placement);
	if (r == 0) {
		r = precopy_bitmap_alloc(&l->buf[1], nbits, placement);
		if (r < 0)
			precopy_bitmap_free(&l->buf[0]);
	}
	if (r == 0)
		return l;
	free(l);
out:
	if (err)
		*err = r;
	return NULL;
}

PRECOPY_API void precopy_live_bitmap_free(struct precopy_live_bitmap *l)
{
	if (!l)
		return;
	precopy_bitmap_free(&l->buf[0]);
	precopy_bitmap_free(&l->buf[1]);
	free(l);
}

PRECOPY_API uint64_t precopy_live_bitmap_nbits(const struct precopy_live_bitmap *l)
{
	return l ? l->buf[0].nbits : 0;
}

PRECOPY_API int precopy_live_bitmap_enter(struct precopy_live_bitmap *l,
					  struct precopy_live_section *s)
{
	if (!l || !s)
		return -EINVAL;
	for (;;) {
		unsigned idx = __atomic_load_n(&l->cur, __ATOMIC_ACQUIRE);
		unsigned long *a = stripe_of(l, idx);

		/* Announce, then look again: with both sides sequentially
		 * consistent, either this writer sees the harvester's flip and
		 * backs off, or the harvester sees this writer and waits. */
		__atomic_fetch_add(a, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&l->cur, __ATOMIC_SEQ_CST) == idx) {
			s->bm = &l->buf[idx];
			s->active = a;
			return 0;
		}
		__atomic_fetch_sub(a, 1, __ATOMIC_RELEASE);
	}
}

PRECOPY_API void precopy_live_bitmap_exit(struct precopy_live_section *s)
{
	if (!s || !s->active)
		return;
	/* release: the bits (and whatever was written before them) are seen
	 * by the harvester that acquires this count */
	__atomic_fetch_sub(s->active, 1, __ATOMIC_RELEASE);
	s->active = NULL;
	s->bm = NULL;
}

PRECOPY_API int precopy_live_bitmap_set(struct precopy_live_bitmap *l, uint64_t bit)
{
	struct precopy_live_section s;
	int r;

	if (!l)
		return -EINVAL;
	if (bit >= l->buf[0].nbits)
		return -ERANGE;
	precopy_live_bitmap_enter(l, &s);
	r = precopy_bitmap_set_atomic(s.bm, bit);
	precopy_live_bitmap_exit(&s);
	return r;
}

/* 0 once no writer is inside buffer idx, -EBUSY if one stays too long. */
static int wait_quiet(struct precopy_live_bitmap *l, unsigned idx)
{
	for (unsigned round = 0; round < WAIT_SPINS + WAIT_YIELDS; round++) {
		unsigned long n = 0;

		for (unsigned i = 0; i < STRIPES; i++)
			n += __atomic_load_n(&l->stripe[i].active[idx], __ATOMIC_SEQ_CST);
		if (!n)
			return 0;
		if (round < WAIT_SPINS)
			cpu_relax();
		else
			sched_yield();
	}
	return -EBUSY;
}

/* Move buffer idx (no writer inside) into snap and clear it. */
static uint64_t drain(struct precopy_live_bitmap *l, unsigned idx, struct precopy_bitmap *snap)
{
	struct precopy_bitmap *b = &l->buf[idx];
	uint64_t nw = PRECOPY_BITMAP_WORDS(b->nbits), cnt;

	if (b->nbits & 63) /* tail bits are not pages */
		b->words[nw - 1] &= low_mask(b->nbits & 63);
	cnt = precopy__bitmap_kernels()->or_count(snap->words, b->words, nw);
	memset(b->words, 0, nw * 8);
	return cnt;
}

/* Fold buffer idx (no writer inside) into the other one, which writers
 * may be setting bits in: atomically, word by word. Only after a harvest
 * gave up on a writer, so its cost does not matter. */
static void fold(struct precopy_live_bitmap *l, unsigned idx)
{
	struct precopy_bitmap *b = &l->buf[idx], *c = &l->buf[idx ^ 1];
	uint64_t nw = PRECOPY_BITMAP_WORDS(b->nbits);

	for (uint64_t i = 0; i < nw; i++) {
		if (b->words[i])
			__atomic_fetch_or(&c->words[i], b->words[i], __ATOMIC_RELAXED);
	}
	memset(b->words, 0, nw * 8);
}

PRECOPY_API int64_t precopy_live_bitmap_harvest(struct precopy_live_bitmap *l,
						struct precopy_bitmap *snap)
{
	unsigned old;
	int64_t cnt;

	if (!l || !snap || !snap->words || snap->nbits != l->buf[0].nbits || snap == &l->buf[0] ||
	    snap == &l->buf[1])
		return -EINVAL;
	/* A buffer left behind by a harvest that gave up on a writer: once its
	 * writers are gone, its bits join the current buffer, so that the flip
	 * below takes them with everything else. */
	if (l->pending) {
		if (wait_quiet(l, l->pending - 1) < 0)
			return -EBUSY;
		fold(l, l->pending - 1);
		l->pending = 0;
	}
	old = l->cur;
	__atomic_store_n(&l->cur, old ^ 1, __ATOMIC_SEQ_CST);
	l->pending = old + 1;
	if (wait_quiet(l, old) < 0)
		return -EBUSY;
	cnt = (int64_t)drain(l, old, snap);
	l->pending = 0;
	return cnt;
}
