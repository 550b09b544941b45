/* SPDX-License-Identifier: MIT */
/* The mover: pre-copy data of every state channel into the stream under a
 * byte budget (round robin, a chunk at a time), and at switchover every
 * channel's bytes to end of data into DEV_DATA records and a DEV_END each.
 *
 * Concurrent where the sys table has the asynchronous queue: one read in
 * flight per channel (so each channel's
 * bytes stay in order), two buffers per channel so that the next read is
 * in flight while the record of the last one is written to the stream;
 * records of different channels interleave in completion order. Reads of
 * VFIO data fds are submitted as blocking (a driver may only block in
 * read); a read that answers "nothing now" (-EAGAIN, -ENOMSG, -EINTR) is
 * submitted again once the fd polls ready. Otherwise, serially: one
 * channel after the other with plain reads through the seam.
 *
 * Channels without a data fd (vfio-user devices) are read by requests.
 * Concurrently, each request is split (req_send, req_reap): every such
 * channel has one request in flight from the start, their sockets are
 * polled through the seam, and a reply is reaped when it arrives, the
 * channel's next request sent at once and then its record written, so
 * the servers make their data while the stream is written and while
 * each other work; the servers' own commands (DMA) are answered by the
 * reap. With reads on the queue as well, the sockets are polled without
 * blocking and the queue reaped with a 1 ms wait. A channel with
 * drain_read but no split is read one request per round. Serially, one
 * after the other like the rest, with drain_read.
 *
 * Either way the drain ends with -ETIMEDOUT after the I/O timeout without
 * progress (on the clock and in rounds: engine/io_bound.h), and with
 * -ECANCELED on precopy_engine_interrupt(). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "../common/util.h"
#include "../ioctl/sys_retry.h"

int precopy__mover_open(struct precopy_engine *e)
{
	const struct precopy_sys *sys = e->cfg.sys;
	int r;

	e->aio_err = 0;
	if (!e->nchan)
		return 0;
	if (!precopy_sys_has_aio(sys)) {
		e->aio_err = -ENOSYS;
		return 0;
	}
	e->drain_buf = malloc((size_t)e->nchan * 2 * e->cfg.max_chunk);
	if (!e->drain_buf)
		return -ENOMEM;
	r = precopy_sys_aio_open(sys, e->nchan, e->nchan, &e->aio);
	if (r < 0) {
		/* no io_uring here (seccomp, the sysctl, an old kernel): serial */
		e->aio = NULL;
		e->aio_err = r;
		free(e->drain_buf);
		e->drain_buf = NULL;
	}
	return 0;
}

void precopy__mover_close(struct precopy_engine *e)
{
	if (e->aio)
		precopy_sys_aio_close(e->cfg.sys, e->aio);
	e->aio = NULL;
	free(e->drain_buf);
	e->drain_buf = NULL;
}

int precopy__mover_concurrent(const struct precopy_engine *e)
{
	return e->aio != NULL;
}

uint64_t precopy__mover_read_rate(const struct precopy_engine *e, uint32_t i)
{
	const struct precopy__chan *c = &e->chans[i];
	unsigned __int128 r;

	if (i >= e->nchan || !c->rd_ns)
		return 0;
	r = (unsigned __int128)c->rd_bytes * 1000000000u / c->rd_ns;
	return r > UINT64_MAX ? UINT64_MAX : (uint64_t)r;
}

static int emit_data(struct precopy_engine *e, struct precopy__chan *c, const void *buf, size_t n)
{
	int r = precopy_stream_encode_data(e->rec, e->rec_cap, c->id, buf, (uint32_t)n);

	if (r < 0)
		return c->ops->fail(e, c, r, "encoding its data");
	r = precopy__eng_emit(e, e->rec, (size_t)r);
	if (r < 0)
		return r;
	c->ops->sent(e, c, n);
	return 0;
}

