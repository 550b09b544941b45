/* SPDX-License-Identifier: MIT */
/* vmm/device.c — precopy-vmm's devices: vfio-user servers (--device
 * vfio-user:SOCKET) given guest RAM, a memfd, by DMA_MAP at IOVA 0 (the
 * guest-physical address is the IOVA: no IOMMU). The engines migrate
 * them (source.c, dest.c); here are their connections and, between the
 * engine's calls, the answers to their DMA commands. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <precopy.h>

#include "vmm.h"

static void set_name(struct vmm_device *d)
{
	size_t n = strlen(d->path);

	/* the engine and the client keep at most 63 bytes: keep the end */
	if (n < sizeof(d->name))
		snprintf(d->name, sizeof(d->name), "%s", d->path);
	else
		snprintf(d->name, sizeof(d->name), "...%s", d->path + n - (sizeof(d->name) - 4));
}

void vmm_device_describe(const struct vmm_device *d, char *buf, size_t len)
{
	const char *m = d->c ? precopy_vfio_user_error(d->c) : "";
	struct pollfd p = { .fd = d->c ? precopy_vfio_user_fd(d->c) : -1, .events = POLLIN };

	if (!m[0] && p.fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
		m = "its server closed the connection";
	snprintf(buf, len, "vfio-user device %s%s%s", d->path, m[0] ? ": " : "", m);
}

void vmm_device_blame(const struct vmm_device *d, char *buf, size_t len)
{
	char pre[160];
	size_t p, n;

	if (!len)
		return;
	snprintf(pre, sizeof(pre), "vfio-user device %s failed: ", d->path);
	p = strlen(pre);
	if (p >= len)
		p = len - 1;
	n = strnlen(buf, len - 1);
	if (n > len - 1 - p)
		n = len - 1 - p;
	memmove(buf + p, buf, n);
	memcpy(buf, pre, p);
	buf[p + n] = 0;
}

int vmm_devices_open(struct vmm_device *devs, unsigned n, struct vmm_vm *vm, uint64_t timeout_ms)
{
	for (unsigned i = 0; i < n; i++) {
		struct vmm_device *d = &devs[i];
		struct precopy_vfio_user_opts opts;
		char msg[256] = "";
		uint64_t flags = 0;
		int fd, err = 0, r;

		set_name(d);
		fd = precopy_vfio_user_connect(d->path);
		if (fd < 0) {
			vmm_err("vfio-user device %s: connecting: %s", d->path, strerror(-fd));
			goto fail;
		}
		precopy_vfio_user_opts_init(&opts);
		opts.name = d->name;
		opts.timeout_ms = (int)(timeout_ms > 3600000 ? 3600000 : timeout_ms);
		d->c = precopy_vfio_user_open(precopy_sys_real(), fd, &opts, &err, msg, sizeof(msg));
		if (!d->c) {
			vmm_err("vfio-user device %s: the handshake: %s%s%s", d->path, strerror(-err), msg[0] ? ": " : "",
				msg);
			goto fail;
		}
		if ((r = precopy_vfio_user_migration_flags(d->c, &flags)) < 0) {
			vmm_err("vfio-user device %s: it cannot migrate (the MIGRATION feature: %s; %s)", d->path,
				strerror(-r), precopy_vfio_user_error(d->c));
			goto fail;
		}
		if ((r = precopy_vfio_user_dma_map(d->c, 0, vm->mem, vm->ram, vm->ram_fd, 0,
						   PRECOPY_VFIO_USER_DMA_READ | PRECOPY_VFIO_USER_DMA_WRITE)) < 0) {
			vmm_err("vfio-user device %s: DMA_MAP of guest RAM (%llu bytes at 0): %s (%s)", d->path,
				(unsigned long long)vm->mem, strerror(-r), precopy_vfio_user_error(d->c));
			goto fail;
		}
	}
	return 0;
fail:
	vmm_devices_close(devs, n);
	return -1;
}

void vmm_devices_close(struct vmm_device *devs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		precopy_vfio_user_close(devs[i].c);
		devs[i].c = NULL;
	}
}

int vmm_devices_serve(struct vmm_device *devs, unsigned n, uint64_t timeout_ns, unsigned *which)
{
	struct pollfd p[VMM_MAX_DEVICES];
	int r;

	if (!n) {
		vmm_sleep_ns(timeout_ns);
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = precopy_vfio_user_fd(devs[i].c), .events = POLLIN };
	do
		r = poll(p, n, (int)((timeout_ns + 999999) / 1000000));
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return r < 0 ? -errno : 0;
	for (unsigned i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		/* a closed server reads as the end of its socket here */
		r = precopy_vfio_user_serve(devs[i].c, 0);
		if (r < 0) {
			*which = i;
			return r;
		}
	}
	return 0;
}

int vmm_devices_failed(struct vmm_device *devs, unsigned n)
{
	/* a server gone (its socket hung up), then a connection the client
	 * found broken (every call on it fails at once) */
	for (unsigned i = 0; i < n; i++) {
		struct pollfd p = { .fd = devs[i].c ? precopy_vfio_user_fd(devs[i].c) : -1, .events = POLLIN };
		int r;

		if (p.fd < 0)
			continue;
		do
			r = poll(&p, 1, 0);
		while (r < 0 && errno == EINTR);
		if (r > 0 && (p.revents & (POLLHUP | POLLERR)))
			return (int)i;
	}
	for (unsigned i = 0; i < n; i++)
		if (devs[i].c && precopy_vfio_user_serve(devs[i].c, 0) < 0)
			return (int)i;
	return -1;
}
