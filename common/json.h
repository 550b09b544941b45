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

#endif /* PRECOPY_ENGINE_JSON_H */
