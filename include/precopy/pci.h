/* SPDX-License-Identifier: MIT */
/* precopy/pci.h — PCI discovery (libpci) and opening VFIO devices.
 *
 * What a host offers: every PCI function with its IDs, class, bound driver,
 * IOMMU group and whether a VFIO driver (vfio-pci or a vfio-pci variant
 * such as mlx5_vfio_pci) owns it; and, for those, how to get a VFIO device
 * fd either through the legacy group/container interface or through the
 * VFIO device cdev bound to an iommufd.
 *
 * Device nodes (/dev/vfio/..., /dev/iommu) are opened and driven only
 * through the `sys` seam (precopy/sys.h). sysfs is read directly (it is
 * configuration, not a device): its root is a parameter so that tests can
 * point the scan at a prepared tree.
 *
 * Thread safety: every function here is reentrant. precopy_pci_scan() keeps
 * all libpci state local to the call (libpci's fatal-error hook is caught
 * per thread), so scans may run concurrently from several threads. A
 * struct precopy_vfio_fds belongs to one thread at a time.
 */
#ifndef PRECOPY_PCI_H
#define PRECOPY_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/export.h"
#include "precopy/sys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- addresses ------------------------------------------------------------ */

/* A PCI function address: domain:bus:device.function. */
struct precopy_pci_addr {
	uint32_t domain;
	uint8_t bus;
	uint8_t dev;  /* 0..31 */
	uint8_t func; /* 0..7 */
};

/* Room for the longest canonical address ("ffffffff:ff:1f.7") and its NUL. */
#define PRECOPY_PCI_ADDR_STRLEN 20

/* Parses "DDDD:BB:DD.F" (domain 1..8 hex digits) or the short "BB:DD.F"
 * (domain 0). Hex digits in either case; bus and device 1..2 digits,
 * device <= 0x1f, function one digit 0..7. Nothing else is accepted: no
 * whitespace, sign, "0x" prefix or trailing characters.
 *   s:   the text (NUL-terminated).
 *   out: receives the address; untouched on error.
 * Returns 0, or -EINVAL if s or out is NULL or s is not such an address. */
PRECOPY_API int precopy_pci_addr_parse(const char *s, struct precopy_pci_addr *out);

/* Formats the canonical sysfs form "%04x:%02x:%02x.%x" (lower-case hex; a
 * domain above 0xffff takes as many digits as it needs).
 *   buf, len: destination; NUL-terminated on success.
 * Returns the length written (without the NUL), -EINVAL if addr or buf is
 * NULL or dev > 31 or func > 7, -ENOSPC if len is too small (buf is then
 * left as an empty string when len > 0). */
PRECOPY_API int precopy_pci_addr_format(const struct precopy_pci_addr *addr, char *buf, size_t len);

/* ---- enumeration ---------------------------------------------------------- */

/* sysfs root of the PCI bus, as the kernel mounts it (libpci's default). */
#define PRECOPY_PCI_SYSFS_ROOT "/sys/bus/pci"

#define PRECOPY_PCI_NAME_LEN 128
#define PRECOPY_PCI_DRIVER_LEN 128
#define PRECOPY_PCI_CDEV_LEN 32

/* One PCI function. A plain struct: the caller owns the array it lives in. */
struct precopy_pci_device {
	struct precopy_pci_addr addr;
	char address[PRECOPY_PCI_ADDR_STRLEN]; /* canonical form of addr */
	uint16_t vendor_id;
	uint16_t device_id;
	uint16_t class_id; /* base class << 8 | subclass, as lspci shows it */
	uint8_t prog_if;
	uint8_t revision;
	/* Names from the PCI ID database (pci.ids; udev's hwdb is not asked);
	 * "" where the database has no entry or PRECOPY_PCI_SCAN_NUMERIC was
	 * given; cut to PRECOPY_PCI_NAME_LEN - 1 bytes. */
	char vendor_name[PRECOPY_PCI_NAME_LEN];
	char device_name[PRECOPY_PCI_NAME_LEN];
	char class_name[PRECOPY_PCI_NAME_LEN];
	char driver[PRECOPY_PCI_DRIVER_LEN]; /* bound driver, "" when unbound */
	int iommu_group;                     /* IOMMU group number, -1 when none */
	/* Name of the device's VFIO cdev ("vfio0" for /dev/vfio/devices/vfio0)
	 * from sysfs <root>/devices/<addr>/vfio-dev/, "" when it has none
	 * (not bound to VFIO, or a kernel without VFIO_DEVICE_CDEV). */
	char vfio_cdev[PRECOPY_PCI_CDEV_LEN];
	/* Bound to a VFIO driver: the driver name contains "vfio" (vfio-pci and
	 * its variant drivers) or the device has a VFIO cdev. */
	bool is_vfio;
};

