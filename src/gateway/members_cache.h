/*
 * Members cache: chat id -> member user ids, each entry trusted for a TTL.
 *
 * Used by the store consumer (to know whom to push a batch to) and by the
 * API workers (is the sender a member?), so one mutex guards it; lookups are
 * a hash probe and a copy, and misses load from the store outside the lock.
 * Membership changes made through this node invalidate the entry at once;
 * changes made on other nodes are seen within the TTL. While the store is
 * unreachable, an expired entry is served rather than an error.
 */
#ifndef NATTER_MEMBERS_CACHE_H
#define NATTER_MEMBERS_CACHE_H

#include <pthread.h>
#include <stdint.h>

#include "core/u64map.h"
#include "core/vec.h"

/* Loads a chat's member ids into out (uint64_t items); 0 or NATTER_E*. */
typedef int (*natter_members_load_cb)(void *arg, uint64_t chat_id, natter_vec_t *out);

typedef struct natter_members_cache {
    pthread_mutex_t lock;
    natter_u64map_t entries; /* chat id -> struct members_entry */
    uint64_t generation; /* bumped by every invalidation */
    uint64_t ttl_ns;
    size_t max_entries;
    natter_members_load_cb load;
    void *load_arg;
    uint64_t (*clock_ns)(void); /* replaceable for tests */
} natter_members_cache_t;

void natter_members_cache_init(natter_members_cache_t *c, uint32_t ttl_ms, size_t max_entries,
                               natter_members_load_cb load, void *load_arg);
void natter_members_cache_free(natter_members_cache_t *c);
/* Copies the chat's member ids into out (cleared first), from the cache
 * while fresh, else from the loader. 0 or the loader's error. */
int natter_members_cache_get(natter_members_cache_t *c, uint64_t chat_id, natter_vec_t *out);
/* 1 when user is a member, 0 when not, or a negative NATTER_E* error. */
int natter_members_cache_has(natter_members_cache_t *c, uint64_t chat_id, uint64_t user_id);
void natter_members_cache_invalidate(natter_members_cache_t *c, uint64_t chat_id);

#endif
