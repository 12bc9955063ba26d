/*
 * The CQL client's races and host handling, against a fake CQL server: a few
 * threads in this file that speak just enough of protocol v4 over loopback
 * (STARTUP, the ring's system tables, PREPARE, EXECUTE) and that delay, drop
 * or never answer a request, or close its connection, on demand. The real
 * thing is tested against Cassandra in tests/engine/; this file drives what
 * Cassandra cannot be made to do on cue. Built with ASan and with TSan
 * (make unit runs both).
 *
 * An EXECUTE's first bound value (a bigint) tells the fake what to do:
 * >= 0 answer after that many microseconds, FAKE_NEVER never answer,
 * FAKE_CLOSE close the connection. A fake forgets its prepared statements
 * when told, or every so many executes (answering UNPREPARED until the next
 * PREPARE). Several fakes on
 * 127.0.0.1, .2 and .3 with the same port make a ring, each owning a token;
 * a fake sends a cluster event on the connections that REGISTERed when told.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "store/cql/cql_client.h"

#define FAKE_NEVER (-1)
#define FAKE_CLOSE (-2)
#define MAX_FAKE_CONNS 64 /* accepted over a fake's life, open or not */
#define MAX_PEERS 48

/* ---- the fake server ------------------------------------------------------ */

typedef struct answer {
    uint64_t due_ns;
    cql_buf_t frame;
    struct answer *next;
} answer_t;

typedef struct fake fake_t;

typedef struct fconn {
    fake_t *fake;
    int fd;
    pthread_t reader, writer;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    answer_t *queue; /* by due time */
    int closing;
    atomic_int registered; /* sent REGISTER: events go here */
} fconn_t;

struct fake {
    char ip[16];
    uint16_t port;
    char token[24];
    int npeers; /* under lock, with the peers */
    char peer_ip[MAX_PEERS][16], peer_token[MAX_PEERS][24];
    int lfd;
    pthread_t acceptor;
    atomic_int stopping;
    atomic_int mute_startup;  /* accept, never answer STARTUP */
    atomic_int prepared;      /* 0: EXECUTE answers UNPREPARED */
    atomic_int forget_every;  /* > 0: forget after that many executes since the last PREPARE */
    atomic_int since_prepare;
    atomic_int executes, prepares;
    atomic_int peers_reads; /* SELECTs of system.peers: the client reading the ring */
    pthread_mutex_t lock;
    fconn_t *conns[MAX_FAKE_CONNS];
    int nconns;
};

static void put_frame(cql_buf_t *out, int16_t stream, uint8_t opcode, const cql_buf_t *body)
{
    cql_header_t h = {.version = CQL_VERSION_RESPONSE, .stream = stream, .opcode = opcode,
                      .length = (uint32_t)body->len};
    uint8_t head[CQL_HEADER_LEN];
    cql_header_encode(head, &h);
    cql_buf_put_raw(out, head, sizeof(head));
    cql_buf_put_raw(out, body->data, body->len);
}

/* Rows of rpc_address and set<varchar> tokens. */
static void rows_body(fake_t *f, cql_buf_t *b, int peers)
{
    pthread_mutex_lock(&f->lock);
    cql_buf_put_int(b, CQL_RESULT_ROWS);
    cql_buf_put_int(b, CQL_META_GLOBAL_TABLES_SPEC);
    cql_buf_put_int(b, 2);
    cql_buf_put_string(b, "system", 6);
    cql_buf_put_string(b, peers ? "peers" : "local", 5);
    cql_buf_put_string(b, "rpc_address", 11);
    cql_buf_put_short(b, CQL_TYPE_INET);
    cql_buf_put_string(b, "tokens", 6);
    cql_buf_put_short(b, CQL_TYPE_SET);
    cql_buf_put_short(b, CQL_TYPE_VARCHAR);
    int n = peers ? f->npeers : 1;
    cql_buf_put_int(b, n);
    for (int i = 0; i < n; i++) {
        const char *tok = peers ? f->peer_token[i] : f->token;
        struct in_addr a;
        inet_pton(AF_INET, peers ? f->peer_ip[i] : f->ip, &a);
        cql_buf_put_bytes(b, &a, 4);
        cql_buf_t set;
        cql_buf_init(&set);
        cql_buf_put_int(&set, 1);
        cql_buf_put_bytes(&set, tok, strlen(tok));
        cql_buf_put_bytes(b, set.data, set.len);
        cql_buf_free(&set);
    }
    pthread_mutex_unlock(&f->lock);
}

