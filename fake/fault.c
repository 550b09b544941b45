/* SPDX-License-Identifier: MIT */
/* Fault injection for the fake kernel: the Nth matching call of an
 * operation fails with a chosen errno, or transfers fewer bytes. */
#include <errno.h>
#include <string.h>

#include <linux/vfio.h>

#include "internal.h"

static int can_be_short(enum precopy_fake_op op)
{
	return op == PRECOPY_FAKE_OP_READ || op == PRECOPY_FAKE_OP_WRITE || op == PRECOPY_FAKE_OP_SPLICE;
}

PRECOPY_API int precopy_fake_fault_add(struct precopy_fake_kernel *fk, const struct precopy_fault *f)
{
	int r = 0;

	if (!fk || !f || (unsigned)f->op >= PRECOPY_FAKE_OP_COUNT || f->nth == 0 || f->err < 0)
		return -EINVAL;
	if (f->err == 0 && !can_be_short(f->op))
		return -EINVAL;
	pthread_mutex_lock(&fk->lock);
	if (fk->nrules >= FK_MAX_RULES) {
		r = -ENOSPC;
	} else {
		fk->rules[fk->nrules].f = *f;
		fk->rules[fk->nrules].seen = 0;
		fk->nrules++;
	}
	pthread_mutex_unlock(&fk->lock);
	return r;
}

PRECOPY_API void precopy_fake_fault_clear(struct precopy_fake_kernel *fk)
{
	if (!fk)
		return;
	pthread_mutex_lock(&fk->lock);
	fk->nrules = 0;
	memset(fk->rules, 0, sizeof(fk->rules));
	pthread_mutex_unlock(&fk->lock);
}

PRECOPY_API uint64_t precopy_fake_op_calls(struct precopy_fake_kernel *fk, enum precopy_fake_op op)
{
	uint64_t n;

	if (!fk || (unsigned)op >= PRECOPY_FAKE_OP_COUNT)
		return 0;
	pthread_mutex_lock(&fk->lock);
	n = fk->calls[op];
	pthread_mutex_unlock(&fk->lock);
	return n;
}

static int matches(const struct precopy_fault *f, enum precopy_fake_op op, int fd, unsigned long req,
		   const void *arg)
{
	if (f->op != op)
		return 0;
	if (f->fd != 0 && f->fd != fd)
		return 0;
	if (op != PRECOPY_FAKE_OP_IOCTL)
		return 1;
	if (f->request && f->request != req)
		return 0;
	if (f->match_feature) {
		const struct vfio_device_feature *hdr = arg;
		if (req != VFIO_DEVICE_FEATURE || !hdr ||
		    (hdr->flags & VFIO_DEVICE_FEATURE_MASK) != f->feature)
			return 0;
	}
	return 1;
}

int fk_fault_check(struct precopy_fake_kernel *fk, enum precopy_fake_op op, int fd, unsigned long req,
		   const void *arg, size_t *len)
{
	fk->calls[op]++;
	for (int i = 0; i < fk->nrules; i++) {
		struct fk_rule *r = &fk->rules[i];
		uint64_t times = r->f.times ? r->f.times : 1;

		if (!matches(&r->f, op, fd, req, arg))
			continue;
		r->seen++;
		if (r->seen < r->f.nth || r->seen >= r->f.nth + times)
			continue;
		if (r->f.err)
			return -r->f.err;
		if (len && *len > r->f.short_len)
			*len = r->f.short_len;
	}
	return 0;
}
