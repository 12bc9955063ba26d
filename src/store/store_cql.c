/*
 * The distributed store: Apache Cassandra or ScyllaDB over natter's own CQL
 * v4 client (src/store/cql/: no C driver is reachable from the package
 * registries here, and both databases speak v4).
 *
 * Map of this file: the schema and its migrations; statements (prepared once,
 * routed by the token of their partition key); one function per store
 * method. Every table is read by its partition key: no ALLOW FILTERING, no
 * scan.
 *
 *   users           (id)                 the account
 *   users_by_name   (username)           uniqueness by LWT INSERT ... IF NOT EXISTS,
 *                                        written after the users row (see cq_user_create)
 *   sessions        (token_hash)         expiring with the session (USING TTL)
 *   chats           (id)
 *   chat_members    (chat_id) user_id    who is in a chat
 *   user_chats      (user_id) chat_id    a user's chats, without a scan
 *   messages        ((chat_id, bucket)) id   a chat's messages, one partition
 *                                        per --cql-bucket seconds: bounded
 *   chat_buckets    (chat_id) bucket     which buckets of a chat hold messages
 *   read_markers    (user_id, chat_id)   forward-only by LWT
 *   client_ids      ((sender_id, chat_id, client_id))  a post's claim, by LWT, for 24 h (TTL)
 *   ws_tickets      (ticket_hash)        single use: taken by LWT, gone after 30 s (TTL)
 *   events          ((chat_id, bucket)) id   a chat's edits, deletes, reactions
 *   chat_event_buckets (chat_id) bucket  which buckets of a chat hold events
 *   reactions       ((chat_id, bucket)) message_id, emoji, user_id
 *                                        in their message's partition layout
 *
 * A chat's unread count reads only the messages after the reader's marker
 * (their sender ids), never the whole chat, and stops at NATTER_UNREAD_MAX.
 *
 * Events are applied exactly once without a transaction: every write an
 * event makes carries the event's id as its write timestamp (USING
 * TIMESTAMP). Ids are milliseconds shifted left 22 bits, far above any
 * wall-clock microsecond timestamp, so a message insert replayed after an
 * edit or delete never brings the old words back, and of two events on one
 * cell the later id wins whatever order they are applied in: a redelivered
 * event changes nothing (see the section "the chat's events" at the end).
 * A delete wins over every other change (DELETE_TIMESTAMP_BIT).
 */
#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "store/cql/cql_client.h"
#include "store/store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE_ROWS 500
/* A delete is written at its id with this bit set: above every event id
 * (bit 62 is an id's only from 2058, NATTER_ID_EPOCH_MS + 2^40 ms). Nothing
 * may follow a delete (applies() refuses it), and an edit or reaction logged
 * before the delete with a larger id (two nodes' clocks) must not outlive it
 * as the later write; the embedded store applies in log order and erases
 * both. A redelivered delete writes the same cells at the same time. */
#define DELETE_TIMESTAMP_BIT ((uint64_t)1 << 62)
#define CLIENT_ID_TTL_S "86400"
_Static_assert(NATTER_CLIENT_ID_TTL_MS == 86400000, "CLIENT_ID_TTL_S is NATTER_CLIENT_ID_TTL_MS in seconds");

enum {
    S_USER_INSERT_NAME,
    S_USER_INSERT,
    S_USER_BY_NAME,
    S_USER_BY_ID,
    S_USER_DELETE,
    S_SESSION_INSERT,
    S_SESSION_GET,
    S_SESSION_DELETE,
    S_CHAT_INSERT,
    S_CHAT_GET,
    S_MEMBER_INSERT,
    S_USER_CHAT_INSERT,
    S_MEMBER_GET,
    S_USER_CHAT_GET,
    S_MEMBER_DELETE,
    S_USER_CHAT_DELETE,
    S_MEMBERS_OF,
    S_CHATS_OF,
    S_MESSAGE_INSERT,
    S_BUCKET_INSERT,
    S_BUCKETS_DESC,
    S_BUCKETS_ASC,
    S_PAGE_ASC,
    S_PAGE_DESC,
    S_MESSAGE_GET,
    S_SENDERS_AFTER,
    S_MARKER_GET,
    S_MARKER_INSERT,
    S_MARKER_ADVANCE,
    S_NAME_CLAIM_AGE,
    S_NAME_RELEASE,
    S_PING,
    S_LEASE_TAKE,
    S_LEASE_RENEW,
    S_LEASE_RELEASE,
    S_CLAIM,
    S_TICKET_INSERT,
    S_TICKET_GET,
    S_TICKET_DELETE,
    NSTMTS
};

#define MSG_COLS "id, chat_id, sender_id, content, created_at, client_id, edited_at, deleted"

static const char *const statements[NSTMTS] = {
    [S_USER_INSERT_NAME] = "INSERT INTO %s.users_by_name (username, id, pwhash) VALUES (?, ?, ?) IF NOT EXISTS",
    [S_USER_INSERT] = "INSERT INTO %s.users (id, username, created_at) VALUES (?, ?, ?)",
    [S_USER_BY_NAME] = "SELECT id, username, pwhash FROM %s.users_by_name WHERE username = ?",
    [S_USER_BY_ID] = "SELECT id, username FROM %s.users WHERE id = ?",
    [S_USER_DELETE] = "DELETE FROM %s.users WHERE id = ?",
    [S_SESSION_INSERT] = "INSERT INTO %s.sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?) USING TTL ?",
    [S_SESSION_GET] = "SELECT user_id, expires_at FROM %s.sessions WHERE token_hash = ?",
    [S_SESSION_DELETE] = "DELETE FROM %s.sessions WHERE token_hash = ?",
    [S_CHAT_INSERT] = "INSERT INTO %s.chats (id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
    [S_CHAT_GET] = "SELECT id, name, created_by, created_at FROM %s.chats WHERE id = ?",
    [S_MEMBER_INSERT] = "INSERT INTO %s.chat_members (chat_id, user_id) VALUES (?, ?)",
    [S_USER_CHAT_INSERT] = "INSERT INTO %s.user_chats (user_id, chat_id) VALUES (?, ?)",
    [S_MEMBER_GET] = "SELECT user_id FROM %s.chat_members WHERE chat_id = ? AND user_id = ?",
    [S_MEMBER_DELETE] = "DELETE FROM %s.chat_members WHERE chat_id = ? AND user_id = ?",
    [S_USER_CHAT_DELETE] = "DELETE FROM %s.user_chats WHERE user_id = ? AND chat_id = ?",
    [S_USER_CHAT_GET] = "SELECT chat_id FROM %s.user_chats WHERE user_id = ? AND chat_id = ?",
    [S_MEMBERS_OF] = "SELECT user_id FROM %s.chat_members WHERE chat_id = ?",
    [S_CHATS_OF] = "SELECT chat_id FROM %s.user_chats WHERE user_id = ?",
    [S_MESSAGE_INSERT] = "INSERT INTO %s.messages (chat_id, bucket, id, sender_id, content, created_at, client_id)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
    [S_BUCKET_INSERT] = "INSERT INTO %s.chat_buckets (chat_id, bucket) VALUES (?, ?)",
    [S_BUCKETS_DESC] = "SELECT bucket FROM %s.chat_buckets WHERE chat_id = ? AND bucket <= ? ORDER BY bucket DESC",
    [S_BUCKETS_ASC] = "SELECT bucket FROM %s.chat_buckets WHERE chat_id = ? AND bucket >= ? ORDER BY bucket ASC",
    [S_PAGE_ASC] = "SELECT " MSG_COLS " FROM %s.messages WHERE chat_id = ? AND bucket = ? AND id > ? AND id < ?"
                   " ORDER BY id ASC LIMIT ?",
    [S_PAGE_DESC] = "SELECT " MSG_COLS " FROM %s.messages WHERE chat_id = ? AND bucket = ? AND id < ?"
                    " ORDER BY id DESC LIMIT ?",
    [S_MESSAGE_GET] = "SELECT id FROM %s.messages WHERE chat_id = ? AND bucket = ? AND id = ?",
    [S_SENDERS_AFTER] = "SELECT sender_id FROM %s.messages WHERE chat_id = ? AND bucket = ? AND id > ?",
    [S_MARKER_GET] = "SELECT message_id FROM %s.read_markers WHERE user_id = ? AND chat_id = ?",
    [S_MARKER_INSERT] = "INSERT INTO %s.read_markers (user_id, chat_id, message_id) VALUES (?, ?, ?) IF NOT EXISTS",
    [S_MARKER_ADVANCE] = "UPDATE %s.read_markers SET message_id = ? WHERE user_id = ? AND chat_id = ?"
                         " IF message_id < ?",
    [S_NAME_CLAIM_AGE] = "SELECT id, WRITETIME(id) FROM %s.users_by_name WHERE username = ?",
    [S_NAME_RELEASE] = "DELETE FROM %s.users_by_name WHERE username = ? IF id = ?",
    [S_PING] = "SELECT value FROM %s.meta WHERE key = ?",
    [S_LEASE_TAKE] = "INSERT INTO %s.node_leases (node_id, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?",
    [S_LEASE_RENEW] = "UPDATE %s.node_leases USING TTL ? SET holder = ? WHERE node_id = ? IF holder = ?",
    [S_LEASE_RELEASE] = "DELETE FROM %s.node_leases WHERE node_id = ? IF holder = ?",
    [S_CLAIM] = "INSERT INTO %s.client_ids (sender_id, chat_id, client_id, message_id, created_at, content)"
                " VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL " CLIENT_ID_TTL_S,
    [S_TICKET_INSERT] = "INSERT INTO %s.ws_tickets (ticket_hash, user_id, expires_at, session_hash, session_expires)"
                        " VALUES (?, ?, ?, ?, ?) USING TTL ?",
    [S_TICKET_GET] = "SELECT user_id, expires_at, session_hash, session_expires FROM %s.ws_tickets WHERE ticket_hash = ?",
    [S_TICKET_DELETE] = "DELETE FROM %s.ws_tickets WHERE ticket_hash = ? IF user_id = ?",
};

/* The chat's events' statements (store version 2). */
enum {
    E_MESSAGE_GET,
    E_EDIT,
    E_DELETE,
    E_REACTIONS_DROP,
    E_REACTION_ADD,
    E_REACTION_REMOVE,
    E_EVENT_INSERT,
    E_EVENT_BUCKET_INSERT,
    E_EVENT_BUCKETS_DESC,
    E_EVENT_BUCKETS_ASC,
    E_EVENTS_ASC,
    E_EVENTS_DESC,
    E_REACTIONS_RANGE,
    NESTMTS
};