static void enqueue(fconn_t *c, uint64_t delay_us, int16_t stream, uint8_t opcode, const cql_buf_t *body)
{
    answer_t *a = xcalloc(1, sizeof(*a));
    a->due_ns = natter_mono_ns() + delay_us * 1000u;
    cql_buf_init(&a->frame);
    put_frame(&a->frame, stream, opcode, body);
    pthread_mutex_lock(&c->lock);
    answer_t **p = &c->queue;
    while (*p != NULL && (*p)->due_ns <= a->due_ns)
        p = &(*p)->next;
    a->next = *p;
    *p = a;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void *fconn_writer(void *arg)
{
    fconn_t *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->closing) {
        if (c->queue == NULL) {
            pthread_cond_wait(&c->cond, &c->lock);
            continue;
        }
        uint64_t now = natter_mono_ns();
        if (c->queue->due_ns > now) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t left = c->queue->due_ns - now, ns = (uint64_t)ts.tv_nsec + left;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            continue;
        }
        answer_t *a = c->queue;
        c->queue = a->next;
        pthread_mutex_unlock(&c->lock);
        if (send(c->fd, a->frame.data, a->frame.len, MSG_NOSIGNAL) < 0)
            shutdown(c->fd, SHUT_RDWR);
        cql_buf_free(&a->frame);
        free(a);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void answer_execute(fconn_t *c, int16_t stream, cql_reader_t *r)
{
    fake_t *f = c->fake;
    cql_buf_t body;
    cql_buf_init(&body);
    cql_slice_t id = cql_read_short_bytes(r);
    (void)cql_read_short(r); /* consistency */
    uint8_t flags = cql_read_byte(r);
    int64_t what = 0;
    if ((flags & 0x01) && cql_read_short(r) > 0) {
        cql_slice_t v = cql_read_bytes(r);
        if (v.len == 8) {
            cql_reader_t vr;
            cql_reader_init(&vr, v.p, 8);
            what = cql_read_long(&vr);
        }
    }
    atomic_fetch_add(&f->executes, 1);
    int every = atomic_load(&f->forget_every);
    if (every > 0 && atomic_fetch_add(&f->since_prepare, 1) + 1 >= every)
        atomic_store(&f->prepared, 0);
    if (!atomic_load(&f->prepared)) {
        cql_buf_put_int(&body, CQL_ERR_UNPREPARED);
        cql_buf_put_string(&body, "forgotten", 9);
        cql_buf_put_short_bytes(&body, id.p, (size_t)id.len);
        enqueue(c, 0, stream, CQL_OP_ERROR, &body);
    } else if (what == FAKE_CLOSE) {
        shutdown(c->fd, SHUT_RDWR);
    } else if (what != FAKE_NEVER) {
        cql_buf_put_int(&body, CQL_RESULT_VOID);
        enqueue(c, (uint64_t)(what > 0 ? what : 0), stream, CQL_OP_RESULT, &body);
    }
    cql_buf_free(&body);
}

static void answer(fconn_t *c, const cql_header_t *h, const uint8_t *p, size_t len)
{
    fake_t *f = c->fake;
    cql_reader_t r;
    cql_buf_t body;
    cql_reader_init(&r, p, len);
    cql_buf_init(&body);
    switch (h->opcode) {
    case CQL_OP_STARTUP:
        if (!atomic_load(&f->mute_startup))
            enqueue(c, 0, h->stream, CQL_OP_READY, &body);
        break;
    case CQL_OP_QUERY: {
        cql_slice_t q = cql_read_long_string(&r);
        char text[256];
        snprintf(text, sizeof(text), "%.*s", (int)q.len, (const char *)q.p);
        if (strstr(text, "system.peers")) {
            if (strstr(text, "tokens"))
                atomic_fetch_add(&f->peers_reads, 1);
            rows_body(f, &body, 1);
        }
        else if (strstr(text, "system.local"))
            rows_body(f, &body, 0);
        else
            cql_buf_put_int(&body, CQL_RESULT_VOID);
        enqueue(c, 0, h->stream, CQL_OP_RESULT, &body);
        break;
    }
    case CQL_OP_PREPARE: {
        static const uint8_t id[16] = {0xfa, 0xce};
        atomic_fetch_add(&f->prepares, 1);
        atomic_store(&f->since_prepare, 0);
        atomic_store(&f->prepared, 1);
        cql_buf_put_int(&body, CQL_RESULT_PREPARED);
        cql_buf_put_short_bytes(&body, id, sizeof(id));
        cql_buf_put_int(&body, 0); /* flags */
        cql_buf_put_int(&body, 0); /* bind markers */
        cql_buf_put_int(&body, 0); /* partition key markers */
        cql_buf_put_int(&body, CQL_META_NO_METADATA);
        cql_buf_put_int(&body, 0);
        enqueue(c, 0, h->stream, CQL_OP_RESULT, &body);
        break;
    }
    case CQL_OP_EXECUTE:
        answer_execute(c, h->stream, &r);
        break;
    case CQL_OP_REGISTER:
        atomic_store(&c->registered, 1);
        enqueue(c, 0, h->stream, CQL_OP_READY, &body);
        break;
    default:
        cql_buf_put_int(&body, CQL_RESULT_VOID);
        enqueue(c, 0, h->stream, CQL_OP_RESULT, &body);
        break;
    }
    cql_buf_free(&body);
}

static void *fconn_reader(void *arg)
{
    fconn_t *c = arg;
    uint8_t head[CQL_HEADER_LEN];
    while (read_all(c->fd, head, sizeof(head)) == 0) {
        cql_header_t h;
        cql_header_decode(head, &h);
        uint8_t *body = xmalloc(h.length + 1);
        if (read_all(c->fd, body, h.length) != 0) {
            free(body);
            break;
        }
        answer(c, &h, body, h.length);
        free(body);
    }
    pthread_mutex_lock(&c->lock);
    c->closing = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void *fake_acceptor(void *arg)
{
    fake_t *f = arg;
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* the listening socket was shut down */
        }
        pthread_mutex_lock(&f->lock);
        if (atomic_load(&f->stopping) || f->nconns == MAX_FAKE_CONNS) {
            pthread_mutex_unlock(&f->lock);
            close(fd);
            continue;
        }
        fconn_t *c = xcalloc(1, sizeof(*c));
        c->fake = f;
        c->fd = fd;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        f->conns[f->nconns++] = c;
        pthread_create(&c->reader, NULL, fconn_reader, c);
        pthread_create(&c->writer, NULL, fconn_writer, c);
        pthread_mutex_unlock(&f->lock);
    }
}

