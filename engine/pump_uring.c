/* The io_uring path of the pump (liburing): one ring, the pump's slots as
 * registered buffers, one read (SAVE) or write (LOAD) in flight per device
 * and several devices at once, one stream operation at a time (frames on a
 * stream must not interleave), splice from a device pipe to the stream.
 *
 * SAVE: a completed device read turns its slot into a frame on the ready
 * FIFO; the writer sends a batch of ready frames with one writev (or
 * write_fixed for one). A splice frame is its header, sent last in a batch,
 * then a splice of its payload from the device pipe, whose bytes were
 * counted (FIONREAD) before the header was built. io_uring runs every
 * IORING_OP_SPLICE on an io-wq worker (a thread switch per frame), so where
 * the stream lets a SPLICE_F_NONBLOCK splice return instead of waiting (a
 * pipe, or an O_NONBLOCK fd) the pump's thread splices and waits for room
 * with a ring poll (splice_step); other streams keep IORING_OP_SPLICE. A
 * splice device with an empty pipe gets a POLLIN, not a read, so that its
 * bytes are spliced rather than copied through a slot.
 * Read-ahead: copy reads wait while the bytes read into slots and not yet
 * written to the stream would pass a small bound (two chunks while that
 * fits in 1 MiB, else one), and reads are entered in small batches: a read
 * still in flight after an io_uring_enter (a device with nothing now, or
 * one read by an io-wq worker) stops counting, so slow devices still
 * overlap up to queue_depth while devices that answer at once cannot fill
 * every slot with frames that then wait, cold, for the stream.
 * LOAD: one stream read at a time (header, ABORT payload, or a data piece
 * into a slot); data slots queue on their device and are written in order.
 *
 * Every call ends quiesced: reads cancelled, writes complete, no CQE owed. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "pump_internal.h"

enum op { OP_READ = 1, OP_WRITE, OP_SPLICE, OP_SPOLL, OP_CANCEL, OP_SREAD, OP_DWRITE, OP_DPOLL, OP_RPOLL };
#define UD(op, i) (((uint64_t)(op) << 32) | (uint32_t)(i))
#define BATCH 16

enum slot_state { S_FREE, S_READING, S_READY, S_WRITING };

struct slot {
	int dev;
	uint32_t state;
	uint32_t len;   /* SAVE: requested, then payload; LOAD: piece length */
	uint32_t flags; /* SAVE: frame flags; LOAD: 1 = last piece of a frame */
	uint32_t done;  /* LOAD: bytes written to the device so far */
	bool splice;
	bool poll; /* SAVE: S_READING is a POLLIN on a splice device, not a read */
	bool ahead; /* SAVE: len counts in pump_uring.ahead (see there) */
	int next;
};

struct pump_uring {
	struct io_uring ring;
	bool fixed;
	struct slot *slots;
	int *freel;
	uint32_t nfree;
	uint32_t inflight; /* CQEs still owed */
	/* SAVE */
	int rq_head, rq_tail;
	uint32_t reads;
	/* SAVE read-ahead: bytes copied (or being copied) from devices into
	 * slots and not yet written to the stream: frames ready or being
	 * written, plus reads submitted that have not been through an
	 * io_uring_enter yet (their requested length). A read still in flight
	 * after an enter (a device with nothing now, or one that io_uring hands
	 * to a worker) stops counting until it completes, so slow devices
	 * still overlap up to queue_depth. New copy reads wait while ahead
	 * would pass ahead_max (one read may always start when ahead is 0). */
	uint64_t ahead, ahead_max;
	uint32_t ahead_reads; /* S_READING slots with .ahead set */
	struct pump_uring_stats st;
	bool w_busy;
	int w_slot[BATCH];
	int w_n;
	struct iovec iov[BATCH];
	int iov_first, iov_n;
	size_t w_left;
	int w_splice;
	uint32_t w_splice_left;
	bool splice_nowait; /* this call splices from the pump's thread */
	/* LOAD */
	bool sr_busy;
	int sr_slot;
	uint32_t dwrites;
};

static struct io_uring_sqe *sqe_get(struct pump_uring *u)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&u->ring);

	if (!s) {
		io_uring_submit(&u->ring);
		s = io_uring_get_sqe(&u->ring);
	}
	return s; /* the ring holds more entries than ops can be in flight */
}

