/*
 * The HTTP front door, on each event loop: h2o's configuration (shared by
 * every loop), each loop's listener, the request handler that routes, runs
 * the post hot path and hands other work to the API workers, and the
 * sending of answers.
 */
#ifndef NATTER_HTTP_H
#define NATTER_HTTP_H

#include <stddef.h>

#include "ingest/api.h"

struct natter_app;
struct natter_loop;

/* h2o's global configuration and natter's handler in it, and with
 * --tls-cert the TLS context every loop's listener uses; once, before any
 * loop. 0, or NATTER_E* with a reason in err. */
int natter_http_configure(struct natter_app *app, char *err, size_t errlen);
/* 1 when the node serves HTTPS and WSS. */
int natter_http_tls(const struct natter_app *app);
/* Checks that the listen address is free for natter alone: another process
 * holding the port with SO_REUSEPORT would otherwise share its connections
 * with ours. 0, or NATTER_E* with a reason in err. */
int natter_http_check_address(struct natter_app *app, char *err, size_t errlen);
/* Opens the loop's own listener (SO_REUSEPORT) and accepts on it. */
int natter_http_listen(struct natter_loop *loop, char *err, size_t errlen);
/* Stops accepting connections on the loop. */
void natter_http_stop_listening(struct natter_loop *loop);
/* Sends the job's answer to its request or its WebSocket, if still there,
 * and frees the job. On the job's loop. */
void natter_http_answer(struct natter_loop *loop, natter_api_job_t *job);

#endif
