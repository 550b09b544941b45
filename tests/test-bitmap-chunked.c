/* SPDX-License-Identifier: MIT */
/* tests/test-bitmap-chunked.c — precopy_bitmap_merge_chunked(): a reader
 * serves slices of one big reference log; the chunked merge must equal one
 * reference merge of the whole log, the reader must see exactly the chunk
 * sequence [addr + k*chunk, ...), and a failing read must leave the failing
 * and later chunks marked dirty (rounded outward), earlier ones merged, and
 * the reader's error returned. Mutant drivers (the classic wrong-advance
 * bugs) are run through the same checker to show it catches them. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bitref.h"
#include "lib/variants.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define MAXCALLS 4096

/* A device log of log_pages pages of P bytes starting at log_base. */
struct log_ctx {
	uint64_t *log;
	uint64_t log_base, log_pages, P;
	uint64_t chunk;       /* the largest len a call may ask for */
	int fail_at;          /* call index that fails, -1 for none */
	int fail_err;
	int ncalls;
	uint64_t call_addr[MAXCALLS], call_len[MAXCALLS];
	char violation[256];  /* first contract violation seen, "" if none */
};

static void violate(struct log_ctx *c, const char *fmt, uint64_t a, uint64_t b)
{
	if (!c->violation[0])
		snprintf(c->violation, sizeof(c->violation), fmt, a, b);
}

static int log_read(void *ctx, uint64_t addr, uint64_t len, uint64_t ps, uint64_t *words)
{
	struct log_ctx *c = ctx;
	uint64_t i, nb, first;

	if (c->ncalls < MAXCALLS) {
		c->call_addr[c->ncalls] = addr;
		c->call_len[c->ncalls] = len;
	}
	c->ncalls++;
	if (ps != c->P)
		violate(c, "read with page size %" PRIu64 " (log has %" PRIu64 ")", ps, c->P);
	if (addr < c->log_base || (addr - c->log_base) % c->P || len % c->P || len == 0 || len > c->chunk ||
	    (addr - c->log_base) / c->P + len / c->P > c->log_pages) {
		violate(c, "read of [%#" PRIx64 " +%#" PRIx64 ") outside the log or its chunking", addr, len);
		return -EFAULT;
	}
	nb = len / c->P;
	for (i = 0; i < bitref_words(nb); i++)
		if (words[i])
			violate(c, "buffer word %" PRIu64 " not zeroed before the read (%#" PRIx64 ")", i, words[i]);
	if (c->ncalls - 1 == c->fail_at) {
		memset(words, 0xff, bitref_words(nb) * 8); /* scribble: must not be merged as data */
		return c->fail_err;
	}
	first = (addr - c->log_base) / c->P;
	for (i = 0; i < nb; i++)
		if (bitref_get(c->log, first + i))
			bitref_set(words, i);
	return 0;
}

/* One configuration: dst pages D, log pages P, the range starts `offset`
 * bytes after dst_base, N log pages, chunks of `cpages` log pages. */
struct cfg {
	uint64_t D, P, offset, N, cpages;
	int fail_at;
};

/* Expected dst after the chunked merge (with cfg.fail_at), computed with the
 * reference: whole-log merge when nothing fails. */
static void expected(uint64_t *ref, const struct cfg *g, uint64_t *log)
{
	uint64_t chunk = g->cpages * g->P, len = g->N * g->P, k, nchunks = (g->N + g->cpages - 1) / g->cpages;

	if (g->fail_at < 0) {
		bitref_merge_scaled(ref, g->D, g->offset, log, g->N, g->P);
		return;
	}
	for (k = 0; k < nchunks; k++) {
		uint64_t first = k * g->cpages, n = g->N - first < g->cpages ? g->N - first : g->cpages, i;

		if ((int)k == g->fail_at) {
			uint64_t s = (g->offset + k * chunk) / g->D;
			uint64_t e = (g->offset + len + g->D - 1) / g->D;

			bitref_set_range(ref, s, e - s);
			return;
		} else {
			uint64_t *slice = calloc(bitref_words(n), 8);

			for (i = 0; i < n; i++)
				if (bitref_get(log, first + i))
					bitref_set(slice, i);
			bitref_merge_scaled(ref, g->D, g->offset + k * chunk, slice, n, g->P);
			free(slice);
		}
	}
}

typedef int (*chunked_fn)(struct precopy_bitmap *dst, uint64_t dst_base, uint64_t dps, uint64_t addr,
			  uint64_t len, uint64_t chunk, const struct precopy_chunk_reader *rd, uint64_t *buf,
			  size_t buf_words, uint64_t *newly);

