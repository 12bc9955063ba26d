/* Unit tests for load/load_sched.c: a stage issues the right number of sends
 * at the right times (the scheduler is a pure function of time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "load_sched.h"

#define S 1000000000ull

static load_sched_t make(const char *spec, double start)
{
    load_stages_t st;
    char err[128];
    assert_int_equal(load_stages_parse(spec, &st, err, sizeof(err)), 0);
    load_sched_t s;
    load_sched_init(&s, &st, start);
    return s;
}

static void test_constant_rate(void **state)
{
    (void)state;
    load_sched_t s = make("100:1s", 100);
    assert_int_equal(load_sched_total(&s), 100);
    for (uint64_t i = 0; i < 100; i++) /* send i at (i+1)/100 s */
        assert_true(llabs((long long)load_sched_time_of(&s, i) - (long long)((i + 1) * 10000000ull)) <= 1);
    assert_int_equal(load_sched_due(&s, 0), 0);
    assert_int_equal(load_sched_due(&s, 9999999), 0);
    assert_int_equal(load_sched_due(&s, 10000000), 1);
    assert_int_equal(load_sched_due(&s, S / 2), 50);
    assert_int_equal(load_sched_due(&s, 5 * S), 100);
}

static void test_ramp_from_zero(void **state)
{
    (void)state;
    /* 0→1000 over 10 s: N(t) = 50 t², 5000 sends; half the time, a quarter of them */
    load_sched_t s = make("1000:10s", 0);
    assert_int_equal(load_sched_total(&s), 5000);
    assert_int_equal(load_sched_due(&s, 5 * S), 1250);
    for (uint64_t i = 0; i < 5000; i += 7) {
        double want = sqrt((double)(i + 1) / 50.0) * 1e9;
        assert_true(fabs((double)load_sched_time_of(&s, i) - want) < 2);
    }
    assert_true(fabs(load_sched_rate(&s, 5 * S) - 500) < 1e-6);
}

static void test_issue_stages(void **state)
{
    (void)state;
    /* ramp 0→1000 30 s (15k), hold (30k), ramp →10000 (165k), hold (300k), ramp →0 10 s (50k) */
    load_sched_t s = make("1000:30s,1000:30s,10000:30s,10000:30s,0:10s", 0);
    assert_int_equal(load_sched_total(&s), 560000);
    uint64_t b[] = {0, 30 * S, 60 * S, 90 * S, 120 * S, 130 * S};
    uint64_t want[] = {15000, 30000, 165000, 300000, 50000};
    for (int k = 0; k < 5; k++)
        assert_int_equal(load_sched_due(&s, b[k + 1]) - load_sched_due(&s, b[k]), want[k]);
    assert_int_equal(load_sched_end_ns(&s), 130 * S);
    assert_int_equal(load_sched_due(&s, 1000 * S), 560000);
}

static void test_times_agree_with_counts(void **state)
{
    (void)state;
    load_sched_t s = make("300:2s,50:3s,0:1s,0:1s,800:1s", 20);
    uint64_t total = load_sched_total(&s), prev = 0;
    for (uint64_t i = 0; i < total; i++) {
        uint64_t t = load_sched_time_of(&s, i);
        assert_true(t >= prev);                       /* non-decreasing */
        assert_true(load_sched_due(&s, t) >= i + 1);  /* due at its time */
        assert_true(t == 0 || load_sched_due(&s, t - 2) <= i + 1); /* not much earlier */
        prev = t;
    }
    /* nothing is due during the idle stages */
    assert_int_equal(load_sched_due(&s, 6 * S), load_sched_due(&s, 7 * S));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_rate),
        cmocka_unit_test(test_ramp_from_zero),
        cmocka_unit_test(test_issue_stages),
        cmocka_unit_test(test_times_agree_with_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
