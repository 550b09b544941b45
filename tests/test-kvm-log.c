/* SPDX-License-Identifier: MIT */
/* KVM dirty log against the real /dev/kvm: a real-mode guest writes a known
 * set of pages; each mode must report exactly that set, at the right bits
 * of the RAM log, and nothing on the next sync; manual mode must CLEAR
 * exactly what it harvested in 64-page-aligned chunks; the ring harvest
 * must count repeats once and survive a full ring. The -errno cases are in
 * test-kvm-errors.c. Skips where /dev/kvm is absent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <linux/kvm.h>

#include "lib/kvm_fixture.h"

/* Pages on both sides of every 64-page word and slot edge, a repeat, and
 * the last page of the 100-page slot. */
static const uint16_t edge_pages[] = { 16, 63, 64, 65, 127, 128, 129, 191, 192, 64, 226, 227 };

static void exact_rounds(enum precopy_kvm_mode mode, uint32_t flags)
{
	struct fx f;
	struct precopy_kvm_log_stats st;
	struct precopy_bitmap want;
	uint16_t pages[64];
	int64_t n;

	fx_open(&f, mode, flags);
	cr_assert_eq(precopy_bitmap_alloc(&want, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	/* Logging just started: nothing written, except that INITIALLY_SET
	 * reports every page of both slots once. */
	n = precopy_kvm_log_sync(f.log);
	cr_assert_eq(n, flags & PRECOPY_KVM_INITIALLY_SET ? KG_PAGES : 0);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "second sync after start must be empty");

	srand(7);
	for (int round = 0; round < 6; round++) {
		unsigned cnt;
		if (round == 0) {
			cnt = sizeof(edge_pages) / sizeof(edge_pages[0]);
			memcpy(pages, edge_pages, sizeof(edge_pages));
		} else {
			cnt = 1 + (unsigned)rand() % 60;
			for (unsigned i = 0; i < cnt; i++)
				pages[i] = (uint16_t)(KG_DATA_FIRST + (unsigned)rand() % (KG_DATA_END - KG_DATA_FIRST));
		}
		guest_write(&f, pages, cnt, (uint16_t)(round + 1));
		unsigned fresh = want_pages(&want, pages, cnt);
		n = precopy_kvm_log_sync(f.log);
		cr_assert_eq(n, fresh, "round %d: %ld newly dirty, expected %u", round, (long)n, fresh);
		expect_log(&f, &want);
		cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
		cr_assert_eq(st.last_pages, distinct(pages, cnt), "round %d: KVM reported %lu pages, wrote %u",
			     round, (unsigned long)st.last_pages, distinct(pages, cnt));
		cr_assert_eq(st.last_new, fresh);
		if (mode == PRECOPY_KVM_LOG_RING) {
			cr_assert_geq(st.last_entries, st.last_pages);
			cr_assert_eq(st.last_entries, st.last_pages + st.last_repeats + st.last_foreign);
			cr_assert_eq(st.last_reset, st.last_entries);
			cr_assert_eq(st.last_foreign, 0);
		}
		/* A second harvest is empty, and says so in the stats too. */
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
		cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
		cr_assert_eq(st.last_pages, 0);
		expect_log(&f, &want);
		/* Odd rounds keep the RAM log, so the next round's pages that are
		 * already set there are not counted as new. */
		if (round % 2 == 0) {
			precopy_bitmap_zero(&f.ram);
			precopy_bitmap_zero(&want);
		}
	}
	/* Every sync went through the seam. */
	if (mode == PRECOPY_KVM_LOG_RING) {
		cr_assert_eq(f.in.calls_get, 0);
		cr_assert_gt(f.in.calls_reset, 0);
	} else {
		cr_assert_eq(f.in.calls_get, 2 * 14); /* 2 slots x (2 + 6 x 2) syncs */
		if (mode == PRECOPY_KVM_LOG_MANUAL)
			cr_assert_gt(f.in.calls_clear, 0);
		else
			cr_assert_eq(f.in.calls_clear, 0);
	}
	precopy_bitmap_free(&want);
	fx_close(&f);
}

Test(kvm_log, classic_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_CLASSIC, 0); }
Test(kvm_log, manual_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_MANUAL, 0); }
Test(kvm_log, manual_initially_set_reports_all_then_exact) { exact_rounds(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET); }
Test(kvm_log, ring_reports_exactly_the_written_pages) { exact_rounds(PRECOPY_KVM_LOG_RING, 0); }