/* Runs fn on one configuration and checks everything. Returns NULL when all
 * is right, else a description of the first problem (static buffer). */
static const char *run_cfg(chunked_fn fn, const struct cfg *g, double dens, uint64_t seed)
{
	static char why[512];
	static struct log_ctx c;
	struct bitref_rng r;
	struct bitref_dst d;
	uint64_t addr = 1024 * MiB + 3 * g->P; /* non-zero, not a multiple of the chunk */
	uint64_t dst_base = addr - g->offset, len = g->N * g->P, chunk = g->cpages * g->P;
	uint64_t nchunks = (g->N + g->cpages - 1) / g->cpages, buf_words = bitref_words(g->cpages);
	uint64_t dst_nbits = (g->offset + len - 1) / g->D + 1, before, *ref, *buf, newly = 0xdeadbeef, k;
	struct precopy_chunk_reader rd = { .read = log_read, .ctx = &c, .page_size = g->P };
	int rc, want_rc = g->fail_at >= 0 ? -EIO : 0;
	uint64_t want_calls = g->fail_at >= 0 ? (uint64_t)g->fail_at + 1 : nchunks;
	int64_t diff;

	why[0] = 0;
	bitref_rng_seed(&r, seed);
	memset(&c, 0, sizeof(c));
	c.P = g->P;
	c.log_base = addr;
	c.log_pages = g->N;
	c.chunk = chunk;
	c.fail_at = g->fail_at;
	c.fail_err = -EIO;
	c.log = malloc(bitref_words(g->N) * 8);
	if (dens < 0)
		bitref_fill_clustered(c.log, g->N, 5, 9, &r);
	else
		bitref_fill_random(c.log, g->N, dens, &r);

	dst_nbits += bitref_rng_below(&r, 100);
	bitref_dst_init(&d, dst_nbits, 0.05, &r);
	ref = malloc(d.nwords * 8);
	memcpy(ref, d.bm.words, d.nwords * 8);
	before = bitref_popcount(ref, d.nwords);
	expected(ref, g, c.log);
	buf = malloc(buf_words * 8); /* exactly sized: ASan catches overruns */
	memset(buf, 0x5a, buf_words * 8); /* the library must zero it */

	rc = fn(&d.bm, dst_base, g->D, addr, len, chunk, &rd, buf, buf_words, &newly);

	if (rc != want_rc)
		snprintf(why, sizeof(why), "returned %d, expected %d", rc, want_rc);
	else if (c.violation[0])
		snprintf(why, sizeof(why), "reader contract: %s", c.violation);
	else if ((uint64_t)c.ncalls != want_calls)
		snprintf(why, sizeof(why), "%d reads, expected %" PRIu64, c.ncalls, want_calls);
	if (!why[0]) {
		for (k = 0; k < want_calls && k < MAXCALLS; k++) {
			uint64_t ea = addr + k * chunk, el = len - k * chunk < chunk ? len - k * chunk : chunk;

			if (c.call_addr[k] != ea || c.call_len[k] != el) {
				snprintf(why, sizeof(why),
					 "read %" PRIu64 " was [%#" PRIx64 " +%#" PRIx64 "), expected [%#" PRIx64
					 " +%#" PRIx64 ")",
					 k, c.call_addr[k], c.call_len[k], ea, el);
				break;
			}
		}
	}
	diff = bitref_first_diff(d.bm.words, ref, d.nwords);
	if (!why[0] && diff >= 0)
		snprintf(why, sizeof(why), "dst word %" PRId64 " is %#" PRIx64 ", expected %#" PRIx64, diff,
			 d.bm.words[diff], ref[diff]);
	if (!why[0] && newly != bitref_popcount(ref, d.nwords) - before)
		snprintf(why, sizeof(why), "*newly_dirty %" PRIu64 ", expected %" PRIu64, newly,
			 bitref_popcount(ref, d.nwords) - before);
	if (!why[0] && !bitref_dst_guards_ok(&d))
		snprintf(why, sizeof(why), "wrote outside dst");
	if (!why[0] && !bitref_tail_is_zero(d.bm.words, dst_nbits))
		snprintf(why, sizeof(why), "set a dst tail bit");
	free(buf);
	free(ref);
	free(c.log);
	bitref_dst_free(&d);
	return why[0] ? why : NULL;
}

