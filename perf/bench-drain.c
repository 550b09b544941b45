/* SPDX-License-Identifier: MIT */
/* bench-drain: the engine's switchover drain on the real kernel against a
 * serial read loop, in the same run.
 *
 * N device stand-ins deliver SIZE bytes of state each at a limited rate:
 * fd-based back-ends (precopy/backend.h) whose writer threads sleep
 * between 64 KiB writes, so the CPU is not the limit. The engine (real
 * sys table: io_uring where the kernel allows it) drains them at
 * switchover into a stream socket whose reader thread discards the bytes.
 * The serial loop reads the same stand-ins one after another into the
 * same kind of socket. Printed per case:
 *   case=drain-Ndev-SIZE ... ratio=<engine time / serial time>
 * (the line's gbps is the serial loop's, its limit_gbps the engine's, so
 * that ratio = gbps / limit_gbps is the time ratio). Targets on a 2-core
 * machine: <= 0.60 at 2 devices, <= 0.35 at 4, <= 0.25 at 8.
 *
 * The vfio-user cases: N of the tests' vfio-user servers (forked
 * processes, tests/lib/vu_server.c) that each take 5 ms per 64 KiB
 * MIG_DATA_READ hold 2 MiB of state; the engine drains them concurrently
 * (a request in flight on every server) against the same engine without
 * the asynchronous queue (one server after another):
 *   case=drain-vu-Ndev-2M ... ratio=<concurrent / serial>
 * Targets: <= 0.60 at 2 servers, <= 0.35 at 4. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/bench.h"
#include "precopy.h"
#include "../tests/lib/standin.h"
#include "../tests/lib/vu_server.h"

#define CHUNK (64u << 10)
#define MAXN 8

/* the stand-ins write zeros at their rate (tests/lib/standin.h) */

/* The stream's far end: read and discard until EOF. */
static void *sink(void *arg)
{
	static uint8_t buf[1 << 20];
	int fd = *(int *)arg;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	return NULL;
}

static int stream_pair(int s[2], pthread_t *thr)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) < 0)
		return -errno;
	if (pthread_create(thr, NULL, sink, &s[1])) {
		close(s[0]);
		close(s[1]);
		return -EAGAIN;
	}
	return 0;
}

static void stream_done(int s[2], pthread_t thr)
{
	shutdown(s[0], SHUT_WR);
	pthread_join(thr, NULL);
	close(s[0]);
	close(s[1]);
}

/* The engine on cfg (its devices or back-ends set by the caller) over a
 * one-page RAM, draining into a stream with a reader: start, the timed
 * switchover, complete; want: the device bytes the drain must move.
 * Returns the switchover's wall time in ns, 0 on failure (printed, what
 * naming the devices). how (optional): the drain's path. */
static uint64_t timed_drain(struct precopy_engine_config *cfg, int serial, uint64_t want, const char *what,
			    char *how, size_t howlen)
{
	static uint64_t live_words[1];
	struct precopy_bitmap live;
	struct precopy_ram_slot slot = { .gpa = 0, .size = 64 * 4096, .page_size = 4096 };
	struct precopy_engine_stats st;
	struct precopy_sys_ops v3;
	struct precopy_sys v3sys;
	struct precopy_engine *e;
	uint64_t t = 0;
	pthread_t thr;
	int s[2], err, r;

	precopy_bitmap_wrap(&live, live_words, 64);
	if (stream_pair(s, &thr) < 0)
		return 0;
	cfg->sys = precopy_sys_real();
	if (serial) { /* ops v3: no asynchronous queue */
		v3 = *cfg->sys->ops;
		v3.version = 3;
		v3sys = (struct precopy_sys){ &v3, NULL };
		cfg->sys = &v3sys;
	}
	cfg->slots = &slot;
	cfg->nslots = 1;
	cfg->ram_source = PRECOPY_RAM_BITMAP;
	cfg->ram_bitmap = &live;
	cfg->stream_fd = s[0];
	cfg->max_chunk = CHUNK;
	cfg->policy.downtime_limit_ns = 60ull * 1000000000u;
	e = precopy_engine_new(cfg, &err);
	if (!e) {
		fprintf(stderr, "bench-drain: %s: engine_new: %s\n", what, strerror(-err));
		stream_done(s, thr);
		return 0;
	}
	r = precopy_engine_start(e);
	if (r == 0) {
		uint64_t t0 = bench_now_ns();

		r = precopy_engine_switchover(e);
		t = bench_now_ns() - t0;
	}
	if (r == 0)
		r = precopy_engine_complete(e);
	if (r < 0) {
		fprintf(stderr, "bench-drain: %s: %s\n", what, precopy_engine_strerror(e));
		t = 0;
	} else if (precopy_engine_stats(e, &st) == 0 && st.downtime.device_bytes != want) {
		fprintf(stderr, "bench-drain: %s: %llu bytes drained, %llu expected\n", what,
			(unsigned long long)st.downtime.device_bytes, (unsigned long long)want);
		t = 0;
	}
	if (how)
		snprintf(how, howlen, "%s", precopy_sys_has_aio(cfg->sys) ? "io_uring" : "plain");
	precopy_engine_free(e);
	stream_done(s, thr);
	return t;
}