/* A fake node on ip:port (port 0: any), owning token. */
static fake_t *fake_start(const char *ip, uint16_t port, const char *token)
{
    fake_t *f = xcalloc(1, sizeof(*f));
    snprintf(f->ip, sizeof(f->ip), "%s", ip);
    snprintf(f->token, sizeof(f->token), "%s", token);
    atomic_store(&f->prepared, 1);
    pthread_mutex_init(&f->lock, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 64), 0);
    getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    pthread_create(&f->acceptor, NULL, fake_acceptor, f);
    return f;
}

static void fake_add_peer(fake_t *f, const char *ip, const char *token)
{
    pthread_mutex_lock(&f->lock);
    assert_true(f->npeers < MAX_PEERS);
    snprintf(f->peer_ip[f->npeers], sizeof(f->peer_ip[0]), "%s", ip);
    snprintf(f->peer_token[f->npeers], sizeof(f->peer_token[0]), "%s", token);
    f->npeers++;
    pthread_mutex_unlock(&f->lock);
}

static void fake_remove_peer(fake_t *f, const char *ip)
{
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < f->npeers; i++)
        if (strcmp(f->peer_ip[i], ip) == 0) {
            memmove(f->peer_ip[i], f->peer_ip[i + 1], sizeof(f->peer_ip[0]) * (size_t)(f->npeers - i - 1));
            memmove(f->peer_token[i], f->peer_token[i + 1], sizeof(f->peer_token[0]) * (size_t)(f->npeers - i - 1));
            f->npeers--;
            break;
        }
    pthread_mutex_unlock(&f->lock);
}

/* Open connections, and of those the ones REGISTERed for events. */
static int fake_conns(fake_t *f, int registered_only)
{
    int n = 0;
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < f->nconns; i++) {
        pthread_mutex_lock(&f->conns[i]->lock);
        int open = !f->conns[i]->closing;
        pthread_mutex_unlock(&f->conns[i]->lock);
        n += open && (!registered_only || atomic_load(&f->conns[i]->registered));
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* One step of a bounded poll: every wait in these tests is for something
 * the client's monitor or back-off does within a bounded time, not this
 * machine's speed, and is given 10 s. *deadline starts at 0. Returns 1
 * after sleeping 20 ms, or 0 once the 10 s are over. */
static int poll_more(uint64_t *deadline)
{
    uint64_t now = natter_mono_ns();
    if (*deadline == 0)
        *deadline = now + 10000000000ull;
    else if (now >= *deadline)
        return 0;
    usleep(20000);
    return 1;
}

/* Polls until f has no connection open (none) or at least one
 * (registered_only: one REGISTERed for events). */
static void wait_fake_conns(fake_t *f, int registered_only, int none)
{
    uint64_t deadline = 0;
    while ((fake_conns(f, registered_only) == 0) != none)
        if (!poll_more(&deadline))
            fail_msg("the fake node still has %s after 10 s", none ? "connections" : "no connection");
}

/* An EVENT (type, change, the node at ip:port) on every REGISTERed connection. */
static void fake_event(fake_t *f, const char *type, const char *change, const char *ip, uint16_t port)
{
    cql_buf_t body;
    struct in_addr a;
    cql_buf_init(&body);
    cql_buf_put_string(&body, type, strlen(type));
    cql_buf_put_string(&body, change, strlen(change));
    inet_pton(AF_INET, ip, &a);
    cql_buf_put_byte(&body, 4);
    cql_buf_put_raw(&body, &a, 4);
    cql_buf_put_int(&body, port);
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < f->nconns; i++)
        if (atomic_load(&f->conns[i]->registered))
            enqueue(f->conns[i], 0, -1, CQL_OP_EVENT, &body);
    pthread_mutex_unlock(&f->lock);
    cql_buf_free(&body);
}

