/* SPDX-License-Identifier: MIT */
/* Opening VFIO devices (group + container, cdev + iommufd) through the sys
 * seam: a scripted fake kernel checks the exact ioctl sequence and
 * arguments, injects a failure at every step (the step's -errno comes back,
 * failed_step names it, and no fd is left open), and the real kernel is
 * asked for nodes that cannot exist. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "precopy/pci.h"
#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"

#define MAX_FDS 16
#define MAX_CALLS 32

/* One scripted kernel. Fds are 100 + slot. */
struct fake {
	/* script */
	const char *fail_open_path; /* open of this path fails with fail_open_err */
	int fail_open_err;
	unsigned long fail_req; /* this ioctl fails with fail_req_err */
	int fail_req_err;
	uint32_t group_flags; /* VFIO_GROUP_GET_STATUS result */
	int api_version;
	int has_v2, has_v1; /* VFIO_CHECK_EXTENSION results */
	uint32_t devid;     /* BIND_IOMMUFD out_devid */
	int mig_rc;         /* VFIO_DEVICE_FEATURE(MIGRATION, GET): 0 or -errno */
	uint64_t mig_flags;
	int log_rc;         /* VFIO_DEVICE_FEATURE(DMA_LOGGING_START, PROBE|SET) */
	/* record */
	bool open[MAX_FDS];
	char path[MAX_FDS][64];
	int nopen_calls, nclose_calls;
	unsigned long req[MAX_CALLS];
	uintptr_t arg[MAX_CALLS];
	int reqfd[MAX_CALLS];
	int nreq;
	int set_container_fd;     /* what SET_CONTAINER was given */
	int bind_iommufd;         /* what BIND was given */
	uint32_t bind_argsz;
	char device_name[64];     /* what GET_DEVICE_FD was given */
};

static int fake_alloc_fd(struct fake *f, const char *path)
{
	for (int i = 0; i < MAX_FDS; i++)
		if (!f->open[i]) {
			f->open[i] = true;
			snprintf(f->path[i], sizeof(f->path[i]), "%s", path);
			return 100 + i;
		}
	return -EMFILE;
}

static bool fake_fd_ok(struct fake *f, int fd)
{
	return fd >= 100 && fd < 100 + MAX_FDS && f->open[fd - 100];
}

static const char *fake_fd_path(struct fake *f, int fd)
{
	return fake_fd_ok(f, fd) ? f->path[fd - 100] : "";
}

static int f_open(void *ctx, const char *path, int flags)
{
	struct fake *f = ctx;

	f->nopen_calls++;
	cr_expect_eq(flags & O_ACCMODE, O_RDWR, "%s not opened read-write", path);
	if (f->fail_open_path && !strcmp(path, f->fail_open_path))
		return f->fail_open_err;
	return fake_alloc_fd(f, path);
}

static int f_close(void *ctx, int fd)
{
	struct fake *f = ctx;

	f->nclose_calls++;
	if (!fake_fd_ok(f, fd))
		return -EBADF;
	f->open[fd - 100] = false;
	return 0;
}

