/* SPDX-License-Identifier: MIT */
/* PCI discovery through libpci: addresses, enumeration, driver and IOMMU
 * group of each function, and where a VFIO cdev exists. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pci/pci.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "precopy/pci.h"

/* ---- addresses ------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads 1..maxdigits hex digits at *p, advancing *p. -1 if there are none
 * or more than maxdigits. */
static int64_t hexfield(const char **p, int maxdigits)
{
	int64_t v = 0;
	int n = 0, d;

	while ((d = hexval(**p)) >= 0) {
		if (++n > maxdigits)
			return -1;
		v = v * 16 + d;
		(*p)++;
	}
	return n ? v : -1;
}

/* Reads a field and the separator that must follow it. */
static int64_t field_then(const char **p, int maxdigits, char sep)
{
	int64_t v = hexfield(p, maxdigits);

	if (v < 0 || **p != sep)
		return -1;
	(*p)++;
	return v;
}

PRECOPY_API int precopy_pci_addr_parse(const char *s, struct precopy_pci_addr *out)
{
	int64_t domain = 0, bus, dev, func;
	const char *p = s;

	if (!s || !out)
		return -EINVAL;
	/* Two colons: the domain is present; one: the short form. */
	const char *c1 = strchr(s, ':');
	if (c1 && strchr(c1 + 1, ':')) {
		domain = field_then(&p, 8, ':');
		if (domain < 0)
			return -EINVAL;
	}
	bus = field_then(&p, 2, ':');
	dev = field_then(&p, 2, '.');
	func = field_then(&p, 1, '\0');
	if (bus < 0 || dev < 0 || dev > 0x1f || func < 0 || func > 7)
		return -EINVAL;
	out->domain = (uint32_t)domain;
	out->bus = (uint8_t)bus;
	out->dev = (uint8_t)dev;
	out->func = (uint8_t)func;
	return 0;
}

PRECOPY_API int precopy_pci_addr_format(const struct precopy_pci_addr *a, char *buf, size_t len)
{
	int n;

	if (!a || !buf || a->dev > 0x1f || a->func > 7)
		return -EINVAL;
	n = snprintf(buf, len, "%04x:%02x:%02x.%x", (unsigned)a->domain, a->bus, a->dev, a->func);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

/* ---- sysfs ---------------------------------------------------------------- */

/* "<root>/devices/<address>/<leaf>" into path. */
static int dev_path(char *path, size_t len, const char *root, const char *address, const char *leaf)
{
	int n = snprintf(path, len, "%s/devices/%s%s%s", root, address, leaf ? "/" : "", leaf ? leaf : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Basename of the target of symlink <dev>/<leaf> into buf. 0, -ENOENT when
 * the link is absent, or another -errno. */
static int link_basename(const char *root, const char *address, const char *leaf, char *buf, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;
	int r;
	const char *base;

	r = dev_path(path, sizeof(path), root, address, leaf);
	if (r)
		return r;
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, base);
	return 0;
}

/* Decimal group number, or -1 for anything that is not one. */
static int parse_group(const char *s)
{
	char *end;
	long v;

	if (!s || !*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v > INT_MAX)
		return -1;
	return (int)v;
}

PRECOPY_API int precopy_pci_vfio_cdev(const char *root, const struct precopy_pci_addr *addr,
				      char *buf, size_t len)
{
	char address[PRECOPY_PCI_ADDR_STRLEN], path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int r = -ENOENT;

	if (!addr || !buf)
		return -EINVAL;
	if (!root)
		root = PRECOPY_PCI_SYSFS_ROOT;
	r = precopy_pci_addr_format(addr, address, sizeof(address));
	if (r < 0)
		return r;
	r = dev_path(path, sizeof(path), root, address, "vfio-dev");
	if (r)
		return r;
	d = opendir(path);
	if (!d)
		return -errno;
	r = -ENOENT;
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (!e) {
			if (errno)
				r = -errno;
			break;
		}
		if (strncmp(e->d_name, "vfio", 4) || parse_group(e->d_name + 4) < 0)
			continue;
		if (strlen(e->d_name) >= len) {
			r = -ENAMETOOLONG;
			break;
		}
		strcpy(buf, e->d_name);
		r = 0;
		break;
	}
	closedir(d);
	return r;
}

/* ---- libpci --------------------------------------------------------------- */

/* libpci reports fatal errors through a callback that must not return and
 * carries no context: catch it with a per-thread jump buffer. */
static __thread sigjmp_buf *pci_jmp;
static __thread char pci_msg[256];

__attribute__((noreturn, format(printf, 1, 2))) static void pci_fatal(char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pci_msg, sizeof(pci_msg), fmt, ap);
	va_end(ap);
	/* Only installed on a pci_access used inside run_libpci(); anything
	 * else is a bug here, and the hook may not return. */
	if (!pci_jmp)
		abort();
	siglongjmp(*pci_jmp, 1);
}

