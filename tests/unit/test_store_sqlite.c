/* Unit tests for src/store/store_sqlite.c on a fresh database in a mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

typedef struct {
    char dir[64];
    natter_config_t cfg;
    natter_store_t *s;
} fixture_t;

static natter_store_t *open_store(fixture_t *f)
{
    char err[256] = "";
    natter_store_t *s = natter_store_open(&natter_store_sqlite, &f->cfg, err, sizeof(err));
    if (s == NULL)
        fail_msg("store open: %s", err);
    return s;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/natter-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s/data", f->dir); /* the store creates it */
    snprintf(f->cfg.sqlite_sync, sizeof(f->cfg.sqlite_sync), "normal");
    f->s = open_store(f);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    natter_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

#define OPS(f) ((f)->s->ops)

static void add_user(fixture_t *f, uint64_t id, const char *name)
{
    natter_user_t u;
    memset(&u, 0, sizeof(u));
    u.id = id;
    snprintf(u.username, sizeof(u.username), "%s", name);
    snprintf(u.pwhash, sizeof(u.pwhash), "$argon2id$v=19$fake$%s", name);
    assert_int_equal(OPS(f)->user_create(f->s, &u, 1700000000000LL), NATTER_OK);
}

static void add_chat(fixture_t *f, uint64_t id, const char *name, const uint64_t *members, size_t n)
{
    natter_chat_t c;
    memset(&c, 0, sizeof(c));
    c.id = id;
    c.created_by = members[0];
    c.created_at_ms = 1700000000000LL + (int64_t)id;
    snprintf(c.name, sizeof(c.name), "%s", name);
    assert_int_equal(OPS(f)->chat_create(f->s, &c, members, n), NATTER_OK);
}

static natter_msg_t *make_msg(uint64_t id, uint64_t chat, uint64_t sender, const char *cid)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "message %llu in %llu", (unsigned long long)id, (unsigned long long)chat);
    natter_msg_t *m = natter_msg_new(chat, sender, text, (size_t)n, cid ? cid : "", cid ? strlen(cid) : 0);
    m->id = id;
    m->created_at_ms = 1700000000000LL + (int64_t)id;
    return m;
}

/* Inserts messages ids [first, first+n) of one chat, from sender, as one batch. */
static void insert_range(fixture_t *f, uint64_t chat, uint64_t sender, uint64_t first, size_t n)
{
    natter_msg_t *head = NULL, **tail = &head;
    for (size_t i = 0; i < n; i++) {
        *tail = make_msg(first + i, chat, sender, NULL);
        tail = &(*tail)->next;
    }
    assert_int_equal(OPS(f)->messages_insert(f->s, head, n), NATTER_OK);
    while (head != NULL) {
        natter_msg_t *next = head->next;
        free(head);
        head = next;
    }
}

static void free_page(natter_vec_t *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(*NATTER_VEC_AT(v, natter_msg_t *, i));
    natter_vec_free(v);
}

static void free_summaries(natter_vec_t *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(NATTER_VEC_AT(v, natter_chat_summary_t, i)->last);
    natter_vec_free(v);
}

/* Checks a page holds exactly ids first..last ascending, and has_more. */
static void expect_page(fixture_t *f, uint64_t chat, uint64_t after, uint64_t before, uint32_t limit,
                        uint64_t first, uint64_t last, int more)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int has_more = -1;
    assert_int_equal(OPS(f)->messages_page(f->s, chat, after, before, limit, &v, &has_more), NATTER_OK);
    size_t want = first == 0 ? 0 : (size_t)(last - first + 1);
    if (v.len != want || has_more != more)
        fail_msg("page(chat %llu, after %lld, before %lld, limit %u): %zu items, has_more %d; want %zu, %d",
                 (unsigned long long)chat, (long long)after, (long long)before, limit, v.len, has_more, want, more);
    for (size_t i = 0; i < v.len; i++) {
        natter_msg_t *m = *NATTER_VEC_AT(&v, natter_msg_t *, i);
        assert_int_equal(m->id, first + i);
        assert_int_equal(m->chat_id, chat);
    }
    free_page(&v);
}

static void test_find_and_ping(void **state)
{
    fixture_t *f = *state;
    assert_ptr_equal(natter_store_find("sqlite"), &natter_store_sqlite);
    assert_ptr_equal(natter_store_find("cql"), &natter_store_cql);
    assert_null(natter_store_find("mysql"));
    assert_int_equal(OPS(f)->ping(f->s), NATTER_OK);
}

/* The largest id among users, chats and messages (0 for an empty store):
 * where a restarted node's ids start after. */
static void test_max_id(void **state)
{
    fixture_t *f = *state;
    uint64_t top = 1;
    assert_int_equal(natter_store_max_id(f->s, &top), NATTER_OK);
    assert_int_equal(top, 0);
    add_user(f, 40, "alice");
    const uint64_t members[] = {40};
    add_chat(f, 30, "room", members, 1);
    assert_int_equal(natter_store_max_id(f->s, &top), NATTER_OK);
    assert_int_equal(top, 40);
    natter_msg_t *m = make_msg(900, 30, 40, NULL);
    assert_int_equal(OPS(f)->messages_insert(f->s, m, 1), NATTER_OK);
    natter_msg_free_list(m);
    add_user(f, 50, "bob");
    assert_int_equal(natter_store_max_id(f->s, &top), NATTER_OK);
    assert_int_equal(top, 900);
}

