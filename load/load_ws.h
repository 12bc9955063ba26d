/* load_ws — a minimal WebSocket client connection (RFC 6455) for natter-load.
 *
 * Handshake over a plain GET with Upgrade (after the TLS handshake, for an
 * https:// target: wss://), then frames: text and binary
 * messages (continuations reassembled), ping answered with pong, close
 * answered and reported. Everything sent is masked, as a client must.
 * No extensions (no permessage-deflate is offered).
 *
 * Callbacks come only from the connection's epoll event: on_open once the
 * server answered 101; on_message per complete message (data valid during
 * the call only); on_close once, with the close code, or a negative errno
 * when the connection failed, or the HTTP status when the upgrade was
 * refused. After on_close the socket is closed; load_ws_open may reuse w.
 *
 * An idle socket holds no buffer: what was read is handed on and the
 * buffer given back, so many idle sockets cost only their struct.
 */
#ifndef NATTER_LOAD_WS_H
#define NATTER_LOAD_WS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "load_io.h"
#include "load_tls.h"

typedef struct load_ws load_ws_t;

typedef struct load_ws_handler {
    void (*on_open)(load_ws_t *w);
    void (*on_message)(load_ws_t *w, const char *data, size_t len);
    void (*on_close)(load_ws_t *w, int code);
} load_ws_handler_t;

/* CONNECTING: TCP, then TLS; HANDSHAKE: the upgrade */
enum load_ws_state { LOAD_WS_DOWN, LOAD_WS_CONNECTING, LOAD_WS_HANDSHAKE, LOAD_WS_OPEN };

struct load_ws {
    load_io_t io; /* first: the epoll data */
    int epfd;
    load_tls_conn_t tls;
    enum load_ws_state state;
    const load_ws_handler_t *h;
    load_buf_t out, in;
    load_buf_t frag; /* a fragmented message being reassembled */
    uint32_t mask_seed;
    void *user; /* free for the owner */
};

/* Connects to d (from src, or NULL: see load_io_connect) and sends the
 * upgrade for path (e.g. "/ws?token=…"). 0 or -errno (then no callback
 * fires). w must have been zeroed before its first open. */
int load_ws_open(load_ws_t *w, int epfd, const load_dest_t *d, const struct sockaddr_in *src, const char *path,
                 const load_ws_handler_t *h, void *user);
/* Queues one text message (masked) and writes what the socket takes.
 * 0, or -ENOTCONN when not open (the failure also surfaces as on_close). */
int load_ws_send_text(load_ws_t *w, const char *data, size_t len);
/* Closes the socket now, without a close handshake and without on_close. */
void load_ws_drop(load_ws_t *w);
/* Frees the buffers (after load_ws_drop or on_close). */
void load_ws_free(load_ws_t *w);

/* Handles what was read into w->in (the read side, exposed for the fuzz
 * target): the upgrade's answer while in LOAD_WS_HANDSHAKE (on_open once
 * it is a 101), then every complete frame: messages to on_message, pings
 * answered. Returns 0, or the code to close with. */
int load_ws_process(load_ws_t *w);

/* Frame codec, exposed for the tests: writes a masked client frame header +
 * payload for opcode into out. */
void load_ws_frame(load_buf_t *out, int opcode, const char *data, size_t len, uint32_t mask);

#endif
