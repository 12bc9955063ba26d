/*
 * Unit tests for src/store/cql/cql_proto.c. Byte vectors are written by hand
 * from doc/native_protocol_v4.spec; a few frames captured from Cassandra 5.0
 * cross-check the hand-written ones; the Murmur3 vectors are token() values
 * returned by a live Cassandra 5.0 node (see test_murmur3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/cql/cql_proto.h"

/* ---- helpers ------------------------------------------------------------ */

static void dump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu):", what, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, "\n");
}

static void check_bytes(const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen)
{
    if (glen != wlen || memcmp(got, want, wlen) != 0) {
        dump("got ", got, glen);
        dump("want", want, wlen);
        fail_msg("bytes differ");
    }
}
#define assert_buf(b, ...)                                                                 \
    do {                                                                                   \
        static const uint8_t want_[] = { __VA_ARGS__ };                                    \
        check_bytes((b)->data, (b)->len, want_, sizeof(want_));                            \
    } while (0)

#define ARR(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static int slice_is(cql_slice_t s, const char *str) { return cql_slice_eq(s, str); }

static size_t unhex(const char *hex, uint8_t **out)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (uint8_t)v;
    }
    *out = b;
    return n;
}

/* Parses a body (no header) as a response of opcode op, flags 0. */
static int parse_as(cql_response_t *resp, uint8_t op, uint8_t flags, const uint8_t *body, size_t len)
{
    cql_header_t h = { CQL_VERSION_RESPONSE, flags, 0, op, (uint32_t)len };
    char err[128] = "";
    int rc = cql_response_parse_body(resp, &h, body, len, err, sizeof(err));
    if (rc != NATTER_OK)
        assert_true(err[0] != '\0'); /* a failure always says why */
    return rc;
}

/* ---- names -------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(cql_error_name(0x1000), "unavailable");
    assert_string_equal(cql_error_name(0x1100), "write_timeout");
    assert_string_equal(cql_error_name(0x1200), "read_timeout");
    assert_string_equal(cql_error_name(0x2400), "already_exists");
    assert_string_equal(cql_error_name(0x2500), "unprepared");
    assert_string_equal(cql_error_name(0x000A), "protocol_error");
    assert_string_equal(cql_error_name(0x7777), "unknown");
    assert_string_equal(cql_opcode_name(CQL_OP_QUERY), "QUERY");
    assert_string_equal(cql_opcode_name(CQL_OP_AUTH_SUCCESS), "AUTH_SUCCESS");
    assert_string_equal(cql_opcode_name(4), "unknown");
    assert_string_equal(cql_opcode_name(0x11), "unknown");
    assert_string_equal(cql_opcode_name(-1), "unknown");
    assert_string_equal(cql_consistency_name(CQL_LOCAL_QUORUM), "LOCAL_QUORUM");
    assert_string_equal(cql_consistency_name(CQL_LOCAL_ONE), "LOCAL_ONE");
    assert_string_equal(cql_consistency_name(11), "unknown");
    assert_int_equal(cql_error_to_natter(CQL_ERR_UNAVAILABLE), NATTER_EUNAVAIL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_OVERLOADED), NATTER_EUNAVAIL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_WRITE_TIMEOUT), NATTER_ETIMEDOUT);
    assert_int_equal(cql_error_to_natter(CQL_ERR_READ_TIMEOUT), NATTER_ETIMEDOUT);
    assert_int_equal(cql_error_to_natter(CQL_ERR_ALREADY_EXISTS), NATTER_ECONFLICT);
    assert_int_equal(cql_error_to_natter(CQL_ERR_SYNTAX), NATTER_EINVAL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_SERVER), NATTER_EIO);
    /* replicas that failed are an outage to retry, not a statement to give up */
    assert_int_equal(cql_error_to_natter(CQL_ERR_WRITE_FAILURE), NATTER_EUNAVAIL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_READ_FAILURE), NATTER_EUNAVAIL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_TRUNCATE), NATTER_EUNAVAIL);
    assert_int_equal(cql_error_to_natter(CQL_ERR_INVALID), NATTER_EINVAL);
}

/* ---- writers ------------------------------------------------------------ */

static void test_write_scalars(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    assert_null(b.data);
    cql_buf_put_byte(&b, 0xab);
    cql_buf_put_short(&b, 0xfffe);
    cql_buf_put_int(&b, -2);
    cql_buf_put_int(&b, 0x01020304);
    cql_buf_put_long(&b, -1);
    cql_buf_put_long(&b, 0x0102030405060708LL);
    cql_buf_put_consistency(&b, CQL_LOCAL_QUORUM);
    assert_buf(&b, 0xab, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04,
               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
               0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x06);
    cql_buf_reset(&b);
    uint8_t u[16];
    for (int i = 0; i < 16; i++)
        u[i] = (uint8_t)(0xf0 + i);
    cql_buf_put_uuid(&b, u);
    assert_buf(&b, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb,
               0xfc, 0xfd, 0xfe, 0xff);
    assert_int_equal(b.err, 0);
    cql_buf_free(&b);
    assert_null(b.data);
}

static void test_write_strings(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    cql_buf_put_string(&b, "ab", 2);
    cql_buf_put_string(&b, "", 0);
    cql_buf_put_long_string(&b, "xyz", 3);
    assert_buf(&b, 0, 2, 'a', 'b', 0, 0, 0, 0, 0, 3, 'x', 'y', 'z');

    cql_buf_reset(&b);
    cql_buf_put_bytes(&b, "\x01\x02", 2);
    cql_buf_put_bytes(&b, NULL, 0); /* empty, not null */
    cql_buf_put_null_bytes(&b);
    cql_buf_put_short_bytes(&b, "\xde\xad", 2);
    assert_buf(&b, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 2, 0xde, 0xad);

    cql_buf_reset(&b);
    const char *list[] = { "a", "bc" };
    cql_buf_put_string_list(&b, list, 2);
    cql_buf_put_string_list(&b, NULL, 0);
    assert_buf(&b, 0, 2, 0, 1, 'a', 0, 2, 'b', 'c', 0, 0);

    cql_buf_reset(&b);
    const char *kv[] = { "k", "v", "K2", "" };
    cql_buf_put_string_map(&b, kv, 2);
    assert_buf(&b, 0, 2, 0, 1, 'k', 0, 1, 'v', 0, 2, 'K', '2', 0, 0);

    cql_buf_reset(&b);
    const char *v1[] = { "lz4", "snappy" };
    cql_multimap_in_t mm[] = { { "COMPRESSION", v1, 2 }, { "X", NULL, 0 } };
    cql_buf_put_string_multimap(&b, mm, 2);
    assert_buf(&b, 0, 2, 0, 11, 'C', 'O', 'M', 'P', 'R', 'E', 'S', 'S', 'I', 'O', 'N',
               0, 2, 0, 3, 'l', 'z', '4', 0, 6, 's', 'n', 'a', 'p', 'p', 'y', 0, 1, 'X', 0, 0);
    assert_int_equal(b.err, 0);
    cql_buf_free(&b);
}

static void test_write_limits(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    char *big = malloc(65536);
    memset(big, 'x', 65536);
    cql_buf_put_string(&b, big, 65535); /* the largest [string] fits */
    assert_int_equal(b.err, 0);
    assert_int_equal(b.len, 65537);
    cql_buf_reset(&b);
    cql_buf_put_byte(&b, 7);
    cql_buf_put_string(&b, big, 65536); /* one too many: nothing written, err set */
    assert_int_equal(b.err, NATTER_EINVAL);
    assert_int_equal(b.len, 1);
    cql_buf_put_int(&b, 1); /* sticky: later writes are no-ops */
    cql_buf_put_short_bytes(&b, "ab", 2);
    assert_int_equal(b.len, 1);
    cql_buf_reset(&b);
    assert_int_equal(b.err, 0);
    cql_buf_put_short_bytes(&b, big, 65536);
    assert_int_equal(b.err, NATTER_EINVAL);
    cql_buf_reset(&b);
    cql_buf_put_bytes(&b, big, (size_t)INT32_MAX + 1); /* length alone is checked */
    assert_int_equal(b.err, NATTER_EINVAL);
    assert_int_equal(b.len, 0);
    cql_buf_reset(&b);
    cql_buf_put_string_list(&b, NULL, 65536);
    assert_int_equal(b.err, NATTER_EINVAL);
    /* growth across many small writes keeps every byte */
    cql_buf_reset(&b);
    for (int i = 0; i < 10000; i++)
        cql_buf_put_short(&b, (uint16_t)i);
    assert_int_equal(b.len, 20000);
    assert_int_equal(b.data[2 * 9999], 9999 >> 8);
    assert_int_equal(b.data[2 * 9999 + 1], 9999 & 0xff);
    free(big);
    cql_buf_free(&b);
}

/* ---- reader ------------------------------------------------------------- */

