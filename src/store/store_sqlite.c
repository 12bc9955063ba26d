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
 *
 * The consumer's batches are written apart from their sync (store.h,
 * records_write_unsynced and records_sync): one connection, the writer,
 * commits with synchronous=NORMAL (in WAL mode: no sync at commit), and
 * records_sync then flushes the WAL file with one fdatasync of its own fd
 * (fsync flushes a file, whichever fd names it). What a batch's posters
 * are told waits for that flush, so it promises what FULL does; meanwhile
 * the next batch commits, and one flush covers every commit before it.
 * The WAL is one file for the store's whole life: SQLite deletes it only
 * when the last connection closes, and the writer stays open until then;
 * a checkpoint syncs the WAL before and the database after copying.
 */
#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    /* 2: node id leases */
    "CREATE TABLE node_leases (node_id INTEGER PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);",
    /* 3: client_id claims (content only when claimed before the message was stored), WebSocket tickets */
    "CREATE TABLE client_ids (sender_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, client_id TEXT NOT NULL,"
    "  message_id INTEGER NOT NULL, created_at INTEGER NOT NULL, content TEXT, claimed_at INTEGER NOT NULL,"
    "  PRIMARY KEY (sender_id, chat_id, client_id)) WITHOUT ROWID;"
    "CREATE INDEX client_ids_by_age ON client_ids (claimed_at);"
    "CREATE TABLE ws_tickets (ticket_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    "  WITHOUT ROWID;",
    /* 4: the chat's events. edit_id is the last edit or delete applied to
     * a message (an older edit never overwrites a newer one); events holds
     * every event applied, once each by id (what makes a redelivered event
     * change nothing) and is what GET /chats/{id}/events reads. */
    "ALTER TABLE messages ADD COLUMN edited_at INTEGER;"
    "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN edit_id INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE events (id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL, kind INTEGER NOT NULL,"
    "  message_id INTEGER NOT NULL, user_id INTEGER NOT NULL, emoji TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX events_by_chat ON events (chat_id, id);"
    "CREATE TABLE reactions (message_id INTEGER NOT NULL, emoji TEXT NOT NULL, user_id INTEGER NOT NULL,"
    "  chat_id INTEGER NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (message_id, emoji, user_id)) WITHOUT ROWID;"
    "CREATE INDEX read_markers_by_chat ON read_markers (chat_id, user_id);",
    /* 5: a ticket's session, which the WebSocket it opens ends with */
    ("ALTER TABLE ws_tickets ADD COLUMN session_hash BLOB;"
     "ALTER TABLE ws_tickets ADD COLUMN session_expires INTEGER NOT NULL DEFAULT 0;"),
    /* 6: an event kept (for its id) that changed nothing is not listed */
    "ALTER TABLE events ADD COLUMN applied INTEGER NOT NULL DEFAULT 1;",
    /* 7: a history page's reactions are read from its chat's alone (by the
     * primary key, which starts with the message id, every chat's reactions
     * in the page's id range were read) */
    "CREATE INDEX reactions_by_chat ON reactions (chat_id, message_id);",
};
#define NMIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

/* A batch's messages go 32 rows to a statement (then 8 to one): one step
 * runs the insert's cursors and constraint checks over all of them, where
 * one statement a row opens them again for each (a sixth to a fifth of the
 * store thread's CPU a message;
 * bench/results/2026-12-08-multirow-insert.txt). */
#define ROW "(?,?,?,?,?,?)"
#define ROWS8 ROW "," ROW "," ROW "," ROW "," ROW "," ROW "," ROW "," ROW
#define ROWS32 ROWS8 "," ROWS8 "," ROWS8 "," ROWS8

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
    Q_MESSAGE_INSERT_8,
    Q_MESSAGE_INSERT_32,
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
    Q_CLAIM,
    Q_CLAIM_GET,
    Q_CLAIM_SWEEP,
    Q_TICKET_INSERT,
    Q_TICKET_TAKE,
    Q_TICKET_SWEEP,
    Q_EVENT_RECORD,
    Q_EVENT_UNAPPLIED,
    Q_MESSAGE_DELETED,
    Q_EDIT_APPLY,
    Q_DELETE_APPLY,
    Q_REACTIONS_DROP,
    Q_REACTION_ADD,
    Q_REACTION_REMOVE,
    Q_MESSAGE_GET,
    Q_REACTIONS_RANGE,
    Q_EVENTS_AFTER,
    Q_EVENTS_BEFORE,
    Q_READ_MARKERS,
    Q_USER_CHAT_IDS,
    Q_MAX_ID,
    NQUERIES
};

