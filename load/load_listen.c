/* load_listen — see load_listen.h.
 *
 * Map: a sock is one listener's WebSocket, WAITING (in `waiting`, due at
 * due_ns), CONNECTING (until 101, at most CONNECT_WINDOW at once), OPEN, or
 * GONE. A job is one history page to fetch for one chat of one sock; jobs
 * wait in `jobs` and go out on a small pool of keep-alive connections per
 * target. Timers are the due times of waiting socks and jobs; a turn
 * sleeps until the earliest (never longer than asked).
 */
#include "load_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

enum {
    CONNECT_WINDOW = 256,   /* opens in flight per set */
    POOL = 4,               /* catch-up connections per target */
    CATCHUP_TRIES = 10,     /* a page's failed fetches before its chat is given up */
    CLOSES_PRINTED = 5,     /* closes each set prints; the rest are only counted */
};
#define BACKOFF_MIN_NS 100000000ull  /* 100 ms, doubling per failure */
#define BACKOFF_MAX_NS 2000000000ull /* 2 s */
#define STUCK_NS 10000000000ull      /* an open or a page request taking longer is abandoned */

enum sock_state { S_WAITING, S_CONNECTING, S_OPEN, S_GONE };

typedef struct sock {
    load_ws_t ws; /* ws.user is the sock */
    load_lset_t *set;
    uint32_t listener;
    uint8_t state;
    uint8_t ever_open;
    uint16_t tries;     /* failed opens in a row */
    uint64_t due_ns;    /* WAITING: not before; CONNECTING: started at */
    load_id_t *seen_max; /* per chat of the listener: the highest id seen */
} sock_t;

typedef struct job {
    uint32_t sock, chat; /* chat: index into the listener's chats */
    load_id_t after;
    uint32_t tries;
    uint64_t due_ns;
} job_t;

typedef struct pool_conn {
    load_http_t http;
    load_lset_t *set;
    uint32_t target;
    job_t job; /* the page in flight */
} pool_conn_t;

struct load_lset {
    const load_t *L;
    load_tls_t *tls;
    size_t from, n;
    sock_t *socks;
    int epfd;
    load_emit_fn emit;
    void *arg;
    uint32_t *waiting; /* sock indices */
    size_t nwaiting, waiting_cap;
    size_t connecting;
    job_t *jobs;
    size_t njobs, jobs_cap;
    pool_conn_t *pool; /* POOL per target */
    size_t npool;
    uint64_t next_due_ns; /* earliest due time seen on the last scan */
    uint64_t typing_every_ns, typing_due_ns; /* this set's share of --typing; 0: none */
    uint64_t last_sweep_ns;
    uint32_t rnd;
    unsigned printed;
};

static const load_ws_handler_t handler;

static void emit(load_lset_t *s, uint8_t kind, uint32_t listener, uint64_t a, uint64_t t, load_id_t id)
{
    load_rec_t r = {.kind = kind, .listener = listener, .a = a, .t = t, .at = load_now_ns(), .id = id};
    s->emit(s->arg, &r);
}

static const load_id_t no_id = {0, 0};

/* --- waiting and backoff --------------------------------------------------- */

static uint64_t backoff_ns(load_lset_t *s, unsigned tries)
{
    uint64_t d = BACKOFF_MIN_NS;
    for (unsigned i = 1; i < tries && d < BACKOFF_MAX_NS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_NS)
        d = BACKOFF_MAX_NS;
    s->rnd ^= s->rnd << 13; /* xorshift32 jitter: 0.5 to 1.5 of d, so a crowd spreads out */
    s->rnd ^= s->rnd >> 17;
    s->rnd ^= s->rnd << 5;
    return d / 2 + (uint64_t)((double)d * (s->rnd / 4294967296.0));
}

static void wait_for(load_lset_t *s, sock_t *k, uint64_t delay_ns)
{
    k->state = S_WAITING;
    k->due_ns = load_now_ns() + delay_ns;
    if (s->nwaiting == s->waiting_cap) {
        s->waiting_cap = s->waiting_cap ? s->waiting_cap * 2 : 64;
        s->waiting = load_xrealloc(s->waiting, s->waiting_cap * sizeof(uint32_t));
    }
    s->waiting[s->nwaiting++] = (uint32_t)(k - s->socks);
}

static void print_close(load_lset_t *s, const sock_t *k, const char *what, int code)
{
    char why[160];
    if (s->printed++ < CLOSES_PRINTED)
        fprintf(stderr, "natter-load: listener %u (%s): %s (%s)\n", (unsigned)k->listener,
                s->L->users[s->L->listeners[k->listener].user].name, what, load_strerror(code, why, sizeof(why)));
}

