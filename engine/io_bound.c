/* SPDX-License-Identifier: MIT */
/* Bounded waits and the one bounded writer of both engines: a wait ends on
 * the clock and on rounds without progress (engine/io_bound.h). */
#include <errno.h>
#include <poll.h>

#include "io_bound.h"
#include "../ioctl/sys_retry.h"

/* Before a round: -ECANCELED after an interrupt, -ETIMEDOUT once the wait
 * is over by the clock or by its rounds, else 0 (the deadline set at the
 * first round). */
static int over(const struct precopy__io_bound *b, struct precopy__io_wait *w)
{
	uint64_t now = b->clock.now_ns(b->clock.ctx);

	if (b->interrupt && __atomic_load_n(b->interrupt, __ATOMIC_ACQUIRE))
		return -ECANCELED;
	if (!w->deadline)
		w->deadline = now > UINT64_MAX - b->timeout_ns ? UINT64_MAX : now + b->timeout_ns;
	else if (now >= w->deadline || w->waited_ns >= b->timeout_ns)
		return -ETIMEDOUT;
	return 0;
}

int precopy__io_wait_fd(const struct precopy__io_bound *b, int fd, short events, struct precopy__io_wait *w)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r = over(b, w);

	if (r < 0)
		return r;
	r = precopy__sys_poll(b->sys, &pfd, 1, (int)b->poll_ms);
	/* every round counts, ready or not: a fd that polls ready and still
	 * takes nothing must not hold the caller while the clock stands still */
	w->waited_ns += (uint64_t)(b->poll_ms ? b->poll_ms : 1) * 1000000u;
	if (b->interrupt && __atomic_load_n(b->interrupt, __ATOMIC_ACQUIRE))
		return -ECANCELED;
	return r < 0 && r != -EINTR ? r : 0;
}

int precopy__io_round(const struct precopy__io_bound *b, struct precopy__io_wait *w, uint32_t waited_ms)
{
	int r = over(b, w);

	if (r < 0)
		return r;
	w->waited_ns += (uint64_t)(waited_ms ? waited_ms : 1) * 1000000u;
	return 0;
}

int precopy__io_write_all(const struct precopy__io_bound *b, int poll_fd, precopy__io_write_fn fn, void *ctx,
			  const void *buf, size_t len, struct precopy__io_result *res)
{
	struct precopy__io_wait w = { 0, 0 };
	const uint8_t *p = buf;
	size_t done = 0;
	int r = 0, in_poll = 0;

	while (done < len) {
		ssize_t n = fn(ctx, p + done, len - done);

		if (n > 0) {
			done += (size_t)n;
			w.deadline = w.waited_ns = 0;
			continue;
		}
		if (n == 0 || n == -EAGAIN || n == -EINTR) {
			r = precopy__io_wait_fd(b, poll_fd, POLLOUT, &w);
			if (r < 0) {
				in_poll = r != -ETIMEDOUT;
				break;
			}
			continue;
		}
		r = (int)n;
		break;
	}
	if (res) {
		res->done = done;
		res->in_poll = in_poll;
	}
	return r;
}

ssize_t precopy__io_fd_write(void *ctx, const void *buf, size_t len)
{
	struct precopy__io_fd *f = ctx;

	return precopy__sys_write_nosig(f->sys, f->fd, buf, len, &f->kind);
}

int precopy__io_write_fd(const struct precopy__io_bound *b, struct precopy__io_fd *f, const void *buf, size_t len,
			 struct precopy__io_result *res)
{
	return precopy__io_write_all(b, f->fd, precopy__io_fd_write, f, buf, len, res);
}
