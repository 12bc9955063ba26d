/*
 * LOG: the durable, ordered hand-off between ingest and the store consumer.
 *
 * A backend is a struct of function pointers (natter_log_ops_t) plus its own
 * state; its struct starts with natter_log_t and the core allocates
 * ops->size bytes (SQLite's sqlite3_vfs shape). Version 1 holds every field
 * up to fanout_poll; version 2 appends consumer_status, version 3 the held
 * appends, version 4 the ephemeral path (publish, ephemeral_poll), version
 * 5 dead letters, version 6 stored_offset, version 7 fanout_wait_own,
 * version 8 idle, version 9 ids_after. New methods are only appended, with a
 * version bump.
 *
 * Threads: append is called by any API worker; poll and commit only by
 * the one store consumer thread, except that the local log's commit (which
 * keeps no state) may also come from its sync stage (consumer.h). A
 * backend documents its own locking.
 *
 * Ownership: append takes the message when it returns 0 and calls
 * msg->on_durable exactly once later; when append fails, the caller keeps
 * the message and no callback fires (libuv's rule). Messages returned by poll
 * belong to the consumer.
 */
#ifndef NATTER_LOG_H
#define NATTER_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/error.h"
#include "core/message.h"
#include "core/metrics.h"

typedef struct natter_log natter_log_t;

/* At most this many records of the unstored tail are replayed by a fan-out
 * poll at start (log.h, fanout_poll), over all partitions. */
#define NATTER_LOG_REPLAY_MAX 100000

