/* SPDX-License-Identifier: MIT */
/* The vfio-user client (precopy/vfio_user.h) against the tests' own
 * server (tests/lib/vu_server.c) in forked processes over socketpairs:
 * the handshake (with and without twin socket), device and region
 * operations, a whole device state moved from server A (PRE_COPY then
 * STOP_COPY) to server B (RESUMING) which checks every byte, the server's
 * DMA_WRITE/DMA_READ answered while the client waits and the pages written
 * kept in the client's dirty log, DMA logging through the server's mmap,
 * and the failures: a server that dies mid-reply or is killed, one that
 * hangs, garbled replies; no SIGPIPE, bounded waits, no fd left open. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "lib/vu_server.h"
#include "precopy/vfio.h"
#include "precopy/vfio_user.h"
#include "../vfio_user/vu_priv.h"
#include <poll.h>

#define STOP 1
#define RUNNING 2
#define STOP_COPY 3
#define RESUMING 4
#define PRE_COPY 6

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct conn {
	pid_t pid;
	struct precopy_vfio_user *c;
};

static struct conn start(const struct vu_server_cfg *cfg, const struct precopy_vfio_user_opts *o)
{
	struct conn k;
	int fd;
	k.pid = vu_server_spawn(cfg, &fd);
	cr_assert_gt(k.pid, 0);
	int err = 0;
	char msg[256] = "";
	k.c = precopy_vfio_user_open(precopy_sys_real(), fd, o, &err, msg, sizeof(msg));
	cr_assert_not_null(k.c, "open: %d %s", err, msg);
	return k;
}

static void finish(struct conn *k, int want_status)
{
	precopy_vfio_user_close(k->c);
	int st = vu_server_wait(k->pid, 5000);
	if (want_status >= 0)
		cr_assert_eq(st, want_status, "server exit status %d", st);
}

static void init_sigpipe_default(void)
{
	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
}

TestSuite(vfio_user, .init = init_sigpipe_default);

Test(vfio_user, handshake_device_and_regions)
{
	struct vu_server_cfg cfg = { .max_xfer = 32768 };
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.twin_socket = 0;
	o.name = "dev0";
	struct conn k = start(&cfg, &o);
	struct precopy_vfio_user_caps caps;
	cr_assert_eq(precopy_vfio_user_caps(k.c, &caps), 0);
	cr_assert_eq(caps.major, 0);
	cr_assert_eq(caps.minor, 2);
	cr_assert_eq(caps.max_msg_fds, 8);
	cr_assert_eq(caps.max_data_xfer_size, 32768);
	cr_assert_eq(caps.msg_bytes, 32768, "lowered to the server's max_data_xfer_size");
	cr_assert_eq(caps.migration_pgsize, 4096);
	cr_assert_eq(caps.twin_socket, 0);

	uint32_t flags, nreg, nirq;
	cr_assert_eq(precopy_vfio_user_device_info(k.c, &flags, &nreg, &nirq), 0);
	cr_assert_eq(flags, PRECOPY_VFIO_USER_DEVICE_RESET | PRECOPY_VFIO_USER_DEVICE_PCI);
	cr_assert_eq(nreg, 9);
	struct precopy_vfio_user_region r;
	int rfd = 7;
	cr_assert_eq(precopy_vfio_user_region_info(k.c, 0, &r, &rfd), 0);
	cr_assert_eq(r.size, 4096);
	cr_assert_eq(r.flags, PRECOPY_VFIO_USER_REGION_READ | PRECOPY_VFIO_USER_REGION_WRITE);
	cr_assert_eq(rfd, -1, "no fd for a region that is not mmap-able");
	cr_assert_eq(precopy_vfio_user_region_info(k.c, 9, &r, NULL), -EINVAL);
	cr_assert(strstr(precopy_vfio_user_error(k.c),
			 "vfio-user dev0: DEVICE_GET_REGION_INFO region 9: server error EINVAL"),
		  "%s", precopy_vfio_user_error(k.c));

	uint8_t w[200], rd[200];
	for (int i = 0; i < 200; i++)
		w[i] = (uint8_t)(i ^ 0x5a);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0x20, w, sizeof(w)), 0);
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0x20, rd, sizeof(rd)), 0);
	cr_assert_eq(memcmp(w, rd, sizeof(w)), 0);
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 2, 0x10, rd, 4), -EINVAL);
	cr_assert(strstr(precopy_vfio_user_error(k.c), "REGION_READ region 2 offset 0x10: server error EINVAL"),
		  "%s", precopy_vfio_user_error(k.c));
	/* a server error does not break the connection */
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0x20, rd, 4), 0);

	uint64_t mf;
	cr_assert_eq(precopy_vfio_user_migration_flags(k.c, &mf), 0);
	cr_assert_eq(mf, 1 | 4, "STOP_COPY | PRE_COPY");
	uint32_t st;
	cr_assert_eq(precopy_vfio_user_get_state(k.c, &st), 0);
	cr_assert_eq(st, RUNNING);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, STOP), 0);
	cr_assert_eq(precopy_vfio_user_reset(k.c), -EINVAL, "refused in STOP, as real servers do");
	cr_assert_eq(precopy_vfio_user_set_state(k.c, RUNNING), 0);
	cr_assert_eq(precopy_vfio_user_reset(k.c), 0);
	finish(&k, 0);
}

