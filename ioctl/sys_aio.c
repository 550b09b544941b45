/* SPDX-License-Identifier: MIT */
/* The real table's asynchronous queue (precopy/sys.h, "Asynchronous
 * queue"): one io_uring per queue, liburing.
 *
 * Each op in flight holds a slot (0 .. depth-1); the slot's index is the
 * SQE's user_data and the slot keeps the caller's tag, so tags may be any
 * value and the queue's own SQEs (cancels) are told apart by a user_data no
 * slot has. Reads and writes use offset -1: the fd's file position where it
 * has one, the stream otherwise, as read(2)/write(2).
 *
 * An op counts as in flight from the moment its SQE is in the ring: a
 * submission the kernel did not take at once (-EAGAIN, -EBUSY, a signal)
 * stays in the SQ ring and is passed again by the next submit or reap, so
 * aio_submit is all or none even then.
 *
 * Thread safety: a queue is used by one thread at a time (any thread);
 * queues share nothing. Nothing here touches signal dispositions or masks.
 * Rationale and kernel behaviour: docs/io.md, "The asynchronous queue on
 * io_uring". */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "sys_aio.h"

/* user_data of the queue's cancel SQEs: above any slot, and not
 * LIBURING_UDATA_TIMEOUT (all ones), which liburing uses for its own
 * timeout SQE on kernels without IORING_FEAT_EXT_ARG */
#define UD_CANCEL (UINT64_MAX - 1)

/* The most one op moves: read(2) and write(2) move at most about 2 GiB
 * (MAX_RW_COUNT) and io_uring's length is 32 bits; a larger request gets a
 * short count, as read(2) may give. */
#define OP_LEN_MAX (1u << 30)

/* aio_close waits for what it cancelled in slices of this long, cancelling
 * again after each (an op between its first try and its poll, or not yet
 * on a worker, can miss one cancel). */
#define CLOSE_SLICE_MS 20

/* rounds of aio_close (each a slice, or a completion) in which the kernel
 * refuses the SQEs still in the ring before aio_close stops waiting */
#define CLOSE_REFUSED_ROUNDS 50

/* a submission interrupted by a signal is made again this many times (as
 * ioctl/sys_retry.h), then left in the SQ ring for the next call */
#define SUBMIT_EINTR_RETRIES 1000

struct sys_aio {
	struct io_uring ring;
	unsigned int depth;
	unsigned int inflight; /* ops submitted and not yet reaped */
	unsigned int nfree;
	uint32_t *freel;       /* free slot indices, nfree of them */
	uint64_t *tag;         /* per slot: the caller's tag */
	uint8_t *busy;         /* per slot: 1 while its op is in flight */
};

/* Passes the SQEs in the ring to the kernel. A transient refusal (a
 * signal, -EAGAIN: no memory for requests now, -EBUSY: completions owed
 * first) leaves them in the SQ ring for the next call; returns 0 then, or
 * the kernel's other errors. */
static int sq_flush(struct sys_aio *q)
{
	int eintr = 0;

	while (io_uring_sq_ready(&q->ring) > 0) {
		int r = io_uring_submit(&q->ring);

		if (r > 0)
			continue;
		if (r == -EINTR && ++eintr < SUBMIT_EINTR_RETRIES)
			continue;
		if (r == 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY)
			return 0;
		return r;
	}
	return 0;
}

/* 0 if the kernel has the ops the queue uses (IORING_OP_READ and _WRITE,
 * Linux 5.6; ASYNC_CANCEL, 5.5), -ENOSYS if not: a kernel that does not
 * know IORING_REGISTER_PROBE (-EINVAL) is older than 5.6. A probe that is
 * refused (-EPERM, a filter) or fails for memory proves nothing: 0, and the
 * ops themselves will tell. */
static int ops_supported(struct sys_aio *q)
{
	enum { NOPS = 256 };
	struct io_uring_probe *pr = calloc(1, sizeof(*pr) + NOPS * sizeof(pr->ops[0]));
	int r;

	if (!pr)
		return 0;
	r = io_uring_register_probe(&q->ring, pr, NOPS);
	if (r == 0 && !(io_uring_opcode_supported(pr, IORING_OP_READ) &&
			io_uring_opcode_supported(pr, IORING_OP_WRITE) &&
			io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL)))
		r = -ENOSYS;
	else if (r == -EINVAL)
		r = -ENOSYS;
	else
		r = 0;
	free(pr);
	return r;
}

