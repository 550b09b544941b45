/* SPDX-License-Identifier: MIT */
/* vfio_user/migrate.c — what the engines need of a vfio-user device
 * (vu_priv.h): state moves one arc at a time, and its DMA dirtiness (the
 * device's DMA log plus the handle's DMA_WRITE log) as a dirty source. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/bitmap.h"
#include "vu_priv.h"
#include "../ioctl/dirty_priv.h"
#include "../ioctl/uapi_compat.h"

/* DEVICE_RESET and the state read back (ERROR if it cannot be read).
 * Returns the reset's -errno or 0. */
static int reset_out(struct precopy_vfio_user *c, uint32_t *state)
{
	int r = precopy_vfio_user_reset(c);

	if (precopy_vfio_user_get_state(c, state) < 0)
		*state = VFIO_DEVICE_STATE_ERROR;
	return r;
}

int precopy__vu_move(struct precopy_vfio_user *c, uint32_t *state, uint32_t target, uint64_t mig_flags,
		     uint32_t recover, unsigned *arcs, int *recovered)
{
	uint32_t path[8];
	int n = precopy_vfio_fsm_path(*state, target, mig_flags, path, 8), r = 0;

	if (recovered)
		*recovered = 0;
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		r = precopy_vfio_user_set_state(c, path[i]);
		if (r < 0)
			break;
		*state = path[i];
		if (arcs)
			(*arcs)++;
	}
	if (r == 0)
		return 0;
	/* where is it now? (a broken connection leaves it unknown: ERROR) */
	if (precopy_vfio_user_get_state(c, state) < 0)
		*state = VFIO_DEVICE_STATE_ERROR;
	else if (*state == VFIO_DEVICE_STATE_ERROR && recover != VFIO_DEVICE_STATE_ERROR)
		reset_out(c, state); /* the specification's way out of ERROR */
	if (recover != VFIO_DEVICE_STATE_ERROR && *state != VFIO_DEVICE_STATE_ERROR) {
		n = precopy_vfio_fsm_path(*state, recover, mig_flags, path, 8);
		for (int i = 0; i < n; i++) {
			if (precopy_vfio_user_set_state(c, path[i]) < 0)
				break;
			*state = path[i];
		}
		if (recovered && *state == recover)
			*recovered = 1;
	}
	return r;
}

int precopy__vu_abort(struct precopy_vfio_user *c, uint32_t *state, uint64_t mig_flags)
{
	int r = 0;

	if (*state == VFIO_DEVICE_STATE_RESUMING || *state == VFIO_DEVICE_STATE_ERROR) {
		r = reset_out(c, state);
		if (*state == VFIO_DEVICE_STATE_RUNNING)
			return 0;
		if (*state == VFIO_DEVICE_STATE_ERROR)
			return r < 0 ? r : -EIO;
		/* the server kept its migration state across the reset (as
		 * libvfio-user does): leave by the arcs, which make it
		 * check what it holds */
	}
	r = precopy__vu_move(c, state, VFIO_DEVICE_STATE_RUNNING, mig_flags, VFIO_DEVICE_STATE_RUNNING, NULL, NULL);
	return r;
}

/* ---- DMA dirtiness as a dirty source ------------------------------------------------ */

static int vu_start(struct precopy_dirty_source *s, const struct precopy_dirty_range *r, size_t n, uint64_t hint)
{
	struct precopy_vfio_user *c = s->ctx;
	uint64_t chosen = hint;
	int e;

	(void)r;
	(void)n;
	/* libvfio-user ignores the ranges (it logs every mapping): send none */
	e = precopy_vfio_user_dma_logging_start(c, hint, NULL, 0, &chosen);
	if (e < 0)
		return e;
	if (!chosen || (chosen & (chosen - 1))) {
		precopy_vfio_user_dma_logging_stop(c);
		return -EPROTO;
	}
	s->page_size = chosen;
	s->dev_ranges = 0;
	return 0;
}

static int grow(struct precopy_dirty_source *s, size_t words)
{
	if (words > s->buf_words) {
		uint64_t *b = realloc(s->buf, words * 8);

		if (!b)
			return -ENOMEM;
		s->buf = b;
		s->buf_words = words;
	}
	memset(s->buf, 0, words * 8);
	return 0;
}

/* OR the pages of bm (bit i: [m0 + i*pg, +pg)) that lie in the RAM log
 * into it, rounded outward to RAM pages. Returns the pages newly set. */
