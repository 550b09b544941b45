/* SPDX-License-Identifier: MIT */
/* ioctl/uapi_compat.h — the one place for kernel uAPI definitions newer than
 * the installed headers (Debian's linux-libc-dev for 6.1 has <linux/vfio.h>
 * without PRE_COPY and without the cdev/iommufd device ioctls, and no
 * <linux/iommufd.h> at all).
 *
 * Every definition sits under #ifndef of a macro that the newer kernel
 * header defines together with it, so a build against newer headers uses
 * theirs and this file adds nothing. Values are the kernel's ABI (checked
 * against include/uapi/linux/vfio.h and include/uapi/linux/iommufd.h).
 *
 * Private to the library, the fake kernel (sim/) and the tests; not
 * installed. Thread safety: not applicable (definitions only).
 */
#ifndef PRECOPY_UAPI_COMPAT_H
#define PRECOPY_UAPI_COMPAT_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#if defined(__has_include)
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif
#endif

/* ---- VFIO migration: PRE_COPY (Linux 6.2) ------------------------------ */

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
/* enum vfio_device_mig_state gained two values in the same release. */
#define VFIO_DEVICE_STATE_PRE_COPY 6
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7
#endif

/* One past the highest enum vfio_device_mig_state value we know. */
#define PRECOPY_VFIO_NUM_STATES 8

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
	__u32 argsz;
	__u32 flags;
	__aligned_u64 initial_bytes;
	__aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
struct vfio_device_feature_mig_data_size {
	__aligned_u64 stop_copy_length;
};
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif

/* ---- VFIO device cdev bound to an iommufd (Linux 6.6) ------------------ */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
/* The 6.6 layout; later kernels append fields behind argsz, so this size
 * stays accepted. */
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
/* pt_id: in, an IOAS or HWPT id; out, the HWPT the device is attached to. */
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

/* ---- iommufd dirty tracking (Linux 6.7) -------------------------------- */

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#endif

/* Command numbers: IOMMUFD_CMD_BASE is 0x80 and the commands follow in
 * order DESTROY, IOAS_ALLOC, IOAS_ALLOW_IOVAS, IOAS_COPY, IOAS_IOVA_RANGES,
 * IOAS_MAP, IOAS_UNMAP, OPTION, VFIO_IOAS, HWPT_ALLOC, GET_HW_INFO,
 * HWPT_SET_DIRTY_TRACKING (0x8b), HWPT_GET_DIRTY_BITMAP (0x8c). */

#ifndef IOMMU_HWPT_SET_DIRTY_TRACKING
#define IOMMU_HWPT_DIRTY_TRACKING_ENABLE 1
struct iommu_hwpt_set_dirty_tracking {
	__u32 size;
	__u32 flags;
	__u32 hwpt_id;
	__u32 __reserved;
};
#define IOMMU_HWPT_SET_DIRTY_TRACKING _IO(IOMMUFD_TYPE, 0x8b)
#endif

#ifndef IOMMU_HWPT_GET_DIRTY_BITMAP
#define IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR 1
struct iommu_hwpt_get_dirty_bitmap {
	__u32 size;
	__u32 hwpt_id;
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 page_size;
	__aligned_u64 data;
};
#define IOMMU_HWPT_GET_DIRTY_BITMAP _IO(IOMMUFD_TYPE, 0x8c)
#endif

#endif /* PRECOPY_UAPI_COMPAT_H */
