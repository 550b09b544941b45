/* SPDX-License-Identifier: MIT */
/* precopy/pump.h — the device-state data pump and its frame layer.
 *
 * Device state is bytes behind file descriptors: a VFIO device's data_fd in
 * PRE_COPY / STOP_COPY (source) or RESUMING (destination), or a back-end's
 * state pipe (see precopy/backend.h). The pump moves those bytes between many
 * device fds and one migration stream fd:
 *
 *   SAVE (source):       device fds --read--> frames --write--> stream fd
 *   LOAD (destination):  stream fd --read--> frames --write--> device fds
 *
 * It runs on io_uring (liburing: one ring, registered buffers, several
 * devices in flight at once, splice(2) to and from devices added as pipes)
 * and falls back
 * to plain read/write through the `sys` seam where io_uring is unavailable
 * or not allowed (see "Paths" below).
 *
 * ---------------------------------------------------------------- frames
 * The stream is a sequence of frames. Each frame is a 16-byte header,
 * every field little-endian, followed by `len` payload bytes:
 *
 *   offset 0  u32 magic   PRECOPY_FRAME_MAGIC (the bytes "PCPF")
 *   offset 4  u32 dev_id  the device this frame belongs to
 *   offset 8  u32 flags   0, PRECOPY_FRAME_EOD or PRECOPY_FRAME_ABORT
 *   offset 12 u32 len     payload length, <= the receiver's limit
 *                         (never above PRECOPY_FRAME_MAX_PAYLOAD)
 *
 *   flags 0                  data: len (>= 1) opaque device-state bytes
 *   PRECOPY_FRAME_EOD        the device's end of data; len == 0
 *   PRECOPY_FRAME_ABORT      the source's transfer of this device failed;
 *                            len == 4, payload = u32 LE positive errno
 *
 * A device's frames appear in the order of its bytes; frames of different
 * devices interleave freely. The sender writes a header only when all `len`
 * payload bytes are already in its hands (in a buffer or a kernel pipe
 * buffer), so a device failing mid-transfer never leaves a frame that claims
 * more bytes than follow it: the failure is an ABORT frame instead. A stream
 * that ends inside a frame is truncated, never mistaken for complete.
 * The frame layer has no state of its own, so a richer stream format can
 * carry these frames as one record type among others.
 *
 * ---------------------------------------------------------------- paths
 * precopy_pump_new() sets up io_uring and falls back to the sys path when
 * io_uring_setup fails (ENOSYS, EPERM under kernel.io_uring_disabled, ...),
 * when the config forces it, or when config->sys is not precopy_sys_real()
 * (io_uring bypasses the seam, so a fake kernel's fds must go through it).
 * precopy_pump_path() says which path is in use and why.
 *
 * Throughput notes (io_uring path, SAVE). Devices added with
 * PRECOPY_PUMP_DEV_PIPE are spliced: their bytes never cross user space.
 * When the stream is a pipe, a socket, or an O_NONBLOCK fd, the calling
 * thread does those splices itself, and waits for room with a ring poll;
 * any other blocking fd gets io_uring's worker threads, at the cost of a
 * thread switch per frame. Other devices are copied through
 * queue_depth buffers of chunk_size bytes. Reads that complete at once
 * (pipes, sockets) stop while the bytes copied in and not yet written to
 * the stream reach about two chunks, so that they are written while still
 * in the CPU cache; reads that wait (a device with nothing yet, a VFIO
 * data_fd read by an io_uring worker) do not count against that, so up to
 * queue_depth of them overlap (see perf/README.md, "Pump"). A device pipe
 * copied (not spliced) into a pipe stream goes in frames of at most 64 KiB
 * whatever chunk_size is: a pipe wakes its other end only when a read or
 * write ends, so smaller pieces let the device's writer and the stream's
 * reader run alongside the pump.
 *
 * LOAD: a device added with PRECOPY_PUMP_DEV_PIPE (the write end of a
 * back-end's state pipe) takes its payload by splice straight from the
 * stream, on the calling thread, when the stream can splice (a pipe or a
 * socket, TCP included), on both paths. The stream's FIONREAD is asked
 * before each splice, so that none sleeps on an empty blocking socket (which
 * ignores SPLICE_F_NONBLOCK); a full device pipe is waited for with a poll.
 * Copies (PRECOPY_PUMP_NO_SPLICE, or a device the stream cannot splice to)
 * from a pipe stream into a device pipe move at most 64 KiB at a time.
 *
 * ---------------------------------------------------------------- calls
 * No I/O is left in flight between calls: when precopy_pump_run() or
 * precopy_pump_drain() returns, every frame it started is complete on the
 * stream (SAVE) or written to its device (LOAD), so the caller may change a
 * device's state, or write its own records to the stream, between calls.
 *
 * Time is read only from config->now_ns. Waits inside a call last at most
 * config->poll_interval_ms of real time before the clock is read again.
 *
 * Errors common to the functions below:
 *   -EINVAL   NULL pointer, bad config field, wrong direction for the call
 *   -ENOMEM   allocation failed
 * A stream-level failure (stream read/write error, malformed frame) makes the
 * pump unusable: that call and every later run/drain return the same -errno,
 * and precopy_pump_strerror() describes it. A device-level failure only stops
 * that device (its status says FAILED with its -errno).
 * A stream or device pipe whose reader has gone raises no SIGPIPE in the
 * host: precopy_pump_run() and precopy_pump_drain() block SIGPIPE on the
 * calling thread for the call and take back the one their writes queued
 * (unless one was pending before; precopy/sys.h "Signals"); the pump sees
 * -EPIPE.
 *
 * Thread safety: a pump is not thread-safe; one thread at a time may call
 * functions on it. Distinct pumps are independent. The frame functions are
 * pure and thread-safe.
 */
