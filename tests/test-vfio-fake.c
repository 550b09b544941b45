/* SPDX-License-Identifier: MIT */
/* The fake VFIO device against the kernel's contract, table-driven: the
 * VFIO_DEVICE_FEATURE checks and errno, the FSM (compared with
 * precopy_vfio_fsm_path for every flags x cur x target), data fds, precopy
 * info, DMA logging START/STOP/REPORT, RESET and fault injection. The same
 * expectations are what the library is written against. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "precopy/fake.h"
#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"

static uint64_t vnow;
static uint64_t v_now(void *c) { (void)c; return vnow; }
static void v_adv(void *c, uint64_t ns) { (void)c; vnow += ns; }
static const struct precopy_fake_clock vclock = { v_now, v_adv, NULL };

static struct precopy_fake_kernel *fk;
static const struct precopy_sys *sys;

static void setup(void)
{
	int err;
	vnow = 1000000000ull;
	fk = precopy_fake_kernel_new(&vclock, &err);
	cr_assert(fk, "fake kernel: %d", err);
	sys = precopy_fake_kernel_sys(fk);
}
static void teardown(void) { precopy_fake_kernel_free(fk); }

#define ALLF (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)

static int mkdev(uint64_t flags, int logging, struct precopy_fake_vfio **d)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = flags, .dma_logging = logging, .initial_bytes = 100000,
					   .dirty_rate = 1000000, .stop_copy_bytes = 50000, .seed = 7 };
	int fd = precopy_fake_vfio_new(fk, &c, d);
	cr_assert_geq(fd, 0, "device: %d", fd);
	return fd;
}

/* A raw VFIO_DEVICE_FEATURE with any argsz and flags, bypassing the library's checks. */
static int raw_feature(int fd, uint32_t argsz, uint32_t flags, void *payload, size_t plen)
{
	uint64_t buf[16] = { 0 };
	struct vfio_device_feature *f = (void *)buf;
	int r;

	f->argsz = argsz;
	f->flags = flags;
	if (plen)
		memcpy(f->data, payload, plen);
	r = precopy_sys_ioctl(sys, fd, VFIO_DEVICE_FEATURE, f);
	if (plen)
		memcpy(payload, f->data, plen);
	return r;
}

#define G VFIO_DEVICE_FEATURE_GET
#define S VFIO_DEVICE_FEATURE_SET
#define P VFIO_DEVICE_FEATURE_PROBE
#define HDR 8u

TestSuite(vfio_fake, .init = setup, .fini = teardown);

Test(vfio_fake, feature_checks_table)
{
	static const struct {
		int dev; /* 0: migration+logging, 1: neither */
		uint32_t argsz, flags;
		int want;
	} t[] = {
		{ 0, 4, G | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL },	    /* argsz below the header */
		{ 0, 16, G | (1u << 19) | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL }, /* unknown flag */
		{ 0, 16, G | S | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL }, /* GET|SET without PROBE */
		{ 0, 16, VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL },	    /* neither GET nor SET */
		{ 0, 8, P | VFIO_DEVICE_FEATURE_MIGRATION, 0 },		    /* PROBE alone */
		{ 0, 8, P | G | VFIO_DEVICE_FEATURE_MIGRATION, 0 },
		{ 0, 8, P | G | S | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 0 }, /* GET|SET allowed with PROBE */
		{ 0, 8, P | S | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL }, /* SET not supported */
		{ 0, 8, G | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL },	  /* payload too small */
		{ 0, 15, G | VFIO_DEVICE_FEATURE_MIGRATION, -EINVAL },
		{ 0, 16, G | VFIO_DEVICE_FEATURE_MIGRATION, 0 },
		{ 0, 16, S | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, -EINVAL },
		{ 0, 16, G | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, 0 },
		{ 0, 16, G | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, 0 },
		{ 0, 8, P | S | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, 0 },
		{ 0, 8, P | G | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, -EINVAL },
		{ 0, 8, S | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, 0 }, /* STOP when stopped: 0 (mlx5) */
		{ 0, 8, G | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, -EINVAL },
		{ 0, 16, S | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, -EINVAL }, /* control struct too short */
		{ 0, 24, G | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, -EINVAL }, /* report struct too short */
		{ 0, 8, P | G | 0x123, -ENOTTY },				/* unknown feature */
		{ 1, 16, G | VFIO_DEVICE_FEATURE_MIGRATION, -ENOTTY },	/* missing capability */
		{ 1, 8, P | VFIO_DEVICE_FEATURE_MIGRATION, -ENOTTY },
		{ 1, 16, G | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, -ENOTTY },
		{ 1, 16, G | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, -ENOTTY },
		{ 1, 8, P | S | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, -ENOTTY },
		{ 1, 8, S | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, -ENOTTY },
		{ 1, 40, G | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, -ENOTTY },
	};
	int fds[2] = { mkdev(ALLF, 1, NULL), mkdev(0, 0, NULL) };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t pl[4] = { 0 };
		int r = raw_feature(fds[t[i].dev], t[i].argsz, t[i].flags, pl, sizeof(pl));
		cr_expect_eq(r, t[i].want, "row %zu: got %d want %d", i, r, t[i].want);
	}
	cr_expect_eq(precopy_sys_ioctl(sys, fds[0], VFIO_DEVICE_GET_REGION_INFO, NULL), -ENOTTY);
}