static uint64_t merge(struct precopy_bitmap *ram, uint64_t base, uint64_t ram_pg, uint64_t m0, uint64_t pg,
		      const uint64_t *bm, uint64_t pages)
{
	uint64_t end = base + ram->nbits * ram_pg, total = 0, i = 0;

	while (i < pages) {
		uint64_t w = bm[i / 64] >> (i % 64), j, a, b;
		int64_t got;

		if (!w) {
			i = (i / 64 + 1) * 64;
			continue;
		}
		i += (uint64_t)__builtin_ctzll(w);
		if (i >= pages)
			break;
		for (j = i + 1; j < pages && (bm[j / 64] >> (j % 64)) & 1; j++)
			;
		a = m0 + i * pg;
		b = m0 + j * pg;
		i = j;
		if (b <= base || a >= end)
			continue;
		a = a < base ? base : a;
		b = b > end ? end : b;
		got = precopy_bitmap_set_range(ram, (a - base) / ram_pg, (b - base + ram_pg - 1) / ram_pg - (a - base) / ram_pg);
		if (got > 0)
			total += (uint64_t)got;
	}
	return total;
}

static int overlaps(const struct precopy_dirty_source *s, uint64_t iova, uint64_t size)
{
	for (size_t i = 0; i < s->nranges; i++)
		if (iova < s->ranges[i].iova + s->ranges[i].length && s->ranges[i].iova < iova + size)
			return 1;
	return 0;
}

static void set_all(uint64_t *bm, uint64_t pages)
{
	memset(bm, 0xff, (pages + 63) / 64 * 8);
}

int precopy__vu_test_ignore_log;

/* Called once per started range; the first call reads every mapping whole
 * (a second REPORT of a mapping would find it cleared). */
static int vu_report(struct precopy_dirty_source *s, uint64_t iova, uint64_t len, struct precopy_bitmap *ram,
		     uint64_t ram_base, uint64_t ram_pg, uint64_t *newly)
{
	struct precopy_vfio_user *c = s->ctx;
	uint64_t m0, msz, dpg = precopy__vu_dirty_page(c);
	int first = 0;

	(void)len;
	*newly = 0;
	if (iova != s->ranges[0].iova)
		return 0;
	for (size_t k = 0; precopy__vu_map(c, k, &m0, &msz) == 0; k++) {
		uint64_t pages = (msz + s->page_size - 1) / s->page_size;
		int r;

		if (!overlaps(s, m0, msz))
			continue;
		r = grow(s, (size_t)((pages + 63) / 64));
		if (r < 0)
			return r;
		r = precopy_vfio_user_dma_logging_report(c, m0, msz, s->page_size, s->buf, s->buf_words);
		if (r == -EPROTO && !precopy__vu_broken(c)) {
			r = 0; /* a doubtful reply: the client set every bit, the link holds */
		} else if (r < 0) {
			set_all(s->buf, pages);
			if (!first)
				first = r;
		}
		if (!precopy__vu_test_ignore_log)
			*newly += merge(ram, ram_base, ram_pg, m0, s->page_size, s->buf, pages);
		/* pages the server wrote by DMA_WRITE: not in its log */
		pages = msz / dpg;
		if (!pages)
			continue;
		r = grow(s, (size_t)((pages + 63) / 64));
		if (r < 0)
			return r;
		r = precopy_vfio_user_dma_dirty(c, m0, pages * dpg, s->buf, s->buf_words, 1);
		if (r < 0) {
			set_all(s->buf, pages);
			if (!first)
				first = r;
		}
		if (!precopy__vu_test_ignore_log)
			*newly += merge(ram, ram_base, ram_pg, m0, dpg, s->buf, pages);
	}
	return first;
}

static int vu_stop(struct precopy_dirty_source *s)
{
	return precopy_vfio_user_dma_logging_stop(s->ctx);
}

static const struct dirty_source_ops vu_ops = {
	.start = vu_start,
	.report = vu_report,
	.stop = vu_stop,
};

struct precopy_dirty_source *precopy__vu_dirty_new(const struct precopy_sys *sys, struct precopy_vfio_user *c,
						   int *err)
{
	struct precopy_dirty_source *s = precopy__dirty_source_alloc(&vu_ops, sys, -1, 0);

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	s->ctx = c;
	*err = 0;
	return s;
}
