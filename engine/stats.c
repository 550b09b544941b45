/* SPDX-License-Identifier: MIT */
/* Source engine status and statistics: per-device status, the engine's
 * counters, the last iteration and the downtime breakdown, as structs and
 * as JSON. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"
#include "../common/json.h"
#include "../common/util.h"

PRECOPY_API int precopy_engine_device_info(const struct precopy_engine *e, uint32_t index,
					   struct precopy_engine_dev_info *out)
{
	const struct edev *d;
	struct precopy_vfio_dev_status st = { .state = 0 };

	if (!e || !out)
		return -EINVAL;
	if (index >= e->ndev)
		return -ENOENT;
	d = &e->devs[index];
	if (d->vu)
		st.state = d->vu_state;
	else
		precopy_vfio_dev_status(d->vd, &st);
	memset(out, 0, sizeof(*out));
	out->id = d->cfg.id;
	out->state = st.state;
	out->mig_flags = d->mig_flags;
	out->tracking = d->tracking;
	out->err = d->err;
	out->recovered = d->recovered;
	out->was_reset = d->was_reset;
	out->initial_sent = d->initial_sent;
	out->stop_copy_known = d->sc_known;
	out->initial_bytes = d->init_left;
	out->dirty_bytes = d->dirty;
	out->stop_copy_bytes = d->stop_copy;
	out->bytes_sent = d->bytes_sent;
	out->transition_ns = d->trans_est;
	out->last_transition_ns = d->trans_last;
	out->reset_err = st.reset_err;
	out->stop_copy_guessed = d->sc_guess;
	out->precopy_bytes_sent = e->phase == PRECOPY_ENGINE_PRECOPY || e->phase == PRECOPY_ENGINE_IDLE
					  ? d->bytes_sent : d->precopy_sent;
	out->downtime_arcs = d->arcs;
	return 0;
}

PRECOPY_API int precopy_engine_stats(const struct precopy_engine *e, struct precopy_engine_stats *out)
{
	if (!e || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->phase = e->phase;
	out->ndevices = e->ndev;
	out->migrations = e->migrations;
	out->iterations = e->iterations;
	out->log_pages = e->log.nbits;
	out->dirty_now = e->dirty_count;
	out->last = e->last_iter;
	out->downtime = e->dt;
	out->error = e->err;
	out->page_size = e->ps;
	out->downtime_limit_ns = e->cfg.policy.downtime_limit_ns;
	out->blocked = e->last_blocked;
	out->stalled = e->stalled;
	out->stalled_since_ns = e->stalled_since_ns;
	if (!e->migrations)
		return 0;
	out->start_ns = e->start_ns;
	out->setup_ns = e->iterations && e->first_record_ns > e->start_ns ? e->first_record_ns - e->start_ns : 0;
	{
		uint64_t end = e->end_ns ? e->end_ns : e->cfg.clock.now_ns(e->cfg.clock.ctx);

		out->total_ns = end > e->start_ns ? end - e->start_ns : 0;
	}
	out->syncs = e->syncs;
	out->ram_bytes_sent = e->ram_sent;
	out->ram_total_bytes = sat_mul(e->log.nbits, e->ps);
	out->ram_remaining_bytes = sat_mul(e->dirty_count, e->ps);
	for (uint32_t i = 0; i < e->nchan; i++) /* VFIO, back-end and vfio-user channels */
		out->device_bytes_sent = sat_add(out->device_bytes_sent, *e->chans[i].bytes_sent);
	return 0;
}

static const char *status_name(const struct precopy_engine *e)
{
	switch (e->phase) {
	case PRECOPY_ENGINE_PRECOPY:
		return "active";
	case PRECOPY_ENGINE_SWITCHED:
		return "device";
	case PRECOPY_ENGINE_DONE:
		return "completed";
	default:
		if (!e->migrations)
			return "none";
		return e->err == -ECANCELED || !e->err ? "cancelled" : "failed";
	}
}