Test(vfio_fake, library_feature_layer)
{
	struct precopy_fake_vfio *d;
	int fd = mkdev(ALLF, 1, &d), nomig = mkdev(0, 0, NULL);
	int p2ponly = precopy_fake_vfio_new(fk, &(struct precopy_fake_vfio_cfg){ .mig_flags = VFIO_MIGRATION_P2P }, NULL);
	uint64_t fl = 0, sz = 0, before;

	/* bad requests never reach the kernel */
	before = precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL);
	cr_expect_eq(precopy_vfio_feature(sys, fd, G | S, VFIO_DEVICE_FEATURE_MIGRATION, &fl, 8), -EINVAL);
	cr_expect_eq(precopy_vfio_feature(sys, fd, 0, VFIO_DEVICE_FEATURE_MIGRATION, &fl, 8), -EINVAL);
	cr_expect_eq(precopy_vfio_feature(sys, fd, G | (1u << 20), VFIO_DEVICE_FEATURE_MIGRATION, &fl, 8), -EINVAL);
	cr_expect_eq(precopy_vfio_feature(sys, fd, G, 0x10000, &fl, 8), -EINVAL);
	cr_expect_eq(precopy_vfio_feature(sys, fd, G, 1, NULL, 8), -EINVAL);
	cr_expect_eq(precopy_vfio_feature(NULL, fd, G, 1, &fl, 8), -EINVAL);
	cr_expect_eq(precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL), before);

	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), 0);
	cr_expect_eq(fl, ALLF);
	cr_expect_eq(precopy_vfio_migration_flags(sys, nomig, &fl), -ENOTTY);
	cr_expect_eq(precopy_vfio_migration_flags(sys, p2ponly, &fl), -EOPNOTSUPP);
	cr_expect_eq(fl, VFIO_MIGRATION_P2P);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, NULL), -EINVAL);
	cr_expect_eq(precopy_vfio_dma_logging_supported(sys, fd), 1);
	cr_expect_eq(precopy_vfio_dma_logging_supported(sys, nomig), 0);
	cr_expect_eq(precopy_vfio_stop_copy_size(sys, fd, &sz), 0);
	cr_expect_eq(sz, 50000);
	cr_expect_eq(precopy_vfio_stop_copy_size(sys, nomig, &sz), -ENOTTY);
	cr_expect_eq(precopy_vfio_precopy_info(sys, fd, NULL, NULL), -ENOTTY); /* not a data fd */
	cr_expect_eq(precopy_vfio_feature(sys, 12345, G, VFIO_DEVICE_FEATURE_MIGRATION, &fl, 8), -EBADF);

	/* a fault on the probe is reported, not taken for "unsupported" */
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE,
		.match_feature = 1, .feature = VFIO_DEVICE_FEATURE_DMA_LOGGING_START, .nth = 1, .err = EIO }), 0);
	cr_expect_eq(precopy_vfio_dma_logging_supported(sys, fd), -EIO);
	cr_expect_eq(precopy_vfio_dma_logging_supported(sys, fd), 1);
}

