/* Unit tests for src/gateway/members_cache.c with a counting loader and a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "gateway/members_cache.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void)
{
    return fake_ns;
}

#define MS 1000000ULL

typedef struct {
    int calls;                    /* loader invocations */
    uint64_t last_chat;
    int fail;                     /* when nonzero, the loader returns it */
    uint64_t members[8];          /* what the loader returns */
    size_t n;
    natter_members_cache_t *invalidate_during_load; /* simulates an invalidation racing a load */
} loader_t;

static int load(void *arg, uint64_t chat_id, natter_vec_t *out)
{
    loader_t *l = arg;
    l->calls++;
    l->last_chat = chat_id;
    if (l->invalidate_during_load != NULL)
        natter_members_cache_invalidate(l->invalidate_during_load, chat_id);
    if (l->fail)
        return l->fail;
    for (size_t i = 0; i < l->n; i++)
        *(uint64_t *)natter_vec_push(out) = l->members[i] + chat_id * 1000; /* differs per chat */
    return NATTER_OK;
}

typedef struct {
    natter_members_cache_t c;
    loader_t l;
    natter_vec_t out;
} fixture_t;

static fixture_t fx;

static void start(uint32_t ttl_ms, size_t max_entries)
{
    memset(&fx, 0, sizeof(fx));
    fx.l.members[0] = 1;
    fx.l.members[1] = 2;
    fx.l.members[2] = 3;
    fx.l.n = 3;
    natter_members_cache_init(&fx.c, ttl_ms, max_entries, load, &fx.l);
    fake_ns = 1000 * MS;
    fx.c.clock_ns = fake_clock;
    natter_vec_init(&fx.out, sizeof(uint64_t));
}

static int teardown(void **state)
{
    (void)state;
    natter_vec_free(&fx.out);
    natter_members_cache_free(&fx.c);
    return 0;
}

static void expect_members(uint64_t chat, size_t n, const uint64_t *want)
{
    assert_int_equal(fx.out.len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(*NATTER_VEC_AT(&fx.out, uint64_t, i), want[i] + chat * 1000);
}

static void test_hit_within_ttl(void **state)
{
    (void)state;
    start(100, 16);
    const uint64_t want[] = {1, 2, 3};
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 1);
    assert_int_equal(fx.l.last_chat, 5);
    expect_members(5, 3, want);
    for (int i = 0; i < 10; i++) {
        fake_ns += 9 * MS; /* 90 ms in all: still fresh */
        assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
        expect_members(5, 3, want); /* out is cleared, not appended to */
    }
    assert_int_equal(fx.l.calls, 1);
    /* a different chat is a different entry */
    assert_int_equal(natter_members_cache_get(&fx.c, 6, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2);
    expect_members(6, 3, want);
}

static void test_peek_ids_copies_a_small_chats_members(void **state)
{
    (void)state;
    start(100, 16);
    uint64_t ids[4] = {0};
    size_t n = 99;
    /* nothing cached: unknown, nothing copied, nothing loaded */
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 5001, ids, 4, &n), -1);
    assert_int_equal(n, 0);
    assert_int_equal(fx.l.calls, 0);
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    /* a member: the chat's ids */
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 5002, ids, 4, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 5001);
    assert_int_equal(ids[1], 5002);
    assert_int_equal(ids[2], 5003);
    /* not a member: no ids */
    n = 99;
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 7, ids, 4, &n), 0);
    assert_int_equal(n, 0);
    /* more members than the room given: a member, without ids */
    n = 99;
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 5003, ids, 2, &n), 1);
    assert_int_equal(n, 0);
    /* expired: unknown again */
    fake_ns += 100 * MS;
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 5002, ids, 4, &n), -1);
    assert_int_equal(n, 0);
    assert_int_equal(fx.l.calls, 1);
}

