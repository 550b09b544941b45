/* SPDX-License-Identifier: MIT */
/* Container dirty tracking as dirty sources, for devices without DMA
 * logging: the VFIO type1 container (VFIO_IOMMU_DIRTY_PAGES, its limits
 * read from VFIO_IOMMU_GET_INFO's migration capability) and an iommufd
 * hardware page table (IOMMU_HWPT_SET_DIRTY_TRACKING and
 * IOMMU_HWPT_GET_DIRTY_BITMAP). Both report through the same chunked merge
 * as DMA logging: each chunk is one ioctl into the source's bounded buffer,
 * merged into the RAM log with page-size conversion, and a failing chunk
 * marks the rest of its range dirty (precopy_bitmap_merge_chunked). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/vfio.h"
#include "dirty_priv.h"
#include "uapi_compat.h"
#include "sys_retry.h"

/* Bytes of bitmap for npages pages, whole u64 words (the kernel's rule). */
static uint64_t bitmap_bytes(uint64_t npages)
{
	return (npages / 64 + (npages % 64 != 0)) * 8;
}

/* The largest VFIO_IOMMU_GET_INFO we accept: the info plus its capability
 * chain (iova ranges, dma avail, migration) is a few hundred bytes. */
#define INFO_MAX 65536u

/* ---- type1: the migration capability ------------------------------------ */

/* Find VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION in an info buffer of len bytes
 * (the kernel's argsz). Offsets count from the start of the info; each must
 * lie inside it, after the fixed part, and move forward (no loops). */
static int find_mig_cap(const uint8_t *buf, size_t len, struct vfio_iommu_type1_info_cap_migration *out)
{
	const struct vfio_iommu_type1_info *info = (const void *)buf;
	uint32_t off = info->cap_offset, prev = 0;

	while (off) {
		struct vfio_info_cap_header h;

		if (off < sizeof(*info) || off <= prev || off > len || len - off < sizeof(h))
			return -EPROTO;
		memcpy(&h, buf + off, sizeof(h));
		if (h.id == VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION && h.version >= 1) {
			if (len - off < sizeof(*out))
				return -EPROTO;
			memcpy(out, buf + off, sizeof(*out));
			return 0;
		}
		prev = off;
		off = h.next;
	}
	return -EOPNOTSUPP;
}

/* VFIO_IOMMU_GET_INFO with its capability chain: ask with the fixed size,
 * then again with the size the kernel said it needs. */
static int type1_mig_cap(const struct precopy_sys *sys, int fd, struct vfio_iommu_type1_info_cap_migration *cap)
{
	struct vfio_iommu_type1_info info = { .argsz = sizeof(info) };
	uint8_t *buf;
	uint32_t need;
	int r;

	r = precopy__sys_ioctl(sys, fd, VFIO_IOMMU_GET_INFO, &info);
	if (r < 0)
		return r;
	if (!(info.flags & VFIO_IOMMU_INFO_CAPS))
		return -EOPNOTSUPP; /* a kernel from before the capability chain */
	need = info.argsz;
	if (need <= sizeof(info) || need > INFO_MAX)
		return -EPROTO;
	buf = calloc(1, need);
	if (!buf)
		return -ENOMEM;
	((struct vfio_iommu_type1_info *)(void *)buf)->argsz = need;
	r = precopy__sys_ioctl(sys, fd, VFIO_IOMMU_GET_INFO, buf);
	if (r >= 0) {
		const struct vfio_iommu_type1_info *got = (const void *)buf;
		/* The chain may have grown between the calls (a group attached):
		 * then the kernel only updates argsz and leaves cap_offset 0. */
		if (got->argsz > need)
			r = -EAGAIN;
		else
			r = find_mig_cap(buf, need, cap);
	}
	free(buf);
	return r < 0 ? r : 0;
}

/* ---- type1: the source ---------------------------------------------------- */

struct type1_get {
	struct vfio_iommu_type1_dirty_bitmap hdr;
	struct vfio_iommu_type1_dirty_bitmap_get get;
};

