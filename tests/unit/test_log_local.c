/* Unit tests for src/log/log_local.c through the log.h wrappers: order, batching, commit, shutdown, bound,
 * and the ephemeral path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "log/log.h"

/* One record per message: how often and with what status on_durable fired. */
typedef struct {
    atomic_int calls;
    atomic_int status;
} durable_t;

static void on_durable(natter_msg_t *m, int status, void *arg)
{
    durable_t *d = arg;
    (void)m;
    atomic_fetch_add(&d->calls, 1);
    atomic_store(&d->status, status);
}

/* Message i of a chat; the log keeps order within a chat (its shard), so
 * tests of order post to one chat unless they test several. */
static natter_msg_t *msg_in(uint64_t chat, int i, durable_t *d)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "m%d", i);
    natter_msg_t *m = natter_msg_new(chat, 7, text, (size_t)n, "", 0);
    m->on_durable = on_durable;
    m->durable_arg = d;
    return m;
}

static natter_msg_t *msg(int i, durable_t *d)
{
    return msg_in(100, i, d);
}

#define LONG_MS 60000

static natter_log_t *open_log(uint32_t batch_time_ms, uint32_t queue)
{
    natter_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.batch_time_ms = batch_time_ms;
    cfg.log_queue = queue;
    cfg.node_id = 9;
    char err[128] = "";
    natter_log_t *log = natter_log_open(&natter_log_local, &cfg, err, sizeof(err));
    assert_non_null(log);
    return log;
}

static size_t list_len(natter_msg_t *m)
{
    size_t n = 0;
    for (; m != NULL; m = m->next)
        n++;
    return n;
}

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void test_find(void **state)
{
    (void)state;
    assert_ptr_equal(natter_log_find("local"), &natter_log_local);
    assert_ptr_equal(natter_log_find("kafka"), &natter_log_kafka);
    assert_null(natter_log_find("redis"));
    assert_null(natter_log_find(""));
    assert_int_equal(natter_log_local.version, 9);
}

static void test_poll_order_and_max(void **state)
{
    (void)state;
    enum { N = 25 };
    natter_log_t *log = open_log(0, 1000);
    durable_t d[N];
    natter_msg_t *sent[N];
    memset(d, 0, sizeof(d));
    int64_t before = natter_now_ms();
    for (int i = 0; i < N; i++) {
        sent[i] = msg(i, &d[i]);
        assert_int_equal(natter_log_append(log, sent[i]), NATTER_OK);
    }
    int64_t after = natter_now_ms();
    assert_int_equal(natter_log_ping(log), NATTER_OK);
    assert_int_equal(natter_log_drained(log), 0);

    uint64_t last_id = 0;
    int next = 0;
    static const size_t want[] = {10, 10, 5};
    for (int b = 0; b < 3; b++) {
        natter_msg_t *head = NULL;
        assert_int_equal(natter_log_poll(log, &head, 10, 100), want[b]);
        assert_int_equal(list_len(head), want[b]);
        for (natter_msg_t *m = head; m != NULL; m = m->next, next++) {
            assert_ptr_equal(m, sent[next]); /* append order */
            assert_true(m->id > last_id);    /* strictly increasing ids */
            last_id = m->id;
            assert_int_equal(natter_id_node(m->id), 9);
            assert_int_equal(m->created_at_ms, natter_id_time_ms(m->id));
            assert_true(m->created_at_ms >= before && m->created_at_ms <= after + 1);
            assert_int_equal(atomic_load(&d[next].calls), 0); /* not durable before commit */
        }
        natter_log_commit(log, head, NATTER_OK);
        natter_msg_free_list(head);
    }
    assert_int_equal(next, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1); /* exactly once */
        assert_int_equal(atomic_load(&d[i].status), NATTER_OK);
    }
    /* empty: times out with nothing */
    natter_msg_t *head = (natter_msg_t *)&head; /* a sentinel poll must not touch */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(natter_log_poll(log, &head, 10, 30), 0);
    assert_true(elapsed_ms(&t0) >= 25);
    assert_ptr_equal(head, (natter_msg_t *)&head);
    natter_log_close(log);
}

