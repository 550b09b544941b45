/* SPDX-License-Identifier: MIT */
/* KVM dirty log: every -errno the API documents, against the real
 * /dev/kvm, with the failures only a misbehaving kernel produces injected
 * through the forwarding sys table of kvm_fixture.h; and, for each failing
 * sync, proof that no dirty page was lost. Skips where /dev/kvm is absent. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <linux/kvm.h>

#include "lib/kvm_fixture.h"

/* ---- -errno: creation --------------------------------------------------- */

struct new_case {
	const char *what;
	struct precopy_kvm_log_config cfg;
	int bad_fd;     /* pass -1 as the VM fd */
	long cap[2];    /* injected KVM_CHECK_EXTENSION answers */
	int val[2];
	int expect;
};

#define CFG(m, f, rb, cc) { .version = PRECOPY_KVM_CONFIG_VERSION, .mode = (m), .flags = (f), \
			    .ring_bytes = (rb), .clear_chunk_pages = (cc) }

static const struct new_case new_cases[] = {
	{ "bad fd", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 0, 0), 1, {0}, {0}, -EBADF },
	{ "version 0", { .version = 0, .mode = PRECOPY_KVM_LOG_CLASSIC }, 0, {0}, {0}, -EINVAL },
	{ "mode 0", CFG(0, 0, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "mode 9", CFG(9, 0, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + INITIALLY_SET", CFG(PRECOPY_KVM_LOG_CLASSIC, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + ring size", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 65536, 0), 0, {0}, {0}, -EINVAL },
	{ "classic + chunk", CFG(PRECOPY_KVM_LOG_CLASSIC, 0, 0, 64), 0, {0}, {0}, -EINVAL },
	{ "manual unknown flag", CFG(PRECOPY_KVM_LOG_MANUAL, 1u << 7, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "manual + ring size", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 65536, 0), 0, {0}, {0}, -EINVAL },
	{ "manual chunk 100", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 100), 0, {0}, {0}, -EINVAL },
	{ "manual chunk 2^32", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 1ull << 32), 0, {0}, {0}, -EINVAL },
	{ "ring 5000 bytes", CFG(PRECOPY_KVM_LOG_RING, 0, 5000, 0), 0, {0}, {0}, -EINVAL },
	{ "ring 2048 bytes", CFG(PRECOPY_KVM_LOG_RING, 0, 2048, 0), 0, {0}, {0}, -EINVAL },
	{ "ring + flag", CFG(PRECOPY_KVM_LOG_RING, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0, {0}, {0}, -EINVAL },
	{ "ring + chunk", CFG(PRECOPY_KVM_LOG_RING, 0, 0, 64), 0, {0}, {0}, -EINVAL },
	{ "manual absent", CFG(PRECOPY_KVM_LOG_MANUAL, 0, 0, 0), 0,
	  { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 }, { 0 }, -EOPNOTSUPP },
	{ "INITIALLY_SET absent", CFG(PRECOPY_KVM_LOG_MANUAL, PRECOPY_KVM_INITIALLY_SET, 0, 0), 0,
	  { KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 }, { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE }, -EOPNOTSUPP },
	{ "ring absent", CFG(PRECOPY_KVM_LOG_RING, 0, 0, 0), 0,
	  { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING }, { 0, 0 }, -EOPNOTSUPP },
	{ "ring above max", CFG(PRECOPY_KVM_LOG_RING, 0, 1u << 20, 0), 0,
	  { KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING }, { 1 << 19, 1 << 19 }, -E2BIG },
};

Test(kvm_log_errors, new_rejects_each_bad_config)
{
	need_kvm();
	for (size_t i = 0; i < sizeof(new_cases) / sizeof(new_cases[0]); i++) {
		const struct new_case *c = &new_cases[i];
		struct kvm_guest g;
		struct inject in;
		struct precopy_sys sys = { .ops = &inj_ops, .ctx = &in };
		int err = 1;

		memset(&in, 0, sizeof(in));
		for (int k = 0; k < 2; k++) {
			in.ext_cap[k] = c->cap[k];
			in.ext_val[k] = c->val[k];
		}
		cr_assert_eq(kvm_guest_open(&g), 0);
		struct precopy_kvm_log *log = precopy_kvm_log_new(&sys, c->bad_fd ? -1 : g.vm_fd, &c->cfg, &err);
		cr_assert_null(log, "%s: created", c->what);
		cr_assert_eq(err, c->expect, "%s: %d, expected %d", c->what, err, c->expect);
		kvm_guest_close(&g);
	}
}

