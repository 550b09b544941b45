/* SPDX-License-Identifier: MIT */
/* vmm/net.c — precopy-vmm's connection: TCP set-up with bounded waits, the
 * framing of docs/vmm.md, and the token bucket that caps everything sent
 * (refilled continuously at the cap, holding at most 100 ms of it). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm.h"

#define OBUF_CAP (256u * 1024)
#define IBUF_CAP (2u * 1024 * 1024)
#define BUCKET_NS 100000000ull /* the bucket holds 100 ms of the cap */

static int parse_spec(const char *spec, char *host, size_t hl, char *port, size_t pl)
{
	const char *h, *colon;

	if (strncmp(spec, "tcp:", 4) != 0) {
		vmm_err("%s: only tcp:HOST:PORT is supported", spec);
		return -EINVAL;
	}
	h = spec + 4;
	colon = strrchr(h, ':');
	if (!colon || colon == h || !colon[1] || (size_t)(colon - h) >= hl || strlen(colon + 1) >= pl) {
		vmm_err("%s: expected tcp:HOST:PORT", spec);
		return -EINVAL;
	}
	memcpy(host, h, (size_t)(colon - h));
	host[colon - h] = 0;
	strcpy(port, colon + 1);
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int poll_one(int fd, short ev, int ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r = poll(&p, 1, ms);

	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r;
}

/* Socket buffers: what sits in them when the source stops its vCPU must
 * still cross before the destination can resume, and the engine cannot
 * see it (its bandwidth is what the source wrote). With 4 MiB asked on
 * each side (8 MiB each once the kernel doubles it) a destination slower
 * than the cap held 85 ms of a 300 MiB/s stream at the stop; with
 * SOCK_BUF the backlog is a few ms at these rates, and a slow destination
 * slows the source's writes instead, where the engine measures it. */
#define SOCK_BUF (512 << 10)

static void tune(int fd)
{
	int one = 1, buf = SOCK_BUF;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

int vmm_connect(const char *spec, uint64_t timeout_ns)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	uint64_t end = vmm_now_ns() + timeout_ns;
	int fd = -1, r;

	if ((r = parse_spec(spec, host, sizeof(host), port, sizeof(port))) < 0)
		return r;
	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
		vmm_err("connecting to %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (;;) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			vmm_err("connecting to %s: socket: %s", spec, strerror(-r));
			break;
		}
		tune(fd);
		r = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (r < 0 && (errno == EINPROGRESS || errno == EINTR)) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			uint64_t now = vmm_now_ns();
			int ms = now < end ? (int)((end - now) / 1000000) + 1 : 1;

			r = poll_one(fd, POLLOUT, ms);
			if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
				r = 0;
			else if (r == 0)
				errno = ETIMEDOUT, r = -1;
			else
				errno = soerr ? soerr : errno, r = -1;
		}
		if (r == 0)
			break;
		r = -errno;
		close(fd);
		fd = -1;
		/* the destination may not listen yet: retry until the timeout */
		if ((r == -ECONNREFUSED || r == -ETIMEDOUT) && vmm_now_ns() + 50000000ull < end) {
			vmm_sleep_ns(50000000ull);
			continue;
		}
		vmm_err("connecting to %s: %s", spec, strerror(-r));
		break;
	}
	freeaddrinfo(ai);
	return fd >= 0 ? fd : r;
}

int vmm_listen(const char *spec)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE },
			*ai = NULL;
	int fd, r, one = 1;

	if ((r = parse_spec(spec, host, sizeof(host), port, sizeof(port))) < 0)
		return r;
	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
		vmm_err("listening on %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		r = -errno;
		vmm_err("listening on %s: %s", spec, strerror(-r));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	return fd;
}

int vmm_accept(int lfd, uint64_t timeout_ns)
{
	uint64_t end = vmm_now_ns() + timeout_ns;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd >= 0) {
			tune(fd);
			return fd;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
			int r = -errno;
			vmm_err("accepting the migration connection: %s", strerror(-r));
			return r;
		}
		if (atomic_load(&vmm_quit)) {
			vmm_err("accepting the migration connection: interrupted");
			return -EINTR;
		}
		if (vmm_now_ns() > end) {
			vmm_err("accepting the migration connection: no source within %llu s",
				(unsigned long long)(timeout_ns / 1000000000ull));
			return -ETIMEDOUT;
		}
		poll_one(lfd, POLLIN, 100);
	}
}

