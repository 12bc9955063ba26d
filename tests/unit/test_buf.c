/* Unit tests for src/core/buf.c: a growable run of bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/buf.h"

static void test_append_grows_and_keeps(void **state)
{
    (void)state;
    natter_buf_t b = {0};
    natter_buf_append(&b, "", 0);
    assert_int_equal(b.len, 0);
    for (int i = 0; i < 1000; i++)
        natter_buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3000);
    assert_true(b.cap >= b.len);
    for (int i = 0; i < 1000; i++)
        assert_memory_equal(b.p + 3 * i, "abc", 3);
    natter_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    natter_buf_append(&b, "again", 5); /* usable after free */
    assert_memory_equal(b.p, "again", 5);
    natter_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows_and_keeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
