/* SPDX-License-Identifier: MIT */
/* tests/lib/vu_server.h — a vfio-user device server for the tests, run in
 * a forked process on one end of a socketpair.
 *
 * Written from the specification on its own (it does not use the
 * library's codec), so that the client is checked against the protocol
 * rather than against itself. It exposes a PCI device with nine regions
 * (region 0: a 4 KiB read/write BAR; the others empty), migration with
 * STOP_COPY and PRE_COPY and the specification's state machine (complex
 * transitions by the shortest path), MIG_DATA_READ/WRITE, DMA logging, and
 * device DMA into the client's mapped memory, by mmap (logged) or by
 * DMA_WRITE/DMA_READ messages to the client (not logged), started by
 * writing BAR0's doorbell:
 *
 *   0x100 u64 iova   0x108 u64 length   0x110 u32 byte value
 *   0x114 u32 go: 1 DMA_WRITE message(s) filling the range with the value,
 *                 2 the same through the mmap of the mapping (logged),
 *                 3 DMA_READ message(s) of the range; the byte sum goes
 *                   to 0x118 (u64),
 *                 4 as 1, but after the REGION_WRITE's reply (the client
 *                   must serve it with no request in flight),
 *                 5 raise IRQ number `byte value` (0: INTx, 1..7: MSI-X
 *                   vectors 0..6) on its eventfd
 *
 * IRQs: five PCI IRQ types; INTx (index 0, 1 IRQ) and MSI-X (index 2, 7
 * IRQs) take eventfds by SET_IRQS with DATA_EVENTFD|ACTION_TRIGGER, and
 * DATA_NONE|ACTION_TRIGGER with start and count 0 turns a type off.
 *
 * Device state stream (what MIG_DATA_READ hands out, MIG_DATA_WRITE takes):
 *   "VUST" u32 0, u64 seed, u64 n, n pattern bytes (vu_pattern(seed, i)),
 *   then BAR0's first 256 bytes as they were at STOP_COPY.
 * PRE_COPY hands out the first precopy_bytes of it, then 0-byte reads
 * ("nothing now"); STOP_COPY the rest, then 0. RESUMING -> STOP checks the
 * stream whole (magic, length, every pattern byte) and loads BAR0's 256
 * bytes; a bad stream fails the SET with EINVAL and leaves the device in
 * RESUMING (or ERROR with error_on_bad_stream: the specification allows
 * both). DEVICE_RESET is refused (EINVAL) in STOP, PRE_COPY and STOP_COPY
 * (as libvfio-user refuses it while stopped); from RESUMING (the session
 * aborted, its bytes dropped) and ERROR it returns the device to RUNNING,
 * as the specification and the kernel's uAPI say.
 *
 * Device DMA of its own (auto_ms > 0): while RUNNING or PRE_COPY, every
 * auto_ms the server writes auto_pages whole pages into the range BAR0
 * describes, through its mmap of the client's mapping (logged when DMA
 * logging is on), as a device doing DMA while the guest runs; it stops in
 * every other state, so nothing lands after STOP_COPY. The range and the
 * count of pages written are BAR0 state (migrated with the device):
 *   0x80 "VDMA"  0x88 u64 pages written so far (seq)  0x90 u64 iova
 *   0x98 u64 length (a multiple of 4096)
 * set from auto_iova / auto_len at start. Page seq k goes to page k mod
 * (length / 4096) and holds vu_dma_word(k, i) as its word i. After a
 * RESUMING whose BAR0 has "VDMA", the move to RUNNING checks every page
 * written so far against the last seq that went to it: the count of pages
 * checked and of bad ones go to the report.
 *
 * Files (for a test or a user to look at, written when set):
 *   state_path: the whole device state stream, as handed out (when the
 *     STOP_COPY drain read it to the end) or as loaded (RESUMING -> STOP);
 *   report_path: at exit, lines "state-bytes N", "dma-pages-written N",
 *     "dma-pages-checked N", "dma-pages-bad N", "loaded 0|1".
 *
 * Unknown features answer EINVAL (as libvfio-user does). The server exits
 * when the client closes the socket (status 0) or on a protocol error
 * (status 2 and a line on stderr). */
#ifndef TESTS_VU_SERVER_H
#define TESTS_VU_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vu_server_cfg {
	uint32_t max_xfer;      /* max_data_xfer_size offered; 0: 1 MiB */
	uint32_t max_fds;       /* max_msg_fds offered (more are refused); 0: 8 */
	uint64_t seed;          /* the device state pattern's seed */
	uint64_t state_bytes;   /* pattern bytes in the device state */
	uint64_t precopy_bytes; /* stream bytes readable in PRE_COPY */
	int pad_reads;          /* pad MIG_DATA_READ replies to the size asked */
	/* every dma_every-th MIG_DATA_READ (0: never) first sends a DMA_WRITE
	 * of dma_len bytes of dma_val at dma_iova, waits for its reply */
	unsigned dma_every;
	uint64_t dma_iova, dma_len;
	uint8_t dma_val;
	/* every MIG_DATA_READ that hands out bytes first waits this long (a
	 * device that makes its data at msg_bytes per read_delay_us) */
	unsigned read_delay_us;
	/* optional, shared with the test (MAP_SHARED before the fork, one
	 * pair for several servers): while a MIG_DATA_READ that hands out
	 * bytes is being answered *inflight counts it, and *inflight_max
	 * keeps the most seen at once across the servers that share it */
	_Atomic int *inflight, *inflight_max;
	/* the die_at-th MIG_DATA_READ (0: never) sends its header and half
	 * its payload, then the server exits */
	unsigned die_at;
	/* the hang_at-th MIG_DATA_READ (0: never) is never answered: the
	 * server sleeps until killed */
	unsigned hang_at;
	int twin;               /* set up a twin socket when the client asks */
	int error_on_bad_stream; /* a failed RESUMING -> STOP goes to ERROR */
	int no_migration;       /* no migration feature (EINVAL) */
	/* replies broken on purpose for the n-th REGION_READ (0: never):
	 * 1 wrong msg_id, 2 short payload, 3 error bit with errno 0, 4 size
	 * field larger than what is sent (then the server exits) */
	unsigned garble_at, garble_kind;
	/* device DMA of its own (above): every auto_ms, auto_pages pages */
	unsigned auto_ms, auto_pages;
	uint64_t auto_iova, auto_len;
	int auto_unlogged; /* a broken device: its own DMA is not logged */
	const char *state_path, *report_path;
};

/* Word i of the page written by DMA seq k (the auto DMA above). */
uint64_t vu_dma_word(uint64_t k, unsigned i);

/* The device state's pattern byte i for seed. */
uint8_t vu_pattern(uint64_t seed, uint64_t i);

/* Serve one client on fd until it leaves; returns the exit status. */
int vu_server_run(int fd, const struct vu_server_cfg *cfg);

/* socketpair + fork: the child serves the other end and _exits with
 * vu_server_run's status. Returns the child's pid and *client_fd, or -1. */
pid_t vu_server_spawn(const struct vu_server_cfg *cfg, int *client_fd);

/* A server listening on the UNIX socket path (created here, removed when
 * a client comes): the forked child serves the first client that connects
 * and _exits. Returns the child's pid or -1. */
pid_t vu_server_listen(const char *path, const struct vu_server_cfg *cfg);

/* Wait for the child (at most timeout_ms, then SIGKILL); its exit status,
 * 128 + signal if killed by one, -1 on error. */
int vu_server_wait(pid_t pid, int timeout_ms);

#endif /* TESTS_VU_SERVER_H */
