/*
 * jsonw — a JSON writer for the few answers natter writes per message (the
 * 202 of a post, the WebSocket push): straight into a growing buffer, no
 * tree, no printf. Everything else is built with jansson; on the hot path
 * jansson's pack-then-dump was the biggest user-space cost per message.
 *
 * The caller writes structure ({ } , :) itself with natter_jsonw_raw and
 * values with the typed calls; strings are escaped as RFC 8259 asks
 * (", \, and controls), UTF-8 passes through as is.
 */
#ifndef NATTER_JSONW_H
#define NATTER_JSONW_H

#include <stddef.h>
#include <stdint.h>

typedef struct natter_jsonw {
    char *p; /* NUL-terminated after every call; the caller frees it */
    size_t len, cap;
} natter_jsonw_t;

void natter_jsonw_raw(natter_jsonw_t *w, const char *s, size_t len);
/* "key": — key is trusted, written as is. */
void natter_jsonw_key(natter_jsonw_t *w, const char *key);
/* A string value, escaped. */
void natter_jsonw_string(natter_jsonw_t *w, const char *s, size_t len);
/* An id: a decimal string, as the API writes every id. */
void natter_jsonw_id(natter_jsonw_t *w, uint64_t id);
/* A timestamp: "2026-11-27T21:30:00.123Z". */
void natter_jsonw_time(natter_jsonw_t *w, int64_t ms);

#endif
