/* SPDX-License-Identifier: MIT */
/* The pump's io_uring SAVE path: device fds -> framed stream (design notes
 * at the top of pump_uring.c). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>

#include "pump_uring_internal.h"
#include "../ioctl/sys_retry.h"

static void ahead_add(struct pump_uring *u, struct slot *sl)
{
	sl->ahead = true;
	u->ahead += sl->len;
	if (sl->state == S_READING)
		u->ahead_reads++;
	if (u->ahead > u->st.ahead_peak)
		u->st.ahead_peak = u->ahead;
}

static void rq_push(struct pump_uring *u, int s)
{
	u->slots[s].state = S_READY;
	u->slots[s].next = -1;
	if (u->rq_tail >= 0)
		u->slots[u->rq_tail].next = s;
	else
		u->rq_head = s;
	u->rq_tail = s;
}

static int rq_pop(struct pump_uring *u)
{
	int s = u->rq_head;

	if (s >= 0) {
		u->rq_head = u->slots[s].next;
		if (u->rq_head < 0)
			u->rq_tail = -1;
	}
	return s;
}

static void dev_unbusy(struct pump_dev *d)
{
	d->busy = false;
	if (d->timed_out) {
		d->timed_out = false;
		d->pend_err = -ETIMEDOUT;
	}
}

/* Queues ABORT frames for failed devices whose fd is free. */
static void queue_aborts(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	for (uint32_t i = 0; i < p->ndev; i++) {
		struct pump_dev *d = &p->devs[i];
		int s;

		if (!d->pend_err || d->busy || (s = precopy__pump_ur_slot_get(u)) < 0)
			continue;
		u->slots[s] = (struct slot){ .dev = (int)i, .len = PRECOPY_FRAME_ABORT_LEN,
					     .flags = PRECOPY_FRAME_ABORT };
		pump_put_le32(precopy__pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE, (uint32_t)-d->pend_err);
		d->pend_err = 0;
		rq_push(u, s);
	}
}

/* Starts a read (a POLLIN, or a splice frame) for each device that can take
 * one, from p->rr on, while slots last. A copy read waits while the
 * read-ahead would pass its bound; the first device that waits becomes
 * p->rr, so that devices take turns. */
static void submit_reads(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	int64_t first_held = -1;

	for (uint32_t k = 0; k < p->ndev && u->nfree; k++) {
		uint32_t di = (p->rr + k) % p->ndev;
		struct pump_dev *d = &p->devs[di];
		uint64_t left = precopy__pump_ur_budget_left(c);
		uint32_t len = left < p->chunk ? (uint32_t)left : p->chunk, piece;
		uint64_t bound;
		struct io_uring_sqe *sqe;
		uint8_t *buf;
		int s;

		if (d->state != PRECOPY_PUMP_DEV_ACTIVE || d->busy || d->idle || d->ending)
			continue;
		if (!len)
			break;
		if (d->splice) {
			int avail = 0;
			bool polled = d->rpolled;

			d->rpolled = false;
			if (precopy__sys_ioctl(&p->sys, d->fd, FIONREAD, &avail) < 0 || avail < 0) {
				d->splice = 0;
			} else if (avail == 0 && !polled) {
				/* empty now: wait for bytes with a poll so that they are
				 * spliced when they come, not read into a slot */
				s = precopy__pump_ur_slot_get(u);
				sqe = precopy__pump_ur_sqe_get(u);
				io_uring_prep_poll_add(sqe, d->fd, POLLIN);
				precopy__pump_ur_sqe_set(u, sqe, OP_RPOLL, s);
				u->slots[s] = (struct slot){ .dev = (int)(d - p->devs), .state = S_READING,
							     .poll = true };
				d->busy = true;
				u->reads++;
				continue;
			} else if (avail > 0) {
				s = precopy__pump_ur_slot_get(u);
				u->slots[s] = (struct slot){ .dev = (int)(d - p->devs), .splice = true,
							     .len = (uint32_t)avail < len ? (uint32_t)avail
											  : len };
				c->reserved += u->slots[s].len;
				d->busy = true;
				rq_push(u, s);
				continue;
			}
		}
		/* a read cut into a piece (precopy__pump_copy_len) has its own bound, two
		 * pieces: on pipe-16dev-1024k-copy a 1 MiB bound over 64 KiB pieces
		 * gave 0.90-1.24 of the plain loop, 128 KiB 1.30-1.43 */
		piece = precopy__pump_copy_len(p, d, len);
		bound = piece < len && 2 * (uint64_t)piece < u->ahead_max ? 2 * (uint64_t)piece : u->ahead_max;
		if (u->ahead && u->ahead + piece > bound) {
			if (first_held < 0)
				first_held = di;
			if (d->splice)
				d->rpolled = true; /* its POLLIN already fired: read it next */
			continue;
		}
		len = piece;
		s = precopy__pump_ur_slot_get(u);
		buf = precopy__pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE;
		sqe = precopy__pump_ur_sqe_get(u);
		if (u->fixed)
			io_uring_prep_read_fixed(sqe, d->fd, buf, len, (uint64_t)-1, s);
		else
			io_uring_prep_read(sqe, d->fd, buf, len, (uint64_t)-1);
		precopy__pump_ur_sqe_set(u, sqe, OP_READ, s);
		u->slots[s] = (struct slot){ .dev = (int)(d - p->devs), .len = len, .state = S_READING };
		ahead_add(u, &u->slots[s]);
		c->reserved += len;
		d->busy = true;
		u->reads++;
	}
	if (first_held >= 0)
		p->rr = (uint32_t)first_held;
}

