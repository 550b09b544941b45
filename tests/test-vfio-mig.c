/* SPDX-License-Identifier: MIT */
/* Device migration sessions through the library against the fake kernel:
 * state changes arc by arc, data fds opened and closed by the right arcs,
 * recovery and reset paths under injected failures, and a full
 * PRE_COPY -> STOP_COPY -> RESUMING transfer between two devices. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "precopy/fake.h"
#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"

static uint64_t vnow;
static uint64_t v_now(void *c) { (void)c; return vnow; }
static void v_adv(void *c, uint64_t ns) { (void)c; vnow += ns; }
static const struct precopy_fake_clock vclock = { v_now, v_adv, NULL };

static struct precopy_fake_kernel *fk;
static const struct precopy_sys *sys;

static void setup(void)
{
	vnow = 1;
	fk = precopy_fake_kernel_new(&vclock, NULL);
	cr_assert(fk);
	sys = precopy_fake_kernel_sys(fk);
}
static void teardown(void) { precopy_fake_kernel_free(fk); }
TestSuite(vfio_mig, .init = setup, .fini = teardown);

#define ALLF (VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY)
enum { STOP = VFIO_DEVICE_STATE_STOP, RUN = VFIO_DEVICE_STATE_RUNNING, SC = VFIO_DEVICE_STATE_STOP_COPY,
       RES = VFIO_DEVICE_STATE_RESUMING, RP2P = VFIO_DEVICE_STATE_RUNNING_P2P, PRE = VFIO_DEVICE_STATE_PRE_COPY,
       PP2P = VFIO_DEVICE_STATE_PRE_COPY_P2P, ERR = VFIO_DEVICE_STATE_ERROR };

static struct precopy_vfio_dev *open_dev(uint64_t flags, struct precopy_fake_vfio **model, int *fdp)
{
	struct precopy_fake_vfio_cfg c = { .mig_flags = flags, .initial_bytes = 30000, .dirty_rate = 1000000,
					   .stop_copy_bytes = 20000, .transition_ns = 1000, .seed = 9 };
	int err, fd = precopy_fake_vfio_new(fk, &c, model);
	struct precopy_vfio_dev *d;

	cr_assert_geq(fd, 0);
	d = precopy_vfio_dev_new(sys, fd, &err);
	cr_assert(d, "dev_new: %d", err);
	if (fdp)
		*fdp = fd;
	return d;
}

static struct precopy_vfio_dev_status status(struct precopy_vfio_dev *d)
{
	struct precopy_vfio_dev_status st;
	cr_assert_eq(precopy_vfio_dev_status(d, &st), 0);
	return st;
}

static uint32_t model_state(struct precopy_fake_vfio *m)
{
	struct precopy_fake_vfio_stats st;
	precopy_fake_vfio_get_stats(m, &st);
	return st.state;
}

Test(vfio_mig, new_refuses_unmigratable)
{
	int err = 0;
	int nomig = precopy_fake_vfio_new(fk, &(struct precopy_fake_vfio_cfg){ 0 }, NULL);
	int p2p = precopy_fake_vfio_new(fk, &(struct precopy_fake_vfio_cfg){ .mig_flags = VFIO_MIGRATION_P2P }, NULL);

	cr_expect_null(precopy_vfio_dev_new(sys, nomig, &err));
	cr_expect_eq(err, -ENOTTY);
	cr_expect_null(precopy_vfio_dev_new(sys, p2p, &err));
	cr_expect_eq(err, -EOPNOTSUPP);
	cr_expect_null(precopy_vfio_dev_new(sys, -1, &err));
	cr_expect_eq(err, -EINVAL);
	cr_expect_null(precopy_vfio_dev_new(NULL, nomig, &err));
	cr_expect_eq(err, -EINVAL);
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL, .nth = 1, .err = EIO }), 0);
	int fd = precopy_fake_vfio_new(fk, &(struct precopy_fake_vfio_cfg){ .mig_flags = ALLF }, NULL);
	cr_expect_null(precopy_vfio_dev_new(sys, fd, &err));
	cr_expect_eq(err, -EIO);
}

Test(vfio_mig, data_fd_follows_the_arcs)
{
	struct precopy_fake_vfio *m;
	struct precopy_vfio_dev *d = open_dev(ALLF, &m, NULL);
	uint64_t init, dirty;
	static uint8_t buf[65536];
	ssize_t n;
	uint64_t total = 0;

	cr_expect_eq(status(d).state, RUN);
	cr_expect_eq(precopy_vfio_dev_read(d, buf, 10), -EBADF);
	cr_expect_eq(precopy_vfio_dev_precopy_info(d, &init, &dirty), -EBADF);
	cr_assert_eq(precopy_vfio_dev_set_state(d, PRE, ERR), 0);
	cr_expect_geq(status(d).data_fd, 0);
	cr_assert_eq(precopy_vfio_dev_precopy_info(d, &init, &dirty), 0);
	cr_expect_eq(init, 30000);
	while ((n = precopy_vfio_dev_read(d, buf, sizeof(buf))) > 0)
		total += (uint64_t)n;
	cr_expect_eq(n, -ENOMSG, "nothing for now");
	cr_expect_geq(total, 30000);
	int fd_before = status(d).data_fd;
	cr_assert_eq(precopy_vfio_dev_set_state(d, SC, ERR), 0); /* PRE_COPY -> PRE_COPY_P2P -> STOP_COPY */
	cr_expect_eq(status(d).data_fd, fd_before, "the saving group shares one fd");
	cr_expect_eq(status(d).arcs, 3);
	cr_expect_eq(precopy_vfio_dev_precopy_info(d, &init, &dirty), -EINVAL);
	while ((n = precopy_vfio_dev_read(d, buf, sizeof(buf))) > 0)
		;
	cr_expect_eq(n, 0, "end of stream");
	cr_assert_eq(precopy_vfio_dev_set_state(d, STOP, ERR), 0);
	cr_expect_eq(status(d).data_fd, -1, "STOP_COPY -> STOP ends the session");
	cr_expect_eq(precopy_vfio_dev_set_state(d, PRE, ERR), 0);
	cr_expect_geq(status(d).data_fd, 0);
	cr_expect_eq(precopy_vfio_dev_set_state(d, RUN, ERR), 0);
	cr_expect_eq(status(d).data_fd, -1, "PRE_COPY -> RUNNING ends the session");
	cr_expect_eq(precopy_vfio_dev_set_state(d, SC, ERR), 0);
	cr_expect_eq(precopy_vfio_dev_end_session(d), 0);
	cr_expect_eq(status(d).data_fd, -1);
	cr_expect_eq(model_state(m), SC, "ending the session leaves the state");
	precopy_vfio_dev_free(d);
}