static const char *const event_statements[NESTMTS] = {
    [E_MESSAGE_GET] = "SELECT " MSG_COLS " FROM %s.messages WHERE chat_id = ? AND bucket = ? AND id = ?",
    [E_EDIT] = "UPDATE %s.messages USING TIMESTAMP ? SET content = ?, edited_at = ?"
               " WHERE chat_id = ? AND bucket = ? AND id = ?",
    [E_DELETE] = "UPDATE %s.messages USING TIMESTAMP ? SET content = '', client_id = null, edited_at = null,"
                 " deleted = true WHERE chat_id = ? AND bucket = ? AND id = ?",
    [E_REACTIONS_DROP] = "DELETE FROM %s.reactions USING TIMESTAMP ? WHERE chat_id = ? AND bucket = ? AND message_id = ?",
    [E_REACTION_ADD] = "INSERT INTO %s.reactions (chat_id, bucket, message_id, emoji, user_id) VALUES (?, ?, ?, ?, ?)"
                       " USING TIMESTAMP ?",
    [E_REACTION_REMOVE] = "DELETE FROM %s.reactions USING TIMESTAMP ? WHERE chat_id = ? AND bucket = ?"
                          " AND message_id = ? AND emoji = ? AND user_id = ?",
    [E_EVENT_INSERT] = "INSERT INTO %s.events (chat_id, bucket, id, kind, message_id, user_id, emoji, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    [E_EVENT_BUCKET_INSERT] = "INSERT INTO %s.chat_event_buckets (chat_id, bucket) VALUES (?, ?)",
    [E_EVENT_BUCKETS_DESC] = "SELECT bucket FROM %s.chat_event_buckets WHERE chat_id = ? AND bucket <= ?"
                             " ORDER BY bucket DESC",
    [E_EVENT_BUCKETS_ASC] = "SELECT bucket FROM %s.chat_event_buckets WHERE chat_id = ? AND bucket >= ?"
                            " ORDER BY bucket ASC",
    [E_EVENTS_ASC] = "SELECT id, kind, message_id, user_id, emoji, created_at FROM %s.events"
                     " WHERE chat_id = ? AND bucket = ? AND id > ? AND id < ? ORDER BY id ASC LIMIT ?",
    [E_EVENTS_DESC] = "SELECT id, kind, message_id, user_id, emoji, created_at FROM %s.events"
                      " WHERE chat_id = ? AND bucket = ? AND id < ? ORDER BY id DESC LIMIT ?",
    [E_REACTIONS_RANGE] = "SELECT message_id, emoji, user_id FROM %s.reactions"
                          " WHERE chat_id = ? AND bucket = ? AND message_id >= ? AND message_id <= ?",
};

/* Migrations: version i+1 is the statements of migrations[i]; each is
 * idempotent (IF NOT EXISTS), recorded in schema_migrations. Only append.
 * Every statement here names its table as %s.table: the keyspace goes there. */
static const char *const migration_1[] = {
    "CREATE TABLE IF NOT EXISTS %s.meta (key text PRIMARY KEY, value bigint)",
    "CREATE TABLE IF NOT EXISTS %s.users (id bigint PRIMARY KEY, username text, created_at timestamp)",
    "CREATE TABLE IF NOT EXISTS %s.users_by_name (username text PRIMARY KEY, id bigint, pwhash text)",
    "CREATE TABLE IF NOT EXISTS %s.sessions (token_hash blob PRIMARY KEY, user_id bigint, expires_at timestamp)",
    "CREATE TABLE IF NOT EXISTS %s.chats (id bigint PRIMARY KEY, name text, created_by bigint, created_at timestamp)",
    "CREATE TABLE IF NOT EXISTS %s.chat_members (chat_id bigint, user_id bigint, PRIMARY KEY (chat_id, user_id))",
    "CREATE TABLE IF NOT EXISTS %s.user_chats (user_id bigint, chat_id bigint, PRIMARY KEY (user_id, chat_id))",
    "CREATE TABLE IF NOT EXISTS %s.messages (chat_id bigint, bucket bigint, id bigint, sender_id bigint, content text,"
    " created_at timestamp, client_id text, PRIMARY KEY ((chat_id, bucket), id))"
    " WITH CLUSTERING ORDER BY (id ASC)",
    "CREATE TABLE IF NOT EXISTS %s.chat_buckets (chat_id bigint, bucket bigint, PRIMARY KEY (chat_id, bucket))",
    "CREATE TABLE IF NOT EXISTS %s.read_markers (user_id bigint, chat_id bigint, message_id bigint,"
    " PRIMARY KEY (user_id, chat_id))",
    NULL,
};
/* Node id leases (lease.h): a row per node id, kept alive by its holder's TTL. */
static const char *const migration_2[] = {
    "CREATE TABLE IF NOT EXISTS %s.node_leases (node_id int PRIMARY KEY, holder text)",
    NULL,
};
/* client_id claims (a day's TTL) and WebSocket tickets. */
static const char *const migration_3[] = {
    "CREATE TABLE IF NOT EXISTS %s.client_ids (sender_id bigint, chat_id bigint, client_id text, message_id bigint,"
    " created_at timestamp, content text, PRIMARY KEY ((sender_id, chat_id, client_id)))",
    "CREATE TABLE IF NOT EXISTS %s.ws_tickets (ticket_hash blob PRIMARY KEY, user_id bigint, expires_at timestamp)",
    NULL,
};
/* 4: the chat's events (see "the chat's events" below) */
static const char *const migration_4[] = {
    "ALTER TABLE %s.messages ADD (edited_at timestamp, deleted boolean)",
    "CREATE TABLE IF NOT EXISTS %s.events (chat_id bigint, bucket bigint, id bigint, kind int, message_id bigint,"
    " user_id bigint, emoji text, created_at timestamp, PRIMARY KEY ((chat_id, bucket), id))"
    " WITH CLUSTERING ORDER BY (id ASC)",
    "CREATE TABLE IF NOT EXISTS %s.chat_event_buckets (chat_id bigint, bucket bigint, PRIMARY KEY (chat_id, bucket))",
    "CREATE TABLE IF NOT EXISTS %s.reactions (chat_id bigint, bucket bigint, message_id bigint, emoji text,"
    " user_id bigint, PRIMARY KEY ((chat_id, bucket), message_id, emoji, user_id))",
    NULL,
};
/* 5: a ticket's session, which the WebSocket it opens ends with */
static const char *const migration_5[] = {
    "ALTER TABLE %s.ws_tickets ADD (session_hash blob, session_expires timestamp)",
    NULL,
};
static const char *const *const migrations[] = {migration_1, migration_2, migration_3, migration_4, migration_5};
#define NMIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

typedef struct {
    natter_store_t base;
    cql_client_t *client;
    cql_stmt_t *stmt[NSTMTS];
    cql_consistency_t consistency;
    uint32_t concurrency;
    int64_t bucket_ms;
    cql_stmt_t *estmt[NESTMTS]; /* the chat's events' statements */
} store_cql_t;

/* ---- small helpers ------------------------------------------------------- */

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* The token of a bigint partition key. */
static int64_t token_id(uint64_t id)
{
    uint8_t b[8];
    be64(b, id);
    return cql_murmur3_token(b, 8);
}

/* The token of a (bigint, bigint) composite partition key: each component
 * as [short length][bytes][0]. */
static int64_t token_pair(uint64_t a, uint64_t b)
{
    uint8_t k[22] = {0, 8};
    be64(k + 2, a);
    k[10] = 0;
    k[11] = 0, k[12] = 8;
    be64(k + 13, b);
    k[21] = 0;
    return cql_murmur3_token(k, sizeof(k));
}

static int64_t bucket_of(store_cql_t *s, uint64_t id)
{
    return natter_id_time_ms(id) / s->bucket_ms;
}

static cql_value_t vid(uint64_t v)
{
    return cql_value_bigint((int64_t)v);
}

/* Runs a prepared statement and waits: 0 with *res (when res) or an error. */
static int run_st(store_cql_t *s, cql_stmt_t *st, const cql_value_t *v, size_t n, int64_t token, int idempotent,
                  cql_result_t *res)
{
    char err[256];
    cql_query_params_t qp = {.consistency = s->consistency, .values = v, .nvalues = n,
                             .serial_consistency = CQL_LOCAL_SERIAL};
    int rc = cql_call_wait(cql_client_execute(s->client, st, &qp, token, idempotent), res, err, sizeof(err));
    if (rc != NATTER_OK)
        fprintf(stderr, "natter: cql: %s\n", err);
    return rc == NATTER_EINVAL || rc == NATTER_ENOTFOUND ? NATTER_EIO : rc;
}

static int run(store_cql_t *s, int q, const cql_value_t *v, size_t n, int64_t token, int idempotent,
               cql_result_t *res)
{
    return run_st(s, s->stmt[q], v, n, token, idempotent, res);
}

static int cell_u64(const cql_result_t *r, int32_t row, int32_t col, uint64_t *out)
{
    cql_slice_t c;
    int64_t v = 0;
    if (cql_rows_cell(&r->resp.rows, row, col, &c) != NATTER_OK || cql_decode_bigint(c, &v) != NATTER_OK)
        return NATTER_EIO;
    *out = (uint64_t)v;
    return NATTER_OK;
}

static void cell_text(const cql_result_t *r, int32_t row, int32_t col, char *dst, size_t len)
{
    cql_slice_t c, t;
    dst[0] = '\0';
    if (cql_rows_cell(&r->resp.rows, row, col, &c) == NATTER_OK && cql_decode_text(c, &t) == NATTER_OK)
        snprintf(dst, len, "%.*s", (int)t.len, (const char *)t.p);
}

static int64_t cell_time(const cql_result_t *r, int32_t row, int32_t col)
{
    cql_slice_t c;
    int64_t ms = 0;
    if (cql_rows_cell(&r->resp.rows, row, col, &c) == NATTER_OK)
        cql_decode_timestamp(c, &ms);
    return ms;
}

/* [applied] of an LWT answer: its first column. */
static int applied(const cql_result_t *r)
{
    cql_slice_t c;
    int yes = 0;
    return r->resp.rows.rows_count > 0 && cql_rows_cell(&r->resp.rows, 0, 0, &c) == NATTER_OK &&
           cql_decode_boolean(c, &yes) == NATTER_OK && yes;
}

/* Runs a single-partition SELECT and hands every row to row(), following
 * the paging state; a row that answers non-zero ends the read after its
 * page. */
