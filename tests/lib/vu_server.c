/* SPDX-License-Identifier: MIT */
/* tests/lib/vu_server.c — the tests' vfio-user server (vu_server.h). It
 * is the peer the library talks to, so it calls the kernel directly. */
#include <errno.h>
#include <stdatomic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vu_server.h"

enum { ERROR = 0, STOP = 1, RUNNING = 2, STOP_COPY = 3, RESUMING = 4, PRE_COPY = 6 };
enum { C_VERSION = 1, C_DMA_MAP, C_DMA_UNMAP, C_INFO, C_REGION_INFO, C_IRQ_INFO = 7, C_SET_IRQS,
       C_REGION_READ = 9, C_REGION_WRITE,
       C_DMA_READ, C_DMA_WRITE, C_RESET, C_FEATURE = 16, C_MIG_READ, C_MIG_WRITE };

#define BAR_SIZE 4096u
#define BAR_STATE 256u
#define HDR 16u
#define MAXMAP 16
#define LOGPAGE_MAX (1u << 30)
#define PAGE 4096u
/* BAR0 registers of the device's own DMA (vu_server.h) */
#define R_DMA_MAGIC 0x80u
#define R_DMA_SEQ 0x88u
#define R_DMA_IOVA 0x90u
#define R_DMA_LEN 0x98u

struct map {
	uint64_t iova, size;
	uint8_t *mem; /* the client's fd mapped, or NULL (access by message) */
	uint64_t *log;
};

struct srv {
	int fd, cmdfd; /* cmdfd: where our own commands go (the twin or fd) */
	const struct vu_server_cfg *cfg;
	uint64_t max_xfer, client_xfer;
	uint8_t bar[BAR_SIZE];
	uint8_t bar_snap[BAR_STATE];
	uint32_t state;
	uint64_t cursor;     /* saving: stream bytes handed out */
	uint8_t *in;         /* resuming: stream bytes taken */
	uint64_t in_len, in_cap;
	struct map maps[MAXMAP];
	int nmaps;
	uint64_t log_page;   /* 0: logging off */
	uint16_t my_id;
	unsigned mig_reads, region_reads;
	uint8_t *rx;
	size_t rxcap;
	int irq[8];          /* eventfds of IRQ index 0 (INTx, 1) and 2 (MSI-X, 8), -1: none */
	/* the device's own DMA and what the report says */
	uint64_t next_tick_ns, written, checked, bad, state_bytes;
	int loaded, resumed, state_saved;
};

uint8_t vu_pattern(uint64_t seed, uint64_t i)
{
	uint64_t z = seed + (i / 8 + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (uint8_t)(z >> (8 * (i % 8)));
}

uint64_t vu_dma_word(uint64_t k, unsigned i)
{
	uint64_t z;

	if (i == 0)
		return k;
	z = k * 0x9e3779b97f4a7c15ull + i;
	z = (z ^ (z >> 29)) * 0xbf58476d1ce4e5b9ull;
	return z ^ (z >> 32);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Write a whole file (best effort: a test finds it missing or short). */
static void put_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "vu_server: %s: %s\n", path, strerror(errno));
		return;
	}
	if (len && fwrite(buf, 1, len, f) != len)
		fprintf(stderr, "vu_server: writing %s failed\n", path);
	fclose(f);
}

static int die(const char *what)
{
	fprintf(stderr, "vu_server: %s\n", what);
	return 2;
}

