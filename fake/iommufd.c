/* SPDX-License-Identifier: MIT */
/* A userspace model of iommufd's dirty tracking contract: one IOAS, its
 * mappings, hardware page tables over it, IOMMU_HWPT_SET_DIRTY_TRACKING
 * and IOMMU_HWPT_GET_DIRTY_BITMAP with iommufd's generic size checks, the
 * commands' own checks, and an IOMMU driver's dirty bits: one per IOPTE,
 * set by device DMA while tracking, reported over the whole IOPTE and
 * cleared as a whole. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfio_priv.h"

#define MAX_HWPT 8
#define FIRST_ID 2 /* object ids start above the IOAS's */

struct area {
	uint64_t iova, len;
	uint64_t *bits[MAX_HWPT]; /* per HWPT: IOPTE bits from align_down(iova) */
};

struct hwpt {
	uint32_t id;
	int dirty_ops; /* allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING */
	int tracking;
	uint64_t iopte;
};

struct precopy_fake_iommufd {
	struct precopy_fake_kernel *fk;
	int fd;
	uint64_t align;
	struct area *areas; /* sorted, disjoint */
	size_t nareas, cap;
	struct hwpt hw[MAX_HWPT];
	unsigned int nhw;
	struct precopy_fake_iommufd *next;
};

static uint64_t first_pte(const struct hwpt *h, const struct area *a)
{
	return a->iova & ~(h->iopte - 1);
}

static uint64_t npte(const struct hwpt *h, const struct area *a)
{
	uint64_t end = a->iova + a->len, base = first_pte(h, a);

	return (end - base + h->iopte - 1) / h->iopte;
}

static int alloc_area_bits(struct area *a, const struct hwpt *h, unsigned int k)
{
	a->bits[k] = calloc((npte(h, a) + 63) / 64, 8);
	return a->bits[k] ? 0 : -ENOMEM;
}

static struct hwpt *find_hwpt(struct precopy_fake_iommufd *x, uint32_t id, unsigned int *k)
{
	for (unsigned int i = 0; i < x->nhw; i++)
		if (x->hw[i].id == id) {
			if (k)
				*k = i;
			return &x->hw[i];
		}
	return NULL;
}

/* Is [iova, last] covered by areas without a hole? */
static int contiguous(const struct precopy_fake_iommufd *x, uint64_t iova, uint64_t last)
{
	uint64_t at = iova;

	for (size_t i = 0; i < x->nareas; i++) {
		const struct area *a = &x->areas[i];
		if (a->iova + a->len - 1 < at)
			continue;
		if (a->iova > at)
			return 0;
		if (a->iova + a->len - 1 >= last)
			return 1;
		at = a->iova + a->len;
	}
	return 0;
}

/* iommufd's generic argument handling: the size in the first u32 must
 * reach the command's last mandatory field; bytes past the struct the
 * kernel knows must be zero. */
static int check_size(const void *arg, size_t min, size_t known)
{
	uint32_t size;

	if (!arg)
		return -EFAULT;
	memcpy(&size, arg, sizeof(size));
	if (size < min)
		return -EINVAL;
	for (size_t i = known; i < size; i++)
		if (((const uint8_t *)arg)[i])
			return -E2BIG;
	return 0;
}

static void clear_all(struct precopy_fake_iommufd *x, const struct hwpt *h, unsigned int k)
{
	for (size_t i = 0; i < x->nareas; i++)
		memset(x->areas[i].bits[k], 0, (npte(h, &x->areas[i]) + 63) / 64 * 8);
}

