/* SPDX-License-Identifier: MIT */
/* precopy/engine.h — the source migration engine (struct precopy_engine).
 * engines, and the estimates and switchover decisions they are built on.
 *
 * It drives the devices, the dirty logs and the device-state stream
 * (precopy/stream.h), and feeds the estimator (precopy/estimator.h). It
 * reads time only through the clock in its config and makes every syscall
 * through the config's `sys` seam (precopy/sys.h), so the same code runs in
 * a VMM (real clock, real kernel) and in the simulator (virtual clock, fake
 * kernel). The destination engine is precopy/dest.h.
 *
 * Thread safety: an engine, a destination engine and an estimator are each
 * used by one thread at a time (the VMM's migration thread): every
 * precopy_engine_* / precopy_dest_* / precopy_estimator_* call on one object
 * must be serialized by the caller. Distinct objects are independent. In
 * PRECOPY_RAM_BITMAP mode other threads (vCPUs, device emulation) may set
 * bits in the caller's live bitmap with precopy_bitmap_set_atomic() at any
 * time, including during precopy_engine_sync(), which harvests it
 * atomically. Nothing in the engine keeps process-wide state: per-device
 * status lives in the engine, so any number of engines (and migrations one
 * after another on one engine) coexist.
 *
 * Errors: 0 or a count >= 0 on success, -errno on failure, never errno.
 * When a call fails inside a migration (a device, the stream or the return
 * path fails) the engine cancels the migration before returning (every
 * device back to RUNNING, logging stopped, session fds closed, migration
 * memory freed), remembers the error, and precopy_engine_strerror() says
 * what happened. The engine can then start a new migration.
 */
#ifndef PRECOPY_ENGINE_H
#define PRECOPY_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/backend.h"
#include "precopy/bitmap.h"
#include "precopy/estimator.h"
#include "precopy/export.h"
#include "precopy/kvm.h"
#include "precopy/log.h"
#include "precopy/stream.h"
#include "precopy/sys.h"
#include "precopy/vfio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================
 * The source engine
 * ====================================================================
 *
 * What the VMM's migration thread does with it:
 *
 *   e = precopy_engine_new(&cfg, &err);
 *   precopy_engine_start(e);                 // logging on, devices PRE_COPY,
 *                                            // stream header + device setup
 *   for (;;) {
 *       precopy_engine_sync(e);              // KVM / bitmap + device DMA logs
 *       while ((n = precopy_engine_next_pages(e, runs, 64, 4096)) > 0)
 *           send the n runs of guest pages;  // the VMM moves RAM itself
 *       precopy_engine_pump(e, budget);      // device pre-copy data -> stream
 *       precopy_engine_account(e, ram_bytes, send_ns);
 *       precopy_engine_decide(e, &d);
 *       CONTINUE: loop; THROTTLE: apply d.throttle to the vCPUs, loop;
 *       WAIT_ACK: loop (the destination has not loaded the initial data);
 *       ABORT: precopy_engine_cancel(e); stop;
 *       SWITCHOVER / FORCE_SWITCHOVER: break;
 *   }
 *   stop the vCPUs;
 *   precopy_engine_switchover(e);            // quiesce, STOP_COPY, final sync,
 *                                            // device state to end of data
 *   while ((n = precopy_engine_next_pages(e, runs, 64, 0)) > 0)
 *       send the n runs;                     // the last dirty RAM
 *   precopy_engine_account(e, ram_bytes, send_ns);
 *   ... the destination resumes the guest (end of the downtime window) ...
 *   precopy_engine_complete(e);              // DMA logging off, devices STOP
 *
 * Never losing a page: a page leaves the RAM dirty log only when
 * precopy_engine_next_pages() hands it out; the final sync runs after every
 * device is in STOP_COPY (the VMM stops the vCPUs before calling
 * precopy_engine_switchover()).
 *
 * The device-state stream (precopy/stream.h records): the preamble and
 * STREAM_HDR, one DEV_SETUP per device at start; DEV_DATA records of up to
 * max_chunk bytes as precopy_engine_pump() reads the devices' data fds;
 * DEV_INITIAL_SENT once a PRE_COPY device's initial bytes have all been
 * sent; at switchover the rest of each device's state, DEV_END, then
 * STREAM_END. RAM never travels in this stream.
 *
 * The format does allow a zero-copy DEV_DATA record without payload CRC
 * (precopy_stream_encode_data_hdr()) for a source whose bytes sit in a pipe.
 *
 * Engine phases and the calls each accepts (a table in engine/engine.c):
 *   IDLE      --start-->       PRECOPY
 *   PRECOPY   --switchover-->  SWITCHED   (sync, next_pages, pump, account,
 *                                          decide, rp_feed, ack in PRECOPY)
 *   SWITCHED  --complete-->    DONE       (next_pages, account in SWITCHED)
 *   PRECOPY, SWITCHED --cancel or failure--> IDLE (failure: last error set)
 *   DONE, IDLE --start-->      PRECOPY    (a new migration)
 * A call in a phase that does not accept it returns -EBUSY (before start,
 * after complete) without changing anything.
 */

/* Version 2 added log, log_ctx and log_level at the end, version 3
 * vfio_user and nvfio_user; version 1 and 2 structs (built against older
 * headers) are still accepted. */
