/* SPDX-License-Identifier: MIT */
/* tests/test-stream-golden.c — streams recorded by an earlier library
 * still decode. tests/golden/ holds a device-state stream and a return
 * path as the version 1 encoders wrote them (hex, one record per comment
 * line). A destination must accept every stream version the README's
 * wire-format policy lists, so these files are never re-recorded when the
 * format changes: a new version gets new files beside them.
 *
 *  - decode: the recorded bytes, fed whole and one byte at a time, give
 *    exactly the events written below (record kinds, ids, flags, names,
 *    data bytes, totals);
 *  - encode: while PRECOPY_STREAM_VERSION is 1, today's encoders produce
 *    the recorded bytes exactly, so an accidental change of the wire
 *    format (without a version bump) fails here.
 * PRECOPY_GOLDEN_RECORD=1 rewrites the files from today's encoders (only
 * for a new format version's new files). Run from the source tree's root. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/stream.h"

#define GOLDEN_STREAM "tests/golden/stream-v1.hex"
#define GOLDEN_RP "tests/golden/rp-v1.hex"

/* ---- what the recorded streams hold ----------------------------------- */

#define GPU 10u
#define NIC 11u
static const uint32_t IDS[] = { GPU, NIC };
static const uint8_t GPU_CONFIG[12] = { 'c', 'f', 'g', 0, 1, 2, 3, 0xff, 0xfe, 0x80, 0x7f, 0x00 };

/* Device data: byte i of device dev's state. */
static uint8_t data_byte(uint32_t dev, uint64_t i)
{
	return (uint8_t)(dev * 29u + i * 7u + (i >> 5));
}

struct rec {
	const char *name;
	uint8_t b[512];
	int n;
};

struct recs {
	struct rec r[16];
	int n;
};

static struct rec *next(struct recs *rs, const char *name)
{
	cr_assert_lt(rs->n, 16);
	rs->r[rs->n].name = name;
	return &rs->r[rs->n++];
}

#define ENC(rs, name, call)                                               \
	do {                                                              \
		struct rec *r_ = next((rs), (name));                      \
		uint8_t *buf_ = r_->b;                                    \
		r_->n = (call);                                           \
		cr_assert_gt(r_->n, 0, "%s: encoder failed: %d", (name), r_->n); \
	} while (0)

static void data(struct recs *rs, const char *name, uint32_t dev, uint64_t off, uint32_t len)
{
	uint8_t p[256];

	cr_assert_leq(len, sizeof(p));
	for (uint32_t i = 0; i < len; i++)
		p[i] = data_byte(dev, off + i);
	ENC(rs, name, precopy_stream_encode_data(buf_, sizeof(r_->b), dev, p, len));
}

/* The forward stream, as today's encoders write it. */
static void encode_stream(struct recs *rs)
{
	struct precopy_stream_dev_setup gpu = { .dev_id = GPU, .mig_flags = PRECOPY_STREAM_MIG_ALL,
						.pci_vendor = 0x10de, .pci_device = 0x2330,
						.initial_bytes = 300, .name = "gpu0" };
	struct precopy_stream_dev_setup nic = { .dev_id = NIC, .mig_flags = PRECOPY_STREAM_MIG_STOP_COPY,
						.pci_vendor = 0x15b3, .pci_device = 0x101e,
						.initial_bytes = 0, .name = "nic0" };

	memset(rs, 0, sizeof(*rs));
	ENC(rs, "preamble, STREAM_HDR: 2 devices, max_chunk 4096",
	    precopy_stream_encode_stream_hdr(buf_, sizeof(r_->b), 2, 4096));
	ENC(rs, "DEV_SETUP 10 gpu0: STOP_COPY|P2P|PRE_COPY, 10de:2330, initial 300",
	    precopy_stream_encode_dev_setup(buf_, sizeof(r_->b), &gpu));
	ENC(rs, "DEV_SETUP 11 nic0: STOP_COPY, 15b3:101e, initial 0",
	    precopy_stream_encode_dev_setup(buf_, sizeof(r_->b), &nic));
	ENC(rs, "DEV_CONFIG 10: 12 bytes",
	    precopy_stream_encode_dev_config(buf_, sizeof(r_->b), GPU, GPU_CONFIG, sizeof(GPU_CONFIG)));
	data(rs, "DEV_DATA 10: bytes 0..199", GPU, 0, 200);
	data(rs, "DEV_DATA 10: bytes 200..299", GPU, 200, 100);
	ENC(rs, "DEV_INITIAL_SENT 10", precopy_stream_encode_initial_sent(buf_, sizeof(r_->b), GPU));
	{
		/* the zero-copy form: a header without payload CRC, the payload
		 * appended by the caller (spliced from a pipe in a VMM) */
		struct rec *r = next(rs, "DEV_DATA 11: bytes 0..63, no payload CRC");

		r->n = precopy_stream_encode_data_hdr(r->b, sizeof(r->b), NIC, 64);
		cr_assert_eq(r->n, (int)PRECOPY_STREAM_REC_HDR_SIZE);
		for (int i = 0; i < 64; i++)
			r->b[r->n++] = data_byte(NIC, (uint64_t)i);
	}
	data(rs, "DEV_DATA 10: bytes 300..349", GPU, 300, 50);
	ENC(rs, "DEV_END 10: 350 bytes", precopy_stream_encode_dev_end(buf_, sizeof(r_->b), GPU, 350));
	ENC(rs, "DEV_END 11: 64 bytes", precopy_stream_encode_dev_end(buf_, sizeof(r_->b), NIC, 64));
	ENC(rs, "STREAM_END", precopy_stream_encode_stream_end(buf_, sizeof(r_->b)));
}

