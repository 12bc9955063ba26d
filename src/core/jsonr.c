#include "core/jsonr.h"

#include <string.h>

typedef struct {
    const char *p, *end;
    char *scratch;
} reader_t;

/* A key as it appears in the body, before decoding: two keys are the same
 * key only if they decode alike, so keys with escapes fall back (they are
 * rare and could alias). */
typedef struct {
    const char *s;
    size_t len;
} raw_key_t;

static void skip_ws(reader_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One escape after the backslash at r->p; appends its text at *d. */
static int unescape(reader_t *r, char **d)
{
    unsigned cp, lo;
    char c = *r->p++;
    switch (c) {
    case '"': case '\\': case '/': *(*d)++ = c; return 0;
    case 'b': *(*d)++ = '\b'; return 0;
    case 'f': *(*d)++ = '\f'; return 0;
    case 'n': *(*d)++ = '\n'; return 0;
    case 'r': *(*d)++ = '\r'; return 0;
    case 't': *(*d)++ = '\t'; return 0;
    case 'u': break;
    default: return -1;
    }
    if (r->end - r->p < 4 || hex4(r->p, &cp) != 0 || cp == 0)
        return -1; /* U+0000 is refused, as jansson does without JSON_ALLOW_NUL */
    r->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return -1; /* a low surrogate alone */
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4(r->p + 2, &lo) != 0 || lo < 0xDC00 ||
            lo > 0xDFFF)
            return -1;
        r->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    *d += put_utf8(*d, cp);
    return 0;
}

/* A string at r->p (on its opening quote). Without escapes it points into
 * the body; with them it is decoded into the scratch buffer. raw: the span
 * between the quotes, as written. */
static int string(reader_t *r, const char **out, size_t *len, raw_key_t *raw)
{
    const char *start = ++r->p;
    while (r->p < r->end && *r->p != '"' && *r->p != '\\') {
        if ((unsigned char)*r->p < 0x20)
            return -1;
        r->p++;
    }
    if (r->p >= r->end)
        return -1;
    if (*r->p == '"') {
        *out = start;
        *len = (size_t)(r->p - start);
        raw->s = start;
        raw->len = *len;
        r->p++;
        return 0;
    }
    /* escapes: decode the whole string into the scratch buffer */
    char *d = r->scratch, *begin = r->scratch;
    memcpy(d, start, (size_t)(r->p - start));
    d += r->p - start;
    while (r->p < r->end && *r->p != '"') {
        if ((unsigned char)*r->p < 0x20)
            return -1;
        if (*r->p == '\\') {
            r->p++;
            if (r->p >= r->end || unescape(r, &d) != 0)
                return -1;
        } else {
            *d++ = *r->p++;
        }
    }
    if (r->p >= r->end)
        return -1;
    raw->s = NULL; /* has escapes */
    raw->len = 0;
    r->p++;
    r->scratch = d;
    *out = begin;
    *len = (size_t)(d - begin);
    return 0;
}

static int literal(reader_t *r, const char *word, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return -1;
    r->p += n;
    return 0;
}

natter_jsonr_result_t natter_jsonr_flat(const char *body, size_t len, natter_jsonr_field_t *fields, size_t nfields,
                                        char *scratch)
{
    reader_t r = {body, body + len, scratch};
    raw_key_t keys[NATTER_JSONR_KEYS_MAX];
    size_t nkeys = 0;
    for (size_t i = 0; i < nfields; i++)
        fields[i].kind = NATTER_JSONR_ABSENT;
    skip_ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return NATTER_JSONR_FALLBACK;
    r.p++;
    skip_ws(&r);
    if (r.p < r.end && *r.p == '}') {
        r.p++;
    } else {
        for (;;) {
            const char *key, *val;
            size_t klen, vlen;
            raw_key_t raw, vraw;
            skip_ws(&r);
            if (r.p >= r.end || *r.p != '"' || string(&r, &key, &klen, &raw) != 0 || raw.s == NULL ||
                nkeys == NATTER_JSONR_KEYS_MAX)
                return NATTER_JSONR_FALLBACK;
            for (size_t k = 0; k < nkeys; k++)
                if (keys[k].len == raw.len && memcmp(keys[k].s, raw.s, raw.len) == 0)
                    return NATTER_JSONR_FALLBACK; /* a duplicate: jansson words the error */
            keys[nkeys++] = raw;
            skip_ws(&r);
            if (r.p >= r.end || *r.p++ != ':')
                return NATTER_JSONR_FALLBACK;
            skip_ws(&r);
            if (r.p >= r.end)
                return NATTER_JSONR_FALLBACK;
            natter_jsonr_kind_t kind = NATTER_JSONR_OTHER;
            if (*r.p == '"') {
                if (string(&r, &val, &vlen, &vraw) != 0)
                    return NATTER_JSONR_FALLBACK;
                kind = NATTER_JSONR_STRING;
            } else if (literal(&r, "true", 4) != 0 && literal(&r, "false", 5) != 0 && literal(&r, "null", 4) != 0) {
                return NATTER_JSONR_FALLBACK; /* a number, an array, an object, or not JSON */
            }
            for (size_t i = 0; i < nfields; i++) {
                if (strlen(fields[i].key) == klen && memcmp(fields[i].key, key, klen) == 0) {
                    fields[i].kind = kind;
                    fields[i].value = kind == NATTER_JSONR_STRING ? val : NULL;
                    fields[i].len = kind == NATTER_JSONR_STRING ? vlen : 0;
                }
            }
            skip_ws(&r);
            if (r.p >= r.end)
                return NATTER_JSONR_FALLBACK;
            if (*r.p == '}') {
                r.p++;
                break;
            }
            if (*r.p++ != ',')
                return NATTER_JSONR_FALLBACK;
        }
    }
    skip_ws(&r);
    return r.p == r.end ? NATTER_JSONR_OK : NATTER_JSONR_FALLBACK;
}