#define PRECOPY_ENGINE_CONFIG_VERSION 3

/* The clock the engines read (monotonic ns). */
struct precopy_clock {
	uint64_t (*now_ns)(void *ctx); /* required */
	void *ctx;
};

/* One guest RAM slot. Slots must not overlap and all share one page size;
 * the RAM dirty log spans from the lowest slot base to the highest slot end
 * (bit i = the page at that base + i * page_size; holes between slots cost
 * bits that are never set). */
struct precopy_ram_slot {
	uint64_t gpa;             /* guest-physical base, page aligned */
	uint64_t size;            /* bytes, a non-zero multiple of page_size */
	uint64_t page_size;       /* power of two >= 4096; equal for every slot
				   * (KVM mode: 4096) */
	/* PRECOPY_RAM_KVM only: the slot as the VMM registered it. */
	uint32_t kvm_slot;        /* (address space << 16) | slot id */
	uint32_t kvm_flags;       /* 0 or KVM_MEM_READONLY */
	uint64_t userspace_addr;  /* the VMM's mapping */
};

/* Where guest RAM dirtiness comes from. */
enum precopy_ram_source {
	/* A caller-owned live bitmap of the whole log span (same nbits as the
	 * log, same bit layout) that the VMM or a simulator sets with
	 * precopy_bitmap_set_atomic(); each sync harvests it into the log
	 * (snapshot-and-clear, word by word, no per-page callback). */
	PRECOPY_RAM_BITMAP = 1,
	/* KVM's dirty log of the VM (classic, manual-protect or dirty ring,
	 * precopy/kvm.h). The engine creates the KVM log at precopy_engine_new()
	 * (which enables the mode on the VM: ring mode before any vCPU exists),
	 * registers the slots, turns logging on at start and off at
	 * complete/cancel. KVM logs only what the guest writes: the VMM's own
	 * writes to guest RAM through its mapping (device emulation, the
	 * firmware's mailboxes) must be reported in the optional ram_bitmap,
	 * which each sync then harvests as in RAM_BITMAP mode. */
	PRECOPY_RAM_KVM = 2,
};

/* precopy_engine_device.flags */
#define PRECOPY_ENGINE_DEV_NO_DMA_LOG 0x1u /* never use the device's own DMA
					    * logging (use `tracker` or treat
					    * all RAM as dirty) */

/* One VFIO device to migrate. */
struct precopy_engine_device {
	uint32_t id;          /* stream device id: unique, != PRECOPY_STREAM_DEV_NONE */
	int device_fd;        /* open VFIO device fd, borrowed (kept open by the VMM) */
	const char *name;     /* printable ASCII, <= PRECOPY_STREAM_NAME_MAX; NULL: "" */
	uint16_t pci_vendor;  /* carried in DEV_SETUP, 0 if unknown */
	uint16_t pci_device;
	uint32_t flags;       /* PRECOPY_ENGINE_DEV_* */
	/* Optional, borrowed: a dirty source for the pages this device writes,
	 * used when the device has no DMA logging (e.g. the container's or
	 * iommufd's dirty tracking). Started and stopped by the engine on the
	 * RAM slots. Devices behind one container (or one iommufd HWPT) may
	 * name the same tracker: it is started, read at each sync and stopped
	 * once for all of them. It must stay valid until precopy_engine_free()
	 * (which stops it once more if its last stop failed). */
	struct precopy_dirty_source *tracker;
	/* First estimate of one state-transition arc's latency (ns), replaced by
	 * measurements as the engine moves the device. */
	uint64_t transition_ns;
};

/* One fd-based back-end to migrate (a vhost-user style device back-end,
 * precopy/backend.h). Its opaque state moves only while its queues are
 * stopped, so all of it moves inside the downtime window: at
 * precopy_engine_switchover(), after the VFIO devices' state, the engine
 * creates a pipe (sys pipe2), hands the write end to the back-end (SAVE),
 * reads the state to its end of data into DEV_DATA records under the
 * back-end's stream id, asks the back-end whether its save succeeded
 * (check_state) and then writes DEV_END. The VMM must have stopped the
 * back-end's queues before switchover (else -EBUSY). In the stream a
 * back-end is a device with DEV_SETUP mig_flags STOP_COPY, no PCI ids and
 * initial_bytes 0; the destination knows it by its id
 * (precopy_dest_config.backends). */
struct precopy_engine_backend {
	uint32_t id;                           /* stream id: unique among devices and
						* back-ends, != PRECOPY_STREAM_DEV_NONE */
	const char *name;                      /* as precopy_engine_device.name */
	const struct precopy_backend_ops *ops; /* copied at precopy_engine_new() */
	void *ctx;                             /* passed to every op */
	/* Expected state size in bytes: the estimator counts it as stop-copy
	 * bytes in the downtime (0: negligible). */
	uint64_t state_bytes;
};

struct precopy_vfio_user; /* precopy/vfio_user.h */

