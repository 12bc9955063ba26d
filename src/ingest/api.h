/*
 * The API's request handling, run on worker threads.
 *
 * The loop thread turns an HTTP request (or a WebSocket "send" frame) into a
 * natter_api_job_t holding copies of everything the handler needs, submits
 * it to the worker pool and forgets it. The worker runs the handler against
 * the store and the log and fills in the answer; the job then travels back
 * to the loop through app->api_done, where the loop sends the answer (if
 * the client is still there) and frees the job. A message post parks the job
 * in the log until the message is durable: its answer leaves from the
 * message's on_durable callback.
 */
#ifndef NATTER_API_H
#define NATTER_API_H

#include <h2o.h>
#include <stdint.h>

#include "ingest/router.h"
#include "ingest/workers.h"

struct natter_app;
struct natter_http_guard;

typedef struct natter_api_job {
    natter_job_t work;                /* in the worker queue */
    h2o_multithread_message_t done;   /* back to the loop */
    struct natter_app *app;
    natter_route_t route;

    /* request, copied off the loop */
    char *body;
    size_t body_len;
    char *query;
    size_t query_len;
    char token[64];
    size_t token_len;
    uint64_t ws_user_id;              /* NATTER_A_WS_SEND: the socket's user */
    uint64_t ws_conn_id;              /* NATTER_A_WS_SEND: reply goes to this socket */

    /* where the answer goes: loop thread only */
    h2o_req_t *req;                   /* NULL once the client went away */
    struct natter_http_guard *guard;
    const char *ws_client_key;        /* NATTER_A_WS: the handshake key, in req's pool */

    /* answer, filled by the worker (or the durable callback) */
    int status;
    char *resp;                       /* JSON body or WebSocket frame text; malloc'd */
    size_t resp_len;
    uint32_t retry_after;             /* seconds, for 429 */
    uint64_t user_id;                 /* NATTER_A_WS: the authenticated user */
} natter_api_job_t;

natter_api_job_t *natter_api_job_new(struct natter_app *app, const natter_route_t *route);
void natter_api_job_free(natter_api_job_t *job);
/* The worker entry point (job->work.run). */
void natter_api_run(natter_job_t *work);

#endif
