/* load_setup — creates what a run needs through natter's own API: users,
 * their sessions, the chats. Requests go out in parallel over the run's
 * HTTP connections (a session costs natter an Argon2id hash, so a thousand
 * listeners take a while), driven by the same epoll loop the sender uses. */
#include "load_run.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define PASSWORD "natter-load-password"

void load_poll(load_t *L, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(L->epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        load_io_t *io = evs[i].data.ptr;
        io->on_event(io, evs[i].events);
    }
}

/* One phase: n requests built by build(i), answered into done(i). */
typedef struct phase {
    load_t *L;
    size_t n, next, finished, failed;
    int (*build)(struct phase *ph, size_t i, const char **method, char *path, const char **token, char **body);
    int (*done)(struct phase *ph, size_t i, int status, json_t *body);
    int *tries;
} phase_t;

typedef struct job {
    phase_t *ph;
    size_t i;
} job_t;

static void start_next(phase_t *ph, load_http_t *c);

static void on_answer(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    job_t *j = arg;
    phase_t *ph = j->ph;
    size_t i = j->i;
    free(j);
    json_t *doc = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    int rc = (status == 429 || status == 503 || status < 0) && ph->tries[i] < 5 ? 1 : ph->done(ph, i, status, doc);
    json_decref(doc);
    if (rc == 1) { /* retry */
        ph->tries[i]++;
        ph->finished--;
    } else if (rc < 0) {
        ph->failed++;
    }
    ph->finished++;
    if (rc == 1) {
        /* put it back at the front: rebuild with this index */
        const char *method, *token;
        char path[256], *b = NULL;
        ph->build(ph, i, &method, path, &token, &b);
        job_t *nj = load_xmalloc(sizeof(*nj));
        nj->ph = ph;
        nj->i = i;
        if (load_http_request(c, method, path, token, b, b ? strlen(b) : 0, on_answer, nj) != 0) {
            free(nj);
            ph->failed++;
            ph->finished++;
        }
        free(b);
        return;
    }
    start_next(ph, c);
}

static void start_next(phase_t *ph, load_http_t *c)
{
    while (ph->next < ph->n && ph->failed == 0) {
        size_t i = ph->next++;
        const char *method, *token;
        char path[256], *body = NULL;
        ph->build(ph, i, &method, path, &token, &body);
        job_t *j = load_xmalloc(sizeof(*j));
        j->ph = ph;
        j->i = i;
        int rc = load_http_request(c, method, path, token, body, body ? strlen(body) : 0, on_answer, j);
        free(body);
        if (rc == 0)
            return;
        free(j);
        fprintf(stderr, "natter-load: cannot connect to %s: %s\n", ph->L->host, strerror(-rc));
        ph->failed++;
        ph->finished++;
    }
}

static int run_phase(load_t *L, phase_t *ph, const char *what)
{
    ph->L = L;
    ph->tries = load_xcalloc(ph->n ? ph->n : 1, sizeof(int));
    uint64_t start = load_now_ns(), last_note = start;
    for (size_t k = 0; k < L->nconns && ph->next < ph->n; k++)
        start_next(ph, &L->conns[k]);
    while (ph->finished < ph->n && !(ph->failed && ph->finished >= ph->next)) {
        load_poll(L, 100);
        uint64_t now = load_now_ns();
        if (!L->o.quiet && now - last_note > 5000000000ull) {
            fprintf(stderr, "natter-load: %s: %zu/%zu\n", what, ph->finished, ph->n);
            last_note = now;
        }
        /* restart idle connections if work remains (after a failure) */
        for (size_t k = 0; k < L->nconns && ph->next < ph->n && !ph->failed; k++)
            if (!load_http_busy(&L->conns[k]))
                start_next(ph, &L->conns[k]);
    }
    free(ph->tries);
    if (ph->failed) {
        fprintf(stderr, "natter-load: setup failed while creating %s\n", what);
        return -1;
    }
    if (!L->o.quiet)
        fprintf(stderr, "natter-load: %s: %zu in %.1f s\n", what, ph->n, (double)(load_now_ns() - start) / 1e9);
    return 0;
}

