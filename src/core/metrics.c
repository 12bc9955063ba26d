#include "core/metrics.h"
#include "core/util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Durations: 25 us doubling to 13.1 s, fine enough for a p99 within a
 * factor of two anywhere between a broadcast (tens of microseconds) and an
 * overloaded end to end (seconds). */
static const uint64_t duration_le_ns[] = {
    25000ull,     50000ull,     100000ull,     200000ull,     400000ull,     800000ull,     1600000ull,
    3200000ull,   6400000ull,   12800000ull,   25600000ull,   51200000ull,   102400000ull,  204800000ull,
    409600000ull, 819200000ull, 1638400000ull, 3276800000ull, 6553600000ull, 13107200000ull,
};
/* Batch sizes: 1 doubling to 8192 messages. */
static const uint64_t size_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define DURATION_HIST {.le = duration_le_ns, .n = NELEMS(duration_le_ns)}
_Static_assert(NELEMS(duration_le_ns) <= NATTER_HIST_MAX_BUCKETS, "too many duration buckets");
_Static_assert(NELEMS(size_le) <= NATTER_HIST_MAX_BUCKETS, "too many size buckets");

#define SHARD_INIT                                                                                                   \
    {                                                                                                                \
        .store_batch = DURATION_HIST, .store_batch_size = {.le = size_le, .n = NELEMS(size_le)},                     \
        .store_sync = DURATION_HIST,                                                                                 \
        .broadcast = DURATION_HIST, .loop = DURATION_HIST, .end_to_end = DURATION_HIST,                              \
        .log_append = DURATION_HIST,                                                                                 \
    }

natter_metrics_t natter_metrics = {.shared = SHARD_INIT};
_Thread_local natter_metrics_shard_t *natter_metrics_here = &natter_metrics.shared;

void natter_metrics_init(void)
{
    natter_metrics.start_time_ms = natter_now_ms();
}

natter_metrics_shard_t *natter_metrics_shard_new(void)
{
    size_t i = atomic_load(&natter_metrics.nloops);
    if (i >= NATTER_METRICS_SHARDS_MAX)
        return NULL;
    natter_metrics_shard_t *s = xmalloc(sizeof(*s));
    *s = (natter_metrics_shard_t)SHARD_INIT;
    natter_metrics.loops[i] = s;
    atomic_store(&natter_metrics.nloops, i + 1);
    return s;
}

void natter_metrics_use(natter_metrics_shard_t *shard)
{
    natter_metrics_here = shard;
}

void natter_hist_observe(natter_hist_t *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    natter_count(&h->buckets[i], 1);
    natter_count(&h->count, 1);
    natter_count(&h->sum, v);
}

