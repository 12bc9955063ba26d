/* Unit tests for src/ingest/reactions.c: a message's reaction rows grouped
 * into the API's "reactions" array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/reactions.h"

#define THUMB "\xf0\x9f\x91\x8d"
#define HEART "\xe2\x9d\xa4\xef\xb8\x8f"

static natter_reaction_row_t row(const char *emoji, uint64_t user)
{
    natter_reaction_row_t r = {.message_id = 5, .user_id = user};
    snprintf(r.emoji, sizeof(r.emoji), "%s", emoji);
    return r;
}

static void expect_json(json_t *got, const char *want)
{
    char *text = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, want);
    free(text);
    json_decref(got);
}

static void test_grouped_by_emoji(void **state)
{
    (void)state;
    natter_reaction_row_t rows[] = {row(HEART, 3), row(THUMB, 1), row(THUMB, 2), row(THUMB, 9)};
    expect_json(natter_reactions_json(rows, 4, 42),
                "[{\"emoji\":\"" HEART "\",\"count\":1,\"user_ids\":[\"3\"]},"
                "{\"emoji\":\"" THUMB "\",\"count\":3,\"user_ids\":[\"1\",\"2\",\"9\"]}]");
    /* the viewer's own id first */
    expect_json(natter_reactions_json(rows, 4, 9),
                "[{\"emoji\":\"" HEART "\",\"count\":1,\"user_ids\":[\"3\"]},"
                "{\"emoji\":\"" THUMB "\",\"count\":3,\"user_ids\":[\"9\",\"1\",\"2\"]}]");
    expect_json(natter_reactions_json(rows, 0, 9), "[]");
}

/* Ten ids at most, the viewer's among them when they reacted; count says all. */
static void test_ten_ids_at_most(void **state)
{
    (void)state;
    natter_reaction_row_t rows[25];
    for (int i = 0; i < 25; i++)
        rows[i] = row(THUMB, (uint64_t)(i + 1));
    json_t *arr = natter_reactions_json(rows, 25, 25);
    json_t *e = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "count")), 25);
    json_t *ids = json_object_get(e, "user_ids");
    assert_int_equal(json_array_size(ids), NATTER_REACTION_USERS_MAX);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), "25");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "1");
    assert_string_equal(json_string_value(json_array_get(ids, 9)), "9");
    json_decref(arr);
}

static void test_of_user(void **state)
{
    (void)state;
    natter_reaction_row_t rows[] = {row(HEART, 3), row(THUMB, 1), row(THUMB, 3)};
    int has;
    assert_int_equal(natter_reactions_of_user(rows, 3, 3, THUMB, &has), 2);
    assert_true(has);
    assert_int_equal(natter_reactions_of_user(rows, 3, 1, HEART, &has), 1);
    assert_false(has);
    assert_int_equal(natter_reactions_of_user(rows, 3, 7, THUMB, &has), 0);
    assert_false(has);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grouped_by_emoji),
        cmocka_unit_test(test_ten_ids_at_most),
        cmocka_unit_test(test_of_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