Test(kvm_log_errors, new_null_arguments)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_CLASSIC, 0);
	struct precopy_sys_ops bad_ops = inj_ops;
	struct precopy_sys bad = { .ops = &bad_ops, .ctx = NULL };
	int err = 0;

	bad_ops.version = 99;
	cr_assert_null(precopy_kvm_log_new(NULL, 3, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(&bad, 3, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), 3, NULL, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), 3, NULL, NULL)); /* err optional */
	cr_assert_eq(precopy_kvm_log_probe(NULL, 3, PRECOPY_KVM_LOG_CLASSIC), -EINVAL);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), -1, PRECOPY_KVM_LOG_CLASSIC), -EBADF);
	cr_assert_eq(precopy_kvm_log_add_slot(NULL, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_add_vcpu(NULL, 3, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_start(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_stop(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_sync(NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_stats(NULL, NULL), -EINVAL);
	precopy_kvm_log_free(NULL);
}

Test(kvm_log_errors, probe_and_new_pass_kernel_errors_through)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_MANUAL, 0);
	struct kvm_guest g;
	int err = 0;

	need_kvm();
	cr_assert_eq(kvm_guest_open(&g), 0);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), g.vm_fd, 7), -EINVAL);
	/* /dev/kvm itself is not a VM fd for the dirty log ioctls, but a
	 * descriptor with no KVM ioctls at all fails KVM_CHECK_EXTENSION. */
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(devnull, 0);
	cr_assert_eq(precopy_kvm_log_probe(precopy_sys_real(), devnull, PRECOPY_KVM_LOG_RING), -ENOTTY);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), devnull, &cfg, &err));
	cr_assert_eq(err, -ENOTTY);
	close(devnull);

	/* KVM_ENABLE_CAP failing is returned as is. */
	struct inject in = { .fail_req = KVM_ENABLE_CAP, .fail_nth = 1, .fail_err = -EIO };
	struct precopy_sys sys = { .ops = &inj_ops, .ctx = &in };
	cr_assert_null(precopy_kvm_log_new(&sys, g.vm_fd, &cfg, &err));
	cr_assert_eq(err, -EIO);
	kvm_guest_close(&g);
}

Test(kvm_log_errors, ring_after_vcpu_creation_is_the_kernels_einval)
{
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_RING, 0);
	struct kvm_guest g;
	int err = 0;

	need_kvm();
	cr_assert_eq(kvm_guest_std_open(&g, kvm_guest_list_code, kvm_guest_list_code_len), 0);
	if (precopy_kvm_log_probe(precopy_sys_real(), g.vm_fd, PRECOPY_KVM_LOG_RING) == -EOPNOTSUPP)
		cr_skip_test("this kernel has no dirty ring");
	cr_assert_eq(kvm_guest_add_vcpu(&g, KG_CODE_GPA), 0);
	cr_assert_null(precopy_kvm_log_new(precopy_sys_real(), g.vm_fd, &cfg, &err));
	cr_assert_eq(err, -EINVAL);
	kvm_guest_close(&g);
}

/* ---- -errno: slots, vCPUs, start/stop ------------------------------------ */

Test(kvm_log_errors, add_slot_validates_each_field)
{
	struct fx f;
	struct precopy_bitmap other = { 0 };

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_stop(f.log), 0);
	cr_assert_eq(precopy_kvm_log_stop(f.log), -EALREADY);

	struct precopy_kvm_slot base = slot_desc(&f, 0);
	base.slot = 7; /* a new number, so only the field under test can fail */
	struct { const char *what; struct precopy_kvm_slot s; int expect; } cases[8];
	int n = 0;
