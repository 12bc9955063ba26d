#include "ingest/http.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/token.h"
#include "core/util.h"
#include "gateway/gateway.h"
#include "ingest/api.h"
#include "ingest/post.h"
#include "ingest/static.h"
#include "loop.h"
#include "natter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <h2o/websocket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* h2o's own ceiling on a body; natter's --max-body is checked by natter, so
 * that an oversized body gets natter's JSON 413. Beyond this one, h2o
 * answers a plain 413 and closes. */
#define H2O_ENTITY_CEILING (1024 * 1024)
/* How long a loop out of file descriptors stops accepting. */
#define ACCEPT_PAUSE_MS 100

/* Lives in the request's pool: when h2o frees the request (the client went
 * away), it tells the job in flight not to answer it. */
typedef struct natter_http_guard {
    natter_api_job_t *job;
} natter_http_guard_t;


static void guard_dispose(void *p)
{
    natter_http_guard_t *g = p;
    if (g->job != NULL)
        g->job->req = NULL;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "";
    }
}

/* Counts the answer under its route: a path that matched no route, or not
 * with this method, is "unmatched" whatever its path, so labels stay bounded. */
static void count_answer(natter_action_t action, int status)
{
    natter_metrics_count_http(action == NATTER_A_METHOD_NOT_ALLOWED ? NATTER_A_NOT_FOUND : action, status);
}

static void send_body(h2o_req_t *req, natter_action_t action, int status, const char *content_type, const char *body,
                      size_t len)
{
    req->res.status = status;
    req->res.reason = reason_of(status);
    if (content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    req->res.content_length = len;
    count_answer(action, status);
    h2o_send_inline(req, body, len);
}

/* An answer read with GET is a user's chats, messages or profile: kept in
 * no cache (a browser's would show them after the logout). */
static void send_json(h2o_req_t *req, natter_action_t action, int status, const char *body, size_t len)
{
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, action, status, len ? "application/json" : NULL, body, len);
}

static void send_error(h2o_req_t *req, natter_action_t action, int status, const char *code, const char *message)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
    send_json(req, action, status, body, (size_t)n);
}

static size_t header_value(h2o_req_t *req, const h2o_token_t *token, const char **value)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i < 0)
        return 0;
    *value = req->headers.entries[i].value.base;
    return req->headers.entries[i].value.len;
}

static void add_header(h2o_req_t *req, const char *name, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, value, len);
}

/* A file of the web client, or 304 when the browser's copy is current. */
static void send_asset(h2o_req_t *req, const natter_route_t *route)
{
    const natter_static_asset_t *a = natter_static_find(route->asset, route->asset_len);
    if (a == NULL) {
        send_error(req, route->action, 404, "not_found", "no such file");
        return;
    }
    const char *cc = natter_static_cache_control(a), *inm;
    char *csp = h2o_mem_alloc_pool(&req->pool, NATTER_STATIC_CSP_MAX);
    size_t csp_len = natter_static_csp(csp, req->authority.base, req->authority.len);
    add_header(req, "etag", a->etag, strlen(a->etag));
    add_header(req, "cache-control", cc, strlen(cc));
    add_header(req, "x-content-type-options", H2O_STRLIT("nosniff"));
    add_header(req, "content-security-policy", csp, csp_len);
    add_header(req, "referrer-policy", H2O_STRLIT("same-origin"));
    size_t inm_len = header_value(req, H2O_TOKEN_IF_NONE_MATCH, &inm);
    if (inm_len > 0 && natter_static_etag_match(inm, inm_len, a->etag)) {
        /* no body; Content-Length, when sent on a 304, must be the 200's */
        req->res.status = 304;
        req->res.reason = reason_of(304);
        req->res.content_length = a->len;
        count_answer(route->action, 304);
        h2o_send_inline(req, "", 0);
        return;
    }
    send_body(req, route->action, 200, a->content_type, (const char *)a->data, a->len);
}

/* Copies the caller's token: the Authorization header, or ?token= on /ws;
 * and ?ticket= on /ws (which, given, is what authenticates). */