/* After an io_uring_enter: the copy reads still in flight went
 * asynchronous (nothing to read now, or handed to an io-wq worker); they
 * stop counting as read-ahead until they complete. */
static void ahead_settle(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	if (u->reads > u->st.async_reads_peak)
		u->st.async_reads_peak = u->reads;
	for (uint32_t s = 0; s < p->depth && u->ahead_reads; s++)
		if (u->slots[s].state == S_READING)
			precopy__pump_ur_ahead_drop(u, &u->slots[s]);
}

static void submit_write(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);

	if (u->iov_n == 1 && u->fixed && u->w_n == 1 && u->iov_first == 0) {
		int s = u->w_slot[0];
		io_uring_prep_write_fixed(sqe, p->cfg.stream_fd, u->iov[0].iov_base,
					  (unsigned int)u->iov[0].iov_len, (uint64_t)-1, s);
	} else {
		io_uring_prep_writev(sqe, p->cfg.stream_fd, u->iov + u->iov_first,
				     (unsigned int)u->iov_n, (uint64_t)-1);
	}
	precopy__pump_ur_sqe_set(u, sqe, OP_WRITE, 0);
	u->w_ud = UD(OP_WRITE, 0);
	u->w_busy = true;
}

static void submit_splice(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];

	io_uring_prep_splice(sqe, d->fd, -1, p->cfg.stream_fd, -1, u->w_splice_left, 0);
	precopy__pump_ur_sqe_set(u, sqe, OP_SPLICE, u->w_splice);
	u->w_ud = UD(OP_SPLICE, u->w_splice);
	u->w_busy = true;
}

static void submit_stream_poll(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);

	io_uring_prep_poll_add(sqe, p->cfg.stream_fd, POLLOUT);
	precopy__pump_ur_sqe_set(u, sqe, OP_SPOLL, 0);
	u->w_ud = UD(OP_SPOLL, 0);
	u->w_busy = true;
}

/* The stream failed (a poll error, or a cancel after the drain deadline)
 * with frames under way: they go nowhere, their slots are free. */
static void stream_abandon(struct pump_uring *u)
{
	if (u->w_splice >= 0) {
		precopy__pump_ur_slot_put(u, u->w_splice);
		u->w_splice = -1;
	}
	for (int k = 0; k < u->w_n; k++)
		precopy__pump_ur_slot_put(u, u->w_slot[k]);
	u->w_n = 0;
}

/* A drain past its deadline whose stream still has not taken the frame in
 * flight one poll interval later (a reader that stopped): fail the stream
 * and cancel the operation, so that the call can end. The frame on the wire
 * is cut short, which the reader sees as a truncated stream. */
