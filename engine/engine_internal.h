/* SPDX-License-Identifier: MIT */
/* The source engine's private state, shared by its files. Not installed.
 *
 * Who calls whom (tests/check-calls.sh keeps it a tree, no circle):
 *   engine.c      public entry points, configuration, lifecycle (start,
 *                 cancel, failure: the only caller of unwind);
 *   switchover.c  switchover and completion;
 *   estimate.c    accounting, cheap and exact estimates, decisions;
 *   fcast.c       the forecast's measuring window (syncs, no migration);
 *   sync.c        dirty harvest, page hand-out, device DMA tracking;
 *   devio.c       device pre-copy data, the return path, VFIO channels;
 *   vuchan.c      vfio-user devices as channels, their sizes;
 *   backend_dev.c fd-based back-ends and their channels;
 *   mover.c       the switchover drain over state channels;
 *   stream_out.c  the stream's buffers and writes, bounded waits;
 *   core.c        phases, clock, error message, device transitions;
 *   io_bound.c    bounded waits and the one bounded writer;
 *   stats.c       status and statistics (read only).
 * A file calls only files below it in this list, except that engine.c
 * calls all of them. */
#ifndef PRECOPY_ENGINE_INTERNAL_H
#define PRECOPY_ENGINE_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "precopy/engine.h"
#include "channel.h"
#include "io_bound.h"
#include "log_internal.h"

/* One device: configuration, handles and this migration's status. Nothing
 * here is shared between devices or engines. */
struct edev {
	struct precopy_engine_device cfg;
	char name[PRECOPY_STREAM_NAME_MAX + 1];
	struct precopy_vfio_dev *vd;
	struct precopy_dirty_source *dma;     /* own DMA log source, NULL if none */
	uint64_t mig_flags;
	/* this migration */
	struct precopy_dirty_source *tracking_src; /* dma, cfg.tracker or NULL */
	uint32_t tracking;                    /* enum precopy_engine_tracking */
	int src_shared;                       /* tracking_src is an earlier device's
					       * tracker: that one starts, reads, stops it */
	int pre_copy;                         /* moved to PRE_COPY at start */
	uint64_t init_left;                   /* initial bytes not yet sent */
	uint64_t dirty;                       /* last precopy info dirty_bytes */
	uint64_t dirty_prev;                  /* dirty at the previous record */
	uint64_t dirty_read;                  /* dirty bytes read since that record */
	int initial_sent;
	uint64_t stop_copy;
	int sc_known;
	uint64_t bytes_sent;
	int err;
	int recovered, was_reset;
	/* survives migrations: the transition estimate */
	uint64_t trans_est;                   /* ns per arc */
	uint64_t trans_last;                  /* latest measured set_state */
	/* survives migrations: tracking this engine started and failed to
	 * stop (the source stays started); stopped again before the next
	 * start and at free */
	struct precopy_dirty_source *stop_pending;
	/* a device served over vfio-user (engine/vuchan.c), else NULL */
	struct precopy_vfio_user *vu;
	uint32_t vu_state;                    /* its state as last moved or read */
	int init_unknown;                     /* PRE_COPY and no 0-byte read yet */
	uint64_t pump_got;                    /* bytes after its initial data, last pump call */
	uint64_t sc_hint;                     /* the config's stop_copy_hint */
	uint64_t sc_drained;                  /* bytes this STOP_COPY drain delivered */
	uint64_t sc_last;                     /* survives: the last whole drain's bytes */
	int sc_guess;                         /* stop_copy is a guess (no hint, no drain) */
	uint64_t precopy_sent;                /* bytes_sent when the switchover began */
	uint32_t arcs;                        /* state arcs the last decision charged to the downtime */
};

/* "device ID" or "device ID (NAME)", for messages: "..." DEV_FMT "...", DEV_ARGS(d) */
#define DEV_FMT "device %u%s%s%s"
#define DEV_ARGS(d) (d)->cfg.id, (d)->name[0] ? " (" : "", (d)->name, (d)->name[0] ? ")" : ""

/* One fd-based back-end (engine/backend_dev.c). */
struct ebe {
	struct precopy_engine_backend cfg;    /* ops NULL: the transfer holds them */
	char name[PRECOPY_STREAM_NAME_MAX + 1];
	struct precopy_backend_xfer *x;
	int fd;                               /* front-end fd of a running transfer, or -1 */
	int err, checked;
	uint64_t bytes_sent;
};

enum {
	OP_START = 1u << 0,
	OP_SYNC = 1u << 1,
	OP_PAGES = 1u << 2,
	OP_PUMP = 1u << 3,
	OP_ACCOUNT = 1u << 4,
	OP_DECIDE = 1u << 5,
	OP_RP = 1u << 6,
	OP_SWITCHOVER = 1u << 7,
	OP_COMPLETE = 1u << 8,
};

