/* Unit tests for load/load_api*.c: how each dialect reads a push and writes
 * a message body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_api.h"

static int scan(const load_api_t *api, const char *s, uint64_t *t, uint64_t *seq, uint64_t *id)
{
    return api->scan_push(s, strlen(s), t, seq, id);
}

static void test_find(void **state)
{
    (void)state;
    assert_ptr_equal(load_api_find("natter"), &load_api_natter);
    assert_ptr_equal(load_api_find("seed"), &load_api_seed);
    assert_null(load_api_find("rust"));
    assert_true(load_api_natter.has_ids && !load_api_seed.has_ids);
}

static void test_content(void **state)
{
    (void)state;
    const char *ok = "t=123456789 s=42";
    uint64_t t, seq;
    assert_int_equal(load_api_scan_content(ok, ok + strlen(ok), &t, &seq), 0);
    assert_true(t == 123456789 && seq == 42);
    static const char *const bad[] = {"t= s=1", "t=1s=2", "t=1 s=", "x=1 s=2", "t=1 s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(load_api_scan_content(bad[i], bad[i] + strlen(bad[i]), &t, &seq), -1);
    /* the end bounds the scan, not a NUL */
    assert_int_equal(load_api_scan_content(ok, ok + 13, &t, &seq), -1);
}

static void test_natter_push(void **state)
{
    (void)state;
    uint64_t t = 0, seq = 0, id = 0;
    assert_int_equal(scan(&load_api_natter,
                          "{\"type\":\"message\",\"chat_id\":\"7\",\"id\":\"991\",\"sender\":\"a\","
                          "\"content\":\"t=55 s=3\",\"created_at\":1}",
                          &t, &seq, &id),
                     0);
    assert_true(t == 55 && seq == 3 && id == 991);
    /* another event type, someone else's content, no id */
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"read\",\"content\":\"t=1 s=2\",\"id\":\"1\"}", &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"message\",\"id\":\"1\",\"content\":\"hello\"}", &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"message\",\"content\":\"t=1 s=2\"}", &t, &seq, &id), -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\"", &t, &seq, &id), -1);
}

static void test_seed_push(void **state)
{
    (void)state;
    uint64_t t = 0, seq = 0, id = 9;
    /* "t=" appears first inside markup: the scan moves on to the content */
    assert_int_equal(scan(&load_api_seed,
                          "<div data-chat=\"c1\" hx-swap-oob=\"beforeend\"><span>bob</span> "
                          "<p class=\"content\">t=777 s=12</p></div>",
                          &t, &seq, &id),
                     0);
    assert_true(t == 777 && seq == 12 && id == 0);
    assert_int_equal(scan(&load_api_seed, "<p>hello t=</p>", &t, &seq, &id), -1);
    assert_int_equal(scan(&load_api_seed, "", &t, &seq, &id), -1);
}

static void test_bodies(void **state)
{
    (void)state;
    char buf[64];
    int n = load_api_natter.message_body(buf, sizeof(buf), "t=1 s=2");
    assert_int_equal(n, (int)strlen("{\"content\":\"t=1 s=2\"}"));
    assert_memory_equal(buf, "{\"content\":\"t=1 s=2\"}", (size_t)n);
    n = load_api_seed.message_body(buf, sizeof(buf), "t=1 s=2");
    assert_int_equal(n, (int)strlen("content=t%3D1+s%3D2"));
    assert_memory_equal(buf, "content=t%3D1+s%3D2", (size_t)n);
    /* too small a buffer is an error, not a truncated body */
    assert_int_equal(load_api_natter.message_body(buf, 10, "t=1 s=2"), -1);
    assert_int_equal(load_api_seed.message_body(buf, 10, "t=1 s=2"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),        cmocka_unit_test(test_content), cmocka_unit_test(test_natter_push),
        cmocka_unit_test(test_seed_push),   cmocka_unit_test(test_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
