/* load_api_natter — natter-load speaking natter's own API (docs/openapi.yaml):
 * POST /users and POST /sessions with JSON, a bearer token per user,
 * POST /chats with member usernames (a big room: its first CREATE_MEMBERS,
 * then PUT /chats/{id}/members/{username} for the rest, so no body passes
 * natter's --max-body), posts answered 202 with the id, a WebSocket at
 * /ws?token=… pushing {"type":"message",…} with the id, and history pages
 * GET /chats/{id}/messages?after=ID&limit=200 for a reconnected listener's
 * catch-up. */
#include "load_api.h"
#include "load_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD "natter-load-password"
#define JSON_HEADERS "Content-Type: application/json\r\n"

enum { CREATE_MEMBERS = 200 };

/* --- users and sessions ---------------------------------------------------- */

static void build_user(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers, char **body)
{
    load_user_t *u = &ph->L->users[i];
    *method = "POST";
    *headers = JSON_HEADERS;
    strcpy(path, "/users");
    *body = load_xmalloc(128);
    snprintf(*body, 128, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", u->name);
}

static int done_user(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)doc;
    (void)cookie;
    if (status == 201)
        return 0;
    fprintf(stderr, "natter-load: POST /users for %s: status %d\n", ph->L->users[i].name, status);
    return -1;
}

static void build_session(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers,
                          char **body)
{
    build_user(ph, i, method, path, headers, body);
    strcpy(path, "/sessions");
}

static void set_credential(load_user_t *u, const char *token)
{
    char headers[512];
    snprintf(headers, sizeof(headers), "Authorization: Bearer %.400s\r\n" JSON_HEADERS, token);
    load_user_set_credential(u, token, headers);
}

static int done_session(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)cookie;
    load_user_t *u = &ph->L->users[i];
    const char *tok = json_string_value(json_object_get(doc, "token"));
    if (status != 201 || tok == NULL) {
        fprintf(stderr, "natter-load: POST /sessions for %s: status %d\n", u->name, status);
        return -1;
    }
    set_credential(u, tok);
    return 0;
}

static int setup_users(load_t *L)
{
    load_phase_t users = {.n = L->nusers, .build = build_user, .done = done_user};
    if (load_phase_run(L, &users, "users") != 0)
        return -1;
    load_phase_t sessions = {.n = L->nusers, .build = build_session, .done = done_session};
    return load_phase_run(L, &sessions, "sessions");
}

/* --- chats ----------------------------------------------------------------- */

static void build_chat(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers, char **body)
{
    load_t *L = ph->L;
    load_chat_t *c = &L->chats[i];
    *method = "POST";
    strcpy(path, "/chats");
    *headers = L->users[c->creator].headers;
    json_t *members = json_array();
    for (size_t k = 0; k < c->nmembers && k < CREATE_MEMBERS; k++)
        json_array_append_new(members, json_string(L->users[c->members[k]].name));
    char name[64];
    snprintf(name, sizeof(name), "load %s #%zu", L->run_id, i);
    json_t *o = json_pack("{s:s, s:o}", "name", name, "members", members);
    *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
}

static int done_chat(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)cookie;
    load_chat_t *c = &ph->L->chats[i];
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (status != 201 || id == NULL || load_chat_set_id(c, id) != 0) {
        fprintf(stderr, "natter-load: POST /chats #%zu: status %d\n", i, status);
        return -1;
    }
    return 0;
}

/* The members a chat's creation left out: (chat, member index) pairs. */
typedef struct later {
    uint32_t chat, member;
} later_t;

static void build_member(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers,
                         char **body)
{
    const later_t *m = &((const later_t *)ph->data)[i];
    load_t *L = ph->L;
    const load_chat_t *c = &L->chats[m->chat];
    *method = "PUT";
    *headers = L->users[c->creator].headers;
    snprintf(path, 256, "/chats/%s/members/%s", c->id_str, L->users[c->members[m->member]].name);
    *body = NULL;
}

