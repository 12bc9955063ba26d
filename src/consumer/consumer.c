#include "consumer/consumer.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/util.h"
#include "gateway/gateway.h"
#include "natter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_TIMEOUT_MS 100
#define STORE_ATTEMPTS 4
/* A store that has failed every batch for this long makes the node unready
 * (unless the store's own timeout is longer). */
#define STORE_FAILING_GRACE_MS 5000
/* How often an idle consumer asks a failing store whether it answers again. */
#define STORE_PROBE_MS 1000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* An outage (the store away or slow), not a refusal of what was sent. */
static int transient(int rc)
{
    return rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT;
}

/* Transient failures (a busy database, a node away) are retried with backoff
 * (attempts times in all) before the batch is given up; the log then
 * answers its posters 503.
 * A log whose records only this node stores (the local log) has its posts'
 * client_ids claimed here, with the batch: a repeat becomes the message it
 * repeats. A log that claims at ingest (Kafka) needs no claim here. */
static int store_batch(natter_consumer_t *c, natter_msg_t *head, size_t n, int attempts)
{
    natter_app_t *app = c->app;
    int claim = !natter_log_claims_at_ingest(app->log);
    int rc = NATTER_EIO;
    for (int attempt = 0; attempt < attempts; attempt++) {
        /* Shutting down on a log shared by nodes (its own fan-out stream:
         * Kafka), the batch stays in the log for the next start or another
         * node: a store that is away must not hold the exit up. */
        if (attempt > 0 && atomic_load(&app->stopping) && natter_log_has_fanout(app->log))
            break;
        if (attempt > 0)
            sleep_ms(10 << (2 * attempt));
        uint64_t started = natter_mono_ns();
        natter_count(&natter_m()->batches_in_flight, 1);
        rc = c->has_sync_thread ? natter_store_records_write_unsynced(app->store, head, n, claim, natter_now_ms())
                                : natter_store_records_write(app->store, head, n, claim, natter_now_ms());
        natter_count(&natter_m()->batches_in_flight, (uint64_t)-1);
        natter_hist_observe(&natter_m()->store_batch, natter_mono_ns() - started);
        if (rc == NATTER_OK) {
            natter_count(&natter_m()->messages_stored, n);
            return rc;
        }
        natter_count(&natter_m()->store_errors, 1);
        fprintf(stderr, "natter: store batch of %zu failed (attempt %d): %s\n", n, attempt + 1, natter_strerror(rc));
        if (!transient(rc))
            break;
    }
    return rc;
}

/* A batch the store refused for good (not an outage: that is retried until
 * the store is back) on a log that keeps dead letters: each record is
 * stored alone, in log order, and one the store refuses for good on its own
 * goes to the dead letters, so the rest of the batch is stored and its
 * partitions move on. NATTER_OK when every record was stored or kept; an
 * outage met on the way is returned, and the whole batch comes again (the
 * stores and the dead letters keep one copy of a record already there). */
static int isolate(natter_consumer_t *c, natter_msg_t *head, int refused)
{
    natter_app_t *app = c->app;
    int rc = NATTER_OK;
    fprintf(stderr, "natter: store refused a batch (%s): storing its records one by one\n", natter_strerror(refused));
    for (natter_msg_t *m = head; m != NULL && rc == NATTER_OK; m = m->next) {
        natter_msg_t *next = m->next;
        m->next = NULL;
        rc = store_batch(c, m, 1, STORE_ATTEMPTS);
        m->next = next;
        if (rc != NATTER_OK && !transient(rc)) {
            char reason[128];
            snprintf(reason, sizeof(reason), "the store refused it: %s", natter_strerror(rc));
            rc = natter_log_dead_letter(app->log, m, reason);
        }
    }
    return rc;
}

static void note_store_outcome(natter_consumer_t *c, int rc)
{
    atomic_store(&c->store_error, rc);
    if (rc == NATTER_OK)
        atomic_store(&c->store_failing_since_ns, 0);
    else if (atomic_load(&c->store_failing_since_ns) == 0)
        atomic_store(&c->store_failing_since_ns, natter_mono_ns());
}