/* The engine drains n stand-ins at switchover. Returns the drain's wall
 * time in ns, 0 on failure (printed). */
static uint64_t engine_drain(int n, uint64_t size, uint64_t rate, int serial, char *how, size_t howlen)
{
	struct standin si[MAXN];
	struct precopy_engine_backend be[MAXN];
	struct precopy_engine_config cfg;
	char what[64];

	memset(si, 0, sizeof(si));
	for (int i = 0; i < n; i++) {
		si[i] = (struct standin){ .size = size, .rate = rate, .zeros = 1, .fd = -1 };
		be[i] = (struct precopy_engine_backend){ .id = 100 + (uint32_t)i, .name = "standin", .ops = &standin_ops,
							 .ctx = &si[i], .state_bytes = size };
	}
	precopy_engine_config_init(&cfg);
	cfg.backends = be;
	cfg.nbackends = (uint32_t)n;
	snprintf(what, sizeof(what), "%d devices", n);
	return timed_drain(&cfg, serial, (uint64_t)n * size, what, how, howlen);
}

/* The baseline: each stand-in's pipe read to EOF into the stream, one
 * after another. Returns the wall time in ns, 0 on failure. */
static uint64_t serial_loop(int n, uint64_t size, uint64_t rate)
{
	static uint8_t buf[CHUNK];
	struct standin si[MAXN];
	uint64_t t0, total = 0;
	pthread_t thr;
	int s[2];

	memset(si, 0, sizeof(si));
	if (stream_pair(s, &thr) < 0)
		return 0;
	t0 = bench_now_ns();
	for (int i = 0; i < n; i++) {
		int p[2], reply;

		si[i] = (struct standin){ .size = size, .rate = rate, .zeros = 1, .fd = -1 };
		if (pipe2(p, O_CLOEXEC) < 0 || standin_ops.set_state_fd(&si[i], PRECOPY_BACKEND_SAVE, 0, p[1], &reply) < 0)
			return 0;
		for (;;) {
			ssize_t r = read(p[0], buf, sizeof(buf)), w = 0;

			if (r == 0)
				break;
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return 0;
			}
			while (w < r) {
				ssize_t k = send(s[0], buf + w, (size_t)(r - w), MSG_NOSIGNAL);

				if (k < 0 && errno != EINTR)
					return 0;
				w += k > 0 ? k : 0;
			}
			total += (uint64_t)r;
		}
		close(p[0]);
		if (standin_ops.check_state(&si[i]) < 0)
			return 0;
	}
	t0 = bench_now_ns() - t0;
	stream_done(s, thr);
	return total == (uint64_t)n * size ? t0 : 0;
}

/* The engine drains n vfio-user servers of size bytes each, delay_us per
 * read. Returns the switchover's wall time in ns, 0 on failure. */
static uint64_t vu_drain(int n, uint64_t size, unsigned delay_us, int serial)
{
	struct precopy_engine_vfio_user vu[MAXN];
	struct precopy_engine_config cfg;
	pid_t pid[MAXN];
	uint64_t t = 0;
	char what[64];
	int err, k = 0;

	for (; k < n; k++) {
		struct vu_server_cfg sc = { .seed = (uint64_t)k + 1, .state_bytes = size, .read_delay_us = delay_us,
					    .twin = 1 };
		char msg[256] = "";
		int fd;

		pid[k] = vu_server_spawn(&sc, &fd);
		if (pid[k] < 0)
			break;
		vu[k] = (struct precopy_engine_vfio_user){ .id = 200 + (uint32_t)k, .name = "vu",
							   .dev = precopy_vfio_user_open(precopy_sys_real(), fd, NULL,
											 &err, msg, sizeof(msg)) };
		if (!vu[k].dev) {
			fprintf(stderr, "bench-drain: vfio-user open: %s\n", msg);
			vu_server_wait(pid[k], 5000);
			break;
		}
	}
	if (k == n) {
		precopy_engine_config_init(&cfg);
		cfg.vfio_user = vu;
		cfg.nvfio_user = (uint32_t)n;
		snprintf(what, sizeof(what), "%d vfio-user servers", n);
		t = timed_drain(&cfg, serial, (uint64_t)n * (size + 280), what, NULL, 0);
	}
	for (int i = 0; i < k; i++) {
		precopy_vfio_user_close(vu[i].dev);
		vu_server_wait(pid[i], 5000);
	}
	return t;
}

