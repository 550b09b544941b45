/* SPDX-License-Identifier: MIT */
/* LOAD splices: a destination device added with PRECOPY_PUMP_DEV_PIPE (the
 * write end of a back-end's state pipe) takes its payload straight from the
 * stream by splice(2), on both paths, from a pipe, an AF_UNIX socket and a
 * blocking TCP stream. Content is checked byte for byte by the destination
 * fake back-ends; the pump's splice counter (a test hook) says every
 * payload byte was spliced, and none with PRECOPY_PUMP_NO_SPLICE or
 * without the flag. Budgets hold per call; a device whose reader goes away
 * mid-frame fails alone (-EPIPE) while the others finish. The stalled and
 * ABORT cases run spliced in test-pump-faults.c. */
#include <stdio.h>

#include "test-pump.h"

#include "../engine/pump_internal.h"

static const uint32_t paths[] = { 0, PRECOPY_PUMP_FORCE_FALLBACK };

/* rt.after: what the destination spliced, against what it should have */
static uint64_t want_spliced_all;

static void check_spliced(const struct rt *o, struct precopy_pump *src, struct precopy_pump *dst, uint64_t total)
{
	(void)src;
	if (want_spliced_all)
		cr_assert_eq(dst->load_spliced, total, "%s, chunk %u: %llu of %llu payload bytes spliced",
			     path_name(o->flags), o->chunk, (unsigned long long)dst->load_spliced,
			     (unsigned long long)total);
	else
		cr_assert_eq(dst->load_spliced, 0, "%s: %llu bytes spliced where none may be", path_name(o->flags),
			     (unsigned long long)dst->load_spliced);
}

enum stream { ST_PIPE, ST_UNIX, ST_TCP };

static void spliced_roundtrip(enum stream st, uint32_t flags, uint32_t chunk, uint32_t dst_flags, bool all)
{
	struct rt o = { .ndev = 4, .size = (1u << 20) + 3, .skew = 4093, .flags = flags, .chunk = chunk,
			.sock = st == ST_UNIX, .dst_flags = dst_flags, .after = check_spliced };

	if (st == ST_TCP)
		tcp_pair(o.stream);
	want_spliced_all = all;
	roundtrip(&o);
}

Test(precopy__pump_load_splice, device_pipes_take_every_payload_byte_by_splice, .timeout = 120)
{
	for (size_t p = 0; p < 2; p++)
		for (int st = ST_PIPE; st <= ST_TCP; st++) {
			spliced_roundtrip((enum stream)st, paths[p], 65536, PRECOPY_PUMP_DEV_PIPE, true);
			spliced_roundtrip((enum stream)st, paths[p], 1u << 20, PRECOPY_PUMP_DEV_PIPE, true);
		}
}

Test(precopy__pump_load_splice, sizes_from_zero_and_sixteen_devices, .timeout = 120)
{
	static const uint64_t sizes[] = { 0, 1, 4095, 65537 };

	want_spliced_all = true;
	for (size_t p = 0; p < 2; p++)
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++)
			roundtrip(&(struct rt){ .ndev = 16, .size = sizes[z], .skew = 13, .flags = paths[p],
						.chunk = 4096, .dst_flags = PRECOPY_PUMP_DEV_PIPE,
						.after = check_spliced });
}

Test(precopy__pump_load_splice, no_splice_flag_or_no_dev_pipe_copies, .timeout = 120)
{
	for (size_t p = 0; p < 2; p++) {
		spliced_roundtrip(ST_PIPE, paths[p] | PRECOPY_PUMP_NO_SPLICE, 65536, PRECOPY_PUMP_DEV_PIPE, false);
		spliced_roundtrip(ST_UNIX, paths[p], 65536, 0, false);
	}
}

/* ---------------------------------------------------------------- by hand */

/* A stream written by hand before the pump runs (pipe sized to hold it):
 * `frames` data frames of len bytes for each of ndev devices (ids 0..),
 * taking turns, then each device's EOD. Device i's payload is pattern
 * seed 70 + i. */
static void write_stream(int fd, int ndev, int frames, uint32_t len)
{
	uint8_t *buf = malloc(PRECOPY_FRAME_HDR_SIZE + (size_t)len);

	cr_assert(buf);
	for (int f = 0; f < frames; f++)
		for (int i = 0; i < ndev; i++) {
			struct precopy_frame_hdr h = { .dev_id = (uint32_t)i, .len = len };

			cr_assert_eq(precopy_frame_encode(&h, buf), 0);
			precopy_sim_pattern_fill(70 + (uint64_t)i, (uint64_t)f * len, buf + PRECOPY_FRAME_HDR_SIZE, len);
			cr_assert_eq(write(fd, buf, PRECOPY_FRAME_HDR_SIZE + len),
				     (ssize_t)(PRECOPY_FRAME_HDR_SIZE + len));
		}
	for (int i = 0; i < ndev; i++) {
		struct precopy_frame_hdr h = { .dev_id = (uint32_t)i, .flags = PRECOPY_FRAME_EOD };

		cr_assert_eq(precopy_frame_encode(&h, buf), 0);
		cr_assert_eq(write(fd, buf, PRECOPY_FRAME_HDR_SIZE), PRECOPY_FRAME_HDR_SIZE);
	}
	free(buf);
}

