/* SPDX-License-Identifier: MIT */
/* fake/internal.h — shared between the fake kernel's files; not public. */
#ifndef PRECOPY_FAKE_INTERNAL_H
#define PRECOPY_FAKE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/fake.h"
#include "precopy/sys.h"

enum fk_kind { FK_NONE = 0, FK_DEVICE, FK_DATA, FK_TYPE1, FK_IOMMUFD, FK_KVM_VM };

#define FK_MAX_RULES 32

struct fk_rule {
	struct precopy_fault f;
	uint64_t seen; /* matching calls so far */
};

struct fk_entry {
	int kind;
	void *obj;
};

struct precopy_fake_kernel {
	pthread_mutex_t lock;
	struct precopy_fake_clock clock;
	int own_clock;
	struct precopy_sys sys;
	struct fk_entry *tab;
	int ntab;
	struct fk_rule rules[FK_MAX_RULES];
	int nrules;
	uint64_t calls[PRECOPY_FAKE_OP_COUNT];
	struct precopy_fake_vfio *devs;	     /* list, freed with the kernel */
	struct precopy_fake_type1 *type1s;   /* list, freed with the kernel */
	struct precopy_fake_iommufd *iommufds; /* list, freed with the kernel */
	struct precopy_fake_kvm *vms;	     /* list, freed with the kernel */
};

/* fd table (caller holds fk->lock) */
int fk_register(struct precopy_fake_kernel *fk, int fd, int kind, void *obj);
void fk_unregister(struct precopy_fake_kernel *fk, int fd);
void *fk_lookup(struct precopy_fake_kernel *fk, int fd, int kind);
uint64_t fk_now(struct precopy_fake_kernel *fk);
void fk_advance(struct precopy_fake_kernel *fk, uint64_t ns);

/* fault.c (caller holds fk->lock): account one call and apply the rules.
 * Returns -errno to fail it, else 0 (*len possibly capped for a short
 * transfer when len is non-NULL). */
int fk_fault_check(struct precopy_fake_kernel *fk, enum precopy_fake_op op, int fd, unsigned long req,
		   const void *arg, size_t *len);

/* fake_vfio.c, fake_vfio_data.c (caller holds fk->lock) */
int fake_vfio_device_ioctl(struct precopy_fake_vfio *dev, unsigned long req, void *arg);
int fake_vfio_data_ioctl(void *session, unsigned long req, void *arg);
ssize_t fake_vfio_data_read(void *session, void *buf, size_t len);
/* A read of the session returned bytes: counted in STOP_COPY as plain or
 * queued (precopy_fake_vfio_stats). */
void fake_vfio_data_note_read(void *session, int queued);
/* The device's data fd has no poll method (cfg.no_poll). */
int fake_vfio_data_no_poll(void *session);
/* The time a read of n bytes takes (cfg.read_rate; 0 when unlimited). */
uint64_t fake_vfio_data_read_ns(void *session, uint64_t n);
/* ... and the device's queue: when a read of n bytes submitted now
 * completes (after the reads before it on the same device). */
uint64_t fake_vfio_data_read_done_at(void *session, uint64_t now, uint64_t n);
/* The same for writes in RESUMING (cfg.write_rate). */
uint64_t fake_vfio_data_write_ns(void *session, uint64_t n);
uint64_t fake_vfio_data_write_done_at(void *session, uint64_t now, uint64_t n);
ssize_t fake_vfio_data_write(void *session, const void *buf, size_t len);
void fake_vfio_data_pump(void *session);
void fake_vfio_data_drain(void *session);
void fake_vfio_data_closed(void *session);
void fake_vfio_device_closed(struct precopy_fake_vfio *dev);
void fake_vfio_free_all(struct precopy_fake_kernel *fk);

/* fake_type1.c, fake_iommufd.c (caller holds fk->lock): ioctls on a
 * container fd / an iommufd; the fd was closed; free every model (after
 * which no device points at one). */
int fake_type1_ioctl(struct precopy_fake_type1 *ct, unsigned long req, void *arg);
void fake_type1_closed(struct precopy_fake_type1 *ct);
void fake_type1_free_all(struct precopy_fake_kernel *fk);
int fake_iommufd_ioctl(struct precopy_fake_iommufd *ictx, unsigned long req, void *arg);
void fake_iommufd_closed(struct precopy_fake_iommufd *ictx);
void fake_iommufd_free_all(struct precopy_fake_kernel *fk);

/* A device's DMA as the IOMMU it is attached to sees it (caller holds
 * fk->lock). check: 0 when [iova, iova + len) is mapped for the device (or
 * it is attached to nothing), -EFAULT when the IOMMU would block it. mark:
 * record the write in the container's or HWPT's dirty state. */
int fake_type1_dma_check(struct precopy_fake_type1 *ct, uint64_t iova, uint64_t len);
void fake_type1_dma_mark(struct precopy_fake_type1 *ct, int pinned, uint64_t iova, uint64_t len);
int fake_iommufd_dma_check(struct precopy_fake_iommufd *ictx, uint64_t iova, uint64_t len);
void fake_iommufd_dma_mark(struct precopy_fake_iommufd *ictx, uint32_t hwpt_id, uint64_t iova, uint64_t len);

/* fake_kvm.c (caller holds fk->lock) */
int fake_kvm_vm_ioctl(struct precopy_fake_kvm *vm, unsigned long req, void *arg);
void fake_kvm_closed(struct precopy_fake_kvm *vm);
void fake_kvm_free_all(struct precopy_fake_kernel *fk);

#endif /* PRECOPY_FAKE_INTERNAL_H */
