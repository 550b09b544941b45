/* A userspace model of a VFIO migration driver's observable contract: the
 * VFIO_DEVICE_FEATURE checks and errno of the vfio core, the FSM (through
 * precopy_vfio_fsm_next, arc by arc, as a driver walks it), data fds as real
 * socketpairs carrying a deterministic byte stream, PRE_COPY accounting on
 * the clock it is given, DMA logging with range combining, and device DMA
 * that writes real bytes into guest memory. Behaviour where drivers differ
 * follows mlx5 (START while started: -EINVAL; STOP while stopped: 0). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"
#include "fake_internal.h"

#define CHUNK (64 * 1024)
/* The core accepts as many ranges as fit in one 4 KiB kernel page. */
#define CORE_MAX_RANGES (4096 / sizeof(struct vfio_device_feature_dma_logging_range))
#define MAX_FAIL 8

struct session {
	struct precopy_fake_vfio *dev;
	int user_fd, model_fd;
	int resume, dead, eof_sent;
	uint64_t produced, consumed; /* saving */
	uint64_t received;	     /* resuming */
	int bad;
	struct session *next;
};

struct trange {
	uint64_t base, end; /* page-aligned span the tracker covers */
	uint64_t *bits;
};

struct precopy_fake_vfio {
	struct precopy_fake_kernel *fk;
	struct precopy_fake_vfio_cfg cfg;
	int fd;
	uint32_t state;
	struct session *cur, *sessions;
	uint64_t last_ns;
	unsigned __int128 dma_credit;
	uint64_t initial_left, dirty, sc_left;
	int logging;
	uint64_t log_pg;
	uint32_t nranges;
	struct trange *ranges;
	uint8_t *mem;
	uint64_t mem_iova, mem_len;
	struct {
		uint32_t from, to, end;
		int err;
		unsigned int times;
	} fail[MAX_FAIL];
	int nfail;
	int reset_err;
	unsigned int reset_times;
	uint64_t rng;
	struct precopy_fake_vfio_stats st;
	uint8_t *buf;
	struct precopy_fake_vfio *next;
};

static const struct precopy_sys *real(void)
{
	return precopy_sys_real();
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 r = (unsigned __int128)a * b / c;
	return r > UINT64_MAX ? UINT64_MAX : (uint64_t)r;
}

static uint64_t next_rand(struct precopy_fake_vfio *dev)
{
	/* xorshift64* */
	dev->rng ^= dev->rng >> 12;
	dev->rng ^= dev->rng << 25;
	dev->rng ^= dev->rng >> 27;
	return dev->rng * 0x2545F4914F6CDD1Dull;
}

PRECOPY_API uint8_t precopy_fake_vfio_stream_byte(uint32_t seed, uint64_t off)
{
	return (uint8_t)(((off * 0x9E3779B1u) >> 7) ^ (off >> 13) ^ seed ^ (seed >> 8));
}

