/*
 * STORE: users, sessions, chats, members, messages and read markers.
 *
 * A backend is a struct of function pointers (natter_store_ops_t), its state
 * a struct that starts with natter_store_t; the core allocates ops->size
 * bytes. Version 1 holds every method up to read_marker_advance; version 2
 * appends metrics_render, version 3 node_lease, version 4 the client_id
 * claims and the WebSocket tickets, version 5 the chat's events
 * (records_write to user_chat_ids), version 6 session_user_id, version 7
 * max_id. New methods are only appended; version 8 is the one change in
 * place: a WebSocket ticket carries the session that made it
 * (natter_ticket_t), for ticket_create and ticket_take. Version 9 appends
 * records_write_unsynced and records_sync.
 *
 * Callers reach a backend only through the natter_store_* wrappers below
 * (SQLite's os.c shape): the one place a test injects faults (core/fault.h).
 *
 * Every method may be called from any thread at once (API workers, the
 * store consumer) and may block: never call one from the event loop. A
 * backend manages its own connections. Methods return 0 or a NATTER_E* code:
 * NATTER_ENOTFOUND, NATTER_ECONFLICT where documented, NATTER_EUNAVAIL when
 * the backend cannot be reached, NATTER_EIO otherwise.
 */
#ifndef NATTER_STORE_H
#define NATTER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/emoji.h"
#include "core/message.h"
#include "core/password.h"
#include "core/token.h"
#include "core/vec.h"

#define NATTER_USERNAME_MAX 32
#define NATTER_CHAT_NAME_MAX_BYTES 400 /* 100 characters of up to 4 bytes */

typedef struct natter_user {
    uint64_t id;
    char username[NATTER_USERNAME_MAX + 1];
    char pwhash[NATTER_PWHASH_MAX]; /* filled by user_by_name only */
    int64_t expires_at_ms;          /* filled by session_user only: when the session ends */
} natter_user_t;

/* A WebSocket ticket: whose it is and the session that made it, which the
 * socket it opens ends with (gateway.h). */
typedef struct natter_ticket {
    uint64_t user_id;
    uint8_t session_hash[NATTER_TOKEN_HASH_LEN]; /* all zero: kept by a node older than store version 8 */
    int64_t session_expires_at_ms;
} natter_ticket_t;

typedef struct natter_chat {
    uint64_t id;
    uint64_t created_by;
    int64_t created_at_ms;
    char name[NATTER_CHAT_NAME_MAX_BYTES + 1];
} natter_chat_t;

/* Unread counts stop here: a chat list costs the same for a chat with a
 * million unread messages as for one with a thousand (clients show
 * "999+"). */
#define NATTER_UNREAD_MAX 1000

/* One row of a user's chat list. last is NULL when the chat has no message;
 * otherwise the caller frees it. read: the user's read marker in the chat
 * (the last message read; 0: none). unread: the messages after it that
 * others sent, at most NATTER_UNREAD_MAX. */
typedef struct natter_chat_summary {
    natter_chat_t chat;
    uint64_t unread;
    uint64_t read;
    natter_msg_t *last;
} natter_chat_summary_t;


/* One user's reaction to one message, as stored. */
typedef struct natter_reaction_row {
    uint64_t message_id;
    uint64_t user_id;
    char emoji[NATTER_EMOJI_MAX_BYTES + 1];
} natter_reaction_row_t;

/* A member's read marker in a chat: the last message they read. */
typedef struct natter_read_marker {
    uint64_t user_id;
    uint64_t message_id;
} natter_read_marker_t;

#define NATTER_CURSOR_NONE UINT64_MAX

/* What node_lease does (see lease.h for how a node uses it). */
typedef enum {
    NATTER_LEASE_ACQUIRE, /* take node_id for holder, unless another holder's lease is live */
    NATTER_LEASE_RENEW,   /* extend holder's lease */
    NATTER_LEASE_RELEASE, /* give it up, if it is holder's */
} natter_lease_op_t;

typedef struct natter_store natter_store_t;

/* Appends len bytes of Prometheus text to the scrape that arg stands for. */
typedef void (*natter_store_append_fn)(void *arg, const char *text, size_t len);

