/* SPDX-License-Identifier: MIT */
/* stream/decode.c — incremental (push) decoder of the device-state
 * stream: framing, limits, per-device ordering, events. Pure code. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

enum rx_phase {
	RX_PREAMBLE, /* collecting the 8 preamble bytes */
	RX_HDR,      /* collecting a 20-byte record header */
	RX_PAYLOAD,  /* collecting a buffered payload (everything but DEV_DATA) */
	RX_DATA,     /* passing DEV_DATA payload slices through */
	RX_DONE,     /* STREAM_END decoded */
};

/* Per-device record kinds, the columns of the ordering table. */
enum dev_rec { R_SETUP, R_CONFIG, R_DATA, R_INITIAL, R_END, R__COUNT };

#define WAITING PRECOPY_STREAM_DEV_WAITING
#define ACTIVE PRECOPY_STREAM_DEV_ACTIVE
#define INITIAL PRECOPY_STREAM_DEV_INITIAL
#define ENDED PRECOPY_STREAM_DEV_ENDED

/* Per-device ordering. Arcs (everything else is -EPROTO with `why`):
 *   WAITING --SETUP--------> ACTIVE
 *   ACTIVE  --CONFIG-------> ACTIVE    (at most once per device: config_seen)
 *   ACTIVE  --DATA---------> ACTIVE
 *   ACTIVE  --INITIAL_SENT-> INITIAL   (only if SETUP declared PRE_COPY)
 *   ACTIVE  --END----------> ENDED
 *   INITIAL --CONFIG-------> INITIAL   (at most once per device)
 *   INITIAL --DATA---------> INITIAL
 *   INITIAL --END----------> ENDED
 * ENDED has no arcs. */
static const struct dev_arc {
	int8_t next; /* -1: refused */
	const char *why;
} dev_fsm[4][R__COUNT] = {
	[WAITING] = {
		[R_SETUP] = { ACTIVE, NULL },
		[R_CONFIG] = { -1, "before its DEV_SETUP" },
		[R_DATA] = { -1, "before its DEV_SETUP" },
		[R_INITIAL] = { -1, "before its DEV_SETUP" },
		[R_END] = { -1, "before its DEV_SETUP" },
	},
	[ACTIVE] = {
		[R_SETUP] = { -1, "twice" },
		[R_CONFIG] = { ACTIVE, NULL },
		[R_DATA] = { ACTIVE, NULL },
		[R_INITIAL] = { INITIAL, NULL },
		[R_END] = { ENDED, NULL },
	},
	[INITIAL] = {
		[R_SETUP] = { -1, "twice" },
		[R_CONFIG] = { INITIAL, NULL },
		[R_DATA] = { INITIAL, NULL },
		[R_INITIAL] = { -1, "twice" },
		[R_END] = { ENDED, NULL },
	},
	[ENDED] = {
		[R_SETUP] = { -1, "after its DEV_END" },
		[R_CONFIG] = { -1, "after its DEV_END" },
		[R_DATA] = { -1, "after its DEV_END" },
		[R_INITIAL] = { -1, "after its DEV_END" },
		[R_END] = { -1, "twice" },
	},
};

struct dev {
	uint32_t id;
	uint8_t phase;
	uint8_t config_seen;
	uint8_t initial_sent;
	uint32_t mig_flags;
	uint64_t data_bytes;
	uint64_t data_chunks;
};

/* Largest payload buffered in the inline buffer (SETUP, HDR, END). */
#define SMALL_PAYLOAD (PRECOPY_STREAM_SETUP_FIXED + PRECOPY_STREAM_NAME_MAX)

struct precopy_stream_decoder {
	struct precopy_stream_limits lim;
	precopy_stream_event_fn fn;
	void *opaque;
	struct dev *devs; /* sorted by id */
	size_t n_dev;

