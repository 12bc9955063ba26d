#include "log/record.h"
#include "core/emoji.h"
#include "core/token.h"
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
    int event = m->kind != NATTER_EV_MESSAGE;
    size_t header = event ? NATTER_RECORD_HEADER_EVENT : NATTER_RECORD_HEADER;
    *len = header + m->client_id_len + 4 + m->content_len;
    uint8_t *buf = xmalloc(*len), *p = buf;
    *p++ = event ? NATTER_RECORD_VERSION_EVENT : NATTER_RECORD_VERSION;
    if (event)
        *p++ = m->kind;
    p = put64(p, m->id);
    p = put64(p, m->chat_id);
    p = put64(p, m->sender_id);
    p = put64(p, (uint64_t)m->created_at_ms);
    p = put64(p, (uint64_t)m->ingest_ns);
    if (event)
        p = put64(p, m->target_id);
    *p++ = (uint8_t)m->client_id_len;
    memcpy(p, m->client_id, m->client_id_len);
    p += m->client_id_len;
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(m->content_len >> (8 * i));
    memcpy(p, m->content, m->content_len);
    return buf;
}

/* What each kind needs besides a valid frame; the presence kinds' user
 * lists are read (and checked) by the presence code. */
static int kind_valid(unsigned kind, uint64_t chat, uint64_t sender, uint64_t target, const uint8_t *content,
                      size_t clen)
{
    switch (kind) {
    case NATTER_EV_MESSAGE: return chat != 0;
    case NATTER_EV_EDIT: return chat != 0 && sender != 0 && target != 0 && clen > 0;
    case NATTER_EV_DELETE: return chat != 0 && sender != 0 && target != 0 && clen == 0;
    case NATTER_EV_REACT_ADD:
    case NATTER_EV_REACT_REMOVE: return chat != 0 && sender != 0 && target != 0 && natter_emoji_valid((const char *)content, clen);
    case NATTER_EV_TYPING: return chat != 0 && sender != 0 && clen == 0;
    case NATTER_EV_READ: return chat != 0 && sender != 0 && target != 0 && clen == 0;
    case NATTER_EV_PRESENCE_UP:
    case NATTER_EV_PRESENCE_DOWN:
    case NATTER_EV_PRESENCE_BEAT: return chat == 0;
    case NATTER_EV_SESSION_END: return chat == 0 && sender != 0 && clen == 2 * NATTER_TOKEN_HASH_LEN;
    case NATTER_EV_MEMBERSHIP: return chat != 0 && sender != 0 && target != 0 && natter_membership_op(content, clen) >= 0;
    default: return 0;
    }
}

size_t natter_record_recipients(const natter_msg_t *m, uint8_t *out)
{
    const uint64_t *ids = natter_msg_recipients(m);
    for (uint32_t i = 0; i < m->nrecipients; i++)
        put64(out + 8 * i, ids[i]);
    return (size_t)m->nrecipients * 8;
}

/* The header's ids into ids; their number, 0 when the header is absent or malformed. */
static size_t recipients_decode(const uint8_t *to, size_t tolen, uint64_t *ids)
{
    if (to == NULL || tolen == 0 || tolen % 8 != 0 || tolen > NATTER_RECORD_RECIPIENTS_MAX_BYTES)
        return 0;
    for (size_t i = 0; i < tolen / 8; i++)
        if ((ids[i] = get64(to + 8 * i)) == 0)
            return 0;
    return tolen / 8;
}

natter_msg_t *natter_record_decode(const uint8_t *buf, size_t len)
{
    return natter_record_decode_to(buf, len, NULL, 0);
}

natter_msg_t *natter_record_decode_to(const uint8_t *buf, size_t len, const uint8_t *to, size_t tolen)
{
    if (len < 1 || (buf[0] != NATTER_RECORD_VERSION && buf[0] != NATTER_RECORD_VERSION_EVENT))
        return NULL;
    int event = buf[0] == NATTER_RECORD_VERSION_EVENT;
    size_t header = event ? NATTER_RECORD_HEADER_EVENT : NATTER_RECORD_HEADER;
    if (len < header + 4)
        return NULL;
    const uint8_t *p = buf + 1, *end = buf + len;
    unsigned kind = event ? *p++ : NATTER_EV_MESSAGE;
    uint64_t id = get64(p), chat = get64(p + 8), sender = get64(p + 16);
    int64_t created = (int64_t)get64(p + 24);
    int64_t ingest = (int64_t)get64(p + 32);
    p += 40;
    uint64_t target = 0;
    if (event) {
        target = get64(p);
        p += 8;
    }
    size_t cidlen = *p++;
    if (cidlen > NATTER_CLIENT_ID_MAX || (size_t)(end - p) < cidlen + 4)
        return NULL;
    const char *cid = (const char *)p;
    p += cidlen;
    size_t clen = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    p += 4;
    /* a message is version 1 only: one kind, one encoding, so decode then encode gives the same bytes */
    if (clen > NATTER_RECORD_CONTENT_MAX || (size_t)(end - p) != clen || id == 0 ||
        (event && kind == NATTER_EV_MESSAGE) || !natter_utf8_valid((const char *)p, clen) ||
        !natter_utf8_valid(cid, cidlen) || !kind_valid(kind, chat, sender, target, p, clen))
        return NULL;
    uint64_t ids[NATTER_MSG_RECIPIENTS_MAX];
    size_t nto = recipients_decode(to, tolen, ids);
    natter_msg_t *m = natter_msg_new_to(chat, sender, (const char *)p, clen, cid, cidlen, ids, nto);
    m->id = id;
    m->kind = (uint8_t)kind;
    m->target_id = target;
    m->created_at_ms = created;
    m->ingest_ns = ingest;
    return m;
}
