/* Unit tests for src/ingest/router.c: every route and method, 405/Allow, 404s, query handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ingest/router.h"

static natter_action_t route(const char *method, const char *path, natter_route_t *r)
{
    natter_action_t a = natter_route(method, strlen(method), path, strlen(path), r);
    assert_int_equal(a, r->action); /* the return value and out->action always agree */
    return a;
}

/* 1 when path fits the route template: "{name}" stands for any one non-empty segment. */
static int template_matches(const char *tmpl, const char *path)
{
    while (*tmpl != '\0' && *path != '\0') {
        if (*tmpl == '{') {
            tmpl = strchr(tmpl, '}') + 1;
            const char *end = strchr(path, '/');
            end = end ? end : path + strlen(path);
            if (end == path)
                return 0;
            path = end;
        } else if (*tmpl++ != *path++) {
            return 0;
        }
    }
    return *tmpl == '\0' && *path == '\0';
}

/* Every route, with each method it accepts, and the metrics labels naming it. */
static void test_every_route(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path;
        natter_action_t action;
        uint64_t chat_id;
        const char *username;
    } cases[] = {
        {"POST", "/users", NATTER_A_USER_CREATE, 0, ""},
        {"POST", "/sessions", NATTER_A_SESSION_CREATE, 0, ""},
        {"DELETE", "/sessions", NATTER_A_SESSION_DELETE, 0, ""},
        {"GET", "/me", NATTER_A_ME, 0, ""},
        {"GET", "/users/77", NATTER_A_USER_GET, 0, ""},
        {"GET", "/chats", NATTER_A_CHATS_LIST, 0, ""},
        {"POST", "/chats", NATTER_A_CHAT_CREATE, 0, ""},
        {"GET", "/chats/42", NATTER_A_CHAT_GET, 42, ""},
        {"PUT", "/chats/42/members/alice", NATTER_A_MEMBER_ADD, 42, "alice"},
        {"DELETE", "/chats/42/members/bob", NATTER_A_MEMBER_REMOVE, 42, "bob"},
        {"GET", "/chats/7/messages", NATTER_A_MESSAGES_LIST, 7, ""},
        {"POST", "/chats/7/messages", NATTER_A_MESSAGE_POST, 7, ""},
        {"PUT", "/chats/9/read", NATTER_A_READ, 9, ""},
        {"PATCH", "/chats/7/messages/8", NATTER_A_MESSAGE_EDIT, 7, ""},
        {"DELETE", "/chats/7/messages/8", NATTER_A_MESSAGE_DELETE, 7, ""},
        {"PUT", "/chats/7/messages/8/reactions/%F0%9F%91%8D", NATTER_A_REACTION_ADD, 7, ""},
        {"DELETE", "/chats/7/messages/8/reactions/%F0%9F%91%8D", NATTER_A_REACTION_REMOVE, 7, ""},
        {"GET", "/chats/7/events", NATTER_A_EVENTS_LIST, 7, ""},
        {"GET", "/ws", NATTER_A_WS, 0, ""},
        {"GET", "/metrics", NATTER_A_METRICS, 0, ""},
        {"GET", "/healthz", NATTER_A_HEALTHZ, 0, ""},
        {"GET", "/readyz", NATTER_A_READYZ, 0, ""},
        {"POST", "/ws/tickets", NATTER_A_WS_TICKET, 0, ""},
        {"GET", "/chats/18446744073709551615", NATTER_A_CHAT_GET, UINT64_MAX, ""},
        {"PUT", "/chats/1/members/A.b-c_9", NATTER_A_MEMBER_ADD, 1, "A.b-c_9"},
        {"PUT", "/chats/1/members/abcdefghijklmnopqrstuvwxyz012345", NATTER_A_MEMBER_ADD, 1,
         "abcdefghijklmnopqrstuvwxyz012345"}, /* 32 chars: the longest name */
        {"PUT", "/chats/1/members/%61lice", NATTER_A_MEMBER_ADD, 1, "alice"}, /* percent-encoded: the same name */
        {"DELETE", "/chats/1/members/%41%2e%5F", NATTER_A_MEMBER_REMOVE, 1, "A._"},
        {"PUT", "/chats/1/members/abcdefghijklmnopqrstuvwxyz01234%35", NATTER_A_MEMBER_ADD, 1,
         "abcdefghijklmnopqrstuvwxyz012345"}, /* 32 once decoded */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        natter_route_t r;
        memset(&r, 0xAB, sizeof(r)); /* the router must set every field */
        assert_int_equal(route(cases[i].method, cases[i].path, &r), cases[i].action);
        assert_int_equal(r.chat_id, cases[i].chat_id);
        assert_string_equal(r.username, cases[i].username);
        assert_null(r.allow);
        assert_null(r.query);
        assert_int_equal(r.query_len, 0);
        assert_string_equal(natter_route_names[r.action].method, cases[i].method);
        assert_true(template_matches(natter_route_names[r.action].path, cases[i].path));
    }
    natter_route_t r;
    assert_int_equal(route("GET", "/users/18446744073709551615", &r), NATTER_A_USER_GET);
    assert_true(r.user_id == UINT64_MAX);
}

