/* SPDX-License-Identifier: MIT */
/* precopy/fake.h — the fake kernel and device models (tests, simulator).
 *
 * Thread safety: stated per section below. The fake kernel serializes its
 * own model state with an internal mutex, so its sys table may be used
 * from several threads; the configuration calls (precopy_fake_*) must not
 * race with precopy_fake_kernel_free().
 */
#ifndef PRECOPY_FAKE_H
#define PRECOPY_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/backend.h"
#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Fake kernel: fd table, VFIO device model, type1 container and iommufd
 * models, KVM VM dirty-log model, fault injection (fake/kernel.c,
 * fake/vfio*.c, fake/type1.c, fake/iommufd.c, fake/kvm.c,
 * fake/fault.c)
 *
 * A `struct precopy_fake_kernel` provides a `struct precopy_sys` whose
 * ioctls on fake fds are served by userspace models of the kernel's
 * observable contract, and whose every other call goes to the real
 * syscall. Fake fds are real file descriptors (device fds are eventfds,
 * data fds are AF_UNIX socketpairs carrying real bytes), so numbers are
 * unique and poll/read/write/close on them behave as fds do.
 * ====================================================================== */

struct precopy_fake_kernel;
struct precopy_fake_vfio;

/* The clock the models run on. now_ns is required (monotonic ns);
 * advance_ns, if set, is called with each modelled latency (a virtual
 * clock moves forward, a real one may sleep). */
struct precopy_fake_clock {
	uint64_t (*now_ns)(void *ctx);
	void (*advance_ns)(void *ctx, uint64_t ns);
	void *ctx;
};

/* Create a fake kernel. clock NULL means CLOCK_MONOTONIC without latency.
 * Returns the handle (free with precopy_fake_kernel_free()) or NULL with
 * *err (if non-NULL) = -EINVAL (clock without now_ns) or -ENOMEM. */
PRECOPY_API struct precopy_fake_kernel *precopy_fake_kernel_new(const struct precopy_fake_clock *clock,
								int *err);

/* Close every fd the fake still owns and free every model. NULL is a no-op. */
PRECOPY_API void precopy_fake_kernel_free(struct precopy_fake_kernel *fk);

/* The sys table that dispatches to this fake kernel. Valid until
 * precopy_fake_kernel_free(). */
PRECOPY_API const struct precopy_sys *precopy_fake_kernel_sys(struct precopy_fake_kernel *fk);

/* ---- fault injection (fake/fault.c) ------------------------------------ */

enum precopy_fake_op {
	PRECOPY_FAKE_OP_IOCTL = 0,
	PRECOPY_FAKE_OP_READ,
	PRECOPY_FAKE_OP_WRITE,
	PRECOPY_FAKE_OP_SPLICE,
	PRECOPY_FAKE_OP_POLL,
	PRECOPY_FAKE_OP_OPEN,
	PRECOPY_FAKE_OP_CLOSE,
	PRECOPY_FAKE_OP_MMAP,
	PRECOPY_FAKE_OP_MUNMAP,
	PRECOPY_FAKE_OP_PIPE2,
	PRECOPY_FAKE_OP_COUNT
};

/* A rule: among the calls that match (op; for ioctls the request unless 0;
 * with match_feature, only VFIO_DEVICE_FEATURE ioctls for that feature
 * index; the fd unless 0), calls number nth .. nth + times - 1 (1-based)
 * are hit. Zero-initialized filters match everything.
 * A hit returns -err without doing anything (except a close, which, as
 * on Linux, releases the fd before returning any error but -EBADF), or,
 * when err is 0, caps a read/write/splice to short_len bytes (a short
 * transfer) and lets it run. PRECOPY_FAKE_OP_WRITE matches send too (a
 * write to a socket). */
struct precopy_fault {
	enum precopy_fake_op op;
	unsigned long request;
	int match_feature;
	uint32_t feature;
	int fd;
	uint64_t nth;
	uint64_t times; /* 0 means 1 */
	int err;	/* positive errno */
	size_t short_len;
};

