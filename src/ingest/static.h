/*
 * The web client's files, served from the binary.
 *
 * Every file under web/ is turned into a C table at build time
 * (scripts/embed-web writes $(BUILD)/gen/web_assets.c), so natter needs
 * nothing beside its binary to serve them and never touches the filesystem
 * for a request: only a path that is exactly a name in the table exists,
 * so "../x" or "%2e%2e/x" can name nothing outside web/.
 */
#ifndef NATTER_STATIC_H
#define NATTER_STATIC_H

#include <stddef.h>

typedef struct natter_static_asset {
    const char *path;         /* relative to web/: "index.html", "app.js" */
    const char *content_type; /* with "; charset=utf-8" for text */
    const unsigned char *data;
    size_t len;
    const char *etag; /* strong, quoted: "\"<16 hex digits of the SHA-256 of data>\"" */
} natter_static_asset_t;

/* The generated table, sorted by path (strcmp order), paths unique. */
extern const natter_static_asset_t natter_static_assets[];
extern const size_t natter_static_count;

/* The asset named exactly [path, path+len), or NULL. */
const natter_static_asset_t *natter_static_find(const char *path, size_t len);

/* 1 when an If-None-Match value [value, value+len) matches etag: "*", or
 * any entity tag of its comma-separated list, compared weakly (a W/ prefix
 * is ignored, as RFC 9110 asks for If-None-Match); else 0. */
int natter_static_etag_match(const char *value, size_t len, const char *etag);

/* Cache-Control for an asset: every one revalidates on every load (a 304
 * by ETag), as names are not fingerprinted: a browser never runs an old
 * build's modules under a new page. Returns a static string. */
const char *natter_static_cache_control(const natter_static_asset_t *asset);

/* Largest Content-Security-Policy natter_static_csp() writes, with its NUL. */
#define NATTER_STATIC_CSP_MAX 512

/* Writes the Content-Security-Policy for a page reached at Host [host,
 * host+hlen) into dst (NATTER_STATIC_CSP_MAX bytes) and returns its length:
 * everything from 'self' only, and WebSockets to the same host (ws: and
 * wss:). A Host longer than 128 bytes or with anything but [A-Za-z0-9.:[]-]
 * in it (or none) is left out, so a request cannot write its own policy. */
size_t natter_static_csp(char *dst, const char *host, size_t hlen);

#endif
