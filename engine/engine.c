/* SPDX-License-Identifier: MIT */
/* The source engine: configuration, lifecycle (start, cancel, failure) and
 * per-device status. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../vfio_user/vu_priv.h"

#define DEFAULT_CHUNK (64u * 1024)

static int fail(struct precopy_engine *e, int err);

/* ---- configuration -------------------------------------------------------- */

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int printable(const char *s)
{
	size_t n = strlen(s);

	if (n > PRECOPY_STREAM_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

static int cmp_slot(const void *a, const void *b)
{
	const struct precopy_ram_slot *x = a, *y = b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/* Every rule precopy_engine_new() applies before it touches a device or
 * the kernel; the first one broken, named, into msg. */
static int check_config(const struct precopy_engine_config *c, char *msg, size_t len)
{
	uint64_t ps, lo = UINT64_MAX, hi = 0;
	int r;

	if (msg && len)
		msg[0] = 0;
	if (!c)
		return precopy__refuse(msg, len, -EINVAL, "config: NULL");
	if (c->log_level > PRECOPY_LOG_DEBUG)
		return precopy__refuse(msg, len, -EINVAL, "log_level: %u, at most PRECOPY_LOG_DEBUG (3)", c->log_level);
	if (!c->clock.now_ns)
		return precopy__refuse(msg, len, -EINVAL, "clock.now_ns: required");
	if (precopy_sys_validate(c->sys) < 0)
		return precopy__refuse(msg, len, -EINVAL, "sys: NULL, an unknown version, or an op missing (precopy_sys_real() in a VMM)");
	if (!c->slots || !c->nslots)
		return precopy__refuse(msg, len, -EINVAL, "slots: at least one RAM slot");
	ps = c->slots[0].page_size;
	if (ps < 4096 || !is_pow2(ps))
		return precopy__refuse(msg, len, -EINVAL, "slots[0].page_size: %llu is not a power of two >= 4096",
			   (unsigned long long)ps);
	for (uint32_t i = 0; i < c->nslots; i++) {
		const struct precopy_ram_slot *s = &c->slots[i];

		if (s->page_size != ps)
			return precopy__refuse(msg, len, -EINVAL, "slots[%u].page_size: %llu differs from slots[0]'s %llu", i,
				   (unsigned long long)s->page_size, (unsigned long long)ps);
		if (!s->size || (s->gpa | s->size) & (ps - 1))
			return precopy__refuse(msg, len, -EINVAL, "slots[%u]: gpa and size must be non-zero multiples of the page size",
				   i);
		if (s->gpa > UINT64_MAX - s->size)
			return precopy__refuse(msg, len, -EINVAL, "slots[%u]: gpa + size wraps past 2^64", i);
		for (uint32_t j = 0; j < i; j++)
			if (s->gpa < c->slots[j].gpa + c->slots[j].size && c->slots[j].gpa < s->gpa + s->size)
				return precopy__refuse(msg, len, -EINVAL, "slots[%u]: overlaps slots[%u]", i, j);
		lo = s->gpa < lo ? s->gpa : lo;
		hi = s->gpa + s->size > hi ? s->gpa + s->size : hi;
	}
	if (c->ram_source == PRECOPY_RAM_BITMAP) {
		if (!c->ram_bitmap || !c->ram_bitmap->words)
			return precopy__refuse(msg, len, -EINVAL, "ram_bitmap: required with ram_source PRECOPY_RAM_BITMAP");
	} else if (c->ram_source == PRECOPY_RAM_KVM) {
		if (c->kvm_vm_fd < 0)
			return precopy__refuse(msg, len, -EINVAL, "kvm_vm_fd: required with ram_source PRECOPY_RAM_KVM");
		if (ps != PRECOPY_KVM_PAGE_SIZE)
			return precopy__refuse(msg, len, -EINVAL, "slots: page size %llu, KVM logs 4096-byte pages",
				   (unsigned long long)ps);
		if (c->ram_bitmap && !c->ram_bitmap->words)
			return precopy__refuse(msg, len, -EINVAL, "ram_bitmap: given without words");
	} else {
		return precopy__refuse(msg, len, -EINVAL, "ram_source: %u is neither PRECOPY_RAM_BITMAP nor PRECOPY_RAM_KVM",
			   c->ram_source);
	}
	if (c->ram_bitmap && c->ram_bitmap->nbits != (hi - lo) / ps)
		return precopy__refuse(msg, len, -EINVAL, "ram_bitmap: %llu bits, the slots span %llu pages",
			   (unsigned long long)c->ram_bitmap->nbits, (unsigned long long)((hi - lo) / ps));
	if (c->ndevices && !c->devices)
		return precopy__refuse(msg, len, -EINVAL, "devices: NULL with ndevices %u", c->ndevices);
	if (c->nbackends && !c->backends)
		return precopy__refuse(msg, len, -EINVAL, "backends: NULL with nbackends %u", c->nbackends);
	if (c->nvfio_user && !c->vfio_user)
		return precopy__refuse(msg, len, -EINVAL, "vfio_user: NULL with nvfio_user %u", c->nvfio_user);
	if ((uint64_t)c->ndevices + c->nbackends + c->nvfio_user > PRECOPY_STREAM_CAP_MAX_DEVICES)
		return precopy__refuse(msg, len, -E2BIG, "ndevices + nbackends + nvfio_user: %llu, at most %u",
			   (unsigned long long)c->ndevices + c->nbackends + c->nvfio_user,
			   PRECOPY_STREAM_CAP_MAX_DEVICES);
	for (uint32_t i = 0; i < c->ndevices; i++) {
		const struct precopy_engine_device *d = &c->devices[i];

		if (d->id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (d->device_fd < 0)
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].device_fd: %d is not an open fd", i, d->device_fd);
		if (d->name && !printable(d->name))
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].name: printable ASCII, at most %u bytes", i,
				   PRECOPY_STREAM_NAME_MAX);
		if (d->flags & ~PRECOPY_ENGINE_DEV_NO_DMA_LOG)
			return precopy__refuse(msg, len, -EINVAL, "devices[%u].flags: unknown bits %#x", i,
				   d->flags & ~PRECOPY_ENGINE_DEV_NO_DMA_LOG);
		for (uint32_t j = 0; j < i; j++)
			if (c->devices[j].id == d->id)
				return precopy__refuse(msg, len, -EINVAL, "devices[%u].id: %u, also devices[%u]'s", i, d->id, j);
	}
	for (uint32_t i = 0; i < c->nbackends; i++) {
		const struct precopy_engine_backend *b = &c->backends[i];

		if (b->id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "backends[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (b->name && !printable(b->name))
			return precopy__refuse(msg, len, -EINVAL, "backends[%u].name: printable ASCII, at most %u bytes", i,
				   PRECOPY_STREAM_NAME_MAX);
		for (uint32_t j = 0; j < c->ndevices; j++)
			if (c->devices[j].id == b->id)
				return precopy__refuse(msg, len, -EINVAL, "backends[%u].id: %u, also devices[%u]'s", i, b->id, j);
		for (uint32_t j = 0; j < i; j++)
			if (c->backends[j].id == b->id)
				return precopy__refuse(msg, len, -EINVAL, "backends[%u].id: %u, also backends[%u]'s", i, b->id, j);
	}
	for (uint32_t i = 0; i < c->nvfio_user; i++) {
		const struct precopy_engine_vfio_user *u = &c->vfio_user[i];

		if (u->id == PRECOPY_STREAM_DEV_NONE)
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].id: PRECOPY_STREAM_DEV_NONE is reserved", i);
		if (!u->dev)
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].dev: NULL (a connected precopy_vfio_user handle)", i);
		if (u->name && !printable(u->name))
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].name: printable ASCII, at most %u bytes", i,
				   PRECOPY_STREAM_NAME_MAX);
		if (u->flags & ~PRECOPY_ENGINE_DEV_NO_DMA_LOG)
			return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].flags: unknown bits %#x", i,
				   u->flags & ~PRECOPY_ENGINE_DEV_NO_DMA_LOG);
		for (uint32_t j = 0; j < c->ndevices; j++)
			if (c->devices[j].id == u->id)
				return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].id: %u, also devices[%u]'s", i, u->id, j);
		for (uint32_t j = 0; j < c->nbackends; j++)
			if (c->backends[j].id == u->id)
				return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u].id: %u, also backends[%u]'s", i, u->id, j);
		for (uint32_t j = 0; j < i; j++)
			if (c->vfio_user[j].id == u->id || c->vfio_user[j].dev == u->dev)
				return precopy__refuse(msg, len, -EINVAL, "vfio_user[%u]: id %u or handle also vfio_user[%u]'s", i,
					   u->id, j);
	}
	if ((c->stream_fd >= 0) == (c->sink != NULL))
		return precopy__refuse(msg, len, -EINVAL, "stream_fd / sink: exactly one (stream_fd %d, sink %s)", c->stream_fd,
			   c->sink ? "set" : "NULL");
	if (c->max_chunk && (c->max_chunk < 4096 || c->max_chunk > PRECOPY_STREAM_DEFAULT_MAX_CHUNK))
		return precopy__refuse(msg, len, -EINVAL, "max_chunk: %u, 0 or 4096..%u", c->max_chunk,
			   PRECOPY_STREAM_DEFAULT_MAX_CHUNK);
	r = precopy_policy_check(&c->policy, msg, len);
	return r;
}

