/* SPDX-License-Identifier: MIT */
/* sim/simulator.h — precopy-sim's pieces: the scenario (sim/scenario.c parses
 * it from INI), the synthetic guest workloads (sim/workload.c), the driver
 * that runs the real source and destination engines over the fake kernel on
 * a virtual clock (sim/simulate.c) and the reports (sim/report.c).
 *
 * Not a public header: it is shared by sim/main.c, the tests and the
 * benchmark. Functions return 0 or -errno; parse errors come with a message.
 *
 * Thread safety: none of this keeps global state; one scenario, workload or
 * run per thread at a time.
 */
#ifndef PRECOPY_SIM_SIMULATOR_H
#define PRECOPY_SIM_SIMULATOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "precopy/bitmap.h"
#include "precopy/engine.h"
#include "precopy/estimator.h"
#include "precopy/stream.h"

#define SIM_MAX_DEVICES 64
#define SIM_MAX_PHASES 64
#define SIM_ERR_MAX 512
#define SIM_SCENARIO_MAX_BYTES (1u << 20)   /* a scenario file */
#define SIM_TRACE_MAX_BYTES (64u << 20)     /* a trace file */
#define SIM_MAX_TRACE_PAGES (1ull << 32)    /* page writes in one trace event */

/* What the model represents (sim_scenario_check() refuses more; the
 * reasons are in docs/sim-input.md):
 *  - memory up to 2^52 bytes (4096T, a 52-bit guest physical space);
 *  - link and switchover bandwidth up to 2^40 B/s (1T/s, 8.8 Tbit/s): the
 *    virtual clock counts whole nanoseconds, and a 4K page then still takes
 *    3.7 ns, so every send the engine measures lasts a few ns at least
 *    (at 2^60 B/s whole iterations took 0 ns and no bandwidth was measured);
 *  - guest and device DMA write rates up to 2^40 B/s: no host's memory
 *    takes writes faster (the workload's work per step is bounded by the
 *    memory, not by the rate: sim_workload_run()). */
#define SIM_MAX_MEMORY (1ull << 52)
#define SIM_MAX_BANDWIDTH_BPS (1ull << 40)
#define SIM_MAX_RATE_BPS (1ull << 40)

enum sim_model {
	SIM_MODEL_UNIFORM = 0,    /* random pages, uniformly over all RAM */
	SIM_MODEL_HOTSET = 1,     /* hot_fraction of writes in the first hot_size bytes */
	SIM_MODEL_ZIPF = 2,       /* page ranks Zipf(zipf_s)-distributed, scattered */
	SIM_MODEL_SEQUENTIAL = 3, /* consecutive pages, wrapping at the end of RAM */
	SIM_MODEL_PHASES = 4,     /* uniform pages, rate changing by phase (cyclic) */
	SIM_MODEL_TRACE = 5,      /* uniform pages, counts from a trace file (cyclic) */
};

struct sim_phase {
	uint64_t duration_ns;
	uint64_t rate_Bps;
};

struct sim_trace_event {
	uint64_t t_ns;  /* from the start of the migration */
	uint64_t pages; /* page writes at that time */
};

struct sim_device {
	char name[PRECOPY_STREAM_NAME_MAX + 1];
	uint64_t initial_bytes;    /* pre-copy initial data (ignored without pre_copy) */
	uint64_t dirty_rate_Bps;   /* device state dirtied per second in PRE_COPY */
	uint64_t stop_copy_bytes;  /* state left at stop-copy */
	uint64_t dma_rate_Bps;     /* guest RAM the device writes per second while running */
	int pre_copy, p2p, dma_logging;
	int pollable;              /* its data fd polls (0: reads only block, as drivers without poll) */
	uint64_t transition_ns;    /* each VFIO state arc */
	uint64_t dest_load_ns;     /* destination's load of the initial data (pre_copy),
				    * of the whole state (no pre_copy) */
	uint64_t read_rate_Bps;    /* how fast its data fd delivers state (0: unlimited) */
	uint64_t page_size;        /* DMA-logging page */
	uint32_t max_ranges;       /* DMA-logging tracker ranges */
	int line;                  /* where the section started (0: built in) */
};