static int running(uint32_t s)
{
	return s == VFIO_DEVICE_STATE_RUNNING || s == VFIO_DEVICE_STATE_RUNNING_P2P ||
	       s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

static int in_precopy(uint32_t s)
{
	return s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

/* ---- DMA into guest memory and the device's own log ------------------- */

static int64_t log_mark(struct precopy_fake_vfio *dev, uint64_t iova, uint64_t len)
{
	int64_t newly = 0;

	if (!dev->logging || !len)
		return 0;
	for (uint32_t i = 0; i < dev->nranges; i++) {
		struct trange *r = &dev->ranges[i];
		uint64_t lo = iova > r->base ? iova : r->base;
		uint64_t hi = iova + len < r->end ? iova + len : r->end;

		if (lo >= hi)
			continue;
		for (uint64_t p = (lo - r->base) / dev->log_pg; p <= (hi - 1 - r->base) / dev->log_pg; p++) {
			uint64_t m = 1ull << (p % 64);
			if (!(r->bits[p / 64] & m)) {
				r->bits[p / 64] |= m;
				newly++;
			}
		}
	}
	return newly;
}

static void dma_page(struct precopy_fake_vfio *dev, uint64_t off, uint64_t len, uint8_t byte)
{
	memset(dev->mem + off, byte, len);
	log_mark(dev, dev->mem_iova + off, len);
}

/* Bring the model up to the clock: device-state dirtying in PRE_COPY and
 * background DMA while running. */
static void advance(struct precopy_fake_vfio *dev)
{
	uint64_t now = fk_now(dev->fk), dt = now > dev->last_ns ? now - dev->last_ns : 0;

	dev->last_ns = now;
	if (!dt)
		return;
	if (in_precopy(dev->state) && dev->cur && !dev->cur->dead)
		dev->dirty = sat_add(dev->dirty, mul_div(dev->cfg.dirty_rate, dt, 1000000000ull));
	if (running(dev->state) && dev->mem && dev->cfg.dma_pages_per_sec) {
		uint64_t pages_in_mem = dev->mem_len / 4096, n;

		dev->dma_credit += (unsigned __int128)dt * dev->cfg.dma_pages_per_sec;
		n = (uint64_t)(dev->dma_credit / 1000000000u);
		dev->dma_credit %= 1000000000u;
		if (!pages_in_mem)
			return;
		if (n > 4 * pages_in_mem)
			n = 4 * pages_in_mem;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t r = next_rand(dev);
			dma_page(dev, (r % pages_in_mem) * 4096, 4096, (uint8_t)(r >> 56));
			dev->st.dma_pages++;
		}
	}
}

/* ---- data sessions ---------------------------------------------------- */

static void kill_session(struct precopy_fake_vfio *dev)
{
	struct session *s = dev->cur;

	if (!s)
		return;
	s->dead = 1;
	if (s->model_fd >= 0) {
		real()->ops->close(NULL, s->model_fd);
		s->model_fd = -1;
	}
	dev->cur = NULL;
	dev->initial_left = dev->dirty = dev->sc_left = 0;
}

static int open_session(struct precopy_fake_vfio *dev, int resume)
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
static uint64_t produce(struct precopy_fake_vfio *dev, struct session *s, uint64_t max)
{
	uint64_t buffered = s->produced - s->consumed, want, moved = 0;

	if (s->dead || s->resume || buffered >= max)
		return 0;
	want = max - buffered;
	if (in_precopy(dev->state))
		want = want < sat_add(dev->initial_left, dev->dirty) ? want : sat_add(dev->initial_left, dev->dirty);
	else if (dev->state == VFIO_DEVICE_STATE_STOP_COPY)
		want = want < dev->sc_left ? want : dev->sc_left;
	else
		want = 0;
	while (want) {
		size_t n = want < CHUNK ? want : CHUNK;
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			dev->buf[i] = precopy_fake_vfio_stream_byte(dev->cfg.seed, s->produced + i);
		w = real()->ops->write(NULL, s->model_fd, dev->buf, n);
		if (w <= 0)
			break;
		s->produced += (uint64_t)w;
		moved += (uint64_t)w;
		want -= (uint64_t)w;
		if (in_precopy(dev->state)) {
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
	advance(dev);
	produce(dev, s, len < CHUNK ? len : CHUNK);
	if (s->produced == s->consumed && in_precopy(dev->state))
		return -ENOMSG; /* temporary end of stream: both counters are 0 */
	r = real()->ops->read(NULL, s->user_fd, buf, len);
	if (r > 0)
		s->consumed += (uint64_t)r;
	return r;
}

static void drain(struct session *s)
{
	struct precopy_fake_vfio *dev = s->dev;
	ssize_t n;

	if (s->model_fd < 0)
		return;
	while ((n = real()->ops->read(NULL, s->model_fd, dev->buf, CHUNK)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (dev->buf[i] != precopy_fake_vfio_stream_byte(dev->cfg.seed, s->received + (uint64_t)i))
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
	r = real()->ops->write(NULL, s->user_fd, buf, len < CHUNK ? len : CHUNK);
	drain(s);
	return r;
}

void fake_vfio_data_pump(void *session)
{
	struct session *s = session;

	if (!s->dead && !s->resume) {
		advance(s->dev);
		produce(s->dev, s, CHUNK);
	}
}

void fake_vfio_data_drain(void *session)
{
	struct session *s = session;

	if (!s->dead && s->resume)
		drain(s);
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
	if (s->dead || s->resume || !in_precopy(dev->state))
		return -EINVAL;
	advance(dev);
	info->flags = 0;
	info->initial_bytes = dev->initial_left;
	info->dirty_bytes = dev->dirty;
	return 0;
}

/* ---- the FSM, as a driver walks it ------------------------------------ */

static int do_arc(struct precopy_fake_vfio *dev, uint32_t from, uint32_t to, int *newfd)
{
	int r;

	if (precopy_vfio_arc_opens_fd(from, to)) {
		r = open_session(dev, to == VFIO_DEVICE_STATE_RESUMING);
		if (r < 0)
			return r;
		*newfd = r;
		if (to == VFIO_DEVICE_STATE_STOP_COPY)
			dev->sc_left = dev->cfg.stop_copy_bytes;
		else if (to != VFIO_DEVICE_STATE_RESUMING)
			dev->initial_left = dev->cfg.initial_bytes, dev->dirty = 0;
		return 0;
	}
	if (from == VFIO_DEVICE_STATE_RESUMING) {
		struct session *s = dev->cur;
		int ok;

		drain(s);
		ok = s && !s->bad && s->received > 0;
		kill_session(dev);
		if (!ok) {
			dev->state = VFIO_DEVICE_STATE_ERROR;
			return -EINVAL;
		}
		dev->st.resume_ok++;
		return 0;
	}
	if (in_precopy(from) && to == VFIO_DEVICE_STATE_STOP_COPY) {
		dev->sc_left = sat_add(dev->cfg.stop_copy_bytes, sat_add(dev->initial_left, dev->dirty));
		dev->initial_left = dev->dirty = 0;
		return 0;
	}
	if (precopy_vfio_arc_closes_fd(from, to))
		kill_session(dev);
	return 0;
}

static int set_state(struct precopy_fake_vfio *dev, struct vfio_device_feature_mig_state *mig)
{
	uint32_t target = mig->device_state, next;
	int newfd = -1, r = 0;

	advance(dev);
	while (dev->state != target) {
		r = precopy_vfio_fsm_next(dev->state, target, dev->cfg.mig_flags, &next);
		if (r < 0)
			break;
		for (int i = 0; i < dev->nfail; i++) {
			if (dev->fail[i].times && dev->fail[i].from == dev->state && dev->fail[i].to == next) {
				dev->fail[i].times--;
				r = -dev->fail[i].err;
				if (dev->fail[i].end == VFIO_DEVICE_STATE_ERROR) {
					kill_session(dev);
					dev->state = VFIO_DEVICE_STATE_ERROR;
				}
				break;
			}
		}
		if (r < 0)
			break;
		r = do_arc(dev, dev->state, next, &newfd);
		if (r < 0)
			break;
		dev->state = next;
		dev->st.arcs++;
		fk_advance(dev->fk, dev->cfg.transition_ns);
	}
	if (r < 0 && newfd >= 0 && dev->cur && dev->cur->user_fd == newfd) {
		/* the driver drops a file it could not hand out */
		fk_unregister(dev->fk, newfd);
		real()->ops->close(NULL, newfd);
		dev->cur->user_fd = -1;
		kill_session(dev);
		newfd = -1;
	}
	mig->data_fd = r < 0 ? -1 : newfd;
	return r;
}

/* ---- DMA logging -------------------------------------------------------- */

static void log_free(struct precopy_fake_vfio *dev)
{
	for (uint32_t i = 0; i < dev->nranges; i++)
		free(dev->ranges[i].bits);
	free(dev->ranges);
	dev->ranges = NULL;
	dev->nranges = 0;
	dev->logging = 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct vfio_device_feature_dma_logging_range *x = a, *y = b;
	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int log_start(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_control *ctl)
{
	const struct vfio_device_feature_dma_logging_range *ur = (const void *)(uintptr_t)ctl->ranges;
	struct vfio_device_feature_dma_logging_range *rs;
	uint32_t n = ctl->num_ranges;
	uint64_t pg;

	if (!n)
		return -EINVAL;
	if (n > CORE_MAX_RANGES)
		return -E2BIG;
	if (!ur)
		return -EFAULT;
	if (!is_pow2(ctl->page_size))
		return -EINVAL;
	rs = malloc(n * sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	memcpy(rs, ur, n * sizeof(*rs));
	for (uint32_t i = 0; i < n; i++) {
		if ((rs[i].iova | rs[i].length) & (ctl->page_size - 1) || !rs[i].length) {
			free(rs);
			return -EINVAL;
		}
		if (rs[i].iova > UINT64_MAX - rs[i].length) {
			free(rs);
			return -EOVERFLOW;
		}
	}
	qsort(rs, n, sizeof(*rs), cmp_range);
	for (uint32_t i = 1; i < n; i++)
		if (rs[i].iova < rs[i - 1].iova + rs[i - 1].length) {
			free(rs);
			return -EINVAL; /* overlapping ranges */
		}
	if (dev->logging) {
		free(rs);
		return -(dev->cfg.restart_errno ? dev->cfg.restart_errno : EINVAL);
	}
	/* The tracker holds fewer ranges: close the smallest gaps first. */
	while (n > dev->cfg.max_ranges) {
		uint32_t best = 1;
		for (uint32_t i = 2; i < n; i++)
			if (rs[i].iova - (rs[i - 1].iova + rs[i - 1].length) <
			    rs[best].iova - (rs[best - 1].iova + rs[best - 1].length))
				best = i;
		rs[best - 1].length = rs[best].iova + rs[best].length - rs[best - 1].iova;
		memmove(&rs[best], &rs[best + 1], (n - best - 1) * sizeof(*rs));
		n--;
	}
	pg = ctl->page_size;
	if (pg < dev->cfg.log_page_min)
		pg = dev->cfg.log_page_min;
	if (pg > dev->cfg.log_page_max)
		pg = dev->cfg.log_page_max;
	dev->ranges = calloc(n, sizeof(*dev->ranges));
	if (!dev->ranges) {
		free(rs);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct trange *t = &dev->ranges[i];
		uint64_t end = rs[i].iova + rs[i].length;

		t->base = rs[i].iova & ~(pg - 1);
		t->end = end > UINT64_MAX - (pg - 1) ? UINT64_MAX & ~(pg - 1) : (end + pg - 1) & ~(pg - 1);
		t->bits = calloc(((t->end - t->base) / pg + 63) / 64, 8);
		dev->nranges = i + 1;
		if (!t->bits) {
			free(rs);
			log_free(dev);
			return -ENOMEM;
		}
	}
	free(rs);
	dev->log_pg = pg;
	dev->logging = 1;
	ctl->page_size = pg;
	return 0;
}

static int log_report(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_report *rep)
{
	uint64_t *ub = (uint64_t *)(uintptr_t)rep->bitmap, rps = rep->page_size, lo_all, hi_all;

	if (rps < 4096 || !is_pow2(rps))
		return -EINVAL;
	if (rep->iova > UINT64_MAX - rep->length)
		return -EOVERFLOW;
	if (!dev->logging || !rep->length)
		return -EINVAL;
	if (!ub)
		return -EFAULT;
	advance(dev);
	lo_all = rep->iova;
	hi_all = rep->iova + rep->length;
	for (uint32_t i = 0; i < dev->nranges; i++) {
		struct trange *r = &dev->ranges[i];
		uint64_t pg = dev->log_pg, np = (r->end - r->base) / pg;

		for (uint64_t w = 0; w < (np + 63) / 64; w++) {
			uint64_t word = r->bits[w];
			while (word) {
				uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(word);
				uint64_t a = r->base + p * pg, b = a + pg, lo, hi;

				word &= word - 1;
				lo = a > lo_all ? a : lo_all;
				hi = b < hi_all ? b : hi_all;
				if (lo >= hi)
					continue;
				for (uint64_t q = (lo - lo_all) / rps; q <= (hi - 1 - lo_all) / rps; q++)
					ub[q / 64] |= 1ull << (q % 64);
				/* read-and-clear, but only what was wholly reported */
				if (a >= lo_all && b <= hi_all)
					r->bits[w] &= ~(1ull << (p % 64));
			}
		}
	}
	return 0;
}

/* ---- VFIO_DEVICE_FEATURE, as the vfio core checks it -------------------- */

static int check_feature(uint32_t flags, size_t argsz, uint32_t ops, size_t minsz)
{
	if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) & ~ops)
		return -EINVAL;
	if (flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
		return -EINVAL;
	if (argsz < minsz)
		return -EINVAL;
	return 1;
}

static int feature(struct precopy_fake_vfio *dev, struct vfio_device_feature *f)
{
	const uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET |
			       VFIO_DEVICE_FEATURE_PROBE;
	uint32_t fl;
	size_t plen;
	int r, mig = dev->cfg.mig_flags != 0;

	if (!f)
		return -EFAULT;
	if (f->argsz < sizeof(*f))
		return -EINVAL;
	fl = f->flags;
	if (fl & ~known)
		return -EINVAL;
	if (!(fl & VFIO_DEVICE_FEATURE_PROBE) && (fl & VFIO_DEVICE_FEATURE_SET) && (fl & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;
	plen = f->argsz - sizeof(*f);
	switch (fl & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_MIGRATION: {
		struct vfio_device_feature_migration *m = (void *)f->data;
		if (!mig)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET, sizeof(*m))) != 1)
			return r;
		m->flags = dev->cfg.mig_flags;
		return 0;
	}
	case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
		struct vfio_device_feature_mig_state *m = (void *)f->data;
		if (!mig)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET, sizeof(*m))) != 1)
			return r;
		if (fl & VFIO_DEVICE_FEATURE_GET) {
			m->device_state = dev->state;
			m->data_fd = -1;
			return 0;
		}
		return set_state(dev, m);
	}
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
		if (!dev->cfg.dma_logging)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_SET,
				       sizeof(struct vfio_device_feature_dma_logging_control))) != 1)
			return r;
		r = log_start(dev, (void *)f->data);
		if (r == 0)
			dev->st.logging = 1;
		return r;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		if (!dev->cfg.dma_logging)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_SET, 0)) != 1)
			return r;
		log_free(dev);
		return 0;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
		if (!dev->cfg.dma_logging)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET,
				       sizeof(struct vfio_device_feature_dma_logging_report))) != 1)
			return r;
		return log_report(dev, (void *)f->data);
	case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
		struct vfio_device_feature_mig_data_size *m = (void *)f->data;
		if (!mig)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET, sizeof(*m))) != 1)
			return r;
		advance(dev);
		m->stop_copy_length = dev->state == VFIO_DEVICE_STATE_STOP_COPY
					      ? dev->sc_left
					      : sat_add(dev->cfg.stop_copy_bytes, sat_add(dev->initial_left, dev->dirty));
		return 0;
	}
	default:
		return -ENOTTY; /* vfio-pci: a feature it does not know */
	}
}

