/* SPDX-License-Identifier: MIT */
/* A tiny VMM for the KVM dirty-log tests (see kvm_guest.h). */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_guest.h"

static int neg(int r)
{
	return r < 0 ? -errno : r;
}

const char *kvm_guest_skip_reason(void)
{
	static char why[128];
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, sizeof(why), "/dev/kvm unavailable (%s): KVM tests skipped", strerror(errno));
		return why;
	}
	close(fd);
	return NULL;
}

int kvm_guest_open(struct kvm_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->kvm_fd = g->vm_fd = g->vcpu_fd = -1;
	g->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (g->kvm_fd < 0)
		return -errno;
	if (ioctl(g->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return -ENOTSUP;
	g->vm_fd = neg(ioctl(g->kvm_fd, KVM_CREATE_VM, 0));
	return g->vm_fd < 0 ? g->vm_fd : 0;
}

int kvm_guest_add_mem(struct kvm_guest *g, uint32_t slot, uint64_t gpa, uint64_t size)
{
	struct kvm_guest_mem *m;
	void *p;

	if (g->nmem == KVM_GUEST_MAX_MEM)
		return -ENOSPC;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)p,
	};
	if (ioctl(g->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		int e = -errno;
		munmap(p, size);
		return e;
	}
	m = &g->mem[g->nmem++];
	m->slot = slot;
	m->gpa = gpa;
	m->size = size;
	m->host = p;
	return 0;
}

void *kvm_guest_ptr(const struct kvm_guest *g, uint64_t gpa)
{
	for (int i = 0; i < g->nmem; i++)
		if (gpa >= g->mem[i].gpa && gpa - g->mem[i].gpa < g->mem[i].size)
			return g->mem[i].host + (gpa - g->mem[i].gpa);
	return NULL;
}

int kvm_guest_load(struct kvm_guest *g, uint64_t gpa, const void *code, size_t len)
{
	void *p = kvm_guest_ptr(g, gpa);

	if (!p || !kvm_guest_ptr(g, gpa + len - 1))
		return -ERANGE;
	memcpy(p, code, len);
	return 0;
}

static void real_seg(struct kvm_segment *s)
{
	s->base = 0;
	s->selector = 0;
	s->limit = 0xffff;
}

int kvm_guest_add_vcpu(struct kvm_guest *g, uint64_t entry)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int sz;
	void *p;

	g->vcpu_fd = neg(ioctl(g->vm_fd, KVM_CREATE_VCPU, 0));
	if (g->vcpu_fd < 0)
		return g->vcpu_fd;
	sz = ioctl(g->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < 0)
		return -errno;
	p = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	g->run = p;
	g->run_size = (size_t)sz;
	if (ioctl(g->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	real_seg(&sregs.cs);
	real_seg(&sregs.ds);
	real_seg(&sregs.es);
	real_seg(&sregs.ss);
	real_seg(&sregs.fs);
	real_seg(&sregs.gs);
	if (ioctl(g->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = 2; /* bit 1 is reserved-one; IF and DF clear */
	regs.rsp = 0x1000;
	if (ioctl(g->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

int kvm_guest_run(struct kvm_guest *g)
{
	if (ioctl(g->vcpu_fd, KVM_RUN, 0) < 0)
		return -errno;
	return (int)g->run->exit_reason;
}

int kvm_guest_io_port(const struct kvm_guest *g)
{
	return g->run && g->run->exit_reason == KVM_EXIT_IO ? g->run->io.port : -1;
}

void kvm_guest_close(struct kvm_guest *g)
{
	if (g->run)
		munmap(g->run, g->run_size);
	if (g->vcpu_fd >= 0)
		close(g->vcpu_fd);
	for (int i = 0; i < g->nmem; i++)
		munmap(g->mem[i].host, g->mem[i].size);
	if (g->vm_fd >= 0)
		close(g->vm_fd);
	if (g->kvm_fd >= 0)
		close(g->kvm_fd);
	memset(g, 0, sizeof(*g));
	g->kvm_fd = g->vm_fd = g->vcpu_fd = -1;
}

/* Hand-assembled 16-bit code (GNU as, .code16), listed beside the bytes. */
const uint8_t kvm_guest_list_code[] = {
	0x31, 0xc0,                   /* 00 start: xor ax, ax          */
	0x8e, 0xd8,                   /* 02        mov ds, ax          */
	0x8b, 0x0e, 0x00, 0x20,       /* 04        mov cx, [0x2000]    */
	0x8b, 0x3e, 0x02, 0x20,       /* 08        mov di, [0x2002]    */
	0xbe, 0x10, 0x20,             /* 0c        mov si, 0x2010      */
	0xfc,                         /* 0f        cld                 */
	0xe3, 0x0d,                   /* 10        jcxz done           */
	0xad,                         /* 12 next:  lodsw               */
	0xc1, 0xe0, 0x08,             /* 13        shl ax, 8           */
	0x8e, 0xc0,                   /* 16        mov es, ax          */
	0x26, 0x89, 0x3e, 0x00, 0x00, /* 18        mov es:[0], di      */
	0xe2, 0xf3,                   /* 1d        loop next           */
	0xe6, 0x10,                   /* 1f done:  out 0x10, al        */
	0xeb, 0xdd,                   /* 21        jmp start           */
};
const size_t kvm_guest_list_code_len = sizeof(kvm_guest_list_code);

const uint8_t kvm_guest_oracle_code[] = {
	0x31, 0xc0,                               /* 00 start:  xor ax, ax             */
	0x8e, 0xd8,                               /* 02         mov ds, ax             */
	0x66, 0x8b, 0x1e, 0x0c, 0x20,             /* 04         mov ebx, [0x200c]      */
	0x31, 0xff,                               /* 09         xor di, di             */
	0xa1, 0x00, 0x20,                         /* 0b outer:  mov ax, [0x2000]       */
	0x83, 0xf8, 0xff,                         /* 0e         cmp ax, 0xffff         */
	0x74, 0x51,                               /* 11         je stop                */
	0x39, 0xf8,                               /* 13         cmp ax, di             */
	0x74, 0x17,                               /* 15         je batch               */
	0x89, 0xc7,                               /* 17         mov di, ax             */
	0xa3, 0x02, 0x20,                         /* 19         mov [0x2002], ax       */
	0xe6, 0x11,                               /* 1c         out 0x11, al           */
	0xf3, 0x90,                               /* 1e waitgo: pause                  */
	0xa1, 0x00, 0x20,                         /* 20         mov ax, [0x2000]       */
	0x83, 0xf8, 0xff,                         /* 23         cmp ax, 0xffff         */
	0x74, 0x3c,                               /* 26         je stop                */
	0x3b, 0x3e, 0x04, 0x20,                   /* 28         cmp di, [0x2004]       */
	0x75, 0xf0,                               /* 2c         jne waitgo             */
	0xb9, 0x20, 0x00,                         /* 2e batch:  mov cx, 32             */
	0x66, 0x69, 0xdb, 0x6d, 0x4e, 0xc6, 0x41, /* 31 wloop:  imul ebx, ebx, 1103515245 */
	0x66, 0x81, 0xc3, 0x39, 0x30, 0x00, 0x00, /* 38         add ebx, 12345         */
	0x66, 0x89, 0xd8,                         /* 3f         mov eax, ebx           */
	0x66, 0xc1, 0xe8, 0x10,                   /* 42         shr eax, 16            */
	0x31, 0xd2,                               /* 46         xor dx, dx             */
	0xf7, 0x36, 0x06, 0x20,                   /* 48         div word [0x2006]      */
	0x03, 0x16, 0x08, 0x20,                   /* 4c         add dx, [0x2008]       */
	0xc1, 0xe2, 0x08,                         /* 50         shl dx, 8              */
	0x8e, 0xc2,                               /* 53         mov es, dx             */
	0x26, 0x89, 0x3e, 0x00, 0x00,             /* 55         mov es:[0], di         */
	0x66, 0x83, 0x06, 0x10, 0x20, 0x01,       /* 5a         add dword [0x2010], 1  */
	0xe2, 0xcf,                               /* 60         loop wloop             */
	0xeb, 0xa7,                               /* 62         jmp outer              */
	0xe6, 0x10,                               /* 64 stop:   out 0x10, al           */
	0xf4,                                     /* 66         hlt                    */
	0xeb, 0xfb,                               /* 67         jmp stop               */
};
const size_t kvm_guest_oracle_code_len = sizeof(kvm_guest_oracle_code);

int kvm_guest_std_open(struct kvm_guest *g, const uint8_t *code, size_t len)
{
	int r = kvm_guest_open(g);

	if (!r)
		r = kvm_guest_add_mem(g, 0, 0, KG_SLOT0_PAGES * 4096ull);
	if (!r)
		r = kvm_guest_add_mem(g, 1, KG_SLOT1_GPA, KG_SLOT1_PAGES * 4096ull);
	if (!r)
		r = kvm_guest_load(g, KG_CODE_GPA, code, len);
	return r;
}