static void test_read_scalars(void **state)
{
    (void)state;
    static const uint8_t in[] = { 0xab, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xfe,
                                  0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a };
    cql_reader_t r;
    cql_reader_init(&r, in, sizeof(in));
    assert_int_equal(cql_read_byte(&r), 0xab);
    assert_int_equal(cql_read_short(&r), 0xfffe);
    assert_int_equal(cql_read_int(&r), -2);
    assert_true(cql_read_long(&r) == INT64_MIN);
    assert_int_equal(cql_read_consistency(&r), CQL_LOCAL_ONE);
    assert_int_equal(r.len, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(cql_read_byte(&r), 0); /* past the end */
    assert_int_equal(r.err, NATTER_EINVAL);

    uint8_t u[16], in16[17];
    for (int i = 0; i < 17; i++)
        in16[i] = (uint8_t)i;
    cql_reader_init(&r, in16, 17);
    cql_read_uuid(&r, u);
    assert_memory_equal(u, in16, 16);
    cql_read_uuid(&r, u); /* only one byte left */
    assert_int_equal(r.err, NATTER_EINVAL);
    for (int i = 0; i < 16; i++)
        assert_int_equal(u[i], 0);
    assert_int_equal(r.len, 1); /* a failed read consumes nothing */

    cql_reader_init(&r, NULL, 5); /* NULL input is empty, not a crash */
    assert_int_equal(r.len, 0);
    cql_read_skip(&r, 0);
    assert_int_equal(r.err, 0);
    cql_read_skip(&r, 1);
    assert_int_equal(r.err, NATTER_EINVAL);
}

/* Every read on too few bytes: zero / empty result, err set, nothing consumed. */
static void test_read_bounds(void **state)
{
    (void)state;
    static const uint8_t in[] = { 0, 5, 'a', 'b' }; /* [string] claiming 5 bytes, 2 present */
    cql_reader_t r;
    for (size_t cut = 0; cut <= sizeof(in); cut++) {
        cql_reader_init(&r, in, cut);
        cql_slice_t s = cql_read_string(&r);
        assert_int_equal(r.err, NATTER_EINVAL);
        assert_int_equal(s.len, 0);
        assert_non_null(s.p);
    }
    cql_reader_init(&r, in, 3);
    assert_int_equal(cql_read_short(&r), 5);
    assert_int_equal(r.err, 0);
    assert_int_equal(cql_read_short(&r), 0); /* one byte left */
    assert_int_equal(r.err, NATTER_EINVAL);

    static const uint8_t i3[] = { 1, 2, 3 }, l7[] = { 1, 2, 3, 4, 5, 6, 7 };
    cql_reader_init(&r, i3, 3);
    assert_int_equal(cql_read_int(&r), 0);
    assert_int_equal(r.err, NATTER_EINVAL);
    assert_int_equal(r.len, 3);
    cql_reader_init(&r, l7, 7);
    assert_true(cql_read_long(&r) == 0);
    assert_int_equal(r.err, NATTER_EINVAL);

    /* [bytes] / [long string] / [value] with a length past the end */
    static const uint8_t b9[] = { 0, 0, 0, 9, 1, 2 };
    cql_reader_init(&r, b9, sizeof(b9));
    cql_slice_t s = cql_read_bytes(&r);
    assert_int_equal(r.err, NATTER_EINVAL);
    assert_int_equal(s.len, 0);
    cql_reader_init(&r, b9, sizeof(b9));
    (void)cql_read_long_string(&r);
    assert_int_equal(r.err, NATTER_EINVAL);
    cql_reader_init(&r, b9, sizeof(b9));
    (void)cql_read_value(&r);
    assert_int_equal(r.err, NATTER_EINVAL);
    /* a huge length near INT32_MAX does not wrap */
    static const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff, 1 };
    cql_reader_init(&r, huge, sizeof(huge));
    (void)cql_read_bytes(&r);
    assert_int_equal(r.err, NATTER_EINVAL);

    /* sticky: a later read that would fit still fails */
    static const uint8_t two[] = { 0, 1 };
    cql_reader_init(&r, two, 2);
    (void)cql_read_int(&r);
    assert_int_equal(cql_read_short(&r), 0);
    assert_int_equal(r.err, NATTER_EINVAL);
}

static void test_read_strings(void **state)
{
    (void)state;
    static const uint8_t in[] = {
        0, 2, 'h', 'i',                   /* [string] */
        0, 0, 0, 3, 'a', 'b', 'c',        /* [long string] */
        0, 0, 0, 2, 0xde, 0xad,           /* [bytes] */
        0xff, 0xff, 0xff, 0xff,           /* [bytes] null (-1) */
        0xff, 0xff, 0xff, 0xf0,           /* [bytes] null (any n < 0) */
        0, 0, 0, 0,                       /* [bytes] empty, not null */
        0, 1, 0x42,                       /* [short bytes] */
        0xff, 0xff, 0xff, 0xfe,           /* [value] not set (-2) */
        0xff, 0xff, 0xff, 0xff,           /* [value] null */
        0, 0, 0, 1, 'z',                  /* [value] */
    };
    cql_reader_t r;
    cql_reader_init(&r, in, sizeof(in));
    assert_true(slice_is(cql_read_string(&r), "hi"));
    assert_true(slice_is(cql_read_long_string(&r), "abc"));
    cql_slice_t s = cql_read_bytes(&r);
    assert_int_equal(s.len, 2);
    assert_int_equal(s.p[1], 0xad);
    s = cql_read_bytes(&r);
    assert_int_equal(s.len, CQL_NULL);
    assert_null(s.p);
    s = cql_read_bytes(&r);
    assert_int_equal(s.len, CQL_NULL);
    s = cql_read_bytes(&r);
    assert_int_equal(s.len, 0);
    assert_non_null(s.p);
    s = cql_read_short_bytes(&r);
    assert_int_equal(s.len, 1);
    assert_int_equal(s.p[0], 0x42);
    assert_int_equal(cql_read_value(&r).len, CQL_UNSET);
    assert_int_equal(cql_read_value(&r).len, CQL_NULL);
    assert_true(slice_is(cql_read_value(&r), "z"));
    assert_int_equal(r.len, 0);
    assert_int_equal(r.err, 0);

    static const uint8_t bad_value[] = { 0xff, 0xff, 0xff, 0xfd }; /* -3 */
    cql_reader_init(&r, bad_value, 4);
    (void)cql_read_value(&r);
    assert_int_equal(r.err, NATTER_EINVAL);
    static const uint8_t bad_ls[] = { 0xff, 0xff, 0xff, 0xff }; /* [long string] -1 */
    cql_reader_init(&r, bad_ls, 4);
    (void)cql_read_long_string(&r);
    assert_int_equal(r.err, NATTER_EINVAL);
}