static void stream_deadline(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe;

	if (!u->w_busy || u->stream_cancelled || !precopy__pump_stalled(p))
		return;
	precopy__pump_fail_stream(p, -ETIMEDOUT, "still busy one poll interval after the drain deadline");
	sqe = precopy__pump_ur_sqe_get(u);
	io_uring_prep_cancel64(sqe, u->w_ud, 0);
	precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, 0);
	u->stream_cancelled = true;
}

/* Starts a batch of ready frames if the stream is free. */
static void writer_kick(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	if (u->w_busy || u->w_splice >= 0 || u->rq_head < 0 || p->broken)
		return;
	u->w_n = 0;
	u->w_left = 0;
	while (u->w_n < BATCH && u->rq_head >= 0) {
		int s = rq_pop(u);
		struct slot *sl = &u->slots[s];
		uint8_t *b = precopy__pump_slot(p, (uint32_t)s);
		struct precopy_frame_hdr h = { .dev_id = p->devs[sl->dev].id, .flags = sl->flags,
					       .len = sl->len };

		precopy_frame_encode(&h, b);
		sl->state = S_WRITING;
		u->iov[u->w_n] = (struct iovec){ b, PRECOPY_FRAME_HDR_SIZE + (sl->splice ? 0 : sl->len) };
		u->w_left += u->iov[u->w_n].iov_len;
		u->w_slot[u->w_n++] = s;
		if (sl->splice)
			break; /* its payload follows by splice before anything else */
	}
	u->iov_first = 0;
	u->iov_n = u->w_n;
	submit_write(p);
}

static void frame_sent(struct precopy_pump *p, struct pump_call *c, int s)
{
	struct pump_uring *u = p->ur;
	struct slot *sl = &u->slots[s];
	struct pump_dev *d = &p->devs[sl->dev];

	if (!sl->flags) {
		d->bytes += sl->len;
		c->moved += sl->len;
		c->reserved -= sl->len;
	}
	if (sl->splice) {
		if (d->splice < 0)
			d->splice = 1;
		dev_unbusy(d);
	}
	precopy__pump_dev_done(p, d, sl->flags);
	precopy__pump_ur_slot_put(u, s);
}

/* A splice the ends refused after its header went out: the counted bytes are
 * in the device pipe, so finish the frame with read/write through sys. */
static void splice_by_copy(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];
	uint8_t *b = precopy__pump_slot(p, (uint32_t)u->w_splice) + PRECOPY_FRAME_HDR_SIZE;

	d->splice = 0;
	while (u->w_splice_left && !p->broken) {
		ssize_t r = precopy__sys_read(&p->sys, d->fd, b, u->w_splice_left);

		if (r == -EINTR)
			continue;
		if (r <= 0) {
			precopy__pump_fail_stream(p, r ? (int)r : -EIO, "device bytes behind a sent header vanished");
			return;
		}
		r = precopy__pump_fb_write_all(p, p->cfg.stream_fd, b, (size_t)r) ?: r;
		if (r < 0) {
			precopy__pump_fail_stream(p, (int)r, "write failed");
			return;
		}
		u->w_splice_left -= (uint32_t)r;
	}
}

/* Moves the payload of the frame whose header just went out. io_uring
 * never issues a splice inline (it always hands it to an io-wq worker, one
 * thread switch per frame), so the pump's thread splices itself where that
 * cannot block it for long: into a pipe or an O_NONBLOCK fd, or a blocking
 * socket whose sends this call bounds to one poll interval (both decided
 * by send_bound_begin() in pump.c). What the
 * stream does not take goes after a ring poll for room, which a drain
 * deadline can cancel. Other streams keep IORING_OP_SPLICE. The counted
 * bytes are in the device pipe, so its side never waits. */
static void splice_step(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];

	if (!u->splice_nowait) {
		submit_splice(p);
		return;
	}
	while (u->w_splice_left && !p->broken) {
		ssize_t r = precopy__sys_splice(&p->sys, d->fd, p->cfg.stream_fd, u->w_splice_left,
					       SPLICE_F_NONBLOCK);

		if (r > 0) {
			u->w_splice_left -= (uint32_t)r;
		} else if (r == -EAGAIN) {
			if (precopy__pump_splice_lost(p, d))
				break;
			submit_stream_poll(p); /* its CQE calls us again */
			return;
		} else if (r == -EINVAL) {
			splice_by_copy(p);
		} else if (r != -EINTR) {
			precopy__pump_fail_stream(p, r ? (int)r : -EIO, "splice inside a frame failed");
		}
	}
	if (p->broken)
		precopy__pump_ur_slot_put(u, u->w_splice);
	else
		frame_sent(p, c, u->w_splice);
	u->w_splice = -1;
}

