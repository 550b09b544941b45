/* SPDX-License-Identifier: MIT */
/* fd-based back-ends as devices of the source engine (precopy/backend.h):
 * their transfer objects, their DEV_SETUP records, and at switchover the
 * save of each one's state through a pipe into DEV_DATA records, the
 * back-end's verdict, DEV_END. A failed or cancelled transfer is abandoned
 * without waiting for the back-end. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "engine_internal.h"
#include "../ioctl/sys_retry.h"

int precopy__eng_be_setup(struct precopy_engine *e)
{
	const struct precopy_engine_config *c = &e->cfg;
	int err;

	e->nbe = c->nbackends;
	if (!e->nbe)
		return 0;
	e->bes = calloc(e->nbe, sizeof(*e->bes));
	if (!e->bes)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->nbe; i++) {
		struct ebe *b = &e->bes[i];

		b->cfg = c->backends[i];
		b->fd = -1;
		snprintf(b->name, sizeof(b->name), "%s", b->cfg.name ? b->cfg.name : "");
		b->cfg.name = b->name;
		b->x = precopy_backend_xfer_new(b->cfg.ops, b->cfg.ctx, c->sys, &err);
		if (!b->x)
			return err;
		b->cfg.ops = NULL; /* the transfer object holds its copy */
	}
	e->cfg.backends = NULL; /* the copies live in e->bes */
	return 0;
}

void precopy__eng_be_free(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->nbe; i++)
		precopy_backend_xfer_free(e->bes[i].x);
	free(e->bes);
	e->bes = NULL;
	e->nbe = 0;
}

void precopy__eng_be_reset(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->nbe; i++) {
		e->bes[i].err = e->bes[i].checked = 0;
		e->bes[i].bytes_sent = 0;
	}
}

void precopy__eng_be_abort_all(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->nbe; i++) {
		struct ebe *b = &e->bes[i];

		if (b->fd >= 0)
			precopy_backend_xfer_abort(b->x);
		b->fd = -1;
	}
}

int precopy__eng_be_emit_setup(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->nbe; i++) {
		struct ebe *b = &e->bes[i];
		struct precopy_stream_dev_setup s = {
			.dev_id = b->cfg.id,
			.mig_flags = PRECOPY_STREAM_MIG_STOP_COPY,
		};
		int n;

		memcpy(s.name, b->name, sizeof(s.name));
		n = precopy_stream_encode_dev_setup(e->rec, e->rec_cap, &s);
		if (n < 0) {
			precopy__eng_seterr(e, n, "stream: encoding setup of back-end %u: %s", b->cfg.id, strerror(-n));
			return n;
		}
		n = precopy__eng_emit(e, e->rec, (size_t)n);
		if (n < 0)
			return n;
	}
	return 0;
}

void precopy__eng_be_fill_status(struct precopy_engine *e, struct precopy_device_status *s)
{
	for (uint32_t i = 0; i < e->nbe; i++) {
		memset(&s[i], 0, sizeof(s[i]));
		s[i].stop_copy_bytes = e->bes[i].cfg.state_bytes;
		s[i].stop_copy_known = 1;
		s[i].drain_concurrent = (uint8_t)precopy__mover_concurrent(e);
	}
}

static int be_fail(struct precopy_engine *e, struct ebe *b, int r, const char *what)
{
	b->err = r;
	precopy__eng_seterr(e, r, "switchover: back-end %u: %s: %s", b->cfg.id, what, strerror(-r));
	return r;
}

/* ---- the back-end as a state channel (engine/channel.h) ------------------ */

static int be_chan_fail(struct precopy_engine *e, struct precopy__chan *c, int err, const char *what)
{
	return be_fail(e, c->obj, err, what);
}

/* The state pipe, handed to the back-end (SAVE); our end, non-blocking. */
static int be_drain_open(struct precopy_engine *e, struct precopy__chan *c, uint32_t *aio_flags)
{
	struct ebe *b = c->obj;
	int fds[2], one = 1, r;

	r = precopy__sys_pipe2(e->cfg.sys, fds, 0);
	if (r < 0)
		return be_fail(e, b, r, "creating the state pipe");
	r = precopy_backend_xfer_start(b->x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, fds);
	if (r < 0)
		return be_fail(e, b, r,
			       r == -EBUSY ? "its queues are running (the VMM stops them before switchover)"
					   : "handing it the state fd (SAVE)");
	b->fd = r;
	/* our end only: the back-end's end keeps the mode it chooses */
	r = precopy__sys_ioctl(e->cfg.sys, b->fd, FIONBIO, &one);
	if (r < 0)
		return be_fail(e, b, r, "non-blocking state fd");
	*aio_flags = 0;
	return b->fd;
}

static void be_sent(struct precopy_engine *e, struct precopy__chan *c, size_t n)
{
	((struct ebe *)c->obj)->bytes_sent += n;
}

/* End of data: the back-end closed its end; its verdict decides. */
static int be_drain_end(struct precopy_engine *e, struct precopy__chan *c)
{
	struct ebe *b = c->obj;
	int r;

	b->fd = -1;
	r = precopy_backend_xfer_finish(b->x);
	if (r < 0)
		return be_fail(e, b, r, "the back-end reports its save failed");
	b->checked = 1;
	return 0;
}

const struct precopy__chan_ops precopy__chan_backend_ops = {
	.drain_open = be_drain_open,
	.sent = be_sent,
	.drain_end = be_drain_end,
	.fail = be_chan_fail,
};

PRECOPY_API int precopy_engine_backend_info(const struct precopy_engine *e, uint32_t index,
					    struct precopy_engine_backend_info *out)
{
	if (!e || !out)
		return -EINVAL;
	if (index >= e->nbe)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->id = e->bes[index].cfg.id;
	out->err = e->bes[index].err;
	out->checked = e->bes[index].checked;
	out->bytes_sent = e->bes[index].bytes_sent;
	return 0;
}
