/* SPDX-License-Identifier: MIT */
/* engine/pump_internal.h — private state shared by the pump's source files:
 * pump.c (object, devices, status, dispatch), pump_frame.c (frame codec),
 * pump_fallback.c (sys path), pump_uring*.c (io_uring path).
 * Not installed; not part of the API. */
#ifndef PRECOPY_PUMP_INTERNAL_H
#define PRECOPY_PUMP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "precopy/pump.h"
#include "precopy/sys.h"

struct pump_dev {
	uint32_t id;
	int fd;
	uint32_t flags;
	uint32_t state; /* enum precopy_pump_dev_state */
	int err;
	uint64_t bytes;
	uint64_t frames;
	/* SAVE, per call */
	bool idle;      /* said "nothing now" (-EAGAIN/-ENOMSG) */
	bool busy;      /* an op or a queued frame ties the fd up */
	bool ending;    /* EOD/ABORT queued, not yet written */
	bool timed_out; /* the drain deadline passed while busy */
	int8_t splice;  /* -1 unknown, 0 no, 1 yes */
	bool rpolled;   /* SAVE, io_uring: a POLLIN on the empty pipe completed */
	int pend_err;   /* SAVE: failure to report as ABORT once not busy */
	/* LOAD: FIFO of slots waiting to be written to this device */
	int wq_head, wq_tail;
	bool writing;
	bool eod_seen;    /* LOAD: EOD or ABORT frame parsed */
	/* LOAD: the EOD or ABORT frame (its PRECOPY_FRAME_* flag) parsed while
	 * earlier payload of the device was still queued or being written; it
	 * takes effect once that payload is written (or the device failed) */
	uint32_t end_pending;
	int abort_err; /* LOAD: the errno an ABORT frame carried, negative */
	const char *what; /* what failed, for messages */
};

/* How the current call ends. */
enum pump_mode { PUMP_RUN, PUMP_DRAIN };

struct pump_call {
	enum pump_mode mode;
	uint64_t max_bytes;   /* 0 = unlimited */
	uint64_t deadline_ns; /* 0 = none */
	uint64_t moved;       /* payload bytes moved in this call */
	uint64_t reserved;    /* SAVE: read sizes in flight */
	bool expired;         /* deadline seen */
};

struct pump_uring; /* pump_uring_internal.h */

struct precopy_pump {
	struct precopy_pump_config cfg;
	struct precopy_sys sys;
	enum precopy_pump_path path;
	int path_reason;
	uint32_t chunk;
	uint32_t depth;
	uint32_t max_payload;
	struct pump_dev *devs;
	uint32_t ndev, cap;
	uint32_t rr; /* round-robin start */
	int broken;  /* stream-level -errno, sticky */
	char msg[256];
	/* buffers: depth slots of PRECOPY_FRAME_HDR_SIZE + chunk bytes */
	uint8_t *buf;
	size_t slot_size;
	/* LOAD parse state (persists across calls) */
	uint8_t hdr[PRECOPY_FRAME_HDR_SIZE];
	uint32_t hdr_have;
	bool in_payload;
	struct precopy_frame_hdr cur;
	int cur_dev;       /* index, or -1 when discarding */
	int eod_dev;       /* set by precopy__pump_load_header on an EOD frame, else -1 */
	uint32_t cur_left; /* payload bytes still to read */
	uint8_t abort_buf[PRECOPY_FRAME_ABORT_LEN];
	bool stream_eof;
	/* precopy_pump_drain() with a deadline: past this time the sys path's
	 * waits for an fd fail with -ETIMEDOUT (0: no limit) */
	uint64_t stall_after_ns;
	bool real_sys; /* config->sys is precopy_sys_real(): fds are the kernel's */
	/* SAVE into a blocking socket: for the length of a call the stream's
	 * SO_SNDTIMEO is one poll interval (the caller's value is kept here and
	 * put back), so no send or splice into it waits longer than that */
	bool send_bounded;
	struct timeval send_timeo_saved;
	/* SAVE, real fds: the stream is a pipe or O_NONBLOCK, so a splice with
	 * SPLICE_F_NONBLOCK into it returns instead of waiting (set per call) */
	bool stream_nowait;
	bool stream_pipe; /* real fds: the stream is a pipe (set per call) */
	/* LOAD: the last splice step waited for the stream's POLLIN; if the
	 * stream still counts no bytes after it, a read finds its end */
	bool load_spolled;
	uint64_t load_spliced; /* LOAD: payload bytes spliced, both paths (tests) */
	uint32_t load_piece_max; /* LOAD: largest copy piece asked for (tests) */
	struct pump_uring *ur;
};