static int f_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct fake *f = ctx;
	const char *p = fake_fd_path(f, fd);

	if (!fake_fd_ok(f, fd))
		return -EBADF;
	if (f->nreq < MAX_CALLS) {
		f->req[f->nreq] = req;
		f->arg[f->nreq] = (uintptr_t)arg;
		f->reqfd[f->nreq] = fd;
		f->nreq++;
	}
	if (req == f->fail_req)
		return f->fail_req_err;
	switch (req) {
	case VFIO_GROUP_GET_STATUS: {
		struct vfio_group_status *s = arg;
		cr_expect(!strncmp(p, "/dev/vfio/", 10), "GET_STATUS on %s", p);
		cr_expect_eq(s->argsz, sizeof(*s));
		s->flags = f->group_flags;
		return 0;
	}
	case VFIO_GET_API_VERSION:
		cr_expect_str_eq(p, "/dev/vfio/vfio");
		return f->api_version;
	case VFIO_CHECK_EXTENSION:
		cr_expect_str_eq(p, "/dev/vfio/vfio");
		if ((uintptr_t)arg == VFIO_TYPE1v2_IOMMU)
			return f->has_v2;
		if ((uintptr_t)arg == VFIO_TYPE1_IOMMU)
			return f->has_v1;
		return 0;
	case VFIO_GROUP_SET_CONTAINER:
		f->set_container_fd = *(int *)arg;
		return 0;
	case VFIO_SET_IOMMU:
		cr_expect_str_eq(p, "/dev/vfio/vfio");
		return 0;
	case VFIO_GROUP_GET_DEVICE_FD:
		snprintf(f->device_name, sizeof(f->device_name), "%s", (const char *)arg);
		return fake_alloc_fd(f, "device");
	case VFIO_DEVICE_FEATURE: {
		struct vfio_device_feature *ft = arg;
		uint32_t which = ft->flags & VFIO_DEVICE_FEATURE_MASK;
		cr_expect(!strcmp(p, "device") || !strncmp(p, "/dev/vfio/devices/", 18),
			  "VFIO_DEVICE_FEATURE on %s", p);
		if (which == VFIO_DEVICE_FEATURE_MIGRATION &&
		    (ft->flags & ~VFIO_DEVICE_FEATURE_MASK) == VFIO_DEVICE_FEATURE_GET) {
			cr_expect_eq(ft->argsz, sizeof(*ft) + sizeof(struct vfio_device_feature_migration));
			if (f->mig_rc)
				return f->mig_rc;
			memcpy(ft->data, &f->mig_flags, sizeof(f->mig_flags));
			return 0;
		}
		if (which == VFIO_DEVICE_FEATURE_DMA_LOGGING_START &&
		    (ft->flags & VFIO_DEVICE_FEATURE_PROBE))
			return f->log_rc;
		return -EINVAL;
	}
	case VFIO_DEVICE_BIND_IOMMUFD: {
		struct vfio_device_bind_iommufd *b = arg;
		cr_expect(!strncmp(p, "/dev/vfio/devices/", 18), "BIND on %s", p);
		f->bind_iommufd = b->iommufd;
		f->bind_argsz = b->argsz;
		cr_expect_eq(b->flags, 0);
		b->out_devid = f->devid;
		return 0;
	}
	}
	return -ENOTTY;
}

/* The probe path must make no other syscall: any other op fails the test. */
static int f_unused(void)
{
	cr_assert_fail("unexpected syscall");
	return -EPERM; /* not reached */
}
static ssize_t f_read(void *c, int fd, void *b, size_t l) { return f_unused(); }
static ssize_t f_write(void *c, int fd, const void *b, size_t l) { return f_unused(); }
static ssize_t f_splice(void *c, int i, int o, size_t l, unsigned int fl) { return f_unused(); }
static int f_poll(void *c, struct pollfd *p, unsigned int n, int t) { return f_unused(); }
static int f_mmap(void *c, size_t l, int p, int fl, int fd, off_t o, void **out) { return f_unused(); }
static int f_munmap(void *c, void *a, size_t l) { return f_unused(); }
static int f_pipe2(void *c, int fds[2], int fl) { return f_unused(); }

static const struct precopy_sys_ops fake_ops = {
	.version = PRECOPY_SYS_OPS_VERSION,
	.ioctl = f_ioctl,
	.read = f_read,
	.write = f_write,
	.splice = f_splice,
	.poll = f_poll,
	.open = f_open,
	.close = f_close,
	.mmap = f_mmap,
	.munmap = f_munmap,
	.pipe2 = f_pipe2,
};

/* A healthy VFIO host. */
static void fake_init(struct fake *f, struct precopy_sys *sys)
{
	memset(f, 0, sizeof(*f));
	f->group_flags = VFIO_GROUP_FLAGS_VIABLE;
	f->api_version = VFIO_API_VERSION;
	f->has_v2 = 1;
	f->has_v1 = 1;
	f->devid = 42;
	f->set_container_fd = -1;
	f->bind_iommufd = -1;
	sys->ops = &fake_ops;
	sys->ctx = f;
}

static int fake_open_count(const struct fake *f)
{
	int n = 0;

	for (int i = 0; i < MAX_FDS; i++)
		n += f->open[i];
	return n;
}

