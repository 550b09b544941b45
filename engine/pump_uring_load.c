/* SPDX-License-Identifier: MIT */
/* The pump's io_uring LOAD path: framed stream -> device fds (design notes
 * at the top of pump_uring.c). */
#include <errno.h>
#include <string.h>

#include "pump_uring_internal.h"

static void dq_push(struct precopy_pump *p, struct pump_dev *d, int s)
{
	struct pump_uring *u = p->ur;

	u->slots[s].next = -1;
	u->slots[s].state = S_READY;
	if (d->wq_tail >= 0)
		u->slots[d->wq_tail].next = s;
	else
		d->wq_head = s;
	d->wq_tail = s;
}

/* Drops the slots queued on a failed device. A slot whose write (or poll)
 * is in flight stays at the head: its CQE owns it and frees it. */
static void dq_drop(struct precopy_pump *p, struct pump_dev *d)
{
	struct pump_uring *u = p->ur;
	int s = d->wq_head;

	if (s >= 0 && d->writing) {
		s = u->slots[s].next;
		u->slots[d->wq_head].next = -1;
		d->wq_tail = d->wq_head;
	} else {
		d->wq_head = d->wq_tail = -1;
	}
	while (s >= 0) {
		int n = u->slots[s].next;

		precopy__pump_ur_slot_put(u, s);
		s = n;
	}
}

/* Applies an EOD or ABORT frame once the device's earlier payload is all
 * written (or dropped because the device failed). */
static void end_check(struct precopy_pump *p, struct pump_dev *d)
{
	uint32_t end = d->end_pending;

	if (!end || d->wq_head >= 0 || d->writing)
		return;
	d->end_pending = 0;
	if (end & PRECOPY_FRAME_EOD)
		precopy__pump_load_eod(p, d);
	else
		precopy__pump_load_abort_apply(p, d);
}

static void kick_dev_writes(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	for (uint32_t i = 0; i < p->ndev; i++) {
		struct pump_dev *d = &p->devs[i];
		struct io_uring_sqe *sqe;
		struct slot *sl;
		uint8_t *b;
		int s = d->wq_head;

		if (d->writing || s < 0)
			continue;
		sl = &u->slots[s];
		b = precopy__pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE + sl->done;
		sqe = precopy__pump_ur_sqe_get(u);
		if (u->fixed)
			io_uring_prep_write_fixed(sqe, d->fd, b, sl->len - sl->done, (uint64_t)-1, s);
		else
			io_uring_prep_write(sqe, d->fd, b, sl->len - sl->done, (uint64_t)-1);
		precopy__pump_ur_sqe_set(u, sqe, OP_DWRITE, s);
		sl->state = S_WRITING;
		d->writing = true;
		u->dwrites++;
	}
}

/* Starts the next stream read if one is due. Returns false when no more
 * reading is wanted in this call. */
