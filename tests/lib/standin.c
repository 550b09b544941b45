/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "standin.h"

#define CHUNK 65536

uint8_t standin_byte(uint64_t i)
{
	return (uint8_t)(i * 7 + i / 65536 + 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	uint64_t now = now_ns();
	struct timespec ts;

	if (t <= now)
		return;
	ts.tv_sec = (time_t)((t - now) / 1000000000u);
	ts.tv_nsec = (long)((t - now) % 1000000000u);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* SAVE: the state at the stand-in's rate, a chunk at a time. */
static void *writer(void *arg)
{
	struct standin *s = arg;
	static const uint8_t zeros[CHUNK];
	uint8_t b[CHUNK];
	uint64_t t0 = now_ns(), done = 0;

	while (done < s->size) {
		size_t n = s->size - done < CHUNK ? (size_t)(s->size - done) : CHUNK;
		ssize_t w;

		if (!s->zeros)
			for (size_t i = 0; i < n; i++)
				b[i] = standin_byte(done + i);
		w = write(s->fd, s->zeros ? zeros : b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			s->result = -errno;
			break;
		}
		done += (uint64_t)w;
		/* the device has delivered `done` bytes no sooner than this */
		if (s->rate)
			sleep_until(t0 + (uint64_t)((unsigned __int128)done * 1000000000u / s->rate));
	}
	close(s->fd);
	return NULL;
}

/* LOAD: read to EOF, checking every byte. */
static void *reader(void *arg)
{
	struct standin *s = arg;
	uint8_t b[CHUNK];

	for (;;) {
		ssize_t n = read(s->fd, b, sizeof(b));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0)
				s->result = -errno;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (b[i] != standin_byte(s->got + (uint64_t)i) && !s->result)
				s->result = -EBADMSG;
		s->got += (uint64_t)n;
	}
	close(s->fd);
	return NULL;
}

static int running(void *ctx)
{
	(void)ctx;
	return 0;
}

static int set_fd(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply)
{
	struct standin *s = ctx;

	(void)phase;
	*reply = -1;
	s->fd = fd;
	s->result = 0;
	s->got = 0;
	if (pthread_create(&s->thr, NULL, dir == PRECOPY_BACKEND_SAVE ? writer : reader, s)) {
		close(fd);
		return -EAGAIN;
	}
	s->started = 1;
	return 0;
}

static int check(void *ctx)
{
	struct standin *s = ctx;

	if (!s->started)
		return -EIO;
	pthread_join(s->thr, NULL);
	s->started = 0;
	return s->result;
}

const struct precopy_backend_ops standin_ops = { PRECOPY_BACKEND_OPS_VERSION, running, set_fd, check };