static void p16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void p32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void p64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t g16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t g32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t g64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int send_all(int fd, const void *b, size_t n, int pass_fd)
{
	const uint8_t *p = b;
	while (n) {
		struct iovec iov = { (void *)p, n };
		union {
			char c[CMSG_SPACE(sizeof(int))];
			struct cmsghdr a;
		} u;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (pass_fd >= 0) {
			memset(&u, 0, sizeof(u));
			m.msg_control = u.c;
			m.msg_controllen = sizeof(u.c);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
		}
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		pass_fd = -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

struct fdset {
	int fd[8];
	int n;
};

/* Read exactly n bytes; the fds that come along go to *got (up to 8, the
 * others closed; got NULL: all closed). 0, or -1 at end of stream /
 * error. */
static int recv_all(int fd, void *b, size_t n, struct fdset *got)
{
	uint8_t *p = b;
	while (n) {
		struct iovec iov = { p, n };
		union {
			char c[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr a;
		} u;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c,
				    .msg_controllen = sizeof(u.c) };
		ssize_t r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;
				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (got && got->n < 8)
					got->fd[got->n++] = f;
				else
					close(f);
			}
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void hdr(uint8_t *b, uint16_t id, uint16_t cmd, uint32_t size, uint32_t flags, uint32_t err)
{
	p16(b, id);
	p16(b + 2, cmd);
	p32(b + 4, size);
	p32(b + 8, flags);
	p32(b + 12, err);
}

static int reply(struct srv *s, uint16_t id, uint16_t cmd, const void *pl, size_t n)
{
	uint8_t *b = malloc(HDR + n);
	if (!b)
		return -1;
	hdr(b, id, cmd, (uint32_t)(HDR + n), 1, 0);
	if (n)
		memcpy(b + HDR, pl, n);
	int r = send_all(s->fd, b, HDR + n, -1);
	free(b);
	return r;
}

static int reply_err(struct srv *s, uint16_t id, uint16_t cmd, uint32_t e)
{
	uint8_t b[HDR];
	hdr(b, id, cmd, HDR, 1 | 0x20, e);
	return send_all(s->fd, b, HDR, -1);
}

static struct map *find(struct srv *s, uint64_t a, uint64_t n)
{
	for (int i = 0; i < s->nmaps; i++)
		if (a >= s->maps[i].iova && a - s->maps[i].iova <= s->maps[i].size &&
		    n <= s->maps[i].size - (a - s->maps[i].iova))
			return &s->maps[i];
	return NULL;
}

/* One command of ours (DMA_READ/WRITE) to the client, and its reply. */
static int client_cmd(struct srv *s, uint16_t cmd, uint64_t iova, uint8_t *data, uint64_t n)
{
	size_t len = HDR + 16 + (cmd == C_DMA_WRITE ? n : 0);
	uint8_t *b = malloc(len > HDR + 16 + n ? len : HDR + 16 + n);
	if (!b)
		return -1;
	uint16_t id = s->my_id++;
	hdr(b, id, cmd, (uint32_t)len, 0, 0);
	p64(b + HDR, iova);
	p64(b + HDR + 8, n);
	if (cmd == C_DMA_WRITE)
		memcpy(b + HDR + 16, data, n);
	int r = send_all(s->cmdfd, b, len, -1);
	uint8_t h[HDR];
	if (!r)
		r = recv_all(s->cmdfd, h, HDR, NULL);
	if (!r && (g16(h) != id || g16(h + 2) != cmd || (g32(h + 8) & 0xf) != 1))
		r = -1;
	if (!r && (g32(h + 8) & 0x20)) {
		free(b);
		return -(int)g32(h + 12);
	}
	size_t want = cmd == C_DMA_WRITE ? 16 : 16 + n;
	if (!r && g32(h + 4) != HDR + want)
		r = -1;
	if (!r)
		r = recv_all(s->cmdfd, b, want, NULL);
	if (!r && (g64(b) != iova || g64(b + 8) != n))
		r = -1;
	if (!r && cmd == C_DMA_READ)
		memcpy(data, b + 16, n);
	free(b);
	return r;
}

/* Device DMA started by the doorbell, in pieces of the client's limit. */
static int doorbell(struct srv *s, uint32_t go)
{
	if (go == 5) {
		/* raise IRQ number bar[0x110] (0: INTx, 1..7: MSI-X 0..6) */
		int k = s->bar[0x110];
		uint64_t one = 1;
		if (k >= 8 || s->irq[k] < 0)
			return ENOENT;
		return write(s->irq[k], &one, 8) == 8 ? 0 : EIO;
	}
	uint64_t iova = g64(s->bar + 0x100), len = g64(s->bar + 0x108);
	uint8_t val = s->bar[0x110];
	struct map *m = find(s, iova, len);
	if (!m || len == 0)
		return EFAULT;
	if (go == 2) {
		if (!m->mem)
			return EFAULT;
		memset(m->mem + (iova - m->iova), val, len);
		if (s->log_page && m->log)
			for (uint64_t p = (iova - m->iova) / s->log_page; p <= (iova - m->iova + len - 1) / s->log_page;
			     p++)
				m->log[p / 64] |= 1ull << (p % 64);
		return 0;
	}
	uint64_t sum = 0;
	uint8_t *buf = malloc(s->client_xfer);
	if (!buf)
		return ENOMEM;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < s->client_xfer ? len - done : s->client_xfer;
		int r;
		if (go == 1) {
			memset(buf, val, n);
			r = client_cmd(s, C_DMA_WRITE, iova + done, buf, n);
		} else {
			r = client_cmd(s, C_DMA_READ, iova + done, buf, n);
			for (uint64_t i = 0; i < n; i++)
				sum += buf[i];
		}
		if (r) {
			free(buf);
			return r < 0 ? -r : EIO;
		}
		done += n;
	}
	free(buf);
	if (go == 3)
		p64(s->bar + 0x118, sum);
	return 0;
}

/* ---- device state stream ---------------------------------------------------- */

static uint64_t stream_len(const struct srv *s)
{
	return 24 + s->cfg->state_bytes + BAR_STATE;
}

static uint8_t stream_byte(const struct srv *s, uint64_t o)
{
	uint8_t h[24];
	if (o < 24) {
		memcpy(h, "VUST", 4);
		p32(h + 4, 0);
		p64(h + 8, s->cfg->seed);
		p64(h + 16, s->cfg->state_bytes);
		return h[o];
	}
	o -= 24;
	if (o < s->cfg->state_bytes)
		return vu_pattern(s->cfg->seed, o);
	return s->bar_snap[o - s->cfg->state_bytes];
}

/* Pattern bytes [k, k + n) of seed into b, a word at a time where it can
 * (a device that moves its state at memory speed, not byte by byte). */
static void pattern_fill(uint64_t seed, uint64_t k, uint8_t *b, uint64_t n)
{
	uint64_t i = 0;

	while (i < n) {
		if ((k + i) % 8 == 0 && n - i >= 8) {
			uint64_t z = seed + ((k + i) / 8 + 1) * 0x9e3779b97f4a7c15ull;
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			z ^= z >> 31;
			memcpy(b + i, &z, 8); /* little endian: byte j is z >> 8j */
			i += 8;
		} else {
			b[i] = vu_pattern(seed, k + i);
			i++;
		}
	}
}

/* Stream bytes [o, o + n) into b. */
static void stream_fill(const struct srv *s, uint64_t o, uint8_t *b, uint64_t n)
{
	uint64_t i = 0, pat_end = 24 + s->cfg->state_bytes;

	while (i < n) {
		uint64_t at = o + i;

		if (at >= 24 && at < pat_end) {
			uint64_t m = pat_end - at < n - i ? pat_end - at : n - i;
			pattern_fill(s->cfg->seed, at - 24, b + i, m);
			i += m;
		} else {
			b[i] = stream_byte(s, at);
			i++;
		}
	}
}

static int stream_check(struct srv *s)
{
	if (s->in_len < 24 + BAR_STATE || memcmp(s->in, "VUST", 4))
		return EINVAL;
	uint64_t seed = g64(s->in + 8), n = g64(s->in + 16);
	if (n != s->in_len - 24 - BAR_STATE)
		return EINVAL;
	for (uint64_t i = 0; i < n; i += 65536) {
		uint8_t want[65536];
		uint64_t m = n - i < sizeof(want) ? n - i : sizeof(want);
		pattern_fill(seed, i, want, m);
		if (memcmp(s->in + 24 + i, want, m))
			return EINVAL;
	}
	memcpy(s->bar, s->in + 24 + n, BAR_STATE);
	s->loaded = 1;
	s->state_bytes = s->in_len;
	if (s->cfg->state_path)
		put_file(s->cfg->state_path, s->in, s->in_len);
	return 0;
}

/* The whole stream was handed out in STOP_COPY: keep a copy of it. */
static void stream_saved(struct srv *s)
{
	uint64_t n = stream_len(s);
	uint8_t *b;

	s->state_bytes = n;
	if (s->state_saved || !s->cfg->state_path)
		return;
	s->state_saved = 1;
	if (!(b = malloc(n))) {
		fprintf(stderr, "vu_server: no memory for the state copy\n");
		return;
	}
	stream_fill(s, 0, b, n);
	put_file(s->cfg->state_path, b, n);
	free(b);
}

/* ---- the device's own DMA ------------------------------------------------------ */

static int dma_configured(const struct srv *s)
{
	return !memcmp(s->bar + R_DMA_MAGIC, "VDMA", 4) && g64(s->bar + R_DMA_LEN) >= PAGE;
}

/* One tick: auto_pages pages through the mmap, logged when logging is on. */
static void dma_tick(struct srv *s)
{
	uint64_t iova = g64(s->bar + R_DMA_IOVA), len = g64(s->bar + R_DMA_LEN), seq = g64(s->bar + R_DMA_SEQ);
	uint64_t npages = len / PAGE;
	struct map *m = find(s, iova, npages * PAGE);

	if (!m || !m->mem)
		return;
	for (unsigned j = 0; j < s->cfg->auto_pages; j++, seq++) {
		uint64_t off = iova - m->iova + (seq % npages) * PAGE;
		uint64_t *w = (uint64_t *)(void *)(m->mem + off);

		for (unsigned i = 0; i < PAGE / 8; i++)
			w[i] = vu_dma_word(seq, i);
		if (s->log_page && m->log && !s->cfg->auto_unlogged) {
			uint64_t pg = off / s->log_page;
			m->log[pg / 64] |= 1ull << (pg % 64);
		}
		s->written++;
	}
	p64(s->bar + R_DMA_SEQ, seq);
}

/* After a resume: every page written so far holds its last seq. */
static void dma_check(struct srv *s)
{
	uint64_t iova = g64(s->bar + R_DMA_IOVA), len = g64(s->bar + R_DMA_LEN), seq = g64(s->bar + R_DMA_SEQ);
	uint64_t npages = len / PAGE;
	struct map *m = find(s, iova, npages * PAGE);

	if (!m || !m->mem) {
		s->bad = npages; /* nothing to look at: say so */
		return;
	}
	for (uint64_t p = 0; p < npages && p < seq; p++) {
		uint64_t k = p + (seq - 1 - p) / npages * npages;
		const uint64_t *w = (const uint64_t *)(const void *)(m->mem + (iova - m->iova) + p * PAGE);

		s->checked++;
		for (unsigned i = 0; i < PAGE / 8; i++)
			if (w[i] != vu_dma_word(k, i)) {
				s->bad++;
				break;
			}
	}
}

/* ---- the state machine ------------------------------------------------------- */

static int saving(uint32_t st)
{
	return st == PRE_COPY || st == STOP_COPY;
}

static int direct_arc(uint32_t a, uint32_t b)
{
	static const uint32_t arcs[][2] = { { RUNNING, STOP }, { STOP_COPY, STOP }, { RESUMING, STOP },
					    { PRE_COPY, RUNNING }, { STOP, RUNNING }, { RUNNING, PRE_COPY },
					    { STOP, STOP_COPY }, { PRE_COPY, STOP_COPY }, { STOP, RESUMING } };
	for (size_t i = 0; i < sizeof(arcs) / sizeof(arcs[0]); i++)
		if (arcs[i][0] == a && arcs[i][1] == b)
			return 1;
	return 0;
}

static int take_arc(struct srv *s, uint32_t to)
{
	uint32_t from = s->state;
	if (to == STOP_COPY)
		memcpy(s->bar_snap, s->bar, BAR_STATE);
	if (saving(to) && !saving(from))
		s->cursor = 0;
	if (to == RESUMING)
		s->in_len = 0;
	if (from == RESUMING && to == STOP) {
		int e = stream_check(s);
		if (e) {
			if (s->cfg->error_on_bad_stream)
				s->state = ERROR;
			return e;
		}
	}
	if (to == RUNNING && s->loaded && !s->resumed && dma_configured(s)) {
		s->resumed = 1;
		dma_check(s);
	}
	s->state = to;
	return 0;
}

/* Shortest path from the current state to `to`, no saving state inside. */
static int set_state(struct srv *s, uint32_t to)
{
	static const uint32_t all[] = { STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY };
	if (to == s->state)
		return 0;
	int ok = 0;
	for (size_t i = 0; i < 5; i++)
		ok |= all[i] == to;
	if (!ok)
		return EINVAL;
	/* between the saving states only PRE_COPY -> STOP_COPY exists */
	if (saving(s->state) && saving(to) && !(s->state == PRE_COPY && to == STOP_COPY))
		return EINVAL;
	uint32_t prev[8];
	int seen[8] = { 0 };
	uint32_t q[8];
	int qh = 0, qt = 0;
	q[qt++] = s->state;
	seen[s->state] = 1;
	while (qh < qt && !seen[to]) {
		uint32_t u = q[qh++];
		if (u != s->state && saving(u))
			continue; /* not an interior state */
		for (size_t i = 0; i < 5; i++) {
			uint32_t v = all[i];
			if (!seen[v] && direct_arc(u, v)) {
				seen[v] = 1;
				prev[v] = u;
				q[qt++] = v;
			}
		}
	}
	if (!seen[to])
		return EINVAL;
	uint32_t path[8];
	int n = 0;
	for (uint32_t v = to; v != s->state; v = prev[v])
		path[n++] = v;
	while (n--) {
		int e = take_arc(s, path[n]);
		if (e)
			return e;
	}
	return 0;
}

/* ---- commands ---------------------------------------------------------------------- */

static int on_version(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n < 4 || g16(p) != 0)
		return reply_err(s, id, C_VERSION, EINVAL);
	s->client_xfer = 1u << 20;
	int twin_wanted = 0;
	if (n > 4) {
		const char *j = (const char *)p + 4;
		if (j[n - 5] != '\0')
			return reply_err(s, id, C_VERSION, EINVAL);
		const char *x = strstr(j, "\"max_data_xfer_size\":");
		if (x)
			s->client_xfer = strtoull(x + 21, NULL, 10);
		twin_wanted = strstr(j, "\"supported\":true") != NULL;
	}
	if (s->client_xfer == 0)
		return die("client max_data_xfer_size 0");
	int pair[2] = { -1, -1 };
	char json[256];
	int use_twin = twin_wanted && s->cfg->twin;
	snprintf(json, sizeof(json),
		 "{\"capabilities\": {\"max_msg_fds\": %u, \"max_data_xfer_size\": %llu, "
		 "\"migration\": {\"pgsize\": 4096}%s}}",
		 s->cfg->max_fds ? s->cfg->max_fds : 8, (unsigned long long)s->max_xfer, use_twin ? ", \"twin_socket\": {\"supported\": true, \"fd_index\": 0}" : "");
	size_t jl = strlen(json) + 1;
	uint8_t b[HDR + 4 + 256];
	hdr(b, id, C_VERSION, (uint32_t)(HDR + 4 + jl), 1, 0);
	p16(b + HDR, 0);
	p16(b + HDR + 2, 2);
	memcpy(b + HDR + 4, json, jl);
	if (use_twin) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair))
			return die("socketpair");
		s->cmdfd = pair[0];
	}
	int r = send_all(s->fd, b, HDR + 4 + jl, pair[1]);
	if (pair[1] >= 0)
		close(pair[1]);
	return r;
}

