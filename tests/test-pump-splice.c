/* SPDX-License-Identifier: MIT */
/* The io_uring SAVE path with devices added as pipes (PRECOPY_PUMP_DEV_PIPE),
 * checked byte for byte by a reader thread that parses the stream:
 *  - where the stream cannot block a non-blocking splice (a pipe, or an
 *    O_NONBLOCK socket) the pump's own thread splices each frame's payload
 *    and, when the stream is full, resumes mid-frame after a ring poll (a
 *    stream smaller than one frame makes that happen many times per frame);
 *    so does a blocking socket, whose sends the pump bounds to one poll
 *    interval (SO_SNDTIMEO) for the length of a call and then restores;
 *  - devices whose pipe is empty are polled (POLLIN), then spliced; one that
 *    closes without data ends with EOD; a budgeted run() and a drain
 *    deadline cancel those polls (a cancel aimed at the wrong operation
 *    would leave the call waiting for ever). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>

#include "test-pump.h"

#define MAXDEV 8

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint8_t pat(uint32_t dev, uint64_t off)
{
	return (uint8_t)(dev * 31u + off * 7u + (off >> 9));
}

/* ---------------------------------------------------------------- writers */

struct feeder {
	int fd;
	uint32_t dev;
	uint64_t size;
	uint32_t piece; /* bytes per write */
	bool trickle;   /* sleep between writes, so the pipe is often empty */
	pthread_t t;
};

static void *feeder_main(void *a)
{
	struct feeder *f = a;
	uint8_t *b = malloc(f->piece);
	uint64_t off = 0;

	while (b && off < f->size) {
		size_t n = f->size - off < f->piece ? (size_t)(f->size - off) : f->piece;
		ssize_t r;

		for (size_t i = 0; i < n; i++)
			b[i] = pat(f->dev, off + i);
		r = write(f->fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (uint64_t)r;
		if (f->trickle)
			usleep(300);
	}
	free(b);
	close(f->fd);
	return NULL;
}

/* ---------------------------------------------------------------- reader */

struct checker {
	int fd;
	size_t piece; /* bytes per read(2): small pieces keep the stream full */
	uint64_t bytes[MAXDEV];
	bool eod[MAXDEV];
	uint64_t frames;
	char err[160];
	pthread_t t;
};

static void *checker_main(void *a)
{
	struct checker *c = a;
	uint8_t *buf = malloc(c->piece);
	uint8_t hdr[PRECOPY_FRAME_HDR_SIZE];
	uint32_t have = 0, left = 0, dev = 0;
	bool in_payload = false;

	for (;;) {
		ssize_t n = read(c->fd, buf, c->piece);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !c->err[0];) {
			if (!in_payload) {
				struct precopy_frame_hdr h;
				int r;

				hdr[have++] = buf[i++];
				if (have < PRECOPY_FRAME_HDR_SIZE)
					continue;
				have = 0;
				r = precopy_frame_decode(hdr, 0, &h);
				if (r || h.dev_id >= MAXDEV || c->eod[h.dev_id] || (h.flags & PRECOPY_FRAME_ABORT)) {
					snprintf(c->err, sizeof(c->err), "bad frame %d dev %u flags %u", r, h.dev_id,
						 h.flags);
					break;
				}
				c->frames++;
				if (h.flags & PRECOPY_FRAME_EOD) {
					c->eod[h.dev_id] = true;
					continue;
				}
				dev = h.dev_id;
				left = h.len;
				in_payload = true;
				continue;
			}
			if (buf[i] != pat(dev, c->bytes[dev])) {
				snprintf(c->err, sizeof(c->err), "dev %u byte %llu: 0x%02x != 0x%02x", dev,
					 (unsigned long long)c->bytes[dev], buf[i], pat(dev, c->bytes[dev]));
				break;
			}
			c->bytes[dev]++;
			i++;
			if (--left == 0)
				in_payload = false;
		}
	}
	if (!c->err[0] && (in_payload || have))
		snprintf(c->err, sizeof(c->err), "stream ends inside a frame");
	free(buf);
	return NULL;
}

