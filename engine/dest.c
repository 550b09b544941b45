/* SPDX-License-Identifier: MIT */
/* The destination engine: devices to RESUMING, the device-state stream
 * decoded incrementally (precopy/stream.h) with each DEV_DATA slice written
 * to its device's data fd (or its fd-based back-end's load pipe) as it
 * arrives, the switchover-ack once every PRE_COPY device's initial data is
 * loaded, each back-end's verdict at its DEV_END, an RP_ERROR on failure,
 * and the devices to RUNNING at the end. */
#include <errno.h>
#include <stddef.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/dest.h"
#include "dest_load.h"
#include "io_bound.h"
#include "log_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../ioctl/sys_retry.h"
#include "../ioctl/vfio_mig_priv.h"
#include "../vfio_user/vu_priv.h"

#define READ_BUF (64u * 1024)
#define POLL_MS 10 /* longest single poll of a write wait */

enum { D_IDLE, D_LOADING, D_ENDED, D_DONE };

struct ddev {
	uint32_t id;
	struct precopy_vfio_dev *vd;
	uint64_t mig_flags;
	uint32_t src_flags;   /* from DEV_SETUP */
	int setup, initial, ended;
	uint64_t bytes;
	struct precopy_vfio_user *vu; /* a device served over vfio-user, else NULL */
	uint32_t vu_state;            /* its state as last moved or read */
};

/* An fd-based back-end (precopy/backend.h), loading. */
struct dbe {
	uint32_t id;
	struct precopy_backend_xfer *x;
	int fd;               /* our end of the load pipe while loading, or -1 */
	int fd_kind;          /* PRECOPY__FD_*: what fd turned out to be */
	int setup, checked;
	uint64_t bytes;
};

struct precopy_dest {
	struct precopy_dest_config cfg;
	int interrupted;      /* precopy_dest_interrupt(): atomic */
	struct ddev *devs;
	uint32_t *ids;        /* devices, then back-ends */
	uint32_t n;
	struct dbe *bes;
	uint32_t nbe;
	int phase;
	struct precopy_stream_decoder *dec;
	uint32_t declared;
	int acked;
	int rp_kind;          /* PRECOPY__FD_*: what rp_fd turned out to be */
	uint8_t *buf;
	struct precopy__load *load; /* concurrent device writes, or NULL: plain */
	int concurrent;             /* this load opened one */
	int err;
	uint32_t err_dev;     /* the device or back-end the failure concerns, or NONE */
	char errmsg[256];
};