static void test_read_lists_maps(void **state)
{
    (void)state;
    static const uint8_t list[] = { 0, 3, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c' };
    cql_slice_t out[4];
    cql_reader_t r;
    cql_reader_init(&r, list, sizeof(list));
    assert_int_equal(cql_read_string_list(&r, out, 4), 3);
    assert_true(slice_is(out[0], "a"));
    assert_true(slice_is(out[1], ""));
    assert_true(slice_is(out[2], "bc"));
    cql_reader_init(&r, list, sizeof(list)); /* max smaller than n: all read, 1 kept */
    out[1].len = 99;
    assert_int_equal(cql_read_string_list(&r, out, 1), 3);
    assert_int_equal(out[1].len, 99);
    assert_int_equal(r.len, 0);
    cql_reader_init(&r, list, sizeof(list) - 1);
    assert_int_equal(cql_read_string_list(&r, out, 4), 0);
    assert_int_equal(r.err, NATTER_EINVAL);

    static const uint8_t map[] = { 0, 2, 0, 1, 'k', 0, 1, 'v', 0, 2, 'K', '2', 0, 0 };
    cql_slice_t kv[4];
    cql_reader_init(&r, map, sizeof(map));
    assert_int_equal(cql_read_string_map(&r, kv, 2), 2);
    assert_true(slice_is(kv[0], "k") && slice_is(kv[1], "v"));
    assert_true(slice_is(kv[2], "K2") && slice_is(kv[3], ""));
    cql_reader_init(&r, map, sizeof(map) - 1);
    assert_int_equal(cql_read_string_map(&r, kv, 2), 0);
    assert_int_equal(r.err, NATTER_EINVAL);

    static const uint8_t mm[] = { 0, 2, 0, 1, 'C', 0, 2, 0, 1, 'x', 0, 2, 'y', 'z',
                                  0, 1, 'D', 0, 0 };
    cql_multimap_entry_t e[2];
    cql_reader_init(&r, mm, sizeof(mm));
    assert_int_equal(cql_read_string_multimap(&r, e, 2), 2);
    assert_true(slice_is(e[0].key, "C"));
    assert_int_equal(e[0].nvalues, 2);
    assert_true(slice_is(cql_read_string(&e[0].values), "x"));
    assert_true(slice_is(cql_read_string(&e[0].values), "yz"));
    assert_int_equal(e[0].values.len, 0);
    assert_true(slice_is(e[1].key, "D"));
    assert_int_equal(e[1].nvalues, 0);
    for (size_t cut = 0; cut < sizeof(mm); cut++) {
        cql_reader_init(&r, mm, cut);
        assert_int_equal(cql_read_string_multimap(&r, e, 2), 0);
        assert_int_equal(r.err, NATTER_EINVAL);
    }
}

/* What the writers write, the reader reads back. */
static void test_roundtrip(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    uint8_t u[16];
    memset(u, 0x5a, 16);
    const char *list[] = { "one", "two" };
    const char *kv[] = { "CQL_VERSION", "3.0.0" };
    cql_buf_put_int(&b, INT32_MIN);
    cql_buf_put_long(&b, INT64_MAX);
    cql_buf_put_short(&b, 65535);
    cql_buf_put_string(&b, "str", 3);
    cql_buf_put_long_string(&b, "long", 4);
    cql_buf_put_uuid(&b, u);
    cql_buf_put_string_list(&b, list, 2);
    cql_buf_put_bytes(&b, "B", 1);
    cql_buf_put_null_bytes(&b);
    cql_buf_put_short_bytes(&b, "sb", 2);
    cql_buf_put_consistency(&b, CQL_QUORUM);
    cql_buf_put_string_map(&b, kv, 1);

    cql_reader_t r;
    cql_slice_t out[4];
    uint8_t u2[16];
    cql_reader_init(&r, b.data, b.len);
    assert_int_equal(cql_read_int(&r), INT32_MIN);
    assert_true(cql_read_long(&r) == INT64_MAX);
    assert_int_equal(cql_read_short(&r), 65535);
    assert_true(slice_is(cql_read_string(&r), "str"));
    assert_true(slice_is(cql_read_long_string(&r), "long"));
    cql_read_uuid(&r, u2);
    assert_memory_equal(u, u2, 16);
    assert_int_equal(cql_read_string_list(&r, out, 4), 2);
    assert_true(slice_is(out[1], "two"));
    assert_true(slice_is(cql_read_bytes(&r), "B"));
    assert_int_equal(cql_read_bytes(&r).len, CQL_NULL);
    assert_true(slice_is(cql_read_short_bytes(&r), "sb"));
    assert_int_equal(cql_read_consistency(&r), CQL_QUORUM);
    assert_int_equal(cql_read_string_map(&r, out, 2), 1);
    assert_true(slice_is(out[0], "CQL_VERSION") && slice_is(out[1], "3.0.0"));
    assert_int_equal(r.len, 0);
    assert_int_equal(r.err, 0);
    cql_buf_free(&b);
}

/* ---- values ------------------------------------------------------------- */

static void test_values(void **state)
{
    (void)state;
    cql_value_t v = cql_value_bigint(-2);
    assert_int_equal(v.len, 8);
    check_bytes(cql_value_data(&v), 8, ARR(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe));
    v = cql_value_int(0x01020304);
    check_bytes(cql_value_data(&v), (size_t)v.len, ARR(1, 2, 3, 4));
    v = cql_value_boolean(42);
    check_bytes(cql_value_data(&v), (size_t)v.len, ARR(1));
    v = cql_value_boolean(0);
    check_bytes(cql_value_data(&v), (size_t)v.len, ARR(0));
    v = cql_value_timestamp(1700000000123LL); /* 0x18BCFE56A7B */
    check_bytes(cql_value_data(&v), (size_t)v.len, ARR(0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b));
    uint8_t u[16];
    for (int i = 0; i < 16; i++)
        u[i] = (uint8_t)i;
    v = cql_value_uuid(u);
    cql_value_t copy = v; /* inline storage survives a copy */
    memset(&v, 0, sizeof(v));
    check_bytes(cql_value_data(&copy), (size_t)copy.len, u, 16);
    v = cql_value_text("héllo");
    assert_int_equal(v.len, 6);
    v = cql_value_text("");
    assert_int_equal(v.len, 0);
    assert_int_equal(cql_value_text(NULL).len, CQL_NULL);
    v = cql_value_blob(NULL, 0);
    assert_int_equal(v.len, 0);
    assert_non_null(cql_value_data(&v));
    assert_int_equal(cql_value_null().len, CQL_NULL);
    assert_int_equal(cql_value_unset().len, CQL_UNSET);
    assert_true(cql_value_blob("x", (size_t)INT32_MAX + 1).len < CQL_UNSET);

    cql_buf_t b;
    cql_buf_init(&b);
    const char *items[] = { "a", "bc" };
    cql_encode_list_text(&b, items, 2);
    assert_buf(&b, 0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c');
    cql_buf_reset(&b);
    int64_t ids[] = { 1, -1 };
    cql_encode_set_bigint(&b, ids, 2);
    assert_buf(&b, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
               0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    cql_buf_reset(&b);
    cql_encode_list_text(&b, NULL, 0);
    assert_buf(&b, 0, 0, 0, 0);
    cql_buf_free(&b);
}

/* ---- request builders --------------------------------------------------- */

static void test_build_startup_options(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    assert_int_equal(cql_build_startup(&b, 0), NATTER_OK);
    assert_buf(&b, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x16,
               0x00, 0x01, 0x00, 0x0b, 'C', 'Q', 'L', '_', 'V', 'E', 'R', 'S', 'I', 'O', 'N',
               0x00, 0x05, '3', '.', '0', '.', '0');
    cql_buf_reset(&b);
    assert_int_equal(cql_build_options(&b, 0x0102), NATTER_OK);
    assert_buf(&b, 0x04, 0x00, 0x01, 0x02, 0x05, 0, 0, 0, 0);
    cql_buf_reset(&b);
    assert_int_equal(cql_build_register(&b, 1, (const char *[]){ "SCHEMA_CHANGE" }, 1), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 1, 0x0b, 0, 0, 0, 17, 0, 1, 0, 13,
               'S', 'C', 'H', 'E', 'M', 'A', '_', 'C', 'H', 'A', 'N', 'G', 'E');
    cql_buf_free(&b);
}

static void test_build_auth(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    assert_int_equal(cql_build_auth_plain(&b, 3, "u", "pw"), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 3, 0x0f, 0, 0, 0, 9, 0, 0, 0, 5, 0, 'u', 0, 'p', 'w');
    cql_buf_reset(&b);
    assert_int_equal(cql_build_auth_response(&b, 3, "tok", 3), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 3, 0x0f, 0, 0, 0, 7, 0, 0, 0, 3, 't', 'o', 'k');
    cql_buf_reset(&b);
    assert_int_equal(cql_build_auth_response(&b, 3, NULL, 0), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 3, 0x0f, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff);
    cql_buf_free(&b);
}

static void test_build_query(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    cql_query_params_t qp = { .consistency = CQL_ONE };
    assert_int_equal(cql_build_query(&b, 0, "USE ks", &qp), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 0, 0x07, 0, 0, 0, 13, 0, 0, 0, 6, 'U', 'S', 'E', ' ', 'k', 's',
               0x00, 0x01, 0x00);

    /* every flag: values (bigint, null, unset), skip metadata, page size,
     * paging state, serial consistency, default timestamp */
    cql_buf_reset(&b);
    cql_value_t vals[] = { cql_value_bigint(7), cql_value_null(), cql_value_unset() };
    qp = (cql_query_params_t){
        .consistency = CQL_LOCAL_QUORUM, .values = vals, .nvalues = 3, .skip_metadata = 1,
        .page_size = 100, .paging_state = (const uint8_t *)"\xaa\xbb", .paging_state_len = 2,
        .serial_consistency = CQL_LOCAL_SERIAL, .has_timestamp = 1, .timestamp = 0x0102030405LL,
    };
    assert_int_equal(cql_build_query(&b, 5, "Q", &qp), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 5, 0x07, 0, 0, 0, 50,
               0, 0, 0, 1, 'Q',
               0x00, 0x06, 0x3f,                          /* LOCAL_QUORUM, flags 0x01..0x20 */
               0x00, 0x03,                                /* 3 values */
               0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7,        /* bigint 7 */
               0xff, 0xff, 0xff, 0xff,                    /* null */
               0xff, 0xff, 0xff, 0xfe,                    /* not set */
               0, 0, 0, 100,                              /* page size */
               0, 0, 0, 2, 0xaa, 0xbb,                    /* paging state */
               0x00, 0x09,                                /* LOCAL_SERIAL */
               0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05);    /* timestamp */
    cql_buf_free(&b);
}

static void test_build_prepare_execute(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    assert_int_equal(cql_build_prepare(&b, 2, "SELECT 1"), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 2, 0x09, 0, 0, 0, 12, 0, 0, 0, 8,
               'S', 'E', 'L', 'E', 'C', 'T', ' ', '1');
    cql_buf_reset(&b);
    static const uint8_t id[] = { 0xca, 0xfe };
    cql_value_t vals[] = { cql_value_text("hi"), cql_value_boolean(1) };
    cql_query_params_t qp = { .consistency = CQL_QUORUM, .values = vals, .nvalues = 2,
                              .page_size = 50, .paging_state = (const uint8_t *)"P",
                              .paging_state_len = 1 };
    assert_int_equal(cql_build_execute(&b, 0x7fff, id, 2, &qp), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0x7f, 0xff, 0x0a, 0, 0, 0, 29,
               0, 2, 0xca, 0xfe,                  /* id */
               0, 4, 0x0d,                        /* QUORUM, values|page size|paging state */
               0, 2, 0, 0, 0, 2, 'h', 'i', 0, 0, 0, 1, 1,
               0, 0, 0, 50, 0, 0, 0, 1, 'P');
    cql_buf_free(&b);
}

static void test_build_batch(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    static const uint8_t id1[] = { 0x11 }, id2[] = { 0x22, 0x23 };
    cql_value_t v1[] = { cql_value_bigint(1) };
    cql_value_t v2[] = { cql_value_int(2), cql_value_null() };
    cql_batch_entry_t e[] = { { .id = id1, .id_len = 1, .values = v1, .nvalues = 1 },
                              { .id = id2, .id_len = 2, .values = v2, .nvalues = 2 } };
    cql_batch_params_t bp = { .type = CQL_BATCH_UNLOGGED, .consistency = CQL_LOCAL_QUORUM };
    assert_int_equal(cql_build_batch(&b, 9, &bp, e, 2), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 9, 0x0d, 0, 0, 0, 43,
               0x01, 0, 2,                                     /* unlogged, 2 statements */
               1, 0, 1, 0x11, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
               1, 0, 2, 0x22, 0x23, 0, 2, 0, 0, 0, 4, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff,
               0, 6, 0x00);                                    /* LOCAL_QUORUM, no flags */

    /* logged, a query string with no values, serial consistency and timestamp */
    cql_buf_reset(&b);
    cql_batch_entry_t q[] = { { .query = "X" } };
    bp = (cql_batch_params_t){ .type = CQL_BATCH_LOGGED, .consistency = CQL_ONE,
                               .serial_consistency = CQL_SERIAL, .has_timestamp = 1,
                               .timestamp = 1 };
    assert_int_equal(cql_build_batch(&b, 0, &bp, q, 1), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 0, 0x0d, 0, 0, 0, 24,
               0x00, 0, 1, 0, 0, 0, 0, 1, 'X', 0, 0,
               0, 1, 0x30, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1);

    cql_buf_reset(&b);
    bp.type = (cql_batch_type_t)3;
    assert_int_equal(cql_build_batch(&b, 0, &bp, q, 1), NATTER_EINVAL);
    cql_buf_reset(&b);
    bp.type = CQL_BATCH_LOGGED;
    cql_batch_entry_t none[] = { { .nvalues = 0 } }; /* neither id nor query */
    assert_int_equal(cql_build_batch(&b, 0, &bp, none, 1), NATTER_EINVAL);
    cql_buf_free(&b);
}

static void test_build_errors(void **state)
{
    (void)state;
    cql_buf_t b;
    cql_buf_init(&b);
    assert_int_equal(cql_build_options(&b, -1), NATTER_EINVAL); /* server-owned stream */
    cql_buf_reset(&b);
    cql_query_params_t qp = { .consistency = CQL_ONE, .has_timestamp = 1, .timestamp = -5 };
    assert_int_equal(cql_build_query(&b, 0, "Q", &qp), NATTER_EINVAL);
    cql_buf_reset(&b);
    cql_value_t bad = cql_value_blob("x", (size_t)INT32_MAX + 1);
    qp = (cql_query_params_t){ .consistency = CQL_ONE, .values = &bad, .nvalues = 1 };
    assert_int_equal(cql_build_query(&b, 0, "Q", &qp), NATTER_EINVAL);
    cql_buf_reset(&b);
    qp = (cql_query_params_t){ .consistency = CQL_ONE, .values = &bad, .nvalues = 65536 };
    assert_int_equal(cql_build_query(&b, 0, "Q", &qp), NATTER_EINVAL);
    cql_buf_reset(&b);
    char id[70000] = { 0 };
    qp = (cql_query_params_t){ .consistency = CQL_ONE };
    assert_int_equal(cql_build_execute(&b, 0, (const uint8_t *)id, sizeof(id), &qp), NATTER_EINVAL);

    /* two frames pipelined in one buffer, each with its own length */
    cql_buf_reset(&b);
    assert_int_equal(cql_build_options(&b, 1), NATTER_OK);
    assert_int_equal(cql_build_prepare(&b, 2, "Q"), NATTER_OK);
    assert_buf(&b, 0x04, 0, 0, 1, 0x05, 0, 0, 0, 0,
               0x04, 0, 0, 2, 0x09, 0, 0, 0, 5, 0, 0, 0, 1, 'Q');
    cql_buf_free(&b);
}

/* ---- frame header ------------------------------------------------------- */

static void test_header_codec(void **state)
{
    (void)state;
    cql_header_t h = { 0x84, 0x0a, -1, CQL_OP_EVENT, 0x01020304 }, d;
    uint8_t raw[9];
    cql_header_encode(raw, &h);
    check_bytes(raw, 9, ARR(0x84, 0x0a, 0xff, 0xff, 0x0c, 1, 2, 3, 4));
    cql_header_decode(raw, &d);
    assert_int_equal(d.version, 0x84);
    assert_int_equal(d.flags, 0x0a);
    assert_int_equal(d.stream, -1);
    assert_int_equal(d.opcode, CQL_OP_EVENT);
    assert_int_equal(d.length, 0x01020304);
    raw[2] = 0x80;
    raw[3] = 0x00;
    cql_header_decode(raw, &d);
    assert_int_equal(d.stream, INT16_MIN);
}

/* Two frames (READY, then RESULT Void) arriving one byte at a time. */
static void test_frame_bytewise(void **state)
{
    (void)state;
    static const uint8_t wire[] = { 0x84, 0, 0, 1, 0x02, 0, 0, 0, 0,
                                    0x84, 0, 0, 2, 0x08, 0, 0, 0, 4, 0, 0, 0, 1 };
    uint8_t acc[64];
    size_t have = 0, start = 0, need = 0;
    int frames = 0;
    cql_header_t h;
    char err[128];
    for (size_t i = 0; i < sizeof(wire); i++) {
        acc[have++] = wire[i];
        int n = cql_frame_peek(acc + start, have - start, &h, &need, err, sizeof(err));
        assert_true(n >= 0);
        if (n == 0) {
            assert_true(need > have - start);
            assert_int_equal(need, have - start < 9 ? 9 : (size_t)(9 + h.length));
            continue;
        }
        cql_response_t resp;
        assert_int_equal(cql_response_parse(&resp, acc + start, (size_t)n, err, sizeof(err)), NATTER_OK);
        if (frames == 0) {
            assert_int_equal(n, 9);
            assert_int_equal(resp.header.opcode, CQL_OP_READY);
            assert_int_equal(resp.header.stream, 1);
        } else {
            assert_int_equal(n, 13);
            assert_int_equal(resp.header.opcode, CQL_OP_RESULT);
            assert_int_equal(resp.kind, CQL_RESULT_VOID);
            assert_int_equal(resp.header.stream, 2);
        }
        cql_response_free(&resp);
        frames++;
        start += (size_t)n;
    }
    assert_int_equal(frames, 2);
    assert_int_equal(start, sizeof(wire));
}

/* A Rows frame of ~300 KiB read 64 KiB at a time, as a socket delivers it. */
static void test_frame_larger_than_read(void **state)
{
    (void)state;
    enum { ROWS = 3000, CELL = 96 };
    cql_buf_t body;
    cql_buf_init(&body);
    cql_buf_put_int(&body, CQL_RESULT_ROWS);
    cql_buf_put_int(&body, CQL_META_GLOBAL_TABLES_SPEC);
    cql_buf_put_int(&body, 1);
    cql_buf_put_string(&body, "ks", 2);
    cql_buf_put_string(&body, "t", 1);
    cql_buf_put_string(&body, "c", 1);
    cql_buf_put_short(&body, CQL_TYPE_BLOB);
    cql_buf_put_int(&body, ROWS);
    uint8_t cell[CELL];
    for (int i = 0; i < ROWS; i++) {
        memset(cell, i & 0xff, CELL);
        cql_buf_put_bytes(&body, cell, CELL);
    }
    uint8_t hdr[9];
    cql_header_encode(hdr, &(cql_header_t){ 0x84, 0, 7, CQL_OP_RESULT, (uint32_t)body.len });
    size_t total = 9 + body.len;
    uint8_t *wire = malloc(total);
    memcpy(wire, hdr, 9);
    memcpy(wire + 9, body.data, body.len);

    uint8_t *rx = NULL;
    size_t cap = 0, have = 0, need = 0;
    cql_header_t h;
    int n = 0, reads = 0;
    while (n == 0) {
        size_t chunk = total - have < 65536 ? total - have : 65536;
        if (have + chunk > cap) {
            cap = need > have + chunk ? need : have + chunk;
            rx = realloc(rx, cap);
        }
        memcpy(rx + have, wire + have, chunk);
        have += chunk;
        reads++;
        n = cql_frame_peek(rx, have, &h, &need, NULL, 0);
        assert_true(n >= 0);
        if (n == 0)
            assert_int_equal(need, total); /* known after the first read */
    }
    assert_true(reads > 4);
    assert_int_equal(n, (int)total);
    cql_response_t resp;
    assert_int_equal(cql_response_parse(&resp, rx, have, NULL, 0), NATTER_OK);
    assert_int_equal(resp.rows.rows_count, ROWS);
    cql_slice_t c, blob;
    assert_int_equal(cql_rows_cell(&resp.rows, ROWS - 1, 0, &c), NATTER_OK);
    assert_int_equal(cql_decode_blob(c, &blob), NATTER_OK);
    assert_int_equal(blob.len, CELL);
    assert_int_equal(blob.p[CELL - 1], (ROWS - 1) & 0xff);
    cql_response_free(&resp);
    free(rx);
    free(wire);
    cql_buf_free(&body);
}

static void test_frame_reject(void **state)
{
    (void)state;
    cql_header_t h;
    size_t need = 0;
    char err[128];
    uint8_t f[9] = { 0x83, 0, 0, 0, 0x02, 0, 0, 0, 0 };
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "version 3"));
    f[0] = 0x85;
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "version 5"));
    f[0] = 0x04; /* a request echoed back */
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "not a response"));
    f[0] = 0x84;
    f[4] = CQL_OP_QUERY;
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    f[4] = 0x04; /* no such opcode */
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, NULL, 0), NATTER_EINVAL);
    f[4] = CQL_OP_RESULT;
    f[5] = 0x10; /* 256 MiB + 1 */
    f[8] = 0x01;
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "256 MiB"));
    f[8] = 0x00; /* exactly 256 MiB: fine, need the whole of it */
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), 0);
    assert_int_equal(need, 9 + CQL_MAX_BODY);
    f[5] = 0xff; /* negative as an [int]: over the limit too */
    assert_int_equal(cql_frame_peek(f, 9, &h, &need, err, sizeof(err)), NATTER_EINVAL);
    /* fewer than 9 bytes is never an error, whatever they are */
    assert_int_equal(cql_frame_peek(f, 8, &h, &need, err, sizeof(err)), 0);
    assert_int_equal(need, 9);
    assert_int_equal(cql_frame_peek(NULL, 0, &h, NULL, NULL, 0), 0);

    /* parse of an incomplete or bad frame */
    cql_response_t resp;
    uint8_t ok[9] = { 0x84, 0, 0, 0, 0x08, 0, 0, 0, 4 };
    assert_int_equal(cql_response_parse(&resp, ok, 9, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "incomplete"));
    ok[0] = 0x83;
    assert_int_equal(cql_response_parse(&resp, ok, 9, err, sizeof(err)), NATTER_EINVAL);
}

