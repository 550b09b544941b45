/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz-stream.c — libFuzzer harness for the device-state stream
 * decoder and the return-path decoder (built by `make fuzz`).
 *
 * Input layout:
 *   byte 0      mode: bit 1 prepends a valid preamble + STREAM_HDR
 *               declaring 1 + (mode >> 4) % 4 devices; bit 2 rewrites every
 *               record's header and payload CRC in the data (after the
 *               preamble when none was prepended, and in the return-path
 *               copy) so that the fuzzer reaches the checks behind the CRCs;
 *               bit 3 makes the event callbacks fail with -EIO on event
 *               number byte1 % 16 (the failure must come back unchanged)
 *   bytes 1..4  split sizes: the data is fed in pieces of 1 + b % 64 bytes
 *               (b >= 0xF0: the whole remainder), cycling over the four
 *   bytes 5..   the data; it is also fed, unmodified, to a return-path
 *               decoder
 *
 * Both decoders must end in 0, -EBADMSG or -EPROTO with an "offset "
 * message, keep failing with the same error, and hand out only in-bounds
 * slices; any violation aborts.
 *
 * Built with -DFUZZ_STREAM_GEN_CORPUS and linked with libprecopy.a, this
 * file instead writes the seed corpus into the directory given as argv[1]
 * (tests/fuzz/corpus-stream/).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/stream.h"
#include "stream_crcs.h"

static const uint32_t IDS[] = { 0, 1, 2, 7 };
static const struct precopy_stream_limits LIM = { .max_chunk = 4096, .max_config = 1024,
						  .max_devices = 8 };

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "fuzz-stream: check failed: %s (line %d)\n", #c, \
				__LINE__);                                         \
			abort();                                                   \
		}                                                                  \
	} while (0)

struct ctx {
	const uint8_t *lo, *hi; /* the slice being fed */
	uint64_t data_bytes;
	int events;
	int fail_at;            /* event number that fails, -1: none */
};

static int on_event(void *opaque, const struct precopy_stream_event *ev)
{
	struct ctx *c = opaque;
	int known = 0;

	for (size_t i = 0; i < sizeof(IDS) / sizeof(IDS[0]); i++)
		known |= ev->dev_id == IDS[i];
	switch (ev->type) {
	case PRECOPY_STREAM_EV_HEADER:
	case PRECOPY_STREAM_EV_STREAM_END:
		CHECK(ev->dev_id == PRECOPY_STREAM_DEV_NONE);
		break;
	case PRECOPY_STREAM_EV_DEV_SETUP:
		CHECK(known && ev->u.setup->dev_id == ev->dev_id);
		CHECK(memchr(ev->u.setup->name, 0, sizeof(ev->u.setup->name)) != NULL);
		CHECK(ev->u.setup->mig_flags & PRECOPY_STREAM_MIG_STOP_COPY);
		break;
	case PRECOPY_STREAM_EV_DEV_CONFIG:
		CHECK(known && ev->u.config.len <= LIM.max_config);
		if (ev->u.config.len) { /* read every byte: ASan checks the bounds */
			volatile uint32_t sink =
				precopy_stream_crc32c(0, ev->u.config.blob, ev->u.config.len);
			(void)sink;
		}
		break;
	case PRECOPY_STREAM_EV_DATA: {
		const uint8_t *p = ev->u.data.ptr;

		CHECK(known && ev->u.data.len > 0);
		CHECK(p >= c->lo && p + ev->u.data.len <= c->hi);
		CHECK(ev->u.data.chunk_len <= LIM.max_chunk);
		CHECK((uint64_t)ev->u.data.chunk_off + ev->u.data.len <= ev->u.data.chunk_len);
		c->data_bytes += ev->u.data.len;
		break;
	}
	case PRECOPY_STREAM_EV_DATA_END:
	case PRECOPY_STREAM_EV_INITIAL_SENT:
	case PRECOPY_STREAM_EV_DEV_END:
		CHECK(known);
		break;
	default:
		CHECK(!"unknown event type");
	}
	return c->events++ == c->fail_at ? -EIO : 0;
}