static int emit_end(struct precopy_engine *e, struct precopy__chan *c)
{
	int r = c->ops->drain_end(e, c);

	if (r < 0)
		return r;
	r = precopy_stream_encode_dev_end(e->rec, e->rec_cap, c->id, *c->bytes_sent);
	if (r < 0)
		return c->ops->fail(e, c, r, "encoding its end");
	return precopy__eng_emit(e, e->rec, (size_t)r);
}

static int nothing_now(int64_t n)
{
	return n == -EAGAIN || n == -EINTR || n == -ENOMSG;
}

static int wait_failed(struct precopy_engine *e, struct precopy__chan *c, int r)
{
	if (r == -ETIMEDOUT)
		return c->ops->fail(e, c, r, "no end of data within the I/O timeout");
	if (r == -ECANCELED)
		return precopy__eng_interrupted(e) < 0 ? -ECANCELED : c->ops->fail(e, c, r, "interrupted");
	return c->ops->fail(e, c, r, "poll");
}

/* One channel to end of data with plain reads. Returns bytes or -errno. */
static int64_t drain_serial(struct precopy_engine *e, struct precopy__chan *c)
{
	struct precopy__io_wait w = { 0, 0 };
	uint64_t total = 0;
	uint32_t flags;
	int fd = c->ops->drain_open(e, c, &flags), r;

	if (fd < 0)
		return fd;
	while (c->ops->drain_read) {
		uint64_t t0 = precopy__eng_now(e);
		int64_t n = c->ops->drain_read(e, c, e->payload, e->cfg.max_chunk);

		if (n < 0)
			return n;
		if (n == 0)
			goto end;
		c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)n);
		c->rd_ns = sat_add(c->rd_ns, precopy__eng_now(e) - t0);
		r = emit_data(e, c, e->payload, (size_t)n);
		if (r < 0)
			return r;
		total += (uint64_t)n;
		r = precopy__eng_interrupted(e);
		if (r < 0)
			return r;
	}
	for (;;) {
		uint64_t t0 = precopy__eng_now(e);
		ssize_t n = precopy__sys_read(e->cfg.sys, fd, e->payload, e->cfg.max_chunk);

		if (n == 0)
			break;
		if (nothing_now(n)) {
			r = precopy__eng_wait_fd(e, fd, POLLIN, &w);
			if (r < 0)
				return wait_failed(e, c, r);
			continue;
		}
		if (n < 0)
			return c->ops->fail(e, c, (int)n, "data read");
		c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)n);
		c->rd_ns = sat_add(c->rd_ns, precopy__eng_now(e) - t0);
		w.deadline = w.waited_ns = 0;
		r = emit_data(e, c, e->payload, (size_t)n);
		if (r < 0)
			return r;
		total += (uint64_t)n;
	}
end:
	r = emit_end(e, c);
	return r < 0 ? r : (int64_t)total;
}

/* The concurrent drain's per-channel state. */
struct slot {
	int fd;
	uint32_t flags;
	uint8_t *buf[2];
	int cur;        /* the buffer the read in flight fills */
	int inflight, waiting, done;
	int plain;      /* read with drain_read, not on the queue */
	int req;        /* read by split requests (req_send/req_reap) */
	uint64_t t_sent; /* when its request in flight went out */
};

/* One request of every channel read with drain_read that is not done.
 * Returns 1 if any made progress, 0 if none, or -errno. */
static int plain_round(struct precopy_engine *e, struct slot *sl, uint32_t *left, uint64_t *total)
{
	int progress = 0, r;

	for (uint32_t i = 0; i < e->nchan; i++) {
		struct precopy__chan *c = &e->chans[i];
		uint64_t t0;
		int64_t n;

		if (!sl[i].plain || sl[i].done)
			continue;
		t0 = precopy__eng_now(e);
		n = c->ops->drain_read(e, c, sl[i].buf[0], e->cfg.max_chunk);
		if (n < 0)
			return (int)n;
		progress = 1;
		if (n == 0) {
			sl[i].done = 1;
			(*left)--;
			r = emit_end(e, c);
			if (r < 0)
				return r;
			continue;
		}
		c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)n);
		c->rd_ns = sat_add(c->rd_ns, precopy__eng_now(e) - t0);
		r = emit_data(e, c, sl[i].buf[0], (size_t)n);
		if (r < 0)
			return r;
		*total += (uint64_t)n;
	}
	return progress;
}

