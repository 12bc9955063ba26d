/*
 * natter: start-up, the event loops, and the orderly shutdown that drains
 * every accepted message before the process exits.
 */
#include "consumer/consumer.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/metrics.h"
#include "core/util.h"
#include "gateway/ephemeral.h"
#include "ingest/http.h"
#include "lease.h"
#include "loop.h"
#include "natter.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define SHUTDOWN_CLOSE_WAIT_MS 2000
/* File descriptors kept for what is not a client: the store's and the log's
 * connections and files, each loop's listener and queue pipe. */
#define FD_RESERVE_BASE 256
#define FD_RESERVE_PER_LOOP 8
/* Recent client_ids kept in memory (about 150 bytes each): a repeat of one
 * older than the cache holds is decided by the store instead. */
#define CLIENT_IDS_CACHED 100000
/* Claimer threads (claims.h): batches whose round trips overlap. */
#define CLAIM_THREADS 4
/* How often the main thread hands the allocator's free pages back. */
#define MEMORY_TRIM_INTERVAL_S 10

static int load_members(void *arg, uint64_t chat_id, natter_vec_t *out)
{
    natter_app_t *app = arg;
    return natter_store_chat_member_ids(app->store, chat_id, out);
}

static int64_t stored_offset(void *log, int32_t partition)
{
    return natter_log_stored_offset(log, partition);
}

/* The store, this node's lease on its id, then the log: a second node with
 * the same id must be turned away before it joins the log's consumer group
 * under that id (it would fence the first node's consumer). */
static int open_backends(natter_app_t *app, natter_lease_t *lease, char *err, size_t errlen)
{
    const natter_store_ops_t *store = natter_store_find(app->cfg.store_backend);
    const natter_log_ops_t *log = natter_log_find(app->cfg.log_backend);
    int rc;
    if (store == NULL || log == NULL) {
        snprintf(err, errlen, "no such backend: --store %s --log %s", app->cfg.store_backend, app->cfg.log_backend);
        return NATTER_EINVAL;
    }
    if ((app->store = natter_store_open(store, &app->cfg, err, errlen)) == NULL)
        return NATTER_EIO;
    if ((rc = natter_lease_take(lease, app, err, errlen)) != NATTER_OK)
        return rc;
    app->lease = lease;
    if ((app->log = natter_log_open(log, &app->cfg, err, errlen)) == NULL)
        return NATTER_EIO;
    /* ids go on after what the store holds, whatever the clock says now
     * (one set back since the last run would reissue ids: a message
     * acknowledged and then dropped as a repeat of a stored id) */
    uint64_t top;
    if (natter_store_max_id(app->store, &top) == NATTER_OK && top != 0) {
        natter_idgen_start_after(&app->ids, top);
        natter_log_ids_after(app->log, top);
    }
    return NATTER_OK;
}

/* The loops, each running with its listener; on failure the ones started
 * are left to the process's exit. */