/* Paths that exist, with a method they do not accept: 405 and the Allow header. */
static void test_method_not_allowed(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"GET", "/users", "POST"},
        {"DELETE", "/users", "POST"},
        {"GET", "/sessions", "POST, DELETE"},
        {"PUT", "/sessions", "POST, DELETE"},
        {"POST", "/me", "GET, HEAD"},
        {"DELETE", "/users/3", "GET, HEAD"},
        {"DELETE", "/chats", "GET, HEAD, POST"},
        {"PUT", "/chats", "GET, HEAD, POST"},
        {"POST", "/chats/1", "GET, HEAD"},
        {"DELETE", "/chats/1", "GET, HEAD"},
        {"PUT", "/chats/1/messages", "GET, HEAD, POST"},
        {"DELETE", "/chats/1/messages", "GET, HEAD, POST"},
        {"GET", "/chats/1/read", "PUT"},
        {"POST", "/chats/1/read", "PUT"},
        {"GET", "/chats/1/members/alice", "PUT, DELETE"},
        {"POST", "/chats/1/members/alice", "PUT, DELETE"},
        {"POST", "/ws", "GET, HEAD"},
        {"POST", "/metrics", "GET, HEAD"},
        {"HEAD", "/users", "POST"}, /* HEAD is GET without a body: only where GET is */
        {"PUT", "/readyz", "GET, HEAD"},
        {"get", "/me", "GET, HEAD"},   /* methods are case-sensitive */
        {"head", "/me", "GET, HEAD"},
        {"GETX", "/me", "GET, HEAD"},
        {"", "/me", "GET, HEAD"},
        {"OPTIONS", "/chats/5/messages?after=1", "GET, HEAD, POST"},
        {"GET", "/ws/tickets", "POST"},
        {"DELETE", "/ws/tickets", "POST"},
{"GET", "/chats/1/messages/2", "PATCH, DELETE"},
        {"PUT", "/chats/1/messages/2", "PATCH, DELETE"},
        {"POST", "/chats/1/messages/2", "PATCH, DELETE"},
        {"GET", "/chats/1/messages/2/reactions/%F0%9F%91%8D", "PUT, DELETE"},
        {"PATCH", "/chats/1/messages/2/reactions/x", "PUT, DELETE"},
        {"POST", "/chats/1/events", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        natter_route_t r;
        assert_int_equal(route(cases[i].method, cases[i].path, &r), NATTER_A_METHOD_NOT_ALLOWED);
        assert_non_null(r.allow);
        assert_string_equal(r.allow, cases[i].allow);
    }
    natter_route_t r;
    route("PUT", "/chats/77/messages", &r);
    assert_int_equal(r.chat_id, 77); /* the parameters are still parsed */
    route("GET", "/chats/3/members/carol", &r);
    assert_string_equal(r.username, "carol");
}

