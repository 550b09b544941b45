/* SPDX-License-Identifier: MIT */
/* harness/vmm_role.h — the VMM's role around the two engines, over two
 * fake kernels: what precopy-sim (sim/simulate.c) and the engine test
 * suites (tests/test-engine.h) both play. Internal to the tree (archived
 * as libprecopy-harness.a, not installed).
 *
 * The role owns the source's and the destination's fake kernels and the
 * fake VFIO devices in pairs (one on each side, same state stream). It
 * borrows the engines (e, d: the caller creates and frees them) and drives
 * them as a VMM's migration loop does:
 *
 *   vmm_role_start_dest()      the destination takes the stream (fed by
 *                              vmm_role_dest_feed() from a socket, or by
 *                              the caller's sink)
 *   vmm_role_start_source()    the source starts
 *   per iteration, vmm_role_iterate():
 *     vmm_role_pass()          a pass starts with a sync (not when the
 *                              last iteration ended mid-pass)
 *     vmm_role_window() ...    pages the engine hands out cross to the
 *                              destination, accounted to the engine; the
 *                              world may ask between windows
 *     vmm_role_pump()          device pre-copy data under a byte budget
 *     the decision             (the world acts on the answer)
 *   vmm_role_switchover()      the source switches over, the last pages
 *                              cross
 *   vmm_role_resume()          the destination has the whole stream and
 *                              resumes its devices
 *   vmm_role_complete()        the source completes
 *
 * What differs between callers is their world (struct vmm_role_world):
 * the clock, what a page run is (copied bytes in the tests, link time in
 * the simulator) and how the stream reaches the destination (a socket the
 * tests feed from, a sink the simulator feeds into), which the caller
 * wires into the engines' configurations.
 *
 * Errors: every call returns 0 (or a count) or the engine's -errno and
 * sets r->step to the step that failed, for the caller's message
 * ("sync", "next_pages", "account", "pump", "switchover", "final pages",
 * "destination", "destination complete", "complete", "destination start",
 * "start", "source fake kernel", "destination fake kernel", "source
 * device", "destination device").
 *
 * Thread safety: one thread at a time per role. */
#ifndef PRECOPY_HARNESS_VMM_ROLE_H
#define PRECOPY_HARNESS_VMM_ROLE_H

#include <stdint.h>

#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/fake.h"

#define VMM_ROLE_MAX_DEVICES 64

/* The caller's world. now is required; the rest may be NULL. */
struct vmm_role_world {
	void *ctx;
	/* the virtual clock the engines read (ns) */
	uint64_t (*now)(void *ctx);
	/* a run of pages the engine handed out: the VMM copies it (NULL:
	 * only counted) */
	void (*page_run)(void *ctx, const struct precopy_ram_run *run);
	/* bytes of guest pages cross to the destination (the clock moves as
	 * the world says); final: the last pages, inside the downtime */
	void (*send_pages)(void *ctx, uint64_t bytes, int final);
};

struct vmm_role {
	struct vmm_role_world w;
	uint64_t page_size;
	struct precopy_fake_kernel *sfk, *dfk;
	uint32_t ndev;
	int sfd[VMM_ROLE_MAX_DEVICES], dfd[VMM_ROLE_MAX_DEVICES];
	struct precopy_fake_vfio *sdev[VMM_ROLE_MAX_DEVICES], *ddev[VMM_ROLE_MAX_DEVICES];
	/* the devices as the engines' configurations list them */
	struct precopy_engine_device edevs[VMM_ROLE_MAX_DEVICES];
	struct precopy_dest_device ddevs[VMM_ROLE_MAX_DEVICES];
	/* the engines, borrowed: set them before driving */
	struct precopy_engine *e;
	struct precopy_dest *d;
	int pass_open;    /* the last iteration ended before its pass did */
	const char *step; /* what failed last */
};

/* Both fake kernels, on sclk and dclk (NULL: CLOCK_MONOTONIC without
 * latency). page_size: the guest's. Returns 0 or -errno (nothing to
 * free); on success free with vmm_role_fini(). */
int vmm_role_init(struct vmm_role *r, const struct vmm_role_world *w, uint64_t page_size,
		  const struct precopy_fake_clock *sclk, const struct precopy_fake_clock *dclk);

/* A device pair: src on the source's kernel, dst on the destination's,
 * listed as id with name and transition_ns (the engine's first estimate).
 * Returns its index or -errno (-ENOSPC beyond VMM_ROLE_MAX_DEVICES). */
int vmm_role_add_device(struct vmm_role *r, const struct precopy_fake_vfio_cfg *src,
			const struct precopy_fake_vfio_cfg *dst, uint32_t id, const char *name,
			uint64_t transition_ns);

/* Configurations with the role's part filled in: the version, clock, the
 * fake kernel's sys table, the devices, the default policy, no KVM, the
 * live RAM bitmap as the RAM source (the caller gives slots and bitmap),
 * no fds (the caller gives the stream and return path, as fds or sinks). */
