/*
 * CQL native protocol v4, the bytes only: no sockets, no threads, no clock.
 * The store's CQL backend owns the connection; this module turns requests
 * into frames and frames into responses (spec: doc/native_protocol_v4.spec
 * in apache/cassandra; Cassandra and Scylla both speak v4).
 *
 * Conventions of this module:
 *
 *   - Writing: a cql_buf_t grows as needed (xrealloc: OOM aborts). Writers
 *     never fail loudly: a value that does not fit its notation (a [string]
 *     over 65535 bytes, a [bytes] over INT32_MAX) sets buf->err to
 *     NATTER_EINVAL and writes nothing; every later write is then a no-op.
 *     Request builders return buf->err, so one check at the end suffices.
 *     Builders append a whole frame to the buffer, so several requests can be
 *     queued in one buffer and written with one send().
 *
 *   - Reading: a cql_reader_t is a window (p, len) over borrowed bytes. Every
 *     read checks bounds; a read that would pass the end (or a malformed
 *     length) consumes nothing, returns 0 / an empty slice and sets r->err.
 *     Once set, err stays set and every later read is a no-op, so a caller
 *     may do a sequence of reads and check r->err once.
 *
 *   - Slices (cql_slice_t) point into the bytes they were read from: they are
 *     not NUL-terminated and live as long as those bytes. A [bytes] or
 *     [value] that is null has len CQL_NULL (-1); "not set" is CQL_UNSET (-2).
 *
 *   - Errors are negative NATTER_E* codes (core/error.h). Where a reason
 *     helps, functions take (char *err, size_t errlen) and fill it; err may
 *     be NULL.
 */
#ifndef NATTER_CQL_PROTO_H
#define NATTER_CQL_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- protocol constants ------------------------------------------------ */

#define CQL_VERSION_REQUEST 0x04
#define CQL_VERSION_RESPONSE 0x84
#define CQL_HEADER_LEN 9
#define CQL_MAX_BODY (256u * 1024u * 1024u) /* the spec's frame limit, 256 MiB */

enum { /* frame header flags */
    CQL_FLAG_COMPRESSION = 0x01,
    CQL_FLAG_TRACING = 0x02,
    CQL_FLAG_CUSTOM_PAYLOAD = 0x04,
    CQL_FLAG_WARNING = 0x08,
};

typedef enum cql_opcode {
    CQL_OP_ERROR = 0x00,
    CQL_OP_STARTUP = 0x01,
    CQL_OP_READY = 0x02,
    CQL_OP_AUTHENTICATE = 0x03,
    CQL_OP_OPTIONS = 0x05,
    CQL_OP_SUPPORTED = 0x06,
    CQL_OP_QUERY = 0x07,
    CQL_OP_RESULT = 0x08,
    CQL_OP_PREPARE = 0x09,
    CQL_OP_EXECUTE = 0x0A,
    CQL_OP_REGISTER = 0x0B,
    CQL_OP_EVENT = 0x0C,
    CQL_OP_BATCH = 0x0D,
    CQL_OP_AUTH_CHALLENGE = 0x0E,
    CQL_OP_AUTH_RESPONSE = 0x0F,
    CQL_OP_AUTH_SUCCESS = 0x10,
} cql_opcode_t;

typedef enum cql_consistency {
    CQL_ANY = 0x0000,
    CQL_ONE = 0x0001,
    CQL_TWO = 0x0002,
    CQL_THREE = 0x0003,
    CQL_QUORUM = 0x0004,
    CQL_ALL = 0x0005,
    CQL_LOCAL_QUORUM = 0x0006,
    CQL_EACH_QUORUM = 0x0007,
    CQL_SERIAL = 0x0008,
    CQL_LOCAL_SERIAL = 0x0009,
    CQL_LOCAL_ONE = 0x000A,
} cql_consistency_t;

typedef enum cql_result_kind {
    CQL_RESULT_VOID = 0x0001,
    CQL_RESULT_ROWS = 0x0002,
    CQL_RESULT_SET_KEYSPACE = 0x0003,
    CQL_RESULT_PREPARED = 0x0004,
    CQL_RESULT_SCHEMA_CHANGE = 0x0005,
} cql_result_kind_t;

