/* Unit tests for src/core/password.c: Argon2id hashes at a configured cost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/error.h"
#include "core/password.h"

static void test_default_cost_round_trip(void **state)
{
    (void)state;
    natter_password_cost_t cost = {19456, 2};
    char phc[NATTER_PWHASH_MAX];
    assert_int_equal(natter_password_hash(&cost, "correct horse", 13, phc), NATTER_OK);
    assert_non_null(strstr(phc, "$argon2id$"));
    assert_non_null(strstr(phc, "m=19456,t=2,p=1"));
    assert_int_equal(natter_password_verify(phc, "correct horse", 13), 1);
    assert_int_equal(natter_password_verify(phc, "correct horsf", 13), 0);
    assert_int_equal(natter_password_verify(phc, "correct horse", 12), 0);
}

/* The benchmark setting is recorded in the hash, so a node with the
 * default setting still verifies it. */
static void test_low_cost_is_recorded(void **state)
{
    (void)state;
    natter_password_cost_t low = {8, 1};
    char phc[NATTER_PWHASH_MAX];
    assert_int_equal(natter_password_hash(&low, "pw-of-a-bench", 13, phc), NATTER_OK);
    assert_non_null(strstr(phc, "m=8,t=1,p=1"));
    assert_int_equal(natter_password_verify(phc, "pw-of-a-bench", 13), 1);
    assert_int_equal(natter_password_verify(phc, "pw-of-a-benci", 13), 0);
}

static void test_salts_differ(void **state)
{
    (void)state;
    natter_password_cost_t low = {8, 1};
    char a[NATTER_PWHASH_MAX], b[NATTER_PWHASH_MAX];
    assert_int_equal(natter_password_hash(&low, "same", 4, a), NATTER_OK);
    assert_int_equal(natter_password_hash(&low, "same", 4, b), NATTER_OK);
    assert_string_not_equal(a, b);
}

static void test_malformed_hash_never_verifies(void **state)
{
    (void)state;
    assert_int_equal(natter_password_verify("", "x", 1), 0);
    assert_int_equal(natter_password_verify("$argon2id$v=19$m=8,t=1,p=1$", "x", 1), 0);
    assert_int_equal(natter_password_verify("plain text", "plain text", 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_cost_round_trip),
        cmocka_unit_test(test_low_cost_is_recorded),
        cmocka_unit_test(test_salts_differ),
        cmocka_unit_test(test_malformed_hash_never_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
