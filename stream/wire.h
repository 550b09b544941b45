/* SPDX-License-Identifier: MIT */
/* stream/wire.h — private helpers shared by the stream encoder and
 * the two decoders: little-endian accessors, the record header codec, and
 * the bounded error-message formatter. The wire format itself is documented
 * in include/precopy/stream.h. */
#ifndef PRECOPY_ENGINE_STREAM_WIRE_H
#define PRECOPY_ENGINE_STREAM_WIRE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/stream.h"
#include "../common/util.h"

/* The 8 preamble bytes of a forward stream. */
extern const uint8_t precopy__stream_preamble[PRECOPY_STREAM_PREAMBLE_SIZE];

/* A parsed record header. */
struct rec_hdr {
	uint8_t tag;
	uint8_t flags;
	uint32_t dev_id;
	uint32_t len;
	uint32_t payload_crc;
};

/* Write a 20-byte record header (computing hdr_crc). */
void precopy__rec_hdr_put(uint8_t *p, uint8_t tag, uint8_t flags, uint32_t dev_id, uint32_t len,
		 uint32_t payload_crc);

/* Parse and check the tag-independent parts of a 20-byte header: hdr_crc,
 * unknown flag bits, the reserved u16, payload_crc zero when the flag is
 * clear. Returns 0 or -EBADMSG with a reason in *why (static string). */
int precopy__rec_hdr_get(const uint8_t *p, struct rec_hdr *h, const char **why);

/* Name of a tag for messages ("DEV_DATA", or "tag 0x9c" style via buf). */
const char *precopy__rec_tag_name(uint8_t tag);

/* 1 if every byte is printable ASCII (0x20..0x7E). */
int precopy__bytes_printable(const uint8_t *p, size_t n);

/* Size of the message buffers in the decoders. */
#define STREAM_ERRMSG_MAX 192

/* Format "offset N: <fmt>" into buf (always NUL-terminated, truncated). */
void precopy__stream_errmsg(char *buf, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void precopy__stream_verrmsg(char *buf, uint64_t offset, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#endif /* PRECOPY_ENGINE_STREAM_WIRE_H */
