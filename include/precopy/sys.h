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
 * optional in the same way. Version 4 added the asynchronous queue
 * (aio_open, aio_submit, aio_reap, aio_close): optional, all four or none;
 * without it the library makes plain calls (see "Asynchronous queue"). */
#define PRECOPY_SYS_OPS_VERSION 4
/* The oldest table layout the library accepts. */
#define PRECOPY_SYS_OPS_VERSION_MIN 2

/* ---- Asynchronous queue (version 4) ----------------------------------------
 *
 * Several reads and writes in flight at once, on fds that may or may not
 * support poll or O_NONBLOCK (VFIO data fds of some drivers only block in
 * read while the driver copies state out of the device). The real table
 * implements it with io_uring; the fake kernel on its virtual clock, so the
 * code that drives it is the same in a VMM, in the tests and in the
 * simulator.
 *
 * A queue holds at most `depth` operations in flight. Each submitted op
 * completes exactly once (aio_reap), with its tag and its result: what
 * read(2)/write(2) would have returned (bytes, 0 at end of file) or
 * -errno. Ops on the same fd complete in the order they were submitted
 * only if the caller waits for one before submitting the next: the library
 * keeps at most one op in flight per fd. The buffers belong to the queue
 * from submission to completion.
 *
 * The library submits writes only to fds whose writes cannot raise SIGPIPE
 * (device data fds); the stream and the return path are written with
 * plain calls (see "Signals" above). */
#define PRECOPY_SYS_AIO_READ 1u
#define PRECOPY_SYS_AIO_WRITE 2u
/* op flags: the fd may block in the call (no poll, no O_NONBLOCK): run the
 * op where blocking is harmless (io_uring: a worker thread, IOSQE_ASYNC). */
#define PRECOPY_SYS_AIO_BLOCKING 1u

struct precopy_sys_aio_op {
	uint32_t opcode; /* PRECOPY_SYS_AIO_READ or _WRITE */
	uint32_t flags;  /* PRECOPY_SYS_AIO_BLOCKING or 0 */
	int fd;
	void *buf;       /* read into / written from; len bytes */
	size_t len;
	uint64_t tag;    /* the caller's; given back with the completion */
};

struct precopy_sys_aio_done {
	uint64_t tag;
	int64_t res;     /* bytes, 0 at end of data, or -errno */
};

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
	/* Version 4, optional (all four or none). aio_open: a queue for up to
	 * depth ops in flight, run by up to workers threads where ops block
	 * (0: the table's default); 0 and *q set, or -errno. -ENOSYS or
	 * -EPERM mean "not here" (no io_uring, a seccomp filter, the
	 * io_uring_disabled sysctl): the library then makes plain calls. */
	int (*aio_open)(void *ctx, unsigned int depth, unsigned int workers, void **q);
	/* Queue n ops, all or none: 0, -EBUSY (more than depth would be in
	 * flight; nothing queued), -EINVAL (bad op), or -errno. */
	int (*aio_submit)(void *ctx, void *q, const struct precopy_sys_aio_op *ops, unsigned int n);
	/* Up to max completions into done, waiting at most timeout_ms (0: do
	 * not wait) for the first. Returns how many (0: none in time), or
	 * -errno; -EINTR: none reaped, call again. */
	int (*aio_reap)(void *ctx, void *q, struct precopy_sys_aio_done *done, unsigned int max, int timeout_ms);
	/* Cancel what is in flight, wait until it has ended, free the queue.
	 * Completions not reaped are dropped. */
	void (*aio_close)(void *ctx, void *q);
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

/* 1 if the table has the asynchronous queue (version 4, all four ops). */
static inline int precopy_sys_has_aio(const struct precopy_sys *s)
{
	return s->ops->version >= 4 && s->ops->aio_open && s->ops->aio_submit && s->ops->aio_reap &&
	       s->ops->aio_close;
}
/* -ENOSYS where the table has no asynchronous queue. */
static inline int precopy_sys_aio_open(const struct precopy_sys *s, unsigned int depth, unsigned int workers,
				       void **q)
{
	if (!precopy_sys_has_aio(s))
		return -ENOSYS;
	return s->ops->aio_open(s->ctx, depth, workers, q);
}
static inline int precopy_sys_aio_submit(const struct precopy_sys *s, void *q, const struct precopy_sys_aio_op *ops,
					 unsigned int n)
{
	return s->ops->aio_submit(s->ctx, q, ops, n);
}
static inline int precopy_sys_aio_reap(const struct precopy_sys *s, void *q, struct precopy_sys_aio_done *done,
				       unsigned int max, int timeout_ms)
{
	return s->ops->aio_reap(s->ctx, q, done, max, timeout_ms);
}
static inline void precopy_sys_aio_close(const struct precopy_sys *s, void *q)
{
	s->ops->aio_close(s->ctx, q);
}

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_SYS_H */