/* ---------------------------------------------------------------- cases */

enum stream_kind { ST_PIPE, ST_SOCK_NONBLOCK, ST_SOCK_BLOCKING, ST_TCP_BLOCKING };

struct sc {
	enum stream_kind stream;
	int ndev;
	uint64_t size;      /* per device; device i gets size + i * 4099 */
	uint32_t chunk;
	int stream_size;    /* pipe stream: F_SETPIPE_SZ (0: default) */
	size_t read_piece;  /* reader's read(2) size */
	bool trickle;
	int empty_dev;      /* this device closes without data (-1: none) */
	bool quiet;         /* devices filled before the drain in one write each
			       (size + 4099 * (ndev - 1) <= 60 KiB), the
			       stream read after it */
};

static struct precopy_pump *uring_pump(int stream, uint32_t chunk, uint64_t (*clk)(void *), void *cctx)
{
	struct precopy_pump *p = pump_make(PRECOPY_PUMP_SAVE, stream, 0, chunk, NULL, clk, cctx);

	if (precopy_pump_path(p, NULL) != PRECOPY_PUMP_PATH_URING) {
		precopy_pump_free(p);
		cr_skip_test("io_uring is not available here: this suite tests the io_uring path");
	}
	return p;
}

static void stream_open(enum stream_kind k, int stream_size, int s[2])
{
	if (k == ST_TCP_BLOCKING) {
		tcp_pair(s);
		return;
	}
	make_stream(k != ST_PIPE, s);
	if (k == ST_PIPE && stream_size)
		cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, stream_size), stream_size);
	if (k == ST_SOCK_NONBLOCK)
		cr_assert_eq(fcntl(s[1], F_SETFL, fcntl(s[1], F_GETFL) | O_NONBLOCK), 0);
}

/* Drains o->ndev pipe devices into the stream and checks what it carries. */
static void splice_case(const struct sc *o)
{
	struct feeder f[MAXDEV];
	struct checker c = { .piece = o->read_piece };
	struct precopy_pump *p;
	int s[2];
	int64_t r;
	uint64_t total = 0;

	cr_assert_leq(o->ndev, MAXDEV);
	stream_open(o->stream, o->stream_size, s);
	if (o->quiet && o->stream != ST_PIPE) {
		int sz = 1 << 20;

		setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(s[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	p = uring_pump(s[1], o->chunk, NULL, NULL);
	c.fd = s[0];
	for (int i = 0; i < o->ndev; i++) {
		int d[2];

		cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
		f[i] = (struct feeder){ .fd = d[1], .dev = (uint32_t)i, .piece = 5000 + 1000 * (uint32_t)i,
					.size = i == o->empty_dev ? 0 : o->size + (uint64_t)i * 4099,
					.trickle = o->trickle };
		total += f[i].size;
		cr_assert_eq(precopy_pump_add_device(p, (uint32_t)i, d[0], PRECOPY_PUMP_DEV_PIPE |
								       PRECOPY_PUMP_DEV_CLOSE_AT_END), 0);
	}
	if (!o->quiet)
		cr_assert_eq(pthread_create(&c.t, NULL, checker_main, &c), 0);
	for (int i = 0; i < o->ndev; i++) {
		if (o->quiet) {
			f[i].piece = (uint32_t)f[i].size + 1; /* one write: whole pages */
			feeder_main(&f[i]); /* fits in the pipe: returns at once */
			f[i].t = pthread_self();
		} else {
			cr_assert_eq(pthread_create(&f[i].t, NULL, feeder_main, &f[i]), 0);
		}
	}
	r = precopy_pump_drain(p, 0);
	cr_assert_eq(r, (int64_t)total, "drain: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	for (int i = 0; i < o->ndev; i++) {
		struct precopy_pump_dev_status st;

		if (!o->quiet)
			pthread_join(f[i].t, NULL);
		cr_assert_eq(precopy_pump_dev_status(p, (uint32_t)i, &st), 0);
		cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(st.bytes, f[i].size);
	}
	precopy_pump_free(p);
	close(s[1]);
	if (o->quiet) {
		if (o->stream == ST_SOCK_NONBLOCK) /* the reader's end is blocking */
			cr_assert_eq(fcntl(s[0], F_GETFL) & O_NONBLOCK, 0);
		checker_main(&c);
	} else {
		pthread_join(c.t, NULL);
	}
	close(s[0]);
	cr_assert_str_empty(c.err, "stream check: %s", c.err);
	for (int i = 0; i < o->ndev; i++) {
		cr_assert(c.eod[i], "dev %d: no EOD in the stream", i);
		cr_assert_eq(c.bytes[i], f[i].size, "dev %d: %llu of %llu bytes in the stream", i,
			     (unsigned long long)c.bytes[i], (unsigned long long)f[i].size);
	}
}

/* Quiet cases: devices filled and closed before the drain, the stream read
 * after it (it holds everything), so frames follow one another in order. */
Test(pump_splice, quiet_pipe_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_PIPE, .ndev = 4, .size = 40000, .chunk = 16384,
				  .stream_size = 1 << 20, .read_piece = 65536, .empty_dev = -1, .quiet = true });
}

Test(pump_splice, quiet_nonblocking_socket_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_SOCK_NONBLOCK, .ndev = 2, .size = 30000, .chunk = 16384,
				  .read_piece = 65536, .empty_dev = -1, .quiet = true });
}