int natter_consumer_status(natter_consumer_t *c, char *why, size_t len)
{
    if (atomic_load(&c->sync_failed)) {
        snprintf(why, len, "the store could not make its writes durable (a sync failed): restart natter");
        return NATTER_EUNAVAIL;
    }
    uint64_t since = atomic_load(&c->store_failing_since_ns);
    uint32_t grace = c->app->cfg.cql_timeout_ms > STORE_FAILING_GRACE_MS ? c->app->cfg.cql_timeout_ms
                                                                          : STORE_FAILING_GRACE_MS;
    if (since != 0 && natter_mono_ns() - since > (uint64_t)grace * 1000000u) {
        snprintf(why, len, "the store consumer cannot store (%s for %.1f s)", natter_strerror(atomic_load(&c->store_error)),
                 (double)(natter_mono_ns() - since) / 1e9);
        return NATTER_EUNAVAIL;
    }
    return natter_log_consumer_status(c->app->log, why, len);
}

/* The last batch failed and none has come since: once a second the idle
 * consumer asks the store whether it answers again (its ping). Without it
 * a node made unready by a failed batch stayed unready until a post
 * succeeded, and a load balancer that sends nothing to an unready node
 * never sent one. 1 when the store answered. */
static int probe_store(natter_consumer_t *c, uint64_t *probed_ns)
{
    uint64_t now = natter_mono_ns();
    if (atomic_load(&c->store_failing_since_ns) == 0 || now - *probed_ns < (uint64_t)STORE_PROBE_MS * 1000000u)
        return 0;
    *probed_ns = now;
    if (natter_store_ping(c->app->store) != NATTER_OK)
        return 0;
    fprintf(stderr, "natter: the store answers again\n");
    note_store_outcome(c, NATTER_OK);
    return 1;
}

/* The store is down (a batch failed for an outage after all its tries, at
 * failed_ms) on a log whose posters wait for the store: what was queued
 * before is answered 503 now, not each batch after a full round of tries
 * (minutes, with a long queue, a shutdown waiting on it). Messages appended
 * since are returned (*kept of them, in order): the next batch, which
 * probes the store with one try. */
static natter_msg_t *fail_queued(natter_app_t *app, int64_t failed_ms, size_t *kept)
{
    natter_msg_t *keep = NULL, **kt = &keep;
    *kept = 0;
    while (*kept == 0) {
        natter_msg_t *head = NULL, *fail = NULL, **ft = &fail;
        if (natter_log_poll(app->log, &head, app->cfg.batch_size, 0) == 0)
            break;
        for (natter_msg_t *m = head, *next; m != NULL; m = next) {
            next = m->next;
            m->next = NULL;
            if (m->created_at_ms < failed_ms) {
                *ft = m;
                ft = &m->next;
            } else {
                *kt = m;
                kt = &m->next;
                (*kept)++;
            }
        }
        if (fail != NULL) {
            natter_log_commit(app->log, fail, NATTER_EUNAVAIL);
            natter_msg_free_list(fail);
        }
    }
    return keep;
}

/* The end of a batch's turn: the log learns its outcome (its posters are
 * answered), and a stored one is pushed where the log has no fan-out
 * stream of its own, if a WebSocket is open on the node at all (under wrk
 * the pushes cost the sync stage 0.3-0.5 µs a post for nobody): a socket
 * counted after this check opened after the batch was stored, so its
 * client's history read has it. */
static void complete(natter_app_t *app, natter_msg_t *head, int rc)
{
    natter_log_commit(app->log, head, rc);
    if (rc == NATTER_OK && !natter_log_has_fanout(app->log) && atomic_load(&app->websockets) > 0)
        natter_fanout_dispatch(app, natter_fanout_build(app, head));
    natter_msg_free_list(head);
}

/* Completes the batch now, or, with a sync stage, queues it there (waiting
 * for room: the ring is bounded). */