/* One device served over vfio-user (precopy/vfio_user.h) to migrate as a
 * VFIO device is migrated: the same state machine (moved one arc at a
 * time through MIG_DEVICE_STATE, P2P states only where the device has
 * them), its state read with MIG_DATA_READ (pre-copy and switchover) and
 * written on the destination with MIG_DATA_WRITE. In the stream it is a
 * device like any other (DEV_SETUP with its migration flags, no PCI ids).
 *
 * The handle is the VMM's, connected, with guest memory DMA-mapped before
 * precopy_engine_start() (the server logs the mappings it has when
 * logging starts). The engine uses it only inside its own calls, on the
 * engine's thread; the VMM must not use it concurrently. The server's
 * DMA_READ/DMA_WRITE commands are answered inside every request the
 * engine makes, and the engine serves what is waiting at each
 * precopy_engine_sync() and precopy_engine_pump(); between the engine's
 * calls the VMM serves them (precopy_vfio_user_serve() when
 * precopy_vfio_user_fd() polls readable).
 *
 * Dirty tracking: the device's DMA logging (started on the server at
 * precopy_engine_start(), every DMA mapping that meets a RAM slot reported
 * whole at each sync, stopped at complete or cancel) together with the
 * handle's own log of the pages the server wrote by DMA_WRITE, both merged
 * into the RAM log. With PRECOPY_ENGINE_DEV_NO_DMA_LOG, `tracker` or else
 * every sync marks all RAM dirty, as for a VFIO device.
 *
 * Sizes: vfio-user has no precopy-info and no stop-copy-size query. In
 * PRE_COPY the initial bytes are unknown until the first 0-byte read,
 * which sends the initial-data marker; meanwhile
 * precopy_engine_device_info() reports initial_bytes 0 and the device's
 * stop-copy size as unknown (stop_copy_known 0: the estimator does not
 * switch over). After it, the stop-copy size the estimator uses
 * is stop_copy_hint, else the bytes the device's last STOP_COPY drain
 * delivered, else (never migrated) the bytes it has delivered in this
 * migration's pre-copy plus one chunk: a guess, counted in
 * precopy_decision.stop_copy_guessed (docs/vfio-user.md). */
struct precopy_engine_vfio_user {
	uint32_t id;                    /* stream id: unique among devices and back-ends */
	const char *name;               /* as precopy_engine_device.name */
	struct precopy_vfio_user *dev;  /* borrowed, connected, until precopy_engine_free() */
	uint32_t flags;                 /* PRECOPY_ENGINE_DEV_* */
	struct precopy_dirty_source *tracker; /* as precopy_engine_device.tracker */
	uint64_t stop_copy_hint;        /* expected STOP_COPY bytes; 0: none */
	uint64_t transition_ns;         /* first estimate of one arc's latency */
};

/* How a device's DMA dirtiness reaches the RAM log (engine status). */
enum precopy_engine_tracking {
	PRECOPY_TRACK_DMA_LOG = 1, /* the device's own DMA logging */
	PRECOPY_TRACK_TRACKER = 2, /* the config's tracker */
	PRECOPY_TRACK_ALL = 3,     /* none: every sync marks all RAM dirty */
};

/* The embedder's sink for the stream (instead of stream_fd): must take all
 * len bytes, or return -errno (the migration then fails). */
typedef int (*precopy_engine_sink_fn)(void *ctx, const void *buf, size_t len);

struct precopy_engine_config {
	uint32_t version;                  /* PRECOPY_ENGINE_CONFIG_VERSION */
	struct precopy_clock clock;        /* required */
	const struct precopy_sys *sys;     /* required (precopy_sys_real() in a VMM) */
	/* guest RAM */
	const struct precopy_ram_slot *slots; /* copied; at least one */
	uint32_t nslots;
	uint32_t ram_source;               /* enum precopy_ram_source */
	struct precopy_bitmap *ram_bitmap; /* RAM_BITMAP: the live bitmap (borrowed,
					    * required); RAM_KVM: optional live
					    * bitmap of the VMM's own writes
					    * (same layout), or NULL */
	int kvm_vm_fd;                     /* RAM_KVM: the VM fd (borrowed) */
	struct precopy_kvm_log_config kvm; /* RAM_KVM: mode and options */
	/* devices (copied; may be empty) */
	const struct precopy_engine_device *devices;
	uint32_t ndevices;
	/* the stream: exactly one of stream_fd >= 0 (written through sys,
	 * blocking or not, never raising SIGPIPE: precopy/sys.h) or sink */
	int stream_fd;
	precopy_engine_sink_fn sink;
	void *sink_ctx;
	/* the return path: rp_fd >= 0 (read through sys without blocking), or
	 * -1 and the VMM calls precopy_engine_rp_feed() / precopy_engine_ack() */
	int rp_fd;
	struct precopy_policy policy;      /* validated as precopy_estimator_new() */
	uint32_t max_chunk;                /* DEV_DATA payload bytes; 0: 64 KiB;
					    * 4096 .. PRECOPY_STREAM_DEFAULT_MAX_CHUNK */
	uint64_t io_timeout_ns;            /* longest stream / data fd wait without
					    * progress, on the clock and in poll
					    * intervals; 0: 10 s */
	uint32_t poll_interval_ms;         /* longest single poll; 0: 10 */
	/* The exact query (fresh device info and sizes, a RAM sync) runs when
	 * the cheap estimate's expected downtime is below this percentage of
	 * the limit; 0: 200. */
	uint32_t exact_margin_pct;
	/* fd-based back-ends (copied; may be empty). Their stream ids share
	 * one space with the devices', and devices plus back-ends count
	 * against PRECOPY_STREAM_CAP_MAX_DEVICES. */
	const struct precopy_engine_backend *backends;
	uint32_t nbackends;
	/* Version 2: the engine's messages (precopy/log.h), those up to
	 * log_level (enum precopy_log_level); log NULL: none. */
	precopy_log_fn log;
	void *log_ctx;
	uint32_t log_level;
	/* Version 3: devices served over vfio-user (copied; may be empty).
	 * Their ids share the devices' and back-ends' space; all three count
	 * against PRECOPY_STREAM_CAP_MAX_DEVICES. precopy_engine_device_info()
	 * indexes VFIO devices first, then these. */
	const struct precopy_engine_vfio_user *vfio_user;
	uint32_t nvfio_user;
};

