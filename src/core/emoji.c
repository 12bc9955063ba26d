#include "core/emoji.h"
#include "core/util.h"

#include <stdint.h>

/* The code point starting at s[*i] of valid UTF-8; advances *i. */
static uint32_t next_cp(const unsigned char *s, size_t *i)
{
    uint32_t c = s[*i];
    size_t more = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (more > 0)
        c &= 0x3F >> more;
    for ((*i)++; more > 0; more--, (*i)++)
        c = (c << 6) | (s[*i] & 0x3F);
    return c;
}

static int is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_control(uint32_t c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F);
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
        uint32_t c = next_cp(s, &i);
        if (++n > NATTER_EMOJI_MAX_CHARS || is_control(c) || is_space(c))
            return 0;
        if (c < 0x80 && !((c >= '0' && c <= '9') || c == '#' || c == '*'))
            return 0;
        if ((c >= 0x80 && !is_glue(c)) || c == 0x20E3)
            shows = 1;
    }
    return shows;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int natter_emoji_from_path(const char *seg, size_t len, char *out, size_t *outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)seg[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex(seg[i + 1]) : -1, lo = hi >= 0 ? hex(seg[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (n == NATTER_EMOJI_MAX_BYTES)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    *outlen = n;
    return natter_emoji_valid(out, n) ? 0 : -1;
}
