/* SPDX-License-Identifier: MIT */
/* tests/test-stream-errors.c — every error class of the forward-stream
 * decoder with its exact -errno and message, the same result for any split
 * of the input, truncation at every position, sticky failure, callback
 * failure. */
#include "test-stream-util.h"

static const uint32_t IDS[] = { 1, 2, 3 };
static const struct precopy_stream_limits LIM = { .max_chunk = 4096, .max_config = 512,
						  .max_devices = 4 };
#define PRE (PRECOPY_STREAM_MIG_STOP_COPY | PRECOPY_STREAM_MIG_PRE_COPY)
#define NONE PRECOPY_STREAM_DEV_NONE

/* Three devices declared; 1 (PRE_COPY) and 2 (STOP_COPY only) set up. */
static void prefix(struct sbuf *sb)
{
	sb_start(sb, 3, 4096);
	sb_setup(sb, 1, PRE, "a");
	sb_setup(sb, 2, PRECOPY_STREAM_MIG_STOP_COPY, "b");
}

/* A STREAM_HDR record with any payload (after a valid preamble). */
static void raw_start(struct sbuf *sb, uint32_t version, uint32_t flags, uint32_t count,
		      uint32_t max_chunk)
{
	uint8_t pl[16];

	sb_start(sb, 1, 1);
	sb->len = PRECOPY_STREAM_PREAMBLE_SIZE;
	le32(pl, version);
	le32(pl + 4, flags);
	le32(pl + 8, count);
	le32(pl + 12, max_chunk);
	sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_STREAM_HDR, .dev = NONE, .pcrc = 1 }, pl, 16);
}

static void setup_payload(uint8_t *pl, uint32_t flags, uint16_t name_len, uint16_t r16, uint32_t r32)
{
	memset(pl, 0, 24);
	le32(pl, flags);
	pl[16] = (uint8_t)name_len;
	pl[17] = (uint8_t)(name_len >> 8);
	pl[18] = (uint8_t)r16;
	pl[19] = (uint8_t)(r16 >> 8);
	le32(pl + 20, r32);
}

static const uint8_t D4[4] = { 1, 2, 3, 4 };
#define DATA_TAG PRECOPY_STREAM_TAG_DEV_DATA

#define B(name) static void b_##name(struct sbuf *sb)

