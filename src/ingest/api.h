/*
 * The API's requests as jobs.
 *
 * An event loop turns an HTTP request (or a WebSocket "send" frame) into a
 * natter_api_job_t. A message post whose session and chat membership are
 * cached is decided on the loop itself (post.h); everything else, and a
 * post that misses a cache, goes to the worker pool with copies of what the
 * handler needs. The worker runs the handler against the store and the log
 * and fills in the answer; the job then goes back to its loop
 * (natter_loop_job_done), which sends the answer (if the client is still
 * there) and frees the job. A post parks the job in the log until its
 * message is durable: its answer leaves from the message's outcome, which
 * reaches the loop in one hand-off per batch (natter_loop_ack).
 */
#ifndef NATTER_API_H
#define NATTER_API_H

#include <h2o.h>
#include <jansson.h>
#include <stdint.h>

#include "consumer/tail.h"
#include "core/message.h"
#include "core/ratelimit.h"
#include "ingest/router.h"
#include "ingest/workers.h"
#include "store/store.h"

struct natter_app;
struct natter_loop;
struct natter_http_guard;

typedef struct natter_api_job natter_api_job_t;
struct natter_api_job {
    natter_job_t work;              /* in the worker queue */
    h2o_multithread_message_t done; /* back to its loop, from a worker */
    natter_api_job_t *ack_next;     /* in its loop's stack of durable outcomes */
    natter_api_job_t *claim_next;   /* in the claimer's queue (claims.h) */
    struct natter_app *app;
    struct natter_loop *loop;       /* the loop that answers it */
    natter_route_t route;

    /* the request; body and query are copies when a worker runs the job */
    char *body;
    size_t body_len;
    char *query;
    size_t query_len;
    char token[64];
    size_t token_len;
    char ticket[64]; /* NATTER_A_WS: ?ticket=, a single-use stand-in for the token */
    size_t ticket_len;
    uint64_t client_address; /* logins and registrations: the key of the client's address (auth.h) */
    uint64_t ws_user_id; /* NATTER_A_WS_SEND: the socket's user */
    uint64_t ws_conn_id; /* NATTER_A_WS_SEND: the answer goes to this socket */
    int ws_from_worker;  /* NATTER_A_WS_SEND: went to a worker (its socket's later sends wait for its answer) */

    /* where the answer goes: loop thread only */
    h2o_req_t *req; /* NULL once the client went away */
    struct natter_http_guard *guard;
    const char *ws_client_key; /* NATTER_A_WS: the handshake key, in req's pool */

    /* a post parked in the log: what its answer needs, and the outcome */
    uint64_t chat_id;
    uint64_t sender_id;
    char client_id[NATTER_CLIENT_ID_MAX + 1];
    size_t client_id_len;
    uint64_t msg_id;
    int64_t created_at_ms;
    int durable_status;
    natter_msg_t *held; /* its message, appended held, while its client_id is being claimed */

    /* the answer */
    int status;
    char *resp; /* JSON body or WebSocket frame text; malloc'd */
    size_t resp_len;
    uint32_t retry_after; /* seconds, for 429 */
    natter_ticket_t ws_session; /* NATTER_A_WS: the authenticated user and the session the socket ends with */
};

natter_api_job_t *natter_api_job_new(struct natter_loop *loop, const natter_route_t *route);
void natter_api_job_free(natter_api_job_t *job);
/* Copies body and query (pointing into the request) into the job, for a worker. */
void natter_api_job_copy_request(natter_api_job_t *job, const char *body, size_t body_len, const char *query,
                                 size_t query_len);
/* The worker entry point (job->work.run). */
void natter_api_run(natter_job_t *work);

/* Shared by the handlers (api.c, post.c); each answers the job itself on
 * failure and returns -1 (or NULL), 0 (or the value) on success. */

/* Sets the answer to an error: {"error":{code,message}}, or for a WebSocket
 * send {"type":"error","client_id"?,"error":{…}}. Returns -1. */
int natter_api_fail(natter_api_job_t *job, int status, const char *code, const char *message);
/* Takes one of user's tokens from rl: 0, or -1 with the job answered 429
 * rate_limited with Retry-After. */
int natter_api_rate_limit(natter_api_job_t *job, natter_ratelimit_t *rl, uint64_t user);
/* The same from the user's read budget (--rate-limit-reads): each read is a
 * store query on a worker, and the workers are everyone's. */
int natter_api_reads_limited(natter_api_job_t *job, uint64_t user);
/* 503 for a store error. */
int natter_api_fail_store(natter_api_job_t *job, int rc);
/* 503 with Retry-After for an append the message log refused: busy when its
 * queue is full (NATTER_EFULL), else unavailable. */
int natter_api_fail_log(natter_api_job_t *job, int rc);
/* Sets the answer to a JSON value (taken); NULL means no body. */
void natter_api_reply_json(natter_api_job_t *job, int status, json_t *body);
/* Sets the answer to JSON text written by jsonw (taken). */
void natter_api_reply_written(natter_api_job_t *job, int status, natter_jsonw_t *w);
/* Parses [body, body+len) as a JSON object (400 otherwise). */
json_t *natter_api_body_object(natter_api_job_t *job, const char *body, size_t len);
/* A string field; 1 and s/len when present and a string. */
int natter_api_field_string(json_t *o, const char *key, const char **s, size_t *len);
/* The caller's user, from the session cache or the store (401 otherwise). */
int natter_api_authenticate(natter_api_job_t *job, natter_user_t *user);
/* The same for the caller's id alone (a post's question: one store read
 * where the user's row would be a second). */
int natter_api_authenticate_id(natter_api_job_t *job, uint64_t *user_id);
/* A history-like page's ?after=&before=&limit= (limit 1-200, default 50;
 * absent cursors NATTER_CURSOR_NONE); what names the ids in a 400. */
int natter_api_page_query(natter_api_job_t *job, const char *what, uint64_t *after, uint64_t *before,
                          uint64_t *limit);
/* The chat exists (404) and the user is a member (403); chat, if not NULL, is filled. */
int natter_api_chat_access(natter_api_job_t *job, uint64_t user_id, uint64_t chat_id, natter_chat_t *chat);
/* Appends to out (natter_msg_t * items the caller frees) the route's chat's
 * messages or changes with after < id < before that this node's fan-out
 * read from the log and no store has yet (consumer/tail.h; nothing when the
 * log keeps no such tail), after waiting (when wait is 1; at most half a
 * second) until the node's own writes have been read. Call it before
 * reading the store's page. */
void natter_api_unstored(natter_api_job_t *job, natter_tail_kinds_t kinds, uint64_t after, uint64_t before, int wait,
                         natter_vec_t *out);
/* The route's chat's message message_id as this node's fan-out read it
 * from the log, not stored yet (consumer/tail.h), after waiting (when wait
 * is 1; at most half a second) until the node's own writes have been read:
 * *out the caller's to free; NATTER_ENOTFOUND when the tail does not hold
 * it (or the log keeps none). */
int natter_api_unstored_message(natter_api_job_t *job, uint64_t message_id, int wait, natter_msg_t **out);

#endif
