#include "ingest/claims.h"
#include "core/error.h"
#include "core/util.h"
#include "ingest/api.h"
#include "ingest/post.h"
#include "natter.h"

#include <stdlib.h>

#define BATCH_MAX 512

static void claim_batch(natter_claims_t *c, natter_api_job_t **jobs, size_t n)
{
    natter_msg_t *msgs[BATCH_MAX], *holders[BATCH_MAX] = {0};
    int rc[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        msgs[i] = jobs[i]->held;
    natter_store_client_ids_claim(c->app->store, msgs, n, natter_now_ms(), rc, holders);
    for (size_t i = 0; i < n; i++)
        natter_post_claimed(jobs[i], rc[i], holders[i]);
}

static void *claimer_main(void *arg)
{
    natter_claims_t *c = arg;
    natter_api_job_t *jobs[BATCH_MAX];
    pthread_setname_np(pthread_self(), "natter-claims");
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&c->lock);
        while (c->head == NULL && !c->stopping)
            pthread_cond_wait(&c->cond, &c->lock);
        while (c->head != NULL && n < BATCH_MAX) {
            jobs[n++] = c->head;
            c->head = c->head->claim_next;
            c->len--;
        }
        if (c->head == NULL)
            c->tail = NULL;
        pthread_mutex_unlock(&c->lock);
        if (n == 0)
            break; /* stopping, and nothing left */
        claim_batch(c, jobs, n);
    }
    return NULL;
}

void natter_claims_start(natter_claims_t *c, natter_app_t *app, size_t nthreads, size_t cap)
{
    c->app = app;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->head = c->tail = NULL;
    c->len = 0;
    c->cap = cap;
    c->stopping = 0;
    c->running = 1;
    c->nthreads = nthreads;
    c->threads = xcalloc(nthreads, sizeof(pthread_t));
    for (size_t i = 0; i < nthreads; i++)
        pthread_create(&c->threads[i], NULL, claimer_main, c);
}

int natter_claims_submit(natter_claims_t *c, natter_api_job_t *job)
{
    int rc = NATTER_OK;
    job->claim_next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->stopping || c->len >= c->cap) {
        rc = NATTER_EUNAVAIL;
    } else {
        *(c->tail ? &c->tail->claim_next : &c->head) = job;
        c->tail = job;
        c->len++;
        pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void natter_claims_stop(natter_claims_t *c)
{
    if (!c->running)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    free(c->threads);
    c->threads = NULL;
    c->running = 0; /* the lock stays: a loop may still try to submit, and is refused */
}
