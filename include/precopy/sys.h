/* SPDX-License-Identifier: MIT */
/* precopy/sys.h — the syscall seam.
 *
 * Every system call that libprecopy makes toward the kernel (VFIO, KVM,
 * device data fds) goes through a `struct precopy_sys`: a const ops table
 * plus a context pointer. The real table calls the kernel and turns errno
 * into a negative return in exactly one place (ioctl/sys.c); the fake kernel
 * in sim/ provides another table, so tests and the simulator link the real
 * library objects unchanged.
 *
 * Contract of every op: return >= 0 on success (a count where the syscall
 * returns one) and -errno on failure; never rely on errno. -EINTR means the
 * call did nothing: the library makes it again (up to 1000 times in a row),
 * except close, whose -EINTR it takes as "closed", as on Linux.
 *
 * Signals: the library never raises SIGPIPE in its host. It writes to a
 * socket (the stream, the return path) with send and MSG_NOSIGNAL where
 * the table has send; to a pipe, or to a socket through a table without
 * send, it writes with SIGPIPE blocked on the calling thread for that one
 * write, and when the write answered -EPIPE it takes the SIGPIPE that
 * write queued (sigtimedwait, zero timeout) unless one was already pending
 * on the thread before. The caller sees -EPIPE; the host's own SIGPIPE
 * disposition, mask and pending SIGPIPE are left as they were. A table
 * whose write raises a signal some other way is outside this promise.
 *
 * Thread safety: the real table is stateless and may be used from any
 * thread. A fake table documents its own rules (sim/).
 */
#ifndef PRECOPY_SYS_H
#define PRECOPY_SYS_H

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version 2 added pipe2 at the end of the table; a version 1 table (built
 * against the older, shorter struct) is rejected by precopy_sys_validate().
 * Version 3 added send, an optional op: a version 2 table (the shorter
 * struct, no send member) stays valid and the library never reads past
 * its pipe2; a version 3 table may leave send NULL. Ops added later are
 * optional in the same way. */
#define PRECOPY_SYS_OPS_VERSION 3
/* The oldest table layout the library accepts. */
#define PRECOPY_SYS_OPS_VERSION_MIN 2

struct precopy_sys_ops {
	uint32_t version; /* PRECOPY_SYS_OPS_VERSION */
	/* ioctl(2): returns the ioctl's non-negative result or -errno. */
	int (*ioctl)(void *ctx, int fd, unsigned long request, void *arg);
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t len);
	ssize_t (*write)(void *ctx, int fd, const void *buf, size_t len);
	/* splice(2) with NULL offsets; -EINVAL where either end cannot splice. */
	ssize_t (*splice)(void *ctx, int fd_in, int fd_out, size_t len, unsigned int flags);
	int (*poll)(void *ctx, struct pollfd *fds, unsigned int nfds, int timeout_ms);
	/* open(2) with O_CLOEXEC added; returns the fd or -errno. */
	int (*open)(void *ctx, const char *path, int flags);
	int (*close)(void *ctx, int fd);
	/* mmap(2): 0 and *out set, or -errno. */
	int (*mmap)(void *ctx, size_t len, int prot, int flags, int fd, off_t offset, void **out);
	int (*munmap)(void *ctx, void *addr, size_t len);
	/* pipe2(2) with O_CLOEXEC added: 0 and fds[0] (read end), fds[1]
	 * (write end) set, or -errno. (Version 2.) */
	int (*pipe2)(void *ctx, int fds[2], int flags);
	/* send(2) on a socket, flags as send's (the library passes
	 * MSG_NOSIGNAL | MSG_DONTWAIT); -ENOTSOCK on any other fd. Optional
	 * (version 3): without it the library writes to sockets with write
	 * and SIGPIPE blocked, as to pipes (see "Signals" above). */
	ssize_t (*send)(void *ctx, int fd, const void *buf, size_t len, int flags);
};

struct precopy_sys {
	const struct precopy_sys_ops *ops;
	void *ctx;
};

/* The table that calls the real kernel. Never NULL; ctx is unused. */
PRECOPY_API const struct precopy_sys *precopy_sys_real(void);

/* Returns 0 if sys is usable (non-NULL, a version from
 * PRECOPY_SYS_OPS_VERSION_MIN to PRECOPY_SYS_OPS_VERSION, every required
 * op present; send is optional), -EINVAL otherwise. */
PRECOPY_API int precopy_sys_validate(const struct precopy_sys *sys);

/* Convenience wrappers, so call sites read like the syscalls they make. */
static inline int precopy_sys_ioctl(const struct precopy_sys *s, int fd, unsigned long req, void *arg)
{
	return s->ops->ioctl(s->ctx, fd, req, arg);
}
static inline ssize_t precopy_sys_read(const struct precopy_sys *s, int fd, void *buf, size_t len)
{
	return s->ops->read(s->ctx, fd, buf, len);
}
static inline ssize_t precopy_sys_write(const struct precopy_sys *s, int fd, const void *buf, size_t len)
{
	return s->ops->write(s->ctx, fd, buf, len);
}
static inline ssize_t precopy_sys_splice(const struct precopy_sys *s, int in, int out, size_t len, unsigned int flags)
{
	return s->ops->splice(s->ctx, in, out, len, flags);
}
static inline int precopy_sys_poll(const struct precopy_sys *s, struct pollfd *fds, unsigned int n, int timeout_ms)
{
	return s->ops->poll(s->ctx, fds, n, timeout_ms);
}
static inline int precopy_sys_open(const struct precopy_sys *s, const char *path, int flags)
{
	return s->ops->open(s->ctx, path, flags);
}
static inline int precopy_sys_close(const struct precopy_sys *s, int fd)
{
	return s->ops->close(s->ctx, fd);
}
static inline int precopy_sys_mmap(const struct precopy_sys *s, size_t len, int prot, int flags, int fd,
				   off_t off, void **out)
{
	return s->ops->mmap(s->ctx, len, prot, flags, fd, off, out);
}
static inline int precopy_sys_munmap(const struct precopy_sys *s, void *addr, size_t len)
{
	return s->ops->munmap(s->ctx, addr, len);
}
static inline int precopy_sys_pipe2(const struct precopy_sys *s, int fds[2], int flags)
{
	return s->ops->pipe2(s->ctx, fds, flags);
}
/* -ENOSYS where the table has no send (version 2, or send NULL). */
static inline ssize_t precopy_sys_send(const struct precopy_sys *s, int fd, const void *buf, size_t len, int flags)
{
	if (s->ops->version < 3 || !s->ops->send)
		return -ENOSYS;
	return s->ops->send(s->ctx, fd, buf, len, flags);
}

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_SYS_H */
