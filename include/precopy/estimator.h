/* SPDX-License-Identifier: MIT */
/* precopy/estimator.h — the estimator: pure arithmetic on what the caller
 * measured (iterations, bandwidth, dirty rate, device sizes), no clock, no
 * syscall (estimator/estimator.c). The engines (precopy/engine.h,
 * precopy/dest.h) feed it; a VMM may also use it alone.
 *
 * Thread safety: an estimator is used by one thread at a time; distinct
 * estimators are independent. Errors: -errno, never errno.
 *
 * The downtime model:
 *   expected downtime = (RAM dirty bytes + sum of unsent device pre-copy
 *                        bytes) / switchover bandwidth
 *                     + device drain time
 *                     + fixed costs (vCPU and device config state)
 *                     + sum of device state-transition latencies
 *   device drain time = for the devices drained concurrently, the larger of
 *                       (their stop-copy bytes / bandwidth) and (the slowest
 *                       one's stop-copy bytes / its read rate); plus, for
 *                       each device drained alone, its bytes / its read
 *                       rate + its bytes / bandwidth. An unknown read rate
 *                       (0) does not limit: the link alone does.
 * A device whose stop-copy size is unknown (its query failed) makes the
 * expected downtime unbounded (UINT64_MAX): switchover is blocked rather
 * than guessed. Sums saturate: a device may report any u64.
 *
 * Convergence: rho = dirty rate / bandwidth, both over the recent window.
 * With rho < 1 the pending bytes shrink geometrically (round i sends
 * P * rho^i); the estimator predicts the iterations and time left. A stall
 * (decision.stalled) is rho >= 1, or no progress (pending not below
 * (1 - 1/16) of its best) over `stall_iterations` iterations, or a floor
 * above the limit (below); the timeout then cancels or forces switchover,
 * as configured.
 *
 * Throttle (off when throttle_initial is 0): recorded iterations are
 * grouped into periods of at least `throttle_period_ns` of time (the sum of
 * their intervals; an iteration longer than that is a period alone). A
 * period "outpaces" when the bytes dirtied in it exceed half the bytes sent
 * in it. While switchover is blocked by the expected downtime, the first
 * THROTTLE (throttle_initial) comes when two consecutive periods
 * outpaced, each later one (+throttle_increment, up to throttle_max) when
 * the period that ended since the last step outpaced: at most one step per
 * period, whatever the number of iterations in it. No step when the
 * geometric prediction says the limit is met within one period, and never
 * while PRECOPY_BLOCK_DEVICE_FLOOR or PRECOPY_BLOCK_UNKNOWN_SIZE blocks:
 * throttling slows only the vCPUs' writes to RAM.
 *
 * Floors: the downtime that no amount of pre-copy lowers.
 *  - Device floor (device_floor_ns): the model with no RAM left. Above the
 *    limit it blocks (PRECOPY_BLOCK_DEVICE_FLOOR) from the first recorded
 *    iteration, is a stall, and never throttles.
 *  - Working-set floor: when the RAM pending after each sync stays within
 *    1/8 of its smallest value W over the last recorded iterations (at
 *    least 3) spanning at least twice the time W takes at the bandwidth,
 *    the guest rewrites a set of W bytes (working_set_bytes) about as fast
 *    as a pass drains it, whatever rho says: its dirty set stops shrinking
 *    as passes shorten. Its floor (working_set_floor_ns) is W at the
 *    bandwidth plus the device floor. Above the limit it blocks
 *    (PRECOPY_BLOCK_WORKING_SET), is a stall and is predicted unbounded;
 *    the throttle (the rule above) runs, since the vCPUs write the set.
 */
#ifndef PRECOPY_ESTIMATOR_H
#define PRECOPY_ESTIMATOR_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PRECOPY_POLICY_VERSION 1
#define PRECOPY_UNBOUNDED UINT64_MAX /* a time or size that cannot be bounded */

enum precopy_timeout_action {
	PRECOPY_TIMEOUT_CANCEL = 0, /* give up: the VM keeps running on the source */
	PRECOPY_TIMEOUT_FORCE = 1,  /* switch over anyway, exceeding the limit */
};

