/* SPDX-License-Identifier: MIT */
/* Private to the pump's io_uring path (pump_uring.c: ring, slots and
 * reaping; precopy__pump_uring_save.c: device fds -> stream; precopy__pump_uring_load.c:
 * stream -> device fds). The design notes are at the top of pump_uring.c.
 * Same thread-safety as the pump: one thread at a time per pump. */
#ifndef PRECOPY_PUMP_URING_INTERNAL_H
#define PRECOPY_PUMP_URING_INTERNAL_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
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
	struct precopy__pump_uring_stats st;
	bool w_busy;
	int w_slot[BATCH];
	int w_n;
	struct iovec iov[BATCH];
	int iov_first, iov_n;
	size_t w_left;
	int w_splice;
	uint32_t w_splice_left;
	bool splice_nowait; /* this call splices from the pump's thread */
	uint64_t w_ud;      /* user_data of the stream operation in flight */
	bool stream_cancelled; /* a drain past its deadline cancelled the stream
				* operation in flight (the stream failed) */
	/* LOAD */
	bool sr_busy;
	int sr_slot;
	uint32_t dwrites;
	bool spliced; /* this turn spliced payload into a device pipe */
};

/* An SQE, submitting the queue first if it is full. */
struct io_uring_sqe *precopy__pump_ur_sqe_get(struct pump_uring *u);
/* Tags an SQE with (op, slot) and counts the CQE it owes. */
void precopy__pump_ur_sqe_set(struct pump_uring *u, struct io_uring_sqe *s, enum op op, int i);
/* A free slot (most recently freed first: warm in cache), or -1. */
int precopy__pump_ur_slot_get(struct pump_uring *u);
/* Frees a slot, dropping what it counted toward the read-ahead. */
void precopy__pump_ur_slot_put(struct pump_uring *u, int s);
/* Stops counting a slot toward the SAVE read-ahead (no-op if it did not). */
void precopy__pump_ur_ahead_drop(struct pump_uring *u, struct slot *sl);
/* Bytes this call may still move or reserve; UINT64_MAX without a budget. */
uint64_t precopy__pump_ur_budget_left(const struct pump_call *c);
/* Submits, waits for at least one CQE (bounded by the poll interval when
 * timed) and hands every available CQE to fn. Returns 0, -ETIME, or a ring
 * error. */
int precopy__pump_ur_reap(struct precopy_pump *p, struct pump_call *c, bool wait, bool timed,
		 void (*fn)(struct precopy_pump *, struct pump_call *, struct io_uring_cqe *));

#endif