static int select_rows(store_cql_t *s, cql_stmt_t *st, const cql_value_t *v, size_t n, int64_t token,
                       int (*row)(const cql_result_t *res, int32_t i, void *arg), void *arg)
{
    int enough = 0;
    char err[256];
    uint8_t state[512];
    size_t state_len = 0;
    do {
        cql_query_params_t qp = {.consistency = s->consistency, .values = v, .nvalues = n, .page_size = PAGE_ROWS,
                                 .paging_state = state_len ? state : NULL, .paging_state_len = state_len};
        cql_result_t res;
        int rc = cql_call_wait(cql_client_execute(s->client, st, &qp, token, 1), &res, err, sizeof(err));
        if (rc != NATTER_OK) {
            fprintf(stderr, "natter: cql: %s\n", err);
            return rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT ? rc : NATTER_EIO;
        }
        for (int32_t i = 0; i < res.resp.rows.rows_count; i++)
            enough |= row(&res, i, arg);
        cql_slice_t ps = res.resp.rows.meta.paging_state;
        if (!enough && ps.len > 0 && (size_t)ps.len > sizeof(state)) { /* not a truncated answer read as whole */
            fprintf(stderr, "natter: cql: a paging state of %d bytes (at most %zu)\n", (int)ps.len, sizeof(state));
            cql_result_free(&res);
            return NATTER_EIO;
        }
        state_len = !enough && ps.len > 0 ? (size_t)ps.len : 0;
        if (state_len)
            memcpy(state, ps.p, state_len);
        cql_result_free(&res);
    } while (state_len > 0);
    return NATTER_OK;
}

static int id_row(const cql_result_t *res, int32_t i, void *arg)
{
    natter_vec_t *out = arg;
    if (cell_u64(res, i, 0, natter_vec_push(out)) != NATTER_OK)
        out->len--;
    return 0;
}

/* Column 0 of every row (bigint). */
static int select_ids_st(store_cql_t *s, cql_stmt_t *st, const cql_value_t *v, size_t n, int64_t token,
                         natter_vec_t *out)
{
    return select_rows(s, st, v, n, token, id_row, out);
}

static int select_ids(store_cql_t *s, int q, const cql_value_t *v, size_t n, int64_t token, natter_vec_t *out)
{
    return select_ids_st(s, s->stmt[q], v, n, token, out);
}

/* ---- schema ---------------------------------------------------------------- */

static int valid_keyspace(const char *ks)
{
    size_t n = strlen(ks);
    if (n == 0 || n > 48 || !isalpha((unsigned char)ks[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)ks[i]) && ks[i] != '_')
            return 0;
    return 1;
}

static int query(store_cql_t *s, const char *q, cql_result_t *res, char *err, size_t errlen)
{
    cql_query_params_t qp = {.consistency = s->consistency};
    cql_result_t tmp;
    int rc = cql_client_query(s->client, q, &qp, res ? res : &tmp, err, errlen);
    if (rc == NATTER_OK && res == NULL)
        cql_result_free(&tmp);
    return rc;
}

/* Creates the keyspace and brings its tables to the newest version. */
static int migrate(store_cql_t *s, const natter_config_t *cfg, char *err, size_t errlen)
{
    char q[512];
    cql_result_t res;
    snprintf(q, sizeof(q), "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", cfg->cql_keyspace,
             cfg->cql_replication);
    int rc = query(s, q, NULL, err, errlen);
    snprintf(q, sizeof(q), "CREATE TABLE IF NOT EXISTS %s.schema_migrations (version int PRIMARY KEY,"
             " applied_at timestamp)", cfg->cql_keyspace);
    if (rc == NATTER_OK)
        rc = query(s, q, NULL, err, errlen);
    snprintf(q, sizeof(q), "SELECT version FROM %s.schema_migrations", cfg->cql_keyspace);
    if (rc == NATTER_OK)
        rc = query(s, q, &res, err, errlen);
    if (rc != NATTER_OK)
        return rc;
    int have = 0;
    for (int32_t row = 0; row < res.resp.rows.rows_count; row++) {
        cql_slice_t c;
        int32_t v;
        if (cql_rows_cell(&res.resp.rows, row, 0, &c) == NATTER_OK && cql_decode_int(c, &v) == NATTER_OK && v > have)
            have = v;
    }
    cql_result_free(&res);
    for (int m = have; m < NMIGRATIONS && rc == NATTER_OK; m++) {
        for (const char *const *stmt = migrations[m]; *stmt != NULL && rc == NATTER_OK; stmt++) {
            char full[1024];
            snprintf(full, sizeof(full), *stmt, cfg->cql_keyspace);
            rc = query(s, full, NULL, err, errlen);
            /* ALTER ... ADD has no IF NOT EXISTS on every server: columns a
             * migration stopped half-way added before are there already */
            if (rc != NATTER_OK && strncmp(full, "ALTER TABLE", 11) == 0 && strstr(err, "exist") != NULL)
                rc = NATTER_OK;
        }
        snprintf(q, sizeof(q), "INSERT INTO %s.schema_migrations (version, applied_at) VALUES (%d, toTimestamp(now()))",
                 cfg->cql_keyspace, m + 1);
        if (rc == NATTER_OK)
            rc = query(s, q, NULL, err, errlen);
    }
    if (rc != NATTER_OK)
        return rc;
    /* the bucket size is fixed by whoever created the keyspace */
    snprintf(q, sizeof(q), "INSERT INTO %s.meta (key, value) VALUES ('bucket_ms', %lld) IF NOT EXISTS",
             cfg->cql_keyspace, (long long)cfg->cql_bucket_s * 1000);
    if ((rc = query(s, q, NULL, err, errlen)) != NATTER_OK)
        return rc;
    snprintf(q, sizeof(q), "SELECT value FROM %s.meta WHERE key = 'bucket_ms'", cfg->cql_keyspace);
    if ((rc = query(s, q, &res, err, errlen)) != NATTER_OK)
        return rc;
    uint64_t bucket_ms = 0;
    if (res.resp.rows.rows_count != 1 || cell_u64(&res, 0, 0, &bucket_ms) != NATTER_OK || bucket_ms == 0) {
        snprintf(err, errlen, "cql: %s.meta has no bucket size", cfg->cql_keyspace);
        rc = NATTER_EIO;
    }
    s->bucket_ms = (int64_t)bucket_ms;
    cql_result_free(&res);
    return rc;
}

static cql_consistency_t consistency_of(const char *name)
{
    if (strcmp(name, "one") == 0)
        return CQL_ONE;
    if (strcmp(name, "quorum") == 0)
        return CQL_QUORUM;
    if (strcmp(name, "all") == 0)
        return CQL_ALL;
    if (strcmp(name, "local_one") == 0)
        return CQL_LOCAL_ONE;
    return CQL_LOCAL_QUORUM;
}

static void cq_close(natter_store_t *base)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_client_close(s->client);
}

static int cq_open(natter_store_t *base, const natter_config_t *cfg, char *err, size_t errlen)
{
    store_cql_t *s = (store_cql_t *)base;
    if (!valid_keyspace(cfg->cql_keyspace)) {
        snprintf(err, errlen, "--cql-keyspace '%s' is not a CQL identifier", cfg->cql_keyspace);
        return NATTER_EINVAL;
    }
    s->consistency = consistency_of(cfg->cql_consistency);
    s->concurrency = cfg->cql_concurrency;
    int auth = strcmp(cfg->cql_user, "-") != 0;
    cql_client_config_t cc = {.hosts = cfg->cql_hosts, .user = auth ? cfg->cql_user : NULL,
                              .password = auth ? cfg->cql_password : NULL, .conns_per_host = 2,
                              .timeout_ms = cfg->cql_timeout_ms};
    char why[256];
    if (cql_client_open(&s->client, &cc, why, sizeof(why)) != NATTER_OK) {
        snprintf(err, errlen, "cql %s: %s", cfg->cql_hosts, why);
        return NATTER_EUNAVAIL;
    }
    int rc = migrate(s, cfg, why, sizeof(why));
    for (int i = 0; i < NSTMTS && rc == NATTER_OK; i++) {
        char q[600];
        snprintf(q, sizeof(q), statements[i], cfg->cql_keyspace);
        rc = cql_client_prepare(s->client, q, &s->stmt[i], why, sizeof(why));
    }
    for (int i = 0; i < NESTMTS && rc == NATTER_OK; i++) {
        char q[600];
        snprintf(q, sizeof(q), event_statements[i], cfg->cql_keyspace);
        rc = cql_client_prepare(s->client, q, &s->estmt[i], why, sizeof(why));
    }
    if (rc != NATTER_OK) {
        snprintf(err, errlen, "cql schema: %s", why);
        cq_close(base);
        return rc;
    }
    return NATTER_OK;
}

/* ---- the store methods --------------------------------------------------- */

/* Ready when natter's own rows can be read at its consistency: with a
 * replicated keyspace a quorum of the meta row's replicas must answer (one
 * node of three down is ready, two are not). Not retried: /readyz answers
 * what is true now. */
static int cq_ping(natter_store_t *base)
{
    store_cql_t *s = (store_cql_t *)base;
    char err[256];
    static const char key[] = "bucket_ms";
    cql_value_t v = cql_value_text(key);
    cql_query_params_t qp = {.consistency = s->consistency, .values = &v, .nvalues = 1};
    cql_result_t res;
    int rc = cql_call_wait(cql_client_execute(s->client, s->stmt[S_PING], &qp, cql_murmur3_token(key, strlen(key)), 0),
                           &res, err, sizeof(err));
    if (rc == NATTER_OK)
        cql_result_free(&res);
    return rc;
}

/* The CQL client's counters per host, as natter_cql_host_* families. */
static void cq_metrics_render(natter_store_t *base, natter_store_append_fn append, void *arg)
{
    enum { MAX = 64 };
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"natter_cql_host_up", "gauge",
         "1 while the CQL client sends requests to the host; 0 from a failed connection until it reconnects."},
        {"natter_cql_host_requests_total", "counter", "CQL requests sent to the host."},
        {"natter_cql_host_errors_total", "counter",
         "CQL requests to the host not answered in time, lost with their connection, or answered with an error."},
        {"natter_cql_host_reprepares_total", "counter",
         "Statements prepared again on the host because it answered UNPREPARED."},
    };
    cql_host_stats_t hosts[MAX];
    cql_client_stats_t cs;
    size_t n = cql_client_hosts(((store_cql_t *)base)->client, hosts, MAX);
    cql_client_stats(((store_cql_t *)base)->client, &cs);
    char line[512];
    int len = snprintf(line, sizeof(line),
                       "# HELP natter_cql_events_total Cluster events (topology and status changes) the CQL client "
                       "received.\n# TYPE natter_cql_events_total counter\nnatter_cql_events_total %llu\n"
                       "# HELP natter_cql_ring_changes_total Times the CQL client read the ring again and found it "
                       "changed.\n# TYPE natter_cql_ring_changes_total counter\nnatter_cql_ring_changes_total %llu\n",
                       (unsigned long long)cs.events, (unsigned long long)cs.ring_changes);
    append(arg, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        len = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                       families[f].name, families[f].type);
        append(arg, line, (size_t)len);
        for (size_t i = 0; i < n && i < MAX; i++) {
            if (!hosts[i].in_ring) /* a node that left the cluster */
                continue;
            uint64_t v = f == 0 ? (uint64_t)hosts[i].up : f == 1 ? hosts[i].requests
                         : f == 2                      ? hosts[i].errors
                                                       : hosts[i].reprepares;
            len = snprintf(line, sizeof(line), "%s{host=\"%s\"} %llu\n", families[f].name, hosts[i].address,
                           (unsigned long long)v);
            append(arg, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
        }
    }
}