static int start_loops(natter_app_t *app, char *err, size_t errlen)
{
    int rc = natter_http_configure(app, err, errlen);
    if (rc == NATTER_OK)
        rc = natter_http_check_address(app, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    app->loops = xcalloc(app->cfg.threads, sizeof(natter_loop_t *));
    for (size_t i = 0; i < app->cfg.threads; i++) {
        app->loops[i] = xcalloc(1, sizeof(natter_loop_t));
        if ((rc = natter_loop_start(app->loops[i], app, (unsigned)i, err, errlen)) != NATTER_OK)
            return rc;
        app->nloops = i + 1;
    }
    return NATTER_OK;
}

/* Stop taking work, let every accepted message reach the store and its
 * answer reach its client, then say goodbye to every socket. */
/* During the drain: a second SIGINT or SIGTERM ends the process at once
 * (what was acknowledged is durable already; what was not is refused by
 * the client's timeout), as Redis does when told twice: a drain held up by
 * a hung store must not need kill -9. */
static void *insist_main(void *arg)
{
    const sigset_t *signals = arg;
    int sig;
    if (sigwait(signals, &sig) == 0) {
        static const char msg[] = "natter: a second signal during the drain: exiting now\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)n;
        _exit(1);
    }
    return NULL;
}

static void shutdown_gracefully(natter_app_t *app, natter_consumer_t *consumer)
{
    atomic_store(&app->stopping, 1);
    for (size_t i = 0; i < app->nloops; i++)
        natter_loop_stop_listening(app->loops[i]);
    natter_workers_stop(&app->workers);
    natter_workers_stop(&app->auth.pool);
    natter_claims_stop(&app->claims); /* after the workers: they hand it posts */
    natter_ephemeral_stop(app->ephemeral); /* nothing ephemeral waits for the drain */
    natter_log_shutdown(app->log);
    natter_consumer_join(consumer);
    /* every answer and push is on its loop's queue now: each loop delivers
     * them, then closes its sockets (1001) */
    for (size_t i = 0; i < app->nloops; i++)
        natter_loop_close_and_exit(app->loops[i], SHUTDOWN_CLOSE_WAIT_MS);
    for (size_t i = 0; i < app->nloops; i++)
        natter_loop_join(app->loops[i]);
}

/* Raises the soft file limit to the hard one and sizes --max-connections
 * from it (unless given); says what the node can hold. */
static void size_connections(natter_config_t *cfg)
{
    struct rlimit rl;
    long limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10000000 ? 10000000 : (long)rl.rlim_cur;
    }
    long reserve = FD_RESERVE_BASE + FD_RESERVE_PER_LOOP * (long)cfg->threads;
    long room = limit > reserve + 64 ? limit - reserve : 64;
    if (cfg->max_connections == 0)
        cfg->max_connections = (uint32_t)room;
    else if ((long)cfg->max_connections > room)
        fprintf(stderr, "natter: warning: --max-connections %u is more than the file limit allows (%ld)\n",
                cfg->max_connections, room);
    fprintf(stderr, "natter: file limit %ld: up to %u connections (%ld descriptors kept for the rest)\n", limit,
            cfg->max_connections, reserve);
}

/* Blocks SIGTERM and SIGINT in every thread (the set is inherited); main
 * takes them with sigtimedwait (wait_for_signal). */
static void block_signals(sigset_t *set)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Frames are built on the consumer's thread and freed on the loops' when
 * the last socket has sent them, so a burst of pushes to slow readers
 * leaves free pages scattered through glibc's arenas, which it keeps: in
 * `make soak` RSS grew 2.7 MiB a minute while the live heap stayed flat
 * (heaptrack), and one malloc_trim took a 58 MiB RSS back to 32. The main
 * thread, idle until a signal, trims every MEMORY_TRIM_INTERVAL_S. */
static int wait_for_signal(const sigset_t *signals)
{
    const struct timespec every = {MEMORY_TRIM_INTERVAL_S, 0};
    for (;;) {
        int sig = sigtimedwait(signals, NULL, &every);
        if (sig > 0)
            return sig;
        if (errno != EAGAIN)
            continue; /* EINTR */
#ifdef __GLIBC__
        malloc_trim(0);
#endif
    }
}

