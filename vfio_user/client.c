/* SPDX-License-Identifier: MIT */
/* vfio_user/client.c — the vfio-user client (precopy/vfio_user.h).
 *
 * One request in flight per handle. A request is sent whole (its fds on
 * the first byte), then the client reads messages until its reply: a
 * server command (DMA_READ/DMA_WRITE) met on the way is answered at once,
 * on the socket it came from. The same happens while a request is still
 * being sent, so that a server blocked on its own command never deadlocks
 * against a client blocked on a full socket.
 *
 * The seam (precopy/sys.h) has no sendmsg/recvmsg/socket/connect: those
 * calls, and only those, are made directly, all in the "socket calls"
 * section below; polls and closes go through the seam. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "precopy/vfio_user.h"
#include "../ioctl/sys_retry.h"
#include "codec.h"
#include "vu_priv.h"

#define MAX_FDS 8           /* fds accepted with one message */
#define MAX_IDLE_WAKEUPS 1000
#define MAX_SERVED 65536
#define SLICE_MS 100

struct vu_map {
	uint64_t iova, size;
	uint8_t *host;
	uint32_t prot;
	uint64_t *dirty; /* one bit per dirty_page_size page */
	size_t words;
};

struct wait {
	int idle_ms;   /* poll time that passed with nothing moving */
	int wakeups;   /* wake-ups in a row that moved nothing */
};

struct precopy_vfio_user {
	const struct precopy_sys *sys;
	int fd, twin;
	char name[64];
	uint32_t msg_bytes, max_reply;
	int timeout_ms;
	uint64_t page;     /* dirty log page size */
	int page_shift;
	uint16_t next_id;
	struct precopy_vfio_user_caps caps;
	uint8_t *tx;       /* the request being sent */
	size_t txcap;
	uint8_t *stx;      /* replies to the server's commands */
	size_t stxcap;
	uint8_t *rx;       /* the message being received */
	size_t rxcap;
	int rxfds[MAX_FDS];
	int nrxfds;
	struct vu_map *maps;
	size_t nmaps, capmaps;
	uint64_t log_page; /* DMA logging's page size since START, 0: off */
	int dead;          /* the transport failure that broke the connection */
	size_t served;     /* server commands answered in this request */
	int pend;          /* a request is in flight (sent, reply not read) */
	uint16_t pend_id, pend_cmd;
	uint32_t pend_asked; /* its MIG_DATA_READ size */
	struct wait pw;    /* its idle limits */
	char err[320];
};

/* ---- socket calls (not in the seam) -------------------------------------- */

static ssize_t sock_send(int fd, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	for (int i = 0; i < PRECOPY__EINTR_RETRIES; i++) {
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
	return -EINTR;
}

/* Receive up to len bytes; fds that come along are appended to fds[*nfds]
 * (those beyond MAX_FDS are closed and make it -EPROTO). 0: end of
 * stream. */
static ssize_t sock_recv(const struct precopy_sys *sys, int fd, void *buf, size_t len, int *fds, int *nfds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr m;
	ssize_t r = -EINTR;
	for (int i = 0; i < PRECOPY__EINTR_RETRIES; i++) {
		m = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				     .msg_controllen = sizeof(u.b) };
		r = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r >= 0)
			break;
		r = -errno;
		if (r != -EINTR)
			return r;
	}
	if (r < 0)
		return r;
	int overflow = (m.msg_flags & MSG_CTRUNC) != 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t k = 0; k < n; k++) {
			int got;
			memcpy(&got, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
			if (*nfds < MAX_FDS)
				fds[(*nfds)++] = got;
			else {
				precopy__sys_close(sys, got);
				overflow = 1;
			}
		}
	}
	return overflow ? -EPROTO : r;
}

