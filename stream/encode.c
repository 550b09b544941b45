/* SPDX-License-Identifier: MIT */
/* stream/encode.c — stateless encoders for the device-state stream
 * and its return path: each writes one record into a caller buffer. */
#include <errno.h>
#include <string.h>

#include "wire.h"

/* Checks shared by every encoder: a buffer and enough room. */
static int room(const void *buf, size_t cap, size_t need)
{
	if (!buf)
		return -EINVAL;
	return cap < need ? -ENOSPC : 0;
}

PRECOPY_API int precopy_stream_encode_stream_hdr(void *buf, size_t cap, uint32_t device_count,
						 uint32_t max_chunk)
{
	uint8_t pl[PRECOPY_STREAM_HDR_PAYLOAD];
	uint8_t *p = buf;
	int r;

	if (max_chunk == 0 || max_chunk > PRECOPY_STREAM_CAP_MAX_CHUNK ||
	    device_count > PRECOPY_STREAM_CAP_MAX_DEVICES)
		return -EINVAL;
	r = room(buf, cap, PRECOPY_STREAM_START_SIZE);
	if (r)
		return r;
	put_le32(pl + 0, PRECOPY_STREAM_VERSION);
	put_le32(pl + 4, 0);
	put_le32(pl + 8, device_count);
	put_le32(pl + 12, max_chunk);
	memcpy(p, precopy__stream_preamble, PRECOPY_STREAM_PREAMBLE_SIZE);
	p += PRECOPY_STREAM_PREAMBLE_SIZE;
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_STREAM_HDR, PRECOPY_STREAM_F_PAYLOAD_CRC,
		    PRECOPY_STREAM_DEV_NONE, sizeof(pl), precopy_stream_crc32c(0, pl, sizeof(pl)));
	memcpy(p + PRECOPY_STREAM_REC_HDR_SIZE, pl, sizeof(pl));
	return (int)PRECOPY_STREAM_START_SIZE;
}

PRECOPY_API int precopy_stream_encode_dev_setup(void *buf, size_t cap,
						const struct precopy_stream_dev_setup *setup)
{
	uint8_t *p = buf, *pl;
	size_t name_len, len;
	int r;

	if (!setup || setup->dev_id == PRECOPY_STREAM_DEV_NONE ||
	    !(setup->mig_flags & PRECOPY_STREAM_MIG_STOP_COPY) ||
	    (setup->mig_flags & ~PRECOPY_STREAM_MIG_ALL))
		return -EINVAL;
	name_len = strnlen(setup->name, sizeof(setup->name));
	if (name_len > PRECOPY_STREAM_NAME_MAX ||
	    !precopy__bytes_printable((const uint8_t *)setup->name, name_len))
		return -EINVAL;
	len = PRECOPY_STREAM_SETUP_FIXED + name_len;
	r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE + len);
	if (r)
		return r;
	pl = p + PRECOPY_STREAM_REC_HDR_SIZE;
	put_le32(pl + 0, setup->mig_flags);
	put_le16(pl + 4, setup->pci_vendor);
	put_le16(pl + 6, setup->pci_device);
	put_le64(pl + 8, setup->initial_bytes);
	put_le16(pl + 16, (uint16_t)name_len);
	put_le16(pl + 18, 0);
	put_le32(pl + 20, 0);
	memcpy(pl + PRECOPY_STREAM_SETUP_FIXED, setup->name, name_len);
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_DEV_SETUP, PRECOPY_STREAM_F_PAYLOAD_CRC, setup->dev_id,
		    (uint32_t)len, precopy_stream_crc32c(0, pl, len));
	return (int)(PRECOPY_STREAM_REC_HDR_SIZE + len);
}

PRECOPY_API int precopy_stream_encode_dev_config(void *buf, size_t cap, uint32_t dev_id,
						 const void *blob, uint32_t len)
{
	uint8_t *p = buf;
	int r;

	if (dev_id == PRECOPY_STREAM_DEV_NONE || (!blob && len) || len > PRECOPY_STREAM_CAP_MAX_CONFIG)
		return -EINVAL;
	r = room(buf, cap, (size_t)PRECOPY_STREAM_REC_HDR_SIZE + len);
	if (r)
		return r;
	if (len)
		memmove(p + PRECOPY_STREAM_REC_HDR_SIZE, blob, len);
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_DEV_CONFIG, PRECOPY_STREAM_F_PAYLOAD_CRC, dev_id, len,
		    precopy_stream_crc32c(0, p + PRECOPY_STREAM_REC_HDR_SIZE, len));
	return (int)(PRECOPY_STREAM_REC_HDR_SIZE + len);
}

PRECOPY_API int precopy_stream_encode_data_hdr(void *buf, size_t cap, uint32_t dev_id, uint32_t len)
{
	int r;

	if (dev_id == PRECOPY_STREAM_DEV_NONE || len == 0 || len > PRECOPY_STREAM_CAP_MAX_CHUNK)
		return -EINVAL;
	r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE);
	if (r)
		return r;
	precopy__rec_hdr_put(buf, PRECOPY_STREAM_TAG_DEV_DATA, 0, dev_id, len, 0);
	return (int)PRECOPY_STREAM_REC_HDR_SIZE;
}