static void sqe_set(struct pump_uring *u, struct io_uring_sqe *s, enum op op, int i)
{
	io_uring_sqe_set_data64(s, UD(op, i));
	u->inflight++;
}

/* The default read-ahead bound: two chunks, so that one device read can
 * proceed while a frame is being written, as long as the pair stays within
 * AHEAD_CACHE bytes (about half of a common L2); one chunk above that.
 * With devices that always answer at once on 2 CPUs, larger read-ahead
 * lost to cache misses and smaller made no difference (perf/README.md,
 * "Pump"). */
#define AHEAD_CACHE (1u << 20)

static uint64_t ahead_default(const struct precopy_pump *p)
{
	uint64_t two = 2 * (uint64_t)p->chunk;

	return two <= AHEAD_CACHE ? two : p->chunk;
}

void pump_uring_stats(const struct precopy_pump *p, struct pump_uring_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (p->ur) {
		*out = p->ur->st;
		out->ahead_max = p->ur->ahead_max;
	}
}

void pump_uring_set_ahead(struct precopy_pump *p, uint64_t max)
{
	if (!p->ur)
		return;
	p->ur->ahead_max = max ? max : ahead_default(p);
	memset(&p->ur->st, 0, sizeof(p->ur->st));
}

int pump_uring_init(struct precopy_pump *p)
{
	struct pump_uring *u = calloc(1, sizeof(*u));
	unsigned int entries = 8;
	int r;

	if (!u)
		return -ENOMEM;
	while (entries < 4 * p->depth + 8)
		entries *= 2;
	r = io_uring_queue_init(entries, &u->ring, 0);
	if (r < 0) {
		free(u);
		return r;
	}
	u->slots = calloc(p->depth, sizeof(*u->slots));
	u->freel = calloc(p->depth, sizeof(*u->freel));
	if (!u->slots || !u->freel) {
		io_uring_queue_exit(&u->ring);
		free(u->slots);
		free(u->freel);
		free(u);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->depth; i++)
		u->freel[u->nfree++] = (int)(p->depth - 1 - i);
	if (!(p->cfg.flags & PRECOPY_PUMP_NO_FIXED)) {
		struct iovec *v = calloc(p->depth, sizeof(*v));

		if (v) {
			for (uint32_t i = 0; i < p->depth; i++)
				v[i] = (struct iovec){ pump_slot(p, i), p->slot_size };
			/* without registration (e.g. RLIMIT_MEMLOCK) plain ops work */
			u->fixed = io_uring_register_buffers(&u->ring, v, p->depth) == 0;
			free(v);
		}
	}
	u->rq_head = u->rq_tail = -1;
	u->ahead_max = ahead_default(p);
	u->w_splice = -1;
	u->sr_slot = -1;
	p->ur = u;
	return 0;
}

void pump_uring_exit(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;

	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	free(u->slots);
	free(u->freel);
	free(u);
	p->ur = NULL;
}

static int slot_get(struct pump_uring *u)
{
	return u->nfree ? u->freel[--u->nfree] : -1;
}

static void ahead_drop(struct pump_uring *u, struct slot *sl)
{
	if (!sl->ahead)
		return;
	sl->ahead = false;
	u->ahead -= sl->len;
	if (sl->state == S_READING)
		u->ahead_reads--;
}

static void ahead_add(struct pump_uring *u, struct slot *sl)
{
	sl->ahead = true;
	u->ahead += sl->len;
	if (sl->state == S_READING)
		u->ahead_reads++;
	if (u->ahead > u->st.ahead_peak)
		u->st.ahead_peak = u->ahead;
}

static void slot_put(struct pump_uring *u, int s)
{
	ahead_drop(u, &u->slots[s]);
	u->slots[s].state = S_FREE;
	u->freel[u->nfree++] = s;
}

static uint64_t budget_left(const struct pump_call *c)
{
	uint64_t used = c->moved + c->reserved;

	if (!c->max_bytes)
		return UINT64_MAX;
	return c->max_bytes > used ? c->max_bytes - used : 0;
}

/* Waits for at least one CQE (bounded by the poll interval when timed) and
 * hands every available CQE to fn. Returns 0, -ETIME, or a ring error. */
