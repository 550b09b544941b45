/* SPDX-License-Identifier: MIT */
/* precopy/stream.h — the device-state migration stream and its return path.
 *
 * The source engine sends each device's state (setup, config, data chunks,
 * an "initial data sent" marker, end of state) over a byte stream of its
 * own; RAM pages travel through the VMM's channel and never appear here.
 * The destination parses that stream incrementally and, once every PRE_COPY
 * device has received and loaded its initial data, answers with one ACK
 * (switchover-ack) on the return path.
 *
 * Everything in this header is pure code: encoders write records into
 * caller buffers, decoders consume caller byte slices. No I/O, no syscall,
 * no clock.
 *
 * Thread safety: the encoders and precopy_stream_crc32c() are reentrant and
 * may run concurrently from any thread. A decoder is a single-threaded
 * object: calls on one decoder must be serialized by the caller (distinct
 * decoders are independent). A decoder's callback runs on the thread that
 * called feed() and must not call back into the same decoder.
 *
 * ======================================================================
 * Wire format, version 1. All integers little-endian, fixed widths, no
 * padding. "crc32c" is CRC-32C (Castagnoli, reflected polynomial
 * 0x82F63B78, init 0xFFFFFFFF, final xor 0xFFFFFFFF; crc32c("123456789")
 * is 0xE3069283).
 *
 * Forward stream = preamble, then records:
 *
 *   preamble (8 bytes): 0x89 'P' 'C' 'S' 0x0D 0x0A 0x1A 0x0A
 *     (0x89 catches 7-bit channels, CR LF / 0x1A catch text-mode mangling)
 *
 *   record header (20 bytes), shared by every record of both directions:
 *     off  0  u8   tag          record kind (below)
 *     off  1  u8   flags        bit 0 PRECOPY_STREAM_F_PAYLOAD_CRC: the
 *                               payload_crc field is valid; bits 1-7 must be 0
 *     off  2  u16  reserved     must be 0
 *     off  4  u32  dev_id       device id, or 0xFFFFFFFF (PRECOPY_STREAM_DEV_NONE)
 *                               in stream-level records
 *     off  8  u32  length       payload bytes following the header
 *     off 12  u32  payload_crc  crc32c of the payload if flag bit 0, else 0
 *     off 16  u32  hdr_crc      crc32c of header bytes 0..15
 *   followed by exactly `length` payload bytes.
 *
 *   tag 0x01 STREAM_HDR  dev_id NONE, length 16; first record, exactly once
 *     off 0 u32 version       PRECOPY_STREAM_VERSION (1)
 *     off 4 u32 flags         must be 0
 *     off 8 u32 device_count  devices this stream will carry (each one gets
 *                             exactly one DEV_SETUP)
 *     off 12 u32 max_chunk    largest DEV_DATA payload the source will send
 *   tag 0x02 DEV_SETUP   length 24 + name_len
 *     off 0  u32 mig_flags    the source device's VFIO_MIGRATION_* flags:
 *                             STOP_COPY (1, required), P2P (2), PRE_COPY (4);
 *                             other bits must be 0
 *     off 4  u16 pci_vendor   0 if not a PCI device
 *     off 6  u16 pci_device
 *     off 8  u64 initial_bytes  the source's initial precopy size estimate
 *                             (informational)
 *     off 16 u16 name_len     <= PRECOPY_STREAM_NAME_MAX
 *     off 18 u16 reserved     must be 0
 *     off 20 u32 reserved     must be 0
 *     off 24 name_len bytes   printable ASCII (0x20..0x7E), no terminator
 *   tag 0x03 DEV_CONFIG  length <= limits.max_config; opaque blob, at most
 *                        once per device, between its SETUP and END
 *   tag 0x04 DEV_DATA    1 <= length <= min(limits.max_chunk, the header's
 *                        max_chunk); device data (VFIO data_fd bytes), in order
 *   tag 0x05 DEV_INITIAL_SENT  length 0; PRE_COPY devices only, at most once,
 *                        before END: the source has sent the device's
 *                        initial precopy data
 *   tag 0x06 DEV_END     length 8: off 0 u64 total DEV_DATA payload bytes
 *                        sent for this device (checked by the decoder)
 *   tag 0x07 STREAM_END  dev_id NONE, length 0; last record; only valid once
 *                        every declared device has been set up and ended
 *
 *   Per-device order: SETUP, then any mix of CONFIG (<= 1), DATA and
 *   INITIAL_SENT (<= 1), then END. No record may follow STREAM_END.
 *
 * Return path (destination -> source): records only, no preamble.
 *   tag 0x41 RP_ACK    dev_id NONE, length 0; switchover-ack: "the
 *                      destination loaded every PRE_COPY device's initial
 *                      data". At most once.
 *   tag 0x42 RP_ERROR  dev_id: the device concerned or NONE; length 8 + reason_len
 *     off 0 u32 code        a positive errno value, 1..4095
 *     off 4 u16 reason_len  <= PRECOPY_STREAM_REASON_MAX
 *     off 6 u16 reserved    must be 0
 *     off 8 reason_len bytes  printable ASCII, no terminator
 *     Terminal: nothing may follow an RP_ERROR.
 *
 * Encoders always set PRECOPY_STREAM_F_PAYLOAD_CRC except
 * precopy_stream_encode_data_hdr(), whose payload is spliced by the caller
 * and never seen by the encoder (the header CRC still covers its length).
 * ======================================================================
 *
 * Errors (every function returns 0 or a count >= 0, or -errno):
 *   -EINVAL   bad arguments (NULL, limits out of range, id NONE, bad name)
 *   -ENOSPC   encoder buffer too small (nothing useful written)
 *   -ENOMEM   allocation failed
 *   -EBADMSG  malformed bytes: bad preamble, header or payload CRC mismatch,
 *             unknown tag, reserved bits or fields not zero, a length that
 *             does not fit the record kind or exceeds a configured limit,
 *             non-printable name/reason bytes, a stream that ends mid-record
 *             or before STREAM_END
 *   -EPROTO   well-formed records that break the protocol: version
 *             mismatch, a record before STREAM_HDR, unknown device id,
 *             records out of order for a device (data before SETUP or after
 *             END, a marker twice, END twice, ...), more devices than
 *             declared, STREAM_END while a device is not ended, a
 *             DEV_END whose byte total disagrees, anything after
 *             STREAM_END or RP_ERROR, a second RP_ACK
 *   a callback's own negative return is passed through unchanged.
 * After any error a decoder is failed: every later feed()/finish() returns
 * the same error, and precopy_stream_decoder_error() explains it as
 * "offset N: ..." where N is the stream offset of the first byte of the
 * offending record (0 for the preamble); for input that stops inside a
 * record, the start of that record; for input that stops between records
 * before STREAM_END, and for bytes after STREAM_END, the offset where the
 * input ended or the extra bytes began.
 *
 * DEV_DATA payload is handed to the callback before a payload CRC (if the
 * record carries one) can be verified; PRECOPY_STREAM_EV_DATA_END confirms
 * it. A CRC mismatch fails the decoder, which aborts the migration anyway.
 */
