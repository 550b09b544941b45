/* SPDX-License-Identifier: MIT */
/* precopy/dest.h — the destination migration engine (struct precopy_dest):
 * it reads the device-state stream (precopy/stream.h), writes each
 * device's state into its data fd and answers on the return path. Clock,
 * sys seam, thread safety and errors as the source engine's
 * (precopy/engine.h): one thread at a time per object, -errno returns,
 * precopy_dest_strerror() says what failed.
 *
 *   d = precopy_dest_new(&cfg, &err);
 *   precopy_dest_start(d);                  // devices -> RESUMING
 *   while (!ended)
 *       precopy_dest_poll(d, 100);           // or precopy_dest_feed(d, buf, n)
 *                                            // (RP_ACK sent when due)
 *   precopy_dest_complete(d);               // devices -> STOP -> RUNNING
 *
 * Device loads: where the sys table has the asynchronous queue
 * (precopy/sys.h), each device's DEV_DATA slices are copied and written to
 * its data fd in order, one write in flight per device and several devices
 * at once, while the stream goes on being decoded (at most 4 slices held
 * per device; a fifth waits for the device). precopy_dest_poll() gives the
 * writes the time it waits; precopy_dest_complete() waits for every write
 * before the devices check what they loaded. Without the queue each slice
 * is written before the next record is decoded.
 *
 * Switchover-ack: once every device the stream declared has been set up and
 * each PRE_COPY device's initial data has been written to its data fd (the
 * source sent DEV_INITIAL_SENT after it), one RP_ACK goes on the return
 * path. A stream without PRE_COPY devices gets no ACK. A failure sends an
 * RP_ERROR (best effort) and cancels: every device back to RUNNING.
 */
#ifndef PRECOPY_DEST_H
#define PRECOPY_DEST_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version 2 added log, log_ctx and log_level at the end, version 3
 * vfio_user and nvfio_user; versions 1 and 2 are still accepted. */
#define PRECOPY_DEST_CONFIG_VERSION 3

struct precopy_dest_device {
	uint32_t id;      /* the stream's device id */
	int device_fd;    /* open VFIO device fd, borrowed */
};

/* An fd-based back-end on the destination (precopy/backend.h): at
 * precopy_dest_start() the engine creates a pipe (sys pipe2) and hands its
 * read end to the back-end (LOAD; its queues must be stopped, else
 * -EBUSY); the back-end's DEV_DATA records are written into the pipe as
 * they arrive; at its DEV_END the engine closes the pipe (the back-end's
 * end of file) and asks the back-end (check_state): a failure there fails
 * the incoming migration (RP_ERROR naming the back-end's id). */
struct precopy_dest_backend {
	uint32_t id;                           /* the stream's id for it */
	const struct precopy_backend_ops *ops; /* copied */
	void *ctx;
};

/* A device served over vfio-user on the destination (precopy/vfio_user.h):
 * moved to RESUMING at precopy_dest_start() (one arc at a time), its
 * DEV_DATA written with MIG_DATA_WRITE in arrival order (plain requests,
 * not the asynchronous queue: vfio-user has no data fd), then RESUMING ->
 * STOP (the server checks what it loaded) and RUNNING at
 * precopy_dest_complete(), as VFIO devices. The handle is borrowed,
 * connected (guest memory mapped as the VMM needs it), used only inside
 * the destination's calls; between them the VMM serves the server's
 * commands (precopy_vfio_user_serve()). */
struct precopy_dest_vfio_user {
	uint32_t id;                   /* the stream's device id */
	struct precopy_vfio_user *dev; /* borrowed */
};

/* Return-path sink (instead of rp_fd): take all len bytes or -errno. */
typedef int (*precopy_dest_rp_fn)(void *ctx, const void *buf, size_t len);