static void hand_off(natter_consumer_t *c, natter_msg_t *head, int rc)
{
    if (!c->has_sync_thread) {
        complete(c->app, head, rc);
        return;
    }
    pthread_mutex_lock(&c->sync_lock);
    while (c->written_len == NATTER_CONSUMER_SYNC_QUEUE)
        pthread_cond_wait(&c->sync_room, &c->sync_lock);
    c->written[(c->written_first + c->written_len++) % NATTER_CONSUMER_SYNC_QUEUE] =
        (natter_consumer_written_t){head, rc};
    pthread_mutex_unlock(&c->sync_lock);
    pthread_cond_signal(&c->sync_wake); /* unlocked: the woken stage finds the lock free */
}

/* The sync stage: every batch queued when it wakes was written before its
 * one records_sync, which makes them all durable. A failed sync fails
 * them (their posters are answered with the error, nothing is pushed) and
 * sets sync_failed, which stops the writes until a restart (consumer.h). */
static void *sync_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-sync");
    natter_sched_batch(); /* see consumer_main */
    natter_consumer_t *c = arg;
    natter_app_t *app = c->app;
    natter_consumer_written_t taken[NATTER_CONSUMER_SYNC_QUEUE];
    for (;;) {
        pthread_mutex_lock(&c->sync_lock);
        while (c->written_len == 0 && !c->written_done)
            pthread_cond_wait(&c->sync_wake, &c->sync_lock);
        size_t n = c->written_len;
        for (size_t i = 0; i < n; i++)
            taken[i] = c->written[(c->written_first + i) % NATTER_CONSUMER_SYNC_QUEUE];
        c->written_first = (c->written_first + n) % NATTER_CONSUMER_SYNC_QUEUE;
        c->written_len = 0;
        pthread_mutex_unlock(&c->sync_lock);
        pthread_cond_signal(&c->sync_room);
        if (n == 0)
            break;
        int written = 0, synced = NATTER_OK;
        for (size_t i = 0; i < n; i++)
            written |= taken[i].rc == NATTER_OK;
        if (written) {
            uint64_t started = natter_mono_ns();
            synced = natter_store_records_sync(app->store);
            natter_hist_observe(&natter_m()->store_sync, natter_mono_ns() - started);
            if (synced != NATTER_OK) {
                natter_count(&natter_m()->store_errors, 1);
                fprintf(stderr, "natter: store sync of %zu batches failed: %s; no batch is stored until natter restarts\n",
                        n, natter_strerror(synced));
                atomic_store(&c->sync_failed, 1);
            }
        }
        for (size_t i = 0; i < n; i++) {
            int rc = taken[i].rc == NATTER_OK ? synced : taken[i].rc;
            note_store_outcome(c, rc); /* in batch order, here only */
            complete(app, taken[i].head, rc);
        }
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-store");
    /* a loop that hands this stage (or the sync stage) work goes on reading
     * and answering instead of being preempted by it; on a core they share
     * the batch then also holds what the loop read meanwhile */
    natter_sched_batch();
    natter_consumer_t *c = arg;
    natter_app_t *app = c->app;
    /* posters wait for the store only on a log without its own fan-out
     * stream (the local log); on Kafka the broker answered them */
    int posters_wait = !natter_log_has_fanout(app->log), down = 0;
    natter_msg_t *next_batch = NULL;
    size_t next_n = 0;
    uint64_t probed_ns = 0;
    for (;;) {
        natter_msg_t *head = next_batch;
        size_t n = next_n;
        next_batch = NULL;
        next_n = 0;
        if (head == NULL)
            n = natter_log_poll(app->log, &head, app->cfg.batch_size, POLL_TIMEOUT_MS);
        if (n == 0) {
            if (natter_log_drained(app->log))
                break;
            if (probe_store(c, &probed_ns))
                down = 0;
            continue;
        }
        uint64_t started = natter_mono_ns();
        natter_hist_observe(&natter_m()->store_batch_size, n);
        /* while the store is down, a batch is one try: it probes */
        int rc = atomic_load(&c->sync_failed) ? NATTER_EIO : store_batch(c, head, n, down ? 1 : STORE_ATTEMPTS);
        if (rc != NATTER_OK && !transient(rc) && natter_log_has_dead_letters(app->log))
            rc = isolate(c, head, rc);
        if (!c->has_sync_thread)
            note_store_outcome(c, rc); /* else the sync stage's, once it knows */
        int64_t failed_ms = natter_now_ms();
        hand_off(c, head, rc);
        down = posters_wait && transient(rc);
        if (down)
            next_batch = fail_queued(app, failed_ms, &next_n);
        natter_hist_observe(&natter_m()->loop, natter_mono_ns() - started);
    }
    if (c->has_sync_thread) {
        pthread_mutex_lock(&c->sync_lock);
        c->written_done = 1;
        pthread_cond_signal(&c->sync_wake);
        pthread_mutex_unlock(&c->sync_lock);
    }
    return NULL;
}

