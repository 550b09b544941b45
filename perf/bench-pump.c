/* SPDX-License-Identifier: MIT */
/* bench-pump — the device-state pump against a plain read/write copy loop.
 *
 * For each case, N device fds are fed by writer threads (playing devices
 * that always have data) and the stream is drained by a reader thread
 * (playing the network). The same fds kind, chunk size, framing bytes and
 * helper threads are used for both:
 *   limit: a plain loop in one thread, round-robin over the devices:
 *          read(dev, chunk) -> write(stream) of header + payload (what a
 *          migration thread would do by hand, and what the pump replaces);
 *   pump:  precopy_pump_drain() on the default path (io_uring here).
 * Buffers are set up before the clock starts on both sides: the loop's
 * buffer, and the pump object (ring, registered buffers).
 *
 * Measurement: for each case, `rounds` rounds, each running the limit and
 * the pump variants back to back in an order that alternates between
 * rounds (ABC, CBA, ...), so slow drifts of the shared machine hit both
 * alike. Printed per variant:
 *   case=<name> gbps=<median pump> limit_gbps=<median loop> ratio=<gbps/limit>
 *   then the spread: gbps_min/max, limit_min/max, and the paired ratio of
 *   each round (pump / loop of the same round): pr_min/pr_med/pr_max;
 *   then where the ratio comes from, from getrusage(RUSAGE_SELF) (every
 *   thread of the process: writers, reader, loop or pump, io_uring's
 *   workers) over each run, medians:
 *     busy_l, busy_p   share of the machine's CPUs the process kept busy,
 *                      loop and pump runs (1.00 = every CPU, all the time);
 *     cpu_eff          the loop's CPU time per byte / the pump's (paired per
 *                      round): above 1 the pump costs less CPU per byte;
 *     cpu_ceiling      cpu_eff / busy_l: the ratio the pump would reach if it
 *                      kept every CPU busy at its measured cost per byte.
 *                      ratio = (busy_p / busy_l) x cpu_eff, so a case whose
 *                      cpu_ceiling is below its target cannot reach the
 *                      target by overlap alone: the CPU cost per byte has to
 *                      fall;
 *     rd_l, rd_p       share of one CPU the reader thread (the network's
 *                      stand-in) used: near 1.00 the reader is the limit.
 * Pinning (PIN=1, off by default): the measured thread (loop or pump, and
 * the io_uring workers it creates) on the first allowed CPU, the writer and
 * reader threads on the others. On a 2-CPU machine that puts every helper
 * on one CPU, which then limits both sides (measured: pipe-1dev-1024k loop
 * 12.7 vs 21.7 Gbit/s unpinned), so the default leaves placement to the
 * scheduler.
 * Kinds: pipe (device pipes, stream pipe), sock (socketpairs for both),
 * pipe2sock (device pipes, stream socket). "splice" marks devices added with
 * PRECOPY_PUMP_DEV_PIPE (spliced to the stream), "copy" marks NO_SPLICE.
 * LOAD cases ("load-..."): the destination side. A producer thread (the
 * network) writes the framed stream, devices taking turns a chunk at a
 * time, then their EODs; one reader thread per device drains its fd; the
 * loop reads each header, then the payload a chunk at a time, writing it to
 * the device. Kinds pipe, sock, and sock2pipe (a socket stream into device
 * pipes, as a TCP stream into back-ends' state pipes). "splice" devices are
 * added with DEV_PIPE (payload spliced from the stream). In the cpu
 * columns, rd_l/rd_p are the producer's share.
 * Usage: bench-pump [total_MiB_per_run (default 128) [case filter [rounds
 *        (default 5)]]]. The filter is a substring, or ^prefix, of the full
 *        case name with its variant, e.g. "copy", "16dev-1024k-copy",
 *        "^pipe-"; "" runs every case.
 * Environment (diagnosis only): PF=<extra pump flags, e.g. 1 = fallback,
 * 4 = no registered buffers>, PI=<poll interval ms>, QD=<pump queue depth
 * instead of 2 per device, at least 8>, PCHUNK=<pump chunk_size instead of
 * the case's chunk>, SNDBUF=<SO_SNDBUF for a socket stream's sending end;
 * the kernel doubles it>, TCP=1 (socket streams are TCP over loopback,
 * whose send buffer the kernel sizes by itself), DBG=1 (frame counts),
 * PIN=0|1, ONLY=loop|pump (run one side only, for profiles). */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "precopy.h"