typedef struct natter_store_ops {
    int version; /* the newest version whose methods this backend fills in (or NULLs) */
    size_t size;
    const char *name;
    int (*open)(natter_store_t *s, const natter_config_t *cfg, char *err, size_t errlen);
    void (*close)(natter_store_t *s);
    int (*ping)(natter_store_t *s);

    /* NATTER_ECONFLICT when the username is taken. */
    int (*user_create)(natter_store_t *s, const natter_user_t *u, int64_t now_ms);
    int (*user_by_name)(natter_store_t *s, const char *username, natter_user_t *out);
    int (*user_by_id)(natter_store_t *s, uint64_t id, natter_user_t *out);

    int (*session_create)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                          int64_t expires_at_ms);
    /* The live session's user; NATTER_ENOTFOUND when unknown or expired at now_ms. */
    int (*session_user)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                        natter_user_t *out);
    int (*session_delete)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN]);

    /* Creates the chat with these members (ids, the creator among them). */
    int (*chat_create)(natter_store_t *s, const natter_chat_t *chat, const uint64_t *members, size_t n);
    int (*chat_get)(natter_store_t *s, uint64_t chat_id, natter_chat_t *out);
    /* Member ids of a chat (uint64_t items); an unknown chat has none. */
    int (*chat_member_ids)(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
    /* Members with usernames (natter_user_t items, pwhash empty), by username. */
    int (*chat_members)(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
    /* Idempotent: NATTER_ECONFLICT when the user was a member already. */
    int (*member_add)(natter_store_t *s, uint64_t chat_id, uint64_t user_id);
    /* NATTER_ENOTFOUND when the user was not a member. */
    int (*member_remove)(natter_store_t *s, uint64_t chat_id, uint64_t user_id);
    /* A page of the user's chats (natter_chat_summary_t items), newest
     * activity first (a chat's activity: its newest message's id, or its own
     * id while it has none): at most limit, each with activity below
     * `before` (NATTER_CURSOR_NONE: from the newest). *next: the activity
     * of the page's last chat when more follow (the next page's `before`),
     * 0 when none do. Only the page's chats are summarized. */
    int (*user_chats)(natter_store_t *s, uint64_t user_id, uint64_t before, uint32_t limit, natter_vec_t *out,
                      uint64_t *next);

    /* Writes a batch (linked by next) in one transaction where the backend has
     * them; idempotent by message id: a message stored before is left as is. */
    int (*messages_insert)(natter_store_t *s, natter_msg_t *head, size_t n);
    /* A page of a chat's history in ascending id order (natter_msg_t * items,
     * the caller frees each). after/before are exclusive bounds, or
     * NATTER_CURSOR_NONE. With after, the page starts just after it (after=0:
     * from the first message); otherwise it ends just before `before` (or at
     * the newest). *has_more: more messages lie beyond the page in the
     * direction asked (newer with after, older otherwise). */
    int (*messages_page)(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                         natter_vec_t *out, int *has_more);
    /* NATTER_ENOTFOUND unless message_id is a message of chat_id. */
    int (*message_in_chat)(natter_store_t *s, uint64_t chat_id, uint64_t message_id);
    /* Moves the user's read marker in the chat to message_id if that is
     * later; NATTER_ECONFLICT when it was there or further on already
     * (nothing changed). */
    int (*read_marker_advance)(natter_store_t *s, uint64_t user_id, uint64_t chat_id, uint64_t message_id);

    /* Version 2. */
    /* The backend's own metric families (whole # HELP / # TYPE blocks), for
     * GET /metrics; called on the event loop, so it must not block. NULL
     * when the backend has none. natter_store_open registers it. */
    void (*metrics_render)(natter_store_t *s, natter_store_append_fn append, void *arg);

    /* Version 3. */
    /* The lease on a node id, ttl_ms long from now (the store's clock where
     * it has one). NATTER_ECONFLICT: ACQUIRE found another holder's live
     * lease; RENEW found the lease no longer holder's. holder: NUL-terminated,
     * at most 64 bytes. */
    int (*node_lease)(natter_store_t *s, uint32_t node_id, const char *holder, uint32_t ttl_ms, natter_lease_op_t op);

    /* Version 4. */
    /* Claims each message's (sender_id, chat_id, client_id) for it (its id,
     * created_at and content) for NATTER_CLIENT_ID_TTL_MS, in one
     * transaction where the backend has them (one durable write for the
     * batch). rc[i]: NATTER_OK when the claim is msgs[i]'s (made now, or its
     * id holds it already); NATTER_ECONFLICT when another message holds it,
     * and holders[i] (malloc'd, the caller frees it) is that message as
     * claimed: id, chat, sender, created_at, client_id and content (empty
     * when the claim was made by records_write with claim set, which stored the
     * message with it); or the error that leaves its outcome unknown. A
     * claim is linearizable: of two claims of one key, one wins, wherever
     * made. Returns 0, or the error every rc[i] was set to when the batch
     * failed as a whole. */
    int (*client_ids_claim)(natter_store_t *s, natter_msg_t *const *msgs, size_t n, int64_t now_ms, int *rc,
                            natter_msg_t **holders);
    /* Keeps a WebSocket ticket (its hash) for t until expires_at_ms. */
    int (*ticket_create)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], const natter_ticket_t *t,
                         int64_t expires_at_ms);
    /* Takes the ticket: NATTER_OK and *t when it was there and alive at
     * now_ms, and it is gone from then on, for every node (of two takes of
     * one ticket one wins); NATTER_ENOTFOUND otherwise. */
    int (*ticket_take)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                       natter_ticket_t *t);

    /* Version 5: the chat's events. */

    /* Writes a batch of log records (linked by next, in log order): each
     * message as messages_insert does, and each event (edit, delete,
     * reaction) applied in log order, exactly once by its event id: a
     * record written before changes nothing (the consumer's redelivery
     * after a crash), and an edit never overwrites a later edit. An edit
     * or delete applies only to a message of its chat sent by its sender;
     * an edit of a deleted message, or a reaction to one, changes nothing.
     * A delete empties the message's content and client_id and drops its
     * reactions. Every event is kept for events_page, whether or not it
     * changed the message. Ephemeral kinds are skipped. One transaction
     * where the backend has them.
     * With claim set (a log whose records only this node stores), every
     * message with a client_id is claimed at now_ms as client_ids_claim
     * does, in the batch's transaction where the backend has them. A
     * message whose key another message holds takes that message's place:
     * its id, created_at_ms (and, when the claim has it, content) become
     * the holder's and m->duplicate is set; storing it stores the holder
     * again, which leaves one copy. */
    int (*records_write)(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms);
    /* The current state of a message of chat_id (*out malloc'd; the caller
     * frees it): edited_at_ms, and for a deleted one deleted set and no
     * content. NATTER_ENOTFOUND unless message_id is a message of chat_id. */
    int (*message_get)(natter_store_t *s, uint64_t chat_id, uint64_t message_id, natter_msg_t **out);
    /* The reactions to messages of chat_id with ids in [first_id, last_id]
     * (natter_reaction_row_t items), ordered by message id, then emoji
     * (bytewise), then user id. */
    int (*reactions_range)(natter_store_t *s, uint64_t chat_id, uint64_t first_id, uint64_t last_id,
                           natter_vec_t *out);
    /* A page of the chat's events in ascending event id order (natter_msg_t *
     * items, the caller frees each), cursors and has_more as messages_page.
     * Each item: kind, id (the event's), chat_id, sender_id (who), target_id
     * (the message), created_at_ms (when); a reaction's emoji in content;
     * an edit carries its message's current state: content, client_id,
     * edited_at_ms and deleted (so a deleted message's content is nowhere). */
    int (*events_page)(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                       natter_vec_t *out, int *has_more);
    /* The read markers of the chat's members (natter_read_marker_t items);
     * a member who never read is left out. */
    int (*read_markers)(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
    /* The ids of the chats the user is a member of (uint64_t items). */
    int (*user_chat_ids)(natter_store_t *s, uint64_t user_id, natter_vec_t *out);

    /* Version 6. */
    /* session_user without the user's row: its id and the session's end
     * (a post needs no more; on Cassandra that is one read, not two). NULL:
     * the wrapper asks session_user. */
    int (*session_user_id)(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                           uint64_t *user_id, int64_t *expires_at_ms);

    /* Version 7 (may be NULL). */
    /* The largest id held among messages, events, users and chats (0 when
     * none), read once at start: the node's id generators start after it.
     * NULL where that is no cheap read (Cassandra: a scan). */
    int (*max_id)(natter_store_t *s, uint64_t *out);

    /* Version 9 (both NULL, or both set). */
    /* records_write, except that on return the batch is committed and read
     * back by every reader, safe against a crash of the process but not yet
     * against a power cut. */
    int (*records_write_unsynced)(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms);
    /* Makes every batch records_write_unsynced wrote before this call
     * durable as records_write would have (one flush for them all: the
     * caller writes the next batch while the last ones sync). Called by one
     * thread at a time. */
    int (*records_sync)(natter_store_t *s);
} natter_store_ops_t;