/* Fill *cfg with every default: version, a CLOCK_MONOTONIC clock
 * (precopy_clock_monotonic()), precopy_sys_real(), kvm_vm_fd, stream_fd and
 * rp_fd -1, kvm.version, the policy of precopy_policy_defaults(); every
 * other field 0, which means "the default" wherever a field documents one.
 * Fds are the exception to "0 = default" (0 is stdin): start from this
 * rather than from a zeroed struct. NULL is a no-op. */
PRECOPY_API void precopy_engine_config_init(struct precopy_engine_config *cfg);

/* The rules precopy_engine_new() applies before it opens any device: the
 * first broken one, named by field and rule, into msg (NUL-terminated when
 * len > 0; e.g. "slots[1]: overlaps slots[0]", "stream_fd / sink: exactly
 * one (stream_fd 0, sink set)"). Returns 0, -EINVAL or -E2BIG, the value
 * precopy_engine_new() would fail with. What only the devices and the
 * kernel can refuse (a device that cannot migrate, a KVM slot) is not
 * checked here. */
PRECOPY_API int precopy_engine_config_check(const struct precopy_engine_config *cfg, char *msg, size_t len);

/* A clock reading CLOCK_MONOTONIC in ns (what a VMM passes). */
PRECOPY_API struct precopy_clock precopy_clock_monotonic(void);

struct precopy_engine;

/* Create an engine from *cfg (copied, with the slot and device arrays).
 * Opens a handle on every device (reads its migration flags and state),
 * probes DMA logging, allocates the RAM dirty log, and in KVM mode creates
 * the KVM log and registers the slots. No device changes state.
 * Returns the engine (free with precopy_engine_free()), or NULL with *err
 * (if err is non-NULL):
 *   -EINVAL  cfg NULL, unknown version, clock.now_ns missing, sys invalid,
 *            no slot, misaligned/overlapping slots or page sizes that differ
 *            or are not powers of two >= 4096, an unknown ram_source,
 *            RAM_BITMAP without ram_bitmap, a ram_bitmap (either mode)
 *            without words or with a different nbits,
 *            RAM_KVM with kvm_vm_fd < 0 or a page size other than 4096,
 *            devices NULL with ndevices > 0, a duplicate or NONE id, a
 *            device_fd < 0, a bad name, both or neither of stream_fd / sink,
 *            backends NULL with nbackends > 0, a back-end ops table that
 *            precopy_backend_xfer_new() refuses, a back-end id used twice
 *            (devices included) or NONE,
 *            max_chunk out of range, a bad policy
 *   -E2BIG   more than PRECOPY_STREAM_CAP_MAX_DEVICES devices and back-ends
 *   -ENOTTY / -EOPNOTSUPP  a device cannot migrate (precopy_vfio_dev_new())
 *   -ENOMEM, or a KVM error from precopy_kvm_log_new() / _add_slot(). */
PRECOPY_API struct precopy_engine *precopy_engine_new(const struct precopy_engine_config *cfg, int *err);

/* Cancel a running migration (as precopy_engine_cancel()), stop logging
 * (once more where an earlier stop failed), release every handle and the
 * RAM log. Borrowed fds stay open. NULL is a no-op. */
PRECOPY_API void precopy_engine_free(struct precopy_engine *e);

/* RAM_KVM with the dirty ring: add a vCPU (created after the engine) as
 * precopy_kvm_log_add_vcpu(). Returns 0, -EINVAL (not KVM ring mode), -EBUSY
 * (a migration is running) or that function's -errno. */
PRECOPY_API int precopy_engine_kvm_add_vcpu(struct precopy_engine *e, int vcpu_fd, void *ring);

/* Start a migration: KVM dirty logging on (RAM_KVM), the RAM log cleared
 * and every page marked dirty (the first pass sends all RAM), each device's
 * dirty tracking started on the RAM slots (DMA logging, else the tracker,
 * else PRECOPY_TRACK_ALL), devices with PRE_COPY moved RUNNING -> PRE_COPY
 * (recovering to RUNNING on failure), the stream header and every
 * DEV_SETUP written. Every device's state is read again first (the VMM
 * may have moved or reset it): a device in ERROR fails the start with -EIO,
 * one in any other state than RUNNING (e.g. STOP after a completed
 * migration, until the VMM resumes it) with -EINVAL, the device and its
 * state named, before anything changes. Dirty tracking an earlier cancel or
 * complete failed to stop (the device may still be logging) is stopped
 * again first: if that fails, so does the start, with its -errno, before
 * anything changes. Returns 0, -EBUSY (a migration is
 * running), or the failing step's -errno (the engine is back in IDLE,
 * everything undone, precopy_engine_strerror() names the step). */
