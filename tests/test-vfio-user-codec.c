/* SPDX-License-Identifier: MIT */
/* The vfio-user codec (vfio_user/codec.c): every request's bytes checked
 * against the specification's layout (offsets written out here, not taken
 * from the codec), every reply decoder fed a well-formed reply built here
 * and then each malformation the decoders must refuse (-EPROTO with a
 * reason), and the capabilities JSON parser on the subset the
 * specification uses plus every refusal it promises. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../vfio_user/codec.h"

static uint8_t buf[1 << 16];

static uint16_t r16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t r32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t r64(const uint8_t *p) { return r32(p) | (uint64_t)r32(p + 4) << 32; }
static void w16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void w32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void w64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

/* a reply header built by hand */
static size_t mkreply(uint8_t *b, uint16_t id, uint16_t cmd, const void *pl, size_t n)
{
	w16(b, id);
	w16(b + 2, cmd);
	w32(b + 4, (uint32_t)(16 + n));
	w32(b + 8, 1);
	w32(b + 12, 0);
	if (n)
		memcpy(b + 16, pl, n);
	return 16 + n;
}

static void check_hdr(const uint8_t *b, int len, uint16_t id, uint16_t cmd)
{
	cr_assert_gt(len, 0);
	cr_assert_eq(r16(b), id);
	cr_assert_eq(r16(b + 2), cmd);
	cr_assert_eq(r32(b + 4), (uint32_t)len, "size field includes the header");
	cr_assert_eq(r32(b + 8), 0, "type command, no flags");
	cr_assert_eq(r32(b + 12), 0);
}

Test(codec, requests_match_the_specification_layout)
{
	int l = precopy__vu_enc_version(buf, sizeof(buf), 7, 0, 2, "{}");
	check_hdr(buf, l, 7, 1);
	cr_assert_eq(l, 16 + 4 + 3);
	cr_assert_eq(r16(buf + 16), 0);
	cr_assert_eq(r16(buf + 18), 2);
	cr_assert_str_eq((char *)buf + 20, "{}");

	l = precopy__vu_enc_dma_map(buf, sizeof(buf), 8, 3, 0x1000, 0x20000, 0x30000);
	check_hdr(buf, l, 8, 2);
	cr_assert_eq(l, 16 + 32);
	cr_assert_eq(r32(buf + 16), 32);
	cr_assert_eq(r32(buf + 20), 3);
	cr_assert_eq(r64(buf + 24), 0x1000);
	cr_assert_eq(r64(buf + 32), 0x20000);
	cr_assert_eq(r64(buf + 40), 0x30000);

	l = precopy__vu_enc_dma_unmap(buf, sizeof(buf), 9, 0x20000, 0x30000);
	check_hdr(buf, l, 9, 3);
	cr_assert_eq(l, 16 + 24);
	cr_assert_eq(r64(buf + 24), 0x20000);
	cr_assert_eq(r64(buf + 32), 0x30000);

	l = precopy__vu_enc_device_info(buf, sizeof(buf), 10);
	check_hdr(buf, l, 10, 4);
	cr_assert_eq(l, 32);
	cr_assert_eq(r32(buf + 16), 16);

	l = precopy__vu_enc_region_info(buf, sizeof(buf), 11, 5, 64);
	check_hdr(buf, l, 11, 5);
	cr_assert_eq(l, 48);
	cr_assert_eq(r32(buf + 16), 64);
	cr_assert_eq(r32(buf + 24), 5);

	l = precopy__vu_enc_region_read(buf, sizeof(buf), 12, 2, 0x10, 4);
	check_hdr(buf, l, 12, 9);
	cr_assert_eq(l, 32);
	cr_assert_eq(r64(buf + 16), 0x10);
	cr_assert_eq(r32(buf + 24), 2);
	cr_assert_eq(r32(buf + 28), 4);

	l = precopy__vu_enc_region_write(buf, sizeof(buf), 13, 2, 0x10, "abcd", 4);
	check_hdr(buf, l, 13, 10);
	cr_assert_eq(l, 36);
	cr_assert_eq(memcmp(buf + 32, "abcd", 4), 0);

	uint8_t st[8] = { 3, 0, 0, 0, 0, 0, 0, 0 };
	l = precopy__vu_enc_feature(buf, sizeof(buf), 14, (1u << 17) | 2, 16, st, 8);
	check_hdr(buf, l, 14, 16);
	cr_assert_eq(l, 32);
	cr_assert_eq(r32(buf + 16), 16);
	cr_assert_eq(r32(buf + 20), (1u << 17) | 2);
	cr_assert_eq(r32(buf + 24), 3);

	l = precopy__vu_enc_mig_data_read(buf, sizeof(buf), 15, 4096);
	check_hdr(buf, l, 15, 17);
	cr_assert_eq(l, 24);
	cr_assert_eq(r32(buf + 16), 8 + 4096, "argsz: the largest reply payload");
	cr_assert_eq(r32(buf + 20), 4096);

	l = precopy__vu_enc_mig_data_write(buf, sizeof(buf), 16, "xyz", 3);
	check_hdr(buf, l, 16, 18);
	cr_assert_eq(l, 27);
	cr_assert_eq(r32(buf + 16), 11);
	cr_assert_eq(r32(buf + 20), 3);
	cr_assert_eq(memcmp(buf + 24, "xyz", 3), 0);

	l = precopy__vu_enc_reset(buf, sizeof(buf), 17);
	check_hdr(buf, l, 17, 13);
	cr_assert_eq(l, 16);

	uint64_t ranges[4] = { 0x1000, 0x2000, 0x10000, 0x4000 };
	uint8_t d[64];
	l = precopy__vu_enc_log_start_data(d, sizeof(d), 4096, ranges, 2);
	cr_assert_eq(l, 48);
	cr_assert_eq(r64(d), 4096);
	cr_assert_eq(r32(d + 8), 2);
	cr_assert_eq(r64(d + 16), 0x1000);
	cr_assert_eq(r64(d + 40), 0x4000);
	l = precopy__vu_enc_report_data(d, sizeof(d), 0x1000, 0x8000, 4096);
	cr_assert_eq(l, 24);
	cr_assert_eq(r64(d + 8), 0x8000);
}

