/* SPDX-License-Identifier: MIT */
/* precopy/vfio.h — VFIO device features, the migration state machine,
 * device migration sessions, and device dirty tracking (DMA logging and
 * container dirty tracking).
 *
 * Everything here talks to the kernel only through a `struct precopy_sys`
 * (precopy/sys.h), so the same code runs against the real kernel
 * (precopy_sys_real()) or the fake kernel in sim/.
 *
 * Device states are the values of the kernel's enum vfio_device_mig_state
 * (<linux/vfio.h>): ERROR 0, STOP 1, RUNNING 2, STOP_COPY 3, RESUMING 4,
 * RUNNING_P2P 5, PRE_COPY 6, PRE_COPY_P2P 7 (the last two are newer than
 * some installed headers). Migration flags are VFIO_MIGRATION_STOP_COPY
 * (1 << 0), VFIO_MIGRATION_P2P (1 << 1), VFIO_MIGRATION_PRE_COPY (1 << 2).
 *
 * Errors: every function returns 0 or a count >= 0 on success and -errno on
 * failure; errno is never part of the contract.
 *
 * Thread safety: the stateless functions (feature helpers, FSM) may be
 * called from any thread. A handle (struct precopy_vfio_dev,
 * struct precopy_dirty_source) must be used by one thread at a time; distinct
 * handles are independent.
 */
#ifndef PRECOPY_VFIO_H
#define PRECOPY_VFIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "precopy/bitmap.h"
#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device features --------------------------------------------------- */

/* Issue VFIO_DEVICE_FEATURE on device_fd with argsz = header + len.
 * flags: VFIO_DEVICE_FEATURE_GET or _SET (exactly one), optionally with
 * _PROBE, or _PROBE alone. feature: the 16-bit feature index. data/len: the
 * feature payload, copied in before the call and back out after it, also
 * when the call fails (GET and SET both: some SETs return values, e.g.
 * DMA_LOGGING_START's page size, and a failed MIG_DEVICE_STATE SET returns
 * data_fd -1); not copied back for PROBE. May be NULL/0.
 * Returns the ioctl's result (>= 0) or -errno: -EINVAL for a bad flags
 * combination, a feature above 0xffff, data NULL with len > 0, or a payload
 * too large for a u32 argsz (all checked before any syscall); -ENOMEM; or
 * the kernel's error (e.g. -ENOTTY: the device lacks the feature). */
PRECOPY_API int precopy_vfio_feature(const struct precopy_sys *sys, int device_fd, uint32_t flags,
				     uint32_t feature, void *data, size_t len);

/* Read the device's migration flags (VFIO_MIGRATION_*) into *flags.
 * Returns 0; -ENOTTY: the device has no migration support; -EOPNOTSUPP: it
 * reports migration without VFIO_MIGRATION_STOP_COPY (not migratable by this
 * protocol; *flags is still set); -EINVAL for NULL; other kernel -errno. */
PRECOPY_API int precopy_vfio_migration_flags(const struct precopy_sys *sys, int device_fd,
					     uint64_t *flags);

/* 1 if the device supports DMA logging (a PROBE|SET of
 * VFIO_DEVICE_FEATURE_DMA_LOGGING_START succeeds), 0 if not (-ENOTTY from the
 * kernel), other -errno on failure. */
PRECOPY_API int precopy_vfio_dma_logging_supported(const struct precopy_sys *sys, int device_fd);

/* Read the device's estimate of the data that STOP_COPY will produce
 * (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE; valid in any state) into *bytes.
 * Returns 0, -EINVAL (NULL), -ENOTTY (no migration support or a kernel
 * without the feature), other kernel -errno. */
PRECOPY_API int precopy_vfio_stop_copy_size(const struct precopy_sys *sys, int device_fd,
					    uint64_t *bytes);

/* VFIO_MIG_GET_PRECOPY_INFO on a migration data_fd: the device's current
 * estimates of initial (mandatory) and dirty precopy bytes. Only valid while
 * the device is in PRE_COPY or PRE_COPY_P2P (else the kernel says -EINVAL).
 * Either output may be NULL. Returns 0 or -errno (-ENOTTY: not a precopy
 * data fd). */
PRECOPY_API int precopy_vfio_precopy_info(const struct precopy_sys *sys, int data_fd,
					  uint64_t *initial_bytes, uint64_t *dirty_bytes);

/* ---- the migration state machine --------------------------------------- */

/* One step from cur toward target for a device with migration flags
 * mig_flags, as the kernel's vfio_mig_get_next_state() decides it (shortest
 * path; saving-group states PRE_COPY, PRE_COPY_P2P, STOP_COPY never interior;
 * optional states the device lacks are skipped over).
 * Returns 0 and sets *next (cur itself when cur == target), or -EINVAL when
 * target cannot be reached: a state unknown or unsupported by mig_flags,
 * ERROR as cur or target, mig_flags without STOP_COPY, the blocked arcs
 * STOP_COPY -> PRE_COPY / PRE_COPY_P2P, or next NULL. Never loops. */
