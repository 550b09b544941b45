/* SPDX-License-Identifier: MIT */
/* The fault sweep: one injected fault per call number, per operation
 * (ioctl, read, write, poll, close, pipe2), per errno (EIO, EINTR, EAGAIN,
 * EPIPE, and a short transfer for read and write), on the source's fake
 * kernel and on the destination's, over a whole migration of two VFIO
 * devices and one fd-based back-end. The call numbers are those of a clean
 * migration, counted first in the same test, so the sweep follows the code.
 * After each case, whatever the migration's outcome, the VMM cancels what
 * is still running and then:
 *   - every source device is RUNNING (STOP after a completed migration),
 *     or in ERROR and named in precopy_engine_strerror(); every destination
 *     device is RUNNING or in ERROR and named in precopy_dest_strerror();
 *   - no source device is still DMA logging, unless the error names the
 *     failed "DMA logging stop" (the next start stops it again);
 *   - the process holds as many fds as before the migration;
 *   - a new migration on the same engines succeeds, byte-equal, every
 *     destination device loaded, logging off after it.
 * The destination is driven as a VMM drives it: an EAGAIN or EINTR from
 * precopy_dest_poll() while the stream has bytes is polled again (the
 * shared harness's dest_drain() stops at the first -EAGAIN).
 * EINTR must be retried by every call site: an EINTR case that fails the
 * migration fails the test, naming the calls. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>

#include "test-engine.h"

static void init(void)
{
	signal(SIGPIPE, SIG_IGN); /* the back-end models stand for other processes */
}
static void fini(void) { h_teardown(); }
TestSuite(engine_sweep, .init = init, .fini = fini);

#define BE_SIZE 4097u /* a back-end state that fits a pipe: the destination needs no thread */

enum { SRC, DST };
enum { F_EIO, F_EINTR, F_EAGAIN, F_EPIPE, F_SHORT, F_COUNT };
static const char *const fname[F_COUNT] = { "EIO", "EINTR", "EAGAIN", "EPIPE", "short" };
static const char *const opname[PRECOPY_FAKE_OP_COUNT] = {
	[PRECOPY_FAKE_OP_IOCTL] = "ioctl", [PRECOPY_FAKE_OP_READ] = "read",   [PRECOPY_FAKE_OP_WRITE] = "write",
	[PRECOPY_FAKE_OP_POLL] = "poll",   [PRECOPY_FAKE_OP_CLOSE] = "close", [PRECOPY_FAKE_OP_PIPE2] = "pipe2",
};

static void setup(void)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF }, sizes[1] = { BE_SIZE };

	h_setup(2, flags, 1);
	H.cfg.policy.downtime_limit_ns = 2000000; /* the back-end's state counts in the downtime */
	h_backends(1, sizes);
	h_engines();
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "/proc/self/fd");
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int sweep_migration(void);

static struct precopy_fake_kernel *side_fk(int side)
{
	return side == SRC ? H.sfk : H.dfk;
}

