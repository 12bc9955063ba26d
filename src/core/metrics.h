/*
 * Process-wide counters and histograms, exported at GET /metrics in the
 * Prometheus text format (0.0.4). Updates are relaxed atomic adds: no lock on
 * any hot path; a scrape reads each value once (values may be mutually a few
 * events apart, which Prometheus tolerates).
 *
 * Names follow Prometheus conventions: counters end in _total, durations are
 * in seconds (_seconds), sizes are unit-less counts of messages, and the sum
 * or the max over every label of a family means something.
 */
#ifndef NATTER_METRICS_H
#define NATTER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define NATTER_HIST_MAX_BUCKETS 20  /* finite upper bounds; +Inf is one more */
#define NATTER_METRICS_PARTITIONS 1024
#define NATTER_METRICS_ROUTES 32    /* route slots for HTTP requests (the router's actions) */
#define NATTER_METRICS_STATUS_MIN 100
#define NATTER_METRICS_STATUS_MAX 599

/* A histogram over fixed upper bounds ("le"), cumulative only when rendered.
 * Observations are in the histogram's base unit before scaling: nanoseconds
 * for durations (rendered in seconds), messages for sizes. */
typedef struct natter_hist {
    const uint64_t *le; /* ascending finite upper bounds, n of them; set at definition */
    size_t n;
    _Atomic uint64_t buckets[NATTER_HIST_MAX_BUCKETS + 1]; /* per bucket, the last one is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
} natter_hist_t;

/* What events add to: counters, gauges that go up and down, histograms.
 * Each event loop has a shard of its own (one writer, so its cache lines
 * stay on its core); every other thread (workers, the store consumer, the
 * log's threads) adds to the process's shared shard. A scrape sums them. */
typedef struct natter_metrics_shard {
    _Atomic uint64_t messages_posted;    /* accepted by ingest and appended to the log */
    _Atomic uint64_t messages_failed;    /* appended, then not made durable: answered 503 */
    _Atomic uint64_t messages_consumed;  /* polled from the log by the store consumer */
    _Atomic uint64_t messages_stored;
    _Atomic uint64_t messages_delivered; /* frames queued to WebSockets */
    _Atomic uint64_t batches_in_flight;
    _Atomic uint64_t unstored_tail;      /* messages in the unstored tail (consumer/tail.h) */
    _Atomic uint64_t ws_open;
    _Atomic uint64_t ws_slow_closed;     /* closed (1008) because their send queue was full */
    _Atomic uint64_t ws_flood_closed;    /* closed (1008) for sending faster than answers came back */
    _Atomic uint64_t ws_shed_closed;     /* closed (1013) because their loop could not keep up with fan-out */
    _Atomic uint64_t ws_session_closed;  /* closed (4001) because their session ended or expired */
    _Atomic uint64_t ws_ping_timeouts;   /* closed (1001) because they did not answer a ping in time */
    _Atomic uint64_t ws_protocol_closed; /* closed because the client broke RFC 6455 (1002, 1007, 1009) */
    _Atomic uint64_t store_errors;
    _Atomic uint64_t dead_letters;       /* records the store refused for good, kept in the dead-letter topic */
    _Atomic uint64_t kafka_hold_by_count; /* --kafka-hold: a partition's held posts sent on reaching --kafka-hold-batch */
    _Atomic uint64_t kafka_hold_by_time;  /* ... or when the hold was up (or the log closed) */
    _Atomic uint64_t own_writes_wait_timeouts; /* reads that did not see this node's fan-out pass its own writes in time */
    _Atomic uint64_t busy_rejected;      /* requests answered 503 busy: a bounded queue was full */
    _Atomic uint64_t in_flight_waits_skipped; /* changes to a message not found that did not wait for it: half the workers were */
    _Atomic uint64_t accept_paused;      /* times a loop stopped accepting for a moment: out of file descriptors */
    _Atomic uint64_t at_capacity;        /* WebSocket upgrades answered 503: the node was at --max-connections */
    _Atomic uint64_t ephemeral_published; /* typing, read and presence records this node put on the ephemeral path */
    _Atomic uint64_t ephemeral_received;  /* records this node's ephemeral thread read from it */
    _Atomic uint64_t ephemeral_delivered; /* typing, read and presence frames queued to WebSockets */
    _Atomic uint64_t typing_dropped;      /* typing frames dropped by a throttle (one per user and chat per 2 s) */
    _Atomic uint64_t presence_changes;    /* users whose online state changed, as this node saw it */
    /* answered HTTP requests by route slot and status code (100..599) */
    _Atomic uint64_t http[NATTER_METRICS_ROUTES][NATTER_METRICS_STATUS_MAX - NATTER_METRICS_STATUS_MIN + 1];
    natter_hist_t store_batch;           /* store write of one batch, ns */
    natter_hist_t store_batch_size;      /* messages in one store batch */
    natter_hist_t store_sync;            /* one sync of the batches written before it, ns */
    natter_hist_t broadcast;             /* fan-out of one batch on a loop, ns */
    natter_hist_t loop;                  /* poll -> store -> commit -> fan-out hand-off of one batch, ns */
    natter_hist_t end_to_end;            /* ingest -> pushed to sockets, per message, ns */
    natter_hist_t log_append;            /* a post appended to the log -> durable there or given up (its 202 or 503), ns */
} natter_metrics_shard_t;

#define NATTER_METRICS_SHARDS_MAX 256

typedef struct natter_metrics {
    natter_metrics_shard_t shared;       /* threads without a shard of their own */
    natter_metrics_shard_t *loops[NATTER_METRICS_SHARDS_MAX]; /* one per event loop, registered at start */
    _Atomic size_t nloops;
    /* consumer lag per log partition, when the log has partitions (Kafka);
     * with none, lag is messages posted here minus messages stored here */
    _Atomic int64_t connections;         /* open HTTP connections and WebSockets: --max-connections counts these */
    _Atomic int32_t partitions;
    _Atomic int64_t partition_lag[NATTER_METRICS_PARTITIONS];
    int64_t start_time_ms;               /* set once by natter_metrics_init, before any thread */
} natter_metrics_t;

extern natter_metrics_t natter_metrics;
/* This thread's shard: its loop's once natter_metrics_use() ran on it, else
 * the shared one. */
extern _Thread_local natter_metrics_shard_t *natter_metrics_here;

static inline natter_metrics_shard_t *natter_m(void)
{
    return natter_metrics_here;
}

/* The labels of one HTTP route slot: the method and the route template the
 * router matched ("/chats/{id}/messages"), never the raw path, so the number
 * of series stays bounded. A slot whose path is NULL is never rendered. */
typedef struct natter_metrics_route {
    const char *method;
    const char *path;
} natter_metrics_route_t;

static inline void natter_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Records the process start time (process_start_time_seconds). */
void natter_metrics_init(void);
/* Makes a shard (histogram bounds set, every count zero) and registers it
 * with the scrape; call before the threads that use it start. NULL when
 * NATTER_METRICS_SHARDS_MAX are taken. Shards live as long as the process. */
natter_metrics_shard_t *natter_metrics_shard_new(void);
/* From now on this thread counts into shard. */
void natter_metrics_use(natter_metrics_shard_t *shard);
void natter_hist_observe(natter_hist_t *h, uint64_t v);
/* Counts one answered request; a route >= NATTER_METRICS_ROUTES is not
 * counted, a status outside 100..599 is counted as the nearest bound. */
void natter_metrics_count_http(unsigned route, int status);
void natter_metrics_set_partitions(int32_t n);
void natter_metrics_set_partition_lag(int32_t partition, int64_t lag);
/* One extra renderer for families a module keeps itself (the store's CQL
 * client counters), called at the end of every natter_metrics_render with
 * a function that appends text to the scrape; fn NULL removes it. Setting
 * waits for a render in progress, so arg may be freed once it returns. */
typedef void (*natter_metrics_append_fn)(void *out, const char *text, size_t len);
typedef void (*natter_metrics_extra_fn)(void *arg, natter_metrics_append_fn append, void *out);
void natter_metrics_set_extra(natter_metrics_extra_fn fn, void *arg);
/* Renders every metric; routes[i] names HTTP route slot i (nroutes of them).
 * Returns a malloc'd string (the caller frees it) and its length. */
char *natter_metrics_render(const natter_metrics_route_t *routes, size_t nroutes, size_t *len);

#endif
