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
 * Thread safety: the real table is stateless and may be used from any
 * thread. A fake table documents its own rules (sim/).
 */
#ifndef PRECOPY_SYS_H
#define PRECOPY_SYS_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "precopy/export.h"

/* Version 2 added pipe2 at the end of the table; a version 1 table (built
 * against the older, shorter struct) is rejected by precopy_sys_validate(). */
#define PRECOPY_SYS_OPS_VERSION 2

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
};

struct precopy_sys {
	const struct precopy_sys_ops *ops;
	void *ctx;
};

/* The table that calls the real kernel. Never NULL; ctx is unused. */
PRECOPY_API const struct precopy_sys *precopy_sys_real(void);

/* Returns 0 if sys is usable (non-NULL, known version, every op present),
 * -EINVAL otherwise. */
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

#endif /* PRECOPY_SYS_H */
