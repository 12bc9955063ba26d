/* Unit tests of src/consumer/consumer.c without a network: messages are
 * appended to the local log here, the real consumer thread stores them,
 * and faults are armed in the store and the log (core/fault.h). The
 * consumer backs off and retries a store that fails for a while, gives a
 * batch up (503 to its posters) when it keeps failing, never loses what it
 * acknowledged, and hands the loops only what it stored, once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#define WITHIN_MS 10000 /* far beyond any outcome: reaching it is a hang */
#define N 64

/* One message's outcome, as its poster would learn it. */
typedef struct {
    atomic_int calls;
    atomic_int status;
    _Atomic uint64_t id;
} outcome_t;

static outcome_t outcomes[N];
static uint64_t chat = 7000;
static size_t pushed; /* fan-out items of the test's chat the loop received */
static uint64_t pushed_to[8]; /* the members of the first such item since the test began */
static size_t npushed_to;

static void on_durable(natter_msg_t *m, int status, void *arg)
{
    outcome_t *o = arg;
    atomic_store(&o->id, m->id);
    atomic_store(&o->status, status);
    atomic_fetch_add(&o->calls, 1);
}

static uint64_t probe_id;  /* the message a fan-out batch carries, in the test of the batch's order */
static int tail_had_it = -1; /* whether the unstored tail had it when its push reached the loop */

static void capture_fanout(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    (void)r;
    while (!h2o_linklist_is_empty(messages)) {
        natter_fanout_link_t *link = H2O_STRUCT_FROM_MEMBER(natter_fanout_link_t, super.link, messages->next);
        h2o_linklist_unlink(&link->super.link);
        char mine[48];
        int len = snprintf(mine, sizeof(mine), "\"chat_id\":\"%llu\"", (unsigned long long)chat);
        for (size_t i = 0; i < link->batch->n; i++) {
            const natter_fanout_item_t *it = &link->batch->items[i];
            const natter_frame_t *f = it->frame;
            if (memmem(natter_frame_bytes(f), f->len, mine, (size_t)len) == NULL)
                continue;
            if (H.app.tail != NULL && tail_had_it < 0) /* test_a_fanout_batch_is_kept_before_it_is_pushed */
                tail_had_it = natter_tail_has(H.app.tail, chat, probe_id);
            if (pushed++ == 0) {
                npushed_to = it->nmembers < 8 ? it->nmembers : 8;
                memcpy(pushed_to, link->batch->members + it->first_member, npushed_to * sizeof(uint64_t));
            }
        }
        atomic_fetch_sub(&H.loop.fanout_queued, link->batch->n);
        natter_fanout_unref(link->batch);
    }
}

static int group_setup(void **state)
{
    (void)state;
    harness_start(&(harness_opts_t){.consumer = 1});
    h2o_multithread_queue_t *q = H.loop.h2o_ctx.queue;
    h2o_multithread_unregister_receiver(q, &H.loop.fanout);
    h2o_multithread_register_receiver(q, &H.loop.fanout, capture_fanout);
    char tok[NATTER_TOKEN_LEN + 1];
    harness_user(1, "poster", tok);
    atomic_store(&H.app.websockets, 1); /* as if a socket were open: no push is built while none is */
    return 0;
}

static int setup(void **state)
{
    (void)state;
    natter_fault_clear();
    memset(outcomes, 0, sizeof(outcomes));
    pushed = 0;
    npushed_to = 0;
    harness_chat(++chat, (uint64_t[]){1}, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natter_fault_clear();
    return 0;
}

/* Appends n messages (client_id "c<i>" when with_ids) to the test's chat. */
static void append(size_t n, int with_ids)
{
    for (size_t i = 0; i < n; i++) {
        char text[32], cid[16];
        int len = snprintf(text, sizeof(text), "message %zu", i), clen = snprintf(cid, sizeof(cid), "c%zu", i);
        natter_msg_t *m = natter_msg_new(chat, 1, text, (size_t)len, cid, with_ids ? (size_t)clen : 0);
        m->on_durable = on_durable;
        m->durable_arg = &outcomes[i];
        assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
    }
}

static size_t nwaited;

/* n messages to the test's chat, each carrying these recipients (message.h). */
static void append_to(size_t n, const uint64_t *to, size_t nto)
{
    for (size_t i = 0; i < n; i++) {
        natter_msg_t *m = natter_msg_new_to(chat, 1, "carried", 7, "", 0, to, nto);
        m->on_durable = on_durable;
        m->durable_arg = &outcomes[i];
        assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
    }
}

static int all_known(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < nwaited; i++)
        if (atomic_load(&outcomes[i].calls) == 0)
            return 0;
    return 1;
}