/* Warnings (e.g. a config space this user may not read) are not errors for a
 * listing: the IDs, class, driver and group come from sysfs attributes; only
 * prog_if and revision may then stay 0. */
__attribute__((format(printf, 1, 2))) static void pci_quiet(char *fmt, ...)
{
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#ifdef PCI_LOOKUP_NO_HWDB
#define LOOKUP_NO_HWDB PCI_LOOKUP_NO_HWDB
#else
#define LOOKUP_NO_HWDB 0
#endif

/* A name from the ID database into dst, "" where it has none. */
static void copy_name(char *dst, size_t len, const char *name)
{
	snprintf(dst, len, "%s", name ? name : "");
}

static void lookup_names(struct pci_access *a, struct precopy_pci_device *d)
{
	char buf[PRECOPY_PCI_NAME_LEN * 2];
	/* pci.ids only: libpci's udev-hwdb lookups leave libudev allocations
	 * behind on every scan (seen under LeakSanitizer), and the hwdb's PCI
	 * names are generated from the same pci.ids. */
	const int f = PCI_LOOKUP_NO_NUMBERS | LOOKUP_NO_HWDB;

	copy_name(d->vendor_name, sizeof(d->vendor_name),
		  pci_lookup_name(a, buf, sizeof(buf), PCI_LOOKUP_VENDOR | f, d->vendor_id));
	copy_name(d->device_name, sizeof(d->device_name),
		  pci_lookup_name(a, buf, sizeof(buf), PCI_LOOKUP_DEVICE | f, d->vendor_id,
				  d->device_id));
	copy_name(d->class_name, sizeof(d->class_name),
		  pci_lookup_name(a, buf, sizeof(buf), PCI_LOOKUP_CLASS | f, d->class_id));
}

#ifdef PCI_FILL_DRIVER
#define FILL_DRIVER PCI_FILL_DRIVER
#else
#define FILL_DRIVER 0
#endif
#ifdef PCI_FILL_IOMMU_GROUP
#define FILL_IOMMU PCI_FILL_IOMMU_GROUP
#else
#define FILL_IOMMU 0
#endif
#ifdef PCI_FILL_CLASS_EXT
#define FILL_CLASS_EXT PCI_FILL_CLASS_EXT
#else
#define FILL_CLASS_EXT 0
#endif

/* libpci's string property for fill flag `flag`, or NULL where this libpci
 * lacks the flag or did not fill it. */
static const char *pci_string(struct pci_dev *d, unsigned known, unsigned flag)
{
#if FILL_DRIVER || FILL_IOMMU
	if (flag && (known & flag))
		return pci_get_string_property(d, flag);
#endif
	return NULL;
}

static bool driver_is_vfio(const char *driver)
{
	return strstr(driver, "vfio") != NULL;
}

/* Fills one entry; 0 or -errno. */
static int fill_one(struct pci_access *a, struct pci_dev *pd, const char *root, unsigned flags,
		    struct precopy_pci_device *out)
{
	unsigned want = PCI_FILL_IDENT | PCI_FILL_CLASS | FILL_CLASS_EXT;
	unsigned known;
	const char *s;
	int r;

	memset(out, 0, sizeof(*out));
	if (!(flags & PRECOPY_PCI_SCAN_SYSFS_LINKS))
		want |= FILL_DRIVER | FILL_IOMMU;
	known = (unsigned)pci_fill_info(pd, (int)want);

	out->addr.domain = (uint32_t)pd->domain;
	out->addr.bus = pd->bus;
	out->addr.dev = pd->dev;
	out->addr.func = pd->func;
	r = precopy_pci_addr_format(&out->addr, out->address, sizeof(out->address));
	if (r < 0)
		return r;
	out->vendor_id = pd->vendor_id;
	out->device_id = pd->device_id;
	out->class_id = pd->device_class;
	if (FILL_CLASS_EXT && (known & FILL_CLASS_EXT)) {
		out->prog_if = pd->prog_if;
		out->revision = pd->rev_id;
	}

	/* Driver: libpci's property where it filled one; otherwise (older
	 * libpci, no driver, or SYSFS_LINKS) the link itself decides. */
	s = (flags & PRECOPY_PCI_SCAN_SYSFS_LINKS) ? NULL : pci_string(pd, known, FILL_DRIVER);
	if (s) {
		if (strlen(s) >= sizeof(out->driver))
			return -ENAMETOOLONG;
		strcpy(out->driver, s);
	} else {
		r = link_basename(root, out->address, "driver", out->driver, sizeof(out->driver));
		if (r == -ENOENT)
			out->driver[0] = '\0';
		else if (r)
			return r;
	}

	s = (flags & PRECOPY_PCI_SCAN_SYSFS_LINKS) ? NULL : pci_string(pd, known, FILL_IOMMU);
	if (s) {
		out->iommu_group = parse_group(s);
	} else {
		char grp[32];

		r = link_basename(root, out->address, "iommu_group", grp, sizeof(grp));
		if (r == -ENOENT)
			out->iommu_group = -1;
		else if (r)
			return r;
		else
			out->iommu_group = parse_group(grp);
	}

	r = precopy_pci_vfio_cdev(root, &out->addr, out->vfio_cdev, sizeof(out->vfio_cdev));
	if (r == -ENOENT || r == -ENOTDIR)
		out->vfio_cdev[0] = '\0';
	else if (r)
		return r;
	out->is_vfio = driver_is_vfio(out->driver) || out->vfio_cdev[0];

	if (!(flags & PRECOPY_PCI_SCAN_NUMERIC))
		lookup_names(a, out);
	return 0;
}

static int addr_cmp(const void *x, const void *y)
{
	const struct precopy_pci_addr *a = &((const struct precopy_pci_device *)x)->addr;
	const struct precopy_pci_addr *b = &((const struct precopy_pci_device *)y)->addr;

	if (a->domain != b->domain)
		return a->domain < b->domain ? -1 : 1;
	if (a->bus != b->bus)
		return a->bus < b->bus ? -1 : 1;
	if (a->dev != b->dev)
		return a->dev < b->dev ? -1 : 1;
	return (a->func > b->func) - (a->func < b->func);
}

/* The libpci part of a scan. Kept apart so that nothing the longjmp could
 * clobber lives in precopy_pci_scan()'s frame across sigsetjmp. */
static int scan_libpci(struct pci_access *a, const char *root, unsigned flags,
		       struct precopy_pci_device **out, char *err, size_t errlen)
{
	struct precopy_pci_device *devs = NULL;
	struct pci_dev *pd;
	size_t n = 0, i = 0;
	int r;

	pci_scan_bus(a);
	for (pd = a->devices; pd; pd = pd->next)
		n++;
	if (n > INT_MAX)
		return -EOVERFLOW;
	if (!n)
		return 0;
	/* Published at once so that a libpci fatal error (longjmp) during the
	 * fills below still lets the caller free it. */
	devs = calloc(n, sizeof(*devs));
	if (!devs)
		return -ENOMEM;
	*out = devs;
	for (pd = a->devices; pd; pd = pd->next, i++) {
		r = fill_one(a, pd, root, flags, &devs[i]);
		if (r) {
			set_err(err, errlen, "%04x:%02x:%02x.%x: %s", (unsigned)pd->domain, pd->bus,
				pd->dev, pd->func, strerror(-r));
			*out = NULL;
			free(devs);
			return r;
		}
	}
	qsort(devs, n, sizeof(*devs), addr_cmp);
	return (int)n;
}

/* Opens <root>/devices and checks every entry is a PCI address: the real
 * errno where it cannot be read, and -EIO for an entry libpci would die on
 * (libpci gives up on such an entry from inside its directory walk, which
 * leaks the walk's memory). */
static int check_entries(const char *path, char *err, size_t errlen)
{
	struct precopy_pci_addr a;
	struct dirent *e;
	DIR *d = opendir(path);
	int r = 0;

	if (!d) {
		r = -errno;
		set_err(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (!e) {
			if (errno) {
				r = -errno;
				set_err(err, errlen, "cannot read %s: %s", path, strerror(-r));
			}
			break;
		}
		if (e->d_name[0] == '.')
			continue;
		if (precopy_pci_addr_parse(e->d_name, &a)) {
			r = -EIO;
			set_err(err, errlen, "%s: entry '%s' is not a PCI address", path, e->d_name);
			break;
		}
	}
	closedir(d);
	return r;
}

/* pci_init + scan under the fatal-error catcher. Only its unmodified
 * parameters and a volatile are live across sigsetjmp. */
static int run_libpci(struct pci_access *a, const char *root, unsigned flags,
		      struct precopy_pci_device **out, char *err, size_t errlen)
{
	sigjmp_buf jb;
	sigjmp_buf *saved = pci_jmp;
	volatile int r;

	pci_jmp = &jb;
	if (sigsetjmp(jb, 0) == 0) {
		pci_init(a);
		r = scan_libpci(a, root, flags, out, err, errlen);
	} else {
		set_err(err, errlen, "libpci: %s", pci_msg);
		precopy_pci_devices_free(*out);
		*out = NULL;
		r = -EIO;
	}
	pci_jmp = saved;
	return r;
}

PRECOPY_API int precopy_pci_scan(const struct precopy_pci_scan_opts *opts,
				 struct precopy_pci_device **out, char *err, size_t errlen)
{
	const char *root = PRECOPY_PCI_SYSFS_ROOT;
	unsigned flags = 0;
	char path[PATH_MAX];
	struct pci_access *a;
	int r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (opts) {
		if (opts->sysfs_root)
			root = opts->sysfs_root;
		flags = opts->flags;
	}
	if (flags & ~PRECOPY_PCI_SCAN_ALL_FLAGS) {
		set_err(err, errlen, "unknown scan flags 0x%x", flags & ~PRECOPY_PCI_SCAN_ALL_FLAGS);
		return -EINVAL;
	}

	/* Check the bus is readable first, to report the real errno rather
	 * than libpci's message alone. */
	if (snprintf(path, sizeof(path), "%s/devices", root) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	r = check_entries(path, err, errlen);
	if (r)
		return r;

	a = pci_alloc();
	if (!a)
		return -ENOMEM;
	/* sysfs only: it is where drivers and IOMMU groups are, and it keeps
	 * libpci from probing I/O ports when running as root. */
	a->method = PCI_ACCESS_SYS_BUS_PCI;
	a->error = pci_fatal;
	a->warning = pci_quiet;
	a->debug = pci_quiet;
	/* See lookup_names(). Absent (-1) where libpci was built without hwdb. */
	a->id_lookup_mode |= LOOKUP_NO_HWDB;
	(void)pci_set_param(a, "hwdb.disable", "1");
	if (pci_set_param(a, "sysfs.path", (char *)root)) {
		pci_cleanup(a);
		return -EINVAL;
	}

	r = run_libpci(a, root, flags, out, err, errlen);
	pci_cleanup(a);
	return r;
}

PRECOPY_API void precopy_pci_devices_free(struct precopy_pci_device *devs)
{
	free(devs);
}
