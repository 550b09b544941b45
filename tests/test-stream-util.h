/* SPDX-License-Identifier: MIT */
/* tests/test-stream-util.h — helpers shared by the test-stream*.c suites:
 * a growable byte buffer with record builders (valid ones through the
 * public encoders, raw ones with any field value), and an event recorder
 * whose trace does not depend on how the input was split. */
#ifndef TEST_STREAM_UTIL_H
#define TEST_STREAM_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/stream.h"

/* ---- byte buffer and builders ----------------------------------------- */

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	size_t last; /* offset of the last record appended */
};

static inline uint8_t *sb_room(struct sbuf *sb, size_t n)
{
	if (sb->len + n > sb->cap) {
		size_t cap = sb->cap ? sb->cap : 256;

		while (cap < sb->len + n)
			cap *= 2;
		sb->p = realloc(sb->p, cap);
		cr_assert_not_null(sb->p);
		sb->cap = cap;
	}
	return sb->p + sb->len;
}

static inline void sb_free(struct sbuf *sb)
{
	free(sb->p);
	memset(sb, 0, sizeof(*sb));
}

/* Append what an encoder wrote; `need` is the room to offer. */
#define SB_ENC(sb, need, call)                                                   \
	do {                                                                     \
		uint8_t *buf_ = sb_room((sb), (need));                           \
		size_t cap_ = (need);                                            \
		int n_ = call;                                                   \
		(void)buf_;                                                      \
		(void)cap_;                                                      \
		cr_assert_gt(n_, 0, "encoder failed: %d", n_);                   \
		(sb)->last = (sb)->len;                                          \
		(sb)->len += (size_t)n_;                                         \
	} while (0)

static inline void sb_start(struct sbuf *sb, uint32_t ndev, uint32_t max_chunk)
{
	SB_ENC(sb, 64, precopy_stream_encode_stream_hdr(buf_, cap_, ndev, max_chunk));
	sb->last = PRECOPY_STREAM_PREAMBLE_SIZE;
}

static inline void sb_setup(struct sbuf *sb, uint32_t dev, uint32_t flags, const char *name)
{
	struct precopy_stream_dev_setup s = { .dev_id = dev, .mig_flags = flags,
					      .pci_vendor = 0x15b3, .pci_device = 0x101e,
					      .initial_bytes = 1000u * dev };

	snprintf(s.name, sizeof(s.name), "%s", name);
	SB_ENC(sb, 128, precopy_stream_encode_dev_setup(buf_, cap_, &s));
}

static inline void sb_config(struct sbuf *sb, uint32_t dev, const void *blob, uint32_t len)
{
	SB_ENC(sb, 20 + (size_t)len, precopy_stream_encode_dev_config(buf_, cap_, dev, blob, len));
}

/* DEV_DATA with payload CRC (crc=1) or as header + spliced bytes (crc=0). */
static inline void sb_data(struct sbuf *sb, uint32_t dev, const void *pl, uint32_t len, int crc)
{
	if (crc) {
		SB_ENC(sb, 20 + (size_t)len, precopy_stream_encode_data(buf_, cap_, dev, pl, len));
	} else {
		SB_ENC(sb, 20, precopy_stream_encode_data_hdr(buf_, cap_, dev, len));
		memcpy(sb_room(sb, len), pl, len);
		sb->len += len;
	}
}

static inline void sb_initial(struct sbuf *sb, uint32_t dev)
{
	SB_ENC(sb, 20, precopy_stream_encode_initial_sent(buf_, cap_, dev));
}

static inline void sb_dev_end(struct sbuf *sb, uint32_t dev, uint64_t total)
{
	SB_ENC(sb, 28, precopy_stream_encode_dev_end(buf_, cap_, dev, total));
}

static inline void sb_stream_end(struct sbuf *sb)
{
	SB_ENC(sb, 20, precopy_stream_encode_stream_end(buf_, cap_));
}

static inline void sb_bytes(struct sbuf *sb, const void *p, size_t n)
{
	memcpy(sb_room(sb, n), p, n);
	sb->len += n;
}

