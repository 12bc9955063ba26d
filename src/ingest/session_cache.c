#include "ingest/session_cache.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct session_entry {
    char token[NATTER_TOKEN_LEN];
    natter_user_t user; /* only id and expires_at_ms when id_only */
    uint64_t loaded_ns;
    int id_only;
};

/* FNV-1a over the token, seeded, then mixed: a map key and a shard. */
static uint64_t key_of(const natter_session_cache_t *c, const char *token)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;
    for (size_t i = 0; i < NATTER_TOKEN_LEN; i++)
        h = (h ^ (uint8_t)token[i]) * 0x100000001b3ULL;
    h = natter_mix64(h);
    return h ? h : 1; /* 0 is the map's empty key */
}

static natter_session_shard_t *shard_of(natter_session_cache_t *c, uint64_t key)
{
    return &c->shards[(key >> 56) % NATTER_SESSION_SHARDS];
}

/* Equal tokens, in time that does not depend on where they differ. */
static int same_token(const char *a, const char *b)
{
    unsigned char diff = 0;
    for (size_t i = 0; i < NATTER_TOKEN_LEN; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

void natter_session_cache_init(natter_session_cache_t *c, uint32_t ttl_ms, size_t max_entries)
{
    if (getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
        c->seed = natter_mono_ns();
    c->ttl_ns = (uint64_t)ttl_ms * 1000000u;
    c->max_per_shard = (max_entries + NATTER_SESSION_SHARDS - 1) / NATTER_SESSION_SHARDS;
    for (size_t i = 0; i < NATTER_SESSION_SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        natter_u64map_init(&c->shards[i].entries);
        c->shards[i].generation = 0;
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

/* Under the shard's lock: the token's entry, live at now_ms and (unless
 * stale_ok) looked up within the TTL; NULL when there is none. */
static struct session_entry *find(natter_session_cache_t *c, natter_session_shard_t *sh, uint64_t key,
                                  const char *token, int64_t now_ms, int stale_ok)
{
    struct session_entry *e = natter_u64map_get(&sh->entries, key);
    if (e != NULL && same_token(e->token, token) && e->user.expires_at_ms > now_ms &&
        (stale_ok || natter_mono_ns() - e->loaded_ns < c->ttl_ns))
        return e;
    return NULL;
}

/* A hit copies the whole user into whole, or with whole NULL the user's id
 * into id (an id-only entry serves only that). */
static int lookup(natter_session_cache_t *c, const char *token, int64_t now_ms, int stale_ok, natter_user_t *whole,
                  uint64_t *id)
{
    uint64_t key = key_of(c, token);
    natter_session_shard_t *sh = shard_of(c, key);
    pthread_mutex_lock(&sh->lock);
    struct session_entry *e = find(c, sh, key, token, now_ms, stale_ok);
    int hit = e != NULL && (whole == NULL || !e->id_only);
    if (hit && whole != NULL)
        *whole = e->user;
    else if (hit)
        *id = e->user.id;
    pthread_mutex_unlock(&sh->lock);
    return hit;
}

int natter_session_cache_get(natter_session_cache_t *c, const char *token, int64_t now_ms, int stale_ok,
                             natter_user_t *out)
{
    return lookup(c, token, now_ms, stale_ok, out, NULL);
}

int natter_session_cache_get_id(natter_session_cache_t *c, const char *token, int64_t now_ms, int stale_ok,
                                uint64_t *user_id)
{
    return lookup(c, token, now_ms, stale_ok, NULL, user_id);
}

uint64_t natter_session_cache_generation(natter_session_cache_t *c, const char *token)
{
    natter_session_shard_t *sh = shard_of(c, key_of(c, token));
    pthread_mutex_lock(&sh->lock);
    uint64_t g = sh->generation;
    pthread_mutex_unlock(&sh->lock);
    return g;
}

static void put(natter_session_cache_t *c, const char *token, const natter_user_t *u, int id_only, uint64_t generation)
{
    if (c->ttl_ns == 0)
        return;
    uint64_t key = key_of(c, token);
    natter_session_shard_t *sh = shard_of(c, key);
    struct session_entry *e = xmalloc(sizeof(*e));
    memcpy(e->token, token, NATTER_TOKEN_LEN);
    e->user = *u;
    e->user.pwhash[0] = '\0';
    e->loaded_ns = natter_mono_ns();
    e->id_only = id_only;
    pthread_mutex_lock(&sh->lock);
    if (sh->generation != generation) { /* a drop came after the store's answer was asked for */
        pthread_mutex_unlock(&sh->lock);
        free(e);
        return;
    }
    if (sh->entries.len >= c->max_per_shard)
        drop_all(sh); /* bounded; the store refills what is in use */
    free(natter_u64map_put(&sh->entries, key, e));
    pthread_mutex_unlock(&sh->lock);
}

void natter_session_cache_put(natter_session_cache_t *c, const char *token, const natter_user_t *u,
                              uint64_t generation)
{
    put(c, token, u, 0, generation);
}

void natter_session_cache_put_id(natter_session_cache_t *c, const char *token, uint64_t user_id,
                                 int64_t expires_at_ms, uint64_t generation)
{
    natter_user_t u = {.id = user_id, .expires_at_ms = expires_at_ms};
    put(c, token, &u, 1, generation);
}

void natter_session_cache_drop(natter_session_cache_t *c, const char *token)
{
    uint64_t key = key_of(c, token);
    natter_session_shard_t *sh = shard_of(c, key);
    pthread_mutex_lock(&sh->lock);
    struct session_entry *e = natter_u64map_get(&sh->entries, key);
    if (e != NULL && same_token(e->token, token))
        free(natter_u64map_del(&sh->entries, key));
    sh->generation++;
    pthread_mutex_unlock(&sh->lock);
}
