/* SPDX-License-Identifier: MIT */
/* tests/test-engine-interrupt.c — precopy_engine_interrupt() and
 * precopy_dest_interrupt() from another thread end a blocked call
 * promptly: the source blocked writing device data into a stream nobody
 * reads (the I/O timeout, 10 s, would end it otherwise), the destination
 * blocked in precopy_dest_poll() with a 10 s timeout. The call fails with
 * -ECANCELED and a message, every device is RUNNING again, and a new
 * migration on the same engines is byte-equal. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_interrupt, .fini = fini);

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct later {
	pthread_t t;
	int dest; /* 0: the source engine, 1: the destination */
};

static void *interrupt_later(void *arg)
{
	struct later *l = arg;

	usleep(100000);
	if (l->dest)
		cr_assert_eq(precopy_dest_interrupt(H.dst), 0);
	else
		cr_assert_eq(precopy_engine_interrupt(H.src), 0);
	return NULL;
}

static void drain_socket(int fd)
{
	char buf[65536];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* What a VMM does after a cancelled attempt: both sides idle, the stale
 * stream bytes discarded, then a new migration. */
static void next_migration_ok(void)
{
	struct run_result rr;
	int r;

	precopy_engine_cancel(H.src);
	precopy_dest_cancel(H.dst);
	drain_socket(H.st[1]);
	drain_socket(H.rp[0]);
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "the next migration: %d: %s / %s", r, precopy_engine_strerror(H.src),
		     precopy_dest_strerror(H.dst));
	cr_assert(ram_equal(), "destination RAM differs after the interrupted attempt");
}

Test(engine_interrupt, source_blocked_in_a_stream_write)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct later l = { .dest = 0 };
	int small = 4096;
	double t0, took;
	int64_t n;

	h_setup(1, flags, 1);
	/* a stream that holds a few KiB: the device's 20000 initial bytes block */
	cr_assert_eq(setsockopt(H.st[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	cr_assert_eq(setsockopt(H.st[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	h_engines();
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(pthread_create(&l.t, NULL, interrupt_later, &l), 0);
	t0 = wall();
	n = precopy_engine_pump(H.src, 0); /* nobody reads the stream */
	took = wall() - t0;
	pthread_join(l.t, NULL);
	cr_assert_eq(n, -ECANCELED, "pump returned %lld: %s", (long long)n, precopy_engine_strerror(H.src));
	cr_assert_lt(took, 2.0, "the interrupt took %.3f s to end the wait", took);
	cr_assert(strstr(precopy_engine_strerror(H.src), "interrupt"), "message: %s", precopy_engine_strerror(H.src));
	assert_all_running();
	fprintf(stderr, "engine_interrupt: source write wait ended %.3f s after the pump began\n", took);
	/* an interrupt made before start belongs to no migration */
	cr_assert_eq(precopy_engine_interrupt(H.src), 0);
	small = 1 << 20; /* the next migration's stream is not the bottleneck */
	cr_assert_eq(setsockopt(H.st[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	cr_assert_eq(setsockopt(H.st[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	next_migration_ok();
	cr_assert_eq(precopy_engine_interrupt(NULL), -EINVAL);
}

Test(engine_interrupt, destination_blocked_in_poll)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct later l = { .dest = 1 };
	double t0, took;
	int64_t n;

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_dest_start(H.dst), 0);
	cr_assert_eq(pthread_create(&l.t, NULL, interrupt_later, &l), 0);
	t0 = wall();
	n = precopy_dest_poll(H.dst, 10000); /* no source: nothing comes */
	took = wall() - t0;
	pthread_join(l.t, NULL);
	cr_assert_eq(n, -ECANCELED, "poll returned %lld: %s", (long long)n, precopy_dest_strerror(H.dst));
	cr_assert_lt(took, 2.0, "the interrupt took %.3f s to end the poll", took);
	cr_assert(strstr(precopy_dest_strerror(H.dst), "interrupt"), "message: %s", precopy_dest_strerror(H.dst));
	for (int i = 0; i < H.ndev; i++)
		cr_assert_eq(fake_state(H.ddev[i]), VFIO_DEVICE_STATE_RUNNING, "destination device %d", i);
	/* polls after it (until the next start) say so too, at once */
	cr_assert_eq(precopy_dest_poll(H.dst, 0), -EBUSY);
	fprintf(stderr, "engine_interrupt: destination poll ended %.3f s after it began\n", took);
	next_migration_ok();
	cr_assert_eq(precopy_dest_interrupt(NULL), -EINVAL);
}