static int type1_flag(struct precopy_dirty_source *s, uint32_t flag)
{
	struct vfio_iommu_type1_dirty_bitmap d = { .argsz = sizeof(d), .flags = flag };
	int r = precopy__sys_ioctl(s->sys, s->fd, VFIO_IOMMU_DIRTY_PAGES, &d);

	return r < 0 ? r : 0;
}

static int t1_start(struct precopy_dirty_source *s, const struct precopy_dirty_range *r, size_t n, uint64_t hint)
{
	uint64_t pg = s->kernel_pgsize, most = 0, words;

	(void)hint;
	for (size_t i = 0; i < n; i++) {
		if ((r[i].iova | r[i].length) & (pg - 1))
			return -EINVAL;
		if (r[i].length / pg > most)
			most = r[i].length / pg;
	}
	if (!s->buf_fixed) {
		words = bitmap_bytes(most) / 8;
		if (words > s->max_bitmap_bytes / 8)
			words = s->max_bitmap_bytes / 8;
		if (words != s->buf_words || !s->buf) {
			uint64_t *nb = malloc(words * 8);
			if (!nb)
				return -ENOMEM;
			free(s->buf);
			s->buf = nb;
			s->buf_words = words;
		}
	}
	s->page_size = pg;
	s->dev_ranges = (uint32_t)n;
	return type1_flag(s, VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
}

static int t1_read(void *ctx, uint64_t addr, uint64_t len, uint64_t page_size, uint64_t *words)
{
	struct precopy_dirty_source *s = ctx;
	struct type1_get a;
	int r;

	memset(&a, 0, sizeof(a));
	a.hdr.argsz = sizeof(a);
	a.hdr.flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
	a.get.iova = addr;
	a.get.size = len;
	a.get.bitmap.pgsize = page_size;
	a.get.bitmap.size = bitmap_bytes(len / page_size);
	a.get.bitmap.data = (__u64 *)words;
	r = precopy__sys_ioctl(s->sys, s->fd, VFIO_IOMMU_DIRTY_PAGES, &a);
	return r < 0 ? r : 0;
}

static int t1_report(struct precopy_dirty_source *s, uint64_t iova, uint64_t len, struct precopy_bitmap *ram,
		     uint64_t ram_base, uint64_t ram_pg, uint64_t *newly)
{
	struct precopy_chunk_reader rd = { .read = t1_read, .ctx = s, .page_size = s->page_size };
	uint64_t pages = (uint64_t)s->buf_words * 64, chunk;

	if (pages > s->max_bitmap_bytes * 8)
		pages = s->max_bitmap_bytes * 8;
	chunk = pages > UINT64_MAX / s->page_size ? UINT64_MAX & ~(s->page_size - 1) : pages * s->page_size;
	return precopy_bitmap_merge_chunked(ram, ram_base, ram_pg, iova, len, chunk, &rd, s->buf, s->buf_words, newly);
}

static int t1_stop(struct precopy_dirty_source *s)
{
	return type1_flag(s, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
}

static const struct dirty_source_ops type1_ops = {
	.start = t1_start,
	.report = t1_report,
	.stop = t1_stop,
};

PRECOPY_API struct precopy_dirty_source *precopy_vfio_type1_dirty_new(const struct precopy_sys *sys,
								      int container_fd, size_t buf_words,
								      int *err)
{
	struct vfio_iommu_type1_info_cap_migration cap;
	struct precopy_dirty_source *s = NULL;
	int r;

	if (precopy_sys_validate(sys) < 0 || container_fd < 0 || buf_words > (SIZE_MAX / 64) / 8) {
		r = -EINVAL;
		goto fail;
	}
	memset(&cap, 0, sizeof(cap));
	r = type1_mig_cap(sys, container_fd, &cap);
	if (r < 0)
		goto fail;
	if (!cap.pgsize_bitmap || cap.max_dirty_bitmap_size < 8) {
		r = -EPROTO;
		goto fail;
	}
	cap.max_dirty_bitmap_size &= ~7ull;
	/* a caller's buffer is capped at what one GET_BITMAP takes; without
	 * one, start sizes it to the largest range */
	if (buf_words > cap.max_dirty_bitmap_size / 8)
		buf_words = cap.max_dirty_bitmap_size / 8;
	s = precopy__dirty_source_alloc(&type1_ops, sys, container_fd, buf_words);
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	/* the kernel logs at, and only accepts, its smallest page size */
	s->kernel_pgsize = cap.pgsize_bitmap & (~cap.pgsize_bitmap + 1);
	s->max_bitmap_bytes = cap.max_dirty_bitmap_size;
	s->buf_fixed = buf_words != 0;
	if (err)
		*err = 0;
	return s;
fail:
	if (err)
		*err = r;
	return NULL;
}

/* ---- iommufd: a hardware page table's dirty bits ------------------------ */

static int hwpt_track(struct precopy_dirty_source *s, int on)
{
	struct iommu_hwpt_set_dirty_tracking c = {
		.size = sizeof(c),
		.flags = on ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
		.hwpt_id = s->hwpt_id,
	};
	int r = precopy__sys_ioctl(s->sys, s->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c);

	return r < 0 ? r : 0;
}

static int fd_start(struct precopy_dirty_source *s, const struct precopy_dirty_range *r, size_t n, uint64_t hint)
{
	(void)r;
	s->page_size = hint;
	s->dev_ranges = (uint32_t)n;
	return hwpt_track(s, 1);
}

static int fd_read(void *ctx, uint64_t addr, uint64_t len, uint64_t page_size, uint64_t *words)
{
	struct precopy_dirty_source *s = ctx;
	struct iommu_hwpt_get_dirty_bitmap g = {
		.size = sizeof(g),
		.hwpt_id = s->hwpt_id,
		.flags = (s->flags & PRECOPY_IOMMUFD_DIRTY_NO_CLEAR) ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0,
		.iova = addr,
		.length = len,
		.page_size = page_size,
		.data = (uintptr_t)words,
	};
	int r = precopy__sys_ioctl(s->sys, s->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g);

	return r < 0 ? r : 0;
}

static int fd_report(struct precopy_dirty_source *s, uint64_t iova, uint64_t len, struct precopy_bitmap *ram,
		     uint64_t ram_base, uint64_t ram_pg, uint64_t *newly)
{
	struct precopy_chunk_reader rd = { .read = fd_read, .ctx = s, .page_size = s->page_size };
	uint64_t pages = (uint64_t)s->buf_words * 64;
	uint64_t chunk = pages > UINT64_MAX / s->page_size ? UINT64_MAX & ~(s->page_size - 1) : pages * s->page_size;

	return precopy_bitmap_merge_chunked(ram, ram_base, ram_pg, iova, len, chunk, &rd, s->buf, s->buf_words, newly);
}

static int fd_stop(struct precopy_dirty_source *s)
{
	return hwpt_track(s, 0);
}

static const struct dirty_source_ops iommufd_ops = {
	.start = fd_start,
	.report = fd_report,
	.stop = fd_stop,
};

PRECOPY_API struct precopy_dirty_source *precopy_iommufd_dirty_new(const struct precopy_sys *sys, int iommufd,
								   uint32_t hwpt_id, uint32_t flags,
								   size_t buf_words, int *err)
{
	struct precopy_dirty_source *s;
	int r;

	if (precopy_sys_validate(sys) < 0 || iommufd < 0 || (flags & ~PRECOPY_IOMMUFD_DIRTY_NO_CLEAR) ||
	    buf_words > (SIZE_MAX / 64) / 8) {
		r = -EINVAL;
		goto fail;
	}
	s = precopy__dirty_source_alloc(&iommufd_ops, sys, iommufd,
			       buf_words ? buf_words : PRECOPY_DIRTY_DEFAULT_BUF_WORDS);
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	s->hwpt_id = hwpt_id;
	s->flags = flags;
	s->buf_fixed = buf_words != 0;
	if (err)
		*err = 0;
	return s;
fail:
	if (err)
		*err = r;
	return NULL;
}
