/*
 * The HTTP router: method + path -> an action with its path parameters.
 * Pure and allocation-free, so it is unit-tested and fuzzed on its own.
 */
#ifndef NATTER_ROUTER_H
#define NATTER_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/emoji.h"
#include "core/metrics.h"

typedef enum {
    NATTER_A_NOT_FOUND = 0,
    NATTER_A_METHOD_NOT_ALLOWED,
    NATTER_A_USER_CREATE,
    NATTER_A_SESSION_CREATE,
    NATTER_A_SESSION_DELETE,
    NATTER_A_ME,
    NATTER_A_CHATS_LIST,
    NATTER_A_CHAT_CREATE,
    NATTER_A_CHAT_GET,
    NATTER_A_MEMBER_ADD,
    NATTER_A_MEMBER_REMOVE,
    NATTER_A_MESSAGES_LIST,
    NATTER_A_MESSAGE_POST,
    NATTER_A_READ,
    NATTER_A_WS,
    NATTER_A_METRICS,
    NATTER_A_HEALTHZ,
    NATTER_A_READYZ,
    NATTER_A_PAGE,   /* a page of the web client ("/", "/dashboard"): route.asset is its file */
    NATTER_A_STATIC, /* a file of the web client: route.asset */
    NATTER_A_WS_SEND, /* not an HTTP route: a "send" frame on a WebSocket */
    NATTER_A_WS_TICKET,
    NATTER_A_MESSAGE_EDIT,
    NATTER_A_MESSAGE_DELETE,
    NATTER_A_REACTION_ADD,    /* route.emoji: the decoded emoji, when route.emoji_ok */
    NATTER_A_REACTION_REMOVE,
    NATTER_A_EVENTS_LIST,
    NATTER_A_WS_TYPING, /* not an HTTP route: a "typing" frame on a WebSocket */
    NATTER_A_USER_GET,  /* route.user_id */
    NATTER_A_COUNT    /* the number of actions; keep last */
} natter_action_t;

_Static_assert(NATTER_A_COUNT <= NATTER_METRICS_ROUTES, "more actions than metrics route slots");

/* Each action's method and route template ("/chats/{id}/messages"), the
 * labels of natter_http_requests_total. NATTER_A_NOT_FOUND is "unmatched";
 * NATTER_A_METHOD_NOT_ALLOWED, NATTER_A_WS_SEND and NATTER_A_WS_TYPING have
 * no HTTP route of their own (a NULL path): a 405 is counted as unmatched. */
extern const natter_metrics_route_t natter_route_names[NATTER_A_COUNT];

typedef struct natter_route {
    natter_action_t action;
    uint64_t chat_id;
    uint64_t user_id; /* /users/{id} */
    char username[33];
    const char *allow; /* for NATTER_A_METHOD_NOT_ALLOWED: the Allow header value */
    const char *query; /* points into the path given, after '?'; NULL if none */
    size_t query_len;
    const char *asset; /* NATTER_A_STATIC: the web/ file's name (into the path or static); not NUL-terminated */
    size_t asset_len;
    uint64_t message_id; /* /chats/{id}/messages/{message_id}[/reactions/{emoji}] */
    int emoji_ok;        /* the reaction's path segment decoded to an emoji (see core/emoji.h) */
    char emoji[NATTER_EMOJI_MAX_BYTES + 1];
    size_t emoji_len;
} natter_route_t;

/* Matches; the result is always set (NATTER_A_NOT_FOUND when nothing fits). */
natter_action_t natter_route(const char *method, size_t mlen, const char *path, size_t plen, natter_route_t *out);

/* Finds a query parameter's raw value; returns 1 and sets *val and *len when
 * present (the last occurrence wins), else 0. No percent-decoding. */
int natter_query_get(const char *query, size_t qlen, const char *name, const char **val, size_t *len);
/* The same, its value percent-decoded (RFC 3986 §2.1: "%35" is "5") into buf
 * when it holds an escape, else pointing into the query. A value with a
 * malformed escape, or one that does not fit cap, is left raw: natter's
 * values are numbers and tokens, whose checks then refuse it. */
int natter_query_value(const char *query, size_t qlen, const char *name, char *buf, size_t cap, const char **val,
                       size_t *len);

/* 1 when name is a valid username: 1-32 chars of [A-Za-z0-9_.-], not "." or "..". */
int natter_username_valid(const char *name, size_t len);

#endif
