/* SPDX-License-Identifier: MIT */
/* stream/return_path.c — incremental decoder of the return path
 * (destination -> source): RP_ACK (switchover-ack) and RP_ERROR. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define RP_PAYLOAD_MAX (PRECOPY_STREAM_ERROR_FIXED + PRECOPY_STREAM_REASON_MAX)

struct precopy_stream_rp_decoder {
	precopy_stream_rp_event_fn fn;
	void *opaque;
	uint64_t off;     /* bytes consumed */
	uint64_t rec_off; /* offset of the current message */
	uint8_t hbuf[PRECOPY_STREAM_REC_HDR_SIZE];
	size_t hhave;
	int in_payload;
	struct rec_hdr h;
	uint8_t pbuf[RP_PAYLOAD_MAX];
	uint32_t phave;
	int acked;
	int errored;      /* an RP_ERROR was decoded: nothing may follow */
	int err;
	char msg[STREAM_ERRMSG_MAX];
	char reason[PRECOPY_STREAM_REASON_MAX + 1];
};

__attribute__((format(printf, 4, 5)))
static int fail(struct precopy_stream_rp_decoder *rp, int err, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	precopy__stream_verrmsg(rp->msg, off, fmt, ap);
	va_end(ap);
	rp->err = err;
	return err;
}

static int emit(struct precopy_stream_rp_decoder *rp, struct precopy_stream_rp_event *ev)
{
	int r;

	ev->offset = rp->rec_off;
	r = rp->fn(rp->opaque, ev);
	if (r < 0)
		return fail(rp, r, rp->rec_off, "event callback failed on %s (error %d)",
			    precopy__rec_tag_name(rp->h.tag), r);
	return 0;
}

static int on_header(struct precopy_stream_rp_decoder *rp)
{
	const char *why = NULL;
	int r = precopy__rec_hdr_get(rp->hbuf, &rp->h, &why);

	if (r)
		return fail(rp, r, rp->rec_off, "%s", why);
	switch (rp->h.tag) {
	case PRECOPY_STREAM_TAG_RP_ACK:
		if (rp->h.len != 0)
			goto bad_len;
		if (rp->h.dev_id != PRECOPY_STREAM_DEV_NONE)
			return fail(rp, -EBADMSG, rp->rec_off,
				    "RP_ACK with device id %u (must be NONE)", rp->h.dev_id);
		break;
	case PRECOPY_STREAM_TAG_RP_ERROR:
		if (rp->h.len < PRECOPY_STREAM_ERROR_FIXED || rp->h.len > RP_PAYLOAD_MAX)
			goto bad_len;
		break;
	default:
		return fail(rp, -EBADMSG, rp->rec_off, "unknown return-path tag 0x%02x", rp->h.tag);
	}
	if (rp->errored)
		return fail(rp, -EPROTO, rp->rec_off, "%s after RP_ERROR", precopy__rec_tag_name(rp->h.tag));
	if (rp->h.tag == PRECOPY_STREAM_TAG_RP_ACK && rp->acked)
		return fail(rp, -EPROTO, rp->rec_off, "RP_ACK twice");
	rp->in_payload = 1;
	rp->phave = 0;
	return 0;
bad_len:
	return fail(rp, -EBADMSG, rp->rec_off, "%s message with invalid length %u",
		    precopy__rec_tag_name(rp->h.tag), rp->h.len);
}

