/*
 * An event loop and its queues (see loop.h). Map of this file:
 *   set-up      natter_loop_init, the thread
 *   jobs/acks   answers coming back from workers and from the log
 *   fan-out     batches of pushes in, with the shedding policy
 *   control     stop listening, close and exit
 */
#include "loop.h"
#include "core/error.h"
#include "core/util.h"
#include "ingest/events.h"
#include "ingest/http.h"
#include "ingest/post.h"

#include <stdio.h>
#include <stdlib.h>

#define TICK_MS 10

typedef enum { CMD_STOP_LISTENING, CMD_CLOSE_AND_EXIT } command_kind_t;

typedef struct {
    h2o_multithread_message_t super;
    command_kind_t kind;
    int close_wait_ms;
} command_t;

/* ------------------------------------------------------------ jobs and acks */

static void on_jobs(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, jobs, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        natter_api_job_t *job = H2O_STRUCT_FROM_MEMBER(natter_api_job_t, done.link, messages->next);
        h2o_linklist_unlink(&job->done.link);
        natter_http_answer(loop, job);
    }
}

void natter_loop_job_done(natter_loop_t *loop, natter_api_job_t *job)
{
    h2o_multithread_send_message(&loop->jobs, &job->done);
}

/* Takes every job on the ack stack, oldest first. The wake-up flag is
 * cleared before the stack is taken: a job pushed after that either is in
 * what we take, or its pusher sees the flag clear and wakes us again. */
static natter_api_job_t *take_acks(natter_loop_t *loop)
{
    atomic_store(&loop->ack_wake, 0);
    natter_api_job_t *job = atomic_exchange(&loop->ack_head, NULL), *oldest_first = NULL;
    while (job != NULL) {
        natter_api_job_t *next = job->ack_next;
        job->ack_next = oldest_first;
        oldest_first = job;
        job = next;
    }
    return oldest_first;
}

static void on_acks(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, acks, receiver);
    h2o_linklist_unlink(messages->next); /* the one ack_msg */
    for (natter_api_job_t *job = take_acks(loop), *next; job != NULL; job = next) {
        next = job->ack_next;
        if (natter_events_parked(job))
            natter_events_answer(job);
        else
            natter_post_answer(job);
        natter_http_answer(loop, job);
    }
}

void natter_loop_ack(natter_loop_t *loop, natter_api_job_t *job)
{
    natter_api_job_t *head = atomic_load(&loop->ack_head);
    do
        job->ack_next = head;
    while (!atomic_compare_exchange_weak(&loop->ack_head, &head, job));
    if (!atomic_exchange(&loop->ack_wake, 1))
        h2o_multithread_send_message(&loop->acks, &loop->ack_msg);
}

/* ------------------------------------------------------------ fan-out */

static void on_fanout(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, fanout, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        natter_fanout_link_t *link = H2O_STRUCT_FROM_MEMBER(natter_fanout_link_t, super.link, messages->next);
        h2o_linklist_unlink(&link->super.link);
        natter_fanout_t *f = link->batch;
        uint64_t started = natter_mono_ns();
        natter_gateway_fanout(loop->gateway, f);
        natter_hist_observe(&natter_m()->broadcast, natter_mono_ns() - started);
        atomic_fetch_sub(&loop->fanout_queued, f->n);
        natter_fanout_unref(f);
    }
}

/* Any thread, under nothing: remembers f's members as users this loop must
 * close, because it will not push f to them. */
static void shed(natter_loop_t *loop, const natter_fanout_t *f)
{
    pthread_mutex_lock(&loop->shed_lock);
    for (size_t i = 0; i < f->n && !loop->shed_all; i++) {
        const natter_fanout_item_t *it = &f->items[i];
        for (uint32_t m = 0; m < it->nmembers; m++)
            natter_u64map_put(&loop->shed_users, f->members[it->first_member + m], loop);
        if (loop->shed_users.len > NATTER_LOOP_SHED_USERS_MAX)
            loop->shed_all = 1;
    }
    if (loop->shed_all)
        natter_u64map_free(&loop->shed_users);
    pthread_mutex_unlock(&loop->shed_lock);
    if (!atomic_exchange(&loop->shed_wake, 1))
        h2o_multithread_send_message(&loop->shed, &loop->shed_msg);
}