static void save_cqe(struct precopy_pump *p, struct pump_call *c, struct io_uring_cqe *cqe)
{
	struct pump_uring *u = p->ur;
	enum op op = (enum op)(cqe->user_data >> 32);
	int s = (int)(uint32_t)cqe->user_data;
	int res = cqe->res;

	if (op == OP_WRITE || op == OP_SPLICE || op == OP_SPOLL) {
		/* the stream's one operation is over; after a cancel its frames go nowhere */
		u->w_busy = false;
		if (u->stream_cancelled) {
			stream_abandon(u);
			return;
		}
	}
	switch (op) {
	case OP_READ: {
		struct slot *sl = &u->slots[s];
		struct pump_dev *d = &p->devs[sl->dev];

		u->reads--;
		c->reserved -= sl->len;
		precopy__pump_ur_ahead_drop(u, sl);
		dev_unbusy(d);
		if (res > 0) {
			sl->len = (uint32_t)res;
			sl->flags = 0;
			c->reserved += sl->len;
			rq_push(u, s);
			ahead_add(u, sl);
		} else if (res == 0 && d->state == PRECOPY_PUMP_DEV_ACTIVE) {
			sl->len = 0;
			sl->flags = PRECOPY_FRAME_EOD;
			d->ending = true;
			rq_push(u, s);
		} else {
			precopy__pump_ur_slot_put(u, s);
			if (res == -EAGAIN || res == -ENOMSG)
				d->idle = true;
			else if (res < 0 && res != -ECANCELED && res != -EINTR &&
				 d->state == PRECOPY_PUMP_DEV_ACTIVE) {
				precopy__pump_dev_fail(p, d, res, "read failed");
				d->ending = true;
				d->pend_err = res;
			}
		}
		break;
	}
	case OP_RPOLL:
		u->reads--;
		dev_unbusy(&p->devs[u->slots[s].dev]);
		/* readable, hung up or failed: FIONREAD, then a read if the pipe
		 * is still empty, says which */
		if (res != -ECANCELED && res != -EINTR)
			p->devs[u->slots[s].dev].rpolled = true;
		precopy__pump_ur_slot_put(u, s);
		break;
	case OP_WRITE: {
		if (res == -EAGAIN) {
			submit_stream_poll(p);
			break;
		}
		if (res <= 0) {
			precopy__pump_fail_stream(p, res ? res : -EIO, "write failed");
			for (int k = 0; k < u->w_n; k++)
				precopy__pump_ur_slot_put(u, u->w_slot[k]);
			u->w_n = 0;
			break;
		}
		u->w_left -= (size_t)res;
		if (u->w_left) {
			size_t n = (size_t)res;

			while (n >= u->iov[u->iov_first].iov_len) {
				n -= u->iov[u->iov_first].iov_len;
				u->iov_first++;
				u->iov_n--;
			}
			u->iov[u->iov_first].iov_base = (uint8_t *)u->iov[u->iov_first].iov_base + n;
			u->iov[u->iov_first].iov_len -= n;
			submit_write(p);
			break;
		}
		for (int k = 0; k < u->w_n; k++) {
			int t = u->w_slot[k];

			if (u->slots[t].splice) {
				u->w_splice = t;
				u->w_splice_left = u->slots[t].len;
			} else {
				frame_sent(p, c, t);
			}
		}
		u->w_n = 0;
		if (u->w_splice >= 0)
			splice_step(p, c);
		break;
	}
	case OP_SPLICE:
		if (res > 0) {
			u->w_splice_left -= (uint32_t)res;
		} else if (res == -EINVAL) {
			splice_by_copy(p);
		} else if (res == -EAGAIN) {
			submit_stream_poll(p);
			break;
		} else if (res != -EINTR) {
			precopy__pump_fail_stream(p, res ? res : -EIO, "splice inside a frame failed");
		}
		if (p->broken) {
			precopy__pump_ur_slot_put(u, u->w_splice);
			u->w_splice = -1;
		} else if (u->w_splice_left) {
			submit_splice(p);
		} else {
			frame_sent(p, c, u->w_splice);
			u->w_splice = -1;
		}
		break;
	case OP_SPOLL:
		if (res < 0 && res != -EINTR) {
			precopy__pump_fail_stream(p, res, "poll failed");
			stream_abandon(u);
		} else if (u->w_splice >= 0) {
			splice_step(p, c);
		} else {
			submit_write(p);
		}
		break;
	default: /* OP_CANCEL: its target's own CQE does the work */
		break;
	}
}