struct precopy_policy {
	uint32_t version;               /* PRECOPY_POLICY_VERSION */
	uint64_t downtime_limit_ns;     /* > 0 */
	uint64_t switchover_bw_Bps;     /* fixed switchover bandwidth, 0 = measured */
	uint64_t fixed_downtime_ns;     /* vCPU + device config state */
	uint32_t throttle_initial;      /* percent, 1..99 (0: never throttle) */
	uint32_t throttle_increment;    /* percent per step, >= 1 when throttling */
	uint32_t throttle_max;          /* percent, <= 99 */
	uint32_t stall_iterations;      /* K for "no progress over K iterations", >= 1 */
	uint32_t bw_window;             /* iterations averaged for rates, 1..64 */
	uint64_t timeout_ns;            /* since the first iteration; 0 = none */
	uint32_t timeout_action;        /* enum precopy_timeout_action */
	uint64_t throttle_period_ns;    /* throttle period (above), > 0 when throttling */
};

/* Fill *p with defaults: 300 ms limit, measured bandwidth, 5 ms fixed,
 * throttle 20 / +10 / 99 with 1 s periods, K = 4, window 5, no timeout,
 * cancel. */
PRECOPY_API void precopy_policy_defaults(struct precopy_policy *p);

/* The rules precopy_estimator_new() applies to *p. Returns 0, or -EINVAL
 * with the first field broken and its rule in msg ("policy.bw_window: must
 * be 1..64"; msg may be NULL, len 0). */
PRECOPY_API int precopy_policy_check(const struct precopy_policy *p, char *msg, size_t len);

/* What one iteration did, as the caller measured it. */
struct precopy_iteration {
	uint64_t end_ns;          /* time at the end of the iteration */
	uint64_t send_ns;         /* time spent sending (bandwidth denominator) */
	uint64_t bytes_sent;      /* RAM + device bytes sent in it */
	uint64_t dirtied_bytes;   /* bytes newly dirtied since the previous sync
				   * (newly dirty pages * page size + device dirty growth) */
	uint64_t ram_pending;     /* RAM bytes dirty and not yet sent, after the sync */
};

/* What one device reports now. */
struct precopy_device_status {
	uint64_t stop_copy_bytes;  /* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE */
	uint64_t initial_bytes;    /* precopy info (0 when not in PRE_COPY) */
	uint64_t dirty_bytes;      /* precopy info */
	uint64_t transition_ns;    /* expected state-transition latency in the downtime */
	uint8_t stop_copy_known;   /* 0: the size query failed: unbounded */
	uint8_t pre_copy;          /* in PRE_COPY: needs initial_bytes == 0 and the ACK */
	uint8_t drain_concurrent;  /* drained at switchover together with the other
				    * devices so marked; 0: one after another */
	uint8_t stop_copy_guess;   /* 1: stop_copy_bytes is a guess, not a device's
				    * answer nor a measurement (a vfio-user
				    * device with no hint, never drained) */
	uint64_t read_Bps;         /* how fast its state comes out of its data fd
				    * (measured); 0: unknown, the link alone limits */
};

enum precopy_action {
	PRECOPY_CONTINUE = 0,         /* iterate again */
	PRECOPY_SWITCHOVER = 1,       /* stop the vCPUs and switch over now */
	PRECOPY_WAIT_ACK = 2,         /* everything fits but the destination's ACK is missing */
	PRECOPY_THROTTLE = 3,         /* apply decision.throttle to the vCPUs, then iterate */
	PRECOPY_ABORT = 4,            /* cancel the migration (decision.reason says why) */
	PRECOPY_FORCE_SWITCHOVER = 5, /* switch over although the limit is exceeded (policy) */
};

/* Why switchover could not happen yet (bit set). */
enum {
	PRECOPY_BLOCK_DOWNTIME = 1u << 0,      /* expected downtime above the limit */
	PRECOPY_BLOCK_UNKNOWN_SIZE = 1u << 1,  /* a stop-copy size is unknown */
	PRECOPY_BLOCK_INITIAL_BYTES = 1u << 2, /* a PRE_COPY device still has initial bytes */
	PRECOPY_BLOCK_ACK = 1u << 3,           /* switchover-ack not received */
	PRECOPY_BLOCK_NO_BANDWIDTH = 1u << 4,  /* nothing measured yet */
	PRECOPY_BLOCK_DEVICE_FLOOR = 1u << 5,  /* device stop-copy bytes at the bandwidth,
						* transitions and fixed costs alone exceed
						* the limit: no throttle can help */
	PRECOPY_BLOCK_WORKING_SET = 1u << 6,   /* the working-set floor exceeds the limit:
						* pre-copy alone cannot meet it */
};

