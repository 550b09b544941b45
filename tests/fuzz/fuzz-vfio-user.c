/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz-vfio-user.c — libFuzzer harness for the vfio-user codec
 * (vfio_user/codec.c): the reply decoders, the decoders of the server's
 * DMA_READ/DMA_WRITE commands, and the capabilities JSON parser.
 *
 * Input layout:
 *   byte 0      bits 0..1: which msg_id/command the reply is checked
 *               against (0: those of the message itself, so that the
 *               payload decoders are reached; 1..3: fixed ones);
 *               bits 2..7: the limit on a DMA request's count
 *               (2^(b >> 2) bytes)
 *   bytes 1..   one message (header + payload), also read as JSON text
 *
 * Whatever the bytes: every decoder returns 0, -EPROTO with a reason, or
 * (an error reply) a -errno in 1..4095; every slice handed back lies
 * inside the input and matches the lengths the decoder promised.
 *
 * The same bytes (after byte 0) are then what a server sends: they are
 * queued on one end of a socketpair, whose writing side is then shut, and
 * a client handle on the other end makes a fixed sequence of requests
 * (VERSION id 0, DEVICE_GET_INFO 1, REGION_INFO 2, REGION_READ 3, DMA_MAP
 * 4 of a guarded buffer, MIG_DEVICE_STATE 5, MIG_DATA_READ 6,
 * DMA_LOGGING_START 7, REPORT 8, MIG_DATA_WRITE 9, DMA_UNMAP 10, then
 * serve, then a split MIG_DATA_READ 11 sent and reaped as the drain does),
 * answering whatever DMA commands come in between. Every
 * call must return a count or 0 or a -errno, leave a message when it
 * fails, never touch memory outside the buffers (ASan), and never wait
 * (the data is all there, then end of stream). Seed corpus:
 * tests/fuzz/corpus-vfio-user/. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "precopy/vfio_user.h"
#include "../../vfio_user/codec.h"
#include "../../vfio_user/vu_priv.h"

#define CHECK(c)                                                                           \
	do {                                                                               \
		if (!(c)) {                                                                \
			fprintf(stderr, "fuzz-vfio-user: check failed: %s (line %d)\n", #c, \
				__LINE__);                                                 \
			abort();                                                           \
		}                                                                          \
	} while (0)

static const uint8_t *lo, *hi;

static void inside(const uint8_t *p, size_t n)
{
	CHECK(p >= lo && p <= hi && n <= (size_t)(hi - p));
}

static void refused(int r, const char *why)
{
	CHECK(r == -EPROTO);
	CHECK(why != NULL && why[0] != '\0');
}