/* Stops listening and closes every connection: the node is gone. */
static void fake_stop(fake_t *f)
{
    atomic_store(&f->stopping, 1);
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->acceptor, NULL);
    close(f->lfd);
    for (int i = 0; i < f->nconns; i++) {
        fconn_t *c = f->conns[i];
        shutdown(c->fd, SHUT_RDWR);
        pthread_join(c->reader, NULL);
        pthread_join(c->writer, NULL);
        close(c->fd);
        while (c->queue != NULL) {
            answer_t *a = c->queue;
            c->queue = a->next;
            cql_buf_free(&a->frame);
            free(a);
        }
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* ---- helpers -------------------------------------------------------------- */

static char err[512];

/* Opening and preparing are tried again for up to 10 s: a test's timeout
 * may be a few ms, which a loaded machine can take to schedule the fake's
 * answer (the tests are about what the client does after). */
static cql_client_t *open_client(const char *hosts, unsigned timeout_ms)
{
    cql_client_t *c = NULL;
    cql_client_config_t cfg = {.hosts = hosts, .conns_per_host = 2, .timeout_ms = timeout_ms};
    uint64_t deadline = 0;
    while (cql_client_open(&c, &cfg, err, sizeof(err)) != NATTER_OK)
        if (!poll_more(&deadline))
            fail_msg("open %s: %s", hosts, err);
    return c;
}

static cql_stmt_t *prepare(cql_client_t *c)
{
    cql_stmt_t *st;
    uint64_t deadline = 0;
    while (cql_client_prepare(c, "INSERT INTO t.kv (k) VALUES (?)", &st, err, sizeof(err)) != NATTER_OK)
        if (!poll_more(&deadline))
            fail_msg("prepare: %s", err);
    return st;
}

static cql_call_t *exec(cql_client_t *c, cql_stmt_t *st, int64_t what, int64_t token, int idempotent)
{
    cql_value_t v = cql_value_bigint(what);
    cql_query_params_t qp = {.consistency = CQL_ONE, .values = &v, .nvalues = 1};
    return cql_client_execute(c, st, &qp, token, idempotent);
}

static int exec_wait(cql_client_t *c, cql_stmt_t *st, int64_t what, int64_t token)
{
    char e[256];
    return cql_call_wait(exec(c, st, what, token, 0), NULL, e, sizeof(e));
}

static cql_host_stats_t host_stats(cql_client_t *c, const char *address)
{
    cql_host_stats_t hosts[8];
    size_t n = cql_client_hosts(c, hosts, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        if (strcmp(hosts[i].address, address) == 0)
            return hosts[i];
    fail_msg("no host %s", address);
    return hosts[0];
}

/* One fake node on 127.0.0.1, a client of it and a statement prepared. */
typedef struct {
    fake_t *fake;
    cql_client_t *c;
    cql_stmt_t *st;
    char hosts[64];
} single_t;

/* Polls until the client has read the ring whole n times and routes by
 * the last: at open, when the events connection opened, after each event. */
static void wait_ring_reads(cql_client_t *c, uint64_t n)
{
    uint64_t deadline = 0;
    cql_client_stats_t cs;
    for (cql_client_stats(c, &cs); cs.ring_reads < n; cql_client_stats(c, &cs))
        if (!poll_more(&deadline))
            fail_msg("the ring was read %llu times, not %llu, in 10 s", (unsigned long long)cs.ring_reads,
                     (unsigned long long)n);
}

static single_t single(unsigned timeout_ms)
{
    single_t one = {.fake = fake_start("127.0.0.1", 0, "0")};
    snprintf(one.hosts, sizeof(one.hosts), "127.0.0.1:%u", one.fake->port);
    one.c = open_client(one.hosts, timeout_ms);
    one.st = prepare(one.c);
    wait_ring_reads(one.c, 2); /* the client's ring reads are over before a test's calls begin */
    return one;
}

static void single_end(single_t *one)
{
    cql_client_close(one->c);
    fake_stop(one->fake);
}

/* Polls until a call succeeds (what a reconnect takes is bounded by the
 * client's back-off). */
static void eventually_ok(cql_client_t *c, cql_stmt_t *st, int64_t token)
{
    uint64_t deadline = 0;
    int rc;
    while ((rc = exec_wait(c, st, 0, token)) != NATTER_OK)
        if (!poll_more(&deadline))
            break;
    assert_int_equal(rc, NATTER_OK);
}

/* ---- the races ------------------------------------------------------------ */

#define WAITERS 30

typedef struct {
    cql_call_t *calls[300];
    int n;
    atomic_int answered, timed_out, unavailable, other;
    char other_error[256]; /* the first other outcome's, for the failure message */
} waiters_t;

typedef struct {
    waiters_t *w;
    int first;
} waiter_arg_t;

/* Waits for every WAITERS-th call from first on. */
static void *wait_some(void *arg)
{
    waiter_arg_t *a = arg;
    for (int i = a->first; i < a->w->n; i += WAITERS) {
        char e[256];
        int rc = cql_call_wait(a->w->calls[i], NULL, e, sizeof(e));
        if (rc == NATTER_OK)
            atomic_fetch_add(&a->w->answered, 1);
        else if (rc == NATTER_ETIMEDOUT)
            atomic_fetch_add(&a->w->timed_out, 1);
        else if (rc == NATTER_EUNAVAIL) /* a stall of this machine made the connection look silent: host down */
            atomic_fetch_add(&a->w->unavailable, 1);
        else if (atomic_fetch_add(&a->w->other, 1) == 0)
            snprintf(a->w->other_error, sizeof(a->w->other_error), "%s", e);
    }
    return NULL;
}

/* 300 calls in flight whose answers arrive around their deadlines, in
 * rounds, waited for by 30 threads, half of them idempotent (retried, so
 * sent again after a timeout):
 * every wait ends with the answer or a timeout (or, when this machine
 * stalls the fake server past a timeout after another, the host taken down
 * as silent: unavailable), nothing is written into a
 * call after its waiter let it go (ASan, TSan), and afterwards every stream
 * of both connections is free again: 2048 calls at once all find one. */
static void test_timeouts_race_replies(void **state)
{
    (void)state;
    enum { N = 300, TIMEOUT_MS = 100, ROUNDS = 4 };
    single_t one = single(TIMEOUT_MS);
    cql_client_t *c = one.c;
    cql_stmt_t *st = one.st;
    waiters_t w = {.n = N};
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) /* answers from half the timeout to one and a half */
            w.calls[i] = exec(c, st, TIMEOUT_MS * 500 + (i * TIMEOUT_MS * 1000) / N, CQL_NO_TOKEN, (i + round) % 2);
        pthread_t t[WAITERS];
        waiter_arg_t args[WAITERS];
        for (int k = 0; k < WAITERS; k++) {
            args[k] = (waiter_arg_t){&w, k};
            pthread_create(&t[k], NULL, wait_some, &args[k]);
        }
        for (int k = 0; k < WAITERS; k++)
            pthread_join(t[k], NULL);
    }
    if (atomic_load(&w.other) != 0)
        fail_msg("%d waits ended neither answered, timed out nor unavailable; the first: %s", atomic_load(&w.other),
                 w.other_error);
    assert_true(atomic_load(&w.answered) > 0);
    assert_true(atomic_load(&w.timed_out) > 0);
    /* every stream comes back once the last late answers are in: all of
     * them in flight at once find one each (a slow machine may time some
     * out; "no stream free" is not sent at all) */
    enum { ALL = 2 * 1024 };
    cql_call_t **calls = xcalloc(ALL, sizeof(*calls));
    uint64_t deadline = 0;
    for (;;) {
        int refused = 0;
        char e[256] = "";
        for (int i = 0; i < ALL; i++)
            calls[i] = exec(c, st, 0, CQL_NO_TOKEN, 0);
        for (int i = 0; i < ALL; i++)
            if (cql_call_wait(calls[i], NULL, e, sizeof(e)) == NATTER_EUNAVAIL)
                refused++;
        if (refused == 0)
            break;
        if (!poll_more(&deadline))
            fail_msg("streams not given back: %d of %d calls found none free after 10 s (%s)", refused, ALL, e);
    }
    free(calls);
    single_end(&one);
}