static void doorbell(struct precopy_vfio_user *c, uint64_t iova, uint64_t len, uint8_t val, uint32_t go);

static uint64_t eventfd_count(int efd)
{
	uint64_t v = 0;
	return read(efd, &v, 8) == 8 ? v : 0;
}

Test(vfio_user, irqs_by_eventfd)
{
	struct vu_server_cfg cfg = { .max_fds = 3 }; /* 7 MSI-X eventfds: 3 messages */
	struct conn k = start(&cfg, NULL);
	uint32_t flags, count, nirq;
	cr_assert_eq(precopy_vfio_user_device_info(k.c, NULL, NULL, &nirq), 0);
	cr_assert_eq(nirq, 5);
	cr_assert_eq(precopy_vfio_user_irq_info(k.c, 0, &flags, &count), 0);
	cr_assert_eq(count, 1);
	cr_assert(flags & PRECOPY_VFIO_USER_IRQ_INFO_EVENTFD);
	cr_assert_eq(precopy_vfio_user_irq_info(k.c, 2, &flags, &count), 0);
	cr_assert_eq(count, 7);
	cr_assert_eq(precopy_vfio_user_irq_info(k.c, 5, &flags, &count), -EINVAL);
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	const uint32_t trig = PRECOPY_VFIO_USER_IRQ_DATA_EVENTFD | PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER;
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 0, trig, 0, 1, fds), 0, "%s", precopy_vfio_user_error(k.c));
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 2, trig, 0, 7, fds + 1), 0, "%s", precopy_vfio_user_error(k.c));
	for (int v = 0; v < 8; v++)
		doorbell(k.c, 0, 0, (uint8_t)v, 5);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(eventfd_count(fds[i]), 1, "IRQ %d", i);
	/* MSI-X off: raising vector 3 fails on the device side */
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 2, PRECOPY_VFIO_USER_IRQ_DATA_NONE |
							  PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER, 0, 0, NULL), 0);
	uint8_t r[24] = { 0 };
	uint32_t go = 5;
	r[16] = 4;
	memcpy(r + 20, &go, 4);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0x100, r, sizeof(r)), -ENOENT);
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 0, trig, 0, 1, (int[]){ -1 }), -EINVAL);
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 0, PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER, 0, 1, NULL), -EINVAL,
		     "no DATA_ bit");
	cr_assert_eq(precopy_vfio_user_set_irqs(k.c, 0, 2 | PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER, 0, 1, NULL),
		     -EINVAL, "DATA_BOOL is not offered");
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	finish(&k, 0);
}

Test(vfio_user, no_migration_is_einval)
{
	struct vu_server_cfg cfg = { .no_migration = 1 };
	struct conn k = start(&cfg, NULL);
	uint64_t mf;
	cr_assert_eq(precopy_vfio_user_migration_flags(k.c, &mf), -EINVAL);
	cr_assert(strstr(precopy_vfio_user_error(k.c), "DEVICE_FEATURE MIGRATION: server error EINVAL"));
	finish(&k, 0);
}

/* read a saving state to its end */
static size_t drain(struct precopy_vfio_user *c, uint8_t *out, size_t cap, size_t at)
{
	for (;;) {
		ssize_t n = precopy_vfio_user_mig_read(c, out + at, cap - at);
		cr_assert_geq(n, 0, "mig_read: %s", precopy_vfio_user_error(c));
		if (n == 0)
			return at;
		at += (size_t)n;
		cr_assert_lt(at, cap);
	}
}