static int set_tracking(struct precopy_fake_iommufd *x, struct iommu_hwpt_set_dirty_tracking *c)
{
	struct hwpt *h;
	unsigned int k;
	int r;

	r = check_size(c, offsetof(struct iommu_hwpt_set_dirty_tracking, __reserved) + sizeof(c->__reserved),
		       sizeof(*c));
	if (r < 0)
		return r;
	if (c->flags & ~(uint32_t)IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
		return -EOPNOTSUPP;
	h = find_hwpt(x, c->hwpt_id, &k);
	if (!h)
		return -ENOENT;
	if (!h->dirty_ops)
		return -EOPNOTSUPP;
	if (c->flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
		clear_all(x, h, k); /* a clean start */
	h->tracking = !!(c->flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
	return 0;
}

static int get_bitmap(struct precopy_fake_iommufd *x, struct iommu_hwpt_get_dirty_bitmap *g)
{
	uint64_t last, *ub, ps;
	struct hwpt *h;
	unsigned int k;
	int r;

	r = check_size(g, offsetof(struct iommu_hwpt_get_dirty_bitmap, data) + sizeof(g->data), sizeof(*g));
	if (r < 0)
		return r;
	if ((g->flags & ~(uint32_t)IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) || g->__reserved)
		return -EOPNOTSUPP;
	h = find_hwpt(x, g->hwpt_id, &k);
	if (!h)
		return -ENOENT;
	/* the range check comes before the driver is asked */
	if (__builtin_add_overflow(g->iova, g->length - 1, &last))
		return -EOVERFLOW;
	if ((g->iova & (x->align - 1)) || ((last + 1) & (x->align - 1)))
		return -EINVAL;
	ps = g->page_size;
	if (!ps || (ps & (ps - 1)))
		return -EINVAL;
	if ((g->iova & (ps - 1)) || ((last + 1) & (ps - 1)))
		return -EINVAL;
	if (!h->dirty_ops)
		return -EOPNOTSUPP;
	if (!h->tracking)
		return -EINVAL;
	if (!contiguous(x, g->iova, last))
		return -EINVAL;
	ub = (uint64_t *)(uintptr_t)g->data;
	if (!ub)
		return -EFAULT;
	for (size_t i = 0; i < x->nareas; i++) {
		struct area *a = &x->areas[i];
		uint64_t base = first_pte(h, a), n = npte(h, a);

		if (a->iova > last || a->iova + a->len - 1 < g->iova)
			continue;
		for (uint64_t p = 0; p < n; p++) {
			uint64_t lo = base + p * h->iopte, hi = lo + h->iopte - 1;

			if (!(a->bits[k][p / 64] & (1ull << (p % 64))) || hi < g->iova || lo > last)
				continue;
			if (lo < g->iova)
				lo = g->iova;
			if (hi > last)
				hi = last;
			for (uint64_t q = (lo - g->iova) / ps; q <= (hi - g->iova) / ps; q++)
				ub[q / 64] |= 1ull << (q % 64);
			if (!(g->flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR))
				a->bits[k][p / 64] &= ~(1ull << (p % 64));
		}
	}
	return 0;
}

int fake_iommufd_ioctl(struct precopy_fake_iommufd *x, unsigned long req, void *arg)
{
	switch (req) {
	case IOMMU_HWPT_SET_DIRTY_TRACKING:
		return set_tracking(x, arg);
	case IOMMU_HWPT_GET_DIRTY_BITMAP:
		return get_bitmap(x, arg);
	default:
		return -ENOTTY;
	}
}

/* ---- DMA of attached devices ---------------------------------------------- */

int fake_iommufd_dma_check(struct precopy_fake_iommufd *x, uint64_t iova, uint64_t len)
{
	return len && contiguous(x, iova, iova + len - 1) ? 0 : -EFAULT;
}

void fake_iommufd_dma_mark(struct precopy_fake_iommufd *x, uint32_t hwpt_id, uint64_t iova, uint64_t len)
{
	unsigned int k;
	struct hwpt *h = find_hwpt(x, hwpt_id, &k);
	uint64_t last = iova + len - 1;

	if (!h || !h->tracking || !len)
		return;
	for (size_t i = 0; i < x->nareas; i++) {
		struct area *a = &x->areas[i];
		uint64_t base = first_pte(h, a), lo, hi;

		if (a->iova > last || a->iova + a->len - 1 < iova)
			continue;
		lo = iova > a->iova ? iova : a->iova;
		hi = last < a->iova + a->len - 1 ? last : a->iova + a->len - 1;
		for (uint64_t p = (lo - base) / h->iopte; p <= (hi - base) / h->iopte; p++)
			a->bits[k][p / 64] |= 1ull << (p % 64);
	}
}

/* ---- lifetime and controls ------------------------------------------------ */

void fake_iommufd_closed(struct precopy_fake_iommufd *x)
{
	x->fd = -1;
}

static void free_one(struct precopy_fake_iommufd *x)
{
	for (size_t i = 0; i < x->nareas; i++)
		for (unsigned int k = 0; k < MAX_HWPT; k++)
			free(x->areas[i].bits[k]);
	free(x->areas);
	free(x);
}

void fake_iommufd_free_all(struct precopy_fake_kernel *fk)
{
	struct precopy_fake_iommufd *x = fk->iommufds, *n;

	for (; x; x = n) {
		n = x->next;
		for (struct precopy_fake_vfio *d = fk->devs; d; d = d->next)
			if (d->iommufd == x)
				d->iommufd = NULL;
		if (x->fd >= 0) {
			fk_unregister(fk, x->fd);
			close(x->fd);
		}
		free_one(x);
	}
	fk->iommufds = NULL;
}

PRECOPY_API int precopy_fake_iommufd_new(struct precopy_fake_kernel *fk, uint64_t iova_align,
					 struct precopy_fake_iommufd **out)
{
	struct precopy_fake_iommufd *x;
	int fd, r;

	if (!fk || (iova_align & (iova_align - 1)))
		return -EINVAL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->align = iova_align ? iova_align : 4096;
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(x);
		return r;
	}
	pthread_mutex_lock(&fk->lock);
	r = fk_register(fk, fd, FK_IOMMUFD, x);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		close(fd);
		free(x);
		return r;
	}
	x->fk = fk;
	x->fd = fd;
	x->next = fk->iommufds;
	fk->iommufds = x;
	pthread_mutex_unlock(&fk->lock);
	if (out)
		*out = x;
	return fd;
}

PRECOPY_API int precopy_fake_iommufd_hwpt_alloc(struct precopy_fake_iommufd *x, int dirty_tracking,
						uint64_t iopte_size, uint32_t *hwpt_id)
{
	int r = 0;

	if (!x || !hwpt_id || (iopte_size & (iopte_size - 1)) || (iopte_size && iopte_size < x->align))
		return -EINVAL;
	pthread_mutex_lock(&x->fk->lock);
	if (x->nhw >= MAX_HWPT) {
		r = -ENOSPC;
	} else {
		unsigned int k = x->nhw;
		struct hwpt *h = &x->hw[k];

		h->id = FIRST_ID + k;
		h->dirty_ops = !!dirty_tracking;
		h->tracking = 0;
		h->iopte = iopte_size ? iopte_size : x->align;
		for (size_t i = 0; i < x->nareas && !r; i++)
			r = alloc_area_bits(&x->areas[i], h, k);
		if (r < 0) {
			for (size_t i = 0; i < x->nareas; i++) {
				free(x->areas[i].bits[k]);
				x->areas[i].bits[k] = NULL;
			}
		} else {
			x->nhw++;
			*hwpt_id = h->id;
		}
	}
	pthread_mutex_unlock(&x->fk->lock);
	return r;
}

PRECOPY_API int precopy_fake_iommufd_map(struct precopy_fake_iommufd *x, uint64_t iova, uint64_t len)
{
	struct area a;
	size_t pos;
	int r = 0;

	if (!x || !len || ((iova | len) & (x->align - 1)) || iova + len - 1 < iova)
		return -EINVAL;
	pthread_mutex_lock(&x->fk->lock);
	for (pos = 0; pos < x->nareas && x->areas[pos].iova + x->areas[pos].len <= iova; pos++)
		;
	if (pos < x->nareas && x->areas[pos].iova <= iova + len - 1) {
		r = -EEXIST;
		goto out;
	}
	if (x->nareas == x->cap) {
		size_t ncap = x->cap ? x->cap * 2 : 8;
		struct area *g = realloc(x->areas, ncap * sizeof(*g));
		if (!g) {
			r = -ENOMEM;
			goto out;
		}
		x->areas = g;
		x->cap = ncap;
	}
	memset(&a, 0, sizeof(a));
	a.iova = iova;
	a.len = len;
	for (unsigned int k = 0; k < x->nhw && !r; k++)
		r = alloc_area_bits(&a, &x->hw[k], k);
	if (r < 0) {
		for (unsigned int k = 0; k < MAX_HWPT; k++)
			free(a.bits[k]);
		goto out;
	}
	memmove(&x->areas[pos + 1], &x->areas[pos], (x->nareas - pos) * sizeof(*x->areas));
	x->areas[pos] = a;
	x->nareas++;
out:
	pthread_mutex_unlock(&x->fk->lock);
	return r;
}

PRECOPY_API int precopy_fake_iommufd_attach(struct precopy_fake_iommufd *x, uint32_t hwpt_id,
					    struct precopy_fake_vfio *dev)
{
	int r = 0;

	if (!x || !dev)
		return -EINVAL;
	pthread_mutex_lock(&x->fk->lock);
	if (!find_hwpt(x, hwpt_id, NULL)) {
		r = -ENOENT;
	} else if (dev->type1 || dev->iommufd) {
		r = -EBUSY;
	} else {
		fake_vfio_advance(dev); /* DMA so far happened before the attach */
		dev->iommufd = x;
		dev->hwpt_id = hwpt_id;
	}
	pthread_mutex_unlock(&x->fk->lock);
	return r;
}
