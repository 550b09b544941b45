/* SPDX-License-Identifier: MIT */
/* bench-kvm: the library's KVM dirty-log harvest (precopy_kvm_log_sync) on
 * a real VM against the bare ioctls, in the same run, interleaved.
 *
 * One VM per mode, one memory slot (3.5 GiB by default, anonymous,
 * MAP_NORESERVE: only the pages the guest writes are ever allocated) with
 * KVM_MEM_LOG_DIRTY_PAGES, and one vCPU in 32-bit flat protected mode that
 * writes 4 bytes to `count` pseudo-random pages of the slot (32-bit LCG,
 * page = (state * npages) >> 32) and halts. Pages reach KVM's log only by
 * guest writes, so that is how the densities are made: count = density x
 * pages, the same seed every time, so the library and the floor harvest
 * the same set of pages (a little under count: the LCG repeats some). The
 * guest's run is not timed; the harvest after it is.
 *
 * The floors (the least any caller of the ioctls must do):
 *   classic  KVM_GET_DIRTY_LOG into a buffer, then one vectorised read of
 *            the buffer (bench_limit_read, the widest ISA the CPU runs);
 *   manual   KVM_GET_DIRTY_LOG, then per window of the library's clear
 *            chunk (1 GiB of pages) one vectorised read, and for a window
 *            with a dirty page KVM_CLEAR_DIRTY_LOG over the same span the
 *            library clears (first to last non-zero word of the window).
 * The library does the same ioctls plus its merge into a RAM log (log_bit
 * 0), its counts and its windows.
 *
 * Printed per case: ratio = library time / floor time (medians of the
 * interleaved repetitions), ratio_paired = median of the per-repetition
 * ratios; gbps is the slot bitmap's bytes over the floor's time and
 * limit_gbps over the library's, so that ratio = gbps / limit_gbps as in
 * the other benches. pages = distinct pages the guest dirtied (the
 * library's count, checked against the floor's). Targets: classic <= 1.10,
 * manual <= 1.20 at every density (issue 19). No /dev/kvm: says so, exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "lib/bench.h"
#include "precopy.h"

#define CODE_GPA 0x800u /* in page 0, clear of the 4 bytes the guest writes at offset 0 */

/* 32-bit code (GNU as, .code32); ebx = seed, ecx = count, esi = npages,
 * edi = value written. */
static const uint8_t guest_code[] = {
	0x85, 0xc9,                         /* 00 start: test ecx, ecx              */
	0x74, 0x18,                         /* 02        jz done                    */
	0x69, 0xdb, 0x6d, 0x4e, 0xc6, 0x41, /* 04 loop:  imul ebx, ebx, 1103515245  */
	0x81, 0xc3, 0x39, 0x30, 0x00, 0x00, /* 0a        add ebx, 12345             */
	0x89, 0xd8,                         /* 10        mov eax, ebx               */
	0xf7, 0xe6,                         /* 12        mul esi  (edx = page)      */
	0xc1, 0xe2, 0x0c,                   /* 14        shl edx, 12                */
	0x89, 0x3a,                         /* 17        mov [edx], edi             */
	0x49,                               /* 19        dec ecx                    */
	0x75, 0xe8,                         /* 1a        jnz loop                   */
	0xf4,                               /* 1c done:  hlt                        */
	0xeb, 0xfd,                         /* 1d        jmp done                   */
};

struct vm {
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem;
	uint64_t size, npages, nwords;
	enum precopy_kvm_mode mode;
	struct precopy_kvm_log *log;
	struct precopy_bitmap ram; /* the library's RAM log */
	uint64_t *buf;             /* the floor's GET buffer */
	uint64_t clear_words;      /* the library's clear window, in words */
};

/* The library's sys table: the real one, with its ioctls timed, so that a
 * line can say how much of each side's time the kernel took. */
static const struct precopy_sys *real_sys;
static struct precopy_sys_ops timed_ops;
static struct precopy_sys timed_sys;
static uint64_t ioctl_ns; /* time in the ioctls of the current harvest */

