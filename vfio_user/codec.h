/* SPDX-License-Identifier: MIT */
/* vfio_user/codec.h — the vfio-user wire format: encode the client's
 * requests, decode the server's replies, decode the server's own DMA_READ /
 * DMA_WRITE commands and encode their replies, and parse the VERSION
 * capabilities (a strict JSON subset).
 *
 * Pure functions: no allocation, no syscall, no global state; every input
 * is bytes plus a length and nothing is read past that length. The wire is
 * little-endian (the specification says "host endianness"; every host
 * precopy runs on is little-endian, and the codec writes bytes explicitly,
 * so a big-endian build would still speak the x86/arm64 wire).
 *
 * Errors: encoders return the message length (> 0) or -ENOSPC (buffer too
 * small) / -EINVAL (a value the wire cannot carry). Decoders return 0 or a
 * negative errno: -EPROTO for anything malformed (and, when `why` is not
 * NULL, *why points to a static sentence naming the broken rule), or the
 * server's own -errno for an error reply. An error reply whose errno is 0
 * or above 4095 is -EPROTO ("error reply without an errno").
 *
 * Internal to libprecopy (precopy__ names); the client (client.c), the
 * tests and the fuzz harness use it.
 */
#ifndef PRECOPY_VFIO_USER_CODEC_H
#define PRECOPY_VFIO_USER_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define PRECOPY__VU_HDR_SIZE 16u

/* commands (the specification's numbering) */
enum {
	PRECOPY__VU_VERSION = 1,
	PRECOPY__VU_DMA_MAP = 2,
	PRECOPY__VU_DMA_UNMAP = 3,
	PRECOPY__VU_DEVICE_GET_INFO = 4,
	PRECOPY__VU_DEVICE_GET_REGION_INFO = 5,
	PRECOPY__VU_DEVICE_GET_IRQ_INFO = 7,
	PRECOPY__VU_DEVICE_SET_IRQS = 8,
	PRECOPY__VU_REGION_READ = 9,
	PRECOPY__VU_REGION_WRITE = 10,
	PRECOPY__VU_DMA_READ = 11,
	PRECOPY__VU_DMA_WRITE = 12,
	PRECOPY__VU_DEVICE_RESET = 13,
	PRECOPY__VU_DEVICE_FEATURE = 16,
	PRECOPY__VU_MIG_DATA_READ = 17,
	PRECOPY__VU_MIG_DATA_WRITE = 18,
};

/* header flags */
#define PRECOPY__VU_F_TYPE_MASK 0xfu
#define PRECOPY__VU_F_COMMAND 0x0u
#define PRECOPY__VU_F_REPLY 0x1u
#define PRECOPY__VU_F_NO_REPLY 0x10u
#define PRECOPY__VU_F_ERROR 0x20u

/* device feature flags and indices (as VFIO's) */
#define PRECOPY__VU_FEATURE_MASK 0xffffu
#define PRECOPY__VU_FEATURE_GET (1u << 16)
#define PRECOPY__VU_FEATURE_SET (1u << 17)
#define PRECOPY__VU_FEATURE_PROBE (1u << 18)
#define PRECOPY__VU_FEAT_MIGRATION 1u
#define PRECOPY__VU_FEAT_MIG_DEVICE_STATE 2u
#define PRECOPY__VU_FEAT_DMA_LOGGING_START 6u
#define PRECOPY__VU_FEAT_DMA_LOGGING_STOP 7u
#define PRECOPY__VU_FEAT_DMA_LOGGING_REPORT 8u

/* DMA_MAP flags */
#define PRECOPY__VU_DMA_READABLE 1u
#define PRECOPY__VU_DMA_WRITEABLE 2u

/* SET_IRQS flags (as VFIO's) */
#define PRECOPY__VU_IRQ_DATA_NONE 1u
#define PRECOPY__VU_IRQ_DATA_BOOL 2u
#define PRECOPY__VU_IRQ_DATA_EVENTFD 4u
#define PRECOPY__VU_IRQ_ACTION_MASK 8u
#define PRECOPY__VU_IRQ_ACTION_UNMASK 16u
#define PRECOPY__VU_IRQ_ACTION_TRIGGER 32u