static void on_shed(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, shed, receiver);
    h2o_linklist_unlink(messages->next); /* the one shed_msg */
    atomic_store(&loop->shed_wake, 0);
    pthread_mutex_lock(&loop->shed_lock);
    natter_u64map_t users = loop->shed_users;
    int all = loop->shed_all;
    natter_u64map_init(&loop->shed_users);
    loop->shed_all = 0;
    pthread_mutex_unlock(&loop->shed_lock);

    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    for (size_t i = 0; i < users.cap; i++)
        if (users.keys[i])
            *(uint64_t *)natter_vec_push(&ids) = users.keys[i];
    natter_gateway_shed(loop->gateway, ids.items, ids.len, all);
    natter_vec_free(&ids);
    natter_u64map_free(&users);
}

void natter_loop_fanout(natter_loop_t *loop, natter_fanout_t *f)
{
    size_t cap = loop->app->cfg.fanout_queue;
    size_t before = atomic_fetch_add(&loop->fanout_queued, f->n);
    /* While a shed waits for the loop, later batches are shed too: one that
     * fits would reach a shed user's socket before its close, and the user
     * would resume after it, past the shed batch's messages. A session's
     * end is never shed: it pushes nothing, and its sockets must close as
     * ended (4001), not as shed (1013, whose client reconnects). */
    if (!f->ends_session && (atomic_load(&loop->shed_wake) || (before > 0 && before + f->n > cap))) {
        atomic_fetch_sub(&loop->fanout_queued, f->n);
        shed(loop, f);
        natter_fanout_unref(f);
        return;
    }
    natter_fanout_link_t *link = &f->links[loop->index];
    link->batch = f;
    h2o_multithread_send_message(&loop->fanout, &link->super);
}

/* ------------------------------------------------------------ control */

static void tick(h2o_timeout_entry_t *entry)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, tick, entry);
    if (natter_gateway_close_all(loop->gateway, 1001, "server shutting down") == 0 ||
        natter_mono_ns() >= loop->exit_deadline_ns)
        loop->done = 1;
    else
        h2o_timeout_link(loop->h2o_ctx.loop, &loop->tick_timeout, &loop->tick);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_loop_t *loop = H2O_STRUCT_FROM_MEMBER(natter_loop_t, control, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        command_t *cmd = H2O_STRUCT_FROM_MEMBER(command_t, super.link, messages->next);
        h2o_linklist_unlink(&cmd->super.link);
        if (cmd->kind == CMD_STOP_LISTENING) {
            natter_http_stop_listening(loop);
        } else if (!loop->exiting) {
            /* on the next tick, after whatever else this turn delivers */
            loop->exiting = 1;
            loop->exit_deadline_ns = natter_mono_ns() + (uint64_t)cmd->close_wait_ms * 1000000u;
            h2o_timeout_link(loop->h2o_ctx.loop, &loop->tick_timeout, &loop->tick);
        }
        free(cmd);
    }
}

static void command(natter_loop_t *loop, command_kind_t kind, int close_wait_ms)
{
    command_t *cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = kind;
    cmd->close_wait_ms = close_wait_ms;
    h2o_multithread_send_message(&loop->control, &cmd->super);
}

void natter_loop_stop_listening(natter_loop_t *loop)
{
    command(loop, CMD_STOP_LISTENING, 0);
}

void natter_loop_close_and_exit(natter_loop_t *loop, int close_wait_ms)
{
    command(loop, CMD_CLOSE_AND_EXIT, close_wait_ms);
}