PRECOPY_API int precopy_engine_start(struct precopy_engine *e);

/* Harvest the RAM dirty sources (KVM logs, the live bitmap) and every
 * device's DMA log into the RAM log, chunk by chunk through bounded buffers.
 * A device's failed report marks its whole range dirty (nothing is lost)
 * and fails the migration. Returns the count of pages newly dirty in the
 * log, -EBUSY (not in PRECOPY), or -errno (migration cancelled). */
PRECOPY_API int64_t precopy_engine_sync(struct precopy_engine *e);

/* A run of guest pages to send. */
struct precopy_ram_run {
	uint64_t gpa;    /* guest-physical address of the first page */
	uint64_t pages;  /* pages of the RAM page size */
};

/* Hand out dirty pages to send: up to max_runs runs of at most max_pages
 * pages in total (0: no page limit; a longer run is split), continuing
 * where the previous call stopped. Handed-out pages are cleared from the
 * log at once: the VMM must send their current contents. Returns the count
 * of runs (0 once the log has no more pages after the cursor; the next sync
 * restarts at the first page), -EINVAL (runs NULL, max_runs 0) or -EBUSY
 * (not in PRECOPY or SWITCHED). */
PRECOPY_API int64_t precopy_engine_next_pages(struct precopy_engine *e, struct precopy_ram_run *runs,
					      size_t max_runs, uint64_t max_pages);

/* Move device pre-copy data into the stream: reads each PRE_COPY device's
 * data fd (round robin, a record of up to max_chunk at a time) until
 * budget_bytes of device data are written (0: until every device says it
 * has nothing now, -ENOMSG), and writes DEV_INITIAL_SENT for each device
 * whose initial bytes have all been sent. Also reads the return path
 * (rp_fd). Returns device bytes written (>= 0), -EBUSY (not in PRECOPY), or
 * -errno (a device read, the stream or the return path failed; migration
 * cancelled). */
PRECOPY_API int64_t precopy_engine_pump(struct precopy_engine *e, uint64_t budget_bytes);

/* The VMM's account of the RAM it sent since its last account: bytes and
 * the time spent sending them (the engine adds its own device bytes and
 * stream time). In SWITCHED it is the final RAM transfer (downtime
 * breakdown). Returns 0, -EBUSY (not in PRECOPY or SWITCHED). */
PRECOPY_API int precopy_engine_account(struct precopy_engine *e, uint64_t ram_bytes, uint64_t send_ns);

/* Replace the policy (config.policy), before or during a migration, as an
 * operator changes a running migration's parameters: a new downtime limit,
 * timeout or switchover bandwidth, or fixed_downtime_ns set to what the VMM
 * measured of the downtime the engine cannot see (stopping its vCPUs, the
 * destination's resume). Checked as at precopy_engine_new(); applies from
 * the next precopy_engine_decide() (the cheap estimate, the exact query's
 * margin and the estimator) and to later migrations on this engine; the
 * iterations recorded and the throttle level are kept (the level lowered
 * to throttle_max if above it). bw_window cannot change. Call it on the
 * engine's thread. Returns 0, or -EINVAL (NULL, an invalid policy, a
 * different bw_window). */
PRECOPY_API int precopy_engine_set_policy(struct precopy_engine *e, const struct precopy_policy *policy);

/* Cancel the migration in progress from any thread (a management thread,
 * a signal handler's deferred work): safe to call at any time, even while
 * the migration thread is inside an engine call. Every wait of the engine
 * (stream writes, device data reads, the return path, the switchover
 * drain) ends within one poll interval (poll_interval_ms), and that call,
 * or the next one of precopy_engine_sync/pump/decide/switchover, fails
 * with -ECANCELED after cancelling as any failure does (devices back to
 * RUNNING, logging stopped); precopy_engine_strerror() says it was
 * interrupted. The VMM then resumes its vCPUs if it had stopped them. An
 * interrupt applies to the migration in progress: precopy_engine_start()
 * forgets one made before it. Returns 0, -EINVAL (NULL). */
PRECOPY_API int precopy_engine_interrupt(struct precopy_engine *e);

/* Decide after an iteration, or in the middle of one. Runs the cheap
 * estimate (cached device sizes, RAM pending); when it says switchover may
 * be near (or nothing was measured yet) runs the exact query: fresh precopy
 * info and stop-copy size from every device and a RAM sync. Then records
 * the iteration in the estimator and asks it (estimator/estimator.c) with the
 * devices' status and the switchover-ack state.
 * In the middle of a pass (precopy_engine_next_pages() has pages left after
 * its cursor) the cheap estimate counts those pages at the last measured
 * bandwidth; while it is above exact_margin_pct of the limit the call
 * answers CONTINUE with those figures and records nothing (d->iteration
 * unchanged). Otherwise the iteration ends here: the sync adds newly dirty
 * pages to the log and the cursor stays where it was (pages before it wait
 * for the next pass, after the VMM's next precopy_engine_sync()). Calling
 * it after every ~100 ms of sending is what lets a guest whose dirty set
 * per pass never fits switch over between two syncs that do fit. Reads the return path
 * first. A failed stop-copy size query leaves that size unknown, which
 * blocks switchover. *d gets the decision and the numbers behind it.
 * Returns 0, -EINVAL (d NULL), -EBUSY (not in PRECOPY), or -errno
 * (migration cancelled). SWITCHOVER / FORCE_SWITCHOVER mark the decision:
 * an ACK arriving after it is a protocol error. */