static int on_rp(void *opaque, const struct precopy_stream_rp_event *ev)
{
	struct ctx *c = opaque;

	CHECK(ev->type == PRECOPY_STREAM_RP_EV_ACK || ev->type == PRECOPY_STREAM_RP_EV_ERROR);
	if (ev->type == PRECOPY_STREAM_RP_EV_ERROR) {
		CHECK(ev->code >= 1 && ev->code <= (int)PRECOPY_STREAM_CODE_MAX);
		CHECK(strlen(ev->reason) <= PRECOPY_STREAM_REASON_MAX);
	}
	return c->events++ == c->fail_at ? -EIO : 0;
}

static size_t piece(const uint8_t *splits, size_t i, size_t left)
{
	uint8_t b = splits[i % 4];
	size_t n = b >= 0xF0 ? left : 1u + b % 64u;

	return n < left ? n : left;
}

static void check_error(int e, const char *msg, const struct ctx *c)
{
	CHECK(e == 0 || e == -EBADMSG || e == -EPROTO ||
	      (e == -EIO && c->fail_at >= 0 && c->events > c->fail_at));
	if (e)
		CHECK(strncmp(msg, "offset ", 7) == 0);
	else
		CHECK(msg[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct precopy_stream_decoder *dec;
	struct precopy_stream_rp_decoder *rp;
	struct ctx c = { 0 };
	uint8_t mode, splits[4];
	size_t pre = 0, len, i = 0;
	uint8_t *buf;
	int e = 0;

	if (size < 5)
		return 0;
	mode = data[0];
	memcpy(splits, data + 1, 4);
	c.fail_at = (mode & 8) ? data[1] % 16 : -1;
	data += 5;
	size -= 5;

	/* forward stream */
	buf = malloc(PRECOPY_STREAM_START_SIZE + size + 1);
	CHECK(buf);
	if (mode & 2) {
		int n = precopy_stream_encode_stream_hdr(buf, PRECOPY_STREAM_START_SIZE,
							 1 + (mode >> 4) % 4, 4096);

		CHECK(n == (int)PRECOPY_STREAM_START_SIZE);
		pre = (size_t)n;
	}
	if (size)
		memcpy(buf + pre, data, size);
	if ((mode & 4) && pre)
		fix_crcs(buf + pre, size);
	else if ((mode & 4) && size > PRECOPY_STREAM_PREAMBLE_SIZE)
		fix_crcs(buf + PRECOPY_STREAM_PREAMBLE_SIZE, size - PRECOPY_STREAM_PREAMBLE_SIZE);
	len = pre + size;
	CHECK(precopy_stream_decoder_new(&dec, &LIM, IDS, sizeof(IDS) / sizeof(IDS[0]), on_event,
					 &c) == 0);
	for (size_t off = 0; off < len && !e; i++) {
		size_t n = piece(splits, i, len - off);

		c.lo = buf + off;
		c.hi = buf + off + n;
		e = precopy_stream_decoder_feed(dec, buf + off, n);
		off += n;
	}
	if (!e)
		e = precopy_stream_decoder_finish(dec);
	check_error(e, precopy_stream_decoder_error(dec), &c);
	if (e) {
		CHECK(precopy_stream_decoder_feed(dec, buf, 1) == e);
		CHECK(precopy_stream_decoder_finish(dec) == e);
	} else {
		struct precopy_stream_decoder_stats st;

		CHECK(precopy_stream_decoder_stats(dec, &st) == 0 && st.ended);
		CHECK(st.devices_ended == st.devices_setup && st.devices_setup == st.devices_declared);
	}
	precopy_stream_decoder_free(dec);
	free(buf);

	/* return path, same bytes (CRCs fixed in mode bit 2) */
	e = 0;
	buf = malloc(size + 1);
	CHECK(buf);
	if (size)
		memcpy(buf, data, size);
	if (mode & 4)
		fix_crcs(buf, size);
	data = buf;
	c.events = 0;
	CHECK(precopy_stream_rp_decoder_new(&rp, on_rp, &c) == 0);
	i = 0;
	for (size_t off = 0; off < size && !e; i++) {
		size_t n = piece(splits, i, size - off);

		e = precopy_stream_rp_decoder_feed(rp, data + off, n);
		off += n;
	}
	if (!e)
		e = precopy_stream_rp_decoder_finish(rp);
	check_error(e, precopy_stream_rp_decoder_error(rp), &c);
	if (e) {
		CHECK(precopy_stream_rp_decoder_feed(rp, "x", 1) == e);
		CHECK(precopy_stream_rp_decoder_finish(rp) == e);
	}
	precopy_stream_rp_decoder_free(rp);
	free(buf);
	return 0;
}

#ifdef FUZZ_STREAM_GEN_CORPUS
/* ---- seed corpus generator ------------------------------------------------ */

static size_t put(size_t at, int n)
{
	CHECK(n > 0);
	return at + (size_t)n;
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const uint8_t *splits,
		       const uint8_t *p, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	CHECK(f);
	CHECK(fwrite(&mode, 1, 1, f) == 1);
	CHECK(fwrite(splits, 1, 4, f) == 4);
	CHECK(fwrite(p, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

/* Records after the stream header: every kind, three devices. */
static size_t body(uint8_t *b, size_t cap)
{
	struct precopy_stream_dev_setup s0 = { .dev_id = 0, .mig_flags = 5, .name = "0000:3b:00.0" };
	struct precopy_stream_dev_setup s1 = { .dev_id = 1, .mig_flags = 1, .name = "nic" };
	struct precopy_stream_dev_setup s7 = { .dev_id = 7, .mig_flags = 7 };
	const uint8_t pl[40] = "device state bytes, forty of them......";
	size_t at = 0;

	at = put(at, precopy_stream_encode_dev_setup(b + at, cap - at, &s0));
	at = put(at, precopy_stream_encode_dev_setup(b + at, cap - at, &s1));
	at = put(at, precopy_stream_encode_dev_config(b + at, cap - at, 0, pl, 12));
	at = put(at, precopy_stream_encode_data(b + at, cap - at, 0, pl, 40));
	at = put(at, precopy_stream_encode_data_hdr(b + at, cap - at, 1, 8));
	memcpy(b + at, pl, 8);
	at += 8;
	at = put(at, precopy_stream_encode_dev_setup(b + at, cap - at, &s7));
	at = put(at, precopy_stream_encode_initial_sent(b + at, cap - at, 0));
	at = put(at, precopy_stream_encode_initial_sent(b + at, cap - at, 7));
	at = put(at, precopy_stream_encode_dev_end(b + at, cap - at, 1, 8));
	at = put(at, precopy_stream_encode_dev_end(b + at, cap - at, 0, 40));
	at = put(at, precopy_stream_encode_dev_end(b + at, cap - at, 7, 0));
	at = put(at, precopy_stream_encode_stream_end(b + at, cap - at));
	return at;
}

int main(int argc, char **argv)
{
	uint8_t b[2048];
	const uint8_t whole[4] = { 0xFF, 0xFF, 0xFF, 0xFF }, small[4] = { 0, 6, 19, 63 };
	size_t at;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	at = put(0, precopy_stream_encode_stream_hdr(b, sizeof(b), 3, 4096));
	at += body(b + at, sizeof(b) - at);
	write_seed(argv[1], "valid-whole", 0, whole, b, at);
	write_seed(argv[1], "valid-small-pieces", 0, small, b, at);
	write_seed(argv[1], "valid-truncated", 0, small, b, at - 7);
	write_seed(argv[1], "valid-fixcrc", 4, small, b, at);
	write_seed(argv[1], "valid-callback-fails", 8, small, b, at);

	at = body(b, sizeof(b));
	write_seed(argv[1], "body-prepend-fixcrc", 6 | (2 << 4), small, b, at);
	b[0] = 0x09; /* unknown tag, CRCs fixed by the harness */
	write_seed(argv[1], "body-unknown-tag", 6, whole, b, at);

	at = put(0, precopy_stream_encode_rp_ack(b, sizeof(b)));
	at = put(at, precopy_stream_encode_rp_error(b + at, sizeof(b) - at, 1, EIO, "load failed"));
	write_seed(argv[1], "rp-ack-error", 0, small, b, at);
	write_seed(argv[1], "rp-ack-error-fixcrc", 4, small, b, at);
	at = put(at, precopy_stream_encode_rp_ack(b + at, sizeof(b) - at));
	write_seed(argv[1], "rp-after-error", 4, whole, b, at);
	return 0;
}
#endif
