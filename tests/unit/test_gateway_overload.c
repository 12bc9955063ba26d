/* Unit tests of a node over its bounds (src/loop.c's fan-out shedding,
 * src/gateway/gateway_ws.c's closes), in process, with a fan-out queue of 2:
 *   - a batch shed for a loop is never followed, on a shed user's socket,
 *     by a later batch that did fit (the user resumes from history after
 *     the last message it got, so it would skip the shed ones);
 *   - a socket closing for one reason while its client floods pings it
 *     cannot be answered is read no more, not buffered without end;
 *   - a session's end is never shed: its sockets close as ended (4001). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define ALICE 11
#define OTHER 12
#define BOB 13

static natter_fanout_t *batch(uint64_t user, size_t n, const char *const *texts)
{
    natter_fanout_t *f = xcalloc(1, sizeof(*f));
    atomic_init(&f->refs, 1);
    f->items = xcalloc(n, sizeof(natter_fanout_item_t));
    f->links = xcalloc(H.app.nloops, sizeof(natter_fanout_link_t));
    f->members = xmalloc(sizeof(uint64_t));
    f->members[0] = user;
    f->n = n;
    for (size_t i = 0; i < n; i++)
        f->items[i] = (natter_fanout_item_t){
            .frame = natter_frame_text(texts[i], strlen(texts[i])), .first_member = 0, .nmembers = 1};
    return f;
}

/* The frames read from fd, as "text" or "close NNNN", one per line. */
static void frames_of(int fd, char *out, size_t outcap)
{
    static uint8_t in[65536];
    size_t len = 0, o = 0, w = 0;
    ssize_t n;
    while (len < sizeof(in) && (n = read(fd, in + len, sizeof(in) - len)) > 0)
        len += (size_t)n;
    out[0] = '\0';
    while (o + 2 <= len) {
        size_t plen = in[o + 1] & 0x7f;
        assert_true(plen < 126 && o + 2 + plen <= len);
        const uint8_t *p = in + o + 2;
        if ((in[o] & 0x0f) == 0x8)
            w += (size_t)snprintf(out + w, outcap - w, "close %u\n", (unsigned)(p[0] << 8 | p[1]));
        else
            w += (size_t)snprintf(out + w, outcap - w, "%.*s\n", (int)plen, (const char *)p);
        o += 2 + plen;
    }
}

typedef struct {
    int fd;
    int bytes;
} readable_t;

static int has_bytes(void *arg)
{
    const readable_t *r = arg;
    int n = 0;
    return ioctl(r->fd, FIONREAD, &n) == 0 && n >= r->bytes;
}

/* Runs the loop until fd holds a close frame's worth of bytes (a hang
 * after 10 s): the close is the last frame the node writes there. */
static void pump_until_closed(int fd)
{
    readable_t r = {fd, 4};
    if (!harness_pump_until(has_bytes, &r, 10000))
        fail_msg("no close frame after 10 s");
}

static void test_a_batch_after_a_shed_one_is_shed_too(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    natter_gateway_adopt(H.loop.gateway, h2o_evloop_socket_create(H.loop.h2o_ctx.loop, sv[0], 0),
                         &(natter_ticket_t){.user_id = ALICE});
    harness_pump(5);
    /* the loop is busy while the consumer hands it three batches (queue of 2) */
    natter_fanout_dispatch(&H.app, batch(OTHER, 1, (const char *const[]){"m1"}));
    natter_fanout_dispatch(&H.app, batch(ALICE, 2, (const char *const[]){"m2", "m3"})); /* 1 + 2 > 2: shed */
    natter_fanout_dispatch(&H.app, batch(ALICE, 1, (const char *const[]){"m4"}));       /* would fit */
    pump_until_closed(sv[1]);
    char got[512];
    frames_of(sv[1], got, sizeof(got));
    assert_string_equal(got, "close 1013\n"); /* not "m4" first: Alice resumes from history, m2 on */
    close(sv[1]);
    harness_pump(5);
}

