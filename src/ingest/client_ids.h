/*
 * Recent client_ids: the outcome of posts that carried a client_id, by
 * (sender, chat, client_id), so that a repeat is answered with the first
 * message's id on the event loop, without the store.
 *
 * This cache only saves work: the store holds the authoritative claim of
 * every key (docs/architecture.md, "Idempotent sends"), and a key the cache
 * does not know is decided there. So it may forget at will: it is bounded
 * (the oldest entries of a shard go first) and lives in memory only.
 *
 * Every event loop and worker reads it: split into shards by a keyed hash,
 * each a mutex around a hash probe and a copy.
 */
#ifndef NATTER_CLIENT_IDS_H
#define NATTER_CLIENT_IDS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/message.h"
#include "core/u64map.h"

#define NATTER_CLIENT_IDS_SHARDS 16

typedef struct natter_client_id_key {
    uint64_t sender_id, chat_id;
    size_t len;
    char id[NATTER_CLIENT_ID_MAX];
} natter_client_id_key_t;

struct client_id_entry;

typedef struct natter_client_ids_shard {
    pthread_mutex_t lock;
    natter_u64map_t entries;            /* keyed hash -> struct client_id_entry */
    struct client_id_entry *old, *young; /* every entry, oldest first: the eviction order */
} __attribute__((aligned(64))) natter_client_ids_shard_t;

typedef struct natter_client_ids {
    uint64_t seed; /* keys the hash: clients cannot aim for one slot */
    size_t max_per_shard;
    natter_client_ids_shard_t shards[NATTER_CLIENT_IDS_SHARDS];
} natter_client_ids_t;

/* Holds about max_entries keys (at least one per shard). */
void natter_client_ids_init(natter_client_ids_t *c, size_t max_entries);
void natter_client_ids_free(natter_client_ids_t *c);
/* Fills k from its parts (id is cut at NATTER_CLIENT_ID_MAX bytes). */
void natter_client_id_key(natter_client_id_key_t *k, uint64_t sender_id, uint64_t chat_id, const char *id, size_t len);
/* 1 and the first message's id and created_at when k was put within
 * NATTER_CLIENT_ID_TTL_MS before now_ms; else 0. */
int natter_client_ids_get(natter_client_ids_t *c, const natter_client_id_key_t *k, int64_t now_ms, uint64_t *msg_id,
                          int64_t *created_at_ms);
/* Remembers, as of now_ms, that k's message is msg_id and durable; a later
 * put of the same key replaces it. */
void natter_client_ids_put(natter_client_ids_t *c, const natter_client_id_key_t *k, int64_t now_ms, uint64_t msg_id,
                           int64_t created_at_ms);
/* Keys held now, over every shard. */
size_t natter_client_ids_size(natter_client_ids_t *c);

#endif
