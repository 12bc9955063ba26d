/* Unit tests for load/load_api*.c: how each dialect reads a push (content
 * and message id), a timeuuid's order, natter's history pages, and the
 * message bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_run.h"

static int scan(const load_api_t *api, const char *s, uint64_t *t, uint64_t *seq, load_id_t *id)
{
    return api->scan_push(s, strlen(s), t, seq, id);
}

static void test_find(void **state)
{
    (void)state;
    assert_ptr_equal(load_api_find("natter"), &load_api_natter);
    assert_ptr_equal(load_api_find("seed"), &load_api_seed);
    assert_null(load_api_find("rust"));
    assert_true(load_api_natter.post_ids && !load_api_seed.post_ids);
    assert_string_equal(load_api_natter.lag_metric, "natter_consumer_lag");
    assert_string_equal(load_api_seed.lag_metric, "consumer_lag");
    /* only natter has history to catch up from */
    assert_non_null(load_api_natter.history_path);
    assert_null(load_api_seed.history_path);
    assert_null(load_api_seed.scan_history);
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

static void test_id_order(void **state)
{
    (void)state;
    load_id_t a = {0, 5}, b = {0, 6}, c = {1, 0};
    assert_true(load_id_cmp(a, b) < 0 && load_id_cmp(b, a) > 0 && load_id_cmp(a, a) == 0);
    assert_true(load_id_cmp(b, c) < 0); /* hi decides first */
    assert_true(load_id_is_none((load_id_t){0, 0}) && !load_id_is_none(a));
}

static void test_natter_push(void **state)
{
    (void)state;
    uint64_t t = 0, seq = 0;
    load_id_t id = {7, 7};
    assert_int_equal(scan(&load_api_natter,
                          "{\"type\":\"message\",\"chat_id\":\"7\",\"id\":\"991\",\"sender\":\"a\","
                          "\"content\":\"t=55 s=3\",\"created_at\":1}",
                          &t, &seq, &id),
                     0);
    assert_true(t == 55 && seq == 3 && id.hi == 0 && id.lo == 991);
    /* another event type, someone else's content, no id */
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"read\",\"content\":\"t=1 s=2\",\"id\":\"1\"}", &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"message\",\"id\":\"1\",\"content\":\"hello\"}", &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\":\"message\",\"content\":\"t=1 s=2\"}", &t, &seq, &id), -1);
    assert_int_equal(scan(&load_api_natter, "{\"type\"", &t, &seq, &id), -1);
}

/* The fragment the original pushes: an outer element whose id is not a
 * message's, then "msg-<timeuuid>". */
#define FRAGMENT(uuid, content)                                                                                     \
    "<div id=\"messages\" hx-swap-oob=\"beforeend\"><div id=\"msg-" uuid "\" class=\"message\" data-chat=\"c1\">"   \
    "<span>bob</span> <p class=\"content\">" content "</p></div></div>"

