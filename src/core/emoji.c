#include "core/emoji.h"
#include "core/util.h"

#include <stdint.h>

static int is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

/* Invisible format characters (zero-width space and non-joiner, word
 * joiners, direction marks, embeddings, overrides and isolates, the
 * interlinear annotations) and noncharacters: nothing to see, or text that
 * shows in another order than it is stored. */
static int is_invisible(uint32_t c)
{
    return c == 0x061C || c == 0x180E || c == 0x200B || c == 0x200C || c == 0x200E || c == 0x200F ||
           (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F) || (c >= 0xFFF9 && c <= 0xFFFB) ||
           (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE;
}

/* Combining marks: they change the code point before them, so none may
 * come first. */
static int is_combining(uint32_t c)
{
    return (c >= 0x0300 && c <= 0x036F) || (c >= 0x1AB0 && c <= 0x1AFF) || (c >= 0x1DC0 && c <= 0x1DFF) ||
           (c >= 0x20D0 && c <= 0x20FF) || (c >= 0xFE20 && c <= 0xFE2F);
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