#define CFGCTX                                                                                          \
	"chunked[%s] dst_page=%" PRIu64 " log_page=%" PRIu64 " offset=%" PRIu64 " pages=%" PRIu64            \
	" chunk_pages=%" PRIu64 " fail_at=%d density=%g seed=%#" PRIx64 ": %s"

static void check_cfg(enum precopy_simd v, const struct cfg *g, double dens, uint64_t seed)
{
	const char *why = run_cfg(precopy_bitmap_merge_chunked, g, dens, seed);

	cr_assert_null(why, CFGCTX, VNAME(v), g->D, g->P, g->offset, g->N, g->cpages, g->fail_at, dens, seed,
		       why ? why : "");
}

/* Page-size configurations: dst 4 KiB with device 4K/64K/2M, plus combining
 * (device 4 KiB into 16 KiB dst pages). N is a multiple of 4 plus a bit so
 * that some chunk sizes divide it and others do not. */
static const struct {
	uint64_t D, P, N;
	uint64_t cpages[6];
} setups[] = {
	{ 4 * KiB, 4 * KiB, 1000, { 1, 7, 64, 250, 1000, 1005 } },
	{ 4 * KiB, 64 * KiB, 300, { 1, 7, 64, 75, 300, 305 } },
	{ 4 * KiB, 2 * MiB, 36, { 1, 5, 7, 9, 36, 41 } },
	{ 16 * KiB, 4 * KiB, 998, { 1, 7, 64, 499, 998, 1003 } },
};
static const uint64_t off_units[] = { 0, 1, 7, 63, 64, 65 };
static const double cdens[] = { 0.5, 0.01, -1.0 };

static void multi_chunk(enum precopy_simd v)
{
	size_t s, o, ci, di;

	for (s = 0; s < sizeof(setups) / sizeof(setups[0]); s++) {
		uint64_t unit = setups[s].P < setups[s].D ? setups[s].P : setups[s].D;

		for (o = 0; o < sizeof(off_units) / sizeof(off_units[0]); o++) {
			for (ci = 0; ci < 6; ci++) {
				for (di = 0; di < sizeof(cdens) / sizeof(cdens[0]); di++) {
					struct cfg g = { setups[s].D, setups[s].P, off_units[o] * unit, setups[s].N,
							 setups[s].cpages[ci], -1 };

					check_cfg(v, &g, cdens[di], case_seed(s, o, ci, di));
				}
			}
		}
	}
}
VARIANT_TESTS(chunked, multi_chunk_equals_single_merge, multi_chunk, .timeout = 300)

/* A single page, and a range of exactly one chunk. */
static void tiny(enum precopy_simd v)
{
	struct cfg a = { 4 * KiB, 64 * KiB, 4 * KiB, 1, 1, -1 };
	struct cfg b = { 4 * KiB, 4 * KiB, 0, 64, 64, -1 };
	struct cfg c = { 16 * KiB, 4 * KiB, 12 * KiB, 1, 3, -1 };

	check_cfg(v, &a, 1.0, 1);
	check_cfg(v, &b, 0.5, 2);
	check_cfg(v, &c, 1.0, 3);
}
VARIANT_TESTS(chunked, single_page_and_single_chunk, tiny)

/* Reader failure on the first, second, a middle and the last chunk. */
static void failures(enum precopy_simd v)
{
	size_t s, o;

	for (s = 0; s < sizeof(setups) / sizeof(setups[0]); s++) {
		uint64_t unit = setups[s].P < setups[s].D ? setups[s].P : setups[s].D;

		for (o = 0; o < sizeof(off_units) / sizeof(off_units[0]); o++) {
			uint64_t cp = setups[s].cpages[1]; /* 5 or 7 pages: does not divide N */
			int nch = (int)((setups[s].N + cp - 1) / cp);
			int fails[] = { 0, 1, nch / 2, nch - 1 };
			size_t f;

			for (f = 0; f < 4; f++) {
				struct cfg g = { setups[s].D, setups[s].P, off_units[o] * unit, setups[s].N, cp,
						 fails[f] };

				check_cfg(v, &g, 0.3, case_seed(s, o, f, 77));
			}
		}
	}
	/* rounding outward: log 4K into 16K dst pages, the failing chunk
	 * starting and the range ending mid dst page */
	{
		struct cfg g = { 16 * KiB, 4 * KiB, 3 * 4 * KiB, 13, 7, 1 };

		check_cfg(v, &g, 0.0, 5);
	}
}
VARIANT_TESTS(chunked, reader_failure_marks_rest_dirty, failures, .timeout = 300)