Test(codec, irq_requests_and_reply)
{
	int l = precopy__vu_enc_irq_info(buf, sizeof(buf), 20, 2);
	check_hdr(buf, l, 20, 7);
	cr_assert_eq(l, 32);
	cr_assert_eq(r32(buf + 16), 16);
	cr_assert_eq(r32(buf + 24), 2);
	l = precopy__vu_enc_set_irqs(buf, sizeof(buf), 21, 4 | 32, 2, 3, 4, NULL);
	check_hdr(buf, l, 21, 8);
	cr_assert_eq(l, 36);
	cr_assert_eq(r32(buf + 16), 20, "argsz: the request payload");
	cr_assert_eq(r32(buf + 20), 4 | 32);
	cr_assert_eq(r32(buf + 24), 2);
	cr_assert_eq(r32(buf + 28), 3);
	cr_assert_eq(r32(buf + 32), 4);
	uint8_t bools[3] = { 1, 0, 1 };
	l = precopy__vu_enc_set_irqs(buf, sizeof(buf), 22, 2 | 8, 0, 0, 3, bools);
	cr_assert_eq(l, 39);
	cr_assert_eq(r32(buf + 16), 23);
	cr_assert_eq(buf[36], 1);
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 4, 0, 0, 1, NULL), -EINVAL, "no action");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 32, 0, 0, 1, NULL), -EINVAL, "no data kind");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 4 | 1 | 32, 0, 0, 1, NULL), -EINVAL, "two");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 4 | 8 | 32, 0, 0, 1, NULL), -EINVAL, "two");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 2 | 32, 0, 0, 1, NULL), -EINVAL, "bools");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 4 | 32, 0, 0, 1, bools), -EINVAL);
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 64 | 4 | 32, 0, 0, 1, NULL), -EINVAL, "unknown bit");
	cr_assert_eq(precopy__vu_enc_set_irqs(buf, sizeof(buf), 1, 4 | 32, 0, UINT32_MAX, 2, NULL), -EINVAL, "wraps");

	uint8_t p[16];
	w32(p, 16);
	w32(p + 4, 1);
	w32(p + 8, 2);
	w32(p + 12, 7);
	struct precopy__vu_irq_info ii;
	const char *why;
	cr_assert_eq(precopy__vu_dec_irq_info(p, 16, 2, &ii, &why), 0);
	cr_assert_eq(ii.count, 7);
	cr_assert_eq(precopy__vu_dec_irq_info(p, 16, 1, &ii, &why), -EPROTO, "another index");
	cr_assert_eq(precopy__vu_dec_irq_info(p, 12, 2, &ii, &why), -EPROTO);
	w32(p, 4);
	cr_assert_eq(precopy__vu_dec_irq_info(p, 16, 2, &ii, &why), -EPROTO, "argsz");
}

