/* SPDX-License-Identifier: MIT */
/* tests/test-sys.c — the real syscall table turns errno into a negative
 * return (and passes results through), and precopy_sys_validate() rejects
 * unusable tables with -EINVAL. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "precopy/sys.h"

static const struct precopy_sys *sys;

static void setup(void)
{
	sys = precopy_sys_real();
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(sys_real, .init = setup);

Test(sys_real, table_is_valid)
{
	cr_assert_not_null(sys);
	cr_assert_eq(precopy_sys_validate(sys), 0);
}

Test(sys_real, read_write_pass_counts_through)
{
	int p[2];
	char buf[16];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(precopy_sys_write(sys, p[1], "hello", 5), 5);
	cr_assert_eq(precopy_sys_read(sys, p[0], buf, sizeof(buf)), 5);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	cr_assert_eq(precopy_sys_close(sys, p[1]), 0);
	/* end of file is 0, not an error */
	cr_assert_eq(precopy_sys_read(sys, p[0], buf, sizeof(buf)), 0);
	cr_assert_eq(precopy_sys_close(sys, p[0]), 0);
}

Test(sys_real, read_on_closed_fd_is_ebadf)
{
	int p[2];
	char c;

	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	close(p[1]);
	errno = 0;
	cr_assert_eq(precopy_sys_read(sys, p[0], &c, 1), -EBADF);
	cr_assert_eq(precopy_sys_read(sys, -1, &c, 1), -EBADF);
	cr_assert_eq(precopy_sys_write(sys, p[1], &c, 1), -EBADF);
}

Test(sys_real, close_twice_is_ebadf)
{
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(precopy_sys_close(sys, p[0]), 0);
	cr_assert_eq(precopy_sys_close(sys, p[0]), -EBADF);
	cr_assert_eq(precopy_sys_close(sys, -1), -EBADF);
	close(p[1]);
}

Test(sys_real, write_to_widowed_pipe_is_epipe)
{
	int p[2];

	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	cr_assert_eq(precopy_sys_write(sys, p[1], "x", 1), -EPIPE);
	close(p[1]);
}

Test(sys_real, ioctl_bogus_request_on_pipe_is_enotty)
{
	int p[2], v = 0;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(precopy_sys_ioctl(sys, p[0], 0xdead0001ul, &v), -ENOTTY);
	cr_assert_eq(precopy_sys_ioctl(sys, -1, 0xdead0001ul, &v), -EBADF);
	close(p[0]);
	close(p[1]);
}

Test(sys_real, ioctl_passes_result_through)
{
	int p[2], n = -1;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "abc", 3), 3);
	cr_assert_eq(precopy_sys_ioctl(sys, p[0], FIONREAD, &n), 0);
	cr_assert_eq(n, 3);
	close(p[0]);
	close(p[1]);
}

Test(sys_real, open_missing_path_is_enoent)
{
	cr_assert_eq(precopy_sys_open(sys, "/nonexistent/precopy-test/nothing", O_RDONLY), -ENOENT);
	cr_assert_eq(precopy_sys_open(sys, "/dev/null/child", O_RDONLY), -ENOTDIR);
}

Test(sys_real, open_adds_cloexec)
{
	int fd = precopy_sys_open(sys, "/dev/null", O_RDONLY);

	cr_assert_geq(fd, 0, "open(/dev/null) = %d", fd);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "O_CLOEXEC was not added");
	cr_assert_eq(precopy_sys_close(sys, fd), 0);
}

Test(sys_real, poll_errors_and_results)
{
	int p[2];
	struct pollfd pfd;
	struct rlimit rl;

	cr_assert_eq(pipe(p), 0);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	pfd.revents = 0;
	cr_assert_eq(precopy_sys_poll(sys, &pfd, 1, 0), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(precopy_sys_poll(sys, &pfd, 1, 0), 1);
	cr_assert(pfd.revents & POLLIN);
	/* nfds beyond RLIMIT_NOFILE is EINVAL (lower the limit in this
	 * test's own process, and pass a real array of that size) */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur > 64) {
		struct pollfd many[65];

		rl.rlim_cur = 64;
		cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
		memset(many, 0, sizeof(many));
		for (int i = 0; i < 65; i++)
			many[i].fd = -1;
		cr_assert_eq(precopy_sys_poll(sys, many, 65, 0), -EINVAL);
	}
	close(p[0]);
	close(p[1]);
}

Test(sys_real, splice_between_non_pipes_is_einval)
{
	int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_WRONLY);

	cr_assert_geq(a, 0);
	cr_assert_geq(b, 0);
	cr_assert_eq(precopy_sys_splice(sys, a, b, 4096, 0), -EINVAL);
	cr_assert_eq(precopy_sys_splice(sys, -1, b, 4096, 0), -EBADF);
	close(a);
	close(b);
}