int precopy__sys_aio_open(void *ctx, unsigned int depth, unsigned int workers, void **qp)
{
	struct io_uring_params p = { 0 };
	struct sys_aio *q;
	unsigned int lim[2];
	int r;

	if (!qp || depth == 0 || depth > PRECOPY__SYS_AIO_DEPTH_MAX)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->freel = calloc(depth, sizeof(*q->freel));
	q->tag = calloc(depth, sizeof(*q->tag));
	q->busy = calloc(depth, sizeof(*q->busy));
	if (!q->freel || !q->tag || !q->busy) {
		r = -ENOMEM;
		goto fail_mem;
	}
	q->depth = depth;
	for (unsigned int i = 0; i < depth; i++)
		q->freel[q->nfree++] = depth - 1 - i;

	/* depth + 1 SQ entries (the kernel rounds up to a power of two; the
	 * CQ ring is twice that): room for every op in flight, plus
	 * liburing's timeout SQE on kernels without IORING_FEAT_EXT_ARG
	 * (aio_close's cancels, one per op, find the ops gone from the SQ).
	 * SUBMIT_ALL (5.18): an SQE the kernel refuses (a bad fd) does not
	 * hold back the ones after it. COOP_TASKRUN (5.19): completions are
	 * run when this thread enters the ring, not by interrupting it
	 * elsewhere; every reap enters the ring. Older kernels: no flags. */
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	r = io_uring_queue_init_params(depth + 1, &q->ring, &p);
	if (r == -EINVAL) {
		struct io_uring_params p0 = { 0 };

		r = io_uring_queue_init_params(depth + 1, &q->ring, &p0);
	}
	if (r < 0)
		goto fail_mem; /* -ENOSYS, -EPERM: no io_uring here */

	/* A seccomp filter may let io_uring_setup through and refuse
	 * io_uring_enter: find out now, while the caller can still fall back
	 * to plain calls, rather than at the first submission. */
	r = io_uring_get_events(&q->ring);
	if (r < 0 && r != -EINTR)
		goto fail_ring;

	r = ops_supported(q);
	if (r < 0)
		goto fail_ring;

	/* The io-wq workers that run blocking ops (IOSQE_ASYNC, files that
	 * cannot wait without a thread). io-wq counts a read of a regular
	 * file or block device as "bounded" work, of anything else (pipes,
	 * sockets, VFIO data fds) as "unbounded": limit both. -EINVAL (no
	 * IORING_REGISTER_IOWQ_MAX_WORKERS, kernel < 5.15) or -EPERM (a
	 * filter on io_uring_register) leave the kernel's defaults: bounded
	 * min(SQ entries, 4 x CPUs), unbounded RLIMIT_NPROC. */
	lim[0] = lim[1] = workers ? workers : depth;
	r = io_uring_register_iowq_max_workers(&q->ring, lim);
	if (r < 0 && r != -EINVAL && r != -EPERM)
		goto fail_ring;

	*qp = q;
	return 0;

fail_ring:
	io_uring_queue_exit(&q->ring);
fail_mem:
	free(q->freel);
	free(q->tag);
	free(q->busy);
	free(q);
	return r;
}

static bool op_valid(const struct precopy_sys_aio_op *op)
{
	if (op->opcode != PRECOPY_SYS_AIO_READ && op->opcode != PRECOPY_SYS_AIO_WRITE)
		return false;
	return !(op->flags & ~PRECOPY_SYS_AIO_BLOCKING);
}

int precopy__sys_aio_submit(void *ctx, void *qv, const struct precopy_sys_aio_op *ops, unsigned int n)
{
	struct sys_aio *q = qv;

	if (!q || (n && !ops))
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++)
		if (!op_valid(&ops[i]))
			return -EINVAL;
	if (n == 0)
		return 0;
	/* every op not yet reaped holds a slot, and every SQE not yet taken
	 * by the kernel belongs to such an op: with depth + 1 entries the SQ
	 * ring has room whenever a slot is free (checked anyway) */
	if (n > q->depth - q->inflight || n > io_uring_sq_space_left(&q->ring))
		return -EBUSY;

	for (unsigned int i = 0; i < n; i++) {
		const struct precopy_sys_aio_op *op = &ops[i];
		struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
		uint32_t slot = q->freel[--q->nfree];
		unsigned int len = op->len > OP_LEN_MAX ? OP_LEN_MAX : (unsigned int)op->len;

		if (op->opcode == PRECOPY_SYS_AIO_READ)
			io_uring_prep_read(sqe, op->fd, op->buf, len, (uint64_t)-1);
		else
			io_uring_prep_write(sqe, op->fd, op->buf, len, (uint64_t)-1);
		/* straight to an io-wq worker: no inline try on this thread,
		 * which a driver that ignores IOCB_NOWAIT could block */
		if (op->flags & PRECOPY_SYS_AIO_BLOCKING)
			io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
		io_uring_sqe_set_data64(sqe, slot);
		q->tag[slot] = op->tag;
		q->busy[slot] = 1;
	}
	q->inflight += n;
	/* queued whatever the kernel answers now: an SQE it did not take is
	 * passed again by the next reap, which reports a lasting refusal */
	(void)sq_flush(q);
	return 0;
}

/* One CQE: 1 if it was an op's completion (its slot freed, *d filled when
 * d is not NULL), 0 if it was the queue's own. */
