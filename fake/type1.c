/* SPDX-License-Identifier: MIT */
/* A userspace model of a VFIO type1 (v2) container's observable contract
 * for dirty tracking: VFIO_IOMMU_GET_INFO with the migration capability,
 * DMA mappings, and VFIO_IOMMU_DIRTY_PAGES (START / STOP / GET_BITMAP) with
 * the kernel's checks in the kernel's order. What type1 reports is modelled
 * as the kernel decides it: an ordinary (IOMMU-backed) device in the
 * container makes every mapped page dirty in every report; devices that
 * pin what they write (pinned_scope) make exactly those pages dirty. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vfio_priv.h"

#define MAX_DEVS 8
#define DEFAULT_PGSIZES ((1ull << 12) | (1ull << 21) | (1ull << 30))
/* The kernel's limit: INT_MAX pages, in whole u64 words. */
#define KERNEL_MAX_BITMAP (((uint64_t)INT32_MAX + 63) / 64 * 8)
#define DEFAULT_DMA_LIMIT 65535u

struct t1_map {
	uint64_t iova, size, vaddr;
	uint64_t *bits; /* while tracking: one bit per smallest IOMMU page */
};

struct precopy_fake_type1 {
	struct precopy_fake_kernel *fk;
	struct precopy_fake_type1_cfg cfg;
	int fd;
	uint64_t pg; /* smallest IOMMU page: the only page size GET_BITMAP takes */
	struct t1_map *maps; /* sorted by iova, disjoint */
	size_t nmaps, cap;
	int tracking;
	struct precopy_fake_vfio *devs[MAX_DEVS];
	unsigned int ndevs, nonpinned;
	struct precopy_fake_type1 *next;
};

static uint64_t words_for(uint64_t npages)
{
	return npages / 64 + (npages % 64 != 0);
}

static void set_bits(uint64_t *w, uint64_t first, uint64_t n)
{
	for (uint64_t b = first; b < first + n; b++)
		w[b / 64] |= 1ull << (b % 64);
}

