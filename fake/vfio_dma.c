/* SPDX-License-Identifier: MIT */
/* The VFIO device model's DMA: writes of real bytes into the guest memory
 * it was given, the DMA-logging tracker those writes mark
 * (VFIO_DEVICE_FEATURE_DMA_LOGGING_START/REPORT/STOP with range combining),
 * and the controls that set guest memory and make the device write. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vfio_priv.h"

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

/* The IOMMU in front of the device: does it let [iova, iova + len) through? */
static int iommu_check(struct precopy_fake_vfio *dev, uint64_t iova, uint64_t len)
{
	if (dev->type1)
		return fake_type1_dma_check(dev->type1, iova, len);
	if (dev->iommufd)
		return fake_iommufd_dma_check(dev->iommufd, iova, len);
	return 0;
}

/* The write landed: the device's own log and the IOMMU's dirty state see it. */
static int64_t mark(struct precopy_fake_vfio *dev, uint64_t iova, uint64_t len)
{
	if (dev->type1)
		fake_type1_dma_mark(dev->type1, dev->type1_pinned, iova, len);
	if (dev->iommufd)
		fake_iommufd_dma_mark(dev->iommufd, dev->hwpt_id, iova, len);
	return log_mark(dev, iova, len);
}

int fake_vfio_dma_page(struct precopy_fake_vfio *dev, uint64_t off, uint64_t len, uint8_t byte)
{
	if (iommu_check(dev, dev->mem_iova + off, len) < 0)
		return -EFAULT;
	if (dev->mem)
		memset(dev->mem + off, byte, len);
	mark(dev, dev->mem_iova + off, len);
	return 0;
}


/* ---- DMA logging -------------------------------------------------------- */

void fake_vfio_log_free(struct precopy_fake_vfio *dev)
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

int fake_vfio_log_start(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_control *ctl)
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
	if (!fv_is_pow2(ctl->page_size))
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
			fake_vfio_log_free(dev);
			return -ENOMEM;
		}
	}
	free(rs);
	dev->log_pg = pg;
	dev->logging = 1;
	ctl->page_size = pg;
	return 0;
}

int fake_vfio_log_report(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_report *rep)
{
	uint64_t *ub = (uint64_t *)(uintptr_t)rep->bitmap, rps = rep->page_size, lo_all, hi_all;

	if (rps < 4096 || !fv_is_pow2(rps))
		return -EINVAL;
	if (rep->iova > UINT64_MAX - rep->length)
		return -EOVERFLOW;
	if (!dev->logging || !rep->length)
		return -EINVAL;
	if (!ub)
		return -EFAULT;
	fake_vfio_advance(dev);
	lo_all = rep->iova;
	hi_all = rep->iova + rep->length;
	for (uint32_t i = 0; i < dev->nranges; i++) {
		struct trange *r = &dev->ranges[i];
		uint64_t pg = dev->log_pg, np = (r->end - r->base) / pg, w0, w1;

		/* only the words holding tracker pages that overlap the request
		 * (the bits outside are skipped below anyway) */
		if (hi_all <= r->base || lo_all >= r->end)
			continue;
		w0 = (lo_all > r->base ? (lo_all - r->base) / pg : 0) / 64;
		w1 = hi_all < r->end ? ((hi_all - 1 - r->base) / pg) / 64 + 1 : (np + 63) / 64;
		for (uint64_t w = w0; w < w1; w++) {
			uint64_t word = r->bits[w];

			/* skip eight clear words at a time (a sparse log is mostly zeros) */
			if (!word && !(w & 7) && w + 8 <= w1) {
				const uint64_t *b = &r->bits[w];
				if (!(b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7])) {
					w += 7;
					continue;
				}
			}
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

PRECOPY_API int precopy_fake_vfio_set_guest_mem(struct precopy_fake_vfio *dev, uint64_t iova, void *mem, size_t len)
{
	if (!dev || (!mem && len && !dev->cfg.dma_log_only) || (mem && !len) || (len && iova > UINT64_MAX - len))
		return -EINVAL;
	pthread_mutex_lock(&dev->fk->lock);
	fake_vfio_advance(dev);
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
	fake_vfio_advance(dev);
	if (!fv_has_guest_mem(dev) || iova < dev->mem_iova || iova - dev->mem_iova > dev->mem_len ||
	    len > dev->mem_len - (iova - dev->mem_iova)) {
		r = -EINVAL;
	} else if (!fv_running(dev->state)) {
		r = -EPERM;
	} else if (iommu_check(dev, iova, len) < 0) {
		r = -EFAULT;
	} else {
		if (dev->mem)
			memset(dev->mem + (iova - dev->mem_iova), byte, len);
		r = mark(dev, iova, len);
		dev->st.dma_pages += (len + 4095) / 4096;
	}
	pthread_mutex_unlock(&dev->fk->lock);
	return (int)(r > INT32_MAX ? INT32_MAX : r);
}