static int cqe_take(struct sys_aio *q, const struct io_uring_cqe *cqe, struct precopy_sys_aio_done *d)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);

	if (ud >= q->depth || !q->busy[ud])
		return 0; /* a cancel's answer (UD_CANCEL), or not ours */
	if (d) {
		d->tag = q->tag[ud];
		d->res = cqe->res;
	}
	q->busy[ud] = 0;
	q->freel[q->nfree++] = (uint32_t)ud;
	q->inflight--;
	return 1;
}

int precopy__sys_aio_reap(void *ctx, void *qv, struct precopy_sys_aio_done *done, unsigned int max, int timeout_ms)
{
	struct sys_aio *q = qv;
	struct io_uring_cqe *cqe = NULL;
	unsigned int n = 0;
	int r, refused;

	if (!q || (max && !done))
		return -EINVAL;
	/* the kernel refusing the SQEs still in the ring (not a transient
	 * refusal): what has completed is reaped, without waiting for what
	 * cannot start; the refusal is the answer when nothing has */
	refused = sq_flush(q);
	if (max == 0 || q->inflight == 0)
		return 0; /* nothing could complete: no wait */

	if (refused < 0) {
		r = io_uring_peek_cqe(&q->ring, &cqe);
		if (r < 0)
			return refused;
	} else if (timeout_ms < 0) {
		r = io_uring_wait_cqe(&q->ring, &cqe);
	} else {
		/* 0 still enters the ring once (COOP_TASKRUN: completions
		 * waiting to be run are run there), without sleeping */
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};

		r = io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts);
	}
	if (r == -ETIME || r == -EAGAIN)
		return 0;
	if (r < 0)
		return r; /* -EINTR: nothing reaped, the caller calls again */

	/* the first, then whatever else has arrived, without waiting */
	while (n < max && io_uring_peek_cqe(&q->ring, &cqe) == 0 && cqe) {
		n += (unsigned int)cqe_take(q, cqe, &done[n]);
		io_uring_cqe_seen(&q->ring, cqe);
	}
	return (int)n;
}

/* Cancels every op in flight, one cancel SQE per op (matched by its
 * user_data: Linux 5.5 and later; IORING_ASYNC_CANCEL_ANY would do it in
 * one SQE but only from 5.19, and one path is the tested path). Best
 * effort: what is not cancelled now is cancelled on the next round. */
static void cancel_all(struct sys_aio *q)
{
	for (uint32_t s = 0; s < q->depth; s++) {
		struct io_uring_sqe *sqe;

		if (!q->busy[s])
			continue;
		sqe = io_uring_get_sqe(&q->ring);
		if (!sqe) {
			(void)sq_flush(q);
			sqe = io_uring_get_sqe(&q->ring);
			if (!sqe)
				break;
		}
		io_uring_prep_cancel64(sqe, s, 0);
		io_uring_sqe_set_data64(sqe, UD_CANCEL);
	}
	(void)sq_flush(q);
}

void precopy__sys_aio_close(void *ctx, void *qv)
{
	struct sys_aio *q = qv;
	unsigned int unexpected = 0, refused = 0;
	bool cancel = true;

	if (!q)
		return;
	/* Wait until every op in flight has ended: the kernel writes into the
	 * caller's buffers until then. A cancelled poll-driven op ends at
	 * once; an op on an io-wq worker is interrupted by a signal to the
	 * worker, which ends an interruptible sleep (pipes, sockets, most
	 * drivers). An op sleeping where the kernel cannot interrupt it ends
	 * when that sleep ends, as the same read(2) would: no sooner. */
	while (q->inflight > 0) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = CLOSE_SLICE_MS * 1000000LL };
		struct io_uring_cqe *cqe = NULL;
		int r;

		if (cancel)
			cancel_all(q);
		cancel = false;
		/* SQEs the kernel keeps refusing never started and never will:
		 * after CLOSE_REFUSED_ROUNDS rounds they are left to end with
		 * the ring (and so is what the kernel did take: cancelled,
		 * then torn down by the kernel with the ring) */
		(void)sq_flush(q);
		if (io_uring_sq_ready(&q->ring) == 0)
			refused = 0;
		else if (++refused >= CLOSE_REFUSED_ROUNDS)
			break;
		r = io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts);
		if (r == 0) {
			unexpected = 0;
			while (io_uring_peek_cqe(&q->ring, &cqe) == 0 && cqe) {
				(void)cqe_take(q, cqe, NULL);
				io_uring_cqe_seen(&q->ring, cqe);
			}
		} else if (r == -ETIME) {
			cancel = true; /* a slice without an end: cancel again */
		} else if (r != -EINTR && ++unexpected >= 1000) {
			/* the ring itself fails (cannot happen): stop waiting;
			 * the ring's teardown cancels what is left */
			break;
		}
	}
	io_uring_queue_exit(&q->ring);
	free(q->freel);
	free(q->tag);
	free(q->busy);
	free(q);
}
