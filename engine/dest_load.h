/* SPDX-License-Identifier: MIT */
/* engine/dest_load.h — the destination's concurrent device loads
 * (internal).
 *
 * Each device's DEV_DATA slices are copied and written to its data fd in
 * arrival order, one write in flight per device, several devices at once
 * through the sys seam's asynchronous queue; the decoder goes on with the
 * stream meanwhile. A device holds at most PRECOPY__LOAD_DEPTH slices
 * (queued or in flight): a slice beyond that waits for one of its writes
 * to end (bounded by the I/O bound). Writes are submitted as blocking (a
 * device fd cannot raise SIGPIPE; some drivers only block in write).
 *
 * Errors: -errno with *dev set to the device's index (or -1 for the queue
 * itself) and *step to what failed ("write", "submit", "poll"), for the
 * caller's message. -ETIMEDOUT: no write ended within the bound.
 *
 * Thread safety: one thread at a time, the destination engine's. */
#ifndef PRECOPY_ENGINE_DEST_LOAD_H
#define PRECOPY_ENGINE_DEST_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "io_bound.h"

#define PRECOPY__LOAD_DEPTH 4

struct precopy__load;

/* A loader for ndev devices, or NULL with 0 where the table has no
 * asynchronous queue or cannot open one (the caller writes itself). */
int precopy__load_open(struct precopy__load **out, const struct precopy_sys *sys, uint32_t ndev);
/* Cancel every write in flight, free everything. NULL is a no-op. */
void precopy__load_close(struct precopy__load *l);

/* Queue len bytes at p (copied) for device dev (data fd fd). */
int precopy__load_write(struct precopy__load *l, const struct precopy__io_bound *b, uint32_t dev, int fd,
			const void *p, size_t len, int *err_dev, const char **step);
/* Reap what has ended and submit what waits, without waiting (dev_wait < 0),
 * or until device dev_wait (PRECOPY__LOAD_ALL: every device) has nothing
 * queued or in flight. */
#define PRECOPY__LOAD_ALL UINT32_MAX
int precopy__load_progress(struct precopy__load *l, const struct precopy__io_bound *b, int64_t dev_wait,
			   int *err_dev, const char **step);
/* One round that waits up to wait_ms for a write to end (the caller had
 * nothing else to do: a wait on the clock the writes run on). Returns 0
 * or -errno. */
int precopy__load_wait(struct precopy__load *l, int wait_ms, int *err_dev, const char **step);
/* 1 if device dev has nothing queued or in flight. */
int precopy__load_idle(const struct precopy__load *l, uint32_t dev);
/* Bytes of device dev queued or in flight, not yet written. */
uint64_t precopy__load_queued(const struct precopy__load *l, uint32_t dev);
/* Bytes written to device dev so far (ended writes). */
uint64_t precopy__load_bytes(const struct precopy__load *l, uint32_t dev);

#endif /* PRECOPY_ENGINE_DEST_LOAD_H */