static int reap(struct precopy_pump *p, struct pump_call *c, bool wait, bool timed,
		void (*fn)(struct precopy_pump *, struct pump_call *, struct io_uring_cqe *))
{
	struct pump_uring *u = p->ur;
	struct io_uring_cqe *cqe = NULL;
	int r;

	io_uring_submit(&u->ring);
	if (!wait) {
		r = io_uring_peek_cqe(&u->ring, &cqe);
	} else if (timed) {
		struct __kernel_timespec ts = {
			.tv_sec = p->cfg.poll_interval_ms / 1000,
			.tv_nsec = (long long)(p->cfg.poll_interval_ms % 1000) * 1000000,
		};
		r = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
	} else {
		r = io_uring_wait_cqe(&u->ring, &cqe);
	}
	if (r == -EINTR || r == -EAGAIN)
		return wait ? 0 : -ETIME;
	if (r < 0)
		return r;
	do {
		struct io_uring_cqe copy = *cqe;

		io_uring_cqe_seen(&u->ring, cqe);
		u->inflight--;
		fn(p, c, &copy);
	} while (io_uring_peek_cqe(&u->ring, &cqe) == 0);
	return 0;
}

/* ================================================================ SAVE */

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

		if (!d->pend_err || d->busy || (s = slot_get(u)) < 0)
			continue;
		u->slots[s] = (struct slot){ .dev = (int)i, .len = PRECOPY_FRAME_ABORT_LEN,
					     .flags = PRECOPY_FRAME_ABORT };
		pump_put_le32(pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE, (uint32_t)-d->pend_err);
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
		uint64_t left = budget_left(c);
		uint32_t len = left < p->chunk ? (uint32_t)left : p->chunk;
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
			if (precopy_sys_ioctl(&p->sys, d->fd, FIONREAD, &avail) < 0 || avail < 0) {
				d->splice = 0;
			} else if (avail == 0 && !polled) {
				/* empty now: wait for bytes with a poll so that they are
				 * spliced when they come, not read into a slot */
				s = slot_get(u);
				sqe = sqe_get(u);
				io_uring_prep_poll_add(sqe, d->fd, POLLIN);
				sqe_set(u, sqe, OP_RPOLL, s);
				u->slots[s] = (struct slot){ .dev = (int)(d - p->devs), .state = S_READING,
							     .poll = true };
				d->busy = true;
				u->reads++;
				continue;
			} else if (avail > 0) {
				s = slot_get(u);
				u->slots[s] = (struct slot){ .dev = (int)(d - p->devs), .splice = true,
							     .len = (uint32_t)avail < len ? (uint32_t)avail
											  : len };
				c->reserved += u->slots[s].len;
				d->busy = true;
				rq_push(u, s);
				continue;
			}
		}
		if (u->ahead && u->ahead + len > u->ahead_max) {
			if (first_held < 0)
				first_held = di;
			if (d->splice)
				d->rpolled = true; /* its POLLIN already fired: read it next */
			continue;
		}
		s = slot_get(u);
		buf = pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE;
		sqe = sqe_get(u);
		if (u->fixed)
			io_uring_prep_read_fixed(sqe, d->fd, buf, len, (uint64_t)-1, s);
		else
			io_uring_prep_read(sqe, d->fd, buf, len, (uint64_t)-1);
		sqe_set(u, sqe, OP_READ, s);
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
			ahead_drop(u, &u->slots[s]);
}

static void submit_write(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = sqe_get(u);

	if (u->iov_n == 1 && u->fixed && u->w_n == 1 && u->iov_first == 0) {
		int s = u->w_slot[0];
		io_uring_prep_write_fixed(sqe, p->cfg.stream_fd, u->iov[0].iov_base,
					  (unsigned int)u->iov[0].iov_len, (uint64_t)-1, s);
	} else {
		io_uring_prep_writev(sqe, p->cfg.stream_fd, u->iov + u->iov_first,
				     (unsigned int)u->iov_n, (uint64_t)-1);
	}
	sqe_set(u, sqe, OP_WRITE, 0);
	u->w_busy = true;
}

static void submit_splice(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = sqe_get(u);
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];

	io_uring_prep_splice(sqe, d->fd, -1, p->cfg.stream_fd, -1, u->w_splice_left, 0);
	sqe_set(u, sqe, OP_SPLICE, u->w_splice);
	u->w_busy = true;
}

