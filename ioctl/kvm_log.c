/* SPDX-License-Identifier: MIT */
/* KVM dirty log: capability checks, creation, slot and vCPU registration,
 * turning logging on and off, and the sync dispatcher. The sync bodies live
 * in kvm_bitmap.c (classic, manual) and kvm_ring.c (dirty ring). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "precopy/kvm.h"
#include "kvm_priv.h"
#include "sys_retry.h"

#define PAGE_MASK_4K ((uint64_t)PRECOPY_KVM_PAGE_SIZE - 1)

static int64_t check_ext(const struct precopy_sys *sys, int vm_fd, long cap)
{
	return precopy__sys_ioctl(sys, vm_fd, KVM_CHECK_EXTENSION, (void *)cap);
}

/* Which ring capability to enable: the acquire/release one where the
 * kernel has it; the original one only where stores are totally ordered
 * (x86), since that is the only place the kernel offers it. Either check
 * returns the largest ring in bytes, stored in *max. Returns the cap, 0 if
 * neither is there, or an ioctl's -errno. */
static int64_t ring_cap(const struct precopy_sys *sys, int vm_fd, int64_t *max)
{
	int64_t r = check_ext(sys, vm_fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);

	*max = 0;
	if (r < 0)
		return r;
	if (r > 0) {
		*max = r;
		return KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	}
#if defined(__x86_64__) || defined(__i386__)
	r = check_ext(sys, vm_fd, KVM_CAP_DIRTY_LOG_RING);
	if (r < 0)
		return r;
	*max = r;
	return r > 0 ? KVM_CAP_DIRTY_LOG_RING : 0;
#else
	return 0;
#endif
}

PRECOPY_API int64_t precopy_kvm_log_probe(const struct precopy_sys *sys, int vm_fd,
					  enum precopy_kvm_mode mode)
{
	int64_t r, max;

