/*
 * The embedded log: an in-process, bounded queue between the event loops
 * (and workers) that append and the store consumer that polls. Nothing is
 * durable here; durability comes from the store, so a message's on_durable
 * fires from commit(), after the SQLite transaction holding it committed. A
 * crash loses only messages no client was told about.
 *
 * The queue is split into shards by chat, each a list behind its own
 * mutex: appenders on different loops contend only when they post to chats
 * of the same shard. An id is issued (lock-free) under the shard's lock, so
 * within a chat id order is append order is the order the consumer stores
 * and pushes in. The consumer takes whole runs of each shard, its batches
 * at least the batch time apart (group commit; see local_poll) unless a
 * loop ran out of work with a batch as large as the last one queued
 * (local_idle): its clients wait for their answers, none will add to it,
 * so it goes at once. The length
 * bound (--log-queue) is one atomic count; the consumer sleeps on a
 * condition variable only when the queue is empty, and an appender wakes it
 * only then.
 *
 * The ephemeral path (typing, read receipts, presence) is a second, plain
 * queue: one node, so whatever is published here is polled here.
 */
#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "log/log.h"

#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define SHARDS 16

typedef struct {
    pthread_mutex_t lock;
    natter_msg_t *head, *tail;
} __attribute__((aligned(64))) shard_t;

enum { AWAKE = 0, WAIT_ANY, WAIT_FULL }; /* what the sleeping consumer waits for */

typedef struct {
    natter_log_t base;
    shard_t shards[SHARDS];
    atomic_size_t len;    /* messages queued over every shard */
    size_t cap;
    atomic_int closed;
    natter_idgen_t ids;
    uint32_t batch_time_ms;
    unsigned next_shard;  /* consumer: where the next take starts, for fairness */
    uint64_t last_take_ns; /* consumer: when it took its last batch (natter_mono_ns) */
    atomic_int waiting;   /* AWAKE, or what the consumer sleeps for */
    atomic_int loop_idle; /* a loop that appended ran out of work since the last take */
    atomic_size_t last_n; /* how many the consumer's last take took */
    atomic_size_t want;   /* WAIT_FULL: how many make a full batch */
    pthread_mutex_t wait_lock;
    pthread_cond_t wake;
    /* the ephemeral path: bounded by cap too */
    pthread_mutex_t eph_lock;
    pthread_cond_t eph_wake;
    natter_msg_t *eph_head, **eph_tail;
    size_t eph_len;
} log_local_t;

static int local_open(natter_log_t *log, const natter_config_t *cfg, char *err, size_t errlen)
{
    log_local_t *l = (log_local_t *)log;
    (void)err, (void)errlen;
    for (size_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    pthread_mutex_init(&l->wait_lock, NULL);
    natter_mono_cond_init(&l->wake);
    natter_mono_cond_init(&l->eph_wake);
    pthread_mutex_init(&l->eph_lock, NULL);
    l->eph_tail = &l->eph_head;
    atomic_init(&l->len, 0);
    atomic_init(&l->closed, 0);
    atomic_init(&l->waiting, AWAKE);
    atomic_init(&l->want, 0);
    atomic_init(&l->loop_idle, 0);
    atomic_init(&l->last_n, 0);
    l->cap = cfg->log_queue;
    l->batch_time_ms = cfg->batch_time_ms;
    natter_idgen_init(&l->ids, cfg->node_id);
    return NATTER_OK;
}

static void local_close(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    for (size_t i = 0; i < SHARDS; i++) {
        natter_log_fail_all(l->shards[i].head);
        pthread_mutex_destroy(&l->shards[i].lock);
    }
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->wait_lock);
    natter_msg_free_list(l->eph_head);
    pthread_cond_destroy(&l->eph_wake);
    pthread_mutex_destroy(&l->eph_lock);
}

/* The lock is taken only to wait until a consumer that announced its sleep
 * is inside its wait (so the signal cannot fall between its last check and
 * the wait); the signal comes after the unlock, so the consumer it wakes
 * does not wake only to block on the lock this thread still holds. */
