/* Unit tests for the chat's events in src/store/store_sqlite.c (store
 * version 2): edits, deletes and reactions applied from log records exactly
 * once, in log order, whatever is redelivered; the events feed; read
 * markers; a version 1 database migrated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

#define THUMB "\xf0\x9f\x91\x8d"
#define HEART "\xe2\x9d\xa4\xef\xb8\x8f"

typedef struct {
    char dir[64];
    natter_config_t cfg;
    natter_store_t *s;
} fixture_t;

#define OPS(f) ((f)->s->ops)

static natter_store_t *open_store(fixture_t *f)
{
    char err[256] = "";
    natter_store_t *s = natter_store_open(&natter_store_sqlite, &f->cfg, err, sizeof(err));
    if (s == NULL)
        fail_msg("store open: %s", err);
    return s;
}

static int setup_dir(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/natter-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s/data", f->dir);
    snprintf(f->cfg.sqlite_sync, sizeof(f->cfg.sqlite_sync), "normal");
    *state = f;
    return 0;
}

/* Alice (1) and Bob (2) in chat 10; Carol (3) in no chat. */
static int setup(void **state)
{
    if (setup_dir(state) != 0)
        return -1;
    fixture_t *f = *state;
    f->s = open_store(f);
    for (uint64_t id = 1; id <= 3; id++) {
        natter_user_t u;
        memset(&u, 0, sizeof(u));
        u.id = id;
        snprintf(u.username, sizeof(u.username), "user%llu", (unsigned long long)id);
        snprintf(u.pwhash, sizeof(u.pwhash), "x");
        assert_int_equal(OPS(f)->user_create(f->s, &u, 0), NATTER_OK);
    }
    natter_chat_t c;
    memset(&c, 0, sizeof(c));
    c.id = 10;
    c.created_by = 1;
    snprintf(c.name, sizeof(c.name), "room");
    const uint64_t members[] = {1, 2};
    assert_int_equal(OPS(f)->chat_create(f->s, &c, members, 2), NATTER_OK);
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

/* A batch of log records, built in order. */
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
    natter_msg_t *m = natter_msg_new(10, sender, content, strlen(content), kind == NATTER_EV_MESSAGE ? "cid" : "",
                                     kind == NATTER_EV_MESSAGE ? 3 : 0);
    m->kind = (uint8_t)kind;
    m->id = id;
    m->target_id = target;
    m->created_at_ms = 1700000000000LL + (int64_t)id;
    *b->tail = m;
    b->tail = &m->next;
    b->n++;
    return m;
}

static void batch_write(fixture_t *f, batch_t *b)
{
    assert_int_equal(OPS(f)->records_write(f->s, b->head, b->n, 0, 0), NATTER_OK);
}

static void batch_free(batch_t *b)
{
    natter_msg_free_list(b->head);
    batch_init(b);
}

static natter_msg_t *get(fixture_t *f, uint64_t id)
{
    natter_msg_t *m = NULL;
    assert_int_equal(OPS(f)->message_get(f->s, 10, id, &m), NATTER_OK);
    return m;
}

/* The reactions to message id, as "emoji:user,emoji:user". */
static void expect_reactions(fixture_t *f, uint64_t id, const char *want)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_reaction_row_t));
    assert_int_equal(OPS(f)->reactions_range(f->s, 10, id, id, &v), NATTER_OK);
    char got[256] = "";
    for (size_t i = 0; i < v.len; i++) {
        natter_reaction_row_t *r = NATTER_VEC_AT(&v, natter_reaction_row_t, i);
        assert_int_equal(r->message_id, id);
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%llu", i ? "," : "", r->emoji,
                 (unsigned long long)r->user_id);
    }
    natter_vec_free(&v);
    assert_string_equal(got, want);
}

static size_t event_count(fixture_t *f)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->events_page(f->s, 10, 0, NATTER_CURSOR_NONE, 200, &v, &more), NATTER_OK);
    size_t n = v.len;
    for (size_t i = 0; i < v.len; i++)
        free(*NATTER_VEC_AT(&v, natter_msg_t *, i));
    natter_vec_free(&v);
    return n;
}