int vmm_conn_init(struct vmm_conn *c, int fd, uint64_t rate_Bps)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->io_timeout_ns = 10000000000ull;
	c->ocap = OBUF_CAP;
	c->icap = IBUF_CAP;
	c->obuf = malloc(c->ocap);
	c->ibuf = malloc(c->icap);
	c->rate_Bps = rate_Bps;
	c->tokens_ns = vmm_now_ns();
	if (!c->obuf || !c->ibuf) {
		vmm_err("connection buffers: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	return set_nonblock(fd);
}

void vmm_conn_free(struct vmm_conn *c)
{
	free(c->obuf);
	free(c->ibuf);
	if (c->fd >= 0)
		close(c->fd);
	c->obuf = c->ibuf = NULL;
	c->fd = -1;
}

/* Wait until `len` bytes may go under the cap. */
static void bucket_take(struct vmm_conn *c, size_t len)
{
	double cap;

	if (!c->rate_Bps)
		return;
	cap = (double)c->rate_Bps * (double)BUCKET_NS / 1e9;
	for (;;) {
		uint64_t now = vmm_now_ns();
		double wait_ns;

		c->tokens += (double)(now - c->tokens_ns) * (double)c->rate_Bps / 1e9;
		c->tokens_ns = now;
		if (c->tokens > cap)
			c->tokens = cap;
		if (c->tokens >= 0) {
			c->tokens -= (double)len; /* may go negative: the next send waits */
			return;
		}
		wait_ns = -c->tokens * 1e9 / (double)c->rate_Bps;
		if (wait_ns > 2000000)
			wait_ns = 2000000;
		if (c->idle)
			c->idle(c->idle_ctx);
		vmm_sleep_ns((uint64_t)wait_ns + 1);
		c->limit_wait_ns += vmm_now_ns() - now;
	}
}

static int write_out(struct vmm_conn *c, const uint8_t *p, size_t len)
{
	uint64_t last = vmm_now_ns();

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			c->sent += (uint64_t)n;
			last = vmm_now_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (vmm_now_ns() - last > c->io_timeout_ns)
			return -ETIMEDOUT;
		if (c->idle)
			c->idle(c->idle_ctx);
		{
			uint64_t t0 = vmm_now_ns();
			if (poll_one(c->fd, POLLOUT, 10) < 0)
				return -errno;
			c->full_wait_ns += vmm_now_ns() - t0;
		}
	}
	return 0;
}

int vmm_flush(struct vmm_conn *c)
{
	size_t off = 0;
	int r = 0;

	while (off < c->olen) {
		size_t n = c->olen - off < 65536 ? c->olen - off : 65536;

		bucket_take(c, n);
		if ((r = write_out(c, c->obuf + off, n)) < 0)
			break;
		off += n;
	}
	c->olen = 0;
	return r;
}

static void put_hdr(uint8_t *b, uint16_t kind, uint32_t len, uint64_t arg)
{
	uint16_t m = VMM_FRAME_MAGIC;

	memcpy(b, &m, 2);
	memcpy(b + 2, &kind, 2);
	memcpy(b + 4, &len, 4);
	memcpy(b + 8, &arg, 8);
}

int vmm_send(struct vmm_conn *c, uint16_t kind, uint64_t arg, const void *payload, uint32_t len)
{
	const uint8_t *p = payload;
	int r;

	if (c->olen + VMM_FRAME_HDR > c->ocap && (r = vmm_flush(c)) < 0)
		return r;
	put_hdr(c->obuf + c->olen, kind, len, arg);
	c->olen += VMM_FRAME_HDR;
	while (len) {
		size_t n = c->ocap - c->olen < len ? c->ocap - c->olen : len;

		if (!n) {
			if ((r = vmm_flush(c)) < 0)
				return r;
			continue;
		}
		memcpy(c->obuf + c->olen, p, n);
		c->olen += n;
		p += n;
		len -= (uint32_t)n;
	}
	if (c->olen >= c->ocap - VMM_FRAME_HDR)
		return vmm_flush(c);
	return 0;
}

