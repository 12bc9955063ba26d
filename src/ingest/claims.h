/*
 * The claimer: threads that claim posts' client_ids in the store in
 * batches, for a log whose records other nodes may store (Kafka; see
 * log.h's held appends and docs/architecture.md, "Idempotent sends").
 *
 * A post with a client_id takes its id in log order as a held append (on
 * its event loop, or a worker), then waits here; a free thread takes
 * every post waiting, up to a batch, claims their keys in one store call
 * (one transaction and one fsync on SQLite; lightweight transactions in
 * flight together on Cassandra) and hands each outcome to
 * natter_post_claimed: the message goes out, or the post is the holder's
 * repeat. A held message stops its partition, so batches are taken as
 * soon as a thread is free, and several threads overlap their batches'
 * round trips (a Cassandra LWT is four): a post waits here about one
 * claim's round trip. Which thread claims a post does not matter: the log
 * lets each held message out in its own order.
 *
 * The queue is bounded (its cap); past it a post is answered 503 busy.
 */
#ifndef NATTER_CLAIMS_H
#define NATTER_CLAIMS_H

#include <pthread.h>
#include <stddef.h>

struct natter_app;
struct natter_api_job;

typedef struct natter_claims {
    struct natter_app *app;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct natter_api_job *head, *tail; /* linked by claim_next */
    size_t len, cap;
    int stopping, running;
    size_t nthreads;
    pthread_t *threads;
} natter_claims_t;

/* Starts nthreads threads; at most cap posts wait. */
void natter_claims_start(natter_claims_t *c, struct natter_app *app, size_t nthreads, size_t cap);
/* Any thread: queues a post whose message (job->held) was appended held.
 * 0, or NATTER_EUNAVAIL when full or stopping: then the job and its held
 * message stay the caller's. */
int natter_claims_submit(natter_claims_t *c, struct natter_api_job *job);
/* Claims what is queued, then joins the threads; submit refuses from then
 * on. A no-op when never started. */
void natter_claims_stop(natter_claims_t *c);

#endif
