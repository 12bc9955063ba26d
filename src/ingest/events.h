/*
 * The chat's events over HTTP: edits, deletes and reactions, the events
 * feed, and what history and a chat show of them.
 *
 * An edit, a delete or a reaction is a log record of its own kind (see
 * core/message.h), keyed by its chat like the chat's messages. A worker
 * checks it against the store (the caller's session, membership, the
 * message, its sender), gives it to the log, and parks the job there as a
 * post parks: its answer (200 with the edited message, or 204) leaves from
 * the record's outcome, on the job's loop (natter_loop_ack), so it is
 * answered only once durable — in the embedded mode once the store's
 * transaction holding it committed, on Kafka once the broker acknowledged
 * it. The store consumer applies it (store.h, records_write) and it is
 * pushed like a message.
 */
#ifndef NATTER_EVENTS_H
#define NATTER_EVENTS_H

#include <jansson.h>

#include "core/vec.h"
#include "ingest/api.h"

#define NATTER_REACTIONS_PER_USER_MAX 20 /* distinct emoji one user may put on one message */

/* On a worker, for NATTER_A_MESSAGE_EDIT, _DELETE, NATTER_A_REACTION_ADD
 * and _REMOVE: 1 when the job is parked in the log (its answer comes from
 * the record's outcome), 0 when it is answered. */
int natter_events_run(natter_api_job_t *job);
/* 1 for a job that natter_events_run parks. */
int natter_events_parked(const natter_api_job_t *job);
/* On the job's loop, for a parked job whose outcome came back: keeps the
 * answer set when it became durable, or sets 503. */
void natter_events_answer(natter_api_job_t *job);

/* On a worker: GET /chats/{id}/events. */
void natter_events_list(natter_api_job_t *job);

/* On a worker, for history: appends each message of page (natter_msg_t *
 * items of chat_id) to arr as its message object, with its "reactions" as
 * viewer sees them when it has any (a deleted slot never does). 0, or the
 * store's error (the job is then answered 503). */
int natter_events_history_json(natter_api_job_t *job, uint64_t chat_id, const natter_vec_t *page, uint64_t viewer,
                               json_t *arr);
/* On a worker, for a chat object: adds "online" and "last_read_id" (null
 * when the member never read) to each member object of members (each with
 * "id"). 0, or the store's error (the job is then answered 503). */
int natter_events_members_json(natter_api_job_t *job, uint64_t chat_id, json_t *members);

#endif