int precopy_vfio_user_connect(const char *path)
{
	if (!path)
		return -EINVAL;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	for (int i = 0;; i++) {
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		int e = errno;
		if (e == EINTR && i + 1 < PRECOPY__EINTR_RETRIES)
			continue;
		if (e == EINTR || e == EINPROGRESS || e == EALREADY || e == EISCONN) {
			/* an interrupted connect carries on in the background;
			 * wait for it */
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int pr = precopy__sys_poll(precopy_sys_real(), &p, 1, PRECOPY_VFIO_USER_TIMEOUT_MS);
			int so = 0;
			socklen_t sl = sizeof(so);
			if (pr > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
				return fd;
			e = pr == 0 ? ETIMEDOUT : so ? so : EIO;
		}
		precopy__sys_close(precopy_sys_real(), fd);
		return -e;
	}
}

/* ---- messages --------------------------------------------------------------- */

static const char *cmd_name(uint16_t cmd)
{
	switch (cmd) {
	case PRECOPY__VU_VERSION: return "VERSION";
	case PRECOPY__VU_DMA_MAP: return "DMA_MAP";
	case PRECOPY__VU_DMA_UNMAP: return "DMA_UNMAP";
	case PRECOPY__VU_DEVICE_GET_INFO: return "DEVICE_GET_INFO";
	case PRECOPY__VU_DEVICE_GET_REGION_INFO: return "DEVICE_GET_REGION_INFO";
	case PRECOPY__VU_REGION_READ: return "REGION_READ";
	case PRECOPY__VU_REGION_WRITE: return "REGION_WRITE";
	case PRECOPY__VU_DMA_READ: return "DMA_READ";
	case PRECOPY__VU_DMA_WRITE: return "DMA_WRITE";
	case PRECOPY__VU_DEVICE_RESET: return "DEVICE_RESET";
	case PRECOPY__VU_DEVICE_FEATURE: return "DEVICE_FEATURE";
	case PRECOPY__VU_MIG_DATA_READ: return "MIG_DATA_READ";
	case PRECOPY__VU_MIG_DATA_WRITE: return "MIG_DATA_WRITE";
	default: return "command";
	}
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "unknown errno";
}

/* Set the message: "vfio-user NAME: STEP: CAUSE"; returns err. */
__attribute__((format(printf, 4, 5))) static int fail(struct precopy_vfio_user *c, int err, const char *step,
							const char *fmt, ...)
{
	int n = snprintf(c->err, sizeof(c->err), "vfio-user%s%s: %s: ", c->name[0] ? " " : "", c->name, step);
	if (n > 0 && (size_t)n < sizeof(c->err)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err + n, sizeof(c->err) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* A transport failure: the connection is no longer in step. */
static int broken(struct precopy_vfio_user *c, int err)
{
	if (!c->dead)
		c->dead = err;
	return err;
}

static void drop_rxfds(struct precopy_vfio_user *c)
{
	for (int i = 0; i < c->nrxfds; i++)
		precopy__sys_close(c->sys, c->rxfds[i]);
	c->nrxfds = 0;
}

static int grow_rx(struct precopy_vfio_user *c, size_t need)
{
	if (need <= c->rxcap)
		return 0;
	size_t cap = c->rxcap ? c->rxcap : 4096;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(c->rx, cap);
	if (!p)
		return -ENOMEM;
	c->rx = p;
	c->rxcap = cap;
	return 0;
}

/* Wait for events on fd (and the twin socket's POLLIN). Returns the
 * revents of fd in *rev and of the twin in *trev; -ETIMEDOUT past the
 * limits. */
static int wait_io(struct precopy_vfio_user *c, struct wait *w, int fd, short events, short *rev, short *trev)
{
	struct pollfd p[2] = { { .fd = fd, .events = events } };
	unsigned n = 1;
	if (c->twin >= 0 && c->twin != fd) {
		p[1] = (struct pollfd){ .fd = c->twin, .events = POLLIN };
		n = 2;
	}
	for (;;) {
		int left = c->timeout_ms - w->idle_ms;
		if (left <= 0 || w->wakeups >= MAX_IDLE_WAKEUPS)
			return -ETIMEDOUT;
		int slice = left < SLICE_MS ? left : SLICE_MS;
		int r = precopy__sys_poll(c->sys, p, n, slice);
		if (r < 0 && r != -EINTR)
			return r;
		if (r <= 0) {
			if (r == 0)
				w->idle_ms += slice;
			else
				w->wakeups++;
			continue;
		}
		w->wakeups++;
		*rev = p[0].revents;
		*trev = n == 2 ? p[1].revents : 0;
		return 0;
	}
}

/* Read exactly len bytes of the message being received from fd into
 * c->rx[at..). */
static int recv_exact(struct precopy_vfio_user *c, struct wait *w, int fd, size_t at, size_t len,
		      const char *step, size_t total)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = sock_recv(c->sys, fd, c->rx + at + got, len - got, c->rxfds, &c->nrxfds);
		if (r > 0) {
			got += (size_t)r;
			w->idle_ms = 0;
			w->wakeups = 0;
			continue;
		}
		if (r == 0) {
			if (at + got == 0)
				return fail(c, -ECONNRESET, step, "connection closed by the server");
			return fail(c, -ECONNRESET, step, "connection closed by the server after %zu of %zu bytes",
				    at + got, total ? total : PRECOPY__VU_HDR_SIZE);
		}
		if (r == -EPROTO)
			return fail(c, r, step, "more than %d fds with one message", MAX_FDS);
		if (r != -EAGAIN && r != -EWOULDBLOCK)
			return fail(c, (int)r, step, "receive: %s", errname((int)-r));
		short rev, trev;
		int e = wait_io(c, w, fd, POLLIN, &rev, &trev);
		if (e == -ETIMEDOUT)
			return fail(c, e, step, "no reply within %d ms", c->timeout_ms);
		if (e)
			return fail(c, e, step, "poll: %s", errname(-e));
	}
	return 0;
}

/* Receive one whole message from fd into c->rx; *n its length. */
static int recv_msg(struct precopy_vfio_user *c, struct wait *w, int fd, size_t *n, const char *step)
{
	int r = recv_exact(c, w, fd, 0, PRECOPY__VU_HDR_SIZE, step, 0);
	if (r)
		return r;
	struct precopy__vu_hdr h;
	const char *why = NULL;
	if (precopy__vu_hdr_get(c->rx, PRECOPY__VU_HDR_SIZE, &h, &why))
		return fail(c, -EPROTO, step, "bad header: %s", why);
	if (h.size > c->max_reply)
		return fail(c, -EPROTO, step, "%s message of %u bytes, above the limit of %u", cmd_name(h.cmd),
			    h.size, c->max_reply);
	if (grow_rx(c, h.size))
		return fail(c, -ENOMEM, step, "no memory for a %u-byte message", h.size);
	r = recv_exact(c, w, fd, PRECOPY__VU_HDR_SIZE, h.size - PRECOPY__VU_HDR_SIZE, step, h.size);
	if (r)
		return r;
	*n = h.size;
	return 0;
}

/* Send all of buf[0..len) on fd, the fds with its first byte; answer
 * server commands meanwhile when wait_cmds. */
static int serve_one(struct precopy_vfio_user *c, struct wait *w, int fd, const char *step);

static int send_all(struct precopy_vfio_user *c, struct wait *w, int fd, const uint8_t *buf, size_t len,
		    const int *fds, int nfds, const char *step)
{
	size_t off = 0;
	while (off < len) {
		ssize_t r = sock_send(fd, buf + off, len - off, off ? NULL : fds, off ? 0 : nfds);
		if (r > 0) {
			off += (size_t)r;
			w->idle_ms = 0;
			w->wakeups = 0;
			continue;
		}
		if (r == -EPIPE || r == -ECONNRESET)
			return fail(c, -ECONNRESET, step, "connection closed by the server (send: %s)",
				    errname((int)-r));
		if (r != -EAGAIN && r != -EWOULDBLOCK && r != 0)
			return fail(c, (int)r, step, "send: %s", errname((int)-r));
		short rev = 0, trev = 0;
		/* the main socket's commands can be answered only between
		 * whole messages of ours: before the first byte */
		short ev = POLLOUT | (off == 0 && c->twin < 0 && fd == c->fd ? POLLIN : 0);
		int e = wait_io(c, w, fd, ev, &rev, &trev);
		if (e == -ETIMEDOUT)
			return fail(c, e, step, "socket not writable within %d ms", c->timeout_ms);
		if (e)
			return fail(c, e, step, "poll: %s", errname(-e));
		if (trev & (POLLIN | POLLHUP | POLLERR)) {
			if ((e = serve_one(c, w, c->twin, step)))
				return e;
		}
		if (!(rev & POLLOUT) && (rev & POLLIN) && off == 0 && fd == c->fd && c->twin < 0) {
			if ((e = serve_one(c, w, c->fd, step)))
				return e;
		} else if ((rev & (POLLERR | POLLHUP)) && !(rev & POLLOUT)) {
			return fail(c, -ECONNRESET, step, "connection closed by the server");
		}
	}
	return 0;
}

/* ---- serving the server's commands ------------------------------------------ */

static struct vu_map *find_map(struct precopy_vfio_user *c, uint64_t addr, uint64_t count)
{
	for (size_t i = 0; i < c->nmaps; i++) {
		struct vu_map *m = &c->maps[i];
		if (addr >= m->iova && addr - m->iova <= m->size && count <= m->size - (addr - m->iova))
			return m;
	}
	return NULL;
}

static void mark_dirty(struct precopy_vfio_user *c, struct vu_map *m, uint64_t addr, uint64_t count)
{
	if (!count)
		return;
	uint64_t first = (addr - m->iova) >> c->page_shift;
	uint64_t last = (addr - m->iova + count - 1) >> c->page_shift;
	for (uint64_t p = first; p <= last; p++)
		m->dirty[p / 64] |= 1ull << (p % 64);
}

/* c->rx[0..n) holds a command that came on fd: answer it. */
static int answer(struct precopy_vfio_user *c, struct wait *w, int fd, size_t n, const char *step)
{
	struct precopy__vu_hdr h;
	const uint8_t *p;
	size_t pl;
	const char *why = NULL;
	if (precopy__vu_cmd_open(c->rx, n, &h, &p, &pl, &why))
		return fail(c, -EPROTO, step, "server command: %s", why);
	drop_rxfds(c); /* DMA_READ/WRITE carry none */
	if (++c->served > MAX_SERVED)
		return fail(c, -EPROTO, step, "more than %d server commands during one request", MAX_SERVED);
	uint64_t addr = 0, count = 0;
	const uint8_t *data = NULL;
	uint32_t eno = 0;
	int r = precopy__vu_dec_dma_req(h.cmd, p, pl, c->msg_bytes, &addr, &count, &data, &why);
	if (r) {
		/* a command the client does not serve, or a malformed DMA
		 * request: refused by reply, the connection stays in step */
		eno = h.cmd == PRECOPY__VU_DMA_READ || h.cmd == PRECOPY__VU_DMA_WRITE ? EINVAL : ENOTSUP;
	} else {
		struct vu_map *m = find_map(c, addr, count);
		uint32_t need = h.cmd == PRECOPY__VU_DMA_READ ? PRECOPY_VFIO_USER_DMA_READ : PRECOPY_VFIO_USER_DMA_WRITE;
		if (!m || !m->host)
			eno = EFAULT;
		else if (!(m->prot & need))
			eno = EPERM;
	}
	int len;
	if (eno) {
		len = precopy__vu_enc_error_reply(c->stx, c->stxcap, h.msg_id, h.cmd, eno);
	} else {
		struct vu_map *m = find_map(c, addr, count);
		uint8_t *host = m->host + (addr - m->iova);
		if (h.cmd == PRECOPY__VU_DMA_READ) {
			len = precopy__vu_enc_dma_read_reply(c->stx, c->stxcap, h.msg_id, addr, host, count);
		} else {
			if (count)
				memcpy(host, data, (size_t)count);
			mark_dirty(c, m, addr, count);
			len = precopy__vu_enc_dma_write_reply(c->stx, c->stxcap, h.msg_id, addr, count);
		}
	}
	if (len < 0)
		return fail(c, -EPROTO, step, "no room to answer %s of %llu bytes", cmd_name(h.cmd),
			    (unsigned long long)count);
	if (h.flags & PRECOPY__VU_F_NO_REPLY)
		return 0;
	/* the reply goes out whole before anything else on fd */
	size_t off = 0;
	while (off < (size_t)len) {
		ssize_t s = sock_send(fd, c->stx + off, (size_t)len - off, NULL, 0);
		if (s > 0) {
			off += (size_t)s;
			w->idle_ms = 0;
			w->wakeups = 0;
			continue;
		}
		if (s == -EPIPE || s == -ECONNRESET)
			return fail(c, -ECONNRESET, step, "connection closed by the server (answering %s)",
				    cmd_name(h.cmd));
		if (s != -EAGAIN && s != -EWOULDBLOCK && s != 0)
			return fail(c, (int)s, step, "answering %s: send: %s", cmd_name(h.cmd), errname((int)-s));
		short rev, trev;
		int e = wait_io(c, w, fd, POLLOUT, &rev, &trev);
		if (e)
			return fail(c, e, step, "answering %s: socket not writable within %d ms", cmd_name(h.cmd),
				    c->timeout_ms);
	}
	return 0;
}

static int serve_one(struct precopy_vfio_user *c, struct wait *w, int fd, const char *step)
{
	size_t n;
	int r = recv_msg(c, w, fd, &n, step);
	if (r)
		return r;
	return answer(c, w, fd, n, step);
}

/* ---- requests ------------------------------------------------------------------ */

/* Wait for the reply to the request in flight (c->pend) into c->rx:
 * *payload and *plen on 0, answering the server's commands meanwhile.
 * block: wait up to the request's idle limit; else -EAGAIN as soon as
 * neither socket has a byte waiting (a message whose first bytes are
 * there is read whole). Server errno as -errno (connection kept); any
 * transport failure breaks the connection. The request is over on any
 * return but -EAGAIN. */
static int recv_reply(struct precopy_vfio_user *c, int block, const char *step, const uint8_t **payload,
		      size_t *plen)
{
	int r;
	for (;;) {
		short rev = 0, trev = 0;
		if (block) {
			r = wait_io(c, &c->pw, c->fd, POLLIN, &rev, &trev);
		} else {
			struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN }, { .fd = c->twin, .events = POLLIN } };
			r = precopy__sys_poll(c->sys, p, c->twin >= 0 ? 2 : 1, 0);
			if (r == 0 || r == -EINTR)
				return -EAGAIN;
			if (r > 0) {
				r = 0;
				rev = p[0].revents;
				trev = c->twin >= 0 ? p[1].revents : 0;
			}
		}
		if (r == -ETIMEDOUT)
			r = fail(c, r, step, "no reply within %d ms", c->timeout_ms);
		else if (r)
			r = fail(c, r, step, "poll: %s", errname(-r));
		if (r)
			break;
		if (trev & (POLLIN | POLLHUP | POLLERR)) {
			if ((r = serve_one(c, &c->pw, c->twin, step)))
				break;
			continue;
		}
		if (!(rev & (POLLIN | POLLHUP | POLLERR)))
			continue;
		size_t n;
		if ((r = recv_msg(c, &c->pw, c->fd, &n, step)))
			break;
		if ((precopy__vu_get32(c->rx + 8) & PRECOPY__VU_F_TYPE_MASK) == PRECOPY__VU_F_COMMAND) {
			if (c->twin >= 0) {
				r = fail(c, -EPROTO, step, "server command %s on the main socket in twin-socket mode",
					 cmd_name(precopy__vu_get16(c->rx + 2)));
				break;
			}
			if ((r = answer(c, &c->pw, c->fd, n, step)))
				break;
			continue;
		}
		c->pend = 0;
		const char *why = NULL;
		r = precopy__vu_reply_open(c->rx, n, c->pend_id, c->pend_cmd, payload, plen, &why);
		if (r == -EPROTO) {
			drop_rxfds(c);
			return broken(c, fail(c, r, step, "bad reply: %s", why));
		}
		if (r) {
			drop_rxfds(c);
			return fail(c, r, step, "server error %s", errname(-r));
		}
		return 0;
	}
	c->pend = 0;
	return broken(c, r);
}

