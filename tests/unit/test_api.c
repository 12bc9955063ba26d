/* Unit tests of src/ingest/api.c and post.c without a network: jobs run on
 * the test's thread as a worker runs them, their answers come back through
 * the loop's queues (tests/unit/harness.h), and faults are armed in the log
 * and the store (core/fault.h). Posts answer 503 and never hang when the
 * log or the store fails; what is acknowledged is stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "core/token.h"
#include "ingest/post.h"

#define ALICE 1001
#define BOB 1002
#define ANSWER_WITHIN_MS 10000 /* far beyond any answer: reaching it is a hang */

static char alice_tok[NATTER_TOKEN_LEN + 1];
static uint64_t chat = 5000; /* each test posts in a chat of its own */

/* ------------------------------------------------------------ answers */

#define MAX_ANSWERED 256
static natter_api_job_t *answered[MAX_ANSWERED];
static size_t nanswered;

static void capture_jobs(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    (void)r;
    while (!h2o_linklist_is_empty(messages)) {
        natter_api_job_t *job = H2O_STRUCT_FROM_MEMBER(natter_api_job_t, done.link, messages->next);
        h2o_linklist_unlink(&job->done.link);
        answered[nanswered++] = job;
    }
}

/* A parked post's outcome: answered as the loop answers it (natter_post_answer). */
static void capture_acks(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    (void)r;
    h2o_linklist_unlink(messages->next);
    atomic_store(&H.loop.ack_wake, 0);
    for (natter_api_job_t *job = atomic_exchange(&H.loop.ack_head, NULL), *next; job != NULL; job = next) {
        next = job->ack_next;
        natter_post_answer(job);
        answered[nanswered++] = job;
    }
}

/* One natter for every test of this file (h2o cannot free an event loop). */
static int group_setup(void **state)
{
    (void)state;
    harness_start(&(harness_opts_t){.consumer = 1});
    h2o_multithread_queue_t *q = H.loop.h2o_ctx.queue;
    h2o_multithread_unregister_receiver(q, &H.loop.jobs);
    h2o_multithread_unregister_receiver(q, &H.loop.acks);
    h2o_multithread_register_receiver(q, &H.loop.jobs, capture_jobs);
    h2o_multithread_register_receiver(q, &H.loop.acks, capture_acks);
    char bob_tok[NATTER_TOKEN_LEN + 1];
    harness_user(ALICE, "alice", alice_tok);
    harness_user(BOB, "bob", bob_tok);
    return 0;
}

/* A chat of its own, no fault armed, no repeat remembered, limits as configured. */
static int setup(void **state)
{
    (void)state;
    natter_fault_clear();
    harness_chat(++chat, (uint64_t[]){ALICE, BOB}, 2);
    natter_client_ids_free(&H.app.client_ids);
    natter_client_ids_init(&H.app.client_ids, 1000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natter_fault_clear();
    for (size_t i = 0; i < nanswered; i++)
        natter_api_job_free(answered[i]);
    nanswered = 0;
    return 0;
}

/* ------------------------------------------------------------ running jobs */

static natter_api_job_t *job_for(natter_action_t action, const char *token, const char *body)
{
    natter_route_t route = {.action = action, .chat_id = chat};
    natter_api_job_t *job = natter_api_job_new(&H.loop, &route);
    if (token != NULL) {
        job->token_len = strlen(token);
        memcpy(job->token, token, job->token_len);
    }
    natter_api_job_copy_request(job, body, body ? strlen(body) : 0, NULL, 0);
    return job;
}

static int is_answered(void *arg)
{
    for (size_t i = 0; i < nanswered; i++)
        if (answered[i] == arg)
            return 1;
    return 0;
}

/* Runs the job as a worker would and waits for its answer (fails on a hang). */
static natter_api_job_t *run(natter_api_job_t *job)
{
    natter_api_run(&job->work);
    if (!harness_pump_until(is_answered, job, ANSWER_WITHIN_MS))
        fail_msg("no answer within %d ms: a hang", ANSWER_WITHIN_MS);
    return job;
}

static natter_api_job_t *post(const char *content, const char *client_id)
{
    char body[256];
    if (client_id != NULL)
        snprintf(body, sizeof(body), "{\"content\":\"%s\",\"client_id\":\"%s\"}", content, client_id);
    else
        snprintf(body, sizeof(body), "{\"content\":\"%s\"}", content);
    return run(job_for(NATTER_A_MESSAGE_POST, alice_tok, body));
}

static void expect_error(const natter_api_job_t *job, int status, const char *code)
{
    if (job->status != status || job->resp == NULL || strstr(job->resp, code) == NULL)
        fail_msg("want %d %s, got %d %.*s", status, code, job->status, (int)job->resp_len, job->resp ? job->resp : "");
}

static size_t stored(uint64_t *ids, size_t max)
{
    return harness_history(chat, ids, max);
}

/* ------------------------------------------------------------ posts */

static void test_post_is_202_once_stored(void **state)
{
    (void)state;
    natter_api_job_t *job = post("hello", NULL);
    assert_int_equal(job->status, 202);
    assert_non_null(strstr(job->resp, "\"sender_id\":\"1001\""));
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 1);
    assert_int_equal(ids[0], job->msg_id);
}

