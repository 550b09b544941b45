/* SPDX-License-Identifier: MIT */
/* The VFIO migration state machine as data: which state follows `cur` on
 * the way to `target`, for a device with a given set of migration flags.
 * The decisions match the kernel's vfio_mig_get_next_state() (they are part
 * of the uAPI: a driver steps through exactly these arcs), except that a
 * blocked request returns -EINVAL instead of spinning. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "precopy/vfio.h"
#include "uapi_compat.h"

/* Short local names for enum vfio_device_mig_state. */
enum {
	ERR = VFIO_DEVICE_STATE_ERROR,
	STOP = VFIO_DEVICE_STATE_STOP,
	RUN = VFIO_DEVICE_STATE_RUNNING,
	STOPCOPY = VFIO_DEVICE_STATE_STOP_COPY,
	RESUME = VFIO_DEVICE_STATE_RESUMING,
	RUNP2P = VFIO_DEVICE_STATE_RUNNING_P2P,
	PRE = VFIO_DEVICE_STATE_PRE_COPY,
	PREP2P = VFIO_DEVICE_STATE_PRE_COPY_P2P,
	NSTATES = PRECOPY_VFIO_NUM_STATES,
};

/*
 * The direct arcs a driver implements (uAPI comment above
 * enum vfio_device_mig_state):
 *
 *   RUNNING_P2P  -> STOP            STOP      -> RUNNING_P2P
 *   STOP_COPY    -> STOP            RUNNING   -> PRE_COPY      (opens data_fd)
 *   RESUMING     -> STOP  (ends)    RUNNING_P2P -> PRE_COPY_P2P (opens data_fd)
 *   PRE_COPY     -> RUNNING (ends)  STOP      -> STOP_COPY     (opens data_fd)
 *   RUNNING_P2P  -> RUNNING         PRE_COPY  -> PRE_COPY_P2P
 *   PRE_COPY_P2P -> RUNNING_P2P (ends)
 *   RUNNING      -> RUNNING_P2P     PRE_COPY_P2P -> PRE_COPY
 *   PRE_COPY_P2P -> STOP_COPY       STOP      -> RESUMING      (opens data_fd)
 *
 * Not permitted: STOP_COPY -> PRE_COPY, STOP_COPY -> PRE_COPY_P2P (ERR in
 * the table), and ERROR is never a target or a source.
 *
 * Any other request is a combination of these arcs: the shortest path that
 * has no saving-group state (PRE_COPY, PRE_COPY_P2P, STOP_COPY) in its
 * interior. next_step[cur][target] is the first arc of that path when every
 * optional state is supported; unsupported ones are skipped afterwards (see
 * precopy_vfio_fsm_next()). For example RESUMING -> PRE_COPY walks
 * RESUMING, STOP, RUNNING_P2P, RUNNING, PRE_COPY.
 */
static const uint8_t next_step[NSTATES][NSTATES] = {
	[STOP] = {
		[STOP] = STOP, [RUN] = RUNP2P, [STOPCOPY] = STOPCOPY, [RESUME] = RESUME,
		[RUNP2P] = RUNP2P, [PRE] = RUNP2P, [PREP2P] = RUNP2P, [ERR] = ERR,
	},
	[RUN] = {
		[STOP] = RUNP2P, [RUN] = RUN, [STOPCOPY] = RUNP2P, [RESUME] = RUNP2P,
		[RUNP2P] = RUNP2P, [PRE] = PRE, [PREP2P] = RUNP2P, [ERR] = ERR,
	},
	[STOPCOPY] = {
		[STOP] = STOP, [RUN] = STOP, [STOPCOPY] = STOPCOPY, [RESUME] = STOP,
		[RUNP2P] = STOP, [PRE] = ERR, [PREP2P] = ERR, [ERR] = ERR,
	},
	[RESUME] = {
		[STOP] = STOP, [RUN] = STOP, [STOPCOPY] = STOP, [RESUME] = RESUME,
		[RUNP2P] = STOP, [PRE] = STOP, [PREP2P] = STOP, [ERR] = ERR,
	},
	[RUNP2P] = {
		[STOP] = STOP, [RUN] = RUN, [STOPCOPY] = STOP, [RESUME] = STOP,
		[RUNP2P] = RUNP2P, [PRE] = RUN, [PREP2P] = PREP2P, [ERR] = ERR,
	},
	[PRE] = {
		[STOP] = RUN, [RUN] = RUN, [STOPCOPY] = PREP2P, [RESUME] = RUN,
		[RUNP2P] = RUN, [PRE] = PRE, [PREP2P] = PREP2P, [ERR] = ERR,
	},
	[PREP2P] = {
		[STOP] = RUNP2P, [RUN] = RUNP2P, [STOPCOPY] = STOPCOPY, [RESUME] = RUNP2P,
		[RUNP2P] = RUNP2P, [PRE] = PRE, [PREP2P] = PREP2P, [ERR] = ERR,
	},
	[ERR] = {
		[STOP] = ERR, [RUN] = ERR, [STOPCOPY] = ERR, [RESUME] = ERR,
		[RUNP2P] = ERR, [PRE] = ERR, [PREP2P] = ERR, [ERR] = ERR,
	},
};

