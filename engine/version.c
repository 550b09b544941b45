/* SPDX-License-Identifier: MIT */
/* The running library's version (precopy/version.h). */
#include "precopy/version.h"

uint32_t precopy_version(void)
{
	return PRECOPY_VERSION;
}