	int rx;
	uint64_t off;      /* bytes consumed so far */
	uint64_t rec_off;  /* offset of the current record's first byte */
	uint8_t hbuf[PRECOPY_STREAM_REC_HDR_SIZE];
	size_t hhave;
	struct rec_hdr h;
	struct dev *cur;   /* device of the current record, or NULL */
	uint8_t small[SMALL_PAYLOAD];
	uint8_t *big;      /* CONFIG payloads beyond SMALL_PAYLOAD */
	size_t big_cap;
	uint8_t *pbuf;     /* small or big */
	uint32_t phave;    /* payload bytes received */
	uint32_t crc;      /* running payload CRC */

	int header_seen;
	uint32_t declared;
	uint32_t hdr_max_chunk;
	uint32_t n_setup, n_precopy, n_initial, n_ended;
	uint64_t records;

	int err;
	char msg[STREAM_ERRMSG_MAX];
	struct precopy_stream_dev_setup setup; /* storage for the SETUP event */
};

__attribute__((format(printf, 4, 5)))
static int fail(struct precopy_stream_decoder *d, int err, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	precopy__stream_verrmsg(d->msg, off, fmt, ap);
	va_end(ap);
	d->err = err;
	return err;
}

static int emit(struct precopy_stream_decoder *d, struct precopy_stream_event *ev)
{
	int r;

	ev->offset = d->rec_off;
	r = d->fn(d->opaque, ev);
	if (r < 0 && ev->dev_id == PRECOPY_STREAM_DEV_NONE)
		return fail(d, r, d->rec_off, "event callback failed on %s (error %d)",
			    precopy__rec_tag_name(d->h.tag), r);
	if (r < 0)
		return fail(d, r, d->rec_off, "event callback failed on %s for device %u (error %d)",
			    precopy__rec_tag_name(d->h.tag), ev->dev_id, r);
	return 0;
}

static int cmp_dev(const void *a, const void *b)
{
	uint32_t x = ((const struct dev *)a)->id, y = ((const struct dev *)b)->id;

	return x < y ? -1 : x > y;
}

static struct dev *find_dev(const struct precopy_stream_decoder *d, uint32_t id)
{
	struct dev key = { .id = id };

	return bsearch(&key, d->devs, d->n_dev, sizeof(*d->devs), cmp_dev);
}

static int dev_rec_of(uint8_t tag)
{
	switch (tag) {
	case PRECOPY_STREAM_TAG_DEV_SETUP: return R_SETUP;
	case PRECOPY_STREAM_TAG_DEV_CONFIG: return R_CONFIG;
	case PRECOPY_STREAM_TAG_DEV_DATA: return R_DATA;
	case PRECOPY_STREAM_TAG_DEV_INITIAL_SENT: return R_INITIAL;
	case PRECOPY_STREAM_TAG_DEV_END: return R_END;
	default: return -1;
	}
}

/* Length rule of each record kind, checked against the header before any
 * payload byte is accepted. Returns 0 or -EBADMSG. */
static int check_len(struct precopy_stream_decoder *d)
{
	uint32_t len = d->h.len, lim;
	const char *name = precopy__rec_tag_name(d->h.tag);

	switch (d->h.tag) {
	case PRECOPY_STREAM_TAG_STREAM_HDR:
		if (len != PRECOPY_STREAM_HDR_PAYLOAD)
			goto wrong;
		return 0;
	case PRECOPY_STREAM_TAG_DEV_SETUP:
		if (len < PRECOPY_STREAM_SETUP_FIXED || len > SMALL_PAYLOAD)
			goto wrong;
		return 0;
	case PRECOPY_STREAM_TAG_DEV_CONFIG:
		if (len > d->lim.max_config)
			return fail(d, -EBADMSG, d->rec_off, "DEV_CONFIG length %u beyond limit %u",
				    len, d->lim.max_config);
		return 0;
	case PRECOPY_STREAM_TAG_DEV_DATA:
		lim = d->lim.max_chunk < d->hdr_max_chunk ? d->lim.max_chunk : d->hdr_max_chunk;
		if (len == 0)
			goto wrong;
		if (len > lim)
			return fail(d, -EBADMSG, d->rec_off, "DEV_DATA length %u beyond limit %u",
				    len, lim);
		return 0;
	case PRECOPY_STREAM_TAG_DEV_END:
		if (len != PRECOPY_STREAM_END_PAYLOAD)
			goto wrong;
		return 0;
	default: /* INITIAL_SENT, STREAM_END */
		if (len != 0)
			goto wrong;
		return 0;
	}
wrong:
	return fail(d, -EBADMSG, d->rec_off, "%s record with invalid length %u", name, len);
}

