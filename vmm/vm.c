/* SPDX-License-Identifier: MIT */
/* vmm/vm.c — the VM of precopy-vmm: one KVM memory slot, one vCPU thread,
 * a serial port at 0x3f8, the throttle (the vCPU sleeps a percentage of
 * each 10 ms slice, as QEMU's cpu-throttle does) and the park/resume
 * handshake the migration thread uses to stop the guest and to move its
 * registers. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm.h"

#define COM1 0x3f8u
#define SLICE_NS 10000000ull /* the throttle's time slice, as QEMU's */
#define HLT_NS 10000000ull   /* the idle guest's "timer" period */

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vmm_vm_create(struct vmm_vm *vm, uint64_t mem, int prealloc, int shared, const char *serial_path)
{
	struct kvm_userspace_memory_region region;
	int r, flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = vm->serial_fd = vm->ram_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->mem = mem;
	if (serial_path) {
		do
			vm->serial_fd = open(serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		while (vm->serial_fd < 0 && errno == EINTR);
		if (vm->serial_fd < 0) {
			vmm_err("opening the serial output %s: %s", serial_path, strerror(errno));
			return -errno;
		}
	} else {
		vm->serial_fd = dup(STDOUT_FILENO);
	}
	do
		vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	while (vm->kvm_fd < 0 && errno == EINTR);
	if (vm->kvm_fd < 0) {
		r = -errno;
		vmm_err("opening /dev/kvm: %s", strerror(-r));
		return r;
	}
	if ((r = xioctl(vm->kvm_fd, KVM_GET_API_VERSION, NULL)) != KVM_API_VERSION) {
		vmm_err("KVM_GET_API_VERSION: %d, expected %d", r, KVM_API_VERSION);
		return -ENOTSUP;
	}
	if ((r = xioctl(vm->kvm_fd, KVM_CREATE_VM, 0)) < 0) {
		vmm_err("KVM_CREATE_VM: %s", strerror(-r));
		return r;
	}
	vm->vm_fd = r;
	/* Intel without unrestricted guest needs these for real mode; harmless
	 * elsewhere (QEMU's addresses, above any RAM this VMM maps) */
	if ((r = xioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)0xfffbd000ul)) < 0) {
		vmm_err("KVM_SET_TSS_ADDR: %s", strerror(-r));
		return r;
	}
	if (shared) {
		/* a memfd the device servers map (vmm.h) */
		vm->ram_fd = memfd_create("precopy-vmm-ram", MFD_CLOEXEC);
		if (vm->ram_fd < 0 || ftruncate(vm->ram_fd, (off_t)mem) < 0) {
			r = -errno;
			vmm_err("guest RAM in a memfd of %llu bytes: %s", (unsigned long long)mem, strerror(-r));
			return r;
		}
		flags = MAP_SHARED;
	}
	if (prealloc)
		flags |= MAP_POPULATE;
	vm->ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, flags, vm->ram_fd, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		r = -errno;
		vmm_err("mmap of %llu bytes of guest RAM: %s", (unsigned long long)mem, strerror(-r));
		return r;
	}
	region = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0, .memory_size = mem,
						       .userspace_addr = (uintptr_t)vm->ram };
	if ((r = xioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region)) < 0) {
		vmm_err("KVM_SET_USER_MEMORY_REGION (slot 0, %llu bytes): %s", (unsigned long long)mem, strerror(-r));
		return r;
	}
	return 0;
}

static void real_mode_seg(struct kvm_segment *s)
{
	s->base = 0;
	s->selector = 0;
	s->limit = 0xffff;
}

