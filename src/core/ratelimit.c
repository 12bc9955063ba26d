#include "core/ratelimit.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>

struct bucket {
    double tokens;
    int64_t at_ms;
};

/* Spreads sequential ids (time-ordered, so their low bits move slowly) over the shards. */
static natter_ratelimit_shard_t *shard_of(natter_ratelimit_t *rl, uint64_t user)
{
    return &rl->shards[natter_mix64(user) % NATTER_RATELIMIT_SHARDS];
}

static void init(natter_ratelimit_t *rl, double rate, double burst)
{
    rl->rate = rate;
    rl->burst = burst;
    for (size_t i = 0; i < NATTER_RATELIMIT_SHARDS; i++) {
        pthread_mutex_init(&rl->shards[i].lock, NULL);
        natter_u64map_init(&rl->shards[i].buckets);
        rl->shards[i].last_sweep_ms = 0;
    }
}

void natter_ratelimit_init(natter_ratelimit_t *rl, uint32_t rate, uint32_t burst)
{
    init(rl, rate, burst > 0 ? burst : (rate > 0 ? rate : 1));
}

void natter_ratelimit_init_per_minute(natter_ratelimit_t *rl, uint32_t per_minute, uint32_t burst)
{
    init(rl, per_minute / 60.0, burst > 0 ? burst : (per_minute > 0 ? per_minute : 1));
}

void natter_ratelimit_free(natter_ratelimit_t *rl)
{
    for (size_t s = 0; s < NATTER_RATELIMIT_SHARDS; s++) {
        natter_u64map_t *m = &rl->shards[s].buckets;
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                free(m->vals[i]);
        natter_u64map_free(m);
        pthread_mutex_destroy(&rl->shards[s].lock);
    }
}

/* Under the shard's lock: the key's bucket, refilled up to now_ms. */
static struct bucket *bucket_at(natter_ratelimit_t *rl, natter_ratelimit_shard_t *sh, uint64_t key, int64_t now_ms)
{
    struct bucket *b = natter_u64map_get(&sh->buckets, key);
    if (b == NULL) {
        b = xmalloc(sizeof(*b));
        b->tokens = rl->burst;
        b->at_ms = now_ms;
        natter_u64map_put(&sh->buckets, key, b);
    }
    if (now_ms > b->at_ms) {
        b->tokens = fmin(rl->burst, b->tokens + (double)(now_ms - b->at_ms) / 1000.0 * rl->rate);
        b->at_ms = now_ms;
    }
    return b;
}

/* Under the shard's lock: forget buckets that have refilled completely, they
 * hold no information. Bounds the map by the users active in the last
 * burst/rate seconds. */
static void sweep(natter_ratelimit_t *rl, natter_ratelimit_shard_t *sh, int64_t now_ms)
{
    natter_u64map_t *m = &sh->buckets;
    for (size_t i = 0; i < m->cap;) {
        struct bucket *b = m->vals[i];
        if (m->keys[i] && b->tokens + (double)(now_ms - b->at_ms) / 1000.0 * rl->rate >= rl->burst) {
            natter_u64map_del(m, m->keys[i]);
            free(b);
            continue; /* backward shift may have moved another entry into slot i */
        }
        i++;
    }
    sh->last_sweep_ms = now_ms;
}

uint32_t natter_ratelimit_take(natter_ratelimit_t *rl, uint64_t user, int64_t now_ms)
{
    if (rl->rate <= 0)
        return 0;
    natter_ratelimit_shard_t *sh = shard_of(rl, user);
    uint32_t wait = 0;
    pthread_mutex_lock(&sh->lock);
    if (now_ms - sh->last_sweep_ms > 60000)
        sweep(rl, sh, now_ms);
    struct bucket *b = bucket_at(rl, sh, user, now_ms);
    if (b->tokens >= 1.0)
        b->tokens -= 1.0;
    else
        wait = (uint32_t)ceil((1.0 - b->tokens) / rl->rate);
    pthread_mutex_unlock(&sh->lock);
    return wait;
}

void natter_ratelimit_refund(natter_ratelimit_t *rl, uint64_t key, int64_t now_ms)
{
    if (rl->rate <= 0)
        return;
    natter_ratelimit_shard_t *sh = shard_of(rl, key);
    pthread_mutex_lock(&sh->lock);
    struct bucket *b = bucket_at(rl, sh, key, now_ms);
    b->tokens = fmin(rl->burst, b->tokens + 1.0);
    pthread_mutex_unlock(&sh->lock);
}

size_t natter_ratelimit_size(natter_ratelimit_t *rl)
{
    size_t n = 0;
    for (size_t s = 0; s < NATTER_RATELIMIT_SHARDS; s++) {
        pthread_mutex_lock(&rl->shards[s].lock);
        n += rl->shards[s].buckets.len;
        pthread_mutex_unlock(&rl->shards[s].lock);
    }
    return n;
}
