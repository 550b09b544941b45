/* SPDX-License-Identifier: MIT */
/* vfio_user/codec.c — the vfio-user wire format (see codec.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

#define WHY(s)                           \
	do {                             \
		if (why)                 \
			*why = (s);      \
		return -EPROTO;          \
	} while (0)

/* ---- header ---------------------------------------------------------------- */

void precopy__vu_hdr_put(uint8_t *buf, const struct precopy__vu_hdr *h)
{
	precopy__vu_put16(buf, h->msg_id);
	precopy__vu_put16(buf + 2, h->cmd);
	precopy__vu_put32(buf + 4, h->size);
	precopy__vu_put32(buf + 8, h->flags);
	precopy__vu_put32(buf + 12, h->error);
}

int precopy__vu_hdr_get(const uint8_t *buf, size_t n, struct precopy__vu_hdr *h, const char **why)
{
	if (!buf || n < PRECOPY__VU_HDR_SIZE)
		WHY("message shorter than its 16-byte header");
	h->msg_id = precopy__vu_get16(buf);
	h->cmd = precopy__vu_get16(buf + 2);
	h->size = precopy__vu_get32(buf + 4);
	h->flags = precopy__vu_get32(buf + 8);
	h->error = precopy__vu_get32(buf + 12);
	if (h->size < PRECOPY__VU_HDR_SIZE)
		WHY("size field below the header's 16 bytes");
	uint32_t type = h->flags & PRECOPY__VU_F_TYPE_MASK;
	if (type != PRECOPY__VU_F_COMMAND && type != PRECOPY__VU_F_REPLY)
		WHY("message type neither command nor reply");
	if (h->flags & ~(PRECOPY__VU_F_TYPE_MASK | PRECOPY__VU_F_NO_REPLY | PRECOPY__VU_F_ERROR))
		WHY("reserved flag bits set");
	if (type == PRECOPY__VU_F_REPLY && (h->flags & PRECOPY__VU_F_NO_REPLY))
		WHY("no-reply bit on a reply");
	if (type == PRECOPY__VU_F_COMMAND && (h->flags & PRECOPY__VU_F_ERROR))
		WHY("error bit on a command");
	return 0;
}

/* ---- encoders -------------------------------------------------------------- */

/* Start a message of payload plen: header into buf; returns the total or
 * -ENOSPC/-EINVAL. */
static int begin(uint8_t *buf, size_t cap, uint16_t id, uint16_t cmd, uint32_t flags, size_t plen)
{
	if (!buf || plen > UINT32_MAX - PRECOPY__VU_HDR_SIZE || plen > (size_t)INT32_MAX - PRECOPY__VU_HDR_SIZE)
		return -EINVAL;
	size_t total = PRECOPY__VU_HDR_SIZE + plen;
	if (total > cap)
		return -ENOSPC;
	struct precopy__vu_hdr h = { .msg_id = id, .cmd = cmd, .size = (uint32_t)total, .flags = flags };
	precopy__vu_hdr_put(buf, &h);
	return (int)total;
}

int precopy__vu_enc_version(uint8_t *buf, size_t cap, uint16_t id, uint16_t major, uint16_t minor,
			    const char *json)
{
	size_t jl = json ? strlen(json) + 1 : 0;
	if (jl > PRECOPY__VU_MAX_JSON)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_VERSION, PRECOPY__VU_F_COMMAND, 4 + jl);
	if (t < 0)
		return t;
	precopy__vu_put16(buf + 16, major);
	precopy__vu_put16(buf + 18, minor);
	if (jl)
		memcpy(buf + 20, json, jl);
	return t;
}

int precopy__vu_enc_dma_map(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint64_t offset,
			    uint64_t addr, uint64_t size)
{
	if (size == 0 || addr + size < addr)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_DMA_MAP, PRECOPY__VU_F_COMMAND, 32);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 16, 32);
	precopy__vu_put32(buf + 20, flags);
	precopy__vu_put64(buf + 24, offset);
	precopy__vu_put64(buf + 32, addr);
	precopy__vu_put64(buf + 40, size);
	return t;
}

int precopy__vu_enc_dma_unmap(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, uint64_t size)
{
	int t = begin(buf, cap, id, PRECOPY__VU_DMA_UNMAP, PRECOPY__VU_F_COMMAND, 24);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 16, 24); /* the largest reply payload: the entry echoed */
	precopy__vu_put32(buf + 20, 0);
	precopy__vu_put64(buf + 24, addr);
	precopy__vu_put64(buf + 32, size);
	return t;
}

