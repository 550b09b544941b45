/* SPDX-License-Identifier: MIT */
/* tests/test-stream-encode.c — CRC-32C against known vectors and a bitwise
 * reference, and the encoders' byte layout and argument errors. */
#include "test-stream-util.h"

/* Bit-at-a-time reference CRC-32C, straight from the definition. */
static uint32_t crc_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
	}
	return ~c;
}

Test(stream_crc, known_vectors)
{
	/* "123456789" is the standard check value; the 32-byte vectors are the
	 * iSCSI ones from RFC 3720, B.4. */
	uint8_t zeros[32] = { 0 }, ones[32], inc[32], dec[32];

	for (int i = 0; i < 32; i++) {
		ones[i] = 0xFF;
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	static const struct {
		const char *name;
		size_t len;
		uint32_t want;
	} t[] = {
		{ "check", 9, 0xE3069283u },
		{ "zeros", 32, 0x8A9136AAu },
		{ "ones", 32, 0x62A8AB43u },
		{ "inc", 32, 0x46DD794Eu },
		{ "dec", 32, 0x113FDB5Cu },
	};
	const void *bufs[] = { "123456789", zeros, ones, inc, dec };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(precopy_stream_crc32c(0, bufs[i], t[i].len), t[i].want,
			     "%s: got 0x%08x want 0x%08x", t[i].name,
			     precopy_stream_crc32c(0, bufs[i], t[i].len), t[i].want);
	cr_expect_eq(precopy_stream_crc32c(0, NULL, 0), 0u);
	cr_expect_eq(precopy_stream_crc32c(0x1234u, NULL, 0), 0x1234u);
}

Test(stream_crc, differential_every_offset_and_length)
{
	uint8_t buf[300];
	uint64_t s = 0x9E3779B97F4A7C15ull;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)prng_next(&s);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= 200; len++)
			cr_assert_eq(precopy_stream_crc32c(0, buf + off, len), crc_ref(buf + off, len),
				     "off %zu len %zu", off, len);
}

