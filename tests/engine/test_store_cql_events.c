/*
 * The CQL store's events against a real Cassandra (NATTER_TEST_CQL=HOST:PORT
 * and the NATTER_TEST_CQL_USER/PASSWORD credentials, set by
 * scripts/test-engines): a batch of messages and events applied, then
 * delivered again whole and in part, changes nothing twice; a message insert
 * replayed after its delete brings nothing back; an edit never lands on
 * another's message nor behind a newer edit; a delete outlives an edit and
 * a reaction logged before it with larger ids (two nodes' clocks). Every write of an event carries
 * the event's id as its timestamp, so the ids here are real ones (now).
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

#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "store/cql/cql_client.h"
#include "store/store.h"

#define THUMB "\xf0\x9f\x91\x8d"
#define HEART "\xe2\x9d\xa4\xef\xb8\x8f"

static natter_config_t cfg;
static natter_store_t *store;
static natter_idgen_t ids;
static uint64_t chat, alice, bob;

static uint64_t next_id(void)
{
    return natter_idgen_next(&ids, natter_now_ms());
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    char *argv[] = {"test", NULL};
    const char *hosts = getenv("NATTER_TEST_CQL"), *user = getenv("NATTER_TEST_CQL_USER"),
               *password = getenv("NATTER_TEST_CQL_PASSWORD");
    if (hosts == NULL) {
        fprintf(stderr, "NATTER_TEST_CQL is not set: no Cassandra to test against\n");
        return -1;
    }
    if (natter_config_load(&cfg, 1, argv, err, sizeof(err)) != NATTER_OK)
        return -1;
    snprintf(cfg.cql_hosts, sizeof(cfg.cql_hosts), "%s", hosts);
    snprintf(cfg.cql_keyspace, sizeof(cfg.cql_keyspace), "events_%d", (int)getpid());
    snprintf(cfg.cql_consistency, sizeof(cfg.cql_consistency), "one");
    if (user != NULL && password != NULL) {
        snprintf(cfg.cql_user, sizeof(cfg.cql_user), "%s", user);
        snprintf(cfg.cql_password, sizeof(cfg.cql_password), "%s", password);
    }
    cfg.cql_timeout_ms = 10000;
    if ((store = natter_store_open(&natter_store_cql, &cfg, err, sizeof(err))) == NULL) {
        fprintf(stderr, "cannot open the store: %s\n", err);
        return -1;
    }
    natter_idgen_init(&ids, 7);
    alice = next_id();
    bob = next_id();
    chat = next_id();
    natter_chat_t c = {.id = chat, .created_by = alice, .created_at_ms = natter_id_time_ms(chat)};
    snprintf(c.name, sizeof(c.name), "events");
    const uint64_t members[] = {alice, bob};
    return store->ops->chat_create(store, &c, members, 2) == NATTER_OK ? 0 : -1;
}

/* The test's keyspace goes with it: Cassandra keeps memory per table. */
static int teardown(void **state)
{
    (void)state;
    char err[512], q[128];
    cql_client_t *client;
    int auth = strcmp(cfg.cql_user, "-") != 0;
    cql_client_config_t cc = {.hosts = cfg.cql_hosts, .conns_per_host = 1, .timeout_ms = 30000,
                              .user = auth ? cfg.cql_user : NULL, .password = auth ? cfg.cql_password : NULL};
    natter_store_close(store);
    if (cql_client_open(&client, &cc, err, sizeof(err)) == NATTER_OK) {
        cql_result_t res;
        snprintf(q, sizeof(q), "DROP KEYSPACE IF EXISTS %s", cfg.cql_keyspace);
        if (cql_client_query(client, q, NULL, &res, err, sizeof(err)) == NATTER_OK)
            cql_result_free(&res);
        cql_client_close(client);
    }
    return 0;
}

typedef struct {
    natter_msg_t *head, **tail;
    size_t n;
} batch_t;

static void batch_init(batch_t *b)
{
    b->head = NULL;
    b->tail = &b->head;
    b->n = 0;
}

static natter_msg_t *push(batch_t *b, unsigned kind, uint64_t id, uint64_t sender, uint64_t target, const char *content)
{
    natter_msg_t *m = natter_msg_new(chat, sender, content, strlen(content), "", 0);
    m->kind = (uint8_t)kind;
    m->id = id;
    m->target_id = target;
    m->created_at_ms = natter_id_time_ms(id);
    *b->tail = m;
    b->tail = &m->next;
    b->n++;
    return m;
}

static void write_batch(batch_t *b)
{
    assert_int_equal(store->ops->records_write(store, b->head, b->n, 0, 0), NATTER_OK);
}

static void batch_free(batch_t *b)
{
    natter_msg_free_list(b->head);
    batch_init(b);
}

static natter_msg_t *get(uint64_t id)
{
    natter_msg_t *m = NULL;
    assert_int_equal(store->ops->message_get(store, chat, id, &m), NATTER_OK);
    return m;
}

