/* SPDX-License-Identifier: MIT */
/* Interrupted and spurious I/O over a whole migration: one EINTR (or one
 * spurious EAGAIN) injected at call number k of an operation, for every k
 * the migration makes, on the source's and the destination's fake kernel.
 * Each migration completes with guest RAM byte-equal and every device
 * loaded: EINTR is "again" at every syscall site, and -EAGAIN from the
 * destination's poll is "call again" for its VMM (the harness's drain
 * retries it as a VMM loop does). */
#include <criterion/logging.h>
#include <stdio.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_eintr, .fini = fini);

/* Two devices and one fd-based back-end, so the migration makes every
 * kind of call (device ioctls and data reads/writes, the back-end's state
 * pipe, the stream and the return path). */
static void setup2(void)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF }, sizes[1] = { 70000 };
	h_setup(2, flags, 1);
	h_backends(1, sizes);
	h_engines();
}

static void assert_migrated(const char *what, int r)
{
	cr_assert_eq(r, 0, "%s: %d: source \"%s\" destination \"%s\"", what, r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	cr_assert(ram_equal(), "%s: guest RAM differs", what);
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats d;
		precopy_fake_vfio_get_stats(H.ddev[i], &d);
		cr_assert_geq(d.resume_ok, 1, "%s: destination device %d not loaded", what, i);
		cr_assert_eq(d.state, VFIO_DEVICE_STATE_RUNNING, "%s: destination device %d", what, i);
	}
}

/* Calls of op that a clean migration makes on the source (dest 0) or the
 * destination (dest 1) fake kernel. */
static uint64_t clean_calls(int dest, enum precopy_fake_op op)
{
	struct run_result rr;
	uint64_t n;

	setup2();
	assert_migrated("clean run", run_migration(200, &rr));
	n = precopy_fake_op_calls(dest ? H.dfk : H.sfk, op);
	h_teardown();
	memset(&H, 0, sizeof(H));
	return n;
}

/* One fault (op, err, on the stream fd if on_stream) at every call number
 * of a clean run, each in a fresh migration that must complete. */
static void sweep(int dest, enum precopy_fake_op op, int err, int on_stream, const char *name)
{
	uint64_t n = clean_calls(dest, op);

	if (!n) {
		cr_log_info("%s: a clean migration makes no such call", name);
		return;
	}
	for (uint64_t k = 1; k <= n; k++) {
		struct precopy_fault f = { .op = op, .nth = k, .err = err };
		struct run_result rr;
		char what[96];

		setup2();
		if (on_stream)
			f.fd = dest ? H.st[1] : H.st[0];
		cr_assert_eq(precopy_fake_fault_add(dest ? H.dfk : H.sfk, &f), 0);
		snprintf(what, sizeof(what), "%s at call %llu of %llu", name, (unsigned long long)k,
			 (unsigned long long)n);
		assert_migrated(what, run_migration(200, &rr));
		h_teardown();
		memset(&H, 0, sizeof(H));
	}
	cr_log_info("%s: %llu cases", name, (unsigned long long)n);
}

/* ---- the destination's stream: what its VMM sees as -EAGAIN ------------ */

Test(engine_eintr, dest_stream_poll_eintr)
{
	sweep(1, PRECOPY_FAKE_OP_POLL, EINTR, 1, "destination stream poll EINTR");
}

Test(engine_eintr, dest_stream_read_eintr)
{
	sweep(1, PRECOPY_FAKE_OP_READ, EINTR, 1, "destination stream read EINTR");
}

Test(engine_eintr, dest_stream_read_spurious_eagain)
{
	sweep(1, PRECOPY_FAKE_OP_READ, EAGAIN, 1, "destination stream read EAGAIN");
}

/* ---- one EINTR at every call of every operation, both sides ------------ */

static const struct {
	enum precopy_fake_op op;
	const char *name;
} ops[] = {
	{ PRECOPY_FAKE_OP_IOCTL, "ioctl" }, { PRECOPY_FAKE_OP_READ, "read" },
	{ PRECOPY_FAKE_OP_WRITE, "write" }, { PRECOPY_FAKE_OP_SPLICE, "splice" },
	{ PRECOPY_FAKE_OP_POLL, "poll" },   { PRECOPY_FAKE_OP_OPEN, "open" },
	{ PRECOPY_FAKE_OP_CLOSE, "close" }, { PRECOPY_FAKE_OP_MMAP, "mmap" },
	{ PRECOPY_FAKE_OP_MUNMAP, "munmap" }, { PRECOPY_FAKE_OP_PIPE2, "pipe2" },
};

static void every_op(int dest)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		char name[64];

		snprintf(name, sizeof(name), "%s %s EINTR", dest ? "destination" : "source", ops[i].name);
		sweep(dest, ops[i].op, EINTR, 0, name);
	}
}

Test(engine_eintr, source_every_op_every_call, .timeout = 120) { every_op(0); }
Test(engine_eintr, dest_every_op_every_call, .timeout = 120) { every_op(1); }