/* Claims the username for u by LWT: NATTER_OK when the claim is u's (now,
 * or from an earlier try whose answer was lost), NATTER_ECONFLICT with the
 * holder's id in *holder, or the transport's error (then the outcome is
 * unknown: trying again tells). */
static int claim_name(store_cql_t *s, const natter_user_t *u, uint64_t *holder)
{
    cql_result_t res;
    cql_value_t v[3] = {cql_value_text(u->username), vid(u->id), cql_value_text(u->pwhash)};
    int rc = run(s, S_USER_INSERT_NAME, v, 3, cql_murmur3_token(u->username, strlen(u->username)), 0, &res);
    if (rc != NATTER_OK)
        return rc;
    *holder = u->id;
    if (!applied(&res)) { /* the answer carries the row that won: [applied] first, then the table's columns */
        rc = NATTER_EIO;
        for (int32_t col = 1; col < res.resp.rows.meta.columns_count && res.resp.rows.meta.columns; col++)
            if (cql_slice_eq(res.resp.rows.meta.columns[col].name, "id"))
                rc = cell_u64(&res, 0, col, holder);
        if (rc == NATTER_OK && *holder != u->id)
            rc = NATTER_ECONFLICT;
    }
    cql_result_free(&res);
    return rc;
}

static int cq_user_by_id(natter_store_t *base, uint64_t id, natter_user_t *out);

/* A claim older than this whose user row is missing was left by a creation
 * that failed half-way under the old order (claim first): it is released.
 * A younger one may be an old node's creation still under way. */
#define STALE_CLAIM_US (60ll * 1000 * 1000)

/* NATTER_OK when holder's claim on the name was stale and is released,
 * NATTER_ECONFLICT when it stands. */
static int release_if_stale(store_cql_t *s, const char *username, uint64_t holder)
{
    natter_user_t owner;
    int rc = cq_user_by_id(&s->base, holder, &owner);
    if (rc != NATTER_ENOTFOUND)
        return rc == NATTER_OK ? NATTER_ECONFLICT : rc;
    cql_result_t res;
    cql_value_t name = cql_value_text(username);
    int64_t token = cql_murmur3_token(username, strlen(username)), written = 0;
    if ((rc = run(s, S_NAME_CLAIM_AGE, &name, 1, token, 1, &res)) != NATTER_OK)
        return rc;
    cql_slice_t c;
    if (res.resp.rows.rows_count == 0 || cql_rows_cell(&res.resp.rows, 0, 1, &c) != NATTER_OK ||
        cql_decode_bigint(c, &written) != NATTER_OK)
        written = INT64_MAX;
    cql_result_free(&res);
    if (written == INT64_MAX || natter_now_ns() / 1000 - written < STALE_CLAIM_US)
        return NATTER_ECONFLICT;
    cql_value_t v[2] = {name, vid(holder)};
    if ((rc = run(s, S_NAME_RELEASE, v, 2, token, 0, &res)) == NATTER_OK)
        cql_result_free(&res); /* not applied: someone else released it first */
    return rc;
}

/* The user row first, then the name claimed by an LWT carrying its id: a
 * claim always points at a user row, so a crash or failure between the two
 * leaves at most a user row no name reaches, never a name taken without a
 * user; a name found taken deletes the row again (GET /users/{id} would
 * show it). A claim whose answer was lost is claimed again: finding our own
 * id there means it was applied. */
static int cq_user_create(natter_store_t *base, const natter_user_t *u, int64_t now_ms)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_value_t row[3] = {vid(u->id), cql_value_text(u->username), cql_value_timestamp(now_ms)};
    int rc = run(s, S_USER_INSERT, row, 3, token_id(u->id), 1, NULL);
    if (rc != NATTER_OK)
        return rc;
    int tries;
    for (tries = 0; tries < 3; tries++) {
        uint64_t holder = 0;
        rc = claim_name(s, u, &holder);
        if (rc == NATTER_ECONFLICT && (rc = release_if_stale(s, u->username, holder)) == NATTER_OK)
            continue; /* a stale claim was released: claim again */
        if (rc != NATTER_EUNAVAIL && rc != NATTER_ETIMEDOUT)
            break;
        usleep(100000); /* the outcome is unknown: ask again */
    }
    if (rc == NATTER_OK && tries == 3)
        rc = NATTER_ECONFLICT; /* released each time and taken again by others */
    if (rc == NATTER_ECONFLICT) {
        cql_value_t id = vid(u->id);
        run(s, S_USER_DELETE, &id, 1, token_id(u->id), 1, NULL); /* best effort: a row left is reached by id only */
    }
    return rc;
}

static int read_user(store_cql_t *s, int q, cql_value_t key, int64_t token, natter_user_t *out)
{
    cql_result_t res;
    int rc = run(s, q, &key, 1, token, 1, &res);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.rows.rows_count == 0) {
        rc = NATTER_ENOTFOUND;
    } else {
        rc = cell_u64(&res, 0, 0, &out->id);
        cell_text(&res, 0, 1, out->username, sizeof(out->username));
        out->pwhash[0] = '\0';
        if (q == S_USER_BY_NAME)
            cell_text(&res, 0, 2, out->pwhash, sizeof(out->pwhash));
    }
    cql_result_free(&res);
    return rc;
}

/* A name whose claim points at no user row (left by a creation that
 * failed half-way) is no user's: not found, and cq_user_create may take it. */
static int cq_user_by_name(natter_store_t *base, const char *username, natter_user_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    natter_user_t row;
    int rc = read_user(s, S_USER_BY_NAME, cql_value_text(username), cql_murmur3_token(username, strlen(username)),
                       out);
    if (rc == NATTER_OK && (rc = cq_user_by_id(base, out->id, &row)) == NATTER_OK &&
        strcmp(row.username, out->username) != 0)
        rc = NATTER_ENOTFOUND;
    return rc;
}

static int cq_user_by_id(natter_store_t *base, uint64_t id, natter_user_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    return read_user(s, S_USER_BY_ID, vid(id), token_id(id), out);
}

/* A token's row (a session, or a WebSocket ticket and its session), with a
 * TTL that outlives its expiry by a second. */
static int token_row_insert(store_cql_t *s, int st, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                            int64_t expires_at_ms, const natter_ticket_t *ticket)
{
    int64_t ttl = (expires_at_ms - natter_now_ms()) / 1000 + 1;
    cql_value_t v[6] = {cql_value_blob(hash, NATTER_TOKEN_HASH_LEN), vid(user_id), cql_value_timestamp(expires_at_ms)};
    size_t n = 3;
    if (ticket != NULL) {
        v[n++] = cql_value_blob(ticket->session_hash, NATTER_TOKEN_HASH_LEN);
        v[n++] = cql_value_timestamp(ticket->session_expires_at_ms);
    }
    v[n++] = cql_value_int((int32_t)(ttl > 0 ? ttl : 1));
    return run(s, st, v, n, cql_murmur3_token(hash, NATTER_TOKEN_HASH_LEN), 1, NULL);
}

static int cq_session_create(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                             int64_t expires_at_ms)
{
    return token_row_insert((store_cql_t *)base, S_SESSION_INSERT, hash, user_id, expires_at_ms, NULL);
}

static int cq_session_user_id(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                              uint64_t *user_id, int64_t *expires_at_ms)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_result_t res;
    cql_value_t key = cql_value_blob(hash, NATTER_TOKEN_HASH_LEN);
    int rc = run(s, S_SESSION_GET, &key, 1, cql_murmur3_token(hash, NATTER_TOKEN_HASH_LEN), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    *user_id = 0;
    *expires_at_ms = res.resp.rows.rows_count > 0 ? cell_time(&res, 0, 1) : 0;
    if (res.resp.rows.rows_count == 0 || cell_u64(&res, 0, 0, user_id) != NATTER_OK || *expires_at_ms <= now_ms)
        rc = NATTER_ENOTFOUND;
    cql_result_free(&res);
    return rc;
}

static int cq_session_user(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                           natter_user_t *out)
{
    uint64_t user;
    int64_t expires;
    int rc = cq_session_user_id(base, hash, now_ms, &user, &expires);
    if (rc == NATTER_OK && (rc = cq_user_by_id(base, user, out)) == NATTER_OK)
        out->expires_at_ms = expires;
    return rc;
}

static int cq_session_delete(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    store_cql_t *s = (store_cql_t *)base;
    cql_value_t key = cql_value_blob(hash, NATTER_TOKEN_HASH_LEN);
    return run(s, S_SESSION_DELETE, &key, 1, cql_murmur3_token(hash, NATTER_TOKEN_HASH_LEN), 1, NULL);
}

static int member_rows(store_cql_t *s, uint64_t chat_id, uint64_t user_id)
{
    cql_value_t a[2] = {vid(chat_id), vid(user_id)}, b[2] = {vid(user_id), vid(chat_id)};
    int rc = run(s, S_MEMBER_INSERT, a, 2, token_id(chat_id), 1, NULL);
    return rc == NATTER_OK ? run(s, S_USER_CHAT_INSERT, b, 2, token_id(user_id), 1, NULL) : rc;
}

/* Members first, the chat row last: a chat that failed half-way is not
 * visible (chat_get says 404), and its stray member rows are harmless. */
static int cq_chat_create(natter_store_t *base, const natter_chat_t *chat, const uint64_t *members, size_t n)
{
    store_cql_t *s = (store_cql_t *)base;
    int rc = NATTER_OK;
    for (size_t i = 0; i < n && rc == NATTER_OK; i++)
        rc = member_rows(s, chat->id, members[i]);
    cql_value_t v[4] = {vid(chat->id), cql_value_text(chat->name), vid(chat->created_by),
                        cql_value_timestamp(chat->created_at_ms)};
    return rc == NATTER_OK ? run(s, S_CHAT_INSERT, v, 4, token_id(chat->id), 1, NULL) : rc;
}

static int cq_chat_get(natter_store_t *base, uint64_t chat_id, natter_chat_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_result_t res;
    cql_value_t key = vid(chat_id);
    int rc = run(s, S_CHAT_GET, &key, 1, token_id(chat_id), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.rows.rows_count == 0) {
        rc = NATTER_ENOTFOUND;
    } else {
        out->id = chat_id;
        cell_text(&res, 0, 1, out->name, sizeof(out->name));
        cell_u64(&res, 0, 2, &out->created_by);
        out->created_at_ms = cell_time(&res, 0, 3);
    }
    cql_result_free(&res);
    return rc;
}