/* The migration flags a state needs. ERROR can never be requested, so it
 * needs a flag no device has. */
#define NEVER (UINT64_C(1) << 63)
static const uint64_t needs[NSTATES] = {
	[ERR] = NEVER,
	[STOP] = VFIO_MIGRATION_STOP_COPY,
	[RUN] = VFIO_MIGRATION_STOP_COPY,
	[STOPCOPY] = VFIO_MIGRATION_STOP_COPY,
	[RESUME] = VFIO_MIGRATION_STOP_COPY,
	[RUNP2P] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
	[PRE] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
	[PREP2P] = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
};

static int supported(uint32_t s, uint64_t flags)
{
	return s < NSTATES && (needs[s] & flags) == needs[s];
}

PRECOPY_API int precopy_vfio_fsm_next(uint32_t cur, uint32_t target, uint64_t mig_flags,
				      uint32_t *next)
{
	uint32_t n;
	int hops;

	if (!next || !supported(cur, mig_flags) || !supported(target, mig_flags))
		return -EINVAL;
	/* Adjustment for optional states the device lacks: a driver never sees
	 * them; it gets the arc to the next supported state on the same path.
	 * ERR is terminal (the kernel's walker spins on it for PRE_COPY devices;
	 * here it ends the walk). Each hop moves along a shortest path, so
	 * NSTATES hops bound the walk. */
	n = next_step[cur][target];
	for (hops = 0; n != ERR && !supported(n, mig_flags); hops++) {
		if (hops >= NSTATES)
			return -EINVAL;
		n = next_step[n][target];
	}
	if (n == ERR)
		return -EINVAL;
	*next = n;
	return 0;
}

PRECOPY_API int precopy_vfio_fsm_path(uint32_t cur, uint32_t target, uint64_t mig_flags,
				      uint32_t *path, size_t max)
{
	uint32_t s = cur, n;
	int arcs = 0, r;

	if (!path && max)
		return -EINVAL;
	if (!supported(cur, mig_flags) || !supported(target, mig_flags))
		return -EINVAL;
	while (s != target) {
		r = precopy_vfio_fsm_next(s, target, mig_flags, &n);
		if (r < 0)
			return r;
		if (arcs >= NSTATES) /* impossible with the table above; never spin */
			return -EINVAL;
		if (path) {
			if ((size_t)arcs >= max)
				return -ENOSPC;
			path[arcs] = n;
		}
		arcs++;
		s = n;
	}
	return arcs;
}

static int saving(uint32_t s)
{
	return s == PRE || s == PREP2P || s == STOPCOPY;
}

PRECOPY_API int precopy_vfio_arc_opens_fd(uint32_t cur, uint32_t next)
{
	return (cur == RUN && next == PRE) || (cur == RUNP2P && next == PREP2P) ||
	       (cur == STOP && next == STOPCOPY) || (cur == STOP && next == RESUME);
}

PRECOPY_API int precopy_vfio_arc_closes_fd(uint32_t cur, uint32_t next)
{
	if (next >= NSTATES || cur >= NSTATES || cur == next)
		return 0;
	return (saving(cur) && !saving(next)) || cur == RESUME;
}

PRECOPY_API const char *precopy_vfio_state_name(uint32_t state)
{
	static const char *const names[NSTATES] = {
		[ERR] = "ERROR",	  [STOP] = "STOP",     [RUN] = "RUNNING",
		[STOPCOPY] = "STOP_COPY", [RESUME] = "RESUMING", [RUNP2P] = "RUNNING_P2P",
		[PRE] = "PRE_COPY",	  [PREP2P] = "PRE_COPY_P2P",
	};
	return state < NSTATES ? names[state] : "?";
}