static void seterr(struct precopy_dest *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(struct precopy_dest *d, int err, const char *fmt, ...)
{
	va_list ap;

	size_t off = 0;

	if (d->err)
		return;
	d->err = err;
	/* a wait that ended because of precopy_dest_interrupt() says so first */
	if (err == -ECANCELED && __atomic_load_n(&d->interrupted, __ATOMIC_ACQUIRE) &&
	    strncmp(fmt, "interrupted", 11) != 0)
		off = (size_t)snprintf(d->errmsg, sizeof(d->errmsg), "interrupted by precopy_dest_interrupt(): ");
	va_start(ap, fmt);
	vsnprintf(d->errmsg + off, sizeof(d->errmsg) - off, fmt, ap);
	va_end(ap);
	precopy__log(d->cfg.log, d->cfg.log_ctx, d->cfg.log_level, PRECOPY_LOG_ERROR, "%s", d->errmsg);
}

static int on_event(void *opaque, const struct precopy_stream_event *ev);

static struct ddev *find(struct precopy_dest *d, uint32_t id)
{
	for (uint32_t i = 0; i < d->n; i++)
		if (d->devs[i].id == id)
			return &d->devs[i];
	return NULL;
}

static struct dbe *find_be(struct precopy_dest *d, uint32_t id)
{
	for (uint32_t i = 0; i < d->nbe; i++)
		if (d->bes[i].id == id)
			return &d->bes[i];
	return NULL;
}

/* Is id used by an earlier device or back-end of the config? */
static int id_taken(const struct precopy_dest_config *c, uint32_t id, uint32_t ndev, uint32_t nbe)
{
	if (ndev > c->ndevices) { /* the vfio-user devices follow the VFIO ones */
		for (uint32_t j = 0; j < ndev - c->ndevices; j++)
			if (c->vfio_user[j].id == id)
				return 1;
		ndev = c->ndevices;
	}
	for (uint32_t j = 0; j < ndev; j++)
		if (c->devices[j].id == id)
			return 1;
	for (uint32_t j = 0; j < nbe; j++)
		if (c->backends[j].id == id)
			return 1;
	return 0;
}

static size_t config_size(uint32_t version)
{
	return version == 1   ? offsetof(struct precopy_dest_config, log)
	       : version == 2 ? offsetof(struct precopy_dest_config, vfio_user)
			      : sizeof(struct precopy_dest_config);
}

PRECOPY_API int precopy_dest_config_check(const struct precopy_dest_config *in, char *msg, size_t len)
{
	struct precopy_stream_decoder *dec = NULL;
	struct precopy_dest_config c;
	const struct precopy_dest_config *cfg = &c;

	if (msg && len)
		msg[0] = 0;
	if (!in)
		return precopy__refuse(msg, len, -EINVAL, "config: NULL");
	if (in->version < 1 || in->version > PRECOPY_DEST_CONFIG_VERSION)
		return precopy__refuse(msg, len, -EINVAL,
			   "version: %u, this library takes 1 to %u (start from precopy_dest_config_init())",
			   in->version, PRECOPY_DEST_CONFIG_VERSION);
	/* a version 1 struct ends before `log`, a version 2 before
	 * `vfio_user`: only its bytes are read */
	memset(&c, 0, sizeof(c));
	memcpy(&c, in, config_size(in->version));
	if (c.log_level > PRECOPY_LOG_DEBUG)
		return precopy__refuse(msg, len, -EINVAL, "log_level: %u, at most PRECOPY_LOG_DEBUG (3)", c.log_level);
	if (!cfg->clock.now_ns)
		return precopy__refuse(msg, len, -EINVAL, "clock.now_ns: required");
	if (precopy_sys_validate(cfg->sys) < 0)
		return precopy__refuse(msg, len, -EINVAL, "sys: NULL, an unknown version, or an op missing (precopy_sys_real() in a VMM)");
	if (cfg->ndevices && !cfg->devices)
		return precopy__refuse(msg, len, -EINVAL, "devices: NULL with ndevices %u", cfg->ndevices);
	if (cfg->nbackends && !cfg->backends)
		return precopy__refuse(msg, len, -EINVAL, "backends: NULL with nbackends %u", cfg->nbackends);
	if ((cfg->rp_fd >= 0) == (cfg->rp_sink != NULL))
		return precopy__refuse(msg, len, -EINVAL, "rp_fd / rp_sink: exactly one (rp_fd %d, rp_sink %s)", cfg->rp_fd,
			   cfg->rp_sink ? "set" : "NULL");
	if (cfg->nvfio_user && !cfg->vfio_user)
		return precopy__refuse(msg, len, -EINVAL, "vfio_user: NULL with nvfio_user %u", cfg->nvfio_user);
	if ((uint64_t)cfg->ndevices + cfg->nbackends + cfg->nvfio_user > PRECOPY_STREAM_CAP_MAX_DEVICES)
		return precopy__refuse(msg, len, -E2BIG, "ndevices + nbackends + nvfio_user: %llu, at most %u",
			   (unsigned long long)cfg->ndevices + cfg->nbackends + cfg->nvfio_user,
			   PRECOPY_STREAM_CAP_MAX_DEVICES);
	for (uint32_t i = 0; i < cfg->nvfio_user; i++) {
		if (cfg->vfio_user[i].id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (!cfg->vfio_user[i].dev)
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].dev: NULL (a connected precopy_vfio_user handle)", i);
		if (id_taken(cfg, cfg->vfio_user[i].id, cfg->ndevices + i, cfg->nbackends))
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].id: %u is taken by a device, a back-end or an earlier "
				   "vfio-user device", i, cfg->vfio_user[i].id);
	}
	for (uint32_t i = 0; i < cfg->ndevices; i++) {
		if (cfg->devices[i].id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (cfg->devices[i].device_fd < 0)
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].device_fd: %d is not an open fd", i,
				   cfg->devices[i].device_fd);
		if (id_taken(cfg, cfg->devices[i].id, i, 0))
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].id: %u is taken by an earlier device", i,
				   cfg->devices[i].id);
	}
	for (uint32_t i = 0; i < cfg->nbackends; i++) {
		if (cfg->backends[i].id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "backends[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (id_taken(cfg, cfg->backends[i].id, cfg->ndevices + cfg->nvfio_user, i))
			return precopy__refuse(msg, len, -EINVAL, "backends[%u].id: %u is taken by a device or an earlier back-end",
				   i, cfg->backends[i].id);
	}
	/* the limits' ranges are the decoder's to judge */
	if (precopy_stream_decoder_new(&dec, &cfg->limits, NULL, 0, on_event, NULL) < 0)
		return precopy__refuse(msg, len, -EINVAL, "limits: a field out of its range (precopy/stream.h)");
	precopy_stream_decoder_free(dec);
	return 0;
}

