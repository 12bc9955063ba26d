/*
 * An in-process natter for the unit tests of api.c, consumer.c and the
 * gateway: the embedded backends (local log, SQLite in a fresh directory),
 * every cache, the auth pool, optionally the API workers and the store
 * consumer, and one event loop made by natter_loop_init on the test's own
 * thread — no listener, no socket; the test runs the loop (harness_pump).
 * Faults are armed with core/fault.h.
 *
 * Header-only: each test file that includes it is its own program. The
 * harness is static storage, so what h2o keeps for the process's life
 * stays reachable (h2o 2.2 cannot free an event loop).
 */
#ifndef NATTER_TEST_HARNESS_H
#define NATTER_TEST_HARNESS_H

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consumer/consumer.h"
#include "gateway/ephemeral.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/metrics.h"
#include "core/util.h"
#include "ingest/http.h"
#include "loop.h"
#include "natter.h"

typedef struct harness {
    char dir[64];
    natter_app_t app;
    natter_loop_t loop;
    natter_loop_t *loops[1];
    natter_consumer_t consumer;
    int workers_started, consumer_started;
} harness_t;

static harness_t H;

static inline int harness_load_members(void *arg, uint64_t chat_id, natter_vec_t *out)
{
    natter_app_t *app = arg;
    return natter_store_chat_member_ids(app->store, chat_id, out);
}

typedef struct harness_opts {
    int workers;  /* start the API worker pool */
    int consumer; /* start the store consumer thread */
    const char *argv[16]; /* extra natter options, NULL-terminated */
} harness_opts_t;

/* Starts everything asked for; the loop is H.loop, the app H.app. */
static inline void harness_start(const harness_opts_t *o)
{
    char err[256] = "";
    const char *argv[32] = {"natter", "--argon2-memory", "8", "--argon2-passes", "1", "--rate-limit", "0",
                            "--threads", "1", "--sqlite-sync", "normal", "--batch-time", "1", "--rate-limit-writes", "0",
                            "--rate-limit-reads", "0"};
    int argc = 17;
    for (int i = 0; o->argv[i] != NULL; i++)
        argv[argc++] = o->argv[i];
    memset(&H, 0, sizeof(H));
    natter_metrics_init();
    if (natter_config_load(&H.app.cfg, argc, (char **)argv, err, sizeof(err)) != NATTER_OK)
        fail_msg("config: %s", err);
    snprintf(H.dir, sizeof(H.dir), "/tmp/natter-harness-XXXXXX");
    if (mkdtemp(H.dir) == NULL)
        fail_msg("mkdtemp");
    snprintf(H.app.cfg.data_dir, sizeof(H.app.cfg.data_dir), "%s/data", H.dir);
    natter_idgen_init(&H.app.ids, H.app.cfg.node_id);
    if ((H.app.store = natter_store_open(&natter_store_sqlite, &H.app.cfg, err, sizeof(err))) == NULL ||
        (H.app.log = natter_log_open(&natter_log_local, &H.app.cfg, err, sizeof(err))) == NULL)
        fail_msg("backends: %s", err);
    natter_members_cache_init(&H.app.members, H.app.cfg.members_ttl_ms, 1000, harness_load_members, &H.app);
    natter_ratelimit_init(&H.app.ratelimit, H.app.cfg.rate_limit, H.app.cfg.rate_burst);
    natter_ratelimit_init_per_minute(&H.app.ratelimit_writes, H.app.cfg.rate_limit_writes, 0);
    natter_session_cache_init(&H.app.sessions, H.app.cfg.session_cache_ttl_ms, 1000);
    natter_client_ids_init(&H.app.client_ids, 1000);
    if (natter_auth_init(&H.app.auth, &H.app.cfg) != NATTER_OK)
        fail_msg("auth");
    if ((H.workers_started = o->workers))
        natter_workers_start(&H.app.workers, H.app.cfg.workers, H.app.cfg.worker_queue);
    if (natter_http_configure(&H.app, err, sizeof(err)) != NATTER_OK)
        fail_msg("http: %s", err);
    natter_loop_init(&H.loop, &H.app, 0);
    H.loops[0] = &H.loop;
    H.app.loops = H.loops;
    H.app.nloops = 1;
    H.app.ephemeral = natter_ephemeral_new(&H.app);
    natter_consumer_init(&H.consumer, &H.app);
    H.app.consumer = &H.consumer;
    if ((H.consumer_started = o->consumer))
        natter_consumer_start(&H.consumer);
}