B(bad_magic) { sb_bytes(sb, "\x89PCT\r\n\x1a\n", 8); prefix(sb); }
B(hdr_crc) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1, .hdr_crc_bad = 1 }, D4, 4); }
B(tag_0x08) { prefix(sb); sb_raw(sb, (struct raw){ .tag = 8, .dev = 1 }, NULL, 0); }
B(tag_0x00) { prefix(sb); sb_raw(sb, (struct raw){ .tag = 0, .dev = 1 }, NULL, 0); }
B(tag_rp_ack) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_RP_ACK, .dev = NONE }, NULL, 0); }
B(tag_first) { sb_start(sb, 1, 1); sb->len = 8; sb_raw(sb, (struct raw){ .tag = 0xEE, .dev = 1 }, NULL, 0); }
B(flag_bits) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .flags = 0x02, .dev = 1 }, D4, 4); }
B(reserved16) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .reserved = 0x100, .dev = 1 }, D4, 4); }
B(crc_no_flag) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1, .pcrc = 2, .pcrc_val = 5 }, D4, 4); }
B(data_crc) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .flags = 1, .dev = 1, .pcrc = 2, .pcrc_val = 0x12345678 }, D4, 4); }
B(config_crc) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_CONFIG, .flags = 1, .dev = 2, .pcrc = 2, .pcrc_val = 7 }, D4, 4); }
B(setup_crc) { prefix(sb); uint8_t pl[24]; setup_payload(pl, 1, 0, 0, 0); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .flags = 1, .dev = 3, .pcrc = 2, .pcrc_val = 1 }, pl, 24); }
B(data_limit) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1, .len = 4097, .len_set = 1 }, NULL, 0); }
B(data_hdr_limit) { sb_start(sb, 1, 100); sb_setup(sb, 1, 1, ""); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1, .len = 101, .len_set = 1 }, NULL, 0); }
B(data_huge) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1, .len = 0xFFFFFFFF, .len_set = 1 }, NULL, 0); }
B(config_limit) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_CONFIG, .dev = 1, .len = 513, .len_set = 1 }, NULL, 0); }
B(data_empty) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = 1 }, NULL, 0); }
B(initial_len) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_INITIAL_SENT, .dev = 1 }, D4, 1); }
B(end_len) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_END, .dev = 1 }, D4, 4); }
B(send_len) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_STREAM_END, .dev = NONE }, D4, 4); }
B(shdr_len) { sb_start(sb, 1, 1); sb->len = 8; sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_STREAM_HDR, .dev = NONE }, D4, 4); }
B(setup_short) { prefix(sb); uint8_t pl[23] = { 0 }; sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 23); }
B(setup_long) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3, .len = 89, .len_set = 1 }, NULL, 0); }
B(send_dev) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_STREAM_END, .dev = 1 }, NULL, 0); }
B(setup_namelen) { prefix(sb); uint8_t pl[27]; setup_payload(pl, 1, 2, 0, 0); memcpy(pl + 24, "xyz", 3); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3, .pcrc = 1 }, pl, 27); }
B(setup_namemax) { prefix(sb); uint8_t pl[88] = { 0 }; setup_payload(pl, 1, 65, 0, 0); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 88); }
B(setup_res16) { prefix(sb); uint8_t pl[24]; setup_payload(pl, 1, 0, 1, 0); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 24); }
B(setup_res32) { prefix(sb); uint8_t pl[24]; setup_payload(pl, 1, 0, 0, 0x80000000u); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 24); }
B(setup_flags) { prefix(sb); uint8_t pl[24]; setup_payload(pl, 9, 0, 0, 0); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 24); }
B(setup_name) { prefix(sb); uint8_t pl[26]; setup_payload(pl, 1, 2, 0, 0); pl[24] = 'x'; pl[25] = 0; sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 26); }
B(setup_nostop) { prefix(sb); uint8_t pl[24]; setup_payload(pl, 4, 0, 0, 0); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_DEV_SETUP, .dev = 3 }, pl, 24); }
B(shdr_flags) { raw_start(sb, 1, 1, 1, 1); }
B(shdr_chunk0) { raw_start(sb, 1, 0, 1, 0); }
B(shdr_count) { raw_start(sb, 1, 0, 5, 1); }
B(version) { raw_start(sb, 2, 0, 1, 1); }
B(version0) { raw_start(sb, 0, 0, 1, 1); }
B(before_hdr) { sb_start(sb, 1, 1); sb->len = 8; sb_setup(sb, 1, 1, ""); }
B(hdr_twice) { prefix(sb); sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_STREAM_HDR, .dev = NONE, .pcrc = 1 }, (uint8_t[16]){ 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1 }, 16); }
B(count_known) { sb_start(sb, 4, 16); }
B(chunk_known) { sb_start(sb, 1, 8192); }
B(unknown_dev) { prefix(sb); sb_data(sb, 9, D4, 4, 1); }
B(none_dev) { prefix(sb); sb_raw(sb, (struct raw){ .tag = DATA_TAG, .dev = NONE }, D4, 4); }
B(data_before_setup) { prefix(sb); sb_data(sb, 3, D4, 4, 0); }
B(config_before_setup) { prefix(sb); sb_config(sb, 3, D4, 4); }
B(initial_before_setup) { prefix(sb); sb_initial(sb, 3); }
B(end_before_setup) { prefix(sb); sb_dev_end(sb, 3, 0); }
B(setup_twice) { prefix(sb); sb_setup(sb, 2, 1, ""); }
B(setup_twice_initial) { prefix(sb); sb_initial(sb, 1); sb_setup(sb, 1, 1, ""); }
B(config_twice) { prefix(sb); sb_config(sb, 1, D4, 4); sb_data(sb, 1, D4, 4, 1); sb_config(sb, 1, D4, 2); }
B(initial_twice) { prefix(sb); sb_initial(sb, 1); sb_data(sb, 1, D4, 4, 1); sb_initial(sb, 1); }
B(initial_not_pre) { prefix(sb); sb_initial(sb, 2); }
B(end_twice) { prefix(sb); sb_dev_end(sb, 2, 0); sb_dev_end(sb, 2, 0); }
B(data_after_end) { prefix(sb); sb_data(sb, 1, D4, 4, 1); sb_dev_end(sb, 1, 4); sb_data(sb, 1, D4, 4, 0); }
B(initial_after_end) { prefix(sb); sb_dev_end(sb, 1, 0); sb_initial(sb, 1); }
B(config_after_end) { prefix(sb); sb_dev_end(sb, 2, 0); sb_config(sb, 2, NULL, 0); }
B(setup_after_end) { prefix(sb); sb_dev_end(sb, 2, 0); sb_setup(sb, 2, 1, ""); }
B(beyond_declared) { sb_start(sb, 1, 16); sb_setup(sb, 1, 1, ""); sb_setup(sb, 2, 1, ""); }
B(end_total) { prefix(sb); sb_data(sb, 1, D4, 4, 1); sb_dev_end(sb, 1, 5); }
B(end_total_small) { prefix(sb); sb_data(sb, 1, D4, 4, 0); sb_data(sb, 1, D4, 3, 0); sb_dev_end(sb, 1, 4); }
B(send_not_ended) { prefix(sb); sb_setup(sb, 3, 1, ""); sb_dev_end(sb, 3, 0); sb_dev_end(sb, 2, 0); sb_stream_end(sb); }
B(send_not_setup) { prefix(sb); sb_dev_end(sb, 1, 0); sb_dev_end(sb, 2, 0); sb_stream_end(sb); }
B(after_send) { sb_start(sb, 0, 1); sb_stream_end(sb); sb->last = sb->len; sb_bytes(sb, "", 1); }
B(record_after_send) { sb_start(sb, 0, 1); sb_stream_end(sb); sb->last = sb->len; sb_stream_end(sb); sb->last -= 20; }

