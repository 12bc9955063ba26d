/* Unit tests for src/core/token.c: shape, uniqueness, SHA-256 hash, bearer parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/token.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void test_new_shape(void **state)
{
    (void)state;
    char t[NATTER_TOKEN_LEN + 1 + 4];
    memset(t, '#', sizeof(t));
    assert_int_equal(natter_token_new(t), NATTER_OK);
    assert_int_equal(strlen(t), 43);
    assert_int_equal(t[NATTER_TOKEN_LEN + 1], '#'); /* nothing past the NUL */
    for (size_t i = 0; i < NATTER_TOKEN_LEN; i++)
        assert_non_null(memchr(alphabet, t[i], 64));
    assert_int_equal(natter_token_well_formed(t, strlen(t)), 1);
    /* 256 bits in 43 chars: the last char carries 4 bits, the low 2 bits of its index are 0 */
    const char *last = strchr(alphabet, t[42]);
    assert_int_equal((last - alphabet) & 3, 0);
}

static void test_new_unique(void **state)
{
    (void)state;
    enum { N = 256 };
    char (*toks)[NATTER_TOKEN_LEN + 1] = malloc(N * sizeof(*toks));
    int seen[64] = {0};
    for (int i = 0; i < N; i++) {
        assert_int_equal(natter_token_new(toks[i]), NATTER_OK);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(toks[i], toks[j]);
        for (int k = 0; k < 42; k++)
            seen[strchr(alphabet, toks[i][k]) - alphabet] = 1;
    }
    /* 256*42 random characters: every one of the 64 should turn up */
    for (int k = 0; k < 64; k++)
        assert_int_equal(seen[k], 1);
    free(toks);
}

static void test_hash_is_sha256_of_text(void **state)
{
    (void)state;
    uint8_t h[NATTER_TOKEN_HASH_LEN];
    char x[2 * NATTER_TOKEN_HASH_LEN + 1];
    natter_token_hash("abc", 3, h); /* FIPS 180-2 test vector */
    hex(h, sizeof(h), x);
    assert_string_equal(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    natter_token_hash("", 0, h);
    hex(h, sizeof(h), x);
    assert_string_equal(x, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* only len bytes are hashed */
    natter_token_hash("abcdef", 3, h);
    hex(h, sizeof(h), x);
    assert_string_equal(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* FIPS 180-2 two-block vector */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    natter_token_hash(m, strlen(m), h);
    hex(h, sizeof(h), x);
    assert_string_equal(x, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hash_distinguishes_tokens(void **state)
{
    (void)state;
    char a[NATTER_TOKEN_LEN + 1], b[NATTER_TOKEN_LEN + 1];
    uint8_t ha[32], ha2[32], hb[32];
    assert_int_equal(natter_token_new(a), NATTER_OK);
    memcpy(b, a, sizeof(a));
    b[0] = b[0] == 'A' ? 'B' : 'A';
    natter_token_hash(a, NATTER_TOKEN_LEN, ha);
    natter_token_hash(a, NATTER_TOKEN_LEN, ha2);
    natter_token_hash(b, NATTER_TOKEN_LEN, hb);
    assert_memory_equal(ha, ha2, 32);
    assert_memory_not_equal(ha, hb, 32);
}

static void test_well_formed(void **state)
{
    (void)state;
    char t[NATTER_TOKEN_LEN + 2];
    memset(t, 'a', sizeof(t));
    t[NATTER_TOKEN_LEN + 1] = '\0';
    assert_int_equal(natter_token_well_formed(t, 43), 1);
    assert_int_equal(natter_token_well_formed(t, 42), 0);
    assert_int_equal(natter_token_well_formed(t, 44), 0);
    assert_int_equal(natter_token_well_formed(t, 0), 0);
    t[10] = '-';
    t[11] = '_';
    t[12] = 'Z';
    t[13] = '9';
    assert_int_equal(natter_token_well_formed(t, 43), 1);
    const char bad[] = {'+', '/', '=', ' ', '.', '\0', '\xC3', '~'};
    for (size_t i = 0; i < sizeof(bad); i++) {
        t[20] = bad[i];
        assert_int_equal(natter_token_well_formed(t, 43), 0);
    }
}

static void expect_bearer(const char *value, const char *want)
{
    const char *tok = NULL;
    size_t n = natter_token_from_bearer(value, strlen(value), &tok);
    if (want == NULL) {
        assert_int_equal(n, 0);
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_non_null(tok);
    assert_memory_equal(tok, want, n);
    assert_true(tok >= value && tok + n <= value + strlen(value)); /* points into the value */
}

static void test_bearer(void **state)
{
    (void)state;
    expect_bearer("Bearer abc", "abc");
    expect_bearer("bearer abc", "abc");   /* the scheme is case-insensitive (RFC 7235) */
    expect_bearer("BEARER abc", "abc");
    expect_bearer("Bearer   abc  ", "abc");
    expect_bearer("Bearer a-b_c", "a-b_c");
    expect_bearer("Bearer ", NULL);
    expect_bearer("Bearer    ", NULL);
    expect_bearer("Bearer", NULL);
    expect_bearer("Bearerabc", NULL);
    expect_bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL);
    expect_bearer("", NULL);
    expect_bearer("Token abc", NULL);

    char t[NATTER_TOKEN_LEN + 1], value[64];
    assert_int_equal(natter_token_new(t), NATTER_OK);
    snprintf(value, sizeof(value), "Bearer %s", t);
    expect_bearer(value, t);
    /* only len bytes of the value are looked at */
    const char *tok;
    assert_int_equal(natter_token_from_bearer("Bearer abcdef", 10, &tok), 3);
    assert_memory_equal(tok, "abc", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_shape),
        cmocka_unit_test(test_new_unique),
        cmocka_unit_test(test_hash_is_sha256_of_text),
        cmocka_unit_test(test_hash_distinguishes_tokens),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