static void expect_all_closed(const struct precopy_vfio_fds *o)
{
	cr_expect_eq(o->device_fd, -1);
	cr_expect_eq(o->group_fd, -1);
	cr_expect_eq(o->container_fd, -1);
	cr_expect_eq(o->iommufd, -1);
}

/* ---- group path ------------------------------------------------------------ */

Test(vfio_open_group, healthy_host_sequence)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;

	fake_init(&f, &sys);
	cr_assert_eq(precopy_vfio_group_open(&sys, 12, "0000:81:00.0", &o), 0);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_GROUP);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_NONE);
	cr_expect_str_eq(o.node, "/dev/vfio/12");
	cr_expect_str_eq(f.path[o.group_fd - 100], "/dev/vfio/12");
	cr_expect_str_eq(f.path[o.container_fd - 100], "/dev/vfio/vfio");
	cr_expect_str_eq(f.path[o.device_fd - 100], "device");
	cr_expect_eq(o.iommufd, -1);
	cr_expect_eq(f.set_container_fd, o.container_fd);
	cr_expect_str_eq(f.device_name, "0000:81:00.0");

	static const unsigned long want[] = {
		VFIO_GROUP_GET_STATUS,	  VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION,
		VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU,	VFIO_GROUP_GET_DEVICE_FD,
	};
	cr_assert_eq(f.nreq, 6);
	for (int i = 0; i < 6; i++)
		cr_expect_eq(f.req[i], want[i], "ioctl %d", i);
	cr_expect_eq(f.arg[2], VFIO_TYPE1v2_IOMMU);
	cr_expect_eq(f.arg[4], VFIO_TYPE1v2_IOMMU);
	cr_expect_eq(f.reqfd[3], o.group_fd);
	cr_expect_eq(f.reqfd[5], o.group_fd);

	cr_expect_eq(fake_open_count(&f), 3);
	cr_expect_eq(precopy_vfio_fds_close(&sys, &o), 0);
	cr_expect_eq(fake_open_count(&f), 0);
	expect_all_closed(&o);
	/* closing twice is harmless: nothing is held any more */
	int closes = f.nclose_calls;
	cr_expect_eq(precopy_vfio_fds_close(&sys, &o), 0);
	cr_expect_eq(f.nclose_calls, closes);
}

Test(vfio_open_group, type1_when_v2_absent)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;

	fake_init(&f, &sys);
	f.has_v2 = 0;
	cr_assert_eq(precopy_vfio_group_open(&sys, 3, "0000:00:02.0", &o), 0);
	cr_assert_eq(f.nreq, 7);
	cr_expect_eq(f.req[3], VFIO_CHECK_EXTENSION);
	cr_expect_eq(f.arg[3], VFIO_TYPE1_IOMMU);
	cr_expect_eq(f.req[5], VFIO_SET_IOMMU);
	cr_expect_eq(f.arg[5], VFIO_TYPE1_IOMMU);
	precopy_vfio_fds_close(&sys, &o);
	cr_expect_eq(fake_open_count(&f), 0);
}

