/* Unit tests for src/core/id.c: layout, monotonicity, borrowing, formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "core/id.h"

#define T0 (NATTER_ID_EPOCH_MS + 123456789LL) /* an arbitrary instant after the epoch */

static void test_layout(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 7);
    uint64_t id = natter_idgen_next(&g, T0);
    assert_int_equal(id, ((uint64_t)123456789 << 22) | (7u << 12) | 0);
    assert_int_equal(natter_id_time_ms(id), T0);
    assert_int_equal(natter_id_node(id), 7);
    assert_int_equal(id >> 63, 0);
}

static void test_node_is_masked(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, NATTER_ID_NODE_MAX);
    assert_int_equal(natter_id_node(natter_idgen_next(&g, T0)), 1023);
    natter_idgen_init(&g, 1024 + 5); /* out of range: only 10 bits are kept */
    assert_int_equal(natter_id_node(natter_idgen_next(&g, T0)), 5);
}

static void test_same_ms_uses_sequence(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 1);
    uint64_t a = natter_idgen_next(&g, T0);
    uint64_t b = natter_idgen_next(&g, T0);
    uint64_t c = natter_idgen_next(&g, T0);
    assert_int_equal(b, a + 1);
    assert_int_equal(c, a + 2);
    assert_int_equal(c & 0xFFF, 2);
    /* a later millisecond resets the sequence */
    uint64_t d = natter_idgen_next(&g, T0 + 5);
    assert_int_equal(d & 0xFFF, 0);
    assert_int_equal(natter_id_time_ms(d), T0 + 5);
}

static void test_sequence_exhaustion_borrows_next_ms(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 3);
    uint64_t prev = 0;
    for (int i = 0; i < 4096; i++) {
        uint64_t id = natter_idgen_next(&g, T0);
        assert_true(id > prev);
        assert_int_equal(natter_id_time_ms(id), T0);
        assert_int_equal(id & 0xFFF, (uint64_t)i);
        prev = id;
    }
    uint64_t id = natter_idgen_next(&g, T0);
    assert_true(id > prev);
    assert_int_equal(natter_id_time_ms(id), T0 + 1);
    assert_int_equal(id & 0xFFF, 0);
    assert_int_equal(natter_id_node(id), 3);
    /* the real next millisecond continues after the borrowed one */
    uint64_t next = natter_idgen_next(&g, T0 + 1);
    assert_int_equal(next, id + 1);
}

static void test_clock_step_back_stays_increasing(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 0);
    uint64_t a = natter_idgen_next(&g, T0 + 1000);
    uint64_t b = natter_idgen_next(&g, T0); /* the clock jumped back a second */
    uint64_t c = natter_idgen_next(&g, T0 + 10);
    assert_int_equal(b, a + 1);
    assert_int_equal(c, a + 2);
    assert_int_equal(natter_id_time_ms(c), T0 + 1000);
}

/* Started after an id the store holds (ahead of the clock: the clock was
 * set back since it was issued): every id after it is greater, in the
 * millisecond after it until the clock passes that; a store id behind the
 * clock changes nothing. */
static void test_start_after_a_stored_id(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 3);
    natter_idgen_t old;
    natter_idgen_init(&old, 3);
    uint64_t stored = natter_idgen_next(&old, T0 + 5000);
    natter_idgen_start_after(&g, stored);
    uint64_t a = natter_idgen_next(&g, T0); /* the clock is 5 s behind */
    assert_true(a > stored);
    assert_int_equal(natter_id_time_ms(a), T0 + 5001);
    assert_int_equal(natter_id_node(a), 3);
    assert_true(natter_idgen_next(&g, T0) > a);
    assert_int_equal(natter_id_time_ms(natter_idgen_next(&g, T0 + 9000)), T0 + 9000); /* the clock passed it */

    natter_idgen_t h, earlier;
    natter_idgen_init(&h, 3);
    natter_idgen_init(&earlier, 3);
    natter_idgen_start_after(&h, natter_idgen_next(&earlier, T0 - 60000));
    assert_int_equal(natter_id_time_ms(natter_idgen_next(&h, T0)), T0); /* behind the clock: as before */
    natter_idgen_start_after(&h, 0);
    assert_true(natter_idgen_next(&h, T0) > 0);
}

static void test_before_epoch_clamps(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 2);
    uint64_t id = natter_idgen_next(&g, 0);
    assert_int_equal(natter_id_time_ms(id), NATTER_ID_EPOCH_MS);
    assert_int_equal(id, 2u << 12);
}

/* Node 0 before the epoch would make id 0; 0 is never issued (maps keep it
 * for "empty"), the generator moves on to 1. */
static void test_never_issues_zero(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 0);
    assert_int_equal(natter_idgen_next(&g, 0), 1);
    assert_int_equal(natter_idgen_next(&g, 0), 2);
}

enum { RACERS = 4, PER_RACER = 20000 };

typedef struct {
    natter_idgen_t *g;
    uint64_t ids[PER_RACER];
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    for (int i = 0; i < PER_RACER; i++)
        r->ids[i] = natter_idgen_next(r->g, T0 + i / 1000);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Threads sharing one generator (the event loops do) get unique ids, each
 * thread's strictly increasing. */
static void test_threads_share_one_generator(void **state)
{
    (void)state;
    natter_idgen_t g;
    natter_idgen_init(&g, 5);
    static racer_t racers[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i].g = &g;
        pthread_create(&t[i], NULL, race, &racers[i]);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    static uint64_t all[RACERS * PER_RACER];
    for (int i = 0; i < RACERS; i++) {
        for (int k = 1; k < PER_RACER; k++)
            assert_true(racers[i].ids[k] > racers[i].ids[k - 1]);
        memcpy(all + i * PER_RACER, racers[i].ids, sizeof(racers[i].ids));
    }
    qsort(all, RACERS * PER_RACER, sizeof(uint64_t), cmp_u64);
    for (int k = 1; k < RACERS * PER_RACER; k++)
        assert_true(all[k] > all[k - 1]);
    for (int k = 0; k < RACERS * PER_RACER; k++)
        assert_int_equal(natter_id_node(all[k]), 5);
}

static void test_format(void **state)
{
    (void)state;
    char buf[NATTER_ID_STR_MAX];
    assert_int_equal(natter_id_format(buf, 0), 1);
    assert_string_equal(buf, "0");
    assert_int_equal(natter_id_format(buf, 1234567890123ULL), 13);
    assert_string_equal(buf, "1234567890123");
    assert_int_equal(natter_id_format(buf, UINT64_MAX), 20);
    assert_string_equal(buf, "18446744073709551615");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_node_is_masked),
        cmocka_unit_test(test_same_ms_uses_sequence),
        cmocka_unit_test(test_sequence_exhaustion_borrows_next_ms),
        cmocka_unit_test(test_clock_step_back_stays_increasing),
        cmocka_unit_test(test_start_after_a_stored_id),
        cmocka_unit_test(test_before_epoch_clamps),
        cmocka_unit_test(test_never_issues_zero),
        cmocka_unit_test(test_threads_share_one_generator),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