/* On x86 the ring also works through the original capability. */
Test(kvm_log, ring_falls_back_to_the_tso_capability)
{
#if defined(__x86_64__)
	struct fx f;
	struct precopy_kvm_log_stats st;
	static const uint16_t pages[] = { 20, 21, 140 };

	need_kvm();
	memset(&f, 0, sizeof(f));
	f.in.ext_cap[0] = KVM_CAP_DIRTY_LOG_RING_ACQ_REL; /* hide ACQ_REL */
	f.in.ext_val[0] = 0;
	f.sys.ops = &inj_ops;
	f.sys.ctx = &f.in;
	/* fx_open resets f; redo its work with the injection kept. */
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	int err = 0;
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(&f.sys, f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(f.log, "%d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&f.g, KG_CODE_GPA), 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.ring_cap, KVM_CAP_DIRTY_LOG_RING);
	cr_assert_eq(st.ring_bytes, PRECOPY_KVM_RING_DEFAULT_BYTES);
	guest_write(&f, pages, 3, 9);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 3);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
#else
	cr_skip_test("the TSO-only ring capability exists only on x86");
#endif
}

/* ---- manual mode: CLEAR exactly what was harvested, 64-page aligned ------ */

struct clear_case {
	uint64_t chunk;            /* clear_chunk_pages (0 = default) */
	uint16_t pages[8];
	unsigned npages;
	struct clear_rec want[4];  /* expected CLEARs, in order */
	int nwant;
};

#define B(n) (1ull << (n))
static const struct clear_case clear_cases[] = {
	/* One window per word: slot 1's last chunk is 36 pages, ending at its end. */
	{ 64, { 16, 63, 64, 127, 128, 191, 192, 227 }, 8,
	  { { 0, 64, 0, { B(16) | B(63) } }, { 0, 64, 64, { B(0) | B(63) } },
	    { 1, 64, 0, { B(0) | B(63) } }, { 1, 36, 64, { B(0) | B(35) } } }, 4 },
	/* Default window: one CLEAR per slot, clean leading words skipped. */
	{ 0, { 70, 127, 130, 227 }, 4,
	  { { 0, 64, 64, { B(6) | B(63) } }, { 1, 100, 0, { B(2), B(35) } } }, 2 },
	/* Only slot 1's first word: a whole 64-page chunk, not to the end. */
	{ 128, { 129, 140 }, 2, { { 1, 64, 0, { B(1) | B(12) } } }, 1 },
};
#undef B

Test(kvm_log, manual_clears_exactly_the_harvested_pages_in_aligned_chunks)
{
	for (size_t i = 0; i < sizeof(clear_cases) / sizeof(clear_cases[0]); i++) {
		const struct clear_case *c = &clear_cases[i];
		struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_MANUAL, 0);
		struct fx f;
		int err;

		fx_open(&f, PRECOPY_KVM_LOG_MANUAL, 0);
		/* Swap in a log with this case's chunk size. */
		precopy_kvm_log_free(f.log);
		cfg.clear_chunk_pages = c->chunk;
		f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
		cr_assert_not_null(f.log, "%d", err);
		for (int k = 0; k < 2; k++) {
			struct precopy_kvm_slot s = slot_desc(&f, k);
			cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
		}
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
		guest_write(&f, c->pages, c->npages, 5);
		f.in.nclears = 0;
		cr_assert_eq(precopy_kvm_log_sync(f.log), c->npages);
		cr_assert_eq(f.in.nclears, c->nwant, "case %zu: %d CLEARs", i, f.in.nclears);
		for (int k = 0; k < c->nwant; k++) {
			const struct clear_rec *got = &f.in.clears[k], *want = &c->want[k];
			cr_assert_eq(got->slot, want->slot, "case %zu clear %d", i, k);
			cr_assert_eq(got->first, want->first, "case %zu clear %d", i, k);
			cr_assert_eq(got->num, want->num, "case %zu clear %d", i, k);
			cr_assert_eq(got->w[0], want->w[0], "case %zu clear %d: %#lx", i, k, (unsigned long)got->w[0]);
			cr_assert_eq(got->w[1], want->w[1], "case %zu clear %d", i, k);
		}
		cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "the CLEARs re-armed every page");
		fx_close(&f);
	}
}