void vmm_role_engine_config(const struct vmm_role *r, struct precopy_clock clk, struct precopy_engine_config *cfg);
void vmm_role_dest_config(const struct vmm_role *r, struct precopy_clock clk, struct precopy_dest_config *cfg);

int vmm_role_start_dest(struct vmm_role *r);
int vmm_role_start_source(struct vmm_role *r);

/* A new pass starts with a sync, unless the last iteration ended
 * mid-pass (r->pass_open). Returns 0 or -errno. */
int vmm_role_pass(struct vmm_role *r);

/* The pages the engine hands out, up to max_pages (0: to the end of the
 * pass), given to the world's page_run. *drained: the log had no more
 * after the cursor. Returns pages or -errno. */
int64_t vmm_role_take_pages(struct vmm_role *r, uint64_t max_pages, int *drained);

/* One window: vmm_role_take_pages(), the bytes sent (send_pages) and
 * accounted with the time they took; r->pass_open says whether pages of
 * the pass are left. Returns the bytes or -errno; *ns (optional) gets
 * the time they took. */
int64_t vmm_role_window(struct vmm_role *r, uint64_t max_pages, int *drained, uint64_t *ns);

/* Device pre-copy data into the stream under budget bytes. Returns the
 * bytes or -errno. */
int64_t vmm_role_pump(struct vmm_role *r, uint64_t budget);

/* What an iteration did. */
struct vmm_role_iter {
	uint64_t iteration0;        /* the engine's last iteration after the pass's sync */
	uint64_t ram_bytes, ram_ns; /* pages sent and their time */
	int64_t dev_bytes;          /* the pump's */
	int decided;                /* ended mid-pass by the world's midpass() */
};

/* The world's part of an iteration (ctx: the world's). */
struct vmm_role_iter_ops {
	void *ctx;
	uint64_t window_pages; /* pages per window; 0: the whole pass in one */
	/* After a window that left pages of the pass: 0 take the next
	 * window, 1 the iteration ends here with *d decided, or -errno.
	 * NULL: the iteration ends after its first window (the pass stays
	 * open for the next one). */
	int (*midpass)(void *ctx, struct precopy_decision *d, const struct vmm_role_iter *it);
	/* The pump's byte budget (0: no pump). */
	uint64_t (*pump_budget)(void *ctx, const struct precopy_decision *d, const struct vmm_role_iter *it);
	/* Between the pump and the decision of an iteration not decided
	 * mid-pass: time passes, the guest runs (NULL: nothing). 0 or -errno. */
	int (*settle)(void *ctx, const struct vmm_role_iter *it);
	/* The decision (NULL: precopy_engine_decide()). 0 or -errno. */
	int (*decide)(void *ctx, struct precopy_decision *d, const struct vmm_role_iter *it);
};

/* One iteration: the pass's sync, windows of pages until the pass is
 * drained (or midpass() ends it), the pump, settle(), the decision into
 * *d. Returns 0 or -errno; r->step names the role's failed step, NULL
 * when a hook failed (the hook says why). */
int vmm_role_iterate(struct vmm_role *r, const struct vmm_role_iter_ops *ops, struct precopy_decision *d,
		     struct vmm_role_iter *it);

/* What the switchover took. */
struct vmm_role_final {
	uint64_t switchover_ns; /* precopy_engine_switchover(): quiesce, device drain */
	uint64_t bytes;         /* the last pages */
	uint64_t pages_ns;      /* their time on the way (send_pages(final)) */
};

/* The source switches over (the caller stopped the guest first), the
 * last pages cross and are accounted. Returns 0 or -errno; *f (optional)
 * as far as it got. */
int vmm_role_switchover(struct vmm_role *r, struct vmm_role_final *f);

/* Feed the destination from stream_fd as a single-threaded VMM's loop
 * does (precopy_dest_poll(); -EAGAIN means "call again", never "the stream
 * is done"). until_end 0: return once the destination has taken every
 * byte on the stream now (a spurious -EAGAIN while bytes wait is retried);
 * 1: go on until the destination has seen the stream's end. Returns 0, the
 * destination's -errno (step "destination"), or -ETIMEDOUT with until_end
 * when 1000 calls in a row take nothing. */
int vmm_role_dest_feed(struct vmm_role *r, int stream_fd, int until_end);

/* The destination has seen the stream's end (else -EPROTO: step
 * "destination") and resumes (precopy_dest_complete()). */
int vmm_role_resume(struct vmm_role *r);

/* The source completes (precopy_engine_complete()). */
int vmm_role_complete(struct vmm_role *r);

/* Both engines cancel (the destination's if there is one). */
void vmm_role_cancel(struct vmm_role *r);

/* Free both fake kernels (and so every device); the engines are the
 * caller's. The role is zeroed: a second call is a no-op. */
void vmm_role_fini(struct vmm_role *r);

#endif /* PRECOPY_HARNESS_VMM_ROLE_H */
