/*
 * The embedded store: one SQLite database in WAL mode under --data-dir.
 *
 * Map of this file: schema and migrations; the connection pool; one
 * function per store method.
 *
 * Connections: SQLite connections are not shared between threads. A small
 * pool hands one to each call (a mutex around a free list; the call itself
 * runs outside the lock), each with its statements prepared once. WAL lets
 * readers run while the consumer's batch transaction writes; writers queue
 * on SQLite's own lock (busy_timeout).
 *
 * Durability: synchronous=FULL by default, so a committed batch survives a
 * power cut, not just a process crash; --sqlite-sync normal trades that
 * for speed (still safe against kill -9).
 */
#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Migrations: the schema at version i+1 is migrations[0..i] applied in order.
 * Only ever append. */
static const char *const migrations[] = {
    "CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, pwhash TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE sessions (token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE INDEX sessions_by_expiry ON sessions (expires_at);"
    "CREATE TABLE chats (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_by INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE members (chat_id INTEGER NOT NULL, user_id INTEGER NOT NULL, PRIMARY KEY (chat_id, user_id))"
    "  WITHOUT ROWID;"
    "CREATE INDEX members_by_user ON members (user_id, chat_id);"
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL, sender_id INTEGER NOT NULL,"
    "  content TEXT NOT NULL, created_at INTEGER NOT NULL, client_id TEXT);"
    "CREATE INDEX messages_by_chat ON messages (chat_id, id);"
    "CREATE TABLE read_markers (user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, chat_id)) WITHOUT ROWID;",
    "CREATE TABLE node_leases (node_id INTEGER PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);",
};
#define NMIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

enum {
    Q_USER_INSERT,
    Q_USER_BY_NAME,
    Q_USER_BY_ID,
    Q_SESSION_INSERT,
    Q_SESSION_USER,
    Q_SESSION_DELETE,
    Q_SESSION_SWEEP,
    Q_CHAT_INSERT,
    Q_CHAT_GET,
    Q_MEMBER_IDS,
    Q_MEMBERS,
    Q_MEMBER_ADD,
    Q_MEMBER_REMOVE,
    Q_USER_CHATS,
    Q_MESSAGE_INSERT,
    Q_PAGE_AFTER,
    Q_PAGE_BEFORE,
    Q_MESSAGE_IN_CHAT,
    Q_MARKER_ADVANCE,
    Q_LEASE_GET,
    Q_LEASE_PUT,
    Q_LEASE_RENEW,
    Q_LEASE_RELEASE,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_PING,
    NQUERIES
};

#define MSG_COLS "id, chat_id, sender_id, content, created_at, client_id"

