/* SPDX-License-Identifier: MIT */
/* tests/interop/vfio-user-sample.c — a manual interoperability check of
 * precopy's vfio-user client against a server written by others:
 * libvfio-user's samples/server. Not built by `make` (it needs that
 * server, which no Debian package ships).
 *
 *   meson setup build && ninja -C build samples/server   (in libvfio-user)
 *   cc -Iinclude -D_GNU_SOURCE -o /tmp/vu-sample tests/interop/vfio-user-sample.c \
 *      build/libprecopy.a -luring -lpci -lnuma -lpthread -lm
 *   /tmp/vu-sample /path/to/libvfio-user/build/samples/server
 *
 * One edit to the sample was needed on its June 2026 tree, outside the
 * protocol: its BAR1 of 0x3000 bytes is refused by its own library (BARs
 * must be powers of two): made 0x4000.
 *
 * What it does: handshake (twin socket), device and region info, INTx by
 * eventfd (SET_IRQS; the sample raises it before its DMA), DMA
 * maps (one without an fd: the server writes it by message; one with: it
 * writes through its mmap), DMA logging, a timer-started device DMA that
 * the client serves with precopy_vfio_user_serve() while no request is in
 * flight, the client's and the server's dirty logs, and a migration of
 * BAR1 from one server process to another. Prints what it saw; exits 1
 * on the first failed call. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "precopy/vfio_user.h"

/* the sample puts its socket here */
#define DIR "/tmp"

#define CK(x) do { long r_ = (long)(x); if (r_ < 0) { fprintf(stderr, "FAIL %s = %ld: %s\n", #x, r_, c ? precopy_vfio_user_error(c) : ""); exit(1); } } while (0)
static struct precopy_vfio_user *c;