static int on_feature(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n < 8)
		return reply_err(s, id, C_FEATURE, EINVAL);
	uint32_t flags = g32(p + 4), feat = flags & 0xffff;
	int get = (flags >> 16) & 1, set = (flags >> 17) & 1, probe = (flags >> 18) & 1;
	const uint8_t *d = p + 8;
	size_t dl = n - 8;
	uint8_t out[8 + 24 + 8 * 4096];
	memcpy(out, p, 8);
	if (s->cfg->no_migration && feat != 0)
		return reply_err(s, id, C_FEATURE, EINVAL);
	if (probe)
		return reply(s, id, C_FEATURE, p, 8);
	switch (feat) {
	case 1: /* MIGRATION */
		if (!get)
			return reply_err(s, id, C_FEATURE, EINVAL);
		p64(out + 8, 1 | 4); /* STOP_COPY | PRE_COPY */
		p32(out, 16);
		return reply(s, id, C_FEATURE, out, 16);
	case 2: /* MIG_DEVICE_STATE */
		if (set) {
			if (dl < 8)
				return reply_err(s, id, C_FEATURE, EINVAL);
			int e = set_state(s, g32(d));
			if (e)
				return reply_err(s, id, C_FEATURE, (uint32_t)e);
		}
		p32(out, 16);
		p32(out + 8, s->state);
		p32(out + 12, 0xffffffffu);
		return reply(s, id, C_FEATURE, out, 16);
	case 6: { /* DMA_LOGGING_START */
		if (!set || dl < 16)
			return reply_err(s, id, C_FEATURE, EINVAL);
		uint64_t ps = g64(d);
		if (ps < 512 || (ps & (ps - 1)) || ps > LOGPAGE_MAX || s->log_page)
			return reply_err(s, id, C_FEATURE, EINVAL);
		s->log_page = ps;
		for (int i = 0; i < s->nmaps; i++) {
			uint64_t pages = (s->maps[i].size + ps - 1) / ps;
			s->maps[i].log = calloc((pages + 63) / 64, 8);
		}
		return reply(s, id, C_FEATURE, p, n);
	}
	case 7: /* DMA_LOGGING_STOP */
		if (!set)
			return reply_err(s, id, C_FEATURE, EINVAL);
		s->log_page = 0;
		for (int i = 0; i < s->nmaps; i++) {
			free(s->maps[i].log);
			s->maps[i].log = NULL;
		}
		return reply(s, id, C_FEATURE, p, 8);
	case 8: { /* DMA_LOGGING_REPORT */
		if (!get || dl != 24 || !s->log_page)
			return reply_err(s, id, C_FEATURE, EINVAL);
		uint64_t iova = g64(d), len = g64(d + 8), ps = g64(d + 16);
		struct map *m = find(s, iova, len);
		if (!m || m->iova != iova || ps != s->log_page || len == 0)
			return reply_err(s, id, C_FEATURE, EINVAL);
		uint64_t pages = (len + ps - 1) / ps, words = (pages + 63) / 64;
		if (words > (1u << 20))
			return reply_err(s, id, C_FEATURE, E2BIG);
		uint8_t *rb = calloc(1, 32 + words * 8);
		if (!rb)
			return die("no memory");
		memcpy(rb, p, 8);
		memcpy(rb + 8, d, 24);
		for (uint64_t i = 0; i < pages; i++)
			if (m->log[i / 64] & (1ull << (i % 64))) {
				rb[32 + i / 8] |= (uint8_t)(1u << (i % 8));
				m->log[i / 64] &= ~(1ull << (i % 64));
			}
		p32(rb, (uint32_t)(32 + words * 8));
		int r = reply(s, id, C_FEATURE, rb, 32 + words * 8);
		free(rb);
		return r;
	}
	default:
		return reply_err(s, id, C_FEATURE, EINVAL);
	}
}