struct sim_scenario {
	char source[256];          /* file name, or "built-in" */
	/* [vm] */
	uint64_t memory, page_size;
	uint32_t vcpus;
	/* [workload] */
	int model;                 /* enum sim_model */
	uint64_t rate_Bps;
	uint64_t hot_size;         /* hotset: the hot set; sequential: the range swept (0: all) */
	uint64_t wp_fault_ns;      /* guest time of a page's first write after a harvest */
	double hot_fraction, zipf_s;
	struct sim_phase phases[SIM_MAX_PHASES];
	uint32_t nphases;
	char trace_path[256];
	struct sim_trace_event *trace; /* owned: sim_scenario_release() */
	size_t ntrace;
	uint64_t seed;
	/* [link] */
	uint64_t bandwidth_Bps;
	uint64_t latency_ns;       /* one way */
	/* [migration] */
	uint64_t downtime_limit_ns;
	uint64_t timeout_ns;       /* 0: none */
	uint32_t timeout_action;   /* enum precopy_timeout_action */
	uint64_t switchover_bw_Bps;/* 0: measured */
	uint32_t throttle_initial, throttle_increment, throttle_max;
	uint64_t fixed_downtime_ns;
	uint64_t max_iterations;   /* then the timeout action; 0: 100000 */
	int serial_drain;          /* drain devices one after another (no asynchronous queue) */
	uint64_t window_ns;        /* RAM link time between two questions to the
				    * engine inside a pass; 0: only at the end of
				    * each pass (default 100 ms) */
	int policy;                /* enum sim_policy: who decides (precopy) */
	/* [device.NAME] */
	struct sim_device devs[SIM_MAX_DEVICES];
	uint32_t ndevs;
};

/* Who plays the VMM's decisions (sim/policy.c; the rules and their sources
 * in docs/policies.md). PRECOPY: the engine's own decisions. The others are
 * other VMMs' rules, driving the same engine: its throttle and stall
 * recommendations are then ignored, and no rule switches over before the
 * destination's switchover-ack (the sim holds it; the result says how
 * long). */
enum sim_policy {
	SIM_POLICY_PRECOPY = 0,
	SIM_POLICY_QEMU = 1, /* pending < bandwidth x limit after each 100 ms window; auto-converge */
	SIM_POLICY_CH = 2,   /* Cloud Hypervisor v52: pending / last pass's bandwidth <= limit; timeout */
	SIM_POLICY_XEN = 3,  /* libxenguest: 5 passes or < 50 dirty pages, then stop-and-copy */
	SIM_POLICY_COUNT = 4,
};

/* "precopy", "qemu", "ch", "xen"; NULL for another value. */
const char *sim_policy_name(int policy);
/* The policy of that name, or -1. */
int sim_policy_parse(const char *name);

/* ---- scenario (sim/scenario_defaults.c, sim/scenario.c) ------------------ */

/* Every key at its default: 64G of 4K pages, 8 vCPUs, uniform 200M/s,
 * 10Gbit/s, 1 ms, 300 ms limit, no timeout, cancel, throttle 20/10/99,
 * 5 ms fixed, no device. */
void sim_scenario_init(struct sim_scenario *sc);

/* A device with the defaults of a [device.NAME] section. */
void sim_device_init(struct sim_device *d, const char *name);

/* Release what the scenario owns (the trace). */
void sim_scenario_release(struct sim_scenario *sc);

/* Cross-key checks and the limits above, after parsing (also for scenarios
 * built in code; sim_run() calls it). Returns 0, or -EINVAL with
 * "[section] key: why" in err (err_len bytes). */
int sim_scenario_check(const struct sim_scenario *sc, char *err, size_t err_len);

