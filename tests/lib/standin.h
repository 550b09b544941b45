/* SPDX-License-Identifier: MIT */
/* tests/lib/standin.h — a device stand-in as an fd back-end
 * (precopy_backend_ops): on SAVE a thread writes `size` bytes to the fd
 * the engine gives it, no faster than `rate` bytes per second, then closes
 * it; on LOAD a thread reads the fd to its end and checks every byte
 * against the pattern. For the engine suites and perf/bench-drain.
 *
 * A stand-in serves one migration at a time; check_state (the ops' third
 * call) joins its thread and returns its result: 0, -errno of a read or
 * write, or -EBADMSG when a loaded byte differs from the pattern. */
#ifndef PRECOPY_TESTS_STANDIN_H
#define PRECOPY_TESTS_STANDIN_H

#include <pthread.h>
#include <stdint.h>

#include "precopy/backend.h"

struct standin {
	uint64_t size, rate; /* SAVE: bytes; bytes per second (0: unlimited) */
	int zeros;           /* SAVE: write zeros, not the pattern (no CPU per byte) */
	int fd;
	pthread_t thr;
	int started, result;
	uint64_t got;        /* LOAD: bytes read, every one checked */
};

/* Byte i of the pattern. */
uint8_t standin_byte(uint64_t i);

extern const struct precopy_backend_ops standin_ops;

#endif