/* The caller's config as this library's struct, or -EINVAL (NULL, a
 * version this library does not know: message in msg). A version 1
 * struct ends before `log`, a version 2 before `vfio_user`: only its
 * bytes are read. */
static int config_copy(const struct precopy_engine_config *in, struct precopy_engine_config *out, char *msg,
		       size_t len)
{
	memset(out, 0, sizeof(*out));
	if (msg && len)
		msg[0] = 0;
	if (!in)
		return precopy__refuse(msg, len, -EINVAL, "config: NULL");
	if (in->version < 1 || in->version > PRECOPY_ENGINE_CONFIG_VERSION)
		return precopy__refuse(msg, len, -EINVAL,
			   "version: %u, this library takes 1 to %u (start from precopy_engine_config_init())",
			   in->version, PRECOPY_ENGINE_CONFIG_VERSION);
	memcpy(out, in,
	       in->version == 1   ? offsetof(struct precopy_engine_config, log)
	       : in->version == 2 ? offsetof(struct precopy_engine_config, vfio_user)
				  : sizeof(*out));
	return 0;
}

PRECOPY_API int precopy_engine_config_check(const struct precopy_engine_config *cfg, char *msg, size_t len)
{
	struct precopy_engine_config c;
	int r = config_copy(cfg, &c, msg, len);

	return r < 0 ? r : check_config(&c, msg, len);
}