/* The return path, as today's encoders write it. */
static void encode_rp(struct recs *rs)
{
	memset(rs, 0, sizeof(*rs));
	ENC(rs, "RP_ACK", precopy_stream_encode_rp_ack(buf_, sizeof(r_->b)));
	ENC(rs, "RP_ERROR 11: EIO (5), \"nic0: state rejected\"",
	    precopy_stream_encode_rp_error(buf_, sizeof(r_->b), NIC, EIO, "nic0: state rejected"));
}

/* The events the decoder must report for the recorded stream. */
static const char WANT_STREAM[] =
	"HEADER version 1 devices 2 max_chunk 4096\n"
	"SETUP 10 flags 7 10de:2330 initial 300 name gpu0\n"
	"SETUP 11 flags 1 15b3:101e initial 0 name nic0\n"
	"CONFIG 10 len 12\n"
	"DATA_END 10 chunk 200\n"
	"DATA_END 10 chunk 100\n"
	"INITIAL_SENT 10\n"
	"DATA_END 11 chunk 64\n"
	"DATA_END 10 chunk 50\n"
	"DEV_END 10 total 350\n"
	"DEV_END 11 total 64\n"
	"STREAM_END\n";

static const char WANT_RP[] =
	"ACK\n"
	"ERROR 11 code 5 reason nic0: state rejected\n";

/* ---- the hex files ----------------------------------------------------- */

static void record(const char *path, const struct recs *rs, const char *what)
{
	FILE *f = fopen(path, "w");

	cr_assert(f, "%s: %s", path, strerror(errno));
	fprintf(f, "# SPDX-License-Identifier: MIT\n");
	fprintf(f, "# %s, wire format version %u, recorded by tests/test-stream-golden.c.\n", what,
		PRECOPY_STREAM_VERSION);
	fprintf(f, "# Never re-recorded: destinations must keep decoding it (README, wire-format policy).\n");
	for (int i = 0; i < rs->n; i++) {
		fprintf(f, "# %s\n", rs->r[i].name);
		for (int k = 0; k < rs->r[i].n; k++)
			fprintf(f, "%02x%s", rs->r[i].b[k], (k % 16 == 15 || k == rs->r[i].n - 1) ? "\n" : " ");
	}
	cr_assert_eq(fclose(f), 0);
}

/* The bytes of a hex file ('#' to the end of the line is a comment). */
static uint8_t *load(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	uint8_t *out = NULL;
	size_t n = 0, cap = 0;
	char line[256];

	cr_assert(f, "%s: %s (run the tests from the source tree's root)", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *end;

		if ((end = strchr(p, '#')))
			*end = 0;
		for (;;) {
			unsigned long v;

			while (*p == ' ' || *p == '\n' || *p == '\t')
				p++;
			if (!*p)
				break;
			v = strtoul(p, &end, 16);
			cr_assert(end == p + 2 && v <= 0xff, "%s: not a hex byte at \"%.8s\"", path, p);
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				out = realloc(out, cap);
				cr_assert(out);
			}
			out[n++] = (uint8_t)v;
			p = end;
		}
	}
	fclose(f);
	cr_assert_gt(n, 0, "%s: empty", path);
	*len = n;
	return out;
}