static const char *const queries[NQUERIES] = {
    [Q_USER_INSERT] = "INSERT INTO users (id, username, pwhash, created_at) VALUES (?1, ?2, ?3, ?4)",
    [Q_USER_BY_NAME] = "SELECT id, username, pwhash FROM users WHERE username = ?1",
    [Q_USER_BY_ID] = "SELECT id, username, '' FROM users WHERE id = ?1",
    [Q_SESSION_INSERT] = "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
    [Q_SESSION_USER] = "SELECT u.id, u.username, '', s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
                       " WHERE s.token_hash = ?1 AND s.expires_at > ?2",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE token_hash = ?1",
    [Q_SESSION_SWEEP] = "DELETE FROM sessions WHERE expires_at <= ?1",
    [Q_CHAT_INSERT] = "INSERT INTO chats (id, name, created_by, created_at) VALUES (?1, ?2, ?3, ?4)",
    [Q_CHAT_GET] = "SELECT id, name, created_by, created_at FROM chats WHERE id = ?1",
    [Q_MEMBER_IDS] = "SELECT user_id FROM members WHERE chat_id = ?1",
    [Q_MEMBERS] = "SELECT u.id, u.username FROM members m JOIN users u ON u.id = m.user_id WHERE m.chat_id = ?1"
                  " ORDER BY u.username",
    [Q_MEMBER_ADD] = "INSERT OR IGNORE INTO members (chat_id, user_id) VALUES (?1, ?2)",
    [Q_MEMBER_REMOVE] = "DELETE FROM members WHERE chat_id = ?1 AND user_id = ?2",
    [Q_USER_CHATS] =
        "SELECT c.id, c.name, c.created_by, c.created_at,"
        " (SELECT count(*) FROM messages x WHERE x.chat_id = c.id AND x.sender_id <> ?1"
        "   AND x.id > coalesce((SELECT message_id FROM read_markers r WHERE r.user_id = ?1 AND r.chat_id = c.id), 0)),"
        " l.id, l.chat_id, l.sender_id, l.content, l.created_at, l.client_id"
        " FROM members m JOIN chats c ON c.id = m.chat_id"
        " LEFT JOIN messages l ON l.id = (SELECT max(id) FROM messages y WHERE y.chat_id = c.id)"
        " WHERE m.user_id = ?1 ORDER BY max(c.id, coalesce(l.id, 0)) DESC",
    [Q_MESSAGE_INSERT] = "INSERT OR IGNORE INTO messages (" MSG_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_PAGE_AFTER] = "SELECT " MSG_COLS " FROM messages WHERE chat_id = ?1 AND id > ?2 AND id < ?3"
                     " ORDER BY id ASC LIMIT ?4",
    [Q_PAGE_BEFORE] = "SELECT " MSG_COLS " FROM messages WHERE chat_id = ?1 AND id < ?2"
                      " ORDER BY id DESC LIMIT ?3",
    [Q_MESSAGE_IN_CHAT] = "SELECT 1 FROM messages WHERE id = ?1 AND chat_id = ?2",
    [Q_MARKER_ADVANCE] = "INSERT INTO read_markers (user_id, chat_id, message_id) VALUES (?1, ?2, ?3)"
                         " ON CONFLICT (user_id, chat_id) DO UPDATE SET message_id = excluded.message_id"
                         " WHERE excluded.message_id > read_markers.message_id",
    [Q_LEASE_GET] = "SELECT holder, expires_at FROM node_leases WHERE node_id = ?1",
    [Q_LEASE_PUT] = "INSERT OR REPLACE INTO node_leases (node_id, holder, expires_at) VALUES (?1, ?2, ?3)",
    [Q_LEASE_RENEW] = "UPDATE node_leases SET expires_at = ?3 WHERE node_id = ?1 AND holder = ?2",
    [Q_LEASE_RELEASE] = "DELETE FROM node_leases WHERE node_id = ?1 AND holder = ?2",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_PING] = "SELECT 1",
};

typedef struct conn {
    struct conn *next;
    sqlite3 *db;
    sqlite3_stmt *stmt[NQUERIES];
} conn_t;

typedef struct {
    natter_store_t base;
    char path[600];
    char sync[8];
    pthread_mutex_t lock;
    conn_t *idle;
} store_sqlite_t;

static int rc_of(int src)
{
    switch (src) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return NATTER_OK;
    case SQLITE_CONSTRAINT:
        return NATTER_ECONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
        return NATTER_EUNAVAIL;
    default:
        return NATTER_EIO;
    }
}