static void transfer(int corrupt)
{
	const uint64_t state = 150000;
	struct vu_server_cfg ca = { .seed = 0x1234, .state_bytes = state, .precopy_bytes = 50000, .pad_reads = 1 };
	struct vu_server_cfg cb = { .seed = 0x9999 };
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.msg_bytes = 4096; /* many messages each way */
	struct conn a = start(&ca, &o), b = start(&cb, &o);

	uint8_t bar[256];
	for (int i = 0; i < 256; i++)
		bar[i] = (uint8_t)(255 - i);
	cr_assert_eq(precopy_vfio_user_region_write(a.c, 0, 0, bar, sizeof(bar)), 0);

	size_t cap = state + 4096;
	uint8_t *s = malloc(cap);
	cr_assert_eq(precopy_vfio_user_set_state(a.c, PRE_COPY), 0);
	size_t n = drain(a.c, s, cap, 0);
	cr_assert_eq(n, 50000, "PRE_COPY hands out its initial bytes, then 0");
	cr_assert_eq(precopy_vfio_user_mig_read(a.c, s + n, cap - n), 0, "still nothing now");
	cr_assert_eq(precopy_vfio_user_set_state(a.c, STOP_COPY), 0);
	n = drain(a.c, s, cap, n);
	cr_assert_eq(n, 24 + state + 256);
	cr_assert_eq(precopy_vfio_user_set_state(a.c, STOP), 0);

	if (corrupt)
		s[24 + 77777] ^= 1;
	cr_assert_eq(precopy_vfio_user_set_state(b.c, RESUMING), 0, "%s", precopy_vfio_user_error(b.c));
	cr_assert_eq(precopy_vfio_user_mig_write(b.c, s, n), 0, "%s", precopy_vfio_user_error(b.c));
	int r = precopy_vfio_user_set_state(b.c, STOP);
	if (corrupt) {
		cr_assert_eq(r, -EINVAL, "the destination refuses a corrupted state");
		cr_assert(strstr(precopy_vfio_user_error(b.c), "MIG_DEVICE_STATE set STOP: server error EINVAL"),
			  "%s", precopy_vfio_user_error(b.c));
	} else {
		cr_assert_eq(r, 0, "%s", precopy_vfio_user_error(b.c));
		cr_assert_eq(precopy_vfio_user_set_state(b.c, RUNNING), 0);
		uint8_t got[256];
		cr_assert_eq(precopy_vfio_user_region_read(b.c, 0, 0, got, sizeof(got)), 0);
		cr_assert_eq(memcmp(got, bar, sizeof(bar)), 0, "B's BAR0 is A's");
	}
	free(s);
	finish(&a, 0);
	finish(&b, 0);
}

Test(vfio_user, state_moves_from_a_to_b)
{
	transfer(0);
}

Test(vfio_user, corrupted_state_is_refused_by_b)
{
	transfer(1);
}

/* A destination given half a stream: leaving RESUMING fails (the server
 * checks what it holds). A server that then goes to ERROR is reset back
 * to RUNNING by the failed move's recovery; one that stays in RESUMING is
 * brought out by precopy__vu_abort() (DEVICE_RESET aborts the session). */
static void half_stream(int to_error)
{
	struct vu_server_cfg cb = { .seed = 1, .error_on_bad_stream = to_error };
	struct conn b = start(&cb, NULL);
	uint8_t junk[100];
	uint64_t flags;
	uint32_t st = RUNNING;
	int recovered = -1;

	memset(junk, 0x5a, sizeof(junk));
	cr_assert_eq(precopy_vfio_user_migration_flags(b.c, &flags), 0);
	cr_assert_eq(precopy__vu_move(b.c, &st, RESUMING, flags, RUNNING, NULL, NULL), 0);
	cr_assert_eq(precopy_vfio_user_mig_write(b.c, junk, sizeof(junk)), 0);
	cr_assert_eq(precopy__vu_move(b.c, &st, STOP, flags, RUNNING, NULL, &recovered), -EINVAL);
	if (to_error) {
		cr_assert_eq(st, RUNNING, "ERROR -> DEVICE_RESET -> RUNNING, in %u", st);
		cr_assert_eq(recovered, 1);
	} else {
		cr_assert_eq(st, RESUMING, "the arcs cannot leave RESUMING with a bad stream");
		cr_assert_eq(recovered, 0);
		cr_assert_eq(precopy__vu_abort(b.c, &st, flags), 0, "%s", precopy_vfio_user_error(b.c));
		cr_assert_eq(st, RUNNING);
	}
	cr_assert_eq(precopy_vfio_user_get_state(b.c, &st), 0);
	cr_assert_eq(st, RUNNING);
	/* and it takes a good stream afterwards: a fresh session */
	cr_assert_eq(precopy__vu_move(b.c, &st, RESUMING, flags, RUNNING, NULL, NULL), 0);
	cr_assert_eq(precopy__vu_move(b.c, &st, STOP, flags, RUNNING, NULL, NULL), -EINVAL, "an empty stream");
	cr_assert_eq(precopy__vu_abort(b.c, &st, flags), 0);
	cr_assert_eq(st, RUNNING);
	finish(&b, 0);
}

Test(vfio_user, half_stream_left_by_reset)
{
	half_stream(0);
}