enum kind { K_PIPE, K_SOCK, K_PIPE2SOCK };
static const char *const kind_name[] = { "pipe", "sock", "pipe2sock" };
/* LOAD reads the third kind backwards: a socket stream into device pipes */
static const char *const load_kind_name[] = { "pipe", "sock", "sock2pipe" };

static uint64_t now_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void mkpair(bool sock, int fds[2], uint32_t chunk)
{
	if (sock) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
			die("socketpair");
	} else {
		if (pipe2(fds, O_CLOEXEC))
			die("pipe2");
		/* room for a whole chunk, as a migration setup would size it */
		fcntl(fds[1], F_SETPIPE_SZ, chunk < 65536 ? 65536 : (int)chunk);
	}
}

/* The stream: as mkpair(), or with TCP=1 (diagnosis) and a socket kind, a
 * TCP connection over loopback (fds[0] the reading end, fds[1] the
 * writing end), whose send buffer the kernel sizes by itself. */
static void mkstream(bool sock, int fds[2], uint32_t chunk)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l;

	if (!sock || !getenv("TCP")) {
		mkpair(sock, fds, chunk);
		return;
	}
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al))
		die("tcp listen");
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[1] < 0 || connect(fds[1], (struct sockaddr *)&a, sizeof(a)))
		die("tcp connect");
	fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[0] < 0)
		die("tcp accept");
	close(l);
}

/* CPU placement: the measured thread on cpu_main, helpers on cpu_help. */
static bool pin;
static cpu_set_t cpu_main, cpu_help;

static void pin_setup(void)
{
	cpu_set_t all;
	int first = -1;
	const char *e = getenv("PIN");

	CPU_ZERO(&cpu_main);
	CPU_ZERO(&cpu_help);
	if (!e || atoi(e) == 0 || sched_getaffinity(0, sizeof(all), &all) || CPU_COUNT(&all) < 2)
		return;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &all))
			continue;
		if (first < 0) {
			first = c;
			CPU_SET(c, &cpu_main);
		} else {
			CPU_SET(c, &cpu_help);
		}
	}
	pin = true;
}

static void pin_self(bool helper)
{
	if (pin)
		sched_setaffinity(0, sizeof(cpu_set_t), helper ? &cpu_help : &cpu_main);
}

struct writer {
	int fd;
	uint64_t bytes;
	uint32_t chunk;
	const uint8_t *buf;
	pthread_t t;
};

static void *writer_main(void *a)
{
	struct writer *w = a;
	uint64_t left = w->bytes;

	pin_self(true);
	while (left) {
		size_t n = left < w->chunk ? (size_t)left : w->chunk;
		ssize_t r = write(w->fd, w->buf, n);

		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		left -= (uint64_t)r;
	}
	close(w->fd);
	return NULL;
}

static double thread_cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct reader {
	int fd;
	uint64_t got;
	double cpu; /* its own CPU seconds, at the end */
	pthread_t t;
};

static void *reader_main(void *a)
{
	struct reader *r = a;
	static __thread uint8_t sink[1 << 20];

	pin_self(true);
	for (;;) {
		ssize_t n = read(r->fd, sink, sizeof(sink));

		if (n > 0)
			r->got += (uint64_t)n;
		else if (!(n < 0 && errno == EINTR))
			break;
	}
	r->cpu = thread_cpu_seconds();
	return NULL;
}

/* Moves all n bytes (out: write, else read), retrying on EINTR; -1 on an
 * error or an early end. */
