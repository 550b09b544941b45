/* SPDX-License-Identifier: MIT */
/* Configurations filled with every default, so that a caller sets only
 * what differs: fds start at -1 (a zeroed struct would name stdin), the
 * clock is CLOCK_MONOTONIC, the sys table the real kernel's, the policy
 * precopy_policy_defaults(). */
#include <string.h>
#include <time.h>

#include "precopy/dest.h"
#include "precopy/kvm.h"
#include "precopy/sys.h"

static uint64_t mono_now(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	/* CLOCK_MONOTONIC exists on every Linux; it cannot fail here */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

PRECOPY_API struct precopy_clock precopy_clock_monotonic(void)
{
	struct precopy_clock c = { mono_now, NULL };

	return c;
}

PRECOPY_API void precopy_engine_config_init(struct precopy_engine_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->version = PRECOPY_ENGINE_CONFIG_VERSION;
	cfg->clock = precopy_clock_monotonic();
	cfg->sys = precopy_sys_real();
	cfg->kvm_vm_fd = -1;
	cfg->kvm.version = PRECOPY_KVM_CONFIG_VERSION;
	cfg->stream_fd = -1;
	cfg->rp_fd = -1;
	precopy_policy_defaults(&cfg->policy);
}

PRECOPY_API void precopy_dest_config_init(struct precopy_dest_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->version = PRECOPY_DEST_CONFIG_VERSION;
	cfg->clock = precopy_clock_monotonic();
	cfg->sys = precopy_sys_real();
	cfg->stream_fd = -1;
	cfg->rp_fd = -1;
}
