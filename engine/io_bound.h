/* SPDX-License-Identifier: MIT */
/* engine/io_bound.h — bounded waits and the one bounded writer shared by
 * the source and the destination engines (internal).
 *
 * A wait ends on time (timeout_ns on the caller's clock) and on lack of
 * progress: every poll round without progress counts one poll interval,
 * and as many rounds as fit in timeout_ns end the wait too, whatever the
 * clock says (a virtual clock may stand still while the engine waits on a
 * real fd, and a fd may keep answering "ready" to a poll and -EAGAIN to
 * the I/O). Rationale: docs/io.md.
 *
 * Thread safety: none of its own; the caller's object decides. */
#ifndef PRECOPY_ENGINE_IO_BOUND_H
#define PRECOPY_ENGINE_IO_BOUND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "precopy/engine.h"
#include "../ioctl/sys_nosig.h"

struct precopy__io_bound {
	const struct precopy_sys *sys;
	struct precopy_clock clock;
	uint64_t timeout_ns; /* > 0 */
	uint32_t poll_ms;    /* longest single poll; 0 counts as 1 ms per round */
	const int *interrupt; /* non-zero (read atomically): end with -ECANCELED */
};

/* One wait's state: zero it before the wait and after each progress. */
struct precopy__io_wait {
	uint64_t deadline, waited_ns;
};

/* Poll fd for events once (one poll interval at most). Returns 0 (ready or
 * not: try the I/O again), -ETIMEDOUT once the wait is over (by the clock
 * or by rounds without progress), -ECANCELED once *b->interrupt is set
 * (checked before and after the poll), or poll's -errno. */
int precopy__io_wait_fd(const struct precopy__io_bound *b, int fd, short events, struct precopy__io_wait *w);

/* Count one round of waited_ms without progress (a caller that waits by
 * other means than precopy__io_wait_fd, e.g. on the asynchronous queue).
 * Returns 0, -ETIMEDOUT once the wait is over (clock or rounds), or
 * -ECANCELED once *b->interrupt is set. */
int precopy__io_round(const struct precopy__io_bound *b, struct precopy__io_wait *w, uint32_t waited_ms);

/* A write step: > 0 bytes taken, 0 / -EAGAIN / -EINTR nothing now, any
 * other -errno fails the write. */
typedef ssize_t (*precopy__io_write_fn)(void *ctx, const void *buf, size_t len);

/* What a write ended on. */
struct precopy__io_result {
	size_t done;  /* bytes taken */
	int in_poll;  /* 1: the error is poll's (not the write's, not -ETIMEDOUT) */
};

/* Write all len bytes of buf with fn, waiting for POLLOUT on poll_fd
 * between steps that take nothing. Returns 0, -ETIMEDOUT (no byte taken
 * within the bound above), or the step's or poll's -errno; *res (if
 * non-NULL) says how far it got and where it failed. */
int precopy__io_write_all(const struct precopy__io_bound *b, int poll_fd, precopy__io_write_fn fn, void *ctx,
			  const void *buf, size_t len, struct precopy__io_result *res);

/* The write step for a plain fd through sys (ctx: a struct
 * precopy__io_fd): precopy__sys_write_nosig(), so no write raises SIGPIPE
 * in the host. kind: PRECOPY__FD_UNKNOWN at first, then what the writes
 * learnt of fd; keep it across writes to the same fd. */
struct precopy__io_fd {
	const struct precopy_sys *sys;
	int fd;
	int kind;
};
ssize_t precopy__io_fd_write(void *ctx, const void *buf, size_t len);

/* precopy__io_write_all() of buf to f->fd, polled on f->fd. */
int precopy__io_write_fd(const struct precopy__io_bound *b, struct precopy__io_fd *f, const void *buf, size_t len,
			 struct precopy__io_result *res);

#endif /* PRECOPY_ENGINE_IO_BOUND_H */
