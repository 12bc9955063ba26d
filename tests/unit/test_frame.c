/* Unit tests for src/gateway/frame.c: WebSocket frames as they go on the wire, shared by reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gateway/frame.h"

static void check_text(size_t len, const uint8_t *header, size_t hlen)
{
    char *payload = calloc(1, len + 1);
    for (size_t i = 0; i < len; i++)
        payload[i] = (char)('a' + i % 26);
    natter_frame_t *f = natter_frame_text(payload, len);
    assert_int_equal(f->len, hlen + len);
    assert_memory_equal(natter_frame_bytes(f), header, hlen);
    if (len > 0)
        assert_memory_equal(natter_frame_bytes(f) + hlen, payload, len);
    natter_frame_unref(f);
    free(payload);
}

/* RFC 6455 5.2: 7-bit length up to 125, then 126 + 16 bits, then 127 + 64 bits; FIN and text set,
 * no mask (a server never masks). */
static void test_lengths(void **state)
{
    (void)state;
    check_text(0, (const uint8_t[]){0x81, 0x00}, 2);
    check_text(5, (const uint8_t[]){0x81, 0x05}, 2);
    check_text(125, (const uint8_t[]){0x81, 125}, 2);
    check_text(126, (const uint8_t[]){0x81, 126, 0x00, 126}, 4);
    check_text(65535, (const uint8_t[]){0x81, 126, 0xFF, 0xFF}, 4);
    check_text(65536, (const uint8_t[]){0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 10);
}

/* The RFC's own example: a single-frame unmasked text message "Hello". */
static void test_rfc_hello(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    natter_frame_t *f = natter_frame_text("Hello", 5);
    assert_int_equal(f->len, sizeof(want));
    assert_memory_equal(natter_frame_bytes(f), want, sizeof(want));
    natter_frame_unref(f);
}

/* Written piece by piece into the frame's own buffer: the JSON is not copied afterwards. */
static void test_begin_end(void **state)
{
    (void)state;
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    natter_jsonw_raw(&w, "{", 1);
    natter_jsonw_key(&w, "k");
    natter_jsonw_string(&w, "v\"", 2);
    natter_jsonw_raw(&w, "}", 1);
    natter_frame_t *f = natter_frame_end(&w);
    assert_null(w.p);
    assert_int_equal(w.len, 0);
    static const char json[] = "{\"k\":\"v\\\"\"}";
    assert_int_equal(f->len, 2 + sizeof(json) - 1);
    assert_int_equal(natter_frame_bytes(f)[1], sizeof(json) - 1);
    assert_memory_equal(natter_frame_bytes(f) + 2, json, sizeof(json) - 1);
    natter_frame_unref(f);
}

/* Every holder drops its reference; the last one frees (LeakSanitizer checks nothing is left). */
static void test_references(void **state)
{
    (void)state;
    natter_frame_t *f = natter_frame_text("x", 1);
    assert_ptr_equal(natter_frame_ref(f), f);
    natter_frame_ref(f);
    assert_int_equal(atomic_load(&f->refs), 3);
    natter_frame_unref(f);
    natter_frame_unref(f);
    assert_int_equal(atomic_load(&f->refs), 1);
    assert_int_equal(natter_frame_bytes(f)[2], 'x');
    natter_frame_unref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_rfc_hello),
        cmocka_unit_test(test_begin_end),
        cmocka_unit_test(test_references),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