static void test_users(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    add_user(f, 2, "bob");
    natter_user_t u;
    assert_int_equal(OPS(f)->user_by_name(f->s, "alice", &u), NATTER_OK);
    assert_int_equal(u.id, 1);
    assert_string_equal(u.username, "alice");
    assert_string_equal(u.pwhash, "$argon2id$v=19$fake$alice");
    memset(&u, 0x55, sizeof(u));
    assert_int_equal(OPS(f)->user_by_id(f->s, 2, &u), NATTER_OK);
    assert_int_equal(u.id, 2);
    assert_string_equal(u.username, "bob");
    assert_string_equal(u.pwhash, ""); /* filled by user_by_name only */
    assert_int_equal(OPS(f)->user_by_name(f->s, "carol", &u), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->user_by_name(f->s, "Alice", &u), NATTER_ENOTFOUND); /* names are case-sensitive */
    assert_int_equal(OPS(f)->user_by_id(f->s, 3, &u), NATTER_ENOTFOUND);

    /* a taken username conflicts, whatever the id */
    natter_user_t dup;
    memset(&dup, 0, sizeof(dup));
    dup.id = 3;
    snprintf(dup.username, sizeof(dup.username), "alice");
    snprintf(dup.pwhash, sizeof(dup.pwhash), "x");
    assert_int_equal(OPS(f)->user_create(f->s, &dup, 0), NATTER_ECONFLICT);
    assert_int_equal(OPS(f)->user_by_id(f->s, 3, &u), NATTER_ENOTFOUND);
    /* so does a taken id */
    dup.id = 1;
    snprintf(dup.username, sizeof(dup.username), "carol");
    assert_int_equal(OPS(f)->user_create(f->s, &dup, 0), NATTER_ECONFLICT);
    assert_int_equal(OPS(f)->user_by_name(f->s, "alice", &u), NATTER_OK);
    assert_string_equal(u.pwhash, "$argon2id$v=19$fake$alice");
}

static void test_sessions(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    uint8_t h1[NATTER_TOKEN_HASH_LEN], h2[NATTER_TOKEN_HASH_LEN], h3[NATTER_TOKEN_HASH_LEN];
    natter_token_hash("token-one", 9, h1);
    natter_token_hash("token-two", 9, h2);
    natter_token_hash("token-three", 11, h3);
    int64_t now = natter_now_ms(), exp = now + 60000;
    assert_int_equal(OPS(f)->session_create(f->s, h1, 1, exp), NATTER_OK);
    natter_user_t u;
    assert_int_equal(OPS(f)->session_user(f->s, h1, now, &u), NATTER_OK);
    assert_int_equal(u.id, 1);
    assert_string_equal(u.username, "alice");
    assert_string_equal(u.pwhash, "");
    assert_int_equal(OPS(f)->session_user(f->s, h1, exp - 1, &u), NATTER_OK);
    assert_int_equal(OPS(f)->session_user(f->s, h1, exp, &u), NATTER_ENOTFOUND); /* expired at expires_at */
    assert_int_equal(OPS(f)->session_user(f->s, h1, exp + 1000, &u), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->session_user(f->s, h2, now, &u), NATTER_ENOTFOUND);  /* unknown */
    assert_int_equal(OPS(f)->session_create(f->s, h1, 1, exp), NATTER_ECONFLICT);

    /* a session that already expired is swept when the next one is created */
    assert_int_equal(OPS(f)->session_create(f->s, h2, 1, now - 1000), NATTER_OK);
    assert_int_equal(OPS(f)->session_user(f->s, h2, now - 2000, &u), NATTER_OK);
    assert_int_equal(OPS(f)->session_create(f->s, h3, 1, exp), NATTER_OK);
    assert_int_equal(OPS(f)->session_user(f->s, h2, now - 2000, &u), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->session_user(f->s, h1, now, &u), NATTER_OK); /* live ones stay */

    assert_int_equal(OPS(f)->session_delete(f->s, h1), NATTER_OK);
    assert_int_equal(OPS(f)->session_user(f->s, h1, now, &u), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->session_user(f->s, h3, now, &u), NATTER_OK);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void expect_member_ids(fixture_t *f, uint64_t chat, size_t n, const uint64_t *want)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(uint64_t));
    assert_int_equal(OPS(f)->chat_member_ids(f->s, chat, &v), NATTER_OK);
    assert_int_equal(v.len, n);
    if (v.len > 1)
        qsort(v.items, v.len, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(*NATTER_VEC_AT(&v, uint64_t, i), want[i]);
    natter_vec_free(&v);
}