static void await_outcomes(size_t n)
{
    nwaited = n;
    if (!harness_pump_until(all_known, NULL, WITHIN_MS))
        fail_msg("outcomes missing after %d ms: a hang", WITHIN_MS);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&outcomes[i].calls), 1); /* exactly once */
}

static size_t want_pushed;

static int pushed_enough(void *arg)
{
    (void)arg;
    return pushed >= want_pushed;
}

/* Waits until n items of the chat were pushed; then one more message goes
 * through, so that anything pushed before it has been counted too. */
static void await_pushed(size_t n)
{
    want_pushed = n;
    if (!harness_pump_until(pushed_enough, NULL, WITHIN_MS))
        fail_msg("%zu of %zu pushes after %d ms", pushed, n, WITHIN_MS);
    natter_msg_t *m = natter_msg_new(chat, 1, "sentinel", 8, "", 0);
    outcome_t last = {0};
    m->on_durable = on_durable;
    m->durable_arg = &last;
    assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
    want_pushed = n + 1;
    if (!harness_pump_until(pushed_enough, NULL, WITHIN_MS))
        fail_msg("the sentinel was not pushed within %d ms", WITHIN_MS);
    assert_int_equal(pushed, n + 1);
    pushed = n;
}

/* A message that carries its recipients is pushed to them, without the
 * members cache: 4242 is no member in the store, only the carried list
 * names it. One without is pushed to the store's members. */
static void test_a_message_is_pushed_to_the_recipients_it_carries(void **state)
{
    (void)state;
    append_to(1, (const uint64_t[]){1, 4242}, 2);
    await_outcomes(1);
    await_pushed(1);
    assert_int_equal(npushed_to, 2);
    assert_int_equal(pushed_to[0], 1);
    assert_int_equal(pushed_to[1], 4242);

    pushed = 0;
    memset(outcomes, 0, sizeof(outcomes));
    append_to(1, NULL, 0);
    await_outcomes(1);
    await_pushed(1);
    assert_int_equal(npushed_to, 1);
    assert_int_equal(pushed_to[0], 1);
}

/* With no WebSocket open on the node no push is built; the messages are
 * stored and answered all the same. The sentinel of await_pushed, posted
 * once a socket is counted again, is the only push the loop receives: the
 * three before it would have arrived first. */
static void test_nothing_is_pushed_while_no_websocket_is_open(void **state)
{
    (void)state;
    atomic_store(&H.app.websockets, 0);
    append(3, 0);
    await_outcomes(3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_OK);
    uint64_t ids[4];
    assert_int_equal(harness_history(chat, ids, 4), 3);
    atomic_store(&H.app.websockets, 1);
    await_pushed(0);
}

static size_t stored(uint64_t *ids, size_t max)
{
    return harness_history(chat, ids, max);
}

static void test_stores_and_answers_once(void **state)
{
    (void)state;
    append(20, 0);
    await_outcomes(20);
    uint64_t ids[N];
    assert_int_equal(stored(ids, N), 20);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_OK);
    await_pushed(20);
}

static void test_backs_off_and_retries(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .count = 3, .rc = NATTER_ETIMEDOUT});
    append(10, 0);
    await_outcomes(10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_OK);
    assert_true(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT) >= 4); /* three failures, then stored */
    uint64_t ids[N];
    assert_int_equal(stored(ids, N), 10);
}

static void test_gives_up_and_says_so(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    append(5, 0);
    await_outcomes(5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_EUNAVAIL);
    natter_fault_clear();
    uint64_t ids[N];
    assert_int_equal(stored(ids, N), 0);
    await_pushed(0); /* nothing that is not stored is pushed */
}

static int store_tried(void *arg)
{
    (void)arg;
    return natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT) >= 1;
}

/* A store that is down: the batch being stored gets its four tries, and
 * what queued behind it is answered 503 then, without tries of its own
 * (it used to get four tries a batch, one batch after another). */
