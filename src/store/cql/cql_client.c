/*
 * The CQL client's moving parts (see cql_client.h for what it promises).
 *
 * Map of this file:
 *   connections   connect + STARTUP (+ PasswordAuthenticator) with bounded
 *                 reads, the reader thread, stream ids, abandoned streams
 *   hosts         up/down, the pool of connections, the monitor thread
 *   the ring      system.local and system.peers of one node; a token's
 *                 hosts in ring order; read again on the cluster's events
 *   events        one connection REGISTERed for topology and status changes
 *   calls         send a frame on a stream, wait for its answer until its
 *                 deadline, give the stream up after it; retries, re-prepare
 *   statements    PREPARE on every host, the id under the statement's lock
 *   schema        agreement after DDL
 *
 * Locks, outermost first: client->lock (the host slots, up/down and
 * back-off, the statement list), conn->lock (socket writes, stream table),
 * call->lock (its completion). A thread holding one takes only later ones;
 * stmt->lock (its id) is taken alone. Nothing blocks under client->lock: no
 * connect and no join of a reader thread (a reader takes client->lock to
 * mark its host down as it ends).
 *
 * How the races between a reader and a waiter are closed: the reader
 * completes a call while it holds the connection's lock, and a waiter whose
 * deadline passed takes that lock to give its stream up (ABANDONED). So
 * either the slot still holds the call, and the waiter abandons it and the
 * reader will drop the late answer, or the call is complete: never a call
 * that the reader took out of its slot but has not completed yet, which the
 * waiter would free or send again while the reader writes into it.
 *
 * Lifetimes: a connection is reference-counted (its host slot, its reader
 * thread, and every call in flight on it each hold one), so a call that
 * timed out still finds the connection it was sent on. The host table
 * grows up to MAX_HOSTS: a slot is filled under client->lock and then
 * counted in nhosts (release), so a reader that loads nhosts (acquire) finds
 * whole slots; a slot's name, ip and port are read under client->lock
 * only, since once the table is full the slot of a host gone from the ring
 * takes the next new one (reusable_slot). The ring is immutable once
 * published: the monitor thread alone builds a new one (when an event says
 * the cluster changed, when its events connection opens, and every
 * REFRESH_PERIOD_NS), publishes it by an atomic pointer and keeps the ones
 * it replaced until close (one per change of the cluster, so few), since a
 * router may still be reading one.
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
#define MAX_ABANDONED (MAX_STREAMS / 2)
#define MAX_ATTEMPTS 4
#define MAX_REPLICAS 8 /* distinct hosts kept per ring position, in ring order */
#define BACKOFF_MIN_NS 100000000ull
#define BACKOFF_MAX_NS 2000000000ull
#define MONITOR_PERIOD_MS 100
#define SCHEMA_POLL_US 200000u
#define REFRESH_PERIOD_NS 60000000000ull /* the ring is read again this often even without events */
#define EVENTS_RETRY_NS 1000000000ull    /* after no host took the events connection */
#define EVENT_DELAY_NS 1000000000ull     /* an event's ring read waits this long, for the news to reach
                                          * system.peers and the events that come with it */
#define ERR_UNPREPARED 0x2500

typedef struct conn conn_t;
struct cql_call {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    int done;
    int status;          /* transport status: 0, or NATTER_EUNAVAIL */
    uint8_t *answer;     /* the response frame */
    size_t answer_len;
    /* what is needed to send it again */
    cql_client_t *client;
    cql_buf_t request;
    cql_stmt_t *stmt;     /* EXECUTE and BATCH: for re-prepare */
    int64_t token;
    int idempotent;
    int internal; /* the client's own read of the ring or the schema: not in the host's counters */
    int attempts;
    int full; /* the last send found every stream of the connections it tried in use */
    int only; /* the host that send was for, or -1: any */
    uint64_t deadline_ns; /* of the attempt in flight */
    conn_t *conn;         /* sent on (holds a reference) */
    int16_t stream;
};

#define ABANDONED ((cql_call_t *)1)

struct conn {
    atomic_int refs;
    atomic_int dead;
    int fd;
    int host;
    unsigned host_gen;    /* the host slot's gen when opened: a slot given to another node since is not its */
    pthread_mutex_t lock;
    int retired;          /* ended by this client, not by the server: its host stays up */
    int events;           /* the events connection: its end says nothing of its host */
    cql_call_t *slots[MAX_STREAMS];
    int16_t free_streams[MAX_STREAMS];
    int nfree;
    int nabandoned;       /* slots holding ABANDONED */
    uint64_t quiet_ns;    /* the first abandonment since the last frame received; 0: none */
    pthread_t reader;
    cql_client_t *client;
};

typedef struct host {
    char name[256]; /* name, ip and port: under client->lock once the client is open */
    char ip[64]; /* its address as the cluster gives it (system.local), to know it in system.peers;
                  * "" while unknown; under client->lock once the client is open */
    char port[8];
    conn_t *conns[MAX_CONNS];
    unsigned next;         /* round robin over the slots */
    int connecting;        /* a thread is opening a connection to it */
    unsigned listed;       /* the last ring read (read_gen) that listed it */
    unsigned gen;          /* bumped when the slot is given to another node */
    uint64_t retry_after_ns, backoff_ns; /* while down */
    atomic_int up;
    atomic_uint_least64_t requests, errors, reprepares;
} host_t;

typedef struct ring_entry {
    int64_t token;
    int host;
} ring_entry_t;

typedef struct ring {
    ring_entry_t *entries; /* by token */
    size_t n;
    int *replicas; /* n rows of nreplicas hosts: ring order from each position */
    int nreplicas;
    int nmembers;              /* hosts owning tokens */
    uint8_t member[MAX_HOSTS]; /* 1: the host owns tokens of this ring */
    struct ring *older;        /* the ring this one replaced (freed at close) */
} ring_t;

struct cql_stmt {
    cql_stmt_t *next;
    char *query;
    pthread_mutex_t lock; /* id: a re-prepare may replace it while requests are built */
    uint8_t id[64];
    size_t id_len;
};

struct cql_client {
    cql_client_config_t cfg;
    char *hosts_text, *user, *password;
    pthread_mutex_t lock;
    host_t hosts[MAX_HOSTS];
    atomic_int nhosts;
    int ncontacts;
    _Atomic(ring_t *) ring;
    cql_stmt_t *stmts;
    atomic_uint rr;
    char last_error[256]; /* why the last connect failed; under lock */
    pthread_t monitor;
    pthread_cond_t monitor_cond; /* on CLOCK_MONOTONIC */
    int monitor_started, stopping;
    int refresh_wanted; /* an event came: read the ring again; under lock */
    int table_full_told; /* said that a host was left out, since a slot was last reused; under lock */
    unsigned read_gen;   /* ring reads begun; under lock */
    /* what add_host has to say, said by read_ring once the lock is let go; under lock */
    int nreused;
    char reused_note[300], left_out_note[300];
    /* the monitor thread's alone (and close's, after it joined the monitor) */
    conn_t *events_conn; /* REGISTERed for TOPOLOGY_CHANGE and STATUS_CHANGE */
    int events_host;
    uint64_t events_retry_ns, refresh_due_ns;
    atomic_uint_least64_t events, ring_changes, ring_reads;
};

/* Whether the ring routes to host: a ring read with no tokens (a node not
 * yet in the ring knows none) routes to every host. */
static int in_ring(const ring_t *r, int host)
{
    return r == NULL || r->n == 0 || r->member[host];
}

static void host_down(cql_client_t *cl, int host, unsigned gen, const char *why);
static void on_event(cql_client_t *cl, const uint8_t *frame, size_t len);

/* ---- connections -------------------------------------------------------- */