int vmm_vm_create_vcpu(struct vmm_vm *vm, const uint32_t params[4])
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int r, size;
	void *p;

	if ((r = xioctl(vm->vm_fd, KVM_CREATE_VCPU, 0)) < 0) {
		vmm_err("KVM_CREATE_VCPU: %s", strerror(-r));
		return r;
	}
	vm->vcpu_fd = r;
	if ((size = xioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL)) < 0) {
		vmm_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(-size));
		return size;
	}
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		vmm_err("mmap of kvm_run: %s", strerror(-r));
		return r;
	}
	vm->run = p;
	vm->run_size = (size_t)size;
	if ((r = xioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs)) < 0) {
		vmm_err("KVM_GET_SREGS: %s", strerror(-r));
		return r;
	}
	real_mode_seg(&sregs.cs);
	real_mode_seg(&sregs.ds);
	real_mode_seg(&sregs.es);
	real_mode_seg(&sregs.ss);
	real_mode_seg(&sregs.fs);
	real_mode_seg(&sregs.gs);
	if ((r = xioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs)) < 0) {
		vmm_err("KVM_SET_SREGS: %s", strerror(-r));
		return r;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = VMM_BOOT_GPA;
	regs.rflags = 2;
	regs.rsp = VMM_BOOT_GPA;
	if (params) {
		regs.rax = 0x50435650u; /* PARAM_MAGIC: the guest takes these (vmm/guests/common.inc) */
		regs.rbx = params[0];
		regs.rcx = params[1];
		regs.rdx = params[2];
		regs.rsi = params[3];
	}
	if ((r = xioctl(vm->vcpu_fd, KVM_SET_REGS, &regs)) < 0) {
		vmm_err("KVM_SET_REGS: %s", strerror(-r));
		return r;
	}
	return 0;
}

int vmm_vm_load(struct vmm_vm *vm, const void *image, size_t len)
{
	if (len == 0 || VMM_BOOT_GPA + len > vm->mem || VMM_BOOT_GPA + len > 0xa0000) {
		vmm_err("loading the guest: %zu bytes do not fit between 0x7c00 and 0xa0000", len);
		return -E2BIG;
	}
	memcpy(vm->ram + VMM_BOOT_GPA, image, len);
	return 0;
}

/* ---- serial -------------------------------------------------------------- */

void vmm_serial_flush(struct vmm_vm *vm)
{
	if (vm->line_len && vm->serial_fd >= 0)
		(void)write_all(vm->serial_fd, vm->line, vm->line_len);
	vm->line_len = 0;
}

static void serial_out(struct vmm_vm *vm, uint16_t port, uint8_t v)
{
	struct vmm_serial_state *s = &vm->serial;
	int dlab = s->lcr & 0x80;

	switch (port - COM1) {
	case 0:
		if (dlab) {
			s->dll = v;
			break;
		}
		vm->line[vm->line_len++] = (char)v;
		if (v == '\n') {
			size_t n = vm->line_len - 1 < sizeof(vm->last_line) - 1 ? vm->line_len - 1
										: sizeof(vm->last_line) - 1;
			memcpy(vm->last_line, vm->line, n);
			vm->last_line[n] = 0;
			atomic_fetch_add(&vm->serial_lines, 1);
		}
		if (v == '\n' || vm->line_len == sizeof(vm->line))
			vmm_serial_flush(vm);
		break;
	case 1:
		if (dlab)
			s->dlm = v;
		else
			s->ier = v & 0x0f;
		break;
	case 2: s->fcr = v; break;
	case 3: s->lcr = v; break;
	case 4: s->mcr = v & 0x1f; break;
	case 7: s->scr = v; break;
	default: break;
	}
}

static uint8_t serial_in(struct vmm_vm *vm, uint16_t port)
{
	struct vmm_serial_state *s = &vm->serial;
	int dlab = s->lcr & 0x80;

	switch (port - COM1) {
	case 0: return dlab ? s->dll : 0;
	case 1: return dlab ? s->dlm : s->ier;
	case 2: return 0x01 | (s->fcr & 1 ? 0xc0 : 0); /* no interrupt pending */
	case 3: return s->lcr;
	case 4: return s->mcr;
	case 5: return 0x60; /* transmitter empty: output is instantaneous */
	case 6: return 0xb0;
	default: return s->scr;
	}
}

static void handle_io(struct vmm_vm *vm)
{
	struct kvm_run *run = vm->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		uint16_t port = run->io.port;

		if (port >= COM1 && port < COM1 + 8 && run->io.size == 1) {
			if (run->io.direction == KVM_EXIT_IO_OUT)
				serial_out(vm, port, *data);
			else
				*data = serial_in(vm, port);
		} else if (run->io.direction == KVM_EXIT_IO_IN) {
			memset(data, 0xff, run->io.size); /* nothing there */
		}
	}
}

/* ---- the vCPU thread ---------------------------------------------------- */

static void kick_handler(int sig) { (void)sig; }