#ifndef PRECOPY_PUMP_H
#define PRECOPY_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- frames */

#define PRECOPY_FRAME_MAGIC 0x46504350u /* "PCPF" in little-endian byte order */
#define PRECOPY_FRAME_HDR_SIZE 16u
#define PRECOPY_FRAME_MAX_PAYLOAD (16u << 20) /* absolute ceiling: 16 MiB */

#define PRECOPY_FRAME_EOD 0x1u   /* end of data for this device */
#define PRECOPY_FRAME_ABORT 0x2u /* source transfer failed; payload = errno */
#define PRECOPY_FRAME_ABORT_LEN 4u

struct precopy_frame_hdr {
	uint32_t dev_id;
	uint32_t flags; /* 0, PRECOPY_FRAME_EOD or PRECOPY_FRAME_ABORT */
	uint32_t len;   /* payload bytes that follow the header */
};

/* Encodes h into out[PRECOPY_FRAME_HDR_SIZE].
 * Returns 0, or -EINVAL if out/h is NULL, flags has unknown bits or both
 * EOD and ABORT, a data frame has len 0 or len > PRECOPY_FRAME_MAX_PAYLOAD,
 * an EOD frame has len != 0, or an ABORT frame has len != 4. */
PRECOPY_API int precopy_frame_encode(const struct precopy_frame_hdr *h, uint8_t *out);

/* Decodes and validates the PRECOPY_FRAME_HDR_SIZE bytes at in.
 * max_payload: largest data payload accepted (0 means
 * PRECOPY_FRAME_MAX_PAYLOAD; values above it are clamped to it).
 * Returns 0 and fills *out, or
 *   -EINVAL   in or out is NULL
 *   -EBADMSG  wrong magic, len above max_payload, EOD with len != 0,
 *             ABORT with len != 4, data frame with len 0
 *   -EPROTO   unknown flag bits, or EOD and ABORT together
 * Nothing is written to *out on error. */
PRECOPY_API int precopy_frame_decode(const uint8_t *in, uint32_t max_payload,
				     struct precopy_frame_hdr *out);

/* ---------------------------------------------------------------- pump */

#define PRECOPY_PUMP_CONFIG_VERSION 1

enum precopy_pump_dir {
	PRECOPY_PUMP_SAVE = 1, /* device fds -> stream */
	PRECOPY_PUMP_LOAD = 2, /* stream -> device fds */
};

/* config->flags */
#define PRECOPY_PUMP_FORCE_FALLBACK 0x1u /* never use io_uring */
#define PRECOPY_PUMP_NO_SPLICE 0x2u      /* never use splice(2) */
#define PRECOPY_PUMP_NO_FIXED 0x4u       /* io_uring without registered buffers */

#define PRECOPY_PUMP_DEFAULT_CHUNK (1u << 20)
#define PRECOPY_PUMP_MIN_CHUNK 4096u
#define PRECOPY_PUMP_DEFAULT_DEPTH 8u
#define PRECOPY_PUMP_MAX_DEPTH 256u
#define PRECOPY_PUMP_MAX_DEVICES 4096u

