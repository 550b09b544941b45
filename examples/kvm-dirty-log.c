/* SPDX-License-Identifier: MIT */
/* examples/kvm-dirty-log.c — KVM's dirty log of a real guest, harvested
 * through libprecopy (precopy/kvm.h).
 *
 * The program is a tiny VMM: it creates a VM on /dev/kvm with 1 MiB of
 * RAM in one memory slot and one vCPU in 16-bit real mode running a dozen
 * hand-assembled instructions (a "list writer": it reads a list of page
 * numbers from a mailbox page and writes a value into each listed page,
 * then exits to the VMM with `out 0x10`). The VMM keeps every fd; the
 * library is told the VM fd and the slot, turns dirty logging on and, at
 * each precopy_kvm_log_sync(), merges what KVM logged into the VMM's RAM
 * dirty log (a struct precopy_bitmap, one bit per 4 KiB page). Each round
 * checks that the log holds exactly the pages the guest wrote: the VMM's
 * own writes (the mailbox) are not in KVM's log, and nothing is lost.
 *
 * The mode is KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 where KVM offers it (the
 * library then clears exactly what it harvested), else the classic
 * KVM_GET_DIRTY_LOG. x86 only (the guest code is x86 real mode).
 *
 * Build: cc kvm-dirty-log.c $(pkg-config --cflags --libs libprecopy)
 * Exit status: 0 every round exact, 1 a mismatch or an error (the message
 * names the step), 77 skipped (no /dev/kvm, no access to it, not x86). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <precopy.h>

#define SKIP 77

#if defined(__x86_64__) || defined(__i386__)

#define PAGE 4096u
#define RAM_PAGES 256u       /* 1 MiB: every page reachable from real mode */
#define CODE_GPA 0x1000u
#define MBOX_GPA 0x2000u     /* u16 count, u16 value, u16 pages[] at +0x10 */
#define DATA_FIRST 16u       /* pages the guest may be asked to write */
#define PORT_DONE 0x10

/* The list writer, assembled by hand (GNU as, .code16). */
static const uint8_t guest_code[] = {
	0x31, 0xc0,                   /* start: xor ax, ax          */
	0x8e, 0xd8,                   /*        mov ds, ax          */
	0x8b, 0x0e, 0x00, 0x20,       /*        mov cx, [0x2000]    count */
	0x8b, 0x3e, 0x02, 0x20,       /*        mov di, [0x2002]    value */
	0xbe, 0x10, 0x20,             /*        mov si, 0x2010      list  */
	0xfc,                         /*        cld                 */
	0xe3, 0x0d,                   /*        jcxz done           */
	0xad,                         /* next:  lodsw               page number */
	0xc1, 0xe0, 0x08,             /*        shl ax, 8           */
	0x8e, 0xc0,                   /*        mov es, ax          segment = page << 8 */
	0x26, 0x89, 0x3e, 0x00, 0x00, /*        mov es:[0], di      */
	0xe2, 0xf3,                   /*        loop next           */
	0xe6, 0x10,                   /* done:  out 0x10, al        back to the VMM */
	0xeb, 0xdd,                   /*        jmp start           */
};

struct vm {
	int kvm_fd, vm_fd, vcpu_fd;
	uint8_t *ram;
	struct kvm_run *run;
	size_t run_size;
};

static int fail(const char *step, int err)
{
	fprintf(stderr, "kvm-dirty-log: %s: %s\n", step, strerror(err < 0 ? -err : err));
	return 1;
}

static void real_mode_segment(struct kvm_segment *s)
{
	s->base = 0;
	s->selector = 0;
	s->limit = 0xffff;
}

/* The vCPU, in real mode at CODE_GPA. Created after the dirty log, as the
 * dirty-ring mode would require. Returns 0 or -errno. */
