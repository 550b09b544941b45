/* bench-pump — the device-state pump against a plain read/write copy loop.
 *
 * For each case, N device fds are fed by writer threads (playing devices
 * that always have data) and the stream is drained by a reader thread
 * (playing the network). The same fds kind, chunk size, framing bytes and
 * threads are used for both:
 *   limit: a plain loop, round-robin over devices: read(dev) -> write(stream)
 *          of header + payload (what a migration thread would do by hand);
 *   pump:  precopy_pump_drain() on the default path (io_uring here).
 * Prints one line per case:
 *   case=<name> gbps=<pump Gbit/s> limit_gbps=<loop Gbit/s> ratio=<pump/loop>
 * Each figure is the median of 3 runs measured in this process.
 * Kinds: pipe (device pipes, stream pipe), sock (socketpairs for both),
 * pipe2sock (device pipes, stream socket). "splice" marks devices added with
 * PRECOPY_PUMP_DEV_PIPE (spliced to the stream), "copy" marks NO_SPLICE.
 * Usage: bench-pump [total_MiB_per_run (default 128) [case substring]].
 * Environment (diagnosis only): PF=<extra pump flags, e.g. 1 = fallback,
 * 4 = no registered buffers>, PI=<poll interval ms>, DBG=1 (frame counts). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "precopy.h"

enum kind { K_PIPE, K_SOCK, K_PIPE2SOCK };
static const char *const kind_name[] = { "pipe", "sock", "pipe2sock" };

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

struct reader {
	int fd;
	uint64_t got;
	pthread_t t;
};

static void *reader_main(void *a)
{
	struct reader *r = a;
	static __thread uint8_t sink[1 << 20];

	for (;;) {
		ssize_t n = read(r->fd, sink, sizeof(sink));

		if (n > 0)
			r->got += (uint64_t)n;
		else if (!(n < 0 && errno == EINTR))
			break;
	}
	return NULL;
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
	while (n) {
		ssize_t r = write(fd, b, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

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

/* One run; returns Gbit/s of payload. */
static double run(enum kind k, int ndev, uint32_t chunk, bool pump, bool splice, uint64_t total,
		  const uint8_t *src, uint8_t *buf)
{
	struct writer *w = calloc((size_t)ndev, sizeof(*w));
	int *dev = calloc((size_t)ndev, sizeof(int));
	struct reader rd = { 0 };
	int s[2];
	uint64_t t0, t1, per = total / (uint64_t)ndev;

	mkpair(k != K_PIPE, s, chunk);
	rd.fd = s[0];
	for (int i = 0; i < ndev; i++) {
		int d[2];

		mkpair(k == K_SOCK, d, chunk);
		dev[i] = d[0];
		w[i] = (struct writer){ .fd = d[1], .bytes = per, .chunk = chunk, .buf = src };
	}
	pthread_create(&rd.t, NULL, reader_main, &rd);
	for (int i = 0; i < ndev; i++)
		pthread_create(&w[i].t, NULL, writer_main, &w[i]);

	t0 = now_ns(NULL);
	if (pump) {
		struct precopy_pump_config cfg = {
			.version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_SAVE, .stream_fd = s[1],
			.flags = (splice ? 0 : PRECOPY_PUMP_NO_SPLICE) | (getenv("PF") ? (uint32_t)atoi(getenv("PF")) : 0), .chunk_size = chunk,
			.queue_depth = (uint32_t)(ndev * 2 < 8 ? 8 : ndev * 2), .now_ns = now_ns,
			.poll_interval_ms = getenv("PI") ? (uint32_t)atoi(getenv("PI")) : 0,
		};
		int err;
		struct precopy_pump *p = precopy_pump_new(&cfg, &err);
		int64_t r;

		if (!p)
			die("precopy_pump_new");
		for (int i = 0; i < ndev; i++)
			precopy_pump_add_device(p, (uint32_t)i, dev[i], k != K_SOCK ? PRECOPY_PUMP_DEV_PIPE : 0);
		r = precopy_pump_drain(p, 0);
		if (r < 0) {
			fprintf(stderr, "drain: %s\n", precopy_pump_strerror(p));
			exit(1);
		}
		if (getenv("DBG")) {
			struct precopy_pump_dev_status st;

			precopy_pump_dev_status(p, 0, &st);
			fprintf(stderr, "dev0: %llu bytes in %llu frames\n", (unsigned long long)st.bytes,
				(unsigned long long)st.frames);
		}
		precopy_pump_free(p);
	} else {
		copy_loop(dev, ndev, s[1], chunk, buf);
	}
	close(s[1]);
	pthread_join(rd.t, NULL);
	t1 = now_ns(NULL);
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
	return (double)(per * (uint64_t)ndev) * 8 / (double)(t1 - t0);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median3(enum kind k, int ndev, uint32_t chunk, bool pump, bool splice, uint64_t total,
		      const uint8_t *src, uint8_t *buf)
{
	double v[3];

	for (int i = 0; i < 3; i++)
		v[i] = run(k, ndev, chunk, pump, splice, total, src, buf);
	qsort(v, 3, sizeof(v[0]), cmpd);
	return v[1];
}

int main(int argc, char **argv)
{
	static const int ndevs[] = { 1, 4, 16 };
	static const uint32_t chunks[] = { 64u << 10, 1u << 20 };
	uint64_t total = (argc > 1 ? strtoull(argv[1], NULL, 0) : 128) << 20;
	uint8_t *src = malloc(1u << 20), *buf = malloc((1u << 20) + PRECOPY_FRAME_HDR_SIZE);
	struct precopy_pump_config probe = { .version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_SAVE,
					     .stream_fd = 1, .now_ns = now_ns };
	struct precopy_pump *pp = precopy_pump_new(&probe, NULL);
	int why = 0;

	signal(SIGPIPE, SIG_IGN);
	memset(src, 0xa5, 1u << 20);
	printf("# bench-pump: %llu MiB per run, median of 3; gbps = payload Gbit/s; path=%s (%d)\n",
	       (unsigned long long)(total >> 20),
	       pp && precopy_pump_path(pp, &why) == PRECOPY_PUMP_PATH_URING ? "io_uring" : "fallback", why);
	precopy_pump_free(pp);
	for (int k = 0; k < 3; k++) {
		for (size_t c = 0; c < 2; c++) {
			for (size_t n = 0; n < 3; n++) {
				char name[64];
				double lim;

				snprintf(name, sizeof(name), "%s-%ddev-%uk-", kind_name[k], ndevs[n], chunks[c] >> 10);
				if (argc > 2 && !strstr(name, argv[2]))
					continue;
				lim = median3((enum kind)k, ndevs[n], chunks[c], false, false, total, src, buf);
				for (int sp = (k == K_SOCK); sp < 2; sp++) {
					double g = median3((enum kind)k, ndevs[n], chunks[c], true, sp == 0, total,
							   src, buf);

					printf("case=%s%s gbps=%.2f limit_gbps=%.2f ratio=%.2f\n", name,
					       sp == 0 ? "splice" : "copy", g, lim, g / lim);
					fflush(stdout);
				}
			}
		}
	}
	free(src);
	free(buf);
	return 0;
}