/* A complete, CRC-checked record header: decide whether the record may
 * come now, and get ready for its payload. */
static int on_header(struct precopy_stream_decoder *d)
{
	const char *why = NULL;
	uint8_t tag;
	int r, kind;

	r = precopy__rec_hdr_get(d->hbuf, &d->h, &why);
	if (r)
		return fail(d, r, d->rec_off, "%s", why);
	tag = d->h.tag;
	if (tag < PRECOPY_STREAM_TAG_STREAM_HDR || tag > PRECOPY_STREAM_TAG_STREAM_END)
		return fail(d, -EBADMSG, d->rec_off, "unknown record tag 0x%02x", tag);
	kind = dev_rec_of(tag);
	if (kind < 0 && d->h.dev_id != PRECOPY_STREAM_DEV_NONE)
		return fail(d, -EBADMSG, d->rec_off, "%s record with device id %u (must be NONE)",
			    precopy__rec_tag_name(tag), d->h.dev_id);
	if (!d->header_seen && tag != PRECOPY_STREAM_TAG_STREAM_HDR)
		return fail(d, -EPROTO, d->rec_off, "%s record before STREAM_HDR", precopy__rec_tag_name(tag));
	if (d->header_seen && tag == PRECOPY_STREAM_TAG_STREAM_HDR)
		return fail(d, -EPROTO, d->rec_off, "STREAM_HDR twice");
	r = check_len(d);
	if (r)
		return r;

	d->cur = NULL;
	if (kind >= 0) {
		const struct dev_arc *arc;
		struct dev *dv = find_dev(d, d->h.dev_id);

		if (!dv)
			return fail(d, -EPROTO, d->rec_off, "%s record for unknown device %u",
				    precopy__rec_tag_name(tag), d->h.dev_id);
		arc = &dev_fsm[dv->phase][kind];
		if (arc->next < 0)
			return fail(d, -EPROTO, d->rec_off, "%s for device %u %s", precopy__rec_tag_name(tag),
				    dv->id, arc->why);
		if (kind == R_SETUP && d->n_setup >= d->declared)
			return fail(d, -EPROTO, d->rec_off,
				    "DEV_SETUP for device %u beyond the %u devices the header declared",
				    dv->id, d->declared);
		if (kind == R_CONFIG && dv->config_seen)
			return fail(d, -EPROTO, d->rec_off, "DEV_CONFIG for device %u twice", dv->id);
		if (kind == R_INITIAL && !(dv->mig_flags & PRECOPY_STREAM_MIG_PRE_COPY))
			return fail(d, -EPROTO, d->rec_off,
				    "DEV_INITIAL_SENT for device %u, which did not declare PRE_COPY",
				    dv->id);
		d->cur = dv;
	}

	d->phave = 0;
	d->crc = 0;
	if (tag == PRECOPY_STREAM_TAG_DEV_DATA) {
		d->rx = RX_DATA;
		return 0;
	}
	if (d->h.len > SMALL_PAYLOAD) {
		if (d->h.len > d->big_cap) {
			uint8_t *nb = realloc(d->big, d->h.len);

			if (!nb)
				return fail(d, -ENOMEM, d->rec_off,
					    "out of memory for a %u-byte DEV_CONFIG payload", d->h.len);
			d->big = nb;
			d->big_cap = d->h.len;
		}
		d->pbuf = d->big;
	} else {
		d->pbuf = d->small;
	}
	d->rx = RX_PAYLOAD;
	return 0;
}