/* A request still in flight (an overlapped MIG_DATA_READ whose reaping
 * was abandoned): wait for its reply and drop it, so that the next
 * request's reply is the next one. */
static int settle(struct precopy_vfio_user *c, const char *step)
{
	const uint8_t *p;
	size_t pl;
	char what[96];
	if (!c->pend)
		return 0;
	snprintf(what, sizeof(what), "%s: the %s left in flight", step, cmd_name(c->pend_cmd));
	int r = recv_reply(c, 1, what, &p, &pl);
	drop_rxfds(c);
	return c->dead ? r : 0;
}

/* Send c->tx[0..len) (cmd, id) with fds: the request in flight. */
static int send_req(struct precopy_vfio_user *c, int len, const int *fds, int nfds, const char *step)
{
	if (c->dead)
		return fail(c, -ENOTCONN, step, "connection already broken");
	if (len < 0)
		return fail(c, len, step, "cannot encode the request (%s)", errname(-len));
	int r = settle(c, step);
	if (r)
		return r;
	struct precopy__vu_hdr h;
	precopy__vu_hdr_get(c->tx, (size_t)len, &h, NULL);
	c->pw = (struct wait){ 0 };
	c->served = 0;
	drop_rxfds(c);
	r = send_all(c, &c->pw, c->fd, c->tx, (size_t)len, fds, nfds, step);
	if (r)
		return broken(c, r);
	c->pend = 1;
	c->pend_id = h.msg_id;
	c->pend_cmd = h.cmd;
	return 0;
}

