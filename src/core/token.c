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

/* 1 for the bytes of the base64url alphabet. */
static const uint8_t is_b64url[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['-'] = 1, ['_'] = 1,
};

int natter_token_well_formed(const char *token, size_t len)
{
    if (len != NATTER_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_b64url[(uint8_t)token[i]])
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