static pid_t spawn(const char *srv, const char *path)
{
	unlink(path);
	pid_t p = fork();
	if (p == 0) {
		execl(srv, srv, path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		if (access(path, F_OK) == 0)
			return p;
		usleep(10000);
	}
	fprintf(stderr, "no socket\n");
	exit(1);
}

static struct precopy_vfio_user *conn(const char *path, const char *name)
{
	int fd = precopy_vfio_user_connect(path);
	if (fd < 0) { fprintf(stderr, "connect %d\n", fd); exit(1); }
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.name = name;
	o.twin_socket = !getenv("VU_NO_TWIN") || !*getenv("VU_NO_TWIN"); /* VU_NO_TWIN=1: commands on the main socket */
	int err; char msg[256];
	struct precopy_vfio_user *h = precopy_vfio_user_open(precopy_sys_real(), fd, &o, &err, msg, sizeof msg);
	if (!h) { fprintf(stderr, "open: %d %s\n", err, msg); exit(1); }
	return h;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s LIBVFIO_USER_SAMPLE_SERVER\n", argv[0]);
		return 2;
	}
	const char *srv = argv[1];
	pid_t pa = spawn(srv, DIR "/precopy-vu-a.sock");
	c = conn(DIR "/precopy-vu-a.sock", "A");
	struct precopy_vfio_user_caps caps;
	precopy_vfio_user_caps(c, &caps);
	printf("caps: %u.%u max_msg_fds %llu max_xfer %llu mig pgsize %llu twin %d msg_bytes %u\n", caps.major, caps.minor,
	       (unsigned long long)caps.max_msg_fds, (unsigned long long)caps.max_data_xfer_size,
	       (unsigned long long)caps.migration_pgsize, caps.twin_socket, caps.msg_bytes);
	uint32_t fl, nr, ni;
	CK(precopy_vfio_user_device_info(c, &fl, &nr, &ni));
	printf("device: flags 0x%x regions %u irqs %u\n", fl, nr, ni);
	for (uint32_t i = 0; i < nr; i++) {
		struct precopy_vfio_user_region r; int rfd;
		int e = precopy_vfio_user_region_info(c, i, &r, &rfd);
		if (e) { printf("region %u: %d %s\n", i, e, precopy_vfio_user_error(c)); continue; }
		printf("region %u: flags 0x%x size 0x%llx cap_offset %u fd %d\n", i, r.flags, (unsigned long long)r.size, r.cap_offset, rfd);
		if (rfd >= 0) close(rfd);
	}
	uint64_t mf;
	CK(precopy_vfio_user_migration_flags(c, &mf));
	printf("migration flags 0x%llx\n", (unsigned long long)mf);
	int e = precopy_vfio_user_dma_logging_start(c, 4096, NULL, 0, NULL);
	printf("logging start before any map: %d %s\n", e, e ? precopy_vfio_user_error(c) : "");
	/* guest memory */
	int gfd = memfd_create("g", 0);
	ftruncate(gfd, 0x20000);
	uint8_t *g = mmap(NULL, 0x20000, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
	CK(precopy_vfio_user_dma_map(c, 0x100000, 0x10000, g, -1, 0, 3));
	CK(precopy_vfio_user_dma_map(c, 0x200000, 0x10000, g + 0x10000, gfd, 0x10000, 3));
	uint64_t ps = 0;
	e = precopy_vfio_user_dma_logging_start(c, 4096, NULL, 0, &ps);
	printf("logging start: %d page %llu %s\n", e, (unsigned long long)ps, e ? precopy_vfio_user_error(c) : "");
	/* the sample raises INTx before its DMA */
	int irq = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	uint32_t iflags, icount;
	CK(precopy_vfio_user_irq_info(c, 0, &iflags, &icount));
	printf("INTx: flags 0x%x count %u\n", iflags, icount);
	CK(precopy_vfio_user_set_irqs(c, 0, PRECOPY_VFIO_USER_IRQ_DATA_EVENTFD | PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER,
				      0, 1, &irq));
	time_t one = time(NULL) + 1;
	CK(precopy_vfio_user_region_write(c, 0, 0, &one, sizeof one));
	/* the server DMAs when its timer fires, no request in flight: serve */
	int served = 0;
	for (int i = 0; i < 40 && served < 6; i++) {
		int n = precopy_vfio_user_serve(c, 100);
		CK(n);
		served += n;
	}
	uint64_t irqs = 0;
	if (read(irq, &irqs, 8) != 8)
		irqs = 0;
	printf("served %d server commands, INTx raised %llu time(s)\n", served, (unsigned long long)irqs);
	printf("guest region0[0]=%c [1024]=%c [3072]=%c region1[0]=%c [3072]=%c\n", g[0], g[1024], g[3072], g[0x10000], g[0x10000 + 3072]);
	uint64_t bm[1] = {0};
	CK(precopy_vfio_user_dma_dirty(c, 0x100000, 0x10000, bm, 1, 1));
	printf("client dirty log region 0: 0x%llx\n", (unsigned long long)bm[0]);
	bm[0] = 0;
	e = precopy_vfio_user_dma_logging_report(c, 0x200000, 0x10000, 4096, bm, 1);
	printf("server report region 1: %d 0x%llx %s\n", e, (unsigned long long)bm[0], e ? precopy_vfio_user_error(c) : "");
	bm[0] = 0;
	e = precopy_vfio_user_dma_logging_report(c, 0x100000, 0x10000, 4096, bm, 1);
	printf("server report region 0: %d 0x%llx %s\n", e, (unsigned long long)bm[0], e ? precopy_vfio_user_error(c) : "");
	/* BAR1 content to move */
	uint8_t bar1[0x4000];
	for (int i = 0; i < 0x4000; i++) bar1[i] = (uint8_t)(i * 13 + 5);
	CK(precopy_vfio_user_region_write(c, 1, 0, bar1, sizeof bar1));
	/* migrate A -> B */
	static uint8_t st[1 << 20];
	size_t n = 0;
	CK(precopy_vfio_user_set_state(c, 6));
	for (;;) { ssize_t r = precopy_vfio_user_mig_read(c, st + n, sizeof st - n); CK(r); if (!r) break; n += r; }
	printf("PRE_COPY: %zu bytes\n", n);
	size_t pre = n;
	CK(precopy_vfio_user_set_state(c, 3));
	for (;;) { ssize_t r = precopy_vfio_user_mig_read(c, st + n, sizeof st - n); CK(r); if (!r) break; n += r; }
	printf("STOP_COPY: %zu bytes\n", n - pre);
	e = precopy_vfio_user_reset(c);
	printf("reset in STOP_COPY: %d %s\n", e, e ? precopy_vfio_user_error(c) : "");
	CK(precopy_vfio_user_set_state(c, 1));
	pid_t pb = spawn(srv, DIR "/precopy-vu-b.sock");
	struct precopy_vfio_user *a = c;
	c = conn(DIR "/precopy-vu-b.sock", "B");
	CK(precopy_vfio_user_set_state(c, 4));
	/* the sample hands BAR1 out again in STOP_COPY, so its PRE_COPY bytes
	 * are left out (its own comment says the PRE_COPY copy is pointless) */
	CK(precopy_vfio_user_mig_write(c, st + pre, n - pre));
	CK(precopy_vfio_user_set_state(c, 1));
	CK(precopy_vfio_user_set_state(c, 2));
	uint8_t got[0x4000];
	CK(precopy_vfio_user_region_read(c, 1, 0, got, sizeof got));
	printf("B's BAR1 %s A's\n", memcmp(got, bar1, sizeof got) ? "DIFFERS FROM" : "equals");
	/* device DMA while requests are in flight: B's commands arrive while
	 * the client waits for its replies */
	memset(g, 0, 0x20000);
	CK(precopy_vfio_user_set_irqs(c, 0, PRECOPY_VFIO_USER_IRQ_DATA_EVENTFD | PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER,
				      0, 1, &irq));
	CK(precopy_vfio_user_dma_map(c, 0x100000, 0x10000, g, -1, 0, 3));
	CK(precopy_vfio_user_dma_map(c, 0x200000, 0x10000, g + 0x10000, gfd, 0x10000, 3));
	one = time(NULL) + 1;
	CK(precopy_vfio_user_region_write(c, 0, 0, &one, sizeof one));
	int reqs = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		CK(precopy_vfio_user_region_read(c, 1, 0, got, 64));
		reqs++;
		usleep(100); /* the sample starts its DMA only when a signal meets it idle */
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while (g[3072] != 'D' && t1.tv_sec - t0.tv_sec < 5);
	bm[0] = 0;
	CK(precopy_vfio_user_dma_dirty(c, 0x100000, 0x10000, bm, 1, 1));
	printf("B: DMA by message during %d requests: region0[3072]=%c, client dirty log 0x%llx\n", reqs,
	       g[3072] ? g[3072] : '0', (unsigned long long)bm[0]);
	precopy_vfio_user_close(c);
	precopy_vfio_user_close(a);
	kill(pa, SIGTERM); kill(pb, SIGTERM);
	int s1, s2; waitpid(pa, &s1, 0); waitpid(pb, &s2, 0);
	printf("done\n");
	return 0;
}