struct ecase {
	const char *name;
	void (*build)(struct sbuf *);
	int err;
	const char *fmt; /* "%llu" takes sb.last; a trailing '*' means "prefix" */
};

#define E(n, e, f) { #n, b_##n, e, f }
static const struct ecase cases[] = {
	/* -EBADMSG: malformed bytes */
	E(bad_magic, -EBADMSG, "offset 0: bad preamble: not a precopy device-state stream"),
	E(hdr_crc, -EBADMSG, "offset %llu: record header CRC mismatch"),
	E(tag_0x08, -EBADMSG, "offset %llu: unknown record tag 0x08"),
	E(tag_0x00, -EBADMSG, "offset %llu: unknown record tag 0x00"),
	E(tag_rp_ack, -EBADMSG, "offset %llu: unknown record tag 0x41"),
	E(tag_first, -EBADMSG, "offset 8: unknown record tag 0xee"),
	E(flag_bits, -EBADMSG, "offset %llu: reserved flag bits set in record header"),
	E(reserved16, -EBADMSG, "offset %llu: reserved field set in record header"),
	E(crc_no_flag, -EBADMSG, "offset %llu: payload CRC field set without its flag"),
	E(data_crc, -EBADMSG, "offset %llu: DEV_DATA payload CRC mismatch (0x*"),
	E(config_crc, -EBADMSG, "offset %llu: DEV_CONFIG payload CRC mismatch (0x*"),
	E(setup_crc, -EBADMSG, "offset %llu: DEV_SETUP payload CRC mismatch (0x*"),
	E(data_limit, -EBADMSG, "offset %llu: DEV_DATA length 4097 beyond limit 4096"),
	E(data_hdr_limit, -EBADMSG, "offset %llu: DEV_DATA length 101 beyond limit 100"),
	E(data_huge, -EBADMSG, "offset %llu: DEV_DATA length 4294967295 beyond limit 4096"),
	E(config_limit, -EBADMSG, "offset %llu: DEV_CONFIG length 513 beyond limit 512"),
	E(data_empty, -EBADMSG, "offset %llu: DEV_DATA record with invalid length 0"),
	E(initial_len, -EBADMSG, "offset %llu: DEV_INITIAL_SENT record with invalid length 1"),
	E(end_len, -EBADMSG, "offset %llu: DEV_END record with invalid length 4"),
	E(send_len, -EBADMSG, "offset %llu: STREAM_END record with invalid length 4"),
	E(shdr_len, -EBADMSG, "offset 8: STREAM_HDR record with invalid length 4"),
	E(setup_short, -EBADMSG, "offset %llu: DEV_SETUP record with invalid length 23"),
	E(setup_long, -EBADMSG, "offset %llu: DEV_SETUP record with invalid length 89"),
	E(send_dev, -EBADMSG, "offset %llu: STREAM_END record with device id 1 (must be NONE)"),
	E(setup_namelen, -EBADMSG, "offset %llu: DEV_SETUP length 27 does not match its name length 2"),
	E(setup_namemax, -EBADMSG, "offset %llu: DEV_SETUP length 88 does not match its name length 65"),
	E(setup_res16, -EBADMSG, "offset %llu: reserved DEV_SETUP field set for device 3"),
	E(setup_res32, -EBADMSG, "offset %llu: reserved DEV_SETUP field set for device 3"),
	E(setup_flags, -EBADMSG, "offset %llu: DEV_SETUP for device 3 with unknown flags 0x9"),
	E(setup_name, -EBADMSG, "offset %llu: DEV_SETUP for device 3 with a non-printable name"),
	E(shdr_flags, -EBADMSG, "offset 8: reserved STREAM_HDR flags 0x1 set"),
	E(shdr_chunk0, -EBADMSG, "offset 8: STREAM_HDR with max_chunk 0"),
	E(shdr_count, -EBADMSG, "offset 8: STREAM_HDR device count 5 beyond limit 4"),
	/* -EPROTO: well-formed, but against the protocol */
	E(version, -EPROTO, "offset 8: stream version 2, this decoder speaks version 1"),
	E(version0, -EPROTO, "offset 8: stream version 0, this decoder speaks version 1"),
	E(before_hdr, -EPROTO, "offset 8: DEV_SETUP record before STREAM_HDR"),
	E(hdr_twice, -EPROTO, "offset %llu: STREAM_HDR twice"),
	E(count_known, -EPROTO, "offset 8: STREAM_HDR declares 4 devices, the destination has 3"),
	E(chunk_known, -EPROTO, "offset 8: source chunk size 8192 above this destination's limit 4096"),
	E(unknown_dev, -EPROTO, "offset %llu: DEV_DATA record for unknown device 9"),
	E(none_dev, -EPROTO, "offset %llu: DEV_DATA record for unknown device 4294967295"),
	E(data_before_setup, -EPROTO, "offset %llu: DEV_DATA for device 3 before its DEV_SETUP"),
	E(config_before_setup, -EPROTO, "offset %llu: DEV_CONFIG for device 3 before its DEV_SETUP"),
	E(initial_before_setup, -EPROTO, "offset %llu: DEV_INITIAL_SENT for device 3 before its DEV_SETUP"),
	E(end_before_setup, -EPROTO, "offset %llu: DEV_END for device 3 before its DEV_SETUP"),
	E(setup_twice, -EPROTO, "offset %llu: DEV_SETUP for device 2 twice"),
	E(setup_twice_initial, -EPROTO, "offset %llu: DEV_SETUP for device 1 twice"),
	E(config_twice, -EPROTO, "offset %llu: DEV_CONFIG for device 1 twice"),
	E(initial_twice, -EPROTO, "offset %llu: DEV_INITIAL_SENT for device 1 twice"),
	E(initial_not_pre, -EPROTO, "offset %llu: DEV_INITIAL_SENT for device 2, which did not declare PRE_COPY"),
	E(end_twice, -EPROTO, "offset %llu: DEV_END for device 2 twice"),
	E(data_after_end, -EPROTO, "offset %llu: DEV_DATA for device 1 after its DEV_END"),
	E(initial_after_end, -EPROTO, "offset %llu: DEV_INITIAL_SENT for device 1 after its DEV_END"),
	E(config_after_end, -EPROTO, "offset %llu: DEV_CONFIG for device 2 after its DEV_END"),
	E(setup_after_end, -EPROTO, "offset %llu: DEV_SETUP for device 2 after its DEV_END"),
	E(setup_nostop, -EPROTO, "offset %llu: device 3 declares no STOP_COPY support"),
	E(beyond_declared, -EPROTO, "offset %llu: DEV_SETUP for device 2 beyond the 1 devices the header declared"),
	E(end_total, -EPROTO, "offset %llu: DEV_END for device 1 says 5 data bytes, 4 arrived"),
	E(end_total_small, -EPROTO, "offset %llu: DEV_END for device 1 says 4 data bytes, 7 arrived"),
	E(send_not_ended, -EPROTO, "offset %llu: STREAM_END while device 1 has not ended"),
	E(send_not_setup, -EPROTO, "offset %llu: STREAM_END with only 2 of 3 declared devices set up"),
	E(after_send, -EPROTO, "offset %llu: bytes after STREAM_END"),
	E(record_after_send, -EPROTO, "offset 64: bytes after STREAM_END"),
};

