/* load_hist — see load_hist.h. */
#include "load_hist.h"

#include <string.h>

void load_hist_init(load_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned load_hist_index(uint64_t v)
{
    if (v < LOAD_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)) */
    if (e > LOAD_HIST_MAX_EXP)
        return LOAD_HIST_BUCKETS - 1;
    unsigned shift = e - LOAD_HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) - LOAD_HIST_SUB; /* 0 .. SUB-1 */
    return LOAD_HIST_SUB + (e - LOAD_HIST_SUB_BITS) * LOAD_HIST_SUB + sub;
}

uint64_t load_hist_bucket_low(unsigned idx)
{
    if (idx < LOAD_HIST_SUB)
        return idx;
    unsigned octave = (idx - LOAD_HIST_SUB) / LOAD_HIST_SUB; /* e - SUB_BITS */
    unsigned sub = (idx - LOAD_HIST_SUB) % LOAD_HIST_SUB;
    return (uint64_t)(LOAD_HIST_SUB + sub) << octave;
}

uint64_t load_hist_bucket_high(unsigned idx)
{
    if (idx < LOAD_HIST_SUB)
        return (uint64_t)idx + 1;
    unsigned octave = (idx - LOAD_HIST_SUB) / LOAD_HIST_SUB;
    return load_hist_bucket_low(idx) + ((uint64_t)1 << octave);
}

void load_hist_record(load_hist_t *h, uint64_t v)
{
    h->buckets[load_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void load_hist_merge(load_hist_t *dst, const load_hist_t *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t load_hist_quantile(const load_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++; /* ceil */
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo = load_hist_bucket_low(i), hi = load_hist_bucket_high(i);
            uint64_t mid = lo + (hi - 1 - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}
