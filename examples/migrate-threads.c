/* SPDX-License-Identifier: MIT */
/* examples/migrate-threads.c — a whole live migration inside one process,
 * as a VMM embeds libprecopy: the source engine and the destination engine
 * run in two threads over socketpairs, while a "vCPU" thread keeps writing
 * to a malloc'd guest.
 *
 *  - Guest RAM: 64 MiB of malloc'd memory. The vCPU thread writes random
 *    pages and marks each in a live bitmap with precopy_bitmap_set_atomic()
 *    (the engine's PRECOPY_RAM_BITMAP mode: a VMM that tracks its own
 *    writes, or a simulator, instead of KVM's log).
 *  - The VMM moves RAM itself over its own channel (here a third
 *    socketpair: a 16-byte gpa/length header, then the page bytes); the
 *    engine says which pages are dirty and when to stop.
 *  - The device-state stream and the return path are socketpairs given to
 *    the engines as fds. The migrated device is an emulated device of the
 *    VMM ("serial0", 3000 bytes of state) reached as an fd-based back-end
 *    (precopy/backend.h): its state moves inside the downtime window,
 *    through a pipe the engine creates. A VFIO device would be listed in
 *    the configs' `devices` instead.
 *  - The engine's decisions are obeyed: THROTTLE slows the vCPU thread,
 *    SWITCHOVER stops it, then the last dirty pages and the device state
 *    move, the destination completes and the source completes.
 * At the end the destination's RAM and device state must equal the
 * source's byte for byte.
 *
 * Build: cc -pthread migrate-threads.c $(pkg-config --cflags --libs libprecopy)
 * Exit status: 0 migrated and equal, 1 otherwise (the message says which
 * step failed). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <precopy.h>

#define PAGE 4096u
#define GUEST_BYTES (64u << 20)
#define GUEST_PAGES (GUEST_BYTES / PAGE)
#define DEV_ID 1u          /* the emulated device's id in the stream */
#define DEV_STATE 3000u    /* bytes of its state */
#define MAX_ITERATIONS 200 /* give up rather than iterate forever */

static uint64_t now_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 and len bytes read, -EPIPE at end of file first, or -errno. */
static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- the guest and its vCPU --------------------------------------------- */

static uint8_t *src_ram, *dst_ram;
static struct precopy_bitmap live; /* the vCPU's dirty marks */
static atomic_int vcpu_stop;
static atomic_uint vcpu_throttle;  /* percent of the time the vCPU sleeps */
static atomic_ulong vcpu_writes;

/* Writes 64 pages per millisecond of running time (256 MiB/s), each write
 * followed by its mark: a page is marked only after its new bytes are in
 * place, so a copy that follows the harvest of the mark sees them. */
static void *vcpu(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)arg;
	while (!atomic_load(&vcpu_stop)) {
		unsigned throttle = atomic_load(&vcpu_throttle);
		struct timespec run = { 0, 1000000 }, rest;

		for (int i = 0; i < 64; i++) {
			uint64_t page;

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			page = x % GUEST_PAGES;
			memset(src_ram + page * PAGE + (x >> 40) % (PAGE - 64), (int)(x >> 56), 64);
			precopy_bitmap_set_atomic(&live, page);
		}
		atomic_fetch_add(&vcpu_writes, 64);
		/* throttled to t%: sleep t/(100-t) of the running time as well */
		rest.tv_sec = 0;
		rest.tv_nsec = throttle >= 100 ? 999999999 : (long)run.tv_nsec * (long)throttle / (long)(100 - throttle);
		nanosleep(&run, NULL); /* stands for the guest's other work */
		if (rest.tv_nsec)
			nanosleep(&rest, NULL);
	}
	return NULL;
}

/* ---- the emulated device, as an fd-based back-end ------------------------ */

struct emu_dev {
	uint8_t state[DEV_STATE];
	atomic_int running;  /* its queues (source: until switchover) */
	int load_fd;         /* destination: the pipe it loads from */
	int result;          /* the transfer's verdict */
	size_t loaded;
};

static int emu_queues_running(void *ctx)
{
	return atomic_load(&((struct emu_dev *)ctx)->running);
}

/* SAVE: the whole state fits a pipe (64 KiB), so it is written at once;
 * a back-end in another process writes it from there. LOAD: keep the fd,
 * read it at check_state, once the engine has closed its end. */
