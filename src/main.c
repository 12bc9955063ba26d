/*
 * natter: start-up, the event loop, and the orderly shutdown that drains
 * every accepted message before the process exits.
 */
#include "consumer/consumer.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/util.h"
#include "gateway/gateway.h"
#include "ingest/http.h"
#include "natter.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHUTDOWN_CLOSE_WAIT_MS 2000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int load_members(void *arg, uint64_t chat_id, natter_vec_t *out)
{
    natter_app_t *app = arg;
    return app->store->ops->chat_member_ids(app->store, chat_id, out);
}

static int open_backends(natter_app_t *app, char *err, size_t errlen)
{
    const natter_store_ops_t *store = natter_store_find(app->cfg.store_backend);
    const natter_log_ops_t *log = natter_log_find(app->cfg.log_backend);
    if (store == NULL || log == NULL) {
        snprintf(err, errlen, "no such backend: --store %s --log %s", app->cfg.store_backend, app->cfg.log_backend);
        return NATTER_EINVAL;
    }
    if ((app->store = natter_store_open(store, &app->cfg, err, errlen)) == NULL)
        return NATTER_EIO;
    if ((app->log = natter_log_open(log, &app->cfg, err, errlen)) == NULL)
        return NATTER_EIO;
    return NATTER_OK;
}

/* Runs the loop for up to ms, or until done() says so. */
static void run_loop_until(natter_app_t *app, int ms, int (*done)(natter_app_t *))
{
    uint64_t until = natter_mono_ns() + (uint64_t)ms * 1000000u;
    while (natter_mono_ns() < until && !(done && done(app)))
        h2o_evloop_run(app->h2o_ctx.loop, 10);
}

static int sockets_closed(natter_app_t *app)
{
    return natter_gateway_close_all(app->gateway, 1001, "server shutting down") == 0;
}

/* Stop taking work, let every accepted message reach the store and its
 * answer reach its client, then say goodbye to every socket. */
static void shutdown_gracefully(natter_app_t *app, natter_consumer_t *consumer)
{
    app->stopping = 1;
    natter_http_stop_listening(app);
    natter_workers_stop(&app->workers);
    natter_log_shutdown(app->log);
    natter_consumer_join(consumer);
    run_loop_until(app, 200, NULL); /* deliver the last answers and pushes */
    run_loop_until(app, SHUTDOWN_CLOSE_WAIT_MS, sockets_closed);
}

int main(int argc, char **argv)
{
    static natter_app_t app;
    natter_consumer_t consumer;
    char err[512], desc[2048];
    natter_metrics_init();
    int rc = natter_config_load(&app.cfg, argc, argv, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    pthread_mutex_init(&app.ids_lock, NULL);
    natter_idgen_init(&app.ids, app.cfg.node_id);
    if (open_backends(&app, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        natter_log_close(app.log);
        natter_store_close(app.store);
        return 1;
    }
    natter_members_cache_init(&app.members, app.cfg.members_ttl_ms, 100000, load_members, &app);
    natter_ratelimit_init(&app.ratelimit, app.cfg.rate_limit, app.cfg.rate_burst);
    natter_session_cache_init(&app.sessions, app.cfg.session_cache_ttl_ms, 100000);
    natter_workers_start(&app.workers, app.cfg.workers);
    if (natter_http_start(&app, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        return 1;
    }
    natter_consumer_start(&consumer, &app);
    natter_config_describe(&app.cfg, desc, sizeof(desc));
    fprintf(stderr, "natter: listening on http://%s:%u (%s)\n", app.cfg.listen_host, app.cfg.listen_port, desc);

    while (!stop_requested)
        h2o_evloop_run(app.h2o_ctx.loop, 100);

    fprintf(stderr, "natter: shutting down: draining the log, closing sockets\n");
    shutdown_gracefully(&app, &consumer);
    natter_http_dispose(&app);
    natter_log_close(app.log);
    natter_store_close(app.store);
    natter_ratelimit_free(&app.ratelimit);
    natter_session_cache_free(&app.sessions);
    natter_members_cache_free(&app.members);
    pthread_mutex_destroy(&app.ids_lock);
    fprintf(stderr, "natter: stopped\n");
    return 0;
}
