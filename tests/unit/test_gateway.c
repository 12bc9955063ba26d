/* Unit tests of the gateway (src/gateway/gateway_ws.c) in-process: each
 * WebSocket is one end of a socketpair adopted by the loop's gateway, the
 * test speaks RFC 6455 on the other end and runs the loop itself, and the
 * real workers and store consumer run behind it (tests/unit/harness.h).
 * With faults in the log and the store, a send gets an error frame instead
 * of hanging, the socket stays usable, and what is acknowledged is pushed
 * once and stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "harness.h"

#define ALICE 11
#define BOB 12
#define WITHIN_MS 10000 /* far beyond any answer: reaching it is a hang */

static uint64_t chat = 9000;

/* The client's end of one WebSocket. */
typedef struct {
    int fd;
    uint8_t in[65536];
    size_t len;
} client_t;

static client_t alice, bob;

/* A socket of user opened with the session whose hash is all session
 * bytes, ending at expires_ms (0: not known). */
static void client_open_session(client_t *c, uint64_t user, uint8_t session, int64_t expires_ms)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    c->fd = sv[1];
    c->len = 0;
    natter_ticket_t t = {.user_id = user, .session_expires_at_ms = expires_ms};
    memset(t.session_hash, session, sizeof(t.session_hash));
    h2o_socket_t *sock = h2o_evloop_socket_create(H.loop.h2o_ctx.loop, sv[0], 0);
    natter_gateway_adopt(H.loop.gateway, sock, &t);
}

static void client_open(client_t *c, uint64_t user)
{
    client_open_session(c, user, (uint8_t)user, 0);
}

/* A masked text frame, as a client must send it (RFC 6455 §5.3). */
static void client_send(client_t *c, const char *text)
{
    uint8_t frame[1024], mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t len = strlen(text), o = 0;
    assert_true(len < 126 + 1000 - 16);
    frame[o++] = 0x81;
    if (len < 126) {
        frame[o++] = (uint8_t)(0x80 | len);
    } else {
        frame[o++] = 0x80 | 126;
        frame[o++] = (uint8_t)(len >> 8);
        frame[o++] = (uint8_t)len;
    }
    memcpy(frame + o, mask, 4);
    o += 4;
    for (size_t i = 0; i < len; i++)
        frame[o + i] = (uint8_t)text[i] ^ mask[i % 4];
    assert_int_equal(write(c->fd, frame, o + len), (ssize_t)(o + len));
}

/* The payload of the next whole server frame (unmasked) already read: 1 and
 * out (NUL-terminated), or 0. Close frames come out as "#close <code>". */
static int take_frame(client_t *c, char *out, size_t cap)
{
    if (c->len < 2)
        return 0;
    size_t hdr = 2, plen = c->in[1] & 0x7f;
    if (plen == 126) {
        if (c->len < 4)
            return 0;
        plen = (size_t)c->in[2] << 8 | c->in[3];
        hdr = 4;
    }
    if (c->len < hdr + plen)
        return 0;
    uint8_t op = c->in[0] & 0x0f;
    if (op == 0x8)
        snprintf(out, cap, "#close %u", plen >= 2 ? (unsigned)(c->in[hdr] << 8 | c->in[hdr + 1]) : 0);
    else
        snprintf(out, cap, "%.*s", (int)plen, (const char *)c->in + hdr);
    memmove(c->in, c->in + hdr + plen, c->len - hdr - plen);
    c->len -= hdr + plen;
    return op == 0x9 || op == 0xa ? take_frame(c, out, cap) : 1; /* pings and pongs are not news */
}

/* The next frame's text, running the loop while waiting (fails on a hang). */
static void next_frame(client_t *c, char *out, size_t cap)
{
    uint64_t until = natter_mono_ns() + (uint64_t)WITHIN_MS * 1000000u;
    while (!take_frame(c, out, cap)) {
        if (natter_mono_ns() > until)
            fail_msg("no frame within %d ms: a hang", WITHIN_MS);
        h2o_evloop_run(H.loop.h2o_ctx.loop, 5);
        ssize_t n = read(c->fd, c->in + c->len, sizeof(c->in) - c->len);
        if (n > 0)
            c->len += (size_t)n;
        else if (n == 0)
            fail_msg("the server closed the socket");
    }
}