/* Add a rule (up to 32). Returns 0, -EINVAL (NULL, op out of range, nth 0,
 * err < 0, err 0 on an op that cannot be short), -ENOSPC (table full). */
PRECOPY_API int precopy_fake_fault_add(struct precopy_fake_kernel *fk, const struct precopy_fault *f);

/* Remove every rule and reset the match counters. */
PRECOPY_API void precopy_fake_fault_clear(struct precopy_fake_kernel *fk);

/* Calls of op seen so far (faulted or not). */
PRECOPY_API uint64_t precopy_fake_op_calls(struct precopy_fake_kernel *fk, enum precopy_fake_op op);

/* ---- the VFIO device model (fake/vfio*.c) -------------------------- */

struct precopy_fake_vfio_cfg {
	uint64_t mig_flags;	    /* VFIO_MIGRATION_*; 0: no migration support (-ENOTTY) */
	int dma_logging;	    /* implements VFIO_DEVICE_FEATURE_DMA_LOGGING_* */
	uint64_t initial_bytes;	    /* PRE_COPY initial data when the session opens */
	uint64_t dirty_rate;	    /* device-state bytes dirtied per second in PRE_COPY* */
	uint64_t stop_copy_bytes;   /* final state size (MIG_DATA_SIZE reports it) */
	uint64_t log_page_min;	    /* smallest DMA-tracking page (power of 2; 0: 4096) */
	uint64_t log_page_max;	    /* largest (0: 2 MiB) */
	uint32_t max_ranges;	    /* tracker ranges; more are combined (0: 256) */
	uint64_t transition_ns;	    /* latency of each FSM arc, given to clock.advance_ns */
	uint64_t dma_pages_per_sec; /* pages the device writes into guest memory while running */
	uint32_t seed;		    /* state-stream pattern and DMA choices */
	int restart_errno;	    /* START while started (0: EINVAL, as mlx5) */
	/* Guest memory may be given as NULL with a length
	 * (precopy_fake_vfio_set_guest_mem): DMA then marks the device's log
	 * (and its IOMMU's dirty state) without writing bytes, for guests too
	 * large to back with memory (the simulator). Memory given as a buffer
	 * is written as usual. */
	int dma_log_only;
	/* How fast the device delivers its state through the data fd, in
	 * bytes per second (0: unlimited, no time). A read of n bytes takes
	 * n / read_rate on the clock: a plain read advances it; on the
	 * asynchronous queue the read completes that long after the device
	 * is free (one read at a time per device, devices in parallel). */
	uint64_t read_rate;
	/* How fast the device takes state in RESUMING, in bytes per second (0:
	 * unlimited): a write of n bytes takes n / write_rate, as reads do
	 * with read_rate (a clock without advance_ns sleeps instead). */
	uint64_t write_rate;
	/* A data fd without a poll method, as drivers whose read() only
	 * returns once the device has copied the state out (0: pollable, as
	 * before). poll reports it readable and writable at once whatever the
	 * device holds (the kernel's default mask for such a file) and makes
	 * the model produce nothing; O_NONBLOCK means nothing to it: every
	 * read blocks for n / read_rate on the clock (a plain read advances
	 * it; on the asynchronous queue the read completes that long after
	 * the device is free, whether submitted as blocking or not). */
	int no_poll;
};

