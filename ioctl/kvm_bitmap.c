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
 * the configured chunk. */
#include <errno.h>
#include <string.h>

#include <linux/kvm.h>

#include "precopy/kvm.h"
#include "kvm_priv.h"
#include "sys_retry.h"

/* Issue KVM_CLEAR_DIRTY_LOG for the set bits of s->buf. Returns the count
 * of ioctls issued or -errno. */
static int64_t clear_reported(struct precopy_kvm_log *log, struct kvm_slot_state *s)
{
	const uint64_t win = log->cfg.clear_chunk_pages / 64; /* words per window */
	int64_t ioctls = 0;

	for (uint64_t w0 = 0; w0 < s->nwords; w0 += win) {
		uint64_t end = w0 + win < s->nwords ? w0 + win : s->nwords;
		uint64_t first = end, last = 0;

		for (uint64_t w = w0; w < end; w++) {
			if (s->buf[w]) {
				if (first == end)
					first = w;
				last = w;
			}
		}
		if (first == end)
			continue;

		uint64_t first_page = first * 64;
		uint64_t stop = (last + 1) * 64 < s->npages ? (last + 1) * 64 : s->npages;
		struct kvm_clear_dirty_log c = {
			.slot = s->d.slot,
			.num_pages = (uint32_t)(stop - first_page),
			.first_page = first_page,
			.dirty_bitmap = &s->buf[first],
		};
		int r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);
		if (r < 0)
			return r;
		ioctls++;
	}
	return ioctls;
}

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(w[i]);
	return c;
}

int64_t precopy_kvm_priv_sync_bitmap(struct precopy_kvm_log *log)
{
	const bool manual = log->cfg.mode == PRECOPY_KVM_LOG_MANUAL;
	int64_t newly = 0;

	for (size_t i = 0; i < log->nslots; i++) {
		struct kvm_slot_state *s = &log->slots[i];
		struct kvm_dirty_log g;
		int64_t n;
		int r;

		memset(&g, 0, sizeof(g));
		g.slot = s->d.slot;
		g.dirty_bitmap = s->buf;
		r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_GET_DIRTY_LOG, &g);
		if (r < 0)
			return r;
		log->st.last_ioctls++;
		/* KVM never sets bits past the slot's end; make sure of it
		 * anyway, so they cannot reach CLEAR or the count. */
		if (s->npages % 64)
			s->buf[s->nwords - 1] &= (1ull << (s->npages % 64)) - 1;
		uint64_t pages = popcount_words(s->buf, s->nwords);
		if (!pages)
			continue;
		n = precopy_bitmap_merge(s->d.log, s->d.log_bit, s->buf, s->npages);
		if (n < 0)
			return n; /* bounds were checked before the GET: cannot happen */
		newly += n;
		log->st.last_pages += pages;
		if (manual) {
			int64_t c = clear_reported(log, s);
			if (c < 0)
				return c;
			log->st.last_ioctls += (uint64_t)c;
		}
	}
	return newly;
}