#define MSG_COLS "id, chat_id, sender_id, content, created_at, client_id, edited_at, deleted"
/* an event and, for an edit, its message as it is now */
#define EVENT_COLS                                                                                                   \
    "e.id, e.kind, e.message_id, e.user_id, e.emoji, e.created_at, m.content, m.client_id, m.edited_at, m.deleted" \
    " FROM events e LEFT JOIN messages m ON m.id = e.message_id AND e.kind = 1"

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
    /* the page's chats by activity first (an index lookup each), then the
     * summaries of those alone; ?3 is the page's limit and one more */
    [Q_USER_CHATS] =
        "SELECT c.id, c.name, c.created_by, c.created_at,"
        " (SELECT count(*) FROM (SELECT 1 FROM messages x WHERE x.chat_id = c.id AND x.sender_id <> ?1"
        "   AND x.id > coalesce(r.message_id, 0) LIMIT " NATTER_STR(NATTER_UNREAD_MAX) ")), coalesce(r.message_id, 0),"
        " l.id, l.chat_id, l.sender_id, l.content, l.created_at, l.client_id, l.edited_at, l.deleted, p.act"
        " FROM (SELECT cid, act FROM (SELECT m.chat_id AS cid, max(m.chat_id, coalesce((SELECT max(id) FROM messages y"
        "         WHERE y.chat_id = m.chat_id), 0)) AS act FROM members m WHERE m.user_id = ?1)"
        "       WHERE act < ?2 ORDER BY act DESC LIMIT ?3) p"
        " JOIN chats c ON c.id = p.cid"
        " LEFT JOIN read_markers r ON r.user_id = ?1 AND r.chat_id = c.id"
        " LEFT JOIN messages l ON l.id = (SELECT max(id) FROM messages y WHERE y.chat_id = c.id)"
        " ORDER BY p.act DESC",
    [Q_MESSAGE_INSERT] = "INSERT OR IGNORE INTO messages (id, chat_id, sender_id, content, created_at, client_id)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_MESSAGE_INSERT_8] = "INSERT OR IGNORE INTO messages (id, chat_id, sender_id, content, created_at, client_id)"
                           " VALUES " ROWS8,
    [Q_MESSAGE_INSERT_32] = "INSERT OR IGNORE INTO messages (id, chat_id, sender_id, content, created_at, client_id)"
                            " VALUES " ROWS32,
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
    /* a claim older than the client_id window is taken over as if absent */
    [Q_CLAIM] = "INSERT INTO client_ids (sender_id, chat_id, client_id, message_id, created_at, content, claimed_at)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (sender_id, chat_id, client_id) DO UPDATE SET"
                " message_id = excluded.message_id, created_at = excluded.created_at, content = excluded.content,"
                " claimed_at = excluded.claimed_at WHERE client_ids.claimed_at <= ?8",
    [Q_CLAIM_GET] = "SELECT message_id, created_at, content FROM client_ids"
                    " WHERE sender_id = ?1 AND chat_id = ?2 AND client_id = ?3",
    [Q_CLAIM_SWEEP] = "DELETE FROM client_ids WHERE claimed_at <= ?1",
    [Q_TICKET_INSERT] = "INSERT INTO ws_tickets (ticket_hash, user_id, expires_at, session_hash, session_expires)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_TICKET_TAKE] =
        "DELETE FROM ws_tickets WHERE ticket_hash = ?1 RETURNING user_id, expires_at, session_hash, session_expires",
    [Q_TICKET_SWEEP] = "DELETE FROM ws_tickets WHERE expires_at <= ?1",
    [Q_EVENT_RECORD] = "INSERT OR IGNORE INTO events (id, chat_id, kind, message_id, user_id, emoji, created_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_EVENT_UNAPPLIED] = "UPDATE events SET applied = 0 WHERE id = ?1",
    [Q_MESSAGE_DELETED] = "SELECT deleted FROM messages WHERE id = ?1 AND chat_id = ?2",
    [Q_EDIT_APPLY] = "UPDATE messages SET content = ?1, edited_at = ?2, edit_id = ?3"
                     " WHERE id = ?4 AND chat_id = ?5 AND sender_id = ?6 AND deleted = 0 AND edit_id < ?3",
    [Q_DELETE_APPLY] = "UPDATE messages SET content = '', client_id = NULL, edited_at = NULL, deleted = 1,"
                       " edit_id = ?1 WHERE id = ?2 AND chat_id = ?3 AND sender_id = ?4 AND deleted = 0",
    [Q_REACTIONS_DROP] = "DELETE FROM reactions WHERE message_id = ?1",
    [Q_REACTION_ADD] = "INSERT OR IGNORE INTO reactions (message_id, emoji, user_id, chat_id, event_id)"
                       " SELECT ?1, ?2, ?3, ?4, ?5 FROM messages WHERE id = ?1 AND chat_id = ?4 AND deleted = 0",
    [Q_REACTION_REMOVE] = "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3 AND chat_id = ?4",
    [Q_MESSAGE_GET] = "SELECT " MSG_COLS " FROM messages WHERE id = ?1 AND chat_id = ?2",
    [Q_REACTIONS_RANGE] = "SELECT message_id, emoji, user_id FROM reactions"
                          " WHERE message_id >= ?2 AND message_id <= ?3 AND chat_id = ?1"
                          " ORDER BY message_id, emoji, user_id",
    [Q_EVENTS_AFTER] = "SELECT " EVENT_COLS " WHERE e.chat_id = ?1 AND e.id > ?2 AND e.id < ?3 AND e.applied = 1"
                       " ORDER BY e.id ASC LIMIT ?4",
    [Q_EVENTS_BEFORE] = "SELECT " EVENT_COLS " WHERE e.chat_id = ?1 AND e.id < ?2 AND e.applied = 1"
                        " ORDER BY e.id DESC LIMIT ?3",
    [Q_READ_MARKERS] = "SELECT r.user_id, r.message_id FROM read_markers r"
                       " JOIN members m ON m.chat_id = r.chat_id AND m.user_id = r.user_id WHERE r.chat_id = ?1",
    [Q_USER_CHAT_IDS] = "SELECT chat_id FROM members WHERE user_id = ?1",
    /* each the last row of its table's b-tree: four page reads */
    [Q_MAX_ID] = "SELECT max(coalesce((SELECT max(id) FROM messages), 0), coalesce((SELECT max(id) FROM events), 0),"
                 " coalesce((SELECT max(id) FROM users), 0), coalesce((SELECT max(id) FROM chats), 0))",
};

typedef struct conn {
    struct conn *next;
    _Atomic int *count; /* the store's count of connections, this one in it */
    sqlite3 *db;
    sqlite3_stmt *stmt[NQUERIES];
} conn_t;