static void conn_release(conn_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        close(c->fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

/* Completes a call; the caller holds the lock of the connection it was on. */
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
    if (!atomic_load(&c->dead)) {
        atomic_store(&c->dead, 1);
        shutdown(c->fd, SHUT_RDWR);
        for (int s = 0; s < MAX_STREAMS; s++) {
            cql_call_t *call = c->slots[s];
            c->slots[s] = NULL;
            if (call != NULL && call != ABANDONED)
                call_complete(call, NATTER_EUNAVAIL, NULL, 0);
        }
        c->nabandoned = 0;
    }
    pthread_mutex_unlock(&c->lock);
}

enum { CONN_OK, CONN_TOO_MANY_ABANDONED, CONN_SILENT };

/* Whether a live connection should be closed; the caller holds its lock.
 * Silent: a request timed out, and nothing at all came back for another
 * timeout after that (now may be older than quiet_ns). */
static int conn_check(const conn_t *c, uint64_t now, unsigned timeout_ms)
{
    if (c->nabandoned >= MAX_ABANDONED)
        return CONN_TOO_MANY_ABANDONED;
    if (c->nabandoned > 0 && c->quiet_ns != 0 && now > c->quiet_ns &&
        now - c->quiet_ns > (uint64_t)timeout_ms * 1000000u)
        return CONN_SILENT;
    return CONN_OK;
}

/* Closes a connection conn_check condemned: a silent one takes its host
 * down with it (through its reader); one that is only full of abandoned
 * streams is replaced on next use. */
static void conn_condemn(conn_t *c, int why)
{
    pthread_mutex_lock(&c->lock);
    c->retired = why == CONN_TOO_MANY_ABANDONED;
    pthread_mutex_unlock(&c->lock);
    conn_fail(c);
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

/* One frame off the socket: 0 with *frame (owned) and its header, or -1. */
static int read_frame(int fd, uint8_t **frame, size_t *len, cql_header_t *h, char *err, size_t errlen)
{
    uint8_t head[CQL_HEADER_LEN];
    size_t need;
    if (read_full(fd, head, sizeof(head)) != 0 || cql_frame_peek(head, sizeof(head), h, &need, err, errlen) < 0)
        return -1;
    *len = CQL_HEADER_LEN + h->length;
    *frame = xmalloc(*len);
    memcpy(*frame, head, sizeof(head));
    if (read_full(fd, *frame + CQL_HEADER_LEN, h->length) != 0) {
        free(*frame);
        return -1;
    }
    return 0;
}

static void *reader_main(void *arg)
{
    conn_t *c = arg;
    char err[128];
    uint8_t *frame;
    size_t total;
    cql_header_t h;
    while (read_frame(c->fd, &frame, &total, &h, err, sizeof(err)) == 0) {
        pthread_mutex_lock(&c->lock);
        c->quiet_ns = 0;
        cql_call_t *call = h.stream >= 0 && h.stream < MAX_STREAMS ? c->slots[h.stream] : NULL;
        if (call != NULL) {
            c->slots[h.stream] = NULL;
            c->free_streams[c->nfree++] = h.stream;
            if (call == ABANDONED)
                c->nabandoned--;
            else
                call_complete(call, NATTER_OK, frame, total);
        }
        pthread_mutex_unlock(&c->lock);
        if (call == NULL && h.stream == -1 && h.opcode == CQL_OP_EVENT)
            on_event(c->client, frame, total);
        if (call == NULL || call == ABANDONED) /* an event, or an answer nobody waits for */
            free(frame);
    }
    conn_fail(c);
    pthread_mutex_lock(&c->lock);
    int ours = c->retired || c->events;
    pthread_mutex_unlock(&c->lock);
    if (!ours)
        host_down(c->client, c->host, c->host_gen, "connection lost");
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
 * (the handshake); the socket's receive timeout bounds the wait. */
static int handshake_call(int fd, cql_buf_t *req, cql_result_t *out, char *err, size_t errlen)
{
    cql_header_t h;
    if (write_full(fd, req->data, req->len) != 0 || read_frame(fd, &out->frame, &out->len, &h, err, errlen) != 0) {
        out->frame = NULL;
        snprintf(err, errlen, "handshake: no answer");
        return NATTER_EUNAVAIL;
    }
    if (cql_response_parse(&out->resp, out->frame, out->len, err, errlen) != NATTER_OK) {
        free(out->frame);
        out->frame = NULL;
        return NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

static void set_timeouts(int fd, unsigned send_ms, unsigned recv_ms)
{
    struct timeval snd = {(time_t)(send_ms / 1000), (suseconds_t)(send_ms % 1000) * 1000};
    struct timeval rcv = {(time_t)(recv_ms / 1000), (suseconds_t)(recv_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
}

/* A connected socket to one address, or -1 with errno set. */
static int connect_addr(const struct addrinfo *ai, unsigned timeout_ms)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
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
    if (rc != 0 && fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        fd = -1;
    }
    return fd;
}

/* Connects to name:port, trying each of its addresses in turn (a name like
 * localhost may give ::1 first to a node that listens on 127.0.0.1 only). */
static int connect_to(const char *name, const char *port, unsigned timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int gai = getaddrinfo(name, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "%s:%s: %s", name, port, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_addr(ai, timeout_ms);
    int saved = errno;
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "%s:%s: %s", name, port, strerror(saved));
        return -1;
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    /* blocking from here on: writers block in send (bounded by the send
     * timeout), the handshake in read (bounded by the receive timeout, which
     * is lifted for the reader thread: shutdown() wakes it) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    set_timeouts(fd, timeout_ms, timeout_ms);
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

/* TCP keep-alive probes after 30 s of silence, every 10 s, three unanswered
 * ending the connection. */
static void keepalive(int fd)
{
    int on = 1, idle = 30, intvl = 10, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* REGISTER for the cluster's topology and status changes, on a connection
 * that has no reader thread yet. */
static int register_events(int fd, char *err, size_t errlen)
{
    static const char *const events[] = {"TOPOLOGY_CHANGE", "STATUS_CHANGE"};
    cql_buf_t req;
    cql_result_t res = {0};
    cql_buf_init(&req);
    cql_build_register(&req, 0, events, 2);
    int rc = handshake_call(fd, &req, &res, err, errlen);
    if (rc == NATTER_OK && res.resp.header.opcode != CQL_OP_READY) {
        snprintf(err, errlen, "unexpected answer to REGISTER: %s", cql_opcode_name(res.resp.header.opcode));
        rc = NATTER_EUNAVAIL;
    }
    cql_result_free(&res);
    cql_buf_free(&req);
    return rc;
}

/* A connection to host, with its reader thread; REGISTERed for events when
 * events is set (then it carries no requests). */
static conn_t *conn_open(cql_client_t *cl, int host, int events, char *err, size_t errlen)
{
    char name[sizeof(cl->hosts[0].name)], port[sizeof(cl->hosts[0].port)];
    pthread_mutex_lock(&cl->lock);
    memcpy(name, cl->hosts[host].name, sizeof(name));
    memcpy(port, cl->hosts[host].port, sizeof(port));
    unsigned gen = cl->hosts[host].gen;
    pthread_mutex_unlock(&cl->lock);
    int fd = connect_to(name, port, cl->cfg.timeout_ms, err, errlen);
    if (fd < 0)
        return NULL;
    if (handshake(cl, fd, err, errlen) != NATTER_OK || (events && register_events(fd, err, errlen) != NATTER_OK)) {
        close(fd);
        return NULL;
    }
    set_timeouts(fd, cl->cfg.timeout_ms, 0);
    keepalive(fd); /* an idle connection (the events one always is) learns from the kernel that its peer is gone */
    conn_t *c = xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->host = host;
    c->host_gen = gen;
    c->events = events;
    c->client = cl;
    pthread_mutex_init(&c->lock, NULL);
    for (int s = MAX_STREAMS - 1; s >= 0; s--)
        c->free_streams[c->nfree++] = (int16_t)s;
    atomic_store(&c->refs, 2); /* the host slot and the reader */
    pthread_create(&c->reader, NULL, reader_main, c);
    return c;
}

/* Ends a connection taken out of its host slot: fails its calls, waits for
 * its reader, drops the slot's reference. Never under client->lock. */
static void conn_retire(conn_t *c)
{
    pthread_mutex_lock(&c->lock);
    if (!atomic_load(&c->dead))
        c->retired = 1;
    pthread_mutex_unlock(&c->lock);
    conn_fail(c);
    pthread_join(c->reader, NULL);
    conn_release(c);
}

/* ---- hosts ---------------------------------------------------------------- */

/* The caller holds client->lock. */
static void host_down_locked(cql_client_t *cl, int host, const char *why)
{
    host_t *h = &cl->hosts[host];
    if (atomic_exchange(&h->up, 0)) {
        h->backoff_ns = BACKOFF_MIN_NS;
        h->retry_after_ns = natter_mono_ns() + h->backoff_ns;
    }
    snprintf(cl->last_error, sizeof(cl->last_error), "%s:%s: %s", h->name, h->port, why);
}

/* Marks the host down, unless its slot went to another node (gen) since
 * the connection that says so was opened. */
static void host_down(cql_client_t *cl, int host, unsigned gen, const char *why)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->hosts[host].gen == gen)
        host_down_locked(cl, host, why);
    pthread_mutex_unlock(&cl->lock);
}

/* Puts a fresh connection of host into an empty slot; the caller holds
 * client->lock. Returns the connection now in that slot, or NULL (and the
 * fresh one is for the caller to retire) when every slot is taken. */
static conn_t *host_install(host_t *h, unsigned conns_per_host, unsigned prefer, conn_t *fresh)
{
    for (unsigned i = 0; i < conns_per_host; i++) {
        unsigned slot = (prefer + i) % conns_per_host;
        if (h->conns[slot] == NULL) {
            h->conns[slot] = fresh;
            return fresh;
        }
    }
    return NULL;
}

/* A live connection to an up host, with a reference for the caller; NULL
 * when the host is down or cannot be reached. An empty or dead slot of an up
 * host is filled here (the first use of a peer, a connection the server
 * closed); a failed connect marks the host down, and from then on only the
 * monitor tries it. */
static conn_t *host_conn(cql_client_t *cl, int host)
{
    char err[256];
    host_t *h = &cl->hosts[host];
    conn_t *c, *old = NULL;
    if (!atomic_load(&h->up))
        return NULL;
    pthread_mutex_lock(&cl->lock);
    unsigned slot = h->next++ % cl->cfg.conns_per_host;
    c = h->conns[slot];
    if (c != NULL && atomic_load(&c->dead)) {
        old = c;
        h->conns[slot] = c = NULL;
    }
    for (unsigned i = 1; c == NULL && h->connecting && i < cl->cfg.conns_per_host; i++) {
        conn_t *other = h->conns[(slot + i) % cl->cfg.conns_per_host]; /* one connect at a time per host */
        if (other != NULL && !atomic_load(&other->dead))
            c = other;
    }
    int connect_here = c == NULL && !h->connecting;
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    else if (connect_here)
        h->connecting = 1;
    pthread_mutex_unlock(&cl->lock);
    if (old != NULL)
        conn_retire(old);
    if (!connect_here)
        return c;
    /* connecting takes time: not under the client's lock */
    conn_t *fresh = conn_open(cl, host, 0, err, sizeof(err));
    pthread_mutex_lock(&cl->lock);
    h->connecting = 0; /* the slot was not given to another node while this was set */
    c = fresh != NULL ? host_install(h, cl->cfg.conns_per_host, slot, fresh) : NULL;
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    if (fresh == NULL)
        host_down_locked(cl, host, err);
    pthread_mutex_unlock(&cl->lock);
    if (fresh != NULL && c == NULL)
        conn_retire(fresh);
    return c;
}

/* One round of the monitor: reaps dead connections, closes silent ones
 * and those of hosts that left the ring, and reconnects hosts that are down
 * once their back-off has passed. */
static void monitor_round(cql_client_t *cl)
{
    enum { MAXC = MAX_HOSTS * MAX_CONNS };
    conn_t *live[MAXC], *dead[MAXC];
    int nlive = 0, ndead = 0, retry[MAX_HOSTS], nretry = 0;
    uint64_t now = natter_mono_ns();
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    pthread_mutex_lock(&cl->lock);
    int nhosts = atomic_load_explicit(&cl->nhosts, memory_order_relaxed);
    for (int i = 0; i < nhosts; i++) {
        host_t *h = &cl->hosts[i];
        int member = in_ring(r, i);
        for (unsigned s = 0; s < MAX_CONNS; s++) {
            conn_t *c = h->conns[s];
            if (c == NULL)
                continue;
            if (atomic_load(&c->dead) || !member) {
                dead[ndead++] = c;
                h->conns[s] = NULL;
            } else {
                atomic_fetch_add(&c->refs, 1);
                live[nlive++] = c;
            }
        }
        if (member && !atomic_load(&h->up) && !h->connecting && now >= h->retry_after_ns) {
            h->connecting = 1;
            retry[nretry++] = i;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    for (int i = 0; i < ndead; i++)
        conn_retire(dead[i]);
    for (int i = 0; i < nlive; i++) {
        pthread_mutex_lock(&live[i]->lock);
        int verdict = atomic_load(&live[i]->dead) ? CONN_OK : conn_check(live[i], now, cl->cfg.timeout_ms);
        pthread_mutex_unlock(&live[i]->lock);
        if (verdict != CONN_OK)
            conn_condemn(live[i], verdict);
        conn_release(live[i]);
    }
    for (int i = 0; i < nretry; i++) {
        char err[256];
        host_t *h = &cl->hosts[retry[i]];
        conn_t *fresh = conn_open(cl, retry[i], 0, err, sizeof(err)), *spare = NULL;
        pthread_mutex_lock(&cl->lock);
        h->connecting = 0;
        if (fresh != NULL) {
            if (host_install(h, cl->cfg.conns_per_host, 0, fresh) == NULL)
                spare = fresh;
            h->backoff_ns = 0;
            atomic_store(&h->up, 1);
        } else {
            h->backoff_ns = h->backoff_ns * 2 < BACKOFF_MAX_NS ? h->backoff_ns * 2 : BACKOFF_MAX_NS;
            h->retry_after_ns = natter_mono_ns() + h->backoff_ns;
            snprintf(cl->last_error, sizeof(cl->last_error), "%s", err);
        }
        pthread_mutex_unlock(&cl->lock);
        if (spare != NULL)
            conn_retire(spare);
    }
}

static void events_round(cql_client_t *cl, int wanted);

static void *monitor_main(void *arg)
{
    cql_client_t *cl = arg;
    pthread_mutex_lock(&cl->lock);
    while (!cl->stopping) {
        struct timespec until;
        natter_mono_deadline(&until, MONITOR_PERIOD_MS);
        if (!cl->refresh_wanted)
            pthread_cond_timedwait(&cl->monitor_cond, &cl->lock, &until);
        if (cl->stopping)
            break;
        int wanted = cl->refresh_wanted;
        cl->refresh_wanted = 0;
        pthread_mutex_unlock(&cl->lock);
        monitor_round(cl);
        events_round(cl, wanted);
        pthread_mutex_lock(&cl->lock);
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

/* The first address a contact point's name resolves to, as text ("" when
 * it does not): its ip until the node says otherwise (read_ring). */
static void resolve_ip(const char *name, char *out, size_t len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    out[0] = '\0';
    if (getaddrinfo(name, NULL, &hints, &res) != 0)
        return;
    const void *a = res->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                                              : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    if (inet_ntop(res->ai_family, a, out, (socklen_t)len) == NULL)
        out[0] = '\0';
    freeaddrinfo(res);
}

/* When the table is full, the slot a new host may take: that of a host
 * out of the ring routed by, with no connection and none being made, not a
 * contact point (they are how the cluster is found again) nor the events
 * connection's, and not listed by the ring read under way; -1 when there is
 * none. Under client->lock. A router still on an older ring may send what
 * that ring gave the old host to the new one, and a late answer on one of
 * the old host's connections counts its error on the new one: any node
 * coordinates any request, so that costs a hop or a stray count, not an
 * answer. Whether an old connection's end marks the host down is told by
 * the slot's gen. */
static int reusable_slot(cql_client_t *cl, int n)
{
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    for (int i = cl->ncontacts; i < n; i++) {
        const host_t *h = &cl->hosts[i];
        int idle = !in_ring(r, i) && !h->connecting && i != cl->events_host && h->listed != cl->read_gen;
        for (unsigned s = 0; s < MAX_CONNS && idle; s++)
            idle = h->conns[s] == NULL;
        if (idle)
            return i;
    }
    return -1;
}

/* The host of that name and port, added when new; -1 when the table is
 * full of hosts still in use. Under client->lock once the client is open. A
 * peer is named by its address, which is then its ip; a contact point's ip
 * is what its name resolves to at open, then what the node says of itself
 * when the ring is read from it. */
static int add_host(cql_client_t *cl, const char *name, size_t nlen, const char *port)
{
    int n = atomic_load_explicit(&cl->nhosts, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (strlen(cl->hosts[i].name) == nlen && strncmp(cl->hosts[i].name, name, nlen) == 0 &&
            strcmp(cl->hosts[i].port, port) == 0) {
            cl->hosts[i].listed = cl->read_gen;
            return i;
        }
    if (nlen >= sizeof(cl->hosts[0].name))
        return -1;
    int slot = n < MAX_HOSTS ? n : reusable_slot(cl, n);
    if (slot < 0) {
        if (!cl->table_full_told) {
            cl->table_full_told = 1;
            snprintf(cl->left_out_note, sizeof(cl->left_out_note),
                     "%.*s:%s left out: the client knows %d hosts at most, all still in use", (int)nlen, name, port,
                     MAX_HOSTS);
        }
        return -1;
    }
    host_t *h = &cl->hosts[slot];
    if (slot == n) {
        memset(h, 0, sizeof(*h));
    } else {
        cl->table_full_told = 0; /* the table may fill up again: say so then */
        if (cl->nreused++ == 0)
            snprintf(cl->reused_note, sizeof(cl->reused_note), "%.*s:%s takes the place of %s:%s", (int)nlen, name,
                     port, h->name, h->port);
        h->gen++;
        h->next = 0;
        h->backoff_ns = h->retry_after_ns = 0;
        atomic_store_explicit(&h->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&h->errors, 0, memory_order_relaxed);
        atomic_store_explicit(&h->reprepares, 0, memory_order_relaxed);
    }
    memcpy(h->name, name, nlen);
    h->name[nlen] = '\0';
    h->ip[0] = '\0';
    snprintf(h->port, sizeof(h->port), "%s", port);
    h->listed = cl->read_gen;
    atomic_store(&h->up, 1); /* until a connect says otherwise */
    if (slot == n)
        atomic_store_explicit(&cl->nhosts, n + 1, memory_order_release);
    return slot;
}

static int parse_hosts(cql_client_t *cl, char *err, size_t errlen)
{
    const char *p = cl->hosts_text;
    while (*p) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p), *name = p;
        const char *bracket = *p == '[' ? memchr(p, ']', (size_t)(end - p)) : NULL; /* [IPv6]:port */
        const char *colon = bracket ? (bracket + 1 < end && bracket[1] == ':' ? bracket + 1 : NULL)
                                    : memrchr(p, ':', (size_t)(end - p));
        char port[8] = "9042";
        size_t nlen = colon ? (size_t)(colon - p) : (size_t)(end - p);
        if (bracket) {
            name = p + 1;
            nlen = (size_t)(bracket - name);
        }
        if (colon && (size_t)(end - colon - 1) < sizeof(port) && end > colon + 1)
            snprintf(port, sizeof(port), "%.*s", (int)(end - colon - 1), colon + 1);
        int bad = nlen == 0 || (*p == '[' && (bracket == NULL || (bracket + 1 < end && colon == NULL)));
        int host = bad ? -1 : add_host(cl, name, nlen, port);
        if (host < 0) {
            snprintf(err, errlen, "bad CQL host list '%s'", cl->hosts_text);
            return NATTER_EINVAL;
        }
        resolve_ip(cl->hosts[host].name, cl->hosts[host].ip, sizeof(cl->hosts[host].ip));
        p = comma ? comma + 1 : end;
    }
    cl->ncontacts = atomic_load(&cl->nhosts);
    return cl->ncontacts > 0 ? NATTER_OK : NATTER_EINVAL;
}

size_t cql_client_hosts(cql_client_t *cl, cql_host_stats_t *out, size_t max)
{
    pthread_mutex_lock(&cl->lock);
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    int n = atomic_load_explicit(&cl->nhosts, memory_order_acquire);
    for (int i = 0; i < n && (size_t)i < max; i++) {
        host_t *h = &cl->hosts[i];
        snprintf(out[i].address, sizeof(out[i].address), "%s:%s", h->name, h->port);
        out[i].in_ring = in_ring(r, i);
        out[i].up = atomic_load(&h->up);
        out[i].requests = atomic_load_explicit(&h->requests, memory_order_relaxed);
        out[i].errors = atomic_load_explicit(&h->errors, memory_order_relaxed);
        out[i].reprepares = atomic_load_explicit(&h->reprepares, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cl->lock);
    return (size_t)n;
}

void cql_client_stats(cql_client_t *cl, cql_client_stats_t *out)
{
    out->events = atomic_load_explicit(&cl->events, memory_order_relaxed);
    out->ring_changes = atomic_load_explicit(&cl->ring_changes, memory_order_relaxed);
    out->ring_reads = atomic_load_explicit(&cl->ring_reads, memory_order_acquire);
}

/* ---- calls ---------------------------------------------------------------- */

static cql_call_t *call_new(cql_client_t *cl, int64_t token, int idempotent, cql_stmt_t *stmt)
{
    cql_call_t *call = xcalloc(1, sizeof(*call));
    pthread_mutex_init(&call->lock, NULL);
    natter_mono_cond_init(&call->cond);
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

/* send_to's answer when the connection is up but has no free stream. */
#define SEND_FULL 1

/* Sends the call on a connection to host: 0, NATTER_EUNAVAIL, or SEND_FULL
 * (every stream of that connection in use). */
static int send_to(cql_call_t *call, int host)
{
    cql_client_t *cl = call->client;
    conn_t *c = host_conn(cl, host);
    if (c == NULL)
        return NATTER_EUNAVAIL;
    pthread_mutex_lock(&c->lock);
    uint64_t now = natter_mono_ns();
    int verdict = atomic_load(&c->dead) ? CONN_OK : conn_check(c, now, cl->cfg.timeout_ms);
    int full = verdict == CONN_OK && !atomic_load(&c->dead) && c->nfree == 0;
    if (!atomic_load(&c->dead) && verdict == CONN_OK && c->nfree > 0) {
        int16_t s = c->free_streams[--c->nfree];
        c->slots[s] = call;
        call->request.data[2] = (uint8_t)(s >> 8);
        call->request.data[3] = (uint8_t)s;
        call->stream = s;
        call->done = 0;
        call->deadline_ns = now + (uint64_t)cl->cfg.timeout_ms * 1000000u;
        conn_t *previous = call->conn;
        call->conn = c; /* the reference host_conn gave */
        if (write_full(c->fd, call->request.data, call->request.len) == 0) {
            pthread_mutex_unlock(&c->lock);
            if (previous != NULL)
                conn_release(previous);
            call->attempts++;
            if (!call->internal)
                atomic_fetch_add_explicit(&cl->hosts[host].requests, 1, memory_order_relaxed);
            return NATTER_OK;
        }
        c->slots[s] = NULL;
        c->free_streams[c->nfree++] = s;
        call->conn = previous;
        verdict = CONN_SILENT; /* a socket that takes no more: the host is in trouble */
    }
    pthread_mutex_unlock(&c->lock);
    if (verdict != CONN_OK)
        conn_condemn(c, verdict);
    conn_release(c);
    return full ? SEND_FULL : NATTER_EUNAVAIL;
}

/* Sends the call on one of host's connections: the next in turn, or the
 * others when its streams are all in use. */
static int send_host(cql_call_t *call, int host)
{
    int rc = SEND_FULL;
    for (unsigned i = 0; i < call->client->cfg.conns_per_host && rc == SEND_FULL; i++)
        rc = send_to(call, host);
    call->full |= rc == SEND_FULL;
    return rc == NATTER_OK ? NATTER_OK : NATTER_EUNAVAIL;
}

/* The hosts to try for a token, best first: its replicas in ring order,
 * then every other host of the ring from the round robin. Returns how many. */
static int route(cql_client_t *cl, int64_t token, int *order)
{
    int n = 0;
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    int nhosts = atomic_load_explicit(&cl->nhosts, memory_order_acquire); /* at least the ring's hosts */
    if (token != CQL_NO_TOKEN && r != NULL && r->n > 0) {
        size_t lo = 0, hi = r->n; /* the first ring token at or after token owns it */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (r->entries[mid].token < token)
                lo = mid + 1;
            else
                hi = mid;
        }
        const int *reps = r->replicas + (lo == r->n ? 0 : lo) * (size_t)r->nreplicas;
        for (int i = 0; i < r->nreplicas; i++)
            order[n++] = reps[i];
    }
    unsigned start = atomic_fetch_add(&cl->rr, 1);
    for (int i = 0; i < nhosts; i++) {
        int host = (int)((start + (unsigned)i) % (unsigned)nhosts), seen = !in_ring(r, host);
        for (int j = 0; j < n && !seen; j++)
            seen = order[j] == host;
        if (!seen)
            order[n++] = host;
    }
    return n;
}

/* Sends the call to host `only`, or (only < 0) to the first host in
 * routing order that takes it. 0, or NATTER_EUNAVAIL. */
static int call_send(cql_call_t *call, int only)
{
    int order[MAX_HOSTS];
    call->full = 0;
    call->only = only;
    if (only >= 0)
        return send_host(call, only);
    int n = route(call->client, call->token, order);
    for (int i = 0; i < n; i++)
        if (send_host(call, order[i]) == NATTER_OK)
            return NATTER_OK;
    return NATTER_EUNAVAIL;
}

/* A call no host took because the streams of every connection it tried
 * were in use (more calls in flight than the pool carries): it waits for
 * one to be answered, polling each millisecond, for at most the timeout.
 * 0 once sent, else NATTER_EUNAVAIL. */
static int call_send_when_free(cql_call_t *call, int only)
{
    uint64_t until = natter_mono_ns() + (uint64_t)call->client->cfg.timeout_ms * 1000000u;
    while (call->full && natter_mono_ns() < until) {
        usleep(1000);
        if (call_send(call, only) == NATTER_OK)
            return NATTER_OK;
    }
    return NATTER_EUNAVAIL;
}

/* Waits for the answer until the attempt's deadline; then gives the stream
 * up (the reader drops the late answer) and returns NATTER_ETIMEDOUT. */
static int call_await(cql_call_t *call)
{
    struct timespec until = natter_mono_timespec(call->deadline_ns);
    pthread_mutex_lock(&call->lock);
    while (!call->done)
        if (pthread_cond_timedwait(&call->cond, &call->lock, &until) == ETIMEDOUT)
            break;
    int done = call->done, status = call->status;
    pthread_mutex_unlock(&call->lock);
    if (done)
        return status;
    conn_t *c = call->conn;
    int abandoned = 0;
    pthread_mutex_lock(&c->lock);
    if (c->slots[call->stream] == call) {
        c->slots[call->stream] = ABANDONED;
        c->nabandoned++;
        if (c->quiet_ns == 0)
            c->quiet_ns = natter_mono_ns();
        abandoned = 1;
    }
    pthread_mutex_unlock(&c->lock);
    if (abandoned)
        return NATTER_ETIMEDOUT;
    /* not in its slot any more: completed, under c->lock, before we took it */
    pthread_mutex_lock(&call->lock);
    status = call->status;
    pthread_mutex_unlock(&call->lock);
    return status;
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

static void count_error(const cql_call_t *call, host_t *h)
{
    if (!call->internal)
        atomic_fetch_add_explicit(&h->errors, 1, memory_order_relaxed);
}

/* Waits for the call, retrying and re-preparing as the header says, and
 * frees it. *served (when not NULL) is the host of the last attempt, or -1. */
static int call_finish(cql_call_t *call, cql_result_t *out, char *err, size_t errlen, int *served)
{
    cql_client_t *cl = call->client;
    if (served)
        *served = -1;
    if (call->attempts == 0 && call->full && call_send_when_free(call, call->only) != NATTER_OK && call->full) {
        snprintf(err, errlen, "every CQL stream in use for %u ms", cl->cfg.timeout_ms);
        call_free(call);
        return NATTER_ETIMEDOUT;
    }
    if (call->attempts == 0) { /* no host took it */
        pthread_mutex_lock(&cl->lock);
        snprintf(err, errlen, "no CQL host reachable (%s)", cl->last_error[0] ? cl->last_error : "every host is down");
        pthread_mutex_unlock(&cl->lock);
        call_free(call);
        return NATTER_EUNAVAIL;
    }
    int rc;
    for (;;) {
        rc = call_await(call);
        int host = call->conn->host;
        host_t *h = &cl->hosts[host];
        if (served)
            *served = host;
        if (rc == NATTER_OK) {
            cql_result_t res = {.frame = call->answer, .len = call->answer_len};
            call->answer = NULL;
            if (cql_response_parse(&res.resp, res.frame, res.len, err, errlen) != NATTER_OK) {
                free(res.frame);
                count_error(call, h);
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
                atomic_fetch_add_explicit(&h->reprepares, 1, memory_order_relaxed);
                int prc = prepare_on(cl, call->stmt, host, err, errlen);
                if (prc == NATTER_OK && call_send(call, host) == NATTER_OK)
                    continue;
                rc = prc == NATTER_OK || prc == NATTER_EIO ? NATTER_EUNAVAIL : prc; /* the host, not the statement */
                break;
            }
            count_error(call, h);
            if (!(call->idempotent && retryable(code)))
                break;
        } else {
            count_error(call, h);
            pthread_mutex_lock(&cl->lock);
            snprintf(err, errlen, "%s:%s: %s", h->name, h->port,
                     rc == NATTER_ETIMEDOUT ? "CQL request timed out" : "CQL connection lost");
            pthread_mutex_unlock(&cl->lock);
            if (!call->idempotent)
                break;
        }
        if (call->attempts >= MAX_ATTEMPTS) {
            size_t used = strlen(err);
            snprintf(err + used, errlen - used, " (after %d attempts)", call->attempts);
            break;
        }
        usleep(50000u << call->attempts); /* 100, 200, 400 ms */
        if (call_send(call, -1) != NATTER_OK && call_send_when_free(call, -1) != NATTER_OK) {
            snprintf(err, errlen, "no CQL host reachable");
            rc = NATTER_EUNAVAIL;
            break;
        }
    }
    call_free(call);
    return rc;
}

int cql_call_wait(cql_call_t *call, cql_result_t *out, char *err, size_t errlen)
{
    if (call == NULL) {
        snprintf(err, errlen, "the request does not fit the protocol");
        return NATTER_EINVAL;
    }
    return call_finish(call, out, err, errlen, NULL);
}

/* Sends a new call; when no host takes it, the call still comes back (with
 * no attempt made) so that wait can say why. */
static cql_call_t *submit(cql_call_t *call)
{
    call_send(call, -1);
    return call;
}

/* A QUERY at consistency ONE on one host (the system tables it reads are
 * that host's own view). */
static int query_on(cql_client_t *cl, int host, const char *query, cql_result_t *out, char *err, size_t errlen)
{
    cql_query_params_t one = {.consistency = CQL_ONE};
    cql_call_t *call = call_new(cl, CQL_NO_TOKEN, 0, NULL);
    call->internal = 1;
    cql_build_query(&call->request, 0, query, &one);
    call_send(call, host); /* when it fails, finish says why */
    return call_finish(call, out, err, errlen, NULL);
}

/* ---- the ring ----------------------------------------------------------- */

static int ring_cmp(const void *a, const void *b)
{
    int64_t x = ((const ring_entry_t *)a)->token, y = ((const ring_entry_t *)b)->token;
    return x < y ? -1 : x > y;
}

/* Adds the tokens (a set<text> cell) of one host to the ring. */
static void ring_add(ring_t *r, int host, cql_slice_t cell)
{
    cql_reader_t rd;
    int32_t n;
    if (host < 0 || cql_decode_collection(cell, &rd, &n) != NATTER_OK)
        return;
    for (int32_t i = 0; i < n; i++) {
        cql_slice_t t = cql_read_bytes(&rd);
        char buf[32];
        if (rd.err || t.len < 0 || (size_t)t.len >= sizeof(buf))
            return;
        memcpy(buf, t.p, t.len);
        buf[t.len] = '\0';
        r->entries = xrealloc(r->entries, (r->n + 1) * sizeof(*r->entries));
        r->entries[r->n++] = (ring_entry_t){strtoll(buf, NULL, 10), host};
    }
}

static void ring_free(ring_t *r)
{
    free(r->entries);
    free(r->replicas);
    free(r);
}

/* 1 when a and b give every token the same hosts. */
static int ring_same(const ring_t *a, const ring_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->entries[i].token != b->entries[i].token || a->entries[i].host != b->entries[i].host)
            return 0;
    return 1;
}

static void format_inet(cql_slice_t cell, char *dst, size_t len)
{
    dst[0] = '\0';
    if (cell.len == 4)
        snprintf(dst, len, "%u.%u.%u.%u", cell.p[0], cell.p[1], cell.p[2], cell.p[3]);
    else if (cell.len == 16)
        inet_ntop(AF_INET6, cell.p, dst, (socklen_t)len);
}

/* The host at address (text) on port, or -1; added when add is set. Under
 * client->lock once the client is open. A contact point given by name is
 * the same host as its address in system.peers once the ring was read from
 * it (read_ring). */
static int host_at(cql_client_t *cl, const char *address, const char *port, int add)
{
    if (address[0] == '\0')
        return -1;
    int n = atomic_load_explicit(&cl->nhosts, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if ((strcmp(cl->hosts[i].name, address) == 0 || strcmp(cl->hosts[i].ip, address) == 0) &&
            strcmp(cl->hosts[i].port, port) == 0) {
            cl->hosts[i].listed = cl->read_gen;
            return i;
        }
    if (!add)
        return -1;
    int host = add_host(cl, address, strlen(address), port);
    if (host >= 0)
        snprintf(cl->hosts[host].ip, sizeof(cl->hosts[host].ip), "%s", address);
    return host;
}

/* The host a system.peers row names (its rpc_address on the port of the
 * node that listed it), or -1; adds it when add is set. */
static int peer_host(cql_client_t *cl, cql_slice_t addr, int via, int add)
{
    char name[64];
    format_inet(addr, name, sizeof(name));
    return host_at(cl, name, cl->hosts[via].port, add);
}

/* Sorts the ring, marks its hosts and, for every position, the distinct
 * hosts met walking clockwise from it: the first owns the position's range,
 * the next ones hold its replicas. */
static void ring_finish(ring_t *r)
{
    qsort(r->entries, r->n, sizeof(*r->entries), ring_cmp);
    for (size_t i = 0; i < r->n; i++)
        if (!r->member[r->entries[i].host]) {
            r->member[r->entries[i].host] = 1;
            r->nmembers++;
        }
    r->nreplicas = r->nmembers < MAX_REPLICAS ? r->nmembers : MAX_REPLICAS;
    r->replicas = xcalloc(r->n * (size_t)r->nreplicas + 1, sizeof(int));
    for (size_t pos = 0; pos < r->n; pos++) {
        int *row = r->replicas + pos * (size_t)r->nreplicas, n = 0;
        for (size_t k = 0; k < r->n && n < r->nreplicas; k++) {
            int host = r->entries[(pos + k) % r->n].host, seen = 0;
            for (int j = 0; j < n && !seen; j++)
                seen = row[j] == host;
            if (!seen)
                row[n++] = host;
        }
    }
}

/* Says on stderr what add_host noted (not under the lock: stderr may block). */
static void table_notes(cql_client_t *cl)
{
    char reused[sizeof(cl->reused_note)], left_out[sizeof(cl->left_out_note)];
    pthread_mutex_lock(&cl->lock);
    int nreused = cl->nreused;
    memcpy(reused, cl->reused_note, sizeof(reused));
    memcpy(left_out, cl->left_out_note, sizeof(left_out));
    cl->nreused = 0;
    cl->left_out_note[0] = '\0';
    pthread_mutex_unlock(&cl->lock);
    if (nreused == 1)
        fprintf(stderr, "natter: cql: %s, no longer in the ring\n", reused);
    else if (nreused > 1)
        fprintf(stderr, "natter: cql: %s, no longer in the ring (and %d more nodes in the places of others)\n",
                reused, nreused - 1);
    if (left_out[0] != '\0')
        fprintf(stderr, "natter: cql: %s\n", left_out);
}

/* Reads the ring from one host: its own address and tokens, then every
 * peer's, adding the peers as hosts. */
static int read_ring(cql_client_t *cl, int host, ring_t **out, char *err, size_t errlen)
{
    cql_result_t res;
    pthread_mutex_lock(&cl->lock);
    cl->hosts[host].listed = ++cl->read_gen; /* hosts this read lists keep their slots (reusable_slot) */
    pthread_mutex_unlock(&cl->lock);
    int rc = query_on(cl, host, "SELECT rpc_address, tokens FROM system.local", &res, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    ring_t *r = xcalloc(1, sizeof(*r));
    cql_slice_t addr, tokens;
    if (res.resp.rows.rows_count == 1 && cql_rows_cell(&res.resp.rows, 0, 0, &addr) == NATTER_OK &&
        cql_rows_cell(&res.resp.rows, 0, 1, &tokens) == NATTER_OK) {
        char ip[64];
        format_inet(addr, ip, sizeof(ip));
        if (ip[0] != '\0') { /* how the other nodes' system.peers name it */
            pthread_mutex_lock(&cl->lock);
            snprintf(cl->hosts[host].ip, sizeof(cl->hosts[host].ip), "%s", ip);
            pthread_mutex_unlock(&cl->lock);
        }
        ring_add(r, host, tokens);
    }
    cql_result_free(&res);
    if ((rc = query_on(cl, host, "SELECT rpc_address, tokens FROM system.peers", &res, err, errlen)) != NATTER_OK) {
        ring_free(r);
        return rc;
    }
    /* the known peers first (marked listed), so that a new one listed
     * before them cannot take their slots; then the new ones */
    for (int add = 0; add <= 1; add++)
        for (int32_t row = 0; row < res.resp.rows.rows_count; row++) {
            if (cql_rows_cell(&res.resp.rows, row, 0, &addr) != NATTER_OK ||
                cql_rows_cell(&res.resp.rows, row, 1, &tokens) != NATTER_OK)
                continue;
            pthread_mutex_lock(&cl->lock);
            int peer = peer_host(cl, addr, host, add);
            pthread_mutex_unlock(&cl->lock);
            if (add)
                ring_add(r, peer, tokens);
        }
    cql_result_free(&res);
    ring_finish(r);
    *out = r;
    table_notes(cl);
    return NATTER_OK;
}

/* Routes by r from now on, unless it is the ring already routed by. */
static void ring_publish(cql_client_t *cl, ring_t *r)
{
    ring_t *cur = atomic_load_explicit(&cl->ring, memory_order_relaxed);
    if (cur != NULL && ring_same(cur, r)) {
        ring_free(r);
        atomic_fetch_add_explicit(&cl->ring_reads, 1, memory_order_release);
        return;
    }
    r->older = cur;
    atomic_store_explicit(&cl->ring, r, memory_order_release);
    atomic_fetch_add_explicit(&cl->ring_reads, 1, memory_order_release);
    if (cur != NULL) {
        atomic_fetch_add_explicit(&cl->ring_changes, 1, memory_order_relaxed);
        fprintf(stderr, "natter: cql: the ring changed: %zu tokens on %d hosts\n", r->n, r->nmembers);
    }
}

/* ---- events ------------------------------------------------------------- */

/* On the events connection's reader: a topology or status change has the
 * monitor read the ring again (a node that joined, left, or came back, maybe
 * at a new address). None marks a host down or up: whether this client can
 * reach a node is for its own connections to say. */
static void on_event(cql_client_t *cl, const uint8_t *frame, size_t len)
{
    char err[128], address[64];
    cql_response_t resp;
    if (cql_response_parse(&resp, frame, len, err, sizeof(err)) != NATTER_OK)
        return;
    atomic_fetch_add_explicit(&cl->events, 1, memory_order_relaxed);
    if (cql_slice_eq(resp.event_type, "TOPOLOGY_CHANGE") || cql_slice_eq(resp.event_type, "STATUS_CHANGE")) {
        int32_t port;
        cql_slice_t change = cql_read_string(&resp.event);
        cql_read_inet(&resp.event, address, sizeof(address), &port);
        if (!resp.event.err)
            fprintf(stderr, "natter: cql: %.*s %.*s %s:%d\n", (int)resp.event_type.len,
                    (const char *)resp.event_type.p, (int)change.len, (const char *)change.p, address, (int)port);
        pthread_mutex_lock(&cl->lock);
        cl->refresh_wanted = 1;
        pthread_cond_signal(&cl->monitor_cond);
        pthread_mutex_unlock(&cl->lock);
    }
    cql_response_free(&resp);
}

/* The next up host of the ring after host, or -1. */
static int next_ring_host(cql_client_t *cl, int host)
{
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    int n = atomic_load_explicit(&cl->nhosts, memory_order_acquire);
    for (int i = 1; i <= n; i++) {
        int h = (host + i) % n;
        if (atomic_load(&cl->hosts[h].up) && in_ring(r, h))
            return h;
    }
    return -1;
}

/* The monitor's other half: keeps one connection REGISTERed for events on
 * an up host of the ring, and reads the ring again EVENT_DELAY_NS after an
 * event (wanted), at once when that connection opens (events may have been
 * missed while there was none), and every REFRESH_PERIOD_NS, from the node
 * that connection is on. A node that stopped answering queries, was marked
 * down or left the ring loses the events connection to the next one. A
 * round tries one node for each, so that the monitor's reconnects and
 * reaping wait for a few timeouts (connect and handshake) at most. */
static void events_round(cql_client_t *cl, int wanted)
{
    char err[256];
    uint64_t now = natter_mono_ns();
    conn_t *ev = cl->events_conn;
    if (ev != NULL && (atomic_load(&ev->dead) || !atomic_load(&cl->hosts[cl->events_host].up) ||
                       !in_ring(atomic_load_explicit(&cl->ring, memory_order_acquire), cl->events_host))) {
        conn_retire(ev);
        cl->events_conn = NULL;
    }
    if (cl->events_conn == NULL && now >= cl->events_retry_ns) {
        int host = next_ring_host(cl, cl->events_host);
        if (host >= 0 && (cl->events_conn = conn_open(cl, host, 1, err, sizeof(err))) != NULL)
            cl->refresh_due_ns = now;
        if (host >= 0)
            cl->events_host = host;
        now = natter_mono_ns();
        if (cl->events_conn == NULL)
            cl->events_retry_ns = now + EVENTS_RETRY_NS;
    }
    if (wanted && now + EVENT_DELAY_NS < cl->refresh_due_ns)
        cl->refresh_due_ns = now + EVENT_DELAY_NS;
    if (now < cl->refresh_due_ns)
        return;
    int host = cl->events_conn != NULL ? cl->events_host : next_ring_host(cl, cl->events_host);
    ring_t *fresh;
    int rc = host >= 0 ? read_ring(cl, host, &fresh, err, sizeof(err)) : NATTER_EUNAVAIL;
    if (rc == NATTER_OK) {
        ring_publish(cl, fresh);
    } else if (cl->events_conn != NULL) { /* its node does not answer: the next one takes both */
        conn_retire(cl->events_conn);
        cl->events_conn = NULL;
    } else if (host >= 0) {
        cl->events_host = host;
    }
    cl->refresh_due_ns = natter_mono_ns() + (rc == NATTER_OK ? REFRESH_PERIOD_NS : EVENTS_RETRY_NS);
}

/* ---- statements --------------------------------------------------------- */

/* A copy of the statement's id, taken under its lock. */
static size_t stmt_id(cql_stmt_t *st, uint8_t id[64])
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->id_len;
    memcpy(id, st->id, n);
    pthread_mutex_unlock(&st->lock);
    return n;
}

static int prepare_on(cql_client_t *cl, cql_stmt_t *st, int host, char *err, size_t errlen)
{
    cql_call_t *call = call_new(cl, CQL_NO_TOKEN, 0, NULL);
    cql_build_prepare(&call->request, 0, st->query);
    call_send(call, host); /* when it fails, finish says why */
    cql_result_t res;
    int rc = call_finish(call, &res, err, errlen, NULL);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.kind != CQL_RESULT_PREPARED || res.resp.prepared.id.len < 0 ||
        (size_t)res.resp.prepared.id.len > sizeof(st->id)) {
        snprintf(err, errlen, "PREPARE did not answer Prepared");
        rc = NATTER_EIO;
    } else {
        /* v4 ids are digests of the keyspace and the text, so a host gives
         * the id the others gave; a request built with an older id meets
         * UNPREPARED again and is rebuilt by its next caller */
        pthread_mutex_lock(&st->lock);
        memcpy(st->id, res.resp.prepared.id.p, res.resp.prepared.id.len);
        st->id_len = res.resp.prepared.id.len;
        pthread_mutex_unlock(&st->lock);
    }
    cql_result_free(&res);
    return rc;
}

static void stmt_free(cql_stmt_t *st)
{
    pthread_mutex_destroy(&st->lock);
    free(st->query);
    free(st);
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
    pthread_mutex_init(&st->lock, NULL);
    int rc = NATTER_EUNAVAIL, first = -1;
    const ring_t *r = atomic_load_explicit(&cl->ring, memory_order_acquire);
    int nhosts = atomic_load_explicit(&cl->nhosts, memory_order_acquire);
    for (int i = 0; i < nhosts && rc != NATTER_OK; i++)
        if (atomic_load(&cl->hosts[i].up) && in_ring(r, i) && (rc = prepare_on(cl, st, i, err, errlen)) == NATTER_OK)
            first = i;
    if (rc != NATTER_OK) {
        if (first < 0 && rc == NATTER_EUNAVAIL)
            snprintf(err, errlen, "no CQL host up to prepare on");
        stmt_free(st);
        return rc;
    }
    /* on every other host too, so that routing does not meet UNPREPARED on
     * first use; a host that fails here prepares on demand later */
    for (int i = first + 1; i < nhosts; i++) {
        char ignored[256];
        if (atomic_load(&cl->hosts[i].up) && in_ring(r, i))
            prepare_on(cl, st, i, ignored, sizeof(ignored));
    }
    pthread_mutex_lock(&cl->lock);
    st->next = cl->stmts;
    cl->stmts = st;
    pthread_mutex_unlock(&cl->lock);
    *out = st;
    return NATTER_OK;
}

cql_call_t *cql_client_execute(cql_client_t *cl, cql_stmt_t *st, const cql_query_params_t *qp, int64_t token,
                               int idempotent)
{
    uint8_t id[64];
    size_t id_len = stmt_id(st, id);
    cql_call_t *call = call_new(cl, token, idempotent, st);
    if (cql_build_execute(&call->request, 0, id, id_len, qp) != NATTER_OK) {
        call_free(call);
        return NULL;
    }
    return submit(call);
}

cql_call_t *cql_client_batch(cql_client_t *cl, const cql_batch_params_t *bp, cql_stmt_t *st,
                             const cql_value_t *values, size_t per_row, size_t nrows, int64_t token, int idempotent)
{
    uint8_t id[64];
    size_t id_len = stmt_id(st, id);
    cql_call_t *call = call_new(cl, token, idempotent, st);
    cql_batch_entry_t *entries = xcalloc(nrows, sizeof(*entries));
    for (size_t i = 0; i < nrows; i++)
        entries[i] = (cql_batch_entry_t){.id = id, .id_len = id_len, .values = values + i * per_row,
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

/* ---- schema --------------------------------------------------------------- */

static int uuid_cell(const cql_result_t *r, int32_t row, int32_t col, uint8_t out[16])
{
    cql_slice_t c;
    return cql_rows_cell(&r->resp.rows, row, col, &c) == NATTER_OK ? cql_decode_uuid(c, out) : NATTER_EINVAL;
}

/* 1 when every up host that host knows of runs host's schema version. */
static int schema_agreed(cql_client_t *cl, int host)
{
    char err[256];
    uint8_t mine[16], theirs[16];
    cql_result_t res;
    if (query_on(cl, host, "SELECT schema_version FROM system.local", &res, err, sizeof(err)) != NATTER_OK)
        return 0;
    int agreed = res.resp.rows.rows_count == 1 && uuid_cell(&res, 0, 0, mine) == NATTER_OK;
    cql_result_free(&res);
    if (!agreed ||
        query_on(cl, host, "SELECT rpc_address, schema_version FROM system.peers", &res, err, sizeof(err)) != NATTER_OK)
        return 0;
    for (int32_t row = 0; row < res.resp.rows.rows_count && agreed; row++) {
        cql_slice_t addr;
        if (cql_rows_cell(&res.resp.rows, row, 0, &addr) != NATTER_OK)
            continue;
        pthread_mutex_lock(&cl->lock);
        int peer = peer_host(cl, addr, host, 0);
        pthread_mutex_unlock(&cl->lock);
        if (peer >= 0 && !atomic_load(&cl->hosts[peer].up)) /* a node that is down catches up when it returns */
            continue;
        agreed = uuid_cell(&res, row, 1, theirs) == NATTER_OK && memcmp(mine, theirs, 16) == 0;
    }
    cql_result_free(&res);
    return agreed;
}

/* After DDL run on host: until the up hosts agree on the schema, or the
 * bound. Agreement not reached is not an error of the DDL (it is applied);
 * what follows may meet a host that has not seen it yet, and says so. */
static void wait_schema_agreement(cql_client_t *cl, int host)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)cl->cfg.schema_wait_ms * 1000000u;
    while (!schema_agreed(cl, host)) {
        if (natter_mono_ns() >= deadline) {
            fprintf(stderr, "natter: cql: schema agreement not reached within %u ms\n", cl->cfg.schema_wait_ms);
            return;
        }
        usleep(SCHEMA_POLL_US);
    }
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
    int host;
    int rc = call_finish(submit(call), out, err, errlen, &host);
    if (rc == NATTER_OK && out->resp.kind == CQL_RESULT_SCHEMA_CHANGE && host >= 0)
        wait_schema_agreement(cl, host);
    return rc;
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
    if (cl->cfg.schema_wait_ms == 0)
        cl->cfg.schema_wait_ms = 10000;
    cl->hosts_text = xstrdup(cfg->hosts);
    cl->user = cfg->user && cfg->user[0] ? xstrdup(cfg->user) : NULL;
    cl->password = cfg->password ? xstrdup(cfg->password) : xstrdup("");
    pthread_mutex_init(&cl->lock, NULL);
    natter_mono_cond_init(&cl->monitor_cond);
    int rc = parse_hosts(cl, err, errlen);
    if (rc == NATTER_OK) /* the first contact point that answers tells the ring */
        rc = NATTER_EUNAVAIL;
    ring_t *r = NULL;
    for (int i = 0; i < cl->ncontacts && rc != NATTER_OK && rc != NATTER_EINVAL; i++)
        if ((rc = read_ring(cl, i, &r, err, errlen)) == NATTER_OK)
            cl->events_host = i;
    if (rc != NATTER_OK) {
        cql_client_close(cl);
        return rc == NATTER_EINVAL ? rc : NATTER_EUNAVAIL;
    }
    ring_publish(cl, r);
    cl->refresh_due_ns = natter_mono_ns() + REFRESH_PERIOD_NS;
    for (int i = 0; i < atomic_load(&cl->nhosts); i++) { /* learn now which nodes are up */
        conn_t *c = host_conn(cl, i);
        if (c != NULL)
            conn_release(c);
    }
    cl->monitor_started = pthread_create(&cl->monitor, NULL, monitor_main, cl) == 0;
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
    if (cl->monitor_started) {
        pthread_mutex_lock(&cl->lock);
        cl->stopping = 1;
        pthread_cond_signal(&cl->monitor_cond);
        pthread_mutex_unlock(&cl->lock);
        pthread_join(cl->monitor, NULL);
    }
    if (cl->events_conn != NULL)
        conn_retire(cl->events_conn);
    for (int i = 0; i < atomic_load(&cl->nhosts); i++)
        for (int s = 0; s < MAX_CONNS; s++)
            if (cl->hosts[i].conns[s] != NULL)
                conn_retire(cl->hosts[i].conns[s]);
    while (cl->stmts != NULL) {
        cql_stmt_t *st = cl->stmts;
        cl->stmts = st->next;
        stmt_free(st);
    }
    for (ring_t *r = atomic_load(&cl->ring), *older; r != NULL; r = older) {
        older = r->older;
        ring_free(r);
    }
    free(cl->hosts_text);
    free(cl->user);
    free(cl->password);
    pthread_cond_destroy(&cl->monitor_cond);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}