static int io_all(int fd, uint8_t *b, size_t n, bool out)
{
	while (n) {
		ssize_t r = out ? write(fd, b, n) : read(fd, b, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_all(int fd, uint8_t *b, size_t n) { return io_all(fd, b, n, true); }
static int read_all(int fd, uint8_t *b, size_t n) { return io_all(fd, b, n, false); }

/* The plain copy loop: the limit. */
static void copy_loop(int *dev, int ndev, int stream, uint32_t chunk, uint8_t *buf)
{
	int active = ndev;
	bool *done = calloc((size_t)ndev, 1);

	while (active) {
		for (int i = 0; i < ndev; i++) {
			struct precopy_frame_hdr h = { .dev_id = (uint32_t)i };
			ssize_t n;

			if (done[i])
				continue;
			n = read(dev[i], buf + PRECOPY_FRAME_HDR_SIZE, chunk);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				h.flags = PRECOPY_FRAME_EOD;
				done[i] = true;
				active--;
			} else {
				h.len = (uint32_t)n;
			}
			precopy_frame_encode(&h, buf);
			if (write_all(stream, buf, PRECOPY_FRAME_HDR_SIZE + (size_t)(n > 0 ? n : 0)))
				die("write stream");
		}
	}
	free(done);
}

/* LOAD: the producer plays the source side of the network: it writes the
 * framed stream, devices taking turns a chunk at a time, then each
 * device's EOD, and closes the stream. */
struct producer {
	int fd, ndev;
	uint64_t per; /* payload bytes per device */
	uint32_t chunk;
	const uint8_t *src;
	double cpu;
	pthread_t t;
};

static void *producer_main(void *a)
{
	struct producer *pr = a;
	uint8_t *f = malloc(PRECOPY_FRAME_HDR_SIZE + (size_t)pr->chunk);

	if (!f)
		die("malloc");
	pin_self(true);
	memcpy(f + PRECOPY_FRAME_HDR_SIZE, pr->src, pr->chunk);
	for (uint64_t left = pr->per; left;) {
		uint32_t n = left < pr->chunk ? (uint32_t)left : pr->chunk;

		for (int i = 0; i < pr->ndev; i++) {
			struct precopy_frame_hdr h = { .dev_id = (uint32_t)i, .len = n };

			precopy_frame_encode(&h, f);
			if (write_all(pr->fd, f, PRECOPY_FRAME_HDR_SIZE + (size_t)n))
				die("producer: write stream");
		}
		left -= n;
	}
	for (int i = 0; i < pr->ndev; i++) {
		struct precopy_frame_hdr h = { .dev_id = (uint32_t)i, .flags = PRECOPY_FRAME_EOD };

		precopy_frame_encode(&h, f);
		if (write_all(pr->fd, f, PRECOPY_FRAME_HDR_SIZE))
			die("producer: write stream");
	}
	close(pr->fd);
	free(f);
	pr->cpu = thread_cpu_seconds();
	return NULL;
}

/* The plain LOAD loop: read a header, then its payload a chunk at a time,
 * each piece written to the device; an EOD closes the device's fd. */
static void load_loop(int stream, int *dev, int ndev, uint32_t chunk, uint8_t *buf)
{
	for (int active = ndev; active;) {
		uint8_t hb[PRECOPY_FRAME_HDR_SIZE];
		struct precopy_frame_hdr h;

		if (read_all(stream, hb, sizeof(hb)) || precopy_frame_decode(hb, chunk, &h) ||
		    h.dev_id >= (uint32_t)ndev)
			die("load loop: stream");
		if (h.flags & PRECOPY_FRAME_EOD) {
			close(dev[h.dev_id]);
			dev[h.dev_id] = -1;
			active--;
			continue;
		}
		for (uint32_t left = h.len; left;) {
			ssize_t n = read(stream, buf, left < chunk ? left : chunk);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || write_all(dev[h.dev_id], buf, (size_t)n))
				die("load loop: payload");
			left -= (uint32_t)n;
		}
	}
}

/* CPU seconds this process has used so far, every thread counted: the
 * writers, the reader, the loop or pump thread and io_uring's io-wq workers
 * (which are threads of the process). */
static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int ncpu = 1;          /* CPUs this process may run on */
static int stream_sndbuf = 0; /* SNDBUF=: SO_SNDBUF of a socket stream's sending end */

/* What one run used: the share of the machine's CPUs the process kept
 * busy, its CPU time per KiB moved, and the share of one CPU the reader
 * thread (the network's stand-in) used. */
struct cpu_use {
	double busy, ns_per_kib, reader;
};

/* The pump of one run, with the diagnosis knobs (PF, PCHUNK, QD, PI) and
 * its devices: pipes as PRECOPY_PUMP_DEV_PIPE; on LOAD closed at their EOD
 * (their readers see the end). */
static struct precopy_pump *bench_pump_new(enum precopy_pump_dir dir, int stream, enum kind k, int ndev,
					   uint32_t chunk, bool splice, const int *dev)
{
	struct precopy_pump_config cfg = {
		.version = PRECOPY_PUMP_CONFIG_VERSION, .dir = dir, .stream_fd = stream,
		.flags = (splice ? 0 : PRECOPY_PUMP_NO_SPLICE) | (getenv("PF") ? (uint32_t)atoi(getenv("PF")) : 0),
		.chunk_size = getenv("PCHUNK") ? (uint32_t)atoi(getenv("PCHUNK")) : chunk,
		.max_payload = dir == PRECOPY_PUMP_LOAD ? chunk : 0,
		.queue_depth = getenv("QD") ? (uint32_t)atoi(getenv("QD")) : (uint32_t)(ndev * 2 < 8 ? 8 : ndev * 2),
		.now_ns = now_ns, .poll_interval_ms = getenv("PI") ? (uint32_t)atoi(getenv("PI")) : 0,
	};
	uint32_t flags = (k != K_SOCK ? PRECOPY_PUMP_DEV_PIPE : 0) |
			 (dir == PRECOPY_PUMP_LOAD ? PRECOPY_PUMP_DEV_CLOSE_AT_END : 0);
	struct precopy_pump *p;
	int err;

	p = precopy_pump_new(&cfg, &err);
	if (!p) {
		fprintf(stderr, "precopy_pump_new (%s, chunk %u, depth %u): %s\n",
			dir == PRECOPY_PUMP_LOAD ? "LOAD" : "SAVE", cfg.chunk_size, cfg.queue_depth, strerror(-err));
		exit(1);
	}
	for (int i = 0; i < ndev; i++)
		if (precopy_pump_add_device(p, (uint32_t)i, dev[i], flags))
			die("precopy_pump_add_device");
	return p;
}

/* Fills *cu from one run's CPU seconds (c0, c1), clock (t0, t1), payload
 * bytes and the network stand-in's own CPU seconds. */
static void cpu_use_fill(struct cpu_use *cu, double c0, double c1, uint64_t t0, uint64_t t1, uint64_t bytes,
			 double net_cpu)
{
	cu->busy = (c1 - c0) * 1e9 / (double)(t1 - t0) / ncpu;
	cu->ns_per_kib = (c1 - c0) * 1e9 / (double)(bytes >> 10);
	cu->reader = net_cpu * 1e9 / (double)(t1 - t0);
}

/* One run; returns Gbit/s of payload and fills *cu. */
static double run(enum kind k, int ndev, uint32_t chunk, bool pump, bool splice, uint64_t total,
		  const uint8_t *src, uint8_t *buf, struct cpu_use *cu)
{
	double c0, c1;
	struct writer *w = calloc((size_t)ndev, sizeof(*w));
	int *dev = calloc((size_t)ndev, sizeof(int));
	struct precopy_pump *p = NULL;
	struct reader rd = { 0 };
	int s[2];
	uint64_t t0, t1, per = total / (uint64_t)ndev;

	pin_self(false);
	mkstream(k != K_PIPE, s, chunk);
	if (k != K_PIPE && stream_sndbuf > 0 &&
	    setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &stream_sndbuf, sizeof(stream_sndbuf)))
		die("SO_SNDBUF");
	rd.fd = s[0];
	for (int i = 0; i < ndev; i++) {
		int d[2];

		mkpair(k == K_SOCK, d, chunk);
		dev[i] = d[0];
		w[i] = (struct writer){ .fd = d[1], .bytes = per, .chunk = chunk, .buf = src };
	}
	if (pump)
		p = bench_pump_new(PRECOPY_PUMP_SAVE, s[1], k, ndev, chunk, splice, dev);
	c0 = cpu_seconds();
	t0 = now_ns(NULL);
	pthread_create(&rd.t, NULL, reader_main, &rd);
	for (int i = 0; i < ndev; i++)
		pthread_create(&w[i].t, NULL, writer_main, &w[i]);

	if (pump) {
		int64_t r = precopy_pump_drain(p, 0);

		if (r < 0) {
			fprintf(stderr, "drain: %s\n", precopy_pump_strerror(p));
			exit(1);
		}
	} else {
		copy_loop(dev, ndev, s[1], chunk, buf);
	}
	close(s[1]);
	pthread_join(rd.t, NULL);
	t1 = now_ns(NULL);
	c1 = cpu_seconds();
	if (p && getenv("DBG")) {
		struct precopy_pump_dev_status st;

		precopy_pump_dev_status(p, 0, &st);
		fprintf(stderr, "dev0: %llu bytes in %llu frames\n", (unsigned long long)st.bytes,
			(unsigned long long)st.frames);
	}
	precopy_pump_free(p);
	for (int i = 0; i < ndev; i++) {
		pthread_join(w[i].t, NULL);
		close(dev[i]);
	}
	close(s[0]);
	if (rd.got < per * (uint64_t)ndev) {
		fprintf(stderr, "short stream: %llu\n", (unsigned long long)rd.got);
		exit(1);
	}
	free(w);
	free(dev);
	cpu_use_fill(cu, c0, c1, t0, t1, per * (uint64_t)ndev, rd.cpu);
	return (double)(per * (uint64_t)ndev) * 8 / (double)(t1 - t0);
}