Test(vfio_user, half_stream_error_state_reset)
{
	half_stream(1);
}

/* The drain's split read: a request in flight, reaped when its reply
 * arrives (-EAGAIN before), one at a time (-EBUSY), and a request left in
 * flight settled by the next request on the handle. */
Test(vfio_user, split_read_reaped_and_settled)
{
	struct vu_server_cfg ca = { .seed = 5, .state_bytes = 200000, .read_delay_us = 30000, .twin = 1 };
	struct conn a = start(&ca, NULL);
	uint8_t *buf = malloc(PRECOPY_VFIO_USER_MSG_BYTES);
	struct pollfd pf[2];
	int fds[2], n;
	ssize_t got;
	uint32_t st;

	cr_assert_not_null(buf);
	cr_assert_eq(precopy_vfio_user_set_state(a.c, STOP_COPY), 0);
	cr_assert_eq(precopy__vu_read_reap(a.c, buf), -EINVAL, "nothing in flight");
	cr_assert_eq(precopy__vu_read_send(a.c, 1u << 20), 0, "%s", precopy_vfio_user_error(a.c));
	cr_assert_eq(precopy__vu_read_send(a.c, 4096), -EBUSY);
	cr_assert_eq(precopy__vu_read_reap(a.c, buf), -EAGAIN, "the server takes 30 ms");
	n = precopy__vu_poll_fds(a.c, fds);
	cr_assert_eq(n, 2, "twin-socket mode: two sockets");
	do {
		for (int i = 0; i < n; i++)
			pf[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		cr_assert_geq(poll(pf, (nfds_t)n, 1000), 1);
		got = precopy__vu_read_reap(a.c, buf);
	} while (got == -EAGAIN);
	cr_assert_eq(got, PRECOPY_VFIO_USER_MSG_BYTES, "one message of msg_bytes: %zd %s", got,
		     precopy_vfio_user_error(a.c));
	cr_assert_eq(memcmp(buf, "VUST", 4), 0);
	/* another in flight, then a plain request: the reply in between is
	 * awaited and dropped, the connection stays in step */
	cr_assert_eq(precopy__vu_read_send(a.c, 4096), 0);
	cr_assert_eq(precopy_vfio_user_get_state(a.c, &st), 0, "%s", precopy_vfio_user_error(a.c));
	cr_assert_eq(st, STOP_COPY);
	got = precopy_vfio_user_mig_read(a.c, buf, 4096);
	cr_assert_eq(got, 4096, "%s", precopy_vfio_user_error(a.c));
	cr_assert_eq(buf[0], vu_pattern(5, PRECOPY_VFIO_USER_MSG_BYTES + 4096 - 24), "the stream went on after the dropped reply");
	free(buf);
	finish(&a, 0);
}

Test(vfio_user, messages_stay_within_the_servers_limit)
{
	/* the server refuses (EINVAL) any MIG_DATA_READ/WRITE above its
	 * max_data_xfer_size: a whole transfer passing is the check */
	const uint64_t state = 30000;
	struct vu_server_cfg ca = { .max_xfer = 5000, .seed = 7, .state_bytes = state };
	struct vu_server_cfg cb = { .max_xfer = 5000 };
	struct conn a = start(&ca, NULL), b = start(&cb, NULL);
	struct precopy_vfio_user_caps caps;
	precopy_vfio_user_caps(a.c, &caps);
	cr_assert_eq(caps.msg_bytes, 5000, "64 KiB lowered to the server's 5000");
	uint8_t *s = malloc(state + 1024);
	cr_assert_eq(precopy_vfio_user_set_state(a.c, STOP_COPY), 0);
	ssize_t n = precopy_vfio_user_mig_read(a.c, s, state + 1024);
	cr_assert_eq(n, 5000, "one message of at most msg_bytes");
	size_t got = drain(a.c, s, state + 1024, (size_t)n);
	cr_assert_eq(got, 24 + state + 256);
	cr_assert_eq(precopy_vfio_user_set_state(b.c, RESUMING), 0);
	cr_assert_eq(precopy_vfio_user_mig_write(b.c, s, got), 0, "%s", precopy_vfio_user_error(b.c));
	cr_assert_eq(precopy_vfio_user_set_state(b.c, STOP), 0, "%s", precopy_vfio_user_error(b.c));
	free(s);
	finish(&a, 0);
	finish(&b, 0);
}

Test(vfio_user, transitions_follow_the_shortest_path)
{
	struct vu_server_cfg cfg = { .state_bytes = 10 };
	struct conn k = start(&cfg, NULL);
	uint32_t st;
	/* RUNNING -> STOP_COPY goes through STOP; PRE_COPY -> STOP through RUNNING */
	cr_assert_eq(precopy_vfio_user_set_state(k.c, STOP_COPY), 0);
	cr_assert_eq(precopy_vfio_user_get_state(k.c, &st), 0);
	cr_assert_eq(st, STOP_COPY);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, PRE_COPY), -EINVAL, "STOP_COPY -> PRE_COPY is not allowed");
	cr_assert_eq(precopy_vfio_user_set_state(k.c, RUNNING), 0);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, PRE_COPY), 0);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, STOP), 0);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, 0), -EINVAL, "ERROR cannot be asked for");
	finish(&k, 0);
}