PRECOPY_API struct precopy_dest *precopy_dest_new(const struct precopy_dest_config *cfg, int *err)
{
	struct precopy_dest *d = NULL;
	int r = precopy_dest_config_check(cfg, NULL, 0);

	if (r < 0)
		goto fail;
	r = -ENOMEM;
	d = calloc(1, sizeof(*d));
	if (!d)
		goto fail;
	memcpy(&d->cfg, cfg, config_size(cfg->version));
	d->cfg.devices = NULL;
	d->cfg.backends = NULL;
	d->cfg.vfio_user = NULL;
	if (!d->cfg.io_timeout_ns)
		d->cfg.io_timeout_ns = 10000000000ull;
	d->n = cfg->ndevices + (cfg->version >= 3 ? cfg->nvfio_user : 0);
	d->nbe = cfg->nbackends;
	d->devs = calloc(d->n ? d->n : 1, sizeof(*d->devs));
	d->bes = calloc(d->nbe ? d->nbe : 1, sizeof(*d->bes));
	d->ids = calloc(d->n + d->nbe ? d->n + d->nbe : 1, sizeof(*d->ids));
	d->buf = malloc(READ_BUF);
	if (!d->devs || !d->bes || !d->ids || !d->buf)
		goto fail;
	for (uint32_t i = 0; i < d->nbe; i++)
		d->bes[i].fd = -1;
	for (uint32_t i = 0; i < d->nbe; i++) {
		d->bes[i].id = d->ids[d->n + i] = cfg->backends[i].id;
		d->bes[i].x = precopy_backend_xfer_new(cfg->backends[i].ops, cfg->backends[i].ctx, cfg->sys, &r);
		if (!d->bes[i].x)
			goto fail;
	}
	for (uint32_t i = cfg->ndevices; i < d->n; i++) {
		struct ddev *v = &d->devs[i];

		v->id = d->ids[i] = cfg->vfio_user[i - cfg->ndevices].id;
		v->vu = cfg->vfio_user[i - cfg->ndevices].dev;
		r = precopy_vfio_user_migration_flags(v->vu, &v->mig_flags);
		if (r == 0)
			r = precopy_vfio_user_get_state(v->vu, &v->vu_state);
		if (r < 0)
			goto fail;
		if (!(v->mig_flags & VFIO_MIGRATION_STOP_COPY)) {
			r = -EOPNOTSUPP;
			goto fail;
		}
	}
	for (uint32_t i = 0; i < cfg->ndevices; i++) {
		struct precopy_vfio_dev_status st;

		d->devs[i].id = d->ids[i] = cfg->devices[i].id;
		d->devs[i].vd = precopy_vfio_dev_new(cfg->sys, cfg->devices[i].device_fd, &r);
		if (!d->devs[i].vd)
			goto fail;
		precopy_vfio_dev_status(d->devs[i].vd, &st);
		d->devs[i].mig_flags = st.mig_flags;
	}
	/* the limits are checked by the decoder: try one now, so a bad limit
	 * is an error of this call */
	r = precopy_stream_decoder_new(&d->dec, &d->cfg.limits, d->ids, d->n + d->nbe, on_event, d);
	if (r < 0)
		goto fail;
	precopy_stream_decoder_free(d->dec);
	d->dec = NULL;
	if (err)
		*err = 0;
	return d;
fail:
	precopy_dest_free(d);
	if (err)
		*err = r;
	return NULL;
}

/* A device to target (recovering to recover on failure): VFIO through
 * its handle, vfio-user one arc at a time. */
static int dev_move(struct ddev *v, uint32_t target, uint32_t recover)
{
	if (v->vu)
		return precopy__vu_move(v->vu, &v->vu_state, target, v->mig_flags, recover, NULL, NULL);
	return precopy_vfio_dev_set_state(v->vd, target, recover);
}

static uint32_t dev_state(const struct ddev *v)
{
	struct precopy_vfio_dev_status st;

	if (v->vu)
		return v->vu_state;
	precopy_vfio_dev_status(v->vd, &st);
	return st.state;
}

/* ": <the vfio-user client's message>" for a vfio-user device, else "". */
static const char *vu_msg(const struct ddev *v, char *buf, size_t len)
{
	if (!v->vu)
		return "";
	snprintf(buf, len, " (%s)", precopy_vfio_user_error(v->vu));
	return buf;
}

static int unwind(struct precopy_dest *d)
{
	int first = 0;

	/* writes in flight end (cancelled) before their fds close */
	precopy__load_close(d->load);
	d->load = NULL;
	for (uint32_t i = 0; i < d->n; i++) {
		struct ddev *v = &d->devs[i];
		/* a vfio-user device is reset out of RESUMING: walking
		 * RESUMING -> STOP would load (and check) a partial stream */
		int r = v->vu ? precopy__vu_abort(v->vu, &v->vu_state, v->mig_flags)
			      : dev_move(v, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0 && !first) {
			char m[340];

			first = r;
			seterr(d, r, "cancel: device %u: back to RUNNING: %s%s", v->id, strerror(-r),
			       vu_msg(v, m, sizeof(m)));
		}
		if (d->devs[i].vd)
			precopy_vfio_dev_end_session(d->devs[i].vd);
	}
	/* a back-end still loading is abandoned, never waited for */
	for (uint32_t i = 0; i < d->nbe; i++) {
		if (d->bes[i].fd >= 0)
			precopy_backend_xfer_abort(d->bes[i].x);
		d->bes[i].fd = -1;
	}
	precopy_stream_decoder_free(d->dec);
	d->dec = NULL;
	d->phase = D_IDLE;
	return first;
}

