/* SPDX-License-Identifier: MIT */
/* tests/test-stream-decode.c — the forward-stream decoder on valid input:
 * round trips of every record kind, the same events for every way of
 * splitting the input, payload passed through without buffering, progress
 * queries, limits at their exact edge, constructor argument checks. */
#include "test-stream-util.h"

static const uint32_t IDS[] = { 1, 7, 0 };
#define NIDS 3

static void pattern(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 8));
}

/* The expected per-device data, filled by build_big(). */
static struct sbuf want_data[NIDS];

static int dev_index(uint32_t id)
{
	for (int i = 0; i < NIDS; i++)
		if (IDS[i] == id)
			return i;
	return -1;
}

static void add_data(struct sbuf *sb, uint32_t dev, uint32_t len, int crc)
{
	uint8_t buf[5000];

	cr_assert_leq(len, sizeof(buf));
	pattern(buf, len, dev * 1000 + (uint32_t)want_data[dev_index(dev)].len);
	sb_data(sb, dev, buf, len, crc);
	sb_bytes(&want_data[dev_index(dev)], buf, len);
}

/* Three devices, interleaved, using every record kind and both DEV_DATA
 * flavours (payload CRC and spliced). */
static void build_big(struct sbuf *sb)
{
	uint8_t cfg[300];

	for (int i = 0; i < NIDS; i++)
		sb_free(&want_data[i]);
	pattern(cfg, sizeof(cfg), 99);
	sb_start(sb, 3, 4096);
	sb_setup(sb, 1, PRECOPY_STREAM_MIG_STOP_COPY | PRECOPY_STREAM_MIG_PRE_COPY, "0000:3b:00.0");
	sb_setup(sb, 7, PRECOPY_STREAM_MIG_STOP_COPY, "nic7");
	sb_config(sb, 1, cfg, sizeof(cfg));
	add_data(sb, 1, 1, 1);
	add_data(sb, 7, 33, 0);
	sb_setup(sb, 0, PRECOPY_STREAM_MIG_ALL, "");
	add_data(sb, 1, 4096, 0);
	sb_config(sb, 0, NULL, 0);
	sb_initial(sb, 0);
	add_data(sb, 1, 100, 1);
	sb_initial(sb, 1);
	add_data(sb, 0, 7, 1);
	add_data(sb, 1, 500, 0);
	sb_dev_end(sb, 7, 33);
	sb_dev_end(sb, 1, 1 + 4096 + 100 + 500);
	sb_dev_end(sb, 0, 7);
	sb_stream_end(sb);
}

static void decode_with(const struct sbuf *sb, const size_t *sizes, size_t nsizes,
			struct recorder *r)
{
	struct precopy_stream_decoder *dec;

	rec_init(r, IDS, NIDS);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, NIDS, rec_cb, r), 0);
	int e = feed_split(dec, r, sb->p, sb->len, sizes, nsizes);

	cr_assert_eq(e, 0, "feed: %d %s", e, precopy_stream_decoder_error(dec));
	cr_assert_eq(precopy_stream_decoder_finish(dec), 0, "%s", precopy_stream_decoder_error(dec));
	cr_assert_str_eq(precopy_stream_decoder_error(dec), "");
	cr_assert_eq(r->slice_outside, 0, "a DATA slice did not point into the fed bytes");
	for (int i = 0; i < NIDS; i++) {
		cr_assert_eq(r->data[i].len, want_data[i].len, "device %u data length", IDS[i]);
		cr_assert(!r->data[i].len || !memcmp(r->data[i].p, want_data[i].p, r->data[i].len),
			  "device %u data bytes", IDS[i]);
	}
	precopy_stream_decoder_free(dec);
}

