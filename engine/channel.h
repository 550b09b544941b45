/* SPDX-License-Identifier: MIT */
/* engine/channel.h — state channels of the source engine (internal).
 *
 * A channel is one thing whose state moves in the device-state stream
 * under its own id: a VFIO device (engine/devio.c) or an fd-based
 * back-end (engine/backend_dev.c) or a device served over vfio-user
 * (engine/vuchan.c).
 * The mover (engine/mover.c) drains every channel at switchover through
 * this interface alone, never through a device kind.
 *
 * Contract of the ops, all called from the engine's thread:
 *  - drain_open: make the channel ready to give its state to end of data;
 *    returns the fd to read (owned by the channel) with *aio_flags for
 *    the asynchronous queue (PRECOPY_SYS_AIO_BLOCKING where a read may
 *    block), or -errno with the engine's error set and the step named;
 *  - sent: n bytes read from the fd went into the stream;
 *  - drain_end: end of data was read: finish (a back-end's verdict);
 *    returns 0, or -errno with the error set;
 *  - fail: the channel failed at `what` with err: record it and set the
 *    engine's error naming the channel; returns err;
 *  - pump_begin (NULL: the channel has no pre-copy data): before a pump
 *    call; returns the bytes this call may take from it without a budget
 *    (what it reported plus one chunk), 0 when it is not in pre-copy;
 *  - pump_read: one read of up to want bytes of pre-copy data into the
 *    stream (records, markers); returns the bytes sent, 0 when it has
 *    nothing now, or -errno with the error set;
 *  - drain_read (NULL: the channel has a data fd): a channel without a data
 *    fd (vfio-user: request and reply) reads its state itself; drain_open
 *    then returns 0 and the mover calls drain_read for up to len bytes
 *    into buf: the count, 0 at end of data, or -errno (the channel's fail
 *    already called). One call is one bounded request;
 *  - req_send, req_reap, req_fds (with drain_read; NULL: not split): the
 *    same request in two halves, so that the concurrent drain keeps one
 *    request in flight on every such channel at once: req_send sends a
 *    request for up to len bytes (0 or -errno, fail called); req_reap
 *    answers what the server asked meanwhile and takes the reply if it is
 *    there: the count into buf (room for len), 0 at end of data, -EAGAIN
 *    not yet, or -errno (fail called); req_fds gives the fds to poll for
 *    POLLIN while a request is in flight (returns 1 or 2).
 * A channel left open by a failure is closed by the engine's unwind. */
#ifndef PRECOPY_ENGINE_CHANNEL_H
#define PRECOPY_ENGINE_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

struct precopy_engine;
struct precopy__chan;

struct precopy__chan_ops {
	int (*drain_open)(struct precopy_engine *e, struct precopy__chan *c, uint32_t *aio_flags);
	void (*sent)(struct precopy_engine *e, struct precopy__chan *c, size_t n);
	int (*drain_end)(struct precopy_engine *e, struct precopy__chan *c);
	int (*fail)(struct precopy_engine *e, struct precopy__chan *c, int err, const char *what);
	uint64_t (*pump_begin)(struct precopy_engine *e, struct precopy__chan *c);
	int64_t (*pump_read)(struct precopy_engine *e, struct precopy__chan *c, size_t want);
	int64_t (*drain_read)(struct precopy_engine *e, struct precopy__chan *c, void *buf, size_t len);
	int (*req_send)(struct precopy_engine *e, struct precopy__chan *c, size_t len);
	int64_t (*req_reap)(struct precopy_engine *e, struct precopy__chan *c, void *buf);
	int (*req_fds)(struct precopy_engine *e, struct precopy__chan *c, int fds[2]);
};

struct precopy__chan {
	const struct precopy__chan_ops *ops;
	void *obj;             /* struct edev (VFIO or vfio-user) / struct ebe */
	uint32_t id;           /* the stream's id */
	uint64_t *bytes_sent;  /* the channel's total, written in its DEV_END */
	/* read timing of plain reads (pre-copy, serial drain): the device's
	 * measured read rate, kept across migrations */
	uint64_t rd_bytes, rd_ns;
	/* the pump call in progress */
	int idle;              /* nothing more from it in this call */
	uint64_t call_left;    /* bytes it may still give in this call */
};

extern const struct precopy__chan_ops precopy__chan_vfio_ops;
extern const struct precopy__chan_ops precopy__chan_backend_ops;

#endif /* PRECOPY_ENGINE_CHANNEL_H */
