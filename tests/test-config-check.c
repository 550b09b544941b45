/* SPDX-License-Identifier: MIT */
/* tests/test-config-check.c — precopy_engine_config_check() and
 * precopy_policy_check(): every refusal of precopy_engine_new() that does
 * not need a device names its field and rule, and the check returns what
 * precopy_engine_new() fails with. */
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

static struct precopy_ram_slot slots[2];
static struct precopy_bitmap live;
static struct precopy_engine_device devs[2];

static void valid(struct precopy_engine_config *c)
{
	precopy_engine_config_init(c);
	slots[0] = (struct precopy_ram_slot){ .gpa = 0, .size = 1 << 20, .page_size = 4096 };
	slots[1] = (struct precopy_ram_slot){ .gpa = 2 << 20, .size = 1 << 20, .page_size = 4096 };
	c->slots = slots;
	c->nslots = 2;
	c->ram_source = PRECOPY_RAM_BITMAP;
	c->ram_bitmap = &live;
	c->sink = sink;
	devs[0] = (struct precopy_engine_device){ .id = 1, .device_fd = 100 };
	devs[1] = (struct precopy_engine_device){ .id = 2, .device_fd = 101 };
	c->devices = devs;
	c->ndevices = 0; /* the fds above are not devices: checks only */
}

Test(config_check, every_refusal_names_its_field)
{
	static const struct {
		const char *what, *expect;
		int err;
	} t[] = {
		{ "version", "version: 7", -EINVAL },
		{ "clock", "clock.now_ns", -EINVAL },
		{ "sys", "sys:", -EINVAL },
		{ "no slot", "slots: at least one", -EINVAL },
		{ "page size", "slots[0].page_size: 1000", -EINVAL },
		{ "page sizes differ", "slots[1].page_size: 8192 differs", -EINVAL },
		{ "misaligned", "slots[1]: gpa and size", -EINVAL },
		{ "wrap", "slots[1]: gpa + size wraps", -EINVAL },
		{ "overlap", "slots[1]: overlaps slots[0]", -EINVAL },
		{ "bitmap missing", "ram_bitmap: required", -EINVAL },
		{ "bitmap size", "ram_bitmap: 10 bits, the slots span 768 pages", -EINVAL },
		{ "kvm fd", "kvm_vm_fd: required", -EINVAL },
		{ "ram source", "ram_source: 9", -EINVAL },
		{ "devices NULL", "devices: NULL with ndevices 1", -EINVAL },
		{ "too many", "ndevices + nbackends", -E2BIG },
		{ "device id", "devices[0].id: PRECOPY_STREAM_DEV_NONE", -EINVAL },
		{ "device fd", "devices[1].device_fd: -1", -EINVAL },
		{ "device name", "devices[0].name: printable", -EINVAL },
		{ "device flags", "devices[0].flags: unknown bits", -EINVAL },
		{ "duplicate id", "devices[1].id: 1, also devices[0]'s", -EINVAL },
		{ "both streams", "stream_fd / sink: exactly one (stream_fd 0, sink set)", -EINVAL },
		{ "no stream", "stream_fd / sink: exactly one (stream_fd -1, sink NULL)", -EINVAL },
		{ "max_chunk", "max_chunk: 100", -EINVAL },
		{ "policy", "policy.bw_window: must be 1..64", -EINVAL },
	};
	char msg[256];

	cr_assert_eq(precopy_bitmap_alloc(&live, 768, PRECOPY_NUMA_LOCAL), 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_engine_config c;
		struct precopy_bitmap small = { 0 };
		uint64_t w = 0;
		int r, err = 0;

		valid(&c);
		r = precopy_engine_config_check(&c, msg, sizeof(msg));
		cr_assert_eq(r, 0, "the valid config: %s", msg);
		switch (i) {
		case 0: c.version = 7; break;
		case 1: c.clock.now_ns = NULL; break;
		case 2: c.sys = NULL; break;
		case 3: c.nslots = 0; break;
		case 4: slots[0].page_size = 1000; break;
		case 5: slots[1].page_size = 8192; break;
		case 6: slots[1].gpa += 100; break;
		case 7: slots[1].gpa = UINT64_MAX - 4095; break;
		case 8: slots[1].gpa = 4096; break;
		case 9: c.ram_bitmap = NULL; break;
		case 10: precopy_bitmap_wrap(&small, &w, 10); c.ram_bitmap = &small; break;
		case 11: c.ram_source = PRECOPY_RAM_KVM; break;
		case 12: c.ram_source = 9; break;
		case 13: c.devices = NULL; c.ndevices = 1; break;
		case 14: c.ndevices = PRECOPY_STREAM_CAP_MAX_DEVICES; c.nbackends = 1; break;
		case 15: c.ndevices = 1; devs[0].id = PRECOPY_STREAM_DEV_NONE; break;
		case 16: c.ndevices = 2; devs[1].device_fd = -1; break;
		case 17: c.ndevices = 1; devs[0].name = "a\tb"; break;
		case 18: c.ndevices = 1; devs[0].flags = 0x80; break;
		case 19: c.ndevices = 2; devs[1].id = 1; break;
		case 20: c.stream_fd = 0; break;
		case 21: c.sink = NULL; break;
		case 22: c.max_chunk = 100; break;
		case 23: c.policy.bw_window = 0; break;
		}
		if (i == 14) {
			/* a big devices array is not needed: the count is checked first */
			static struct precopy_engine_device many[PRECOPY_STREAM_CAP_MAX_DEVICES];
			static struct precopy_engine_backend be[1];
			c.devices = many;
			c.backends = be;
		}
		r = precopy_engine_config_check(&c, msg, sizeof(msg));
		cr_assert_eq(r, t[i].err, "%s: returned %d", t[i].what, r);
		cr_assert(strstr(msg, t[i].expect), "%s: message \"%s\", expected \"%s\"", t[i].what, msg, t[i].expect);
		/* precopy_engine_new() refuses it with the same value */
		cr_assert_null(precopy_engine_new(&c, &err), "%s: engine created", t[i].what);
		cr_assert_eq(err, t[i].err, "%s: engine_new said %d", t[i].what, err);
	}
	cr_assert_eq(precopy_engine_config_check(NULL, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "NULL"));
	cr_assert_eq(precopy_engine_config_check(NULL, NULL, 0), -EINVAL);
	precopy_bitmap_free(&live);
}

