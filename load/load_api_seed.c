/* load_api_seed — natter-load speaking the original design's API (the Rust
 * implementation natter grew from), so the same scenario can measure it
 * side by side with natter:
 *
 *   POST /users                 form username=…           any 2xx/3xx
 *   POST /login                 form username=…           Set-Cookie: user_id=…
 *   POST /chats                 form name=…&members=<user id>&members=…
 *                               with the cookie           JSON with chat_id (or id)
 *   POST /chats/{id}/messages   form content=…, cookie    200, no id
 *   GET  /ws/connect/{user_id}  WebSocket: an HTML fragment per message,
 *                               holding the content, whose element id is
 *                               "msg-<timeuuid>" (the message's id)
 *   GET  /metrics               its consumer lag as consumer_lag
 *
 * The cookie goes out as both user_id and sender_id: versions of the
 * original read the poster from either. The original has no history a
 * reconnected listener could catch up from, so a listener whose socket
 * closes fails the run. */
#include "load_api.h"
#include "load_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORM_HEADERS "Content-Type: application/x-www-form-urlencoded\r\n"

/* Appends s form-encoded (application/x-www-form-urlencoded) to b. */
static void form_append(load_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '*') {
            load_buf_append(b, s, 1);
        } else if (c == ' ') {
            load_buf_append(b, "+", 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            load_buf_append(b, e, 3);
        }
    }
}

/* The buffer's bytes as a NUL-terminated malloc'd string (b is consumed). */
static char *form_take(load_buf_t *b)
{
    load_buf_append(b, "", 1);
    return b->p;
}

/* --- users and their cookie ------------------------------------------------ */

static void build_user(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers, char **body)
{
    load_buf_t b = {0};
    load_buf_append(&b, "username=", 9);
    form_append(&b, ph->L->users[i].name);
    *method = "POST";
    *headers = FORM_HEADERS;
    strcpy(path, "/users");
    *body = form_take(&b);
}

static int done_user(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)doc;
    (void)cookie;
    if (status >= 200 && status < 400)
        return 0;
    fprintf(stderr, "natter-load: POST /users for %s: status %d\n", ph->L->users[i].name, status);
    return -1;
}

static void build_login(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers,
                        char **body)
{
    build_user(ph, i, method, path, headers, body);
    strcpy(path, "/login");
}

static void set_credential(load_user_t *u, const char *user_id)
{
    char headers[512];
    snprintf(headers, sizeof(headers), "Cookie: user_id=%.200s; sender_id=%.200s\r\n" FORM_HEADERS, user_id, user_id);
    load_user_set_credential(u, user_id, headers);
}

static int done_login(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)doc;
    load_user_t *u = &ph->L->users[i];
    static const char name[] = "user_id=";
    if (status < 200 || status >= 400 || strncmp(cookie, name, sizeof(name) - 1) != 0 ||
        cookie[sizeof(name) - 1] == '\0') {
        fprintf(stderr, "natter-load: POST /login for %s: status %d, cookie \"%s\"\n", u->name, status, cookie);
        return -1;
    }
    set_credential(u, cookie + sizeof(name) - 1);
    return 0;
}

static int setup_users(load_t *L)
{
    load_phase_t users = {.n = L->nusers, .build = build_user, .done = done_user};
    if (load_phase_run(L, &users, "users") != 0)
        return -1;
    load_phase_t logins = {.n = L->nusers, .build = build_login, .done = done_login};
    return load_phase_run(L, &logins, "logins");
}

/* --- chats ----------------------------------------------------------------- */

static void add_member(load_buf_t *b, const load_user_t *u)
{
    load_buf_append(b, "&members=", 9);
    form_append(b, u->cred);
}

