/* SPDX-License-Identifier: MIT */
/* The fake kernel: a sys table whose ioctls on fake fds go to userspace
 * models, and whose other calls go to the real kernel. One mutex guards the
 * fd table, the fault rules and the models. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const struct precopy_sys *real(void)
{
	return precopy_sys_real();
}

static uint64_t mono_now(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fk_now(struct precopy_fake_kernel *fk)
{
	return fk->clock.now_ns(fk->clock.ctx);
}

void fk_advance(struct precopy_fake_kernel *fk, uint64_t ns)
{
	if (ns && fk->clock.advance_ns)
		fk->clock.advance_ns(fk->clock.ctx, ns);
}

int fk_register(struct precopy_fake_kernel *fk, int fd, int kind, void *obj)
{
	if (fd < 0)
		return -EBADF;
	if (fd >= fk->ntab) {
		int n = fk->ntab ? fk->ntab : 64;
		struct fk_entry *t;

		while (n <= fd)
			n *= 2;
		t = realloc(fk->tab, (size_t)n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t + fk->ntab, 0, (size_t)(n - fk->ntab) * sizeof(*t));
		fk->tab = t;
		fk->ntab = n;
	}
	fk->tab[fd].kind = kind;
	fk->tab[fd].obj = obj;
	return 0;
}

void fk_unregister(struct precopy_fake_kernel *fk, int fd)
{
	if (fd >= 0 && fd < fk->ntab)
		fk->tab[fd].kind = FK_NONE, fk->tab[fd].obj = NULL;
}

static int kind_of(struct precopy_fake_kernel *fk, int fd, void **obj)
{
	if (fd < 0 || fd >= fk->ntab)
		return FK_NONE;
	*obj = fk->tab[fd].obj;
	return fk->tab[fd].kind;
}

void *fk_lookup(struct precopy_fake_kernel *fk, int fd, int kind)
{
	void *obj = NULL;

	return kind_of(fk, fd, &obj) == kind ? obj : NULL;
}

/* ---- the sys ops ------------------------------------------------------ */

static int f_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct precopy_fake_kernel *fk = ctx;
	void *obj = NULL;
	int r, kind;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_IOCTL, fd, req, arg, NULL);
	if (r < 0)
		goto out;
	kind = kind_of(fk, fd, &obj);
	switch (kind) {
	case FK_DEVICE:
		r = fake_vfio_device_ioctl(obj, req, arg);
		goto out;
	case FK_DATA:
		r = fake_vfio_data_ioctl(obj, req, arg);
		goto out;
	case FK_TYPE1:
		r = fake_type1_ioctl(obj, req, arg);
		goto out;
	case FK_IOMMUFD:
		r = fake_iommufd_ioctl(obj, req, arg);
		goto out;
	case FK_KVM_VM:
		r = fake_kvm_vm_ioctl(obj, req, arg);
		goto out;
	default:
		break;
	}
	pthread_mutex_unlock(&fk->lock);
	return real()->ops->ioctl(NULL, fd, req, arg);
out:
	pthread_mutex_unlock(&fk->lock);
	return r;
}

/* A modelled latency: the virtual clock moves, a real one is slept on. */
static void fk_wait(struct precopy_fake_kernel *fk, uint64_t ns)
{
	if (!ns)
		return;
	if (fk->clock.advance_ns) {
		fk_advance(fk, ns);
	} else {
		struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

static ssize_t f_read(void *ctx, int fd, void *buf, size_t len)
{
	struct precopy_fake_kernel *fk = ctx;
	void *obj = NULL;
	ssize_t r;
	int kind;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_READ, fd, 0, NULL, &len);
	if (r < 0)
		goto out;
	kind = kind_of(fk, fd, &obj);
	if (kind == FK_DATA) {
		r = fake_vfio_data_read(obj, buf, len);
		if (r > 0) { /* the device delivers at its read rate */
			fake_vfio_data_note_read(obj, 0);
			fk_wait(fk, fake_vfio_data_read_ns(obj, (uint64_t)r));
		}
		goto out;
	}
	if (kind == FK_DEVICE || kind == FK_TYPE1 || kind == FK_IOMMUFD || kind == FK_KVM_VM) {
		r = -EINVAL; /* no region reads in this model */
		goto out;
	}
	pthread_mutex_unlock(&fk->lock);
	return real()->ops->read(NULL, fd, buf, len);
out:
	pthread_mutex_unlock(&fk->lock);
	return r;
}

static ssize_t f_write(void *ctx, int fd, const void *buf, size_t len)
{
	struct precopy_fake_kernel *fk = ctx;
	void *obj = NULL;
	ssize_t r;
	int kind;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_WRITE, fd, 0, NULL, &len);
	if (r < 0)
		goto out;
	kind = kind_of(fk, fd, &obj);
	if (kind == FK_DATA) {
		r = fake_vfio_data_write(obj, buf, len);
		if (r > 0) /* the device takes its state at its write rate */
			fk_wait(fk, fake_vfio_data_write_ns(obj, (uint64_t)r));
		goto out;
	}
	if (kind == FK_DEVICE || kind == FK_TYPE1 || kind == FK_IOMMUFD || kind == FK_KVM_VM) {
		r = -EINVAL;
		goto out;
	}
	pthread_mutex_unlock(&fk->lock);
	return real()->ops->write(NULL, fd, buf, len);
out:
	pthread_mutex_unlock(&fk->lock);
	return r;
}

