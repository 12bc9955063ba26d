/*
 * CQL native protocol v4: frames in, frames out.
 *
 * Why natter carries its own CQL client: no C driver for Cassandra or Scylla
 * is reachable from the package registries natter builds from (the DataStax
 * and Scylla C/C++ drivers are not packaged there), and the distributed STORE
 * needs only a small, well-specified part of the protocol. Scylla and
 * Cassandra both speak v4, so one implementation of the spec
 * (doc/native_protocol_v4.spec in apache/cassandra) serves both. This file is
 * written from that spec, not from any driver; the Murmur3 token follows the
 * semantics of Cassandra's Murmur3Partitioner, checked against a live node.
 *
 * Map of this file:
 *   1. names            error codes, opcodes, consistencies -> strings
 *   2. reader           bounded reads of every notation of spec section 3
 *   3. buffer           growable output and writers of the same notations
 *   4. values           [value]s to bind, collections
 *   5. frame header     encode/decode, cql_frame_peek for incremental input
 *   6. requests         STARTUP ... BATCH, each a whole frame
 *   7. responses        ERROR ... RESULT/EVENT, metadata, column types
 *   8. cell decoders    typed views of the [bytes] of a row
 *   9. murmur3          the partitioner token, for token-aware routing
 */
#include "store/cql/cql_proto.h"

#include "core/error.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t cql__empty[1];

static void cql__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- 1. names ----------------------------------------------------------- */

const char *cql_error_name(int32_t code)
{
    switch (code) {
    case CQL_ERR_SERVER: return "server_error";
    case CQL_ERR_PROTOCOL: return "protocol_error";
    case CQL_ERR_BAD_CREDENTIALS: return "bad_credentials";
    case CQL_ERR_UNAVAILABLE: return "unavailable";
    case CQL_ERR_OVERLOADED: return "overloaded";
    case CQL_ERR_IS_BOOTSTRAPPING: return "is_bootstrapping";
    case CQL_ERR_TRUNCATE: return "truncate_error";
    case CQL_ERR_WRITE_TIMEOUT: return "write_timeout";
    case CQL_ERR_READ_TIMEOUT: return "read_timeout";
    case CQL_ERR_READ_FAILURE: return "read_failure";
    case CQL_ERR_FUNCTION_FAILURE: return "function_failure";
    case CQL_ERR_WRITE_FAILURE: return "write_failure";
    case CQL_ERR_SYNTAX: return "syntax_error";
    case CQL_ERR_UNAUTHORIZED: return "unauthorized";
    case CQL_ERR_INVALID: return "invalid";
    case CQL_ERR_CONFIG: return "config_error";
    case CQL_ERR_ALREADY_EXISTS: return "already_exists";
    case CQL_ERR_UNPREPARED: return "unprepared";
    default: return "unknown";
    }
}

const char *cql_opcode_name(int opcode)
{
    static const char *const names[] = {
        "ERROR", "STARTUP", "READY", "AUTHENTICATE", NULL, "OPTIONS", "SUPPORTED",
        "QUERY", "RESULT", "PREPARE", "EXECUTE", "REGISTER", "EVENT", "BATCH",
        "AUTH_CHALLENGE", "AUTH_RESPONSE", "AUTH_SUCCESS",
    };
    if (opcode < 0 || (size_t)opcode >= sizeof(names) / sizeof(names[0]) || !names[opcode])
        return "unknown";
    return names[opcode];
}