static size_t reactions_of(uint64_t id, const char *emoji, uint64_t user)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_reaction_row_t));
    assert_int_equal(store->ops->reactions_range(store, chat, id, id, &v), NATTER_OK);
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        natter_reaction_row_t *r = NATTER_VEC_AT(&v, natter_reaction_row_t, i);
        n += (emoji == NULL || strcmp(r->emoji, emoji) == 0) && (user == 0 || r->user_id == user);
    }
    natter_vec_free(&v);
    return n;
}

static size_t events(void)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(store->ops->events_page(store, chat, 0, NATTER_CURSOR_NONE, 200, &v, &more), NATTER_OK);
    size_t n = v.len;
    for (size_t i = 0; i < v.len; i++)
        free(*NATTER_VEC_AT(&v, natter_msg_t *, i));
    natter_vec_free(&v);
    return n;
}

static void test_redelivery_changes_nothing(void **state)
{
    (void)state;
    uint64_t kept = next_id(), gone = next_id();
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, kept, alice, 0, "first words");
    push(&b, NATTER_EV_MESSAGE, gone, bob, 0, "secret");
    uint64_t edit = next_id(), add = next_id(), remove = next_id();
    push(&b, NATTER_EV_EDIT, edit, alice, kept, "second words");
    push(&b, NATTER_EV_REACT_ADD, add, bob, kept, THUMB);
    push(&b, NATTER_EV_REACT_REMOVE, remove, bob, kept, THUMB);
    push(&b, NATTER_EV_REACT_ADD, next_id(), alice, kept, HEART);
    push(&b, NATTER_EV_REACT_ADD, next_id(), alice, gone, HEART);
    push(&b, NATTER_EV_DELETE, next_id(), bob, gone, "");
    write_batch(&b);
    size_t n = events();
    assert_int_equal(n, 6);
    write_batch(&b); /* the whole batch again */
    batch_free(&b);

    /* a suffix again, out of order: the add whose remove came later, the
     * edit, and the deleted message's insert */
    push(&b, NATTER_EV_REACT_ADD, add, bob, kept, THUMB);
    push(&b, NATTER_EV_EDIT, edit, alice, kept, "second words");
    push(&b, NATTER_EV_MESSAGE, gone, bob, 0, "secret");
    write_batch(&b);
    batch_free(&b);

    natter_msg_t *m = get(kept);
    assert_string_equal(m->content, "second words");
    assert_int_equal(m->edited_at_ms, natter_id_time_ms(edit));
    free(m);
    m = get(gone);
    assert_true(m->deleted);
    assert_int_equal(m->content_len, 0);
    free(m);
    assert_int_equal(reactions_of(kept, THUMB, bob), 0);
    assert_int_equal(reactions_of(kept, HEART, alice), 1);
    assert_int_equal(reactions_of(gone, NULL, 0), 0);
    assert_int_equal(events(), n);
}

static void test_edit_rules(void **state)
{
    (void)state;
    uint64_t msg = next_id();
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, msg, alice, 0, "alice's");
    push(&b, NATTER_EV_EDIT, next_id(), bob, msg, "bob was here"); /* not Bob's */
    push(&b, NATTER_EV_DELETE, next_id(), bob, msg, "");           /* nor his to delete */
    uint64_t older = next_id(), newer = next_id();
    push(&b, NATTER_EV_EDIT, newer, alice, msg, "newer");
    write_batch(&b);
    batch_free(&b);
    push(&b, NATTER_EV_EDIT, older, alice, msg, "older"); /* applied after a newer one */
    write_batch(&b);
    batch_free(&b);
    natter_msg_t *m = get(msg);
    assert_string_equal(m->content, "newer");
    assert_false(m->deleted);
    free(m);
}

/* Node B (clock behind) deletes after node A (clock ahead) edited and
 * reacted: the log has the edit and the reaction first, with larger ids
 * than the delete's. The delete is applied last, as the log says. */
static void test_a_delete_outlives_earlier_changes_with_larger_ids(void **state)
{
    (void)state;
    uint64_t msg = next_id(), del = next_id();
    usleep(3000);
    uint64_t edit = next_id(), react = next_id();
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, msg, alice, 0, "secret words");
    push(&b, NATTER_EV_EDIT, edit, alice, msg, "edited secret");
    push(&b, NATTER_EV_REACT_ADD, react, bob, msg, THUMB);
    push(&b, NATTER_EV_DELETE, del, alice, msg, "");
    write_batch(&b);
    write_batch(&b); /* and once more, redelivered */
    batch_free(&b);
    natter_msg_t *m = get(msg);
    assert_true(m->deleted);
    assert_int_equal(m->content_len, 0);
    assert_int_equal(m->edited_at_ms, 0);
    free(m);
    assert_int_equal(reactions_of(msg, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redelivery_changes_nothing),
        cmocka_unit_test(test_edit_rules),
        cmocka_unit_test(test_a_delete_outlives_earlier_changes_with_larger_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
