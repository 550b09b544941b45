/* SPDX-License-Identifier: MIT */
/* The sys path of the pump: plain read/write/splice/poll through the
 * `sys` seam, one operation at a time. Used where io_uring is unavailable,
 * forced off, or when the seam is a fake kernel. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "pump_internal.h"
#include "../ioctl/sys_retry.h"

static uint64_t budget_left(const struct pump_call *c)
{
	if (!c->max_bytes)
		return UINT64_MAX;
	return c->max_bytes > c->moved ? c->max_bytes - c->moved : 0;
}

/* Waits up to one poll interval for fd. -ETIMEDOUT once a drain is one poll
 * interval past its deadline: a stream (or destination device) that takes
 * nothing then would otherwise keep the call in its write loop for ever. */
static int wait_fd_ready(struct precopy_pump *p, int fd, short events, bool *ready)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r;

	*ready = false;
	if (precopy__pump_stalled(p))
		return -ETIMEDOUT;
	r = precopy__sys_poll(&p->sys, &pfd, 1, (int)p->cfg.poll_interval_ms);
	*ready = r > 0;
	return r < 0 && r != -EINTR ? r : 0;
}

static int wait_fd(struct precopy_pump *p, int fd, short events)
{
	bool ready;

	return wait_fd_ready(p, fd, events, &ready);
}

int precopy__pump_fb_write_all(struct precopy_pump *p, int fd, const uint8_t *b, size_t len)
{
	while (len) {
		ssize_t r = precopy__sys_write(&p->sys, fd, b, len);

		if (r > 0) {
			b += r;
			len -= (size_t)r;
		} else if (r == -EAGAIN) {
			int e = wait_fd(p, fd, POLLOUT);
			if (e)
				return e;
		} else if (r == 0) {
			return -EIO;
		} else if (r != -EINTR) {
			return (int)r;
		}
	}
	return 0;
}

/* Writes one whole frame whose payload is already at slot + HDR. */
static int emit(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d, uint32_t flags,
		uint32_t len)
{
	uint8_t *s = precopy__pump_slot(p, 0);
	struct precopy_frame_hdr h = { .dev_id = d->id, .flags = flags, .len = len };
	int r;

	precopy_frame_encode(&h, s);
	r = precopy__pump_fb_write_all(p, p->cfg.stream_fd, s, PRECOPY_FRAME_HDR_SIZE + (size_t)len);
	if (r)
		return precopy__pump_fail_stream(p, r, "write failed");
	if (!flags) {
		d->bytes += len;
		c->moved += len;
	}
	precopy__pump_dev_done(p, d, flags);
	return 0;
}

static int emit_abort(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d, int err)
{
	pump_put_le32(precopy__pump_slot(p, 0) + PRECOPY_FRAME_HDR_SIZE, (uint32_t)-err);
	return emit(p, c, d, PRECOPY_FRAME_ABORT, PRECOPY_FRAME_ABORT_LEN);
}

/* A frame whose n payload bytes already sit in the device's pipe: header
 * first, then splice them. If the ends cannot splice, read/write the rest
 * (the bytes are there, so the read cannot block or fall short for long). */
static int splice_frame(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d, uint32_t n)
{
	uint8_t hdr[PRECOPY_FRAME_HDR_SIZE];
	struct precopy_frame_hdr h = { .dev_id = d->id, .flags = 0, .len = n };
	uint32_t left = n;
	int r;

	precopy_frame_encode(&h, hdr);
	r = precopy__pump_fb_write_all(p, p->cfg.stream_fd, hdr, sizeof(hdr));
	if (r)
		return precopy__pump_fail_stream(p, r, "write failed");
	while (left) {
		/* SPLICE_F_NONBLOCK: a full stream pipe answers -EAGAIN and is
		 * waited for with a bounded poll instead of blocking in the
		 * kernel (a socket stream blocks unless it is O_NONBLOCK) */
		ssize_t s = d->splice ? precopy__sys_splice(&p->sys, d->fd, p->cfg.stream_fd, left,
							   SPLICE_F_NONBLOCK)
				      : precopy__sys_read(&p->sys, d->fd, precopy__pump_slot(p, 0), left);

		if (s > 0 && d->splice) {
			left -= (uint32_t)s;
		} else if (s > 0) {
			r = precopy__pump_fb_write_all(p, p->cfg.stream_fd, precopy__pump_slot(p, 0), (size_t)s);
			if (r)
				return precopy__pump_fail_stream(p, r, "write failed");
			left -= (uint32_t)s;
		} else if (s == -EINVAL && d->splice) {
			d->splice = 0;
		} else if (s == -EAGAIN) {
			if (precopy__pump_splice_lost(p, d))
				return p->broken;
			r = wait_fd(p, p->cfg.stream_fd, POLLOUT);
			if (r)
				return precopy__pump_fail_stream(p, r, r == -ETIMEDOUT ? "no room before the drain deadline"
									  : "poll failed");
		} else if (s != -EINTR) {
			/* the header promised bytes that cannot follow */
			return precopy__pump_fail_stream(p, s ? (int)s : -EIO, "splice inside a frame failed");
		}
	}
	if (d->splice < 0)
		d->splice = 1;
	d->bytes += n;
	c->moved += n;
	precopy__pump_dev_done(p, d, 0);
	return 0;
}

