/*
 * A CQL native protocol v4 client: connections, not statements.
 *
 * A client holds a small pool of connections to every host of the cluster
 * (the contact points plus the peers they report), and the token ring read
 * from system.local / system.peers, so a request with a routing token goes
 * to a replica. Each connection multiplexes many requests by stream id: a
 * reader thread per connection matches responses to waiting calls, so any
 * number of threads may call at once and a caller may have several calls in
 * flight (submit, then wait).
 *
 * Calls block their caller (an API worker or the store consumer), never the
 * event loop, for at most the configured request timeout. A connection that
 * fails fails its calls with NATTER_EUNAVAIL and is replaced on next use (at
 * most one connect attempt per host per second). Prepared statements are
 * re-prepared on the host that answers UNPREPARED. Retries with backoff are
 * for idempotent statements only, on Overloaded, Unavailable, read/write
 * timeouts, bootstrapping and lost connections.
 */
#ifndef NATTER_CQL_CLIENT_H
#define NATTER_CQL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "store/cql/cql_proto.h"

#define CQL_NO_TOKEN INT64_MIN /* a request with no routing token goes to any host */

typedef struct cql_client_config {
    const char *hosts;     /* "host:port[,host:port...]" */
    const char *user;      /* NULL: no authentication */
    const char *password;
    unsigned conns_per_host;
    unsigned timeout_ms;   /* per request */
} cql_client_config_t;

typedef struct cql_client cql_client_t;
typedef struct cql_call cql_call_t;

/* A response: the frame (owned) and its parse (slices point into it). */
typedef struct cql_result {
    uint8_t *frame;
    size_t len;
    cql_response_t resp;
} cql_result_t;

void cql_result_free(cql_result_t *r);

/* Connects to the contact points, authenticates, reads the ring. 0, or
 * NATTER_EUNAVAIL with the reason in err. */
int cql_client_open(cql_client_t **out, const cql_client_config_t *cfg, char *err, size_t errlen);
void cql_client_close(cql_client_t *c);

/* A prepared statement, cached by its text; valid until the client closes. */
typedef struct cql_stmt cql_stmt_t;
int cql_client_prepare(cql_client_t *c, const char *query, cql_stmt_t **out, char *err, size_t errlen);

/* Runs a QUERY (unprepared: schema statements and the like). On success
 * *out holds a RESULT; a server ERROR comes back as its natter code with the
 * message in err. */
int cql_client_query(cql_client_t *c, const char *query, const cql_query_params_t *qp, cql_result_t *out,
                     char *err, size_t errlen);

/* EXECUTE and BATCH as asynchronous calls: submitting never blocks on the
 * server (only on a connect); wait blocks until the answer or the timeout
 * and frees the call. idempotent allows retries. A call no host would take
 * still comes back, and its wait reports why; NULL means the request did
 * not fit the protocol, and wait(NULL, ...) reports that. */
cql_call_t *cql_client_execute(cql_client_t *c, cql_stmt_t *st, const cql_query_params_t *qp, int64_t token,
                               int idempotent);
/* A BATCH of one prepared statement run for nrows rows of values
 * (values holds nrows * per_row of them, row after row). */
cql_call_t *cql_client_batch(cql_client_t *c, const cql_batch_params_t *bp, cql_stmt_t *st,
                             const cql_value_t *values, size_t per_row, size_t nrows, int64_t token, int idempotent);
/* 0 with *out a RESULT (out may be NULL to drop it), or the error. */
int cql_call_wait(cql_call_t *call, cql_result_t *out, char *err, size_t errlen);

/* 0 when at least one host answers. */
int cql_client_ping(cql_client_t *c);

#endif