Test(codec, encoders_refuse_what_does_not_fit)
{
	cr_assert_eq(precopy__vu_enc_region_read(buf, 31, 1, 0, 0, 4), -ENOSPC);
	cr_assert_eq(precopy__vu_enc_region_write(buf, 35, 1, 0, 0, "abcd", 4), -ENOSPC);
	cr_assert_eq(precopy__vu_enc_region_write(buf, sizeof(buf), 1, 0, 0, NULL, 4), -EINVAL);
	cr_assert_eq(precopy__vu_enc_dma_map(buf, sizeof(buf), 1, 3, 0, UINT64_MAX, 2), -EINVAL);
	cr_assert_eq(precopy__vu_enc_dma_map(buf, sizeof(buf), 1, 3, 0, 0, 0), -EINVAL);
	cr_assert_eq(precopy__vu_enc_region_info(buf, sizeof(buf), 1, 0, 31), -EINVAL);
	cr_assert_eq(precopy__vu_enc_error_reply(buf, sizeof(buf), 1, 9, 0), -EINVAL);
	char j[16];
	cr_assert_eq(precopy__vu_enc_caps(j, sizeof(j), 8, 65536, 1), -ENOSPC);
}

Test(codec, caps_round_trip)
{
	char j[256];
	int l = precopy__vu_enc_caps(j, sizeof(j), 8, 65536, 1);
	cr_assert_gt(l, 0);
	cr_assert_eq((size_t)l, strlen(j) + 1);
	struct precopy__vu_caps c;
	cr_assert_eq(precopy__vu_caps_parse(j, strlen(j), &c, NULL), 0);
	cr_assert_eq(c.max_msg_fds, 8);
	cr_assert_eq(c.max_data_xfer_size, 65536);
	cr_assert_eq(c.twin_supported, 1);
	cr_assert_eq(c.has_twin_fd_index, 0);
	cr_assert_eq(c.pgsizes, 4096, "default");
	cr_assert_eq(c.max_dma_maps, 65535, "default");
}

/* ---- replies ---- */

Test(codec, reply_header_checks)
{
	uint8_t b[64];
	const uint8_t *p;
	size_t pl;
	const char *why;
	size_t n = mkreply(b, 5, 9, "0123456789abcdefXY", 18);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), 0);
	cr_assert_eq(pl, 18);
	cr_assert_eq(p, b + 16);

	why = NULL;
	cr_assert_eq(precopy__vu_reply_open(b, n, 6, 9, &p, &pl, &why), -EPROTO, "another msg_id");
	cr_assert_str_eq(why, "reply to another message id");
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 10, &p, &pl, &why), -EPROTO, "another command");
	cr_assert_eq(precopy__vu_reply_open(b, n - 1, 5, 9, &p, &pl, &why), -EPROTO, "short read");
	cr_assert_str_eq(why, "size field differs from the bytes received");
	cr_assert_eq(precopy__vu_reply_open(b, 15, 5, 9, &p, &pl, &why), -EPROTO, "shorter than a header");

	w32(b + 4, 15);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "size below 16");
	w32(b + 4, (uint32_t)n);
	w32(b + 8, 0);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "a command");
	w32(b + 8, 2);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "type 2");
	w32(b + 8, 1 | 0x40);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "reserved bit");
	w32(b + 8, 1 | 0x10);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "no-reply on a reply");
	w32(b + 8, 1);
	w32(b + 12, 5);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "errno without error bit");

	/* error replies */
	n = mkreply(b, 5, 9, NULL, 0);
	w32(b + 8, 1 | 0x20);
	w32(b + 12, EINVAL);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EINVAL);
	w32(b + 12, 0);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "error bit, errno 0");
	cr_assert_str_eq(why, "error reply without an errno");
	w32(b + 12, 100000);
	cr_assert_eq(precopy__vu_reply_open(b, n, 5, 9, &p, &pl, &why), -EPROTO, "errno out of range");
}

