/* Unit tests for src/core/util.c: UTF-8 validation and counting, parse_u64, time formatting, allocators. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/util.h"

#define VALID(lit) assert_int_equal(natter_utf8_valid((lit), sizeof(lit) - 1), 1)
#define INVALID(lit) assert_int_equal(natter_utf8_valid((lit), sizeof(lit) - 1), 0)

static void test_utf8_valid_accepts(void **state)
{
    (void)state;
    assert_int_equal(natter_utf8_valid("", 0), 1);
    VALID("hello, world");
    VALID("\x7F");                      /* DEL: last one-byte code point */
    VALID("\xC2\x80");                  /* U+0080: first two-byte */
    VALID("caf\xC3\xA9");               /* é */
    VALID("\xDF\xBF");                  /* U+07FF */
    VALID("\xE0\xA0\x80");              /* U+0800: first three-byte */
    VALID("\xE2\x82\xAC");              /* € */
    VALID("\xED\x9F\xBF");              /* U+D7FF: just below the surrogates */
    VALID("\xEE\x80\x80");              /* U+E000: just above them */
    VALID("\xEF\xBF\xBF");              /* U+FFFF */
    VALID("\xF0\x90\x80\x80");          /* U+10000: first four-byte */
    VALID("\xF0\x9D\x84\x9E");          /* 𝄞 */
    VALID("\xF4\x8F\xBF\xBF");          /* U+10FFFF: the last code point */
    VALID("a\0b");                      /* NUL is a valid code point when len says so */
    VALID("x\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9Ey");
}

static void test_utf8_valid_rejects_overlongs(void **state)
{
    (void)state;
    INVALID("\xC0\x80");                /* overlong NUL */
    INVALID("\xC0\xAF");                /* overlong '/' */
    INVALID("\xC1\xBF");                /* overlong U+007F */
    INVALID("\xE0\x80\x80");            /* overlong NUL, 3 bytes */
    INVALID("\xE0\x9F\xBF");            /* overlong U+07FF */
    INVALID("\xF0\x80\x80\x80");        /* overlong NUL, 4 bytes */
    INVALID("\xF0\x8F\xBF\xBF");        /* overlong U+FFFF */
}

static void test_utf8_valid_rejects_surrogates_and_range(void **state)
{
    (void)state;
    INVALID("\xED\xA0\x80");            /* U+D800 */
    INVALID("\xED\xAD\xBF");            /* U+DB7F */
    INVALID("\xED\xB0\x80");            /* U+DC00 */
    INVALID("\xED\xBF\xBF");            /* U+DFFF */
    INVALID("\xED\xA0\xBD\xED\xB2\xA9"); /* CESU-8 surrogate pair */
    INVALID("\xF4\x90\x80\x80");        /* U+110000 */
    INVALID("\xF5\x80\x80\x80");
    INVALID("\xF7\xBF\xBF\xBF");
    INVALID("\xF8\x88\x80\x80\x80");    /* five-byte form */
    INVALID("\xFC\x84\x80\x80\x80\x80"); /* six-byte form */
    INVALID("\xFE");
    INVALID("\xFF");
}

static void test_utf8_valid_rejects_bad_sequences(void **state)
{
    (void)state;
    INVALID("\x80");                    /* lone continuation */
    INVALID("a\xBFz");
    INVALID("\xC3\x41");                /* lead then ASCII */
    INVALID("\xE2\x82\x41");
    INVALID("\xF0\x9D\x84\x41");
    INVALID("\xC3\xC3\xA9");            /* lead then lead */
    INVALID("\xE2\x28\xA1");
}

static void test_utf8_valid_rejects_truncation(void **state)
{
    (void)state;
    INVALID("\xC3");
    INVALID("a\xC3");
    INVALID("\xE2\x82");
    INVALID("\xE2");
    INVALID("\xF0\x9D\x84");
    INVALID("\xF0\x9D");
    INVALID("\xF0");
    /* a valid string cut inside its last character by len */
    const char *s = "ab\xF0\x9D\x84\x9E";
    assert_int_equal(natter_utf8_valid(s, 6), 1);
    assert_int_equal(natter_utf8_valid(s, 5), 0);
    assert_int_equal(natter_utf8_valid(s, 4), 0);
    assert_int_equal(natter_utf8_valid(s, 3), 0);
    assert_int_equal(natter_utf8_valid(s, 2), 1);
}

