/* SPDX-License-Identifier: MIT */
/* The destination's concurrent device loads (engine/dest_load.h). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "dest_load.h"
#include "../ioctl/sys_retry.h"

struct slice {
	uint8_t *buf;
	size_t cap, len, done; /* allocated, bytes, bytes written so far */
};

struct ldev {
	int fd;
	struct slice q[PRECOPY__LOAD_DEPTH]; /* ring: head is written first */
	uint32_t head, count;
	int inflight, waiting;   /* a write submitted; -EAGAIN, waits for POLLOUT */
	uint64_t bytes;
};

struct precopy__load {
	const struct precopy_sys *sys;
	void *q;
	uint32_t ndev;
	struct ldev *d;
};

int precopy__load_open(struct precopy__load **out, const struct precopy_sys *sys, uint32_t ndev)
{
	struct precopy__load *l;
	int r;

	*out = NULL;
	if (!ndev || !precopy_sys_has_aio(sys))
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->d = calloc(ndev, sizeof(*l->d)))) {
		free(l);
		return -ENOMEM;
	}
	l->sys = sys;
	l->ndev = ndev;
	r = precopy_sys_aio_open(sys, ndev, ndev, &l->q);
	if (r < 0) { /* no io_uring here: the caller writes itself */
		free(l->d);
		free(l);
		return 0;
	}
	*out = l;
	return 0;
}

void precopy__load_close(struct precopy__load *l)
{
	if (!l)
		return;
	precopy_sys_aio_close(l->sys, l->q); /* the buffers are ours again after this */
	for (uint32_t i = 0; i < l->ndev; i++)
		for (uint32_t k = 0; k < PRECOPY__LOAD_DEPTH; k++)
			free(l->d[i].q[k].buf);
	free(l->d);
	free(l);
}

static int submit(struct precopy__load *l, uint32_t i, int *err_dev, const char **step)
{
	struct ldev *v = &l->d[i];
	struct slice *s = &v->q[v->head];
	struct precopy_sys_aio_op op = { .opcode = PRECOPY_SYS_AIO_WRITE, .flags = PRECOPY_SYS_AIO_BLOCKING,
					 .fd = v->fd, .buf = s->buf + s->done, .len = s->len - s->done, .tag = i };
	int r;

	do
		r = precopy_sys_aio_submit(l->sys, l->q, &op, 1);
	while (r == -EINTR);
	if (r < 0) {
		*err_dev = (int)i;
		*step = "submitting a write";
		return r;
	}
	v->inflight = 1;
	v->waiting = 0;
	return 0;
}

/* One round: reap (waiting up to wait_ms for the first), resubmit what can
 * go. Returns 1 if a write made progress, 0 if not, or -errno. */
static int round_once(struct precopy__load *l, int wait_ms, int *err_dev, const char **step)
{
	struct precopy_sys_aio_done done[64];
	int n, progress = 0, r;

	n = precopy_sys_aio_reap(l->sys, l->q, done, 64, wait_ms);
	if (n == -EINTR)
		n = 0;
	if (n < 0) {
		*err_dev = -1;
		*step = "reaping writes";
		return n;
	}
	for (int k = 0; k < n; k++) {
		uint32_t i = (uint32_t)done[k].tag;
		struct ldev *v = &l->d[i];
		struct slice *s = &v->q[v->head];
		int64_t res = done[k].res;

		v->inflight = 0;
		if (res == -EAGAIN || res == -EINTR || res == 0) {
			v->waiting = 1; /* takes nothing now: again once it polls writable */
			continue;
		}
		if (res < 0) {
			*err_dev = (int)i;
			*step = "write";
			return (int)res;
		}
		progress = 1;
		s->done += (size_t)res;
		v->bytes += (uint64_t)res;
		if (s->done == s->len) {
			v->head = (v->head + 1) % PRECOPY__LOAD_DEPTH;
			v->count--;
		}
		if (v->count && (r = submit(l, i, err_dev, step)) < 0)
			return r;
	}
	for (uint32_t i = 0; i < l->ndev; i++) {
		struct ldev *v = &l->d[i];
		struct pollfd p = { .fd = v->fd, .events = POLLOUT };

		if (!v->waiting)
			continue;
		r = precopy__sys_poll(l->sys, &p, 1, 0);
		if (r < 0 && r != -EINTR) {
			*err_dev = (int)i;
			*step = "poll";
			return r;
		}
		if (r > 0 && (r = submit(l, i, err_dev, step)) < 0)
			return r;
	}
	return progress;
}

