/* SPDX-License-Identifier: MIT */
/* Every write site of both engines against a peer that takes nothing while
 * the clock stands still: the source's stream (at start, in pre-copy, at
 * switchover), the destination's return path (the switchover-ack, the
 * RP_ERROR of a failed start), its device data writes (on the
 * asynchronous queue and plain) and its back-end state pipe. A full fd (poll times out) and a fd that polls ready but
 * answers -EAGAIN both end with -ETIMEDOUT and a message naming the step
 * after io_timeout_ns worth of poll rounds, never a hang (each test has a
 * guard timeout). The source's read waits at switchover (a device's end of
 * data, queued or plain, a back-end's saved state) end the same way when
 * every read answers -EAGAIN. */
#include <fcntl.h>

#include "test-engine.h"

#define IO_TIMEOUT_NS 50000000ull /* 50 ms: 5 poll rounds of 10 ms */
#define GUARD_S 20
#define FOREVER (1ull << 40)

static void fini(void) { h_teardown(); }
TestSuite(engine_stall, .fini = fini, .timeout = GUARD_S);

static uint64_t frozen_now(void *c) { (void)c; return 5000000000ull; }

static void nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	cr_assert_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* Write into fd until its socket buffer is full. */
static void fill(int fd)
{
	static const uint8_t junk[4096];
	int small = 4096;

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	cr_assert_eq(errno, EAGAIN);
}

/* ndev devices (all flags), nbe back-ends; short I/O timeouts; the
 * source's (src_frozen) and/or the destination's clock frozen. */
static int src_no_rp; /* the source does not read the return path */
static int plain_io;  /* both sides through version 3 tables: no asynchronous queue */
static struct precopy_sys_ops v3_ops[2];
static struct precopy_sys v3_sys[2];

static const struct precopy_sys *v3(int side, const struct precopy_sys *sys)
{
	v3_ops[side] = *sys->ops;
	v3_ops[side].version = 3;
	v3_sys[side] = (struct precopy_sys){ &v3_ops[side], sys->ctx };
	return &v3_sys[side];
}

static void setup(int ndev, int nbe, int src_frozen, int dst_frozen)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF }, sizes[MAXDEV] = { 30000 };

	h_setup(ndev, flags, 1);
	if (nbe)
		h_backends(nbe, sizes);
	H.cfg.io_timeout_ns = IO_TIMEOUT_NS;
	H.dcfgx.io_timeout_ns = IO_TIMEOUT_NS;
	if (src_frozen)
		H.cfg.clock.now_ns = frozen_now;
	if (dst_frozen)
		H.dcfgx.clock.now_ns = frozen_now;
	if (src_no_rp)
		H.cfg.rp_fd = -1;
	if (plain_io) {
		H.cfg.sys = v3(0, H.ssys);
		H.dcfgx.sys = v3(1, H.dsys);
	}
	nonblock(H.st[0]);
	nonblock(H.rp[1]);
	h_engines();
}

static void assert_msg(const char *got, const char *want)
{
	cr_assert(strstr(got, want), "message \"%s\", expected \"%s\"", got, want);
}

/* A rule: every write to fd (0: any) on fk answers -EAGAIN. */
static void refuse_writes(struct precopy_fake_kernel *fk, int fd)
{
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_WRITE, .fd = fd, .nth = 1, .times = FOREVER, .err = EAGAIN };
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
}

/* ---- the source's stream ------------------------------------------------ */

static void source_stream(int at, int ready_but_refuses)
{
	int r;

	setup(2, 0, 1, 0);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	if (at > 0) {
		cr_assert_eq(precopy_engine_start(H.src), 0);
		cr_assert_geq(precopy_engine_sync(H.src), 0);
	}
	if (ready_but_refuses)
		refuse_writes(H.sfk, H.st[0]);
	else
		fill(H.st[0]);
	if (at == 0)
		r = precopy_engine_start(H.src);
	else if (at == 1)
		r = (int)precopy_engine_pump(H.src, 0);
	else
		r = precopy_engine_switchover(H.src);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_engine_strerror(H.src));
	assert_msg(precopy_engine_strerror(H.src), "stream: write: the stream took no byte within the I/O timeout");
	assert_all_running();
}

Test(engine_stall, source_start_stream_full) { source_stream(0, 0); }
Test(engine_stall, source_start_stream_ready_but_refuses) { source_stream(0, 1); }
Test(engine_stall, source_pump_stream_full) { source_stream(1, 0); }
Test(engine_stall, source_pump_stream_ready_but_refuses) { source_stream(1, 1); }
Test(engine_stall, source_switchover_stream_full) { source_stream(2, 0); }
Test(engine_stall, source_switchover_stream_ready_but_refuses) { source_stream(2, 1); }

/* ---- the destination ---------------------------------------------------- */

/* A destination device refuses RESUMING while the return path is full:
 * the RP_ERROR cannot go out, start still returns the device's error. */