/* ---- responses ---------------------------------------------------------- */

static void test_parse_simple_responses(void **state)
{
    (void)state;
    cql_response_t r;
    assert_int_equal(parse_as(&r, CQL_OP_READY, 0, NULL, 0), NATTER_OK);
    cql_response_free(&r);

    cql_buf_t ab;
    cql_buf_init(&ab);
    const char *cls = "org.apache.cassandra.auth.PasswordAuthenticator";
    cql_buf_put_string(&ab, cls, strlen(cls));
    assert_int_equal(parse_as(&r, CQL_OP_AUTHENTICATE, 0, ab.data, ab.len - 1), NATTER_EINVAL);
    assert_int_equal(parse_as(&r, CQL_OP_AUTHENTICATE, 0, ab.data, ab.len), NATTER_OK);
    assert_true(slice_is(r.authenticator, cls));
    cql_buf_free(&ab);
    cql_response_free(&r);

    static const uint8_t tok[] = { 0, 0, 0, 2, 'o', 'k' }, nulltok[] = { 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(parse_as(&r, CQL_OP_AUTH_CHALLENGE, 0, tok, sizeof(tok)), NATTER_OK);
    assert_true(slice_is(r.token, "ok"));
    assert_int_equal(parse_as(&r, CQL_OP_AUTH_SUCCESS, 0, nulltok, 4), NATTER_OK);
    assert_int_equal(r.token.len, CQL_NULL);
    assert_int_equal(parse_as(&r, CQL_OP_AUTH_SUCCESS, 0, nulltok, 3), NATTER_EINVAL);

    static const uint8_t sup[] = { 0, 2, 0, 11, 'C', 'Q', 'L', '_', 'V', 'E', 'R', 'S', 'I', 'O',
                                   'N', 0, 1, 0, 5, '3', '.', '4', '.', '7', 0, 11, 'C', 'O',
                                   'M', 'P', 'R', 'E', 'S', 'S', 'I', 'O', 'N', 0, 2, 0, 6, 's',
                                   'n', 'a', 'p', 'p', 'y', 0, 3, 'l', 'z', '4' };
    assert_int_equal(parse_as(&r, CQL_OP_SUPPORTED, 0, sup, sizeof(sup)), NATTER_OK);
    assert_int_equal(r.nsupported, 2);
    cql_multimap_entry_t e[2];
    assert_int_equal(cql_read_string_multimap(&r.supported, e, 2), 2);
    assert_true(slice_is(e[1].key, "COMPRESSION"));
    assert_int_equal(e[1].nvalues, 2);
    (void)cql_read_string(&e[1].values);
    assert_true(slice_is(cql_read_string(&e[1].values), "lz4"));
    assert_int_equal(parse_as(&r, CQL_OP_SUPPORTED, 0, sup, sizeof(sup) - 1), NATTER_EINVAL);

    static const uint8_t setks[] = { 0, 0, 0, 3, 0, 2, 'k', 's' };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, setks, sizeof(setks)), NATTER_OK);
    assert_int_equal(r.kind, CQL_RESULT_SET_KEYSPACE);
    assert_true(slice_is(r.keyspace, "ks"));

    static const uint8_t badkind[] = { 0, 0, 0, 6 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, badkind, 4), NATTER_EINVAL);
    assert_int_equal(parse_as(&r, CQL_OP_QUERY, 0, NULL, 0), NATTER_EINVAL); /* a request opcode */
}