struct precopy_fake_vfio_stats {
	uint32_t state;		/* enum vfio_device_mig_state */
	uint64_t arcs;		/* FSM arcs executed */
	uint64_t resets;	/* VFIO_DEVICE_RESET calls */
	uint64_t bytes_out;	/* state bytes produced into data fds */
	uint64_t bytes_in;	/* state bytes accepted in RESUMING */
	uint64_t resume_ok;	/* RESUMING -> STOP completed with a valid stream */
	uint64_t dma_pages;	/* guest pages written by device DMA */
	int logging;		/* DMA logging started */
	uint32_t log_ranges;	/* ranges the tracker holds (after combining) */
	uint64_t log_page_size; /* page size the tracker chose */
	uint64_t initial_left;	/* PRE_COPY accounting */
	uint64_t dirty_bytes;
	/* reads of STOP_COPY state that returned bytes: through plain read()
	 * on the sys table, or submitted to its asynchronous queue */
	uint64_t sc_plain_reads, sc_queued_reads;
};

/* Create a device; its fd (an eventfd) is returned and dispatched by fk.
 * The device lives until precopy_fake_kernel_free(); closing its fd through
 * the sys table detaches it (later ioctls on that number are -EBADF unless
 * the number is reused). *out (optional) receives the model handle.
 * mig_flags without STOP_COPY is accepted (a device the library must refuse).
 * Returns the fd or -EINVAL (page sizes not powers of 2, min > max) /
 * -ENOMEM / -errno. */
PRECOPY_API int precopy_fake_vfio_new(struct precopy_fake_kernel *fk, const struct precopy_fake_vfio_cfg *cfg,
				      struct precopy_fake_vfio **out);

/* Guest memory the device DMAs into, at IOVA iova. The caller keeps it
 * mapped while the device exists. With cfg.dma_log_only, mem may be NULL
 * (len > 0): DMA then only marks the logs. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_fake_vfio_set_guest_mem(struct precopy_fake_vfio *dev, uint64_t iova, void *mem,
						size_t len);

/* The device writes `byte` over [iova, iova + len) now (real bytes into the
 * guest memory, if it was given as a buffer) and, if logging, marks its log; if it is attached to a fake
 * type1 container or iommufd HWPT, that sees the write too. Returns the
 * number of log pages newly marked, -EINVAL (no guest memory, outside it,
 * len 0), -EPERM (the device is not in a state that may DMA: STOP,
 * STOP_COPY, RESUMING, ERROR) or -EFAULT (its IOMMU has no mapping for the
 * whole range: nothing written). */
PRECOPY_API int precopy_fake_vfio_dma_write(struct precopy_fake_vfio *dev, uint64_t iova, uint64_t len,
					    uint8_t byte);

/* Make the driver fail the arc from -> to (as the FSM steps through it) the
 * next `times` times it is attempted: the SET_STATE ioctl returns -err and
 * the device is left in end_state (from, or VFIO_DEVICE_STATE_ERROR).
 * Returns 0 or -EINVAL. */
PRECOPY_API int precopy_fake_vfio_fail_arc(struct precopy_fake_vfio *dev, uint32_t from, uint32_t to, int err,
					   uint32_t end_state, unsigned int times);

/* Make RESET fail with -err the next `times` times. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_fake_vfio_fail_reset(struct precopy_fake_vfio *dev, int err, unsigned int times);

/* A device that fails while giving its final state: once `after` bytes of
 * its STOP_COPY session have been read, every read of the data fd answers
 * -err (err 0 clears the rule). Returns 0 or -EINVAL. */
PRECOPY_API int precopy_fake_vfio_fail_read(struct precopy_fake_vfio *dev, int err, uint64_t after);

/* Move up to max pending state bytes into the current saving data fd now,
 * for readers that bypass the sys table (io_uring); at the end of STOP_COPY
 * it ends the stream so a reader sees EOF. Returns the bytes moved or
 * -EINVAL (no saving session). */
PRECOPY_API int64_t precopy_fake_vfio_pump(struct precopy_fake_vfio *dev, size_t max);

/* The expected byte at offset off of a state stream from a device with
 * this seed (what RESUMING checks). */
PRECOPY_API uint8_t precopy_fake_vfio_stream_byte(uint32_t seed, uint64_t off);

/* Snapshot of the model. */
PRECOPY_API void precopy_fake_vfio_get_stats(struct precopy_fake_vfio *dev, struct precopy_fake_vfio_stats *st);