struct precopy_dest_config {
	uint32_t version;               /* PRECOPY_DEST_CONFIG_VERSION */
	struct precopy_clock clock;     /* required */
	const struct precopy_sys *sys;  /* required */
	const struct precopy_dest_device *devices; /* copied; may be empty (a VM
						    * without devices: the stream carries
						    * its header and end only) */
	uint32_t ndevices;
	int stream_fd;                  /* read by precopy_dest_poll(); -1: feed only */
	int rp_fd;                      /* written through sys; or -1 and rp_sink */
	precopy_dest_rp_fn rp_sink;
	void *rp_ctx;
	struct precopy_stream_limits limits; /* zeros: defaults */
	uint64_t io_timeout_ns;         /* longest device / rp write wait; 0: 10 s */
	const struct precopy_dest_backend *backends; /* copied; may be empty */
	uint32_t nbackends;
	/* Version 2: the destination's messages (precopy/log.h), those up to
	 * log_level; log NULL: none. */
	precopy_log_fn log;
	void *log_ctx;
	uint32_t log_level;
	/* Version 3: devices served over vfio-user (copied; may be empty).
	 * Ids share one space with devices and back-ends;
	 * precopy_dest_device_info() indexes VFIO devices first, then these. */
	const struct precopy_dest_vfio_user *vfio_user;
	uint32_t nvfio_user;
};

/* Fill *cfg with every default: version, a CLOCK_MONOTONIC clock,
 * precopy_sys_real(), stream_fd and rp_fd -1, everything else 0 (no
 * devices, default limits and timeout). NULL is a no-op. */
PRECOPY_API void precopy_dest_config_init(struct precopy_dest_config *cfg);

/* The rules precopy_dest_new() applies before it opens a device or a
 * back-end: the first broken one, named by field and rule, into msg (as
 * precopy_engine_config_check()). Returns 0, -EINVAL or -E2BIG. */
PRECOPY_API int precopy_dest_config_check(const struct precopy_dest_config *cfg, char *msg, size_t len);

struct precopy_dest;

/* Create a destination engine. Opens a handle on every device.
 * Returns it (free with precopy_dest_free()) or NULL with *err: -EINVAL
 * (NULL, version, clock, sys, devices or backends NULL with a count > 0, duplicate/NONE id among devices and
 * back-ends, fd < 0, a back-end ops table precopy_backend_xfer_new()
 * refuses, both or neither of rp_fd / rp_sink, bad limits), -E2BIG (more
 * than PRECOPY_STREAM_CAP_MAX_DEVICES devices and back-ends), -ENOTTY / -EOPNOTSUPP (a device
 * cannot migrate), -ENOMEM. */
PRECOPY_API struct precopy_dest *precopy_dest_new(const struct precopy_dest_config *cfg, int *err);

/* The destination's counterpart of precopy_engine_interrupt(): from any
 * thread, ends every wait within one poll interval; precopy_dest_poll()
 * or precopy_dest_feed() in progress or next fails with -ECANCELED after
 * cancelling the load (devices back to RUNNING). precopy_dest_start()
 * forgets an earlier one. Returns 0, -EINVAL (NULL). */
PRECOPY_API int precopy_dest_interrupt(struct precopy_dest *d);

/* Cancel if running, release everything (borrowed fds stay open). */
PRECOPY_API void precopy_dest_free(struct precopy_dest *d);

/* Every device to RESUMING, every back-end's LOAD transfer started, a
 * fresh stream decoder. Returns 0, -EBUSY (running, or a back-end's queues
 * run), or -errno (devices back to RUNNING, back-end transfers abandoned). */
PRECOPY_API int precopy_dest_start(struct precopy_dest *d);

/* Consume stream bytes (any split). Device data goes to the devices' data
 * fds as it arrives; the ACK is sent when due. Returns 0, -EBUSY (not
 * started), or -errno: the decoder's -EBADMSG / -EPROTO (a device the
 * config lacks is -EPROTO), a device write's -errno, a back-end pipe
 * write's -errno or its check_state verdict at DEV_END, the return path's
 * -errno; -ETIMEDOUT when a device, a back-end pipe or the return path
 * takes no byte for io_timeout_ns, measured on the clock and in 10 ms poll
 * rounds (a clock that stands still cannot hold the call). Cancelled on
 * any error; precopy_dest_strerror() names the step. */
PRECOPY_API int precopy_dest_feed(struct precopy_dest *d, const void *buf, size_t len);