static void test_chats_and_members(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "carol");
    add_user(f, 2, "alice");
    add_user(f, 3, "bob");
    add_user(f, 4, "dave");
    const uint64_t members[] = {1, 2, 3};
    add_chat(f, 100, "caf\xC3\xA9 talk", members, 3);

    natter_chat_t c;
    assert_int_equal(OPS(f)->chat_get(f->s, 100, &c), NATTER_OK);
    assert_int_equal(c.id, 100);
    assert_int_equal(c.created_by, 1);
    assert_int_equal(c.created_at_ms, 1700000000100LL);
    assert_string_equal(c.name, "caf\xC3\xA9 talk");
    assert_int_equal(OPS(f)->chat_get(f->s, 101, &c), NATTER_ENOTFOUND);

    const uint64_t want[] = {1, 2, 3};
    expect_member_ids(f, 100, 3, want);
    expect_member_ids(f, 101, 0, NULL); /* an unknown chat has none */

    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_user_t));
    assert_int_equal(OPS(f)->chat_members(f->s, 100, &v), NATTER_OK);
    assert_int_equal(v.len, 3);
    static const char *const names[] = {"alice", "bob", "carol"}; /* by username */
    static const uint64_t ids[] = {2, 3, 1};
    for (size_t i = 0; i < 3; i++) {
        natter_user_t *u = NATTER_VEC_AT(&v, natter_user_t, i);
        assert_string_equal(u->username, names[i]);
        assert_int_equal(u->id, ids[i]);
        assert_string_equal(u->pwhash, "");
    }
    natter_vec_free(&v);

    /* a chat id that exists conflicts, and none of its members are added */
    natter_chat_t again = c;
    const uint64_t other[] = {4};
    assert_int_equal(OPS(f)->chat_create(f->s, &again, other, 1), NATTER_ECONFLICT);
    expect_member_ids(f, 100, 3, want);

    /* add is idempotent (and says when it changed nothing); remove reports a non-member */
    assert_int_equal(OPS(f)->member_add(f->s, 100, 4), NATTER_OK);
    assert_int_equal(OPS(f)->member_add(f->s, 100, 4), NATTER_ECONFLICT);
    const uint64_t want4[] = {1, 2, 3, 4};
    expect_member_ids(f, 100, 4, want4);
    assert_int_equal(OPS(f)->member_remove(f->s, 100, 2), NATTER_OK);
    assert_int_equal(OPS(f)->member_remove(f->s, 100, 2), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->member_remove(f->s, 999, 1), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->member_remove(f->s, 100, 77), NATTER_ENOTFOUND);
    const uint64_t want3[] = {1, 3, 4};
    expect_member_ids(f, 100, 3, want3);
}

static void test_messages_insert_idempotent(void **state)
{
    fixture_t *f = *state;
    natter_msg_t *a = make_msg(11, 5, 1, "client-a"), *b = make_msg(12, 5, 2, NULL), *c = make_msg(13, 5, 1, NULL);
    a->next = b;
    b->next = c;
    assert_int_equal(OPS(f)->messages_insert(f->s, a, 3), NATTER_OK);
    assert_int_equal(OPS(f)->messages_insert(f->s, a, 3), NATTER_OK); /* the same batch again */
    expect_page(f, 5, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, 11, 13, 0);

    /* a batch mixing stored and new messages: the stored one is left as is */
    natter_msg_t *changed = make_msg(13, 5, 1, NULL);
    memcpy(changed->content, "EDITED", 6);
    changed->next = make_msg(14, 5, 2, NULL);
    assert_int_equal(OPS(f)->messages_insert(f->s, changed, 2), NATTER_OK);
    expect_page(f, 5, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, 11, 14, 0);

    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->messages_page(f->s, 5, 0, NATTER_CURSOR_NONE, 50, &v, &more), NATTER_OK);
    assert_int_equal(v.len, 4);
    natter_msg_t *m0 = *NATTER_VEC_AT(&v, natter_msg_t *, 0), *m2 = *NATTER_VEC_AT(&v, natter_msg_t *, 2);
    assert_int_equal(m0->sender_id, 1);
    assert_int_equal(m0->created_at_ms, 1700000000011LL);
    assert_string_equal(m0->content, "message 11 in 5");
    assert_int_equal(m0->content_len, strlen("message 11 in 5"));
    assert_int_equal(m0->client_id_len, 8);
    assert_memory_equal(m0->client_id, "client-a", 8);
    assert_string_equal(m2->content, "message 13 in 5");
    assert_int_equal(m2->client_id_len, 0);
    free_page(&v);

    assert_int_equal(OPS(f)->message_in_chat(f->s, 5, 12), NATTER_OK);
    assert_int_equal(OPS(f)->message_in_chat(f->s, 6, 12), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->message_in_chat(f->s, 5, 99), NATTER_ENOTFOUND);

    natter_msg_free_list(a);
    free(changed->next);
    free(changed);
}