static void test_commit_reports_failure_status(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 100);
    durable_t d[3];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 3; i++)
        assert_int_equal(natter_log_append(log, msg(i, &d[i])), NATTER_OK);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 100, 100), 3);
    natter_log_commit(log, head, NATTER_EIO);
    natter_msg_free_list(head);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1);
        assert_int_equal(atomic_load(&d[i].status), NATTER_EIO);
    }
    natter_log_close(log);
}

typedef struct {
    natter_log_t *log;
    int delay_ms, count, first;
    durable_t *d;
    int failures;
    int chats;
} appender_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* chats > 1 spreads an appender's messages over that many chats */
static void *appender(void *p)
{
    appender_t *a = p;
    sleep_ms(a->delay_ms);
    for (int i = 0; i < a->count; i++) {
        int k = a->first + i;
        natter_msg_t *m = msg_in(100 + (uint64_t)(a->chats > 1 ? k % a->chats : 0), k, &a->d[k]);
        if (natter_log_append(a->log, m) != NATTER_OK) {
            a->failures++;
            free(m);
        }
    }
    return NULL;
}

/* Takes the first n messages (m0 on d[0], …) in one batch: the consumer has
 * taken none within the batch time, so they go at once however long the
 * batch time is. */
static void take_first(natter_log_t *log, durable_t *d, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(natter_log_append(log, msg(i, &d[i])), NATTER_OK);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 10, 1000), n);
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
}

/* The next batch starts no sooner than the batch time after the last one;
 * if it fills up meanwhile it is returned at once, whole. The waits these
 * tests bound are a minute (LONG_MS), so a busy machine never reaches them:
 * only a wait for the wrong thing does. */
static void test_batch_time_lets_batch_fill(void **state)
{
    (void)state;
    natter_log_t *log = open_log(LONG_MS, 1000);
    durable_t d[11];
    memset(d, 0, sizeof(d));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    take_first(log, d, 1);
    assert_true(elapsed_ms(&t0) < LONG_MS / 2); /* idle: no wait for the batch time */
    assert_int_equal(natter_log_append(log, msg(1, &d[1])), NATTER_OK);
    appender_t a = {log, 50, 9, 2, d, 0, 1};
    pthread_t th;
    pthread_create(&th, NULL, appender, &a);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    natter_msg_t *head = NULL;
    size_t n = natter_log_poll(log, &head, 10, LONG_MS);
    int64_t took = elapsed_ms(&t0);
    pthread_join(th, NULL);
    assert_int_equal(a.failures, 0);
    assert_int_equal(n, 10); /* m1 and the 9 appended while it waited */
    assert_int_equal(list_len(head), 10);
    assert_true(took < LONG_MS / 2); /* returned once full, not at the end of the batch time */
    int i = 1;
    uint64_t last = 0;
    for (natter_msg_t *m = head; m != NULL; m = m->next, i++) {
        char want[16];
        snprintf(want, sizeof(want), "m%d", i);
        assert_string_equal(m->content, want);
        assert_true(m->id > last);
        last = m->id;
    }
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    for (i = 0; i < 11; i++)
        assert_int_equal(atomic_load(&d[i].calls), 1);
    natter_log_close(log);
}

/* A batch that does not fill is returned the batch time after the last
 * batch was taken, with what came meanwhile. */
static void test_batch_time_expires(void **state)
{
    (void)state;
    natter_log_t *log = open_log(200, 1000);
    durable_t d[4];
    memset(d, 0, sizeof(d));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    take_first(log, d, 1);
    for (int i = 1; i < 4; i++)
        assert_int_equal(natter_log_append(log, msg(i, &d[i])), NATTER_OK);
    natter_msg_t *head = NULL;
    size_t n = natter_log_poll(log, &head, 10, LONG_MS);
    int64_t took = elapsed_ms(&t0);
    assert_int_equal(n, 3);
    assert_true(took >= 195);         /* the batch time, from the first batch taken */
    assert_true(took < LONG_MS / 2); /* not until the batch filled */
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    natter_log_close(log);
}

