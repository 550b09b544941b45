/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz-dest.c — libFuzzer harness for the destination engine
 * end to end: arbitrary stream bytes into precopy_dest_feed() over the
 * fake kernel, with two devices (ids 10 and 11, as the golden stream
 * declares them: a PRE_COPY|P2P device and a STOP_COPY one), then
 * precopy_dest_complete() if the stream ended, else a cancel.
 *
 * Input layout:
 *   byte 0      bit 0: rewrite every record's CRCs (after the preamble and
 *               header) so that the fuzzer reaches the checks behind them
 *   bytes 1..2  split sizes: pieces of 1 + b % 256 bytes (b >= 0xF0: the
 *               rest), alternating
 *   bytes 3..   the stream
 *
 * Whatever the bytes: every call returns 0 or a -errno, a failure leaves
 * a message and every destination device RUNNING, feeding after a failure
 * is refused, and everything is released (ASan's leak check). Seed
 * corpus: tests/fuzz/corpus-dest/ (the golden version 1 stream). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/fake.h"
#include "precopy/stream.h"
#include "stream_crcs.h"
#include "../../ioctl/uapi_compat.h"

#define CHECK(c)                                                                         \
	do {                                                                             \
		if (!(c)) {                                                              \
			fprintf(stderr, "fuzz-dest: check failed: %s (line %d)\n", #c,   \
				__LINE__);                                               \
			abort();                                                         \
		}                                                                        \
	} while (0)

static int rp_sink(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return 0;
}

static uint32_t state_of(struct precopy_fake_vfio *v)
{
	struct precopy_fake_vfio_stats st;

	precopy_fake_vfio_get_stats(v, &st);
	return st.state;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t flags[2] = { VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
					   VFIO_MIGRATION_STOP_COPY };
	struct precopy_fake_kernel *fk;
	struct precopy_fake_vfio *dev[2];
	struct precopy_dest_device dd[2];
	struct precopy_dest_config cfg;
	struct precopy_dest *d;
	uint8_t *buf;
	size_t len, off = 0, piece = 0;
	int err, r = 0, fds[2];

	if (size < 3)
		return 0;
	len = size - 3;
	buf = malloc(len ? len : 1);
	CHECK(buf);
	memcpy(buf, data + 3, len);
	/* the preamble (16 bytes) and the header record are left as they are */
	if ((data[0] & 1) && len > 16)
		fix_crcs(buf + 16, len - 16);

	fk = precopy_fake_kernel_new(NULL, &err);
	CHECK(fk);
	for (int i = 0; i < 2; i++) {
		struct precopy_fake_vfio_cfg c = { .mig_flags = flags[i], .transition_ns = 0, .seed = (uint32_t)i + 1 };

		fds[i] = precopy_fake_vfio_new(fk, &c, &dev[i]);
		CHECK(fds[i] >= 0);
		dd[i] = (struct precopy_dest_device){ .id = 10 + (uint32_t)i, .device_fd = fds[i] };
	}
	precopy_dest_config_init(&cfg);
	cfg.sys = precopy_fake_kernel_sys(fk);
	cfg.devices = dd;
	cfg.ndevices = 2;
	cfg.rp_sink = rp_sink;
	cfg.io_timeout_ns = 100000000; /* 100 ms: a fuzz case must not wait 10 s */
	d = precopy_dest_new(&cfg, &err);
	CHECK(d);
	CHECK(precopy_dest_start(d) == 0);
	while (off < len) {
		uint8_t b = data[1 + piece++ % 2];
		size_t n = b >= 0xF0 ? len - off : 1 + (size_t)b % 256;

		if (n > len - off)
			n = len - off;
		r = precopy_dest_feed(d, buf + off, n);
		CHECK(r <= 0);
		if (r < 0)
			break;
		off += n;
	}
	if (r == 0 && precopy_dest_ended(d) == 1)
		r = precopy_dest_complete(d);
	if (r < 0) {
		CHECK(r > -4096);
		CHECK(precopy_dest_strerror(d)[0] != 0);
		/* a failed load put every device back to RUNNING */
		for (int i = 0; i < 2; i++)
			CHECK(state_of(dev[i]) == VFIO_DEVICE_STATE_RUNNING);
		CHECK(precopy_dest_feed(d, buf, len ? 1 : 0) < 0 || !len);
	} else if (precopy_dest_ended(d) != 1) {
		/* a device that refuses to leave RESUMING (garbage state) is
		 * reset: the cancel says so with its -errno, the device runs */
		r = precopy_dest_cancel(d);
		CHECK(r <= 0 && r > -4096);
		for (int i = 0; i < 2; i++)
			CHECK(state_of(dev[i]) == VFIO_DEVICE_STATE_RUNNING);
	}
	precopy_dest_free(d);
	for (int i = 0; i < 2; i++)
		precopy_sys_close(precopy_fake_kernel_sys(fk), fds[i]);
	precopy_fake_kernel_free(fk);
	free(buf);
	return 0;
}