static void build_chat(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers, char **body)
{
    load_t *L = ph->L;
    load_chat_t *c = &L->chats[i];
    char name[64];
    snprintf(name, sizeof(name), "load %s #%zu", L->run_id, i);
    load_buf_t b = {0};
    load_buf_append(&b, "name=", 5);
    form_append(&b, name);
    for (size_t k = 0; k < c->nmembers; k++)
        add_member(&b, &L->users[c->members[k]]);
    *method = "POST";
    *headers = L->users[c->creator].headers;
    strcpy(path, "/chats");
    *body = form_take(&b);
}

static int done_chat(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie)
{
    (void)cookie;
    load_chat_t *c = &ph->L->chats[i];
    json_t *v = json_object_get(doc, "chat_id");
    if (v == NULL)
        v = json_object_get(doc, "id");
    char num[24];
    const char *id = json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        id = num;
    }
    if (status < 200 || status >= 300 || id == NULL || load_chat_set_id(c, id) != 0) {
        fprintf(stderr, "natter-load: POST /chats #%zu: status %d, no chat_id in the answer\n", i, status);
        return -1;
    }
    return 0;
}

static int setup_chats(load_t *L)
{
    load_phase_t chats = {.n = L->nchats, .build = build_chat, .done = done_chat};
    return load_phase_run(L, &chats, "chats");
}

/* --- messages -------------------------------------------------------------- */

static int message_body(char *buf, size_t cap, const char *content)
{
    load_buf_t b = {0};
    load_buf_append(&b, "content=", 8);
    form_append(&b, content);
    size_t n = b.len;
    int rc = n < cap ? (int)n : -1;
    if (rc >= 0)
        memcpy(buf, b.p, n);
    load_buf_free(&b);
    return rc;
}

static void listen_path(const load_user_t *u, char *path, size_t cap)
{
    snprintf(path, cap, "/ws/connect/%s", u->cred);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int load_api_seed_timeuuid(const char *p, const char *end, load_id_t *id)
{
    unsigned char b[16];
    size_t n = 0;
    if (end - p < 36)
        return -1;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash) {
            if (p[i] != '-')
                return -1;
            continue;
        }
        int hi = hexval(p[i]), lo = i + 1 < 36 ? hexval(p[i + 1]) : -1;
        if (hi < 0 || lo < 0)
            return -1;
        b[n++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    if (b[6] >> 4 != 1)
        return -1; /* not version 1: no timestamp to order by */
    uint64_t time_low = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
    uint64_t time_mid = (uint64_t)b[4] << 8 | b[5];
    uint64_t time_hi = (uint64_t)(b[6] & 0x0F) << 8 | b[7];
    id->hi = time_hi << 48 | time_mid << 32 | time_low;
    id->lo = 0;
    for (int i = 8; i < 16; i++)
        id->lo = id->lo << 8 | b[i];
    id->lo ^= 0x8080808080808080ull; /* signed bytes compare as their top bit flipped */
    return 0;
}

/* The fragment's markup is the server's. The message id is the element id
 * "msg-<timeuuid>" wherever it stands; the content is the first
 * "t=<digits> s=<digits>" in the text. */
static int scan_push(const char *data, size_t len, uint64_t *t, uint64_t *seq, load_id_t *id)
{
    static const char key[] = "id=\"msg-";
    const char *p = data, *end = data + len;
    const char *k = memmem(data, len, key, sizeof(key) - 1);
    if (k == NULL || load_api_seed_timeuuid(k + sizeof(key) - 1, end, id) != 0 || end - k < (long)sizeof(key) + 36 ||
        k[sizeof(key) - 1 + 36] != '"')
        return -1;
    while ((p = memmem(p, (size_t)(end - p), "t=", 2)) != NULL) {
        if (load_api_scan_content(p, end, t, seq) == 0)
            return 0;
        p += 2;
    }
    return -1;
}

const load_api_t load_api_seed = {
    .name = "seed",
    .post_ids = 0,
    .lag_metric = "consumer_lag",
    .batches_metric = NULL,
    .setup_users = setup_users,
    .setup_chats = setup_chats,
    .set_credential = set_credential,
    .message_body = message_body,
    .listen_path = listen_path,
    .scan_push = scan_push,
};
