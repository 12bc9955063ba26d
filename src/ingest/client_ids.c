#include "ingest/client_ids.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct client_id_entry {
    uint64_t hash;
    natter_client_id_key_t key;
    uint64_t msg_id;
    int64_t created_at_ms;
    int64_t put_ms;
    struct client_id_entry *prev, *next; /* in the shard's age list */
};

void natter_client_id_key(natter_client_id_key_t *k, uint64_t sender_id, uint64_t chat_id, const char *id, size_t len)
{
    memset(k, 0, sizeof(*k));
    k->sender_id = sender_id;
    k->chat_id = chat_id;
    k->len = len < NATTER_CLIENT_ID_MAX ? len : NATTER_CLIENT_ID_MAX;
    memcpy(k->id, id, k->len);
}

/* FNV-1a over the key, seeded, then mixed: a map key and a shard. */
static uint64_t hash_of(const natter_client_ids_t *c, const natter_client_id_key_t *k)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;
    h = (h ^ natter_mix64(k->sender_id)) * 0x100000001b3ULL;
    h = (h ^ natter_mix64(k->chat_id)) * 0x100000001b3ULL;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ (uint8_t)k->id[i]) * 0x100000001b3ULL;
    h = natter_mix64(h ^ k->len);
    return h ? h : 1; /* 0 is the map's empty key */
}

static natter_client_ids_shard_t *shard_of(natter_client_ids_t *c, uint64_t hash)
{
    return &c->shards[(hash >> 56) % NATTER_CLIENT_IDS_SHARDS];
}

static int same_key(const natter_client_id_key_t *a, const natter_client_id_key_t *b)
{
    return a->sender_id == b->sender_id && a->chat_id == b->chat_id && a->len == b->len &&
           memcmp(a->id, b->id, a->len) == 0;
}

void natter_client_ids_init(natter_client_ids_t *c, size_t max_entries)
{
    if (getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
        c->seed = natter_mono_ns();
    c->max_per_shard = (max_entries + NATTER_CLIENT_IDS_SHARDS - 1) / NATTER_CLIENT_IDS_SHARDS;
    if (c->max_per_shard == 0)
        c->max_per_shard = 1;
    for (size_t i = 0; i < NATTER_CLIENT_IDS_SHARDS; i++) {
        natter_client_ids_shard_t *sh = &c->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        natter_u64map_init(&sh->entries);
        sh->old = sh->young = NULL;
    }
}

void natter_client_ids_free(natter_client_ids_t *c)
{
    for (size_t i = 0; i < NATTER_CLIENT_IDS_SHARDS; i++) {
        natter_client_ids_shard_t *sh = &c->shards[i];
        for (struct client_id_entry *e = sh->old, *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
        natter_u64map_free(&sh->entries);
        pthread_mutex_destroy(&sh->lock);
    }
}

/* Under the shard's lock. */
static void unlink_entry(natter_client_ids_shard_t *sh, struct client_id_entry *e)
{
    *(e->prev ? &e->prev->next : &sh->old) = e->next;
    *(e->next ? &e->next->prev : &sh->young) = e->prev;
    e->prev = e->next = NULL;
}

/* Under the shard's lock. */
static void drop(natter_client_ids_shard_t *sh, struct client_id_entry *e)
{
    natter_u64map_del(&sh->entries, e->hash);
    unlink_entry(sh, e);
    free(e);
}

int natter_client_ids_get(natter_client_ids_t *c, const natter_client_id_key_t *k, int64_t now_ms, uint64_t *msg_id,
                          int64_t *created_at_ms)
{
    uint64_t hash = hash_of(c, k);
    natter_client_ids_shard_t *sh = shard_of(c, hash);
    int hit = 0;
    pthread_mutex_lock(&sh->lock);
    struct client_id_entry *e = natter_u64map_get(&sh->entries, hash);
    if (e != NULL && same_key(&e->key, k)) {
        if (now_ms - e->put_ms < NATTER_CLIENT_ID_TTL_MS) {
            *msg_id = e->msg_id;
            *created_at_ms = e->created_at_ms;
            hit = 1;
        } else {
            drop(sh, e);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return hit;
}

void natter_client_ids_put(natter_client_ids_t *c, const natter_client_id_key_t *k, int64_t now_ms, uint64_t msg_id,
                           int64_t created_at_ms)
{
    uint64_t hash = hash_of(c, k);
    natter_client_ids_shard_t *sh = shard_of(c, hash);
    struct client_id_entry *e = xmalloc(sizeof(*e));
    e->hash = hash;
    e->key = *k;
    e->msg_id = msg_id;
    e->created_at_ms = created_at_ms;
    e->put_ms = now_ms;
    e->next = NULL;
    pthread_mutex_lock(&sh->lock);
    struct client_id_entry *was = natter_u64map_get(&sh->entries, hash);
    if (was != NULL) /* the same key again, or another with its hash: the newer wins */
        drop(sh, was);
    else if (sh->entries.len >= c->max_per_shard)
        drop(sh, sh->old);
    natter_u64map_put(&sh->entries, hash, e);
    e->prev = sh->young;
    *(sh->young ? &sh->young->next : &sh->old) = e;
    sh->young = e;
    pthread_mutex_unlock(&sh->lock);
}

size_t natter_client_ids_size(natter_client_ids_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < NATTER_CLIENT_IDS_SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        n += c->shards[i].entries.len;
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    return n;
}
