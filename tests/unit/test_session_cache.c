/* Unit tests for src/ingest/session_cache.c: hits, TTL, stale-if-error, logout, bounds, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "ingest/session_cache.h"

/* A well-formed token of its own for n. */
static void token_of(uint64_t n, char token[NATTER_TOKEN_LEN + 1])
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t x = natter_mix64(n + 1);
    for (int i = 0; i < NATTER_TOKEN_LEN; i++) {
        token[i] = b64url[x & 63];
        x = natter_mix64(x + (uint64_t)i);
    }
    token[NATTER_TOKEN_LEN] = '\0';
}

static natter_user_t user(uint64_t id, int64_t expires)
{
    natter_user_t u;
    memset(&u, 0, sizeof(u));
    u.id = id;
    snprintf(u.username, sizeof(u.username), "u%llu", (unsigned long long)id);
    strcpy(u.pwhash, "secret");
    u.expires_at_ms = expires;
    return u;
}

static void test_hit_copies_without_password(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 1000);
    char h[NATTER_TOKEN_LEN + 1];
    token_of(1, h);
    natter_user_t u = user(42, natter_now_ms() + 60000), out;
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 0, &out), 0);
    natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 0, &out), 1);
    assert_int_equal(out.id, 42);
    assert_string_equal(out.username, "u42");
    assert_string_equal(out.pwhash, ""); /* a cache keeps no password hash */
    /* one character off: a miss, not someone else's session */
    char other[NATTER_TOKEN_LEN + 1];
    memcpy(other, h, sizeof(other));
    other[NATTER_TOKEN_LEN - 1] = other[NATTER_TOKEN_LEN - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(natter_session_cache_get(&c, other, natter_now_ms(), 0, &out), 0);
    natter_session_cache_free(&c);
}

/* A session remembered by its id alone serves only id lookups; a whole
 * one serves both; either ends with the session. */
static void test_id_only_entries(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 1000);
    char h[NATTER_TOKEN_LEN + 1], w[NATTER_TOKEN_LEN + 1];
    token_of(7, h);
    token_of(8, w);
    int64_t now = natter_now_ms();
    uint64_t id = 0;
    natter_user_t out;
    assert_int_equal(natter_session_cache_get_id(&c, h, now, 0, &id), 0);
    natter_session_cache_put_id(&c, h, 77, now + 60000, natter_session_cache_generation(&c, h));
    assert_int_equal(natter_session_cache_get_id(&c, h, now, 0, &id), 1);
    assert_int_equal(id, 77);
    assert_int_equal(natter_session_cache_get(&c, h, now, 0, &out), 0); /* no username here */
    assert_int_equal(natter_session_cache_get(&c, h, now, 1, &out), 0);
    assert_int_equal(natter_session_cache_get_id(&c, h, now + 60000, 1, &id), 0); /* the session ended */

    natter_user_t u = user(88, now + 60000);
    natter_session_cache_put(&c, w, &u, natter_session_cache_generation(&c, w));
    assert_int_equal(natter_session_cache_get_id(&c, w, now, 0, &id), 1);
    assert_int_equal(id, 88);
    /* the whole user replaces an id-only entry */
    natter_user_t v = user(77, now + 60000);
    natter_session_cache_put(&c, h, &v, natter_session_cache_generation(&c, h));
    assert_int_equal(natter_session_cache_get(&c, h, now, 0, &out), 1);
    assert_string_equal(out.username, "u77");
    natter_session_cache_drop(&c, h);
    assert_int_equal(natter_session_cache_get_id(&c, h, now, 1, &id), 0);
    natter_session_cache_free(&c);
}