static int on_mig_read(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n != 8)
		return reply_err(s, id, C_MIG_READ, EINVAL);
	uint32_t argsz = g32(p), want = g32(p + 4);
	if (!saving(s->state) || want > s->max_xfer || argsz < 8 + (uint64_t)want)
		return reply_err(s, id, C_MIG_READ, EINVAL);
	s->mig_reads++;
	if (s->cfg->hang_at && s->mig_reads == s->cfg->hang_at)
		for (;;)
			pause();
	if (s->cfg->dma_every && s->mig_reads % s->cfg->dma_every == 0) {
		uint8_t *buf = malloc(s->client_xfer);
		if (!buf)
			return die("no memory");
		memset(buf, s->cfg->dma_val, s->client_xfer);
		for (uint64_t done = 0; done < s->cfg->dma_len;) {
			uint64_t k = s->cfg->dma_len - done;
			if (k > s->client_xfer)
				k = s->client_xfer;
			if (client_cmd(s, C_DMA_WRITE, s->cfg->dma_iova + done, buf, k)) {
				free(buf);
				return die("DMA_WRITE during MIG_DATA_READ failed");
			}
			done += k;
		}
		free(buf);
	}
	uint64_t limit = s->state == PRE_COPY && s->cfg->precopy_bytes < stream_len(s) ? s->cfg->precopy_bytes
										     : stream_len(s);
	uint64_t avail = s->cursor < limit ? limit - s->cursor : 0;
	uint32_t got = avail < want ? (uint32_t)avail : want;
	if (got && s->cfg->inflight) {
		int now = atomic_fetch_add(s->cfg->inflight, 1) + 1;
		int max = atomic_load(s->cfg->inflight_max);

		while (now > max && !atomic_compare_exchange_weak(s->cfg->inflight_max, &max, now))
			;
	}
	if (got && s->cfg->read_delay_us) {
		struct timespec ts = { .tv_sec = s->cfg->read_delay_us / 1000000,
				       .tv_nsec = (long)(s->cfg->read_delay_us % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	if (got && s->cfg->inflight)
		atomic_fetch_sub(s->cfg->inflight, 1);
	size_t plen = 8 + (s->cfg->pad_reads ? want : got);
	uint8_t *b = calloc(1, HDR + plen);
	if (!b)
		return die("no memory");
	hdr(b, id, C_MIG_READ, (uint32_t)(HDR + plen), 1, 0);
	p32(b + HDR, 8 + got);
	p32(b + HDR + 4, got);
	stream_fill(s, s->cursor, b + HDR + 8, got);
	s->cursor += got;
	if (s->state == STOP_COPY && s->cursor == stream_len(s))
		stream_saved(s);
	int r;
	if (s->cfg->die_at && s->mig_reads == s->cfg->die_at) {
		send_all(s->fd, b, HDR + plen / 2, -1);
		_exit(0);
	}
	r = send_all(s->fd, b, HDR + plen, -1);
	free(b);
	return r;
}

static int on_mig_write(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n < 8 || s->state != RESUMING)
		return reply_err(s, id, C_MIG_WRITE, EINVAL);
	uint32_t argsz = g32(p), sz = g32(p + 4);
	if (n != 8 + (uint64_t)sz || argsz < 8 + (uint64_t)sz || sz > s->max_xfer)
		return reply_err(s, id, C_MIG_WRITE, EINVAL);
	if (s->in_len + sz > s->in_cap) {
		uint64_t cap = s->in_cap ? s->in_cap : 65536;
		while (cap < s->in_len + sz)
			cap *= 2;
		uint8_t *q = realloc(s->in, cap);
		if (!q)
			return die("no memory");
		s->in = q;
		s->in_cap = cap;
	}
	memcpy(s->in + s->in_len, p + 8, sz);
	s->in_len += sz;
	return reply(s, id, C_MIG_WRITE, NULL, 0);
}

static int on_region(struct srv *s, uint16_t id, uint16_t cmd, const uint8_t *p, size_t n)
{
	if (n < 16)
		return reply_err(s, id, cmd, EINVAL);
	uint64_t off = g64(p);
	uint32_t reg = g32(p + 8), cnt = g32(p + 12);
	if (reg != 0 || off > BAR_SIZE || cnt > BAR_SIZE - off || cnt > s->max_xfer ||
	    (cmd == C_REGION_WRITE ? n != 16 + (uint64_t)cnt : n != 16))
		return reply_err(s, id, cmd, EINVAL);
	if (cmd == C_REGION_WRITE) {
		memcpy(s->bar + off, p + 16, cnt);
		if (off <= 0x114 && off + cnt >= 0x118) {
			uint32_t go = g32(s->bar + 0x114);
			p32(s->bar + 0x114, 0);
			if (go == 4) {
				/* reply first: the DMA comes with no request
				 * in flight */
				int r = reply(s, id, cmd, p, 16);
				return r ? r : doorbell(s, 1) ? die("DMA after the reply failed") : 0;
			}
			if (go) {
				int e = doorbell(s, go);
				if (e)
					return reply_err(s, id, cmd, (uint32_t)e);
			}
		}
		return reply(s, id, cmd, p, 16);
	}
	s->region_reads++;
	uint8_t *b = malloc(HDR + 16 + cnt);
	if (!b)
		return die("no memory");
	hdr(b, id, cmd, (uint32_t)(HDR + 16 + cnt), 1, 0);
	memcpy(b + HDR, p, 16);
	memcpy(b + HDR + 16, s->bar + off, cnt);
	size_t len = HDR + 16 + cnt;
	if (s->cfg->garble_at && s->region_reads == s->cfg->garble_at) {
		switch (s->cfg->garble_kind) {
		case 1: p16(b, (uint16_t)(id + 1)); break;
		case 2: len -= 1; p32(b + 4, (uint32_t)len); break;
		case 3: hdr(b, id, cmd, HDR, 1 | 0x20, 0); len = HDR; break;
		case 4: p32(b + 4, (uint32_t)(len + 100)); send_all(s->fd, b, len, -1); free(b); _exit(0);
		}
	}
	int r = send_all(s->fd, b, len, -1);
	free(b);
	return r;
}

static int on_dma_map(struct srv *s, uint16_t id, const uint8_t *p, size_t n, int fd)
{
	if (n != 32 || g32(p) != 32 || s->nmaps == MAXMAP)
		return reply_err(s, id, C_DMA_MAP, EINVAL);
	uint64_t off = g64(p + 8), iova = g64(p + 16), size = g64(p + 24);
	for (int i = 0; i < s->nmaps; i++)
		if (iova < s->maps[i].iova + s->maps[i].size && s->maps[i].iova < iova + size)
			return reply_err(s, id, C_DMA_MAP, EEXIST);
	struct map m = { .iova = iova, .size = size };
	if (fd >= 0) {
		void *a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
		if (a == MAP_FAILED)
			return reply_err(s, id, C_DMA_MAP, (uint32_t)errno);
		m.mem = a;
	}
	if (s->log_page)
		m.log = calloc(((size + s->log_page - 1) / s->log_page + 63) / 64, 8);
	s->maps[s->nmaps++] = m;
	return reply(s, id, C_DMA_MAP, NULL, 0);
}

static int on_dma_unmap(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n != 24)
		return reply_err(s, id, C_DMA_UNMAP, EINVAL);
	uint64_t iova = g64(p + 8), size = g64(p + 16);
	for (int i = 0; i < s->nmaps; i++)
		if (s->maps[i].iova == iova && s->maps[i].size == size) {
			if (s->maps[i].mem)
				munmap(s->maps[i].mem, size);
			free(s->maps[i].log);
			s->maps[i] = s->maps[--s->nmaps];
			return reply(s, id, C_DMA_UNMAP, p, 24); /* the entry echoed */
		}
	return reply_err(s, id, C_DMA_UNMAP, ENOENT);
}