static void test_post_log_fails_503_at_once(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_LOG_APPEND, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    expect_error(post("into a broken log", NULL), 503, "unavailable");
    expect_error(post("again", "c-1"), 503, "unavailable");
    natter_fault_clear();
    assert_int_equal(post("the log is back", "c-1")->status, 202); /* a failed client_id is free again */
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 1);
}

static void test_post_store_fails_then_recovers(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .count = 2, .rc = NATTER_EUNAVAIL});
    natter_api_job_t *job = post("stored on the third try", NULL);
    assert_int_equal(job->status, 202);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 3); /* backed off and retried */
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 1);
    assert_int_equal(ids[0], job->msg_id);
}

static void test_post_store_down_is_503_not_a_hang(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    expect_error(post("nowhere to go", NULL), 503, "unavailable");
    uint64_t ids[4];
    natter_fault_clear();
    assert_int_equal(stored(ids, 4), 0);
    assert_int_equal(post("the store is back", NULL)->status, 202);
}

static void test_post_store_broken_is_not_retried(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EIO});
    expect_error(post("a broken store", NULL), 503, "unavailable");
    assert_int_equal(natter_fault_calls(NATTER_FAULT_STORE_MESSAGES_INSERT), 1);
}

/* Posts while the store fails now and then: every 202 is in the store. */
static void test_nothing_acknowledged_is_lost(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 3, .count = 6, .rc = NATTER_EUNAVAIL});
    uint64_t acked[40];
    size_t nacked = 0, failed = 0;
    for (int i = 0; i < 40; i++) {
        char text[32];
        snprintf(text, sizeof(text), "m%d", i);
        natter_api_job_t *job = post(text, NULL);
        if (job->status == 202)
            acked[nacked++] = job->msg_id;
        else
            failed++, expect_error(job, 503, "unavailable");
    }
    assert_true(failed > 0); /* the fault was felt */
    uint64_t ids[64];
    size_t n = stored(ids, 64);
    for (size_t i = 0; i < nacked; i++) {
        size_t k = 0;
        while (k < n && ids[k] != acked[i])
            k++;
        if (k == n)
            fail_msg("message %llu was acknowledged and is not stored", (unsigned long long)acked[i]);
    }
    assert_int_equal(n, nacked); /* and what was refused is not stored either */
}

/* The batch is stored but its outcome says it failed (log.commit): the post
 * gets 503; its repeat is answered with the stored message. */
static void test_repeat_after_a_503_that_was_stored(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_LOG_COMMIT, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_EUNAVAIL});
    expect_error(post("stored though refused", "r-1"), 503, "unavailable");
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 1);
    natter_api_job_t *again = post("stored though refused", "r-1");
    assert_int_equal(again->status, 202);
    assert_int_equal(again->msg_id, ids[0]);
    assert_int_equal(stored(ids, 4), 1);
    /* known to this node now: the next repeat needs neither the log nor the store */
    natter_fault_arm(NATTER_FAULT_LOG_APPEND, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    natter_api_job_t *third = post("stored though refused", "r-1");
    assert_int_equal(third->status, 202);
    assert_int_equal(third->msg_id, ids[0]);
}

static void test_repeats_without_the_cache(void **state)
{
    (void)state;
    natter_api_job_t *first = post("one", "k");
    natter_client_ids_free(&H.app.client_ids); /* as after a restart */
    natter_client_ids_init(&H.app.client_ids, 1000);
    natter_api_job_t *again = post("one", "k");
    assert_int_equal(again->status, 202);
    assert_int_equal(again->msg_id, first->msg_id);
    assert_int_equal(again->created_at_ms, first->created_at_ms);
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 1);
}

static void test_post_errors_change_nothing(void **state)
{
    (void)state;
    expect_error(post("", NULL), 400, "invalid_request");
    expect_error(run(job_for(NATTER_A_MESSAGE_POST, alice_tok, "{\"content\":\"x\",\"client_id\":\"\"}")), 400,
                 "invalid_request");
    expect_error(run(job_for(NATTER_A_MESSAGE_POST, NULL, "{\"content\":\"x\"}")), 401, "unauthorized");
    uint64_t ids[4];
    assert_int_equal(stored(ids, 4), 0);
}

/* ------------------------------------------------------------ logins */

static void test_login_store_down_is_503(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_USER_BY_NAME, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    expect_error(run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"alice\",\"password\":\"password1\"}")),
                 503, "unavailable");
    natter_fault_clear();
    assert_int_equal(run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"alice\",\"password\":\"password1\"}"))
                         ->status,
                     201);
}

