/* SPDX-License-Identifier: MIT */
/* precopy/kvm.h — guest RAM dirty logs from KVM, merged into the RAM dirty log.
 *
 * The library does not own the VM: the VMM created the VM, its memory slots
 * and its vCPUs, and keeps every fd. A `struct precopy_kvm_log` is told the
 * VM fd, the slots to track, and (dirty ring only) the vCPU fds; each
 * precopy_kvm_log_sync() asks KVM which pages were written since the last
 * one and ORs them into the caller's RAM dirty log (a struct precopy_bitmap,
 * one bit per 4 KiB guest page) through the bitmap engine. Every slot says
 * where its first page lands in that log (any bit, no alignment needed).
 *
 * Three modes, one per KVM interface:
 *
 *  PRECOPY_KVM_LOG_CLASSIC  KVM_GET_DIRTY_LOG per slot. The kernel returns
 *      the slot's bitmap, clears it and write-protects the reported pages in
 *      one step.
 *  PRECOPY_KVM_LOG_MANUAL   KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2. GET returns
 *      the bitmap without clearing it; the library then issues
 *      KVM_CLEAR_DIRTY_LOG for exactly the pages it harvested (never more),
 *      in chunks that start on a 64-page boundary and span a multiple of 64
 *      pages (or end at the end of the slot), as the kernel requires. With
 *      PRECOPY_KVM_INITIALLY_SET, turning logging on marks every page of the
 *      slot dirty instead of write-protecting it up front, so the first sync
 *      reports the whole slot.
 *  PRECOPY_KVM_LOG_RING     the per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
 *      or KVM_CAP_DIRTY_LOG_RING on x86 where stores are totally ordered).
 *      Each ring is the kvm_dirty_gfn array mapped from the vCPU fd at page
 *      KVM_DIRTY_LOG_PAGE_OFFSET. An entry is read after an acquire load of
 *      its flags shows KVM_DIRTY_GFN_F_DIRTY and is handed back with a
 *      release store of KVM_DIRTY_GFN_F_RESET; repeated pages within one sync
 *      are counted once; then KVM_RESET_DIRTY_RINGS re-arms the pages, and
 *      the count it returns must equal the entries handed back.
 *
 * The mode is fixed when the log is created, because creating it enables
 * the matching capability on the VM (KVM_ENABLE_CAP). The dirty ring must be
 * enabled before the VM has any vCPU: create the log first, then the vCPUs,
 * then add each vCPU. If vCPUs already exist, the kernel's error (-EINVAL)
 * is returned unchanged.
 *
 * Enabling logging on a slot means re-issuing KVM_SET_USER_MEMORY_REGION
 * with KVM_MEM_LOG_DIRTY_PAGES added to the slot's flags:
 * precopy_kvm_log_start() does that for every registered slot from the
 * description it was given, and precopy_kvm_log_stop() removes the flag
 * again. A VMM may instead set the flag itself and never call them; the
 * description must then still match the region KVM has (same slot, address,
 * size), because GET_DIRTY_LOG fills a bitmap sized by KVM's slot, and the
 * library sizes its buffer from the description. start() cannot move or
 * resize a slot by mistake: KVM refuses a size change with -EINVAL.
 *
 * When a sync returns, every page written before the sync began is in the
 * RAM log, or was already there; the VMM must read a page's contents after
 * the sync that reported it, never before (a page may be written again
 * while the sync runs, and that write is reported by this sync or the next).
 * In ring mode, a CPU with a hardware dirty buffer (Intel PML) hands entries
 * to the ring only when the vCPU leaves guest mode; for a complete final
 * harvest (at switchover) the VMM must first make every vCPU exit KVM_RUN.
 * When KVM_RUN returns KVM_EXIT_DIRTY_RING_FULL, the VMM must sync before it
 * re-enters that vCPU.
 *
 * Errors common to every call: -EINVAL for a NULL handle or argument; a
 * negative value from the sys seam is the kernel's -errno, returned as is.
 *
 * Thread safety: one struct precopy_kvm_log is used by one thread at a time
 * (the caller serializes sync, add, start, stop and stats on it). vCPUs keep
 * running in other threads while it syncs; that is the point. The RAM log
 * bitmaps are written by sync with plain stores: nothing else may write the
 * covered bits during a sync. Distinct logs are independent.
 */
#ifndef PRECOPY_KVM_H
#define PRECOPY_KVM_H

#include <stdint.h>

#include "precopy/bitmap.h"
#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The guest page size KVM logs at on every architecture this supports (one
 * bit or one ring entry per 4 KiB page). */
#define PRECOPY_KVM_PAGE_SIZE 4096u

enum precopy_kvm_mode {
	PRECOPY_KVM_LOG_CLASSIC = 1,
	PRECOPY_KVM_LOG_MANUAL = 2,
	PRECOPY_KVM_LOG_RING = 3,
};