static uint8_t *guest(size_t size, int *fd)
{
	*fd = memfd_create("vu-guest", MFD_CLOEXEC);
	cr_assert_geq(*fd, 0);
	cr_assert_eq(ftruncate(*fd, (off_t)size), 0);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

static void doorbell(struct precopy_vfio_user *c, uint64_t iova, uint64_t len, uint8_t val, uint32_t go)
{
	uint8_t r[24] = { 0 };
	memcpy(r, &iova, 8);
	memcpy(r + 8, &len, 8);
	r[16] = val;
	memcpy(r + 20, &go, 4);
	cr_assert_eq(precopy_vfio_user_region_write(c, 0, 0x100, r, sizeof(r)), 0, "%s",
		     precopy_vfio_user_error(c));
}

static void dma_by_message(int twin)
{
	const size_t gsz = 1 << 20;
	const uint64_t base = 0x100000;
	struct vu_server_cfg cfg = { .state_bytes = 100000, .precopy_bytes = 100000, .dma_every = 1,
				     .dma_iova = base + 0x3000, .dma_len = 0x2100, .dma_val = 0xab, .twin = twin };
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.twin_socket = twin;
	o.msg_bytes = 4096; /* the server's DMA_WRITEs come in 4 KiB pieces */
	struct conn k = start(&cfg, &o);
	struct precopy_vfio_user_caps caps;
	precopy_vfio_user_caps(k.c, &caps);
	cr_assert_eq(caps.twin_socket, twin);
	int gfd;
	uint8_t *g = guest(gsz, &gfd);
	/* no fd: the server must reach guest memory by message */
	cr_assert_eq(precopy_vfio_user_dma_map(k.c, base, gsz, g, -1, 0,
					       PRECOPY_VFIO_USER_DMA_READ | PRECOPY_VFIO_USER_DMA_WRITE),
		     0);
	cr_assert_eq(precopy_vfio_user_dma_map(k.c, base + 4096, 4096, g, -1, 0, 1), -EEXIST);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, PRE_COPY), 0);
	uint8_t buf[4096];
	cr_assert_eq(precopy_vfio_user_mig_read(k.c, buf, sizeof(buf)), 4096, "%s", precopy_vfio_user_error(k.c));
	for (size_t i = 0; i < gsz; i++) {
		int in = i >= 0x3000 && i < 0x5100;
		cr_assert_eq(g[i], in ? 0xab : 0, "byte 0x%zx", i);
	}
	uint64_t bm[4] = { 0 };
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base, 256 * 4096, bm, 4, 1), 0);
	cr_assert_eq(bm[0], 0x38ull, "pages 3, 4 and 5 written by DMA_WRITE");
	cr_assert_eq(bm[1] | bm[2] | bm[3], 0);
	memset(bm, 0, sizeof(bm));
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base, 256 * 4096, bm, 4, 0), 0);
	cr_assert_eq(bm[0], 0, "cleared");
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base, 256 * 4096, bm, 3, 0), -ERANGE);
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base + 1, 4096, bm, 4, 0), -EINVAL);

	/* the doorbell: a DMA_WRITE while the client waits for its REGION_WRITE
	 * reply, then a DMA_READ whose byte sum the device keeps */
	doorbell(k.c, base + 0x80000, 3 * 4096 + 10, 0x11, 1);
	cr_assert_eq(g[0x80000], 0x11);
	cr_assert_eq(g[0x80000 + 3 * 4096 + 9], 0x11);
	cr_assert_eq(g[0x80000 + 3 * 4096 + 10], 0);
	memset(bm, 0, sizeof(bm));
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base + 0x80000, 64 * 4096, bm, 1, 1), 0);
	cr_assert_eq(bm[0], 0xf);
	doorbell(k.c, base + 0x3000, 0x2100, 0, 3);
	uint64_t sum = 0;
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0x118, &sum, 8), 0);
	cr_assert_eq(sum, 0x2100ull * 0xab);
	/* a DMA outside every mapping: the client answers EFAULT, the device
	 * reports it */
	uint8_t r[24] = { 0 };
	uint64_t iova = 0x10, len = 16;
	uint32_t go = 1;
	memcpy(r, &iova, 8);
	memcpy(r + 8, &len, 8);
	memcpy(r + 20, &go, 4);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0x100, r, sizeof(r)), -EFAULT);
	/* a read-only mapping refuses the device's writes (EPERM), serves
	 * its reads */
	cr_assert_eq(precopy_vfio_user_dma_map(k.c, 0x10000000, 0x10000, g, -1, 0, PRECOPY_VFIO_USER_DMA_READ), 0);
	iova = 0x10000000;
	memcpy(r, &iova, 8);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0x100, r, sizeof(r)), -EPERM);
	go = 3;
	memcpy(r + 20, &go, 4);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0x100, r, sizeof(r)), 0);
	cr_assert_eq(precopy_vfio_user_dma_unmap(k.c, 0x10000000, 0x10000), 0);
	cr_assert_eq(precopy_vfio_user_dma_unmap(k.c, base, gsz), 0);
	cr_assert_eq(precopy_vfio_user_dma_unmap(k.c, base, gsz), -ENOENT);
	finish(&k, 0);
	munmap(g, gsz);
	close(gfd);
}

