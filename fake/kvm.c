/* SPDX-License-Identifier: MIT */
/* A userspace model of a KVM VM's dirty-log contract (x86): memory slots
 * as KVM_SET_USER_MEMORY_REGION creates, moves, re-flags and deletes them,
 * a dirty bitmap per slot that logs (KVM_MEM_LOG_DIRTY_PAGES), classic
 * KVM_GET_DIRTY_LOG (copy and clear), manual protect
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: GET copies, KVM_CLEAR_DIRTY_LOG
 * clears; INITIALLY_SET starts a logging slot all dirty), with KVM's
 * checks and errnos in KVM's order. Guest writes come from
 * precopy_fake_kvm_write(): real bytes into the slot's userspace memory and
 * a dirty bit per 4 KiB page, as a write fault on a write-protected page
 * would set it. The dirty ring is not modelled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "internal.h"

#define PG 4096ull
#define AS_NUM 2u		      /* x86 with SMM: two address spaces */
#define USER_SLOTS 32764u	      /* x86 KVM_USER_MEM_SLOTS */
#define MAX_NR_PAGES ((1ull << 31) - 1) /* KVM_MEM_MAX_NR_PAGES */
#define TASK_TOP 0x00007ffffffff000ull /* x86-64 4-level user address limit */
#ifndef KVM_DIRTY_LOG_MANUAL_CAPS
#define KVM_DIRTY_LOG_MANUAL_CAPS (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET)
#endif

struct kslot {
	uint32_t slot; /* (as_id << 16) | id */
	uint32_t flags;
	uint64_t gpa, npages, uaddr;
	uint64_t *dirty; /* NULL unless logging */
};

struct precopy_fake_kvm {
	struct precopy_fake_kernel *fk;
	int fd;
	uint64_t manual; /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args[0] */
	struct kslot *slots;
	size_t nslots, cap;
	struct precopy_fake_kvm *next;
};

static uint64_t bitmap_bytes(uint64_t npages)
{
	return (npages + 63) / 64 * 8;
}

static struct kslot *find(struct precopy_fake_kvm *vm, uint32_t slot)
{
	for (size_t i = 0; i < vm->nslots; i++)
		if (vm->slots[i].slot == slot)
			return &vm->slots[i];
	return NULL;
}

static int check_extension(long cap)
{
	switch (cap) {
	case KVM_CAP_USER_MEMORY:
	case KVM_CAP_READONLY_MEM:
		return 1;
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		return KVM_DIRTY_LOG_MANUAL_CAPS;
	case KVM_CAP_NR_MEMSLOTS:
		return USER_SLOTS;
	case KVM_CAP_MULTI_ADDRESS_SPACE:
		return AS_NUM;
	default:
		return 0; /* including both dirty ring capabilities: not modelled */
	}
}

