/* SPDX-License-Identifier: MIT */
/* PCI discovery: address parsing/formatting (table-driven, round trips),
 * enumeration of this machine cross-checked against /sys/bus/pci read
 * directly, libpci's fill flags against the sysfs links (differential), a
 * prepared sysfs tree standing in for a VFIO host, and the scan's errors. */
#include "test-pci-fixture.h"

#include "precopy/pci.h"

/* ---- addresses ------------------------------------------------------------ */

static const struct {
	const char *in;
	uint32_t domain;
	uint8_t bus, dev, func;
	const char *canonical;
} good_addrs[] = {
	{ "0000:00:00.0", 0, 0, 0, 0, "0000:00:00.0" },
	{ "0000:00:1f.7", 0, 0, 0x1f, 7, "0000:00:1f.7" },
	{ "0000:ff:1f.7", 0, 0xff, 0x1f, 7, "0000:ff:1f.7" },
	{ "abcd:12:03.4", 0xabcd, 0x12, 3, 4, "abcd:12:03.4" },
	{ "ABCD:1A:0B.1", 0xabcd, 0x1a, 0xb, 1, "abcd:1a:0b.1" },
	{ "00:02.0", 0, 0, 2, 0, "0000:00:02.0" },
	{ "3:4.5", 0, 3, 4, 5, "0000:03:04.5" },
	{ "1:2:3.4", 1, 2, 3, 4, "0001:02:03.4" },
	{ "10000:00:00.0", 0x10000, 0, 0, 0, "10000:00:00.0" },
	{ "ffffffff:ff:1f.7", 0xffffffffu, 0xff, 0x1f, 7, "ffffffff:ff:1f.7" },
};

static const char *const bad_addrs[] = {
	"",		  "0",		    "0000",	       "0000:00",	  "0000:00:00",
	"0000:00:00.",	  "0000:00:00.8",   "0000:00:20.0",    "0000:00:00.0 ",	  " 0000:00:00.0",
	"0000:00:00.0\n", "0000:000:00.0",  "0000:00:000.0",   "0000:00:00.00",	  "100000000:00:00.0",
	"0x00:00:00.0",	  "0000:0x:00.0",   "0000:-1:00.0",    "0000:00:00:00.0", "0000.00:00.0",
	"0000:00.00.0",	  "g000:00:00.0",   "0000::00.0",      ":00:00.0",	  "0000:00:00.f",
	"+0000:00:00.0",  "0000:00:00.0.0", "0000:00:00.-1",
};

Test(pci_addr, parses_and_formats_canonically)
{
	for (size_t i = 0; i < sizeof(good_addrs) / sizeof(good_addrs[0]); i++) {
		struct precopy_pci_addr a;
		char buf[PRECOPY_PCI_ADDR_STRLEN];

		cr_assert_eq(precopy_pci_addr_parse(good_addrs[i].in, &a), 0, "%s", good_addrs[i].in);
		cr_expect_eq(a.domain, good_addrs[i].domain, "%s", good_addrs[i].in);
		cr_expect_eq(a.bus, good_addrs[i].bus, "%s", good_addrs[i].in);
		cr_expect_eq(a.dev, good_addrs[i].dev, "%s", good_addrs[i].in);
		cr_expect_eq(a.func, good_addrs[i].func, "%s", good_addrs[i].in);
		cr_assert_eq(precopy_pci_addr_format(&a, buf, sizeof(buf)),
			     (int)strlen(good_addrs[i].canonical));
		cr_expect_str_eq(buf, good_addrs[i].canonical);
	}
}

Test(pci_addr, rejects_malformed_with_einval_and_leaves_output)
{
	for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
		struct precopy_pci_addr a = { 0x5a5a, 1, 2, 3 };

		cr_expect_eq(precopy_pci_addr_parse(bad_addrs[i], &a), -EINVAL, "'%s' accepted",
			     bad_addrs[i]);
		cr_expect(a.domain == 0x5a5a && a.bus == 1 && a.dev == 2 && a.func == 3,
			  "'%s' changed the output", bad_addrs[i]);
	}
	struct precopy_pci_addr a;
	cr_expect_eq(precopy_pci_addr_parse(NULL, &a), -EINVAL);
	cr_expect_eq(precopy_pci_addr_parse("0000:00:00.0", NULL), -EINVAL);
}