/* A server that takes requests and never answers them: more calls time out
 * than both connections have streams, and yet the client recovers, because
 * a connection full of abandoned streams, or silent, is closed and made
 * anew. The old client kept every stream for an answer that never came and
 * answered NATTER_EUNAVAIL for good. */
static void test_silent_server_does_not_leak_streams(void **state)
{
    (void)state;
    enum { N = 300, TIMEOUT_MS = 10, ROUNDS = 8 };
    single_t one = single(TIMEOUT_MS);
    cql_client_t *c = one.c;
    cql_stmt_t *st = one.st;
    for (int round = 0; round < ROUNDS; round++) { /* 2400 > 2 x 1024 streams */
        cql_call_t *calls[N];
        for (int i = 0; i < N; i++)
            calls[i] = exec(c, st, FAKE_NEVER, CQL_NO_TOKEN, 0);
        for (int i = 0; i < N; i++) {
            char e[256];
            int rc = cql_call_wait(calls[i], NULL, e, sizeof(e));
            assert_true(rc == NATTER_ETIMEDOUT || rc == NATTER_EUNAVAIL);
        }
    }
    assert_true(host_stats(c, one.hosts).errors >= N);
    eventually_ok(c, st, CQL_NO_TOKEN);
    single_end(&one);
}

typedef struct {
    cql_client_t *c;
    cql_stmt_t *st;
    atomic_int *failures;
} worker_arg_t;

static void *execute_many(void *arg)
{
    worker_arg_t *w = arg;
    for (int i = 0; i < 200; i++)
        if (exec_wait(w->c, w->st, 0, CQL_NO_TOKEN) != NATTER_OK)
            atomic_fetch_add(w->failures, 1);
    return NULL;
}

/* Four threads execute one statement while the server keeps forgetting it:
 * re-prepares replace the statement's id while requests are built from it
 * (a data race in the old client, which TSan reports), and every call still
 * succeeds. */
static void test_reprepare_while_executing(void **state)
{
    (void)state;
    single_t one = single(2000);
    fake_t *f = one.fake;
    cql_client_t *c = one.c;
    cql_stmt_t *st = one.st;
    atomic_int failures = 0;
    worker_arg_t w = {c, st, &failures};
    atomic_store(&f->forget_every, 25);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, execute_many, &w);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    assert_true(host_stats(c, one.hosts).reprepares > 0);
    single_end(&one);
}

/* The server closes a connection with calls in flight: they fail at once
 * with NATTER_EUNAVAIL (not at their deadline), the host is marked down (its
 * reader takes the client's lock to say so, while other threads end
 * connections: the old client joined readers under that lock), and the
 * monitor brings it back. */
static void test_connection_lost_then_back(void **state)
{
    (void)state;
    enum { N = 50 };
    single_t one = single(300);
    cql_client_t *c = one.c;
    cql_stmt_t *st = one.st;
    for (int round = 0; round < 5; round++) {
        cql_call_t *calls[N];
        for (int i = 0; i < N; i++)
            calls[i] = exec(c, st, i == N / 2 ? FAKE_CLOSE : FAKE_NEVER, CQL_NO_TOKEN, 0);
        for (int i = 0; i < N; i++) {
            char e[256];
            int rc = cql_call_wait(calls[i], NULL, e, sizeof(e));
            /* on the closed connection: lost; on the other: no answer ever */
            assert_true(rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT);
        }
        eventually_ok(c, st, CQL_NO_TOKEN);
    }
    single_end(&one);
}

/* A server that accepts and never answers STARTUP: open gives up after its
 * timeout (the old client waited in read() for ever). */
static void test_silent_handshake_is_bounded(void **state)
{
    (void)state;
    fake_t *f = fake_start("127.0.0.1", 0, "0");
    atomic_store(&f->mute_startup, 1);
    char hosts[64];
    snprintf(hosts, sizeof(hosts), "127.0.0.1:%u", f->port);
    cql_client_t *c = NULL;
    cql_client_config_t cfg = {.hosts = hosts, .timeout_ms = 200};
    assert_int_equal(cql_client_open(&c, &cfg, err, sizeof(err)), NATTER_EUNAVAIL);
    assert_null(c);
    fake_stop(f);
}

