#include "log/record.h"
#include "core/util.h"

#include <string.h>

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint8_t *natter_record_encode(const natter_msg_t *m, size_t *len)
{
    *len = NATTER_RECORD_HEADER + m->client_id_len + 4 + m->content_len;
    uint8_t *buf = xmalloc(*len), *p = buf;
    *p++ = NATTER_RECORD_VERSION;
    p = put64(p, m->id);
    p = put64(p, m->chat_id);
    p = put64(p, m->sender_id);
    p = put64(p, (uint64_t)m->created_at_ms);
    p = put64(p, (uint64_t)m->ingest_ns);
    *p++ = (uint8_t)m->client_id_len;
    memcpy(p, m->client_id, m->client_id_len);
    p += m->client_id_len;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(m->content_len >> (8 * i));
    memcpy(p, m->content, m->content_len);
    return buf;
}

natter_msg_t *natter_record_decode(const uint8_t *buf, size_t len)
{
    if (len < NATTER_RECORD_HEADER + 4 || buf[0] != NATTER_RECORD_VERSION)
        return NULL;
    const uint8_t *p = buf + 1, *end = buf + len;
    uint64_t id = get64(p), chat = get64(p + 8), sender = get64(p + 16);
    int64_t created = (int64_t)get64(p + 24);
    int64_t ingest = (int64_t)get64(p + 32);
    p += 40;
    size_t cidlen = *p++;
    if (cidlen > NATTER_CLIENT_ID_MAX || (size_t)(end - p) < cidlen + 4)
        return NULL;
    const char *cid = (const char *)p;
    p += cidlen;
    size_t clen = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    p += 4;
    if (clen > NATTER_RECORD_CONTENT_MAX || (size_t)(end - p) != clen || id == 0 || chat == 0 ||
        !natter_utf8_valid((const char *)p, clen) || !natter_utf8_valid(cid, cidlen))
        return NULL;
    natter_msg_t *m = natter_msg_new(chat, sender, (const char *)p, clen, cid, cidlen);
    m->id = id;
    m->created_at_ms = created;
    m->ingest_ns = ingest;
    return m;
}