/* The next frame whose text holds want; frames before it are skipped. */
static void frame_with(client_t *c, const char *want, char *out, size_t cap)
{
    do
        next_frame(c, out, cap);
    while (strstr(out, want) == NULL);
}

static void send_json(client_t *c, const char *content, const char *client_id)
{
    char text[512];
    snprintf(text, sizeof(text), "{\"type\":\"send\",\"chat_id\":\"%llu\",\"content\":\"%s\",\"client_id\":\"%s\"}",
             (unsigned long long)chat, content, client_id);
    client_send(c, text);
}

/* The id in an ack frame. */
static uint64_t ack_id(const char *frame)
{
    const char *p = strstr(frame, "\"id\":\"");
    assert_non_null(p);
    return strtoull(p + 6, NULL, 10);
}

static int group_setup(void **state)
{
    (void)state;
    harness_start(&(harness_opts_t){.workers = 1, .consumer = 1});
    char tok[NATTER_TOKEN_LEN + 1];
    harness_user(ALICE, "alice", tok);
    harness_user(BOB, "bob", tok);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    natter_fault_clear();
    harness_chat(++chat, (uint64_t[]){ALICE, BOB}, 2);
    client_open(&alice, ALICE);
    client_open(&bob, BOB);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    natter_fault_clear();
    close(alice.fd);
    close(bob.fd);
    harness_pump(5); /* the gateway sees them go */
    return 0;
}

/* Alice sends a sentinel and Bob must get it next: nothing else was pushed to him. */
static void expect_nothing_more_for_bob(void)
{
    char f[4096];
    send_json(&alice, "sentinel", "sentinel");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    next_frame(&bob, f, sizeof(f));
    if (strstr(f, "sentinel") == NULL)
        fail_msg("bob got a push he should not have: %s", f);
}

static void test_send_is_acked_and_pushed(void **state)
{
    (void)state;
    char f[4096];
    send_json(&alice, "hello bob", "g-1");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    assert_non_null(strstr(f, "\"client_id\":\"g-1\""));
    uint64_t id = ack_id(f);
    next_frame(&bob, f, sizeof(f));
    assert_non_null(strstr(f, "\"type\":\"message\""));
    assert_non_null(strstr(f, "hello bob"));
    uint64_t ids[4];
    assert_int_equal(harness_history(chat, ids, 4), 1);
    assert_int_equal(ids[0], id);
}

/* A logout reaches the gateway as a session-end batch: the sockets of that
 * session close 4001, the user's other sockets go on. */
static void test_a_session_end_closes_its_sockets_only(void **state)
{
    (void)state;
    client_t other;
    char f[4096];
    uint8_t session[NATTER_TOKEN_HASH_LEN];
    memset(session, 0x77, sizeof(session));
    client_open_session(&other, ALICE, 0x77, 0);
    natter_fanout_dispatch(&H.app, natter_fanout_session_end(&H.app, ALICE, session));
    next_frame(&other, f, sizeof(f));
    assert_string_equal(f, "#close 4001");
    expect_nothing_more_for_bob(); /* alice's socket of another session still sends */
    close(other.fd);
}

/* A socket whose upgrade was checked before its logout but opens after the
 * session-end batch came closes 4001 at once; what it sends is not read. */
static void test_a_socket_opened_after_its_session_ended_closes(void **state)
{
    (void)state;
    client_t first, late;
    char f[4096];
    uint8_t session[NATTER_TOKEN_HASH_LEN];
    memset(session, 0x79, sizeof(session));
    client_open_session(&first, ALICE, 0x79, 0);
    natter_fanout_dispatch(&H.app, natter_fanout_session_end(&H.app, ALICE, session));
    next_frame(&first, f, sizeof(f)); /* the batch has reached the gateway */
    assert_string_equal(f, "#close 4001");
    client_open_session(&late, ALICE, 0x79, 0);
    send_json(&late, "after the logout", "late-2");
    next_frame(&late, f, sizeof(f));
    assert_string_equal(f, "#close 4001");
    expect_nothing_more_for_bob(); /* the late send was not posted */
    close(first.fd);
    close(late.fd);
}

