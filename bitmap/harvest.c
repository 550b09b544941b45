/* SPDX-License-Identifier: MIT */
/* Snapshot-and-clear of a bitmap that other threads keep setting bits in. */
#include <errno.h>

#include "kernels.h"

PRECOPY_API int64_t precopy_bitmap_harvest(struct precopy_bitmap *live, struct precopy_bitmap *snap)
{
	uint64_t nw, cnt = 0;

	if (!live || !snap || !live->words || !snap->words || live->nbits != snap->nbits ||
	    live == snap)
		return -EINVAL;
	nw = PRECOPY_BITMAP_WORDS(live->nbits);
	for (uint64_t i = 0; i < nw; i++) {
		/* A relaxed look first: a word that reads zero needs no atomic
		 * exchange (a bit set after this look stays in `live` for the
		 * next harvest), which keeps sparse harvests at read speed. */
		uint64_t v = __atomic_load_n(&live->words[i], __ATOMIC_RELAXED);

		if (!v)
			continue;
		/* acquire pairs with the setters' release: whatever they wrote
		 * before setting the bit is visible to whoever reads the snapshot */
		v = __atomic_exchange_n(&live->words[i], 0, __ATOMIC_ACQ_REL);
		if (i == nw - 1 && (live->nbits & 63)) /* tail bits are not pages */
			v &= low_mask(live->nbits & 63);
		cnt += or_word(&snap->words[i], v);
	}
	return (int64_t)cnt;
}
