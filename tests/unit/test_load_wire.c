/* Unit tests for load/load_wire.c: the fixed binary record a listener
 * process writes to its parent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "load_wire.h"

static void test_round_trip_every_kind(void **state)
{
    (void)state;
    for (unsigned kind = LOAD_REC_PUSH; kind < LOAD_REC_KINDS; kind++) {
        load_rec_t r = {.kind = (uint8_t)kind, .listener = 0xA1B2C3D4u, .a = 0x1122334455667788ull,
                        .t = UINT64_MAX, .at = 1, .id = {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull}};
        unsigned char b[LOAD_WIRE_SIZE];
        load_wire_encode(&r, b);
        load_rec_t d;
        memset(&d, 0xEE, sizeof(d));
        assert_int_equal(load_wire_decode(b, &d), 0);
        assert_int_equal(d.kind, kind);
        assert_int_equal(d.listener, r.listener);
        assert_true(d.a == r.a && d.t == r.t && d.at == r.at);
        assert_true(d.id.hi == r.id.hi && d.id.lo == r.id.lo);
    }
}

static void test_layout_is_little_endian_at_fixed_offsets(void **state)
{
    (void)state;
    load_rec_t r = {.kind = LOAD_REC_HISTORY, .listener = 0x04030201u, .a = 0x0807060504030201ull, .t = 0x10,
                    .at = 0x20, .id = {0x30, 0x40}};
    unsigned char b[LOAD_WIRE_SIZE];
    memset(b, 0xAA, sizeof(b));
    load_wire_encode(&r, b);
    static const unsigned char want[LOAD_WIRE_SIZE] = {
        LOAD_REC_HISTORY, 0, 0, 0, 1, 2, 3, 4,   /* kind, padding, listener */
        1, 2, 3, 4, 5, 6, 7, 8,                  /* a */
        0x10, 0, 0, 0, 0, 0, 0, 0,               /* t */
        0x20, 0, 0, 0, 0, 0, 0, 0,               /* at */
        0x30, 0, 0, 0, 0, 0, 0, 0,               /* id.hi */
        0x40, 0, 0, 0, 0, 0, 0, 0,               /* id.lo */
    };
    assert_memory_equal(b, want, LOAD_WIRE_SIZE);
}

static void test_rejects_what_is_not_a_record(void **state)
{
    (void)state;
    unsigned char b[LOAD_WIRE_SIZE] = {0};
    load_rec_t d;
    assert_int_equal(load_wire_decode(b, &d), -1); /* kind 0 */
    b[0] = LOAD_REC_KINDS;
    assert_int_equal(load_wire_decode(b, &d), -1);
    b[0] = LOAD_REC_SYNC;
    assert_int_equal(load_wire_decode(b, &d), 0);
    b[2] = 1; /* padding must be zero: a stream out of step shows here */
    assert_int_equal(load_wire_decode(b, &d), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_kind),
        cmocka_unit_test(test_layout_is_little_endian_at_fixed_offsets),
        cmocka_unit_test(test_rejects_what_is_not_a_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