/* One step for one device: returns 1 on progress, 0 if nothing now, or a
 * stream-level -errno. */
static int save_one(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d)
{
	uint64_t left = budget_left(c);
	uint32_t len = left < p->chunk ? (uint32_t)left : p->chunk;
	ssize_t r;

	if (len == 0)
		return 0;
	if (d->splice) {
		int avail = 0;

		if (precopy__sys_ioctl(&p->sys, d->fd, FIONREAD, &avail) < 0 || avail < 0)
			d->splice = 0;
		else if (avail > 0)
			return splice_frame(p, c, d, (uint32_t)avail < len ? (uint32_t)avail : len) ?: 1;
	}
	r = precopy__sys_read(&p->sys, d->fd, precopy__pump_slot(p, 0) + PRECOPY_FRAME_HDR_SIZE, precopy__pump_copy_len(p, d, len));
	if (r > 0)
		return emit(p, c, d, 0, (uint32_t)r) ?: 1;
	if (r == 0) {
		d->ending = true;
		return emit(p, c, d, PRECOPY_FRAME_EOD, 0) ?: 1;
	}
	if (r == -EAGAIN || r == -ENOMSG) {
		d->idle = true;
		return 0;
	}
	if (r == -EINTR)
		return 0;
	precopy__pump_dev_fail(p, d, (int)r, "read failed");
	return emit_abort(p, c, d, (int)r) ?: 1;
}

int precopy__pump_fb_save(struct precopy_pump *p, struct pump_call *c)
{
	struct pollfd *pfd = calloc(p->ndev ? p->ndev : 1, sizeof(*pfd));
	uint32_t *map = calloc(p->ndev ? p->ndev : 1, sizeof(*map));
	int r = 0;

	if (!pfd || !map) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		unsigned int n = 0;
		bool progress = false;

		if (p->broken) {
			r = p->broken;
			break;
		}
		if (precopy__pump_expired(p, c)) {
			if (c->mode == PUMP_RUN)
				break;
			precopy__pump_timeout_devices(p);
		}
		for (uint32_t i = 0; i < p->ndev; i++) {
			struct pump_dev *d = &p->devs[i];

			if (d->pend_err) {
				int e = d->pend_err;

				d->pend_err = 0;
				r = emit_abort(p, c, d, e);
				if (r)
					goto out;
			}
		}
		if (precopy__pump_all_ended(p) || budget_left(c) == 0)
			break;
		for (uint32_t k = 0; k < p->ndev; k++) {
			uint32_t i = (p->rr + k) % p->ndev;
			struct pump_dev *d = &p->devs[i];

			if (d->state != PRECOPY_PUMP_DEV_ACTIVE || d->idle)
				continue;
			pfd[n] = (struct pollfd){ .fd = d->fd, .events = POLLIN };
			map[n++] = i;
		}
		if (n) {
			r = precopy__sys_poll(&p->sys, pfd, n, 0);
			if (r < 0 && r != -EINTR) {
				r = precopy__pump_fail_stream(p, r, "poll failed");
				break;
			}
			r = 0;
		}
		for (unsigned int k = 0; k < n; k++) {
			struct pump_dev *d = &p->devs[map[k]];

			if (!pfd[k].revents) {
				if (c->mode == PUMP_RUN)
					d->idle = true;
				continue;
			}
			r = save_one(p, c, d);
			if (r < 0)
				goto out;
			progress |= r > 0;
			r = 0;
		}
		if (progress)
			continue;
		if (c->mode == PUMP_RUN)
			break;
		/* drain, nothing moved: wait for the devices that can be waited
		 * for (none: just sleep), then retry those that said "not now" */
		n = 0;
		for (uint32_t i = 0; i < p->ndev; i++) {
			struct pump_dev *d = &p->devs[i];

			if (d->state == PRECOPY_PUMP_DEV_ACTIVE && !d->idle) {
				pfd[n] = (struct pollfd){ .fd = d->fd, .events = POLLIN };
				n++;
			}
			d->idle = false;
		}
		r = precopy__sys_poll(&p->sys, n ? pfd : NULL, n, (int)p->cfg.poll_interval_ms);
		if (r < 0 && r != -EINTR) {
			r = precopy__pump_fail_stream(p, r, "poll failed");
			break;
		}
		r = 0;
	}
