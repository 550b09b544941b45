/* SPDX-License-Identifier: MIT */
/* Round trips through the pump: 1, 4 and 16 devices, 0 bytes to 256 MiB,
 * io_uring and fallback paths, pipe and socket streams, splice on and off,
 * budgeted interleaving with other records. Content is checked byte for
 * byte by the destination fake back-ends (seeded patterns). */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "test-pump.h"

static const uint32_t paths[] = { 0, PRECOPY_PUMP_FORCE_FALLBACK };

Test(pump, roundtrip_sizes_1_4_16_devices, .timeout = 60)
{
	static const uint64_t sizes[] = { 0, 1, 4095, 4097, 65536, (1u << 20) + 3 };
	static const int ndevs[] = { 1, 4, 16 };

	for (size_t p = 0; p < 2; p++)
		for (size_t n = 0; n < 3; n++)
			for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
				roundtrip(&(struct rt){ .ndev = ndevs[n], .size = sizes[z], .skew = 17,
							.flags = paths[p], .chunk = 65536 });
}

Test(pump, roundtrip_socket_stream_and_no_splice, .timeout = 60)
{
	for (size_t p = 0; p < 2; p++) {
		roundtrip(&(struct rt){ .ndev = 4, .size = 3u << 20, .skew = 4093, .flags = paths[p],
					.chunk = 1u << 20, .sock = true });
		roundtrip(&(struct rt){ .ndev = 4, .size = 3u << 20, .skew = 4093,
					.flags = paths[p] | PRECOPY_PUMP_NO_SPLICE, .chunk = 65536 });
		roundtrip(&(struct rt){ .ndev = 4, .size = 1u << 20, .skew = 1,
					.flags = paths[p] | PRECOPY_PUMP_NO_FIXED, .chunk = 4096 });
	}
}

Test(pump, roundtrip_256MiB_one_device_uring, .timeout = 120)
{
	roundtrip(&(struct rt){ .ndev = 1, .size = 256u << 20, .chunk = 1u << 20 });
}

Test(pump, roundtrip_256MiB_16_devices_fallback, .timeout = 120)
{
	roundtrip(&(struct rt){ .ndev = 16, .size = 16u << 20, .flags = PRECOPY_PUMP_FORCE_FALLBACK,
				.chunk = 1u << 20 });
}

Test(pump, budget_slices, .timeout = 60)
{
	for (size_t p = 0; p < 2; p++) {
		roundtrip(&(struct rt){ .ndev = 4, .size = 1u << 20, .skew = 999, .flags = paths[p],
					.chunk = 65536, .budget = 100000 });
		roundtrip(&(struct rt){ .ndev = 3, .size = 20000, .skew = 7, .flags = paths[p],
					.chunk = 4096, .budget = 1000 });
	}
}

/* The migration thread interleaves its own records (here: frames of a "RAM"
 * pseudo-device written by hand with precopy_frame_encode) between budgeted
 * pump calls; the destination sees both intact. */
