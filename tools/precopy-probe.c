/* SPDX-License-Identifier: MIT */
/* precopy-probe — what this host offers for VFIO live migration.
 *
 * First what the host itself offers (KVM and its dirty-log modes with the
 * dirty ring's largest size, iommufd, the VFIO container, vfio-pci, IOMMU
 * groups, io_uring for the concurrent device drain, huge pages, NUMA
 * nodes), then lists the PCI functions (address, vendor:device, class, driver, IOMMU
 * group) through libpci, marks those bound to a VFIO driver, and for each of
 * those opens the device (cdev + iommufd, or group + container) and reports
 * its migration flags and whether it supports DMA logging. --json prints one
 * JSON object for scripts. --vfio-user SOCKET reports on a vfio-user server
 * instead.
 *
 * Exit status: 0 when the listing worked (with or without VFIO devices), 1
 * when the PCI bus could not be read, 2 on a usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <precopy.h>
#include "json.h"

/* VFIO_MIGRATION_* bits, as <linux/vfio.h> (and precopy/vfio.h) define them. */
static const struct {
	uint64_t bit;
	const char *name;
} mig_flag_names[] = {
	{ 1u << 0, "stop_copy" },
	{ 1u << 1, "p2p" },
	{ 1u << 2, "pre_copy" },
};
#define N_MIG_FLAGS (sizeof(mig_flag_names) / sizeof(mig_flag_names[0]))

/* What probing one VFIO device found. */
struct vfio_report {
	bool probed;                 /* an open was attempted */
	int open_rc;                 /* 0 or -errno */
	struct precopy_vfio_fds fds; /* path, node, failed_step */
	int mig_rc;                  /* precopy_vfio_migration_flags() */
	uint64_t mig_flags;
	int log_rc;                  /* precopy_vfio_dma_logging_supported() */
	char error[256];             /* set when the device could not be assessed */
};

static const char *errname(int neg)
{
	const char *n = strerrorname_np(-neg);
	return n ? n : "E?";
}

/* "0000:05:00.1 (mlx5_core), ..." : the other devices of d's IOMMU group
 * that are bound to a host driver, the usual reason a group is not viable. */
