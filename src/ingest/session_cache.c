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

/* The hash is SHA-256 of a random token: its bytes are already uniform. */
static natter_session_shard_t *shard_of(natter_session_cache_t *c, uint64_t key)
{
    return &c->shards[(key >> 56) % NATTER_SESSION_SHARDS];
}

void natter_session_cache_init(natter_session_cache_t *c, uint32_t ttl_ms, size_t max_entries)
{
    c->ttl_ns = (uint64_t)ttl_ms * 1000000u;
    c->max_per_shard = (max_entries + NATTER_SESSION_SHARDS - 1) / NATTER_SESSION_SHARDS;
    for (size_t i = 0; i < NATTER_SESSION_SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        natter_u64map_init(&c->shards[i].entries);
    }
}

static void drop_all(natter_session_shard_t *sh)
{
    for (size_t i = 0; i < sh->entries.cap; i++)
        if (sh->entries.keys[i])
            free(sh->entries.vals[i]);
    natter_u64map_free(&sh->entries);
}

void natter_session_cache_free(natter_session_cache_t *c)
{
    for (size_t i = 0; i < NATTER_SESSION_SHARDS; i++) {
        drop_all(&c->shards[i]);
        pthread_mutex_destroy(&c->shards[i].lock);
    }
}

int natter_session_cache_get(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                             int stale_ok, natter_user_t *out)
{
    uint64_t key = key_of(hash);
    natter_session_shard_t *sh = shard_of(c, key);
    int hit = 0;
    pthread_mutex_lock(&sh->lock);
    struct session_entry *e = natter_u64map_get(&sh->entries, key);
    if (e != NULL && memcmp(e->hash, hash, NATTER_TOKEN_HASH_LEN) == 0 && e->user.expires_at_ms > now_ms &&
        (stale_ok || natter_mono_ns() - e->loaded_ns < c->ttl_ns)) {
        *out = e->user;
        hit = 1;
    }
    pthread_mutex_unlock(&sh->lock);
    return hit;
}

void natter_session_cache_put(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN],
                              const natter_user_t *u)
{
    if (c->ttl_ns == 0)
        return;
    uint64_t key = key_of(hash);
    natter_session_shard_t *sh = shard_of(c, key);
    struct session_entry *e = xmalloc(sizeof(*e));
    memcpy(e->hash, hash, NATTER_TOKEN_HASH_LEN);
    e->user = *u;
    e->user.pwhash[0] = '\0';
    e->loaded_ns = natter_mono_ns();
    pthread_mutex_lock(&sh->lock);
    if (sh->entries.len >= c->max_per_shard)
        drop_all(sh); /* bounded; the store refills what is in use */
    free(natter_u64map_put(&sh->entries, key, e));
    pthread_mutex_unlock(&sh->lock);
}

void natter_session_cache_drop(natter_session_cache_t *c, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    uint64_t key = key_of(hash);
    natter_session_shard_t *sh = shard_of(c, key);
    pthread_mutex_lock(&sh->lock);
    struct session_entry *e = natter_u64map_get(&sh->entries, key);
    if (e != NULL && memcmp(e->hash, hash, NATTER_TOKEN_HASH_LEN) == 0)
        free(natter_u64map_del(&sh->entries, key));
    pthread_mutex_unlock(&sh->lock);
}