void natter_metrics_count_http(unsigned route, int status)
{
    if (route >= NATTER_METRICS_ROUTES)
        return;
    if (status < NATTER_METRICS_STATUS_MIN)
        status = NATTER_METRICS_STATUS_MIN;
    else if (status > NATTER_METRICS_STATUS_MAX)
        status = NATTER_METRICS_STATUS_MAX;
    natter_count(&natter_m()->http[route][status - NATTER_METRICS_STATUS_MIN], 1);
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

static void family(out_t *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(out_t *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "counter", help);
    emit(o, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(out_t *o, const char *name, const char *help, double v)
{
    family(o, name, "gauge", help);
    emit(o, "%s %.17g\n", name, v);
}

/* v / 10^decimals in shortest exact decimal: 25000 ns, 9 -> "0.000025". */
static void emit_scaled(out_t *o, uint64_t v, unsigned decimals)
{
    uint64_t div = 1;
    for (unsigned i = 0; i < decimals; i++)
        div *= 10;
    uint64_t frac = v % div;
    emit(o, "%llu", (unsigned long long)(v / div));
    if (frac == 0)
        return;
    char digits[24];
    snprintf(digits, sizeof(digits), "%0*llu", (int)decimals, (unsigned long long)frac);
    size_t n = strlen(digits);
    while (n > 0 && digits[n - 1] == '0')
        n--;
    emit(o, ".%.*s", (int)n, digits);
}

/* decimals: 9 renders nanoseconds as seconds, 0 renders plain counts. */
static void histogram(out_t *o, const char *name, const char *help, natter_hist_t *h, unsigned decimals)
{
    uint64_t cum = 0;
    family(o, name, "histogram", help);
    for (size_t i = 0; i < h->n; i++) {
        cum += get(&h->buckets[i]);
        emit(o, "%s_bucket{le=\"", name);
        emit_scaled(o, h->le[i], decimals);
        emit(o, "\"} %llu\n", (unsigned long long)cum);
    }
    cum += get(&h->buckets[h->n]);
    emit(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name, (unsigned long long)cum, name);
    emit_scaled(o, get(&h->sum), decimals);
    /* _count is the +Inf bucket, as the format requires: the counters are
     * read one by one while others add, so h->count could disagree */
    emit(o, "\n%s_count %llu\n", name, (unsigned long long)cum);
}

/* The sum over every shard of the counter at byte offset off of a shard. */
static uint64_t sum_at(size_t off)
{
    natter_metrics_t *m = &natter_metrics;
    uint64_t v = get((_Atomic uint64_t *)((char *)&m->shared + off));
    size_t n = atomic_load(&m->nloops);
    for (size_t i = 0; i < n; i++)
        v += get((_Atomic uint64_t *)((char *)m->loops[i] + off));
    return v;
}

#define SUM(field) sum_at(offsetof(natter_metrics_shard_t, field))

/* The sum over every shard of the histogram at byte offset off, into out. */
static void sum_hist(size_t off, natter_hist_t *out)
{
    natter_metrics_t *m = &natter_metrics;
    const natter_hist_t *first = (const natter_hist_t *)((char *)&m->shared + off);
    out->le = first->le;
    out->n = first->n;
    for (size_t b = 0; b <= out->n; b++)
        atomic_init(&out->buckets[b], sum_at(off + offsetof(natter_hist_t, buckets) + b * sizeof(uint64_t)));
    atomic_init(&out->count, sum_at(off + offsetof(natter_hist_t, count)));
    atomic_init(&out->sum, sum_at(off + offsetof(natter_hist_t, sum)));
}

static void summed_histogram(out_t *o, const char *name, const char *help, size_t off, unsigned decimals)
{
    natter_hist_t h;
    sum_hist(off, &h);
    histogram(o, name, help, &h, decimals);
}

#define HIST(field) offsetof(natter_metrics_shard_t, field)

static void consumer_lag(out_t *o, natter_metrics_t *m)
{
    int32_t parts = atomic_load(&m->partitions);
    if (parts == 0) {
        /* what left the log, stored or given up (answered 503), is read
         * first, so a later read of posted includes it; the clamp covers a
         * batch stored before its appender counted it posted */
        uint64_t gone = SUM(messages_stored) + SUM(messages_failed), posted = SUM(messages_posted);
        gauge(o, "natter_consumer_lag", "Messages in the log not yet stored.",
              posted > gone ? (double)(posted - gone) : 0.0);
        return;
    }
    family(o, "natter_consumer_lag", "gauge",
           "Messages in the log not yet stored, by partition (every node reports the whole group).");
    for (int32_t p = 0; p < parts; p++)
        emit(o, "natter_consumer_lag{partition=\"%d\"} %lld\n", p,
             (long long)atomic_load_explicit(&m->partition_lag[p], memory_order_relaxed));
}

/* How the kernel spread the sockets over the loops (SO_REUSEPORT hashes
 * each connection to one listener). */
static void per_loop_websockets(out_t *o, natter_metrics_t *m)
{
    size_t n = atomic_load(&m->nloops);
    family(o, "natter_loop_websockets_open", "gauge", "Open WebSocket connections, by event loop.");
    for (size_t i = 0; i < n; i++)
        emit(o, "natter_loop_websockets_open{loop=\"%zu\"} %llu\n", i, (unsigned long long)get(&m->loops[i]->ws_open));
}

static void http_requests(out_t *o, const natter_metrics_route_t *routes, size_t nroutes)
{
    family(o, "natter_http_requests_total", "counter",
           "HTTP requests answered, by method, route template and status code.");
    for (size_t r = 0; r < nroutes && r < NATTER_METRICS_ROUTES; r++) {
        if (routes[r].path == NULL)
            continue;
        for (int s = NATTER_METRICS_STATUS_MIN; s <= NATTER_METRICS_STATUS_MAX; s++) {
            uint64_t v = SUM(http[r][s - NATTER_METRICS_STATUS_MIN]);
            if (v != 0)
                emit(o, "natter_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                     routes[r].method, routes[r].path, s, (unsigned long long)v);
        }
    }
}

/* Counting /proc/self/fd costs ~2 µs a descriptor (18 ms at 10,000
 * sockets) and /metrics is answered on the loop, so the count is reused
 * for a second: a scraper polling fast cannot stall the loop with it. */
static int open_fds(void)
{
    static _Atomic uint64_t counted_at;
    static _Atomic int counted;
    uint64_t now = natter_mono_ns(), at = atomic_load(&counted_at);
    if (at != 0 && now - at < 1000000000u)
        return atomic_load(&counted);
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    n = n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
    atomic_store(&counted, n);
    atomic_store(&counted_at, now);
    return n;
}

static void process(out_t *o, natter_metrics_t *m)
{
    struct rusage ru;
    struct rlimit rl;
    long size = 0, rss = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            size = rss = 0;
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    family(o, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
    emit(o, "process_cpu_seconds_total %.6f\n",
         (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    gauge(o, "process_resident_memory_bytes", "Resident memory size in bytes.", (double)rss * (double)page);
    gauge(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", (double)size * (double)page);
    gauge(o, "process_open_fds", "Number of open file descriptors.", (double)open_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        gauge(o, "process_max_fds", "Maximum number of open file descriptors.", (double)rl.rlim_cur);
    family(o, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
    emit(o, "process_start_time_seconds ");
    emit_scaled(o, (uint64_t)m->start_time_ms, 3);
    emit(o, "\n");
}

/* The extra renderer; its lock is held across the call so that removing it
 * waits for a scrape that is using it. */
static pthread_mutex_t extra_lock = PTHREAD_MUTEX_INITIALIZER;
static natter_metrics_extra_fn extra_fn;
static void *extra_arg;

void natter_metrics_set_extra(natter_metrics_extra_fn fn, void *arg)
{
    pthread_mutex_lock(&extra_lock);
    extra_fn = fn;
    extra_arg = arg;
    pthread_mutex_unlock(&extra_lock);
}

static void append_text(void *out, const char *text, size_t len)
{
    emit(out, "%.*s", (int)len, text);
}

char *natter_metrics_render(const natter_metrics_route_t *routes, size_t nroutes, size_t *len)
{
    natter_metrics_t *m = &natter_metrics;
    out_t o = {xmalloc(16384), 0, 16384};

    counter(&o, "natter_messages_posted_total", "Messages accepted by ingest and appended to the log.",
            SUM(messages_posted));
    counter(&o, "natter_messages_failed_total",
            "Messages appended to the log that it then failed to make durable (answered 503).",
            SUM(messages_failed));
    counter(&o, "natter_messages_consumed_total", "Messages read from the log by the store consumer.",
            SUM(messages_consumed));
    counter(&o, "natter_messages_stored_total", "Messages written to the store.", SUM(messages_stored));
    counter(&o, "natter_messages_delivered_total", "Message frames queued to WebSocket connections.",
            SUM(messages_delivered));
    counter(&o, "natter_store_errors_total", "Store batch writes that failed.", SUM(store_errors));
    counter(&o, "natter_dead_letters_total", "Records the store refused for good, kept in the dead-letter topic.",
            SUM(dead_letters));
    family(&o, "natter_kafka_hold_releases_total", "counter",
           "Times a partition's posts held by --kafka-hold went to the producer together: by count "
           "(--kafka-hold-batch waited) or by time (the hold was up, or the log closed).");
    emit(&o, "natter_kafka_hold_releases_total{by=\"count\"} %llu\n", (unsigned long long)SUM(kafka_hold_by_count));
    emit(&o, "natter_kafka_hold_releases_total{by=\"time\"} %llu\n", (unsigned long long)SUM(kafka_hold_by_time));
    counter(&o, "natter_own_writes_wait_timeouts_total",
            "Reads that went on before this node's fan-out read its own acknowledged posts (Kafka log).",
            SUM(own_writes_wait_timeouts));
    consumer_lag(&o, m);
    gauge(&o, "natter_batches_in_flight", "Store batches being written now.", (double)SUM(batches_in_flight));
    gauge(&o, "natter_unstored_tail_messages",
          "Messages pushed from the log but not stored yet, kept for history reads (Kafka log).",
          (double)SUM(unstored_tail));
    gauge(&o, "natter_websockets_open", "Open WebSocket connections.", (double)SUM(ws_open));
    per_loop_websockets(&o, m);
    counter(&o, "natter_websockets_slow_closed_total", "WebSockets closed because their send queue was full.",
            SUM(ws_slow_closed));
    counter(&o, "natter_websockets_flood_closed_total",
            "WebSockets closed because they sent more frames than they had answers pending.", SUM(ws_flood_closed));
    counter(&o, "natter_websockets_shed_closed_total",
            "WebSockets closed because their event loop could not keep up with fan-out.", SUM(ws_shed_closed));
    counter(&o, "natter_websockets_session_closed_total",
            "WebSockets closed because the session they were opened with ended or expired.", SUM(ws_session_closed));
    counter(&o, "natter_websockets_ping_timeouts_total",
            "WebSockets closed because they did not answer a ping in time.", SUM(ws_ping_timeouts));
    counter(&o, "natter_websockets_protocol_closed_total",
            "WebSockets closed because the client broke the WebSocket protocol.", SUM(ws_protocol_closed));
    counter(&o, "natter_accept_paused_total",
            "Times an event loop stopped accepting for a moment because the process was out of file descriptors.",
            SUM(accept_paused));
    gauge(&o, "natter_connections_open", "Open HTTP connections and WebSockets.",
          (double)atomic_load(&natter_metrics.connections));
    counter(&o, "natter_at_capacity_total", "WebSocket upgrades answered 503: the node held --max-connections.",
            SUM(at_capacity));
    counter(&o, "natter_busy_rejected_total", "Requests answered 503 busy: a bounded queue (the workers', the message log's) was full.",
            SUM(busy_rejected));
    counter(&o, "natter_in_flight_waits_skipped_total",
            "Edits, deletes and reactions of a message not found, answered 404 without waiting for it to arrive "
            "from the log: half the workers were waiting so already.",
            SUM(in_flight_waits_skipped));
    counter(&o, "natter_ephemeral_published_total",
            "Typing, read, presence, membership and session-end records this node put on the ephemeral path.", SUM(ephemeral_published));
    counter(&o, "natter_ephemeral_received_total", "Records this node read from the ephemeral path.",
            SUM(ephemeral_received));
    counter(&o, "natter_ephemeral_delivered_total", "Typing, read, presence and membership frames queued to WebSocket connections.",
            SUM(ephemeral_delivered));
    counter(&o, "natter_typing_dropped_total",
            "Typing frames dropped: more than one per user and chat in 2 s.", SUM(typing_dropped));
    counter(&o, "natter_presence_changes_total", "Users whose online state changed, as this node saw it.",
            SUM(presence_changes));
    http_requests(&o, routes, nroutes);
    summed_histogram(&o, "natter_store_batch_duration_seconds", "Time to write one batch to the store, in seconds.",
                     HIST(store_batch), 9);
    summed_histogram(&o, "natter_store_batch_size", "Messages in one store batch.", HIST(store_batch_size), 0);
    summed_histogram(&o, "natter_store_sync_duration_seconds",
                     "Time to make the batches written since the last sync durable, in seconds (the embedded "
                     "store: one fdatasync of its WAL).",
                     HIST(store_sync), 9);
    summed_histogram(&o, "natter_broadcast_duration_seconds",
                     "Time to fan one batch out to the WebSockets of one event loop, in seconds.", HIST(broadcast), 9);
    summed_histogram(&o, "natter_loop_duration_seconds",
                     "Time of one consumer loop (store, commit, hand-off to fan-out; with a sync stage: the write and the "
                     "hand-off to it), in seconds.", HIST(loop), 9);
    summed_histogram(&o, "natter_end_to_end_latency_seconds",
                     "Time from ingest to push onto the WebSockets, per message and event loop that pushed it, in seconds.", HIST(end_to_end), 9);
    summed_histogram(&o, "natter_log_append_duration_seconds",
                     "Time from a post's append to the log to the log holding it durably or giving it up (its 202 "
                     "or 503 waits for this), in seconds.",
                     HIST(log_append), 9);
    process(&o, m);
    pthread_mutex_lock(&extra_lock);
    if (extra_fn != NULL)
        extra_fn(extra_arg, append_text, &o);
    pthread_mutex_unlock(&extra_lock);
    *len = o.len;
    return o.buf;
}