static int setup_slots(struct precopy_engine *e)
{
	const struct precopy_engine_config *c = &e->cfg;
	uint64_t end;

	e->slots = malloc(c->nslots * sizeof(*e->slots));
	if (!e->slots)
		return -ENOMEM;
	memcpy(e->slots, c->slots, c->nslots * sizeof(*e->slots));
	qsort(e->slots, c->nslots, sizeof(*e->slots), cmp_slot);
	for (uint32_t i = 1; i < c->nslots; i++)
		if (e->slots[i].gpa < e->slots[i - 1].gpa + e->slots[i - 1].size)
			return -EINVAL; /* overlap */
	e->cfg.slots = e->slots;
	e->ps = e->slots[0].page_size;
	e->base = e->slots[0].gpa;
	end = e->slots[c->nslots - 1].gpa + e->slots[c->nslots - 1].size;
	e->log.nbits = (end - e->base) / e->ps;
	if (c->ram_bitmap && c->ram_bitmap->nbits != e->log.nbits)
		return -EINVAL;
	return 0;
}

static int setup_kvm(struct precopy_engine *e)
{
	int err;

	e->kvm = precopy_kvm_log_new(e->cfg.sys, e->cfg.kvm_vm_fd, &e->cfg.kvm, &err);
	if (!e->kvm)
		return err;
	for (uint32_t i = 0; i < e->cfg.nslots; i++) {
		const struct precopy_ram_slot *s = &e->slots[i];
		struct precopy_kvm_slot ks = {
			.slot = s->kvm_slot,
			.flags = s->kvm_flags,
			.guest_phys_addr = s->gpa,
			.memory_size = s->size,
			.userspace_addr = s->userspace_addr,
			.log = &e->log,
			.log_bit = (s->gpa - e->base) / e->ps,
		};
		int r = precopy_kvm_log_add_slot(e->kvm, &ks);
		if (r < 0)
			return r;
	}
	return 0;
}

