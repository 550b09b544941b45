/* SPDX-License-Identifier: MIT */
/* The engines migrate devices served over vfio-user: two tests' servers
 * (tests/lib/vu_server.c) in forked processes, A on the source and B on
 * the destination, guest memory in a memfd DMA-mapped into A. The source
 * engine writes the stream into a socketpair, the destination engine
 * (its own thread) reads it and writes B's state; the test plays the
 * VMM, copying the RAM pages the source engine hands out into the
 * destination's guest memory. Checked: B loads the whole state (it checks
 * every byte at RESUMING -> STOP) and its BAR0 equals A's; guest RAM is
 * byte-equal, including pages the device wrote during pre-copy through
 * its mmap (the server's DMA log) and by DMA_WRITE messages (the client's
 * log), and those pages held other bytes after the first copy (the test
 * can fail). A server dying mid-drain fails the migration with the device
 * named, without a hang or SIGPIPE. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/jsonv.h"
#include "lib/standin.h"
#include "lib/vu_server.h"
#include "precopy/dest.h"
#include "precopy/engine.h"
#include "precopy/vfio.h"
#include "precopy/vfio_user.h"
#include "../vfio_user/vu_priv.h"

#define PS 4096u
#define GPA 0x100000ull
#define PAGES 1024u
#define GSZ ((size_t)PAGES * PS)
#define VU_ID 7u
#define ST_STOP 1u
#define ST_RUNNING 2u
#define ST_PRE_COPY 6u

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint8_t *guest(int *fd)
{
	*fd = memfd_create("vu-guest", MFD_CLOEXEC);
	cr_assert_geq(*fd, 0);
	cr_assert_eq(ftruncate(*fd, (off_t)GSZ), 0);
	void *p = mmap(NULL, GSZ, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

struct srv {
	pid_t pid;
	struct precopy_vfio_user *c;
};

/* A server and a handle on it; with g, the guest memory (memfd gfd)
 * DMA-mapped at GPA. */
static struct srv srv_start(const struct vu_server_cfg *cfg, const char *name, uint8_t *g, int gfd)
{
	struct srv s;
	struct precopy_vfio_user_opts o;
	char msg[256] = "";
	int fd, err = 0;

	s.pid = vu_server_spawn(cfg, &fd);
	cr_assert_gt(s.pid, 0);
	precopy_vfio_user_opts_init(&o);
	o.name = name;
	s.c = precopy_vfio_user_open(precopy_sys_real(), fd, &o, &err, msg, sizeof(msg));
	cr_assert_not_null(s.c, "open: %d %s", err, msg);
	if (g)
		cr_assert_eq(precopy_vfio_user_dma_map(s.c, GPA, GSZ, g, gfd, 0,
						       PRECOPY_VFIO_USER_DMA_READ | PRECOPY_VFIO_USER_DMA_WRITE),
			     0, "%s", precopy_vfio_user_error(s.c));
	return s;
}

static void srv_stop(struct srv *s)
{
	precopy_vfio_user_close(s->c);
	vu_server_wait(s->pid, 5000);
}

/* The device writes len bytes of val at gpa: go 1 by DMA_WRITE messages
 * (the client logs them), go 2 through its mmap (its DMA log). */
static void doorbell(struct precopy_vfio_user *c, uint64_t gpa, uint64_t len, uint8_t val, uint32_t go)
{
	uint8_t r[24] = { 0 };
	memcpy(r, &gpa, 8);
	memcpy(r + 8, &len, 8);
	r[16] = val;
	memcpy(r + 20, &go, 4);
	cr_assert_eq(precopy_vfio_user_region_write(c, 0, 0x100, r, sizeof(r)), 0, "%s",
		     precopy_vfio_user_error(c));
}

/* ---- the destination's thread ---------------------------------------------------- */

struct dthread {
	struct precopy_dest *d;
	int stop;   /* atomic: give up */
	int64_t r;  /* the last poll's failure, or 0 */
};

static void *dest_main(void *arg)
{
	struct dthread *t = arg;

	t->r = 0;
	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE) && precopy_dest_ended(t->d) != 1) {
		int64_t n = precopy_dest_poll(t->d, 20);

		if (n < 0 && n != -EAGAIN) {
			t->r = n;
			break;
		}
	}
	return NULL;
}

/* ---- the harness --------------------------------------------------------------------- */

#define MAXVU 4

struct mig {
	int n;
	struct srv a[MAXVU], b[MAXVU];
	uint8_t *g;        /* the source's guest RAM (a memfd, mapped into every A) */
	int gfd;
	uint8_t *dst;      /* the destination's guest RAM (what the VMM copied) */
	struct precopy_bitmap live;
	struct precopy_engine_vfio_user su[MAXVU];
	struct precopy_dest_vfio_user du[MAXVU];
	struct precopy_engine_config cfg;
	struct precopy_dest_config dcfg;
	struct precopy_ram_slot slot;
	struct precopy_engine *e;
	struct precopy_dest *d;
	int st[2], rp[2];
	struct dthread t;
	pthread_t th;
	struct precopy_sys_ops ops3; /* the real ops as version 3: no asynchronous queue */
	struct precopy_sys sys3;
	char drained[64];          /* how the switchover drained, from the engine's log */
};

