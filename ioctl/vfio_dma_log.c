/* SPDX-License-Identifier: MIT */
/* Dirty sources: a small ops table (start, report into the RAM log, stop;
 * see dirty_priv.h), the generic functions over it, and its implementation
 * over VFIO device DMA logging (container tracking is vfio_container.c).
 * Reports go chunk by chunk through a bounded buffer straight into the RAM
 * dirty log (precopy_bitmap_merge_chunked), so a device log never needs a
 * full-size bitmap, and a failed chunk marks its whole remaining range
 * dirty. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/vfio.h"
#include "dirty_priv.h"
#include "uapi_compat.h"

#define CORE_MAX_RANGES 256u

static int cmp_range(const void *a, const void *b)
{
	const struct precopy_dirty_range *x = a, *y = b;
	return x->iova < y->iova ? -1 : x->iova > y->iova;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* Close the smallest gaps until at most `max` ranges remain (in place,
 * sorted input). Returns the new count. */
static size_t combine(struct vfio_device_feature_dma_logging_range *r, size_t n, size_t max)
{
	while (n > max && n > 1) {
		size_t best = 1;
		for (size_t i = 2; i < n; i++)
			if (r[i].iova - (r[i - 1].iova + r[i - 1].length) <
			    r[best].iova - (r[best - 1].iova + r[best - 1].length))
				best = i;
		r[best - 1].length = r[best].iova + r[best].length - r[best - 1].iova;
		memmove(&r[best], &r[best + 1], (n - best - 1) * sizeof(*r));
		n--;
	}
	return n;
}

/* ---- device DMA logging ------------------------------------------------ */

static int dl_start(struct precopy_dirty_source *s, const struct precopy_dirty_range *ranges, size_t n,
		    uint64_t hint)
{
	struct vfio_device_feature_dma_logging_range *dr;
	struct vfio_device_feature_dma_logging_control ctl;
	size_t max = s->max_ranges, m;
	int r;

	dr = malloc(n * sizeof(*dr));
	if (!dr)
		return -ENOMEM;
	for (;;) {
		for (size_t i = 0; i < n; i++)
			dr[i].iova = s->ranges[i].iova, dr[i].length = s->ranges[i].length;
		m = combine(dr, n, max);
		memset(&ctl, 0, sizeof(ctl));
		ctl.page_size = hint;
		ctl.num_ranges = (uint32_t)m;
		ctl.ranges = (uintptr_t)dr;
		r = precopy_vfio_feature(s->sys, s->fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
					 &ctl, sizeof(ctl));
		if (r != -E2BIG || m == 1)
			break;
		max = m / 2; /* the device takes fewer: combine further */
	}
	free(dr);
	if (r < 0)
		return r;
	if (!is_pow2(ctl.page_size)) {
		/* a driver must report the page size it chose */
		precopy_vfio_feature(s->sys, s->fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
				     NULL, 0);
		return -EPROTO;
	}
	(void)ranges;
	s->page_size = ctl.page_size;
	s->dev_ranges = (uint32_t)m;
	return 0;
}

static int dl_read(void *ctx, uint64_t addr, uint64_t len, uint64_t page_size, uint64_t *words)
{
	struct precopy_dirty_source *s = ctx;
	struct vfio_device_feature_dma_logging_report rep = {
		.iova = addr, .length = len, .page_size = page_size, .bitmap = (uintptr_t)words,
	};

	return precopy_vfio_feature(s->sys, s->fd, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
				    &rep, sizeof(rep));
}

static int dl_report(struct precopy_dirty_source *s, uint64_t iova, uint64_t len, struct precopy_bitmap *ram,
		     uint64_t ram_base, uint64_t ram_pg, uint64_t *newly)
{
	struct precopy_chunk_reader rd = { .read = dl_read, .ctx = s };
	uint64_t rp;

	/* Report at the device's page size where the range allows it (the
	 * bitmap engine converts), else at the RAM page size (the driver
	 * replicates its bits). REPORT takes no page below 4 KiB. */
	if (!((iova | len) & (s->page_size - 1)))
		rp = s->page_size;
	else if (ram_pg >= 4096 && !((iova | len) & (ram_pg - 1)))
		rp = ram_pg;
	else
		rp = 4096;
	rd.page_size = rp;
	return precopy_bitmap_merge_chunked(ram, ram_base, ram_pg, iova, len, (uint64_t)s->buf_words * 64 * rp, &rd,
					    s->buf, s->buf_words, newly);
}

static int dl_stop(struct precopy_dirty_source *s)
{
	return precopy_vfio_feature(s->sys, s->fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL,
				    0);
}

static const struct dirty_source_ops dma_log_ops = {
	.start = dl_start,
	.report = dl_report,
	.stop = dl_stop,
};