static int setup_devices(struct precopy_engine *e)
{
	const struct precopy_engine_config *c = &e->cfg;
	int err;

	e->ndev = c->ndevices + c->nvfio_user;
	if (e->ndev + c->nbackends) {
		e->dstat = calloc(e->ndev + c->nbackends, sizeof(*e->dstat));
		if (!e->dstat)
			return -ENOMEM;
	}
	if (!e->ndev)
		return 0;
	e->devs = calloc(e->ndev, sizeof(*e->devs));
	if (!e->devs)
		return -ENOMEM;
	for (uint32_t i = c->ndevices; i < e->ndev; i++) {
		const struct precopy_engine_vfio_user *u = &c->vfio_user[i - c->ndevices];
		struct edev *d = &e->devs[i];

		d->cfg = (struct precopy_engine_device){ .id = u->id, .device_fd = -1, .flags = u->flags,
							 .tracker = u->tracker, .transition_ns = u->transition_ns };
		snprintf(d->name, sizeof(d->name), "%s", u->name ? u->name : "");
		d->cfg.name = d->name;
		d->trans_est = d->cfg.transition_ns;
		d->vu = u->dev;
		d->sc_hint = u->stop_copy_hint;
		err = precopy_vfio_user_migration_flags(d->vu, &d->mig_flags);
		if (err == 0)
			err = precopy_vfio_user_get_state(d->vu, &d->vu_state);
		if (err < 0)
			return err;
		if (!(d->mig_flags & VFIO_MIGRATION_STOP_COPY))
			return -EOPNOTSUPP;
		if (!(d->cfg.flags & PRECOPY_ENGINE_DEV_NO_DMA_LOG)) {
			d->dma = precopy__vu_dirty_new(c->sys, d->vu, &err);
			if (!d->dma)
				return err;
		}
	}
	e->cfg.vfio_user = NULL;
	for (uint32_t i = 0; i < c->ndevices; i++) {
		struct edev *d = &e->devs[i];
		struct precopy_vfio_dev_status st;

		d->cfg = c->devices[i];
		snprintf(d->name, sizeof(d->name), "%s", d->cfg.name ? d->cfg.name : "");
		d->cfg.name = d->name;
		d->trans_est = d->cfg.transition_ns;
		d->vd = precopy_vfio_dev_new(c->sys, d->cfg.device_fd, &err);
		if (!d->vd)
			return err;
		precopy_vfio_dev_status(d->vd, &st);
		d->mig_flags = st.mig_flags;
		if (!(d->cfg.flags & PRECOPY_ENGINE_DEV_NO_DMA_LOG)) {
			d->dma = precopy_vfio_dma_log_new(c->sys, d->cfg.device_fd, 0, 0, &err);
			if (!d->dma && err != -EOPNOTSUPP)
				return err;
		}
	}
	e->cfg.devices = NULL; /* the copies live in e->devs */
	return 0;
}

/* The state channels the mover drains: devices, then back-ends. */
static int setup_channels(struct precopy_engine *e)
{
	e->nchan = e->ndev + e->nbe;
	if (!e->nchan)
		return 0;
	e->chans = calloc(e->nchan, sizeof(*e->chans));
	if (!e->chans)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->ndev; i++)
		e->chans[i] = (struct precopy__chan){ .ops = e->devs[i].vu ? &precopy__chan_vu_ops : &precopy__chan_vfio_ops,
						      .obj = &e->devs[i],
						      .id = e->devs[i].cfg.id,
						      .bytes_sent = &e->devs[i].bytes_sent };
	for (uint32_t i = 0; i < e->nbe; i++)
		e->chans[e->ndev + i] = (struct precopy__chan){ .ops = &precopy__chan_backend_ops,
								.obj = &e->bes[i], .id = e->bes[i].cfg.id,
								.bytes_sent = &e->bes[i].bytes_sent };
	return 0;
}

PRECOPY_API struct precopy_engine *precopy_engine_new(const struct precopy_engine_config *cfg, int *err)
{
	struct precopy_engine *e;
	struct precopy_engine_config c;
	int r = config_copy(cfg, &c, NULL, 0);

	if (r == 0)
		r = check_config(&c, NULL, 0);

	if (r < 0)
		goto fail;
	r = -ENOMEM;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto fail;
	e->cfg = c;
	if (!e->cfg.max_chunk)
		e->cfg.max_chunk = DEFAULT_CHUNK;
	if (!e->cfg.io_timeout_ns)
		e->cfg.io_timeout_ns = 10000000000ull;
	if (!e->cfg.poll_interval_ms)
		e->cfg.poll_interval_ms = 10;
	if (!e->cfg.exact_margin_pct)
		e->cfg.exact_margin_pct = 200;
	e->est = precopy_estimator_new(&e->cfg.policy, &r);
	if (!e->est)
		goto fail_free;
	r = setup_slots(e);
	if (r < 0)
		goto fail_free;
	r = precopy__eng_log_alloc(e);
	if (r < 0)
		goto fail_free;
	if (e->cfg.ram_source == PRECOPY_RAM_KVM) {
		r = setup_kvm(e);
		if (r < 0)
			goto fail_free;
	}
	r = setup_devices(e);
	if (r < 0)
		goto fail_free;
	r = precopy__eng_be_setup(e);
	if (r < 0)
		goto fail_free;
	r = setup_channels(e);
	if (r < 0)
		goto fail_free;
	if (err)
		*err = 0;
	return e;
fail_free:
	precopy_engine_free(e);
fail:
	if (err)
		*err = r;
	return NULL;
}