/* The reader's own error code comes back unchanged. */
Test(chunked, reader_errno_passed_through)
{
	static const int errs[] = { -EIO, -ENOMEM, -EINTR, -ENODEV, -EOVERFLOW };
	size_t i;

	for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		static struct log_ctx c;
		struct precopy_chunk_reader rd = { .read = log_read, .ctx = &c, .page_size = 4 * KiB };
		uint64_t words[4] = { 0 }, buf[1], newly = 0;
		struct precopy_bitmap bm = { .words = words, .nbits = 256 };
		int rc;

		memset(&c, 0, sizeof(c));
		c.P = 4 * KiB;
		c.log = calloc(1, 8);
		c.log_pages = 64;
		c.chunk = 16 * 4 * KiB;
		c.fail_at = 2;
		c.fail_err = errs[i];
		rc = precopy_bitmap_merge_chunked(&bm, 0, 4 * KiB, 0, 64 * 4 * KiB, 16 * 4 * KiB, &rd, buf, 1, &newly);
		cr_assert_eq(rc, errs[i], "reader error %d came back as %d", errs[i], rc);
		cr_assert_eq(newly, 32, "chunks 2..3 (32 pages) marked: newly %" PRIu64, newly);
		/* pages 0..31 clean (chunks 0..1), 32..63 dirty (chunks 2..3) */
		cr_assert_eq(words[0], 0xffffffff00000000ull, "dst word 0 is %#" PRIx64, words[0]);
		cr_assert_eq(words[1], 0, "dst word 1 (past the range) is %#" PRIx64, words[1]);
		cr_assert_eq(c.ncalls, 3, "%d reads, expected 3", c.ncalls);
		free(c.log);
	}
}

/* newly_dirty is optional. */
Test(chunked, newly_dirty_may_be_null)
{
	static struct log_ctx c;
	struct precopy_chunk_reader rd = { .read = log_read, .ctx = &c, .page_size = 4 * KiB };
	uint64_t words[1] = { 0 }, buf[1], log[1] = { 0x8001 };
	struct precopy_bitmap bm = { .words = words, .nbits = 64 };

	memset(&c, 0, sizeof(c));
	c.P = 4 * KiB;
	c.log = log;
	c.log_pages = 16;
	c.chunk = 8 * 4 * KiB;
	c.fail_at = -1;
	cr_assert_eq(precopy_bitmap_merge_chunked(&bm, 0, 4 * KiB, 0, 16 * 4 * KiB, 8 * 4 * KiB, &rd, buf, 1, NULL),
		     0);
	cr_assert_eq(words[0], 0x8001);
}

/* ---- the checker catches the classic bugs -------------------------------- */

/* A correct driver built on merge_scaled, then three mutants. */
enum mutant { GOOD, ADVANCE_BY_SELF, NO_ADVANCE_OFFSET, ADVANCE_IN_PAGES };
static enum mutant mutant;

static int model_chunked(struct precopy_bitmap *dst, uint64_t dst_base, uint64_t dps, uint64_t addr,
			 uint64_t len, uint64_t chunk, const struct precopy_chunk_reader *rd, uint64_t *buf,
			 size_t buf_words, uint64_t *newly)
{
	uint64_t a = addr, done = 0, n = 0;

	while (done < len) {
		uint64_t l = len - done < chunk ? len - done : chunk;
		uint64_t off = (mutant == NO_ADVANCE_OFFSET ? addr : a) - dst_base;
		int rc;
		int64_t m;

		memset(buf, 0, buf_words * 8);
		rc = rd->read(rd->ctx, a, l, rd->page_size, buf);
		if (rc < 0) {
			uint64_t s = (a - dst_base) / dps, e = (addr + len - dst_base + dps - 1) / dps;

			n += (uint64_t)precopy_bitmap_set_range(dst, s, e - s);
			*newly = n;
			return rc;
		}
		m = precopy_bitmap_merge_scaled(dst, dps, off, buf, l / rd->page_size, rd->page_size);
		if (m > 0)
			n += (uint64_t)m;
		done += l;
		if (mutant == ADVANCE_BY_SELF)
			a += a;
		else if (mutant == ADVANCE_IN_PAGES)
			a += l / rd->page_size;
		else
			a += l;
	}
	*newly = n;
	return 0;
}