static int timed_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	uint64_t t0 = bench_now_ns();
	int r = real_sys->ops->ioctl(real_sys->ctx, fd, req, arg);

	ioctl_ns += bench_now_ns() - t0;
	return r;
}

static const struct precopy_sys *sys_timed(void)
{
	if (!real_sys) {
		real_sys = precopy_sys_real();
		timed_ops = *real_sys->ops;
		timed_ops.ioctl = timed_ioctl;
		timed_sys.ops = &timed_ops;
		timed_sys.ctx = NULL;
	}
	return &timed_sys;
}

static int neg(int r)
{
	return r < 0 ? -errno : r;
}

static void flat_seg(struct kvm_segment *s, int code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffffu;
	s->selector = code ? 0x8 : 0x10;
	s->type = code ? 0xb : 0x3; /* execute/read accessed; read/write accessed */
	s->present = 1;
	s->dpl = 0;
	s->db = 1; /* 32-bit */
	s->s = 1;
	s->l = 0;
	s->g = 1;
}

static void vm_close(struct vm *v)
{
	if (v->log) {
		(void)precopy_kvm_log_stop(v->log);
		precopy_kvm_log_free(v->log);
	}
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->vcpu_fd >= 0)
		close(v->vcpu_fd);
	if (v->mem)
		munmap(v->mem, v->size);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	if (v->kvm_fd >= 0)
		close(v->kvm_fd);
	free(v->ram.words);
	free(v->buf);
	memset(v, 0, sizeof(*v));
	v->kvm_fd = v->vm_fd = v->vcpu_fd = -1;
}

/* Create the VM, its slot (no logging yet), the vCPU, and the library's
 * log in `mode` with logging started. Returns 0 or -errno (step in *what). */