PRECOPY_API void precopy_engine_free(struct precopy_engine *e)
{
	if (!e)
		return;
	if (e->fc_active)
		precopy__eng_fc_end(e, NULL, NULL);
	precopy_engine_cancel(e);
	/* a stop that failed is tried once more (a tracker is the caller's:
	 * it must not be left logging for this engine) */
	precopy__eng_tracking_retry(e, "free");
	for (uint32_t i = 0; i < e->ndev; i++) {
		precopy_dirty_source_free(e->devs[i].dma);
		precopy_vfio_dev_free(e->devs[i].vd);
	}
	free(e->devs);
	precopy__mover_close(e);
	free(e->chans);
	precopy__eng_be_free(e);
	free(e->dstat);
	precopy_kvm_log_free(e->kvm);
	precopy_bitmap_free(&e->log);
	precopy_estimator_free(e->est);
	free(e->slots);
	free(e);
}

PRECOPY_API int precopy_engine_kvm_add_vcpu(struct precopy_engine *e, int vcpu_fd, void *ring)
{
	if (!e || !e->kvm || e->cfg.kvm.mode != PRECOPY_KVM_LOG_RING)
		return -EINVAL;
	if (e->phase == PRECOPY_ENGINE_PRECOPY || e->phase == PRECOPY_ENGINE_SWITCHED)
		return -EBUSY;
	return precopy_kvm_log_add_vcpu(e->kvm, vcpu_fd, ring);
}

/* ---- start ------------------------------------------------------------------ */

static void reset_migration(struct precopy_engine *e)
{
	int r;

	precopy_estimator_free(e->est);
	e->est = precopy_estimator_new(&e->cfg.policy, &r); /* validated at new: cannot be EINVAL */
	e->iterations = 0;
	e->have_decision = 0;
	e->last_bw = e->last_expected = 0;
	e->last_blocked = 0;
	e->stalled = 0;
	e->stalled_since_ns = 0;
	e->it_ram_bytes = e->it_send_ns = e->it_dev_bytes = e->it_dev_ns = e->it_dirty_pages = 0;
	e->need_ack = e->acked = e->switch_decided = e->rp_eof = 0;
	e->cursor = 0;
	e->err = 0;
	e->errmsg[0] = 0;
	memset(&e->dt, 0, sizeof(e->dt));
	memset(&e->last_iter, 0, sizeof(e->last_iter));
	memset(&e->last_in, 0, sizeof(e->last_in));
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		d->tracking_src = NULL;
		d->tracking = 0;
		d->pre_copy = d->initial_sent = d->err = d->recovered = d->was_reset = 0;
		d->init_left = d->dirty = d->dirty_prev = d->dirty_read = d->bytes_sent = 0;
		d->stop_copy = 0;
		d->sc_known = 0;
		d->sc_guess = 0;
		d->init_unknown = 0;
		d->pump_got = d->sc_drained = 0;
		d->precopy_sent = 0;
		d->arcs = 0;
	}
	precopy__eng_be_reset(e);
}

/* A migration starts from RUNNING devices. The VMM may have moved or reset
 * a device since the last migration (a completed one leaves it in STOP,
 * the VMM resumes it if the guest comes back), so each device's state is
 * read again. One the last migration left in ERROR gets a fresh handle
 * (its failed reset forgotten) if the VMM has reset it since. */
