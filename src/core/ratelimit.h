/*
 * Per-user token buckets for message posts. Shared by the API workers
 * behind one mutex: a take is a hash lookup and a few arithmetic
 * operations, far shorter than the store work around it.
 */
#ifndef NATTER_RATELIMIT_H
#define NATTER_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

#include "core/u64map.h"

typedef struct natter_ratelimit {
    pthread_mutex_t lock;
    natter_u64map_t buckets; /* user id -> struct bucket */
    double rate;             /* tokens per second; 0 = unlimited */
    double burst;
    int64_t last_sweep_ms;
} natter_ratelimit_t;

void natter_ratelimit_init(natter_ratelimit_t *rl, uint32_t rate, uint32_t burst);
void natter_ratelimit_free(natter_ratelimit_t *rl);
/* Takes one token for user at time now_ms. Returns 0 when allowed, else the
 * whole seconds (>= 1) after which a retry will be allowed. */
uint32_t natter_ratelimit_take(natter_ratelimit_t *rl, uint64_t user, int64_t now_ms);

#endif
