/*
 * The store consumer: one thread that turns the log into stored history and
 * pushes. Each turn: poll a batch from the log (bounded by --batch-size and
 * --batch-time), write it to the store in one batch, commit it to the log
 * (which answers the posters in embedded mode, through their loops), then
 * build the batch's push frames once and hand every event loop the batch.
 *
 * With the local log, push happens only after the store has the batch, so
 * whatever a socket was shown is already in history. On a store that
 * writes a batch apart from syncing it (store.h, records_sync), the local
 * log's turn ends at the write: a second thread, the sync stage, takes the
 * batches written so far, syncs them with one call, then commits them to
 * the log and hands them to the loops, in order, while the consumer writes
 * the next. At most NATTER_CONSUMER_SYNC_QUEUE batches wait for it; the
 * consumer waits when that many do. A sync that fails stops the writes for
 * good (as PostgreSQL does: the kernel may have dropped the pages it could
 * not write, and a later sync would not say so): every batch after it is
 * answered NATTER_EIO unwritten and the node stays unready until it is
 * restarted, when SQLite recovers the WAL as the disk has it. With a log that has
 * its own fan-out stream (Kafka: each node reads every partition), a second
 * thread pushes what that stream yields, and the store consumer only stores.
 */
#ifndef NATTER_CONSUMER_H
#define NATTER_CONSUMER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct natter_app;
struct natter_msg;

#define NATTER_CONSUMER_SYNC_QUEUE 8

/* A written batch on its way to the sync stage, with its outcome so far. */
typedef struct natter_consumer_written {
    struct natter_msg *head;
    int rc;
} natter_consumer_written_t;

typedef struct natter_consumer {
    struct natter_app *app;
    pthread_t thread;
    pthread_t fanout_thread; /* only when the log has its own fan-out stream */
    int has_fanout_thread;
    /* the sync stage, only when has_sync_thread: a ring of written batches
     * from the consumer (under sync_lock) */
    pthread_t sync_thread;
    int has_sync_thread;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_wake; /* the ring has a batch, or the consumer is done */
    pthread_cond_t sync_room; /* the ring has room */
    natter_consumer_written_t written[NATTER_CONSUMER_SYNC_QUEUE];
    size_t written_first, written_len;
    int written_done;
    atomic_int sync_failed; /* a sync failed: no batch is written again until a restart */
    _Atomic uint64_t store_failing_since_ns; /* 0 while batches get stored */
    atomic_int store_error;                  /* the last batch's NATTER_E* */
} natter_consumer_t;

/* Before any thread may ask natter_consumer_status. */
void natter_consumer_init(natter_consumer_t *c, struct natter_app *app);
void natter_consumer_start(natter_consumer_t *c);
/* Returns once the log is drained (call natter_log_shutdown first). */
void natter_consumer_join(natter_consumer_t *c);
/* 0 when the consumer consumes and stores; NATTER_EUNAVAIL with a reason in
 * why when it has not been able to for longer than a store timeout (the
 * store refusing or away), or the log says its consumer cannot consume
 * (fenced, the broker away). Any thread. */
int natter_consumer_status(natter_consumer_t *c, char *why, size_t len);
/* What the fan-out thread does with a batch read from the log's fan-out
 * stream (a log with one: Kafka), on that thread: builds the pushes of its
 * live records, keeps the whole batch in app->tail (which takes it), and
 * only then hands the pushes to the loops. A socket registered after its
 * loop pushed the batch opened after the tail had it, so its client's
 * history read finds every message of it, stored or not. */
void natter_consumer_fanout(struct natter_app *app, struct natter_msg *head);

#endif
