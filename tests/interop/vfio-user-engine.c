/* SPDX-License-Identifier: MIT */
/* tests/interop/vfio-user-engine.c — the engines migrate a device served
 * by libvfio-user's samples/server, a server precopy did not write. Not
 * built by `make` and not in CI (no Debian package ships the server):
 * tests/interop/run-libvfio-user.sh builds both and runs this.
 *
 *   vfio-user-engine SERVER [precopy]
 *
 * Two server processes, A (source) and B (destination). Guest RAM is a
 * 1 MiB memfd DMA-mapped into A as two mappings with the fd (the sample
 * writes the second through its mmap, logged in its DMA log, and the first
 * by DMA_WRITE messages, logged by the client). Three rounds, each a
 * source engine and a destination engine (its own thread) over a
 * socketpair, the program playing the VMM (it copies the RAM pages the
 * engine hands out):
 *   1. A -> B to the end; the sample's timer-started DMA lands during
 *      pre-copy (after the first RAM copy);
 *   2. A -> B cancelled after the drain, before the end (B holds a whole
 *      stream, A is in STOP_COPY): both must come back to RUNNING;
 *   3. A -> B to the end again, with new BAR1 contents.
 * After each completed round: B's BAR1 equals A's, guest RAM byte-equal
 * (and the DMA'd pages hold the sample's bytes). Prints what it saw;
 * exits 1 at the first failure. With "precopy", round 2 is cancelled in
 * pre-copy instead and the program stops there (exit 3 if A is gone):
 * the sample asserts on PRE_COPY -> RUNNING that its whole state was
 * read, so a cancel in pre-copy aborts it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/vfio_user.h"

#define PS 4096u
#define GPA 0x100000ull
#define GSZ (1u << 20)
#define PAGES (GSZ / PS)
#define BAR1 0x4000u /* the sample's BAR1 after the edit the script makes */
#define ST_STOP 1u
#define ST_RUNNING 2u

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "FAIL %s: %s\n", what, msg);
	exit(1);
}

#define CK(x, h) do { long r_ = (long)(x); if (r_ < 0) die(#x, (h) ? precopy_vfio_user_error(h) : ""); } while (0)

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static pid_t spawn(const char *srv, const char *path)
{
	unlink(path);
	pid_t p = fork();
	if (p == 0) {
		execl(srv, srv, path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		if (access(path, F_OK) == 0)
			return p;
		usleep(10000);
	}
	die("spawn", "no socket from the server");
	return -1;
}

static struct precopy_vfio_user *conn(const char *path, const char *name)
{
	struct precopy_vfio_user_opts o;
	char msg[256] = "";
	int err = 0, fd = precopy_vfio_user_connect(path);
	if (fd < 0)
		die("connect", path);
	precopy_vfio_user_opts_init(&o);
	o.name = name;
	struct precopy_vfio_user *h = precopy_vfio_user_open(precopy_sys_real(), fd, &o, &err, msg, sizeof(msg));
	if (!h)
		die("open", msg);
	return h;
}

struct dthread {
	struct precopy_dest *d;
	int stop;
	int64_t r;
};

static void *dest_main(void *arg)
{
	struct dthread *t = arg;
	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE) && precopy_dest_ended(t->d) != 1) {
		int64_t n = precopy_dest_poll(t->d, 20);
		if (n < 0 && n != -EAGAIN) {
			t->r = n;
			break;
		}
	}
	return NULL;
}

static uint8_t *g, *dst;
static pid_t pa = -1, pb = -1;

static void reap_servers(void)
{
	int st;
	if (pa > 0 && kill(pa, SIGTERM) == 0)
		waitpid(pa, &st, 0);
	if (pb > 0 && kill(pb, SIGTERM) == 0)
		waitpid(pb, &st, 0);
}
static struct precopy_bitmap live;

static uint64_t copy_pages(struct precopy_engine *e)
{
	struct precopy_ram_run runs[16];
	uint64_t pages = 0;
	int64_t n;
	while ((n = precopy_engine_next_pages(e, runs, 16, 0)) > 0)
		for (int64_t i = 0; i < n; i++) {
			memcpy(dst + (runs[i].gpa - GPA), g + (runs[i].gpa - GPA), runs[i].pages * PS);
			pages += runs[i].pages;
		}
	if (n < 0)
		die("next_pages", precopy_engine_strerror(e));
	return pages;
}

/* One round A -> B; cancel: cancel after the drain. dma: wait for the
 * sample's DMA during pre-copy. */