static int set_state(int fd, uint32_t st, int *data_fd)
{
	struct vfio_device_feature_mig_state m = { .device_state = st, .data_fd = -7 };
	int r = precopy_vfio_feature(sys, fd, S, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m, sizeof(m));
	if (data_fd)
		*data_fd = m.data_fd;
	return r;
}

static uint32_t get_state(int fd)
{
	struct vfio_device_feature_mig_state m = { 0 };
	cr_assert_eq(precopy_vfio_feature(sys, fd, G, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m, sizeof(m)), 0);
	cr_assert_eq(m.data_fd, -1);
	return m.device_state;
}

Test(vfio_fake, fsm_matches_library_everywhere)
{
	static const uint64_t flagsets[] = { 1, 3, 5, 7 };

	for (size_t fi = 0; fi < 4; fi++) {
		struct precopy_fake_vfio *d;
		int fd = mkdev(flagsets[fi], 0, &d);

		for (uint32_t cur = 1; cur < PRECOPY_VFIO_NUM_STATES; cur++) {
			for (uint32_t tgt = 0; tgt <= PRECOPY_VFIO_NUM_STATES; tgt++) {
				uint32_t path[8];
				int dfd, r, n, opens = 0;

				cr_assert_eq(precopy_sys_ioctl(sys, fd, VFIO_DEVICE_RESET, NULL), 0);
				if (precopy_vfio_fsm_path(VFIO_DEVICE_STATE_RUNNING, cur, flagsets[fi], NULL, 0) < 0)
					continue; /* cur unsupported by this device */
				r = set_state(fd, cur, &dfd);
				cr_assert_eq(r, 0);
				if (dfd >= 0)
					precopy_sys_close(sys, dfd);
				n = precopy_vfio_fsm_path(cur, tgt, flagsets[fi], path, 8);
				for (int i = 0; i < n; i++)
					opens += precopy_vfio_arc_opens_fd(i ? path[i - 1] : cur, path[i]);
				r = set_state(fd, tgt, &dfd);
				if (n < 0) {
					cr_expect_eq(r, -EINVAL, "flags %lu %u->%u", (unsigned long)flagsets[fi], cur, tgt);
					cr_expect_eq(dfd, -1);
					cr_expect_eq(get_state(fd), cur, "state moved on a refused request");
					continue;
				}
				if (cur == VFIO_DEVICE_STATE_RESUMING && n > 0) {
					/* leaving RESUMING with no data is a failed load */
					cr_expect_eq(r, -EINVAL);
					cr_expect_eq(get_state(fd), VFIO_DEVICE_STATE_ERROR);
					continue;
				}
				cr_expect_eq(r, 0, "flags %lu %u->%u: %d", (unsigned long)flagsets[fi], cur, tgt, r);
				cr_expect_eq(get_state(fd), tgt);
				cr_expect_eq(dfd >= 0, opens > 0, "flags %lu %u->%u data_fd %d", (unsigned long)flagsets[fi], cur, tgt, dfd);
				if (dfd >= 0)
					cr_expect_eq(precopy_sys_close(sys, dfd), 0);
			}
		}
	}
}