typedef struct {
    natter_store_t base;
    char path[600];
    char sync[8];
    pthread_mutex_t lock;
    conn_t *idle;
    pthread_mutex_t write_lock; /* one write transaction of this process at a time (see begin_transaction) */
    conn_t *writer;             /* records_write_unsynced's, synchronous=NORMAL; used under write_lock */
    int wal_fd;                 /* records_sync's: the WAL file, opened with the store (open_wal); -1 before */
    _Atomic int connections;    /* open, idle or in use (the pool makes one whenever none is idle) */
    _Atomic int64_t claims_swept_ms; /* when expired client_id claims were last deleted */
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
    atomic_fetch_sub(c->count, 1);
    free(c);
}

/* SQLite stays in its rollback journal, saying nothing, where WAL cannot
 * be had; the store's readers beside its writer and its batches' sync
 * (records_sync flushes the WAL file) count on WAL. */
static int in_wal_mode(sqlite3 *db)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK)
        return 0;
    int wal = sqlite3_step(st) == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    return wal;
}

static conn_t *conn_new(store_sqlite_t *s, const char *sync, char *err, size_t errlen)
{
    conn_t *c = xcalloc(1, sizeof(*c));
    c->count = &s->connections;
    atomic_fetch_add(c->count, 1);
    /* secure_delete: a deleted message's words are overwritten in the file,
     * not left in its page's free space (Debian builds SQLite so by default;
     * said here so that every build does) */
    char pragmas[192];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF; PRAGMA busy_timeout=5000;"
             " PRAGMA secure_delete=ON;",
             sync);
    if (sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(c->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite %s: %s", s->path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
        conn_free(c);
        return NULL;
    }
    if (!in_wal_mode(c->db)) {
        snprintf(err, errlen, "sqlite %s: cannot use WAL mode here (its file system must support shared memory)",
                 s->path);
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
    if ((c = conn_new(s, s->sync, err, sizeof(err))) == NULL || conn_prepare(c, err, sizeof(err)) != NATTER_OK) {
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

/* records_sync's descriptor of the WAL file, opened with the store (a node
 * out of descriptors can still sync), and a sync of the data directory,
 * which holds the WAL file's name (SQLite syncs it at the WAL's first sync
 * of its own, which NORMAL leaves to a checkpoint). No WAL file yet:
 * nothing was written to sync, and the first records_sync tries again. */
static int open_wal(store_sqlite_t *s, char *err, size_t errlen)
{
    char path[sizeof(s->path) + 4], dir[sizeof(s->path)];
    snprintf(path, sizeof(path), "%s-wal", s->path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return NATTER_OK;
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return NATTER_EIO;
    }
    snprintf(dir, sizeof(dir), "%s", s->path);
    *strrchr(dir, '/') = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "sync %s: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return NATTER_EIO;
    }
    close(dfd);
    s->wal_fd = fd;
    return NATTER_OK;
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
    s->wal_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->write_lock, NULL);
    conn_t *c = conn_new(s, s->sync, err, errlen);
    if (c == NULL)
        goto Error;
    if (migrate(c, err, errlen) != NATTER_OK || conn_prepare(c, err, errlen) != NATTER_OK ||
        (s->writer = conn_new(s, "NORMAL", err, errlen)) == NULL || conn_prepare(s->writer, err, errlen) != NATTER_OK)
        goto Error;
    if (strcmp(s->sync, "FULL") == 0 && open_wal(s, err, errlen) != NATTER_OK)
        goto Error;
    release(s, c);
    return NATTER_OK;
Error:
    if (s->writer != NULL)
        conn_free(s->writer);
    if (c != NULL)
        conn_free(c);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->write_lock);
    return NATTER_EIO;
}

static void sq_close(natter_store_t *base)
{
    store_sqlite_t *s = (store_sqlite_t *)base;
    while (s->idle != NULL) {
        conn_t *c = s->idle;
        s->idle = c->next;
        conn_free(c);
    }
    conn_free(s->writer);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->write_lock);
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

/* Starts a write transaction. This process's writers (the store consumer,
 * the claimer, the workers) queue on a mutex first: SQLite makes a writer
 * that finds the database locked sleep and retry (1, 2, 5, 10 ms and on),
 * which under a steady stream of batches costs tens of milliseconds, while
 * a mutex hands the lock over at once. Another process sharing the file
 * still meets SQLite's own lock (busy_timeout). */
static int begin_transaction(store_sqlite_t *s, conn_t *c)
{
    pthread_mutex_lock(&s->write_lock);
    int rc = exec_stmt(stmt(c, Q_BEGIN));
    if (rc != NATTER_OK)
        pthread_mutex_unlock(&s->write_lock);
    return rc;
}

/* Ends the transaction begun by begin_transaction: COMMIT when everything
 * in it succeeded, else (or when COMMIT itself fails) ROLLBACK, so a
 * pooled connection is never left inside a transaction. */