/* A send is a write to a socket: WRITE faults match it too. */
static ssize_t f_send(void *ctx, int fd, const void *buf, size_t len, int flags)
{
	struct precopy_fake_kernel *fk = ctx;
	void *obj = NULL;
	ssize_t r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_WRITE, fd, 0, NULL, &len);
	if (r == 0 && kind_of(fk, fd, &obj) != FK_NONE)
		r = -ENOTSOCK; /* no model is a socket */
	pthread_mutex_unlock(&fk->lock);
	return r < 0 ? r : real()->ops->send(NULL, fd, buf, len, flags);
}

static ssize_t f_splice(void *ctx, int in, int out, size_t len, unsigned int flags)
{
	struct precopy_fake_kernel *fk = ctx;
	void *oin = NULL, *oout = NULL;
	int kin, kout;
	ssize_t r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_SPLICE, in, 0, NULL, &len);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		return r;
	}
	kin = kind_of(fk, in, &oin);
	kout = kind_of(fk, out, &oout);
	if (kin == FK_DEVICE || kout == FK_DEVICE) {
		pthread_mutex_unlock(&fk->lock);
		return -EINVAL;
	}
	if (kin == FK_DATA)
		fake_vfio_data_pump(oin);
	r = real()->ops->splice(NULL, in, out, len, flags);
	if (kout == FK_DATA)
		fake_vfio_data_drain(oout);
	pthread_mutex_unlock(&fk->lock);
	return r;
}

static int f_poll(void *ctx, struct pollfd *fds, unsigned int n, int timeout_ms)
{
	struct precopy_fake_kernel *fk = ctx;
	unsigned char stack_mark[64], *mark = stack_mark;
	short *saved = NULL, stack_saved[64];
	int r, blind = 0, ready = 0;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_POLL, n ? fds[0].fd : -1, 0, NULL, NULL);
	if (r < 0) {
		pthread_mutex_unlock(&fk->lock);
		return r;
	}
	saved = stack_saved;
	if (n > 64) {
		mark = calloc(n, 1);
		saved = calloc(n, sizeof(*saved));
		if (!mark || !saved) {
			pthread_mutex_unlock(&fk->lock);
			free(mark);
			free(saved);
			return -ENOMEM;
		}
	} else {
		memset(stack_mark, 0, sizeof(stack_mark));
	}
	for (unsigned int i = 0; i < n; i++) {
		void *obj = NULL;
		if (kind_of(fk, fds[i].fd, &obj) != FK_DATA)
			continue;
		if (fake_vfio_data_no_poll(obj)) {
			/* no poll method: the default mask, at once; the real
			 * poll skips the fd (negative), restored below */
			saved[i] = (short)(fds[i].events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM));
			fds[i].fd = -fds[i].fd - 1;
			mark[i] = 1;
			blind++;
			ready += saved[i] != 0;
		} else {
			fake_vfio_data_pump(obj);
		}
	}
	pthread_mutex_unlock(&fk->lock);
	r = real()->ops->poll(NULL, fds, n, ready ? 0 : timeout_ms);
	for (unsigned int i = 0; i < n; i++)
		if (mark[i]) {
			fds[i].fd = -fds[i].fd - 1;
			fds[i].revents = saved[i];
		}
	if (mark != stack_mark) {
		free(mark);
		free(saved);
	}
	return r < 0 ? r : r + ready;
}

static int f_open(void *ctx, const char *path, int flags)
{
	struct precopy_fake_kernel *fk = ctx;
	int r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_OPEN, -1, 0, NULL, NULL);
	pthread_mutex_unlock(&fk->lock);
	return r < 0 ? r : real()->ops->open(NULL, path, flags);
}