Test(engine_stall, dest_start_rp_error_rp_full)
{
	setup(2, 0, 0, 1);
	cr_assert_eq(precopy_fake_vfio_fail_arc(H.ddev[1], VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RESUMING, EIO,
						VFIO_DEVICE_STATE_STOP, 1), 0);
	fill(H.rp[1]);
	cr_assert_eq(precopy_dest_start(H.dst), -EIO);
	assert_msg(precopy_dest_strerror(H.dst), "start: device 11: -> RESUMING");
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING);
}

/* Same, with a return path that polls ready and takes nothing. */
Test(engine_stall, dest_start_rp_error_rp_refuses)
{
	setup(2, 0, 0, 1);
	cr_assert_eq(precopy_fake_vfio_fail_arc(H.ddev[1], VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RESUMING, EIO,
						VFIO_DEVICE_STATE_STOP, 1), 0);
	refuse_writes(H.dfk, H.rp[1]);
	cr_assert_eq(precopy_dest_start(H.dst), -EIO);
	assert_msg(precopy_dest_strerror(H.dst), "start: device 11: -> RESUMING");
}

/* The switchover-ack cannot go out (for a full return path, the source
 * does not read it: it would take the filler as garbage). */
static void dest_ack(int ready_but_refuses)
{
	struct run_result rr;
	int r;

	src_no_rp = !ready_but_refuses;
	setup(2, 0, 0, 1);
	if (ready_but_refuses)
		refuse_writes(H.dfk, H.rp[1]);
	else
		fill(H.rp[1]);
	r = run_migration(200, &rr);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_dest_strerror(H.dst));
	assert_msg(precopy_dest_strerror(H.dst),
		   "return path: sending the switchover-ack: the return path took no byte within the I/O timeout");
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING);
}

Test(engine_stall, dest_ack_rp_full) { dest_ack(0); }
Test(engine_stall, dest_ack_rp_ready_but_refuses) { dest_ack(1); }

/* A destination device's data fd takes nothing (the first write the
 * destination makes is device 10's first DEV_DATA): through the
 * asynchronous queue (concurrent loads) and with plain writes (a table
 * without the queue). */
static void dest_device_write(int plain)
{
	struct precopy_dest_stats ds;
	struct run_result rr;
	int r;

	plain_io = plain;
	setup(2, 0, 0, 1);
	plain_io = 0;
	refuse_writes(H.dfk, 0);
	r = run_migration(200, &rr);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_dest_strerror(H.dst));
	assert_msg(precopy_dest_strerror(H.dst), "device 10: data write: the device took no byte within the I/O timeout");
	cr_assert_eq(precopy_dest_stats(H.dst, &ds), 0);
	cr_assert_eq(ds.concurrent_loads, !plain);
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING);
}

Test(engine_stall, dest_device_write_refuses) { dest_device_write(0); }
Test(engine_stall, dest_device_plain_write_refuses) { dest_device_write(1); }

/* A back-end's state pipe takes nothing (no devices: the first write is
 * the back-end's state at switchover). */
Test(engine_stall, dest_backend_pipe_refuses)
{
	struct run_result rr;
	int r;

	setup(0, 1, 0, 1);
	refuse_writes(H.dfk, 0);
	r = run_migration(200, &rr);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_dest_strerror(H.dst));
	assert_msg(precopy_dest_strerror(H.dst),
		   "back-end 50: writing its state: the state pipe took no byte within the I/O timeout");
}

/* ---- the source's read waits --------------------------------------------- */

/* A reads rule: every read on the source's fake kernel answers -EAGAIN
 * from now on (the data fds poll ready: the model has bytes). */
static void refuse_reads(struct precopy_fake_kernel *fk)
{
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_READ, .nth = 1, .times = FOREVER, .err = EAGAIN };
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
}

/* At switchover a device's data fd never reaches its end of data: on the
 * asynchronous queue, and read one device after another with plain
 * calls (a table without the queue). */
static void source_device_read(int plain)
{
	struct precopy_decision d;
	int r;

	plain_io = plain;
	setup(2, 0, 1, 0);
	plain_io = 0;
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_sync(H.src), 0);
	cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	refuse_reads(H.sfk);
	r = precopy_engine_switchover(H.src);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_engine_strerror(H.src));
	assert_msg(precopy_engine_strerror(H.src), "switchover: device 10 (fake): no end of data within the I/O timeout");
	assert_all_running();
}

Test(engine_stall, source_switchover_device_read_refuses) { source_device_read(0); }
Test(engine_stall, source_switchover_device_plain_read_refuses) { source_device_read(1); }

/* At switchover a back-end's state pipe never reaches its end. */
Test(engine_stall, source_switchover_backend_read_refuses)
{
	struct precopy_decision d;
	int r;

	setup(0, 1, 1, 0);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_sync(H.src), 0);
	cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
	cr_assert_eq(precopy_fake_backend_set_running(H.sbe[0].cur, 0), 0);
	refuse_reads(H.sfk);
	r = precopy_engine_switchover(H.src);
	cr_assert_eq(r, -ETIMEDOUT, "got %d: %s", r, precopy_engine_strerror(H.src));
	assert_msg(precopy_engine_strerror(H.src), "switchover: back-end 50: no end of data within the I/O timeout");
}