static void test_messages_page(void **state)
{
    fixture_t *f = *state;
    /* chat 1: ids 1001..1025; chat 2 interleaved and around, never in chat 1's pages */
    insert_range(f, 2, 9, 990, 5);
    insert_range(f, 1, 7, 1001, 25);
    insert_range(f, 2, 9, 1026, 5);
    const uint64_t N = NATTER_CURSOR_NONE;

    /* no bounds: the newest page, more older */
    expect_page(f, 1, N, N, 10, 1016, 1025, 1);
    /* before: walking back */
    expect_page(f, 1, N, 1016, 10, 1006, 1015, 1);
    expect_page(f, 1, N, 1006, 10, 1001, 1005, 0);
    expect_page(f, 1, N, 1001, 10, 0, 0, 0);
    expect_page(f, 1, N, 1011, 10, 1001, 1010, 0); /* exactly a page left: no more */
    /* after: walking forward from the first */
    expect_page(f, 1, 0, N, 10, 1001, 1010, 1);
    expect_page(f, 1, 1010, N, 10, 1011, 1020, 1);
    expect_page(f, 1, 1020, N, 10, 1021, 1025, 0);
    expect_page(f, 1, 1015, N, 10, 1016, 1025, 0); /* exactly a page left */
    expect_page(f, 1, 1025, N, 10, 0, 0, 0);
    /* both bounds: the page starts after `after`, stays below `before` */
    expect_page(f, 1, 1003, 1010, 10, 1004, 1009, 0);
    expect_page(f, 1, 1003, 1010, 3, 1004, 1006, 1);
    expect_page(f, 1, 1003, 1007, 3, 1004, 1006, 0);
    expect_page(f, 1, 1005, 1006, 10, 0, 0, 0);
    /* limits */
    expect_page(f, 1, N, N, 25, 1001, 1025, 0);
    expect_page(f, 1, N, N, 24, 1002, 1025, 1);
    expect_page(f, 1, N, N, 100, 1001, 1025, 0);
    expect_page(f, 1, 0, N, 1, 1001, 1001, 1);
    expect_page(f, 1, N, N, 1, 1025, 1025, 1);
    /* bounds that are not message ids of the chat work as plain numbers */
    expect_page(f, 1, 995, N, 3, 1001, 1003, 1);
    expect_page(f, 1, N, 1028, 3, 1023, 1025, 1);
    /* other chats */
    /* other chats: their own ids only */
    expect_page(f, 2, N, N, 4, 1027, 1030, 1);
    expect_page(f, 2, N, 1026, 10, 990, 994, 0);
    expect_page(f, 2, 994, N, 10, 1026, 1030, 0);
    expect_page(f, 3, N, N, 10, 0, 0, 0);
    expect_page(f, 3, 0, N, 10, 0, 0, 0);
}

static natter_chat_summary_t *find_summary(natter_vec_t *v, uint64_t chat)
{
    for (size_t i = 0; i < v->len; i++)
        if (NATTER_VEC_AT(v, natter_chat_summary_t, i)->chat.id == chat)
            return NATTER_VEC_AT(v, natter_chat_summary_t, i);
    fail_msg("chat %llu not in the user's chats", (unsigned long long)chat);
    return NULL;
}

/* The user's summary of the chat, without its last message. */
static natter_chat_summary_t summary_of(fixture_t *f, uint64_t user, uint64_t chat)
{
    natter_vec_t v;
    uint64_t next;
    natter_vec_init(&v, sizeof(natter_chat_summary_t));
    assert_int_equal(OPS(f)->user_chats(f->s, user, NATTER_CURSOR_NONE, 200, &v, &next), NATTER_OK);
    natter_chat_summary_t cs = *find_summary(&v, chat);
    cs.last = NULL;
    free_summaries(&v);
    return cs;
}

static uint64_t unread(fixture_t *f, uint64_t user, uint64_t chat)
{
    return summary_of(f, user, chat).unread;
}

static uint64_t marker(fixture_t *f, uint64_t user, uint64_t chat)
{
    return summary_of(f, user, chat).read;
}

static void test_read_markers_and_unread(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    add_user(f, 2, "bob");
    const uint64_t members[] = {1, 2};
    add_chat(f, 50, "pair", members, 2);
    insert_range(f, 50, 2, 101, 3); /* bob: 101 102 103 */
    insert_range(f, 50, 1, 104, 2); /* alice: 104 105 */
    insert_range(f, 50, 2, 106, 1); /* bob: 106 */

    assert_int_equal(unread(f, 1, 50), 4); /* bob's four; alice's own never count */
    assert_int_equal(unread(f, 2, 50), 2); /* alice's two */
    assert_int_equal(marker(f, 1, 50), 0);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 102), NATTER_OK);
    assert_int_equal(unread(f, 1, 50), 2); /* 103 and 106 */
    assert_int_equal(marker(f, 1, 50), 102);
    /* the marker only moves forward; back or to where it is changes nothing, and says so */
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 101), NATTER_ECONFLICT);
    assert_int_equal(unread(f, 1, 50), 2);
    assert_int_equal(marker(f, 1, 50), 102);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 102), NATTER_ECONFLICT);
    assert_int_equal(unread(f, 1, 50), 2);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 105), NATTER_OK);
    assert_int_equal(unread(f, 1, 50), 1);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 106), NATTER_OK);
    assert_int_equal(unread(f, 1, 50), 0);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 50, 103), NATTER_ECONFLICT);
    assert_int_equal(unread(f, 1, 50), 0);
    /* markers are per user */
    assert_int_equal(unread(f, 2, 50), 2);
    assert_int_equal(marker(f, 1, 50), 106);
    assert_int_equal(marker(f, 2, 50), 0);
    insert_range(f, 50, 2, 107, 1);
    assert_int_equal(unread(f, 1, 50), 1);
}