int main(int argc, char **argv)
{
    static natter_app_t app;
    static natter_lease_t lease;
    static natter_consumer_t consumer;
    static natter_tail_t tail;
    sigset_t signals;
    char err[512], desc[2048];
    natter_metrics_init();
    int rc = natter_config_load(&app.cfg, argc, argv, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        return 2;
    }
    const char *faults = getenv("NATTER_FAULTS"); /* tests only: core/fault.h */
    if (faults != NULL && natter_fault_arm_spec(faults, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: NATTER_FAULTS: %s\n", err);
        return 2;
    }
    if (faults != NULL)
        fprintf(stderr, "natter: fault injection armed (NATTER_FAULTS=%s)\n", faults);
    block_signals(&signals);
    size_connections(&app.cfg);
    natter_idgen_init(&app.ids, app.cfg.node_id);
    if (open_backends(&app, &lease, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        natter_log_close(app.log);
        if (app.lease != NULL)
            natter_lease_release(&lease);
        natter_store_close(app.store);
        return 1;
    }
    natter_members_cache_init(&app.members, app.cfg.members_ttl_ms, 100000, load_members, &app);
    natter_ratelimit_init(&app.ratelimit, app.cfg.rate_limit, app.cfg.rate_burst);
    natter_ratelimit_init_per_minute(&app.ratelimit_writes, app.cfg.rate_limit_writes, 0);
    natter_ratelimit_init(&app.ratelimit_reads, app.cfg.rate_limit_reads, app.cfg.rate_limit_reads * 4);
    natter_session_cache_init(&app.sessions, app.cfg.session_cache_ttl_ms, 100000);
    natter_client_ids_init(&app.client_ids, CLIENT_IDS_CACHED);
    natter_workers_start(&app.workers, app.cfg.workers, app.cfg.worker_queue);
    if (natter_auth_init(&app.auth, &app.cfg) != NATTER_OK) {
        fprintf(stderr, "natter: cannot make the dummy password hash\n");
        natter_workers_stop(&app.workers);
        natter_lease_release(&lease);
        natter_log_close(app.log);
        natter_store_close(app.store);
        return 1;
    }
    if (natter_log_claims_at_ingest(app.log))
        natter_claims_start(&app.claims, &app, CLAIM_THREADS, app.cfg.worker_queue);
    app.ephemeral = natter_ephemeral_new(&app);
    if (natter_log_has_fanout(app.log)) {
        natter_tail_init(&tail, NATTER_LOG_REPLAY_MAX, stored_offset, app.log);
        app.tail = &tail;
    }
    natter_consumer_init(&consumer, &app);
    app.consumer = &consumer;
    if (start_loops(&app, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: %s\n", err);
        natter_workers_stop(&app.workers);
        natter_workers_stop(&app.auth.pool);
        natter_claims_stop(&app.claims);
        natter_ephemeral_free(app.ephemeral);
        if (app.tail != NULL)
            natter_tail_free(app.tail);
        natter_lease_release(&lease);
        natter_log_close(app.log);
        natter_store_close(app.store);
        return 1;
    }
    natter_consumer_start(&consumer);
    natter_ephemeral_start(app.ephemeral);
    natter_config_describe(&app.cfg, desc, sizeof(desc));
    int v6 = strchr(app.cfg.listen_host, ':') != NULL; /* a URL puts an IPv6 host in brackets */
    fprintf(stderr, "natter: listening on %s://%s%s%s:%u with %zu event loops (%s)\n",
            natter_http_tls(&app) ? "https" : "http", v6 ? "[" : "", app.cfg.listen_host, v6 ? "]" : "",
            app.cfg.listen_port, app.nloops, desc);

    wait_for_signal(&signals);

    fprintf(stderr, "natter: shutting down: draining the log, closing sockets (a second signal ends it now)\n");
    pthread_t insist;
    if (pthread_create(&insist, NULL, insist_main, &signals) == 0)
        pthread_detach(insist);
    shutdown_gracefully(&app, &consumer);
    char log_failed[256];
    int failed = natter_log_failed(app.log, log_failed, sizeof(log_failed));
    natter_log_close(app.log);
    for (size_t i = 0; i < app.nloops; i++)
        natter_loop_dispose(app.loops[i]);
    natter_workers_free(&app.workers);
    natter_ephemeral_free(app.ephemeral);
    if (app.tail != NULL)
        natter_tail_free(app.tail);
    natter_auth_free(&app.auth);
    int lost = atomic_load(&lease.lost);
    natter_lease_release(&lease);
    natter_store_close(app.store);
    natter_ratelimit_free(&app.ratelimit);
    natter_ratelimit_free(&app.ratelimit_writes);
    natter_ratelimit_free(&app.ratelimit_reads);
    natter_session_cache_free(&app.sessions);
    natter_client_ids_free(&app.client_ids);
    natter_members_cache_free(&app.members);
    SSL_CTX_free(app.tls);
    if (lost)
        fprintf(stderr, "natter: stopped (the node id's lease was lost: exit status 1)\n");
    else if (failed)
        fprintf(stderr, "natter: stopped (%s: exit status 1)\n", log_failed);
    else
        fprintf(stderr, "natter: stopped\n");
    return lost || failed ? 1 : 0; /* a supervisor sees a failure, not a clean stop */
}
