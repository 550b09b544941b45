/* SPDX-License-Identifier: MIT */
/* A device's migration session: state changes one arc at a time with
 * recovery and reset, the data fd the arcs hand out, and the reads, writes
 * and size queries that go with it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/vfio.h"
#include "uapi_compat.h"
#include "sys_retry.h"
#include "vfio_mig_priv.h"

struct precopy_vfio_dev {
	const struct precopy_sys *sys;
	int fd;
	struct precopy_vfio_dev_status st;
};

static int get_state(struct precopy_vfio_dev *dev, uint32_t *state)
{
	struct vfio_device_feature_mig_state m = { .data_fd = -1 };
	int r = precopy_vfio_feature(dev->sys, dev->fd, VFIO_DEVICE_FEATURE_GET,
				     VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m, sizeof(m));

	if (r < 0)
		return r;
	*state = m.device_state;
	return 0;
}

static void close_data(struct precopy_vfio_dev *dev)
{
	if (dev->st.data_fd >= 0) {
		precopy__sys_close(dev->sys, dev->st.data_fd);
		dev->st.data_fd = -1;
	}
}

PRECOPY_API struct precopy_vfio_dev *precopy_vfio_dev_new(const struct precopy_sys *sys, int device_fd, int *err)
{
	struct precopy_vfio_dev *dev;
	uint64_t flags = 0;
	int r;

	if (precopy_sys_validate(sys) < 0 || device_fd < 0) {
		r = -EINVAL;
		goto fail;
	}
	r = precopy_vfio_migration_flags(sys, device_fd, &flags);
	if (r < 0)
		goto fail;
	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		r = -ENOMEM;
		goto fail;
	}
	dev->sys = sys;
	dev->fd = device_fd;
	dev->st.mig_flags = flags;
	dev->st.data_fd = -1;
	r = get_state(dev, &dev->st.state);
	if (r < 0) {
		free(dev);
		goto fail;
	}
	if (err)
		*err = 0;
	return dev;
fail:
	if (err)
		*err = r;
	return NULL;
}

PRECOPY_API void precopy_vfio_dev_free(struct precopy_vfio_dev *dev)
{
	if (!dev)
		return;
	close_data(dev);
	free(dev);
}

PRECOPY_API int precopy_vfio_dev_status(const struct precopy_vfio_dev *dev, struct precopy_vfio_dev_status *st)
{
	if (!dev || !st)
		return -EINVAL;
	*st = dev->st;
	return 0;
}

PRECOPY_API int precopy_vfio_dev_refresh(struct precopy_vfio_dev *dev)
{
	uint32_t state;
	int r;

	if (!dev)
		return -EINVAL;
	r = get_state(dev, &state);
	if (r < 0)
		return r;
	if (dev->st.data_fd >= 0 && precopy_vfio_arc_closes_fd(dev->st.state, state))
		close_data(dev); /* moved out of the session behind the handle */
	dev->st.state = state;
	return 0;
}

/* One arc. Returns 0 or -errno; the handle's state follows the device. */
static int one_arc(struct precopy_vfio_dev *dev, uint32_t next)
{
	struct vfio_device_feature_mig_state m = { .device_state = next, .data_fd = -1 };
	uint32_t cur = dev->st.state;
	int r;

	r = precopy_vfio_feature(dev->sys, dev->fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
				 &m, sizeof(m));
	if (r < 0)
		return r;
	dev->st.state = next;
	dev->st.arcs++;
	if (precopy_vfio_arc_closes_fd(cur, next))
		close_data(dev);
	if (m.data_fd >= 0 && (!precopy_vfio_arc_opens_fd(cur, next) || dev->st.data_fd >= 0)) {
		/* A session we did not expect: the device was not where the
		 * handle thought (reset behind it). Keep the new fd, drop the
		 * old one, and learn the real state. */
		close_data(dev);
		dev->st.data_fd = m.data_fd;
		if (get_state(dev, &dev->st.state) < 0)
			dev->st.state = VFIO_DEVICE_STATE_ERROR;
		return -ESTALE;
	}
	if (precopy_vfio_arc_opens_fd(cur, next)) {
		if (m.data_fd < 0)
			return -EPROTO;
		dev->st.data_fd = m.data_fd;
	}
	return 0;
}

/* Walk to target; on the first failure return its -errno with *from, *to
 * set to the failed arc. */
static int walk(struct precopy_vfio_dev *dev, uint32_t target, uint32_t *from, uint32_t *to)
{
	uint32_t path[PRECOPY_VFIO_NUM_STATES];
	int n = precopy_vfio_fsm_path(dev->st.state, target, dev->st.mig_flags, path, PRECOPY_VFIO_NUM_STATES);

	if (n < 0) {
		*from = dev->st.state, *to = target;
		return n;
	}
	for (int i = 0; i < n; i++) {
		uint32_t cur = dev->st.state;
		int r = one_arc(dev, path[i]);
		if (r < 0) {
			*from = cur, *to = path[i];
			return r;
		}
	}
	return 0;
}