/* An open that failed (refused, reset, an upgrade answered 503 …). */
static void open_failed(load_lset_t *s, sock_t *k, int code)
{
    k->tries++;
    if (!k->ever_open && k->tries >= LOAD_LISTEN_OPEN_TRIES) {
        k->state = S_GONE;
        print_close(s, k, "gave up opening", code);
        emit(s, LOAD_REC_FAILED, k->listener, (uint64_t)(int64_t)code, 0, no_id);
        return;
    }
    wait_for(s, k, backoff_ns(s, k->tries));
}

/* --- sockets --------------------------------------------------------------- */

static void start_open(load_lset_t *s, sock_t *k)
{
    const load_t *L = s->L;
    const load_listener_t *l = &L->listeners[k->listener];
    load_dest_t d = load_target_dest(L, l->target, s->tls);
    char path[512];
    L->api->listen_path(&L->users[l->user], path, sizeof(path));
    struct sockaddr_in src = {.sin_family = AF_INET};
    int loopback = (ntohl(d.addr->sin_addr.s_addr) >> 24) == 127;
    src.sin_addr.s_addr = htonl(0x7F000002u + k->listener / LOAD_LISTEN_PER_SOURCE);
    int rc = load_ws_open(&k->ws, s->epfd, &d, loopback ? &src : NULL, path, &handler, k);
    if (rc < 0) {
        open_failed(s, k, rc);
        return;
    }
    k->state = S_CONNECTING;
    k->due_ns = load_now_ns();
    s->connecting++;
}

/* Remembers the highest id the listener saw in its chat slot k; returns
 * the index of seq's chat among the listener's chats, or -1. */
static long chat_index(const load_lset_t *s, const sock_t *k, uint64_t seq)
{
    const load_listener_t *l = &s->L->listeners[k->listener];
    size_t chat = (size_t)(seq % s->L->nchats);
    for (size_t i = 0; i < l->nchats; i++)
        if (l->chats[i] == chat)
            return (long)i;
    return -1;
}

static void note_seen(sock_t *k, long i, load_id_t id)
{
    if (i >= 0 && load_id_cmp(id, k->seen_max[i]) > 0)
        k->seen_max[i] = id;
}

static void on_message(load_ws_t *w, const char *data, size_t len)
{
    sock_t *k = w->user;
    load_lset_t *s = k->set;
    uint64_t t, seq;
    load_id_t id;
    if (s->L->api->scan_push(data, len, &t, &seq, &id) != 0) {
        emit(s, LOAD_REC_FOREIGN, k->listener, 0, 0, no_id);
        return;
    }
    note_seen(k, chat_index(s, k, seq), id);
    emit(s, LOAD_REC_PUSH, k->listener, seq, t, id);
}

static void add_job(load_lset_t *s, job_t j)
{
    if (s->njobs == s->jobs_cap) {
        s->jobs_cap = s->jobs_cap ? s->jobs_cap * 2 : 64;
        s->jobs = load_xrealloc(s->jobs, s->jobs_cap * sizeof(job_t));
    }
    s->jobs[s->njobs++] = j;
}

static void on_open(load_ws_t *w)
{
    sock_t *k = w->user;
    load_lset_t *s = k->set;
    s->connecting--;
    k->state = S_OPEN;
    k->tries = 0;
    emit(s, LOAD_REC_OPEN, k->listener, k->ever_open, k->ws.tls.resumed, no_id);
    if (k->ever_open) {
        /* the cursor is what was seen before this socket delivered anything */
        const load_listener_t *l = &s->L->listeners[k->listener];
        for (size_t i = 0; i < l->nchats; i++)
            add_job(s, (job_t){(uint32_t)(k - s->socks), (uint32_t)i, k->seen_max[i], 0, 0});
    }
    k->ever_open = 1;
}

static void on_close(load_ws_t *w, int code)
{
    sock_t *k = w->user;
    load_lset_t *s = k->set;
    if (k->state == S_CONNECTING) {
        s->connecting--;
        open_failed(s, k, code);
        return;
    }
    emit(s, LOAD_REC_DOWN, k->listener, (uint64_t)(int64_t)code, 0, no_id);
    if (s->L->api->history_path == NULL) {
        k->state = S_GONE;
        print_close(s, k, "socket closed, no history to catch up from", code);
        return;
    }
    print_close(s, k, "socket closed, reconnecting", code);
    wait_for(s, k, backoff_ns(s, 1));
}

static const load_ws_handler_t handler = {on_open, on_message, on_close};

