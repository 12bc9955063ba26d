/* Unit tests for src/core/throttle.c: one pass per pair per window, bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/throttle.h"

static void test_one_per_window(void **state)
{
    (void)state;
    natter_throttle_t t;
    natter_throttle_init(&t, 2000, 1000);
    assert_true(natter_throttle_pass(&t, 1, 10, 1000));
    assert_false(natter_throttle_pass(&t, 1, 10, 1001));
    assert_false(natter_throttle_pass(&t, 1, 10, 2999)); /* dropped ones do not move the window */
    assert_true(natter_throttle_pass(&t, 1, 11, 1500));  /* another chat */
    assert_true(natter_throttle_pass(&t, 2, 10, 1500));  /* another user */
    assert_true(natter_throttle_pass(&t, 10, 1, 1000)); /* (a, b) is not (b, a) */
    assert_false(natter_throttle_pass(&t, 10, 1, 1001));
    assert_true(natter_throttle_pass(&t, 1, 10, 3000));  /* the window is over */
    assert_false(natter_throttle_pass(&t, 1, 10, 4999));
    assert_true(natter_throttle_pass(&t, 1, 10, 5000));
    natter_throttle_free(&t);
}

/* Many pairs: they all pass once, the table stays within its bound, and
 * pairs still inside their window are remembered while there is room. */
static void test_bounded(void **state)
{
    (void)state;
    natter_throttle_t t;
    natter_throttle_init(&t, 2000, 1000);
    for (uint64_t u = 1; u <= 500; u++)
        assert_true(natter_throttle_pass(&t, u, 7, 10));
    for (uint64_t u = 1; u <= 500; u++)
        assert_false(natter_throttle_pass(&t, u, 7, 20));
    assert_true(t.len <= t.max);
    /* later, the old pairs are swept to make room instead of growing */
    size_t cap = t.cap;
    for (uint64_t u = 1001; u <= 1400; u++)
        assert_true(natter_throttle_pass(&t, u, 7, 5000));
    assert_true(t.cap <= cap * 2);
    assert_true(t.len <= 500);
    /* a flood of live pairs past the bound: never more than max held */
    for (uint64_t u = 1; u <= 100000; u++)
        natter_throttle_pass(&t, u, 9, 6000);
    assert_true(t.len <= t.max);
    assert_true(t.cap <= 4096);
    natter_throttle_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_per_window),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