static void test_an_outage_answers_the_queue_at_once(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT,
                     &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL, .delay_ms = 20});
    append(1, 0);
    if (!harness_pump_until(store_tried, NULL, WITHIN_MS)) /* the first batch is being stored */
        fail_msg("no store try within %d ms", WITHIN_MS);
    for (size_t i = 1; i < N; i++) { /* these queue behind it, more than a batch's worth */
        natter_msg_t *m = natter_msg_new(chat, 1, "queued", 6, "", 0);
        m->on_durable = on_durable;
        m->durable_arg = &outcomes[i];
        assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
    }
    await_outcomes(N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_EUNAVAIL);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 4); /* the first batch's tries only */
    natter_fault_clear();
    memset(&outcomes[0], 0, sizeof(outcomes[0]));
    append(1, 0); /* the store is back: the next batch, one try, is stored */
    await_outcomes(1);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_OK);
}

static void test_broken_store_is_not_retried(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_EIO});
    append(1, 0);
    await_outcomes(1);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_EIO);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 1);
}

/* Store failures come and go under a stream: whatever was answered OK is stored. */
static void test_nothing_acknowledged_is_lost(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 2, .count = 5, .rc = NATTER_EUNAVAIL});
    for (size_t k = 0; k < 4; k++) { /* in bursts, so there are several batches */
        for (size_t i = k * 16; i < (k + 1) * 16; i++) {
            natter_msg_t *m = natter_msg_new(chat, 1, "x", 1, "", 0);
            m->on_durable = on_durable;
            m->durable_arg = &outcomes[i];
            assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
        }
        harness_pump(5);
    }
    await_outcomes(N);
    uint64_t ids[N];
    size_t n = stored(ids, N), ok = 0;
    for (size_t i = 0; i < N; i++) {
        if (atomic_load(&outcomes[i].status) != NATTER_OK)
            continue;
        ok++;
        size_t k = 0;
        while (k < n && ids[k] != atomic_load(&outcomes[i].id))
            k++;
        if (k == n)
            fail_msg("message %zu was acknowledged and is not stored", i);
    }
    assert_int_equal(n, ok);
}

static void test_poll_failures_pass(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_LOG_POLL, &(natter_fault_t){.nth = 1, .count = 5, .rc = NATTER_EIO});
    append(3, 0);
    await_outcomes(3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_OK);
}

static char status_why[256];

static int status_is(void *want)
{
    return natter_consumer_status(&H.consumer, status_why, sizeof(status_why)) == *(int *)want;
}

/* A store that fails every write and ping makes the consumer unready
 * (/readyz's reason) once past the grace; when it answers again, the idle
 * consumer's probe finds it and the consumer is ready without a post. */
static void test_unready_while_the_store_fails_then_ready(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    natter_fault_arm(NATTER_FAULT_STORE_PING, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    append(1, 0);
    await_outcomes(1);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_EUNAVAIL);
    int unready = NATTER_EUNAVAIL, ready = NATTER_OK;
    if (!harness_pump_until(status_is, &unready, 6 * WITHIN_MS))
        fail_msg("still ready %d ms after a batch was given up", 6 * WITHIN_MS);
    assert_non_null(strstr(status_why, "cannot store"));
    natter_fault_clear();
    if (!harness_pump_until(status_is, &ready, 6 * WITHIN_MS))
        fail_msg("still unready %d ms after the store answered again: %s", 6 * WITHIN_MS, status_why);
}

/* Two messages of one client_id, in one batch or two: one is stored and
 * pushed, and the other's poster learns that one's id. */
static void test_repeat_in_a_batch(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        natter_msg_t *m = natter_msg_new(chat, 1, "twice", 5, "same", 4);
        m->on_durable = on_durable;
        m->durable_arg = &outcomes[i];
        assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
    }
    await_outcomes(2);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_OK);
    assert_int_equal(atomic_load(&outcomes[1].status), NATTER_OK);
    assert_int_equal(atomic_load(&outcomes[0].id), atomic_load(&outcomes[1].id));
    uint64_t ids[N];
    assert_int_equal(stored(ids, N), 1);
    await_pushed(1);
}

/* A sync that fails fails the batch written before it (its poster learns
 * the error, nothing is pushed) and stops the writes until a restart:
 * the next post is answered the error without a write, and the node is
 * unready, saying why. */