/* ---- routing on a fake ring ------------------------------------------------ */

/* The fake ring's nodes and the token each owns. */
static const char *const ips[3] = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};
static const char *const toks[3] = {"-100", "0", "100"};

/* Three fake nodes owning tokens -100, 0 and 100 (so node 2 owns (-100, 0],
 * node 3 (0, 100], node 1 the rest). The client is given node 1 only and
 * finds the others; a token goes to its owner; with the owner gone it goes
 * to the next node clockwise; the owner is marked down and then back. */
static void test_ring_routing_and_host_state(void **state)
{
    (void)state;
    fake_t *f[3];
    f[0] = fake_start(ips[0], 0, toks[0]);
    for (int i = 1; i < 3; i++)
        f[i] = fake_start(ips[i], f[0]->port, toks[i]);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (j != i)
                fake_add_peer(f[i], ips[j], toks[j]);
    char contact[64], addr[3][64];
    uint16_t port = f[0]->port;
    snprintf(contact, sizeof(contact), "127.0.0.1:%u", port);
    for (int i = 0; i < 3; i++)
        snprintf(addr[i], sizeof(addr[i]), "%s:%u", ips[i], port);
    cql_client_t *c = open_client(contact, 1000);
    cql_host_stats_t hs[8];
    assert_int_equal(cql_client_hosts(c, hs, 8), 3);
    cql_stmt_t *st = prepare(c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&f[i]->prepares), 1); /* prepared on every node */

    /* token -50 is node 2's, 50 node 3's, 1000 and -1000 node 1's (wrapping) */
    const int64_t tokens[4] = {-50, 50, 1000, -1000};
    const int owner[4] = {1, 2, 0, 0};
    for (int t = 0; t < 4; t++) {
        int before[3];
        for (int i = 0; i < 3; i++)
            before[i] = atomic_load(&f[i]->executes);
        for (int k = 0; k < 20; k++)
            assert_int_equal(exec_wait(c, st, 0, tokens[t]), NATTER_OK);
        for (int i = 0; i < 3; i++)
            assert_int_equal(atomic_load(&f[i]->executes) - before[i], i == owner[t] ? 20 : 0);
    }

    /* node 2 dies: its tokens go to node 3, the next clockwise */
    fake_stop(f[1]);
    uint64_t deadline = 0;
    while (host_stats(c, addr[1]).up)
        if (!poll_more(&deadline))
            break;
    assert_int_equal(host_stats(c, addr[1]).up, 0);
    uint64_t requests3 = host_stats(c, addr[2]).requests;
    for (int k = 0; k < 20; k++)
        assert_int_equal(exec_wait(c, st, 0, -50), NATTER_OK);
    assert_true(host_stats(c, addr[2]).requests >= requests3 + 20);

    /* and comes back: the monitor reconnects, routing returns to it */
    f[1] = fake_start(ips[1], port, toks[1]);
    atomic_store(&f[1]->prepared, 0); /* a node restarted without its statements */
    for (int j = 0; j < 3; j++)
        if (j != 1)
            fake_add_peer(f[1], ips[j], toks[j]);
    deadline = 0;
    while (!host_stats(c, addr[1]).up)
        if (!poll_more(&deadline))
            break;
    assert_int_equal(host_stats(c, addr[1]).up, 1);
    int before = atomic_load(&f[1]->executes);
    for (int k = 0; k < 20; k++) /* it forgot the statement: the first meets UNPREPARED */
        assert_int_equal(exec_wait(c, st, 0, -50), NATTER_OK);
    assert_int_equal(atomic_load(&f[1]->executes) - before, 21);
    assert_int_equal(host_stats(c, addr[1]).reprepares, 1);

    cql_client_close(c);
    for (int i = 0; i < 3; i++)
        fake_stop(f[i]);
}

/* Whether the client has address in its ring. */
static int in_ring(cql_client_t *c, const char *address)
{
    cql_host_stats_t hosts[8];
    size_t n = cql_client_hosts(c, hosts, 8);
    for (size_t i = 0; i < n && i < 8; i++)
        if (strcmp(hosts[i].address, address) == 0 && hosts[i].in_ring)
            return 1;
    return 0;
}

/* Polls until the client knows address in (want 1) or out of its ring. */
static void wait_in_ring(cql_client_t *c, const char *address, int want)
{
    uint64_t deadline = 0;
    while (in_ring(c, address) != want)
        if (!poll_more(&deadline))
            fail_msg("%s is %s the client's ring after 10 s", address, want ? "not in" : "still in");
}

/* The ring of the event tests: nodes 1 and 2 of ips/toks running, each the
 * other's peer; node 3 joins later. Returns their port. */
static uint16_t two_of_three(fake_t *f[3])
{
    f[0] = fake_start(ips[0], 0, toks[0]);
    f[1] = fake_start(ips[1], f[0]->port, toks[1]);
    f[2] = NULL;
    fake_add_peer(f[0], ips[1], toks[1]);
    fake_add_peer(f[1], ips[0], toks[0]);
    return f[0]->port;
}

/* Nodes joining and leaving a running cluster. The client, opened on a ring
 * of two, REGISTERs a connection for events; on TOPOLOGY_CHANGE it reads the
 * ring again: a third node that joined gets the tokens it owns, and once it
 * left the ring it gets none (though it still answers) and the client's
 * connections to it are closed. */
