/* SPDX-License-Identifier: MIT */
/* ioctl/sys_retry.h — the library's own calls through the sys seam.
 *
 * Every call site in the library (engine/, ioctl/) goes through these
 * instead of the public precopy_sys_*() wrappers: an op that answers
 * -EINTR (interrupted by a signal before it did anything) is made again,
 * up to PRECOPY__EINTR_RETRIES times in a row, so no call site fails a
 * migration because a signal arrived. After that many interruptions in a
 * row the -EINTR is returned (a signal storm ends the call rather than
 * holding it).
 *
 * close is the exception: Linux releases the descriptor even when close(2)
 * answers -EINTR, so it is never made again (that could close an fd another
 * thread has just been given) and -EINTR counts as closed (0).
 *
 * A poll made again starts its timeout afresh; its callers bound their
 * waits themselves. */
#ifndef PRECOPY_IOCTL_SYS_RETRY_H
#define PRECOPY_IOCTL_SYS_RETRY_H

#include <errno.h>

#include "precopy/sys.h"

#define PRECOPY__EINTR_RETRIES 1000

#define PRECOPY__EINTR_AGAIN(type, call)                                                        \
	do {                                                                                    \
		type r_;                                                                        \
		for (int n_ = 0;; n_++) {                                                       \
			r_ = (call);                                                            \
			if (r_ != -EINTR || n_ + 1 >= PRECOPY__EINTR_RETRIES)                 \
				return r_;                                                      \
		}                                                                               \
	} while (0)

static inline int precopy__sys_ioctl(const struct precopy_sys *s, int fd, unsigned long req, void *arg)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_ioctl(s, fd, req, arg));
}

static inline ssize_t precopy__sys_read(const struct precopy_sys *s, int fd, void *buf, size_t len)
{
	PRECOPY__EINTR_AGAIN(ssize_t, precopy_sys_read(s, fd, buf, len));
}

static inline ssize_t precopy__sys_write(const struct precopy_sys *s, int fd, const void *buf, size_t len)
{
	PRECOPY__EINTR_AGAIN(ssize_t, precopy_sys_write(s, fd, buf, len));
}

static inline ssize_t precopy__sys_splice(const struct precopy_sys *s, int in, int out, size_t len,
					  unsigned int flags)
{
	PRECOPY__EINTR_AGAIN(ssize_t, precopy_sys_splice(s, in, out, len, flags));
}

static inline int precopy__sys_poll(const struct precopy_sys *s, struct pollfd *fds, unsigned int n,
				    int timeout_ms)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_poll(s, fds, n, timeout_ms));
}

static inline int precopy__sys_open(const struct precopy_sys *s, const char *path, int flags)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_open(s, path, flags));
}

static inline int precopy__sys_mmap(const struct precopy_sys *s, size_t len, int prot, int flags, int fd,
				    off_t off, void **out)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_mmap(s, len, prot, flags, fd, off, out));
}

static inline int precopy__sys_munmap(const struct precopy_sys *s, void *addr, size_t len)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_munmap(s, addr, len));
}

static inline int precopy__sys_pipe2(const struct precopy_sys *s, int fds[2], int flags)
{
	PRECOPY__EINTR_AGAIN(int, precopy_sys_pipe2(s, fds, flags));
}

/* -ENOSYS where the table has no send. */
static inline ssize_t precopy__sys_send(const struct precopy_sys *s, int fd, const void *buf, size_t len,
					int flags)
{
	PRECOPY__EINTR_AGAIN(ssize_t, precopy_sys_send(s, fd, buf, len, flags));
}

static inline int precopy__sys_close(const struct precopy_sys *s, int fd)
{
	int r = precopy_sys_close(s, fd);

	return r == -EINTR ? 0 : r;
}

#endif /* PRECOPY_IOCTL_SYS_RETRY_H */