struct precopy_pump_config {
	uint32_t version; /* PRECOPY_PUMP_CONFIG_VERSION */
	uint32_t dir;     /* enum precopy_pump_dir */
	/* The syscall seam; NULL means precopy_sys_real(). Must validate. */
	const struct precopy_sys *sys;
	/* The migration stream (SAVE: written, LOAD: read). Owned by the caller,
	 * never closed by the pump. Blocking or O_NONBLOCK. SAVE into a
	 * blocking socket: for the length of each run/drain call the pump sets
	 * its SO_SNDTIMEO to poll_interval_ms (unless the caller's is already
	 * shorter), so that no send waits for the peer longer than that, and
	 * puts the caller's value back before returning. */
	int stream_fd;
	uint32_t flags; /* PRECOPY_PUMP_* flags above */
	/* SAVE: largest payload per frame. LOAD: largest piece moved at once
	 * (frames larger than this are moved in pieces). 0 means
	 * PRECOPY_PUMP_DEFAULT_CHUNK; else PRECOPY_PUMP_MIN_CHUNK ..
	 * PRECOPY_FRAME_MAX_PAYLOAD. */
	uint32_t chunk_size;
	/* Buffers (and so operations) in flight at once. 0 means
	 * PRECOPY_PUMP_DEFAULT_DEPTH; else 1 .. PRECOPY_PUMP_MAX_DEPTH. */
	uint32_t queue_depth;
	/* LOAD: largest data payload a frame may declare. 0 means
	 * PRECOPY_FRAME_MAX_PAYLOAD; values above it are -EINVAL. */
	uint32_t max_payload;
	/* Longest real-time wait before the clock is read again; 0 means 10. */
	uint32_t poll_interval_ms;
	/* Required: monotonic time in ns (the only clock the pump reads). */
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;
};

struct precopy_pump;

/* Creates a pump. The config is copied. Detects io_uring here (see Paths).
 * Returns the pump (free it with precopy_pump_free()) and sets *err to 0, or
 * returns NULL with *err = -EINVAL (missing/bad field, unknown version or
 * direction, invalid sys) or -ENOMEM. err may be NULL. */
PRECOPY_API struct precopy_pump *precopy_pump_new(const struct precopy_pump_config *cfg, int *err);

/* Releases the pump and its ring and buffers. Does not close the stream fd
 * or any device fd (except as PRECOPY_PUMP_DEV_CLOSE_AT_END already did).
 * NULL is a no-op. */
PRECOPY_API void precopy_pump_free(struct precopy_pump *p);

enum precopy_pump_path {
	PRECOPY_PUMP_PATH_URING = 1,    /* io_uring via liburing */
	PRECOPY_PUMP_PATH_FALLBACK = 2, /* read/write/splice/poll via sys */
};

/* Which path the pump uses. If reason is non-NULL it receives 0 for io_uring
 * or for a forced fallback, -EOPNOTSUPP when sys is not the real kernel,
 * or the -errno io_uring setup failed with. */
PRECOPY_API enum precopy_pump_path precopy_pump_path(const struct precopy_pump *p, int *reason);

/* Device flags. */
#define PRECOPY_PUMP_DEV_CLOSE_AT_END 0x1u /* close the fd (through sys) once
					      the device's EOD is written
					      (LOAD: tells a pipe reader the
					      state is complete) */
#define PRECOPY_PUMP_DEV_PIPE 0x2u /* SAVE: fd is the read end of a pipe that
				      only the pump reads: its queued bytes are
				      counted (FIONREAD) and spliced to the
				      stream without crossing user space, unless
				      PRECOPY_PUMP_NO_SPLICE (then copied, in
				      frames of at most 64 KiB into a pipe
				      stream). LOAD: fd is the write end of a
				      pipe that only the pump writes: payload
				      is spliced into it from a pipe or socket
				      stream, unless PRECOPY_PUMP_NO_SPLICE
				      (then copied, at most 64 KiB at a time
				      from a pipe stream). Never set it for
				      other fds (a VFIO data_fd, a file). */

/* Adds a device (flags: PRECOPY_PUMP_DEV_*). SAVE: fd is read (data_fd in PRE_COPY/STOP_COPY, the read
 * end of a state pipe). LOAD: fd is written (data_fd in RESUMING, the write
 * end of a state pipe). The fd stays owned by the caller.
 * Returns 0, or -EINVAL (fd < 0, unknown flags), -EEXIST (id already added),
 * -ENOSPC (PRECOPY_PUMP_MAX_DEVICES reached), -ENOMEM, or the pump's
 * stream-level error. */
PRECOPY_API int precopy_pump_add_device(struct precopy_pump *p, uint32_t id, int fd, uint32_t flags);

enum precopy_pump_dev_state {
	PRECOPY_PUMP_DEV_ACTIVE = 0, /* more bytes may come */
	PRECOPY_PUMP_DEV_EOF = 1,    /* end of data moved (EOD frame) */
	PRECOPY_PUMP_DEV_FAILED = 2, /* stopped with err */
};