Test(vfio_fake, precopy_info_and_stream)
{
	struct precopy_fake_vfio *d;
	int fd = mkdev(ALLF, 0, &d), dfd;
	uint64_t init = 0, dirty = 0, last_init, total = 0;
	static uint8_t buf[200000];
	ssize_t n;

	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &dfd), 0);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(precopy_vfio_precopy_info(sys, dfd, &init, &dirty), 0);
	cr_expect_eq(init, 100000);
	cr_expect_eq(dirty, 0);
	vnow += 1000000; /* 1 ms at 1 MB/s */
	cr_assert_eq(precopy_vfio_precopy_info(sys, dfd, &init, &dirty), 0);
	cr_expect_eq(dirty, 1000);
	last_init = init;
	while ((n = precopy_sys_read(sys, dfd, buf, 4096)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			cr_assert_eq(buf[i], precopy_fake_vfio_stream_byte(7, total + (uint64_t)i));
		total += (uint64_t)n;
		cr_assert_eq(precopy_vfio_precopy_info(sys, dfd, &init, &dirty), 0);
		cr_assert_leq(init, last_init, "initial_bytes rose");
		last_init = init;
	}
	cr_expect_eq(n, -ENOMSG);
	cr_expect_eq(total, 101000);
	cr_expect_eq(init, 0);
	cr_expect_eq(dirty, 0);
	vnow += 2000000;
	n = precopy_sys_read(sys, dfd, buf, sizeof(buf));
	cr_expect_eq(n, 2000);
	/* a short read from fault injection leaves the rest for the next read */
	vnow += 1000000;
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_READ, .fd = dfd, .nth = 1, .short_len = 10 }), 0);
	cr_expect_eq(precopy_sys_read(sys, dfd, buf, sizeof(buf)), 10);
	cr_expect_eq(precopy_sys_read(sys, dfd, buf, sizeof(buf)), 990);
	precopy_fake_fault_clear(fk);

	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, NULL), 0);
	cr_expect_eq(precopy_vfio_precopy_info(sys, dfd, &init, &dirty), -EINVAL);
	total = 0;
	while ((n = precopy_sys_read(sys, dfd, buf, sizeof(buf))) > 0)
		total += (uint64_t)n;
	cr_expect_eq(n, 0, "end of STOP_COPY is read() == 0");
	cr_expect_eq(total, 50000);
	cr_expect_eq(precopy_sys_read(sys, dfd, buf, 10), 0);
	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_STOP, NULL), 0);
	cr_expect_eq(precopy_sys_read(sys, dfd, buf, 10), -ENODEV);
	cr_expect_eq(precopy_sys_close(sys, dfd), 0);
}

/* A data fd without a poll method (cfg.no_poll) polls readable and
 * writable at once even with nothing to read, beside a pollable one that
 * polls readable only when the device has bytes; reads are counted as
 * plain in STOP_COPY. */
Test(vfio_fake, data_fd_without_poll_method)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = ALLF, .initial_bytes = 0, .stop_copy_bytes = 5000,
					   .seed = 7 };
	struct precopy_fake_vfio *blind, *seeing;
	struct precopy_fake_vfio_stats st;
	struct pollfd pf[3];
	int bfd, sfd, bdata, sdata;
	uint8_t buf[8192];

	sfd = precopy_fake_vfio_new(fk, &c, &seeing);
	c.no_poll = 1;
	bfd = precopy_fake_vfio_new(fk, &c, &blind);
	cr_assert(bfd >= 0 && sfd >= 0);
	cr_assert_eq(set_state(bfd, VFIO_DEVICE_STATE_PRE_COPY, &bdata), 0);
	cr_assert_eq(set_state(sfd, VFIO_DEVICE_STATE_PRE_COPY, &sdata), 0);
	/* nothing to read in either (no initial data, no dirtying) */
	pf[0] = (struct pollfd){ .fd = sdata, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = -1, .events = POLLIN };
	pf[2] = (struct pollfd){ .fd = bdata, .events = POLLIN | POLLOUT };
	cr_assert_eq(precopy_sys_poll(sys, pf, 3, 0), 1);
	cr_expect_eq(pf[0].revents, 0, "the pollable fd has nothing: %#x", pf[0].revents);
	cr_expect_eq(pf[1].revents, 0);
	cr_expect_eq(pf[1].fd, -1);
	cr_expect_eq(pf[2].fd, bdata, "the fd number is given back");
	cr_expect_eq(pf[2].revents, POLLIN | POLLOUT, "no poll method: the default mask");
	cr_expect_eq(precopy_sys_read(sys, bdata, buf, sizeof(buf)), -ENOMSG);
	/* alone it answers at once too, whatever the timeout */
	cr_assert_eq(precopy_sys_poll(sys, &pf[2], 1, 10000), 1);
	cr_assert_eq(set_state(bfd, VFIO_DEVICE_STATE_STOP_COPY, NULL), 0);
	cr_assert_eq(set_state(sfd, VFIO_DEVICE_STATE_STOP_COPY, NULL), 0);
	cr_expect_eq(precopy_sys_read(sys, bdata, buf, sizeof(buf)), 5000);
	cr_expect_eq(precopy_sys_read(sys, bdata, buf, sizeof(buf)), 0);
	precopy_fake_vfio_get_stats(blind, &st);
	cr_expect_eq(st.sc_plain_reads, 1);
	cr_expect_eq(st.sc_queued_reads, 0);
	/* the pollable one polls readable once the device holds its state */
	cr_assert_eq(precopy_sys_poll(sys, pf, 1, 0), 1);
	cr_expect(pf[0].revents & POLLIN);
	cr_expect_eq(precopy_sys_read(sys, sdata, buf, sizeof(buf)), 5000);
	cr_expect_eq(precopy_sys_close(sys, bdata), 0);
	cr_expect_eq(precopy_sys_close(sys, sdata), 0);
}

