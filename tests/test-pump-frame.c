/* SPDX-License-Identifier: MIT */
/* The frame codec (table-driven), the destination's validation of every
 * header on both paths (exact -errno, clear message, nothing over-read), and
 * the pump's argument checks. */
#include "test-pump.h"

static void hdr(uint8_t *b, uint32_t magic, uint32_t id, uint32_t flags, uint32_t len)
{
	uint32_t v[4] = { magic, id, flags, len };

	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 4; k++)
			b[4 * i + k] = (uint8_t)(v[i] >> (8 * k));
}

Test(frame, encode_table)
{
	static const struct {
		struct precopy_frame_hdr h;
		int ret;
	} t[] = {
		{ { 1, 0, 1 }, 0 },
		{ { 1, 0, PRECOPY_FRAME_MAX_PAYLOAD }, 0 },
		{ { 1, 0, PRECOPY_FRAME_MAX_PAYLOAD + 1 }, -EINVAL },
		{ { 1, 0, 0 }, -EINVAL },
		{ { 1, PRECOPY_FRAME_EOD, 0 }, 0 },
		{ { 1, PRECOPY_FRAME_EOD, 1 }, -EINVAL },
		{ { 1, PRECOPY_FRAME_ABORT, 4 }, 0 },
		{ { 1, PRECOPY_FRAME_ABORT, 0 }, -EINVAL },
		{ { 1, PRECOPY_FRAME_ABORT | PRECOPY_FRAME_EOD, 0 }, -EINVAL },
		{ { 1, 0x80, 1 }, -EINVAL },
	};
	uint8_t b[16];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_eq(precopy_frame_encode(&t[i].h, b), t[i].ret, "row %zu", i);
	cr_assert_eq(precopy_frame_encode(NULL, b), -EINVAL);
	cr_assert_eq(precopy_frame_encode(&t[0].h, NULL), -EINVAL);
	/* layout: little-endian magic, id, flags, len */
	cr_assert_eq(precopy_frame_encode(&(struct precopy_frame_hdr){ 0x01020304, 0, 0x0a0b0c }, b), 0);
	cr_assert_eq(memcmp(b, "PCPF\x04\x03\x02\x01\x00\x00\x00\x00\x0c\x0b\x0a\x00", 16), 0);
}

Test(frame, decode_table)
{
	static const struct {
		uint32_t magic, id, flags, len, max;
		int ret;
	} t[] = {
		{ PRECOPY_FRAME_MAGIC, 5, 0, 100, 100, 0 },
		{ PRECOPY_FRAME_MAGIC, 5, 0, 101, 100, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, 0, 0, 100, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, 0, PRECOPY_FRAME_MAX_PAYLOAD + 1, 0, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, 0, PRECOPY_FRAME_MAX_PAYLOAD + 1, UINT32_MAX, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, 0, UINT32_MAX, 0, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC ^ 1, 5, 0, 1, 0, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, PRECOPY_FRAME_EOD, 0, 0, 0 },
		{ PRECOPY_FRAME_MAGIC, 5, PRECOPY_FRAME_EOD, 1, 0, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, PRECOPY_FRAME_ABORT, 4, 0, 0 },
		{ PRECOPY_FRAME_MAGIC, 5, PRECOPY_FRAME_ABORT, 5, 0, -EBADMSG },
		{ PRECOPY_FRAME_MAGIC, 5, 3, 0, 0, -EPROTO },
		{ PRECOPY_FRAME_MAGIC, 5, 0x100, 1, 0, -EPROTO },
	};
	struct precopy_frame_hdr h = { 77, 77, 77 };
	uint8_t b[16];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		hdr(b, t[i].magic, t[i].id, t[i].flags, t[i].len);
		h = (struct precopy_frame_hdr){ 77, 77, 77 };
		cr_expect_eq(precopy_frame_decode(b, t[i].max, &h), t[i].ret, "row %zu", i);
		if (t[i].ret == 0)
			cr_expect(h.dev_id == t[i].id && h.flags == t[i].flags && h.len == t[i].len);
		else
			cr_expect(h.dev_id == 77 && h.len == 77, "row %zu: nothing written on error", i);
	}
	cr_assert_eq(precopy_frame_decode(NULL, 0, &h), -EINVAL);
	cr_assert_eq(precopy_frame_decode(b, 0, NULL), -EINVAL);
}