typedef struct {
    natter_log_t *log;
    durable_t *d;
} idler_t;

/* A loop that parks one post and runs out of work, then another and runs
 * out again. */
static void *idler(void *p)
{
    idler_t *a = p;
    sleep_ms(50);
    for (int i = 2; i < 4; i++) {
        natter_msg_t *m = msg(i, &a->d[i]);
        if (natter_log_append(a->log, m) != NATTER_OK)
            free(m);
        natter_log_idle(a->log);
    }
    return NULL;
}

/* After a batch of two, a loop that ran out of work once as many are
 * queued starts the next batch without waiting out the batch time (10 s
 * here); with fewer queued it does not. */
static void test_idle_loop_starts_batch(void **state)
{
    (void)state;
    natter_log_t *log = open_log(LONG_MS, 1000);
    durable_t d[4];
    memset(d, 0, sizeof(d));
    take_first(log, d, 2);
    idler_t a = {log, d};
    pthread_t th;
    pthread_create(&th, NULL, idler, &a);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    natter_msg_t *head = NULL;
    size_t n = natter_log_poll(log, &head, 10, LONG_MS);
    int64_t took = elapsed_ms(&t0);
    pthread_join(th, NULL);
    assert_int_equal(n, 2); /* m2's idle (one queued, two in the last batch) did not start it */
    assert_true(took < LONG_MS / 2);
    assert_string_equal(head->content, "m2");
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&d[i].calls), 1);
    natter_log_close(log);
}

/* With fewer queued than the last batch took, an idle loop changes nothing:
 * the batch goes the batch time after the last. */
static void test_idle_loop_short_batch_waits(void **state)
{
    (void)state;
    natter_log_t *log = open_log(300, 1000);
    durable_t d[3];
    memset(d, 0, sizeof(d));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    take_first(log, d, 2);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_append(log, msg(2, &d[2])), NATTER_OK);
    natter_log_idle(log);
    assert_int_equal(natter_log_poll(log, &head, 10, 1000), 1);
    assert_true(elapsed_ms(&t0) >= 295);
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    natter_log_close(log);
}

/* The consumer blocked on an empty log wakes for the first append. */
static void test_poll_wakes_on_append(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 1000);
    durable_t d[1];
    memset(d, 0, sizeof(d));
    appender_t a = {log, 50, 1, 0, d, 0, 1};
    pthread_t th;
    pthread_create(&th, NULL, appender, &a);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 10, LONG_MS), 1);
    assert_true(elapsed_ms(&t0) < LONG_MS / 2); /* not at the poll's timeout */
    pthread_join(th, NULL);
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    natter_log_close(log);
}

static void test_shutdown_then_drain(void **state)
{
    (void)state;
    natter_log_t *log = open_log(LONG_MS, 1000);
    durable_t d[4];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 3; i++)
        assert_int_equal(natter_log_append(log, msg(i, &d[i])), NATTER_OK);
    natter_log_shutdown(log);
    natter_msg_t *late = msg(3, &d[3]);
    assert_int_equal(natter_log_append(log, late), NATTER_EUNAVAIL);
    assert_int_equal(atomic_load(&d[3].calls), 0); /* a failed append fires no callback */
    free(late);                                    /* the caller kept it */
    assert_int_equal(natter_log_ping(log), NATTER_EUNAVAIL);
    assert_int_equal(natter_log_drained(log), 0);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 2, LONG_MS), 2); /* no batch-time wait once shut down */
    assert_string_equal(head->content, "m0");
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    assert_int_equal(natter_log_drained(log), 0);
    head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 2, LONG_MS), 1);
    assert_string_equal(head->content, "m2");
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    assert_int_equal(natter_log_drained(log), 1);
    head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 2, LONG_MS), 0);
    assert_null(head);
    assert_true(elapsed_ms(&t0) < LONG_MS / 2); /* none of the polls waited */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1);
        assert_int_equal(atomic_load(&d[i].status), NATTER_OK);
    }
    natter_log_close(log);
}