PRECOPY_API int precopy_engine_decide(struct precopy_engine *e, struct precopy_decision *d);

/* What the last precopy_engine_decide() fed the estimator, for callers
 * (and tests) that replay it. devs gets up to max entries (in config
 * order; each back-end follows the devices, as a device with stop-copy
 * bytes = its state_bytes). Returns the count of entries (devices plus
 * back-ends), -EINVAL, or -ENOENT (no decision yet). */
struct precopy_engine_decide_input {
	struct precopy_iteration iteration; /* the record it made */
	int ack_received;
	uint64_t now_ns;
	int exact;                          /* 1: the exact query ran */
};
PRECOPY_API int precopy_engine_last_input(const struct precopy_engine *e, struct precopy_engine_decide_input *in,
					  struct precopy_device_status *devs, size_t max);

/* Return-path bytes the VMM received on its own channel (when rp_fd is -1).
 * Returns 0, -EBUSY (no migration running), or -errno: -EPROTO for an ACK
 * twice, too early (before every PRE_COPY device's DEV_INITIAL_SENT was
 * written) or after the switchover decision, or an RP_ERROR from the
 * destination (its code as -errno); -EBADMSG for malformed bytes. Every
 * error cancels the migration. */
PRECOPY_API int precopy_engine_rp_feed(struct precopy_engine *e, const void *buf, size_t len);

/* The destination's switchover-ack arrived through the VMM's own protocol.
 * Same rules and errors as an RP_ACK in precopy_engine_rp_feed(). */
PRECOPY_API int precopy_engine_ack(struct precopy_engine *e);

/* Switch over (the VMM has stopped the vCPUs): every device quiesced first
 * (to RUNNING_P2P / PRE_COPY_P2P, for all P2P devices before any is
 * stopped), then every device to STOP_COPY, the final sync (RAM source and
 * device logs), every device's state read to its end of data into the
 * stream (DEV_END each), then every back-end's state (the VMM has stopped
 * its queues: see struct precopy_engine_backend) read to its end of data
 * and checked (DEV_END each), STREAM_END. The remaining dirty pages are then
 * handed out by precopy_engine_next_pages(). Measured transition latencies
 * update each device's estimate. Returns 0, -EBUSY (not in PRECOPY), or
 * -errno (every device back to RUNNING, migration cancelled: the VMM
 * resumes its vCPUs on the source). Back-end failures: -EBUSY (its queues
 * run), the pipe's or the back-end's -errno from set_state_fd, -ETIMEDOUT
 * (no end of data within io_timeout_ns), the back-end's check_state verdict
 * (e.g. -EIO for a short state); a failed back-end transfer is abandoned
 * without waiting for the back-end (precopy_backend_xfer_abort()). */
PRECOPY_API int precopy_engine_switchover(struct precopy_engine *e);

/* End a successful migration, after the downtime window (the destination
 * runs the guest): DMA logging and trackers stopped, devices STOP_COPY ->
 * STOP, KVM logging off, session fds closed. Returns 0, -EBUSY (not in
 * SWITCHED), or the first -errno of those steps (the engine still ends in
 * DONE: the guest already runs elsewhere; precopy_engine_strerror() names
 * each failed step and device). A tracker whose stop failed is stopped
 * again by the next precopy_engine_start() or by precopy_engine_free(). */
PRECOPY_API int precopy_engine_complete(struct precopy_engine *e);

/* Cancel the migration: every device back to RUNNING (reset where recovery
 * fails), logging stopped, session fds closed, migration memory freed. A
 * new precopy_engine_start() may follow. A device in ERROR (its reset
 * failed too) cannot be moved: it is left there, named in
 * precopy_engine_strerror() and counted as an error (its -errno, or -EIO).
 * Returns 0 (also when nothing is running), or the first -errno met while
 * undoing (everything is still attempted; the device status says which
 * device). A failed stop of dirty tracking is named in
 * precopy_engine_strerror() ("cancel: device N (NAME): DMA logging stop:
 * ...", appended to the failure being undone, if any) and stopped again by
 * the next precopy_engine_start() or by precopy_engine_free(). */
PRECOPY_API int precopy_engine_cancel(struct precopy_engine *e);

/* The last failure: "step: device N: ..." text, or "" if none. Valid until
 * the next call on e. */
PRECOPY_API const char *precopy_engine_strerror(const struct precopy_engine *e);

/* The last failure's -errno, or 0. */
PRECOPY_API int precopy_engine_error(const struct precopy_engine *e);

/* ---- forecast: before migrating ------------------------------------------
 *
 * precopy_forecast() (precopy/estimator.h) fed by the engine's own
 * measurements: with dirty logging on and nothing sent, the engine syncs
 * its RAM dirty source and every device's DMA log at each sample and
 * counts the pages found since the previous sync; the end stops the
 * logging and forecasts with the engine's policy. No device changes state,
 * no stream or return path is used, and the engine is IDLE again after the
 * end: precopy_engine_start() may follow at once (and refuses with -EBUSY
 * while a window is open). The caller lets the guest run between the
 * calls; intervals of 100, 200, 400 and 800 ms (1.5 s) tell the rate from
 * the working set (precopy/estimator.h, "Measuring"). Every syscall goes
 * through the config's sys table; nothing blocks. */

