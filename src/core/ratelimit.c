#include "core/ratelimit.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>

struct bucket {
    double tokens;
    int64_t at_ms;
};

void natter_ratelimit_init(natter_ratelimit_t *rl, uint32_t rate, uint32_t burst)
{
    pthread_mutex_init(&rl->lock, NULL);
    natter_u64map_init(&rl->buckets);
    rl->rate = rate;
    rl->burst = burst > 0 ? burst : (rate > 0 ? rate : 1);
    rl->last_sweep_ms = 0;
}

void natter_ratelimit_free(natter_ratelimit_t *rl)
{
    for (size_t i = 0; i < rl->buckets.cap; i++)
        if (rl->buckets.keys[i])
            free(rl->buckets.vals[i]);
    natter_u64map_free(&rl->buckets);
    pthread_mutex_destroy(&rl->lock);
}

/* Forget buckets that have refilled completely: they hold no information.
 * Bounds the map by the users active in the last burst/rate seconds. */
static void sweep(natter_ratelimit_t *rl, int64_t now_ms)
{
    for (size_t i = 0; i < rl->buckets.cap;) {
        struct bucket *b = rl->buckets.vals[i];
        if (rl->buckets.keys[i] && b->tokens + (double)(now_ms - b->at_ms) / 1000.0 * rl->rate >= rl->burst) {
            natter_u64map_del(&rl->buckets, rl->buckets.keys[i]);
            free(b);
            continue; /* backward shift may have moved another entry into slot i */
        }
        i++;
    }
    rl->last_sweep_ms = now_ms;
}

uint32_t natter_ratelimit_take(natter_ratelimit_t *rl, uint64_t user, int64_t now_ms)
{
    if (rl->rate <= 0)
        return 0;
    uint32_t wait = 0;
    pthread_mutex_lock(&rl->lock);
    if (now_ms - rl->last_sweep_ms > 60000)
        sweep(rl, now_ms);
    struct bucket *b = natter_u64map_get(&rl->buckets, user);
    if (b == NULL) {
        b = xmalloc(sizeof(*b));
        b->tokens = rl->burst;
        b->at_ms = now_ms;
        natter_u64map_put(&rl->buckets, user, b);
    }
    if (now_ms > b->at_ms) {
        b->tokens = fmin(rl->burst, b->tokens + (double)(now_ms - b->at_ms) / 1000.0 * rl->rate);
        b->at_ms = now_ms;
    }
    if (b->tokens >= 1.0)
        b->tokens -= 1.0;
    else
        wait = (uint32_t)ceil((1.0 - b->tokens) / rl->rate);
    pthread_mutex_unlock(&rl->lock);
    return wait;
}