Test(vfio_fake, precopy_info_argsz_and_write_rules)
{
	int fd = mkdev(ALLF, 0, NULL), dfd;
	struct vfio_precopy_info info = { .argsz = 16 };
	char b[8] = { 0 };

	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_PRE_COPY, &dfd), 0);
	cr_expect_eq(precopy_sys_ioctl(sys, dfd, VFIO_MIG_GET_PRECOPY_INFO, &info), -EINVAL);
	info.argsz = sizeof(info);
	cr_expect_eq(precopy_sys_ioctl(sys, dfd, VFIO_MIG_GET_PRECOPY_INFO, &info), 0);
	cr_expect_eq(precopy_sys_ioctl(sys, dfd, VFIO_DEVICE_RESET, NULL), -ENOTTY);
	cr_expect_eq(precopy_sys_write(sys, dfd, b, 8), -EINVAL); /* a saving fd is read-only */
	/* reset under a session: the device is RUNNING and the fd is dead */
	cr_assert_eq(precopy_sys_ioctl(sys, fd, VFIO_DEVICE_RESET, NULL), 0);
	cr_expect_eq(get_state(fd), VFIO_DEVICE_STATE_RUNNING);
	cr_expect_eq(precopy_sys_read(sys, dfd, b, 8), -ENODEV);
	cr_expect_eq(precopy_sys_ioctl(sys, dfd, VFIO_MIG_GET_PRECOPY_INFO, &info), -EINVAL);
	precopy_sys_close(sys, dfd);
	/* no PRE_COPY support: the ioctl does not exist on its data fd */
	fd = mkdev(VFIO_MIGRATION_STOP_COPY, 0, NULL);
	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_STOP_COPY, &dfd), 0);
	cr_expect_eq(precopy_sys_ioctl(sys, dfd, VFIO_MIG_GET_PRECOPY_INFO, &info), -ENOTTY);
	precopy_sys_close(sys, dfd);
}