/* One LOAD run: the producer writes the stream, one reader per device
 * drains it; the loop or the pump moves the frames between them. Kinds:
 * pipe (all pipes), sock (all socketpairs), pipe2sock read backwards:
 * a socket stream into device pipes (a TCP stream into back-ends' state
 * pipes on the destination). Returns Gbit/s of payload and fills *cu. */
static double run_load(enum kind k, int ndev, uint32_t chunk, bool pump, bool splice, uint64_t total,
		       const uint8_t *src, uint8_t *buf, struct cpu_use *cu)
{
	struct reader *rd = calloc((size_t)ndev, sizeof(*rd));
	int *dev = calloc((size_t)ndev, sizeof(int));
	uint64_t t0, t1, per = total / (uint64_t)ndev;
	struct precopy_pump *p = NULL;
	struct producer pr;
	double c0, c1;
	int s[2];

	if (!rd || !dev)
		die("calloc");
	pin_self(false);
	mkstream(k != K_PIPE, s, chunk);
	if (k != K_PIPE && stream_sndbuf > 0 &&
	    setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &stream_sndbuf, sizeof(stream_sndbuf)))
		die("SO_SNDBUF");
	pr = (struct producer){ .fd = s[1], .ndev = ndev, .per = per, .chunk = chunk, .src = src };
	for (int i = 0; i < ndev; i++) {
		int d[2];

		mkpair(k == K_SOCK, d, chunk);
		dev[i] = d[1];
		rd[i].fd = d[0];
	}
	if (pump)
		p = bench_pump_new(PRECOPY_PUMP_LOAD, s[0], k, ndev, chunk, splice, dev);
	c0 = cpu_seconds();
	t0 = now_ns(NULL);
	pthread_create(&pr.t, NULL, producer_main, &pr);
	for (int i = 0; i < ndev; i++)
		pthread_create(&rd[i].t, NULL, reader_main, &rd[i]);
	if (pump) {
		if (precopy_pump_drain(p, 0) < 0) {
			fprintf(stderr, "drain (LOAD): %s\n", precopy_pump_strerror(p));
			exit(1);
		}
	} else {
		load_loop(s[0], dev, ndev, chunk, buf);
	}
	for (int i = 0; i < ndev; i++)
		pthread_join(rd[i].t, NULL);
	t1 = now_ns(NULL);
	c1 = cpu_seconds();
	pthread_join(pr.t, NULL);
	precopy_pump_free(p); /* the devices' fds were closed at their EOD */
	close(s[0]);
	for (int i = 0; i < ndev; i++) {
		close(rd[i].fd);
		if (rd[i].got != per) {
			fprintf(stderr, "LOAD: device %d got %llu of %llu bytes\n", i,
				(unsigned long long)rd[i].got, (unsigned long long)per);
			exit(1);
		}
	}
	free(rd);
	free(dev);
	cpu_use_fill(cu, c0, c1, t0, t1, per * (uint64_t)ndev, pr.cpu);
	return (double)(per * (uint64_t)ndev) * 8 / (double)(t1 - t0);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_ROUNDS 64