static int cq_chat_member_ids(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_value_t key = vid(chat_id);
    return select_ids(s, S_MEMBERS_OF, &key, 1, token_id(chat_id), out);
}

static int user_cmp(const void *a, const void *b)
{
    return strcmp(((const natter_user_t *)a)->username, ((const natter_user_t *)b)->username);
}

static int cq_chat_members(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    int rc = cq_chat_member_ids(base, chat_id, &ids);
    for (size_t i = 0; i < ids.len && rc == NATTER_OK; i++) {
        natter_user_t *u = natter_vec_push(out);
        if ((rc = cq_user_by_id(base, *NATTER_VEC_AT(&ids, uint64_t, i), u)) == NATTER_ENOTFOUND) {
            out->len--; /* a member row whose user is gone: not a member */
            rc = NATTER_OK;
        }
    }
    natter_vec_free(&ids);
    if (rc == NATTER_OK && out->len > 1)
        qsort(out->items, out->len, sizeof(natter_user_t), user_cmp);
    return rc;
}

/* A row that exists, by key (two key columns); sets *present. */
static int row_present(store_cql_t *s, int q, uint64_t a, uint64_t b, int *present)
{
    cql_result_t res;
    cql_value_t v[2] = {vid(a), vid(b)};
    int rc = run(s, q, v, 2, token_id(a), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    *present = res.resp.rows.rows_count > 0;
    cql_result_free(&res);
    return NATTER_OK;
}

/* NATTER_ECONFLICT only when both rows were there: an add that failed
 * half-way is made whole, and told, by the next. */
static int cq_member_add(natter_store_t *base, uint64_t chat_id, uint64_t user_id)
{
    store_cql_t *s = (store_cql_t *)base;
    int member = 0, listed = 0;
    int rc = row_present(s, S_MEMBER_GET, chat_id, user_id, &member);
    if (rc == NATTER_OK && member)
        rc = row_present(s, S_USER_CHAT_GET, user_id, chat_id, &listed);
    if (rc != NATTER_OK)
        return rc;
    if (member && listed)
        return NATTER_ECONFLICT;
    return member_rows(s, chat_id, user_id);
}

static int cq_member_remove(natter_store_t *base, uint64_t chat_id, uint64_t user_id)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_value_t a[2] = {vid(chat_id), vid(user_id)}, b[2] = {vid(user_id), vid(chat_id)};
    int present = 0;
    int rc = row_present(s, S_MEMBER_GET, chat_id, user_id, &present);
    if (rc != NATTER_OK)
        return rc;
    if (!present)
        return NATTER_ENOTFOUND;
    rc = run(s, S_MEMBER_DELETE, a, 2, token_id(chat_id), 1, NULL);
    return rc == NATTER_OK ? run(s, S_USER_CHAT_DELETE, b, 2, token_id(user_id), 1, NULL) : rc;
}

/* Reads message rows (MSG_COLS order) into out. */
static void read_messages(const cql_result_t *res, natter_vec_t *out, size_t max)
{
    for (int32_t row = 0; row < res->resp.rows.rows_count && out->len < max; row++) {
        cql_slice_t content = {0}, cid = {0}, c;
        uint64_t id = 0, chat = 0, sender = 0;
        cell_u64(res, row, 0, &id);
        cell_u64(res, row, 1, &chat);
        cell_u64(res, row, 2, &sender);
        if (cql_rows_cell(&res->resp.rows, row, 3, &c) == NATTER_OK)
            cql_decode_text(c, &content);
        if (cql_rows_cell(&res->resp.rows, row, 5, &c) != NATTER_OK || cql_decode_text(c, &cid) != NATTER_OK)
            cid.len = 0;
        natter_msg_t *m = natter_msg_new(chat, sender, content.len > 0 ? (const char *)content.p : "",
                                         content.len > 0 ? (size_t)content.len : 0,
                                         cid.len > 0 ? (const char *)cid.p : "", cid.len > 0 ? (size_t)cid.len : 0);
        m->id = id;
        m->created_at_ms = cell_time(res, row, 4);
        m->edited_at_ms = cell_time(res, row, 6); /* null: never edited */
        int deleted = 0;
        if (cql_rows_cell(&res->resp.rows, row, 7, &c) == NATTER_OK && cql_decode_boolean(c, &deleted) == NATTER_OK)
            m->deleted = deleted != 0;
        *(natter_msg_t **)natter_vec_push(out) = m;
    }
}

/* The buckets of a chat at or before (desc) / at or after (asc) a bucket. */
static int buckets(store_cql_t *s, uint64_t chat_id, int64_t from, int desc, natter_vec_t *out)
{
    cql_value_t v[2] = {vid(chat_id), cql_value_bigint(from)};
    return select_ids(s, desc ? S_BUCKETS_DESC : S_BUCKETS_ASC, v, 2, token_id(chat_id), out);
}

/* A chat's rows in id order over its buckets (messages, or events): the
 * statements that list its buckets and read one bucket's page, and how a
 * page's rows become natter_msg_t items. */
typedef struct {
    cql_stmt_t *buckets_asc, *buckets_desc; /* (chat_id, from) */
    cql_stmt_t *page_asc;                   /* (chat_id, bucket, after, upper, limit) */
    cql_stmt_t *page_desc;                  /* (chat_id, bucket, upper, limit) */
    int (*read)(store_cql_t *s, uint64_t chat_id, const cql_result_t *res, natter_vec_t *out, size_t max);
} bucketed_t;

/* A page of a bucketed table, as messages_page says (natter_msg_t * items). */
static int bucketed_page(store_cql_t *s, const bucketed_t *t, uint64_t chat_id, uint64_t after, uint64_t before,
                         uint32_t limit, natter_vec_t *out, int *has_more)
{
    uint64_t upper = before == NATTER_CURSOR_NONE ? (uint64_t)INT64_MAX : before;
    int asc = after != NATTER_CURSOR_NONE;
    size_t first = out->len, want = first + limit + 1; /* one more than the page tells has_more */
    natter_vec_t bs;
    natter_vec_init(&bs, sizeof(uint64_t));
    cql_value_t from[2] = {vid(chat_id), cql_value_bigint(asc ? bucket_of(s, after) : bucket_of(s, upper))};
    int rc = select_ids_st(s, asc ? t->buckets_asc : t->buckets_desc, from, 2, token_id(chat_id), &bs);
    for (size_t i = 0; i < bs.len && rc == NATTER_OK && out->len < want; i++) {
        int64_t b = (int64_t)*NATTER_VEC_AT(&bs, uint64_t, i);
        if (asc && b > bucket_of(s, upper))
            break;
        cql_result_t res;
        cql_value_t v[5] = {vid(chat_id), cql_value_bigint(b), vid(asc ? after : upper),
                            asc ? vid(upper) : cql_value_int((int32_t)(want - out->len)),
                            cql_value_int((int32_t)(want - out->len))};
        rc = run_st(s, asc ? t->page_asc : t->page_desc, v, asc ? 5 : 4, token_pair(chat_id, (uint64_t)b), 1, &res);
        if (rc == NATTER_OK) {
            rc = t->read(s, chat_id, &res, out, want);
            cql_result_free(&res);
        }
    }
    natter_vec_free(&bs);
    *has_more = out->len == want;
    if (*has_more) {
        free(*((natter_msg_t **)out->items + out->len - 1));
        out->len--;
    }
    if (!asc)
        natter_store_page_reverse(out, first);
    return rc;
}

static int read_message_page(store_cql_t *s, uint64_t chat_id, const cql_result_t *res, natter_vec_t *out,
                             size_t max)
{
    (void)s, (void)chat_id;
    read_messages(res, out, max);
    return NATTER_OK;
}

static int cq_messages_page(natter_store_t *base, uint64_t chat_id, uint64_t after, uint64_t before,
                            uint32_t limit, natter_vec_t *out, int *has_more)
{
    store_cql_t *s = (store_cql_t *)base;
    bucketed_t t = {s->stmt[S_BUCKETS_ASC], s->stmt[S_BUCKETS_DESC], s->stmt[S_PAGE_ASC], s->stmt[S_PAGE_DESC],
                    read_message_page};
    return bucketed_page(s, &t, chat_id, after, before, limit, out, has_more);
}

/* One message partition's rows as an UNLOGGED batch, plus its bucket row.
 * A partition's rows of one store batch (up to --batch-size) are split so
 * that no batch carries more than this much content: Cassandra refuses a
 * mutation over half a commit log segment (4 MiB with the engine's 8 MiB
 * segments, 16 MiB by default), and a thousand messages of 4,000
 * characters would pass that. */
#define PART_MAX_CONTENT_BYTES (256u * 1024u)

typedef struct {
    uint64_t chat_id;
    int64_t bucket;
    size_t first, n; /* rows in the values array */
} part_t;

/* Inserts the k messages of order (any may repeat an id: one row). */
static int insert_rows(store_cql_t *s, natter_msg_t *const *order, size_t k)
{
    char err[256];
    size_t n = k ? k : 1;
    cql_value_t *values = xcalloc(n * 7, sizeof(cql_value_t));
    part_t *parts = xcalloc(n, sizeof(part_t));
    size_t nparts = 0;
    /* group by partition, keeping log order inside each */
    int *taken = xcalloc(n, sizeof(int));
    size_t row = 0;
    for (size_t i = 0; i < k; i++) {
        if (taken[i])
            continue;
        part_t *p = &parts[nparts++];
        p->chat_id = order[i]->chat_id;
        p->bucket = bucket_of(s, order[i]->id);
        p->first = row;
        size_t bytes = 0;
        for (size_t j = i; j < k; j++) {
            natter_msg_t *m = order[j];
            if (taken[j] || m->chat_id != p->chat_id || bucket_of(s, m->id) != p->bucket)
                continue;
            taken[j] = 1;
            if (p->n > 0 && bytes + m->content_len > PART_MAX_CONTENT_BYTES) {
                part_t *next = &parts[nparts++];
                *next = (part_t){.chat_id = p->chat_id, .bucket = p->bucket, .first = row};
                p = next;
                bytes = 0;
            }
            bytes += m->content_len;
            cql_value_t *v = &values[row++ * 7];
            v[0] = vid(m->chat_id);
            v[1] = cql_value_bigint(p->bucket);
            v[2] = vid(m->id);
            v[3] = vid(m->sender_id);
            v[4] = cql_value_text(m->content);
            v[5] = cql_value_timestamp(m->created_at_ms);
            /* unset, not null: a bound null writes a tombstone for the cell */
            v[6] = m->client_id_len ? cql_value_text(m->client_id) : cql_value_unset();
            p->n++;
        }
    }
    /* every partition's batch, --cql-concurrency at a time */
    cql_batch_params_t bp = {.type = CQL_BATCH_UNLOGGED, .consistency = s->consistency};
    cql_call_t **calls = xcalloc(nparts * 2, sizeof(*calls));
    int rc = NATTER_OK;
    for (size_t start = 0; start < nparts; start += s->concurrency) {
        size_t end = start + s->concurrency < nparts ? start + s->concurrency : nparts;
        for (size_t i = start; i < end; i++) {
            part_t *p = &parts[i];
            cql_value_t bv[2] = {vid(p->chat_id), cql_value_bigint(p->bucket)};
            cql_query_params_t qp = {.consistency = s->consistency, .values = bv, .nvalues = 2};
            calls[2 * i] = cql_client_batch(s->client, &bp, s->stmt[S_MESSAGE_INSERT], &values[p->first * 7], 7, p->n,
                                            token_pair(p->chat_id, (uint64_t)p->bucket), 1);
            calls[2 * i + 1] = cql_client_execute(s->client, s->stmt[S_BUCKET_INSERT], &qp, token_id(p->chat_id), 1);
        }
        for (size_t i = 2 * start; i < 2 * end; i++) {
            int one = cql_call_wait(calls[i], NULL, err, sizeof(err));
            if (one != NATTER_OK && rc == NATTER_OK) {
                fprintf(stderr, "natter: cql: store batch: %s\n", err);
                /* refused as such (Invalid: too large, say) is for good; the rest is an outage */
                rc = one == NATTER_ETIMEDOUT || one == NATTER_EINVAL ? one : NATTER_EUNAVAIL;
            }
        }
    }
    free(calls);
    free(taken);
    free(parts);
    free(values);
    return rc;
}

