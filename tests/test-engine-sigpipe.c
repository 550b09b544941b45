/* SPDX-License-Identifier: MIT */
/* The library never raises SIGPIPE in its host. The peer goes away at
 * every write site -- the source's stream at start, in pre-copy and at
 * switchover; the destination's return path (the RP_ERROR of a failed
 * start, the switchover-ack) and a back-end's state pipe -- over a
 * socketpair and over a pipe, through a sys table with send (MSG_NOSIGNAL)
 * and through a version 2 table without it (SIGPIPE blocked for the
 * write). Each case runs in a forked child with SIGPIPE at its default
 * disposition and unblocked: the child must live, get -EPIPE (or its
 * engine's error naming it), and leave no SIGPIPE pending. The host's own
 * blocked, pending SIGPIPE is left pending. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include "test-engine.h"
#include "../ioctl/sys_nosig.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_sigpipe, .fini = fini, .timeout = 60);

enum { SOCK, PIPE };
static const char *const kind_name[] = { "socketpair", "pipe" };

static struct precopy_sys_ops v2_ops[2];
static struct precopy_sys v2_sys[2];

/* A version 2 copy of a fake kernel's table (no send). */
static const struct precopy_sys *as_v2(int i, const struct precopy_sys *s)
{
	v2_ops[i] = *s->ops;
	v2_ops[i].version = 2;
	v2_ops[i].send = NULL;
	v2_sys[i] = (struct precopy_sys){ .ops = &v2_ops[i], .ctx = s->ctx };
	return &v2_sys[i];
}

/* Replace the stream and the return path by pipes (same harness roles:
 * [0] the source's end, [1] the destination's). */
static void use_pipes(void)
{
	int st[2], rp[2], sz = 1 << 20;

	cr_assert_eq(pipe2(st, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(rp, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(st[1], F_SETPIPE_SZ, sz), sz); /* a whole migration fits */
	close(H.st[0]);
	close(H.st[1]);
	close(H.rp[0]);
	close(H.rp[1]);
	H.st[0] = st[1];
	H.st[1] = st[0];
	H.rp[0] = rp[0];
	H.rp[1] = rp[1];
	H.cfg.stream_fd = H.st[0];
	H.cfg.rp_fd = H.rp[0];
	H.dcfgx.stream_fd = H.st[1];
	H.dcfgx.rp_fd = H.rp[1];
}

/* Two devices (ndev), nbe back-ends, over kind, through tables with send
 * (v2 0) or without (v2 1). */
static void setup(int ndev, int nbe, int kind, int v2)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF }, sizes[MAXDEV] = { 30000 };

	h_setup(ndev, flags, 1);
	if (nbe)
		h_backends(nbe, sizes);
	if (kind == PIPE)
		use_pipes();
	if (v2) {
		H.cfg.sys = as_v2(0, H.ssys);
		H.dcfgx.sys = as_v2(1, H.dsys);
	}
	h_engines();
}

/* The peer's end goes away. */
static void peer_gone(int *fd)
{
	close(*fd);
	*fd = -1;
}

/* ---- the child ----------------------------------------------------------- */

static char why[512];

#define CHILD_CHECK(cond, ...)                                           \
	do {                                                             \
		if (!(cond)) {                                           \
			snprintf(why, sizeof(why), __VA_ARGS__);         \
			return 1;                                        \
		}                                                        \
	} while (0)

static int sigpipe_pending(void)
{
	sigset_t p;

	sigemptyset(&p);
	sigpending(&p);
	return sigismember(&p, SIGPIPE) == 1;
}

/* Runs fn in a child with SIGPIPE at SIG_DFL and unblocked: the child must
 * exit 0 (fn's checks passed), not die of a signal. */
static void in_child(int (*fn)(void), const char *what)
{
	int p[2], st = 0;
	char msg[512] = "";
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		sigset_t s;
		int r;

		close(p[0]);
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&s);
		sigaddset(&s, SIGPIPE);
		sigprocmask(SIG_UNBLOCK, &s, NULL);
		why[0] = 0;
		r = fn();
		if (!r && sigpipe_pending()) {
			snprintf(why, sizeof(why), "a SIGPIPE is left pending");
			r = 1;
		}
		if (write(p[1], why, strlen(why)) < 0)
			r = 2;
		_exit(r);
	}
	close(p[1]);
	n = read(p[0], msg, sizeof(msg) - 1);
	msg[n > 0 ? n : 0] = 0;
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(!WIFSIGNALED(st), "%s: the host died of signal %d (%s)", what, WTERMSIG(st), strsignal(WTERMSIG(st)));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", what, msg);
}

