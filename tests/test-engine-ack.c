/* SPDX-License-Identifier: MIT */
/* Switchover-ack ordering: the source never switches over before the ACK,
 * a slow destination delays switchover, a device without PRE_COPY needs no
 * ACK, and an ACK twice, too early or after the switchover decision is a
 * protocol error with a clear message (and the migration is cancelled). */
#include "test-engine.h"

static void fini(void) { h_teardown(); }
TestSuite(engine_ack, .fini = fini);

Test(engine_ack, slow_destination_delays_switchover)
{
	uint64_t flags[MAXDEV] = { ALLF };
	struct run_result rr;
	int r;

	h_setup(1, flags, 1);
	h_engines();
	H.threaded = 1;
	atomic_store(&H.hold_dest, 1); /* released after 3 WAIT_ACK decisions */
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "%d: %s", r, precopy_engine_strerror(H.src));
	cr_assert_geq(rr.wait_acks, 3);
	cr_assert_eq(rr.switched_before_ack, 0);
	cr_assert_eq(precopy_dest_acked(H.dst), 1);
	cr_assert(ram_equal());
}

Test(engine_ack, never_switches_before_ack_without_destination)
{
	uint64_t flags[MAXDEV] = { ALLF, ALLF };
	struct precopy_decision d;

	h_setup(2, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	for (int i = 0; i < 20; i++) {
		cr_assert_geq(precopy_engine_sync(H.src), 0);
		copy_pages();
		cr_assert_geq(precopy_engine_pump(H.src, 0), 0);
		cr_assert_eq(precopy_engine_account(H.src, 4096, 4096), 0);
		atomic_fetch_add(&vnow, 1000);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
		cr_assert_neq(d.action, PRECOPY_SWITCHOVER, "switchover without the ACK");
		if (i > 2)
			cr_assert_eq(d.action, PRECOPY_WAIT_ACK, "iteration %d: %s blocked %#x", i,
				     precopy_action_name(d.action), d.blocked);
	}
	cr_assert_eq(precopy_engine_cancel(H.src), 0);
	assert_all_running();
}

Test(engine_ack, device_without_precopy_needs_no_ack)
{
	uint64_t flags[MAXDEV] = { VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P, VFIO_MIGRATION_STOP_COPY };
	struct run_result rr;
	int r;

	h_setup(2, flags, 1);
	h_engines();
	r = run_migration(200, &rr);
	cr_assert_eq(r, 0, "%d: %s", r, precopy_engine_strerror(H.src));
	cr_assert_eq(rr.wait_acks, 0);
	cr_assert_eq(precopy_dest_acked(H.dst), 0, "no PRE_COPY device: no ACK");
	cr_assert(ram_equal());
}

Test(engine_ack, ack_too_early)
{
	uint64_t flags[MAXDEV] = { ALLF };

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_eq(precopy_engine_ack(H.src), -EPROTO);
	cr_assert(strstr(precopy_engine_strerror(H.src), "too early"), "%s", precopy_engine_strerror(H.src));
	assert_all_running();
	cr_assert_eq(precopy_engine_sync(H.src), -EBUSY, "the migration was cancelled");
	h_migrate_ok();
}

Test(engine_ack, ack_twice_on_the_return_path)
{
	uint64_t flags[MAXDEV] = { ALLF };
	uint8_t ack[2 * PRECOPY_STREAM_REC_HDR_SIZE];

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	cr_assert_geq(precopy_engine_pump(H.src, 0), 20000); /* initial data and marker */
	cr_assert_eq(precopy_stream_encode_rp_ack(ack, sizeof(ack)), PRECOPY_STREAM_REC_HDR_SIZE);
	cr_assert_eq(precopy_stream_encode_rp_ack(ack + PRECOPY_STREAM_REC_HDR_SIZE, PRECOPY_STREAM_REC_HDR_SIZE),
		     PRECOPY_STREAM_REC_HDR_SIZE);
	cr_assert_eq(precopy_engine_rp_feed(H.src, ack, PRECOPY_STREAM_REC_HDR_SIZE), 0);
	cr_assert_eq(precopy_engine_rp_feed(H.src, ack + PRECOPY_STREAM_REC_HDR_SIZE, PRECOPY_STREAM_REC_HDR_SIZE),
		     -EPROTO);
	cr_assert(strstr(precopy_engine_strerror(H.src), "ACK"), "%s", precopy_engine_strerror(H.src));
	assert_all_running();
	h_migrate_ok();
}

Test(engine_ack, ack_after_switchover_decision)
{
	uint64_t flags[MAXDEV] = { VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P };
	struct precopy_decision d;
	uint8_t ack[PRECOPY_STREAM_REC_HDR_SIZE];
	int i;

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	for (i = 0; i < 20; i++) {
		cr_assert_geq(precopy_engine_sync(H.src), 0);
		uint64_t b = copy_pages();
		cr_assert_eq(precopy_engine_account(H.src, b, b), 0);
		atomic_fetch_add(&vnow, 1000);
		cr_assert_eq(precopy_engine_decide(H.src, &d), 0);
		if (d.action == PRECOPY_SWITCHOVER)
			break;
	}
	cr_assert_eq(d.action, PRECOPY_SWITCHOVER);
	cr_assert_eq(precopy_stream_encode_rp_ack(ack, sizeof(ack)), (int)sizeof(ack));
	cr_assert_eq(write(H.rp[1], ack, sizeof(ack)), (ssize_t)sizeof(ack));
	cr_assert_eq(precopy_engine_switchover(H.src), -EPROTO);
	cr_assert(strstr(precopy_engine_strerror(H.src), "after the switchover decision"), "%s",
		  precopy_engine_strerror(H.src));
	assert_all_running();
	h_migrate_ok();
}

Test(engine_ack, destination_error_on_the_return_path)
{
	uint64_t flags[MAXDEV] = { ALLF };
	uint8_t rec[256];
	int n;

	h_setup(1, flags, 1);
	h_engines();
	cr_assert_eq(precopy_engine_start(H.src), 0);
	n = precopy_stream_encode_rp_error(rec, sizeof(rec), 10, ENOSPC, "no room for device state");
	cr_assert_gt(n, 0);
	cr_assert_eq(write(H.rp[1], rec, (size_t)n), n);
	cr_assert_eq(precopy_engine_pump(H.src, 0), -ENOSPC);
	cr_assert(strstr(precopy_engine_strerror(H.src), "no room for device state"), "%s",
		  precopy_engine_strerror(H.src));
	assert_all_running();
	h_migrate_ok();
}