void vmm_vm_kick(struct vmm_vm *vm)
{
	if (!vm->started)
		return;
	__atomic_store_n(&vm->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(vm->thread, SIGUSR1);
}

static int get_state(struct vmm_vm *vm, struct vmm_vcpu_state *s)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->magic = VMM_STATE_MAGIC;
	s->version = VMM_STATE_VERSION;
	s->size = sizeof(*s);
	if ((r = xioctl(vm->vcpu_fd, KVM_GET_REGS, &s->regs)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_GET_SREGS, &s->sregs)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_GET_FPU, &s->fpu)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_GET_VCPU_EVENTS, &s->events)) < 0) {
		snprintf(vm->errmsg, sizeof(vm->errmsg), "saving the vCPU registers: %s", strerror(-r));
		return r;
	}
	s->serial = vm->serial;
	s->serial_lines = atomic_load(&vm->serial_lines);
	return 0;
}

static int set_state(struct vmm_vm *vm, const struct vmm_vcpu_state *s)
{
	int r;

	if ((r = xioctl(vm->vcpu_fd, KVM_SET_SREGS, (void *)&s->sregs)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_SET_REGS, (void *)&s->regs)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_SET_FPU, (void *)&s->fpu)) < 0 ||
	    (r = xioctl(vm->vcpu_fd, KVM_SET_VCPU_EVENTS, (void *)&s->events)) < 0) {
		snprintf(vm->errmsg, sizeof(vm->errmsg), "restoring the vCPU registers: %s", strerror(-r));
		return r;
	}
	vm->serial = s->serial;
	atomic_store(&vm->serial_lines, s->serial_lines);
	return 0;
}

/* Complete a pending I/O exit (KVM finishes it at the next KVM_RUN) so the
 * registers are consistent, then save them and wait to be resumed. */
static void park(struct vmm_vm *vm)
{
	int r;

	__atomic_store_n(&vm->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	r = ioctl(vm->vcpu_fd, KVM_RUN, 0);
	if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
		/* immediate_exit always ends in -EINTR; anything else is a bug */
		snprintf(vm->errmsg, sizeof(vm->errmsg), "KVM_RUN with immediate_exit: %d (%s)", r,
			 r < 0 ? strerror(errno) : "no EINTR");
		atomic_store(&vm->failed, 1);
	}
	__atomic_store_n(&vm->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	if (!atomic_load(&vm->failed) && get_state(vm, &vm->saved) < 0)
		atomic_store(&vm->failed, 1);
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->parked, 1);
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->stop_req) && !atomic_load(&vm->quit))
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (vm->restore_pending && !atomic_load(&vm->quit)) {
		vm->restore_pending = 0;
		if (set_state(vm, &vm->restore) < 0)
			atomic_store(&vm->failed, 1);
	}
	atomic_store(&vm->parked, 0);
	atomic_store(&vm->running_since_ns, vmm_now_ns());
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* Sleep up to ns, ending early when the migration thread wants the vCPU. */
static void vcpu_nap(struct vmm_vm *vm, uint64_t ns)
{
	uint64_t end = vmm_now_ns() + ns;

	while (!atomic_load(&vm->stop_req) && !atomic_load(&vm->quit)) {
		uint64_t now = vmm_now_ns();
		if (now >= end)
			break;
		vmm_sleep_ns(end - now < 1000000 ? end - now : 1000000);
	}
}

