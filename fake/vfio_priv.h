/* SPDX-License-Identifier: MIT */
/* fake/vfio_priv.h — the VFIO device model's state, shared by the files
 * that implement it: fake/vfio.c (the FSM as a driver walks it,
 * VFIO_DEVICE_FEATURE as the vfio core checks it, reset, the model's
 * controls), fake_vfio_data.c (migration data sessions over socketpairs) and
 * fake_vfio_dma.c (device DMA into guest memory and the DMA-logging
 * tracker). Not public. Every function declared here runs with the fake
 * kernel's lock held. */
#ifndef PRECOPY_FAKE_VFIO_PRIV_H
#define PRECOPY_FAKE_VFIO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/vfio.h"
#include "../ioctl/uapi_compat.h"
#include "internal.h"
#include "../common/util.h"

#define CHUNK (64 * 1024)
/* The core accepts as many ranges as fit in one 4 KiB kernel page. */
#define CORE_MAX_RANGES (4096 / sizeof(struct vfio_device_feature_dma_logging_range))
#define MAX_FAIL 8

struct session {
	struct precopy_fake_vfio *dev;
	int user_fd, model_fd;
	int resume, dead, eof_sent;
	uint64_t produced, consumed; /* saving */
	uint64_t received;	     /* resuming */
	int bad;
	struct session *next;
};

struct trange {
	uint64_t base, end; /* page-aligned span the tracker covers */
	uint64_t *bits;
};

struct precopy_fake_vfio {
	struct precopy_fake_kernel *fk;
	struct precopy_fake_vfio_cfg cfg;
	int fd;
	uint32_t state;
	struct session *cur, *sessions;
	uint64_t last_ns;
	unsigned __int128 dma_credit;
	uint64_t initial_left, dirty, sc_left;
	int logging;
	uint64_t log_pg;
	uint32_t nranges;
	struct trange *ranges;
	uint8_t *mem;
	uint64_t mem_iova, mem_len;
	struct {
		uint32_t from, to, end;
		int err;
		unsigned int times;
	} fail[MAX_FAIL];
	int nfail;
	int reset_err;
	unsigned int reset_times;
	uint64_t rng;
	struct precopy_fake_vfio_stats st;
	uint8_t *buf;
	/* the IOMMU the device's DMA goes through (fake_type1.c,
	 * fake_iommufd.c); NULL: none modelled, DMA always lands */
	struct precopy_fake_type1 *type1;
	int type1_pinned; /* the device pins what it writes (mdev-like) */
	struct precopy_fake_iommufd *iommufd;
	uint64_t read_busy_ns; /* the asynchronous queue: the device reads until then */
	int read_fail_err;     /* precopy_fake_vfio_fail_read() */
	uint64_t read_fail_after, sc_read; /* STOP_COPY bytes read so far */
	uint32_t hwpt_id;
	struct precopy_fake_vfio *next;
};

static inline const struct precopy_sys *fv_real(void)
{
	return precopy_sys_real();
}

static inline int fv_is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline uint64_t fv_mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 r = (unsigned __int128)a * b / c;
	return r > UINT64_MAX ? UINT64_MAX : (uint64_t)r;
}

/* Byte `off` of the state stream of a device with this seed (what
 * precopy_fake_vfio_stream_byte() returns), inline so that the loops that
 * produce and check whole chunks vectorize. */
static inline uint8_t fv_stream_byte(uint32_t seed, uint64_t off)
{
	return (uint8_t)(((off * 0x9E3779B1u) >> 7) ^ (off >> 13) ^ seed ^ (seed >> 8));
}

/* n bytes of the stream of `seed` from offset off into buf (what
 * fv_stream_byte gives byte by byte, eight bytes at a time). */
void fv_stream_fill(uint32_t seed, uint64_t off, uint8_t *buf, size_t n);
/* 1 if buf holds those n bytes, 0 if any differs. */
int fv_stream_check(uint32_t seed, uint64_t off, const uint8_t *buf, size_t n);

/* Guest memory the device may DMA into: real bytes, or (dma_log_only) only
 * a length. */
static inline int fv_has_guest_mem(const struct precopy_fake_vfio *dev)
{
	return dev->mem || (dev->cfg.dma_log_only && dev->mem_len);
}

/* States in which the device runs (and may DMA). */
static inline int fv_running(uint32_t s)
{
	return s == VFIO_DEVICE_STATE_RUNNING || s == VFIO_DEVICE_STATE_RUNNING_P2P ||
	       s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

static inline int fv_in_precopy(uint32_t s)
{
	return s == VFIO_DEVICE_STATE_PRE_COPY || s == VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

/* fake_vfio.c: bring the model up to the clock (PRE_COPY dirtying,
 * background DMA). */
void fake_vfio_advance(struct precopy_fake_vfio *dev);

/* fake_vfio_data.c */
int fake_vfio_open_session(struct precopy_fake_vfio *dev, int resume);
void fake_vfio_kill_session(struct precopy_fake_vfio *dev);
uint64_t fake_vfio_produce(struct precopy_fake_vfio *dev, struct session *s, uint64_t max);
void fake_vfio_drain(struct session *s);

/* fake_vfio_dma.c */
/* Returns 0, or -EFAULT when the device's IOMMU blocks the write (nothing
 * written). */
int fake_vfio_dma_page(struct precopy_fake_vfio *dev, uint64_t off, uint64_t len, uint8_t byte);
void fake_vfio_log_free(struct precopy_fake_vfio *dev);
int fake_vfio_log_start(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_control *ctl);
int fake_vfio_log_report(struct precopy_fake_vfio *dev, struct vfio_device_feature_dma_logging_report *rep);

#endif /* PRECOPY_FAKE_VFIO_PRIV_H */
