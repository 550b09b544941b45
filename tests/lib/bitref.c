/* SPDX-License-Identifier: MIT */
/* tests/lib/bitref.c — bit-by-bit reference for the bitmap engine (see bitref.h). */
#include "bitref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void bitref_rng_seed(struct bitref_rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t bitref_rng_next(struct bitref_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t bitref_rng_below(struct bitref_rng *r, uint64_t n)
{
	return bitref_rng_next(r) % n;
}

static void clear_tail(uint64_t *w, uint64_t nbits)
{
	if (nbits % 64)
		w[nbits / 64] &= (1ull << (nbits % 64)) - 1;
}

void bitref_fill_random(uint64_t *w, uint64_t nbits, double density, struct bitref_rng *r)
{
	uint64_t n = bitref_words(nbits), i;

	if (density <= 0.0) {
		memset(w, 0, n * 8);
	} else if (density >= 1.0) {
		memset(w, 0xff, n * 8);
	} else if (density == 0.5) {
		for (i = 0; i < n; i++)
			w[i] = bitref_rng_next(r);
	} else {
		/* threshold on the top 53 bits: P(bit) = density */
		uint64_t thr = (uint64_t)(density * 9007199254740992.0);

		memset(w, 0, n * 8);
		for (i = 0; i < nbits; i++)
			if ((bitref_rng_next(r) >> 11) < thr)
				bitref_set(w, i);
	}
	clear_tail(w, nbits);
}

void bitref_fill_clustered(uint64_t *w, uint64_t nbits, uint64_t mean_run, uint64_t mean_gap,
			   struct bitref_rng *r)
{
	uint64_t pos = bitref_rng_below(r, 2 * mean_gap + 1), i;

	memset(w, 0, bitref_words(nbits) * 8);
	while (pos < nbits) {
		uint64_t run = 1 + bitref_rng_below(r, 2 * mean_run);

		for (i = 0; i < run && pos < nbits; i++, pos++)
			bitref_set(w, pos);
		pos += 1 + bitref_rng_below(r, 2 * mean_gap);
	}
}

void bitref_set_tail(uint64_t *w, uint64_t nbits)
{
	if (nbits % 64)
		w[nbits / 64] |= ~((1ull << (nbits % 64)) - 1);
}

int bitref_tail_is_zero(const uint64_t *w, uint64_t nbits)
{
	if (nbits % 64 == 0)
		return 1;
	return (w[nbits / 64] & ~((1ull << (nbits % 64)) - 1)) == 0;
}

int64_t bitref_merge(uint64_t *dst, uint64_t dst_bit, const uint64_t *src, uint64_t nbits)
{
	int64_t n = 0;
	uint64_t i;

	for (i = 0; i < nbits; i++) {
		if (bitref_get(src, i) && !bitref_get(dst, dst_bit + i)) {
			bitref_set(dst, dst_bit + i);
			n++;
		}
	}
	return n;
}

int64_t bitref_merge_scaled(uint64_t *dst, uint64_t dps, uint64_t offset, const uint64_t *src,
			    uint64_t src_bits, uint64_t sps)
{
	int64_t n = 0;
	uint64_t i, p;

	for (i = 0; i < src_bits; i++) {
		uint64_t start, end;

		if (!bitref_get(src, i))
			continue;
		start = offset + i * sps;
		end = start + sps; /* exclusive */
		for (p = start / dps; p <= (end - 1) / dps; p++) {
			if (!bitref_get(dst, p)) {
				bitref_set(dst, p);
				n++;
			}
		}
	}
	return n;
}

int64_t bitref_set_range(uint64_t *w, uint64_t first, uint64_t count)
{
	int64_t n = 0;
	uint64_t i;

	for (i = first; i < first + count; i++) {
		if (!bitref_get(w, i)) {
			bitref_set(w, i);
			n++;
		}
	}
	return n;
}