static void *vcpu_main(void *arg)
{
	struct vmm_vm *vm = arg;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (!atomic_load(&vm->stop_req)) {
		/* started running: a restored state goes in first */
		pthread_mutex_lock(&vm->lock);
		if (vm->restore_pending) {
			vm->restore_pending = 0;
			if (set_state(vm, &vm->restore) < 0)
				atomic_store(&vm->failed, 1);
		}
		atomic_store(&vm->running_since_ns, vmm_now_ns());
		pthread_mutex_unlock(&vm->lock);
	}
	for (;;) {
		uint64_t nap;
		int r;

		if (atomic_load(&vm->quit))
			break;
		if (atomic_load(&vm->stop_req) || atomic_load(&vm->failed)) {
			if (atomic_load(&vm->failed)) {
				/* park for good: the migration thread reports it */
				pthread_mutex_lock(&vm->lock);
				atomic_store(&vm->parked, 1);
				pthread_cond_broadcast(&vm->cond);
				while (!atomic_load(&vm->quit))
					pthread_cond_wait(&vm->cond, &vm->lock);
				pthread_mutex_unlock(&vm->lock);
				break;
			}
			park(vm);
			continue;
		}
		if ((nap = atomic_exchange(&vm->throttle_sleep_ns, 0)) != 0) {
			vcpu_nap(vm, nap);
			continue;
		}
		r = ioctl(vm->vcpu_fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				atomic_store(&vm->kicked_out_ns, vmm_now_ns());
				__atomic_store_n(&vm->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			snprintf(vm->errmsg, sizeof(vm->errmsg), "KVM_RUN: %s", strerror(errno));
			atomic_store(&vm->failed, 1);
			continue;
		}
		switch (vm->run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(vm);
			break;
		case KVM_EXIT_HLT:
			vcpu_nap(vm, HLT_NS);
			break;
		case KVM_EXIT_DIRTY_RING_FULL:
			/* the migration thread harvests; bounded wait, then retry */
			atomic_store(&vm->ring_full, 1);
			for (int i = 0; i < 10000 && atomic_load(&vm->ring_full) && !atomic_load(&vm->stop_req) &&
					!atomic_load(&vm->quit); i++)
				vmm_sleep_ns(100000);
			break;
		case KVM_EXIT_SHUTDOWN:
			snprintf(vm->errmsg, sizeof(vm->errmsg), "the guest shut down (triple fault) at rip %#llx",
				 (unsigned long long)0);
			atomic_store(&vm->failed, 1);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			snprintf(vm->errmsg, sizeof(vm->errmsg), "KVM_RUN: entry failed (reason %#llx)",
				 (unsigned long long)vm->run->fail_entry.hardware_entry_failure_reason);
			atomic_store(&vm->failed, 1);
			break;
		default:
			snprintf(vm->errmsg, sizeof(vm->errmsg), "KVM_RUN: unexpected exit reason %u",
				 vm->run->exit_reason);
			atomic_store(&vm->failed, 1);
			break;
		}
	}
	return NULL;
}

int vmm_vm_start(struct vmm_vm *vm, int paused)
{
	struct sigaction sa;
	sigset_t set, old;
	int r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN returns -EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	/* only the vCPU thread takes SIGUSR1 */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	atomic_store(&vm->stop_req, paused);
	atomic_store(&vm->running_since_ns, 0);
	r = pthread_create(&vm->thread, NULL, vcpu_main, vm);
	if (r) {
		vmm_err("starting the vCPU thread: %s", strerror(r));
		return -r;
	}
	vm->started = 1;
	return 0;
}

int vmm_vm_pause(struct vmm_vm *vm, uint64_t timeout_ns)
{
	uint64_t end = vmm_now_ns() + timeout_ns;

	atomic_store(&vm->stop_req, 1);
	while (!atomic_load(&vm->parked)) {
		vmm_vm_kick(vm);
		if (vmm_now_ns() > end) {
			vmm_err("stopping the vCPU: no answer within %llu ms",
				(unsigned long long)(timeout_ns / 1000000));
			return -ETIMEDOUT;
		}
		pthread_mutex_lock(&vm->lock);
		if (!atomic_load(&vm->parked)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
		}
		pthread_mutex_unlock(&vm->lock);
	}
	if (atomic_load(&vm->failed)) {
		vmm_err("the vCPU failed: %s", vm->errmsg);
		return -EIO;
	}
	return 0;
}

void vmm_vm_resume(struct vmm_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->running_since_ns, 0);
	atomic_store(&vm->stop_req, 0);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

int vmm_vm_wait_running(struct vmm_vm *vm, uint64_t timeout_ns, uint64_t *when)
{
	uint64_t end = vmm_now_ns() + timeout_ns;

	while (!atomic_load(&vm->running_since_ns)) {
		if (atomic_load(&vm->failed)) {
			vmm_err("resuming the vCPU: %s", vm->errmsg);
			return -EIO;
		}
		if (vmm_now_ns() > end) {
			vmm_err("resuming the vCPU: not running after %llu ms", (unsigned long long)(timeout_ns / 1000000));
			return -ETIMEDOUT;
		}
		vmm_sleep_ns(20000);
	}
	if (atomic_load(&vm->failed)) {
		vmm_err("resuming the vCPU: %s", vm->errmsg);
		return -EIO;
	}
	*when = atomic_load(&vm->running_since_ns);
	return 0;
}

/* QEMU's cpu-throttle: at p percent the vCPU runs a 10 ms slice, then
 * sleeps p / (100 - p) of it. */
static void *throttle_main(void *arg)
{
	struct vmm_vm *vm = arg;

	while (!atomic_load(&vm->quit)) {
		uint32_t p = atomic_load(&vm->throttle_pct);

		vmm_sleep_ns(SLICE_NS);
		if (!p || p > 99 || atomic_load(&vm->stop_req))
			continue;
		atomic_store(&vm->throttle_sleep_ns, SLICE_NS * p / (100 - p));
		vmm_vm_kick(vm);
		/* the slice starts when the sleep is over */
		for (int i = 0; i < 1000 && atomic_load(&vm->throttle_sleep_ns) && !atomic_load(&vm->quit); i++)
			vmm_sleep_ns(100000);
		vmm_sleep_ns(SLICE_NS * p / (100 - p));
	}
	return NULL;
}

int vmm_vm_throttle_start(struct vmm_vm *vm)
{
	int r = pthread_create(&vm->throttle_thread, NULL, throttle_main, vm);

	if (r) {
		vmm_err("starting the throttle thread: %s", strerror(r));
		return -r;
	}
	vm->throttle_started = 1;
	return 0;
}

void vmm_vm_join(struct vmm_vm *vm)
{
	atomic_store(&vm->quit, 1);
	if (vm->started) {
		pthread_mutex_lock(&vm->lock);
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		vmm_vm_kick(vm);
		pthread_join(vm->thread, NULL);
		vm->started = 0;
	}
	if (vm->throttle_started)
		pthread_join(vm->throttle_thread, NULL);
	vm->throttle_started = 0;
}

void vmm_vm_destroy(struct vmm_vm *vm)
{
	vmm_vm_join(vm);
	vmm_serial_flush(vm);
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->ram)
		munmap(vm->ram, vm->mem);
	if (vm->ram_fd >= 0)
		close(vm->ram_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->serial_fd >= 0)
		close(vm->serial_fd);
	vm->run = NULL;
	vm->ram = NULL;
	vm->vcpu_fd = vm->vm_fd = vm->kvm_fd = vm->serial_fd = vm->ram_fd = -1;
}

