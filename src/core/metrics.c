#include "core/metrics.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

natter_metrics_t natter_metrics;

static const uint64_t bucket_ns[NATTER_HIST_BUCKETS] = {
    500000ull,    1000000ull,   2000000ull,    4000000ull,    8000000ull,    16000000ull,   32000000ull,
    64000000ull,  128000000ull, 256000000ull,  512000000ull,  1024000000ull, 2048000000ull, 4096000000ull,
};

void natter_hist_observe_ns(natter_hist_t *h, uint64_t ns)
{
    size_t i = 0;
    while (i < NATTER_HIST_BUCKETS && ns > bucket_ns[i])
        i++;
    natter_count(&h->buckets[i], 1);
    natter_count(&h->count, 1);
    natter_count(&h->sum_ns, ns);
}

void natter_metrics_set_partitions(int32_t n)
{
    atomic_store(&natter_metrics.partitions, n < NATTER_METRICS_PARTITIONS ? n : NATTER_METRICS_PARTITIONS);
}

void natter_metrics_set_partition_lag(int32_t partition, int64_t lag)
{
    if (partition >= 0 && partition < NATTER_METRICS_PARTITIONS)
        atomic_store_explicit(&natter_metrics.partition_lag[partition], lag, memory_order_relaxed);
}

typedef struct {
    char *buf;
    size_t len, cap;
} out_t;

static void emit(out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (size_t)n;
        o->buf = xrealloc(o->buf, o->cap);
    }
}

static uint64_t get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void counter(out_t *o, const char *name, const char *help, uint64_t v)
{
    emit(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void gauge(out_t *o, const char *name, const char *help, double v)
{
    emit(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void histogram(out_t *o, const char *name, const char *help, natter_hist_t *h, double unit)
{
    uint64_t cum = 0;
    emit(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < NATTER_HIST_BUCKETS; i++) {
        cum += get(&h->buckets[i]);
        emit(o, "%s_bucket{le=\"%.17g\"} %llu\n", name, (double)bucket_ns[i] / unit, (unsigned long long)cum);
    }
    cum += get(&h->buckets[NATTER_HIST_BUCKETS]);
    emit(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name, (unsigned long long)cum, name,
         (double)get(&h->sum_ns) / unit, name, (unsigned long long)get(&h->count));
}

static double resident_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

char *natter_metrics_render(size_t *len)
{
    natter_metrics_t *m = &natter_metrics;
    out_t o = {xmalloc(8192), 0, 8192};
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    counter(&o, "natter_messages_posted_total", "Messages accepted by ingest and appended to the log.",
            get(&m->messages_posted));
    counter(&o, "natter_messages_consumed_total", "Messages read from the log by the store consumer.",
            get(&m->messages_consumed));
    counter(&o, "natter_messages_stored_total", "Messages written to the store.", get(&m->messages_stored));
    counter(&o, "natter_messages_delivered_total", "Message frames queued to WebSocket connections.",
            get(&m->messages_delivered));
    counter(&o, "natter_store_errors_total", "Store batch writes that failed.", get(&m->store_errors));
    int32_t parts = atomic_load(&m->partitions);
    if (parts == 0) {
        gauge(&o, "natter_consumer_lag", "Messages in the log not yet stored.",
              (double)(get(&m->messages_posted) - get(&m->messages_stored)));
    } else {
        int64_t total = 0;
        emit(&o, "# HELP natter_consumer_lag Messages in the log not yet stored, by partition and in total.\n"
                 "# TYPE natter_consumer_lag gauge\n");
        for (int32_t p = 0; p < parts; p++) {
            int64_t lag = atomic_load_explicit(&m->partition_lag[p], memory_order_relaxed);
            total += lag;
            emit(&o, "natter_consumer_lag{partition=\"%d\"} %lld\n", p, (long long)lag);
        }
        emit(&o, "natter_consumer_lag{partition=\"all\"} %lld\n", (long long)total);
    }
    gauge(&o, "natter_batches_in_flight", "Store batches being written now.", (double)get(&m->batches_in_flight));
    gauge(&o, "natter_websockets_open", "Open WebSocket connections.", (double)get(&m->ws_open));
    counter(&o, "natter_websockets_slow_closed_total", "WebSockets closed because their send queue was full.",
            get(&m->ws_slow_closed));
    emit(&o, "# HELP natter_http_requests_total HTTP requests answered, by status class.\n"
             "# TYPE natter_http_requests_total counter\n");
    for (int c = 1; c <= 5; c++)
        emit(&o, "natter_http_requests_total{code=\"%dxx\"} %llu\n", c,
             (unsigned long long)get(&m->http_by_class[c]));
    histogram(&o, "natter_store_batch_duration_seconds", "Time to write one batch to the store.", &m->store_batch,
              1e9);
    histogram(&o, "natter_broadcast_duration_seconds", "Time to fan one batch out to WebSockets.", &m->broadcast,
              1e9);
    histogram(&o, "natter_loop_duration_seconds", "Time of one consumer loop: store, commit, hand-off.", &m->loop,
              1e9);
    histogram(&o, "natter_end_to_end_latency_seconds", "Time from ingest to push, per message.", &m->end_to_end,
              1e9);
    emit(&o, "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
             "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n",
         (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    gauge(&o, "process_resident_memory_bytes", "Resident memory size.", resident_bytes());
    *len = o.len;
    return o.buf;
}