static void test_ring_follows_topology_events(void **state)
{
    (void)state;
    fake_t *f[3];
    uint16_t port = two_of_three(f);
    char contact[64], addr3[64];
    snprintf(contact, sizeof(contact), "127.0.0.1:%u", port);
    snprintf(addr3, sizeof(addr3), "127.0.0.3:%u", port);
    cql_client_t *c = open_client(contact, 1000);
    cql_stmt_t *st = prepare(c);
    cql_host_stats_t hs[8];
    assert_int_equal(cql_client_hosts(c, hs, 8), 2);
    wait_ring_reads(c, 2); /* at open, and when the events connection opened: node 3 can only come by an event */
    assert_int_equal(fake_conns(f[0], 1) + fake_conns(f[1], 1), 1); /* one events connection */

    /* token 50 is past the last token (0): node 1's, wrapping */
    int before = atomic_load(&f[0]->executes);
    for (int k = 0; k < 20; k++)
        assert_int_equal(exec_wait(c, st, 0, 50), NATTER_OK);
    assert_int_equal(atomic_load(&f[0]->executes) - before, 20);

    /* node 3 joins, owning (0, 100] */
    f[2] = fake_start(ips[2], port, toks[2]);
    fake_add_peer(f[2], ips[0], toks[0]);
    fake_add_peer(f[2], ips[1], toks[1]);
    fake_add_peer(f[0], ips[2], toks[2]);
    fake_add_peer(f[1], ips[2], toks[2]);
    for (int i = 0; i < 2; i++)
        fake_event(f[i], "TOPOLOGY_CHANGE", "NEW_NODE", ips[2], port);
    wait_in_ring(c, addr3, 1);
    before = atomic_load(&f[2]->executes);
    for (int k = 0; k < 20; k++)
        assert_int_equal(exec_wait(c, st, 0, 50), NATTER_OK);
    assert_int_equal(atomic_load(&f[2]->executes) - before, 20);
    cql_client_stats_t cs;
    cql_client_stats(c, &cs);
    assert_int_equal(cs.events, 1);
    assert_int_equal(cs.ring_changes, 1);

    /* and leaves: it still answers, but no longer gets requests or connections */
    fake_remove_peer(f[0], ips[2]);
    fake_remove_peer(f[1], ips[2]);
    for (int i = 0; i < 2; i++)
        fake_event(f[i], "TOPOLOGY_CHANGE", "REMOVED_NODE", ips[2], port);
    wait_in_ring(c, addr3, 0);
    int before1 = atomic_load(&f[0]->executes), before3 = atomic_load(&f[2]->executes);
    for (int k = 0; k < 20; k++)
        assert_int_equal(exec_wait(c, st, 0, 50), NATTER_OK);
    assert_int_equal(atomic_load(&f[0]->executes) - before1, 20);
    assert_int_equal(atomic_load(&f[2]->executes), before3);
    wait_fake_conns(f[2], 0, 1);
    cql_client_stats(c, &cs);
    assert_int_equal(cs.ring_changes, 2);

    cql_client_close(c);
    for (int i = 0; i < 3; i++)
        fake_stop(f[i]);
}

/* The node holding the events connection dies: the client opens it again
 * on a node still up (events sent while there was none are lost, so it reads
 * the ring again at once), and events from there are heard. */
static void test_events_connection_moves(void **state)
{
    (void)state;
    fake_t *f[3];
    uint16_t port = two_of_three(f);
    char contact[64], addr3[64];
    snprintf(contact, sizeof(contact), "127.0.0.1:%u", port);
    snprintf(addr3, sizeof(addr3), "127.0.0.3:%u", port);
    cql_client_t *c = open_client(contact, 1000);
    wait_ring_reads(c, 2);
    int holder = fake_conns(f[0], 1) == 1 ? 0 : 1, other = 1 - holder;
    assert_int_equal(fake_conns(f[holder], 1), 1);
    int reads = atomic_load(&f[other]->peers_reads);

    fake_stop(f[holder]);
    f[holder] = NULL;
    wait_fake_conns(f[other], 1, 0);
    assert_int_equal(fake_conns(f[other], 1), 1);
    wait_ring_reads(c, 3); /* again, from the survivor */
    assert_true(atomic_load(&f[other]->peers_reads) > reads);

    f[2] = fake_start(ips[2], port, toks[2]);
    fake_add_peer(f[2], ips[other], toks[other]);
    fake_add_peer(f[other], ips[2], toks[2]);
    fake_event(f[other], "TOPOLOGY_CHANGE", "NEW_NODE", ips[2], port);
    wait_in_ring(c, addr3, 1);
    cql_client_stats_t cs;
    cql_client_stats(c, &cs);
    assert_int_equal(cs.events, 1); /* heard on the moved connection */

    cql_client_close(c);
    fake_stop(f[other]);
    fake_stop(f[2]);
}

/* A contact point given by name ("localhost") is the node the others list
 * by address in system.peers: the client learns the address from the node
 * itself (system.local), so reading the ring from the other node keeps one
 * host for it, in the ring, rather than a second one that would take its
 * place. */