/* ---- RAM helpers ---------------------------------------------------------- */

int vmm_page_is_zero(const void *p)
{
	const uint64_t *w = p;

	for (unsigned i = 0; i < VMM_PAGE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return 0;
	return 1;
}

/* Four independent multiply-rotate lanes over the 64-bit words of one
 * page (a digest for equality checks, not a cryptographic one). */
static uint64_t page_digest(const uint8_t *p)
{
	const uint64_t P1 = 0x9e3779b185ebca87ull, P2 = 0xc2b2ae3d27d4eb4full;
	uint64_t h[4] = { P1, P2, P1 ^ 1, P2 ^ 1 }, out = VMM_PAGE;

	for (unsigned i = 0; i < VMM_PAGE; i += 32) {
		for (int k = 0; k < 4; k++) {
			uint64_t w;
			memcpy(&w, p + i + 8 * k, 8);
			h[k] = ((h[k] ^ w) * P1);
			h[k] = (h[k] << 31 | h[k] >> 33) * P2;
		}
	}
	for (int k = 0; k < 4; k++) {
		out ^= h[k];
		out = (out << 27 | out >> 37) * P1 + P2;
	}
	return out;
}

/* The digest of guest RAM: every page's digest folded in page order. A
 * page that `known_zero` marks 0 is taken as all zero without reading it
 * (the destination knows which pages it never wrote). */
uint64_t vmm_digest(const uint8_t *ram, uint64_t len, const uint8_t *written)
{
	static const uint8_t zero[VMM_PAGE];
	const uint64_t P1 = 0x9e3779b185ebca87ull;
	uint64_t zd = page_digest(zero), out = len;

	for (uint64_t i = 0; i < len / VMM_PAGE; i++) {
		uint64_t d = written && !written[i] ? zd : page_digest(ram + i * VMM_PAGE);
		out = ((out ^ d) * P1) ^ i;
	}
	return out;
}