static void test_expiry(void **state)
{
    (void)state;
    start(100, 16);
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    fake_ns += 100 * MS - 1;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 1);
    /* membership changed on another node; seen once the TTL is up */
    fx.l.members[3] = 4;
    fx.l.n = 4;
    fake_ns += 1;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2);
    const uint64_t want[] = {1, 2, 3, 4};
    expect_members(5, 4, want);
    /* the reload starts a new TTL */
    fake_ns += 50 * MS;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2);
}

/* At expiry the loop's look hands the reload to one caller and answers the
 * others from the expired entry until the reload lands. */
static void test_hot_peek_serves_expired_entry_while_one_reloads(void **state)
{
    (void)state;
    start(100, 16);
    uint64_t ids[8];
    size_t n;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1); /* nothing cached */
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);
    fake_ns += 100 * MS;
    fx.l.members[3] = 4; /* changed on another node meanwhile */
    fx.l.n = 4;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1); /* this caller reloads */
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);  /* the others: the old list */
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 5003);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5004, ids, 8, &n), 0);
    assert_int_equal(natter_members_cache_peek_ids(&fx.c, 5, 5001, ids, 8, &n), -1); /* the strict look: expired */
    assert_int_equal(fx.l.calls, 1);
    /* the reloading caller's worker path loads; everyone sees the new list */
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5004), 1);
    assert_int_equal(fx.l.calls, 2);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5004, ids, 8, &n), 1);
    assert_int_equal(n, 4);
    /* and the next expiry hands out the reload again, once */
    fake_ns += 100 * MS;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);
}

/* A reload taken and never finished (its worker was busy, the store away)
 * is handed out again a TTL later: the expired list is not used for good. */
static void test_hot_peek_retakes_an_abandoned_reload(void **state)
{
    (void)state;
    start(100, 16);
    uint64_t ids[8];
    size_t n;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    fake_ns += 150 * MS;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1);
    fake_ns += 100 * MS - 1;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);
    fake_ns += 1;
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);
    /* an invalidation drops the entry: nothing is served from it */
    natter_members_cache_invalidate(&fx.c, 5);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1);
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1);
    assert_int_equal(fx.l.calls, 1);
}

static void test_invalidate_forces_reload(void **state)
{
    (void)state;
    start(60000, 16);
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(natter_members_cache_get(&fx.c, 6, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2);
    fx.l.n = 1;
    natter_members_cache_invalidate(&fx.c, 5);
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 3);
    const uint64_t want[] = {1};
    expect_members(5, 1, want);
    /* other entries are untouched */
    assert_int_equal(natter_members_cache_get(&fx.c, 6, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 3);
    assert_int_equal(fx.out.len, 3);
    /* invalidating an unknown chat is harmless */
    natter_members_cache_invalidate(&fx.c, 999);
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 3);
}

static void test_invalidation_racing_a_load_is_not_cached(void **state)
{
    (void)state;
    start(60000, 16);
    fx.l.invalidate_during_load = &fx.c;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.out.len, 3); /* the caller still gets what was loaded */
    fx.l.invalidate_during_load = NULL;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2); /* the possibly stale load was not kept */
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 2);
}

static void test_has(void **state)
{
    (void)state;
    start(60000, 16);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5002), 1);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), 1);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5003), 1);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5004), 0);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 6001), 0); /* a member of another chat */
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 0), 0);
    assert_int_equal(fx.l.calls, 1);
    fx.l.n = 0; /* a chat with no members (unknown chat) */
    assert_int_equal(natter_members_cache_has(&fx.c, 8, 8001), 0);
}

/* An id with no members is a chat not created yet (ids are times, so a
 * client can ask for one): not cached, or its members would be refused
 * once it is created, until the entry expired. */
static void test_a_chat_without_members_is_not_cached(void **state)
{
    (void)state;
    start(60000, 16);
    fx.l.n = 0;
    assert_int_equal(natter_members_cache_has(&fx.c, 8, 8001), 0);
    assert_int_equal(natter_members_cache_peek(&fx.c, 8, 8001), -1);
    fx.l.n = 3; /* the chat is created */
    assert_int_equal(natter_members_cache_has(&fx.c, 8, 8001), 1);
    assert_int_equal(fx.l.calls, 2);
    assert_int_equal(natter_members_cache_size(&fx.c), 1);
}