static int nop_cb(void *o, const struct precopy_stream_event *ev)
{
	return 0;
}

/* Decode sb with the given split; return the error and copy the message. */
static int run(const struct sbuf *sb, const size_t *sizes, size_t n, char *msg, size_t msz)
{
	struct precopy_stream_decoder *dec;
	int e;

	cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, IDS, 3, nop_cb, NULL), 0);
	e = feed_split(dec, NULL, sb->p, sb->len, sizes, n);
	if (e) {
		/* sticky: the same error again, for feed and finish */
		cr_assert_eq(precopy_stream_decoder_feed(dec, sb->p, 1), e);
		cr_assert_eq(precopy_stream_decoder_finish(dec), e);
	}
	snprintf(msg, msz, "%s", precopy_stream_decoder_error(dec));
	precopy_stream_decoder_free(dec);
	return e;
}

static void check_msg(const struct ecase *c, const struct sbuf *sb, const char *got)
{
	char want[256];
	size_t wl;

	snprintf(want, sizeof(want), c->fmt, (unsigned long long)sb->last);
	wl = strlen(want);
	if (wl && want[wl - 1] == '*')
		cr_expect_eq(strncmp(got, want, wl - 1), 0, "%s: message '%s', want prefix '%.*s'",
			     c->name, got, (int)wl - 1, want);
	else
		cr_expect_str_eq(got, want, "%s: message '%s', want '%s'", c->name, got, want);
}