/* fixed payload sizes */
#define PRECOPY__VU_DEVICE_INFO_SIZE 16u
#define PRECOPY__VU_IRQ_INFO_SIZE 16u
#define PRECOPY__VU_IRQ_SET_SIZE 20u
#define PRECOPY__VU_REGION_INFO_SIZE 32u
#define PRECOPY__VU_REGION_ACCESS_SIZE 16u /* offset, region, count */
#define PRECOPY__VU_DMA_ACCESS_SIZE 16u    /* address, count */
#define PRECOPY__VU_FEATURE_SIZE 8u        /* argsz, flags */
#define PRECOPY__VU_MIG_DATA_SIZE 8u       /* argsz, size */
#define PRECOPY__VU_REPORT_SIZE 24u        /* iova, length, page_size */
#define PRECOPY__VU_LOG_START_SIZE 16u     /* page_size, num_ranges, reserved */

/* Bounds the decoders apply whatever the caller's buffer. */
#define PRECOPY__VU_MAX_JSON 4096u  /* VERSION capability text, with its NUL */
#define PRECOPY__VU_JSON_DEPTH 8u   /* nesting of objects/arrays */

struct precopy__vu_hdr {
	uint16_t msg_id;
	uint16_t cmd;
	uint32_t size; /* the whole message, header included */
	uint32_t flags;
	uint32_t error;
};

/* VERSION capabilities, with the specification's defaults for what is
 * absent. */
struct precopy__vu_caps {
	uint64_t max_msg_fds;        /* default 1 */
	uint64_t max_data_xfer_size; /* default 1 MiB */
	uint64_t max_dma_maps;       /* default 65535 */
	uint64_t pgsizes;            /* default 4096 */
	uint64_t migration_pgsize;   /* 0: not given ("migration": {"pgsize"}) */
	int twin_supported;          /* twin_socket.supported, default 0 */
	int has_twin_fd_index;       /* twin_socket.fd_index given */
	uint64_t twin_fd_index;
	int write_multiple;          /* default 0 */
};

/* ---- header -------------------------------------------------------------- */

/* Write a header into buf (16 bytes). */
void precopy__vu_hdr_put(uint8_t *buf, const struct precopy__vu_hdr *h);

/* Read a header from buf[0..n): n >= 16; size >= 16; type 0 or 1; no flag
 * bits other than type, no-reply and error; no-reply only on a command,
 * error only on a reply. */
int precopy__vu_hdr_get(const uint8_t *buf, size_t n, struct precopy__vu_hdr *h, const char **why);

/* ---- client requests ------------------------------------------------------ */

/* Each writes one whole message (header + payload) into buf[0..cap) and
 * returns its length. */
int precopy__vu_enc_version(uint8_t *buf, size_t cap, uint16_t id, uint16_t major, uint16_t minor,
			    const char *json);
int precopy__vu_enc_dma_map(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint64_t offset,
			    uint64_t addr, uint64_t size);
int precopy__vu_enc_dma_unmap(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, uint64_t size);
int precopy__vu_enc_device_info(uint8_t *buf, size_t cap, uint16_t id);
/* argsz: the largest reply payload the client accepts (>= 32). */
int precopy__vu_enc_region_info(uint8_t *buf, size_t cap, uint16_t id, uint32_t index, uint32_t argsz);
int precopy__vu_enc_region_read(uint8_t *buf, size_t cap, uint16_t id, uint32_t region, uint64_t offset,
				uint32_t count);
int precopy__vu_enc_region_write(uint8_t *buf, size_t cap, uint16_t id, uint32_t region, uint64_t offset,
				 const void *data, uint32_t count);
/* argsz: the largest reply payload accepted (>= 8 + len). */
int precopy__vu_enc_feature(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint32_t argsz,
			    const void *data, size_t len);