/* ---- ring: the VMM's own mapping, and a ring that fills up --------------- */

Test(kvm_log, ring_full_exit_then_sync_loses_nothing)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct precopy_kvm_log_stats st;
	struct fx f;
	int err = -EINVAL;

	need_kvm();
	memset(&f, 0, sizeof(f));
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	/* The smallest ring KVM takes: it reserves entries for the CPU's own
	 * dirty buffer, so 4096 bytes may be refused with -EINVAL. */
	for (cfg.ring_bytes = 4096; cfg.ring_bytes <= 65536 && !f.log; cfg.ring_bytes *= 2) {
		f.log = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
		if (!f.log)
			cr_assert_eq(err, -EINVAL);
	}
	cr_assert_not_null(f.log);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(kvm_guest_add_vcpu(&f.g, KG_CODE_GPA), 0);
	/* The VMM maps the ring itself and lends it. */
	void *ring = mmap(NULL, st.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f.g.vcpu_fd,
			  (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
	cr_assert_neq(ring, MAP_FAILED);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), -EEXIST);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0);

	/* Every page but code and mailbox, in one run. */
	uint16_t pages[KG_PAGES];
	unsigned n = 0;
	for (unsigned p = 3; p < KG_PAGES; p++)
		pages[n++] = (uint16_t)p;
	uint16_t *mb = kvm_guest_ptr(&f.g, KG_MBOX_GPA);
	mb[0] = (uint16_t)n;
	memcpy(&mb[8], pages, n * sizeof(uint16_t));
	/* Whether KVM stops the vCPU at its soft limit within one run of 225
	 * writes varies with its bookkeeping (seen both ways here); every
	 * attempt must lose nothing, and a few attempts reach the full ring. */
	int fulls = 0;
	for (int attempt = 0; attempt < 8 && !fulls; attempt++) {
		int64_t total = 0, r;
		precopy_bitmap_zero(&f.ram);
		mb[1] = (uint16_t)(0x70 + attempt);
		for (;;) {
			int ex = kvm_guest_run(&f.g);
			if (ex == KVM_EXIT_DIRTY_RING_FULL) {
				fulls++;
				r = precopy_kvm_log_sync(f.log);
				cr_assert_gt(r, 0);
				total += r;
				continue;
			}
			cr_assert_eq(ex, KVM_EXIT_IO, "exit %d", ex);
			break;
		}
		r = precopy_kvm_log_sync(f.log);
		cr_assert_geq(r, 0);
		total += r;
		cr_assert_eq(total, n, "attempt %d", attempt);
		for (unsigned i = 0; i < n; i++)
			cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(pages[i])), 1, "page %u", pages[i]);
		cr_assert_eq(precopy_bitmap_count(&f.ram), n);
		cr_log_info("ring of %u bytes, attempt %d: %d ring-full exits for %u pages", st.ring_bytes,
			    attempt, fulls, n);
	}
	if (!fulls)
		cr_skip_test("a %u-byte ring holds %u pages here: the ring-full path was not reached",
			     st.ring_bytes, n);
	fx_close(&f);
	munmap(ring, st.ring_bytes);
}