/* Scan flags. */
#define PRECOPY_PCI_SCAN_NUMERIC     (1u << 0) /* skip ID-database name lookups */
#define PRECOPY_PCI_SCAN_SYSFS_LINKS (1u << 1) /* read driver and iommu_group from the
						  sysfs links rather than libpci's
						  fill flags (same result; used to
						  cross-check libpci) */
#define PRECOPY_PCI_SCAN_ALL_FLAGS   (PRECOPY_PCI_SCAN_NUMERIC | PRECOPY_PCI_SCAN_SYSFS_LINKS)

struct precopy_pci_scan_opts {
	const char *sysfs_root; /* NULL: PRECOPY_PCI_SYSFS_ROOT */
	unsigned int flags;     /* PRECOPY_PCI_SCAN_* */
};

/* Enumerates the PCI functions under <sysfs_root>/devices through libpci
 * (its sysfs access method), sorted by address.
 *   opts:   NULL for the defaults.
 *   out:    receives a malloc'ed array of the devices, or NULL when there
 *           are none; release it with precopy_pci_devices_free(). Set to
 *           NULL on error.
 *   err, errlen: optional (err may be NULL): on failure, a one-line reason
 *           (libpci's own message where libpci failed).
 * Returns the number of devices (>= 0), or
 *   -EINVAL       out is NULL, or unknown flag bits;
 *   -ENOENT, -EACCES, -ENOTDIR, ...  <sysfs_root>/devices cannot be opened
 *                 (the errno of that opendir);
 *   -EIO          an entry of <sysfs_root>/devices is not a PCI address, or
 *                 libpci reported a fatal error (message in err);
 *   -ENAMETOOLONG a path or a driver name does not fit its buffer;
 *   -ENOMEM.
 * A device whose driver or IOMMU group link cannot be read for a reason
 * other than its absence fails the scan with that -errno. */
PRECOPY_API int precopy_pci_scan(const struct precopy_pci_scan_opts *opts,
				 struct precopy_pci_device **out, char *err, size_t errlen);

/* Releases an array returned by precopy_pci_scan(). NULL is accepted. */
PRECOPY_API void precopy_pci_devices_free(struct precopy_pci_device *devs);

/* Finds the VFIO cdev of one device: the "vfioN" entry of
 * <sysfs_root>/devices/<addr>/vfio-dev/.
 *   sysfs_root: NULL for PRECOPY_PCI_SYSFS_ROOT.
 *   buf, len:   receives "vfioN".
 * Returns 0, -ENOENT if the device has no VFIO cdev (or does not exist),
 * -EINVAL for a NULL argument, -ENAMETOOLONG if buf is too small, or the
 * -errno of opendir/readdir. */
PRECOPY_API int precopy_pci_vfio_cdev(const char *sysfs_root, const struct precopy_pci_addr *addr,
				      char *buf, size_t len);

/* ---- opening a VFIO device ------------------------------------------------ */

enum precopy_vfio_path {
	PRECOPY_VFIO_PATH_NONE = 0,
	PRECOPY_VFIO_PATH_GROUP = 1, /* /dev/vfio/<group> + container /dev/vfio/vfio */
	PRECOPY_VFIO_PATH_CDEV = 2,  /* /dev/vfio/devices/vfioN bound to /dev/iommu */
};

/* Steps of opening a device; on failure `failed_step` names the one that
 * failed, so a tool can say what went wrong. */
enum precopy_vfio_step {
	PRECOPY_VFIO_STEP_NONE = 0,
	PRECOPY_VFIO_STEP_ARGS,          /* invalid arguments */
	PRECOPY_VFIO_STEP_GROUP_OPEN,    /* open /dev/vfio/<group> */
	PRECOPY_VFIO_STEP_GROUP_STATUS,  /* VFIO_GROUP_GET_STATUS */
	PRECOPY_VFIO_STEP_GROUP_VIABLE,  /* the group is not viable */
	PRECOPY_VFIO_STEP_CONTAINER_OPEN,/* open /dev/vfio/vfio */
	PRECOPY_VFIO_STEP_API_VERSION,   /* VFIO_GET_API_VERSION */
	PRECOPY_VFIO_STEP_IOMMU_TYPE,    /* VFIO_CHECK_EXTENSION type1 / type1v2 */
	PRECOPY_VFIO_STEP_SET_CONTAINER, /* VFIO_GROUP_SET_CONTAINER */
	PRECOPY_VFIO_STEP_SET_IOMMU,     /* VFIO_SET_IOMMU */
	PRECOPY_VFIO_STEP_GET_DEVICE_FD, /* VFIO_GROUP_GET_DEVICE_FD */
	PRECOPY_VFIO_STEP_CDEV_LOOKUP,   /* find vfio-dev/vfioN in sysfs */
	PRECOPY_VFIO_STEP_CDEV_OPEN,     /* open /dev/vfio/devices/vfioN */
	PRECOPY_VFIO_STEP_IOMMUFD_OPEN,  /* open /dev/iommu */
	PRECOPY_VFIO_STEP_BIND_IOMMUFD,  /* VFIO_DEVICE_BIND_IOMMUFD */
};