int main(int argc, char **argv)
{
	static const int ns[] = { 2, 4, 8 };
	static const double target[] = { 0.60, 0.35, 0.25 };
	struct bench_opts o;
	struct bench_report rep;
	uint64_t size, rate = 256ull << 20;
	int r, bad = 0;

	r = bench_parse_opts(&o, argc, argv, "  --size BYTES   state per device (default 32M, at 256 MiB/s)\n", 3);
	if (r)
		return r > 0 ? 0 : 2;
	size = o.size_bytes ? o.size_bytes : 32ull << 20;
	if (o.list) {
		for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++)
			printf("drain-%ddev-%lluM  %d stand-ins at 256 MiB/s, engine drain vs serial loop\n", ns[k],
			       (unsigned long long)(size >> 20), ns[k]);
		printf("drain-vu-2dev-2M  2 vfio-user servers at 5 ms per 64 KiB read, concurrent vs serial drain\n");
		printf("drain-vu-4dev-2M  4 vfio-user servers at 5 ms per 64 KiB read, concurrent vs serial drain\n");
		return 0;
	}
	bench_report_begin(&rep, "bench-drain", &o,
			   "ratio = engine drain time / serial read loop time (gbps: serial loop, limit_gbps: engine)");
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
		struct bench_samples eng = { .n = 0 }, ser = { .n = 0 }, eng3 = { .n = 0 };
		struct bench_line l;
		char name[64], how[16] = "", how3[16];
		int n = ns[k];
		double ratio;

		snprintf(name, sizeof(name), "drain-%ddev-%lluM", n, (unsigned long long)(size >> 20));
		if (!bench_case_selected(&o, name))
			continue;
		for (int i = 0; i < o.reps; i++) {
			uint64_t a = engine_drain(n, size, rate, 0, how, sizeof(how)), b = serial_loop(n, size, rate);
			uint64_t c = engine_drain(n, size, rate, 1, how3, sizeof(how3));

			if (!a || !b || !c) {
				bad = 1;
				break;
			}
			bench_samples_add(&eng, a);
			bench_samples_add(&ser, b);
			bench_samples_add(&eng3, c);
		}
		if (bad)
			break;
		ratio = bench_samples_median(&eng) / bench_samples_median(&ser);
		bench_line_init(&l, name, bench_gbps((uint64_t)n * size, bench_samples_median(&ser)),
				bench_gbps((uint64_t)n * size, bench_samples_median(&eng)));
		bench_line_num(&l, "engine_ms", "%.1f", bench_samples_median(&eng) / 1e6);
		bench_line_num(&l, "serial_ms", "%.1f", bench_samples_median(&ser) / 1e6);
		bench_line_num(&l, "engine_serial_ms", "%.1f", bench_samples_median(&eng3) / 1e6);
		bench_line_num(&l, "engine_min_ms", "%.1f", bench_samples_min(&eng) / 1e6);
		bench_line_num(&l, "engine_max_ms", "%.1f", bench_samples_max(&eng) / 1e6);
		bench_line_str(&l, "path", how);
		bench_line_num(&l, "target", "%.2f", target[k]);
		bench_line_str(&l, "met", ratio <= target[k] ? "yes" : "no");
		bench_report_line(&rep, &l);
	}
	for (size_t k = 0; !bad && k < 2; k++) {
		static const int vn[] = { 2, 4 };
		static const double vtarget[] = { 0.60, 0.35 };
		struct bench_samples con = { .n = 0 }, ser = { .n = 0 };
		struct bench_line l;
		uint64_t vsize = 2ull << 20;
		char name[64];
		double ratio;

		snprintf(name, sizeof(name), "drain-vu-%ddev-2M", vn[k]);
		if (!bench_case_selected(&o, name))
			continue;
		for (int i = 0; i < o.reps; i++) {
			uint64_t a = vu_drain(vn[k], vsize, 5000, 0), b = vu_drain(vn[k], vsize, 5000, 1);

			if (!a || !b) {
				bad = 1;
				break;
			}
			bench_samples_add(&con, a);
			bench_samples_add(&ser, b);
		}
		if (bad)
			break;
		ratio = bench_samples_median(&con) / bench_samples_median(&ser);
		bench_line_init(&l, name, bench_gbps((uint64_t)vn[k] * vsize, bench_samples_median(&ser)),
				bench_gbps((uint64_t)vn[k] * vsize, bench_samples_median(&con)));
		bench_line_num(&l, "engine_ms", "%.1f", bench_samples_median(&con) / 1e6);
		bench_line_num(&l, "engine_serial_ms", "%.1f", bench_samples_median(&ser) / 1e6);
		bench_line_num(&l, "engine_min_ms", "%.1f", bench_samples_min(&con) / 1e6);
		bench_line_num(&l, "engine_max_ms", "%.1f", bench_samples_max(&con) / 1e6);
		bench_line_str(&l, "path", "vfio-user");
		bench_line_num(&l, "target", "%.2f", vtarget[k]);
		bench_line_str(&l, "met", ratio <= vtarget[k] ? "yes" : "no");
		bench_report_line(&rep, &l);
	}
	bench_report_end(&rep);
	return bad;
}
