/* Unit tests for src/ingest/static.c and the table scripts/embed-web makes of web/:
 * lookup by exact name, ETags, If-None-Match, Cache-Control, the CSP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <string.h>

#include "ingest/static.h"

static const natter_static_asset_t *find(const char *path)
{
    return natter_static_find(path, strlen(path));
}

/* The generated table: sorted and unique (the lookup is a binary search),
 * each ETag the quoted first 16 hex digits of its bytes' SHA-256. */
static void test_table(void **state)
{
    (void)state;
    assert_true(natter_static_count >= 3); /* index.html, its script, its style */
    for (size_t i = 0; i < natter_static_count; i++) {
        const natter_static_asset_t *a = &natter_static_assets[i];
        if (i > 0)
            assert_true(strcmp(natter_static_assets[i - 1].path, a->path) < 0);
        unsigned char sum[SHA256_DIGEST_LENGTH];
        char want[19];
        SHA256(a->data, a->len, sum);
        want[0] = '"';
        for (int k = 0; k < 8; k++)
            snprintf(want + 1 + 2 * k, 3, "%02x", sum[k]);
        want[17] = '"';
        want[18] = '\0';
        assert_string_equal(a->etag, want);
        if (strncmp(a->content_type, "text/", 5) == 0)
            assert_non_null(strstr(a->content_type, "; charset=utf-8"));
    }
}

static void test_find(void **state)
{
    (void)state;
    for (size_t i = 0; i < natter_static_count; i++)
        assert_ptr_equal(find(natter_static_assets[i].path), &natter_static_assets[i]);
    const natter_static_asset_t *index = find("index.html");
    assert_non_null(index);
    assert_string_equal(index->content_type, "text/html; charset=utf-8");
    assert_non_null(strstr((const char *)index->data, "<main"));
    assert_string_equal(find("app.js")->content_type, "text/javascript; charset=utf-8");
    assert_string_equal(find("app.css")->content_type, "text/css; charset=utf-8");
    static const char *const absent[] = {
        "", "index.htm", "index.html2", "index.htmlx", "Index.html", "/index.html", "./index.html",
        "../index.html", "web/index.html", "%69ndex.html", "a", "zzz",
    };
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        if (find(absent[i]) != NULL)
            fail_msg("'%s' found", absent[i]);
    /* only len bytes are the name; an embedded NUL is part of it */
    assert_ptr_equal(natter_static_find("index.htmlXYZ", 10), index);
    assert_null(natter_static_find("index.html\0", 11));
    assert_null(natter_static_find("index.html", 9));
}

static void test_etag_match(void **state)
{
    (void)state;
    const char *etag = "\"0123456789abcdef\"";
#define MATCH(v) assert_int_equal(natter_static_etag_match((v), strlen(v), etag), 1)
#define NO_MATCH(v) assert_int_equal(natter_static_etag_match((v), strlen(v), etag), 0)
    MATCH("\"0123456789abcdef\"");
    MATCH("W/\"0123456789abcdef\"");
    MATCH("*");
    MATCH(" * ");
    MATCH("\"old\", \"0123456789abcdef\"");
    MATCH("\"old\",\"0123456789abcdef\" , \"other\"");
    MATCH(",, \t\"0123456789abcdef\"\t,");
    NO_MATCH("");
    NO_MATCH(" , ");
    NO_MATCH("\"old\"");
    NO_MATCH("0123456789abcdef");
    NO_MATCH("\"0123456789abcdef");
    NO_MATCH("\"0123456789abcdef\"x");
    NO_MATCH("\"0123456789ABCDEF\"");
    NO_MATCH("w/\"0123456789abcdef\"");
    NO_MATCH("**");
    NO_MATCH("\"*\"");
#undef MATCH
#undef NO_MATCH
    /* only len bytes are the header */
    assert_int_equal(natter_static_etag_match("\"0123456789abcdef\"", 17, etag), 0);
}

static void test_cache_control(void **state)
{
    (void)state;
    assert_string_equal(natter_static_cache_control(find("index.html")), "no-cache");
    assert_string_equal(natter_static_cache_control(find("app.js")), "no-cache"); /* names not fingerprinted */
    assert_string_equal(natter_static_cache_control(find("app.css")), "no-cache");
}

static void test_csp(void **state)
{
    (void)state;
    char csp[NATTER_STATIC_CSP_MAX];
    size_t n = natter_static_csp(csp, "127.0.0.1:8080", 14);
    assert_int_equal(n, strlen(csp));
    assert_string_equal(csp, "default-src 'self'; connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080; "
                             "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    natter_static_csp(csp, "[::1]:8080", 10);
    assert_non_null(strstr(csp, " ws://[::1]:8080 wss://[::1]:8080;"));
    natter_static_csp(csp, "chat.example.com", 16);
    assert_non_null(strstr(csp, "connect-src 'self' ws://chat.example.com wss://chat.example.com;"));
    /* a Host that could add a directive, or none, or too long: same-origin only */
    static const char *const hostile[] = {"evil; script-src *", "a b", "x'", "h\r\nX: y", "h,*", ""};
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        natter_static_csp(csp, hostile[i], strlen(hostile[i]));
        assert_non_null(strstr(csp, "connect-src 'self'; object-src"));
    }
    natter_static_csp(csp, NULL, 0);
    assert_non_null(strstr(csp, "connect-src 'self'; object-src"));
    char host[130];
    memset(host, 'h', sizeof(host));
    natter_static_csp(csp, host, 129);
    assert_non_null(strstr(csp, "connect-src 'self'; object-src"));
    n = natter_static_csp(csp, host, 128); /* the longest Host kept still fits */
    assert_true(n < sizeof(csp));
    assert_non_null(strstr(csp, " wss://hhhh"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_csp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
