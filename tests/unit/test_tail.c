/* Unit tests for src/consumer/tail.c: what the fan-out keeps of the log's
 * unstored tail, and how a history page merges it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "consumer/tail.h"
#include "core/metrics.h"
#include "store/store.h"

static int64_t stored_upto[4]; /* per partition; -1: unknown */

static int64_t stored(void *arg, int32_t partition)
{
    (void)arg;
    return partition >= 0 && partition < 4 ? stored_upto[partition] : -1;
}

static natter_msg_t *msg(uint64_t chat, uint64_t id, int32_t partition, int64_t offset, const char *content)
{
    const uint64_t to[2] = {7, 8}; /* the recipients ride along in the copies the tail keeps */
    natter_msg_t *m = natter_msg_new_to(chat, 7, content, strlen(content), "", 0, to, 2);
    m->id = id;
    m->partition = partition;
    m->offset = offset;
    return m;
}

/* head -> a -> b ... from a NULL-terminated array */
static natter_msg_t *chain(natter_msg_t **ms)
{
    natter_msg_t *head = NULL, **t = &head;
    for (; *ms != NULL; ms++) {
        *t = *ms;
        t = &(*ms)->next;
    }
    *t = NULL;
    return head;
}

static void free_items(natter_vec_t *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(*NATTER_VEC_AT(v, natter_msg_t *, i));
    natter_vec_free(v);
}

static uint64_t id_at(natter_vec_t *v, size_t i)
{
    return (*NATTER_VEC_AT(v, natter_msg_t *, i))->id;
}

static int setup(void **state)
{
    natter_tail_t *t = malloc(sizeof(*t));
    for (int p = 0; p < 4; p++)
        stored_upto[p] = -1;
    natter_tail_init(t, 1000, stored, NULL);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    natter_tail_free(*state);
    free(*state);
    assert_int_equal(atomic_load(&natter_metrics.shared.unstored_tail), 0); /* freeing counts down too */
    return 0;
}

static void test_collect_keeps_a_chats_messages_in_bounds(void **state)
{
    natter_tail_t *t = *state;
    natter_msg_t *edit = msg(10, 25, 0, 5, "new");
    edit->kind = NATTER_EV_EDIT;
    edit->target_id = 20;
    natter_msg_t *ms[] = {msg(10, 30, 0, 3, "c"), msg(10, 20, 0, 1, "a"), msg(11, 21, 1, 1, "other chat"),
                          msg(10, 22, 0, 2, "b"), edit, NULL};
    natter_tail_add(t, chain(ms));
    assert_int_equal(natter_tail_size(t), 5); /* the edit is kept beside the messages */
    assert_int_equal(atomic_load(&natter_metrics.shared.unstored_tail), 4); /* the gauge counts messages */

    natter_vec_t out;
    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 10, NATTER_TAIL_MESSAGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 3);
    assert_int_equal(id_at(&out, 0), 20); /* in id order, whatever the arrival */
    assert_int_equal(id_at(&out, 1), 22);
    assert_int_equal(id_at(&out, 2), 30);
    assert_string_equal((*NATTER_VEC_AT(&out, natter_msg_t *, 0))->content, "a");
    const natter_msg_t *copy = *NATTER_VEC_AT(&out, natter_msg_t *, 2);
    assert_int_equal(copy->nrecipients, 2);
    assert_int_equal(natter_msg_recipients(copy)[1], 8);
    free_items(&out);

    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 10, NATTER_TAIL_MESSAGES, 20, 30, &out); /* both bounds exclusive */
    assert_int_equal(out.len, 1);
    assert_int_equal(id_at(&out, 0), 22);
    free_items(&out);

    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 12, NATTER_TAIL_MESSAGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 0);

    /* the events feed's: the changes only, in the same bounds */
    natter_tail_collect(t, 10, NATTER_TAIL_CHANGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 1);
    assert_int_equal(id_at(&out, 0), 25);
    assert_int_equal((*NATTER_VEC_AT(&out, natter_msg_t *, 0))->target_id, 20);
    assert_string_equal((*NATTER_VEC_AT(&out, natter_msg_t *, 0))->content, "new");
    free_items(&out);
    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 10, NATTER_TAIL_CHANGES, 25, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 0);
    assert_false(natter_tail_has(t, 10, 25)); /* a change is not a message a read marker may name */
    natter_vec_free(&out);
}

static void test_a_message_logged_twice_is_collected_once(void **state)
{
    natter_tail_t *t = *state;
    natter_msg_t *ms[] = {msg(10, 20, 0, 1, "a"), msg(10, 21, 0, 2, "b"), msg(10, 20, 0, 3, "a"),
                          msg(10, 20, 0, 4, "a"), NULL};
    natter_tail_add(t, chain(ms));
    natter_vec_t out;
    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 10, NATTER_TAIL_MESSAGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 2);
    assert_int_equal(id_at(&out, 0), 20);
    assert_int_equal(id_at(&out, 1), 21);
    free_items(&out);
}