static void test_seed_push(void **state)
{
    (void)state;
    uint64_t t = 0, seq = 0;
    load_id_t id;
    /* "t=" appears first inside markup (data-chat=): the scan moves on to the content */
    assert_int_equal(scan(&load_api_seed, FRAGMENT("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "t=777 s=12"), &t, &seq, &id),
                     0);
    assert_true(t == 777 && seq == 12);
    /* 60-bit timestamp: time_hi 1d1 (version nibble dropped), time_mid 9dad, time_low 6ba7b810 */
    assert_true(id.hi == 0x1d19dad6ba7b810ull);
    assert_true(id.lo == (0x80b400c04fd430c8ull ^ 0x8080808080808080ull));
    /* upper case hex is the same id */
    load_id_t upper;
    assert_int_equal(scan(&load_api_seed, FRAGMENT("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "t=1 s=2"), &t, &seq, &upper),
                     0);
    assert_int_equal(load_id_cmp(id, upper), 0);
    /* no id, a version-4 id, a cut id, no closing quote, someone else's content */
    assert_int_equal(scan(&load_api_seed, "<div id=\"messages\"><p>t=777 s=12</p></div>", &t, &seq, &id), -1);
    assert_int_equal(scan(&load_api_seed, FRAGMENT("6ba7b810-9dad-41d1-80b4-00c04fd430c8", "t=1 s=2"), &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_seed, "<div id=\"msg-6ba7b810-9dad-11d1-80b4-00c04fd430c\">t=1 s=2</div>", &t, &seq,
                          &id),
                     -1);
    assert_int_equal(scan(&load_api_seed, "<div id=\"msg-6ba7b810-9dad-11d1-80b4-00c04fd430c8", &t, &seq, &id), -1);
    assert_int_equal(scan(&load_api_seed, FRAGMENT("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "hello t="), &t, &seq, &id),
                     -1);
    assert_int_equal(scan(&load_api_seed, "", &t, &seq, &id), -1);
}

static load_id_t timeuuid(const char *s)
{
    load_id_t id;
    assert_int_equal(load_api_seed_timeuuid(s, s + strlen(s), &id), 0);
    return id;
}

static void test_timeuuid_order(void **state)
{
    (void)state;
    /* time order is not text order: time_low is written first, so a later
     * time can read smaller */
    load_id_t early = timeuuid("ffffffff-0000-1000-8000-000000000000"); /* time_mid 0 */
    load_id_t late = timeuuid("00000000-0001-1000-8000-000000000000");  /* time_mid 1 */
    assert_true(load_id_cmp(early, late) < 0);
    load_id_t later = timeuuid("00000000-0000-1001-8000-000000000000"); /* time_hi 1 */
    assert_true(load_id_cmp(late, later) < 0);
    /* one tick: the rest decides, byte by byte as signed bytes, so 0x80
     * (-128) comes before 0x7f (127) and 0xff (-1) before 0x00 */
    load_id_t neg = timeuuid("00000001-0000-1000-8000-000000000000");
    load_id_t pos = timeuuid("00000001-0000-1000-7f00-000000000000");
    assert_true(load_id_cmp(neg, pos) < 0);
    load_id_t minus_one = timeuuid("00000001-0000-1000-8000-0000000000ff");
    load_id_t zero = timeuuid("00000001-0000-1000-8000-000000000000");
    assert_true(load_id_cmp(minus_one, zero) < 0);
    /* the timestamp outranks any rest */
    assert_true(load_id_cmp(timeuuid("00000001-0000-1000-7fff-7fffffffffff"),
                            timeuuid("00000002-0000-1000-8000-800000000000")) < 0);
    load_id_t id;
    const char *bad = "00000001-0000-1000-8000-00000000000g";
    assert_int_equal(load_api_seed_timeuuid(bad, bad + strlen(bad), &id), -1);
    const char *dashes = "00000001+0000-1000-8000-000000000000";
    assert_int_equal(load_api_seed_timeuuid(dashes, dashes + strlen(dashes), &id), -1);
}

typedef struct items {
    size_t n, ours;
    load_id_t ids[8];
    uint64_t seqs[8];
} items_t;

static void collect(void *arg, load_id_t id, int ours, uint64_t t, uint64_t seq)
{
    items_t *it = arg;
    (void)t;
    if (it->n < 8) {
        it->ids[it->n] = id;
        it->seqs[it->n] = ours ? seq : UINT64_MAX;
    }
    it->n++;
    it->ours += (size_t)ours;
}

static int history(const char *body, items_t *it)
{
    memset(it, 0, sizeof(*it));
    return load_api_natter.scan_history(body, strlen(body), collect, it);
}

static void test_natter_history(void **state)
{
    (void)state;
    items_t it;
    assert_int_equal(history("{\"messages\":[{\"id\":\"101\",\"chat_id\":\"9\",\"content\":\"t=5 s=40\"},"
                             "{\"id\":\"102\",\"content\":\"hello\"},{\"id\":\"107\",\"content\":\"t=6 s=41\"}],"
                             "\"has_more\":true}",
                             &it),
                     1);
    assert_int_equal(it.n, 3);
    assert_int_equal(it.ours, 2);
    assert_true(it.ids[0].lo == 101 && it.seqs[0] == 40);
    assert_true(it.ids[1].lo == 102 && it.seqs[1] == UINT64_MAX);
    assert_true(it.ids[2].lo == 107 && it.seqs[2] == 41);
    assert_int_equal(history("{\"messages\":[],\"has_more\":false}", &it), 0);
    assert_int_equal(it.n, 0);
    /* malformed: not JSON, no has_more, an id that is not a decimal string or overflows */
    assert_int_equal(history("<html>", &it), -1);
    assert_int_equal(history("{\"messages\":[]}", &it), -1);
    assert_int_equal(history("{\"messages\":[{\"id\":101,\"content\":\"t=1 s=1\"}],\"has_more\":false}", &it), -1);
    assert_int_equal(history("{\"messages\":[{\"id\":\"1x\"}],\"has_more\":false}", &it), -1);
    assert_int_equal(history("{\"messages\":[{\"id\":\"18446744073709551616\"}],\"has_more\":false}", &it), -1);
    /* the page a catch-up asks for: after the last id seen, natter's largest limit */
    load_chat_t c = {0};
    assert_int_equal(load_chat_set_id(&c, "9"), 0);
    char path[128];
    load_api_natter.history_path(&c, (load_id_t){0, 101}, path, sizeof(path));
    assert_string_equal(path, "/chats/9/messages?after=101&limit=200");
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
        cmocka_unit_test(test_find),          cmocka_unit_test(test_content),
        cmocka_unit_test(test_id_order),      cmocka_unit_test(test_natter_push),
        cmocka_unit_test(test_seed_push),     cmocka_unit_test(test_timeuuid_order),
        cmocka_unit_test(test_natter_history), cmocka_unit_test(test_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
