/* SPDX-License-Identifier: MIT */
/* The VFIO migration FSM: exhaustive over every cur x target x flags, checked
 * against an independent model built from the uAPI's list of direct arcs
 * (breadth-first shortest paths), plus the combination paths the kernel
 * documents, table-driven. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"

#define NS PRECOPY_VFIO_NUM_STATES
enum {
	ERR = VFIO_DEVICE_STATE_ERROR,
	STOP = VFIO_DEVICE_STATE_STOP,
	RUN = VFIO_DEVICE_STATE_RUNNING,
	SC = VFIO_DEVICE_STATE_STOP_COPY,
	RES = VFIO_DEVICE_STATE_RESUMING,
	RP2P = VFIO_DEVICE_STATE_RUNNING_P2P,
	PRE = VFIO_DEVICE_STATE_PRE_COPY,
	PP2P = VFIO_DEVICE_STATE_PRE_COPY_P2P,
};
#define F_SC VFIO_MIGRATION_STOP_COPY
#define F_P2P VFIO_MIGRATION_P2P
#define F_PRE VFIO_MIGRATION_PRE_COPY

/* The direct arcs as the uAPI comment lists them. */
static const struct { uint32_t from, to; } direct[] = {
	{ RP2P, STOP }, { SC, STOP },	 { RES, STOP },	 { PRE, RUN },	 { RP2P, RUN },
	{ PP2P, RP2P }, { RUN, RP2P },	 { STOP, RP2P }, { RUN, PRE },	 { RP2P, PP2P },
	{ STOP, SC },	{ PRE, PP2P },	 { PP2P, PRE },	 { PP2P, SC },	 { STOP, RES },
};

static int is_direct(uint32_t a, uint32_t b)
{
	for (size_t i = 0; i < sizeof(direct) / sizeof(direct[0]); i++)
		if (direct[i].from == a && direct[i].to == b)
			return 1;
	return 0;
}

/* Independent statement of which states a flag set allows. */
static int model_supported(uint32_t s, uint64_t f)
{
	if (!(f & F_SC))
		return 0;
	switch (s) {
	case STOP: case RUN: case SC: case RES: return 1;
	case RP2P: return !!(f & F_P2P);
	case PRE: return !!(f & F_PRE);
	case PP2P: return (f & F_P2P) && (f & F_PRE);
	default: return 0;
	}
}

static int is_saving(uint32_t s)
{
	return s == PRE || s == PP2P || s == SC;
}

/* The path rule: a saving-group state (PRE_COPY, PRE_COPY_P2P, STOP_COPY)
 * may be passed through only while the path has stayed inside the saving
 * group since its start (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY is fine;
 * RUNNING -> PRE_COPY -> ... -> STOP_COPY is not). */
static int may_pass(uint32_t s, int in_group_prefix)
{
	return !is_saving(s) || in_group_prefix;
}

/* Fewest direct arcs from a to b where every interior state is unsupported
 * by f (the driver skips them: a -> b is then one arc it sees) and obeys the
 * path rule; -1 if there is no such chain. */
static int chain_len(uint32_t a, uint32_t b, uint64_t f)
{
	int dist[NS];
	uint32_t q[NS];
	int qh = 0, qt = 0;

	if (!model_supported(a, f) || !model_supported(b, f) || a == b)
		return -1;
	for (int i = 0; i < NS; i++)
		dist[i] = -1;
	dist[a] = 0;
	q[qt++] = a;
	while (qh < qt) {
		uint32_t s = q[qh++];
		for (uint32_t t = 0; t < NS; t++) {
			if (!is_direct(s, t) || dist[t] >= 0)
				continue;
			if (t == b)
				return dist[s] + 1;
			if (!model_supported(t, f) && may_pass(t, is_saving(a) && is_saving(t))) {
				dist[t] = dist[s] + 1;
				q[qt++] = t;
			}
		}
	}
	return -1;
}

