/* SPDX-License-Identifier: MIT */
/* tests/tsan/criterion/logging.h — cr_log_* for the ThreadSanitizer
 * build: see criterion.h beside it. */
#include "criterion.h"