Test(sys_real, splice_moves_bytes)
{
	int p[2], q[2];
	char buf[8];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pipe(q), 0);
	cr_assert_eq(write(p[1], "splice", 6), 6);
	cr_assert_eq(precopy_sys_splice(sys, p[0], q[1], 6, 0), 6);
	cr_assert_eq(read(q[0], buf, sizeof(buf)), 6);
	cr_assert_eq(memcmp(buf, "splice", 6), 0);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
}

Test(sys_real, mmap_munmap)
{
	void *p = (void *)1;
	long ps = sysconf(_SC_PAGESIZE);

	cr_assert_eq(precopy_sys_mmap(sys, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p), -EINVAL);
	cr_assert_eq(p, (void *)1, "out written on failure");
	cr_assert_eq(precopy_sys_mmap(sys, (size_t)ps, PROT_READ, MAP_SHARED, -1, 0, &p), -EBADF);
	cr_assert_eq(precopy_sys_mmap(sys, (size_t)ps, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p), 0);
	cr_assert_neq(p, (void *)1);
	((volatile char *)p)[0] = 1;
	cr_assert_eq(precopy_sys_munmap(sys, (char *)p + 1, (size_t)ps), -EINVAL);
	cr_assert_eq(precopy_sys_munmap(sys, p, (size_t)ps), 0);
}

Test(sys_real, pipe2_adds_cloexec_and_passes_flags)
{
	int fds[2] = { -1, -1 };
	char c = 0;

	cr_assert_eq(precopy_sys_pipe2(sys, fds, O_NONBLOCK), 0);
	cr_assert(fds[0] >= 0 && fds[1] >= 0 && fds[0] != fds[1]);
	for (int i = 0; i < 2; i++) {
		cr_assert(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, "O_CLOEXEC was not added");
		cr_assert(fcntl(fds[i], F_GETFL) & O_NONBLOCK, "O_NONBLOCK was not passed");
	}
	cr_assert_eq(precopy_sys_read(sys, fds[0], &c, 1), -EAGAIN, "fds[0] is the read end, empty");
	cr_assert_eq(precopy_sys_write(sys, fds[1], "x", 1), 1);
	cr_assert_eq(precopy_sys_read(sys, fds[0], &c, 1), 1);
	cr_assert_eq(c, 'x');
	cr_assert_eq(precopy_sys_close(sys, fds[0]), 0);
	cr_assert_eq(precopy_sys_close(sys, fds[1]), 0);
	cr_assert_eq(precopy_sys_pipe2(sys, fds, 0x7fffffff), -EINVAL, "unknown flags");
}

/* ---- precopy_sys_validate --------------------------------------------------- */

TestSuite(sys_validate);

Test(sys_validate, null_and_missing_table)
{
	struct precopy_sys s = { .ops = NULL, .ctx = NULL };

	cr_assert_eq(precopy_sys_validate(NULL), -EINVAL);
	cr_assert_eq(precopy_sys_validate(&s), -EINVAL);
}

Test(sys_validate, wrong_version)
{
	struct precopy_sys_ops ops = *precopy_sys_real()->ops;
	struct precopy_sys s = { .ops = &ops, .ctx = NULL };

	cr_assert_eq(precopy_sys_validate(&s), 0, "an exact copy of the real table is valid");
	ops.version = 0;
	cr_assert_eq(precopy_sys_validate(&s), -EINVAL);
	ops.version = 1; /* the layout before pipe2 */
	cr_assert_eq(precopy_sys_validate(&s), -EINVAL);
	ops.version = 2; /* the layout before send: still accepted */
	cr_assert_eq(precopy_sys_validate(&s), 0);
	ops.version = PRECOPY_SYS_OPS_VERSION + 1;
	cr_assert_eq(precopy_sys_validate(&s), -EINVAL);
	ops.version = ~0u;
	cr_assert_eq(precopy_sys_validate(&s), -EINVAL);
}

/* Every op, removed one at a time, makes the table invalid. */
Test(sys_validate, each_missing_op)
{
	static const struct {
		const char *name;
		size_t off;
	} ops_tab[] = {
		{ "ioctl", offsetof(struct precopy_sys_ops, ioctl) },
		{ "read", offsetof(struct precopy_sys_ops, read) },
		{ "write", offsetof(struct precopy_sys_ops, write) },
		{ "splice", offsetof(struct precopy_sys_ops, splice) },
		{ "poll", offsetof(struct precopy_sys_ops, poll) },
		{ "open", offsetof(struct precopy_sys_ops, open) },
		{ "close", offsetof(struct precopy_sys_ops, close) },
		{ "mmap", offsetof(struct precopy_sys_ops, mmap) },
		{ "munmap", offsetof(struct precopy_sys_ops, munmap) },
		{ "pipe2", offsetof(struct precopy_sys_ops, pipe2) },
	};
	size_t i;

	for (i = 0; i < sizeof(ops_tab) / sizeof(ops_tab[0]); i++) {
		struct precopy_sys_ops ops = *precopy_sys_real()->ops;
		struct precopy_sys s = { .ops = &ops, .ctx = NULL };

		memset((char *)&ops + ops_tab[i].off, 0, sizeof(void (*)(void)));
		cr_assert_eq(precopy_sys_validate(&s), -EINVAL, "table without %s accepted", ops_tab[i].name);
	}
}

