/* Unit tests for src/core/emoji.c: what a reaction's emoji may be, and its
 * percent-decoding from the path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/emoji.h"

static int valid(const char *s)
{
    return natter_emoji_valid(s, strlen(s));
}

static void test_valid(void **state)
{
    (void)state;
    assert_true(valid("\xf0\x9f\x91\x8d"));                       /* 👍 */
    assert_true(valid("\xe2\x9d\xa4\xef\xb8\x8f"));               /* ❤️ */
    assert_true(valid("1\xef\xb8\x8f\xe2\x83\xa3"));             /* 1️⃣ keycap */
    assert_true(valid("#\xe2\x83\xa3"));                          /* #⃣ */
    assert_true(valid("\xf0\x9f\x87\xab\xf0\x9f\x87\xb7"));       /* 🇫🇷 */
    assert_true(valid("\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd"));       /* 👍🏽 */
    /* 👩‍👩‍👧: 5 code points */
    assert_true(valid("\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"));
    assert_true(valid("\xc2\xa9"));                               /* © */
    /* 🏴 with its tags (Cf, but the glue of a subdivision flag): 7 code points */
    assert_true(valid("\xf0\x9f\x8f\xb4\xf3\xa0\x81\xa7\xf3\xa0\x81\xa2\xf3\xa0\x81\xb3\xf3\xa0\x81\xa3"
                      "\xf3\xa0\x81\xb4\xf3\xa0\x81\xbf"));
    /* eight code points is the most */
    assert_true(valid("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
                      "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"));
}

static void test_invalid(void **state)
{
    (void)state;
    assert_false(valid(""));
    assert_false(valid("a"));
    assert_false(valid("+1"));
    assert_false(valid(":)"));
    assert_false(valid("1"));                                     /* a keycap base alone shows nothing */
    assert_false(valid("\xef\xb8\x8f"));                          /* a lone variation selector */
    assert_false(valid("\xe2\x80\x8d"));                          /* a lone joiner */
    assert_false(valid("\xf0\x9f\x91\x8d "));                     /* white space */
    assert_false(valid("\xf0\x9f\x91\x8d\xc2\xa0"));              /* no-break space */
    assert_false(valid("\xf0\x9f\x91\x8d\n"));                    /* a control */
    assert_false(valid("\xf0\x9f\x91\x8d\xc2\x85"));              /* C1 control NEL */
    assert_false(valid("\xf0\x9f\x91\x8dx"));                     /* ASCII beyond the keycap bases */
    assert_false(valid("\xff"));                                  /* not UTF-8 */
    assert_false(valid("\xed\xa0\x80"));                          /* a surrogate */
    assert_false(valid("\xc0\xbf"));                              /* overlong */
    /* nine code points is too many */
    assert_false(valid("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
                       "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xc2\xa9"));
    assert_false(natter_emoji_valid("\xf0\x9f\x91\x8d\0", 5));   /* NUL */
    /* invisible: alone they show nothing, beside an emoji they hide or reorder text */
    assert_false(valid("\xe2\x80\x8b"));                          /* U+200B zero-width space */
    assert_false(valid("\xef\xbb\xbf"));                          /* U+FEFF */
    assert_false(valid("\xe2\x80\xae"));                          /* U+202E right-to-left override */
    assert_false(valid("\xf0\x9f\x91\x8d\xe2\x80\xae"));          /* 👍 and an override */
    assert_false(valid("\xf0\x9f\x91\x8d\xe2\x80\x8f"));          /* 👍 and a right-to-left mark */
    assert_false(valid("\xe2\x81\xa0\xf0\x9f\x91\x8d"));          /* a word joiner, then 👍 */
    assert_false(valid("\xef\xbf\xbf"));                          /* noncharacter U+FFFF */
    assert_false(valid("\xef\xb7\x90"));                          /* noncharacter U+FDD0 */
    assert_false(valid("\xf0\x9f\xbf\xbe"));                      /* noncharacter U+1FFFE */
    assert_false(valid("\xcc\x81"));                               /* a lone combining acute accent */
    assert_false(valid("\xcc\x81\xf0\x9f\x91\x8d"));               /* a combining mark first */
    /* every format character (Cf), not only the well-known ones */
    assert_false(valid("\xc2\xad"));                               /* U+00AD soft hyphen */
    assert_false(valid("\xf3\xa0\x80\x81"));                       /* U+E0001 language tag */
    assert_false(valid("\xf0\x9d\x85\xb3"));                       /* U+1D173 musical format */
    assert_false(valid("\xf0\x9b\xb2\xa0"));                       /* U+1BCA0 shorthand format */
    assert_false(valid("\xe2\x81\xa4\xf0\x9f\x91\x8d"));           /* U+2064 invisible plus, then 👍 */
    /* shown as blank */
    assert_false(valid("\xe3\x85\xa4"));                           /* U+3164 Hangul filler */
    assert_false(valid("\xe1\x85\x9f"));                           /* U+115F Hangul choseong filler */
    assert_false(valid("\xef\xbe\xa0"));                           /* U+FFA0 halfwidth Hangul filler */
    assert_false(valid("\xe2\xa0\x80"));                           /* U+2800 blank braille pattern */
    /* any combining mark first: spacing and enclosing, in other scripts */
    assert_false(valid("\xd2\x83"));                               /* U+0483 Cyrillic titlo */
    assert_false(valid("\xe0\xb8\xb1"));                           /* U+0E31 Thai mai han-akat */
    assert_false(valid("\xd6\xb0"));                               /* U+05B0 Hebrew sheva */
    assert_false(valid("\xe0\xa4\xbc"));                           /* U+093C Devanagari nukta */
    assert_false(valid("\xe0\xa4\xbe"));                           /* U+093E Devanagari sign aa (Mc) */
    assert_false(valid("\xe2\x83\xa3"));                           /* U+20E3 keycap (Me) alone */
}

