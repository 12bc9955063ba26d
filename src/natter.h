/*
 * The running node: what every thread shares, and the event loops that own
 * the sockets.
 *
 *   natter_app_t   set up by main before any other thread starts; its
 *                  configuration, backends and table of loops are read-only
 *                  after that. The caches, the rate limiter, the worker pool
 *                  and the id generator are thread-safe on their own terms
 *                  (sharded locks or lock-free; see their headers).
 *   natter_loop_t  one per --threads: an h2o event loop on its own thread,
 *                  with its own SO_REUSEPORT listener, its HTTP connections
 *                  and WebSockets (its gateway). Only that thread touches
 *                  them; other threads reach a loop through its queues
 *                  (src/loop.h).
 *   API workers    run what may block (store queries) and hand the job back
 *                  to the loop it came from; logins and registrations run
 *                  on a pool of their own (ingest/auth.h).
 *   store consumer polls the log, writes batches to the store, commits
 *                  (which answers the posters through their loops), and
 *                  hands each loop the batch's pushes, built once.
 */
#ifndef NATTER_H
#define NATTER_H

#include <h2o.h>
#include <stdatomic.h>

#include "consumer/tail.h"
#include "core/config.h"
#include "core/id.h"
#include "core/ratelimit.h"
#include "gateway/members_cache.h"
#include "ingest/auth.h"
#include "ingest/claims.h"
#include "ingest/client_ids.h"
#include "ingest/session_cache.h"
#include "ingest/workers.h"
#include "log/log.h"
#include "store/store.h"

typedef struct natter_loop natter_loop_t;
struct natter_lease;
struct natter_consumer;

typedef struct natter_app {
    /* read-only once the threads run */
    natter_config_t cfg;
    natter_store_t *store;
    natter_log_t *log;
    h2o_globalconf_t h2o_config;
    SSL_CTX *tls; /* --tls-cert: every loop's listener speaks TLS; NULL for plain HTTP */
    size_t nloops;
    natter_loop_t **loops;
    struct natter_lease *lease;       /* this node's hold on its --node-id */
    struct natter_consumer *consumer; /* the store consumer, for /readyz */

    /* thread-safe, each on its own terms */
    natter_members_cache_t members;
    natter_ratelimit_t ratelimit;        /* posts and message changes, per user */
    natter_ratelimit_t ratelimit_writes; /* the API's other writes (tickets, chats, members), per user */
    natter_ratelimit_t ratelimit_reads;  /* the API's reads (history, events, lists), per user */
    atomic_uint in_flight_waits;         /* workers waiting for a message that may be in flight (events.c) */
    /* WebSockets open on this node, any loop's: with none, no push is built
     * (consumer.c). Not the sum of the loops' ws_open metric: metrics count
     * relaxed, and the check's argument needs the open ordered before it. */
    atomic_size_t websockets;
    natter_session_cache_t sessions;
    natter_client_ids_t client_ids; /* recent posts' client_ids: repeats answered without the store */
    natter_workers_t workers;
    natter_auth_t auth; /* logins and registrations: their limits and hashing pool */
    natter_claims_t claims; /* posts' client_ids claimed in the store, when the log claims at ingest */
    natter_idgen_t ids; /* user and chat ids */
    struct natter_ephemeral *ephemeral; /* typing, presence, read receipts (gateway/ephemeral.h) */
    natter_tail_t *tail; /* the log's unstored tail, when pushes do not wait for the store (consumer/tail.h); else NULL */
    atomic_int stopping; /* draining: no new work is taken */
} natter_app_t;

/* A fresh user or chat id (thread-safe, lock-free). */
uint64_t natter_app_next_id(natter_app_t *app);
/* 1 once the node is draining. */
int natter_app_stopping(natter_app_t *app);

#endif