PRECOPY_API void precopy_dest_free(struct precopy_dest *d)
{
	if (!d)
		return;
	if (d->phase == D_LOADING || d->phase == D_ENDED)
		unwind(d);
	for (uint32_t i = 0; d->devs && i < d->n; i++)
		precopy_vfio_dev_free(d->devs[i].vd);
	for (uint32_t i = 0; d->bes && i < d->nbe; i++)
		precopy_backend_xfer_free(d->bes[i].x);
	free(d->bes);
	precopy_stream_decoder_free(d->dec);
	free(d->devs);
	free(d->ids);
	free(d->buf);
	free(d);
}

static struct precopy__io_bound io_bound(const struct precopy_dest *d)
{
	return (struct precopy__io_bound){ .sys = d->cfg.sys, .clock = d->cfg.clock,
					   .timeout_ns = d->cfg.io_timeout_ns, .poll_ms = POLL_MS,
					   .interrupt = &d->interrupted };
}

PRECOPY_API int precopy_dest_interrupt(struct precopy_dest *d)
{
	if (!d)
		return -EINVAL;
	__atomic_store_n(&d->interrupted, 1, __ATOMIC_RELEASE);
	return 0;
}

/* Write all of buf to the return path; on failure errmsg says why, after
 * "return path: <what>: " (the first failure only, as always). */
static int rp_write(struct precopy_dest *d, const void *buf, size_t len, const char *what)
{
	struct precopy__io_bound b = io_bound(d);
	struct precopy__io_fd f = { .sys = d->cfg.sys, .fd = d->cfg.rp_fd, .kind = d->rp_kind };
	struct precopy__io_result res;
	int r;

	if (d->cfg.rp_sink) {
		r = d->cfg.rp_sink(d->cfg.rp_ctx, buf, len);
		if (r < 0)
			seterr(d, r, "return path: %s: sink: %s", what, strerror(-r));
		return r < 0 ? r : 0;
	}
	r = precopy__io_write_fd(&b, &f, buf, len, &res);
	d->rp_kind = f.kind;
	if (r == -ETIMEDOUT)
		seterr(d, r, "return path: %s: the return path took no byte within the I/O timeout", what);
	else if (r < 0)
		seterr(d, r, "return path: %s: %s: %s", what, res.in_poll ? "poll" : "write", strerror(-r));
	return r;
}

/* Fail: tell the source (best effort), put every device back to RUNNING. */
static int fail(struct precopy_dest *d, int err, uint32_t dev_id)
{
	uint8_t rec[PRECOPY_STREAM_REC_HDR_SIZE + PRECOPY_STREAM_ERROR_FIXED + PRECOPY_STREAM_REASON_MAX];
	int n = precopy_stream_encode_rp_error(rec, sizeof(rec), dev_id, err < 0 && err > -4096 ? -err : EIO,
					       d->errmsg);

	if (n > 0)
		rp_write(d, rec, (size_t)n, "sending RP_ERROR"); /* best effort: errmsg keeps the first failure */
	unwind(d);
	return err;
}

/* -ECANCELED, the load failed and unwound, if precopy_dest_interrupt() was
 * called since precopy_dest_start(); else 0. */
static int interrupted(struct precopy_dest *d)
{
	if (!__atomic_load_n(&d->interrupted, __ATOMIC_ACQUIRE))
		return 0;
	seterr(d, -ECANCELED, "interrupted by precopy_dest_interrupt(): load cancelled");
	return fail(d, -ECANCELED, PRECOPY_STREAM_DEV_NONE);
}

/* A back-end's LOAD transfer: a pipe, its read end to the back-end. */
static int be_start(struct precopy_dest *d, struct dbe *b)
{
	int fds[2], one = 1, r;

	b->setup = b->checked = 0;
	b->bytes = 0;
	r = precopy__sys_pipe2(d->cfg.sys, fds, 0);
	if (r < 0) {
		seterr(d, r, "start: back-end %u: creating the state pipe: %s", b->id, strerror(-r));
		return r;
	}
	r = precopy_backend_xfer_start(b->x, PRECOPY_BACKEND_LOAD, PRECOPY_BACKEND_PHASE_STOPPED, fds);
	if (r < 0) {
		seterr(d, r, "start: back-end %u: %s: %s", b->id,
		       r == -EBUSY ? "its queues are running (stop them before loading)" : "handing it the state fd (LOAD)",
		       strerror(-r));
		return r;
	}
	b->fd = r;
	b->fd_kind = PRECOPY__FD_UNKNOWN;
	/* our end only: the back-end's end keeps the mode it chooses */
	r = precopy__sys_ioctl(d->cfg.sys, b->fd, FIONBIO, &one);
	if (r < 0) {
		seterr(d, r, "start: back-end %u: non-blocking state fd: %s", b->id, strerror(-r));
		return r;
	}
	return 0;
}

