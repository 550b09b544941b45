/* SPDX-License-Identifier: MIT */
/* fd-based back-end state transfer: the front-end's rules (stopped only,
 * one transfer at a time, fds owned and closed), the fake back-end model's
 * verdicts. The save -> stream -> load round trip through the engines is
 * tests/test-engine-backend.c. */
#include <signal.h>
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "precopy.h"
#include "precopy/fake.h"

static bool fd_open(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0;
}

static struct precopy_fake_backend *be(uint32_t fault, uint64_t size)
{
	struct precopy_fake_backend_config c = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION, .fault = fault,
						 .state_size = size, .seed = 9 };
	int err = 1;
	struct precopy_fake_backend *b = precopy_fake_backend_new(&c, &err);

	cr_assert(b);
	cr_assert_eq(err, 0);
	return b;
}

Test(backend, start_rules)
{
	struct precopy_fake_backend *b = be(0, 10);
	struct precopy_backend_xfer *x = precopy_backend_xfer_new(precopy_fake_backend_ops(), b, NULL, NULL);
	int p[2], fd;

	cr_assert(x);
	cr_assert_eq(precopy_backend_xfer_finish(x), -ENOENT, "nothing started");
	cr_assert_eq(precopy_backend_xfer_start(x, 0, 0, NULL), -EINVAL);

	/* queues running: -EBUSY, and both pipe ends closed */
	precopy_fake_backend_set_running(b, true);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p), -EBUSY);
	cr_assert(!fd_open(p[0]) && !fd_open(p[1]), "fds closed on failure");
	precopy_fake_backend_set_running(b, false);

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, 2, PRECOPY_BACKEND_PHASE_STOPPED, p), -EINVAL, "direction");
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, 1, p), -EINVAL, "phase");

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	fd = precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p);
	cr_assert_eq(fd, p[0], "SAVE keeps the read end");
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p),
		     -EALREADY);
	{
		char buf[16];

		cr_assert_eq(read(fd, buf, sizeof(buf)), 10);
		cr_assert_eq(precopy_sim_pattern_check(9, 0, buf, 10), 10);
		cr_assert_eq(read(fd, buf, sizeof(buf)), 0, "end of data");
	}
	cr_assert_eq(precopy_backend_xfer_finish(x), 0);
	cr_assert(!fd_open(fd), "finish closes the front-end fd");
	cr_assert_eq(precopy_backend_xfer_finish(x), -ENOENT);
	precopy_backend_xfer_free(x);
	precopy_fake_backend_free(b);
}

/* Abort closes the front-end fd at once, even while the back-end hangs, and
 * never asks the back-end; a later transfer may start. */
Test(backend, abort_does_not_wait)
{
	struct precopy_fake_backend_config c = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION,
						 .fault = PRECOPY_FAKE_BE_HANG, .state_size = 100, .seed = 9,
						 .fault_offset = 10 };
	struct precopy_fake_backend *b = precopy_fake_backend_new(&c, NULL);
	struct precopy_backend_xfer *x = precopy_backend_xfer_new(precopy_fake_backend_ops(), b, NULL, NULL);
	int p[2], fd;

	cr_assert(b && x);
	/* the model stands for another process: its writes into a pipe we
	 * closed must fail with EPIPE, not kill the test */
	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(precopy_backend_xfer_abort(NULL), -EINVAL);
	cr_assert_eq(precopy_backend_xfer_abort(x), -ENOENT, "nothing started");
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	fd = precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p);
	cr_assert_geq(fd, 0);
	while (precopy_fake_backend_bytes(b) < 10)
		usleep(100);
	cr_assert_eq(precopy_backend_xfer_abort(x), 0, "returns although the back-end hangs");
	cr_assert(!fd_open(fd), "abort closes the front-end fd");
	cr_assert_eq(precopy_backend_xfer_abort(x), -ENOENT);
	cr_assert_eq(precopy_backend_xfer_finish(x), -ENOENT, "nothing left to check");
	/* the model is still winding down: it refuses a new transfer until
	 * released and checked (its own rule) */
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p),
		     -EALREADY);
	cr_assert_eq(precopy_fake_backend_release(b), 0);
	cr_assert_eq(precopy_fake_backend_ops()->check_state(b), -ETIMEDOUT);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	fd = precopy_backend_xfer_start(x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, p);
	cr_assert_geq(fd, 0, "a new transfer after the old one was wound down");
	cr_assert_eq(precopy_backend_xfer_abort(x), 0);
	precopy_backend_xfer_free(x);
	precopy_fake_backend_free(b);
}

Test(backend, ops_validation_and_reject)
{
	struct precopy_backend_ops bad = *precopy_fake_backend_ops();
	struct precopy_fake_backend *b = be(PRECOPY_FAKE_BE_REJECT, 10);
	struct precopy_backend_xfer *x;
	int err = 0, p[2];

	bad.check_state = NULL;
	cr_assert_null(precopy_backend_xfer_new(&bad, b, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	bad = *precopy_fake_backend_ops();
	bad.version = 2;
	cr_assert_null(precopy_backend_xfer_new(&bad, b, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_fake_backend_new(&(struct precopy_fake_backend_config){ .version = 1, .fault = 99 }, &err));
	cr_assert_eq(err, -EINVAL);

	x = precopy_backend_xfer_new(precopy_fake_backend_ops(), b, NULL, &err);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(precopy_backend_xfer_start(x, PRECOPY_BACKEND_LOAD, PRECOPY_BACKEND_PHASE_STOPPED, p), -EIO);
	cr_assert(!fd_open(p[0]) && !fd_open(p[1]));
	precopy_backend_xfer_free(x);
	precopy_fake_backend_free(b);
}

Test(backend, pattern_fill_check)
{
	uint8_t a[100], b[100];

	precopy_sim_pattern_fill(5, 3, a, sizeof(a));
	for (size_t i = 0; i < sizeof(a); i++)
		precopy_sim_pattern_fill(5, 3 + i, b + i, 1);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "offsets agree byte by byte");
	cr_assert_eq(precopy_sim_pattern_check(5, 3, a, sizeof(a)), sizeof(a));
	a[57] ^= 1;
	cr_assert_eq(precopy_sim_pattern_check(5, 3, a, sizeof(a)), 57);
	cr_assert_neq(precopy_sim_pattern_check(6, 3, b, sizeof(b)), sizeof(b), "seeds differ");
}
