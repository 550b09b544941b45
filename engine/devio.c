/* SPDX-License-Identifier: MIT */
/* The source side of the device-state stream and of the return path:
 * records written to the stream fd (through sys) or the sink, device
 * pre-copy data read from the data fds into DEV_DATA records, the
 * "initial data sent" marker, the drain to end of data at switchover, and
 * the switchover-ack rules on the return path.
 *
 * Design: one read -> encode -> write loop over precopy/stream.h records
 * (per-device setup, marker and end records interleaved with the data in
 * one ordered byte stream; the marker follows exactly the bytes that made
 * a device's initial data), over any sys seam and a sink callback on a
 * virtual clock. One bounded buffer per engine, no I/O left in flight
 * between calls. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../ioctl/sys_retry.h"
#include "../ioctl/vfio_mig_priv.h"
#include "../common/util.h"

#define RP_BUF 512

static int rp_event(void *opaque, const struct precopy_stream_rp_event *ev);

int precopy__eng_rp_open(struct precopy_engine *e)
{
	return precopy_stream_rp_decoder_new(&e->rp, rp_event, e);
}

void precopy__eng_rp_close(struct precopy_engine *e)
{
	precopy_stream_rp_decoder_free(e->rp);
	e->rp = NULL;
}

static int emit_rec(struct precopy_engine *e, int n, const char *what, uint32_t id)
{
	if (n < 0) {
		precopy__eng_seterr(e, n, "stream: encoding %s of device %u: %s", what, id, strerror(-n));
		return n;
	}
	return precopy__eng_emit(e, e->rec, (size_t)n);
}

int precopy__eng_emit_setup_all(struct precopy_engine *e)
{
	int r = emit_rec(e, precopy_stream_encode_stream_hdr(e->rec, e->rec_cap, e->ndev + e->nbe,
								   e->cfg.max_chunk),
			 "header", PRECOPY_STREAM_DEV_NONE);

	for (uint32_t i = 0; i < e->ndev && r == 0; i++) {
		struct edev *d = &e->devs[i];
		struct precopy_stream_dev_setup s = {
			.dev_id = d->cfg.id,
			.mig_flags = (uint32_t)(d->mig_flags & PRECOPY_STREAM_MIG_ALL),
			.pci_vendor = d->cfg.pci_vendor,
			.pci_device = d->cfg.pci_device,
			.initial_bytes = d->init_left,
		};
		/* the stream says what this migration does: PRE_COPY only if used */
		if (!d->pre_copy)
			s.mig_flags &= ~PRECOPY_STREAM_MIG_PRE_COPY;
		memcpy(s.name, d->name, sizeof(s.name));
		r = emit_rec(e, precopy_stream_encode_dev_setup(e->rec, e->rec_cap, &s), "setup", d->cfg.id);
	}
	return r < 0 ? r : precopy__eng_be_emit_setup(e);
}

/* DEV_INITIAL_SENT once a PRE_COPY device's initial bytes are all sent. */
int precopy__eng_dev_initial_check(struct precopy_engine *e, struct edev *d)
{
	if (!d->pre_copy || d->initial_sent || d->init_left || d->init_unknown)
		return 0;
	d->initial_sent = 1;
	return emit_rec(e, precopy_stream_encode_initial_sent(e->rec, e->rec_cap, d->cfg.id), "initial-sent marker",
			d->cfg.id);
}

int precopy__eng_dev_refresh_info(struct precopy_engine *e, struct edev *d, int first)
{
	uint64_t init = 0, dirty = 0;
	int r;

	if (!d->pre_copy && !first)
		return 0;
	if (d->vu) {
		/* no precopy info in vfio-user: what the last pump call read
		 * after the initial data stands for the dirty bytes */
		d->dirty = d->pump_got;
		return 0;
	}
	r = precopy_vfio_dev_precopy_info(d->vd, &init, &dirty);
	if (r < 0) {
		d->err = r;
		precopy__eng_seterr(e, r, "device %u: precopy info: %s", d->cfg.id, strerror(-r));
		return r;
	}
	/* The countdown starts from the first report and only falls with the
	 * bytes read: a driver may count bytes it has queued but we have not
	 * read yet as already gone. */
	if (first)
		d->init_left = init;
	d->dirty = dirty;
	return 0;
}