/* pump.c */
void precopy__pump_set_msg(struct precopy_pump *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int precopy__pump_fail_stream(struct precopy_pump *p, int err, const char *what);
void precopy__pump_dev_fail(struct precopy_pump *p, struct pump_dev *d, int err, const char *what);
void precopy__pump_dev_done(struct precopy_pump *p, struct pump_dev *d, uint32_t flags);
bool precopy__pump_expired(struct precopy_pump *p, struct pump_call *c);
/* A drain is one poll interval past its deadline (stall_after_ns): an fd
 * that still takes nothing is given up on. */
bool precopy__pump_stalled(const struct precopy_pump *p);
/* After a splice answered -EAGAIN inside a frame: if the device pipe is
 * empty, the bytes its header counted were taken by someone else (only the
 * pump may read it). Fails the stream (-EIO) and returns true; waiting for
 * stream room would spin otherwise. */
bool precopy__pump_splice_lost(struct precopy_pump *p, struct pump_dev *d);
bool precopy__pump_all_ended(const struct precopy_pump *p);
/* LOAD: no device expects another frame (each saw EOD/ABORT or failed). */
bool precopy__pump_load_done(const struct precopy_pump *p);
uint8_t *precopy__pump_slot(struct precopy_pump *p, uint32_t i);
/* The size of the next copy between device d and the stream, given len
 * (the chunk, or less by budget or frame): at most PUMP_PIPE_PIECE between a
 * device pipe and a pipe stream, both directions (why: pump.c). */
#define PUMP_PIPE_PIECE (64u << 10)
uint32_t precopy__pump_copy_len(const struct precopy_pump *p, const struct pump_dev *d, uint32_t len);
/* LOAD: moves up to want payload bytes of the current frame (p->cur_dev,
 * which is d) from the stream straight into d's pipe, both paths. Returns
 * the bytes moved (> 0; frame state, counters and c->moved updated); 0 when
 * it has to wait first, for events *wev on fd *wfd (the stream's POLLIN or
 * the device's POLLOUT); -1 when these bytes must be copied instead (the
 * stream signalled but counts no bytes: its end or an error, which a read
 * reports; or the pair cannot splice, and d->splice is now 0 for good). */
int precopy__pump_load_splice(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d, uint32_t want, int *wfd,
		     short *wev);
int precopy__pump_find(const struct precopy_pump *p, uint32_t id);
/* LOAD: header bytes complete in p->hdr: decode and select the device.
 * On an EOD frame p->eod_dev names the device (the caller completes it with
 * precopy__pump_load_eod() once its earlier payload is written) and the caller must
 * reset p->eod_dev to -1. Returns 0 or a stream-level error (recorded). */
int precopy__pump_load_header(struct precopy_pump *p);
/* LOAD: the 4 ABORT payload bytes are in p->abort_buf: no frame may follow
 * for that device; its errno is kept in abort_err. Returns the device index
 * (the caller applies the ABORT with precopy__pump_load_abort_apply() once every
 * earlier payload byte of the device is written), or -1. */
int precopy__pump_load_abort(struct precopy_pump *p);
/* LOAD: an ABORT frame takes effect: count it and fail the device (a no-op
 * for the state if a device write already failed it). */
void precopy__pump_load_abort_apply(struct precopy_pump *p, struct pump_dev *d);
/* LOAD: a device reached EOD in the stream. */
void precopy__pump_load_eod(struct precopy_pump *p, struct pump_dev *d);
/* LOAD: stream EOF at a frame boundary or inside a frame. */
int precopy__pump_load_eof(struct precopy_pump *p, enum pump_mode mode);
/* SAVE: timeout every still active device that is not busy. */
void precopy__pump_timeout_devices(struct precopy_pump *p);

/* pump_fallback.c */
int precopy__pump_fb_save(struct precopy_pump *p, struct pump_call *c);
int precopy__pump_fb_load(struct precopy_pump *p, struct pump_call *c);
/* Writes all len bytes to the stream through sys, polling on -EAGAIN. */
int precopy__pump_fb_write_all(struct precopy_pump *p, int fd, const uint8_t *b, size_t len);

/* pump_uring*.c */
/* Test and diagnosis hooks of the io_uring SAVE path (not part of the API). */
struct precopy__pump_uring_stats {
	uint64_t ahead_max;  /* the read-ahead bound in force (bytes) */
	uint64_t ahead_peak; /* most read-ahead bytes seen (see pump_uring.c) */
	/* most device reads (or POLLINs) still in flight after an
	 * io_uring_enter returned: devices that overlapped */
	uint32_t async_reads_peak;
};
/* Fills *out; all zero when p is not on the io_uring path. */
void precopy__pump_uring_stats(const struct precopy_pump *p, struct precopy__pump_uring_stats *out);
/* Sets the read-ahead bound: 0 restores the default, UINT64_MAX removes
 * it. Resets the peaks. No-op off the io_uring path. */
void precopy__pump_uring_set_ahead(struct precopy_pump *p, uint64_t max);
int precopy__pump_uring_init(struct precopy_pump *p);
void precopy__pump_uring_exit(struct precopy_pump *p);
int precopy__pump_uring_save(struct precopy_pump *p, struct pump_call *c);
int precopy__pump_uring_load(struct precopy_pump *p, struct pump_call *c);

static inline uint32_t pump_le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline void pump_put_le32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

#endif /* PRECOPY_PUMP_INTERNAL_H */