/* ---- the type1 container model (fake/type1.c) ----------------------
 *
 * A VFIO container set to VFIO_TYPE1v2_IOMMU. Its fd serves
 * VFIO_CHECK_EXTENSION, VFIO_IOMMU_GET_INFO (flags PGSIZES|CAPS; the
 * capability chain holds the migration capability, then DMA avail, each
 * 8-byte aligned; argsz too small for it: argsz raised, cap_offset 0),
 * VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA (flags READ/WRITE; the VADDR,
 * ALL and GET_DIRTY_BITMAP variants are not modelled and fail -EINVAL) and
 * VFIO_IOMMU_DIRTY_PAGES with the kernel's checks and errnos: not v2:
 * -EACCES; argsz or flags bad, more than one flag: -EINVAL; START while
 * started and STOP while stopped: 0; GET_BITMAP: argsz short of the range
 * struct, iova + size wrapping, a bitmap size of 0, above the maximum or
 * too small for size / pgsize pages, pgsize other than the smallest IOMMU
 * page, iova or size unaligned or size 0, tracking not started, a range
 * cutting a mapping: all -EINVAL; a NULL bitmap: -EFAULT.
 * Dirty bits are what type1 reports: while any attached device is not
 * pinned_scope (an ordinary IOMMU-backed device), every mapped page of the
 * range, every time; otherwise exactly the pages pinned_scope devices wrote
 * by DMA since the previous GET_BITMAP (DMA needs a mapping: -EFAULT).
 */
struct precopy_fake_type1;

struct precopy_fake_type1_cfg {
	uint64_t pgsize_bitmap;	   /* IOMMU page sizes (0: 4 KiB | 2 MiB | 1 GiB) */
	uint64_t max_bitmap_bytes; /* the migration capability's limit (0: 256 MiB, the kernel's) */
	int no_migration_cap;	   /* a kernel without dirty tracking: no capability */
	int v1;			   /* set to VFIO_TYPE1_IOMMU: DIRTY_PAGES says -EACCES */
	uint32_t dma_entry_limit;  /* mappings allowed (0: 65535, the kernel's default) */
};

/* Create a container; returns its fd (an eventfd dispatched by fk) and
 * *out (optional) the model, which lives until precopy_fake_kernel_free().
 * Returns -EINVAL (NULL, page sizes 0 below 4 KiB, max below 8) or
 * -ENOMEM / -errno. */
PRECOPY_API int precopy_fake_type1_new(struct precopy_fake_kernel *fk, const struct precopy_fake_type1_cfg *cfg,
				       struct precopy_fake_type1 **out);

/* Put a device's group in the container: its DMA then needs a mapping and
 * is seen by the container's dirty tracking. pinned_scope: the device pins
 * the pages it writes (mediated-device style). Returns 0, -EINVAL (NULL) or
 * -EBUSY (the device is attached to an IOMMU already). */
PRECOPY_API int precopy_fake_type1_attach(struct precopy_fake_type1 *ct, struct precopy_fake_vfio *dev,
					  int pinned_scope);

/* ---- the iommufd model (fake/iommufd.c) -----------------------------
 *
 * One IOAS with mappings made by precopy_fake_iommufd_map() (the IOAS
 * ioctls are not modelled) and up to 8 hardware page tables over it. The
 * fd serves IOMMU_HWPT_SET_DIRTY_TRACKING and IOMMU_HWPT_GET_DIRTY_BITMAP
 * as iommufd does: size below the struct's minimum -EINVAL, non-zero bytes
 * past the known struct -E2BIG; unknown flags or a non-zero __reserved
 * -EOPNOTSUPP; an unknown HWPT id -ENOENT; a HWPT without dirty tracking
 * -EOPNOTSUPP; GET: iova + length - 1 wrapping -EOVERFLOW, iova or end not
 * aligned to the IOVA alignment or to page_size, page_size 0 or not a power
 * of two -EINVAL, tracking off -EINVAL, a range not wholly mapped -EINVAL,
 * data NULL -EFAULT. Every other ioctl: -ENOTTY. Enabling tracking clears
 * the HWPT's dirty bits. Dirty bits are the IOMMU's: one per IOPTE of
 * iopte_size bytes, set by DMA of attached devices; a report sets every
 * page_size bit an overlapping dirty IOPTE covers within the range and
 * (without NO_CLEAR) clears that whole IOPTE.
 */