static int check_devices_running(struct precopy_engine *e)
{
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];
		uint32_t state;
		int err;

		if (d->vu) {
			err = precopy__eng_vu_read_state(e, d, "start");
			if (err < 0)
				return err;
		} else if (precopy__eng_dev_state(d) == VFIO_DEVICE_STATE_ERROR) {
			struct precopy_vfio_dev *nv = precopy_vfio_dev_new(e->cfg.sys, d->cfg.device_fd, &err);

			if (!nv) {
				precopy__eng_seterr(e, err, "start: device %u: reading its state again: %s", d->cfg.id,
						    strerror(-err));
				return err;
			}
			precopy_vfio_dev_free(d->vd);
			d->vd = nv;
		} else {
			err = precopy_vfio_dev_refresh(d->vd);
			if (err < 0) {
				precopy__eng_seterr(e, err, "start: " DEV_FMT ": reading its state: %s", DEV_ARGS(d),
						    strerror(-err));
				return err;
			}
		}
		state = precopy__eng_dev_state(d);
		if (state == VFIO_DEVICE_STATE_ERROR) {
			d->err = -EIO;
			precopy__eng_seterr(e, -EIO, "start: device %u is in ERROR (a failed transition and a failed reset left it "
				   "there): reset it before migrating", d->cfg.id);
			return -EIO;
		}
		if (state != VFIO_DEVICE_STATE_RUNNING) {
			d->err = -EINVAL;
			precopy__eng_seterr(e, -EINVAL, "start: " DEV_FMT " is in %s, not RUNNING: resume it before migrating",
					    DEV_ARGS(d), precopy_vfio_state_name(state));
			return -EINVAL;
		}
	}
	return 0;
}

PRECOPY_API int precopy_engine_start(struct precopy_engine *e)
{
	int r;

	if (!e)
		return -EINVAL;
	if (!precopy__eng_allowed(e, OP_START) || e->fc_active)
		return -EBUSY;
	/* an interrupt belongs to the migration it was meant for */
	__atomic_store_n(&e->interrupted, 0, __ATOMIC_RELAXED);
	reset_migration(e);
	if (!e->est)
		return -ENOMEM;
	r = check_devices_running(e);
	if (r < 0)
		return r;
	/* a device still logging would refuse a second START (mlx5: -EINVAL) */
	r = precopy__eng_tracking_retry(e, "start");
	if (r < 0)
		return r;
	e->migrations++;
	e->start_ns = precopy__eng_now(e);
	e->end_ns = 0;
	e->syncs = e->ram_sent = 0;
	e->phase = PRECOPY_ENGINE_PRECOPY;
	r = precopy__eng_stream_open(e);
	if (r == 0)
		r = precopy__eng_rp_open(e);
	if (r == 0)
		r = precopy__mover_open(e);
	if (r < 0) {
		precopy__eng_seterr(e, r, "start: stream buffers: %s", strerror(-r));
		return fail(e, r);
	}
	if (e->kvm) {
		r = precopy_kvm_log_start(e->kvm);
		if (r < 0) {
			precopy__eng_seterr(e, r, "start: KVM dirty logging: %s", strerror(-r));
			return fail(e, r);
		}
		e->kvm_started = 1;
	}
	/* Every page is dirty at the start: the first pass sends all RAM. The
	 * harvest of the caller's bitmap that follows is what it dirtied. */
	precopy_bitmap_zero(&e->log);
	e->dirty_count = 0;
	precopy__eng_log_mark_all(e);
	r = precopy__eng_tracking_start(e);
	if (r < 0)
		return fail(e, r);
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];

		if (!(d->mig_flags & VFIO_MIGRATION_PRE_COPY))
			continue;
		r = precopy__eng_dev_move(e, d, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0) {
			precopy__eng_seterr(e, r, "start: device %u: RUNNING -> PRE_COPY: %s", d->cfg.id, strerror(-r));
			return fail(e, r);
		}
		d->pre_copy = 1;
		d->init_unknown = d->vu != NULL; /* until its first 0-byte read */
		d->pump_got = 0;
		e->need_ack = 1;
		r = precopy__eng_dev_refresh_info(e, d, 1); /* the first info starts the countdown */
		if (r < 0)
			return fail(e, r);
	}
	r = precopy__eng_emit_setup_all(e);
	if (r < 0)
		return fail(e, r);
	if (e->nchan && !precopy__mover_concurrent(e))
		precopy__eng_log(e, e->aio_err == -ENOSYS ? PRECOPY_LOG_INFO : PRECOPY_LOG_WARNING,
				 "start: device state will be drained one device after another (asynchronous queue: %s)",
				 strerror(-e->aio_err));
	precopy__eng_log(e, PRECOPY_LOG_INFO, "start: %u devices, %u back-ends, %llu RAM pages of %llu bytes",
			 e->ndev, e->nbe, (unsigned long long)e->log.nbits, (unsigned long long)e->ps);
	for (uint32_t i = 0; i < e->ndev; i++) {
		r = precopy__eng_dev_initial_check(e, &e->devs[i]);
		if (r < 0)
			return fail(e, r);
	}
	return 0;
}