static int cq_messages_insert(natter_store_t *base, natter_msg_t *head, size_t n)
{
    natter_msg_t **order = xcalloc(n ? n : 1, sizeof(*order));
    size_t k = 0;
    for (natter_msg_t *m = head; m != NULL && k < n; m = m->next)
        if (m->kind == NATTER_EV_MESSAGE) /* records_write applies the events */
            order[k++] = m;
    int rc = insert_rows((store_cql_t *)base, order, k);
    free(order);
    return rc;
}

/* ---- client_id claims ---------------------------------------------------- */

/* The token of the (bigint, bigint, text) key of client_ids: each component
 * as [short length][bytes][0]. */
static int64_t token_claim(const natter_msg_t *m)
{
    uint8_t k[2 * 11 + 3 + NATTER_CLIENT_ID_MAX];
    size_t o = 0;
    for (int i = 0; i < 2; i++) {
        k[o++] = 0, k[o++] = 8;
        be64(k + o, i == 0 ? m->sender_id : m->chat_id);
        o += 8;
        k[o++] = 0;
    }
    k[o++] = 0, k[o++] = (uint8_t)m->client_id_len;
    memcpy(k + o, m->client_id, m->client_id_len);
    o += m->client_id_len;
    k[o++] = 0;
    return cql_murmur3_token(k, o);
}

static cql_call_t *claim_call(store_cql_t *s, const natter_msg_t *m, cql_value_t v[6])
{
    v[0] = vid(m->sender_id);
    v[1] = vid(m->chat_id);
    v[2] = cql_value_text(m->client_id);
    v[3] = vid(m->id);
    v[4] = cql_value_timestamp(m->created_at_ms);
    v[5] = cql_value_text(m->content);
    cql_query_params_t qp = {.consistency = s->consistency, .values = v, .nvalues = 6,
                             .serial_consistency = CQL_LOCAL_SERIAL};
    return cql_client_execute(s->client, s->stmt[S_CLAIM], &qp, token_claim(m), 0);
}

/* The column of an LWT answer named name, or -1. */
static int32_t column_named(const cql_result_t *r, const char *name)
{
    for (int32_t col = 0; col < r->resp.rows.meta.columns_count && r->resp.rows.meta.columns; col++)
        if (cql_slice_eq(r->resp.rows.meta.columns[col].name, name))
            return col;
    return -1;
}

/* The outcome of m's claim: NATTER_OK (m's), NATTER_ECONFLICT and *holder,
 * or an error (the outcome is then unknown). */
static int claim_outcome(const natter_msg_t *m, cql_call_t *call, natter_msg_t **holder)
{
    char err[256];
    cql_result_t res;
    int rc = cql_call_wait(call, &res, err, sizeof(err));
    if (rc != NATTER_OK) {
        fprintf(stderr, "natter: cql: client_id claim: %s\n", err);
        return rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT ? rc : NATTER_EIO;
    }
    if (applied(&res)) {
        cql_result_free(&res);
        return NATTER_OK;
    }
    /* not applied: the answer carries the row that holds the key */
    int32_t cid = column_named(&res, "message_id"), cat = column_named(&res, "created_at");
    int32_t ccontent = column_named(&res, "content");
    uint64_t id = 0;
    cql_slice_t c, text = {0};
    rc = cid >= 0 && cat >= 0 && cell_u64(&res, 0, cid, &id) == NATTER_OK ? NATTER_OK : NATTER_EIO;
    if (rc == NATTER_OK && id == m->id) {
        rc = NATTER_OK; /* ours, from an earlier try whose answer was lost */
    } else if (rc == NATTER_OK) {
        if (ccontent < 0 || cql_rows_cell(&res.resp.rows, 0, ccontent, &c) != NATTER_OK ||
            cql_decode_text(c, &text) != NATTER_OK || text.len < 0)
            text.len = 0;
        natter_msg_t *h = natter_msg_new(m->chat_id, m->sender_id, text.len ? (const char *)text.p : "",
                                         (size_t)text.len, m->client_id, m->client_id_len);
        h->id = id;
        h->created_at_ms = cell_time(&res, 0, cat);
        *holder = h;
        rc = NATTER_ECONFLICT;
    }
    cql_result_free(&res);
    return rc;
}

/* Claims the client_ids of msgs (those that have one; rc[i] 0 for the
 * others), --cql-concurrency lightweight transactions in flight at once.
 * Each is linearizable: of two claims of a key on any nodes one wins, and
 * the loser learns the winner's message. Returns the first error, if any. */
static int claim_all(store_cql_t *s, natter_msg_t *const *msgs, size_t n, int *rc, natter_msg_t **holders)
{
    cql_call_t **calls = xcalloc(n ? n : 1, sizeof(*calls));
    cql_value_t *values = xcalloc(n ? n * 6 : 1, sizeof(cql_value_t));
    int first = NATTER_OK;
    for (size_t start = 0; start < n; start += s->concurrency) {
        size_t end = start + s->concurrency < n ? start + s->concurrency : n;
        for (size_t i = start; i < end; i++)
            if (msgs[i]->client_id_len > 0)
                calls[i] = claim_call(s, msgs[i], &values[i * 6]);
        for (size_t i = start; i < end; i++) {
            rc[i] = msgs[i]->client_id_len > 0 ? claim_outcome(msgs[i], calls[i], &holders[i]) : NATTER_OK;
            if (rc[i] != NATTER_OK && rc[i] != NATTER_ECONFLICT && first == NATTER_OK)
                first = rc[i];
        }
    }
    free(values);
    free(calls);
    return first;
}

static int cq_client_ids_claim(natter_store_t *base, natter_msg_t *const *msgs, size_t n, int64_t now_ms, int *rc,
                               natter_msg_t **holders)
{
    (void)now_ms; /* the row's TTL is the window */
    claim_all((store_cql_t *)base, msgs, n, rc, holders);
    return NATTER_OK; /* each claim has its own outcome */
}

/* Claims every client_id of the batch, then inserts the messages that won
 * their claim and, in place of each that lost, the holder (from the
 * claim's content: a claim is made with its content, so a holder whose
 * message was lost is healed here). The messages are changed only when
 * every write succeeded. */
static int messages_insert_claimed(store_cql_t *s, natter_msg_t *head, size_t n, int64_t now_ms)
{
    size_t cap = n ? n : 1, k = 0;
    natter_msg_t **msgs = xcalloc(cap, sizeof(*msgs)), **rows = xcalloc(cap, sizeof(*rows));
    natter_msg_t **holders = xcalloc(cap, sizeof(*holders));
    int *rcs = xcalloc(cap, sizeof(int));
    (void)now_ms;
    for (natter_msg_t *m = head; m != NULL && k < n; m = m->next)
        if (m->kind == NATTER_EV_MESSAGE) /* cq_records_write applies the events */
            msgs[k++] = m;
    int rc = claim_all(s, msgs, k, rcs, holders);
    size_t nrows = 0;
    for (size_t i = 0; i < k; i++)
        rows[nrows++] = holders[i] ? holders[i] : msgs[i];
    if (rc == NATTER_OK)
        rc = insert_rows(s, rows, nrows);
    for (size_t i = 0; i < k; i++) {
        if (holders[i] == NULL)
            continue;
        if (rc == NATTER_OK) {
            msgs[i]->id = holders[i]->id;
            msgs[i]->created_at_ms = holders[i]->created_at_ms;
            msgs[i]->duplicate = 1;
        }
        free(holders[i]);
    }
    free(rcs);
    free(holders);
    free(rows);
    free(msgs);
    return rc;
}

/* ---- WebSocket tickets --------------------------------------------------- */

static int cq_ticket_create(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], const natter_ticket_t *t,
                            int64_t expires_at_ms)
{
    return token_row_insert((store_cql_t *)base, S_TICKET_INSERT, hash, t->user_id, expires_at_ms, t);
}

/* Read, then delete by LWT on what was read: of two takers, the second's
 * condition finds no row. */
static int cq_ticket_take(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                          natter_ticket_t *t)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_result_t res;
    cql_value_t key = cql_value_blob(hash, NATTER_TOKEN_HASH_LEN);
    int64_t token = cql_murmur3_token(hash, NATTER_TOKEN_HASH_LEN);
    int rc = run(s, S_TICKET_GET, &key, 1, token, 1, &res);
    if (rc != NATTER_OK)
        return rc;
    natter_ticket_t got = {0};
    cql_slice_t session;
    int64_t expires = res.resp.rows.rows_count > 0 ? cell_time(&res, 0, 1) : 0;
    if (res.resp.rows.rows_count == 0 || cell_u64(&res, 0, 0, &got.user_id) != NATTER_OK || expires <= now_ms)
        rc = NATTER_ENOTFOUND;
    if (rc == NATTER_OK && cql_rows_cell(&res.resp.rows, 0, 2, &session) == NATTER_OK &&
        session.len == NATTER_TOKEN_HASH_LEN) {
        memcpy(got.session_hash, session.p, NATTER_TOKEN_HASH_LEN);
        got.session_expires_at_ms = cell_time(&res, 0, 3);
    }
    cql_result_free(&res);
    if (rc != NATTER_OK)
        return rc;
    cql_value_t v[2] = {key, vid(got.user_id)};
    if ((rc = run(s, S_TICKET_DELETE, v, 2, token, 0, &res)) != NATTER_OK)
        return rc;
    rc = applied(&res) ? NATTER_OK : NATTER_ENOTFOUND;
    cql_result_free(&res);
    if (rc == NATTER_OK)
        *t = got;
    return rc;
}