/* send (version 3) is optional: NULL in a version 3 table, or a version 2
 * table (whose struct ends at pipe2), is valid and precopy_sys_send()
 * answers -ENOSYS without reading past the table. */
Test(sys_validate, send_is_optional)
{
	struct precopy_sys_ops ops = *precopy_sys_real()->ops;
	struct precopy_sys s = { .ops = &ops, .ctx = NULL };
	/* a version 2 table as an embedder built it: the struct ends at pipe2
	 * (on the heap, so ASan sees a read past it) */
	struct ops_v2 {
		uint32_t version;
		void *fn[10];
	} *v2 = malloc(sizeof(*v2));
	struct precopy_sys s2 = { .ops = (const struct precopy_sys_ops *)(void *)v2, .ctx = NULL };
	int sv[2];

	cr_assert_not_null(v2);
	cr_assert_eq(sizeof(*v2), offsetof(struct precopy_sys_ops, send));
	memcpy(v2, &ops, sizeof(*v2));
	v2->version = 2;
	cr_assert_eq(precopy_sys_validate(&s2), 0);
	cr_assert_eq(precopy_sys_send(&s2, 0, "x", 1, 0), -ENOSYS);
	free(v2);
	ops.send = NULL;
	cr_assert_eq(precopy_sys_validate(&s), 0);
	cr_assert_eq(precopy_sys_send(&s, 0, "x", 1, 0), -ENOSYS);
	/* the real send: a count on a socket, -ENOTSOCK elsewhere */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(precopy_sys_send(precopy_sys_real(), sv[0], "x", 1, MSG_NOSIGNAL), 1);
	close(sv[1]);
	cr_assert_eq(precopy_sys_send(precopy_sys_real(), sv[0], "x", 1, MSG_NOSIGNAL), -EPIPE);
	close(sv[0]);
	cr_assert_eq(pipe(sv), 0);
	cr_assert_eq(precopy_sys_send(precopy_sys_real(), sv[1], "x", 1, MSG_NOSIGNAL), -ENOTSOCK);
	close(sv[0]);
	close(sv[1]);
}

/* The asynchronous queue (version 4) is optional and all-or-none: the
 * real table has all four ops; a table without any is valid (plain calls);
 * a table with only some of them is refused. */
Test(sys_validate, aio_ops_all_or_none)
{
	static const struct {
		const char *name;
		size_t off;
	} aio_tab[] = {
		{ "aio_open", offsetof(struct precopy_sys_ops, aio_open) },
		{ "aio_submit", offsetof(struct precopy_sys_ops, aio_submit) },
		{ "aio_reap", offsetof(struct precopy_sys_ops, aio_reap) },
		{ "aio_close", offsetof(struct precopy_sys_ops, aio_close) },
	};
	const struct precopy_sys *real = precopy_sys_real();
	struct precopy_sys_ops ops = *real->ops;
	struct precopy_sys s = { .ops = &ops, .ctx = NULL };
	void *q = (void *)1;

	cr_assert_eq(real->ops->version, 4);
	cr_assert(precopy_sys_has_aio(real), "the real table has the queue");
	cr_assert_eq(precopy_sys_validate(real), 0);
	for (size_t i = 0; i < sizeof(aio_tab) / sizeof(aio_tab[0]); i++) {
		ops = *real->ops;
		memset((char *)&ops + aio_tab[i].off, 0, sizeof(void (*)(void)));
		cr_assert_eq(precopy_sys_validate(&s), -EINVAL, "table without only %s accepted", aio_tab[i].name);
		cr_assert(!precopy_sys_has_aio(&s));
		/* and with only that one */
		ops.aio_open = NULL;
		ops.aio_submit = NULL;
		ops.aio_reap = NULL;
		ops.aio_close = NULL;
		memcpy((char *)&ops + aio_tab[i].off, (const char *)real->ops + aio_tab[i].off, sizeof(void (*)(void)));
		cr_assert_eq(precopy_sys_validate(&s), -EINVAL, "table with only %s accepted", aio_tab[i].name);
	}
	ops = *real->ops;
	ops.aio_open = NULL;
	ops.aio_submit = NULL;
	ops.aio_reap = NULL;
	ops.aio_close = NULL;
	cr_assert_eq(precopy_sys_validate(&s), 0, "a version 4 table without the queue");
	cr_assert(!precopy_sys_has_aio(&s));
	cr_assert_eq(precopy_sys_aio_open(&s, 4, 0, &q), -ENOSYS);
	cr_assert_eq(q, (void *)1);
	/* a version 3 table: its struct ends at send, the queue is never read */
	ops = *real->ops;
	ops.version = 3;
	cr_assert_eq(precopy_sys_validate(&s), 0);
	cr_assert(!precopy_sys_has_aio(&s));
	cr_assert_eq(precopy_sys_aio_open(&s, 4, 0, &q), -ENOSYS);
}