static void test_a_failed_sync_stops_the_writes(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_RECORDS_SYNC, &(natter_fault_t){.nth = 1, .rc = NATTER_EIO});
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){0}); /* counted, never failed */
    append(1, 0);
    await_outcomes(1);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_EIO);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 1);
    int unready = NATTER_EUNAVAIL;
    if (!harness_pump_until(status_is, &unready, WITHIN_MS))
        fail_msg("still ready %d ms after a sync failed", WITHIN_MS);
    assert_non_null(strstr(status_why, "sync failed"));
    natter_fault_clear();
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){0});
    memset(outcomes, 0, sizeof(outcomes));
    append(1, 0);
    await_outcomes(1);
    assert_int_equal(atomic_load(&outcomes[0].status), NATTER_EIO);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 0);
    atomic_store(&H.consumer.sync_failed, 0); /* the restart, for the tests after this one */
}

static uint64_t want_writes;

static int written(void *arg)
{
    (void)arg;
    return natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT) >= want_writes;
}

static int syncing(void *arg)
{
    (void)arg;
    return natter_fault_calls(NATTER_FAULT_STORE_RECORDS_SYNC) >= 1;
}

/* The consumer writes the next batches while a sync runs, and one sync
 * then covers all of them: the first sync is held until two more batches
 * are written, and those two take one sync. No post is answered before
 * its sync; every one is answered OK and pushed once. */
static void test_batches_written_during_a_sync_share_the_next(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_RECORDS_SYNC, &(natter_fault_t){.hold = 1});
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){0}); /* counted, never failed */
    append(1, 0);
    if (!harness_pump_until(syncing, NULL, WITHIN_MS))
        fail_msg("no sync began within %d ms", WITHIN_MS);
    for (size_t k = 1; k < 3; k++) {
        natter_msg_t *m = natter_msg_new(chat, 1, "written while syncing", 21, "", 0);
        m->on_durable = on_durable;
        m->durable_arg = &outcomes[k];
        assert_int_equal(natter_log_append(H.app.log, m), NATTER_OK);
        want_writes = k + 1;
        if (!harness_pump_until(written, NULL, WITHIN_MS))
            fail_msg("message %zu was not written within %d ms", k, WITHIN_MS);
    }
    harness_pump(20);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&outcomes[i].calls), 0); /* written, not yet durable */
    natter_fault_release(NATTER_FAULT_STORE_RECORDS_SYNC);
    await_outcomes(3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&outcomes[i].status), NATTER_OK);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 3);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_RECORDS_SYNC), 2);
    natter_fault_clear();
    await_pushed(3);
}

/* The unstored tail's stored(), asked as a batch is added: the first time
 * after pump_once is set it runs the loop once, which takes any push
 * already handed to it. Nothing counts as stored. */
static int pump_once;

static int64_t nothing_stored(void *arg, int32_t partition)
{
    (void)arg, (void)partition;
    if (pump_once) {
        pump_once = 0;
        h2o_evloop_run(H.loop.h2o_ctx.loop, 0);
    }
    return -1;
}

/* On a log with a fan-out stream (Kafka) a batch is pushed before any store
 * has it: it is in the unstored tail before any loop can push it, so a
 * socket registered just after its loop pushed the batch finds it in
 * history. The loop runs as the tail takes the batch: a push handed over
 * before that reaches it while the tail does not have the message yet. */
static void test_a_fanout_batch_is_kept_before_it_is_pushed(void **state)
{
    (void)state;
    natter_tail_t tail;
    natter_tail_init(&tail, 100, nothing_stored, NULL);
    H.app.tail = &tail;
    natter_msg_t *m = natter_msg_new(chat, 1, "kept, then pushed", 17, "", 0);
    m->id = probe_id = ((uint64_t)chat << 20) + 1;
    tail_had_it = -1;
    pump_once = 1;
    natter_consumer_fanout(&H.app, m);
    want_pushed = 1;
    if (!harness_pump_until(pushed_enough, NULL, WITHIN_MS))
        fail_msg("the fan-out batch was not pushed within %d ms", WITHIN_MS);
    assert_int_equal(tail_had_it, 1);
    assert_true(natter_tail_has(&tail, chat, probe_id));
    H.app.tail = NULL;
    natter_tail_free(&tail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stores_and_answers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backs_off_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gives_up_and_says_so, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_store_is_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_outage_answers_the_queue_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_acknowledged_is_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_failures_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unready_while_the_store_fails_then_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_message_is_pushed_to_the_recipients_it_carries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_is_pushed_while_no_websocket_is_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_fanout_batch_is_kept_before_it_is_pushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_sync_stops_the_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_written_during_a_sync_share_the_next, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, harness_group_teardown);
}
