/* SPDX-License-Identifier: MIT */
/* ioctl/dirty_priv.h — the private layout of struct precopy_dirty_source,
 * shared by the generic part and device DMA logging (vfio_dma_log.c) and by
 * container dirty tracking, type1 and iommufd (vfio_container.c). Each kind
 * of source supplies a dirty_source_ops table; the generic functions in
 * vfio_dma_log.c validate, keep the started ranges and call it. Not
 * installed. Thread safety: as the public handle (one thread at a time). */
#ifndef PRECOPY_IOCTL_DIRTY_PRIV_H
#define PRECOPY_IOCTL_DIRTY_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/vfio.h"

struct dirty_source_ops {
	/* Start tracking: r[0..n) are sorted, disjoint, aligned to hint. */
	int (*start)(struct precopy_dirty_source *s, const struct precopy_dirty_range *r, size_t n, uint64_t hint);
	/* Read and clear [iova, iova + len) into ram; the range is one of the
	 * started ones. Returns 0 or -errno (the range marked dirty). */
	int (*report)(struct precopy_dirty_source *s, uint64_t iova, uint64_t len, struct precopy_bitmap *ram,
		      uint64_t ram_base, uint64_t ram_pg, uint64_t *newly);
	int (*stop)(struct precopy_dirty_source *s);
};

struct precopy_dirty_source {
	const struct dirty_source_ops *ops;
	const struct precopy_sys *sys;
	int fd;			/* device fd, container fd or iommufd (not owned) */
	uint32_t max_ranges, dev_ranges;
	int started;
	uint64_t page_size;	/* the log's page size, set by start */
	struct precopy_dirty_range *ranges; /* as started, sorted */
	size_t nranges;
	uint64_t *buf;		/* the bounded buffer each chunk is read into */
	size_t buf_words;
	/* container tracking (vfio_container.c) */
	int buf_fixed;		   /* buf_words came from the caller */
	uint64_t max_bitmap_bytes; /* type1: largest bitmap one GET_BITMAP takes */
	uint64_t kernel_pgsize;	   /* type1: the page size the kernel logs at */
	uint32_t hwpt_id;	   /* iommufd: the hardware page table */
	uint32_t flags;		   /* iommufd: PRECOPY_IOMMUFD_DIRTY_* */
	/* a vfio-user device's DMA logging (vfio_user/migrate.c): the handle */
	void *ctx;
};

/* Default bitmap buffer: 4096 words = 256 Ki pages per chunk. */
#define PRECOPY_DIRTY_DEFAULT_BUF_WORDS 4096u

/* A zeroed source of one kind on fd, with a bounded buffer of buf_words
 * words (none when 0: the kind sizes it at start). NULL only when out of
 * memory. Freed by precopy_dirty_source_free(). (vfio_dma_log.c) */
struct precopy_dirty_source *precopy__dirty_source_alloc(const struct dirty_source_ops *ops,
						const struct precopy_sys *sys, int fd, size_t buf_words);

#endif /* PRECOPY_IOCTL_DIRTY_PRIV_H */