int precopy__vu_enc_mig_data_read(uint8_t *buf, size_t cap, uint16_t id, uint32_t size);
int precopy__vu_enc_mig_data_write(uint8_t *buf, size_t cap, uint16_t id, const void *data, uint32_t size);
int precopy__vu_enc_reset(uint8_t *buf, size_t cap, uint16_t id);
int precopy__vu_enc_irq_info(uint8_t *buf, size_t cap, uint16_t id, uint32_t index);
/* SET_IRQS: flags one DATA_ and one ACTION_ bit; bools (count bytes) only
 * with DATA_BOOL, else NULL (the eventfds travel beside the message). */
int precopy__vu_enc_set_irqs(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint32_t index,
			     uint32_t start, uint32_t count, const uint8_t *bools);

/* The capabilities JSON the client proposes, NUL-terminated, into
 * out[0..cap); returns its length with the NUL. */
int precopy__vu_enc_caps(char *out, size_t cap, uint64_t max_msg_fds, uint64_t max_data_xfer_size,
			 int twin_socket);

/* ---- server replies ------------------------------------------------------- */

/* Check a whole received message msg[0..n) as the reply to (id, cmd): the
 * header's size equals n, type reply, same msg_id and command; the error
 * bit gives the server's -errno. On 0, *payload and *plen are the bytes after
 * the header. */
int precopy__vu_reply_open(const uint8_t *msg, size_t n, uint16_t id, uint16_t cmd, const uint8_t **payload,
			   size_t *plen, const char **why);

/* VERSION reply payload: major, minor, and the optional NUL-terminated
 * JSON (parsed into *caps; defaults when absent). */
int precopy__vu_dec_version(const uint8_t *p, size_t n, uint16_t *major, uint16_t *minor,
			    struct precopy__vu_caps *caps, const char **why);

struct precopy__vu_device_info {
	uint32_t argsz, flags, num_regions, num_irqs;
};
int precopy__vu_dec_device_info(const uint8_t *p, size_t n, struct precopy__vu_device_info *out,
				const char **why);

struct precopy__vu_irq_info {
	uint32_t argsz, flags, index, count;
};
/* GET_IRQ_INFO reply: 16 bytes, the index asked for. */
int precopy__vu_dec_irq_info(const uint8_t *p, size_t n, uint32_t index, struct precopy__vu_irq_info *out,
			     const char **why);

struct precopy__vu_region_info {
	uint32_t argsz, flags, index, cap_offset;
	uint64_t size, offset;
};
/* index: the region asked for; max: the argsz the request gave. */
int precopy__vu_dec_region_info(const uint8_t *p, size_t n, uint32_t index, uint32_t max,
				struct precopy__vu_region_info *out, const char **why);

/* REGION_READ reply: offset/region/count echo the request, data follows,
 * exactly count bytes. */
int precopy__vu_dec_region_read(const uint8_t *p, size_t n, uint32_t region, uint64_t offset, uint32_t count,
				const uint8_t **data, const char **why);
int precopy__vu_dec_region_write(const uint8_t *p, size_t n, uint32_t region, uint64_t offset,
				 uint32_t count, const char **why);

/* DMA_UNMAP reply: empty, or the request's entry echoed (24 bytes, same
 * address and size). */
int precopy__vu_dec_dma_unmap(const uint8_t *p, size_t n, uint64_t addr, uint64_t size, const char **why);

/* A reply that carries no payload (DMA_MAP, MIG_DATA_WRITE, RESET,
 * SET_IRQS). */
int precopy__vu_dec_empty(const uint8_t *p, size_t n, const char **why);

/* DEVICE_FEATURE reply: argsz >= the message's payload, flags as sent;
 * *data and *dlen: the feature data after the 8-byte head. */
int precopy__vu_dec_feature(const uint8_t *p, size_t n, uint32_t flags, const uint8_t **data, size_t *dlen,
			    const char **why);
/* feature data of MIGRATION (u64 flags), MIG_DEVICE_STATE (u32 state, u32
 * data_fd: ignored), DMA_LOGGING_START (u64 page_size, ...: the page size
 * the device chose, a power of two). Exact or minimum lengths as the
 * specification gives them. */
