/* load_listen — the listener thread: one WebSocket per listening user, every
 * pushed message checked and timed.
 *
 * A push is read by the dialect's scan_push (load_api.h): our own content
 * "t=<ns> s=<seq>" and the message id. A push whose content is not ours is
 * counted as foreign and otherwise ignored.
 *
 * Checks, per listener and chat: a message number seen twice is a
 * duplicate; an id below the last one delivered is a reorder (natter
 * promises every socket a chat's messages in id order). A dialect without
 * ids numbers each chat's messages in the order any listener first saw
 * them, so a listener that sees two of them the other way round than an
 * earlier listener did is a reorder. Loss is decided at the end by
 * load_listen_verify(), against what the sender saw accepted.
 */
#include "load_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int bits_test_set(load_bits_t *b, uint64_t i)
{
    size_t w = (size_t)(i / 64);
    if (w >= b->nwords) {
        size_t n = b->nwords ? b->nwords : 16;
        while (n <= w)
            n *= 2;
        b->w = load_xrealloc(b->w, n * sizeof(uint64_t));
        memset(b->w + b->nwords, 0, (n - b->nwords) * sizeof(uint64_t));
        b->nwords = n;
    }
    uint64_t m = (uint64_t)1 << (i % 64);
    int was = (b->w[w] & m) != 0;
    b->w[w] |= m;
    return was;
}

static int bits_test(const load_bits_t *b, uint64_t i)
{
    size_t w = (size_t)(i / 64);
    return w < b->nwords && (b->w[w] >> (i % 64)) & 1;
}

static void handle_push(load_t *L, load_user_t *u, const char *data, size_t len)
{
    load_listen_state_t *st = &L->lst;
    uint64_t t, seq, id;
    if (L->api->scan_push(data, len, &t, &seq, &id) != 0 || seq >= __atomic_load_n(&L->seq_end, __ATOMIC_ACQUIRE)) {
        st->total.foreign++;
        return;
    }
    uint64_t now = load_now_ns();
    size_t chat = (size_t)(seq % L->nchats);
    uint64_t cseq = seq / L->nchats;
    size_t slot = SIZE_MAX;
    for (size_t k = 0; k < u->nchats; k++)
        if (u->chats[k] == chat) {
            slot = u->slots[k];
            break;
        }
    if (slot == SIZE_MAX) {
        st->total.foreign++;
        return;
    }
    load_chat_t *c = &L->chats[chat];
    if (bits_test_set(&c->seen[slot], cseq)) {
        st->total.duplicated++;
        st->interval.duplicated++;
        return;
    }
    if (seq >= st->first_id_cap) {
        size_t n = st->first_id_cap ? st->first_id_cap : 65536;
        while (n <= seq)
            n *= 2;
        st->first_id = load_xrealloc(st->first_id, n * sizeof(uint64_t));
        memset(st->first_id + st->first_id_cap, 0, (n - st->first_id_cap) * sizeof(uint64_t));
        st->first_id_cap = n;
    }
    if (!L->api->has_ids)
        id = st->first_id[seq] != 0 ? st->first_id[seq] : ++c->next_rank;
    if (id <= c->last_id[slot]) {
        st->total.reordered++;
        st->interval.reordered++;
    } else {
        c->last_id[slot] = id;
    }
    if (st->first_id[seq] == 0)
        st->first_id[seq] = id;
    else if (st->first_id[seq] != id)
        st->id_mismatch++;
    st->total.delivered++;
    st->interval.delivered++;
    uint64_t lat = now > t ? now - t : 0;
    load_hist_record(&st->hist_total, lat);
    load_hist_record(&st->hist_interval, lat);
    load_hist_record(&st->hist_step, lat);
}

static void on_message(load_ws_t *w, const char *data, size_t len)
{
    load_user_t *u = w->user;
    handle_push(u->run, u, data, len);
}

static void on_open(load_ws_t *w)
{
    load_user_t *u = w->user;
    load_t *L = u->run;
    L->lst.opened++;
    u->listening = 1;
}

static void on_close(load_ws_t *w, int code)
{
    load_user_t *u = w->user;
    load_t *L = u->run;
    if (w->state == LOAD_WS_DOWN && u->listening) {
        L->lst.total.closed++;
        L->lst.interval.closed++;
    }
    if (!u->listening)
        L->lst.failed++;
    fprintf(stderr, "natter-load: listener %s: socket closed (%d)\n", u->name, code);
    u->listening = 0;
}

static const load_ws_handler_t handler = {on_open, on_message, on_close};