/* precopy_kvm_log_config.flags */
#define PRECOPY_KVM_INITIALLY_SET (1u << 0) /* manual mode: KVM_DIRTY_LOG_INITIALLY_SET */

/* Default ring size in bytes (4096 entries), lowered to the kernel's maximum. */
#define PRECOPY_KVM_RING_DEFAULT_BYTES (64u * 1024)
/* Default and bounds of the KVM_CLEAR_DIRTY_LOG chunk, in pages. */
#define PRECOPY_KVM_CLEAR_DEFAULT_PAGES (1u << 18) /* 1 GiB of 4 KiB pages */
#define PRECOPY_KVM_CLEAR_MAX_PAGES (1u << 31)

#define PRECOPY_KVM_CONFIG_VERSION 1

struct precopy_kvm_log_config {
	uint32_t version;    /* PRECOPY_KVM_CONFIG_VERSION */
	uint32_t mode;       /* enum precopy_kvm_mode */
	uint32_t flags;      /* PRECOPY_KVM_* flags valid for the mode */
	/* Ring mode: bytes per vCPU ring, a power of two >= 4096; 0 picks
	 * PRECOPY_KVM_RING_DEFAULT_BYTES (or the kernel's maximum if lower).
	 * Must be 0 in the other modes. */
	uint32_t ring_bytes;
	/* Manual mode: at most this many pages per KVM_CLEAR_DIRTY_LOG, a
	 * multiple of 64 in [64, PRECOPY_KVM_CLEAR_MAX_PAGES]; 0 picks
	 * PRECOPY_KVM_CLEAR_DEFAULT_PAGES. Must be 0 in the other modes. */
	uint64_t clear_chunk_pages;
};

/* One KVM memory slot, as the VMM registered it with
 * KVM_SET_USER_MEMORY_REGION, plus where its pages go in the RAM log. */
struct precopy_kvm_slot {
	uint32_t slot;             /* KVM's slot field: (address space << 16) | id */
	uint32_t flags;            /* the region's flags: 0 or KVM_MEM_READONLY;
				    * KVM_MEM_LOG_DIRTY_PAGES is ignored here */
	uint64_t guest_phys_addr;  /* 4 KiB aligned */
	uint64_t memory_size;      /* bytes, a non-zero multiple of 4 KiB */
	uint64_t userspace_addr;   /* the VMM's mapping, re-issued by start/stop */
	struct precopy_bitmap *log; /* the RAM dirty log (caller-owned) */
	uint64_t log_bit;          /* the bit of the slot's first page in log */
};

/* What the last sync saw, and running totals. */
struct precopy_kvm_log_stats {
	uint32_t mode;           /* enum precopy_kvm_mode */
	uint32_t ring_cap;       /* ring mode: KVM_CAP_DIRTY_LOG_RING_ACQ_REL or
				  * KVM_CAP_DIRTY_LOG_RING, whichever was enabled */
	uint32_t ring_bytes;     /* ring mode: bytes per ring */
	uint32_t nslots;
	uint32_t nvcpus;
	uint64_t syncs;          /* syncs that returned >= 0 */
	/* last successful sync */
	uint64_t last_pages;     /* distinct pages KVM reported */
	uint64_t last_new;       /* of those, bits newly set in the RAM log */
	uint64_t last_ioctls;    /* GET, CLEAR and RESET ioctls issued */
	uint64_t last_entries;   /* ring entries handed back */
	uint64_t last_repeats;   /* ring entries repeating a page already seen */
	uint64_t last_foreign;   /* ring entries for a slot or offset not registered */
	uint64_t last_reset;     /* count KVM_RESET_DIRTY_RINGS returned */
	/* totals over all successful syncs */
	uint64_t total_pages;
	uint64_t total_new;
	uint64_t total_entries;
};

/* Is `mode` available on this VM? Asks KVM_CHECK_EXTENSION on vm_fd.
 * Returns a positive value if it is: 1 for classic; for manual, the flags
 * KVM accepts for KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (bit 1 set means
 * PRECOPY_KVM_INITIALLY_SET works); for ring, the largest ring in bytes.
 * Errors: -EOPNOTSUPP (the kernel lacks it), -EINVAL (bad sys or mode),
 * -EBADF (vm_fd < 0), or the ioctl's -errno. */
PRECOPY_API int64_t precopy_kvm_log_probe(const struct precopy_sys *sys, int vm_fd,
					  enum precopy_kvm_mode mode);

/* Create a log for the VM behind vm_fd and enable its mode on the VM:
 * manual mode issues KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), ring
 * mode KVM_ENABLE_CAP with the ring size (before any vCPU exists). Classic
 * mode changes nothing in the VM. `sys` and the config are copied; vm_fd is
 * borrowed and must stay open until precopy_kvm_log_free().
 * Returns the log, or NULL with *err (if err is non-NULL) set to:
 *   -EINVAL      bad sys, cfg NULL, unknown version, mode or flag, a flag or
 *                size given for a mode that does not use it, ring_bytes not
 *                a power of two >= 4096, clear_chunk_pages not a multiple of
 *                64 within bounds; or KVM's -EINVAL (ring: vCPUs exist
 *                already, or a ring size KVM rejects)
 *   -EBADF       vm_fd < 0
 *   -EOPNOTSUPP  KVM lacks the mode, or PRECOPY_KVM_INITIALLY_SET
 *   -E2BIG       ring_bytes above the kernel's maximum
 *   -ENOMEM
 *   or the -errno of KVM_CHECK_EXTENSION / KVM_ENABLE_CAP.
 * Free with precopy_kvm_log_free(). */