static void wake_consumer(log_local_t *l)
{
    pthread_mutex_lock(&l->wait_lock);
    pthread_mutex_unlock(&l->wait_lock);
    pthread_cond_signal(&l->wake);
}

static int local_append(natter_log_t *log, natter_msg_t *msg)
{
    log_local_t *l = (log_local_t *)log;
    /* counted before closed is read: a drain that finds len 0 after the log
     * closed (natter_log_drained) cannot miss an append that read it open */
    size_t len = atomic_fetch_add(&l->len, 1) + 1;
    if (atomic_load(&l->closed)) {
        atomic_fetch_sub(&l->len, 1);
        return NATTER_EUNAVAIL;
    }
    if (len > l->cap) {
        atomic_fetch_sub(&l->len, 1);
        return NATTER_EFULL;
    }
    shard_t *sh = &l->shards[natter_mix64(msg->chat_id) % SHARDS];
    msg->next = NULL;
    pthread_mutex_lock(&sh->lock);
    msg->id = natter_idgen_next(&l->ids, natter_now_ms());
    msg->created_at_ms = natter_id_time_ms(msg->id);
    if (sh->tail)
        sh->tail->next = msg;
    else
        sh->head = msg;
    sh->tail = msg;
    pthread_mutex_unlock(&sh->lock);
    /* len was raised before the message was linked: a consumer that saw it
     * and found the shards short takes the message with its next batch
     * (at most a batch time later); it stays counted in len till then */
    int waiting = atomic_load(&l->waiting);
    if (waiting == WAIT_ANY || (waiting == WAIT_FULL && len >= atomic_load(&l->want)))
        wake_consumer(l);
    return NATTER_OK;
}

/* Sleeps until ready() or the deadline; ready is re-checked after the
 * consumer announced what it waits for, so no append is missed. */
static void sleep_until(log_local_t *l, int what, size_t want, const struct timespec *until)
{
    atomic_store(&l->want, want);
    pthread_mutex_lock(&l->wait_lock);
    atomic_store(&l->waiting, what);
    while (!atomic_load(&l->closed) && atomic_load(&l->len) < want &&
           !(what == WAIT_FULL && atomic_load(&l->loop_idle)))
        if (pthread_cond_timedwait(&l->wake, &l->wait_lock, until) == ETIMEDOUT)
            break;
    atomic_store(&l->waiting, AWAKE);
    pthread_mutex_unlock(&l->wait_lock);
}

/* Moves up to max messages from the shards into a list; returns how many. */
static size_t take(log_local_t *l, natter_msg_t **head, size_t max)
{
    natter_msg_t **tail = head;
    size_t n = 0;
    for (unsigned k = 0; k < SHARDS && n < max; k++) {
        shard_t *sh = &l->shards[(l->next_shard + k) % SHARDS];
        pthread_mutex_lock(&sh->lock);
        natter_msg_t *m = sh->head, *last = NULL;
        size_t taken = 0;
        while (m != NULL && n + taken < max) {
            last = m;
            m = m->next;
            taken++;
        }
        if (taken > 0) {
            *tail = sh->head;
            tail = &last->next;
            sh->head = m;
            if (m == NULL)
                sh->tail = NULL;
        }
        pthread_mutex_unlock(&sh->lock);
        n += taken;
    }
    *tail = NULL;
    l->next_shard = (l->next_shard + 1) % SHARDS;
    atomic_fetch_sub(&l->len, n);
    return n;
}

