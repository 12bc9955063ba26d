#include "core/jsonw.h"
#include "core/id.h"
#include "core/util.h"

#include <string.h>

static char *reserve(natter_jsonw_t *w, size_t n)
{
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        while (cap < w->len + n + 1)
            cap *= 2;
        w->p = xrealloc(w->p, cap);
        w->cap = cap;
    }
    return w->p + w->len;
}

void natter_jsonw_raw(natter_jsonw_t *w, const char *s, size_t len)
{
    memcpy(reserve(w, len), s, len);
    w->len += len;
    w->p[w->len] = '\0';
}

void natter_jsonw_key(natter_jsonw_t *w, const char *key)
{
    size_t n = strlen(key);
    char *d = reserve(w, n + 3);
    d[0] = '"';
    memcpy(d + 1, key, n);
    d[n + 1] = '"';
    d[n + 2] = ':';
    w->len += n + 3;
    w->p[w->len] = '\0';
}

void natter_jsonw_string(natter_jsonw_t *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *d = reserve(w, 6 * len + 2); /* worst case: every byte as \u00XX */
    size_t k = 0;
    d[k++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            d[k++] = (char)c;
            continue;
        }
        d[k++] = '\\';
        switch (c) {
        case '"': d[k++] = '"'; break;
        case '\\': d[k++] = '\\'; break;
        case '\n': d[k++] = 'n'; break;
        case '\r': d[k++] = 'r'; break;
        case '\t': d[k++] = 't'; break;
        case '\b': d[k++] = 'b'; break;
        case '\f': d[k++] = 'f'; break;
        default:
            memcpy(d + k, "u00", 3);
            d[k + 3] = hex[c >> 4];
            d[k + 4] = hex[c & 15];
            k += 5;
        }
    }
    d[k++] = '"';
    w->len += k;
    w->p[w->len] = '\0';
}

void natter_jsonw_id(natter_jsonw_t *w, uint64_t id)
{
    char s[NATTER_ID_STR_MAX + 2];
    s[0] = '"';
    int n = natter_id_format(s + 1, id);
    s[n + 1] = '"';
    natter_jsonw_raw(w, s, (size_t)n + 2);
}

void natter_jsonw_time(natter_jsonw_t *w, int64_t ms)
{
    char s[NATTER_TIME_LEN + 1];
    s[0] = '"';
    natter_format_time(s + 1, ms);
    s[NATTER_TIME_LEN] = '"';
    natter_jsonw_raw(w, s, NATTER_TIME_LEN + 1);
}
