/* Unit tests for load/load_hist.c: bucket layout, relative error, quantiles, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "load_hist.h"

static void test_small_values_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < LOAD_HIST_SUB; v++) {
        unsigned i = load_hist_index(v);
        assert_int_equal(load_hist_bucket_low(i), v);
        assert_int_equal(load_hist_bucket_high(i), v + 1);
    }
}

static void test_buckets_contain_value_within_one_percent(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (int k = 0; k < 200000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x >> (x % 40 + 20); /* spread over many octaves */
        unsigned i = load_hist_index(v);
        assert_true(i < LOAD_HIST_BUCKETS);
        uint64_t lo = load_hist_bucket_low(i), hi = load_hist_bucket_high(i);
        assert_true(lo <= v && v < hi);
        assert_true((double)(hi - lo) <= 0.01 * (double)(lo > 0 ? lo : 1) || hi - lo == 1);
    }
}

static void test_indices_are_contiguous(void **state)
{
    (void)state;
    for (unsigned i = 0; i + 1 < LOAD_HIST_BUCKETS; i++)
        assert_int_equal(load_hist_bucket_high(i), load_hist_bucket_low(i + 1));
    assert_int_equal(load_hist_index(UINT64_MAX), LOAD_HIST_BUCKETS - 1);
}

static void test_quantiles_uniform(void **state)
{
    (void)state;
    load_hist_t *h = malloc(sizeof(*h));
    load_hist_init(h);
    assert_int_equal(load_hist_quantile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 1000000; v++)
        load_hist_record(h, v * 1000); /* 1 µs .. 1 s in ns */
    assert_int_equal(h->count, 1000000);
    assert_int_equal(h->min, 1000);
    assert_int_equal(h->max, 1000000000ull);
    double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double want = qs[i] * 1e9;
        double got = (double)load_hist_quantile(h, qs[i]);
        assert_true(got > want * 0.99 && got < want * 1.01);
    }
    assert_int_equal(load_hist_quantile(h, 1.0), 1000000000ull);
    free(h);
}

static void test_merge(void **state)
{
    (void)state;
    load_hist_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    load_hist_init(a);
    load_hist_init(b);
    for (int i = 0; i < 99; i++)
        load_hist_record(a, 1000000); /* 1 ms */
    load_hist_record(b, 250000000);   /* 250 ms */
    load_hist_merge(a, b);
    assert_int_equal(a->count, 100);
    assert_int_equal(a->max, 250000000);
    uint64_t p50 = load_hist_quantile(a, 0.5), p999 = load_hist_quantile(a, 0.999);
    assert_true(p50 > 990000 && p50 < 1010000);
    assert_true(p999 > 247500000 && p999 <= 250000000);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_buckets_contain_value_within_one_percent),
        cmocka_unit_test(test_indices_are_contiguous),
        cmocka_unit_test(test_quantiles_uniform),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