Test(codec, version_reply)
{
	uint8_t p[256];
	const char *j = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,"
			"\"migration\":{\"pgsize\":4096},\"twin_socket\":{\"supported\":true,\"fd_index\":0}}}";
	w16(p, 0);
	w16(p + 2, 2);
	size_t jl = strlen(j) + 1;
	memcpy(p + 4, j, jl);
	uint16_t ma, mi;
	struct precopy__vu_caps c;
	const char *why = NULL;
	cr_assert_eq(precopy__vu_dec_version(p, 4 + jl, &ma, &mi, &c, &why), 0, "%s", why);
	cr_assert_eq(mi, 2);
	cr_assert_eq(c.max_msg_fds, 8);
	cr_assert_eq(c.migration_pgsize, 4096);
	cr_assert(c.twin_supported && c.has_twin_fd_index && c.twin_fd_index == 0);
	/* without JSON: the defaults */
	cr_assert_eq(precopy__vu_dec_version(p, 4, &ma, &mi, &c, &why), 0);
	cr_assert_eq(c.max_msg_fds, 1);
	cr_assert_eq(c.max_data_xfer_size, 1u << 20);
	cr_assert_eq(precopy__vu_dec_version(p, 3, &ma, &mi, &c, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_version(p, 4 + jl - 1, &ma, &mi, &c, &why), -EPROTO, "no NUL");
	cr_assert_str_eq(why, "VERSION capabilities without their terminating NUL");
	p[10] = '\0';
	cr_assert_eq(precopy__vu_dec_version(p, 4 + jl, &ma, &mi, &c, &why), -EPROTO, "NUL inside");
}

Test(codec, fixed_replies)
{
	uint8_t p[64] = { 0 };
	const char *why;
	struct precopy__vu_device_info di;
	w32(p, 16);
	w32(p + 4, 3);
	w32(p + 8, 9);
	cr_assert_eq(precopy__vu_dec_device_info(p, 16, &di, &why), 0);
	cr_assert_eq(di.num_regions, 9);
	cr_assert_eq(precopy__vu_dec_device_info(p, 15, &di, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_device_info(p, 20, &di, &why), -EPROTO);
	w32(p, 8);
	cr_assert_eq(precopy__vu_dec_device_info(p, 16, &di, &why), -EPROTO, "argsz 8");

	struct precopy__vu_region_info ri;
	memset(p, 0, sizeof(p));
	w32(p, 32);
	w32(p + 8, 2);
	w64(p + 16, 4096);
	cr_assert_eq(precopy__vu_dec_region_info(p, 32, 2, 64, &ri, &why), 0);
	cr_assert_eq(ri.size, 4096);
	cr_assert_eq(precopy__vu_dec_region_info(p, 32, 3, 64, &ri, &why), -EPROTO, "another region");
	cr_assert_eq(precopy__vu_dec_region_info(p, 31, 2, 64, &ri, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_region_info(p, 40, 2, 32, &ri, &why), -EPROTO, "above argsz asked");
	cr_assert_eq(precopy__vu_dec_region_info(p, 40, 2, 64, &ri, &why), -EPROTO, "argsz != payload");

	/* region read: echo + exactly count bytes */
	const uint8_t *data;
	memset(p, 0, sizeof(p));
	w64(p, 0x10);
	w32(p + 8, 2);
	w32(p + 12, 4);
	memcpy(p + 16, "DATA", 4);
	cr_assert_eq(precopy__vu_dec_region_read(p, 20, 2, 0x10, 4, &data, &why), 0);
	cr_assert_eq(memcmp(data, "DATA", 4), 0);
	cr_assert_eq(precopy__vu_dec_region_read(p, 19, 2, 0x10, 4, &data, &why), -EPROTO, "short data");
	cr_assert_eq(precopy__vu_dec_region_read(p, 21, 2, 0x10, 4, &data, &why), -EPROTO, "long data");
	cr_assert_eq(precopy__vu_dec_region_read(p, 20, 2, 0x14, 4, &data, &why), -EPROTO, "offset");
	cr_assert_eq(precopy__vu_dec_region_read(p, 20, 1, 0x10, 4, &data, &why), -EPROTO, "region");
	cr_assert_eq(precopy__vu_dec_region_write(p, 16, 2, 0x10, 4, &why), 0);
	cr_assert_eq(precopy__vu_dec_region_write(p, 20, 2, 0x10, 4, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_region_write(p, 16, 2, 0x10, 5, &why), -EPROTO, "count");

	/* unmap: empty or echo */
	w32(p, 24);
	w64(p + 8, 0x1000);
	w64(p + 16, 0x2000);
	cr_assert_eq(precopy__vu_dec_dma_unmap(p, 0, 0x1000, 0x2000, &why), 0);
	cr_assert_eq(precopy__vu_dec_dma_unmap(p, 24, 0x1000, 0x2000, &why), 0);
	cr_assert_eq(precopy__vu_dec_dma_unmap(p, 24, 0x1000, 0x3000, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_dma_unmap(p, 8, 0x1000, 0x2000, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_empty(p, 0, &why), 0);
	cr_assert_eq(precopy__vu_dec_empty(p, 1, &why), -EPROTO);
}

Test(codec, feature_replies)
{
	uint8_t p[256] = { 0 };
	const uint8_t *d;
	size_t dl;
	const char *why;
	uint32_t fl = (1u << 16) | 1;
	w32(p, 16);
	w32(p + 4, fl);
	w64(p + 8, 5);
	cr_assert_eq(precopy__vu_dec_feature(p, 16, fl, &d, &dl, &why), 0);
	uint64_t flags;
	cr_assert_eq(precopy__vu_dec_migration(d, dl, &flags, &why), 0);
	cr_assert_eq(flags, 5);
	cr_assert_eq(precopy__vu_dec_migration(d, dl - 1, &flags, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_feature(p, 16, fl | 1u << 17, &d, &dl, &why), -EPROTO, "flags");
	cr_assert_eq(precopy__vu_dec_feature(p, 7, fl, &d, &dl, &why), -EPROTO);
	w32(p, 12);
	cr_assert_eq(precopy__vu_dec_feature(p, 16, fl, &d, &dl, &why), -EPROTO, "argsz below payload");

	uint32_t st;
	uint8_t s8[8] = { 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };
	cr_assert_eq(precopy__vu_dec_mig_state(s8, 8, &st, &why), 0);
	cr_assert_eq(st, 6);
	s8[0] = 8;
	cr_assert_eq(precopy__vu_dec_mig_state(s8, 8, &st, &why), -EPROTO, "state 8");
	cr_assert_eq(precopy__vu_dec_mig_state(s8, 4, &st, &why), -EPROTO);

	uint64_t ps;
	uint8_t ls[48] = { 0 };
	w64(ls, 8192);
	w32(ls + 8, 2);
	cr_assert_eq(precopy__vu_dec_log_start(ls, 48, &ps, &why), 0);
	cr_assert_eq(ps, 8192);
	cr_assert_eq(precopy__vu_dec_log_start(ls, 32, &ps, &why), -EPROTO, "ranges missing");
	w64(ls, 3000);
	cr_assert_eq(precopy__vu_dec_log_start(ls, 48, &ps, &why), -EPROTO, "not a power of two");

	/* report: 100 pages -> 2 words */
	uint8_t rp[24 + 16] = { 0 };
	w64(rp, 0x100000);
	w64(rp + 8, 100 * 4096);
	w64(rp + 16, 4096);
	const uint8_t *bm;
	size_t bl;
	cr_assert_eq(precopy__vu_dec_report(rp, 40, 0x100000, 100 * 4096, 4096, &bm, &bl, &why), 0);
	cr_assert_eq(bl, 16);
	cr_assert_eq(precopy__vu_dec_report(rp, 32, 0x100000, 100 * 4096, 4096, &bm, &bl, &why), -EPROTO,
		     "bitmap a word short");
	cr_assert_eq(precopy__vu_dec_report(rp, 24, 0x100000, 100 * 4096, 4096, &bm, &bl, &why), -EPROTO,
		     "empty bitmap (a report spanning two regions)");
	cr_assert_eq(precopy__vu_dec_report(rp, 40, 0x100000, 100 * 4096, 8192, &bm, &bl, &why), -EPROTO,
		     "page size");
	cr_assert_eq(precopy__vu_dec_report(rp, 40, 0x101000, 100 * 4096, 4096, &bm, &bl, &why), -EPROTO);
}

Test(codec, mig_data_read_reply)
{
	uint8_t p[64] = { 0 };
	const uint8_t *d;
	uint32_t sz;
	const char *why;
	w32(p, 8 + 5);
	w32(p + 4, 5);
	memcpy(p + 8, "hello", 5);
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 13, 16, &d, &sz, &why), 0);
	cr_assert_eq(sz, 5);
	/* padded to the size asked (libvfio-user): the length is the size field */
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 8 + 16, 16, &d, &sz, &why), 0);
	cr_assert_eq(sz, 5);
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 8 + 17, 16, &d, &sz, &why), -EPROTO, "longer than asked");
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 12, 16, &d, &sz, &why), -EPROTO, "shorter than size");
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 13, 4, &d, &sz, &why), -EPROTO, "size above asked");
	w32(p, 8);
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 13, 16, &d, &sz, &why), -EPROTO, "argsz");
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 7, 16, &d, &sz, &why), -EPROTO);
	/* 0 bytes: nothing now / end of data */
	w32(p, 8);
	w32(p + 4, 0);
	cr_assert_eq(precopy__vu_dec_mig_data_read(p, 8, 16, &d, &sz, &why), 0);
	cr_assert_eq(sz, 0);
}