Test(config_check, policy_rules)
{
	struct precopy_policy p;
	char msg[128];

	precopy_policy_defaults(&p);
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), 0);
	cr_assert_eq(msg[0], 0);
	p.throttle_max = 100;
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "policy.throttle_max"), "%s", msg);
	precopy_policy_defaults(&p);
	p.throttle_increment = 0;
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "policy.throttle_increment"), "%s", msg);
	precopy_policy_defaults(&p);
	p.downtime_limit_ns = 0;
	cr_assert_eq(precopy_policy_check(&p, msg, sizeof(msg)), -EINVAL);
	cr_assert(strstr(msg, "policy.downtime_limit_ns"), "%s", msg);
	cr_assert_eq(precopy_policy_check(NULL, NULL, 0), -EINVAL);
}

static int rp_sink(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return 0;
}

Test(config_check, destination_refusals_name_their_field)
{
	static const struct {
		const char *what, *expect;
		int err;
	} t[] = {
		{ "version", "version: 0", -EINVAL },
		{ "clock", "clock.now_ns", -EINVAL },
		{ "devices NULL", "devices: NULL with ndevices 2", -EINVAL },
		{ "both return paths", "rp_fd / rp_sink: exactly one (rp_fd 0, rp_sink set)", -EINVAL },
		{ "no return path", "rp_fd / rp_sink: exactly one (rp_fd -1, rp_sink NULL)", -EINVAL },
		{ "device id", "devices[0].id: PRECOPY_STREAM_DEV_NONE", -EINVAL },
		{ "device fd", "devices[1].device_fd: -5", -EINVAL },
		{ "duplicate", "devices[1].id: 3 is taken", -EINVAL },
		{ "limits", "limits:", -EINVAL },
		{ "too many", "ndevices + nbackends", -E2BIG },
	};
	static struct precopy_dest_device dd[2];
	char msg[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct precopy_dest_config c;
		int r, err = 0;

		precopy_dest_config_init(&c);
		c.rp_sink = rp_sink;
		dd[0] = (struct precopy_dest_device){ .id = 3, .device_fd = 100 };
		dd[1] = (struct precopy_dest_device){ .id = 4, .device_fd = 101 };
		c.devices = dd;
		cr_assert_eq(precopy_dest_config_check(&c, msg, sizeof(msg)), 0, "the valid config: %s", msg);
		switch (i) {
		case 0: c.version = 0; break;
		case 1: c.clock.now_ns = NULL; break;
		case 2: c.devices = NULL; c.ndevices = 2; break;
		case 3: c.rp_fd = 0; break;
		case 4: c.rp_sink = NULL; break;
		case 5: c.ndevices = 1; dd[0].id = PRECOPY_STREAM_DEV_NONE; break;
		case 6: c.ndevices = 2; dd[1].device_fd = -5; break;
		case 7: c.ndevices = 2; dd[1].id = 3; break;
		case 8: c.limits.max_chunk = PRECOPY_STREAM_CAP_MAX_CHUNK + 1; break;
		case 9: {
			static struct precopy_dest_device many[PRECOPY_STREAM_CAP_MAX_DEVICES + 1];
			c.devices = many;
			c.ndevices = PRECOPY_STREAM_CAP_MAX_DEVICES + 1;
			break;
		}
		}
		r = precopy_dest_config_check(&c, msg, sizeof(msg));
		cr_assert_eq(r, t[i].err, "%s: returned %d (%s)", t[i].what, r, msg);
		cr_assert(strstr(msg, t[i].expect), "%s: message \"%s\", expected \"%s\"", t[i].what, msg, t[i].expect);
		cr_assert_null(precopy_dest_new(&c, &err), "%s: destination created", t[i].what);
		cr_assert_eq(err, t[i].err, "%s: dest_new said %d", t[i].what, err);
	}
}