/* Send c->tx[0..len) (cmd, id) with fds and receive its reply into c->rx:
 * *payload and *plen on 0. Server errno as -errno (connection kept); any
 * transport failure breaks the connection. The step names the request. */
static int transact(struct precopy_vfio_user *c, int len, const int *fds, int nfds, const char *step,
		    const uint8_t **payload, size_t *plen)
{
	int r = send_req(c, len, fds, nfds, step);
	if (r)
		return r;
	return recv_reply(c, 1, step, payload, plen);
}

/* A request without fds whose reply carries none we keep: transact, then
 * close any fds the server sent anyway. */
static int ask(struct precopy_vfio_user *c, int len, const char *step, const uint8_t **payload, size_t *plen)
{
	int r = transact(c, len, NULL, 0, step, payload, plen);

	if (r == 0)
		drop_rxfds(c);
	return r;
}

/* A reply's payload failed its command's decoder: the framing was right
 * (the connection stays in step) but the server does not speak the
 * protocol as expected. */
static int bad_payload(struct precopy_vfio_user *c, const char *step, const char *why)
{
	drop_rxfds(c);
	return broken(c, fail(c, -EPROTO, step, "bad reply: %s", why));
}

static uint16_t next_id(struct precopy_vfio_user *c)
{
	return c->next_id++;
}

/* ---- lifecycle -------------------------------------------------------------------- */

void precopy_vfio_user_opts_init(struct precopy_vfio_user_opts *o)
{
	if (o)
		*o = (struct precopy_vfio_user_opts){ .twin_socket = 1 };
}

static void set_out(char *msg, size_t len, const char *s)
{
	if (msg && len)
		snprintf(msg, len, "%s", s);
}

struct precopy_vfio_user *precopy_vfio_user_open(const struct precopy_sys *sys, int fd,
						 const struct precopy_vfio_user_opts *opts, int *err, char *msg,
						 size_t len)
{
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	if (opts)
		o = *opts;
	int dummy;
	if (!err)
		err = &dummy;
	if (precopy_sys_validate(sys) || fd < 0) {
		*err = -EINVAL;
		set_out(msg, len, "vfio-user: open: invalid sys table or fd");
		if (fd >= 0 && sys && sys->ops && sys->ops->close)
			precopy__sys_close(sys, fd);
		return NULL;
	}
	uint32_t mb = o.msg_bytes ? o.msg_bytes : PRECOPY_VFIO_USER_MSG_BYTES;
	uint32_t mr = o.max_reply_bytes ? o.max_reply_bytes : PRECOPY_VFIO_USER_MAX_REPLY;
	int tmo = o.timeout_ms ? o.timeout_ms : PRECOPY_VFIO_USER_TIMEOUT_MS;
	uint64_t pg = o.dirty_page_size ? o.dirty_page_size : PRECOPY_VFIO_USER_DIRTY_PAGE;
	const char *bad = NULL;
	if (mb < 4096 || mb > (16u << 20))
		bad = "opts.msg_bytes: must be 4096 .. 16 MiB";
	else if (tmo < 1 || tmo > 3600000)
		bad = "opts.timeout_ms: must be 1 .. 3600000";
	else if (mr < mb + 64)
		bad = "opts.max_reply_bytes: must be at least msg_bytes + 64";
	else if (pg < 512 || (pg & (pg - 1)) || pg > (1ull << 30))
		bad = "opts.dirty_page_size: must be a power of two, 512 .. 1 GiB";
	if (bad) {
		*err = -EINVAL;
		if (msg && len)
			snprintf(msg, len, "vfio-user: open: %s", bad);
		precopy__sys_close(sys, fd);
		return NULL;
	}
	struct precopy_vfio_user *c = calloc(1, sizeof(*c));
	if (!c) {
		*err = -ENOMEM;
		set_out(msg, len, "vfio-user: open: no memory");
		precopy__sys_close(sys, fd);
		return NULL;
	}
	c->sys = sys;
	c->fd = fd;
	c->twin = -1;
	if (o.name)
		snprintf(c->name, sizeof(c->name), "%s", o.name);
	c->msg_bytes = mb;
	c->max_reply = mr;
	c->timeout_ms = tmo;
	c->page = pg;
	c->page_shift = __builtin_ctzll(pg);
	c->txcap = 64 + (size_t)mb + PRECOPY__VU_MAX_JSON;
	c->stxcap = 64 + (size_t)mb;
	c->tx = malloc(c->txcap);
	c->stx = malloc(c->stxcap);
	int r = -ENOMEM;
	if (!c->tx || !c->stx || grow_rx(c, 64 + (size_t)mb)) {
		fail(c, r, "open", "no memory");
		goto out;
	}

	/* VERSION */
	char json[256];
	int jl = precopy__vu_enc_caps(json, sizeof(json), MAX_FDS, mb, o.twin_socket != 0);
	uint16_t id = next_id(c);
	int l = jl < 0 ? jl
		       : precopy__vu_enc_version(c->tx, c->txcap, id, PRECOPY_VFIO_USER_MAJOR,
						 PRECOPY_VFIO_USER_MINOR, json);
	const uint8_t *p;
	size_t pl;
	if ((r = transact(c, l, NULL, 0, "VERSION", &p, &pl)))
		goto out;
	struct precopy__vu_caps caps;
	uint16_t maj, min;
	const char *why = NULL;
	if (precopy__vu_dec_version(p, pl, &maj, &min, &caps, &why)) {
		r = bad_payload(c, "VERSION", why);
		goto out;
	}
	r = -EPROTO;
	if (maj != PRECOPY_VFIO_USER_MAJOR) {
		fail(c, r, "VERSION", "server speaks major version %u, not %u", maj, PRECOPY_VFIO_USER_MAJOR);
		goto out;
	}
	if (min > PRECOPY_VFIO_USER_MINOR) {
		fail(c, r, "VERSION", "server answered minor version %u above the %u proposed", min,
		     PRECOPY_VFIO_USER_MINOR);
		goto out;
	}
	if (caps.max_data_xfer_size < 4096) {
		fail(c, r, "VERSION", "server max_data_xfer_size %llu below 4096",
		     (unsigned long long)caps.max_data_xfer_size);
		goto out;
	}
	if (caps.twin_supported && caps.has_twin_fd_index) {
		if (!o.twin_socket) {
			fail(c, r, "VERSION", "twin socket set up though not proposed");
			goto out;
		}
		if (caps.twin_fd_index >= (uint64_t)c->nrxfds) {
			fail(c, r, "VERSION", "twin_socket.fd_index %llu names none of the %d fds received",
			     (unsigned long long)caps.twin_fd_index, c->nrxfds);
			goto out;
		}
		c->twin = c->rxfds[caps.twin_fd_index];
		c->rxfds[caps.twin_fd_index] = c->rxfds[--c->nrxfds];
	} else if (caps.twin_supported || caps.has_twin_fd_index) {
		fail(c, r, "VERSION", "inconsistent twin_socket (supported %d, fd_index %s)", caps.twin_supported,
		     caps.has_twin_fd_index ? "given" : "absent");
		goto out;
	}
	drop_rxfds(c);
	if (caps.max_data_xfer_size < c->msg_bytes)
		c->msg_bytes = (uint32_t)caps.max_data_xfer_size;
	c->caps = (struct precopy_vfio_user_caps){
		.major = maj, .minor = min, .max_msg_fds = caps.max_msg_fds,
		.max_data_xfer_size = caps.max_data_xfer_size, .max_dma_maps = caps.max_dma_maps,
		.pgsizes = caps.pgsizes, .migration_pgsize = caps.migration_pgsize, .msg_bytes = c->msg_bytes,
		.twin_socket = c->twin >= 0,
	};
	c->err[0] = '\0';
	*err = 0;
	return c;
out:
	*err = r;
	set_out(msg, len, c->err);
	precopy_vfio_user_close(c);
	return NULL;
}