/* Messages and their events in one batch, in log order. */
static void test_apply_in_log_order(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "hello");
    push(&b, NATTER_EV_MESSAGE, 101, 2, 0, "hi");
    push(&b, NATTER_EV_EDIT, 102, 1, 100, "hello, Bob");
    push(&b, NATTER_EV_REACT_ADD, 103, 2, 100, THUMB);
    push(&b, NATTER_EV_REACT_ADD, 104, 1, 100, THUMB);
    push(&b, NATTER_EV_REACT_ADD, 105, 1, 100, HEART);
    push(&b, NATTER_EV_REACT_ADD, 106, 1, 101, THUMB);
    push(&b, NATTER_EV_TYPING, 107, 1, 0, ""); /* ephemeral: never stored */
    batch_write(f, &b);
    batch_free(&b);

    natter_msg_t *m = get(f, 100);
    assert_string_equal(m->content, "hello, Bob");
    assert_int_equal(m->edited_at_ms, 1700000000102LL);
    assert_false(m->deleted);
    assert_int_equal(m->client_id_len, 3);
    free(m);
    m = get(f, 101);
    assert_int_equal(m->edited_at_ms, 0);
    free(m);
    /* by emoji bytes, then user */
    expect_reactions(f, 100, HEART ":1," THUMB ":1," THUMB ":2");
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_reaction_row_t));
    assert_int_equal(OPS(f)->reactions_range(f->s, 10, 100, 101, &v), NATTER_OK);
    assert_int_equal(v.len, 4);
    assert_int_equal(NATTER_VEC_AT(&v, natter_reaction_row_t, 3)->message_id, 101);
    natter_vec_free(&v);
    natter_vec_init(&v, sizeof(natter_reaction_row_t));
    assert_int_equal(OPS(f)->reactions_range(f->s, 11, 100, 101, &v), NATTER_OK); /* another chat's range */
    assert_int_equal(v.len, 0);
    natter_vec_free(&v);

    /* the delete: content, client_id and reactions gone; the slot stays */
    push(&b, NATTER_EV_DELETE, 110, 1, 100, "");
    push(&b, NATTER_EV_REACT_ADD, 111, 2, 100, HEART); /* to a deleted message: nothing */
    push(&b, NATTER_EV_EDIT, 112, 1, 100, "back from the dead"); /* nothing either */
    push(&b, NATTER_EV_REACT_REMOVE, 113, 1, 101, THUMB);
    batch_write(f, &b);
    batch_free(&b);
    m = get(f, 100);
    assert_true(m->deleted);
    assert_int_equal(m->content_len, 0);
    assert_int_equal(m->client_id_len, 0);
    assert_int_equal(m->edited_at_ms, 0);
    assert_int_equal(m->sender_id, 1);
    assert_int_equal(m->created_at_ms, 1700000000100LL);
    free(m);
    expect_reactions(f, 100, "");
    expect_reactions(f, 101, "");

    /* history keeps the slot in its place */
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->messages_page(f->s, 10, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 50, &v, &more),
                     NATTER_OK);
    assert_int_equal(v.len, 2);
    assert_true((*NATTER_VEC_AT(&v, natter_msg_t *, 0))->deleted);
    assert_false((*NATTER_VEC_AT(&v, natter_msg_t *, 1))->deleted);
    for (size_t i = 0; i < v.len; i++)
        free(*NATTER_VEC_AT(&v, natter_msg_t *, i));
    natter_vec_free(&v);
    assert_int_equal(OPS(f)->message_get(f->s, 11, 101, &m), NATTER_ENOTFOUND);
    assert_int_equal(OPS(f)->message_get(f->s, 10, 999, &m), NATTER_ENOTFOUND);
}

/* Nothing in the database mentions a deleted message's words any more. */
static void test_delete_leaves_no_content(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "secret-one");
    push(&b, NATTER_EV_EDIT, 101, 1, 100, "secret-two");
    push(&b, NATTER_EV_DELETE, 102, 1, 100, "");
    batch_write(f, &b);
    batch_free(&b);
    natter_store_close(f->s);
    f->s = NULL;
    char path[600];
    snprintf(path, sizeof(path), "%s/natter.db", f->cfg.data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    const char *q = "SELECT count(*) FROM messages WHERE content LIKE '%secret%'"
                    " UNION ALL SELECT count(*) FROM events WHERE emoji LIKE '%secret%'";
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    f->s = open_store(f);
}

