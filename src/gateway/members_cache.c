#include "gateway/members_cache.h"
#include "core/error.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct members_entry {
    uint64_t loaded_ns;
    uint64_t reload_ns; /* once expired: when a caller took its reload; 0 before */
    size_t n;
    uint64_t ids[];
};

void natter_members_cache_init(natter_members_cache_t *c, uint32_t ttl_ms, size_t max_entries,
                               natter_members_load_cb load, void *load_arg)
{
    c->ttl_ns = (uint64_t)ttl_ms * 1000000u;
    c->nshards = 1;
    while (c->nshards * 2 <= NATTER_MEMBERS_SHARDS_MAX && c->nshards * 2 <= max_entries)
        c->nshards *= 2;
    c->max_per_shard = max_entries / c->nshards;
    c->shards = xcalloc(c->nshards, sizeof(natter_members_shard_t));
    for (size_t i = 0; i < c->nshards; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        natter_u64map_init(&c->shards[i].entries);
    }
    c->load = load;
    c->load_arg = load_arg;
    c->clock_ns = natter_mono_ns;
}

static void drop_all(natter_members_shard_t *sh)
{
    for (size_t i = 0; i < sh->entries.cap; i++)
        if (sh->entries.keys[i])
            free(sh->entries.vals[i]);
    natter_u64map_free(&sh->entries);
}

void natter_members_cache_free(natter_members_cache_t *c)
{
    for (size_t i = 0; i < c->nshards; i++) {
        drop_all(&c->shards[i]);
        pthread_mutex_destroy(&c->shards[i].lock);
    }
    free(c->shards);
}

static natter_members_shard_t *shard_of(natter_members_cache_t *c, uint64_t chat_id)
{
    return &c->shards[natter_mix64(chat_id) & (c->nshards - 1)];
}

/* Under the shard's lock: the chat's entry, or NULL; with fresh, only one
 * loaded within the TTL. */
static struct members_entry *find(natter_members_cache_t *c, natter_members_shard_t *sh, uint64_t chat_id, int fresh)
{
    struct members_entry *e = natter_u64map_get(&sh->entries, chat_id);
    if (e != NULL && fresh && c->clock_ns() - e->loaded_ns >= c->ttl_ns)
        return NULL;
    return e;
}

/* Under the lock, for peek_hot: the entry while fresh, or while expired
 * and another caller's reload of it is under way (for at most a TTL); else
 * NULL, and when there is an expired entry this caller takes its reload. */
static struct members_entry *find_hot(natter_members_cache_t *c, natter_members_shard_t *sh, uint64_t chat_id)
{
    struct members_entry *e = natter_u64map_get(&sh->entries, chat_id);
    if (e == NULL)
        return NULL;
    uint64_t now = c->clock_ns();
    if (now - e->loaded_ns < c->ttl_ns || (e->reload_ns != 0 && now - e->reload_ns < c->ttl_ns))
        return e;
    e->reload_ns = now;
    return NULL;
}

/* Under the lock: copies the entry's ids into out; 1, or 0 when there is none. */
static int copy_ids(const struct members_entry *e, natter_vec_t *out)
{
    for (size_t i = 0; e != NULL && i < e->n; i++)
        *(uint64_t *)natter_vec_push(out) = e->ids[i];
    return e != NULL;
}

int natter_members_cache_get(natter_members_cache_t *c, uint64_t chat_id, natter_vec_t *out)
{
    natter_members_shard_t *sh = shard_of(c, chat_id);
    out->len = 0;
    pthread_mutex_lock(&sh->lock);
    int hit = copy_ids(find(c, sh, chat_id, 1), out);
    uint64_t generation = sh->generation;
    pthread_mutex_unlock(&sh->lock);
    if (hit)
        return NATTER_OK;

    int rc = c->load(c->load_arg, chat_id, out);
    if (rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT) {
        /* the store is away: an expired entry is better than nothing (stale-if-error) */
        out->len = 0;
        pthread_mutex_lock(&sh->lock);
        int stale = copy_ids(find(c, sh, chat_id, 0), out);
        pthread_mutex_unlock(&sh->lock);
        return stale ? NATTER_OK : rc;
    }
    if (rc != NATTER_OK || c->ttl_ns == 0)
        return rc;
    if (out->len == 0) { /* no members: no such chat yet, whose id a client can guess (ids are times); kept, it
                            would lock out the members of a chat created with that id until it expired */
        pthread_mutex_lock(&sh->lock);
        free(natter_u64map_del(&sh->entries, chat_id)); /* nor is an older list kept: its last member left */
        pthread_mutex_unlock(&sh->lock);
        return NATTER_OK;
    }
    struct members_entry *e = xmalloc(sizeof(*e) + out->len * sizeof(uint64_t));
    e->loaded_ns = c->clock_ns();
    e->reload_ns = 0;
    e->n = out->len;
    if (out->len > 0)
        memcpy(e->ids, out->items, out->len * sizeof(uint64_t));
    pthread_mutex_lock(&sh->lock);
    if (sh->generation != generation) {
        /* an invalidation raced the load: what was loaded may predate it */
        free(e);
    } else {
        if (sh->entries.len >= c->max_per_shard)
            drop_all(sh); /* crude but bounded; a full cache reloads at the store's pace */
        free(natter_u64map_put(&sh->entries, chat_id, e));
    }
    pthread_mutex_unlock(&sh->lock);
    return NATTER_OK;
}

static int peek(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id, uint64_t *ids, size_t max, size_t *n,
                int hot)
{
    natter_members_shard_t *sh = shard_of(c, chat_id);
    int found = -1;
    if (n != NULL)
        *n = 0;
    pthread_mutex_lock(&sh->lock);
    struct members_entry *e = hot ? find_hot(c, sh, chat_id) : find(c, sh, chat_id, 1);
    if (e != NULL) {
        found = 0;
        for (size_t i = 0; i < e->n && !found; i++)
            found = e->ids[i] == user_id;
        if (found && n != NULL && e->n <= max) {
            memcpy(ids, e->ids, e->n * sizeof(uint64_t));
            *n = e->n;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

int natter_members_cache_peek_ids(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id, uint64_t *ids,
                                  size_t max, size_t *n)
{
    return peek(c, chat_id, user_id, ids, max, n, 0);
}

int natter_members_cache_peek_hot(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id, uint64_t *ids,
                                  size_t max, size_t *n)
{
    return peek(c, chat_id, user_id, ids, max, n, 1);
}

int natter_members_cache_peek(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id)
{
    return natter_members_cache_peek_ids(c, chat_id, user_id, NULL, 0, NULL);
}

int natter_members_cache_has(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id)
{
    int found = natter_members_cache_peek(c, chat_id, user_id);
    if (found >= 0)
        return found; /* the hot path: no copy of the member list */

    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    int rc = natter_members_cache_get(c, chat_id, &ids);
    found = 0;
    for (size_t i = 0; rc == NATTER_OK && i < ids.len; i++)
        found |= *NATTER_VEC_AT(&ids, uint64_t, i) == user_id;
    natter_vec_free(&ids);
    return rc == NATTER_OK ? found : rc;
}

void natter_members_cache_invalidate(natter_members_cache_t *c, uint64_t chat_id)
{
    natter_members_shard_t *sh = shard_of(c, chat_id);
    pthread_mutex_lock(&sh->lock);
    free(natter_u64map_del(&sh->entries, chat_id));
    sh->generation++;
    pthread_mutex_unlock(&sh->lock);
}

size_t natter_members_cache_size(natter_members_cache_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nshards; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        n += c->shards[i].entries.len;
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    return n;
}