static void test_expiry_ttl_and_stale(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 1, 1000); /* trusted for 1 ms */
    char h[NATTER_TOKEN_LEN + 1];
    token_of(2, h);
    int64_t now = natter_now_ms();
    natter_user_t u = user(7, now + 60000), out;
    natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
    assert_int_equal(natter_session_cache_get(&c, h, now, 0, &out), 0); /* past the TTL */
    assert_int_equal(natter_session_cache_get(&c, h, now, 1, &out), 1); /* the store is away: stale is fine */
    assert_int_equal(natter_session_cache_get(&c, h, now + 60000, 1, &out), 0); /* but never an expired session */
    natter_session_cache_free(&c);
}

static void test_drop_and_zero_ttl(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 1000);
    char h[NATTER_TOKEN_LEN + 1];
    token_of(3, h);
    natter_user_t u = user(9, natter_now_ms() + 60000), out;
    natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
    natter_session_cache_drop(&c, h);
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 1, &out), 0);
    natter_session_cache_free(&c);
    natter_session_cache_init(&c, 0, 1000); /* TTL 0: nothing is cached */
    natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 1, &out), 0);
    natter_session_cache_free(&c);
}

/* A lookup that asked the store before a logout's delete, and answers
 * after the logout dropped the token, does not put the session back; one
 * that starts after the drop does. */
static void test_lookup_racing_a_logout(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 1000);
    char h[NATTER_TOKEN_LEN + 1];
    token_of(4, h);
    natter_user_t u = user(5, natter_now_ms() + 60000), out;
    uint64_t id = 0;
    uint64_t before = natter_session_cache_generation(&c, h); /* the lookup reads the store */
    natter_session_cache_drop(&c, h);                          /* the logout, its delete done */
    natter_session_cache_put(&c, h, &u, before);
    natter_session_cache_put_id(&c, h, u.id, u.expires_at_ms, before);
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 1, &out), 0);
    assert_int_equal(natter_session_cache_get_id(&c, h, natter_now_ms(), 1, &id), 0);
    natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
    assert_int_equal(natter_session_cache_get(&c, h, natter_now_ms(), 0, &out), 1);
    natter_session_cache_free(&c); /* LeakSanitizer: the refused puts freed their entries */
}

static size_t held(natter_session_cache_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < NATTER_SESSION_SHARDS; i++)
        n += c->shards[i].entries.len;
    return n;
}

static void test_bounded(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 64); /* 4 per shard */
    natter_user_t u = user(1, natter_now_ms() + 60000);
    for (uint64_t i = 0; i < 10000; i++) {
        char h[NATTER_TOKEN_LEN + 1];
        token_of(i, h);
        natter_session_cache_put(&c, h, &u, natter_session_cache_generation(&c, h));
        assert_true(held(&c) <= 64);
    }
    natter_session_cache_free(&c); /* LeakSanitizer: every dropped entry was freed */
}

typedef struct {
    natter_session_cache_t *c;
    uint64_t first;
    int misses;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    natter_user_t out;
    for (uint64_t i = r->first; i < r->first + 2000; i++) {
        char h[NATTER_TOKEN_LEN + 1];
        token_of(i, h);
        natter_user_t u = user(i, natter_now_ms() + 60000);
        natter_session_cache_put(r->c, h, &u, natter_session_cache_generation(r->c, h));
        if (!natter_session_cache_get(r->c, h, natter_now_ms(), 0, &out) || out.id != i)
            r->misses++;
    }
    return NULL;
}

/* Loops and workers use it at once: each sees its own sessions. */
static void test_threads(void **state)
{
    (void)state;
    natter_session_cache_t c;
    natter_session_cache_init(&c, 10000, 100000);
    racer_t r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (racer_t){&c, (uint64_t)i * 100000 + 1, 0};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].misses, 0);
    }
    assert_int_equal(held(&c), 8000);
    natter_session_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_copies_without_password),
        cmocka_unit_test(test_id_only_entries),
        cmocka_unit_test(test_expiry_ttl_and_stale),
        cmocka_unit_test(test_drop_and_zero_ttl),
        cmocka_unit_test(test_lookup_racing_a_logout),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
