/* SPDX-License-Identifier: MIT */
/* The real syscall table: the one place where errno becomes a return value. */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "precopy/sys.h"
#include "sys_aio.h"

/* Every real op funnels its result through here. */
static long ret_or_errno(long r)
{
	return r < 0 ? -(long)errno : r;
}

static int real_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	return (int)ret_or_errno(ioctl(fd, req, arg));
}

static ssize_t real_read(void *ctx, int fd, void *buf, size_t len)
{
	return ret_or_errno(read(fd, buf, len));
}

static ssize_t real_write(void *ctx, int fd, const void *buf, size_t len)
{
	return ret_or_errno(write(fd, buf, len));
}

static ssize_t real_splice(void *ctx, int in, int out, size_t len, unsigned int flags)
{
	return ret_or_errno(splice(in, NULL, out, NULL, len, flags));
}

static int real_poll(void *ctx, struct pollfd *fds, unsigned int n, int timeout_ms)
{
	return (int)ret_or_errno(poll(fds, n, timeout_ms));
}

static int real_open(void *ctx, const char *path, int flags)
{
	return (int)ret_or_errno(open(path, flags | O_CLOEXEC));
}

static int real_close(void *ctx, int fd)
{
	return (int)ret_or_errno(close(fd));
}

static int real_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

static int real_munmap(void *ctx, void *addr, size_t len)
{
	return (int)ret_or_errno(munmap(addr, len));
}

static int real_pipe2(void *ctx, int fds[2], int flags)
{
	return (int)ret_or_errno(pipe2(fds, flags | O_CLOEXEC));
}

static ssize_t real_send(void *ctx, int fd, const void *buf, size_t len, int flags)
{
	return ret_or_errno(send(fd, buf, len, flags));
}

static const struct precopy_sys_ops real_ops = {
	.version = PRECOPY_SYS_OPS_VERSION,
	.ioctl = real_ioctl,
	.read = real_read,
	.write = real_write,
	.splice = real_splice,
	.poll = real_poll,
	.open = real_open,
	.close = real_close,
	.mmap = real_mmap,
	.munmap = real_munmap,
	.pipe2 = real_pipe2,
	.send = real_send,
	.aio_open = precopy__sys_aio_open,
	.aio_submit = precopy__sys_aio_submit,
	.aio_reap = precopy__sys_aio_reap,
	.aio_close = precopy__sys_aio_close,
};

static const struct precopy_sys real_sys = { .ops = &real_ops, .ctx = NULL };

PRECOPY_API const struct precopy_sys *precopy_sys_real(void)
{
	return &real_sys;
}

PRECOPY_API int precopy_sys_validate(const struct precopy_sys *sys)
{
	const struct precopy_sys_ops *o;

	if (!sys || !(o = sys->ops) || o->version < PRECOPY_SYS_OPS_VERSION_MIN ||
	    o->version > PRECOPY_SYS_OPS_VERSION)
		return -EINVAL;
	if (!o->ioctl || !o->read || !o->write || !o->splice || !o->poll || !o->open ||
	    !o->close || !o->mmap || !o->munmap || !o->pipe2)
		return -EINVAL;
	/* the asynchronous queue: all four ops or none */
	if (o->version >= 4 && (!o->aio_open + !o->aio_submit + !o->aio_reap + !o->aio_close) % 4)
		return -EINVAL;
	return 0;
}