static void submit_stream_poll(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct io_uring_sqe *sqe = sqe_get(u);

	io_uring_prep_poll_add(sqe, p->cfg.stream_fd, POLLOUT);
	sqe_set(u, sqe, OP_SPOLL, 0);
	u->w_busy = true;
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
		uint8_t *b = pump_slot(p, (uint32_t)s);
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
	pump_dev_done(p, d, sl->flags);
	slot_put(u, s);
}

/* A splice the ends refused after its header went out: the counted bytes are
 * in the device pipe, so finish the frame with read/write through sys. */
static void splice_by_copy(struct precopy_pump *p)
{
	struct pump_uring *u = p->ur;
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];
	uint8_t *b = pump_slot(p, (uint32_t)u->w_splice) + PRECOPY_FRAME_HDR_SIZE;

	d->splice = 0;
	while (u->w_splice_left && !p->broken) {
		ssize_t r = precopy_sys_read(&p->sys, d->fd, b, u->w_splice_left);

		if (r == -EINTR)
			continue;
		if (r <= 0) {
			pump_fail_stream(p, r ? (int)r : -EIO, "device bytes behind a sent header vanished");
			return;
		}
		r = pump_fb_write_all(p, p->cfg.stream_fd, b, (size_t)r) ?: r;
		if (r < 0) {
			pump_fail_stream(p, (int)r, "write failed");
			return;
		}
		u->w_splice_left -= (uint32_t)r;
	}
}

/* Moves the payload of the frame whose header just went out. io_uring
 * never issues a splice inline (it always hands it to an io-wq worker, one
 * thread switch per frame), so where the stream cannot block a splice that
 * is asked not to (a pipe, or an O_NONBLOCK fd: see stream_splice_nowait())
 * the pump's thread splices itself, and waits for room with a ring poll.
 * The counted bytes are in the device pipe, so its side never waits. */
static void splice_step(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	struct pump_dev *d = &p->devs[u->slots[u->w_splice].dev];

	if (!u->splice_nowait) {
		submit_splice(p);
		return;
	}
	while (u->w_splice_left && !p->broken) {
		ssize_t r = precopy_sys_splice(&p->sys, d->fd, p->cfg.stream_fd, u->w_splice_left,
					       SPLICE_F_NONBLOCK);

		if (r > 0) {
			u->w_splice_left -= (uint32_t)r;
		} else if (r == -EAGAIN) {
			submit_stream_poll(p); /* its CQE calls us again */
			return;
		} else if (r == -EINVAL) {
			splice_by_copy(p);
		} else if (r != -EINTR) {
			pump_fail_stream(p, r ? (int)r : -EIO, "splice inside a frame failed");
		}
	}
	if (p->broken)
		slot_put(u, u->w_splice);
	else
		frame_sent(p, c, u->w_splice);
	u->w_splice = -1;
}

/* Whether a splice with SPLICE_F_NONBLOCK into the stream returns instead of
 * waiting: into a pipe it does; into anything else only if the file is
 * O_NONBLOCK (a socket waits for buffer room otherwise). Asked at every call
 * because the caller owns the fd and may change its flags between calls.
 * Direct fstat/fcntl: the io_uring path only runs on the real kernel. */
