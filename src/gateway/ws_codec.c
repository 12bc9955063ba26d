#include "gateway/ws_codec.h"

#include <string.h>

/* A reassembly buffer larger than this is given back once its message is delivered. */
#define MSG_KEEP 1024

/* ------------------------------------------------------------ UTF-8 across fragments */

/* The state between bytes: the continuation bytes still expected (low
 * byte), and the range the next one must fall in (lowest, highest), which
 * is narrower right after E0, ED, F0 and F4 (no overlong forms, no
 * surrogates, nothing past U+10FFFF). 0: between characters. */
static uint32_t expect(uint32_t left, uint32_t lo, uint32_t hi)
{
    return left | lo << 8 | hi << 16;
}

static int utf8_step(uint32_t *state, uint8_t b)
{
    uint32_t left = *state & 0xFF;
    if (left == 0) {
        if (b < 0x80)
            return 0;
        if (b >= 0xC2 && b <= 0xDF)
            *state = expect(1, 0x80, 0xBF);
        else if (b == 0xE0)
            *state = expect(2, 0xA0, 0xBF);
        else if (b == 0xED)
            *state = expect(2, 0x80, 0x9F);
        else if (b >= 0xE1 && b <= 0xEF)
            *state = expect(2, 0x80, 0xBF);
        else if (b == 0xF0)
            *state = expect(3, 0x90, 0xBF);
        else if (b >= 0xF1 && b <= 0xF3)
            *state = expect(3, 0x80, 0xBF);
        else if (b == 0xF4)
            *state = expect(3, 0x80, 0x8F);
        else
            return -1;
        return 0;
    }
    if (b < ((*state >> 8) & 0xFF) || b > ((*state >> 16) & 0xFF))
        return -1;
    *state = left > 1 ? expect(left - 1, 0x80, 0xBF) : 0;
    return 0;
}