/* The fds behind one open VFIO device. Every fd is -1 when not held. */
struct precopy_vfio_fds {
	int device_fd;    /* the VFIO device: what the precopy_vfio_* calls take */
	int group_fd;     /* group path only */
	int container_fd; /* group path only */
	int iommufd;      /* cdev path only */
	uint32_t devid;   /* cdev path: the iommufd device id BIND returned */
	enum precopy_vfio_path path;
	enum precopy_vfio_step failed_step; /* set on failure, NONE on success */
	char node[64];    /* the node the device came through ("/dev/vfio/7") */
};

/* Short English name of a step ("VFIO_GROUP_SET_CONTAINER", "open the
 * group node"), never NULL; "unknown step" for values outside the enum. */
PRECOPY_API const char *precopy_vfio_step_name(enum precopy_vfio_step step);

/* Opens a device through the legacy group interface: opens
 * /dev/vfio/<group>, checks VFIO_GROUP_GET_STATUS for viability, opens a
 * container /dev/vfio/vfio (API version VFIO_API_VERSION), attaches the
 * group, selects the type1v2 IOMMU (type1 where v2 is absent) and gets the
 * device fd by its address.
 *   sys:   the syscall seam.
 *   group: IOMMU group number (>= 0).
 *   addr:  the device's canonical address ("0000:05:00.0").
 *   out:   filled on success; on failure every fd is -1 (whatever was
 *          opened is closed) and failed_step names the failing step.
 * Returns 0, or
 *   -EINVAL  invalid sys, group < 0, NULL addr/out, or a malformed address;
 *   -ENOENT  no /dev/vfio/<group> (no VFIO driver bound in that group, or
 *            vfio not loaded) or no /dev/vfio/vfio;
 *   -EACCES, -EPERM  no permission on a node;
 *   -EBUSY   the group is not viable (another device in it is bound to a
 *            host driver) or is already open elsewhere (e.g. by a VMM);
 *   -EPROTO  the container speaks another VFIO API version;
 *   -EOPNOTSUPP  the container offers neither type1 IOMMU;
 *   -ENODEV  (from the kernel) the group holds no device with that address;
 *   any other -errno an ioctl returned. */
PRECOPY_API int precopy_vfio_group_open(const struct precopy_sys *sys, int group, const char *addr,
					struct precopy_vfio_fds *out);

/* Opens a device through its VFIO cdev: opens cdev_path
 * ("/dev/vfio/devices/vfioN"), opens /dev/iommu and binds the device to it
 * with VFIO_DEVICE_BIND_IOMMUFD (no IOAS is attached: enough to query
 * device features, not to run DMA).
 *   out: as for precopy_vfio_group_open().
 * Returns 0, or -EINVAL (invalid sys, NULL or empty path, NULL out),
 * -ENOENT (no such node, or no /dev/iommu: iommufd not built or loaded),
 * -EACCES/-EPERM, -EBUSY (the group is not viable, or the device is
 * already open), or the -errno of the bind ioctl. */
PRECOPY_API int precopy_vfio_cdev_open(const struct precopy_sys *sys, const char *cdev_path,
				       struct precopy_vfio_fds *out);

/* Opens a scanned device the best available way: through its cdev when it
 * has one, falling back to the group interface when the cdev path fails
 * with -ENOENT (no /dev/iommu) and the device has an IOMMU group.
 *   dev: an entry from precopy_pci_scan(); dev->is_vfio need not be set
 *        (the kernel decides).
 * Returns as the open that ran last; -ENOENT with failed_step
 * PRECOPY_VFIO_STEP_CDEV_LOOKUP when the device has neither a cdev nor an
 * IOMMU group. */
PRECOPY_API int precopy_pci_vfio_open(const struct precopy_sys *sys,
				      const struct precopy_pci_device *dev,
				      struct precopy_vfio_fds *out);

/* Closes every fd held by fds (device first, then group, container,
 * iommufd) and resets them to -1. Safe on a struct whose open failed or
 * that was already closed.
 * Returns 0, -EINVAL for an invalid sys or NULL fds, or the first close
 * error (the other fds are still closed). */
PRECOPY_API int precopy_vfio_fds_close(const struct precopy_sys *sys, struct precopy_vfio_fds *fds);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_PCI_H */