Test(stream_decode, every_record_kind_exact_events)
{
	struct sbuf sb = { 0 };
	struct recorder r;
	uint8_t cfg[5] = { 1, 2, 3, 4, 5 }, d[3] = { 9, 8, 7 };
	struct precopy_stream_decoder *dec;
	const uint32_t ids[] = { 4 };

	sb_start(&sb, 1, 64);                                       /* 0..44 */
	sb_setup(&sb, 4, PRECOPY_STREAM_MIG_STOP_COPY | PRECOPY_STREAM_MIG_PRE_COPY, "gpu");
	sb_config(&sb, 4, cfg, sizeof(cfg));                         /* 44+47=91 */
	sb_data(&sb, 4, d, 3, 1);                                    /* 116 */
	sb_initial(&sb, 4);                                          /* 139 */
	sb_data(&sb, 4, d, 2, 0);                                    /* 159 */
	sb_dev_end(&sb, 4, 5);                                       /* 181 */
	sb_stream_end(&sb);                                          /* 209 */
	cr_assert_eq(sb.len, 229u);

	rec_init(&r, ids, 1);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, ids, 1, rec_cb, &r), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), 0);
	cr_assert_eq(precopy_stream_decoder_finish(dec), 0);
	cr_expect_str_eq(r.trace,
			 "H(v1,n1,c64)@8 S(4,f5,15b3:101e,i4000,'gpu')@44 C(4,5,"
			 "53518fab)@91 D(4,3)@116 I(4)@139 D(4,2)@159 E(4,5)@181 Z@209");
	cr_expect_eq(r.data[0].len, 5u);
	cr_expect_eq(memcmp(r.data[0].p, "\x09\x08\x07\x09\x08", 5), 0);

	struct precopy_stream_decoder_stats st;
	struct precopy_stream_dev_status ds;

	cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
	cr_expect_eq(st.bytes, 229u);
	cr_expect_eq(st.records, 8u);
	cr_expect_eq(st.devices_declared, 1u);
	cr_expect_eq(st.devices_setup, 1u);
	cr_expect_eq(st.devices_precopy, 1u);
	cr_expect_eq(st.initial_sent, 1u);
	cr_expect_eq(st.devices_ended, 1u);
	cr_expect(st.header_seen && st.ended && st.error == 0);
	cr_assert_eq(precopy_stream_decoder_device(dec, 4, &ds), 0);
	cr_expect_eq(ds.phase, PRECOPY_STREAM_DEV_ENDED);
	cr_expect_eq(ds.mig_flags, 5u);
	cr_expect(ds.config_seen && ds.initial_sent);
	cr_expect_eq(ds.data_bytes, 5u);
	cr_expect_eq(ds.data_chunks, 2u);
	cr_expect_eq(precopy_stream_decoder_device(dec, 5, &ds), -ENOENT);
	cr_expect_eq(precopy_stream_decoder_device(dec, 4, NULL), -EINVAL);
	cr_expect_eq(precopy_stream_decoder_stats(NULL, &st), -EINVAL);
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	sb_free(&sb);
}

Test(stream_decode, config_crc_in_trace_matches)
{
	/* guards the literal in the test above (computed independently with a
	 * bitwise Python reference) */
	cr_expect_eq(precopy_stream_crc32c(0, "\1\2\3\4\5", 5), 0x53518fabu);
}

Test(stream_decode, split_at_every_boundary_gives_the_same_events)
{
	struct sbuf sb = { 0 };
	struct recorder whole, r;

	build_big(&sb);
	decode_with(&sb, NULL, 0, &whole);
	cr_assert_gt(whole.tlen, 0);
	for (size_t cut = 1; cut < sb.len; cut++) {
		size_t sizes[2] = { cut, 0 };

		decode_with(&sb, sizes, 2, &r);
		cr_assert_str_eq(r.trace, whole.trace, "cut at %zu", cut);
		rec_fini(&r);
	}
	rec_fini(&whole);
	sb_free(&sb);
}

Test(stream_decode, one_byte_and_random_feeds)
{
	struct sbuf sb = { 0 };
	struct recorder whole, r;
	size_t one = 1;
	uint64_t seed = 42;

	build_big(&sb);
	decode_with(&sb, NULL, 0, &whole);
	decode_with(&sb, &one, 1, &r);
	cr_assert_str_eq(r.trace, whole.trace);
	rec_fini(&r);
	for (int round = 0; round < 200; round++) {
		size_t sizes[16];

		for (int i = 0; i < 16; i++)
			sizes[i] = 1 + prng_next(&seed) % (round % 2 ? 7 : 300);
		decode_with(&sb, sizes, 16, &r);
		cr_assert_str_eq(r.trace, whole.trace, "round %d", round);
		rec_fini(&r);
	}
	rec_fini(&whole);
	sb_free(&sb);
}

/* Payload goes to the callback as it arrives: a DATA slice always points
 * into the bytes of the current feed() call, never into a decoder copy. */
static int count_slices(void *opaque, const struct precopy_stream_event *ev)
{
	size_t *n = opaque;

	if (ev->type == PRECOPY_STREAM_EV_DATA)
		(*n)++;
	return 0;
}