/* The channels read by split requests: every one has a request in
 * flight; poll their sockets (block_ms at most) and reap the replies that
 * arrived, each followed at once by the channel's next request, then its
 * record written to the stream (the servers work while it is written).
 * Returns 1 if any socket had something (a reply or a server's command:
 * both move), 0 if none, or -errno. */
static int req_round(struct precopy_engine *e, struct slot *sl, struct pollfd *pf, uint32_t *idx, uint32_t *left,
		     uint64_t *total, int block_ms)
{
	uint32_t n = 0;
	int progress = 0, r;

	for (uint32_t i = 0; i < e->nchan; i++) {
		int fds[2], k;

		if (!sl[i].req || sl[i].done)
			continue;
		k = e->chans[i].ops->req_fds(e, &e->chans[i], fds);
		for (int j = 0; j < k; j++) {
			pf[n] = (struct pollfd){ .fd = fds[j], .events = POLLIN };
			idx[n++] = i;
		}
	}
	if (!n)
		return 0;
	r = precopy__sys_poll(e->cfg.sys, pf, n, block_ms);
	if (r == -EINTR || r == 0)
		return 0;
	if (r < 0)
		return e->chans[idx[0]].ops->fail(e, &e->chans[idx[0]], r, "poll");
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = idx[k];
		struct slot *s = &sl[i];
		struct precopy__chan *c = &e->chans[i];
		uint8_t *got;
		int64_t m;

		/* one reap per channel and round (its second fd shares it) */
		if (!pf[k].revents || s->done || (k > 0 && idx[k - 1] == i && pf[k - 1].revents))
			continue;
		progress = 1;
		got = s->buf[s->cur];
		m = c->ops->req_reap(e, c, got);
		if (m == -EAGAIN)
			continue;
		if (m < 0)
			return (int)m;
		if (m == 0) {
			s->done = 1;
			(*left)--;
			r = emit_end(e, c);
			if (r < 0)
				return r;
			continue;
		}
		/* the device's read rate: from its request out to its reply
		 * in (the servers work in parallel; a reply that waited for
		 * the stream write counts that wait too) */
		c->rd_bytes = sat_add(c->rd_bytes, (uint64_t)m);
		c->rd_ns = sat_add(c->rd_ns, precopy__eng_now(e) - s->t_sent);
		s->cur ^= 1;
		s->t_sent = precopy__eng_now(e);
		r = c->ops->req_send(e, c, e->cfg.max_chunk);
		if (r == 0)
			r = emit_data(e, c, got, (size_t)m);
		if (r < 0)
			return r;
		*total += (uint64_t)m;
	}
	return progress;
}

static int submit(struct precopy_engine *e, struct slot *s, uint32_t i)
{
	struct precopy_sys_aio_op op = { .opcode = PRECOPY_SYS_AIO_READ, .flags = s->flags, .fd = s->fd,
					 .buf = s->buf[s->cur], .len = e->cfg.max_chunk, .tag = i };
	int r;

	do
		r = precopy_sys_aio_submit(e->cfg.sys, e->aio, &op, 1);
	while (r == -EINTR);
	if (r < 0)
		return e->chans[i].ops->fail(e, &e->chans[i], r, "submitting a read");
	s->inflight = 1;
	s->waiting = 0;
	return 0;
}

/* Resubmit the reads that answered "nothing now" once their fd polls
 * ready (or at once when the poll cannot say). */