static void *shutdown_later(void *p)
{
    sleep_ms(50);
    natter_log_shutdown(p);
    return NULL;
}

static void test_shutdown_wakes_blocked_poll(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 1000);
    pthread_t th;
    pthread_create(&th, NULL, shutdown_later, log);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 10, LONG_MS), 0);
    assert_true(elapsed_ms(&t0) < LONG_MS / 2); /* woken, not timed out */
    pthread_join(th, NULL);
    assert_int_equal(natter_log_drained(log), 1);
    natter_log_close(log);
}

static void test_queue_bound(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 3);
    durable_t d[5];
    memset(d, 0, sizeof(d));
    natter_msg_t *m[5];
    for (int i = 0; i < 5; i++)
        m[i] = msg(i, &d[i]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(natter_log_append(log, m[i]), NATTER_OK);
    assert_int_equal(natter_log_append(log, m[3]), NATTER_EFULL);
    assert_int_equal(natter_log_append(log, m[3]), NATTER_EFULL);
    assert_int_equal(atomic_load(&d[3].calls), 0);
    /* a poll makes room */
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 1, 100), 1);
    assert_int_equal(natter_log_append(log, m[3]), NATTER_OK);
    assert_int_equal(natter_log_append(log, m[4]), NATTER_EFULL);
    free(m[4]);
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    head = NULL;
    assert_int_equal(natter_log_poll(log, &head, 10, 100), 3);
    assert_string_equal(head->content, "m1");
    assert_string_equal(head->next->next->content, "m3");
    natter_log_commit(log, head, NATTER_OK);
    natter_msg_free_list(head);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&d[i].calls), 1);
    assert_int_equal(atomic_load(&d[4].calls), 0);
    natter_log_close(log);
}

/* Closing with messages still queued fails each once with NATTER_EUNAVAIL and frees them. */
static void test_close_fails_pending(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 100);
    durable_t d[3];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 3; i++)
        assert_int_equal(natter_log_append(log, msg(i, &d[i])), NATTER_OK);
    natter_log_shutdown(log);
    natter_log_close(log); /* LeakSanitizer checks that close freed them */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&d[i].calls), 1);
        assert_int_equal(atomic_load(&d[i].status), NATTER_EUNAVAIL);
    }
}

/* Many producers on many chats, one consumer: every message arrives once;
 * within a chat, ids increase in log order and each producer's order is kept. */
static void test_concurrent_appenders(void **state)
{
    (void)state;
    enum { THREADS = 4, PER = 500, N = THREADS * PER, CHATS = 7 };
    natter_log_t *log = open_log(1, 100000);
    durable_t *d = calloc(N, sizeof(*d));
    appender_t a[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        a[t] = (appender_t){log, 0, PER, t * PER, d, 0, CHATS};
        pthread_create(&th[t], NULL, appender, &a[t]);
    }
    int *seen = calloc(N, sizeof(int));
    int got = 0, last_in_thread[THREADS][CHATS];
    for (int t = 0; t < THREADS; t++)
        for (int c = 0; c < CHATS; c++)
            last_in_thread[t][c] = -1;
    uint64_t last_id[CHATS] = {0};
    while (got < N) {
        natter_msg_t *head = NULL;
        size_t n = natter_log_poll(log, &head, 64, 1000);
        assert_true(n > 0);
        assert_true(n <= 64);
        for (natter_msg_t *m = head; m != NULL; m = m->next) {
            int i = atoi(m->content + 1), c = (int)(m->chat_id - 100);
            assert_int_equal(c, i % CHATS);
            assert_true(m->id > last_id[c]); /* per chat: ids in log order */
            last_id[c] = m->id;
            seen[i]++;
            assert_true(i > last_in_thread[i / PER][c]); /* each producer's order is kept */
            last_in_thread[i / PER][c] = i;
        }
        got += (int)n;
        natter_log_commit(log, head, NATTER_OK);
        natter_msg_free_list(head);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(a[t].failures, 0);
    }
    assert_int_equal(got, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(seen[i], 1);
        assert_int_equal(atomic_load(&d[i].calls), 1);
    }
    natter_log_shutdown(log);
    assert_int_equal(natter_log_drained(log), 1);
    natter_log_close(log);
    free(seen);
    free(d);
}

