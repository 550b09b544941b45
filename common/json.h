/* SPDX-License-Identifier: MIT */
/* Internal: small JSON formatting helpers shared by the engine's outputs. */
#ifndef PRECOPY_ENGINE_JSON_H
#define PRECOPY_ENGINE_JSON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "precopy/estimator.h"

/* A u64 as a JSON number, or null for PRECOPY_UNBOUNDED. Returns b. */
static inline const char *json_u64(char *b, size_t n, uint64_t v)
{
	if (v == PRECOPY_UNBOUNDED)
		snprintf(b, n, "null");
	else
		snprintf(b, n, "%llu", (unsigned long long)v);
	return b;
}

/* A double as a JSON number, or null when not finite. Returns b. */
static inline const char *json_double(char *b, size_t n, double v)
{
	if (isfinite(v))
		snprintf(b, n, "%.6g", v);
	else
		snprintf(b, n, "null");
	return b;
}

#define PRECOPY__JSON_STR_MAX 600 /* room for a 256-byte message escaped */

/* A JSON string for s (or null for NULL) into b: ", \ and control bytes
 * escaped, bytes >= 0x80 written as '?' so the output is always valid
 * UTF-8, truncated to fit. Returns b. */
static inline const char *precopy__json_str(char *b, size_t n, const char *s)
{
	size_t o = 0;

	if (!s) {
		snprintf(b, n, "null");
		return b;
	}
	if (n < 3) {
		if (n)
			b[0] = 0;
		return b;
	}
	b[o++] = '"';
	for (; *s && o + 8 < n; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			b[o++] = '\\';
			b[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(b + o, n - o, "\\u%04x", c);
		} else {
			b[o++] = c >= 0x80 ? '?' : (char)c;
		}
	}
	b[o++] = '"';
	b[o] = 0;
	return b;
}

#endif /* PRECOPY_ENGINE_JSON_H */