struct precopy_engine {
	struct precopy_engine_config cfg;     /* slots/devices point at the copies below */
	struct precopy_ram_slot *slots;
	struct edev *devs;
	uint32_t ndev;
	struct ebe *bes;                      /* fd-based back-ends */
	uint32_t nbe;
	uint32_t phase;                       /* enum precopy_engine_phase */
	/* RAM log */
	struct precopy_bitmap log;
	uint64_t base, ps;                    /* guest address of bit 0, page size */
	struct precopy_kvm_log *kvm;
	int kvm_started;
	uint64_t dirty_count;                 /* bits set in log */
	uint64_t cursor;                      /* next_pages position */
	uint64_t last_sync_pending;           /* dirty_count right after the latest sync */
	/* stream and return path (allocated at start, freed at the end) */
	uint8_t *rec, *payload;               /* record and payload buffers */
	size_t rec_cap;
	struct precopy_stream_rp_decoder *rp;
	int rp_eof;
	int stream_kind;                /* PRECOPY__FD_*: what stream_fd turned out to be */
	int need_ack, acked, switch_decided;
	/* the iteration being accounted */
	uint64_t it_ram_bytes, it_send_ns, it_dev_bytes, it_dev_ns, it_dirty_pages;
	uint64_t pump_read_ns;                /* time the pump waited in device reads */
	/* estimator and decisions */
	struct precopy_estimator *est;
	struct precopy_device_status *dstat;  /* ndev + nbe entries, what decide fed */
	struct precopy_engine_decide_input last_in;
	int have_decision;
	uint64_t last_bw;
	uint64_t last_expected;
	uint64_t last_dirty_rate;
	uint64_t first_record_ns;             /* when the first iteration began */
	uint32_t last_blocked;                /* PRECOPY_BLOCK_* of the last recorded decision */
	int stalled;                          /* a stall reported and the limit not met since */
	uint64_t stalled_since_ns;            /* when that stall was first reported */
	int interrupted;                      /* precopy_engine_interrupt(): atomic */
	struct precopy_engine_iter_stats last_iter;
	uint64_t iterations, migrations;
	/* this migration's cumulative figures (precopy_engine_stats) */
	uint64_t start_ns, end_ns, syncs, ram_sent;
	/* state channels (engine/mover.c): devices, then back-ends */
	struct precopy__chan *chans;
	uint32_t nchan;
	void *aio;                            /* the asynchronous queue, or NULL: serial drain */
	int aio_err;                          /* why there is none (-ENOSYS, -EPERM, ...) */
	uint8_t *drain_buf;                   /* 2 x max_chunk per channel */
	/* switchover */
	uint64_t sw_start_ns;
	struct precopy_engine_downtime dt;
	/* the forecast's window (engine/fcast.c): logging on, no migration */
	int fc_active;
	uint64_t fc_last_ns;                  /* the clock at the last sync */
	struct precopy_forecast_sample fc_samples[PRECOPY_FORECAST_MAX_SAMPLES];
	size_t fc_n;
	/* errors */
	int err;
	char errmsg[256];
};

/* The calls behind the public entry points (engine.c checks the phase,
 * the arguments and an interrupt first, and fails the migration on the
 * -errno they return; they never call fail or unwind themselves). */
int precopy__eng_rp_feed(struct precopy_engine *e, const void *buf, size_t len);  /* devio.c */
int precopy__eng_account(struct precopy_engine *e, uint64_t ram_bytes, uint64_t send_ns); /* estimate.c */
int precopy__eng_decide(struct precopy_engine *e, struct precopy_decision *d);   /* estimate.c */
int precopy__eng_switchover(struct precopy_engine *e);                           /* switchover.c */
/* Returns the first -errno met; the engine is DONE either way. */
int precopy__eng_complete(struct precopy_engine *e);                             /* switchover.c */
int64_t precopy__eng_next_pages(struct precopy_engine *e, struct precopy_ram_run *runs, size_t max_runs,
				uint64_t max_pages);                             /* sync.c */

/* fcast.c: the forecast's window; begin and end leave the engine IDLE
 * (end stops the logging in every case, also on failure) */
int precopy__eng_fc_begin(struct precopy_engine *e);
int64_t precopy__eng_fc_sample(struct precopy_engine *e);
int precopy__eng_fc_end(struct precopy_engine *e, const struct precopy_engine_forecast_params *p,
			struct precopy_forecast *out);

