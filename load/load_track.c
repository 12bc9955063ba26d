/* load_track — the delivery checks, fed with every listener's records
 * (load_wire.h) in the order each listener's socket saw them.
 *
 * Per listener and chat (the listener's slot in the chat): a message
 * number pushed twice is a duplicate; a pushed id not above the last one
 * pushed is a reorder (natter promises every socket a chat's messages in
 * id order, also across a reconnect: the new socket only gets what was
 * fanned out after it opened). Loss is decided at the end by
 * load_track_verify(), against what the sender saw accepted.
 *
 * Catch-up merge. A reconnected listener reads the chat's history after
 * the last id it saw while its new socket already gets pushes, so the two
 * overlap: a message may come from history and then be pushed, or the
 * other way round. Each is delivered once, by whichever came first; the
 * later copy is an overlap, dropped by its number, not a duplicate. Only a
 * message pushed twice is a duplicate: `caught_up` marks the messages seen
 * so far by history only, and the first push of one of them clears the
 * mark. History pages are checked for order where they are read
 * (LOAD_REC_HISTORY_DISORDER).
 */
#include "load_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grows the zero-filled array at *p (*cap elements of size bytes) until
 * index i fits, doubling from first; returns the array. */
static void *grow_zeroed(void *p, size_t *cap, size_t i, size_t size, size_t first)
{
    if (i < *cap)
        return p;
    size_t n = *cap ? *cap : first;
    while (n <= i)
        n *= 2;
    p = load_xrealloc(p, n * size);
    memset((char *)p + *cap * size, 0, (n - *cap) * size);
    *cap = n;
    return p;
}

static void bits_set(load_bits_t *b, uint64_t i)
{
    b->w = grow_zeroed(b->w, &b->nwords, (size_t)(i / 64), sizeof(uint64_t), 16);
    b->w[i / 64] |= (uint64_t)1 << (i % 64);
}

static int bits_test(const load_bits_t *b, uint64_t i)
{
    size_t w = (size_t)(i / 64);
    return w < b->nwords && (b->w[w] >> (i % 64)) & 1;
}

/* Clears bit i; returns whether it was set. */
static int bits_take(load_bits_t *b, uint64_t i)
{
    if (!bits_test(b, i))
        return 0;
    b->w[i / 64] &= ~((uint64_t)1 << (i % 64));
    return 1;
}

void load_track_init(load_t *L)
{
    load_listen_state_t *st = &L->lst;
    pthread_mutex_init(&st->mu, NULL);
    load_hist_init(&st->hist_total);
    load_hist_init(&st->hist_interval);
    load_hist_init(&st->hist_step);
    for (size_t c = 0; c < L->nchats; c++) {
        load_chat_t *ch = &L->chats[c];
        ch->seen = load_xcalloc(ch->nlisteners, sizeof(load_bits_t));
        ch->caught_up = load_xcalloc(ch->nlisteners, sizeof(load_bits_t));
        ch->last_push = load_xcalloc(ch->nlisteners, sizeof(load_id_t));
    }
}

void load_track_free(load_t *L)
{
    for (size_t c = 0; c < L->nchats; c++) {
        load_chat_t *ch = &L->chats[c];
        for (size_t k = 0; ch->seen != NULL && k < ch->nlisteners; k++) {
            free(ch->seen[k].w);
            free(ch->caught_up[k].w);
        }
        free(ch->seen);
        free(ch->caught_up);
        free(ch->last_push);
        ch->seen = ch->caught_up = NULL;
        ch->last_push = NULL;
    }
    free(L->lst.first_id);
    L->lst.first_id = NULL;
    L->lst.first_id_cap = 0;
    pthread_mutex_destroy(&L->lst.mu);
}

/* The listener's slot in chat, or -1 when it does not listen to it. */
static long slot_of(const load_listener_t *l, size_t chat)
{
    for (size_t k = 0; k < l->nchats; k++)
        if (l->chats[k] == chat)
            return (long)l->slots[k];
    return -1;
}

/* first_id[seq]: the id the first listener saw; another is a mismatch. */
static void check_id(load_listen_state_t *st, uint64_t seq, load_id_t id)
{
    st->first_id = grow_zeroed(st->first_id, &st->first_id_cap, (size_t)seq, sizeof(load_id_t), 65536);
    if (load_id_is_none(st->first_id[seq]))
        st->first_id[seq] = id;
    else if (load_id_cmp(st->first_id[seq], id) != 0)
        st->id_mismatch++;
}

