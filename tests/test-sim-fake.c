/* SPDX-License-Identifier: MIT */
/* The simulator's additions to the fake VFIO device: the fast state-stream
 * fill/check against the byte-by-byte definition (every alignment and
 * length class across 8 KiB block and 32 KiB table boundaries), and DMA
 * into guest memory given only as a length (dma_log_only). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/fake.h"
#include "../fake/vfio_priv.h"

Test(sim_fake, stream_fill_matches_bytewise_definition)
{
	static uint8_t buf[70000];
	static const uint64_t offs[] = { 0, 1, 7, 8, 8191, 8192, 8193, 32767, 32768, 32769, 65535, 1ull << 33,
					 (1ull << 40) + 8189, UINT64_MAX - 69999 };
	static const size_t lens[] = { 1, 3, 8, 9, 63, 4096, 8192, 8193, 40000, 70000 };
	static const uint32_t seeds[] = { 0, 1, 0x1234, 0xdeadbeef };

	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++)
		for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
				size_t n = lens[l];

				memset(buf, 0xa5, sizeof(buf));
				fv_stream_fill(seeds[s], offs[o], buf, n);
				for (size_t i = 0; i < n; i++)
					cr_assert_eq(buf[i], precopy_fake_vfio_stream_byte(seeds[s], offs[o] + i),
						     "seed %u off %llu len %zu byte %zu", seeds[s],
						     (unsigned long long)offs[o], n, i);
				cr_assert_eq(buf[n < sizeof(buf) ? n : 0], n < sizeof(buf) ? 0xa5 : buf[0]);
				cr_assert_eq(fv_stream_check(seeds[s], offs[o], buf, n), 1);
				buf[n / 2] ^= 0x10; /* one flipped bit anywhere is caught */
				cr_assert_eq(fv_stream_check(seeds[s], offs[o], buf, n), 0);
			}
}

Test(sim_fake, log_only_dma_marks_without_memory)
{
	struct precopy_fake_kernel *fk = precopy_fake_kernel_new(NULL, NULL);
	struct precopy_fake_vfio_cfg c = { .mig_flags = VFIO_MIGRATION_STOP_COPY, .dma_logging = 1,
					   .stop_copy_bytes = 100 };
	struct precopy_fake_vfio *dev, *plain;
	struct precopy_fake_vfio_stats st;

	cr_assert(fk);
	/* without the flag, a NULL buffer is refused as before */
	cr_assert_geq(precopy_fake_vfio_new(fk, &c, &plain), 0);
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(plain, 0, NULL, 1ull << 40), -EINVAL);
	cr_assert_eq(precopy_fake_vfio_dma_write(plain, 0, 4096, 1), -EINVAL);
	c.dma_log_only = 1;
	cr_assert_geq(precopy_fake_vfio_new(fk, &c, &dev), 0);
	/* a 1 TiB guest that no memory backs */
	cr_assert_eq(precopy_fake_vfio_set_guest_mem(dev, 0, NULL, 1ull << 40), 0);
	cr_assert_eq(precopy_fake_vfio_dma_write(dev, (1ull << 40) - 4096, 4096, 1), 0); /* not logging: 0 marked */
	cr_assert_eq(precopy_fake_vfio_dma_write(dev, (1ull << 40) - 4096, 8192, 1), -EINVAL); /* past the end */
	precopy_fake_vfio_get_stats(dev, &st);
	cr_assert_eq(st.dma_pages, 1);
	precopy_fake_kernel_free(fk);
}
