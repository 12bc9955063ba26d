/*
 * One event loop: a thread running an h2o context, with its own listener
 * (SO_REUSEPORT: the kernel spreads new connections over the loops), its
 * HTTP connections and its gateway (WebSockets). Only the loop's thread
 * touches them. Other threads reach a loop through four queues, each an
 * h2o multithread receiver (a locked list and an eventfd wake-up), each
 * bounded:
 *
 *   jobs     finished API jobs from the workers; at most one per request
 *            the loop handed out, which the worker queue bounds;
 *   acks     outcomes of posts parked in the log: a lock-free stack of jobs
 *            and one wake-up per run of them (a stored batch wakes each
 *            loop once, not once per message); at most one per post the
 *            log holds, which the log bounds (--log-queue, Kafka's queue);
 *   fanout   batches of pushes, shared by every loop; at most --fanout-queue
 *            messages waiting per loop. Past that the batch is shed for this
 *            loop: the loop closes (1013) the sockets of the users it was
 *            meant for, who catch up from history, instead of growing;
 *   control  commands from main (stop listening, close and exit).
 */
#ifndef NATTER_LOOP_H
#define NATTER_LOOP_H

#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/gateway.h"
#include "ingest/api.h"
#include "natter.h"

#define NATTER_LOOP_SHED_USERS_MAX 65536 /* past it, a shedding loop closes every socket */

/* A loop's thread goes through these in order (or fails its set-up). */
typedef enum {
    NATTER_LOOP_STARTING,
    NATTER_LOOP_RUNNING,
    NATTER_LOOP_LEFT,      /* out of its loop: sockets closed or given up */
    NATTER_LOOP_DISPOSING, /* main asked it to free what is left */
    NATTER_LOOP_DISPOSED,  /* parked until the process exits */
    NATTER_LOOP_FAILED,
} natter_loop_phase_t;

struct natter_loop {
    natter_app_t *app;
    unsigned index;
    pthread_t thread;
    h2o_context_t h2o_ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    natter_gateway_t *gateway;
    natter_metrics_shard_t *metrics;

    h2o_multithread_receiver_t jobs, acks, fanout, shed, control;

    _Atomic(natter_api_job_t *) ack_head; /* pushed by any thread, taken whole by the loop */
    atomic_int ack_wake;                  /* a wake-up for acks is on its way */
    h2o_multithread_message_t ack_msg;

    atomic_size_t fanout_queued; /* messages of fan-out batches sent here, not yet pushed */

    pthread_mutex_t shed_lock;   /* guards the shed set; taken only when shedding */
    natter_u64map_t shed_users;  /* users whose pushes were dropped here */
    int shed_all;
    atomic_int shed_wake;        /* a shed waits for the loop: later batches are shed too */
    h2o_multithread_message_t shed_msg;

    pthread_mutex_t phase_lock; /* the thread's phases, for main to wait on */
    pthread_cond_t phase_cond;
    natter_loop_phase_t phase;
    char err[256];              /* why set-up failed */

    /* loop thread only */
    unsigned parked;     /* posts parked since the loop last ran out of work, in a log that has idle */
    int exiting;         /* told to close: run until the sockets are closed or the deadline */
    uint64_t exit_deadline_ns;
    int done;            /* leave the thread */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    h2o_timeout_t accept_pause_timeout; /* out of file descriptors: accept again after it */
    h2o_timeout_entry_t accept_pause;
    uint64_t accept_pause_logged_ns;
};

/* Main thread: starts loop number index on its own thread, which makes the
 * loop's h2o context (on app->h2o_config), listener and gateway there; the
 * metrics shard is registered here. Returns once the loop runs: 0, or
 * NATTER_E* with a reason (the thread then parks). */
int natter_loop_start(natter_loop_t *loop, natter_app_t *app, unsigned index, char *err, size_t errlen);

/* A loop on the calling thread, without a thread or listener of its own:
 * its h2o context (on app->h2o_config, set by natter_http_configure), the
 * receivers of its queues and its gateway. Whoever calls it runs the loop
 * (h2o_evloop_run on loop->h2o_ctx.loop): in-process tests that drive a
 * loop without a network. The context lives as long as the process. */
void natter_loop_init(natter_loop_t *loop, natter_app_t *app, unsigned index);

/* Any thread. */
void natter_loop_job_done(natter_loop_t *loop, natter_api_job_t *job);
void natter_loop_ack(natter_loop_t *loop, natter_api_job_t *job);
/* Hands the loop a reference to f (the loop drops it), or sheds f for this
 * loop when its fan-out queue is full (the reference is dropped here). */
void natter_loop_fanout(natter_loop_t *loop, natter_fanout_t *f);

/* Main thread: stop accepting connections; then, once the log is drained,
 * close every WebSocket (1001) and leave within close_wait_ms. */
void natter_loop_stop_listening(natter_loop_t *loop);
void natter_loop_close_and_exit(natter_loop_t *loop, int close_wait_ms);
/* Waits until the loop's thread left its loop. */
void natter_loop_join(natter_loop_t *loop);
/* After join, when nothing else can reach the loop: its thread answers
 * what came late, drops every socket and frees what is left, then parks
 * until the process exits (see loop.c). */
void natter_loop_dispose(natter_loop_t *loop);

#endif
