#include "consumer/tail.h"
#include "core/metrics.h"
#include "core/util.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

static natter_tail_shard_t *shard_of(natter_tail_t *t, uint64_t chat_id)
{
    return &t->shards[(chat_id ^ (chat_id >> 17)) % NATTER_TAIL_SHARDS];
}

/* The metric counts messages; the changes (edits, deletes, reactions) beside them are not. */
static void count_held(const natter_msg_t *m, int64_t by)
{
    if (m->kind == NATTER_EV_MESSAGE)
        natter_count(&natter_m()->unstored_tail, (uint64_t)by);
}

static int is_stored(natter_tail_t *t, const natter_msg_t *m)
{
    int64_t upto = t->stored(t->stored_arg, m->partition);
    return upto >= 0 && m->offset < upto;
}

void natter_tail_init(natter_tail_t *t, size_t capacity, natter_tail_stored_fn stored, void *stored_arg)
{
    t->max_per_shard = capacity / NATTER_TAIL_SHARDS > 0 ? capacity / NATTER_TAIL_SHARDS : 1;
    t->stored = stored;
    t->stored_arg = stored_arg;
    for (size_t i = 0; i < NATTER_TAIL_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].lock, NULL);
        t->shards[i].first = t->shards[i].last = NULL;
        t->shards[i].n = 0;
    }
}

void natter_tail_free(natter_tail_t *t)
{
    for (size_t i = 0; i < NATTER_TAIL_SHARDS; i++) {
        natter_tail_shard_t *s = &t->shards[i];
        for (const natter_msg_t *m = s->first; m != NULL; m = m->next)
            count_held(m, -1);
        natter_msg_free_list(s->first);
        s->first = s->last = NULL;
        s->n = 0;
        pthread_mutex_destroy(&s->lock);
    }
}

/* Drops the shard's oldest while the store has them or the shard is over
 * its bound. Entries of different partitions interleave, so a stored one
 * behind an unstored one waits for it: the bound and the readers' check
 * keep that harmless. The caller holds the lock. */
static void trim(natter_tail_t *t, natter_tail_shard_t *s)
{
    while (s->first != NULL && (s->n > t->max_per_shard || is_stored(t, s->first))) {
        natter_msg_t *m = s->first;
        s->first = m->next;
        if (s->first == NULL)
            s->last = NULL;
        s->n--;
        count_held(m, -1);
        free(m);
    }
}

void natter_tail_add(natter_tail_t *t, natter_msg_t *head)
{
    while (head != NULL) {
        natter_msg_t *m = head;
        head = m->next;
        m->next = NULL;
        if (!natter_event_stored(m->kind) || is_stored(t, m)) {
            free(m);
            continue;
        }
        m->on_durable = NULL;
        m->durable_arg = NULL;
        natter_tail_shard_t *s = shard_of(t, m->chat_id);
        pthread_mutex_lock(&s->lock);
        if (s->last != NULL)
            s->last->next = m;
        else
            s->first = m;
        s->last = m;
        s->n++;
        count_held(m, 1);
        trim(t, s);
        pthread_mutex_unlock(&s->lock);
    }
}

static natter_msg_t *copy_msg(const natter_msg_t *m)
{
    size_t size = natter_msg_size(m);
    natter_msg_t *c = xmalloc(size);
    memcpy(c, m, size);
    c->next = NULL;
    return c;
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = (*(natter_msg_t *const *)a)->id, y = (*(natter_msg_t *const *)b)->id;
    return x < y ? -1 : x > y;
}