Test(vfio_mig, refused_requests_touch_nothing)
{
	struct precopy_fake_vfio *m;
	struct precopy_vfio_dev *d = open_dev(VFIO_MIGRATION_STOP_COPY, &m, NULL);
	uint64_t calls = precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL);

	cr_expect_eq(precopy_vfio_dev_set_state(d, PRE, ERR), -EINVAL, "no PRE_COPY on this device");
	cr_expect_eq(precopy_vfio_dev_set_state(d, RP2P, ERR), -EINVAL);
	cr_expect_eq(precopy_vfio_dev_set_state(d, ERR, ERR), -EINVAL);
	cr_expect_eq(precopy_vfio_dev_set_state(d, 42, ERR), -EINVAL);
	cr_expect_eq(precopy_fake_op_calls(fk, PRECOPY_FAKE_OP_IOCTL), calls);
	cr_expect_eq(precopy_vfio_dev_set_state(d, SC, ERR), 0);
	cr_expect_eq(precopy_vfio_dev_set_state(d, PRE, ERR), -EINVAL);
	cr_expect_eq(model_state(m), SC);
	precopy_vfio_dev_free(d);
}

/* Failure paths, table-driven: an arc fails (leaving the device where it
 * was, or in ERROR), recovery may fail too, reset may fail too. */
