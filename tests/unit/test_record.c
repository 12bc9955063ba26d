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

static void test_recipients_travel_in_a_header(void **state)
{
    (void)state;
    const uint64_t ids[3] = {7, 0x0102030405060708ULL, 42};
    natter_msg_t *m = natter_msg_new_to(9, 42, "hi", 2, "c1", 2, ids, 3);
    m->id = 77;
    assert_int_equal(m->nrecipients, 3);
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    uint8_t to[NATTER_RECORD_RECIPIENTS_MAX_BYTES];
    size_t tolen = natter_record_recipients(m, to);
    assert_int_equal(tolen, 24);
    assert_int_equal(to[8], 0x08); /* little-endian, like the value */
    assert_int_equal(to[15], 0x01);
    /* the value is what it was without recipients: older nodes read it */
    natter_msg_t *plain = natter_record_decode(buf, len);
    assert_non_null(plain);
    assert_int_equal(plain->nrecipients, 0);
    natter_msg_t *d = natter_record_decode_to(buf, len, to, tolen);
    assert_non_null(d);
    assert_int_equal(d->nrecipients, 3);
    assert_memory_equal(natter_msg_recipients(d), ids, sizeof(ids));
    assert_string_equal(d->content, "hi");
    assert_int_equal(natter_msg_size(d), natter_msg_size(m));
    free(d);
    /* a malformed header is left out; the message still decodes */
    const size_t bad_len[] = {7, 25, NATTER_RECORD_RECIPIENTS_MAX_BYTES + 8};
    uint8_t big[NATTER_RECORD_RECIPIENTS_MAX_BYTES + 8];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i + 1);
    for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        d = natter_record_decode_to(buf, len, big, bad_len[i]);
        assert_non_null(d);
        assert_int_equal(d->nrecipients, 0);
        free(d);
    }
    memset(to + 8, 0, 8); /* a zero id */
    d = natter_record_decode_to(buf, len, to, tolen);
    assert_non_null(d);
    assert_int_equal(d->nrecipients, 0);
    free(d);
    /* the most a record carries, and one more is not carried at all */
    uint64_t many[NATTER_MSG_RECIPIENTS_MAX + 1];
    for (size_t i = 0; i <= NATTER_MSG_RECIPIENTS_MAX; i++)
        many[i] = i + 1;
    natter_msg_t *full = natter_msg_new_to(9, 1, "", 0, "", 0, many, NATTER_MSG_RECIPIENTS_MAX);
    assert_int_equal(natter_record_recipients(full, to), NATTER_RECORD_RECIPIENTS_MAX_BYTES);
    d = natter_record_decode_to(buf, len, to, NATTER_RECORD_RECIPIENTS_MAX_BYTES);
    assert_non_null(d);
    assert_int_equal(d->nrecipients, NATTER_MSG_RECIPIENTS_MAX);
    assert_int_equal(natter_msg_recipients(d)[NATTER_MSG_RECIPIENTS_MAX - 1], NATTER_MSG_RECIPIENTS_MAX);
    free(d);
    free(full);
    natter_msg_t *over = natter_msg_new_to(9, 1, "", 0, "", 0, many, NATTER_MSG_RECIPIENTS_MAX + 1);
    assert_int_equal(over->nrecipients, 0);
    free(over);
    free(plain);
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
    buf[0] = 3;
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

static natter_msg_t *event(unsigned kind, const char *content)
{
    natter_msg_t *m = sample(content, "");
    m->kind = (uint8_t)kind;
    m->target_id = 0x0A0B0C0D0E0F1011ULL;
    return m;
}

static natter_msg_t *roundtrip(const natter_msg_t *m, size_t *len)
{
    uint8_t *buf = natter_record_encode(m, len);
    natter_msg_t *d = natter_record_decode(buf, *len);
    free(buf);
    return d;
}

/* Events are version 2: the kind after the version, the target after ingest_ns. */
static void test_event_layout(void **state)
{
    (void)state;
    natter_msg_t *m = event(NATTER_EV_EDIT, "new");
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    /* 1 + 1 + 6*8 + 1 + 0 (client id) + 4 + 3 */
    assert_int_equal(len, 58);
    assert_int_equal(buf[0], 2);
    assert_int_equal(buf[1], NATTER_EV_EDIT);
    assert_int_equal(buf[2], 0x88);  /* id */
    assert_int_equal(buf[42], 0x11); /* target, little-endian */
    assert_int_equal(buf[49], 0x0A);
    assert_int_equal(buf[50], 0);    /* client_id length */
    assert_int_equal(buf[51], 3);    /* content length */
    assert_memory_equal(buf + 55, "new", 3);
    free(buf);
    free(m);
}

