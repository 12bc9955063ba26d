/* Session tokens: 256 random bits as 43 chars of base64url; stored only as their SHA-256. */
#ifndef NATTER_TOKEN_H
#define NATTER_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define NATTER_TOKEN_LEN 43       /* base64url of 32 bytes, no padding */
#define NATTER_TOKEN_HASH_LEN 32

/* Fills dst (NATTER_TOKEN_LEN + 1 bytes, NUL-terminated) with a fresh token
 * from the OS's CSPRNG. Returns 0, or NATTER_EIO when no randomness. */
int natter_token_new(char dst[NATTER_TOKEN_LEN + 1]);
/* SHA-256 of the token text: what the store keeps. */
void natter_token_hash(const char *token, size_t len, uint8_t out[NATTER_TOKEN_HASH_LEN]);
/* 1 if the text has a token's shape (length and alphabet). Cheap check before hashing. */
int natter_token_well_formed(const char *token, size_t len);

/* Extracts the token from an "Authorization: Bearer <token>" value; returns
 * its length and points *tok at it, or 0 when the value is not a bearer token. */
size_t natter_token_from_bearer(const char *value, size_t len, const char **tok);

#endif
