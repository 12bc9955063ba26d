/*
 * A CQL native protocol v4 client: connections, not statements.
 *
 * Hosts. A client starts from its contact points and reads the ring from
 * the first one that answers (system.local and system.peers): every node
 * becomes a host, reached at its rpc_address on the contact point's port.
 * Each host has a small pool of connections; each connection multiplexes
 * many requests by stream id, with a reader thread matching answers to
 * waiting calls, so any number of threads may call at once and a caller may
 * have several calls in flight (submit, then wait). One more connection, to
 * a node of the ring, is REGISTERed for the cluster's TOPOLOGY_CHANGE and
 * STATUS_CHANGE events; the ring is read again (from that node) a second
 * after an event, whenever that connection is opened anew, and every
 * minute: a node that joined becomes a host and gets its share of the
 * requests, one that left the ring gets none and its connections are
 * closed. The client holds 64 hosts at once: past that, a new node takes
 * the place of one that left the ring (said on stderr), and is left out
 * (said once) only when all 64 are still in use.
 *
 * Routing. A request with a routing token goes to the node owning the token
 * (the first ring token at or after it), else to the next distinct nodes
 * clockwise — the replicas of SimpleStrategy, and of NetworkTopologyStrategy
 * in one datacenter and rack — else to any other host of the ring: the first
 * of them that is up takes it. A request without a token goes to the
 * ring's hosts in turn.
 *
 * Host state. A host is down from the moment a connect to it fails or a
 * connection to it breaks (the node died, or stopped answering: see below)
 * until a reconnect succeeds; requests go around it. A monitor thread per
 * client retries a down host of the ring after a back-off doubling from
 * 100 ms to 2 s, and closes connections that went silent. An event never
 * marks a host down or up by itself.
 *
 * Time. A request's timeout runs from the moment it is sent. Calls block
 * their caller (an API worker or the store consumer), never the event loop.
 * A connection that fails fails its calls with NATTER_EUNAVAIL. A call that
 * times out gives up its stream, which comes back when the late answer
 * arrives; a connection holding half its streams that way is closed and
 * replaced, and one where a request timed out and nothing at all came back
 * for another timeout is closed and its host marked down: a silent server
 * cannot take every stream.
 *
 * Statements are prepared on every host that is up; a host that answers
 * UNPREPARED (it restarted without them, joined later, or the table's schema
 * changed) gets
 * the statement again and the request is sent again. Retries with back-off
 * (100, 200, 400 ms) are for idempotent statements only, on Overloaded,
 * Unavailable, read/write timeouts, bootstrapping and lost connections, and
 * go to the next host in routing order when the first is down. A QUERY whose
 * answer is a schema change returns once every host that is up reports the
 * same schema version (or after schema_wait_ms).
 */
#ifndef NATTER_CQL_CLIENT_H
#define NATTER_CQL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "store/cql/cql_proto.h"

#define CQL_NO_TOKEN INT64_MIN /* a request with no routing token goes to any host */

typedef struct cql_client_config {
    const char *hosts;       /* contact points "host:port[,host:port...]" (port 9042 when left out) */
    const char *user;        /* NULL: no authentication */
    const char *password;
    unsigned conns_per_host; /* 0: 2 */
    unsigned timeout_ms;     /* per request, from its send; 0: 5000 */
    unsigned schema_wait_ms; /* bound on waiting for schema agreement after DDL; 0: 10000 */
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

/* Connects to the contact points, authenticates, reads the ring and
 * connects to every node of it. 0, or NATTER_EUNAVAIL (NATTER_EINVAL for a
 * bad host list) with the reason in err. */
int cql_client_open(cql_client_t **out, const cql_client_config_t *cfg, char *err, size_t errlen);
/* Ends every connection and frees the client; no call may be in flight. */
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

/* What the client counts per host, for /metrics and tests. */
typedef struct cql_host_stats {
    char address[272];   /* "host:port", as the client reaches it */
    int in_ring;         /* 1 while it owns tokens of the ring the client routes by */
    int up;              /* 1 while requests may go there (see Host state) */
    uint64_t requests;   /* request frames sent to it: statements and PREPAREs, not the client's own reads of
                          * the ring and the schema (which would blur which node served what) */
    uint64_t errors;     /* of those: not answered in time, lost with their connection, or answered with an
                          * error other than UNPREPARED */
    uint64_t reprepares; /* statements prepared again because it answered UNPREPARED */
} cql_host_stats_t;

/* Fills out with up to max hosts, in the client's order (the contact
 * points first); returns how many hosts there are. Safe from any thread. */
size_t cql_client_hosts(cql_client_t *c, cql_host_stats_t *out, size_t max);

typedef struct cql_client_stats {
    uint64_t events;       /* cluster events received (topology, status) */
    uint64_t ring_changes; /* times the ring read again differed from the one routed by */
    uint64_t ring_reads;   /* rings read whole (at open, then again), changed or not */
} cql_client_stats_t;

void cql_client_stats(cql_client_t *c, cql_client_stats_t *out);

#endif