static int retry_waiting(struct precopy_engine *e, struct slot *sl, int block_ms)
{
	struct pollfd pf[64];
	uint32_t idx[64], n = 0;
	int r;

	for (uint32_t i = 0; i < e->nchan && n < 64; i++)
		if (sl[i].waiting) {
			pf[n] = (struct pollfd){ .fd = sl[i].fd, .events = POLLIN };
			idx[n++] = i;
		}
	if (!n)
		return 0;
	r = precopy__sys_poll(e->cfg.sys, pf, n, block_ms);
	if (r < 0 && r != -EINTR)
		return e->chans[idx[0]].ops->fail(e, &e->chans[idx[0]], r, "poll");
	for (uint32_t k = 0; k < n; k++)
		if (r <= 0 ? 0 : pf[k].revents) {
			r = submit(e, &sl[idx[k]], idx[k]);
			if (r < 0)
				return r;
		}
	return 0;
}

static int64_t drain_concurrent(struct precopy_engine *e)
{
	struct precopy__io_bound b = precopy__eng_io_bound(e);
	struct precopy__io_wait w = { 0, 0 };
	struct precopy_sys_aio_done done[64];
	struct slot *sl = calloc(e->nchan, sizeof(*sl));
	struct pollfd *pf = calloc((size_t)e->nchan * 2, sizeof(*pf));
	uint32_t *idx = calloc((size_t)e->nchan * 2, sizeof(*idx));
	uint64_t total = 0;
	uint32_t left = e->nchan, nplain = 0;
	int64_t ret;
	int r;

	if (!sl || !pf || !idx) {
		free(sl);
		free(pf);
		free(idx);
		precopy__eng_seterr(e, -ENOMEM, "switchover: drain state: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < e->nchan; i++) {
		struct precopy__chan *c = &e->chans[i];
		int fd = c->ops->drain_open(e, c, &sl[i].flags);

		if (fd < 0) {
			ret = fd;
			goto out;
		}
		sl[i].fd = fd;
		sl[i].buf[0] = e->drain_buf + (size_t)i * 2 * e->cfg.max_chunk;
		sl[i].buf[1] = sl[i].buf[0] + e->cfg.max_chunk;
		if (c->ops->req_send) {
			/* every server gets its first request now */
			sl[i].req = 1;
			sl[i].t_sent = precopy__eng_now(e);
			r = c->ops->req_send(e, c, e->cfg.max_chunk);
			if (r < 0) {
				ret = r;
				goto out;
			}
			continue;
		}
		if (c->ops->drain_read) {
			sl[i].plain = 1;
			nplain++;
			continue;
		}
		r = submit(e, &sl[i], i);
		if (r < 0) {
			ret = r;
			goto out;
		}
	}
	while (left) {
		int any_waiting = 0, progress = 0, n = 0, queued = 0, reqs = 0;
		uint32_t waited = e->cfg.poll_interval_ms;

		for (uint32_t i = 0; i < e->nchan; i++) {
			any_waiting |= sl[i].waiting || (sl[i].plain && !sl[i].done);
			queued |= sl[i].inflight || sl[i].waiting;
			reqs |= sl[i].req && !sl[i].done;
		}
		r = precopy__eng_interrupted(e);
		if (r < 0) {
			ret = r;
			goto out;
		}
		if (reqs) {
			/* the split requests: blocking in their poll only when
			 * nothing else is in flight */
			int block = any_waiting || queued ? 0 : (int)e->cfg.poll_interval_ms;

			r = req_round(e, sl, pf, idx, &left, &total, block);
			if (r < 0) {
				ret = r;
				goto out;
			}
			progress = r;
			if (!left)
				break;
			if (!queued)
				goto round;
		}
		if (nplain) {
			/* requests of the channels without a data fd, while the
			 * reads on the queue run */
			r = plain_round(e, sl, &left, &total);
			if (r < 0) {
				ret = r;
				goto out;
			}
			progress = r;
			if (!left)
				break;
		}
		if (any_waiting)
			waited = 0;
		else if (reqs)
			waited = 1; /* the requests' sockets are polled between reaps */
		n = precopy_sys_aio_reap(e->cfg.sys, e->aio, done, 64, (int)waited);
		if (n == -EINTR)
			n = 0;
		if (n < 0) {
			precopy__eng_seterr(e, n, "switchover: reaping device reads: %s", strerror(-n));
			ret = n;
			goto out;
		}
		for (int k = 0; k < n; k++) {
			uint32_t i = (uint32_t)done[k].tag;
			struct slot *s = &sl[i];
			struct precopy__chan *c = &e->chans[i];
			int64_t res = done[k].res;

			s->inflight = 0;
			if (res > 0) {
				uint8_t *got = s->buf[s->cur];

				s->cur ^= 1;
				r = submit(e, s, i); /* the next read runs while we write */
				if (r == 0)
					r = emit_data(e, c, got, (size_t)res);
				if (r < 0) {
					ret = r;
					goto out;
				}
				total += (uint64_t)res;
				progress = 1;
			} else if (res == 0) {
				s->done = 1;
				left--;
				r = emit_end(e, c);
				if (r < 0) {
					ret = r;
					goto out;
				}
				progress = 1;
			} else if (nothing_now(res)) {
				s->waiting = 1;
			} else {
				ret = c->ops->fail(e, c, (int)res, "data read");
				goto out;
			}
		}
	round:
		if (progress) {
			w.deadline = w.waited_ns = 0;
		} else {
			/* a round without progress counts, whatever the clock
			 * says (with requests in flight: as long as it waited) */
			r = precopy__io_round(&b, &w, reqs ? waited : b.poll_ms);
			if (r < 0) {
				uint32_t i = 0;

				while (i < e->nchan - 1 && sl[i].done)
					i++;
				ret = wait_failed(e, &e->chans[i], r);
				goto out;
			}
		}
		if (!queued && !any_waiting)
			continue;
		r = retry_waiting(e, sl, n ? 0 : 1);
		if (r < 0) {
			ret = r;
			goto out;
		}
	}
	ret = (int64_t)total;
out:
	if (ret < 0) {
		/* reads still in flight own their buffers: cancel them all now */
		precopy_sys_aio_close(e->cfg.sys, e->aio);
		e->aio = NULL;
	}
	free(sl);
	free(pf);
	free(idx);
	return ret;
}

int64_t precopy__mover_pump(struct precopy_engine *e, uint64_t budget)
{
	uint64_t total = 0, t0, rd0;
	int active;

	t0 = precopy__eng_now(e);
	rd0 = e->pump_read_ns;
	for (uint32_t i = 0; i < e->nchan; i++) {
		struct precopy__chan *c = &e->chans[i];

		c->call_left = c->ops->pump_begin ? c->ops->pump_begin(e, c) : 0;
		c->idle = !c->call_left;
	}
	/* round robin, a chunk at a time, until every channel is idle, has
	 * given what it reported, or the budget is spent */
	do {
		active = 0;
		for (uint32_t i = 0; i < e->nchan; i++) {
			struct precopy__chan *c = &e->chans[i];
			size_t want = e->cfg.max_chunk;
			int64_t n;

			if (c->idle)
				continue;
			if (budget) {
				if (total >= budget)
					goto out;
				if (budget - total < want)
					want = (size_t)(budget - total);
			} else if (c->call_left < want) {
				want = (size_t)c->call_left;
			}
			n = c->ops->pump_read(e, c, want);
			if (n < 0)
				return n;
			if (n == 0)
				c->idle = 1;
			total += (uint64_t)n;
			c->call_left -= (uint64_t)n;
			if (!budget && !c->call_left)
				c->idle = 1;
			active |= !c->idle;
		}
	} while (active);
out:
	/* the link's time only: waiting for a device to deliver its bytes is
	 * not sending (it would pull the measured bandwidth down) */
	t0 = precopy__eng_now(e) - t0;
	rd0 = e->pump_read_ns - rd0;
	e->it_dev_ns += t0 > rd0 ? t0 - rd0 : 0;
	return (int64_t)total;
}

int64_t precopy__mover_drain(struct precopy_engine *e)
{
	uint64_t total = 0;

	if (e->aio)
		return drain_concurrent(e);
	for (uint32_t i = 0; i < e->nchan; i++) {
		int64_t n = drain_serial(e, &e->chans[i]);

		if (n < 0)
			return n;
		total = sat_add(total, (uint64_t)n);
	}
	return (int64_t)total;
}
