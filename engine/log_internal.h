/* SPDX-License-Identifier: MIT */
/* engine/log_internal.h — the engines' message helper (internal). */
#ifndef PRECOPY_ENGINE_LOG_INTERNAL_H
#define PRECOPY_ENGINE_LOG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/log.h"

/* Format and hand one message to fn (if non-NULL and level <= max_level);
 * at most 255 bytes, truncated. */
void precopy__log(precopy_log_fn fn, void *ctx, uint32_t max_level, int level, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* A config refused: the rule that was broken into msg (if msg and len),
 * for *_config_check(); returns err. */
int precopy__refuse(char *msg, size_t len, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif /* PRECOPY_ENGINE_LOG_INTERNAL_H */