PRECOPY_API int precopy_vfio_fsm_next(uint32_t cur, uint32_t target, uint64_t mig_flags,
				      uint32_t *next);

/* The whole path from cur to target: writes the states after cur, one per
 * arc, into path[0..max). With path NULL and max 0 it only counts.
 * Returns the number of arcs (0 when cur == target), -EINVAL as
 * precopy_vfio_fsm_next() or for path NULL with max > 0, or -ENOSPC when
 * path holds fewer than the arcs needed (nothing beyond max is written). */
PRECOPY_API int precopy_vfio_fsm_path(uint32_t cur, uint32_t target, uint64_t mig_flags,
				      uint32_t *path, size_t max);

/* 1 if the arc cur -> next opens a new data transfer session (returns a
 * data_fd): RUNNING -> PRE_COPY, RUNNING_P2P -> PRE_COPY_P2P,
 * STOP -> STOP_COPY, STOP -> RESUMING. 0 otherwise. */
PRECOPY_API int precopy_vfio_arc_opens_fd(uint32_t cur, uint32_t next);

/* 1 if the arc cur -> next ends the data transfer session: leaving the
 * saving group (PRE_COPY, PRE_COPY_P2P, STOP_COPY) for a state outside it,
 * or leaving RESUMING. 0 otherwise. */
PRECOPY_API int precopy_vfio_arc_closes_fd(uint32_t cur, uint32_t next);

/* "STOP", "RUNNING", ..., "PRE_COPY_P2P", "ERROR"; "?" for unknown values.
 * Never NULL. */
PRECOPY_API const char *precopy_vfio_state_name(uint32_t state);


/* ---- a device's migration session (ioctl/vfio_mig.c) -------------------- */

/* Opaque per-device handle: the device fd (not owned), its migration flags,
 * the state it is in as far as the handle knows, the data fd of the current
 * data transfer session (owned) and the device's status counters. */
struct precopy_vfio_dev;

struct precopy_vfio_dev_status {
	uint32_t state;	     /* last known state (ERROR when unknown) */
	uint64_t mig_flags;  /* VFIO_MIGRATION_* */
	int data_fd;	     /* current session's fd, -1 if none */
	int last_err;	     /* the last failed arc's -errno, 0 if none */
	uint32_t failed_from, failed_to; /* that arc */
	int recovered;	     /* 1: the last failure ended in the recover state */
	int was_reset;	     /* 1: the last failure ended in VFIO_DEVICE_RESET */
	int reset_err;	     /* the reset's -errno if it failed too, else 0 */
	uint64_t arcs;	     /* arcs completed */
	uint64_t resets;     /* resets issued */
	uint64_t bytes_read, bytes_written; /* through the data fd */
};

/* Create a handle for an open VFIO device fd (the caller keeps ownership of
 * device_fd and closes it after precopy_vfio_dev_free()). Reads the
 * migration flags and the current state. Returns the handle, or NULL and
 * *err (if non-NULL): -EINVAL (sys invalid, fd < 0), -ENOTTY (no migration
 * support), -EOPNOTSUPP (no STOP_COPY), -ENOMEM, or the kernel's -errno. */
PRECOPY_API struct precopy_vfio_dev *precopy_vfio_dev_new(const struct precopy_sys *sys, int device_fd,
							  int *err);

/* Close the session's data fd (if any) and free the handle. NULL is a no-op. */
PRECOPY_API void precopy_vfio_dev_free(struct precopy_vfio_dev *dev);

/* Copy the handle's status into *st. Returns 0 or -EINVAL (NULL). */
PRECOPY_API int precopy_vfio_dev_status(const struct precopy_vfio_dev *dev, struct precopy_vfio_dev_status *st);

/* Read the device's state again (VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
 * GET) into the handle: the VMM may have moved or reset the device without
 * it. If that left the session the handle holds (e.g. STOP_COPY -> STOP),
 * the session's data fd is closed. Returns 0, -EINVAL (NULL) or the
 * kernel's -errno (the handle unchanged). */
PRECOPY_API int precopy_vfio_dev_refresh(struct precopy_vfio_dev *dev);

