#include "ingest/router.h"
#include "core/util.h"

#include <string.h>

const natter_metrics_route_t natter_route_names[NATTER_A_COUNT] = {
    [NATTER_A_NOT_FOUND] = {"other", "unmatched"},
    [NATTER_A_USER_CREATE] = {"POST", "/users"},
    [NATTER_A_SESSION_CREATE] = {"POST", "/sessions"},
    [NATTER_A_SESSION_DELETE] = {"DELETE", "/sessions"},
    [NATTER_A_ME] = {"GET", "/me"},
    [NATTER_A_CHATS_LIST] = {"GET", "/chats"},
    [NATTER_A_CHAT_CREATE] = {"POST", "/chats"},
    [NATTER_A_CHAT_GET] = {"GET", "/chats/{id}"},
    [NATTER_A_MEMBER_ADD] = {"PUT", "/chats/{id}/members/{username}"},
    [NATTER_A_MEMBER_REMOVE] = {"DELETE", "/chats/{id}/members/{username}"},
    [NATTER_A_MESSAGES_LIST] = {"GET", "/chats/{id}/messages"},
    [NATTER_A_MESSAGE_POST] = {"POST", "/chats/{id}/messages"},
    [NATTER_A_READ] = {"PUT", "/chats/{id}/read"},
    [NATTER_A_WS] = {"GET", "/ws"},
    [NATTER_A_METRICS] = {"GET", "/metrics"},
    [NATTER_A_HEALTHZ] = {"GET", "/healthz"},
    [NATTER_A_READYZ] = {"GET", "/readyz"},
    [NATTER_A_PAGE] = {"GET", "/{page}"},
    [NATTER_A_STATIC] = {"GET", "/static/{file}"},
    [NATTER_A_WS_TICKET] = {"POST", "/ws/tickets"},
    [NATTER_A_MESSAGE_EDIT] = {"PATCH", "/chats/{id}/messages/{message_id}"},
    [NATTER_A_MESSAGE_DELETE] = {"DELETE", "/chats/{id}/messages/{message_id}"},
    [NATTER_A_REACTION_ADD] = {"PUT", "/chats/{id}/messages/{message_id}/reactions/{emoji}"},
    [NATTER_A_REACTION_REMOVE] = {"DELETE", "/chats/{id}/messages/{message_id}/reactions/{emoji}"},
    [NATTER_A_EVENTS_LIST] = {"GET", "/chats/{id}/events"},
    [NATTER_A_USER_GET] = {"GET", "/users/{id}"},
};

