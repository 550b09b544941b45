/* SPDX-License-Identifier: MIT */
/* The VFIO device model's migration data sessions: each is an AF_UNIX
 * socketpair whose user end is the data_fd the FSM hands out, carrying a
 * deterministic byte stream (saving) or checking one (resuming); PRE_COPY
 * info as VFIO_MIG_GET_PRECOPY_INFO reports it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vfio_priv.h"

/* ---- the state stream's bytes, fast ---------------------------------- *
 * fv_stream_byte(seed, off) = low byte of (off * K) >> 7, xor off >> 13, xor
 * a seed byte. The low 8 bits of (off * K) >> 7 depend only on the low 15
 * bits of off, and off >> 13 is constant over each 8 KiB-aligned block, so
 * a block is a slice of a 32 KiB table xor one constant byte: eight bytes
 * per step instead of a multiply per byte. */
static uint8_t stream_table[1u << 15];
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void stream_table_init(void)
{
	for (uint32_t x = 0; x < (1u << 15); x++)
		stream_table[x] = fv_stream_byte(0, x) ^ (uint8_t)(x >> 13); /* seed 0: no seed byte */
}

/* Calls fn(block offset into the table, constant byte, dst/src, len) per
 * 8 KiB-aligned block. */
static int stream_blocks(uint32_t seed, uint64_t off, uint8_t *out, const uint8_t *in, size_t n)
{
	uint8_t sb = (uint8_t)(seed ^ (seed >> 8));
	uint64_t diff = 0;

	pthread_once(&stream_once, stream_table_init);
	while (n) {
		size_t in_block = 8192 - (size_t)(off & 8191), len = n < in_block ? n : in_block, i = 0;
		const uint8_t *t = stream_table + (off & 0x7fff);
		uint8_t c = (uint8_t)(off >> 13) ^ sb;
		uint64_t c8 = c * 0x0101010101010101ull;

		for (; i + 8 <= len; i += 8) {
			uint64_t v;
			memcpy(&v, t + i, 8);
			v ^= c8;
			if (out) {
				memcpy(out + i, &v, 8);
			} else {
				uint64_t w;
				memcpy(&w, in + i, 8);
				diff |= v ^ w;
			}
		}
		for (; i < len; i++) {
			uint8_t v = t[i] ^ c;
			if (out)
				out[i] = v;
			else
				diff |= (uint8_t)(v ^ in[i]);
		}
		off += len;
		n -= len;
		if (out)
			out += len;
		else
			in += len;
	}
	return diff == 0;
}

void fv_stream_fill(uint32_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	stream_blocks(seed, off, buf, NULL, n);
}

int fv_stream_check(uint32_t seed, uint64_t off, const uint8_t *buf, size_t n)
{
	return stream_blocks(seed, off, NULL, buf, n);
}

/* ---- data sessions ---------------------------------------------------- */

void fake_vfio_kill_session(struct precopy_fake_vfio *dev)
{
	struct session *s = dev->cur;

	if (!s)
		return;
	s->dead = 1;
	if (s->model_fd >= 0) {
		fv_real()->ops->close(NULL, s->model_fd);
		s->model_fd = -1;
	}
	dev->cur = NULL;
	dev->initial_left = dev->dirty = dev->sc_left = 0;
}

int fake_vfio_open_session(struct precopy_fake_vfio *dev, int resume)
{
	struct session *s;
	int sv[2], r;

	if (dev->cur && !dev->cur->dead)
		return -EBUSY; /* cannot happen through the FSM: a session ends first */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		free(s);
		return r;
	}
	r = fk_register(dev->fk, sv[0], FK_DATA, s);
	if (r < 0) {
		close(sv[0]);
		close(sv[1]);
		free(s);
		return r;
	}
	s->dev = dev;
	s->user_fd = sv[0];
	s->model_fd = sv[1];
	s->resume = resume;
	s->next = dev->sessions;
	dev->sessions = s;
	dev->cur = s;
	return s->user_fd;
}

/* Move up to max bytes of pending state into the session's socket, keeping
 * at most `max` bytes buffered. Returns bytes moved. */
uint64_t fake_vfio_produce(struct precopy_fake_vfio *dev, struct session *s, uint64_t max)
{
	uint64_t buffered = s->produced - s->consumed, want, moved = 0;

	if (s->dead || s->resume || buffered >= max)
		return 0;
	want = max - buffered;
	if (fv_in_precopy(dev->state))
		want = want < sat_add(dev->initial_left, dev->dirty) ? want : sat_add(dev->initial_left, dev->dirty);
	else if (dev->state == VFIO_DEVICE_STATE_STOP_COPY)
		want = want < dev->sc_left ? want : dev->sc_left;
	else
		want = 0;
	while (want) {
		size_t n = want < CHUNK ? want : CHUNK;
		ssize_t w;

		fv_stream_fill(dev->cfg.seed, s->produced, dev->buf, n);
		w = fv_real()->ops->write(NULL, s->model_fd, dev->buf, n);
		if (w <= 0)
			break;
		s->produced += (uint64_t)w;
		moved += (uint64_t)w;
		want -= (uint64_t)w;
		if (fv_in_precopy(dev->state)) {
			uint64_t a = (uint64_t)w < dev->initial_left ? (uint64_t)w : dev->initial_left;
			dev->initial_left -= a;
			dev->dirty -= (uint64_t)w - a;
		} else {
			dev->sc_left -= (uint64_t)w;
		}
		if ((size_t)w < n)
			break;
	}
	dev->st.bytes_out += moved;
	if (dev->state == VFIO_DEVICE_STATE_STOP_COPY && !dev->sc_left && !s->eof_sent) {
		shutdown(s->model_fd, SHUT_WR); /* the permanent end of stream */
		s->eof_sent = 1;
	}
	return moved;
}

