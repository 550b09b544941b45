/* SPDX-License-Identifier: MIT */
/* tests/test-config-init.c — precopy_engine_config_init() and
 * precopy_dest_config_init(): every fd starts at -1 (a zeroed config
 * would take stdin as its return path), the defaults are the documented
 * ones, and a config filled this way plus only what the VMM must say
 * (RAM, the stream) creates an engine. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "precopy.h"

static int sink(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return 0;
}

static int rp_sink(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return 0;
}

Test(config_init, engine_defaults_and_fds)
{
	struct precopy_engine_config cfg;
	struct precopy_policy pol;
	struct precopy_ram_slot slot = { .gpa = 0, .size = 64 << 20, .page_size = 4096 };
	struct precopy_bitmap live;
	struct precopy_engine *e;
	uint64_t t0, t1;
	int err = 1;

	memset(&cfg, 0x5a, sizeof(cfg));
	precopy_engine_config_init(&cfg);
	cr_assert_eq(cfg.version, PRECOPY_ENGINE_CONFIG_VERSION);
	cr_assert_eq(cfg.stream_fd, -1);
	cr_assert_eq(cfg.rp_fd, -1);
	cr_assert_eq(cfg.kvm_vm_fd, -1);
	cr_assert_eq(cfg.kvm.version, PRECOPY_KVM_CONFIG_VERSION);
	cr_assert_eq(cfg.sys, precopy_sys_real());
	cr_assert_null(cfg.sink);
	cr_assert_null(cfg.devices);
	cr_assert_eq(cfg.ndevices, 0);
	cr_assert_eq(cfg.exact_margin_pct, 0);
	precopy_policy_defaults(&pol);
	cr_assert(!memcmp(&cfg.policy, &pol, sizeof(pol)), "policy is not precopy_policy_defaults()");
	cr_assert_not_null(cfg.clock.now_ns);
	t0 = cfg.clock.now_ns(cfg.clock.ctx);
	t1 = cfg.clock.now_ns(cfg.clock.ctx);
	cr_assert(t0 > 0 && t1 >= t0, "clock %llu then %llu", (unsigned long long)t0, (unsigned long long)t1);

	/* what a VMM must still say: its RAM and where the stream goes */
	cr_assert_eq(precopy_bitmap_alloc(&live, slot.size / slot.page_size, PRECOPY_NUMA_LOCAL), 0);
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_source = PRECOPY_RAM_BITMAP;
	cfg.ram_bitmap = &live;
	cfg.sink = sink;
	e = precopy_engine_new(&cfg, &err);
	cr_assert_not_null(e, "engine from an initialised config: %d", err);
	precopy_engine_free(e);
	/* a zeroed config with the same fields names fd 0 as its stream too:
	 * refused (both stream_fd and sink) rather than writing to stdin */
	memset(&cfg, 0, sizeof(cfg));
	cfg.version = PRECOPY_ENGINE_CONFIG_VERSION;
	cfg.clock = precopy_clock_monotonic();
	cfg.sys = precopy_sys_real();
	precopy_policy_defaults(&cfg.policy);
	cfg.slots = &slot;
	cfg.nslots = 1;
	cfg.ram_source = PRECOPY_RAM_BITMAP;
	cfg.ram_bitmap = &live;
	cfg.sink = sink;
	cr_assert_null(precopy_engine_new(&cfg, &err));
	cr_assert_eq(err, -EINVAL);
	precopy_bitmap_free(&live);
	precopy_engine_config_init(NULL);
}

Test(config_init, dest_defaults_and_fds)
{
	struct precopy_dest_config cfg;
	struct precopy_dest *d;
	int err = 1;

	memset(&cfg, 0x5a, sizeof(cfg));
	precopy_dest_config_init(&cfg);
	cr_assert_eq(cfg.version, PRECOPY_DEST_CONFIG_VERSION);
	cr_assert_eq(cfg.stream_fd, -1);
	cr_assert_eq(cfg.rp_fd, -1);
	cr_assert_eq(cfg.sys, precopy_sys_real());
	cr_assert_null(cfg.rp_sink);
	cr_assert_null(cfg.devices);
	cr_assert_eq(cfg.ndevices, 0);
	cr_assert_eq(cfg.nbackends, 0);
	cr_assert_eq(cfg.io_timeout_ns, 0);
	cr_assert_not_null(cfg.clock.now_ns);
	/* only the return path to say: a destination for a VM without devices */
	cfg.rp_sink = rp_sink;
	d = precopy_dest_new(&cfg, &err);
	cr_assert_not_null(d, "destination from an initialised config: %d", err);
	precopy_dest_free(d);
	precopy_dest_config_init(NULL);
}