static void conn_free(conn_t *c)
{
    for (int i = 0; i < NQUERIES; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close(c->db);
    free(c);
}

static conn_t *conn_new(store_sqlite_t *s, char *err, size_t errlen)
{
    conn_t *c = xcalloc(1, sizeof(*c));
    char pragmas[160];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF; PRAGMA busy_timeout=5000;",
             s->sync);
    if (sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(c->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite %s: %s", s->path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
        conn_free(c);
        return NULL;
    }
    return c;
}

static int conn_prepare(conn_t *c, char *err, size_t errlen)
{
    for (int i = 0; i < NQUERIES; i++) {
        if (sqlite3_prepare_v3(c->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "sqlite prepare %d: %s", i, sqlite3_errmsg(c->db));
            return NATTER_EIO;
        }
    }
    return NATTER_OK;
}

static conn_t *acquire(store_sqlite_t *s)
{
    char err[256];
    pthread_mutex_lock(&s->lock);
    conn_t *c = s->idle;
    if (c != NULL)
        s->idle = c->next;
    pthread_mutex_unlock(&s->lock);
    if (c != NULL)
        return c;
    if ((c = conn_new(s, err, sizeof(err))) == NULL || conn_prepare(c, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: store: %s\n", err);
        if (c != NULL)
            conn_free(c);
        return NULL;
    }
    return c;
}

static void release(store_sqlite_t *s, conn_t *c)
{
    pthread_mutex_lock(&s->lock);
    c->next = s->idle;
    s->idle = c;
    pthread_mutex_unlock(&s->lock);
}

/* Takes a reset, bound-clean statement. */
static sqlite3_stmt *stmt(conn_t *c, int q)
{
    sqlite3_stmt *st = c->stmt[q];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

#define BIND_ID(st, i, v) sqlite3_bind_int64((st), (i), (sqlite3_int64)(v))
#define COL_ID(st, i) ((uint64_t)sqlite3_column_int64((st), (i)))

static int migrate(conn_t *c, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        goto Error;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    for (; version < NMIGRATIONS; version++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version=%d;", version + 1);
        if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, bump, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "sqlite migration %d: %s", version + 1, sqlite3_errmsg(c->db));
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return NATTER_EIO;
        }
    }
    return NATTER_OK;
Error:
    snprintf(err, errlen, "sqlite: %s", sqlite3_errmsg(c->db));
    return NATTER_EIO;
}

static int sq_open(natter_store_t *base, const natter_config_t *cfg, char *err, size_t errlen)
{
    store_sqlite_t *s = (store_sqlite_t *)base;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data dir %s: %s", cfg->data_dir, strerror(errno));
        return NATTER_EIO;
    }
    snprintf(s->path, sizeof(s->path), "%s/natter.db", cfg->data_dir);
    snprintf(s->sync, sizeof(s->sync), "%s", strcmp(cfg->sqlite_sync, "normal") == 0 ? "NORMAL" : "FULL");
    pthread_mutex_init(&s->lock, NULL);
    conn_t *c = conn_new(s, err, errlen);
    if (c == NULL)
        return NATTER_EIO;
    if (migrate(c, err, errlen) != NATTER_OK || conn_prepare(c, err, errlen) != NATTER_OK) {
        conn_free(c);
        pthread_mutex_destroy(&s->lock);
        return NATTER_EIO;
    }
    release(s, c);
    return NATTER_OK;
}

static void sq_close(natter_store_t *base)
{
    store_sqlite_t *s = (store_sqlite_t *)base;
    while (s->idle != NULL) {
        conn_t *c = s->idle;
        s->idle = c->next;
        conn_free(c);
    }
    pthread_mutex_destroy(&s->lock);
}

/* Runs a statement that returns no rows; resets it. */
static int exec_stmt(sqlite3_stmt *st)
{
    int rc = rc_of(sqlite3_step(st));
    sqlite3_reset(st);
    return rc;
}

#define WITH_CONN(s, c)                                                                                              \
    store_sqlite_t *s = (store_sqlite_t *)base;                                                                      \
    conn_t *c = acquire(s);                                                                                          \
    if (c == NULL)                                                                                                   \
        return NATTER_EUNAVAIL;

static int sq_ping(natter_store_t *base)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_PING);
    int rc = sqlite3_step(st) == SQLITE_ROW ? NATTER_OK : NATTER_EIO;
    sqlite3_reset(st);
    release(s, c);
    return rc;
}

static int sq_user_create(natter_store_t *base, const natter_user_t *u, int64_t now_ms)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_USER_INSERT);
    BIND_ID(st, 1, u->id);
    sqlite3_bind_text(st, 2, u->username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, u->pwhash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
    int rc = exec_stmt(st);
    release(s, c);
    return rc;
}

static int read_user(sqlite3_stmt *st, natter_user_t *out)
{
    int src = sqlite3_step(st);
    if (src != SQLITE_ROW) {
        sqlite3_reset(st);
        return src == SQLITE_DONE ? NATTER_ENOTFOUND : rc_of(src);
    }
    out->id = COL_ID(st, 0);
    snprintf(out->username, sizeof(out->username), "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(out->pwhash, sizeof(out->pwhash), "%s", (const char *)sqlite3_column_text(st, 2));
    out->expires_at_ms = sqlite3_column_count(st) > 3 ? sqlite3_column_int64(st, 3) : 0;
    sqlite3_reset(st);
    return NATTER_OK;
}

static int sq_user_by_name(natter_store_t *base, const char *username, natter_user_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_USER_BY_NAME);
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    int rc = read_user(st, out);
    release(s, c);
    return rc;
}