/* 1 when the file at path holds needle's bytes anywhere. */
static int file_holds(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return 0;
    size_t cap = 1 << 16, len = 0, n;
    char *buf = xmalloc(cap);
    while ((n = fread(buf + len, 1, cap - len, fp)) > 0)
        if ((len += n) == cap)
            buf = xrealloc(buf, cap *= 2);
    fclose(fp);
    int found = memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

/* A deleted message's words, stored and edited in commits of their own,
 * are in neither file's bytes once the log is checkpointed: the freed
 * space of its page is overwritten (secure_delete), not left behind. */
static void test_delete_overwrites_the_words_on_disk(void **state)
{
    fixture_t *f = *state;
    static const char *const texts[] = {"hidden-words-one", "hidden-words-two", ""};
    static const unsigned kinds[] = {NATTER_EV_MESSAGE, NATTER_EV_EDIT, NATTER_EV_DELETE};
    for (int i = 0; i < 3; i++) {
        batch_t b;
        batch_init(&b);
        push(&b, kinds[i], 100 + (uint64_t)i, 1, i == 0 ? 0 : 100, texts[i]);
        push(&b, NATTER_EV_MESSAGE, 200 + (uint64_t)i, 2, 0, "neighbour on the page");
        batch_write(f, &b);
        batch_free(&b);
    }
    natter_store_close(f->s);
    f->s = NULL;
    char path[600], wal[610];
    snprintf(path, sizeof(path), "%s/natter.db", f->cfg.data_dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_false(file_holds(path, "hidden-words"));
    assert_false(file_holds(wal, "hidden-words"));
    assert_true(file_holds(path, "neighbour on the page")); /* the scan reads what is there */
    f->s = open_store(f);
}

/* The consumer's redelivery: the same records again change nothing twice. */
static void test_redelivery_changes_nothing(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "first words");
    push(&b, NATTER_EV_MESSAGE, 101, 2, 0, "reply");
    push(&b, NATTER_EV_EDIT, 102, 1, 100, "second words");
    push(&b, NATTER_EV_REACT_ADD, 103, 2, 100, THUMB);
    push(&b, NATTER_EV_REACT_REMOVE, 104, 2, 100, THUMB);
    push(&b, NATTER_EV_REACT_ADD, 105, 1, 101, HEART);
    push(&b, NATTER_EV_DELETE, 106, 2, 101, "");
    push(&b, NATTER_EV_REACT_ADD, 107, 1, 100, HEART);
    batch_write(f, &b);
    size_t events = event_count(f);
    assert_int_equal(events, 6);
    for (int again = 0; again < 2; again++) /* a whole batch delivered twice more */
        batch_write(f, &b);
    batch_free(&b);

    /* and a redelivered suffix: an add whose remove came later stays removed */
    push(&b, NATTER_EV_REACT_ADD, 103, 2, 100, THUMB);
    push(&b, NATTER_EV_EDIT, 102, 1, 100, "second words");
    push(&b, NATTER_EV_MESSAGE, 101, 2, 0, "reply"); /* a deleted message's insert again: stays deleted */
    batch_write(f, &b);
    batch_free(&b);

    natter_msg_t *m = get(f, 100);
    assert_string_equal(m->content, "second words");
    assert_int_equal(m->edited_at_ms, 1700000000102LL);
    free(m);
    m = get(f, 101);
    assert_true(m->deleted);
    assert_int_equal(m->content_len, 0);
    free(m);
    expect_reactions(f, 100, HEART ":1");
    expect_reactions(f, 101, "");
    assert_int_equal(event_count(f), events);
}

/* Pushes messages first .. first+n-1 (content "m<id>") to b. */
static void push_messages(batch_t *b, uint64_t first, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char text[16];
        snprintf(text, sizeof(text), "m%llu", (unsigned long long)(first + i));
        push(b, NATTER_EV_MESSAGE, first + i, 1 + i % 2, 0, text);
    }
}

/* A long batch whose messages the store inserts many rows to a statement:
 * every message is stored once with its own fields, a repeated id keeps
 * its first, and an event sees each message ahead of it in the batch
 * (the rows gathered before it are written first), at every run length. */