void natter_tail_collect(natter_tail_t *t, uint64_t chat_id, natter_tail_kinds_t kinds, uint64_t after,
                         uint64_t before, natter_vec_t *out)
{
    natter_tail_shard_t *s = shard_of(t, chat_id);
    size_t from = out->len;
    pthread_mutex_lock(&s->lock);
    for (const natter_msg_t *m = s->first; m != NULL; m = m->next)
        if (m->chat_id == chat_id && (m->kind == NATTER_EV_MESSAGE) == (kinds == NATTER_TAIL_MESSAGES) &&
            (after == NATTER_CURSOR_NONE || m->id > after) && m->id < before && !is_stored(t, m))
            *(natter_msg_t **)natter_vec_push(out) = copy_msg(m);
    pthread_mutex_unlock(&s->lock);
    /* a chat's records arrive in id order from one partition; sorted all
     * the same, so the merge below never depends on it */
    if (out->len - from > 1)
        qsort(NATTER_VEC_AT(out, natter_msg_t *, from), out->len - from, sizeof(natter_msg_t *), by_id);
    /* one message can be in the log more than once (a repeat of a post
     * whose record may have been lost goes out again: log.h,
     * append_existing); the store keeps one, and so does a page */
    size_t kept = from;
    for (size_t i = from; i < out->len; i++) {
        natter_msg_t *m = *NATTER_VEC_AT(out, natter_msg_t *, i);
        if (kept > from && (*NATTER_VEC_AT(out, natter_msg_t *, kept - 1))->id == m->id)
            free(m);
        else
            *NATTER_VEC_AT(out, natter_msg_t *, kept++) = m;
    }
    out->len = kept;
}

int natter_tail_has(natter_tail_t *t, uint64_t chat_id, uint64_t message_id)
{
    natter_tail_shard_t *s = shard_of(t, chat_id);
    int found = 0;
    pthread_mutex_lock(&s->lock);
    for (const natter_msg_t *m = s->first; m != NULL && !found; m = m->next)
        found = m->chat_id == chat_id && m->id == message_id && m->kind == NATTER_EV_MESSAGE && !is_stored(t, m);
    pthread_mutex_unlock(&s->lock);
    return found;
}

void natter_tail_merge(natter_vec_t *extra, uint64_t after, uint32_t limit, natter_vec_t *page, int *has_more)
{
    if (extra->len == 0)
        return;
    natter_vec_t all;
    natter_vec_init(&all, sizeof(natter_msg_t *));
    size_t i = 0, j = 0;
    while (i < page->len || j < extra->len) {
        natter_msg_t *a = i < page->len ? *NATTER_VEC_AT(page, natter_msg_t *, i) : NULL;
        natter_msg_t *b = j < extra->len ? *NATTER_VEC_AT(extra, natter_msg_t *, j) : NULL;
        if (b == NULL || (a != NULL && a->id < b->id)) {
            *(natter_msg_t **)natter_vec_push(&all) = a;
            i++;
        } else if (a == NULL || b->id < a->id) {
            *(natter_msg_t **)natter_vec_push(&all) = b;
            j++;
        } else { /* both: the store's copy has the message as it is now */
            *(natter_msg_t **)natter_vec_push(&all) = a;
            free(b);
            i++;
            j++;
        }
    }
    size_t keep_from = 0, keep_to = all.len;
    if (all.len > limit) {
        *has_more = 1;
        if (after != NATTER_CURSOR_NONE)
            keep_to = limit;
        else
            keep_from = all.len - limit;
    }
    page->len = 0;
    for (size_t k = 0; k < all.len; k++) {
        natter_msg_t *m = *NATTER_VEC_AT(&all, natter_msg_t *, k);
        if (k >= keep_from && k < keep_to)
            *(natter_msg_t **)natter_vec_push(page) = m;
        else
            free(m);
    }
    natter_vec_free(&all);
    extra->len = 0;
}

void natter_tail_prune(natter_tail_t *t)
{
    for (size_t i = 0; i < NATTER_TAIL_SHARDS; i++) {
        natter_tail_shard_t *s = &t->shards[i];
        pthread_mutex_lock(&s->lock);
        trim(t, s);
        pthread_mutex_unlock(&s->lock);
    }
}

size_t natter_tail_size(natter_tail_t *t)
{
    size_t n = 0;
    for (size_t i = 0; i < NATTER_TAIL_SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].lock);
        n += t->shards[i].n;
        pthread_mutex_unlock(&t->shards[i].lock);
    }
    return n;
}
