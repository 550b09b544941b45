/* SPDX-License-Identifier: MIT */
/* Opening a VFIO device: the legacy group/container path and the device
 * cdev path bound to an iommufd. Every syscall goes through the sys seam. */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "precopy/pci.h"
#include "uapi_compat.h" /* VFIO_DEVICE_BIND_IOMMUFD on pre-6.6 headers */
#include "sys_retry.h"

#define VFIO_CONTAINER_NODE "/dev/vfio/vfio"
#define IOMMUFD_NODE "/dev/iommu"

static const char *const step_names[] = {
	[PRECOPY_VFIO_STEP_NONE] = "none",
	[PRECOPY_VFIO_STEP_ARGS] = "check arguments",
	[PRECOPY_VFIO_STEP_GROUP_OPEN] = "open the group node",
	[PRECOPY_VFIO_STEP_GROUP_STATUS] = "VFIO_GROUP_GET_STATUS",
	[PRECOPY_VFIO_STEP_GROUP_VIABLE] = "group viability",
	[PRECOPY_VFIO_STEP_CONTAINER_OPEN] = "open " VFIO_CONTAINER_NODE,
	[PRECOPY_VFIO_STEP_API_VERSION] = "VFIO_GET_API_VERSION",
	[PRECOPY_VFIO_STEP_IOMMU_TYPE] = "VFIO_CHECK_EXTENSION(type1)",
	[PRECOPY_VFIO_STEP_SET_CONTAINER] = "VFIO_GROUP_SET_CONTAINER",
	[PRECOPY_VFIO_STEP_SET_IOMMU] = "VFIO_SET_IOMMU",
	[PRECOPY_VFIO_STEP_GET_DEVICE_FD] = "VFIO_GROUP_GET_DEVICE_FD",
	[PRECOPY_VFIO_STEP_CDEV_LOOKUP] = "find the device's VFIO cdev or IOMMU group",
	[PRECOPY_VFIO_STEP_CDEV_OPEN] = "open the device cdev",
	[PRECOPY_VFIO_STEP_IOMMUFD_OPEN] = "open " IOMMUFD_NODE,
	[PRECOPY_VFIO_STEP_BIND_IOMMUFD] = "VFIO_DEVICE_BIND_IOMMUFD",
};

PRECOPY_API const char *precopy_vfio_step_name(enum precopy_vfio_step step)
{
	if ((unsigned)step >= sizeof(step_names) / sizeof(step_names[0]) || !step_names[step])
		return "unknown step";
	return step_names[step];
}

static void fds_reset(struct precopy_vfio_fds *f)
{
	memset(f, 0, sizeof(*f));
	f->device_fd = f->group_fd = f->container_fd = f->iommufd = -1;
}

static void close_fd(const struct precopy_sys *sys, int *fd, int *first_err)
{
	int r;

	if (*fd < 0)
		return;
	r = precopy__sys_close(sys, *fd);
	if (r < 0 && !*first_err)
		*first_err = r;
	*fd = -1;
}

PRECOPY_API int precopy_vfio_fds_close(const struct precopy_sys *sys, struct precopy_vfio_fds *f)
{
	int err = 0;

	if (precopy_sys_validate(sys) || !f)
		return -EINVAL;
	close_fd(sys, &f->device_fd, &err);
	close_fd(sys, &f->group_fd, &err);
	close_fd(sys, &f->container_fd, &err);
	close_fd(sys, &f->iommufd, &err);
	f->path = PRECOPY_VFIO_PATH_NONE;
	f->devid = 0;
	return err;
}

/* Records the failing step (keeping the path tried and the node), closes
 * whatever was opened, returns r. The close
 * errors are dropped: the step's error is what the caller needs. */
static int fail(const struct precopy_sys *sys, struct precopy_vfio_fds *f, enum precopy_vfio_step step,
		int r)
{
	enum precopy_vfio_path path = f->path;

	precopy_vfio_fds_close(sys, f);
	f->path = path; /* which path failed */
	f->failed_step = step;
	return r;
}