static int reset(struct precopy_fake_vfio *dev)
{
	if (dev->reset_times) {
		dev->reset_times--;
		return -dev->reset_err;
	}
	kill_session(dev);
	if (dev->cfg.mig_flags)
		dev->state = VFIO_DEVICE_STATE_RUNNING;
	dev->st.resets++;
	return 0;
}

int fake_vfio_device_ioctl(struct precopy_fake_vfio *dev, unsigned long req, void *arg)
{
	switch (req) {
	case VFIO_DEVICE_FEATURE:
		return feature(dev, arg);
	case VFIO_DEVICE_RESET:
		return reset(dev);
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info *info = arg;
		if (!info)
			return -EFAULT;
		if (info->argsz < offsetof(struct vfio_device_info, num_irqs) + sizeof(info->num_irqs))
			return -EINVAL;
		info->flags = VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI;
		info->num_regions = VFIO_PCI_NUM_REGIONS;
		info->num_irqs = VFIO_PCI_NUM_IRQS;
		return 0;
	}
	default:
		return -ENOTTY;
	}
}

void fake_vfio_device_closed(struct precopy_fake_vfio *dev)
{
	/* Releasing the device fd: the driver stops tracking, drops the
	 * migration files and returns the device to RUNNING. */
	log_free(dev);
	kill_session(dev);
	if (dev->cfg.mig_flags)
		dev->state = VFIO_DEVICE_STATE_RUNNING;
	dev->fd = -1;
}