	if (precopy_sys_validate(sys) < 0)
		return -EINVAL;
	if (vm_fd < 0)
		return -EBADF;
	switch (mode) {
	case PRECOPY_KVM_LOG_CLASSIC:
		r = check_ext(sys, vm_fd, KVM_CAP_USER_MEMORY);
		return r < 0 ? r : r > 0 ? 1 : -EOPNOTSUPP;
	case PRECOPY_KVM_LOG_MANUAL:
		r = check_ext(sys, vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		return r < 0 ? r : r > 0 ? r : -EOPNOTSUPP;
	case PRECOPY_KVM_LOG_RING:
		r = ring_cap(sys, vm_fd, &max);
		return r < 0 ? r : r > 0 ? max : -EOPNOTSUPP;
	}
	return -EINVAL;
}

static int validate_config(const struct precopy_kvm_log_config *c)
{
	if (c->version != PRECOPY_KVM_CONFIG_VERSION)
		return -EINVAL;
	switch (c->mode) {
	case PRECOPY_KVM_LOG_CLASSIC:
		if (c->flags || c->ring_bytes || c->clear_chunk_pages)
			return -EINVAL;
		return 0;
	case PRECOPY_KVM_LOG_MANUAL:
		if ((c->flags & ~PRECOPY_KVM_INITIALLY_SET) || c->ring_bytes)
			return -EINVAL;
		if (c->clear_chunk_pages &&
		    (c->clear_chunk_pages % 64 || c->clear_chunk_pages > PRECOPY_KVM_CLEAR_MAX_PAGES))
			return -EINVAL;
		return 0;
	case PRECOPY_KVM_LOG_RING:
		if (c->flags || c->clear_chunk_pages)
			return -EINVAL;
		if (c->ring_bytes && (c->ring_bytes < 4096 || (c->ring_bytes & (c->ring_bytes - 1))))
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/* Enable the mode's capability on the VM. */
static int enable_mode(struct precopy_kvm_log *log)
{
	struct kvm_enable_cap cap;
	int64_t r, max;

	memset(&cap, 0, sizeof(cap));
	switch (log->cfg.mode) {
	case PRECOPY_KVM_LOG_CLASSIC:
		r = precopy_kvm_log_probe(&log->sys, log->vm_fd, PRECOPY_KVM_LOG_CLASSIC);
		return r < 0 ? (int)r : 0;
	case PRECOPY_KVM_LOG_MANUAL:
		r = check_ext(&log->sys, log->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		if (r < 0)
			return (int)r;
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
		if (log->cfg.flags & PRECOPY_KVM_INITIALLY_SET)
			cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
		if (((uint64_t)r & cap.args[0]) != cap.args[0])
			return -EOPNOTSUPP;
		cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		if (!log->cfg.clear_chunk_pages)
			log->cfg.clear_chunk_pages = PRECOPY_KVM_CLEAR_DEFAULT_PAGES;
		break;
	case PRECOPY_KVM_LOG_RING:
		r = ring_cap(&log->sys, log->vm_fd, &max);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EOPNOTSUPP;
		if (!log->cfg.ring_bytes) {
			uint64_t b = PRECOPY_KVM_RING_DEFAULT_BYTES;
			while (b > (uint64_t)max)
				b >>= 1;
			log->cfg.ring_bytes = (uint32_t)b;
		} else if (log->cfg.ring_bytes > (uint64_t)max) {
			return -E2BIG;
		}
		log->ring_cap = (uint32_t)r;
		log->ring_entries = log->cfg.ring_bytes / (uint32_t)sizeof(struct kvm_dirty_gfn);
		cap.cap = (uint32_t)r;
		cap.args[0] = log->cfg.ring_bytes;
		break;
	}
	r = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_ENABLE_CAP, &cap);
	return r < 0 ? (int)r : 0;
}

PRECOPY_API struct precopy_kvm_log *precopy_kvm_log_new(const struct precopy_sys *sys, int vm_fd,
							 const struct precopy_kvm_log_config *cfg,
							 int *err)
{
	struct precopy_kvm_log *log = NULL;
	int e;

	if (precopy_sys_validate(sys) < 0 || !cfg) {
		e = -EINVAL;
		goto fail;
	}
	if (vm_fd < 0) {
		e = -EBADF;
		goto fail;
	}
	e = validate_config(cfg);
	if (e)
		goto fail;
	log = calloc(1, sizeof(*log));
	if (!log) {
		e = -ENOMEM;
		goto fail;
	}
	log->sys = *sys;
	log->vm_fd = vm_fd;
	log->cfg = *cfg;
	e = enable_mode(log);
	if (e)
		goto fail;
	log->st.mode = cfg->mode;
	log->st.ring_cap = log->ring_cap;
	log->st.ring_bytes = cfg->mode == PRECOPY_KVM_LOG_RING ? log->cfg.ring_bytes : 0;
	if (err)
		*err = 0;
	return log;
fail:
	free(log);
	if (err)
		*err = e;
	return NULL;
}

PRECOPY_API void precopy_kvm_log_free(struct precopy_kvm_log *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->nvcpus; i++)
		if (log->vcpus[i].mapped)
			precopy__sys_munmap(&log->sys, log->vcpus[i].gfns, log->cfg.ring_bytes);
	for (size_t i = 0; i < log->nslots; i++)
		free(log->slots[i].buf);
	free(log->slots);
	free(log->vcpus);
	free(log);
}

PRECOPY_API int precopy_kvm_log_add_slot(struct precopy_kvm_log *log, const struct precopy_kvm_slot *s)
{
	struct kvm_slot_state st, *grown;
	uint64_t npages;
	size_t pos;

	if (!log || !s || !s->log || !s->log->words)
		return -EINVAL;
	if (!s->memory_size || (s->memory_size & PAGE_MASK_4K) || (s->guest_phys_addr & PAGE_MASK_4K) ||
	    (s->userspace_addr & PAGE_MASK_4K))
		return -EINVAL;
	if (s->flags & ~(uint32_t)(KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES))
		return -EINVAL;
	if (s->guest_phys_addr + s->memory_size < s->guest_phys_addr)
		return -ERANGE;
	npages = s->memory_size / PRECOPY_KVM_PAGE_SIZE;
	if (s->log_bit > s->log->nbits || npages > s->log->nbits - s->log_bit)
		return -ERANGE;
	if (log->started)
		return -EBUSY;
	/* Sorted insert; the ring looks slots up by number. */
	for (pos = 0; pos < log->nslots && log->slots[pos].d.slot < s->slot; pos++)
		;
	if (pos < log->nslots && log->slots[pos].d.slot == s->slot)
		return -EEXIST;
	if (log->nslots == log->slots_cap) {
		size_t ncap = log->slots_cap ? log->slots_cap * 2 : 4;
		grown = realloc(log->slots, ncap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		log->slots = grown;
		log->slots_cap = ncap;
	}
	memset(&st, 0, sizeof(st));
	st.d = *s;
	st.d.flags &= ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES;
	st.npages = npages;
	st.nwords = PRECOPY_BITMAP_WORDS(npages);
	st.buf = calloc(st.nwords, sizeof(uint64_t));
	if (!st.buf)
		return -ENOMEM;
	memmove(&log->slots[pos + 1], &log->slots[pos], (log->nslots - pos) * sizeof(log->slots[0]));
	log->slots[pos] = st;
	log->nslots++;
	log->last_hit = 0;
	log->st.nslots = (uint32_t)log->nslots;
	return 0;
}

PRECOPY_API int precopy_kvm_log_add_vcpu(struct precopy_kvm_log *log, int vcpu_fd, void *ring)
{
	struct kvm_vcpu_ring v, *grown;
	int r;

	if (!log || log->cfg.mode != PRECOPY_KVM_LOG_RING || (vcpu_fd < 0 && !ring))
		return -EINVAL;
	for (size_t i = 0; i < log->nvcpus; i++)
		if ((vcpu_fd >= 0 && log->vcpus[i].fd == vcpu_fd) || (ring && (void *)log->vcpus[i].gfns == ring))
			return -EEXIST;
	if (log->nvcpus == log->vcpus_cap) {
		size_t ncap = log->vcpus_cap ? log->vcpus_cap * 2 : 4;
		grown = realloc(log->vcpus, ncap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		log->vcpus = grown;
		log->vcpus_cap = ncap;
	}
	memset(&v, 0, sizeof(v));
	v.fd = vcpu_fd;
	if (ring) {
		v.gfns = ring;
	} else {
		void *p = NULL;
		off_t off = (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * getpagesize();
		r = precopy__sys_mmap(&log->sys, log->cfg.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
				     vcpu_fd, off, &p);
		if (r < 0)
			return r;
		v.gfns = p;
		v.mapped = true;
	}
	log->vcpus[log->nvcpus++] = v;
	log->st.nvcpus = (uint32_t)log->nvcpus;
	return 0;
}

static int set_region(struct precopy_kvm_log *log, const struct kvm_slot_state *s, bool logging)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->d.slot,
		.flags = s->d.flags | (logging ? KVM_MEM_LOG_DIRTY_PAGES : 0),
		.guest_phys_addr = s->d.guest_phys_addr,
		.memory_size = s->d.memory_size,
		.userspace_addr = s->d.userspace_addr,
	};
	int e = precopy__sys_ioctl(&log->sys, log->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
	return e < 0 ? e : 0;
}

PRECOPY_API int precopy_kvm_log_start(struct precopy_kvm_log *log)
{
	int e;

	if (!log)
		return -EINVAL;
	if (log->started)
		return -EALREADY;
	if (!log->nslots)
		return -ENOENT;
	for (size_t i = 0; i < log->nslots; i++) {
		e = set_region(log, &log->slots[i], true);
		if (e) {
			while (i--)
				(void)set_region(log, &log->slots[i], false);
			return e;
		}
	}
	log->started = true;
	return 0;
}

PRECOPY_API int precopy_kvm_log_stop(struct precopy_kvm_log *log)
{
	int first = 0, e;

	if (!log)
		return -EINVAL;
	if (!log->started)
		return -EALREADY;
	for (size_t i = 0; i < log->nslots; i++) {
		e = set_region(log, &log->slots[i], false);
		if (e && !first)
			first = e;
	}
	log->started = false;
	return first;
}

PRECOPY_API int64_t precopy_kvm_log_sync(struct precopy_kvm_log *log)
{
	int64_t r;

	if (!log)
		return -EINVAL;
	/* The RAM logs are caller-owned; recheck the bounds checked at add,
	 * before anything is taken from the kernel. */
	for (size_t i = 0; i < log->nslots; i++) {
		const struct kvm_slot_state *s = &log->slots[i];
		if (!s->d.log->words || s->d.log_bit > s->d.log->nbits ||
		    s->npages > s->d.log->nbits - s->d.log_bit)
			return -ERANGE;
	}
	log->st.last_pages = log->st.last_new = log->st.last_ioctls = 0;
	log->st.last_entries = log->st.last_repeats = log->st.last_foreign = log->st.last_reset = 0;
	if (log->cfg.mode == PRECOPY_KVM_LOG_RING)
		r = precopy_kvm_priv_sync_ring(log);
	else
		r = precopy_kvm_priv_sync_bitmap(log);
	if (r < 0)
		return r;
	log->st.syncs++;
	log->st.last_new = (uint64_t)r;
	log->st.total_pages += log->st.last_pages;
	log->st.total_new += (uint64_t)r;
	log->st.total_entries += log->st.last_entries;
	return r;
}

PRECOPY_API int precopy_kvm_log_stats(const struct precopy_kvm_log *log, struct precopy_kvm_log_stats *out)
{
	if (!log || !out)
		return -EINVAL;
	*out = log->st;
	return 0;
}
