/* SPDX-License-Identifier: MIT */
/* tests/test-stream-rp.c — the return path: ACK and ERROR round trips under
 * every split, ACK twice, anything after ERROR, malformed messages,
 * truncation. */
#include "test-stream-util.h"

struct rp_log {
	char trace[1024];
	size_t len;
};

static int rp_cb(void *opaque, const struct precopy_stream_rp_event *ev)
{
	struct rp_log *l = opaque;
	int n;

	if (ev->type == PRECOPY_STREAM_RP_EV_ACK)
		n = snprintf(l->trace + l->len, sizeof(l->trace) - l->len, "ACK(%u)@%llu ", ev->dev_id,
			     (unsigned long long)ev->offset);
	else
		n = snprintf(l->trace + l->len, sizeof(l->trace) - l->len, "ERR(%u,%d,'%s')@%llu ",
			     ev->dev_id, ev->code, ev->reason, (unsigned long long)ev->offset);
	cr_assert(n > 0 && (size_t)n < sizeof(l->trace) - l->len);
	l->len += (size_t)n;
	return 0;
}

static int rp_run(const struct sbuf *sb, const size_t *sizes, size_t nsizes, struct rp_log *l,
		  char *msg, size_t msz, int *acked)
{
	struct precopy_stream_rp_decoder *rp;
	const uint8_t *p = sb->p;
	size_t len = sb->len, i = 0;
	int e = 0;

	memset(l, 0, sizeof(*l));
	cr_assert_eq(precopy_stream_rp_decoder_new(&rp, rp_cb, l), 0);
	while (len && !e) {
		size_t n = nsizes ? sizes[i++ % nsizes] : len;

		n = (n == 0 || n > len) ? len : n;
		e = precopy_stream_rp_decoder_feed(rp, p, n);
		p += n;
		len -= n;
	}
	if (!e)
		e = precopy_stream_rp_decoder_finish(rp);
	else
		cr_assert_eq(precopy_stream_rp_decoder_finish(rp), e, "sticky");
	snprintf(msg, msz, "%s", precopy_stream_rp_decoder_error(rp));
	if (acked)
		*acked = precopy_stream_rp_decoder_acked(rp);
	precopy_stream_rp_decoder_free(rp);
	return e;
}

static void sb_ack(struct sbuf *sb)
{
	SB_ENC(sb, 20, precopy_stream_encode_rp_ack(buf_, cap_));
}

static void sb_err(struct sbuf *sb, uint32_t dev, int code, const char *reason)
{
	SB_ENC(sb, 200, precopy_stream_encode_rp_error(buf_, cap_, dev, code, reason));
}

Test(stream_rp, round_trip_every_split)
{
	struct sbuf sb = { 0 };
	struct rp_log whole, l;
	char msg[256];
	int acked;

	sb_ack(&sb);
	sb_err(&sb, 3, EIO, "device 3 failed to load: RESUMING -> STOP gave EIO");
	cr_assert_eq(rp_run(&sb, NULL, 0, &whole, msg, sizeof(msg), &acked), 0, "%s", msg);
	cr_expect_str_eq(whole.trace,
			 "ACK(4294967295)@0 ERR(3,5,'device 3 failed to load: RESUMING -> STOP gave EIO')@20 ");
	cr_expect_eq(acked, 1);
	cr_expect_str_eq(msg, "");
	for (size_t cut = 1; cut < sb.len; cut++) {
		size_t sizes[2] = { cut, 0 };

		cr_assert_eq(rp_run(&sb, sizes, 2, &l, msg, sizeof(msg), NULL), 0, "cut %zu", cut);
		cr_assert_str_eq(l.trace, whole.trace, "cut %zu", cut);
	}
	size_t one = 1;

	cr_assert_eq(rp_run(&sb, &one, 1, &l, msg, sizeof(msg), NULL), 0);
	cr_assert_str_eq(l.trace, whole.trace);
	sb_free(&sb);
}

Test(stream_rp, error_without_ack_and_empty_reason)
{
	struct sbuf sb = { 0 };
	struct rp_log l;
	char msg[256];
	int acked;

	sb_err(&sb, PRECOPY_STREAM_DEV_NONE, ECANCELED, NULL);
	cr_assert_eq(rp_run(&sb, NULL, 0, &l, msg, sizeof(msg), &acked), 0, "%s", msg);
	cr_expect_str_eq(l.trace, "ERR(4294967295,125,'')@0 ");
	cr_expect_eq(acked, 0);
	cr_expect_eq(precopy_stream_rp_decoder_acked(NULL), -EINVAL);
	sb_free(&sb);
}

