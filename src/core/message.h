/*
 * A chat message on its way through the pipeline, or an event about one.
 *
 * Ingest allocates it (natter_msg_new), the log assigns its id and
 * created_at when it is appended, the store consumer owns it from the log's
 * poll until the batch is stored, committed and fanned out, then frees it.
 * on_durable fires exactly once per appended message, from whichever thread
 * learned the outcome: status 0 once the message is durable, a NATTER_E*
 * code when it never will be.
 *
 * The same record carries the chat's events (kind, below): an edit, a
 * delete or a reaction goes through the log like a message, keyed by its
 * chat, so it keeps its place in the chat's order; its id is the event's
 * own id (from the log's generator) and target_id names the message it is
 * about. The ephemeral kinds (typing, read receipts, presence, session ends) travel only
 * on the log's ephemeral path (log.h): never stored.
 */
#ifndef NATTER_MESSAGE_H
#define NATTER_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core/jsonw.h"

#define NATTER_CONTENT_MAX_CHARS 4000
#define NATTER_CLIENT_ID_MAX 64
/* A post repeating a (sender, chat, client_id) seen this recently is the
 * same message (docs/architecture.md, "Idempotent sends"). */
#define NATTER_CLIENT_ID_TTL_MS (24ll * 3600 * 1000)
/* A message of a chat with at most this many members carries their ids
 * (its recipients, below); a bigger chat's are read from the members cache. */
#define NATTER_MSG_RECIPIENTS_MAX 64

/* What a record is. The values are part of the log's record format: only append. */
typedef enum {
    NATTER_EV_MESSAGE = 0,  /* a message: id is the message id */
    NATTER_EV_EDIT = 1,     /* sender_id edits target_id: content is the new content */
    NATTER_EV_DELETE = 2,   /* sender_id deletes target_id: its content goes */
    NATTER_EV_REACT_ADD = 3,    /* sender_id reacts to target_id with the emoji in content */
    NATTER_EV_REACT_REMOVE = 4, /* sender_id takes that reaction back */
    /* ephemeral: the log's ephemeral path only, never stored */
    NATTER_EV_TYPING = 5,   /* sender_id types in chat_id */
    NATTER_EV_READ = 6,     /* sender_id read chat_id up to target_id */
    NATTER_EV_PRESENCE_UP = 7,   /* these users (content) came online on the record's node */
    NATTER_EV_PRESENCE_DOWN = 8, /* ... went offline on it */
    NATTER_EV_PRESENCE_BEAT = 9, /* ... are still online on it */
    NATTER_EV_SESSION_END = 10,  /* sender_id logged out the session whose token hash is content, in hex */
    NATTER_EV_MEMBERSHIP = 11,   /* sender_id added target_id to chat_id, removed it, or created chat_id (target_id is
                                    sender_id): content "added", "removed", "created" */
    NATTER_EV_KINDS
} natter_event_kind_t;

/* Why the store applied an event without effect (natter_msg_t.unapplied),
 * for a backend that can tell (SQLite; Cassandra writes blind): such an
 * event is not pushed nor listed, and, where the poster waits for the
 * store (the embedded log), is answered as if it had been checked then. */
typedef enum {
    NATTER_APPLIED = 0,
    NATTER_UNAPPLIED_GONE = 1, /* its message was deleted first (an edit, a reaction): 404 */
    NATTER_UNAPPLIED_SAME = 2, /* nothing to change (a second delete, a reaction there already or not there,
                                  an edit a newer one overtook): 204, or an edit's 200 */
} natter_unapplied_t;

/* A membership record's content (NATTER_EV_MEMBERSHIP): its index in
 * NATTER_MEMBERSHIP_OPS, or -1. */
#define NATTER_MEMBERSHIP_OPS {"added", "removed", "created"}
int natter_membership_op(const void *content, size_t len);

/* 1 for the kinds the store applies (messages, edits, deletes, reactions). */
static inline int natter_event_stored(unsigned kind)
{
    return kind <= NATTER_EV_REACT_REMOVE;
}