/* mig_setup's engine drains one channel after another (no queue). */
static int g_serial;
/* migrate_n's servers refuse the twin socket: their DMA commands come on
 * the main socket, between the replies the drain waits for. */
static int g_no_twin;

static void on_log(void *ctx, int level, const char *msg)
{
	struct mig *m = ctx;
	const char *p = strstr(msg, "device bytes drained in");

	(void)level;
	if (p && strchr(p, '(')) {
		snprintf(m->drained, sizeof(m->drained), "%s", strchr(p, '(') + 1);
		m->drained[strcspn(m->drained, ")")] = 0;
	}
}

/* ---- an fd back-end beside the vfio-user devices (its data on the
 * asynchronous queue while the servers are polled) ---------------------------------- */

/* (tests/lib/standin.h) */

/* mig_setup adds these back-ends when set (source, destination). */
static struct standin *g_be_src, *g_be_dst;
static struct precopy_engine_backend g_be;
static struct precopy_dest_backend g_dbe;

static const char *const names[MAXVU] = { "vu-a", "vu-a1", "vu-a2", "vu-a3" };


/* New stream and return-path sockets, the stand-in back-ends when set,
 * and the engines on m's configurations. */
static void mig_connect(struct mig *m)
{
	int err;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m->st), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m->rp), 0);
	m->cfg.stream_fd = m->st[0];
	m->cfg.rp_fd = m->rp[0];
	m->dcfg.stream_fd = m->st[1];
	m->dcfg.rp_fd = m->rp[1];
	if (g_be_src) {
		g_be = (struct precopy_engine_backend){ .id = 90, .name = "standin", .ops = &standin_ops, .ctx = g_be_src,
							.state_bytes = g_be_src->size };
		g_dbe = (struct precopy_dest_backend){ .id = 90, .ops = &standin_ops, .ctx = g_be_dst };
		m->cfg.backends = &g_be;
		m->cfg.nbackends = 1;
		m->dcfg.backends = &g_dbe;
		m->dcfg.nbackends = 1;
	}
	m->e = precopy_engine_new(&m->cfg, &err);
	cr_assert_not_null(m->e, "engine_new: %d", err);
	m->d = precopy_dest_new(&m->dcfg, &err);
	cr_assert_not_null(m->d, "dest_new: %d", err);
}

/* n devices: server A[i] with acfg[i] on the source, B[i] on the destination. */
static void mig_setup(struct mig *m, int n, const struct vu_server_cfg *acfg, uint32_t flags, const uint64_t *hints)
{
	struct vu_server_cfg bcfg = { .seed = 1 };

	memset(m, 0, sizeof(*m));
	m->n = n;
	m->g = guest(&m->gfd);
	for (size_t i = 0; i < GSZ; i++)
		m->g[i] = (uint8_t)(i * 131 + i / PS);
	for (int i = 0; i < n; i++) {
		m->a[i] = srv_start(&acfg[i], names[i], m->g, m->gfd);
		m->b[i] = srv_start(&bcfg, "vu-b", NULL, -1);
		m->su[i] = (struct precopy_engine_vfio_user){ .id = VU_ID + (uint32_t)i, .name = names[i],
							      .dev = m->a[i].c, .flags = flags,
							      .stop_copy_hint = hints ? hints[i] : 0 };
		m->du[i] = (struct precopy_dest_vfio_user){ .id = VU_ID + (uint32_t)i, .dev = m->b[i].c };
	}
	m->dst = calloc(1, GSZ);
	cr_assert_not_null(m->dst);
	cr_assert_eq(precopy_bitmap_alloc(&m->live, PAGES, PRECOPY_NUMA_LOCAL), 0);
	m->slot = (struct precopy_ram_slot){ .gpa = GPA, .size = GSZ, .page_size = PS };
	precopy_engine_config_init(&m->cfg);
	m->cfg.slots = &m->slot;
	m->cfg.nslots = 1;
	m->cfg.ram_source = PRECOPY_RAM_BITMAP;
	m->cfg.ram_bitmap = &m->live;
	m->cfg.vfio_user = m->su;
	m->cfg.nvfio_user = (uint32_t)n;
	m->cfg.io_timeout_ns = 3000000000ull;
	m->cfg.log = on_log;
	m->cfg.log_ctx = m;
	m->cfg.log_level = PRECOPY_LOG_INFO;
	if (g_serial) {
		m->sys3 = *precopy_sys_real();
		m->ops3 = *m->sys3.ops;
		m->ops3.version = 3;
		m->sys3.ops = &m->ops3;
		m->cfg.sys = &m->sys3;
	}
	precopy_dest_config_init(&m->dcfg);
	m->dcfg.vfio_user = m->du;
	m->dcfg.nvfio_user = (uint32_t)n;
	m->dcfg.io_timeout_ns = 3000000000ull;
	mig_connect(m);
}

static void mig_start(struct mig *m)
{
	cr_assert_eq(precopy_engine_start(m->e), 0, "%s", precopy_engine_strerror(m->e));
	cr_assert_eq(precopy_dest_start(m->d), 0, "%s", precopy_dest_strerror(m->d));
	m->t.d = m->d;
	m->t.stop = 0;
	cr_assert_eq(pthread_create(&m->th, NULL, dest_main, &m->t), 0);
}

