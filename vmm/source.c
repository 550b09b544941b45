/* SPDX-License-Identifier: MIT */
/* vmm/source.c — precopy-vmm's source: runs the guest, and its migration
 * thread (this file, the main thread) drives the precopy engine in KVM
 * dirty-log mode, sends RAM pages itself and carries the engine's
 * device-state stream (where the vCPU and serial state travel, as an
 * fd-based back-end) in its own frames over one TCP connection. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <precopy.h>

#include "vmm.h"

#define WINDOW_NS 100000000ull   /* decide after every 100 ms of sending */
#define PROGRESS_NS 500000000ull
#define MIN_ITER_NS 10000000ull  /* an empty pass: the next question after this */
#define STOP_TIMEOUT_NS 5000000000ull
#define BACKEND_ID 1u
#define STOP_SAMPLES 10u         /* stop probes kept: about a second of decisions */
#define STOP_AGE_NS 1000000000ull /* and none older than this */
#define BW_WINDOWS 16u           /* windows kept for the bandwidth */
#define BW_SPAN_NS 200000000ull  /* the bandwidth: the last 200 ms of sending */
#define RESUME_NS 1000000ull     /* DONE -> the destination's vCPU running (traced: < 0.1 ms) */
#define DEV_PUMP_BYTES (256u << 10) /* device pre-copy data per 256 pages of RAM */

struct src {
	const struct vmm_opts *o;
	struct vmm_vm vm;
	struct precopy_engine *e;
	struct vmm_conn conn;
	struct vmm_device devs[VMM_MAX_DEVICES]; /* --device, in order */
	unsigned ndev;
	int have_conn, stopped, engine_running;
	int be_result;
	int flip_one; /* PRECOPY_VMM_FAULT=flip-page: corrupt one page of the last RAM */
	/* dirty ring drain after a cancel (the library has no call for it) */
	struct kvm_dirty_gfn *ring;
	size_t ring_bytes;
	/* times */
	uint64_t t_start, t_setup, t_stop, t_parked, t_done, t_end, dest_resume_ns;
	/* statistics */
	uint64_t pages_normal, pages_zero, syncs, precopy_bytes, downtime_bytes, final_pages;
	uint64_t zero_ns, zero_acc_ns; /* time checking and marking zero pages; at the last account */
	uint64_t window_bytes, window_ns, last_mbps_bytes, last_progress;
	uint64_t decide_ns, sync_ns, ring_full_syncs; /* time in the engine's decide and sync calls */
	/* the downtime the engine cannot see, measured (stop_costs()) */
	uint64_t kick_ns;             /* when the pending stop probe kicked the vCPU, 0: none */
	uint64_t kick_lat[STOP_SAMPLES]; /* the last probes' kick -> out of KVM_RUN */
	uint64_t kick_at[STOP_SAMPLES];  /* and when each was answered */
	unsigned nkick;
	uint64_t exact_ns;            /* the last exact query's decide call */
	uint64_t fixed_ns;            /* what the engine counts now */
	struct precopy_policy policy;
	uint64_t bw_bytes[BW_WINDOWS], bw_ns[BW_WINDOWS]; /* the last windows as accounted */
	unsigned nbw;
	uint64_t bw;                  /* their rate: the engine's switchover bandwidth */
	double mbps;
	struct precopy_decision d;
	uint64_t iterations;
	uint32_t throttle;
	char *trail;
	size_t trail_len, trail_cap;
	char status[32];
	char reason[512];
};

/* ---- the vCPU and serial state as an fd-based back-end ------------------ */

static int be_queues_running(void *ctx)
{
	struct src *s = ctx;

	return atomic_load(&s->vm.parked) ? 0 : 1;
}

static int be_set_state_fd(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply_fd)
{
	struct src *s = ctx;
	const uint8_t *p = (const uint8_t *)&s->vm.saved;
	size_t left = sizeof(s->vm.saved);

	*reply_fd = -1;
	if (dir != PRECOPY_BACKEND_SAVE || phase != PRECOPY_BACKEND_PHASE_STOPPED) {
		close(fd);
		return -EINVAL;
	}
	/* the state (about 1.5 KiB) fits the pipe: written at once */
	s->be_result = 0;
	while (left) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			s->be_result = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		left -= (size_t)n;
	}
	close(fd);
	return s->be_result;
}

static int be_check_state(void *ctx)
{
	struct src *s = ctx;

	return s->be_result;
}

static const struct precopy_backend_ops be_ops = {
	.version = PRECOPY_BACKEND_OPS_VERSION,
	.queues_running = be_queues_running,
	.set_state_fd = be_set_state_fd,
	.check_state = be_check_state,
};

/* ---- helpers ---------------------------------------------------------------- */