enum { /* Rows / Prepared metadata flags */
    CQL_META_GLOBAL_TABLES_SPEC = 0x0001,
    CQL_META_HAS_MORE_PAGES = 0x0002,
    CQL_META_NO_METADATA = 0x0004,
};

typedef enum cql_error_code {
    CQL_ERR_SERVER = 0x0000,
    CQL_ERR_PROTOCOL = 0x000A,
    CQL_ERR_BAD_CREDENTIALS = 0x0100,
    CQL_ERR_UNAVAILABLE = 0x1000,
    CQL_ERR_OVERLOADED = 0x1001,
    CQL_ERR_IS_BOOTSTRAPPING = 0x1002,
    CQL_ERR_TRUNCATE = 0x1003,
    CQL_ERR_WRITE_TIMEOUT = 0x1100,
    CQL_ERR_READ_TIMEOUT = 0x1200,
    CQL_ERR_READ_FAILURE = 0x1300,
    CQL_ERR_FUNCTION_FAILURE = 0x1400,
    CQL_ERR_WRITE_FAILURE = 0x1500,
    CQL_ERR_SYNTAX = 0x2000,
    CQL_ERR_UNAUTHORIZED = 0x2100,
    CQL_ERR_INVALID = 0x2200,
    CQL_ERR_CONFIG = 0x2300,
    CQL_ERR_ALREADY_EXISTS = 0x2400,
    CQL_ERR_UNPREPARED = 0x2500,
} cql_error_code_t;

typedef enum cql_type_id { /* [option] ids of column types */
    CQL_TYPE_CUSTOM = 0x0000,
    CQL_TYPE_ASCII = 0x0001,
    CQL_TYPE_BIGINT = 0x0002,
    CQL_TYPE_BLOB = 0x0003,
    CQL_TYPE_BOOLEAN = 0x0004,
    CQL_TYPE_COUNTER = 0x0005,
    CQL_TYPE_DECIMAL = 0x0006,
    CQL_TYPE_DOUBLE = 0x0007,
    CQL_TYPE_FLOAT = 0x0008,
    CQL_TYPE_INT = 0x0009,
    CQL_TYPE_TIMESTAMP = 0x000B,
    CQL_TYPE_UUID = 0x000C,
    CQL_TYPE_VARCHAR = 0x000D,
    CQL_TYPE_VARINT = 0x000E,
    CQL_TYPE_TIMEUUID = 0x000F,
    CQL_TYPE_INET = 0x0010,
    CQL_TYPE_DATE = 0x0011,
    CQL_TYPE_TIME = 0x0012,
    CQL_TYPE_SMALLINT = 0x0013,
    CQL_TYPE_TINYINT = 0x0014,
    CQL_TYPE_LIST = 0x0020,
    CQL_TYPE_MAP = 0x0021,
    CQL_TYPE_SET = 0x0022,
    CQL_TYPE_UDT = 0x0030,
    CQL_TYPE_TUPLE = 0x0031,
} cql_type_id_t;

#define CQL_NULL (-1)  /* slice / value length of a null [bytes] or [value] */
#define CQL_UNSET (-2) /* [value] "not set": leaves the column unchanged */

/* Short constant names, for logs: "unavailable", "QUERY", "LOCAL_QUORUM".
 * Unknown codes give "unknown". */
const char *cql_error_name(int32_t code);
const char *cql_opcode_name(int opcode);
const char *cql_consistency_name(int consistency);

/* Maps a server error code to natter's convention: Unavailable, Overloaded and
 * Is_bootstrapping -> NATTER_EUNAVAIL; Read/Write_timeout -> NATTER_ETIMEDOUT;
 * Already_exists -> NATTER_ECONFLICT; Syntax, Invalid -> NATTER_EINVAL;
 * anything else -> NATTER_EIO. */
int cql_error_to_natter(int32_t code);

/* ---- slices and the bounded reader ------------------------------------- */

typedef struct cql_slice {
    const uint8_t *p; /* NULL when len < 0 */
    int32_t len;      /* >= 0, or CQL_NULL / CQL_UNSET */
} cql_slice_t;

/* 1 if the slice holds exactly the bytes of the C string s. */
int cql_slice_eq(cql_slice_t s, const char *cstr);

typedef struct cql_reader {
    const uint8_t *p; /* next unread byte */
    size_t len;       /* bytes left */
    int err;          /* 0, or NATTER_EINVAL once a read failed (sticky) */
} cql_reader_t;

