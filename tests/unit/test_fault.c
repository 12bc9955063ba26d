/* Unit tests for src/core/fault.c: which calls fail, delays, the NATTER_FAULTS spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/fault.h"
#include "core/util.h"

static int teardown(void **state)
{
    (void)state;
    natter_fault_clear();
    return 0;
}

static void test_nothing_armed_passes(void **state)
{
    (void)state;
    for (int p = 0; p < NATTER_FAULT_COUNT; p++)
        assert_int_equal(natter_fault_check((natter_fault_point_t)p), 0);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_LOG_APPEND), 0);
}

static void test_nth_and_count(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 3, .count = 2, .rc = NATTER_EUNAVAIL});
    int got[6];
    for (int i = 0; i < 6; i++)
        got[i] = natter_fault_check(NATTER_FAULT_STORE_MESSAGES_INSERT);
    int want[6] = {0, 0, NATTER_EUNAVAIL, NATTER_EUNAVAIL, 0, 0};
    assert_memory_equal(got, want, sizeof(want));
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 6);
    /* other points are not touched */
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_PING), 0);
}

static void test_count_zero_fails_from_nth_on(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_LOG_APPEND, &(natter_fault_t){.nth = 2, .rc = NATTER_EIO});
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_APPEND), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_APPEND), NATTER_EIO);
}

static void test_rearm_restarts_the_count_and_clear_disarms(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_LOG_POLL, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_EIO});
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_POLL), NATTER_EIO);
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_POLL), 0);
    natter_fault_arm(NATTER_FAULT_LOG_POLL, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_ETIMEDOUT});
    assert_int_equal(natter_fault_calls(NATTER_FAULT_LOG_POLL), 0);
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_POLL), NATTER_ETIMEDOUT);
    natter_fault_arm(NATTER_FAULT_LOG_POLL, &(natter_fault_t){.nth = 1, .rc = NATTER_ETIMEDOUT});
    natter_fault_clear();
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_POLL), 0);
}

static void test_delay_only(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_PING, &(natter_fault_t){.delay_ms = 30});
    uint64_t t0 = natter_mono_ns();
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_PING), 0);
    assert_true(natter_mono_ns() - t0 >= 30000000u); /* slept at least that long: a lower bound, not a speed */
}

static atomic_int held_done;

static void *held_call(void *arg)
{
    (void)arg;
    int rc = natter_fault_check(NATTER_FAULT_STORE_PING);
    atomic_store(&held_done, rc == 0 ? 1 : -1);
    return NULL;
}

/* A held call is counted, then waits until the point is released. */
static void test_hold_until_released(void **state)
{
    (void)state;
    atomic_store(&held_done, 0);
    natter_fault_arm(NATTER_FAULT_STORE_PING, &(natter_fault_t){.hold = 1});
    pthread_t t;
    pthread_create(&t, NULL, held_call, NULL);
    while (natter_fault_calls(NATTER_FAULT_STORE_PING) == 0)
        sched_yield();
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 20; i++) { /* it stays held, however long we look */
        assert_int_equal(atomic_load(&held_done), 0);
        nanosleep(&ms, NULL);
    }
    natter_fault_release(NATTER_FAULT_STORE_PING);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&held_done), 1);
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_PING), 0); /* released: the next call goes on */
}

static void test_spec(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(natter_fault_arm_spec("store.messages_insert:nth=2,count=1,rc=unavail;log.append:rc=io", err,
                                           sizeof(err)),
                     NATTER_OK);
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_MESSAGES_INSERT), 0);
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_MESSAGES_INSERT), NATTER_EUNAVAIL);
    assert_int_equal(natter_fault_check(NATTER_FAULT_STORE_MESSAGES_INSERT), 0);
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_APPEND), NATTER_EIO); /* rc alone: from the first call */
    assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_APPEND), NATTER_EIO);
    assert_string_equal(natter_fault_name(NATTER_FAULT_STORE_TICKET_TAKE), "store.ticket_take");
    assert_int_equal(natter_fault_arm_spec("", err, sizeof(err)), NATTER_OK);
    assert_int_equal(natter_fault_arm_spec("log.commit:delay=1;", err, sizeof(err)), NATTER_OK);
}

static void test_bad_spec_arms_nothing(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "store.nope:rc=io",                       /* no such point */
        "log.append",                             /* no settings separator */
        "log.append:rc=broken",                   /* no such code */
        "log.append:nth=2",                       /* a failure without its code */
        "log.append:nth=-1,rc=io",                /* not a number */
        "log.append:delay=99999999999",           /* too long */
        "log.append:size=3",                      /* no such key */
        "log.commit:rc=io;store.ping:rc",         /* the second entry is bad: neither is armed */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        assert_int_equal(natter_fault_arm_spec(bad[i], err, sizeof(err)), NATTER_EINVAL);
        assert_non_null(strstr(err, "fault spec"));
        assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_APPEND), 0);
        assert_int_equal(natter_fault_check(NATTER_FAULT_LOG_COMMIT), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_nothing_armed_passes, teardown),
        cmocka_unit_test_teardown(test_nth_and_count, teardown),
        cmocka_unit_test_teardown(test_count_zero_fails_from_nth_on, teardown),
        cmocka_unit_test_teardown(test_rearm_restarts_the_count_and_clear_disarms, teardown),
        cmocka_unit_test_teardown(test_delay_only, teardown),
        cmocka_unit_test_teardown(test_hold_until_released, teardown),
        cmocka_unit_test_teardown(test_spec, teardown),
        cmocka_unit_test_teardown(test_bad_spec_arms_nothing, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