/* ---- forecast ------------------------------------------------------------------ */

PRECOPY_API int precopy_engine_forecast_begin(struct precopy_engine *e)
{
	if (!e)
		return -EINVAL;
	if (!precopy__eng_allowed(e, OP_START) || e->fc_active)
		return -EBUSY;
	return precopy__eng_fc_begin(e);
}

PRECOPY_API int64_t precopy_engine_forecast_sample(struct precopy_engine *e)
{
	if (!e)
		return -EINVAL;
	if (!e->fc_active)
		return -EBUSY;
	return precopy__eng_fc_sample(e);
}

PRECOPY_API int precopy_engine_forecast_end(struct precopy_engine *e, const struct precopy_engine_forecast_params *p,
					    struct precopy_forecast *out)
{
	if (!e || (!p) != (!out))
		return -EINVAL;
	if (!e->fc_active)
		return -EBUSY;
	return precopy__eng_fc_end(e, p, out);
}

/* ---- cancel and failure ------------------------------------------------------ */

/* A device a failed transition and a failed reset left in ERROR: no arc
 * leaves that state, so nothing is attempted; the message says so. */
static int stuck_in_error(struct precopy_engine *e, struct edev *d)
{
	struct precopy_vfio_dev_status st = { .state = VFIO_DEVICE_STATE_RUNNING };
	size_t len = strlen(e->errmsg);

	if (d->vu)
		st.state = d->vu_state;
	else
		precopy_vfio_dev_status(d->vd, &st);
	if (st.state != VFIO_DEVICE_STATE_ERROR)
		return 0;
	if (!e->err)
		precopy__eng_seterr(e, -EIO, "device %u is in ERROR", d->cfg.id);
	else if (len < sizeof(e->errmsg) - 1)
		snprintf(e->errmsg + len, sizeof(e->errmsg) - len, "; device %u left in ERROR", d->cfg.id);
	len = strlen(e->errmsg);
	if (st.reset_err && len < sizeof(e->errmsg) - 1)
		snprintf(e->errmsg + len, sizeof(e->errmsg) - len, " (its reset failed too: %s)",
			 strerror(-st.reset_err));
	return 1;
}

/* Undo everything the migration set up. Returns the first -errno met. */
static int unwind(struct precopy_engine *e)
{
	int first = 0, r;

	e->end_ns = precopy__eng_now(e);
	for (uint32_t i = 0; i < e->ndev; i++) {
		struct edev *d = &e->devs[i];

		if (stuck_in_error(e, d)) {
			if (d->vd)
				precopy_vfio_dev_end_session(d->vd);
			if (!first)
				first = d->err ? d->err : -EIO;
			continue;
		}
		r = precopy__eng_dev_move(e, d, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_RUNNING);
		if (r < 0 && !first)
			first = r;
		/* any session left (e.g. the device was reset) is closed */
		if (d->vd)
			precopy_vfio_dev_end_session(d->vd);
	}
	precopy__mover_close(e);
	precopy__eng_be_abort_all(e);
	r = precopy__eng_tracking_stop(e, "cancel");
	if (r < 0 && !first)
		first = r;
	if (e->kvm_started) {
		r = precopy_kvm_log_stop(e->kvm);
		if (r < 0 && !first)
			first = r;
		e->kvm_started = 0;
	}
	precopy__eng_rp_close(e);
	precopy__eng_stream_close(e);
	e->phase = PRECOPY_ENGINE_IDLE;
	return first;
}

/* Cancel after a failure: keeps e->err / errmsg, returns err. */
static int fail(struct precopy_engine *e, int err)
{
	unwind(e);
	return err;
}

PRECOPY_API int precopy_engine_interrupt(struct precopy_engine *e)
{
	if (!e)
		return -EINVAL;
	__atomic_store_n(&e->interrupted, 1, __ATOMIC_RELEASE);
	return 0;
}