/* ---- the server's commands ---- */

Test(codec, dma_requests_and_replies)
{
	uint8_t m[64] = { 0 };
	struct precopy__vu_hdr h;
	const uint8_t *p, *data;
	size_t pl;
	const char *why;
	w16(m, 0x8000);
	w16(m + 2, 12);
	w32(m + 4, 16 + 16 + 4);
	w64(m + 16, 0x2000);
	w64(m + 24, 4);
	memcpy(m + 32, "WXYZ", 4);
	cr_assert_eq(precopy__vu_cmd_open(m, 36, &h, &p, &pl, &why), 0);
	cr_assert_eq(h.cmd, 12);
	uint64_t a, c;
	cr_assert_eq(precopy__vu_dec_dma_req(h.cmd, p, pl, 4096, &a, &c, &data, &why), 0);
	cr_assert_eq(a, 0x2000);
	cr_assert_eq(c, 4);
	cr_assert_eq(memcmp(data, "WXYZ", 4), 0);
	cr_assert_eq(precopy__vu_dec_dma_req(h.cmd, p, pl, 3, &a, &c, &data, &why), -EPROTO, "above the limit");
	cr_assert_eq(precopy__vu_dec_dma_req(h.cmd, p, pl - 1, 4096, &a, &c, &data, &why), -EPROTO);
	cr_assert_eq(precopy__vu_dec_dma_req(11, p, pl, 4096, &a, &c, &data, &why), -EPROTO, "READ with data");
	cr_assert_eq(precopy__vu_dec_dma_req(11, p, 16, 4096, &a, &c, &data, &why), 0);
	cr_assert_null(data);
	cr_assert_eq(precopy__vu_dec_dma_req(9, p, 16, 4096, &a, &c, &data, &why), -EPROTO, "not DMA");
	w64(m + 16, UINT64_MAX - 1);
	cr_assert_eq(precopy__vu_dec_dma_req(11, p, 16, 4096, &a, &c, &data, &why), -EPROTO, "wraps");
	w32(m + 8, 1);
	cr_assert_eq(precopy__vu_cmd_open(m, 36, &h, &p, &pl, &why), -EPROTO, "a reply");
	w32(m + 8, 0x20);
	cr_assert_eq(precopy__vu_cmd_open(m, 36, &h, &p, &pl, &why), -EPROTO, "error bit on a command");

	int l = precopy__vu_enc_dma_read_reply(buf, sizeof(buf), 0x8001, 0x2000, "abc", 3);
	cr_assert_eq(l, 16 + 16 + 3);
	cr_assert_eq(r16(buf), 0x8001);
	cr_assert_eq(r16(buf + 2), 11);
	cr_assert_eq(r32(buf + 8), 1, "a reply");
	cr_assert_eq(r64(buf + 24), 3);
	l = precopy__vu_enc_dma_write_reply(buf, sizeof(buf), 0x8002, 0x2000, 4);
	cr_assert_eq(l, 32);
	cr_assert_eq(r32(buf + 24), 4, "the specification's 4-byte count");
	l = precopy__vu_enc_error_reply(buf, sizeof(buf), 0x8003, 12, EFAULT);
	cr_assert_eq(l, 16);
	cr_assert_eq(r32(buf + 8), 0x21);
	cr_assert_eq(r32(buf + 12), EFAULT);
}