static void test_user_chats(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    add_user(f, 2, "bob");
    const uint64_t ab[] = {1, 2}, b[] = {2}, a[] = {1};
    add_chat(f, 10, "old with messages", ab, 2);
    add_chat(f, 2000, "new and empty", ab, 2);
    add_chat(f, 3000, "bob only", b, 1);
    natter_msg_t *m = make_msg(1500, 10, 2, "cid-1500");
    assert_int_equal(OPS(f)->messages_insert(f->s, m, 1), NATTER_OK);
    free(m);

    natter_vec_t v;
    uint64_t next;
    natter_vec_init(&v, sizeof(natter_chat_summary_t));
    assert_int_equal(OPS(f)->user_chats(f->s, 1, NATTER_CURSOR_NONE, 200, &v, &next), NATTER_OK);
    assert_int_equal(next, 0); /* the whole list */
    assert_int_equal(v.len, 2); /* not bob's private chat */
    natter_chat_summary_t *s0 = NATTER_VEC_AT(&v, natter_chat_summary_t, 0);
    natter_chat_summary_t *s1 = NATTER_VEC_AT(&v, natter_chat_summary_t, 1);
    assert_int_equal(s0->chat.id, 2000); /* newest activity first: created after message 1500 */
    assert_string_equal(s0->chat.name, "new and empty");
    assert_null(s0->last);
    assert_int_equal(s0->unread, 0);
    assert_int_equal(s1->chat.id, 10);
    assert_int_equal(s1->chat.created_by, 1);
    assert_int_equal(s1->chat.created_at_ms, 1700000000010LL);
    assert_int_equal(s1->unread, 1);
    assert_non_null(s1->last);
    assert_int_equal(s1->last->id, 1500);
    assert_int_equal(s1->last->chat_id, 10);
    assert_int_equal(s1->last->sender_id, 2);
    assert_string_equal(s1->last->content, "message 1500 in 10");
    assert_int_equal(s1->last->client_id_len, 8);
    free_summaries(&v);

    /* a newer message moves its chat to the top */
    insert_range(f, 10, 1, 2500, 1);
    natter_vec_init(&v, sizeof(natter_chat_summary_t));
    assert_int_equal(OPS(f)->user_chats(f->s, 1, NATTER_CURSOR_NONE, 200, &v, &next), NATTER_OK);
    assert_int_equal(v.len, 2);
    assert_int_equal(NATTER_VEC_AT(&v, natter_chat_summary_t, 0)->chat.id, 10);
    assert_int_equal(NATTER_VEC_AT(&v, natter_chat_summary_t, 0)->last->id, 2500);
    assert_int_equal(NATTER_VEC_AT(&v, natter_chat_summary_t, 0)->unread, 1); /* own message not counted */
    assert_int_equal(NATTER_VEC_AT(&v, natter_chat_summary_t, 1)->chat.id, 2000);
    free_summaries(&v);

    /* leaving a chat removes it from the list */
    assert_int_equal(OPS(f)->member_remove(f->s, 2000, 1), NATTER_OK);
    natter_vec_init(&v, sizeof(natter_chat_summary_t));
    assert_int_equal(OPS(f)->user_chats(f->s, 1, NATTER_CURSOR_NONE, 200, &v, &next), NATTER_OK);
    assert_int_equal(v.len, 1);
    free_summaries(&v);
    /* a user in no chat */
    add_user(f, 3, "carol");
    natter_vec_init(&v, sizeof(natter_chat_summary_t));
    assert_int_equal(OPS(f)->user_chats(f->s, 3, NATTER_CURSOR_NONE, 200, &v, &next), NATTER_OK);
    assert_int_equal(v.len, 0);
    free_summaries(&v);
    (void)a;
}

/* Pages of a user's chats: newest activity first, each page's next the
 * activity of its last chat, the next page below it; a message moves its
 * chat to the first page. */
static void test_user_chats_pages(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    const uint64_t a[] = {1};
    for (uint64_t id = 100; id <= 700; id += 100) /* chats 100..700, no messages: activity is the id */
        add_chat(f, id, "c", a, 1);
    insert_range(f, 300, 1, 1000, 1); /* chat 300's activity: 1000 */
    const uint64_t want[] = {300, 700, 600, 500, 400, 200, 100};
    uint64_t before = NATTER_CURSOR_NONE, next;
    size_t seen = 0, pages = 0;
    do {
        natter_vec_t v;
        natter_vec_init(&v, sizeof(natter_chat_summary_t));
        assert_int_equal(OPS(f)->user_chats(f->s, 1, before, 3, &v, &next), NATTER_OK);
        assert_true(v.len <= 3);
        for (size_t i = 0; i < v.len; i++)
            assert_int_equal(NATTER_VEC_AT(&v, natter_chat_summary_t, i)->chat.id, want[seen++]);
        if (next != 0)
            assert_int_equal(next, natter_chat_summary_activity(NATTER_VEC_AT(&v, natter_chat_summary_t, v.len - 1)));
        free_summaries(&v);
        before = next;
        pages++;
    } while (next != 0);
    assert_int_equal(seen, 7);
    assert_int_equal(pages, 3);
}

