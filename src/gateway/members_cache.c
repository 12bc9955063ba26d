#include "gateway/members_cache.h"
#include "core/error.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct members_entry {
    uint64_t loaded_ns;
    size_t n;
    uint64_t ids[];
};

void natter_members_cache_init(natter_members_cache_t *c, uint32_t ttl_ms, size_t max_entries,
                               natter_members_load_cb load, void *load_arg)
{
    pthread_mutex_init(&c->lock, NULL);
    natter_u64map_init(&c->entries);
    c->ttl_ns = (uint64_t)ttl_ms * 1000000u;
    c->max_entries = max_entries;
    c->load = load;
    c->load_arg = load_arg;
    c->clock_ns = natter_mono_ns;
    c->generation = 0;
}

static void drop_all(natter_members_cache_t *c)
{
    for (size_t i = 0; i < c->entries.cap; i++)
        if (c->entries.keys[i])
            free(c->entries.vals[i]);
    natter_u64map_free(&c->entries);
}

void natter_members_cache_free(natter_members_cache_t *c)
{
    drop_all(c);
    pthread_mutex_destroy(&c->lock);
}

/* Under the lock: the chat's entry, or NULL; with fresh, only one loaded
 * within the TTL. */
static struct members_entry *find(natter_members_cache_t *c, uint64_t chat_id, int fresh)
{
    struct members_entry *e = natter_u64map_get(&c->entries, chat_id);
    if (e != NULL && fresh && c->clock_ns() - e->loaded_ns >= c->ttl_ns)
        return NULL;
    return e;
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
    out->len = 0;
    pthread_mutex_lock(&c->lock);
    int hit = copy_ids(find(c, chat_id, 1), out);
    uint64_t generation = c->generation;
    pthread_mutex_unlock(&c->lock);
    if (hit)
        return NATTER_OK;

    int rc = c->load(c->load_arg, chat_id, out);
    if (rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT) {
        /* the store is away: an expired entry is better than nothing (stale-if-error) */
        out->len = 0;
        pthread_mutex_lock(&c->lock);
        int stale = copy_ids(find(c, chat_id, 0), out);
        pthread_mutex_unlock(&c->lock);
        return stale ? NATTER_OK : rc;
    }
    if (rc != NATTER_OK || c->ttl_ns == 0)
        return rc;
    struct members_entry *e = xmalloc(sizeof(*e) + out->len * sizeof(uint64_t));
    e->loaded_ns = c->clock_ns();
    e->n = out->len;
    if (out->len > 0)
        memcpy(e->ids, out->items, out->len * sizeof(uint64_t));
    pthread_mutex_lock(&c->lock);
    if (c->generation != generation) {
        /* an invalidation raced the load: what was loaded may predate it */
        free(e);
    } else {
        if (c->entries.len >= c->max_entries)
            drop_all(c); /* crude but bounded; a full cache reloads at the store's pace */
        free(natter_u64map_put(&c->entries, chat_id, e));
    }
    pthread_mutex_unlock(&c->lock);
    return NATTER_OK;
}

int natter_members_cache_has(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id)
{
    int found = -1;
    pthread_mutex_lock(&c->lock);
    struct members_entry *e = find(c, chat_id, 1);
    if (e != NULL) {
        found = 0;
        for (size_t i = 0; i < e->n && !found; i++)
            found = e->ids[i] == user_id;
    }
    pthread_mutex_unlock(&c->lock);
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
    pthread_mutex_lock(&c->lock);
    free(natter_u64map_del(&c->entries, chat_id));
    c->generation++;
    pthread_mutex_unlock(&c->lock);
}