/* Reads a device pipe to its end (or, with quit_after, closes it once that
 * many bytes came), checking the pattern. */
struct sink {
	int fd, wfd; /* the pipe's read end (the sink's), its write end (the pump's) */
	uint64_t seed, got, quit_after;
	size_t bad; /* first mismatching offset + 1, or 0 */
	pthread_t t;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	uint8_t buf[16384];
	ssize_t n;

	while ((n = read(k->fd, buf, sizeof(buf))) > 0) {
		size_t ok = precopy_sim_pattern_check(k->seed, k->got, buf, (size_t)n);

		if (ok != (size_t)n && !k->bad)
			k->bad = k->got + ok + 1;
		k->got += (uint64_t)n;
		if (k->quit_after && k->got >= k->quit_after)
			break;
	}
	close(k->fd);
	return NULL;
}

/* ndev device pipes (DEV_PIPE | CLOSE_AT_END) drained by sinks. The pump
 * closes a device's write end at its EOD; close_unended() closes the others
 * once the pump is freed. */
static struct precopy_pump *hand_pump(int stream_rd, uint32_t flags, uint32_t chunk, int ndev, struct sink *k)
{
	struct precopy_pump *p = pump_make(PRECOPY_PUMP_LOAD, stream_rd, flags, chunk, NULL, NULL, NULL);

	for (int i = 0; i < ndev; i++) {
		int d[2];

		cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
		k[i].fd = d[0];
		k[i].wfd = d[1];
		k[i].seed = 70 + (uint64_t)i;
		cr_assert_eq(precopy_pump_add_device(p, (uint32_t)i, d[1],
						     PRECOPY_PUMP_DEV_PIPE | PRECOPY_PUMP_DEV_CLOSE_AT_END),
			     0);
		cr_assert_eq(pthread_create(&k[i].t, NULL, sink_main, &k[i]), 0);
	}
	return p;
}

static void close_unended(struct sink *k, const bool *ended, int ndev)
{
	for (int i = 0; i < ndev; i++)
		if (!ended[i])
			close(k[i].wfd);
}

static void budget_case(uint32_t flags)
{
	enum { NDEV = 3, FRAMES = 5, LEN = 40000, BUDGET = 10000 };
	struct sink k[NDEV] = { 0 };
	struct precopy_pump *p;
	uint64_t moved = 0;
	int s[2], calls = 0;

	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, 1u << 20), 1 << 20);
	write_stream(s[1], NDEV, FRAMES, LEN);
	close(s[1]);
	p = hand_pump(s[0], flags, 65536, NDEV, k);
	while (moved < (uint64_t)NDEV * FRAMES * LEN && calls < 10000) {
		int64_t r = precopy_pump_run(p, &(struct precopy_pump_budget){ .max_bytes = BUDGET });

		cr_assert_geq(r, 0, "%s: run: %s", path_name(flags), precopy_pump_strerror(p));
		cr_assert_leq(r, BUDGET, "%s: run moved %lld, budget %d", path_name(flags), (long long)r, BUDGET);
		moved += (uint64_t)r;
		calls++;
	}
	cr_assert_geq(calls, NDEV * FRAMES * LEN / BUDGET, "%s: %d calls", path_name(flags), calls);
	cr_assert_geq(precopy_pump_drain(p, 0), 0, "%s: drain: %s", path_name(flags), precopy_pump_strerror(p));
	cr_assert_eq(p->load_spliced, (uint64_t)NDEV * FRAMES * LEN, "%s: spliced %llu", path_name(flags),
		     (unsigned long long)p->load_spliced);
	for (int i = 0; i < NDEV; i++) {
		struct precopy_pump_dev_status st;

		pthread_join(k[i].t, NULL);
		cr_assert_eq(precopy_pump_dev_status(p, (uint32_t)i, &st), 0);
		cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(st.frames, FRAMES + 1);
		cr_assert_eq(k[i].got, (uint64_t)FRAMES * LEN, "%s: device %d got %llu", path_name(flags), i,
			     (unsigned long long)k[i].got);
		cr_assert_eq(k[i].bad, 0, "device %d: pattern mismatch at %zu", i, k[i].bad - 1);
	}
	precopy_pump_free(p);
	close(s[0]);
}

