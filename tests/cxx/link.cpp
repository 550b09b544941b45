// SPDX-License-Identifier: MIT
// A C++17 program that includes <precopy.h> and calls one function of each
// public header, linked against libprecopy.so. It fails to link where a
// header lacks its extern "C" block (the C++ compiler then asks for
// mangled names), and fails at run time where a call does not answer as
// the header says. Exit 0 = every check passed.
#include <precopy.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

static int failures;

static void check(bool ok, const char *what)
{
	if (!ok) {
		std::fprintf(stderr, "link-cxx: FAILED: %s\n", what);
		failures++;
	}
}

int main()
{
	// precopy/version.h
	check(precopy_version() == PRECOPY_VERSION, "version.h: library and headers agree");

	// precopy/sys.h
	const struct precopy_sys *sys = precopy_sys_real();
	check(sys != nullptr && precopy_sys_validate(sys) == 0, "sys.h: precopy_sys_real() validates");

	// precopy/bitmap.h
	struct precopy_bitmap bm;
	std::memset(&bm, 0, sizeof(bm));
	check(precopy_bitmap_alloc(&bm, 1000, PRECOPY_NUMA_LOCAL) == 0, "bitmap.h: alloc");
	check(precopy_bitmap_set_range(&bm, 10, 5) >= 0, "bitmap.h: set_range");
	check(precopy_bitmap_count(&bm) == 5, "bitmap.h: count");
	precopy_bitmap_free(&bm);

	// precopy/vfio.h
	check(std::strcmp(precopy_vfio_state_name(3 /* VFIO_DEVICE_STATE_STOP_COPY */), "STOP_COPY") == 0,
	      "vfio.h: state name");

	// precopy/pci.h
	struct precopy_pci_addr a;
	char buf[PRECOPY_PCI_ADDR_STRLEN];
	check(precopy_pci_addr_parse("0000:3b:00.1", &a) == 0 && a.bus == 0x3b && a.func == 1, "pci.h: parse");
	check(precopy_pci_addr_format(&a, buf, sizeof(buf)) > 0 && std::strcmp(buf, "0000:3b:00.1") == 0,
	      "pci.h: format");

	// precopy/kvm.h: no VM fd is -EBADF, whether or not the host has KVM
	check(precopy_kvm_log_probe(sys, -1, PRECOPY_KVM_LOG_CLASSIC) == -EBADF, "kvm.h: probe without a VM");

	// precopy/backend.h
	int err = 0;
	check(precopy_backend_xfer_new(nullptr, nullptr, sys, &err) == nullptr && err == -EINVAL,
	      "backend.h: NULL ops refused");

	// precopy/stream.h: crc32c("123456789") is the standard check value
	check(precopy_stream_crc32c(0, "123456789", 9) == 0xe3069283u, "stream.h: crc32c check value");

	// precopy/engine.h
	struct precopy_policy pol;
	precopy_policy_defaults(&pol);
	check(pol.downtime_limit_ns == 300000000ull, "engine.h: policy defaults");
	struct precopy_estimator *est = precopy_estimator_new(&pol, &err);
	check(est != nullptr, "engine.h: estimator_new");
	precopy_estimator_free(est);

	if (failures)
		return 1;
	std::printf("link-cxx: C++17 program linked against libprecopy, %d headers called\n", 10);
	return 0;
}