static int only = -1; /* ONLY=loop or ONLY=pump (diagnosis: profile one side) */

/* Whether the full case name (e.g. "pipe-4dev-64k-copy") passes the filter:
 * NULL passes all, "^x" is a prefix, anything else a substring. */
static bool wanted(const char *full, const char *filter)
{
	if (!filter)
		return true;
	if (filter[0] == '^')
		return strncmp(full, filter + 1, strlen(filter + 1)) == 0;
	return strstr(full, filter) != NULL;
}

/* Variant 0 is the loop, 1 the pump with splice, 2 the pump without. The
 * loop always runs; a pump variant runs if its full name passes the filter. */
static void bench_case(const char *name, bool load, enum kind k, int ndev, uint32_t chunk, uint64_t total,
		       int rounds, const uint8_t *src, uint8_t *buf, const char *filter)
{
	double g[3][MAX_ROUNDS], pr[3][MAX_ROUNDS], busy[3][MAX_ROUNDS], rdr[3][MAX_ROUNDS], eff[3][MAX_ROUNDS];
	struct cpu_use cu[3];
	int vl[3], nv = 1;

	vl[0] = 0;
	for (int v = (k == K_SOCK) ? 2 : 1; v < 3; v++) { /* splices need a device pipe */
		char full[80];

		snprintf(full, sizeof(full), "%s%s", name, v == 1 ? "splice" : "copy");
		if (wanted(full, filter))
			vl[nv++] = v;
	}
	if (nv == 1)
		return;
	for (int r = 0; r < rounds; r++) {
		for (int j = 0; j < nv; j++) {
			/* variants in list order on even rounds, reversed on odd */
			int v = vl[(r % 2) ? nv - 1 - j : j];

			if (only >= 0 && ((only == 0) != (v == 0))) {
				g[v][r] = busy[v][r] = rdr[v][r] = 1; /* ONLY: the other side is not run */
				cu[v] = (struct cpu_use){ 1, 1, 1 };
				continue;
			}
			g[v][r] = load ? run_load(k, ndev, chunk, v != 0, v == 1, total, src, buf, &cu[v])
				       : run(k, ndev, chunk, v != 0, v == 1, total, src, buf, &cu[v]);
			busy[v][r] = cu[v].busy;
			rdr[v][r] = cu[v].reader;
		}
		for (int j = 1; j < nv; j++) {
			pr[vl[j]][r] = g[vl[j]][r] / g[0][r];
			eff[vl[j]][r] = cu[0].ns_per_kib / cu[vl[j]].ns_per_kib;
		}
	}
	{
		double lim_min, lim_max, lim, busy_l = median(busy[0], rounds), rd_l = median(rdr[0], rounds);

		lim = median(g[0], rounds);
		lim_min = g[0][0];
		lim_max = g[0][rounds - 1];
		for (int j = 1; j < nv; j++) {
			int v = vl[j];
			double med = median(g[v], rounds), prm = median(pr[v], rounds);
			double e = median(eff[v], rounds);

			printf("case=%s%s gbps=%.2f limit_gbps=%.2f ratio=%.2f gbps_min=%.2f gbps_max=%.2f "
			       "limit_min=%.2f limit_max=%.2f pr_min=%.2f pr_med=%.2f pr_max=%.2f "
			       "busy_l=%.2f busy_p=%.2f cpu_eff=%.2f cpu_ceiling=%.2f rd_l=%.2f rd_p=%.2f\n",
			       name, v == 1 ? "splice" : "copy", med, lim, med / lim, g[v][0], g[v][rounds - 1],
			       lim_min, lim_max, pr[v][0], prm, pr[v][rounds - 1], busy_l, median(busy[v], rounds),
			       e, e / busy_l, rd_l, median(rdr[v], rounds));
			fflush(stdout);
		}
	}
}

