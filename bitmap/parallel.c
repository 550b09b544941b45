/* SPDX-License-Identifier: MIT */
/* Parallel merge: a small pool of workers, each owning contiguous 4 KiB
 * pieces of the destination (so no cache line is written by two of them),
 * running on the NUMA node of its piece. */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdlib.h>

#include "kernels.h"

#define PIECE_WORDS 512u /* 4 KiB of destination */
#define MAX_WORKERS 64u

struct job {
	const struct precopy__bitmap_kernels *k;
	uint64_t *d;          /* destination word holding the first bit */
	unsigned o;           /* bit offset in *d */
	const uint64_t *src;
	uint64_t nbits;
	uint64_t nwords;      /* destination words touched, from d */
};

struct worker {
	struct precopy_merge_pool *pool;
	pthread_t thread;
	unsigned idx;
	uint64_t result;
	int started;
};

struct precopy_merge_pool {
	unsigned n;
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	uint64_t generation;  /* bumped per job */
	unsigned pending;     /* workers still running the current job */
	int stop;
	struct job job;
	struct worker w[MAX_WORKERS];
};

/* Worker i's destination words: contiguous, boundaries on 4 KiB pieces
 * counted from the start of the destination bitmap's words. */
static void window_of(const struct precopy_merge_pool *p, unsigned i, uint64_t *lo, uint64_t *hi)
{
	const struct job *j = &p->job;
	uint64_t abs0 = (uint64_t)((uintptr_t)j->d / 8);  /* word address of d */
	uint64_t first_piece = abs0 / PIECE_WORDS;
	uint64_t last_piece = (abs0 + j->nwords - 1) / PIECE_WORDS;
	uint64_t pieces = last_piece - first_piece + 1;
	uint64_t a = first_piece + pieces * i / p->n, b = first_piece + pieces * (i + 1) / p->n;
	uint64_t s = a * PIECE_WORDS, e = b * PIECE_WORDS;

	*lo = s > abs0 ? s - abs0 : 0;
	*hi = e > abs0 ? e - abs0 : 0;
}

/* libnuma fills its per-node CPU mask cache (numa_node_to_cpus, behind
 * numa_run_on_node) without a lock: two workers moving to a node at once
 * race on it (one copies a mask the other is still filling). Every pool's
 * workers take this lock around it. */
static pthread_mutex_t numa_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_share(struct precopy_merge_pool *p, unsigned i)
{
	const struct job *j = &p->job;
	uint64_t lo, hi;

	window_of(p, i, &lo, &hi);
	p->w[i].result = 0;
	if (lo >= hi || lo >= j->nwords)
		return;
	/* Pool threads run on the node of their piece; the calling thread
	 * (worker 0) keeps the affinity its owner gave it. */
	if (i > 0 && numa_available() >= 0) {
		int node = -1;

		/* run where the destination piece lives (no-op on one node) */
		if (get_mempolicy(&node, NULL, 0, j->d + lo, MPOL_F_NODE | MPOL_F_ADDR) == 0 && node >= 0) {
			pthread_mutex_lock(&numa_lock);
			numa_run_on_node(node);
			pthread_mutex_unlock(&numa_lock);
		}
	}
	p->w[i].result = precopy__bitmap_merge_window(j->k, j->d, j->o, j->src, j->nbits, lo, hi);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct precopy_merge_pool *p = w->pool;
	uint64_t seen = 0;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->stop && p->generation == seen)
			pthread_cond_wait(&p->go, &p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		seen = p->generation;
		pthread_mutex_unlock(&p->lock);

		run_share(p, w->idx);

		pthread_mutex_lock(&p->lock);
		if (--p->pending == 0)
			pthread_cond_signal(&p->done);
		pthread_mutex_unlock(&p->lock);
	}
}

PRECOPY_API void precopy_merge_pool_free(struct precopy_merge_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stop = 1;
	pthread_cond_broadcast(&pool->go);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 1; i < pool->n; i++)
		if (pool->w[i].started)
			pthread_join(pool->w[i].thread, NULL);
	pthread_cond_destroy(&pool->go);
	pthread_cond_destroy(&pool->done);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

PRECOPY_API struct precopy_merge_pool *precopy_merge_pool_new(unsigned int nworkers, int *err)
{
	struct precopy_merge_pool *p;

	if (err)
		*err = 0;
	if (nworkers < 1 || nworkers > MAX_WORKERS) {
		if (err)
			*err = -EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	p->n = nworkers;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	for (unsigned i = 0; i < nworkers; i++) {
		p->w[i].pool = p;
		p->w[i].idx = i;
	}
	/* worker 0 is the calling thread */
	for (unsigned i = 1; i < nworkers; i++) {
		int r = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);

		if (r) {
			precopy_merge_pool_free(p);
			if (err)
				*err = -r;
			return NULL;
		}
		p->w[i].started = 1;
	}
	return p;
}

PRECOPY_API int64_t precopy_bitmap_merge_parallel(struct precopy_merge_pool *pool,
						  struct precopy_bitmap *dst, uint64_t dst_bit,
						  const uint64_t *src, uint64_t nbits)
{
	int r;
	uint64_t total = 0;

	if (!pool)
		return -EINVAL;
	r = precopy__bitmap_check_range(dst, dst_bit, nbits);
	if (r)
		return r;
	if (!src)
		return -EINVAL;
	pool->job = (struct job){
		.k = precopy__bitmap_kernels(),
		.d = dst->words + (dst_bit >> 6),
		.o = dst_bit & 63,
		.src = src,
		.nbits = nbits,
		.nwords = ((dst_bit & 63) + nbits + 63) / 64,
	};
	if (pool->n == 1 || pool->job.nwords <= PIECE_WORDS) {
		pool->w[0].result = precopy__bitmap_merge_window(pool->job.k, pool->job.d, pool->job.o, src,
							nbits, 0, UINT64_MAX);
		return (int64_t)pool->w[0].result;
	}
	pthread_mutex_lock(&pool->lock);
	pool->pending = pool->n - 1;
	pool->generation++;
	pthread_cond_broadcast(&pool->go);
	pthread_mutex_unlock(&pool->lock);

	run_share(pool, 0);

	pthread_mutex_lock(&pool->lock);
	while (pool->pending)
		pthread_cond_wait(&pool->done, &pool->lock);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n; i++)
		total += pool->w[i].result;
	return (int64_t)total;
}