int64_t bitref_clear_range(uint64_t *w, uint64_t first, uint64_t count)
{
	int64_t n = 0;
	uint64_t i;

	for (i = first; i < first + count; i++) {
		if (bitref_get(w, i)) {
			bitref_clear(w, i);
			n++;
		}
	}
	return n;
}

uint64_t bitref_count(const uint64_t *w, uint64_t first, uint64_t count)
{
	uint64_t n = 0, i;

	for (i = first; i < first + count; i++)
		n += (uint64_t)bitref_get(w, i);
	return n;
}

uint64_t bitref_next_set(const uint64_t *w, uint64_t nbits, uint64_t from)
{
	uint64_t i;

	for (i = from; i < nbits; i++)
		if (bitref_get(w, i))
			return i;
	return nbits;
}

uint64_t bitref_extract(const uint64_t *w, uint64_t nbits, uint64_t from, uint64_t *out)
{
	uint64_t n = 0, i;

	for (i = from; i < nbits; i++)
		if (bitref_get(w, i))
			out[n++] = i;
	return n;
}

uint64_t bitref_runs(const uint64_t *w, uint64_t nbits, uint64_t from, struct precopy_page_run *out)
{
	uint64_t n = 0, i = from;

	while (i < nbits) {
		if (!bitref_get(w, i)) {
			i++;
			continue;
		}
		out[n].first = i;
		while (i < nbits && bitref_get(w, i))
			i++;
		out[n].count = i - out[n].first;
		n++;
	}
	return n;
}

int64_t bitref_first_diff(const uint64_t *a, const uint64_t *b, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return (int64_t)i;
	return -1;
}

uint64_t bitref_popcount(const uint64_t *w, uint64_t nwords)
{
	uint64_t n = 0, i;

	for (i = 0; i < nwords; i++)
		n += (uint64_t)__builtin_popcountll(w[i]);
	return n;
}

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t guarded_span(uint64_t nwords, size_t *data_pages)
{
	size_t ps = page_size();

	*data_pages = (nwords * 8 + ps - 1) / ps;
	return (*data_pages + 1) * ps;
}

uint64_t *bitref_guarded_alloc(uint64_t nwords)
{
	size_t dp, span = guarded_span(nwords, &dp);
	char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED || mprotect(m + dp * page_size(), page_size(), PROT_NONE)) {
		perror("bitref_guarded_alloc");
		abort();
	}
	return (uint64_t *)(m + dp * page_size() - nwords * 8);
}

void bitref_guarded_free(uint64_t *p, uint64_t nwords)
{
	size_t dp, span = guarded_span(nwords, &dp);
	char *end = (char *)(p + nwords);

	munmap(end - dp * page_size(), span);
}

void bitref_dst_init(struct bitref_dst *d, uint64_t nbits, double density, struct bitref_rng *r)
{
	uint64_t i, total;

	d->nwords = bitref_words(nbits);
	total = d->nwords + 2 * BITREF_GUARD;
	d->mem = malloc(total * 8);
	if (!d->mem)
		abort();
	for (i = 0; i < total; i++)
		d->mem[i] = BITREF_GUARD_PATTERN;
	bitref_fill_random(d->mem + BITREF_GUARD, nbits, density, r);
	memset(&d->bm, 0, sizeof(d->bm));
	d->bm.words = d->mem + BITREF_GUARD;
	d->bm.nbits = nbits;
}

void bitref_dst_free(struct bitref_dst *d)
{
	free(d->mem);
	d->mem = NULL;
}

int bitref_dst_guards_ok(const struct bitref_dst *d)
{
	uint64_t i;

	for (i = 0; i < BITREF_GUARD; i++) {
		if (d->mem[i] != BITREF_GUARD_PATTERN)
			return 0;
		if (d->mem[BITREF_GUARD + d->nwords + i] != BITREF_GUARD_PATTERN)
			return 0;
	}
	return 1;
}
