/* SPDX-License-Identifier: MIT */
/* vfio_user/vu_priv.h — what the engines use of a vfio-user handle beyond
 * precopy/vfio_user.h (internal, not installed): its DMA mappings, the
 * walk of the migration state machine one arc at a time, and the device's
 * DMA dirtiness as a dirty source (ioctl/dirty_priv.h).
 *
 * Thread safety: as the handle (one thread at a time). */
#ifndef PRECOPY_VFIO_USER_PRIV_H
#define PRECOPY_VFIO_USER_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/vfio_user.h"
#include "precopy/vfio.h"

/* Mapping i of the handle (any order): 0, or -ENOENT past the last. */
int precopy__vu_map(const struct precopy_vfio_user *c, size_t i, uint64_t *iova, uint64_t *size);
/* The -errno that broke the connection, 0 while it holds. */
int precopy__vu_broken(const struct precopy_vfio_user *c);
/* The page size of the handle's DMA_WRITE dirty log. */
uint64_t precopy__vu_dirty_page(const struct precopy_vfio_user *c);

/* One MIG_DATA_READ split in two, for a drain that keeps a request in
 * flight on several handles at once (engine/mover.c). read_send sends a
 * request for up to min(len, msg_bytes) bytes and returns without its
 * reply (0, -EBUSY if a request is in flight, or -errno). read_reap
 * answers the server's commands already waiting on the sockets and, if
 * the reply is there, takes it: the count copied to buf (room for the
 * size asked), 0 at the end of the data / nothing now, -EAGAIN when the
 * reply has not arrived (it never waits for a first byte; a message whose
 * first bytes arrived is read whole, within the idle limit), or -errno.
 * A request left in flight is settled (its reply awaited and dropped) by
 * the handle's next request or serve. poll_fds gives the sockets to poll
 * for POLLIN while a request is in flight: the main socket and, in
 * twin-socket mode, the twin; returns how many (1 or 2). */
int precopy__vu_read_send(struct precopy_vfio_user *c, size_t len);
ssize_t precopy__vu_read_reap(struct precopy_vfio_user *c, void *buf);
int precopy__vu_poll_fds(const struct precopy_vfio_user *c, int fds[2]);

/* Move the device from *state to target one arc at a time
 * (precopy_vfio_fsm_path over mig_flags: the P2P states only where the
 * device has them), each arc a MIG_DEVICE_STATE SET. *state follows the
 * device; *arcs (may be NULL) counts the arcs taken. On a failed arc the
 * state is read back and, unless recover is VFIO_DEVICE_STATE_ERROR (0),
 * the device is moved to recover (best effort, *recovered set to 1 if it
 * got there); returns the first -errno, 0 on success. */
int precopy__vu_move(struct precopy_vfio_user *c, uint32_t *state, uint32_t target, uint64_t mig_flags,
		     uint32_t recover, unsigned *arcs, int *recovered);

/* A failed arc that leaves the device in ERROR (above) is followed by a
 * DEVICE_RESET, the specification's way back to RUNNING, before the
 * recovery path.
 *
 * Abort the device's migration session and bring it to RUNNING: from
 * RESUMING (a stream that must not be loaded, whole or not) and from
 * ERROR by DEVICE_RESET, which the specification and the kernel's uAPI
 * name as the way out of both; a server that keeps its state across the
 * reset (libvfio-user does) is then moved by the arcs (RESUMING -> STOP
 * makes it check what it holds, which may fail). Other states go to
 * RUNNING by the arcs. *state follows the device. 0 or the first -errno
 * (-EIO: still in ERROR after a reset that succeeded). */
int precopy__vu_abort(struct precopy_vfio_user *c, uint32_t *state, uint64_t mig_flags);

/* The device's DMA dirtiness as a dirty source: DMA_LOGGING_START at
 * start (the ranges go unused: servers log every mapping), at each report
 * every DMA mapping that meets a started range read whole (REPORT at the
 * START page size: the shape real servers answer correctly) together with
 * the handle's own log of the pages the server wrote by DMA_WRITE, both
 * merged into the RAM log (pages outside it dropped), DMA_LOGGING_STOP at
 * stop. A doubtful REPORT reply (-EPROTO with the connection intact)
 * counts the mapping all dirty and is not an error; a transport failure
 * marks it all dirty and is returned. NULL with *err: -ENOMEM. */
/* Tests only (the negative control): nonzero makes every report read the
 * logs as usual but merge nothing into the RAM log, as if the device's
 * DMA went unseen. Internal: not exported by the shared library, not in
 * any header a user includes. */
extern int precopy__vu_test_ignore_log;

struct precopy_dirty_source *precopy__vu_dirty_new(const struct precopy_sys *sys, struct precopy_vfio_user *c,
						   int *err);

#endif /* PRECOPY_VFIO_USER_PRIV_H */