static size_t local_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_local_t *l = (log_local_t *)log;
    struct timespec until;
    natter_mono_deadline(&until, timeout_ms);
    if (atomic_load(&l->len) == 0)
        sleep_until(l, WAIT_ANY, 1, &until);
    if (atomic_load(&l->len) == 0)
        return 0;
    uint64_t now = natter_mono_ns();
    uint64_t start = l->last_take_ns + (uint64_t)l->batch_time_ms * 1000000u;
    if (now < start && atomic_load(&l->len) < max && !atomic_load(&l->closed) && !atomic_load(&l->loop_idle)) {
        /* group commit: batches start at least the batch time apart, so the
         * next one fills while the last is stored; a message that finds the
         * consumer idle longer than that goes at once, and so does a batch
         * once a loop that appended to it ran out of work (local_idle) */
        until = natter_mono_timespec(start);
        sleep_until(l, WAIT_FULL, max, &until);
        now = natter_mono_ns();
    }
    l->last_take_ns = now;
    atomic_store(&l->loop_idle, 0);
    size_t n = take(l, head, max);
    atomic_store(&l->last_n, n);
    return n;
}

static void local_commit(natter_log_t *log, natter_msg_t *head, int status)
{
    (void)log;
    for (natter_msg_t *m = head; m != NULL; m = m->next)
        natter_log_durable(m, status);
}

static void local_ids_after(natter_log_t *log, uint64_t id)
{
    natter_idgen_start_after(&((log_local_t *)log)->ids, id);
}

/* A loop ran out of work. A batch queued as large as the last one taken
 * goes at once (local_poll); a smaller one waits out the batch time, so
 * batches do not shrink while posts keep coming spread out. */
static void local_idle(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    size_t len = atomic_load(&l->len);
    if (atomic_load(&l->loop_idle) || len == 0 || len < atomic_load(&l->last_n))
        return;
    atomic_store(&l->loop_idle, 1);
    if (atomic_load(&l->waiting) == WAIT_FULL)
        wake_consumer(l);
}

static int local_ping(natter_log_t *log)
{
    return atomic_load(&((log_local_t *)log)->closed) ? NATTER_EUNAVAIL : NATTER_OK;
}

static void local_shutdown(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    atomic_store(&l->closed, 1);
    wake_consumer(l);
}

static int local_drained(natter_log_t *log)
{
    log_local_t *l = (log_local_t *)log;
    return atomic_load(&l->closed) && atomic_load(&l->len) == 0;
}

static int local_publish(natter_log_t *log, natter_msg_t *ev)
{
    log_local_t *l = (log_local_t *)log;
    if (atomic_load(&l->closed))
        return NATTER_EUNAVAIL;
    ev->next = NULL;
    ev->id = natter_idgen_next(&l->ids, natter_now_ms());
    ev->created_at_ms = natter_id_time_ms(ev->id);
    pthread_mutex_lock(&l->eph_lock);
    int full = l->eph_len >= l->cap;
    if (!full) {
        *l->eph_tail = ev;
        l->eph_tail = &ev->next;
        if (l->eph_len++ == 0)
            pthread_cond_signal(&l->eph_wake);
    }
    pthread_mutex_unlock(&l->eph_lock);
    return full ? NATTER_EUNAVAIL : NATTER_OK;
}

static size_t local_ephemeral_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_local_t *l = (log_local_t *)log;
    struct timespec until;
    natter_mono_deadline(&until, timeout_ms);
    pthread_mutex_lock(&l->eph_lock);
    while (l->eph_len == 0)
        if (pthread_cond_timedwait(&l->eph_wake, &l->eph_lock, &until) == ETIMEDOUT)
            break;
    size_t n = 0;
    natter_msg_t **tail = head;
    while (n < max && l->eph_head != NULL) {
        *tail = l->eph_head;
        tail = &l->eph_head->next;
        l->eph_head = l->eph_head->next;
        n++;
    }
    *tail = NULL;
    if (l->eph_head == NULL)
        l->eph_tail = &l->eph_head;
    l->eph_len -= n;
    pthread_mutex_unlock(&l->eph_lock);
    return n;
}

const natter_log_ops_t natter_log_local = {
    .version = 9,
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
    .publish = local_publish,
    .ephemeral_poll = local_ephemeral_poll,
    .idle = local_idle,
    .ids_after = local_ids_after,
};