void cql_reader_init(cql_reader_t *r, const void *p, size_t len);

uint8_t cql_read_byte(cql_reader_t *r);
uint16_t cql_read_short(cql_reader_t *r);
int32_t cql_read_int(cql_reader_t *r);
int64_t cql_read_long(cql_reader_t *r);
void cql_read_uuid(cql_reader_t *r, uint8_t out[16]); /* zeroes out on error */
cql_slice_t cql_read_string(cql_reader_t *r);      /* [string] */
cql_slice_t cql_read_long_string(cql_reader_t *r); /* [long string]: negative n is an error */
cql_slice_t cql_read_bytes(cql_reader_t *r);       /* [bytes]: any n < 0 is null */
cql_slice_t cql_read_short_bytes(cql_reader_t *r); /* [short bytes] */
cql_slice_t cql_read_value(cql_reader_t *r);       /* [value]: -1 null, -2 unset, < -2 error */
uint16_t cql_read_consistency(cql_reader_t *r);
/* [inet] (an event's node): the address written into out as text (IPv4
 * dotted, IPv6 as inet_ntop writes it) and its port; out is "" and the
 * reader in error when the length is neither 4 nor 16. */
void cql_read_inet(cql_reader_t *r, char *out, size_t outlen, int32_t *port);
/* Skips n bytes (an error if fewer are left). */
void cql_read_skip(cql_reader_t *r, size_t n);

/* [string list]: reads all n strings, stores the first min(n, max) in out and
 * returns n (0 on error). */
size_t cql_read_string_list(cql_reader_t *r, cql_slice_t *out, size_t max);
/* [string map]: out[2i] is the i-th key, out[2i+1] its value, for
 * i < min(n, max_pairs); returns n (0 on error). */
size_t cql_read_string_map(cql_reader_t *r, cql_slice_t *out, size_t max_pairs);

/* [string multimap]: each entry's values stay in the input; read them with
 * cql_read_string(&e.values) nvalues times. Stores the first min(n, max)
 * entries and returns n (0 on error). */
typedef struct cql_multimap_entry {
    cql_slice_t key;
    uint16_t nvalues;
    cql_reader_t values; /* exactly the nvalues [string]s */
} cql_multimap_entry_t;
size_t cql_read_string_multimap(cql_reader_t *r, cql_multimap_entry_t *out, size_t max);

/* ---- the growable output buffer ---------------------------------------- */

typedef struct cql_buf {
    uint8_t *data; /* NULL until the first write; owned, see cql_buf_free */
    size_t len, cap;
    int err; /* 0, or NATTER_EINVAL once a value did not fit (sticky) */
} cql_buf_t;

void cql_buf_init(cql_buf_t *b);
void cql_buf_reset(cql_buf_t *b); /* len = 0, err = 0, keeps the memory */
void cql_buf_free(cql_buf_t *b);  /* frees data; b can be reused after init */

void cql_buf_put_raw(cql_buf_t *b, const void *p, size_t n);
void cql_buf_put_byte(cql_buf_t *b, uint8_t v);
void cql_buf_put_short(cql_buf_t *b, uint16_t v);
void cql_buf_put_int(cql_buf_t *b, int32_t v);
void cql_buf_put_long(cql_buf_t *b, int64_t v);
void cql_buf_put_uuid(cql_buf_t *b, const uint8_t uuid[16]);
void cql_buf_put_string(cql_buf_t *b, const char *s, size_t n);      /* n <= 65535 */
void cql_buf_put_long_string(cql_buf_t *b, const char *s, size_t n); /* n <= INT32_MAX */
void cql_buf_put_bytes(cql_buf_t *b, const void *p, size_t n);       /* n <= INT32_MAX */
void cql_buf_put_null_bytes(cql_buf_t *b);                           /* [int] -1 */
void cql_buf_put_short_bytes(cql_buf_t *b, const void *p, size_t n); /* n <= 65535 */
void cql_buf_put_consistency(cql_buf_t *b, cql_consistency_t c);
/* NUL-terminated strings; n <= 65535 of them. */
void cql_buf_put_string_list(cql_buf_t *b, const char *const *list, size_t n);
/* kv[2i] is a key, kv[2i+1] its value. */
void cql_buf_put_string_map(cql_buf_t *b, const char *const *kv, size_t npairs);

