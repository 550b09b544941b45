/* SPDX-License-Identifier: MIT */
/* VFIO_DEVICE_FEATURE and the small stateless queries built on it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/vfio.h"
#include "uapi_compat.h"
#include "sys_retry.h"

#define OPS_MASK (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE)

/* Payloads up to this size travel in a stack buffer. */
#define SMALL_PAYLOAD 64

static int check_flags(uint32_t flags)
{
	uint32_t gs = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);

	if (flags & ~OPS_MASK)
		return -EINVAL;
	if (!(flags & VFIO_DEVICE_FEATURE_PROBE)) {
		/* exactly one of GET and SET */
		if (gs == 0 || gs == (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))
			return -EINVAL;
	}
	return 0;
}

PRECOPY_API int precopy_vfio_feature(const struct precopy_sys *sys, int device_fd, uint32_t flags,
				     uint32_t feature, void *data, size_t len)
{
	union {
		struct vfio_device_feature hdr;
		uint64_t align[(sizeof(struct vfio_device_feature) + SMALL_PAYLOAD) / 8];
	} small;
	struct vfio_device_feature *f;
	size_t total;
	int r;

	if (!sys || (r = check_flags(flags)) < 0)
		return -EINVAL;
	if (feature > VFIO_DEVICE_FEATURE_MASK || (!data && len))
		return -EINVAL;
	if (len > UINT32_MAX - sizeof(struct vfio_device_feature))
		return -EINVAL;
	total = sizeof(struct vfio_device_feature) + len;
	if (len <= SMALL_PAYLOAD) {
		f = &small.hdr;
	} else {
		f = malloc(total);
		if (!f)
			return -ENOMEM;
	}
	memset(f, 0, total);
	f->argsz = (uint32_t)total;
	f->flags = flags | feature;
	if (len)
		memcpy(f->data, data, len);
	r = precopy__sys_ioctl(sys, device_fd, VFIO_DEVICE_FEATURE, f);
	if (len && !(flags & VFIO_DEVICE_FEATURE_PROBE))
		memcpy(data, f->data, len);
	if (f != &small.hdr)
		free(f);
	return r;
}

PRECOPY_API int precopy_vfio_migration_flags(const struct precopy_sys *sys, int device_fd,
					     uint64_t *flags)
{
	struct vfio_device_feature_migration mig = { 0 };
	int r;

	if (!flags)
		return -EINVAL;
	r = precopy_vfio_feature(sys, device_fd, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
				 &mig, sizeof(mig));
	if (r < 0)
		return r;
	*flags = mig.flags;
	if (!(mig.flags & VFIO_MIGRATION_STOP_COPY))
		return -EOPNOTSUPP;
	return 0;
}

PRECOPY_API int precopy_vfio_dma_logging_supported(const struct precopy_sys *sys, int device_fd)
{
	int r = precopy_vfio_feature(sys, device_fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET,
				     VFIO_DEVICE_FEATURE_DMA_LOGGING_START, NULL, 0);

	if (r == -ENOTTY)
		return 0;
	return r < 0 ? r : 1;
}

PRECOPY_API int precopy_vfio_stop_copy_size(const struct precopy_sys *sys, int device_fd,
					    uint64_t *bytes)
{
	struct vfio_device_feature_mig_data_size sz = { 0 };
	int r;

	if (!bytes)
		return -EINVAL;
	r = precopy_vfio_feature(sys, device_fd, VFIO_DEVICE_FEATURE_GET,
				 VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &sz, sizeof(sz));
	if (r < 0)
		return r;
	*bytes = sz.stop_copy_length;
	return 0;
}

PRECOPY_API int precopy_vfio_precopy_info(const struct precopy_sys *sys, int data_fd,
					  uint64_t *initial_bytes, uint64_t *dirty_bytes)
{
	struct vfio_precopy_info info = { .argsz = sizeof(info) };
	int r;

	if (!sys)
		return -EINVAL;
	r = precopy__sys_ioctl(sys, data_fd, VFIO_MIG_GET_PRECOPY_INFO, &info);
	if (r < 0)
		return r;
	if (initial_bytes)
		*initial_bytes = info.initial_bytes;
	if (dirty_bytes)
		*dirty_bytes = info.dirty_bytes;
	return 0;
}