static void test_stored_messages_leave(void **state)
{
    natter_tail_t *t = *state;
    natter_msg_t *ms[] = {msg(10, 1, 0, 100, "a"), msg(10, 2, 0, 101, "b"), msg(10, 3, 1, 7, "c"), NULL};
    natter_tail_add(t, chain(ms));
    assert_int_equal(natter_tail_size(t), 3);

    assert_true(natter_tail_has(t, 10, 1));
    assert_false(natter_tail_has(t, 11, 1)); /* another chat's */
    assert_false(natter_tail_has(t, 10, 4));

    stored_upto[0] = 101; /* offset 100 is stored, 101 not yet */
    assert_false(natter_tail_has(t, 10, 1)); /* stored: the store answers for it now */
    assert_true(natter_tail_has(t, 10, 2));
    natter_vec_t out;
    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(t, 10, NATTER_TAIL_MESSAGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 2); /* not collected once stored, even before it is dropped */
    assert_int_equal(id_at(&out, 0), 2);
    assert_int_equal(id_at(&out, 1), 3);
    free_items(&out);

    natter_msg_t *late[] = {msg(10, 4, 0, 99, "stored already"), msg(10, 5, 0, 102, "d"), NULL};
    natter_tail_add(t, chain(late)); /* adding trims the shard's stored head */
    assert_int_equal(natter_tail_size(t), 3); /* 2, 3 and 5 */

    stored_upto[0] = 103;
    stored_upto[1] = 8;
    natter_msg_t *more[] = {msg(10, 6, 1, 8, "e"), NULL};
    natter_tail_add(t, chain(more));
    assert_int_equal(natter_tail_size(t), 1);
    assert_int_equal(atomic_load(&natter_metrics.shared.unstored_tail), 1); /* the gauge counts the same */

    stored_upto[1] = 9; /* stored while nothing new comes: pruning while idle drops it */
    natter_tail_prune(t);
    assert_int_equal(natter_tail_size(t), 0);
    assert_int_equal(atomic_load(&natter_metrics.shared.unstored_tail), 0);
}

static void test_capacity_drops_the_oldest(void **state)
{
    (void)state;
    natter_tail_t t;
    for (int p = 0; p < 4; p++)
        stored_upto[p] = -1;
    natter_tail_init(&t, NATTER_TAIL_SHARDS * 2, stored, NULL); /* two per shard */
    for (uint64_t id = 1; id <= 5; id++) {
        natter_msg_t *one[] = {msg(10, id, 0, (int64_t)id, "x"), NULL};
        natter_tail_add(&t, chain(one));
    }
    natter_vec_t out;
    natter_vec_init(&out, sizeof(natter_msg_t *));
    natter_tail_collect(&t, 10, NATTER_TAIL_MESSAGES, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, &out);
    assert_int_equal(out.len, 2);
    assert_int_equal(id_at(&out, 0), 4);
    assert_int_equal(id_at(&out, 1), 5);
    free_items(&out);
    natter_tail_free(&t);
}

/* page and extra from ids; 0 ends each list */
static void lists(natter_vec_t *page, const uint64_t *page_ids, natter_vec_t *extra, const uint64_t *extra_ids)
{
    natter_vec_init(page, sizeof(natter_msg_t *));
    natter_vec_init(extra, sizeof(natter_msg_t *));
    for (; *page_ids != 0; page_ids++)
        *(natter_msg_t **)natter_vec_push(page) = msg(10, *page_ids, 0, 0, "store");
    for (; *extra_ids != 0; extra_ids++)
        *(natter_msg_t **)natter_vec_push(extra) = msg(10, *extra_ids, 0, 0, "tail");
}

static void test_merge_after_keeps_the_oldest(void **state)
{
    (void)state;
    natter_vec_t page, extra;
    int has_more = 0;
    lists(&page, (const uint64_t[]){11, 13, 0}, &extra, (const uint64_t[]){12, 13, 14, 15, 0});
    natter_tail_merge(&extra, 10, 4, &page, &has_more);
    assert_int_equal(extra.len, 0);
    assert_int_equal(page.len, 4);
    assert_int_equal(id_at(&page, 0), 11);
    assert_int_equal(id_at(&page, 1), 12);
    assert_int_equal(id_at(&page, 2), 13);
    assert_int_equal(id_at(&page, 3), 14);
    assert_string_equal((*NATTER_VEC_AT(&page, natter_msg_t *, 2))->content, "store"); /* the store's copy wins */
    assert_string_equal((*NATTER_VEC_AT(&page, natter_msg_t *, 1))->content, "tail");
    assert_true(has_more); /* 15 is beyond the page */
    free_items(&page);
    natter_vec_free(&extra);
}

static void test_merge_latest_keeps_the_newest(void **state)
{
    (void)state;
    natter_vec_t page, extra;
    int has_more = 0;
    lists(&page, (const uint64_t[]){11, 12, 0}, &extra, (const uint64_t[]){13, 14, 0});
    natter_tail_merge(&extra, NATTER_CURSOR_NONE, 3, &page, &has_more);
    assert_int_equal(page.len, 3);
    assert_int_equal(id_at(&page, 0), 12);
    assert_int_equal(id_at(&page, 2), 14);
    assert_true(has_more); /* 11 is before the page */
    free_items(&page);
    natter_vec_free(&extra);

    lists(&page, (const uint64_t[]){11, 0}, &extra, (const uint64_t[]){12, 0});
    has_more = 0;
    natter_tail_merge(&extra, NATTER_CURSOR_NONE, 50, &page, &has_more);
    assert_int_equal(page.len, 2);
    assert_false(has_more);
    free_items(&page);
    natter_vec_free(&extra);

    lists(&page, (const uint64_t[]){11, 0}, &extra, (const uint64_t[]){0});
    has_more = 1; /* the store's word stands when nothing is merged */
    natter_tail_merge(&extra, NATTER_CURSOR_NONE, 1, &page, &has_more);
    assert_int_equal(page.len, 1);
    assert_true(has_more);
    free_items(&page);
    natter_vec_free(&extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_collect_keeps_a_chats_messages_in_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_message_logged_twice_is_collected_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_messages_leave, setup, teardown),
        cmocka_unit_test(test_capacity_drops_the_oldest),
        cmocka_unit_test(test_merge_after_keeps_the_oldest),
        cmocka_unit_test(test_merge_latest_keeps_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