static void round_(int k, struct precopy_vfio_user *a, struct precopy_vfio_user *b, int cancel, int dma)
{
	struct precopy_engine_vfio_user su = { .id = 1, .name = "sample-a", .dev = a };
	struct precopy_dest_vfio_user du = { .id = 1, .dev = b };
	struct precopy_ram_slot slot = { .gpa = GPA, .size = GSZ, .page_size = PS };
	struct precopy_engine_config cfg;
	struct precopy_dest_config dcfg;
	struct dthread t = { 0 };
	pthread_t th;
	int st[2], rp[2], err;
	uint8_t bar[BAR1], got[BAR1];
	uint32_t s;
	double t0 = now_s(), t1;

	for (unsigned i = 0; i < BAR1; i++)
		bar[i] = (uint8_t)(i * 13 + 5 + k);
	CK(precopy_vfio_user_region_write(a, 1, 0, bar, sizeof(bar)), a);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rp))
		die("socketpair", strerror(errno));
	precopy_engine_config_init(&cfg);
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_source = PRECOPY_RAM_BITMAP;
	cfg.ram_bitmap = &live;
	cfg.vfio_user = &su;
	cfg.nvfio_user = 1;
	cfg.stream_fd = st[0];
	cfg.rp_fd = rp[0];
	precopy_dest_config_init(&dcfg);
	dcfg.vfio_user = &du;
	dcfg.nvfio_user = 1;
	dcfg.stream_fd = st[1];
	dcfg.rp_fd = rp[1];
	struct precopy_engine *e = precopy_engine_new(&cfg, &err);
	struct precopy_dest *d = precopy_dest_new(&dcfg, &err);
	if (!e || !d)
		die("engine/dest new", strerror(-err));
	if (precopy_engine_start(e) < 0)
		die("engine start", precopy_engine_strerror(e));
	if (precopy_dest_start(d) < 0)
		die("dest start", precopy_dest_strerror(d));
	t.d = d;
	pthread_create(&th, NULL, dest_main, &t);
	if (precopy_engine_pump(e, 0) < 0)
		die("pump", precopy_engine_strerror(e));
	uint64_t first = copy_pages(e);
	/* pre-copy: sync, copy, pump; between the engine's calls the VMM
	 * answers the server's DMA */
	int iters = 0;
	uint64_t again = 0;
	if (cancel == 2) {
		/* cancelled in pre-copy: the sample asserts on PRE_COPY ->
		 * RUNNING that its whole state went out, and aborts */
		__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		int r = precopy_engine_cancel(e);
		printf("round %d: cancelled in pre-copy: engine %d %s\n", k, r, r ? precopy_engine_strerror(e) : "");
		r = precopy_vfio_user_get_state(a, &s);
		printf("round %d: A: get_state %d, state %u %s\n", k, r, r ? 0 : s, r ? precopy_vfio_user_error(a) : "");
		exit(r ? 3 : 0);
	}
	for (double end = now_s() + (dma ? 4.0 : 0.1); now_s() < end; iters++) {
		if (precopy_engine_sync(e) < 0)
			die("sync", precopy_engine_strerror(e));
		again += copy_pages(e);
		if (precopy_engine_pump(e, 0) < 0)
			die("pump", precopy_engine_strerror(e));
		CK(precopy_vfio_user_serve(a, 20), a);
		if (dma && g[0] == 'A' && g[GSZ / 2] == 'A' && g[3072] == 'D' && g[GSZ / 2 + 3072] == 'D') {
			dma = 0; /* both DMAs done: one more sync picks them up */
			end = now_s() + 0.05;
		}
	}
	if (dma)
		die("dma", "the sample's DMA did not come within 4 s");
	for (int i = 0; i < 500 && !precopy_dest_acked(d); i++)
		usleep(2000);
	t1 = now_s();
	if (precopy_engine_switchover(e) < 0)
		die("switchover", precopy_engine_strerror(e));
	uint64_t last = copy_pages(e);
	double sw = now_s() - t1;
	struct precopy_engine_dev_info info;
	precopy_engine_device_info(e, 0, &info);
	if (cancel) {
		pthread_join(th, NULL);
		int r = precopy_engine_cancel(e);
		printf("round %d: drained %llu device bytes, then cancelled: engine %d %s\n", k,
		       (unsigned long long)info.bytes_sent, r, r ? precopy_engine_strerror(e) : "");
		CK(precopy_vfio_user_get_state(a, &s), a);
		printf("round %d: A in state %u after the cancel\n", k, s);
		if (s != ST_RUNNING)
			die("cancel", "A is not back in RUNNING");
		r = precopy_dest_cancel(d);
		CK(precopy_vfio_user_get_state(b, &s), b);
		printf("round %d: destination cancel %d %s; B in state %u\n", k, r, r ? precopy_dest_strerror(d) : "", s);
		if (r || s != ST_RUNNING)
			die("dest cancel", "B is not back in RUNNING");
	} else {
		if (precopy_engine_complete(e) < 0)
			die("complete", precopy_engine_strerror(e));
		pthread_join(th, NULL);
		if (t.r)
			die("dest poll", precopy_dest_strerror(d));
		if (precopy_dest_complete(d) < 0)
			die("dest complete", precopy_dest_strerror(d));
		CK(precopy_vfio_user_get_state(b, &s), b);
		CK(precopy_vfio_user_region_read(b, 1, 0, got, sizeof(got)), b);
		int bar_eq = memcmp(got, bar, sizeof(got)) == 0, ram_eq = memcmp(dst, g, GSZ) == 0;
		printf("round %d: A -> B in %.3f s (switchover %.1f ms): %llu device bytes, RAM pages %llu first + %llu "
		       "again in %d pre-copy iterations + %llu last; B in state %u, BAR1 %s, guest RAM %s\n",
		       k, now_s() - t0, sw * 1e3, (unsigned long long)info.bytes_sent, (unsigned long long)first,
		       (unsigned long long)again, iters, (unsigned long long)last, s, bar_eq ? "equal" : "DIFFERS",
		       ram_eq ? "byte-equal" : "DIFFERS");
		if (!bar_eq || !ram_eq || s != ST_RUNNING)
			die("compare", "the destination differs");
		/* the next round starts from a running source */
		CK(precopy_vfio_user_set_state(a, ST_RUNNING), a);
	}
	precopy_engine_free(e);
	precopy_dest_free(d);
	close(st[0]);
	close(st[1]);
	close(rp[0]);
	close(rp[1]);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: %s LIBVFIO_USER_SAMPLE_SERVER [precopy]\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
	atexit(reap_servers); /* die() and the pre-copy cancel exit early */
	pa = spawn(argv[1], "/tmp/precopy-vu-engine-a.sock");
	pb = spawn(argv[1], "/tmp/precopy-vu-engine-b.sock");
	struct precopy_vfio_user *a = conn("/tmp/precopy-vu-engine-a.sock", "sample-a");
	struct precopy_vfio_user *b = conn("/tmp/precopy-vu-engine-b.sock", "sample-b");
	int gfd = memfd_create("guest", MFD_CLOEXEC);
	if (gfd < 0 || ftruncate(gfd, GSZ))
		die("memfd", strerror(errno));
	g = mmap(NULL, GSZ, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
	dst = calloc(1, GSZ);
	if (g == MAP_FAILED || !dst || precopy_bitmap_alloc(&live, PAGES, PRECOPY_NUMA_LOCAL))
		die("memory", strerror(errno));
	for (size_t i = 0; i < GSZ; i++)
		g[i] = (uint8_t)(i * 131 + i / PS) | 0x80; /* never 'A'..'D' */
	CK(precopy_vfio_user_dma_map(a, GPA, GSZ / 2, g, gfd, 0, 3), a);
	CK(precopy_vfio_user_dma_map(a, GPA + GSZ / 2, GSZ / 2, g + GSZ / 2, gfd, GSZ / 2, 3), a);
	/* the sample raises INTx before its DMA, and starts it by timer */
	int irq = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CK(precopy_vfio_user_set_irqs(a, 0, PRECOPY_VFIO_USER_IRQ_DATA_EVENTFD | PRECOPY_VFIO_USER_IRQ_ACTION_TRIGGER, 0,
				      1, &irq),
	   a);
	time_t when = time(NULL) + 2;
	CK(precopy_vfio_user_region_write(a, 0, 0, &when, sizeof(when)), a);

	round_(1, a, b, 0, 1);
	round_(2, a, b, argc > 2 && strcmp(argv[2], "precopy") == 0 ? 2 : 1, 0);
	round_(3, a, b, 0, 0);

	precopy_vfio_user_close(a);
	precopy_vfio_user_close(b);
	printf("done: three rounds, the second cancelled after its drain\n");
	return 0;
}