/* --- users and sessions ---------------------------------------------------- */

static int build_user(phase_t *ph, size_t i, const char **method, char *path, const char **token, char **body)
{
    load_user_t *u = &ph->L->users[i];
    *method = "POST";
    *token = NULL;
    strcpy(path, "/users");
    *body = load_xmalloc(128);
    snprintf(*body, 128, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", u->name);
    return 0;
}

static int done_user(phase_t *ph, size_t i, int status, json_t *doc)
{
    (void)doc;
    if (status == 201)
        return 0;
    fprintf(stderr, "natter-load: POST /users for %s: status %d\n", ph->L->users[i].name, status);
    return -1;
}

static int build_session(phase_t *ph, size_t i, const char **method, char *path, const char **token, char **body)
{
    int rc = build_user(ph, i, method, path, token, body);
    strcpy(path, "/sessions");
    return rc;
}

static int parse_id(json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    if (s == NULL || *s == '\0')
        return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0)
        return -1;
    *out = x;
    return 0;
}

static int done_session(phase_t *ph, size_t i, int status, json_t *doc)
{
    load_user_t *u = &ph->L->users[i];
    const char *tok = json_string_value(json_object_get(doc, "token"));
    if (status != 201 || tok == NULL || parse_id(json_object_get(doc, "user_id"), &u->id) != 0) {
        fprintf(stderr, "natter-load: POST /sessions for %s: status %d\n", u->name, status);
        return -1;
    }
    u->token = load_xstrdup(tok);
    return 0;
}

int load_setup_users(load_t *L, size_t n)
{
    L->users = load_xcalloc(n, sizeof(load_user_t));
    L->nusers = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(L->users[i].name, sizeof(L->users[i].name), "nl%.8s_%u", L->run_id, (unsigned)i);
        L->users[i].ws.io.fd = -1;
        L->users[i].ws_send.io.fd = -1;
    }
    phase_t users = {.n = n, .build = build_user, .done = done_user};
    if (run_phase(L, &users, "users") != 0)
        return -1;
    phase_t sessions = {.n = n, .build = build_session, .done = done_session};
    return run_phase(L, &sessions, "sessions");
}

/* --- chats ----------------------------------------------------------------- */

static int build_chat(phase_t *ph, size_t i, const char **method, char *path, const char **token, char **body)
{
    load_t *L = ph->L;
    load_chat_t *c = &L->chats[i];
    *method = "POST";
    strcpy(path, "/chats");
    *token = L->users[c->creator].token;
    json_t *members = json_array();
    for (size_t k = 0; k < c->nlisteners; k++)
        json_array_append_new(members, json_string(L->users[c->listeners[k]].name));
    for (size_t k = 0; k < c->nsenders; k++)
        json_array_append_new(members, json_string(L->users[c->senders[k]].name));
    char name[64];
    snprintf(name, sizeof(name), "load %s #%zu", L->run_id, i);
    json_t *o = json_pack("{s:s, s:o}", "name", name, "members", members);
    *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return 0;
}

static int done_chat(phase_t *ph, size_t i, int status, json_t *doc)
{
    load_chat_t *c = &ph->L->chats[i];
    if (status != 201 || parse_id(json_object_get(doc, "id"), &c->id) != 0) {
        fprintf(stderr, "natter-load: POST /chats #%zu: status %d\n", i, status);
        return -1;
    }
    snprintf(c->id_str, sizeof(c->id_str), "%llu", (unsigned long long)c->id);
    snprintf(c->path, sizeof(c->path), "/chats/%llu/messages", (unsigned long long)c->id);
    return 0;
}

int load_setup_chats(load_t *L)
{
    phase_t chats = {.n = L->nchats, .build = build_chat, .done = done_chat};
    return run_phase(L, &chats, "chats");
}