#define RPB(name) static void b_##name(struct sbuf *sb)
static uint8_t err_pl(uint8_t *pl, uint32_t code, uint16_t rlen, uint16_t res, const char *reason)
{
	le32(pl, code);
	pl[4] = (uint8_t)rlen;
	pl[5] = (uint8_t)(rlen >> 8);
	pl[6] = (uint8_t)res;
	pl[7] = (uint8_t)(res >> 8);
	memcpy(pl + 8, reason, strlen(reason));
	return (uint8_t)(8 + strlen(reason));
}
#define ERRT PRECOPY_STREAM_TAG_RP_ERROR
#define NONE PRECOPY_STREAM_DEV_NONE

RPB(ack_twice) { sb_ack(sb); sb_ack(sb); }
RPB(ack_after_error) { sb_err(sb, 1, 5, "x"); sb_ack(sb); }
RPB(error_after_error) { sb_ack(sb); sb_err(sb, 1, 5, "x"); sb_err(sb, 1, 5, "y"); }
RPB(stream_tag) { sb_stream_end(sb); }
RPB(unknown_tag) { sb_raw(sb, (struct raw){ .tag = 0x43, .dev = NONE }, NULL, 0); }
RPB(hdr_crc) { sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_RP_ACK, .dev = NONE, .hdr_crc_bad = 1 }, NULL, 0); }
RPB(ack_len) { sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_RP_ACK, .dev = NONE }, "ab", 2); }
RPB(ack_dev) { sb_raw(sb, (struct raw){ .tag = PRECOPY_STREAM_TAG_RP_ACK, .dev = 2 }, NULL, 0); }
RPB(err_short) { sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, "1234567", 7); }
RPB(err_long) { sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1, .len = 137, .len_set = 1 }, NULL, 0); }
RPB(err_rlen) { uint8_t pl[64]; uint8_t n = err_pl(pl, 5, 3, 0, "ab"); sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, pl, n); }
RPB(err_res) { uint8_t pl[64]; uint8_t n = err_pl(pl, 5, 2, 1, "ab"); sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, pl, n); }
RPB(err_code0) { uint8_t pl[64]; uint8_t n = err_pl(pl, 0, 2, 0, "ab"); sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, pl, n); }
RPB(err_code_big) { uint8_t pl[64]; uint8_t n = err_pl(pl, 4096, 2, 0, "ab"); sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, pl, n); }
RPB(err_reason) { uint8_t pl[64]; uint8_t n = err_pl(pl, 5, 2, 0, "a\n"); sb_raw(sb, (struct raw){ .tag = ERRT, .dev = 1 }, pl, n); }
RPB(err_crc) { uint8_t pl[64]; uint8_t n = err_pl(pl, 5, 2, 0, "ab"); sb_raw(sb, (struct raw){ .tag = ERRT, .flags = 1, .dev = 1, .pcrc = 2, .pcrc_val = 3 }, pl, n); }
RPB(trunc_hdr) { sb_ack(sb); sb->len -= 5; }
RPB(trunc_payload) { sb_err(sb, 1, 5, "abcdef"); sb->len -= 1; }

static const struct {
	const char *name;
	void (*build)(struct sbuf *);
	int err;
	const char *msg;
} rp_cases[] = {
	{ "ack_twice", b_ack_twice, -EPROTO, "offset 20: RP_ACK twice" },
	{ "ack_after_error", b_ack_after_error, -EPROTO, "offset 29: RP_ACK after RP_ERROR" },
	{ "error_after_error", b_error_after_error, -EPROTO, "offset 49: RP_ERROR after RP_ERROR" },
	{ "stream_tag", b_stream_tag, -EBADMSG, "offset 0: unknown return-path tag 0x07" },
	{ "unknown_tag", b_unknown_tag, -EBADMSG, "offset 0: unknown return-path tag 0x43" },
	{ "hdr_crc", b_hdr_crc, -EBADMSG, "offset 0: record header CRC mismatch" },
	{ "ack_len", b_ack_len, -EBADMSG, "offset 0: RP_ACK message with invalid length 2" },
	{ "ack_dev", b_ack_dev, -EBADMSG, "offset 0: RP_ACK with device id 2 (must be NONE)" },
	{ "err_short", b_err_short, -EBADMSG, "offset 0: RP_ERROR message with invalid length 7" },
	{ "err_long", b_err_long, -EBADMSG, "offset 0: RP_ERROR message with invalid length 137" },
	{ "err_rlen", b_err_rlen, -EBADMSG, "offset 0: RP_ERROR length 10 does not match its reason length 3" },
	{ "err_res", b_err_res, -EBADMSG, "offset 0: reserved RP_ERROR field set" },
	{ "err_code0", b_err_code0, -EBADMSG, "offset 0: RP_ERROR with invalid code 0" },
	{ "err_code_big", b_err_code_big, -EBADMSG, "offset 0: RP_ERROR with invalid code 4096" },
	{ "err_reason", b_err_reason, -EBADMSG, "offset 0: RP_ERROR with a non-printable reason" },
	{ "err_crc", b_err_crc, -EBADMSG, "offset 0: RP_ERROR payload CRC mismatch" },
	{ "trunc_hdr", b_trunc_hdr, -EBADMSG, "offset 0: truncated inside a message header (15 of 20 bytes)" },
	{ "trunc_payload", b_trunc_payload, -EBADMSG, "offset 0: truncated inside a RP_ERROR message (13 of 14 payload bytes)" },
};

