/* SPDX-License-Identifier: MIT */
/* stream/wire.c — CRC-32C and the record header codec shared by the
 * device-state stream encoder and decoders. */
#include <errno.h>
#include <nmmintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "wire.h"

const uint8_t precopy__stream_preamble[PRECOPY_STREAM_PREAMBLE_SIZE] = {
	0x89, 'P', 'C', 'S', 0x0D, 0x0A, 0x1A, 0x0A,
};

/* ---- CRC-32C --------------------------------------------------------------
 * Reflected Castagnoli polynomial, slicing-by-8: table[0] is the classic
 * byte-at-a-time table; table[k][b] is the CRC of byte b followed by k zero
 * bytes, so eight input bytes fold in with eight lookups. The tables are
 * computed once, thread-safely, on first use. */
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ ((c & 1) ? CRC32C_POLY : 0);
		crc_table[0][b] = c;
	}
	for (uint32_t b = 0; b < 256; b++)
		for (int t = 1; t < 8; t++)
			crc_table[t][b] = (crc_table[t - 1][b] >> 8) ^
					  crc_table[0][crc_table[t - 1][b] & 0xFF];
}

/* SSE4.2's CRC32 instruction computes exactly CRC-32C (Castagnoli). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = (uint32_t)_mm_crc32_u64(c, v);
	}
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

static int crc_use_hw;

/* The table is always built (it is the reference); the instruction is used
 * where the CPU has it, unless PRECOPY_SIMD=scalar asks for portable code. */
static void crc_setup(void)
{
	const char *env = getenv("PRECOPY_SIMD");

	crc_init();
	__builtin_cpu_init();
	crc_use_hw = __builtin_cpu_supports("sse4.2") && !(env && !strcmp(env, "scalar"));
}

PRECOPY_API uint32_t precopy_stream_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	if (len == 0)
		return crc;
	pthread_once(&crc_once, crc_setup);
	if (crc_use_hw)
		return ~crc_hw(c, p, len);
	while (len && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
		len--;
	}
	while (len >= 8) {
		uint32_t lo = c ^ get_le32(p);
		uint32_t hi = get_le32(p + 4);
		c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
		    crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
		    crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
		    crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
	return ~c;
}

/* ---- record header --------------------------------------------------------- */

void precopy__rec_hdr_put(uint8_t *p, uint8_t tag, uint8_t flags, uint32_t dev_id, uint32_t len,
		 uint32_t payload_crc)
{
	p[0] = tag;
	p[1] = flags;
	put_le16(p + 2, 0);
	put_le32(p + 4, dev_id);
	put_le32(p + 8, len);
	put_le32(p + 12, payload_crc);
	put_le32(p + 16, precopy_stream_crc32c(0, p, 16));
}

int precopy__rec_hdr_get(const uint8_t *p, struct rec_hdr *h, const char **why)
{
	if (precopy_stream_crc32c(0, p, 16) != get_le32(p + 16)) {
		*why = "record header CRC mismatch";
		return -EBADMSG;
	}
	h->tag = p[0];
	h->flags = p[1];
	h->dev_id = get_le32(p + 4);
	h->len = get_le32(p + 8);
	h->payload_crc = get_le32(p + 12);
	if (h->flags & ~PRECOPY_STREAM_F_PAYLOAD_CRC) {
		*why = "reserved flag bits set in record header";
		return -EBADMSG;
	}
	if (get_le16(p + 2) != 0) {
		*why = "reserved field set in record header";
		return -EBADMSG;
	}
	if (!(h->flags & PRECOPY_STREAM_F_PAYLOAD_CRC) && h->payload_crc != 0) {
		*why = "payload CRC field set without its flag";
		return -EBADMSG;
	}
	return 0;
}

const char *precopy__rec_tag_name(uint8_t tag)
{
	switch (tag) {
	case PRECOPY_STREAM_TAG_STREAM_HDR: return "STREAM_HDR";
	case PRECOPY_STREAM_TAG_DEV_SETUP: return "DEV_SETUP";
	case PRECOPY_STREAM_TAG_DEV_CONFIG: return "DEV_CONFIG";
	case PRECOPY_STREAM_TAG_DEV_DATA: return "DEV_DATA";
	case PRECOPY_STREAM_TAG_DEV_INITIAL_SENT: return "DEV_INITIAL_SENT";
	case PRECOPY_STREAM_TAG_DEV_END: return "DEV_END";
	case PRECOPY_STREAM_TAG_STREAM_END: return "STREAM_END";
	case PRECOPY_STREAM_TAG_RP_ACK: return "RP_ACK";
	case PRECOPY_STREAM_TAG_RP_ERROR: return "RP_ERROR";
	default: return "unknown";
	}
}

int precopy__bytes_printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7E)
			return 0;
	return 1;
}

void precopy__stream_verrmsg(char *buf, uint64_t offset, const char *fmt, va_list ap)
{
	int n = snprintf(buf, STREAM_ERRMSG_MAX, "offset %llu: ", (unsigned long long)offset);

	if (n < 0 || n >= STREAM_ERRMSG_MAX)
		return;
	vsnprintf(buf + n, STREAM_ERRMSG_MAX - (size_t)n, fmt, ap);
}

void precopy__stream_errmsg(char *buf, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	precopy__stream_verrmsg(buf, offset, fmt, ap);
	va_end(ap);
}