static int sq_user_by_id(natter_store_t *base, uint64_t id, natter_user_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_USER_BY_ID);
    BIND_ID(st, 1, id);
    int rc = read_user(st, out);
    release(s, c);
    return rc;
}

static int sq_session_create(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                             int64_t expires_at_ms)
{
    WITH_CONN(s, c);
    /* expired sessions go when new ones come: the table holds live sessions and recent ones */
    sqlite3_stmt *st = stmt(c, Q_SESSION_SWEEP);
    sqlite3_bind_int64(st, 1, natter_now_ms());
    int rc = exec_stmt(st);
    if (rc == NATTER_OK) {
        st = stmt(c, Q_SESSION_INSERT);
        sqlite3_bind_blob(st, 1, hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
        BIND_ID(st, 2, user_id);
        sqlite3_bind_int64(st, 3, expires_at_ms);
        rc = exec_stmt(st);
    }
    release(s, c);
    return rc;
}

static int sq_session_user(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                           natter_user_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_SESSION_USER);
    sqlite3_bind_blob(st, 1, hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = read_user(st, out);
    release(s, c);
    return rc;
}

static int sq_session_delete(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_SESSION_DELETE);
    sqlite3_bind_blob(st, 1, hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
    int rc = exec_stmt(st);
    release(s, c);
    return rc;
}

/* Ends the transaction: COMMIT when everything in it succeeded, else (or
 * when COMMIT itself fails) ROLLBACK, so a pooled connection is never left
 * inside a transaction. */
static int end_transaction(conn_t *c, int rc)
{
    if (rc == NATTER_OK && (rc = exec_stmt(stmt(c, Q_COMMIT))) == NATTER_OK)
        return rc;
    exec_stmt(stmt(c, Q_ROLLBACK));
    return rc;
}

static int sq_chat_create(natter_store_t *base, const natter_chat_t *chat, const uint64_t *members, size_t n)
{
    WITH_CONN(s, c);
    int rc = exec_stmt(stmt(c, Q_BEGIN));
    if (rc != NATTER_OK) {
        release(s, c);
        return rc;
    }
    sqlite3_stmt *st = stmt(c, Q_CHAT_INSERT);
    BIND_ID(st, 1, chat->id);
    sqlite3_bind_text(st, 2, chat->name, -1, SQLITE_STATIC);
    BIND_ID(st, 3, chat->created_by);
    sqlite3_bind_int64(st, 4, chat->created_at_ms);
    rc = exec_stmt(st);
    for (size_t i = 0; i < n && rc == NATTER_OK; i++) {
        st = stmt(c, Q_MEMBER_ADD);
        BIND_ID(st, 1, chat->id);
        BIND_ID(st, 2, members[i]);
        rc = exec_stmt(st);
    }
    rc = end_transaction(c, rc);
    release(s, c);
    return rc;
}

static int sq_chat_get(natter_store_t *base, uint64_t chat_id, natter_chat_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_CHAT_GET);
    BIND_ID(st, 1, chat_id);
    int src = sqlite3_step(st), rc = src == SQLITE_ROW ? NATTER_OK : src == SQLITE_DONE ? NATTER_ENOTFOUND : rc_of(src);
    if (rc == NATTER_OK) {
        out->id = COL_ID(st, 0);
        snprintf(out->name, sizeof(out->name), "%s", (const char *)sqlite3_column_text(st, 1));
        out->created_by = COL_ID(st, 2);
        out->created_at_ms = sqlite3_column_int64(st, 3);
    }
    sqlite3_reset(st);
    release(s, c);
    return rc;
}

