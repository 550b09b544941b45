/* SPDX-License-Identifier: MIT */
/* precopy/vfio_user.h — a vfio-user client for devices served by another process.
 *
 * The VFIO device and migration operations, spoken over a UNIX stream
 * socket to a device server in another process (the vfio-user protocol,
 * version 0.2 as libvfio-user speaks it).
 *
 * A handle owns one connection: the socket it was opened on and, when the
 * server set up twin-socket mode, the server-to-client socket. Every
 * operation sends one request and waits for its reply; while it waits it
 * answers the server's own DMA_READ and DMA_WRITE commands against the
 * guest memory given to precopy_vfio_user_dma_map(), and records the pages
 * each DMA_WRITE touched in a dirty log of its own (those pages are not in
 * the server's DMA log): precopy_vfio_user_dma_dirty() hands them out.
 *
 * Errors: functions return 0 (or a count) on success and -errno on
 * failure; errno is never part of the contract. A server's error reply
 * comes back as its errno (an error reply with errno 0 is -EPROTO). Every
 * failure leaves a message naming the device (opts.name), the step and the
 * cause in precopy_vfio_user_error(), e.g. "vfio-user dev0: REGION_READ
 * region 2 offset 0x10: server error EINVAL". Transport failures (-EPROTO:
 * a malformed or mismatched message; -ETIMEDOUT: no byte moved for
 * opts.timeout_ms; -ECONNRESET: the server closed the connection; other
 * socket -errno) break the connection: every later call fails at once with
 * -ENOTCONN and keeps the first message. A server's error reply does not.
 *
 * Waits: a request ends with -ETIMEDOUT when no byte has moved for
 * opts.timeout_ms, or after 1000 wake-ups in a row that moved nothing;
 * 65536 server commands answered within one request end it with -EPROTO.
 * Signals: sockets are written with MSG_NOSIGNAL; the library never raises
 * SIGPIPE. Polls and closes go through the sys seam (precopy/sys.h); the
 * seam has no sendmsg/recvmsg (the SCM_RIGHTS carriers), so the socket
 * transfers themselves are made directly.
 *
 * Threads: the handle has no thread. The server's commands are answered
 * only inside a call on the handle: within every request, and in
 * precopy_vfio_user_serve(), which a VMM calls when
 * precopy_vfio_user_fd() polls readable between requests (a server that
 * writes guest memory by message while no request is in flight blocks
 * until then). A handle must be used by one thread at a time; distinct
 * handles are independent.
 *
 * The engines migrate these devices: precopy_engine_config.vfio_user and
 * precopy_dest_config.vfio_user (precopy/engine.h, precopy/dest.h). While
 * a handle is in an engine's config, the engine uses it inside its own
 * calls and answers the server's commands there (and at every sync and
 * pump); between the engine's calls the VMM calls
 * precopy_vfio_user_serve(). Never both at once.
 *
 * Not here yet: REGION_WRITE_MULTI, GET_REGION_IO_FDS.
 */
#ifndef PRECOPY_VFIO_USER_H
#define PRECOPY_VFIO_USER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version the client proposes. */
#define PRECOPY_VFIO_USER_MAJOR 0
#define PRECOPY_VFIO_USER_MINOR 2

/* Defaults of struct precopy_vfio_user_opts. */
#define PRECOPY_VFIO_USER_MSG_BYTES (64u << 10)
#define PRECOPY_VFIO_USER_TIMEOUT_MS 5000
#define PRECOPY_VFIO_USER_MAX_REPLY (16u << 20)
#define PRECOPY_VFIO_USER_DIRTY_PAGE 4096u

/* DMA map protections (the DMA_MAP flags). */
#define PRECOPY_VFIO_USER_DMA_READ 1u
#define PRECOPY_VFIO_USER_DMA_WRITE 2u

/* Region flags (VFIO_REGION_INFO_FLAG_*) and device flags. */
#define PRECOPY_VFIO_USER_REGION_READ 1u
#define PRECOPY_VFIO_USER_REGION_WRITE 2u
#define PRECOPY_VFIO_USER_REGION_MMAP 4u
#define PRECOPY_VFIO_USER_REGION_CAPS 8u
#define PRECOPY_VFIO_USER_DEVICE_RESET 1u
#define PRECOPY_VFIO_USER_DEVICE_PCI 2u