static int frame_ok(uint16_t kind, uint32_t len, char *why, size_t wl)
{
	switch (kind) {
	case VMM_F_HELLO: if (len == sizeof(struct vmm_hello)) return 1; break;
	case VMM_F_PAGE: if (len == VMM_PAGE) return 1; break;
	case VMM_F_ZERO: case VMM_F_STOP: case VMM_F_RESUMED: case VMM_F_DIGEST: if (len == 0) return 1; break;
	case VMM_F_STREAM: case VMM_F_RP: if (len > 0 && len <= VMM_STREAM_MAX) return 1; break;
	case VMM_F_DONE: if (len == sizeof(struct vmm_done)) return 1; break;
	case VMM_F_ABORT: if (len <= 4096) return 1; break;
	default:
		snprintf(why, wl, "unknown frame kind %u", kind);
		return 0;
	}
	snprintf(why, wl, "frame kind %u with a %u-byte payload", kind, len);
	return 0;
}

int vmm_recv(struct vmm_conn *c, struct vmm_frame *f, uint64_t timeout_ns, char *why, size_t wl)
{
	uint64_t start = vmm_now_ns(), last = start;

	for (;;) {
		size_t have = c->itail - c->ihead;

		if (have >= VMM_FRAME_HDR) {
			uint8_t *h = c->ibuf + c->ihead;
			uint16_t magic, kind;
			uint32_t len;

			memcpy(&magic, h, 2);
			memcpy(&kind, h + 2, 2);
			memcpy(&len, h + 4, 4);
			if (magic != VMM_FRAME_MAGIC) {
				snprintf(why, wl, "bad frame magic %#06x at byte %llu (not a precopy-vmm migration)",
					 magic, (unsigned long long)(c->received - have));
				return -EPROTO;
			}
			if (!frame_ok(kind, len, why, wl))
				return -EPROTO;
			if (have >= VMM_FRAME_HDR + len) {
				f->kind = kind;
				f->len = len;
				memcpy(&f->arg, h + 8, 8);
				f->payload = h + VMM_FRAME_HDR;
				c->ihead += VMM_FRAME_HDR + len;
				return 1;
			}
		}
		if (c->eof) {
			snprintf(why, wl, have ? "the peer closed the connection inside a frame"
					       : "the peer closed the connection");
			return -EPIPE;
		}
		/* room for the rest of the frame */
		if (c->ihead && (c->icap - c->itail < VMM_STREAM_MAX + VMM_FRAME_HDR)) {
			memmove(c->ibuf, c->ibuf + c->ihead, have);
			c->ihead = 0;
			c->itail = have;
		}
		ssize_t n = recv(c->fd, c->ibuf + c->itail, c->icap - c->itail, MSG_DONTWAIT);
		if (n > 0) {
			c->itail += (size_t)n;
			c->received += (uint64_t)n;
			last = vmm_now_ns();
			continue;
		}
		if (n == 0) {
			c->eof = 1;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			int r = -errno;
			snprintf(why, wl, "%s", strerror(-r));
			return r == -ECONNRESET ? -EPIPE : r;
		}
		uint64_t now = vmm_now_ns();
		if (now - start >= timeout_ns) {
			if (!timeout_ns || now - last < c->io_timeout_ns || have == 0)
				return 0;
			snprintf(why, wl, "no byte for %llu s inside a frame",
				 (unsigned long long)(c->io_timeout_ns / 1000000000ull));
			return -ETIMEDOUT;
		}
		if (atomic_load(&vmm_quit)) {
			snprintf(why, wl, "interrupted");
			return -EINTR;
		}
		uint64_t left = timeout_ns - (now - start);
		poll_one(c->fd, POLLIN, left > 10000000 ? 10 : (int)(left / 1000000) + 1);
	}
}