Test(stream_crc, continues_across_pieces)
{
	uint8_t buf[257];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	uint32_t whole = precopy_stream_crc32c(0, buf, sizeof(buf));

	for (size_t cut = 0; cut <= sizeof(buf); cut++) {
		uint32_t c = precopy_stream_crc32c(0, buf, cut);

		c = precopy_stream_crc32c(c, buf + cut, sizeof(buf) - cut);
		cr_assert_eq(c, whole, "cut %zu", cut);
	}
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

Test(stream_encode, data_hdr_layout_byte_by_byte)
{
	uint8_t b[20];

	cr_assert_eq(precopy_stream_encode_data_hdr(b, sizeof(b), 0x01020304u, 0x00100000u), 20);
	const uint8_t want16[16] = { 0x04, 0x00, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01,
				     0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00 };
	cr_expect_arr_eq(b, want16, 16);
	cr_expect_eq(rd32(b + 16), precopy_stream_crc32c(0, b, 16));
}

Test(stream_encode, stream_start_layout)
{
	uint8_t b[PRECOPY_STREAM_START_SIZE];
	const uint8_t pre[8] = { 0x89, 'P', 'C', 'S', 0x0D, 0x0A, 0x1A, 0x0A };

	cr_assert_eq(precopy_stream_encode_stream_hdr(b, sizeof(b), 3, 65536), 44);
	cr_expect_arr_eq(b, pre, 8);
	cr_expect_eq(b[8], PRECOPY_STREAM_TAG_STREAM_HDR);
	cr_expect_eq(b[9], PRECOPY_STREAM_F_PAYLOAD_CRC);
	cr_expect_eq(rd32(b + 12), PRECOPY_STREAM_DEV_NONE);
	cr_expect_eq(rd32(b + 16), 16u);
	cr_expect_eq(rd32(b + 20), precopy_stream_crc32c(0, b + 28, 16));
	cr_expect_eq(rd32(b + 24), precopy_stream_crc32c(0, b + 8, 16));
	cr_expect_eq(rd32(b + 28), PRECOPY_STREAM_VERSION);
	cr_expect_eq(rd32(b + 32), 0u);
	cr_expect_eq(rd32(b + 36), 3u);
	cr_expect_eq(rd32(b + 40), 65536u);
}

Test(stream_encode, setup_and_error_layout)
{
	uint8_t b[200];
	struct precopy_stream_dev_setup s = { .dev_id = 9, .mig_flags = 5, .pci_vendor = 0x10de,
					      .pci_device = 0x2330, .initial_bytes = 0x1122334455ull };

	strcpy(s.name, "0000:3b:00.0");
	cr_assert_eq(precopy_stream_encode_dev_setup(b, sizeof(b), &s), 20 + 24 + 12);
	cr_expect_eq(b[0], PRECOPY_STREAM_TAG_DEV_SETUP);
	cr_expect_eq(rd32(b + 4), 9u);
	cr_expect_eq(rd32(b + 8), 36u);
	cr_expect_eq(rd32(b + 20), 5u);
	cr_expect_eq(b[24] | b[25] << 8, 0x10de);
	cr_expect_eq(b[26] | b[27] << 8, 0x2330);
	cr_expect_eq(rd32(b + 28), 0x22334455u);
	cr_expect_eq(rd32(b + 32), 0x11u);
	cr_expect_eq(b[36] | b[37] << 8, 12);
	cr_expect_eq(memcmp(b + 44, "0000:3b:00.0", 12), 0);

	/* reasons: cut to REASON_MAX, non-printable bytes become '?' */
	char longr[300];

	memset(longr, 'x', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = 0;
	longr[3] = '\n';
	cr_assert_eq(precopy_stream_encode_rp_error(b, sizeof(b), 4, EIO, longr),
		     20 + 8 + PRECOPY_STREAM_REASON_MAX);
	cr_expect_eq(rd32(b + 20), (uint32_t)EIO);
	cr_expect_eq(b[24] | b[25] << 8, PRECOPY_STREAM_REASON_MAX);
	cr_expect_eq(b[28 + 3], '?');
	cr_expect_eq(b[28 + 4], 'x');
	cr_assert_eq(precopy_stream_encode_rp_error(b, sizeof(b), PRECOPY_STREAM_DEV_NONE, 1, NULL), 28);
}

Test(stream_encode, argument_errors)
{
	uint8_t b[256];
	struct precopy_stream_dev_setup ok = { .dev_id = 1, .mig_flags = 1 }, s;
	const uint32_t NONE = PRECOPY_STREAM_DEV_NONE;

	struct {
		const char *what;
		int got, want;
	} t[] = {
		{ "hdr NULL buf", precopy_stream_encode_stream_hdr(NULL, 64, 1, 1), -EINVAL },
		{ "hdr chunk 0", precopy_stream_encode_stream_hdr(b, 64, 1, 0), -EINVAL },
		{ "hdr chunk cap", precopy_stream_encode_stream_hdr(b, 64, 1, PRECOPY_STREAM_CAP_MAX_CHUNK + 1), -EINVAL },
		{ "hdr devs cap", precopy_stream_encode_stream_hdr(b, 64, PRECOPY_STREAM_CAP_MAX_DEVICES + 1, 1), -EINVAL },
		{ "hdr short", precopy_stream_encode_stream_hdr(b, 43, 1, 1), -ENOSPC },
		{ "hdr exact", precopy_stream_encode_stream_hdr(b, 44, 0, 1), 44 },
		{ "setup NULL", precopy_stream_encode_dev_setup(b, 256, NULL), -EINVAL },
		{ "setup short", precopy_stream_encode_dev_setup(b, 43, &ok), -ENOSPC },
		{ "setup exact", precopy_stream_encode_dev_setup(b, 44, &ok), 44 },
		{ "config NONE", precopy_stream_encode_dev_config(b, 256, NONE, b, 1), -EINVAL },
		{ "config NULL blob", precopy_stream_encode_dev_config(b, 256, 1, NULL, 1), -EINVAL },
		{ "config empty", precopy_stream_encode_dev_config(b, 256, 1, NULL, 0), 20 },
		{ "config cap", precopy_stream_encode_dev_config(b, 256, 1, b, PRECOPY_STREAM_CAP_MAX_CONFIG + 1), -EINVAL },
		{ "config short", precopy_stream_encode_dev_config(b, 20, 1, b + 100, 1), -ENOSPC },
		{ "data_hdr NONE", precopy_stream_encode_data_hdr(b, 20, NONE, 1), -EINVAL },
		{ "data_hdr len 0", precopy_stream_encode_data_hdr(b, 20, 1, 0), -EINVAL },
		{ "data_hdr cap", precopy_stream_encode_data_hdr(b, 20, 1, PRECOPY_STREAM_CAP_MAX_CHUNK + 1), -EINVAL },
		{ "data_hdr short", precopy_stream_encode_data_hdr(b, 19, 1, 1), -ENOSPC },
		{ "data NULL", precopy_stream_encode_data(b, 256, 1, NULL, 4), -EINVAL },
		{ "data short", precopy_stream_encode_data(b, 23, 1, b + 100, 4), -ENOSPC },
		{ "data ok", precopy_stream_encode_data(b, 24, 1, b + 100, 4), 24 },
		{ "initial NONE", precopy_stream_encode_initial_sent(b, 20, NONE), -EINVAL },
		{ "initial short", precopy_stream_encode_initial_sent(b, 19, 1), -ENOSPC },
		{ "end NONE", precopy_stream_encode_dev_end(b, 28, NONE, 0), -EINVAL },
		{ "end short", precopy_stream_encode_dev_end(b, 27, 1, 0), -ENOSPC },
		{ "stream_end short", precopy_stream_encode_stream_end(b, 19), -ENOSPC },
		{ "stream_end NULL", precopy_stream_encode_stream_end(NULL, 20), -EINVAL },
		{ "ack short", precopy_stream_encode_rp_ack(b, 19), -ENOSPC },
		{ "ack ok", precopy_stream_encode_rp_ack(b, 20), 20 },
		{ "error code 0", precopy_stream_encode_rp_error(b, 256, 1, 0, "x"), -EINVAL },
		{ "error code <0", precopy_stream_encode_rp_error(b, 256, 1, -EIO, "x"), -EINVAL },
		{ "error code big", precopy_stream_encode_rp_error(b, 256, 1, 4096, "x"), -EINVAL },
		{ "error short", precopy_stream_encode_rp_error(b, 28, 1, 5, "x"), -ENOSPC },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(t[i].got, t[i].want, "%s: got %d want %d", t[i].what, t[i].got, t[i].want);

	struct {
		const char *what;
		struct precopy_stream_dev_setup s;
		const char *name;
	} bad[] = {
		{ "id NONE", { .dev_id = NONE, .mig_flags = 1 }, "" },
		{ "no STOP_COPY", { .dev_id = 1, .mig_flags = 4 }, "" },
		{ "unknown flag", { .dev_id = 1, .mig_flags = 9 }, "" },
		{ "control char in name", { .dev_id = 1, .mig_flags = 1 }, "a\tb" },
		{ "high byte in name", { .dev_id = 1, .mig_flags = 1 }, "caf\xc3\xa9" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = bad[i].s;
		strcpy(s.name, bad[i].name);
		cr_expect_eq(precopy_stream_encode_dev_setup(b, 256, &s), -EINVAL, "%s", bad[i].what);
	}
	/* a name filling the whole array without a terminator is refused
	 * rather than over-read */
	s = ok;
	memset(s.name, 'n', sizeof(s.name));
	cr_expect_eq(precopy_stream_encode_dev_setup(b, 256, &s), -EINVAL, "unterminated name");
	memset(s.name, 'n', PRECOPY_STREAM_NAME_MAX);
	s.name[PRECOPY_STREAM_NAME_MAX] = 0;
	cr_expect_eq(precopy_stream_encode_dev_setup(b, 256, &s), 20 + 24 + PRECOPY_STREAM_NAME_MAX);
}
