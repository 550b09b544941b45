/* SPDX-License-Identifier: MIT */
/* A userspace model of a VFIO migration driver's observable contract: the
 * VFIO_DEVICE_FEATURE checks and errno of the vfio core, the FSM (through
 * precopy_vfio_fsm_next, arc by arc, as a driver walks it), PRE_COPY
 * accounting on the clock it is given, reset, and the model's controls.
 * Data sessions live in fake/vfio_data.c, device DMA and DMA logging in
 * fake/vfio_dma.c. Behaviour where drivers differ follows mlx5 (START
 * while started: -EINVAL; STOP while stopped: 0). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfio_priv.h"

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
	return fv_stream_byte(seed, off);
}

/* Bring the model up to the clock: device-state dirtying in PRE_COPY and
 * background DMA while running. */
void fake_vfio_advance(struct precopy_fake_vfio *dev)
{
	uint64_t now = fk_now(dev->fk), dt = now > dev->last_ns ? now - dev->last_ns : 0;

	dev->last_ns = now;
	if (!dt)
		return;
	if (fv_in_precopy(dev->state) && dev->cur && !dev->cur->dead)
		dev->dirty = sat_add(dev->dirty, fv_mul_div(dev->cfg.dirty_rate, dt, 1000000000ull));
	if (fv_running(dev->state) && fv_has_guest_mem(dev) && dev->cfg.dma_pages_per_sec) {
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
			if (fake_vfio_dma_page(dev, (r % pages_in_mem) * 4096, 4096, (uint8_t)(r >> 56)) == 0)
				dev->st.dma_pages++;
		}
	}
}

/* ---- the FSM, as a driver walks it ------------------------------------ */

static int do_arc(struct precopy_fake_vfio *dev, uint32_t from, uint32_t to, int *newfd)
{
	int r;

	if (precopy_vfio_arc_opens_fd(from, to)) {
		r = fake_vfio_open_session(dev, to == VFIO_DEVICE_STATE_RESUMING);
		if (r < 0)
			return r;
		*newfd = r;
		if (to == VFIO_DEVICE_STATE_STOP_COPY)
			dev->sc_left = dev->cfg.stop_copy_bytes, dev->sc_read = 0;
		else if (to != VFIO_DEVICE_STATE_RESUMING)
			dev->initial_left = dev->cfg.initial_bytes, dev->dirty = 0;
		return 0;
	}
	if (from == VFIO_DEVICE_STATE_RESUMING) {
		struct session *s = dev->cur;
		int ok;

		fake_vfio_drain(s);
		ok = s && !s->bad && s->received > 0;
		fake_vfio_kill_session(dev);
		if (!ok) {
			dev->state = VFIO_DEVICE_STATE_ERROR;
			return -EINVAL;
		}
		dev->st.resume_ok++;
		return 0;
	}
	if (fv_in_precopy(from) && to == VFIO_DEVICE_STATE_STOP_COPY) {
		dev->sc_left = sat_add(dev->cfg.stop_copy_bytes, sat_add(dev->initial_left, dev->dirty));
		dev->sc_read = 0;
		dev->initial_left = dev->dirty = 0;
		return 0;
	}
	if (precopy_vfio_arc_closes_fd(from, to))
		fake_vfio_kill_session(dev);
	return 0;
}

static int set_state(struct precopy_fake_vfio *dev, struct vfio_device_feature_mig_state *mig)
{
	uint32_t target = mig->device_state, next;
	int newfd = -1, r = 0;

	fake_vfio_advance(dev);
	while (dev->state != target) {
		r = precopy_vfio_fsm_next(dev->state, target, dev->cfg.mig_flags, &next);
		if (r < 0)
			break;
		for (int i = 0; i < dev->nfail; i++) {
			if (dev->fail[i].times && dev->fail[i].from == dev->state && dev->fail[i].to == next) {
				dev->fail[i].times--;
				r = -dev->fail[i].err;
				if (dev->fail[i].end == VFIO_DEVICE_STATE_ERROR) {
					fake_vfio_kill_session(dev);
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
		fv_real()->ops->close(NULL, newfd);
		dev->cur->user_fd = -1;
		fake_vfio_kill_session(dev);
		newfd = -1;
	}
	mig->data_fd = r < 0 ? -1 : newfd;
	return r;
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
		r = fake_vfio_log_start(dev, (void *)f->data);
		if (r == 0)
			dev->st.logging = 1;
		return r;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		if (!dev->cfg.dma_logging)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_SET, 0)) != 1)
			return r;
		fake_vfio_log_free(dev);
		return 0;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
		if (!dev->cfg.dma_logging)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET,
				       sizeof(struct vfio_device_feature_dma_logging_report))) != 1)
			return r;
		return fake_vfio_log_report(dev, (void *)f->data);
	case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
		struct vfio_device_feature_mig_data_size *m = (void *)f->data;
		if (!mig)
			return -ENOTTY;
		if ((r = check_feature(fl, plen, VFIO_DEVICE_FEATURE_GET, sizeof(*m))) != 1)
			return r;
		fake_vfio_advance(dev);
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
	fake_vfio_kill_session(dev);
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
	fake_vfio_log_free(dev);
	fake_vfio_kill_session(dev);
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
		fake_vfio_kill_session(dev);
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
		fake_vfio_log_free(dev);
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
	if ((cfg->log_page_min && !fv_is_pow2(cfg->log_page_min)) || (cfg->log_page_max && !fv_is_pow2(cfg->log_page_max)))
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

PRECOPY_API int precopy_fake_vfio_fail_read(struct precopy_fake_vfio *dev, int err, uint64_t after)
{
	if (!dev || err < 0)
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	dev->read_fail_err = err;
	dev->read_fail_after = after;
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
		fake_vfio_advance(dev);
		r = (int64_t)fake_vfio_produce(dev, dev->cur, max);
	}
	pthread_mutex_unlock(&dev->fk->lock);
	return r;
}

PRECOPY_API void precopy_fake_vfio_get_stats(struct precopy_fake_vfio *dev, struct precopy_fake_vfio_stats *st)
{
	if (!dev || !st)
		return;
	pthread_mutex_lock(&dev->fk->lock);
	fake_vfio_advance(dev);
	*st = dev->st;
	st->state = dev->state;
	st->logging = dev->logging;
	st->log_ranges = dev->nranges;
	st->log_page_size = dev->logging ? dev->log_pg : 0;
	st->initial_left = dev->initial_left;
	st->dirty_bytes = dev->dirty;
	pthread_mutex_unlock(&dev->fk->lock);
}