static int model_arc(uint32_t a, uint32_t b, uint64_t f)
{
	return chain_len(a, b, f) > 0;
}

/* The shortest path over the direct arcs of a device with every optional
 * state, under the path rule and the two blocked requests; -1 if the
 * request is invalid for flags f. A device with fewer states walks the same
 * path with its unsupported states skipped. */
static int model_distance(uint32_t a, uint32_t b, uint64_t f)
{
	int dist[NS][2];
	uint32_t qs[2 * NS];
	int qp[2 * NS], qh = 0, qt = 0;

	if (!model_supported(a, f) || !model_supported(b, f))
		return -1;
	if (a == SC && (b == PRE || b == PP2P))
		return -1;
	for (int i = 0; i < NS; i++)
		dist[i][0] = dist[i][1] = -1;
	dist[a][is_saving(a)] = 0;
	qs[qt] = a, qp[qt++] = is_saving(a);
	while (qh < qt) { /* BFS on (state, still-in-saving-group-prefix) */
		uint32_t s = qs[qh];
		int p = qp[qh++];
		if (s == b)
			return dist[s][p];
		if (s != a && !may_pass(s, p))
			continue; /* may end here, never pass through */
		for (uint32_t t = 0; t < NS; t++) {
			int np = p && is_saving(t);
			if (!is_direct(s, t) || dist[t][np] >= 0)
				continue;
			dist[t][np] = dist[s][p] + 1;
			qs[qt] = t, qp[qt++] = np;
		}
	}
	return -1;
}

/* Every flag combination of the three defined bits, plus junk bits. */
static const uint64_t flag_sets[] = {
	0, F_SC, F_P2P, F_PRE, F_SC | F_P2P, F_SC | F_PRE, F_P2P | F_PRE, F_SC | F_P2P | F_PRE,
	F_SC | (1u << 7), F_SC | F_P2P | F_PRE | (UINT64_C(1) << 40),
};

Test(vfio_fsm, exhaustive_against_model)
{
	int max_len_full = 0, checked = 0;

	for (size_t fi = 0; fi < sizeof(flag_sets) / sizeof(flag_sets[0]); fi++) {
		uint64_t f = flag_sets[fi];
		for (uint32_t cur = 0; cur <= NS + 1; cur++) {
			for (uint32_t tgt = 0; tgt <= NS + 1; tgt++) {
				uint32_t path[NS], next = 0xdead;
				int want = (cur < NS && tgt < NS) ? model_distance(cur, tgt, f) : -1;
				int n = precopy_vfio_fsm_path(cur, tgt, f, path, NS);
				int rn = precopy_vfio_fsm_next(cur, tgt, f, &next);

				checked++;
				if (want < 0) {
					cr_expect_eq(n, -EINVAL, "flags %#lx %u->%u: got %d want -EINVAL",
						     (unsigned long)f, cur, tgt, n);
					cr_expect_eq(rn, -EINVAL, "next flags %#lx %u->%u", (unsigned long)f, cur, tgt);
					continue;
				}
				cr_assert_geq(n, 0, "flags %#lx %s->%s: %d", (unsigned long)f,
					      precopy_vfio_state_name(cur), precopy_vfio_state_name(tgt), n);
				cr_assert_leq(n, want);
				cr_assert_eq(rn, 0);
				cr_assert_eq(next, n ? path[0] : cur);
				uint32_t s = cur;
				int underlying = 0, prefix = is_saving(cur);
				for (int i = 0; i < n; i++) {
					underlying += chain_len(s, path[i], f);
					cr_assert(model_supported(path[i], f), "visits unsupported %u", path[i]);
					cr_assert(model_arc(s, path[i], f), "flags %#lx: %s->%s is not an arc",
						  (unsigned long)f, precopy_vfio_state_name(s),
						  precopy_vfio_state_name(path[i]));
					prefix = prefix && is_saving(path[i]);
					if (i < n - 1)
						cr_assert(may_pass(path[i], prefix), "saving state in the interior");
					s = path[i];
				}
				cr_assert_eq(s, tgt);
				cr_assert_eq(underlying, want, "flags %#lx %s->%s: walks %d arcs, shortest is %d",
					     (unsigned long)f, precopy_vfio_state_name(cur),
					     precopy_vfio_state_name(tgt), underlying, want);
				cr_assert_leq(n, 4);
				if ((f & 7) == 7 && n > max_len_full)
					max_len_full = n;
			}
		}
	}
	cr_expect_eq(max_len_full, 4); /* RESUMING <-> PRE_COPY is the longest */
	cr_expect_eq(checked, 10 * 10 * 10);
}