int precopy__vu_enc_device_info(uint8_t *buf, size_t cap, uint16_t id)
{
	int t = begin(buf, cap, id, PRECOPY__VU_DEVICE_GET_INFO, PRECOPY__VU_F_COMMAND, 16);
	if (t < 0)
		return t;
	memset(buf + 16, 0, 16);
	precopy__vu_put32(buf + 16, PRECOPY__VU_DEVICE_INFO_SIZE);
	return t;
}

int precopy__vu_enc_region_info(uint8_t *buf, size_t cap, uint16_t id, uint32_t index, uint32_t argsz)
{
	if (argsz < PRECOPY__VU_REGION_INFO_SIZE)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_DEVICE_GET_REGION_INFO, PRECOPY__VU_F_COMMAND, 32);
	if (t < 0)
		return t;
	memset(buf + 16, 0, 32);
	precopy__vu_put32(buf + 16, argsz);
	precopy__vu_put32(buf + 24, index);
	return t;
}

static void put_access(uint8_t *p, uint32_t region, uint64_t offset, uint32_t count)
{
	precopy__vu_put64(p, offset);
	precopy__vu_put32(p + 8, region);
	precopy__vu_put32(p + 12, count);
}

int precopy__vu_enc_region_read(uint8_t *buf, size_t cap, uint16_t id, uint32_t region, uint64_t offset,
				uint32_t count)
{
	int t = begin(buf, cap, id, PRECOPY__VU_REGION_READ, PRECOPY__VU_F_COMMAND, 16);
	if (t < 0)
		return t;
	put_access(buf + 16, region, offset, count);
	return t;
}

int precopy__vu_enc_region_write(uint8_t *buf, size_t cap, uint16_t id, uint32_t region, uint64_t offset,
				 const void *data, uint32_t count)
{
	if (count && !data)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_REGION_WRITE, PRECOPY__VU_F_COMMAND, 16 + (size_t)count);
	if (t < 0)
		return t;
	put_access(buf + 16, region, offset, count);
	if (count)
		memcpy(buf + 32, data, count);
	return t;
}

int precopy__vu_enc_feature(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint32_t argsz,
			    const void *data, size_t len)
{
	if ((len && !data) || len > UINT32_MAX - PRECOPY__VU_FEATURE_SIZE ||
	    argsz < PRECOPY__VU_FEATURE_SIZE)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_DEVICE_FEATURE, PRECOPY__VU_F_COMMAND,
		      PRECOPY__VU_FEATURE_SIZE + len);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 16, argsz);
	precopy__vu_put32(buf + 20, flags);
	if (len)
		memcpy(buf + 24, data, len);
	return t;
}

int precopy__vu_enc_mig_data_read(uint8_t *buf, size_t cap, uint16_t id, uint32_t size)
{
	if (size > UINT32_MAX - PRECOPY__VU_MIG_DATA_SIZE)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_MIG_DATA_READ, PRECOPY__VU_F_COMMAND, 8);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 16, PRECOPY__VU_MIG_DATA_SIZE + size);
	precopy__vu_put32(buf + 20, size);
	return t;
}

int precopy__vu_enc_mig_data_write(uint8_t *buf, size_t cap, uint16_t id, const void *data, uint32_t size)
{
	if ((size && !data) || size > UINT32_MAX - PRECOPY__VU_MIG_DATA_SIZE)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_MIG_DATA_WRITE, PRECOPY__VU_F_COMMAND, 8 + (size_t)size);
	if (t < 0)
		return t;
	/* libvfio-user refuses an argsz below 8 + size (fact observed in its
	 * handler), though the reply has no payload */
	precopy__vu_put32(buf + 16, PRECOPY__VU_MIG_DATA_SIZE + size);
	precopy__vu_put32(buf + 20, size);
	if (size)
		memcpy(buf + 24, data, size);
	return t;
}

int precopy__vu_enc_reset(uint8_t *buf, size_t cap, uint16_t id)
{
	return begin(buf, cap, id, PRECOPY__VU_DEVICE_RESET, PRECOPY__VU_F_COMMAND, 0);
}

int precopy__vu_enc_irq_info(uint8_t *buf, size_t cap, uint16_t id, uint32_t index)
{
	int t = begin(buf, cap, id, PRECOPY__VU_DEVICE_GET_IRQ_INFO, PRECOPY__VU_F_COMMAND, 16);
	if (t < 0)
		return t;
	memset(buf + 16, 0, 16);
	precopy__vu_put32(buf + 16, PRECOPY__VU_IRQ_INFO_SIZE);
	precopy__vu_put32(buf + 24, index);
	return t;
}