Test(vfio_user, dma_write_answered_while_waiting)
{
	dma_by_message(0);
}

Test(vfio_user, dma_write_on_the_twin_socket)
{
	dma_by_message(1);
}

Test(vfio_user, dma_logging_through_the_servers_mmap)
{
	const size_t gsz = 1 << 20;
	const uint64_t base = 0x400000;
	struct vu_server_cfg cfg = { 0 };
	struct conn k = start(&cfg, NULL);
	int gfd;
	uint8_t *g = guest(gsz, &gfd);
	cr_assert_eq(precopy_vfio_user_dma_map(k.c, base, gsz, g, gfd, 0,
					       PRECOPY_VFIO_USER_DMA_READ | PRECOPY_VFIO_USER_DMA_WRITE),
		     0);
	uint64_t chosen = 0;
	cr_assert_eq(precopy_vfio_user_dma_logging_start(k.c, 4096, NULL, 0, &chosen), 0, "%s",
		     precopy_vfio_user_error(k.c));
	cr_assert_eq(chosen, 4096);
	doorbell(k.c, base + 70 * 4096 + 100, 2 * 4096, 0x42, 2); /* pages 70, 71, 72 */
	cr_assert_eq(g[70 * 4096 + 100], 0x42, "written through the server's mmap");
	uint64_t bm[4] = { 0 };
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, gsz, 4096, bm, 4), 0, "%s",
		     precopy_vfio_user_error(k.c));
	cr_assert_eq(bm[0], 0);
	cr_assert_eq(bm[1], 0x7ull << 6);
	cr_assert_eq(bm[2] | bm[3], 0);
	uint64_t mine[4] = { 0 };
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, base, gsz, mine, 4, 0), 0);
	cr_assert_eq(mine[1], 0, "mmap writes are the server's log, not the client's");
	memset(bm, 0, sizeof(bm));
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, gsz, 4096, bm, 4), 0);
	cr_assert_eq(bm[1], 0, "a report clears what it reported");
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, gsz, 8192, bm, 4), -EINVAL,
		     "another page size than START's");
	cr_assert(strstr(precopy_vfio_user_error(k.c), "page size differs from DMA_LOGGING_START's 4096"));
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base + 4096, 64 * 4096, 4096, bm, 4), -EINVAL);
	cr_assert(strstr(precopy_vfio_user_error(k.c), "must start at a DMA mapping's start"));
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, 100 * 4096, 4096, bm, 4), -EINVAL);
	cr_assert(strstr(precopy_vfio_user_error(k.c), "whole 64-page words"));
	doorbell(k.c, base + 5 * 4096, 1, 0x43, 2);
	memset(bm, 0, sizeof(bm));
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, 64 * 4096, 4096, bm, 1), 0,
		     "a prefix of whole words");
	cr_assert_eq(bm[0], 1ull << 5);
	cr_assert_eq(precopy_vfio_user_dma_logging_report(k.c, base, gsz, 4096, bm, 3), -ERANGE);
	cr_assert_eq(precopy_vfio_user_dma_logging_stop(k.c), 0);
	finish(&k, 0);
	munmap(g, gsz);
	close(gfd);
}

