/* SPDX-License-Identifier: MIT */
/* The io_uring SAVE path's read-ahead bound (engine/pump_uring.c), through
 * the internal hooks of engine/pump_internal.h:
 *  - devices that always answer at once (pipes holding all their bytes) and
 *    a stream drained slowly: the bytes read from devices and not yet
 *    written never pass the bound, while the same case without the bound
 *    buffers a read for every device (so the counter, and this test, see
 *    the difference);
 *  - devices that answer late (empty pipes fed after a delay, read through
 *    PRECOPY_PUMP_NO_SPLICE): their reads go asynchronous and stop counting,
 *    so every device has a read in flight at once, far beyond the bound;
 *  - device pipes copied into a pipe stream are read in 64 KiB pieces
 *    (precopy__pump_copy_len), and read ahead by two pieces, not two chunks;
 *  - run() with a budget under the bound moves every byte, in order.
 * Every case checks the stream byte for byte. */
#include <stdio.h>

#include "test-pump.h"

#include "../engine/pump_internal.h"

#define MAXDEV 8

static uint8_t pat(uint32_t dev, uint64_t off)
{
	return (uint8_t)(dev * 53u + off * 3u + (off >> 11));
}

/* ---------------------------------------------------------------- devices */

struct feeder {
	int fd;
	uint32_t dev;
	uint64_t size;
	uint32_t delay_ms; /* before the first byte */
	pthread_t t;
};

static void write_pattern(int fd, uint32_t dev, uint64_t size)
{
	uint8_t b[4096];
	uint64_t off = 0;

	while (off < size) {
		size_t n = size - off < sizeof(b) ? (size_t)(size - off) : sizeof(b);
		ssize_t r;

		for (size_t i = 0; i < n; i++)
			b[i] = pat(dev, off + i);
		r = write(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (uint64_t)r;
	}
}

static void *feeder_main(void *a)
{
	struct feeder *f = a;

	usleep(f->delay_ms * 1000u);
	write_pattern(f->fd, f->dev, f->size);
	close(f->fd);
	return NULL;
}

/* ---------------------------------------------------------------- stream */

struct checker {
	int fd;
	uint32_t pause_us; /* after each read(2): a slow network */
	uint64_t bytes[MAXDEV];
	bool eod[MAXDEV];
	char err[160];
	pthread_t t;
};

static void *checker_main(void *a)
{
	struct checker *c = a;
	uint8_t buf[4096], hdr[PRECOPY_FRAME_HDR_SIZE];
	uint32_t have = 0, left = 0, dev = 0;

	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !c->err[0]; i++) {
			struct precopy_frame_hdr h;

			if (left) {
				if (buf[i] != pat(dev, c->bytes[dev]))
					snprintf(c->err, sizeof(c->err), "dev %u byte %llu differs", dev,
						 (unsigned long long)c->bytes[dev]);
				c->bytes[dev]++;
				left--;
				continue;
			}
			hdr[have++] = buf[i];
			if (have < PRECOPY_FRAME_HDR_SIZE)
				continue;
			have = 0;
			if (precopy_frame_decode(hdr, 0, &h) || h.dev_id >= MAXDEV || c->eod[h.dev_id] ||
			    (h.flags & PRECOPY_FRAME_ABORT)) {
				snprintf(c->err, sizeof(c->err), "bad frame: dev %u flags %u", h.dev_id, h.flags);
				break;
			}
			if (h.flags & PRECOPY_FRAME_EOD)
				c->eod[h.dev_id] = true;
			dev = h.dev_id;
			left = h.len;
		}
		if (c->pause_us)
			usleep(c->pause_us);
	}
	if (!c->err[0] && (left || have))
		snprintf(c->err, sizeof(c->err), "stream ends inside a frame");
	return NULL;
}

/* ---------------------------------------------------------------- cases */

struct ac {
	int ndev;
	uint64_t size;      /* per device */
	uint32_t chunk;
	uint32_t depth;
	uint64_t ahead;     /* precopy__pump_uring_set_ahead(): 0 default, UINT64_MAX none */
	uint32_t delay_ms;  /* > 0: devices start empty and are fed late */
	uint32_t pause_us;  /* reader pause per read */
	uint64_t budget;    /* > 0: run() calls with this budget, not drain() */
	uint32_t poll_ms;   /* config poll_interval_ms (0: 2) */
	uint32_t dev_flags; /* added to PRECOPY_PUMP_DEV_CLOSE_AT_END */
};

