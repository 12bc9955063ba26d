/* load_api — the server API natter-load speaks (--api), as a table of
 * functions, with one file per dialect:
 *
 *   load_api_natter.c  natter's API: JSON bodies, bearer sessions,
 *                      /ws?token=…, JSON pushes that carry the message id,
 *                      history pages (GET …/messages?after=) for catch-up
 *   load_api_seed.c    the original (Rust) design's API: form bodies, a
 *                      user_id cookie from POST /login, /ws/connect/{user_id},
 *                      an HTML fragment per pushed message whose element id
 *                      is "msg-<timeuuid>"; no history, so no catch-up
 *
 * Scenarios, the schedule, the measurements and the delivery checks are the
 * same for every dialect: every push carries a message id (load_id_t), and
 * each listener must see a chat's ids strictly increasing.
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
typedef struct load_chat load_chat_t;

/* A message id as a 128-bit key whose order is the server's message order:
 * natter's 64-bit id is {0, id}; a timeuuid is {timestamp, rest} (see
 * load_api_seed_timeuuid). {0, 0} is "none". */
typedef struct load_id {
    uint64_t hi, lo;
} load_id_t;

static inline int load_id_cmp(load_id_t a, load_id_t b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    return a.lo < b.lo ? -1 : a.lo > b.lo;
}

static inline int load_id_is_none(load_id_t a)
{
    return a.hi == 0 && a.lo == 0;
}

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

/* Called by scan_history for each message of a page, in page order: ours
 * says whether its content is natter-load's (then t and seq are set). */
typedef void (*load_history_item_fn)(void *arg, load_id_t id, int ours, uint64_t t, uint64_t seq);

typedef struct load_api {
    const char *name;
    int post_ids; /* a post's 2xx answer carries the message id */
    const char *lag_metric;     /* the consumer lag's name on /metrics */
    const char *batches_metric; /* store batches in flight, or NULL */
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
     * id. 0, or -1 when it is not a message of ours or carries no id. */
    int (*scan_push)(const char *data, size_t len, uint64_t *t, uint64_t *seq, load_id_t *id);
    /* Catch-up after a reconnect; both NULL when the dialect has no
     * history (a listener whose socket closes then fails the run).
     * history_path writes the path of the page of c's messages after id;
     * scan_history reads a page, calling item for each message, and
     * returns 1 when more follow, 0 when not, -1 when it is malformed. */
    void (*history_path)(const load_chat_t *c, load_id_t after, char *path, size_t cap);
    int (*scan_history)(const char *body, size_t len, load_history_item_fn item, void *arg);
} load_api_t;

extern const load_api_t load_api_natter;
extern const load_api_t load_api_seed;

/* The dialect named name ("natter" or "seed"), or NULL. */
const load_api_t *load_api_find(const char *name);

/* Parses "t=<ns> s=<seq>" at p (shared by the dialects); 0 or -1. */
int load_api_scan_content(const char *p, const char *end, uint64_t *t, uint64_t *seq);

/* Parses the 36 characters of a version-1 UUID (a timeuuid, any hex case)
 * at p into its order key; 0, or -1 when it is not one. The key orders as
 * Cassandra and Scylla order a timeuuid column (and so the original's
 * history): first by the 60-bit timestamp (100 ns ticks since 1582),
 * reassembled from time_hi, time_mid, time_low (the text's own order is not
 * time order: time_low comes first); then, within one tick, by the other
 * 8 bytes (clock sequence and node) compared byte by byte as signed
 * bytes — Cassandra's legacy rule, kept by Scylla — which is an unsigned
 * compare of those bytes with every byte's top bit flipped. */
int load_api_seed_timeuuid(const char *p, const char *end, load_id_t *id);

#endif
