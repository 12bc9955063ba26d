/*
 * The API worker pool: threads that run blocking work (store queries,
 * password hashing) off the event loops. A loop submits jobs; a job's run
 * function hands its result back to its loop itself, so the pool knows
 * nothing about HTTP.
 *
 * The queue is bounded: past cap jobs waiting, submit refuses and the loop
 * answers 503 at once, so a flood of cache misses or logins cannot grow the
 * server's memory, and a client waits at most for the jobs ahead of it.
 */
#ifndef NATTER_WORKERS_H
#define NATTER_WORKERS_H

#include <pthread.h>
#include <stddef.h>

typedef struct natter_job natter_job_t;
struct natter_job {
    natter_job_t *next;
    void (*run)(natter_job_t *job); /* runs on a worker thread; owns the job from here */
};

typedef struct natter_workers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    natter_job_t *head, *tail;
    size_t len, cap; /* jobs waiting, and at most */
    int stopping;
    size_t n;
    pthread_t *threads;
    const char *name; /* the threads' name */
    int batch;        /* scheduled as SCHED_BATCH */
} natter_workers_t;

/* n threads, at most cap jobs waiting. */
void natter_workers_start(natter_workers_t *w, size_t n, size_t cap);
/* The same with the threads named name (a static string of at most 15
 * bytes) and, with batch, scheduled as SCHED_BATCH: CPU-bound threads (a
 * pool hashing passwords) that never preempt a thread that wakes up (an
 * event loop), at the same share of the CPU as the rest. */
void natter_workers_start_as(natter_workers_t *w, size_t n, size_t cap, const char *name, int batch);
/* Queues the job: 0, or NATTER_EUNAVAIL (the job stays the caller's) when
 * cap jobs are waiting or the pool is stopping. */
int natter_workers_submit(natter_workers_t *w, natter_job_t *job);
/* Runs what is queued, then joins every thread; submit refuses from then on. */
void natter_workers_stop(natter_workers_t *w);
/* Once nothing may submit any more (the loops are gone). */
void natter_workers_free(natter_workers_t *w);

#endif