Test(chunked, checker_catches_wrong_advance)
{
	static const struct cfg cfgs[] = {
		{ 4 * KiB, 64 * KiB, 0, 300, 7, -1 },
		{ 4 * KiB, 4 * KiB, 65 * 4 * KiB, 1000, 64, -1 },
		{ 4 * KiB, 2 * MiB, 4 * KiB, 36, 9, -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		mutant = GOOD;
		cr_assert_null(run_cfg(model_chunked, &cfgs[i], 0.5, 42), "the model driver itself fails cfg %zu",
			       i);
		mutant = ADVANCE_BY_SELF;
		cr_assert_not_null(run_cfg(model_chunked, &cfgs[i], 0.5, 42),
				   "addr += addr not caught (cfg %zu)", i);
		mutant = NO_ADVANCE_OFFSET;
		cr_assert_not_null(run_cfg(model_chunked, &cfgs[i], 0.5, 42),
				   "merging every chunk at the first offset not caught (cfg %zu)", i);
		mutant = ADVANCE_IN_PAGES;
		cr_assert_not_null(run_cfg(model_chunked, &cfgs[i], 0.5, 42),
				   "advancing by pages instead of bytes not caught (cfg %zu)", i);
	}
}

/* ---- validation: exact -errno, nothing written, no read ---------------- */

struct bad {
	const char *what;
	int null_dst, null_reader, null_read, null_buf;
	uint64_t dst_base, dps, addr, len, chunk, rps;
	size_t buf_words;
	int want;
};

#define P4 (4 * KiB)
#define P64 (64 * KiB)
static const struct bad bads[] = {
	/* dst: 4096 pages of 4K starting at 1 GiB (16 MiB) */
	{ "chunk 0", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 0, P4, 64, -EINVAL },
	{ "chunk not a multiple of the log page", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P64, P64 + P4, P64,
	  64, -EINVAL },
	{ "chunk below the log page", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P64, P4, P64, 64, -EINVAL },
	{ "buf too small", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 256 * P4, 128 * P4, P4, 1, -EINVAL },
	{ "buf_words 0", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 256 * P4, 64 * P4, P4, 0, -EINVAL },
	{ "zero len", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 0, 64 * P4, P4, 64, -EINVAL },
	{ "addr not a multiple of the log page", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB + P4, 4 * P64, P64, P64, 64,
	  -EINVAL },
	{ "len not a multiple of the log page", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 4 * P64 + P4, P64, P64, 64,
	  -EINVAL },
	{ "log page 0", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 64 * P4, 0, 64, -EINVAL },
	{ "log page 3", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * 3, 64 * 3, 3, 64, -EINVAL },
	{ "log page 12288", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 12288 * 4, 12288 * 4, 12288, 64, -EINVAL },
	{ "dst page 0", 0, 0, 0, 0, 1024 * MiB, 0, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "dst page 12288", 0, 0, 0, 0, 1024 * MiB, 12288, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "ratio 2^21 (4K log into 8G dst pages)", 0, 0, 0, 0, 0, P4 << 21, 0, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "NULL dst", 1, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "NULL reader", 0, 1, 0, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "NULL reader->read", 0, 0, 1, 0, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "NULL buf", 0, 0, 0, 1, 1024 * MiB, P4, 1024 * MiB, 64 * P4, 64 * P4, P4, 64, -EINVAL },
	{ "range before dst_base", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB - P4, 64 * P4, 64 * P4, P4, 64, -ERANGE },
	{ "range past the end of dst", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB + 4033 * P4, 64 * P4, 64 * P4, P4, 64,
	  -ERANGE },
	{ "range far past dst", 0, 0, 0, 0, 1024 * MiB, P4, 1024 * MiB * 64, 64 * P4, 64 * P4, P4, 64, -ERANGE },
	{ "addr + len overflows", 0, 0, 0, 0, 1024 * MiB, P4, 0xffffffffffff0000ull, 0x20000, 0x10000, P4, 64,
	  -ERANGE },
	/* expansion needs the range start on a dst page: 64K log pages from
	 * dst_base + 2 KiB (dst pages 4K) */
	{ "expansion start mid dst page", 0, 0, 0, 0, 1024 * MiB - 2 * KiB, P4, 1024 * MiB, 4 * P64, P64, P64, 64,
	  -EINVAL },
};

Test(chunked, bad_input_exact_errno_nothing_written)
{
	size_t i;

	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		static struct log_ctx c;
		struct precopy_chunk_reader rd = { .read = b->null_read ? NULL : log_read, .ctx = &c,
						   .page_size = b->rps };
		struct bitref_rng r;
		struct bitref_dst d;
		uint64_t *copy, newly = 0xdeadbeef, *buf = calloc(b->buf_words + 1, 8);
		int rc;

		memset(&c, 0, sizeof(c));
		c.fail_at = -1;
		bitref_rng_seed(&r, i);
		bitref_dst_init(&d, 4096, 0.3, &r);
		copy = malloc(d.nwords * 8);
		memcpy(copy, d.bm.words, d.nwords * 8);
		rc = precopy_bitmap_merge_chunked(b->null_dst ? NULL : &d.bm, b->dst_base, b->dps, b->addr, b->len,
						  b->chunk, b->null_reader ? NULL : &rd, b->null_buf ? NULL : buf,
						  b->buf_words, &newly);
		cr_expect_eq(rc, b->want, "%s: returned %d, expected %d", b->what, rc, b->want);
		cr_expect_eq(c.ncalls, 0, "%s: the reader was called %d times before validation failed", b->what,
			     c.ncalls);
		cr_expect_eq(bitref_first_diff(d.bm.words, copy, d.nwords), -1, "%s: dst was written", b->what);
		cr_expect(bitref_dst_guards_ok(&d), "%s: wrote outside dst", b->what);
		cr_expect(newly == 0 || newly == 0xdeadbeef, "%s: *newly_dirty = %" PRIu64, b->what, newly);
		free(copy);
		free(buf);
		bitref_dst_free(&d);
	}
}

