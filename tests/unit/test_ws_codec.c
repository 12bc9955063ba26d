/* Unit tests for src/gateway/ws_codec.c: RFC 6455 §5 and §7, case by case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gateway/ws_codec.h"

#define MAX 1000

/* A masked client frame into dst; returns its length. */
static size_t frame(uint8_t *dst, int fin, uint8_t op, const void *payload, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    dst[h++] = (uint8_t)((fin ? 0x80 : 0) | op);
    if (n < 126) {
        dst[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (uint8_t)(n >> 8);
        dst[h++] = (uint8_t)n;
    } else {
        dst[h++] = 0x80 | 127;
        for (int s = 56; s >= 0; s -= 8)
            dst[h++] = (uint8_t)((uint64_t)n >> s);
    }
    memcpy(dst + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        dst[h + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return h + n;
}

typedef struct {
    natter_ws_parser_t p;
    uint8_t buf[70000];
    size_t len;
} fx_t;

static fx_t *fx_new(void)
{
    fx_t *f = calloc(1, sizeof(*f));
    natter_ws_parser_init(&f->p, MAX);
    return f;
}

static void fx_free(fx_t *f)
{
    natter_ws_parser_free(&f->p);
    free(f);
}

/* Parses what the fixture holds from its start; returns the event (its data
 * copied, as the caller's bytes move) and drops what it used. */
static natter_ws_event_kind_t next(fx_t *f, natter_ws_event_t *ev)
{
    static uint8_t copy[70000];
    size_t used;
    natter_ws_event_kind_t k = natter_ws_parse(&f->p, f->buf, f->len, &used, ev);
    assert_int_equal(k, ev->kind);
    assert_true(used <= f->len);
    if (ev->data != NULL) {
        memcpy(copy, ev->data, ev->len);
        ev->data = copy;
    }
    memmove(f->buf, f->buf + used, f->len - used);
    f->len -= used;
    return k;
}

static void add(fx_t *f, int fin, uint8_t op, const void *payload, size_t n)
{
    f->len += frame(f->buf + f->len, fin, op, payload, n);
}

static void expect_fail(fx_t *f, uint16_t code)
{
    natter_ws_event_t ev;
    assert_int_equal(next(f, &ev), NATTER_WS_FAIL);
    assert_int_equal(ev.code, code);
    assert_non_null(ev.reason);
    assert_int_equal(next(f, &ev), NATTER_WS_FAIL); /* and stays failed */
}

/* §5.7: "A single-frame masked text message" */
static void test_rfc_masked_hello(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    natter_ws_event_t ev;
    /* byte by byte: nothing until the frame is whole */
    for (size_t i = 0; i < sizeof(hello) - 1; i++) {
        f->buf[f->len++] = hello[i];
        assert_int_equal(next(f, &ev), NATTER_WS_NEED_MORE);
        assert_int_equal(f->len, i + 1);
    }
    f->buf[f->len++] = hello[sizeof(hello) - 1];
    assert_int_equal(next(f, &ev), NATTER_WS_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_int_equal(f->len, 0);
    fx_free(f);
}

/* §5.4: fragments, with a control frame between them */
static void test_fragments_and_interleaved_ping(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    natter_ws_event_t ev;
    add(f, 0, NATTER_WS_OP_TEXT, "Hel", 3);
    add(f, 1, NATTER_WS_OP_PING, "p", 1);
    add(f, 1, NATTER_WS_OP_CONTINUATION, "lo", 2);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    assert_int_equal(next(f, &ev), NATTER_WS_PING);
    assert_int_equal(ev.len, 1);
    assert_int_equal(ev.data[0], 'p');
    assert_int_equal(next(f, &ev), NATTER_WS_TEXT);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    /* the next message starts clean */
    add(f, 1, NATTER_WS_OP_BINARY, "\x00\x01", 2);
    assert_int_equal(next(f, &ev), NATTER_WS_BINARY);
    assert_int_equal(ev.len, 2);
    fx_free(f);
}

/* A message of empty fragments is an empty message whose data is not NULL
 * (callers hand it to memmem and the like, which must not get NULL). */
static void test_empty_fragments_make_an_empty_message(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    natter_ws_event_t ev;
    size_t used;
    add(f, 0, NATTER_WS_OP_TEXT, "", 0);
    add(f, 1, NATTER_WS_OP_CONTINUATION, "", 0);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    assert_int_equal(natter_ws_parse(&f->p, f->buf, f->len, &used, &ev), NATTER_WS_TEXT);
    assert_int_equal(ev.len, 0);
    assert_non_null(ev.data);
    fx_free(f);
}

/* §8.1: text may split a character between fragments; it must end whole */
static void test_utf8_across_fragments(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    natter_ws_event_t ev;
    static const char euro[] = "\xe2\x82\xac"; /* U+20AC in three bytes */
    add(f, 0, NATTER_WS_OP_TEXT, euro, 1);
    add(f, 0, NATTER_WS_OP_CONTINUATION, euro + 1, 1);
    add(f, 1, NATTER_WS_OP_CONTINUATION, euro + 2, 1);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    assert_int_equal(next(f, &ev), NATTER_WS_TEXT);
    assert_memory_equal(ev.data, euro, 3);
    fx_free(f);

    f = fx_new(); /* ends inside the character */
    add(f, 0, NATTER_WS_OP_TEXT, euro, 2);
    add(f, 1, NATTER_WS_OP_CONTINUATION, "", 0);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    expect_fail(f, NATTER_WS_CLOSE_BAD_DATA);
    fx_free(f);
}

static void test_invalid_utf8_fails_fast(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",             /* never in UTF-8 */
        "\xc0\xaf",         /* overlong */
        "\xed\xa0\x80",     /* a surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "ok\x80",           /* a lone continuation byte */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fx_t *f = fx_new();
        add(f, 1, NATTER_WS_OP_TEXT, bad[i], strlen(bad[i]));
        expect_fail(f, NATTER_WS_CLOSE_BAD_DATA);
        fx_free(f);
        f = fx_new(); /* in the first fragment of a longer message: fails there, not at the end */
        add(f, 0, NATTER_WS_OP_TEXT, bad[i], strlen(bad[i]));
        expect_fail(f, NATTER_WS_CLOSE_BAD_DATA);
        fx_free(f);
    }
    fx_t *f = fx_new(); /* a binary message is not text */
    natter_ws_event_t ev;
    add(f, 1, NATTER_WS_OP_BINARY, "\xff", 1);
    assert_int_equal(next(f, &ev), NATTER_WS_BINARY);
    fx_free(f);
}

/* §5.2: lengths in 7, 16 and 64 bits, each in its shortest form */
static void test_lengths(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    natter_ws_event_t ev;
    char big[MAX];
    memset(big, 'x', sizeof(big));
    add(f, 1, NATTER_WS_OP_TEXT, big, 126);
    assert_int_equal(next(f, &ev), NATTER_WS_TEXT);
    assert_int_equal(ev.len, 126);
    add(f, 1, NATTER_WS_OP_TEXT, big, MAX);
    assert_int_equal(next(f, &ev), NATTER_WS_TEXT);
    assert_int_equal(ev.len, MAX);
    fx_free(f);

    f = fx_new(); /* 5 in the 16-bit form */
    static const uint8_t long16[] = {0x81, 0x80 | 126, 0, 5};
    memcpy(f->buf, long16, sizeof(long16));
    f->len = sizeof(long16);
    expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
    fx_free(f);
    f = fx_new(); /* 200 in the 64-bit form */
    static const uint8_t long64[] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 200};
    memcpy(f->buf, long64, sizeof(long64));
    f->len = sizeof(long64);
    expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
    fx_free(f);
    f = fx_new(); /* the top bit of a 64-bit length must be 0 */
    static const uint8_t top[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    memcpy(f->buf, top, sizeof(top));
    f->len = sizeof(top);
    expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
    fx_free(f);
}

/* Too big is known from the header alone: 2^62 announced, 10 bytes read. */
static void test_too_big_refused_at_the_header(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    static const uint8_t huge[] = {0x81, 0x80 | 127, 0x40, 0, 0, 0, 0, 0, 0, 0};
    memcpy(f->buf, huge, sizeof(huge));
    f->len = sizeof(huge);
    expect_fail(f, NATTER_WS_CLOSE_TOO_BIG);
    fx_free(f);

    f = fx_new(); /* one byte over, across fragments */
    char part[MAX / 2 + 1];
    memset(part, 'y', sizeof(part));
    natter_ws_event_t ev;
    add(f, 0, NATTER_WS_OP_TEXT, part, MAX / 2);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    f->buf[0] = 0x80; /* FIN, continuation: only its header */
    f->buf[1] = 0x80 | 126;
    f->buf[2] = (uint8_t)((MAX / 2 + 1) >> 8);
    f->buf[3] = (uint8_t)(MAX / 2 + 1);
    f->len = 4;
    expect_fail(f, NATTER_WS_CLOSE_TOO_BIG);
    fx_free(f);
}

static void one_header_fails(const uint8_t *bytes, size_t n, uint16_t code)
{
    fx_t *f = fx_new();
    memcpy(f->buf, bytes, n);
    f->len = n;
    expect_fail(f, code);
    fx_free(f);
}

/* §5.1-5.5: what a client frame must be */
static void test_violations_at_the_header(void **state)
{
    (void)state;
    one_header_fails((const uint8_t[]){0x81, 0x05}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* not masked */
    one_header_fails((const uint8_t[]){0xC1, 0x85}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* RSV1 */
    one_header_fails((const uint8_t[]){0xA1, 0x85}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* RSV2 */
    one_header_fails((const uint8_t[]){0x83, 0x80}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* opcode 3 */
    one_header_fails((const uint8_t[]){0x8B, 0x80}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* opcode B */
    one_header_fails((const uint8_t[]){0x09, 0x80}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* fragmented ping */
    one_header_fails((const uint8_t[]){0x89, 0x80 | 126}, 2, NATTER_WS_CLOSE_PROTOCOL);  /* ping > 125 */
    one_header_fails((const uint8_t[]){0x88, 0x80 | 127}, 2, NATTER_WS_CLOSE_PROTOCOL);  /* close > 125 */
    one_header_fails((const uint8_t[]){0x80, 0x80}, 2, NATTER_WS_CLOSE_PROTOCOL);        /* continuation first */
}

static void test_new_message_inside_a_fragmented_one(void **state)
{
    (void)state;
    fx_t *f = fx_new();
    natter_ws_event_t ev;
    add(f, 0, NATTER_WS_OP_TEXT, "a", 1);
    add(f, 1, NATTER_WS_OP_TEXT, "b", 1);
    assert_int_equal(next(f, &ev), NATTER_WS_FRAME);
    expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
    fx_free(f);
}

/* §5.5.1, §7.4: close payloads */
static void test_close_frames(void **state)
{
    (void)state;
    natter_ws_event_t ev;
    fx_t *f = fx_new();
    add(f, 1, NATTER_WS_OP_CLOSE, "", 0);
    assert_int_equal(next(f, &ev), NATTER_WS_CLOSE);
    assert_int_equal(ev.code, NATTER_WS_CLOSE_NO_STATUS);
    add(f, 1, NATTER_WS_OP_CLOSE, "\x03\xe8" "bye", 5);
    assert_int_equal(next(f, &ev), NATTER_WS_CLOSE);
    assert_int_equal(ev.code, 1000);
    assert_int_equal(ev.len, 3);
    assert_memory_equal(ev.data, "bye", 3);
    fx_free(f);

    static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    static const uint16_t invalid[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        assert_true(natter_ws_close_code_valid(valid[i]));
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        assert_false(natter_ws_close_code_valid(invalid[i]));
        uint8_t payload[2] = {(uint8_t)(invalid[i] >> 8), (uint8_t)invalid[i]};
        f = fx_new();
        add(f, 1, NATTER_WS_OP_CLOSE, payload, 2);
        expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
        fx_free(f);
    }
    f = fx_new(); /* one byte: no room for a code */
    add(f, 1, NATTER_WS_OP_CLOSE, "\x03", 1);
    expect_fail(f, NATTER_WS_CLOSE_PROTOCOL);
    fx_free(f);
    f = fx_new(); /* a reason that is not UTF-8 */
    add(f, 1, NATTER_WS_OP_CLOSE, "\x03\xe8\xff", 3);
    expect_fail(f, NATTER_WS_CLOSE_BAD_DATA);
    fx_free(f);
}

static void test_server_frames(void **state)
{
    (void)state;
    uint8_t out[NATTER_WS_CONTROL_MAX + 4];
    assert_int_equal(natter_ws_control_frame(out, NATTER_WS_OP_PONG, "ab", 2), 4);
    assert_memory_equal(out, "\x8a\x02" "ab", 4);
    assert_int_equal(natter_ws_close_frame(out, 1001, "bye"), 7);
    assert_memory_equal(out, "\x88\x05\x03\xe9" "bye", 7);
    assert_int_equal(natter_ws_close_frame(out, 0, ""), 2);
    assert_memory_equal(out, "\x88\x00", 2);
    /* a reason too long is cut at a character boundary: 61 two-byte characters = 122 bytes */
    char reason[200] = "";
    for (int i = 0; i < 62; i++)
        strcat(reason, "\xc3\xa9");
    size_t n = natter_ws_close_frame(out, 1000, reason);
    assert_int_equal(out[1], n - 2);
    assert_true(n - 4 <= NATTER_WS_CONTROL_MAX - 2);
    assert_int_equal((n - 4) % 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_masked_hello),
        cmocka_unit_test(test_fragments_and_interleaved_ping),
        cmocka_unit_test(test_empty_fragments_make_an_empty_message),
        cmocka_unit_test(test_utf8_across_fragments),
        cmocka_unit_test(test_invalid_utf8_fails_fast),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_too_big_refused_at_the_header),
        cmocka_unit_test(test_violations_at_the_header),
        cmocka_unit_test(test_new_message_inside_a_fragmented_one),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_server_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