/* The harvest logic on a ring the test writes itself (lent as the VMM's
 * mapping): repeats counted once, foreign slots and offsets counted and
 * handed back, index wrap-around, at most one ring's worth per sync. KVM's
 * real rings are empty here, so its reset count is biased by the entries
 * the fake ring held. */
Test(kvm_log, ring_harvest_dedupes_and_skips_foreign_entries)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct precopy_kvm_log_stats st;
	struct fx f;
	int err;

	need_kvm();
	memset(&f, 0, sizeof(f));
	f.sys.ops = &inj_ops;
	f.sys.ctx = &f.in;
	cr_assert_eq(kvm_guest_std_open(&f.g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(&f.sys, f.g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(precopy_bitmap_alloc(&f.ram, LOG_NBITS, PRECOPY_NUMA_LOCAL), 0);
	f.log = precopy_kvm_log_new(&f.sys, f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(f.log, "%d", err);
	for (int i = 0; i < 2; i++) {
		struct precopy_kvm_slot s = slot_desc(&f, i);
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	}
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	const uint32_t n = st.ring_bytes / (uint32_t)sizeof(struct kvm_dirty_gfn);
	struct kvm_dirty_gfn *ring = calloc(n, sizeof(*ring));
	cr_assert_not_null(ring);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, ring), 0);

	static const struct { uint32_t slot; uint64_t off; } e1[] = {
		{ 0, 16 }, { 0, 16 } /* repeat */, { 1, 5 }, { 9, 1 } /* no such slot */,
		{ 0, 128 } /* past slot 0's end */, { 1, 99 }, { (1u << 16) | 1, 5 } /* other address space */,
		{ 1, 5 } /* repeat */,
	};
	const uint32_t k1 = sizeof(e1) / sizeof(e1[0]);
	for (uint32_t i = 0; i < k1; i++) {
		ring[i].slot = e1[i].slot;
		ring[i].offset = e1[i].off;
		ring[i].flags = KVM_DIRTY_GFN_F_DIRTY;
	}
	f.in.reset_bias = (int)k1;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 3);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_entries, k1);
	cr_assert_eq(st.last_pages, 3);
	cr_assert_eq(st.last_repeats, 2);
	cr_assert_eq(st.last_foreign, 3);
	cr_assert_eq(st.last_reset, k1);
	for (uint32_t i = 0; i < k1; i++)
		cr_assert_eq(ring[i].flags, KVM_DIRTY_GFN_F_RESET, "entry %u handed back", i);
	cr_assert_eq(ring[k1].flags, 0);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(16)), 1);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(KG_SLOT0_PAGES + 5)), 1);
	cr_assert_eq(precopy_bitmap_test(&f.ram, page_bit(KG_SLOT0_PAGES + 99)), 1);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 3);

	/* KVM "resets" those entries (flags 0), then publishes a full ring,
	 * wrapping around: slot 1, offsets cycling over all 100 pages. */
	for (uint32_t i = 0; i < k1; i++)
		ring[i].flags = 0;
	precopy_bitmap_zero(&f.ram);
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_dirty_gfn *e = &ring[(k1 + i) % n];
		e->slot = 1;
		e->offset = i % KG_SLOT1_PAGES;
		e->flags = KVM_DIRTY_GFN_F_DIRTY;
	}
	f.in.reset_bias = (int)n;
	cr_assert_eq(precopy_kvm_log_sync(f.log), KG_SLOT1_PAGES);
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_entries, n, "one ring's worth, no more");
	cr_assert_eq(st.last_pages, KG_SLOT1_PAGES);
	cr_assert_eq(st.last_repeats, n - KG_SLOT1_PAGES);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(ring[i].flags, KVM_DIRTY_GFN_F_RESET);
	/* Nothing newly published: nothing read, no reset issued. */
	int resets = f.in.calls_reset;
	f.in.reset_bias = 0;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	cr_assert_eq(f.in.calls_reset, resets);
	precopy_kvm_log_free(f.log);
	f.log = NULL;
	free(ring);
	fx_close(&f);
}
