/* load_hist — a log-linear latency histogram (HdrHistogram's shape).
 *
 * Values are unsigned 64-bit (natter-load records nanoseconds). Below
 * LOAD_HIST_SUB every value has its own bucket; above, each power of two is
 * split into LOAD_HIST_SUB linear buckets, so a bucket is at most 1/128 of its
 * lower bound wide and a reported quantile (the bucket's midpoint) is within
 * 0.4% of a recorded value. Values past 2^LOAD_HIST_MAX_EXP are clamped into
 * the top bucket (max() still reports the exact largest value).
 *
 * A histogram is a plain struct with no heap memory: copy it, zero it, keep
 * one per interval and merge them. Not thread-safe; each has one owner.
 */
#ifndef NATTER_LOAD_HIST_H
#define NATTER_LOAD_HIST_H

#include <stdint.h>

enum {
    LOAD_HIST_SUB_BITS = 7,
    LOAD_HIST_SUB = 1 << LOAD_HIST_SUB_BITS, /* 128 linear buckets per octave */
    LOAD_HIST_MAX_EXP = 44,                  /* 2^44 ns ~ 4.9 hours */
    LOAD_HIST_BUCKETS = LOAD_HIST_SUB * (LOAD_HIST_MAX_EXP - LOAD_HIST_SUB_BITS + 2),
};

typedef struct load_hist {
    uint64_t count;
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    uint64_t sum;
    uint32_t buckets[LOAD_HIST_BUCKETS];
} load_hist_t;

void load_hist_init(load_hist_t *h);
void load_hist_record(load_hist_t *h, uint64_t v);
/* Adds every value of src into dst. */
void load_hist_merge(load_hist_t *dst, const load_hist_t *src);
/* The value at quantile q (0..1): the midpoint of the bucket holding the
 * ceil(q*count)-th smallest value, clamped to [min, max]; 0 when empty. */
uint64_t load_hist_quantile(const load_hist_t *h, double q);

/* Bucket arithmetic, exposed for the tests. */
unsigned load_hist_index(uint64_t v);
uint64_t load_hist_bucket_low(unsigned idx);
uint64_t load_hist_bucket_high(unsigned idx); /* exclusive */

#endif