/* --- catch-up -------------------------------------------------------------- */

typedef struct page {
    load_lset_t *set;
    sock_t *sock;
    uint32_t chat;
    load_id_t cursor;
    size_t items;
} page_t;

static void on_item(void *arg, load_id_t id, int ours, uint64_t t, uint64_t seq)
{
    page_t *pg = arg;
    load_lset_t *s = pg->set;
    sock_t *k = pg->sock;
    if (load_id_cmp(id, pg->cursor) <= 0)
        emit(s, LOAD_REC_HISTORY_DISORDER, k->listener, 0, 0, id);
    else
        pg->cursor = id;
    pg->items++;
    long i = ours ? chat_index(s, k, seq) : -1;
    if (i != (long)pg->chat) { /* not ours, or another chat's message in this chat's history */
        emit(s, LOAD_REC_FOREIGN, k->listener, 0, 0, no_id);
        return;
    }
    note_seen(k, i, id);
    emit(s, LOAD_REC_HISTORY, k->listener, seq, t, id);
}

static void page_failed(load_lset_t *s, job_t j, int status)
{
    if (status == 429 || status == 503 || status < 0) {
        if (++j.tries < CATCHUP_TRIES) {
            j.due_ns = load_now_ns() + backoff_ns(s, j.tries);
            add_job(s, j);
            return;
        }
    }
    emit(s, LOAD_REC_CATCHUP_FAILED, s->socks[j.sock].listener, (uint64_t)(int64_t)status, 0, no_id);
}

static void on_page(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)c;
    pool_conn_t *pc = arg;
    load_lset_t *s = pc->set;
    job_t j = pc->job;
    if (status != 200) {
        page_failed(s, j, status);
        return;
    }
    page_t pg = {s, &s->socks[j.sock], j.chat, j.after, 0};
    int more = s->L->api->scan_history(body, len, on_item, &pg);
    if (more < 0) {
        emit(s, LOAD_REC_CATCHUP_FAILED, pg.sock->listener, (uint64_t)(int64_t)-EPROTO, 0, no_id);
    } else if (more && pg.items > 0) {
        j.after = pg.cursor;
        j.tries = 0;
        j.due_ns = 0;
        add_job(s, j);
    }
}

/* Hands due jobs to idle pool connections of their target. */
static void pump_jobs(load_lset_t *s, uint64_t now)
{
    const load_t *L = s->L;
    for (size_t p = 0; p < s->npool && s->njobs > 0; p++) {
        pool_conn_t *pc = &s->pool[p];
        if (load_http_busy(&pc->http))
            continue;
        for (size_t i = 0; i < s->njobs; i++) {
            job_t j = s->jobs[i];
            const load_listener_t *l = &L->listeners[s->socks[j.sock].listener];
            if (l->target != pc->target)
                continue;
            if (j.due_ns > now) {
                if (j.due_ns < s->next_due_ns)
                    s->next_due_ns = j.due_ns;
                continue;
            }
            s->jobs[i] = s->jobs[--s->njobs];
            char path[256];
            L->api->history_path(&L->chats[l->chats[j.chat]], j.after, path, sizeof(path));
            pc->job = j;
            int rc = load_http_request(&pc->http, "GET", path, L->users[l->user].headers, NULL, 0, on_page, pc);
            if (rc < 0)
                page_failed(s, j, rc);
            break;
        }
    }
}

/* Starts due opens while the window has room. */
static void pump_opens(load_lset_t *s, uint64_t now)
{
    size_t i = 0;
    while (i < s->nwaiting && s->connecting < CONNECT_WINDOW) {
        sock_t *k = &s->socks[s->waiting[i]];
        if (k->due_ns > now) {
            if (k->due_ns < s->next_due_ns)
                s->next_due_ns = k->due_ns;
            i++;
            continue;
        }
        s->waiting[i] = s->waiting[--s->nwaiting];
        start_open(s, k);
    }
}

/* Abandons opens and page requests that have hung for STUCK_NS. Those
 * started in this turn began after `now`: hence the sums, not differences. */
static void sweep_stuck(load_lset_t *s, uint64_t now)
{
    for (size_t i = 0; i < s->n; i++) {
        sock_t *k = &s->socks[i];
        if (k->state == S_CONNECTING && now > k->due_ns + STUCK_NS) {
            load_ws_drop(&k->ws);
            s->connecting--;
            open_failed(s, k, -ETIMEDOUT);
        }
    }
    for (size_t p = 0; p < s->npool; p++)
        if (load_http_busy(&s->pool[p].http) && now > s->pool[p].http.sent_ns + STUCK_NS)
            load_http_abort(&s->pool[p].http, -ETIMEDOUT);
}