Test(vfio_user, server_dying_mid_reply)
{
	struct vu_server_cfg cfg = { .state_bytes = 100000, .precopy_bytes = 100000, .die_at = 3 };
	struct conn k = start(&cfg, NULL);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, PRE_COPY), 0);
	uint8_t buf[8192];
	cr_assert_eq(precopy_vfio_user_mig_read(k.c, buf, sizeof(buf)), 8192);
	cr_assert_eq(precopy_vfio_user_mig_read(k.c, buf, sizeof(buf)), 8192);
	double t0 = now_s();
	cr_assert_eq(precopy_vfio_user_mig_read(k.c, buf, sizeof(buf)), -ECONNRESET);
	cr_assert_lt(now_s() - t0, 2.0);
	const char *e = precopy_vfio_user_error(k.c);
	cr_assert(strstr(e, "MIG_DATA_READ: connection closed by the server after"), "%s", e);
	cr_assert_eq(precopy_vfio_user_region_write(k.c, 0, 0, buf, 4), -ENOTCONN);
	finish(&k, 0);
}

Test(vfio_user, server_killed_then_a_request_is_sent)
{
	struct vu_server_cfg cfg = { 0 };
	struct conn k = start(&cfg, NULL);
	kill(k.pid, SIGKILL);
	cr_assert_eq(vu_server_wait(k.pid, 5000), 128 + SIGKILL);
	uint8_t big[60000] = { 0 };
	/* the first send may still fit the socket buffer: then the reply's
	 * absence is seen; either way no SIGPIPE, a named error */
	int r = precopy_vfio_user_mig_write(k.c, big, sizeof(big));
	cr_assert(r == -ECONNRESET, "got %d: %s", r, precopy_vfio_user_error(k.c));
	cr_assert(strstr(precopy_vfio_user_error(k.c), "connection closed by the server"), "%s",
		  precopy_vfio_user_error(k.c));
	precopy_vfio_user_close(k.c);
}

Test(vfio_user, hung_server_times_out)
{
	struct vu_server_cfg cfg = { .state_bytes = 1000, .hang_at = 1 };
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.timeout_ms = 300;
	o.name = "slow";
	struct conn k = start(&cfg, &o);
	cr_assert_eq(precopy_vfio_user_set_state(k.c, PRE_COPY), 0);
	uint8_t buf[64];
	double t0 = now_s();
	cr_assert_eq(precopy_vfio_user_mig_read(k.c, buf, sizeof(buf)), -ETIMEDOUT);
	double dt = now_s() - t0;
	cr_assert(dt >= 0.25 && dt < 3.0, "waited %.3f s", dt);
	cr_assert(strstr(precopy_vfio_user_error(k.c), "vfio-user slow: MIG_DATA_READ: no reply within 300 ms"),
		  "%s", precopy_vfio_user_error(k.c));
	cr_assert_eq(precopy_vfio_user_get_state(k.c, (uint32_t[]){ 0 }), -ENOTCONN,
		     "a late reply could not be told from the next one's");
	kill(k.pid, SIGKILL);
	finish(&k, 128 + SIGKILL);
}

static void garbled(unsigned kind, int want, const char *text)
{
	struct vu_server_cfg cfg = { .garble_at = 2, .garble_kind = kind };
	struct conn k = start(&cfg, NULL);
	uint8_t buf[16];
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0, buf, sizeof(buf)), 0);
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0, buf, sizeof(buf)), want, "kind %u: %s", kind,
		     precopy_vfio_user_error(k.c));
	cr_assert(strstr(precopy_vfio_user_error(k.c), text), "kind %u: %s", kind, precopy_vfio_user_error(k.c));
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0, buf, sizeof(buf)), -ENOTCONN);
	precopy_vfio_user_close(k.c);
	vu_server_wait(k.pid, 5000);
}

Test(vfio_user, garbled_replies)
{
	garbled(1, -EPROTO, "REGION_READ region 0 offset 0x0: bad reply: reply to another message id");
	garbled(2, -EPROTO, "bad reply: REGION_READ reply data length differs from its count");
	garbled(3, -EPROTO, "bad reply: error reply without an errno");
	garbled(4, -ECONNRESET, "connection closed by the server after");
}

Test(vfio_user, no_fd_left_open)
{
	int before = count_fds();
	for (int twin = 0; twin < 2; twin++) {
		struct vu_server_cfg cfg = { .twin = twin };
		struct precopy_vfio_user_opts o;
		precopy_vfio_user_opts_init(&o);
		o.twin_socket = twin;
		struct conn k = start(&cfg, &o);
		int gfd;
		uint8_t *g = guest(1 << 16, &gfd);
		cr_assert_eq(precopy_vfio_user_dma_map(k.c, 0x10000, 1 << 16, g, gfd, 0, 3), 0);
		struct precopy_vfio_user_region r;
		cr_assert_eq(precopy_vfio_user_region_info(k.c, 0, &r, NULL), 0);
		finish(&k, 0);
		munmap(g, 1 << 16);
		close(gfd);
	}
	/* a failed open closes the fd it was given */
	struct vu_server_cfg cfg = { 0 };
	int fd;
	pid_t pid = vu_server_spawn(&cfg, &fd);
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.msg_bytes = 100;
	int err = 0;
	char msg[128];
	cr_assert_null(precopy_vfio_user_open(precopy_sys_real(), fd, &o, &err, msg, sizeof(msg)));
	cr_assert_eq(err, -EINVAL);
	cr_assert(strstr(msg, "opts.msg_bytes"), "%s", msg);
	vu_server_wait(pid, 5000);
	cr_assert_eq(count_fds(), before);
}

