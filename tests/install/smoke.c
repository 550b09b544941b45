/* SPDX-License-Identifier: MIT */
/* The smallest program built against an installed libprecopy
 * (tests/check-install.sh): it includes the umbrella header as an installed
 * program does and calls into the parts whose dependencies a static link
 * must name: the bitmap code (libnuma), the estimator (libm), the pump
 * (liburing) and the PCI scan (libpci). Exits 0 when every call answers as
 * its header says. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <precopy.h>

static int fail(const char *what)
{
	fprintf(stderr, "smoke: %s\n", what);
	return 1;
}


int main(void)
{
	struct precopy_bitmap bm;
	struct precopy_policy pol;
	struct precopy_estimator *est;
	struct precopy_iteration it = { .end_ns = 1000000000, .send_ns = 100000000, .bytes_sent = 100 << 20,
					.dirtied_bytes = 10 << 20, .ram_pending = 1 << 20 };
	struct precopy_decision d;
	int err;

	memset(&bm, 0, sizeof(bm));
	if (precopy_bitmap_alloc(&bm, 4096, PRECOPY_NUMA_LOCAL) < 0 || precopy_bitmap_set_range(&bm, 0, 7) != 7)
		return fail("bitmap");
	precopy_bitmap_free(&bm);

	precopy_policy_defaults(&pol);
	est = precopy_estimator_new(&pol, &err);
	if (!est)
		return fail("estimator_new");
	if (precopy_estimator_record(est, &it) < 0 || precopy_estimator_decide(est, NULL, 0, 0, it.end_ns, &d) < 0)
		return fail("estimator");
	precopy_estimator_free(est);
	/* 1 MiB pending at 1000 MiB/s is about 1 ms: within the 300 ms limit */
	if (d.action != PRECOPY_SWITCHOVER)
		return fail("estimator: 1 MiB pending at 1 GB/s should switch over");

	if (precopy_pci_scan(NULL, NULL, NULL, 0) != -EINVAL)
		return fail("pci: a scan into NULL must be refused");

	if (precopy_version() != PRECOPY_VERSION)
		return fail("precopy_version() differs from the installed headers' PRECOPY_VERSION");
	printf("smoke: libprecopy %d.%d.%d works, the estimator says %s\n", PRECOPY_VERSION_MAJOR,
	       PRECOPY_VERSION_MINOR, PRECOPY_VERSION_PATCH, precopy_action_name(d.action));
	return 0;
}