static void test_not_found(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "", "//", "users", "/user", "/users/", "/users/0", "/users/x", "/users/1/", "/users/1/chats", "/me/", "/Me",
        "/chat", "/chats/",
        "/chats//messages",
        /* bad chat ids */
        "/chats/0", "/chats/0/messages", "/chats/abc", "/chats/abc/messages", "/chats/-1", "/chats/+1",
        "/chats/1a", "/chats/ 1", "/chats/0x10", "/chats/18446744073709551616",
        "/chats/18446744073709551616/messages", "/chats/99999999999999999999", "/chats/123456789012345678901",
        /* trailing slashes and extra segments */
        "/chats/1/", "/chats/1/messages/", "/chats/1/read/", "/chats/1/unknown",
        "/chats/1/messages/0", "/chats/1/messages/x", "/chats/1/messages/2/", "/chats/1/messages/2/reactions",
        "/chats/1/messages/2/reactions/", "/chats/1/messages/2/x/%F0%9F%91%8D",
        "/chats/1/messages/2/reactions/%F0%9F%91%8D/", "/chats/1/events/", "/chats/1/events/3",
        "/chats/1/members", "/chats/1/members/", "/chats/1/members/alice/", "/chats/1/members/alice/x",
        "/healthz/", "/ws/", "/metrics/x", "/ws/tickets/", "/ws/tickets/1", "/ws/ticket", "/ws/static/app.js",
        /* the web client: "/" and "/static/<name>" only */
        "/static", "/static/", "/index.html", "/app.js", "/Static/app.js",
        /* bad usernames */
        "/chats/1/members/al%20ice", "/chats/1/members/al ice", "/chats/1/members/al+ice",
        "/chats/1/members/al@ice", "/chats/1/members/abcdefghijklmnopqrstuvwxyz0123456", /* 33 chars */
        "/chats/1/members/%", "/chats/1/members/a%4", "/chats/1/members/a%zz", "/chats/1/members/%2e", /* "." */
        "/chats/1/members/al%40ice", "/chats/1/members/abcdefghijklmnopqrstuvwxyz012345%36", /* 33 decoded */
        "/chats/1/members/\xC3\xA9",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
        for (size_t k = 0; k < 4; k++) {
            natter_route_t r;
            natter_action_t a = route(methods[k], paths[i], &r);
            if (a != NATTER_A_NOT_FOUND)
                fail_msg("%s %s: action %d, want NOT_FOUND", methods[k], paths[i], (int)a);
            assert_null(r.allow);
        }
    }
}

/* The web client's files: "/" is index.html, "/dashboard" dashboard.html,
 * "/static/<name>" any name (the embedded table decides which exist, see
 * test_static.c). */
