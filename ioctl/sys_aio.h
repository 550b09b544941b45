/* SPDX-License-Identifier: MIT */
/* ioctl/sys_aio.h — the real table's asynchronous queue (io_uring), the
 * aio_* ops of precopy/sys.h (internal; ioctl/sys.c puts them in the real
 * table; rationale in docs/io.md, "The asynchronous queue on io_uring"). */
#ifndef PRECOPY_IOCTL_SYS_AIO_H
#define PRECOPY_IOCTL_SYS_AIO_H

#include "precopy/sys.h"

/* The largest depth a queue accepts: io_uring's ring holds at most 32768
 * entries, and the queue keeps one beyond depth for its own use. */
#define PRECOPY__SYS_AIO_DEPTH_MAX 32767u

int precopy__sys_aio_open(void *ctx, unsigned int depth, unsigned int workers, void **q);
int precopy__sys_aio_submit(void *ctx, void *q, const struct precopy_sys_aio_op *ops, unsigned int n);
int precopy__sys_aio_reap(void *ctx, void *q, struct precopy_sys_aio_done *done, unsigned int max, int timeout_ms);
void precopy__sys_aio_close(void *ctx, void *q);

#endif /* PRECOPY_IOCTL_SYS_AIO_H */