struct precopy_decision {
	uint32_t action;               /* enum precopy_action */
	uint32_t blocked;              /* PRECOPY_BLOCK_* when not switching over */
	uint32_t throttle;             /* percent the vCPUs should run throttled at */
	uint32_t stalled;              /* 1 if the limit cannot be met at current rates */
	const char *reason;            /* static text for ABORT / FORCE / THROTTLE, else "" */
	uint64_t iteration;            /* iterations recorded so far */
	uint64_t bandwidth_Bps;        /* switchover bandwidth used */
	uint64_t dirty_rate_Bps;       /* over the window */
	double rho;                    /* dirty rate / bandwidth (inf if no bandwidth) */
	uint64_t ram_pending;          /* bytes */
	uint64_t device_stop_copy;     /* bytes, saturated sum (UNBOUNDED if unknown) */
	uint64_t device_precopy;       /* unsent initial + dirty bytes, saturated sum */
	uint64_t pending_bytes;        /* the three above, saturated */
	uint64_t transitions_ns;       /* sum of device transition latencies */
	uint64_t expected_downtime_ns; /* UNBOUNDED when it cannot be bounded */
	uint64_t predicted_iterations; /* until the limit is met; UNBOUNDED if rho >= 1 */
	uint64_t predicted_time_ns;    /* until the limit is met; UNBOUNDED if rho >= 1 */
	uint64_t stalled_since_ns;     /* end_ns when the stall was first reported, or 0 */
	uint64_t device_floor_ns;      /* the downtime with no RAM left and every
					* device's pre-copy pending moved: the
					* drain time of stop-copy bytes less
					* initial + dirty bytes (devices in
					* PRE_COPY), + transitions + fixed
					* (UNBOUNDED if a size is unknown or no bandwidth) */
	uint64_t device_drain_ns;      /* the device drain time of the model above */
	uint64_t working_set_bytes;    /* W, the set the guest keeps rewriting, when
					* detected (above); 0 when not */
	uint64_t working_set_floor_ns; /* W at the bandwidth + device_floor_ns
					* (0 when no W; UNBOUNDED as device_floor_ns) */
	uint32_t stop_copy_guessed;    /* devices whose stop-copy size in
					* device_stop_copy is a guess
					* (precopy_device_status.stop_copy_guess) */
};

struct precopy_estimator;

/* Create an estimator for one migration from *policy (copied). Returns it,
 * or NULL with *err = -EINVAL (bad version or value) / -ENOMEM. Free with
 * precopy_estimator_free(). */
PRECOPY_API struct precopy_estimator *precopy_estimator_new(const struct precopy_policy *policy,
							    int *err);
PRECOPY_API void precopy_estimator_free(struct precopy_estimator *est);

/* Replace the policy of an estimator in use (a new downtime limit, or a
 * fixed_downtime_ns the caller measured): checked as by
 * precopy_estimator_new(), copied, and applied from the next
 * precopy_estimator_decide(). The records, the throttle periods and the
 * throttle level are kept (the level lowered to the new throttle_max if
 * above it). bw_window cannot change. Returns 0, or -EINVAL (NULL, an
 * invalid policy, a different bw_window). */
PRECOPY_API int precopy_estimator_set_policy(struct precopy_estimator *est, const struct precopy_policy *policy);

/* Record an iteration. Returns 0, or -EINVAL (NULL, end_ns going backwards). */
PRECOPY_API int precopy_estimator_record(struct precopy_estimator *est,
					 const struct precopy_iteration *it);

/* Decide what to do now, given every device's status and whether the
 * destination's switchover-ack has arrived (ignored when no device is in
 * PRE_COPY). `now_ns` is the caller's clock (for the timeout). Fills *out.
 * A THROTTLE decision is remembered: the next decisions report that level.
 * Returns 0 or -EINVAL (NULL est/out, devs NULL with ndevs > 0). */