static void *listen_main(void *arg)
{
    load_t *L = arg;
    int epfd = L->lst_epfd;
    struct epoll_event evs[256];
    while (!atomic_load(&L->listen_stop)) {
        int n = epoll_wait(epfd, evs, 256, 100);
        if (n <= 0)
            continue;
        pthread_mutex_lock(&L->lst.mu);
        for (int i = 0; i < n; i++) {
            load_io_t *io = evs[i].data.ptr;
            if (io == NULL) {
                uint64_t v;
                if (read(L->listen_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    break;
                continue;
            }
            io->on_event(io, evs[i].events);
        }
        pthread_mutex_unlock(&L->lst.mu);
    }
    return NULL;
}

int load_listen_start(load_t *L)
{
    load_listen_state_t *st = &L->lst;
    pthread_mutex_init(&st->mu, NULL);
    load_hist_init(&st->hist_total);
    load_hist_init(&st->hist_interval);
    load_hist_init(&st->hist_step);
    for (size_t c = 0; c < L->nchats; c++) {
        load_chat_t *ch = &L->chats[c];
        ch->seen = load_xcalloc(ch->nlisteners, sizeof(load_bits_t));
        ch->last_id = load_xcalloc(ch->nlisteners, sizeof(uint64_t));
    }
    L->lst_epfd = epoll_create1(EPOLL_CLOEXEC);
    L->listen_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (L->lst_epfd < 0 || L->listen_efd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(L->lst_epfd, EPOLL_CTL_ADD, L->listen_efd, &ev);
    size_t want = 0;
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < L->nusers; i++) {
        load_user_t *u = &L->users[i];
        u->run = L;
        if (u->nchats == 0)
            continue;
        char path[256];
        L->api->listen_path(u, path, sizeof(path));
        int rc = load_ws_open(&u->ws, L->lst_epfd, &L->addr, L->host, path, &handler, u);
        if (rc < 0) {
            pthread_mutex_unlock(&st->mu);
            fprintf(stderr, "natter-load: listener %s: %s\n", u->name, strerror(-rc));
            return -1;
        }
        want++;
    }
    pthread_mutex_unlock(&st->mu);
    atomic_store(&L->listen_stop, 0);
    if (pthread_create(&L->listen_thread, NULL, listen_main, L) != 0)
        return -1;
    L->listen_running = 1;
    uint64_t deadline = load_now_ns() + 60000000000ull;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        int opened = st->opened, failed = st->failed;
        pthread_mutex_unlock(&st->mu);
        if (failed > 0) {
            fprintf(stderr, "natter-load: %d listener sockets failed to open\n", failed);
            return -1;
        }
        if ((size_t)opened >= want)
            break;
        if (load_now_ns() > deadline) {
            fprintf(stderr, "natter-load: only %d of %zu listener sockets opened within 60 s\n", opened, want);
            return -1;
        }
        usleep(10000);
    }
    if (!L->o.quiet)
        fprintf(stderr, "natter-load: %zu listener sockets open\n", want);
    return 0;
}

void load_listen_stop(load_t *L)
{
    if (!L->listen_running)
        return;
    atomic_store(&L->listen_stop, 1);
    uint64_t one = 1;
    if (write(L->listen_efd, &one, sizeof(one)) < 0)
        perror("natter-load: eventfd");
    pthread_join(L->listen_thread, NULL);
    L->listen_running = 0;
    for (size_t i = 0; i < L->nusers; i++) {
        load_ws_drop(&L->users[i].ws);
        load_ws_free(&L->users[i].ws);
    }
    close(L->lst_epfd);
    close(L->listen_efd);
}

uint64_t load_listen_delivered(load_t *L)
{
    pthread_mutex_lock(&L->lst.mu);
    uint64_t d = L->lst.total.delivered;
    pthread_mutex_unlock(&L->lst.mu);
    return d;
}

void load_listen_verify(load_t *L, uint64_t from, uint64_t to, load_verdict_t *v)
{
    load_listen_state_t *st = &L->lst;
    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&st->mu);
    for (uint64_t seq = from; seq < to; seq++) {
        const load_msg_t *m = &L->msgs[seq];
        load_chat_t *c = &L->chats[seq % L->nchats];
        uint64_t cseq = seq / L->nchats;
        int accepted = m->status >= 200 && m->status < 300;
        size_t seen = 0;
        for (size_t k = 0; k < c->nlisteners; k++)
            seen += (size_t)bits_test(&c->seen[k], cseq);
        if (accepted) {
            v->accepted++;
            v->expected += c->nlisteners;
            v->delivered += seen;
            v->lost += c->nlisteners - seen;
            if (L->api->has_ids && seen > 0 && seq < st->first_id_cap && st->first_id[seq] != m->id)
                v->id_mismatch++;
        } else if (seen > 0) {
            v->unexpected += seen; /* e.g. timed out here, stored there */
        }
    }
    v->duplicated = st->total.duplicated;
    v->reordered = st->total.reordered;
    v->closed = st->total.closed;
    v->id_mismatch += st->id_mismatch;
    pthread_mutex_unlock(&st->mu);
}
