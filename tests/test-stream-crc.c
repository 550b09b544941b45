/* SPDX-License-Identifier: MIT */
/* CRC-32C: the SSE4.2 path and the portable table path against a bitwise
 * reference. Criterion runs each test in its own process, so setting
 * PRECOPY_SIMD before the first CRC picks the path for that test. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/stream.h"

static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	uint32_t c = ~crc;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

static void check_all(void)
{
	static uint8_t buf[4096 + 16];
	uint64_t x = 0x9E3779B97F4A7C15ull;

	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	cr_assert_eq(precopy_stream_crc32c(0, "123456789", 9), 0xE3069283u);
	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len < 300; len += (len < 40 ? 1 : 37)) {
			uint32_t want = crc_bitwise(0x1234u * (uint32_t)off, buf + off, len);
			uint32_t got = precopy_stream_crc32c(0x1234u * (uint32_t)off, buf + off, len);

			cr_assert_eq(got, want, "off %zu len %zu: %08x != %08x", off, len, got, want);
		}
	/* chaining: crc(a || b) == crc(crc(a), b) */
	uint32_t whole = precopy_stream_crc32c(0, buf, 4096);
	cr_assert_eq(precopy_stream_crc32c(precopy_stream_crc32c(0, buf, 1000), buf + 1000, 3096), whole);
	cr_assert_eq(whole, crc_bitwise(0, buf, 4096));
}

Test(crc32c, default_path)
{
	unsetenv("PRECOPY_SIMD");
	check_all();
}

Test(crc32c, portable_table_path)
{
	setenv("PRECOPY_SIMD", "scalar", 1);
	check_all();
}