/* ------------------------------------------------------------ set-up */

/* Under phase_lock: moves the loop to phase and tells whoever waits. */
static void enter(natter_loop_t *loop, natter_loop_phase_t phase)
{
    loop->phase = phase;
    pthread_cond_broadcast(&loop->phase_cond);
}

/* Under phase_lock: waits until the loop reached phase (or failed). */
static void await(natter_loop_t *loop, natter_loop_phase_t phase)
{
    while (loop->phase < phase && loop->phase != NATTER_LOOP_FAILED)
        pthread_cond_wait(&loop->phase_cond, &loop->phase_lock);
}

/* The loop's state that any thread may touch: its queues' counters and locks. */
static void init_shared(natter_loop_t *loop, natter_app_t *app, unsigned index)
{
    loop->app = app;
    loop->index = index;
    atomic_init(&loop->ack_head, NULL);
    atomic_init(&loop->ack_wake, 0);
    atomic_init(&loop->fanout_queued, 0);
    atomic_init(&loop->shed_wake, 0);
    pthread_mutex_init(&loop->shed_lock, NULL);
    natter_u64map_init(&loop->shed_users);
}

/* The h2o context, the receivers of the queues, the gateway. */
static void init_context(natter_loop_t *loop)
{
    natter_app_t *app = loop->app;
    h2o_context_init(&loop->h2o_ctx, h2o_evloop_create(), &app->h2o_config);
    loop->accept_ctx.ctx = &loop->h2o_ctx;
    loop->accept_ctx.hosts = app->h2o_config.hosts;
    loop->accept_ctx.ssl_ctx = app->tls;
    h2o_multithread_queue_t *q = loop->h2o_ctx.queue;
    h2o_multithread_register_receiver(q, &loop->jobs, on_jobs);
    h2o_multithread_register_receiver(q, &loop->acks, on_acks);
    h2o_multithread_register_receiver(q, &loop->fanout, on_fanout);
    h2o_multithread_register_receiver(q, &loop->shed, on_shed);
    h2o_multithread_register_receiver(q, &loop->control, on_control);
    h2o_timeout_init(loop->h2o_ctx.loop, &loop->tick_timeout, TICK_MS);
    loop->tick.cb = tick;
    loop->gateway = natter_gateway_new(loop);
}

void natter_loop_init(natter_loop_t *loop, natter_app_t *app, unsigned index)
{
    init_shared(loop, app, index);
    init_context(loop);
}

/* Everything of h2o's is made, used and freed on the loop's own thread:
 * h2o's memory caches are per thread (a socket's buffers come from the
 * cache of the thread that made the socket). */
static int setup(natter_loop_t *loop)
{
    init_context(loop);
    return natter_http_listen(loop, loop->err, sizeof(loop->err));
}

static void dispose(natter_loop_t *loop)
{
    /* what reached the loop after it left (a broker's late delivery
     * reports at close) is answered, or dropped with its socket */
    h2o_evloop_run(loop->h2o_ctx.loop, 0);
    natter_gateway_free(loop->gateway);
    loop->gateway = NULL;
    if (h2o_timeout_is_linked(&loop->tick))
        h2o_timeout_unlink(&loop->tick);
    h2o_evloop_run(loop->h2o_ctx.loop, 0); /* frees the sockets just closed */
    h2o_multithread_unregister_receiver(loop->h2o_ctx.queue, &loop->jobs);
    h2o_multithread_unregister_receiver(loop->h2o_ctx.queue, &loop->acks);
    h2o_multithread_unregister_receiver(loop->h2o_ctx.queue, &loop->fanout);
    h2o_multithread_unregister_receiver(loop->h2o_ctx.queue, &loop->shed);
    h2o_multithread_unregister_receiver(loop->h2o_ctx.queue, &loop->control);
    /* The h2o context stays: h2o 2.2 cannot dispose a context while
     * keep-alive connections are open (it asserts), offers no way to close
     * them all, and the process exits right after this. */
}