int precopy__vu_dec_migration(const uint8_t *d, size_t n, uint64_t *flags, const char **why);
int precopy__vu_dec_mig_state(const uint8_t *d, size_t n, uint32_t *state, const char **why);
int precopy__vu_dec_log_start(const uint8_t *d, size_t n, uint64_t *page_size, const char **why);
/* DMA_LOGGING_REPORT data: iova, length, page_size echo the request; the
 * bitmap after them is exactly ceil(length / page_size / 64) words. */
int precopy__vu_dec_report(const uint8_t *d, size_t n, uint64_t iova, uint64_t length, uint64_t page_size,
			   const uint8_t **bitmap, size_t *bytes, const char **why);
/* MIG_DATA_READ reply: *size <= asked; the payload holds at least 8 +
 * *size bytes (servers pad it to the asked size: the length is the size
 * field, never the message's); argsz >= 8 + *size. */
int precopy__vu_dec_mig_data_read(const uint8_t *p, size_t n, uint32_t asked, const uint8_t **data,
				  uint32_t *size, const char **why);

/* Request payloads for DMA_LOGGING_START (page_size, ranges as iova/length
 * pairs) and REPORT (iova, length, page_size): feature data to pass to
 * precopy__vu_enc_feature. Return the length written. */
int precopy__vu_enc_log_start_data(uint8_t *out, size_t cap, uint64_t page_size, const uint64_t *ranges,
				   uint32_t nranges);
int precopy__vu_enc_report_data(uint8_t *out, size_t cap, uint64_t iova, uint64_t length, uint64_t page_size);

/* ---- the server's commands ------------------------------------------------ */

/* Check a whole received message as a command: size equals n, type
 * command. */
int precopy__vu_cmd_open(const uint8_t *msg, size_t n, struct precopy__vu_hdr *h, const uint8_t **payload,
			 size_t *plen, const char **why);

/* DMA_READ (payload exactly 16 bytes) or DMA_WRITE (16 + count bytes)
 * payload: count <= max_count, address + count without overflow. *data:
 * the bytes to write (DMA_WRITE), NULL for DMA_READ. */
int precopy__vu_dec_dma_req(uint16_t cmd, const uint8_t *p, size_t n, uint64_t max_count, uint64_t *addr,
			    uint64_t *count, const uint8_t **data, const char **why);

/* Replies: DMA_READ carries address, count (u64) and the data; DMA_WRITE
 * address and count. The specification draws DMA_WRITE's reply count as 4
 * bytes, libvfio-user reads 8: the codec writes 8 (little-endian: the first
 * 4 are the specification's field), 16 bytes of payload. */
int precopy__vu_enc_dma_read_reply(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, const void *data,
				   uint64_t count);
int precopy__vu_enc_dma_write_reply(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, uint64_t count);
/* An error reply (header only) to command cmd; err > 0. */
int precopy__vu_enc_error_reply(uint8_t *buf, size_t cap, uint16_t id, uint16_t cmd, uint32_t err);

/* ---- JSON ------------------------------------------------------------------ */

/* Parse the VERSION text s[0..n) (no NUL inside; the caller strips the
 * terminating one): one object; "capabilities" an object; known keys with
 * their types (numbers: unsigned decimal integers < 2^64, no sign,
 * fraction or exponent; booleans true/false); "migration" and
 * "twin_socket" objects with their own keys. Unknown keys are skipped
 * whatever their value (objects, arrays, strings, numbers, true, false,
 * null), within PRECOPY__VU_JSON_DEPTH; a known key given twice in the
 * same object, a number that overflows, a wrong type, bad escapes, control
 * characters in strings, or trailing bytes are refused. caps gets the
 * defaults first. */
int precopy__vu_caps_parse(const char *s, size_t n, struct precopy__vu_caps *caps, const char **why);

/* Little-endian helpers, shared with the client. */
static inline void precopy__vu_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void precopy__vu_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void precopy__vu_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t precopy__vu_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t precopy__vu_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t precopy__vu_get64(const uint8_t *p)
{
	return (uint64_t)precopy__vu_get32(p) | (uint64_t)precopy__vu_get32(p + 4) << 32;
}

#endif /* PRECOPY_VFIO_USER_CODEC_H */