/* Every bus/dev/func of two domains: format then parse gives the same
 * address back. */
Test(pci_addr, round_trips_every_bdf)
{
	static const uint32_t domains[] = { 0, 0xffff, 0x10000, 0xffffffffu };

	for (size_t d = 0; d < 4; d++)
		for (unsigned bus = 0; bus < 256; bus++)
			for (unsigned dev = 0; dev < 32; dev++)
				for (unsigned fn = 0; fn < 8; fn++) {
					struct precopy_pci_addr a = { domains[d], (uint8_t)bus, (uint8_t)dev,
								      (uint8_t)fn },
								b;
					char buf[PRECOPY_PCI_ADDR_STRLEN];

					cr_assert_gt(precopy_pci_addr_format(&a, buf, sizeof(buf)), 0);
					cr_assert_eq(precopy_pci_addr_parse(buf, &b), 0, "%s", buf);
					cr_assert(a.domain == b.domain && a.bus == b.bus && a.dev == b.dev &&
							  a.func == b.func, "%s", buf);
				}
}

Test(pci_addr, format_errors)
{
	struct precopy_pci_addr a = { 0, 0, 2, 0 };
	char buf[PRECOPY_PCI_ADDR_STRLEN] = "x";

	cr_expect_eq(precopy_pci_addr_format(&a, buf, 12), -ENOSPC); /* needs 13 */
	cr_expect_str_eq(buf, "");
	cr_expect_eq(precopy_pci_addr_format(&a, buf, 13), 12);
	cr_expect_eq(precopy_pci_addr_format(&a, buf, 0), -ENOSPC);
	a.dev = 32;
	cr_expect_eq(precopy_pci_addr_format(&a, buf, sizeof(buf)), -EINVAL);
	a.dev = 0;
	a.func = 8;
	cr_expect_eq(precopy_pci_addr_format(&a, buf, sizeof(buf)), -EINVAL);
	cr_expect_eq(precopy_pci_addr_format(NULL, buf, sizeof(buf)), -EINVAL);
	a.func = 0;
	cr_expect_eq(precopy_pci_addr_format(&a, NULL, 16), -EINVAL);
}

/* ---- this machine ------------------------------------------------------- */

Test(pci_scan, this_machine_matches_sysfs)
{
	struct precopy_pci_device *devs;
	char (*addrs)[32];
	char err[256];
	int n, ns;

	n = precopy_pci_scan(NULL, &devs, err, sizeof(err));
	cr_assert_geq(n, 1, "scan: %d (%s)", n, err);
	ns = sysfs_addrs(&addrs);
	cr_assert_eq(n, ns, "libpci lists %d devices, sysfs %d", n, ns);

	for (int i = 0; i < n; i++) {
		const struct precopy_pci_device *d = &devs[i];
		char drv[256], grp[64], cdev[64] = "";
		struct precopy_pci_addr a;
		unsigned long cls;

		/* same set, and sorted (addrs is sorted by name = by address) */
		cr_expect_str_eq(d->address, addrs[i]);
		cr_assert_eq(precopy_pci_addr_parse(d->address, &a), 0);
		cr_expect(memcmp(&a, &d->addr, sizeof(a)) == 0, "%s: addr fields", d->address);

		cr_expect_eq(d->vendor_id, sysfs_hex(addrs[i], "vendor"), "%s vendor", d->address);
		cr_expect_eq(d->device_id, sysfs_hex(addrs[i], "device"), "%s device", d->address);
		cls = sysfs_hex(addrs[i], "class");
		cr_expect_eq(d->class_id, cls >> 8, "%s class", d->address);
		cr_expect_eq(d->prog_if, cls & 0xff, "%s prog_if", d->address);

		sysfs_link(addrs[i], "driver", drv, sizeof(drv));
		cr_expect_str_eq(d->driver, drv, "%s driver", d->address);
		sysfs_link(addrs[i], "iommu_group", grp, sizeof(grp));
		cr_expect_eq(d->iommu_group, grp[0] ? atoi(grp) : -1, "%s iommu group", d->address);

		/* vfio-dev/vfioN, read directly */
		char p[PATH_MAX];
		FX_SNPRINTF(p, sizeof(p), "%s/%s/vfio-dev", SYSFS_PCI, addrs[i]);
		DIR *vd = opendir(p);
		if (vd) {
			struct dirent *e;
			while ((e = readdir(vd)))
				if (!strncmp(e->d_name, "vfio", 4))
					FX_SNPRINTF(cdev, sizeof(cdev), "%s", e->d_name);
			closedir(vd);
		}
		cr_expect_str_eq(d->vfio_cdev, cdev, "%s cdev", d->address);
		cr_expect_eq(d->is_vfio, strstr(drv, "vfio") != NULL || cdev[0], "%s is_vfio",
			     d->address);
	}
	free(addrs);
	precopy_pci_devices_free(devs);
}