static int check_payload_crc(struct precopy_stream_decoder *d)
{
	if ((d->h.flags & PRECOPY_STREAM_F_PAYLOAD_CRC) && d->crc != d->h.payload_crc)
		return fail(d, -EBADMSG, d->rec_off, "%s payload CRC mismatch (0x%08x, header says 0x%08x)",
			    precopy__rec_tag_name(d->h.tag), d->crc, d->h.payload_crc);
	return 0;
}

static int on_stream_hdr(struct precopy_stream_decoder *d, const uint8_t *p)
{
	struct precopy_stream_event ev = { .type = PRECOPY_STREAM_EV_HEADER,
					   .dev_id = PRECOPY_STREAM_DEV_NONE };
	uint32_t version = get_le32(p), flags = get_le32(p + 4);
	uint32_t count = get_le32(p + 8), max_chunk = get_le32(p + 12);

	if (version != PRECOPY_STREAM_VERSION)
		return fail(d, -EPROTO, d->rec_off, "stream version %u, this decoder speaks version %u",
			    version, PRECOPY_STREAM_VERSION);
	if (flags)
		return fail(d, -EBADMSG, d->rec_off, "reserved STREAM_HDR flags 0x%x set", flags);
	if (max_chunk == 0)
		return fail(d, -EBADMSG, d->rec_off, "STREAM_HDR with max_chunk 0");
	if (count > d->lim.max_devices)
		return fail(d, -EBADMSG, d->rec_off, "STREAM_HDR device count %u beyond limit %u",
			    count, d->lim.max_devices);
	if (count > d->n_dev)
		return fail(d, -EPROTO, d->rec_off,
			    "STREAM_HDR declares %u devices, the destination has %zu", count, d->n_dev);
	if (max_chunk > d->lim.max_chunk)
		return fail(d, -EPROTO, d->rec_off,
			    "source chunk size %u above this destination's limit %u", max_chunk,
			    d->lim.max_chunk);
	d->header_seen = 1;
	d->declared = count;
	d->hdr_max_chunk = max_chunk;
	ev.u.header.version = version;
	ev.u.header.device_count = count;
	ev.u.header.max_chunk = max_chunk;
	return emit(d, &ev);
}

static int on_setup(struct precopy_stream_decoder *d, const uint8_t *p)
{
	struct precopy_stream_event ev = { .type = PRECOPY_STREAM_EV_DEV_SETUP };
	struct precopy_stream_dev_setup *s = &d->setup;
	uint32_t flags = get_le32(p);
	uint16_t name_len = get_le16(p + 16);
	struct dev *dv = d->cur;

	if (get_le16(p + 18) || get_le32(p + 20))
		return fail(d, -EBADMSG, d->rec_off, "reserved DEV_SETUP field set for device %u", dv->id);
	if (name_len > PRECOPY_STREAM_NAME_MAX || d->h.len != PRECOPY_STREAM_SETUP_FIXED + name_len)
		return fail(d, -EBADMSG, d->rec_off,
			    "DEV_SETUP length %u does not match its name length %u", d->h.len, name_len);
	if (flags & ~PRECOPY_STREAM_MIG_ALL)
		return fail(d, -EBADMSG, d->rec_off, "DEV_SETUP for device %u with unknown flags 0x%x",
			    dv->id, flags);
	if (!precopy__bytes_printable(p + PRECOPY_STREAM_SETUP_FIXED, name_len))
		return fail(d, -EBADMSG, d->rec_off, "DEV_SETUP for device %u with a non-printable name",
			    dv->id);
	if (!(flags & PRECOPY_STREAM_MIG_STOP_COPY))
		return fail(d, -EPROTO, d->rec_off, "device %u declares no STOP_COPY support", dv->id);

	dv->phase = dev_fsm[dv->phase][R_SETUP].next;
	dv->mig_flags = flags;
	d->n_setup++;
	if (flags & PRECOPY_STREAM_MIG_PRE_COPY)
		d->n_precopy++;

	memset(s, 0, sizeof(*s));
	s->dev_id = dv->id;
	s->mig_flags = flags;
	s->pci_vendor = get_le16(p + 4);
	s->pci_device = get_le16(p + 6);
	s->initial_bytes = get_le64(p + 8);
	memcpy(s->name, p + PRECOPY_STREAM_SETUP_FIXED, name_len);
	ev.dev_id = dv->id;
	ev.u.setup = s;
	return emit(d, &ev);
}

