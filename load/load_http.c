/* load_http — see load_http.h. */
#include "load_http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

static void on_event(load_io_t *io, uint32_t events);

void load_http_init(load_http_t *c, int epfd, const load_dest_t *d)
{
    memset(c, 0, sizeof(*c));
    c->io.fd = -1;
    c->io.on_event = on_event;
    c->epfd = epfd;
    c->addr = *d->addr;
    c->host = d->host;
    load_tls_conn_init(&c->tls, d->tls);
}

int load_http_busy(const load_http_t *c)
{
    return c->cb != NULL;
}

void load_http_close(load_http_t *c)
{
    load_tls_close(&c->tls);
    if (c->io.fd >= 0)
        close(c->io.fd);
    c->io.fd = -1;
    c->state = LOAD_HTTP_DOWN;
    c->connected = 0;
    c->out.off = c->out.len = 0;
    c->in.off = c->in.len = 0;
}

void load_http_free(load_http_t *c)
{
    load_http_close(c);
    load_buf_free(&c->in);
    load_buf_free(&c->out);
}

/* Ends the in-flight request: state first, so that cb may start the next. */
static void complete(load_http_t *c, int status, const char *body, size_t len)
{
    load_http_cb cb = c->cb;
    void *arg = c->cb_arg;
    c->cb = NULL;
    c->cb_arg = NULL;
    if (c->state == LOAD_HTTP_BUSY)
        c->state = LOAD_HTTP_IDLE;
    if (cb != NULL)
        cb(c, status, body, len, arg);
}

void load_http_abort(load_http_t *c, int err)
{
    load_http_close(c);
    complete(c, err, NULL, 0);
}

int load_http_request(load_http_t *c, const char *method, const char *path, const char *headers, const char *body,
                      size_t body_len, load_http_cb cb, void *arg)
{
    if (c->cb != NULL)
        return -EBUSY;
    if (c->io.fd < 0) {
        int fd = load_io_connect(c->epfd, &c->addr, NULL, &c->io);
        if (fd < 0)
            return fd;
        c->state = LOAD_HTTP_CONNECTING;
        c->connected = 0;
    }
    char head[1024];
    int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n\r\n", method, path,
                     c->host, headers ? headers : "", body_len);
    if (n < 0 || (size_t)n >= sizeof(head))
        return -ENAMETOOLONG;
    load_buf_append(&c->out, head, (size_t)n);
    if (body_len > 0)
        load_buf_append(&c->out, body, body_len);
    c->cb = cb;
    c->cb_arg = arg;
    c->sent_ns = load_now_ns();
    if (c->connected) {
        c->state = LOAD_HTTP_BUSY;
        int rc = load_tls_flush(&c->tls, c->io.fd, &c->out);
        if (rc < 0) {
            load_http_abort(c, rc); /* cb fires: the request was accepted */
            return 0;
        }
    }
    return 0;
}

/* The largest Content-Length taken from an answer: a larger one would never
 * fit the buffer, and would wrap the offset. */
#define LOAD_HTTP_MAX_BODY ((uint64_t)1 << 30)

/* Parses one complete response at the front of c->in, if there is one.
 * Returns 1 (delivered), 0 (need more), or -errno. */
static int parse_response(load_http_t *c)
{
    struct phr_header headers[32];
    size_t nh = 32, msg_len;
    int minor, status;
    const char *msg;
    const char *p = c->in.p + c->in.off;
    size_t avail = load_buf_pending(&c->in);
    int hl = phr_parse_response(p, avail, &minor, &status, &msg, &msg_len, headers, &nh, 0);
    if (hl == -2)
        return 0;
    if (hl < 0)
        return -EPROTO;
    size_t clen = 0;
    int keep_alive = minor >= 1, framed = 0;
    c->cookie[0] = '\0';
    for (size_t i = 0; i < nh; i++) {
        const struct phr_header *h = &headers[i];
        if (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) {
            uint64_t v;
            if (load_parse_u64(h->value, h->value_len, &v) != 0 || v > LOAD_HTTP_MAX_BODY)
                return -EPROTO;
            clen = (size_t)v;
            framed = 1;
        } else if (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0) {
            if (h->value_len >= 5 && strncasecmp(h->value, "close", 5) == 0)
                keep_alive = 0;
        } else if (h->name_len == 10 && strncasecmp(h->name, "set-cookie", 10) == 0) {
            const char *semi = memchr(h->value, ';', h->value_len);
            size_t n = semi ? (size_t)(semi - h->value) : h->value_len;
            if (n < sizeof(c->cookie)) {
                memcpy(c->cookie, h->value, n);
                c->cookie[n] = '\0';
            }
        } else if (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0) {
            return -EPROTO;
        }
    }
    if (!framed && !(status == 204 || status == 304 || status < 200))
        return -EPROTO;
    if (avail < (size_t)hl + clen)
        return 0;
    /* Deliver while the bytes are in place, then drop them (the callback
     * only appends to c->out, never touches c->in). */
    size_t total = (size_t)hl + clen;
    if (!keep_alive) {
        /* copy out: closing resets the buffer */
        char tmp[8192];
        size_t n = clen < sizeof(tmp) ? clen : sizeof(tmp);
        memcpy(tmp, p + hl, n);
        load_http_close(c);
        complete(c, status, tmp, n);
        return 1;
    }
    load_buf_consume(&c->in, total);
    complete(c, status, p + hl, clen);
    return 1;
}

int load_http_process(load_http_t *c)
{
    int rc = 0;
    while (c->state != LOAD_HTTP_DOWN && c->cb != NULL && (rc = parse_response(c)) == 1)
        ; /* a callback may close the connection (DOWN) or leave it without a request */
    return rc < 0 ? rc : 0;
}

static void on_event(load_io_t *io, uint32_t events)
{
    load_http_t *c = (load_http_t *)io;
    if (c->state == LOAD_HTTP_CONNECTING) {
        int rc = load_tls_connect(&c->tls, io->fd, events);
        if (rc < 0) {
            load_http_abort(c, rc);
            return;
        }
        if (rc == 0)
            return;
        c->connected = 1;
        c->state = c->cb != NULL ? LOAD_HTTP_BUSY : LOAD_HTTP_IDLE;
        c->sent_ns = load_now_ns();
        events |= EPOLLOUT;
    }
    if (!c->connected)
        return;
    events = load_tls_events(&c->tls, events);
    if (events & EPOLLOUT) {
        int rc = load_tls_flush(&c->tls, io->fd, &c->out);
        if (rc < 0) {
            load_http_abort(c, rc);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        long n = load_tls_fill(&c->tls, io->fd, &c->in);
        if (n > 0 || load_buf_pending(&c->in) > 0) {
            int rc = load_http_process(c);
            if (rc < 0) {
                load_http_abort(c, rc);
                return;
            }
        }
        if (n < 0 && c->io.fd >= 0) {
            if (c->cb != NULL)
                load_http_abort(c, (int)n);
            else
                load_http_close(c); /* idle keep-alive closed by the server: reconnect on next use */
        }
    }
}