/* First mapping whose end is above addr, or nmaps. */
static size_t find_from(const struct precopy_fake_type1 *ct, uint64_t addr)
{
	size_t lo = 0, hi = ct->nmaps;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ct->maps[mid].iova + ct->maps[mid].size <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The mapping containing addr, or NULL. */
static struct t1_map *map_at(struct precopy_fake_type1 *ct, uint64_t addr)
{
	size_t i = find_from(ct, addr);

	return i < ct->nmaps && ct->maps[i].iova <= addr ? &ct->maps[i] : NULL;
}

static int alloc_bits(struct precopy_fake_type1 *ct, struct t1_map *m)
{
	uint64_t npages = m->size / ct->pg;

	if (npages > INT32_MAX)
		return -EINVAL; /* the kernel's per-mapping bitmap limit */
	m->bits = calloc(words_for(npages) ? words_for(npages) : 1, 8);
	return m->bits ? 0 : -ENOMEM;
}

static void free_bits(struct precopy_fake_type1 *ct)
{
	for (size_t i = 0; i < ct->nmaps; i++) {
		free(ct->maps[i].bits);
		ct->maps[i].bits = NULL;
	}
}

/* ---- VFIO_IOMMU_GET_INFO -------------------------------------------------- */

static int get_info(struct precopy_fake_type1 *ct, struct vfio_iommu_type1_info *info)
{
	struct vfio_iommu_type1_info_cap_migration mig;
	struct vfio_iommu_type1_info_dma_avail avail;
	const size_t minsz = offsetof(struct vfio_iommu_type1_info, iova_pgsizes) + sizeof(info->iova_pgsizes);
	const size_t mig_sz = (sizeof(mig) + 7) & ~(size_t)7, avail_sz = (sizeof(avail) + 7) & ~(size_t)7;
	size_t caps = 0;
	uint8_t *out = (uint8_t *)info;

	uint32_t argsz;

	if (!info)
		return -EFAULT;
	argsz = info->argsz;
	if (argsz < minsz)
		return -EINVAL;
	info->flags = VFIO_IOMMU_INFO_PGSIZES;
	info->iova_pgsizes = ct->cfg.pgsize_bitmap;
	caps = (ct->cfg.no_migration_cap ? 0 : mig_sz) + avail_sz;
	info->flags |= VFIO_IOMMU_INFO_CAPS;
	if (argsz < sizeof(*info) + caps) {
		/* the kernel copies back min(argsz, sizeof(info)) bytes */
		info->argsz = (uint32_t)(sizeof(*info) + caps);
		if (argsz >= sizeof(*info))
			info->cap_offset = 0;
		return 0;
	}
	memset(&mig, 0, sizeof(mig));
	memset(&avail, 0, sizeof(avail));
	size_t off = sizeof(*info);
	if (!ct->cfg.no_migration_cap) {
		mig.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION;
		mig.header.version = 1;
		mig.header.next = (uint32_t)(off + mig_sz);
		mig.flags = 0;
		mig.pgsize_bitmap = ct->pg;
		mig.max_dirty_bitmap_size = ct->cfg.max_bitmap_bytes;
		memset(out + off, 0, mig_sz);
		memcpy(out + off, &mig, sizeof(mig));
		off += mig_sz;
	}
	avail.header.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL;
	avail.header.version = 1;
	avail.header.next = 0;
	avail.avail = ct->cfg.dma_entry_limit - (uint32_t)ct->nmaps;
	memset(out + off, 0, avail_sz);
	memcpy(out + off, &avail, sizeof(avail));
	info->cap_offset = sizeof(*info);
	return 0;
}

/* ---- MAP / UNMAP ---------------------------------------------------------- */

static int map_dma(struct precopy_fake_type1 *ct, struct vfio_iommu_type1_dma_map *m)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dma_map, size) + sizeof(m->size);
	uint64_t mask = ct->pg - 1;
	size_t pos;
	struct t1_map nm;

	if (!m)
		return -EFAULT;
	if (m->argsz < minsz || (m->flags & ~(uint32_t)(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)))
		return -EINVAL; /* VFIO_DMA_MAP_FLAG_VADDR: not modelled */
	if (!m->size || ((m->size | m->iova | m->vaddr) & mask))
		return -EINVAL;
	if (m->iova + m->size - 1 < m->iova || m->vaddr + m->size - 1 < m->vaddr)
		return -EINVAL;
	pos = find_from(ct, m->iova);
	if (pos < ct->nmaps && ct->maps[pos].iova < m->iova + m->size)
		return -EEXIST;
	if (ct->nmaps >= ct->cfg.dma_entry_limit)
		return -ENOSPC;
	if (ct->nmaps == ct->cap) {
		size_t ncap = ct->cap ? ct->cap * 2 : 8;
		struct t1_map *g = realloc(ct->maps, ncap * sizeof(*g));
		if (!g)
			return -ENOMEM;
		ct->maps = g;
		ct->cap = ncap;
	}
	memset(&nm, 0, sizeof(nm));
	nm.iova = m->iova;
	nm.size = m->size;
	nm.vaddr = m->vaddr;
	if (ct->tracking) {
		int r = alloc_bits(ct, &nm);
		if (r < 0)
			return r;
	}
	memmove(&ct->maps[pos + 1], &ct->maps[pos], (ct->nmaps - pos) * sizeof(*ct->maps));
	ct->maps[pos] = nm;
	ct->nmaps++;
	return 0;
}

static int unmap_dma(struct precopy_fake_type1 *ct, struct vfio_iommu_type1_dma_unmap *u)
{
	const size_t minsz = offsetof(struct vfio_iommu_type1_dma_unmap, size) + sizeof(u->size);
	uint64_t mask = ct->pg - 1, end, done = 0;
	struct t1_map *m;
	size_t i;

	if (!u)
		return -EFAULT;
	if (u->argsz < minsz || u->flags)
		return -EINVAL; /* GET_DIRTY_BITMAP, ALL, VADDR: not modelled */
	if ((u->iova & mask) || !u->size || (u->size & mask) || u->iova + u->size - 1 < u->iova)
		return -EINVAL;
	end = u->iova + u->size;
	/* v2: a range may not cut a mapping */
	m = map_at(ct, u->iova);
	if (m && m->iova != u->iova)
		return -EINVAL;
	m = map_at(ct, end - 1);
	if (m && m->iova + m->size != end)
		return -EINVAL;
	i = find_from(ct, u->iova);
	while (i < ct->nmaps && ct->maps[i].iova < end) {
		done += ct->maps[i].size;
		free(ct->maps[i].bits);
		memmove(&ct->maps[i], &ct->maps[i + 1], (ct->nmaps - i - 1) * sizeof(*ct->maps));
		ct->nmaps--;
	}
	u->size = done;
	return 0;
}