static int on_stream_end(struct precopy_stream_decoder *d)
{
	struct precopy_stream_event ev = { .type = PRECOPY_STREAM_EV_STREAM_END,
					   .dev_id = PRECOPY_STREAM_DEV_NONE };

	if (d->n_setup < d->declared)
		return fail(d, -EPROTO, d->rec_off,
			    "STREAM_END with only %u of %u declared devices set up", d->n_setup,
			    d->declared);
	for (size_t i = 0; i < d->n_dev; i++)
		if (d->devs[i].phase != WAITING && d->devs[i].phase != ENDED)
			return fail(d, -EPROTO, d->rec_off, "STREAM_END while device %u has not ended",
				    d->devs[i].id);
	d->rx = RX_DONE;
	return emit(d, &ev);
}

/* A complete, buffered payload (or a zero-length record). */
static int on_payload(struct precopy_stream_decoder *d)
{
	struct precopy_stream_event ev = { .dev_id = d->h.dev_id };
	const uint8_t *p = d->pbuf;
	struct dev *dv = d->cur;
	int r;

	d->crc = precopy_stream_crc32c(0, p, d->h.len);
	r = check_payload_crc(d);
	if (r)
		return r;
	d->rx = RX_HDR;
	d->hhave = 0;
	d->records++;
	switch (d->h.tag) {
	case PRECOPY_STREAM_TAG_STREAM_HDR:
		return on_stream_hdr(d, p);
	case PRECOPY_STREAM_TAG_DEV_SETUP:
		return on_setup(d, p);
	case PRECOPY_STREAM_TAG_DEV_CONFIG:
		dv->config_seen = 1;
		ev.type = PRECOPY_STREAM_EV_DEV_CONFIG;
		ev.u.config.blob = p;
		ev.u.config.len = d->h.len;
		return emit(d, &ev);
	case PRECOPY_STREAM_TAG_DEV_INITIAL_SENT:
		dv->phase = dev_fsm[dv->phase][R_INITIAL].next;
		dv->initial_sent = 1;
		d->n_initial++;
		ev.type = PRECOPY_STREAM_EV_INITIAL_SENT;
		return emit(d, &ev);
	case PRECOPY_STREAM_TAG_DEV_END:
		ev.u.end.total_data_bytes = get_le64(p);
		if (ev.u.end.total_data_bytes != dv->data_bytes)
			return fail(d, -EPROTO, d->rec_off,
				    "DEV_END for device %u says %llu data bytes, %llu arrived", dv->id,
				    (unsigned long long)ev.u.end.total_data_bytes,
				    (unsigned long long)dv->data_bytes);
		dv->phase = dev_fsm[dv->phase][R_END].next;
		d->n_ended++;
		ev.type = PRECOPY_STREAM_EV_DEV_END;
		return emit(d, &ev);
	default:
		return on_stream_end(d);
	}
}

/* Pass DEV_DATA bytes through; returns bytes consumed or -errno. */
static long data_slice(struct precopy_stream_decoder *d, const uint8_t *p, size_t len)
{
	struct precopy_stream_event ev = { .type = PRECOPY_STREAM_EV_DATA, .dev_id = d->h.dev_id };
	uint32_t left = d->h.len - d->phave;
	size_t n = len < left ? len : left;
	int r;

	if (d->h.flags & PRECOPY_STREAM_F_PAYLOAD_CRC)
		d->crc = precopy_stream_crc32c(d->crc, p, n);
	ev.u.data.ptr = p;
	ev.u.data.len = n;
	ev.u.data.chunk_off = d->phave;
	ev.u.data.chunk_len = d->h.len;
	d->phave += (uint32_t)n;
	d->off += n;
	r = emit(d, &ev);
	if (r)
		return r;
	if (d->phave == d->h.len) {
		struct dev *dv = d->cur;

		r = check_payload_crc(d);
		if (r)
			return r;
		/* saturating: a wrapped total could match a forged DEV_END */
		dv->data_bytes = dv->data_bytes > UINT64_MAX - d->h.len ? UINT64_MAX
									: dv->data_bytes + d->h.len;
		dv->data_chunks++;
		d->records++;
		d->rx = RX_HDR;
		d->hhave = 0;
		ev.type = PRECOPY_STREAM_EV_DATA_END;
		ev.u.data.ptr = NULL;
		ev.u.data.len = 0;
		ev.u.data.chunk_off = d->h.len;
		r = emit(d, &ev);
		if (r)
			return r;
	}
	return (long)n;
}

