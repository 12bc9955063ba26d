/* Unit tests for load/load_track.c: the delivery checks over records, and
 * the catch-up merge (history and pushes overlapping after a reconnect
 * count each message once; only a message pushed twice is a duplicate). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "load_run.h"

/* Two chats; listener 0 in both (slot 0), listener 1 in chat 0 (slot 1).
 * seq s goes to chat s % 2. Every message is accepted with id 100 + seq. */
static load_t L;
static load_listener_t listeners[2];
static load_chat_t chats[2];
static load_msg_t msgs[64];
static uint32_t chats_of_0[2] = {0, 1}, slots_of_0[2] = {0, 0}, chats_of_1[1] = {0}, slots_of_1[1] = {1};

static int setup(void **state)
{
    (void)state;
    memset(&L, 0, sizeof(L));
    memset(chats, 0, sizeof(chats));
    L.api = &load_api_natter;
    listeners[0] = (load_listener_t){.chats = chats_of_0, .slots = slots_of_0, .nchats = 2};
    listeners[1] = (load_listener_t){.chats = chats_of_1, .slots = slots_of_1, .nchats = 1};
    L.listeners = listeners;
    L.nlisteners = 2;
    chats[0].nlisteners = 2;
    chats[1].nlisteners = 1;
    L.chats = chats;
    L.nchats = 2;
    for (size_t i = 0; i < 64; i++)
        msgs[i] = (load_msg_t){.sched_ns = 1, .id = 100 + i, .status = 202};
    L.msgs = msgs;
    L.seq_end = 64;
    load_track_init(&L);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    load_track_free(&L);
    return 0;
}

/* A record of seq sent at 1000 ns, seen at 3000 ns, with id (the one
 * every message was accepted with unless a test says otherwise). */
static void rec_id(uint8_t kind, uint32_t listener, uint64_t seq, uint64_t id)
{
    load_rec_t r = {.kind = kind, .listener = listener, .a = seq, .t = 1000, .at = 3000, .id = {0, id}};
    load_track_apply(&L, &r);
}

static void rec(uint8_t kind, uint32_t listener, uint64_t seq)
{
    rec_id(kind, listener, seq, 100 + seq);
}

static void test_push_twice_is_a_duplicate(void **state)
{
    (void)state;
    rec(LOAD_REC_PUSH, 0, 0);
    rec(LOAD_REC_PUSH, 0, 0);
    assert_int_equal(L.lst.total.delivered, 1);
    assert_int_equal(L.lst.total.duplicated, 1);
    assert_int_equal(L.lst.total.reordered, 0);
    /* latency from the content's time to arrival */
    assert_int_equal(L.lst.hist_total.count, 1);
    assert_int_equal(L.lst.hist_total.max, 2000);
}

static void test_history_then_push_is_an_overlap(void **state)
{
    (void)state;
    rec(LOAD_REC_HISTORY, 0, 2);
    rec(LOAD_REC_PUSH, 0, 2); /* the new socket pushes what history already gave */
    assert_int_equal(L.lst.total.delivered, 1);
    assert_int_equal(L.lst.total.caught_up, 1);
    assert_int_equal(L.lst.total.overlap, 1);
    assert_int_equal(L.lst.total.duplicated, 0);
    rec(LOAD_REC_PUSH, 0, 2); /* but a second push is a true duplicate */
    assert_int_equal(L.lst.total.duplicated, 1);
}

static void test_push_then_history_is_an_overlap(void **state)
{
    (void)state;
    rec(LOAD_REC_PUSH, 0, 4);
    rec(LOAD_REC_HISTORY, 0, 4);
    rec(LOAD_REC_HISTORY, 0, 4); /* two catch-ups that overlap each other */
    assert_int_equal(L.lst.total.delivered, 1);
    assert_int_equal(L.lst.total.overlap, 2);
    assert_int_equal(L.lst.total.duplicated, 0);
    assert_int_equal(L.lst.total.caught_up, 0);
}

static void test_pushes_must_rise_across_a_reconnect(void **state)
{
    (void)state;
    rec(LOAD_REC_PUSH, 0, 6);
    rec(LOAD_REC_DOWN, 0, 1001);
    rec(LOAD_REC_OPEN, 0, 1);  /* reopened */
    rec(LOAD_REC_HISTORY, 0, 8); /* catch-up and new pushes interleave: no order between them */
    rec(LOAD_REC_PUSH, 0, 10);
    rec(LOAD_REC_HISTORY, 0, 9);
    assert_int_equal(L.lst.total.reordered, 0);
    rec(LOAD_REC_PUSH, 0, 12);
    rec_id(LOAD_REC_PUSH, 0, 14, 105); /* a push below the last push (112) */
    assert_int_equal(L.lst.total.reordered, 1);
    assert_int_equal(L.lst.total.reconnects, 1);
    assert_int_equal(L.lst.total.closed, 0); /* natter has history: a close is not a failure */
    /* a history page out of order is reported where it is read */
    rec(LOAD_REC_HISTORY_DISORDER, 0, 0);
    assert_int_equal(L.lst.total.reordered, 2);
}