static int enable_cap(struct precopy_fake_kvm *vm, const struct kvm_enable_cap *c)
{
	uint64_t allowed = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

	if (!c)
		return -EFAULT;
	if (c->cap != KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
		return -EINVAL;
	if (c->args[0] & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
		allowed = KVM_DIRTY_LOG_MANUAL_CAPS;
	if (c->flags || (c->args[0] & ~allowed))
		return -EINVAL;
	vm->manual = c->args[0];
	return 0;
}

static int set_region(struct precopy_fake_kvm *vm, const struct kvm_userspace_memory_region *m)
{
	const uint32_t valid = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
	uint32_t as_id, id;
	uint64_t npages, base;
	struct kslot *old;

	if (!m)
		return -EFAULT;
	as_id = m->slot >> 16;
	id = m->slot & 0xffff;
	if (id >= USER_SLOTS)
		return -EINVAL;
	if (m->flags & ~valid)
		return -EINVAL;
	if (m->memory_size & (PG - 1))
		return -EINVAL;
	if (m->guest_phys_addr & (PG - 1))
		return -EINVAL;
	if ((m->userspace_addr & (PG - 1)) || m->userspace_addr > TASK_TOP ||
	    m->memory_size > TASK_TOP - m->userspace_addr)
		return -EINVAL;
	if (as_id >= AS_NUM)
		return -EINVAL;
	if (m->guest_phys_addr + m->memory_size < m->guest_phys_addr)
		return -EINVAL;
	if (m->memory_size / PG > MAX_NR_PAGES)
		return -EINVAL;
	old = find(vm, m->slot);
	if (!m->memory_size) { /* delete */
		if (!old)
			return -EINVAL;
		free(old->dirty);
		*old = vm->slots[--vm->nslots];
		return 0;
	}
	npages = m->memory_size / PG;
	base = m->guest_phys_addr / PG;
	if (old) {
		if (m->userspace_addr != old->uaddr || npages != old->npages ||
		    ((m->flags ^ old->flags) & KVM_MEM_READONLY))
			return -EINVAL;
		if (base == old->gpa / PG && m->flags == old->flags)
			return 0; /* nothing changes */
	}
	if (!old || base != old->gpa / PG) { /* create or move: no overlap */
		for (size_t i = 0; i < vm->nslots; i++) {
			const struct kslot *s = &vm->slots[i];
			if (s == old || (s->slot >> 16) != as_id)
				continue;
			if (base < s->gpa / PG + s->npages && s->gpa / PG < base + npages)
				return -EEXIST;
		}
	}
	/* The dirty bitmap as KVM prepares it: kept while logging stays on,
	 * made (all set with INITIALLY_SET) when it turns on, dropped when it
	 * turns off. */
	uint64_t *dirty = old ? old->dirty : NULL;
	if (!(m->flags & KVM_MEM_LOG_DIRTY_PAGES)) {
		free(dirty);
		dirty = NULL;
	} else if (!dirty) {
		dirty = calloc(bitmap_bytes(npages) / 8, 8);
		if (!dirty)
			return -ENOMEM;
		if (vm->manual & KVM_DIRTY_LOG_INITIALLY_SET)
			for (uint64_t p = 0; p < npages; p++)
				dirty[p / 64] |= 1ull << (p % 64);
	}
	if (!old) {
		if (vm->nslots == vm->cap) {
			size_t ncap = vm->cap ? vm->cap * 2 : 8;
			struct kslot *g = realloc(vm->slots, ncap * sizeof(*g));
			if (!g) {
				free(dirty);
				return -ENOMEM;
			}
			vm->slots = g;
			vm->cap = ncap;
		}
		old = &vm->slots[vm->nslots++];
		old->slot = m->slot;
		old->npages = npages;
		old->uaddr = m->userspace_addr;
	}
	old->flags = m->flags;
	old->gpa = m->guest_phys_addr;
	old->dirty = dirty;
	return 0;
}

static int get_log(struct precopy_fake_kvm *vm, struct kvm_dirty_log *l)
{
	struct kslot *s;

	if (!l)
		return -EFAULT;
	if ((l->slot >> 16) >= AS_NUM || (l->slot & 0xffff) >= USER_SLOTS)
		return -EINVAL;
	s = find(vm, l->slot);
	if (!s || !s->dirty)
		return -ENOENT;
	if (!l->dirty_bitmap)
		return -EFAULT;
	memcpy(l->dirty_bitmap, s->dirty, bitmap_bytes(s->npages));
	if (!vm->manual)
		memset(s->dirty, 0, bitmap_bytes(s->npages)); /* and write-protect */
	return 0;
}

static int clear_log(struct precopy_fake_kvm *vm, struct kvm_clear_dirty_log *c)
{
	const uint64_t *mask;
	struct kslot *s;

	if (!c)
		return -EFAULT;
	if ((c->slot >> 16) >= AS_NUM || (c->slot & 0xffff) >= USER_SLOTS)
		return -EINVAL;
	if (c->first_page & 63)
		return -EINVAL;
	s = find(vm, c->slot);
	if (!s || !s->dirty)
		return -ENOENT;
	if (c->first_page > s->npages || c->num_pages > s->npages - c->first_page ||
	    (c->num_pages < s->npages - c->first_page && (c->num_pages & 63)))
		return -EINVAL;
	mask = c->dirty_bitmap;
	if (!mask && c->num_pages)
		return -EFAULT;
	for (uint64_t w = 0; w < (c->num_pages + 63) / 64; w++)
		s->dirty[c->first_page / 64 + w] &= ~mask[w];
	return 0;
}

int fake_kvm_vm_ioctl(struct precopy_fake_kvm *vm, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_CHECK_EXTENSION:
		return check_extension((long)arg);
	case KVM_ENABLE_CAP:
		return enable_cap(vm, arg);
	case KVM_SET_USER_MEMORY_REGION:
		return set_region(vm, arg);
	case KVM_GET_DIRTY_LOG:
		return get_log(vm, arg);
	case KVM_CLEAR_DIRTY_LOG:
		return clear_log(vm, arg);
	default:
		return -ENOTTY;
	}
}

void fake_kvm_closed(struct precopy_fake_kvm *vm)
{
	vm->fd = -1;
}

void fake_kvm_free_all(struct precopy_fake_kernel *fk)
{
	struct precopy_fake_kvm *vm = fk->vms, *n;

	for (; vm; vm = n) {
		n = vm->next;
		if (vm->fd >= 0) {
			fk_unregister(fk, vm->fd);
			close(vm->fd);
		}
		for (size_t i = 0; i < vm->nslots; i++)
			free(vm->slots[i].dirty);
		free(vm->slots);
		free(vm);
	}
	fk->vms = NULL;
}

PRECOPY_API int precopy_fake_kvm_new(struct precopy_fake_kernel *fk, struct precopy_fake_kvm **out)
{
	struct precopy_fake_kvm *vm;
	int fd, r;

	if (!fk)
		return -EINVAL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(vm);
		return r;
	}
	pthread_mutex_lock(&fk->lock);
	r = fk_register(fk, fd, FK_KVM_VM, vm);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		close(fd);
		free(vm);
		return r;
	}
	vm->fk = fk;
	vm->fd = fd;
	vm->next = fk->vms;
	fk->vms = vm;
	pthread_mutex_unlock(&fk->lock);
	if (out)
		*out = vm;
	return fd;
}

