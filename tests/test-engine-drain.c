/* SPDX-License-Identifier: MIT */
/* The switchover drain over state channels: 1-8 devices with stop-copy
 * states from 0 bytes to 256 MiB arrive byte-equal on the destination;
 * devices that deliver their state at a limited rate are drained
 * concurrently (the drain takes about the slowest device's time, on the
 * virtual clock) where the sys table has the asynchronous queue, and one
 * after another through a version 3 table without it; data fds that only
 * block in read() are drained alongside pollable ones. */
#include <dirent.h>
#include <stdio.h>

#define MAXDEV 8
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_drain, .fini = fini);

/* A version 3 copy of the source's table: no asynchronous queue. */
static struct precopy_sys_ops v3_ops;
static struct precopy_sys v3_sys;

/* The source devices' counters as the last migrate() left them. */
static struct precopy_fake_vfio_stats last_src[MAXDEV];

static uint64_t migrate(int ndev, const uint64_t *sizes, uint64_t rate, int serial)
{
	uint64_t flags[MAXDEV];
	struct run_result rr;
	struct precopy_engine_stats st;
	int r;

	for (int i = 0; i < ndev; i++) {
		flags[i] = ALLF;
		h_stop_copy[i] = sizes[i];
		h_read_rate[i] = rate;
	}
	h_stop_copy_set = 1;
	h_setup(ndev, flags, 1);
	h_stop_copy_set = 0;
	memset(h_read_rate, 0, sizeof(h_read_rate));
	H.cfg.policy.downtime_limit_ns = 60ull * 1000000000u; /* switch at once */
	if (serial) {
		v3_ops = *H.ssys->ops;
		v3_ops.version = 3;
		v3_sys = (struct precopy_sys){ &v3_ops, H.ssys->ctx };
		H.cfg.sys = &v3_sys;
	}
	h_engines();
	H.threaded = 1;
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "%d devices: %d: %s / %s", ndev, r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	cr_assert(ram_equal(), "destination RAM differs");
	for (int i = 0; i < ndev; i++) {
		struct precopy_fake_vfio_stats s, d;

		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		last_src[i] = s;
		cr_assert_eq(d.resume_ok, 1, "device %d did not load a valid state", i);
		cr_assert_eq(d.bytes_in, s.bytes_out, "device %d: %llu bytes loaded, %llu saved", i,
			     (unsigned long long)d.bytes_in, (unsigned long long)s.bytes_out);
		cr_assert_geq(s.bytes_out, sizes[i], "device %d: %llu bytes saved, stop-copy %llu", i,
			      (unsigned long long)s.bytes_out, (unsigned long long)sizes[i]);
		{
			struct precopy_dest_dev_info di;

			cr_assert_eq(precopy_dest_device_info(H.dst, (uint32_t)i, &di), 0);
			cr_assert_eq(di.id, 10 + (uint32_t)i);
			cr_assert_eq(di.state, VFIO_DEVICE_STATE_RUNNING);
			cr_assert(di.setup && di.ended && di.initial_loaded);
			cr_assert_eq(di.bytes, s.bytes_out);
			cr_assert_eq(di.bytes_queued, 0);
		}
	}
	{
		struct precopy_dest_stats ds;
		struct precopy_dest_dev_info di;

		cr_assert_eq(precopy_dest_stats(H.dst, &ds), 0);
		cr_assert_eq(ds.phase, PRECOPY_DEST_DONE);
		cr_assert_eq(ds.err, 0);
		cr_assert_eq(ds.acked, 1);
		cr_assert_eq(ds.concurrent_loads, 1, "the fake kernel has the asynchronous queue");
		cr_assert_eq(precopy_dest_device_info(H.dst, (uint32_t)ndev, &di), -ENOENT);
		cr_assert_eq(precopy_dest_device_info(H.dst, 0, NULL), -EINVAL);
	}
	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	h_teardown();
	return st.downtime.device_drain_ns;
}

Test(engine_drain, sizes_and_counts_byte_equal, .timeout = 120)
{
	static const uint64_t mix[] = { 0, 1, 65535, 65536, 1u << 20, 3u << 20, 65537, 7 };
	uint64_t sizes[MAXDEV];

	for (int n = 1; n <= MAXDEV; n = n < 4 ? n + 1 : n * 2) {
		for (int i = 0; i < n; i++)
			sizes[i] = mix[(i + n) % 8];
		migrate(n, sizes, 0, 0);
		migrate(n, sizes, 0, 1);
	}
	/* one large state beside small ones */
	sizes[0] = 256u << 20;
	sizes[1] = 0;
	sizes[2] = 4096;
	cr_log_info("3 devices, 256 MiB + 0 + 4 KiB: drain %.1f ms (virtual)", migrate(3, sizes, 0, 0) / 1e6);
}

