/* SPDX-License-Identifier: MIT */
/* Helpers shared by the pump suites (tests/test-pump*.c): clocks, a
 * fault-injecting sys table, and a source -> stream -> destination round
 * trip whose devices are fake back-ends writing/checking seeded patterns. */
#ifndef TEST_PUMP_H
#define TEST_PUMP_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "precopy.h"
#include "precopy/sim.h"

static uint64_t mono_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A virtual clock: each reading advances it by step ns. */
struct vclock {
	_Atomic uint64_t now;
	uint64_t step;
};

static uint64_t vclock_ns(void *ctx)
{
	struct vclock *v = ctx;

	return atomic_fetch_add(&v->now, v->step) + v->step;
}

/* ---------------------------------------------------------------- fault sys */

struct fault_sys {
	struct precopy_sys sys;
	int read_fd;             /* reads on this fd fail ... */
	uint64_t read_fail_after; /* ... once this many bytes were read */
	int read_err;
	_Atomic uint64_t read_bytes;
	int write_fd;            /* writes on this fd are cut to max_write */
	size_t max_write;
	_Atomic uint64_t short_writes;
};

static ssize_t fs_read(void *ctx, int fd, void *buf, size_t len)
{
	struct fault_sys *f = ctx;
	const struct precopy_sys *r = precopy_sys_real();
	ssize_t n;

	if (fd == f->read_fd) {
		uint64_t have = atomic_load(&f->read_bytes);

		if (have >= f->read_fail_after)
			return f->read_err;
		if (len > f->read_fail_after - have)
			len = (size_t)(f->read_fail_after - have);
	}
	n = precopy_sys_read(r, fd, buf, len);
	if (fd == f->read_fd && n > 0)
		atomic_fetch_add(&f->read_bytes, (uint64_t)n);
	return n;
}

static ssize_t fs_write(void *ctx, int fd, const void *buf, size_t len)
{
	struct fault_sys *f = ctx;

	if (fd == f->write_fd && len > f->max_write) {
		len = f->max_write;
		atomic_fetch_add(&f->short_writes, 1);
	}
	return precopy_sys_write(precopy_sys_real(), fd, buf, len);
}

static int fs_ioctl(void *c, int fd, unsigned long q, void *a) { return precopy_sys_real()->ops->ioctl(NULL, fd, q, a); }
static ssize_t fs_splice(void *c, int i, int o, size_t l, unsigned int fl) { return precopy_sys_real()->ops->splice(NULL, i, o, l, fl); }
static int fs_poll(void *c, struct pollfd *p, unsigned int n, int t) { return precopy_sys_real()->ops->poll(NULL, p, n, t); }
static int fs_open(void *c, const char *p, int fl) { return precopy_sys_real()->ops->open(NULL, p, fl); }
static int fs_close(void *c, int fd) { return precopy_sys_real()->ops->close(NULL, fd); }
static int fs_mmap(void *c, size_t l, int p, int fl, int fd, off_t o, void **out) { return precopy_sys_real()->ops->mmap(NULL, l, p, fl, fd, o, out); }
static int fs_munmap(void *c, void *a, size_t l) { return precopy_sys_real()->ops->munmap(NULL, a, l); }
static int fs_pipe2(void *c, int fds[2], int fl) { return precopy_sys_real()->ops->pipe2(NULL, fds, fl); }

static const struct precopy_sys_ops fault_ops = {
	.version = PRECOPY_SYS_OPS_VERSION, .ioctl = fs_ioctl, .read = fs_read, .write = fs_write,
	.splice = fs_splice, .poll = fs_poll, .open = fs_open, .close = fs_close, .mmap = fs_mmap,
	.munmap = fs_munmap, .pipe2 = fs_pipe2,
};

static void fault_sys_init(struct fault_sys *f)
{
	memset(f, 0, sizeof(*f));
	f->sys.ops = &fault_ops;
	f->sys.ctx = f;
	f->read_fd = -1;
	f->write_fd = -1;
	f->read_fail_after = UINT64_MAX;
	f->read_err = -EIO;
	f->max_write = SIZE_MAX;
}

/* ---------------------------------------------------------------- pumps */