PRECOPY_API int precopy_engine_cancel(struct precopy_engine *e)
{
	if (!e)
		return -EINVAL;
	if (e->phase != PRECOPY_ENGINE_PRECOPY && e->phase != PRECOPY_ENGINE_SWITCHED)
		return 0;
	return unwind(e);
}

PRECOPY_API const char *precopy_engine_strerror(const struct precopy_engine *e)
{
	return e ? e->errmsg : "";
}

PRECOPY_API int precopy_engine_error(const struct precopy_engine *e)
{
	return e ? e->err : -EINVAL;
}

/* ---- the migration's calls -------------------------------------------------- */

/* The checks every call makes first: 0 to go on, -EINVAL, -EBUSY (nothing
 * changed), or -ECANCELED after precopy_engine_interrupt() (the migration
 * is cancelled) where `interruptible`. */
static int enter(struct precopy_engine *e, uint32_t op, int interruptible)
{
	int r;

	if (!e)
		return -EINVAL;
	if (!precopy__eng_allowed(e, op))
		return -EBUSY;
	if (interruptible && (r = precopy__eng_interrupted(e)) < 0)
		return fail(e, r);
	return 0;
}

PRECOPY_API int64_t precopy_engine_sync(struct precopy_engine *e)
{
	int64_t n = enter(e, OP_SYNC, 1);

	if (n < 0)
		return n;
	n = precopy__eng_sync(e);
	return n < 0 ? fail(e, (int)n) : n;
}

PRECOPY_API int64_t precopy_engine_next_pages(struct precopy_engine *e, struct precopy_ram_run *runs,
					      size_t max_runs, uint64_t max_pages)
{
	int r;

	if (!runs || !max_runs)
		return -EINVAL;
	r = enter(e, OP_PAGES, 0);
	return r < 0 ? r : precopy__eng_next_pages(e, runs, max_runs, max_pages);
}

PRECOPY_API int64_t precopy_engine_pump(struct precopy_engine *e, uint64_t budget)
{
	int64_t n = enter(e, OP_PUMP, 1);

	if (n < 0)
		return n;
	n = precopy__eng_vu_serve(e, "pump"); /* vfio-user servers' DMA waiting for us */
	if (n == 0)
		n = precopy__eng_rp_poll(e); /* an ACK or an error queued on the return path */
	if (n == 0)
		n = precopy__mover_pump(e, budget);
	return n < 0 ? fail(e, (int)n) : n;
}

PRECOPY_API int precopy_engine_account(struct precopy_engine *e, uint64_t ram_bytes, uint64_t send_ns)
{
	int r = enter(e, OP_ACCOUNT, 0);

	return r < 0 ? r : precopy__eng_account(e, ram_bytes, send_ns);
}

PRECOPY_API int precopy_engine_set_policy(struct precopy_engine *e, const struct precopy_policy *policy)
{
	int r;

	if (!e || !policy)
		return -EINVAL;
	if ((r = precopy_estimator_set_policy(e->est, policy)) < 0)
		return r;
	e->cfg.policy = *policy;
	return 0;
}

PRECOPY_API int precopy_engine_decide(struct precopy_engine *e, struct precopy_decision *d)
{
	int r;

	if (!d)
		return -EINVAL;
	r = enter(e, OP_DECIDE, 1);
	if (r < 0)
		return r;
	r = precopy__eng_decide(e, d);
	return r < 0 ? fail(e, r) : 0;
}

PRECOPY_API int precopy_engine_rp_feed(struct precopy_engine *e, const void *buf, size_t len)
{
	int r;

	if (!buf && len)
		return -EINVAL;
	r = enter(e, OP_RP, 0);
	if (r < 0)
		return r;
	r = precopy__eng_rp_feed(e, buf, len);
	return r < 0 ? fail(e, r) : 0;
}

PRECOPY_API int precopy_engine_ack(struct precopy_engine *e)
{
	int r = enter(e, OP_RP, 0);

	if (r < 0)
		return r;
	r = precopy__eng_ack(e);
	return r < 0 ? fail(e, r) : 0;
}

PRECOPY_API int precopy_engine_switchover(struct precopy_engine *e)
{
	int r = enter(e, OP_SWITCHOVER, 1);

	if (r < 0)
		return r;
	r = precopy__eng_switchover(e);
	return r < 0 ? fail(e, r) : 0;
}

PRECOPY_API int precopy_engine_complete(struct precopy_engine *e)
{
	int r = enter(e, OP_COMPLETE, 0);

	return r < 0 ? r : precopy__eng_complete(e);
}
