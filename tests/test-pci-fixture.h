/* SPDX-License-Identifier: MIT */
/* Shared by the PCI suites: a prepared sysfs tree in a temporary directory,
 * laid out as the kernel lays out /sys/bus/pci (devices/<addr>/ with
 * vendor, device, class, revision, config, and the driver, iommu_group and
 * vfio-dev entries), so precopy_pci_scan() and precopy-probe can be run on a
 * "VFIO host" that this machine is not. Also: the real sysfs read directly,
 * to cross-check what libpci reports. */
#ifndef TEST_PCI_FIXTURE_H
#define TEST_PCI_FIXTURE_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* snprintf that fails the test instead of truncating. */
#define FX_SNPRINTF(buf, len, ...)                                                        \
	do {                                                                               \
		int fx_n_ = snprintf(buf, len, __VA_ARGS__);                               \
		cr_assert(fx_n_ >= 0 && (size_t)fx_n_ < (size_t)(len), "path too long");   \
	} while (0)

/* Group numbers no real host has, so that a fake VFIO device never reaches a
 * real /dev/vfio node. */
#define FAKE_GROUP 2147483000
#define FAKE_CDEV "vfio2147483000"

struct fake_dev {
	const char *addr;
	uint16_t vendor, device;
	uint32_t class; /* base << 16 | sub << 8 | prog_if, as sysfs "class" */
	const char *driver; /* NULL: unbound */
	int group;          /* -1: no iommu_group link */
	const char *cdev;   /* NULL: no vfio-dev entry */
};

static void fx_write(const char *dir, const char *leaf, const void *data, size_t len)
{
	char p[PATH_MAX];
	FILE *f;

	FX_SNPRINTF(p, sizeof(p), "%s/%s", dir, leaf);
	f = fopen(p, "w");
	cr_assert(f, "create %s: %s", p, strerror(errno));
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static void fx_printf(const char *dir, const char *leaf, const char *fmt, unsigned v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), fmt, v);

	fx_write(dir, leaf, buf, (size_t)n);
}

static void fx_mkdir(const char *fmt, const char *a, const char *b)
{
	char p[PATH_MAX];

	FX_SNPRINTF(p, sizeof(p), fmt, a, b);
	cr_assert(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", p, strerror(errno));
}

/* Builds the tree; returns its root (malloc'ed; remove with fx_tree_rm). */
static char *fx_tree(const struct fake_dev *devs, size_t n)
{
	char *root = strdup("/tmp/precopy-pci-XXXXXX");
	char dir[PATH_MAX], p[PATH_MAX], t[PATH_MAX];
	size_t i;

	cr_assert(root && mkdtemp(root), "mkdtemp: %s", strerror(errno));
	fx_mkdir("%s/devices%s", root, "");
	fx_mkdir("%s/drivers%s", root, "");
	fx_mkdir("%s/groups%s", root, "");
	for (i = 0; i < n; i++) {
		const struct fake_dev *d = &devs[i];
		uint8_t cfg[64] = { 0 };

		FX_SNPRINTF(dir, sizeof(dir), "%s/devices/%s", root, d->addr);
		cr_assert_eq(mkdir(dir, 0755), 0, "mkdir %s: %s", dir, strerror(errno));
		fx_printf(dir, "vendor", "0x%04x\n", d->vendor);
		fx_printf(dir, "device", "0x%04x\n", d->device);
		fx_printf(dir, "class", "0x%06x\n", d->class);
		fx_printf(dir, "revision", "0x%02x\n", 0x01);
		cfg[0] = (uint8_t)d->vendor;
		cfg[1] = (uint8_t)(d->vendor >> 8);
		cfg[2] = (uint8_t)d->device;
		cfg[3] = (uint8_t)(d->device >> 8);
		cfg[8] = 0x01;
		cfg[9] = (uint8_t)d->class;
		cfg[10] = (uint8_t)(d->class >> 8);
		cfg[11] = (uint8_t)(d->class >> 16);
		fx_write(dir, "config", cfg, sizeof(cfg));
		if (d->driver) {
			fx_mkdir("%s/drivers/%s", root, d->driver);
			FX_SNPRINTF(t, sizeof(t), "../../drivers/%s", d->driver);
			FX_SNPRINTF(p, sizeof(p), "%s/driver", dir);
			cr_assert_eq(symlink(t, p), 0, "symlink %s: %s", p, strerror(errno));
		}
		if (d->group >= 0) {
			char g[16];

			FX_SNPRINTF(g, sizeof(g), "%d", d->group);
			fx_mkdir("%s/groups/%s", root, g);
			FX_SNPRINTF(t, sizeof(t), "../../groups/%d", d->group);
			FX_SNPRINTF(p, sizeof(p), "%s/iommu_group", dir);
			cr_assert_eq(symlink(t, p), 0, "symlink %s: %s", p, strerror(errno));
		}
		if (d->cdev) {
			fx_mkdir("%s/vfio-dev%s", dir, "");
			fx_mkdir("%s/vfio-dev/%s", dir, d->cdev);
		}
	}
	return root;
}

static int fx_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void fx_tree_rm(char *root)
{
	if (root)
		nftw(root, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(root);
}

/* ---- the real sysfs, read directly ------------------------------------------ */

#define SYSFS_PCI "/sys/bus/pci/devices"

/* Sorted list of the device names in /sys/bus/pci/devices; returns count. */
static int sysfs_addrs(char (**out)[32])
{
	DIR *d = opendir(SYSFS_PCI);
	struct dirent *e;
	char (*a)[32] = NULL;
	int n = 0;

	cr_assert(d, "opendir %s: %s", SYSFS_PCI, strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		a = realloc(a, sizeof(*a) * (size_t)(n + 1));
		cr_assert(a);
		FX_SNPRINTF(a[n++], sizeof(a[0]), "%s", e->d_name);
	}
	closedir(d);
	qsort(a, (size_t)n, sizeof(*a), (int (*)(const void *, const void *))strcmp);
	*out = a;
	return n;
}

/* Basename of the link <addr>/<leaf> in the real sysfs, "" when absent. */
static void sysfs_link(const char *addr, const char *leaf, char *buf, size_t len)
{
	char p[PATH_MAX], t[PATH_MAX];
	ssize_t n;
	const char *b;

	FX_SNPRINTF(p, sizeof(p), "%s/%s/%s", SYSFS_PCI, addr, leaf);
	n = readlink(p, t, sizeof(t) - 1);
	if (n < 0) {
		cr_assert_eq(errno, ENOENT, "readlink %s: %s", p, strerror(errno));
		buf[0] = '\0';
		return;
	}
	t[n] = '\0';
	b = strrchr(t, '/');
	FX_SNPRINTF(buf, len, "%s", b ? b + 1 : t);
}

/* Hex attribute file <addr>/<leaf> ("0x1af4\n"). */
static unsigned long sysfs_hex(const char *addr, const char *leaf)
{
	char p[PATH_MAX], buf[64] = { 0 };
	FILE *f;

	FX_SNPRINTF(p, sizeof(p), "%s/%s/%s", SYSFS_PCI, addr, leaf);
	f = fopen(p, "r");
	cr_assert(f, "open %s: %s", p, strerror(errno));
	cr_assert(fgets(buf, sizeof(buf), f));
	fclose(f);
	return strtoul(buf, NULL, 16);
}

#endif /* TEST_PCI_FIXTURE_H */
