/*
 * Members cache: chat id -> member user ids, each entry trusted for a TTL.
 *
 * Read by every event loop (is the poster a member? the post hot path), by
 * the API workers and by the fan-out (whom to push a batch to), so it is
 * split into shards by chat id, each a mutex around a hash probe: two
 * threads contend only on the same shard. Misses load from the store
 * outside any lock. Membership changes made through this node invalidate
 * the entry at once; changes made on other nodes when their membership
 * record reaches this node (ephemeral.h), or within the TTL if it is lost.
 * While the store is unreachable, an expired entry is served rather than an
 * error. The event loop's look (natter_members_cache_peek_hot) keeps an
 * expired entry in use while one caller reloads it, so a busy chat's posts
 * stay on the loop when its entry expires instead of all going to the
 * workers, each to load the same list.
 */
#ifndef NATTER_MEMBERS_CACHE_H
#define NATTER_MEMBERS_CACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/u64map.h"
#include "core/vec.h"

#define NATTER_MEMBERS_SHARDS_MAX 16

/* Loads a chat's member ids into out (uint64_t items); 0 or NATTER_E*. */
typedef int (*natter_members_load_cb)(void *arg, uint64_t chat_id, natter_vec_t *out);

typedef struct natter_members_shard {
    pthread_mutex_t lock;
    natter_u64map_t entries; /* chat id -> struct members_entry */
    uint64_t generation;     /* bumped by every invalidation in this shard */
} __attribute__((aligned(64))) natter_members_shard_t;

typedef struct natter_members_cache {
    uint64_t ttl_ns;
    size_t max_per_shard;
    size_t nshards; /* a power of two, at most NATTER_MEMBERS_SHARDS_MAX and max_entries */
    natter_members_shard_t *shards;
    natter_members_load_cb load;
    void *load_arg;
    uint64_t (*clock_ns)(void); /* replaceable for tests */
} natter_members_cache_t;

/* Holds at most max_entries chats. */
void natter_members_cache_init(natter_members_cache_t *c, uint32_t ttl_ms, size_t max_entries,
                               natter_members_load_cb load, void *load_arg);
void natter_members_cache_free(natter_members_cache_t *c);
/* Copies the chat's member ids into out (cleared first), from the cache
 * while fresh, else from the loader. 0 or the loader's error. */
int natter_members_cache_get(natter_members_cache_t *c, uint64_t chat_id, natter_vec_t *out);
/* 1 when user is a member, 0 when not, or a negative NATTER_E* error;
 * loads the chat on a miss. */
int natter_members_cache_has(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id);
/* The same from a fresh cache entry only, never loading (the event loop's
 * question: it must not wait on the store): 1 member, 0 not, -1 unknown. */
int natter_members_cache_peek(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id);
/* The same, and when user is a member, copies the chat's member ids into
 * ids (*n of them) if there are at most max, else sets *n to 0. */
int natter_members_cache_peek_ids(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id, uint64_t *ids,
                                  size_t max, size_t *n);
/* The event loop's look, like peek_ids, except at expiry: the first caller
 * to find the entry expired gets -1 (unknown) and must take a path that
 * loads (a worker's natter_members_cache_has); until that load lands, or a
 * TTL after the first caller took it, the others are answered from the
 * expired entry. So a member list may be used up to twice the TTL. */
int natter_members_cache_peek_hot(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id, uint64_t *ids,
                                  size_t max, size_t *n);
void natter_members_cache_invalidate(natter_members_cache_t *c, uint64_t chat_id);
/* Chats held now, over every shard. */
size_t natter_members_cache_size(natter_members_cache_t *c);

#endif
