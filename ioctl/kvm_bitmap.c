/* SPDX-License-Identifier: MIT */
/* KVM dirty log, bitmap modes: KVM_GET_DIRTY_LOG (classic), and
 * KVM_GET_DIRTY_LOG followed by KVM_CLEAR_DIRTY_LOG (manual protect).
 *
 * Per slot: GET fills the slot's buffer; the buffer is merged into the RAM
 * log through the bitmap engine; in manual mode the very same buffer is then
 * handed to CLEAR, so only the pages that were reported (and merged) are
 * cleared and write-protected again: a page first written after the GET is
 * left set in the kernel and reported next time.
 *
 * CLEAR rules (kernel uAPI): first_page is a multiple of 64, and num_pages is
 * a multiple of 64 unless the range ends at the slot's last page; num_pages
 * is a u32. Each call here covers, within one window of clear_chunk_pages
 * pages, the span from the first to the last non-zero 64-bit word of the
 * buffer, so all-clean stretches cost no ioctl and a window never exceeds
 * the configured chunk.
 *
 * The buffer is read once: the merge kernel of the SIMD variant in use
 * counts the reported pages and finds the span as it merges
 * (bitmap/merge_scan.h), a window at a time in manual mode, each window
 * cleared right after its merge. */
#include <errno.h>
#include <string.h>

#include <linux/kvm.h>

#include "precopy/kvm.h"
#include "../bitmap/merge_scan.h"
#include "kvm_priv.h"
#include "sys_retry.h"

/* KVM_CLEAR_DIRTY_LOG for words [first, last] of s->buf (a span the
 * merge found non-zero). Returns 0 or -errno. */
static int clear_span(struct precopy_kvm_log *log, struct kvm_slot_state *s, uint64_t first, uint64_t last)
{
	uint64_t first_page = first * 64;
	uint64_t stop = (last + 1) * 64 < s->npages ? (last + 1) * 64 : s->npages;
	struct kvm_clear_dirty_log c = {
		.slot = s->d.slot,
		.num_pages = (uint32_t)(stop - first_page),
		.first_page = first_page,
		.dirty_bitmap = &s->buf[first],
	};
	int r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);

	return r < 0 ? r : 0;
}

int64_t precopy_kvm_priv_sync_bitmap(struct precopy_kvm_log *log)
{
	const bool manual = log->cfg.mode == PRECOPY_KVM_LOG_MANUAL;
	int64_t newly = 0;

	for (size_t i = 0; i < log->nslots; i++) {
		struct kvm_slot_state *s = &log->slots[i];
		/* classic: the whole slot at once; manual: one clear window */
		const uint64_t win = manual ? log->cfg.clear_chunk_pages / 64 : s->nwords;
		struct precopy__bitmap_scan sc;
		struct kvm_dirty_log g;
		int r;

		memset(&g, 0, sizeof(g));
		g.slot = s->d.slot;
		g.dirty_bitmap = s->buf;
		r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_GET_DIRTY_LOG, &g);
		if (r < 0)
			return r;
		log->st.last_ioctls++;
		/* KVM never sets bits past the slot's end; make sure of it
		 * anyway, so they cannot reach CLEAR. */
		if (s->npages % 64)
			s->buf[s->nwords - 1] &= (1ull << (s->npages % 64)) - 1;
		/* One pass over the buffer per window: merge, count the
		 * reported pages and find the span to clear; then CLEAR the
		 * window before the next is merged. Bounds were checked
		 * before the GET. */
		for (uint64_t w0 = 0; w0 < s->nwords; w0 += win) {
			uint64_t nw = s->nwords - w0 < win ? s->nwords - w0 : win;
			uint64_t nbits = w0 + nw < s->nwords ? nw * 64 : s->npages - w0 * 64;

			newly += (int64_t)precopy__bitmap_merge_scan(s->d.log, s->d.log_bit + w0 * 64, s->buf + w0,
								     nbits, &sc);
			log->st.last_pages += sc.bits;
			if (!manual || !sc.bits)
				continue;
			r = clear_span(log, s, w0 + sc.first, w0 + sc.last);
			if (r < 0)
				return r;
			log->st.last_ioctls++;
		}
	}
	return newly;
}
