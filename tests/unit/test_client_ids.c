/* Unit tests for src/ingest/client_ids.c: the key, the 24 h window, replacement, the bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ingest/client_ids.h"

#define T0 1800000000000LL

static natter_client_id_key_t key(uint64_t sender, uint64_t chat, const char *id)
{
    natter_client_id_key_t k;
    natter_client_id_key(&k, sender, chat, id, strlen(id));
    return k;
}

static void test_put_then_get(void **state)
{
    (void)state;
    natter_client_ids_t c;
    natter_client_ids_init(&c, 100);
    natter_client_id_key_t k = key(1, 2, "abc");
    uint64_t id = 0;
    int64_t at = 0;
    assert_int_equal(natter_client_ids_get(&c, &k, T0, &id, &at), 0);
    natter_client_ids_put(&c, &k, T0, 77, 1234);
    assert_int_equal(natter_client_ids_get(&c, &k, T0 + 5, &id, &at), 1);
    assert_int_equal(id, 77);
    assert_int_equal(at, 1234);
    /* every part of the key counts */
    natter_client_id_key_t others[] = {key(9, 2, "abc"), key(1, 9, "abc"), key(1, 2, "abd"), key(1, 2, "ab")};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(natter_client_ids_get(&c, &others[i], T0, &id, &at), 0);
    natter_client_ids_free(&c);
}

static void test_window_is_24_hours(void **state)
{
    (void)state;
    natter_client_ids_t c;
    natter_client_ids_init(&c, 100);
    natter_client_id_key_t k = key(1, 2, "late");
    uint64_t id;
    int64_t at;
    natter_client_ids_put(&c, &k, T0, 5, 6);
    assert_int_equal(natter_client_ids_get(&c, &k, T0 + NATTER_CLIENT_ID_TTL_MS - 1, &id, &at), 1);
    assert_int_equal(natter_client_ids_get(&c, &k, T0 + NATTER_CLIENT_ID_TTL_MS, &id, &at), 0);
    assert_int_equal(natter_client_ids_size(&c), 0); /* an expired entry found is dropped */
    natter_client_ids_free(&c);
}

static void test_put_replaces(void **state)
{
    (void)state;
    natter_client_ids_t c;
    natter_client_ids_init(&c, 100);
    natter_client_id_key_t k = key(3, 4, "x");
    uint64_t id;
    int64_t at;
    natter_client_ids_put(&c, &k, T0, 1, 1);
    natter_client_ids_put(&c, &k, T0 + 1, 2, 2);
    assert_int_equal(natter_client_ids_size(&c), 1);
    assert_int_equal(natter_client_ids_get(&c, &k, T0 + 2, &id, &at), 1);
    assert_int_equal(id, 2);
    natter_client_ids_free(&c);
}

static void test_bounded_oldest_go_first(void **state)
{
    (void)state;
    natter_client_ids_t c;
    natter_client_ids_init(&c, NATTER_CLIENT_IDS_SHARDS * 4); /* 4 per shard */
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        natter_client_id_key_t k = key(1, 1, name);
        natter_client_ids_put(&c, &k, T0 + i, (uint64_t)i + 1, i);
    }
    assert_true(natter_client_ids_size(&c) <= NATTER_CLIENT_IDS_SHARDS * 4);
    uint64_t id;
    int64_t at;
    natter_client_id_key_t last = key(1, 1, "k9999"), first = key(1, 1, "k0");
    assert_int_equal(natter_client_ids_get(&c, &last, T0 + 10000, &id, &at), 1); /* the newest stays */
    assert_int_equal(id, 10000);
    assert_int_equal(natter_client_ids_get(&c, &first, T0 + 10000, &id, &at), 0);
    natter_client_ids_free(&c);
}

static void test_long_id_is_cut_at_the_limit(void **state)
{
    (void)state;
    char longer[NATTER_CLIENT_ID_MAX + 10];
    memset(longer, 'a', sizeof(longer));
    natter_client_id_key_t k;
    natter_client_id_key(&k, 1, 2, longer, sizeof(longer));
    assert_int_equal(k.len, NATTER_CLIENT_ID_MAX);
}

typedef struct {
    natter_client_ids_t *c;
    int base;
} worker_arg_t;

static void *hammer(void *arg)
{
    worker_arg_t *w = arg;
    char name[32];
    uint64_t id;
    int64_t at;
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "t%d-%d", w->base, i % 500);
        natter_client_id_key_t k = key((uint64_t)w->base, 1, name);
        if (!natter_client_ids_get(w->c, &k, T0, &id, &at))
            natter_client_ids_put(w->c, &k, T0, (uint64_t)i + 1, i);
        else if (id == 0)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    natter_client_ids_t c;
    natter_client_ids_init(&c, 1000);
    pthread_t t[4];
    worker_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg_t){&c, i + 1};
        pthread_create(&t[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        assert_null(rv);
    }
    assert_true(natter_client_ids_size(&c) <= 1000 + NATTER_CLIENT_IDS_SHARDS);
    natter_client_ids_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_window_is_24_hours),
        cmocka_unit_test(test_put_replaces),
        cmocka_unit_test(test_bounded_oldest_go_first),
        cmocka_unit_test(test_long_id_is_cut_at_the_limit),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