static void test_parse_schema_change_and_event(void **state)
{
    (void)state;
    cql_response_t r;
    static const uint8_t table[] = { 0, 0, 0, 5, 0, 7, 'C', 'R', 'E', 'A', 'T', 'E', 'D',
                                     0, 5, 'T', 'A', 'B', 'L', 'E', 0, 2, 'k', 's', 0, 1, 't' };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, table, sizeof(table)), NATTER_OK);
    assert_int_equal(r.kind, CQL_RESULT_SCHEMA_CHANGE);
    assert_true(slice_is(r.schema.change_type, "CREATED"));
    assert_true(slice_is(r.schema.target, "TABLE"));
    assert_true(slice_is(r.schema.keyspace, "ks"));
    assert_true(slice_is(r.schema.name, "t"));
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, table, sizeof(table) - 1), NATTER_EINVAL);

    static const uint8_t ks[] = { 0, 0, 0, 5, 0, 7, 'D', 'R', 'O', 'P', 'P', 'E', 'D', 0, 8, 'K',
                                  'E', 'Y', 'S', 'P', 'A', 'C', 'E', 0, 2, 'k', 's' };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, ks, sizeof(ks)), NATTER_OK);
    assert_true(slice_is(r.schema.keyspace, "ks"));
    assert_int_equal(r.schema.name.len, CQL_NULL);

    static const uint8_t fn[] = { 0, 0, 0, 5, 0, 7, 'U', 'P', 'D', 'A', 'T', 'E', 'D', 0, 8,
                                  'F', 'U', 'N', 'C', 'T', 'I', 'O', 'N', 0, 1, 'k', 0, 1, 'f',
                                  0, 2, 0, 3, 'i', 'n', 't', 0, 4, 't', 'e', 'x', 't' };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, fn, sizeof(fn)), NATTER_OK);
    assert_true(slice_is(r.schema.name, "f"));
    assert_int_equal(r.schema.nargs, 2);
    (void)cql_read_string(&r.schema.arg_types);
    assert_true(slice_is(cql_read_string(&r.schema.arg_types), "text"));
    assert_int_equal(r.schema.arg_types.len, 0);

    /* EVENT: the type, the rest left to the caller; SCHEMA_CHANGE parsed */
    static const uint8_t ev[] = { 0, 13, 'S', 'T', 'A', 'T', 'U', 'S', '_', 'C', 'H', 'A', 'N',
                                  'G', 'E', 0, 2, 'U', 'P', 4, 127, 0, 0, 1, 0, 0, 0x23, 0x52 };
    assert_int_equal(parse_as(&r, CQL_OP_EVENT, 0, ev, sizeof(ev)), NATTER_OK);
    assert_true(slice_is(r.event_type, "STATUS_CHANGE"));
    assert_true(slice_is(cql_read_string(&r.event), "UP"));
    char addr[64];
    int32_t port;
    cql_read_inet(&r.event, addr, sizeof(addr), &port);
    assert_int_equal(r.event.err, 0);
    assert_string_equal(addr, "127.0.0.1");
    assert_int_equal(port, 9042);
    assert_int_equal(r.event.len, 0);
    /* [inet]: 16 bytes are IPv6; any other length, or a short one, is an error */
    static const uint8_t v6[] = { 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x23, 0x52 };
    cql_reader_t ir;
    cql_reader_init(&ir, v6, sizeof(v6));
    cql_read_inet(&ir, addr, sizeof(addr), &port);
    assert_int_equal(ir.err, 0);
    assert_string_equal(addr, "::1");
    static const uint8_t bad_len[] = { 5, 127, 0, 0, 1, 9, 0, 0, 0x23, 0x52 };
    cql_reader_init(&ir, bad_len, sizeof(bad_len));
    cql_read_inet(&ir, addr, sizeof(addr), &port);
    assert_int_equal(ir.err, NATTER_EINVAL);
    assert_string_equal(addr, "");
    cql_reader_init(&ir, ev + 19, 6); /* the address without its port's last bytes */
    cql_read_inet(&ir, addr, sizeof(addr), &port);
    assert_int_equal(ir.err, NATTER_EINVAL);
    assert_string_equal(addr, "");
    static const uint8_t sev[] = { 0, 13, 'S', 'C', 'H', 'E', 'M', 'A', '_', 'C', 'H', 'A', 'N',
                                   'G', 'E', 0, 7, 'C', 'R', 'E', 'A', 'T', 'E', 'D', 0, 4, 'T',
                                   'Y', 'P', 'E', 0, 2, 'k', 's', 0, 2, 't', 'y' };
    assert_int_equal(parse_as(&r, CQL_OP_EVENT, 0, sev, sizeof(sev)), NATTER_OK);
    assert_true(slice_is(r.schema.target, "TYPE"));
    assert_true(slice_is(r.schema.name, "ty"));
    assert_int_equal(parse_as(&r, CQL_OP_EVENT, 0, sev, sizeof(sev) - 1), NATTER_EINVAL);
}