static inline void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Raw record with any field value; the header CRC is computed (so the
 * decoder's checks past the CRC are what is tested) unless hdr_crc_bad. */
struct raw {
	uint8_t tag, flags;
	uint16_t reserved;
	uint32_t dev, len;
	int len_set;        /* use .len instead of plen */
	int pcrc;           /* 1: set the payload-CRC flag and a correct CRC */
	uint32_t pcrc_val;  /* used when pcrc == 2 */
	int hdr_crc_bad;
};

static inline void sb_raw(struct sbuf *sb, struct raw r, const void *pl, size_t plen)
{
	uint8_t *h = sb_room(sb, 20 + plen);
	uint32_t crc = 0;

	if (r.pcrc == 1) {
		r.flags |= PRECOPY_STREAM_F_PAYLOAD_CRC;
		crc = precopy_stream_crc32c(0, pl, plen);
	} else if (r.pcrc == 2) {
		crc = r.pcrc_val;
	}
	h[0] = r.tag;
	h[1] = r.flags;
	h[2] = (uint8_t)r.reserved;
	h[3] = (uint8_t)(r.reserved >> 8);
	le32(h + 4, r.dev);
	le32(h + 8, r.len_set ? r.len : (uint32_t)plen);
	le32(h + 12, crc);
	le32(h + 16, precopy_stream_crc32c(0, h, 16) ^ (r.hdr_crc_bad ? 1u : 0u));
	if (plen)
		memcpy(h + 20, pl, plen);
	sb->last = sb->len;
	sb->len += 20 + plen;
}

/* ---- event recorder --------------------------------------------------- */

#define REC_MAX_DEV 8

struct recorder {
	char trace[8192];        /* split-independent event log */
	size_t tlen;
	uint32_t dev_ids[REC_MAX_DEV];
	struct sbuf data[REC_MAX_DEV]; /* concatenated DATA payload per device */
	const uint8_t *feed_lo, *feed_hi; /* the slice being fed */
	int slice_outside;       /* a DATA slice pointed outside the fed slice */
	int fail_on;             /* event type to fail on, 0: never */
	int fail_with;
	size_t events;
};

static inline void rec_log(struct recorder *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(r->trace + r->tlen, sizeof(r->trace) - r->tlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->tlen += (size_t)n;
	cr_assert_lt(r->tlen, sizeof(r->trace), "trace overflow");
}

static inline struct sbuf *rec_data(struct recorder *r, uint32_t dev)
{
	for (int i = 0; i < REC_MAX_DEV; i++)
		if (r->dev_ids[i] == dev)
			return &r->data[i];
	cr_assert_fail("event for device %u outside the test's set", dev);
	return NULL;
}

static inline int rec_cb(void *opaque, const struct precopy_stream_event *ev)
{
	struct recorder *r = opaque;
	const struct precopy_stream_dev_setup *s;

	r->events++;
	switch (ev->type) {
	case PRECOPY_STREAM_EV_HEADER:
		rec_log(r, "H(v%u,n%u,c%u)@%llu ", ev->u.header.version, ev->u.header.device_count,
			ev->u.header.max_chunk, (unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_DEV_SETUP:
		s = ev->u.setup;
		cr_assert_eq(s->dev_id, ev->dev_id);
		rec_log(r, "S(%u,f%u,%04x:%04x,i%llu,'%s')@%llu ", s->dev_id, s->mig_flags,
			s->pci_vendor, s->pci_device, (unsigned long long)s->initial_bytes, s->name,
			(unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_DEV_CONFIG:
		rec_log(r, "C(%u,%u,%08x)@%llu ", ev->dev_id, ev->u.config.len,
			precopy_stream_crc32c(0, ev->u.config.blob, ev->u.config.len),
			(unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_DATA: {
		struct sbuf *d = rec_data(r, ev->dev_id);
		const uint8_t *p = ev->u.data.ptr;

		cr_assert_gt(ev->u.data.len, 0);
		cr_assert_leq(ev->u.data.chunk_off + ev->u.data.len, ev->u.data.chunk_len);
		if (r->feed_lo && (p < r->feed_lo || p + ev->u.data.len > r->feed_hi))
			r->slice_outside = 1;
		sb_bytes(d, p, ev->u.data.len);
		break;
	}
	case PRECOPY_STREAM_EV_DATA_END:
		cr_assert_eq(ev->u.data.chunk_off, ev->u.data.chunk_len);
		rec_log(r, "D(%u,%u)@%llu ", ev->dev_id, ev->u.data.chunk_len,
			(unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_INITIAL_SENT:
		rec_log(r, "I(%u)@%llu ", ev->dev_id, (unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_DEV_END:
		rec_log(r, "E(%u,%llu)@%llu ", ev->dev_id,
			(unsigned long long)ev->u.end.total_data_bytes, (unsigned long long)ev->offset);
		break;
	case PRECOPY_STREAM_EV_STREAM_END:
		rec_log(r, "Z@%llu", (unsigned long long)ev->offset);
		break;
	default:
		cr_assert_fail("unknown event type %d", ev->type);
	}
	if (r->fail_on == ev->type)
		return r->fail_with;
	return 0;
}

static inline void rec_init(struct recorder *r, const uint32_t *ids, size_t n)
{
	memset(r, 0, sizeof(*r));
	cr_assert_leq(n, REC_MAX_DEV);
	for (size_t i = 0; i < REC_MAX_DEV; i++)
		r->dev_ids[i] = i < n ? ids[i] : PRECOPY_STREAM_DEV_NONE;
}

static inline void rec_fini(struct recorder *r)
{
	for (int i = 0; i < REC_MAX_DEV; i++)
		sb_free(&r->data[i]);
}

/* Feed [p, p+len) in pieces of the given sizes (cycled; 0 = the rest). */
static inline int feed_split(struct precopy_stream_decoder *dec, struct recorder *r,
			     const uint8_t *p, size_t len, const size_t *sizes, size_t nsizes)
{
	size_t i = 0;

	while (len) {
		size_t n = nsizes ? sizes[i++ % nsizes] : len;

		if (n == 0 || n > len)
			n = len;
		if (r) {
			r->feed_lo = p;
			r->feed_hi = p + n;
		}
		int e = precopy_stream_decoder_feed(dec, p, n);

		if (e)
			return e;
		p += n;
		len -= n;
	}
	return 0;
}

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static inline uint64_t prng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

#endif /* TEST_STREAM_UTIL_H */
