/* SPDX-License-Identifier: MIT */
/* ioctl/vfio_mig_priv.h — what the engine may do to a migration session
 * handle beyond precopy/vfio.h (internal). */
#ifndef PRECOPY_IOCTL_VFIO_MIG_PRIV_H
#define PRECOPY_IOCTL_VFIO_MIG_PRIV_H

#include <stdint.h>

#include "precopy/vfio.h"

/* Count n bytes read from the session's data fd by the caller itself (the
 * engine's asynchronous reads), as precopy_vfio_dev_read() counts its own,
 * so the status's bytes_read stays the whole truth. */
void precopy__vfio_dev_count_read(struct precopy_vfio_dev *dev, uint64_t n);
/* ... and n bytes written (the destination's asynchronous writes). */
void precopy__vfio_dev_count_write(struct precopy_vfio_dev *dev, uint64_t n);

#endif /* PRECOPY_IOCTL_VFIO_MIG_PRIV_H */
