/* SPDX-License-Identifier: MIT */
/* vmm/dest.c — precopy-vmm's destination: accepts one migration, writes the
 * pages into its guest RAM, feeds the device-state stream to a precopy_dest
 * (the vCPU and serial state arrive through its fd-based back-end), checks
 * the RAM digest, restores the registers and resumes the guest. It starts
 * the guest only after everything arrived and checked: a failed incoming
 * migration leaves no half-started guest. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <precopy.h>

#include "vmm.h"

#define BACKEND_ID 1u
#define DEV_CHECK_NS 100000000ull /* how often the devices' servers are checked while receiving */

struct dst {
	const struct vmm_opts *o;
	struct vmm_vm vm;
	int have_vm;
	struct precopy_dest *d;
	struct vmm_conn conn;
	struct vmm_device devs[VMM_MAX_DEVICES]; /* --device, matched to the source's in order */
	unsigned ndev;
	int have_conn;
	int be_fd, be_ok;
	uint64_t pages, zero_pages, stop_ns;
	uint8_t *touched; /* a byte per page: written by a PAGE frame (else still zero) */
	struct vmm_done done;
};

static int be_queues_running(void *ctx)
{
	(void)ctx;
	return 0; /* the vCPU has not run here */
}

static int be_set_state_fd(void *ctx, uint32_t dir, uint32_t phase, int fd, int *reply_fd)
{
	struct dst *t = ctx;

	*reply_fd = -1;
	if (dir != PRECOPY_BACKEND_LOAD || phase != PRECOPY_BACKEND_PHASE_STOPPED) {
		close(fd);
		return -EINVAL;
	}
	if (t->be_fd >= 0)
		close(t->be_fd);
	t->be_fd = fd;
	t->be_ok = 0;
	return 0;
}