void precopy_vfio_user_close(struct precopy_vfio_user *c)
{
	if (!c)
		return;
	drop_rxfds(c);
	if (c->twin >= 0)
		precopy__sys_close(c->sys, c->twin);
	if (c->fd >= 0)
		precopy__sys_close(c->sys, c->fd);
	for (size_t i = 0; i < c->nmaps; i++)
		free(c->maps[i].dirty);
	free(c->maps);
	free(c->tx);
	free(c->stx);
	free(c->rx);
	free(c);
}

int precopy__vu_map(const struct precopy_vfio_user *c, size_t i, uint64_t *iova, uint64_t *size)
{
	if (!c || i >= c->nmaps)
		return -ENOENT;
	*iova = c->maps[i].iova;
	*size = c->maps[i].size;
	return 0;
}

int precopy__vu_broken(const struct precopy_vfio_user *c)
{
	return c ? c->dead : -EINVAL;
}

uint64_t precopy__vu_dirty_page(const struct precopy_vfio_user *c)
{
	return c ? c->page : 0;
}

const char *precopy_vfio_user_error(const struct precopy_vfio_user *c)
{
	return c ? c->err : "";
}

int precopy_vfio_user_caps(const struct precopy_vfio_user *c, struct precopy_vfio_user_caps *out)
{
	if (!c || !out)
		return -EINVAL;
	*out = c->caps;
	return 0;
}

int precopy_vfio_user_fd(const struct precopy_vfio_user *c)
{
	if (!c)
		return -EINVAL;
	return c->twin >= 0 ? c->twin : c->fd;
}

int precopy_vfio_user_serve(struct precopy_vfio_user *c, int timeout_ms)
{
	if (!c || timeout_ms < 0)
		return -EINVAL;
	const char *step = "serving server commands";
	if (c->dead)
		return fail(c, -ENOTCONN, step, "connection already broken");
	int r0 = settle(c, step);
	if (r0)
		return r0;
	int fd = c->twin >= 0 ? c->twin : c->fd;
	int done = 0;
	c->served = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = precopy__sys_poll(c->sys, &p, 1, done ? 0 : timeout_ms);
		if (r == 0 || r == -EINTR)
			return done;
		if (r < 0)
			return broken(c, fail(c, r, step, "poll: %s", errname(-r)));
		struct wait w = { 0 };
		size_t n;
		if ((r = recv_msg(c, &w, fd, &n, step)))
			return broken(c, r);
		if ((precopy__vu_get32(c->rx + 8) & PRECOPY__VU_F_TYPE_MASK) != PRECOPY__VU_F_COMMAND) {
			drop_rxfds(c);
			return broken(c, fail(c, -EPROTO, step, "a %s reply with no request in flight",
					      cmd_name(precopy__vu_get16(c->rx + 2))));
		}
		if ((r = answer(c, &w, fd, n, step)))
			return broken(c, r);
		done++;
	}
}

/* ---- device operations --------------------------------------------------------------- */

int precopy_vfio_user_device_info(struct precopy_vfio_user *c, uint32_t *flags, uint32_t *num_regions,
				  uint32_t *num_irqs)
{
	if (!c)
		return -EINVAL;
	const char *step = "DEVICE_GET_INFO";
	int l = precopy__vu_enc_device_info(c->tx, c->txcap, next_id(c));
	const uint8_t *p;
	size_t pl;
	int r = ask(c, l, step, &p, &pl);
	if (r)
		return r;
	struct precopy__vu_device_info di;
	const char *why = NULL;
	if (precopy__vu_dec_device_info(p, pl, &di, &why))
		return bad_payload(c, step, why);
	if (flags)
		*flags = di.flags;
	if (num_regions)
		*num_regions = di.num_regions;
	if (num_irqs)
		*num_irqs = di.num_irqs;
	return 0;
}

int precopy_vfio_user_region_info(struct precopy_vfio_user *c, uint32_t index,
				  struct precopy_vfio_user_region *out, int *fd)
{
	if (fd)
		*fd = -1;
	if (!c || !out)
		return -EINVAL;
	char step[64];
	snprintf(step, sizeof(step), "DEVICE_GET_REGION_INFO region %u", index);
	/* the fixed part and room for a capability list */
	uint32_t argsz = 4096;
	int l = precopy__vu_enc_region_info(c->tx, c->txcap, next_id(c), index, argsz);
	const uint8_t *p;
	size_t pl;
	int r = transact(c, l, NULL, 0, step, &p, &pl);
	if (r)
		return r;
	struct precopy__vu_region_info ri;
	const char *why = NULL;
	if (precopy__vu_dec_region_info(p, pl, index, argsz, &ri, &why))
		return bad_payload(c, step, why);
	if (c->nrxfds > 1) {
		drop_rxfds(c);
		return broken(c, fail(c, -EPROTO, step, "bad reply: more than one fd"));
	}
	int got = c->nrxfds ? c->rxfds[0] : -1;
	c->nrxfds = 0;
	if (fd)
		*fd = got;
	else if (got >= 0)
		precopy__sys_close(c->sys, got);
	*out = (struct precopy_vfio_user_region){ .flags = ri.flags, .cap_offset = ri.cap_offset,
						  .size = ri.size, .offset = ri.offset };
	return 0;
}

int precopy_vfio_user_irq_info(struct precopy_vfio_user *c, uint32_t index, uint32_t *flags, uint32_t *count)
{
	if (!c)
		return -EINVAL;
	char step[64];
	snprintf(step, sizeof(step), "DEVICE_GET_IRQ_INFO index %u", index);
	int l = precopy__vu_enc_irq_info(c->tx, c->txcap, next_id(c), index);
	const uint8_t *p;
	size_t pl;
	int r = ask(c, l, step, &p, &pl);
	if (r)
		return r;
	struct precopy__vu_irq_info ii;
	const char *why = NULL;
	if (precopy__vu_dec_irq_info(p, pl, index, &ii, &why))
		return bad_payload(c, step, why);
	if (flags)
		*flags = ii.flags;
	if (count)
		*count = ii.count;
	return 0;
}

