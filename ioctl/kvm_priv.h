/* SPDX-License-Identifier: MIT */
/* ioctl/kvm_priv.h — private layout of struct precopy_kvm_log, shared by
 * kvm_log.c (set-up), kvm_bitmap.c (classic and manual sync) and
 * kvm_ring.c (dirty ring sync). Not installed. */
#ifndef PRECOPY_IOCTL_KVM_PRIV_H
#define PRECOPY_IOCTL_KVM_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "precopy/kvm.h"

struct kvm_slot_state {
	struct precopy_kvm_slot d; /* the caller's description, copied */
	uint64_t npages;
	uint64_t nwords;           /* PRECOPY_BITMAP_WORDS(npages) */
	/* Classic and manual: the buffer KVM_GET_DIRTY_LOG fills (nwords words,
	 * the size KVM copies for this slot on a 64-bit host).
	 * Ring: scratch bits of the pages seen in the current sync. */
	uint64_t *buf;
	uint64_t lo, hi;           /* ring: words [lo, hi) of buf may be non-zero */
};

struct kvm_vcpu_ring {
	int fd;                       /* borrowed vCPU fd, -1 if only a mapping was given */
	struct kvm_dirty_gfn *gfns;   /* the ring */
	bool mapped;                  /* mapped by us: unmap in free */
	uint32_t fetch;               /* next entry to read (free-running) */
	uint32_t taken;               /* entries read in this sync, not handed back yet */
};

struct precopy_kvm_log {
	struct precopy_sys sys;
	int vm_fd;
	struct precopy_kvm_log_config cfg;
	uint32_t ring_cap;            /* capability enabled for the ring */
	uint32_t ring_entries;        /* entries per ring, a power of two */

	struct kvm_slot_state *slots; /* sorted by d.slot */
	size_t nslots, slots_cap;
	size_t last_hit;              /* ring: index of the last slot looked up */

	struct kvm_vcpu_ring *vcpus;
	size_t nvcpus, vcpus_cap;

	bool started;
	uint64_t pending_reset;       /* entries handed back, not yet reset by KVM */
	struct precopy_kvm_log_stats st;
};

/* Per-mode sync bodies (hidden: no PRECOPY_API). Each fills
 * log->st.last_* and returns the count of newly set RAM log bits or -errno. */
int64_t precopy_kvm_priv_sync_bitmap(struct precopy_kvm_log *log);
int64_t precopy_kvm_priv_sync_ring(struct precopy_kvm_log *log);

#endif /* PRECOPY_IOCTL_KVM_PRIV_H */