static int end_transaction(store_sqlite_t *s, conn_t *c, int rc)
{
    if (rc != NATTER_OK || (rc = exec_stmt(stmt(c, Q_COMMIT))) != NATTER_OK)
        exec_stmt(stmt(c, Q_ROLLBACK));
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

/* A token's row (a session or a WebSocket ticket: sweep and insert are
 * that table's), after the expired ones are swept: the table holds live
 * rows and recent ones. */
/* A session's row, or a ticket's (ticket set: its session too). */
static int token_row_insert(natter_store_t *base, int sweep, int insert, const uint8_t hash[NATTER_TOKEN_HASH_LEN],
                            uint64_t user_id, int64_t expires_at_ms, const natter_ticket_t *ticket)
{
    WITH_CONN(s, c);
    /* one transaction, one sync: in turn with the store's batches */
    int rc = begin_transaction(s, c);
    if (rc != NATTER_OK) {
        release(s, c);
        return rc;
    }
    sqlite3_stmt *st = stmt(c, sweep);
    sqlite3_bind_int64(st, 1, natter_now_ms());
    rc = exec_stmt(st);
    if (rc == NATTER_OK) {
        st = stmt(c, insert);
        sqlite3_bind_blob(st, 1, hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
        BIND_ID(st, 2, user_id);
        sqlite3_bind_int64(st, 3, expires_at_ms);
        if (ticket != NULL) {
            sqlite3_bind_blob(st, 4, ticket->session_hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, ticket->session_expires_at_ms);
        }
        rc = exec_stmt(st);
    }
    rc = end_transaction(s, c, rc);
    release(s, c);
    return rc;
}

static int sq_session_create(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                             int64_t expires_at_ms)
{
    return token_row_insert(base, Q_SESSION_SWEEP, Q_SESSION_INSERT, hash, user_id, expires_at_ms, NULL);
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

static int sq_chat_create(natter_store_t *base, const natter_chat_t *chat, const uint64_t *members, size_t n)
{
    WITH_CONN(s, c);
    int rc = begin_transaction(s, c);
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
    rc = end_transaction(s, c, rc);
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

/* Column 0 of every row of statement q run with one id (uint64_t items). */
static int select_ids(natter_store_t *base, int q, uint64_t key, natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, q);
    BIND_ID(st, 1, key);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW)
        *(uint64_t *)natter_vec_push(out) = COL_ID(st, 0);
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

static int sq_chat_member_ids(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    return select_ids(base, Q_MEMBER_IDS, chat_id, out);
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
    if (rc == NATTER_OK && sqlite3_changes(c->db) == 0)
        rc = q == Q_MEMBER_REMOVE ? NATTER_ENOTFOUND : NATTER_ECONFLICT;
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

/* Reads a message from columns first.. (MSG_COLS). */
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
    m->edited_at_ms = sqlite3_column_int64(st, first + 6); /* NULL reads as 0: never edited */
    m->deleted = sqlite3_column_int(st, first + 7) != 0;
    return m;
}

static int sq_user_chats(natter_store_t *base, uint64_t user_id, uint64_t before, uint32_t limit, natter_vec_t *out,
                         uint64_t *next)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_USER_CHATS);
    BIND_ID(st, 1, user_id);
    sqlite3_bind_int64(st, 2, before > INT64_MAX ? INT64_MAX : (int64_t)before);
    sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
    int src;
    uint64_t act = 0;
    *next = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->len == limit) { /* the one more: a next page */
            *next = act;
            continue;
        }
        act = COL_ID(st, 14);
        natter_chat_summary_t *cs = natter_vec_push(out);
        cs->chat.id = COL_ID(st, 0);
        snprintf(cs->chat.name, sizeof(cs->chat.name), "%s", (const char *)sqlite3_column_text(st, 1));
        cs->chat.created_by = COL_ID(st, 2);
        cs->chat.created_at_ms = sqlite3_column_int64(st, 3);
        cs->unread = (uint64_t)sqlite3_column_int64(st, 4);
        cs->read = COL_ID(st, 5);
        if (sqlite3_column_type(st, 6) != SQLITE_NULL)
            cs->last = read_msg(st, 6);
    }
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

/* Binds one message row at parameters at+1 .. at+6 of st. */
static void bind_message(sqlite3_stmt *st, int at, uint64_t id, const natter_msg_t *m, const char *content,
                         size_t content_len, int64_t created_at_ms)
{
    BIND_ID(st, at + 1, id);
    BIND_ID(st, at + 2, m->chat_id);
    BIND_ID(st, at + 3, m->sender_id);
    sqlite3_bind_text(st, at + 4, content, (int)content_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, at + 5, created_at_ms);
    if (m->client_id_len > 0)
        sqlite3_bind_text(st, at + 6, m->client_id, (int)m->client_id_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, at + 6);
}

/* Binds and runs the message insert (ignored when the id is stored already). */
static int insert_message(conn_t *c, uint64_t id, const natter_msg_t *m, const char *content, size_t content_len,
                          int64_t created_at_ms)
{
    sqlite3_stmt *st = c->stmt[Q_MESSAGE_INSERT];
    sqlite3_reset(st);
    bind_message(st, 0, id, m, content, content_len, created_at_ms);
    return exec_stmt(st);
}

/* Inserts the n messages linked from *m under their own ids, 32 or 8 to a
 * statement while that many are left, and moves *m past them. */
static int insert_run(conn_t *c, natter_msg_t **m, size_t n)
{
    int rc = NATTER_OK;
    while (n > 0 && rc == NATTER_OK) {
        size_t rows = n >= 32 ? 32 : n >= 8 ? 8 : 1;
        int q = rows == 32 ? Q_MESSAGE_INSERT_32 : rows == 8 ? Q_MESSAGE_INSERT_8 : Q_MESSAGE_INSERT;
        sqlite3_stmt *st = c->stmt[q];
        sqlite3_reset(st);
        for (size_t i = 0; i < rows; i++, *m = (*m)->next)
            bind_message(st, (int)i * 6, (*m)->id, *m, (*m)->content, (*m)->content_len, (*m)->created_at_ms);
        rc = exec_stmt(st);
        n -= rows;
    }
    return rc;
}

static int sq_messages_insert(natter_store_t *base, natter_msg_t *head, size_t n)
{
    (void)n;
    WITH_CONN(s, c);
    int rc = begin_transaction(s, c);
    if (rc != NATTER_OK) {
        release(s, c);
        return rc;
    }
    size_t len = 0;
    for (natter_msg_t *m = head; m != NULL; m = m->next)
        len++;
    rc = insert_run(c, &head, len);
    rc = end_transaction(s, c, rc);
    release(s, c);
    return rc;
}

/* ------------------------------------------------------------ client_id claims */

#define CLAIM_SWEEP_EVERY_MS 60000

/* The holder of a claim, as its row has it. */
typedef struct {
    uint64_t id;
    int64_t created_at_ms;
    char *content; /* malloc'd; NULL when the claim was made with its message stored */
    size_t content_len;
} claim_t;