#define COUNT(st, field) ((st)->total.field++, (st)->interval.field++)

static void deliver(load_t *L, const load_rec_t *r)
{
    load_listen_state_t *st = &L->lst;
    uint64_t seq = r->a;
    long slot = -1;
    if (seq < __atomic_load_n(&L->seq_end, __ATOMIC_ACQUIRE) && r->listener < L->nlisteners)
        slot = slot_of(&L->listeners[r->listener], (size_t)(seq % L->nchats));
    if (slot < 0) {
        COUNT(st, foreign);
        return;
    }
    load_chat_t *c = &L->chats[seq % L->nchats];
    uint64_t cseq = seq / L->nchats;
    int pushed = r->kind == LOAD_REC_PUSH;
    if (bits_test(&c->seen[slot], cseq)) {
        if (pushed && !bits_take(&c->caught_up[slot], cseq)) {
            COUNT(st, duplicated);
            return;
        }
        COUNT(st, overlap);
    } else {
        bits_set(&c->seen[slot], cseq);
        if (!pushed) {
            bits_set(&c->caught_up[slot], cseq);
            COUNT(st, caught_up);
        }
        check_id(st, seq, r->id);
        COUNT(st, delivered);
        uint64_t lat = r->at > r->t ? r->at - r->t : 0;
        load_hist_record(&st->hist_total, lat);
        load_hist_record(&st->hist_interval, lat);
        if (seq >= st->step_from) {
            st->step_delivered++;
            load_hist_record(&st->hist_step, lat);
        }
    }
    if (pushed) {
        if (load_id_cmp(r->id, c->last_push[slot]) <= 0)
            COUNT(st, reordered);
        else
            c->last_push[slot] = r->id;
    }
}

void load_track_apply(load_t *L, const load_rec_t *r)
{
    load_listen_state_t *st = &L->lst;
    switch (r->kind) {
    case LOAD_REC_PUSH:
    case LOAD_REC_HISTORY:
        deliver(L, r);
        break;
    case LOAD_REC_HISTORY_DISORDER:
        COUNT(st, reordered);
        break;
    case LOAD_REC_FOREIGN:
        COUNT(st, foreign);
        break;
    case LOAD_REC_OPEN:
        if (++st->open_now > st->open_peak)
            st->open_peak = st->open_now;
        st->tls_resumed += r->t != 0;
        if (r->a)
            COUNT(st, reconnects);
        else
            st->opened++;
        break;
    case LOAD_REC_DOWN:
        st->open_now -= st->open_now > 0;
        if (L->api->history_path == NULL)
            COUNT(st, closed); /* nothing to catch up from: its messages are gone */
        break;
    case LOAD_REC_FAILED:
        st->failed++;
        break;
    case LOAD_REC_CATCHUP_FAILED:
        st->catchup_failed++;
        break;
    case LOAD_REC_SYNC:
        st->syncs++;
        break;
    default:
        break;
    }
}

void load_track_step(load_t *L, uint64_t from)
{
    load_listen_state_t *st = &L->lst;
    pthread_mutex_lock(&st->mu);
    st->step_from = from;
    st->step_delivered = from == 0 ? st->total.delivered : 0;
    load_hist_init(&st->hist_step);
    pthread_mutex_unlock(&st->mu);
}

uint64_t load_track_step_delivered(load_t *L, const uint64_t *refused, size_t n)
{
    load_listen_state_t *st = &L->lst;
    pthread_mutex_lock(&st->mu);
    uint64_t d = st->step_delivered;
    for (size_t i = 0; i < n; i++) {
        const load_chat_t *c = &L->chats[refused[i] % L->nchats];
        uint64_t cseq = refused[i] / L->nchats;
        for (size_t k = 0; k < c->nlisteners; k++)
            d -= (uint64_t)bits_test(&c->seen[k], cseq);
    }
    pthread_mutex_unlock(&st->mu);
    return d;
}

void load_track_verify(load_t *L, uint64_t from, uint64_t to, load_verdict_t *v)
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
            load_id_t posted = {0, m->id};
            if (L->api->post_ids && seen > 0 && seq < st->first_id_cap &&
                load_id_cmp(st->first_id[seq], posted) != 0)
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