Test(precopy__pump_load_splice, budgets_hold_per_call_uring, .timeout = 60) { budget_case(0); }
Test(precopy__pump_load_splice, budgets_hold_per_call_fallback, .timeout = 60) { budget_case(PRECOPY_PUMP_FORCE_FALLBACK); }

/* Device 1's reader closes its pipe after 100000 bytes, inside a frame: that
 * device fails with -EPIPE and the rest of its frames are read and dropped;
 * devices 0 and 2 get every byte; the stream is not broken. */
static void reader_gone(uint32_t flags)
{
	enum { NDEV = 3, FRAMES = 4, LEN = 65536 };
	struct sink k[NDEV] = { 0 };
	struct precopy_pump *p;
	int64_t r;
	int s[2];

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, 1u << 20), 1 << 20);
	write_stream(s[1], NDEV, FRAMES, LEN);
	close(s[1]);
	k[1].quit_after = 100000;
	p = hand_pump(s[0], flags, LEN, NDEV, k);
	r = precopy_pump_drain(p, 0);
	cr_assert_eq(r, -EPIPE, "%s: drain %lld (%s)", path_name(flags), (long long)r, precopy_pump_strerror(p));
	cr_assert(strstr(precopy_pump_strerror(p), "device 1: write failed: Broken pipe"), "%s",
		  precopy_pump_strerror(p));
	cr_assert(!p->broken, "%s: the stream is not broken", path_name(flags));
	for (int i = 0; i < NDEV; i++) {
		struct precopy_pump_dev_status st;

		/* device 1's sink has quit (the pump saw its EPIPE): joining it
		 * orders its count before the read below (TSan: a race without) */
		pthread_join(k[i].t, NULL);
		cr_assert_eq(precopy_pump_dev_status(p, (uint32_t)i, &st), 0);
		cr_assert_eq(k[i].bad, 0, "device %d: pattern mismatch at %zu", i, k[i].bad - 1);
		if (i == 1) {
			cr_assert_eq(st.state, PRECOPY_PUMP_DEV_FAILED, "%s", path_name(flags));
			cr_assert_eq(st.err, -EPIPE, "%s: err %d", path_name(flags), st.err);
			cr_assert_lt(st.bytes, (uint64_t)FRAMES * LEN);
			cr_assert_geq(st.bytes, k[1].got, "bytes counted %llu, received %llu",
				      (unsigned long long)st.bytes, (unsigned long long)k[1].got);
			continue;
		}
		cr_assert_eq(st.state, PRECOPY_PUMP_DEV_EOF, "%s: device %d state %u", path_name(flags), i, st.state);
		cr_assert_eq(st.bytes, (uint64_t)FRAMES * LEN);
		cr_assert_eq(k[i].got, (uint64_t)FRAMES * LEN, "%s: device %d got %llu", path_name(flags), i,
			     (unsigned long long)k[i].got);
	}
	cr_assert_gt(p->load_spliced, 0, "%s: nothing was spliced", path_name(flags));
	precopy_pump_free(p);
	close_unended(k, (const bool[NDEV]){ true, false, true }, NDEV);
	close(s[0]);
}

Test(precopy__pump_load_splice, a_device_reader_gone_mid_frame_fails_that_device_uring, .timeout = 60) { reader_gone(0); }
Test(precopy__pump_load_splice, a_device_reader_gone_mid_frame_fails_that_device_fallback, .timeout = 60)
{
	reader_gone(PRECOPY_PUMP_FORCE_FALLBACK);
}

/* One data frame for device 0 that declares `declared` payload bytes, of
 * which only the first `sent` (pattern seed 70) are written to fd. */
static void write_cut_frame(int fd, uint32_t declared, uint32_t sent)
{
	uint8_t *buf = malloc(PRECOPY_FRAME_HDR_SIZE + (size_t)sent);
	struct precopy_frame_hdr h = { .dev_id = 0, .len = declared };

	cr_assert(buf);
	cr_assert_eq(precopy_frame_encode(&h, buf), 0);
	precopy_sim_pattern_fill(70, 0, buf + PRECOPY_FRAME_HDR_SIZE, sent);
	cr_assert_eq(write(fd, buf, PRECOPY_FRAME_HDR_SIZE + sent), (ssize_t)(PRECOPY_FRAME_HDR_SIZE + sent));
	free(buf);
}

/* After a call that left device 0 without its end: exactly `spliced`
 * bytes went by splice, and its sink got them, intact. Frees p. */
static void cut_frame_done(struct precopy_pump *p, struct sink *k, uint32_t flags, uint64_t spliced)
{
	cr_assert_eq(p->load_spliced, spliced, "%s: spliced %llu", path_name(flags),
		     (unsigned long long)p->load_spliced);
	precopy_pump_free(p);
	close_unended(k, (const bool[1]){ false }, 1);
	pthread_join(k[0].t, NULL);
	cr_assert_eq(k[0].got, spliced);
	cr_assert_eq(k[0].bad, 0, "pattern mismatch at %zu", k[0].bad - 1);
}