static void test_unknown_user_and_wrong_password_look_alike(void **state)
{
    (void)state;
    natter_api_job_t *wrong =
        run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"alice\",\"password\":\"not it at all\"}"));
    natter_api_job_t *unknown =
        run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"nobody\",\"password\":\"not it at all\"}"));
    assert_int_equal(wrong->status, 401);
    assert_int_equal(unknown->status, 401);
    assert_int_equal(wrong->resp_len, unknown->resp_len);
    assert_memory_equal(wrong->resp, unknown->resp, wrong->resp_len);
}

static void test_login_username_limit(void **state)
{
    (void)state;
    natter_ratelimit_free(&H.app.auth.per_username); /* as with --auth-rate-user 2 */
    natter_ratelimit_init_per_minute(&H.app.auth.per_username, 2, 0);
    const char *wrong = "{\"username\":\"bob\",\"password\":\"guess guess\"}";
    assert_int_equal(run(job_for(NATTER_A_SESSION_CREATE, NULL, wrong))->status, 401);
    assert_int_equal(run(job_for(NATTER_A_SESSION_CREATE, NULL, wrong))->status, 401);
    natter_api_job_t *third = run(job_for(NATTER_A_SESSION_CREATE, NULL, wrong));
    expect_error(third, 429, "rate_limited");
    assert_true(third->retry_after > 0);
    /* also for the right password: the name is locked for a while, not the user's other sessions */
    expect_error(run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"bob\",\"password\":\"password1\"}")), 429,
                 "rate_limited");
    /* a success gives its attempt back: alice logs in as often as she likes */
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            run(job_for(NATTER_A_SESSION_CREATE, NULL, "{\"username\":\"alice\",\"password\":\"password1\"}"))->status,
            201);
    natter_ratelimit_free(&H.app.auth.per_username);
    natter_ratelimit_init_per_minute(&H.app.auth.per_username, H.app.cfg.auth_rate_user, 0);
}

/* ------------------------------------------------------------ WebSocket tickets */

static natter_api_job_t *upgrade_with_ticket(const char *ticket)
{
    natter_api_job_t *job = job_for(NATTER_A_WS, NULL, NULL);
    job->ticket_len = strlen(ticket);
    memcpy(job->ticket, ticket, job->ticket_len);
    return run(job);
}

static void test_ws_ticket_is_single_use(void **state)
{
    (void)state;
    natter_api_job_t *t = run(job_for(NATTER_A_WS_TICKET, alice_tok, NULL));
    assert_int_equal(t->status, 201);
    json_t *doc = json_loadb(t->resp, t->resp_len, 0, NULL);
    assert_non_null(doc);
    const char *ticket = json_string_value(json_object_get(doc, "ticket"));
    assert_non_null(ticket);
    assert_non_null(json_string_value(json_object_get(doc, "expires_at")));
    natter_api_job_t *ws = upgrade_with_ticket(ticket);
    assert_int_equal(ws->status, 101);
    assert_int_equal(ws->ws_session.user_id, ALICE);
    uint8_t session[NATTER_TOKEN_HASH_LEN]; /* the socket ends with the session that made the ticket */
    natter_token_hash(alice_tok, strlen(alice_tok), session);
    assert_memory_equal(ws->ws_session.session_hash, session, NATTER_TOKEN_HASH_LEN);
    assert_true(ws->ws_session.session_expires_at_ms > natter_now_ms());
    expect_error(upgrade_with_ticket(ticket), 401, "unauthorized"); /* used */
    expect_error(upgrade_with_ticket("not-a-ticket"), 401, "unauthorized");
    expect_error(run(job_for(NATTER_A_WS_TICKET, NULL, NULL)), 401, "unauthorized");
    json_decref(doc);
}

static void test_ws_ticket_store_down(void **state)
{
    (void)state;
    natter_fault_arm(NATTER_FAULT_STORE_TICKET_CREATE, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    expect_error(run(job_for(NATTER_A_WS_TICKET, alice_tok, NULL)), 503, "unavailable");
    natter_fault_clear();
    natter_api_job_t *t = run(job_for(NATTER_A_WS_TICKET, alice_tok, NULL));
    json_t *doc = json_loadb(t->resp, t->resp_len, 0, NULL);
    natter_fault_arm(NATTER_FAULT_STORE_TICKET_TAKE, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_ETIMEDOUT});
    expect_error(upgrade_with_ticket(json_string_value(json_object_get(doc, "ticket"))), 503, "unavailable");
    assert_int_equal(upgrade_with_ticket(json_string_value(json_object_get(doc, "ticket")))->status, 101);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_post_is_202_once_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_log_fails_503_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_store_fails_then_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_store_down_is_503_not_a_hang, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_store_broken_is_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_acknowledged_is_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_after_a_503_that_was_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeats_without_the_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_errors_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_store_down_is_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_user_and_wrong_password_look_alike, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_username_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_ticket_is_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_ticket_store_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, harness_group_teardown);
}
