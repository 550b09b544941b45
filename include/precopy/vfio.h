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

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_VFIO_H */
