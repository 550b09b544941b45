/* SPDX-License-Identifier: MIT */
/* The VMM's role around the engines over the fake kernel: device pairs,
 * the migration loop's steps, the switchover and the destination's
 * resume (harness/vmm_role.h). */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm_role.h"

#define RUNS 512

static int fail(struct vmm_role *r, const char *step, int err)
{
	r->step = step;
	return err;
}

int vmm_role_init(struct vmm_role *r, const struct vmm_role_world *w, uint64_t page_size,
		  const struct precopy_fake_clock *sclk, const struct precopy_fake_clock *dclk)
{
	int err;

	memset(r, 0, sizeof(*r));
	if (!w || !w->now || !page_size)
		return fail(r, "world", -EINVAL);
	r->w = *w;
	r->page_size = page_size;
	r->sfk = precopy_fake_kernel_new(sclk, &err);
	if (!r->sfk)
		return fail(r, "source fake kernel", err);
	r->dfk = precopy_fake_kernel_new(dclk, &err);
	if (!r->dfk) {
		precopy_fake_kernel_free(r->sfk);
		r->sfk = NULL;
		return fail(r, "destination fake kernel", err);
	}
	return 0;
}

int vmm_role_add_device(struct vmm_role *r, const struct precopy_fake_vfio_cfg *src,
			const struct precopy_fake_vfio_cfg *dst, uint32_t id, const char *name,
			uint64_t transition_ns)
{
	uint32_t i = r->ndev;

	if (i >= VMM_ROLE_MAX_DEVICES)
		return fail(r, "source device", -ENOSPC);
	r->sfd[i] = precopy_fake_vfio_new(r->sfk, src, &r->sdev[i]);
	if (r->sfd[i] < 0)
		return fail(r, "source device", r->sfd[i]);
	r->dfd[i] = precopy_fake_vfio_new(r->dfk, dst, &r->ddev[i]);
	if (r->dfd[i] < 0)
		return fail(r, "destination device", r->dfd[i]);
	r->edevs[i] = (struct precopy_engine_device){ .id = id, .device_fd = r->sfd[i], .name = name,
						      .transition_ns = transition_ns };
	r->ddevs[i] = (struct precopy_dest_device){ .id = id, .device_fd = r->dfd[i] };
	r->ndev++;
	return (int)i;
}

void vmm_role_engine_config(const struct vmm_role *r, struct precopy_clock clk, struct precopy_engine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->version = PRECOPY_ENGINE_CONFIG_VERSION;
	cfg->clock = clk;
	cfg->sys = precopy_fake_kernel_sys(r->sfk);
	cfg->ram_source = PRECOPY_RAM_BITMAP;
	cfg->kvm_vm_fd = -1;
	cfg->devices = r->edevs;
	cfg->ndevices = r->ndev;
	cfg->stream_fd = -1;
	cfg->rp_fd = -1;
	precopy_policy_defaults(&cfg->policy);
}

void vmm_role_dest_config(const struct vmm_role *r, struct precopy_clock clk, struct precopy_dest_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->version = PRECOPY_DEST_CONFIG_VERSION;
	cfg->clock = clk;
	cfg->sys = precopy_fake_kernel_sys(r->dfk);
	cfg->devices = r->ddevs;
	cfg->ndevices = r->ndev;
	cfg->stream_fd = -1;
	cfg->rp_fd = -1;
}

int vmm_role_start_dest(struct vmm_role *r)
{
	int e = precopy_dest_start(r->d);

	return e < 0 ? fail(r, "destination start", e) : 0;
}

int vmm_role_start_source(struct vmm_role *r)
{
	int e;

	r->pass_open = 0;
	e = precopy_engine_start(r->e);
	return e < 0 ? fail(r, "start", e) : 0;
}

int vmm_role_pass(struct vmm_role *r)
{
	int64_t n;

	if (r->pass_open)
		return 0;
	n = precopy_engine_sync(r->e);
	return n < 0 ? fail(r, "sync", (int)n) : 0;
}

int64_t vmm_role_take_pages(struct vmm_role *r, uint64_t max_pages, int *drained)
{
	struct precopy_ram_run runs[RUNS];
	uint64_t pages = 0;
	int64_t n;

	*drained = 0;
	while (!max_pages || pages < max_pages) {
		n = precopy_engine_next_pages(r->e, runs, RUNS, max_pages ? max_pages - pages : 0);
		if (n < 0)
			return fail(r, "next_pages", (int)n);
		if (n == 0) {
			*drained = 1;
			break;
		}
		for (int64_t i = 0; i < n; i++) {
			if (r->w.page_run)
				r->w.page_run(r->w.ctx, &runs[i]);
			pages += runs[i].pages;
		}
	}
	if (!*drained) { /* the window ended exactly at the last dirty page */
		struct precopy_engine_stats st;

		*drained = precopy_engine_stats(r->e, &st) == 0 && st.dirty_now == 0;
	}
	return (int64_t)pages;
}