static void copy_token(natter_api_job_t *job, h2o_req_t *req, const natter_route_t *route)
{
    const char *v, *tok = NULL;
    size_t len = header_value(req, H2O_TOKEN_AUTHORIZATION, &v), tlen = 0;
    const char *ticket;
    char buf[sizeof(job->token) + sizeof(job->ticket)];
    size_t ticket_len;
    if (route->action == NATTER_A_WS &&
        natter_query_value(route->query, route->query_len, "ticket", buf, sizeof(buf), &ticket, &ticket_len)) {
        job->ticket_len = ticket_len < sizeof(job->ticket) ? ticket_len : sizeof(job->ticket) - 1;
        memcpy(job->ticket, ticket, job->ticket_len);
    }
    if (len > 0)
        tlen = natter_token_from_bearer(v, len, &tok);
    else if (route->action == NATTER_A_WS)
        natter_query_value(route->query, route->query_len, "token", buf, sizeof(buf), &tok, &tlen);
    if (tok != NULL && tlen < sizeof(job->token)) {
        memcpy(job->token, tok, tlen);
        job->token_len = tlen;
    } else if (tok != NULL) {
        job->token_len = 1; /* present but absurd: fails the token check, not the "missing" one */
        job->token[0] = '?';
    }
}

/* The request line and headers as they came (names, values, separators). */
static size_t header_bytes(const h2o_req_t *req)
{
    size_t n = req->input.method.len + req->input.path.len + 12;
    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

/* The request's loop: h2o's context is the loop's. */
static natter_loop_t *loop_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(natter_loop_t, h2o_ctx, req->conn->ctx);
}

static void park(natter_api_job_t *job, h2o_req_t *req)
{
    job->req = req;
    job->guard = h2o_mem_alloc_shared(&req->pool, sizeof(natter_http_guard_t), guard_dispose);
    job->guard->job = job;
}

/* A post on the loop that received it; 1 when decided here (answered or
 * parked in the log), 0 when a worker must take it. */
static int post_on_loop(natter_loop_t *loop, natter_api_job_t *job, h2o_req_t *req)
{
    switch (natter_post_on_loop(job, req->entity.base, req->entity.len)) {
    case NATTER_POST_PARKED:
        park(job, req);
        return 1;
    case NATTER_POST_ANSWERED:
        park(job, req);
        natter_http_answer(loop, job);
        return 1;
    case NATTER_POST_MISS:
        break;
    }
    return 0;
}

/* A login or registration over its client address's limit: answered 429
 * here, before it is queued for a hashing thread. */
static int auth_refused(natter_app_t *app, h2o_req_t *req, natter_action_t action, uint64_t *address)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    *address = natter_auth_address_key(&app->auth, (struct sockaddr *)&ss, len);
    uint32_t wait = natter_auth_take_address(&app->auth, *address, natter_mono_ms());
    if (wait == 0)
        return 0;
    char secs[16];
    int n = snprintf(secs, sizeof(secs), "%u", wait);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, secs, n).base,
                   (size_t)n);
    send_error(req, action, 429, "rate_limited", "too many attempts from this address, slow down");
    return 1;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    natter_loop_t *loop = loop_of(req);
    natter_app_t *app = loop->app;
    natter_route_t route;
    (void)self;
    natter_route(req->method.base, req->method.len, req->path.base, req->path.len, &route);
    if (header_bytes(req) > app->cfg.max_header) {
        send_error(req, route.action, 431, "headers_too_large", "the request line and headers are too large");
        return 0;
    }

    switch (route.action) {
    case NATTER_A_NOT_FOUND:
        send_error(req, route.action, 404, "not_found", "no such route");
        return 0;
    case NATTER_A_METHOD_NOT_ALLOWED:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, route.allow, strlen(route.allow));
        send_error(req, route.action, 405, "method_not_allowed", "method not allowed on this path");
        return 0;
    case NATTER_A_HEALTHZ:
        send_json(req, route.action, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
        return 0;
    case NATTER_A_PAGE:
    case NATTER_A_STATIC:
        send_asset(req, &route);
        return 0;
    case NATTER_A_METRICS: {
        size_t len;
        char *text = natter_metrics_render(natter_route_names, NATTER_A_COUNT, &len);
        send_body(req, route.action, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return 0;
    }
    default:
        break;
    }
    if (natter_app_stopping(app)) {
        send_error(req, route.action, 503, "unavailable", "the server is shutting down");
        return 0;
    }
    if (req->entity.len > app->cfg.max_body) {
        send_error(req, route.action, 413, "payload_too_large", "the request body is too large");
        return 0;
    }

    if (route.action == NATTER_A_WS && atomic_load(&natter_metrics.connections) > (int64_t)app->cfg.max_connections) {
        natter_count(&natter_m()->at_capacity, 1);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
        send_error(req, route.action, 503, "at_capacity", "this node holds all the connections it can, try again");
        return 0;
    }
    uint64_t address = 0;
    if (natter_auth_hashes(route.action) && auth_refused(app, req, route.action, &address))
        return 0;
    natter_api_job_t *job = natter_api_job_new(loop, &route);
    job->client_address = address;
    if (route.action == NATTER_A_WS) {
        const char *key = NULL;
        if (h2o_is_websocket_handshake(req, &key) != 0 || key == NULL) {
            natter_api_job_free(job);
            send_error(req, route.action, 400, "invalid_request", "a WebSocket upgrade request is required");
            return 0;
        }
        ssize_t v = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sec-websocket-version"), -1);
        if (v < 0 || !h2o_memis(req->headers.entries[v].value.base, req->headers.entries[v].value.len,
                                H2O_STRLIT("13"))) { /* RFC 6455 §4.2.2: say which version this server speaks */
            natter_api_job_free(job);
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-version"), 0, NULL,
                                  H2O_STRLIT("13"));
            send_error(req, route.action, 426, "invalid_request", "the WebSocket version must be 13");
            return 0;
        }
        job->ws_client_key = key;
    }
    copy_token(job, req, &route);
    if (route.action == NATTER_A_MESSAGE_POST && post_on_loop(loop, job, req))
        return 0;
    natter_api_job_copy_request(job, req->entity.base, req->entity.len, route.query, route.query_len);
    if (natter_workers_submit(natter_auth_hashes(route.action) ? &app->auth.pool : &app->workers, &job->work) !=
        NATTER_OK) {
        natter_api_job_free(job);
        natter_count(&natter_m()->busy_rejected, 1);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_error(req, route.action, 503, "busy", "the server is busy, try again");
        return 0;
    }
    park(job, req);
    return 0;
}