static void group_blockers(const struct precopy_pci_device *devs, int n,
			   const struct precopy_pci_device *d, char *buf, size_t len)
{
	size_t used = 0;
	int i, w;

	buf[0] = '\0';
	for (i = 0; i < n && used < len; i++) {
		const struct precopy_pci_device *o = &devs[i];

		if (o == d || o->iommu_group != d->iommu_group || o->is_vfio || !o->driver[0])
			continue;
		w = snprintf(buf + used, len - used, "%s%s (%s)", used ? ", " : "", o->address,
			     o->driver);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* One sentence saying why opening failed, with a hint where one helps. */
static void open_error(const struct precopy_pci_device *devs, int n, const struct precopy_pci_device *d,
		       const struct vfio_report *r, char *buf, size_t len)
{
	const struct precopy_vfio_fds *f = &r->fds;
	enum precopy_vfio_step step = f->failed_step;
	int e = r->open_rc;
	const char *hint = "";
	char what[128], blockers[160];

	group_blockers(devs, n, d, blockers, sizeof(blockers));
	switch (step) {
	case PRECOPY_VFIO_STEP_GROUP_OPEN:
	case PRECOPY_VFIO_STEP_CDEV_OPEN:
		snprintf(what, sizeof(what), "cannot open %s", f->node);
		if (e == -ENOENT)
			hint = " (no such node: is the vfio module loaded and the device bound to it?)";
		else if (e == -EACCES || e == -EPERM)
			hint = " (permission denied: run as root or grant access to the node)";
		else if (e == -EBUSY)
			hint = " (already open, e.g. by a running VMM)";
		break;
	case PRECOPY_VFIO_STEP_GROUP_VIABLE:
		snprintf(buf, len,
			 "IOMMU group %d is not viable: another device in it is bound to a host "
			 "driver%s%s; bind every device of the group to vfio-pci or unbind it (%s)",
			 d->iommu_group, blockers[0] ? ": " : "", blockers, errname(e));
		return;
	case PRECOPY_VFIO_STEP_CONTAINER_OPEN:
	case PRECOPY_VFIO_STEP_IOMMUFD_OPEN:
		snprintf(what, sizeof(what), "cannot %s", precopy_vfio_step_name(step));
		if (step == PRECOPY_VFIO_STEP_IOMMUFD_OPEN && e == -ENOENT)
			hint = " (iommufd is not available, and the device has no IOMMU group to fall "
			       "back on)";
		else if (e == -EACCES || e == -EPERM)
			hint = " (permission denied: run as root)";
		break;
	case PRECOPY_VFIO_STEP_CDEV_LOOKUP:
		snprintf(buf, len, "the device has neither a VFIO cdev nor an IOMMU group (%s)",
			 errname(e));
		return;
	default:
		snprintf(what, sizeof(what), "%s on %s failed", precopy_vfio_step_name(step),
			 f->node[0] ? f->node : "the device");
		if (step == PRECOPY_VFIO_STEP_API_VERSION && e == -EPROTO)
			hint = " (the container speaks another VFIO API version)";
		else if (step == PRECOPY_VFIO_STEP_IOMMU_TYPE && e == -EOPNOTSUPP)
			hint = " (the container offers no type1 IOMMU)";
		else if (step == PRECOPY_VFIO_STEP_GET_DEVICE_FD && e == -ENODEV)
			hint = " (the group holds no device with this address)";
		else if (e == -EBUSY && blockers[0])
			hint = " (its IOMMU group is not viable: other devices are bound to host drivers)";
		else if (e == -EBUSY)
			hint = " (the device is already open, e.g. by a running VMM)";
		break;
	}
	snprintf(buf, len, "%s: %s (%s)%s%s%s", what, strerror(-e), errname(e), hint,
		 e == -EBUSY && blockers[0] ? ": " : "", e == -EBUSY ? blockers : "");
}

static void probe_vfio(const struct precopy_sys *sys, const struct precopy_pci_device *devs, int n,
		       const struct precopy_pci_device *d, struct vfio_report *r)
{
	memset(r, 0, sizeof(*r));
	r->probed = true;
	r->open_rc = precopy_pci_vfio_open(sys, d, &r->fds);
	if (r->open_rc < 0) {
		open_error(devs, n, d, r, r->error, sizeof(r->error));
		return;
	}
	r->mig_rc = precopy_vfio_migration_flags(sys, r->fds.device_fd, &r->mig_flags);
	if (r->mig_rc < 0 && r->mig_rc != -ENOTTY && r->mig_rc != -EOPNOTSUPP)
		snprintf(r->error, sizeof(r->error), "VFIO_DEVICE_FEATURE(MIGRATION): %s (%s)",
			 strerror(-r->mig_rc), errname(r->mig_rc));
	r->log_rc = precopy_vfio_dma_logging_supported(sys, r->fds.device_fd);
	if (r->log_rc < 0 && !r->error[0])
		snprintf(r->error, sizeof(r->error), "VFIO_DEVICE_FEATURE(DMA_LOGGING_START, PROBE): %s (%s)",
			 strerror(-r->log_rc), errname(r->log_rc));
	precopy_vfio_fds_close(sys, &r->fds);
}

static bool migratable(const struct vfio_report *r)
{
	return r->mig_rc == 0;
}

/* ---- JSON ------------------------------------------------------------------ */

/* One escaper for every tool: tools/json.h (invalid UTF-8 becomes U+FFFD). */
static void json_str(FILE *o, const char *s)
{
	tool_json_str(o, s);
}

static const char *or_null(const char *s)
{
	return s[0] ? s : NULL;
}

static void json_migration(FILE *o, const struct vfio_report *r)
{
	size_t i;
	bool first = true;

	fputs("{", o);
	if (r->open_rc < 0) {
		fputs("\"error\": ", o);
		json_str(o, r->error);
		fputs("}", o);
		return;
	}
	fprintf(o, "\"path\": \"%s\", \"node\": ",
		r->fds.path == PRECOPY_VFIO_PATH_CDEV ? "cdev" : "group");
	json_str(o, r->fds.node);
	if (r->error[0]) {
		fputs(", \"error\": ", o);
		json_str(o, r->error);
		fputs("}", o);
		return;
	}
	fputs(", \"flags\": [", o);
	if (r->mig_rc == 0 || r->mig_rc == -EOPNOTSUPP) {
		for (i = 0; i < N_MIG_FLAGS; i++) {
			if (!(r->mig_flags & mig_flag_names[i].bit))
				continue;
			fprintf(o, "%s\"%s\"", first ? "" : ", ", mig_flag_names[i].name);
			first = false;
		}
	}
	fprintf(o, "], \"flags_raw\": %llu, \"migration_supported\": %s, \"migratable\": %s, "
		   "\"dma_logging\": %s}",
		(unsigned long long)(r->mig_rc == -ENOTTY ? 0 : r->mig_flags),
		r->mig_rc == -ENOTTY ? "false" : "true", migratable(r) ? "true" : "false",
		r->log_rc == 1 ? "true" : "false");
}

/* ---- the host ---------------------------------------------------------------- */

#define MAX_HUGE 4

/* What the host offers beside its PCI devices. A probe that could not run
 * keeps its -errno (e.g. -ENOENT: no /dev/kvm). */
struct host_caps {
	int kvm;               /* 1: /dev/kvm opened, else -errno */
	int kvm_api;           /* KVM_GET_API_VERSION */
	int64_t ring_max;      /* KVM_CAP_DIRTY_LOG_RING: largest ring in bytes, 0: none */
	int ring_acq_rel;      /* KVM_CAP_DIRTY_LOG_RING_ACQ_REL */
	int64_t manual;        /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags, 0: none */
	int iommufd;           /* 1: /dev/iommu opened, else -errno */
	int vfio_container;    /* 1: /dev/vfio/vfio opened, else -errno */
	int vfio_pci;          /* the vfio-pci driver is registered (module loaded) */
	int iommu_groups;      /* in /sys/kernel/iommu_groups, -errno if unreadable */
	int numa_nodes;        /* in /sys/devices/system/node, -errno if unreadable */
	int io_uring;          /* 1: the asynchronous queue opens here, else -errno */
	int nhuge;
	struct {
		uint64_t kib, total, free;
	} huge[MAX_HUGE];
	char thp[16];          /* transparent huge pages: always / madvise / never, or "" */
};

/* Entries of dir whose names start with prefix (all with ""), or -errno. */
static int count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

static uint64_t read_u64(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

static int open_rw(const struct precopy_sys *sys, const char *path)
{
	int fd = precopy_sys_open(sys, path, O_RDWR);

	if (fd >= 0)
		precopy_sys_close(sys, fd);
	return fd >= 0 ? 1 : fd;
}

static void probe_host(const struct precopy_sys *sys, struct host_caps *h)
{
	void *q = NULL;
	DIR *d;
	struct dirent *e;
	FILE *f;
	int fd;

	memset(h, 0, sizeof(*h));
	fd = precopy_sys_open(sys, "/dev/kvm", O_RDWR);
	h->kvm = fd >= 0 ? 1 : fd;
	if (fd >= 0) {
		int r;

		h->kvm_api = precopy_sys_ioctl(sys, fd, KVM_GET_API_VERSION, NULL);
		r = precopy_sys_ioctl(sys, fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_DIRTY_LOG_RING);
		h->ring_max = r > 0 ? r : 0;
		r = precopy_sys_ioctl(sys, fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
		h->ring_acq_rel = r > 0;
		r = precopy_sys_ioctl(sys, fd, KVM_CHECK_EXTENSION,
				      (void *)(uintptr_t)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		h->manual = r > 0 ? r : 0;
		precopy_sys_close(sys, fd);
	}
	h->iommufd = open_rw(sys, "/dev/iommu");
	h->vfio_container = open_rw(sys, "/dev/vfio/vfio");
	h->vfio_pci = access("/sys/bus/pci/drivers/vfio-pci", F_OK) == 0;
	h->iommu_groups = count_entries("/sys/kernel/iommu_groups", "");
	h->numa_nodes = count_entries("/sys/devices/system/node", "node");
	h->io_uring = precopy_sys_aio_open(sys, 1, 1, &q);
	if (h->io_uring == 0) {
		precopy_sys_aio_close(sys, q);
		h->io_uring = 1;
	}
	d = opendir("/sys/kernel/mm/hugepages");
	while (d && (e = readdir(d)) && h->nhuge < MAX_HUGE) {
		unsigned long long kib;
		char p[512];

		if (sscanf(e->d_name, "hugepages-%llukB", &kib) != 1)
			continue;
		h->huge[h->nhuge].kib = kib;
		snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/%s/nr_hugepages", e->d_name);
		h->huge[h->nhuge].total = read_u64(p);
		snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/%s/free_hugepages", e->d_name);
		h->huge[h->nhuge].free = read_u64(p);
		h->nhuge++;
	}
	if (d)
		closedir(d);
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f) {
		char line[128], *a, *b;

		if (fgets(line, sizeof(line), f) && (a = strchr(line, '[')) && (b = strchr(a, ']')) &&
		    (size_t)(b - a - 1) < sizeof(h->thp)) {
			memcpy(h->thp, a + 1, (size_t)(b - a - 1));
			h->thp[b - a - 1] = 0;
		}
		fclose(f);
	}
}

static const char *yes_or_why(int v, char *b, size_t n)
{
	if (v > 0)
		return "yes";
	snprintf(b, n, "no (%s)", strerror(-v));
	return b;
}

static void print_host_text(FILE *o, const struct host_caps *h)
{
	char b[96];

	fprintf(o, "host:\n  KVM            %s", yes_or_why(h->kvm, b, sizeof(b)));
	if (h->kvm > 0) {
		fprintf(o, " (API %d); dirty log: classic", h->kvm_api);
		if (h->manual)
			fprintf(o, ", manual-protect%s",
				h->manual & KVM_DIRTY_LOG_INITIALLY_SET ? " (initially set)" : "");
		if (h->ring_max)
			fprintf(o, ", ring up to %lld KiB%s", (long long)(h->ring_max >> 10),
				h->ring_acq_rel ? " (acquire/release)" : "");
	}
	fprintf(o, "\n  iommufd        %s\n", yes_or_why(h->iommufd, b, sizeof(b)));
	fprintf(o, "  VFIO container %s\n", yes_or_why(h->vfio_container, b, sizeof(b)));
	fprintf(o, "  vfio-pci       %s\n", h->vfio_pci ? "loaded" : "not loaded");
	if (h->iommu_groups >= 0)
		fprintf(o, "  IOMMU groups   %d\n", h->iommu_groups);
	else
		fprintf(o, "  IOMMU groups   unreadable (%s)\n", strerror(-h->iommu_groups));
	if (h->io_uring > 0)
		fprintf(o, "  io_uring       yes (device state drained concurrently)\n");
	else
		fprintf(o, "  io_uring       no (%s): device state drained serially\n", strerror(-h->io_uring));
	fprintf(o, "  huge pages    ");
	for (int i = 0; i < h->nhuge; i++)
		fprintf(o, " %llu KiB: %llu (%llu free);", (unsigned long long)h->huge[i].kib,
			(unsigned long long)h->huge[i].total, (unsigned long long)h->huge[i].free);
	fprintf(o, " THP %s\n", h->thp[0] ? h->thp : "unknown");
	if (h->numa_nodes >= 0)
		fprintf(o, "  NUMA nodes     %d\n\n", h->numa_nodes);
	else
		fprintf(o, "  NUMA nodes     unreadable (%s)\n\n", strerror(-h->numa_nodes));
}

/* A capability as JSON: true, or false with the reason beside it. */
static void json_cap(FILE *o, const char *key, int v)
{
	fprintf(o, "\"%s\": %s", key, v > 0 ? "true" : "false");
	if (v <= 0) {
		fprintf(o, ", \"%s_error\": ", key);
		json_str(o, v < 0 ? strerror(-v) : "no");
	}
}

static void print_host_json(FILE *o, const struct host_caps *h)
{
	fputs("\"host\": {", o);
	json_cap(o, "kvm", h->kvm);
	if (h->kvm > 0)
		fprintf(o, ", \"kvm_api\": %d, \"dirty_ring_max_bytes\": %lld, \"dirty_ring_acq_rel\": %s, "
			   "\"manual_protect\": %s, \"initially_set\": %s",
			h->kvm_api, (long long)h->ring_max, h->ring_acq_rel ? "true" : "false",
			h->manual ? "true" : "false", h->manual & KVM_DIRTY_LOG_INITIALLY_SET ? "true" : "false");
	fputs(", ", o);
	json_cap(o, "iommufd", h->iommufd);
	fputs(", ", o);
	json_cap(o, "vfio_container", h->vfio_container);
	fprintf(o, ", \"vfio_pci_loaded\": %s", h->vfio_pci ? "true" : "false");
	if (h->iommu_groups >= 0)
		fprintf(o, ", \"iommu_groups\": %d", h->iommu_groups);
	else
		fputs(", \"iommu_groups\": null", o);
	fputs(", ", o);
	json_cap(o, "io_uring", h->io_uring);
	fputs(", \"hugepages\": [", o);
	for (int i = 0; i < h->nhuge; i++)
		fprintf(o, "%s{\"kib\": %llu, \"total\": %llu, \"free\": %llu}", i ? ", " : "",
			(unsigned long long)h->huge[i].kib, (unsigned long long)h->huge[i].total,
			(unsigned long long)h->huge[i].free);
	fputs("], \"thp\": ", o);
	json_str(o, h->thp[0] ? h->thp : NULL);
	if (h->numa_nodes >= 0)
		fprintf(o, ", \"numa_nodes\": %d}", h->numa_nodes);
	else
		fputs(", \"numa_nodes\": null}", o);
}

static void print_json(FILE *o, const struct host_caps *h, const char *root, const struct precopy_pci_device *devs, int n,
		       const struct vfio_report *reps, int nvfio)
{
	int i;

	fputs("{", o);
	print_host_json(o, h);
	fputs(", \"sysfs_root\": ", o);
	json_str(o, root);
	fputs(", \"devices\": [", o);
	for (i = 0; i < n; i++) {
		const struct precopy_pci_device *d = &devs[i];

		fprintf(o, "%s\n  {\"address\": ", i ? "," : "");
		json_str(o, d->address);
		fprintf(o, ", \"vendor_id\": \"%04x\", \"device_id\": \"%04x\", \"class_id\": \"%04x\", "
			   "\"prog_if\": \"%02x\", \"revision\": \"%02x\", \"vendor\": ",
			d->vendor_id, d->device_id, d->class_id, d->prog_if, d->revision);
		json_str(o, or_null(d->vendor_name));
		fputs(", \"device\": ", o);
		json_str(o, or_null(d->device_name));
		fputs(", \"class\": ", o);
		json_str(o, or_null(d->class_name));
		fputs(", \"driver\": ", o);
		json_str(o, or_null(d->driver));
		if (d->iommu_group >= 0)
			fprintf(o, ", \"iommu_group\": %d", d->iommu_group);
		else
			fputs(", \"iommu_group\": null", o);
		fputs(", \"vfio_cdev\": ", o);
		json_str(o, or_null(d->vfio_cdev));
		fprintf(o, ", \"vfio\": %s", d->is_vfio ? "true" : "false");
		if (reps[i].probed) {
			fputs(", \"migration\": ", o);
			json_migration(o, &reps[i]);
		}
		fputs("}", o);
	}
	fprintf(o, "\n], \"vfio_devices\": %d}\n", nvfio);
}

/* ---- table ----------------------------------------------------------------- */

static void print_table(FILE *o, const struct precopy_pci_device *devs, int n,
			const struct vfio_report *reps, int nvfio)
{
	int i;
	size_t k;

	fprintf(o, "%-13s %-9s  %-5s %-16s %-5s %-4s  %s\n", "ADDRESS", "ID", "CLASS", "DRIVER", "IOMMU",
		"VFIO", "DESCRIPTION");
	for (i = 0; i < n; i++) {
		const struct precopy_pci_device *d = &devs[i];
		const struct vfio_report *r = &reps[i];
		char grp[16], cls[32], ven[32], dev[32];

		if (d->iommu_group >= 0)
			snprintf(grp, sizeof(grp), "%d", d->iommu_group);
		else
			snprintf(grp, sizeof(grp), "-");
		snprintf(cls, sizeof(cls), "class %04x", d->class_id);
		snprintf(ven, sizeof(ven), "vendor %04x", d->vendor_id);
		snprintf(dev, sizeof(dev), "device %04x", d->device_id);
		fprintf(o, "%-13s %04x:%04x  %04x  %-16s %-5s %-4s  %s: %s %s\n", d->address, d->vendor_id,
			d->device_id, d->class_id, d->driver[0] ? d->driver : "-", grp,
			d->is_vfio ? "yes" : "-", d->class_name[0] ? d->class_name : cls,
			d->vendor_name[0] ? d->vendor_name : ven, d->device_name[0] ? d->device_name : dev);
		if (!r->probed)
			continue;
		if (r->open_rc < 0 || r->error[0]) {
			fprintf(o, "    cannot assess: %s\n", r->error);
			continue;
		}
		fprintf(o, "    opened via %s %s; migration: ",
			r->fds.path == PRECOPY_VFIO_PATH_CDEV ? "cdev" : "group", r->fds.node);
		if (r->mig_rc == -ENOTTY) {
			fputs("not supported by the driver", o);
		} else {
			bool first = true;

			for (k = 0; k < N_MIG_FLAGS; k++) {
				if (r->mig_flags & mig_flag_names[k].bit) {
					fprintf(o, "%s%s", first ? "" : ",", mig_flag_names[k].name);
					first = false;
				}
			}
			fprintf(o, "%s (%s)", first ? "no flags" : "",
				migratable(r) ? "migratable" : "not migratable: no STOP_COPY");
		}
		fprintf(o, "; DMA logging: %s\n", r->log_rc == 1 ? "supported" : "not supported");
	}
	fprintf(o, "\n%d PCI device%s", n, n == 1 ? "" : "s");
	if (nvfio == 0)
		fputs("; no device is bound to vfio-pci\n", o);
	else
		fprintf(o, "; %d bound to vfio-pci or a vfio-pci variant driver\n", nvfio);
}

/* ---- a vfio-user server ------------------------------------------------------ */

/* What a vfio-user server says about itself: its capabilities, device,
 * non-empty regions, IRQ types, migration flags, and the page size its DMA
 * logging settles on when asked for 4096 (logging is started and stopped
 * again, with no DMA mapped). Returns the exit status. */
static int probe_vfio_user(const char *path, bool json)
{
	static const char *const region_flags[] = { "read", "write", "mmap", "caps" };
	static const char *const irq_flags[] = { "eventfd", "maskable", "automasked", "noresize" };
	char msg[320];
	int err = 0;
	int fd = precopy_vfio_user_connect(path);
	if (fd < 0) {
		fprintf(stderr, "precopy-probe: cannot connect to %s: %s (%s)\n", path, strerror(-fd), errname(fd));
		return 1;
	}
	struct precopy_vfio_user_opts o;
	precopy_vfio_user_opts_init(&o);
	o.name = path;
	struct precopy_vfio_user *c = precopy_vfio_user_open(precopy_sys_real(), fd, &o, &err, msg, sizeof(msg));
	if (!c) {
		fprintf(stderr, "precopy-probe: %s (%s)\n", msg, errname(err));
		return 1;
	}
	struct precopy_vfio_user_caps caps;
	uint32_t dflags = 0, nreg = 0, nirq = 0;
	uint64_t mflags = 0, page = 0;
	precopy_vfio_user_caps(c, &caps);
	int r = precopy_vfio_user_device_info(c, &dflags, &nreg, &nirq);
	if (r) {
		fprintf(stderr, "precopy-probe: %s\n", precopy_vfio_user_error(c));
		precopy_vfio_user_close(c);
		return 1;
	}
	if (json) {
		fputs("{\"vfio_user\": {\"socket\": ", stdout);
		json_str(stdout, path);
		fprintf(stdout, ", \"version\": \"%u.%u\", \"twin_socket\": %s, \"max_msg_fds\": %llu, "
				"\"max_data_xfer_size\": %llu, \"max_dma_maps\": %llu, \"pgsizes\": %llu, "
				"\"migration_pgsize\": %llu, \"device_flags\": %u, \"regions\": [",
			caps.major, caps.minor, caps.twin_socket ? "true" : "false",
			(unsigned long long)caps.max_msg_fds, (unsigned long long)caps.max_data_xfer_size,
			(unsigned long long)caps.max_dma_maps, (unsigned long long)caps.pgsizes,
			(unsigned long long)caps.migration_pgsize, dflags);
	} else {
		printf("vfio-user server %s: protocol %u.%u, twin socket %s\n", path, caps.major, caps.minor,
		       caps.twin_socket ? "yes" : "no");
		printf("  capabilities: max_msg_fds %llu, max_data_xfer_size %llu, max_dma_maps %llu, pgsizes "
		       "0x%llx, migration.pgsize %llu\n",
		       (unsigned long long)caps.max_msg_fds, (unsigned long long)caps.max_data_xfer_size,
		       (unsigned long long)caps.max_dma_maps, (unsigned long long)caps.pgsizes,
		       (unsigned long long)caps.migration_pgsize);
		printf("  device:%s%s; %u regions, %u IRQ types\n", dflags & PRECOPY_VFIO_USER_DEVICE_PCI ? " pci" : "",
		       dflags & PRECOPY_VFIO_USER_DEVICE_RESET ? " reset" : "", nreg, nirq);
	}
	bool first = true;
	for (uint32_t i = 0; i < nreg && i < 64; i++) {
		struct precopy_vfio_user_region reg;
		if (precopy_vfio_user_region_info(c, i, &reg, NULL) || reg.size == 0)
			continue;
		if (json) {
			fprintf(stdout, "%s{\"index\": %u, \"size\": %llu, \"flags\": [", first ? "" : ", ", i,
				(unsigned long long)reg.size);
			bool f1 = true;
			for (unsigned b = 0; b < 4; b++)
				if (reg.flags & (1u << b)) {
					fprintf(stdout, "%s\"%s\"", f1 ? "" : ", ", region_flags[b]);
					f1 = false;
				}
			fputs("]}", stdout);
		} else {
			printf("  region %u: 0x%llx bytes,", i, (unsigned long long)reg.size);
			for (unsigned b = 0; b < 4; b++)
				if (reg.flags & (1u << b))
					printf(" %s", region_flags[b]);
			putchar('\n');
		}
		first = false;
	}
	if (json)
		fputs("], \"irqs\": [", stdout);
	first = true;
	for (uint32_t i = 0; i < nirq && i < 64; i++) {
		uint32_t fl, count;
		if (precopy_vfio_user_irq_info(c, i, &fl, &count) || count == 0)
			continue;
		if (json) {
			fprintf(stdout, "%s{\"index\": %u, \"count\": %u, \"flags\": [", first ? "" : ", ", i, count);
			bool f1 = true;
			for (unsigned b = 0; b < 4; b++)
				if (fl & (1u << b)) {
					fprintf(stdout, "%s\"%s\"", f1 ? "" : ", ", irq_flags[b]);
					f1 = false;
				}
			fputs("]}", stdout);
		} else {
			printf("  IRQ type %u: %u,", i, count);
			for (unsigned b = 0; b < 4; b++)
				if (fl & (1u << b))
					printf(" %s", irq_flags[b]);
			putchar('\n');
		}
		first = false;
	}
	int mr = precopy_vfio_user_migration_flags(c, &mflags);
	char mig_err[320] = "";
	if (mr)
		snprintf(mig_err, sizeof(mig_err), "%s", precopy_vfio_user_error(c));
	int lr = mr ? mr : precopy_vfio_user_dma_logging_start(c, 4096, NULL, 0, &page);
	char log_err[320] = "";
	if (!mr && lr)
		snprintf(log_err, sizeof(log_err), "%s", precopy_vfio_user_error(c));
	if (!lr)
		precopy_vfio_user_dma_logging_stop(c);
	if (json) {
		fputs("], \"migration\": ", stdout);
		if (mr) {
			fputs("{\"error\": ", stdout);
			json_str(stdout, mig_err);
			fputs("}", stdout);
		} else {
			fputs("{\"flags\": [", stdout);
			bool f1 = true;
			for (size_t k = 0; k < N_MIG_FLAGS; k++)
				if (mflags & mig_flag_names[k].bit) {
					fprintf(stdout, "%s\"%s\"", f1 ? "" : ", ", mig_flag_names[k].name);
					f1 = false;
				}
			fprintf(stdout, "], \"flags_raw\": %llu}", (unsigned long long)mflags);
		}
		fputs(", \"dma_logging_page_size\": ", stdout);
		if (lr)
			fputs("null", stdout);
		else
			fprintf(stdout, "%llu", (unsigned long long)page);
		fputs("}}\n", stdout);
	} else {
		if (mr) {
			printf("  migration: none (%s)\n", mig_err);
		} else {
			printf("  migration:");
			for (size_t k = 0; k < N_MIG_FLAGS; k++)
				if (mflags & mig_flag_names[k].bit)
					printf(" %s", mig_flag_names[k].name);
			putchar('\n');
		}
		if (lr)
			printf("  DMA logging: not available (%s)\n", mr ? "no migration" : log_err);
		else
			printf("  DMA logging: page size %llu (4096 asked)\n", (unsigned long long)page);
	}
	precopy_vfio_user_close(c);
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *o, const char *argv0)
{
	fprintf(o,
		"usage: %s [--json] [--no-open] [--numeric] [--sysfs DIR] [--help]\n"
		"       %s [--json] --vfio-user SOCKET\n"
		"\n"
		"Lists the PCI devices of this host (address, vendor:device, class, driver,\n"
		"IOMMU group) through libpci and marks those bound to vfio-pci or a vfio-pci\n"
		"variant driver. Each of those is opened (VFIO cdev + /dev/iommu, else IOMMU\n"
		"group + container) and its migration flags and DMA logging support are\n"
		"reported. Opening needs the rights on /dev/vfio (usually root), fails\n"
		"while another process (a VMM) holds the device, and makes vfio-pci reset\n"
		"an idle device as it is opened and closed: --no-open avoids all three.\n"
		"\n"
		"  --json       one JSON object: {\"host\": {...}, \"devices\": [...], \"vfio_devices\": N}\n"
		"  --no-open    list only; do not open VFIO devices\n"
		"  --numeric    no names from the PCI ID database\n"
		"  --sysfs DIR  read the PCI bus from DIR instead of %s\n"
		"  --vfio-user SOCKET  instead of the PCI bus: what the vfio-user server at\n"
		"               SOCKET offers (protocol, capabilities, regions, IRQs,\n"
		"               migration flags, the DMA logging page size it settles on)\n"
		"  --help       this text\n"
		"\n"
		"Exit status: 0 when the listing worked (even with no VFIO device), 1 when\n"
		"the PCI bus cannot be read (or the vfio-user server cannot be reached or\n"
		"speaks no version 0 protocol), 2 on a usage error.\n",
		argv0, argv0, PRECOPY_PCI_SYSFS_ROOT);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "no-open", no_argument, NULL, 'n' },
		{ "numeric", no_argument, NULL, 'N' },
		{ "sysfs", required_argument, NULL, 's' },
		{ "vfio-user", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct precopy_pci_scan_opts opts = { .sysfs_root = PRECOPY_PCI_SYSFS_ROOT };
	const struct precopy_sys *sys = precopy_sys_real();
	struct precopy_pci_device *devs;
	struct vfio_report *reps;
	struct host_caps host;
	bool json = false, no_open = false;
	const char *vfio_user = NULL;
	char err[512];
	int c, n, i, nvfio = 0;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'n':
			no_open = true;
			break;
		case 'N':
			opts.flags |= PRECOPY_PCI_SCAN_NUMERIC;
			break;
		case 's':
			opts.sysfs_root = optarg;
			break;
		case 'u':
			vfio_user = optarg;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0]);
		return 2;
	}
	if (vfio_user) {
		int st = probe_vfio_user(vfio_user, json);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "precopy-probe: write error: %s\n", strerror(errno));
			return 1;
		}
		return st;
	}

	n = precopy_pci_scan(&opts, &devs, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "precopy-probe: cannot list PCI devices: %s (%s)\n",
			err[0] ? err : strerror(-n), errname(n));
		return 1;
	}
	reps = calloc(n ? (size_t)n : 1, sizeof(*reps));
	if (!reps) {
		fprintf(stderr, "precopy-probe: out of memory\n");
		precopy_pci_devices_free(devs);
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (!devs[i].is_vfio)
			continue;
		nvfio++;
		if (!no_open)
			probe_vfio(sys, devs, n, &devs[i], &reps[i]);
	}

	probe_host(sys, &host);
	if (json) {
		print_json(stdout, &host, opts.sysfs_root, devs, n, reps, nvfio);
	} else {
		print_host_text(stdout, &host);
		print_table(stdout, devs, n, reps, nvfio);
	}

	free(reps);
	precopy_pci_devices_free(devs);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "precopy-probe: write error: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