int precopy_vfio_user_set_irqs(struct precopy_vfio_user *c, uint32_t index, uint32_t flags, uint32_t start,
			       uint32_t count, const int *fds)
{
	if (!c)
		return -EINVAL;
	char step[96];
	snprintf(step, sizeof(step), "DEVICE_SET_IRQS index %u start %u count %u", index, start, count);
	uint32_t data = flags & (PRECOPY__VU_IRQ_DATA_NONE | PRECOPY__VU_IRQ_DATA_BOOL | PRECOPY__VU_IRQ_DATA_EVENTFD);
	if (data == PRECOPY__VU_IRQ_DATA_BOOL || (fds && data != PRECOPY__VU_IRQ_DATA_EVENTFD))
		return fail(c, -EINVAL, step, "flags 0x%x: DATA_BOOL, or fds without DATA_EVENTFD", flags);
	if (fds)
		for (uint32_t i = 0; i < count; i++)
			if (fds[i] < 0)
				return fail(c, -EINVAL, step, "fds[%u] is %d", i, fds[i]);
	uint32_t per = c->caps.max_msg_fds < MAX_FDS ? (uint32_t)c->caps.max_msg_fds : MAX_FDS;
	if (fds && per == 0)
		return fail(c, -EINVAL, step, "the server takes no fds (max_msg_fds 0)");
	uint32_t done = 0;
	do {
		uint32_t n = fds && count - done > per ? per : count - done;
		int l = precopy__vu_enc_set_irqs(c->tx, c->txcap, next_id(c), flags, index, start + done, n, NULL);
		if (l == -EINVAL)
			return fail(c, l, step, "flags 0x%x: one DATA_ and one ACTION_ bit needed", flags);
		const uint8_t *p;
		size_t pl;
		int r = transact(c, l, fds ? fds + done : NULL, fds ? (int)n : 0, step, &p, &pl);
		if (r)
			return r;
		drop_rxfds(c);
		const char *why = NULL;
		if (precopy__vu_dec_empty(p, pl, &why))
			return bad_payload(c, step, why);
		done += n;
	} while (done < count);
	return 0;
}

static int region_access(struct precopy_vfio_user *c, int write, uint32_t index, uint64_t offset, void *buf,
			 size_t len)
{
	if (!c || (len && !buf) || offset + len < offset)
		return -EINVAL;
	size_t done = 0;
	while (done < len) {
		uint32_t n = len - done > c->msg_bytes ? c->msg_bytes : (uint32_t)(len - done);
		uint64_t off = offset + done;
		char step[96];
		snprintf(step, sizeof(step), "%s region %u offset 0x%llx", write ? "REGION_WRITE" : "REGION_READ",
			 index, (unsigned long long)off);
		uint16_t id = next_id(c);
		int l = write ? precopy__vu_enc_region_write(c->tx, c->txcap, id, index, off, (uint8_t *)buf + done, n)
			      : precopy__vu_enc_region_read(c->tx, c->txcap, id, index, off, n);
		const uint8_t *p;
		size_t pl;
		int r = ask(c, l, step, &p, &pl);
		if (r)
			return r;
		const char *why = NULL;
		if (write) {
			if (precopy__vu_dec_region_write(p, pl, index, off, n, &why))
				return bad_payload(c, step, why);
		} else {
			const uint8_t *data;
			if (precopy__vu_dec_region_read(p, pl, index, off, n, &data, &why))
				return bad_payload(c, step, why);
			memcpy((uint8_t *)buf + done, data, n);
		}
		done += n;
	}
	return 0;
}

int precopy_vfio_user_region_read(struct precopy_vfio_user *c, uint32_t index, uint64_t offset, void *buf,
				  size_t len)
{
	return region_access(c, 0, index, offset, buf, len);
}

int precopy_vfio_user_region_write(struct precopy_vfio_user *c, uint32_t index, uint64_t offset,
				   const void *buf, size_t len)
{
	return region_access(c, 1, index, offset, (void *)buf, len);
}

int precopy_vfio_user_dma_map(struct precopy_vfio_user *c, uint64_t iova, uint64_t size, void *host, int fd,
			      uint64_t fd_offset, uint32_t prot)
{
	if (!c)
		return -EINVAL;
	char step[96];
	snprintf(step, sizeof(step), "DMA_MAP 0x%llx+0x%llx", (unsigned long long)iova, (unsigned long long)size);
	if (size == 0 || iova + size < iova || prot == 0 ||
	    (prot & ~(PRECOPY_VFIO_USER_DMA_READ | PRECOPY_VFIO_USER_DMA_WRITE)))
		return fail(c, -EINVAL, step, "empty or wrapping range, or bad prot 0x%x", prot);
	if (fd >= 0 && c->caps.max_msg_fds < 1)
		return fail(c, -EINVAL, step, "the server takes no fds (max_msg_fds 0): map without one");
	for (size_t i = 0; i < c->nmaps; i++)
		if (iova < c->maps[i].iova + c->maps[i].size && c->maps[i].iova < iova + size)
			return fail(c, -EEXIST, step, "overlaps the mapping at 0x%llx",
				    (unsigned long long)c->maps[i].iova);
	if (c->nmaps == c->capmaps) {
		size_t cap = c->capmaps ? 2 * c->capmaps : 8;
		struct vu_map *m = realloc(c->maps, cap * sizeof(*m));
		if (!m)
			return fail(c, -ENOMEM, step, "no memory");
		c->maps = m;
		c->capmaps = cap;
	}
	uint64_t pages = (size + c->page - 1) >> c->page_shift;
	size_t words = (size_t)((pages + 63) / 64);
	uint64_t *dirty = calloc(words, sizeof(uint64_t));
	if (!dirty)
		return fail(c, -ENOMEM, step, "no memory for a dirty log of %zu words", words);
	int l = precopy__vu_enc_dma_map(c->tx, c->txcap, next_id(c), prot, fd >= 0 ? fd_offset : 0, iova, size);
	const uint8_t *p;
	size_t pl;
	int r = transact(c, l, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0, step, &p, &pl);
	if (!r) {
		drop_rxfds(c);
		const char *why = NULL;
		if (precopy__vu_dec_empty(p, pl, &why))
			r = bad_payload(c, step, why);
	}
	if (r) {
		free(dirty);
		return r;
	}
	c->maps[c->nmaps++] = (struct vu_map){ .iova = iova, .size = size, .host = host, .prot = prot,
					       .dirty = dirty, .words = words };
	return 0;
}

int precopy_vfio_user_dma_unmap(struct precopy_vfio_user *c, uint64_t iova, uint64_t size)
{
	if (!c)
		return -EINVAL;
	char step[96];
	snprintf(step, sizeof(step), "DMA_UNMAP 0x%llx+0x%llx", (unsigned long long)iova,
		 (unsigned long long)size);
	size_t i;
	for (i = 0; i < c->nmaps; i++)
		if (c->maps[i].iova == iova && c->maps[i].size == size)
			break;
	if (i == c->nmaps)
		return fail(c, -ENOENT, step, "no such mapping");
	int l = precopy__vu_enc_dma_unmap(c->tx, c->txcap, next_id(c), iova, size);
	const uint8_t *p;
	size_t pl;
	int r = ask(c, l, step, &p, &pl);
	if (r)
		return r;
	const char *why = NULL;
	if (precopy__vu_dec_dma_unmap(p, pl, iova, size, &why))
		return bad_payload(c, step, why);
	free(c->maps[i].dirty);
	c->maps[i] = c->maps[--c->nmaps];
	return 0;
}