PRECOPY_API int precopy_stream_decoder_feed(struct precopy_stream_decoder *d, const void *buf,
					    size_t len)
{
	const uint8_t *p = buf;
	int r;

	if (!d || (!buf && len))
		return -EINVAL;
	if (d->err)
		return d->err;
	while (len) {
		size_t n;

		switch (d->rx) {
		case RX_PREAMBLE:
			n = PRECOPY_STREAM_PREAMBLE_SIZE - d->hhave;
			n = n < len ? n : len;
			memcpy(d->hbuf + d->hhave, p, n);
			d->hhave += n;
			d->off += n;
			if (d->hhave == PRECOPY_STREAM_PREAMBLE_SIZE) {
				if (memcmp(d->hbuf, precopy__stream_preamble, PRECOPY_STREAM_PREAMBLE_SIZE))
					return fail(d, -EBADMSG, 0,
						    "bad preamble: not a precopy device-state stream");
				d->rx = RX_HDR;
				d->hhave = 0;
			}
			break;
		case RX_HDR:
			if (d->hhave == 0)
				d->rec_off = d->off;
			n = PRECOPY_STREAM_REC_HDR_SIZE - d->hhave;
			n = n < len ? n : len;
			memcpy(d->hbuf + d->hhave, p, n);
			d->hhave += n;
			d->off += n;
			if (d->hhave == PRECOPY_STREAM_REC_HDR_SIZE) {
				r = on_header(d);
				if (r)
					return r;
				if (d->rx == RX_PAYLOAD && d->h.len == 0) {
					r = on_payload(d);
					if (r)
						return r;
				}
			}
			break;
		case RX_PAYLOAD:
			n = d->h.len - d->phave;
			n = n < len ? n : len;
			memcpy(d->pbuf + d->phave, p, n);
			d->phave += (uint32_t)n;
			d->off += n;
			if (d->phave == d->h.len) {
				r = on_payload(d);
				if (r)
					return r;
			}
			break;
		case RX_DATA: {
			long got = data_slice(d, p, len);

			if (got < 0)
				return (int)got;
			n = (size_t)got;
			break;
		}
		default: /* RX_DONE */
			return fail(d, -EPROTO, d->off, "bytes after STREAM_END");
		}
		p += n;
		len -= n;
	}
	return 0;
}

PRECOPY_API int precopy_stream_decoder_finish(struct precopy_stream_decoder *d)
{
	if (!d)
		return -EINVAL;
	if (d->err)
		return d->err;
	switch (d->rx) {
	case RX_DONE:
		return 0;
	case RX_PREAMBLE:
		return fail(d, -EBADMSG, 0, "truncated inside the preamble (%zu of %u bytes)",
			    d->hhave, PRECOPY_STREAM_PREAMBLE_SIZE);
	case RX_HDR:
		if (d->hhave)
			return fail(d, -EBADMSG, d->rec_off,
				    "truncated inside a record header (%zu of %u bytes)", d->hhave,
				    PRECOPY_STREAM_REC_HDR_SIZE);
		return fail(d, -EBADMSG, d->off, "stream ended before STREAM_END");
	default:
		return fail(d, -EBADMSG, d->rec_off,
			    "truncated inside a %s record (%u of %u payload bytes)",
			    precopy__rec_tag_name(d->h.tag), d->phave, d->h.len);
	}
}