static void test_long_batch_in_runs(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push_messages(&b, 100, 45);                           /* 32 + 13 gathered when the edit comes */
    push(&b, NATTER_EV_EDIT, 1000, 1, 144, "m144 edited"); /* the last of them, not yet written */
    push_messages(&b, 200, 40);
    push(&b, NATTER_EV_MESSAGE, 105, 2, 0, "a repeat of 105"); /* an id seen earlier in the batch */
    push(&b, NATTER_EV_REACT_ADD, 1001, 2, 239, THUMB);
    push_messages(&b, 300, 9); /* 8 + 1, written at the batch's end */
    for (int again = 0; again < 2; again++)
        batch_write(f, &b);
    batch_free(&b);

    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->messages_page(f->s, 10, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 200, &v, &more),
                     NATTER_OK);
    assert_int_equal(v.len, 45 + 40 + 9);
    for (size_t i = 0; i < v.len; i++) {
        natter_msg_t *m = *NATTER_VEC_AT(&v, natter_msg_t *, i);
        uint64_t want = i < 45 ? 100 + i : i < 85 ? 200 + (i - 45) : 300 + (i - 85);
        char text[32];
        snprintf(text, sizeof(text), want == 144 ? "m%llu edited" : "m%llu", (unsigned long long)want);
        assert_int_equal(m->id, want);
        assert_string_equal(m->content, text);
        assert_int_equal(m->sender_id, 1 + (want % 100) % 2);
        assert_int_equal(m->created_at_ms, 1700000000000LL + (int64_t)want);
        assert_int_equal(m->client_id_len, 3);
        assert_memory_equal(m->client_id, "cid", 3);
        free(m);
    }
    natter_vec_free(&v);
    expect_reactions(f, 239, THUMB ":2");
    assert_int_equal(event_count(f), 2);
}

/* What an edit or delete may touch: its sender's message of its chat, and
 * never back to an older edit. */
static void test_edit_rules(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "alice's");
    push(&b, NATTER_EV_EDIT, 101, 2, 100, "bob was here"); /* not Bob's message */
    push(&b, NATTER_EV_DELETE, 102, 2, 100, "");          /* nor his to delete */
    push(&b, NATTER_EV_EDIT, 105, 1, 100, "newer");
    batch_write(f, &b);
    batch_free(&b);
    natter_msg_t *older = push(&b, NATTER_EV_EDIT, 103, 1, 100, "older"); /* an older edit after a newer one */
    natter_msg_t *other = push(&b, NATTER_EV_EDIT, 104, 1, 100, "another chat's");
    other->chat_id = 11;
    batch_write(f, &b);
    assert_int_equal(older->unapplied, NATTER_UNAPPLIED_SAME); /* the message is there, newer */
    assert_int_equal(other->unapplied, NATTER_UNAPPLIED_GONE); /* no such message in that chat */
    batch_free(&b);
    natter_msg_t *m = get(f, 100);
    assert_string_equal(m->content, "newer");
    assert_false(m->deleted);
    assert_int_equal(m->edited_at_ms, 1700000000105LL);
    free(m);
}

static void expect_events(fixture_t *f, uint64_t after, uint64_t before, uint32_t limit, const uint64_t *ids, size_t n,
                          int more)
{
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int has_more = -1;
    assert_int_equal(OPS(f)->events_page(f->s, 10, after, before, limit, &v, &has_more), NATTER_OK);
    if (v.len != n || has_more != more)
        fail_msg("events(after %lld, before %lld, limit %u): %zu items, has_more %d; want %zu, %d", (long long)after,
                 (long long)before, limit, v.len, has_more, n, more);
    for (size_t i = 0; i < n; i++) {
        natter_msg_t *e = *NATTER_VEC_AT(&v, natter_msg_t *, i);
        assert_int_equal(e->id, ids[i]);
        assert_int_equal(e->chat_id, 10);
        free(e);
    }
    natter_vec_free(&v);
}

/* Events checked at request time that another overtook in the log, and
 * repeats sent at once: recorded (a redelivery changes nothing), marked
 * as changing nothing, not listed. */
