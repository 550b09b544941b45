/* SPDX-License-Identifier: MIT */
/* The source engine's leaf helpers: which calls each phase accepts, the
 * clock, the error message, the interrupt check and one device's state
 * transition measured into its estimate. They call nothing else of
 * engine/, so every file of the engine may call them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"
#include "../ioctl/uapi_compat.h"
#include "../vfio_user/vu_priv.h"

/* Which calls each phase accepts. Arcs:
 *   IDLE     --start-->      PRECOPY
 *   DONE     --start-->      PRECOPY
 *   PRECOPY  --switchover--> SWITCHED
 *   SWITCHED --complete-->   DONE
 *   PRECOPY, SWITCHED --cancel / failure--> IDLE */
static const uint32_t allowed[] = {
	[PRECOPY_ENGINE_IDLE] = OP_START,
	[PRECOPY_ENGINE_PRECOPY] = OP_SYNC | OP_PAGES | OP_PUMP | OP_ACCOUNT | OP_DECIDE | OP_RP | OP_SWITCHOVER,
	[PRECOPY_ENGINE_SWITCHED] = OP_PAGES | OP_ACCOUNT | OP_COMPLETE,
	[PRECOPY_ENGINE_DONE] = OP_START,
};

int precopy__eng_allowed(const struct precopy_engine *e, uint32_t op)
{
	return (allowed[e->phase] & op) != 0;
}

uint64_t precopy__eng_now(const struct precopy_engine *e)
{
	return e->cfg.clock.now_ns(e->cfg.clock.ctx);
}

void precopy__eng_seterr(struct precopy_engine *e, int err, const char *fmt, ...)
{
	va_list ap;

	size_t off = 0;

	if (e->err)
		return; /* the first failure is the one to report */
	e->err = err;
	/* a wait that ended because of precopy_engine_interrupt() says so first */
	if (err == -ECANCELED && __atomic_load_n(&e->interrupted, __ATOMIC_ACQUIRE) &&
	    strncmp(fmt, "interrupted", 11) != 0)
		off = (size_t)snprintf(e->errmsg, sizeof(e->errmsg), "interrupted by precopy_engine_interrupt(): ");
	va_start(ap, fmt);
	vsnprintf(e->errmsg + off, sizeof(e->errmsg) - off, fmt, ap);
	va_end(ap);
	precopy__eng_log(e, PRECOPY_LOG_ERROR, "%s", e->errmsg);
}

void precopy__eng_adderr(struct precopy_engine *e, int err, const char *fmt, ...)
{
	size_t len = strlen(e->errmsg);
	va_list ap;

	if (!e->err) {
		e->err = err;
		len = 0;
	} else if (len + 2 < sizeof(e->errmsg)) {
		memcpy(e->errmsg + len, "; ", 3);
		len += 2;
	} else {
		return; /* no room left */
	}
	va_start(ap, fmt);
	vsnprintf(e->errmsg + len, sizeof(e->errmsg) - len, fmt, ap);
	va_end(ap);
}

uint32_t precopy__eng_dev_state(const struct edev *d)
{
	struct precopy_vfio_dev_status st;

	if (d->vu)
		return d->vu_state;
	if (precopy_vfio_dev_status(d->vd, &st) < 0)
		return VFIO_DEVICE_STATE_ERROR;
	return st.state;
}

/* A vfio-user device: one arc at a time through the client. */
static int vu_move(struct precopy_engine *e, struct edev *d, uint32_t target, uint32_t recover)
{
	uint32_t before = d->vu_state;
	unsigned arcs = 0;
	uint64_t t0, dt;
	int recovered = 0, r;

	d->trans_last = 0;
	if (before == target)
		return 0;
	t0 = precopy__eng_now(e);
	r = precopy__vu_move(d->vu, &d->vu_state, target, d->mig_flags, recover, &arcs, &recovered);
	dt = precopy__eng_now(e) - t0;
	if (r < 0) {
		d->err = r;
		d->recovered = recovered;
		/* the client's message names the request and the server's answer */
		precopy__eng_seterr(e, r, DEV_FMT ": %s -> %s: %s (%s)%s", DEV_ARGS(d), precopy_vfio_state_name(before),
				    precopy_vfio_state_name(target), strerror(-r), precopy_vfio_user_error(d->vu),
				    recovered ? "; back in its former state" : "");
		return r;
	}
	d->trans_last = dt;
	precopy__eng_log(e, PRECOPY_LOG_DEBUG, DEV_FMT ": %s -> %s in %.3f ms (vfio-user)", DEV_ARGS(d),
			 precopy_vfio_state_name(before), precopy_vfio_state_name(target), dt / 1e6);
	if (arcs) {
		uint64_t per_arc = dt / arcs;
		d->trans_est = d->trans_est ? d->trans_est / 2 + per_arc / 2 : per_arc;
	}
	return 0;
}

int precopy__eng_dev_move(struct precopy_engine *e, struct edev *d, uint32_t target, uint32_t recover)
{
	struct precopy_vfio_dev_status before, after;
	uint64_t t0, dt;
	int r;

	if (d->vu)
		return vu_move(e, d, target, recover);
	d->trans_last = 0;
	precopy_vfio_dev_status(d->vd, &before);
	if (before.state == target)
		return 0;
	t0 = precopy__eng_now(e);
	r = precopy_vfio_dev_set_state(d->vd, target, recover);
	dt = precopy__eng_now(e) - t0;
	precopy_vfio_dev_status(d->vd, &after);
	if (r < 0) {
		d->err = r;
		d->recovered = after.recovered;
		d->was_reset = after.was_reset;
		return r;
	}
	d->trans_last = dt;
	precopy__eng_log(e, PRECOPY_LOG_DEBUG, DEV_FMT ": %s -> %s in %.3f ms", DEV_ARGS(d),
			 precopy_vfio_state_name(before.state), precopy_vfio_state_name(target), dt / 1e6);
	if (after.arcs > before.arcs) {
		uint64_t per_arc = dt / (after.arcs - before.arcs);
		/* even weight to the history and the new measurement */
		d->trans_est = d->trans_est ? d->trans_est / 2 + per_arc / 2 : per_arc;
	}
	return 0;
}

int precopy__eng_interrupted(struct precopy_engine *e)
{
	if (!__atomic_load_n(&e->interrupted, __ATOMIC_ACQUIRE))
		return 0;
	precopy__eng_seterr(e, -ECANCELED, "interrupted by precopy_engine_interrupt(): migration cancelled");
	return -ECANCELED;
}

