/* SPDX-License-Identifier: MIT */
/* precopy/bitmap.h — dirty bitmaps: allocate, merge, count, iterate, harvest.
 *
 * A bitmap is an array of uint64_t words plus a bit count, one bit per page,
 * little-endian bit order (bit 0 of word 0 is page 0), exactly as KVM's
 * KVM_GET_DIRTY_LOG and VFIO's DMA_LOGGING_REPORT deliver them.
 *
 * Tail bits: the bits of the last word at positions >= nbits are "tail
 * bits". Functions in this header never set them in a destination and ignore
 * them in a source, so a source buffer's tail may hold anything.
 *
 * Errors: functions return 0 or a count >= 0 on success and -errno on
 * failure. On any error nothing has been written, unless the function says
 * otherwise (only precopy_bitmap_merge_chunked, which must not lose pages).
 *   -EINVAL  NULL pointer, zero length, page size not a power of two (or
 *            below 1), page-size ratio beyond 2^20, misaligned offset
 *   -ERANGE  an offset or length reaching past the end of a bitmap, or an
 *            overflowing offset + length
 *   -ENOMEM  allocation failed
 *   -ENOTSUP a forced SIMD variant this CPU lacks
 *
 * Thread safety: functions on distinct bitmaps may run concurrently. On one
 * bitmap, only precopy_bitmap_set_atomic() and precopy_bitmap_harvest() (on
 * its `live` argument) may race with each other; every other function needs
 * the caller to exclude concurrent writers. The SIMD dispatcher is set up
 * once, thread-safely, on first use; precopy_bitmap_simd_force() must not
 * race with running merges.
 */
#ifndef PRECOPY_BITMAP_H
#define PRECOPY_BITMAP_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest page-size ratio a merge accepts (2^20: 4 KiB pages in a 4 GiB page). */
#define PRECOPY_BITMAP_MAX_RATIO (1ull << 20)

/* Words needed for nbits bits. */
#define PRECOPY_BITMAP_WORDS(nbits) (((uint64_t)(nbits) + 63) / 64)

/* Where precopy_bitmap_alloc() places memory. Values >= 0 name a NUMA node. */
enum {
	PRECOPY_NUMA_LOCAL = -1,      /* the node of the calling thread */
	PRECOPY_NUMA_INTERLEAVE = -2, /* pages spread over all allowed nodes */
};

/* How a bitmap's words were obtained (informational; set by the library). */
enum precopy_bitmap_origin {
	PRECOPY_BITMAP_CALLER = 0, /* caller-owned words (precopy_bitmap_wrap) */
	PRECOPY_BITMAP_NUMA = 1,   /* libnuma allocation */
	PRECOPY_BITMAP_MMAP = 2,   /* plain anonymous mapping (no NUMA) */
};

/* Plain struct; the caller owns it. Do not change words or nbits of an
 * allocated bitmap by hand. */
struct precopy_bitmap {
	uint64_t *words;
	uint64_t nbits;
	size_t alloc_bytes;  /* bytes mapped, 0 for caller-owned words */
	int node;            /* placement requested (node, or PRECOPY_NUMA_*) */
	int origin;          /* enum precopy_bitmap_origin */
};

/* ---- allocation -------------------------------------------------------- */

/* Allocate a zeroed bitmap of nbits bits, placed by `placement` (a NUMA node
 * >= 0, PRECOPY_NUMA_LOCAL or PRECOPY_NUMA_INTERLEAVE). Where NUMA is not
 * available (libnuma reports so, or the node does not exist on a single-node
 * host) it falls back to a plain anonymous mapping and says so in
 * bm->origin. The words are 4 KiB aligned. Free with precopy_bitmap_free().
 * Returns 0, -EINVAL (bm NULL, nbits 0, placement < -2), -ENOMEM. */
PRECOPY_API int precopy_bitmap_alloc(struct precopy_bitmap *bm, uint64_t nbits, int placement);

/* Describe caller-owned words (at least PRECOPY_BITMAP_WORDS(nbits) of them).
 * Nothing is allocated; precopy_bitmap_free() only forgets them.
 * Returns 0 or -EINVAL (NULL, nbits 0). */
PRECOPY_API int precopy_bitmap_wrap(struct precopy_bitmap *bm, uint64_t *words, uint64_t nbits);

/* Release memory allocated by precopy_bitmap_alloc() and zero *bm. Safe on a
 * zeroed struct and on a wrapped one (the caller's words are not freed). */