/* libpci's DRIVER/IOMMU_GROUP fill flags and the sysfs links must agree. */
Test(pci_scan, libpci_fill_flags_agree_with_sysfs_links)
{
	struct precopy_pci_device *a, *b;
	struct precopy_pci_scan_opts links = { .flags = PRECOPY_PCI_SCAN_SYSFS_LINKS };
	int na = precopy_pci_scan(NULL, &a, NULL, 0);
	int nb = precopy_pci_scan(&links, &b, NULL, 0);

	cr_assert_geq(na, 1);
	cr_assert_eq(na, nb);
	for (int i = 0; i < na; i++) {
		cr_expect_str_eq(a[i].address, b[i].address);
		cr_expect_str_eq(a[i].driver, b[i].driver, "%s", a[i].address);
		cr_expect_eq(a[i].iommu_group, b[i].iommu_group, "%s", a[i].address);
		cr_expect_eq(a[i].is_vfio, b[i].is_vfio, "%s", a[i].address);
		cr_expect(memcmp(&a[i], &b[i], sizeof(a[i])) == 0, "%s differs", a[i].address);
	}
	precopy_pci_devices_free(a);
	precopy_pci_devices_free(b);
}

Test(pci_scan, numeric_leaves_names_empty_and_lookup_fills_them)
{
	struct precopy_pci_scan_opts num = { .flags = PRECOPY_PCI_SCAN_NUMERIC };
	struct precopy_pci_device *a, *b;
	int na = precopy_pci_scan(&num, &a, NULL, 0);
	int nb = precopy_pci_scan(NULL, &b, NULL, 0), named = 0;

	cr_assert_geq(na, 1);
	cr_assert_eq(na, nb);
	for (int i = 0; i < na; i++) {
		cr_expect_str_empty(a[i].vendor_name);
		cr_expect_str_empty(a[i].device_name);
		cr_expect_str_empty(a[i].class_name);
		named += b[i].vendor_name[0] != 0;
	}
	/* pci.ids (or hwdb) knows at least one vendor on any real machine */
	cr_expect_gt(named, 0, "no vendor name resolved at all");
	precopy_pci_devices_free(a);
	precopy_pci_devices_free(b);
}

/* ---- a prepared VFIO host ------------------------------------------------- */

static const struct fake_dev vfio_host[] = {
	/* deliberately out of order: the scan sorts */
	{ "0000:81:00.1", 0x15b3, 0x101e, 0x020000, "mlx5_core", 12, NULL },
	{ "0000:81:00.0", 0x15b3, 0x101e, 0x020000, "vfio-pci", 12, "vfio0" },
	{ "0000:03:00.0", 0x15b3, 0x101e, 0x020000, "mlx5_vfio_pci", FAKE_GROUP, NULL },
	{ "0000:00:1f.0", 0x8086, 0x1234, 0x060100, NULL, 3, NULL },
	{ "0001:00:02.0", 0x1af4, 0x1041, 0x020000, "virtio-pci", -1, NULL },
};

