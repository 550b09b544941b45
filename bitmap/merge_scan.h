/* SPDX-License-Identifier: MIT */
/* bitmap/merge_scan.h — private to the library (not installed): a merge
 * that also reports what it read in the source, for the KVM harvest
 * (ioctl/kvm_bitmap.c), which needs the count of reported pages and the
 * span to hand to KVM_CLEAR_DIRTY_LOG, and should not read the slot's
 * bitmap a second time to get them. */
#ifndef PRECOPY_BITMAP_MERGE_SCAN_H
#define PRECOPY_BITMAP_MERGE_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/bitmap.h"

/* What a merge saw in its source, word indices relative to the source. */
struct precopy__bitmap_scan {
	uint64_t bits;  /* set bits of the source (within nbits) */
	uint64_t first; /* first word holding a set bit; the source's word
			 * count (nothing set) if there is none */
	uint64_t last;  /* last word holding a set bit; 0 if there is none */
};

/* precopy_bitmap_merge(dst, dst_bit, src, nbits), and *sc from the same
 * pass over src (bits of src's last word beyond nbits are ignored, as the
 * merge ignores them). dst_bit + nbits must fit in dst and nbits >= 1: the
 * caller checked (no check here). Returns the count of newly set bits of
 * dst. With dst_bit a multiple of 64 this is one pass over the source
 * (the SIMD variant's kernel counts and locates as it merges); at other
 * offsets the count and the span take a second vectorised pass. */
uint64_t precopy__bitmap_merge_scan(struct precopy_bitmap *dst, uint64_t dst_bit, const uint64_t *src,
				    uint64_t nbits, struct precopy__bitmap_scan *sc);

#endif /* PRECOPY_BITMAP_MERGE_SCAN_H */