/* ---- JSON ---- */

static int parse(const char *s, struct precopy__vu_caps *c, const char **why)
{
	return precopy__vu_caps_parse(s, strlen(s), c, why);
}

Test(codec, json_accepts_the_subset)
{
	struct precopy__vu_caps c;
	const char *why = NULL;
	cr_assert_eq(parse("{}", &c, &why), 0);
	cr_assert_eq(c.max_msg_fds, 1);
	cr_assert_eq(parse(" { \"capabilities\" : { } } \n", &c, &why), 0);
	cr_assert_eq(parse("{\"capabilities\":{\"max_data_xfer_size\":18446744073709551615}}", &c, &why), 0,
		     "%s", why);
	cr_assert_eq(c.max_data_xfer_size, UINT64_MAX);
	cr_assert_eq(parse("{\"capabilities\":{\"pgsizes\":4096,\"max_dma_maps\":0,\"write_multiple\":false,"
			   "\"unknown\":[1,\"a\",{\"b\":null},[],true],\"other\":{\"x\":{\"y\":\"\\u00e9\\n\"}}},"
			   "\"extra\":\"s\"}",
			   &c, &why),
		     0, "%s", why);
	cr_assert_eq(c.max_dma_maps, 0);
	cr_assert_eq(parse("{\"capabilities\":{\"migration\":{\"pgsize\":65536,\"later\":1}}}", &c, &why), 0);
	cr_assert_eq(c.migration_pgsize, 65536);
	/* the same key in different objects is no duplicate */
	cr_assert_eq(parse("{\"capabilities\":{\"migration\":{\"pgsize\":1},\"x\":{\"pgsize\":2}}}", &c, &why), 0);
}