int precopy__vu_enc_set_irqs(uint8_t *buf, size_t cap, uint16_t id, uint32_t flags, uint32_t index,
			     uint32_t start, uint32_t count, const uint8_t *bools)
{
	uint32_t data = flags & (PRECOPY__VU_IRQ_DATA_NONE | PRECOPY__VU_IRQ_DATA_BOOL | PRECOPY__VU_IRQ_DATA_EVENTFD);
	uint32_t act = flags & (PRECOPY__VU_IRQ_ACTION_MASK | PRECOPY__VU_IRQ_ACTION_UNMASK |
				PRECOPY__VU_IRQ_ACTION_TRIGGER);
	if (flags != (data | act) || !data || (data & (data - 1)) || !act || (act & (act - 1)) ||
	    (data == PRECOPY__VU_IRQ_DATA_BOOL) != (bools != NULL) || start + count < start)
		return -EINVAL;
	size_t dl = data == PRECOPY__VU_IRQ_DATA_BOOL ? count : 0;
	if (dl > UINT32_MAX - PRECOPY__VU_IRQ_SET_SIZE)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_DEVICE_SET_IRQS, PRECOPY__VU_F_COMMAND, PRECOPY__VU_IRQ_SET_SIZE + dl);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 16, (uint32_t)(PRECOPY__VU_IRQ_SET_SIZE + dl));
	precopy__vu_put32(buf + 20, flags);
	precopy__vu_put32(buf + 24, index);
	precopy__vu_put32(buf + 28, start);
	precopy__vu_put32(buf + 32, count);
	if (dl)
		memcpy(buf + 36, bools, dl);
	return t;
}

int precopy__vu_enc_caps(char *out, size_t cap, uint64_t max_msg_fds, uint64_t max_data_xfer_size,
			 int twin_socket)
{
	if (!out)
		return -EINVAL;
	int n = snprintf(out, cap,
			 "{\"capabilities\":{\"max_msg_fds\":%llu,\"max_data_xfer_size\":%llu%s}}",
			 (unsigned long long)max_msg_fds, (unsigned long long)max_data_xfer_size,
			 twin_socket ? ",\"twin_socket\":{\"supported\":true}" : "");
	if (n < 0)
		return -EINVAL;
	if ((size_t)n + 1 > cap)
		return -ENOSPC;
	return n + 1;
}

int precopy__vu_enc_log_start_data(uint8_t *out, size_t cap, uint64_t page_size, const uint64_t *ranges,
				   uint32_t nranges)
{
	if (!out || (nranges && !ranges))
		return -EINVAL;
	size_t need = PRECOPY__VU_LOG_START_SIZE + (size_t)nranges * 16;
	if (nranges > (UINT32_MAX - PRECOPY__VU_LOG_START_SIZE) / 16 || need > (size_t)INT32_MAX)
		return -EINVAL;
	if (need > cap)
		return -ENOSPC;
	precopy__vu_put64(out, page_size);
	precopy__vu_put32(out + 8, nranges);
	precopy__vu_put32(out + 12, 0);
	for (uint32_t i = 0; i < nranges; i++) {
		precopy__vu_put64(out + 16 + 16 * (size_t)i, ranges[2 * (size_t)i]);
		precopy__vu_put64(out + 24 + 16 * (size_t)i, ranges[2 * (size_t)i + 1]);
	}
	return (int)need;
}

int precopy__vu_enc_report_data(uint8_t *out, size_t cap, uint64_t iova, uint64_t length, uint64_t page_size)
{
	if (!out)
		return -EINVAL;
	if (cap < PRECOPY__VU_REPORT_SIZE)
		return -ENOSPC;
	precopy__vu_put64(out, iova);
	precopy__vu_put64(out + 8, length);
	precopy__vu_put64(out + 16, page_size);
	return PRECOPY__VU_REPORT_SIZE;
}

int precopy__vu_enc_dma_read_reply(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, const void *data,
				   uint64_t count)
{
	if ((count && !data) || count > UINT32_MAX)
		return -EINVAL;
	int t = begin(buf, cap, id, PRECOPY__VU_DMA_READ, PRECOPY__VU_F_REPLY, 16 + (size_t)count);
	if (t < 0)
		return t;
	precopy__vu_put64(buf + 16, addr);
	precopy__vu_put64(buf + 24, count);
	if (count)
		memcpy(buf + 32, data, (size_t)count);
	return t;
}

int precopy__vu_enc_dma_write_reply(uint8_t *buf, size_t cap, uint16_t id, uint64_t addr, uint64_t count)
{
	int t = begin(buf, cap, id, PRECOPY__VU_DMA_WRITE, PRECOPY__VU_F_REPLY, 16);
	if (t < 0)
		return t;
	precopy__vu_put64(buf + 16, addr);
	precopy__vu_put64(buf + 24, count);
	return t;
}