int precopy_vfio_user_dma_dirty(struct precopy_vfio_user *c, uint64_t iova, uint64_t length, uint64_t *bitmap,
				size_t words, int clear)
{
	if (!c || !bitmap || length == 0 || (iova | length) & (c->page - 1) || iova + length < iova)
		return -EINVAL;
	struct vu_map *m = find_map(c, iova, length);
	if (!m)
		return -ENOENT;
	uint64_t pages = length >> c->page_shift;
	if ((pages + 63) / 64 > words)
		return -ERANGE;
	uint64_t base = (iova - m->iova) >> c->page_shift;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t s = base + i;
		uint64_t bit = 1ull << (s % 64);
		if (m->dirty[s / 64] & bit) {
			bitmap[i / 64] |= 1ull << (i % 64);
			if (clear)
				m->dirty[s / 64] &= ~bit;
		}
	}
	return 0;
}

/* DEVICE_FEATURE with flags; data/len the request's feature data; the
 * reply's feature data in *d and *dl. */
static int feature(struct precopy_vfio_user *c, const char *step, uint32_t flags, uint32_t argsz,
		   const void *data, size_t len, const uint8_t **d, size_t *dl)
{
	int l = precopy__vu_enc_feature(c->tx, c->txcap, next_id(c), flags, argsz, data, len);
	const uint8_t *p;
	size_t pl;
	int r = ask(c, l, step, &p, &pl);
	if (r)
		return r;
	const char *why = NULL;
	if (precopy__vu_dec_feature(p, pl, flags, d, dl, &why))
		return bad_payload(c, step, why);
	return 0;
}

int precopy_vfio_user_migration_flags(struct precopy_vfio_user *c, uint64_t *flags)
{
	if (!c || !flags)
		return -EINVAL;
	const char *step = "DEVICE_FEATURE MIGRATION";
	const uint8_t *d;
	size_t dl;
	int r = feature(c, step, PRECOPY__VU_FEATURE_GET | PRECOPY__VU_FEAT_MIGRATION, 16, NULL, 0, &d, &dl);
	if (r)
		return r;
	const char *why = NULL;
	if (precopy__vu_dec_migration(d, dl, flags, &why))
		return bad_payload(c, step, why);
	return 0;
}

static const char *state_name(uint32_t s)
{
	static const char *const n[] = { "ERROR", "STOP", "RUNNING", "STOP_COPY",
					 "RESUMING", "RUNNING_P2P", "PRE_COPY", "PRE_COPY_P2P" };
	return s < 8 ? n[s] : "?";
}

int precopy_vfio_user_get_state(struct precopy_vfio_user *c, uint32_t *state)
{
	if (!c || !state)
		return -EINVAL;
	const char *step = "DEVICE_FEATURE MIG_DEVICE_STATE get";
	const uint8_t *d;
	size_t dl;
	int r = feature(c, step, PRECOPY__VU_FEATURE_GET | PRECOPY__VU_FEAT_MIG_DEVICE_STATE, 16, NULL, 0, &d,
			&dl);
	if (r)
		return r;
	const char *why = NULL;
	if (precopy__vu_dec_mig_state(d, dl, state, &why))
		return bad_payload(c, step, why);
	return 0;
}

int precopy_vfio_user_set_state(struct precopy_vfio_user *c, uint32_t state)
{
	if (!c)
		return -EINVAL;
	char step[80];
	snprintf(step, sizeof(step), "DEVICE_FEATURE MIG_DEVICE_STATE set %s", state_name(state));
	if (state == 0 || state > 7)
		return fail(c, -EINVAL, step, "not a state one can ask for");
	uint8_t data[8];
	precopy__vu_put32(data, state);
	precopy__vu_put32(data + 4, 0);
	const uint8_t *d;
	size_t dl;
	int r = feature(c, step, PRECOPY__VU_FEATURE_SET | PRECOPY__VU_FEAT_MIG_DEVICE_STATE, 16, data, 8, &d,
			&dl);
	if (r)
		return r;
	uint32_t now;
	const char *why = NULL;
	if (precopy__vu_dec_mig_state(d, dl, &now, &why))
		return bad_payload(c, step, why);
	if (now != state)
		return broken(c, fail(c, -EPROTO, step, "bad reply: the device says %s", state_name(now)));
	return 0;
}

/* The payload of a MIG_DATA_READ reply: its data into buf. */
static ssize_t take_read(struct precopy_vfio_user *c, const uint8_t *p, size_t pl, void *buf)
{
	const uint8_t *data;
	uint32_t got;
	const char *why = NULL;
	if (precopy__vu_dec_mig_data_read(p, pl, c->pend_asked, &data, &got, &why))
		return bad_payload(c, "MIG_DATA_READ", why);
	memcpy(buf, data, got);
	return (ssize_t)got;
}

ssize_t precopy_vfio_user_mig_read(struct precopy_vfio_user *c, void *buf, size_t len)
{
	if (!c || (len && !buf))
		return -EINVAL;
	if (len == 0)
		return 0;
	int r = precopy__vu_read_send(c, len);
	if (r)
		return r;
	const uint8_t *p;
	size_t pl;
	r = recv_reply(c, 1, "MIG_DATA_READ", &p, &pl);
	if (r)
		return r;
	drop_rxfds(c);
	return take_read(c, p, pl, buf);
}

int precopy__vu_read_send(struct precopy_vfio_user *c, size_t len)
{
	if (!c || len == 0)
		return -EINVAL;
	if (c->pend)
		return fail(c, -EBUSY, "MIG_DATA_READ", "a request is already in flight");
	uint32_t n = len > c->msg_bytes ? c->msg_bytes : (uint32_t)len;
	int r = send_req(c, precopy__vu_enc_mig_data_read(c->tx, c->txcap, next_id(c), n), NULL, 0, "MIG_DATA_READ");
	if (r == 0)
		c->pend_asked = n;
	return r;
}

ssize_t precopy__vu_read_reap(struct precopy_vfio_user *c, void *buf)
{
	if (!c || !buf)
		return -EINVAL;
	if (c->dead)
		return fail(c, -ENOTCONN, "MIG_DATA_READ", "connection already broken");
	if (!c->pend || c->pend_cmd != PRECOPY__VU_MIG_DATA_READ)
		return fail(c, -EINVAL, "MIG_DATA_READ", "no read in flight");
	const uint8_t *p;
	size_t pl;
	int r = recv_reply(c, 0, "MIG_DATA_READ", &p, &pl);
	if (r)
		return r;
	drop_rxfds(c);
	return take_read(c, p, pl, buf);
}

int precopy__vu_poll_fds(const struct precopy_vfio_user *c, int fds[2])
{
	fds[0] = c->fd;
	fds[1] = c->twin;
	return c->twin >= 0 ? 2 : 1;
}

