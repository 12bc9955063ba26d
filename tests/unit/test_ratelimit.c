/* Unit tests for src/core/ratelimit.c: token buckets driven by an explicit now_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "core/ratelimit.h"

#define T0 1800000000000LL /* an arbitrary wall-clock instant */

static void test_burst_then_wait(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 2, 3);
    assert_int_equal(natter_ratelimit_take(&rl, 7, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 7, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 7, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 7, T0), 1); /* 429, Retry-After: 1 */
    assert_int_equal(natter_ratelimit_take(&rl, 7, T0), 1);
    /* another user has a full bucket of its own */
    assert_int_equal(natter_ratelimit_take(&rl, 8, T0), 0);
    natter_ratelimit_free(&rl);
}

static void test_refill_over_time(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 10, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 1);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 50), 1);  /* half a token */
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 100), 0); /* one token after 100 ms */
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 100), 1);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 300), 0); /* two more */
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 300), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 300), 1);
    /* a long pause refills to the burst, not beyond */
    int allowed = 0;
    for (int i = 0; i < 50; i++)
        allowed += natter_ratelimit_take(&rl, 1, T0 + 30000) == 0;
    assert_int_equal(allowed, 10);
    natter_ratelimit_free(&rl);
}

static void test_denied_take_costs_nothing(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 2, 1);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 250), 1); /* 0.5 tokens: wait ceil(0.5/2) = 1 s */
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 500), 0);
    natter_ratelimit_free(&rl);
}

static void test_clock_step_back(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 1, 1);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 - 5000), 1); /* no refill from a clock going back */
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0 + 1000), 0);
    natter_ratelimit_free(&rl);
}

static void test_rate_zero_is_unlimited(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 0, 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 1 + (uint64_t)(i % 7), T0), 0);
    assert_int_equal(natter_ratelimit_size(&rl), 0); /* no state kept */
    natter_ratelimit_free(&rl);
    natter_ratelimit_init(&rl, 0, 5); /* a burst without a rate is still unlimited */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 0);
    natter_ratelimit_free(&rl);
}

static void test_burst_zero_defaults_to_rate(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 4, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 1, T0), 1);
    natter_ratelimit_free(&rl);
}

static void test_sweep_forgets_only_full_buckets(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 1, 100);
    /* 600 users: even ones drain their bucket, odd ones take one token */
    for (uint64_t u = 1; u <= 600; u++) {
        int takes = u % 2 == 0 ? 100 : 1;
        for (int i = 0; i < takes; i++)
            assert_int_equal(natter_ratelimit_take(&rl, u, T0), 0);
    }
    assert_int_equal(natter_ratelimit_size(&rl), 600);
    /* 61 s later, takes by the even users sweep their shards (300 users
     * reach every shard): odd buckets refilled (forgotten), even ones hold
     * 61 of 100, less the take */
    for (uint64_t u = 2; u <= 600; u += 2)
        assert_int_equal(natter_ratelimit_take(&rl, u, T0 + 61000), 0);
    assert_int_equal(natter_ratelimit_size(&rl), 300);
    /* the kept buckets kept their state: 60 tokens left, not a fresh 100 */
    int allowed = 0;
    for (int i = 0; i < 100; i++)
        allowed += natter_ratelimit_take(&rl, 2, T0 + 61000) == 0;
    assert_int_equal(allowed, 60);
    natter_ratelimit_free(&rl);
}

struct worker_arg {
    natter_ratelimit_t *rl;
    int allowed;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < 2000; i++)
        a->allowed += natter_ratelimit_take(a->rl, 42, T0) == 0;
    return NULL;
}

static void test_threads_share_one_bucket(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init(&rl, 1, 1000);
    pthread_t th[4];
    struct worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct worker_arg){&rl, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].allowed;
    }
    assert_int_equal(total, 1000);
    natter_ratelimit_free(&rl);
}

static void test_per_minute(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init_per_minute(&rl, 6, 0); /* one every 10 s, burst 6 */
    for (int i = 0; i < 6; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 5, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 5, T0), 10); /* Retry-After: 10 */
    assert_int_equal(natter_ratelimit_take(&rl, 5, T0 + 4000), 6);
    assert_int_equal(natter_ratelimit_take(&rl, 5, T0 + 10000), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 5, T0 + 10000), 10);
    natter_ratelimit_free(&rl);
    natter_ratelimit_init_per_minute(&rl, 0, 0); /* off */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(natter_ratelimit_take(&rl, 5, T0), 0);
    natter_ratelimit_free(&rl);
}

static void test_refund(void **state)
{
    (void)state;
    natter_ratelimit_t rl;
    natter_ratelimit_init_per_minute(&rl, 2, 2);
    assert_int_equal(natter_ratelimit_take(&rl, 9, T0), 0);
    natter_ratelimit_refund(&rl, 9, T0); /* an attempt that did not count */
    assert_int_equal(natter_ratelimit_take(&rl, 9, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 9, T0), 0);
    assert_true(natter_ratelimit_take(&rl, 9, T0) > 0);
    /* never past the burst */
    for (int i = 0; i < 10; i++)
        natter_ratelimit_refund(&rl, 9, T0);
    assert_int_equal(natter_ratelimit_take(&rl, 9, T0), 0);
    assert_int_equal(natter_ratelimit_take(&rl, 9, T0), 0);
    assert_true(natter_ratelimit_take(&rl, 9, T0) > 0);
    natter_ratelimit_free(&rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_wait),
        cmocka_unit_test(test_refill_over_time),
        cmocka_unit_test(test_denied_take_costs_nothing),
        cmocka_unit_test(test_clock_step_back),
        cmocka_unit_test(test_rate_zero_is_unlimited),
        cmocka_unit_test(test_burst_zero_defaults_to_rate),
        cmocka_unit_test(test_sweep_forgets_only_full_buckets),
        cmocka_unit_test(test_threads_share_one_bucket),
        cmocka_unit_test(test_per_minute),
        cmocka_unit_test(test_refund),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
