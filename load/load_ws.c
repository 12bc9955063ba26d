/* load_ws — see load_ws.h. */
#include "load_ws.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };
enum { MAX_MESSAGE = 16 << 20 };

static void on_event(load_io_t *io, uint32_t events);

void load_ws_frame(load_buf_t *out, int opcode, const char *data, size_t len, uint32_t mask)
{
    unsigned char *h = (unsigned char *)load_buf_reserve(out, 14 + len);
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    unsigned char m[4] = {(unsigned char)(mask >> 24), (unsigned char)(mask >> 16), (unsigned char)(mask >> 8),
                          (unsigned char)mask};
    memcpy(h + hl, m, 4);
    hl += 4;
    for (size_t i = 0; i < len; i++)
        h[hl + i] = (unsigned char)data[i] ^ m[i & 3];
    out->len += hl + len;
}

static uint32_t next_mask(load_ws_t *w)
{
    uint32_t x = w->mask_seed; /* xorshift32: masking needs no secrecy here */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->mask_seed = x;
}

int load_ws_open(load_ws_t *w, int epfd, const load_dest_t *d, const struct sockaddr_in *src, const char *path,
                 const load_ws_handler_t *h, void *user)
{
    w->io.on_event = on_event;
    w->epfd = epfd;
    w->h = h;
    w->user = user;
    w->mask_seed = (uint32_t)(uintptr_t)w | 1u;
    w->in.off = w->in.len = w->out.off = w->out.len = w->frag.off = w->frag.len = 0;
    load_tls_conn_init(&w->tls, d->tls);
    int fd = load_io_connect(epfd, d->addr, src, &w->io);
    if (fd < 0)
        return fd;
    w->state = LOAD_WS_CONNECTING;
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     path, d->host);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        load_ws_drop(w);
        return -ENAMETOOLONG;
    }
    load_buf_append(&w->out, req, (size_t)n);
    return 0;
}

void load_ws_drop(load_ws_t *w)
{
    load_tls_close(&w->tls);
    if (w->io.fd >= 0)
        close(w->io.fd);
    w->io.fd = -1;
    w->state = LOAD_WS_DOWN;
}

void load_ws_free(load_ws_t *w)
{
    load_buf_free(&w->in);
    load_buf_free(&w->out);
    load_buf_free(&w->frag);
}

static void fail(load_ws_t *w, int code)
{
    load_ws_drop(w);
    if (w->h->on_close)
        w->h->on_close(w, code);
}

int load_ws_send_text(load_ws_t *w, const char *data, size_t len)
{
    if (w->state != LOAD_WS_OPEN)
        return -ENOTCONN;
    load_ws_frame(&w->out, OP_TEXT, data, len, next_mask(w));
    int rc = load_tls_flush(&w->tls, w->io.fd, &w->out);
    if (rc < 0) {
        fail(w, rc);
        return -ENOTCONN;
    }
    return 0;
}

static int handshake(load_ws_t *w)
{
    struct phr_header headers[32];
    size_t nh = 32, msg_len;
    int minor, status;
    const char *msg;
    int hl = phr_parse_response(w->in.p + w->in.off, load_buf_pending(&w->in), &minor, &status, &msg, &msg_len,
                                headers, &nh, 0);
    if (hl == -2)
        return 0;
    if (hl < 0)
        return -EPROTO;
    if (status != 101)
        return status; /* refused (e.g. 401): reported as the close code */
    load_buf_consume(&w->in, (size_t)hl);
    w->state = LOAD_WS_OPEN;
    if (w->h->on_open)
        w->h->on_open(w);
    return 0;
}

int load_ws_process(load_ws_t *w)
{
    if (w->state == LOAD_WS_HANDSHAKE && load_buf_pending(&w->in) > 0) {
        int code = handshake(w);
        if (code != 0)
            return code;
    }
    while (w->state == LOAD_WS_OPEN) {
        const unsigned char *p = (const unsigned char *)w->in.p + w->in.off;
        size_t avail = load_buf_pending(&w->in);
        if (avail < 2)
            return 0;
        int fin = p[0] & 0x80, op = p[0] & 0x0F;
        uint64_t len = p[1] & 0x7F;
        size_t hl = 2;
        if (p[1] & 0x80)
            return 1002; /* a server must not mask */
        if (len == 126) {
            if (avail < 4)
                return 0;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return 0;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hl = 10;
        }
        if (len > MAX_MESSAGE)
            return 1009;
        if (avail < hl + len)
            return 0;
        const char *data = (const char *)p + hl;
        size_t n = (size_t)len;
        load_buf_consume(&w->in, hl + n); /* the bytes stay in place until the next read */
        switch (op) {
        case OP_TEXT:
        case OP_BIN:
            if (fin) {
                w->h->on_message(w, data, n);
            } else {
                w->frag.off = w->frag.len = 0;
                load_buf_append(&w->frag, data, n);
            }
            break;
        case OP_CONT:
            load_buf_append(&w->frag, data, n);
            if (load_buf_pending(&w->frag) > MAX_MESSAGE)
                return 1009;
            if (fin) {
                w->h->on_message(w, w->frag.p + w->frag.off, load_buf_pending(&w->frag));
                w->frag.off = w->frag.len = 0;
            }
            break;
        case OP_PING:
            load_ws_frame(&w->out, OP_PONG, data, n, next_mask(w));
            if (load_tls_flush(&w->tls, w->io.fd, &w->out) < 0)
                return -EPIPE;
            break;
        case OP_PONG:
            break;
        case OP_CLOSE: {
            int code = n >= 2 ? ((unsigned char)data[0] << 8 | (unsigned char)data[1]) : 1005;
            load_ws_frame(&w->out, OP_CLOSE, data, n >= 2 ? 2 : 0, next_mask(w));
            load_tls_flush(&w->tls, w->io.fd, &w->out);
            return code;
        }
        default:
            return 1002;
        }
    }
    return 0;
}

static void on_event(load_io_t *io, uint32_t events)
{
    load_ws_t *w = (load_ws_t *)io;
    if (w->state == LOAD_WS_CONNECTING) {
        int rc = load_tls_connect(&w->tls, io->fd, events);
        if (rc < 0) {
            fail(w, rc);
            return;
        }
        if (rc == 0)
            return;
        w->state = LOAD_WS_HANDSHAKE;
        events |= EPOLLOUT;
    }
    events = load_tls_events(&w->tls, events);
    if (events & EPOLLOUT) {
        int rc = load_tls_flush(&w->tls, io->fd, &w->out);
        if (rc < 0) {
            fail(w, rc);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    long n = load_tls_fill(&w->tls, io->fd, &w->in);
    int code = load_ws_process(w);
    if (code == 0 && n < 0)
        code = (int)n;
    if (code != 0 && w->io.fd >= 0) {
        fail(w, code);
        return;
    }
    if (load_buf_pending(&w->in) == 0)
        load_buf_free(&w->in);
    if (load_buf_pending(&w->out) == 0)
        load_buf_free(&w->out);
}
