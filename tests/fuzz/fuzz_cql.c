/*
 * libFuzzer target for the CQL v4 protocol layer (src/store/cql/cql_proto.c):
 * everything natter parses off a Cassandra/Scylla socket.
 *
 * Input layout: one selector byte, then data.
 *   selector bit 7 set:   data is a byte stream of response frames; it is fed
 *                         to cql_frame_peek in two uneven pieces, as reads
 *                         deliver it, and each whole frame is parsed.
 *   selector bit 7 clear: data is one response body; bits 0-2 pick the opcode
 *                         among the 8 responses, bits 3-5 the frame flags
 *                         tracing / custom payload / warning, bit 6 the
 *                         compression flag (which must be refused).
 * Every parsed response is walked to the end: each row and column, every typed
 * decoder on every cell, collections element by element, the multimap,
 * warnings, bind markers and pk indexes. Each slice must lie inside the input.
 */
#include "core/error.h"
#include "store/cql/cql_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *lo, *hi; /* the input, for the bounds checks */

static void in_input(cql_slice_t s)
{
    if (s.len < 0) {
        if (s.p)
            abort();
        return;
    }
    if (s.len > 0 && (s.p < lo || s.p + s.len > hi))
        abort();
}

static void walk_reader_strings(cql_reader_t r, size_t n)
{
    for (size_t i = 0; i < n && !r.err; i++)
        in_input(cql_read_string(&r));
}

static void decode_all(cql_slice_t c)
{
    int64_t l;
    int32_t i, n;
    int b;
    uint8_t u[16];
    cql_slice_t s;
    cql_reader_t r;
    in_input(c);
    (void)cql_decode_bigint(c, &l);
    (void)cql_decode_int(c, &i);
    (void)cql_decode_boolean(c, &b);
    (void)cql_decode_timestamp(c, &l);
    (void)cql_decode_uuid(c, u);
    if (cql_decode_text(c, &s) == NATTER_OK)
        in_input(s);
    if (cql_decode_blob(c, &s) == NATTER_OK)
        in_input(s);
    if (cql_decode_collection(c, &r, &n) == NATTER_OK) {
        for (int32_t k = 0; k < n && !r.err; k++) {
            cql_slice_t e = cql_read_bytes(&r);
            in_input(e);
            (void)cql_decode_bigint(e, &l);
            (void)cql_decode_text(e, &s);
        }
    }
}

static void walk_columns(const cql_column_t *cols, int32_t n)
{
    for (int32_t i = 0; cols && i < n; i++) {
        in_input(cols[i].keyspace);
        in_input(cols[i].table);
        in_input(cols[i].name);
        in_input(cols[i].type.custom);
        in_input(cols[i].type.raw);
    }
}

static void walk(const cql_response_t *resp)
{
    cql_slice_t c;
    cql_multimap_entry_t e[8];
    walk_reader_strings(resp->warnings, resp->nwarnings);
    switch (resp->header.opcode) {
    case CQL_OP_ERROR:
        in_input(resp->error.message);
        in_input(resp->error.write_type);
        in_input(resp->error.keyspace);
        in_input(resp->error.table);
        in_input(resp->error.unprepared_id);
        (void)cql_error_name(resp->error.code);
        (void)cql_error_to_natter(resp->error.code);
        (void)cql_consistency_name(resp->error.consistency);
        break;
    case CQL_OP_SUPPORTED: {
        cql_reader_t r = resp->supported;
        size_t n = cql_read_string_multimap(&r, e, 8);
        if (r.err)
            abort(); /* it parsed once, it parses again */
        for (size_t i = 0; i < n && i < 8; i++) {
            in_input(e[i].key);
            walk_reader_strings(e[i].values, e[i].nvalues);
        }
        break;
    }
    case CQL_OP_RESULT:
        walk_columns(resp->rows.meta.columns, resp->rows.meta.columns_count);
        in_input(resp->rows.meta.paging_state);
        for (int32_t row = 0; row < resp->rows.rows_count; row++)
            for (int32_t col = 0; col < resp->rows.meta.columns_count; col++) {
                if (cql_rows_cell(&resp->rows, row, col, &c) != NATTER_OK)
                    abort();
                decode_all(c);
            }
        if (cql_rows_cell(&resp->rows, resp->rows.rows_count, 0, &c) == NATTER_OK)
            abort();
        in_input(resp->prepared.id);
        for (int32_t i = 0; i < resp->prepared.pk_count; i++)
            if (resp->prepared.pk_index[i] >= resp->prepared.bind_count)
                abort();
        walk_columns(resp->prepared.binds, resp->prepared.bind_count);
        walk_columns(resp->prepared.result.columns, resp->prepared.result.columns_count);
        in_input(resp->keyspace);
        /* fall through: Schema_change results share the event's fields */
    case CQL_OP_EVENT:
        in_input(resp->event_type);
        in_input(resp->schema.change_type);
        in_input(resp->schema.target);
        in_input(resp->schema.keyspace);
        in_input(resp->schema.name);
        walk_reader_strings(resp->schema.arg_types, resp->schema.nargs);
        if (resp->header.opcode == CQL_OP_EVENT) { /* as the CQL client reads a topology or status change */
            cql_reader_t r = resp->event;
            char addr[64];
            int32_t port;
            in_input(cql_read_string(&r));
            cql_read_inet(&r, addr, sizeof(addr), &port);
            if (strlen(addr) >= sizeof(addr) || (r.err && addr[0] != '\0'))
                abort();
        }
        break;
    default:
        in_input(resp->authenticator);
        in_input(resp->token);
        break;
    }
}

static void frames(const uint8_t *p, size_t len)
{
    size_t split = len ? p[0] % (len + 1) : 0, start = 0, need = 0;
    cql_header_t h;
    char err[160];
    /* first piece: what one read delivered; the answer must be stable */
    int n = cql_frame_peek(p, split, &h, &need, err, sizeof(err));
    if (n > 0 && (size_t)n > split)
        abort();
    while (start < len) {
        n = cql_frame_peek(p + start, len - start, &h, &need, err, sizeof(err));
        if (n <= 0)
            return;
        cql_response_t resp;
        if (cql_response_parse(&resp, p + start, (size_t)n, err, sizeof(err)) == NATTER_OK) {
            walk(&resp);
            cql_response_free(&resp);
        }
        start += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t ops[8] = { CQL_OP_ERROR, CQL_OP_READY, CQL_OP_AUTHENTICATE,
                                    CQL_OP_SUPPORTED, CQL_OP_RESULT, CQL_OP_EVENT,
                                    CQL_OP_AUTH_CHALLENGE, CQL_OP_AUTH_SUCCESS };
    if (size < 1)
        return 0;
    lo = data + 1;
    hi = data + size;
    if (data[0] & 0x80) {
        frames(data + 1, size - 1);
        return 0;
    }
    cql_header_t h = { CQL_VERSION_RESPONSE, 0, 0, ops[data[0] & 7], (uint32_t)(size - 1) };
    h.flags = (uint8_t)(((data[0] >> 3) & 7) << 1 | ((data[0] >> 6) & 1));
    cql_response_t resp;
    char err[160];
    int rc = cql_response_parse_body(&resp, &h, data + 1, size - 1, err, sizeof(err));
    if (rc == NATTER_OK) {
        if (h.flags & CQL_FLAG_COMPRESSION)
            abort();
        walk(&resp);
        cql_response_free(&resp);
    }
    return 0;
}