static int cq_message_in_chat(natter_store_t *base, uint64_t chat_id, uint64_t message_id)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_result_t res;
    int64_t b = bucket_of(s, message_id);
    cql_value_t v[3] = {vid(chat_id), cql_value_bigint(b), vid(message_id)};
    int rc = run(s, S_MESSAGE_GET, v, 3, token_pair(chat_id, (uint64_t)b), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    rc = res.resp.rows.rows_count > 0 ? NATTER_OK : NATTER_ENOTFOUND;
    cql_result_free(&res);
    return rc;
}

static int cq_read_marker_advance(natter_store_t *base, uint64_t user_id, uint64_t chat_id, uint64_t message_id)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_result_t res;
    cql_value_t ins[3] = {vid(user_id), vid(chat_id), vid(message_id)};
    int rc = run(s, S_MARKER_INSERT, ins, 3, token_id(user_id), 0, &res);
    if (rc != NATTER_OK)
        return rc;
    int created = applied(&res);
    cql_result_free(&res);
    if (created)
        return NATTER_OK;
    cql_value_t adv[4] = {vid(message_id), vid(user_id), vid(chat_id), vid(message_id)};
    rc = run(s, S_MARKER_ADVANCE, adv, 4, token_id(user_id), 0, &res);
    if (rc != NATTER_OK)
        return rc;
    int moved = applied(&res);
    cql_result_free(&res);
    return moved ? NATTER_OK : NATTER_ECONFLICT; /* not applied: the marker was there or further on */
}

typedef struct unread_count {
    uint64_t user_id;
    uint64_t n;
} unread_count_t;

/* Counts a message another member sent; enough at NATTER_UNREAD_MAX. */
static int unread_row(const cql_result_t *res, int32_t i, void *arg)
{
    unread_count_t *u = arg;
    uint64_t sender;
    if (cell_u64(res, i, 0, &sender) == NATTER_OK && sender != u->user_id && u->n < NATTER_UNREAD_MAX)
        u->n++;
    return u->n >= NATTER_UNREAD_MAX;
}

/* The chat's newest message into cs->last (NULL when it has none): its
 * activity, by which the list is ordered. */
static int last_of(store_cql_t *s, natter_chat_summary_t *cs)
{
    natter_vec_t page;
    int more;
    natter_vec_init(&page, sizeof(natter_msg_t *));
    int rc = cq_messages_page(&s->base, cs->chat.id, NATTER_CURSOR_NONE, NATTER_CURSOR_NONE, 1, &page, &more);
    if (rc == NATTER_OK && page.len == 1)
        cs->last = *NATTER_VEC_AT(&page, natter_msg_t *, 0);
    natter_vec_free(&page);
    return rc;
}

/* The user's marker, and unread: the messages after it that others sent,
 * counted from the marker's bucket on up to NATTER_UNREAD_MAX (a page past
 * it at most is read). */