static void test_reopen_keeps_data(void **state)
{
    fixture_t *f = *state;
    add_user(f, 1, "alice");
    const uint64_t a[] = {1};
    add_chat(f, 10, "kept", a, 1);
    insert_range(f, 10, 1, 100, 12);
    uint8_t h[NATTER_TOKEN_HASH_LEN];
    natter_token_hash("tok", 3, h);
    int64_t now = natter_now_ms();
    assert_int_equal(OPS(f)->session_create(f->s, h, 1, now + 60000), NATTER_OK);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 10, 105), NATTER_OK);

    natter_store_close(f->s);
    f->s = open_store(f); /* migrations must not run again on an existing database */

    natter_user_t u;
    assert_int_equal(OPS(f)->user_by_name(f->s, "alice", &u), NATTER_OK);
    assert_int_equal(u.id, 1);
    assert_int_equal(OPS(f)->session_user(f->s, h, now, &u), NATTER_OK);
    natter_chat_t c;
    assert_int_equal(OPS(f)->chat_get(f->s, 10, &c), NATTER_OK);
    assert_string_equal(c.name, "kept");
    const uint64_t want[] = {1};
    expect_member_ids(f, 10, 1, want);
    expect_page(f, 10, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, 100, 111, 0);
    /* the read marker survived too: moving it back is still refused */
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 10, 101), NATTER_ECONFLICT);
    add_user(f, 2, "bob");
    assert_int_equal(OPS(f)->member_add(f->s, 10, 2), NATTER_OK);
    insert_range(f, 10, 2, 200, 3);
    assert_int_equal(unread(f, 1, 10), 3);
    /* still writable, and a taken name still conflicts */
    natter_user_t dup;
    memset(&dup, 0, sizeof(dup));
    dup.id = 9;
    snprintf(dup.username, sizeof(dup.username), "alice");
    assert_int_equal(OPS(f)->user_create(f->s, &dup, 0), NATTER_ECONFLICT);
}

/* The consumer's split write (store.h, version 9) with synchronous=FULL:
 * a batch written unsynced is read at once by the pool's connections,
 * records_sync flushes it (the WAL file is there to flush), and it is
 * there after a reopen. */
static void test_records_write_unsynced_then_sync(void **state)
{
    fixture_t *f = *state;
    natter_store_close(f->s);
    snprintf(f->cfg.sqlite_sync, sizeof(f->cfg.sqlite_sync), "full");
    f->s = open_store(f);
    assert_true(natter_store_has_records_sync(f->s));
    assert_int_equal(natter_store_records_sync(f->s), NATTER_OK); /* nothing written yet */
    natter_msg_t *a = make_msg(21, 8, 1, NULL), *b = make_msg(22, 8, 1, NULL);
    a->next = b;
    assert_int_equal(natter_store_records_write_unsynced(f->s, a, 2, 0, natter_now_ms()), NATTER_OK);
    expect_page(f, 8, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, 21, 22, 0);
    assert_int_equal(natter_store_records_sync(f->s), NATTER_OK);
    char wal[sizeof(f->cfg.data_dir) + 16];
    snprintf(wal, sizeof(wal), "%s/natter.db-wal", f->cfg.data_dir);
    assert_int_equal(access(wal, F_OK), 0);
    b->next = make_msg(23, 8, 1, NULL);
    assert_int_equal(natter_store_records_write_unsynced(f->s, b->next, 1, 0, natter_now_ms()), NATTER_OK);
    assert_int_equal(natter_store_records_sync(f->s), NATTER_OK);
    natter_store_close(f->s);
    f->s = open_store(f);
    expect_page(f, 8, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, 21, 23, 0);
    natter_msg_free_list(a);
}

typedef struct {
    fixture_t *f;
    uint64_t first;
    int rc;
} writer_t;