static void payload(uint16_t cmd, const uint8_t *p, size_t n)
{
	const char *why = NULL;
	int r;
	uint64_t a = n >= 8 ? precopy__vu_get64(p) : 0;
	uint32_t b = n >= 12 ? precopy__vu_get32(p + 8) : 0;
	uint32_t c = n >= 16 ? precopy__vu_get32(p + 12) : 0;
	switch (cmd) {
	case PRECOPY__VU_VERSION: {
		uint16_t ma, mi;
		struct precopy__vu_caps caps;
		r = precopy__vu_dec_version(p, n, &ma, &mi, &caps, &why);
		if (r)
			refused(r, why);
		else
			CHECK(caps.twin_supported == 0 || caps.twin_supported == 1);
		break;
	}
	case PRECOPY__VU_DEVICE_GET_INFO: {
		struct precopy__vu_device_info di;
		r = precopy__vu_dec_device_info(p, n, &di, &why);
		if (r)
			refused(r, why);
		else
			CHECK(n == 16 && di.argsz >= 16);
		break;
	}
	case PRECOPY__VU_DEVICE_GET_REGION_INFO: {
		struct precopy__vu_region_info ri;
		r = precopy__vu_dec_region_info(p, n, b, 4096, &ri, &why);
		if (r)
			refused(r, why);
		else
			CHECK(n >= 32 && n <= 4096 && ri.index == b);
		break;
	}
	case PRECOPY__VU_DEVICE_GET_IRQ_INFO: {
		struct precopy__vu_irq_info ii;
		r = precopy__vu_dec_irq_info(p, n, b, &ii, &why);
		if (r)
			refused(r, why);
		else
			CHECK(n == 16 && ii.index == b);
		break;
	}
	case PRECOPY__VU_REGION_READ: {
		const uint8_t *d;
		r = precopy__vu_dec_region_read(p, n, b, a, c, &d, &why);
		if (r)
			refused(r, why);
		else {
			inside(d, c);
			CHECK(d + c == p + n);
		}
		r = precopy__vu_dec_region_write(p, n, b, a, c, &why);
		if (r)
			refused(r, why);
		break;
	}
	case PRECOPY__VU_DMA_UNMAP:
		r = precopy__vu_dec_dma_unmap(p, n, n >= 16 ? precopy__vu_get64(p + 8) : 0,
					      n >= 24 ? precopy__vu_get64(p + 16) : 0, &why);
		if (r)
			refused(r, why);
		break;
	case PRECOPY__VU_DEVICE_FEATURE: {
		const uint8_t *d;
		size_t dl;
		uint32_t flags = n >= 8 ? precopy__vu_get32(p + 4) : 0;
		r = precopy__vu_dec_feature(p, n, flags, &d, &dl, &why);
		if (r) {
			refused(r, why);
			break;
		}
		inside(d, dl);
		uint64_t v;
		uint32_t st;
		const uint8_t *bm;
		size_t bl;
		switch (flags & PRECOPY__VU_FEATURE_MASK) {
		case PRECOPY__VU_FEAT_MIGRATION:
			if ((r = precopy__vu_dec_migration(d, dl, &v, &why)))
				refused(r, why);
			break;
		case PRECOPY__VU_FEAT_MIG_DEVICE_STATE:
			if ((r = precopy__vu_dec_mig_state(d, dl, &st, &why)))
				refused(r, why);
			else
				CHECK(st <= 7);
			break;
		case PRECOPY__VU_FEAT_DMA_LOGGING_START:
			if ((r = precopy__vu_dec_log_start(d, dl, &v, &why)))
				refused(r, why);
			else
				CHECK(v && !(v & (v - 1)));
			break;
		default: {
			/* a report checked against the range it names */
			uint64_t iova = dl >= 8 ? precopy__vu_get64(d) : 0;
			uint64_t len = dl >= 16 ? precopy__vu_get64(d + 8) : 0;
			uint64_t ps = dl >= 24 ? precopy__vu_get64(d + 16) : 0;
			r = precopy__vu_dec_report(d, dl, iova, len, ps, &bm, &bl, &why);
			if (r) {
				refused(r, why);
			} else {
				inside(bm, bl);
				CHECK(bl % 8 == 0 && bm + bl == d + dl);
			}
		}
		}
		break;
	}
	case PRECOPY__VU_MIG_DATA_READ: {
		const uint8_t *d;
		uint32_t sz;
		uint32_t asked = n >= 8 ? (uint32_t)(n - 8) : 0;
		r = precopy__vu_dec_mig_data_read(p, n, asked, &d, &sz, &why);
		if (r)
			refused(r, why);
		else {
			inside(d, sz);
			CHECK(sz <= asked);
		}
		break;
	}
	default:
		r = precopy__vu_dec_empty(p, n, &why);
		if (r)
			refused(r, why);
		else
			CHECK(n == 0);
	}
}

static void result(struct precopy_vfio_user *c, long r)
{
	CHECK(r >= -4095);
	if (r < 0)
		CHECK(precopy_vfio_user_error(c)[0] != '\0');
}

