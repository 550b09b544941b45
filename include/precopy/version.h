/* SPDX-License-Identifier: MIT */
/* precopy/version.h — the library's version, at build time and at run time.
 *
 * The macros give the version of the headers a program was compiled
 * against; precopy_version() gives the version of the library it runs
 * with. They differ when a program built against one release runs with a
 * later libprecopy.so of the same soname (same major version): the ABI
 * policy in the README says what may change between them.
 *
 * Thread safety: precopy_version() may be called from any thread.
 */
#ifndef PRECOPY_VERSION_H
#define PRECOPY_VERSION_H

#include <stdint.h>

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PRECOPY_VERSION_MAJOR 0 /* the soname: libprecopy.so.<MAJOR> */
#define PRECOPY_VERSION_MINOR 1
#define PRECOPY_VERSION_PATCH 0

/* One comparable number for a version: (major << 16) | (minor << 8) | patch,
 * each part 0..255. */
#define PRECOPY_VERSION_NUMBER(major, minor, patch) \
	((uint32_t)(((uint32_t)(major) << 16) | ((uint32_t)(minor) << 8) | (uint32_t)(patch)))

/* The headers' version as one number. */
#define PRECOPY_VERSION \
	PRECOPY_VERSION_NUMBER(PRECOPY_VERSION_MAJOR, PRECOPY_VERSION_MINOR, PRECOPY_VERSION_PATCH)

/* The version of the running library, as PRECOPY_VERSION_NUMBER() encodes
 * it. A program that needs a function added in a later minor release
 * checks precopy_version() >= PRECOPY_VERSION_NUMBER(0, M, 0) before it
 * relies on that release's behaviour. Never fails. */
PRECOPY_API uint32_t precopy_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_VERSION_H */