/* SET_IRQS flags (VFIO_IRQ_SET_*) and GET_IRQ_INFO flags (VFIO_IRQ_INFO_*). */
#define PRECOPY_VFIO_USER_IRQ_DATA_NONE 1u
#define PRECOPY_VFIO_USER_IRQ_DATA_EVENTFD 4u
#define PRECOPY_VFIO_USER_IRQ_ACTION_MASK 8u
#define PRECOPY_VFIO_USER_IRQ_ACTION_UNMASK 16u
#define PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER 32u
#define PRECOPY_VFIO_USER_IRQ_INFO_EVENTFD 1u
#define PRECOPY_VFIO_USER_IRQ_INFO_MASKABLE 2u
#define PRECOPY_VFIO_USER_IRQ_INFO_AUTOMASKED 4u
#define PRECOPY_VFIO_USER_IRQ_INFO_NORESIZE 8u

struct precopy_vfio_user_opts {
	/* Names the device in messages (copied, up to 63 bytes); NULL: none. */
	const char *name;
	/* Largest data in one REGION_READ/WRITE, MIG_DATA_READ/WRITE message,
	 * and the max_data_xfer_size the client offers for DMA_READ/WRITE;
	 * 0: PRECOPY_VFIO_USER_MSG_BYTES. Lowered to the server's
	 * max_data_xfer_size. 4096 .. 16 MiB. (Some servers short-read
	 * messages of 256 KiB and more: keep the default unless the server is
	 * known.) */
	uint32_t msg_bytes;
	/* Idle limit of one request, in ms; 0: PRECOPY_VFIO_USER_TIMEOUT_MS.
	 * 1 .. 3600000. */
	int timeout_ms;
	/* Largest reply accepted (a DMA logging report carries its bitmap in
	 * one); 0: PRECOPY_VFIO_USER_MAX_REPLY. At least msg_bytes + 64. */
	uint32_t max_reply_bytes;
	/* Page size of the DMA_WRITE dirty log: a power of two, 0:
	 * PRECOPY_VFIO_USER_DIRTY_PAGE. */
	uint64_t dirty_page_size;
	/* Nonzero: propose twin-socket mode (the server's commands on a
	 * socket of their own). A server that does not take it still works. */
	int twin_socket;
};

/* Fill opts with the defaults (all zero, twin_socket 1). */
PRECOPY_API void precopy_vfio_user_opts_init(struct precopy_vfio_user_opts *opts);

/* A connected UNIX stream socket to the server at path (close-on-exec):
 * the fd (>= 0) or -errno (-ENAMETOOLONG: path longer than sun_path). */
PRECOPY_API int precopy_vfio_user_connect(const char *path);

struct precopy_vfio_user;

/* Open a handle on the connected socket fd and make the VERSION
 * handshake. The handle owns fd from this call on: it is closed on
 * failure too. opts may be NULL (defaults). Returns the handle, or NULL
 * with *err (may be NULL) set: -EINVAL (sys invalid, fd < 0, an option out
 * of range), -ENOMEM, -EPROTO (the server's reply malformed, another major
 * version, a higher minor, a max_data_xfer_size below 4096, inconsistent
 * twin-socket parameters), or a transport -errno; msg (may be NULL, len
 * 0) gets the message. */
PRECOPY_API struct precopy_vfio_user *precopy_vfio_user_open(const struct precopy_sys *sys, int fd,
							     const struct precopy_vfio_user_opts *opts,
							     int *err, char *msg, size_t len);

/* Close the sockets and free the handle. NULL is a no-op. The server
 * sees the client leave (it unmaps the client's memory). */
PRECOPY_API void precopy_vfio_user_close(struct precopy_vfio_user *c);

/* The last failure's message ("" if none). Valid until the next call on
 * the handle. */
PRECOPY_API const char *precopy_vfio_user_error(const struct precopy_vfio_user *c);

