/* precopy/sim.h — the simulator's fake kernel and device models.
 *
 * Thread safety: stated per section below.
 */
#ifndef PRECOPY_SIM_H
#define PRECOPY_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/backend.h"
#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================== fd-based back-end model
 *
 * A back-end (think vhost-user device back-end) whose opaque state moves
 * through a real pipe while its queues are stopped, driven through
 * struct precopy_backend_ops (precopy/backend.h). Its state is a seeded
 * byte pattern (precopy_sim_pattern_fill) of a configurable size:
 *   SAVE  a thread writes the state into the fd it was handed, then closes it
 *         (end of data for the reader).
 *   LOAD  a thread reads the fd to its end of file and checks the bytes
 *         against the pattern, byte for byte, and the length.
 * check_state joins the thread and returns its verdict:
 *   0 success, -EIO short or overlong state, -EBADMSG content mismatch,
 *   or the injected fault's error.
 * set_state_fd returns -EBUSY while the model's queues run, -EALREADY while
 * a transfer is in progress, -EINVAL for a bad dir/phase/fd.
 *
 * Thread safety: the model's functions may be called from one thread at a
 * time; its own transfer thread runs beside them (counters are atomic).
 * The pattern functions are pure and thread-safe.
 */

/* Byte o of the pattern for seed is byte (o % 8) of splitmix64(seed + o/8),
 * little-endian. Fills len bytes starting at pattern offset off. */
PRECOPY_API void precopy_sim_pattern_fill(uint64_t seed, uint64_t off, void *buf, size_t len);

/* Checks len bytes at buf against the pattern at offset off. Returns len if
 * all match, else the index of the first mismatching byte. */
PRECOPY_API size_t precopy_sim_pattern_check(uint64_t seed, uint64_t off, const void *buf, size_t len);

enum precopy_fake_backend_fault {
	PRECOPY_FAKE_BE_OK = 0,
	/* SAVE: write fault_offset bytes, then close (state cut short);
	 * LOAD: read fault_offset bytes, then close. check_state: -EIO. */
	PRECOPY_FAKE_BE_SHORT = 1,
	/* SAVE: write fault_offset bytes, then hold the fd open without writing
	 * until precopy_fake_backend_release() or _free(): the reader never sees
	 * the end of data. check_state: -ETIMEDOUT if released early. */
	PRECOPY_FAKE_BE_HANG = 2,
	/* The transfer itself completes, but check_state reports -EIO. */
	PRECOPY_FAKE_BE_CHECK_FAIL = 3,
	/* set_state_fd fails with -EIO (the fd is closed). */
	PRECOPY_FAKE_BE_REJECT = 4,
	/* SAVE: byte fault_offset of the state is flipped (silent corruption
	 * the LOAD side must catch). */
	PRECOPY_FAKE_BE_CORRUPT = 5,
};

#define PRECOPY_FAKE_BACKEND_CONFIG_VERSION 1

struct precopy_fake_backend_config {
	uint32_t version;      /* PRECOPY_FAKE_BACKEND_CONFIG_VERSION */
	uint32_t fault;        /* enum precopy_fake_backend_fault */
	uint64_t state_size;   /* bytes of state saved / expected on load */
	uint64_t seed;         /* pattern seed */
	uint32_t io_chunk;     /* bytes per write()/read(); 0 means 64 KiB */
	uint64_t fault_offset; /* where SHORT/HANG/CORRUPT strike */
};

struct precopy_fake_backend;

/* Creates a stopped back-end. Returns it (free with
 * precopy_fake_backend_free()) with *err = 0, or NULL with *err = -EINVAL
 * (bad version or fault) or -ENOMEM. err may be NULL. */
PRECOPY_API struct precopy_fake_backend *precopy_fake_backend_new(const struct precopy_fake_backend_config *cfg,
								   int *err);

/* Ends any HANG, joins the transfer thread, closes its fd, frees. */
PRECOPY_API void precopy_fake_backend_free(struct precopy_fake_backend *b);

/* The ops table to pass to precopy_backend_xfer_new() with ctx = b. */
PRECOPY_API const struct precopy_backend_ops *precopy_fake_backend_ops(void);

/* Starts or stops the model's queues. Returns 0, or -EINVAL (NULL). */
PRECOPY_API int precopy_fake_backend_set_running(struct precopy_fake_backend *b, bool running);

/* Ends a HANG fault: the thread closes its fd. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_fake_backend_release(struct precopy_fake_backend *b);

/* State bytes the model has written (SAVE) or read (LOAD) so far. */
PRECOPY_API uint64_t precopy_fake_backend_bytes(const struct precopy_fake_backend *b);

/* ============================================ end of fd-based back-end model */

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_SIM_H */
