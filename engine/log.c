/* SPDX-License-Identifier: MIT */
/* The engines' messages: to the embedder's callback (precopy/log.h), and
 * the text of a refused config. A leaf: the source and destination
 * engines call it, it calls nothing of theirs. */
#include <stdarg.h>
#include <stdio.h>

#include "log_internal.h"

PRECOPY_API const char *precopy_log_level_name(int level)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };

	return level >= 0 && level <= PRECOPY_LOG_DEBUG ? names[level] : "?";
}

void precopy__log(precopy_log_fn fn, void *ctx, uint32_t max_level, int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!fn || level < 0 || (uint32_t)level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fn(ctx, level, msg);
}

int precopy__refuse(char *msg, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && len) {
		va_start(ap, fmt);
		vsnprintf(msg, len, fmt, ap);
		va_end(ap);
	}
	return err;
}
