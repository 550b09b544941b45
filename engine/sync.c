/* SPDX-License-Identifier: MIT */
/* The RAM dirty log: its allocation, the harvest of the RAM dirty source
 * (KVM or the caller's live bitmap) and of every device's DMA log into it,
 * and the hand-out of dirty page runs to the VMM. Device logs are merged
 * chunk-wise through their dirty source's bounded buffer; the caller's live
 * bitmap is harvested word by word (snapshot-and-clear): no per-page work
 * and no second full-size bitmap. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

int precopy__eng_log_alloc(struct precopy_engine *e)
{
	uint64_t nbits = e->log.nbits;

	return precopy_bitmap_alloc(&e->log, nbits, PRECOPY_NUMA_LOCAL);
}

/* Set every page of every slot (holes between slots stay clear); returns
 * the pages newly set. */
static uint64_t set_all(struct precopy_engine *e)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < e->cfg.nslots; i++) {
		const struct precopy_ram_slot *s = &e->slots[i];
		int64_t n = precopy_bitmap_set_range(&e->log, (s->gpa - e->base) / e->ps, s->size / e->ps);

		if (n > 0)
			total += (uint64_t)n;
	}
	return total;
}

/* The start of a migration: every page is to be sent once. This is not
 * dirtying (it must not count toward the dirty rate, or every migration
 * would see rho > 1 in its first iteration). */
void precopy__eng_log_mark_all(struct precopy_engine *e)
{
	e->dirty_count += set_all(e);
}

static struct precopy_dirty_range *slot_ranges(struct precopy_engine *e)
{
	struct precopy_dirty_range *r = malloc(e->cfg.nslots * sizeof(*r));

	if (!r)
		return NULL;
	for (uint32_t i = 0; i < e->cfg.nslots; i++) {
		r[i].iova = e->slots[i].gpa;
		r[i].length = e->slots[i].size;
	}
	return r;
}

/* Start each device's dirty tracking on the RAM slots: its own DMA log, the
 * configured tracker, or nothing (every sync then marks all RAM dirty). */
int precopy__eng_tracking_start(struct precopy_engine *e)
{
	struct precopy_dirty_range *ranges;
	int r = 0;

	if (!e->ndev)
		return 0;
	ranges = slot_ranges(e);
	if (!ranges) {
		precopy__eng_seterr(e, -ENOMEM, "start: dirty tracking: out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < e->ndev && r == 0; i++) {
		struct edev *d = &e->devs[i];
		struct precopy_dirty_source *src = d->dma ? d->dma : d->cfg.tracker;

		if (!src) {
			d->tracking = PRECOPY_TRACK_ALL;
			continue;
		}
		d->src_shared = 0;
		for (uint32_t j = 0; j < i && !d->dma; j++)
			if (e->devs[j].tracking_src == src)
				d->src_shared = 1; /* devices behind one container: one tracker */
		if (d->src_shared) {
			d->tracking_src = src;
			d->tracking = PRECOPY_TRACK_TRACKER;
			continue;
		}
		r = precopy_dirty_source_start(src, ranges, e->cfg.nslots, e->ps);
		if (r < 0) {
			d->err = r;
			precopy__eng_seterr(e, r, "start: device %u: %s start: %s", d->cfg.id,
				   d->dma ? "DMA logging" : "dirty tracker", strerror(-r));
			break;
		}
		d->tracking_src = src;
		d->tracking = d->dma ? PRECOPY_TRACK_DMA_LOG : PRECOPY_TRACK_TRACKER;
	}
	free(ranges);
	return r;
}

static const char *tracking_name(const struct edev *d, const struct precopy_dirty_source *src)
{
	return src == d->dma ? "DMA logging" : "dirty tracker";
}

int precopy__eng_tracking_stop(struct precopy_engine *e, const char *step)
{
	int first = 0;

	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		int r;

		if (!d->tracking_src)
			continue;
		if (d->src_shared) {
			d->tracking_src = NULL;
			d->src_shared = 0;
			continue;
		}
		r = precopy_dirty_source_stop(d->tracking_src);
		if (r < 0) {
			/* still started: the next start stops it again first */
			d->stop_pending = d->tracking_src;
			d->err = r;
			precopy__eng_adderr(e, r, "%s: " DEV_FMT ": %s stop: %s", step, DEV_ARGS(d),
					    tracking_name(d, d->tracking_src), strerror(-r));
			if (!first)
				first = r;
		}
		d->tracking_src = NULL;
	}
	return first;
}