/* What the engine cannot measure before a migration. */
struct precopy_engine_forecast_params {
	uint64_t bandwidth_Bps;    /* the link, > 0 */
	uint64_t min_iteration_ns; /* as precopy_forecast_input (0: none) */
	uint64_t check_ns;         /* the VMM asks the engine every check_ns of
				    * sending inside a pass; 0: at pass ends */
	uint64_t ack_delay_ns;     /* the destination's load of the initial bytes
				    * and the trip back (pre-copy devices) */
	uint64_t device_dirty_Bps; /* the devices' pre-copy bytes dirtied per second */
	const uint64_t *initial_bytes; /* per device, config order: its pre-copy
				    * initial bytes (VFIO reports them only in
				    * PRE_COPY); NULL: 0 each */
};

/* Open the window: start dirty logging (KVM, each device's DMA logging or
 * tracker, as precopy_engine_start() would) and sync once to discard what
 * was dirty before. Returns 0; -EINVAL; -EBUSY (a migration or a window
 * is open); -errno of a step (the message names it and the device; the
 * logging is stopped again). */
PRECOPY_API int precopy_engine_forecast_begin(struct precopy_engine *e);

/* Sync now: records (time since the previous sync on the engine's clock,
 * pages found dirty) as one sample. Returns those pages; -EINVAL; -EBUSY
 * (no window open); -ENOSPC after PRECOPY_FORECAST_MAX_SAMPLES samples
 * (the window stays open); -errno of the sync (the window is then closed,
 * logging stopped, the message names the step). */
PRECOPY_API int64_t precopy_engine_forecast_sample(struct precopy_engine *e);

/* Close the window and forecast: the samples, the RAM slots' size and page
 * size, each device's stop-copy size as it answers now (a vfio-user
 * device: its hint or last drain, marked a guess), its transitions at the
 * engine's per-arc estimate, *p, and the engine's policy, into *out
 * (precopy_forecast()). p and out both NULL: close without forecasting.
 * The logging is stopped in every case. Returns 0; -EINVAL (one of p, out
 * NULL; or precopy_forecast()'s: no sample, bandwidth 0); -EBUSY (no
 * window open); -errno of a tracking stop (named in the message). */
PRECOPY_API int precopy_engine_forecast_end(struct precopy_engine *e, const struct precopy_engine_forecast_params *p,
					    struct precopy_forecast *out);

/* ---- status and statistics ---------------------------------------------- */

enum precopy_engine_phase {
	PRECOPY_ENGINE_IDLE = 0,
	PRECOPY_ENGINE_PRECOPY = 1,
	PRECOPY_ENGINE_SWITCHED = 2,
	PRECOPY_ENGINE_DONE = 3,
};

struct precopy_engine_dev_info {
	uint32_t id;
	uint32_t state;             /* VFIO device state as last known */
	uint64_t mig_flags;         /* VFIO_MIGRATION_* */
	uint32_t tracking;          /* enum precopy_engine_tracking (0 before start) */
	int err;                    /* this device's last failure in this migration */
	int recovered, was_reset;   /* how its last failed transition ended */
	int initial_sent;           /* DEV_INITIAL_SENT written */
	int stop_copy_known;        /* the last size query succeeded */
	uint64_t initial_bytes;     /* initial bytes not yet sent */
	uint64_t dirty_bytes;       /* last precopy info */
	uint64_t stop_copy_bytes;   /* last size query */
	uint64_t bytes_sent;        /* DEV_DATA payload bytes this migration */
	uint64_t transition_ns;     /* current per-arc latency estimate */
	uint64_t last_transition_ns;/* latest measured set_state duration */
	int reset_err;              /* the reset after its last failed transition
				     * failed too (-errno): state is then ERROR */
	int stop_copy_guessed;      /* stop_copy_bytes is a guess (a vfio-user
				     * device without hint, never drained), not
				     * the device's answer nor a measurement */
	uint64_t precopy_bytes_sent;/* of bytes_sent, those sent before the
				     * switchover began (all of them before it) */
	uint32_t downtime_arcs;     /* state arcs the last decision charged to
				     * the downtime (source to STOP_COPY, then the
				     * destination to RUNNING); 0 before one */
};

/* Status of device `index` (config order). Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_engine_device_info(const struct precopy_engine *e, uint32_t index,
					   struct precopy_engine_dev_info *out);

/* A back-end's status in the current or last migration. */
struct precopy_engine_backend_info {
	uint32_t id;
	int err;             /* this back-end's failure in this migration, or 0 */
	int checked;         /* 1: its save was checked successfully */
	uint64_t bytes_sent; /* DEV_DATA payload bytes this migration */
};

/* Status of back-end `index` (config order). Returns 0, -EINVAL, -ENOENT. */
PRECOPY_API int precopy_engine_backend_info(const struct precopy_engine *e, uint32_t index,
					    struct precopy_engine_backend_info *out);