#ifndef PRECOPY_STREAM_H
#define PRECOPY_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "precopy/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PRECOPY_STREAM_VERSION        1u
#define PRECOPY_STREAM_PREAMBLE_SIZE  8u
#define PRECOPY_STREAM_REC_HDR_SIZE   20u
#define PRECOPY_STREAM_HDR_PAYLOAD    16u
/* Bytes precopy_stream_encode_stream_hdr() writes (preamble + STREAM_HDR). */
#define PRECOPY_STREAM_START_SIZE     (PRECOPY_STREAM_PREAMBLE_SIZE + PRECOPY_STREAM_REC_HDR_SIZE + PRECOPY_STREAM_HDR_PAYLOAD)
#define PRECOPY_STREAM_SETUP_FIXED    24u
#define PRECOPY_STREAM_END_PAYLOAD    8u
#define PRECOPY_STREAM_ERROR_FIXED    8u
#define PRECOPY_STREAM_NAME_MAX       64u
#define PRECOPY_STREAM_REASON_MAX     128u
#define PRECOPY_STREAM_CODE_MAX       4095u
#define PRECOPY_STREAM_DEV_NONE       0xFFFFFFFFu
#define PRECOPY_STREAM_F_PAYLOAD_CRC  0x01u

/* Record tags (the `tag` byte). */
enum precopy_stream_tag {
	PRECOPY_STREAM_TAG_STREAM_HDR = 0x01,
	PRECOPY_STREAM_TAG_DEV_SETUP = 0x02,
	PRECOPY_STREAM_TAG_DEV_CONFIG = 0x03,
	PRECOPY_STREAM_TAG_DEV_DATA = 0x04,
	PRECOPY_STREAM_TAG_DEV_INITIAL_SENT = 0x05,
	PRECOPY_STREAM_TAG_DEV_END = 0x06,
	PRECOPY_STREAM_TAG_STREAM_END = 0x07,
	PRECOPY_STREAM_TAG_RP_ACK = 0x41,
	PRECOPY_STREAM_TAG_RP_ERROR = 0x42,
};