static int unread_of(store_cql_t *s, uint64_t user_id, natter_chat_summary_t *cs)
{
    cql_result_t res;
    cql_value_t mk[2] = {vid(user_id), vid(cs->chat.id)};
    uint64_t marker = 0;
    int rc = run(s, S_MARKER_GET, mk, 2, token_id(user_id), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    if (res.resp.rows.rows_count > 0)
        cell_u64(&res, 0, 0, &marker);
    cql_result_free(&res);
    cs->read = marker;
    if (cs->last == NULL || cs->last->id <= marker)
        return NATTER_OK;

    natter_vec_t bs;
    natter_vec_init(&bs, sizeof(uint64_t));
    rc = buckets(s, cs->chat.id, bucket_of(s, marker), 0, &bs);
    unread_count_t u = {.user_id = user_id};
    for (size_t i = 0; i < bs.len && rc == NATTER_OK && u.n < NATTER_UNREAD_MAX; i++) {
        uint64_t b = *NATTER_VEC_AT(&bs, uint64_t, i);
        cql_value_t v[3] = {vid(cs->chat.id), cql_value_bigint((int64_t)b), vid(marker)};
        rc = select_rows(s, s->stmt[S_SENDERS_AFTER], v, 3, token_pair(cs->chat.id, b), unread_row, &u);
    }
    natter_vec_free(&bs);
    cs->unread = u.n;
    return rc;
}

/* Every chat's newest message is read to order the list (one query each);
 * only the page's chats are summarized (their markers and unread). */
static int cq_user_chats(natter_store_t *base, uint64_t user_id, uint64_t before, uint32_t limit, natter_vec_t *out,
                         uint64_t *next)
{
    store_cql_t *s = (store_cql_t *)base;
    natter_vec_t ids, all;
    natter_vec_init(&ids, sizeof(uint64_t));
    natter_vec_init(&all, sizeof(natter_chat_summary_t));
    cql_value_t key = vid(user_id);
    *next = 0;
    int rc = select_ids(s, S_CHATS_OF, &key, 1, token_id(user_id), &ids);
    for (size_t i = 0; i < ids.len && rc == NATTER_OK; i++) {
        natter_chat_summary_t cs = {0};
        rc = cq_chat_get(base, *NATTER_VEC_AT(&ids, uint64_t, i), &cs.chat);
        if (rc == NATTER_ENOTFOUND) { /* a chat whose creation did not finish */
            rc = NATTER_OK;
            continue;
        }
        if (rc == NATTER_OK)
            rc = last_of(s, &cs);
        if (rc == NATTER_OK && natter_chat_summary_activity(&cs) < before)
            *(natter_chat_summary_t *)natter_vec_push(&all) = cs;
        else
            free(cs.last);
    }
    natter_vec_free(&ids);
    if (all.len > 1)
        qsort(all.items, all.len, sizeof(natter_chat_summary_t), natter_chat_summary_by_activity);
    for (size_t i = 0; i < all.len; i++) {
        natter_chat_summary_t *cs = NATTER_VEC_AT(&all, natter_chat_summary_t, i);
        if (rc == NATTER_OK && i < limit) {
            rc = unread_of(s, user_id, cs);
            *(natter_chat_summary_t *)natter_vec_push(out) = *cs;
        } else {
            free(cs->last);
        }
    }
    if (rc == NATTER_OK && all.len > limit)
        *next = natter_chat_summary_activity(NATTER_VEC_AT(out, natter_chat_summary_t, limit - 1));
    natter_vec_free(&all);
    return rc;
}

/* The holder an LWT that did not apply found in the row (column col), or
 * "" when there was no row. */
static void lwt_holder(const cql_result_t *r, int32_t col, char *dst, size_t len)
{
    dst[0] = '\0';
    if (r->resp.rows.rows_count > 0 && r->resp.rows.meta.columns_count > col)
        cell_text(r, 0, col, dst, len);
}

/* A lease lives in a row whose TTL its holder renews: a dead holder's row
 * disappears by itself (the TTL is the server's clock, not the nodes'). */
static int cq_node_lease(natter_store_t *base, uint32_t node_id, const char *holder, uint32_t ttl_ms,
                         natter_lease_op_t op)
{
    store_cql_t *s = (store_cql_t *)base;
    uint8_t key[4] = {(uint8_t)(node_id >> 24), (uint8_t)(node_id >> 16), (uint8_t)(node_id >> 8), (uint8_t)node_id};
    int64_t token = cql_murmur3_token(key, sizeof(key));
    int32_t ttl_s = (int32_t)((ttl_ms + 999) / 1000);
    char found[80];
    cql_result_t res;
    int rc;
    if (op == NATTER_LEASE_RELEASE) {
        cql_value_t v[2] = {cql_value_int((int32_t)node_id), cql_value_text(holder)};
        return run(s, S_LEASE_RELEASE, v, 2, token, 0, NULL);
    }
    if (op == NATTER_LEASE_ACQUIRE) {
        cql_value_t v[3] = {cql_value_int((int32_t)node_id), cql_value_text(holder), cql_value_int(ttl_s)};
        if ((rc = run(s, S_LEASE_TAKE, v, 3, token, 0, &res)) != NATTER_OK)
            return rc;
        int taken = applied(&res);
        lwt_holder(&res, 2, found, sizeof(found)); /* [applied], node_id, holder */
        cql_result_free(&res);
        if (taken)
            return NATTER_OK;
        if (strcmp(found, holder) != 0)
            return NATTER_ECONFLICT;
        /* our own lease (a restart on the same data dir): renew it below */
    }
    cql_value_t v[4] = {cql_value_int(ttl_s), cql_value_text(holder), cql_value_int((int32_t)node_id),
                        cql_value_text(holder)};
    if ((rc = run(s, S_LEASE_RENEW, v, 4, token, 0, &res)) != NATTER_OK)
        return rc;
    int renewed = applied(&res);
    lwt_holder(&res, 1, found, sizeof(found)); /* [applied], holder */
    cql_result_free(&res);
    if (renewed)
        return NATTER_OK;
    if (found[0] != '\0' || op == NATTER_LEASE_ACQUIRE)
        return NATTER_ECONFLICT;
    return cq_node_lease(base, node_id, holder, ttl_ms, NATTER_LEASE_ACQUIRE); /* it ran out: take it again */
}

/* ---- version 5: the chat's events ------------------------------------------
 *
 * An event is applied by writes that all carry its id as their timestamp
 * (see the map at the top): the message's row updated in place (an edit
 * its content and edited_at; a delete empties content and client_id, sets
 * deleted and drops the message's reactions with one range tombstone),
 * a reaction row written or deleted, and the event kept for the feed in
 * events, partitioned by chat and the event's bucket. The message is read
 * first, so an edit or a reaction never lands on a deleted message, nor
 * on one that is not its sender's. One chat's events are applied by one
 * consumer in log order (one partition, one group member), and each write
 * is idempotent on its own, so a batch applied half-way and then again
 * ends the same as once. */

/* The message's row as it is now; NATTER_ENOTFOUND when there is none. */
static int message_row(store_cql_t *s, uint64_t chat_id, uint64_t id, natter_msg_t **out)
{
    int64_t b = bucket_of(s, id);
    cql_value_t v[3] = {vid(chat_id), cql_value_bigint(b), vid(id)};
    cql_result_t res;
    int rc = run_st(s, s->estmt[E_MESSAGE_GET], v, 3, token_pair(chat_id, (uint64_t)b), 1, &res);
    if (rc != NATTER_OK)
        return rc;
    natter_vec_t one;
    natter_vec_init(&one, sizeof(natter_msg_t *));
    read_messages(&res, &one, 1);
    cql_result_free(&res);
    rc = one.len == 1 ? NATTER_OK : NATTER_ENOTFOUND;
    if (rc == NATTER_OK)
        *out = *NATTER_VEC_AT(&one, natter_msg_t *, 0);
    natter_vec_free(&one);
    return rc;
}

static int cq_message_get(natter_store_t *base, uint64_t chat_id, uint64_t message_id, natter_msg_t **out)
{
    return message_row((store_cql_t *)base, chat_id, message_id, out);
}

/* 1 when event e may change message m (NULL: not there). */
static int applies(const natter_msg_t *e, const natter_msg_t *m)
{
    switch (e->kind) {
    case NATTER_EV_EDIT: return m != NULL && !m->deleted && m->sender_id == e->sender_id;
    case NATTER_EV_DELETE: return m != NULL && m->sender_id == e->sender_id;
    case NATTER_EV_REACT_ADD: return m != NULL && !m->deleted;
    default: return 1; /* a reaction taken back: gone either way */
    }
}

/* The event's own writes to the message and its reactions. */
static int change(store_cql_t *s, const natter_msg_t *e)
{
    int64_t b = bucket_of(s, e->target_id), token = token_pair(e->chat_id, (uint64_t)b);
    cql_value_t ts = vid(e->id), chat = vid(e->chat_id), bucket = cql_value_bigint(b), msg = vid(e->target_id);
    switch (e->kind) {
    case NATTER_EV_EDIT: {
        cql_value_t v[6] = {ts, cql_value_text(e->content), cql_value_timestamp(e->created_at_ms), chat, bucket, msg};
        return run_st(s, s->estmt[E_EDIT], v, 6, token, 1, NULL);
    }
    case NATTER_EV_DELETE: { /* final: above every event id (see DELETE_TIMESTAMP_BIT) */
        cql_value_t v[4] = {vid(e->id | DELETE_TIMESTAMP_BIT), chat, bucket, msg};
        int rc = run_st(s, s->estmt[E_DELETE], v, 4, token, 1, NULL);
        return rc == NATTER_OK ? run_st(s, s->estmt[E_REACTIONS_DROP], v, 4, token, 1, NULL) : rc;
    }
    case NATTER_EV_REACT_ADD: {
        cql_value_t v[6] = {chat, bucket, msg, cql_value_text(e->content), vid(e->sender_id), ts};
        return run_st(s, s->estmt[E_REACTION_ADD], v, 6, token, 1, NULL);
    }
    default: {
        cql_value_t v[6] = {ts, chat, bucket, msg, cql_value_text(e->content), vid(e->sender_id)};
        return run_st(s, s->estmt[E_REACTION_REMOVE], v, 6, token, 1, NULL);
    }
    }
}

static int apply_event(store_cql_t *s, const natter_msg_t *e)
{
    natter_msg_t *m = NULL;
    int rc = e->kind == NATTER_EV_REACT_REMOVE ? NATTER_OK : message_row(s, e->chat_id, e->target_id, &m);
    if (rc == NATTER_ENOTFOUND)
        rc = NATTER_OK;
    if (rc == NATTER_OK && applies(e, m))
        rc = change(s, e);
    free(m);
    if (rc != NATTER_OK)
        return rc;
    int react = e->kind == NATTER_EV_REACT_ADD || e->kind == NATTER_EV_REACT_REMOVE;
    int64_t eb = bucket_of(s, e->id);
    cql_value_t row[8] = {vid(e->chat_id), cql_value_bigint(eb), vid(e->id), cql_value_int(e->kind),
                          vid(e->target_id), vid(e->sender_id), react ? cql_value_text(e->content) : cql_value_null(),
                          cql_value_timestamp(e->created_at_ms)};
    if ((rc = run_st(s, s->estmt[E_EVENT_INSERT], row, 8, token_pair(e->chat_id, (uint64_t)eb), 1, NULL)) != NATTER_OK)
        return rc;
    return run_st(s, s->estmt[E_EVENT_BUCKET_INSERT], row, 2, token_id(e->chat_id), 1, NULL);
}

/* The messages first (as messages_insert, in parallel by partition; with
 * their claims when claim is set), then each event in log order: an
 * event's message is in the store before it. */
static int cq_records_write(natter_store_t *base, natter_msg_t *head, size_t n, int claim, int64_t now_ms)
{
    store_cql_t *s = (store_cql_t *)base;
    int rc = claim ? messages_insert_claimed(s, head, n, now_ms) : cq_messages_insert(base, head, n);
    for (natter_msg_t *e = head; e != NULL && rc == NATTER_OK; e = e->next)
        if (e->kind != NATTER_EV_MESSAGE && natter_event_stored(e->kind))
            rc = apply_event(s, e);
    return rc;
}

static int reaction_row(const cql_result_t *res, int32_t i, void *arg)
{
    natter_reaction_row_t *r = natter_vec_push(arg);
    cell_u64(res, i, 0, &r->message_id);
    cell_text(res, i, 1, r->emoji, sizeof(r->emoji));
    cell_u64(res, i, 2, &r->user_id);
    return 0;
}

/* Walks the chat's message buckets from first_id's to last_id's: reactions
 * live in their message's bucket. */
static int cq_reactions_range(natter_store_t *base, uint64_t chat_id, uint64_t first_id, uint64_t last_id,
                              natter_vec_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    natter_vec_t bs;
    natter_vec_init(&bs, sizeof(uint64_t));
    int rc = buckets(s, chat_id, bucket_of(s, first_id), 0, &bs);
    for (size_t i = 0; i < bs.len && rc == NATTER_OK; i++) {
        int64_t b = (int64_t)*NATTER_VEC_AT(&bs, uint64_t, i);
        if (b > bucket_of(s, last_id))
            break;
        cql_value_t v[4] = {vid(chat_id), cql_value_bigint(b), vid(first_id), vid(last_id)};
        rc = select_rows(s, s->estmt[E_REACTIONS_RANGE], v, 4, token_pair(chat_id, (uint64_t)b), reaction_row, out);
    }
    natter_vec_free(&bs);
    return rc;
}

/* Event rows (id, kind, message_id, user_id, emoji, created_at); an edit
 * gets its message's state as it is now. */
static int read_event_page(store_cql_t *s, uint64_t chat_id, const cql_result_t *res, natter_vec_t *out, size_t max)
{
    int rc = NATTER_OK;
    for (int32_t row = 0; row < res->resp.rows.rows_count && out->len < max && rc == NATTER_OK; row++) {
        uint64_t id = 0, target = 0, user = 0;
        int32_t kind = 0;
        cql_slice_t c, emoji = {0};
        cell_u64(res, row, 0, &id);
        if (cql_rows_cell(&res->resp.rows, row, 1, &c) == NATTER_OK)
            cql_decode_int(c, &kind);
        cell_u64(res, row, 2, &target);
        cell_u64(res, row, 3, &user);
        if (cql_rows_cell(&res->resp.rows, row, 4, &c) != NATTER_OK || cql_decode_text(c, &emoji) != NATTER_OK)
            emoji.len = 0;
        natter_msg_t *now = NULL;
        if (kind == NATTER_EV_EDIT && (rc = message_row(s, chat_id, target, &now)) == NATTER_ENOTFOUND)
            rc = NATTER_OK;
        const char *text = now ? now->content : emoji.len > 0 ? (const char *)emoji.p : "";
        size_t len = now ? now->content_len : emoji.len > 0 ? (size_t)emoji.len : 0;
        natter_msg_t *e = natter_msg_new(chat_id, user, text, len, now ? now->client_id : "",
                                         now ? now->client_id_len : 0);
        e->id = id;
        e->kind = (uint8_t)kind;
        e->target_id = target;
        e->created_at_ms = cell_time(res, row, 5);
        if (now != NULL) {
            e->edited_at_ms = now->edited_at_ms;
            e->deleted = now->deleted;
        }
        free(now);
        *(natter_msg_t **)natter_vec_push(out) = e;
    }
    return rc;
}

static int cq_events_page(natter_store_t *base, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                          natter_vec_t *out, int *has_more)
{
    store_cql_t *s = (store_cql_t *)base;
    bucketed_t t = {s->estmt[E_EVENT_BUCKETS_ASC], s->estmt[E_EVENT_BUCKETS_DESC], s->estmt[E_EVENTS_ASC],
                    s->estmt[E_EVENTS_DESC], read_event_page};
    return bucketed_page(s, &t, chat_id, after, before, limit, out, has_more);
}

/* Each member's marker, from read_markers (partitioned by user). */
static int cq_read_markers(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    int rc = cq_chat_member_ids(base, chat_id, &ids);
    for (size_t i = 0; i < ids.len && rc == NATTER_OK; i++) {
        uint64_t user = *NATTER_VEC_AT(&ids, uint64_t, i), marker;
        cql_value_t v[2] = {vid(user), vid(chat_id)};
        cql_result_t res;
        if ((rc = run(s, S_MARKER_GET, v, 2, token_id(user), 1, &res)) != NATTER_OK)
            break;
        if (res.resp.rows.rows_count > 0 && cell_u64(&res, 0, 0, &marker) == NATTER_OK)
            *(natter_read_marker_t *)natter_vec_push(out) = (natter_read_marker_t){user, marker};
        cql_result_free(&res);
    }
    natter_vec_free(&ids);
    return rc;
}

static int cq_user_chat_ids(natter_store_t *base, uint64_t user_id, natter_vec_t *out)
{
    store_cql_t *s = (store_cql_t *)base;
    cql_value_t key = vid(user_id);
    return select_ids(s, S_CHATS_OF, &key, 1, token_id(user_id), out);
}

const natter_store_ops_t natter_store_cql = {
    .version = 6,
    .size = sizeof(store_cql_t),
    .name = "cql",
    .open = cq_open,
    .close = cq_close,
    .ping = cq_ping,
    .user_create = cq_user_create,
    .user_by_name = cq_user_by_name,
    .user_by_id = cq_user_by_id,
    .session_create = cq_session_create,
    .session_user = cq_session_user,
    .session_delete = cq_session_delete,
    .chat_create = cq_chat_create,
    .chat_get = cq_chat_get,
    .chat_member_ids = cq_chat_member_ids,
    .chat_members = cq_chat_members,
    .member_add = cq_member_add,
    .member_remove = cq_member_remove,
    .user_chats = cq_user_chats,
    .messages_insert = cq_messages_insert,
    .messages_page = cq_messages_page,
    .message_in_chat = cq_message_in_chat,
    .read_marker_advance = cq_read_marker_advance,
    .metrics_render = cq_metrics_render,
    .node_lease = cq_node_lease,
    .client_ids_claim = cq_client_ids_claim,
    .ticket_create = cq_ticket_create,
    .ticket_take = cq_ticket_take,
    .records_write = cq_records_write,
    .message_get = cq_message_get,
    .reactions_range = cq_reactions_range,
    .events_page = cq_events_page,
    .read_markers = cq_read_markers,
    .user_chat_ids = cq_user_chat_ids,
    .session_user_id = cq_session_user_id,
};