/* Deletes the claims past the client_id window, at most once a minute (on
 * whichever connection and transaction comes first). */
static int sweep_claims(store_sqlite_t *s, conn_t *c, int64_t now_ms)
{
    int64_t last = atomic_load(&s->claims_swept_ms);
    if (now_ms - last < CLAIM_SWEEP_EVERY_MS || !atomic_compare_exchange_strong(&s->claims_swept_ms, &last, now_ms))
        return NATTER_OK;
    sqlite3_stmt *st = stmt(c, Q_CLAIM_SWEEP);
    sqlite3_bind_int64(st, 1, now_ms - NATTER_CLIENT_ID_TTL_MS);
    return exec_stmt(st);
}

static void bind_claim_key(sqlite3_stmt *st, const natter_msg_t *m)
{
    BIND_ID(st, 1, m->sender_id);
    BIND_ID(st, 2, m->chat_id);
    sqlite3_bind_text(st, 3, m->client_id, (int)m->client_id_len, SQLITE_STATIC);
}

/* Claims m's key on c, with m's content or (with_content 0: m is stored in
 * the same transaction) without; then reads who holds it: 0 and *held
 * (held->id == m->id: the claim is m's), or a NATTER_E* code. */
static int claim_on(conn_t *c, const natter_msg_t *m, int with_content, int64_t now_ms, claim_t *held)
{
    sqlite3_stmt *st = stmt(c, Q_CLAIM);
    bind_claim_key(st, m);
    BIND_ID(st, 4, m->id);
    sqlite3_bind_int64(st, 5, m->created_at_ms);
    if (with_content)
        sqlite3_bind_text(st, 6, m->content, (int)m->content_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, now_ms);
    sqlite3_bind_int64(st, 8, now_ms - NATTER_CLIENT_ID_TTL_MS);
    int rc = exec_stmt(st);
    if (rc != NATTER_OK)
        return rc;
    st = stmt(c, Q_CLAIM_GET);
    bind_claim_key(st, m);
    int src = sqlite3_step(st);
    if (src != SQLITE_ROW) { /* the row written or kept just now is gone: only a broken database does that */
        sqlite3_reset(st);
        return src == SQLITE_DONE ? NATTER_EIO : rc_of(src);
    }
    held->id = COL_ID(st, 0);
    held->created_at_ms = sqlite3_column_int64(st, 1);
    held->content = NULL;
    held->content_len = 0;
    if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
        held->content_len = (size_t)sqlite3_column_bytes(st, 2);
        held->content = xstrndup((const char *)sqlite3_column_text(st, 2), held->content_len);
    }
    sqlite3_reset(st);
    return NATTER_OK;
}

/* The batch in one transaction: one fsync for all its claims. The holders
 * are made only once it committed. */
static int sq_client_ids_claim(natter_store_t *base, natter_msg_t *const *msgs, size_t n, int64_t now_ms, int *rc,
                               natter_msg_t **holders)
{
    WITH_CONN(s, c);
    claim_t *held = xcalloc(n ? n : 1, sizeof(*held));
    int all = begin_transaction(s, c);
    if (all == NATTER_OK) {
        all = sweep_claims(s, c, now_ms);
        for (size_t i = 0; i < n && all == NATTER_OK; i++)
            all = claim_on(c, msgs[i], 1, now_ms, &held[i]);
        all = end_transaction(s, c, all);
    }
    release(s, c);
    for (size_t i = 0; i < n; i++) {
        const natter_msg_t *m = msgs[i];
        rc[i] = all != NATTER_OK ? all : held[i].id == m->id ? NATTER_OK : NATTER_ECONFLICT;
        if (rc[i] == NATTER_ECONFLICT) {
            holders[i] = natter_msg_new(m->chat_id, m->sender_id, held[i].content ? held[i].content : "",
                                        held[i].content_len, m->client_id, m->client_id_len);
            holders[i]->id = held[i].id;
            holders[i]->created_at_ms = held[i].created_at_ms;
        }
        free(held[i].content);
    }
    free(held);
    return all;
}

/* A message of the batch that turned out to repeat another's client_id: it
 * becomes that message once the transaction committed. */
typedef struct {
    natter_msg_t *m;
    uint64_t id;
    int64_t created_at_ms;
} repeat_t;

/* ------------------------------------------------------------ WebSocket tickets */

static int sq_ticket_create(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], const natter_ticket_t *t,
                            int64_t expires_at_ms)
{
    return token_row_insert(base, Q_TICKET_SWEEP, Q_TICKET_INSERT, hash, t->user_id, expires_at_ms, t);
}

/* One statement deletes and returns the row: of two takes, one finds it. */
static int sq_ticket_take(natter_store_t *base, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                          natter_ticket_t *t)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_TICKET_TAKE);
    sqlite3_bind_blob(st, 1, hash, NATTER_TOKEN_HASH_LEN, SQLITE_STATIC);
    int src = sqlite3_step(st), rc;
    if (src == SQLITE_ROW) {
        memset(t, 0, sizeof(*t));
        t->user_id = COL_ID(st, 0);
        rc = sqlite3_column_int64(st, 1) > now_ms ? NATTER_OK : NATTER_ENOTFOUND;
        const void *session = sqlite3_column_blob(st, 2);
        if (session != NULL && sqlite3_column_bytes(st, 2) == NATTER_TOKEN_HASH_LEN)
            memcpy(t->session_hash, session, NATTER_TOKEN_HASH_LEN);
        t->session_expires_at_ms = sqlite3_column_int64(st, 3);
        src = sqlite3_step(st); /* to the end: the delete commits */
    } else {
        rc = NATTER_ENOTFOUND;
    }
    if (src != SQLITE_DONE)
        rc = rc_of(src);
    sqlite3_reset(st);
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
    if (after == NATTER_CURSOR_NONE) /* fetched newest first: turn the page ascending */
        natter_store_page_reverse(out, first);
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
    if (rc == NATTER_OK && sqlite3_changes(c->db) == 0) /* the upsert's WHERE: not later than the marker */
        rc = NATTER_ECONFLICT;
    release(s, c);
    return rc;
}