static int from_path(const char *seg, char *out, size_t *len)
{
    return natter_emoji_from_path(seg, strlen(seg), out, len);
}

static void test_from_path(void **state)
{
    (void)state;
    char out[NATTER_EMOJI_MAX_BYTES + 1];
    size_t len;
    assert_int_equal(from_path("%F0%9F%91%8D", out, &len), 0);
    assert_int_equal(len, 4);
    assert_string_equal(out, "\xf0\x9f\x91\x8d");
    assert_int_equal(from_path("%f0%9f%91%8d", out, &len), 0); /* either case of hex */
    assert_int_equal(from_path("\xf0\x9f\x91\x8d", out, &len), 0); /* raw UTF-8 bytes, unescaped */
    assert_int_equal(from_path("1%EF%B8%8F%E2%83%A3", out, &len), 0);
    assert_string_equal(out, "1\xef\xb8\x8f\xe2\x83\xa3");
    assert_int_equal(from_path("%E2%9D%A4%EF%B8%8F", out, &len), 0);

    assert_int_equal(from_path("", out, &len), -1);
    assert_int_equal(from_path("%F0%9F%91", out, &len), -1);     /* a cut sequence */
    assert_int_equal(from_path("%F0%9F%91%8", out, &len), -1);   /* a cut escape */
    assert_int_equal(from_path("%F0%9F%91%", out, &len), -1);
    assert_int_equal(from_path("%G0", out, &len), -1);
    assert_int_equal(from_path("%00", out, &len), -1);
    assert_int_equal(from_path("%20", out, &len), -1);
    assert_int_equal(from_path("%F0%9F%91%8D+", out, &len), -1);  /* '+' is itself, not a space, and not allowed */
    assert_int_equal(from_path("abc", out, &len), -1);
    /* decoding more than 32 bytes stops, never writes past out */
    char big[200] = "";
    for (int i = 0; i < 12; i++)
        strcat(big, "%F0%9F%98%80");
    assert_int_equal(from_path(big, out, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_from_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