static int vm_open(struct vm *v, uint64_t size, enum precopy_kvm_mode mode, const char **what)
{
	struct kvm_sregs sregs;
	struct precopy_kvm_log_config cfg;
	struct precopy_kvm_slot slot;
	void *p;
	int r, sz;

	memset(v, 0, sizeof(*v));
	v->kvm_fd = v->vm_fd = v->vcpu_fd = -1;
	v->size = size;
	v->npages = size / 4096;
	v->nwords = (v->npages + 63) / 64;
	v->mode = mode;
	*what = "open /dev/kvm";
	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return -errno;
	*what = "KVM_CREATE_VM";
	v->vm_fd = neg(ioctl(v->kvm_fd, KVM_CREATE_VM, 0));
	if (v->vm_fd < 0)
		return v->vm_fd;
	*what = "mmap guest memory";
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->mem = p;
	memcpy(v->mem + CODE_GPA, guest_code, sizeof(guest_code));
	*what = "KVM_SET_USER_MEMORY_REGION";
	struct kvm_userspace_memory_region reg = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uintptr_t)p,
	};
	if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return -errno;
	*what = "precopy_kvm_log_new";
	memset(&cfg, 0, sizeof(cfg));
	cfg.version = PRECOPY_KVM_CONFIG_VERSION;
	cfg.mode = mode;
	v->log = precopy_kvm_log_new(sys_timed(), v->vm_fd, &cfg, &r);
	if (!v->log)
		return r;
	v->clear_words = PRECOPY_KVM_CLEAR_DEFAULT_PAGES / 64;
	*what = "allocate bitmaps";
	v->ram.words = calloc(v->nwords, 8);
	v->ram.nbits = v->npages;
	v->buf = calloc(v->nwords, 8);
	if (!v->ram.words || !v->buf)
		return -ENOMEM;
	memset(&slot, 0, sizeof(slot));
	slot.slot = 0;
	slot.memory_size = size;
	slot.userspace_addr = (uintptr_t)p;
	slot.log = &v->ram;
	*what = "precopy_kvm_log_add_slot";
	r = precopy_kvm_log_add_slot(v->log, &slot);
	if (r < 0)
		return r;
	*what = "precopy_kvm_log_start";
	r = precopy_kvm_log_start(v->log);
	if (r < 0)
		return r;
	*what = "KVM_CREATE_VCPU";
	v->vcpu_fd = neg(ioctl(v->vm_fd, KVM_CREATE_VCPU, 0));
	if (v->vcpu_fd < 0)
		return v->vcpu_fd;
	*what = "map kvm_run";
	sz = ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < 0)
		return -errno;
	p = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->run = p;
	v->run_size = (size_t)sz;
	*what = "KVM_SET_SREGS (32-bit flat protected mode)";
	if (ioctl(v->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	flat_seg(&sregs.cs, 1);
	flat_seg(&sregs.ds, 0);
	flat_seg(&sregs.es, 0);
	flat_seg(&sregs.ss, 0);
	flat_seg(&sregs.fs, 0);
	flat_seg(&sregs.gs, 0);
	sregs.cr0 |= 1; /* PE, no paging */
	if (ioctl(v->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	return 0;
}

/* Run the guest once: `count` writes from `seed`. Returns 0 or -errno. */
static int guest_dirty(struct vm *v, uint32_t count, uint32_t seed, uint32_t value)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	regs.rbx = seed;
	regs.rcx = count;
	regs.rsi = (uint32_t)v->npages;
	regs.rdi = value;
	if (ioctl(v->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	for (;;) {
		if (ioctl(v->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (v->run->exit_reason == KVM_EXIT_HLT)
			return 0;
		if (v->run->exit_reason != KVM_EXIT_INTR) {
			fprintf(stderr, "bench-kvm: guest exit %u\n", v->run->exit_reason);
			return -EIO;
		}
	}
}

/* --rt: each timed harvest runs at SCHED_FIFO priority 1 (and only it:
 * the guest's runs stay SCHED_OTHER), so the other jobs on the machine do
 * not preempt it. Set when the switch worked. */
static int rt_on;

static void rt_enter(void)
{
	struct sched_param p = { .sched_priority = 1 };

	if (rt_on)
		(void)sched_setscheduler(0, SCHED_FIFO, &p);
}

static void rt_leave(void)
{
	struct sched_param p = { .sched_priority = 0 };

	if (rt_on)
		(void)sched_setscheduler(0, SCHED_OTHER, &p);
}

static enum bench_isa best_isa(void)
{
	if (bench_isa_supported(BENCH_ISA_AVX512))
		return BENCH_ISA_AVX512;
	if (bench_isa_supported(BENCH_ISA_AVX2))
		return BENCH_ISA_AVX2;
	return BENCH_ISA_SSE2;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
	uint64_t t0 = bench_now_ns();
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	ioctl_ns += bench_now_ns() - t0;
	return r < 0 ? -errno : r;
}

/* The floor. Returns the count of dirty pages (from the buffer, outside the
 * timed part) or -errno; *ns gets the time of the GET, the read and the
 * CLEARs. */
static int64_t floor_harvest(struct vm *v, enum bench_isa isa, uint64_t *ns, uint64_t *cpu)
{
	struct kvm_dirty_log g;
	uint64_t t0, c0, any = 0;
	int64_t pages = 0;
	int r;

	memset(&g, 0, sizeof(g));
	g.slot = 0;
	g.dirty_bitmap = v->buf;
	rt_enter();
	t0 = bench_now_ns();
	c0 = bench_cpu_ns();
	r = xioctl(v->vm_fd, KVM_GET_DIRTY_LOG, &g);
	if (r < 0) {
		rt_leave();
		return r;
	}
	if (v->mode == PRECOPY_KVM_LOG_CLASSIC) {
		any = bench_limit_read(isa, v->buf, v->nwords);
	} else {
		for (uint64_t w0 = 0; w0 < v->nwords; w0 += v->clear_words) {
			uint64_t end = w0 + v->clear_words < v->nwords ? w0 + v->clear_words : v->nwords;
			uint64_t first = w0, last = end - 1;

			if (!bench_limit_read(isa, v->buf + w0, end - w0))
				continue;
			any = 1;
			while (!v->buf[first])
				first++;
			while (!v->buf[last])
				last--;
			uint64_t stop = (last + 1) * 64 < v->npages ? (last + 1) * 64 : v->npages;
			struct kvm_clear_dirty_log c = {
				.slot = 0,
				.num_pages = (uint32_t)(stop - first * 64),
				.first_page = first * 64,
				.dirty_bitmap = &v->buf[first],
			};
			r = xioctl(v->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);
			if (r < 0) {
				rt_leave();
				return r;
			}
		}
	}
	*cpu = bench_cpu_ns() - c0;
	*ns = bench_now_ns() - t0;
	rt_leave();
	bench_sink(any);
	for (uint64_t i = 0; i < v->nwords; i++)
		pages += __builtin_popcountll(v->buf[i]);
	return pages;
}

/* The library. Returns the count of dirty pages it reported, or -errno. */
static int64_t lib_harvest(struct vm *v, uint64_t *ns, uint64_t *cpu)
{
	struct precopy_kvm_log_stats st;
	uint64_t t0, c0;
	int64_t r;

	rt_enter();
	t0 = bench_now_ns();
	c0 = bench_cpu_ns();
	r = precopy_kvm_log_sync(v->log);
	*cpu = bench_cpu_ns() - c0;
	*ns = bench_now_ns() - t0;
	rt_leave();
	if (r < 0)
		return r;
	if (precopy_kvm_log_stats(v->log, &st) < 0 || st.last_new != st.last_pages ||
	    precopy_bitmap_count(&v->ram) != st.last_pages)
		return -EPROTO;
	precopy_bitmap_zero(&v->ram); /* so that next time newly set == reported: checked */
	return (int64_t)st.last_pages;
}

static const char *mode_name(enum precopy_kvm_mode m)
{
	return m == PRECOPY_KVM_LOG_CLASSIC ? "classic" : "manual";
}

/* One case: returns 0, or 1 on a failure (printed). */
static int run_case(struct bench_report *rep, const struct bench_opts *o, struct vm *v, const char *dname,
		    double density, double target)
{
	static struct bench_samples lib, flo, paired, lib_cpu, flo_cpu, lib_ioc, flo_ioc;
	enum bench_isa isa = best_isa();
	uint32_t count = (uint32_t)(density * (double)v->npages + 0.5), seed = 0x2545f491u;
	int64_t lib_pages = -1, floor_pages = -1;
	struct bench_line l;
	char name[64], limit[32];
	const char *check = "ok";
	double ratio;
	int r;

	snprintf(name, sizeof(name), "kvm-%s-%s", mode_name(v->mode), dname);
	if (!bench_case_selected(o, name))
		return 0;
	lib.n = flo.n = paired.n = lib_cpu.n = flo_cpu.n = lib_ioc.n = flo_ioc.n = 0;
	/* warm-up: fault the pages in, split huge pages, both paths once */
	for (int i = -1; i < o->reps; i++) {
		for (int k = 0; k < 2; k++) {
			int lib_turn = (k == 0) == (i % 2 == 0); /* alternate which goes first */
			uint64_t ns = 0, cpu = 0;
			int64_t pages;

			r = guest_dirty(v, count, seed, (uint32_t)i);
			if (r < 0) {
				fprintf(stderr, "bench-kvm: %s: guest run: %s\n", name, strerror(-r));
				return 1;
			}
			ioctl_ns = 0;
			if (lib_turn && !o->aa)
				pages = lib_harvest(v, &ns, &cpu);
			else
				pages = floor_harvest(v, isa, &ns, &cpu);
			if (pages < 0) {
				fprintf(stderr, "bench-kvm: %s: %s harvest: %s\n", name, lib_turn ? "library" : "floor",
					strerror((int)-pages));
				return 1;
			}
			if (lib_turn) {
				if (lib_pages >= 0 && pages != lib_pages)
					check = "FAIL";
				lib_pages = pages;
				if (i >= 0) {
					bench_samples_add(&lib, ns);
					bench_samples_add(&lib_cpu, cpu);
					bench_samples_add(&lib_ioc, ioctl_ns);
				}
			} else {
				if (floor_pages >= 0 && pages != floor_pages)
					check = "FAIL";
				floor_pages = pages;
				if (i >= 0) {
					bench_samples_add(&flo, ns);
					bench_samples_add(&flo_cpu, cpu);
					bench_samples_add(&flo_ioc, ioctl_ns);
				}
			}
		}
		if (i >= 0)
			bench_samples_add(&paired, (uint64_t)(1e6 * (double)lib.ns[lib.n - 1] / (double)flo.ns[flo.n - 1]));
	}
	if (lib_pages != floor_pages)
		check = "FAIL";
	ratio = bench_samples_median(&lib) / bench_samples_median(&flo);
	snprintf(limit, sizeof(limit), "%s.%s", v->mode == PRECOPY_KVM_LOG_CLASSIC ? "get+read" : "get+read+clear",
		 bench_isa_name(isa));
	bench_line_init(&l, name, bench_gbps(v->nwords * 8, bench_samples_median(&flo)),
			bench_gbps(v->nwords * 8, bench_samples_median(&lib)));
	bench_line_num(&l, "ratio_paired", "%.3f", bench_samples_median(&paired) / 1e6);
	bench_line_num(&l, "ratio_cpu", "%.3f", bench_samples_median(&lib_cpu) / bench_samples_median(&flo_cpu));
	bench_line_num(&l, "target", "%.2f", target);
	bench_line_str(&l, "met", ratio <= target ? "yes" : "no");
	bench_line_num(&l, "lib_us", "%.1f", bench_samples_median(&lib) / 1e3);
	bench_line_num(&l, "floor_us", "%.1f", bench_samples_median(&flo) / 1e3);
	bench_line_num(&l, "lib_cpu_us", "%.1f", bench_samples_median(&lib_cpu) / 1e3);
	bench_line_num(&l, "floor_cpu_us", "%.1f", bench_samples_median(&flo_cpu) / 1e3);
	bench_line_num(&l, "lib_ioctl_us", "%.1f", bench_samples_median(&lib_ioc) / 1e3);
	bench_line_num(&l, "floor_ioctl_us", "%.1f", bench_samples_median(&flo_ioc) / 1e3);
	bench_line_num(&l, "cpu", "%.2f", bench_samples_median(&lib_cpu) / bench_samples_median(&lib));
	bench_line_num(&l, "lib_iqr", "%.2f",
		       (bench_samples_quantile(&lib, 0.75) - bench_samples_quantile(&lib, 0.25)) /
			       bench_samples_median(&lib));
	bench_line_str(&l, "limit", limit);
	bench_line_str(&l, "variant", precopy_bitmap_simd_name(precopy_bitmap_simd_active()));
	bench_line_int(&l, "slot_mib", (int64_t)(v->size >> 20));
	bench_line_int(&l, "writes", count);
	bench_line_int(&l, "pages", lib_pages);
	bench_line_num(&l, "density_pct", "%.3f", 100.0 * (double)lib_pages / (double)v->npages);
	bench_line_int(&l, "reps", o->reps);
	bench_line_str(&l, "rt", rt_on ? "yes" : "no");
	bench_line_str(&l, "check", check);
	bench_report_line(rep, &l);
	return strcmp(check, "ok") != 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		double density;
	} dens[] = { { "0pct", 0.0 }, { "0.1pct", 0.001 }, { "1pct", 0.01 } };
	static const enum precopy_kvm_mode modes[] = { PRECOPY_KVM_LOG_CLASSIC, PRECOPY_KVM_LOG_MANUAL };
	struct bench_opts o;
	struct bench_report rep;
	uint64_t size;
	int r, bad = 0;

	/* --rt is this bench's own option: take it out before the common parse */
	for (int i = 1, j = 1; i <= argc; i++) {
		if (i < argc && !strcmp(argv[i], "--rt")) {
			rt_on = 1;
			continue;
		}
		argv[j++] = argv[i]; /* argv[argc] is NULL */
		if (i == argc)
			argc = j - 1;
	}
	r = bench_parse_opts(&o, argc, argv,
			     "  --size BYTES     the memory slot (default 3.5G; a multiple of 256K, below 4G)\n"
			     "  --variant V      bitmap SIMD variant of the library: scalar|avx2|avx512|auto\n"
			     "  --rt             run each timed harvest at SCHED_FIFO 1 (needs CAP_SYS_NICE):\n"
			     "                   other jobs on the machine cannot preempt it\n",
			     15);
	if (r)
		return r > 0 ? 0 : 2;
	size = o.size_bytes ? o.size_bytes : 3584ull << 20;
	if (size % (256u << 10) || size > (3584ull << 20) || size < (1u << 20)) {
		fprintf(stderr, "bench-kvm: --size must be a multiple of 256K in [1M, 3.5G]\n");
		return 2;
	}
	if (o.list) {
		for (size_t m = 0; m < 2; m++)
			for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++)
				printf("kvm-%s-%s  precopy_kvm_log_sync (%s) vs the bare ioctls, %s of the slot dirty\n",
				       mode_name(modes[m]), dens[d].name, mode_name(modes[m]), dens[d].name);
		return 0;
	}
	if (o.variant) {
		enum precopy_simd want = !strcmp(o.variant, "scalar") ? PRECOPY_SIMD_SCALAR
					 : !strcmp(o.variant, "avx2") ? PRECOPY_SIMD_AVX2
					 : !strcmp(o.variant, "avx512") ? PRECOPY_SIMD_AVX512
									: PRECOPY_SIMD_AUTO;
		if (precopy_bitmap_simd_force(want) < 0) {
			fprintf(stderr, "bench-kvm: variant %s not supported here\n", o.variant);
			return 2;
		}
	}
	if (rt_on) {
		struct sched_param p = { .sched_priority = 1 };

		if (sched_setscheduler(0, SCHED_FIFO, &p) < 0) {
			fprintf(stderr, "bench-kvm: --rt: SCHED_FIFO: %s\n", strerror(errno));
			return 2;
		}
		rt_leave();
	}
	bench_report_begin(&rep, "bench-kvm", &o,
			   "ratio = library harvest time / floor time (gbps: floor, limit_gbps: library; "
			   "bytes = the slot's bitmap)");
	for (size_t m = 0; m < 2 && !bad; m++) {
		const char *what = "";
		struct vm v;
		int any = 0;

		for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]); d++) {
			char name[64];

			snprintf(name, sizeof(name), "kvm-%s-%s", mode_name(modes[m]), dens[d].name);
			any |= bench_case_selected(&o, name);
		}
		if (!any)
			continue;
		r = vm_open(&v, size, modes[m], &what);
		if (r < 0) {
			vm_close(&v);
			if (r == -ENOENT || r == -EACCES || r == -ENODEV || r == -EPERM) {
				printf("# bench-kvm: %s: %s: KVM cases skipped\n", what, strerror(-r));
				break;
			}
			fprintf(stderr, "bench-kvm: %s mode: %s: %s\n", mode_name(modes[m]), what, strerror(-r));
			bad = 1;
			break;
		}
		for (size_t d = 0; d < sizeof(dens) / sizeof(dens[0]) && !bad; d++)
			bad |= run_case(&rep, &o, &v, dens[d].name, dens[d].density,
					modes[m] == PRECOPY_KVM_LOG_CLASSIC ? 1.10 : 1.20);
		vm_close(&v);
	}
	bench_report_end(&rep);
	return bad;
}
