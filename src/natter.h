/*
 * The running server: every long-lived piece, who owns it, and which
 * thread may touch it.
 *
 *   loop thread    h2o context, listener, the gateway (WebSockets): owned
 *                  here, touched nowhere else. Other threads reach it only
 *                  through h2o multithread receivers (queues + eventfd).
 *   API workers    run natter_api_run(); use store, log, members cache,
 *                  rate limiter (each thread-safe on its own terms).
 *   store consumer polls the log, writes batches to the store, commits,
 *                  hands fan-out batches to the loop.
 */
#ifndef NATTER_H
#define NATTER_H

#include <h2o.h>

#include "core/config.h"
#include "core/id.h"
#include "core/ratelimit.h"
#include "gateway/members_cache.h"
#include "ingest/session_cache.h"
#include "ingest/workers.h"
#include "log/log.h"
#include "store/store.h"

typedef struct natter_gateway natter_gateway_t;

typedef struct natter_app {
    natter_config_t cfg;
    natter_store_t *store;
    natter_log_t *log;
    natter_members_cache_t members;
    natter_ratelimit_t ratelimit;
    natter_session_cache_t sessions;
    natter_workers_t workers;
    natter_idgen_t ids;            /* user and chat ids; guarded by ids_lock */
    pthread_mutex_t ids_lock;

    /* loop thread only */
    h2o_globalconf_t h2o_config;
    h2o_context_t h2o_ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    natter_gateway_t *gateway;
    int stopping;                        /* draining: no new work is taken */
    h2o_multithread_receiver_t api_done; /* finished natter_api_job_t from workers and the consumer */
    h2o_multithread_receiver_t fanout;   /* natter_fanout_t batches from the consumer */
} natter_app_t;

/* A fresh user or chat id (thread-safe). */
uint64_t natter_app_next_id(natter_app_t *app);

#endif