/* VFIO_MIGRATION_* values as carried in DEV_SETUP (same bits as the uAPI). */
#define PRECOPY_STREAM_MIG_STOP_COPY  0x1u
#define PRECOPY_STREAM_MIG_P2P        0x2u
#define PRECOPY_STREAM_MIG_PRE_COPY   0x4u
#define PRECOPY_STREAM_MIG_ALL        0x7u

/* Decoder limits, checked against every length before anything is
 * allocated or buffered. Zero in a field means "use the default". */
struct precopy_stream_limits {
	uint32_t max_chunk;   /* largest DEV_DATA payload (1 .. 1 GiB) */
	uint32_t max_config;  /* largest DEV_CONFIG payload (0 .. 64 MiB) */
	uint32_t max_devices; /* largest device set and header device_count (1 .. 4096) */
};
#define PRECOPY_STREAM_DEFAULT_MAX_CHUNK    (8u << 20)
#define PRECOPY_STREAM_DEFAULT_MAX_CONFIG   (1u << 20)
#define PRECOPY_STREAM_DEFAULT_MAX_DEVICES  64u
#define PRECOPY_STREAM_CAP_MAX_CHUNK        (1u << 30)
#define PRECOPY_STREAM_CAP_MAX_CONFIG       (64u << 20)
#define PRECOPY_STREAM_CAP_MAX_DEVICES      4096u

/* A device's declared properties (DEV_SETUP). */
struct precopy_stream_dev_setup {
	uint32_t dev_id;
	uint32_t mig_flags;      /* PRECOPY_STREAM_MIG_* */
	uint16_t pci_vendor;
	uint16_t pci_device;
	uint64_t initial_bytes;
	char name[PRECOPY_STREAM_NAME_MAX + 1]; /* NUL-terminated */
};

/* ---- CRC --------------------------------------------------------------- */

/* Continue a CRC-32C over len bytes. Start with crc = 0; the result of one
 * call may be passed as `crc` to the next to checksum data in pieces.
 * Returns the CRC (never fails; buf may be NULL only when len is 0). */
PRECOPY_API uint32_t precopy_stream_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- encoders ------------------------------------------------------------
 * Each writes one record (the first also the preamble) at buf, at most cap
 * bytes, and returns the number of bytes written, or -EINVAL (NULL buf,
 * bad argument) or -ENOSPC (cap too small; buf contents unspecified).
 * The encoders are stateless: record order is the caller's job and the
 * decoder enforces it. */

