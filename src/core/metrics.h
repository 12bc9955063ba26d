/*
 * Process-wide counters and histograms, exported at GET /metrics in the
 * Prometheus text format. Updates are relaxed atomic adds: no lock on any
 * hot path; a scrape reads each value once (values may be mutually a few
 * events apart, which Prometheus tolerates).
 */
#ifndef NATTER_METRICS_H
#define NATTER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define NATTER_HIST_BUCKETS 14 /* 0.5 ms .. 4 s, doubling, plus +Inf */
#define NATTER_METRICS_PARTITIONS 1024

typedef struct natter_hist {
    _Atomic uint64_t buckets[NATTER_HIST_BUCKETS + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} natter_hist_t;

typedef struct natter_metrics {
    _Atomic uint64_t messages_posted;    /* accepted by ingest and appended to the log */
    _Atomic uint64_t messages_consumed;  /* polled from the log by the store consumer */
    _Atomic uint64_t messages_stored;
    _Atomic uint64_t messages_delivered; /* frames queued to WebSockets */
    _Atomic uint64_t batches_in_flight;
    _Atomic uint64_t ws_open;
    _Atomic uint64_t ws_slow_closed;
    _Atomic uint64_t http_by_class[6];   /* index status/100 */
    _Atomic uint64_t store_errors;
    natter_hist_t store_batch;           /* store write of one batch */
    natter_hist_t broadcast;             /* fan-out of one batch on the loop */
    natter_hist_t loop;                  /* poll -> store -> commit -> fan-out hand-off of one batch */
    natter_hist_t end_to_end;            /* ingest -> pushed to sockets, per message */
    /* consumer lag per log partition, when the log has partitions (Kafka);
     * with none, lag is messages posted here minus messages stored here */
    _Atomic int32_t partitions;
    _Atomic int64_t partition_lag[NATTER_METRICS_PARTITIONS];
} natter_metrics_t;

extern natter_metrics_t natter_metrics;

static inline void natter_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void natter_hist_observe_ns(natter_hist_t *h, uint64_t ns);
void natter_metrics_set_partitions(int32_t n);
void natter_metrics_set_partition_lag(int32_t partition, int64_t lag);
/* Renders every metric; returns a malloc'd string and its length. */
char *natter_metrics_render(size_t *len);

#endif