/* While the loop is shedding (another user's batch passed the queue),
 * Alice logs out: her socket closes with 4001, session ended (the client
 * logs out), not with 1013 (it would reconnect, and the logout be lost on
 * a socket whose upgrade was on its way). */
static void test_a_session_end_is_not_shed(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    natter_ticket_t alice = {.user_id = ALICE};
    memset(alice.session_hash, 0xa1, sizeof(alice.session_hash));
    natter_gateway_adopt(H.loop.gateway, h2o_evloop_socket_create(H.loop.h2o_ctx.loop, sv[0], 0), &alice);
    harness_pump(5);
    natter_fanout_dispatch(&H.app, batch(OTHER, 1, (const char *const[]){"m1"}));
    natter_fanout_dispatch(&H.app, batch(OTHER, 2, (const char *const[]){"m2", "m3"})); /* 1 + 2 > 2: shed */
    natter_fanout_dispatch(&H.app, natter_fanout_session_end(&H.app, ALICE, alice.session_hash));
    pump_until_closed(sv[1]);
    char got[512];
    frames_of(sv[1], got, sizeof(got));
    assert_string_equal(got, "close 4001\n");
    close(sv[1]);
    harness_pump(5);
}

/* A client's ping (masked, key 0, as every client frame must be). */
static size_t ping(uint8_t *dst, size_t payload)
{
    dst[0] = 0x89;
    dst[1] = (uint8_t)(0x80 | payload);
    memset(dst + 2, 0, 4 + payload);
    return 6 + payload;
}

/* Bob's socket stalls on a large push he does not read; he sends 40 pings
 * with 100 bytes each, whose pongs wait (4,080 bytes owed, under the bound);
 * then a shed closes his socket (1013) without stopping its reads, and its
 * close frame takes what is owed over the bound. A flood of empty pings
 * after that must meet a node that reads no more: it used to leave each
 * one unread and go on appending his bytes to its input. */
static void test_pings_to_a_closing_socket_are_not_buffered(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    natter_gateway_adopt(H.loop.gateway, h2o_evloop_socket_create(H.loop.h2o_ctx.loop, sv[0], 0),
                         &(natter_ticket_t){.user_id = BOB});
    harness_pump(5);
    size_t big_len = 1 << 20;
    char *big = xmalloc(big_len + 1);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    natter_fanout_dispatch(&H.app, batch(BOB, 1, (const char *const[]){big}));
    free(big);
    harness_pump(20); /* written in part: the rest waits for Bob to read */

    uint8_t pings[40 * 106];
    size_t len = 0;
    for (int i = 0; i < 40; i++)
        len += ping(pings + len, 100);
    assert_int_equal(send(sv[1], pings, len, MSG_NOSIGNAL), (ssize_t)len);
    harness_pump(20);
    natter_fanout_dispatch(&H.app, batch(BOB, 1, (const char *const[]){"m1"}));
    natter_fanout_dispatch(&H.app, batch(BOB, 2, (const char *const[]){"m2", "m3"})); /* shed: Bob is closed */
    harness_pump(20);

    uint8_t flood[6 * 4096];
    for (size_t o = 0; o < sizeof(flood); o += 6)
        ping(flood + o, 0);
    size_t sent = 0;
    int blocked = 0;
    while (sent < (64u << 20) && blocked < 20) {
        ssize_t n = send(sv[1], flood, sizeof(flood), MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            blocked = 0;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)); /* the node keeps the socket in grace */
        blocked++;
        harness_pump(5);
    }
    assert_true(sent < (8u << 20)); /* what the socket buffers hold, not all 64 MiB */
    close(sv[1]);
    harness_pump(5);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as natter's main does: a peer gone is a write's error */
    harness_start(&(harness_opts_t){.argv = {"--fanout-queue", "2", NULL}});
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_batch_after_a_shed_one_is_shed_too),
        cmocka_unit_test(test_pings_to_a_closing_socket_are_not_buffered),
        cmocka_unit_test(test_a_session_end_is_not_shed),
    };
    return cmocka_run_group_tests(tests, group_setup, harness_group_teardown);
}