const char *cql_consistency_name(int c)
{
    static const char *const names[] = {
        "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
        "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
    };
    if (c < 0 || (size_t)c >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[c];
}

int cql_error_to_natter(int32_t code)
{
    switch (code) {
    case CQL_ERR_UNAVAILABLE:
    case CQL_ERR_OVERLOADED:
    case CQL_ERR_IS_BOOTSTRAPPING:
    case CQL_ERR_TRUNCATE:
    case CQL_ERR_READ_FAILURE:
    case CQL_ERR_WRITE_FAILURE: return NATTER_EUNAVAIL; /* replicas failed or away: an outage, not a refusal */
    case CQL_ERR_WRITE_TIMEOUT:
    case CQL_ERR_READ_TIMEOUT: return NATTER_ETIMEDOUT;
    case CQL_ERR_ALREADY_EXISTS: return NATTER_ECONFLICT;
    case CQL_ERR_SYNTAX:
    case CQL_ERR_INVALID: return NATTER_EINVAL;
    default: return NATTER_EIO;
    }
}

/* ---- 2. reader ---------------------------------------------------------- */

static uint16_t cql__be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t cql__be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t cql__be64(const uint8_t *p)
{
    return (uint64_t)cql__be32(p) << 32 | cql__be32(p + 4);
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int32_t cql__s32(uint32_t u)
{
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static int64_t cql__s64(uint64_t u)
{
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static const cql_slice_t cql__null_slice = { NULL, CQL_NULL };

static cql_slice_t cql__empty_slice(void)
{
    cql_slice_t s = { cql__empty, 0 };
    return s;
}

int cql_slice_eq(cql_slice_t s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len >= 0 && (size_t)s.len == n && (n == 0 || memcmp(s.p, cstr, n) == 0);
}

void cql_reader_init(cql_reader_t *r, const void *p, size_t len)
{
    r->p = p ? p : cql__empty;
    r->len = p ? len : 0;
    r->err = 0;
}

/* The next n bytes, or NULL (and r->err) if there are not n left. */
static const uint8_t *cql__take(cql_reader_t *r, size_t n)
{
    if (r->err || n > r->len) {
        r->err = NATTER_EINVAL;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->len -= n;
    return p;
}

uint8_t cql_read_byte(cql_reader_t *r)
{
    const uint8_t *p = cql__take(r, 1);
    return p ? p[0] : 0;
}

uint16_t cql_read_short(cql_reader_t *r)
{
    const uint8_t *p = cql__take(r, 2);
    return p ? cql__be16(p) : 0;
}

int32_t cql_read_int(cql_reader_t *r)
{
    const uint8_t *p = cql__take(r, 4);
    return p ? cql__s32(cql__be32(p)) : 0;
}

int64_t cql_read_long(cql_reader_t *r)
{
    const uint8_t *p = cql__take(r, 8);
    return p ? cql__s64(cql__be64(p)) : 0;
}

void cql_read_uuid(cql_reader_t *r, uint8_t out[16])
{
    const uint8_t *p = cql__take(r, 16);
    if (p)
        memcpy(out, p, 16);
    else
        memset(out, 0, 16);
}

void cql_read_skip(cql_reader_t *r, size_t n) { (void)cql__take(r, n); }

uint16_t cql_read_consistency(cql_reader_t *r) { return cql_read_short(r); }

void cql_read_inet(cql_reader_t *r, char *out, size_t outlen, int32_t *port)
{
    uint8_t n = cql_read_byte(r);
    const uint8_t *a = r->err || (n != 4 && n != 16) ? NULL : cql__take(r, n);
    *port = cql_read_int(r);
    if (outlen > 0)
        out[0] = '\0';
    if (a == NULL || r->err) {
        r->err = NATTER_EINVAL;
        return;
    }
    if (inet_ntop(n == 4 ? AF_INET : AF_INET6, a, out, (socklen_t)outlen) == NULL && outlen > 0)
        out[0] = '\0';
}

/* n bytes as a slice; an empty slice on error. */
static cql_slice_t cql__slice(cql_reader_t *r, size_t n)
{
    const uint8_t *p = cql__take(r, n);
    if (!p)
        return cql__empty_slice();
    cql_slice_t s = { p, (int32_t)n };
    return s;
}

cql_slice_t cql_read_string(cql_reader_t *r)
{
    uint16_t n = cql_read_short(r);
    return r->err ? cql__empty_slice() : cql__slice(r, n);
}

cql_slice_t cql_read_short_bytes(cql_reader_t *r) { return cql_read_string(r); }

cql_slice_t cql_read_long_string(cql_reader_t *r)
{
    int32_t n = cql_read_int(r);
    if (n < 0)
        r->err = NATTER_EINVAL;
    return r->err ? cql__empty_slice() : cql__slice(r, (size_t)n);
}

cql_slice_t cql_read_bytes(cql_reader_t *r)
{
    int32_t n = cql_read_int(r);
    if (r->err)
        return cql__empty_slice();
    return n < 0 ? cql__null_slice : cql__slice(r, (size_t)n);
}

cql_slice_t cql_read_value(cql_reader_t *r)
{
    int32_t n = cql_read_int(r);
    if (n < CQL_UNSET)
        r->err = NATTER_EINVAL;
    if (r->err)
        return cql__empty_slice();
    if (n < 0) {
        cql_slice_t s = { NULL, n };
        return s;
    }
    return cql__slice(r, (size_t)n);
}

size_t cql_read_string_list(cql_reader_t *r, cql_slice_t *out, size_t max)
{
    uint16_t n = cql_read_short(r);
    for (size_t i = 0; i < n && !r->err; i++) {
        cql_slice_t s = cql_read_string(r);
        if (i < max)
            out[i] = s;
    }
    return r->err ? 0 : n;
}

size_t cql_read_string_map(cql_reader_t *r, cql_slice_t *out, size_t max_pairs)
{
    uint16_t n = cql_read_short(r);
    for (size_t i = 0; i < n && !r->err; i++) {
        cql_slice_t k = cql_read_string(r), v = cql_read_string(r);
        if (i < max_pairs) {
            out[2 * i] = k;
            out[2 * i + 1] = v;
        }
    }
    return r->err ? 0 : n;
}

size_t cql_read_string_multimap(cql_reader_t *r, cql_multimap_entry_t *out, size_t max)
{
    uint16_t n = cql_read_short(r);
    for (size_t i = 0; i < n && !r->err; i++) {
        cql_multimap_entry_t e;
        e.key = cql_read_string(r);
        e.nvalues = cql_read_short(r);
        const uint8_t *start = r->p;
        for (size_t j = 0; j < e.nvalues && !r->err; j++)
            (void)cql_read_string(r);
        cql_reader_init(&e.values, start, (size_t)(r->p - start));
        if (i < max)
            out[i] = e;
    }
    return r->err ? 0 : n;
}

/* ---- 3. buffer ---------------------------------------------------------- */

void cql_buf_init(cql_buf_t *b) { memset(b, 0, sizeof(*b)); }

void cql_buf_reset(cql_buf_t *b)
{
    b->len = 0;
    b->err = 0;
}

void cql_buf_free(cql_buf_t *b)
{
    free(b->data);
    cql_buf_init(b);
}

/* Room for n more bytes, or 0 (and b->err) when b has already failed. */
static int cql__room(cql_buf_t *b, size_t n)
{
    if (b->err)
        return 0;
    if (n > SIZE_MAX / 2 - b->len) {
        b->err = NATTER_EINVAL;
        return 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    return 1;
}

void cql_buf_put_raw(cql_buf_t *b, const void *p, size_t n)
{
    if (!cql__room(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void cql__put_be(cql_buf_t *b, uint64_t v, size_t n)
{
    uint8_t t[8];
    for (size_t i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    cql_buf_put_raw(b, t, n);
}

void cql_buf_put_byte(cql_buf_t *b, uint8_t v) { cql_buf_put_raw(b, &v, 1); }
void cql_buf_put_short(cql_buf_t *b, uint16_t v) { cql__put_be(b, v, 2); }
void cql_buf_put_int(cql_buf_t *b, int32_t v) { cql__put_be(b, (uint32_t)v, 4); }
void cql_buf_put_long(cql_buf_t *b, int64_t v) { cql__put_be(b, (uint64_t)v, 8); }
void cql_buf_put_uuid(cql_buf_t *b, const uint8_t uuid[16]) { cql_buf_put_raw(b, uuid, 16); }
void cql_buf_put_consistency(cql_buf_t *b, cql_consistency_t c) { cql_buf_put_short(b, (uint16_t)c); }

void cql_buf_put_short_bytes(cql_buf_t *b, const void *p, size_t n)
{
    if (n > UINT16_MAX) {
        b->err = NATTER_EINVAL;
        return;
    }
    cql_buf_put_short(b, (uint16_t)n);
    cql_buf_put_raw(b, p, n);
}

void cql_buf_put_string(cql_buf_t *b, const char *s, size_t n) { cql_buf_put_short_bytes(b, s, n); }

void cql_buf_put_bytes(cql_buf_t *b, const void *p, size_t n)
{
    if (n > INT32_MAX) {
        b->err = NATTER_EINVAL;
        return;
    }
    cql_buf_put_int(b, (int32_t)n);
    cql_buf_put_raw(b, p, n);
}

void cql_buf_put_long_string(cql_buf_t *b, const char *s, size_t n) { cql_buf_put_bytes(b, s, n); }

void cql_buf_put_null_bytes(cql_buf_t *b) { cql_buf_put_int(b, CQL_NULL); }

/* A [short] count, or b->err when n does not fit one. */
static int cql__put_count(cql_buf_t *b, size_t n)
{
    if (n > UINT16_MAX) {
        b->err = NATTER_EINVAL;
        return 0;
    }
    cql_buf_put_short(b, (uint16_t)n);
    return !b->err;
}

void cql_buf_put_string_list(cql_buf_t *b, const char *const *list, size_t n)
{
    if (!cql__put_count(b, n))
        return;
    for (size_t i = 0; i < n; i++)
        cql_buf_put_string(b, list[i], strlen(list[i]));
}

void cql_buf_put_string_map(cql_buf_t *b, const char *const *kv, size_t npairs)
{
    if (!cql__put_count(b, npairs))
        return;
    for (size_t i = 0; i < 2 * npairs; i++)
        cql_buf_put_string(b, kv[i], strlen(kv[i]));
}

void cql_buf_put_string_multimap(cql_buf_t *b, const cql_multimap_in_t *m, size_t n)
{
    if (!cql__put_count(b, n))
        return;
    for (size_t i = 0; i < n; i++) {
        cql_buf_put_string(b, m[i].key, strlen(m[i].key));
        cql_buf_put_string_list(b, m[i].values, m[i].nvalues);
    }
}

/* ---- 4. values ---------------------------------------------------------- */

static cql_value_t cql__value_be(uint64_t v, int32_t n)
{
    cql_value_t out = { n, NULL, { 0 } };
    for (int32_t i = 0; i < n; i++)
        out.inl[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return out;
}

cql_value_t cql_value_null(void)
{
    cql_value_t v = { CQL_NULL, NULL, { 0 } };
    return v;
}

cql_value_t cql_value_unset(void)
{
    cql_value_t v = { CQL_UNSET, NULL, { 0 } };
    return v;
}

cql_value_t cql_value_bigint(int64_t v) { return cql__value_be((uint64_t)v, 8); }
cql_value_t cql_value_int(int32_t v) { return cql__value_be((uint32_t)v, 4); }
cql_value_t cql_value_boolean(int v) { return cql__value_be(v ? 1 : 0, 1); }
cql_value_t cql_value_timestamp(int64_t ms) { return cql__value_be((uint64_t)ms, 8); }

cql_value_t cql_value_uuid(const uint8_t uuid[16])
{
    cql_value_t v = { 16, NULL, { 0 } };
    memcpy(v.inl, uuid, 16);
    return v;
}

cql_value_t cql_value_blob(const void *p, size_t n)
{
    if (n > INT32_MAX) {
        cql_value_t bad = { CQL_UNSET - 1, NULL, { 0 } }; /* rejected by the builders */
        return bad;
    }
    cql_value_t v = { (int32_t)n, p ? p : cql__empty, { 0 } };
    return v;
}

cql_value_t cql_value_text(const char *s)
{
    return s ? cql_value_blob(s, strlen(s)) : cql_value_null();
}

const uint8_t *cql_value_data(const cql_value_t *v) { return v->ptr ? v->ptr : v->inl; }

static void cql__put_value(cql_buf_t *b, const cql_value_t *v)
{
    if (v->len < CQL_UNSET) {
        b->err = NATTER_EINVAL;
        return;
    }
    cql_buf_put_int(b, v->len);
    if (v->len > 0)
        cql_buf_put_raw(b, cql_value_data(v), (size_t)v->len);
}

static void cql__put_values(cql_buf_t *b, const cql_value_t *values, size_t n)
{
    if (!cql__put_count(b, n))
        return;
    for (size_t i = 0; i < n; i++)
        cql__put_value(b, &values[i]);
}

void cql_encode_list_text(cql_buf_t *out, const char *const *items, size_t n)
{
    if (n > INT32_MAX) {
        out->err = NATTER_EINVAL;
        return;
    }
    cql_buf_put_int(out, (int32_t)n);
    for (size_t i = 0; i < n; i++)
        cql_buf_put_bytes(out, items[i], strlen(items[i]));
}

void cql_encode_set_bigint(cql_buf_t *out, const int64_t *items, size_t n)
{
    if (n > INT32_MAX) {
        out->err = NATTER_EINVAL;
        return;
    }
    cql_buf_put_int(out, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        cql_buf_put_int(out, 8);
        cql_buf_put_long(out, items[i]);
    }
}

/* ---- 5. frame header ---------------------------------------------------- */

void cql_header_encode(uint8_t out[CQL_HEADER_LEN], const cql_header_t *h)
{
    out[0] = h->version;
    out[1] = h->flags;
    out[2] = (uint8_t)((uint16_t)h->stream >> 8);
    out[3] = (uint8_t)h->stream;
    out[4] = h->opcode;
    out[5] = (uint8_t)(h->length >> 24);
    out[6] = (uint8_t)(h->length >> 16);
    out[7] = (uint8_t)(h->length >> 8);
    out[8] = (uint8_t)h->length;
}

void cql_header_decode(const uint8_t in[CQL_HEADER_LEN], cql_header_t *h)
{
    uint16_t s = cql__be16(in + 2);
    h->version = in[0];
    h->flags = in[1];
    h->stream = s <= INT16_MAX ? (int16_t)s : (int16_t)(-(int)(uint16_t)~s - 1);
    h->opcode = in[4];
    h->length = cql__be32(in + 5);
}

static int cql__is_response_op(uint8_t op)
{
    switch (op) {
    case CQL_OP_ERROR: case CQL_OP_READY: case CQL_OP_AUTHENTICATE: case CQL_OP_SUPPORTED:
    case CQL_OP_RESULT: case CQL_OP_EVENT: case CQL_OP_AUTH_CHALLENGE: case CQL_OP_AUTH_SUCCESS:
        return 1;
    default:
        return 0;
    }
}

int cql_frame_peek(const uint8_t *p, size_t avail, cql_header_t *h, size_t *need,
                   char *err, size_t errlen)
{
    if (avail < CQL_HEADER_LEN) {
        if (need)
            *need = CQL_HEADER_LEN;
        return 0;
    }
    cql_header_decode(p, h);
    if (h->version != CQL_VERSION_RESPONSE) {
        if (h->version & 0x80)
            cql__fail(err, errlen, "server answered with protocol version %d; natter speaks v4 only",
                      h->version & 0x7f);
        else
            cql__fail(err, errlen, "not a response frame (version byte 0x%02x)", h->version);
        return NATTER_EINVAL;
    }
    if (!cql__is_response_op(h->opcode)) {
        cql__fail(err, errlen, "opcode 0x%02x is not a response", h->opcode);
        return NATTER_EINVAL;
    }
    if (h->length > CQL_MAX_BODY) {
        cql__fail(err, errlen, "frame body of %u bytes is over the 256 MiB limit", h->length);
        return NATTER_EINVAL;
    }
    size_t total = CQL_HEADER_LEN + (size_t)h->length;
    if (avail < total) {
        if (need)
            *need = total;
        return 0;
    }
    return (int)total;
}

/* ---- 6. requests -------------------------------------------------------- */

/* Appends a header with length 0; returns where it starts, for cql__end. */
static size_t cql__begin(cql_buf_t *b, int16_t stream, uint8_t op)
{
    cql_header_t h = { CQL_VERSION_REQUEST, 0, stream, op, 0 };
    uint8_t raw[CQL_HEADER_LEN];
    size_t at = b->len;
    if (stream < 0)
        b->err = NATTER_EINVAL;
    cql_header_encode(raw, &h);
    cql_buf_put_raw(b, raw, sizeof(raw));
    return at;
}

/* Patches the body length into the header written at `at`. */
static int cql__end(cql_buf_t *b, size_t at)
{
    if (b->err)
        return b->err;
    size_t body = b->len - at - CQL_HEADER_LEN;
    if (body > CQL_MAX_BODY) {
        b->err = NATTER_EINVAL;
        return b->err;
    }
    uint8_t *p = b->data + at + 5;
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    return NATTER_OK;
}

int cql_build_startup(cql_buf_t *b, int16_t stream)
{
    static const char *const kv[] = { "CQL_VERSION", "3.0.0" };
    size_t at = cql__begin(b, stream, CQL_OP_STARTUP);
    cql_buf_put_string_map(b, kv, 1);
    return cql__end(b, at);
}

int cql_build_options(cql_buf_t *b, int16_t stream)
{
    return cql__end(b, cql__begin(b, stream, CQL_OP_OPTIONS));
}

int cql_build_auth_response(cql_buf_t *b, int16_t stream, const void *token, size_t n)
{
    size_t at = cql__begin(b, stream, CQL_OP_AUTH_RESPONSE);
    if (token)
        cql_buf_put_bytes(b, token, n);
    else
        cql_buf_put_null_bytes(b);
    return cql__end(b, at);
}

int cql_build_auth_plain(cql_buf_t *b, int16_t stream, const char *user, const char *password)
{
    size_t ulen = strlen(user), plen = strlen(password);
    size_t at = cql__begin(b, stream, CQL_OP_AUTH_RESPONSE);
    if (ulen > INT32_MAX - 2 || plen > INT32_MAX - 2 - ulen) {
        b->err = NATTER_EINVAL;
        return b->err;
    }
    cql_buf_put_int(b, (int32_t)(2 + ulen + plen));
    cql_buf_put_byte(b, 0);
    cql_buf_put_raw(b, user, ulen);
    cql_buf_put_byte(b, 0);
    cql_buf_put_raw(b, password, plen);
    return cql__end(b, at);
}

/* <query_parameters> of QUERY and EXECUTE (spec 4.1.4). */
static void cql__put_params(cql_buf_t *b, const cql_query_params_t *qp)
{
    uint8_t flags = 0;
    if (qp->nvalues)
        flags |= 0x01;
    if (qp->skip_metadata)
        flags |= 0x02;
    if (qp->page_size > 0)
        flags |= 0x04;
    if (qp->paging_state)
        flags |= 0x08;
    if (qp->serial_consistency)
        flags |= 0x10;
    if (qp->has_timestamp)
        flags |= 0x20;
    if (qp->has_timestamp && qp->timestamp < 0)
        b->err = NATTER_EINVAL; /* "negative values are forbidden" */
    cql_buf_put_consistency(b, qp->consistency);
    cql_buf_put_byte(b, flags);
    if (flags & 0x01)
        cql__put_values(b, qp->values, qp->nvalues);
    if (flags & 0x04)
        cql_buf_put_int(b, qp->page_size);
    if (flags & 0x08)
        cql_buf_put_bytes(b, qp->paging_state, qp->paging_state_len);
    if (flags & 0x10)
        cql_buf_put_consistency(b, qp->serial_consistency);
    if (flags & 0x20)
        cql_buf_put_long(b, qp->timestamp);
}

int cql_build_query(cql_buf_t *b, int16_t stream, const char *query, const cql_query_params_t *qp)
{
    size_t at = cql__begin(b, stream, CQL_OP_QUERY);
    cql_buf_put_long_string(b, query, strlen(query));
    cql__put_params(b, qp);
    return cql__end(b, at);
}

int cql_build_prepare(cql_buf_t *b, int16_t stream, const char *query)
{
    size_t at = cql__begin(b, stream, CQL_OP_PREPARE);
    cql_buf_put_long_string(b, query, strlen(query));
    return cql__end(b, at);
}

int cql_build_execute(cql_buf_t *b, int16_t stream, const uint8_t *id, size_t id_len,
                      const cql_query_params_t *qp)
{
    size_t at = cql__begin(b, stream, CQL_OP_EXECUTE);
    cql_buf_put_short_bytes(b, id, id_len);
    cql__put_params(b, qp);
    return cql__end(b, at);
}

int cql_build_batch(cql_buf_t *b, int16_t stream, const cql_batch_params_t *bp,
                    const cql_batch_entry_t *entries, size_t n)
{
    size_t at = cql__begin(b, stream, CQL_OP_BATCH);
    uint8_t flags = (uint8_t)((bp->serial_consistency ? 0x10 : 0) | (bp->has_timestamp ? 0x20 : 0));
    if ((unsigned)bp->type > CQL_BATCH_COUNTER || (bp->has_timestamp && bp->timestamp < 0))
        b->err = NATTER_EINVAL;
    cql_buf_put_byte(b, (uint8_t)bp->type);
    cql__put_count(b, n);
    for (size_t i = 0; i < n; i++) {
        const cql_batch_entry_t *e = &entries[i];
        if (e->id) {
            cql_buf_put_byte(b, 1);
            cql_buf_put_short_bytes(b, e->id, e->id_len);
        } else if (e->query) {
            cql_buf_put_byte(b, 0);
            cql_buf_put_long_string(b, e->query, strlen(e->query));
        } else {
            b->err = NATTER_EINVAL;
        }
        cql__put_values(b, e->values, e->nvalues);
    }
    cql_buf_put_consistency(b, bp->consistency);
    cql_buf_put_byte(b, flags);
    if (flags & 0x10)
        cql_buf_put_consistency(b, bp->serial_consistency);
    if (flags & 0x20)
        cql_buf_put_long(b, bp->timestamp);
    return cql__end(b, at);
}

int cql_build_register(cql_buf_t *b, int16_t stream, const char *const *events, size_t n)
{
    size_t at = cql__begin(b, stream, CQL_OP_REGISTER);
    cql_buf_put_string_list(b, events, n);
    return cql__end(b, at);
}

/* ---- 7. responses ------------------------------------------------------- */

#define CQL__MAX_TYPE_DEPTH 16

static uint16_t cql__parse_type(cql_reader_t *r, cql_type_t *t, int depth);

static uint16_t cql__skip_type(cql_reader_t *r, int depth)
{
    cql_type_t t;
    return cql__parse_type(r, &t, depth);
}

/* An [option] type (spec 4.2.5.2), recursing into collections, UDTs and
 * tuples only as deep as CQL__MAX_TYPE_DEPTH so hostile input cannot blow
 * the stack. */
static uint16_t cql__parse_type(cql_reader_t *r, cql_type_t *t, int depth)
{
    const uint8_t *start = r->p;
    memset(t, 0, sizeof(*t));
    t->custom = cql__null_slice;
    if (depth > CQL__MAX_TYPE_DEPTH)
        r->err = NATTER_EINVAL;
    t->id = cql_read_short(r);
    switch (t->id) {
    case CQL_TYPE_CUSTOM:
        t->custom = cql_read_string(r);
        break;
    case CQL_TYPE_LIST:
    case CQL_TYPE_SET:
        t->elem[0] = cql__skip_type(r, depth + 1);
        break;
    case CQL_TYPE_MAP:
        t->elem[0] = cql__skip_type(r, depth + 1);
        t->elem[1] = cql__skip_type(r, depth + 1);
        break;
    case CQL_TYPE_UDT: {
        (void)cql_read_string(r); /* keyspace */
        (void)cql_read_string(r); /* type name */
        uint16_t n = cql_read_short(r);
        for (uint16_t i = 0; i < n && !r->err; i++) {
            (void)cql_read_string(r);
            (void)cql__skip_type(r, depth + 1);
        }
        break;
    }
    case CQL_TYPE_TUPLE: {
        uint16_t n = cql_read_short(r);
        for (uint16_t i = 0; i < n && !r->err; i++)
            (void)cql__skip_type(r, depth + 1);
        break;
    }
    default:
        /* native types carry no value: 0x0001-0x0015 (0x0015 is v5's
         * duration, which Scylla may send); anything else cannot be skipped */
        if (t->id > 0x0015)
            r->err = NATTER_EINVAL;
        break;
    }
    t->raw.p = start;
    t->raw.len = r->err ? 0 : (int32_t)(r->p - start);
    return t->id;
}

/* n column specs; each takes at least 4 bytes, which bounds the allocation
 * by the frame's size whatever count the frame claims. */
static cql_column_t *cql__parse_columns(cql_reader_t *r, int32_t n, int global,
                                        cql_slice_t gks, cql_slice_t gtable)
{
    if (n < 0 || (size_t)n > r->len / 4) {
        r->err = NATTER_EINVAL;
        return NULL;
    }
    if (n == 0 || r->err)
        return NULL;
    cql_column_t *cols = xcalloc((size_t)n, sizeof(*cols));
    for (int32_t i = 0; i < n && !r->err; i++) {
        cols[i].keyspace = global ? gks : cql_read_string(r);
        cols[i].table = global ? gtable : cql_read_string(r);
        cols[i].name = cql_read_string(r);
        cql__parse_type(r, &cols[i].type, 0);
    }
    return cols;
}

/* <metadata> of Rows, also a Prepared result's <result_metadata>. */
static void cql__parse_meta(cql_reader_t *r, cql_meta_t *m)
{
    m->flags = cql_read_int(r);
    m->columns_count = cql_read_int(r);
    m->paging_state = cql__null_slice;
    if (m->columns_count < 0)
        r->err = NATTER_EINVAL;
    if (m->flags & CQL_META_HAS_MORE_PAGES)
        m->paging_state = cql_read_bytes(r);
    if (m->flags & CQL_META_NO_METADATA || r->err)
        return;
    cql_slice_t gks = cql__null_slice, gtable = cql__null_slice;
    int global = m->flags & CQL_META_GLOBAL_TABLES_SPEC;
    if (global) {
        gks = cql_read_string(r);
        gtable = cql_read_string(r);
    }
    m->columns = cql__parse_columns(r, m->columns_count, global, gks, gtable);
}

static void cql__parse_rows(cql_reader_t *r, cql_rows_t *rows)
{
    cql__parse_meta(r, &rows->meta);
    rows->rows_count = cql_read_int(r);
    if (r->err || rows->rows_count < 0) {
        r->err = NATTER_EINVAL;
        return;
    }
    /* every cell is at least a 4-byte [int]: check before allocating. Rows
     * of no columns would bound nothing (no statement yields them), and a
     * caller looping over 2^31 empty rows would spin: refuse them. */
    uint64_t ncells = (uint64_t)rows->rows_count * (uint64_t)rows->meta.columns_count;
    if (ncells > r->len / 4 || (rows->rows_count > 0 && rows->meta.columns_count == 0)) {
        r->err = NATTER_EINVAL;
        return;
    }
    if (ncells == 0)
        return;
    rows->cells = xmalloc((size_t)ncells * sizeof(*rows->cells));
    for (uint64_t i = 0; i < ncells; i++)
        rows->cells[i] = cql_read_bytes(r);
}

static void cql__parse_prepared(cql_reader_t *r, cql_prepared_t *pr)
{
    pr->id = cql_read_short_bytes(r);
    pr->flags = cql_read_int(r);
    pr->bind_count = cql_read_int(r);
    pr->pk_count = cql_read_int(r);
    if (r->err || pr->bind_count < 0 || pr->pk_count < 0 || (size_t)pr->pk_count > r->len / 2) {
        r->err = NATTER_EINVAL;
        return;
    }
    if (pr->pk_count > 0)
        pr->pk_index = xmalloc((size_t)pr->pk_count * sizeof(*pr->pk_index));
    for (int32_t i = 0; i < pr->pk_count; i++) {
        pr->pk_index[i] = cql_read_short(r);
        if (pr->pk_index[i] >= pr->bind_count) /* would route by a marker that is not there */
            r->err = NATTER_EINVAL;
    }
    cql_slice_t gks = cql__null_slice, gtable = cql__null_slice;
    int global = pr->flags & CQL_META_GLOBAL_TABLES_SPEC;
    if (global) {
        gks = cql_read_string(r);
        gtable = cql_read_string(r);
    }
    pr->binds = cql__parse_columns(r, pr->bind_count, global, gks, gtable);
    cql__parse_meta(r, &pr->result);
}

/* <change_type><target><options> (spec 4.2.6). */
static void cql__parse_schema_change(cql_reader_t *r, cql_schema_change_t *s)
{
    s->change_type = cql_read_string(r);
    s->target = cql_read_string(r);
    s->keyspace = cql_read_string(r);
    s->name = cql__null_slice;
    cql_reader_init(&s->arg_types, NULL, 0);
    if (cql_slice_eq(s->target, "KEYSPACE"))
        return;
    s->name = cql_read_string(r);
    if (cql_slice_eq(s->target, "FUNCTION") || cql_slice_eq(s->target, "AGGREGATE")) {
        const uint8_t *start = r->p + (r->len >= 2 ? 2 : 0);
        s->nargs = (uint16_t)cql_read_string_list(r, NULL, 0);
        if (!r->err)
            cql_reader_init(&s->arg_types, start, (size_t)(r->p - start));
    }
}

static void cql__parse_error(cql_reader_t *r, cql_error_t *e)
{
    e->code = cql_read_int(r);
    e->message = cql_read_string(r);
    e->write_type = e->keyspace = e->table = e->unprepared_id = cql__null_slice;
    switch (e->code) {
    case CQL_ERR_UNAVAILABLE:
        e->consistency = cql_read_consistency(r);
        e->required = cql_read_int(r);
        e->alive = cql_read_int(r);
        break;
    case CQL_ERR_WRITE_TIMEOUT:
    case CQL_ERR_READ_TIMEOUT:
    case CQL_ERR_READ_FAILURE:
    case CQL_ERR_WRITE_FAILURE:
        e->consistency = cql_read_consistency(r);
        e->received = cql_read_int(r);
        e->blockfor = cql_read_int(r);
        if (e->code == CQL_ERR_READ_FAILURE || e->code == CQL_ERR_WRITE_FAILURE)
            e->numfailures = cql_read_int(r);
        if (e->code == CQL_ERR_WRITE_TIMEOUT || e->code == CQL_ERR_WRITE_FAILURE)
            e->write_type = cql_read_string(r);
        else
            e->data_present = cql_read_byte(r);
        break;
    case CQL_ERR_FUNCTION_FAILURE:
        e->keyspace = cql_read_string(r);
        e->table = cql_read_string(r);
        (void)cql_read_string_list(r, NULL, 0);
        break;
    case CQL_ERR_ALREADY_EXISTS:
        e->keyspace = cql_read_string(r);
        e->table = cql_read_string(r);
        break;
    case CQL_ERR_UNPREPARED:
        e->unprepared_id = cql_read_short_bytes(r);
        break;
    default:
        break;
    }
}

static void cql__parse_result(cql_reader_t *r, cql_response_t *resp)
{
    resp->kind = cql_read_int(r);
    switch (resp->kind) {
    case CQL_RESULT_VOID: break;
    case CQL_RESULT_ROWS: cql__parse_rows(r, &resp->rows); break;
    case CQL_RESULT_SET_KEYSPACE: resp->keyspace = cql_read_string(r); break;
    case CQL_RESULT_PREPARED: cql__parse_prepared(r, &resp->prepared); break;
    case CQL_RESULT_SCHEMA_CHANGE: cql__parse_schema_change(r, &resp->schema); break;
    default: r->err = NATTER_EINVAL; break;
    }
}

/* Tracing id, warnings and custom payload, in that order, before the body
 * proper (spec 2.2). */
static void cql__parse_prefix(cql_reader_t *r, cql_response_t *resp)
{
    uint8_t flags = resp->header.flags;
    if (flags & CQL_FLAG_TRACING) {
        cql_read_uuid(r, resp->tracing_id);
        resp->has_tracing_id = 1;
    }
    if (flags & CQL_FLAG_WARNING) {
        const uint8_t *start = r->p + (r->len >= 2 ? 2 : 0);
        resp->nwarnings = (uint16_t)cql_read_string_list(r, NULL, 0);
        if (!r->err)
            cql_reader_init(&resp->warnings, start, (size_t)(r->p - start));
    }
    if (flags & CQL_FLAG_CUSTOM_PAYLOAD) { /* [bytes map], ignored */
        uint16_t n = cql_read_short(r);
        for (uint16_t i = 0; i < n && !r->err; i++) {
            (void)cql_read_string(r);
            (void)cql_read_bytes(r);
        }
    }
}

static void cql__parse_supported(cql_reader_t *r, cql_response_t *resp)
{
    const uint8_t *start = r->p;
    size_t n = cql_read_string_multimap(r, NULL, 0);
    if (r->err)
        return;
    resp->nsupported = (uint16_t)n;
    cql_reader_init(&resp->supported, start, (size_t)(r->p - start));
}

int cql_response_parse_body(cql_response_t *resp, const cql_header_t *h,
                            const uint8_t *body, size_t len, char *err, size_t errlen)
{
    cql_reader_t r;
    memset(resp, 0, sizeof(*resp));
    resp->header = *h;
    resp->rows.meta.paging_state = resp->prepared.result.paging_state = cql__null_slice;
    cql_reader_init(&resp->warnings, NULL, 0);
    cql_reader_init(&resp->supported, NULL, 0);
    cql_reader_init(&resp->event, NULL, 0);
    if (h->flags & CQL_FLAG_COMPRESSION) {
        cql__fail(err, errlen, "compressed %s body: natter never asks for compression",
                  cql_opcode_name(h->opcode));
        return NATTER_EINVAL;
    }
    cql_reader_init(&r, body, len);
    cql__parse_prefix(&r, resp);
    switch (h->opcode) {
    case CQL_OP_ERROR: cql__parse_error(&r, &resp->error); break;
    case CQL_OP_READY: break;
    case CQL_OP_AUTHENTICATE: resp->authenticator = cql_read_string(&r); break;
    case CQL_OP_SUPPORTED: cql__parse_supported(&r, resp); break;
    case CQL_OP_RESULT: cql__parse_result(&r, resp); break;
    case CQL_OP_AUTH_CHALLENGE:
    case CQL_OP_AUTH_SUCCESS: resp->token = cql_read_bytes(&r); break;
    case CQL_OP_EVENT:
        resp->event_type = cql_read_string(&r);
        resp->event = r;
        if (!r.err && cql_slice_eq(resp->event_type, "SCHEMA_CHANGE"))
            cql__parse_schema_change(&r, &resp->schema);
        break;
    default:
        cql__fail(err, errlen, "opcode 0x%02x is not a response", h->opcode);
        return NATTER_EINVAL;
    }
    if (r.err) {
        cql__fail(err, errlen, "malformed or truncated %s body (%zu bytes)",
                  cql_opcode_name(h->opcode), len);
        cql_response_free(resp);
        return NATTER_EINVAL;
    }
    return NATTER_OK;
}

int cql_response_parse(cql_response_t *resp, const uint8_t *frame, size_t len,
                       char *err, size_t errlen)
{
    cql_header_t h;
    int n = cql_frame_peek(frame, len, &h, NULL, err, errlen);
    if (n == 0) {
        memset(resp, 0, sizeof(*resp));
        cql__fail(err, errlen, "incomplete frame (%zu bytes)", len);
        return NATTER_EINVAL;
    }
    if (n < 0) {
        memset(resp, 0, sizeof(*resp));
        return n;
    }
    return cql_response_parse_body(resp, &h, frame + CQL_HEADER_LEN, h.length, err, errlen);
}

void cql_response_free(cql_response_t *resp)
{
    free(resp->rows.cells);
    free(resp->rows.meta.columns);
    free(resp->prepared.pk_index);
    free(resp->prepared.binds);
    free(resp->prepared.result.columns);
    resp->rows.cells = NULL;
    resp->rows.meta.columns = resp->prepared.binds = resp->prepared.result.columns = NULL;
    resp->prepared.pk_index = NULL;
}

int cql_rows_cell(const cql_rows_t *rows, int32_t row, int32_t col, cql_slice_t *out)
{
    if (row < 0 || col < 0 || row >= rows->rows_count || col >= rows->meta.columns_count)
        return NATTER_EINVAL;
    *out = rows->cells[(size_t)row * (size_t)rows->meta.columns_count + (size_t)col];
    return NATTER_OK;
}

/* ---- 8. cell decoders --------------------------------------------------- */

/* NATTER_OK when c is exactly n bytes; null and empty are "no value". */
static int cql__fixed(cql_slice_t c, int32_t n)
{
    if (c.len <= 0)
        return NATTER_ENOTFOUND;
    return c.len == n ? NATTER_OK : NATTER_EINVAL;
}

int cql_decode_bigint(cql_slice_t c, int64_t *out)
{
    int rc = cql__fixed(c, 8);
    if (rc == NATTER_OK)
        *out = cql__s64(cql__be64(c.p));
    return rc;
}

int cql_decode_timestamp(cql_slice_t c, int64_t *ms) { return cql_decode_bigint(c, ms); }

int cql_decode_int(cql_slice_t c, int32_t *out)
{
    int rc = cql__fixed(c, 4);
    if (rc == NATTER_OK)
        *out = cql__s32(cql__be32(c.p));
    return rc;
}

int cql_decode_boolean(cql_slice_t c, int *out)
{
    int rc = cql__fixed(c, 1);
    if (rc == NATTER_OK)
        *out = c.p[0] != 0;
    return rc;
}

int cql_decode_uuid(cql_slice_t c, uint8_t out[16])
{
    int rc = cql__fixed(c, 16);
    if (rc == NATTER_OK)
        memcpy(out, c.p, 16);
    return rc;
}

int cql_decode_blob(cql_slice_t c, cql_slice_t *out)
{
    if (c.len < 0)
        return NATTER_ENOTFOUND;
    *out = c;
    return NATTER_OK;
}

int cql_decode_text(cql_slice_t c, cql_slice_t *out)
{
    if (c.len < 0)
        return NATTER_ENOTFOUND;
    if (!natter_utf8_valid((const char *)c.p, (size_t)c.len))
        return NATTER_EINVAL;
    *out = c;
    return NATTER_OK;
}

int cql_decode_collection(cql_slice_t c, cql_reader_t *r, int32_t *n)
{
    if (c.len <= 0)
        return NATTER_ENOTFOUND;
    cql_reader_init(r, c.p, (size_t)c.len);
    *n = cql_read_int(r);
    /* each element is at least a 4-byte length */
    if (r->err || *n < 0 || (size_t)*n > r->len / 4) {
        r->err = NATTER_EINVAL;
        return NATTER_EINVAL;
    }
    return NATTER_OK;
}

/* ---- 9. murmur3 --------------------------------------------------------- */
/*
 * Cassandra's Murmur3Partitioner hashes with MurmurHash3 x64 128 (seed 0) and
 * keeps h1. It reads the 16-byte blocks as little-endian unsigned longs like
 * the reference, but its tail switch widens each byte with Java's (long) cast
 * of a signed byte: 0x80..0xff are sign-extended before the shift. Keys whose
 * length is a multiple of 16, or whose tail bytes are all < 0x80, hash as the
 * reference does; the rest differ, and routing by the reference hash would
 * send them to the wrong replica.
 */

static uint64_t cql__rotl(uint64_t x, int r) { return x << r | x >> (64 - r); }

static uint64_t cql__fmix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static uint64_t cql__le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Java's (long) of a byte: sign-extended. */
static uint64_t cql__sx(uint8_t b) { return b & 0x80 ? 0xffffffffffffff00ULL | b : b; }

int64_t cql_murmur3_token(const void *key, size_t len)
{
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    const uint8_t *p = key;
    uint64_t h1 = 0, h2 = 0, k1 = 0, k2 = 0;
    size_t nblocks = len / 16, rem = len % 16;

    if (len == 0)
        return INT64_MIN;
    for (size_t i = 0; i < nblocks; i++) {
        k1 = cql__le64(p + 16 * i);
        k2 = cql__le64(p + 16 * i + 8);
        h1 ^= cql__rotl(k1 * c1, 31) * c2;
        h1 = (cql__rotl(h1, 27) + h2) * 5 + 0x52dce729;
        h2 ^= cql__rotl(k2 * c2, 33) * c1;
        h2 = (cql__rotl(h2, 31) + h1) * 5 + 0x38495ab5;
    }
    const uint8_t *t = p + 16 * nblocks;
    k1 = k2 = 0;
    for (size_t i = rem; i > 8; i--)
        k2 ^= cql__sx(t[i - 1]) << (8 * (i - 9));
    if (rem > 8)
        h2 ^= cql__rotl(k2 * c2, 33) * c1;
    for (size_t i = rem < 8 ? rem : 8; i > 0; i--)
        k1 ^= cql__sx(t[i - 1]) << (8 * (i - 1));
    if (rem > 0)
        h1 ^= cql__rotl(k1 * c1, 31) * c2;

    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = cql__fmix(h1);
    h2 = cql__fmix(h2);
    h1 += h2;
    int64_t token = cql__s64(h1);
    return token == INT64_MIN ? INT64_MAX : token; /* MIN is reserved for the empty key */
}