Test(stream_errors, table_exact_errno_and_message)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *c = &cases[i];
		struct sbuf sb = { 0 };
		char msg[256];
		int e;

		c->build(&sb);
		e = run(&sb, NULL, 0, msg, sizeof(msg));
		cr_expect_eq(e, c->err, "%s: got %d (%s), want %d", c->name, e, msg, c->err);
		check_msg(c, &sb, msg);
		sb_free(&sb);
	}
}

Test(stream_errors, same_result_for_every_split)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *c = &cases[i];
		struct sbuf sb = { 0 };
		char whole[256], msg[256];
		size_t one = 1;
		int e0, e;

		c->build(&sb);
		e0 = run(&sb, NULL, 0, whole, sizeof(whole));
		e = run(&sb, &one, 1, msg, sizeof(msg));
		cr_expect_eq(e, e0, "%s: 1-byte feeds", c->name);
		cr_expect_str_eq(msg, whole, "%s: 1-byte feeds", c->name);
		for (size_t cut = 1; cut < sb.len; cut++) {
			size_t sizes[2] = { cut, 0 };

			e = run(&sb, sizes, 2, msg, sizeof(msg));
			cr_assert_eq(e, e0, "%s: cut %zu", c->name, cut);
			cr_assert_str_eq(msg, whole, "%s: cut %zu", c->name, cut);
		}
		sb_free(&sb);
	}
}

static void build_valid(struct sbuf *sb)
{
	uint8_t cfg[40];

	memset(cfg, 0xA5, sizeof(cfg));
	prefix(sb);
	sb_config(sb, 1, cfg, sizeof(cfg));
	sb_data(sb, 1, D4, 4, 1);
	sb_setup(sb, 3, 1, "third");
	sb_initial(sb, 1);
	sb_data(sb, 3, D4, 3, 0);
	sb_dev_end(sb, 1, 4);
	sb_dev_end(sb, 2, 0);
	sb_dev_end(sb, 3, 3);
	sb_stream_end(sb);
}

Test(stream_errors, truncated_at_every_position)
{
	struct sbuf sb = { 0 };
	char msg[256];

	build_valid(&sb);
	cr_assert_eq(run(&sb, NULL, 0, msg, sizeof(msg)), 0, "%s", msg);
	for (size_t keep = 0; keep < sb.len; keep++) {
		struct precopy_stream_decoder *dec;
		int e;

		cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, IDS, 3, nop_cb, NULL), 0);
		cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, keep), 0, "keep %zu: %s", keep,
			     precopy_stream_decoder_error(dec));
		e = precopy_stream_decoder_finish(dec);
		cr_assert_eq(e, -EBADMSG, "keep %zu: got %d", keep, e);
		const char *m = precopy_stream_decoder_error(dec);

		cr_assert(strstr(m, ": truncated inside ") || strstr(m, ": stream ended before STREAM_END"),
			  "keep %zu: '%s'", keep, m);
		cr_assert_eq(precopy_stream_decoder_finish(dec), -EBADMSG);
		cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p + keep, sb.len - keep), -EBADMSG,
			     "keep %zu: a failed decoder accepted the rest", keep);
		precopy_stream_decoder_free(dec);
	}
	sb_free(&sb);
}

