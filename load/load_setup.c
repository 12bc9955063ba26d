/* load_setup — creates what a run needs through the server's API (the
 * dialect's phases, load_api.h): users, their credentials, the chats.
 * Requests go out in parallel over the run's HTTP connections — over every
 * target, which are nodes of one cluster — (a natter user and a session
 * cost an Argon2id hash each, so many listeners take a while unless the
 * server runs with a low --argon2-memory), driven by the same epoll loop
 * the sender uses. */
#include "load_run.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

void load_poll(load_t *L, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(L->epfd, evs, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        load_io_t *io = evs[i].data.ptr;
        io->on_event(io, evs[i].events);
    }
}

/* A connection to where that failed for good; a certificate's failure
 * says what to do about it. */
static void print_failure(const char *where, int err)
{
    char why[160];
    const char *hint = load_tls_hint(err);
    if (hint != NULL)
        fprintf(stderr, "natter-load: %s: %s (%s)\n", where, load_strerror(err, why, sizeof(why)), hint);
    else
        fprintf(stderr, "natter-load: %s: %s\n", where, load_strerror(err, why, sizeof(why)));
}

typedef struct job {
    load_phase_t *ph;
    size_t i;
} job_t;

static void start_next(load_phase_t *ph, load_http_t *c);
static void on_answer(load_http_t *c, int status, const char *body, size_t len, void *arg);

/* Sends request i of ph on c; on a refused connect it counts as failed. */
static int issue(load_phase_t *ph, load_http_t *c, size_t i)
{
    const char *method, *headers;
    char path[256], *body = NULL;
    ph->build(ph, i, &method, path, &headers, &body);
    job_t *j = load_xmalloc(sizeof(*j));
    j->ph = ph;
    j->i = i;
    int rc = load_http_request(c, method, path, headers, body, body ? strlen(body) : 0, on_answer, j);
    free(body);
    if (rc == 0)
        return 0;
    free(j);
    char why[160];
    fprintf(stderr, "natter-load: cannot connect to %s: %s\n", c->host, load_strerror(rc, why, sizeof(why)));
    ph->failed++;
    ph->finished++;
    return -1;
}

static void on_answer(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    job_t *j = arg;
    load_phase_t *ph = j->ph;
    size_t i = j->i;
    free(j);
    json_t *doc = body != NULL && len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    int busy = (status == 429 || status == 503 || status < 0) && !load_tls_is_verify_error(status);
    int rc;
    if (busy && ph->tries[i] < 5) {
        rc = 1;
    } else if (status < 0) {
        print_failure(c->host, status);
        rc = -1;
    } else {
        rc = ph->done(ph, i, status, doc, c->cookie);
    }
    json_decref(doc);
    if (rc == 1 && ph->tries[i]++ < 5) {
        issue(ph, c, i); /* again, on the same connection */
        return;
    }
    if (rc != 0)
        ph->failed++;
    ph->finished++;
    start_next(ph, c);
}

static void start_next(load_phase_t *ph, load_http_t *c)
{
    while (ph->next < ph->n && ph->failed == 0)
        if (issue(ph, c, ph->next++) == 0)
            return;
}

int load_phase_run(load_t *L, load_phase_t *ph, const char *what)
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

/* --- the targets' TLS ------------------------------------------------------ */

#define PROBE_NS 10000000000ull

static void on_probe(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)c;
    (void)body;
    (void)len;
    *(int *)arg = status != 0 ? status : -EPROTO;
}

static int probes_pending(const int *status, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (status[i] == 0)
            return 1;
    return 0;
}

/* Any answer will do (a server without /healthz answers 404): what counts
 * is a handshake that verified, on conns[i], which go to target i. */
int load_setup_check_tls(load_t *L)
{
    int status[LOAD_TARGETS_MAX]; /* 0 while waiting, an HTTP status, or a negative error */
    for (size_t i = 0; i < L->ntargets; i++)
        status[i] = !L->targets[i].tls || L->targets[i].same_as >= 0
                        ? 200 /* nothing to check */
                        : load_http_request(&L->conns[i], "GET", "/healthz", NULL, NULL, 0, on_probe, &status[i]);
    uint64_t deadline = load_now_ns() + PROBE_NS;
    while (probes_pending(status, L->ntargets) && load_now_ns() < deadline)
        load_poll(L, 100);
    int rc = 0;
    for (size_t i = 0; i < L->ntargets; i++) {
        if (status[i] == 0)
            load_http_abort(&L->conns[i], -ETIMEDOUT);
        if (status[i] < 0) {
            print_failure(L->targets[i].url, status[i]);
            rc = -1;
        }
    }
    return rc;
}

/* --- what every dialect shares --------------------------------------------- */

int load_setup_users(load_t *L, size_t n)
{
    L->users = load_xcalloc(n, sizeof(load_user_t));
    L->nusers = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(L->users[i].name, sizeof(L->users[i].name), "nl%.8s_%u", L->run_id, (unsigned)i);
        L->users[i].target = (uint32_t)(i % L->ntargets);
        L->users[i].ws_send.io.fd = -1;
    }
    return L->api->setup_users(L);
}

void load_user_set_credential(load_user_t *u, const char *cred, const char *headers)
{
    free(u->cred);
    free(u->headers);
    u->cred = load_xstrdup(cred);
    u->headers = load_xstrdup(headers);
}

int load_chat_set_id(load_chat_t *c, const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= sizeof(c->id_str))
        return -1;
    memcpy(c->id_str, id, n + 1);
    snprintf(c->path, sizeof(c->path), "/chats/%s/messages", id);
    return 0;
}

int load_setup_chats(load_t *L)
{
    return L->api->setup_chats(L);
}
