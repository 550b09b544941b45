/* SPDX-License-Identifier: MIT */
/* Faults at every step of a pump transfer: EIO reading a device (real, from
 * /proc/self/mem past a mapping, and injected through the sys seam), short
 * writes on the stream, a device that never reaches end of data, a stream
 * whose reader went away, back-ends that cut, corrupt or reject their state.
 * Other devices must arrive intact every time. */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "test-pump.h"

#include "../engine/pump_internal.h" /* load_spliced: the splice path ran */

static void ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

static const uint32_t paths[] = { 0, PRECOPY_PUMP_FORCE_FALLBACK };

/* A real fd that yields `good` bytes of pattern, then read() fails with EIO:
 * /proc/self/mem positioned on a mapping followed by a hole. */
struct eio_fd {
	int fd;
	uint8_t *map;
};

static void eio_fd_open(struct eio_fd *e, size_t good, uint64_t seed)
{
	size_t pages = good / 4096;

	e->map = mmap(NULL, (pages + 1) * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(e->map, MAP_FAILED);
	precopy_sim_pattern_fill(seed, 0, e->map, pages * 4096);
	cr_assert_eq(munmap(e->map + pages * 4096, 4096), 0);
	e->fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (e->fd < 0)
		cr_skip_test("/proc/self/mem not readable here: %s", strerror(errno));
	cr_assert_eq(lseek(e->fd, (off_t)(uintptr_t)e->map, SEEK_SET), (off_t)(uintptr_t)e->map);
}

/* Device 2 fails with a real EIO after 8192 bytes; devices 1 and 3 finish.
 * The destination gets exactly the good bytes of device 2, then its ABORT. */
static void real_eio(uint32_t flags)
{
	struct rt_dev d1, d3, d2dst;
	struct eio_fd e;
	struct precopy_pump_dev_status st;
	struct precopy_pump *src, *dst;
	struct load_job lj = { 0 };
	int s[2], sv;
	int64_t r;

	ignore_sigpipe();
	make_stream(false, s);
	src = pump_make(PRECOPY_PUMP_SAVE, s[1], flags, 65536, NULL, NULL, NULL);
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], flags, 65536, NULL, NULL, NULL);
	rt_dev_open(&d1, src, dst, 1, 200000, 11, 0, 0);
	eio_fd_open(&e, 8192, 22);
	cr_assert_eq(precopy_pump_add_device(src, 2, e.fd, 0), 0);
	rt_dev_open(&d2dst, NULL, dst, 2, 8192, 22, 0, 0);
	rt_dev_open(&d3, src, dst, 3, 300001, 33, 0, 0);
	load_start(&lj, dst);

	r = precopy_pump_drain(src, 0);
	cr_assert_eq(r, -EIO, "%s: drain %lld: %s", path_name(flags), (long long)r, precopy_pump_strerror(src));
	cr_assert(strstr(precopy_pump_strerror(src), "device 2"), "message names the device: %s",
		  precopy_pump_strerror(src));
	cr_assert_eq(precopy_pump_dev_status(src, 2, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -EIO);
	cr_assert_eq(st.bytes, 8192);
	r = load_join(&lj);
	cr_assert_eq(r, -EIO, "destination drain: %s", precopy_pump_strerror(dst));
	cr_assert_eq(precopy_pump_dev_status(dst, 2, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -EIO, "the ABORT frame carries the errno");
	cr_assert_eq(st.bytes, 8192);
	cr_assert_eq(precopy_pump_dev_status(dst, 1, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
	cr_assert_eq(rt_dev_close(&d1, &sv), 0);
	cr_assert_eq(rt_dev_close(&d3, &sv), 0);
	/* the destination got the good bytes of device 2, intact */
	precopy_backend_xfer_finish(d2dst.src_x);
	cr_assert_eq(rt_dev_close(&d2dst, NULL), 0);
	close(e.fd);
	munmap(e.map, 8192);
	precopy_pump_free(src);
	precopy_pump_free(dst);
	close(s[0]);
	close(s[1]);
}

Test(faults, device_read_eio_uring, .timeout = 30) { real_eio(0); }
Test(faults, device_read_eio_fallback, .timeout = 30) { real_eio(PRECOPY_PUMP_FORCE_FALLBACK); }

/* The same through the sys seam's fault injection, mid-chunk, at the
 * fallback path; the failing device's back-end saw its reader vanish. */
Test(faults, device_read_eio_injected_by_sys, .timeout = 30)
{
	struct fault_sys fs;
	struct rt_dev d[3];
	struct precopy_pump_dev_status st;
	struct precopy_pump *src, *dst;
	struct load_job lj = { 0 };
	uint64_t src_frames;
	int s[2], sv;
	int64_t r;

	ignore_sigpipe();
	fault_sys_init(&fs);
	make_stream(false, s);
	src = pump_make(PRECOPY_PUMP_SAVE, s[1], PRECOPY_PUMP_NO_SPLICE, 65536, &fs.sys, NULL, NULL);
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], 0, 65536, NULL, NULL, NULL);
	for (int i = 0; i < 3; i++)
		rt_dev_open(&d[i], src, dst, (uint32_t)i, 300000, 40 + (uint64_t)i, 0, 0);
	fs.read_fd = d[1].src_fd;
	fs.read_fail_after = 100000;
	fs.read_err = -EIO;
	load_start(&lj, dst);
	r = precopy_pump_drain(src, 0);
	cr_assert_eq(r, -EIO, "%s", precopy_pump_strerror(src));
	cr_assert(strstr(precopy_pump_strerror(src), "device 1"), "%s", precopy_pump_strerror(src));
	cr_assert_eq(precopy_pump_dev_status(src, 1, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.bytes, 100000, "the source sent every byte it read before the EIO");
	src_frames = st.frames;
	cr_assert_eq(load_join(&lj), -EIO);
	/* pump.h "Counters": the ABORT takes effect after the earlier payload
	 * is written, so the destination wrote exactly what the source sent */
	cr_assert_eq(precopy_pump_dev_status(dst, 1, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -EIO);
	cr_assert_eq(st.bytes, 100000, "destination wrote %llu", (unsigned long long)st.bytes);
	cr_assert_eq(st.frames, src_frames, "data frames + ABORT on both sides");
	for (uint32_t i = 0; i < 3; i += 2) {
		cr_assert_eq(precopy_pump_dev_status(dst, i, &st), 0);
		cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(st.bytes, 300000, "device %u: %llu", i, (unsigned long long)st.bytes);
	}
	cr_assert_eq(rt_dev_close(&d[0], &sv), 0);
	cr_assert_eq(sv, 0);
	cr_assert_eq(rt_dev_close(&d[2], &sv), 0);
	cr_assert_eq(rt_dev_close(&d[1], &sv), -EIO, "the destination has 100000 of 300000 bytes");
	cr_assert_eq(sv, -EPIPE, "the source back-end's reader closed");
	precopy_pump_free(src);
	precopy_pump_free(dst);
	close(s[0]);
	close(s[1]);
}

/* An ABORT frame parsed while the device's earlier payload is still queued
 * or being written: it takes effect only after that payload is written
 * (pump.h, "Counters"). The stream is written by hand before the pump runs:
 * 4 data frames of 8 KiB for device 5, then ABORT(EIO). The device fd is a
 * 4 KiB pipe whose reader waits until the pump has consumed the whole
 * stream (io_uring) before it reads, so the ABORT arrives with writes
 * still pending. */
struct slow_reader {
	int dev_rd, stream_rd;
	uint64_t got;
	size_t bad; /* first mismatching pattern offset + 1, or 0 */
	pthread_t t;
};

static void *slow_reader_main(void *arg)
{
	struct slow_reader *r = arg;
	uint8_t buf[8192];
	ssize_t n;

	/* wait (bounded) until the stream is consumed; the fallback path
	 * writes synchronously, so there it never is before we read */
	for (int k = 0; k < 200; k++) {
		int q = 0;

		if (ioctl(r->stream_rd, FIONREAD, &q) == 0 && q == 0)
			break;
		usleep(1000);
	}
	usleep(20000);
	while ((n = read(r->dev_rd, buf, sizeof(buf))) > 0) {
		size_t ok = precopy_sim_pattern_check(55, r->got, buf, (size_t)n);

		if (ok != (size_t)n && !r->bad)
			r->bad = r->got + ok + 1;
		r->got += (uint64_t)n;
	}
	return NULL;
}

static void abort_behind_queued_writes(uint32_t flags, uint32_t dev_flags)
{
	enum { FR = 4, LEN = 8192 };
	uint8_t buf[PRECOPY_FRAME_HDR_SIZE + LEN];
	struct precopy_pump_dev_status st;
	struct slow_reader rd = { 0 };
	struct precopy_pump *dst;
	int s[2], dp[2];
	int64_t r;

	make_stream(false, s);
	cr_assert_eq(pipe2(dp, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(dp[1], F_SETPIPE_SZ, 4096), 4096);
	for (int i = 0; i < FR; i++) {
		struct precopy_frame_hdr h = { .dev_id = 5, .len = LEN };

		cr_assert_eq(precopy_frame_encode(&h, buf), 0);
		precopy_sim_pattern_fill(55, (uint64_t)i * LEN, buf + PRECOPY_FRAME_HDR_SIZE, LEN);
		cr_assert_eq(write(s[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	{
		struct precopy_frame_hdr h = { .dev_id = 5, .flags = PRECOPY_FRAME_ABORT,
					       .len = PRECOPY_FRAME_ABORT_LEN };

		cr_assert_eq(precopy_frame_encode(&h, buf), 0);
		buf[16] = EIO;
		buf[17] = buf[18] = buf[19] = 0;
		cr_assert_eq(write(s[1], buf, PRECOPY_FRAME_HDR_SIZE + 4), PRECOPY_FRAME_HDR_SIZE + 4);
	}
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], flags, 4096, NULL, NULL, NULL);
	cr_assert_eq(precopy_pump_add_device(dst, 5, dp[1], dev_flags), 0);
	rd.dev_rd = dp[0];
	rd.stream_rd = s[0];
	cr_assert_eq(pthread_create(&rd.t, NULL, slow_reader_main, &rd), 0);
	r = precopy_pump_drain(dst, 0);
	cr_assert_eq(r, -EIO, "%s: drain %lld: %s", path_name(flags), (long long)r, precopy_pump_strerror(dst));
	cr_assert_eq(precopy_pump_dev_status(dst, 5, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -EIO);
	cr_assert_eq(st.bytes, FR * LEN, "%s: every byte before the ABORT is written (%llu)",
		     path_name(flags), (unsigned long long)st.bytes);
	cr_assert_eq(st.frames, FR + 1, "4 data frames and the ABORT");
	if (dev_flags & PRECOPY_PUMP_DEV_PIPE)
		cr_assert_eq(dst->load_spliced, FR * LEN, "%s: spliced %llu", path_name(flags),
			     (unsigned long long)dst->load_spliced);
	close(dp[1]);
	pthread_join(rd.t, NULL);
	cr_assert_eq(rd.got, FR * LEN, "the device received %llu bytes", (unsigned long long)rd.got);
	cr_assert_eq(rd.bad, 0, "pattern mismatch at %zu", rd.bad - 1);
	precopy_pump_free(dst);
	close(dp[0]);
	close(s[0]);
	close(s[1]);
}

Test(faults, abort_behind_queued_writes_uring, .timeout = 30) { abort_behind_queued_writes(0, 0); }
Test(faults, abort_behind_queued_writes_fallback, .timeout = 30)
{
	abort_behind_queued_writes(PRECOPY_PUMP_FORCE_FALLBACK, 0);
}
/* the same device pipe taking its payload by splice (test-pump-load-splice.c) */
Test(faults, abort_behind_spliced_payload_uring, .timeout = 30)
{
	abort_behind_queued_writes(0, PRECOPY_PUMP_DEV_PIPE);
}
Test(faults, abort_behind_spliced_payload_fallback, .timeout = 30)
{
	abort_behind_queued_writes(PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
}

/* Short writes on the stream: 7 bytes per write through the seam (fallback),
 * and a 4 KiB non-blocking stream pipe (io_uring: -EAGAIN and partial
 * writes from the kernel). */
Test(faults, short_stream_writes, .timeout = 60)
{
	for (int splice = 0; splice < 2; splice++) {
		struct fault_sys fs;

		fault_sys_init(&fs);
		fs.max_write = 7;
		/* the stream fd is not known before roundtrip makes it: cut every
		 * write on any fd > 2 that is not a device (devices are read) */
		fs.write_fd = -2;
		{
			struct rt o = { .ndev = 4, .size = 100000, .skew = 3, .chunk = 4096,
					.flags = splice ? 0 : PRECOPY_PUMP_NO_SPLICE, .src_sys = &fs.sys };
			int probe[2];

			/* roundtrip opens the stream pipe first: predict its write end */
			cr_assert_eq(pipe2(probe, O_CLOEXEC), 0);
			close(probe[0]);
			close(probe[1]);
			fs.write_fd = probe[1];
			roundtrip(&o);
			cr_assert_gt(fs.short_writes, 100, "writes were cut (%llu)",
				     (unsigned long long)fs.short_writes);
		}
	}
	for (size_t p = 0; p < 2; p++)
		roundtrip(&(struct rt){ .ndev = 4, .size = 1u << 20, .skew = 5, .chunk = 65536,
					.flags = paths[p], .small_nonblock_stream = true });
}

/* A device that never reaches end of data: -ETIMEDOUT at the deadline on
 * the caller's (virtual) clock, device named; the other device completes. */
static void never_eod(uint32_t flags)
{
	struct vclock vc = { .now = 0, .step = 1000000 }; /* 1 ms per reading */
	struct rt_dev hang, ok;
	struct precopy_pump_dev_status st;
	struct precopy_pump *src, *dst;
	struct load_job lj = { 0 };
	int s[2];
	int64_t r;

	ignore_sigpipe();
	make_stream(false, s);
	src = pump_make(PRECOPY_PUMP_SAVE, s[1], flags, 65536, NULL, vclock_ns, &vc);
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], flags, 65536, NULL, NULL, NULL);
	rt_dev_open(&ok, src, dst, 6, 100000, 60, 0, 0);
	rt_dev_open(&hang, src, dst, 7, 100000, 70, PRECOPY_FAKE_BE_HANG, 50000);
	load_start(&lj, dst);
	r = precopy_pump_drain(src, 50000000); /* 50 ms virtual */
	cr_assert_eq(r, -ETIMEDOUT, "%s: %lld %s", path_name(flags), (long long)r, precopy_pump_strerror(src));
	cr_assert(strstr(precopy_pump_strerror(src), "device 7") &&
			  strstr(precopy_pump_strerror(src), "deadline"),
		  "clear message: %s", precopy_pump_strerror(src));
	cr_assert_eq(precopy_pump_dev_status(src, 7, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -ETIMEDOUT);
	cr_assert_eq(st.bytes, 50000);
	cr_assert_eq(precopy_pump_dev_status(src, 6, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
	cr_assert_eq(load_join(&lj), -ETIMEDOUT, "%s", precopy_pump_strerror(dst));
	cr_assert_eq(precopy_pump_dev_status(dst, 7, &st), 0);
	cr_assert_eq(st.err, -ETIMEDOUT);
	cr_assert_eq(rt_dev_close(&ok, NULL), 0);
	precopy_fake_backend_release(hang.src_be);
	cr_assert_eq(rt_dev_close(&hang, NULL), -EIO, "destination holds 50000 of 100000 bytes");
	precopy_pump_free(src);
	precopy_pump_free(dst);
	close(s[0]);
	close(s[1]);
}

Test(faults, never_end_of_data_times_out_uring, .timeout = 30) { never_eod(0); }
Test(faults, never_end_of_data_times_out_fallback, .timeout = 30) { never_eod(PRECOPY_PUMP_FORCE_FALLBACK); }

/* The stream's reader is gone: -EPIPE, sticky for later calls. */
Test(faults, stream_reader_gone, .timeout = 30)
{
	ignore_sigpipe();
	for (size_t p = 0; p < 2; p++) {
		struct rt_dev d;
		struct precopy_pump *src;
		int s[2];

		make_stream(false, s);
		close(s[0]);
		src = pump_make(PRECOPY_PUMP_SAVE, s[1], paths[p], 4096, NULL, NULL, NULL);
		rt_dev_open(&d, src, NULL, 1, 100000, 1, 0, 0);
		cr_assert_eq(precopy_pump_drain(src, 0), -EPIPE, "%s", path_name(paths[p]));
		cr_assert(strstr(precopy_pump_strerror(src), "stream"));
		cr_assert_eq(precopy_pump_run(src, NULL), -EPIPE, "sticky");
		cr_assert_eq(precopy_pump_add_device(src, 2, 0, 0), -EPIPE);
		precopy_backend_xfer_finish(d.dst_x);
		rt_dev_close(&d, NULL);
		precopy_pump_free(src);
		close(s[1]);
	}
}

/* The same with SIGPIPE at its default disposition and unblocked, in a
 * forked child, over a pipe and a socketpair, on both paths: the pump
 * raises no SIGPIPE in its host (pump.h), the child lives and sees
 * -EPIPE, and no SIGPIPE is left pending. */
Test(faults, stream_reader_gone_sigpipe_default, .timeout = 30)
{
	for (size_t p = 0; p < 2; p++) {
		for (int sock = 0; sock <= 1; sock++) {
			struct rt_dev d;
			struct precopy_pump *src;
			int s[2], st = 0;
			pid_t pid;

			make_stream(sock, s);
			close(s[0]);
			src = pump_make(PRECOPY_PUMP_SAVE, s[1], paths[p], 4096, NULL, NULL, NULL);
			rt_dev_open(&d, src, NULL, 1, 100000, 1, 0, 0);
			pid = fork();
			cr_assert_geq(pid, 0);
			if (pid == 0) {
				sigset_t set, pending;
				int64_t r;

				signal(SIGPIPE, SIG_DFL);
				sigemptyset(&set);
				sigaddset(&set, SIGPIPE);
				sigprocmask(SIG_UNBLOCK, &set, NULL);
				r = precopy_pump_drain(src, 0);
				sigemptyset(&pending);
				sigpending(&pending);
				_exit(r != -EPIPE ? 1 : sigismember(&pending, SIGPIPE) == 1 ? 2 : 0);
			}
			cr_assert_eq(waitpid(pid, &st, 0), pid);
			cr_assert(!WIFSIGNALED(st), "%s, %s: the host died of signal %d", path_name(paths[p]),
				  sock ? "socketpair" : "pipe", WTERMSIG(st));
			cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s, %s: %s", path_name(paths[p]),
				  sock ? "socketpair" : "pipe",
				  WEXITSTATUS(st) == 1 ? "not -EPIPE" : "a SIGPIPE left pending");
			ignore_sigpipe(); /* the parent's own teardown */
			precopy_backend_xfer_finish(d.dst_x);
			rt_dev_close(&d, NULL);
			precopy_pump_free(src);
			close(s[1]);
		}
	}
}

/* Back-end faults the pump cannot see: state cut short, corrupted. */
Test(faults, backend_short_and_corrupt_state, .timeout = 30)
{
	for (size_t p = 0; p < 2; p++) {
		struct rt_dev a, b, c;
		struct precopy_pump *src, *dst;
		struct load_job lj = { 0 };
		int s[2], sv;

		make_stream(false, s);
		src = pump_make(PRECOPY_PUMP_SAVE, s[1], paths[p], 65536, NULL, NULL, NULL);
		dst = pump_make(PRECOPY_PUMP_LOAD, s[0], paths[p], 65536, NULL, NULL, NULL);
		rt_dev_open(&a, src, dst, 1, 500000, 1, PRECOPY_FAKE_BE_SHORT, 123457);
		rt_dev_open(&b, src, dst, 2, 500000, 2, PRECOPY_FAKE_BE_CORRUPT, 400001);
		rt_dev_open(&c, src, dst, 3, 500000, 3, PRECOPY_FAKE_BE_CHECK_FAIL, 0);
		load_start(&lj, dst);
		cr_assert_geq(precopy_pump_drain(src, 0), 0, "the pump moved what it was given");
		cr_assert_geq(load_join(&lj), 0);
		cr_assert_eq(rt_dev_close(&a, &sv), -EIO, "short state detected at the destination");
		cr_assert_eq(sv, -EIO, "and reported by the source back-end");
		cr_assert_eq(rt_dev_close(&b, &sv), -EBADMSG, "corruption detected");
		cr_assert_eq(sv, 0);
		rt_dev_close(&c, &sv);
		cr_assert_eq(sv, -EIO, "check_state failure surfaces at finish");
		precopy_pump_free(src);
		precopy_pump_free(dst);
		close(s[0]);
		close(s[1]);
	}
}

/* LOAD: a destination device that stops taking bytes (a back-end that no
 * longer reads its pipe) while the stream still holds its frame. The drain
 * ends at its deadline with the device failed (-ETIMEDOUT), on both paths,
 * rather than waiting on the device for ever. */
static void stalled_dest_device(uint32_t flags, uint32_t dev_flags)
{
	static uint8_t frame[PRECOPY_FRAME_HDR_SIZE + (512u << 10)];
	struct precopy_frame_hdr h = { .dev_id = 9, .flags = 0, .len = 512u << 10 };
	struct precopy_pump_dev_status st;
	struct precopy_pump *dst;
	int s[2], d[2];
	uint64_t t0;
	int64_t r;

	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, 1u << 20), (int)sizeof(frame));
	precopy_frame_encode(&h, frame);
	memset(frame + PRECOPY_FRAME_HDR_SIZE, 0x3c, 512u << 10);
	cr_assert_eq(write(s[1], frame, sizeof(frame)), (ssize_t)sizeof(frame));
	cr_assert_eq(pipe2(d, O_CLOEXEC | O_NONBLOCK), 0); /* nobody reads d[0] */
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], flags, 65536, NULL, NULL, NULL);
	cr_assert_eq(precopy_pump_add_device(dst, 9, d[1], dev_flags), 0);
	t0 = mono_ns(NULL);
	r = precopy_pump_drain(dst, t0 + 200000000ull);
	cr_assert_eq(r, -ETIMEDOUT, "%s: drain: %lld (%s)", path_name(flags), (long long)r,
		     precopy_pump_strerror(dst));
	cr_assert_lt(mono_ns(NULL) - t0, 10000000000ull);
	cr_assert_eq(precopy_pump_dev_status(dst, 9, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -ETIMEDOUT);
	if (dev_flags & PRECOPY_PUMP_DEV_PIPE)
		cr_assert_gt(dst->load_spliced, 0, "%s: nothing spliced", path_name(flags));
	precopy_pump_free(dst);
	close(d[0]);
	close(d[1]);
	close(s[0]);
	close(s[1]);
}

Test(faults, stalled_destination_device_times_out_uring, .timeout = 30) { stalled_dest_device(0, 0); }
Test(faults, stalled_destination_device_times_out_fallback, .timeout = 30)
{
	stalled_dest_device(PRECOPY_PUMP_FORCE_FALLBACK, 0);
}
Test(faults, stalled_spliced_destination_device_times_out_uring, .timeout = 30)
{
	stalled_dest_device(0, PRECOPY_PUMP_DEV_PIPE);
}
Test(faults, stalled_spliced_destination_device_times_out_fallback, .timeout = 30)
{
	stalled_dest_device(PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
}