static void do_reset(struct precopy_vfio_dev *dev)
{
	int r;

	dev->st.resets++;
	r = precopy__sys_ioctl(dev->sys, dev->fd, VFIO_DEVICE_RESET, NULL);
	close_data(dev); /* a reset ends the session either way */
	if (r < 0) {
		dev->st.reset_err = r;
		if (get_state(dev, &dev->st.state) < 0)
			dev->st.state = VFIO_DEVICE_STATE_ERROR;
		return;
	}
	dev->st.was_reset = 1;
	if (get_state(dev, &dev->st.state) < 0)
		dev->st.state = VFIO_DEVICE_STATE_RUNNING; /* what RESET guarantees */
}

PRECOPY_API int precopy_vfio_dev_set_state(struct precopy_vfio_dev *dev, uint32_t target, uint32_t recover)
{
	uint32_t from, to, f2, t2;
	int r, r2;

	if (!dev)
		return -EINVAL;
	if (precopy_vfio_fsm_path(dev->st.state, target, dev->st.mig_flags, NULL, 0) < 0)
		return -EINVAL;
	r = walk(dev, target, &from, &to);
	if (r == 0)
		return 0;
	dev->st.last_err = r;
	dev->st.failed_from = from;
	dev->st.failed_to = to;
	dev->st.recovered = dev->st.was_reset = 0;
	dev->st.reset_err = 0;
	if (r == -ESTALE)
		return r; /* the arc itself succeeded; the caller restarts */
	/* The device may be at any state along the path, or in ERROR. */
	if (get_state(dev, &dev->st.state) < 0)
		dev->st.state = VFIO_DEVICE_STATE_ERROR;
	if (dev->st.state != dev->st.failed_from && dev->st.data_fd >= 0 &&
	    precopy_vfio_arc_closes_fd(dev->st.failed_from, dev->st.state))
		close_data(dev);
	if (recover != VFIO_DEVICE_STATE_ERROR && dev->st.state != VFIO_DEVICE_STATE_ERROR) {
		r2 = walk(dev, recover, &f2, &t2);
		if (r2 == 0) {
			dev->st.recovered = 1;
			return r;
		}
	}
	do_reset(dev);
	return r;
}

PRECOPY_API ssize_t precopy_vfio_dev_read(struct precopy_vfio_dev *dev, void *buf, size_t len)
{
	ssize_t r;

	if (!dev || (!buf && len))
		return -EINVAL;
	if (dev->st.data_fd < 0)
		return -EBADF;
	r = precopy__sys_read(dev->sys, dev->st.data_fd, buf, len);
	if (r > 0)
		dev->st.bytes_read += (uint64_t)r;
	return r;
}

void precopy__vfio_dev_count_read(struct precopy_vfio_dev *dev, uint64_t n)
{
	dev->st.bytes_read += n;
}

void precopy__vfio_dev_count_write(struct precopy_vfio_dev *dev, uint64_t n)
{
	dev->st.bytes_written += n;
}

PRECOPY_API ssize_t precopy_vfio_dev_write(struct precopy_vfio_dev *dev, const void *buf, size_t len)
{
	ssize_t r;

	if (!dev || (!buf && len))
		return -EINVAL;
	if (dev->st.data_fd < 0)
		return -EBADF;
	if (dev->st.state != VFIO_DEVICE_STATE_RESUMING)
		return -EINVAL;
	r = precopy__sys_write(dev->sys, dev->st.data_fd, buf, len);
	if (r > 0)
		dev->st.bytes_written += (uint64_t)r;
	return r;
}

PRECOPY_API int precopy_vfio_dev_precopy_info(struct precopy_vfio_dev *dev, uint64_t *initial_bytes,
					      uint64_t *dirty_bytes)
{
	if (!dev)
		return -EINVAL;
	if (dev->st.data_fd < 0)
		return -EBADF;
	if (dev->st.state != VFIO_DEVICE_STATE_PRE_COPY && dev->st.state != VFIO_DEVICE_STATE_PRE_COPY_P2P)
		return -EINVAL;
	return precopy_vfio_precopy_info(dev->sys, dev->st.data_fd, initial_bytes, dirty_bytes);
}

PRECOPY_API int precopy_vfio_dev_stop_copy_size(struct precopy_vfio_dev *dev, uint64_t *bytes)
{
	if (!dev)
		return -EINVAL;
	return precopy_vfio_stop_copy_size(dev->sys, dev->fd, bytes);
}

PRECOPY_API int precopy_vfio_dev_end_session(struct precopy_vfio_dev *dev)
{
	int r;

	if (!dev)
		return -EINVAL;
	if (dev->st.data_fd < 0)
		return 0;
	r = precopy__sys_close(dev->sys, dev->st.data_fd);
	dev->st.data_fd = -1;
	return r < 0 ? r : 0;
}