int precopy__vu_enc_error_reply(uint8_t *buf, size_t cap, uint16_t id, uint16_t cmd, uint32_t err)
{
	if (err == 0)
		return -EINVAL;
	int t = begin(buf, cap, id, cmd, PRECOPY__VU_F_REPLY | PRECOPY__VU_F_ERROR, 0);
	if (t < 0)
		return t;
	precopy__vu_put32(buf + 12, err);
	return t;
}

/* ---- reply decoders -------------------------------------------------------- */

int precopy__vu_reply_open(const uint8_t *msg, size_t n, uint16_t id, uint16_t cmd, const uint8_t **payload,
			   size_t *plen, const char **why)
{
	struct precopy__vu_hdr h;
	int r = precopy__vu_hdr_get(msg, n, &h, why);
	if (r)
		return r;
	if (h.size != n)
		WHY("size field differs from the bytes received");
	if ((h.flags & PRECOPY__VU_F_TYPE_MASK) != PRECOPY__VU_F_REPLY)
		WHY("a command where a reply was due");
	if (h.msg_id != id)
		WHY("reply to another message id");
	if (h.cmd != cmd)
		WHY("reply for another command");
	if (h.flags & PRECOPY__VU_F_ERROR) {
		if (h.error == 0 || h.error > 4095)
			WHY("error reply without an errno");
		return -(int)h.error;
	}
	if (h.error != 0)
		WHY("errno set on a reply without the error bit");
	*payload = msg + PRECOPY__VU_HDR_SIZE;
	*plen = n - PRECOPY__VU_HDR_SIZE;
	return 0;
}

int precopy__vu_dec_version(const uint8_t *p, size_t n, uint16_t *major, uint16_t *minor,
			    struct precopy__vu_caps *caps, const char **why)
{
	if (n < 4)
		WHY("VERSION reply shorter than 4 bytes");
	*major = precopy__vu_get16(p);
	*minor = precopy__vu_get16(p + 2);
	size_t jl = n - 4;
	if (jl > PRECOPY__VU_MAX_JSON)
		WHY("VERSION capabilities longer than 4096 bytes");
	if (jl == 0)
		return precopy__vu_caps_parse("{}", 2, caps, why);
	const char *j = (const char *)p + 4;
	if (j[jl - 1] != '\0')
		WHY("VERSION capabilities without their terminating NUL");
	if (memchr(j, '\0', jl - 1))
		WHY("NUL inside the VERSION capabilities");
	return precopy__vu_caps_parse(j, jl - 1, caps, why);
}

int precopy__vu_dec_device_info(const uint8_t *p, size_t n, struct precopy__vu_device_info *out,
				const char **why)
{
	if (n != PRECOPY__VU_DEVICE_INFO_SIZE)
		WHY("DEVICE_GET_INFO reply not 16 bytes");
	out->argsz = precopy__vu_get32(p);
	out->flags = precopy__vu_get32(p + 4);
	out->num_regions = precopy__vu_get32(p + 8);
	out->num_irqs = precopy__vu_get32(p + 12);
	if (out->argsz < PRECOPY__VU_DEVICE_INFO_SIZE)
		WHY("DEVICE_GET_INFO argsz below 16");
	return 0;
}

int precopy__vu_dec_irq_info(const uint8_t *p, size_t n, uint32_t index, struct precopy__vu_irq_info *out,
			     const char **why)
{
	if (n != PRECOPY__VU_IRQ_INFO_SIZE)
		WHY("GET_IRQ_INFO reply not 16 bytes");
	out->argsz = precopy__vu_get32(p);
	out->flags = precopy__vu_get32(p + 4);
	out->index = precopy__vu_get32(p + 8);
	out->count = precopy__vu_get32(p + 12);
	if (out->argsz < PRECOPY__VU_IRQ_INFO_SIZE)
		WHY("GET_IRQ_INFO argsz below 16");
	if (out->index != index)
		WHY("GET_IRQ_INFO reply for another index");
	return 0;
}