static void test_utf8_count(void **state)
{
    (void)state;
    assert_int_equal(natter_utf8_count("", 0), 0);
    assert_int_equal(natter_utf8_count("abc", 3), 3);
    assert_int_equal(natter_utf8_count("caf\xC3\xA9", 5), 4);
    assert_int_equal(natter_utf8_count("\xE2\x82\xAC\xE2\x82\xAC", 6), 2);
    const char mix[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9D\x84\x9E";
    assert_int_equal(natter_utf8_count(mix, sizeof(mix) - 1), 4);
    assert_int_equal(natter_utf8_count("a\0b", 3), 3);
    /* 4000 four-byte characters: the message content limit */
    size_t n = 4000 * 4;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i += 4)
        memcpy(big + i, "\xF0\x9F\x98\x80", 4);
    assert_int_equal(natter_utf8_count(big, n), 4000);
    assert_int_equal(natter_utf8_valid(big, n), 1);
    free(big);
}

#define BLANK(lit) natter_utf8_blank((lit), sizeof(lit) - 1)

/* Blank is Unicode's white space (and U+FEFF), not only ASCII's. */
static void test_utf8_blank(void **state)
{
    (void)state;
    assert_true(BLANK(""));
    assert_true(BLANK(" \t\r\n\v\f"));
    assert_true(BLANK("\xc2\xa0\xe3\x80\x80"));             /* no-break space, ideographic space */
    assert_true(BLANK("\xe2\x80\x80\xe2\x80\x8a\xe2\x80\xa8\xe2\x80\xa9")); /* U+2000, 200A, 2028, 2029 */
    assert_true(BLANK("\xc2\x85\xe1\x9a\x80\xe2\x80\xaf\xe2\x81\x9f\xef\xbb\xbf")); /* 85, 1680, 202F, 205F, FEFF */
    assert_false(BLANK(" x "));
    assert_false(BLANK("\xc2\xa0\xc3\xa9"));                 /* é after a no-break space */
    assert_false(BLANK("\xe2\x80\x8b"));                      /* U+200B is not white space */
    assert_false(BLANK("\xf0\x9f\x91\x8d"));
    assert_int_equal(natter_unicode_space(0x3000), 1);
    assert_int_equal(natter_unicode_space(0x200B), 0);
    size_t i = 0;
    const unsigned char s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\x8d";
    assert_int_equal(natter_utf8_next(s, &i), 'a');
    assert_int_equal(natter_utf8_next(s, &i), 0xE9);
    assert_int_equal(natter_utf8_next(s, &i), 0x20AC);
    assert_int_equal(natter_utf8_next(s, &i), 0x1F44D);
    assert_int_equal(i, sizeof(s) - 1);
}

static void test_parse_u64_accepts(void **state)
{
    (void)state;
    uint64_t v = 77;
    assert_int_equal(natter_parse_u64("0", 1, &v), NATTER_OK);
    assert_int_equal(v, 0);
    assert_int_equal(natter_parse_u64("42", 2, &v), NATTER_OK);
    assert_int_equal(v, 42);
    assert_int_equal(natter_parse_u64("18446744073709551615", 20, &v), NATTER_OK);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(natter_parse_u64("18446744073709551610", 20, &v), NATTER_OK);
    assert_int_equal(v, UINT64_MAX - 5);
    assert_int_equal(natter_parse_u64("00000000000000000007", 20, &v), NATTER_OK);
    assert_int_equal(v, 7);
    /* only [s, s+len) is read */
    assert_int_equal(natter_parse_u64("123456", 3, &v), NATTER_OK);
    assert_int_equal(v, 123);
    assert_int_equal(natter_parse_u64("9/", 1, &v), NATTER_OK);
    assert_int_equal(v, 9);
}