static const struct fail_case {
	const char *name;
	uint32_t start, target, recover;
	uint32_t fail_from, fail_to, fail_end;
	unsigned fail_times; /* how often that arc fails (recovery may cross it again) */
	uint32_t rfail_from, rfail_to; /* a second failing arc, for the recovery walk */
	int reset_fails;
	int want_err, want_recovered, want_reset;
	uint32_t want_state;
} fcases[] = {
	{ "arc fails, recover to RUNNING", RUN, SC, RUN, RP2P, STOP, RP2P, 1, 0, 0, 0, -EIO, 1, 0, RUN },
	{ "arc fails into ERROR: reset", RUN, SC, RUN, RP2P, STOP, ERR, 1, 0, 0, 0, -EIO, 0, 1, RUN },
	{ "recovery fails: reset", RUN, SC, RUN, RP2P, STOP, RP2P, 1, RP2P, RUN, 0, -EIO, 0, 1, RUN },
	{ "no recover state: reset", PRE, SC, ERR, PP2P, SC, PP2P, 1, 0, 0, 0, -EIO, 0, 1, RUN },
	{ "recover from precopy to RUNNING", PRE, SC, RUN, PP2P, SC, PP2P, 1, 0, 0, 0, -EIO, 1, 0, RUN },
	{ "reset fails too", RUN, SC, ERR, STOP, SC, ERR, 1, 0, 0, 1, -EIO, 0, 0, ERR },
	{ "recover into the same arc again", RUN, STOP, RP2P, RP2P, STOP, RP2P, 2, 0, 0, 0, -EIO, 1, 0, RP2P },
};

Test(vfio_mig, failure_recovery_reset_table)
{
	for (size_t i = 0; i < sizeof(fcases) / sizeof(fcases[0]); i++) {
		const struct fail_case *c = &fcases[i];
		struct precopy_fake_vfio *m;
		struct precopy_vfio_dev *d = open_dev(ALLF, &m, NULL);
		struct precopy_vfio_dev_status st;
		int r;

		cr_assert_eq(precopy_vfio_dev_set_state(d, c->start, ERR), 0, "%s: start", c->name);
		cr_assert_eq(precopy_fake_vfio_fail_arc(m, c->fail_from, c->fail_to, EIO, c->fail_end, c->fail_times), 0);
		if (c->rfail_from || c->rfail_to)
			cr_assert_eq(precopy_fake_vfio_fail_arc(m, c->rfail_from, c->rfail_to, EAGAIN, c->rfail_from, 1), 0);
		if (c->reset_fails)
			cr_assert_eq(precopy_fake_vfio_fail_reset(m, EBUSY, 1), 0);
		r = precopy_vfio_dev_set_state(d, c->target, c->recover);
		st = status(d);
		cr_expect_eq(r, c->want_err, "%s: %d", c->name, r);
		cr_expect_eq(st.last_err, c->want_err, "%s", c->name);
		cr_expect_eq(st.failed_from, c->fail_from, "%s", c->name);
		cr_expect_eq(st.failed_to, c->fail_to, "%s", c->name);
		cr_expect_eq(st.recovered, c->want_recovered, "%s: recovered", c->name);
		cr_expect_eq(st.was_reset, c->want_reset, "%s: reset", c->name);
		cr_expect_eq(st.reset_err, c->reset_fails ? -EBUSY : 0, "%s", c->name);
		cr_expect_eq(st.state, c->want_state, "%s: state %s", c->name, precopy_vfio_state_name(st.state));
		cr_expect_eq(model_state(m), st.state, "%s: handle and device disagree", c->name);
		if (c->want_reset)
			cr_expect_eq(st.data_fd, -1, "%s: reset ends the session", c->name);
		if (c->want_reset || c->reset_fails)
			cr_expect_eq(st.resets, 1);
		precopy_vfio_dev_free(d);
	}
}

