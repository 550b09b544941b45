/* SPDX-License-Identifier: MIT */
/* Bitmap storage: NUMA-placed (libnuma), plain anonymous mapping, or the
 * caller's own words. */
#include <errno.h>
#include <numa.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels.h"

/* Round up to whole 4 KiB pages, so a bitmap never shares a page (and so a
 * cache line) with unrelated data and the parallel merge can split on
 * 4 KiB boundaries. */
static size_t bytes_for(uint64_t nbits)
{
	uint64_t b = PRECOPY_BITMAP_WORDS(nbits) * 8;

	return (size_t)((b + 4095) & ~(uint64_t)4095);
}

static int numa_usable(int placement)
{
	if (numa_available() < 0)
		return 0;
	/* A node this host does not have: fall back rather than fail. */
	return placement < 0 || placement <= numa_max_node();
}

PRECOPY_API int precopy_bitmap_alloc(struct precopy_bitmap *bm, uint64_t nbits, int placement)
{
	struct precopy_bitmap out = { 0 };
	void *p = NULL;
	size_t len;

	if (!bm || !nbits || placement < PRECOPY_NUMA_INTERLEAVE)
		return -EINVAL;
	if (nbits > (uint64_t)SIZE_MAX / 2) /* bytes_for would overflow */
		return -ENOMEM;
	len = bytes_for(nbits);
	if (numa_usable(placement)) {
		/* libnuma's allocators are mmap-backed: zeroed and page aligned. */
		if (placement == PRECOPY_NUMA_INTERLEAVE)
			p = numa_alloc_interleaved(len);
		else if (placement == PRECOPY_NUMA_LOCAL)
			p = numa_alloc_local(len);
		else
			p = numa_alloc_onnode(len, placement);
		if (p)
			out.origin = PRECOPY_BITMAP_NUMA;
	}
	if (!p) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		out.origin = PRECOPY_BITMAP_MMAP;
	}
	/* Large logs are scanned end to end every sync: huge pages cut the
	 * TLB misses of those scans (advice only; failure changes nothing). */
	if (len >= (2u << 20))
		madvise(p, len, MADV_HUGEPAGE);
	out.words = p;
	out.nbits = nbits;
	out.alloc_bytes = len;
	out.node = placement;
	*bm = out; /* only on success: nothing is written on error */
	return 0;
}

PRECOPY_API int precopy_bitmap_wrap(struct precopy_bitmap *bm, uint64_t *words, uint64_t nbits)
{
	if (!bm || !words || !nbits)
		return -EINVAL;
	memset(bm, 0, sizeof(*bm));
	bm->words = words;
	bm->nbits = nbits;
	bm->node = PRECOPY_NUMA_LOCAL;
	bm->origin = PRECOPY_BITMAP_CALLER;
	return 0;
}

PRECOPY_API void precopy_bitmap_free(struct precopy_bitmap *bm)
{
	if (!bm)
		return;
	if (bm->words && bm->alloc_bytes) {
		if (bm->origin == PRECOPY_BITMAP_NUMA)
			numa_free(bm->words, bm->alloc_bytes);
		else
			munmap(bm->words, bm->alloc_bytes);
	}
	memset(bm, 0, sizeof(*bm));
}