/* Every way the group path can fail: the -errno, the step, nothing open. */
static const struct group_case {
	const char *name;
	const char *fail_open_path;
	unsigned long fail_req;
	int err;           /* injected */
	uint32_t group_flags;
	int api_version, has_v2, has_v1;
	int want;
	enum precopy_vfio_step step;
} group_cases[] = {
	{ "no group node", "/dev/vfio/12", 0, -ENOENT, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1, -ENOENT,
	  PRECOPY_VFIO_STEP_GROUP_OPEN },
	{ "group node denied", "/dev/vfio/12", 0, -EACCES, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1, -EACCES,
	  PRECOPY_VFIO_STEP_GROUP_OPEN },
	{ "group held by a VMM", "/dev/vfio/12", 0, -EBUSY, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1, -EBUSY,
	  PRECOPY_VFIO_STEP_GROUP_OPEN },
	{ "status fails", NULL, VFIO_GROUP_GET_STATUS, -EFAULT, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1,
	  -EFAULT, PRECOPY_VFIO_STEP_GROUP_STATUS },
	{ "not viable", NULL, 0, 0, 0, 0, 1, 1, -EBUSY, PRECOPY_VFIO_STEP_GROUP_VIABLE },
	{ "not viable, container set", NULL, 0, 0, VFIO_GROUP_FLAGS_CONTAINER_SET, 0, 1, 1, -EBUSY,
	  PRECOPY_VFIO_STEP_GROUP_VIABLE },
	{ "no container node", "/dev/vfio/vfio", 0, -ENOENT, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1,
	  -ENOENT, PRECOPY_VFIO_STEP_CONTAINER_OPEN },
	{ "api version fails", NULL, VFIO_GET_API_VERSION, -EINVAL, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1,
	  -EINVAL, PRECOPY_VFIO_STEP_API_VERSION },
	{ "other api version", NULL, 0, 0, VFIO_GROUP_FLAGS_VIABLE, 1, 1, 1, -EPROTO,
	  PRECOPY_VFIO_STEP_API_VERSION },
	{ "no type1 at all", NULL, 0, 0, VFIO_GROUP_FLAGS_VIABLE, 0, 0, 0, -EOPNOTSUPP,
	  PRECOPY_VFIO_STEP_IOMMU_TYPE },
	{ "check extension fails", NULL, VFIO_CHECK_EXTENSION, -EIO, VFIO_GROUP_FLAGS_VIABLE, 0, 1,
	  1, -EIO, PRECOPY_VFIO_STEP_IOMMU_TYPE },
	{ "set container fails", NULL, VFIO_GROUP_SET_CONTAINER, -EPERM, VFIO_GROUP_FLAGS_VIABLE, 0,
	  1, 1, -EPERM, PRECOPY_VFIO_STEP_SET_CONTAINER },
	{ "set iommu fails", NULL, VFIO_SET_IOMMU, -ENODEV, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1, -ENODEV,
	  PRECOPY_VFIO_STEP_SET_IOMMU },
	{ "address not in group", NULL, VFIO_GROUP_GET_DEVICE_FD, -ENODEV, VFIO_GROUP_FLAGS_VIABLE, 0,
	  1, 1, -ENODEV, PRECOPY_VFIO_STEP_GET_DEVICE_FD },
	{ "device busy", NULL, VFIO_GROUP_GET_DEVICE_FD, -EBUSY, VFIO_GROUP_FLAGS_VIABLE, 0, 1, 1,
	  -EBUSY, PRECOPY_VFIO_STEP_GET_DEVICE_FD },
};

Test(vfio_open_group, every_failure_is_reported_and_closes_everything)
{
	for (size_t i = 0; i < sizeof(group_cases) / sizeof(group_cases[0]); i++) {
		const struct group_case *c = &group_cases[i];
		struct fake f;
		struct precopy_sys sys;
		struct precopy_vfio_fds o;

		fake_init(&f, &sys);
		f.fail_open_path = c->fail_open_path;
		f.fail_open_err = c->err;
		f.fail_req = c->fail_req;
		f.fail_req_err = c->err;
		f.group_flags = c->group_flags;
		f.api_version = c->api_version;
		f.has_v2 = c->has_v2;
		f.has_v1 = c->has_v1;
		cr_expect_eq(precopy_vfio_group_open(&sys, 12, "0000:81:00.0", &o), c->want, "%s", c->name);
		cr_expect_eq(o.failed_step, c->step, "%s: step %s", c->name,
			     precopy_vfio_step_name(o.failed_step));
		cr_expect_eq(o.path, PRECOPY_VFIO_PATH_GROUP, "%s", c->name);
		cr_expect_str_eq(o.node, "/dev/vfio/12", "%s", c->name);
		expect_all_closed(&o);
		cr_expect_eq(fake_open_count(&f), 0, "%s: fds left open", c->name);
	}
}

