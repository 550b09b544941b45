/* SPDX-License-Identifier: MIT */
/* precopy/export.h — symbol visibility for libprecopy.
 *
 * The library is built with -fvisibility=hidden; only declarations marked
 * PRECOPY_API are exported (and versioned by include/libprecopy.map).
 * Thread safety: not applicable (macros only). */
#ifndef PRECOPY_EXPORT_H
#define PRECOPY_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define PRECOPY_API __attribute__((visibility("default")))
#define PRECOPY_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define PRECOPY_API
#define PRECOPY_WARN_UNUSED
#endif

#endif /* PRECOPY_EXPORT_H */