/* Calls of op on side during one clean migration. */
static uint64_t clean_calls(int side, enum precopy_fake_op op)
{
	uint64_t before;
	int r;

	setup();
	before = precopy_fake_op_calls(side_fk(side), op);
	r = sweep_migration();
	cr_assert_eq(r, 0, "clean migration: %d: %s / %s", r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	before = precopy_fake_op_calls(side_fk(side), op) - before;
	h_teardown();
	memset(&H, 0, sizeof(H));
	return before;
}

/* The destination's side as a VMM drives it: poll again while the stream
 * has bytes (an injected EAGAIN or EINTR says "not now", not "ended").
 * Returns 0, or the destination's -errno. */
static int vmm_dest_drain(void)
{
	for (int idle = 0; idle < 100;) {
		struct pollfd p = { .fd = H.st[1], .events = POLLIN };
		int64_t r = precopy_dest_poll(H.dst, 0);

		if (r > 0) {
			idle = 0;
			continue;
		}
		if (r == 0 || (r != -EAGAIN && r != -EINTR))
			return (int)r;
		if (precopy_dest_ended(H.dst) == 1 || poll(&p, 1, 0) <= 0)
			return 0; /* nothing more for now */
		idle++;
	}
	return -ETIMEDOUT;
}

/* One migration as run_migration() does it, with vmm_dest_drain(). */
static int sweep_migration(void)
{
	struct precopy_decision d;
	int64_t n;
	int r;

	r = precopy_dest_start(H.dst);
	if (r < 0)
		return r;
	r = precopy_engine_start(H.src);
	if (r < 0)
		return r;
	for (int it = 0;; it++) {
		uint64_t bytes;

		if (it == 200)
			return -ETIMEDOUT;
		n = precopy_engine_sync(H.src);
		if (n < 0)
			return (int)n;
		bytes = copy_pages();
		atomic_fetch_add(&vnow, bytes);
		n = precopy_engine_pump(H.src, 48 * 1024);
		if (n < 0)
			return (int)n;
		cr_assert_eq(precopy_engine_account(H.src, bytes, bytes), 0);
		if ((r = vmm_dest_drain()) < 0)
			return r;
		guest_writes(6);
		device_dma();
		atomic_fetch_add(&vnow, 100000);
		r = precopy_engine_decide(H.src, &d);
		if (r < 0)
			return r;
		if (d.action == PRECOPY_ABORT)
			return -ECANCELED;
		if (d.action == PRECOPY_SWITCHOVER || d.action == PRECOPY_FORCE_SWITCHOVER)
			break;
	}
	for (int i = 0; i < H.nbe; i++)
		cr_assert_eq(precopy_fake_backend_set_running(H.sbe[i].cur, 0), 0);
	r = precopy_engine_switchover(H.src);
	if (r < 0)
		return r;
	n = (int64_t)copy_pages();
	cr_assert_eq(precopy_engine_account(H.src, (uint64_t)n, (uint64_t)n), 0);
	if ((r = vmm_dest_drain()) < 0)
		return r;
	if (precopy_dest_ended(H.dst) != 1)
		return -ENODATA; /* the source's stream did not all arrive */
	r = precopy_dest_complete(H.dst);
	if (r < 0)
		return r;
	r = precopy_engine_complete(H.src);
	if (r == 0 && !ram_equal())
		return -EBADMSG;
	return r;
}

static int named_in(const char *msg, uint32_t id)
{
	char want[32];

	snprintf(want, sizeof(want), "device %u", id);
	return strstr(msg, want) != NULL;
}

/* The source after the case: phase, device states, DMA logging. */
static void check_source(const char *what)
{
	struct precopy_engine_stats st;
	const char *msg = precopy_engine_strerror(H.src);

	cr_assert_eq(precopy_engine_stats(H.src, &st), 0);
	cr_assert(st.phase == PRECOPY_ENGINE_IDLE || st.phase == PRECOPY_ENGINE_DONE, "%s: source phase %u", what,
		  st.phase);
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats fs;

		precopy_fake_vfio_get_stats(H.sdev[i], &fs);
		if (fs.state == VFIO_DEVICE_STATE_ERROR)
			cr_assert(named_in(msg, 10 + (uint32_t)i), "%s: source device %d in ERROR, not named: \"%s\"",
				  what, i, msg);
		else if (st.phase == PRECOPY_ENGINE_DONE)
			cr_assert(fs.state == VFIO_DEVICE_STATE_STOP || fs.state == VFIO_DEVICE_STATE_RUNNING,
				  "%s: source device %d in %s after complete", what, i,
				  precopy_vfio_state_name(fs.state));
		else
			cr_assert_eq(fs.state, VFIO_DEVICE_STATE_RUNNING, "%s: source device %d in %s (%s)", what, i,
				     precopy_vfio_state_name(fs.state), msg);
		if (fs.logging)
			cr_assert(strstr(msg, "DMA logging stop") && named_in(msg, 10 + (uint32_t)i),
				  "%s: source device %d still logging, error \"%s\"", what, i, msg);
	}
}

static void check_dest(const char *what)
{
	const char *msg = precopy_dest_strerror(H.dst);

	for (int i = 0; i < H.ndev; i++) {
		uint32_t s = fake_state(H.ddev[i]);

		if (s == VFIO_DEVICE_STATE_ERROR)
			cr_assert(named_in(msg, 10 + (uint32_t)i),
				  "%s: destination device %d in ERROR, not named: \"%s\"", what, i, msg);
		else
			cr_assert_eq(s, VFIO_DEVICE_STATE_RUNNING, "%s: destination device %d in %s (%s)", what, i,
				     precopy_vfio_state_name(s), msg);
	}
}

/* What the VMM does before migrating again: source devices a completed
 * migration stopped resume, the back-end models are fresh. */
static void vmm_recover(void)
{
	for (int i = 0; i < H.ndev; i++) {
		if (fake_state(H.sdev[i]) == VFIO_DEVICE_STATE_STOP) {
			struct vfio_device_feature_mig_state ms = { .device_state = VFIO_DEVICE_STATE_RUNNING,
								    .data_fd = -1 };
			cr_assert_eq(precopy_vfio_feature(H.ssys, H.sfd[i], VFIO_DEVICE_FEATURE_SET,
							  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms, sizeof(ms)), 0);
		}
		if (fake_state(H.ddev[i]) == VFIO_DEVICE_STATE_ERROR)
			cr_assert_eq(precopy_sys_ioctl(H.dsys, H.dfd[i], VFIO_DEVICE_RESET, NULL), 0);
		if (fake_state(H.sdev[i]) == VFIO_DEVICE_STATE_ERROR)
			cr_assert_eq(precopy_sys_ioctl(H.ssys, H.sfd[i], VFIO_DEVICE_RESET, NULL), 0);
	}
	for (int i = 0; i < H.nbe; i++) {
		be_swap(&H.sbe[i], PRECOPY_FAKE_BE_OK, BE_SIZE, 77 + (uint64_t)i, 0, 1);
		be_swap(&H.dbe[i], PRECOPY_FAKE_BE_OK, BE_SIZE, 77 + (uint64_t)i, 0, 0);
	}
}