/* The batch's live records, in order; the replayed ones (pushed before
 * this node started, kept only for history reads) go on *replayed. */
static natter_msg_t *split_replayed(natter_msg_t *head, natter_msg_t **replayed)
{
    natter_msg_t *live = NULL, **lt = &live, **rt = replayed;
    for (natter_msg_t *m = head, *next; m != NULL; m = next) {
        next = m->next;
        m->next = NULL;
        if (m->replayed) {
            *rt = m;
            rt = &m->next;
        } else {
            *lt = m;
            lt = &m->next;
        }
    }
    return live;
}

/* On a log with its own fan-out stream (Kafka): every node keeps what it
 * reads there in its unstored tail for history reads (consumer/tail.h),
 * and pushes it (natter_consumer_fanout). */
static void *fanout_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-fanout");
    natter_consumer_t *c = arg;
    natter_app_t *app = c->app;
    for (;;) {
        natter_msg_t *head = NULL;
        size_t n = natter_log_fanout_poll(app->log, &head, app->cfg.batch_size, POLL_TIMEOUT_MS);
        if (n == 0) {
            if (natter_log_drained(app->log))
                break;
            natter_tail_prune(app->tail);
            continue;
        }
        natter_consumer_fanout(app, head);
    }
    return NULL;
}

void natter_consumer_fanout(natter_app_t *app, natter_msg_t *head)
{
    natter_msg_t *replayed = NULL, *live = split_replayed(head, &replayed);
    natter_fanout_t *pushes = live != NULL ? natter_fanout_build(app, live) : NULL;
    natter_tail_add(app->tail, live);
    natter_tail_add(app->tail, replayed);
    if (pushes != NULL)
        natter_fanout_dispatch(app, pushes);
}

void natter_consumer_init(natter_consumer_t *c, natter_app_t *app)
{
    c->app = app;
    atomic_init(&c->store_failing_since_ns, 0);
    atomic_init(&c->store_error, NATTER_OK);
    atomic_init(&c->sync_failed, 0);
}

void natter_consumer_start(natter_consumer_t *c)
{
    natter_app_t *app = c->app;
    c->has_fanout_thread = natter_log_has_fanout(app->log);
    /* a log with its own fan-out stream commits offsets: its store
     * consumer keeps the one thread it polls on */
    c->has_sync_thread = !c->has_fanout_thread && natter_store_has_records_sync(app->store);
    if (c->has_sync_thread) {
        pthread_mutex_init(&c->sync_lock, NULL);
        pthread_cond_init(&c->sync_wake, NULL);
        pthread_cond_init(&c->sync_room, NULL);
        pthread_create(&c->sync_thread, NULL, sync_main, c);
    }
    pthread_create(&c->thread, NULL, consumer_main, c);
    if (c->has_fanout_thread)
        pthread_create(&c->fanout_thread, NULL, fanout_main, c);
}

void natter_consumer_join(natter_consumer_t *c)
{
    pthread_join(c->thread, NULL);
    if (c->has_sync_thread) {
        pthread_join(c->sync_thread, NULL);
        pthread_cond_destroy(&c->sync_room);
        pthread_cond_destroy(&c->sync_wake);
        pthread_mutex_destroy(&c->sync_lock);
    }
    if (c->has_fanout_thread)
        pthread_join(c->fanout_thread, NULL);
}
