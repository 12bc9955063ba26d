/* load_http — a minimal HTTP/1.1 client connection for natter-load.
 *
 * One request in flight per connection (no pipelining), keep-alive, bodies
 * framed by Content-Length (the only framing natter and the no-op anchor
 * use; a chunked or unframed answer is reported as an error). A connection
 * that is down reconnects by itself on the next request; to an https://
 * target it is HTTPS (load_tls.h), the handshake part of its connecting.
 *
 * Callbacks: load_http_request() either returns an error and never calls
 * cb, or returns 0 and calls cb exactly once, from load_http_t's epoll event
 * or from load_http_abort(): status is the HTTP status, or a negative errno
 * when the connection failed (then body is NULL). The body points into the
 * connection's buffer and is valid only during the callback. cb may issue
 * the next request on the same connection.
 */
#ifndef NATTER_LOAD_HTTP_H
#define NATTER_LOAD_HTTP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "load_io.h"
#include "load_tls.h"

typedef struct load_http load_http_t;
typedef void (*load_http_cb)(load_http_t *c, int status, const char *body, size_t len, void *arg);

enum load_http_state { LOAD_HTTP_DOWN, LOAD_HTTP_CONNECTING, LOAD_HTTP_IDLE, LOAD_HTTP_BUSY };

struct load_http {
    load_io_t io; /* first: the epoll data */
    int epfd;
    struct sockaddr_in addr;
    const char *host; /* Host header value, borrowed */
    load_tls_conn_t tls;
    enum load_http_state state; /* CONNECTING: TCP, then the TLS handshake */
    int connected;
    load_buf_t out, in;
    load_http_cb cb;
    void *cb_arg;
    uint64_t sent_ns; /* when the in-flight request was handed over */
    char cookie[160]; /* "name=value" of the answer's last Set-Cookie ("" if none); valid in cb */
    void *user;       /* free for the owner */
};

void load_http_init(load_http_t *c, int epfd, const load_dest_t *d);
/* Starts a request. headers are extra header lines, each ending in "\r\n"
 * (credentials, Content-Type), or NULL; body may be NULL. Returns 0,
 * -EBUSY when a request is in flight, or -errno (connect). */
int load_http_request(load_http_t *c, const char *method, const char *path, const char *headers, const char *body,
                      size_t body_len, load_http_cb cb, void *arg);
/* Fails the in-flight request (cb with err) and closes the socket. */
void load_http_abort(load_http_t *c, int err);
/* Closes the socket; no callback. */
void load_http_close(load_http_t *c);
/* Closes the socket and frees the buffers; no callback. */
void load_http_free(load_http_t *c);
int load_http_busy(const load_http_t *c);
/* Delivers every complete response read into c->in while a request is in
 * flight (the read side, exposed for the fuzz target). 0, or -EPROTO when
 * an answer is malformed (the caller then aborts the request). */
int load_http_process(load_http_t *c);

#endif