static void ahead_case(const struct ac *o, struct precopy__pump_uring_stats *st)
{
	struct precopy_pump_config cfg = {
		.version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_SAVE,
		.flags = PRECOPY_PUMP_NO_SPLICE, .chunk_size = o->chunk, .queue_depth = o->depth,
		.poll_interval_ms = o->poll_ms ? o->poll_ms : 2, .now_ns = mono_ns,
	};
	struct feeder f[MAXDEV];
	struct checker c = { .pause_us = o->pause_us };
	struct precopy_pump *p;
	int s[2], err = 1;
	int64_t r;

	cr_assert_leq(o->ndev, MAXDEV);
	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	cfg.stream_fd = s[1];
	p = precopy_pump_new(&cfg, &err);
	cr_assert(p, "precopy_pump_new: %d", err);
	if (precopy_pump_path(p, NULL) != PRECOPY_PUMP_PATH_URING) {
		precopy_pump_free(p);
		cr_skip_test("io_uring is not available here: the read-ahead bound is on the io_uring path");
	}
	precopy__pump_uring_set_ahead(p, o->ahead);
	for (int i = 0; i < o->ndev; i++) {
		int d[2];

		cr_assert_eq(pipe2(d, O_CLOEXEC), 0);
		f[i] = (struct feeder){ .fd = d[1], .dev = (uint32_t)i, .size = o->size,
					.delay_ms = o->delay_ms };
		if (!o->delay_ms) {
			/* every byte already there: each read completes at once */
			cr_assert_geq(fcntl(d[1], F_SETPIPE_SZ, (int)o->size), (int)o->size);
			write_pattern(d[1], (uint32_t)i, o->size);
			close(d[1]);
		} else {
			cr_assert_eq(pthread_create(&f[i].t, NULL, feeder_main, &f[i]), 0);
		}
		cr_assert_eq(precopy_pump_add_device(p, (uint32_t)i, d[0], PRECOPY_PUMP_DEV_CLOSE_AT_END | o->dev_flags),
			     0);
	}
	c.fd = s[0];
	cr_assert_eq(pthread_create(&c.t, NULL, checker_main, &c), 0);
	if (o->budget) {
		uint64_t moved = 0;

		for (int k = 0; k < 1000000 && moved < o->size * (uint64_t)o->ndev; k++) {
			r = precopy_pump_run(p, &(struct precopy_pump_budget){ .max_bytes = o->budget });
			cr_assert_geq(r, 0, "run: %s", precopy_pump_strerror(p));
			cr_assert_leq((uint64_t)r, o->budget);
			moved += (uint64_t)r;
		}
		cr_assert_eq(moved, o->size * (uint64_t)o->ndev);
	}
	r = precopy_pump_drain(p, 0);
	cr_assert_geq(r, 0, "drain: %s", precopy_pump_strerror(p));
	precopy__pump_uring_stats(p, st);
	close(s[1]);
	cr_assert_eq(pthread_join(c.t, NULL), 0);
	cr_assert_str_empty(c.err, "%s", c.err);
	for (int i = 0; i < o->ndev; i++) {
		struct precopy_pump_dev_status ds;

		if (o->delay_ms)
			cr_assert_eq(pthread_join(f[i].t, NULL), 0);
		cr_assert(c.eod[i], "device %d: no EOD", i);
		cr_assert_eq(c.bytes[i], o->size, "device %d: %llu bytes", i, (unsigned long long)c.bytes[i]);
		cr_assert_eq(precopy_pump_dev_status(p, (uint32_t)i, &ds), 0);
		cr_assert_eq(ds.state, PRECOPY_PUMP_DEV_EOF);
		cr_assert_eq(ds.bytes, o->size);
	}
	precopy_pump_free(p);
	close(s[0]);
}