/* Preamble + STREAM_HDR: PRECOPY_STREAM_START_SIZE bytes.
 * -EINVAL if max_chunk is 0 or above PRECOPY_STREAM_CAP_MAX_CHUNK, or
 * device_count above PRECOPY_STREAM_CAP_MAX_DEVICES. */
PRECOPY_API int precopy_stream_encode_stream_hdr(void *buf, size_t cap, uint32_t device_count,
						 uint32_t max_chunk);

/* DEV_SETUP from *setup (name NUL-terminated, <= NAME_MAX printable bytes).
 * -EINVAL: setup NULL, dev_id NONE, mig_flags without STOP_COPY or with
 * unknown bits, name too long or not printable. */
PRECOPY_API int precopy_stream_encode_dev_setup(void *buf, size_t cap,
						const struct precopy_stream_dev_setup *setup);

/* DEV_CONFIG carrying len bytes of blob (copied). -EINVAL: dev_id NONE,
 * blob NULL with len > 0, len above PRECOPY_STREAM_CAP_MAX_CONFIG. */
PRECOPY_API int precopy_stream_encode_dev_config(void *buf, size_t cap, uint32_t dev_id,
						 const void *blob, uint32_t len);

/* The 20-byte header of a DEV_DATA record whose len payload bytes the
 * caller sends next, e.g. spliced straight from a device's data fd; the
 * payload never passes through this function and carries no payload CRC.
 * Returns PRECOPY_STREAM_REC_HDR_SIZE. -EINVAL: dev_id NONE, len 0 or
 * above PRECOPY_STREAM_CAP_MAX_CHUNK. */
PRECOPY_API int precopy_stream_encode_data_hdr(void *buf, size_t cap, uint32_t dev_id, uint32_t len);

/* A complete DEV_DATA record: header (with payload CRC) + a copy of the
 * len payload bytes. Same errors as precopy_stream_encode_data_hdr(), and
 * -EINVAL for a NULL payload. */
PRECOPY_API int precopy_stream_encode_data(void *buf, size_t cap, uint32_t dev_id,
					   const void *payload, uint32_t len);

/* DEV_INITIAL_SENT (20 bytes). -EINVAL: dev_id NONE. */
PRECOPY_API int precopy_stream_encode_initial_sent(void *buf, size_t cap, uint32_t dev_id);

/* DEV_END with the device's total DEV_DATA payload bytes (28 bytes).
 * -EINVAL: dev_id NONE. */
PRECOPY_API int precopy_stream_encode_dev_end(void *buf, size_t cap, uint32_t dev_id,
					      uint64_t total_data_bytes);

/* STREAM_END (20 bytes). */
PRECOPY_API int precopy_stream_encode_stream_end(void *buf, size_t cap);

/* RP_ACK (20 bytes). */
PRECOPY_API int precopy_stream_encode_rp_ack(void *buf, size_t cap);

/* RP_ERROR. code: a positive errno value (1..4095), else -EINVAL. dev_id
 * may be NONE. reason may be NULL (empty); it is cut to
 * PRECOPY_STREAM_REASON_MAX bytes and each non-printable byte becomes '?',
 * so that reporting an error cannot itself fail on the text. */
PRECOPY_API int precopy_stream_encode_rp_error(void *buf, size_t cap, uint32_t dev_id, int code,
					       const char *reason);

/* ---- forward-stream decoder -------------------------------------------- */

enum precopy_stream_event_type {
	PRECOPY_STREAM_EV_HEADER = 1,   /* u.header */
	PRECOPY_STREAM_EV_DEV_SETUP,    /* u.setup */
	PRECOPY_STREAM_EV_DEV_CONFIG,   /* u.config: the whole blob, CRC checked */
	PRECOPY_STREAM_EV_DATA,         /* u.data: one slice of a chunk */
	PRECOPY_STREAM_EV_DATA_END,     /* u.data: chunk complete (ptr NULL, len 0)
					 * and its payload CRC, if any, verified */
	PRECOPY_STREAM_EV_INITIAL_SENT, /* dev_id */
	PRECOPY_STREAM_EV_DEV_END,      /* dev_id, u.end */
	PRECOPY_STREAM_EV_STREAM_END,   /* nothing more will be accepted */
};