Test(stream_decode, data_chunk_is_not_buffered)
{
	struct sbuf sb = { 0 };
	struct precopy_stream_decoder *dec;
	const uint32_t ids[] = { 2 };
	static uint8_t chunk[1 << 20];
	size_t slices = 0;

	pattern(chunk, sizeof(chunk), 5);
	sb_start(&sb, 1, sizeof(chunk));
	sb_setup(&sb, 2, 1, "big");
	sb_data(&sb, 2, chunk, sizeof(chunk), 1);
	cr_assert_eq(precopy_stream_decoder_new(&dec, &(struct precopy_stream_limits){ .max_chunk = sizeof(chunk) },
						ids, 1, count_slices, &slices), 0);
	/* the chunk arrives in 4 KiB pieces: 256 slices, no whole-chunk event */
	size_t sizes[] = { 4096 };
	size_t hdr = sb.len - sizeof(chunk);

	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, hdr), 0);
	cr_assert_eq(feed_split(dec, NULL, sb.p + hdr, sizeof(chunk), sizes, 1), 0);
	cr_expect_eq(slices, 256u);
	precopy_stream_decoder_free(dec);
	sb_free(&sb);
}

Test(stream_decode, limits_accept_their_exact_edge)
{
	struct sbuf sb = { 0 };
	struct recorder r;
	struct precopy_stream_decoder *dec;
	const uint32_t ids[] = { 1, 2 };
	struct precopy_stream_limits lim = { .max_chunk = 1000, .max_config = 2000, .max_devices = 2 };
	static uint8_t blob[2000], d[1000];

	pattern(blob, sizeof(blob), 1);
	pattern(d, sizeof(d), 2);
	sb_start(&sb, 2, 1000);
	sb_setup(&sb, 1, 1, "");
	sb_setup(&sb, 2, 1, "0123456789012345678901234567890123456789012345678901234567890123");
	sb_config(&sb, 1, blob, 2000);
	sb_config(&sb, 2, blob, 89); /* just past the inline buffer */
	sb_data(&sb, 1, d, 1000, 1);
	sb_dev_end(&sb, 1, 1000);
	sb_dev_end(&sb, 2, 0);
	sb_stream_end(&sb);
	rec_init(&r, ids, 2);
	cr_assert_eq(precopy_stream_decoder_new(&dec, &lim, ids, 2, rec_cb, &r), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), 0, "%s",
		     precopy_stream_decoder_error(dec));
	cr_assert_eq(precopy_stream_decoder_finish(dec), 0);
	cr_expect(strstr(r.trace, "C(1,2000,") && strstr(r.trace, "C(2,89,"));
	cr_expect(strstr(r.trace, "'0123456789012345678901234567890123456789012345678901234567890123'"));
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	sb_free(&sb);
}

Test(stream_decode, zero_devices_and_fewer_than_known)
{
	struct sbuf sb = { 0 };
	struct recorder r;
	struct precopy_stream_decoder *dec;
	struct precopy_stream_dev_status ds;

	sb_start(&sb, 0, 1);
	sb_stream_end(&sb);
	rec_init(&r, IDS, NIDS);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, NIDS, rec_cb, &r), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), 0);
	cr_assert_eq(precopy_stream_decoder_finish(dec), 0);
	cr_expect_str_eq(r.trace, "H(v1,n0,c1)@8 Z@44");
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	sb_free(&sb);

	/* two of the three known devices: the third stays WAITING */
	sb_start(&sb, 2, 16);
	sb_setup(&sb, 7, 1, "");
	sb_setup(&sb, 0, 1, "");
	sb_dev_end(&sb, 0, 0);
	sb_dev_end(&sb, 7, 0);
	sb_stream_end(&sb);
	rec_init(&r, IDS, NIDS);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, NIDS, rec_cb, &r), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, sb.len), 0, "%s",
		     precopy_stream_decoder_error(dec));
	cr_assert_eq(precopy_stream_decoder_finish(dec), 0);
	cr_assert_eq(precopy_stream_decoder_device(dec, 1, &ds), 0);
	cr_expect_eq(ds.phase, PRECOPY_STREAM_DEV_WAITING);
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	sb_free(&sb);
}