static void *writer(void *p)
{
    writer_t *w = p;
    for (int b = 0; b < 10 && w->rc == NATTER_OK; b++) {
        natter_msg_t *head = NULL, **tail = &head;
        for (int i = 0; i < 5; i++) {
            *tail = make_msg(w->first + (uint64_t)(b * 5 + i), 1, 1, NULL);
            tail = &(*tail)->next;
        }
        w->rc = OPS(w->f)->messages_insert(w->f->s, head, 5);
        natter_vec_t v;
        natter_vec_init(&v, sizeof(natter_msg_t *));
        int more;
        if (w->rc == NATTER_OK) /* readers run alongside the writers */
            w->rc = OPS(w->f)->messages_page(w->f->s, 1, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 5, &v, &more);
        free_page(&v);
        while (head != NULL) {
            natter_msg_t *next = head->next;
            free(head);
            head = next;
        }
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    fixture_t *f = *state;
    pthread_t th[4];
    writer_t w[4];
    for (int t = 0; t < 4; t++) {
        w[t] = (writer_t){f, 10000 + (uint64_t)t * 100, NATTER_OK};
        pthread_create(&th[t], NULL, writer, &w[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].rc, NATTER_OK);
    }
    for (int t = 0; t < 4; t++)
        expect_page(f, 1, 10000 + (uint64_t)t * 100 - 1, 10000 + (uint64_t)t * 100 + 50, 100,
                    10000 + (uint64_t)t * 100, 10000 + (uint64_t)t * 100 + 49, 0);
}

/* Claims one message's key: its outcome, and *holder on a conflict. */
static int claim(fixture_t *f, natter_msg_t *m, int64_t now, natter_msg_t **holder)
{
    int rc = -100;
    *holder = NULL;
    assert_int_equal(OPS(f)->client_ids_claim(f->s, &m, 1, now, &rc, holder), NATTER_OK);
    return rc;
}

static void test_client_id_claims(void **state)
{
    fixture_t *f = *state;
    int64_t now = natter_now_ms();
    natter_msg_t *m1 = make_msg(100, 5, 1, "key-a"), *m2 = make_msg(101, 5, 1, "key-a");
    natter_msg_t *other = make_msg(102, 5, 2, "key-a"), *holder = NULL;
    assert_int_equal(claim(f, m1, now, &holder), NATTER_OK);
    assert_int_equal(claim(f, m1, now, &holder), NATTER_OK); /* its own claim again */
    assert_null(holder);
    assert_int_equal(claim(f, m2, now, &holder), NATTER_ECONFLICT);
    assert_non_null(holder);
    assert_int_equal(holder->id, 100);
    assert_int_equal(holder->created_at_ms, m1->created_at_ms);
    assert_int_equal(holder->chat_id, 5);
    assert_int_equal(holder->sender_id, 1);
    assert_string_equal(holder->content, "message 100 in 5");
    assert_memory_equal(holder->client_id, "key-a", 5);
    free(holder);
    assert_int_equal(claim(f, other, now, &holder), NATTER_OK); /* another sender's key */
    /* past the window the key is free again */
    assert_int_equal(claim(f, m2, now + NATTER_CLIENT_ID_TTL_MS + 1, &holder), NATTER_OK);
    free(m1);
    free(m2);
    free(other);
}

/* A batch: each claim its own outcome, the same key twice in it included. */
static void test_client_id_claims_in_a_batch(void **state)
{
    fixture_t *f = *state;
    int64_t now = natter_now_ms();
    natter_msg_t *first = make_msg(200, 5, 1, "b-0"), *h = NULL;
    assert_int_equal(claim(f, first, now, &h), NATTER_OK);
    natter_msg_t *msgs[4] = {make_msg(201, 5, 1, "b-0"), make_msg(202, 5, 1, "b-1"), make_msg(203, 5, 1, "b-2"),
                             make_msg(204, 5, 1, "b-1")};
    natter_msg_t *holders[4] = {0};
    int rc[4];
    assert_int_equal(OPS(f)->client_ids_claim(f->s, msgs, 4, now, rc, holders), NATTER_OK);
    assert_int_equal(rc[0], NATTER_ECONFLICT);
    assert_int_equal(holders[0]->id, 200);
    assert_int_equal(rc[1], NATTER_OK);
    assert_int_equal(rc[2], NATTER_OK);
    assert_int_equal(rc[3], NATTER_ECONFLICT); /* 202 claimed it earlier in the batch */
    assert_int_equal(holders[3]->id, 202);
    assert_null(holders[1]);
    for (int i = 0; i < 4; i++) {
        free(msgs[i]);
        free(holders[i]);
    }
    free(first);
}

static void test_records_write_claimed(void **state)
{
    fixture_t *f = *state;
    int64_t now = natter_now_ms();
    for (int round = 0; round < 2; round++) { /* the second round is a redelivery of the same batch */
        natter_msg_t *a = make_msg(11, 5, 1, "x"), *b = make_msg(12, 5, 1, "x"), *c = make_msg(13, 5, 1, NULL);
        a->next = b;
        b->next = c;
        assert_int_equal(OPS(f)->records_write(f->s, a, 3, 1, now), NATTER_OK);
        assert_int_equal(a->duplicate, 0);
        assert_int_equal(a->id, 11);
        assert_int_equal(b->duplicate, 1); /* it repeats a: it is a */
        assert_int_equal(b->id, 11);
        assert_int_equal(b->created_at_ms, a->created_at_ms);
        assert_int_equal(c->duplicate, 0);
        natter_vec_t v;
        natter_vec_init(&v, sizeof(natter_msg_t *));
        int more;
        assert_int_equal(OPS(f)->messages_page(f->s, 5, 0, NATTER_CURSOR_NONE, 50, &v, &more), NATTER_OK);
        assert_int_equal(v.len, 2); /* a and c; b was a */
        assert_int_equal((*NATTER_VEC_AT(&v, natter_msg_t *, 0))->id, 11);
        assert_int_equal((*NATTER_VEC_AT(&v, natter_msg_t *, 1))->id, 13);
        free_page(&v);
        free(a), free(b), free(c);
    }
}

/* Claims amid a long batch: the messages without a client_id around them
 * go many rows to a statement, and each claim still sees what came before. */
static void test_records_write_claimed_long_batch(void **state)
{
    fixture_t *f = *state;
    natter_msg_t *head = NULL, **tail = &head, *a = NULL, *b = NULL;
    uint64_t id = 100;
    for (int part = 0; part < 3; part++) {
        for (int i = 0; i < (part == 2 ? 5 : 40); i++, tail = &(*tail)->next)
            *tail = make_msg(id++, 5, 1, NULL);
        if (part < 2) {
            *tail = make_msg(id++, 5, 1, "x");
            *(part == 0 ? &a : &b) = *tail;
            tail = &(*tail)->next;
        }
    }
    assert_int_equal(OPS(f)->records_write(f->s, head, id - 100, 1, natter_now_ms()), NATTER_OK);
    assert_int_equal(a->duplicate, 0);
    assert_int_equal(b->duplicate, 1);
    assert_int_equal(b->id, a->id);
    /* ids 100 .. 186 but b's own (181): page by page, around the gap */
    expect_page(f, 5, NATTER_CURSOR_NONE, 181, 200, 100, 180, 0);
    expect_page(f, 5, 181, NATTER_CURSOR_NONE, 200, 182, 186, 0);
    natter_msg_free_list(head);
}

static void test_claimed_message_lost_is_healed(void **state)
{
    fixture_t *f = *state;
    int64_t now = natter_now_ms();
    natter_msg_t *claimed = make_msg(20, 6, 1, "y"), *holder = NULL;
    assert_int_equal(claim(f, claimed, now, &holder), NATTER_OK); /* claimed, never stored */
    natter_msg_t *repeat = make_msg(21, 6, 1, "y");
    assert_int_equal(OPS(f)->records_write(f->s, repeat, 1, 1, now), NATTER_OK);
    assert_int_equal(repeat->duplicate, 1);
    assert_int_equal(repeat->id, 20);
    expect_page(f, 6, 0, NATTER_CURSOR_NONE, 50, 20, 20, 0); /* the claimed message, from its claim */
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->messages_page(f->s, 6, 0, NATTER_CURSOR_NONE, 50, &v, &more), NATTER_OK);
    assert_string_equal((*NATTER_VEC_AT(&v, natter_msg_t *, 0))->content, "message 20 in 6");
    free_page(&v);
    free(claimed);
    free(repeat);
}

