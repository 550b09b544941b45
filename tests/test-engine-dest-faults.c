/* SPDX-License-Identifier: MIT */
/* Faults on the destination side, end to end: a device write that fails,
 * a device that refuses RESUMING, a device whose loaded state fails its
 * check at RESUMING -> STOP, and a stream corrupted on the way. Each time
 * the destination fails with a clear error, sends one RP_ERROR carrying
 * its code (and the device when one is concerned), puts its devices back
 * to RUNNING; a source still in pre-copy reads the RP_ERROR and cancels
 * with the destination's code; one already switched over is cancelled by
 * its VMM. Then a new migration over a fresh link works. */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_dest_faults, .fini = fini);

static void setup2(void)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	h_setup(2, flags, 1);
}

static void assert_dest_running(void)
{
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING, "destination device %d in %s", i,
			     precopy_vfio_state_name(fake_state(H.ddev[i])));
}

/* One source iteration as the VMM runs it. Returns 0 or the source's error. */
static int src_iter(void)
{
	struct precopy_decision d;
	uint64_t bytes;
	int64_t n = precopy_engine_sync(H.src);

	if (n < 0)
		return (int)n;
	bytes = copy_pages();
	n = precopy_engine_pump(H.src, 0);
	if (n < 0)
		return (int)n;
	cr_assert_eq(precopy_engine_account(H.src, bytes, bytes), 0);
	guest_writes(4);
	device_dma();
	atomic_fetch_add(&vnow, 100000);
	return precopy_engine_decide(H.src, &d);
}

/* Iterate until the source fails; the destination is fed between
 * iterations and must fail first with dest_err. */
static void source_sees_dest_error(int dest_err, const char *dest_msg, uint32_t dev_id)
{
	int r = 0, dr = 0;

	for (int k = 0; k < 20 && r == 0; k++) {
		r = src_iter();
		if (r == 0 && !dr)
			dr = dest_drain();
	}
	cr_assert_eq(dr, dest_err, "destination: %d (%s)", dr, precopy_dest_strerror(H.dst));
	cr_assert(strstr(precopy_dest_strerror(H.dst), dest_msg), "destination: \"%s\"", precopy_dest_strerror(H.dst));
	cr_assert_eq(r, dest_err, "the source cancels with the destination's code: %d (%s)", r,
		     precopy_engine_strerror(H.src));
	cr_assert(strstr(precopy_engine_strerror(H.src),
			 dev_id == PRECOPY_STREAM_DEV_NONE ? "return path: destination error: "
							   : "return path: destination error on device "),
		  "source: \"%s\"", precopy_engine_strerror(H.src));
	cr_assert(strstr(precopy_engine_strerror(H.src), dest_msg), "the destination's reason travels: \"%s\"",
		  precopy_engine_strerror(H.src));
	cr_assert_eq(precopy_engine_error(H.src), dest_err);
	assert_all_running();
	assert_dest_running();
}

/* A data fd write on the destination fails with EIO during pre-copy. */
Test(engine_dest_faults, device_write_eio)
{
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_WRITE, .nth = 1, .err = EIO };

	setup2();
	h_engines();
	cr_assert_eq(precopy_fake_fault_add(H.dfk, &f), 0);
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	source_sees_dest_error(-EIO, "device 10: data write: Input/output error", 10);
	precopy_fake_fault_clear(H.dfk);
	h_migrate_ok();
}

/* A destination device refuses STOP -> RESUMING: the destination's start
 * fails and tells the source, which is already pre-copying. */
Test(engine_dest_faults, resuming_transition_fails)
{
	setup2();
	h_engines();
	cr_assert_eq(precopy_fake_vfio_fail_arc(H.ddev[1], VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RESUMING, EIO,
						VFIO_DEVICE_STATE_STOP, 1), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_dest_start(H.dst), -EIO);
	cr_assert(strstr(precopy_dest_strerror(H.dst), "start: device 11: -> RESUMING"), "\"%s\"",
		  precopy_dest_strerror(H.dst));
	assert_dest_running();
	{
		int r = src_iter();
		cr_assert_eq(r, -EIO, "source: %d (%s)", r, precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), "destination error on device 11"), "\"%s\"",
			  precopy_engine_strerror(H.src));
	}
	assert_all_running();
	h_migrate_ok();
}

/* The loaded state fails the device's check at RESUMING -> STOP, after the
 * source switched over: RP_ERROR naming the device; the VMM cancels the
 * source, which resumes with every device RUNNING. */
Test(engine_dest_faults, loaded_state_check_fails)
{
	struct run_result rr;
	int r;

	setup2();
	h_engines();
	cr_assert_eq(precopy_fake_vfio_fail_arc(H.ddev[1], VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP, EIO,
						VFIO_DEVICE_STATE_ERROR, 1), 0);
	r = run_migration(200, &rr);
	cr_assert_eq(r, -EIO, "got %d: %s", r, precopy_dest_strerror(H.dst));
	cr_assert(strstr(precopy_dest_strerror(H.dst), "complete: device 11: RESUMING -> STOP"), "\"%s\"",
		  precopy_dest_strerror(H.dst));
	expect_rp_error(11, EIO);
	assert_dest_running();
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
	h_migrate_ok();
}

/* ---- a stream corrupted on the way -------------------------------------- */

static uint64_t sent, flip_at = UINT64_MAX;

/* The link: forwards the stream to the destination's socket, flipping one
 * byte at flip_at (counted from the first byte of the migration). */
static int flaky_link(void *ctx, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	(void)ctx;
	while (len) {
		uint8_t chunk[4096];
		size_t n = len < sizeof(chunk) ? len : sizeof(chunk);
		ssize_t w;

		memcpy(chunk, p, n);
		if (flip_at >= sent && flip_at < sent + n)
			chunk[flip_at - sent] ^= 0x40;
		for (size_t done = 0; done < n; done += (size_t)w) {
			w = write(H.st[0], chunk + done, n - done);
			if (w < 0)
				return -errno;
		}
		sent += n;
		p += n;
		len -= n;
	}
	return 0;
}

Test(engine_dest_faults, corrupt_record_header)
{
	/* byte 10 of the stream: inside STREAM_HDR's record header (CRC) */
	setup2();
	H.cfg.stream_fd = -1;
	H.cfg.sink = flaky_link;
	h_engines();
	sent = 0;
	flip_at = 10;
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	source_sees_dest_error(-EBADMSG, "stream: offset 8", PRECOPY_STREAM_DEV_NONE);
	flip_at = UINT64_MAX;
	h_migrate_ok();
}

Test(engine_dest_faults, corrupt_device_data)
{
	/* byte 1000: inside the first DEV_DATA payload (payload CRC) */
	setup2();
	H.cfg.stream_fd = -1;
	H.cfg.sink = flaky_link;
	h_engines();
	sent = 0;
	flip_at = 1000;
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	source_sees_dest_error(-EBADMSG, "stream: offset", PRECOPY_STREAM_DEV_NONE);
	flip_at = UINT64_MAX;
	h_migrate_ok();
}