Test(vfio_open_group, bad_arguments_make_no_syscall)
{
	struct fake f;
	struct precopy_sys sys, broken = { NULL, NULL };
	struct precopy_vfio_fds o;

	fake_init(&f, &sys);
	cr_expect_eq(precopy_vfio_group_open(&sys, -1, "0000:81:00.0", &o), -EINVAL);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_ARGS);
	cr_expect_eq(precopy_vfio_group_open(&sys, 1, "0000:81:00", &o), -EINVAL);
	cr_expect_eq(precopy_vfio_group_open(&sys, 1, NULL, &o), -EINVAL);
	cr_expect_eq(precopy_vfio_group_open(&sys, 1, "0000:81:00.0", NULL), -EINVAL);
	cr_expect_eq(precopy_vfio_group_open(&broken, 1, "0000:81:00.0", &o), -EINVAL);
	cr_expect_eq(precopy_vfio_group_open(NULL, 1, "0000:81:00.0", &o), -EINVAL);
	expect_all_closed(&o);
	cr_expect_eq(f.nopen_calls + f.nreq, 0);
}

/* ---- cdev path ---------------------------------------------------------------- */

Test(vfio_open_cdev, healthy_host_binds_to_iommufd)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;

	fake_init(&f, &sys);
	cr_assert_eq(precopy_vfio_cdev_open(&sys, "/dev/vfio/devices/vfio3", &o), 0);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_CDEV);
	cr_expect_str_eq(f.path[o.device_fd - 100], "/dev/vfio/devices/vfio3");
	cr_expect_str_eq(f.path[o.iommufd - 100], "/dev/iommu");
	cr_expect_eq(o.group_fd, -1);
	cr_expect_eq(o.container_fd, -1);
	cr_expect_eq(f.nreq, 1);
	cr_expect_eq(f.req[0], VFIO_DEVICE_BIND_IOMMUFD);
	cr_expect_eq(f.reqfd[0], o.device_fd);
	cr_expect_eq(f.bind_iommufd, o.iommufd);
	cr_expect_eq(f.bind_argsz, 16);
	cr_expect_eq(o.devid, 42);
	cr_expect_eq(precopy_vfio_fds_close(&sys, &o), 0);
	cr_expect_eq(fake_open_count(&f), 0);
}

Test(vfio_open_cdev, failures)
{
	static const struct {
		const char *name, *fail_open_path;
		unsigned long fail_req;
		int err;
		enum precopy_vfio_step step;
	} cases[] = {
		{ "no cdev node", "/dev/vfio/devices/vfio3", 0, -ENOENT, PRECOPY_VFIO_STEP_CDEV_OPEN },
		{ "cdev denied", "/dev/vfio/devices/vfio3", 0, -EACCES, PRECOPY_VFIO_STEP_CDEV_OPEN },
		{ "no iommufd", "/dev/iommu", 0, -ENOENT, PRECOPY_VFIO_STEP_IOMMUFD_OPEN },
		{ "bind busy", NULL, VFIO_DEVICE_BIND_IOMMUFD, -EBUSY, PRECOPY_VFIO_STEP_BIND_IOMMUFD },
		{ "bind unsupported", NULL, VFIO_DEVICE_BIND_IOMMUFD, -ENOTTY,
		  PRECOPY_VFIO_STEP_BIND_IOMMUFD },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		struct precopy_sys sys;
		struct precopy_vfio_fds o;

		fake_init(&f, &sys);
		f.fail_open_path = cases[i].fail_open_path;
		f.fail_open_err = cases[i].err;
		f.fail_req = cases[i].fail_req;
		f.fail_req_err = cases[i].err;
		cr_expect_eq(precopy_vfio_cdev_open(&sys, "/dev/vfio/devices/vfio3", &o), cases[i].err, "%s",
			     cases[i].name);
		cr_expect_eq(o.failed_step, cases[i].step, "%s", cases[i].name);
		expect_all_closed(&o);
		cr_expect_eq(fake_open_count(&f), 0, "%s: fds left open", cases[i].name);
	}
}

Test(vfio_open_cdev, bad_arguments)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;
	char longpath[100];

	fake_init(&f, &sys);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	cr_expect_eq(precopy_vfio_cdev_open(&sys, NULL, &o), -EINVAL);
	cr_expect_eq(precopy_vfio_cdev_open(&sys, "", &o), -EINVAL);
	cr_expect_eq(precopy_vfio_cdev_open(&sys, longpath, &o), -EINVAL);
	cr_expect_eq(precopy_vfio_cdev_open(&sys, "/dev/vfio/devices/vfio0", NULL), -EINVAL);
	cr_expect_eq(f.nopen_calls, 0);
}