Test(engine_drain, concurrent_takes_the_slowest_not_the_sum, .timeout = 60)
{
	const uint64_t rate = 100u << 20; /* 100 MiB/s each */
	uint64_t sizes[4] = { 8u << 20, 8u << 20, 8u << 20, 8u << 20 };
	uint64_t one = (8ull << 20) * 1000000000u / rate; /* 80 ms */
	uint64_t conc = migrate(4, sizes, rate, 0), ser = migrate(4, sizes, rate, 1);

	cr_log_info("drain of 4 x 8 MiB at 100 MiB/s: concurrent %.1f ms, serial %.1f ms, one device %.1f ms",
		    conc / 1e6, ser / 1e6, one / 1e6);
	cr_assert_geq(conc, one, "faster than one device can deliver");
	cr_assert_lt(conc, one + one / 10, "concurrent drain %llu ns, one device %llu ns", (unsigned long long)conc,
		     (unsigned long long)one);
	cr_assert_geq(ser, 4 * one, "serial drain %llu ns below the sum", (unsigned long long)ser);
}

/* Data fds that only block in read() (no poll method: the fake's
 * no_poll) beside pollable ones, all delivering at 100 MiB/s: the
 * concurrent drain submits every device's reads to the asynchronous queue
 * (none is read with a plain call, none waits on a poll) and takes about
 * the slowest device's time; the serial fallback reads each with plain
 * calls and takes the sum. Byte-equal on the destination either way. */
Test(engine_drain, blocking_only_fds_beside_pollable_ones, .timeout = 60)
{
	const uint64_t rate = 100u << 20;
	/* the slowest device is a blocking-only one: 12 MiB, 120 ms */
	uint64_t sizes[4] = { 8u << 20, 12u << 20, 4u << 20, 8u << 20 };
	uint64_t slowest = (12ull << 20) * 1000000000u / rate, sum = (32ull << 20) * 1000000000u / rate;
	uint64_t conc, ser;

	for (int pass = 0; pass < 2; pass++) {
		int serial = pass == 1;
		uint64_t t;

		h_no_poll[1] = h_no_poll[3] = 1;
		t = migrate(4, sizes, rate, serial);
		memset(h_no_poll, 0, sizeof(h_no_poll));
		for (int i = 0; i < 4; i++) {
			const struct precopy_fake_vfio_stats *s = &last_src[i];

			cr_assert_gt(s->sc_plain_reads + s->sc_queued_reads, 0, "device %d: no read", i);
			if (serial)
				cr_assert_eq(s->sc_queued_reads, 0, "serial: device %d read on a queue", i);
			else
				cr_assert_eq(s->sc_plain_reads, 0, "device %d (%s): %llu plain reads in the drain", i,
					     i & 1 ? "blocking only" : "pollable",
					     (unsigned long long)s->sc_plain_reads);
		}
		if (serial)
			ser = t;
		else
			conc = t;
	}
	cr_log_info("2 blocking-only + 2 pollable fds (8+12+4+8 MiB at 100 MiB/s): concurrent %.1f ms, serial "
		    "%.1f ms, slowest %.1f ms",
		    conc / 1e6, ser / 1e6, slowest / 1e6);
	cr_assert_geq(conc, slowest, "faster than the slowest device can deliver");
	cr_assert_lt(conc, slowest + slowest / 10, "concurrent drain %llu ns, slowest device %llu ns",
		     (unsigned long long)conc, (unsigned long long)slowest);
	cr_assert_geq(ser, sum, "serial drain %llu ns below the sum %llu", (unsigned long long)ser,
		      (unsigned long long)sum);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	cr_assert(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* One of four devices fails halfway through its final state: the
 * migration is cancelled with the device named, every source device is
 * back in RUNNING, no fd is left open, and the next migration works. */
Test(engine_drain, one_device_fails_mid_drain, .timeout = 60)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF };
	struct run_result rr;
	int r, before;

	for (int serial = 0; serial < 2; serial++) {
		for (int i = 0; i < 4; i++)
			h_stop_copy[i] = 4u << 20;
		h_stop_copy_set = 1;
		h_setup(4, flags, 1);
		h_stop_copy_set = 0;
		H.cfg.policy.downtime_limit_ns = 60ull * 1000000000u;
		if (serial) {
			v3_ops = *H.ssys->ops;
			v3_ops.version = 3;
			v3_sys = (struct precopy_sys){ &v3_ops, H.ssys->ctx };
			H.cfg.sys = &v3_sys;
		}
		before = open_fds();
		h_engines();
		H.threaded = 1;
		cr_assert_eq(precopy_fake_vfio_fail_read(H.sdev[2], EIO, 1u << 20), 0);
		r = run_migration(200, &rr);
		cr_assert_eq(r, -EIO, "%s: got %d: %s", serial ? "serial" : "concurrent", r,
			     precopy_engine_strerror(H.src));
		cr_assert(strstr(precopy_engine_strerror(H.src), "device 12"), "message: %s",
			  precopy_engine_strerror(H.src));
		for (int i = 0; i < 4; i++) {
			struct precopy_fake_vfio_stats s;

			precopy_fake_vfio_get_stats(H.sdev[i], &s);
			cr_assert_eq(s.state, VFIO_DEVICE_STATE_RUNNING, "device %d in %s", i,
				     precopy_vfio_state_name(s.state));
			cr_assert_eq(s.logging, 0, "device %d still logging", i);
		}
		/* the destination's side is reset by the test; the source's fds are
		 * the engine's business: none of its sessions may stay open */
		precopy_engine_free(H.src);
		H.src = NULL;
		precopy_dest_free(H.dst);
		H.dst = NULL;
		cr_assert_eq(open_fds(), before, "%s: fds %d before, %d after", serial ? "serial" : "concurrent", before,
			     open_fds());
		h_teardown();
	}
}

