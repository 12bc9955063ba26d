#include "ingest/workers.h"
#include "core/error.h"
#include "core/util.h"

#include <stdlib.h>

static void *worker_main(void *arg)
{
    natter_workers_t *w = arg;
    pthread_setname_np(pthread_self(), w->name);
    if (w->batch)
        natter_sched_batch();
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        natter_job_t *job = w->head;
        if (job == NULL)
            break; /* stopping and nothing left */
        w->head = job->next;
        if (w->head == NULL)
            w->tail = NULL;
        w->len--;
        pthread_mutex_unlock(&w->lock);
        job->run(job);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

void natter_workers_start(natter_workers_t *w, size_t n, size_t cap)
{
    natter_workers_start_as(w, n, cap, "natter-worker", 0);
}

void natter_workers_start_as(natter_workers_t *w, size_t n, size_t cap, const char *name, int batch)
{
    w->name = name;
    w->batch = batch;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->head = w->tail = NULL;
    w->len = 0;
    w->cap = cap;
    w->stopping = 0;
    w->n = n;
    w->threads = xcalloc(n, sizeof(pthread_t));
    for (size_t i = 0; i < n; i++)
        pthread_create(&w->threads[i], NULL, worker_main, w);
}

int natter_workers_submit(natter_workers_t *w, natter_job_t *job)
{
    int rc = NATTER_OK;
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping || w->len >= w->cap) {
        rc = NATTER_EUNAVAIL;
    } else {
        if (w->tail)
            w->tail->next = job;
        else
            w->head = job;
        w->tail = job;
        w->len++;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void natter_workers_stop(natter_workers_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    w->threads = NULL;
    w->n = 0;
}

void natter_workers_free(natter_workers_t *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}