/* On a validation error *newly_dirty is documented to receive the count
 * "in every case": it must read 0, not stay stale. */
Test(chunked, newly_dirty_zero_on_validation_error)
{
	uint64_t words[1] = { 0 }, buf[1], newly = 12345;
	struct precopy_bitmap bm = { .words = words, .nbits = 64 };
	struct precopy_chunk_reader rd = { .read = log_read, .ctx = NULL, .page_size = 4 * KiB };

	cr_assert_eq(precopy_bitmap_merge_chunked(&bm, 0, 4 * KiB, 0, 16 * 4 * KiB, 0, &rd, buf, 1, &newly), -EINVAL);
	cr_assert_eq(newly, 0, "*newly_dirty left at %" PRIu64 " after -EINVAL", newly);
}

/* A range that ends near the top of the 64-bit address space, with a chunk
 * size that does not divide it: the loop must stop at the end, not wrap the
 * address around to 0 and read (and mark) again. */
Test(chunked, range_at_the_top_of_the_address_space)
{
	static struct log_ctx c;
	struct precopy_chunk_reader rd = { .read = log_read, .ctx = &c, .page_size = 4 * KiB };
	uint64_t dst_base = 0 - 64 * 4 * KiB, log = 0x2aaaaaaaaaaaaaaaull, newly = 0, *buf = malloc(8);
	struct bitref_rng r;
	struct bitref_dst d;
	int rc;

	bitref_rng_seed(&r, 1);
	bitref_dst_init(&d, 64, 0.0, &r);
	memset(&c, 0, sizeof(c));
	c.P = 4 * KiB;
	c.log = &log;
	c.log_base = dst_base;
	c.log_pages = 63;
	c.chunk = 2 * 4 * KiB;
	c.fail_at = -1;
	/* 63 pages ending one page below 2^64, in chunks of 2 pages */
	rc = precopy_bitmap_merge_chunked(&d.bm, dst_base, 4 * KiB, dst_base, 63 * 4 * KiB, 2 * 4 * KiB, &rd, buf, 1,
					  &newly);
	cr_expect(bitref_dst_guards_ok(&d), "wrote outside dst (guard words %#" PRIx64 " %#" PRIx64 ")",
		  d.mem[BITREF_GUARD - 1], d.mem[BITREF_GUARD + 1]);
	cr_expect_eq(rc, 0, "returned %d", rc);
	cr_expect_eq(c.ncalls, 32, "%d reads for 32 chunks (last read at %#" PRIx64 ")", c.ncalls,
		     c.call_addr[c.ncalls > 0 ? c.ncalls - 1 : 0]);
	cr_expect_eq(c.violation[0], 0, "reader contract: %s", c.violation);
	cr_expect_eq(d.bm.words[0], log, "dst %#" PRIx64 ", expected %#" PRIx64, d.bm.words[0], log);
	cr_expect_eq(newly, (uint64_t)__builtin_popcountll(log), "newly %" PRIu64, newly);
	free(buf);
	bitref_dst_free(&d);
}
