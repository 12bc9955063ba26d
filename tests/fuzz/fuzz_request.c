/*
 * libFuzzer target for everything natter parses off the network before a
 * library does: the request line's method and path (router, query string),
 * the Authorization header (bearer token), UTF-8 validation of bodies,
 * decimal ids and a reaction's percent-encoded emoji (checked on its own
 * from the body's bytes too). Input layout: method \0 path \0 header \0 body.
 */
#include "core/emoji.h"
#include "core/token.h"
#include "core/util.h"
#include "ingest/router.h"

#include <stdint.h>
#include <string.h>

static const char *split(const char **p, const char *end, size_t *len)
{
    const char *s = *p, *z = memchr(s, '\0', (size_t)(end - s));
    const char *e = z ? z : end;
    *len = (size_t)(e - s);
    *p = z ? z + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t mlen, plen, hlen, blen, vlen, tlen;
    const char *method = split(&p, end, &mlen), *path = split(&p, end, &plen);
    const char *header = split(&p, end, &hlen), *body = split(&p, end, &blen), *val, *tok;
    natter_route_t route;
    uint64_t id;

    natter_route(method, mlen, path, plen, &route);
    if (route.action == NATTER_A_METHOD_NOT_ALLOWED && route.allow == NULL)
        __builtin_trap();
    if (route.query != NULL) {
        if (route.query < path || route.query + route.query_len > path + plen)
            __builtin_trap();
        natter_query_get(route.query, route.query_len, "after", &val, &vlen);
        if (natter_query_get(route.query, route.query_len, "limit", &val, &vlen))
            natter_parse_u64(val, vlen, &id);
    }
    if (route.emoji_ok && (route.emoji_len == 0 || route.emoji_len > NATTER_EMOJI_MAX_BYTES ||
                           route.emoji[route.emoji_len] != '\0' || !natter_emoji_valid(route.emoji, route.emoji_len)))
        __builtin_trap();
    char emoji[NATTER_EMOJI_MAX_BYTES + 1];
    size_t elen;
    if (natter_emoji_from_path(body, blen, emoji, &elen) == 0 &&
        (elen > NATTER_EMOJI_MAX_BYTES || emoji[elen] != '\0' || natter_utf8_count(emoji, elen) > NATTER_EMOJI_MAX_CHARS))
        __builtin_trap();
    if ((tlen = natter_token_from_bearer(header, hlen, &tok)) > 0) {
        if (tok < header || tok + tlen > header + hlen)
            __builtin_trap();
        natter_token_well_formed(tok, tlen);
    }
    if (natter_utf8_valid(body, blen) && natter_utf8_count(body, blen) > blen)
        __builtin_trap();
    natter_parse_u64(body, blen, &id);
    return 0;
}
