/*
 * Sessions seen recently, by token: most requests authenticate without a
 * store round trip, and without hashing the token (the store keeps only
 * tokens' SHA-256; a hit here needs neither), and while the store is unreachable a known session
 * keeps working (stale-if-error) until it expires. A logout on this node
 * drops the entry at once; on another node the entry lives out its TTL.
 * A lookup that raced the logout cannot put it back: each shard counts its
 * drops, and a put carries the count read before the store was asked.
 *
 * Every event loop (the post hot path) and every worker reads it, so it is
 * split into shards by token hash, each a mutex around a hash probe and a
 * copy: two threads contend only on the same shard.
 */
#ifndef NATTER_SESSION_CACHE_H
#define NATTER_SESSION_CACHE_H

#include <pthread.h>
#include <stdint.h>

#include "core/token.h"
#include "core/u64map.h"
#include "store/store.h"

#define NATTER_SESSION_SHARDS 16

typedef struct natter_session_shard {
    pthread_mutex_t lock;
    natter_u64map_t entries; /* keyed hash of the token -> struct session_entry */
    uint64_t generation;     /* bumped by every drop in this shard */
} __attribute__((aligned(64))) natter_session_shard_t;

typedef struct natter_session_cache {
    uint64_t seed; /* keys the token hash: clients cannot aim for one slot */
    uint64_t ttl_ns;
    size_t max_per_shard;
    natter_session_shard_t shards[NATTER_SESSION_SHARDS];
} natter_session_cache_t;

/* Holds about max_entries sessions (rounded up to a whole number per shard). */
void natter_session_cache_init(natter_session_cache_t *c, uint32_t ttl_ms, size_t max_entries);
void natter_session_cache_free(natter_session_cache_t *c);
/* Tokens are well-formed (natter_token_well_formed): NATTER_TOKEN_LEN chars. */

/* 1 and *out when the session is cached and not expired at now_ms, and
 * (unless stale_ok) was looked up within the TTL; else 0. */
int natter_session_cache_get(natter_session_cache_t *c, const char *token, int64_t now_ms, int stale_ok,
                             natter_user_t *out);
/* The same for the user's id alone: a post needs no more, and a session
 * remembered by natter_session_cache_put_id serves only this. */
int natter_session_cache_get_id(natter_session_cache_t *c, const char *token, int64_t now_ms, int stale_ok,
                                uint64_t *user_id);
/* The token's shard's drop count: read it before asking the store about
 * the token, and hand it to put. */
uint64_t natter_session_cache_generation(natter_session_cache_t *c, const char *token);
/* Remembers a session the store confirmed (u->expires_at_ms set), unless
 * the shard saw a drop since generation was read: the store's answer may
 * predate a logout. */
void natter_session_cache_put(natter_session_cache_t *c, const char *token, const natter_user_t *u,
                              uint64_t generation);
/* Remembers only its user's id and end (the store's session_user_id). */
void natter_session_cache_put_id(natter_session_cache_t *c, const char *token, uint64_t user_id,
                                 int64_t expires_at_ms, uint64_t generation);
/* Forgets the token; lookups that began before cannot put it back. Call it
 * after the store deleted the session. */
void natter_session_cache_drop(natter_session_cache_t *c, const char *token);

#endif