/* One iteration (filled at each precopy_engine_decide()). */
struct precopy_engine_iter_stats {
	uint64_t iteration;          /* 1-based */
	uint64_t end_ns;
	uint64_t dirty_pages;        /* pages newly dirty from the syncs in it */
	uint64_t ram_bytes;          /* sent by the VMM (its account) */
	uint64_t device_bytes;       /* device data written by the engine */
	uint64_t bandwidth_Bps;      /* the estimator's switchover bandwidth */
	uint64_t ram_pending;        /* bytes, pending by source: */
	uint64_t device_precopy;     /*   device pre-copy bytes not sent */
	uint64_t device_stop_copy;   /*   device stop-copy bytes (UNBOUNDED if unknown) */
	uint64_t expected_downtime_ns;
	double rho;
	uint64_t predicted_time_ns;
	uint32_t throttle;           /* percent */
	uint32_t action;             /* enum precopy_action */
	int exact;                   /* the exact query ran */
};

/* Where the downtime went (filled by switchover/account/complete). */
struct precopy_engine_downtime {
	uint64_t total_ns;          /* switchover start -> complete() */
	uint64_t final_ram_ns;      /* the VMM's account of the final RAM */
	uint64_t final_ram_pages;   /* pages in the log after the final sync */
	uint64_t device_drain_ns;   /* reading device state to end of data */
	uint64_t device_bytes;      /* device bytes sent during the drain */
	uint64_t transitions_ns;    /* device state changes inside the window */
	uint64_t fixed_ns;          /* policy fixed cost */
	uint64_t expected_ns;       /* the last decision's expected downtime */
};

struct precopy_engine_stats {
	uint32_t phase;                      /* enum precopy_engine_phase */
	uint32_t ndevices;
	uint64_t migrations;                 /* started on this engine */
	uint64_t iterations;                 /* in this migration */
	uint64_t log_pages;                  /* pages of the RAM log */
	uint64_t dirty_now;                  /* pages set in the log */
	struct precopy_engine_iter_stats last; /* the last iteration */
	struct precopy_engine_downtime downtime;
	int error;                           /* last failure, 0 if none */
	/* this migration, cumulative (the figures of QEMU's query-migrate) */
	uint64_t start_ns;                   /* clock at precopy_engine_start() */
	uint64_t setup_ns;                   /* start -> the first iteration (0 before it) */
	uint64_t total_ns;                   /* start -> now, or -> complete / failure */
	uint64_t syncs;                      /* dirty-log syncs (dirty-sync-count) */
	uint64_t ram_bytes_sent;             /* the VMM's account, switchover included */
	uint64_t ram_total_bytes;            /* the RAM log's span */
	uint64_t ram_remaining_bytes;        /* dirty pages in the log now x page size */
	uint64_t device_bytes_sent;          /* device and back-end state in the stream */
	uint64_t page_size;
	/* the last recorded decision (midpass answers do not count) */
	uint32_t blocked;                    /* PRECOPY_BLOCK_* */
	int stalled;                         /* 1 from the decision that first reports a
					      * stall until one finds the limit met: it
					      * stays 1 while the stall lasts, also when a
					      * new throttle level gets its iterations */
	uint64_t stalled_since_ns;           /* clock when that stall was first reported; 0 */
	uint64_t downtime_limit_ns;          /* the policy's */
};

/* Fill *out. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_engine_stats(const struct precopy_engine *e, struct precopy_engine_stats *out);

/* The engine's statistics as one JSON object, schema version
 * PRECOPY_STATS_JSON_SCHEMA, every field always present (null where a
 * figure does not exist yet); docs/stats-json.md lists each field, its
 * type and unit. precopy-sim --json writes this same object, from this
 * call, with its own fields added. The names are those of QEMU's
 * query-migrate where it has the figure: "schema-version", "status" (none,
 * active, device — after switchover, waiting for complete —, completed,
 * failed, cancelled), "total-time", "setup-time", "downtime" (after
 * complete), "expected-downtime" and "downtime-limit" in ms, "ram":
 * {"transferred", "remaining", "total" (bytes), "dirty-sync-count", "mbps",
 * "dirty-pages-rate" (pages/s), "page-size"}, "cpu-throttle-percentage",
 * then this library's "iterations", "action" (the last decision's, or null),
 * "blocked-reasons" (precopy_block_name() names), "stalled" (as
 * precopy_engine_stats.stalled), "stalled-since" (ms from the start, or
 * null), "device": {"transferred"}, "devices": one object per device in
 * config order (precopy_engine_device_info(): id, name, kind, state,
 * tracking, stop-copy, stop-copy-guessed, pre-copy-pending, pre-copy-sent,
 * transferred, transitions, transition-time) and "error" (the message, or
 * null). Into buf (NUL-terminated when len > 0); returns the length needed,
 * like snprintf, or -EINVAL. */
#define PRECOPY_STATS_JSON_SCHEMA 3
PRECOPY_API int precopy_engine_stats_json(const struct precopy_engine *e, char *buf, size_t len);

/* One JSON object for an iteration / the downtime breakdown into buf
 * (NUL-terminated when len > 0). Return the length needed (excluding the
 * NUL), like snprintf, or -EINVAL for NULL s. */
PRECOPY_API int precopy_engine_iter_json(const struct precopy_engine_iter_stats *s, char *buf, size_t len);
PRECOPY_API int precopy_engine_downtime_json(const struct precopy_engine_downtime *s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_ENGINE_H */