void fake_vfio_free_all(struct precopy_fake_kernel *fk)
{
	struct precopy_fake_vfio *dev = fk->devs, *dn;

	for (; dev; dev = dn) {
		struct session *s = dev->sessions, *sn;

		dn = dev->next;
		kill_session(dev);
		for (; s; s = sn) {
			sn = s->next;
			if (s->user_fd >= 0) {
				fk_unregister(fk, s->user_fd);
				close(s->user_fd);
			}
			if (s->model_fd >= 0)
				close(s->model_fd);
			free(s);
		}
		if (dev->fd >= 0) {
			fk_unregister(fk, dev->fd);
			close(dev->fd);
		}
		log_free(dev);
		free(dev->buf);
		free(dev);
	}
	fk->devs = NULL;
}

/* ---- public model controls --------------------------------------------- */

PRECOPY_API int precopy_fake_vfio_new(struct precopy_fake_kernel *fk, const struct precopy_fake_vfio_cfg *cfg,
				      struct precopy_fake_vfio **out)
{
	struct precopy_fake_vfio *dev;
	int fd, r;

	if (!fk || !cfg)
		return -EINVAL;
	if ((cfg->log_page_min && !is_pow2(cfg->log_page_min)) || (cfg->log_page_max && !is_pow2(cfg->log_page_max)))
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->buf = malloc(CHUNK);
	if (!dev->buf) {
		free(dev);
		return -ENOMEM;
	}
	dev->cfg = *cfg;
	if (!dev->cfg.log_page_min)
		dev->cfg.log_page_min = 4096;
	if (!dev->cfg.log_page_max)
		dev->cfg.log_page_max = 2u << 20;
	if (!dev->cfg.max_ranges)
		dev->cfg.max_ranges = CORE_MAX_RANGES;
	if (dev->cfg.log_page_min > dev->cfg.log_page_max) {
		free(dev->buf);
		free(dev);
		return -EINVAL;
	}
	dev->rng = 0x9E3779B97F4A7C15ull ^ cfg->seed;
	dev->state = cfg->mig_flags ? VFIO_DEVICE_STATE_RUNNING : VFIO_DEVICE_STATE_ERROR;
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(dev->buf);
		free(dev);
		return r;
	}
	pthread_mutex_lock(&fk->lock);
	r = fk_register(fk, fd, FK_DEVICE, dev);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		close(fd);
		free(dev->buf);
		free(dev);
		return r;
	}
	dev->fk = fk;
	dev->fd = fd;
	dev->last_ns = fk_now(fk);
	dev->next = fk->devs;
	fk->devs = dev;
	pthread_mutex_unlock(&fk->lock);
	if (out)
		*out = dev;
	return fd;
}