static void test_parse_errors(void **state)
{
    (void)state;
    cql_response_t r;
#define ERRHDR(code_hi, code_lo) 0, 0, code_hi, code_lo, 0, 2, 'm', 's'
    static const uint8_t unavail[] = { ERRHDR(0x10, 0x00), 0, 6, 0, 0, 0, 3, 0, 0, 0, 1 };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, unavail, sizeof(unavail)), NATTER_OK);
    assert_int_equal(r.error.code, CQL_ERR_UNAVAILABLE);
    assert_true(slice_is(r.error.message, "ms"));
    assert_int_equal(r.error.consistency, CQL_LOCAL_QUORUM);
    assert_int_equal(r.error.required, 3);
    assert_int_equal(r.error.alive, 1);
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, unavail, sizeof(unavail) - 1), NATTER_EINVAL);

    static const uint8_t wto[] = { ERRHDR(0x11, 0x00), 0, 4, 0, 0, 0, 1, 0, 0, 0, 2,
                                   0, 6, 'S', 'I', 'M', 'P', 'L', 'E' };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, wto, sizeof(wto)), NATTER_OK);
    assert_int_equal(r.error.code, CQL_ERR_WRITE_TIMEOUT);
    assert_int_equal(r.error.consistency, CQL_QUORUM);
    assert_int_equal(r.error.received, 1);
    assert_int_equal(r.error.blockfor, 2);
    assert_true(slice_is(r.error.write_type, "SIMPLE"));
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, wto, sizeof(wto) - 1), NATTER_EINVAL);

    static const uint8_t rto[] = { ERRHDR(0x12, 0x00), 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1 };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, rto, sizeof(rto)), NATTER_OK);
    assert_int_equal(r.error.code, CQL_ERR_READ_TIMEOUT);
    assert_int_equal(r.error.blockfor, 1);
    assert_int_equal(r.error.data_present, 1);
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, rto, sizeof(rto) - 1), NATTER_EINVAL);

    static const uint8_t rfail[] = { ERRHDR(0x13, 0x00), 0, 1, 0, 0, 0, 1, 0, 0, 0, 2,
                                     0, 0, 0, 3, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, rfail, sizeof(rfail)), NATTER_OK);
    assert_int_equal(r.error.numfailures, 3);
    assert_int_equal(r.error.data_present, 0);

    static const uint8_t wfail[] = { ERRHDR(0x15, 0x00), 0, 1, 0, 0, 0, 1, 0, 0, 0, 2,
                                     0, 0, 0, 1, 0, 5, 'B', 'A', 'T', 'C', 'H' };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, wfail, sizeof(wfail)), NATTER_OK);
    assert_int_equal(r.error.numfailures, 1);
    assert_true(slice_is(r.error.write_type, "BATCH"));

    static const uint8_t ffail[] = { ERRHDR(0x14, 0x00), 0, 2, 'k', 's', 0, 1, 'f', 0, 1, 0, 3,
                                     'i', 'n', 't' };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, ffail, sizeof(ffail)), NATTER_OK);
    assert_true(slice_is(r.error.keyspace, "ks"));
    assert_true(slice_is(r.error.table, "f"));
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, ffail, sizeof(ffail) - 1), NATTER_EINVAL);

    static const uint8_t exists[] = { ERRHDR(0x24, 0x00), 0, 2, 'k', 's', 0, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, exists, sizeof(exists)), NATTER_OK);
    assert_true(slice_is(r.error.keyspace, "ks"));
    assert_true(slice_is(r.error.table, "")); /* keyspace exists: empty table */
    assert_int_equal(cql_error_to_natter(r.error.code), NATTER_ECONFLICT);

    static const uint8_t unprep[] = { ERRHDR(0x25, 0x00), 0, 2, 0xbe, 0xef };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, unprep, sizeof(unprep)), NATTER_OK);
    assert_int_equal(r.error.unprepared_id.len, 2);
    assert_int_equal(r.error.unprepared_id.p[0], 0xbe);
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, unprep, sizeof(unprep) - 1), NATTER_EINVAL);

    static const uint8_t syntax[] = { ERRHDR(0x20, 0x00) };
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, syntax, sizeof(syntax)), NATTER_OK);
    assert_string_equal(cql_error_name(r.error.code), "syntax_error");
    assert_int_equal(r.error.unprepared_id.len, CQL_NULL);
    assert_int_equal(parse_as(&r, CQL_OP_ERROR, 0, syntax, 5), NATTER_EINVAL);
#undef ERRHDR
}

/* Rows: Global_tables_spec + Has_more_pages, a list<text> column, a null cell. */
static const uint8_t rows_body[] = {
    0, 0, 0, 2,             /* kind Rows */
    0, 0, 0, 3,             /* flags Global_tables_spec | Has_more_pages */
    0, 0, 0, 3,             /* 3 columns */
    0, 0, 0, 3, 0xaa, 0xbb, 0xcc, /* paging state */
    0, 2, 'k', 's', 0, 1, 't',    /* global table spec */
    0, 2, 'i', 'd', 0, 0x02,      /* id bigint */
    0, 4, 't', 'a', 'g', 's', 0, 0x20, 0, 0x0d, /* tags list<varchar> */
    0, 2, 'o', 'k', 0, 0x04,      /* ok boolean */
    0, 0, 0, 2,                   /* 2 rows */
    0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42,
    0, 0, 0, 15, 0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 2, 'b', 'c',
    0, 0, 0, 1, 1,
    0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff,       /* tags null */
    0, 0, 0, 0,                   /* ok empty */
};

static void test_parse_rows(void **state)
{
    (void)state;
    cql_response_t r;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, rows_body, sizeof(rows_body)), NATTER_OK);
    assert_int_equal(r.kind, CQL_RESULT_ROWS);
    const cql_meta_t *m = &r.rows.meta;
    assert_int_equal(m->columns_count, 3);
    assert_true(m->flags & CQL_META_HAS_MORE_PAGES);
    assert_int_equal(m->paging_state.len, 3);
    assert_int_equal(m->paging_state.p[2], 0xcc);
    assert_true(slice_is(m->columns[1].keyspace, "ks"));
    assert_true(slice_is(m->columns[1].table, "t"));
    assert_true(slice_is(m->columns[1].name, "tags"));
    assert_int_equal(m->columns[0].type.id, CQL_TYPE_BIGINT);
    assert_int_equal(m->columns[1].type.id, CQL_TYPE_LIST);
    assert_int_equal(m->columns[1].type.elem[0], CQL_TYPE_VARCHAR);
    assert_int_equal(m->columns[1].type.raw.len, 4);
    assert_int_equal(m->columns[2].type.id, CQL_TYPE_BOOLEAN);
    assert_int_equal(r.rows.rows_count, 2);

    cql_slice_t c, s;
    int64_t id;
    int b;
    int32_t n;
    cql_reader_t it;
    assert_int_equal(cql_rows_cell(&r.rows, 0, 0, &c), NATTER_OK);
    assert_int_equal(cql_decode_bigint(c, &id), NATTER_OK);
    assert_true(id == 42);
    assert_int_equal(cql_rows_cell(&r.rows, 0, 1, &c), NATTER_OK);
    assert_int_equal(cql_decode_collection(c, &it, &n), NATTER_OK);
    assert_int_equal(n, 2);
    assert_int_equal(cql_decode_text(cql_read_bytes(&it), &s), NATTER_OK);
    assert_true(slice_is(s, "a"));
    assert_int_equal(cql_decode_text(cql_read_bytes(&it), &s), NATTER_OK);
    assert_true(slice_is(s, "bc"));
    assert_int_equal(it.len, 0);
    assert_int_equal(cql_rows_cell(&r.rows, 0, 2, &c), NATTER_OK);
    assert_int_equal(cql_decode_boolean(c, &b), NATTER_OK);
    assert_int_equal(b, 1);
    assert_int_equal(cql_rows_cell(&r.rows, 1, 0, &c), NATTER_OK);
    assert_int_equal(cql_decode_bigint(c, &id), NATTER_OK);
    assert_true(id == -1);
    assert_int_equal(cql_rows_cell(&r.rows, 1, 1, &c), NATTER_OK);
    assert_int_equal(c.len, CQL_NULL);
    assert_int_equal(cql_decode_collection(c, &it, &n), NATTER_ENOTFOUND);
    assert_int_equal(cql_rows_cell(&r.rows, 1, 2, &c), NATTER_OK);
    assert_int_equal(cql_decode_boolean(c, &b), NATTER_ENOTFOUND); /* empty value */
    assert_int_equal(cql_rows_cell(&r.rows, 2, 0, &c), NATTER_EINVAL);
    assert_int_equal(cql_rows_cell(&r.rows, 0, 3, &c), NATTER_EINVAL);
    assert_int_equal(cql_rows_cell(&r.rows, -1, 0, &c), NATTER_EINVAL);
    cql_response_free(&r);

    /* every truncation is caught and leaks nothing */
    for (size_t cut = 0; cut < sizeof(rows_body); cut++)
        assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, rows_body, cut), NATTER_EINVAL);
}

/* Per-column table specs, nested and exotic types, No_metadata. */
static void test_parse_rows_types(void **state)
{
    (void)state;
    static const uint8_t body[] = {
        0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, /* no flags, 4 columns */
        0, 1, 'k', 0, 1, 't', 0, 1, 'm', 0, 0x21, 0, 0x0d, 0, 0x22, 0, 0x0c, /* map<text,set<uuid>> */
        0, 1, 'k', 0, 1, 'u', 0, 1, 'u', 0, 0x30, 0, 1, 'k', 0, 2, 'a', 'd', 0, 2,
        0, 1, 'x', 0, 0x09, 0, 1, 'y', 0, 0x31, 0, 2, 0, 0x0b, 0, 0x10,       /* udt{x int, y tuple} */
        0, 1, 'k', 0, 1, 't', 0, 1, 'c', 0, 0, 0, 3, 'c', 'l', 's',           /* custom */
        0, 1, 'k', 0, 1, 't', 0, 1, 'd', 0, 0x15,                              /* duration (v5) */
        0, 0, 0, 0,                                                            /* no rows */
    };
    cql_response_t r;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, body, sizeof(body)), NATTER_OK);
    const cql_column_t *c = r.rows.meta.columns;
    assert_true(slice_is(c[0].table, "t"));
    assert_int_equal(c[0].type.id, CQL_TYPE_MAP);
    assert_int_equal(c[0].type.elem[0], CQL_TYPE_VARCHAR);
    assert_int_equal(c[0].type.elem[1], CQL_TYPE_SET);
    assert_int_equal(c[1].type.id, CQL_TYPE_UDT);
    assert_true(slice_is(c[1].table, "u"));
    assert_true(slice_is(c[2].type.custom, "cls"));
    assert_true(slice_is(c[3].name, "d"));
    assert_int_equal(r.rows.rows_count, 0);
    assert_null(r.rows.cells);
    cql_response_free(&r);
    for (size_t cut = 0; cut < sizeof(body); cut++)
        assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, body, cut), NATTER_EINVAL);

    static const uint8_t nometa[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1, /* No_metadata, 1 col */
                                      0, 0, 0, 1, 0, 0, 0, 1, 'x' };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, nometa, sizeof(nometa)), NATTER_OK);
    assert_null(r.rows.meta.columns);
    assert_int_equal(r.rows.meta.paging_state.len, CQL_NULL);
    cql_slice_t cell, txt;
    assert_int_equal(cql_rows_cell(&r.rows, 0, 0, &cell), NATTER_OK);
    assert_int_equal(cql_decode_text(cell, &txt), NATTER_OK);
    assert_true(slice_is(txt, "x"));
    cql_response_free(&r);
}