Test(stream_errors, truncation_messages)
{
	struct sbuf sb = { 0 };
	struct precopy_stream_decoder *dec;
	struct {
		size_t keep;
		const char *want;
	} t[] = {
		{ 0, "offset 0: truncated inside the preamble (0 of 8 bytes)" },
		{ 3, "offset 0: truncated inside the preamble (3 of 8 bytes)" },
		{ 8, "offset 8: stream ended before STREAM_END" },
		{ 20, "offset 8: truncated inside a record header (12 of 20 bytes)" },
		{ 30, "offset 8: truncated inside a STREAM_HDR record (2 of 16 payload bytes)" },
		{ 44, "offset 44: stream ended before STREAM_END" },
		{ 44 + 30, "offset 44: truncated inside a DEV_SETUP record (10 of 24 payload bytes)" },
		{ 88 + 22, "offset 88: truncated inside a DEV_DATA record (2 of 4 payload bytes)" },
		{ 112 + 19, "offset 112: truncated inside a record header (19 of 20 bytes)" },
	};

	sb_start(&sb, 1, 16);
	sb_setup(&sb, 1, 1, "");
	sb_data(&sb, 1, D4, 4, 0);
	sb_stream_end(&sb);
	cr_assert_eq(sb.len, 132u);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const uint32_t one_dev[] = { 1 };

		cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, one_dev, 1, nop_cb, NULL), 0);
		int e = precopy_stream_decoder_feed(dec, sb.p, t[i].keep);

		cr_assert_eq(e, 0, "keep %zu: %s", t[i].keep, precopy_stream_decoder_error(dec));
		cr_expect_eq(precopy_stream_decoder_finish(dec), -EBADMSG);
		cr_expect_str_eq(precopy_stream_decoder_error(dec), t[i].want, "keep %zu", t[i].keep);
		precopy_stream_decoder_free(dec);
	}
	sb_free(&sb);
}

static int fail_cb(void *opaque, const struct precopy_stream_event *ev)
{
	int *calls = opaque;

	(*calls)++;
	return ev->type == PRECOPY_STREAM_EV_DATA ? -EIO : 0;
}

Test(stream_errors, callback_error_is_returned_and_sticky)
{
	struct sbuf sb = { 0 };
	struct precopy_stream_decoder *dec;
	struct precopy_stream_decoder_stats st;
	int calls = 0;

	build_valid(&sb);
	cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, IDS, 3, fail_cb, &calls), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), -EIO);
	/* header, setup 1, setup 2, config, then the first data slice */
	cr_expect_eq(calls, 5);
	cr_expect_str_eq(precopy_stream_decoder_error(dec),
			 "offset 194: event callback failed on DEV_DATA for device 1 (error -5)");
	cr_expect_eq(precopy_stream_decoder_feed(dec, sb.p, 1), -EIO);
	cr_expect_eq(precopy_stream_decoder_finish(dec), -EIO);
	cr_expect_eq(calls, 5, "no event after the failure");
	cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
	cr_expect_eq(st.error, -EIO);
	precopy_stream_decoder_free(dec);
	sb_free(&sb);
}

static int fail_header_cb(void *opaque, const struct precopy_stream_event *ev)
{
	return ev->type == PRECOPY_STREAM_EV_HEADER ? -ECANCELED : 0;
}

Test(stream_errors, callback_error_on_stream_level_event)
{
	struct sbuf sb = { 0 };
	struct precopy_stream_decoder *dec;

	build_valid(&sb);
	cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, IDS, 3, fail_header_cb, NULL), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), -ECANCELED);
	cr_expect_str_eq(precopy_stream_decoder_error(dec),
			 "offset 8: event callback failed on STREAM_HDR (error -125)");
	precopy_stream_decoder_free(dec);
	sb_free(&sb);
}