struct precopy_pump_dev_status {
	uint32_t id;
	uint32_t state;  /* enum precopy_pump_dev_state */
	int err;         /* -errno when FAILED, else 0 */
	uint64_t bytes;  /* see "Counters" below */
	uint64_t frames; /* see "Counters" below */
};

/* Counters, on both paths:
 *   SAVE bytes   payload bytes of this device's data frames written whole
 *                to the stream (header and every payload byte accepted).
 *   SAVE frames  this device's frames written whole to the stream,
 *                its EOD or ABORT frame included.
 *   LOAD bytes   payload bytes a write(2) or splice(2) to the device fd
 *                accepted; a frame cut by a device write error counts the
 *                bytes that went in. Payload of a frame that arrives for a device
 *                already FAILED is read from the stream and dropped.
 *   LOAD frames  this device's data frames whose payload was written to
 *                the device fd in full, plus its EOD or ABORT frame once it
 *                has taken effect.
 * Ordering (LOAD): a device's EOD or ABORT frame takes effect (state EOF,
 * or FAILED with the errno the ABORT carries) only after every payload byte
 * of that device's earlier frames has been written to its fd or the device
 * failed writing. So after an ABORT, bytes equals the payload the source
 * sent for the device before it, unless a device write failed first (then
 * err is that write's error). */

/* Status of device id. Returns 0 and fills *out, -EINVAL (NULL), or -ENOENT
 * (no such device). */
PRECOPY_API int precopy_pump_dev_status(const struct precopy_pump *p, uint32_t id,
					struct precopy_pump_dev_status *out);

/* A description of the latest failure (stream-level, device or timeout), or
 * "" if none. Valid until the next call on p. */
PRECOPY_API const char *precopy_pump_strerror(const struct precopy_pump *p);

/* Limits for one precopy_pump_run() call. */
struct precopy_pump_budget {
	/* Most payload bytes to move in this call; 0 = no limit. Frame headers
	 * are not counted. The pump never exceeds it: it reads no more than what
	 * remains of it. */
	uint64_t max_bytes;
	/* Stop once config->now_ns() >= deadline_ns; 0 = no deadline. The check
	 * happens between operations: an operation already started completes,
	 * and a SAVE frame under way is finished, so a stream that takes
	 * nothing holds precopy_pump_run() until it does (only
	 * precopy_pump_drain()'s deadline gives up on the stream). */
	uint64_t deadline_ns;
};

/* Moves what is ready now, within the budget (NULL = no limits), and
 * returns. SAVE: reads every active device that has data now; a device
 * read returning -EAGAIN or -ENOMSG has nothing now (it stays ACTIVE),
 * read() == 0 is its end of data (EOD frame), any other error fails it
 * (ABORT frame carrying the errno). LOAD: reads frames from the stream and
 * writes each payload to its device; it returns at a frame boundary or
 * within a frame once the budget is spent, when every device has ended,
 * or at the end of the stream.
 * Returns payload bytes moved (>= 0), or the stream-level -errno:
 *   -EBADMSG / -EPROTO  (LOAD) malformed, unknown-device or truncated frame
 *   other -errno        the stream fd's read/write error (e.g. -EPIPE)
 *   -EINVAL             p NULL */
PRECOPY_API int64_t precopy_pump_run(struct precopy_pump *p, const struct precopy_pump_budget *b);

/* Moves bytes until every device has ended (EOF or FAILED), for STOP_COPY
 * (SAVE) and the matching destination side (LOAD). deadline_ns is on the
 * config clock (0 = none): at the deadline each device still ACTIVE fails
 * with -ETIMEDOUT (SAVE sends its ABORT frame). A stream (LOAD: a device)
 * that still takes nothing one poll interval after the deadline, e.g. a
 * peer that stopped reading, fails the stream with -ETIMEDOUT instead of
 * holding the call: the frame under way is cut short, which the reader
 * sees as a truncated stream. This holds on both paths for pipes and
 * sockets (blocking or not, see stream_fd); a blocking stream of another
 * kind (a character device, say) may hold the sys path in the kernel.
 * Returns payload bytes moved by this call if every device reached EOF;
 * otherwise, once every device has ended, the -errno of the failed device
 * added first (-ETIMEDOUT for a deadline), with precopy_pump_strerror()
 * naming it; or a stream-level -errno as for precopy_pump_run(), including
 * -EBADMSG when (LOAD) the stream ends before every device sent EOD. */
PRECOPY_API int64_t precopy_pump_drain(struct precopy_pump *p, uint64_t deadline_ns);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_PUMP_H */