static void test_event_roundtrip(void **state)
{
    (void)state;
    static const struct {
        unsigned kind;
        const char *content;
    } cases[] = {
        {NATTER_EV_EDIT, "better words"},
        {NATTER_EV_DELETE, ""},
        {NATTER_EV_REACT_ADD, "\xf0\x9f\x91\x8d"},
        {NATTER_EV_REACT_REMOVE, "\xe2\x9d\xa4\xef\xb8\x8f"},
        {NATTER_EV_TYPING, ""},
        {NATTER_EV_READ, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        natter_msg_t *m = event(cases[i].kind, cases[i].content);
        size_t len;
        natter_msg_t *d = roundtrip(m, &len);
        assert_non_null(d);
        assert_int_equal(d->kind, cases[i].kind);
        assert_int_equal(d->id, m->id);
        assert_int_equal(d->chat_id, m->chat_id);
        assert_int_equal(d->sender_id, m->sender_id);
        assert_int_equal(d->target_id, m->target_id);
        assert_int_equal(d->created_at_ms, m->created_at_ms);
        assert_string_equal(d->content, cases[i].content);
        free(d);
        free(m);
    }
    natter_msg_t *p = event(NATTER_EV_PRESENCE_BEAT, "1,2,3");
    p->chat_id = 0;
    p->target_id = 0;
    size_t len;
    natter_msg_t *d = roundtrip(p, &len);
    assert_non_null(d);
    assert_int_equal(d->kind, NATTER_EV_PRESENCE_BEAT);
    assert_string_equal(d->content, "1,2,3");
    free(d);
    free(p);
    static const char hash_hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    natter_msg_t *s = event(NATTER_EV_SESSION_END, hash_hex);
    s->chat_id = 0;
    s->target_id = 0;
    d = roundtrip(s, &len);
    assert_non_null(d);
    assert_int_equal(d->kind, NATTER_EV_SESSION_END);
    assert_int_equal(d->sender_id, s->sender_id);
    assert_string_equal(d->content, hash_hex);
    free(d);
    free(s);
    static const char *const ops[] = NATTER_MEMBERSHIP_OPS;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        natter_msg_t *mb = event(NATTER_EV_MEMBERSHIP, ops[i]);
        d = roundtrip(mb, &len);
        assert_non_null(d);
        assert_int_equal(d->kind, NATTER_EV_MEMBERSHIP);
        assert_int_equal(d->target_id, mb->target_id);
        assert_string_equal(d->content, ops[i]);
        assert_int_equal(natter_membership_op(d->content, d->content_len), (int)i);
        free(d);
        free(mb);
    }
}

/* What each kind needs: a target, content of its shape, a chat. */
static void test_event_rejects(void **state)
{
    (void)state;
    size_t len;
    struct {
        unsigned kind;
        const char *content;
        uint64_t target, chat;
    } bad[] = {
        {NATTER_EV_EDIT, "", 7, 1},               /* an edit without content */
        {NATTER_EV_EDIT, "x", 0, 1},              /* ... or without its message */
        {NATTER_EV_DELETE, "left over", 7, 1},    /* a delete carries no content */
        {NATTER_EV_REACT_ADD, "abc", 7, 1},       /* not an emoji */
        {NATTER_EV_REACT_ADD, "", 7, 1},
        {NATTER_EV_REACT_REMOVE, "\xf0\x9f\x91\x8d", 0, 1},
        {NATTER_EV_TYPING, "", 0, 0},             /* typing in no chat */
        {NATTER_EV_READ, "", 0, 1},               /* read up to nothing */
        {NATTER_EV_PRESENCE_UP, "1", 0, 5},       /* presence is no chat's */
        {NATTER_EV_SESSION_END, "00ff", 0, 0},    /* not a whole token hash */
        {NATTER_EV_SESSION_END, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0, 5},
        {NATTER_EV_MEMBERSHIP, "joined", 7, 1},   /* not an op */
        {NATTER_EV_MEMBERSHIP, "adde", 7, 1},
        {NATTER_EV_MEMBERSHIP, "added", 0, 1},    /* nobody added */
        {NATTER_EV_MEMBERSHIP, "added", 7, 0},    /* to no chat */
        {NATTER_EV_KINDS, "", 7, 1},              /* an unknown kind */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        natter_msg_t *m = event(bad[i].kind, bad[i].content);
        m->target_id = bad[i].target;
        m->chat_id = bad[i].chat;
        natter_msg_t *d = roundtrip(m, &len);
        if (d != NULL)
            fail_msg("case %zu decoded", i);
        free(m);
    }
    /* a message in version 2 is not a form natter writes: refused, so a record has one encoding */
    natter_msg_t *m = event(NATTER_EV_EDIT, "x");
    uint8_t *buf = natter_record_encode(m, &len);
    buf[1] = NATTER_EV_MESSAGE;
    assert_null(natter_record_decode(buf, len));
    for (size_t cut = 0; cut < len; cut++)
        assert_null(natter_record_decode(buf, cut));
    free(buf);
    free(m);
}

/* A message stays version 1: a node that knows only version 1 reads it. */
static void test_message_stays_v1(void **state)
{
    (void)state;
    natter_msg_t *m = sample("hi", "");
    m->target_id = 99; /* not part of a message's record */
    size_t len;
    uint8_t *buf = natter_record_encode(m, &len);
    assert_int_equal(buf[0], 1);
    assert_int_equal(len, NATTER_RECORD_HEADER + 4 + 2);
    natter_msg_t *d = natter_record_decode(buf, len);
    assert_non_null(d);
    assert_int_equal(d->kind, NATTER_EV_MESSAGE);
    assert_int_equal(d->target_id, 0);
    free(d);
    free(buf);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_recipients_travel_in_a_header),
        cmocka_unit_test(test_rejects_malformed),
        cmocka_unit_test(test_event_layout),
        cmocka_unit_test(test_event_roundtrip),
        cmocka_unit_test(test_event_rejects),
        cmocka_unit_test(test_message_stays_v1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