struct precopy_vfio_user_caps {
	uint16_t major, minor;       /* the version the server answered */
	uint64_t max_msg_fds;        /* the server's (default 1) */
	uint64_t max_data_xfer_size; /* the server's (default 1 MiB) */
	uint64_t max_dma_maps;       /* default 65535 */
	uint64_t pgsizes;            /* default 4096 */
	uint64_t migration_pgsize;   /* 0 if the server gave none */
	uint32_t msg_bytes;          /* the data per message in use */
	int twin_socket;             /* 1 if twin-socket mode is on */
};

/* What the handshake settled. Returns 0 or -EINVAL. */
PRECOPY_API int precopy_vfio_user_caps(const struct precopy_vfio_user *c, struct precopy_vfio_user_caps *out);

/* The fd to poll (POLLIN) for server commands between requests: the
 * twin socket when there is one, else the main socket. */
PRECOPY_API int precopy_vfio_user_fd(const struct precopy_vfio_user *c);

/* Answer the server commands that arrive within timeout_ms (0: only those
 * already waiting), without sending a request. Returns how many were
 * answered (>= 0) or -errno. A reply arriving here is -EPROTO. */
PRECOPY_API int precopy_vfio_user_serve(struct precopy_vfio_user *c, int timeout_ms);

/* DEVICE_GET_INFO. Any output may be NULL. */
PRECOPY_API int precopy_vfio_user_device_info(struct precopy_vfio_user *c, uint32_t *flags,
					      uint32_t *num_regions, uint32_t *num_irqs);

struct precopy_vfio_user_region {
	uint32_t flags;      /* PRECOPY_VFIO_USER_REGION_* */
	uint32_t cap_offset; /* 0: no capability list (not read here) */
	uint64_t size;
	uint64_t offset;     /* the mmap offset in the region's fd */
};

/* DEVICE_GET_REGION_INFO of region index. *fd (may be NULL: closed) gets
 * the region's fd when the server sent one (MMAP regions), else -1; the
 * caller owns it. */
PRECOPY_API int precopy_vfio_user_region_info(struct precopy_vfio_user *c, uint32_t index,
					      struct precopy_vfio_user_region *out, int *fd);

/* REGION_READ / REGION_WRITE of len bytes at offset, in messages of at
 * most msg_bytes. 0 or -errno (-EINVAL: buf NULL with len > 0, offset +
 * len overflows). A failure may leave a prefix done. */
PRECOPY_API int precopy_vfio_user_region_read(struct precopy_vfio_user *c, uint32_t index, uint64_t offset,
					      void *buf, size_t len);
PRECOPY_API int precopy_vfio_user_region_write(struct precopy_vfio_user *c, uint32_t index, uint64_t offset,
					       const void *buf, size_t len);

/* DEVICE_GET_IRQ_INFO of IRQ type index (VFIO_PCI_*_IRQ_INDEX): its
 * PRECOPY_VFIO_USER_IRQ_INFO_* flags and its count. Outputs may be NULL. */
PRECOPY_API int precopy_vfio_user_irq_info(struct precopy_vfio_user *c, uint32_t index, uint32_t *flags,
					   uint32_t *count);

/* DEVICE_SET_IRQS on IRQs [start, start + count) of type index. flags:
 * one ACTION_ bit and DATA_NONE or DATA_EVENTFD (the specification's
 * DATA_BOOL is not offered: -EINVAL). With DATA_EVENTFD, fds holds count
 * eventfds (>= 0; sent, not kept: the caller still owns them), sent in
 * messages of at most the server's max_msg_fds (and 8) fds each; fds NULL
 * de-assigns the range. DATA_NONE with start and count 0 disables every
 * IRQ of the type. 0 or -errno; a failure may leave a prefix set. */
PRECOPY_API int precopy_vfio_user_set_irqs(struct precopy_vfio_user *c, uint32_t index, uint32_t flags,
					   uint32_t start, uint32_t count, const int *fds);

/* DMA_MAP of guest memory [iova, iova + size): prot
 * PRECOPY_VFIO_USER_DMA_READ/WRITE (at least one). fd >= 0 (with
 * fd_offset) lets the server mmap it (the fd is sent, not kept: the
 * caller still owns it); fd -1 maps without an fd. host (may be NULL)
 * is where this process sees that memory: the server's DMA_READ/WRITE
 * are served from it; without it they get EFAULT. The range must not
 * overlap a mapping of this handle (-EEXIST). -EINVAL also for an fd
 * when the server's max_msg_fds is 0. -ENOMEM: the dirty log. */