static bool submit_stream_read(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	bool boundary = !p->in_payload && p->hdr_have == 0;
	struct io_uring_sqe *sqe;
	int fd = p->cfg.stream_fd;

	if (p->broken || p->stream_eof || c->expired)
		return false;
	if ((boundary && precopy__pump_load_done(p)) || precopy__pump_ur_budget_left(c) == 0)
		return false;
	if (u->sr_busy)
		return true;
	if (!p->in_payload) {
		sqe = precopy__pump_ur_sqe_get(u);
		io_uring_prep_read(sqe, fd, p->hdr + p->hdr_have, PRECOPY_FRAME_HDR_SIZE - p->hdr_have,
				   (uint64_t)-1);
	} else if (p->cur.flags & PRECOPY_FRAME_ABORT) {
		sqe = precopy__pump_ur_sqe_get(u);
		io_uring_prep_read(sqe, fd, p->abort_buf + (PRECOPY_FRAME_ABORT_LEN - p->cur_left),
				   p->cur_left, (uint64_t)-1);
	} else {
		uint64_t left = precopy__pump_ur_budget_left(c);
		uint32_t want = p->cur_left < p->chunk ? p->cur_left : p->chunk;
		struct pump_dev *d = p->cur_dev >= 0 ? &p->devs[p->cur_dev] : NULL;
		int s;
		uint8_t *b;

		if (left < want)
			want = (uint32_t)left;
		/* a device pipe takes its payload by splice, on this thread (io_uring
		 * would hand every IORING_OP_SPLICE to a worker), once no copy of
		 * its own is queued ahead of it */
		if (d && d->splice && d->state == PRECOPY_PUMP_DEV_ACTIVE && d->wq_head < 0 && !d->writing) {
			int wfd = -1;
			short wev = 0;
			int n = precopy__pump_load_splice(p, c, d, want, &wfd, &wev);

			if (n > 0) {
				u->spliced = true;
				return true;
			}
			if (n == 0) {
				sqe = precopy__pump_ur_sqe_get(u);
				io_uring_prep_poll_add(sqe, wfd, (unsigned)wev);
				precopy__pump_ur_sqe_set(u, sqe, OP_SPOLL, 0);
				u->sr_busy = true;
				return true;
			}
		}
		if (d)
			want = precopy__pump_copy_len(p, d, want);
		if (want > p->load_piece_max)
			p->load_piece_max = want;
		s = precopy__pump_ur_slot_get(u);
		if (s < 0)
			return true; /* wait for a device write to free a slot */
		u->slots[s] = (struct slot){ .dev = p->cur_dev, .len = want, .state = S_READING };
		b = precopy__pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE;
		sqe = precopy__pump_ur_sqe_get(u);
		if (u->fixed)
			io_uring_prep_read_fixed(sqe, fd, b, want, (uint64_t)-1, s);
		else
			io_uring_prep_read(sqe, fd, b, want, (uint64_t)-1);
		u->sr_slot = s;
	}
	precopy__pump_ur_sqe_set(u, sqe, OP_SREAD, 0);
	u->sr_busy = true;
	return true;
}

static void sread_done(struct precopy_pump *p, struct pump_call *c, int res)
{
	struct pump_uring *u = p->ur;
	int s = u->sr_slot;

	u->sr_slot = -1;
	if (res <= 0) {
		if (s >= 0)
			precopy__pump_ur_slot_put(u, s);
		if (res == 0)
			p->stream_eof = true;
		else if (res == -EAGAIN) {
			struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);

			io_uring_prep_poll_add(sqe, p->cfg.stream_fd, POLLIN);
			precopy__pump_ur_sqe_set(u, sqe, OP_SPOLL, 0);
			u->sr_busy = true;
		} else if (res != -ECANCELED && res != -EINTR)
			precopy__pump_fail_stream(p, res, "read failed");
		return;
	}
	if (!p->in_payload) {
		p->hdr_have += (uint32_t)res;
		if (p->hdr_have == PRECOPY_FRAME_HDR_SIZE && precopy__pump_load_header(p) == 0 && p->eod_dev >= 0) {
			p->devs[p->eod_dev].end_pending = PRECOPY_FRAME_EOD;
			end_check(p, &p->devs[p->eod_dev]);
			p->eod_dev = -1;
		}
		return;
	}
	p->cur_left -= (uint32_t)res;
	if (p->cur.flags & PRECOPY_FRAME_ABORT) {
		if (!p->cur_left) {
			int i = precopy__pump_load_abort(p);

			if (i >= 0) {
				p->devs[i].end_pending = PRECOPY_FRAME_ABORT;
				end_check(p, &p->devs[i]);
			}
		}
		return;
	}
	c->moved += (uint64_t)res;
	u->slots[s].len = (uint32_t)res;
	u->slots[s].done = 0;
	u->slots[s].flags = p->cur_left == 0;
	if (p->cur_dev >= 0 && p->devs[p->cur_dev].state == PRECOPY_PUMP_DEV_ACTIVE)
		dq_push(p, &p->devs[p->cur_dev], s);
	else
		precopy__pump_ur_slot_put(u, s);
	if (!p->cur_left)
		p->in_payload = false;
}

