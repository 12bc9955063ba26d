/*
 * The log's unstored tail, as this node's fan-out read it.
 *
 * On a log whose pushes do not wait for the store (Kafka: docs/
 * architecture.md, "Why pushes do not wait for the store"), a message can be
 * pushed before any store has it. A socket that opens just after that push
 * and catches up from history would miss the message until its next read.
 * So the fan-out thread keeps each message it read here until the log says
 * the store has it (the log's stored offset passed its record), and a
 * history read merges what is here into the store's page, by id.
 *
 * The changes to messages (edits, deletes, reactions) are kept beside
 * them, for the events feed: a client that missed a change's push and
 * catches up from the feed must find it there too.
 *
 * Written by one thread (the fan-out: natter_tail_add), read by any
 * (natter_tail_collect): 16 shards by chat, each a FIFO behind its own
 * mutex, at most `capacity` records in all, the oldest dropped first.
 */
#ifndef NATTER_TAIL_H
#define NATTER_TAIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/message.h"
#include "core/vec.h"

#define NATTER_TAIL_SHARDS 16

/* What natter_tail_collect copies: a history page's, or the events feed's. */
typedef enum { NATTER_TAIL_MESSAGES, NATTER_TAIL_CHANGES } natter_tail_kinds_t;

/* The offset below which a partition's records are in the store, as far as
 * the log knows; -1 when it does not know (nothing then counts as stored). */
typedef int64_t (*natter_tail_stored_fn)(void *arg, int32_t partition);

typedef struct natter_tail_shard {
    pthread_mutex_t lock;
    natter_msg_t *first, *last; /* oldest first, linked by next */
    size_t n;
} __attribute__((aligned(64))) natter_tail_shard_t;

typedef struct natter_tail {
    size_t max_per_shard;
    natter_tail_stored_fn stored;
    void *stored_arg;
    natter_tail_shard_t shards[NATTER_TAIL_SHARDS];
} natter_tail_t;

void natter_tail_init(natter_tail_t *t, size_t capacity, natter_tail_stored_fn stored, void *stored_arg);
void natter_tail_free(natter_tail_t *t);
/* Takes the list (linked by next): keeps its messages and changes whose
 * records are not stored yet, frees the rest (what no store keeps, stored
 * ones), and drops from each shard it touches what the store has now, and
 * the oldest past capacity. */
void natter_tail_add(natter_tail_t *t, natter_msg_t *head);
/* Copies into out (natter_msg_t * items the caller frees), in ascending id
 * order, the chat's unstored messages (or changes) with after < id < before
 * (each bound NATTER_CURSOR_NONE for none). Read it before the store's
 * page: a record stored in between is then on the page, not lost between
 * the two. */
void natter_tail_collect(natter_tail_t *t, uint64_t chat_id, natter_tail_kinds_t kinds, uint64_t after,
                         uint64_t before, natter_vec_t *out);
/* 1 when the chat's message message_id is here and not stored yet, else 0
 * (a read marker's check: nothing copied). */
int natter_tail_has(natter_tail_t *t, uint64_t chat_id, uint64_t message_id);
/* Merges extra (from natter_tail_collect; emptied: its items are moved or
 * freed) into page (a store page of the same bounds, ascending, as
 * messages_page gives it): the store's copy wins an id both hold; past
 * limit, the page loses its newest (with after) or its oldest (otherwise)
 * and *has_more is set. */
void natter_tail_merge(natter_vec_t *extra, uint64_t after, uint32_t limit, natter_vec_t *page, int *has_more);
/* Drops from every shard what the store has now (from its oldest on, as
 * natter_tail_add does): the fan-out thread calls it while idle. */
void natter_tail_prune(natter_tail_t *t);
/* Records held now, messages and changes, over every shard
 * (natter_unstored_tail_messages counts the messages among them). */
size_t natter_tail_size(natter_tail_t *t);

#endif
