/*
 * Message posts: POST /chats/{id}/messages and the WebSocket "send" frame.
 *
 * The hot path runs on the event loop that received the post: when the
 * caller's session and the chat's membership are in the caches, the post
 * is validated, rate-limited, given its id and appended to the log there,
 * without waking a worker (natter_post_on_loop). A post that misses either
 * cache goes to a worker, which asks the store (natter_post_run). Either
 * way the job is then parked in the log: when the message is durable (or
 * never will be) its outcome travels back to the job's loop, which writes
 * the 202 or the ack (natter_post_answer).
 */
#ifndef NATTER_POST_H
#define NATTER_POST_H

#include <stddef.h>

#include "ingest/api.h"

typedef enum {
    NATTER_POST_ANSWERED, /* job->status and resp hold the answer: send it, free the job */
    NATTER_POST_PARKED,   /* in the log: the loop answers when the outcome comes back */
    NATTER_POST_MISS,     /* a cache did not know: give the job to a worker */
} natter_post_result_t;

/* On the job's loop. job->token (HTTP) or job->ws_user_id (a WebSocket
 * send) says who posts; [body, body+len) is the request's body or frame,
 * read only during the call. */
natter_post_result_t natter_post_on_loop(natter_api_job_t *job, const char *body, size_t len);
/* On a worker, with job->body: 1 when parked, 0 when answered. */
int natter_post_run(natter_api_job_t *job);
/* Answers a WebSocket send the node will not take (it is shutting down)
 * with an error frame carrying the send's client_id when it has a valid
 * one; a frame that is no JSON object still gets the error. */
void natter_post_refuse(natter_api_job_t *job, const char *body, size_t len, int status, const char *code,
                        const char *message);
/* On the job's loop (or the thread that answers it at once), for a post
 * whose outcome is known: sets the answer (202, or 200 with an ack frame,
 * or 503). */
void natter_post_answer(natter_api_job_t *job);
/* On the claimer's thread (claims.h): the outcome of the claim of
 * job->held's client_id (holder, the caller's no more, when another message
 * holds it). The message goes out, or the post becomes the holder's
 * repeat; either way the job is answered, at once or once durable. */
void natter_post_claimed(natter_api_job_t *job, int rc, natter_msg_t *holder);

#endif