static int add_vcpu(struct vm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int size;
	void *p;

	if ((vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0)) < 0)
		return -errno;
	if ((size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)) < 0)
		return -errno;
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	vm->run = p;
	vm->run_size = (size_t)size;
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	real_mode_segment(&sregs.cs);
	real_mode_segment(&sregs.ds);
	real_mode_segment(&sregs.es);
	real_mode_segment(&sregs.ss);
	real_mode_segment(&sregs.fs);
	real_mode_segment(&sregs.gs);
	if (ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 2; /* the reserved bit; interrupts off */
	regs.rsp = CODE_GPA;
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

/* One pass of the guest over the list in the mailbox. Returns 0 or -errno
 * (-EIO for an exit other than the guest's `out 0x10`). */
static int run_guest(struct vm *vm)
{
	for (;;) {
		if (ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (vm->run->exit_reason == KVM_EXIT_IO && vm->run->io.port == PORT_DONE)
			return 0;
		fprintf(stderr, "kvm-dirty-log: the guest exited with reason %u\n", vm->run->exit_reason);
		return -EIO;
	}
}

static void close_vm(struct vm *vm)
{
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->ram)
		munmap(vm->ram, RAM_PAGES * PAGE);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
}

int main(void)
{
	const struct precopy_sys *sys = precopy_sys_real();
	struct vm vm = { .kvm_fd = -1, .vm_fd = -1, .vcpu_fd = -1 };
	struct kvm_userspace_memory_region region;
	struct precopy_kvm_log_config kc = { .version = PRECOPY_KVM_CONFIG_VERSION };
	struct precopy_kvm_log *log = NULL;
	struct precopy_bitmap ram_log = { 0 };
	struct precopy_kvm_log_stats st;
	unsigned seed = 1;
	int err, status = 1;
	int64_t n;

	vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm.kvm_fd < 0) {
		if (errno == ENOENT)
			printf("kvm-dirty-log: skipped: /dev/kvm absent\n");
		else
			printf("kvm-dirty-log: skipped: /dev/kvm: %s\n", strerror(errno));
		return SKIP;
	}
	if (ioctl(vm.kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close_vm(&vm);
		return fail("KVM_GET_API_VERSION", -ENOTSUP);
	}
	if ((vm.vm_fd = ioctl(vm.kvm_fd, KVM_CREATE_VM, 0)) < 0) {
		err = -errno;
		close_vm(&vm);
		return fail("KVM_CREATE_VM", err);
	}
	vm.ram = mmap(NULL, RAM_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (vm.ram == MAP_FAILED) {
		vm.ram = NULL;
		fail("mmap of guest RAM", -errno);
		goto out;
	}
	region = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
						       .memory_size = RAM_PAGES * PAGE,
						       .userspace_addr = (uintptr_t)vm.ram };
	if (ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		err = -errno;
		fail("KVM_SET_USER_MEMORY_REGION", err);
		goto out;
	}
	memcpy(vm.ram + CODE_GPA, guest_code, sizeof(guest_code));

	/* the library's side: a RAM dirty log, the KVM log feeding it */
	kc.mode = precopy_kvm_log_probe(sys, vm.vm_fd, PRECOPY_KVM_LOG_MANUAL) > 0 ? PRECOPY_KVM_LOG_MANUAL
										   : PRECOPY_KVM_LOG_CLASSIC;
	if ((err = precopy_bitmap_alloc(&ram_log, RAM_PAGES, PRECOPY_NUMA_LOCAL)) < 0) {
		fail("precopy_bitmap_alloc", err);
		goto out;
	}
	log = precopy_kvm_log_new(sys, vm.vm_fd, &kc, &err);
	if (!log) {
		fail("precopy_kvm_log_new", err);
		goto out;
	}
	err = precopy_kvm_log_add_slot(log, &(struct precopy_kvm_slot){
		.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_PAGES * PAGE,
		.userspace_addr = (uintptr_t)vm.ram, .log = &ram_log, .log_bit = 0 });
	if (err < 0) {
		fail("precopy_kvm_log_add_slot", err);
		goto out;
	}
	if ((err = add_vcpu(&vm)) < 0) {
		fail("creating the vCPU", err);
		goto out;
	}
	if ((err = precopy_kvm_log_start(log)) < 0) {
		fail("precopy_kvm_log_start", err);
		goto out;
	}
	printf("kvm-dirty-log: %u-page guest, %s dirty log\n", RAM_PAGES,
	       kc.mode == PRECOPY_KVM_LOG_MANUAL ? "manual-protect" : "classic");
	/* nothing written since logging started */
	if ((n = precopy_kvm_log_sync(log)) != 0) {
		fprintf(stderr, "kvm-dirty-log: the first sync reported %lld pages, none written\n", (long long)n);
		goto out;
	}

	for (int round = 1; round <= 4; round++) {
		uint16_t *mbox = (uint16_t *)(vm.ram + MBOX_GPA);
		uint16_t count = (uint16_t)(4 + round * 5);
		struct precopy_bitmap want = { 0 };
		int64_t distinct;

		/* the VMM writes the list through its mapping: KVM does not log
		 * that (a VMM reports its own writes to guest RAM separately) */
		if ((err = precopy_bitmap_alloc(&want, RAM_PAGES, PRECOPY_NUMA_LOCAL)) < 0) {
			fail("precopy_bitmap_alloc", err);
			goto out;
		}
		mbox[0] = count;
		mbox[1] = (uint16_t)(0xa500 + round);
		for (unsigned i = 0; i < count; i++) {
			seed = seed * 1103515245u + 12345u;
			mbox[8 + i] = (uint16_t)(DATA_FIRST + (seed >> 16) % (RAM_PAGES - DATA_FIRST));
			precopy_bitmap_set_range(&want, mbox[8 + i], 1);
		}
		distinct = (int64_t)precopy_bitmap_count(&want);
		if ((err = run_guest(&vm)) < 0) {
			precopy_bitmap_free(&want);
			fail("KVM_RUN", err);
			goto out;
		}
		n = precopy_kvm_log_sync(log);
		if (n < 0) {
			precopy_bitmap_free(&want);
			fail("precopy_kvm_log_sync", (int)n);
			goto out;
		}
		precopy_kvm_log_stats(log, &st);
		for (uint64_t p = 0; p < RAM_PAGES; p++) {
			if (precopy_bitmap_test(&ram_log, p) != precopy_bitmap_test(&want, p)) {
				fprintf(stderr, "kvm-dirty-log: round %d: page %llu is %s the log but the guest %s it\n",
					round, (unsigned long long)p, precopy_bitmap_test(&ram_log, p) ? "in" : "not in",
					precopy_bitmap_test(&want, p) ? "wrote" : "did not write");
				precopy_bitmap_free(&want);
				goto out;
			}
		}
		printf("  round %d: the guest wrote %lld pages; the sync found exactly those (%llu ioctls)\n", round,
		       (long long)distinct, (unsigned long long)st.last_ioctls);
		precopy_bitmap_free(&want);
		precopy_bitmap_zero(&ram_log); /* as if the VMM had sent them */
	}
	if ((err = precopy_kvm_log_stop(log)) < 0) {
		fail("precopy_kvm_log_stop", err);
		goto out;
	}
	status = 0;
out:
	precopy_kvm_log_free(log);
	precopy_bitmap_free(&ram_log);
	close_vm(&vm);
	return status;
}

#else /* not x86 */

int main(void)
{
	printf("kvm-dirty-log: skipped: the guest code is x86 real mode\n");
	return SKIP;
}

#endif