Test(vfio_fake, resume_checks_the_stream)
{
	int src = mkdev(ALLF, 0, NULL), dst = mkdev(ALLF, 0, NULL), bad = mkdev(ALLF, 0, NULL);
	int sfd, dfd, bfd;
	static uint8_t buf[65536];
	ssize_t n;
	struct precopy_fake_vfio_stats st;
	struct precopy_fake_vfio *dd = NULL;

	(void)dd;
	cr_assert_eq(set_state(src, VFIO_DEVICE_STATE_STOP_COPY, &sfd), 0);
	cr_assert_eq(set_state(dst, VFIO_DEVICE_STATE_RESUMING, &dfd), 0);
	cr_assert_eq(set_state(bad, VFIO_DEVICE_STATE_RESUMING, &bfd), 0);
	cr_expect_eq(precopy_sys_read(sys, dfd, buf, 10), -EINVAL); /* a resuming fd is write-only */
	while ((n = precopy_sys_read(sys, sfd, buf, sizeof(buf))) > 0) {
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = precopy_sys_write(sys, dfd, buf + off, (size_t)(n - off));
			cr_assert_gt(w, 0);
			off += w;
		}
		buf[n / 2] ^= 0xff;
		cr_assert_eq(precopy_sys_write(sys, bfd, buf, (size_t)n), n);
	}
	cr_assert_eq(n, 0);
	cr_expect_eq(set_state(dst, VFIO_DEVICE_STATE_RUNNING, NULL), 0);
	cr_expect_eq(get_state(dst), VFIO_DEVICE_STATE_RUNNING);
	cr_expect_eq(set_state(bad, VFIO_DEVICE_STATE_RUNNING, NULL), -EINVAL);
	cr_expect_eq(get_state(bad), VFIO_DEVICE_STATE_ERROR);
	cr_expect_eq(set_state(bad, VFIO_DEVICE_STATE_STOP, NULL), -EINVAL); /* ERROR needs a reset */
	cr_expect_eq(precopy_sys_ioctl(sys, bad, VFIO_DEVICE_RESET, NULL), 0);
	cr_expect_eq(get_state(bad), VFIO_DEVICE_STATE_RUNNING);
	(void)st;
}

static int log_start(int fd, uint64_t *pg, const struct vfio_device_feature_dma_logging_range *r, uint32_t n)
{
	struct vfio_device_feature_dma_logging_control c = { .page_size = *pg, .num_ranges = n, .ranges = (uintptr_t)r };
	int ret = precopy_vfio_feature(sys, fd, S, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, &c, sizeof(c));
	*pg = c.page_size;
	return ret;
}

static int log_report(int fd, uint64_t iova, uint64_t len, uint64_t pg, uint64_t *bm)
{
	struct vfio_device_feature_dma_logging_report rep = { .iova = iova, .length = len, .page_size = pg, .bitmap = (uintptr_t)bm };
	return precopy_vfio_feature(sys, fd, G, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep));
}

Test(vfio_fake, dma_logging_start_table)
{
	static struct vfio_device_feature_dma_logging_range many[300];
	static const struct vfio_device_feature_dma_logging_range ok[] = { { 0, 1 << 20 } },
		mis[] = { { 4096 + 512, 4096 } }, mislen[] = { { 0, 4097 } }, ovl[] = { { 0, 8192 }, { 4096, 8192 } },
		ovf[] = { { UINT64_MAX - 4095, 8192 } }, zero[] = { { 0, 0 } };
	static const struct { const struct vfio_device_feature_dma_logging_range *r; uint32_t n; uint64_t pg; int want; } t[] = {
		{ ok, 0, 4096, -EINVAL },	{ many, 257, 4096, -E2BIG }, { mis, 1, 4096, -EINVAL },
		{ mislen, 1, 4096, -EINVAL },	{ ovl, 2, 4096, -EINVAL },   { ovf, 1, 4096, -EOVERFLOW },
		{ zero, 1, 4096, -EINVAL },	{ ok, 1, 0, -EINVAL },	      { ok, 1, 3000, -EINVAL },
		{ NULL, 1, 4096, -EFAULT },	{ ok, 1, 4096, 0 },	      { ok, 1, 4096, -EINVAL }, /* again: mlx5 says EINVAL */
	};
	int fd = mkdev(ALLF, 1, NULL);

	for (int i = 0; i < 300; i++)
		many[i].iova = (uint64_t)i << 20, many[i].length = 4096;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t pg = t[i].pg;
		cr_expect_eq(log_start(fd, &pg, t[i].r, t[i].n), t[i].want, "row %zu", i);
	}
	cr_expect_eq(precopy_vfio_feature(sys, fd, S, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0), 0);
	{
		uint64_t pg = 4096;
		cr_expect_eq(log_start(fd, &pg, many, 256), 0, "256 ranges fit one kernel page");
	}
	/* a driver that says EBUSY instead */
	struct precopy_fake_vfio_cfg c = { .mig_flags = ALLF, .dma_logging = 1, .restart_errno = EBUSY, .log_page_min = 65536 };
	int fd2 = precopy_fake_vfio_new(fk, &c, NULL);
	uint64_t pg = 4096;
	cr_expect_eq(log_start(fd2, &pg, ok, 1), 0);
	cr_expect_eq(pg, 65536, "the device chose its page size");
	pg = 4096;
	cr_expect_eq(log_start(fd2, &pg, ok, 1), -EBUSY);
}

