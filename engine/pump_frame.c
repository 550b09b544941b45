/* SPDX-License-Identifier: MIT */
/* The frame codec: the 16-byte little-endian frame header of pump.h.
 * Pure functions; no I/O. */
#include <errno.h>

#include "pump_internal.h"

#define KNOWN_FLAGS (PRECOPY_FRAME_EOD | PRECOPY_FRAME_ABORT)

/* Shared shape rules: returns 0 or the -errno a bad combination earns. */
static int check_shape(uint32_t flags, uint32_t len, uint32_t max_payload, int bad_len)
{
	if (flags & ~KNOWN_FLAGS)
		return -EPROTO;
	if ((flags & PRECOPY_FRAME_EOD) && (flags & PRECOPY_FRAME_ABORT))
		return -EPROTO;
	if (flags & PRECOPY_FRAME_EOD)
		return len == 0 ? 0 : bad_len;
	if (flags & PRECOPY_FRAME_ABORT)
		return len == PRECOPY_FRAME_ABORT_LEN ? 0 : bad_len;
	if (len == 0 || len > max_payload)
		return bad_len;
	return 0;
}

PRECOPY_API int precopy_frame_encode(const struct precopy_frame_hdr *h, uint8_t *out)
{
	if (!h || !out)
		return -EINVAL;
	if (check_shape(h->flags, h->len, PRECOPY_FRAME_MAX_PAYLOAD, -EINVAL))
		return -EINVAL;
	pump_put_le32(out, PRECOPY_FRAME_MAGIC);
	pump_put_le32(out + 4, h->dev_id);
	pump_put_le32(out + 8, h->flags);
	pump_put_le32(out + 12, h->len);
	return 0;
}

PRECOPY_API int precopy_frame_decode(const uint8_t *in, uint32_t max_payload,
				     struct precopy_frame_hdr *out)
{
	uint32_t flags, len;
	int r;

	if (!in || !out)
		return -EINVAL;
	if (max_payload == 0 || max_payload > PRECOPY_FRAME_MAX_PAYLOAD)
		max_payload = PRECOPY_FRAME_MAX_PAYLOAD;
	if (pump_le32(in) != PRECOPY_FRAME_MAGIC)
		return -EBADMSG;
	flags = pump_le32(in + 8);
	len = pump_le32(in + 12);
	r = check_shape(flags, len, max_payload, -EBADMSG);
	if (r)
		return r;
	out->dev_id = pump_le32(in + 4);
	out->flags = flags;
	out->len = len;
	return 0;
}