Test(pci_scan, prepared_vfio_host)
{
	char *root = fx_tree(vfio_host, 5);
	struct precopy_pci_scan_opts o = { .sysfs_root = root };
	struct precopy_pci_device *d;
	char err[256];
	int n = precopy_pci_scan(&o, &d, err, sizeof(err));

	cr_assert_eq(n, 5, "%d: %s", n, err);
	cr_expect_str_eq(d[0].address, "0000:00:1f.0");
	cr_expect_str_eq(d[1].address, "0000:03:00.0");
	cr_expect_str_eq(d[2].address, "0000:81:00.0");
	cr_expect_str_eq(d[3].address, "0000:81:00.1");
	cr_expect_str_eq(d[4].address, "0001:00:02.0");

	cr_expect_str_empty(d[0].driver);
	cr_expect_eq(d[0].iommu_group, 3);
	cr_expect_eq(d[0].class_id, 0x0601);
	cr_expect_not(d[0].is_vfio);

	cr_expect_str_eq(d[1].driver, "mlx5_vfio_pci"); /* a variant driver */
	cr_expect_eq(d[1].iommu_group, FAKE_GROUP);
	cr_expect_str_empty(d[1].vfio_cdev);
	cr_expect(d[1].is_vfio);

	cr_expect_str_eq(d[2].driver, "vfio-pci");
	cr_expect_eq(d[2].iommu_group, 12);
	cr_expect_str_eq(d[2].vfio_cdev, "vfio0");
	cr_expect(d[2].is_vfio);
	cr_expect_eq(d[2].vendor_id, 0x15b3);
	cr_expect_eq(d[2].device_id, 0x101e);

	cr_expect_str_eq(d[3].driver, "mlx5_core");
	cr_expect_not(d[3].is_vfio);

	cr_expect_eq(d[4].iommu_group, -1);
	cr_expect_eq(d[4].addr.domain, 1);
	precopy_pci_devices_free(d);

	/* the sysfs-link path gives the same answers */
	struct precopy_pci_device *e;
	o.flags = PRECOPY_PCI_SCAN_SYSFS_LINKS | PRECOPY_PCI_SCAN_NUMERIC;
	cr_assert_eq(precopy_pci_scan(&o, &e, NULL, 0), 5);
	cr_expect_str_eq(e[1].driver, "mlx5_vfio_pci");
	cr_expect_eq(e[2].iommu_group, 12);
	cr_expect_eq(e[4].iommu_group, -1);
	precopy_pci_devices_free(e);
	fx_tree_rm(root);
}

Test(pci_scan, empty_bus_is_zero_devices)
{
	char *root = fx_tree(NULL, 0);
	struct precopy_pci_scan_opts o = { .sysfs_root = root };
	struct precopy_pci_device *d = (void *)1;

	cr_expect_eq(precopy_pci_scan(&o, &d, NULL, 0), 0);
	cr_expect_null(d);
	fx_tree_rm(root);
}