/* Parse an INI scenario. `name` is what error messages call the file. On
 * failure, err says "FILE:LINE: [section] key: problem" (or "FILE: ..." for
 * an unreadable file). sim_scenario_load() reads only a regular file of at
 * most SIM_SCENARIO_MAX_BYTES without NUL bytes (-EINVAL otherwise: a FIFO,
 * /dev/zero, a directory); a trace file it names, one of at most
 * SIM_TRACE_MAX_BYTES. Returns 0, -EINVAL (bad scenario), -ENOENT/-errno
 * (cannot read). The scenario is initialized first; release it with
 * sim_scenario_release() in every case. */
int sim_scenario_load(struct sim_scenario *sc, const char *path, char *err, size_t err_len);
int sim_scenario_parse_string(struct sim_scenario *sc, const char *name, const char *text, char *err,
			      size_t err_len);

/* Set one key of the [vm], [workload], [link] or [migration] section from
 * text, with the parser's own rules (the command line's --seed is
 * [workload] seed), then check the whole scenario again. `origin` is what
 * the message calls the source of the value: on failure err says
 * "ORIGIN: [section] key: problem". Returns 0 or -EINVAL. */
int sim_scenario_set(struct sim_scenario *sc, const char *origin, const char *section, const char *key,
		     const char *value, char *err, size_t err_len);

/* Every key the parser knows, by section, with its kind, its default and
 * what it means: generated from the parser's key table (precopy-sim
 * --help). */
void sim_scenario_keys_help(FILE *f);

/* The built-in scenario (`make sim`), as INI text. */
extern const char sim_default_scenario[];

/* Units. Sizes: a number with K/M/G/T (powers of 1024), optionally "B"/"iB".
 * Byte rates: a size then "/s". Bit rates: a number, optional K/M/G/T
 * (powers of 1000), then "bit/s". Times: a number then "ms", "s" or "us".
 * Each returns 0 or -EINVAL (bad syntax, unit) / -ERANGE (overflow). */
int sim_parse_size(const char *s, uint64_t *out);
int sim_parse_rate(const char *s, uint64_t *bytes_per_sec); /* bytes or bits per second */
int sim_parse_time(const char *s, uint64_t *ns);

/* ---- workload (sim/workload.c) ----------------------------------------- */

struct sim_workload;

/* A workload over `live` (one bit per guest page, the engine's live RAM
 * bitmap). Returns it or NULL with *err = -EINVAL / -ENOMEM. */
struct sim_workload *sim_workload_new(const struct sim_scenario *sc, struct precopy_bitmap *live, int *err);
void sim_workload_free(struct sim_workload *w);

/* The guest writes from its last time up to t_ns (virtual, since the start
 * of the migration) at its rate x (100 - throttle) / 100: sets the bits of
 * the pages written. Returns the page writes made (not distinct pages).
 * A step of at least as many writes as pages draws each page once, with the
 * chance those writes give it, instead of each write: O(pages), not
 * O(writes). */
uint64_t sim_workload_run(struct sim_workload *w, uint64_t t_ns);

/* Throttle (percent, 0..99) from now on. */
void sim_workload_throttle(struct sim_workload *w, uint32_t pct);

/* Stop the vCPUs: later sim_workload_run() calls write nothing. */
void sim_workload_stop(struct sim_workload *w);

/* Page writes made so far. */
uint64_t sim_workload_writes(const struct sim_workload *w);

/* ---- a run (sim/simulate.c) -------------------------------------------- */

enum sim_outcome {
	SIM_SWITCHOVER = 0,
	SIM_CANCELLED = 1,
	SIM_FORCED = 2,
	SIM_FAILED = 3, /* the engine failed (error says why) */
};

struct sim_iter {
	uint64_t iteration;        /* 1-based */
	uint64_t t_ns;             /* virtual time at its end */
	uint64_t dirty_pages;      /* newly dirty pages its syncs found */
	uint64_t page_writes;      /* guest page writes during it */
	uint64_t ram_bytes, device_bytes;
	uint64_t duration_ns;
	uint64_t bandwidth_Bps;    /* the engine's switchover bandwidth */
	uint64_t pending_bytes;    /* the engine's pending bytes after it */
	uint64_t expected_downtime_ns; /* PRECOPY_UNBOUNDED if unbounded */
	double rho;
	uint32_t throttle;
	uint32_t action;           /* enum precopy_action */
	int stalled;
	int midpass;               /* 1: ended by a decision before its pass did */
	uint32_t blocked;          /* PRECOPY_BLOCK_* of its decision */
};