/* One event; valid only during the callback (pointers point into the
 * decoder or into the slice passed to feed()). */
struct precopy_stream_event {
	int type;           /* enum precopy_stream_event_type */
	uint32_t dev_id;    /* PRECOPY_STREAM_DEV_NONE for stream-level events */
	uint64_t offset;    /* stream offset of the record's first header byte */
	union {
		struct {
			uint32_t version;
			uint32_t device_count;
			uint32_t max_chunk;
		} header;
		const struct precopy_stream_dev_setup *setup;
		struct {
			const void *blob;
			uint32_t len;
		} config;
		struct {
			const void *ptr;    /* slice bytes (NULL in DATA_END) */
			size_t len;         /* slice length (0 in DATA_END) */
			uint32_t chunk_off; /* offset of the slice in its chunk */
			uint32_t chunk_len; /* the whole chunk's payload length */
		} data;
		struct {
			uint64_t total_data_bytes;
		} end;
	} u;
};

/* Event callback: return 0 to go on, or a negative errno to stop; the
 * decoder then fails with that value (see precopy_stream_decoder_error()). */
typedef int (*precopy_stream_event_fn)(void *opaque, const struct precopy_stream_event *ev);

struct precopy_stream_decoder;

/* Create a decoder for a stream whose devices are the n_dev distinct ids in
 * dev_ids (copied; none may be PRECOPY_STREAM_DEV_NONE). limits may be NULL
 * (defaults); n_dev must be 0..limits->max_devices (0: a stream of a VM
 * without devices, header and end only; dev_ids may then be NULL). fn is
 * required. On success stores the decoder in *out (free with
 * precopy_stream_decoder_free()) and returns 0.
 * Errors: -EINVAL (NULL out/fn, dev_ids NULL with n_dev > 0, n_dev above
 * max_devices, a duplicate or NONE id, a limit out of its range), -ENOMEM. */
PRECOPY_API int precopy_stream_decoder_new(struct precopy_stream_decoder **out,
					   const struct precopy_stream_limits *limits,
					   const uint32_t *dev_ids, size_t n_dev,
					   precopy_stream_event_fn fn, void *opaque);

/* Free a decoder (NULL is a no-op). */
PRECOPY_API void precopy_stream_decoder_free(struct precopy_stream_decoder *dec);

/* Consume len bytes (any split: records may straddle calls arbitrarily,
 * one byte at a time works). Events are delivered in stream order before
 * this returns; DEV_DATA payload is handed over as it arrives, never
 * buffered. Returns 0 when every byte was consumed, else -EBADMSG,
 * -EPROTO, -ENOMEM, -EINVAL (dec NULL, or buf NULL with len > 0) or the
 * callback's error; the decoder is then failed. */
PRECOPY_API int precopy_stream_decoder_feed(struct precopy_stream_decoder *dec, const void *buf,
					    size_t len);

/* Declare the end of input. Returns 0 if STREAM_END has been decoded,
 * -EBADMSG if the input stopped inside a record or before STREAM_END (the
 * decoder is then failed), or the decoder's earlier error. */
PRECOPY_API int precopy_stream_decoder_finish(struct precopy_stream_decoder *dec);

/* The failure explanation ("offset N: ..."), or "" while not failed.
 * Owned by the decoder, valid until the next call on it. */
PRECOPY_API const char *precopy_stream_decoder_error(const struct precopy_stream_decoder *dec);

/* Progress, for the engine's switchover-ack decision. */
struct precopy_stream_decoder_stats {
	uint64_t bytes;           /* bytes consumed */
	uint64_t records;         /* complete records decoded */
	uint32_t devices_declared;/* STREAM_HDR device_count (0 before it) */
	uint32_t devices_setup;
	uint32_t devices_precopy; /* set-up devices with PRE_COPY */
	uint32_t initial_sent;    /* PRE_COPY devices whose marker arrived */
	uint32_t devices_ended;
	int header_seen;
	int ended;                /* STREAM_END decoded */
	int error;                /* 0 or the sticky -errno */
};

