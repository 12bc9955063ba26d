#include "ingest/session_cache.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct session_entry {
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    natter_user_t user;
    uint64_t loaded_ns;
};

static uint64_t key_of(const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    uint64_t k;
    memcpy(&k, hash, sizeof(k));
    return k ? k : 1; /* 0 is the map's empty key */
}

void natter_session_cache_init(natter_session_cache_t *c, uint32_t ttl_ms, size_t max_entries)
{
    pthread_mutex_init(&c->lock, NULL);
    natter_u64map_init(&c->entries);
    c->ttl_ns = (uint64_t)ttl_ms * 1000000u;
    c->max_entries = max_entries;
}

static void drop_all(natter_session_cache_t *c)
{
    for (size_t i = 0; i < c->entries.cap; i++)
        if (c->entries.keys[i])
            free(c->entries.vals[i]);
    natter_u64map_free(&c->entries);
}

void natter_session_cache_free(natter_session_cache_t *c)
{
    drop_all(c);
    pthread_mutex_destroy(&c->lock);
}

int natter_session_cache_get(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                             int stale_ok, natter_user_t *out)
{
    int hit = 0;
    pthread_mutex_lock(&c->lock);
    struct session_entry *e = natter_u64map_get(&c->entries, key_of(hash));
    if (e != NULL && memcmp(e->hash, hash, NATTER_TOKEN_HASH_LEN) == 0 && e->user.expires_at_ms > now_ms &&
        (stale_ok || natter_mono_ns() - e->loaded_ns < c->ttl_ns)) {
        *out = e->user;
        hit = 1;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void natter_session_cache_put(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN],
                              const natter_user_t *u)
{
    if (c->ttl_ns == 0)
        return;
    struct session_entry *e = xmalloc(sizeof(*e));
    memcpy(e->hash, hash, NATTER_TOKEN_HASH_LEN);
    e->user = *u;
    e->user.pwhash[0] = '\0';
    e->loaded_ns = natter_mono_ns();
    pthread_mutex_lock(&c->lock);
    if (c->entries.len >= c->max_entries)
        drop_all(c); /* bounded; the store refills what is in use */
    free(natter_u64map_put(&c->entries, key_of(hash), e));
    pthread_mutex_unlock(&c->lock);
}

void natter_session_cache_drop(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    pthread_mutex_lock(&c->lock);
    struct session_entry *e = natter_u64map_get(&c->entries, key_of(hash));
    if (e != NULL && memcmp(e->hash, hash, NATTER_TOKEN_HASH_LEN) == 0)
        free(natter_u64map_del(&c->entries, key_of(hash)));
    pthread_mutex_unlock(&c->lock);
}