Test(pci_vfio_cdev, lookup)
{
	static const struct fake_dev devs[] = {
		{ "0000:81:00.0", 0x15b3, 0x101e, 0x020000, "vfio-pci", 12, "vfio17" },
		{ "0000:81:00.1", 0x15b3, 0x101e, 0x020000, "vfio-pci", 12, NULL },
	};
	char *root = fx_tree(devs, 2);
	struct precopy_pci_addr a0 = { 0, 0x81, 0, 0 }, a1 = { 0, 0x81, 0, 1 }, a2 = { 0, 0x82, 0, 0 };
	char buf[32];

	cr_expect_eq(precopy_pci_vfio_cdev(root, &a0, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "vfio17");
	cr_expect_eq(precopy_pci_vfio_cdev(root, &a0, buf, 6), -ENAMETOOLONG);
	cr_expect_eq(precopy_pci_vfio_cdev(root, &a1, buf, sizeof(buf)), -ENOENT);
	cr_expect_eq(precopy_pci_vfio_cdev(root, &a2, buf, sizeof(buf)), -ENOENT);
	cr_expect_eq(precopy_pci_vfio_cdev(root, NULL, buf, sizeof(buf)), -EINVAL);
	cr_expect_eq(precopy_pci_vfio_cdev(root, &a0, NULL, 0), -EINVAL);
	fx_tree_rm(root);
}

/* ---- errors ---------------------------------------------------------------- */

Test(pci_scan, missing_root_is_enoent_with_message)
{
	struct precopy_pci_scan_opts o = { .sysfs_root = "/nonexistent/precopy/bus/pci" };
	struct precopy_pci_device *d = (void *)1;
	char err[256];

	cr_expect_eq(precopy_pci_scan(&o, &d, err, sizeof(err)), -ENOENT);
	cr_expect_null(d);
	cr_expect(strstr(err, "/nonexistent/precopy/bus/pci/devices"), "message: %s", err);
}

Test(pci_scan, root_that_is_a_file_is_enotdir)
{
	struct precopy_pci_scan_opts o = { .sysfs_root = "/etc/hostname" };
	struct precopy_pci_device *d;

	cr_expect_eq(precopy_pci_scan(&o, &d, NULL, 0), -ENOTDIR);
}

Test(pci_scan, bad_arguments)
{
	struct precopy_pci_scan_opts o = { .flags = 1u << 7 };
	struct precopy_pci_device *d = (void *)1;

	cr_expect_eq(precopy_pci_scan(&o, &d, NULL, 0), -EINVAL);
	cr_expect_null(d);
	cr_expect_eq(precopy_pci_scan(NULL, NULL, NULL, 0), -EINVAL);
}

/* An entry that is not an address is refused before libpci walks the
 * directory (libpci would die on it). */
Test(pci_scan, entry_that_is_not_an_address_is_eio)
{
	static const struct fake_dev devs[] = {
		{ "0000:00:01.0", 0x1af4, 0x1041, 0x020000, NULL, -1, NULL },
		{ "not-an-address", 0x1af4, 0x1041, 0x020000, NULL, -1, NULL },
	};
	char *root = fx_tree(devs, 2);
	struct precopy_pci_scan_opts o = { .sysfs_root = root };
	struct precopy_pci_device *d = (void *)1;
	char err[256];

	cr_expect_eq(precopy_pci_scan(&o, &d, err, sizeof(err)), -EIO);
	cr_expect_null(d);
	cr_expect(strstr(err, "not-an-address"), "message: %s", err);
	/* and a later scan on the same thread still works */
	cr_expect_geq(precopy_pci_scan(NULL, &d, NULL, 0), 1);
	precopy_pci_devices_free(d);
	fx_tree_rm(root);
}

/* A device missing a mandatory attribute: libpci's fatal-error hook fires
 * mid-fill, after the array was allocated. It comes back as -EIO with
 * libpci's message, nothing leaks (checked under ASan), and the thread can
 * scan again. */
Test(pci_scan, libpci_error_during_fill_is_eio)
{
	static const struct fake_dev devs[] = {
		{ "0000:00:01.0", 0x1af4, 0x1041, 0x020000, NULL, -1, NULL },
	};
	char *root = fx_tree(devs, 1);
	struct precopy_pci_scan_opts o = { .sysfs_root = root };
	struct precopy_pci_device *d = (void *)1;
	char p[PATH_MAX], err[256];

	FX_SNPRINTF(p, sizeof(p), "%s/devices/0000:00:01.0/vendor", root);
	cr_assert_eq(unlink(p), 0);
	cr_expect_eq(precopy_pci_scan(&o, &d, err, sizeof(err)), -EIO);
	cr_expect_null(d);
	cr_expect(strncmp(err, "libpci: ", 8) == 0 && strstr(err, "vendor"), "message: %s", err);
	cr_expect_geq(precopy_pci_scan(NULL, &d, NULL, 0), 1);
	precopy_pci_devices_free(d);
	fx_tree_rm(root);
}