int main(int argc, char **argv)
{
	static const int ndevs[] = { 1, 4, 16 };
	static const uint32_t chunks[] = { 64u << 10, 1u << 20 };
	uint64_t total = (argc > 1 ? strtoull(argv[1], NULL, 0) : 128) << 20;
	int rounds = argc > 3 ? atoi(argv[3]) : 5;
	struct precopy_pump_config probe = { .version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_SAVE,
					     .stream_fd = 1, .now_ns = now_ns };
	struct precopy_pump *pp;
	uint8_t *src, *buf;
	int why = 0;

	if (rounds < 1 || rounds > MAX_ROUNDS) {
		fprintf(stderr, "rounds: 1 .. %d\n", MAX_ROUNDS);
		return 2;
	}
	src = malloc(1u << 20);
	buf = malloc((1u << 20) + PRECOPY_FRAME_HDR_SIZE);
	if (!src || !buf)
		die("malloc");
	pp = precopy_pump_new(&probe, NULL);
	signal(SIGPIPE, SIG_IGN);
	pin_setup();
	{
		cpu_set_t cs;

		if (sched_getaffinity(0, sizeof(cs), &cs) == 0 && CPU_COUNT(&cs) > 0)
			ncpu = CPU_COUNT(&cs);
	}
	if (getenv("SNDBUF"))
		stream_sndbuf = atoi(getenv("SNDBUF"));
	if (getenv("ONLY"))
		only = strcmp(getenv("ONLY"), "loop") == 0 ? 0 : 1;
	memset(src, 0xa5, 1u << 20);
	printf("# bench-pump: %llu MiB per run, %d interleaved rounds, medians; gbps = payload Gbit/s; "
	       "path=%s (%d); pinning %s\n",
	       (unsigned long long)(total >> 20), rounds,
	       pp && precopy_pump_path(pp, &why) == PRECOPY_PUMP_PATH_URING ? "io_uring" : "fallback", why,
	       pin ? "on (measured thread on the first CPU, helpers on the others)" : "off");
	precopy_pump_free(pp);
	for (int dir = 0; dir < 2; dir++) { /* SAVE cases, then LOAD ("load-...") */
		for (int k = 0; k < 3; k++) {
			for (size_t c = 0; c < 2; c++) {
				for (size_t n = 0; n < 3; n++) {
					char name[64];

					snprintf(name, sizeof(name), "%s%s-%ddev-%uk-", dir ? "load-" : "",
						 dir ? load_kind_name[k] : kind_name[k], ndevs[n], chunks[c] >> 10);
					bench_case(name, dir == 1, (enum kind)k, ndevs[n], chunks[c], total, rounds, src,
						   buf, argc > 2 && argv[2][0] ? argv[2] : NULL);
				}
			}
		}
	}
	free(src);
	free(buf);
	return 0;
}