/* Move the device to `target` one arc at a time (the path of
 * precopy_vfio_fsm_path). Arcs that open a session hand their data fd to the
 * handle; arcs that end it close it.
 * On a failed arc: the device's state is read back; if `recover` is not
 * VFIO_DEVICE_STATE_ERROR the handle walks to it; if that fails too (or the
 * device is in ERROR, or recover is ERROR), it issues VFIO_DEVICE_RESET,
 * which returns the device to RUNNING and ends any session. The status
 * says which happened (recovered / was_reset / reset_err).
 * Returns 0, or: -EINVAL (target unreachable from the current state for
 * these flags, nothing done), -ESTALE (the device handed out a data fd the
 * handle did not expect, e.g. a second one while it holds a session: the
 * device was reset behind the handle; the old fd is closed, the new one
 * kept, the state re-read, no recovery attempted: restart the migration),
 * -EPROTO (an opening arc returned no data fd), or the failed arc's -errno
 * (after recovery or reset). */
PRECOPY_API int precopy_vfio_dev_set_state(struct precopy_vfio_dev *dev, uint32_t target, uint32_t recover);

/* Read state bytes from the session's data fd. Returns the count, 0 at the
 * end of the stream (end of STOP_COPY), -ENOMSG when the device has nothing
 * for now (PRE_COPY, initial and dirty bytes both 0: try again later),
 * -EBADF when there is no session, other -errno from read(). */
PRECOPY_API ssize_t precopy_vfio_dev_read(struct precopy_vfio_dev *dev, void *buf, size_t len);

/* Write state bytes into a RESUMING session. Returns the count written
 * (possibly short), -EBADF (no session), -EINVAL (not RESUMING), or -errno. */
PRECOPY_API ssize_t precopy_vfio_dev_write(struct precopy_vfio_dev *dev, const void *buf, size_t len);

/* VFIO_MIG_GET_PRECOPY_INFO on the session: only in PRE_COPY or
 * PRE_COPY_P2P (-EINVAL otherwise, without a syscall), -EBADF without a
 * session. Outputs may be NULL. */
PRECOPY_API int precopy_vfio_dev_precopy_info(struct precopy_vfio_dev *dev, uint64_t *initial_bytes,
					      uint64_t *dirty_bytes);

/* precopy_vfio_stop_copy_size() on this device. */
PRECOPY_API int precopy_vfio_dev_stop_copy_size(struct precopy_vfio_dev *dev, uint64_t *bytes);

/* End the session: close the data fd (the device state is unchanged).
 * Returns 0, or close()'s -errno (the fd is forgotten either way). */
PRECOPY_API int precopy_vfio_dev_end_session(struct precopy_vfio_dev *dev);

/* ---- dirty sources: device DMA logging (ioctl/vfio_dma_log.c) ---------- */

/* A guest memory range to track, in IOVA (= guest physical) bytes. */
struct precopy_dirty_range {
	uint64_t iova;
	uint64_t length;
};

/* Something that logs the pages a device writes: start on ranges, report
 * into the RAM dirty log, stop. Opaque; created by a constructor below and
 * released with precopy_dirty_source_free(). */
struct precopy_dirty_source;

/* Device DMA logging (VFIO_DEVICE_FEATURE_DMA_LOGGING_*) on device_fd (not
 * owned). max_ranges: how many ranges to hand the device at most (0: 256,
 * what the vfio core takes from one 4 KiB page); more guest ranges are
 * combined by closing the smallest gaps first. buf_words: the bounded
 * bitmap buffer each REPORT chunk goes through (0: 4096 words = 256 Ki
 * pages per chunk). Returns the source or NULL with *err: -EINVAL,
 * -EOPNOTSUPP (the device has no DMA logging), -ENOMEM, kernel -errno. */
PRECOPY_API struct precopy_dirty_source *precopy_vfio_dma_log_new(const struct precopy_sys *sys, int device_fd,
								  uint32_t max_ranges, size_t buf_words,
								  int *err);

/* ---- dirty sources: container dirty tracking (ioctl/vfio_container.c) --- */

/* Type1 container dirty tracking (VFIO_IOMMU_DIRTY_PAGES) on a VFIO
 * container fd set to VFIO_TYPE1v2_IOMMU (not owned), for devices without
 * DMA logging. Reads VFIO_IOMMU_GET_INFO's capability chain for
 * VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: its page sizes (the kernel logs at
 * the smallest one, which becomes the source's page size) and its largest
 * bitmap, to which every GET_BITMAP is bounded.
 * What the kernel reports: type1 cannot see device writes. While any group
 * in the container is not limited to pinned pages (any ordinary IOMMU-
 * backed device), every GET_BITMAP marks every mapped page of the range
 * dirty; only when every device pins what it writes (mediated devices) are
 * the reports exact.
 * A GET_BITMAP must cover whole VFIO_IOMMU_MAP_DMA mappings (the kernel
 * refuses a range that cuts one with -EINVAL): started ranges must start
 * and end on mapping boundaries, and so must every chunk. buf_words: 0
 * sizes the buffer at start to the largest range (bounded by the kernel's
 * largest bitmap), so each range is one GET_BITMAP; a non-zero buf_words
 * bounds the chunks to buf_words * 64 pages, which a real kernel only
 * accepts where chunk edges fall on mapping boundaries.
 * Returns the source, or NULL with *err: -EINVAL (bad sys, fd < 0, buf_words
 * absurd), -EOPNOTSUPP (no migration capability: a kernel without type1
 * dirty tracking), -EPROTO (a capability chain or capability that does not
 * parse: page sizes 0, a bitmap limit below 8 bytes, an offset outside the
 * info or not moving forward), -ENOMEM, or GET_INFO's -errno. */