struct natter_store {
    const natter_store_ops_t *ops;
};

extern const natter_store_ops_t natter_store_sqlite;
extern const natter_store_ops_t natter_store_cql;

const natter_store_ops_t *natter_store_find(const char *name);
natter_store_t *natter_store_open(const natter_store_ops_t *ops, const natter_config_t *cfg, char *err,
                                  size_t errlen);
void natter_store_close(natter_store_t *s);
/* The wrappers: each asks core/fault.h, then calls the backend's method
 * (documented above) with the same arguments and promises. */
int natter_store_ping(natter_store_t *s);
int natter_store_user_create(natter_store_t *s, const natter_user_t *u, int64_t now_ms);
int natter_store_user_by_name(natter_store_t *s, const char *username, natter_user_t *out);
int natter_store_user_by_id(natter_store_t *s, uint64_t id, natter_user_t *out);
int natter_store_session_create(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                                int64_t expires_at_ms);
int natter_store_session_user(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                              natter_user_t *out);
int natter_store_session_user_id(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                                 uint64_t *user_id, int64_t *expires_at_ms);
int natter_store_session_delete(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN]);
int natter_store_chat_create(natter_store_t *s, const natter_chat_t *chat, const uint64_t *members, size_t n);
int natter_store_chat_get(natter_store_t *s, uint64_t chat_id, natter_chat_t *out);
int natter_store_chat_member_ids(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
int natter_store_chat_members(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
int natter_store_member_add(natter_store_t *s, uint64_t chat_id, uint64_t user_id);
int natter_store_member_remove(natter_store_t *s, uint64_t chat_id, uint64_t user_id);
int natter_store_user_chats(natter_store_t *s, uint64_t user_id, uint64_t before, uint32_t limit, natter_vec_t *out,
                            uint64_t *next);
/* A summary's activity, as user_chats orders them. */
uint64_t natter_chat_summary_activity(const natter_chat_summary_t *cs);
/* qsort order of a chat list (natter_chat_summary_t items): newest activity
 * first, a chat's activity being its newest message or else its creation. */
int natter_chat_summary_by_activity(const void *a, const void *b);
/* Turns a page read newest first (natter_msg_t * items from index first on)
 * into oldest first, the order every page is answered in. */
void natter_store_page_reverse(natter_vec_t *page, size_t first);
int natter_store_messages_page(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                               natter_vec_t *out, int *has_more);
int natter_store_message_in_chat(natter_store_t *s, uint64_t chat_id, uint64_t message_id);
int natter_store_read_marker_advance(natter_store_t *s, uint64_t user_id, uint64_t chat_id, uint64_t message_id);
/* NATTER_OK and *out (version 7), or NATTER_EINVAL when the backend cannot tell. */
int natter_store_max_id(natter_store_t *s, uint64_t *out);
/* 1 when the backend keeps node id leases (version 3). */
int natter_store_has_node_lease(natter_store_t *s);
int natter_store_node_lease(natter_store_t *s, uint32_t node_id, const char *holder, uint32_t ttl_ms,
                            natter_lease_op_t op);
int natter_store_client_ids_claim(natter_store_t *s, natter_msg_t *const *msgs, size_t n, int64_t now_ms, int *rc,
                                  natter_msg_t **holders);
int natter_store_ticket_create(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], const natter_ticket_t *t,
                               int64_t expires_at_ms);
int natter_store_ticket_take(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                             natter_ticket_t *t);
/* Counted as store.messages_insert by the fault layer: it is the batch write. */
int natter_store_records_write(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms);
/* 1 when the backend writes batches apart from syncing them (version 9). */
int natter_store_has_records_sync(natter_store_t *s);
/* Counted as store.messages_insert too. */
int natter_store_records_write_unsynced(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms);
int natter_store_records_sync(natter_store_t *s);
int natter_store_message_get(natter_store_t *s, uint64_t chat_id, uint64_t message_id, natter_msg_t **out);
int natter_store_reactions_range(natter_store_t *s, uint64_t chat_id, uint64_t first_id, uint64_t last_id,
                                 natter_vec_t *out);
int natter_store_events_page(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                             natter_vec_t *out, int *has_more);
int natter_store_read_markers(natter_store_t *s, uint64_t chat_id, natter_vec_t *out);
int natter_store_user_chat_ids(natter_store_t *s, uint64_t user_id, natter_vec_t *out);

#endif