static void test_events_without_effect(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "soon gone");
    push(&b, NATTER_EV_MESSAGE, 105, 1, 0, "stays");
    batch_write(f, &b);
    batch_free(&b);
    natter_msg_t *del = push(&b, NATTER_EV_DELETE, 101, 1, 100, "");
    natter_msg_t *late_edit = push(&b, NATTER_EV_EDIT, 102, 1, 100, "too late");
    natter_msg_t *late_react = push(&b, NATTER_EV_REACT_ADD, 103, 2, 100, THUMB);
    natter_msg_t *del_again = push(&b, NATTER_EV_DELETE, 104, 1, 100, "");
    natter_msg_t *react = push(&b, NATTER_EV_REACT_ADD, 106, 2, 105, THUMB);
    natter_msg_t *react_again = push(&b, NATTER_EV_REACT_ADD, 107, 2, 105, THUMB);
    natter_msg_t *unreact = push(&b, NATTER_EV_REACT_REMOVE, 108, 2, 105, HEART);
    batch_write(f, &b);
    assert_int_equal(del->unapplied, NATTER_APPLIED);
    assert_int_equal(late_edit->unapplied, NATTER_UNAPPLIED_GONE);
    assert_int_equal(late_react->unapplied, NATTER_UNAPPLIED_GONE);
    assert_int_equal(del_again->unapplied, NATTER_UNAPPLIED_SAME);
    assert_int_equal(react->unapplied, NATTER_APPLIED);
    assert_int_equal(react_again->unapplied, NATTER_UNAPPLIED_SAME);
    assert_int_equal(unreact->unapplied, NATTER_UNAPPLIED_SAME);
    const uint64_t listed[] = {101, 106};
    expect_events(f, 0, NATTER_CURSOR_NONE, 50, listed, 2, 0);
    batch_write(f, &b); /* redelivered: nothing applies twice, nothing more is listed */
    expect_events(f, 0, NATTER_CURSOR_NONE, 50, listed, 2, 0);
    expect_reactions(f, 100, "");
    expect_reactions(f, 105, THUMB ":2");
    natter_msg_t *m = get(f, 100);
    assert_true(m->deleted);
    assert_int_equal(m->content_len, 0);
    free(m);
    batch_free(&b);
}

static void test_events_page(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "one");
    push(&b, NATTER_EV_MESSAGE, 101, 1, 0, "two");
    push(&b, NATTER_EV_EDIT, 102, 1, 100, "one, edited");
    push(&b, NATTER_EV_REACT_ADD, 103, 2, 101, THUMB);
    push(&b, NATTER_EV_EDIT, 104, 1, 101, "two, edited");
    push(&b, NATTER_EV_REACT_REMOVE, 105, 2, 101, THUMB);
    push(&b, NATTER_EV_DELETE, 106, 1, 101, "");
    batch_write(f, &b);
    batch_free(&b);

    const uint64_t all[] = {102, 103, 104, 105, 106};
    expect_events(f, 0, NATTER_CURSOR_NONE, 50, all, 5, 0);
    expect_events(f, 0, NATTER_CURSOR_NONE, 2, all, 2, 1);
    expect_events(f, 103, NATTER_CURSOR_NONE, 2, all + 2, 2, 1);
    expect_events(f, 105, NATTER_CURSOR_NONE, 2, all + 4, 1, 0);
    expect_events(f, 106, NATTER_CURSOR_NONE, 2, all, 0, 0);
    expect_events(f, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 2, all + 3, 2, 1); /* the newest page */
    expect_events(f, NATTER_CURSOR_NONE, 104, 50, all, 2, 0);
    expect_events(f, 102, 106, 50, all + 1, 3, 0);

    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    int more;
    assert_int_equal(OPS(f)->events_page(f->s, 10, 0, NATTER_CURSOR_NONE, 50, &v, &more), NATTER_OK);
    natter_msg_t *e0 = *NATTER_VEC_AT(&v, natter_msg_t *, 0), *e1 = *NATTER_VEC_AT(&v, natter_msg_t *, 1),
                 *e2 = *NATTER_VEC_AT(&v, natter_msg_t *, 2), *e4 = *NATTER_VEC_AT(&v, natter_msg_t *, 4);
    /* an edit carries its message as it is now */
    assert_int_equal(e0->kind, NATTER_EV_EDIT);
    assert_int_equal(e0->target_id, 100);
    assert_int_equal(e0->sender_id, 1);
    assert_string_equal(e0->content, "one, edited");
    assert_int_equal(e0->client_id_len, 3);
    assert_int_equal(e0->edited_at_ms, 1700000000102LL);
    assert_int_equal(e0->created_at_ms, 1700000000102LL);
    /* a reaction its emoji */
    assert_int_equal(e1->kind, NATTER_EV_REACT_ADD);
    assert_int_equal(e1->sender_id, 2);
    assert_string_equal(e1->content, THUMB);
    /* the edit of a message deleted since: no words left */
    assert_int_equal(e2->kind, NATTER_EV_EDIT);
    assert_true(e2->deleted);
    assert_int_equal(e2->content_len, 0);
    assert_int_equal(e2->client_id_len, 0);
    assert_int_equal(e4->kind, NATTER_EV_DELETE);
    assert_int_equal(e4->target_id, 101);
    assert_int_equal(e4->content_len, 0);
    for (size_t i = 0; i < v.len; i++)
        free(*NATTER_VEC_AT(&v, natter_msg_t *, i));
    natter_vec_free(&v);
}