typedef struct natter_log_ops {
    int version; /* the newest version whose methods this backend fills in (or NULLs) */
    size_t size; /* bytes of the backend's struct, which starts with natter_log_t */
    const char *name;
    int (*open)(natter_log_t *log, const natter_config_t *cfg, char *err, size_t errlen);
    void (*close)(natter_log_t *log);
    /* Assigns msg->id and msg->created_at_ms (the ids one node issues
     * increase in log order within a chat; across nodes they follow each
     * node's clock, raised past the newest id its fan-out read), then makes
     * the message durable asynchronously.
     * NATTER_EFULL when its queue is full, NATTER_EUNAVAIL when it is
     * unreachable or closed. */
    int (*append)(natter_log_t *log, natter_msg_t *msg);
    /* Blocks up to timeout_ms for the first message, then lets the batch fill
     * for up to the configured batch time; links at most max messages, in log
     * order, into *head. Returns how many (0 on timeout or after shutdown). */
    size_t (*poll)(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);
    /* Called by the consumer once the polled batch is in the store
     * (status 0) or failed to get there (NATTER_E*). */
    void (*commit)(natter_log_t *log, natter_msg_t *head, int status);
    /* 0 when the backend is reachable. */
    int (*ping)(natter_log_t *log);
    /* Stop accepting appends; poll keeps returning what is left, then 0. */
    void (*shutdown)(natter_log_t *log);
    /* 1 when shut down and nothing more will be polled. */
    int (*drained)(natter_log_t *log);
    /* Fan-out stream, for backends whose store consumer does not see every
     * message (a consumer group splits the partitions between nodes): every
     * message posted on any node, in log order per chat, for this node's
     * sockets. The messages belong to the caller. NULL when the store
     * consumer's batches are the fan-out (the local log). From version 6,
     * the first polls after start also give the log's unstored tail (the
     * records from the store's committed offsets up to the end at start),
     * each marked msg->replayed: pushed before, kept for history reads
     * (consumer/tail.h), not to be pushed again. */
    size_t (*fanout_poll)(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);

    /* Version 2 (may be NULL). */

    /* 0 when the store consumer can consume; else NATTER_E* and a reason in
     * why (fenced by another member, the broker away past the timeout). */
    int (*consumer_status)(natter_log_t *log, char *why, size_t len);

    /* Version 3: held appends, for a log whose records other nodes may
     * store (Kafka), so a post's client_id is claimed in the store before
     * its record can exist (docs/architecture.md, "Idempotent sends"). NULL
     * all three when this node's store consumer stores every record (the
     * local log): then the claim is made as the record is stored. */

    /* Like append (the id and created_at are issued now, in log order), but
     * the message is held: neither it nor anything appended to its chat
     * after it goes out before it is released. */
    int (*append_held)(natter_log_t *log, natter_msg_t *msg);
    /* Lets a held message go out (status 0; on_durable fires later, once),
     * or withdraws it (a NATTER_E* status): the caller has it back and its
     * on_durable never fires. Whatever waited behind it goes out. */
    void (*release)(natter_log_t *log, natter_msg_t *msg, int status);
    /* Like append for a message whose id and created_at are set already: a
     * message claimed earlier whose record may have been lost goes out
     * again (stores keep one copy of an id). */
    int (*append_existing)(natter_log_t *log, natter_msg_t *msg);

    /* Version 4: the ephemeral path, for what every node must see and no
     * one stores (typing, read receipts, presence). Not the log proper: no
     * order with the messages, no durability, no consumer group; a record
     * reaches every node's ephemeral_poll, this node's included, or is
     * lost. */
    /* Assigns ev->id (the id names this node) and created_at_ms and sends
     * ev on: 0 and ev is taken; NATTER_EUNAVAIL (ev stays the caller's)
     * when the path is full or closed. Any thread, never blocks. */
    int (*publish)(natter_log_t *log, natter_msg_t *ev);
    /* What any node published since this node started: up to max records
     * linked into *head (the caller's), waiting up to timeout_ms for the
     * first. One thread calls it (the ephemeral thread). */
    size_t (*ephemeral_poll)(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);

    /* Version 5 (may be NULL: the store consumer's failures then go back
     * to the records' posters, as on the local log, where a record is
     * answered only once stored). */
    /* Keeps a record of the current batch that the store refused for good
     * where an operator finds it (Kafka: the topic <topic>-dead-letters,
     * with the reason and the record's source as headers), so its partition
     * can move on. Blocks until the record is durable there: 0, or NATTER_E*
     * when it could not be kept (the caller must not move past it then).
     * The store consumer thread only. */
    int (*dead_letter)(natter_log_t *log, const natter_msg_t *msg, const char *reason);

    /* Version 6 (NULL where the fan-out follows the store: the local log). */
    /* The offset below which the partition's records are in the store, as
     * the log last learned it (Kafka: the store group's committed offset,
     * read every second); -1 when it does not know. Any thread, never
     * blocks. */
    int64_t (*stored_offset)(natter_log_t *log, int32_t partition);
    /* Version 7 (NULL where the fan-out follows the store: the local log). */
    /* Read-your-writes on this node: waits up to timeout_ms until this
     * node's fan-out stream was read past every record of the chat's
     * partition that this process had made durable when the call began —
     * its posts' 202s came before their fan-out read them, and the unstored
     * tail has a message only then. A record counts as read once the
     * fan-out thread polls again after the poll that gave it (it has handed
     * that batch on: pushed, in the tail). 0; NATTER_ETIMEDOUT when the
     * time ran out, or at once while the partition is stalled (a wait
     * there with timeout_ms > 0 timed out, and the fan-out has not moved
     * on in it since); NATTER_EUNAVAIL once the log is shut down. Any
     * thread but the fan-out's, before close. */
    int (*fanout_wait_own)(natter_log_t *log, uint64_t chat_id, int timeout_ms);
    /* Version 8 (may be NULL). */
    /* An event loop that appended ran out of work: the appends it had to
     * give are in. A batch that waits for more (the local log's batch
     * time) may go now; the local log lets one go that is as large as its
     * last. Any loop thread, never blocks. */
    void (*idle)(natter_log_t *log);

    /* Version 9 (may be NULL). */
    /* Every id the log issues from now on is greater than id (the largest
     * the store holds; called once, at start, before any append). */
    void (*ids_after)(natter_log_t *log, uint64_t id);

    /* Version 10 (may be NULL). */
    /* 1, with the reason in why, when the log has failed in a way only a
     * new process mends (Kafka: the idempotent producer's fatal error,
     * after which it takes no record); the backend has then asked the
     * process to stop (SIGTERM), which exits with status 1. Else 0. Any
     * thread. */
    int (*failed)(natter_log_t *log, char *why, size_t len);
} natter_log_ops_t;