PRECOPY_API void precopy_bitmap_free(struct precopy_bitmap *bm);

/* ---- single bits and ranges ------------------------------------------- */

/* Test bit `bit`: 1 if set, 0 if clear, -ERANGE past the end. */
PRECOPY_API int precopy_bitmap_test(const struct precopy_bitmap *bm, uint64_t bit);

/* Set bit `bit` with an atomic fetch-or (release order), so it can race
 * with precopy_bitmap_harvest(). Returns 1 if it was newly set, 0 if it was
 * already set, -ERANGE past the end, -EINVAL for NULL. */
PRECOPY_API int precopy_bitmap_set_atomic(struct precopy_bitmap *bm, uint64_t bit);

/* Set bits [first, first + count). Returns the number newly set, or -EINVAL
 * (NULL, count 0) / -ERANGE. */
PRECOPY_API int64_t precopy_bitmap_set_range(struct precopy_bitmap *bm, uint64_t first, uint64_t count);

/* Clear bits [first, first + count). Returns the number that were set, or
 * -EINVAL / -ERANGE. */
PRECOPY_API int64_t precopy_bitmap_clear_range(struct precopy_bitmap *bm, uint64_t first, uint64_t count);

/* Clear the whole bitmap. */
PRECOPY_API void precopy_bitmap_zero(struct precopy_bitmap *bm);

/* ---- merge (OR) with fused counting ----------------------------------- */

/* OR nbits source bits into dst so that source bit i lands on destination
 * bit dst_bit + i (any dst_bit, any nbits: unaligned heads and tails are
 * funnel-shifted, never looped bit by bit). One pass: load, merge, count,
 * store. Source bits at positions >= nbits are ignored.
 * Returns how many destination bits went from 0 to 1, or -EINVAL (NULL,
 * nbits 0) / -ERANGE (dst_bit + nbits > dst->nbits). */
PRECOPY_API int64_t precopy_bitmap_merge(struct precopy_bitmap *dst, uint64_t dst_bit,
					 const uint64_t *src, uint64_t nbits);

/* OR a bitmap at another page size into dst. The source covers src_bits
 * pages of src_page_size bytes starting `offset` bytes after the address of
 * dst's bit 0; dst has dst_page_size-byte pages.
 *  - src_page_size > dst_page_size (expansion, e.g. a 64 KiB or 2 MiB device
 *    page into 4 KiB RAM pages): each source bit marks ratio destination
 *    bits. offset must be a multiple of dst_page_size.
 *  - src_page_size < dst_page_size (combining): a destination page is marked
 *    when any of its source sub-pages is. offset must be a multiple of
 *    src_page_size (the source may start mid-page).
 *  - equal sizes: as precopy_bitmap_merge(), offset a multiple of the size.
 * Returns the count of newly set destination bits, or -EINVAL (NULL, zero
 * length, a size not a power of two, ratio > PRECOPY_BITMAP_MAX_RATIO, a
 * misaligned offset) / -ERANGE (the range reaches past dst's end). */
PRECOPY_API int64_t precopy_bitmap_merge_scaled(struct precopy_bitmap *dst, uint64_t dst_page_size,
						uint64_t offset, const uint64_t *src, uint64_t src_bits,
						uint64_t src_page_size);

/* A dirty log that is read in pieces, e.g. VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT.
 * read() fills `words` with the log of [addr, addr + len) at page_size
 * (bit 0 = the page at addr); it may assume `words` is zeroed and large
 * enough. It returns 0 or -errno. */
struct precopy_chunk_reader {
	int (*read)(void *ctx, uint64_t addr, uint64_t len, uint64_t page_size, uint64_t *words);
	void *ctx;
	uint64_t page_size; /* the log's page size (the device's choice) */
};

/* Merge the log of [addr, addr + len) into dst in chunks of chunk_bytes.
 * dst describes guest memory starting at address dst_base with
 * dst_page_size-byte pages. Chunk k covers [addr + k*chunk_bytes, ...), the
 * last one shorter; each is read into `buf` (buf_words words, which must
 * hold chunk_bytes / reader->page_size bits) and merged at its own offset.
 *
 * Everything is validated before the first read. If a read fails, the whole
 * range that was not merged yet (the failing chunk and all after it) is
 * marked dirty in dst, rounded outward to dst pages, because a lost log must
 * be treated as all dirty; then the read's error is returned.
 * *newly_dirty (optional) receives the count of newly set bits in every case.
 * Returns 0, the reader's -errno, -EINVAL (NULL, zero len or chunk,
 * addr/len/chunk not multiples of reader->page_size, buf too small, bad page
 * sizes) or -ERANGE (range outside dst). */