PRECOPY_API int precopy_vfio_user_dma_map(struct precopy_vfio_user *c, uint64_t iova, uint64_t size, void *host,
					  int fd, uint64_t fd_offset, uint32_t prot);
/* DMA_UNMAP of exactly a mapping made before (-ENOENT otherwise); its
 * DMA_WRITE dirty log goes with it. */
PRECOPY_API int precopy_vfio_user_dma_unmap(struct precopy_vfio_user *c, uint64_t iova, uint64_t size);

/* OR into bitmap (words long, bit i = page iova + i * page_size, page_size
 * the handle's dirty_page_size) the pages of [iova, iova + length) that the
 * server's DMA_WRITEs touched; clear != 0 clears them in the handle's log.
 * The range must lie in one mapping, iova and length multiples of the
 * page size. 0 or -EINVAL/-ENOENT/-ERANGE (bitmap too short). */
PRECOPY_API int precopy_vfio_user_dma_dirty(struct precopy_vfio_user *c, uint64_t iova, uint64_t length,
					    uint64_t *bitmap, size_t words, int clear);

/* DEVICE_FEATURE MIGRATION (GET): the VFIO_MIGRATION_* flags. A server
 * without migration answers an error (libvfio-user: EINVAL, not ENOTTY). */
PRECOPY_API int precopy_vfio_user_migration_flags(struct precopy_vfio_user *c, uint64_t *flags);

/* DEVICE_FEATURE MIG_DEVICE_STATE, GET and SET (the VFIO state numbers,
 * precopy/vfio.h; no data fd in vfio-user: the data moves with
 * precopy_vfio_user_mig_read/_write). */
PRECOPY_API int precopy_vfio_user_get_state(struct precopy_vfio_user *c, uint32_t *state);
PRECOPY_API int precopy_vfio_user_set_state(struct precopy_vfio_user *c, uint32_t state);

/* One MIG_DATA_READ of up to min(len, msg_bytes) bytes into buf: the
 * count read (the reply's size field, never the message length), 0:
 * nothing now (PRE_COPY) or the end of the data (STOP_COPY); -errno. */
PRECOPY_API ssize_t precopy_vfio_user_mig_read(struct precopy_vfio_user *c, void *buf, size_t len);
/* MIG_DATA_WRITE of all len bytes, in messages of at most msg_bytes. */
PRECOPY_API int precopy_vfio_user_mig_write(struct precopy_vfio_user *c, const void *buf, size_t len);

/* DMA_LOGGING_START at page_size with nranges (iova, length) pairs in
 * ranges (2 * nranges values; 0 ranges: everything); *chosen (may be
 * NULL) gets the page size the device picked. */
PRECOPY_API int precopy_vfio_user_dma_logging_start(struct precopy_vfio_user *c, uint64_t page_size,
						    const uint64_t *ranges, uint32_t nranges, uint64_t *chosen);
PRECOPY_API int precopy_vfio_user_dma_logging_stop(struct precopy_vfio_user *c);
/* DMA_LOGGING_REPORT of [iova, iova + length) at page_size (a power of
 * two), in one message: the device's bitmap is OR-ed into bitmap (words
 * long, bit i = page iova + i * page_size; at least ceil(length /
 * page_size / 64) words, else -ERANGE). The request must have the shape
 * real servers answer correctly, else -EINVAL before anything is sent:
 * page_size that of DMA_LOGGING_START (when this handle started it), iova
 * a DMA mapping's start, the range inside that mapping and either all of
 * it or a multiple of 64 pages. -E2BIG: the reply would exceed
 * max_reply_bytes. A reply whose bitmap has the wrong
 * length or names another range is -EPROTO and sets every bit of the
 * range (no page is lost); the connection stays usable. */
PRECOPY_API int precopy_vfio_user_dma_logging_report(struct precopy_vfio_user *c, uint64_t iova,
						     uint64_t length, uint64_t page_size, uint64_t *bitmap,
						     size_t words);

/* DEVICE_RESET. */
PRECOPY_API int precopy_vfio_user_reset(struct precopy_vfio_user *c);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_VFIO_USER_H */
