/* SPDX-License-Identifier: MIT */
/* tests/test-version.c — the running library reports the version of the
 * headers it was built from, in the encoding the header documents. */
#include <criterion/criterion.h>

#include <precopy.h>

Test(version, library_matches_headers)
{
	uint32_t v = precopy_version();

	cr_assert_eq(v, PRECOPY_VERSION, "library %06x, headers %06x", v, PRECOPY_VERSION);
	cr_assert_eq(v >> 16, (uint32_t)PRECOPY_VERSION_MAJOR);
	cr_assert_eq((v >> 8) & 0xff, (uint32_t)PRECOPY_VERSION_MINOR);
	cr_assert_eq(v & 0xff, (uint32_t)PRECOPY_VERSION_PATCH);
}

Test(version, number_orders_releases)
{
	cr_assert_lt(PRECOPY_VERSION_NUMBER(0, 1, 9), PRECOPY_VERSION_NUMBER(0, 2, 0));
	cr_assert_lt(PRECOPY_VERSION_NUMBER(0, 255, 255), PRECOPY_VERSION_NUMBER(1, 0, 0));
	cr_assert_eq(PRECOPY_VERSION_NUMBER(1, 2, 3), 0x010203u);
	cr_assert(PRECOPY_VERSION_MINOR <= 255 && PRECOPY_VERSION_PATCH <= 255 && PRECOPY_VERSION_MAJOR <= 255);
}