PRECOPY_API int precopy_estimator_decide(struct precopy_estimator *est,
					 const struct precopy_device_status *devs, size_t ndevs,
					 int ack_received, uint64_t now_ns,
					 struct precopy_decision *out);

/* Pure downtime model (no state): fills the byte sums, transitions_ns,
 * device_drain_ns, device_floor_ns and expected_downtime_ns of *out for the
 * given bandwidth (0 = unbounded). */
PRECOPY_API void precopy_downtime_model(uint64_t ram_pending, const struct precopy_device_status *devs,
					size_t ndevs, uint64_t bandwidth_Bps, uint64_t fixed_ns,
					struct precopy_decision *out);

/* Name of an action ("continue", "switchover", ...). */
PRECOPY_API const char *precopy_action_name(uint32_t action);

/* The name of one PRECOPY_BLOCK_* bit ("downtime", "unknown_size",
 * "initial_bytes", "ack", "no_bandwidth", "device_floor", "working_set"),
 * or "unknown" for any other value. */
PRECOPY_API const char *precopy_block_name(uint32_t bit);
/* The set bits of blocked as a JSON array of those names into buf
 * (NUL-terminated when len > 0): ["downtime","ack"], [] for none. Returns
 * the length needed, like snprintf. */
PRECOPY_API int precopy_blocked_json(uint32_t blocked, char *buf, size_t len);

/* Write *d as one JSON object into buf (always NUL-terminated when len > 0).
 * Returns the length it needs (excluding the NUL), like snprintf; compare
 * with len to detect truncation. */
PRECOPY_API int precopy_decision_json(const struct precopy_decision *d, char *buf, size_t len);

/* ---- Forecast: will a migration converge, before it starts ----------------
 *
 * precopy_forecast() predicts, from what the caller measured with dirty
 * logging on and nothing sent yet, what the engine would do with *policy at
 * a given bandwidth: whether it switches over within the limit, after how
 * many passes and how long, with what expected downtime, how far it
 * throttles, and which floor stops it if it does not. Pure arithmetic, no
 * clock, no syscall; it allocates (an estimator) and frees before
 * returning.
 *
 * Measuring (the caller's part): sync the dirty log, let the guest run for
 * an interval, sync again and count the pages the second sync found;
 * repeat with several interval lengths (e.g. 100, 200, 400, 800 ms). The
 * counts tell the rate (short intervals) from the working set (the count
 * stops growing with the interval). At least one sample with a nonzero
 * interval; more and longer intervals extrapolate better.
 *
 * The model (rationale and limits: docs/decisions.md, "Forecast"):
 *  - D(t), the distinct pages dirtied in t: through the samples (averaged
 *    per interval, made nondecreasing, 0 at 0), straight lines between
 *    them; beyond the longest, the saturating curve W (1 - exp(-t / tau))
 *    fitted to the two longest, continued from the last sample; never
 *    above the RAM's pages. A throttle of p% makes D(t x (100 - p) / 100).
 *  - Pass 0 sends all RAM and every device's pre-copy bytes; pass i sends
 *    what pass i-1 left dirty: D(its length) pages plus the devices'
 *    pre-copy dirt (device_dirty_Bps x its length). A pass lasts its bytes
 *    at the bandwidth, plus the devices' pre-copy bytes at their read_Bps
 *    (read one device after another; 0: not limited), at least
 *    min_iteration_ns.
 *  - Each pass is recorded into an estimator with *policy and decided on
 *    (devices as given, their initial bytes sent after pass 0, the
 *    switchover-ack received ack_delay_ns after pass 0): its switchover
 *    test, throttle
 *    rule, floors and timeout are the engine's. With check_ns (a VMM
 *    that asks the engine every check_ns of sending inside a pass), once
 *    the RAM left in a pass is under twice the limit the engine syncs at
 *    each check: an iteration is recorded and decided there too, and the
 *    pages sent after that sync are dirty again only if written after
 *    they went out (the pages dirty at a time tau of a pass of length T:
 *    estimator/forecast.c, dirty_at()).
 *  - Stuck (stalled, and no throttle step possible or none in 4 periods):
 *    the run jumps to the policy's timeout (or never ends without one).
 */