static void flatten(const struct recs *rs, uint8_t **out, size_t *len)
{
	size_t n = 0;

	for (int i = 0; i < rs->n; i++)
		n += (size_t)rs->r[i].n;
	*out = malloc(n);
	cr_assert(*out);
	n = 0;
	for (int i = 0; i < rs->n; i++) {
		memcpy(*out + n, rs->r[i].b, (size_t)rs->r[i].n);
		n += (size_t)rs->r[i].n;
	}
	*len = n;
}

/* ---- decoding ---------------------------------------------------------- */

struct trace {
	char text[2048];
	size_t len;
	uint64_t got[2];   /* data bytes seen per device (GPU, NIC) */
	int bad_byte;      /* a data byte differed from data_byte() */
};

static void add(struct trace *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
	va_end(ap);
	cr_assert(n > 0 && (size_t)n < sizeof(t->text) - t->len);
	t->len += (size_t)n;
}

static int on_event(void *opaque, const struct precopy_stream_event *ev)
{
	struct trace *t = opaque;

	switch (ev->type) {
	case PRECOPY_STREAM_EV_HEADER:
		add(t, "HEADER version %u devices %u max_chunk %u\n", ev->u.header.version,
		    ev->u.header.device_count, ev->u.header.max_chunk);
		break;
	case PRECOPY_STREAM_EV_DEV_SETUP:
		add(t, "SETUP %u flags %u %04x:%04x initial %llu name %s\n", ev->dev_id, ev->u.setup->mig_flags,
		    ev->u.setup->pci_vendor, ev->u.setup->pci_device,
		    (unsigned long long)ev->u.setup->initial_bytes, ev->u.setup->name);
		break;
	case PRECOPY_STREAM_EV_DEV_CONFIG:
		add(t, "CONFIG %u len %u\n", ev->dev_id, ev->u.config.len);
		if (ev->u.config.len != sizeof(GPU_CONFIG) || memcmp(ev->u.config.blob, GPU_CONFIG, sizeof(GPU_CONFIG)))
			t->bad_byte = 1;
		break;
	case PRECOPY_STREAM_EV_DATA: {
		int d = ev->dev_id == GPU ? 0 : 1;
		const uint8_t *p = ev->u.data.ptr;

		for (size_t i = 0; i < ev->u.data.len; i++)
			if (p[i] != data_byte(ev->dev_id, t->got[d] + i))
				t->bad_byte = 1;
		t->got[d] += ev->u.data.len;
		break;
	}
	case PRECOPY_STREAM_EV_DATA_END:
		add(t, "DATA_END %u chunk %u\n", ev->dev_id, ev->u.data.chunk_len);
		break;
	case PRECOPY_STREAM_EV_INITIAL_SENT:
		add(t, "INITIAL_SENT %u\n", ev->dev_id);
		break;
	case PRECOPY_STREAM_EV_DEV_END:
		add(t, "DEV_END %u total %llu\n", ev->dev_id, (unsigned long long)ev->u.end.total_data_bytes);
		break;
	case PRECOPY_STREAM_EV_STREAM_END:
		add(t, "STREAM_END\n");
		break;
	default:
		add(t, "UNKNOWN %d\n", ev->type);
	}
	return 0;
}

static void decode_stream(const uint8_t *b, size_t len, size_t piece)
{
	struct precopy_stream_decoder *dec;
	struct trace t = { .len = 0 };
	int r = 0;

	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, 2, on_event, &t), 0);
	for (size_t off = 0; off < len && !r; off += piece)
		r = precopy_stream_decoder_feed(dec, b + off, len - off < piece ? len - off : piece);
	cr_assert_eq(r, 0, "recorded stream rejected (pieces of %zu): %d: %s", piece, r,
		     precopy_stream_decoder_error(dec));
	r = precopy_stream_decoder_finish(dec);
	cr_assert_eq(r, 0, "recorded stream incomplete: %d: %s", r, precopy_stream_decoder_error(dec));
	cr_assert_str_eq(t.text, WANT_STREAM, "pieces of %zu: the recorded stream decodes as\n%s", piece, t.text);
	cr_assert_eq(t.got[0], 350);
	cr_assert_eq(t.got[1], 64);
	cr_assert_eq(t.bad_byte, 0, "a device's data or config bytes differ from what was recorded");
	precopy_stream_decoder_free(dec);
}