PRECOPY_API int precopy_dest_start(struct precopy_dest *d)
{
	int r;

	if (!d)
		return -EINVAL;
	if (d->phase == D_LOADING || d->phase == D_ENDED)
		return -EBUSY;
	__atomic_store_n(&d->interrupted, 0, __ATOMIC_RELAXED);
	d->err = 0;
	d->err_dev = PRECOPY_STREAM_DEV_NONE;
	d->errmsg[0] = 0;
	d->acked = 0;
	d->declared = 0;
	for (uint32_t i = 0; i < d->n; i++) {
		struct ddev *v = &d->devs[i];

		v->setup = v->initial = v->ended = 0;
		v->src_flags = 0;
		v->bytes = 0;
		if (v->vu && (r = precopy_vfio_user_get_state(v->vu, &v->vu_state)) < 0) {
			seterr(d, r, "start: device %u: reading its state: %s (%s)", v->id, strerror(-r),
			       precopy_vfio_user_error(v->vu));
			d->phase = D_LOADING;
			return fail(d, r, v->id);
		}
		r = dev_move(v, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0) {
			char m[340];

			seterr(d, r, "start: device %u: -> RESUMING: %s%s", v->id, strerror(-r), vu_msg(v, m, sizeof(m)));
			d->phase = D_LOADING;
			return fail(d, r, v->id);
		}
	}
	d->phase = D_LOADING;
	r = precopy__load_open(&d->load, d->cfg.sys, d->n);
	d->concurrent = d->load != NULL;
	if (r < 0) {
		seterr(d, r, "start: device loads: %s", strerror(-r));
		return fail(d, r, PRECOPY_STREAM_DEV_NONE);
	}
	for (uint32_t i = 0; i < d->nbe; i++) {
		r = be_start(d, &d->bes[i]);
		if (r < 0)
			return fail(d, r, d->bes[i].id);
	}
	r = precopy_stream_decoder_new(&d->dec, &d->cfg.limits, d->ids, d->n + d->nbe, on_event, d);
	if (r < 0) {
		seterr(d, r, "start: stream decoder: %s", strerror(-r));
		return fail(d, r, PRECOPY_STREAM_DEV_NONE);
	}
	return 0;
}

static ssize_t dev_write_step(void *ctx, const void *buf, size_t len)
{
	return precopy_vfio_dev_write(ctx, buf, len);
}

/* A failure of the concurrent loads: the message names the device. */
static int load_err(struct precopy_dest *d, int r, int dev, const char *step)
{
	if (dev < 0) {
		seterr(d, r, "device loads: %s: %s", step, strerror(-r));
		return r;
	}
	if (r == -ETIMEDOUT)
		seterr(d, r, "device %u: data write: the device took no byte within the I/O timeout", d->devs[dev].id);
	else
		seterr(d, r, "device %u: data %s: %s", d->devs[dev].id, step, strerror(-r));
	d->err_dev = d->devs[dev].id;
	return r;
}

/* Reap the loads that ended and submit what waits (no waiting), or wait
 * until device `until` (PRECOPY__LOAD_ALL: all) has nothing left. */
static int load_progress(struct precopy_dest *d, int64_t until)
{
	struct precopy__io_bound b = io_bound(d);
	const char *step = "";
	int dev = -1, r;

	if (!d->load)
		return 0;
	r = precopy__load_progress(d->load, &b, until, &dev, &step);
	return r < 0 ? load_err(d, r, dev, step) : 0;
}

static int dev_write(struct precopy_dest *d, struct ddev *v, const uint8_t *p, size_t len)
{
	struct precopy__io_bound b = io_bound(d);
	struct precopy_vfio_dev_status st;
	struct precopy__io_result res;
	int r;

	if (v->vu) {
		/* no data fd: plain requests, in arrival order */
		r = precopy_vfio_user_mig_write(v->vu, p, len);
		if (r < 0) {
			seterr(d, r, "device %u: MIG_DATA_WRITE: %s (%s)", v->id, strerror(-r), precopy_vfio_user_error(v->vu));
			d->err_dev = v->id;
			return r;
		}
		v->bytes += len;
		return 0;
	}
	precopy_vfio_dev_status(v->vd, &st);
	if (d->load) {
		const char *step = "";
		int dev = -1;

		r = precopy__load_write(d->load, &b, (uint32_t)(v - d->devs), st.data_fd, p, len, &dev, &step);
		return r < 0 ? load_err(d, r, dev, step) : 0;
	}
	r = precopy__io_write_all(&b, st.data_fd, dev_write_step, v->vd, p, len, &res);
	v->bytes += res.done;
	if (r == -ETIMEDOUT)
		seterr(d, r, "device %u: data write: the device took no byte within the I/O timeout", v->id);
	else if (r < 0)
		seterr(d, r, "device %u: data %s: %s", v->id, res.in_poll ? "poll" : "write", strerror(-r));
	if (r < 0)
		d->err_dev = v->id;
	return r;
}