/* snprintf that appends at *o, counting what it would need past len */
static void put(char *buf, size_t len, size_t *o, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(*o < len ? buf + *o : NULL, *o < len ? len - *o : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		*o += (size_t)n;
}

static const char *vfio_state_name(uint32_t s)
{
	static const char *const n[] = { "error", "stop", "running", "stop_copy", "resuming",
					 "running_p2p", "pre_copy", "pre_copy_p2p" };

	return s < sizeof(n) / sizeof(n[0]) ? n[s] : "unknown";
}

static const char *tracking_name(uint32_t t)
{
	switch (t) {
	case PRECOPY_TRACK_DMA_LOG: return "\"dma-log\"";
	case PRECOPY_TRACK_TRACKER: return "\"tracker\"";
	case PRECOPY_TRACK_ALL: return "\"all-dirty\"";
	default: return "null";
	}
}

/* ns as ms with 3 decimals, or null */
static const char *ms_or_null(char *b, size_t n, uint64_t ns, int null_if)
{
	if (null_if || ns == PRECOPY_UNBOUNDED)
		snprintf(b, n, "null");
	else
		snprintf(b, n, "%.3f", ns / 1e6);
	return b;
}

static void devices_json(const struct precopy_engine *e, char *buf, size_t len, size_t *o)
{
	put(buf, len, o, "\"devices\":[");
	for (uint32_t i = 0; i < e->ndev; i++) {
		const struct edev *d = &e->devs[i];
		struct precopy_engine_dev_info di;
		char name[PRECOPY__JSON_STR_MAX], sc[24], pend[24];

		precopy_engine_device_info(e, i, &di);
		precopy__json_str(name, sizeof(name), d->name[0] ? d->name : NULL);
		if (e->migrations && di.stop_copy_known)
			snprintf(sc, sizeof(sc), "%llu", (unsigned long long)di.stop_copy_bytes);
		else
			snprintf(sc, sizeof(sc), "null");
		if (d->pre_copy && e->phase == PRECOPY_ENGINE_PRECOPY)
			snprintf(pend, sizeof(pend), "%llu", (unsigned long long)sat_add(di.initial_bytes, di.dirty_bytes));
		else
			snprintf(pend, sizeof(pend), "0");
		put(buf, len, o,
		    "%s{\"id\":%u,\"name\":%s,\"kind\":\"%s\",\"state\":\"%s\",\"tracking\":%s,\"stop-copy\":%s,"
		    "\"stop-copy-guessed\":%s,\"pre-copy-pending\":%s,\"pre-copy-sent\":%llu,\"transferred\":%llu,"
		    "\"transitions\":%u,\"transition-time\":%.3f}",
		    i ? "," : "", di.id, name, d->vu ? "vfio-user" : "vfio", vfio_state_name(di.state),
		    tracking_name(di.tracking), sc, di.stop_copy_guessed ? "true" : "false", pend,
		    (unsigned long long)di.precopy_bytes_sent, (unsigned long long)di.bytes_sent, di.downtime_arcs,
		    di.transition_ns / 1e6);
	}
	put(buf, len, o, "],");
}

PRECOPY_API int precopy_engine_stats_json(const struct precopy_engine *e, char *buf, size_t len)
{
	struct precopy_engine_stats st;
	char dt[32], exp[32], since[32], blocked[160], err[PRECOPY__JSON_STR_MAX];
	double mbps;
	uint64_t rate_pages;
	size_t o = 0;

	if (!e || (!buf && len))
		return -EINVAL;
	precopy_engine_stats(e, &st);
	mbps = (double)e->last_bw * 8 / 1e6;
	rate_pages = e->ps ? e->last_dirty_rate / e->ps : 0;
	ms_or_null(dt, sizeof(dt), st.downtime.total_ns, e->phase != PRECOPY_ENGINE_DONE);
	ms_or_null(exp, sizeof(exp), e->last_expected, !e->have_decision);
	ms_or_null(since, sizeof(since), st.stalled_since_ns - st.start_ns,
		   !st.stalled || st.stalled_since_ns < st.start_ns);
	precopy_blocked_json(e->have_decision ? st.blocked : 0, blocked, sizeof(blocked));
	precopy__json_str(err, sizeof(err), e->err ? e->errmsg : NULL);
	if (len)
		buf[0] = 0;
	put(buf, len, &o,
	    "{\"schema-version\":%d,\"status\":\"%s\",\"total-time\":%.3f,\"setup-time\":%.3f,\"downtime\":%s,"
	    "\"expected-downtime\":%s,\"downtime-limit\":%.3f,\"ram\":{\"transferred\":%llu,\"remaining\":%llu,"
	    "\"total\":%llu,\"dirty-sync-count\":%llu,\"mbps\":%.3f,\"dirty-pages-rate\":%llu,\"page-size\":%llu},"
	    "\"cpu-throttle-percentage\":%u,\"iterations\":%llu,\"action\":",
	    PRECOPY_STATS_JSON_SCHEMA, status_name(e), st.total_ns / 1e6, st.setup_ns / 1e6, dt, exp,
	    st.downtime_limit_ns / 1e6, (unsigned long long)st.ram_bytes_sent,
	    (unsigned long long)st.ram_remaining_bytes, (unsigned long long)st.ram_total_bytes,
	    (unsigned long long)st.syncs, mbps, (unsigned long long)rate_pages, (unsigned long long)e->ps,
	    e->last_iter.throttle, (unsigned long long)e->iterations);
	if (e->have_decision)
		put(buf, len, &o, "\"%s\"", precopy_action_name(e->last_iter.action));
	else
		put(buf, len, &o, "null");
	put(buf, len, &o, ",\"blocked-reasons\":%s,\"stalled\":%s,\"stalled-since\":%s,\"device\":{\"transferred\":%llu},",
	    blocked, st.stalled ? "true" : "false", since, (unsigned long long)st.device_bytes_sent);
	devices_json(e, buf, len, &o);
	put(buf, len, &o, "\"error\":%s}", err);
	return o > INT32_MAX ? -EOVERFLOW : (int)o;
}

PRECOPY_API int precopy_engine_iter_json(const struct precopy_engine_iter_stats *s, char *buf, size_t len)
{
	char a[24], b[24], c[24], rho[32];

	if (!s)
		return -EINVAL;
	json_double(rho, sizeof(rho), s->rho);
	return snprintf(buf, len,
			"{\"iteration\":%llu,\"end_ns\":%llu,\"dirty_pages\":%llu,\"ram_bytes\":%llu,"
			"\"device_bytes\":%llu,\"bandwidth_Bps\":%llu,\"pending\":{\"ram\":%llu,"
			"\"device_precopy\":%llu,\"device_stop_copy\":%s},\"expected_downtime_ns\":%s,"
			"\"rho\":%s,\"predicted_time_ns\":%s,\"throttle\":%u,\"action\":\"%s\",\"exact\":%s}",
			(unsigned long long)s->iteration, (unsigned long long)s->end_ns,
			(unsigned long long)s->dirty_pages, (unsigned long long)s->ram_bytes,
			(unsigned long long)s->device_bytes, (unsigned long long)s->bandwidth_Bps,
			(unsigned long long)s->ram_pending, (unsigned long long)s->device_precopy,
			json_u64(a, sizeof(a), s->device_stop_copy), json_u64(b, sizeof(b), s->expected_downtime_ns), rho,
			json_u64(c, sizeof(c), s->predicted_time_ns), s->throttle, precopy_action_name(s->action),
			s->exact ? "true" : "false");
}

PRECOPY_API int precopy_engine_downtime_json(const struct precopy_engine_downtime *s, char *buf, size_t len)
{
	char a[24];

	if (!s)
		return -EINVAL;
	return snprintf(buf, len,
			"{\"total_ns\":%llu,\"final_ram_ns\":%llu,\"final_ram_pages\":%llu,"
			"\"device_drain_ns\":%llu,\"device_bytes\":%llu,\"transitions_ns\":%llu,"
			"\"fixed_ns\":%llu,\"expected_ns\":%s}",
			(unsigned long long)s->total_ns, (unsigned long long)s->final_ram_ns,
			(unsigned long long)s->final_ram_pages, (unsigned long long)s->device_drain_ns,
			(unsigned long long)s->device_bytes, (unsigned long long)s->transitions_ns,
			(unsigned long long)s->fixed_ns, json_u64(a, sizeof(a), s->expected_ns));
}