struct natter_log {
    const natter_log_ops_t *ops;
};

extern const natter_log_ops_t natter_log_local;
extern const natter_log_ops_t natter_log_kafka;

/* Finds a backend by name ("local"); NULL if there is none. */
const natter_log_ops_t *natter_log_find(const char *name);
/* Allocates and opens; NULL with a reason in err on failure. */
natter_log_t *natter_log_open(const natter_log_ops_t *ops, const natter_config_t *cfg, char *err, size_t errlen);
void natter_log_close(natter_log_t *log);

/* Thin wrappers: the one place metrics are counted and faults are injected
 * (core/fault.h: an armed log.append fails the append, log.poll returns
 * nothing, log.commit reports its status as the batch's outcome). */
int natter_log_append(natter_log_t *log, natter_msg_t *msg);
size_t natter_log_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);
void natter_log_commit(natter_log_t *log, natter_msg_t *head, int status);
int natter_log_ping(natter_log_t *log);
void natter_log_shutdown(natter_log_t *log);
int natter_log_drained(natter_log_t *log);
/* For the backends: tells a record's poster its outcome (0: durable) and
 * counts the records that failed. Inline: the Kafka log's TSan test links
 * the backend without this file's wrappers. */
static inline void natter_log_durable(natter_msg_t *msg, int status)
{
    if (status != NATTER_OK)
        natter_count(&natter_m()->messages_failed, 1);
    msg->on_durable(msg, status, msg->durable_arg);
}
/* For the backends: answers every record of a list it will never make
 * durable (NATTER_EUNAVAIL), and frees them. */
static inline void natter_log_fail_all(natter_msg_t *m)
{
    while (m != NULL) {
        natter_msg_t *next = m->next;
        natter_log_durable(m, NATTER_EUNAVAIL);
        free(m);
        m = next;
    }
}
/* 1 when the backend has its own fan-out stream (natter_log_fanout_poll). */
int natter_log_has_fanout(natter_log_t *log);
/* The backend's consumer_status, or 0 for a backend without one. */
int natter_log_consumer_status(natter_log_t *log, char *why, size_t len);
size_t natter_log_fanout_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);
/* 1 when the backend has held appends: posts with a client_id are claimed
 * in the store before their record is let out. */
int natter_log_claims_at_ingest(natter_log_t *log);
/* Only when natter_log_claims_at_ingest. */
int natter_log_append_held(natter_log_t *log, natter_msg_t *msg);
void natter_log_release(natter_log_t *log, natter_msg_t *msg, int status);
int natter_log_append_existing(natter_log_t *log, natter_msg_t *msg);
int natter_log_publish(natter_log_t *log, natter_msg_t *ev);
size_t natter_log_ephemeral_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms);
/* 1 when the backend keeps dead letters (natter_log_dead_letter). */
int natter_log_has_dead_letters(natter_log_t *log);
/* Counts natter_dead_letters_total and logs a line when the record is kept. */
int natter_log_dead_letter(natter_log_t *log, const natter_msg_t *msg, const char *reason);
/* The backend's stored_offset, or -1 for a backend without one. */
int64_t natter_log_stored_offset(natter_log_t *log, int32_t partition);
/* The backend's fanout_wait_own; 0 at once for a backend without one (its
 * 202 follows the store). A wait that times out is counted
 * (natter_own_writes_wait_timeouts_total); the caller reads on without. */
int natter_log_fanout_wait_own(natter_log_t *log, uint64_t chat_id, int timeout_ms);
/* 1 when the backend has an idle method (the local log). */
int natter_log_has_idle(natter_log_t *log);
/* The backend's idle; nothing for a backend without one. */
void natter_log_idle(natter_log_t *log);
/* The backend's ids_after; nothing for a backend without one. */
void natter_log_ids_after(natter_log_t *log, uint64_t id);
int natter_log_failed(natter_log_t *log, char *why, size_t len);

#endif
