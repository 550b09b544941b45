/* SPDX-License-Identifier: MIT */
/* precopy.h — umbrella header: includes every public precopy header. */
#ifndef PRECOPY_H
#define PRECOPY_H

#include "precopy/export.h"
#include "precopy/version.h"
#include "precopy/sys.h"
#include "precopy/bitmap.h"
#include "precopy/vfio.h"
#include "precopy/pci.h"
#include "precopy/kvm.h"
#include "precopy/backend.h"
#include "precopy/stream.h"
#include "precopy/log.h"
#include "precopy/estimator.h"
#include "precopy/engine.h"
#include "precopy/dest.h"
#include "precopy/vfio_user.h"

#endif /* PRECOPY_H */
