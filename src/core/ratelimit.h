/*
 * Token buckets by a 64-bit key: per user for message posts, per client
 * address and per username for logins and registrations. Every event loop and worker
 * takes tokens at once, so the buckets are split into shards by user id,
 * each behind its own mutex: two threads contend only when they take for
 * users of the same shard, and then for a hash probe and a few adds.
 */
#ifndef NATTER_RATELIMIT_H
#define NATTER_RATELIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/u64map.h"

#define NATTER_RATELIMIT_SHARDS 16

typedef struct natter_ratelimit_shard {
    pthread_mutex_t lock;
    natter_u64map_t buckets; /* user id -> struct bucket */
    int64_t last_sweep_ms;
} __attribute__((aligned(64))) natter_ratelimit_shard_t;

typedef struct natter_ratelimit {
    double rate; /* tokens per second; 0 = unlimited */
    double burst;
    natter_ratelimit_shard_t shards[NATTER_RATELIMIT_SHARDS];
} natter_ratelimit_t;

/* rate tokens a second per key, at most burst in a bucket (0: rate, at least 1). */
void natter_ratelimit_init(natter_ratelimit_t *rl, uint32_t rate, uint32_t burst);
/* per_minute tokens a minute per key (0 = unlimited), at most burst (0: per_minute). */
void natter_ratelimit_init_per_minute(natter_ratelimit_t *rl, uint32_t per_minute, uint32_t burst);
void natter_ratelimit_free(natter_ratelimit_t *rl);
/* Takes one token for user at time now_ms (natter_mono_ms: a wall clock set
 * back would stop every bucket refilling for as long). Returns 0 when allowed, else the
 * whole seconds (>= 1) after which a retry will be allowed. */
uint32_t natter_ratelimit_take(natter_ratelimit_t *rl, uint64_t user, int64_t now_ms);
/* Gives back one token taken for key (an attempt that turned out not to
 * count), never past the burst. */
void natter_ratelimit_refund(natter_ratelimit_t *rl, uint64_t key, int64_t now_ms);
/* Buckets held now, over every shard (for tests and the bound). */
size_t natter_ratelimit_size(natter_ratelimit_t *rl);

#endif