static struct precopy_pump *pump_make(uint32_t dir, int stream, uint32_t flags, uint32_t chunk,
				      const struct precopy_sys *sys, uint64_t (*clk)(void *), void *cctx)
{
	struct precopy_pump_config cfg = {
		.version = PRECOPY_PUMP_CONFIG_VERSION, .dir = dir, .sys = sys, .stream_fd = stream,
		.flags = flags, .chunk_size = chunk, .poll_interval_ms = 2,
		.now_ns = clk ? clk : mono_ns, .clock_ctx = cctx,
	};
	int err = 1;
	struct precopy_pump *p = precopy_pump_new(&cfg, &err);

	cr_assert(p, "precopy_pump_new: %d", err);
	cr_assert_eq(err, 0);
	if (!(flags & PRECOPY_PUMP_FORCE_FALLBACK) && !sys) {
		int why = 0;

		if (precopy_pump_path(p, &why) != PRECOPY_PUMP_PATH_URING)
			cr_log_warn("io_uring unavailable here (%d): testing the fallback twice", why);
	}
	return p;
}

static void make_stream(bool sock, int fds[2])
{
	if (sock)
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
	else
		cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
}

/* A connected TCP pair over loopback: s[0] the reader's end, s[1] the
 * pump's (blocking), as a real migration stream would be. */