struct precopy_dirty_source *precopy__dirty_source_alloc(const struct dirty_source_ops *ops,
						const struct precopy_sys *sys, int fd, size_t buf_words)
{
	struct precopy_dirty_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ops = ops;
	s->sys = sys;
	s->fd = fd;
	s->buf_words = buf_words;
	if (buf_words && !(s->buf = malloc(buf_words * 8))) {
		free(s);
		return NULL;
	}
	return s;
}

PRECOPY_API struct precopy_dirty_source *precopy_vfio_dma_log_new(const struct precopy_sys *sys, int device_fd,
								  uint32_t max_ranges, size_t buf_words, int *err)
{
	struct precopy_dirty_source *s;
	int r;

	if (precopy_sys_validate(sys) < 0 || device_fd < 0 || buf_words > (SIZE_MAX / 64) / 8) {
		r = -EINVAL;
		goto fail;
	}
	r = precopy_vfio_dma_logging_supported(sys, device_fd);
	if (r <= 0) {
		r = r ? r : -EOPNOTSUPP;
		goto fail;
	}
	s = precopy__dirty_source_alloc(&dma_log_ops, sys, device_fd,
			       buf_words ? buf_words : PRECOPY_DIRTY_DEFAULT_BUF_WORDS);
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	s->max_ranges = max_ranges ? max_ranges : CORE_MAX_RANGES;
	if (err)
		*err = 0;
	return s;
fail:
	if (err)
		*err = r;
	return NULL;
}

/* ---- the generic part ---------------------------------------------------- */

PRECOPY_API int precopy_dirty_source_start(struct precopy_dirty_source *src,
					   const struct precopy_dirty_range *ranges, size_t n,
					   uint64_t page_size_hint)
{
	struct precopy_dirty_range *copy;
	int r;

	if (!src || !ranges || !n || n > UINT32_MAX || page_size_hint < 4096 || !is_pow2(page_size_hint))
		return -EINVAL;
	if (src->started)
		return -EBUSY;
	copy = malloc(n * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, ranges, n * sizeof(*copy));
	qsort(copy, n, sizeof(*copy), cmp_range);
	for (size_t i = 0; i < n; i++) {
		if (!copy[i].length || (copy[i].iova | copy[i].length) & (page_size_hint - 1) ||
		    copy[i].iova > UINT64_MAX - copy[i].length ||
		    (i && copy[i].iova < copy[i - 1].iova + copy[i - 1].length)) {
			free(copy);
			return -EINVAL;
		}
	}
	src->ranges = copy;
	src->nranges = n;
	r = src->ops->start(src, copy, n, page_size_hint);
	if (r < 0) {
		free(copy);
		src->ranges = NULL;
		src->nranges = 0;
		return r;
	}
	src->started = 1;
	return 0;
}

PRECOPY_API uint64_t precopy_dirty_source_page_size(const struct precopy_dirty_source *src)
{
	return src && src->started ? src->page_size : 0;
}

PRECOPY_API uint32_t precopy_dirty_source_device_ranges(const struct precopy_dirty_source *src)
{
	return src && src->started ? src->dev_ranges : 0;
}

PRECOPY_API int precopy_dirty_source_report(struct precopy_dirty_source *src, struct precopy_bitmap *ram,
					    uint64_t ram_base, uint64_t ram_page_size, uint64_t *newly)
{
	uint64_t total = 0;
	int first_err = 0;

	if (newly)
		*newly = 0;
	if (!src || !ram || !src->started || !is_pow2(ram_page_size))
		return -EINVAL;
	for (size_t i = 0; i < src->nranges; i++) {
		uint64_t nd = 0;
		int r = src->ops->report(src, src->ranges[i].iova, src->ranges[i].length, ram, ram_base, ram_page_size,
					 &nd);
		total += nd;
		if (r < 0 && !first_err)
			first_err = r; /* keep going: every other range must still be read */
	}
	if (newly)
		*newly = total;
	return first_err;
}

PRECOPY_API int precopy_dirty_source_stop(struct precopy_dirty_source *src)
{
	int r;

	if (!src)
		return -EINVAL;
	if (!src->started)
		return 0;
	r = src->ops->stop(src);
	if (r < 0)
		return r; /* the device may still be logging: stays started, stop again */
	src->started = 0;
	free(src->ranges);
	src->ranges = NULL;
	src->nranges = 0;
	src->page_size = 0;
	return 0;
}

PRECOPY_API void precopy_dirty_source_free(struct precopy_dirty_source *src)
{
	if (!src)
		return;
	precopy_dirty_source_stop(src);
	free(src->ranges); /* left by a stop that failed (a device that went away) */
	free(src->buf);
	free(src);
}