static int f_close(void *ctx, int fd)
{
	struct precopy_fake_kernel *fk = ctx;
	void *obj = NULL;
	int r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_CLOSE, fd, 0, NULL, NULL);
	if (r == -EBADF) {
		pthread_mutex_unlock(&fk->lock);
		return r;
	}
	/* Any other error is reported after the fd is released, as Linux
	 * does: close() frees the descriptor even when it fails (EINTR, EIO),
	 * and retrying it could close an fd another thread has just opened. */
	switch (kind_of(fk, fd, &obj)) {
	case FK_DEVICE:
		fake_vfio_device_closed(obj);
		break;
	case FK_DATA:
		fake_vfio_data_closed(obj);
		break;
	case FK_TYPE1:
		fake_type1_closed(obj);
		break;
	case FK_IOMMUFD:
		fake_iommufd_closed(obj);
		break;
	case FK_KVM_VM:
		fake_kvm_closed(obj);
		break;
	default:
		break;
	}
	fk_unregister(fk, fd);
	if (r < 0)
		real()->ops->close(NULL, fd);
	else
		r = real()->ops->close(NULL, fd);
	pthread_mutex_unlock(&fk->lock);
	return r;
}

static int f_mmap(void *ctx, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	struct precopy_fake_kernel *fk = ctx;
	int r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_MMAP, fd, 0, NULL, NULL);
	pthread_mutex_unlock(&fk->lock);
	return r < 0 ? r : real()->ops->mmap(NULL, len, prot, flags, fd, off, out);
}

static int f_munmap(void *ctx, void *addr, size_t len)
{
	struct precopy_fake_kernel *fk = ctx;
	int r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_MUNMAP, -1, 0, NULL, NULL);
	pthread_mutex_unlock(&fk->lock);
	return r < 0 ? r : real()->ops->munmap(NULL, addr, len);
}

static int f_pipe2(void *ctx, int fds[2], int flags)
{
	struct precopy_fake_kernel *fk = ctx;
	int r;

	pthread_mutex_lock(&fk->lock);
	r = fk_fault_check(fk, PRECOPY_FAKE_OP_PIPE2, -1, 0, NULL, NULL);
	pthread_mutex_unlock(&fk->lock);
	return r < 0 ? r : real()->ops->pipe2(NULL, fds, flags);
}

/* ---- the asynchronous queue on the model's clock --------------------------
 *
 * Each op runs at submission (faults apply as to read/write); only its
 * completion is delayed: a fake data fd's read completes when its device
 * has delivered the bytes at its read rate (devices in parallel, one read
 * at a time per device); every other op completes at once. Reaping moves
 * the clock (advance_ns) to the next completion, as a wait would; a clock
 * without advance_ns is waited on with nanosleep. */
struct fk_aio_op {
	uint64_t tag, done_ns;
	int64_t res;
};

struct fk_aio {
	unsigned int depth, n;
	struct fk_aio_op *ops;
};

static int f_aio_open(void *ctx, unsigned int depth, unsigned int workers, void **q)
{
	struct fk_aio *a;

	if (!depth || !q)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a || !(a->ops = calloc(depth, sizeof(*a->ops)))) {
		free(a);
		return -ENOMEM;
	}
	a->depth = depth;
	*q = a;
	return 0;
}

static int f_aio_submit(void *ctx, void *q, const struct precopy_sys_aio_op *ops, unsigned int n)
{
	struct precopy_fake_kernel *fk = ctx;
	struct fk_aio *a = q;

	for (unsigned int i = 0; i < n; i++)
		if ((ops[i].opcode != PRECOPY_SYS_AIO_READ && ops[i].opcode != PRECOPY_SYS_AIO_WRITE) ||
		    (ops[i].flags & ~PRECOPY_SYS_AIO_BLOCKING) || (!ops[i].buf && ops[i].len))
			return -EINVAL;
	if (n > a->depth - a->n)
		return -EBUSY;
	for (unsigned int i = 0; i < n; i++) {
		const struct precopy_sys_aio_op *o = &ops[i];
		int rd = o->opcode == PRECOPY_SYS_AIO_READ;
		size_t len = o->len;
		void *obj = NULL;
		int64_t r;
		uint64_t done;

		pthread_mutex_lock(&fk->lock);
		done = fk_now(fk);
		r = fk_fault_check(fk, rd ? PRECOPY_FAKE_OP_READ : PRECOPY_FAKE_OP_WRITE, o->fd, 0, NULL, &len);
		if (r == 0) {
			int kind = kind_of(fk, o->fd, &obj);

			if (kind == FK_DATA) {
				r = rd ? fake_vfio_data_read(obj, o->buf, len) : fake_vfio_data_write(obj, o->buf, len);
				if (r > 0 && rd)
					fake_vfio_data_note_read(obj, 1);
				if (r > 0)
					done = rd ? fake_vfio_data_read_done_at(obj, done, (uint64_t)r)
						  : fake_vfio_data_write_done_at(obj, done, (uint64_t)r);
			} else if (kind != FK_NONE) {
				r = -EINVAL;
			} else {
				pthread_mutex_unlock(&fk->lock);
				r = rd ? real()->ops->read(NULL, o->fd, o->buf, len)
				       : real()->ops->write(NULL, o->fd, o->buf, len);
				pthread_mutex_lock(&fk->lock);
			}
		}
		pthread_mutex_unlock(&fk->lock);
		a->ops[a->n++] = (struct fk_aio_op){ .tag = o->tag, .done_ns = done, .res = r };
	}
	return 0;
}

