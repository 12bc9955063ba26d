#include "ingest/static.h"

#include <stdio.h>
#include <string.h>

#define CSP_HOST_MAX 128

/* The table is sorted by path: compare the (unterminated) name asked for
 * with a table path as strcmp would compare two C strings. */
static int compare(const char *path, size_t len, const char *entry)
{
    int c = strncmp(path, entry, len);
    if (c != 0)
        return c;
    return entry[len] == '\0' ? 0 : -1;
}

const natter_static_asset_t *natter_static_find(const char *path, size_t len)
{
    size_t lo = 0, hi = natter_static_count;
    if (memchr(path, '\0', len) != NULL)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = compare(path, len, natter_static_assets[mid].path);
        if (c == 0)
            return &natter_static_assets[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int space(char c)
{
    return c == ' ' || c == '\t';
}

int natter_static_etag_match(const char *value, size_t len, const char *etag)
{
    size_t elen = strlen(etag), i = 0;
    while (i < len) {
        size_t b = i, e;
        while (i < len && value[i] != ',')
            i++;
        e = i++; /* the entity tag is [b, e), trimmed below; i is past the comma */
        while (b < e && space(value[b]))
            b++;
        while (e > b && space(value[e - 1]))
            e--;
        if (e - b == 1 && value[b] == '*')
            return 1;
        if (e - b >= 2 && value[b] == 'W' && value[b + 1] == '/')
            b += 2;
        if (e - b == elen && memcmp(value + b, etag, elen) == 0)
            return 1;
    }
    return 0;
}

const char *natter_static_cache_control(const natter_static_asset_t *asset)
{
    (void)asset;
    return "no-cache";
}

static int host_safe(const char *host, size_t hlen)
{
    if (hlen == 0 || hlen > CSP_HOST_MAX)
        return 0;
    for (size_t i = 0; i < hlen; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

size_t natter_static_csp(char *dst, const char *host, size_t hlen)
{
    static const char head[] = "default-src 'self'; connect-src 'self'";
    static const char tail[] = "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    int n;
    if (host_safe(host, hlen))
        n = snprintf(dst, NATTER_STATIC_CSP_MAX, "%s ws://%.*s wss://%.*s%s", head, (int)hlen, host, (int)hlen, host,
                     tail);
    else
        n = snprintf(dst, NATTER_STATIC_CSP_MAX, "%s%s", head, tail);
    return (size_t)n;
}
