/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-alloc.c — precopy_bitmap_alloc() placements (local,
 * interleave, node 0, a node that does not exist), zeroed 4 KiB-aligned
 * memory, the origin it reports, and wrap/free not freeing caller memory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"

static const uint64_t sizes[] = { 1, 64, 65, 4096 * 8, 4096 * 8 + 1, (1u << 20) + 3, 1u << 27 };

static int numa_usable(void)
{
	return numa_available() >= 0;
}

static void check_alloc(uint64_t nbits, int placement)
{
	struct precopy_bitmap bm;
	uint64_t nw = bitref_words(nbits), i;
	int rc;

	memset(&bm, 0xcd, sizeof(bm));
	rc = precopy_bitmap_alloc(&bm, nbits, placement);
	cr_assert_eq(rc, 0, "alloc(%" PRIu64 ", %d) = %d", nbits, placement, rc);
	cr_assert_not_null(bm.words);
	cr_assert_eq((uintptr_t)bm.words % 4096, 0, "words %p not 4 KiB aligned", (void *)bm.words);
	cr_assert_eq(bm.nbits, nbits);
	cr_assert_eq(bm.node, placement);
	cr_assert_geq(bm.alloc_bytes, nw * 8, "alloc_bytes %zu for %" PRIu64 " words", bm.alloc_bytes, nw);
	cr_assert(bm.origin == PRECOPY_BITMAP_NUMA || bm.origin == PRECOPY_BITMAP_MMAP, "origin %d", bm.origin);
	if (numa_usable() && (placement < 0 || placement <= numa_max_node()))
		cr_expect_eq(bm.origin, PRECOPY_BITMAP_NUMA,
			     "libnuma is available and node %d exists, but origin is %d (plain mmap)", placement,
			     bm.origin);
	for (i = 0; i < bm.alloc_bytes / 8; i++)
		cr_assert_eq(bm.words[i], 0, "word %" PRIu64 " not zeroed", i);
	cr_assert_eq(precopy_bitmap_count(&bm), 0);
	/* writable, and the whole range is usable */
	cr_assert_eq(precopy_bitmap_set_range(&bm, 0, nbits), (int64_t)nbits);
	cr_assert_eq(precopy_bitmap_count(&bm), nbits);
	cr_assert(bitref_tail_is_zero(bm.words, nbits));

	if (bm.origin == PRECOPY_BITMAP_NUMA && placement == PRECOPY_NUMA_INTERLEAVE) {
		int mode = -1;

		cr_assert_eq(get_mempolicy(&mode, NULL, 0, bm.words, MPOL_F_ADDR), 0);
		cr_expect_eq(mode, MPOL_INTERLEAVE, "interleaved bitmap has policy %d", mode);
	}
	if (bm.origin == PRECOPY_BITMAP_NUMA && placement >= 0) {
		void *page = bm.words;
		int status = -1;

		cr_assert_eq(numa_move_pages(0, 1, &page, NULL, &status, 0), 0);
		cr_expect_eq(status, placement, "page on node %d, asked for %d", status, placement);
	}
	precopy_bitmap_free(&bm);
	{
		struct precopy_bitmap zero;

		memset(&zero, 0, sizeof(zero));
		cr_assert_eq(memcmp(&bm, &zero, sizeof(bm)), 0, "free did not zero *bm");
	}
	precopy_bitmap_free(&bm); /* safe on a zeroed struct */
}

Test(alloc, local)
{
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_alloc(sizes[i], PRECOPY_NUMA_LOCAL);
}

Test(alloc, interleave)
{
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_alloc(sizes[i], PRECOPY_NUMA_INTERLEAVE);
}

Test(alloc, node0)
{
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_alloc(sizes[i], 0);
}

/* "Where NUMA is not available (libnuma reports so, or the node does not
 * exist on a single-node host) it falls back to a plain anonymous mapping
 * and says so in bm->origin." */
Test(alloc, missing_node_on_single_node_host_falls_back)
{
	struct precopy_bitmap bm;
	int rc;

	if (numa_usable() && numa_max_node() > 0)
		cr_skip_test("multi-node host (max node %d): the header only specifies the single-node fallback",
			     numa_max_node());
	rc = precopy_bitmap_alloc(&bm, 100000, 63);
	cr_assert_eq(rc, 0, "alloc on node 63 of a single-node host = %d", rc);
	cr_expect_eq(bm.origin, PRECOPY_BITMAP_MMAP, "origin %d, expected the plain-mapping fallback", bm.origin);
	cr_expect_eq(bm.node, 63);
	cr_assert_eq((uintptr_t)bm.words % 4096, 0);
	cr_assert_eq(precopy_bitmap_count(&bm), 0);
	cr_assert_eq(precopy_bitmap_set_range(&bm, 0, 100000), 100000);
	precopy_bitmap_free(&bm);
}

Test(alloc, wrap_and_free_leave_caller_memory)
{
	uint64_t nw = bitref_words(1000), *w = malloc(nw * 8), i;
	struct precopy_bitmap bm;

	cr_assert_not_null(w);
	for (i = 0; i < nw; i++)
		w[i] = i;
	cr_assert_eq(precopy_bitmap_wrap(&bm, w, 1000), 0);
	cr_assert_eq(bm.words, w);
	cr_assert_eq(bm.nbits, 1000);
	cr_assert_eq(bm.alloc_bytes, 0);
	cr_assert_eq(bm.origin, PRECOPY_BITMAP_CALLER);
	precopy_bitmap_free(&bm);
	cr_assert_null(bm.words, "free did not forget the words");
	cr_assert_eq(bm.nbits, 0);
	/* still ours: readable, writable, and free() does not double-free */
	for (i = 0; i < nw; i++) {
		cr_assert_eq(w[i], i, "caller's word %" PRIu64 " changed", i);
		w[i] = ~i;
	}
	free(w);
}

Test(alloc, many_small_and_reuse)
{
	struct precopy_bitmap bms[64];
	int i;

	for (i = 0; i < 64; i++)
		cr_assert_eq(precopy_bitmap_alloc(&bms[i], 1 + (uint64_t)i * 977, i % 2 ? PRECOPY_NUMA_LOCAL : 0), 0);
	for (i = 0; i < 64; i++) {
		cr_assert_eq(precopy_bitmap_count(&bms[i]), 0);
		cr_assert_eq(precopy_bitmap_set_atomic(&bms[i], (uint64_t)i * 977), 1);
	}
	for (i = 0; i < 64; i++) {
		cr_assert_eq(precopy_bitmap_count(&bms[i]), 1);
		precopy_bitmap_free(&bms[i]);
	}
}