static int busy(const struct precopy__load *l, int64_t dev)
{
	if (dev == (int64_t)PRECOPY__LOAD_ALL) {
		for (uint32_t i = 0; i < l->ndev; i++)
			if (l->d[i].count)
				return 1;
		return 0;
	}
	return l->d[dev].count != 0;
}

int precopy__load_progress(struct precopy__load *l, const struct precopy__io_bound *b, int64_t dev_wait,
			   int *err_dev, const char **step)
{
	struct precopy__io_wait w = { 0, 0 };
	int r;

	if (dev_wait < 0) {
		r = round_once(l, 0, err_dev, step);
		return r < 0 ? r : 0;
	}
	while (busy(l, dev_wait)) {
		r = round_once(l, (int)(b->poll_ms ? b->poll_ms : 1), err_dev, step);
		if (r < 0)
			return r;
		if (r > 0) {
			w.deadline = w.waited_ns = 0;
			continue;
		}
		r = precopy__io_round(b, &w, b->poll_ms);
		if (r < 0) {
			*err_dev = dev_wait == (int64_t)PRECOPY__LOAD_ALL ? -1 : (int)dev_wait;
			*step = r == -ETIMEDOUT ? "the device took no byte within the I/O timeout" : "interrupted";
			return r;
		}
	}
	return 0;
}

int precopy__load_write(struct precopy__load *l, const struct precopy__io_bound *b, uint32_t dev, int fd,
			const void *p, size_t len, int *err_dev, const char **step)
{
	struct ldev *v = &l->d[dev];
	struct precopy__io_wait w = { 0, 0 };
	struct slice *s;
	int r;

	if (!len)
		return 0;
	v->fd = fd;
	/* a full queue waits for its oldest write */
	while (v->count == PRECOPY__LOAD_DEPTH) {
		r = round_once(l, (int)(b->poll_ms ? b->poll_ms : 1), err_dev, step);
		if (r < 0)
			return r;
		if (r > 0)
			w.deadline = w.waited_ns = 0;
		else if ((r = precopy__io_round(b, &w, b->poll_ms)) < 0) {
			*err_dev = (int)dev;
			*step = r == -ETIMEDOUT ? "the device took no byte within the I/O timeout" : "interrupted";
			return r;
		}
	}
	s = &v->q[(v->head + v->count) % PRECOPY__LOAD_DEPTH];
	if (s->cap < len) {
		uint8_t *nb = realloc(s->buf, len);

		if (!nb) {
			*err_dev = (int)dev;
			*step = "a buffer for its data";
			return -ENOMEM;
		}
		s->buf = nb;
		s->cap = len;
	}
	memcpy(s->buf, p, len);
	s->len = len;
	s->done = 0;
	v->count++;
	if (!v->inflight && !v->waiting)
		return submit(l, dev, err_dev, step);
	return 0;
}

int precopy__load_wait(struct precopy__load *l, int wait_ms, int *err_dev, const char **step)
{
	int r;

	if (!busy(l, PRECOPY__LOAD_ALL))
		return 0;
	r = round_once(l, wait_ms, err_dev, step);
	return r < 0 ? r : 0;
}

int precopy__load_idle(const struct precopy__load *l, uint32_t dev)
{
	return l->d[dev].count == 0;
}

uint64_t precopy__load_queued(const struct precopy__load *l, uint32_t dev)
{
	const struct ldev *v = &l->d[dev];
	uint64_t n = 0;

	for (uint32_t k = 0; k < v->count; k++) {
		const struct slice *s = &v->q[(v->head + k) % PRECOPY__LOAD_DEPTH];

		n += s->len - s->done;
	}
	return n;
}

uint64_t precopy__load_bytes(const struct precopy__load *l, uint32_t dev)
{
	return l->d[dev].bytes;
}
