/* SPDX-License-Identifier: MIT */
/* Devices served over vfio-user (precopy_engine_vfio_user) as state
 * channels: pre-copy data and the switchover drain by MIG_DATA_READ
 * requests (no data fd: the mover calls drain_read), their stop-copy size
 * by the rule of precopy/engine.h, their state read back at start, and
 * the servers' own commands answered when the engine passes by. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"
#include "../common/util.h"
#include "../ioctl/uapi_compat.h"
#include "precopy/vfio_user.h"
#include "../vfio_user/vu_priv.h"

int precopy__eng_vu_serve(struct precopy_engine *e, const char *step)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		int r;

		if (!d->vu)
			continue;
		r = precopy_vfio_user_serve(d->vu, 0);
		if (r < 0) {
			d->err = r;
			precopy__eng_seterr(e, r, "%s: " DEV_FMT ": answering its server's commands: %s (%s)", step,
					    DEV_ARGS(d), strerror(-r), precopy_vfio_user_error(d->vu));
			return r;
		}
	}
	return 0;
}

int precopy__eng_vu_read_state(struct precopy_engine *e, struct edev *d, const char *step)
{
	int r = precopy_vfio_user_get_state(d->vu, &d->vu_state);

	if (r < 0) {
		d->err = r;
		d->vu_state = VFIO_DEVICE_STATE_ERROR;
		precopy__eng_seterr(e, r, "%s: " DEV_FMT ": reading its state: %s (%s)", step, DEV_ARGS(d),
				    strerror(-r), precopy_vfio_user_error(d->vu));
	}
	return r;
}

void precopy__eng_vu_size(struct precopy_engine *e, struct edev *d, int *guess)
{
	*guess = 0;
	/* its initial data not all out yet: not converged, the size unknown
	 * (switchover waits), never reported as a small number */
	d->sc_known = !d->init_unknown;
	if (d->sc_hint) {
		d->stop_copy = d->sc_hint;
	} else if (d->sc_last) {
		d->stop_copy = d->sc_last; /* what its last drain delivered */
	} else {
		/* never drained: what it gave in this pre-copy plus a chunk */
		d->stop_copy = sat_add(d->bytes_sent, e->cfg.max_chunk);
		*guess = 1;
		precopy__eng_log(e, PRECOPY_LOG_DEBUG,
				 DEV_FMT ": stop-copy size %llu guessed (no hint, never drained)", DEV_ARGS(d),
				 (unsigned long long)d->stop_copy);
	}
}

static int vu_fail(struct precopy_engine *e, struct precopy__chan *c, int err, const char *what)
{
	struct edev *d = c->obj;

	d->err = err;
	precopy__eng_seterr(e, err, "%s: " DEV_FMT ": %s: %s (%s)",
			    e->phase == PRECOPY_ENGINE_PRECOPY && !e->switch_decided ? "pump" : "switchover",
			    DEV_ARGS(d), what, strerror(-err), precopy_vfio_user_error(d->vu));
	return err;
}

static int vu_drain_open(struct precopy_engine *e, struct precopy__chan *c, uint32_t *aio_flags)
{
	struct edev *d = c->obj;

	(void)e;
	*aio_flags = 0;
	d->sc_drained = 0;
	if (d->vu_state != VFIO_DEVICE_STATE_STOP_COPY)
		return vu_fail(e, c, -EINVAL, "not in STOP_COPY at the drain");
	return 0;
}

static void vu_sent(struct precopy_engine *e, struct precopy__chan *c, size_t n)
{
	struct edev *d = c->obj;

	d->bytes_sent += n;
	d->sc_drained += n;
	e->it_dev_bytes += n;
}

static int vu_drain_end(struct precopy_engine *e, struct precopy__chan *c)
{
	struct edev *d = c->obj;

	(void)e;
	d->sc_last = d->sc_drained; /* the next migration's size when no hint */
	return 0;
}

static int64_t vu_drain_read(struct precopy_engine *e, struct precopy__chan *c, void *buf, size_t len)
{
	struct edev *d = c->obj;
	ssize_t n = precopy_vfio_user_mig_read(d->vu, buf, len);

	(void)e;
	if (n < 0)
		return vu_fail(e, c, (int)n, "MIG_DATA_READ in STOP_COPY");
	return n;
}

static int vu_req_send(struct precopy_engine *e, struct precopy__chan *c, size_t len)
{
	struct edev *d = c->obj;
	int r = precopy__vu_read_send(d->vu, len);

	return r < 0 ? vu_fail(e, c, r, "MIG_DATA_READ in STOP_COPY") : 0;
}

static int64_t vu_req_reap(struct precopy_engine *e, struct precopy__chan *c, void *buf)
{
	struct edev *d = c->obj;
	ssize_t n = precopy__vu_read_reap(d->vu, buf);

	if (n < 0 && n != -EAGAIN)
		return vu_fail(e, c, (int)n, "MIG_DATA_READ in STOP_COPY");
	return n;
}

static int vu_req_fds(struct precopy_engine *e, struct precopy__chan *c, int fds[2])
{
	struct edev *d = c->obj;

	(void)e;
	return precopy__vu_poll_fds(d->vu, fds);
}

static uint64_t vu_pump_begin(struct precopy_engine *e, struct precopy__chan *c)
{
	struct edev *d = c->obj;
	uint64_t left;

	if (!d->pre_copy)
		return 0;
	/* its initial data: to the first 0-byte read (vfio-user cannot say
	 * how much there is); after it, what the last call got plus a chunk */
	if (d->init_unknown)
		return UINT64_MAX;
	left = sat_add(d->pump_got, e->cfg.max_chunk);
	d->pump_got = 0;
	return left;
}

static int64_t vu_pump_read(struct precopy_engine *e, struct precopy__chan *c, size_t want)
{
	struct edev *d = c->obj;
	uint64_t t0 = precopy__eng_now(e), dt;
	ssize_t n = precopy_vfio_user_mig_read(d->vu, e->payload, want);
	int r;

	dt = precopy__eng_now(e) - t0;
	if (n < 0)
		return vu_fail(e, c, (int)n, "MIG_DATA_READ in PRE_COPY");
	if (n == 0) {
		/* "nothing now": the initial data, whatever it was, is out */
		if (d->init_unknown) {
			d->init_unknown = 0;
			r = precopy__eng_dev_initial_check(e, d);
			if (r < 0)
				return r;
		}
		return 0;
	}
	c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)n);
	c->rd_ns = sat_add(c->rd_ns, dt);
	e->pump_read_ns = sat_add(e->pump_read_ns, dt);
	r = precopy_stream_encode_data(e->rec, e->rec_cap, d->cfg.id, e->payload, (uint32_t)n);
	if (r < 0)
		return vu_fail(e, c, r, "encoding its data");
	r = precopy__eng_emit(e, e->rec, (size_t)r);
	if (r < 0)
		return r;
	d->bytes_sent += (uint64_t)n;
	e->it_dev_bytes += (uint64_t)n;
	if (!d->init_unknown) {
		d->pump_got += (uint64_t)n;
		d->dirty_read += (uint64_t)n;
	}
	return n;
}

const struct precopy__chan_ops precopy__chan_vu_ops = {
	.drain_open = vu_drain_open,
	.sent = vu_sent,
	.drain_end = vu_drain_end,
	.fail = vu_fail,
	.pump_begin = vu_pump_begin,
	.pump_read = vu_pump_read,
	.drain_read = vu_drain_read,
	.req_send = vu_req_send,
	.req_reap = vu_req_reap,
	.req_fds = vu_req_fds,
};