/* core.c: leaf helpers, callable from every file of the engine */
int precopy__eng_allowed(const struct precopy_engine *e, uint32_t op);
uint64_t precopy__eng_now(const struct precopy_engine *e);
void precopy__eng_seterr(struct precopy_engine *e, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A message at level to the config's log callback (precopy/log.h). */
#define precopy__eng_log(e, level, ...)                                                                \
	precopy__log((e)->cfg.log, (e)->cfg.log_ctx, (e)->cfg.log_level, (level), __VA_ARGS__)
/* As seterr; with an error already set, appends "; <text>" to its message
 * instead (a second failure met while undoing the first). */
void precopy__eng_adderr(struct precopy_engine *e, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* -ECANCELED (error set) if precopy_engine_interrupt() was called since
 * the migration started, else 0. */
int precopy__eng_interrupted(struct precopy_engine *e);
/* Move a device, measuring the latency into its estimate. */
int precopy__eng_dev_move(struct precopy_engine *e, struct edev *d, uint32_t target, uint32_t recover);
uint32_t precopy__eng_dev_state(const struct edev *d);

/* sync.c */
int precopy__eng_log_alloc(struct precopy_engine *e);
int precopy__eng_tracking_start(struct precopy_engine *e);
/* Stop every started tracker; a failure is named in the message as
 * "<step>: device N (NAME): DMA logging stop: ..." (appended to an error
 * already set) and remembered in the device's stop_pending. Returns the
 * first -errno. */
int precopy__eng_tracking_stop(struct precopy_engine *e, const char *step);
/* Stop again what an earlier tracking_stop failed to stop (start, free).
 * Returns 0 or the first -errno, with the error set (step named). */
int precopy__eng_tracking_retry(struct precopy_engine *e, const char *step);
void precopy__eng_log_mark_all(struct precopy_engine *e);
int64_t precopy__eng_sync(struct precopy_engine *e);

/* devio.c */
/* The engine's I/O bound: io_timeout_ns on its clock, poll_interval_ms. */
struct precopy__io_bound precopy__eng_io_bound(const struct precopy_engine *e);
/* precopy__io_wait_fd() under the engine's bound: a wait for an fd ends
 * after io_timeout_ns on the engine's clock or as many poll intervals
 * without progress, whichever comes first. Zero w before a wait and after
 * progress. */
int precopy__eng_wait_fd(struct precopy_engine *e, int fd, short events, struct precopy__io_wait *w);
/* stream_out.c: record buffers (open: 0 or -ENOMEM), the stream's writes */
int precopy__eng_stream_open(struct precopy_engine *e);
void precopy__eng_stream_close(struct precopy_engine *e);
int precopy__eng_emit(struct precopy_engine *e, const void *buf, size_t len);
/* devio.c: the return path's decoder (open: 0 or -ENOMEM) */
int precopy__eng_rp_open(struct precopy_engine *e);
void precopy__eng_rp_close(struct precopy_engine *e);
int precopy__eng_emit_setup_all(struct precopy_engine *e);
int precopy__eng_dev_initial_check(struct precopy_engine *e, struct edev *d);
/* Fresh precopy info (dirty bytes; with first, the initial countdown). */
int precopy__eng_dev_refresh_info(struct precopy_engine *e, struct edev *d, int first);
int precopy__eng_rp_poll(struct precopy_engine *e);
int precopy__eng_ack(struct precopy_engine *e);

/* vuchan.c: vfio-user devices */
extern const struct precopy__chan_ops precopy__chan_vu_ops;
/* Answer what the servers have sent (DMA_READ/WRITE) without waiting.
 * Returns 0, or -errno with the error set (step and device named). */
int precopy__eng_vu_serve(struct precopy_engine *e, const char *step);
/* The stop-copy size of a vfio-user device into d->stop_copy (the rule of
 * precopy_engine_vfio_user), unknown (sc_known 0) while its initial data
 * is not all out; *guess 1 when no hint or drain measured it. */
void precopy__eng_vu_size(struct precopy_engine *e, struct edev *d, int *guess);
/* Read the device's state into d->vu_state: 0 or -errno (error set, step named). */
int precopy__eng_vu_read_state(struct precopy_engine *e, struct edev *d, const char *step);

/* backend_dev.c */
int precopy__eng_be_setup(struct precopy_engine *e);
void precopy__eng_be_free(struct precopy_engine *e);
void precopy__eng_be_reset(struct precopy_engine *e);
void precopy__eng_be_abort_all(struct precopy_engine *e);
int precopy__eng_be_emit_setup(struct precopy_engine *e);
void precopy__eng_be_fill_status(struct precopy_engine *e, struct precopy_device_status *s);

/* mover.c: the state channels and their drain at switchover */
/* At start: the asynchronous queue where the table has one and there is
 * a channel (else, or where it cannot open, a serial drain; with one
 * channel the queue still overlaps its next read with the last write).
 * Returns 0 or -ENOMEM. */
int precopy__mover_open(struct precopy_engine *e);
void precopy__mover_close(struct precopy_engine *e);
int precopy__mover_concurrent(const struct precopy_engine *e);
/* Channel i's measured read rate (bytes/s over its plain reads), 0 if unknown. */
uint64_t precopy__mover_read_rate(const struct precopy_engine *e, uint32_t i);
/* Pre-copy data of every channel, up to budget bytes (0: what each
 * reported plus a chunk). Returns bytes sent or -errno (error set). */
int64_t precopy__mover_pump(struct precopy_engine *e, uint64_t budget);
/* Every channel to end of data, DEV_END each. Returns bytes or -errno
 * (error set; the caller fails the migration). */
int64_t precopy__mover_drain(struct precopy_engine *e);

#endif /* PRECOPY_ENGINE_INTERNAL_H */