int precopy__eng_tracking_retry(struct precopy_engine *e, const char *step)
{
	int first = 0;

	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		int r;

		if (!d->stop_pending)
			continue;
		r = precopy_dirty_source_stop(d->stop_pending);
		if (r == 0) {
			d->stop_pending = NULL;
			continue;
		}
		d->err = r;
		precopy__eng_adderr(e, r, "%s: " DEV_FMT ": %s left on by the last migration: stop failed again: %s",
				    step, DEV_ARGS(d), tracking_name(d, d->stop_pending), strerror(-r));
		if (!first)
			first = r;
	}
	return first;
}

/* Harvest everything into the log. Returns pages newly dirty or -errno
 * (with the error recorded; what could be merged was merged, and a device
 * whose report failed had its ranges marked dirty). */
int64_t precopy__eng_sync(struct precopy_engine *e)
{
	uint64_t newly = 0;
	int first = 0;

	e->syncs++;
	/* DMA_WRITEs the servers have queued land in their logs first */
	first = precopy__eng_vu_serve(e, "sync");
	if (first < 0)
		return first;
	/* RAM_BITMAP: the live bitmap is the RAM source; RAM_KVM: the VMM's own
	 * writes to guest RAM, which KVM does not log. */
	if (e->cfg.ram_bitmap) {
		int64_t n = precopy_bitmap_harvest(e->cfg.ram_bitmap, &e->log);
		if (n < 0) {
			precopy__eng_seterr(e, (int)n, "sync: RAM bitmap harvest: %s", strerror((int)-n));
			return n;
		}
		newly += (uint64_t)n;
	}
	if (e->cfg.ram_source == PRECOPY_RAM_KVM) {
		int64_t n = precopy_kvm_log_sync(e->kvm);
		if (n < 0) {
			precopy__eng_seterr(e, (int)n, "sync: KVM dirty log: %s", strerror((int)-n));
			first = (int)n;
		} else {
			newly += (uint64_t)n;
		}
	}
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		uint64_t nd = 0;
		int r;

		if (d->tracking == PRECOPY_TRACK_ALL) {
			/* no tracking: whatever it wrote could be anywhere */
			newly += set_all(e);
			continue;
		}
		if (!d->tracking_src || d->src_shared)
			continue;
		r = precopy_dirty_source_report(d->tracking_src, &e->log, e->base, e->ps, &nd);
		newly += nd;
		if (r < 0) {
			d->err = r;
			precopy__eng_seterr(e, r, "sync: device %u: dirty log report: %s", d->cfg.id, strerror(-r));
			if (!first)
				first = r;
		}
	}
	e->dirty_count += newly;
	e->it_dirty_pages += newly;
	e->cursor = 0;
	e->last_sync_pending = e->dirty_count;
	return first ? first : (int64_t)newly;
}


/* Where the run of set bits starting at set bit `first` ends (its first
 * clear bit), looking no further than first + limit (and the log's end):
 * the hand-out takes at most limit pages of a run, and walking the rest of
 * a long run (the whole of RAM on the first pass) on every window made the
 * first pass quadratic. */
static uint64_t run_end(const struct precopy_bitmap *bm, uint64_t first, uint64_t limit)
{
	uint64_t stop = limit < bm->nbits - first ? first + limit : bm->nbits;
	uint64_t w = first >> 6, x = ~bm->words[w] & (~0ull << (first & 63)), end;

	while (!x && (w + 1) * 64 < stop)
		x = ~bm->words[++w];
	end = x ? w * 64 + (unsigned)__builtin_ctzll(x) : (w + 1) * 64;
	return end < stop ? end : stop;
}

int64_t precopy__eng_next_pages(struct precopy_engine *e, struct precopy_ram_run *runs, size_t max_runs,
				uint64_t max_pages)
{
	uint64_t pages = 0;
	size_t n = 0;

	while (n < max_runs && (!max_pages || pages < max_pages)) {
		uint64_t first = precopy_bitmap_next_set(&e->log, e->cursor), take;
		int64_t cleared;

		if (first >= e->log.nbits) {
			e->cursor = e->log.nbits;
			break;
		}
		take = run_end(&e->log, first, max_pages ? max_pages - pages : UINT64_MAX) - first;
		cleared = precopy_bitmap_clear_range(&e->log, first, take);
		if (cleared > 0)
			e->dirty_count -= (uint64_t)cleared;
		runs[n].gpa = e->base + first * e->ps;
		runs[n].pages = take;
		n++;
		pages += take;
		e->cursor = first + take;
	}
	return (int64_t)n;
}
