/* SPDX-License-Identifier: MIT */
/* The fd-based back-end model (see precopy/fake.h): a back-end whose state
 * moves through a real pipe on its own thread, with fault injection. It
 * stands for another process, so it makes real syscalls on its own fd. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "precopy/fake.h"

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint8_t pattern_byte(uint64_t seed, uint64_t o)
{
	return (uint8_t)(splitmix64(seed + (o >> 3)) >> (8 * (o & 7)));
}

PRECOPY_API void precopy_sim_pattern_fill(uint64_t seed, uint64_t off, void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t i = 0;

	for (; i < len && ((off + i) & 7); i++)
		b[i] = pattern_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t w = splitmix64(seed + ((off + i) >> 3));

		memcpy(b + i, &w, 8); /* x86-64 and arm64 Linux: little-endian */
	}
	for (; i < len; i++)
		b[i] = pattern_byte(seed, off + i);
}

PRECOPY_API size_t precopy_sim_pattern_check(uint64_t seed, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *b = buf;
	size_t i = 0;

	for (; i < len && ((off + i) & 7); i++)
		if (b[i] != pattern_byte(seed, off + i))
			return i;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = splitmix64(seed + ((off + i) >> 3)), v;

		memcpy(&v, b + i, 8);
		if (v != w)
			break;
	}
	for (; i < len; i++)
		if (b[i] != pattern_byte(seed, off + i))
			return i;
	return len;
}

struct precopy_fake_backend {
	struct precopy_fake_backend_config cfg;
	bool running;
	bool busy; /* a transfer thread exists (until check_state/free) */
	uint32_t dir;
	int fd;
	int stopfd; /* eventfd: release a HANG / stop the thread */
	pthread_t thread;
	int result;
	_Atomic uint64_t bytes;
};

/* Waits until fd is ready for ev or the model is told to stop.
 * Returns 0 when ready, 1 when stopped, -errno on failure. */
static int wait_ready(struct precopy_fake_backend *b, short ev)
{
	struct pollfd p[2] = { { .fd = b->fd, .events = ev }, { .fd = b->stopfd, .events = POLLIN } };

	for (;;) {
		int r = poll(p, 2, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (p[1].revents)
			return 1;
		return 0;
	}
}

static int do_save(struct precopy_fake_backend *b, uint8_t *buf, size_t chunk)
{
	uint64_t size = b->cfg.state_size, off = 0, stop_at = size;
	uint32_t f = b->cfg.fault;

	if (f == PRECOPY_FAKE_BE_SHORT || f == PRECOPY_FAKE_BE_HANG)
		stop_at = b->cfg.fault_offset < size ? b->cfg.fault_offset : size;
	while (off < stop_at) {
		size_t n = stop_at - off < chunk ? (size_t)(stop_at - off) : chunk, done = 0;

		precopy_sim_pattern_fill(b->cfg.seed, off, buf, n);
		if (f == PRECOPY_FAKE_BE_CORRUPT && b->cfg.fault_offset >= off && b->cfg.fault_offset < off + n)
			buf[b->cfg.fault_offset - off] ^= 0x5a;
		while (done < n) {
			ssize_t w = write(b->fd, buf + done, n - done);

			if (w > 0) {
				done += (size_t)w;
				atomic_fetch_add(&b->bytes, (uint64_t)w);
				continue;
			}
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EAGAIN) {
				int r = wait_ready(b, POLLOUT);

				if (r)
					return r > 0 ? -ECANCELED : r;
				continue;
			}
			return w < 0 ? -errno : -EIO;
		}
		off += n;
	}
	if (f == PRECOPY_FAKE_BE_SHORT)
		return -EIO;
	if (f == PRECOPY_FAKE_BE_HANG) {
		/* hold the fd open, writing nothing, until released */
		struct pollfd p = { .fd = b->stopfd, .events = POLLIN };

		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		return -ETIMEDOUT;
	}
	return 0;
}

static int do_load(struct precopy_fake_backend *b, uint8_t *buf, size_t chunk)
{
	uint64_t size = b->cfg.state_size, off = 0;
	int verdict = 0;

	for (;;) {
		ssize_t n;

		if (b->cfg.fault == PRECOPY_FAKE_BE_SHORT && off >= b->cfg.fault_offset)
			return -EIO;
		n = read(b->fd, buf, chunk);
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			int r = wait_ready(b, POLLIN);

			if (r)
				return r > 0 ? -ECANCELED : r;
			continue;
		}
		if (n < 0)
			return -errno;
		if (!verdict) {
			uint64_t cmp = off >= size ? 0 : (size - off < (uint64_t)n ? size - off : (uint64_t)n);

			if (precopy_sim_pattern_check(b->cfg.seed, off, buf, (size_t)cmp) != cmp)
				verdict = -EBADMSG;
		}
		off += (uint64_t)n;
		atomic_fetch_add(&b->bytes, (uint64_t)n);
	}
	if (verdict)
		return verdict;
	return off == size ? 0 : -EIO;
}

