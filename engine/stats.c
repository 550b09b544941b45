/* SPDX-License-Identifier: MIT */
/* Source engine status and statistics: per-device status, the engine's
 * counters, the last iteration and the downtime breakdown, as structs and
 * as JSON. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"
#include "../common/json.h"

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
	return 0;
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