/* Fill *st. Returns 0, or -EINVAL (NULL argument). */
PRECOPY_API int precopy_stream_decoder_stats(const struct precopy_stream_decoder *dec,
					     struct precopy_stream_decoder_stats *st);

/* Where one device stands. */
enum precopy_stream_dev_phase {
	PRECOPY_STREAM_DEV_WAITING = 0, /* no SETUP yet */
	PRECOPY_STREAM_DEV_ACTIVE,      /* set up, sending */
	PRECOPY_STREAM_DEV_INITIAL,     /* INITIAL_SENT received, still sending */
	PRECOPY_STREAM_DEV_ENDED,       /* DEV_END received */
};
struct precopy_stream_dev_status {
	int phase;             /* enum precopy_stream_dev_phase */
	uint32_t mig_flags;    /* from SETUP, 0 before it */
	int config_seen;
	int initial_sent;      /* 1 once INITIAL_SENT arrived (stays 1 after END) */
	uint64_t data_bytes;   /* DEV_DATA payload bytes completed */
	uint64_t data_chunks;
};

/* Fill *st for dev_id. Returns 0, -EINVAL (NULL argument), -ENOENT (id not
 * in the decoder's device set). */
PRECOPY_API int precopy_stream_decoder_device(const struct precopy_stream_decoder *dec,
					      uint32_t dev_id, struct precopy_stream_dev_status *st);

/* ---- return-path decoder ------------------------------------------------ */

enum precopy_stream_rp_event_type {
	PRECOPY_STREAM_RP_EV_ACK = 1,
	PRECOPY_STREAM_RP_EV_ERROR,
};

struct precopy_stream_rp_event {
	int type;            /* enum precopy_stream_rp_event_type */
	uint32_t dev_id;     /* RP_ERROR: device or NONE; RP_ACK: NONE */
	uint64_t offset;     /* offset of the message in the return path */
	int code;            /* RP_ERROR: positive errno value */
	const char *reason;  /* RP_ERROR: NUL-terminated, <= REASON_MAX bytes */
};

typedef int (*precopy_stream_rp_event_fn)(void *opaque, const struct precopy_stream_rp_event *ev);

struct precopy_stream_rp_decoder;

/* Create a return-path decoder (free with precopy_stream_rp_decoder_free()).
 * Returns 0, -EINVAL (out or fn NULL), -ENOMEM. Whether an ACK comes too
 * early or too late is the engine's decision; this decoder only enforces
 * the framing, "ACK at most once" and "nothing after RP_ERROR". */
PRECOPY_API int precopy_stream_rp_decoder_new(struct precopy_stream_rp_decoder **out,
					      precopy_stream_rp_event_fn fn, void *opaque);
PRECOPY_API void precopy_stream_rp_decoder_free(struct precopy_stream_rp_decoder *rp);

/* Same contract as precopy_stream_decoder_feed(). */
PRECOPY_API int precopy_stream_rp_decoder_feed(struct precopy_stream_rp_decoder *rp,
					       const void *buf, size_t len);

/* End of input: 0 at a message boundary, -EBADMSG inside a message, or the
 * earlier error. */
PRECOPY_API int precopy_stream_rp_decoder_finish(struct precopy_stream_rp_decoder *rp);

/* "offset N: ..." or "" while not failed. */
PRECOPY_API const char *precopy_stream_rp_decoder_error(const struct precopy_stream_rp_decoder *rp);

/* 1 once an RP_ACK was decoded, 0 before; -EINVAL for NULL. */
PRECOPY_API int precopy_stream_rp_decoder_acked(const struct precopy_stream_rp_decoder *rp);

#ifdef __cplusplus
}
#endif

#endif /* PRECOPY_STREAM_H */