static int emit_data(struct precopy_engine *e, struct edev *d, size_t n)
{
	int r = emit_rec(e, precopy_stream_encode_data(e->rec, e->rec_cap, d->cfg.id, e->payload, (uint32_t)n),
			 "data", d->cfg.id);

	if (r < 0)
		return r;
	d->bytes_sent += n;
	e->it_dev_bytes += n;
	if (d->init_left) {
		uint64_t a = n < d->init_left ? n : d->init_left;
		d->init_left -= a;
		n -= a;
	}
	d->dirty_read += n;
	return 0;
}

/* ---- the VFIO device as a state channel (engine/channel.h) ---------------- */

static int vfio_fail(struct precopy_engine *e, struct precopy__chan *c, int err, const char *what)
{
	struct edev *d = c->obj;

	d->err = err;
	precopy__eng_seterr(e, err, "switchover: " DEV_FMT ": %s: %s", DEV_ARGS(d), what, strerror(-err));
	return err;
}

static int vfio_drain_open(struct precopy_engine *e, struct precopy__chan *c, uint32_t *aio_flags)
{
	struct edev *d = c->obj;
	struct precopy_vfio_dev_status st;

	precopy_vfio_dev_status(d->vd, &st);
	if (st.data_fd < 0)
		return vfio_fail(e, c, -EBADF, "no data fd in STOP_COPY");
	/* some drivers' data fds only block in read() while the device
	 * copies its state out: never assume poll or O_NONBLOCK */
	*aio_flags = PRECOPY_SYS_AIO_BLOCKING;
	return st.data_fd;
}

static void vfio_sent(struct precopy_engine *e, struct precopy__chan *c, size_t n)
{
	struct edev *d = c->obj;

	precopy__vfio_dev_count_read(d->vd, n);
	d->bytes_sent += n;
	e->it_dev_bytes += n;
}

static int vfio_drain_end(struct precopy_engine *e, struct precopy__chan *c)
{
	return 0;
}

static uint64_t vfio_pump_begin(struct precopy_engine *e, struct precopy__chan *c)
{
	struct edev *d = c->obj;
	uint64_t left;

	if (!d->pre_copy)
		return 0;
	/* without a budget: at most what the device reported plus one chunk,
	 * so a device dirtying faster than we read cannot hold the call */
	left = d->init_left + d->dirty + e->cfg.max_chunk;
	return left < e->cfg.max_chunk ? UINT64_MAX : left; /* near-u64 sizes reported */
}

/* One read of up to want bytes from a PRE_COPY device. Returns bytes sent,
 * 0 when it has nothing now, or -errno. */
static int64_t vfio_pump_read(struct precopy_engine *e, struct precopy__chan *c, size_t want)
{
	struct edev *d = c->obj;
	uint64_t t0 = precopy__eng_now(e);
	ssize_t n = precopy_vfio_dev_read(d->vd, e->payload, want);
	int r;

	if (n > 0) { /* the device's read rate, for the drain's downtime */
		uint64_t dt = precopy__eng_now(e) - t0;

		c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)n);
		c->rd_ns = sat_add(c->rd_ns, dt);
		e->pump_read_ns = sat_add(e->pump_read_ns, dt);
	}
	if (n == -ENOMSG || n == -EAGAIN || n == 0) {
		if (n == -ENOMSG)
			d->init_left = 0; /* the device has nothing at all, initial included */
		r = precopy__eng_dev_initial_check(e, d);
		return r < 0 ? r : 0;
	}
	if (n < 0) {
		d->err = (int)n;
		precopy__eng_seterr(e, (int)n, "pump: device %u: data read: %s", d->cfg.id, strerror((int)-n));
		return n;
	}
	r = emit_data(e, d, (size_t)n);
	if (r == 0)
		r = precopy__eng_dev_initial_check(e, d);
	return r < 0 ? r : n;
}

