/*
 * The WebSocket protocol (RFC 6455) as natter speaks it: a parser of what a
 * client sends, and the control frames a server sends. Pure: no sockets, no
 * allocation but a fragmented message's reassembly; unit-tested case by case
 * against the RFC and fuzzed.
 *
 * Why natter's own and not wslay (which h2o 2.2 pairs with): each wslay
 * context carries two 4 KiB buffers, so an idle socket cost over 8 KiB
 * before h2o's own; and on a protocol violation wslay drops the connection
 * without the close frame RFC 6455 §7.1.7 asks for (a 2^62-byte frame
 * header got no answer at all). Here a frame is judged at its header —
 * what it announces beyond the message limit is refused before a byte of
 * it is read — and every violation names its close code.
 *
 * Frames are parsed where they lie: the caller hands the bytes it has read
 * (h2o's input buffer); a frame is taken only once it is whole, unmasked in
 * place, and its payload handed back pointing into those bytes. So the
 * input holds at most one frame of at most the message limit.
 */
#ifndef NATTER_WS_CODEC_H
#define NATTER_WS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
    NATTER_WS_OP_CONTINUATION = 0x0,
    NATTER_WS_OP_TEXT = 0x1,
    NATTER_WS_OP_BINARY = 0x2,
    NATTER_WS_OP_CLOSE = 0x8,
    NATTER_WS_OP_PING = 0x9,
    NATTER_WS_OP_PONG = 0xA,
};

/* Close codes natter sends (RFC 6455 §7.4.1; 1013 from the IANA registry). */
enum {
    NATTER_WS_CLOSE_NORMAL = 1000,
    NATTER_WS_CLOSE_GOING_AWAY = 1001,
    NATTER_WS_CLOSE_PROTOCOL = 1002,
    NATTER_WS_CLOSE_NO_STATUS = 1005, /* never sent: a close frame without a code */
    NATTER_WS_CLOSE_BAD_DATA = 1007,  /* text that is not UTF-8 */
    NATTER_WS_CLOSE_POLICY = 1008,
    NATTER_WS_CLOSE_TOO_BIG = 1009,
    NATTER_WS_CLOSE_TRY_AGAIN = 1013,
    NATTER_WS_CLOSE_SESSION_ENDED = 4001, /* natter's own: logged out or expired, reconnecting needs a new login */
};

#define NATTER_WS_CONTROL_MAX 125 /* payload of a control frame */

typedef enum {
    NATTER_WS_NEED_MORE, /* no whole frame yet: read more, call again with it all */
    NATTER_WS_FRAME,     /* a frame that completes nothing (a fragment): call again */
    NATTER_WS_TEXT,      /* a whole text message: data, len */
    NATTER_WS_BINARY,    /* a whole binary message: data, len */
    NATTER_WS_PING,      /* data, len: echo them in a pong */
    NATTER_WS_PONG,
    NATTER_WS_CLOSE,     /* code (1005 when the frame had none), reason: data, len */
    NATTER_WS_FAIL,      /* a violation: close with code and reason, read nothing more */
} natter_ws_event_kind_t;

typedef struct natter_ws_event {
    natter_ws_event_kind_t kind;
    const uint8_t *data; /* into the caller's bytes, or the parser's reassembly buffer; for a
                            message, never NULL, even when len is 0 */
    size_t len;
    uint16_t code;
    const char *reason; /* NATTER_WS_FAIL: a static description */
} natter_ws_event_t;

typedef struct natter_ws_parser {
    uint64_t max_message;  /* longest message (all its fragments) accepted */
    uint8_t msg_opcode;    /* the data message being reassembled: 0 none, TEXT or BINARY */
    uint32_t utf8_state;   /* across a text message's fragments */
    natter_buf_t msg;      /* its payload so far (given back once delivered, when large) */
    int failed;
} natter_ws_parser_t;

void natter_ws_parser_init(natter_ws_parser_t *p, uint64_t max_message);
void natter_ws_parser_free(natter_ws_parser_t *p);
/* Looks at the len bytes at data (unmasking a whole frame in place) and
 * reports one event. *used is how many bytes that took (0 for NEED_MORE and
 * FAIL); the caller drops them from its input once it is done with the
 * event, whose data lives until the next call. After a FAIL every call
 * fails again. */
natter_ws_event_kind_t natter_ws_parse(natter_ws_parser_t *p, uint8_t *data, size_t len, size_t *used,
                                       natter_ws_event_t *ev);

/* Writes a server frame (FIN, unmasked) with opcode and payload into dst,
 * which holds NATTER_WS_CONTROL_MAX + 4 bytes for a control frame; returns
 * its length. A payload longer than a control frame allows is cut. */
size_t natter_ws_control_frame(uint8_t *dst, uint8_t opcode, const void *payload, size_t len);
/* A close frame: code (none when 0) and reason (cut to fit, at a UTF-8
 * boundary). */
size_t natter_ws_close_frame(uint8_t *dst, uint16_t code, const char *reason);

/* 1 when code may appear in a close frame on the wire (§7.4). */
int natter_ws_close_code_valid(uint16_t code);

#endif