/* The slot of address space 0 holding guest page gfn, or NULL. */
static struct kslot *slot_of(struct precopy_fake_kvm *vm, uint64_t gfn)
{
	for (size_t i = 0; i < vm->nslots; i++) {
		struct kslot *s = &vm->slots[i];
		if ((s->slot >> 16) == 0 && gfn >= s->gpa / PG && gfn < s->gpa / PG + s->npages)
			return s;
	}
	return NULL;
}

PRECOPY_API int64_t precopy_fake_kvm_write(struct precopy_fake_kvm *vm, uint64_t gpa, uint64_t len, uint8_t byte)
{
	uint64_t first, last;
	int64_t newly = 0;

	if (!vm || !len || gpa + len - 1 < gpa)
		return -EINVAL;
	first = gpa / PG;
	last = (gpa + len - 1) / PG;
	pthread_mutex_lock(&vm->fk->lock);
	/* every page must be writable before anything is written */
	for (uint64_t g = first; g <= last; g++) {
		struct kslot *s = slot_of(vm, g);
		if (!s || (s->flags & KVM_MEM_READONLY)) {
			pthread_mutex_unlock(&vm->fk->lock);
			return s ? -EACCES : -EFAULT;
		}
	}
	for (uint64_t g = first; g <= last; g++) {
		struct kslot *s = slot_of(vm, g);
		uint64_t lo = g == first ? gpa : g * PG, hi = g == last ? gpa + len : (g + 1) * PG;
		uint64_t p = g - s->gpa / PG;

		memset((uint8_t *)(uintptr_t)(s->uaddr + (lo - s->gpa)), byte, hi - lo);
		if (s->dirty && !(s->dirty[p / 64] & (1ull << (p % 64)))) {
			s->dirty[p / 64] |= 1ull << (p % 64);
			newly++;
		}
	}
	pthread_mutex_unlock(&vm->fk->lock);
	return newly;
}