/* The combination paths the kernel documents for a device with every
 * optional state, and some without the optional states. */
static const struct path_case {
	uint64_t flags;
	uint32_t cur, tgt;
	int n;
	uint32_t path[4];
} cases[] = {
	{ 7, PRE, SC, 2, { PP2P, SC } },
	{ 7, PRE, RP2P, 2, { RUN, RP2P } },
	{ 7, PRE, STOP, 3, { RUN, RP2P, STOP } },
	{ 7, PRE, RES, 4, { RUN, RP2P, STOP, RES } },
	{ 7, PP2P, RUN, 2, { RP2P, RUN } },
	{ 7, PP2P, STOP, 2, { RP2P, STOP } },
	{ 7, PP2P, RES, 3, { RP2P, STOP, RES } },
	{ 7, RES, RP2P, 2, { STOP, RP2P } },
	{ 7, RES, PP2P, 3, { STOP, RP2P, PP2P } },
	{ 7, RES, RUN, 3, { STOP, RP2P, RUN } },
	{ 7, RES, PRE, 4, { STOP, RP2P, RUN, PRE } },
	{ 7, RES, SC, 2, { STOP, SC } },
	{ 7, RUN, PP2P, 2, { RP2P, PP2P } },
	{ 7, RUN, STOP, 2, { RP2P, STOP } },
	{ 7, RUN, RES, 3, { RP2P, STOP, RES } },
	{ 7, RUN, SC, 3, { RP2P, STOP, SC } },
	{ 7, RP2P, PRE, 2, { RUN, PRE } },
	{ 7, RP2P, RES, 2, { STOP, RES } },
	{ 7, RP2P, SC, 2, { STOP, SC } },
	{ 7, STOP, PP2P, 2, { RP2P, PP2P } },
	{ 7, STOP, RUN, 2, { RP2P, RUN } },
	{ 7, STOP, PRE, 3, { RP2P, RUN, PRE } },
	{ 7, SC, RES, 2, { STOP, RES } },
	{ 7, SC, RP2P, 2, { STOP, RP2P } },
	{ 7, SC, RUN, 3, { STOP, RP2P, RUN } },
	{ 7, SC, PRE, -EINVAL, { 0 } },
	{ 7, SC, PP2P, -EINVAL, { 0 } },
	{ 7, RUN, RUN, 0, { 0 } },
	/* without P2P the driver sees RUNNING <-> STOP directly */
	{ F_SC, RUN, STOP, 1, { STOP } },
	{ F_SC, STOP, RUN, 1, { RUN } },
	{ F_SC, RUN, SC, 2, { STOP, SC } },
	{ F_SC, RES, RUN, 2, { STOP, RUN } },
	{ F_SC, RUN, RP2P, -EINVAL, { 0 } },
	{ F_SC, RUN, PRE, -EINVAL, { 0 } },
	{ F_SC | F_PRE, PRE, SC, 1, { SC } },
	{ F_SC | F_PRE, PRE, STOP, 2, { RUN, STOP } },
	{ F_SC | F_PRE, STOP, PRE, 2, { RUN, PRE } },
	{ F_SC | F_PRE, RUN, PP2P, -EINVAL, { 0 } },
	{ F_SC | F_PRE, SC, PRE, -EINVAL, { 0 } },
	{ F_SC | F_P2P, RUN, PP2P, -EINVAL, { 0 } },
	{ F_SC | F_P2P, RUN, SC, 3, { RP2P, STOP, SC } },
	/* ERROR can never be requested nor left by the FSM */
	{ 7, RUN, ERR, -EINVAL, { 0 } },
	{ 7, ERR, RUN, -EINVAL, { 0 } },
	{ 7, ERR, ERR, -EINVAL, { 0 } },
	{ 0, RUN, STOP, -EINVAL, { 0 } },
	{ F_P2P | F_PRE, RUN, STOP, -EINVAL, { 0 } },
	{ 7, RUN, 8, -EINVAL, { 0 } },
	{ 7, 99, RUN, -EINVAL, { 0 } },
};