/* The last member removed on another node (only the TTL tells this one):
 * the reload finds none, and the expired list must not go on answering
 * for the event loop. */
static void test_a_chat_emptied_elsewhere_drops_its_old_list(void **state)
{
    (void)state;
    uint64_t ids[8];
    size_t n;
    start(1000, 16);
    fx.l.n = 1; /* member 5001 only */
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), 1);
    fake_ns += 2000 * MS; /* expired */
    assert_int_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), -1); /* this post reloads */
    fx.l.n = 0; /* 5001 was removed: the chat has no member */
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), 0); /* the reload: not a member */
    assert_int_not_equal(natter_members_cache_peek_hot(&fx.c, 5, 5001, ids, 8, &n), 1);
    assert_int_equal(natter_members_cache_size(&fx.c), 0);
}

static void test_loader_error_propagates(void **state)
{
    (void)state;
    start(60000, 16);
    fx.l.fail = NATTER_EUNAVAIL;
    assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_EUNAVAIL);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), NATTER_EUNAVAIL);
    fx.l.fail = NATTER_EIO;
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), NATTER_EIO);
    assert_int_equal(fx.l.calls, 3); /* errors are not cached */
    fx.l.fail = 0;
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), 1);
    assert_int_equal(fx.l.calls, 4);
    assert_int_equal(natter_members_cache_has(&fx.c, 5, 5001), 1);
    assert_int_equal(fx.l.calls, 4);
}

static void test_ttl_zero_never_caches(void **state)
{
    (void)state;
    start(0, 16);
    for (int i = 0; i < 5; i++)
        assert_int_equal(natter_members_cache_get(&fx.c, 5, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 5);
    assert_int_equal(fx.out.len, 3);
    assert_int_equal(natter_members_cache_size(&fx.c), 0);
}

static void test_bounded_entries(void **state)
{
    (void)state;
    start(60000, 4);
    for (uint64_t chat = 1; chat <= 20; chat++) {
        assert_int_equal(natter_members_cache_get(&fx.c, chat, &fx.out), NATTER_OK);
        assert_true(natter_members_cache_size(&fx.c) <= 4);
        assert_true(natter_members_cache_size(&fx.c) >= 1);
    }
    assert_int_equal(fx.l.calls, 20);
    /* the newest entry survived the last overflow */
    assert_int_equal(natter_members_cache_get(&fx.c, 20, &fx.out), NATTER_OK);
    assert_int_equal(fx.l.calls, 20);
    const uint64_t want[] = {1, 2, 3};
    expect_members(20, 3, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hit_within_ttl, teardown),
        cmocka_unit_test_teardown(test_peek_ids_copies_a_small_chats_members, teardown),
        cmocka_unit_test_teardown(test_expiry, teardown),
        cmocka_unit_test_teardown(test_hot_peek_serves_expired_entry_while_one_reloads, teardown),
        cmocka_unit_test_teardown(test_hot_peek_retakes_an_abandoned_reload, teardown),
        cmocka_unit_test_teardown(test_invalidate_forces_reload, teardown),
        cmocka_unit_test_teardown(test_invalidation_racing_a_load_is_not_cached, teardown),
        cmocka_unit_test_teardown(test_has, teardown),
        cmocka_unit_test_teardown(test_a_chat_without_members_is_not_cached, teardown),
        cmocka_unit_test_teardown(test_a_chat_emptied_elsewhere_drops_its_old_list, teardown),
        cmocka_unit_test_teardown(test_loader_error_propagates, teardown),
        cmocka_unit_test_teardown(test_ttl_zero_never_caches, teardown),
        cmocka_unit_test_teardown(test_bounded_entries, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