static void *xfer_thread(void *arg)
{
	struct precopy_fake_backend *b = arg;
	size_t chunk = b->cfg.io_chunk ? b->cfg.io_chunk : 65536;
	uint8_t *buf = malloc(chunk);
	int r;

	if (!buf)
		r = -ENOMEM;
	else if (b->dir == PRECOPY_BACKEND_SAVE)
		r = do_save(b, buf, chunk);
	else
		r = do_load(b, buf, chunk);
	free(buf);
	close(b->fd); /* SAVE: the reader's end of data */
	b->fd = -1;
	if (r == 0 && b->cfg.fault == PRECOPY_FAKE_BE_CHECK_FAIL)
		r = -EIO;
	b->result = r;
	return NULL;
}

static int fb_queues_running(void *ctx)
{
	struct precopy_fake_backend *b = ctx;

	return b->running ? 1 : 0;
}

static int fb_set_state_fd(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply_fd)
{
	struct precopy_fake_backend *b = ctx;
	int r, fl;

	if (reply_fd)
		*reply_fd = -1;
	if (fd < 0)
		return -EINVAL;
	if (dir > PRECOPY_BACKEND_LOAD || phase != PRECOPY_BACKEND_PHASE_STOPPED)
		r = -EINVAL;
	else if (b->running)
		r = -EBUSY;
	else if (b->busy)
		r = -EALREADY;
	else if (b->cfg.fault == PRECOPY_FAKE_BE_REJECT)
		r = -EIO;
	else
		r = 0;
	if (r) {
		close(fd);
		return r;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	b->dir = dir;
	b->fd = fd;
	b->result = 0;
	atomic_store(&b->bytes, 0);
	r = pthread_create(&b->thread, NULL, xfer_thread, b);
	if (r) {
		close(fd);
		b->fd = -1;
		return -r;
	}
	b->busy = true;
	return 0;
}

static int fb_check_state(void *ctx)
{
	struct precopy_fake_backend *b = ctx;

	if (!b->busy)
		return -ENOENT;
	pthread_join(b->thread, NULL);
	b->busy = false;
	return b->result;
}

static const struct precopy_backend_ops fb_ops = {
	.version = PRECOPY_BACKEND_OPS_VERSION,
	.queues_running = fb_queues_running,
	.set_state_fd = fb_set_state_fd,
	.check_state = fb_check_state,
};

PRECOPY_API const struct precopy_backend_ops *precopy_fake_backend_ops(void)
{
	return &fb_ops;
}

PRECOPY_API struct precopy_fake_backend *precopy_fake_backend_new(const struct precopy_fake_backend_config *cfg,
								   int *err)
{
	struct precopy_fake_backend *b = NULL;
	int r = -EINVAL;

	if (!cfg || cfg->version != PRECOPY_FAKE_BACKEND_CONFIG_VERSION ||
	    cfg->fault > PRECOPY_FAKE_BE_CORRUPT)
		goto out;
	r = -ENOMEM;
	b = calloc(1, sizeof(*b));
	if (!b)
		goto out;
	b->cfg = *cfg;
	b->fd = -1;
	b->stopfd = eventfd(0, EFD_CLOEXEC);
	if (b->stopfd < 0) {
		r = -errno;
		free(b);
		b = NULL;
		goto out;
	}
	r = 0;
out:
	if (err)
		*err = r;
	return b;
}

PRECOPY_API int precopy_fake_backend_release(struct precopy_fake_backend *b)
{
	uint64_t one = 1;

	if (!b)
		return -EINVAL;
	return write(b->stopfd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

PRECOPY_API void precopy_fake_backend_free(struct precopy_fake_backend *b)
{
	if (!b)
		return;
	if (b->busy) {
		precopy_fake_backend_release(b);
		pthread_join(b->thread, NULL);
	}
	close(b->stopfd);
	free(b);
}

PRECOPY_API int precopy_fake_backend_set_running(struct precopy_fake_backend *b, bool running)
{
	if (!b)
		return -EINVAL;
	b->running = running;
	return 0;
}

PRECOPY_API uint64_t precopy_fake_backend_bytes(const struct precopy_fake_backend *b)
{
	return b ? atomic_load(&((struct precopy_fake_backend *)b)->bytes) : 0;
}