PRECOPY_API int precopy_vfio_group_open(const struct precopy_sys *sys, int group, const char *addr,
					struct precopy_vfio_fds *out)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	struct precopy_pci_addr parsed;
	int r, type;

	if (!out)
		return -EINVAL;
	fds_reset(out);
	if (precopy_sys_validate(sys) || group < 0 || precopy_pci_addr_parse(addr, &parsed))
		return fail(sys, out, PRECOPY_VFIO_STEP_ARGS, -EINVAL);
	out->path = PRECOPY_VFIO_PATH_GROUP;
	snprintf(out->node, sizeof(out->node), "/dev/vfio/%d", group);

	r = precopy__sys_open(sys, out->node, O_RDWR);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_GROUP_OPEN, r);
	out->group_fd = r;

	r = precopy__sys_ioctl(sys, out->group_fd, VFIO_GROUP_GET_STATUS, &status);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_GROUP_STATUS, r);
	/* Not viable: some device of the group is bound to a host driver that
	 * is not DMA-safe for userspace; the kernel's own errno for that
	 * conflict is EBUSY. */
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return fail(sys, out, PRECOPY_VFIO_STEP_GROUP_VIABLE, -EBUSY);

	r = precopy__sys_open(sys, VFIO_CONTAINER_NODE, O_RDWR);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_CONTAINER_OPEN, r);
	out->container_fd = r;

	r = precopy__sys_ioctl(sys, out->container_fd, VFIO_GET_API_VERSION, NULL);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_API_VERSION, r);
	if (r != VFIO_API_VERSION)
		return fail(sys, out, PRECOPY_VFIO_STEP_API_VERSION, -EPROTO);

	/* type1v2 (unmap semantics QEMU relies on) where offered, else type1. */
	type = VFIO_TYPE1v2_IOMMU;
	r = precopy__sys_ioctl(sys, out->container_fd, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)type);
	if (r == 0) {
		type = VFIO_TYPE1_IOMMU;
		r = precopy__sys_ioctl(sys, out->container_fd, VFIO_CHECK_EXTENSION,
				      (void *)(uintptr_t)type);
	}
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_IOMMU_TYPE, r);
	if (r == 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_IOMMU_TYPE, -EOPNOTSUPP);

	r = precopy__sys_ioctl(sys, out->group_fd, VFIO_GROUP_SET_CONTAINER, &out->container_fd);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_SET_CONTAINER, r);
	r = precopy__sys_ioctl(sys, out->container_fd, VFIO_SET_IOMMU, (void *)(uintptr_t)type);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_SET_IOMMU, r);

	r = precopy__sys_ioctl(sys, out->group_fd, VFIO_GROUP_GET_DEVICE_FD, (void *)addr);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_GET_DEVICE_FD, r);
	out->device_fd = r;
	return 0;
}

PRECOPY_API int precopy_vfio_cdev_open(const struct precopy_sys *sys, const char *cdev_path,
				       struct precopy_vfio_fds *out)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	int r;

	if (!out)
		return -EINVAL;
	fds_reset(out);
	if (precopy_sys_validate(sys) || !cdev_path || !*cdev_path ||
	    strlen(cdev_path) >= sizeof(out->node))
		return fail(sys, out, PRECOPY_VFIO_STEP_ARGS, -EINVAL);
	out->path = PRECOPY_VFIO_PATH_CDEV;
	strcpy(out->node, cdev_path);

	r = precopy__sys_open(sys, cdev_path, O_RDWR);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_CDEV_OPEN, r);
	out->device_fd = r;

	r = precopy__sys_open(sys, IOMMUFD_NODE, O_RDWR);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_IOMMUFD_OPEN, r);
	out->iommufd = r;

	bind.iommufd = out->iommufd;
	r = precopy__sys_ioctl(sys, out->device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	if (r < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_BIND_IOMMUFD, r);
	out->devid = bind.out_devid;
	return 0;
}

PRECOPY_API int precopy_pci_vfio_open(const struct precopy_sys *sys, const struct precopy_pci_device *dev,
				      struct precopy_vfio_fds *out)
{
	char node[64];
	int r;

	if (!out)
		return -EINVAL;
	fds_reset(out);
	if (precopy_sys_validate(sys) || !dev)
		return fail(sys, out, PRECOPY_VFIO_STEP_ARGS, -EINVAL);
	if (dev->vfio_cdev[0]) {
		if (snprintf(node, sizeof(node), "/dev/vfio/devices/%s", dev->vfio_cdev) >= (int)sizeof(node))
			return fail(sys, out, PRECOPY_VFIO_STEP_ARGS, -ENAMETOOLONG);
		r = precopy_vfio_cdev_open(sys, node, out);
		/* No /dev/iommu (or no cdev node): the group path may still work. */
		if (r != -ENOENT || dev->iommu_group < 0)
			return r;
	}
	if (dev->iommu_group < 0)
		return fail(sys, out, PRECOPY_VFIO_STEP_CDEV_LOOKUP, -ENOENT);
	return precopy_vfio_group_open(sys, dev->iommu_group, dev->address, out);
}