int precopy__vu_dec_region_info(const uint8_t *p, size_t n, uint32_t index, uint32_t max,
				struct precopy__vu_region_info *out, const char **why)
{
	if (n < PRECOPY__VU_REGION_INFO_SIZE)
		WHY("REGION_INFO reply shorter than 32 bytes");
	if (n > max)
		WHY("REGION_INFO reply longer than the argsz asked");
	out->argsz = precopy__vu_get32(p);
	out->flags = precopy__vu_get32(p + 4);
	out->index = precopy__vu_get32(p + 8);
	out->cap_offset = precopy__vu_get32(p + 12);
	out->size = precopy__vu_get64(p + 16);
	out->offset = precopy__vu_get64(p + 24);
	if (out->index != index)
		WHY("REGION_INFO reply for another region");
	if (out->argsz < PRECOPY__VU_REGION_INFO_SIZE)
		WHY("REGION_INFO argsz below 32");
	if (out->argsz <= max && out->argsz != n)
		WHY("REGION_INFO argsz differs from the payload");
	return 0;
}

static int check_access(const uint8_t *p, uint32_t region, uint64_t offset, uint32_t count, const char **why)
{
	if (precopy__vu_get64(p) != offset)
		WHY("region access reply at another offset");
	if (precopy__vu_get32(p + 8) != region)
		WHY("region access reply for another region");
	if (precopy__vu_get32(p + 12) != count)
		WHY("region access reply with another count");
	return 0;
}

int precopy__vu_dec_region_read(const uint8_t *p, size_t n, uint32_t region, uint64_t offset, uint32_t count,
				const uint8_t **data, const char **why)
{
	if (n < PRECOPY__VU_REGION_ACCESS_SIZE)
		WHY("REGION_READ reply shorter than 16 bytes");
	if (n - PRECOPY__VU_REGION_ACCESS_SIZE != count)
		WHY("REGION_READ reply data length differs from its count");
	int r = check_access(p, region, offset, count, why);
	if (r)
		return r;
	*data = p + PRECOPY__VU_REGION_ACCESS_SIZE;
	return 0;
}

int precopy__vu_dec_region_write(const uint8_t *p, size_t n, uint32_t region, uint64_t offset,
				 uint32_t count, const char **why)
{
	if (n != PRECOPY__VU_REGION_ACCESS_SIZE)
		WHY("REGION_WRITE reply not 16 bytes");
	return check_access(p, region, offset, count, why);
}

int precopy__vu_dec_dma_unmap(const uint8_t *p, size_t n, uint64_t addr, uint64_t size, const char **why)
{
	if (n == 0)
		return 0;
	if (n != 24)
		WHY("DMA_UNMAP reply neither empty nor 24 bytes");
	if (precopy__vu_get64(p + 8) != addr || precopy__vu_get64(p + 16) != size)
		WHY("DMA_UNMAP reply for another range");
	return 0;
}

int precopy__vu_dec_empty(const uint8_t *p, size_t n, const char **why)
{
	(void)p;
	if (n != 0)
		WHY("payload on a reply that has none");
	return 0;
}

int precopy__vu_dec_feature(const uint8_t *p, size_t n, uint32_t flags, const uint8_t **data, size_t *dlen,
			    const char **why)
{
	if (n < PRECOPY__VU_FEATURE_SIZE)
		WHY("DEVICE_FEATURE reply shorter than 8 bytes");
	uint32_t argsz = precopy__vu_get32(p);
	if (argsz < n)
		WHY("DEVICE_FEATURE reply argsz below its payload");
	if (precopy__vu_get32(p + 4) != flags)
		WHY("DEVICE_FEATURE reply for other flags");
	*data = p + PRECOPY__VU_FEATURE_SIZE;
	*dlen = n - PRECOPY__VU_FEATURE_SIZE;
	return 0;
}

int precopy__vu_dec_migration(const uint8_t *d, size_t n, uint64_t *flags, const char **why)
{
	if (n != 8)
		WHY("MIGRATION feature data not 8 bytes");
	*flags = precopy__vu_get64(d);
	return 0;
}

int precopy__vu_dec_mig_state(const uint8_t *d, size_t n, uint32_t *state, const char **why)
{
	if (n != 8)
		WHY("MIG_DEVICE_STATE feature data not 8 bytes");
	uint32_t s = precopy__vu_get32(d);
	if (s > 7)
		WHY("MIG_DEVICE_STATE state beyond PRE_COPY_P2P");
	*state = s;
	return 0;
}

int precopy__vu_dec_log_start(const uint8_t *d, size_t n, uint64_t *page_size, const char **why)
{
	if (n < PRECOPY__VU_LOG_START_SIZE)
		WHY("DMA_LOGGING_START data shorter than 16 bytes");
	uint64_t ps = precopy__vu_get64(d);
	uint32_t nr = precopy__vu_get32(d + 8);
	if (ps == 0 || (ps & (ps - 1)))
		WHY("DMA_LOGGING_START page size not a power of two");
	if ((n - PRECOPY__VU_LOG_START_SIZE) / 16 != nr || (n - PRECOPY__VU_LOG_START_SIZE) % 16)
		WHY("DMA_LOGGING_START data length differs from its ranges");
	*page_size = ps;
	return 0;
}