Test(vfio_mig, injected_ioctl_failure_recovers)
{
	struct precopy_fake_vfio *m;
	struct precopy_vfio_dev *d = open_dev(ALLF, &m, NULL);

	/* the 2nd SET on the way (RUNNING_P2P -> STOP) fails in the syscall */
	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL,
		.request = VFIO_DEVICE_FEATURE, .match_feature = 1, .feature = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		.nth = 3, .err = EIO }), 0); /* 1: dev_new GET, 2: first SET, 3: second SET */
	cr_expect_eq(precopy_vfio_dev_set_state(d, SC, RUN), -EIO);
	cr_expect_eq(status(d).recovered, 1);
	cr_expect_eq(status(d).state, RUN);
	cr_expect_eq(model_state(m), RUN);
	precopy_vfio_dev_free(d);
}

/* An interrupted SET on the way did nothing: it is made again and the
 * path completes. */
Test(vfio_mig, interrupted_ioctl_is_made_again)
{
	struct precopy_fake_vfio *m;
	struct precopy_vfio_dev *d = open_dev(ALLF, &m, NULL);

	cr_assert_eq(precopy_fake_fault_add(fk, &(struct precopy_fault){ .op = PRECOPY_FAKE_OP_IOCTL,
		.request = VFIO_DEVICE_FEATURE, .match_feature = 1, .feature = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
		.nth = 3, .err = EINTR }), 0);
	cr_expect_eq(precopy_vfio_dev_set_state(d, SC, RUN), 0);
	cr_expect_eq(status(d).recovered, 0);
	cr_expect_eq(status(d).state, SC);
	cr_expect_eq(model_state(m), SC);
	precopy_vfio_dev_free(d);
}

Test(vfio_mig, reset_behind_the_handle)
{
	struct precopy_fake_vfio *m;
	int fd;
	struct precopy_vfio_dev *d = open_dev(ALLF, &m, &fd);
	struct precopy_vfio_dev_status st;

	cr_assert_eq(precopy_vfio_dev_set_state(d, PRE, ERR), 0);
	int old = status(d).data_fd;
	cr_assert_geq(old, 0);
	/* someone resets the device: RUNNING again, while the handle holds a session */
	cr_assert_eq(precopy_sys_ioctl(sys, fd, VFIO_DEVICE_RESET, NULL), 0);
	/* PRE_COPY -> PRE_COPY_P2P for the handle; the device walks
	 * RUNNING -> RUNNING_P2P -> PRE_COPY_P2P and hands out a second fd */
	cr_expect_eq(precopy_vfio_dev_set_state(d, PP2P, ERR), -ESTALE);
	st = status(d);
	cr_expect_eq(st.state, PP2P, "state learnt from the device");
	cr_expect_geq(st.data_fd, 0);
	cr_expect_neq(st.data_fd, old);
	cr_expect_eq(st.last_err, -ESTALE);
	cr_expect_eq(st.resets, 0);
	/* the new session works */
	uint64_t init = 0;
	cr_expect_eq(precopy_vfio_dev_precopy_info(d, &init, NULL), 0);
	cr_expect_eq(init, 30000);
	precopy_vfio_dev_free(d);
}