Test(stream_decode, progress_for_switchover_ack)
{
	struct sbuf sb = { 0 };
	struct recorder r;
	struct precopy_stream_decoder *dec;
	struct precopy_stream_decoder_stats st;
	uint8_t d[4] = { 0 };

	sb_start(&sb, 3, 16);
	sb_setup(&sb, 1, 5, "");
	sb_setup(&sb, 7, 1, "");
	sb_setup(&sb, 0, 5, "");
	sb_data(&sb, 1, d, 4, 1);
	size_t before_markers = sb.len;
	sb_initial(&sb, 1);
	size_t one_marker = sb.len;
	sb_initial(&sb, 0);

	rec_init(&r, IDS, NIDS);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, NIDS, rec_cb, &r), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p, before_markers), 0);
	cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
	cr_expect_eq(st.devices_setup, 3u);
	cr_expect_eq(st.devices_precopy, 2u);
	cr_expect_eq(st.initial_sent, 0u);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p + before_markers, one_marker - before_markers), 0);
	cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
	cr_expect_eq(st.initial_sent, 1u);
	cr_assert_eq(precopy_stream_decoder_feed(dec, sb.p + one_marker, sb.len - one_marker), 0);
	cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
	cr_expect_eq(st.initial_sent, st.devices_precopy);
	cr_expect_eq(st.bytes, sb.len);
	cr_expect_eq(st.ended, 0);
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	sb_free(&sb);
}

static int nop_cb(void *o, const struct precopy_stream_event *ev)
{
	return 0;
}

Test(stream_decode, new_argument_errors)
{
	struct precopy_stream_decoder *dec = NULL;
	const uint32_t ok[] = { 1, 2 }, dup[] = { 3, 1, 3 }, none[] = { 1, PRECOPY_STREAM_DEV_NONE };
	uint32_t many[65];

	for (uint32_t i = 0; i < 65; i++)
		many[i] = i;
	struct {
		const char *what;
		struct precopy_stream_decoder **out;
		const struct precopy_stream_limits *lim;
		const uint32_t *ids;
		size_t n;
		precopy_stream_event_fn fn;
		int want;
	} t[] = {
		{ "NULL out", NULL, NULL, ok, 2, nop_cb, -EINVAL },
		{ "NULL ids", &dec, NULL, NULL, 2, nop_cb, -EINVAL },
		{ "NULL fn", &dec, NULL, ok, 2, NULL, -EINVAL },
		{ "no devices", &dec, NULL, ok, 0, nop_cb, 0 },
		{ "no devices, NULL ids", &dec, NULL, NULL, 0, nop_cb, 0 },
		{ "duplicate id", &dec, NULL, dup, 3, nop_cb, -EINVAL },
		{ "NONE id", &dec, NULL, none, 2, nop_cb, -EINVAL },
		{ "above default max_devices", &dec, NULL, many, 65, nop_cb, -EINVAL },
		{ "above max_devices", &dec, &(struct precopy_stream_limits){ .max_devices = 1 }, ok, 2, nop_cb, -EINVAL },
		{ "chunk above cap", &dec, &(struct precopy_stream_limits){ .max_chunk = PRECOPY_STREAM_CAP_MAX_CHUNK + 1 }, ok, 2, nop_cb, -EINVAL },
		{ "config above cap", &dec, &(struct precopy_stream_limits){ .max_config = PRECOPY_STREAM_CAP_MAX_CONFIG + 1 }, ok, 2, nop_cb, -EINVAL },
		{ "devices above cap", &dec, &(struct precopy_stream_limits){ .max_devices = PRECOPY_STREAM_CAP_MAX_DEVICES + 1 }, ok, 2, nop_cb, -EINVAL },
		{ "64 with defaults", &dec, NULL, many, 64, nop_cb, 0 },
		{ "65 with a raised limit", &dec, &(struct precopy_stream_limits){ .max_devices = 65 }, many, 65, nop_cb, 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		dec = NULL;
		int got = precopy_stream_decoder_new(t[i].out, t[i].lim, t[i].ids, t[i].n, t[i].fn, NULL);

		cr_expect_eq(got, t[i].want, "%s: got %d want %d", t[i].what, got, t[i].want);
		if (got == 0)
			cr_expect_not_null(dec, "%s", t[i].what);
		else
			cr_expect_null(dec, "%s: *out written on failure", t[i].what);
		precopy_stream_decoder_free(dec);
	}
	precopy_stream_decoder_free(NULL);
	cr_expect_eq(precopy_stream_decoder_feed(NULL, "x", 1), -EINVAL);
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, ok, 2, nop_cb, NULL), 0);
	cr_expect_eq(precopy_stream_decoder_feed(dec, NULL, 1), -EINVAL);
	cr_expect_eq(precopy_stream_decoder_feed(dec, NULL, 0), 0);
	cr_expect_eq(precopy_stream_decoder_finish(NULL), -EINVAL);
	precopy_stream_decoder_free(dec);
}