PRECOPY_API int precopy_stream_encode_data(void *buf, size_t cap, uint32_t dev_id,
					   const void *payload, uint32_t len)
{
	uint8_t *p = buf;
	int r;

	if (dev_id == PRECOPY_STREAM_DEV_NONE || len == 0 || len > PRECOPY_STREAM_CAP_MAX_CHUNK ||
	    !payload)
		return -EINVAL;
	r = room(buf, cap, (size_t)PRECOPY_STREAM_REC_HDR_SIZE + len);
	if (r)
		return r;
	memmove(p + PRECOPY_STREAM_REC_HDR_SIZE, payload, len);
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_DEV_DATA, PRECOPY_STREAM_F_PAYLOAD_CRC, dev_id, len,
		    precopy_stream_crc32c(0, p + PRECOPY_STREAM_REC_HDR_SIZE, len));
	return (int)(PRECOPY_STREAM_REC_HDR_SIZE + len);
}

PRECOPY_API int precopy_stream_encode_initial_sent(void *buf, size_t cap, uint32_t dev_id)
{
	int r;

	if (dev_id == PRECOPY_STREAM_DEV_NONE)
		return -EINVAL;
	r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE);
	if (r)
		return r;
	precopy__rec_hdr_put(buf, PRECOPY_STREAM_TAG_DEV_INITIAL_SENT, PRECOPY_STREAM_F_PAYLOAD_CRC, dev_id,
		    0, 0);
	return (int)PRECOPY_STREAM_REC_HDR_SIZE;
}

PRECOPY_API int precopy_stream_encode_dev_end(void *buf, size_t cap, uint32_t dev_id,
					      uint64_t total_data_bytes)
{
	uint8_t *p = buf;
	int r;

	if (dev_id == PRECOPY_STREAM_DEV_NONE)
		return -EINVAL;
	r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE + PRECOPY_STREAM_END_PAYLOAD);
	if (r)
		return r;
	put_le64(p + PRECOPY_STREAM_REC_HDR_SIZE, total_data_bytes);
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_DEV_END, PRECOPY_STREAM_F_PAYLOAD_CRC, dev_id,
		    PRECOPY_STREAM_END_PAYLOAD,
		    precopy_stream_crc32c(0, p + PRECOPY_STREAM_REC_HDR_SIZE,
					  PRECOPY_STREAM_END_PAYLOAD));
	return (int)(PRECOPY_STREAM_REC_HDR_SIZE + PRECOPY_STREAM_END_PAYLOAD);
}

/* A record that is its header alone, for no device. */
static int header_only(void *buf, size_t cap, uint8_t tag)
{
	int r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE);

	if (r)
		return r;
	precopy__rec_hdr_put(buf, tag, PRECOPY_STREAM_F_PAYLOAD_CRC, PRECOPY_STREAM_DEV_NONE, 0, 0);
	return (int)PRECOPY_STREAM_REC_HDR_SIZE;
}

PRECOPY_API int precopy_stream_encode_stream_end(void *buf, size_t cap)
{
	return header_only(buf, cap, PRECOPY_STREAM_TAG_STREAM_END);
}

PRECOPY_API int precopy_stream_encode_rp_ack(void *buf, size_t cap)
{
	return header_only(buf, cap, PRECOPY_STREAM_TAG_RP_ACK);
}

PRECOPY_API int precopy_stream_encode_rp_error(void *buf, size_t cap, uint32_t dev_id, int code,
					       const char *reason)
{
	uint8_t *p = buf, *pl;
	size_t rlen = reason ? strnlen(reason, PRECOPY_STREAM_REASON_MAX) : 0;
	size_t len = PRECOPY_STREAM_ERROR_FIXED + rlen;
	int r;

	if (code < 1 || code > (int)PRECOPY_STREAM_CODE_MAX)
		return -EINVAL;
	r = room(buf, cap, PRECOPY_STREAM_REC_HDR_SIZE + len);
	if (r)
		return r;
	pl = p + PRECOPY_STREAM_REC_HDR_SIZE;
	put_le32(pl + 0, (uint32_t)code);
	put_le16(pl + 4, (uint16_t)rlen);
	put_le16(pl + 6, 0);
	for (size_t i = 0; i < rlen; i++) {
		uint8_t c = (uint8_t)reason[i];
		pl[PRECOPY_STREAM_ERROR_FIXED + i] = (c < 0x20 || c > 0x7E) ? '?' : c;
	}
	precopy__rec_hdr_put(p, PRECOPY_STREAM_TAG_RP_ERROR, PRECOPY_STREAM_F_PAYLOAD_CRC, dev_id,
		    (uint32_t)len, precopy_stream_crc32c(0, pl, len));
	return (int)(PRECOPY_STREAM_REC_HDR_SIZE + len);
}
