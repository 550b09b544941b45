/* SPDX-License-Identifier: MIT */
/* precopy/backend.h — fd-based back-end state transfer.
 *
 * The model of vhost-user's SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE: a
 * device kind whose opaque state moves only while the back-end is stopped.
 * The front-end (this library, in the VMM) creates a pipe, hands one end to
 * the back-end together with a direction (SAVE: the back-end writes its whole
 * state into it; LOAD: it reads the state from it) and a phase (only
 * STOPPED exists), and keeps the other end, which the engines read (source)
 * or write (destination) as a device's state (the back-ends of
 * precopy_engine_config and precopy_dest_config). When the engine is done
 * with the device, finishing the transfer
 * closes the front-end's end (on LOAD this is the back-end's end of file) and
 * asks the back-end whether it succeeded.
 *
 * The back-end itself is reached through a versioned ops table: a real
 * vhost-user connection in a VMM, or the fake back-end of the simulator
 * (precopy/fake.h, "fd-based back-end model").
 *
 * Errors: 0 / fd >= 0 on success, -errno on failure:
 *   -EINVAL   NULL, unknown direction or phase, bad pipe fds, bad ops table
 *   -EBUSY    the back-end's queues are running (state moves only stopped)
 *   -EALREADY a transfer was already started on this object
 *   -ENOENT   finish without a started transfer
 *   -ENOMEM   allocation failed
 *   others    whatever the back-end's ops return
 *
 * Thread safety: one thread at a time per transfer object. The ops may be
 * called from that thread only.
 */
#ifndef PRECOPY_BACKEND_H
#define PRECOPY_BACKEND_H

#include <stdint.h>

#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values as in vhost-user's transfer direction and phase. */
enum precopy_backend_dir {
	PRECOPY_BACKEND_SAVE = 0, /* back-end writes its state into the fd */
	PRECOPY_BACKEND_LOAD = 1, /* back-end reads its state from the fd */
};

enum precopy_backend_phase {
	PRECOPY_BACKEND_PHASE_STOPPED = 0, /* the only phase: queues stopped */
};

#define PRECOPY_BACKEND_OPS_VERSION 1

struct precopy_backend_ops {
	uint32_t version; /* PRECOPY_BACKEND_OPS_VERSION */
	/* 1 if any queue of the back-end is running, 0 if all are stopped,
	 * or -errno. Required. */
	int (*queues_running)(void *ctx);
	/* Hands fd to the back-end for a transfer in (dir, phase). Ownership of
	 * fd passes to the back-end even on failure. The back-end may instead
	 * offer its own fd for the front-end to use: it stores it in *reply_fd
	 * (ownership passes to the caller), else leaves -1 there. Returns 0 or
	 * -errno (-EBUSY if its queues run). Required. */
	int (*set_state_fd)(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply_fd);
	/* After the front-end closed its end: 0 if the back-end's transfer
	 * succeeded, -errno otherwise. May wait for the back-end to finish.
	 * Required. */
	int (*check_state)(void *ctx);
};

struct precopy_backend_xfer;

/* Creates a transfer object for one back-end. ops is copied; ctx is passed
 * to every op. sys (NULL = precopy_sys_real()) closes the front-end's fds.
 * Returns the object (free with precopy_backend_xfer_free()) with *err = 0,
 * or NULL with *err = -EINVAL or -ENOMEM. err may be NULL. */
PRECOPY_API struct precopy_backend_xfer *precopy_backend_xfer_new(const struct precopy_backend_ops *ops,
								  void *ctx,
								  const struct precopy_sys *sys,
								  int *err);

/* Starts a transfer. pipe_fds is a pipe the caller created ([0] read end,
 * [1] write end); ownership of both passes to the transfer (both are closed
 * on failure). SAVE gives [1] to the back-end and keeps [0]; LOAD gives [0]
 * and keeps [1]. If the back-end replies with its own fd, the kept end is
 * closed and the reply fd is used instead.
 * Returns the front-end fd (read it to end of file for SAVE, write the
 * state into it for LOAD; a back-end's own reply fd may be of any kind. Do
 * not close it: precopy_backend_xfer_finish() closes it), or
 * -EINVAL, -EBUSY (queues running; checked before anything is handed over),
 * -EALREADY, or the back-end's -errno. */
PRECOPY_API int precopy_backend_xfer_start(struct precopy_backend_xfer *x, uint32_t dir, uint32_t phase,
					   const int pipe_fds[2]);

/* Ends the transfer: closes the front-end fd, then asks the back-end.
 * Call it once the state has moved (SAVE: end of file read; LOAD: the whole
 * state written), or to abandon a failed transfer.
 * Returns the back-end's verdict (0 or -errno), or -EINVAL / -ENOENT.
 * After it returns, a new transfer may be started. */
PRECOPY_API int precopy_backend_xfer_finish(struct precopy_backend_xfer *x);

/* Abandons a started transfer without asking the back-end: closes the
 * front-end fd (the back-end sees end of file, or EPIPE on its writes) and
 * returns at once, so a failed migration never waits for a back-end that
 * stopped answering. A new transfer may be started afterwards; whether the
 * back-end accepts it while it still winds the old one down is its own
 * business (the fake back-end says -EALREADY until its check_state ran).
 * Returns 0, -EINVAL (NULL) or -ENOENT (no transfer started). */
PRECOPY_API int precopy_backend_xfer_abort(struct precopy_backend_xfer *x);

/* Releases the object, closing the front-end fd if a transfer is still
 * open (without asking the back-end). NULL is a no-op. */
PRECOPY_API void precopy_backend_xfer_free(struct precopy_backend_xfer *x);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_BACKEND_H */