typedef struct {
    fixture_t *f;
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    int rc;
    natter_ticket_t got;
} taker_t;

static void *taker(void *arg)
{
    taker_t *t = arg;
    t->rc = OPS(t->f)->ticket_take(t->f->s, t->hash, natter_now_ms(), &t->got);
    return NULL;
}

static void test_tickets(void **state)
{
    fixture_t *f = *state;
    uint8_t h1[NATTER_TOKEN_HASH_LEN] = {1}, h2[NATTER_TOKEN_HASH_LEN] = {2}, h3[NATTER_TOKEN_HASH_LEN] = {3};
    int64_t now = natter_now_ms();
    natter_ticket_t t7 = {.user_id = 7, .session_expires_at_ms = now + 86400000}, got;
    memset(t7.session_hash, 0x5a, sizeof(t7.session_hash));
    assert_int_equal(OPS(f)->ticket_create(f->s, h1, &t7, now + 30000), NATTER_OK);
    assert_int_equal(OPS(f)->ticket_create(f->s, h2, &(natter_ticket_t){.user_id = 8}, now - 1), NATTER_OK); /* dead already */
    assert_int_equal(OPS(f)->ticket_take(f->s, h1, now, &got), NATTER_OK);
    assert_int_equal(got.user_id, 7);
    assert_memory_equal(got.session_hash, t7.session_hash, NATTER_TOKEN_HASH_LEN); /* the session comes back */
    assert_int_equal(got.session_expires_at_ms, t7.session_expires_at_ms);
    assert_int_equal(OPS(f)->ticket_take(f->s, h1, now, &got), NATTER_ENOTFOUND); /* once */
    assert_int_equal(OPS(f)->ticket_take(f->s, h2, now, &got), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->ticket_take(f->s, h3, now, &got), NATTER_ENOTFOUND);
    /* four takers at once: one wins */
    assert_int_equal(OPS(f)->ticket_create(f->s, h3, &(natter_ticket_t){.user_id = 9}, now + 30000), NATTER_OK);
    taker_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (taker_t){.f = f};
        memcpy(t[i].hash, h3, sizeof(h3));
        pthread_create(&th[i], NULL, taker, &t[i]);
    }
    int won = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(t[i].rc == NATTER_OK || t[i].rc == NATTER_ENOTFOUND);
        if (t[i].rc == NATTER_OK) {
            won++;
            assert_int_equal(t[i].got.user_id, 9);
        }
    }
    assert_int_equal(won, 1);
}

/* The shared page reversal both backends use: an empty vector (no items to
 * point into), a lone row, and odd and even pages behind rows kept in place. */
static void test_page_reverse(void **state)
{
    (void)state;
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    natter_store_page_reverse(&v, 0);
    assert_int_equal(v.len, 0);
    natter_msg_t rows[7];
    for (size_t i = 0; i < 7; i++) {
        rows[i].id = i;
        *(natter_msg_t **)natter_vec_push(&v) = &rows[i];
    }
    natter_msg_t **m = (natter_msg_t **)v.items;
    natter_store_page_reverse(&v, 6); /* one row from 6 on: unchanged */
    natter_store_page_reverse(&v, 7); /* none */
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(m[i]->id, i);
    natter_store_page_reverse(&v, 2); /* five rows: 0 1 | 6 5 4 3 2 */
    static const uint64_t odd[] = {0, 1, 6, 5, 4, 3, 2};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(m[i]->id, odd[i]);
    natter_store_page_reverse(&v, 3); /* four rows: 0 1 6 | 2 3 4 5 */
    static const uint64_t even[] = {0, 1, 6, 2, 3, 4, 5};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(m[i]->id, even[i]);
    natter_vec_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_reverse),
        cmocka_unit_test_setup_teardown(test_find_and_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chats_and_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_insert_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_markers_and_unread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_chats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_chats_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_id_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_id_claims_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_write_claimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_write_claimed_long_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_write_unsynced_then_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claimed_message_lost_is_healed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tickets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