static int sq_chat_member_ids(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MEMBER_IDS);
    BIND_ID(st, 1, chat_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        *(uint64_t *)natter_vec_push(out) = COL_ID(st, 0);
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

static int sq_chat_members(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MEMBERS);
    BIND_ID(st, 1, chat_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        natter_user_t *u = natter_vec_push(out);
        u->id = COL_ID(st, 0);
        snprintf(u->username, sizeof(u->username), "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

static int member_change(natter_store_t *base, int q, uint64_t chat_id, uint64_t user_id)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, q);
    BIND_ID(st, 1, chat_id);
    BIND_ID(st, 2, user_id);
    int rc = exec_stmt(st);
    if (rc == NATTER_OK && q == Q_MEMBER_REMOVE && sqlite3_changes(c->db) == 0)
        rc = NATTER_ENOTFOUND;
    release(s, c);
    return rc;
}

static int sq_member_add(natter_store_t *base, uint64_t chat_id, uint64_t user_id)
{
    return member_change(base, Q_MEMBER_ADD, chat_id, user_id);
}

static int sq_member_remove(natter_store_t *base, uint64_t chat_id, uint64_t user_id)
{
    return member_change(base, Q_MEMBER_REMOVE, chat_id, user_id);
}

/* Reads a message from columns first.. (id, chat_id, sender_id, content, created_at, client_id). */
static natter_msg_t *read_msg(sqlite3_stmt *st, int first)
{
    const char *content = (const char *)sqlite3_column_text(st, first + 3);
    size_t clen = (size_t)sqlite3_column_bytes(st, first + 3);
    const char *cid = (const char *)sqlite3_column_text(st, first + 5);
    size_t cidlen = cid ? (size_t)sqlite3_column_bytes(st, first + 5) : 0;
    natter_msg_t *m = natter_msg_new(COL_ID(st, first + 1), COL_ID(st, first + 2), content ? content : "", clen,
                                     cid ? cid : "", cidlen);
    m->id = COL_ID(st, first);
    m->created_at_ms = sqlite3_column_int64(st, first + 4);
    return m;
}

static int sq_user_chats(natter_store_t *base, uint64_t user_id, natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_USER_CHATS);
    BIND_ID(st, 1, user_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        natter_chat_summary_t *cs = natter_vec_push(out);
        cs->chat.id = COL_ID(st, 0);
        snprintf(cs->chat.name, sizeof(cs->chat.name), "%s", (const char *)sqlite3_column_text(st, 1));
        cs->chat.created_by = COL_ID(st, 2);
        cs->chat.created_at_ms = sqlite3_column_int64(st, 3);
        cs->unread = (uint64_t)sqlite3_column_int64(st, 4);
        if (sqlite3_column_type(st, 5) != SQLITE_NULL)
            cs->last = read_msg(st, 5);
    }
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

static int sq_messages_insert(natter_store_t *base, natter_msg_t *head, size_t n)
{
    (void)n;
    WITH_CONN(s, c);
    int rc = exec_stmt(stmt(c, Q_BEGIN));
    if (rc != NATTER_OK) {
        release(s, c);
        return rc;
    }
    sqlite3_stmt *st = c->stmt[Q_MESSAGE_INSERT];
    for (natter_msg_t *m = head; m != NULL && rc == NATTER_OK; m = m->next) {
        sqlite3_reset(st);
        BIND_ID(st, 1, m->id);
        BIND_ID(st, 2, m->chat_id);
        BIND_ID(st, 3, m->sender_id);
        sqlite3_bind_text(st, 4, m->content, (int)m->content_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, m->created_at_ms);
        if (m->client_id_len > 0)
            sqlite3_bind_text(st, 6, m->client_id, (int)m->client_id_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 6);
        rc = exec_stmt(st);
    }
    rc = end_transaction(c, rc);
    release(s, c);
    return rc;
}

static int sq_messages_page(natter_store_t *base, uint64_t chat_id, uint64_t after, uint64_t before,
                            uint32_t limit, natter_vec_t *out, int *has_more)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st;
    int src;
    uint64_t upper = before == NATTER_CURSOR_NONE ? (uint64_t)INT64_MAX : before;
    if (after != NATTER_CURSOR_NONE) {
        st = stmt(c, Q_PAGE_AFTER);
        BIND_ID(st, 1, chat_id);
        BIND_ID(st, 2, after);
        BIND_ID(st, 3, upper);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)limit + 1);
    } else {
        st = stmt(c, Q_PAGE_BEFORE);
        BIND_ID(st, 1, chat_id);
        BIND_ID(st, 2, upper);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit + 1);
    }
    size_t first = out->len, taken = 0;
    *has_more = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (taken == limit) {
            *has_more = 1;
            continue;
        }
        *(natter_msg_t **)natter_vec_push(out) = read_msg(st, 0);
        taken++;
    }
    sqlite3_reset(st);
    release(s, c);
    if (after == NATTER_CURSOR_NONE && taken > 1) { /* fetched newest first: turn the page ascending */
        natter_msg_t **m = (natter_msg_t **)out->items + first;
        for (size_t i = 0, j = taken; i + 1 < j; i++, j--) {
            natter_msg_t *t = m[i];
            m[i] = m[j - 1];
            m[j - 1] = t;
        }
    }
    return rc_of(src);
}