static void dma_while_idle(int twin)
{
	const size_t gsz = 1 << 16;
	struct vu_server_cfg cfg = { .twin = twin };
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.twin_socket = twin;
	struct conn k = start(&cfg, &o);
	int gfd;
	uint8_t *g = guest(gsz, &gfd);
	cr_assert_eq(precopy_vfio_user_dma_map(k.c, 0x10000, gsz, g, -1, 0, 3), 0);
	doorbell(k.c, 0x10000 + 0x2000, 0x1800, 0x77, 4);
	/* the server now writes by message and waits for the answers */
	/* (on the twin socket the command may also come while the client
	 * still waits for the REGION_WRITE's reply: then it is answered
	 * there, and serve finds nothing) */
	int served = 0;
	for (int i = 0; i < 50 && g[0x37ff] != 0x77; i++) {
		int n = precopy_vfio_user_serve(k.c, 100);
		cr_assert_geq(n, 0, "%s", precopy_vfio_user_error(k.c));
		served += n;
	}
	cr_assert_leq(served, 1, "one DMA_WRITE of 6 KiB (the client's limit is 64 KiB)");
	if (!twin)
		cr_assert_eq(served, 1, "on the main socket it can only come after the reply");
	cr_assert_eq(g[0x2000], 0x77);
	cr_assert_eq(g[0x37ff], 0x77);
	cr_assert_eq(g[0x3800], 0);
	uint64_t bm[1] = { 0 };
	cr_assert_eq(precopy_vfio_user_dma_dirty(k.c, 0x10000, gsz, bm, 1, 0), 0);
	cr_assert_eq(bm[0], 0xc, "pages 2 and 3");
	/* and the connection is still in step */
	uint8_t b[8];
	cr_assert_eq(precopy_vfio_user_region_read(k.c, 0, 0, b, sizeof(b)), 0);
	finish(&k, 0);
	munmap(g, gsz);
	close(gfd);
}

Test(vfio_user, dma_served_between_requests)
{
	dma_while_idle(0);
}

Test(vfio_user, dma_served_between_requests_twin)
{
	dma_while_idle(1);
}

/* A seam whose poll says "ready" without anything to read: the wait must
 * end by counting wake-ups, long before the time limit. */
static int lying;
static int lying_poll(void *ctx, struct pollfd *fds, unsigned int n, int timeout_ms)
{
	if (!lying)
		return precopy_sys_real()->ops->poll(ctx, fds, n, timeout_ms);
	for (unsigned i = 0; i < n; i++)
		fds[i].revents = fds[i].events & POLLIN;
	return (int)n;
}

Test(vfio_user, wakeups_without_progress_end_the_wait)
{
	static struct precopy_sys_ops ops;
	ops = *precopy_sys_real()->ops;
	ops.poll = lying_poll;
	struct precopy_sys sys = { .ops = &ops, .ctx = precopy_sys_real()->ctx };
	struct vu_server_cfg cfg = { .state_bytes = 100, .hang_at = 1 };
	int fd;
	pid_t pid = vu_server_spawn(&cfg, &fd);
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.timeout_ms = 3600000; /* an hour: only the wake-up count can end it */
	int err;
	struct precopy_vfio_user *c = precopy_vfio_user_open(&sys, fd, &o, &err, NULL, 0);
	cr_assert_not_null(c);
	cr_assert_eq(precopy_vfio_user_set_state(c, PRE_COPY), 0);
	lying = 1;
	uint8_t b[16];
	double t0 = now_s();
	cr_assert_eq(precopy_vfio_user_mig_read(c, b, sizeof(b)), -ETIMEDOUT);
	cr_assert_lt(now_s() - t0, 5.0);
	precopy_vfio_user_close(c);
	kill(pid, SIGKILL);
	vu_server_wait(pid, 5000);
}

Test(vfio_user, serve_with_nothing_pending)
{
	struct vu_server_cfg cfg = { 0 };
	struct conn k = start(&cfg, NULL);
	cr_assert_eq(precopy_vfio_user_serve(k.c, 0), 0);
	cr_assert_eq(precopy_vfio_user_serve(k.c, 20), 0);
	cr_assert_geq(precopy_vfio_user_fd(k.c), 0);
	finish(&k, 0);
}