PRECOPY_API struct precopy_kvm_log *precopy_kvm_log_new(const struct precopy_sys *sys, int vm_fd,
							 const struct precopy_kvm_log_config *cfg,
							 int *err);

/* Unmap the rings the library mapped and free the log. Logging stays
 * enabled in KVM (call precopy_kvm_log_stop() first to turn it off); no fd
 * is closed. NULL is a no-op. */
PRECOPY_API void precopy_kvm_log_free(struct precopy_kvm_log *log);

/* Register a slot (the struct is copied; the RAM log it names is borrowed
 * and must outlive the log). Nothing is sent to KVM.
 * Returns 0, or:
 *   -EINVAL  s or s->log NULL, memory_size 0 or not a multiple of 4 KiB,
 *            guest_phys_addr or userspace_addr not 4 KiB aligned, a flag
 *            other than KVM_MEM_READONLY / KVM_MEM_LOG_DIRTY_PAGES
 *   -ERANGE  the slot's pages do not fit in s->log from s->log_bit, or
 *            guest_phys_addr + memory_size overflows
 *   -EEXIST  a slot with this number is registered already
 *   -EBUSY   logging was started (stop it to change the slot set)
 *   -ENOMEM */
PRECOPY_API int precopy_kvm_log_add_slot(struct precopy_kvm_log *log, const struct precopy_kvm_slot *s);

/* Ring mode: add a vCPU's ring. If `ring` is NULL the library maps it from
 * vcpu_fd (ring_bytes at page KVM_DIRTY_LOG_PAGE_OFFSET, shared, read-write)
 * and unmaps it in precopy_kvm_log_free(); otherwise `ring` is the VMM's own
 * mapping of that region, borrowed. The vCPU fd is borrowed.
 * Returns 0, or:
 *   -EINVAL  not in ring mode, or vcpu_fd < 0 with ring NULL
 *   -EEXIST  this vcpu_fd (or this ring mapping) was added already
 *   -ENOMEM
 *   or the mmap's -errno (e.g. -EBADF for a closed fd, -ENODEV for an fd
 *   that is not a vCPU, such as the VM fd). */
PRECOPY_API int precopy_kvm_log_add_vcpu(struct precopy_kvm_log *log, int vcpu_fd, void *ring);

/* Turn logging on for every registered slot by re-issuing
 * KVM_SET_USER_MEMORY_REGION with KVM_MEM_LOG_DIRTY_PAGES added. If one slot
 * fails, those already switched are switched back (best effort) and the
 * kernel's -errno is returned. Returns 0, -EALREADY if started, -ENOENT if
 * no slot is registered, or the ioctl's -errno. */
PRECOPY_API int precopy_kvm_log_start(struct precopy_kvm_log *log);

/* Turn logging off again for every registered slot (flags as described).
 * Pages dirtied since the last sync are lost with the kernel's log: sync
 * first. Every slot is attempted; the first error is returned. Returns 0,
 * -EALREADY if not started, or the ioctl's -errno. */
PRECOPY_API int precopy_kvm_log_stop(struct precopy_kvm_log *log);

/* Harvest what KVM logged since the last sync and merge it into the RAM
 * log of each slot. Returns the number of RAM log bits newly set (pages
 * already set there are not counted again), or -errno. On error nothing is
 * lost: what was harvested has been merged, and what was not is still in
 * the kernel (classic and manual modes leave a slot's log in the kernel
 * until it is merged; ring entries are handed back only after their merge;
 * a failed KVM_CLEAR_DIRTY_LOG or KVM_RESET_DIRTY_RINGS only means pages may
 * be reported again). Errors:
 *   -ERANGE  a slot no longer fits in its RAM log (the caller changed the
 *            bitmap after add_slot); checked before any ioctl
 *   -ENOENT  (classic, manual) KVM has no dirty log for a slot: logging is
 *            not on, or the slot does not exist
 *   -EPROTO  (ring) KVM_RESET_DIRTY_RINGS reset a different number of
 *            entries than were handed back: someone else is consuming the
 *            rings. The harvest was merged; the pending count is dropped.
 *   or an ioctl's -errno. */
PRECOPY_API int64_t precopy_kvm_log_sync(struct precopy_kvm_log *log);

/* Copy the statistics into *out. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_kvm_log_stats(const struct precopy_kvm_log *log, struct precopy_kvm_log_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_KVM_H */