static void test_parse_rows_hostile(void **state)
{
    (void)state;
    cql_response_t r;
    /* 2^31-1 rows of 2^31-1 columns with No_metadata: rejected, not allocated */
    static const uint8_t huge[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff,
                                    0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, huge, sizeof(huge)), NATTER_EINVAL);
    /* a column count the frame cannot hold */
    static const uint8_t cols[] = { 0, 0, 0, 2, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 'a', 0, 2 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, cols, sizeof(cols)), NATTER_EINVAL);
    static const uint8_t negcols[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, negcols, sizeof(negcols)), NATTER_EINVAL);
    /* rows of no columns: nothing bounds their count, refused */
    static const uint8_t zerocols[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, zerocols, sizeof(zerocols)), NATTER_EINVAL);
    static const uint8_t zero[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, zero, sizeof(zero)), NATTER_OK);
    cql_response_free(&r);
    static const uint8_t negrows[] = { 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, negrows, sizeof(negrows)), NATTER_EINVAL);
    /* an unknown type id cannot be skipped */
    static const uint8_t unk[] = { 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0,
                                   0, 1, 'c', 0, 0x40, 0, 0, 0, 0 };
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, unk, sizeof(unk)), NATTER_EINVAL);
    /* list<list<...>> 40 deep: refused past 16 levels */
    uint8_t deep[16 + 2 * 40 + 2 + 4 + 64];
    size_t n = 0;
    static const uint8_t pre[] = { 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 'c' };
    memcpy(deep, pre, sizeof(pre));
    n = sizeof(pre);
    for (int i = 0; i < 40; i++) {
        deep[n++] = 0;
        deep[n++] = 0x20;
    }
    deep[n++] = 0;
    deep[n++] = 0x09;
    memset(deep + n, 0, 4);
    n += 4;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, deep, n), NATTER_EINVAL);
    /* 16 levels are fine */
    n = sizeof(pre);
    for (int i = 0; i < 16; i++) {
        deep[n++] = 0;
        deep[n++] = 0x20;
    }
    deep[n++] = 0;
    deep[n++] = 0x09;
    memset(deep + n, 0, 4);
    n += 4;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, deep, n), NATTER_OK);
    cql_response_free(&r);
}

/* Prepared with pk indexes [2, 0, 1] and a result metadata. */
static const uint8_t prepared_body[] = {
    0, 0, 0, 4,                   /* kind Prepared */
    0, 2, 0xab, 0xcd,             /* id */
    0, 0, 0, 1,                   /* flags Global_tables_spec */
    0, 0, 0, 3,                   /* 3 bind markers */
    0, 0, 0, 3, 0, 2, 0, 0, 0, 1, /* pk_count 3: [2, 0, 1] */
    0, 2, 'k', 's', 0, 1, 't',
    0, 1, 'a', 0, 0x02,
    0, 1, 'b', 0, 0x09,
    0, 1, 'c', 0, 0x0c,
    0, 0, 0, 1, 0, 0, 0, 1,       /* result metadata: global, 1 column */
    0, 2, 'k', 's', 0, 1, 't', 0, 1, 'v', 0, 0x03,
};

static void test_parse_prepared(void **state)
{
    (void)state;
    cql_response_t r;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, prepared_body, sizeof(prepared_body)), NATTER_OK);
    const cql_prepared_t *p = &r.prepared;
    assert_int_equal(r.kind, CQL_RESULT_PREPARED);
    assert_int_equal(p->id.len, 2);
    assert_int_equal(p->id.p[1], 0xcd);
    assert_int_equal(p->bind_count, 3);
    assert_int_equal(p->pk_count, 3);
    assert_int_equal(p->pk_index[0], 2);
    assert_int_equal(p->pk_index[1], 0);
    assert_int_equal(p->pk_index[2], 1);
    assert_true(slice_is(p->binds[2].name, "c"));
    assert_true(slice_is(p->binds[2].keyspace, "ks"));
    assert_int_equal(p->binds[2].type.id, CQL_TYPE_UUID);
    assert_int_equal(p->result.columns_count, 1);
    assert_true(slice_is(p->result.columns[0].name, "v"));
    assert_int_equal(p->result.columns[0].type.id, CQL_TYPE_BLOB);
    cql_response_free(&r);
    for (size_t cut = 0; cut < sizeof(prepared_body); cut++)
        assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, prepared_body, cut), NATTER_EINVAL);

    uint8_t bad[sizeof(prepared_body)];
    memcpy(bad, prepared_body, sizeof(bad));
    bad[21] = 3; /* pk index 3 of 3 bind markers */
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, bad, sizeof(bad)), NATTER_EINVAL);
    memcpy(bad, prepared_body, sizeof(bad));
    bad[16] = 0x7f; /* pk_count far past the frame */
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, 0, bad, sizeof(bad)), NATTER_EINVAL);
}

/* Tracing id, warnings and custom payload before the body (spec 2.2). */
static void test_parse_prefix(void **state)
{
    (void)state;
    static const uint8_t body[] = {
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, /* tracing id */
        0, 1, 0, 4, 'w', 'a', 'r', 'n',                        /* warnings */
        0, 1, 0, 1, 'k', 0, 0, 0, 1, 'v',                      /* custom payload */
        0, 0, 0, 1,                                            /* RESULT Void */
    };
    cql_response_t r;
    uint8_t flags = CQL_FLAG_TRACING | CQL_FLAG_WARNING | CQL_FLAG_CUSTOM_PAYLOAD;
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, flags, body, sizeof(body)), NATTER_OK);
    assert_int_equal(r.has_tracing_id, 1);
    assert_int_equal(r.tracing_id[15], 16);
    assert_int_equal(r.nwarnings, 1);
    assert_true(slice_is(cql_read_string(&r.warnings), "warn"));
    assert_int_equal(r.kind, CQL_RESULT_VOID);
    for (size_t cut = 0; cut < sizeof(body); cut++)
        assert_int_equal(parse_as(&r, CQL_OP_RESULT, flags, body, cut), NATTER_EINVAL);
    /* warnings alone */
    assert_int_equal(parse_as(&r, CQL_OP_RESULT, CQL_FLAG_WARNING, body + 16, 8), NATTER_EINVAL); /* no kind */
    char err[128];
    cql_header_t h = { 0x84, CQL_FLAG_COMPRESSION, 0, CQL_OP_RESULT, 4 };
    assert_int_equal(cql_response_parse_body(&r, &h, body + 34, 4, err, sizeof(err)), NATTER_EINVAL);
    assert_non_null(strstr(err, "compressed"));
}

/* ---- cell decoders ------------------------------------------------------ */

static cql_slice_t sl(const void *p, int32_t len)
{
    cql_slice_t s = { p, len };
    return s;
}

static void test_decoders(void **state)
{
    (void)state;
    int64_t l;
    int32_t i;
    int b;
    uint8_t u[16];
    cql_slice_t s;
    cql_reader_t r;
    const cql_slice_t null = { NULL, CQL_NULL };

    assert_int_equal(cql_decode_bigint(sl("\x80\0\0\0\0\0\0\0", 8), &l), NATTER_OK);
    assert_true(l == INT64_MIN);
    assert_int_equal(cql_decode_bigint(sl("\0\0\0\0", 4), &l), NATTER_EINVAL);
    assert_int_equal(cql_decode_bigint(sl("\0\0\0\0\0\0\0\0\0", 9), &l), NATTER_EINVAL);
    assert_int_equal(cql_decode_bigint(null, &l), NATTER_ENOTFOUND);
    assert_int_equal(cql_decode_bigint(sl("", 0), &l), NATTER_ENOTFOUND);
    assert_int_equal(cql_decode_timestamp(sl("\0\0\x01\x8b\xcf\xe5\x68\x7b", 8), &l), NATTER_OK);
    assert_true(l == 1700000000123LL);
    assert_int_equal(cql_decode_int(sl("\xff\xff\xff\xfe", 4), &i), NATTER_OK);
    assert_int_equal(i, -2);
    assert_int_equal(cql_decode_int(sl("\0\0\0\0\0\0\0\0", 8), &i), NATTER_EINVAL);
    assert_int_equal(cql_decode_int(null, &i), NATTER_ENOTFOUND);
    assert_int_equal(cql_decode_boolean(sl("\x02", 1), &b), NATTER_OK);
    assert_int_equal(b, 1);
    assert_int_equal(cql_decode_boolean(sl("\0", 1), &b), NATTER_OK);
    assert_int_equal(b, 0);
    assert_int_equal(cql_decode_boolean(sl("\0\0", 2), &b), NATTER_EINVAL);
    assert_int_equal(cql_decode_uuid(sl("0123456789abcdef", 16), u), NATTER_OK);
    assert_int_equal(u[15], 'f');
    assert_int_equal(cql_decode_uuid(sl("0123456789abcde", 15), u), NATTER_EINVAL);
    assert_int_equal(cql_decode_uuid(null, u), NATTER_ENOTFOUND);
    assert_int_equal(cql_decode_text(sl("h\xc3\xa9", 3), &s), NATTER_OK);
    assert_int_equal(s.len, 3);
    assert_int_equal(cql_decode_text(sl("", 0), &s), NATTER_OK); /* empty text is a value */
    assert_int_equal(cql_decode_text(sl("\xc3", 1), &s), NATTER_EINVAL);
    assert_int_equal(cql_decode_text(null, &s), NATTER_ENOTFOUND);
    assert_int_equal(cql_decode_blob(sl("\0\xff", 2), &s), NATTER_OK);
    assert_int_equal(cql_decode_blob(null, &s), NATTER_ENOTFOUND);

    /* set<bigint> as encoded by cql_encode_set_bigint */
    cql_buf_t enc;
    cql_buf_init(&enc);
    int64_t ids[] = { 5, INT64_MAX };
    cql_encode_set_bigint(&enc, ids, 2);
    assert_int_equal(cql_decode_collection(sl(enc.data, (int32_t)enc.len), &r, &i), NATTER_OK);
    assert_int_equal(i, 2);
    assert_int_equal(cql_decode_bigint(cql_read_bytes(&r), &l), NATTER_OK);
    assert_true(l == 5);
    assert_int_equal(cql_decode_bigint(cql_read_bytes(&r), &l), NATTER_OK);
    assert_true(l == INT64_MAX);
    assert_int_equal(r.err, 0);
    cql_buf_free(&enc);
    assert_int_equal(cql_decode_collection(sl("\0\0\0\x05\0\0\0\0", 8), &r, &i), NATTER_EINVAL);
    assert_int_equal(cql_decode_collection(sl("\xff\xff\xff\xff", 4), &r, &i), NATTER_EINVAL);
    assert_int_equal(cql_decode_collection(sl("\0\0", 2), &r, &i), NATTER_EINVAL);
    assert_int_equal(cql_decode_collection(null, &r, &i), NATTER_ENOTFOUND);
}