static int limits_resolve(const struct precopy_stream_limits *in, struct precopy_stream_limits *out)
{
	*out = (struct precopy_stream_limits){
		.max_chunk = PRECOPY_STREAM_DEFAULT_MAX_CHUNK,
		.max_config = PRECOPY_STREAM_DEFAULT_MAX_CONFIG,
		.max_devices = PRECOPY_STREAM_DEFAULT_MAX_DEVICES,
	};
	if (!in)
		return 0;
	if (in->max_chunk)
		out->max_chunk = in->max_chunk;
	if (in->max_config)
		out->max_config = in->max_config;
	if (in->max_devices)
		out->max_devices = in->max_devices;
	if (out->max_chunk > PRECOPY_STREAM_CAP_MAX_CHUNK ||
	    out->max_config > PRECOPY_STREAM_CAP_MAX_CONFIG ||
	    out->max_devices > PRECOPY_STREAM_CAP_MAX_DEVICES)
		return -EINVAL;
	return 0;
}

PRECOPY_API int precopy_stream_decoder_new(struct precopy_stream_decoder **out,
					   const struct precopy_stream_limits *limits,
					   const uint32_t *dev_ids, size_t n_dev,
					   precopy_stream_event_fn fn, void *opaque)
{
	struct precopy_stream_limits lim;
	struct precopy_stream_decoder *d;

	if (!out || (n_dev && !dev_ids) || !fn)
		return -EINVAL;
	if (limits_resolve(limits, &lim) || n_dev > lim.max_devices)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->devs = calloc(n_dev ? n_dev : 1, sizeof(*d->devs));
	if (!d->devs) {
		free(d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_dev; i++)
		d->devs[i].id = dev_ids[i];
	qsort(d->devs, n_dev, sizeof(*d->devs), cmp_dev);
	for (size_t i = 0; i < n_dev; i++) {
		if (d->devs[i].id == PRECOPY_STREAM_DEV_NONE ||
		    (i && d->devs[i].id == d->devs[i - 1].id)) {
			free(d->devs);
			free(d);
			return -EINVAL;
		}
	}
	d->n_dev = n_dev;
	d->lim = lim;
	d->fn = fn;
	d->opaque = opaque;
	d->rx = RX_PREAMBLE;
	*out = d;
	return 0;
}

PRECOPY_API void precopy_stream_decoder_free(struct precopy_stream_decoder *d)
{
	if (!d)
		return;
	free(d->big);
	free(d->devs);
	free(d);
}

PRECOPY_API const char *precopy_stream_decoder_error(const struct precopy_stream_decoder *d)
{
	if (!d)
		return "no decoder";
	return d->err ? d->msg : "";
}

PRECOPY_API int precopy_stream_decoder_stats(const struct precopy_stream_decoder *d,
					     struct precopy_stream_decoder_stats *st)
{
	if (!d || !st)
		return -EINVAL;
	*st = (struct precopy_stream_decoder_stats){
		.bytes = d->off,
		.records = d->records,
		.devices_declared = d->declared,
		.devices_setup = d->n_setup,
		.devices_precopy = d->n_precopy,
		.initial_sent = d->n_initial,
		.devices_ended = d->n_ended,
		.header_seen = d->header_seen,
		.ended = d->rx == RX_DONE,
		.error = d->err,
	};
	return 0;
}

PRECOPY_API int precopy_stream_decoder_device(const struct precopy_stream_decoder *d,
					      uint32_t dev_id, struct precopy_stream_dev_status *st)
{
	const struct dev *dv;

	if (!d || !st)
		return -EINVAL;
	dv = find_dev(d, dev_id);
	if (!dv)
		return -ENOENT;
	*st = (struct precopy_stream_dev_status){
		.phase = dv->phase,
		.mig_flags = dv->mig_flags,
		.config_seen = dv->config_seen,
		.initial_sent = dv->initial_sent,
		.data_bytes = dv->data_bytes,
		.data_chunks = dv->data_chunks,
	};
	return 0;
}