static int stream_sink(void *ctx, const void *buf, size_t len)
{
	struct src *s = ctx;
	const uint8_t *p = buf;

	if (!s->have_conn)
		return -ENOTCONN;
	while (len) {
		uint32_t n = len > VMM_STREAM_MAX ? VMM_STREAM_MAX : (uint32_t)len;
		int r = vmm_send(&s->conn, VMM_F_STREAM, 0, p, n);
		if (r < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

/* While the connection waits (the cap, a full socket): a vCPU waiting for
 * its dirty ring to be harvested gets it. */
static void src_idle(void *ctx)
{
	struct src *s = ctx;

	if (atomic_load(&s->vm.ring_full) && s->engine_running && !s->stopped) {
		if (precopy_engine_sync(s->e) >= 0)
			s->syncs++;
		s->ring_full_syncs++;
		atomic_store(&s->vm.ring_full, 0);
	}
}

static void trail_add(struct src *s, const char *json)
{
	size_t n = strlen(json);

	if (s->trail_len + n + 2 > s->trail_cap) {
		size_t cap = (s->trail_cap + n + 2) * 2;
		char *t = realloc(s->trail, cap);
		if (!t)
			return;
		s->trail = t;
		s->trail_cap = cap;
	}
	if (s->trail_len)
		s->trail[s->trail_len++] = ',';
	memcpy(s->trail + s->trail_len, json, n + 1);
	s->trail_len += n;
}

static int send_runs(struct src *s, const struct precopy_ram_run *runs, int64_t n, uint64_t *pages)
{
	for (int64_t i = 0; i < n; i++) {
		for (uint64_t k = 0; k < runs[i].pages; k++) {
			uint64_t gpa = runs[i].gpa + k * VMM_PAGE;
			const uint8_t *p = s->vm.ram + gpa;
			uint64_t t0 = vmm_now_ns();
			int r;

			if (gpa + VMM_PAGE > s->vm.mem) {
				vmm_err("sending RAM: the engine handed out page %#llx outside guest RAM",
					(unsigned long long)gpa);
				return -ERANGE;
			}
			if (s->flip_one && s->stopped && !vmm_page_is_zero(p)) {
				/* fault injection (tests): one page goes out with a bit
				 * flipped, which only --verify can see */
				uint8_t copy[VMM_PAGE];
				memcpy(copy, p, VMM_PAGE);
				copy[VMM_PAGE / 2] ^= 0x10;
				s->flip_one = 0;
				r = vmm_send(&s->conn, VMM_F_PAGE, gpa, copy, VMM_PAGE);
				s->pages_normal++;
			} else if (vmm_page_is_zero(p)) {
				r = vmm_send(&s->conn, VMM_F_ZERO, gpa, NULL, 0);
				s->pages_zero++;
				s->zero_ns += vmm_now_ns() - t0;
			} else {
				r = vmm_send(&s->conn, VMM_F_PAGE, gpa, p, VMM_PAGE);
				s->pages_normal++;
			}
			if (r < 0)
				return r;
			(*pages)++;
		}
	}
	return 0;
}

static void progress(struct src *s, int force)
{
	uint64_t now = vmm_now_ns();
	struct precopy_engine_stats st;

	if (vmm_quiet || (!force && now - s->last_progress < PROGRESS_NS))
		return;
	s->last_progress = now;
	if (precopy_engine_stats(s->e, &st) < 0)
		return;
	vmm_info("migrate: %6.2f s  iter %llu  sent %llu MiB  remaining %llu MiB  bw %.0f MiB/s  dirty %.0f MiB/s  "
		 "expected %.0f ms  throttle %u%%",
		 (double)(now - s->t_start) / 1e9, (unsigned long long)st.iterations,
		 (unsigned long long)(s->conn.sent >> 20), (unsigned long long)(st.dirty_now * VMM_PAGE >> 20),
		 (double)s->d.bandwidth_Bps / 1048576.0, (double)s->d.dirty_rate_Bps / 1048576.0,
		 s->d.expected_downtime_ns == PRECOPY_UNBOUNDED ? INFINITY : (double)s->d.expected_downtime_ns / 1e6,
		 s->throttle);
}

/* Read what the destination sent (return path, an abort) without waiting. */
static int poll_peer(struct src *s)
{
	struct vmm_frame f;
	char why[256];
	int r;

	while ((r = vmm_recv(&s->conn, &f, 0, why, sizeof(why))) > 0) {
		if (f.kind == VMM_F_RP) {
			if ((r = precopy_engine_rp_feed(s->e, f.payload, f.len)) < 0) {
				snprintf(s->reason, sizeof(s->reason), "return path: %s", precopy_engine_strerror(s->e));
				return r;
			}
		} else if (f.kind == VMM_F_ABORT) {
			snprintf(s->reason, sizeof(s->reason), "the destination aborted: %.*s", (int)f.len,
				 (const char *)f.payload);
			return -ECANCELED;
		} else {
			snprintf(s->reason, sizeof(s->reason), "receiving from the destination: unexpected frame kind %u",
				 f.kind);
			return -EPROTO;
		}
	}
	if (r < 0) {
		snprintf(s->reason, sizeof(s->reason), "receiving from the destination: %s", why);
		return r;
	}
	return 0;
}

/* Pages to hand out between two decisions: what a window of sending
 * carries as whole pages at the cap (or the measured bandwidth). Zero
 * pages cost a marker, so a run of them reaches this count long before the
 * window's time is up: the engine hears of the drop in unsent pages while
 * it is still fresh. */
static uint64_t window_budget(const struct src *s)
{
	uint64_t bw = s->o->max_bw ? s->o->max_bw : s->d.bandwidth_Bps;
	uint64_t n = (uint64_t)((long double)bw * (long double)WINDOW_NS / 1e9L) / VMM_PAGE;

	return n < 256 ? 256 : n;
}

/* The time to account for `bytes` sent in `ns`: without the time spent on
 * zero pages, and never less than the cap allows. A zero page is read
 * whole and costs a 16-byte marker: a run of them is the CPU's time, not
 * the link's (2560 of them in 3-8 ms at the sweep guest's byte wrap, which
 * made 5 MB/s windows under a 100 MiB/s cap), and the downtime model
 * counts every pending page as a whole one on the link. The cap: the
 * token bucket refills while the thread syncs or decides (time not
 * counted as sending) and lends up to 100 ms of the cap at once: a window
 * after such a pause showed 154 MB/s under a 100 MiB/s cap, the engine
 * switched over on an expected 297 ms and the last RAM, sent at the cap,
 * took 357 ms (limit 300). The stop and copy runs at the cap. */
static uint64_t send_time(struct src *s, uint64_t bytes, uint64_t ns)
{
	uint64_t least, zero = s->zero_ns - s->zero_acc_ns;

	s->zero_acc_ns = s->zero_ns;
	ns = ns > zero ? ns - zero : 0;
	if (!s->o->max_bw)
		return ns;
	least = (uint64_t)((long double)bytes * 1e9L / (long double)s->o->max_bw);
	return ns > least ? ns : least;
}

/* What the switchover costs beyond what the engine models (its RAM and
 * state at the bandwidth): stopping the vCPU (kick, exit, registers), the
 * final sync, the destination's resume. The first is the vCPU thread's
 * wake-up under the machine's load: measured here by kicking the running
 * vCPU once per decision and reading when its KVM_RUN ended (one exit, no
 * other effect); not while throttled, where the vCPU sleeps between slices
 * (a kick would measure the sleep; a stop ends the sleep within 1 ms). The
 * engine's fixed cost becomes the largest probe of the last second (of the
 * last STOP_SAMPLES) + the last exact query's call (its sync is the final
 * sync's size) + RESUME_NS, never below the policy's default. */
static void stop_costs(struct src *s, uint64_t now)
{
	uint64_t out = atomic_load(&s->vm.kicked_out_ns), worst = 0, fixed;

	if (s->kick_ns && out >= s->kick_ns) {
		s->kick_at[s->nkick % STOP_SAMPLES] = out;
		s->kick_lat[s->nkick++ % STOP_SAMPLES] = out - s->kick_ns;
		s->kick_ns = 0;
	}
	if (atomic_load(&s->vm.throttle_pct) || atomic_load(&s->vm.parked)) {
		s->kick_ns = 0;
	} else if (s->kick_ns) {
		/* the last kick is still out: its age counts below */
	} else {
		s->kick_ns = now;
		vmm_vm_kick(&s->vm);
	}
	for (unsigned i = 0; i < STOP_SAMPLES && i < s->nkick; i++)
		if (now - s->kick_at[i] < STOP_AGE_NS && s->kick_lat[i] > worst)
			worst = s->kick_lat[i];
	if (s->kick_ns && now - s->kick_ns > worst)
		worst = now - s->kick_ns; /* not out yet: a stop would take at least this */
	fixed = worst + s->exact_ns + RESUME_NS;
	if (fixed < s->policy.fixed_downtime_ns)
		fixed = s->policy.fixed_downtime_ns;
	if (fixed != s->fixed_ns || s->bw != s->policy.switchover_bw_Bps) {
		struct precopy_policy p = s->policy;

		p.fixed_downtime_ns = fixed;
		p.switchover_bw_Bps = s->bw;
		if (precopy_engine_set_policy(s->e, &p) == 0) {
			s->fixed_ns = fixed;
			s->policy.switchover_bw_Bps = s->bw;
		}
	}
}

/* The bandwidth over the last BW_SPAN_NS of sending (the windows as
 * accounted, the oldest one in part), given to the engine as its
 * switchover bandwidth: the estimator's own is over its last 5 iterations,
 * and the first pass, one iteration, held the destination's first touch of
 * every page (its faults; 140 MB/s at 1 GiB/s here, where the stop and
 * copy then ran at 1068 MB/s): at 1 GiB/s it weighed on 4 more decisions. */
static void window_bw(struct src *s, uint64_t bytes, uint64_t ns)
{
	long double b = 0, t = 0;

	s->bw_bytes[s->nbw % BW_WINDOWS] = bytes;
	s->bw_ns[s->nbw % BW_WINDOWS] = ns;
	s->nbw++;
	for (unsigned k = 0; k < BW_WINDOWS && k < s->nbw && t < BW_SPAN_NS; k++) {
		unsigned i = (s->nbw - 1 - k) % BW_WINDOWS;
		long double f = 1;

		if (t + s->bw_ns[i] > BW_SPAN_NS && s->bw_ns[i])
			f = (BW_SPAN_NS - t) / (long double)s->bw_ns[i];
		b += f * s->bw_bytes[i];
		t += f * s->bw_ns[i];
	}
	s->bw = t > 0 ? (uint64_t)(b * 1e9L / t) : 0;
}

static int account_decide(struct src *s, uint64_t *acc_start, uint64_t *acc_sent)
{
	uint64_t now = vmm_now_ns(), prev = s->d.iteration;
	int r;

	if ((r = poll_peer(s)) < 0)
		return r;
	{
		uint64_t bytes = s->conn.sent - *acc_sent, ns = send_time(s, bytes, now - *acc_start);

		precopy_engine_account(s->e, bytes, ns);
		if (bytes)
			window_bw(s, bytes, ns);
	}
	*acc_sent = s->conn.sent;
	*acc_start = now;
	stop_costs(s, now);
	r = precopy_engine_decide(s->e, &s->d);
	s->decide_ns += vmm_now_ns() - now;
	if (r < 0) {
		snprintf(s->reason, sizeof(s->reason), "decide: %s", precopy_engine_strerror(s->e));
		return r;
	}
	if (s->d.iteration != prev) {
		struct precopy_engine_stats st;
		char buf[1024];

		s->iterations = s->d.iteration;
		if (precopy_engine_stats(s->e, &st) == 0) {
			if (st.last.exact) {
				s->syncs++;
				s->exact_ns = vmm_now_ns() - now;
			}
			if (precopy_engine_iter_json(&st.last, buf, sizeof(buf)) < (int)sizeof(buf))
				trail_add(s, buf);
		}
	}
	/* the next window's sending starts after the decision (an exact
	 * query's sync is not sending time) */
	*acc_start = vmm_now_ns();
	if (s->o->auto_converge && s->d.throttle != s->throttle) {
		s->throttle = s->d.throttle;
		atomic_store(&s->vm.throttle_pct, s->throttle);
	}
	return 0;
}

/* The drain the library lacks after a cancel in ring mode: entries the
 * vCPU pushed and nobody harvested are handed back, so a vCPU stuck on a
 * full ring can run again (logging is off by then). */
static void ring_drain(struct src *s)
{
	size_t n = s->ring_bytes / sizeof(struct kvm_dirty_gfn);
	int any = 0;

	if (!s->ring)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t f = __atomic_load_n(&s->ring[i].flags, __ATOMIC_ACQUIRE);
		if (f & KVM_DIRTY_GFN_F_DIRTY) {
			__atomic_store_n(&s->ring[i].flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
			any = 1;
		}
	}
	if (any) {
		int r;
		do
			r = ioctl(s->vm.vm_fd, KVM_RESET_DIRTY_RINGS, 0);
		while (r < 0 && errno == EINTR);
	}
	atomic_store(&s->vm.ring_full, 0);
}

static void json_str(FILE *f, const char *str)
{
	fputc('"', f);
	for (const char *p = str; *p; p++)
		fprintf(f, (*p == '"' || *p == '\\') ? "\\%c" : ((unsigned char)*p < 0x20 ? "?" : "%c"), *p);
	fputc('"', f);
}

/* "vfio-user": what each device moved (as QEMU's "vfio" object, per device). */
static void devices_json(struct src *s, FILE *f)
{
	if (!s->ndev)
		return;
	fprintf(f, "\"vfio-user\":[");
	for (unsigned i = 0; i < s->ndev; i++) {
		struct precopy_engine_dev_info di;

		memset(&di, 0, sizeof(di));
		precopy_engine_device_info(s->e, i, &di);
		fprintf(f, "%s{\"socket\":", i ? "," : "");
		json_str(f, s->devs[i].path);
		fprintf(f, ",\"id\":%u,\"transferred\":%llu,\"stop-copy-bytes\":%llu,\"stop-copy-hint\":%llu,"
			   "\"dma-tracking\":\"%s\",\"error\":%d}",
			VMM_DEVICE_ID0 + i, (unsigned long long)di.bytes_sent, (unsigned long long)di.stop_copy_bytes,
			(unsigned long long)s->devs[i].stop_copy_hint,
			di.tracking == PRECOPY_TRACK_DMA_LOG ? "dma-log"
			: di.tracking == PRECOPY_TRACK_TRACKER ? "tracker"
			: di.tracking == PRECOPY_TRACK_ALL ? "all-ram" : "none",
			di.err);
	}
	fprintf(f, "],");
}

static void emit_json(struct src *s, uint64_t total_ram)
{
	FILE *f = stdout;
	struct precopy_engine_stats st;
	char dt[1024] = "{}";
	uint64_t total = s->t_start ? (s->t_end - s->t_start) / 1000000 : 0;
	uint64_t setup = s->t_setup ? (s->t_setup - s->t_start) / 1000000 : total;
	uint64_t precopy_ns = s->t_setup ? (s->t_stop ? s->t_stop : s->t_end) - s->t_setup : 0;
	uint64_t pages = s->pages_normal + s->pages_zero;
	double downtime_ms = s->dest_resume_ns && s->t_stop ? (double)(s->dest_resume_ns - s->t_stop) / 1e6 : 0;

	if (!s->o->json)
		return;
	if (s->o->json_path && !(f = fopen(s->o->json_path, "w"))) {
		vmm_err("writing the JSON summary to %s: %s", s->o->json_path, strerror(errno));
		return;
	}
	memset(&st, 0, sizeof(st));
	precopy_engine_stats(s->e, &st);
	precopy_engine_downtime_json(&st.downtime, dt, sizeof(dt));
	fprintf(f, "{\"status\":\"%s\",\"total-time\":%llu,\"setup-time\":%llu,\"downtime\":%llu,"
		   "\"expected-downtime\":%llu,",
		s->status, (unsigned long long)total, (unsigned long long)setup,
		(unsigned long long)llround(downtime_ms),
		(unsigned long long)(s->d.expected_downtime_ns == PRECOPY_UNBOUNDED ? 0
										 : s->d.expected_downtime_ns / 1000000));
	fprintf(f, "\"ram\":{\"transferred\":%llu,\"remaining\":%llu,\"total\":%llu,\"duplicate\":%llu,"
		   "\"normal\":%llu,\"normal-bytes\":%llu,\"dirty-sync-count\":%llu,\"mbps\":%.2f,"
		   "\"pages-per-second\":%llu,\"dirty-pages-rate\":%llu,\"precopy-bytes\":%llu,"
		   "\"downtime-bytes\":%llu,\"page-size\":%u},",
		(unsigned long long)s->conn.sent, (unsigned long long)(st.dirty_now * VMM_PAGE),
		(unsigned long long)total_ram, (unsigned long long)s->pages_zero,
		(unsigned long long)s->pages_normal, (unsigned long long)(s->pages_normal * VMM_PAGE),
		(unsigned long long)s->syncs, s->mbps,
		(unsigned long long)(precopy_ns ? (double)pages * 1e9 / (double)precopy_ns : 0),
		(unsigned long long)(s->d.dirty_rate_Bps / VMM_PAGE), (unsigned long long)s->precopy_bytes,
		(unsigned long long)s->downtime_bytes, VMM_PAGE);
	fprintf(f, "\"cpu-throttle-percentage\":%u,", s->throttle);
	devices_json(s, f);
	fprintf(f, "\"precopy\":{\"reason\":\"");
	for (const char *p = s->reason; *p; p++)
		fprintf(f, (*p == '"' || *p == '\\') ? "\\%c" : ((unsigned char)*p < 0x20 ? "?" : "%c"), *p);
	fprintf(f, "\",\"dirty-log\":\"%s\",\"max-bandwidth\":%llu,\"downtime-limit\":%llu,"
		   "\"wall-downtime-ms\":%.3f,\"expected-downtime-ms\":%.3f,\"iterations\":%llu,"
		   "\"final-pages\":%llu,\"rate-limit-wait-ms\":%.1f,\"socket-full-wait-ms\":%.1f,"
		   "\"decide-ms\":%.1f,\"sync-ms\":%.1f,\"ring-full-syncs\":%llu,\"ring-bytes\":%zu,"
		   "\"stop-ms\":%.3f,\"fixed-downtime-ms\":%.3f,"
		   "\"downtime-breakdown\":%s,\"decisions\":[%s]}}\n",
		s->o->dirty_log == PRECOPY_KVM_LOG_RING ? "ring"
		: s->o->dirty_log == PRECOPY_KVM_LOG_MANUAL ? "manual" : "classic",
		(unsigned long long)s->o->max_bw, (unsigned long long)s->o->limit_ms, downtime_ms,
		s->d.expected_downtime_ns == PRECOPY_UNBOUNDED ? -1.0 : (double)s->d.expected_downtime_ns / 1e6,
		(unsigned long long)s->iterations, (unsigned long long)s->final_pages,
		(double)s->conn.limit_wait_ns / 1e6, (double)s->conn.full_wait_ns / 1e6, (double)s->decide_ns / 1e6,
		(double)s->sync_ns / 1e6, (unsigned long long)s->ring_full_syncs, s->ring_bytes,
		s->t_parked ? (double)(s->t_parked - s->t_stop) / 1e6 : 0.0, (double)s->fixed_ns / 1e6, dt,
		s->trail ? s->trail : "");
	if (f != stdout)
		fclose(f);
	else
		fflush(f);
}

/* The migration failed or was cancelled: the guest runs on here. Shows that
 * it does (one more serial line, bounded wait) and says so. */
static int fail_resume(struct src *s, const char *status)
{
	uint64_t lines, end;

	snprintf(s->status, sizeof(s->status), "%s", status);
	if (s->ndev) {
		/* name the device whose server failed, if one did */
		int k = vmm_devices_failed(s->devs, s->ndev);
		if (k >= 0 && s->reason[0])
			vmm_device_blame(&s->devs[k], s->reason, sizeof(s->reason));
		else if (k >= 0)
			vmm_device_describe(&s->devs[k], s->reason, sizeof(s->reason));
	}
	if (s->engine_running) {
		precopy_engine_cancel(s->e);
		s->engine_running = 0;
	}
	atomic_store(&s->vm.throttle_pct, 0);
	s->throttle = 0;
	if (s->have_conn && !strstr(s->reason, "the destination aborted")) {
		/* a destination that went away may have said why first */
		struct vmm_frame f;
		char why[64];
		while (vmm_recv(&s->conn, &f, 0, why, sizeof(why)) > 0)
			if (f.kind == VMM_F_ABORT) {
				size_t n = strlen(s->reason);
				snprintf(s->reason + n, sizeof(s->reason) - n, " (the destination aborted: %.*s)",
					 (int)(f.len < 300 ? f.len : 300), (const char *)f.payload);
				break;
			}
	}
	if (s->have_conn) {
		/* best effort, unthrottled, never blocking for long */
		s->conn.olen = 0;
		s->conn.rate_Bps = 0;
		s->conn.io_timeout_ns = 100000000ull;
		vmm_send(&s->conn, VMM_F_ABORT, 0, s->reason, (uint32_t)strnlen(s->reason, sizeof(s->reason)));
		vmm_flush(&s->conn);
		vmm_conn_free(&s->conn);
		s->have_conn = 0;
	}
	ring_drain(s);
	lines = atomic_load(&s->vm.serial_lines);
	if (s->stopped) {
		vmm_vm_resume(&s->vm);
		s->stopped = 0;
	}
	s->t_end = vmm_now_ns();
	vmm_err("migration %s: %s; the guest runs on the source", status, s->reason);
	end = vmm_now_ns() + 10000000000ull;
	while (atomic_load(&s->vm.serial_lines) == lines && vmm_now_ns() < end && !atomic_load(&s->vm.failed) &&
	       !atomic_load(&vmm_quit))
		vmm_sleep_ns(1000000);
	if (atomic_load(&s->vm.serial_lines) != lines)
		vmm_info("guest running on the source after the failed migration: \"%s\"", s->vm.last_line);
	else
		vmm_err("the guest printed nothing within 10 s after the failed migration%s%s",
			atomic_load(&s->vm.failed) ? ": " : "", atomic_load(&s->vm.failed) ? s->vm.errmsg : "");
	emit_json(s, s->vm.mem);
	return VMM_EXIT_RESUMED;
}

static int wait_resumed(struct src *s)
{
	uint64_t end = vmm_now_ns() + s->conn.io_timeout_ns;
	struct vmm_frame f;
	char why[256];

	for (;;) {
		uint64_t now = vmm_now_ns();
		int r;

		if (now > end) {
			snprintf(s->reason, sizeof(s->reason), "waiting for the destination to resume: nothing in %llu s",
				 (unsigned long long)(s->conn.io_timeout_ns / 1000000000ull));
			return -ETIMEDOUT;
		}
		r = vmm_recv(&s->conn, &f, end - now, why, sizeof(why));
		if (r < 0) {
			snprintf(s->reason, sizeof(s->reason), "waiting for the destination to resume: %s", why);
			return r;
		}
		if (r == 0)
			continue;
		if (f.kind == VMM_F_RESUMED) {
			s->dest_resume_ns = f.arg;
			return 0;
		}
		if (f.kind == VMM_F_ABORT) {
			snprintf(s->reason, sizeof(s->reason), "the destination aborted: %.*s", (int)f.len,
				 (const char *)f.payload);
			return -ECANCELED;
		}
		if (f.kind == VMM_F_RP)
			continue; /* an RP_ERROR would come with an ABORT */
		snprintf(s->reason, sizeof(s->reason), "waiting for the destination to resume: frame kind %u", f.kind);
		return -EPROTO;
	}
}

static int migrate(struct src *s)
{
	const struct vmm_opts *o = s->o;
	struct precopy_ram_run runs[64];
	struct vmm_hello h;
	struct vmm_done done;
	uint64_t acc_start, acc_sent = 0, last_decide, pages = 0, window_pages = 0;
	int fd, r;

	s->t_start = vmm_now_ns();
	fd = vmm_connect(o->migrate_to, o->io_timeout_ms * 1000000ull);
	if (fd < 0) {
		snprintf(s->reason, sizeof(s->reason), "connecting to %s: %s", o->migrate_to, strerror(-fd));
		return fail_resume(s, "failed");
	}
	if (vmm_conn_init(&s->conn, fd, o->max_bw) < 0) {
		close(fd);
		snprintf(s->reason, sizeof(s->reason), "connection set-up");
		return fail_resume(s, "failed");
	}
	s->have_conn = 1;
	s->conn.io_timeout_ns = o->io_timeout_ms * 1000000ull;
	s->conn.idle = src_idle;
	s->conn.idle_ctx = s;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, VMM_HELLO_MAGIC, sizeof(h.magic));
	h.version = VMM_PROTO_VERSION;
	h.mem = s->vm.mem;
	h.page_size = VMM_PAGE;
	h.flags = o->verify ? VMM_HELLO_VERIFY : 0;
	h.devices = s->ndev;
	if ((r = vmm_send(&s->conn, VMM_F_HELLO, s->vm.mem, &h, sizeof(h))) < 0 ||
	    (r = vmm_flush(&s->conn)) < 0) {
		snprintf(s->reason, sizeof(s->reason), "sending the greeting: %s", strerror(-r));
		return fail_resume(s, "failed");
	}
	if ((r = precopy_engine_start(s->e)) < 0) {
		snprintf(s->reason, sizeof(s->reason), "engine start: %s", precopy_engine_strerror(s->e));
		return fail_resume(s, "failed");
	}
	s->engine_running = 1;
	s->t_setup = acc_start = last_decide = vmm_now_ns();
	memset(&s->d, 0, sizeof(s->d));
	s->d.expected_downtime_ns = PRECOPY_UNBOUNDED;

	/* ---- pre-copy ---- */
	for (;;) {
		int64_t n = precopy_engine_next_pages(s->e, runs, 64, 256);
		uint64_t now;

		if (atomic_load(&vmm_quit)) {
			snprintf(s->reason, sizeof(s->reason), "interrupted by a signal");
			return fail_resume(s, "cancelled");
		}
		if (atomic_load(&s->vm.failed)) {
			snprintf(s->reason, sizeof(s->reason), "the source vCPU failed: %s", s->vm.errmsg);
			return fail_resume(s, "failed");
		}
		if (n < 0) {
			snprintf(s->reason, sizeof(s->reason), "next_pages: %s", precopy_engine_strerror(s->e));
			return fail_resume(s, "failed");
		}
		if (n > 0 && (r = send_runs(s, runs, n, &pages)) < 0) {
			if (!s->reason[0])
				snprintf(s->reason, sizeof(s->reason), "sending RAM: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
		/* the devices' pre-copy data (and their servers' DMA commands) */
		if (s->ndev && precopy_engine_pump(s->e, DEV_PUMP_BYTES) < 0) {
			snprintf(s->reason, sizeof(s->reason), "device pre-copy data: %s", precopy_engine_strerror(s->e));
			return fail_resume(s, "failed");
		}
		src_idle(s);
		now = vmm_now_ns();
		if (n > 0 && now - last_decide < WINDOW_NS && pages - window_pages < window_budget(s)) {
			progress(s, 0);
			continue;
		}
		if (n == 0 && pages == window_pages && now - last_decide < MIN_ITER_NS) {
			/* nothing dirty and the engine said CONTINUE (something
			 * else blocks: the fixed cost of a vCPU that does not
			 * answer, an ACK): ask again in a while, not in a loop of
			 * syncs (7366 in 86 ms, seen), and not as sending time */
			vmm_sleep_ns(last_decide + MIN_ITER_NS - now);
			src_idle(s);
			now = vmm_now_ns();
			acc_start = now;
		}
		/* the end of a pass, or 100 ms of sending: flush, account, decide */
		if ((r = vmm_flush(&s->conn)) < 0) {
			snprintf(s->reason, sizeof(s->reason), "sending RAM: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
		if (now > last_decide) {
			s->mbps = (double)(s->conn.sent - s->last_mbps_bytes) * 8.0 / 1e6 /
				  ((double)(vmm_now_ns() - last_decide) / 1e9);
			s->last_mbps_bytes = s->conn.sent;
		}
		last_decide = vmm_now_ns();
		window_pages = pages;
		if ((r = account_decide(s, &acc_start, &acc_sent)) < 0) {
			if (!s->reason[0])
				snprintf(s->reason, sizeof(s->reason), "decide: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
		progress(s, 0);
		if (s->d.action == PRECOPY_ABORT) {
			snprintf(s->reason, sizeof(s->reason), "the engine gave up: %s", s->d.reason);
			return fail_resume(s, "cancelled");
		}
		if (s->d.action == PRECOPY_SWITCHOVER || s->d.action == PRECOPY_FORCE_SWITCHOVER)
			break;
		if (n == 0) {
			/* a new pass: the decision's exact query synced already, else sync */
			struct precopy_engine_decide_input in;
			if (precopy_engine_last_input(s->e, &in, NULL, 0) < 0 || !in.exact) {
				now = vmm_now_ns();
				if (precopy_engine_sync(s->e) < 0) {
					snprintf(s->reason, sizeof(s->reason), "sync: %s", precopy_engine_strerror(s->e));
					return fail_resume(s, "failed");
				}
				s->syncs++;
				acc_start = vmm_now_ns();
				s->sync_ns += acc_start - now;
			}
		}
	}

	/* ---- stop and copy ---- */
	s->precopy_bytes = s->conn.sent;
	s->t_stop = vmm_now_ns();
	if ((r = vmm_vm_pause(&s->vm, STOP_TIMEOUT_NS)) < 0) {
		s->stopped = 1;
		snprintf(s->reason, sizeof(s->reason), "stopping the vCPU: %s", s->vm.errmsg);
		return fail_resume(s, "failed");
	}
	s->stopped = 1;
	s->t_parked = vmm_now_ns();
	vmm_trace(s->t_stop, "source: vCPU parked");
	/* The last RAM goes at the cap like pre-copy, where the engine
	 * measured its bandwidth: not faster on tokens the bucket saved while
	 * the thread synced or decided (up to 100 ms of the cap: measured 32
	 * MiB sent in 55 ms at 300 MiB/s, expected 234 ms). */
	s->conn.tokens_ns = vmm_now_ns();
	if (s->conn.tokens > 0)
		s->conn.tokens = 0;
	if ((r = vmm_send(&s->conn, VMM_F_STOP, s->t_stop, NULL, 0)) < 0) {
		snprintf(s->reason, sizeof(s->reason), "sending the stop: %s", strerror(-r));
		return fail_resume(s, "failed");
	}
	acc_start = vmm_now_ns();
	acc_sent = s->conn.sent;
	if ((r = precopy_engine_switchover(s->e)) < 0) {
		snprintf(s->reason, sizeof(s->reason), "switchover: %s", precopy_engine_strerror(s->e));
		return fail_resume(s, "failed");
	}
	s->syncs++;
	vmm_trace(s->t_stop, "source: engine switchover done");
	pages = 0;
	for (;;) {
		int64_t n = precopy_engine_next_pages(s->e, runs, 64, 0);

		if (n < 0) {
			snprintf(s->reason, sizeof(s->reason), "next_pages: %s", precopy_engine_strerror(s->e));
			return fail_resume(s, "failed");
		}
		if (n == 0)
			break;
		if ((r = send_runs(s, runs, n, &pages)) < 0) {
			snprintf(s->reason, sizeof(s->reason), "sending the last RAM: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
	}
	if (s->flip_one) {
		/* no page was dirty at the stop: corrupt a copy of the boot page */
		struct precopy_ram_run boot = { .gpa = VMM_BOOT_GPA & ~(uint64_t)(VMM_PAGE - 1), .pages = 1 };
		if ((r = send_runs(s, &boot, 1, &pages)) < 0) {
			snprintf(s->reason, sizeof(s->reason), "sending the last RAM: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
	}
	s->final_pages = pages;
	memset(&done, 0, sizeof(done));
	done.stop_ns = s->t_stop;
	done.expected_ns = s->d.expected_downtime_ns;
	done.pages_sent = s->pages_normal + s->pages_zero;
	done.has_digest = o->verify != 0;
	if ((r = vmm_send(&s->conn, VMM_F_DONE, 0, &done, sizeof(done))) < 0 || (r = vmm_flush(&s->conn)) < 0) {
		snprintf(s->reason, sizeof(s->reason), "sending the last RAM: %s", strerror(-r));
		return fail_resume(s, "failed");
	}
	if (o->verify) {
		/* the destination digests what it loaded meanwhile */
		uint64_t dg = vmm_digest(s->vm.ram, s->vm.mem, NULL);
		if ((r = vmm_send(&s->conn, VMM_F_DIGEST, dg, NULL, 0)) < 0 || (r = vmm_flush(&s->conn)) < 0) {
			snprintf(s->reason, sizeof(s->reason), "sending the RAM digest: %s", strerror(-r));
			return fail_resume(s, "failed");
		}
	}
	s->t_done = vmm_now_ns();
	vmm_trace(s->t_stop, "source: last RAM and DONE sent");
	precopy_engine_account(s->e, s->conn.sent - acc_sent, s->t_done - acc_start);
	s->downtime_bytes = s->conn.sent - s->precopy_bytes;
	if ((r = wait_resumed(s)) < 0)
		return fail_resume(s, "failed");
	s->t_end = vmm_now_ns();
	if ((r = precopy_engine_complete(s->e)) < 0)
		vmm_err("engine complete (the guest runs on the destination): %s", precopy_engine_strerror(s->e));
	s->engine_running = 0;
	snprintf(s->status, sizeof(s->status), "completed");
	if (!vmm_quiet) {
		struct precopy_engine_stats st;
		precopy_engine_stats(s->e, &st);
		vmm_info("migration completed in %.3f s: %llu iterations, %llu MiB sent (%llu normal pages, %llu zero), "
			 "%llu dirty syncs",
			 (double)(s->t_end - s->t_start) / 1e9, (unsigned long long)s->iterations,
			 (unsigned long long)(s->conn.sent >> 20), (unsigned long long)s->pages_normal,
			 (unsigned long long)s->pages_zero, (unsigned long long)s->syncs);
		vmm_info("downtime %.1f ms wall clock (source stop -> destination resume), engine expected %.1f ms, "
			 "limit %llu ms; final RAM %llu pages; last bandwidth %.0f MiB/s, throttle %u%%",
			 (double)(s->dest_resume_ns - s->t_stop) / 1e6, (double)s->d.expected_downtime_ns / 1e6,
			 (unsigned long long)o->limit_ms, (unsigned long long)s->final_pages,
			 (double)s->d.bandwidth_Bps / 1048576.0, s->throttle);
		vmm_info("last serial line on the source: \"%s\"", s->vm.last_line);
	}
	emit_json(s, s->vm.mem);
	return VMM_EXIT_OK;
}

static int setup_engine(struct src *s)
{
	const struct vmm_opts *o = s->o;
	struct precopy_engine_config cfg;
	struct precopy_ram_slot slot = { .gpa = 0, .size = s->vm.mem, .page_size = VMM_PAGE, .kvm_slot = 0,
					 .userspace_addr = (uintptr_t)s->vm.ram };
	struct precopy_engine_backend be = { .id = BACKEND_ID, .name = "vcpu0+serial", .ops = &be_ops, .ctx = s,
					     .state_bytes = sizeof(struct vmm_vcpu_state) };
	struct precopy_engine_vfio_user vu[VMM_MAX_DEVICES];
	int64_t probe;
	int err;

	precopy_engine_config_init(&cfg);
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_source = PRECOPY_RAM_KVM;
	cfg.kvm_vm_fd = s->vm.vm_fd;
	cfg.kvm.mode = (uint32_t)o->dirty_log;
	probe = precopy_kvm_log_probe(precopy_sys_real(), s->vm.vm_fd, o->dirty_log);
	if (probe <= 0) {
		vmm_err("dirty log mode %s: this kernel lacks it (%s)",
			o->dirty_log == PRECOPY_KVM_LOG_RING ? "ring" : o->dirty_log == PRECOPY_KVM_LOG_MANUAL ? "manual"
														: "classic",
			strerror(probe < 0 ? (int)-probe : EOPNOTSUPP));
		return -EOPNOTSUPP;
	}
	if (o->dirty_log == PRECOPY_KVM_LOG_MANUAL && (probe & KVM_DIRTY_LOG_INITIALLY_SET))
		cfg.kvm.flags = PRECOPY_KVM_INITIALLY_SET;
	if (o->dirty_log == PRECOPY_KVM_LOG_RING) {
		/* the largest ring up to 64 Ki entries: fewer full-ring exits */
		uint64_t want = 65536ull * sizeof(struct kvm_dirty_gfn);
		cfg.kvm.ring_bytes = (uint32_t)((uint64_t)probe < want ? (uint64_t)probe : want);
		s->ring_bytes = cfg.kvm.ring_bytes;
	}
	cfg.stream_fd = -1;
	cfg.sink = stream_sink;
	cfg.sink_ctx = s;
	cfg.rp_fd = -1;
	cfg.backends = &be;
	cfg.nbackends = 1;
	for (unsigned i = 0; i < s->ndev; i++)
		vu[i] = (struct precopy_engine_vfio_user){ .id = VMM_DEVICE_ID0 + i, .name = s->devs[i].name,
							   .dev = s->devs[i].c,
							   .stop_copy_hint = s->devs[i].stop_copy_hint };
	cfg.vfio_user = vu;
	cfg.nvfio_user = s->ndev;
	cfg.io_timeout_ns = o->io_timeout_ms * 1000000ull;
	cfg.policy.downtime_limit_ns = o->limit_ms * 1000000ull;
	cfg.policy.timeout_ns = o->timeout_s * 1000000000ull;
	cfg.policy.timeout_action = PRECOPY_TIMEOUT_CANCEL;
	if (!o->auto_converge)
		cfg.policy.throttle_initial = 0; /* as QEMU without auto-converge */
	s->policy = cfg.policy;
	s->fixed_ns = cfg.policy.fixed_downtime_ns;
	s->e = precopy_engine_new(&cfg, &err);
	if (!s->e) {
		char msg[256];
		precopy_engine_config_check(&cfg, msg, sizeof(msg));
		int k = s->ndev ? vmm_devices_failed(s->devs, s->ndev) : -1;
		char what[384] = "";
		if (k >= 0)
			vmm_device_describe(&s->devs[k], what, sizeof(what));
		vmm_err("creating the precopy engine: %s%s%s%s%s", strerror(-err), msg[0] ? ": " : "", msg,
			what[0] ? "; " : "", what);
		return err;
	}
	return 0;
}



static void device_failed(struct src *s, unsigned k, const char *step)
{
	char what[384];

	vmm_device_describe(&s->devs[k], what, sizeof(what));
	vmm_err("%s: %s", what, step);
}

int vmm_source(const struct vmm_opts *o)
{
	struct src *s = calloc(1, sizeof(*s));
	const uint8_t *image;
	size_t len;
	uint32_t params[4];
	int r, status = VMM_EXIT_ERROR;

	if (!s) {
		vmm_err("allocating the source: %s", strerror(ENOMEM));
		return VMM_EXIT_ERROR;
	}
	s->o = o;
	snprintf(s->status, sizeof(s->status), "none");
	s->flip_one = getenv("PRECOPY_VMM_FAULT") && !strcmp(getenv("PRECOPY_VMM_FAULT"), "flip-page");
	if (vmm_guest_lookup(o->guest, &image, &len) < 0 || vmm_guest_params(o, o->mem, params) < 0)
		goto out_free;
	if (vmm_vm_create(&s->vm, o->mem, o->prealloc, o->ndevices > 0, o->serial) < 0 ||
	    vmm_vm_load(&s->vm, image, len) < 0)
		goto out;
	for (unsigned i = 0; i < o->ndevices; i++) {
		s->devs[i].path = o->devices[i];
		s->devs[i].stop_copy_hint = o->device_hints[i];
	}
	if (vmm_devices_open(s->devs, o->ndevices, &s->vm, o->io_timeout_ms) < 0)
		goto out;
	s->ndev = o->ndevices;
	/* the engine before the vCPU: ring mode is enabled on a VM without one */
	if (o->migrate_to && setup_engine(s) < 0)
		goto out;
	if (vmm_vm_create_vcpu(&s->vm, params) < 0)
		goto out;
	if (o->migrate_to && o->dirty_log == PRECOPY_KVM_LOG_RING) {
		void *ring = mmap(NULL, s->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->vm.vcpu_fd,
				  (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize());
		if (ring == MAP_FAILED) {
			vmm_err("mapping the vCPU's dirty ring: %s", strerror(errno));
			goto out;
		}
		s->ring = ring;
		if ((r = precopy_engine_kvm_add_vcpu(s->e, s->vm.vcpu_fd, ring)) < 0) {
			vmm_err("adding the vCPU to the dirty ring log: %s", strerror(-r));
			goto out;
		}
	}
	if (vmm_vm_start(&s->vm, 0) < 0 || vmm_vm_throttle_start(&s->vm) < 0)
		goto out;
	if (!o->migrate_to) {
		uint64_t end = o->run_for_ms ? vmm_now_ns() + o->run_for_ms * 1000000ull : UINT64_MAX;
		unsigned k = 0;
		r = 0;
		while (!atomic_load(&vmm_quit) && vmm_now_ns() < end && !atomic_load(&s->vm.failed) &&
		       (r = vmm_devices_serve(s->devs, s->ndev, 1000000, &k)) == 0)
			;
		if (atomic_load(&s->vm.failed))
			vmm_err("the vCPU failed: %s", s->vm.errmsg);
		else if (r < 0)
			device_failed(s, k, "answering its DMA");
		else
			status = VMM_EXIT_OK;
		goto out;
	}
	/* let the guest warm up */
	r = 0;
	for (uint64_t end = vmm_now_ns() + o->delay_ms * 1000000ull;
	     vmm_now_ns() < end && !atomic_load(&vmm_quit) && r == 0;) {
		unsigned k = 0;
		if ((r = vmm_devices_serve(s->devs, s->ndev, 1000000, &k)) < 0)
			device_failed(s, k, "answering its DMA before the migration");
	}
	if (r < 0)
		goto out;
	if (atomic_load(&s->vm.failed)) {
		vmm_err("the vCPU failed before the migration: %s", s->vm.errmsg);
		goto out;
	}
	status = migrate(s);
out:
	if (s->have_conn)
		vmm_conn_free(&s->conn);
	/* the vCPU stops first, then the engine (logging off on the open VM) */
	vmm_vm_join(&s->vm);
	precopy_engine_free(s->e);
	vmm_devices_close(s->devs, s->ndev);
	vmm_vm_destroy(&s->vm);
	if (s->ring)
		munmap(s->ring, s->ring_bytes);
out_free:
	free(s->trail);
	free(s);
	return status;
}