ssize_t fake_vfio_data_read(void *session, void *buf, size_t len)
{
	struct session *s = session;
	struct precopy_fake_vfio *dev = s->dev;
	ssize_t r;

	if (s->resume)
		return -EINVAL;
	if (s->dead)
		return -ENODEV;
	if (!len)
		return 0;
	if (dev->read_fail_err && dev->state == VFIO_DEVICE_STATE_STOP_COPY && dev->sc_read >= dev->read_fail_after)
		return -dev->read_fail_err;
	fake_vfio_advance(dev);
	fake_vfio_produce(dev, s, len < CHUNK ? len : CHUNK);
	if (s->produced == s->consumed && fv_in_precopy(dev->state))
		return -ENOMSG; /* temporary end of stream: both counters are 0 */
	r = fv_real()->ops->read(NULL, s->user_fd, buf, len);
	if (r > 0) {
		s->consumed += (uint64_t)r;
		if (dev->state == VFIO_DEVICE_STATE_STOP_COPY)
			dev->sc_read += (uint64_t)r;
	}
	return r;
}

void fake_vfio_data_note_read(void *session, int queued)
{
	struct precopy_fake_vfio *dev = ((struct session *)session)->dev;

	if (dev->state != VFIO_DEVICE_STATE_STOP_COPY)
		return;
	if (queued)
		dev->st.sc_queued_reads++;
	else
		dev->st.sc_plain_reads++;
}

int fake_vfio_data_no_poll(void *session)
{
	return ((struct session *)session)->dev->cfg.no_poll;
}

/* n bytes at rate bytes/s, in ns rounded up (rate 0: no time). */
static uint64_t xfer_ns(uint64_t n, uint64_t rate)
{
	return rate ? (uint64_t)(((unsigned __int128)n * 1000000000u + rate - 1) / rate) : 0;
}

/* The device's one queue of reads and writes: when n bytes submitted now
 * are through, at rate. */
static uint64_t queue_done_at(struct precopy_fake_vfio *dev, uint64_t now, uint64_t n, uint64_t rate)
{
	uint64_t start = dev->read_busy_ns > now ? dev->read_busy_ns : now;

	dev->read_busy_ns = sat_add(start, xfer_ns(n, rate));
	return dev->read_busy_ns;
}

uint64_t fake_vfio_data_read_ns(void *session, uint64_t n)
{
	return xfer_ns(n, ((struct session *)session)->dev->cfg.read_rate);
}

uint64_t fake_vfio_data_read_done_at(void *session, uint64_t now, uint64_t n)
{
	struct precopy_fake_vfio *dev = ((struct session *)session)->dev;

	return queue_done_at(dev, now, n, dev->cfg.read_rate);
}

uint64_t fake_vfio_data_write_ns(void *session, uint64_t n)
{
	return xfer_ns(n, ((struct session *)session)->dev->cfg.write_rate);
}

uint64_t fake_vfio_data_write_done_at(void *session, uint64_t now, uint64_t n)
{
	struct precopy_fake_vfio *dev = ((struct session *)session)->dev;

	return queue_done_at(dev, now, n, dev->cfg.write_rate);
}

void fake_vfio_drain(struct session *s)
{
	struct precopy_fake_vfio *dev = s->dev;
	ssize_t n;

	if (s->model_fd < 0)
		return;
	while ((n = fv_real()->ops->read(NULL, s->model_fd, dev->buf, CHUNK)) > 0) {
		if (!fv_stream_check(dev->cfg.seed, s->received, dev->buf, (size_t)n))
			s->bad = 1;
		s->received += (uint64_t)n;
		dev->st.bytes_in += (uint64_t)n;
	}
}

ssize_t fake_vfio_data_write(void *session, const void *buf, size_t len)
{
	struct session *s = session;
	ssize_t r;

	if (!s->resume)
		return -EINVAL;
	if (s->dead)
		return -ENODEV;
	r = fv_real()->ops->write(NULL, s->user_fd, buf, len < CHUNK ? len : CHUNK);
	fake_vfio_drain(s);
	return r;
}

void fake_vfio_data_pump(void *session)
{
	struct session *s = session;

	if (!s->dead && !s->resume) {
		fake_vfio_advance(s->dev);
		fake_vfio_produce(s->dev, s, CHUNK);
	}
}

void fake_vfio_data_drain(void *session)
{
	struct session *s = session;

	if (!s->dead && s->resume)
		fake_vfio_drain(s);
}

void fake_vfio_data_closed(void *session)
{
	struct session *s = session;

	s->user_fd = -1; /* the caller closes the real fd */
}

int fake_vfio_data_ioctl(void *session, unsigned long req, void *arg)
{
	struct session *s = session;
	struct precopy_fake_vfio *dev = s->dev;
	struct vfio_precopy_info *info = arg;

	if (req != VFIO_MIG_GET_PRECOPY_INFO || !(dev->cfg.mig_flags & VFIO_MIGRATION_PRE_COPY))
		return -ENOTTY;
	if (!info)
		return -EFAULT;
	if (info->argsz < offsetof(struct vfio_precopy_info, dirty_bytes) + sizeof(info->dirty_bytes))
		return -EINVAL;
	if (s->dead || s->resume || !fv_in_precopy(dev->state))
		return -EINVAL;
	fake_vfio_advance(dev);
	info->flags = 0;
	info->initial_bytes = dev->initial_left;
	info->dirty_bytes = dev->dirty;
	return 0;
}