Test(pump_splice, quiet_blocking_socket_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_SOCK_BLOCKING, .ndev = 2, .size = 30000, .chunk = 16384,
				  .read_piece = 65536, .empty_dev = -1, .quiet = true });
}

/* Busy cases: writers, pump and reader at once. */
Test(pump_splice, busy_pipe_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_PIPE, .ndev = 4, .size = 3u << 20, .chunk = 65536,
				  .read_piece = 65536, .empty_dev = -1 });
}

Test(pump_splice, stream_smaller_than_a_frame_resumes_mid_frame, .timeout = 60)
{
	/* 4 KiB stream, 256 KiB frames, a reader taking 1000 bytes at a time:
	 * every frame's splice stops on a full stream many times */
	splice_case(&(struct sc){ .stream = ST_PIPE, .ndev = 3, .size = 1u << 20, .chunk = 1u << 18,
				  .stream_size = 4096, .read_piece = 1000, .empty_dev = -1 });
}

/* A blocking TCP stream over loopback: the pump's thread splices whole
 * frames into it, each send bounded by SO_SNDTIMEO, resuming after a ring
 * poll where a send timed out part way. */
Test(pump_splice, busy_tcp_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_TCP_BLOCKING, .ndev = 4, .size = 3u << 20,
				  .chunk = 1u << 20, .read_piece = 65536, .empty_dev = -1 });
	splice_case(&(struct sc){ .stream = ST_TCP_BLOCKING, .ndev = 3, .size = 1u << 20,
				  .chunk = 65536, .read_piece = 1000, .trickle = true, .empty_dev = 1 });
}

Test(pump_splice, busy_nonblocking_socket_stream, .timeout = 60)
{
	splice_case(&(struct sc){ .stream = ST_SOCK_NONBLOCK, .ndev = 4, .size = 2u << 20, .chunk = 65536,
				  .read_piece = 3000, .empty_dev = -1 });
}

Test(pump_splice, empty_pipes_are_polled_then_spliced, .timeout = 60)
{
	/* writers trickle, so device pipes are often empty; device 2 ends
	 * without writing anything */
	splice_case(&(struct sc){ .stream = ST_PIPE, .ndev = 5, .size = 200000, .chunk = 16384,
				  .read_piece = 65536, .trickle = true, .empty_dev = 2 });
}

/* run() returns with nothing to move while a device pipe is empty (its poll
 * cancelled), then moves the bytes once they arrive; a drain deadline on a
 * device that never writes fails it with -ETIMEDOUT and an ABORT frame. */