static void cancel_reads(struct precopy_pump *p, bool only_timed_out)
{
	struct pump_uring *u = p->ur;

	for (uint32_t s = 0; s < p->depth; s++) {
		struct io_uring_sqe *sqe;

		if (u->slots[s].state != S_READING)
			continue;
		if (only_timed_out && !p->devs[u->slots[s].dev].timed_out)
			continue;
		sqe = precopy__pump_ur_sqe_get(u);
		io_uring_prep_cancel64(sqe, UD(u->slots[s].poll ? OP_RPOLL : OP_READ, s), 0);
		precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, (int)s);
	}
}

int precopy__pump_uring_save(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	bool stop = false, cancelled = false;
	int r;

	u->splice_nowait = p->send_bounded || p->stream_nowait;
	u->stream_cancelled = false;
	for (;;) {
		if (!stop && (p->broken || (c->mode == PUMP_RUN && precopy__pump_expired(p, c))))
			stop = true;
		if (!stop && c->mode == PUMP_DRAIN && precopy__pump_expired(p, c) && !cancelled) {
			precopy__pump_timeout_devices(p);
			cancel_reads(p, true);
			cancelled = true;
		}
		if (cancelled) /* a drain past its deadline */
			stream_deadline(p);
		if (!p->broken)
			queue_aborts(p);
		if (!stop)
			submit_reads(p, c);
		writer_kick(p);
		if (!u->inflight && (u->rq_head < 0 || p->broken)) {
			if (stop || p->broken || precopy__pump_all_ended(p))
				break;
			if (c->mode == PUMP_RUN) {
				bool any = false;

				for (uint32_t i = 0; i < p->ndev; i++)
					any |= p->devs[i].state == PRECOPY_PUMP_DEV_ACTIVE && !p->devs[i].idle &&
					       !p->devs[i].ending;
				if (!any || precopy__pump_ur_budget_left(c) == 0)
					break;
				continue;
			}
		}
		if (stop && !cancelled) {
			cancel_reads(p, false);
			cancelled = true;
		}
		if (u->ahead_reads && !stop) {
			/* reads not yet through an enter count against the read-ahead:
			 * enter without waiting, so that those that do not complete at
			 * once stop counting and more devices can start */
			r = precopy__pump_ur_reap(p, c, false, false, save_cqe);
			ahead_settle(p);
			if (r < 0 && r != -ETIME) {
				precopy__pump_fail_stream(p, r, "io_uring wait failed");
				return r;
			}
			continue;
		}
		if (c->mode == PUMP_RUN && !stop && !u->w_busy && u->rq_head < 0) {
			/* only reads in flight: what is not ready now is "nothing now" */
			r = precopy__pump_ur_reap(p, c, false, false, save_cqe);
			ahead_settle(p);
			if (r == -ETIME) {
				stop = true;
				continue;
			}
		} else {
			bool timed = c->mode == PUMP_DRAIN && !stop;

			r = precopy__pump_ur_reap(p, c, true, timed, save_cqe);
			ahead_settle(p);
			if (r == -ETIME) {
				for (uint32_t i = 0; i < p->ndev; i++)
					p->devs[i].idle = false;
				continue;
			}
		}
		if (r < 0 && r != -ETIME) {
			precopy__pump_fail_stream(p, r, "io_uring wait failed");
			return r;
		}
	}
	return p->broken;
}
