/* SPDX-License-Identifier: MIT */
/* tests/test-stream-mutate.c — randomized mutation of valid streams (fixed
 * seeds, so failures reproduce): the decoders must end in a clean -EBADMSG
 * or -EPROTO with an "offset N: " message, or accept; never crash or
 * over-read (run this suite under ASan too). A single flipped bit must be
 * caught everywhere except inside a DEV_DATA payload sent without a
 * payload CRC (the spliced flavour), which only the header CRC protects. */
#include "test-stream-util.h"

static const uint32_t IDS[] = { 10, 11, 12 };
static const struct precopy_stream_limits LIM = { .max_chunk = 2048, .max_config = 1024,
						  .max_devices = 4 };

/* Byte ranges not covered by any CRC. */
struct ranges {
	size_t lo[32], hi[32];
	int n;
};

static void build(struct sbuf *sb, struct ranges *unc, uint64_t *seed)
{
	uint8_t buf[2048];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)prng_next(seed);
	unc->n = 0;
	sb_start(sb, 3, 2048);
	sb_setup(sb, 10, PRECOPY_STREAM_MIG_ALL, "0000:01:00.0");
	sb_setup(sb, 11, PRECOPY_STREAM_MIG_STOP_COPY, "");
	sb_config(sb, 10, buf, 100);
	sb_data(sb, 10, buf, 300, 1);
	sb_data(sb, 11, buf + 7, 50, 0);
	unc->lo[unc->n] = sb->len - 50;
	unc->hi[unc->n++] = sb->len;
	sb_setup(sb, 12, PRECOPY_STREAM_MIG_STOP_COPY | PRECOPY_STREAM_MIG_PRE_COPY, "vf2");
	sb_initial(sb, 12);
	sb_initial(sb, 10);
	sb_data(sb, 12, buf, 2048, 0);
	unc->lo[unc->n] = sb->len - 2048;
	unc->hi[unc->n++] = sb->len;
	sb_dev_end(sb, 11, 50);
	sb_data(sb, 10, buf + 1, 9, 1);
	sb_dev_end(sb, 10, 309);
	sb_dev_end(sb, 12, 2048);
	sb_stream_end(sb);
}

static int uncovered(const struct ranges *u, size_t pos)
{
	for (int i = 0; i < u->n; i++)
		if (pos >= u->lo[i] && pos < u->hi[i])
			return 1;
	return 0;
}

/* Decode with random splits; returns the final result (feed error or
 * finish). Checks the error contract on the way. */
static int decode(const uint8_t *p, size_t len, uint64_t *seed)
{
	struct precopy_stream_decoder *dec;
	struct recorder r;
	int e = 0;

	rec_init(&r, IDS, 3);
	cr_assert_eq(precopy_stream_decoder_new(&dec, &LIM, IDS, 3, rec_cb, &r), 0);
	while (len && !e) {
		size_t n = 1 + prng_next(seed) % (prng_next(seed) % 2 ? 4 : 700);

		n = n > len ? len : n;
		r.feed_lo = p;
		r.feed_hi = p + n;
		e = precopy_stream_decoder_feed(dec, p, n);
		p += n;
		len -= n;
	}
	if (!e)
		e = precopy_stream_decoder_finish(dec);
	cr_assert(e == 0 || e == -EBADMSG || e == -EPROTO, "unexpected error %d", e);
	cr_assert_eq(r.slice_outside, 0);
	const char *m = precopy_stream_decoder_error(dec);

	if (e) {
		cr_assert_eq(strncmp(m, "offset ", 7), 0, "message '%s'", m);
		cr_assert_eq(precopy_stream_decoder_feed(dec, "x", 1), e, "not sticky");
	} else {
		struct precopy_stream_decoder_stats st;

		cr_assert_str_eq(m, "");
		cr_assert_eq(precopy_stream_decoder_stats(dec, &st), 0);
		cr_assert(st.ended);
	}
	precopy_stream_decoder_free(dec);
	rec_fini(&r);
	return e;
}

Test(stream_mutate, single_bit_flips_are_caught_where_covered)
{
	struct sbuf sb = { 0 };
	struct ranges unc;
	uint64_t seed = 1;
	int caught = 0, accepted = 0;

	build(&sb, &unc, &seed);
	cr_assert_eq(decode(sb.p, sb.len, &seed), 0);
	uint8_t *m = malloc(sb.len);

	cr_assert_not_null(m);
	/* every bit of every covered byte, and a sample of uncovered ones */
	for (size_t pos = 0; pos < sb.len; pos++) {
		if (uncovered(&unc, pos) && pos % 97)
			continue;
		for (int bit = 0; bit < 8; bit++) {
			memcpy(m, sb.p, sb.len);
			m[pos] ^= (uint8_t)(1u << bit);
			int e = decode(m, sb.len, &seed);

			if (e == 0) {
				cr_assert(uncovered(&unc, pos), "flip at %zu bit %d accepted", pos, bit);
				accepted++;
			} else {
				caught++;
			}
		}
	}
	cr_log_info("bit flips: %d caught, %d accepted (uncovered payload)", caught, accepted);
	cr_expect_gt(caught, 0);
	cr_expect_gt(accepted, 0, "flips inside spliced payload are expected to pass");
	free(m);
	sb_free(&sb);
}