static int on_rp(void *opaque, const struct precopy_stream_rp_event *ev)
{
	struct trace *t = opaque;

	if (ev->type == PRECOPY_STREAM_RP_EV_ACK)
		add(t, "ACK\n");
	else if (ev->type == PRECOPY_STREAM_RP_EV_ERROR)
		add(t, "ERROR %u code %d reason %s\n", ev->dev_id, ev->code, ev->reason);
	else
		add(t, "UNKNOWN %d\n", ev->type);
	return 0;
}

static void decode_rp(const uint8_t *b, size_t len, size_t piece)
{
	struct precopy_stream_rp_decoder *rp;
	struct trace t = { .len = 0 };
	int r = 0;

	cr_assert_eq(precopy_stream_rp_decoder_new(&rp, on_rp, &t), 0);
	for (size_t off = 0; off < len && !r; off += piece)
		r = precopy_stream_rp_decoder_feed(rp, b + off, len - off < piece ? len - off : piece);
	cr_assert_eq(r, 0, "recorded return path rejected: %d: %s", r, precopy_stream_rp_decoder_error(rp));
	cr_assert_eq(precopy_stream_rp_decoder_finish(rp), 0);
	cr_assert_str_eq(t.text, WANT_RP, "the recorded return path decodes as\n%s", t.text);
	precopy_stream_rp_decoder_free(rp);
}

/* ---- tests ------------------------------------------------------------- */

Test(stream_golden, record, .description = "PRECOPY_GOLDEN_RECORD=1 rewrites tests/golden/")
{
	struct recs rs;
	const char *env = getenv("PRECOPY_GOLDEN_RECORD");

	if (!env || strcmp(env, "1"))
		cr_skip_test("PRECOPY_GOLDEN_RECORD is not 1: the recorded files are kept");
	encode_stream(&rs);
	record(GOLDEN_STREAM, &rs, "A device-state stream");
	encode_rp(&rs);
	record(GOLDEN_RP, &rs, "A return path");
}

Test(stream_golden, recorded_v1_stream_decodes)
{
	size_t len;
	uint8_t *b = load(GOLDEN_STREAM, &len);

	decode_stream(b, len, len);
	decode_stream(b, len, 1);
	decode_stream(b, len, 7);
	free(b);
}

Test(stream_golden, recorded_v1_return_path_decodes)
{
	size_t len;
	uint8_t *b = load(GOLDEN_RP, &len);

	decode_rp(b, len, len);
	decode_rp(b, len, 1);
	free(b);
}

/* Guards against the recorded files being damaged or hand-edited: one
 * flipped payload byte must be caught by its CRC. */
Test(stream_golden, a_flipped_byte_is_refused)
{
	struct precopy_stream_decoder *dec;
	struct trace t = { .len = 0 };
	size_t len;
	uint8_t *b = load(GOLDEN_STREAM, &len);

	b[len / 2] ^= 0x01;
	cr_assert_eq(precopy_stream_decoder_new(&dec, NULL, IDS, 2, on_event, &t), 0);
	cr_assert_eq(precopy_stream_decoder_feed(dec, b, len), -EBADMSG);
	precopy_stream_decoder_free(dec);
	free(b);
}

Test(stream_golden, todays_encoders_write_the_recorded_bytes)
{
	struct recs rs;
	uint8_t *want, *got;
	size_t wlen, glen;

	if (PRECOPY_STREAM_VERSION != 1)
		cr_skip_test("the format is version %u now: version 1 is only decoded", PRECOPY_STREAM_VERSION);
	want = load(GOLDEN_STREAM, &wlen);
	encode_stream(&rs);
	flatten(&rs, &got, &glen);
	cr_assert_eq(glen, wlen, "today's encoders write %zu bytes, the recording has %zu", glen, wlen);
	for (size_t i = 0; i < wlen; i++)
		cr_assert_eq(got[i], want[i], "byte %zu: encoded 0x%02x, recorded 0x%02x: the wire format "
			     "changed without a PRECOPY_STREAM_VERSION bump", i, got[i], want[i]);
	free(want);
	free(got);
	want = load(GOLDEN_RP, &wlen);
	encode_rp(&rs);
	flatten(&rs, &got, &glen);
	cr_assert(glen == wlen && !memcmp(got, want, wlen), "the return path's encoding changed");
	free(want);
	free(got);
}
