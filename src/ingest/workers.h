/*
 * The API worker pool: threads that run blocking work (store queries,
 * password hashing) off the event loop. The loop submits jobs; a job's run
 * function hands its result back to the loop itself (through the loop's
 * h2o multithread queue), so the pool knows nothing about HTTP.
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
    int stopping;
    size_t n;
    pthread_t *threads;
} natter_workers_t;

void natter_workers_start(natter_workers_t *w, size_t n);
void natter_workers_submit(natter_workers_t *w, natter_job_t *job);
/* Runs what is queued, then joins every thread. */
void natter_workers_stop(natter_workers_t *w);

#endif