/* Validates [s, s+n) going on from *state; -1 at the first byte that cannot be UTF-8. */
static int utf8_feed(uint32_t *state, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (*state == 0 && s[i] < 0x80)
            continue;
        if (utf8_step(state, s[i]) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ parsing */

void natter_ws_parser_init(natter_ws_parser_t *p, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
}

void natter_ws_parser_free(natter_ws_parser_t *p)
{
    natter_buf_free(&p->msg);
}

static natter_ws_event_kind_t fail(natter_ws_parser_t *p, natter_ws_event_t *ev, uint16_t code, const char *reason)
{
    p->failed = 1;
    ev->kind = NATTER_WS_FAIL;
    ev->code = code;
    ev->reason = reason;
    return NATTER_WS_FAIL;
}

static int is_control(uint8_t op)
{
    return op & 0x8;
}

int natter_ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static void unmask(uint8_t *payload, uint64_t n, const uint8_t mask[4])
{
    for (uint64_t i = 0; i < n; i++)
        payload[i] ^= mask[i & 3];
}

/* A close frame's payload: nothing, or a valid code and a UTF-8 reason. */
static natter_ws_event_kind_t close_event(natter_ws_parser_t *p, const uint8_t *payload, size_t n,
                                          natter_ws_event_t *ev)
{
    uint32_t state = 0;
    ev->kind = NATTER_WS_CLOSE;
    ev->code = NATTER_WS_CLOSE_NO_STATUS;
    if (n == 0)
        return NATTER_WS_CLOSE;
    if (n == 1)
        return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a close frame of one byte");
    ev->code = (uint16_t)(payload[0] << 8 | payload[1]);
    if (!natter_ws_close_code_valid(ev->code))
        return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "invalid close code");
    if (utf8_feed(&state, payload + 2, n - 2) != 0 || state != 0)
        return fail(p, ev, NATTER_WS_CLOSE_BAD_DATA, "close reason is not UTF-8");
    ev->data = payload + 2;
    ev->len = n - 2;
    return NATTER_WS_CLOSE;
}

/* A whole data frame: a message, or one fragment of one. */
static natter_ws_event_kind_t data_event(natter_ws_parser_t *p, uint8_t op, int fin, const uint8_t *payload,
                                         size_t n, natter_ws_event_t *ev)
{
    if (op != NATTER_WS_OP_CONTINUATION) {
        p->msg_opcode = op;
        p->utf8_state = 0;
    }
    if (p->msg_opcode == NATTER_WS_OP_TEXT && utf8_feed(&p->utf8_state, payload, n) != 0)
        return fail(p, ev, NATTER_WS_CLOSE_BAD_DATA, "text is not UTF-8");
    if (op != NATTER_WS_OP_CONTINUATION && fin) { /* the usual case: one frame, no copy */
        p->msg_opcode = 0;
        if (p->utf8_state != 0)
            return fail(p, ev, NATTER_WS_CLOSE_BAD_DATA, "text ends inside a character");
        ev->kind = op == NATTER_WS_OP_TEXT ? NATTER_WS_TEXT : NATTER_WS_BINARY;
        ev->data = payload;
        ev->len = n;
        return ev->kind;
    }
    natter_buf_append(&p->msg, payload, n);
    if (!fin) {
        ev->kind = NATTER_WS_FRAME;
        return NATTER_WS_FRAME;
    }
    if (p->msg_opcode == NATTER_WS_OP_TEXT && p->utf8_state != 0)
        return fail(p, ev, NATTER_WS_CLOSE_BAD_DATA, "text ends inside a character");
    static const uint8_t empty[1];
    ev->kind = p->msg_opcode == NATTER_WS_OP_TEXT ? NATTER_WS_TEXT : NATTER_WS_BINARY;
    ev->data = p->msg.len > 0 ? p->msg.p : empty; /* empty fragments allocate nothing; data is never NULL */
    ev->len = p->msg.len;
    p->msg_opcode = 0;
    return ev->kind;
}

natter_ws_event_kind_t natter_ws_parse(natter_ws_parser_t *p, uint8_t *data, size_t len, size_t *used,
                                       natter_ws_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    *used = 0;
    if (p->failed)
        return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "the connection has failed");
    if (p->msg_opcode == 0 && p->msg.len > 0) { /* the last call delivered a reassembled message */
        p->msg.len = 0;
        if (p->msg.cap > MSG_KEEP)
            natter_buf_free(&p->msg);
    }
    if (len < 2)
        return ev->kind = NATTER_WS_NEED_MORE;
    uint8_t b0 = data[0], b1 = data[1], op = b0 & 0x0F;
    int fin = (b0 & 0x80) != 0;
    uint64_t n = b1 & 0x7F;
    size_t hlen = 2;
    if (b0 & 0x70)
        return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "reserved bits set without an extension");
    if (!(b1 & 0x80))
        return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a client frame must be masked");
    if (is_control(op)) {
        if (op != NATTER_WS_OP_CLOSE && op != NATTER_WS_OP_PING && op != NATTER_WS_OP_PONG)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "unknown opcode");
        if (!fin)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a fragmented control frame");
        if (n > NATTER_WS_CONTROL_MAX)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a control frame over 125 bytes");
    } else {
        if (op > NATTER_WS_OP_BINARY)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "unknown opcode");
        if (op == NATTER_WS_OP_CONTINUATION && p->msg_opcode == 0)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a continuation frame outside a message");
        if (op != NATTER_WS_OP_CONTINUATION && p->msg_opcode != 0)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a new message inside a fragmented one");
    }
    if (n == 126) {
        if (len < 4)
            return ev->kind = NATTER_WS_NEED_MORE;
        n = (uint64_t)data[2] << 8 | data[3];
        hlen = 4;
        if (n < 126)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a payload length not in its shortest form");
    } else if (n == 127) {
        if (len < 10)
            return ev->kind = NATTER_WS_NEED_MORE;
        n = 0;
        for (int i = 2; i < 10; i++)
            n = n << 8 | data[i];
        hlen = 10;
        if (n >> 63)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a payload length with its top bit set");
        if (n < 65536)
            return fail(p, ev, NATTER_WS_CLOSE_PROTOCOL, "a payload length not in its shortest form");
    }
    /* judged at the header: a message that would pass the limit is refused
     * before any of its payload is read */
    if (!is_control(op) && n > p->max_message - p->msg.len)
        return fail(p, ev, NATTER_WS_CLOSE_TOO_BIG, "message too big");
    hlen += 4; /* the mask */
    if (len < hlen || len - hlen < n)
        return ev->kind = NATTER_WS_NEED_MORE;
    uint8_t *payload = data + hlen;
    unmask(payload, n, data + hlen - 4);
    *used = hlen + (size_t)n;
    switch (op) {
    case NATTER_WS_OP_PING:
    case NATTER_WS_OP_PONG:
        ev->kind = op == NATTER_WS_OP_PING ? NATTER_WS_PING : NATTER_WS_PONG;
        ev->data = payload;
        ev->len = (size_t)n;
        return ev->kind;
    case NATTER_WS_OP_CLOSE: {
        natter_ws_event_kind_t k = close_event(p, payload, (size_t)n, ev);
        if (k == NATTER_WS_FAIL)
            *used = 0;
        return k;
    }
    default: {
        natter_ws_event_kind_t k = data_event(p, op, fin, payload, (size_t)n, ev);
        if (k == NATTER_WS_FAIL)
            *used = 0;
        return k;
    }
    }
}

/* ------------------------------------------------------------ server frames */

size_t natter_ws_control_frame(uint8_t *dst, uint8_t opcode, const void *payload, size_t len)
{
    if (len > NATTER_WS_CONTROL_MAX)
        len = NATTER_WS_CONTROL_MAX;
    dst[0] = (uint8_t)(0x80 | opcode);
    dst[1] = (uint8_t)len;
    if (len > 0)
        memcpy(dst + 2, payload, len);
    return 2 + len;
}

size_t natter_ws_close_frame(uint8_t *dst, uint16_t code, const char *reason)
{
    uint8_t payload[NATTER_WS_CONTROL_MAX];
    size_t n = 0;
    if (code != 0) {
        payload[n++] = (uint8_t)(code >> 8);
        payload[n++] = (uint8_t)code;
        size_t r = strlen(reason);
        if (r > NATTER_WS_CONTROL_MAX - 2) {
            r = NATTER_WS_CONTROL_MAX - 2;
            while (r > 0 && ((uint8_t)reason[r] & 0xC0) == 0x80) /* not inside a character */
                r--;
        }
        memcpy(payload + n, reason, r);
        n += r;
    }
    return natter_ws_control_frame(dst, NATTER_WS_OP_CLOSE, payload, n);
}