static void test_web_routes(void **state)
{
    (void)state;
    static const struct {
        const char *path, *asset;
        natter_action_t action;
    } cases[] = {
        {"/", "index.html", NATTER_A_PAGE},
        {"/?from=mail", "index.html", NATTER_A_PAGE},
        {"/dashboard", "dashboard.html", NATTER_A_PAGE},
        {"/static/app.js", "app.js", NATTER_A_STATIC},
        {"/static/app.js?v=2", "app.js", NATTER_A_STATIC},
        {"/static/icons/chat.svg", "icons/chat.svg", NATTER_A_STATIC},
        {"/static/../src/main.c", "../src/main.c", NATTER_A_STATIC},
        {"/static//x", "/x", NATTER_A_STATIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        natter_route_t r;
        assert_int_equal(route("GET", cases[i].path, &r), cases[i].action);
        assert_int_equal(r.asset_len, strlen(cases[i].asset));
        assert_memory_equal(r.asset, cases[i].asset, r.asset_len);
        assert_null(r.allow);
    }
    natter_route_t r;
    assert_int_equal(route("HEAD", "/", &r), NATTER_A_PAGE); /* HEAD is GET without the body */
    assert_null(r.allow);
    assert_int_equal(route("HEAD", "/static/app.js", &r), NATTER_A_STATIC);
    assert_int_equal(route("POST", "/dashboard", &r), NATTER_A_METHOD_NOT_ALLOWED);
    assert_string_equal(r.allow, "GET, HEAD");
    assert_int_equal(route("GET", "/dashboard/", &r), NATTER_A_NOT_FOUND);
    assert_string_equal(natter_route_names[NATTER_A_PAGE].path, "/{page}");
    assert_string_equal(natter_route_names[NATTER_A_STATIC].path, "/static/{file}");
    assert_int_equal(route("POST", "/static/app.js", &r), NATTER_A_METHOD_NOT_ALLOWED);
    assert_string_equal(r.allow, "GET, HEAD");
    assert_int_equal(route("GET", "/me", &r), NATTER_A_ME);
    assert_null(r.asset); /* only the web routes name an asset */
    assert_int_equal(r.asset_len, 0);
}

/* The reaction's emoji: percent-decoded and checked by the router; a bad
 * one still routes (its answer is 400, the path exists). */
static void test_reaction_routes(void **state)
{
    (void)state;
    natter_route_t r;
    assert_int_equal(route("PUT", "/chats/3/messages/18446744073709551615/reactions/%E2%9D%A4%EF%B8%8F", &r),
                     NATTER_A_REACTION_ADD);
    assert_int_equal(r.chat_id, 3);
    assert_int_equal(r.message_id, UINT64_MAX);
    assert_true(r.emoji_ok);
    assert_int_equal(r.emoji_len, 6);
    assert_string_equal(r.emoji, "\xe2\x9d\xa4\xef\xb8\x8f");
    assert_int_equal(route("DELETE", "/chats/3/messages/4/reactions/\xf0\x9f\x91\x8d?x=1", &r),
                     NATTER_A_REACTION_REMOVE);
    assert_true(r.emoji_ok);
    assert_string_equal(r.emoji, "\xf0\x9f\x91\x8d");
    static const char *const bad[] = {"abc", "%F0%9F%91", "%zz", "%20",
                                      ("%F0%9F%91%8D%F0%9F%91%8D%F0%9F%91%8D%F0"
                                       "%9F%91%8D%F0%9F%91%8D%F0%9F%91%8D%F0%9F%91%8D%F0%9F%91%8D%F0%9F%91%8D")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/chats/3/messages/4/reactions/%s", bad[i]);
        assert_int_equal(route("PUT", path, &r), NATTER_A_REACTION_ADD);
        assert_false(r.emoji_ok);
        assert_int_equal(r.emoji_len, 0);
        assert_string_equal(r.emoji, "");
    }
    assert_int_equal(route("PATCH", "/chats/3/messages/4", &r), NATTER_A_MESSAGE_EDIT);
    assert_int_equal(r.message_id, 4);
    assert_false(r.emoji_ok);
}

static void test_path_length_is_respected(void **state)
{
    (void)state;
    natter_route_t r;
    /* only plen bytes are the path */
    const char *p = "/chats/12/messagesXYZ";
    assert_int_equal(natter_route("GET", 3, p, strlen("/chats/12/messages"), &r), NATTER_A_MESSAGES_LIST);
    assert_int_equal(r.chat_id, 12);
    assert_int_equal(natter_route("GET", 3, "/chats/123", 9, &r), NATTER_A_CHAT_GET);
    assert_int_equal(r.chat_id, 12);
    assert_int_equal(natter_route("GETX", 3, "/me", 3, &r), NATTER_A_ME);
    /* an embedded NUL is part of the path, not its end */
    assert_int_equal(natter_route("GET", 3, "/me\0x", 5, &r), NATTER_A_NOT_FOUND);
}

static void test_query_split(void **state)
{
    (void)state;
    natter_route_t r;
    const char *path = "/chats/5/messages?after=10&limit=20";
    assert_int_equal(route("GET", path, &r), NATTER_A_MESSAGES_LIST);
    assert_int_equal(r.chat_id, 5);
    assert_ptr_equal(r.query, path + strlen("/chats/5/messages?"));
    assert_int_equal(r.query_len, strlen("after=10&limit=20"));

    path = "/me?";
    assert_int_equal(route("GET", path, &r), NATTER_A_ME);
    assert_ptr_equal(r.query, path + 4);
    assert_int_equal(r.query_len, 0);

    path = "/ws?token=abc?def";  /* only the first '?' splits */
    assert_int_equal(route("GET", path, &r), NATTER_A_WS);
    assert_int_equal(r.query_len, strlen("token=abc?def"));
    assert_memory_equal(r.query, "token=abc?def", r.query_len);

    path = "/chats?x=/y";
    assert_int_equal(route("POST", path, &r), NATTER_A_CHAT_CREATE);
    assert_int_equal(r.query_len, 4); /* "x=/y": a '/' in the query is not a segment */

    /* a trailing slash before the query is still a different path */
    assert_int_equal(route("GET", "/me/?a=1", &r), NATTER_A_NOT_FOUND);
    assert_int_equal(route("GET", "/chats/0?x=1", &r), NATTER_A_NOT_FOUND);
    assert_int_equal(route("POST", "/healthz?x", &r), NATTER_A_METHOD_NOT_ALLOWED);
    assert_string_equal(r.allow, "GET, HEAD");
    assert_int_equal(r.query_len, 1);
}

/* q's value of name as natter_query_get finds it (cap 0: raw, pointing into
 * q) or natter_query_value decodes it into a buffer of cap bytes. */
static void expect_found(const char *q, const char *name, size_t cap, const char *want)
{
    char buf[64];
    const char *val = NULL;
    size_t len = 12345;
    assert_true(cap <= sizeof(buf));
    int found = cap == 0 ? natter_query_get(q, strlen(q), name, &val, &len)
                         : natter_query_value(q, strlen(q), name, buf, cap, &val, &len);
    if (want == NULL) {
        assert_int_equal(found, 0);
        return;
    }
    assert_int_equal(found, 1);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(val, want, len);
    if (cap == 0)
        assert_true(val >= q && val + len <= q + strlen(q));
}

static void expect_query(const char *q, const char *name, const char *want)
{
    expect_found(q, name, 0, want);
}

static void expect_decoded(const char *q, const char *name, size_t cap, const char *want)
{
    expect_found(q, name, cap, want);
}

static void test_query_get(void **state)
{
    (void)state;
    expect_query("after=10&limit=20", "after", "10");
    expect_query("after=10&limit=20", "limit", "20");
    expect_query("after=10&limit=20", "before", NULL);
    expect_query("after=10&limit=20", "aft", NULL);      /* no prefix matches */
    expect_query("after=10&limit=20", "afterx", NULL);
    expect_query("after=10&limit=20", "10", NULL);       /* values are not names */
    expect_query("a=1&a=2&a=3", "a", "3");               /* the last occurrence wins */
    expect_query("a=1&b=&c", "b", "");
    expect_query("a=1&b=&c", "c", "");                   /* a name without '=' has an empty value */
    expect_query("token=x=y", "token", "x=y");           /* the first '=' splits */
    expect_query("&&a=1&&", "a", "1");
    expect_query("=5&a=1", "", "5");
    expect_query("", "a", NULL);
    expect_query("limit=5", "limit", "5");
    expect_query("x=%41", "x", "%41");                   /* no percent-decoding */
    const char *val;
    size_t len;
    /* only qlen bytes are read */
    assert_int_equal(natter_query_get("a=123&b=4", 4, "a", &val, &len), 1);
    assert_int_equal(len, 2);
    assert_memory_equal(val, "12", 2);
    assert_int_equal(natter_query_get("a=123&b=4", 5, "b", &val, &len), 0);
}

static void test_query_value_is_percent_decoded(void **state)
{
    (void)state;
    expect_decoded("limit=%35", "limit", 32, "5");            /* RFC 3986: the same as limit=5 */
    expect_decoded("after=1%32%33&x=1", "after", 32, "123");
    expect_decoded("t=%41%2d%5f", "t", 32, "A-_");            /* either case of hex digits */
    expect_decoded("t=%4a%4A", "t", 32, "JJ");
    expect_decoded("t=abc", "t", 32, "abc");                  /* nothing to decode: the raw value */
    expect_decoded("t=%", "t", 32, "%");                      /* malformed escapes stay raw */
    expect_decoded("t=%4", "t", 32, "%4");
    expect_decoded("t=%4g", "t", 32, "%4g");
    expect_decoded("t=a%41", "t", 1, "a%41");                 /* does not fit: raw */
    expect_decoded("t=%41%42", "t", 2, "AB");                 /* fits exactly */
    expect_decoded("t=%41", "u", 32, NULL);
    char buf[4];
    const char *val;
    size_t len;
    assert_int_equal(natter_query_value("t=%00", 5, "t", buf, sizeof(buf), &val, &len), 1);
    assert_int_equal(len, 1); /* a NUL byte is decoded; numbers and tokens refuse it */
    assert_int_equal(val[0], 0);
}

/* A path without '?' routes with query NULL, and callers pass that straight
 * on (http.c for /ws, api.c for GET messages). Computing NULL + 0 is undefined
 * behaviour: clang's UBSan (make CC=clang unit) aborts in natter_query_get. */
static void test_query_get_without_query(void **state)
{
    (void)state;
    const char *val = NULL;
    size_t len = 0;
    natter_route_t r;
    route("GET", "/chats/1/messages", &r);
    assert_null(r.query);
    assert_int_equal(r.query_len, 0);
    assert_int_equal(natter_query_get(r.query, r.query_len, "after", &val, &len), 0);
    assert_null(val);
}

static void test_username_valid(void **state)
{
    (void)state;
    assert_int_equal(natter_username_valid("a", 1), 1);
    assert_int_equal(natter_username_valid("Alice_B.c-9", 11), 1);
    assert_int_equal(natter_username_valid("abcdefghijklmnopqrstuvwxyz012345", 32), 1);
    assert_int_equal(natter_username_valid("abcdefghijklmnopqrstuvwxyz0123456", 33), 0);
    assert_int_equal(natter_username_valid("", 0), 0);
    assert_int_equal(natter_username_valid("a b", 3), 0);
    assert_int_equal(natter_username_valid("a/b", 3), 0);
    assert_int_equal(natter_username_valid("a\0b", 3), 0);
    assert_int_equal(natter_username_valid("\xC3\xA9", 2), 0);
    assert_int_equal(natter_username_valid(".", 1), 0);  /* dot segments: clients resolve them away */
    assert_int_equal(natter_username_valid("..", 2), 0);
    assert_int_equal(natter_username_valid("...", 3), 1);
    assert_int_equal(natter_username_valid(".a", 2), 1);
    assert_int_equal(natter_username_valid("a@b", 3), 0);
    assert_int_equal(natter_username_valid("a:b", 3), 0);
    assert_int_equal(natter_username_valid("abc!", 3), 1); /* only len bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_web_routes),
        cmocka_unit_test(test_reaction_routes),
        cmocka_unit_test(test_path_length_is_respected),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_query_get_without_query),
        cmocka_unit_test(test_query_value_is_percent_decoded),
        cmocka_unit_test(test_username_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