/* Write a back-end's slice into its load pipe (non-blocking, bounded wait). */
static int be_write(struct precopy_dest *d, struct dbe *b, const uint8_t *p, size_t len)
{
	struct precopy__io_bound bd = io_bound(d);
	struct precopy__io_fd f = { .sys = d->cfg.sys, .fd = b->fd, .kind = b->fd_kind };
	struct precopy__io_result res;
	int r = precopy__io_write_fd(&bd, &f, p, len, &res);

	b->fd_kind = f.kind;
	b->bytes += res.done;
	if (r == -ETIMEDOUT)
		seterr(d, r, "back-end %u: writing its state: the state pipe took no byte within the I/O timeout",
		       b->id);
	else if (r < 0)
		seterr(d, r, "back-end %u: %s its state: %s", b->id, res.in_poll ? "polling the pipe for" : "writing",
		       strerror(-r));
	if (r < 0)
		d->err_dev = b->id;
	return r;
}

/* DEV_END of a back-end: close the pipe (its end of file), ask it. */
static int be_end(struct precopy_dest *d, struct dbe *b)
{
	int r;

	b->fd = -1;
	r = precopy_backend_xfer_finish(b->x);
	if (r < 0) {
		seterr(d, r, "back-end %u: the back-end reports its load failed: %s", b->id, strerror(-r));
		d->err_dev = b->id;
		return r;
	}
	b->checked = 1;
	return 0;
}

static int on_backend(struct precopy_dest *d, struct dbe *b, const struct precopy_stream_event *ev)
{
	switch (ev->type) {
	case PRECOPY_STREAM_EV_DEV_SETUP:
		b->setup = 1;
		return 0;
	case PRECOPY_STREAM_EV_DEV_CONFIG:
		seterr(d, -EPROTO, "back-end %u: DEV_CONFIG has no back-end destination", b->id);
		return -EPROTO;
	case PRECOPY_STREAM_EV_INITIAL_SENT:
		seterr(d, -EPROTO, "back-end %u: a back-end has no pre-copy data", b->id);
		return -EPROTO;
	case PRECOPY_STREAM_EV_DATA:
		return be_write(d, b, ev->u.data.ptr, ev->u.data.len);
	case PRECOPY_STREAM_EV_DEV_END:
		return be_end(d, b);
	default:
		return 0;
	}
}

static int on_event(void *opaque, const struct precopy_stream_event *ev)
{
	struct precopy_dest *d = opaque;
	struct ddev *v = ev->dev_id == PRECOPY_STREAM_DEV_NONE ? NULL : find(d, ev->dev_id);

	if (ev->dev_id != PRECOPY_STREAM_DEV_NONE && !v)
		return on_backend(d, find_be(d, ev->dev_id), ev); /* the decoder knows only our ids */
	switch (ev->type) {
	case PRECOPY_STREAM_EV_HEADER:
		if (ev->u.header.device_count != d->n + d->nbe) {
			seterr(d, -EPROTO, "stream declares %u devices, the destination has %u",
			       ev->u.header.device_count, d->n + d->nbe);
			return -EPROTO;
		}
		d->declared = ev->u.header.device_count;
		return 0;
	case PRECOPY_STREAM_EV_DEV_SETUP:
		v->setup = 1;
		v->src_flags = ev->u.setup->mig_flags;
		return 0;
	case PRECOPY_STREAM_EV_DEV_CONFIG:
		seterr(d, -EPROTO, "device %u: DEV_CONFIG has no VFIO destination", ev->dev_id);
		return -EPROTO;
	case PRECOPY_STREAM_EV_DATA:
		return dev_write(d, v, ev->u.data.ptr, ev->u.data.len);
	case PRECOPY_STREAM_EV_INITIAL_SENT:
		v->initial = 1;
		return 0;
	case PRECOPY_STREAM_EV_DEV_END:
		v->ended = 1;
		return 0;
	case PRECOPY_STREAM_EV_STREAM_END:
		d->phase = D_ENDED;
		return 0;
	default:
		return 0;
	}
}

/* One ACK, once every device is set up and every PRE_COPY device's initial
 * data has been written to it. No PRE_COPY device: no ACK. */
static int check_ack(struct precopy_dest *d)
{
	uint8_t rec[PRECOPY_STREAM_REC_HDR_SIZE];
	int precopy = 0, n, r;

	if (d->acked || !d->declared)
		return 0;
	for (uint32_t i = 0; i < d->nbe; i++)
		if (!d->bes[i].setup)
			return 0;
	for (uint32_t i = 0; i < d->n; i++) {
		const struct ddev *v = &d->devs[i];
		if (!v->setup)
			return 0;
		if (v->src_flags & PRECOPY_STREAM_MIG_PRE_COPY) {
			if (!v->initial)
				return 0;
			/* its initial data written to the device, not just queued:
			 * wait for that device's writes (bounded), so a caller that
			 * only feeds the stream gets its ACK out as before */
			if (d->load && !precopy__load_idle(d->load, i) && (r = load_progress(d, i)) < 0)
				return r;
			precopy = 1;
		}
	}
	if (!precopy)
		return 0;
	n = precopy_stream_encode_rp_ack(rec, sizeof(rec));
	if (n < 0) {
		seterr(d, n, "return path: encoding the switchover-ack: %s", strerror(-n));
		return n;
	}
	r = rp_write(d, rec, (size_t)n, "sending the switchover-ack");
	if (r < 0)
		return r;
	d->acked = 1;
	precopy__log(d->cfg.log, d->cfg.log_ctx, d->cfg.log_level, PRECOPY_LOG_INFO,
		     "switchover-ack sent: every device's initial data is loaded");
	return 0;
}