out:
	free(pfd);
	free(map);
	return r;
}

/* ---------------------------------------------------------------- LOAD */

int precopy__pump_fb_load(struct precopy_pump *p, struct pump_call *c)
{
	int fd = p->cfg.stream_fd;
	uint8_t *buf = precopy__pump_slot(p, 0);

	for (;;) {
		bool boundary = !p->in_payload && p->hdr_have == 0;
		ssize_t r;
		uint32_t want;
		uint8_t *dst;

		if (p->broken)
			return p->broken;
		if (boundary && precopy__pump_load_done(p))
			return 0;
		if (p->stream_eof)
			return precopy__pump_load_eof(p, c->mode);
		if (budget_left(c) == 0)
			return 0;
		if (precopy__pump_expired(p, c)) {
			if (c->mode == PUMP_DRAIN)
				precopy__pump_timeout_devices(p);
			return 0;
		}
		if (c->deadline_ns) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };

			r = precopy__sys_poll(&p->sys, &pfd, 1, (int)p->cfg.poll_interval_ms);
			if (r < 0 && r != -EINTR)
				return precopy__pump_fail_stream(p, (int)r, "poll failed");
			if (r <= 0)
				continue;
		}
		if (!p->in_payload) {
			dst = p->hdr + p->hdr_have;
			want = PRECOPY_FRAME_HDR_SIZE - p->hdr_have;
		} else if (p->cur.flags & PRECOPY_FRAME_ABORT) {
			dst = p->abort_buf + (PRECOPY_FRAME_ABORT_LEN - p->cur_left);
			want = p->cur_left;
		} else {
			uint64_t left = budget_left(c);
			struct pump_dev *d = p->cur_dev >= 0 ? &p->devs[p->cur_dev] : NULL;

			dst = buf;
			want = p->cur_left < p->chunk ? p->cur_left : p->chunk;
			if (left < want)
				want = (uint32_t)left;
			if (d && d->splice && d->state == PRECOPY_PUMP_DEV_ACTIVE) {
				int wfd = -1;
				short wev = 0;
				int n = precopy__pump_load_splice(p, c, d, want, &wfd, &wev);

				if (n > 0)
					continue;
				if (n == 0) {
					bool ready;
					int e = wait_fd_ready(p, wfd, wev, &ready);

					if (e && wfd == fd)
						return precopy__pump_fail_stream(p, e, "poll failed");
					if (e) {
						precopy__pump_dev_fail(p, d, e, "write failed");
						p->cur_dev = -1;
					}
					if (wfd == fd && !ready)
						p->load_spolled = false; /* nothing came yet: wait again */
					continue;
				}
			}
			if (d)
				want = precopy__pump_copy_len(p, d, want);
			if (want > p->load_piece_max)
				p->load_piece_max = want;
		}
		r = precopy__sys_read(&p->sys, fd, dst, want);
		if (r == 0) {
			p->stream_eof = true;
			continue;
		}
		if (r == -EAGAIN) {
			r = wait_fd(p, fd, POLLIN);
			if (r)
				return precopy__pump_fail_stream(p, (int)r, "poll failed");
			continue;
		}
		if (r == -EINTR)
			continue;
		if (r < 0)
			return precopy__pump_fail_stream(p, (int)r, "read failed");

		if (!p->in_payload) {
			p->hdr_have += (uint32_t)r;
			if (p->hdr_have == PRECOPY_FRAME_HDR_SIZE && precopy__pump_load_header(p))
				return p->broken;
			if (p->eod_dev >= 0) {
				precopy__pump_load_eod(p, &p->devs[p->eod_dev]);
				p->eod_dev = -1;
			}
			continue;
		}
		p->cur_left -= (uint32_t)r;
		if (p->cur.flags & PRECOPY_FRAME_ABORT) {
			if (!p->cur_left) {
				/* every earlier payload byte of the device
				 * was written synchronously already */
				int i = precopy__pump_load_abort(p);

				if (i >= 0)
					precopy__pump_load_abort_apply(p, &p->devs[i]);
			}
			continue;
		}
		c->moved += (uint64_t)r;
		if (p->cur_dev >= 0) {
			struct pump_dev *d = &p->devs[p->cur_dev];
			int e = precopy__pump_fb_write_all(p, d->fd, buf, (size_t)r);

			if (e) {
				precopy__pump_dev_fail(p, d, e, "write failed");
				p->cur_dev = -1;
			} else {
				d->bytes += (uint64_t)r;
				if (!p->cur_left)
					d->frames++;
			}
		}
		if (!p->cur_left)
			p->in_payload = false;
	}
}