/* ---- VFIO_IOMMU_DIRTY_PAGES ---------------------------------------------- */

static int get_bitmap(struct precopy_fake_type1 *ct, struct vfio_iommu_type1_dirty_bitmap *d)
{
	struct vfio_iommu_type1_dirty_bitmap_get g;
	const size_t minsz = sizeof(*d);
	uint64_t npages, end, *ub;
	struct t1_map *m;

	if (d->argsz - minsz < sizeof(g))
		return -EINVAL;
	memcpy(&g, d->data, sizeof(g));
	if (g.iova + g.size < g.iova)
		return -EINVAL;
	npages = g.bitmap.pgsize ? g.size >> __builtin_ctzll(g.bitmap.pgsize) : 0;
	if (!npages || !g.bitmap.size || g.bitmap.size > ct->cfg.max_bitmap_bytes ||
	    g.bitmap.size < words_for(npages) * 8)
		return -EINVAL;
	if (g.bitmap.pgsize != ct->pg || (g.iova & (ct->pg - 1)) || !g.size || (g.size & (ct->pg - 1)))
		return -EINVAL;
	if (!ct->tracking)
		return -EINVAL;
	end = g.iova + g.size;
	m = map_at(ct, g.iova);
	if (m && m->iova != g.iova)
		return -EINVAL; /* the range must not cut a mapping */
	m = map_at(ct, end - 1);
	if (m && m->iova + m->size != end)
		return -EINVAL;
	ub = (uint64_t *)g.bitmap.data;
	for (size_t i = find_from(ct, g.iova); i < ct->nmaps && ct->maps[i].iova < end; i++) {
		struct t1_map *mp = &ct->maps[i];
		uint64_t first = (mp->iova - g.iova) / ct->pg, n = mp->size / ct->pg;

		if (!ub)
			return -EFAULT;
		if (ct->nonpinned) {
			set_bits(ub, first, n);
		} else {
			for (uint64_t b = 0; b < n; b++)
				if (mp->bits[b / 64] & (1ull << (b % 64)))
					ub[(first + b) / 64] |= 1ull << ((first + b) % 64);
		}
		memset(mp->bits, 0, words_for(n) * 8);
	}
	return 0;
}

static int dirty_pages(struct precopy_fake_type1 *ct, struct vfio_iommu_type1_dirty_bitmap *d)
{
	const uint32_t mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
			      VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;

	if (ct->cfg.v1)
		return -EACCES;
	if (!d)
		return -EFAULT;
	if (d->argsz < sizeof(*d) || (d->flags & ~mask))
		return -EINVAL;
	if (d->flags & (d->flags - 1))
		return -EINVAL; /* one operation at a time */
	if (d->flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
		if (ct->tracking)
			return 0;
		for (size_t i = 0; i < ct->nmaps; i++) {
			int r = alloc_bits(ct, &ct->maps[i]);
			if (r < 0) {
				free_bits(ct);
				return r;
			}
		}
		ct->tracking = 1;
		return 0;
	}
	if (d->flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
		if (ct->tracking) {
			free_bits(ct);
			ct->tracking = 0;
		}
		return 0;
	}
	if (d->flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)
		return get_bitmap(ct, d);
	return -EINVAL; /* no flag */
}

int fake_type1_ioctl(struct precopy_fake_type1 *ct, unsigned long req, void *arg)
{
	switch (req) {
	case VFIO_GET_API_VERSION:
		return VFIO_API_VERSION;
	case VFIO_CHECK_EXTENSION: {
		unsigned long ext = (unsigned long)arg;
		return ext == VFIO_TYPE1_IOMMU || (!ct->cfg.v1 && ext == VFIO_TYPE1v2_IOMMU);
	}
	case VFIO_IOMMU_GET_INFO:
		return get_info(ct, arg);
	case VFIO_IOMMU_MAP_DMA:
		return map_dma(ct, arg);
	case VFIO_IOMMU_UNMAP_DMA:
		return unmap_dma(ct, arg);
	case VFIO_IOMMU_DIRTY_PAGES:
		return dirty_pages(ct, arg);
	default:
		return -ENOTTY;
	}
}

/* ---- DMA of attached devices ---------------------------------------------- */

int fake_type1_dma_check(struct precopy_fake_type1 *ct, uint64_t iova, uint64_t len)
{
	uint64_t at = iova, end = iova + len;

	while (at < end) {
		struct t1_map *m = map_at(ct, at);
		if (!m)
			return -EFAULT;
		at = m->iova + m->size;
	}
	return 0;
}

