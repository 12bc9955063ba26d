/* Unit tests for src/core/u64map.c: put/get/del, growth, collisions, backward-shift deletion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/u64map.h"

#define V(k) ((void *)(uintptr_t)((k) * 2 + 1)) /* a distinct, non-NULL value per key */

/* The map's home-slot function, copied so the tests can build probe runs on
 * purpose. If the map's hash changes these tests still check the same
 * behaviour; they only collide less. */
static size_t home_of(uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

/* n keys whose home slot is `slot` in a table of `cap`. */
static void colliding_keys(uint64_t *out, size_t n, size_t slot, size_t cap)
{
    size_t found = 0;
    for (uint64_t k = 1; found < n; k++)
        if (home_of(k, cap) == slot)
            out[found++] = k;
}

static size_t count_keys(const natter_u64map_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        n += m->keys[i] != 0;
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    natter_u64map_t m;
    natter_u64map_init(&m);
    assert_int_equal(m.cap, 0);
    assert_int_equal(m.len, 0);
    assert_null(natter_u64map_get(&m, 1));
    assert_null(natter_u64map_del(&m, 1));
    natter_u64map_free(&m);
    natter_u64map_free(&m); /* free leaves an empty map: freeing again is harmless */
}

static void test_put_get_del(void **state)
{
    (void)state;
    natter_u64map_t m;
    natter_u64map_init(&m);
    assert_null(natter_u64map_put(&m, 42, V(42)));
    assert_int_equal(m.len, 1);
    assert_int_equal(m.cap, 16);
    assert_ptr_equal(natter_u64map_get(&m, 42), V(42));
    assert_null(natter_u64map_get(&m, 43));
    /* replace returns the previous value and keeps len */
    assert_ptr_equal(natter_u64map_put(&m, 42, V(7)), V(42));
    assert_int_equal(m.len, 1);
    assert_ptr_equal(natter_u64map_get(&m, 42), V(7));
    assert_ptr_equal(natter_u64map_del(&m, 42), V(7));
    assert_int_equal(m.len, 0);
    assert_null(natter_u64map_get(&m, 42));
    assert_null(natter_u64map_del(&m, 42));
    assert_int_equal(m.len, 0);
    /* extreme keys */
    natter_u64map_put(&m, UINT64_MAX, V(1));
    natter_u64map_put(&m, 1, V(2));
    assert_ptr_equal(natter_u64map_get(&m, UINT64_MAX), V(1));
    assert_ptr_equal(natter_u64map_get(&m, 1), V(2));
    natter_u64map_free(&m);
}

static void test_growth_keeps_everything(void **state)
{
    (void)state;
    natter_u64map_t m;
    natter_u64map_init(&m);
    enum { N = 5000 };
    for (uint64_t k = 1; k <= N; k++) {
        assert_null(natter_u64map_put(&m, k * 0x9E3779B97F4A7C15ULL, V(k)));
        assert_int_equal(m.len, k);
        assert_true(m.len * 4 <= m.cap * 3); /* load factor stays at most 3/4 */
        assert_int_equal(m.cap & (m.cap - 1), 0); /* power of two */
    }
    assert_int_equal(count_keys(&m), N);
    for (uint64_t k = 1; k <= N; k++)
        assert_ptr_equal(natter_u64map_get(&m, k * 0x9E3779B97F4A7C15ULL), V(k));
    assert_null(natter_u64map_get(&m, 12345));
    natter_u64map_free(&m);
}

static void test_collisions_and_delete_in_run(void **state)
{
    (void)state;
    natter_u64map_t m;
    natter_u64map_init(&m);
    /* cap is 16 until the 13th key: a run of 8 keys sharing home slot 3,
     * then 2 keys homed at 5 and 6 that land behind the run */
    uint64_t run[8], k5, k6;
    colliding_keys(run, 8, 3, 16);
    colliding_keys(&k5, 1, 5, 16);
    colliding_keys(&k6, 1, 6, 16);
    for (int i = 0; i < 8; i++)
        natter_u64map_put(&m, run[i], V(run[i]));
    natter_u64map_put(&m, k5, V(k5));
    natter_u64map_put(&m, k6, V(k6));
    assert_int_equal(m.cap, 16);
    assert_int_equal(m.len, 10);
    for (int i = 0; i < 8; i++)
        assert_int_equal(m.keys[3 + i], run[i]); /* linear probing order */
    assert_int_equal(m.keys[11], k5);
    assert_int_equal(m.keys[12], k6);

    /* delete from the middle of the run: every other key stays reachable,
     * and later keys shift back, so no hole breaks a probe sequence */
    assert_ptr_equal(natter_u64map_del(&m, run[2]), V(run[2]));
    assert_null(natter_u64map_get(&m, run[2]));
    for (int i = 0; i < 8; i++)
        if (i != 2)
            assert_ptr_equal(natter_u64map_get(&m, run[i]), V(run[i]));
    assert_ptr_equal(natter_u64map_get(&m, k5), V(k5));
    assert_ptr_equal(natter_u64map_get(&m, k6), V(k6));
    assert_int_equal(m.keys[12], 0); /* the tail of the cluster moved back one slot */
    assert_int_equal(m.len, 9);
    assert_int_equal(count_keys(&m), 9);

    /* delete the head of the run, then everything, checking each step */
    assert_ptr_equal(natter_u64map_del(&m, run[0]), V(run[0]));
    assert_int_equal(m.keys[3], run[1]);
    uint64_t rest[] = {run[7], k5, run[1], k6, run[3], run[4], run[5], run[6]};
    for (size_t i = 0; i < 8; i++) {
        assert_ptr_equal(natter_u64map_del(&m, rest[i]), V(rest[i]));
        for (size_t j = i + 1; j < 8; j++)
            assert_ptr_equal(natter_u64map_get(&m, rest[j]), V(rest[j]));
    }
    assert_int_equal(m.len, 0);
    assert_int_equal(count_keys(&m), 0);
    natter_u64map_free(&m);
}

static void test_delete_across_wraparound(void **state)
{
    (void)state;
    natter_u64map_t m;
    natter_u64map_init(&m);
    /* a run homed at the last slot wraps to slots 0, 1, 2 */
    uint64_t run[4], k0;
    colliding_keys(run, 4, 15, 16);
    colliding_keys(&k0, 1, 0, 16);
    for (int i = 0; i < 4; i++)
        natter_u64map_put(&m, run[i], V(run[i]));
    natter_u64map_put(&m, k0, V(k0)); /* homed at 0, displaced to 3 */
    assert_int_equal(m.keys[15], run[0]);
    assert_int_equal(m.keys[0], run[1]);
    assert_int_equal(m.keys[3], k0);

    assert_ptr_equal(natter_u64map_del(&m, run[0]), V(run[0]));
    assert_int_equal(m.keys[15], run[1]); /* shifted back across the wrap */
    assert_int_equal(m.keys[2], k0);      /* k0 moves back too */
    assert_int_equal(m.keys[3], 0);
    for (int i = 1; i < 4; i++)
        assert_ptr_equal(natter_u64map_get(&m, run[i]), V(run[i]));
    assert_ptr_equal(natter_u64map_get(&m, k0), V(k0));

    assert_ptr_equal(natter_u64map_del(&m, run[2]), V(run[2]));
    assert_ptr_equal(natter_u64map_get(&m, run[1]), V(run[1]));
    assert_ptr_equal(natter_u64map_get(&m, run[3]), V(run[3]));
    assert_ptr_equal(natter_u64map_get(&m, k0), V(k0));
    assert_int_equal(m.keys[0], run[3]); /* the rest of the run moved up one slot */
    assert_int_equal(m.keys[1], k0);
    assert_int_equal(m.keys[2], 0);
    assert_int_equal(m.len, 3);
    natter_u64map_free(&m);
}

/* xorshift64*: a fixed-seed generator so a failure reproduces. */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void check_against(const natter_u64map_t *m, void *const *ref, size_t nkeys, size_t reflen)
{
    assert_int_equal(m->len, reflen);
    assert_int_equal(count_keys(m), reflen);
    for (uint64_t k = 1; k <= nkeys; k++)
        assert_ptr_equal(natter_u64map_get(m, k), ref[k]);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            assert_true(m->keys[i] <= nkeys);
            assert_ptr_equal(m->vals[i], ref[m->keys[i]]);
        }
}

