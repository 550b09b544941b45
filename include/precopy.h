/* precopy.h — umbrella header: includes every public precopy header. */
#ifndef PRECOPY_H
#define PRECOPY_H

#include "precopy/export.h"
#include "precopy/sys.h"
#include "precopy/bitmap.h"
#include "precopy/stream.h"

#endif /* PRECOPY_H */
