/* SPDX-License-Identifier: MIT */
/* precopy/log.h — where the engines' messages go.
 *
 * The library never writes to stderr or to any fd of its own. An embedder
 * that wants the engines' account of a migration (errors as they happen,
 * warnings, one line per decision, device transitions) gives a callback
 * in the engine's or the destination's config; without one, nothing is
 * formatted.
 *
 * Contract of the callback: called on the thread that made the engine
 * call, synchronously, with a NUL-terminated message of at most 255 bytes
 * without a trailing newline, never with the engine's own lock held
 * against the caller (the engine has none). It must not call back into
 * the engine that called it. */
#ifndef PRECOPY_LOG_H
#define PRECOPY_LOG_H

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

enum precopy_log_level {
	PRECOPY_LOG_ERROR = 0,   /* the migration failed (the same text as *_strerror()) */
	PRECOPY_LOG_WARNING = 1, /* it goes on, in a degraded way (e.g. a serial drain) */
	PRECOPY_LOG_INFO = 2,    /* one line per decision, start, switchover, end */
	PRECOPY_LOG_DEBUG = 3,   /* device transitions, syncs, drains */
};

/* level: enum precopy_log_level; msg: the message. */
typedef void (*precopy_log_fn)(void *ctx, int level, const char *msg);

/* "error", "warning", "info", "debug", or "?" for another value. */
PRECOPY_API const char *precopy_log_level_name(int level);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_LOG_H */