/* Another holder's lease that has not expired blocks an acquire; the check
 * and the take are one transaction. */
static int lease_acquire(store_sqlite_t *s, conn_t *c, uint32_t node_id, const char *holder, int64_t expires,
                         int64_t now)
{
    int rc = begin_transaction(s, c);
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
    return end_transaction(s, c, rc);
}

static int sq_node_lease(natter_store_t *base, uint32_t node_id, const char *holder, uint32_t ttl_ms,
                         natter_lease_op_t op)
{
    WITH_CONN(s, c);
    int64_t now = natter_now_ms();
    int rc;
    if (op == NATTER_LEASE_ACQUIRE) {
        rc = lease_acquire(s, c, node_id, holder, now + ttl_ms, now);
    } else if ((rc = begin_transaction(s, c)) == NATTER_OK) {
        /* in turn with the batches (begin_transaction): a write of its own
         * would meet the consumer's lock and sleep in SQLite's busy handler,
         * or make the consumer sleep there */
        sqlite3_stmt *st = stmt(c, op == NATTER_LEASE_RENEW ? Q_LEASE_RENEW : Q_LEASE_RELEASE);
        sqlite3_bind_int64(st, 1, node_id);
        sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
        if (op == NATTER_LEASE_RENEW)
            sqlite3_bind_int64(st, 3, now + ttl_ms);
        rc = exec_stmt(st);
        if (rc == NATTER_OK && op == NATTER_LEASE_RENEW && sqlite3_changes(c->db) == 0)
            rc = NATTER_ECONFLICT;
        rc = end_transaction(s, c, rc);
    }
    release(s, c);
    return rc;
}

/* ---- version 5: the chat's events ---------------------------------------- */

/* Records the event; *fresh is 0 when it was recorded before (applied then). */
static int record_event(conn_t *c, const natter_msg_t *e, int *fresh)
{
    int react = e->kind == NATTER_EV_REACT_ADD || e->kind == NATTER_EV_REACT_REMOVE;
    sqlite3_stmt *st = stmt(c, Q_EVENT_RECORD);
    BIND_ID(st, 1, e->id);
    BIND_ID(st, 2, e->chat_id);
    sqlite3_bind_int(st, 3, e->kind);
    BIND_ID(st, 4, e->target_id);
    BIND_ID(st, 5, e->sender_id);
    if (react)
        sqlite3_bind_text(st, 6, e->content, (int)e->content_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, e->created_at_ms);
    int rc = exec_stmt(st);
    *fresh = rc == NATTER_OK && sqlite3_changes(c->db) > 0;
    return rc;
}