static void test_contact_point_by_name(void **state)
{
    (void)state;
    fake_t *f[2];
    f[0] = fake_start("127.0.0.1", 0, "-100");
    uint16_t port = f[0]->port;
    f[1] = fake_start("127.0.0.2", port, "100");
    fake_add_peer(f[0], "127.0.0.2", "100");
    fake_add_peer(f[1], "127.0.0.1", "-100");
    char contact[64];
    snprintf(contact, sizeof(contact), "localhost:%u", port);
    cql_client_t *c = open_client(contact, 1000);
    wait_ring_reads(c, 2);
    assert_int_equal(atomic_load(&f[1]->peers_reads), 1); /* the second read was the other node's */
    cql_host_stats_t hs[8];
    assert_int_equal(cql_client_hosts(c, hs, 8), 2);
    assert_string_equal(hs[0].address, contact);
    assert_int_equal(hs[0].in_ring, 1);
    assert_int_equal(hs[1].in_ring, 1);
    cql_client_close(c);
    for (int i = 0; i < 2; i++)
        fake_stop(f[i]);
}

/* A contact point in brackets, as an IPv6 address must be ("[::1]:9042"),
 * is the address inside them; a bracket left open is refused. */
static void test_contact_point_in_brackets(void **state)
{
    (void)state;
    fake_t *f = fake_start("127.0.0.1", 0, "0");
    char contact[64];
    snprintf(contact, sizeof(contact), "[127.0.0.1]:%u", f->port);
    cql_client_t *c = open_client(contact, 1000);
    wait_ring_reads(c, 1);
    cql_host_stats_t hs[8];
    assert_int_equal(cql_client_hosts(c, hs, 8), 1);
    assert_int_equal(hs[0].up, 1);
    cql_client_close(c);
    static const char *const bad[] = {"[127.0.0.1", "[127.0.0.1]9042", "[]:9042"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cql_client_config_t cfg = {.hosts = bad[i], .conns_per_host = 2, .timeout_ms = 1000};
        assert_int_equal(cql_client_open(&c, &cfg, err, sizeof(err)), NATTER_EINVAL);
        assert_non_null(strstr(err, "bad CQL host list"));
    }
    fake_stop(f);
}

/* How many hosts the client has, and how many of them are in its ring. */
static size_t ring_size(cql_client_t *c, size_t *known)
{
    cql_host_stats_t hosts[64];
    size_t n = cql_client_hosts(c, hosts, 64), in = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        in += hosts[i].in_ring;
    *known = n;
    return in;
}

/* Polls until the client's ring has n hosts. */
static void wait_ring_size(cql_client_t *c, size_t n)
{
    uint64_t deadline = 0;
    size_t known, in;
    while ((in = ring_size(c, &known)) != n)
        if (!poll_more(&deadline))
            fail_msg("the ring has %zu hosts of %zu known, not %zu, after 10 s", in, known, n);
}

/* A cluster whose nodes come and go at new addresses: three times, 40
 * nodes join a one-node ring and leave it, 121 addresses in all. Once the
 * client's 64 slots are taken, each newcomer takes the slot of a node that
 * left (the old code left every node past 64 out of the ring: 24 of the
 * second round's 41), and a request for a newcomer's token reaches it (in
 * the third round, on a slot that held another node before). */
static void test_host_slots_reused(void **state)
{
    (void)state;
    enum { ROUND = 40 };
    fake_t *f0 = fake_start("127.0.0.1", 0, "0");
    uint16_t port = f0->port;
    char contact[64];
    snprintf(contact, sizeof(contact), "127.0.0.1:%u", port);
    cql_client_t *c = open_client(contact, 5000);
    cql_stmt_t *st = prepare(c);
    wait_ring_reads(c, 2);
    for (int k = 0; k < 3; k++) {
        char ip[ROUND][16], tok[ROUND][24];
        for (int i = 0; i < ROUND; i++) {
            snprintf(ip[i], sizeof(ip[i]), "127.0.%u.%u", (unsigned char)(k + 1), (unsigned char)(i + 1));
            snprintf(tok[i], sizeof(tok[i]), "%d", k * 1000 + i + 1);
            fake_add_peer(f0, ip[i], tok[i]);
        }
        fake_t *live = fake_start(ip[0], port, tok[0]); /* the others are addresses nobody answers on */
        fake_event(f0, "TOPOLOGY_CHANGE", "NEW_NODE", ip[0], port);
        wait_ring_size(c, ROUND + 1);
        int before = atomic_load(&live->executes);
        for (int j = 0; j < 10; j++) /* its range is (0, tok[0]] */
            assert_int_equal(exec_wait(c, st, 0, k * 1000 + 1), NATTER_OK);
        assert_int_equal(atomic_load(&live->executes) - before, 10);

        for (int i = 0; i < ROUND; i++)
            fake_remove_peer(f0, ip[i]);
        fake_event(f0, "TOPOLOGY_CHANGE", "REMOVED_NODE", ip[0], port);
        wait_ring_size(c, 1);
        wait_fake_conns(live, 0, 1); /* the monitor closes what went to it */
        fake_stop(live);
    }
    cql_client_close(c);
    fake_stop(f0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeouts_race_replies),
        cmocka_unit_test(test_silent_server_does_not_leak_streams),
        cmocka_unit_test(test_reprepare_while_executing),
        cmocka_unit_test(test_connection_lost_then_back),
        cmocka_unit_test(test_silent_handshake_is_bounded),
        cmocka_unit_test(test_ring_routing_and_host_state),
        cmocka_unit_test(test_ring_follows_topology_events),
        cmocka_unit_test(test_contact_point_by_name),
        cmocka_unit_test(test_contact_point_in_brackets),
        cmocka_unit_test(test_events_connection_moves),
        cmocka_unit_test(test_host_slots_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
