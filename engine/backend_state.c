/* SPDX-License-Identifier: MIT */
/* fd-based back-end state transfer (vhost-user SET_DEVICE_STATE_FD model):
 * checks the back-end is stopped, hands it its end of the caller's pipe,
 * keeps the other end for the pump, and at the end closes it and asks the
 * back-end for its verdict. All closes go through the sys seam. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "precopy/backend.h"
#include "../ioctl/sys_retry.h"

struct precopy_backend_xfer {
	struct precopy_backend_ops ops;
	void *ctx;
	struct precopy_sys sys;
	int fd; /* front-end fd of the open transfer, or -1 */
	bool started;
};

PRECOPY_API struct precopy_backend_xfer *precopy_backend_xfer_new(const struct precopy_backend_ops *ops,
								  void *ctx,
								  const struct precopy_sys *sys,
								  int *err)
{
	struct precopy_backend_xfer *x = NULL;
	int r = -EINVAL;

	if (!sys)
		sys = precopy_sys_real();
	if (!ops || ops->version != PRECOPY_BACKEND_OPS_VERSION || !ops->queues_running ||
	    !ops->set_state_fd || !ops->check_state || precopy_sys_validate(sys))
		goto out;
	r = -ENOMEM;
	x = calloc(1, sizeof(*x));
	if (!x)
		goto out;
	x->ops = *ops;
	x->ctx = ctx;
	x->sys = *sys;
	x->fd = -1;
	r = 0;
out:
	if (err)
		*err = r;
	return x;
}

PRECOPY_API int precopy_backend_xfer_start(struct precopy_backend_xfer *x, uint32_t dir, uint32_t phase,
					   const int pipe_fds[2])
{
	int give, keep, reply = -1, r;

	if (!x || !pipe_fds || pipe_fds[0] < 0 || pipe_fds[1] < 0 || pipe_fds[0] == pipe_fds[1])
		return -EINVAL;
	if ((dir != PRECOPY_BACKEND_SAVE && dir != PRECOPY_BACKEND_LOAD) ||
	    phase != PRECOPY_BACKEND_PHASE_STOPPED || x->started) {
		r = x->started ? -EALREADY : -EINVAL;
		goto close_both;
	}
	r = x->ops.queues_running(x->ctx);
	if (r != 0) {
		r = r > 0 ? -EBUSY : r;
		goto close_both;
	}
	give = dir == PRECOPY_BACKEND_SAVE ? pipe_fds[1] : pipe_fds[0];
	keep = dir == PRECOPY_BACKEND_SAVE ? pipe_fds[0] : pipe_fds[1];
	r = x->ops.set_state_fd(x->ctx, dir, phase, give, &reply);
	if (r < 0) {
		if (reply >= 0)
			precopy__sys_close(&x->sys, reply);
		precopy__sys_close(&x->sys, keep);
		return r;
	}
	if (reply >= 0) {
		precopy__sys_close(&x->sys, keep);
		keep = reply;
	}
	x->fd = keep;
	x->started = true;
	return keep;

close_both:
	precopy__sys_close(&x->sys, pipe_fds[0]);
	precopy__sys_close(&x->sys, pipe_fds[1]);
	return r;
}

/* Closes the front-end's end of a started transfer. 0, or -EINVAL/-ENOENT. */
static int xfer_close(struct precopy_backend_xfer *x)
{
	if (!x)
		return -EINVAL;
	if (!x->started)
		return -ENOENT;
	if (x->fd >= 0)
		precopy__sys_close(&x->sys, x->fd);
	x->fd = -1;
	x->started = false;
	return 0;
}

PRECOPY_API int precopy_backend_xfer_finish(struct precopy_backend_xfer *x)
{
	int r = xfer_close(x);

	return r ? r : x->ops.check_state(x->ctx);
}

PRECOPY_API int precopy_backend_xfer_abort(struct precopy_backend_xfer *x)
{
	return xfer_close(x);
}

PRECOPY_API void precopy_backend_xfer_free(struct precopy_backend_xfer *x)
{
	if (!x)
		return;
	if (x->fd >= 0)
		precopy__sys_close(&x->sys, x->fd);
	free(x);
}