struct precopy_fake_iommufd;

/* Create an iommufd with IOVA alignment iova_align (0: 4096; a power of
 * two). Returns its fd and *out (optional) the model, or -EINVAL /
 * -ENOMEM / -errno. */
PRECOPY_API int precopy_fake_iommufd_new(struct precopy_fake_kernel *fk, uint64_t iova_align,
					 struct precopy_fake_iommufd **out);

/* Allocate a HWPT; dirty_tracking: allocated with
 * IOMMU_HWPT_ALLOC_DIRTY_TRACKING. iopte_size: the IOMMU page its dirty
 * bits cover (0: the IOVA alignment; a power of two >= it). Returns 0 and
 * *hwpt_id, -EINVAL or -ENOSPC (8 already). */
PRECOPY_API int precopy_fake_iommufd_hwpt_alloc(struct precopy_fake_iommufd *ictx, int dirty_tracking,
						uint64_t iopte_size, uint32_t *hwpt_id);

/* Map [iova, iova + len) in the IOAS. Returns 0, -EINVAL (unaligned, 0,
 * wrapping), -EEXIST (overlap), -ENOMEM. */
PRECOPY_API int precopy_fake_iommufd_map(struct precopy_fake_iommufd *ictx, uint64_t iova, uint64_t len);

/* Attach a device to a HWPT. Returns 0, -EINVAL, -ENOENT (no such HWPT),
 * -EBUSY (already attached to an IOMMU). */
PRECOPY_API int precopy_fake_iommufd_attach(struct precopy_fake_iommufd *ictx, uint32_t hwpt_id,
					    struct precopy_fake_vfio *dev);

/* ---- the KVM VM dirty-log model (fake/kvm.c) ------------------------
 *
 * A VM fd serving KVM_CHECK_EXTENSION, KVM_ENABLE_CAP
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
 * and KVM_DIRTY_LOG_INITIALLY_SET), KVM_SET_USER_MEMORY_REGION (create,
 * delete, move, flags-only change, KVM_MEM_LOG_DIRTY_PAGES and
 * KVM_MEM_READONLY), KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG with x86
 * KVM's checks and errnos (two address spaces, 32764 user slots). The dirty
 * ring is not modelled: both ring capabilities read 0 and enabling them is
 * -EINVAL. Other ioctls: -ENOTTY. Guest writes come from
 * precopy_fake_kvm_write().
 */
struct precopy_fake_kvm;

/* Create a VM; returns its fd (an eventfd dispatched by fk) and *out
 * (optional) the model. Returns -EINVAL, -ENOMEM or -errno. */
PRECOPY_API int precopy_fake_kvm_new(struct precopy_fake_kernel *fk, struct precopy_fake_kvm **out);

/* The guest writes `byte` over guest-physical [gpa, gpa + len) of address
 * space 0: real bytes into the slots' userspace memory, and dirty bits in
 * slots that log. Returns the number of dirty bits newly set, -EINVAL (len
 * 0, wrapping), -EFAULT (a byte not in any slot: nothing written) or
 * -EACCES (a read-only slot: nothing written). */
PRECOPY_API int64_t precopy_fake_kvm_write(struct precopy_fake_kvm *vm, uint64_t gpa, uint64_t len, uint8_t byte);

/* ====================================================================== */

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

#endif /* PRECOPY_FAKE_H */
