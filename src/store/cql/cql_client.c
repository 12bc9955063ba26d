/*
 * The CQL client's moving parts (see cql_client.h for what it promises).
 *
 * Map of this file:
 *   hosts and the ring   parse the contact points, read system.local and
 *                        system.peers, map a token to its replica
 *   connections          connect + STARTUP (+ PasswordAuthenticator), the
 *                        reader thread, stream ids, failure
 *   calls                send a frame on a stream, wait for its answer,
 *                        abandon it on timeout; retries and re-prepare
 *   statements           PREPARE, cached by text
 *
 * Locks: client->lock guards the host table and the statement cache; each
 * connection's lock guards its socket writes and stream table; each call's
 * lock guards its completion. Never two at once, except conn then call in
 * the reader (a call's lock is a leaf).
 *
 * Lifetimes: a connection is reference-counted (its host slot, its reader
 * thread, and every call in flight on it each hold one), so a call that
 * times out can still find the connection it was sent on.
 */
#include "store/cql/cql_client.h"
#include "core/error.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOSTS 64
#define MAX_CONNS 8
#define MAX_STREAMS 1024 /* per connection; v4 allows 32768 */
#define RECONNECT_BACKOFF_NS 1000000000ull
#define MAX_ATTEMPTS 4
#define ERR_UNPREPARED 0x2500

typedef struct conn conn_t;
struct cql_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int status;           /* transport status: 0, or NATTER_EUNAVAIL / NATTER_ETIMEDOUT */
    uint8_t *answer;      /* the response frame */
    size_t answer_len;
    /* what is needed to send it again */
    cql_client_t *client;
    cql_buf_t request;
    cql_stmt_t *stmt;     /* EXECUTE: for re-prepare */
    int64_t token;
    int idempotent;
    int attempts;
    conn_t *conn;         /* sent on (holds a reference) */
    int16_t stream;
};

#define ABANDONED ((cql_call_t *)1)

struct conn {
    atomic_int refs;
    int fd;
    int host;
    pthread_mutex_t lock;
    int dead;
    cql_call_t *slots[MAX_STREAMS];
    int16_t free_streams[MAX_STREAMS];
    int nfree;
    pthread_t reader;
    cql_client_t *client;
};

typedef struct host {
    char name[256];
    char port[8];
    conn_t *conns[MAX_CONNS];
    unsigned next; /* round robin */
    uint64_t retry_after_ns;
} host_t;

typedef struct ring_entry {
    int64_t token;
    int host;
} ring_entry_t;

struct cql_stmt {
    cql_stmt_t *next;
    char *query;
    uint8_t id[64];
    size_t id_len;
};

struct cql_client {
    cql_client_config_t cfg;
    char *hosts_text, *user, *password;
    pthread_mutex_t lock;
    host_t hosts[MAX_HOSTS];
    int nhosts;
    ring_entry_t *ring;
    size_t nring;
    cql_stmt_t *stmts;
    atomic_uint rr;
    char last_error[256]; /* why the last connect failed; under lock */
};

/* ---- connections -------------------------------------------------------- */