static void test_randomized_against_reference(void **state)
{
    (void)state;
    enum { NKEYS = 600, OPS = 60000 };
    void **ref = calloc(NKEYS + 1, sizeof(void *)); /* ref[k]: the value for key k, or NULL */
    size_t reflen = 0;
    natter_u64map_t m;
    natter_u64map_init(&m);
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rnd();
        uint64_t k = 1 + (r >> 8) % NKEYS;
        /* bias towards deletes in the second half so the map also shrinks in occupancy */
        int del = (int)(r & 0xFF) < (op < OPS / 2 ? 96 : 160);
        if (del) {
            void *got = natter_u64map_del(&m, k);
            assert_ptr_equal(got, ref[k]);
            if (ref[k] != NULL)
                reflen--;
            ref[k] = NULL;
        } else {
            void *v = (void *)(uintptr_t)((r | 1) & 0xFFFFFFF);
            void *prev = natter_u64map_put(&m, k, v);
            assert_ptr_equal(prev, ref[k]);
            if (ref[k] == NULL)
                reflen++;
            ref[k] = v;
        }
        assert_int_equal(m.len, reflen);
        if (op % 997 == 0)
            check_against(&m, ref, NKEYS, reflen);
    }
    check_against(&m, ref, NKEYS, reflen);
    /* drain completely in a random order */
    for (uint64_t k = 1; k <= NKEYS; k++) {
        uint64_t j = 1 + rnd() % NKEYS;
        void *got = natter_u64map_del(&m, j);
        assert_ptr_equal(got, ref[j]);
        if (ref[j] != NULL)
            reflen--;
        ref[j] = NULL;
        got = natter_u64map_del(&m, k);
        assert_ptr_equal(got, ref[k]);
        if (ref[k] != NULL)
            reflen--;
        ref[k] = NULL;
    }
    check_against(&m, ref, NKEYS, 0);
    natter_u64map_free(&m);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_growth_keeps_everything),
        cmocka_unit_test(test_collisions_and_delete_in_run),
        cmocka_unit_test(test_delete_across_wraparound),
        cmocka_unit_test(test_randomized_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
