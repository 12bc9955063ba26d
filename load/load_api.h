/* load_api — the server API natter-load speaks (--api), as a table of
 * functions, with one file per dialect:
 *
 *   load_api_natter.c  natter's API: JSON bodies, bearer sessions,
 *                      /ws?token=…, JSON pushes that carry the message id
 *   load_api_seed.c    the original (Rust) design's API: form bodies, a
 *                      user_id cookie from POST /login, /ws/connect/{user_id},
 *                      an HTML fragment per pushed message, no ids
 *
 * Scenarios, the schedule, the measurements and the delivery checks are the
 * same for every dialect. A dialect without message ids gets its per-chat
 * order checked as "every listener sees the chat's messages in the same
 * order" (see load_listen.c).
 *
 * Setup runs as phases (load_phase_t): n independent requests, spread over
 * the run's HTTP connections, each built by build(i) and judged by done(i).
 */
#ifndef NATTER_LOAD_API_H
#define NATTER_LOAD_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct load load_t;
typedef struct load_user load_user_t;

typedef struct load_phase load_phase_t;
struct load_phase {
    load_t *L;
    size_t n, next, finished, failed;
    /* Fills method, path (256 bytes), the extra header lines (borrowed) and
     * a malloc'd body (or NULL) for request i. */
    void (*build)(load_phase_t *ph, size_t i, const char **method, char *path, const char **headers, char **body);
    /* Judges the answer to request i: 0 done, 1 retry, -1 failed (printed).
     * doc is the body parsed as JSON, or NULL; cookie is the answer's last
     * Set-Cookie "name=value" or "". */
    int (*done)(load_phase_t *ph, size_t i, int status, json_t *doc, const char *cookie);
    int *tries;
    void *data; /* the dialect's, for build and done */
};

/* Runs a phase to its end over L's connections; 0, or -1 (printed). */
int load_phase_run(load_t *L, load_phase_t *ph, const char *what);

typedef struct load_api {
    const char *name;
    int has_ids; /* post answers and pushes carry the server's message id */
    /* Creates L->users (names already set) with their credentials. 0 or -1. */
    int (*setup_users)(load_t *L);
    /* Creates L->chats (members set) and fills their id_str and path. */
    int (*setup_chats)(load_t *L);
    /* Sets u's credential (session token or user id) and request headers. */
    void (*set_credential)(load_user_t *u, const char *cred);
    /* Writes the body of a message post with this content; its length, or
     * -1 when it does not fit. */
    int (*message_body)(char *buf, size_t cap, const char *content);
    /* The WebSocket path a listener opens. */
    void (*listen_path)(const load_user_t *u, char *path, size_t cap);
    /* Reads a push: natter-load's content "t=<ns> s=<seq>" and the message
     * id (0 when the dialect has none). 0, or -1 when it is not a message
     * of ours. */
    int (*scan_push)(const char *data, size_t len, uint64_t *t, uint64_t *seq, uint64_t *id);
} load_api_t;

extern const load_api_t load_api_natter;
extern const load_api_t load_api_seed;

/* The dialect named name ("natter" or "seed"), or NULL. */
const load_api_t *load_api_find(const char *name);

/* Parses "t=<ns> s=<seq>" at p (shared by the dialects); 0 or -1. */
int load_api_scan_content(const char *p, const char *end, uint64_t *t, uint64_t *seq);

#endif