static void interleave(uint32_t flags)
{
	enum { RAM_ID = 9999, PAGE = 4096, PAGES = 64 };
	struct rt_dev d[2];
	struct precopy_fake_backend_config rc = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION,
						  .state_size = PAGE * PAGES, .seed = 77 };
	struct precopy_fake_backend *ram_be = precopy_fake_backend_new(&rc, NULL);
	struct precopy_backend_xfer *ram_x = precopy_backend_xfer_new(precopy_fake_backend_ops(), ram_be, NULL, NULL);
	struct load_job lj = { 0 };
	struct precopy_pump *src, *dst;
	uint8_t page[PRECOPY_FRAME_HDR_SIZE + PAGE];
	int s[2], rp[2], ram_fd, sent = 0, calls = 0;
	int64_t r;

	make_stream(false, s);
	src = pump_make(PRECOPY_PUMP_SAVE, s[1], flags, 4096, NULL, NULL, NULL);
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], flags, 4096, NULL, NULL, NULL);
	rt_dev_open(&d[0], src, dst, 1, 300000, 5, 0, 0);
	rt_dev_open(&d[1], src, dst, 2, 12345, 6, 0, 0);
	cr_assert_eq(pipe2(rp, O_CLOEXEC), 0);
	ram_fd = precopy_backend_xfer_start(ram_x, PRECOPY_BACKEND_LOAD, PRECOPY_BACKEND_PHASE_STOPPED, rp);
	cr_assert_geq(ram_fd, 0);
	cr_assert_eq(precopy_pump_add_device(dst, RAM_ID, ram_fd, 0), 0);
	load_start(&lj, dst);

	for (;;) {
		struct precopy_pump_dev_status a, b;

		r = precopy_pump_run(src, &(struct precopy_pump_budget){ .max_bytes = 10000 });
		cr_assert_geq(r, 0);
		cr_assert_leq(r, 10000);
		calls++;
		if (sent < PAGES) {
			struct precopy_frame_hdr h = { .dev_id = RAM_ID, .len = PAGE };

			cr_assert_eq(precopy_frame_encode(&h, page), 0);
			precopy_sim_pattern_fill(77, (uint64_t)sent * PAGE, page + PRECOPY_FRAME_HDR_SIZE, PAGE);
			cr_assert_eq(write(s[1], page, sizeof(page)), (ssize_t)sizeof(page));
			sent++;
		}
		precopy_pump_dev_status(src, 1, &a);
		precopy_pump_dev_status(src, 2, &b);
		if (sent == PAGES && a.state == PRECOPY_PUMP_DEV_EOF && b.state == PRECOPY_PUMP_DEV_EOF)
			break;
	}
	{
		struct precopy_frame_hdr h = { .dev_id = RAM_ID, .flags = PRECOPY_FRAME_EOD };

		cr_assert_eq(precopy_frame_encode(&h, page), 0);
		cr_assert_eq(write(s[1], page, PRECOPY_FRAME_HDR_SIZE), PRECOPY_FRAME_HDR_SIZE);
	}
	r = load_join(&lj);
	cr_assert_geq(r, 0, "%s", precopy_pump_strerror(dst));
	cr_assert_gt(calls, 30, "a 10000-byte budget needs many calls for 312345 bytes");
	cr_assert_eq(rt_dev_close(&d[0], NULL), 0);
	cr_assert_eq(rt_dev_close(&d[1], NULL), 0);
	cr_assert_eq(precopy_backend_xfer_finish(ram_x), 0, "RAM records intact");
	precopy_backend_xfer_free(ram_x);
	precopy_fake_backend_free(ram_be);
	precopy_pump_free(src);
	precopy_pump_free(dst);
	close(s[0]);
	close(s[1]);
}

Test(pump, interleave_with_other_records_uring, .timeout = 60) { interleave(0); }
Test(pump, interleave_with_other_records_fallback, .timeout = 60) { interleave(PRECOPY_PUMP_FORCE_FALLBACK); }

/* A time budget on the caller's clock: a virtual clock that passes the
 * deadline at its second reading stops the call early. */
Test(pump, time_budget_stops_the_call)
{
	for (size_t p = 0; p < 2; p++) {
		struct vclock vc = { .now = 0, .step = 1000 };
		struct rt_dev d;
		int s[2];
		struct precopy_pump *src;
		int64_t r, total = 0;

		make_stream(false, s);
		/* the drain below must not block once the pipe holds exactly a
		 * multiple of its buffer */
		cr_assert_eq(fcntl(s[0], F_SETFL, O_NONBLOCK), 0);
		src = pump_make(PRECOPY_PUMP_SAVE, s[1], paths[p], 4096, NULL, vclock_ns, &vc);
		rt_dev_open(&d, src, NULL, 1, 40000, 3, 0, 0);
		usleep(20000); /* let the back-end fill its pipe */
		r = precopy_pump_run(src, &(struct precopy_pump_budget){ .deadline_ns = 1 });
		cr_assert_eq(r, 0, "deadline already passed: nothing moves (%s)", path_name(paths[p]));
		/* the device thread writes in real time: wait for it (up to ~10 s
		 * of calls that move nothing), not for a count of calls */
		for (int idle = 0; idle < 10000 && total < 40000;) {
			uint8_t sink[65536];

			r = precopy_pump_run(src, &(struct precopy_pump_budget){ .deadline_ns = vc.now + 2500 });
			cr_assert_geq(r, 0);
			total += r;
			while (read(s[0], sink, sizeof(sink)) == (ssize_t)sizeof(sink))
				;
			if (r == 0) {
				idle++;
				usleep(1000);
			} else {
				idle = 0;
			}
		}
		cr_assert_eq(total, 40000);
		rt_dev_close(&d, NULL);
		precopy_pump_free(src);
		close(s[0]);
		close(s[1]);
	}
}