/* --- the set --------------------------------------------------------------- */

load_lset_t *load_lset_new(const load_t *L, size_t from, size_t to, load_tls_t *tls, load_emit_fn emit_fn,
                           void *arg)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return NULL;
    load_lset_t *s = load_xcalloc(1, sizeof(*s));
    s->L = L;
    s->tls = tls;
    s->from = from;
    s->n = to - from;
    s->epfd = epfd;
    s->emit = emit_fn;
    s->arg = arg;
    s->rnd = (uint32_t)(from * 2654435761u) | 1u;
    s->socks = load_xcalloc(s->n ? s->n : 1, sizeof(sock_t));
    for (size_t i = 0; i < s->n; i++) {
        sock_t *k = &s->socks[i];
        k->ws.io.fd = -1;
        k->set = s;
        k->listener = (uint32_t)(from + i);
        k->seen_max = load_xcalloc(L->listeners[from + i].nchats, sizeof(load_id_t));
        wait_for(s, k, 0);
    }
    if (L->o.typing_rate > 0 && s->n > 0) { /* the set's share of the rate, by its listeners */
        double rate = L->o.typing_rate * (double)s->n / (double)L->nlisteners;
        s->typing_every_ns = (uint64_t)(1e9 / rate) + 1;
        s->typing_due_ns = load_now_ns();
    }
    if (L->api->history_path != NULL) {
        s->npool = POOL * L->ntargets;
        s->pool = load_xcalloc(s->npool, sizeof(pool_conn_t));
        for (size_t p = 0; p < s->npool; p++) {
            pool_conn_t *pc = &s->pool[p];
            pc->target = (uint32_t)(p / POOL);
            pc->set = s;
            load_dest_t d = load_target_dest(L, pc->target, tls);
            load_http_init(&pc->http, epfd, &d);
        }
    }
    return s;
}

/* Sends the typing indicators due by now, each on a random open socket of
 * the set, for one of its listener's chats; one that falls behind by more
 * than a second skips ahead (open loop, but no burst after a stall). */
static void pump_typing(load_lset_t *s, uint64_t now)
{
    if (s->typing_every_ns == 0)
        return;
    if (now > s->typing_due_ns + 1000000000ull)
        s->typing_due_ns = now;
    for (; s->typing_due_ns <= now; s->typing_due_ns += s->typing_every_ns) {
        s->rnd = s->rnd * 1103515245u + 12345u;
        sock_t *k = &s->socks[(s->rnd >> 8) % s->n];
        const load_listener_t *l = &s->L->listeners[k->listener];
        if (k->state != S_OPEN || l->nchats == 0)
            continue;
        char frame[128];
        int len = snprintf(frame, sizeof(frame), "{\"type\":\"typing\",\"chat_id\":\"%s\"}",
                           s->L->chats[l->chats[(s->rnd >> 16) % l->nchats]].id_str);
        load_ws_send_text(&k->ws, frame, (size_t)len);
    }
    if (s->typing_due_ns < s->next_due_ns)
        s->next_due_ns = s->typing_due_ns;
}

int load_lset_watch(load_lset_t *s, load_io_t *io)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = io};
    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, io->fd, &ev) == 0 ? 0 : -errno;
}

void load_lset_turn(load_lset_t *s, int timeout_ms)
{
    uint64_t now = load_now_ns();
    s->next_due_ns = UINT64_MAX;
    pump_opens(s, now);
    pump_jobs(s, now);
    pump_typing(s, now);
    if (now - s->last_sweep_ns > 1000000000ull) {
        sweep_stuck(s, now);
        s->last_sweep_ns = now;
    }
    if (s->next_due_ns != UINT64_MAX) {
        uint64_t wait_ms = s->next_due_ns > now ? (s->next_due_ns - now) / 1000000 + 1 : 0;
        if (wait_ms < (uint64_t)timeout_ms)
            timeout_ms = (int)wait_ms;
    }
    struct epoll_event evs[256];
    int n = epoll_wait(s->epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        load_io_t *io = evs[i].data.ptr;
        io->on_event(io, evs[i].events);
    }
}

void load_lset_free(load_lset_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        load_ws_drop(&s->socks[i].ws);
        load_ws_free(&s->socks[i].ws);
        free(s->socks[i].seen_max);
    }
    for (size_t p = 0; p < s->npool; p++)
        load_http_free(&s->pool[p].http);
    close(s->epfd);
    free(s->pool);
    free(s->socks);
    free(s->waiting);
    free(s->jobs);
    free(s);
}