typedef struct cql_multimap_in {
    const char *key;
    const char *const *values;
    size_t nvalues;
} cql_multimap_in_t;
void cql_buf_put_string_multimap(cql_buf_t *b, const cql_multimap_in_t *m, size_t n);

/* ---- bound values ------------------------------------------------------ */

/* A [value] to bind. Copyable: fixed-size values live inline (ptr NULL), while
 * text/blob borrow the caller's bytes (ptr set), which must outlive every
 * builder call that uses the value. */
typedef struct cql_value {
    int32_t len; /* >= 0, CQL_NULL or CQL_UNSET */
    const uint8_t *ptr;
    uint8_t inl[16];
} cql_value_t;

cql_value_t cql_value_null(void);
cql_value_t cql_value_unset(void);
cql_value_t cql_value_bigint(int64_t v);    /* also counter increments */
cql_value_t cql_value_int(int32_t v);
cql_value_t cql_value_boolean(int v);       /* 0 false, anything else true (1) */
cql_value_t cql_value_timestamp(int64_t ms); /* ms since the Unix epoch */
cql_value_t cql_value_uuid(const uint8_t uuid[16]); /* uuid and timeuuid */
cql_value_t cql_value_text(const char *s);  /* borrowed; text/varchar/ascii */
/* Borrowed. n > INT32_MAX gives an invalid value that builders reject. */
cql_value_t cql_value_blob(const void *p, size_t n);
/* The bytes of a value with len >= 0. */
const uint8_t *cql_value_data(const cql_value_t *v);

/* Collections are encoded into a caller-owned buffer (appended), then bound
 * with cql_value_blob(out->data, out->len). */
void cql_encode_list_text(cql_buf_t *out, const char *const *items, size_t n);
void cql_encode_set_bigint(cql_buf_t *out, const int64_t *items, size_t n);

/* ---- frame header ------------------------------------------------------ */

typedef struct cql_header {
    uint8_t version, flags;
    int16_t stream;
    uint8_t opcode;
    uint32_t length; /* of the body */
} cql_header_t;

void cql_header_encode(uint8_t out[CQL_HEADER_LEN], const cql_header_t *h);
/* Decodes 9 bytes as they are, without checks. */
void cql_header_decode(const uint8_t in[CQL_HEADER_LEN], cql_header_t *h);

/* Looks at the first avail bytes received of a response frame, for a caller
 * that feeds bytes as they arrive. Returns
 *   > 0  a whole frame is there: its size (header + body, <= 9 + 256 MiB);
 *        *h holds the header;
 *   0    more bytes are needed: *need (if not NULL) is the frame size known
 *        so far, CQL_HEADER_LEN until the header is complete, then the whole
 *        frame's size (grow the receive buffer to it);
 *   < 0  NATTER_EINVAL: not a v4 response (version byte other than 0x84, e.g.
 *        a server that only speaks v3/v5 answering with its own version), an
 *        opcode that is not a response, or a body over 256 MiB. err says which;
 *        the connection cannot be resynchronised. */
int cql_frame_peek(const uint8_t *p, size_t avail, cql_header_t *h, size_t *need,
                   char *err, size_t errlen);

/* ---- request builders: each appends one whole request frame to b -------- */

/* The optional parts of QUERY and EXECUTE (<query_parameters>); builders
 * need one (never NULL). Zero it, set consistency and what you need. */
typedef struct cql_query_params {
    cql_consistency_t consistency;
    const cql_value_t *values; /* flag Values when nvalues > 0 */
    size_t nvalues;            /* <= 65535 */
    int32_t page_size;         /* > 0: flag Page_size */
    const uint8_t *paging_state; /* non-NULL: flag With_paging_state */
    size_t paging_state_len;
    cql_consistency_t serial_consistency; /* SERIAL or LOCAL_SERIAL; 0 = absent */
    int has_timestamp;                    /* flag With default timestamp */
    int64_t timestamp;                    /* microseconds, >= 0 */
    int skip_metadata;                    /* flag Skip_metadata */
} cql_query_params_t;

typedef enum cql_batch_type {
    CQL_BATCH_LOGGED = 0,
    CQL_BATCH_UNLOGGED = 1,
    CQL_BATCH_COUNTER = 2,
} cql_batch_type_t;