int precopy__vu_dec_report(const uint8_t *d, size_t n, uint64_t iova, uint64_t length, uint64_t page_size,
			   const uint8_t **bitmap, size_t *bytes, const char **why)
{
	if (page_size == 0 || (page_size & (page_size - 1)) || length == 0)
		WHY("DMA_LOGGING_REPORT asked with a bad page size or length");
	if (n < PRECOPY__VU_REPORT_SIZE)
		WHY("DMA_LOGGING_REPORT data shorter than 24 bytes");
	if (precopy__vu_get64(d) != iova || precopy__vu_get64(d + 8) != length ||
	    precopy__vu_get64(d + 16) != page_size)
		WHY("DMA_LOGGING_REPORT reply for another range or page size");
	uint64_t pages = length / page_size + (length % page_size != 0);
	uint64_t want = (pages + 63) / 64 * 8;
	if (n - PRECOPY__VU_REPORT_SIZE != want)
		WHY("DMA_LOGGING_REPORT bitmap length differs from the range's");
	*bitmap = d + PRECOPY__VU_REPORT_SIZE;
	*bytes = (size_t)want;
	return 0;
}

int precopy__vu_dec_mig_data_read(const uint8_t *p, size_t n, uint32_t asked, const uint8_t **data,
				  uint32_t *size, const char **why)
{
	if (n < PRECOPY__VU_MIG_DATA_SIZE)
		WHY("MIG_DATA_READ reply shorter than 8 bytes");
	uint32_t argsz = precopy__vu_get32(p);
	uint32_t sz = precopy__vu_get32(p + 4);
	if (sz > asked)
		WHY("MIG_DATA_READ reply size above the size asked");
	if (n - PRECOPY__VU_MIG_DATA_SIZE < sz)
		WHY("MIG_DATA_READ reply shorter than its size field");
	if (n - PRECOPY__VU_MIG_DATA_SIZE > asked)
		WHY("MIG_DATA_READ reply longer than the size asked");
	if (argsz < PRECOPY__VU_MIG_DATA_SIZE + (uint64_t)sz)
		WHY("MIG_DATA_READ reply argsz below 8 + size");
	*data = p + PRECOPY__VU_MIG_DATA_SIZE;
	*size = sz;
	return 0;
}

/* ---- the server's commands ------------------------------------------------- */

int precopy__vu_cmd_open(const uint8_t *msg, size_t n, struct precopy__vu_hdr *h, const uint8_t **payload,
			 size_t *plen, const char **why)
{
	int r = precopy__vu_hdr_get(msg, n, h, why);
	if (r)
		return r;
	if (h->size != n)
		WHY("size field differs from the bytes received");
	if ((h->flags & PRECOPY__VU_F_TYPE_MASK) != PRECOPY__VU_F_COMMAND)
		WHY("a reply where a command was due");
	*payload = msg + PRECOPY__VU_HDR_SIZE;
	*plen = n - PRECOPY__VU_HDR_SIZE;
	return 0;
}

int precopy__vu_dec_dma_req(uint16_t cmd, const uint8_t *p, size_t n, uint64_t max_count, uint64_t *addr,
			    uint64_t *count, const uint8_t **data, const char **why)
{
	if (cmd != PRECOPY__VU_DMA_READ && cmd != PRECOPY__VU_DMA_WRITE)
		WHY("a server command other than DMA_READ or DMA_WRITE");
	if (n < PRECOPY__VU_DMA_ACCESS_SIZE)
		WHY("DMA request shorter than 16 bytes");
	uint64_t a = precopy__vu_get64(p), c = precopy__vu_get64(p + 8);
	if (c > max_count)
		WHY("DMA request count above max_data_xfer_size");
	if (a + c < a)
		WHY("DMA request range wraps around");
	if (cmd == PRECOPY__VU_DMA_READ) {
		if (n != PRECOPY__VU_DMA_ACCESS_SIZE)
			WHY("DMA_READ request not 16 bytes");
		*data = NULL;
	} else {
		if (n - PRECOPY__VU_DMA_ACCESS_SIZE != c)
			WHY("DMA_WRITE data length differs from its count");
		*data = p + PRECOPY__VU_DMA_ACCESS_SIZE;
	}
	*addr = a;
	*count = c;
	return 0;
}

/* ---- JSON ------------------------------------------------------------------ */

struct jp {
	const char *s, *e;
	const char **why;
	unsigned depth;
};