/* Pending bytes on the virtual clock between decisions: the RAM pages
 * still dirty in the engine's log plus the device bytes of its last
 * decision (before the first one: the scenario's device state), taken
 * after every window of RAM link time inside a pass (decide_window, or
 * 100 ms when that is 0: the first pass included, where no decision
 * falls), and at each iteration's end (the decision's pending bytes). */
struct sim_sample {
	uint64_t t_ns;             /* since the start of the migration */
	uint64_t pending_bytes;
};

struct sim_result {
	int outcome;               /* enum sim_outcome */
	uint64_t iterations;
	uint64_t total_ns;         /* start of the migration to destination resume (or cancel) */
	uint64_t downtime_ns;      /* vCPUs stopped -> destination resumed (switchover only) */
	uint64_t expected_downtime_ns;
	uint64_t downtime_limit_ns;
	uint64_t ram_bytes, device_bytes;
	uint64_t ack_wait_ns;      /* time iterations were held by WAIT_ACK only */
	uint64_t ack_at_ns;        /* when the ACK reached the source; 0: never */
	uint32_t max_throttle;
	int64_t stalled_at_ns;     /* first stalled decision, -1 if none */
	uint64_t memory;           /* the scenario's guest RAM (progress: the first pass) */
	/* downtime breakdown */
	uint64_t dt_switchover_ns; /* precopy_engine_switchover(): transitions + device drain */
	uint64_t dt_final_ram_ns;
	uint64_t dt_dest_load_ns;  /* destination loads of devices without pre-copy */
	uint64_t dt_fixed_ns;
	uint64_t dt_dest_resume_ns;/* destination devices to RUNNING */
	uint64_t final_ram_bytes;
	struct sim_iter *iters;    /* owned: sim_result_release() */
	size_t niters, cap;
	char error[SIM_ERR_MAX];
	double wall_s;             /* real time the run took */
	int policy;                /* enum sim_policy that decided (ack_wait_ns: the
				    * time it would have switched over but for the
				    * missing switchover-ack) */
	char *engine_json;         /* owned: precopy_engine_stats_json() at the end of
				    * the run (NULL if the engine was never made) */
	struct sim_sample *samples;/* owned: pending bytes on the clock, see below */
	size_t nsamples, samples_cap;
};

typedef void (*sim_progress_fn)(void *ctx, const struct sim_result *r, const struct sim_iter *last,
				uint64_t now_ns);

/* Run the scenario. Fills *res (release with sim_result_release()).
 * Returns 0 when the run ended in an outcome (any of enum sim_outcome),
 * -EINVAL for a scenario sim_scenario_check() refuses (res->error says
 * why), -ENOMEM, or -errno of the setup (res->error says which step). */
int sim_run(const struct sim_scenario *sc, struct sim_result *res, sim_progress_fn progress, void *ctx);
void sim_result_release(struct sim_result *res);

/* The engine's own forecast window before the run (precopy_engine_
 * forecast_begin/sample/end on the run's engine, the guest and devices
 * running on the virtual clock): n syncs after intervals_ns[0..n), then
 * the forecast with *params into *out, then the migration on the same
 * engine (its guest restarted at time 0). */
struct sim_engine_window {
	const uint64_t *intervals_ns;
	size_t n;
	const struct precopy_engine_forecast_params *params;
	struct precopy_forecast *out;
};

/* sim_run() with a forecast window first (window NULL: sim_run()). */
int sim_run_ex(const struct sim_scenario *sc, struct sim_result *res, sim_progress_fn progress, void *ctx,
	       const struct sim_engine_window *window);

const char *sim_outcome_name(int outcome);

/* ---- reports (sim/report.c) ---------------------------------------------- */