static void load_cqe(struct precopy_pump *p, struct pump_call *c, struct io_uring_cqe *cqe)
{
	struct pump_uring *u = p->ur;
	enum op op = (enum op)(cqe->user_data >> 32);
	int s = (int)(uint32_t)cqe->user_data;
	int res = cqe->res;
	struct pump_dev *d;
	struct slot *sl;

	switch (op) {
	case OP_SREAD:
		u->sr_busy = false;
		sread_done(p, c, res);
		break;
	case OP_SPOLL:
		u->sr_busy = false;
		if (res < 0 && res != -EINTR && res != -ECANCELED)
			precopy__pump_fail_stream(p, res, "poll failed");
		break;
	case OP_DWRITE:
	case OP_DPOLL:
		sl = &u->slots[s];
		d = &p->devs[sl->dev];
		if (op == OP_DWRITE)
			u->dwrites--;
		d->writing = false;
		if (op == OP_DPOLL && (res >= 0 || res == -EINTR))
			break; /* writable again: kick_dev_writes resubmits */
		if (op == OP_DWRITE && res == -EAGAIN) {
			struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);

			io_uring_prep_poll_add(sqe, d->fd, POLLOUT);
			precopy__pump_ur_sqe_set(u, sqe, OP_DPOLL, s);
			d->writing = true;
			break;
		}
		if (res > 0) {
			sl->done += (uint32_t)res;
			d->bytes += (uint64_t)res;
			if (sl->done == sl->len) {
				d->wq_head = sl->next;
				if (d->wq_head < 0)
					d->wq_tail = -1;
				if (sl->flags)
					d->frames++;
				precopy__pump_ur_slot_put(u, s);
			}
		} else if (res != -EINTR) {
			precopy__pump_dev_fail(p, d, res ? res : -EIO, "write failed");
			if (p->cur_dev == (int)(d - p->devs))
				p->cur_dev = -1;
		}
		if (d->state == PRECOPY_PUMP_DEV_FAILED)
			dq_drop(p, d);
		end_check(p, d);
		break;
	default:
		break;
	}
}

/* At the drain deadline: a device write still waiting (a back-end that
 * stopped reading its fd) is cancelled, its device having failed with
 * -ETIMEDOUT, so that the call can end. Both ops are named because the
 * write may have turned into a POLLOUT; the one not in flight is -ENOENT. */
static void cancel_dev_writes(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	for (uint32_t i = 0; i < p->ndev; i++) {
		struct pump_dev *d = &p->devs[i];
		struct io_uring_sqe *sqe;

		if (!d->writing || d->state != PRECOPY_PUMP_DEV_FAILED || d->wq_head < 0)
			continue;
		sqe = precopy__pump_ur_sqe_get(u);
		io_uring_prep_cancel64(sqe, UD(OP_DWRITE, d->wq_head), 0);
		precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, 0);
		sqe = precopy__pump_ur_sqe_get(u);
		io_uring_prep_cancel64(sqe, UD(OP_DPOLL, d->wq_head), 0);
		precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, 0);
	}
}

int precopy__pump_uring_load(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	bool cancelled = false;
	int r;

	for (;;) {
		bool more;

		if (!c->expired && precopy__pump_expired(p, c) && c->mode == PUMP_DRAIN) {
			precopy__pump_timeout_devices(p);
			cancel_dev_writes(p);
		}
		u->spliced = false;
		more = submit_stream_read(p, c);
		kick_dev_writes(p);
		if (!more && u->sr_busy && !cancelled) {
			/* the stream read (or its poll) is not wanted any more */
			struct io_uring_sqe *sqe = precopy__pump_ur_sqe_get(u);

			io_uring_prep_cancel64(sqe, UD(OP_SREAD, 0), 0);
			precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, 0);
			sqe = precopy__pump_ur_sqe_get(u);
			io_uring_prep_cancel64(sqe, UD(OP_SPOLL, 0), 0);
			precopy__pump_ur_sqe_set(u, sqe, OP_CANCEL, 0);
			cancelled = true;
		}
		if (!u->inflight) {
			if (!more)
				break;
			if (!u->sr_busy && !u->dwrites)
				continue;
		}
		/* after a splice, only collect what completed: the next splice may
		 * be possible at once */
		r = precopy__pump_ur_reap(p, c, !u->spliced, c->deadline_ns != 0, load_cqe);
		if (r < 0 && r != -ETIME) {
			precopy__pump_fail_stream(p, r, "io_uring wait failed");
			return r;
		}
	}
	if (p->broken)
		return p->broken;
	if (p->stream_eof)
		return precopy__pump_load_eof(p, c->mode);
	return 0;
}