/* Feeds bytes to a LOAD pump over a pipe; device 1 (a pipe) is known. */
struct vcase {
	const char *name;
	uint8_t bytes[96];
	size_t n;
	int drain_ret;
	const char *msg; /* substring of precopy_pump_strerror */
	uint64_t dev_bytes;
	bool two; /* device 2 is known too (and never ends) */
	size_t leftover; /* stream bytes the pump must not consume */
};

static void run_vcase(const struct vcase *v, uint32_t flags)
{
	struct precopy_pump_config cfg = { .version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_LOAD,
					   .flags = flags, .chunk_size = 4096, .max_payload = 64,
					   .now_ns = mono_ns };
	struct precopy_pump_dev_status st;
	struct precopy_pump *p;
	int s[2], dev[2];
	uint8_t sink[256];
	int64_t r;

	cr_assert_eq(pipe2(s, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(dev, O_CLOEXEC), 0);
	cfg.stream_fd = s[0];
	p = precopy_pump_new(&cfg, NULL);
	cr_assert(p);
	cr_assert_eq(precopy_pump_add_device(p, 1, dev[1], 0), 0);
	/* once every device has ended the pump reads no further: later bytes
	 * belong to the caller; device 2 keeps it reading */
	if (v->two)
		cr_assert_eq(precopy_pump_add_device(p, 2, dev[1], 0), 0);
	cr_assert_eq(write(s[1], v->bytes, v->n), (ssize_t)v->n);
	close(s[1]);
	r = precopy_pump_drain(p, 0);
	cr_expect_eq(r, v->drain_ret, "%s (%s): got %lld: %s", v->name, path_name(flags), (long long)r,
		     precopy_pump_strerror(p));
	if (v->msg)
		cr_expect(strstr(precopy_pump_strerror(p), v->msg), "%s: message '%s' lacks '%s'", v->name,
			  precopy_pump_strerror(p), v->msg);
	cr_assert_eq(precopy_pump_dev_status(p, 1, &st), 0);
	cr_expect_eq(st.bytes, v->dev_bytes, "%s: device got %llu", v->name, (unsigned long long)st.bytes);
	if (v->drain_ret < 0 && v->drain_ret != -EIO)
		cr_expect_eq(precopy_pump_run(p, NULL), v->drain_ret, "%s: sticky", v->name);
	if (v->drain_ret >= 0)
		cr_expect_eq(read(s[0], sink, sizeof(sink)), (ssize_t)v->leftover,
			     "%s: bytes after the last EOD stay in the stream", v->name);
	close(dev[1]);
	cr_assert_eq(read(dev[0], sink, sizeof(sink)), (ssize_t)v->dev_bytes, "%s: no over-read or over-write",
		     v->name);
	precopy_pump_free(p);
	close(s[0]);
	close(dev[0]);
}

#define H(m, id, f, l) \
	(uint8_t)(m), (uint8_t)((m) >> 8), (uint8_t)((m) >> 16), (uint8_t)((m) >> 24), (uint8_t)(id), 0, 0, 0, \
		(uint8_t)(f), 0, 0, 0, (uint8_t)(l), (uint8_t)((l) >> 8), 0, 0
#define M PRECOPY_FRAME_MAGIC
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

Test(frame, destination_validates_every_header)
{
	static const struct vcase t[] = {
		{ "good", { H(M, 1, 0, 3), 'a', 'b', 'c', H(M, 1, 1, 0) }, 35, 3, NULL, 3 },
		{ "bad magic", { H(M ^ 0x100, 1, 0, 3), 'a', 'b', 'c' }, 19, -EBADMSG, "invalid frame header", 0 },
		{ "unknown device", { H(M, 9, 0, 3), 'a', 'b', 'c' }, 19, -EPROTO, "unknown device 9", 0 },
		{ "length over limit", { H(M, 1, 0, 65) }, 16, -EBADMSG, "limit 64", 0 },
		{ "huge length", { H(M, 1, 0, 0xffff) }, 16, -EBADMSG, "invalid", 0 },
		{ "reserved flag", { H(M, 1, 4, 3), 'a', 'b', 'c' }, 19, -EPROTO, "invalid", 0 },
		{ "truncated header", { H(M, 1, 0, 3) }, 9, -EBADMSG, "inside a frame header", 0 },
		{ "truncated payload", { H(M, 1, 0, 8), 'a', 'b', 'c' }, 19, -EBADMSG, "5 of 8 payload bytes missing", 3 },
		{ "stream ends before EOD", { H(M, 1, 0, 3), 'a', 'b', 'c' }, 19, -EBADMSG, "before device 1", 3 },
		{ "frame after EOD", { H(M, 1, 1, 0), H(M, 1, 0, 1), 'x' }, 33, -EPROTO, "after its EOD", 0, true },
		{ "abort carries errno", { H(M, 1, 0, 2), 'a', 'b', H(M, 1, 2, 4), 5, 0, 0, 0 }, 38, -EIO,
		  "source reported", 2 },
		{ "abort then frame", { H(M, 1, 2, 4), 61, 0, 0, 0, H(M, 1, 0, 1), 'x' }, 37, -EPROTO, "after its EOD or ABORT", 0, true },
		{ "nothing read past the last EOD", { H(M, 1, 1, 0), 'j', 'u', 'n', 'k' }, 20, 0, NULL, 0, false, 4 },
	};

	for (size_t p = 0; p < 2; p++)
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
			run_vcase(&t[i], p ? PRECOPY_PUMP_FORCE_FALLBACK : 0);
}

Test(pump_args, config_and_device_errors)
{
	struct precopy_pump_config ok = { .version = PRECOPY_PUMP_CONFIG_VERSION, .dir = PRECOPY_PUMP_SAVE,
					  .stream_fd = 1, .now_ns = mono_ns };
	static const struct precopy_sys_ops bad_ops = { .version = 99 };
	static const struct precopy_sys bad_sys = { &bad_ops, NULL };
	struct precopy_pump_config c;
	struct precopy_pump *p;
	int err;

#define BAD(field, val)                                                                  \
	do {                                                                             \
		c = ok;                                                                  \
		c.field = val;                                                           \
		err = 1;                                                                 \
		cr_expect_null(precopy_pump_new(&c, &err), #field " = " #val);          \
		cr_expect_eq(err, -EINVAL, #field " = " #val);                           \
	} while (0)
	BAD(version, 2);
	BAD(dir, 3);
	BAD(stream_fd, -1);
	BAD(now_ns, NULL);
	BAD(flags, 0x100);
	BAD(chunk_size, 100);
	BAD(chunk_size, PRECOPY_FRAME_MAX_PAYLOAD + 1);
	BAD(queue_depth, PRECOPY_PUMP_MAX_DEPTH + 1);
	BAD(max_payload, PRECOPY_FRAME_MAX_PAYLOAD + 1);
	BAD(sys, &bad_sys);
	cr_expect_null(precopy_pump_new(NULL, &err));
	cr_expect_eq(err, -EINVAL);

	p = precopy_pump_new(&ok, &err);
	cr_assert(p);
	cr_assert_eq(err, 0);
	cr_expect_eq(precopy_pump_add_device(p, 1, -1, 0), -EINVAL);
	cr_expect_eq(precopy_pump_add_device(p, 1, 0, 0x80), -EINVAL);
	cr_expect_eq(precopy_pump_add_device(NULL, 1, 0, 0), -EINVAL);
	cr_expect_eq(precopy_pump_add_device(p, 1, 0, 0), 0);
	cr_expect_eq(precopy_pump_add_device(p, 1, 3, 0), -EEXIST);
	{
		struct precopy_pump_dev_status st;

		cr_expect_eq(precopy_pump_dev_status(p, 2, &st), -ENOENT);
		cr_expect_eq(precopy_pump_dev_status(p, 1, NULL), -EINVAL);
		cr_expect_eq(precopy_pump_dev_status(p, 1, &st), 0);
		cr_expect_eq(st.state, PRECOPY_PUMP_DEV_ACTIVE);
	}
	for (uint32_t i = 2; i <= PRECOPY_PUMP_MAX_DEVICES; i++)
		cr_assert_eq(precopy_pump_add_device(p, i, 0, 0), 0);
	cr_expect_eq(precopy_pump_add_device(p, 0, 0, 0), -ENOSPC);
	cr_expect_eq(precopy_pump_run(NULL, NULL), -EINVAL);
	cr_expect_eq(precopy_pump_drain(NULL, 0), -EINVAL);
	cr_expect_str_eq(precopy_pump_strerror(p), "");
	precopy_pump_free(p);
	precopy_pump_free(NULL);
}