Test(pump_ahead, fast_devices_slow_stream_stay_within_the_bound)
{
	/* 8 devices x 16 reads of 4 KiB, depth 32: unbounded, every device
	 * would hold a read (8 x 4 KiB) while the stream drains slowly */
	struct ac o = { .ndev = 8, .size = 64 << 10, .chunk = 4096, .depth = 32, .pause_us = 100 };
	struct precopy__pump_uring_stats st;

	ahead_case(&o, &st);
	cr_assert_eq(st.ahead_max, 2 * 4096, "default bound: two 4 KiB chunks, got %llu",
		     (unsigned long long)st.ahead_max);
	cr_assert_gt(st.ahead_peak, 0);
	cr_assert_leq(st.ahead_peak, st.ahead_max, "read ahead %llu > bound %llu",
		      (unsigned long long)st.ahead_peak, (unsigned long long)st.ahead_max);
}

Test(pump_ahead, an_explicit_bound_holds)
{
	struct ac o = { .ndev = 8, .size = 64 << 10, .chunk = 4096, .depth = 32, .pause_us = 50,
			.ahead = 5 * 4096 };
	struct precopy__pump_uring_stats st;

	ahead_case(&o, &st);
	cr_assert_eq(st.ahead_max, 5 * 4096);
	cr_assert_leq(st.ahead_peak, 5 * 4096, "read ahead %llu", (unsigned long long)st.ahead_peak);
	cr_assert_gt(st.ahead_peak, 2 * 4096, "a bound of 5 chunks used no more than 2: %llu",
		     (unsigned long long)st.ahead_peak);
}

Test(pump_ahead, without_the_bound_every_device_reads_ahead)
{
	/* the differential: the counter sees what the bound prevents */
	struct ac o = { .ndev = 8, .size = 64 << 10, .chunk = 4096, .depth = 32, .pause_us = 100,
			.ahead = UINT64_MAX };
	struct precopy__pump_uring_stats st;

	ahead_case(&o, &st);
	cr_assert_geq(st.ahead_peak, 8 * 4096, "unbounded read ahead only %llu",
		      (unsigned long long)st.ahead_peak);
}

Test(pump_ahead, slow_devices_overlap_beyond_the_bound)
{
	/* empty device pipes, fed after 300 ms: each read goes asynchronous
	 * (an io_uring poll) and stops counting, so all 6 devices are read at
	 * once although the bound allows two 64 KiB chunks. The poll interval
	 * (1 s) is longer than the delay: the pump must start the other reads
	 * before it waits, not after a wait times out. */
	struct ac o = { .ndev = 6, .size = 200 << 10, .chunk = 64 << 10, .depth = 16, .delay_ms = 300,
			.poll_ms = 1000 };
	struct precopy__pump_uring_stats st;

	ahead_case(&o, &st);
	cr_assert_eq(st.ahead_max, 2 * (64 << 10));
	cr_assert_geq(st.async_reads_peak, 6, "only %u device reads in flight at once",
		      st.async_reads_peak);
}

Test(pump_ahead, budgeted_runs_under_the_bound_move_everything)
{
	/* budgets smaller than, equal to and between chunks */
	static const uint64_t budgets[] = { 1000, 4096, 3 * 4096 + 5 };

	for (size_t k = 0; k < sizeof(budgets) / sizeof(budgets[0]); k++) {
		struct ac o = { .ndev = 4, .size = 40 << 10, .chunk = 4096, .depth = 16, .pause_us = 20,
				.budget = budgets[k] };
		struct precopy__pump_uring_stats st;

		ahead_case(&o, &st);
		cr_assert_leq(st.ahead_peak, st.ahead_max);
	}
}

Test(pump_ahead, pieces_of_a_device_pipe_have_a_bound_of_two_pieces)
{
	/* 1 MiB chunks (a 1 MiB bound), but device pipes copied into a pipe
	 * stream go in 64 KiB pieces: at most two of them read ahead, where 8
	 * devices could otherwise hold 8 pieces (512 KiB) while the stream
	 * drains slowly */
	struct ac o = { .ndev = 8, .size = 256 << 10, .chunk = 1 << 20, .depth = 32, .pause_us = 100,
			.dev_flags = PRECOPY_PUMP_DEV_PIPE };
	struct precopy__pump_uring_stats st;

	ahead_case(&o, &st);
	cr_assert_eq(st.ahead_max, 1 << 20);
	cr_assert_gt(st.ahead_peak, 0);
	cr_assert_leq(st.ahead_peak, 2 * PUMP_PIPE_PIECE, "read ahead %llu > two pieces",
		      (unsigned long long)st.ahead_peak);
}