/* IRQ types: 0 INTx (1 IRQ), 2 MSI-X (7 IRQs) of the 5 PCI types;
 * eventfds only, TRIGGER only. */
static int on_set_irqs(struct srv *s, uint16_t id, const uint8_t *p, size_t n, struct fdset *fds)
{
	if (n < 20 || g32(p) != n)
		return reply_err(s, id, C_SET_IRQS, EINVAL);
	uint32_t flags = g32(p + 4), idx = g32(p + 8), start = g32(p + 12), count = g32(p + 16);
	uint32_t size = idx == 0 ? 1 : idx == 2 ? 7 : 0, base = idx == 0 ? 0 : 1;
	if (idx >= 5)
		return reply_err(s, id, C_SET_IRQS, EINVAL);
	if (flags == (1u | 32u) && start == 0 && count == 0) { /* DATA_NONE|TRIGGER, 0, 0: all off */
		for (uint32_t i = 0; i < size; i++)
			if (s->irq[base + i] >= 0) {
				close(s->irq[base + i]);
				s->irq[base + i] = -1;
			}
		return reply(s, id, C_SET_IRQS, NULL, 0);
	}
	if (flags != (4u | 32u) || start > size || count > size - start ||
	    (fds->n != 0 && (uint32_t)fds->n != count))
		return reply_err(s, id, C_SET_IRQS, EINVAL);
	for (uint32_t i = 0; i < count; i++) {
		int *slot = &s->irq[base + start + i];
		if (*slot >= 0)
			close(*slot);
		*slot = -1;
		if (fds->n) {
			*slot = fds->fd[i];
			fds->fd[i] = -1; /* kept */
		}
	}
	return reply(s, id, C_SET_IRQS, NULL, 0);
}

