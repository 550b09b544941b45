/* SPDX-License-Identifier: MIT */
/* The source engine's side of the stream: its record buffers, the bounded
 * waits under the engine's I/O bound, and every write of the stream
 * (the fd through the one bounded writer, or the embedder's sink). Calls
 * only engine/core.c and engine/io_bound.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

int precopy__eng_stream_open(struct precopy_engine *e)
{
	e->rec_cap = PRECOPY_STREAM_REC_HDR_SIZE + PRECOPY_STREAM_SETUP_FIXED + PRECOPY_STREAM_NAME_MAX +
		     e->cfg.max_chunk;
	e->rec = malloc(e->rec_cap);
	e->payload = malloc(e->cfg.max_chunk);
	return e->rec && e->payload ? 0 : -ENOMEM;
}

void precopy__eng_stream_close(struct precopy_engine *e)
{
	free(e->rec);
	free(e->payload);
	e->rec = e->payload = NULL;
}

struct precopy__io_bound precopy__eng_io_bound(const struct precopy_engine *e)
{
	return (struct precopy__io_bound){ .sys = e->cfg.sys, .clock = e->cfg.clock, .interrupt = &e->interrupted,
					   .timeout_ns = e->cfg.io_timeout_ns, .poll_ms = e->cfg.poll_interval_ms };
}

int precopy__eng_wait_fd(struct precopy_engine *e, int fd, short events, struct precopy__io_wait *w)
{
	struct precopy__io_bound b = precopy__eng_io_bound(e);

	return precopy__io_wait_fd(&b, fd, events, w);
}

/* Write all of buf to the stream. */
int precopy__eng_emit(struct precopy_engine *e, const void *buf, size_t len)
{
	struct precopy__io_bound b = precopy__eng_io_bound(e);
	struct precopy__io_fd f = { .sys = e->cfg.sys, .fd = e->cfg.stream_fd, .kind = e->stream_kind };
	struct precopy__io_result res;
	int r;

	if (e->cfg.sink) {
		r = e->cfg.sink(e->cfg.sink_ctx, buf, len);
		if (r < 0)
			precopy__eng_seterr(e, r, "stream: sink: %s", strerror(-r));
		return r < 0 ? r : 0;
	}
	r = precopy__io_write_fd(&b, &f, buf, len, &res);
	e->stream_kind = f.kind;
	if (r == -ETIMEDOUT)
		precopy__eng_seterr(e, r, "stream: write: the stream took no byte within the I/O timeout");
	else if (r < 0)
		precopy__eng_seterr(e, r, "stream: %s: %s", res.in_poll ? "poll" : "write", strerror(-r));
	return r;
}