static int emu_set_state_fd(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply_fd)
{
	struct emu_dev *d = ctx;

	(void)phase;
	*reply_fd = -1;
	if (atomic_load(&d->running)) {
		close(fd);
		return -EBUSY;
	}
	if (dir == PRECOPY_BACKEND_SAVE) {
		d->result = write_full(fd, d->state, sizeof(d->state));
		close(fd);
		return d->result;
	}
	d->load_fd = fd;
	d->loaded = 0;
	return 0;
}

static int emu_check_state(void *ctx)
{
	struct emu_dev *d = ctx;

	if (d->load_fd < 0)
		return d->result; /* SAVE */
	for (;;) {
		uint8_t buf[4096];
		ssize_t n = read(d->load_fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			d->result = n < 0 ? -errno : d->loaded == sizeof(d->state) ? 0 : -EIO;
			break;
		}
		if (d->loaded + (size_t)n > sizeof(d->state)) {
			d->result = -EIO; /* more state than this device has */
			break;
		}
		memcpy(d->state + d->loaded, buf, (size_t)n);
		d->loaded += (size_t)n;
	}
	close(d->load_fd);
	d->load_fd = -1;
	return d->result;
}

static const struct precopy_backend_ops emu_ops = {
	.version = PRECOPY_BACKEND_OPS_VERSION,
	.queues_running = emu_queues_running,
	.set_state_fd = emu_set_state_fd,
	.check_state = emu_check_state,
};

/* ---- the destination thread ---------------------------------------------- */

struct ram_hdr {
	uint64_t gpa, len; /* len 0: no more RAM */
};

struct dest_side {
	struct precopy_dest *d;
	int stream_fd, ram_fd;
	int err;           /* the first failure, or 0 */
	const char *step;
	uint64_t ram_bytes;
};

/* Takes what arrives on either channel until the stream ended and the RAM
 * channel said "no more". */
static void *destination(void *arg)
{
	struct dest_side *ds = arg;
	int ram_done = 0, r;

	while (!ram_done || precopy_dest_ended(ds->d) != 1) {
		struct pollfd p[2] = { { .fd = ds->stream_fd, .events = POLLIN },
				       { .fd = ds->ram_fd, .events = ram_done ? 0 : POLLIN } };

		r = poll(p, 2, 10000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ds->err = r ? -errno : -ETIMEDOUT;
			ds->step = "waiting for the source";
			return NULL;
		}
		if (p[0].revents) {
			int64_t n = precopy_dest_poll(ds->d, 0);

			if (n < 0 && n != -EAGAIN) {
				ds->err = (int)n;
				ds->step = "loading the device-state stream";
				return NULL;
			}
			if (n == 0 && precopy_dest_ended(ds->d) != 1) {
				ds->err = -EPIPE;
				ds->step = "the device-state stream closed early";
				return NULL;
			}
		}
		if (p[1].revents) {
			struct ram_hdr h;

			if ((r = read_full(ds->ram_fd, &h, sizeof(h))) < 0 ||
			    (h.len && (h.gpa > GUEST_BYTES || h.len > GUEST_BYTES - h.gpa ? (r = -EPROTO) :
				       (r = read_full(ds->ram_fd, dst_ram + h.gpa, h.len))) < 0)) {
				ds->err = r;
				ds->step = "receiving RAM";
				return NULL;
			}
			ds->ram_bytes += h.len;
			ram_done = !h.len;
		}
	}
	return NULL;
}

/* ---- the source: the VMM's migration thread ------------------------------ */

/* Hands out the dirty pages and sends them on the RAM channel; returns the
 * bytes sent, or -errno. max_pages bounds one call (0: everything). */
static int64_t send_dirty(struct precopy_engine *e, int ram_fd, uint64_t max_pages)
{
	struct precopy_ram_run runs[64];
	int64_t n, bytes = 0;
	int r;

	while ((n = precopy_engine_next_pages(e, runs, 64, max_pages)) > 0) {
		for (int64_t i = 0; i < n; i++) {
			struct ram_hdr h = { runs[i].gpa, runs[i].pages * PAGE };

			if ((r = write_full(ram_fd, &h, sizeof(h))) < 0 ||
			    (r = write_full(ram_fd, src_ram + h.gpa, h.len)) < 0)
				return r;
			bytes += (int64_t)h.len;
		}
		if (max_pages)
			break;
	}
	return n < 0 ? n : bytes;
}