static void mig_join(struct mig *m)
{
	__atomic_store_n(&m->t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(m->th, NULL);
}

static void mig_free(struct mig *m)
{
	precopy_engine_free(m->e);
	precopy_dest_free(m->d);
	for (int i = 0; i < m->n; i++) {
		srv_stop(&m->a[i]);
		srv_stop(&m->b[i]);
	}
	for (int i = 0; i < 2; i++) {
		close(m->st[i]);
		close(m->rp[i]);
	}
	precopy_bitmap_free(&m->live);
	munmap(m->g, GSZ);
	close(m->gfd);
	free(m->dst);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The VMM's part of a RAM pass: copy every page the engine hands out. */
static uint64_t copy_pages(struct mig *m)
{
	struct precopy_ram_run runs[16];
	uint64_t pages = 0;
	int64_t n;

	while ((n = precopy_engine_next_pages(m->e, runs, 16, 0)) > 0)
		for (int64_t i = 0; i < n; i++) {
			memcpy(m->dst + (runs[i].gpa - GPA), m->g + (runs[i].gpa - GPA), runs[i].pages * PS);
			pages += runs[i].pages;
		}
	cr_assert_geq(n, 0);
	return pages;
}

static void init_sigpipe_default(void)
{
	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
}

TestSuite(engine_vfio_user, .init = init_sigpipe_default, .timeout = 60);

/* A whole migration of n devices; device 0's server writes guest memory
 * by mmap and by message during pre-copy. */
static void migrate_n(int n)
{
	struct vu_server_cfg acfg[MAXVU];
	struct mig m;
	uint8_t bar[MAXVU][256], got[256];
	struct precopy_engine_dev_info info;
	uint64_t mmap_off = 40 * PS + 100, msg_off = 300 * PS + 7, cpu_off = 600 * PS;
	double t0 = now_s();
	uint64_t dev_bytes = 0;

	/* 300000 pattern bytes (more for the others), 100000 of the stream
	 * readable in PRE_COPY; device 0's every 2nd MIG_DATA_READ first
	 * DMA_WRITEs 3 pages + 256 bytes */
	for (int i = 0; i < n; i++)
		acfg[i] = (struct vu_server_cfg){ .seed = 0x5eed + (uint64_t)i, .state_bytes = 300000 + 70000 * (uint64_t)i,
						  .precopy_bytes = 100000, .twin = !g_no_twin };
	acfg[0].dma_every = 2;
	acfg[0].dma_iova = GPA + 0x200000;
	acfg[0].dma_len = 0x3100;
	acfg[0].dma_val = 0x77;
	/* devices other than 0 say how big their STOP_COPY state is */
	uint64_t hints[MAXVU] = { 0 };
	for (int i = 1; i < n; i++)
		hints[i] = 24 + acfg[i].state_bytes + 256 - 100000;
	mig_setup(&m, n, acfg, 0, hints);
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < 256; k++)
			bar[i][k] = (uint8_t)(k * 7 + 3 + i);
		cr_assert_eq(precopy_vfio_user_region_write(m.a[i].c, 0, 0, bar[i], 256), 0);
	}
	mig_start(&m);

	/* pass 1: all RAM; the devices' initial state */
	cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_eq(copy_pages(&m), PAGES);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(precopy_engine_device_info(m.e, (uint32_t)i, &info), 0);
		cr_assert_eq(info.state, ST_PRE_COPY);
		cr_assert(info.initial_sent, "the first 0-byte read sends the initial-data marker");
		cr_assert_eq(info.bytes_sent, 100000, "PRE_COPY gave what the server makes readable");
		cr_assert_eq(info.tracking, PRECOPY_TRACK_DMA_LOG);
	}

	/* after the copy: the device writes by mmap (its log) and by message
	 * (the client's log), the vCPU writes a page (the live bitmap) */
	cr_assert_neq(m.dst[mmap_off], 0x42);
	cr_assert_neq(m.dst[msg_off], 0x43);
	doorbell(m.a[0].c, GPA + mmap_off, 2 * PS, 0x42, 2);
	doorbell(m.a[n - 1].c, GPA + msg_off, PS + 10, 0x43, 1);
	memset(m.g + cpu_off, 0x44, PS);
	precopy_bitmap_set_range(&m.live, cpu_off / PS, 1);
	cr_assert_gt(precopy_engine_sync(m.e), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
	/* 3 pages by mmap, 2 by message, 1 by the vCPU (and the server's
	 * DMA_WRITEs during MIG_DATA_READ, already copied once) */
	uint64_t pages = copy_pages(&m);
	cr_assert_geq(pages, 3 + 2 + 1, "pages copied in pass 2: %llu", (unsigned long long)pages);
	cr_assert_eq(m.dst[mmap_off], 0x42);
	cr_assert_eq(m.dst[msg_off + PS], 0x43);
	/* device 0 has no hint and was never drained: its size is a guess,
	 * and the decision says so */
	struct precopy_decision dec;
	char json[1024];
	cr_assert_eq(precopy_engine_decide(m.e, &dec), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_eq(dec.stop_copy_guessed, 1);
	cr_assert_gt(precopy_decision_json(&dec, json, sizeof(json)), 0);
	cr_assert(strstr(json, "\"stop_copy_guessed\":1"), "%s", json);
	cr_assert_eq(precopy_engine_device_info(m.e, 0, &info), 0);
	cr_assert(info.stop_copy_known);
	cr_assert_eq(info.stop_copy_bytes, 100000 + 65536, "pre-copy bytes plus a chunk");
	for (int i = 1; i < n; i++) {
		cr_assert_eq(precopy_engine_device_info(m.e, (uint32_t)i, &info), 0);
		cr_assert_eq(info.stop_copy_bytes, hints[i], "the hint");
	}
	{
		/* the statistics JSON says which size is guessed (schema 3) */
		static char sj[16384];
		char err[256];
		struct jv *o;
		const struct jv *devs;

		cr_assert_lt(precopy_engine_stats_json(m.e, sj, sizeof(sj)), (int)sizeof(sj));
		o = jv_parse(sj, err, sizeof(err));
		cr_assert_not_null(o, "%s: %s", err, sj);
		cr_assert_eq(jv_check_stats(o, 0, err, sizeof(err)), 0, "%s: %s", err, sj);
		devs = jv_get(o, "devices");
		cr_assert_eq(devs->nkids, (size_t)n);
		for (int i = 0; i < n; i++) {
			cr_assert_str_eq(jv_get(&devs->kids[i], "kind")->str, "vfio-user");
			cr_assert_eq(jv_get(&devs->kids[i], "stop-copy-guessed")->num, i == 0, "device %d: %s", i, sj);
		}
		jv_free(o);
	}
	copy_pages(&m);

	/* more DMA before the switchover: found by its final sync */
	doorbell(m.a[0].c, GPA + 900 * PS, PS, 0x45, 1);
	doorbell(m.a[n - 1].c, GPA + 901 * PS, PS, 0x46, 2);
	/* wait for the destination's ACK (the initial data loaded) */
	for (int i = 0; i < 500 && !precopy_dest_acked(m.d); i++)
		usleep(2000);
	cr_assert_eq(precopy_dest_acked(m.d), 1);
	cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_eq(precopy_engine_switchover(m.e), 0, "%s", precopy_engine_strerror(m.e));
	copy_pages(&m);
	cr_assert_eq(precopy_engine_complete(m.e), 0, "%s", precopy_engine_strerror(m.e));
	pthread_join(m.th, NULL);
	cr_assert_eq(m.t.r, 0, "dest: %s", precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_dest_complete(m.d), 0, "%s", precopy_dest_strerror(m.d));

	/* each B took its whole stream (it checks every byte at RESUMING ->
	 * STOP) and runs with its A's BAR0 */
	for (int i = 0; i < n; i++) {
		uint32_t st;

		cr_assert_eq(precopy_vfio_user_get_state(m.b[i].c, &st), 0);
		cr_assert_eq(st, ST_RUNNING);
		cr_assert_eq(precopy_vfio_user_region_read(m.b[i].c, 0, 0, got, sizeof(got)), 0);
		cr_assert_arr_eq(got, bar[i], sizeof(got));
		cr_assert_eq(precopy_vfio_user_get_state(m.a[i].c, &st), 0);
		cr_assert_eq(st, ST_STOP);
		cr_assert_eq(precopy_engine_device_info(m.e, (uint32_t)i, &info), 0);
		cr_assert_eq(info.bytes_sent, 24 + acfg[i].state_bytes + 256, "the whole device stream");
		dev_bytes += info.bytes_sent;
	}
	/* guest RAM byte-equal, DMA pages included */
	cr_assert_eq(m.dst[900 * PS], 0x45);
	cr_assert_eq(m.dst[901 * PS], 0x46);
	cr_assert_eq(m.dst[0x200000], 0x77, "the server's DMA_WRITE during MIG_DATA_READ");
	cr_assert_eq(memcmp(m.dst, m.g, GSZ), 0, "guest RAM differs");
	cr_assert(g_serial ? strncmp(m.drained, "one device after another", 24) == 0
			   : strncmp(m.drained, "concurrently", 12) == 0,
		  "drained: %s", m.drained);
	cr_log_info("vfio-user %d device(s) A -> B: %u RAM pages, %llu device bytes, %.3f s, drained %s", n, PAGES,
		    (unsigned long long)dev_bytes, now_s() - t0, m.drained);
	mig_free(&m);
}

Test(engine_vfio_user, migrates_state_and_dma_dirty_pages)
{
	migrate_n(1);
}

Test(engine_vfio_user, migrates_four_devices)
{
	migrate_n(4);
}

Test(engine_vfio_user, migrates_four_devices_without_twin_socket)
{
	g_no_twin = 1;
	migrate_n(4);
}

Test(engine_vfio_user, migrates_four_devices_serially)
{
	g_serial = 1; /* no asynchronous queue: the serial drain */
	migrate_n(4);
}

/* The device writes guest RAM after the first copy, by its mmap (its DMA
 * log) and by DMA_WRITE messages (the client's log), then the migration
 * runs to the end. With the logs merged the destination's RAM is
 * byte-equal; with them ignored (the negative control: the tests-only
 * switch precopy__vu_test_ignore_log) it must differ exactly there. */
static void dma_after_copy(int ignore)
{
	struct vu_server_cfg acfg = { .seed = 21, .state_bytes = 30000, .precopy_bytes = 10000, .twin = 1 };
	struct mig m;
	uint64_t mmap_off = 40 * PS, msg_off = 300 * PS;
	size_t diff = 0, outside = 0;

	precopy__vu_test_ignore_log = ignore;
	mig_setup(&m, 1, &acfg, 0, NULL);
	mig_start(&m);
	cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_eq(copy_pages(&m), PAGES);
	doorbell(m.a[0].c, GPA + mmap_off, 2 * PS, 0x42, 2);
	doorbell(m.a[0].c, GPA + msg_off, PS, 0x43, 1);
	cr_assert_geq(precopy_engine_sync(m.e), 0, "%s", precopy_engine_strerror(m.e));
	copy_pages(&m);
	for (int i = 0; i < 500 && !precopy_dest_acked(m.d); i++)
		usleep(2000);
	cr_assert_eq(precopy_engine_switchover(m.e), 0, "%s", precopy_engine_strerror(m.e));
	copy_pages(&m);
	cr_assert_eq(precopy_engine_complete(m.e), 0, "%s", precopy_engine_strerror(m.e));
	pthread_join(m.th, NULL);
	cr_assert_eq(m.t.r, 0, "dest: %s", precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_dest_complete(m.d), 0, "%s", precopy_dest_strerror(m.d));
	for (size_t i = 0; i < GSZ; i++) {
		int dev_page = (i >= mmap_off && i < mmap_off + 2 * PS) || (i >= msg_off && i < msg_off + PS);

		diff += m.dst[i] != m.g[i];
		outside += !dev_page && m.dst[i] != m.g[i];
	}
	cr_log_info("DMA log %s: %zu bytes of guest RAM differ", ignore ? "ignored" : "merged", diff);
	if (ignore) {
		/* all but the few bytes that held 0x42/0x43 before */
		cr_assert_gt(diff, 3 * PS - 100, "the device's 3 pages (2 by mmap, 1 by message): %zu", diff);
		cr_assert_eq(outside, 0, "and nothing else");
		cr_assert_neq(m.dst[mmap_off], 0x42);
		cr_assert_neq(m.dst[msg_off], 0x43);
	} else {
		cr_assert_eq(diff, 0, "guest RAM differs");
	}
	mig_free(&m);
}

Test(engine_vfio_user, dma_after_first_copy_arrives)
{
	dma_after_copy(0);
}

Test(engine_vfio_user, negative_control_ignored_dma_log_loses_pages)
{
	dma_after_copy(1);
}

/* The switchover of n devices whose servers take delay_us per read of
 * 64 KiB (1 MiB of state each): its wall time in seconds, after checking
 * the migration whole (every B loads its stream, RAM byte-equal). */
static double drain_time(int n, unsigned delay_us, int *max_inflight)
{
	struct vu_server_cfg acfg[MAXVU];
	struct mig m;
	double t0, t;
	_Atomic int *shared = mmap(NULL, 2 * sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(shared, MAP_FAILED);
	shared[0] = shared[1] = 0;
	for (int i = 0; i < n; i++)
		acfg[i] = (struct vu_server_cfg){ .seed = 0xd7a1 + (uint64_t)i, .state_bytes = 1u << 20,
						  .read_delay_us = delay_us, .twin = 1, .inflight = &shared[0],
						  .inflight_max = &shared[1] };
	mig_setup(&m, n, acfg, 0, NULL);
	mig_start(&m);
	copy_pages(&m);
	t0 = now_s();
	cr_assert_eq(precopy_engine_switchover(m.e), 0, "%s", precopy_engine_strerror(m.e));
	t = now_s() - t0;
	copy_pages(&m);
	cr_assert_eq(precopy_engine_complete(m.e), 0, "%s", precopy_engine_strerror(m.e));
	pthread_join(m.th, NULL);
	cr_assert_eq(m.t.r, 0, "dest: %s", precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_dest_complete(m.d), 0, "%s", precopy_dest_strerror(m.d));
	for (int i = 0; i < n; i++) {
		uint32_t st;

		cr_assert_eq(precopy_vfio_user_get_state(m.b[i].c, &st), 0);
		cr_assert_eq(st, ST_RUNNING, "B %d took its whole stream", i);
	}
	cr_assert_eq(memcmp(m.dst, m.g, GSZ), 0, "guest RAM differs");
	cr_assert(g_serial ? strncmp(m.drained, "one device after another", 24) == 0
			   : strncmp(m.drained, "concurrently", 12) == 0,
		  "drained: %s", m.drained);
	mig_free(&m);
	*max_inflight = shared[1];
	munmap((void *)shared, 2 * sizeof(*shared));
	return t;
}

/* Four servers that each take 10 ms per 64 KiB read (17 reads with data)
 * have requests in flight at the same time: the servers count the reads
 * they are answering in shared memory, and the most at once must be more
 * than one (serially it is exactly one; the times are reported, and
 * perf/bench-drain measures them). */
Test(engine_vfio_user, drains_servers_concurrently)
{
	int max1, max4;
	double one = drain_time(1, 10000, &max1), four = drain_time(MAXVU, 10000, &max4);

	cr_log_info("vfio-user drain, 1 MiB per device at 10 ms per 64 KiB read: 1 device %.0f ms, 4 devices %.0f ms "
		    "(ratio to the sum %.2f), at most %d reads answered at once",
		    one * 1e3, four * 1e3, four / (MAXVU * one), max4);
	cr_assert_eq(max1, 1, "one server answers one read at a time");
	cr_assert_geq(max4, 2, "4 servers: at most %d read answered at once: not overlapped", max4);
}

/* Two servers at 10 ms per 64 KiB read and an fd back-end delivering
 * 1 MiB at 6 MiB/s (its pipe read on the queue): all three overlap, so
 * the switchover takes about as long as one server alone (>= 170 ms),
 * not the servers' sum beside the back-end (one request at a time: about
 * twice that); the back-end's bytes arrive whole and in order. */
Test(engine_vfio_user, drains_servers_beside_an_fd_backend)
{
	struct standin src = { .size = 1u << 20, .rate = 6u << 20, .fd = -1 }, dst = { .fd = -1 };
	int max1, max2;
	double one = drain_time(1, 10000, &max1), t;

	g_be_src = &src;
	g_be_dst = &dst;
	t = drain_time(2, 10000, &max2);
	cr_log_info("vfio-user drain beside an fd back-end: 1 server alone %.0f ms, 2 servers + 1 back-end %.0f ms, "
		    "at most %d reads answered at once",
		    one * 1e3, t * 1e3, max2);
	cr_assert_eq(dst.result, 0, "the back-end's state arrived intact");
	cr_assert_eq(dst.got, src.size);
	cr_assert_eq(max2, 2, "2 servers beside the back-end: at most %d read answered at once", max2);
}

/* The control: without the asynchronous queue the drain is serial and
 * takes the sum (so the test above can fail). */
Test(engine_vfio_user, drains_servers_serially_without_queue)
{
	double one, four;
	int max1, max4;

	g_serial = 1;
	one = drain_time(1, 10000, &max1);
	four = drain_time(MAXVU, 10000, &max4);
	cr_log_info("vfio-user serial drain: 1 device %.0f ms, 4 devices %.0f ms", one * 1e3, four * 1e3);
	cr_assert_eq(max4, 1, "serial: %d reads answered at once", max4);
	cr_assert_geq(four, 0.9 * MAXVU * 0.170, "serial: at least the sum of the delays (%.3f s)", four);
}

Test(engine_vfio_user, server_dies_mid_drain)
{
	/* no pump: the STOP_COPY drain makes reads 1..; device 0's 3rd sends
	 * half its reply and its server exits; device 1 is fine */
	struct vu_server_cfg acfg[2] = { { .seed = 9, .state_bytes = 300000, .die_at = 3, .twin = 1 },
					 { .seed = 10, .state_bytes = 300000, .twin = 1 } };
	struct mig m;
	struct precopy_engine_dev_info info;
	uint32_t st;
	int fds = count_fds();
	double t0;

	mig_setup(&m, 2, acfg, 0, NULL);
	mig_start(&m);
	copy_pages(&m);
	t0 = now_s();
	int r = precopy_engine_switchover(m.e);
	cr_assert_lt(r, 0, "the drain fails");
	cr_assert_lt(now_s() - t0, 10.0, "no hang");
	const char *msg = precopy_engine_strerror(m.e);
	cr_assert(strstr(msg, "device 7 (vu-a)"), "names the device: %s", msg);
	cr_assert(strstr(msg, "MIG_DATA_READ"), "names the step: %s", msg);
	cr_log_info("server died mid-drain: %s", msg);
	cr_assert_eq(precopy_engine_device_info(m.e, 0, &info), 0);
	cr_assert_lt(info.err, 0);
	/* the other device is back to RUNNING */
	cr_assert_eq(precopy_vfio_user_get_state(m.a[1].c, &st), 0);
	cr_assert_eq(st, ST_RUNNING);
	mig_join(&m);
	precopy_dest_cancel(m.d);
	mig_free(&m);
	cr_assert_eq(count_fds(), fds, "no fd left open");
}

Test(engine_vfio_user, server_killed_mid_precopy)
{
	struct vu_server_cfg acfg = { .seed = 11, .state_bytes = 300000, .precopy_bytes = 200000, .twin = 1 };
	struct mig m;
	int fds = count_fds();
	double t0;

	mig_setup(&m, 1, &acfg, 0, NULL);
	mig_start(&m);
	cr_assert_gt(precopy_engine_pump(m.e, 65536), 0, "%s", precopy_engine_strerror(m.e));
	kill(m.a[0].pid, SIGKILL);
	vu_server_wait(m.a[0].pid, 5000);
	t0 = now_s();
	int64_t r = precopy_engine_pump(m.e, 0);
	cr_assert_lt(r, 0, "the pump fails");
	cr_assert_lt(now_s() - t0, 10.0, "no hang");
	const char *msg = precopy_engine_strerror(m.e);
	cr_assert(strstr(msg, "device 7 (vu-a)"), "names the device: %s", msg);
	cr_log_info("server killed mid-pre-copy: %s", msg);
	mig_join(&m);
	precopy_dest_cancel(m.d);
	mig_free(&m);
	cr_assert_eq(count_fds(), fds, "no fd left open");
}

/* ---- cancel in every phase, then migrate again ---------------------------------- */

enum phase { PH_SETUP, PH_PRECOPY, PH_WAIT_ACK, PH_DRAIN, PH_AFTER_DRAIN };
static const char *const phase_names[] = { "setup", "pre-copy", "wait-for-ack", "drain", "after the drain" };

struct interrupter {
	struct precopy_engine *e;
	unsigned after_ms;
};

static void *interrupt_main(void *arg)
{
	struct interrupter *t = arg;

	usleep(t->after_ms * 1000u);
	precopy_engine_interrupt(t->e);
	return NULL;
}

/* A new engine and destination on new stream sockets, same servers. */
static void mig_renew(struct mig *m)
{
	precopy_engine_free(m->e);
	precopy_dest_free(m->d);
	for (int i = 0; i < 2; i++) {
		close(m->st[i]);
		close(m->rp[i]);
	}
	mig_connect(m);
}

/* Cancel a migration of one device in phase ph, check both servers are
 * back in RUNNING, then migrate again with the same servers A and B: B
 * loads the whole stream (it checks every byte), its BAR0 is A's, guest
 * RAM byte-equal. */
static void cancel_in(enum phase ph)
{
	struct vu_server_cfg acfg = { .seed = 3 + ph, .state_bytes = 300000, .precopy_bytes = 100000, .twin = 1 };
	struct mig m;
	uint8_t bar[256], got[256];
	uint32_t st;
	int r, fds = count_fds();

	if (ph == PH_DRAIN) {
		/* a drain of >= 170 ms, interrupted at 40 ms */
		acfg.state_bytes = 1u << 20;
		acfg.precopy_bytes = 0;
		acfg.read_delay_us = 10000;
	}
	mig_setup(&m, 1, &acfg, 0, NULL);
	for (int k = 0; k < 256; k++)
		bar[k] = (uint8_t)(k * 5 + ph);
	cr_assert_eq(precopy_vfio_user_region_write(m.a[0].c, 0, 0, bar, 256), 0);
	if (ph == PH_WAIT_ACK) {
		/* the destination reads nothing until the source cancels: the
		 * initial data is out, its ACK cannot come */
		cr_assert_eq(precopy_engine_start(m.e), 0, "%s", precopy_engine_strerror(m.e));
		cr_assert_eq(precopy_dest_start(m.d), 0, "%s", precopy_dest_strerror(m.d));
	} else {
		mig_start(&m);
	}
	switch (ph) {
	case PH_SETUP:
		break;
	case PH_PRECOPY:
		/* part of the initial data: B holds half a stream */
		cr_assert_eq(precopy_engine_pump(m.e, 50000), 50000, "%s", precopy_engine_strerror(m.e));
		copy_pages(&m);
		for (int i = 0; i < 100; i++)
			usleep(1000);
		break;
	case PH_WAIT_ACK: {
		struct precopy_decision dec;
		struct precopy_engine_dev_info info;

		cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
		copy_pages(&m);
		cr_assert_eq(precopy_engine_device_info(m.e, 0, &info), 0);
		cr_assert(info.initial_sent);
		cr_assert_eq(precopy_engine_decide(m.e, &dec), 0, "%s", precopy_engine_strerror(m.e));
		cr_assert_neq(dec.action, PRECOPY_SWITCHOVER, "no ACK yet");
		break;
	}
	case PH_DRAIN: {
		struct interrupter it = { m.e, 40 };
		pthread_t th;
		double t0 = now_s();

		copy_pages(&m);
		cr_assert_eq(pthread_create(&th, NULL, interrupt_main, &it), 0);
		r = precopy_engine_switchover(m.e);
		pthread_join(th, NULL);
		cr_assert_eq(r, -ECANCELED, "switchover %d: %s", r, precopy_engine_strerror(m.e));
		/* -ECANCELED says the interrupt cut the drain; the time is
		 * reported (a loaded runner stretches it), bounded only
		 * against a hang */
		cr_log_info("interrupted drain: %.0f ms", (now_s() - t0) * 1e3);
		cr_assert_lt(now_s() - t0, 10.0, "no hang");
		break;
	}
	case PH_AFTER_DRAIN:
		copy_pages(&m);
		cr_assert_eq(precopy_engine_switchover(m.e), 0, "%s", precopy_engine_strerror(m.e));
		/* B takes the whole stream, then the source cancels anyway */
		pthread_join(m.th, NULL);
		cr_assert_eq(precopy_dest_ended(m.d), 1, "dest: %s", precopy_dest_strerror(m.d));
		break;
	}
	r = precopy_engine_cancel(m.e);
	cr_assert_eq(r, 0, "%s: cancel: %s", phase_names[ph], precopy_engine_strerror(m.e));
	cr_assert_eq(precopy_vfio_user_get_state(m.a[0].c, &st), 0);
	cr_assert_eq(st, ST_RUNNING, "%s: A back in RUNNING, in %u", phase_names[ph], st);
	if (ph == PH_WAIT_ACK) {
		/* the destination now reads what the source sent */
		for (int i = 0; i < 20; i++)
			precopy_dest_poll(m.d, 5);
	} else if (ph != PH_AFTER_DRAIN) {
		mig_join(&m);
	}
	r = precopy_dest_cancel(m.d);
	cr_assert_eq(r, 0, "%s: dest cancel: %s", phase_names[ph], precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_vfio_user_get_state(m.b[0].c, &st), 0);
	cr_assert_eq(st, ST_RUNNING, "%s: B out of RESUMING, in %u", phase_names[ph], st);

	/* again, with the same servers, to the end */
	mig_renew(&m);
	mig_start(&m);
	cr_assert_geq(precopy_engine_pump(m.e, 0), 0, "%s", precopy_engine_strerror(m.e));
	cr_assert_eq(copy_pages(&m), PAGES, "the new migration copies all RAM");
	for (int i = 0; i < 500 && acfg.precopy_bytes && !precopy_dest_acked(m.d); i++)
		usleep(2000);
	cr_assert_eq(precopy_engine_switchover(m.e), 0, "%s", precopy_engine_strerror(m.e));
	copy_pages(&m);
	cr_assert_eq(precopy_engine_complete(m.e), 0, "%s", precopy_engine_strerror(m.e));
	pthread_join(m.th, NULL);
	cr_assert_eq(m.t.r, 0, "dest: %s", precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_dest_complete(m.d), 0, "%s", precopy_dest_strerror(m.d));
	cr_assert_eq(precopy_vfio_user_get_state(m.b[0].c, &st), 0);
	cr_assert_eq(st, ST_RUNNING);
	cr_assert_eq(precopy_vfio_user_region_read(m.b[0].c, 0, 0, got, sizeof(got)), 0);
	cr_assert_arr_eq(got, bar, sizeof(got), "B runs with A's BAR0");
	cr_assert_eq(memcmp(m.dst, m.g, GSZ), 0, "guest RAM differs");
	cr_log_info("cancelled in %s, then migrated again: B loaded the whole stream, RAM byte-equal",
		    phase_names[ph]);
	mig_free(&m);
	cr_assert_eq(count_fds(), fds, "no fd left open");
}

Test(engine_vfio_user, cancel_in_setup_then_migrate_again)
{
	cancel_in(PH_SETUP);
}

Test(engine_vfio_user, cancel_in_precopy_then_migrate_again)
{
	cancel_in(PH_PRECOPY);
}

Test(engine_vfio_user, cancel_waiting_for_ack_then_migrate_again)
{
	cancel_in(PH_WAIT_ACK);
}

Test(engine_vfio_user, cancel_in_drain_then_migrate_again)
{
	cancel_in(PH_DRAIN);
}

Test(engine_vfio_user, cancel_after_drain_then_migrate_again)
{
	cancel_in(PH_AFTER_DRAIN);
}

Test(engine_vfio_user, config_versions_and_checks)
{
	struct precopy_engine_config c;
	struct precopy_engine_vfio_user u = { .id = 7 };
	struct precopy_ram_slot slot = { .gpa = 0, .size = GSZ, .page_size = PS };
	struct precopy_bitmap live;
	char msg[200];

	cr_assert_eq(precopy_bitmap_alloc(&live, PAGES, PRECOPY_NUMA_LOCAL), 0);
	precopy_engine_config_init(&c);
	cr_assert_eq(c.version, 3);
	c.slots = &slot;
	c.nslots = 1;
	c.ram_source = PRECOPY_RAM_BITMAP;
	c.ram_bitmap = &live;
	c.stream_fd = 1;
	c.vfio_user = &u;
	c.nvfio_user = 1;
	cr_assert_eq(precopy_engine_config_check(&c, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "vfio_user[0].dev"), "%s", msg);
	/* a version 2 struct ends before vfio_user: not read */
	c.version = 2;
	cr_assert_eq(precopy_engine_config_check(&c, msg, sizeof(msg)), 0, "%s", msg);
	c.version = 3;
	c.nvfio_user = 0;
	cr_assert_eq(precopy_engine_config_check(&c, msg, sizeof(msg)), 0, "%s", msg);
	precopy_bitmap_free(&live);

	struct precopy_dest_config dc;
	struct precopy_dest_vfio_user du = { .id = 7 };
	precopy_dest_config_init(&dc);
	cr_assert_eq(dc.version, 3);
	dc.rp_fd = 1;
	dc.vfio_user = &du;
	dc.nvfio_user = 1;
	cr_assert_eq(precopy_dest_config_check(&dc, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "vfio_user[0].dev"), "%s", msg);
	dc.version = 2;
	cr_assert_eq(precopy_dest_config_check(&dc, msg, sizeof(msg)), 0, "%s", msg);
}