/* 1 when the chat's message is there and not deleted. */
static int message_alive(conn_t *c, uint64_t chat_id, uint64_t message_id, int *alive)
{
    sqlite3_stmt *st = stmt(c, Q_MESSAGE_DELETED);
    BIND_ID(st, 1, message_id);
    BIND_ID(st, 2, chat_id);
    int src = sqlite3_step(st);
    *alive = src == SQLITE_ROW && sqlite3_column_int(st, 0) == 0;
    sqlite3_reset(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? NATTER_OK : rc_of(src);
}

/* Applies one event seen for the first time; e->unapplied says when it
 * changed nothing (a check at request time that a later event overtook,
 * or a repeat sent at once). */
static int apply_event(conn_t *c, natter_msg_t *e)
{
    sqlite3_stmt *st;
    int rc, alive;
    e->unapplied = NATTER_APPLIED;
    switch (e->kind) {
    case NATTER_EV_EDIT:
        st = stmt(c, Q_EDIT_APPLY);
        sqlite3_bind_text(st, 1, e->content, (int)e->content_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, e->created_at_ms);
        BIND_ID(st, 3, e->id);
        BIND_ID(st, 4, e->target_id);
        BIND_ID(st, 5, e->chat_id);
        BIND_ID(st, 6, e->sender_id);
        if ((rc = exec_stmt(st)) != NATTER_OK || sqlite3_changes(c->db) > 0)
            return rc;
        /* deleted (the sender was checked), or a newer edit is there (of
         * two nodes' edits in one partition, the later in the log may have
         * the smaller id) */
        if ((rc = message_alive(c, e->chat_id, e->target_id, &alive)) == NATTER_OK)
            e->unapplied = alive ? NATTER_UNAPPLIED_SAME : NATTER_UNAPPLIED_GONE;
        return rc;
    case NATTER_EV_DELETE:
        st = stmt(c, Q_DELETE_APPLY);
        BIND_ID(st, 1, e->id);
        BIND_ID(st, 2, e->target_id);
        BIND_ID(st, 3, e->chat_id);
        BIND_ID(st, 4, e->sender_id);
        rc = exec_stmt(st);
        if (rc != NATTER_OK || sqlite3_changes(c->db) == 0) {
            e->unapplied = NATTER_UNAPPLIED_SAME; /* deleted already: its reactions are gone */
            return rc;
        }
        st = stmt(c, Q_REACTIONS_DROP);
        BIND_ID(st, 1, e->target_id);
        return exec_stmt(st);
    case NATTER_EV_REACT_ADD:
    case NATTER_EV_REACT_REMOVE:
        st = stmt(c, e->kind == NATTER_EV_REACT_ADD ? Q_REACTION_ADD : Q_REACTION_REMOVE);
        BIND_ID(st, 1, e->target_id);
        sqlite3_bind_text(st, 2, e->content, (int)e->content_len, SQLITE_STATIC);
        BIND_ID(st, 3, e->sender_id);
        BIND_ID(st, 4, e->chat_id);
        if (e->kind == NATTER_EV_REACT_ADD)
            BIND_ID(st, 5, e->id);
        if ((rc = exec_stmt(st)) != NATTER_OK || sqlite3_changes(c->db) > 0)
            return rc;
        if ((rc = message_alive(c, e->chat_id, e->target_id, &alive)) == NATTER_OK)
            e->unapplied = alive ? NATTER_UNAPPLIED_SAME : NATTER_UNAPPLIED_GONE;
        return rc;
    default:
        return NATTER_OK;
    }
}

/* An event recorded (its id keeps a redelivery from applying it again) that
 * changed nothing: not listed. */
static int mark_unapplied(conn_t *c, const natter_msg_t *e)
{
    sqlite3_stmt *st = stmt(c, Q_EVENT_UNAPPLIED);
    BIND_ID(st, 1, e->id);
    return exec_stmt(st);
}

/* One message of a batch written with claims: stored under its own id when
 * its key is its own (or it has none); else it is a repeat (kept in
 * repeats, rewritten once the transaction commits) and the holder is
 * stored again from its claim when the claim carries content (a message
 * claimed before it was stored, whose record may have been lost). */
static int write_claimed(conn_t *c, natter_msg_t *m, int64_t now_ms, natter_vec_t *repeats)
{
    claim_t held = {.id = m->id};
    int rc;
    if (m->client_id_len > 0 && (rc = claim_on(c, m, 0, now_ms, &held)) != NATTER_OK)
        return rc;
    if (held.id == m->id)
        return insert_message(c, m->id, m, m->content, m->content_len, m->created_at_ms);
    *(repeat_t *)natter_vec_push(repeats) = (repeat_t){m, held.id, held.created_at_ms};
    rc = NATTER_OK;
    if (held.content != NULL)
        rc = insert_message(c, held.id, m, held.content, held.content_len, held.created_at_ms);
    free(held.content);
    return rc;
}

static int records_write_on(store_sqlite_t *s, conn_t *c, natter_msg_t *head, int claim, int64_t now_ms)
{
    int rc = begin_transaction(s, c), fresh;
    if (rc != NATTER_OK)
        return rc;
    natter_vec_t repeats;
    natter_vec_init(&repeats, sizeof(repeat_t));
    if (claim)
        rc = sweep_claims(s, c, now_ms);
    /* Messages that need no claim gather in a run (from `run`, nrun long);
     * a record of any other kind first inserts the run before it, so it
     * sees every message ahead of it. */
    natter_msg_t *run = head;
    size_t nrun = 0;
    for (natter_msg_t *m = head; m != NULL && rc == NATTER_OK; m = m->next) {
        if (m->kind == NATTER_EV_MESSAGE && (!claim || m->client_id_len == 0)) {
            nrun++;
            continue;
        }
        if (nrun > 0 && (rc = insert_run(c, &run, nrun)) != NATTER_OK)
            break;
        nrun = 0;
        run = m->next;
        if (m->kind == NATTER_EV_MESSAGE)
            rc = write_claimed(c, m, now_ms, &repeats);
        else if (natter_event_stored(m->kind) && (rc = record_event(c, m, &fresh)) == NATTER_OK && fresh &&
                 (rc = apply_event(c, m)) == NATTER_OK && m->unapplied)
            rc = mark_unapplied(c, m);
    }
    if (nrun > 0 && rc == NATTER_OK)
        rc = insert_run(c, &run, nrun);
    rc = end_transaction(s, c, rc);
    for (size_t i = 0; i < repeats.len && rc == NATTER_OK; i++) {
        repeat_t *r = NATTER_VEC_AT(&repeats, repeat_t, i);
        r->m->id = r->id;
        r->m->created_at_ms = r->created_at_ms;
        r->m->duplicate = 1;
    }
    natter_vec_free(&repeats);
    return rc;
}

static int sq_records_write(natter_store_t *base, natter_msg_t *head, size_t n, int claim, int64_t now_ms)
{
    (void)n;
    WITH_CONN(s, c);
    int rc = records_write_on(s, c, head, claim, now_ms);
    release(s, c);
    return rc;
}

/* The writer is this thread's once begin_transaction holds write_lock. */
static int sq_records_write_unsynced(natter_store_t *base, natter_msg_t *head, size_t n, int claim, int64_t now_ms)
{
    (void)n;
    store_sqlite_t *s = (store_sqlite_t *)base;
    return records_write_on(s, s->writer, head, claim, now_ms);
}

static int sq_records_sync(natter_store_t *base)
{
    store_sqlite_t *s = (store_sqlite_t *)base;
    if (strcmp(s->sync, "NORMAL") == 0)
        return NATTER_OK; /* --sqlite-sync normal: the writer's commits are as durable as asked */
    char err[sizeof(s->path) + 64];
    int rc = s->wal_fd < 0 ? open_wal(s, err, sizeof(err)) : NATTER_OK;
    if (rc != NATTER_OK)
        fprintf(stderr, "natter: store: %s\n", err);
    if (s->wal_fd < 0)
        return rc;
    if (fdatasync(s->wal_fd) != 0) {
        fprintf(stderr, "natter: store: sync %s-wal: %s\n", s->path, strerror(errno));
        return NATTER_EIO;
    }
    return NATTER_OK;
}

static int sq_message_get(natter_store_t *base, uint64_t chat_id, uint64_t message_id, natter_msg_t **out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MESSAGE_GET);
    BIND_ID(st, 1, message_id);
    BIND_ID(st, 2, chat_id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *out = read_msg(st, 0);
    sqlite3_reset(st);
    release(s, c);
    return src == SQLITE_ROW ? NATTER_OK : src == SQLITE_DONE ? NATTER_ENOTFOUND : rc_of(src);
}

static int sq_reactions_range(natter_store_t *base, uint64_t chat_id, uint64_t first_id, uint64_t last_id,
                              natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_REACTIONS_RANGE);
    BIND_ID(st, 1, chat_id);
    BIND_ID(st, 2, first_id);
    BIND_ID(st, 3, last_id > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : last_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        natter_reaction_row_t *r = natter_vec_push(out);
        r->message_id = COL_ID(st, 0);
        snprintf(r->emoji, sizeof(r->emoji), "%s", (const char *)sqlite3_column_text(st, 1));
        r->user_id = COL_ID(st, 2);
    }
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

/* An event row (EVENT_COLS): a reaction's emoji as content; an edit's message state. */
static natter_msg_t *read_event(sqlite3_stmt *st)
{
    unsigned kind = (unsigned)sqlite3_column_int(st, 1);
    const char *text = (const char *)sqlite3_column_text(st, kind == NATTER_EV_EDIT ? 6 : 4);
    size_t len = text ? (size_t)sqlite3_column_bytes(st, kind == NATTER_EV_EDIT ? 6 : 4) : 0;
    const char *cid = kind == NATTER_EV_EDIT ? (const char *)sqlite3_column_text(st, 7) : NULL;
    size_t cidlen = cid ? (size_t)sqlite3_column_bytes(st, 7) : 0;
    natter_msg_t *e = natter_msg_new(0, COL_ID(st, 3), text ? text : "", len, cid ? cid : "", cidlen);
    e->id = COL_ID(st, 0);
    e->kind = (uint8_t)kind;
    e->target_id = COL_ID(st, 2);
    e->created_at_ms = sqlite3_column_int64(st, 5);
    if (kind == NATTER_EV_EDIT) {
        e->edited_at_ms = sqlite3_column_int64(st, 8);
        e->deleted = sqlite3_column_int(st, 9) != 0;
    }
    return e;
}

static int sq_events_page(natter_store_t *base, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                          natter_vec_t *out, int *has_more)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st;
    int src;
    uint64_t upper = before == NATTER_CURSOR_NONE ? (uint64_t)INT64_MAX : before;
    if (after != NATTER_CURSOR_NONE) {
        st = stmt(c, Q_EVENTS_AFTER);
        BIND_ID(st, 2, after);
        BIND_ID(st, 3, upper);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)limit + 1);
    } else {
        st = stmt(c, Q_EVENTS_BEFORE);
        BIND_ID(st, 2, upper);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit + 1);
    }
    BIND_ID(st, 1, chat_id);
    size_t first = out->len, taken = 0;
    *has_more = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (taken == limit) {
            *has_more = 1;
            continue;
        }
        natter_msg_t *e = read_event(st);
        e->chat_id = chat_id;
        *(natter_msg_t **)natter_vec_push(out) = e;
        taken++;
    }
    sqlite3_reset(st);
    release(s, c);
    if (after == NATTER_CURSOR_NONE)
        natter_store_page_reverse(out, first);
    return rc_of(src);
}

