/* Unit tests for core/jsonw.c and the hand-written formatters it uses:
 * natter_msg_write_json must write what jansson writes for the same
 * message, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "core/id.h"
#include "core/jsonw.h"
#include "core/message.h"
#include "core/util.h"

static void same_as_jansson_state(const char *content, size_t len, const char *client_id, int64_t edited_at_ms,
                                  int deleted)
{
    natter_msg_t *m = natter_msg_new(42, 7, content, len, client_id, strlen(client_id));
    m->id = 18446744073709551615ull;
    m->created_at_ms = 1795824000123;
    m->edited_at_ms = edited_at_ms;
    m->deleted = (uint8_t)deleted;
    json_t *o = natter_msg_json(m);
    char *want = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    natter_jsonw_t w = {0};
    natter_msg_write_json(&w, m);
    assert_string_equal(w.p, want);
    assert_int_equal(w.len, strlen(want));
    free(want);
    free(w.p);
    json_decref(o);
    free(m);
}

static void same_as_jansson(const char *content, size_t len, const char *client_id)
{
    same_as_jansson_state(content, len, client_id, 0, 0);
}

static void test_message_matches_jansson(void **state)
{
    (void)state;
    same_as_jansson("hello", 5, "");
    same_as_jansson("quote \" backslash \\ slash / tab \t nl \n cr \r", 44, "c-1");
    same_as_jansson("\x01\x1f\x7f b\bf\f", 9, "");
    same_as_jansson("h\xc3\xa9llo \xe2\x80\xa8 \xf0\x9f\x98\x80", 16, "\"odd\" id");
    char nul[] = {'a', '\0', 'b'};
    same_as_jansson(nul, sizeof(nul), "");
    same_as_jansson_state("edited", 6, "c-2", 1795824000456, 0);
    same_as_jansson_state("edited", 6, "", 1795824000456, 0);
    same_as_jansson_state("", 0, "c-3", 0, 1); /* a deleted slot: no content, no client_id */
}

static void test_buffer_grows(void **state)
{
    (void)state;
    natter_jsonw_t w = {0};
    char big[5000];
    memset(big, '"', sizeof(big));
    natter_jsonw_string(&w, big, sizeof(big));
    assert_int_equal(w.len, 2 + 2 * sizeof(big));
    assert_int_equal(w.p[w.len], '\0');
    json_t *back = json_loads(w.p, JSON_DECODE_ANY, NULL);
    assert_non_null(back);
    assert_int_equal(json_string_length(back), sizeof(big));
    json_decref(back);
    free(w.p);
}

static void test_id_format(void **state)
{
    (void)state;
    char s[NATTER_ID_STR_MAX];
    assert_int_equal(natter_id_format(s, 0), 1);
    assert_string_equal(s, "0");
    assert_int_equal(natter_id_format(s, 18446744073709551615ull), 20);
    assert_string_equal(s, "18446744073709551615");
    assert_int_equal(natter_id_format(s, 1000000), 7);
    assert_string_equal(s, "1000000");
}

static void test_time_format(void **state)
{
    (void)state;
    char s[NATTER_TIME_LEN];
    natter_format_time(s, 0);
    assert_string_equal(s, "1970-01-01T00:00:00.000Z");
    natter_format_time(s, 1795824000123);
    assert_string_equal(s, "2026-11-28T00:00:00.123Z");
    /* against strftime over a spread of instants */
    for (int64_t ms = 86399999; ms < 4102444800000; ms += 7919LL * 1000 * 3600 + 997) {
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char want[64], head[32];
        strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want, sizeof(want), "%s.%03dZ", head, (int)(ms % 1000));
        natter_format_time(s, ms);
        assert_string_equal(s, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_matches_jansson),
        cmocka_unit_test(test_buffer_grows),
        cmocka_unit_test(test_id_format),
        cmocka_unit_test(test_time_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