int precopy_vfio_user_mig_write(struct precopy_vfio_user *c, const void *buf, size_t len)
{
	if (!c || (len && !buf))
		return -EINVAL;
	size_t done = 0;
	while (done < len) {
		uint32_t n = len - done > c->msg_bytes ? c->msg_bytes : (uint32_t)(len - done);
		char step[64];
		snprintf(step, sizeof(step), "MIG_DATA_WRITE at byte %zu", done);
		int l = precopy__vu_enc_mig_data_write(c->tx, c->txcap, next_id(c), (const uint8_t *)buf + done, n);
		const uint8_t *p;
		size_t pl;
		int r = ask(c, l, step, &p, &pl);
		if (r)
			return r;
		const char *why = NULL;
		if (precopy__vu_dec_empty(p, pl, &why))
			return bad_payload(c, step, why);
		done += n;
	}
	return 0;
}

int precopy_vfio_user_dma_logging_start(struct precopy_vfio_user *c, uint64_t page_size, const uint64_t *ranges,
					uint32_t nranges, uint64_t *chosen)
{
	if (!c)
		return -EINVAL;
	char step[80];
	snprintf(step, sizeof(step), "DEVICE_FEATURE DMA_LOGGING_START page size %llu",
		 (unsigned long long)page_size);
	if (page_size == 0 || (page_size & (page_size - 1)) || (nranges && !ranges))
		return fail(c, -EINVAL, step, "page size not a power of two, or ranges NULL");
	size_t need = PRECOPY__VU_LOG_START_SIZE + (size_t)nranges * 16;
	if (need + PRECOPY__VU_FEATURE_SIZE + PRECOPY__VU_HDR_SIZE > c->txcap)
		return fail(c, -E2BIG, step, "%u ranges do not fit one message", nranges);
	uint8_t *data = malloc(need);
	if (!data)
		return fail(c, -ENOMEM, step, "no memory");
	int dlen = precopy__vu_enc_log_start_data(data, need, page_size, ranges, nranges);
	const uint8_t *d;
	size_t dl;
	int r = dlen < 0 ? fail(c, dlen, step, "cannot encode")
			 : feature(c, step, PRECOPY__VU_FEATURE_SET | PRECOPY__VU_FEAT_DMA_LOGGING_START,
				   (uint32_t)(PRECOPY__VU_FEATURE_SIZE + need), data, (size_t)dlen, &d, &dl);
	free(data);
	if (r)
		return r;
	uint64_t ps = page_size;
	const char *why = NULL;
	/* a server may answer the SET with the request echoed (the
	 * specification) or with no data at all */
	if (dl && precopy__vu_dec_log_start(d, dl, &ps, &why))
		return bad_payload(c, step, why);
	c->log_page = ps;
	if (chosen)
		*chosen = ps;
	return 0;
}

int precopy_vfio_user_dma_logging_stop(struct precopy_vfio_user *c)
{
	if (!c)
		return -EINVAL;
	const uint8_t *d;
	size_t dl;
	int r = feature(c, "DEVICE_FEATURE DMA_LOGGING_STOP",
			PRECOPY__VU_FEATURE_SET | PRECOPY__VU_FEAT_DMA_LOGGING_STOP, PRECOPY__VU_FEATURE_SIZE, NULL,
			0, &d, &dl);
	if (!r)
		c->log_page = 0;
	return r;
}

static void set_range(uint64_t *bitmap, uint64_t pages)
{
	for (uint64_t i = 0; i < pages; i++)
		bitmap[i / 64] |= 1ull << (i % 64);
}

int precopy_vfio_user_dma_logging_report(struct precopy_vfio_user *c, uint64_t iova, uint64_t length,
					 uint64_t page_size, uint64_t *bitmap, size_t words)
{
	if (!c || !bitmap)
		return -EINVAL;
	char step[112];
	snprintf(step, sizeof(step), "DEVICE_FEATURE DMA_LOGGING_REPORT 0x%llx+0x%llx page size %llu",
		 (unsigned long long)iova, (unsigned long long)length, (unsigned long long)page_size);
	if (length == 0 || page_size == 0 || (page_size & (page_size - 1)) || iova + length < iova)
		return fail(c, -EINVAL, step, "empty or wrapping range, or page size not a power of two");
	/* the shapes libvfio-user answers correctly (docs/vfio-user.md):
	 * START's page size (another one hangs it or misplaces bits), from a
	 * mapping's start and inside it (else an error, or across two
	 * mappings an empty success), the whole mapping or whole 64-page
	 * words (a shorter tail clears up to 63 pages past it unreported) */
	if (c->log_page && page_size != c->log_page)
		return fail(c, -EINVAL, step, "page size differs from DMA_LOGGING_START's %llu",
			    (unsigned long long)c->log_page);
	struct vu_map *m = NULL;
	for (size_t i = 0; i < c->nmaps; i++)
		if (c->maps[i].iova == iova)
			m = &c->maps[i];
	if (!m || length > m->size)
		return fail(c, -EINVAL, step, "the range must start at a DMA mapping's start and stay inside it");
	if (length != m->size && length % (64 * page_size))
		return fail(c, -EINVAL, step, "a partial mapping must span whole 64-page words");
	uint64_t pages = length / page_size + (length % page_size != 0);
	uint64_t bytes = (pages + 63) / 64 * 8;
	if ((pages + 63) / 64 > words)
		return fail(c, -ERANGE, step, "bitmap of %zu words, %llu needed", words,
			    (unsigned long long)((pages + 63) / 64));
	uint64_t reply = PRECOPY__VU_HDR_SIZE + PRECOPY__VU_FEATURE_SIZE + PRECOPY__VU_REPORT_SIZE + bytes;
	if (reply > c->max_reply)
		return fail(c, -E2BIG, step, "a %llu-byte report exceeds max_reply_bytes %u",
			    (unsigned long long)reply, c->max_reply);
	uint8_t data[PRECOPY__VU_REPORT_SIZE];
	precopy__vu_enc_report_data(data, sizeof(data), iova, length, page_size);
	const uint8_t *d;
	size_t dl;
	int r = feature(c, step, PRECOPY__VU_FEATURE_GET | PRECOPY__VU_FEAT_DMA_LOGGING_REPORT,
			(uint32_t)(reply - PRECOPY__VU_HDR_SIZE), data, sizeof(data), &d, &dl);
	if (r)
		return r;
	const uint8_t *bm;
	size_t bl;
	const char *why = NULL;
	if (precopy__vu_dec_report(d, dl, iova, length, page_size, &bm, &bl, &why)) {
		/* framing was sound: keep the connection, lose no page */
		set_range(bitmap, pages);
		return fail(c, -EPROTO, step, "bad reply: %s (every page of the range taken as dirty)", why);
	}
	for (size_t w = 0; w < bl / 8; w++) {
		uint64_t v = precopy__vu_get64(bm + 8 * w);
		if (w == bl / 8 - 1 && pages % 64)
			v &= (1ull << (pages % 64)) - 1;
		bitmap[w] |= v;
	}
	return 0;
}

int precopy_vfio_user_reset(struct precopy_vfio_user *c)
{
	if (!c)
		return -EINVAL;
	const char *step = "DEVICE_RESET";
	int l = precopy__vu_enc_reset(c->tx, c->txcap, next_id(c));
	const uint8_t *p;
	size_t pl;
	int r = ask(c, l, step, &p, &pl);
	if (r)
		return r;
	const char *why = NULL;
	if (precopy__vu_dec_empty(p, pl, &why))
		return bad_payload(c, step, why);
	return 0;
}