const struct precopy__chan_ops precopy__chan_vfio_ops = {
	.drain_open = vfio_drain_open,
	.sent = vfio_sent,
	.drain_end = vfio_drain_end,
	.fail = vfio_fail,
	.pump_begin = vfio_pump_begin,
	.pump_read = vfio_pump_read,
};

/* ---- the return path ------------------------------------------------------------ */

int precopy__eng_ack(struct precopy_engine *e)
{
	if (e->switch_decided) {
		precopy__eng_seterr(e, -EPROTO, "return path: switchover-ack arrived after the switchover decision");
		return -EPROTO;
	}
	if (e->acked) {
		precopy__eng_seterr(e, -EPROTO, "return path: switchover-ack arrived twice");
		return -EPROTO;
	}
	if (!e->need_ack) {
		precopy__eng_seterr(e, -EPROTO, "return path: switchover-ack arrived but no device is in PRE_COPY");
		return -EPROTO;
	}
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		if (d->pre_copy && !d->initial_sent) {
			precopy__eng_seterr(e, -EPROTO,
				   "return path: switchover-ack arrived too early: device %u has not sent its initial data",
				   d->cfg.id);
			return -EPROTO;
		}
	}
	e->acked = 1;
	return 0;
}

static int rp_event(void *opaque, const struct precopy_stream_rp_event *ev)
{
	struct precopy_engine *e = opaque;

	if (ev->type == PRECOPY_STREAM_RP_EV_ACK)
		return precopy__eng_ack(e);
	if (ev->dev_id == PRECOPY_STREAM_DEV_NONE)
		precopy__eng_seterr(e, -ev->code, "return path: destination error: %s (%s)", ev->reason, strerror(ev->code));
	else
		precopy__eng_seterr(e, -ev->code, "return path: destination error on device %u: %s (%s)", ev->dev_id,
			   ev->reason, strerror(ev->code));
	return -ev->code;
}

int precopy__eng_rp_feed(struct precopy_engine *e, const void *buf, size_t len)
{
	int r = precopy_stream_rp_decoder_feed(e->rp, buf, len);

	if (r < 0)
		precopy__eng_seterr(e, r, "return path: %s", precopy_stream_rp_decoder_error(e->rp));
	return r;
}

/* Read what the return path holds now, without blocking. */
int precopy__eng_rp_poll(struct precopy_engine *e)
{
	uint8_t buf[RP_BUF];

	if (e->cfg.rp_fd < 0 || e->rp_eof)
		return 0;
	for (;;) {
		struct pollfd pfd = { .fd = e->cfg.rp_fd, .events = POLLIN };
		int p = precopy__sys_poll(e->cfg.sys, &pfd, 1, 0);
		ssize_t n;
		int r;

		if (p == -EINTR)
			continue;
		if (p < 0) {
			precopy__eng_seterr(e, p, "return path: poll: %s", strerror(-p));
			return p;
		}
		if (p == 0)
			return 0;
		n = precopy__sys_read(e->cfg.sys, e->cfg.rp_fd, buf, sizeof(buf));
		if (n == -EAGAIN || n == -EINTR)
			return 0;
		if (n < 0) {
			precopy__eng_seterr(e, (int)n, "return path: read: %s", strerror((int)-n));
			return (int)n;
		}
		if (n == 0) {
			e->rp_eof = 1;
			r = precopy_stream_rp_decoder_finish(e->rp);
			if (r < 0) {
				precopy__eng_seterr(e, r, "return path: %s", precopy_stream_rp_decoder_error(e->rp));
				return r;
			}
			if (e->need_ack && !e->acked && !e->switch_decided) {
				precopy__eng_seterr(e, -EPIPE, "return path: closed by the destination before its switchover-ack");
				return -EPIPE;
			}
			return 0;
		}
		r = precopy__eng_rp_feed(e, buf, (size_t)n);
		if (r < 0)
			return r;
	}
}