static bool stream_splice_nowait(int fd)
{
	struct stat st;
	int fl;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		return true;
	fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

static void save_cqe(struct precopy_pump *p, struct pump_call *c, struct io_uring_cqe *cqe)
{
	struct pump_uring *u = p->ur;
	enum op op = (enum op)(cqe->user_data >> 32);
	int s = (int)(uint32_t)cqe->user_data;
	int res = cqe->res;

	switch (op) {
	case OP_READ: {
		struct slot *sl = &u->slots[s];
		struct pump_dev *d = &p->devs[sl->dev];

		u->reads--;
		c->reserved -= sl->len;
		ahead_drop(u, sl);
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
			slot_put(u, s);
			if (res == -EAGAIN || res == -ENOMSG)
				d->idle = true;
			else if (res < 0 && res != -ECANCELED && res != -EINTR &&
				 d->state == PRECOPY_PUMP_DEV_ACTIVE) {
				pump_dev_fail(p, d, res, "read failed");
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
		slot_put(u, s);
		break;
	case OP_WRITE: {
		u->w_busy = false;
		if (res == -EAGAIN) {
			submit_stream_poll(p);
			break;
		}
		if (res <= 0) {
			pump_fail_stream(p, res ? res : -EIO, "write failed");
			for (int k = 0; k < u->w_n; k++)
				slot_put(u, u->w_slot[k]);
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
		u->w_busy = false;
		if (res > 0) {
			u->w_splice_left -= (uint32_t)res;
		} else if (res == -EINVAL) {
			splice_by_copy(p);
		} else if (res == -EAGAIN) {
			submit_stream_poll(p);
			break;
		} else if (res != -EINTR) {
			pump_fail_stream(p, res ? res : -EIO, "splice inside a frame failed");
		}
		if (p->broken) {
			slot_put(u, u->w_splice);
			u->w_splice = -1;
		} else if (u->w_splice_left) {
			submit_splice(p);
		} else {
			frame_sent(p, c, u->w_splice);
			u->w_splice = -1;
		}
		break;
	case OP_SPOLL:
		u->w_busy = false;
		if (res < 0 && res != -EINTR) {
			pump_fail_stream(p, res, "poll failed");
			if (u->w_splice >= 0) {
				slot_put(u, u->w_splice);
				u->w_splice = -1;
			}
			for (int k = 0; k < u->w_n; k++)
				slot_put(u, u->w_slot[k]);
			u->w_n = 0;
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
		sqe = sqe_get(u);
		io_uring_prep_cancel64(sqe, UD(u->slots[s].poll ? OP_RPOLL : OP_READ, s), 0);
		sqe_set(u, sqe, OP_CANCEL, (int)s);
	}
}

int pump_uring_save(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	bool stop = false, cancelled = false;
	int r;

	u->splice_nowait = stream_splice_nowait(p->cfg.stream_fd);
	for (;;) {
		if (!stop && (p->broken || (c->mode == PUMP_RUN && pump_expired(p, c))))
			stop = true;
		if (!stop && c->mode == PUMP_DRAIN && pump_expired(p, c) && !cancelled) {
			pump_timeout_devices(p);
			cancel_reads(p, true);
			cancelled = true;
		}
		if (!p->broken)
			queue_aborts(p);
		if (!stop)
			submit_reads(p, c);
		writer_kick(p);
		if (!u->inflight && (u->rq_head < 0 || p->broken)) {
			if (stop || p->broken || pump_all_ended(p))
				break;
			if (c->mode == PUMP_RUN) {
				bool any = false;

				for (uint32_t i = 0; i < p->ndev; i++)
					any |= p->devs[i].state == PRECOPY_PUMP_DEV_ACTIVE && !p->devs[i].idle &&
					       !p->devs[i].ending;
				if (!any || budget_left(c) == 0)
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
			r = reap(p, c, false, false, save_cqe);
			ahead_settle(p);
			if (r < 0 && r != -ETIME) {
				pump_fail_stream(p, r, "io_uring wait failed");
				return r;
			}
			continue;
		}
		if (c->mode == PUMP_RUN && !stop && !u->w_busy && u->rq_head < 0) {
			/* only reads in flight: what is not ready now is "nothing now" */
			r = reap(p, c, false, false, save_cqe);
			ahead_settle(p);
			if (r == -ETIME) {
				stop = true;
				continue;
			}
		} else {
			bool timed = c->mode == PUMP_DRAIN && !stop;

			r = reap(p, c, true, timed, save_cqe);
			ahead_settle(p);
			if (r == -ETIME) {
				for (uint32_t i = 0; i < p->ndev; i++)
					p->devs[i].idle = false;
				continue;
			}
		}
		if (r < 0 && r != -ETIME) {
			pump_fail_stream(p, r, "io_uring wait failed");
			return r;
		}
	}
	return p->broken;
}

/* ================================================================ LOAD */

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

		slot_put(u, s);
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
		pump_load_eod(p, d);
	else
		pump_load_abort_apply(p, d);
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
		b = pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE + sl->done;
		sqe = sqe_get(u);
		if (u->fixed)
			io_uring_prep_write_fixed(sqe, d->fd, b, sl->len - sl->done, (uint64_t)-1, s);
		else
			io_uring_prep_write(sqe, d->fd, b, sl->len - sl->done, (uint64_t)-1);
		sqe_set(u, sqe, OP_DWRITE, s);
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
	if ((boundary && pump_load_done(p)) || budget_left(c) == 0)
		return false;
	if (u->sr_busy)
		return true;
	if (!p->in_payload) {
		sqe = sqe_get(u);
		io_uring_prep_read(sqe, fd, p->hdr + p->hdr_have, PRECOPY_FRAME_HDR_SIZE - p->hdr_have,
				   (uint64_t)-1);
	} else if (p->cur.flags & PRECOPY_FRAME_ABORT) {
		sqe = sqe_get(u);
		io_uring_prep_read(sqe, fd, p->abort_buf + (PRECOPY_FRAME_ABORT_LEN - p->cur_left),
				   p->cur_left, (uint64_t)-1);
	} else {
		uint64_t left = budget_left(c);
		uint32_t want = p->cur_left < p->chunk ? p->cur_left : p->chunk;
		int s = slot_get(u);
		uint8_t *b;

		if (s < 0)
			return true; /* wait for a device write to free a slot */
		if (left < want)
			want = (uint32_t)left;
		u->slots[s] = (struct slot){ .dev = p->cur_dev, .len = want, .state = S_READING };
		b = pump_slot(p, (uint32_t)s) + PRECOPY_FRAME_HDR_SIZE;
		sqe = sqe_get(u);
		if (u->fixed)
			io_uring_prep_read_fixed(sqe, fd, b, want, (uint64_t)-1, s);
		else
			io_uring_prep_read(sqe, fd, b, want, (uint64_t)-1);
		u->sr_slot = s;
	}
	sqe_set(u, sqe, OP_SREAD, 0);
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
			slot_put(u, s);
		if (res == 0)
			p->stream_eof = true;
		else if (res == -EAGAIN) {
			struct io_uring_sqe *sqe = sqe_get(u);

			io_uring_prep_poll_add(sqe, p->cfg.stream_fd, POLLIN);
			sqe_set(u, sqe, OP_SPOLL, 0);
			u->sr_busy = true;
		} else if (res != -ECANCELED && res != -EINTR)
			pump_fail_stream(p, res, "read failed");
		return;
	}
	if (!p->in_payload) {
		p->hdr_have += (uint32_t)res;
		if (p->hdr_have == PRECOPY_FRAME_HDR_SIZE && pump_load_header(p) == 0 && p->eod_dev >= 0) {
			p->devs[p->eod_dev].end_pending = PRECOPY_FRAME_EOD;
			end_check(p, &p->devs[p->eod_dev]);
			p->eod_dev = -1;
		}
		return;
	}
	p->cur_left -= (uint32_t)res;
	if (p->cur.flags & PRECOPY_FRAME_ABORT) {
		if (!p->cur_left) {
			int i = pump_load_abort(p);

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
		slot_put(u, s);
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
			pump_fail_stream(p, res, "poll failed");
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
			struct io_uring_sqe *sqe = sqe_get(u);

			io_uring_prep_poll_add(sqe, d->fd, POLLOUT);
			sqe_set(u, sqe, OP_DPOLL, s);
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
				slot_put(u, s);
			}
		} else if (res != -EINTR) {
			pump_dev_fail(p, d, res ? res : -EIO, "write failed");
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

int pump_uring_load(struct precopy_pump *p, struct pump_call *c)
{
	struct pump_uring *u = p->ur;
	bool cancelled = false;
	int r;

	for (;;) {
		bool more;

		if (!c->expired && pump_expired(p, c) && c->mode == PUMP_DRAIN)
			pump_timeout_devices(p);
		more = submit_stream_read(p, c);
		kick_dev_writes(p);
		if (!more && u->sr_busy && !cancelled) {
			/* the stream read (or its poll) is not wanted any more */
			struct io_uring_sqe *sqe = sqe_get(u);

			io_uring_prep_cancel64(sqe, UD(OP_SREAD, 0), 0);
			sqe_set(u, sqe, OP_CANCEL, 0);
			sqe = sqe_get(u);
			io_uring_prep_cancel64(sqe, UD(OP_SPOLL, 0), 0);
			sqe_set(u, sqe, OP_CANCEL, 0);
			cancelled = true;
		}
		if (!u->inflight) {
			if (!more)
				break;
			if (!u->sr_busy && !u->dwrites)
				continue;
		}
		r = reap(p, c, true, c->deadline_ns != 0, load_cqe);
		if (r < 0 && r != -ETIME) {
			pump_fail_stream(p, r, "io_uring wait failed");
			return r;
		}
	}
	if (p->broken)
		return p->broken;
	if (p->stream_eof)
		return pump_load_eof(p, c->mode);
	return 0;
}