/* Wait up to timeout_ms (< 0: no limit) for stream_fd, read what is there
 * (up to 64 KiB) and feed it. Returns bytes consumed (> 0), 0 at the end of
 * the stream (the peer closed; -EBADMSG instead if STREAM_END was not
 * seen), -EAGAIN (nothing within the timeout), -ECANCELED
 * (precopy_dest_interrupt()), -EINVAL (no stream_fd), or as
 * precopy_dest_feed(). */
PRECOPY_API int64_t precopy_dest_poll(struct precopy_dest *d, int timeout_ms);

/* 1 once STREAM_END was decoded, 0 before, -EINVAL for NULL. */
PRECOPY_API int precopy_dest_ended(const struct precopy_dest *d);

/* 1 once the ACK was sent, 0 before, -EINVAL for NULL. */
PRECOPY_API int precopy_dest_acked(const struct precopy_dest *d);

/* After STREAM_END: every device RESUMING -> STOP (the device checks the
 * state it loaded), then to RUNNING (through RUNNING_P2P for all P2P
 * devices first). Returns 0, -EBUSY (stream not ended), or the device's
 * -errno (cancelled). */
PRECOPY_API int precopy_dest_complete(struct precopy_dest *d);

/* Abandon the incoming migration: every device back to RUNNING (reset where
 * recovery fails), sessions closed. Returns 0 or the first -errno. */
PRECOPY_API int precopy_dest_cancel(struct precopy_dest *d);

/* Last failure text or "". */
PRECOPY_API const char *precopy_dest_strerror(const struct precopy_dest *d);

/* ---- status, as the source engine's (precopy/engine.h) ------------------- */

enum precopy_dest_phase {
	PRECOPY_DEST_IDLE = 0,    /* before start, after a failure or cancel */
	PRECOPY_DEST_LOADING = 1, /* started, the stream not ended */
	PRECOPY_DEST_ENDED = 2,   /* STREAM_END decoded; complete() is next */
	PRECOPY_DEST_DONE = 3,    /* devices RUNNING */
};

struct precopy_dest_dev_info {
	uint32_t id;
	uint32_t state;         /* VFIO device state as last known */
	int setup;              /* its DEV_SETUP decoded */
	int initial_loaded;     /* its pre-copy initial data written (DEV_INITIAL_SENT
				 * decoded and every write of it ended) */
	int ended;              /* its DEV_END decoded */
	uint64_t bytes;         /* state bytes written to it (writes that ended) */
	uint64_t bytes_queued;  /* decoded, not yet written (concurrent loads) */
};

/* Device `index` (config order). Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_dest_device_info(const struct precopy_dest *d, uint32_t index,
					 struct precopy_dest_dev_info *out);

struct precopy_dest_backend_info {
	uint32_t id;
	int setup;              /* its DEV_SETUP decoded */
	int checked;            /* 1: its load was checked successfully */
	uint64_t bytes;         /* written into its pipe */
};

/* Back-end `index` (config order). Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_dest_backend_info(const struct precopy_dest *d, uint32_t index,
					  struct precopy_dest_backend_info *out);

struct precopy_dest_stats {
	uint32_t phase;         /* enum precopy_dest_phase */
	int err;                /* the last failure's -errno, or 0 */
	uint32_t err_dev;       /* the device or back-end it concerns, or
				 * PRECOPY_STREAM_DEV_NONE */
	int acked;              /* the switchover-ack was sent */
	int concurrent_loads;   /* 1: this load's device writes went through the
				 * asynchronous queue */
};

/* The destination's status. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_dest_stats(const struct precopy_dest *d, struct precopy_dest_stats *out);

/* Older forms of the two info calls above (kept).
 * Back-end `index` (config order): bytes written into its pipe so far and
 * whether its load was checked successfully (1) or not yet (0).
 * Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_dest_backend_state(const struct precopy_dest *d, uint32_t index, uint64_t *bytes,
					   int *checked);

/* Device `index` (config order): its VFIO state and bytes written to it.
 * Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_dest_device_state(const struct precopy_dest *d, uint32_t index, uint32_t *state,
					  uint64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_DEST_H */