Test(stream_rp, error_table_every_split)
{
	for (size_t i = 0; i < sizeof(rp_cases) / sizeof(rp_cases[0]); i++) {
		struct sbuf sb = { 0 };
		struct rp_log l;
		char msg[256];
		size_t one = 1;
		int e;

		rp_cases[i].build(&sb);
		e = rp_run(&sb, NULL, 0, &l, msg, sizeof(msg), NULL);
		cr_expect_eq(e, rp_cases[i].err, "%s: got %d (%s)", rp_cases[i].name, e, msg);
		cr_expect_str_eq(msg, rp_cases[i].msg, "%s", rp_cases[i].name);
		e = rp_run(&sb, &one, 1, &l, msg, sizeof(msg), NULL);
		cr_expect_eq(e, rp_cases[i].err, "%s (1-byte feeds)", rp_cases[i].name);
		cr_expect_str_eq(msg, rp_cases[i].msg, "%s (1-byte feeds)", rp_cases[i].name);
		sb_free(&sb);
	}
}

Test(stream_rp, ack_twice_across_feeds_and_finish_at_boundary)
{
	struct precopy_stream_rp_decoder *rp;
	struct rp_log l = { 0 };
	uint8_t b[20];

	cr_assert_eq(precopy_stream_encode_rp_ack(b, sizeof(b)), 20);
	cr_assert_eq(precopy_stream_rp_decoder_new(&rp, rp_cb, &l), 0);
	cr_assert_eq(precopy_stream_rp_decoder_finish(rp), 0, "empty return path is fine");
	cr_assert_eq(precopy_stream_rp_decoder_feed(rp, b, 20), 0);
	cr_assert_eq(precopy_stream_rp_decoder_acked(rp), 1);
	cr_assert_eq(precopy_stream_rp_decoder_finish(rp), 0);
	cr_assert_eq(precopy_stream_rp_decoder_feed(rp, b, 19), 0);
	cr_assert_eq(precopy_stream_rp_decoder_feed(rp, b + 19, 1), -EPROTO);
	cr_expect_str_eq(precopy_stream_rp_decoder_error(rp), "offset 20: RP_ACK twice");
	cr_assert_eq(precopy_stream_rp_decoder_feed(rp, b, 1), -EPROTO);
	precopy_stream_rp_decoder_free(rp);

	cr_expect_eq(precopy_stream_rp_decoder_new(NULL, rp_cb, NULL), -EINVAL);
	cr_expect_eq(precopy_stream_rp_decoder_new(&rp, NULL, NULL), -EINVAL);
	cr_expect_eq(precopy_stream_rp_decoder_feed(NULL, b, 1), -EINVAL);
	precopy_stream_rp_decoder_free(NULL);
}

static int rp_fail_cb(void *o, const struct precopy_stream_rp_event *ev)
{
	return -ENOTCONN;
}

Test(stream_rp, callback_error)
{
	struct precopy_stream_rp_decoder *rp;
	uint8_t b[20];

	cr_assert_eq(precopy_stream_encode_rp_ack(b, sizeof(b)), 20);
	cr_assert_eq(precopy_stream_rp_decoder_new(&rp, rp_fail_cb, NULL), 0);
	cr_assert_eq(precopy_stream_rp_decoder_feed(rp, b, 20), -ENOTCONN);
	cr_expect_str_eq(precopy_stream_rp_decoder_error(rp),
			 "offset 0: event callback failed on RP_ACK (error -107)");
	cr_expect_eq(precopy_stream_rp_decoder_finish(rp), -ENOTCONN);
	precopy_stream_rp_decoder_free(rp);
}
