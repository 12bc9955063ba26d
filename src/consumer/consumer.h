/*
 * The store consumer: one thread that turns the log into stored history and
 * pushes. Each turn: poll a batch from the log (bounded by --batch-size and
 * --batch-time), write it to the store in one batch, commit it to the log
 * (which answers the posters in embedded mode, through their loops), then
 * build the batch's push frames once and hand every event loop the batch.
 *
 * With the local log, push happens only after the store has the batch, so
 * whatever a socket was shown is already in history. With a log that has
 * its own fan-out stream (Kafka: each node reads every partition), a second
 * thread pushes what that stream yields, and the store consumer only stores.
 */
#ifndef NATTER_CONSUMER_H
#define NATTER_CONSUMER_H

#include <pthread.h>

struct natter_app;

typedef struct natter_consumer {
    struct natter_app *app;
    pthread_t thread;
    pthread_t fanout_thread; /* only when the log has its own fan-out stream */
    int has_fanout_thread;
} natter_consumer_t;

void natter_consumer_start(natter_consumer_t *c, struct natter_app *app);
/* Returns once the log is drained (call natter_log_shutdown first). */
void natter_consumer_join(natter_consumer_t *c);

#endif