typedef struct natter_msg natter_msg_t;
typedef void (*natter_msg_durable_cb)(natter_msg_t *msg, int status, void *arg);

struct natter_msg {
    natter_msg_t *next; /* link in a log queue or a batch */
    uint64_t id;
    uint64_t chat_id;
    uint64_t sender_id;
    int64_t created_at_ms;
    int64_t ingest_ns;  /* wall-clock ns when ingest accepted it (any node), for latency metrics */
    int32_t partition;  /* where a distributed log holds it (-1: none) */
    int64_t offset;
    uint8_t kind;          /* natter_event_kind_t */
    uint8_t deleted;       /* read from the store: the message was deleted (its content is gone) */
    uint64_t target_id;    /* an event's message; 0 for a message */
    int64_t edited_at_ms;  /* read from the store: when the content was last edited (0: never) */
    natter_msg_durable_cb on_durable;
    void *durable_arg;
    uint8_t duplicate;    /* the store found its client_id claimed by another message: it is that one */
    uint8_t log_held;     /* the log's: appended held, not released yet (log.h) */
    uint8_t replayed;     /* a fan-out poll's: read again at start from the unstored tail, not to be pushed */
    uint8_t unapplied;    /* the store's, for an event it changed nothing with (natter_unapplied_t) */
    /* The chat's members as the posting node knew them (a fresh entry of its
     * members cache), at natter_msg_recipients(m): the fan-out of every node
     * pushes the message to them without asking its own cache, so a node
     * that fans out a chat for the first time does not wait on the store.
     * 0: not carried (a bigger chat, an event, a record from an older node). */
    uint32_t nrecipients;
    size_t client_id_len; /* 0: none */
    char client_id[NATTER_CLIENT_ID_MAX + 1];
    size_t content_len;
    char content[]; /* NUL-terminated */
};

/* One allocation holding the content; free with free(). */
natter_msg_t *natter_msg_new(uint64_t chat_id, uint64_t sender_id, const char *content, size_t len,
                             const char *client_id, size_t client_id_len);
/* The same with n recipients (at most NATTER_MSG_RECIPIENTS_MAX; more are
 * not carried) in the same allocation. */
natter_msg_t *natter_msg_new_to(uint64_t chat_id, uint64_t sender_id, const char *content, size_t len,
                                const char *client_id, size_t client_id_len, const uint64_t *recipients, size_t n);
/* Frees a list of messages linked by next (NULL: none). */
void natter_msg_free_list(natter_msg_t *head);
/* Bytes of the message's allocation (for a copy of it). */
size_t natter_msg_size(const natter_msg_t *m);

/* Bytes the content of len bytes takes in a message's allocation: its NUL
 * included, rounded up so that the recipients after it are 8-byte aligned. */
static inline size_t natter_msg_content_room(size_t len)
{
    return (len + 1 + 7) & ~(size_t)7;
}

/* The recipients' ids (m->nrecipients of them), after the content. */
static inline const uint64_t *natter_msg_recipients(const natter_msg_t *m)
{
    return (const uint64_t *)(const void *)(m->content + natter_msg_content_room(m->content_len));
}

/* The message object of the API:
 * {"id","chat_id","sender_id","content","created_at","edited_at"?,"client_id"?},
 * or for a deleted message the slot {"id","chat_id","sender_id","created_at",
 * "deleted":true}; the caller owns the reference. */
json_t *natter_msg_json(const natter_msg_t *m);
/* The same object, written into w (the per-message hot paths). */
void natter_msg_write_json(natter_jsonw_t *w, const natter_msg_t *m);
/* The message object an edit event (kind NATTER_EV_EDIT) makes of its
 * message: id target_id, the edit's content and client_id, created_at from
 * the message's id, edited_at the edit's created_at_ms. */
void natter_msg_write_edited(natter_jsonw_t *w, const natter_msg_t *edit);

#endif