/* The client against a server that says exactly m[0..n). */
static void client(const uint8_t *m, size_t n)
{
	int sv[2];
	if (n > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return;
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(sv[1], m + off, n - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(sv[1], SHUT_WR);
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.timeout_ms = 50;
	o.msg_bytes = 4096;
	o.max_reply_bytes = 65536;
	o.name = "fuzz";
	int err = 0;
	char msg[128];
	struct precopy_vfio_user *c = precopy_vfio_user_open(precopy_sys_real(), sv[0], &o, &err, msg, sizeof(msg));
	if (!c) {
		CHECK(err < 0 && err >= -4095 && msg[0] != '\0');
		close(sv[1]);
		return;
	}
	uint8_t *guest = malloc(0x4000);
	uint8_t buf[256];
	uint64_t bm[2] = { 0 };
	uint32_t u32;
	struct precopy_vfio_user_region r;
	int rfd = -1;
	CHECK(guest);
	result(c, precopy_vfio_user_device_info(c, &u32, &u32, &u32));
	result(c, precopy_vfio_user_region_info(c, 0, &r, &rfd));
	if (rfd >= 0)
		close(rfd);
	result(c, precopy_vfio_user_region_read(c, 0, 0, buf, 16));
	result(c, precopy_vfio_user_dma_map(c, 0x1000, 0x4000, guest, -1, 0, 3));
	result(c, precopy_vfio_user_set_state(c, 6));
	result(c, precopy_vfio_user_mig_read(c, buf, 64));
	result(c, precopy_vfio_user_dma_logging_start(c, 4096, NULL, 0, NULL));
	result(c, precopy_vfio_user_dma_logging_report(c, 0x1000, 0x4000, 4096, bm, 2));
	result(c, precopy_vfio_user_mig_write(c, buf, 16));
	result(c, precopy_vfio_user_dma_dirty(c, 0x1000, 0x4000, bm, 2, 1));
	result(c, precopy_vfio_user_dma_unmap(c, 0x1000, 0x4000));
	result(c, precopy_vfio_user_serve(c, 0));
	/* the drain's split MIG_DATA_READ (id 11): sent, then reaped until
	 * its reply or the end of the stream */
	long sent = precopy__vu_read_send(c, 64);
	result(c, sent);
	for (int i = 0; sent == 0 && i < 1000; i++) {
		ssize_t got = precopy__vu_read_reap(c, buf);
		if (got == -EAGAIN)
			continue;
		result(c, got);
		CHECK(got <= 64);
		break;
	}
	precopy_vfio_user_close(c);
	free(guest);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	const uint8_t *m = data + 1;
	size_t n = size - 1;
	/* a private copy: reads past it are ASan's to catch */
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return 0;
	memcpy(copy, m, n);
	lo = copy;
	hi = copy + n;

	/* the reply path */
	uint16_t id = n >= 2 ? precopy__vu_get16(copy) : 0;
	uint16_t cmd = n >= 4 ? precopy__vu_get16(copy + 2) : 0;
	static const uint16_t fixed[][2] = { { 0, 0 }, { 1, PRECOPY__VU_VERSION }, { 7, PRECOPY__VU_MIG_DATA_READ },
					     { 9, PRECOPY__VU_DEVICE_FEATURE } };
	if (mode & 3) {
		id = fixed[mode & 3][0];
		cmd = fixed[mode & 3][1];
	}
	const uint8_t *p;
	size_t pl;
	const char *why = NULL;
	int r = precopy__vu_reply_open(copy, n, id, cmd, &p, &pl, &why);
	if (r == -EPROTO) {
		refused(r, why);
	} else if (r < 0) {
		CHECK(r >= -4095);
		CHECK(precopy__vu_get32(copy + 8) & PRECOPY__VU_F_ERROR);
	} else {
		CHECK(r == 0 && p == copy + 16 && pl == n - 16);
		payload(cmd, p, pl);
	}

	/* the server's commands */
	struct precopy__vu_hdr h;
	why = NULL;
	r = precopy__vu_cmd_open(copy, n, &h, &p, &pl, &why);
	if (r) {
		refused(r, why);
	} else {
		CHECK(h.size == n && (h.flags & PRECOPY__VU_F_TYPE_MASK) == 0);
		uint64_t max = 1ull << ((mode >> 2) & 63);
		uint64_t a, c;
		const uint8_t *d;
		why = NULL;
		r = precopy__vu_dec_dma_req(h.cmd, p, pl, max, &a, &c, &d, &why);
		if (r) {
			refused(r, why);
		} else {
			CHECK(c <= max && a + c >= a);
			if (h.cmd == PRECOPY__VU_DMA_WRITE) {
				inside(d, (size_t)c);
				CHECK(d + c == p + pl);
			} else {
				CHECK(d == NULL && pl == 16);
			}
		}
	}

	/* the whole input as capabilities text */
	struct precopy__vu_caps caps;
	why = NULL;
	r = precopy__vu_caps_parse((const char *)copy, n, &caps, &why);
	if (r)
		refused(r, why);
	free(copy);

	client(m, n);
	return 0;
}
