/* SPDX-License-Identifier: MIT */
/* The pump object: creation and path selection, devices, status, messages,
 * the shared LOAD frame-parsing steps, and run/drain dispatch to the
 * io_uring path (pump_uring.c) or the sys path (pump_fallback.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pump_internal.h"
#include "../ioctl/sys_retry.h"
#include "../ioctl/sys_nosig.h"

void precopy__pump_set_msg(struct precopy_pump *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
	va_end(ap);
}

int precopy__pump_fail_stream(struct precopy_pump *p, int err, const char *what)
{
	if (p->broken)
		return p->broken;
	p->broken = err;
	precopy__pump_set_msg(p, "stream: %s: %s", what, strerror(-err));
	return err;
}

static void dev_close(struct precopy_pump *p, struct pump_dev *d)
{
	if ((d->flags & PRECOPY_PUMP_DEV_CLOSE_AT_END) && d->fd >= 0) {
		precopy__sys_close(&p->sys, d->fd);
		d->fd = -1;
	}
}

void precopy__pump_dev_fail(struct precopy_pump *p, struct pump_dev *d, int err, const char *what)
{
	if (d->state != PRECOPY_PUMP_DEV_ACTIVE)
		return;
	d->state = PRECOPY_PUMP_DEV_FAILED;
	d->err = err;
	d->what = what;
	precopy__pump_set_msg(p, "device %u: %s: %s (after %llu bytes)", d->id, what, strerror(-err),
		     (unsigned long long)d->bytes);
}

void precopy__pump_dev_done(struct precopy_pump *p, struct pump_dev *d, uint32_t flags)
{
	d->frames++;
	if (flags)
		d->ending = false; /* the EOD or ABORT that ends the device is out */
	if (flags & PRECOPY_FRAME_EOD) {
		if (d->state == PRECOPY_PUMP_DEV_ACTIVE)
			d->state = PRECOPY_PUMP_DEV_EOF;
		dev_close(p, d);
	}
}

bool precopy__pump_expired(struct precopy_pump *p, struct pump_call *c)
{
	if (!c->expired && c->deadline_ns && p->cfg.now_ns(p->cfg.clock_ctx) >= c->deadline_ns)
		c->expired = true;
	return c->expired;
}

bool precopy__pump_stalled(const struct precopy_pump *p)
{
	return p->stall_after_ns && p->cfg.now_ns(p->cfg.clock_ctx) >= p->stall_after_ns;
}

bool precopy__pump_splice_lost(struct precopy_pump *p, struct pump_dev *d)
{
	int avail = 0;

	if (precopy__sys_ioctl(&p->sys, d->fd, FIONREAD, &avail) < 0 || avail != 0)
		return false;
	precopy__pump_fail_stream(p, -EIO, "device bytes behind a sent header vanished");
	return true;
}

bool precopy__pump_all_ended(const struct precopy_pump *p)
{
	for (uint32_t i = 0; i < p->ndev; i++)
		if (p->devs[i].state == PRECOPY_PUMP_DEV_ACTIVE || p->devs[i].ending)
			return false;
	return true;
}

bool precopy__pump_load_done(const struct precopy_pump *p)
{
	for (uint32_t i = 0; i < p->ndev; i++)
		if (p->devs[i].state == PRECOPY_PUMP_DEV_ACTIVE && !p->devs[i].eod_seen)
			return false;
	return true;
}

uint8_t *precopy__pump_slot(struct precopy_pump *p, uint32_t i)
{
	return p->buf + (size_t)i * p->slot_size;
}

/* A pipe wakes a writer waiting for room only when a read ends (and a
 * reader waiting for bytes only when a write ends), so a 1 MiB read from a
 * full device pipe keeps its writer asleep for the whole copy, and the
 * 1 MiB frame it makes does the same to a reader of a pipe stream. Reads of
 * 64 KiB let both ends run alongside the pump: pipe-4dev-1024k-copy went
 * from 0.90-1.03 to 1.46-1.66 of the plain loop (paired medians of three
 * alternations, perf/pump-history.md, "Copies through pipes in 64 KiB
 * pieces");
 * 128 KiB did worse, 32 KiB no better. Only with a pipe stream: into a socket
 * (which wakes its reader per message) 64 KiB frames made pipe2sock copies
 * slower. Spliced frames are not cut: they copy nothing. LOAD, from a pipe
 * stream into a device pipe, the same: load-pipe-Ndev-1024k-copy with 1, 4
 * and 16 devices, paired medians of three alternations, 0.60-0.79 ->
 * 1.05-1.45, 0.95-1.11 -> 0.94-1.37, 0.88-0.99 -> 1.24-1.77; frames are
 * the source's, only the pieces moved at once are cut. */