static int done_member(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)doc;
    (void)cookie;
    if (status == 204)
        return 0;
    const later_t *m = &((const later_t *)ph->data)[i];
    fprintf(stderr, "natter-load: PUT a member into chat #%u: status %d\n", (unsigned)m->chat, status);
    return -1;
}

static int setup_chats(load_t *L)
{
    load_phase_t chats = {.n = L->nchats, .build = build_chat, .done = done_chat};
    if (load_phase_run(L, &chats, "chats") != 0)
        return -1;
    size_t n = 0;
    later_t *later = NULL;
    for (size_t i = 0; i < L->nchats; i++) {
        const load_chat_t *c = &L->chats[i];
        for (size_t k = CREATE_MEMBERS; k < c->nmembers; k++) {
            later = load_xrealloc(later, (n + 1) * sizeof(*later));
            later[n++] = (later_t){(uint32_t)i, (uint32_t)k};
        }
    }
    int rc = 0;
    if (n > 0) {
        load_phase_t members = {.n = n, .build = build_member, .done = done_member, .data = later};
        rc = load_phase_run(L, &members, "members");
    }
    free(later);
    return rc;
}

/* --- messages -------------------------------------------------------------- */

static int message_body(char *buf, size_t cap, const char *content)
{
    int n = snprintf(buf, cap, "{\"content\":\"%s\"}", content);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static void listen_path(const load_user_t *u, char *path, size_t cap)
{
    snprintf(path, cap, "/ws?token=%s", u->cred);
}

/* A targeted scan of natter's compact JSON, not a parse: at 100k
 * deliveries a second a full parse would cost more than natter's fan-out. */
static int scan_push(const char *data, size_t len, uint64_t *t, uint64_t *seq, load_id_t *id)
{
    static const char type[] = "{\"type\":\"message\"", key[] = "\"content\":\"";
    if (len < sizeof(type) - 1 || memcmp(data, type, sizeof(type) - 1) != 0)
        return -1;
    const char *c = memmem(data, len, key, sizeof(key) - 1);
    if (c == NULL || load_api_scan_content(c + sizeof(key) - 1, data + len, t, seq) != 0)
        return -1;
    id->hi = 0;
    return load_scan_u64(data, len, "\"id\":\"", &id->lo) == 0 && id->lo != 0 ? 0 : -1;
}

/* --- catch-up -------------------------------------------------------------- */

enum { HISTORY_PAGE = 200 }; /* natter's largest limit */

static void history_path(const load_chat_t *c, load_id_t after, char *path, size_t cap)
{
    snprintf(path, cap, "%s?after=%llu&limit=%d", c->path, (unsigned long long)after.lo, HISTORY_PAGE);
}

/* A page is read in full with jansson: catch-up is rare and off the hot
 * path, and its bodies are the server's to shape. A message whose id is
 * not a decimal string makes the page malformed. */
static int scan_history(const char *body, size_t len, load_history_item_fn item, void *arg)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *msgs = json_object_get(doc, "messages"), *more = json_object_get(doc, "has_more");
    int rc = json_is_array(msgs) && json_is_boolean(more) ? json_is_true(more) : -1;
    for (size_t i = 0; rc >= 0 && i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *ids = json_string_value(json_object_get(m, "id"));
        const char *content = json_string_value(json_object_get(m, "content"));
        load_id_t id = {0, 0};
        if (ids == NULL || load_parse_u64(ids, strlen(ids), &id.lo) != 0 || id.lo == 0) {
            rc = -1;
            break;
        }
        uint64_t t = 0, seq = 0;
        int ours = content != NULL &&
                   load_api_scan_content(content, content + strlen(content), &t, &seq) == 0;
        item(arg, id, ours, t, seq);
    }
    json_decref(doc);
    return rc;
}

const load_api_t load_api_natter = {
    .name = "natter",
    .post_ids = 1,
    .lag_metric = "natter_consumer_lag",
    .batches_metric = "natter_batches_in_flight",
    .setup_users = setup_users,
    .setup_chats = setup_chats,
    .set_credential = set_credential,
    .message_body = message_body,
    .listen_path = listen_path,
    .scan_push = scan_push,
    .history_path = history_path,
    .scan_history = scan_history,
};