/* The destination writes several devices' state at once: 4 devices that
 * take 4 MiB each at 100 MiB/s (40 ms apiece). On the shared virtual
 * clock the whole migration lasts about 40 ms longer than without the
 * write rate when the destination loads concurrently, and 160 ms longer
 * when it writes one device after another (a version 3 table). */
static uint64_t dest_run(uint64_t wrate, int serial)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF, ALLF, ALLF }, t0;
	struct run_result rr;
	int r;

	for (int i = 0; i < 4; i++) {
		h_stop_copy[i] = 4u << 20;
		h_write_rate[i] = wrate;
	}
	h_stop_copy_set = h_dest_virtual = 1;
	h_setup(4, flags, 1);
	h_stop_copy_set = h_dest_virtual = 0;
	memset(h_write_rate, 0, sizeof(h_write_rate));
	H.cfg.policy.downtime_limit_ns = 60ull * 1000000000u;
	if (serial) {
		v3_ops = *H.dsys->ops;
		v3_ops.version = 3;
		v3_sys = (struct precopy_sys){ &v3_ops, H.dsys->ctx };
		H.dcfgx.sys = &v3_sys;
	}
	h_engines();
	H.threaded = 1;
	t0 = atomic_load(&vnow);
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "%d: %s / %s", r, precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	cr_assert(ram_equal());
	for (int i = 0; i < 4; i++) {
		struct precopy_fake_vfio_stats s, d;

		precopy_fake_vfio_get_stats(H.sdev[i], &s);
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_eq(d.resume_ok, 1, "device %d did not load a valid state", i);
		cr_assert_eq(d.bytes_in, s.bytes_out);
	}
	t0 = atomic_load(&vnow) - t0;
	h_teardown();
	return t0;
}

Test(engine_drain, destination_loads_concurrently, .timeout = 60)
{
	const uint64_t rate = 100u << 20, one = (4ull << 20) * 1000000000u / rate; /* 40 ms */
	uint64_t base = dest_run(0, 0), conc = dest_run(rate, 0), ser = dest_run(rate, 1);

	cr_log_info("4 x 4 MiB loaded at 100 MiB/s: +%.1f ms concurrently, +%.1f ms one after another",
		    (double)(conc - base) / 1e6, (double)(ser - base) / 1e6);
	cr_assert_lt(conc - base, 2 * one, "concurrent loads took %llu ns more", (unsigned long long)(conc - base));
	cr_assert_geq(ser - base, 3 * one, "serial loads took only %llu ns more", (unsigned long long)(ser - base));
}