static void conn_release(conn_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        close(c->fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

static void call_complete(cql_call_t *call, int status, uint8_t *frame, size_t len)
{
    pthread_mutex_lock(&call->lock);
    call->status = status;
    call->answer = frame;
    call->answer_len = len;
    call->done = 1;
    pthread_cond_signal(&call->cond);
    pthread_mutex_unlock(&call->lock);
}

/* Marks the connection dead and fails everything in flight on it. */
static void conn_fail(conn_t *c)
{
    pthread_mutex_lock(&c->lock);
    if (!c->dead) {
        c->dead = 1;
        shutdown(c->fd, SHUT_RDWR);
        for (int s = 0; s < MAX_STREAMS; s++) {
            cql_call_t *call = c->slots[s];
            c->slots[s] = NULL;
            if (call != NULL && call != ABANDONED)
                call_complete(call, NATTER_EUNAVAIL, NULL, 0);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *reader_main(void *arg)
{
    conn_t *c = arg;
    char err[128];
    for (;;) {
        uint8_t head[CQL_HEADER_LEN];
        cql_header_t h;
        size_t need;
        if (read_full(c->fd, head, sizeof(head)) != 0 ||
            cql_frame_peek(head, sizeof(head), &h, &need, err, sizeof(err)) < 0)
            break;
        size_t total = CQL_HEADER_LEN + h.length;
        uint8_t *frame = xmalloc(total);
        memcpy(frame, head, sizeof(head));
        if (read_full(c->fd, frame + CQL_HEADER_LEN, h.length) != 0) {
            free(frame);
            break;
        }
        cql_call_t *call = NULL;
        pthread_mutex_lock(&c->lock);
        if (h.stream >= 0 && h.stream < MAX_STREAMS && c->slots[h.stream] != NULL) {
            call = c->slots[h.stream];
            c->slots[h.stream] = NULL;
            c->free_streams[c->nfree++] = h.stream;
        }
        pthread_mutex_unlock(&c->lock);
        if (call == NULL || call == ABANDONED) /* an event, or an answer nobody waits for */
            free(frame);
        else
            call_complete(call, NATTER_OK, frame, total);
    }
    conn_fail(c);
    conn_release(c);
    return NULL;
}

/* Writes a whole frame; the caller holds c->lock. */
static int write_full(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One request and its answer on a connection that has no reader thread yet
 * (the handshake). */
static int handshake_call(int fd, cql_buf_t *req, cql_result_t *out, char *err, size_t errlen)
{
    uint8_t head[CQL_HEADER_LEN];
    cql_header_t h;
    size_t need;
    if (write_full(fd, req->data, req->len) != 0 || read_full(fd, head, sizeof(head)) != 0 ||
        cql_frame_peek(head, sizeof(head), &h, &need, err, errlen) < 0) {
        snprintf(err, errlen, "handshake: connection lost");
        return NATTER_EUNAVAIL;
    }
    out->len = CQL_HEADER_LEN + h.length;
    out->frame = xmalloc(out->len);
    memcpy(out->frame, head, sizeof(head));
    if (read_full(fd, out->frame + CQL_HEADER_LEN, h.length) != 0 ||
        cql_response_parse(&out->resp, out->frame, out->len, err, errlen) != NATTER_OK) {
        free(out->frame);
        out->frame = NULL;
        return NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

static int connect_to(const char *name, const char *port, unsigned timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(name, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s:%s: %s", name, port, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
    if (rc != 0 && fd >= 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (poll(&pfd, 1, (int)timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
            soerr == 0)
            rc = 0;
        else
            errno = soerr ? soerr : ETIMEDOUT;
    }
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(err, errlen, "%s:%s: %s", name, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    /* blocking from here on: the reader blocks in read, writers in send, bounded by SO_SNDTIMEO */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* STARTUP, then PasswordAuthenticator's PLAIN exchange when asked. */
static int handshake(cql_client_t *cl, int fd, char *err, size_t errlen)
{
    cql_buf_t req;
    cql_result_t res = {0};
    cql_buf_init(&req);
    cql_build_startup(&req, 0);
    int rc = handshake_call(fd, &req, &res, err, errlen);
    if (rc == NATTER_OK && res.resp.header.opcode == CQL_OP_AUTHENTICATE) {
        cql_result_free(&res);
        if (cl->user == NULL) {
            snprintf(err, errlen, "the cluster asks for authentication: give a user and password");
            rc = NATTER_EUNAVAIL;
        } else {
            cql_buf_reset(&req);
            cql_build_auth_plain(&req, 0, cl->user, cl->password);
            rc = handshake_call(fd, &req, &res, err, errlen);
        }
    }
    if (rc == NATTER_OK && res.resp.header.opcode == CQL_OP_ERROR) {
        snprintf(err, errlen, "%.*s", (int)res.resp.error.message.len, (const char *)res.resp.error.message.p);
        rc = NATTER_EUNAVAIL;
    } else if (rc == NATTER_OK && res.resp.header.opcode != CQL_OP_READY &&
               res.resp.header.opcode != CQL_OP_AUTH_SUCCESS) {
        snprintf(err, errlen, "unexpected answer to STARTUP: %s", cql_opcode_name(res.resp.header.opcode));
        rc = NATTER_EUNAVAIL;
    }
    cql_result_free(&res);
    cql_buf_free(&req);
    return rc;
}

static conn_t *conn_open(cql_client_t *cl, int host, char *err, size_t errlen)
{
    host_t *h = &cl->hosts[host];
    int fd = connect_to(h->name, h->port, cl->cfg.timeout_ms, err, errlen);
    if (fd < 0)
        return NULL;
    if (handshake(cl, fd, err, errlen) != NATTER_OK) {
        close(fd);
        return NULL;
    }
    conn_t *c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->host = host;
    c->client = cl;
    pthread_mutex_init(&c->lock, NULL);
    for (int s = MAX_STREAMS - 1; s >= 0; s--)
        c->free_streams[c->nfree++] = (int16_t)s;
    atomic_store(&c->refs, 2); /* the host slot and the reader */
    pthread_create(&c->reader, NULL, reader_main, c);
    return c;
}

/* Ends a connection held by a host slot: fails its calls, waits for its
 * reader, drops the slot's reference. */
static void conn_retire(conn_t *c)
{
    conn_fail(c);
    pthread_join(c->reader, NULL);
    conn_release(c);
}

/* A live connection to host (opening one when a slot is empty or dead and
 * the host is not in its reconnect back-off), with a reference for the
 * caller; NULL when none. */
static conn_t *host_conn(cql_client_t *cl, int host)
{
    char err[256];
    host_t *h = &cl->hosts[host];
    pthread_mutex_lock(&cl->lock);
    unsigned slot = h->next++ % cl->cfg.conns_per_host;
    conn_t *c = h->conns[slot];
    if (c != NULL && c->dead) {
        h->conns[slot] = NULL;
        conn_retire(c);
        c = NULL;
    }
    if (c == NULL && natter_mono_ns() >= h->retry_after_ns) {
        pthread_mutex_unlock(&cl->lock); /* connecting takes time: not under the client's lock */
        conn_t *fresh = conn_open(cl, host, err, sizeof(err));
        pthread_mutex_lock(&cl->lock);
        if (fresh == NULL) {
            h->retry_after_ns = natter_mono_ns() + RECONNECT_BACKOFF_NS;
            snprintf(cl->last_error, sizeof(cl->last_error), "%s", err);
            fprintf(stderr, "natter: cql: %s\n", err);
        } else if (h->conns[slot] == NULL) {
            h->conns[slot] = fresh;
        } else { /* another thread filled the slot meanwhile */
            conn_retire(fresh);
        }
        c = h->conns[slot];
    }
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&cl->lock);
    return c;
}

/* ---- hosts and the ring --------------------------------------------------- */

static int add_host(cql_client_t *cl, const char *name, size_t nlen, const char *port)
{
    for (int i = 0; i < cl->nhosts; i++)
        if (strlen(cl->hosts[i].name) == nlen && strncmp(cl->hosts[i].name, name, nlen) == 0 &&
            strcmp(cl->hosts[i].port, port) == 0)
            return i;
    if (cl->nhosts == MAX_HOSTS || nlen >= sizeof(cl->hosts[0].name))
        return -1;
    host_t *h = &cl->hosts[cl->nhosts];
    memset(h, 0, sizeof(*h));
    memcpy(h->name, name, nlen);
    snprintf(h->port, sizeof(h->port), "%s", port);
    return cl->nhosts++;
}

static int parse_hosts(cql_client_t *cl, char *err, size_t errlen)
{
    const char *p = cl->hosts_text;
    while (*p) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *colon = memrchr(p, ':', (size_t)(end - p));
        char port[8] = "9042";
        size_t nlen = colon ? (size_t)(colon - p) : (size_t)(end - p);
        if (colon && (size_t)(end - colon - 1) < sizeof(port) && end > colon + 1)
            snprintf(port, sizeof(port), "%.*s", (int)(end - colon - 1), colon + 1);
        if (nlen == 0 || add_host(cl, p, nlen, port) < 0) {
            snprintf(err, errlen, "bad CQL host list '%s'", cl->hosts_text);
            return NATTER_EINVAL;
        }
        p = comma ? comma + 1 : end;
    }
    return cl->nhosts > 0 ? NATTER_OK : NATTER_EINVAL;
}

static int ring_cmp(const void *a, const void *b)
{
    int64_t x = ((const ring_entry_t *)a)->token, y = ((const ring_entry_t *)b)->token;
    return x < y ? -1 : x > y;
}

/* Adds the tokens (a set<text> cell) of one host to the ring. */
static void ring_add(cql_client_t *cl, int host, cql_slice_t cell)
{
    cql_reader_t r;
    int32_t n;
    if (host < 0 || cql_decode_collection(cell, &r, &n) != NATTER_OK)
        return;
    for (int32_t i = 0; i < n; i++) {
        cql_slice_t t = cql_read_bytes(&r);
        char buf[32];
        if (r.err || t.len < 0 || (size_t)t.len >= sizeof(buf))
            return;
        memcpy(buf, t.p, t.len);
        buf[t.len] = '\0';
        cl->ring = xrealloc(cl->ring, (cl->nring + 1) * sizeof(*cl->ring));
        cl->ring[cl->nring++] = (ring_entry_t){strtoll(buf, NULL, 10), host};
    }
}

static void format_inet(cql_slice_t cell, char *dst, size_t len)
{
    dst[0] = '\0';
    if (cell.len == 4)
        snprintf(dst, len, "%u.%u.%u.%u", cell.p[0], cell.p[1], cell.p[2], cell.p[3]);
    else if (cell.len == 16)
        inet_ntop(AF_INET6, cell.p, dst, (socklen_t)len);
}

/* Reads the ring: this host's tokens, then every peer's, adding the peers
 * (at their rpc_address, on the contact point's port) as hosts. */
static int read_ring(cql_client_t *cl, char *err, size_t errlen)
{
    cql_result_t res;
    int rc = cql_client_query(cl, "SELECT tokens FROM system.local", NULL, &res, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.rows.rows_count == 1) {
        cql_slice_t cell;
        if (cql_rows_cell(&res.resp.rows, 0, 0, &cell) == NATTER_OK)
            ring_add(cl, 0, cell);
    }
    cql_result_free(&res);
    if ((rc = cql_client_query(cl, "SELECT rpc_address, tokens FROM system.peers", NULL, &res, err, errlen)) !=
        NATTER_OK)
        return rc;
    for (int32_t row = 0; row < res.resp.rows.rows_count; row++) {
        cql_slice_t addr, tokens;
        char name[64];
        if (cql_rows_cell(&res.resp.rows, row, 0, &addr) != NATTER_OK ||
            cql_rows_cell(&res.resp.rows, row, 1, &tokens) != NATTER_OK)
            continue;
        format_inet(addr, name, sizeof(name));
        pthread_mutex_lock(&cl->lock);
        int host = name[0] ? add_host(cl, name, strlen(name), cl->hosts[0].port) : -1;
        pthread_mutex_unlock(&cl->lock);
        ring_add(cl, host, tokens);
    }
    cql_result_free(&res);
    qsort(cl->ring, cl->nring, sizeof(*cl->ring), ring_cmp);
    return NATTER_OK;
}

/* The replica owning a token: the first ring token at or after it. */
static int ring_owner(cql_client_t *cl, int64_t token)
{
    if (token == CQL_NO_TOKEN || cl->nring == 0)
        return -1;
    size_t lo = 0, hi = cl->nring;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cl->ring[mid].token < token)
            lo = mid + 1;
        else
            hi = mid;
    }
    return cl->ring[lo == cl->nring ? 0 : lo].host;
}

/* ---- calls ---------------------------------------------------------------- */

static cql_call_t *call_new(cql_client_t *cl, int64_t token, int idempotent, cql_stmt_t *stmt)
{
    cql_call_t *call = xcalloc(1, sizeof(*call));
    pthread_mutex_init(&call->lock, NULL);
    pthread_cond_init(&call->cond, NULL);
    cql_buf_init(&call->request);
    call->client = cl;
    call->token = token;
    call->idempotent = idempotent;
    call->stmt = stmt;
    return call;
}

static void call_free(cql_call_t *call)
{
    if (call->conn)
        conn_release(call->conn);
    free(call->answer);
    cql_buf_free(&call->request);
    pthread_cond_destroy(&call->cond);
    pthread_mutex_destroy(&call->lock);
    free(call);
}

/* Sends the call's request on a connection to host (or any host when host
 * is -1, starting from the round robin). 0, or NATTER_EUNAVAIL. */
static int call_send(cql_call_t *call, int host)
{
    cql_client_t *cl = call->client;
    int n = cl->nhosts;
    unsigned start = host >= 0 ? (unsigned)host : atomic_fetch_add(&cl->rr, 1);
    for (int i = 0; i < n; i++) {
        conn_t *c = host_conn(cl, (int)((start + (unsigned)i) % (unsigned)n));
        if (c == NULL)
            continue;
        pthread_mutex_lock(&c->lock);
        if (!c->dead && c->nfree > 0) {
            int16_t s = c->free_streams[--c->nfree];
            c->slots[s] = call;
            call->request.data[2] = (uint8_t)(s >> 8);
            call->request.data[3] = (uint8_t)s;
            call->stream = s;
            call->done = 0;
            if (call->conn)
                conn_release(call->conn);
            call->conn = c;
            if (write_full(c->fd, call->request.data, call->request.len) == 0) {
                pthread_mutex_unlock(&c->lock);
                call->attempts++;
                return NATTER_OK;
            }
            c->slots[s] = NULL;
            c->free_streams[c->nfree++] = s;
            call->conn = NULL;
            pthread_mutex_unlock(&c->lock);
            conn_fail(c);
            conn_release(c); /* the reference call->conn held */
            continue;
        }
        pthread_mutex_unlock(&c->lock);
        conn_release(c);
    }
    return NATTER_EUNAVAIL;
}

/* Waits for the answer; on timeout the stream is left to the reader
 * (marked abandoned) and NATTER_ETIMEDOUT returned. */
static int call_await(cql_call_t *call)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    unsigned ms = call->client->cfg.timeout_ms;
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&call->lock);
    while (!call->done)
        if (pthread_cond_timedwait(&call->cond, &call->lock, &until) == ETIMEDOUT)
            break;
    int done = call->done;
    pthread_mutex_unlock(&call->lock);
    if (done)
        return call->status;
    conn_t *c = call->conn;
    pthread_mutex_lock(&c->lock);
    if (c->slots[call->stream] == call)
        c->slots[call->stream] = ABANDONED;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&call->lock); /* the reader may have completed it meanwhile */
    done = call->done;
    pthread_mutex_unlock(&call->lock);
    return done ? call->status : NATTER_ETIMEDOUT;
}

static int retryable(int32_t code)
{
    switch (code) {
    case 0x1000: /* Unavailable */
    case 0x1001: /* Overloaded */
    case 0x1002: /* Is_bootstrapping */
    case 0x1100: /* Write_timeout */
    case 0x1200: /* Read_timeout */
        return 1;
    default:
        return 0;
    }
}

static int prepare_on(cql_client_t *cl, cql_stmt_t *st, int host, char *err, size_t errlen);

int cql_call_wait(cql_call_t *call, cql_result_t *out, char *err, size_t errlen)
{
    if (call == NULL) {
        snprintf(err, errlen, "no CQL host reachable");
        return NATTER_EUNAVAIL;
    }
    if (call->attempts == 0) { /* submit could not send it anywhere */
        pthread_mutex_lock(&call->client->lock);
        snprintf(err, errlen, "no CQL host reachable (%s)", call->client->last_error);
        pthread_mutex_unlock(&call->client->lock);
        call_free(call);
        return NATTER_EUNAVAIL;
    }
    int rc;
    for (;;) {
        rc = call_await(call);
        if (rc == NATTER_OK) {
            cql_result_t res = {.frame = call->answer, .len = call->answer_len};
            call->answer = NULL;
            if (cql_response_parse(&res.resp, res.frame, res.len, err, errlen) != NATTER_OK) {
                free(res.frame);
                rc = NATTER_EIO;
                break;
            }
            if (res.resp.header.opcode != CQL_OP_ERROR) {
                if (out)
                    *out = res;
                else
                    cql_result_free(&res);
                break;
            }
            int32_t code = res.resp.error.code;
            snprintf(err, errlen, "%s: %.*s", cql_error_name(code), (int)res.resp.error.message.len,
                     (const char *)res.resp.error.message.p);
            cql_result_free(&res);
            rc = cql_error_to_natter(code);
            if (code == ERR_UNPREPARED && call->stmt != NULL && call->attempts < MAX_ATTEMPTS) {
                int host = call->conn->host;
                if (prepare_on(call->client, call->stmt, host, err, errlen) == NATTER_OK &&
                    call_send(call, host) == NATTER_OK)
                    continue;
                break;
            }
            if (!(call->idempotent && retryable(code)))
                break;
        } else if (!call->idempotent) {
            snprintf(err, errlen, "%s", rc == NATTER_ETIMEDOUT ? "CQL request timed out" : "CQL connection lost");
            break;
        }
        if (call->attempts >= MAX_ATTEMPTS) {
            snprintf(err, errlen, "CQL request failed after %d attempts", call->attempts);
            break;
        }
        usleep(50000u << call->attempts); /* 100, 200, 400 ms */
        if (call_send(call, -1) != NATTER_OK) {
            snprintf(err, errlen, "no CQL host reachable");
            rc = NATTER_EUNAVAIL;
            break;
        }
    }
    call_free(call);
    return rc;
}

/* Sends a new call; when no host takes it, the call still comes back (with
 * no attempt made) so that wait can say why. */
static cql_call_t *submit(cql_call_t *call)
{
    call_send(call, ring_owner(call->client, call->token));
    return call;
}

/* ---- statements --------------------------------------------------------- */

static int prepare_on(cql_client_t *cl, cql_stmt_t *st, int host, char *err, size_t errlen)
{
    cql_call_t *call = call_new(cl, CQL_NO_TOKEN, 0, NULL);
    cql_build_prepare(&call->request, 0, st->query);
    call_send(call, host); /* when it fails, wait says why */
    cql_result_t res;
    int rc = cql_call_wait(call, &res, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.kind != CQL_RESULT_PREPARED || res.resp.prepared.id.len < 0 ||
        (size_t)res.resp.prepared.id.len > sizeof(st->id)) {
        snprintf(err, errlen, "PREPARE did not answer Prepared");
        rc = NATTER_EIO;
    } else {
        memcpy(st->id, res.resp.prepared.id.p, res.resp.prepared.id.len);
        st->id_len = res.resp.prepared.id.len;
    }
    cql_result_free(&res);
    return rc;
}

int cql_client_prepare(cql_client_t *cl, const char *query, cql_stmt_t **out, char *err, size_t errlen)
{
    pthread_mutex_lock(&cl->lock);
    for (cql_stmt_t *st = cl->stmts; st != NULL; st = st->next)
        if (strcmp(st->query, query) == 0) {
            pthread_mutex_unlock(&cl->lock);
            *out = st;
            return NATTER_OK;
        }
    pthread_mutex_unlock(&cl->lock);
    cql_stmt_t *st = xcalloc(1, sizeof(*st));
    st->query = xstrdup(query);
    int rc = prepare_on(cl, st, -1, err, errlen);
    if (rc != NATTER_OK) {
        free(st->query);
        free(st);
        return rc;
    }
    pthread_mutex_lock(&cl->lock);
    st->next = cl->stmts;
    cl->stmts = st;
    pthread_mutex_unlock(&cl->lock);
    *out = st;
    return NATTER_OK;
}

int cql_client_query(cql_client_t *cl, const char *query, const cql_query_params_t *qp, cql_result_t *out,
                     char *err, size_t errlen)
{
    cql_query_params_t one = {.consistency = CQL_ONE};
    cql_call_t *call = call_new(cl, CQL_NO_TOKEN, 0, NULL);
    if (cql_build_query(&call->request, 0, query, qp ? qp : &one) != NATTER_OK) {
        call_free(call);
        snprintf(err, errlen, "query does not fit the protocol");
        return NATTER_EINVAL;
    }
    return cql_call_wait(submit(call), out, err, errlen);
}

cql_call_t *cql_client_execute(cql_client_t *cl, cql_stmt_t *st, const cql_query_params_t *qp, int64_t token,
                               int idempotent)
{
    cql_call_t *call = call_new(cl, token, idempotent, st);
    if (cql_build_execute(&call->request, 0, st->id, st->id_len, qp) != NATTER_OK) {
        call_free(call);
        return NULL;
    }
    return submit(call);
}

cql_call_t *cql_client_batch(cql_client_t *cl, const cql_batch_params_t *bp, cql_stmt_t *st,
                             const cql_value_t *values, size_t per_row, size_t nrows, int64_t token, int idempotent)
{
    cql_call_t *call = call_new(cl, token, idempotent, st);
    cql_batch_entry_t *entries = xcalloc(nrows, sizeof(*entries));
    for (size_t i = 0; i < nrows; i++)
        entries[i] = (cql_batch_entry_t){.id = st->id, .id_len = st->id_len, .values = values + i * per_row,
                                         .nvalues = per_row};
    int rc = cql_build_batch(&call->request, 0, bp, entries, nrows);
    free(entries);
    if (rc != NATTER_OK) {
        call_free(call);
        return NULL;
    }
    return submit(call);
}

void cql_result_free(cql_result_t *r)
{
    if (r->frame != NULL)
        cql_response_free(&r->resp);
    free(r->frame);
    r->frame = NULL;
}

/* ---- the client ------------------------------------------------------------ */

int cql_client_open(cql_client_t **out, const cql_client_config_t *cfg, char *err, size_t errlen)
{
    cql_client_t *cl = xcalloc(1, sizeof(*cl));
    cl->cfg = *cfg;
    if (cl->cfg.conns_per_host == 0 || cl->cfg.conns_per_host > MAX_CONNS)
        cl->cfg.conns_per_host = 2;
    if (cl->cfg.timeout_ms == 0)
        cl->cfg.timeout_ms = 5000;
    cl->hosts_text = xstrdup(cfg->hosts);
    cl->user = cfg->user && cfg->user[0] ? xstrdup(cfg->user) : NULL;
    cl->password = cfg->password ? xstrdup(cfg->password) : xstrdup("");
    pthread_mutex_init(&cl->lock, NULL);
    int rc = parse_hosts(cl, err, errlen);
    if (rc == NATTER_OK)
        rc = read_ring(cl, err, errlen);
    if (rc != NATTER_OK) {
        cql_client_close(cl);
        return rc == NATTER_EINVAL ? rc : NATTER_EUNAVAIL;
    }
    *out = cl;
    return NATTER_OK;
}

int cql_client_ping(cql_client_t *cl)
{
    char err[256];
    cql_result_t res;
    int rc = cql_client_query(cl, "SELECT key FROM system.local", NULL, &res, err, sizeof(err));
    if (rc == NATTER_OK)
        cql_result_free(&res);
    return rc;
}

void cql_client_close(cql_client_t *cl)
{
    if (cl == NULL)
        return;
    for (int i = 0; i < cl->nhosts; i++)
        for (int s = 0; s < MAX_CONNS; s++)
            if (cl->hosts[i].conns[s] != NULL)
                conn_retire(cl->hosts[i].conns[s]);
    while (cl->stmts != NULL) {
        cql_stmt_t *st = cl->stmts;
        cl->stmts = st->next;
        free(st->query);
        free(st);
    }
    free(cl->ring);
    free(cl->hosts_text);
    free(cl->user);
    free(cl->password);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}