Test(vfio_mig, full_transfer_between_devices)
{
	struct precopy_fake_vfio *ms, *md;
	struct precopy_vfio_dev *src = open_dev(ALLF, &ms, NULL), *dst = open_dev(ALLF, &md, NULL);
	static uint8_t buf[8192];
	struct precopy_fake_vfio_stats st;
	uint64_t sz = 0, moved = 0;
	ssize_t n;

	cr_assert_eq(precopy_vfio_dev_set_state(dst, RES, ERR), 0);
	cr_assert_eq(precopy_vfio_dev_set_state(src, PRE, RUN), 0);
	for (int round = 0; round < 3; round++) {
		while ((n = precopy_vfio_dev_read(src, buf, sizeof(buf))) > 0) {
			cr_assert_eq(precopy_vfio_dev_write(dst, buf, (size_t)n), n);
			moved += (uint64_t)n;
		}
		cr_assert_eq(n, -ENOMSG);
		vnow += 1000000;
	}
	cr_assert_eq(precopy_vfio_dev_stop_copy_size(src, &sz), 0);
	cr_expect_eq(sz, 20000 + 1000, "final state plus what was dirtied since");
	cr_assert_eq(precopy_vfio_dev_set_state(src, SC, RUN), 0);
	while ((n = precopy_vfio_dev_read(src, buf, sizeof(buf))) > 0) {
		cr_assert_eq(precopy_vfio_dev_write(dst, buf, (size_t)n), n);
		moved += (uint64_t)n;
	}
	cr_assert_eq(n, 0);
	cr_assert_eq(precopy_vfio_dev_set_state(dst, RUN, ERR), 0, "the destination accepts the stream");
	precopy_fake_vfio_get_stats(md, &st);
	cr_expect_eq(st.resume_ok, 1);
	cr_expect_eq(st.bytes_in, moved);
	cr_expect_eq(status(src).bytes_read, moved);
	cr_expect_eq(status(dst).bytes_written, moved);
	cr_expect_eq(precopy_vfio_dev_write(src, buf, 1), -EINVAL, "not RESUMING");
	cr_assert_eq(precopy_vfio_dev_set_state(src, STOP, RUN), 0);
	precopy_vfio_dev_free(src);
	precopy_vfio_dev_free(dst);
}

/* The VMM moves or resets the device without the handle: refresh reads
 * where it really is, and drops a session the move ended. */
Test(vfio_mig, refresh_learns_moves_behind_the_handle)
{
	struct precopy_fake_vfio *m;
	int fd;
	struct precopy_vfio_dev *d = open_dev(ALLF, &m, &fd);
	struct vfio_device_feature_mig_state ms = { .device_state = RUN, .data_fd = -1 };
	struct precopy_fault f = { .op = PRECOPY_FAKE_OP_IOCTL, .request = VFIO_DEVICE_FEATURE, .match_feature = 1,
				   .feature = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, .nth = 1, .err = EIO };

	cr_expect_eq(precopy_vfio_dev_refresh(NULL), -EINVAL);
	cr_assert_eq(precopy_vfio_dev_set_state(d, STOP, ERR), 0);
	cr_assert_eq(precopy_vfio_feature(sys, fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms,
					  sizeof(ms)), 0);
	cr_expect_eq(status(d).state, STOP, "the handle cannot know yet");
	cr_assert_eq(precopy_vfio_dev_refresh(d), 0);
	cr_expect_eq(status(d).state, RUN);
	/* a session, then a reset behind the handle: back to RUNNING, no session */
	cr_assert_eq(precopy_vfio_dev_set_state(d, PRE, ERR), 0);
	cr_assert_geq(status(d).data_fd, 0);
	cr_assert_eq(precopy_sys_ioctl(sys, fd, VFIO_DEVICE_RESET, NULL), 0);
	cr_assert_eq(precopy_vfio_dev_refresh(d), 0);
	cr_expect_eq(status(d).state, RUN);
	cr_expect_eq(status(d).data_fd, -1, "PRE_COPY -> RUNNING ended the session");
	/* a failed read leaves the handle as it was */
	cr_assert_eq(precopy_vfio_dev_set_state(d, STOP, ERR), 0);
	ms.device_state = RUN;
	cr_assert_eq(precopy_vfio_feature(sys, fd, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &ms,
					  sizeof(ms)), 0);
	cr_assert_eq(precopy_fake_fault_add(fk, &f), 0);
	cr_expect_eq(precopy_vfio_dev_refresh(d), -EIO);
	cr_expect_eq(status(d).state, STOP);
	cr_expect_eq(model_state(m), RUN);
	precopy_vfio_dev_free(d);
}
