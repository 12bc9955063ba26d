/*
 * The CQL store's account creation against a real Cassandra
 * (NATTER_TEST_CQL=HOST:PORT, set by scripts/test-engines): creating a user
 * never leaves a username taken without a user. The states a failure or a
 * crash between the two writes leaves are planted with a second client,
 * then the store is asked to create the user again:
 *
 *   - a claim on the name with no user row (what the old order, claim then
 *     row, left when the row's insert failed): free again once it is older
 *     than a creation takes;
 *   - a user row with no claim (the new order, row then claim, interrupted):
 *     the name is free;
 *   - row and claim both there with the creator's id (the claim's answer was
 *     lost): the creation succeeded.
 *
 * And a session read for its user id alone (a post's question) answers as
 * the whole read does; a full store batch of long messages in one chat,
 * more than Cassandra takes in one mutation, is stored whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/id.h"
#include "core/message.h"
#include "core/util.h"
#include "core/vec.h"
#include "store/cql/cql_client.h"
#include "store/store.h"

static natter_config_t cfg;
static natter_store_t *store;
static cql_client_t *raw;
static char err[512];

static void plant(const char *fmt, ...)
{
    char q[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    cql_query_params_t qp = {.consistency = CQL_QUORUM};
    cql_result_t res;
    if (cql_client_query(raw, q, &qp, &res, err, sizeof(err)) != NATTER_OK)
        fail_msg("%s: %s", q, err);
    cql_result_free(&res);
}

static int setup(void **state)
{
    (void)state;
    const char *hosts = getenv("NATTER_TEST_CQL"), *user = getenv("NATTER_TEST_CQL_USER");
    const char *password = getenv("NATTER_TEST_CQL_PASSWORD");
    if (hosts == NULL) {
        fprintf(stderr, "NATTER_TEST_CQL is not set: no Cassandra to test against\n");
        return -1;
    }
    char ks[48];
    snprintf(ks, sizeof(ks), "storetest_%d", (int)getpid());
    char *argv[] = {"natter", "--store", "cql", "--cql-hosts", (char *)hosts, "--cql-keyspace", ks,
                    "--cql-user", (char *)(user ? user : "-"), "--cql-password", (char *)(password ? password : "-"),
                    "--cql-timeout", "10000", NULL};
    if (natter_config_load(&cfg, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, err, sizeof(err)) != NATTER_OK ||
        (store = natter_store_open(&natter_store_cql, &cfg, err, sizeof(err))) == NULL) {
        fprintf(stderr, "store: %s\n", err);
        return -1;
    }
    cql_client_config_t cc = {.hosts = hosts, .user = user, .password = password, .timeout_ms = 10000};
    if (cql_client_open(&raw, &cc, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "client: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char q[128];
    snprintf(q, sizeof(q), "DROP KEYSPACE IF EXISTS %s", cfg.cql_keyspace);
    plant("%s", q);
    cql_client_close(raw);
    natter_store_close(store);
    return 0;
}

static natter_user_t user_named(const char *name, uint64_t id)
{
    natter_user_t u = {.id = id};
    snprintf(u.username, sizeof(u.username), "%s", name);
    snprintf(u.pwhash, sizeof(u.pwhash), "$argon2id$test-%llu", (unsigned long long)id);
    return u;
}

static int create(const natter_user_t *u)
{
    return store->ops->user_create(store, u, natter_now_ms());
}

static uint64_t owner_of(const char *name)
{
    natter_user_t out;
    int rc = store->ops->user_by_name(store, name, &out);
    return rc == NATTER_OK ? out.id : rc == NATTER_ENOTFOUND ? 0 : (uint64_t)-1;
}

static void test_taken_name_conflicts(void **state)
{
    (void)state;
    natter_user_t a = user_named("taken", 1001), b = user_named("taken", 1002);
    assert_int_equal(create(&a), NATTER_OK);
    assert_int_equal(create(&b), NATTER_ECONFLICT);
    assert_int_equal(owner_of("taken"), 1001);
    natter_user_t ghost;
    assert_int_equal(store->ops->user_by_id(store, 1002, &ghost), NATTER_ENOTFOUND); /* the refused one's row went */
}

static void test_session_user_id(void **state)
{
    (void)state;
    natter_user_t u = user_named("sessions", 1101), whole;
    uint8_t live[NATTER_TOKEN_HASH_LEN], ended[NATTER_TOKEN_HASH_LEN], unknown[NATTER_TOKEN_HASH_LEN];
    memset(live, 1, sizeof(live));
    memset(ended, 2, sizeof(ended));
    memset(unknown, 3, sizeof(unknown));
    int64_t now = natter_now_ms(), expires = now + 600000;
    assert_int_equal(create(&u), NATTER_OK);
    assert_int_equal(natter_store_session_create(store, live, u.id, expires), NATTER_OK);
    assert_int_equal(natter_store_session_create(store, ended, u.id, now + 2000), NATTER_OK);
    uint64_t id = 0;
    int64_t until = 0;
    assert_int_equal(natter_store_session_user_id(store, live, now, &id, &until), NATTER_OK);
    assert_int_equal(id, 1101);
    assert_int_equal(until, expires);
    assert_int_equal(natter_store_session_user(store, live, now, &whole), NATTER_OK);
    assert_int_equal(whole.id, 1101);
    assert_string_equal(whole.username, "sessions");
    assert_int_equal(natter_store_session_user_id(store, unknown, now, &id, &until), NATTER_ENOTFOUND);
    assert_int_equal(natter_store_session_user_id(store, ended, now + 3000, &id, &until), NATTER_ENOTFOUND);
}

