/* SPDX-License-Identifier: MIT */
/* KVM dirty log, ring mode: harvest every vCPU's kvm_dirty_gfn ring, merge
 * the pages into the RAM log, hand the entries back, reset the rings.
 *
 * The protocol (kernel uAPI, Documentation/virt/kvm/api.rst, "dirty ring"):
 * KVM fills an entry's slot and offset, then publishes it by setting
 * KVM_DIRTY_GFN_F_DIRTY in flags with a release store. The reader
 *   1. loads flags with acquire order; if DIRTY is not set, the ring holds
 *      nothing more for now; otherwise reads slot and offset;
 *   2. after using them, stores KVM_DIRTY_GFN_F_RESET with release order;
 *   3. calls KVM_RESET_DIRTY_RINGS, which re-protects the pages of every
 *      entry marked RESET, frees those entries and returns how many it reset.
 *
 * Order here: read every ring (step 1) into per-slot scratch bits, merge the
 * scratch into the RAM log, and only then hand the entries back (step 2), so
 * a failure before the merge leaves them in the ring for the next sync. A
 * page that appears twice in one sync (in two rings, or twice in one) is
 * counted once. Entries naming a slot that was not registered, or an offset
 * past a registered slot's end, cannot be merged anywhere; they are counted
 * in last_foreign and handed back like the rest, since keeping them would
 * only fill the ring and stall the vCPU. */
#include <errno.h>
#include <string.h>

#include <linux/kvm.h>

#include "precopy/kvm.h"
#include "kvm_priv.h"
#include "sys_retry.h"

static struct kvm_slot_state *find_slot(struct precopy_kvm_log *log, uint32_t slot)
{
	size_t lo = 0, hi = log->nslots;

	/* Consecutive entries usually name the same slot. */
	if (log->last_hit < log->nslots && log->slots[log->last_hit].d.slot == slot)
		return &log->slots[log->last_hit];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (log->slots[mid].d.slot < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < log->nslots && log->slots[lo].d.slot == slot) {
		log->last_hit = lo;
		return &log->slots[lo];
	}
	return NULL;
}

/* Step 1 for one ring: read the published entries from v->fetch on, at most
 * one ring's worth, into the slots' scratch bits. Sets v->taken. */
static void read_ring(struct precopy_kvm_log *log, struct kvm_vcpu_ring *v)
{
	const uint32_t mask = log->ring_entries - 1;
	uint32_t n = 0;

	while (n < log->ring_entries) {
		struct kvm_dirty_gfn *e = &v->gfns[(v->fetch + n) & mask];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		uint32_t slot = e->slot;
		uint64_t off = e->offset;
		struct kvm_slot_state *s = find_slot(log, slot);

		n++;
		if (!s || off >= s->npages) {
			log->st.last_foreign++;
			continue;
		}
		uint64_t w = off / 64, bit = 1ull << (off % 64);
		if (s->buf[w] & bit) {
			log->st.last_repeats++;
			continue;
		}
		if (s->lo >= s->hi) {
			s->lo = w;
			s->hi = w + 1;
		} else if (w < s->lo) {
			s->lo = w;
		} else if (w >= s->hi) {
			s->hi = w + 1;
		}
		s->buf[w] |= bit;
		log->st.last_pages++;
	}
	v->taken = n;
}

/* Step 2 for one ring. */
static void hand_back(struct precopy_kvm_log *log, struct kvm_vcpu_ring *v)
{
	const uint32_t mask = log->ring_entries - 1;

	for (uint32_t i = 0; i < v->taken; i++)
		__atomic_store_n(&v->gfns[(v->fetch + i) & mask].flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
	v->fetch += v->taken;
	v->taken = 0;
}

/* Merge the scratch bits of every slot into the RAM log and zero them.
 * Returns the count of newly set bits or -errno (the scratch is zeroed
 * either way; the entries are still in the rings then). */
static int64_t merge_scratch(struct precopy_kvm_log *log)
{
	int64_t newly = 0, err = 0;

	for (size_t i = 0; i < log->nslots; i++) {
		struct kvm_slot_state *s = &log->slots[i];
		if (s->lo >= s->hi)
			continue;
		uint64_t first = s->lo * 64;
		uint64_t stop = s->hi * 64 < s->npages ? s->hi * 64 : s->npages;
		int64_t n = err ? 0
				: precopy_bitmap_merge(s->d.log, s->d.log_bit + first, &s->buf[s->lo],
						       stop - first);
		if (n < 0)
			err = n;
		else
			newly += n;
		memset(&s->buf[s->lo], 0, (s->hi - s->lo) * sizeof(uint64_t));
		s->lo = s->hi = 0;
	}
	return err ? err : newly;
}

int64_t precopy_kvm_priv_sync_ring(struct precopy_kvm_log *log)
{
	int64_t newly;
	uint64_t taken = 0;
	int r;

	for (size_t i = 0; i < log->nvcpus; i++) {
		read_ring(log, &log->vcpus[i]);
		taken += log->vcpus[i].taken;
	}
	newly = merge_scratch(log);
	if (newly < 0) {
		for (size_t i = 0; i < log->nvcpus; i++)
			log->vcpus[i].taken = 0;
		return newly;
	}
	for (size_t i = 0; i < log->nvcpus; i++)
		hand_back(log, &log->vcpus[i]);
	log->st.last_entries = taken;
	log->pending_reset += taken;
	if (!log->pending_reset)
		return newly;

	r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_RESET_DIRTY_RINGS, NULL);
	log->st.last_ioctls++;
	if (r < 0)
		return r; /* entries stay marked; the next sync resets them */
	log->st.last_reset = (uint64_t)r;
	if ((uint64_t)r != log->pending_reset) {
		log->pending_reset = 0;
		return -EPROTO;
	}
	log->pending_reset = 0;
	return newly;
}