#define CASE(w, field, value, e) do { cases[n].what = (w); cases[n].s = base; cases[n].s.field = (value); \
				      cases[n].expect = (e); n++; } while (0)
	CASE("no RAM log", log, NULL, -EINVAL);
	CASE("RAM log without words", log, &other, -EINVAL);
	CASE("size 0", memory_size, 0, -EINVAL);
	CASE("size not 4K", memory_size, 4095, -EINVAL);
	CASE("gpa not 4K", guest_phys_addr, 0x800, -EINVAL);
	CASE("uaddr not 4K", userspace_addr, base.userspace_addr + 8, -EINVAL);
	CASE("guest_memfd flag", flags, 1u << 2, -EINVAL);
	CASE("gpa + size overflows", guest_phys_addr, ~0xfffull, -ERANGE);
#undef CASE
	for (int i = 0; i < n; i++)
		cr_assert_eq(precopy_kvm_log_add_slot(f.log, &cases[i].s), cases[i].expect, "%s", cases[i].what);
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, NULL), -EINVAL);

	/* The RAM log bounds: one page past the end, the start past the end,
	 * and exactly fitting. */
	struct precopy_kvm_slot s = base;
	s.log_bit = LOG_NBITS - KG_SLOT0_PAGES + 1;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = LOG_NBITS + 1;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = ~0ull;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -ERANGE);
	s.log_bit = LOG_NBITS - KG_SLOT0_PAGES;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), 0);
	/* Same number again; and the fixture's slot 0. */
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EEXIST);
	s = slot_desc(&f, 0);
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EEXIST);

	struct precopy_kvm_log_stats st;
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.nslots, 3);
	cr_assert_eq(precopy_kvm_log_stats(f.log, NULL), -EINVAL);

	/* Slot 7 is not a KVM slot: start() would ask KVM to create it, at
	 * slot 0's address, and KVM refuses the overlap with -EEXIST; start
	 * then switches slots 1 and 0 back. */
	f.in.calls_setmem = 0;
	cr_assert_eq(precopy_kvm_log_start(f.log), -EEXIST);
	cr_assert_eq(f.in.calls_setmem, 3 + 2); /* 0, 1, 7 (refused), then 1, 0 back */
	cr_assert_eq(f.in.last_setmem.slot, 0);
	cr_assert_eq(f.in.last_setmem.flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ENOENT, "logging must be off after the rollback");
	fx_close(&f);
}

Test(kvm_log_errors, start_stop_sequence)
{
	struct fx f;
	struct precopy_kvm_log_config cfg = mode_cfg(PRECOPY_KVM_LOG_CLASSIC, 0);
	int err;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), -EALREADY);
	struct precopy_kvm_slot s = slot_desc(&f, 1);
	s.slot = 9;
	cr_assert_eq(precopy_kvm_log_add_slot(f.log, &s), -EBUSY);
	cr_assert_eq(precopy_kvm_log_stop(f.log), 0);
	/* Logging off: KVM has no log to give. */
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ENOENT);

	/* A failure on the second slot switches the first one back. */
	f.in.fail_req = KVM_SET_USER_MEMORY_REGION;
	f.in.fail_nth = f.in.seen + 2;
	f.in.fail_err = -EIO;
	f.in.calls_setmem = 0;
	cr_assert_eq(precopy_kvm_log_start(f.log), -EIO);
	cr_assert_eq(f.in.calls_setmem, 3);
	cr_assert_eq(f.in.last_setmem.slot, 0);
	cr_assert_eq(f.in.last_setmem.flags & KVM_MEM_LOG_DIRTY_PAGES, 0);
	cr_assert_eq(precopy_kvm_log_start(f.log), 0, "a failed start leaves the log stopped");

	/* A description whose size differs from KVM's slot: KVM refuses. */
	struct precopy_kvm_log *l2 = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(l2);
	s = slot_desc(&f, 1);
	s.memory_size -= 4096;
	cr_assert_eq(precopy_kvm_log_add_slot(l2, &s), 0);
	cr_assert_eq(precopy_kvm_log_start(l2), -EINVAL);
	precopy_kvm_log_free(l2);

	/* An empty log has nothing to start. */
	l2 = precopy_kvm_log_new(precopy_sys_real(), f.g.vm_fd, &cfg, &err);
	cr_assert_not_null(l2);
	cr_assert_eq(precopy_kvm_log_start(l2), -ENOENT);
	cr_assert_eq(precopy_kvm_log_sync(l2), 0);
	precopy_kvm_log_free(l2);
	fx_close(&f);
}

