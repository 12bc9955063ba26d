#include "core/token.h"
#include "core/error.h"

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int natter_token_new(char dst[NATTER_TOKEN_LEN + 1])
{
    uint8_t raw[32];
    size_t o = 0;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return NATTER_EIO;
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16;
        size_t left = sizeof(raw) - i;
        if (left > 1)
            v |= (uint32_t)raw[i + 1] << 8;
        if (left > 2)
            v |= raw[i + 2];
        dst[o++] = b64url[(v >> 18) & 63];
        dst[o++] = b64url[(v >> 12) & 63];
        if (left > 1)
            dst[o++] = b64url[(v >> 6) & 63];
        if (left > 2)
            dst[o++] = b64url[v & 63];
    }
    dst[o] = '\0';
    return o == NATTER_TOKEN_LEN ? NATTER_OK : NATTER_EIO;
}

void natter_token_hash(const char *token, size_t len, uint8_t out[NATTER_TOKEN_HASH_LEN])
{
    SHA256((const unsigned char *)token, len, out);
}

int natter_token_well_formed(const char *token, size_t len)
{
    if (len != NATTER_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (memchr(b64url, token[i], sizeof(b64url) - 1) == NULL)
            return 0;
    return 1;
}

size_t natter_token_from_bearer(const char *value, size_t len, const char **tok)
{
    static const char prefix[] = "Bearer ";
    size_t plen = sizeof(prefix) - 1;
    if (len <= plen || strncasecmp(value, prefix, plen) != 0)
        return 0;
    value += plen;
    len -= plen;
    while (len > 0 && value[0] == ' ')
        value++, len--;
    while (len > 0 && value[len - 1] == ' ')
        len--;
    *tok = value;
    return len;
}