static void tcp_pair(int s[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(l, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
	s[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s[1], 0);
	cr_assert_eq(connect(s[1], (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	s[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(s[0], 0);
	close(l);
}

/* One device end to end: a SAVE fake back-end feeding the source pump and a
 * LOAD fake back-end checking what the destination pump delivers. */
struct rt_dev {
	struct precopy_fake_backend *src_be, *dst_be;
	struct precopy_backend_xfer *src_x, *dst_x;
	int src_fd, dst_fd;
};

/* dst_flags: the destination device's PRECOPY_PUMP_DEV_* flags (its fd is
 * the write end of the LOAD back-end's state pipe). */
static void rt_dev_open_flags(struct rt_dev *d, struct precopy_pump *src, struct precopy_pump *dst, uint32_t id,
			      uint64_t size, uint64_t seed, uint32_t src_fault, uint64_t fault_off,
			      uint32_t dst_flags)
{
	struct precopy_fake_backend_config sc = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION,
						  .fault = src_fault, .state_size = size, .seed = seed,
						  .fault_offset = fault_off };
	struct precopy_fake_backend_config dc = { .version = PRECOPY_FAKE_BACKEND_CONFIG_VERSION,
						  .state_size = size, .seed = seed };
	int pa[2], pb[2], err;

	d->src_be = precopy_fake_backend_new(&sc, &err);
	d->dst_be = precopy_fake_backend_new(&dc, &err);
	cr_assert(d->src_be && d->dst_be);
	d->src_x = precopy_backend_xfer_new(precopy_fake_backend_ops(), d->src_be, NULL, &err);
	d->dst_x = precopy_backend_xfer_new(precopy_fake_backend_ops(), d->dst_be, NULL, &err);
	cr_assert(d->src_x && d->dst_x);
	cr_assert_eq(pipe2(pa, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(pb, O_CLOEXEC), 0);
	d->src_fd = precopy_backend_xfer_start(d->src_x, PRECOPY_BACKEND_SAVE, PRECOPY_BACKEND_PHASE_STOPPED, pa);
	d->dst_fd = precopy_backend_xfer_start(d->dst_x, PRECOPY_BACKEND_LOAD, PRECOPY_BACKEND_PHASE_STOPPED, pb);
	cr_assert_geq(d->src_fd, 0);
	cr_assert_geq(d->dst_fd, 0);
	if (src)
		cr_assert_eq(precopy_pump_add_device(src, id, d->src_fd, PRECOPY_PUMP_DEV_PIPE), 0);
	if (dst)
		cr_assert_eq(precopy_pump_add_device(dst, id, d->dst_fd, dst_flags), 0);
}

static void rt_dev_open(struct rt_dev *d, struct precopy_pump *src, struct precopy_pump *dst, uint32_t id,
			uint64_t size, uint64_t seed, uint32_t src_fault, uint64_t fault_off)
{
	rt_dev_open_flags(d, src, dst, id, size, seed, src_fault, fault_off, 0);
}

/* Finishes both transfers; returns the destination back-end's verdict and
 * stores the source's in *src_verdict. */
static int rt_dev_close(struct rt_dev *d, int *src_verdict)
{
	int s = precopy_backend_xfer_finish(d->src_x);
	int r = precopy_backend_xfer_finish(d->dst_x);

	if (src_verdict)
		*src_verdict = s;
	precopy_backend_xfer_free(d->src_x);
	precopy_backend_xfer_free(d->dst_x);
	precopy_fake_backend_free(d->src_be);
	precopy_fake_backend_free(d->dst_be);
	return r;
}

struct load_job {
	struct precopy_pump *p;
	uint64_t deadline;
	int64_t ret;
	pthread_t t;
};

static void *load_thread(void *arg)
{
	struct load_job *j = arg;

	j->ret = precopy_pump_drain(j->p, j->deadline);
	return NULL;
}

static void load_start(struct load_job *j, struct precopy_pump *p)
{
	j->p = p;
	cr_assert_eq(pthread_create(&j->t, NULL, load_thread, j), 0);
}

static int64_t load_join(struct load_job *j)
{
	pthread_join(j->t, NULL);
	return j->ret;
}

static const char *path_name(uint32_t flags)
{
	return (flags & PRECOPY_PUMP_FORCE_FALLBACK) ? "fallback" : "io_uring";
}

struct rt {
	int ndev;
	uint64_t size;      /* per device; device i gets size + i * skew */
	uint64_t skew;
	uint32_t flags;     /* pump flags, both sides */
	uint32_t chunk;
	bool sock;
	uint64_t budget;    /* 0: drain at once; else run() in slices first */
	const struct precopy_sys *src_sys, *dst_sys; /* NULL: real */
	bool small_nonblock_stream; /* 4 KiB O_NONBLOCK stream pipe (writer side) */
	uint32_t dst_flags;  /* destination devices' PRECOPY_PUMP_DEV_* flags */
	int stream[2];       /* a stream made by the caller (both > 0), e.g. TCP */
	/* called with both pumps once every check passed, before they are freed */
	void (*after)(const struct rt *o, struct precopy_pump *src, struct precopy_pump *dst, uint64_t total);
};

static void roundtrip(const struct rt *o)
{
	struct rt_dev *d = calloc((size_t)o->ndev, sizeof(*d));
	struct load_job lj = { 0 };
	struct precopy_pump *src, *dst;
	uint64_t total = 0;
	int64_t r;
	int s[2];

	if (o->stream[0] > 0 && o->stream[1] > 0) {
		s[0] = o->stream[0];
		s[1] = o->stream[1];
	} else {
		make_stream(o->sock, s);
	}
	if (o->small_nonblock_stream) {
		cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, 4096), 4096);
		cr_assert_eq(fcntl(s[1], F_SETFL, fcntl(s[1], F_GETFL) | O_NONBLOCK), 0);
	}
	src = pump_make(PRECOPY_PUMP_SAVE, s[1], o->flags, o->chunk, o->src_sys, NULL, NULL);
	dst = pump_make(PRECOPY_PUMP_LOAD, s[0], o->flags, o->chunk, o->dst_sys, NULL, NULL);
	for (int i = 0; i < o->ndev; i++) {
		uint64_t sz = o->size + (uint64_t)i * o->skew;

		rt_dev_open_flags(&d[i], src, dst, (uint32_t)(100 + i), sz, 0x1234 + (uint64_t)i, 0, 0, o->dst_flags);
		total += sz;
	}
	load_start(&lj, dst);
	if (o->budget) {
		uint64_t moved = 0;

		for (int k = 0; k < 100000; k++) {
			r = precopy_pump_run(src, &(struct precopy_pump_budget){ .max_bytes = o->budget });
			cr_assert_geq(r, 0, "run: %s", precopy_pump_strerror(src));
			cr_assert_leq((uint64_t)r, o->budget, "run moved %lld > budget", (long long)r);
			moved += (uint64_t)r;
			if (moved == total)
				break;
		}
	}
	r = precopy_pump_drain(src, 0);
	cr_assert_geq(r, 0, "source drain: %s", precopy_pump_strerror(src));
	r = load_join(&lj);
	cr_assert_geq(r, 0, "destination drain: %s", precopy_pump_strerror(dst));
	for (int i = 0; i < o->ndev; i++) {
		struct precopy_pump_dev_status a, b;
		uint64_t sz = o->size + (uint64_t)i * o->skew;
		int sv, dv;

		cr_assert_eq(precopy_pump_dev_status(src, 100 + (uint32_t)i, &a), 0);
		cr_assert_eq(precopy_pump_dev_status(dst, 100 + (uint32_t)i, &b), 0);
		cr_assert_eq(a.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(b.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(a.bytes, sz, "dev %d: src moved %llu of %llu", i, (unsigned long long)a.bytes,
			     (unsigned long long)sz);
		cr_assert_eq(b.bytes, sz);
		cr_assert_eq(a.frames, b.frames);
		dv = rt_dev_close(&d[i], &sv);
		cr_assert_eq(sv, 0, "dev %d: source back-end %d", i, sv);
		cr_assert_eq(dv, 0, "dev %d (%llu bytes, %s): destination back-end verdict %d", i,
			     (unsigned long long)sz, path_name(o->flags), dv);
	}
	if (o->after)
		o->after(o, src, dst, total);
	precopy_pump_free(src);
	precopy_pump_free(dst);
	close(s[0]);
	close(s[1]);
	free(d);
}

#endif /* TEST_PUMP_H */