/* One statement of a BATCH: a prepared id, or (id NULL) a query string. */
typedef struct cql_batch_entry {
    const uint8_t *id;
    size_t id_len;
    const char *query;
    const cql_value_t *values;
    size_t nvalues;
} cql_batch_entry_t;

typedef struct cql_batch_params {
    cql_batch_type_t type;
    cql_consistency_t consistency;
    cql_consistency_t serial_consistency; /* 0 = absent */
    int has_timestamp;
    int64_t timestamp;
} cql_batch_params_t;

/* All return NATTER_OK, or NATTER_EINVAL (b->err) when something did not fit
 * its notation or a count is out of range; then b's contents are unspecified:
 * reset it. stream must be >= 0 (negative ids belong to the server). */
int cql_build_startup(cql_buf_t *b, int16_t stream); /* {"CQL_VERSION": "3.0.0"} */
int cql_build_options(cql_buf_t *b, int16_t stream);
int cql_build_auth_response(cql_buf_t *b, int16_t stream, const void *token, size_t n);
/* PasswordAuthenticator's SASL PLAIN token: \0user\0password. */
int cql_build_auth_plain(cql_buf_t *b, int16_t stream, const char *user, const char *password);
int cql_build_query(cql_buf_t *b, int16_t stream, const char *query, const cql_query_params_t *qp);
int cql_build_prepare(cql_buf_t *b, int16_t stream, const char *query);
int cql_build_execute(cql_buf_t *b, int16_t stream, const uint8_t *id, size_t id_len,
                      const cql_query_params_t *qp);
int cql_build_batch(cql_buf_t *b, int16_t stream, const cql_batch_params_t *bp,
                    const cql_batch_entry_t *entries, size_t n);
/* events: "TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE". */
int cql_build_register(cql_buf_t *b, int16_t stream, const char *const *events, size_t n);

/* ---- responses ---------------------------------------------------------- */

/* A column type, parsed enough to know what it is and to skip it. For
 * list/set, elem[0] is the element type id; for map elem[0] / elem[1] are the
 * key / value type ids; UDT and tuple fields are validated and skipped
 * (nesting deeper than 16 levels is rejected). */
typedef struct cql_type {
    uint16_t id;
    uint16_t elem[2];
    cql_slice_t custom; /* class name of a Custom type */
    cql_slice_t raw;    /* the whole [option], for whoever needs more */
} cql_type_t;

typedef struct cql_column {
    cql_slice_t keyspace, table; /* the global ones when Global_tables_spec */
    cql_slice_t name;
    cql_type_t type;
} cql_column_t;

/* Rows metadata and a Prepared result's <result_metadata>. */
typedef struct cql_meta {
    int32_t flags;
    int32_t columns_count;
    cql_slice_t paging_state; /* len CQL_NULL unless Has_more_pages */
    cql_column_t *columns;    /* columns_count entries, NULL with No_metadata */
} cql_meta_t;

typedef struct cql_rows {
    cql_meta_t meta;
    int32_t rows_count; /* rows of 0 columns are refused as malformed */
    cql_slice_t *cells; /* rows_count * columns_count, row-major */
} cql_rows_t;

typedef struct cql_prepared {
    cql_slice_t id;
    int32_t flags;
    int32_t bind_count; /* columns_count of the bind metadata */
    int32_t pk_count;
    uint16_t *pk_index; /* pk_count entries: bind marker index of pk column i */
    cql_column_t *binds; /* bind_count entries */
    cql_meta_t result;   /* may have No_metadata and 0 columns */
} cql_prepared_t;

/* SCHEMA_CHANGE result / event. keyspace is set for every target; name for
 * TABLE/TYPE/FUNCTION/AGGREGATE; arg_types (count nargs) for FUNCTION/AGGREGATE. */
typedef struct cql_schema_change {
    cql_slice_t change_type, target, keyspace, name;
    uint16_t nargs;
    cql_reader_t arg_types;
} cql_schema_change_t;

typedef struct cql_error {
    int32_t code;
    cql_slice_t message;
    /* Unavailable: consistency, required, alive.
     * Read/Write timeout and failure: consistency, received, blockfor,
     * numfailures (failures), data_present (reads), write_type (writes). */
    uint16_t consistency;
    int32_t required, alive;
    int32_t received, blockfor, numfailures;
    uint8_t data_present;
    cql_slice_t write_type;
    cql_slice_t keyspace, table; /* Already_exists; Function_failure: keyspace, function */
    cql_slice_t unprepared_id;   /* Unprepared: re-PREPARE, then retry */
} cql_error_t;