PRECOPY_API int precopy_dest_feed(struct precopy_dest *d, const void *buf, size_t len)
{
	int r;

	if (!d || (!buf && len))
		return -EINVAL;
	if (d->phase != D_LOADING && d->phase != D_ENDED)
		return -EBUSY;
	if ((r = interrupted(d)) < 0)
		return r;
	r = precopy_stream_decoder_feed(d->dec, buf, len);
	if (r < 0) {
		seterr(d, r, "stream: %s", precopy_stream_decoder_error(d->dec));
		return fail(d, r, d->err_dev);
	}
	r = load_progress(d, -1);
	if (r < 0)
		return fail(d, r, d->err_dev);
	r = check_ack(d);
	if (r < 0)
		return fail(d, r, PRECOPY_STREAM_DEV_NONE);
	return 0;
}

PRECOPY_API int64_t precopy_dest_poll(struct precopy_dest *d, int timeout_ms)
{
	struct pollfd pfd;
	ssize_t n;
	int r;

	if (!d || d->cfg.stream_fd < 0)
		return -EINVAL;
	if (d->phase != D_LOADING && d->phase != D_ENDED)
		return -EBUSY;
	if ((r = interrupted(d)) < 0)
		return r;
	/* writes that ended since the last call may make the ACK due */
	if (d->load) {
		r = load_progress(d, -1);
		if (r == 0)
			r = check_ack(d);
		if (r < 0)
			return fail(d, r, d->err_dev);
	}
	pfd.fd = d->cfg.stream_fd;
	pfd.events = POLLIN;
	/* in slices of POLL_MS, so that an interrupt from another thread ends
	 * the wait within one slice (timeout_ms < 0: no timeout) */
	for (;;) {
		int slice = timeout_ms < 0 || timeout_ms > POLL_MS ? POLL_MS : timeout_ms;

		pfd.revents = 0;
		r = precopy__sys_poll(d->cfg.sys, &pfd, 1, slice);
		if (interrupted(d) < 0)
			return -ECANCELED;
		if (r != 0 || timeout_ms == slice)
			break;
		if (timeout_ms > 0)
			timeout_ms -= slice;
	}
	if ((r == 0 || r == -EINTR) && d->load) {
		/* nothing to read: the time goes to the writes in flight, which
		 * may make the ACK due (on a virtual clock, the only way they end) */
		const char *step = "";
		int dev = -1, w = precopy__load_wait(d->load, POLL_MS, &dev, &step);

		if (w < 0)
			return fail(d, load_err(d, w, dev, step), d->err_dev);
		w = load_progress(d, -1);
		if (w == 0)
			w = check_ack(d);
		if (w < 0)
			return fail(d, w, d->err_dev);
	}
	if (r == 0 || r == -EINTR)
		return -EAGAIN;
	if (r < 0) {
		seterr(d, r, "stream: poll: %s", strerror(-r));
		return fail(d, r, PRECOPY_STREAM_DEV_NONE);
	}
	n = precopy__sys_read(d->cfg.sys, d->cfg.stream_fd, d->buf, READ_BUF);
	if (n == -EAGAIN || n == -EINTR)
		return -EAGAIN;
	if (n < 0) {
		seterr(d, (int)n, "stream: read: %s", strerror((int)-n));
		return fail(d, (int)n, PRECOPY_STREAM_DEV_NONE);
	}
	if (n == 0) {
		if (d->phase == D_ENDED)
			return 0;
		seterr(d, -EBADMSG, "stream: the source closed the stream before its end");
		return fail(d, -EBADMSG, PRECOPY_STREAM_DEV_NONE);
	}
	r = precopy_dest_feed(d, d->buf, (size_t)n);
	return r < 0 ? r : n;
}

PRECOPY_API int precopy_dest_ended(const struct precopy_dest *d)
{
	return d ? d->phase == D_ENDED || d->phase == D_DONE : -EINVAL;
}

PRECOPY_API int precopy_dest_acked(const struct precopy_dest *d)
{
	return d ? d->acked : -EINVAL;
}