int64_t vmm_role_window(struct vmm_role *r, uint64_t max_pages, int *drained, uint64_t *ns)
{
	int64_t pages = vmm_role_take_pages(r, max_pages, drained);
	uint64_t bytes, t;
	int e;

	if (pages < 0)
		return pages;
	bytes = (uint64_t)pages * r->page_size;
	t = r->w.now(r->w.ctx);
	if (r->w.send_pages)
		r->w.send_pages(r->w.ctx, bytes, 0);
	t = r->w.now(r->w.ctx) - t;
	if (ns)
		*ns = t;
	r->pass_open = !*drained;
	e = precopy_engine_account(r->e, bytes, t);
	if (e < 0)
		return fail(r, "account", e);
	return (int64_t)bytes;
}

int64_t vmm_role_pump(struct vmm_role *r, uint64_t budget)
{
	int64_t n = precopy_engine_pump(r->e, budget);

	return n < 0 ? fail(r, "pump", (int)n) : n;
}

/* A hook failed: it says why. */
static int hook_fail(struct vmm_role *r, int err)
{
	r->step = NULL;
	return err;
}

int vmm_role_iterate(struct vmm_role *r, const struct vmm_role_iter_ops *ops, struct precopy_decision *d,
		     struct vmm_role_iter *it)
{
	uint64_t ns, budget;
	int64_t w;
	int e, drained = 0;

	memset(it, 0, sizeof(*it));
	if ((e = vmm_role_pass(r)) < 0)
		return e;
	{
		struct precopy_engine_stats st;

		if (precopy_engine_stats(r->e, &st) == 0)
			it->iteration0 = st.last.iteration;
	}
	while (!drained) {
		w = vmm_role_window(r, ops->window_pages, &drained, &ns);
		if (w < 0)
			return (int)w;
		it->ram_bytes += (uint64_t)w;
		it->ram_ns += ns;
		if (drained || !ops->midpass)
			break;
		e = ops->midpass(ops->ctx, d, it);
		if (e < 0)
			return hook_fail(r, e);
		if (e > 0) {
			it->decided = 1;
			break;
		}
	}
	budget = ops->pump_budget ? ops->pump_budget(ops->ctx, d, it) : 0;
	if (budget) {
		it->dev_bytes = vmm_role_pump(r, budget);
		if (it->dev_bytes < 0)
			return (int)it->dev_bytes;
	}
	if (it->decided)
		return 0;
	if (ops->settle && (e = ops->settle(ops->ctx, it)) < 0)
		return hook_fail(r, e);
	if (ops->decide)
		return (e = ops->decide(ops->ctx, d, it)) < 0 ? hook_fail(r, e) : 0;
	e = precopy_engine_decide(r->e, d);
	return e < 0 ? fail(r, "decide", e) : 0;
}

int vmm_role_switchover(struct vmm_role *r, struct vmm_role_final *f)
{
	struct vmm_role_final tmp;
	uint64_t t;
	int64_t pages;
	int e, drained;

	if (!f)
		f = &tmp;
	memset(f, 0, sizeof(*f));
	t = r->w.now(r->w.ctx);
	e = precopy_engine_switchover(r->e);
	if (e < 0)
		return fail(r, "switchover", e);
	f->switchover_ns = r->w.now(r->w.ctx) - t;
	pages = vmm_role_take_pages(r, 0, &drained);
	if (pages < 0)
		return fail(r, "final pages", (int)pages);
	f->bytes = (uint64_t)pages * r->page_size;
	t = r->w.now(r->w.ctx);
	if (r->w.send_pages)
		r->w.send_pages(r->w.ctx, f->bytes, 1);
	f->pages_ns = r->w.now(r->w.ctx) - t;
	e = precopy_engine_account(r->e, f->bytes, f->pages_ns);
	return e < 0 ? fail(r, "account", e) : 0;
}

/* Bytes waiting on the destination's end of the stream. */
static int stream_pending(int fd)
{
	int n = 0;

	return ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

int vmm_role_dest_feed(struct vmm_role *r, int stream_fd, int until_end)
{
	int idle = 0;

	for (;;) {
		int64_t n;

		if (until_end && precopy_dest_ended(r->d) == 1)
			return 0;
		n = precopy_dest_poll(r->d, until_end ? 10 : 0);
		if (n > 0) {
			idle = 0;
			continue;
		}
		if (n == 0)
			return 0;
		if (n != -EAGAIN)
			return fail(r, "destination", (int)n);
		if (!until_end && !stream_pending(stream_fd))
			return 0;
		if (++idle >= 1000)
			return until_end ? fail(r, "destination", -ETIMEDOUT) : 0;
	}
}

int vmm_role_resume(struct vmm_role *r)
{
	int e;

	if (precopy_dest_ended(r->d) != 1)
		return fail(r, "destination", -EPROTO);
	e = precopy_dest_complete(r->d);
	return e < 0 ? fail(r, "destination complete", e) : 0;
}

int vmm_role_complete(struct vmm_role *r)
{
	int e = precopy_engine_complete(r->e);

	return e < 0 ? fail(r, "complete", e) : 0;
}

void vmm_role_cancel(struct vmm_role *r)
{
	precopy_engine_cancel(r->e);
	if (r->d)
		precopy_dest_cancel(r->d);
}

void vmm_role_fini(struct vmm_role *r)
{
	precopy_fake_kernel_free(r->sfk);
	precopy_fake_kernel_free(r->dfk);
	memset(r, 0, sizeof(*r));
}