static int sq_read_markers(natter_store_t *base, uint64_t chat_id, natter_vec_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_READ_MARKERS);
    BIND_ID(st, 1, chat_id);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        natter_read_marker_t *r = natter_vec_push(out);
        r->user_id = COL_ID(st, 0);
        r->message_id = COL_ID(st, 1);
    }
    sqlite3_reset(st);
    release(s, c);
    return rc_of(src);
}

static int sq_user_chat_ids(natter_store_t *base, uint64_t user_id, natter_vec_t *out)
{
    return select_ids(base, Q_USER_CHAT_IDS, user_id, out);
}

static int sq_max_id(natter_store_t *base, uint64_t *out)
{
    WITH_CONN(s, c);
    sqlite3_stmt *st = stmt(c, Q_MAX_ID);
    int src = sqlite3_step(st);
    *out = src == SQLITE_ROW ? COL_ID(st, 0) : 0;
    sqlite3_reset(st);
    release(s, c);
    return src == SQLITE_ROW ? NATTER_OK : rc_of(src);
}

/* What the pool holds and what SQLite has allocated (page caches, statements,
 * schemas) across every connection: the part of natter's memory SQLite owns. */
static void sq_metrics_render(natter_store_t *base, natter_store_append_fn append, void *arg)
{
    store_sqlite_t *s = (store_sqlite_t *)base;
    char text[512];
    int len = snprintf(text, sizeof(text),
                       "# HELP natter_sqlite_connections SQLite connections in the store's pool, idle or in use.\n"
                       "# TYPE natter_sqlite_connections gauge\nnatter_sqlite_connections %d\n"
                       "# HELP natter_sqlite_memory_bytes Heap memory SQLite holds now, every connection's page "
                       "cache included.\n"
                       "# TYPE natter_sqlite_memory_bytes gauge\nnatter_sqlite_memory_bytes %lld\n",
                       atomic_load(&s->connections), (long long)sqlite3_memory_used());
    append(arg, text, (size_t)len < sizeof(text) ? (size_t)len : sizeof(text) - 1);
}

const natter_store_ops_t natter_store_sqlite = {
    .version = 9,
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
    .metrics_render = sq_metrics_render,
    .node_lease = sq_node_lease,
    .client_ids_claim = sq_client_ids_claim,
    .ticket_create = sq_ticket_create,
    .ticket_take = sq_ticket_take,
    .records_write = sq_records_write,
    .message_get = sq_message_get,
    .reactions_range = sq_reactions_range,
    .events_page = sq_events_page,
    .read_markers = sq_read_markers,
    .user_chat_ids = sq_user_chat_ids,
    .max_id = sq_max_id,
    .records_write_unsynced = sq_records_write_unsynced,
    .records_sync = sq_records_sync,
};