/* The old code answered NATTER_ECONFLICT here, for good. */
static void test_stale_claim_without_user_is_released(void **state)
{
    (void)state;
    int64_t two_minutes_ago_us = (natter_now_ms() - 120000) * 1000;
    plant("INSERT INTO %s.users_by_name (username, id, pwhash) VALUES ('orphan', 2001, 'x') USING TIMESTAMP %lld",
          cfg.cql_keyspace, (long long)two_minutes_ago_us);
    assert_int_equal(owner_of("orphan"), 0); /* a name with no user is no one's */
    natter_user_t u = user_named("orphan", 2002);
    assert_int_equal(create(&u), NATTER_OK);
    assert_int_equal(owner_of("orphan"), 2002);
}

/* A claim just made may be a creation still under way on an older node:
 * it stands (and still answers no user until its row is there). */
static void test_fresh_claim_without_user_stands(void **state)
{
    (void)state;
    plant("INSERT INTO %s.users_by_name (username, id, pwhash) VALUES ('inflight', 3001, 'x')", cfg.cql_keyspace);
    natter_user_t u = user_named("inflight", 3002);
    assert_int_equal(create(&u), NATTER_ECONFLICT);
    assert_int_equal(owner_of("inflight"), 0);
    plant("INSERT INTO %s.users (id, username, created_at) VALUES (3001, 'inflight', toTimestamp(now()))",
          cfg.cql_keyspace);
    assert_int_equal(owner_of("inflight"), 3001);
}

/* Stopped after the user row, before the claim: the name is free. */
static void test_user_row_without_claim_leaves_name_free(void **state)
{
    (void)state;
    plant("INSERT INTO %s.users (id, username, created_at) VALUES (4001, 'halfway', toTimestamp(now()))",
          cfg.cql_keyspace);
    assert_int_equal(owner_of("halfway"), 0);
    natter_user_t u = user_named("halfway", 4002);
    assert_int_equal(create(&u), NATTER_OK);
    assert_int_equal(owner_of("halfway"), 4002);
}

/* The claim was applied but its answer lost: claiming again finds our own
 * id, which is success, not a conflict. */
static void test_claim_already_ours_is_success(void **state)
{
    (void)state;
    natter_user_t u = user_named("lostanswer", 5001);
    plant("INSERT INTO %s.users (id, username, created_at) VALUES (5001, 'lostanswer', toTimestamp(now()))",
          cfg.cql_keyspace);
    plant("INSERT INTO %s.users_by_name (username, id, pwhash) VALUES ('lostanswer', 5001, '%s')", cfg.cql_keyspace,
          u.pwhash);
    assert_int_equal(create(&u), NATTER_OK);
    assert_int_equal(owner_of("lostanswer"), 5001);
}

/* A store batch of a thousand messages of 4,000 two-byte characters in one
 * chat (8 MB) is more than Cassandra takes in one mutation (half a commit
 * log segment): the store splits the chat's rows into batches it takes, so
 * the whole batch is stored and reads back whole. */
static void test_a_full_batch_of_long_messages_is_stored(void **state)
{
    (void)state;
    enum { N = 1000, CHARS = 4000 };
    const uint64_t chat = 777000;
    char *content = xmalloc(CHARS * 2 + 1);
    for (size_t i = 0; i < CHARS; i++)
        memcpy(content + 2 * i, "\xc3\xa9", 2); /* é */
    content[CHARS * 2] = '\0';
    natter_idgen_t ids;
    natter_idgen_init(&ids, 7);
    natter_msg_t *head = NULL, **tail = &head;
    for (size_t i = 0; i < N; i++) {
        natter_msg_t *m = natter_msg_new(chat, 4242, content, CHARS * 2, NULL, 0);
        m->id = natter_idgen_next(&ids, natter_now_ms());
        m->created_at_ms = natter_id_time_ms(m->id);
        *tail = m;
        tail = &m->next;
    }
    assert_int_equal(store->ops->messages_insert(store, head, N), NATTER_OK);
    size_t found = 0, intact = 0;
    uint64_t after = 0;
    int more = 1;
    while (more) {
        natter_vec_t page;
        natter_vec_init(&page, sizeof(natter_msg_t *));
        assert_int_equal(natter_store_messages_page(store, chat, after, NATTER_CURSOR_NONE, 100, &page, &more),
                         NATTER_OK);
        for (size_t i = 0; i < page.len; i++) {
            natter_msg_t *m = *NATTER_VEC_AT(&page, natter_msg_t *, i);
            found++;
            intact += m->content_len == CHARS * 2 && memcmp(m->content, content, CHARS * 2) == 0;
            after = m->id;
            free(m);
        }
        if (page.len == 0)
            more = 0;
        natter_vec_free(&page);
    }
    assert_int_equal(found, N);
    assert_int_equal(intact, N);
    natter_msg_free_list(head);
    free(content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taken_name_conflicts),
        cmocka_unit_test(test_stale_claim_without_user_is_released),
        cmocka_unit_test(test_fresh_claim_without_user_stands),
        cmocka_unit_test(test_user_row_without_claim_leaves_name_free),
        cmocka_unit_test(test_claim_already_ours_is_success),
        cmocka_unit_test(test_session_user_id),
        cmocka_unit_test(test_a_full_batch_of_long_messages_is_stored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