/* A parsed response. Slices point into the frame passed to the parser, which
 * must outlive the response; arrays (rows cells, columns, pk indexes) are
 * allocated by the parser: release them with cql_response_free. */
typedef struct cql_response {
    cql_header_t header;
    int has_tracing_id;
    uint8_t tracing_id[16];
    uint16_t nwarnings;
    cql_reader_t warnings; /* nwarnings [string]s */

    /* by header.opcode: */
    cql_error_t error;              /* ERROR */
    cql_slice_t authenticator;      /* AUTHENTICATE: class name */
    cql_slice_t token;              /* AUTH_CHALLENGE, AUTH_SUCCESS (may be null) */
    uint16_t nsupported;            /* SUPPORTED: the multimap, for      */
    cql_reader_t supported;         /*  cql_read_string_multimap          */
    int32_t kind;                   /* RESULT: cql_result_kind_t, then    */
    cql_rows_t rows;                /*  Rows                              */
    cql_slice_t keyspace;           /*  Set_keyspace                      */
    cql_prepared_t prepared;        /*  Prepared                          */
    cql_schema_change_t schema;     /*  Schema_change, and EVENT SCHEMA_CHANGE */
    cql_slice_t event_type;         /* EVENT: type; the rest is in event  */
    cql_reader_t event;             /*  (schema is parsed for SCHEMA_CHANGE) */
} cql_response_t;

/* Parses one whole response frame (as delimited by cql_frame_peek). On
 * success returns NATTER_OK, even for an ERROR frame (look at header.opcode).
 * On NATTER_EINVAL the frame was malformed (err says where), and nothing
 * needs freeing; otherwise call cql_response_free. Compressed bodies are
 * rejected: natter never asks for compression. Bytes past what the spec
 * describes are ignored, as the spec asks. */
int cql_response_parse(cql_response_t *resp, const uint8_t *frame, size_t len,
                       char *err, size_t errlen);
/* The same on a body whose header was decoded separately. */
int cql_response_parse_body(cql_response_t *resp, const cql_header_t *h,
                            const uint8_t *body, size_t len, char *err, size_t errlen);
void cql_response_free(cql_response_t *resp);

/* The cell of a Rows result at (row, col), or NATTER_EINVAL when out of range. */
int cql_rows_cell(const cql_rows_t *rows, int32_t row, int32_t col, cql_slice_t *out);

/* ---- cell decoders ------------------------------------------------------ */
/* Each returns NATTER_OK, NATTER_ENOTFOUND when the cell is null (or, for a
 * non-text type, empty: CQL's legacy "empty value"), NATTER_EINVAL when the
 * length is wrong for the type (or text is not UTF-8). Text and blob point
 * into the cell. */
int cql_decode_bigint(cql_slice_t c, int64_t *out); /* also counter */
int cql_decode_int(cql_slice_t c, int32_t *out);
int cql_decode_boolean(cql_slice_t c, int *out);
int cql_decode_timestamp(cql_slice_t c, int64_t *ms);
int cql_decode_uuid(cql_slice_t c, uint8_t out[16]);
int cql_decode_text(cql_slice_t c, cql_slice_t *out); /* empty text is OK */
int cql_decode_blob(cql_slice_t c, cql_slice_t *out); /* empty blob is OK */
/* list<T> / set<T>: on NATTER_OK, *n is the element count and r a reader over
 * the elements; read each with cql_read_bytes(r). */
int cql_decode_collection(cql_slice_t c, cql_reader_t *r, int32_t *n);

/* ---- token-aware routing ------------------------------------------------ */

/* The Murmur3Partitioner token of a serialized partition key: the first half
 * of Cassandra's MurmurHash3 x64 128-bit (seed 0), with Cassandra's quirk of
 * sign-extending the tail bytes. An empty key is INT64_MIN (the partitioner's
 * minimum token); a hash equal to INT64_MIN becomes INT64_MAX, as in Cassandra. */
int64_t cql_murmur3_token(const void *key, size_t len);

#endif
