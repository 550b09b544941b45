/* SPDX-License-Identifier: MIT */
/* The io_uring path of the pump (liburing), in three files: this one (the
 * ring, slots, reaping), precopy__pump_uring_save.c and precopy__pump_uring_load.c. One ring,
 * the pump's slots as registered buffers, one read (SAVE) or write (LOAD) in flight per device
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
 * pipe, an O_NONBLOCK fd, or a blocking socket whose sends the call bounds
 * with SO_SNDTIMEO) the pump's thread splices and waits for room with a
 * ring poll (splice_step); other streams keep IORING_OP_SPLICE. A
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
#include <stdlib.h>
#include <string.h>

#include "pump_uring_internal.h"

struct io_uring_sqe *precopy__pump_ur_sqe_get(struct pump_uring *u)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&u->ring);

	if (!s) {
		io_uring_submit(&u->ring);
		s = io_uring_get_sqe(&u->ring);
	}
	return s; /* the ring holds more entries than ops can be in flight */
}

void precopy__pump_ur_sqe_set(struct pump_uring *u, struct io_uring_sqe *s, enum op op, int i)
{
	io_uring_sqe_set_data64(s, UD(op, i));
	u->inflight++;
}

/* The default read-ahead bound: two chunks, so that one device read can
 * proceed while a frame is being written, as long as the pair stays within
 * AHEAD_CACHE bytes (about half of a common L2); one chunk above that.
 * With devices that always answer at once on 2 CPUs, larger read-ahead
 * lost to cache misses and smaller made no difference (perf/pump-history.md,
 * "Figures (2026-11-22, commit a120313): bounded read-ahead"). */
#define AHEAD_CACHE (1u << 20)

static uint64_t ahead_default(const struct precopy_pump *p)
{
	uint64_t two = 2 * (uint64_t)p->chunk;

	return two <= AHEAD_CACHE ? two : p->chunk;
}

void precopy__pump_uring_stats(const struct precopy_pump *p, struct precopy__pump_uring_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (p->ur) {
		*out = p->ur->st;
		out->ahead_max = p->ur->ahead_max;
	}
}

void precopy__pump_uring_set_ahead(struct precopy_pump *p, uint64_t max)
{
	if (!p->ur)
		return;
	p->ur->ahead_max = max ? max : ahead_default(p);
	memset(&p->ur->st, 0, sizeof(p->ur->st));
}

int precopy__pump_uring_init(struct precopy_pump *p)
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
				v[i] = (struct iovec){ precopy__pump_slot(p, i), p->slot_size };
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

void precopy__pump_uring_exit(struct precopy_pump *p)
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

int precopy__pump_ur_slot_get(struct pump_uring *u)
{
	return u->nfree ? u->freel[--u->nfree] : -1;
}

void precopy__pump_ur_ahead_drop(struct pump_uring *u, struct slot *sl)
{
	if (!sl->ahead)
		return;
	sl->ahead = false;
	u->ahead -= sl->len;
	if (sl->state == S_READING)
		u->ahead_reads--;
}

void precopy__pump_ur_slot_put(struct pump_uring *u, int s)
{
	precopy__pump_ur_ahead_drop(u, &u->slots[s]);
	u->slots[s].state = S_FREE;
	u->freel[u->nfree++] = s;
}

uint64_t precopy__pump_ur_budget_left(const struct pump_call *c)
{
	uint64_t used = c->moved + c->reserved;

	if (!c->max_bytes)
		return UINT64_MAX;
	return c->max_bytes > used ? c->max_bytes - used : 0;
}

/* Waits for at least one CQE (bounded by the poll interval when timed) and
 * hands every available CQE to fn. Returns 0, -ETIME, or a ring error. */
int precopy__pump_ur_reap(struct precopy_pump *p, struct pump_call *c, bool wait, bool timed,
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
