/* The VFIO device model's migration data sessions: each is an AF_UNIX
 * socketpair whose user end is the data_fd the FSM hands out, carrying a
 * deterministic byte stream (saving) or checking one (resuming); PRE_COPY
 * info as VFIO_MIG_GET_PRECOPY_INFO reports it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_vfio_priv.h"

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
		want = want < fv_sat_add(dev->initial_left, dev->dirty) ? want : fv_sat_add(dev->initial_left, dev->dirty);
	else if (dev->state == VFIO_DEVICE_STATE_STOP_COPY)
		want = want < dev->sc_left ? want : dev->sc_left;
	else
		want = 0;
	while (want) {
		size_t n = want < CHUNK ? want : CHUNK;
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			dev->buf[i] = fv_stream_byte(dev->cfg.seed, s->produced + i);
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
	fake_vfio_advance(dev);
	fake_vfio_produce(dev, s, len < CHUNK ? len : CHUNK);
	if (s->produced == s->consumed && fv_in_precopy(dev->state))
		return -ENOMSG; /* temporary end of stream: both counters are 0 */
	r = fv_real()->ops->read(NULL, s->user_fd, buf, len);
	if (r > 0)
		s->consumed += (uint64_t)r;
	return r;
}

void fake_vfio_drain(struct session *s)
{
	struct precopy_fake_vfio *dev = s->dev;
	ssize_t n;

	if (s->model_fd < 0)
		return;
	while ((n = fv_real()->ops->read(NULL, s->model_fd, dev->buf, CHUNK)) > 0) {
		uint8_t diff = 0;

		for (ssize_t i = 0; i < n; i++)
			diff |= (uint8_t)(dev->buf[i] ^ fv_stream_byte(dev->cfg.seed, s->received + (uint64_t)i));
		if (diff)
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