PRECOPY_API int precopy_bitmap_merge_chunked(struct precopy_bitmap *dst, uint64_t dst_base,
					     uint64_t dst_page_size, uint64_t addr, uint64_t len,
					     uint64_t chunk_bytes, const struct precopy_chunk_reader *reader,
					     uint64_t *buf, size_t buf_words, uint64_t *newly_dirty);

/* ---- count and iterate ------------------------------------------------- */

/* Number of set bits in the whole bitmap (tail bits ignored). */
PRECOPY_API uint64_t precopy_bitmap_count(const struct precopy_bitmap *bm);

/* Number of set bits in [first, first + count), or -EINVAL / -ERANGE. */
PRECOPY_API int64_t precopy_bitmap_count_range(const struct precopy_bitmap *bm, uint64_t first,
					       uint64_t count);

/* First set bit at or after `from`; bm->nbits if there is none (also when
 * from >= nbits). */
PRECOPY_API uint64_t precopy_bitmap_next_set(const struct precopy_bitmap *bm, uint64_t from);

/* Write the numbers of set bits, in increasing order, starting at *cursor,
 * into pages[0..max). Stops when pages is full or at the end; *cursor is
 * then the bit to resume from (bm->nbits at the end). Returns how many were
 * written (0 at the end), or -EINVAL (NULL, max 0). */
PRECOPY_API int64_t precopy_bitmap_extract(const struct precopy_bitmap *bm, uint64_t *cursor,
					   uint64_t *pages, size_t max);

/* A run of consecutive set bits. */
struct precopy_page_run {
	uint64_t first;
	uint64_t count;
};

/* Like precopy_bitmap_extract() but coalesces set bits into maximal runs.
 * A run is never split across calls: if runs[] fills up, *cursor stops at
 * the start of the next run. Returns the count of runs written or -EINVAL. */
PRECOPY_API int64_t precopy_bitmap_runs(const struct precopy_bitmap *bm, uint64_t *cursor,
					struct precopy_page_run *runs, size_t max);

/* ---- harvest ----------------------------------------------------------- */

/* Snapshot-and-clear: atomically exchange every word of `live` with 0 and
 * OR what it held into `snap` (same nbits). Bits that other threads set in
 * `live` concurrently (precopy_bitmap_set_atomic) end up either in this
 * snapshot or in `live` for the next one: never lost, never invented.
 * Words that read as zero are skipped without a write.
 * Returns the count of bits newly set in snap, or -EINVAL (NULL, nbits
 * differ). */
PRECOPY_API int64_t precopy_bitmap_harvest(struct precopy_bitmap *live, struct precopy_bitmap *snap);

/* ---- live bitmaps: many writers, one harvester, no atomic per word ------ */

/* A live bitmap is two buffers: writers set bits in the current one inside
 * short sections; precopy_live_bitmap_harvest() makes the other one current,
 * waits until no writer is left in the one it flipped away from, and moves
 * that one into a snapshot with plain vector code (no atomic per word, as
 * precopy_bitmap_harvest() needs). The memory-ordering contract is in
 * docs/live-bitmap.md.
 *
 * Thread safety: enter/exit/set from any number of threads at once;
 * harvest from one thread at a time (not concurrently with itself or
 * free). A writer's page writes made before precopy_live_bitmap_exit() are
 * visible to the thread that harvests its bits. */
struct precopy_live_bitmap;

/* A writer's section (caller storage, one per section in flight). */
struct precopy_live_section {
	struct precopy_bitmap *bm; /* set bits here with precopy_bitmap_set_atomic() */
	unsigned long *active;     /* internal */
};

/* A live bitmap of nbits zeroed bits, both buffers placed as
 * precopy_bitmap_alloc() places one. Free with precopy_live_bitmap_free().
 * Returns NULL with *err (if err) set to -EINVAL (nbits 0, bad placement)
 * or -ENOMEM. */
PRECOPY_API struct precopy_live_bitmap *precopy_live_bitmap_new(uint64_t nbits, int placement,
								 int *err);