/* ---- choosing the path for a scanned device ----------------------------------- */

static struct precopy_pci_device scanned(const char *cdev, int group)
{
	struct precopy_pci_device d;

	memset(&d, 0, sizeof(d));
	snprintf(d.address, sizeof(d.address), "0000:81:00.0");
	d.addr.bus = 0x81;
	snprintf(d.driver, sizeof(d.driver), "vfio-pci");
	snprintf(d.vfio_cdev, sizeof(d.vfio_cdev), "%s", cdev);
	d.iommu_group = group;
	d.is_vfio = true;
	return d;
}

Test(vfio_open_auto, prefers_cdev)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;
	struct precopy_pci_device d = scanned("vfio5", 12);

	fake_init(&f, &sys);
	cr_assert_eq(precopy_pci_vfio_open(&sys, &d, &o), 0);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_CDEV);
	cr_expect_str_eq(o.node, "/dev/vfio/devices/vfio5");
	precopy_vfio_fds_close(&sys, &o);
	cr_expect_eq(fake_open_count(&f), 0);
}

Test(vfio_open_auto, falls_back_to_group_without_iommufd)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;
	struct precopy_pci_device d = scanned("vfio5", 12);

	fake_init(&f, &sys);
	f.fail_open_path = "/dev/iommu";
	f.fail_open_err = -ENOENT;
	cr_assert_eq(precopy_pci_vfio_open(&sys, &d, &o), 0);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_GROUP);
	cr_expect_str_eq(o.node, "/dev/vfio/12");
	cr_expect_str_eq(f.device_name, "0000:81:00.0");
	precopy_vfio_fds_close(&sys, &o);
	cr_expect_eq(fake_open_count(&f), 0);
}

Test(vfio_open_auto, no_fallback_for_other_errors_or_without_group)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;
	struct precopy_pci_device d = scanned("vfio5", 12);

	/* a busy device stays busy on the other path: report it as is */
	fake_init(&f, &sys);
	f.fail_req = VFIO_DEVICE_BIND_IOMMUFD;
	f.fail_req_err = -EBUSY;
	cr_expect_eq(precopy_pci_vfio_open(&sys, &d, &o), -EBUSY);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_BIND_IOMMUFD);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_CDEV);
	cr_expect_eq(fake_open_count(&f), 0);

	/* no iommufd and no group: the cdev's error */
	d = scanned("vfio5", -1);
	fake_init(&f, &sys);
	f.fail_open_path = "/dev/iommu";
	f.fail_open_err = -ENOENT;
	cr_expect_eq(precopy_pci_vfio_open(&sys, &d, &o), -ENOENT);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_IOMMUFD_OPEN);

	/* neither cdev nor group */
	d = scanned("", -1);
	fake_init(&f, &sys);
	cr_expect_eq(precopy_pci_vfio_open(&sys, &d, &o), -ENOENT);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_CDEV_LOOKUP);
	cr_expect_eq(f.nopen_calls, 0);

	cr_expect_eq(precopy_pci_vfio_open(&sys, NULL, &o), -EINVAL);
	cr_expect_eq(precopy_pci_vfio_open(&sys, &d, NULL), -EINVAL);
}

/* What precopy-probe does for a VFIO device, on both paths: open, read the
 * migration flags and the DMA logging probe on the device fd, close. */
