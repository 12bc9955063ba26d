/*
 * noop_server — the throughput anchor for natter's HTTP benchmarks.
 *
 * A single-threaded libh2o (evloop) server that answers every request, on any
 * path and with any method, with a fixed 202 shaped like natter's answer to
 * POST /chats/{id}/messages. It does no parsing, no storage and no allocation
 * of its own, so `wrk` against it measures what the HTTP layer alone costs on
 * this machine; scripts/bench-wrk reports natter as a ratio against it.
 *
 * Request bodies need no code: h2o's HTTP/1 reader buffers the whole entity
 * (bounded by max_request_entity_size) before on_req runs, and the buffer is
 * dropped with the request.
 *
 * Usage: noop-server [--listen HOST:PORT]    (default 127.0.0.1:7890)
 */
#ifndef _GNU_SOURCE /* the Makefile passes -D_GNU_SOURCE; a bare cc line may not */
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2o.h"
#include "h2o/http1.h"

#define NOOP_DEFAULT_LISTEN "127.0.0.1:7890"
/* Same bound natter applies by default (--max-body), so 413s behave alike. */
#define NOOP_MAX_BODY 16384
/* Accepts per readiness event; h2o's own server bounds this loop too. */
#define NOOP_ACCEPT_BATCH 64

static const char noop_body[] = "{\"id\":\"1\",\"chat_id\":\"1\",\"sender_id\":\"1\","
                                "\"created_at\":\"2026-01-01T00:00:00.000Z\"}";

static h2o_globalconf_t noop_config;
static h2o_context_t noop_ctx;
static h2o_accept_ctx_t noop_accept_ctx;

static int noop_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t body = h2o_iovec_init(noop_body, sizeof(noop_body) - 1);

    (void)self;
    req->res.status = 202;
    req->res.reason = "Accepted";
    /* Without a content length h2o 2.2 ends a non-chunked reply by closing the
     * connection, which would turn the benchmark into a connect benchmark. */
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_start_response(req, &generator);
    h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    return 0;
}

static void noop_on_accept(h2o_socket_t *listener, const char *err)
{
    h2o_socket_t *sock;
    int i;

    if (err != NULL)
        return;
    for (i = 0; i < NOOP_ACCEPT_BATCH; i++) {
        if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
            return;
        h2o_accept(&noop_accept_ctx, sock);
    }
}

/* Splits "HOST:PORT" (HOST may be "[v6]") at the last colon into host and
 * port, both pointing into buf. Returns 0, or -1 when the shape is wrong. */
static int noop_split_hostport(char *buf, char **host, char **port)
{
    char *colon = strrchr(buf, ':');

    if (colon == NULL || colon == buf || colon[1] == '\0')
        return -1;
    *colon = '\0';
    *port = colon + 1;
    *host = buf;
    if (buf[0] == '[') {
        size_t n = strlen(buf);
        if (n < 3 || buf[n - 1] != ']')
            return -1;
        buf[n - 1] = '\0';
        *host = buf + 1;
    }
    return 0;
}

/* Returns a listening fd bound to spec (h2o makes it non-blocking), or -1 with a
 * message in err. */
static int noop_listen(const char *spec, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char buf[256], *host, *port;
    int fd, on = 1, rc;

    if (strlen(spec) >= sizeof(buf)) {
        snprintf(err, errlen, "listen address too long");
        return -1;
    }
    strcpy(buf, spec);
    if (noop_split_hostport(buf, &host, &port) != 0) {
        snprintf(err, errlen, "expected HOST:PORT, got '%s'", spec);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        snprintf(err, errlen, "%s: %s", spec, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "%s: %s", spec, strerror(errno));
        if (fd != -1)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void noop_usage(FILE *out, const char *argv0)
{
    fprintf(out, "usage: %s [--listen HOST:PORT]   (default %s)\n", argv0, NOOP_DEFAULT_LISTEN);
}

int main(int argc, char **argv)
{
    const char *listen_spec = NOOP_DEFAULT_LISTEN;
    char err[512];
    h2o_hostconf_t *hostconf;
    h2o_pathconf_t *pathconf;
    h2o_handler_t *handler;
    h2o_socket_t *listener;
    int i, fd;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_spec = argv[++i];
        } else if (strncmp(argv[i], "--listen=", 9) == 0) {
            listen_spec = argv[i] + 9;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            noop_usage(stdout, argv[0]);
            return 0;
        } else {
            noop_usage(stderr, argv[0]);
            return 2;
        }
    }

    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&noop_config);
    noop_config.max_request_entity_size = NOOP_MAX_BODY;
    hostconf = h2o_config_register_host(&noop_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = noop_on_req;

    h2o_context_init(&noop_ctx, h2o_evloop_create(), &noop_config);
    noop_accept_ctx.ctx = &noop_ctx;
    noop_accept_ctx.hosts = noop_config.hosts;

    if ((fd = noop_listen(listen_spec, err, sizeof(err))) == -1) {
        fprintf(stderr, "noop-server: cannot listen: %s\n", err);
        return 1;
    }
    listener = h2o_evloop_socket_create(noop_ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(listener, noop_on_accept);
    fprintf(stderr, "noop-server: listening on %s\n", listen_spec);

    while (h2o_evloop_run(noop_ctx.loop, INT32_MAX) == 0)
        ;
    return 1;
}