PRECOPY_API int precopy_dest_complete(struct precopy_dest *d)
{
	int r;

	if (!d)
		return -EINVAL;
	if (d->phase != D_ENDED)
		return -EBUSY;
	/* every write ended before a device checks what it loaded */
	r = load_progress(d, PRECOPY__LOAD_ALL);
	if (r < 0)
		return fail(d, r, d->err_dev);
	for (uint32_t i = 0; d->load && i < d->n; i++) {
		if (d->devs[i].vu)
			continue;
		d->devs[i].bytes += precopy__load_bytes(d->load, i);
		precopy__vfio_dev_count_write(d->devs[i].vd, precopy__load_bytes(d->load, i));
	}
	precopy__load_close(d->load);
	d->load = NULL;
	/* RESUMING -> STOP: the device checks what it loaded */
	for (uint32_t i = 0; i < d->n; i++) {
		r = dev_move(&d->devs[i], VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0) {
			char m[340];

			seterr(d, r, "complete: device %u: RESUMING -> STOP: %s%s", d->devs[i].id, strerror(-r),
			       vu_msg(&d->devs[i], m, sizeof(m)));
			return fail(d, r, d->devs[i].id);
		}
	}
	/* every P2P device may answer peers before any initiates DMA */
	for (uint32_t i = 0; i < d->n; i++) {
		if (!(d->devs[i].mig_flags & VFIO_MIGRATION_P2P))
			continue;
		r = dev_move(&d->devs[i], VFIO_DEVICE_STATE_RUNNING_P2P, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0) {
			seterr(d, r, "complete: device %u: STOP -> RUNNING_P2P: %s", d->devs[i].id, strerror(-r));
			return fail(d, r, d->devs[i].id);
		}
	}
	for (uint32_t i = 0; i < d->n; i++) {
		r = dev_move(&d->devs[i], VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0) {
			char m[340];

			seterr(d, r, "complete: device %u: -> RUNNING: %s%s", d->devs[i].id, strerror(-r),
			       vu_msg(&d->devs[i], m, sizeof(m)));
			return fail(d, r, d->devs[i].id);
		}
	}
	precopy_stream_decoder_free(d->dec);
	d->dec = NULL;
	d->phase = D_DONE;
	precopy__log(d->cfg.log, d->cfg.log_ctx, d->cfg.log_level, PRECOPY_LOG_INFO,
		     "complete: %u devices and %u back-ends loaded, devices running", d->n, d->nbe);
	return 0;
}

PRECOPY_API int precopy_dest_cancel(struct precopy_dest *d)
{
	if (!d)
		return -EINVAL;
	if (d->phase != D_LOADING && d->phase != D_ENDED)
		return 0;
	return unwind(d);
}

PRECOPY_API const char *precopy_dest_strerror(const struct precopy_dest *d)
{
	return d ? d->errmsg : "";
}

PRECOPY_API int precopy_dest_backend_state(const struct precopy_dest *d, uint32_t index, uint64_t *bytes,
					   int *checked)
{
	if (!d || !bytes || !checked)
		return -EINVAL;
	if (index >= d->nbe)
		return -ENOENT;
	*bytes = d->bes[index].bytes;
	*checked = d->bes[index].checked;
	return 0;
}

PRECOPY_API int precopy_dest_device_state(const struct precopy_dest *d, uint32_t index, uint32_t *state,
					  uint64_t *bytes)
{
	if (!d || !state || !bytes)
		return -EINVAL;
	if (index >= d->n)
		return -ENOENT;
	*state = dev_state(&d->devs[index]);
	*bytes = d->devs[index].bytes + (d->load ? precopy__load_bytes(d->load, index) : 0);
	return 0;
}

PRECOPY_API int precopy_dest_device_info(const struct precopy_dest *d, uint32_t index,
					 struct precopy_dest_dev_info *out)
{
	const struct ddev *v;

	if (!d || !out)
		return -EINVAL;
	if (index >= d->n)
		return -ENOENT;
	v = &d->devs[index];
	memset(out, 0, sizeof(*out));
	out->id = v->id;
	out->state = dev_state(v);
	out->setup = v->setup;
	out->ended = v->ended;
	out->bytes = v->bytes + (d->load ? precopy__load_bytes(d->load, index) : 0);
	out->bytes_queued = d->load ? precopy__load_queued(d->load, index) : 0;
	out->initial_loaded = v->initial && !out->bytes_queued;
	return 0;
}

PRECOPY_API int precopy_dest_backend_info(const struct precopy_dest *d, uint32_t index,
					  struct precopy_dest_backend_info *out)
{
	if (!d || !out)
		return -EINVAL;
	if (index >= d->nbe)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->id = d->bes[index].id;
	out->setup = d->bes[index].setup;
	out->checked = d->bes[index].checked;
	out->bytes = d->bes[index].bytes;
	return 0;
}

PRECOPY_API int precopy_dest_stats(const struct precopy_dest *d, struct precopy_dest_stats *out)
{
	static const uint32_t phase[] = { [D_IDLE] = PRECOPY_DEST_IDLE, [D_LOADING] = PRECOPY_DEST_LOADING,
					  [D_ENDED] = PRECOPY_DEST_ENDED, [D_DONE] = PRECOPY_DEST_DONE };

	if (!d || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->phase = phase[d->phase];
	out->err = d->err;
	out->err_dev = d->err_dev;
	out->acked = d->acked;
	out->concurrent_loads = d->concurrent;
	return 0;
}
