/* Unit tests for load/load_stages.c: the R:D,… parser and durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_stages.h"

static void test_issue_example(void **state)
{
    (void)state;
    load_stages_t st;
    char err[128];
    assert_int_equal(load_stages_parse("1000:30s,1000:30s,10000:30s,10000:30s,0:10s", &st, err, sizeof(err)), 0);
    assert_int_equal(st.n, 5);
    assert_true(st.s[0].rate == 1000 && st.s[2].rate == 10000 && st.s[4].rate == 0);
    assert_int_equal(st.s[0].dur_ns, 30000000000ull);
    assert_int_equal(st.s[4].dur_ns, 10000000000ull);
    assert_int_equal(load_stages_total_ns(&st), 130000000000ull);
}

static void test_units(void **state)
{
    (void)state;
    uint64_t ns;
    assert_int_equal(load_stages_parse_duration("500ms", 5, &ns), 0);
    assert_int_equal(ns, 500000000ull);
    assert_int_equal(load_stages_parse_duration("2m", 2, &ns), 0);
    assert_int_equal(ns, 120000000000ull);
    assert_int_equal(load_stages_parse_duration("1h", 2, &ns), 0);
    assert_int_equal(ns, 3600000000000ull);
    assert_int_equal(load_stages_parse_duration("1.5s", 4, &ns), 0);
    assert_int_equal(ns, 1500000000ull);
    assert_int_equal(load_stages_parse_duration("3", 1, &ns), 0);
    assert_int_equal(ns, 3000000000ull);
    assert_int_equal(load_stages_parse_duration("0.1ms", 5, &ns), 0);
    assert_int_equal(ns, 100000ull);
}

static void test_fractional_rate(void **state)
{
    (void)state;
    load_stages_t st;
    char err[128];
    assert_int_equal(load_stages_parse("2.5:4s", &st, err, sizeof(err)), 0);
    assert_true(st.s[0].rate == 2.5);
}

static void test_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"", "1000", "1000:", ":30s", "1000:30x", "-5:1s", "1000:30s,", "abc:1s", "10:0s",
                         "1000:30s,,5:1s", "1e3:1s", "10:1 s"};
    load_stages_t st;
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(load_stages_parse(bad[i], &st, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_fractional_rate),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