/* Release it (no writer may be inside). NULL is a no-op. */
PRECOPY_API void precopy_live_bitmap_free(struct precopy_live_bitmap *l);
/* Bits per buffer (0 for NULL). */
PRECOPY_API uint64_t precopy_live_bitmap_nbits(const struct precopy_live_bitmap *l);

/* Begin a section: s->bm is the buffer to set bits in (with
 * precopy_bitmap_set_atomic() or precopy_bitmap_set_range() where this thread is
 * the only writer of those words) until precopy_live_bitmap_exit(s). Keep
 * sections short (a batch of pages, not a time slice): a harvest waits for
 * the writers of the buffer it drains. Returns 0, -EINVAL (NULL). */
PRECOPY_API int precopy_live_bitmap_enter(struct precopy_live_bitmap *l,
					  struct precopy_live_section *s);
/* End a section begun by precopy_live_bitmap_enter(). */
PRECOPY_API void precopy_live_bitmap_exit(struct precopy_live_section *s);
/* One bit in a section of its own: 1 newly set, 0 already set, -ERANGE
 * past the end, -EINVAL (NULL). */
PRECOPY_API int precopy_live_bitmap_set(struct precopy_live_bitmap *l, uint64_t bit);

/* Move every bit set before this call into snap (OR: bits already in snap
 * stay) and clear them from l. Returns the count of bits newly set in snap,
 * -EINVAL (NULL, snap's nbits differ, snap is one of l's buffers), or
 * -EBUSY: a writer stayed inside its section across the wait bound (a few
 * thousand yields); nothing was written to snap, nothing is lost, and the
 * next call takes those bits with the rest. */
PRECOPY_API int64_t precopy_live_bitmap_harvest(struct precopy_live_bitmap *l,
						struct precopy_bitmap *snap);

/* ---- SIMD variants ----------------------------------------------------- */

enum precopy_simd {
	PRECOPY_SIMD_AUTO = 0,   /* best the CPU supports (or $PRECOPY_SIMD) */
	PRECOPY_SIMD_SCALAR = 1, /* portable C, no ISA extension */
	PRECOPY_SIMD_AVX2 = 2,   /* AVX2 + BMI2 */
	PRECOPY_SIMD_AVX512 = 3, /* AVX-512 F/BW/VL + VPOPCNTDQ + VBMI2 */
};

/* Force a variant for this process (tests, benchmarks). PRECOPY_SIMD_AUTO
 * returns to the CPU's best, or to what the environment variable
 * PRECOPY_SIMD (scalar|avx2|avx512|auto) names. Returns 0, -ENOTSUP if this
 * CPU lacks the variant, -EINVAL for an unknown value. */
PRECOPY_API int precopy_bitmap_simd_force(enum precopy_simd v);

/* The variant in use now. */
PRECOPY_API enum precopy_simd precopy_bitmap_simd_active(void);

/* 1 if this CPU (and OS) can run variant v, else 0. */
PRECOPY_API int precopy_bitmap_simd_supported(enum precopy_simd v);

/* "scalar", "avx2", "avx512" or "auto". */
PRECOPY_API const char *precopy_bitmap_simd_name(enum precopy_simd v);

/* ---- parallel merge ---------------------------------------------------- */

/* A small pool of merge workers. Each call splits the destination into
 * contiguous 4 KiB-aligned pieces (no cache line is written by two
 * workers); each worker runs on the NUMA node of its piece; the counts are
 * summed at the end. Create with precopy_merge_pool_new(), release with
 * precopy_merge_pool_free(). One merge at a time per pool. */
struct precopy_merge_pool;

/* nworkers in [1, 64]; the calling thread is one of them, so 1 means no
 * extra thread. Returns the pool or NULL (errno-free: *err gets -EINVAL or
 * -ENOMEM / the pthread error as -errno when err is non-NULL). */
PRECOPY_API struct precopy_merge_pool *precopy_merge_pool_new(unsigned int nworkers, int *err);

/* Stop the workers and free the pool. NULL is a no-op. */
PRECOPY_API void precopy_merge_pool_free(struct precopy_merge_pool *pool);

/* precopy_bitmap_merge() split over the pool's workers. Same results and
 * errors; pool NULL is -EINVAL. */
PRECOPY_API int64_t precopy_bitmap_merge_parallel(struct precopy_merge_pool *pool,
						  struct precopy_bitmap *dst, uint64_t dst_bit,
						  const uint64_t *src, uint64_t nbits);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_BITMAP_H */