static int jfail(struct jp *j, const char *w)
{
	if (j->why)
		*j->why = w;
	return -EPROTO;
}

static void jws(struct jp *j)
{
	while (j->s < j->e && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r'))
		j->s++;
}

static int jexpect(struct jp *j, char c)
{
	jws(j);
	if (j->s >= j->e || *j->s != c)
		return jfail(j, "JSON: unexpected character or end");
	j->s++;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A string; its raw bytes (escapes left as they are) in *b and *len. Keys the
 * codec knows have no escapes, so a key with one never matches them. */
static int jstring(struct jp *j, const char **b, size_t *len)
{
	jws(j);
	if (j->s >= j->e || *j->s != '"')
		return jfail(j, "JSON: string expected");
	j->s++;
	const char *start = j->s;
	while (j->s < j->e && *j->s != '"') {
		unsigned char c = (unsigned char)*j->s;
		if (c < 0x20)
			return jfail(j, "JSON: control character in a string");
		if (c == '\\') {
			j->s++;
			if (j->s >= j->e)
				return jfail(j, "JSON: string ends inside an escape");
			char x = *j->s;
			if (x == 'u') {
				if (j->e - j->s < 5)
					return jfail(j, "JSON: short \\u escape");
				for (int i = 1; i <= 4; i++)
					if (hexval(j->s[i]) < 0)
						return jfail(j, "JSON: bad \\u escape");
				j->s += 4;
			} else if (!strchr("\"\\/bfnrt", x) || x == '\0') {
				return jfail(j, "JSON: bad escape");
			}
		}
		j->s++;
	}
	if (j->s >= j->e)
		return jfail(j, "JSON: unterminated string");
	*b = start;
	*len = (size_t)(j->s - start);
	j->s++;
	return 0;
}

static int juint(struct jp *j, uint64_t *v)
{
	jws(j);
	if (j->s >= j->e || *j->s < '0' || *j->s > '9')
		return jfail(j, "JSON: unsigned integer expected");
	if (*j->s == '0' && j->e - j->s > 1 && j->s[1] >= '0' && j->s[1] <= '9')
		return jfail(j, "JSON: number with a leading zero");
	uint64_t x = 0;
	while (j->s < j->e && *j->s >= '0' && *j->s <= '9') {
		unsigned d = (unsigned)(*j->s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return jfail(j, "JSON: number above 2^64 - 1");
		x = x * 10 + d;
		j->s++;
	}
	if (j->s < j->e && (*j->s == '.' || *j->s == 'e' || *j->s == 'E'))
		return jfail(j, "JSON: number not an integer");
	*v = x;
	return 0;
}

static int jword(struct jp *j, const char *w)
{
	size_t l = strlen(w);
	if ((size_t)(j->e - j->s) < l || memcmp(j->s, w, l) != 0)
		return jfail(j, "JSON: unknown literal");
	j->s += l;
	return 0;
}

static int jbool(struct jp *j, int *v)
{
	jws(j);
	if (j->s < j->e && *j->s == 't') {
		*v = 1;
		return jword(j, "true");
	}
	if (j->s < j->e && *j->s == 'f') {
		*v = 0;
		return jword(j, "false");
	}
	return jfail(j, "JSON: boolean expected");
}

static int jskip(struct jp *j);

/* Walk an object: for each key call fn (which must consume the value);
 * fn returns 1 for "not mine": the value is skipped. */
typedef int (*jmember_fn)(struct jp *j, const char *k, size_t kl, void *ctx);

static int jobject(struct jp *j, jmember_fn fn, void *ctx)
{
	if (++j->depth > PRECOPY__VU_JSON_DEPTH)
		return jfail(j, "JSON: nested too deep");
	int r = jexpect(j, '{');
	if (r)
		return r;
	jws(j);
	if (j->s < j->e && *j->s == '}') {
		j->s++;
		j->depth--;
		return 0;
	}
	for (;;) {
		const char *k;
		size_t kl;
		if ((r = jstring(j, &k, &kl)) || (r = jexpect(j, ':')))
			return r;
		r = fn ? fn(j, k, kl, ctx) : 1;
		if (r < 0)
			return r;
		if (r == 1 && (r = jskip(j)))
			return r;
		jws(j);
		if (j->s < j->e && *j->s == ',') {
			j->s++;
			continue;
		}
		if ((r = jexpect(j, '}')))
			return r;
		j->depth--;
		return 0;
	}
}

static int jskip(struct jp *j)
{
	jws(j);
	if (j->s >= j->e)
		return jfail(j, "JSON: value expected");
	const char *b;
	size_t l;
	uint64_t v;
	int r;
	switch (*j->s) {
	case '{':
		return jobject(j, NULL, NULL);
	case '[':
		if (++j->depth > PRECOPY__VU_JSON_DEPTH)
			return jfail(j, "JSON: nested too deep");
		j->s++;
		jws(j);
		if (j->s < j->e && *j->s == ']') {
			j->s++;
			j->depth--;
			return 0;
		}
		for (;;) {
			if ((r = jskip(j)))
				return r;
			jws(j);
			if (j->s < j->e && *j->s == ',') {
				j->s++;
				continue;
			}
			if ((r = jexpect(j, ']')))
				return r;
			j->depth--;
			return 0;
		}
	case '"':
		return jstring(j, &b, &l);
	case 't':
		return jword(j, "true");
	case 'f':
		return jword(j, "false");
	case 'n':
		return jword(j, "null");
	default:
		return juint(j, &v);
	}
}

static int key_is(const char *k, size_t kl, const char *name)
{
	return strlen(name) == kl && memcmp(k, name, kl) == 0;
}

/* A bit per known key of one object, to refuse duplicates. */
struct jctx {
	struct precopy__vu_caps *caps;
	unsigned seen;
};

static int once(struct jp *j, struct jctx *c, unsigned bit)
{
	if (c->seen & bit)
		return jfail(j, "JSON: a capability given twice");
	c->seen |= bit;
	return 0;
}

static int mig_member(struct jp *j, const char *k, size_t kl, void *ctx)
{
	struct jctx *c = ctx;
	if (key_is(k, kl, "pgsize")) {
		int r = once(j, c, 1);
		return r ? r : juint(j, &c->caps->migration_pgsize);
	}
	return 1;
}

static int twin_member(struct jp *j, const char *k, size_t kl, void *ctx)
{
	struct jctx *c = ctx;
	int r;
	if (key_is(k, kl, "supported")) {
		if ((r = once(j, c, 1)))
			return r;
		return jbool(j, &c->caps->twin_supported);
	}
	if (key_is(k, kl, "fd_index")) {
		if ((r = once(j, c, 2)))
			return r;
		c->caps->has_twin_fd_index = 1;
		return juint(j, &c->caps->twin_fd_index);
	}
	return 1;
}

static int caps_member(struct jp *j, const char *k, size_t kl, void *ctx)
{
	struct jctx *c = ctx;
	static const char *const nums[] = { "max_msg_fds", "max_data_xfer_size", "max_dma_maps", "pgsizes" };
	uint64_t *dst[] = { &c->caps->max_msg_fds, &c->caps->max_data_xfer_size, &c->caps->max_dma_maps,
			    &c->caps->pgsizes };
	int r;
	for (unsigned i = 0; i < 4; i++)
		if (key_is(k, kl, nums[i])) {
			if ((r = once(j, c, 1u << i)))
				return r;
			return juint(j, dst[i]);
		}
	if (key_is(k, kl, "migration")) {
		if ((r = once(j, c, 1u << 4)))
			return r;
		struct jctx sub = { .caps = c->caps };
		return jobject(j, mig_member, &sub);
	}
	if (key_is(k, kl, "twin_socket")) {
		if ((r = once(j, c, 1u << 5)))
			return r;
		struct jctx sub = { .caps = c->caps };
		return jobject(j, twin_member, &sub);
	}
	if (key_is(k, kl, "write_multiple")) {
		if ((r = once(j, c, 1u << 6)))
			return r;
		return jbool(j, &c->caps->write_multiple);
	}
	return 1;
}

static int top_member(struct jp *j, const char *k, size_t kl, void *ctx)
{
	struct jctx *c = ctx;
	if (key_is(k, kl, "capabilities")) {
		int r = once(j, c, 1);
		if (r)
			return r;
		struct jctx sub = { .caps = c->caps };
		return jobject(j, caps_member, &sub);
	}
	return 1;
}

int precopy__vu_caps_parse(const char *s, size_t n, struct precopy__vu_caps *caps, const char **why)
{
	if (!caps || (!s && n))
		return -EINVAL;
	*caps = (struct precopy__vu_caps){ .max_msg_fds = 1, .max_data_xfer_size = 1u << 20,
					   .max_dma_maps = 65535, .pgsizes = 4096 };
	struct jp j = { .s = s, .e = s + n, .why = why };
	struct jctx c = { .caps = caps };
	int r = jobject(&j, top_member, &c);
	if (r)
		return r;
	jws(&j);
	if (j.s != j.e)
		return jfail(&j, "JSON: bytes after the object");
	return 0;
}