/* A socket whose session has ended closes at the client's next frame,
 * which is not acted on. */
static void test_an_expired_session_closes_when_the_client_sends(void **state)
{
    (void)state;
    client_t late;
    char f[4096];
    int64_t ends = natter_now_ms() + 50;
    client_open_session(&late, ALICE, 0x78, ends);
    harness_pump(5);
    while (natter_now_ms() <= ends)
        usleep(10 * 1000);
    send_json(&late, "after the end", "late-1");
    next_frame(&late, f, sizeof(f));
    assert_string_equal(f, "#close 4001");
    expect_nothing_more_for_bob(); /* the late send was not posted */
    close(late.fd);
}

static void test_log_down_is_an_error_frame(void **state)
{
    (void)state;
    char f[4096];
    natter_fault_arm(NATTER_FAULT_LOG_APPEND, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    send_json(&alice, "into a broken log", "g-2");
    frame_with(&alice, "\"type\":\"error\"", f, sizeof(f));
    assert_non_null(strstr(f, "\"code\":\"unavailable\""));
    assert_non_null(strstr(f, "\"client_id\":\"g-2\""));
    natter_fault_clear();
    send_json(&alice, "the log is back", "g-2"); /* the same socket, the same client_id: now it goes */
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    next_frame(&bob, f, sizeof(f));
    assert_non_null(strstr(f, "the log is back"));
}

static void test_store_fails_for_a_while(void **state)
{
    (void)state;
    char f[4096];
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .count = 2, .rc = NATTER_EUNAVAIL});
    send_json(&alice, "after two tries", "g-3");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    next_frame(&bob, f, sizeof(f));
    assert_non_null(strstr(f, "after two tries"));
    expect_nothing_more_for_bob();
}

static void test_store_down_is_an_error_frame(void **state)
{
    (void)state;
    char f[4096];
    natter_fault_arm(NATTER_FAULT_STORE_MESSAGES_INSERT, &(natter_fault_t){.nth = 1, .rc = NATTER_EUNAVAIL});
    send_json(&alice, "never stored", "g-4");
    frame_with(&alice, "\"type\":\"error\"", f, sizeof(f));
    assert_non_null(strstr(f, "\"code\":\"unavailable\""));
    natter_fault_clear();
    expect_nothing_more_for_bob(); /* what was not stored was not pushed */
    uint64_t ids[4];
    assert_int_equal(harness_history(chat, ids, 4), 1); /* the sentinel */
}

static void test_repeat_is_acked_with_the_first_and_pushed_once(void **state)
{
    (void)state;
    char f[4096];
    send_json(&alice, "once", "g-5");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    uint64_t first = ack_id(f);
    send_json(&alice, "once", "g-5");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
    assert_int_equal(ack_id(f), first);
    next_frame(&bob, f, sizeof(f));
    assert_non_null(strstr(f, "once"));
    expect_nothing_more_for_bob();
}

static void test_workers_busy_is_an_error_frame(void **state)
{
    (void)state;
    char f[4096];
    natter_members_cache_invalidate(&H.app.members, chat); /* the send needs a worker */
    pthread_mutex_lock(&H.app.workers.lock);
    size_t cap = H.app.workers.cap;
    H.app.workers.cap = 0; /* a full queue */
    pthread_mutex_unlock(&H.app.workers.lock);
    send_json(&alice, "no room", "g-6");
    frame_with(&alice, "\"type\":\"error\"", f, sizeof(f));
    pthread_mutex_lock(&H.app.workers.lock);
    H.app.workers.cap = cap;
    pthread_mutex_unlock(&H.app.workers.lock);
    assert_non_null(strstr(f, "\"code\":\"busy\""));
    send_json(&alice, "room again", "g-6");
    frame_with(&alice, "\"type\":\"ack\"", f, sizeof(f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_is_acked_and_pushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_session_end_closes_its_sockets_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_socket_opened_after_its_session_ended_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_expired_session_closes_when_the_client_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_down_is_an_error_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fails_for_a_while, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_down_is_an_error_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeat_is_acked_with_the_first_and_pushed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_busy_is_an_error_frame, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, harness_group_teardown);
}
