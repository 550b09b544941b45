/* SPDX-License-Identifier: MIT */
/* ioctl/sys_nosig.h — a write through the sys seam that never raises
 * SIGPIPE in the host (internal; the contract is precopy/sys.h's
 * "Signals", the rationale docs/io.md). */
#ifndef PRECOPY_IOCTL_SYS_NOSIG_H
#define PRECOPY_IOCTL_SYS_NOSIG_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "precopy/sys.h"

/* What a write learnt about its fd; the caller keeps it across writes to
 * the same fd, starting from PRECOPY__FD_UNKNOWN. */
enum { PRECOPY__FD_UNKNOWN = 0, PRECOPY__FD_SOCKET, PRECOPY__FD_OTHER };

/* Write up to len bytes to fd: a socket with send(MSG_NOSIGNAL |
 * MSG_DONTWAIT) where the table has send, anything else (or a socket
 * through a table without send) with write and SIGPIPE blocked on the
 * calling thread for the call, the SIGPIPE it queued taken back when it
 * answered -EPIPE (unless one was pending before). Returns the count or
 * -errno as the op does (-EINTR made again, as ioctl/sys_retry.h). *kind:
 * in, what is known of fd; out, what was learnt. */
ssize_t precopy__sys_write_nosig(const struct precopy_sys *s, int fd, const void *buf, size_t len, int *kind);

/* SIGPIPE blocked on the calling thread around a stretch of I/O the
 * library cannot route through precopy__sys_write_nosig() (splice,
 * io_uring). begin blocks it and notes whether one was pending already;
 * end, when the stretch saw -EPIPE (got_epipe), takes back the SIGPIPE
 * it queued unless one was pending before, then restores the mask. */
struct precopy__sigpipe_guard {
	sigset_t old;
	int blocked, was_pending;
};
void precopy__sigpipe_begin(struct precopy__sigpipe_guard *g);
void precopy__sigpipe_end(struct precopy__sigpipe_guard *g, int got_epipe);

#endif /* PRECOPY_IOCTL_SYS_NOSIG_H */
