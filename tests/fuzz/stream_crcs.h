/* SPDX-License-Identifier: MIT */
/* tests/fuzz/stream_crcs.h — for the fuzz harnesses that feed stream
 * bytes: rewrite the CRCs of back-to-back records so that mutated input
 * reaches the checks behind them. Test-only. */
#ifndef TESTS_FUZZ_STREAM_CRCS_H
#define TESTS_FUZZ_STREAM_CRCS_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/stream.h"

static inline void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walk p as back-to-back records and make their CRCs correct. */
static inline void fix_crcs(uint8_t *p, size_t len)
{
	while (len >= PRECOPY_STREAM_REC_HDR_SIZE) {
		size_t plen = rd32(p + 8);

		if (plen > len - PRECOPY_STREAM_REC_HDR_SIZE)
			plen = len - PRECOPY_STREAM_REC_HDR_SIZE;
		if (p[1] & PRECOPY_STREAM_F_PAYLOAD_CRC)
			wr32(p + 12, precopy_stream_crc32c(0, p + PRECOPY_STREAM_REC_HDR_SIZE, plen));
		wr32(p + 16, precopy_stream_crc32c(0, p, 16));
		p += PRECOPY_STREAM_REC_HDR_SIZE + plen;
		len -= PRECOPY_STREAM_REC_HDR_SIZE + plen;
	}
}

#endif
