#include "core/emoji.h"
#include "core/unicode_marks.h"
#include "core/util.h"

#include <stdint.h>

static int is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

/* Invisible: the format characters (Unicode's general category Cf, 14.0:
 * soft hyphen, zero-width space and non-joiner, direction marks,
 * embeddings, overrides and isolates, word joiners and invisible
 * operators, the byte order mark, interlinear annotations, prepended
 * number signs, shorthand and musical format controls, the language tag)
 * but the joiner and the tags that build emoji sequences (is_glue); the
 * letters and symbols that show as blank (the Hangul fillers, the blank
 * braille pattern); and noncharacters. Nothing to see, or text that shows
 * in another order than it is stored. */
static int is_invisible(uint32_t c)
{
    static const uint32_t format[][2] = {
        {0x00AD, 0x00AD}, {0x0600, 0x0605}, {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F},
        {0x0890, 0x0891}, {0x08E2, 0x08E2}, {0x180E, 0x180E}, {0x200B, 0x200C}, {0x200E, 0x200F},
        {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB},
        {0x110BD, 0x110BD}, {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
        {0xE0001, 0xE0001},
    };
    for (size_t i = 0; i < sizeof(format) / sizeof(format[0]); i++)
        if (c >= format[i][0] && c <= format[i][1])
            return 1;
    return c == 0x115F || c == 0x1160 || c == 0x3164 || c == 0xFFA0 || c == 0x2800 || (c >= 0xFDD0 && c <= 0xFDEF) ||
           (c & 0xFFFE) == 0xFFFE;
}

/* Combining marks (Mn, Mc, Me; unicode_marks.h): they change the code
 * point before them, so none may come first. */
static int is_combining(uint32_t c)
{
    size_t lo = 0, hi = sizeof(natter_unicode_marks) / sizeof(natter_unicode_marks[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < natter_unicode_marks[mid][0])
            hi = mid;
        else if (c > natter_unicode_marks[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Joiners and selectors: parts of a sequence that show nothing alone. */
static int is_glue(uint32_t c)
{
    return c == 0x200D || (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xE0020 && c <= 0xE007F);
}

int natter_emoji_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = 0, i = 0;
    int shows = 0;
    if (len == 0 || len > NATTER_EMOJI_MAX_BYTES || !natter_utf8_valid(str, len))
        return 0;
    while (i < len) {
        uint32_t c = natter_utf8_next(s, &i);
        if (++n > NATTER_EMOJI_MAX_CHARS || is_control(c) || natter_unicode_space(c) || is_invisible(c) ||
            (n == 1 && is_combining(c)))
            return 0;
        if (c < 0x80 && !((c >= '0' && c <= '9') || c == '#' || c == '*'))
            return 0;
        if ((c >= 0x80 && !is_glue(c)) || c == 0x20E3)
            shows = 1;
    }
    return shows;
}

int natter_emoji_from_path(const char *seg, size_t len, char *out, size_t *outlen)
{
    long n = natter_percent_decode(seg, len, out, NATTER_EMOJI_MAX_BYTES);
    if (n < 0)
        return -1;
    out[n] = '\0';
    *outlen = (size_t)n;
    return natter_emoji_valid(out, (size_t)n) ? 0 : -1;
}