static int expect_epipe(int r, const char *msg, const char *want)
{
	CHILD_CHECK(r == -EPIPE, "got %d, not -EPIPE: \"%s\"", r, msg);
	CHILD_CHECK(strstr(msg, want), "message \"%s\", expected \"%s\"", msg, want);
	return 0;
}

/* ---- the source's stream ------------------------------------------------- */

static int src_start(void)
{
	int r = precopy_engine_start(H.src);
	return expect_epipe(r, precopy_engine_strerror(H.src), "stream: write: Broken pipe");
}

static int src_pump(void)
{
	int r = (int)precopy_engine_pump(H.src, 0);
	return expect_epipe(r, precopy_engine_strerror(H.src), "stream: write: Broken pipe");
}

static int src_switchover(void)
{
	int r = precopy_engine_switchover(H.src);
	return expect_epipe(r, precopy_engine_strerror(H.src), "stream: write: Broken pipe");
}

/* at: 0 start, 1 pump, 2 switchover; each kind, each table. */
static void source_case(int at)
{
	static int (*const fn[])(void) = { src_start, src_pump, src_switchover };
	static const char *const at_name[] = { "start", "pre-copy pump", "switchover" };

	for (int kind = SOCK; kind <= PIPE; kind++) {
		for (int v2 = 0; v2 <= 1; v2++) {
			char what[128];

			snprintf(what, sizeof(what), "source stream at %s, %s, %s", at_name[at], kind_name[kind],
				 v2 ? "table without send" : "table with send");
			setup(2, 0, kind, v2);
			if (at > 0) {
				cr_assert_eq(precopy_engine_start(H.src), 0);
				cr_assert_geq(precopy_engine_sync(H.src), 0);
			}
			peer_gone(&H.st[1]);
			in_child(fn[at], what);
			h_teardown();
			memset(&H, 0, sizeof(H));
		}
	}
}

Test(engine_sigpipe, source_stream_at_start) { source_case(0); }
Test(engine_sigpipe, source_stream_in_precopy) { source_case(1); }
Test(engine_sigpipe, source_stream_at_switchover) { source_case(2); }

/* The real table (send on sockets, the blocked write on pipes), a source
 * without devices: its start writes the stream header. */
Test(engine_sigpipe, source_real_table)
{
	for (int kind = SOCK; kind <= PIPE; kind++) {
		uint64_t flags[MAXDEV] = { 0 };
		int err;

		h_setup(0, flags, 1);
		if (kind == PIPE)
			use_pipes();
		H.cfg.sys = precopy_sys_real();
		H.src = precopy_engine_new(&H.cfg, &err);
		cr_assert_not_null(H.src, "engine_new: %d", err);
		peer_gone(&H.st[1]);
		in_child(src_start, kind_name[kind]);
		h_teardown();
		memset(&H, 0, sizeof(H));
	}
}

/* ---- the destination ----------------------------------------------------- */

/* RP_ERROR at a failed start: start returns the device's error. */
static int dst_start_fails(void)
{
	int r = precopy_dest_start(H.dst);

	CHILD_CHECK(r == -EIO, "got %d: %s", r, precopy_dest_strerror(H.dst));
	CHILD_CHECK(strstr(precopy_dest_strerror(H.dst), "start: device 11: -> RESUMING"), "\"%s\"",
		    precopy_dest_strerror(H.dst));
	return 0;
}

/* The switchover-ack goes out once the initial data is in. */
static int dst_ack(void)
{
	int64_t r;

	for (int k = 0; k < 1000; k++) {
		r = precopy_dest_poll(H.dst, 10);
		if (r < 0 && r != -EAGAIN)
			return expect_epipe((int)r, precopy_dest_strerror(H.dst),
					    "return path: sending the switchover-ack: write: Broken pipe");
	}
	snprintf(why, sizeof(why), "no error after 1000 polls (acked %d)", precopy_dest_acked(H.dst));
	return 1;
}

/* A back-end reads 1000 bytes of its state and closes its end. The whole
 * migration runs in the child (the back-ends' threads start there). */