PRECOPY_API struct precopy_dirty_source *precopy_vfio_type1_dirty_new(const struct precopy_sys *sys,
								      int container_fd, size_t buf_words,
								      int *err);

/* iommufd reports without clearing (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR):
 * each report returns everything dirtied since start; for a last read
 * before stop, where re-arming is wasted work. */
#define PRECOPY_IOMMUFD_DIRTY_NO_CLEAR (1u << 0)

/* iommufd dirty tracking on a hardware page table (IOMMU_HWPT_SET_DIRTY_TRACKING,
 * IOMMU_HWPT_GET_DIRTY_BITMAP; Linux 6.7) for devices without DMA logging:
 * the IOMMU's own dirty bits, so reports are exact at the IOMMU's page
 * granularity. iommufd (not owned) is the /dev/iommu fd; hwpt_id a HWPT
 * allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING. flags:
 * PRECOPY_IOMMUFD_DIRTY_*. Nothing is sent to the kernel here: start()
 * enables tracking (the kernel says -ENOENT for an unknown hwpt,
 * -EOPNOTSUPP for one without dirty tracking). The page size is start's
 * page_size_hint, which must be a multiple of the IOAS's IOVA alignment
 * (else the kernel's -EINVAL at report). Every started range must be fully
 * mapped in the IOAS. buf_words: as precopy_vfio_dma_log_new().
 * Returns the source or NULL with *err: -EINVAL (bad sys, fd < 0, unknown
 * flag, buf_words absurd) or -ENOMEM. */
PRECOPY_API struct precopy_dirty_source *precopy_iommufd_dirty_new(const struct precopy_sys *sys, int iommufd,
								   uint32_t hwpt_id, uint32_t flags,
								   size_t buf_words, int *err);

/* ---- dirty sources: the common calls ------------------------------------ */

/* Start logging ranges[0..n) (disjoint, each non-empty and aligned to
 * page_size_hint, a power of two >= 4096). DMA logging: if the device
 * refuses the count (-E2BIG) the ranges are combined further and START
 * retried. Type1: the hint is not used (the kernel's page size is); ranges
 * must be aligned to that page size (-EINVAL). iommufd: the hint is the
 * page size of the reports. Returns 0, -EINVAL (bad ranges or hint,
 * overlapping ranges), -EBUSY (already started through this source),
 * -ENOMEM, or the kernel's -errno. */
PRECOPY_API int precopy_dirty_source_start(struct precopy_dirty_source *src,
					   const struct precopy_dirty_range *ranges, size_t n,
					   uint64_t page_size_hint);

/* The page size of the log: the device's choice (DMA logging), the
 * kernel's (type1) or the hint (iommufd); 0 before start. */
PRECOPY_API uint64_t precopy_dirty_source_page_size(const struct precopy_dirty_source *src);

/* Ranges the device was given after combining (DMA logging), or the
 * started ranges (containers); 0 before start. */
PRECOPY_API uint32_t precopy_dirty_source_device_ranges(const struct precopy_dirty_source *src);

/* Read and clear the device's log for every started range and OR it into
 * the RAM dirty log `ram` (bit 0 = the page at ram_base, pages of
 * ram_page_size bytes), chunk by chunk through the source's buffer, with
 * page-size conversion. A range whose REPORT fails is marked dirty in full
 * (from the failing chunk on) and the first such error is returned after
 * the remaining ranges are reported. *newly (optional): bits newly set.
 * Returns 0, -EINVAL (not started, bad arguments), -ERANGE (a range is
 * outside ram), or the REPORT's -errno. */
PRECOPY_API int precopy_dirty_source_report(struct precopy_dirty_source *src, struct precopy_bitmap *ram,
					    uint64_t ram_base, uint64_t ram_page_size, uint64_t *newly);

/* Stop logging. Returns 0 (also when not started) or the kernel's -errno.
 * A failed stop leaves the source started, since the device may still be
 * logging (and e.g. refuse the next start): call stop again to retry;
 * reports keep working meanwhile. */
PRECOPY_API int precopy_dirty_source_stop(struct precopy_dirty_source *src);

/* Stop if started (once more if an earlier stop failed; a failure here
 * is not reported), then free. NULL is a no-op. */
PRECOPY_API void precopy_dirty_source_free(struct precopy_dirty_source *src);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_VFIO_H */
