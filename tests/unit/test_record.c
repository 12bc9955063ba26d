/* Unit tests for src/log/record.c: the Kafka record codec, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "log/record.h"

static natter_msg_t *sample(const char *content, const char *cid)
{
    natter_msg_t *m = natter_msg_new(0x0102030405060708ULL, 42, content, strlen(content), cid, strlen(cid));
    m->id = 0x1122334455667788ULL;
    m->created_at_ms = 1795816618305LL;
    m->ingest_ns = 1795816618305123456LL;
    return m;
}

static void test_layout(void **state)
{
    (void)state;
    natter_msg_t *m = sample("hé", "c1");
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    /* 1 + 5*8 + 1 + 2 (client id) + 4 + 3 (content) */
    assert_int_equal(len, 51);
    assert_int_equal(buf[0], 1);
    assert_int_equal(buf[1], 0x88); /* id, little-endian */
    assert_int_equal(buf[8], 0x11);
    assert_int_equal(buf[9], 0x08); /* chat id */
    assert_int_equal(buf[41], 2);   /* client_id length */
    assert_memory_equal(buf + 42, "c1", 2);
    assert_int_equal(buf[44], 3); /* content length */
    assert_int_equal(buf[45] | buf[46] | buf[47], 0);
    assert_memory_equal(buf + 48, "h\xc3\xa9", 3);
    free(buf);
    free(m);
}

static void test_roundtrip(void **state)
{
    (void)state;
    natter_msg_t *m = sample("hello, world", "");
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    natter_msg_t *d = natter_record_decode(buf, len);
    assert_non_null(d);
    assert_int_equal(d->id, m->id);
    assert_int_equal(d->chat_id, m->chat_id);
    assert_int_equal(d->sender_id, 42);
    assert_int_equal(d->created_at_ms, m->created_at_ms);
    assert_int_equal(d->ingest_ns, m->ingest_ns);
    assert_int_equal(d->client_id_len, 0);
    assert_int_equal(d->content_len, 12);
    assert_string_equal(d->content, "hello, world");
    free(d);
    free(buf);
    free(m);
}

static void test_rejects_malformed(void **state)
{
    (void)state;
    natter_msg_t *m = sample("abc", "x");
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    for (size_t cut = 0; cut < len; cut++) /* every truncation */
        assert_null(natter_record_decode(buf, cut));
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 'z';
    assert_null(natter_record_decode(longer, len + 1)); /* trailing bytes */
    buf[0] = 2;
    assert_null(natter_record_decode(buf, len)); /* unknown version */
    buf[0] = 1;
    buf[41] = 65;
    assert_null(natter_record_decode(buf, len)); /* client_id over 64 */
    buf[41] = 1;
    buf[47] = 0xC3; /* content "ab\xC3" is not UTF-8 */
    buf[len - 1] = 0xC3;
    buf[47] = 0;
    assert_null(natter_record_decode(buf, len));
    free(longer);
    free(buf);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_rejects_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
