/*
 * The embedded log: an in-process, bounded FIFO between the API workers and
 * the store consumer. Nothing is durable here; durability comes from the
 * store, so a message's on_durable fires from commit(), after the SQLite
 * transaction holding it committed. A crash loses only messages no client
 * was told about.
 *
 * One mutex guards the queue and the id generator, so that id order is log
 * order: the consumer stores and fans out in the order ids were issued.
 */
#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "log/log.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    natter_log_t base;
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    natter_msg_t *head, *tail;
    size_t len, cap;
    uint32_t batch_time_ms;
    int closed;
    natter_idgen_t ids;
} log_local_t;

static int local_open(natter_log_t *log, const natter_config_t *cfg, char *err, size_t errlen)
{
    log_local_t *l = (log_local_t *)log;
    (void)err, (void)errlen;
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->nonempty, &attr);
    pthread_condattr_destroy(&attr);
    l->cap = cfg->log_queue;
    l->batch_time_ms = cfg->batch_time_ms;
    natter_idgen_init(&l->ids, cfg->node_id);
    return NATTER_OK;
}

static void fail_all(natter_msg_t *m, int status)
{
    while (m != NULL) {
        natter_msg_t *next = m->next;
        m->on_durable(m, status, m->durable_arg);
        free(m);
        m = next;
    }
}

static void local_close(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    fail_all(l->head, NATTER_EUNAVAIL);
    pthread_cond_destroy(&l->nonempty);
    pthread_mutex_destroy(&l->lock);
}

static int local_append(natter_log_t *log, natter_msg_t *msg)
{
    log_local_t *l = (log_local_t *)log;
    int rc = NATTER_OK;
    pthread_mutex_lock(&l->lock);
    if (l->closed || l->len >= l->cap) {
        rc = NATTER_EUNAVAIL;
    } else {
        int64_t now = natter_now_ms();
        msg->id = natter_idgen_next(&l->ids, now);
        msg->created_at_ms = natter_id_time_ms(msg->id);
        msg->next = NULL;
        if (l->tail)
            l->tail->next = msg;
        else
            l->head = msg;
        l->tail = msg;
        l->len++;
        pthread_cond_signal(&l->nonempty); /* cheap without a waiter; wakes a filling batch too */
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

static size_t local_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_local_t *l = (log_local_t *)log;
    struct timespec until;
    size_t n = 0;
    pthread_mutex_lock(&l->lock);
    deadline_after(&until, timeout_ms);
    while (l->len == 0 && !l->closed)
        if (pthread_cond_timedwait(&l->nonempty, &l->lock, &until) == ETIMEDOUT)
            break;
    if (l->len > 0 && l->len < max && l->batch_time_ms > 0 && !l->closed) {
        /* let the batch fill until it is full or its time is up */
        deadline_after(&until, (int)l->batch_time_ms);
        while (l->len < max && !l->closed)
            if (pthread_cond_timedwait(&l->nonempty, &l->lock, &until) == ETIMEDOUT)
                break;
    }
    natter_msg_t *m = l->head, *last = NULL;
    while (m != NULL && n < max) {
        last = m;
        m = m->next;
        n++;
    }
    if (n > 0) {
        *head = l->head;
        last->next = NULL;
        l->head = m;
        if (m == NULL)
            l->tail = NULL;
        l->len -= n;
    }
    pthread_mutex_unlock(&l->lock);
    return n;
}

static void local_commit(natter_log_t *log, natter_msg_t *head, int status)
{
    (void)log;
    for (natter_msg_t *m = head; m != NULL; m = m->next)
        m->on_durable(m, status, m->durable_arg);
}

static int local_ping(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    pthread_mutex_lock(&l->lock);
    int rc = l->closed ? NATTER_EUNAVAIL : NATTER_OK;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static void local_shutdown(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    pthread_mutex_lock(&l->lock);
    l->closed = 1;
    pthread_cond_broadcast(&l->nonempty);
    pthread_mutex_unlock(&l->lock);
}

static int local_drained(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    pthread_mutex_lock(&l->lock);
    int rc = l->closed && l->len == 0;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

const natter_log_ops_t natter_log_local = {
    .version = 1,
    .size = sizeof(log_local_t),
    .name = "local",
    .open = local_open,
    .close = local_close,
    .append = local_append,
    .poll = local_poll,
    .commit = local_commit,
    .ping = local_ping,
    .shutdown = local_shutdown,
    .drained = local_drained,
};