Test(vfio_fsm, documented_paths)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct path_case *c = &cases[i];
		uint32_t path[8];
		int n = precopy_vfio_fsm_path(c->cur, c->tgt, c->flags, path, 8);

		cr_assert_eq(n, c->n, "case %zu %s->%s: %d, want %d", i, precopy_vfio_state_name(c->cur),
			     precopy_vfio_state_name(c->tgt), n, c->n);
		for (int k = 0; k < n; k++)
			cr_assert_eq(path[k], c->path[k], "case %zu arc %d: %s, want %s", i, k,
				     precopy_vfio_state_name(path[k]), precopy_vfio_state_name(c->path[k]));
	}
}

Test(vfio_fsm, path_buffer_rules)
{
	uint32_t path[4];

	memset(path, 0xff, sizeof(path));
	cr_expect_eq(precopy_vfio_fsm_path(RES, PRE, 7, path, 3), -ENOSPC);
	cr_expect_eq(path[3], 0xffffffffu, "wrote beyond max");
	cr_expect_eq(precopy_vfio_fsm_path(RES, PRE, 7, NULL, 0), 4);
	cr_expect_eq(precopy_vfio_fsm_path(RES, PRE, 7, NULL, 2), -EINVAL);
	cr_expect_eq(precopy_vfio_fsm_path(RUN, RUN, 7, path, 0), 0);
	cr_expect_eq(precopy_vfio_fsm_next(RUN, STOP, 7, NULL), -EINVAL);
}

Test(vfio_fsm, session_arcs)
{
	int opens = 0, closes = 0;

	for (uint32_t a = 0; a < NS; a++)
		for (uint32_t b = 0; b < NS; b++) {
			int o = precopy_vfio_arc_opens_fd(a, b), c = precopy_vfio_arc_closes_fd(a, b);
			int want_o = (a == RUN && b == PRE) || (a == RP2P && b == PP2P) ||
				     (a == STOP && b == SC) || (a == STOP && b == RES);
			cr_expect_eq(o, want_o, "%u->%u opens", a, b);
			opens += o;
			if (is_direct(a, b)) {
				int want_c = (a == PRE && b == RUN) || (a == PP2P && b == RP2P) ||
					     (a == SC && b == STOP) || (a == RES && b == STOP);
				cr_expect_eq(c, want_c, "%u->%u closes", a, b);
				closes += c;
			}
		}
	cr_expect_eq(opens, 4);
	cr_expect_eq(closes, 4);
	/* moving inside the saving group keeps the session */
	cr_expect_eq(precopy_vfio_arc_closes_fd(PRE, PP2P), 0);
	cr_expect_eq(precopy_vfio_arc_closes_fd(PP2P, SC), 0);
}

Test(vfio_fsm, names)
{
	cr_expect_str_eq(precopy_vfio_state_name(PP2P), "PRE_COPY_P2P");
	cr_expect_str_eq(precopy_vfio_state_name(ERR), "ERROR");
	cr_expect_str_eq(precopy_vfio_state_name(8), "?");
}