static void test_read_markers_and_chat_ids(void **state)
{
    fixture_t *f = *state;
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_MESSAGE, 100, 1, 0, "one");
    push(&b, NATTER_EV_MESSAGE, 101, 1, 0, "two");
    batch_write(f, &b);
    batch_free(&b);
    natter_vec_t v;
    natter_vec_init(&v, sizeof(natter_read_marker_t));
    assert_int_equal(OPS(f)->read_markers(f->s, 10, &v), NATTER_OK);
    assert_int_equal(v.len, 0); /* nobody read anything yet */
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 2, 10, 101), NATTER_OK);
    assert_int_equal(OPS(f)->read_marker_advance(f->s, 1, 10, 100), NATTER_OK);
    assert_int_equal(OPS(f)->read_markers(f->s, 10, &v), NATTER_OK);
    assert_int_equal(v.len, 2);
    for (size_t i = 0; i < v.len; i++) {
        natter_read_marker_t *r = NATTER_VEC_AT(&v, natter_read_marker_t, i);
        assert_int_equal(r->message_id, r->user_id == 1 ? 100 : 101);
    }
    natter_vec_free(&v);
    /* a member who left no longer shows */
    assert_int_equal(OPS(f)->member_remove(f->s, 10, 2), NATTER_OK);
    natter_vec_init(&v, sizeof(natter_read_marker_t));
    assert_int_equal(OPS(f)->read_markers(f->s, 10, &v), NATTER_OK);
    assert_int_equal(v.len, 1);
    assert_int_equal(NATTER_VEC_AT(&v, natter_read_marker_t, 0)->user_id, 1);
    natter_vec_free(&v);

    natter_vec_init(&v, sizeof(uint64_t));
    assert_int_equal(OPS(f)->user_chat_ids(f->s, 1, &v), NATTER_OK);
    assert_int_equal(v.len, 1);
    assert_int_equal(*NATTER_VEC_AT(&v, uint64_t, 0), 10);
    v.len = 0;
    assert_int_equal(OPS(f)->user_chat_ids(f->s, 3, &v), NATTER_OK);
    assert_int_equal(v.len, 0);
    natter_vec_free(&v);
}

/* A database made by a natter that knew only messages (schema version 1)
 * is migrated on open: its messages read as never edited. */
static void test_migrates_version_1(void **state)
{
    fixture_t *f = *state;
    char path[600];
    mkdir(f->cfg.data_dir, 0700);
    snprintf(path, sizeof(path), "%s/natter.db", f->cfg.data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    const char *v1 =
        "CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, pwhash TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE sessions (token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
        "  WITHOUT ROWID;"
        "CREATE INDEX sessions_by_expiry ON sessions (expires_at);"
        "CREATE TABLE chats (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_by INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL);"
        "CREATE TABLE members (chat_id INTEGER NOT NULL, user_id INTEGER NOT NULL, PRIMARY KEY (chat_id, user_id))"
        "  WITHOUT ROWID;"
        "CREATE INDEX members_by_user ON members (user_id, chat_id);"
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL, sender_id INTEGER NOT NULL,"
        "  content TEXT NOT NULL, created_at INTEGER NOT NULL, client_id TEXT);"
        "CREATE INDEX messages_by_chat ON messages (chat_id, id);"
        "CREATE TABLE read_markers (user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL,"
        "  PRIMARY KEY (user_id, chat_id)) WITHOUT ROWID;"
        "INSERT INTO chats VALUES (10, 'old', 1, 0);"
        "INSERT INTO members VALUES (10, 1);"
        "INSERT INTO messages VALUES (100, 10, 1, 'from before', 1700000000100, NULL);"
        "PRAGMA user_version=1;";
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    f->s = open_store(f);
    natter_msg_t *m = get(f, 100);
    assert_string_equal(m->content, "from before");
    assert_int_equal(m->edited_at_ms, 0);
    assert_false(m->deleted);
    free(m);
    batch_t b;
    batch_init(&b);
    push(&b, NATTER_EV_EDIT, 101, 1, 100, "from after");
    batch_write(f, &b);
    batch_free(&b);
    m = get(f, 100);
    assert_string_equal(m->content, "from after");
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_in_log_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_overwrites_the_words_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_leaves_no_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_batch_in_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_without_effect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_markers_and_chat_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_version_1, setup_dir, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
