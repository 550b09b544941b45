/* SPDX-License-Identifier: MIT */
/* Writes that never raise SIGPIPE in the host: MSG_NOSIGNAL on sockets,
 * SIGPIPE blocked for the call (and the one it queued taken back) on
 * anything else. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "sys_nosig.h"
#include "sys_retry.h"

/* A write to a pipe or a socket whose reader has gone queues SIGPIPE on
 * the writing thread; with the signal blocked it stays pending, and is
 * taken back with a zero-timeout sigtimedwait. A SIGPIPE already pending
 * before (the host blocks SIGPIPE and has one queued) is the host's:
 * standard signals do not queue twice, so ours merged into it and nothing
 * is taken. */
void precopy__sigpipe_begin(struct precopy__sigpipe_guard *g)
{
	sigset_t pipe_set, pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	g->was_pending = 0;
	g->blocked = pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old) == 0;
	if (g->blocked && sigpending(&pending) == 0)
		g->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

void precopy__sigpipe_end(struct precopy__sigpipe_guard *g, int got_epipe)
{
	static const struct timespec zero = { 0, 0 };
	sigset_t pipe_set;

	if (!g->blocked)
		return;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	if (got_epipe && !g->was_pending) {
		int n = 0;

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR && ++n < PRECOPY__EINTR_RETRIES)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* The write with SIGPIPE blocked on this thread for the call. */
static ssize_t write_sigpipe_blocked(const struct precopy_sys *s, int fd, const void *buf, size_t len)
{
	struct precopy__sigpipe_guard g;
	ssize_t r;

	precopy__sigpipe_begin(&g);
	r = precopy__sys_write(s, fd, buf, len);
	precopy__sigpipe_end(&g, r == -EPIPE);
	return r;
}

ssize_t precopy__sys_write_nosig(const struct precopy_sys *s, int fd, const void *buf, size_t len, int *kind)
{
	if (*kind != PRECOPY__FD_OTHER) {
		ssize_t r = precopy__sys_send(s, fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r != -ENOTSOCK && r != -ENOSYS) {
			*kind = PRECOPY__FD_SOCKET;
			return r;
		}
		/* a table without send: what the fd is stays unknown */
		if (r == -ENOTSOCK)
			*kind = PRECOPY__FD_OTHER;
	}
	return write_sigpipe_blocked(s, fd, buf, len);
}