PRECOPY_API int precopy_fake_vfio_set_guest_mem(struct precopy_fake_vfio *dev, uint64_t iova, void *mem, size_t len)
{
	if (!dev || (!mem && len) || (mem && !len) || (len && iova > UINT64_MAX - len))
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	advance(dev);
	dev->mem = mem;
	dev->mem_iova = iova;
	dev->mem_len = len;
	pthread_mutex_unlock(&dev->fk->lock);
	return 0;
}

PRECOPY_API int precopy_fake_vfio_dma_write(struct precopy_fake_vfio *dev, uint64_t iova, uint64_t len, uint8_t byte)
{
	int64_t r;

	if (!dev || !len)
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	advance(dev);
	if (!dev->mem || iova < dev->mem_iova || iova - dev->mem_iova > dev->mem_len ||
	    len > dev->mem_len - (iova - dev->mem_iova)) {
		r = -EINVAL;
	} else if (!running(dev->state)) {
		r = -EPERM;
	} else {
		memset(dev->mem + (iova - dev->mem_iova), byte, len);
		r = log_mark(dev, iova, len);
		dev->st.dma_pages += (len + 4095) / 4096;
	}
	pthread_mutex_unlock(&dev->fk->lock);
	return (int)(r > INT32_MAX ? INT32_MAX : r);
}