static int sq_message_in_chat(natter_store_t *base, uint64_t chat_id, uint64_t message_id)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MESSAGE_IN_CHAT);
    BIND_ID(st, 1, message_id);
    BIND_ID(st, 2, chat_id);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    release(s, c);
    return src == SQLITE_ROW ? NATTER_OK : src == SQLITE_DONE ? NATTER_ENOTFOUND : rc_of(src);
}

static int sq_read_marker_advance(natter_store_t *base, uint64_t user_id, uint64_t chat_id, uint64_t message_id)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MARKER_ADVANCE);
    BIND_ID(st, 1, user_id);
    BIND_ID(st, 2, chat_id);
    BIND_ID(st, 3, message_id);
    int rc = exec_stmt(st);
    release(s, c);
    return rc;
}

/* Another holder's lease that has not expired blocks an acquire; the check
 * and the take are one transaction. */
static int lease_acquire(conn_t *c, uint32_t node_id, const char *holder, int64_t expires, int64_t now)
{
    int rc = exec_stmt(stmt(c, Q_BEGIN));
    if (rc != NATTER_OK)
        return rc;
    sqlite3_stmt *get = stmt(c, Q_LEASE_GET);
    sqlite3_bind_int64(get, 1, node_id);
    int src = sqlite3_step(get);
    if (src == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(get, 0), holder) != 0 &&
        sqlite3_column_int64(get, 1) > now)
        rc = NATTER_ECONFLICT;
    else if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = rc_of(src);
    sqlite3_reset(get);
    if (rc == NATTER_OK) {
        sqlite3_stmt *put = stmt(c, Q_LEASE_PUT);
        sqlite3_bind_int64(put, 1, node_id);
        sqlite3_bind_text(put, 2, holder, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 3, expires);
        rc = exec_stmt(put);
    }
    return end_transaction(c, rc);
}

static int sq_node_lease(natter_store_t *base, uint32_t node_id, const char *holder, uint32_t ttl_ms,
                         natter_lease_op_t op)
{
    WITH_CONN(s, c);
    int64_t now = natter_now_ms();
    int rc;
    if (op == NATTER_LEASE_ACQUIRE) {
        rc = lease_acquire(c, node_id, holder, now + ttl_ms, now);
    } else {
        sqlite3_stmt *st = stmt(c, op == NATTER_LEASE_RENEW ? Q_LEASE_RENEW : Q_LEASE_RELEASE);
        sqlite3_bind_int64(st, 1, node_id);
        sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
        if (op == NATTER_LEASE_RENEW)
            sqlite3_bind_int64(st, 3, now + ttl_ms);
        rc = exec_stmt(st);
        if (rc == NATTER_OK && op == NATTER_LEASE_RENEW && sqlite3_changes(c->db) == 0)
            rc = NATTER_ECONFLICT;
    }
    release(s, c);
    return rc;
}

const natter_store_ops_t natter_store_sqlite = {
    .version = 3,
    .size = sizeof(store_sqlite_t),
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .ping = sq_ping,
    .user_create = sq_user_create,
    .user_by_name = sq_user_by_name,
    .user_by_id = sq_user_by_id,
    .session_create = sq_session_create,
    .session_user = sq_session_user,
    .session_delete = sq_session_delete,
    .chat_create = sq_chat_create,
    .chat_get = sq_chat_get,
    .chat_member_ids = sq_chat_member_ids,
    .chat_members = sq_chat_members,
    .member_add = sq_member_add,
    .member_remove = sq_member_remove,
    .user_chats = sq_user_chats,
    .messages_insert = sq_messages_insert,
    .messages_page = sq_messages_page,
    .message_in_chat = sq_message_in_chat,
    .read_marker_advance = sq_read_marker_advance,
    .node_lease = sq_node_lease,
};