Test(codec, json_refusals)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{",
		"{\"capabilities\":{}",
		"{} x",
		"{}{}",
		"{\"capabilities\":[]}",
		"{\"capabilities\":{\"max_msg_fds\":-1}}",
		"{\"capabilities\":{\"max_msg_fds\":1.5}}",
		"{\"capabilities\":{\"max_msg_fds\":1e3}}",
		"{\"capabilities\":{\"max_msg_fds\":01}}",
		"{\"capabilities\":{\"max_msg_fds\":\"8\"}}",
		"{\"capabilities\":{\"max_msg_fds\":18446744073709551616}}",
		"{\"capabilities\":{\"max_msg_fds\":99999999999999999999999}}",
		"{\"capabilities\":{\"max_msg_fds\":1,\"max_msg_fds\":2}}",
		"{\"capabilities\":{},\"capabilities\":{}}",
		"{\"capabilities\":{\"migration\":{\"pgsize\":1,\"pgsize\":1}}}",
		"{\"capabilities\":{\"migration\":4096}}",
		"{\"capabilities\":{\"twin_socket\":{\"supported\":1}}}",
		"{\"capabilities\":{\"write_multiple\":tru}}",
		"{\"capabilities\":{\"x\":nul}}",
		"{\"capabilities\":{\"x\":\"a\\qb\"}}",
		"{\"capabilities\":{\"x\":\"a\\u12g4\"}}",
		"{\"capabilities\":{\"x\":\"a\\u12\"}}",
		"{\"capabilities\":{\"x\":\"a\tb\"}}",
		"{\"capabilities\":{\"x\":\"abc}}",
		"{\"capabilities\":{\"x\":1,}}",
		"{\"capabilities\":{\"x\":[1,]}}",
		"{\"capabilities\" {}}",
		"{capabilities:{}}",
		"{\"a\":[[[[[[[[[[]]]]]]]]]]}",
		"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct precopy__vu_caps c;
		const char *why = NULL;
		cr_assert_eq(parse(bad[i], &c, &why), -EPROTO, "accepted: %s", bad[i]);
		cr_assert_not_null(why, "no reason for: %s", bad[i]);
	}
	/* depth 8 still parses */
	struct precopy__vu_caps c;
	cr_assert_eq(parse("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{}}}}}}}}", &c, NULL), 0);
}

Test(codec, decoders_never_read_past_the_length)
{
	/* every prefix of a well-formed message either decodes or is refused
	 * (ASan builds catch any read past it) */
	uint8_t m[64];
	size_t n = mkreply(m, 1, 17, "\x10\0\0\0\x08\0\0\0ABCDEFGH", 16);
	for (size_t k = 0; k <= n; k++) {
		const uint8_t *p, *d;
		size_t pl;
		uint32_t sz;
		int r = precopy__vu_reply_open(m, k, 1, 17, &p, &pl, NULL);
		if (k < n) {
			cr_assert_eq(r, -EPROTO);
			continue;
		}
		cr_assert_eq(r, 0);
		cr_assert_eq(precopy__vu_dec_mig_data_read(p, pl, 8, &d, &sz, NULL), 0);
		cr_assert_eq(sz, 8);
	}
}