/* The front-end closed its end: the whole state is in the pipe. */
static int be_check_state(void *ctx)
{
	struct dst *t = ctx;
	struct vmm_vcpu_state st;
	uint8_t *p = (uint8_t *)&st;
	size_t got = 0;
	uint8_t extra;

	if (t->be_fd < 0)
		return -ENOENT;
	while (got < sizeof(st)) {
		ssize_t n = read(t->be_fd, p + got, sizeof(st) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got == sizeof(st)) {
		ssize_t n;
		do
			n = read(t->be_fd, &extra, 1);
		while (n < 0 && errno == EINTR);
		if (n != 0)
			got++; /* longer than a state */
	}
	close(t->be_fd);
	t->be_fd = -1;
	if (got != sizeof(st) || st.magic != VMM_STATE_MAGIC || st.version != VMM_STATE_VERSION ||
	    st.size != sizeof(st)) {
		vmm_err("loading the vCPU state: %zu bytes, magic %#x, version %u: not a vCPU state of this build", got,
			st.magic, st.version);
		return -EBADMSG;
	}
	t->vm.restore = st;
	t->vm.restore_pending = 1;
	t->be_ok = 1;
	return 0;
}

static const struct precopy_backend_ops be_ops = {
	.version = PRECOPY_BACKEND_OPS_VERSION,
	.queues_running = be_queues_running,
	.set_state_fd = be_set_state_fd,
	.check_state = be_check_state,
};

static int rp_sink(void *ctx, const void *buf, size_t len)
{
	struct dst *t = ctx;
	int r = vmm_send(&t->conn, VMM_F_RP, 0, buf, (uint32_t)len);

	return r < 0 ? r : vmm_flush(&t->conn);
}

static int fail(struct dst *t, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct dst *t, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (t->ndev) {
		/* name the device whose server failed, if one did */
		int k = vmm_devices_failed(t->devs, t->ndev);
		if (k >= 0)
			vmm_device_blame(&t->devs[k], msg, sizeof(msg));
	}
	vmm_err("incoming migration failed: %s (guest not started)", msg);
	if (t->have_conn) {
		t->conn.olen = 0;
		t->conn.io_timeout_ns = 100000000ull;
		vmm_send(&t->conn, VMM_F_ABORT, 0, msg, (uint32_t)strlen(msg));
		vmm_flush(&t->conn);
	}
	return status;
}

static int incoming(struct dst *t)
{
	const struct vmm_opts *o = t->o;
	struct precopy_dest_config dc;
	struct precopy_dest_backend be = { .id = BACKEND_ID, .ops = &be_ops, .ctx = t };
	struct precopy_dest_vfio_user vu[VMM_MAX_DEVICES];
	struct vmm_frame f;
	char why[256];
	int lfd, fd, r, err;
	uint64_t t_accept, resume_ns, wait_ns, last_frame;

	lfd = vmm_listen(o->incoming);
	if (lfd < 0)
		return VMM_EXIT_ERROR;
	vmm_info("incoming: listening on %s", o->incoming);
	wait_ns = (o->timeout_s ? o->timeout_s : 60) * 1000000000ull;
	fd = vmm_accept(lfd, wait_ns);
	close(lfd);
	if (fd < 0)
		return VMM_EXIT_ERROR;
	t_accept = vmm_now_ns();
	if (vmm_conn_init(&t->conn, fd, 0) < 0) {
		close(fd);
		return VMM_EXIT_ERROR;
	}
	t->have_conn = 1;
	t->conn.io_timeout_ns = o->io_timeout_ms * 1000000ull;
	r = vmm_recv(&t->conn, &f, t->conn.io_timeout_ns, why, sizeof(why));
	if (r <= 0)
		return fail(t, VMM_EXIT_ERROR, "receiving the greeting: %s", r == 0 ? "nothing within the I/O timeout" : why);
	if (f.kind != VMM_F_HELLO)
		return fail(t, VMM_EXIT_ERROR, "receiving the greeting: frame kind %u first: not a precopy-vmm migration",
			    f.kind);
	{
		struct vmm_hello h;
		memcpy(&h, f.payload, sizeof(h));
		if (memcmp(h.magic, VMM_HELLO_MAGIC, sizeof(h.magic)) || h.version != VMM_PROTO_VERSION ||
		    h.page_size != VMM_PAGE)
			return fail(t, VMM_EXIT_ERROR, "the greeting: version %u, page size %u: not understood", h.version,
				    h.page_size);
		if (h.mem < 1u << 20 || h.mem % VMM_PAGE || h.mem > (3ull << 30))
			return fail(t, VMM_EXIT_ERROR, "the greeting: guest RAM of %llu bytes refused",
				    (unsigned long long)h.mem);
		if (o->mem && o->mem != h.mem)
			return fail(t, VMM_EXIT_ERROR, "the source's guest has %llu bytes of RAM, --mem says %llu",
				    (unsigned long long)h.mem, (unsigned long long)o->mem);
		if (h.devices != o->ndevices)
			return fail(t, VMM_EXIT_ERROR,
				    "the source's guest has %u vfio-user device%s, --device names %u here (matched in "
				    "order)", h.devices, h.devices == 1 ? "" : "s", o->ndevices);
		if (vmm_vm_create(&t->vm, h.mem, o->prealloc, o->ndevices > 0, o->serial) < 0)
			return fail(t, VMM_EXIT_ERROR, "creating the VM");
		t->have_vm = 1;
		for (unsigned i = 0; i < o->ndevices; i++)
			t->devs[i].path = o->devices[i];
		if (vmm_devices_open(t->devs, o->ndevices, &t->vm, o->io_timeout_ms) < 0)
			return fail(t, VMM_EXIT_ERROR, "attaching the devices");
		t->ndev = o->ndevices;
		if (!(t->touched = calloc(h.mem / VMM_PAGE, 1)))
			return fail(t, VMM_EXIT_ERROR, "allocating the page map: %s", strerror(ENOMEM));
		if (vmm_vm_create_vcpu(&t->vm, NULL) < 0)
			return fail(t, VMM_EXIT_ERROR, "creating the vCPU");
	}
	precopy_dest_config_init(&dc);
	dc.stream_fd = -1;
	dc.rp_sink = rp_sink;
	dc.rp_ctx = t;
	dc.backends = &be;
	dc.nbackends = 1;
	for (unsigned i = 0; i < t->ndev; i++)
		vu[i] = (struct precopy_dest_vfio_user){ .id = VMM_DEVICE_ID0 + i, .dev = t->devs[i].c };
	dc.vfio_user = vu;
	dc.nvfio_user = t->ndev;
	dc.io_timeout_ns = o->io_timeout_ms * 1000000ull;
	t->d = precopy_dest_new(&dc, &err);
	if (!t->d)
		return fail(t, VMM_EXIT_ERROR, "creating the destination engine: %s", strerror(-err));
	if ((r = precopy_dest_start(t->d)) < 0)
		return fail(t, VMM_EXIT_ERROR, "destination engine start: %s", precopy_dest_strerror(t->d));
	last_frame = vmm_now_ns();

	for (uint64_t next_check = 0;;) {
		/* a server that died while nothing was being written to it: say
		 * so now (the source would otherwise go on to its switchover) */
		if (t->ndev && vmm_now_ns() >= next_check) {
			int k = vmm_devices_failed(t->devs, t->ndev);
			if (k >= 0)
				return fail(t, VMM_EXIT_ERROR, "its connection closed or broke during the incoming migration");
			next_check = vmm_now_ns() + DEV_CHECK_NS;
		}
		r = vmm_recv(&t->conn, &f, t->ndev ? DEV_CHECK_NS : t->conn.io_timeout_ns, why, sizeof(why));
		if (r == 0 && t->ndev && vmm_now_ns() - last_frame < t->conn.io_timeout_ns)
			continue;
		if (r == 0)
			return fail(t, VMM_EXIT_ERROR, "receiving: nothing from the source for %llu s",
				    (unsigned long long)(t->conn.io_timeout_ns / 1000000000ull));
		if (r == -EPIPE)
			return fail(t, VMM_EXIT_ERROR,
				    "receiving: the source closed the connection before the end of the migration "
				    "(%llu pages received)", (unsigned long long)(t->pages + t->zero_pages));
		if (r < 0)
			return fail(t, VMM_EXIT_ERROR, "receiving: %s", why);
		if (atomic_load(&vmm_quit))
			return fail(t, VMM_EXIT_ERROR, "interrupted by a signal");
		last_frame = vmm_now_ns();
		switch (f.kind) {
		case VMM_F_PAGE:
		case VMM_F_ZERO:
			if (f.arg % VMM_PAGE || f.arg >= t->vm.mem)
				return fail(t, VMM_EXIT_ERROR, "receiving: page address %#llx outside guest RAM",
					    (unsigned long long)f.arg);
			if (f.kind == VMM_F_PAGE) {
				memcpy(t->vm.ram + f.arg, f.payload, VMM_PAGE);
				t->touched[f.arg / VMM_PAGE] = 1;
				t->pages++;
			} else {
				/* a page never written here is still zero: not even read */
				if (t->touched[f.arg / VMM_PAGE] && !vmm_page_is_zero(t->vm.ram + f.arg))
					memset(t->vm.ram + f.arg, 0, VMM_PAGE);
				t->zero_pages++;
			}
			break;
		case VMM_F_STREAM:
			if ((r = precopy_dest_feed(t->d, f.payload, f.len)) < 0)
				return fail(t, VMM_EXIT_ERROR, "device-state stream: %s", precopy_dest_strerror(t->d));
			if (t->stop_ns)
				vmm_trace(t->stop_ns, "destination: stream bytes fed");
			break;
		case VMM_F_STOP:
			t->stop_ns = f.arg;
			vmm_trace(t->stop_ns, "destination: STOP received");
			break;
		case VMM_F_ABORT:
			return fail(t, VMM_EXIT_ERROR, "the source cancelled the migration: %.*s", (int)f.len,
				    (const char *)f.payload);
		case VMM_F_DONE:
			memcpy(&t->done, f.payload, sizeof(t->done));
			goto done;
		default:
			return fail(t, VMM_EXIT_ERROR, "receiving: unexpected frame kind %u", f.kind);
		}
	}
done:
	vmm_trace(t->done.stop_ns, "destination: DONE received");
	if (precopy_dest_ended(t->d) != 1)
		return fail(t, VMM_EXIT_ERROR, "the device-state stream did not end before the RAM did");
	if (!t->be_ok)
		return fail(t, VMM_EXIT_ERROR, "the vCPU state did not arrive");
	if (t->done.pages_sent != t->pages + t->zero_pages)
		return fail(t, VMM_EXIT_ERROR, "the source sent %llu pages, %llu arrived",
			    (unsigned long long)t->done.pages_sent, (unsigned long long)(t->pages + t->zero_pages));
	if (t->done.has_digest) {
		/* pages never written here are zero: not read */
		uint64_t dg = vmm_digest(t->vm.ram, t->vm.mem, t->touched);

		r = vmm_recv(&t->conn, &f, t->conn.io_timeout_ns, why, sizeof(why));
		if (r <= 0)
			return fail(t, VMM_EXIT_ERROR, "receiving the RAM digest: %s",
				    r == 0 ? "nothing within the I/O timeout" : why);
		if (f.kind != VMM_F_DIGEST)
			return fail(t, VMM_EXIT_ERROR, "receiving the RAM digest: frame kind %u", f.kind);
		if (dg != f.arg)
			return fail(t, VMM_EXIT_VERIFY, "verify: guest RAM digest %016llx, the source's %016llx",
				    (unsigned long long)dg, (unsigned long long)f.arg);
		vmm_info("verify: guest RAM digest %016llx matches the source's", (unsigned long long)dg);
	}
	/* the devices run (and may DMA) only once RAM is loaded and checked */
	if ((r = precopy_dest_complete(t->d)) < 0)
		return fail(t, VMM_EXIT_ERROR, "destination engine complete: %s", precopy_dest_strerror(t->d));
	vmm_trace(t->done.stop_ns, "destination: loaded and checked");
	/* the registers go in before the first KVM_RUN (vm.c: park) */
	if (vmm_vm_start(&t->vm, 0) < 0 || vmm_vm_wait_running(&t->vm, 5000000000ull, &resume_ns) < 0)
		return fail(t, VMM_EXIT_ERROR, "resuming the guest");
	vmm_send(&t->conn, VMM_F_RESUMED, resume_ns, NULL, 0);
	vmm_flush(&t->conn);
	vmm_info("incoming migration done in %.3f s: %llu pages, %llu zero pages, %llu MiB received",
		 (double)(resume_ns - t_accept) / 1e9, (unsigned long long)t->pages, (unsigned long long)t->zero_pages,
		 (unsigned long long)(t->conn.received >> 20));
	vmm_info("downtime %.1f ms wall clock (source vCPU stop -> destination vCPU resume), engine expected %.1f ms",
		 (double)(resume_ns - t->done.stop_ns) / 1e6, (double)t->done.expected_ns / 1e6);
	if (o->json) {
		FILE *jf = o->json_path ? fopen(o->json_path, "w") : stdout;
		if (jf) {
			fprintf(jf, "{\"status\":\"completed\",\"downtime-ms\":%.3f,\"expected-downtime-ms\":%.3f,"
				    "\"pages\":%llu,\"zero-pages\":%llu,\"received\":%llu}\n",
				(double)(resume_ns - t->done.stop_ns) / 1e6, (double)t->done.expected_ns / 1e6,
				(unsigned long long)t->pages, (unsigned long long)t->zero_pages,
				(unsigned long long)t->conn.received);
			if (jf != stdout)
				fclose(jf);
			else
				fflush(jf);
		}
	}
	vmm_conn_free(&t->conn);
	t->have_conn = 0;
	{
		uint64_t end = o->run_for_ms ? vmm_now_ns() + o->run_for_ms * 1000000ull : UINT64_MAX;
		unsigned k = 0;
		r = 0;
		while (!atomic_load(&vmm_quit) && vmm_now_ns() < end && !atomic_load(&t->vm.failed) &&
		       (r = vmm_devices_serve(t->devs, t->ndev, 1000000, &k)) == 0)
			;
		if (r < 0) {
			char what[384];
			vmm_device_describe(&t->devs[k], what, sizeof(what));
			vmm_err("%s: answering its DMA after the migration", what);
			return VMM_EXIT_ERROR;
		}
	}
	if (atomic_load(&t->vm.failed)) {
		vmm_err("the guest failed on the destination: %s", t->vm.errmsg);
		return VMM_EXIT_ERROR;
	}
	vmm_info("last serial line on the destination: \"%s\"", t->vm.last_line);
	return VMM_EXIT_OK;
}

int vmm_dest(const struct vmm_opts *o)
{
	struct dst *t = calloc(1, sizeof(*t));
	int status;

	if (!t) {
		vmm_err("allocating the destination: %s", strerror(ENOMEM));
		return VMM_EXIT_ERROR;
	}
	t->o = o;
	t->be_fd = -1;
	status = incoming(t);
	if (t->have_conn)
		vmm_conn_free(&t->conn);
	precopy_dest_free(t->d);
	vmm_devices_close(t->devs, t->ndev);
	if (t->be_fd >= 0)
		close(t->be_fd);
	if (t->have_vm)
		vmm_vm_destroy(&t->vm);
	free(t->touched);
	free(t);
	return status;
}
