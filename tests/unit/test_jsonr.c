/* Unit tests for src/core/jsonr.c: flat objects read in one pass, everything else handed back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/jsonr.h"

enum { CONTENT, CLIENT_ID, NF };

static natter_jsonr_result_t read_body(const char *body, natter_jsonr_field_t f[NF], char *scratch)
{
    f[CONTENT].key = "content";
    f[CLIENT_ID].key = "client_id";
    return natter_jsonr_flat(body, strlen(body), f, NF, scratch);
}

static void check_string(const natter_jsonr_field_t *f, const char *want, size_t len)
{
    assert_int_equal(f->kind, NATTER_JSONR_STRING);
    assert_int_equal(f->len, len);
    assert_memory_equal(f->value, want, len);
}

static void test_plain_strings_point_into_the_body(void **state)
{
    (void)state;
    natter_jsonr_field_t f[NF];
    char scratch[256];
    const char *body = " {\"content\" : \"hello\", \"client_id\":\"c-1\",\"other\":\"x\"}\n";
    assert_int_equal(read_body(body, f, scratch), NATTER_JSONR_OK);
    check_string(&f[CONTENT], "hello", 5);
    check_string(&f[CLIENT_ID], "c-1", 3);
    assert_ptr_equal(f[CONTENT].value, strstr(body, "hello")); /* no copy */
}

static void test_absent_and_other_values(void **state)
{
    (void)state;
    natter_jsonr_field_t f[NF];
    char scratch[64];
    assert_int_equal(read_body("{}", f, scratch), NATTER_JSONR_OK);
    assert_int_equal(f[CONTENT].kind, NATTER_JSONR_ABSENT);
    assert_int_equal(read_body("{\"content\":null,\"client_id\":true,\"x\":false}", f, scratch), NATTER_JSONR_OK);
    assert_int_equal(f[CONTENT].kind, NATTER_JSONR_OTHER);
    assert_int_equal(f[CLIENT_ID].kind, NATTER_JSONR_OTHER);
}

static void test_escapes_decode_into_scratch(void **state)
{
    (void)state;
    natter_jsonr_field_t f[NF];
    char scratch[256];
    /* \n, \", \\, \/, \u00e9 (2 bytes), \u20ac (3), a surrogate pair for U+1F600 (4) */
    const char *body = "{\"content\":\"a\\nb\\\"c\\\\d\\/e\\u00e9\\u20AC\\ud83d\\ude00\",\"client_id\":\"z\"}";
    assert_int_equal(read_body(body, f, scratch), NATTER_JSONR_OK);
    check_string(&f[CONTENT], "a\nb\"c\\d/e\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 18);
    check_string(&f[CLIENT_ID], "z", 1);
}

static void test_hands_back_what_it_does_not_read(void **state)
{
    (void)state;
    natter_jsonr_field_t f[NF];
    char scratch[256];
    static const char *const bodies[] = {
        "",                                    /* empty */
        "[]",                                  /* not an object */
        "\"x\"",                               /* not an object */
        "{\"content\":1}",                     /* a number: jansson has rules for those */
        "{\"content\":\"x\",\"m\":[]}",        /* nesting */
        "{\"content\":\"x\",\"m\":{}}",        /* nesting */
        "{\"content\":\"a\",\"content\":\"b\"}", /* a duplicate */
        "{\"con\\u0074ent\":\"a\"}",           /* an escaped key */
        "{\"content\":\"\\u0000\"}",           /* NUL */
        "{\"content\":\"\\ud83d\"}",           /* a lone high surrogate */
        "{\"content\":\"\\ude00\"}",           /* a lone low surrogate */
        "{\"content\":\"\\ud83d\\u0041\"}",    /* a high surrogate without its low half */
        "{\"content\":\"\\x\"}",               /* no such escape */
        "{\"content\":\"\\u12\"}",             /* short \\u */
        "{\"content\":\"tab\there\"}",         /* a raw control character */
        "{\"content\":\"x\"",                  /* unterminated object */
        "{\"content\":\"x}",                   /* unterminated string */
        "{\"content\":\"x\",}",                /* trailing comma */
        "{\"content\" \"x\"}",                 /* no colon */
        "{\"content\":\"x\"} x",               /* trailing garbage */
        "{\"content\":tru}",                   /* a broken literal */
        "{\"content\":truex}",                 /* a literal with more */
        "{,}",
        "{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\",\"g\":\"7\",\"h\":\"8\","
        "\"i\":\"9\",\"j\":\"10\",\"k\":\"11\",\"l\":\"12\",\"m\":\"13\",\"n\":\"14\",\"o\":\"15\",\"p\":\"16\","
        "\"q\":\"17\"}", /* more keys than it keeps */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        assert_int_equal(read_body(bodies[i], f, scratch), NATTER_JSONR_FALLBACK);
}

static void test_sixteen_keys_are_read(void **state)
{
    (void)state;
    natter_jsonr_field_t f[NF];
    char scratch[512];
    const char *body = "{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\",\"g\":\"7\",\"h\":\"8\","
                       "\"i\":\"9\",\"j\":\"10\",\"k\":\"11\",\"l\":\"12\",\"m\":\"13\",\"n\":\"14\",\"o\":\"15\","
                       "\"content\":\"16\"}";
    assert_int_equal(read_body(body, f, scratch), NATTER_JSONR_OK);
    check_string(&f[CONTENT], "16", 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_strings_point_into_the_body),
        cmocka_unit_test(test_absent_and_other_values),
        cmocka_unit_test(test_escapes_decode_into_scratch),
        cmocka_unit_test(test_hands_back_what_it_does_not_read),
        cmocka_unit_test(test_sixteen_keys_are_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