static void test_sockets_open_and_peak(void **state)
{
    (void)state;
    rec(LOAD_REC_OPEN, 0, 0);
    rec(LOAD_REC_OPEN, 1, 0);
    rec(LOAD_REC_DOWN, 1, 1008);
    rec(LOAD_REC_OPEN, 1, 1);
    rec(LOAD_REC_DOWN, 0, 1001);
    assert_int_equal(L.lst.opened, 2);
    assert_int_equal(L.lst.open_now, 1);
    assert_int_equal(L.lst.open_peak, 2);
    assert_int_equal(L.lst.total.reconnects, 1);
    rec(LOAD_REC_FAILED, 1, 503);
    rec(LOAD_REC_CATCHUP_FAILED, 1, 404);
    rec(LOAD_REC_SYNC, 0, 0);
    assert_true(L.lst.failed == 1 && L.lst.catchup_failed == 1 && L.lst.syncs == 1);
}

static void test_close_without_history_fails(void **state)
{
    (void)state;
    L.api = &load_api_seed;
    rec(LOAD_REC_OPEN, 0, 0);
    rec(LOAD_REC_DOWN, 0, 1006);
    assert_int_equal(L.lst.total.closed, 1);
}

static void test_foreign(void **state)
{
    (void)state;
    rec(LOAD_REC_PUSH, 1, 1);  /* chat 1: listener 1 is not in it */
    rec(LOAD_REC_PUSH, 0, 64); /* past every send */
    rec(LOAD_REC_PUSH, 7, 0);  /* no such listener */
    rec(LOAD_REC_FOREIGN, 0, 0);
    assert_int_equal(L.lst.total.foreign, 4);
    assert_int_equal(L.lst.total.delivered, 0);
}

static void test_verify_counts_loss_and_id_mismatch(void **state)
{
    (void)state;
    /* seq 0 (chat 0): both listeners; seq 1 (chat 1): listener 0 only;
     * seq 2 (chat 0): listener 0 only, listener 1 missed it; seq 3 was
     * refused, yet listener 0 saw it */
    rec(LOAD_REC_PUSH, 0, 0);
    rec(LOAD_REC_HISTORY, 1, 0);
    rec(LOAD_REC_PUSH, 0, 1);
    rec(LOAD_REC_PUSH, 0, 2);
    msgs[3].status = 503;
    rec(LOAD_REC_PUSH, 0, 3);
    load_verdict_t v;
    load_track_verify(&L, 0, 4, &v);
    assert_int_equal(v.accepted, 3);
    assert_int_equal(v.expected, 5);
    assert_int_equal(v.delivered, 4);
    assert_int_equal(v.lost, 1);
    assert_int_equal(v.unexpected, 1);
    assert_int_equal(v.id_mismatch, 0);
    /* another listener saw seq 4 under another id than the first did */
    rec(LOAD_REC_PUSH, 0, 4);
    rec_id(LOAD_REC_PUSH, 1, 4, 999);
    load_track_verify(&L, 4, 5, &v);
    assert_int_equal(v.id_mismatch, 1);
    msgs[3].status = 202;
}

/* A max step judges its own seqs: a late delivery of the step before counts
 * neither in its drain nor in its p99, and a refused message a listener
 * saw anyway does not make up for an accepted one not delivered. */
static void test_a_step_counts_its_own_deliveries(void **state)
{
    (void)state;
    load_track_step(&L, 4);
    rec(LOAD_REC_PUSH, 0, 2); /* the step before's, late */
    assert_int_equal(load_track_step_delivered(&L, NULL, 0), 0);
    assert_int_equal(L.lst.hist_step.count, 0);
    rec(LOAD_REC_PUSH, 0, 4);
    rec(LOAD_REC_PUSH, 1, 4);
    msgs[5].status = 503;
    rec(LOAD_REC_PUSH, 0, 5); /* refused, seen anyway */
    const uint64_t refused[] = {5};
    assert_int_equal(load_track_step_delivered(&L, refused, 1), 2);
    assert_int_equal(L.lst.hist_step.count, 3);
    load_track_step(&L, 0); /* the whole run: everything delivered so far */
    assert_int_equal(load_track_step_delivered(&L, refused, 1), 3);
    msgs[5].status = 202;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_twice_is_a_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_then_push_is_an_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_then_history_is_an_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pushes_must_rise_across_a_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sockets_open_and_peak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_without_history_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_counts_loss_and_id_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_step_counts_its_own_deliveries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