/* One JSON object (and a newline): the engine's statistics object
 * (precopy_engine_stats_json(), schema PRECOPY_STATS_JSON_SCHEMA) with the
 * simulator's fields added (docs/stats-json.md). Returns 0 or -EIO. */
int sim_report_json(FILE *f, const struct sim_scenario *sc, const struct sim_result *r);
/* The human summary. */
int sim_report_summary(FILE *f, const struct sim_scenario *sc, const struct sim_result *r);
/* The per-iteration timeline, with a header line. */
int sim_report_csv(FILE *f, const struct sim_result *r);
/* A self-contained SVG plot of pending bytes and expected downtime over time
 * against the limit, the switchover and the downtime marked. */
int sim_report_svg(FILE *f, const struct sim_scenario *sc, const struct sim_result *r);
/* The one-line progress display (with \r, no newline), at most 79
 * columns: time, iteration, phase (first pass with its percentage,
 * iterating, waiting for switchover-ack, switchover), pending bytes,
 * expected downtime, throttle. */
void sim_report_progress(FILE *f, const struct sim_result *r, const struct sim_iter *last, uint64_t now_ns);
/* One scenario run under several policies (--compare): a table with one row
 * per result (policy, outcome, total time, downtime, limit met, max
 * throttle, bytes sent, switchover-ack delay), or one JSON object with a
 * "compare" array of those rows. Return 0 or -EIO. */
int sim_report_compare(FILE *f, const struct sim_scenario *sc, const struct sim_result *r, size_t n);
int sim_report_compare_json(FILE *f, const struct sim_scenario *sc, const struct sim_result *r, size_t n);

/* The engine's policy for the scenario (as sim_run() configures it). */
void sim_engine_policy(const struct sim_scenario *sc, struct precopy_policy *p);

/* ---- forecast (sim/forecast.c) --------------------------------------------- */

/* The measuring window of --forecast: dirty pages after syncs 100, 200,
 * 400 and 800 ms apart (1.5 s of guest time). */
#define SIM_FORECAST_SAMPLES 4
extern const uint64_t sim_forecast_intervals_ns[SIM_FORECAST_SAMPLES];

/* Measure the scenario's guest as a VMM would before migrating, dirty
 * logging on and nothing sent: from the start of its workload (the same
 * seed, on the virtual clock) the pages found dirty after each of the n
 * intervals, syncs back to back, plus the pages its devices' DMA would
 * mark in their logs (at their log's page size). Fills out[0..n).
 * Returns 0, -EINVAL or -ENOMEM. */
int sim_forecast_measure(const struct sim_scenario *sc, const uint64_t *intervals_ns, size_t n,
			 struct precopy_forecast_sample *out);

/* Measure (above, sim_forecast_intervals_ns) and call precopy_forecast()
 * with the engine's policy, the scenario's devices as the engine would
 * report them before pre-copy, the link, the simulator's 10 ms least
 * iteration and its window_ns, the switchover-ack after the slowest
 * pre-copy device's destination load and a round trip. samples may be NULL (else
 * SIM_FORECAST_SAMPLES entries). Returns 0 or -errno. */
int sim_forecast(const struct sim_scenario *sc, struct precopy_forecast *fc, struct precopy_forecast_sample *samples);

/* The engine's forecast and the migration that follows on the same engine
 * (sim_run_ex() with the --forecast intervals and the parameters
 * sim_forecast() uses: the link, the 10 ms least iteration, decide_window,
 * the devices' initial bytes, pre-copy dirty rates and switchover-ack
 * delay). Returns sim_run_ex()'s result. */
int sim_run_engine_forecast(const struct sim_scenario *sc, struct sim_result *res, struct precopy_forecast *fc);

/* The forecast (r NULL), or predicted vs simulated (r the run). */
int sim_report_forecast(FILE *f, const struct sim_scenario *sc, const struct precopy_forecast *fc,
			const struct precopy_forecast_sample *samples, const struct sim_result *r);

#endif /* PRECOPY_SIM_SIMULATOR_H */