Test(pump_splice, run_and_deadline_cancel_device_polls, .timeout = 60)
{
	int s[2], d0[2], d1[2];
	uint8_t b[100], hdr[PRECOPY_FRAME_HDR_SIZE + 100];
	struct precopy_frame_hdr h;
	struct precopy_pump_dev_status st;
	struct precopy_pump *p;
	int64_t r;

	stream_open(ST_PIPE, 0, s);
	p = uring_pump(s[1], 4096, NULL, NULL);
	cr_assert_eq(pipe2(d0, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(d1, O_CLOEXEC), 0);
	cr_assert_eq(precopy_pump_add_device(p, 1, d0[0], PRECOPY_PUMP_DEV_PIPE), 0);
	cr_assert_eq(precopy_pump_add_device(p, 2, d1[0], PRECOPY_PUMP_DEV_PIPE), 0);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(precopy_pump_run(p, NULL), 0, "empty pipes: nothing now");
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = pat(1, i);
	cr_assert_eq(write(d0[1], b, sizeof(b)), (ssize_t)sizeof(b));
	r = 0;
	for (int k = 0; k < 100 && r == 0; k++)
		r = precopy_pump_run(p, NULL);
	cr_assert_eq(r, (int64_t)sizeof(b), "run: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	cr_assert_eq(read(s[0], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	cr_assert_eq(precopy_frame_decode(hdr, 0, &h), 0);
	cr_assert_eq(h.dev_id, 1);
	cr_assert_eq(h.len, sizeof(b));
	cr_assert_arr_eq(hdr + PRECOPY_FRAME_HDR_SIZE, b, sizeof(b));

	close(d0[1]); /* device 1 ends; device 2 never writes nor ends */
	r = precopy_pump_drain(p, mono_ns(NULL) + 50000000ull);
	cr_assert_eq(r, -ETIMEDOUT, "drain: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	cr_assert_eq(precopy_pump_dev_status(p, 1, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
	cr_assert_eq(precopy_pump_dev_status(p, 2, &st), 0);
	cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED);
	cr_assert_eq(st.err, -ETIMEDOUT);
	/* the stream holds device 1's EOD and device 2's ABORT(ETIMEDOUT) */
	{
		uint8_t rest[2 * PRECOPY_FRAME_HDR_SIZE + PRECOPY_FRAME_ABORT_LEN];
		bool eod = false, abrt = false;
		size_t off = 0;

		cr_assert_eq(read(s[0], rest, sizeof(rest)), (ssize_t)sizeof(rest));
		while (off < sizeof(rest)) {
			cr_assert_eq(precopy_frame_decode(rest + off, 0, &h), 0);
			off += PRECOPY_FRAME_HDR_SIZE;
			if (h.flags & PRECOPY_FRAME_EOD) {
				cr_assert_eq(h.dev_id, 1);
				eod = true;
			} else {
				cr_assert_eq(h.flags, PRECOPY_FRAME_ABORT);
				cr_assert_eq(h.dev_id, 2);
				cr_assert_eq(le32(rest + off), (uint32_t)ETIMEDOUT);
				off += PRECOPY_FRAME_ABORT_LEN;
				abrt = true;
			}
		}
		cr_assert(eod && abrt);
	}
	precopy_pump_free(p);
	close(d1[1]);
	close(d0[0]);
	close(d1[0]);
	close(s[0]);
	close(s[1]);
}

/* Misuse: somebody else reads a device pipe while the pump is inside a frame
 * whose header already counted those bytes. The pump must fail the stream
 * with its reason, not wait for stream room for ever (it would spin: the
 * stream has room, the device pipe stays empty). */
struct thief {
	int dev_rd, stream_rd;
	atomic_bool done;
	size_t stolen;
	pthread_t t;
};

static void *thief_main(void *a)
{
	struct thief *th = a;
	struct pollfd pfd = { .fd = th->stream_rd, .events = POLLIN };
	uint8_t b[65536];
	int avail = 0;

	/* the header is on the stream: the pump is inside the frame */
	if (poll(&pfd, 1, 10000) != 1)
		return NULL;
	usleep(20000); /* let it reach its wait for stream room */
	if (ioctl(th->dev_rd, FIONREAD, &avail) == 0 && avail > 0)
		th->stolen = (size_t)read(th->dev_rd, b, (size_t)avail < sizeof(b) ? (size_t)avail : sizeof(b));
	while (!atomic_load(&th->done)) /* make room on the stream */
		if (poll(&pfd, 1, 10) == 1 && read(th->stream_rd, b, sizeof(b)) <= 0)
			break;
	return NULL;
}

static void stolen_mid_frame(bool fallback)
{
	int s[2], d[2];
	uint8_t b[32768];
	struct thief th = { .stolen = 0 };
	struct precopy_pump *p;
	int64_t r;

	stream_open(ST_PIPE, 4096, s); /* one page: the header fills it */
	p = fallback ? pump_make(PRECOPY_PUMP_SAVE, s[1], PRECOPY_PUMP_FORCE_FALLBACK, 16384, NULL, NULL,
				 NULL)
		     : uring_pump(s[1], 16384, NULL, NULL);
	cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
	memset(b, 0x5a, sizeof(b));
	cr_assert_eq(write(d[1], b, sizeof(b)), (ssize_t)sizeof(b));
	cr_assert_eq(precopy_pump_add_device(p, 1, d[0], PRECOPY_PUMP_DEV_PIPE), 0);
	th.dev_rd = d[0];
	th.stream_rd = s[0];
	atomic_init(&th.done, false);
	cr_assert_eq(pthread_create(&th.t, NULL, thief_main, &th), 0);
	r = precopy_pump_run(p, NULL);
	atomic_store(&th.done, true);
	pthread_join(th.t, NULL);
	cr_assert_eq(th.stolen, sizeof(b), "the thief took %zu bytes", th.stolen);
	cr_assert_eq(r, -EIO, "run: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	cr_assert(strstr(precopy_pump_strerror(p), "vanished"), "%s", precopy_pump_strerror(p));
	precopy_pump_free(p);
	close(d[1]);
	close(d[0]);
	close(s[0]);
	close(s[1]);
}

Test(pump_splice, bytes_stolen_from_a_device_pipe_mid_frame_fail_the_stream, .timeout = 30)
{
	stolen_mid_frame(false);
}

Test(pump_splice, bytes_stolen_mid_frame_fail_the_stream_on_the_sys_path, .timeout = 30)
{
	stolen_mid_frame(true);
}

/* A blocking socket stream whose peer stops reading, on every path: the
 * drain must still end soon after its deadline, with the stream failed
 * (-ETIMEDOUT, the frame cut short) rather than wait for the peer for ever.
 * io_uring splicing: the pump's thread splices until a send times out
 * (SO_SNDTIMEO, one poll interval), then polls, and the poll is cancelled;
 * io_uring copying: the pending write is cancelled; the sys path: every
 * write and splice waits at most one poll interval (SO_SNDTIMEO on a
 * blocking socket; a pipe or an O_NONBLOCK socket does not wait). */
static void stalled_peer(enum stream_kind k, uint32_t pump_flags, uint32_t dev_flags)
{
	int s[2], d[2];
	static uint8_t b[1u << 20];
	struct precopy_pump *p;
	uint64_t t0;
	int64_t r;

	stream_open(k, 0, s);
	p = pump_make(PRECOPY_PUMP_SAVE, s[1], pump_flags, 1u << 20, NULL, NULL, NULL);
	cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(d[1], F_SETPIPE_SZ, (int)sizeof(b)), (int)sizeof(b));
	memset(b, 0xa5, sizeof(b));
	cr_assert_eq(write(d[1], b, sizeof(b)), (ssize_t)sizeof(b));
	cr_assert_eq(precopy_pump_add_device(p, 1, d[0], dev_flags), 0);
	t0 = mono_ns(NULL);
	r = precopy_pump_drain(p, t0 + 200000000ull);
	cr_assert_eq(r, -ETIMEDOUT, "flags %#x/%#x: drain: %lld (%s): nobody reads the stream",
		     pump_flags, dev_flags, (long long)r, precopy_pump_strerror(p));
	cr_assert_lt(mono_ns(NULL) - t0, 10000000000ull, "ended %llu ms after the start",
		     (unsigned long long)((mono_ns(NULL) - t0) / 1000000));
	precopy_pump_free(p);
	close(d[1]);
	close(d[0]);
	close(s[0]);
	close(s[1]);
}

Test(pump_splice, blocking_socket_stream_with_a_stalled_peer_times_out, .timeout = 60)
{
	stalled_peer(ST_SOCK_BLOCKING, 0, PRECOPY_PUMP_DEV_PIPE);
	stalled_peer(ST_SOCK_BLOCKING, 0, 0);
	stalled_peer(ST_TCP_BLOCKING, 0, PRECOPY_PUMP_DEV_PIPE);
	stalled_peer(ST_TCP_BLOCKING, 0, 0);
	stalled_peer(ST_SOCK_BLOCKING, PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
	stalled_peer(ST_SOCK_BLOCKING, PRECOPY_PUMP_FORCE_FALLBACK, 0);
	stalled_peer(ST_TCP_BLOCKING, PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
	stalled_peer(ST_TCP_BLOCKING, PRECOPY_PUMP_FORCE_FALLBACK, 0);
	stalled_peer(ST_SOCK_NONBLOCK, PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
	stalled_peer(ST_SOCK_NONBLOCK, PRECOPY_PUMP_FORCE_FALLBACK, 0);
	stalled_peer(ST_PIPE, PRECOPY_PUMP_FORCE_FALLBACK, PRECOPY_PUMP_DEV_PIPE);
}

static long timeo_us(int fd)
{
	struct timeval tv;
	socklen_t l = sizeof(tv);

	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &l), 0);
	return tv.tv_sec * 1000000L + tv.tv_usec;
}

/* The pump bounds a blocking socket's sends only for the length of a call:
 * afterwards the caller's SO_SNDTIMEO is back, whatever it was (none, longer
 * than the poll interval, or shorter, which the pump keeps as it is), on
 * both paths, after a drain that moved bytes and after one that failed on a
 * stalled peer. */
static void sndtimeo_restored(uint32_t pump_flags, long caller_us, bool stall)
{
	struct timeval tv = { .tv_sec = caller_us / 1000000L, .tv_usec = caller_us % 1000000L };
	static uint8_t b[1u << 20];
	size_t len = stall ? sizeof(b) : 20000;
	int s[2], d[2];
	struct precopy_pump *p;
	int64_t r;
	long before;

	stream_open(ST_SOCK_BLOCKING, 0, s);
	cr_assert_eq(setsockopt(s[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	before = timeo_us(s[1]); /* the kernel keeps it in jiffies */
	cr_assert(caller_us ? before > 0 && before < 10000 + caller_us : before == 0);
	p = pump_make(PRECOPY_PUMP_SAVE, s[1], pump_flags, 1u << 20, NULL, NULL, NULL);
	cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(d[1], F_SETPIPE_SZ, (int)sizeof(b)), (int)sizeof(b));
	memset(b, 0x5a, len);
	cr_assert_eq(write(d[1], b, len), (ssize_t)len);
	close(d[1]);
	cr_assert_eq(precopy_pump_add_device(p, 1, d[0], PRECOPY_PUMP_DEV_PIPE), 0);
	r = precopy_pump_drain(p, stall ? mono_ns(NULL) + 100000000ull : 0);
	if (stall)
		cr_assert_eq(r, -ETIMEDOUT, "drain: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	else
		cr_assert_eq(r, (int64_t)len, "drain: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	cr_assert_eq(timeo_us(s[1]), before, "flags %#x, caller %ld us, stall %d: SO_SNDTIMEO %ld us after the call",
		     pump_flags, before, stall, timeo_us(s[1]));
	precopy_pump_free(p);
	close(d[0]);
	close(s[0]);
	close(s[1]);
}

Test(pump_splice, a_blocking_socket_gets_its_send_timeout_back, .timeout = 60)
{
	static const long caller[] = { 0, 5000000L, 2000L }; /* none, longer, shorter */
	static const uint32_t paths[] = { 0, PRECOPY_PUMP_FORCE_FALLBACK };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		for (size_t j = 0; j < sizeof(caller) / sizeof(caller[0]); j++) {
			sndtimeo_restored(paths[i], caller[j], false);
			sndtimeo_restored(paths[i], caller[j], true);
		}
}

/* Copies (NO_SPLICE) from a device pipe into a pipe stream move at most
 * 64 KiB per frame, so that neither pipe's other end waits for a whole
 * 1 MiB copy (a pipe wakes its peer only when a read or write ends); into
 * a socket stream a frame takes what the device pipe holds, up to the
 * chunk. The bytes are the same either way: 512 KiB queued in a device
 * pipe, drained with 1 MiB chunks on both paths, parsed from the stream. */
static void pipe_copy_frames(enum stream_kind k, uint32_t path, uint32_t want_max, uint64_t want_frames)
{
	enum { SIZE = 512 << 10 };
	static uint8_t b[SIZE + 64 * PRECOPY_FRAME_HDR_SIZE];
	int s[2], d[2], big = 4 << 20;
	uint32_t max = 0;
	uint64_t frames = 0, payload = 0;
	size_t have = 0;
	struct precopy_pump *p;
	int64_t r;

	stream_open(k, 1 << 20, s);
	if (k != ST_PIPE)
		cr_assert_eq(setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)), 0);
	p = pump_make(PRECOPY_PUMP_SAVE, s[1], path | PRECOPY_PUMP_NO_SPLICE, 1u << 20, NULL, NULL, NULL);
	cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(d[1], F_SETPIPE_SZ, SIZE), SIZE);
	for (uint32_t i = 0; i < SIZE; i++)
		b[i] = pat(3, i);
	cr_assert_eq(write(d[1], b, SIZE), (ssize_t)SIZE);
	close(d[1]);
	cr_assert_eq(precopy_pump_add_device(p, 3, d[0], PRECOPY_PUMP_DEV_PIPE), 0);
	r = precopy_pump_drain(p, 0);
	cr_assert_eq(r, SIZE, "drain: %lld (%s)", (long long)r, precopy_pump_strerror(p));
	precopy_pump_free(p);
	close(s[1]);
	for (ssize_t n; (n = read(s[0], b + have, sizeof(b) - have)) > 0;)
		have += (size_t)n;
	close(s[0]);
	close(d[0]);
	for (size_t off = 0; off < have;) {
		struct precopy_frame_hdr h;

		cr_assert_leq(off + PRECOPY_FRAME_HDR_SIZE, have, "stream ends inside a header");
		cr_assert_eq(precopy_frame_decode(b + off, 0, &h), 0);
		off += PRECOPY_FRAME_HDR_SIZE;
		cr_assert_eq(h.dev_id, 3);
		if (h.flags & PRECOPY_FRAME_EOD)
			break;
		cr_assert_leq(off + h.len, have, "stream ends inside a frame");
		for (uint32_t i = 0; i < h.len; i++)
			cr_assert_eq(b[off + i], pat(3, payload + i), "byte %llu", (unsigned long long)(payload + i));
		off += h.len;
		payload += h.len;
		frames++;
		max = h.len > max ? h.len : max;
	}
	cr_assert_eq(payload, SIZE);
	cr_assert_eq(max, want_max, "%s stream, %s: largest frame %u, expected %u", k == ST_PIPE ? "pipe" : "socket",
		     path_name(path), max, want_max);
	cr_assert_eq(frames, want_frames, "%llu frames", (unsigned long long)frames);
}

Test(pump_splice, copies_through_two_pipes_go_in_64k_frames, .timeout = 60)
{
	static const uint32_t paths[] = { 0, PRECOPY_PUMP_FORCE_FALLBACK };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		pipe_copy_frames(ST_PIPE, paths[i], 64u << 10, 8);
		pipe_copy_frames(ST_SOCK_BLOCKING, paths[i], 512u << 10, 1);
	}
}