static int dst_backend(void)
{
	struct precopy_decision d;
	int64_t r;

	CHILD_CHECK(precopy_dest_start(H.dst) == 0, "dest start: %s", precopy_dest_strerror(H.dst));
	CHILD_CHECK(precopy_engine_start(H.src) == 0, "start: %s", precopy_engine_strerror(H.src));
	CHILD_CHECK(precopy_engine_sync(H.src) >= 0, "sync: %s", precopy_engine_strerror(H.src));
	CHILD_CHECK(precopy_engine_decide(H.src, &d) == 0, "decide: %s", precopy_engine_strerror(H.src));
	precopy_fake_backend_set_running(H.sbe[0].cur, 0);
	CHILD_CHECK(precopy_engine_switchover(H.src) == 0, "switchover: %s", precopy_engine_strerror(H.src));
	for (int k = 0; k < 1000; k++) {
		r = precopy_dest_poll(H.dst, 10);
		if (r < 0 && r != -EAGAIN) {
			const char *m = precopy_dest_strerror(H.dst);
			/* the pipe breaks (EPIPE), or the back-end's verdict comes first */
			CHILD_CHECK(r == -EPIPE || r == -EIO, "got %d: %s", (int)r, m);
			CHILD_CHECK(strstr(m, "back-end 50"), "\"%s\"", m);
			return 0;
		}
	}
	snprintf(why, sizeof(why), "no error after 1000 polls");
	return 1;
}

Test(engine_sigpipe, dest_rp_error_at_start)
{
	for (int kind = SOCK; kind <= PIPE; kind++) {
		for (int v2 = 0; v2 <= 1; v2++) {
			setup(2, 0, kind, v2);
			cr_assert_eq(precopy_fake_vfio_fail_arc(H.ddev[1], VFIO_DEVICE_STATE_STOP,
								VFIO_DEVICE_STATE_RESUMING, EIO, VFIO_DEVICE_STATE_STOP,
								1), 0);
			peer_gone(&H.rp[0]);
			in_child(dst_start_fails, kind_name[kind]);
			h_teardown();
			memset(&H, 0, sizeof(H));
		}
	}
}

Test(engine_sigpipe, dest_switchover_ack)
{
	for (int kind = SOCK; kind <= PIPE; kind++) {
		for (int v2 = 0; v2 <= 1; v2++) {
			setup(2, 0, kind, v2);
			cr_assert_eq(precopy_dest_start(H.dst), 0);
			cr_assert_eq(precopy_engine_start(H.src), 0);
			cr_assert_geq(precopy_engine_sync(H.src), 0);
			cr_assert_geq(precopy_engine_pump(H.src, 0), 0); /* the initial data, all of it */
			peer_gone(&H.rp[0]);
			in_child(dst_ack, kind_name[kind]);
			h_teardown();
			memset(&H, 0, sizeof(H));
		}
	}
}

Test(engine_sigpipe, dest_backend_pipe)
{
	for (int kind = SOCK; kind <= PIPE; kind++) {
		for (int v2 = 0; v2 <= 1; v2++) {
			setup(0, 1, kind, v2);
			be_swap(&H.dbe[0], PRECOPY_FAKE_BE_SHORT, 30000, 77, 1000, 0);
			in_child(dst_backend, kind_name[kind]);
			h_teardown();
			memset(&H, 0, sizeof(H));
		}
	}
}

/* ---- the host's own SIGPIPE ---------------------------------------------- */

/* The host blocks SIGPIPE and has one pending: a write that breaks leaves
 * exactly that one pending (not taken, as it is the host's). */
static int host_pending_kept(void)
{
	const struct precopy_sys *s = precopy_sys_real();
	int p[2], kind = PRECOPY__FD_UNKNOWN;
	sigset_t set;
	ssize_t r;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	CHILD_CHECK(pipe(p) == 0, "pipe");
	close(p[0]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* without a pending one: ours is taken back, the mask stays blocked */
	r = precopy__sys_write_nosig(s, p[1], "x", 1, &kind);
	CHILD_CHECK(r == -EPIPE, "write: %zd", r);
	CHILD_CHECK(!sigpipe_pending(), "the library's SIGPIPE left pending");
	CHILD_CHECK(kind == PRECOPY__FD_OTHER, "a pipe taken for a socket");
	raise(SIGPIPE);
	CHILD_CHECK(sigpipe_pending(), "raise");
	r = precopy__sys_write_nosig(s, p[1], "x", 1, &kind);
	CHILD_CHECK(r == -EPIPE, "write: %zd", r);
	CHILD_CHECK(sigpipe_pending(), "the host's pending SIGPIPE was taken");
	{
		sigset_t now;
		sigprocmask(SIG_BLOCK, NULL, &now);
		CHILD_CHECK(sigismember(&now, SIGPIPE) == 1, "the host's mask changed");
	}
	/* take it ourselves, so the child's final check passes */
	{
		static const struct timespec zero = { 0, 0 };
		sigtimedwait(&set, NULL, &zero);
	}
	close(p[1]);
	return 0;
}

Test(engine_sigpipe, host_sigpipe_state_kept) { in_child(host_pending_kept, "host's pending SIGPIPE"); }