static int fail(const char *step, int err, const char *detail)
{
	fprintf(stderr, "migrate-threads: %s: %s%s%s\n", step, strerror(-err), detail && *detail ? ": " : "",
		detail ? detail : "");
	return 1;
}

int main(void)
{
	int st[2], rp[2], ram[2], err, r;
	struct emu_dev src_dev = { .load_fd = -1 }, dst_dev = { .load_fd = -1 };
	struct precopy_ram_slot slot = { .gpa = 0, .size = GUEST_BYTES, .page_size = PAGE };
	struct precopy_engine_backend sbe = { .id = DEV_ID, .name = "serial0", .ops = &emu_ops,
					      .ctx = &src_dev, .state_bytes = DEV_STATE };
	struct precopy_dest_backend dbe = { .id = DEV_ID, .ops = &emu_ops, .ctx = &dst_dev };
	struct precopy_engine_config cfg;
	struct precopy_dest_config dcfg;
	struct precopy_engine *e;
	struct dest_side ds = { 0 };
	struct precopy_engine_stats stats;
	struct precopy_decision d = { 0 };
	pthread_t vcpu_thr, dest_thr;
	uint64_t t_stop, t_done;
	char json[1024];
	int it;

	/* a peer that went away must be an EPIPE, not the end of the VMM */
	signal(SIGPIPE, SIG_IGN);

	src_ram = aligned_alloc(PAGE, GUEST_BYTES);
	dst_ram = calloc(1, GUEST_BYTES);
	if (!src_ram || !dst_ram)
		return fail("allocating the guest", -ENOMEM, NULL);
	for (size_t i = 0; i < GUEST_BYTES; i++)
		src_ram[i] = (uint8_t)(i * 2654435761u >> 13);
	for (size_t i = 0; i < DEV_STATE; i++)
		src_dev.state[i] = (uint8_t)(i * 7 + 3);
	atomic_store(&src_dev.running, 1);
	if ((r = precopy_bitmap_alloc(&live, GUEST_PAGES, PRECOPY_NUMA_LOCAL)) < 0)
		return fail("allocating the live bitmap", r, NULL);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ram) < 0)
		return fail("socketpair", -errno, NULL);

	/* every default (fds -1, CLOCK_MONOTONIC, the real kernel, the
	 * default policy: 300 ms downtime limit); then what differs */
	precopy_engine_config_init(&cfg);
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_source = PRECOPY_RAM_BITMAP;
	cfg.ram_bitmap = &live;
	cfg.backends = &sbe;
	cfg.nbackends = 1;
	cfg.stream_fd = st[0];
	cfg.rp_fd = rp[0];
	e = precopy_engine_new(&cfg, &err);
	if (!e)
		return fail("precopy_engine_new", err, NULL);

	precopy_dest_config_init(&dcfg);
	dcfg.backends = &dbe;
	dcfg.nbackends = 1;
	dcfg.stream_fd = st[1];
	dcfg.rp_fd = rp[1];
	ds.d = precopy_dest_new(&dcfg, &err);
	if (!ds.d)
		return fail("precopy_dest_new", err, NULL);
	ds.stream_fd = st[1];
	ds.ram_fd = ram[1];

	if ((r = precopy_dest_start(ds.d)) < 0)
		return fail("precopy_dest_start", r, precopy_dest_strerror(ds.d));
	if (pthread_create(&vcpu_thr, NULL, vcpu, NULL) || pthread_create(&dest_thr, NULL, destination, &ds))
		return fail("pthread_create", -EAGAIN, NULL);
	if ((r = precopy_engine_start(e)) < 0)
		return fail("precopy_engine_start", r, precopy_engine_strerror(e));

	for (it = 0; it < MAX_ITERATIONS; it++) {
		uint64_t t0;
		int64_t sent;

		if ((r = (int)precopy_engine_sync(e)) < 0)
			return fail("precopy_engine_sync", r, precopy_engine_strerror(e));
		t0 = now_ns(NULL);
		if ((sent = send_dirty(e, ram[0], 0)) < 0)
			return fail("sending RAM", (int)sent, NULL);
		if ((r = precopy_engine_account(e, (uint64_t)sent, now_ns(NULL) - t0)) < 0 ||
		    (r = (int)precopy_engine_pump(e, 0)) < 0 || (r = precopy_engine_decide(e, &d)) < 0)
			return fail("iteration", r, precopy_engine_strerror(e));
		if (d.action == PRECOPY_SWITCHOVER || d.action == PRECOPY_FORCE_SWITCHOVER)
			break;
		if (d.action == PRECOPY_THROTTLE)
			atomic_store(&vcpu_throttle, d.throttle);
		if (d.action == PRECOPY_ABORT) {
			precopy_engine_cancel(e);
			return fail("the engine gave up", -ECANCELED, d.reason);
		}
		usleep(2000); /* the VMM's loop has other work too */
	}
	if (it == MAX_ITERATIONS) {
		precopy_engine_cancel(e);
		return fail("no convergence", -ETIMEDOUT, "the guest dirties faster than the channel sends");
	}

	/* downtime: stop the vCPU and the device's queues, then switch over */
	t_stop = now_ns(NULL);
	atomic_store(&vcpu_stop, 1);
	pthread_join(vcpu_thr, NULL);
	atomic_store(&src_dev.running, 0);
	if ((r = precopy_engine_switchover(e)) < 0)
		return fail("precopy_engine_switchover", r, precopy_engine_strerror(e));
	{
		uint64_t t0 = now_ns(NULL);
		int64_t sent = send_dirty(e, ram[0], 0);
		struct ram_hdr end = { 0, 0 };

		if (sent < 0 || (r = write_full(ram[0], &end, sizeof(end))) < 0)
			return fail("sending the last RAM", sent < 0 ? (int)sent : r, NULL);
		precopy_engine_account(e, (uint64_t)sent, now_ns(NULL) - t0);
	}
	pthread_join(dest_thr, NULL);
	if (ds.err)
		return fail(ds.step, ds.err, precopy_dest_strerror(ds.d));
	if ((r = precopy_dest_complete(ds.d)) < 0)
		return fail("precopy_dest_complete", r, precopy_dest_strerror(ds.d));
	t_done = now_ns(NULL); /* the destination would resume the guest here */
	if ((r = precopy_engine_complete(e)) < 0)
		return fail("precopy_engine_complete", r, precopy_engine_strerror(e));

	if (memcmp(src_ram, dst_ram, GUEST_BYTES)) {
		size_t i = 0;

		while (src_ram[i] == dst_ram[i])
			i++;
		fprintf(stderr, "migrate-threads: RAM differs, first at byte %zu (page %zu)\n", i, i / PAGE);
		return 1;
	}
	if (dst_dev.loaded != DEV_STATE || memcmp(src_dev.state, dst_dev.state, DEV_STATE)) {
		fprintf(stderr, "migrate-threads: device state differs (%zu of %u bytes loaded)\n", dst_dev.loaded,
			DEV_STATE);
		return 1;
	}
	precopy_engine_stats(e, &stats);
	printf("migrated: %u MiB of RAM (%llu vCPU writes during the migration) and %u bytes of device state\n",
	       GUEST_BYTES >> 20, (unsigned long long)atomic_load(&vcpu_writes), DEV_STATE);
	printf("  %llu iterations, last throttle %u%%, %.1f MiB of RAM sent, downtime %.1f ms (engine expected %.1f ms)\n",
	       (unsigned long long)stats.iterations, atomic_load(&vcpu_throttle), (double)ds.ram_bytes / (1 << 20),
	       (double)(t_done - t_stop) / 1e6, (double)stats.downtime.expected_ns / 1e6);
	if (precopy_engine_downtime_json(&stats.downtime, json, sizeof(json)) < (int)sizeof(json))
		printf("  downtime breakdown: %s\n", json);
	printf("destination RAM and device state equal the source's\n");

	precopy_engine_free(e);
	precopy_dest_free(ds.d);
	precopy_bitmap_free(&live);
	for (int i = 0; i < 2; i++) {
		close(st[i]);
		close(rp[i]);
		close(ram[i]);
	}
	free(src_ram);
	free(dst_ram);
	return 0;
}