/* Runs the loop for about ms (one turn at least). */
static inline void harness_pump(int ms)
{
    uint64_t until = natter_mono_ns() + (uint64_t)ms * 1000000u;
    do
        h2o_evloop_run(H.loop.h2o_ctx.loop, ms < 10 ? ms : 10);
    while (natter_mono_ns() < until);
}

/* Runs the loop until done(arg) or timeout_ms: 1 when done. A test that
 * fails here found a hang. */
static inline int harness_pump_until(int (*done)(void *), void *arg, int timeout_ms)
{
    uint64_t until = natter_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!done(arg)) {
        if (natter_mono_ns() > until)
            return 0;
        h2o_evloop_run(H.loop.h2o_ctx.loop, 10);
    }
    return 1;
}

static inline int harness_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Drains and stops what was started (the shutdown's order), frees the rest. */
static inline void harness_stop(void)
{
    natter_fault_clear();
    atomic_store(&H.app.stopping, 1);
    if (H.workers_started)
        natter_workers_stop(&H.app.workers);
    natter_workers_stop(&H.app.auth.pool);
    natter_log_shutdown(H.app.log);
    if (H.consumer_started)
        natter_consumer_join(&H.consumer);
    harness_pump(20); /* the last answers and pushes */
    natter_gateway_free(H.loop.gateway);
    H.loop.gateway = NULL;
    harness_pump(1);
    natter_ephemeral_free(H.app.ephemeral);
    natter_log_close(H.app.log);
    if (H.workers_started)
        natter_workers_free(&H.app.workers);
    natter_auth_free(&H.app.auth);
    natter_store_close(H.app.store);
    natter_ratelimit_free(&H.app.ratelimit);
    natter_ratelimit_free(&H.app.ratelimit_writes);
    natter_session_cache_free(&H.app.sessions);
    natter_client_ids_free(&H.app.client_ids);
    natter_members_cache_free(&H.app.members);
    natter_u64map_free(&H.loop.shed_users);
    nftw(H.dir, harness_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* cmocka's group teardown for a file whose group setup started the harness. */
static inline int harness_group_teardown(void **state)
{
    (void)state;
    harness_stop();
    return 0;
}

/* A user (id, name) with a live session: its token in tok. */
static inline void harness_user(uint64_t id, const char *name, char tok[NATTER_TOKEN_LEN + 1])
{
    natter_user_t u = {.id = id};
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    natter_password_cost_t cost = {8, 1};
    snprintf(u.username, sizeof(u.username), "%s", name);
    assert_int_equal(natter_password_hash(&cost, "password1", 9, u.pwhash), NATTER_OK);
    assert_int_equal(natter_store_user_create(H.app.store, &u, natter_now_ms()), NATTER_OK);
    assert_int_equal(natter_token_new(tok), NATTER_OK);
    natter_token_hash(tok, NATTER_TOKEN_LEN, hash);
    assert_int_equal(natter_store_session_create(H.app.store, hash, id, natter_now_ms() + 3600000), NATTER_OK);
}

/* A chat of these members (the first creates it). */
static inline void harness_chat(uint64_t id, const uint64_t *members, size_t n)
{
    natter_chat_t c = {.id = id, .created_by = members[0], .created_at_ms = natter_now_ms()};
    snprintf(c.name, sizeof(c.name), "chat %llu", (unsigned long long)id);
    assert_int_equal(natter_store_chat_create(H.app.store, &c, members, n), NATTER_OK);
}

/* The ids of a chat's stored messages, ascending, into out (at most max); how many. */
static inline size_t harness_history(uint64_t chat_id, uint64_t *out, size_t max)
{
    natter_vec_t v;
    int more = 0;
    size_t n = 0;
    natter_vec_init(&v, sizeof(natter_msg_t *));
    assert_int_equal(natter_store_messages_page(H.app.store, chat_id, 0, NATTER_CURSOR_NONE, 200, &v, &more),
                     NATTER_OK);
    for (size_t i = 0; i < v.len; i++) {
        natter_msg_t *m = *NATTER_VEC_AT(&v, natter_msg_t *, i);
        if (n < max)
            out[n++] = m->id;
        free(m);
    }
    natter_vec_free(&v);
    return n;
}

#endif