void natter_http_answer(natter_loop_t *loop, natter_api_job_t *job)
{
    h2o_req_t *req = job->req;
    if (job->ws_conn_id != 0) { /* no resp: answered with nothing to send (a typing frame) */
        natter_gateway_send(loop->gateway, job->ws_conn_id,
                            job->resp != NULL ? natter_frame_text(job->resp, job->resp_len) : NULL,
                            job->ws_from_worker ? NATTER_GATEWAY_ANSWER_FROM_WORKER : NATTER_GATEWAY_ANSWER);
    } else if (req != NULL) { /* NULL: the client went away */
        job->guard->job = NULL;
        if (job->route.action == NATTER_A_WS && job->status == 101) {
            count_answer(job->route.action, 101);
            natter_gateway_accept(loop->gateway, req, job->ws_client_key, &job->ws_session);
        } else {
            if (job->retry_after > 0) { /* a 429, or a 503 busy */
                char secs[16];
                int n = snprintf(secs, sizeof(secs), "%u", job->retry_after);
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                               h2o_strdup(&req->pool, secs, n).base, (size_t)n);
            }
            send_json(req, job->route.action, job->status, job->resp, job->resp_len);
        }
    }
    natter_api_job_free(job);
}

static void on_conn_closed(void *data)
{
    (void)data;
    atomic_fetch_sub(&natter_metrics.connections, 1);
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void resume_accepting(h2o_timeout_entry_t *entry)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, accept_pause, entry);
    if (loop->listener != NULL)
        h2o_socket_read_start(loop->listener, on_accept);
}

/* Out of file descriptors: accept() would fail at once again and again, and
 * the listener would stay readable; stop reading it for a moment instead of
 * spinning. The sockets the node has are served meanwhile. */