/* One turn of the loop. After a turn that parked posts in a log that
 * wants to know (natter_log_has_idle: the local log), the next only looks
 * for more work; when it finds none, the loop tells the log it ran out
 * (natter_log_idle), so a batch waiting out its batch time need not wait
 * for posts this loop will not bring. */
static void run_once(natter_loop_t *loop)
{
    unsigned before = loop->parked;
    h2o_evloop_run(loop->h2o_ctx.loop, before > 0 ? 0 : INT32_MAX);
    if (before > 0 && loop->parked == before) {
        loop->parked = 0;
        natter_log_idle(loop->app->log);
    }
}

/* The loop's thread: set-up, the loop until told to exit, disposal when
 * main says, then it parks: h2o keeps per-thread caches of memory and
 * offers no way to free them, so the thread stays until the process exits
 * and they stay its own. */
static void *loop_main(void *arg)
{
    natter_loop_t *loop = arg;
    char name[16];
    snprintf(name, sizeof(name), "natter-loop-%u", loop->index);
    pthread_setname_np(pthread_self(), name);
    natter_metrics_use(loop->metrics);
    int rc = setup(loop);
    pthread_mutex_lock(&loop->phase_lock);
    enter(loop, rc == NATTER_OK ? NATTER_LOOP_RUNNING : NATTER_LOOP_FAILED);
    pthread_mutex_unlock(&loop->phase_lock);
    while (rc == NATTER_OK && !loop->done)
        run_once(loop);
    pthread_mutex_lock(&loop->phase_lock);
    if (rc == NATTER_OK) {
        enter(loop, NATTER_LOOP_LEFT);
        await(loop, NATTER_LOOP_DISPOSING);
        pthread_mutex_unlock(&loop->phase_lock);
        dispose(loop);
        pthread_mutex_lock(&loop->phase_lock);
        enter(loop, NATTER_LOOP_DISPOSED);
    }
    while (1)
        pthread_cond_wait(&loop->phase_cond, &loop->phase_lock);
    return NULL;
}

int natter_loop_start(natter_loop_t *loop, natter_app_t *app, unsigned index, char *err, size_t errlen)
{
    if ((loop->metrics = natter_metrics_shard_new()) == NULL) {
        snprintf(err, errlen, "too many event loops for the metrics (at most %d)", NATTER_METRICS_SHARDS_MAX);
        return NATTER_EINVAL;
    }
    init_shared(loop, app, index);
    pthread_mutex_init(&loop->phase_lock, NULL);
    pthread_cond_init(&loop->phase_cond, NULL);
    loop->phase = NATTER_LOOP_STARTING;
    pthread_create(&loop->thread, NULL, loop_main, loop);
    pthread_mutex_lock(&loop->phase_lock);
    await(loop, NATTER_LOOP_RUNNING);
    int rc = loop->phase == NATTER_LOOP_FAILED ? NATTER_EIO : NATTER_OK;
    pthread_mutex_unlock(&loop->phase_lock);
    if (rc != NATTER_OK)
        snprintf(err, errlen, "%s", loop->err);
    return rc;
}

void natter_loop_join(natter_loop_t *loop)
{
    pthread_mutex_lock(&loop->phase_lock);
    await(loop, NATTER_LOOP_LEFT);
    pthread_mutex_unlock(&loop->phase_lock);
}

void natter_loop_dispose(natter_loop_t *loop)
{
    pthread_mutex_lock(&loop->phase_lock);
    if (loop->phase == NATTER_LOOP_LEFT) {
        enter(loop, NATTER_LOOP_DISPOSING);
        await(loop, NATTER_LOOP_DISPOSED);
    }
    pthread_mutex_unlock(&loop->phase_lock);
    natter_u64map_free(&loop->shed_users);
    pthread_mutex_destroy(&loop->shed_lock);
}