/* A stream that ends inside a spliced frame is truncated, not complete. */
static void truncated(uint32_t flags)
{
	struct sink k[1] = { 0 };
	struct precopy_pump *p;
	int64_t r;
	int s[2];

	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	write_cut_frame(s[1], 9000, 5000);
	close(s[1]);
	p = hand_pump(s[0], flags, 65536, 1, k);
	r = precopy_pump_drain(p, 0);
	cr_assert_eq(r, -EBADMSG, "%s: drain %lld", path_name(flags), (long long)r);
	cr_assert(strstr(precopy_pump_strerror(p), "truncated inside the frame of device 0"), "%s",
		  precopy_pump_strerror(p));
	cut_frame_done(p, k, flags, 5000);
	close(s[0]);
}

Test(precopy__pump_load_splice, a_stream_cut_inside_a_spliced_frame_is_truncated_uring, .timeout = 30) { truncated(0); }
Test(precopy__pump_load_splice, a_stream_cut_inside_a_spliced_frame_is_truncated_fallback, .timeout = 30)
{
	truncated(PRECOPY_PUMP_FORCE_FALLBACK);
}

/* A blocking TCP stream that stays idle inside a frame: the drain ends at
 * its deadline (-ETIMEDOUT) instead of sleeping in a splice from the empty
 * socket (a blocking socket ignores SPLICE_F_NONBLOCK). */
static void idle_tcp(uint32_t flags)
{
	struct sink k[1] = { 0 };
	struct precopy_pump *p;
	uint64_t t0;
	int64_t r;
	int s[2];

	tcp_pair(s);
	write_cut_frame(s[1], 5000, 1000);
	p = hand_pump(s[0], flags, 65536, 1, k);
	t0 = mono_ns(NULL);
	r = precopy_pump_drain(p, t0 + 200000000ull);
	cr_assert_eq(r, -ETIMEDOUT, "%s: drain %lld (%s)", path_name(flags), (long long)r, precopy_pump_strerror(p));
	cr_assert_lt(mono_ns(NULL) - t0, 10000000000ull);
	cut_frame_done(p, k, flags, 1000);
	close(s[0]);
	close(s[1]);
}

Test(precopy__pump_load_splice, an_idle_blocking_tcp_stream_ends_at_the_deadline_uring, .timeout = 30) { idle_tcp(0); }
Test(precopy__pump_load_splice, an_idle_blocking_tcp_stream_ends_at_the_deadline_fallback, .timeout = 30)
{
	idle_tcp(PRECOPY_PUMP_FORCE_FALLBACK);
}

/* Copies (PRECOPY_PUMP_NO_SPLICE) from a pipe stream into a device pipe move
 * at most 64 KiB at a time whatever the chunk, as on SAVE (pump.c,
 * precopy__pump_copy_len); from a socket stream they move whole chunks. A 150000-byte
 * frame, 1 MiB chunks, both paths. */
static void load_pieces(uint32_t flags, bool sock)
{
	enum { LEN = 150000 };
	struct sink k[1] = { 0 };
	struct precopy_pump *p;
	int64_t r;
	int s[2];

	make_stream(sock, s);
	if (sock) {
		int sz = 1 << 20;

		cr_assert_eq(setsockopt(s[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
	} else {
		cr_assert_geq(fcntl(s[1], F_SETPIPE_SZ, 1u << 20), 1 << 20);
	}
	write_stream(s[1], 1, 1, LEN); /* whole, before the pump runs */
	close(s[1]);
	p = hand_pump(s[0], flags | PRECOPY_PUMP_NO_SPLICE, 1u << 20, 1, k);
	r = precopy_pump_drain(p, 0);
	cr_assert_eq(r, LEN, "%s: drain %lld (%s)", path_name(flags), (long long)r, precopy_pump_strerror(p));
	cr_assert_eq(p->load_piece_max, sock ? LEN : 65536, "%s, %s stream: largest piece %u", path_name(flags),
		     sock ? "socket" : "pipe", p->load_piece_max);
	cr_assert_eq(p->load_spliced, 0);
	pthread_join(k[0].t, NULL);
	cr_assert_eq(k[0].got, LEN);
	cr_assert_eq(k[0].bad, 0, "pattern mismatch at %zu", k[0].bad - 1);
	precopy_pump_free(p);
	close(s[0]);
}

Test(precopy__pump_load_splice, copies_from_a_pipe_stream_into_a_device_pipe_go_in_64k_pieces, .timeout = 30)
{
	for (size_t i = 0; i < 2; i++) {
		load_pieces(paths[i], false);
		load_pieces(paths[i], true);
	}
}