Test(pump, path_query)
{
	struct fault_sys fs;
	struct precopy_pump *p;
	int why = 1;

	fault_sys_init(&fs);
	p = pump_make(PRECOPY_PUMP_SAVE, 1, PRECOPY_PUMP_FORCE_FALLBACK, 0, NULL, NULL, NULL);
	cr_assert_eq(precopy_pump_path(p, &why), PRECOPY_PUMP_PATH_FALLBACK);
	cr_assert_eq(why, 0);
	precopy_pump_free(p);
	p = pump_make(PRECOPY_PUMP_SAVE, 1, 0, 0, &fs.sys, NULL, NULL);
	cr_assert_eq(precopy_pump_path(p, &why), PRECOPY_PUMP_PATH_FALLBACK);
	cr_assert_eq(why, -EOPNOTSUPP, "a non-real sys seam cannot go through io_uring");
	precopy_pump_free(p);
	p = pump_make(PRECOPY_PUMP_SAVE, 1, 0, 0, NULL, NULL, NULL);
	if (precopy_pump_path(p, &why) == PRECOPY_PUMP_PATH_URING)
		cr_assert_eq(why, 0);
	else
		cr_assert_lt(why, 0, "fallback must say why");
	precopy_pump_free(p);
}

/* Makes io_uring_setup fail with err in this test's process (Criterion runs
 * each test in a process of its own): EPERM is what a kernel with
 * kernel.io_uring_disabled=2 answers, ENOSYS one without io_uring. A seccomp
 * filter rather than the sysctl, which would change the whole machine. */
static void refuse_io_uring_setup(int err)
{
#if defined(__x86_64__)
	const uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
	const uint32_t arch = AUDIT_ARCH_AARCH64;
#else
	const uint32_t arch = 0;

	cr_skip_test("this test knows the seccomp architecture of x86-64 and arm64 only");
#endif
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	struct io_uring_params params = { 0 };

	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "no_new_privs: %s", strerror(errno));
	cr_assert_eq(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog), 0, "seccomp: %s",
		     strerror(errno));
	errno = 0;
	cr_assert_eq(syscall(__NR_io_uring_setup, 8, &params), -1, "the filter must refuse");
	cr_assert_eq(errno, err);
}

/* The real io_uring_setup failing (not a forced fallback): the pump says
 * which path it took and why, and moves every byte on the sys path. */
static void setup_refused(int err)
{
	struct precopy_pump *p;
	int why = 0;

	refuse_io_uring_setup(err);
	p = pump_make(PRECOPY_PUMP_SAVE, 1, 0, 0, NULL, NULL, NULL);
	cr_assert_eq(precopy_pump_path(p, &why), PRECOPY_PUMP_PATH_FALLBACK);
	cr_assert_eq(why, -err, "reason %d, want %d", why, -err);
	precopy_pump_free(p);
	p = pump_make(PRECOPY_PUMP_LOAD, 0, 0, 0, NULL, NULL, NULL);
	cr_assert_eq(precopy_pump_path(p, &why), PRECOPY_PUMP_PATH_FALLBACK);
	cr_assert_eq(why, -err);
	precopy_pump_free(p);
	roundtrip(&(struct rt){ .ndev = 4, .size = 300000, .skew = 4099, .chunk = 65536 });
	roundtrip(&(struct rt){ .ndev = 4, .size = 300000, .skew = 4099, .chunk = 65536, .sock = true });
}

Test(pump, io_uring_disabled_eperm_falls_back, .timeout = 60)
{
	setup_refused(EPERM);
}

Test(pump, io_uring_missing_enosys_falls_back, .timeout = 60)
{
	setup_refused(ENOSYS);
}