uint32_t precopy__pump_copy_len(const struct precopy_pump *p, const struct pump_dev *d, uint32_t len)
{
	if ((d->flags & PRECOPY_PUMP_DEV_PIPE) && p->stream_pipe && len > PUMP_PIPE_PIECE)
		return PUMP_PIPE_PIECE;
	return len;
}

/* The stream's FIONREAD says whether bytes are there before a splice: a
 * blocking socket ignores SPLICE_F_NONBLOCK (only the pipe side honours
 * it), so a splice from an empty one would sleep in the kernel past any
 * deadline. With bytes there it returns what it moved. SPLICE_F_NONBLOCK
 * keeps it from waiting for room in the device pipe. */
int precopy__pump_load_splice(struct precopy_pump *p, struct pump_call *c, struct pump_dev *d, uint32_t want, int *wfd,
		     short *wev)
{
	int fd = p->cfg.stream_fd, avail = 0;
	ssize_t r;

	if (precopy__sys_ioctl(&p->sys, fd, FIONREAD, &avail) < 0 || avail < 0) {
		d->splice = 0;
		return -1;
	}
	if (avail == 0) {
		if (p->load_spolled) {
			p->load_spolled = false;
			return -1;
		}
		p->load_spolled = true;
		*wfd = fd;
		*wev = POLLIN;
		return 0;
	}
	p->load_spolled = false;
	if ((uint32_t)avail < want)
		want = (uint32_t)avail;
	r = precopy__sys_splice(&p->sys, fd, d->fd, want, SPLICE_F_NONBLOCK);
	if (r == -EAGAIN) {
		*wfd = d->fd; /* the stream has bytes: the device pipe is full */
		*wev = POLLOUT;
		return 0;
	}
	if (r <= 0) {
		/* -EINVAL: these fds cannot splice; anything else is for a read
		 * or a write to say, naming the side that failed */
		if (r != -EINTR)
			d->splice = 0;
		return -1;
	}
	d->splice = 1;
	p->cur_left -= (uint32_t)r;
	d->bytes += (uint64_t)r;
	c->moved += (uint64_t)r;
	p->load_spliced += (uint64_t)r;
	if (!p->cur_left) {
		d->frames++;
		p->in_payload = false;
	}
	return (int)r;
}

int precopy__pump_find(const struct precopy_pump *p, uint32_t id)
{
	for (uint32_t i = 0; i < p->ndev; i++)
		if (p->devs[i].id == id)
			return (int)i;
	return -1;
}

void precopy__pump_timeout_devices(struct precopy_pump *p)
{
	for (uint32_t i = 0; i < p->ndev; i++) {
		struct pump_dev *d = &p->devs[i];

		if (d->state != PRECOPY_PUMP_DEV_ACTIVE || d->ending || d->eod_seen)
			continue;
		precopy__pump_dev_fail(p, d, -ETIMEDOUT, "no end of data before the deadline");
		if (p->cfg.dir != PRECOPY_PUMP_SAVE)
			continue;
		/* SAVE: an ABORT frame follows once the fd is no longer busy */
		d->ending = true;
		if (d->busy)
			d->timed_out = true;
		else
			d->pend_err = -ETIMEDOUT;
	}
}

/* ---------------------------------------------------------------- LOAD steps */

int precopy__pump_load_header(struct precopy_pump *p)
{
	struct precopy_frame_hdr h;
	struct pump_dev *d;
	int r, i;

	r = precopy_frame_decode(p->hdr, p->max_payload, &h);
	p->hdr_have = 0;
	if (r) {
		p->broken = r;
		precopy__pump_set_msg(p,
			     "stream: invalid frame header (magic 0x%08x dev %u flags 0x%x len %u, "
			     "limit %u): %s",
			     pump_le32(p->hdr), pump_le32(p->hdr + 4), pump_le32(p->hdr + 8),
			     pump_le32(p->hdr + 12), p->max_payload, strerror(-r));
		return r;
	}
	i = precopy__pump_find(p, h.dev_id);
	if (i < 0) {
		p->broken = -EPROTO;
		precopy__pump_set_msg(p, "stream: frame for unknown device %u (flags 0x%x len %u)", h.dev_id,
			     h.flags, h.len);
		return -EPROTO;
	}
	d = &p->devs[i];
	if (d->state == PRECOPY_PUMP_DEV_EOF || d->eod_seen) {
		p->broken = -EPROTO;
		precopy__pump_set_msg(p, "stream: frame for device %u after its EOD or ABORT frame", h.dev_id);
		return -EPROTO;
	}
	p->cur = h;
	if (h.flags & PRECOPY_FRAME_EOD) {
		/* the path calls precopy__pump_load_eod() once earlier writes are done */
		d->eod_seen = true;
		p->eod_dev = i;
		return 0;
	}
	p->in_payload = true;
	p->cur_left = h.len;
	/* payload of a device that already failed here is read and dropped */
	p->cur_dev = d->state == PRECOPY_PUMP_DEV_ACTIVE ? i : -1;
	return 0;
}