static int on_irq_info(struct srv *s, uint16_t id, const uint8_t *p, size_t n)
{
	if (n != 16 || g32(p + 8) >= 5)
		return reply_err(s, id, C_IRQ_INFO, EINVAL);
	uint32_t idx = g32(p + 8);
	uint8_t out[16];
	p32(out, 16);
	p32(out + 4, idx == 0 ? 1 | 2 | 4 : idx == 2 ? 1 | 8 : 0);
	p32(out + 8, idx);
	p32(out + 12, idx == 0 ? 1 : idx == 2 ? 7 : 0);
	return reply(s, id, C_IRQ_INFO, out, 16);
}

int vu_server_run(int fd, const struct vu_server_cfg *cfg)
{
	struct srv s = { .fd = fd, .cmdfd = fd, .cfg = cfg, .state = RUNNING, .my_id = 0x8000 };
	s.max_xfer = cfg->max_xfer ? cfg->max_xfer : 1u << 20;
	s.client_xfer = 1u << 20;
	for (unsigned i = 0; i < BAR_SIZE; i++)
		s.bar[i] = (uint8_t)(i * 7 + 1);
	for (int i = 0; i < 8; i++)
		s.irq[i] = -1;
	if (cfg->auto_len >= PAGE) {
		memcpy(s.bar + R_DMA_MAGIC, "VDMA", 4);
		p32(s.bar + R_DMA_MAGIC + 4, 0);
		p64(s.bar + R_DMA_SEQ, 0);
		p64(s.bar + R_DMA_IOVA, cfg->auto_iova);
		p64(s.bar + R_DMA_LEN, cfg->auto_len / PAGE * PAGE);
	}
	s.next_tick_ns = now_ns();
	int status = 0;
	for (;;) {
		uint8_t h[HDR];
		struct fdset fds = { .n = 0 };
		/* the device's own DMA between the client's messages */
		while (cfg->auto_ms && cfg->auto_pages) {
			uint64_t t = now_ns();
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			if (t >= s.next_tick_ns) {
				if ((s.state == RUNNING || s.state == PRE_COPY) && dma_configured(&s))
					dma_tick(&s);
				s.next_tick_ns = t + (uint64_t)cfg->auto_ms * 1000000ull;
				continue;
			}
			int pr = poll(&pfd, 1, (int)((s.next_tick_ns - t + 999999) / 1000000));
			if (pr > 0 || (pr < 0 && errno != EINTR))
				break;
		}
		if (recv_all(fd, h, HDR, &fds)) {
			status = 0; /* the client left */
			break;
		}
		uint32_t size = g32(h + 4);
		if (size < HDR || size > HDR + s.max_xfer + 4096 || (g32(h + 8) & 0xf) != 0) {
			status = die("bad header from the client");
			break;
		}
		size_t n = size - HDR;
		if (n > s.rxcap) {
			uint8_t *q = realloc(s.rx, n);
			if (!q) {
				status = die("no memory");
				break;
			}
			s.rx = q;
			s.rxcap = n;
		}
		if (n && recv_all(fd, s.rx, n, &fds)) {
			status = die("client left mid-message");
			break;
		}
		if ((uint32_t)fds.n > (cfg->max_fds ? cfg->max_fds : 8)) {
			status = die("more fds than max_msg_fds with one message");
			break;
		}
		uint16_t id = g16(h), cmd = g16(h + 2);
		int r;
		switch (cmd) {
		case C_VERSION: r = on_version(&s, id, s.rx, n); break;
		case C_DMA_MAP: r = on_dma_map(&s, id, s.rx, n, fds.n ? fds.fd[0] : -1); break;
		case C_IRQ_INFO: r = on_irq_info(&s, id, s.rx, n); break;
		case C_SET_IRQS: r = on_set_irqs(&s, id, s.rx, n, &fds); break;
		case C_DMA_UNMAP: r = on_dma_unmap(&s, id, s.rx, n); break;
		case C_INFO: {
			uint8_t out[16];
			p32(out, 16);
			p32(out + 4, 1 | 2);
			p32(out + 8, 9);
			p32(out + 12, 5);
			r = n == 16 ? reply(&s, id, cmd, out, 16) : reply_err(&s, id, cmd, EINVAL);
			break;
		}
		case C_REGION_INFO: {
			if (n != 32) {
				r = reply_err(&s, id, cmd, EINVAL);
				break;
			}
			uint32_t idx = g32(s.rx + 8);
			if (idx >= 9) {
				r = reply_err(&s, id, cmd, EINVAL);
				break;
			}
			uint8_t out[32] = { 0 };
			p32(out, 32);
			p32(out + 4, idx == 0 ? 3 : 0);
			p32(out + 8, idx);
			p64(out + 16, idx == 0 ? BAR_SIZE : 0);
			r = reply(&s, id, cmd, out, 32);
			break;
		}
		case C_REGION_READ:
		case C_REGION_WRITE: r = on_region(&s, id, cmd, s.rx, n); break;
		case C_RESET:
			/* refused while stopped or saving (as libvfio-user does);
			 * out of RESUMING (the session aborted, what it took
			 * dropped) and ERROR to RUNNING, as the specification
			 * and the kernel's uAPI say */
			if (saving(s.state) || s.state == STOP) {
				r = reply_err(&s, id, cmd, EINVAL);
				break;
			}
			if (s.state == RESUMING || s.state == ERROR) {
				s.in_len = 0;
				s.state = RUNNING;
			}
			r = reply(&s, id, cmd, NULL, 0);
			break;
		case C_FEATURE: r = on_feature(&s, id, s.rx, n); break;
		case C_MIG_READ: r = on_mig_read(&s, id, s.rx, n); break;
		case C_MIG_WRITE: r = on_mig_write(&s, id, s.rx, n); break;
		default: r = reply_err(&s, id, cmd, ENOSYS); break;
		}
		for (int i = 0; i < fds.n; i++)
			if (fds.fd[i] >= 0)
				close(fds.fd[i]); /* an mmap keeps its own reference */
		if (r > 0) {
			status = r;
			break;
		}
		if (r < 0) {
			status = 0; /* the client left while we answered */
			break;
		}
	}
	for (int i = 0; i < 8; i++)
		if (s.irq[i] >= 0)
			close(s.irq[i]);
	if (cfg->report_path) {
		char rbuf[256];
		int n = snprintf(rbuf, sizeof(rbuf),
				 "state-bytes %llu\ndma-pages-written %llu\ndma-pages-checked %llu\n"
				 "dma-pages-bad %llu\nloaded %d\n",
				 (unsigned long long)s.state_bytes, (unsigned long long)s.written,
				 (unsigned long long)s.checked, (unsigned long long)s.bad, s.loaded);
		put_file(cfg->report_path, rbuf, (size_t)n);
	}
	for (int i = 0; i < s.nmaps; i++) {
		if (s.maps[i].mem)
			munmap(s.maps[i].mem, s.maps[i].size);
		free(s.maps[i].log);
	}
	free(s.rx);
	free(s.in);
	return status;
}

pid_t vu_server_spawn(const struct vu_server_cfg *cfg, int *client_fd)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		/* keep only our end: another server's client socket left open
		 * here would hide that client's close from its server */
		int keep = sv[1];
		if (keep > 3)
			close_range(3, (unsigned)keep - 1, 0);
		close_range((unsigned)keep + 1, ~0u, 0);
		signal(SIGPIPE, SIG_IGN);
		_exit(vu_server_run(sv[1], cfg));
	}
	close(sv[1]);
	*client_fd = sv[0];
	return pid;
}

pid_t vu_server_listen(const char *path, const struct vu_server_cfg *cfg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -1;
	strcpy(a.sun_path, path);
	unlink(path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -1;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1)) {
		close(l);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(l);
		return -1;
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_IGN);
		int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		close(l);
		unlink(path);
		_exit(fd < 0 ? 3 : vu_server_run(fd, cfg));
	}
	close(l);
	return pid;
}

int vu_server_wait(pid_t pid, int timeout_ms)
{
	int st;
	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			if (waitpid(pid, &st, 0) != pid)
				return -1;
			break;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
}