int natter_username_valid(const char *name, size_t len)
{
    if (len == 0 || len > 32)
        return 0;
    if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
        return 0; /* "." and "..": a path segment that clients resolve away, so such a user could not be added */
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* Splits the next path segment off [*p, end); the path has a leading '/'. */
static int next_segment(const char **p, const char *end, const char **seg, size_t *len)
{
    if (*p >= end || **p != '/')
        return 0;
    const char *s = *p + 1, *e = s;
    while (e < end && *e != '/')
        e++;
    *seg = s;
    *len = (size_t)(e - s);
    *p = e;
    return 1;
}

static int is(const char *seg, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(seg, lit, len) == 0;
}

typedef struct {
    const char *method;
    natter_action_t action;
} verb_t;

/* Picks the action for the method among a path's verbs, or 405 with Allow.
 * HEAD is GET without the body (RFC 9110 §9.3.2): it takes the GET action,
 * and h2o sends the answer's headers only. */
static natter_action_t pick(const char *method, size_t mlen, const verb_t *verbs, const char *allow,
                            natter_route_t *out)
{
    int head = is(method, mlen, "HEAD");
    for (; verbs->method != NULL; verbs++)
        if (is(method, mlen, verbs->method) || (head && strcmp(verbs->method, "GET") == 0))
            return out->action = verbs->action;
    out->allow = allow;
    return out->action = NATTER_A_METHOD_NOT_ALLOWED;
}

#define VERBS(...) ((const verb_t[]){__VA_ARGS__, {NULL, NATTER_A_NOT_FOUND}})

/* Pages: a one-segment path served with one file of web/. */
static const struct {
    const char *segment, *asset;
} pages[] = {
    {"", "index.html"},
    {"dashboard", "dashboard.html"},
};

static natter_action_t route_asset(const char *method, size_t mlen, natter_action_t action, const char *asset,
                                   size_t len, natter_route_t *out)
{
    out->asset = asset;
    out->asset_len = len;
    return pick(method, mlen, VERBS({"GET", action}), "GET, HEAD", out);
}

/* /{message_id} and /{message_id}/reactions/{emoji}, after /chats/{id}/messages.
 * An emoji that does not decode still routes (emoji_ok 0): its answer is
 * 400, not 404. */
static natter_action_t route_message(const char *method, size_t mlen, const char *p, const char *end,
                                     natter_route_t *out)
{
    const char *seg;
    size_t len;
    if (!next_segment(&p, end, &seg, &len) || natter_parse_u64(seg, len, &out->message_id) != 0 ||
        out->message_id == 0)
        return NATTER_A_NOT_FOUND;
    if (p == end)
        return pick(method, mlen, VERBS({"PATCH", NATTER_A_MESSAGE_EDIT}, {"DELETE", NATTER_A_MESSAGE_DELETE}),
                    "PATCH, DELETE", out);
    if (!next_segment(&p, end, &seg, &len) || !is(seg, len, "reactions") || !next_segment(&p, end, &seg, &len) ||
        p != end || len == 0)
        return NATTER_A_NOT_FOUND;
    out->emoji_ok = natter_emoji_from_path(seg, len, out->emoji, &out->emoji_len) == 0;
    if (!out->emoji_ok) {
        out->emoji[0] = '\0';
        out->emoji_len = 0;
    }
    return pick(method, mlen, VERBS({"PUT", NATTER_A_REACTION_ADD}, {"DELETE", NATTER_A_REACTION_REMOVE}),
                "PUT, DELETE", out);
}

static natter_action_t route_chat(const char *method, size_t mlen, const char *p, const char *end,
                                  natter_route_t *out)
{
    const char *seg;
    size_t len;
    if (!next_segment(&p, end, &seg, &len) || natter_parse_u64(seg, len, &out->chat_id) != 0 || out->chat_id == 0)
        return NATTER_A_NOT_FOUND;
    if (p == end)
        return pick(method, mlen, VERBS({"GET", NATTER_A_CHAT_GET}), "GET, HEAD", out);
    if (!next_segment(&p, end, &seg, &len))
        return NATTER_A_NOT_FOUND;
    if (is(seg, len, "messages") && p == end)
        return pick(method, mlen, VERBS({"GET", NATTER_A_MESSAGES_LIST}, {"POST", NATTER_A_MESSAGE_POST}),
                    "GET, HEAD, POST", out);
    if (is(seg, len, "messages"))
        return route_message(method, mlen, p, end, out);
    if (is(seg, len, "events") && p == end)
        return pick(method, mlen, VERBS({"GET", NATTER_A_EVENTS_LIST}), "GET, HEAD", out);
    if (is(seg, len, "read") && p == end)
        return pick(method, mlen, VERBS({"PUT", NATTER_A_READ}), "PUT", out);
    char name[sizeof(out->username)];
    long nlen;
    if (is(seg, len, "members") && next_segment(&p, end, &seg, &len) && p == end &&
        (nlen = natter_percent_decode(seg, len, name, sizeof(name) - 1)) >= 0 && natter_username_valid(name, (size_t)nlen)) {
        memcpy(out->username, name, (size_t)nlen);
        out->username[nlen] = '\0';
        return pick(method, mlen, VERBS({"PUT", NATTER_A_MEMBER_ADD}, {"DELETE", NATTER_A_MEMBER_REMOVE}),
                    "PUT, DELETE", out);
    }
    return NATTER_A_NOT_FOUND;
}

/* Below "/users": "/users/{id}". */
static natter_action_t route_user(const char *method, size_t mlen, const char *p, const char *end, natter_route_t *out)
{
    const char *seg;
    size_t len;
    if (next_segment(&p, end, &seg, &len) && p == end && natter_parse_u64(seg, len, &out->user_id) == 0 &&
        out->user_id != 0)
        return pick(method, mlen, VERBS({"GET", NATTER_A_USER_GET}), "GET, HEAD", out);
    return NATTER_A_NOT_FOUND;
}

/* Below "/ws": "/ws/tickets". */
static natter_action_t route_ws(const char *method, size_t mlen, const char *p, const char *end, natter_route_t *out)
{
    const char *seg;
    size_t len;
    if (next_segment(&p, end, &seg, &len) && p == end && is(seg, len, "tickets"))
        return pick(method, mlen, VERBS({"POST", NATTER_A_WS_TICKET}), "POST", out);
    return NATTER_A_NOT_FOUND;
}

natter_action_t natter_route(const char *method, size_t mlen, const char *path, size_t plen, natter_route_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *q = memchr(path, '?', plen), *end = q ? q : path + plen;
    if (q != NULL) {
        out->query = q + 1;
        out->query_len = (size_t)(path + plen - (q + 1));
    }
    const char *p = path, *seg;
    size_t len;
    if (!next_segment(&p, end, &seg, &len))
        return NATTER_A_NOT_FOUND;
    if (p == end) {
        if (is(seg, len, "users"))
            return pick(method, mlen, VERBS({"POST", NATTER_A_USER_CREATE}), "POST", out);
        if (is(seg, len, "sessions"))
            return pick(method, mlen, VERBS({"POST", NATTER_A_SESSION_CREATE}, {"DELETE", NATTER_A_SESSION_DELETE}),
                        "POST, DELETE", out);
        if (is(seg, len, "me"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_ME}), "GET, HEAD", out);
        if (is(seg, len, "chats"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_CHATS_LIST}, {"POST", NATTER_A_CHAT_CREATE}), "GET, HEAD, POST",
                        out);
        if (is(seg, len, "ws"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_WS}), "GET, HEAD", out);
        if (is(seg, len, "metrics"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_METRICS}), "GET, HEAD", out);
        if (is(seg, len, "healthz"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_HEALTHZ}), "GET, HEAD", out);
        if (is(seg, len, "readyz"))
            return pick(method, mlen, VERBS({"GET", NATTER_A_READYZ}), "GET, HEAD", out);
        for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
            if (is(seg, len, pages[i].segment))
                return route_asset(method, mlen, NATTER_A_PAGE, pages[i].asset, strlen(pages[i].asset), out);
        return out->action = NATTER_A_NOT_FOUND;
    }
    if (is(seg, len, "chats"))
        return out->action = route_chat(method, mlen, p, end, out);
    if (is(seg, len, "ws"))
        return out->action = route_ws(method, mlen, p, end, out);
    if (is(seg, len, "users"))
        return out->action = route_user(method, mlen, p, end, out);
    if (is(seg, len, "static") && end - p > 1) /* any name after "/static/": only the table says which exist */
        return route_asset(method, mlen, NATTER_A_STATIC, p + 1, (size_t)(end - p - 1), out);
    return out->action = NATTER_A_NOT_FOUND;
}

int natter_query_get(const char *query, size_t qlen, const char *name, const char **val, size_t *len)
{
    size_t nlen = strlen(name);
    int found = 0;
    if (query == NULL)
        return 0;
    const char *p = query, *end = query + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            *val = eq ? eq + 1 : pe;
            *len = (size_t)(pe - *val);
            found = 1;
        }
        p = pe + 1;
    }
    return found;
}

int natter_query_value(const char *query, size_t qlen, const char *name, char *buf, size_t cap, const char **val,
                       size_t *len)
{
    if (!natter_query_get(query, qlen, name, val, len))
        return 0;
    long n;
    if (memchr(*val, '%', *len) != NULL && (n = natter_percent_decode(*val, *len, buf, cap)) >= 0) {
        *val = buf;
        *len = (size_t)n;
    }
    return 1;
}