static void test_parse_u64_rejects(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(natter_parse_u64("", 0, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("5", 0, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("18446744073709551616", 20, &v), NATTER_EINVAL); /* UINT64_MAX + 1 */
    assert_int_equal(natter_parse_u64("18446744073709551620", 20, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("19000000000000000000", 20, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("99999999999999999999", 20, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("100000000000000000000", 21, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("-1", 2, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("+1", 2, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64(" 1", 2, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("1 ", 2, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("12a", 3, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("0x10", 4, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("1\0", 2, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64("1.5", 3, &v), NATTER_EINVAL);
    assert_int_equal(natter_parse_u64(":", 1, &v), NATTER_EINVAL);  /* '9' + 1 */
    assert_int_equal(natter_parse_u64("/", 1, &v), NATTER_EINVAL);  /* '0' - 1 */
}

static void expect_time(int64_t ms, const char *want)
{
    char buf[NATTER_TIME_LEN + 8];
    memset(buf, '#', sizeof(buf));
    natter_format_time(buf, ms);
    assert_string_equal(buf, want);
    assert_int_equal(strlen(buf), NATTER_TIME_LEN - 1);
    for (size_t i = NATTER_TIME_LEN; i < sizeof(buf); i++)
        assert_int_equal(buf[i], '#'); /* nothing written past NATTER_TIME_LEN */
}

static void test_format_time(void **state)
{
    (void)state;
    expect_time(0, "1970-01-01T00:00:00.000Z");
    expect_time(1, "1970-01-01T00:00:00.001Z");
    expect_time(999, "1970-01-01T00:00:00.999Z");
    expect_time(1000, "1970-01-01T00:00:01.000Z");
    expect_time(1704067200000LL, "2024-01-01T00:00:00.000Z");
    expect_time(1795815000123LL, "2026-11-27T21:30:00.123Z");
    expect_time(951868799999LL, "2000-02-29T23:59:59.999Z");
    expect_time(253402300799999LL, "9999-12-31T23:59:59.999Z");
    expect_time(-1, "1969-12-31T23:59:59.999Z");
    expect_time(-86400000LL, "1969-12-31T00:00:00.000Z");
    expect_time(4107542400000LL, "2100-03-01T00:00:00.000Z"); /* 2100 is not a leap year */
    /* the last and first millisecond of every day from 1600 to 2500
     * (leap centuries and not), against glibc's gmtime_r */
    for (int64_t day = -135140; day < 193000; day++) {
        for (int64_t ms = day * 86400000LL - 1; ms <= day * 86400000LL; ms++) {
            time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
            struct tm tm;
            gmtime_r(&secs, &tm);
            char want[64], head[32], got[NATTER_TIME_LEN];
            strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(want, sizeof(want), "%s.%03dZ", head, (int)(ms - (int64_t)secs * 1000));
            natter_format_time(got, ms);
            assert_string_equal(got, want);
        }
    }
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t now = natter_now_ms();
    assert_true(now > 1704067200000LL);          /* after 2024 */
    assert_true(now < 4102444800000LL);          /* before 2100 */
    uint64_t a = natter_mono_ns(), b = natter_mono_ns();
    assert_true(b >= a);
}

static uint64_t timespec_ns(struct timespec ts)
{
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_mono_deadlines(void **state)
{
    (void)state;
    struct timespec ts = natter_mono_timespec(3999999999u);
    assert_int_equal(ts.tv_sec, 3);
    assert_int_equal(ts.tv_nsec, 999999999);
    ts = natter_mono_timespec(4000000000u);
    assert_int_equal(ts.tv_sec, 4);
    assert_int_equal(ts.tv_nsec, 0);

    int ms[] = {0, 1, 999, 1500, 86400000, -5};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        uint64_t add = ms[i] > 0 ? (uint64_t)ms[i] * 1000000u : 0;
        uint64_t before = natter_mono_ns();
        natter_mono_deadline(&ts, ms[i]);
        uint64_t after = natter_mono_ns();
        assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000);
        assert_true(timespec_ns(ts) >= before + add);
        assert_true(timespec_ns(ts) <= after + add);
    }
}

static void test_alloc_helpers(void **state)
{
    (void)state;
    void *p = xmalloc(0);
    assert_non_null(p);
    free(p);
    unsigned char *z = xcalloc(16, 4);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    z = xrealloc(z, 128);
    assert_int_equal(z[63], 0);
    free(z);
    char *s = xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = xstrdup("natter");
    assert_string_equal(s, "natter");
    free(s);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(natter_strerror(NATTER_OK), "ok");
    assert_string_equal(natter_strerror(NATTER_EINVAL), "invalid argument");
    assert_string_equal(natter_strerror(NATTER_ENOTFOUND), "not found");
    assert_string_equal(natter_strerror(NATTER_ECONFLICT), "conflict");
    assert_string_equal(natter_strerror(NATTER_EUNAVAIL), "unavailable");
    assert_string_equal(natter_strerror(NATTER_EIO), "i/o error");
    assert_string_equal(natter_strerror(NATTER_ETIMEDOUT), "timed out");
    assert_string_equal(natter_strerror(-99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_accepts),
        cmocka_unit_test(test_utf8_valid_rejects_overlongs),
        cmocka_unit_test(test_utf8_valid_rejects_surrogates_and_range),
        cmocka_unit_test(test_utf8_valid_rejects_bad_sequences),
        cmocka_unit_test(test_utf8_valid_rejects_truncation),
        cmocka_unit_test(test_utf8_count),
        cmocka_unit_test(test_utf8_blank),
        cmocka_unit_test(test_parse_u64_accepts),
        cmocka_unit_test(test_parse_u64_rejects),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_mono_deadlines),
        cmocka_unit_test(test_alloc_helpers),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
