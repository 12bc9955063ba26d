/*
 * jsonr — a reader for the one JSON shape every message post has: a flat
 * object whose values are strings (or true, false, null). It reads it in
 * one pass without building a tree, which is where jansson's json_loadb
 * spent most of a post's parsing.
 *
 * It is a fast path, not a second JSON parser: it accepts only what jansson
 * (JSON_REJECT_DUPLICATES, no NUL in strings) accepts, and extracts the same
 * values (tests/fuzz/fuzz_jsonr.c checks both against jansson). Whatever it
 * is not sure of — nesting, numbers, many keys, anything malformed — it
 * hands back (NATTER_JSONR_FALLBACK), and the caller parses with jansson,
 * which also words the error for a body that is not JSON.
 *
 * The input must be valid UTF-8 (natter_utf8_valid), as the API checks it
 * first.
 */
#ifndef NATTER_JSONR_H
#define NATTER_JSONR_H

#include <stddef.h>

#define NATTER_JSONR_KEYS_MAX 16 /* more keys than this: fall back */

typedef enum {
    NATTER_JSONR_OK,
    NATTER_JSONR_FALLBACK,
} natter_jsonr_result_t;

typedef enum {
    NATTER_JSONR_ABSENT,
    NATTER_JSONR_STRING,
    NATTER_JSONR_OTHER, /* true, false or null */
} natter_jsonr_kind_t;

/* A key the caller wants: set key; the reader sets the rest. */
typedef struct natter_jsonr_field {
    const char *key;
    natter_jsonr_kind_t kind;
    const char *value; /* STRING: the decoded text (into the body, or the scratch buffer) */
    size_t len;
} natter_jsonr_field_t;

/* Reads [body, body+len) as a flat object, filling fields. Decoded strings
 * with escapes are written into scratch, which must hold len bytes (a string
 * never decodes longer than its JSON form). */
natter_jsonr_result_t natter_jsonr_flat(const char *body, size_t len, natter_jsonr_field_t *fields, size_t nfields,
                                        char *scratch);

#endif