Test(vfio_open_auto, probe_flow_on_the_opened_device)
{
	static const struct {
		const char *cdev;
		int group, mig_rc;
		uint64_t flags;
		int log_rc, want_mig, want_log;
	} cases[] = {
		{ "vfio5", 12, 0, VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY, 0, 0, 1 },
		{ "", 12, 0, VFIO_MIGRATION_STOP_COPY, -ENOTTY, 0, 0 },
		{ "vfio5", -1, -ENOTTY, 0, -ENOTTY, -ENOTTY, 0 },
		{ "", 7, 0, VFIO_MIGRATION_P2P, 0, -EOPNOTSUPP, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		struct precopy_sys sys;
		struct precopy_vfio_fds o;
		struct precopy_pci_device d = scanned(cases[i].cdev, cases[i].group);
		uint64_t flags = 0;

		fake_init(&f, &sys);
		f.mig_rc = cases[i].mig_rc;
		f.mig_flags = cases[i].flags;
		f.log_rc = cases[i].log_rc;
		cr_assert_eq(precopy_pci_vfio_open(&sys, &d, &o), 0, "case %zu", i);
		cr_expect_eq(o.path, cases[i].cdev[0] ? PRECOPY_VFIO_PATH_CDEV : PRECOPY_VFIO_PATH_GROUP);
		cr_expect_eq(precopy_vfio_migration_flags(&sys, o.device_fd, &flags), cases[i].want_mig,
			     "case %zu", i);
		if (cases[i].mig_rc == 0)
			cr_expect_eq(flags, cases[i].flags, "case %zu", i);
		cr_expect_eq(precopy_vfio_dma_logging_supported(&sys, o.device_fd), cases[i].want_log,
			     "case %zu", i);
		cr_expect_eq(precopy_vfio_fds_close(&sys, &o), 0);
		cr_expect_eq(fake_open_count(&f), 0);
	}
}

/* A close error is reported, and the other fds are still closed. */
Test(vfio_open, close_reports_first_error_and_closes_the_rest)
{
	struct fake f;
	struct precopy_sys sys;
	struct precopy_vfio_fds o;

	fake_init(&f, &sys);
	cr_assert_eq(precopy_vfio_group_open(&sys, 12, "0000:81:00.0", &o), 0);
	f.open[o.device_fd - 100] = false; /* the kernel will say EBADF for it */
	cr_expect_eq(precopy_vfio_fds_close(&sys, &o), -EBADF);
	expect_all_closed(&o);
	cr_expect_eq(fake_open_count(&f), 0);
	cr_expect_eq(precopy_vfio_fds_close(NULL, &o), -EINVAL);
	cr_expect_eq(precopy_vfio_fds_close(&sys, NULL), -EINVAL);
}

Test(vfio_open, step_names)
{
	for (int s = PRECOPY_VFIO_STEP_NONE; s <= PRECOPY_VFIO_STEP_BIND_IOMMUFD; s++) {
		cr_expect_not_null(precopy_vfio_step_name(s));
		cr_expect_str_neq(precopy_vfio_step_name(s), "unknown step", "step %d", s);
	}
	cr_expect_str_eq(precopy_vfio_step_name(PRECOPY_VFIO_STEP_BIND_IOMMUFD + 1), "unknown step");
	cr_expect_str_eq(precopy_vfio_step_name((enum precopy_vfio_step)-1), "unknown step");
}

/* ---- the real kernel ------------------------------------------------------------ */

/* Nodes that cannot exist, whether or not this host has VFIO. */
Test(vfio_open_real, nonexistent_group_and_cdev_are_enoent)
{
	const struct precopy_sys *sys = precopy_sys_real();
	struct precopy_vfio_fds o;
	struct precopy_pci_device d = scanned("vfio2147483000", 2147483000);

	cr_expect_eq(precopy_vfio_group_open(sys, 2147483000, "0000:81:00.0", &o), -ENOENT);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_GROUP_OPEN);
	cr_expect_str_eq(o.node, "/dev/vfio/2147483000");
	expect_all_closed(&o);

	cr_expect_eq(precopy_vfio_cdev_open(sys, "/dev/vfio/devices/vfio2147483000", &o), -ENOENT);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_CDEV_OPEN);
	expect_all_closed(&o);

	/* cdev fails with ENOENT, so the group is tried, and fails the same way */
	cr_expect_eq(precopy_pci_vfio_open(sys, &d, &o), -ENOENT);
	cr_expect_eq(o.path, PRECOPY_VFIO_PATH_GROUP);
	cr_expect_eq(o.failed_step, PRECOPY_VFIO_STEP_GROUP_OPEN);
	expect_all_closed(&o);
}