static int f_aio_reap(void *ctx, void *q, struct precopy_sys_aio_done *done, unsigned int max, int timeout_ms)
{
	struct precopy_fake_kernel *fk = ctx;
	struct fk_aio *a = q;
	uint64_t now, first = UINT64_MAX;
	unsigned int got = 0;

	if (!max)
		return -EINVAL;
	now = fk_now(fk);
	for (unsigned int i = 0; i < a->n; i++)
		if (a->ops[i].done_ns < first)
			first = a->ops[i].done_ns;
	if (first == UINT64_MAX)
		return 0;
	if (first > now) {
		uint64_t wait = first - now, cap = timeout_ms > 0 ? (uint64_t)timeout_ms * 1000000u : 0;

		if (wait > cap)
			wait = cap;
		if (!wait)
			return 0;
		fk_wait(fk, wait);
		now = fk_now(fk);
	}
	/* earliest first, so a caller sees the devices' completions in time order */
	while (got < max) {
		unsigned int best = a->n;

		for (unsigned int i = 0; i < a->n; i++)
			if (a->ops[i].done_ns <= now && (best == a->n || a->ops[i].done_ns < a->ops[best].done_ns))
				best = i;
		if (best == a->n)
			break;
		done[got].tag = a->ops[best].tag;
		done[got].res = a->ops[best].res;
		got++;
		a->ops[best] = a->ops[--a->n];
	}
	return (int)got;
}

static void f_aio_close(void *ctx, void *q)
{
	struct fk_aio *a = q;

	if (a) {
		free(a->ops);
		free(a);
	}
}

static const struct precopy_sys_ops fake_ops = {
	.version = PRECOPY_SYS_OPS_VERSION,
	.ioctl = f_ioctl,
	.read = f_read,
	.write = f_write,
	.splice = f_splice,
	.poll = f_poll,
	.open = f_open,
	.close = f_close,
	.mmap = f_mmap,
	.munmap = f_munmap,
	.pipe2 = f_pipe2,
	.send = f_send,
	.aio_open = f_aio_open,
	.aio_submit = f_aio_submit,
	.aio_reap = f_aio_reap,
	.aio_close = f_aio_close,
};

PRECOPY_API struct precopy_fake_kernel *precopy_fake_kernel_new(const struct precopy_fake_clock *clock, int *err)
{
	struct precopy_fake_kernel *fk;

	if (clock && !clock->now_ns) {
		if (err)
			*err = -EINVAL;
		return NULL;
	}
	fk = calloc(1, sizeof(*fk));
	if (!fk) {
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&fk->lock, NULL);
	if (clock) {
		fk->clock = *clock;
	} else {
		fk->clock.now_ns = mono_now;
		fk->own_clock = 1;
	}
	fk->sys.ops = &fake_ops;
	fk->sys.ctx = fk;
	if (err)
		*err = 0;
	return fk;
}

PRECOPY_API void precopy_fake_kernel_free(struct precopy_fake_kernel *fk)
{
	if (!fk)
		return;
	pthread_mutex_lock(&fk->lock);
	fake_type1_free_all(fk);   /* detach devices first */
	fake_iommufd_free_all(fk);
	fake_kvm_free_all(fk);
	fake_vfio_free_all(fk);
	free(fk->tab);
	pthread_mutex_unlock(&fk->lock);
	pthread_mutex_destroy(&fk->lock);
	free(fk);
}

PRECOPY_API const struct precopy_sys *precopy_fake_kernel_sys(struct precopy_fake_kernel *fk)
{
	return fk ? &fk->sys : NULL;
}