void fake_type1_dma_mark(struct precopy_fake_type1 *ct, int pinned, uint64_t iova, uint64_t len)
{
	uint64_t end = iova + len;

	/* An IOMMU-backed device's writes are invisible to type1 (it reports
	 * every mapped page instead); a pinning device marks what it pins. */
	if (!pinned || !ct->tracking || !len)
		return;
	for (size_t i = find_from(ct, iova); i < ct->nmaps && ct->maps[i].iova < end; i++) {
		struct t1_map *m = &ct->maps[i];
		uint64_t lo = iova > m->iova ? iova : m->iova;
		uint64_t hi = end < m->iova + m->size ? end : m->iova + m->size;

		for (uint64_t p = (lo - m->iova) / ct->pg; p <= (hi - 1 - m->iova) / ct->pg; p++)
			m->bits[p / 64] |= 1ull << (p % 64);
	}
}

/* ---- lifetime and controls ------------------------------------------------ */

void fake_type1_closed(struct precopy_fake_type1 *ct)
{
	/* Releasing the container ends tracking and drops the mappings. */
	free_bits(ct);
	ct->tracking = 0;
	ct->nmaps = 0;
	ct->fd = -1;
}

void fake_type1_free_all(struct precopy_fake_kernel *fk)
{
	struct precopy_fake_type1 *ct = fk->type1s, *n;

	for (; ct; ct = n) {
		n = ct->next;
		for (unsigned int i = 0; i < ct->ndevs; i++)
			ct->devs[i]->type1 = NULL;
		if (ct->fd >= 0) {
			fk_unregister(fk, ct->fd);
			close(ct->fd);
		}
		for (size_t i = 0; i < ct->nmaps; i++)
			free(ct->maps[i].bits);
		free(ct->maps);
		free(ct);
	}
	fk->type1s = NULL;
}

PRECOPY_API int precopy_fake_type1_new(struct precopy_fake_kernel *fk, const struct precopy_fake_type1_cfg *cfg,
				       struct precopy_fake_type1 **out)
{
	struct precopy_fake_type1 *ct;
	int fd, r;

	if (!fk || !cfg)
		return -EINVAL;
	ct = calloc(1, sizeof(*ct));
	if (!ct)
		return -ENOMEM;
	ct->cfg = *cfg;
	if (!ct->cfg.pgsize_bitmap)
		ct->cfg.pgsize_bitmap = DEFAULT_PGSIZES;
	if (!ct->cfg.max_bitmap_bytes)
		ct->cfg.max_bitmap_bytes = KERNEL_MAX_BITMAP;
	if (!ct->cfg.dma_entry_limit)
		ct->cfg.dma_entry_limit = DEFAULT_DMA_LIMIT;
	ct->pg = ct->cfg.pgsize_bitmap & (~ct->cfg.pgsize_bitmap + 1);
	if (ct->pg < 4096 || ct->cfg.max_bitmap_bytes < 8) {
		free(ct);
		return -EINVAL;
	}
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(ct);
		return r;
	}
	pthread_mutex_lock(&fk->lock);
	r = fk_register(fk, fd, FK_TYPE1, ct);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		close(fd);
		free(ct);
		return r;
	}
	ct->fk = fk;
	ct->fd = fd;
	ct->next = fk->type1s;
	fk->type1s = ct;
	pthread_mutex_unlock(&fk->lock);
	if (out)
		*out = ct;
	return fd;
}

PRECOPY_API int precopy_fake_type1_attach(struct precopy_fake_type1 *ct, struct precopy_fake_vfio *dev,
					  int pinned_scope)
{
	int r = 0;

	if (!ct || !dev)
		return -EINVAL;
	pthread_mutex_lock(&ct->fk->lock);
	if (dev->type1 || dev->iommufd) {
		r = -EBUSY;
	} else if (ct->ndevs >= MAX_DEVS) {
		r = -ENOSPC;
	} else {
		fake_vfio_advance(dev); /* DMA so far happened before the attach */
		ct->devs[ct->ndevs++] = dev;
		ct->nonpinned += !pinned_scope;
		dev->type1 = ct;
		dev->type1_pinned = !!pinned_scope;
	}
	pthread_mutex_unlock(&ct->fk->lock);
	return r;
}