int precopy__pump_load_abort(struct precopy_pump *p)
{
	int i = precopy__pump_find(p, p->cur.dev_id);
	uint32_t e = pump_le32(p->abort_buf);

	p->in_payload = false;
	if (i < 0)
		return -1;
	p->devs[i].eod_seen = true; /* no frame may follow an ABORT either */
	p->devs[i].abort_err = (e > 0 && e < 4096) ? -(int)e : -EIO;
	return i;
}

void precopy__pump_load_abort_apply(struct precopy_pump *p, struct pump_dev *d)
{
	d->frames++;
	precopy__pump_dev_fail(p, d, d->abort_err, "the source reported a failed transfer");
}

void precopy__pump_load_eod(struct precopy_pump *p, struct pump_dev *d)
{
	precopy__pump_dev_done(p, d, PRECOPY_FRAME_EOD);
}

int precopy__pump_load_eof(struct precopy_pump *p, enum pump_mode mode)
{
	p->stream_eof = true;
	if (p->hdr_have || p->in_payload) {
		p->broken = -EBADMSG;
		if (p->in_payload)
			precopy__pump_set_msg(p,
				     "stream: truncated inside the frame of device %u (%u of %u payload "
				     "bytes missing)",
				     p->cur.dev_id, p->cur_left, p->cur.len);
		else
			precopy__pump_set_msg(p, "stream: truncated inside a frame header (%u of %u bytes)",
				     p->hdr_have, PRECOPY_FRAME_HDR_SIZE);
		return -EBADMSG;
	}
	if (mode == PUMP_DRAIN) {
		for (uint32_t i = 0; i < p->ndev; i++) {
			if (p->devs[i].state == PRECOPY_PUMP_DEV_ACTIVE) {
				p->broken = -EBADMSG;
				precopy__pump_set_msg(p, "stream: ended before device %u sent its end of data",
					     p->devs[i].id);
				return -EBADMSG;
			}
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- object */

PRECOPY_API struct precopy_pump *precopy_pump_new(const struct precopy_pump_config *cfg, int *err)
{
	struct precopy_pump *p = NULL;
	const struct precopy_sys *sys;
	int r = -EINVAL;

	if (!cfg || cfg->version != PRECOPY_PUMP_CONFIG_VERSION || !cfg->now_ns)
		goto out;
	if (cfg->dir != PRECOPY_PUMP_SAVE && cfg->dir != PRECOPY_PUMP_LOAD)
		goto out;
	if (cfg->stream_fd < 0)
		goto out;
	if (cfg->flags & ~(PRECOPY_PUMP_FORCE_FALLBACK | PRECOPY_PUMP_NO_SPLICE | PRECOPY_PUMP_NO_FIXED))
		goto out;
	if (cfg->chunk_size && (cfg->chunk_size < PRECOPY_PUMP_MIN_CHUNK ||
				cfg->chunk_size > PRECOPY_FRAME_MAX_PAYLOAD))
		goto out;
	if (cfg->queue_depth > PRECOPY_PUMP_MAX_DEPTH || cfg->max_payload > PRECOPY_FRAME_MAX_PAYLOAD)
		goto out;
	sys = cfg->sys ? cfg->sys : precopy_sys_real();
	if (precopy_sys_validate(sys))
		goto out;

	r = -ENOMEM;
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out;
	p->cfg = *cfg;
	p->sys = *sys;
	p->real_sys = sys == precopy_sys_real();
	p->chunk = cfg->chunk_size ? cfg->chunk_size : PRECOPY_PUMP_DEFAULT_CHUNK;
	p->depth = cfg->queue_depth ? cfg->queue_depth : PRECOPY_PUMP_DEFAULT_DEPTH;
	p->max_payload = cfg->max_payload ? cfg->max_payload : PRECOPY_FRAME_MAX_PAYLOAD;
	if (!p->cfg.poll_interval_ms)
		p->cfg.poll_interval_ms = 10;
	p->cur_dev = -1;
	p->eod_dev = -1;
	p->slot_size = ((size_t)PRECOPY_FRAME_HDR_SIZE + p->chunk + 4095) & ~(size_t)4095;
	if (posix_memalign((void **)&p->buf, 4096, p->slot_size * p->depth)) {
		free(p);
		p = NULL;
		goto out;
	}

	p->path = PRECOPY_PUMP_PATH_FALLBACK;
	if (cfg->flags & PRECOPY_PUMP_FORCE_FALLBACK) {
		p->path_reason = 0;
	} else if (sys != precopy_sys_real()) {
		p->path_reason = -EOPNOTSUPP;
	} else {
		p->path_reason = precopy__pump_uring_init(p);
		if (p->path_reason == 0)
			p->path = PRECOPY_PUMP_PATH_URING;
	}
	r = 0;
out:
	if (err)
		*err = r;
	return p;
}

PRECOPY_API void precopy_pump_free(struct precopy_pump *p)
{
	if (!p)
		return;
	if (p->path == PRECOPY_PUMP_PATH_URING)
		precopy__pump_uring_exit(p);
	free(p->devs);
	free(p->buf);
	free(p);
}

PRECOPY_API enum precopy_pump_path precopy_pump_path(const struct precopy_pump *p, int *reason)
{
	if (!p)
		return 0;
	if (reason)
		*reason = p->path == PRECOPY_PUMP_PATH_URING ? 0 : p->path_reason;
	return p->path;
}

PRECOPY_API int precopy_pump_add_device(struct precopy_pump *p, uint32_t id, int fd, uint32_t flags)
{
	struct pump_dev *d;

	if (!p || fd < 0 || (flags & ~(PRECOPY_PUMP_DEV_CLOSE_AT_END | PRECOPY_PUMP_DEV_PIPE)))
		return -EINVAL;
	if (p->broken)
		return p->broken;
	if (precopy__pump_find(p, id) >= 0)
		return -EEXIST;
	if (p->ndev >= PRECOPY_PUMP_MAX_DEVICES)
		return -ENOSPC;
	if (p->ndev == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 8;
		struct pump_dev *n = realloc(p->devs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		p->devs = n;
		p->cap = cap;
	}
	d = &p->devs[p->ndev++];
	memset(d, 0, sizeof(*d));
	d->id = id;
	d->fd = fd;
	d->flags = flags;
	/* splice only from pipes: FIONREAD counts exactly the bytes queued
	 * there, which nothing but the pump consumes */
	d->splice = ((flags & PRECOPY_PUMP_DEV_PIPE) && !(p->cfg.flags & PRECOPY_PUMP_NO_SPLICE)) ? -1 : 0;
	d->wq_head = d->wq_tail = -1;
	return 0;
}

PRECOPY_API int precopy_pump_dev_status(const struct precopy_pump *p, uint32_t id,
					struct precopy_pump_dev_status *out)
{
	int i;

	if (!p || !out)
		return -EINVAL;
	i = precopy__pump_find(p, id);
	if (i < 0)
		return -ENOENT;
	out->id = id;
	out->state = p->devs[i].state;
	out->err = p->devs[i].err;
	out->bytes = p->devs[i].bytes;
	out->frames = p->devs[i].frames;
	return 0;
}

PRECOPY_API const char *precopy_pump_strerror(const struct precopy_pump *p)
{
	return p ? p->msg : "";
}

/* A send into a blocking socket waits in the kernel until the peer makes
 * room: for ever if it stopped reading, out of reach of the drain deadline.
 * So for the length of a SAVE call the stream's SO_SNDTIMEO is one poll
 * interval (unless the caller's own is shorter): a send or splice then
 * returns what it moved, or -EAGAIN, and the pump polls and reads its clock
 * as with an O_NONBLOCK fd, while a frame still goes out in one splice
 * when the peer keeps up.
 * Pipes and O_NONBLOCK fds need nothing (stream_nowait says so for the
 * io_uring path); neither do fds that are not sockets (getsockopt fails) or
 * a fake kernel's fds. Asked at every call: the caller owns the fd and may
 * change its flags between calls. */
static void send_bound_begin(struct precopy_pump *p)
{
	int fd = p->cfg.stream_fd, fl;
	struct timeval tv = { .tv_sec = p->cfg.poll_interval_ms / 1000,
			      .tv_usec = (p->cfg.poll_interval_ms % 1000) * 1000 };
	struct timeval *old = &p->send_timeo_saved;
	socklen_t l = sizeof(*old);
	struct stat st;

	p->send_bounded = false;
	p->stream_nowait = false;
	p->stream_pipe = false;
	if (!p->real_sys)
		return;
	p->stream_pipe = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	if (p->cfg.dir != PRECOPY_PUMP_SAVE)
		return;
	fl = fcntl(fd, F_GETFL);
	if (p->stream_pipe || (fl >= 0 && (fl & O_NONBLOCK))) {
		p->stream_nowait = true;
		return;
	}
	if (fl < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, old, &l) != 0 || l != sizeof(*old))
		return;
	if ((old->tv_sec || old->tv_usec) &&
	    (old->tv_sec < tv.tv_sec || (old->tv_sec == tv.tv_sec && old->tv_usec <= tv.tv_usec))) {
		p->send_bounded = true; /* the caller's bound is tighter: keep it */
		*old = (struct timeval){ .tv_sec = -1 }; /* nothing to put back */
		return;
	}
	p->send_bounded = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0;
}

static void send_bound_end(struct precopy_pump *p)
{
	if (p->send_bounded && p->send_timeo_saved.tv_sec >= 0 &&
	    setsockopt(p->cfg.stream_fd, SOL_SOCKET, SO_SNDTIMEO, &p->send_timeo_saved,
		       sizeof(p->send_timeo_saved)) != 0 &&
	    !p->broken)
		precopy__pump_fail_stream(p, -errno, "restoring the caller's SO_SNDTIMEO failed");
	p->send_bounded = false;
}

/* Did this call meet a reader that had gone (stream or device pipe)? */
static int saw_epipe(const struct precopy_pump *p, int r)
{
	if (r == -EPIPE || p->broken == -EPIPE)
		return 1;
	for (uint32_t i = 0; i < p->ndev; i++)
		if (p->devs[i].err == -EPIPE)
			return 1;
	return 0;
}

static int64_t call(struct precopy_pump *p, struct pump_call *c)
{
	struct precopy__sigpipe_guard g;
	int r;

	if (p->broken)
		return p->broken;
	for (uint32_t i = 0; i < p->ndev; i++)
		p->devs[i].idle = false;
	send_bound_begin(p);
	/* writes and splices (sys or io_uring, run on this thread) into a
	 * stream or device pipe whose reader has gone raise no SIGPIPE in the
	 * host: blocked for the call, the one they queued taken back */
	precopy__sigpipe_begin(&g);
	if (p->cfg.dir == PRECOPY_PUMP_SAVE)
		r = p->path == PRECOPY_PUMP_PATH_URING ? precopy__pump_uring_save(p, c) : precopy__pump_fb_save(p, c);
	else
		r = p->path == PRECOPY_PUMP_PATH_URING ? precopy__pump_uring_load(p, c) : precopy__pump_fb_load(p, c);
	precopy__sigpipe_end(&g, saw_epipe(p, r));
	send_bound_end(p);
	if (p->broken && r >= 0)
		r = p->broken;
	if (p->ndev)
		p->rr = (p->rr + 1) % p->ndev;
	if (r < 0)
		return r;
	return (int64_t)c->moved;
}

PRECOPY_API int64_t precopy_pump_run(struct precopy_pump *p, const struct precopy_pump_budget *b)
{
	struct pump_call c = { .mode = PUMP_RUN };

	if (!p)
		return -EINVAL;
	if (b) {
		c.max_bytes = b->max_bytes;
		c.deadline_ns = b->deadline_ns;
	}
	return call(p, &c);
}

PRECOPY_API int64_t precopy_pump_drain(struct precopy_pump *p, uint64_t deadline_ns)
{
	struct pump_call c = { .mode = PUMP_DRAIN, .deadline_ns = deadline_ns };
	int64_t r;

	if (!p)
		return -EINVAL;
	p->stall_after_ns = deadline_ns ? deadline_ns + (uint64_t)p->cfg.poll_interval_ms * 1000000u : 0;
	r = call(p, &c);
	p->stall_after_ns = 0;
	if (r < 0)
		return r;
	/* Report the failed device added first (deterministic order). */
	for (uint32_t i = 0; i < p->ndev; i++) {
		struct pump_dev *d = &p->devs[i];

		if (d->state == PRECOPY_PUMP_DEV_FAILED) {
			precopy__pump_set_msg(p, "device %u: %s: %s (after %llu bytes)", d->id,
				     d->what ? d->what : "failed", strerror(-d->err),
				     (unsigned long long)d->bytes);
			return d->err;
		}
	}
	return r;
}