Test(kvm_log_errors, add_vcpu_errors)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), -EINVAL, "not in ring mode");
	fx_close(&f);

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, -1, NULL), -EINVAL);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vcpu_fd, NULL), -EEXIST);
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, f.g.vm_fd, NULL), -ENODEV, "a VM fd has no ring to map");
	f.in.mmap_err = -ENOMEM;
	cr_assert_eq(precopy_kvm_log_add_vcpu(f.log, 1000, NULL), -ENOMEM);
	struct precopy_kvm_log_stats st;
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.nvcpus, 1);
	fx_close(&f);
}

/* ---- -errno from the kernel during sync: nothing is lost ---------------- */

static const uint16_t both_slots[] = { 20, 30, 150, 200 };

Test(kvm_log_errors, classic_get_failure_keeps_the_rest_in_the_kernel)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_GET_DIRTY_LOG;
	f.in.fail_nth = 2; /* slot 1's GET */
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 2, "slot 0 was merged");
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2, "slot 1's pages are still in the kernel");
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
}

Test(kvm_log_errors, manual_clear_failure_reports_the_pages_again)
{
	struct fx f;
	struct precopy_kvm_log_stats st;

	fx_open(&f, PRECOPY_KVM_LOG_MANUAL, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_CLEAR_DIRTY_LOG;
	f.in.fail_nth = 1;
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 2, "slot 0 was merged before its CLEAR failed");
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2, "slot 1 is new; slot 0 is reported again");
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	cr_assert_eq(st.last_pages, 4);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	fx_close(&f);
}

Test(kvm_log_errors, ring_reset_count_mismatch_is_eproto)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.reset_bias = 1;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EPROTO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4, "the harvest was merged");
	f.in.reset_bias = 0;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0);
	guest_write(&f, both_slots, 2, 2);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 2);
	fx_close(&f);
}

Test(kvm_log_errors, ring_reset_failure_is_retried_next_sync)
{
	struct fx f;
	struct precopy_kvm_log_stats st;

	fx_open(&f, PRECOPY_KVM_LOG_RING, 0);
	guest_write(&f, both_slots, 4, 1);
	f.in.fail_req = KVM_RESET_DIRTY_RINGS;
	f.in.fail_nth = 1;
	f.in.fail_err = -EIO;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -EIO);
	cr_assert_eq(precopy_bitmap_count(&f.ram), 4, "the harvest was merged");
	/* The next reset covers the 4 pending entries plus the new ones. */
	guest_write(&f, &both_slots[2], 2, 2);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 0, "pages 150, 200 are already in the RAM log");
	cr_assert_eq(precopy_kvm_log_stats(f.log, &st), 0);
	/* Whether KVM logs 150 and 200 again before the reset is its business;
	 * the reset must count the 4 pending entries plus whatever came now. */
	cr_assert_leq(st.last_pages, 2);
	cr_assert_eq(st.last_reset, 4 + st.last_entries);
	guest_write(&f, both_slots, 4, 3);
	precopy_bitmap_zero(&f.ram);
	cr_assert_eq(precopy_kvm_log_sync(f.log), 4);
	fx_close(&f);
}

Test(kvm_log_errors, sync_rechecks_the_ram_log_bounds_first)
{
	struct fx f;

	fx_open(&f, PRECOPY_KVM_LOG_CLASSIC, 0);
	guest_write(&f, both_slots, 4, 1);
	uint64_t nbits = f.ram.nbits;
	f.ram.nbits = LOG_BIT1 + 10; /* the caller broke the rule: slot 1 no longer fits */
	int calls = f.in.calls_get;
	cr_assert_eq(precopy_kvm_log_sync(f.log), -ERANGE);
	cr_assert_eq(f.in.calls_get, calls, "nothing taken from the kernel");
	f.ram.nbits = nbits;
	cr_assert_eq(precopy_kvm_log_sync(f.log), 4);
	fx_close(&f);
}