struct tally {
	int cases, completed, failed;
	char eintr_failed[4096];
};

static void one_case(int side, enum precopy_fake_op op, uint64_t nth, int f, struct tally *t)
{
	struct precopy_fault fault = { .op = op, .nth = nth };
	char what[96];
	int fds, after, r;

	snprintf(what, sizeof(what), "%s %s #%llu %s", side == SRC ? "source" : "destination", opname[op],
		 (unsigned long long)nth, fname[f]);
	switch (f) {
	case F_EIO: fault.err = EIO; break;
	case F_EINTR: fault.err = EINTR; break;
	case F_EAGAIN: fault.err = EAGAIN; break;
	case F_EPIPE: fault.err = EPIPE; break;
	default: fault.short_len = 1; break; /* one byte of what was asked */
	}
	setup();
	fds = count_fds();
	cr_assert_eq(precopy_fake_fault_add(side_fk(side), &fault), 0, "%s", what);
	r = sweep_migration();
	/* the VMM: whatever still runs is cancelled */
	precopy_engine_cancel(H.src);
	precopy_dest_cancel(H.dst);
	t->cases++;
	if (r == 0) {
		t->completed++;
	} else {
		t->failed++;
		cr_assert(precopy_engine_strerror(H.src)[0] || precopy_dest_strerror(H.dst)[0],
			  "%s: failed with %d and no message on either side", what, r);
		if (f == F_EINTR) {
			size_t len = strlen(t->eintr_failed);
			snprintf(t->eintr_failed + len, sizeof(t->eintr_failed) - len, "%s#%llu (%s%s%s)",
				 len ? ", " : "", (unsigned long long)nth, precopy_engine_strerror(H.src),
				 precopy_dest_strerror(H.dst)[0] ? " / " : "", precopy_dest_strerror(H.dst));
		}
	}
	check_source(what);
	check_dest(what);
	/* then a new migration works */
	precopy_fake_fault_clear(side_fk(side));
	vmm_recover(); /* also ends the back-end models' transfers: their fds are theirs */
	after = count_fds();
	cr_assert_eq(after, fds, "%s: %d fds before the migration, %d after (%s / %s)", what, fds, after,
		     precopy_engine_strerror(H.src), precopy_dest_strerror(H.dst));
	h_relink();
	r = sweep_migration();
	cr_assert_eq(r, 0, "%s: the next migration: %d: %s / %s", what, r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	for (int i = 0; i < H.ndev; i++) {
		struct precopy_fake_vfio_stats fs;

		precopy_fake_vfio_get_stats(H.sdev[i], &fs);
		cr_assert_eq(fs.logging, 0, "%s: device %d logging after the next migration", what, i);
		precopy_fake_vfio_get_stats(H.ddev[i], &fs);
		cr_assert_eq(fs.state, VFIO_DEVICE_STATE_RUNNING, "%s: destination device %d after the next migration",
			     what, i);
		cr_assert_geq(fs.resume_ok, 1, "%s: destination device %d loaded no valid state", what, i);
	}
	h_teardown();
	memset(&H, 0, sizeof(H));
}

static void sweep(int side, enum precopy_fake_op op)
{
	uint64_t n = clean_calls(side, op);
	struct tally t = { 0 };

	for (uint64_t nth = 1; nth <= n; nth++)
		for (int f = 0; f < F_COUNT; f++) {
			if (f == F_SHORT && op != PRECOPY_FAKE_OP_READ && op != PRECOPY_FAKE_OP_WRITE)
				continue;
			one_case(side, op, nth, f, &t);
		}
	cr_log_info("%s %s: %llu calls in a clean migration, %d cases: %d completed, %d failed cleanly",
		    side == SRC ? "source" : "destination", opname[op], (unsigned long long)n, t.cases, t.completed,
		    t.failed);
	cr_assert(!t.eintr_failed[0], "%s %s: EINTR not retried at: %s", side == SRC ? "source" : "destination",
		  opname[op], t.eintr_failed);
}

Test(engine_sweep, source_ioctl, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_IOCTL); }
Test(engine_sweep, source_read, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_READ); }
Test(engine_sweep, source_write, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_WRITE); }
Test(engine_sweep, source_poll, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_POLL); }
Test(engine_sweep, source_close, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_CLOSE); }
Test(engine_sweep, source_pipe2, .timeout = 300) { sweep(SRC, PRECOPY_FAKE_OP_PIPE2); }
Test(engine_sweep, dest_ioctl, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_IOCTL); }
Test(engine_sweep, dest_read, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_READ); }
Test(engine_sweep, dest_write, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_WRITE); }
Test(engine_sweep, dest_poll, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_POLL); }
Test(engine_sweep, dest_close, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_CLOSE); }
Test(engine_sweep, dest_pipe2, .timeout = 300) { sweep(DST, PRECOPY_FAKE_OP_PIPE2); }