Test(vfio_fake, dma_logging_report_sets_only)
{
	struct precopy_fake_vfio *d;
	struct precopy_fake_vfio_stats st;
	int fd = mkdev(ALLF, 1, &d);
	size_t memlen = 64 * 4096;
	uint8_t *mem = mmap(NULL, memlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const uint64_t base = 1ull << 32;
	/* four ranges, gaps 4 KiB, 64 KiB, 8 KiB: a 2-range tracker closes the two smallest */
	struct vfio_device_feature_dma_logging_range r[] = {
		{ base, 8 * 4096 }, { base + 9 * 4096, 4 * 4096 }, { base + 29 * 4096, 4 * 4096 }, { base + 35 * 4096, 29 * 4096 },
	};
	uint64_t pg = 4096, bm[2], bm2[1];

	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(d, base, mem, memlen), 0);
	cr_expect_eq(precopy_fake_vfio_dma_write(d, base + 4096, 10, 0xab), 0, "not logging: nothing marked");
	cr_expect_eq(mem[4096], 0xab);
	cr_expect_eq(log_report(fd, base, memlen, 4096, bm), -EINVAL, "report before START");
	cr_assert_eq(log_start(fd, &pg, r, 4), 0);
	precopy_fake_vfio_get_stats(d, &st);
	cr_expect_eq(st.log_ranges, 4);

	cr_expect_eq(precopy_fake_vfio_dma_write(d, base + 3 * 4096 + 100, 5000, 0xcd), 2);
	cr_expect_eq(precopy_fake_vfio_dma_write(d, base + 8 * 4096, 4096, 0x11), 0, "gap not tracked");
	memset(bm, 0, sizeof(bm));
	bm[0] = 1ull << 40; /* the caller's bit stays */
	cr_expect_eq(log_report(fd, base, memlen, 2048, bm), -EINVAL);
	cr_expect_eq(log_report(fd, base, memlen, 12288, bm), -EINVAL);
	cr_expect_eq(log_report(fd, UINT64_MAX - 4095, 8192, 4096, bm), -EOVERFLOW);
	cr_assert_eq(log_report(fd, base, memlen, 4096, bm), 0);
	cr_expect_eq(bm[0], (1ull << 40) | (3ull << 3));
	cr_expect_eq(bm[1], 0);
	memset(bm, 0, sizeof(bm));
	cr_assert_eq(log_report(fd, base, memlen, 4096, bm), 0);
	cr_expect_eq(bm[0] | bm[1], 0, "read-and-clear");
	/* a larger report page: one bit per 64 KiB */
	cr_expect_eq(precopy_fake_vfio_dma_write(d, base + 40 * 4096, 1, 1), 1);
	bm2[0] = 0;
	cr_assert_eq(log_report(fd, base, memlen, 65536, bm2), 0);
	cr_expect_eq(bm2[0], 1ull << 2);
	cr_expect_eq(precopy_vfio_feature(sys, fd, S, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0), 0);

	/* a 2-range tracker: the 4 KiB and 8 KiB gaps are closed, the 64 KiB one kept */
	struct precopy_fake_vfio_cfg c = { .mig_flags = ALLF, .dma_logging = 1, .max_ranges = 2, .log_page_min = 4096 };
	struct precopy_fake_vfio *d2;
	int fd2 = precopy_fake_vfio_new(fk, &c, &d2);
	pg = 4096;
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(d2, base, mem, memlen), 0);
	cr_assert_eq(log_start(fd2, &pg, r, 4), 0);
	precopy_fake_vfio_get_stats(d2, &st);
	cr_expect_eq(st.log_ranges, 2);
	cr_expect_eq(precopy_fake_vfio_dma_write(d2, base + 8 * 4096, 4096, 1), 1, "closed gap is tracked");
	cr_expect_eq(precopy_fake_vfio_dma_write(d2, base + 34 * 4096, 4096, 1), 1, "closed gap is tracked");
	cr_expect_eq(precopy_fake_vfio_dma_write(d2, base + 20 * 4096, 4096, 1), 0, "the big gap is not");

	/* no DMA while stopped */
	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_STOP, NULL), 0);
	cr_expect_eq(precopy_fake_vfio_dma_write(d, base, 1, 1), -EPERM);
	cr_expect_eq(precopy_fake_vfio_dma_write(d, base + memlen, 1, 1), -EINVAL);
	munmap(mem, memlen);
}