PRECOPY_API int precopy_fake_vfio_fail_arc(struct precopy_fake_vfio *dev, uint32_t from, uint32_t to, int err,
					   uint32_t end_state, unsigned int times)
{
	int r = 0;

	if (!dev || err <= 0 || (end_state != from && end_state != VFIO_DEVICE_STATE_ERROR))
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	if (dev->nfail >= MAX_FAIL) {
		r = -ENOSPC;
	} else {
		dev->fail[dev->nfail].from = from;
		dev->fail[dev->nfail].to = to;
		dev->fail[dev->nfail].err = err;
		dev->fail[dev->nfail].end = end_state;
		dev->fail[dev->nfail].times = times;
		dev->nfail++;
	}
	pthread_mutex_unlock(&dev->fk->lock);
	return r;
}

PRECOPY_API int precopy_fake_vfio_fail_reset(struct precopy_fake_vfio *dev, int err, unsigned int times)
{
	if (!dev || err <= 0)
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	dev->reset_err = err;
	dev->reset_times = times;
	pthread_mutex_unlock(&dev->fk->lock);
	return 0;
}

PRECOPY_API int64_t precopy_fake_vfio_pump(struct precopy_fake_vfio *dev, size_t max)
{
	int64_t r;

	if (!dev)
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	if (!dev->cur || dev->cur->dead || dev->cur->resume) {
		r = -EINVAL;
	} else {
		advance(dev);
		r = (int64_t)produce(dev, dev->cur, max);
	}
	pthread_mutex_unlock(&dev->fk->lock);
	return r;
}

PRECOPY_API void precopy_fake_vfio_get_stats(struct precopy_fake_vfio *dev, struct precopy_fake_vfio_stats *st)
{
	if (!dev || !st)
		return;
	pthread_mutex_lock(&dev->fk->lock);
	advance(dev);
	*st = dev->st;
	st->state = dev->state;
	st->logging = dev->logging;
	st->log_ranges = dev->nranges;
	st->log_page_size = dev->logging ? dev->log_pg : 0;
	st->initial_left = dev->initial_left;
	st->dirty_bytes = dev->dirty;
	pthread_mutex_unlock(&dev->fk->lock);
}