/* One measurement: after `interval_ns` of guest time since the previous
 * sync, the sync found `dirty_pages` newly dirty pages. */
struct precopy_forecast_sample {
	uint64_t interval_ns;
	uint64_t dirty_pages;
};

struct precopy_forecast_input {
	uint64_t ram_bytes;       /* guest RAM, > 0 */
	uint64_t page_size;       /* bytes per dirty-log bit, > 0 */
	const struct precopy_forecast_sample *samples;
	size_t nsamples;          /* >= 1, at most PRECOPY_FORECAST_MAX_SAMPLES */
	const struct precopy_device_status *devs; /* as before start: pre_copy
				   * devices with their initial bytes */
	size_t ndevs;
	uint64_t device_dirty_Bps; /* the devices' pre-copy bytes dirtied per second */
	uint64_t bandwidth_Bps;   /* the link, > 0 (policy.switchover_bw_Bps,
				   * when set, is the downtime's bandwidth) */
	uint64_t min_iteration_ns; /* a pass's least length (sync cost); 0: none */
	uint64_t check_ns;        /* switchover test inside passes every check_ns
				   * of sending; 0: at pass ends only */
	uint64_t ack_delay_ns;    /* with a pre_copy device: the switchover-ack
				   * arrives this long after pass 0 (the
				   * destination's load of the initial bytes and
				   * the trip back); 0: at once */
};

#define PRECOPY_FORECAST_MAX_SAMPLES 64

enum precopy_forecast_outcome {
	PRECOPY_FORECAST_CONVERGES = 0,   /* switches over within the limit */
	PRECOPY_FORECAST_DEVICE_FLOOR = 1, /* never: device state, transitions and
					    * fixed costs alone exceed the limit */
	PRECOPY_FORECAST_WORKING_SET = 2, /* never: at the highest throttle, the set
					   * the guest rewrites during a pass keeps
					   * the downtime above the limit */
	PRECOPY_FORECAST_TIMEOUT = 3,     /* converging, too slowly: the policy's
					   * timeout comes first */
};

struct precopy_forecast {
	uint32_t outcome;          /* enum precopy_forecast_outcome */
	uint32_t end;              /* enum precopy_action: SWITCHOVER, ABORT or
				    * FORCE_SWITCHOVER (the timeout), CONTINUE
				    * (no timeout: never ends) */
	uint64_t iterations;       /* iterations recorded until the end: passes
				    * and the syncs inside them (check_ns) */
	uint64_t precopy_ns;       /* from the start until switchover or timeout
				    * (UNBOUNDED if it never ends) */
	uint64_t total_ns;         /* precopy_ns + downtime_ns (switchover, force),
				    * precopy_ns (cancel), UNBOUNDED (never) */
	uint64_t downtime_ns;      /* the expected downtime at the end (the
				    * estimator's model) */
	uint32_t throttle;         /* the highest throttle applied, percent */
	uint64_t throttle_at_ns;   /* when the first throttle comes (0: none) */
	uint64_t first_pass_ns;    /* pass 0's length */
	uint64_t bytes_sent;       /* before the downtime */
	uint64_t dirty_rate_Bps;   /* dirtied at first: the shortest interval's pages */
	uint64_t working_set_bytes;/* the fitted saturation W (RAM size when the
				    * samples show none) */
	uint64_t floor_ns;         /* the downtime floor that stops it
				    * (outcome != CONVERGES), else 0 */
	uint64_t floor_bytes;      /* WORKING_SET: the RAM still dirty after each
				    * pass at the floor */
	uint64_t device_floor_ns;  /* the device floor (decision.device_floor_ns) */
	uint64_t stalled_at_ns;    /* when the engine would report the stall, 0: not */
};

/* Forecast (above) into *out. Returns 0, or -EINVAL (NULL pointers, a bad
 * policy, ram_bytes, page_size or bandwidth 0, no sample, too many, or
 * every interval 0) / -ENOMEM. */
PRECOPY_API int precopy_forecast(const struct precopy_policy *policy, const struct precopy_forecast_input *in,
				 struct precopy_forecast *out);

/* "converges", "device floor", "working-set floor", "timeout". */
PRECOPY_API const char *precopy_forecast_outcome_name(uint32_t outcome);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_ESTIMATOR_H */