/* ---- frames captured from Cassandra 5.0.x (protocol v4) ----------------- */

static void test_captured_frames(void **state)
{
    (void)state;
    uint8_t *f;
    size_t n;
    cql_response_t r;
    char err[128];
    cql_slice_t c, s;
    int64_t id;
    int32_t cnt;
    cql_reader_t it;

    /* SELECT id, tags FROM ks.msgs WHERE chat = 7 AND bucket = 1, page size 2 */
    n = unhex("84000000080000008200000002000000030000000200000016000a00080000000000000001f07ffffffdf0"
              "7ffffffd00026b7300046d7367730002696400020004746167730020000d0000000200000008000000"
              "00000000000000000f0000000200000001610000000262630000000800000000000000010000000f00"
              "0000020000000161000000026263", &f);
    assert_int_equal(cql_frame_peek(f, n, &r.header, NULL, err, sizeof(err)), (int)n);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_int_equal(r.kind, CQL_RESULT_ROWS);
    assert_int_equal(r.rows.meta.paging_state.len, 22);
    assert_int_equal(r.rows.meta.columns[1].type.id, CQL_TYPE_LIST);
    assert_int_equal(r.rows.meta.columns[1].type.elem[0], CQL_TYPE_VARCHAR);
    assert_int_equal(r.rows.rows_count, 2);
    assert_int_equal(cql_rows_cell(&r.rows, 1, 0, &c), NATTER_OK);
    assert_int_equal(cql_decode_bigint(c, &id), NATTER_OK);
    assert_true(id == 1);
    assert_int_equal(cql_rows_cell(&r.rows, 1, 1, &c), NATTER_OK);
    assert_int_equal(cql_decode_collection(c, &it, &cnt), NATTER_OK);
    assert_int_equal(cnt, 2);
    (void)cql_read_bytes(&it);
    assert_int_equal(cql_decode_text(cql_read_bytes(&it), &s), NATTER_OK);
    assert_true(slice_is(s, "bc"));
    cql_response_free(&r);
    free(f);

    /* PREPARE INSERT INTO ks.msgs (id, bucket, chat) VALUES (?, ?, ?), pk (chat, bucket) */
    n = unhex("8400000008000000500000000400104f50755a22df8c5c2f1266eadc42154b000000010000000300000002"
              "0002000100026b7300046d73677300026964000200066275636b6574000900046368617400020000000400"
              "000000", &f);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_int_equal(r.prepared.id.len, 16);
    assert_int_equal(r.prepared.pk_count, 2);
    assert_int_equal(r.prepared.pk_index[0], 2); /* chat is the third marker */
    assert_int_equal(r.prepared.pk_index[1], 1); /* bucket the second */
    assert_true(slice_is(r.prepared.binds[2].name, "chat"));
    assert_int_equal(r.prepared.result.flags, CQL_META_NO_METADATA);
    assert_int_equal(r.prepared.result.columns_count, 0);
    cql_response_free(&r);
    free(f);

    /* SUPPORTED */
    n = unhex("8400000006000000660003001150524f544f434f4c5f56455253494f4e5300040004332f76330004342f76"
              "340004352f76350009362f76362d62657461000b434f4d5052455353494f4e00020006736e6170707900"
              "036c7a34000b43514c5f56455253494f4e00010005332e342e37", &f);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_int_equal(r.nsupported, 3);
    cql_multimap_entry_t e[3];
    assert_int_equal(cql_read_string_multimap(&r.supported, e, 3), 3);
    assert_true(slice_is(e[0].key, "PROTOCOL_VERSIONS"));
    assert_int_equal(e[0].nvalues, 4);
    free(f);

    /* CREATE TABLE of an existing table */
    n = unhex("84000000000000004900002400003943616e6e6f742061646420616c7265616479206578697374696e6720"
              "7461626c6520226d7367732220746f206b6579737061636520226b732200026b7300046d736773", &f);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_int_equal(r.error.code, CQL_ERR_ALREADY_EXISTS);
    assert_true(slice_is(r.error.table, "msgs"));
    free(f);

    /* EXECUTE of an unknown id: Unprepared carries it back */
    n = unhex("8400000000000000e10000250000d550726570617265642071756572792077697468204944206465616462"
              "656566206e6f7420666f756e6420286569746865722074686520717565727920776173206e6f74207072"
              "657061726564206f6e207468697320686f737420286d617962652074686520686f737420686173206265"
              "656e207265737461727465643f29206f7220796f75206861766520707265706172656420746f6f206d61"
              "6e79207175657269657320616e6420697420686173206265656e20657669637465642066726f6d207468"
              "6520696e7465726e616c206361636865290004deadbeef", &f);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_int_equal(r.error.code, CQL_ERR_UNPREPARED);
    check_bytes(r.error.unprepared_id.p, 4, ARR(0xde, 0xad, 0xbe, 0xef));
    free(f);

    n = unhex("84000000080000001e0000000500074352454154454400055441424c4500026b7300046d736773", &f);
    assert_int_equal(cql_response_parse(&r, f, n, err, sizeof(err)), NATTER_OK);
    assert_true(slice_is(r.schema.target, "TABLE") && slice_is(r.schema.name, "msgs"));
    free(f);
}

/* ---- murmur3 ------------------------------------------------------------ */

/*
 * Expected values are `SELECT token(k) FROM ks.t WHERE k = ?` from a live
 * Cassandra 5.0 node (Murmur3Partitioner), on a bigint key (8-byte big-endian
 * serialization) and on blob keys. The blob keys exercise the sign-extended
 * tail (bytes >= 0x80 in the last len % 16 bytes) and whole 16-byte blocks.
 * Cassandra refuses an empty key ("Key may not be empty"); its partitioner
 * maps an empty key to the minimum token, Long.MIN_VALUE.
 */
static void test_murmur3(void **state)
{
    (void)state;
    static const struct { int64_t key, token; } bigints[] = {
        { 0, 2945182322382062539LL },
        { 1, 6292367497774912474LL },
        { 42, 8623491988607824794LL },
        { -1, 7071048584287372947LL },
        { 1099511627776LL, -8779846503135273481LL }, /* 2^40 */
        { INT64_MAX, -1722304415079482439LL },
        { INT64_MIN, 9204767954415360687LL },
        { 1234567890123456789LL, -1931134801720106650LL },
    };
    for (size_t i = 0; i < sizeof(bigints) / sizeof(bigints[0]); i++) {
        cql_value_t v = cql_value_bigint(bigints[i].key);
        assert_true(cql_murmur3_token(cql_value_data(&v), 8) == bigints[i].token);
    }
    static const struct { const char *hex; int64_t token; } blobs[] = {
        { "61", -8839064797231613815LL },
        { "00", 5048724184180415669LL },
        { "ff", -4442228696663692417LL },
        { "68656c6c6f", -3758069500696749310LL },
        { "80818283848586", 690902581674979450LL },
        { "30313233343536373839616263646566", 5467490433528156583LL },
        { "30313233343536373839616263646566fffefd", -5453328650897102700LL },
        { "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e", -9222542793393665168LL },
        { "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627",
          -4350383952250503068LL },
    };
    for (size_t i = 0; i < sizeof(blobs) / sizeof(blobs[0]); i++) {
        uint8_t *k;
        size_t n = unhex(blobs[i].hex, &k);
        int64_t t = cql_murmur3_token(k, n);
        if (t != blobs[i].token)
            fail_msg("token(0x%s) = %lld, Cassandra says %lld", blobs[i].hex, (long long)t,
                     (long long)blobs[i].token);
        free(k);
    }
    assert_true(cql_murmur3_token("", 0) == INT64_MIN);
    assert_true(cql_murmur3_token(NULL, 0) == INT64_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_write_scalars),
        cmocka_unit_test(test_write_strings),
        cmocka_unit_test(test_write_limits),
        cmocka_unit_test(test_read_scalars),
        cmocka_unit_test(test_read_bounds),
        cmocka_unit_test(test_read_strings),
        cmocka_unit_test(test_read_lists_maps),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_build_startup_options),
        cmocka_unit_test(test_build_auth),
        cmocka_unit_test(test_build_query),
        cmocka_unit_test(test_build_prepare_execute),
        cmocka_unit_test(test_build_batch),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_header_codec),
        cmocka_unit_test(test_frame_bytewise),
        cmocka_unit_test(test_frame_larger_than_read),
        cmocka_unit_test(test_frame_reject),
        cmocka_unit_test(test_parse_simple_responses),
        cmocka_unit_test(test_parse_schema_change_and_event),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_rows),
        cmocka_unit_test(test_parse_rows_types),
        cmocka_unit_test(test_parse_rows_hostile),
        cmocka_unit_test(test_parse_prepared),
        cmocka_unit_test(test_parse_prefix),
        cmocka_unit_test(test_decoders),
        cmocka_unit_test(test_captured_frames),
        cmocka_unit_test(test_murmur3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