Test(stream_mutate, random_mutations_never_crash)
{
	uint64_t seed = 0xC0FFEE;
	int outcome[3] = { 0 };

	for (int iter = 0; iter < 4000; iter++) {
		struct sbuf sb = { 0 };
		struct ranges unc;

		build(&sb, &unc, &seed);
		int nmut = 1 + (int)(prng_next(&seed) % 4);

		for (int k = 0; k < nmut && sb.len > 1; k++) {
			size_t pos = prng_next(&seed) % sb.len;

			switch (prng_next(&seed) % 6) {
			case 0: /* random byte */
				sb.p[pos] = (uint8_t)prng_next(&seed);
				break;
			case 1: /* delete a byte */
				memmove(sb.p + pos, sb.p + pos + 1, sb.len - pos - 1);
				sb.len--;
				break;
			case 2: /* insert a byte */
				sb_room(&sb, 1);
				memmove(sb.p + pos + 1, sb.p + pos, sb.len - pos);
				sb.p[pos] = (uint8_t)prng_next(&seed);
				sb.len++;
				break;
			case 3: /* truncate */
				sb.len = pos;
				break;
			case 4: { /* duplicate a range at the end */
				size_t n = 1 + prng_next(&seed) % 64;

				n = pos + n > sb.len ? sb.len - pos : n;
				uint8_t tmp[64];

				memcpy(tmp, sb.p + pos, n);
				sb_bytes(&sb, tmp, n);
				break;
			}
			default: /* set a length-ish field to an extreme */
				if (pos + 4 <= sb.len)
					le32(sb.p + pos, prng_next(&seed) % 2 ? 0xFFFFFFFFu : 0x7FFFFFFFu);
				break;
			}
		}
		int e = decode(sb.p, sb.len, &seed);

		outcome[e == 0 ? 0 : e == -EBADMSG ? 1 : 2]++;
		sb_free(&sb);
	}
	cr_log_info("mutations: %d accepted, %d EBADMSG, %d EPROTO", outcome[0], outcome[1], outcome[2]);
	cr_expect_gt(outcome[1], 0);
}

static int rp_nop(void *o, const struct precopy_stream_rp_event *ev)
{
	return 0;
}

Test(stream_mutate, return_path_mutations)
{
	uint64_t seed = 77;
	uint8_t base[200], m[200];
	int n = precopy_stream_encode_rp_ack(base, sizeof(base));

	cr_assert_eq(n, 20);
	int k = precopy_stream_encode_rp_error(base + 20, sizeof(base) - 20, 3, 22, "bad config");

	cr_assert_gt(k, 0);
	size_t len = (size_t)(n + k);

	for (int iter = 0; iter < 20000; iter++) {
		struct precopy_stream_rp_decoder *rp;
		size_t mlen = len;

		/* a burst of 1-3 changed bytes: CRC-32C detects every burst of
		 * up to 32 bits, so no corruption can go unnoticed */
		size_t at = prng_next(&seed) % len;

		memcpy(m, base, len);
		for (size_t j = 0; j < 1 + (size_t)iter % 3 && at + j < len; j++)
			m[at + j] ^= (uint8_t)(1 + prng_next(&seed) % 255);
		if (iter % 5 == 0)
			mlen = prng_next(&seed) % len;
		cr_assert_eq(precopy_stream_rp_decoder_new(&rp, rp_nop, NULL), 0);
		int e = 0;

		for (size_t off = 0; off < mlen && !e;) {
			size_t step = 1 + prng_next(&seed) % 9;

			step = step > mlen - off ? mlen - off : step;
			e = precopy_stream_rp_decoder_feed(rp, m + off, step);
			off += step;
		}
		if (!e)
			e = precopy_stream_rp_decoder_finish(rp);
		cr_assert(e == 0 || e == -EBADMSG || e == -EPROTO, "unexpected %d", e);
		if (e)
			cr_assert_eq(strncmp(precopy_stream_rp_decoder_error(rp), "offset ", 7), 0);
		/* every byte of a return-path message is CRC-covered: a
		 * mutated full-length input is never accepted */
		if (mlen == len)
			cr_assert_neq(e, 0, "iter %d: mutated return path accepted", iter);
		precopy_stream_rp_decoder_free(rp);
	}
}