static void pause_accepting(natter_loop_t *loop)
{
    uint64_t now = natter_mono_ns();
    natter_count(&natter_m()->accept_paused, 1);
    h2o_socket_read_stop(loop->listener);
    h2o_timeout_link(loop->h2o_ctx.loop, &loop->accept_pause_timeout, &loop->accept_pause);
    if (now - loop->accept_pause_logged_ns > 10000000000ull) {
        fprintf(stderr, "natter: loop %u: out of file descriptors (%ld connections open): pausing accept\n",
                loop->index, (long)atomic_load(&natter_metrics.connections));
        loop->accept_pause_logged_ns = now;
    }
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    natter_loop_t *loop = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    unsigned write_timeout = loop->app->cfg.write_timeout_ms;
    while ((sock = h2o_evloop_socket_accept(listener)) != NULL) {
        atomic_fetch_add(&natter_metrics.connections, 1);
        /* A client that stops reading holds what it was sent (an answer of
         * megabytes, in h2o's buffers and the kernel's) for as long as its
         * connection lives, and h2o has no write timeout: the kernel ends
         * the connection once data sent waits unacknowledged this long (a
         * closed window included), and h2o frees it on the error. A slow
         * reader that keeps acknowledging stays. */
        if (write_timeout > 0)
            setsockopt(h2o_socket_get_fd(sock), IPPROTO_TCP, TCP_USER_TIMEOUT, &write_timeout, sizeof(write_timeout));
        sock->on_close.cb = on_conn_closed;
        sock->on_close.data = NULL;
        h2o_accept(&loop->accept_ctx, sock);
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        pause_accepting(loop);
}

/* A listening socket on the configured address: with reuseport, one of the
 * loops' (the kernel spreads connections over them); without, a probe. */
static int open_socket(natter_app_t *app, int reuseport, int *out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    char port[8];
    int fd = -1, on = 1;
    snprintf(port, sizeof(port), "%u", app->cfg.listen_port);
    int gai = getaddrinfo(app->cfg.listen_host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen %s:%s: %s", app->cfg.listen_host, port, gai_strerror(gai));
        return NATTER_EINVAL;
    }
    if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || (reuseport && listen(fd, SOMAXCONN) != 0)) {
        snprintf(err, errlen, "listen %s:%s: %s", app->cfg.listen_host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return NATTER_EIO;
    }
    freeaddrinfo(res);
    *out = fd;
    return NATTER_OK;
}

int natter_http_check_address(natter_app_t *app, char *err, size_t errlen)
{
    int fd, rc = open_socket(app, 0, &fd, err, errlen);
    if (rc == NATTER_OK)
        close(fd);
    return rc;
}

int natter_http_listen(natter_loop_t *loop, char *err, size_t errlen)
{
    int fd, on = 1;
    int rc = open_socket(loop->app, 1, &fd, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    loop->listener = h2o_evloop_socket_create(loop->h2o_ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    loop->listener->data = loop;
    h2o_timeout_init(loop->h2o_ctx.loop, &loop->accept_pause_timeout, ACCEPT_PAUSE_MS);
    loop->accept_pause.cb = resume_accepting;
    h2o_socket_read_start(loop->listener, on_accept);
    return NATTER_OK;
}

/* The TLS context of --tls-cert and --tls-key: TLS 1.2 and later, HTTP/1.1
 * by ALPN (a WebSocket upgrade is an HTTP/1.1 request). */
static int configure_tls(natter_app_t *app, char *err, size_t errlen)
{
    static const h2o_iovec_t alpn[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, app->cfg.tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, app->cfg.tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        snprintf(err, errlen, "TLS with --tls-cert %s --tls-key %s: %s", app->cfg.tls_cert, app->cfg.tls_key, why);
        SSL_CTX_free(ctx);
        return NATTER_EINVAL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    h2o_ssl_register_alpn_protocols(ctx, alpn);
    app->tls = ctx;
    return NATTER_OK;
}

int natter_http_tls(const natter_app_t *app)
{
    return app->tls != NULL;
}

int natter_http_configure(natter_app_t *app, char *err, size_t errlen)
{
    if (strcmp(app->cfg.tls_cert, "-") != 0 && configure_tls(app, err, errlen) != NATTER_OK)
        return NATTER_EINVAL;
    h2o_config_init(&app->h2o_config);
    app->h2o_config.max_request_entity_size = H2O_ENTITY_CEILING;
    /* the whole request (line, headers, body) must arrive within this, and a
     * keep-alive connection may idle this long: a client that trickles bytes
     * to hold a connection is dropped */
    app->h2o_config.http1.req_timeout = app->cfg.request_timeout_ms;
    h2o_hostconf_t *host = h2o_config_register_host(&app->h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    return NATTER_OK;
}

void natter_http_stop_listening(natter_loop_t *loop)
{
    if (h2o_timeout_is_linked(&loop->accept_pause))
        h2o_timeout_unlink(&loop->accept_pause);
    if (loop->listener != NULL) {
        h2o_socket_read_stop(loop->listener);
        h2o_socket_close(loop->listener);
        loop->listener = NULL;
    }
}