static int on_payload(struct precopy_stream_rp_decoder *rp)
{
	struct precopy_stream_rp_event ev = { .dev_id = rp->h.dev_id };
	const uint8_t *p = rp->pbuf;
	uint32_t code;
	uint16_t rlen;

	if ((rp->h.flags & PRECOPY_STREAM_F_PAYLOAD_CRC) &&
	    precopy_stream_crc32c(0, p, rp->h.len) != rp->h.payload_crc)
		return fail(rp, -EBADMSG, rp->rec_off, "%s payload CRC mismatch",
			    precopy__rec_tag_name(rp->h.tag));
	rp->in_payload = 0;
	rp->hhave = 0;
	if (rp->h.tag == PRECOPY_STREAM_TAG_RP_ACK) {
		rp->acked = 1;
		ev.type = PRECOPY_STREAM_RP_EV_ACK;
		return emit(rp, &ev);
	}
	code = get_le32(p);
	rlen = get_le16(p + 4);
	if (get_le16(p + 6))
		return fail(rp, -EBADMSG, rp->rec_off, "reserved RP_ERROR field set");
	if (rlen > PRECOPY_STREAM_REASON_MAX || rp->h.len != PRECOPY_STREAM_ERROR_FIXED + rlen)
		return fail(rp, -EBADMSG, rp->rec_off,
			    "RP_ERROR length %u does not match its reason length %u", rp->h.len, rlen);
	if (code < 1 || code > PRECOPY_STREAM_CODE_MAX)
		return fail(rp, -EBADMSG, rp->rec_off, "RP_ERROR with invalid code %u", code);
	if (!precopy__bytes_printable(p + PRECOPY_STREAM_ERROR_FIXED, rlen))
		return fail(rp, -EBADMSG, rp->rec_off, "RP_ERROR with a non-printable reason");
	memcpy(rp->reason, p + PRECOPY_STREAM_ERROR_FIXED, rlen);
	rp->reason[rlen] = '\0';
	rp->errored = 1;
	ev.type = PRECOPY_STREAM_RP_EV_ERROR;
	ev.code = (int)code;
	ev.reason = rp->reason;
	return emit(rp, &ev);
}

PRECOPY_API int precopy_stream_rp_decoder_feed(struct precopy_stream_rp_decoder *rp,
					       const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int r;

	if (!rp || (!buf && len))
		return -EINVAL;
	if (rp->err)
		return rp->err;
	while (len) {
		size_t n;

		if (!rp->in_payload) {
			if (rp->hhave == 0)
				rp->rec_off = rp->off;
			n = PRECOPY_STREAM_REC_HDR_SIZE - rp->hhave;
			n = n < len ? n : len;
			memcpy(rp->hbuf + rp->hhave, p, n);
			rp->hhave += n;
			rp->off += n;
			p += n;
			len -= n;
			if (rp->hhave < PRECOPY_STREAM_REC_HDR_SIZE)
				continue;
			r = on_header(rp);
			if (r)
				return r;
		} else {
			n = rp->h.len - rp->phave;
			n = n < len ? n : len;
			memcpy(rp->pbuf + rp->phave, p, n);
			rp->phave += (uint32_t)n;
			rp->off += n;
			p += n;
			len -= n;
		}
		if (rp->phave == rp->h.len) {
			r = on_payload(rp);
			if (r)
				return r;
		}
	}
	return 0;
}

PRECOPY_API int precopy_stream_rp_decoder_finish(struct precopy_stream_rp_decoder *rp)
{
	if (!rp)
		return -EINVAL;
	if (rp->err)
		return rp->err;
	if (rp->in_payload)
		return fail(rp, -EBADMSG, rp->rec_off,
			    "truncated inside a %s message (%u of %u payload bytes)",
			    precopy__rec_tag_name(rp->h.tag), rp->phave, rp->h.len);
	if (rp->hhave)
		return fail(rp, -EBADMSG, rp->rec_off,
			    "truncated inside a message header (%zu of %u bytes)", rp->hhave,
			    PRECOPY_STREAM_REC_HDR_SIZE);
	return 0;
}

PRECOPY_API int precopy_stream_rp_decoder_new(struct precopy_stream_rp_decoder **out,
					      precopy_stream_rp_event_fn fn, void *opaque)
{
	struct precopy_stream_rp_decoder *rp;

	if (!out || !fn)
		return -EINVAL;
	rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	rp->fn = fn;
	rp->opaque = opaque;
	*out = rp;
	return 0;
}

PRECOPY_API void precopy_stream_rp_decoder_free(struct precopy_stream_rp_decoder *rp)
{
	free(rp);
}

PRECOPY_API const char *precopy_stream_rp_decoder_error(const struct precopy_stream_rp_decoder *rp)
{
	if (!rp)
		return "no decoder";
	return rp->err ? rp->msg : "";
}

PRECOPY_API int precopy_stream_rp_decoder_acked(const struct precopy_stream_rp_decoder *rp)
{
	if (!rp)
		return -EINVAL;
	return rp->acked;
}