static natter_msg_t *typing(uint64_t chat, uint64_t user)
{
    natter_msg_t *ev = natter_msg_new(chat, user, "", 0, "", 0);
    ev->kind = NATTER_EV_TYPING;
    return ev;
}

/* What is published comes back, in order, with an id naming this node;
 * never in the messages' polls. */
static void test_ephemeral_roundtrip(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 10);
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_ephemeral_poll(log, &head, 10, 0), 0);
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(natter_log_publish(log, typing(100 + i, i)), NATTER_OK);
    assert_int_equal(natter_log_poll(log, &head, 10, 0), 0); /* the log proper holds none of them */
    assert_int_equal(natter_log_ephemeral_poll(log, &head, 2, 0), 2);
    assert_int_equal(head->chat_id, 101);
    assert_int_equal(head->next->chat_id, 102);
    assert_null(head->next->next);
    assert_int_equal(natter_id_node(head->id), 9);
    assert_true(head->next->id > head->id);
    natter_msg_free_list(head);
    assert_int_equal(natter_log_ephemeral_poll(log, &head, 10, 0), 1);
    assert_int_equal(head->chat_id, 103);
    natter_msg_free_list(head);
    natter_log_close(log);
}

/* Bounded like the log (--log-queue): past it a record is refused, and a
 * closed log takes none; what is left is freed with the log. */
static void test_ephemeral_bound_and_close(void **state)
{
    (void)state;
    natter_log_t *log = open_log(0, 2);
    natter_msg_t *extra = typing(1, 1);
    assert_int_equal(natter_log_publish(log, typing(1, 1)), NATTER_OK);
    assert_int_equal(natter_log_publish(log, typing(1, 2)), NATTER_OK);
    assert_int_equal(natter_log_publish(log, extra), NATTER_EUNAVAIL); /* stays the caller's */
    natter_msg_t *head = NULL;
    assert_int_equal(natter_log_ephemeral_poll(log, &head, 1, 1000), 1);
    natter_msg_free_list(head);
    assert_int_equal(natter_log_publish(log, extra), NATTER_OK); /* room again */
    natter_log_shutdown(log);
    natter_msg_t *late = typing(1, 3);
    assert_int_equal(natter_log_publish(log, late), NATTER_EUNAVAIL);
    free(late);
    natter_log_close(log); /* two records still queued: freed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_poll_order_and_max),
        cmocka_unit_test(test_commit_reports_failure_status),
        cmocka_unit_test(test_batch_time_lets_batch_fill),
        cmocka_unit_test(test_batch_time_expires),
        cmocka_unit_test(test_idle_loop_starts_batch),
        cmocka_unit_test(test_idle_loop_short_batch_waits),
        cmocka_unit_test(test_poll_wakes_on_append),
        cmocka_unit_test(test_shutdown_then_drain),
        cmocka_unit_test(test_shutdown_wakes_blocked_poll),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_close_fails_pending),
        cmocka_unit_test(test_concurrent_appenders),
        cmocka_unit_test(test_ephemeral_roundtrip),
        cmocka_unit_test(test_ephemeral_bound_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