Test(vfio_fake, background_dma_on_the_clock)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = ALLF, .dma_logging = 1, .dma_pages_per_sec = 1000, .seed = 3 };
	struct precopy_fake_vfio *d;
	struct precopy_fake_vfio_stats st;
	int fd = precopy_fake_vfio_new(fk, &c, &d);
	size_t memlen = 256 * 4096;
	uint8_t *mem = calloc(1, memlen);
	struct vfio_device_feature_dma_logging_range r = { 0, memlen };
	uint64_t pg = 4096, bm[4] = { 0 }, bits = 0, nonzero = 0;

	cr_assert_eq(precopy_fake_vfio_set_guest_mem(d, 0, mem, memlen), 0);
	cr_assert_eq(log_start(fd, &pg, &r, 1), 0);
	vnow += 100000000; /* 100 ms: 100 page writes */
	precopy_fake_vfio_get_stats(d, &st);
	cr_expect_eq(st.dma_pages, 100);
	cr_assert_eq(log_report(fd, 0, memlen, 4096, bm), 0);
	for (int i = 0; i < 4; i++)
		bits += (uint64_t)__builtin_popcountll(bm[i]);
	for (size_t p = 0; p < 256; p++) {
		int dirty = !!(bm[p / 64] & (1ull << (p % 64))), touched = 0;
		for (size_t b = 0; b < 4096 && !touched; b++)
			touched = mem[p * 4096 + b] != 0;
		nonzero += touched;
		if (touched)
			cr_expect(dirty, "page %zu written but not logged", p);
	}
	cr_expect_gt(bits, 50);
	cr_expect_leq(nonzero, bits);
	cr_assert_eq(set_state(fd, VFIO_DEVICE_STATE_STOP, NULL), 0);
	vnow += 100000000;
	precopy_fake_vfio_get_stats(d, &st);
	cr_expect_eq(st.dma_pages, 100, "a stopped device does not DMA");
	free(mem);
}

Test(vfio_fake, fault_injection_nth_call)
{
	int fd = mkdev(ALLF, 0, NULL);
	uint64_t fl;

	cr_expect_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL, .nth = 0, .err = EIO }), -EINVAL);
	cr_expect_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL, .nth = 1, .err = 0 }), -EINVAL);
	cr_expect_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_COUNT, .nth = 1, .err = EIO }), -EINVAL);
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL, .fd = fd, .nth = 2, .times = 2, .err = EAGAIN }), 0);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), 0);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), -EAGAIN);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), -EAGAIN);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), 0);
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_CLOSE, .nth = 1, .err = EINTR }), 0);
	/* as Linux: the fd is released although close() fails */
	cr_expect_eq(precopy_sys_close(sys, fd), -EINTR);
	cr_expect_eq(precopy_vfio_migration_flags(sys, fd, &fl), -EBADF, "closed device fd");
	cr_expect_eq(precopy_sys_close(sys, fd), -EBADF, "a failed close still closed it");
}
