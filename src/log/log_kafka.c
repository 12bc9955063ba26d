/*
 * The distributed log: Apache Kafka or Redpanda through librdkafka.
 *
 * Map of this file:
 *   produce   the idempotent producer (acks=all). The record is keyed by
 *             chat id, so a chat lives in one partition and keeps one order.
 *             append() picks the partition itself (librdkafka's default
 *             partitioner, the same on every node) and issues the id and
 *             produces under that partition's lock, so ids follow produce
 *             order within a partition while the event loops append to
 *             different partitions at once. A message's on_durable fires from the
 *             delivery report, on the poll thread: 202 means the broker has
 *             it. A broker that does not answer within --kafka-timeout
 *             fails the delivery: 503, never a hang.
 *   holding   a held append (a post whose client_id is being claimed in the
 *             store) takes its id in order and waits, with whatever is
 *             appended to its partition after it, in the partition's
 *             queue until it is released: ids still follow produce order.
 *   store     one consumer in the group --kafka-group (default natter-store),
 *             shared by every node: the group spreads partitions over
 *             nodes. Offsets are committed only after the batch is in the
 *             store; a batch the store refused is re-read (seek back).
 *   fan-out   a second consumer per node, assigned every partition from the
 *             end at start and never committing: each node sees every new
 *             message for its own sockets (see docs/architecture.md on why
 *             pushes do not wait for the store here).
 *   own writes  read-your-writes on this node: the delivery reports note,
 *             per partition, the offset past this process's newest durable
 *             record, and the fan-out poll notes what its thread has handed
 *             on; fanout_wait_own waits for the second to pass the first
 *             (docs/architecture.md, the unstored tail).
 *   lag       a thread that, every second, reads the store group's committed
 *             offsets and the high watermarks, for natter_consumer_lag.
 *   ephemeral typing, read receipts and presence: a topic of their own
 *             (<topic>.ephemeral, kept a minute), a producer of their own
 *             (acks=1, no idempotence: a lost typing indicator costs
 *             nothing, and the messages' producer never waits behind
 *             them), and a consumer per node assigned every partition from
 *             the end, like fan-out. See docs/architecture.md on why not
 *             records the store consumer skips in the messages' topic.
 *   dead letters  a record the store refused for good, or one that does
 *             not decode, goes to <topic>-dead-letters (made on first
 *             use, with a producer of its own that the store consumer
 *             thread waits on) with its reason and source as headers, so
 *             its partition moves on and an operator can replay it.
 *   status    the store consumer's health for /readyz: fenced (and being
 *             made anew), or every broker unreachable from it past
 *             --kafka-timeout.
 */
#include "core/error.h"
#include "core/fault.h"
#include "core/id.h"
#include "core/metrics.h"
#include "core/util.h"
#include "log/log.h"
#include "log/record.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOPIC_CREATE_DEADLINE_MS 60000
#define LAG_PERIOD_MS 1000
#define MAX_PARTITIONS 1024

/* The config of a topic with three replicas or more (the log's and the dead
 * letters'): a record is acknowledged (acks=all) only once two of them have
 * it, so one broker lost keeps every acknowledged record, and posts go on
 * with one broker down. */
static const char *const durable_topic[] = {"min.insync.replicas", "2", NULL};

typedef struct {
    int64_t min, max; /* offsets of the current batch in one partition; min < 0: none */
    int64_t stop;     /* a malformed record whose dead letter was not kept: read again from it; < 0: none */
} span_t;

typedef struct {
    pthread_mutex_t lock;
    natter_msg_t *waiting, *last; /* behind a held message, in log order; the head is held, or the list is on hold */
    uint32_t nwaiting;            /* on the waiting list */
    uint64_t due_ns;              /* the hold: the list goes to librdkafka by then; 0: not on hold */
} __attribute__((aligned(64))) produce_lock_t;

typedef struct {
    natter_log_t base;
    const natter_config_t *cfg;
    char topic[128];
    int partitions;

    rd_kafka_t *producer;
    rd_kafka_topic_t *producer_topic;
    produce_lock_t *produce_locks; /* one per partition: id order == produce order there */
    natter_idgen_t ids;

    rd_kafka_t *store;    /* group member */
    rd_kafka_t *fanout;   /* assigned every partition, no group */
    rd_kafka_t *observer; /* reads the store group's committed offsets */
    span_t batch[MAX_PARTITIONS]; /* store consumer thread only */
    _Atomic int64_t stored[MAX_PARTITIONS]; /* the store group's committed offsets, as last read; -1: unknown */
    int64_t live_from[MAX_PARTITIONS]; /* each partition's end at start: fan-out below it is a replay */

    _Atomic int64_t own_durable[MAX_PARTITIONS]; /* past this process's newest durable record; 0: none */
    int64_t fanout_given[MAX_PARTITIONS];        /* fan-out thread only: past what its last poll gave */
    int fanout_given_new;                        /* fan-out thread only: its last poll gave records */
    pthread_mutex_t fanout_lock;                 /* fanout_read, fanout_stalled, fanout_waiters */
    pthread_cond_t fanout_moved;                 /* fanout_read moved, or the log closed */
    int64_t fanout_read[MAX_PARTITIONS];         /* past what the fan-out thread has handed on */
    uint8_t fanout_stalled[MAX_PARTITIONS];      /* a wait there timed out; cleared when fanout_read moves */
    int fanout_waiters;

    atomic_int closed;
    atomic_int stop_threads;
    pthread_t poll_thread, lag_thread;

    /* The hold: a partition's posts wait up to hold_ns for hold_n
     * of them before they go to librdkafka together (hold_ns 0: off) */
    uint64_t hold_ns;
    uint32_t hold_n;
    pthread_t hold_thread;
    pthread_mutex_t hold_lock;
    pthread_cond_t hold_wake; /* a hold began, or the log closes */
    int hold_kicked;          /* under hold_lock: a hold began since the hold thread's last sweep */

    char eph_topic[160];
    int eph_partitions;
    rd_kafka_t *eph_producer;
    rd_kafka_t *eph_consumer; /* every partition from the end, no group; the ephemeral thread polls it */

    char dlq_topic[160];
    rd_kafka_t *dlq_producer; /* store consumer thread only; made on the first dead letter */

    pthread_mutex_t status_lock; /* store_fenced_why, producer_failed_why */
    char store_fenced_why[256];  /* why the store consumer is being made anew; "": it is not */
    char producer_failed_why[256]; /* the producer's fatal error; "": none */
    _Atomic uint64_t store_down_since_ns; /* every broker unreachable from the store consumer since; 0: not */
} log_kafka_t;

static int set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    if (rd_kafka_conf_set(conf, k, v, err, errlen) != RD_KAFKA_CONF_OK)
        return NATTER_EINVAL;
    return NATTER_OK;
}

static rd_kafka_conf_t *base_conf(log_kafka_t *k, const char *role, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char client[64];
    snprintf(client, sizeof(client), "natter-%u-%s", k->cfg->node_id, role);
    if (set(conf, "bootstrap.servers", k->cfg->kafka_brokers, err, errlen) ||
        set(conf, "client.id", client, err, errlen) || set(conf, "reconnect.backoff.max.ms", "1000", err, errlen) ||
        set(conf, "socket.nagle.disable", "true", err, errlen) || set(conf, "log_level", "4", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

/* Raises *at to v when v is greater (delivery reports come from the poll
 * thread and from a flush on another). */
static void raise_to(_Atomic int64_t *at, int64_t v)
{
    int64_t cur = atomic_load(at);
    while (cur < v && !atomic_compare_exchange_weak(at, &cur, v))
        ;
}

/* Notes the record durable for fanout_wait_own before its poster hears so. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    log_kafka_t *k = opaque;
    natter_msg_t *msg = rkm->_private;
    if (rkm->err)
        fprintf(stderr, "natter: kafka: delivery of %llu failed: %s\n", (unsigned long long)msg->id,
                rd_kafka_err2str(rkm->err));
    else if (rkm->offset >= 0 && rkm->partition >= 0 && rkm->partition < MAX_PARTITIONS)
        raise_to(&k->own_durable[rkm->partition], rkm->offset + 1);
    natter_log_durable(msg, rkm->err ? NATTER_EUNAVAIL : NATTER_OK);
    free(msg);
}

/* An idempotent producer's fatal error (the broker lost records it had
 * acknowledged, or fenced the producer's id) ends it: it takes no record
 * again. The process asks itself to stop, so a supervisor starts it anew,
 * with a new producer, instead of leaving a node that answers every post
 * 503; /readyz says why until then, and the exit status is 1. */
static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    log_kafka_t *k = opaque;
    char why[200];
    if (err != RD_KAFKA_RESP_ERR__FATAL) /* brokers away and back: librdkafka retries, the timeout answers 503 */
        return;
    if (rd_kafka_fatal_error(rk, why, sizeof(why)) == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(why, sizeof(why), "%s", reason);
    pthread_mutex_lock(&k->status_lock);
    int first = k->producer_failed_why[0] == '\0';
    if (first)
        snprintf(k->producer_failed_why, sizeof(k->producer_failed_why), "the Kafka producer failed for good (%s)",
                 why);
    pthread_mutex_unlock(&k->status_lock);
    if (first) {
        fprintf(stderr, "natter: kafka: the producer failed for good (%s): stopping (exit status 1)\n", why);
        kill(getpid(), SIGTERM); /* main drains and exits */
    }
}

/* The LOG interface's failed; why may be NULL. */
static int kafka_failed(natter_log_t *log, char *why, size_t len)
{
    log_kafka_t *k = (log_kafka_t *)log;
    pthread_mutex_lock(&k->status_lock);
    int failed = k->producer_failed_why[0] != '\0';
    if (failed && why != NULL)
        snprintf(why, len, "%s", k->producer_failed_why);
    pthread_mutex_unlock(&k->status_lock);
    return failed;
}

/* How long a record waits for others to share its produce request
 * (--kafka-linger, 1 ms by default) and how many waiting records send it
 * before that (--kafka-batch, librdkafka's 10000 by default; also the most
 * one request carries). Kafka's CPU goes by produce requests, and at 1 ms
 * the producer sends about a thousand a second at any rate; but every
 * post's 202 waits for its request, and 5 ms (librdkafka's and Kafka's own
 * default) held natter-load's seed (one chat, so one partition; 64
 * connections, each waiting for its 202) to 7,100-7,800 msg/s of 10,000.
 * A batch of 32 beside it paid the linger only where posts are few: on one
 * warm broker the seed ran whole at p99 23.5-29.9 ms and `max` held what it
 * held at 1 ms, for 10-23% less CPU a message for the whole system. But
 * the batch caps a partition at five requests of that many records a
 * broker round trip (an idempotent producer's limit in flight): on three
 * brokers (acks=all on three replicas, six JVMs on two cores) the seed over
 * 256 connections took 6,676 msg/s of 10,000, a post answered at p50 in
 * 21 ms, where 1 ms without the cap took it whole
 * (bench/results/2026-12-05-kafka-batch.txt). So the defaults stay the
 * ones that cannot cap a partition; natter's own hold (--kafka-hold, see
 * hold_sweep) does what the batch did without the cap. The linger's other price is a
 * spinning thread on a slow broker: librdkafka (2.0.2 here, and its code
 * today) sets the broker thread's wakeup from the oldest queued record's
 * linger before it checks the five-request limit, so while five requests
 * wait and a record is past its linger the thread polls with a zero
 * timeout until an answer comes: from 5 ms of broker latency on at 1 ms,
 * 25 ms at 5. bench/results/2026-12-03-linger.txt has both measured;
 * bench/results/2026-12-04-producer-linger2.txt 2 ms against 1. */
static rd_kafka_t *new_producer(log_kafka_t *k, char *err, size_t errlen)
{
    char timeout[16], linger[16], batch[16];
    snprintf(timeout, sizeof(timeout), "%u", k->cfg->kafka_timeout_ms);
    snprintf(linger, sizeof(linger), "%u", k->cfg->kafka_linger_ms);
    snprintf(batch, sizeof(batch), "%u", k->cfg->kafka_batch);
    rd_kafka_conf_t *conf = base_conf(k, "producer", err, errlen);
    if (conf == NULL || set(conf, "enable.idempotence", "true", err, errlen) ||
        set(conf, "acks", "all", err, errlen) || set(conf, "linger.ms", linger, err, errlen) ||
        set(conf, "batch.num.messages", batch, err, errlen) || set(conf, "message.timeout.ms", timeout, err, errlen)) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_producer_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* The store consumer's errors: every broker down starts the clock that
 * kafka_consumer_status reads; a message consumed stops it (collect). */
static void on_store_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    log_kafka_t *k = opaque;
    uint64_t none = 0;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_compare_exchange_strong(&k->store_down_since_ns, &none, natter_mono_ns());
    else if (err != RD_KAFKA_RESP_ERR__TRANSPORT)
        fprintf(stderr, "natter: kafka: store consumer: %s\n", reason);
}

/* How long the broker holds a fetch that finds nothing new. Any new record
 * answers a fetch at once (fetch.min.bytes is 1; the store consumer's and
 * the fan-out's are below), so this costs a record no latency; it sets how often an idle
 * consumer asks again, and every node runs three that fetch (store,
 * fan-out, ephemeral). Six idle nodes here: at 10 ms the broker used 0.28
 * of a core and the nodes 0.16; at 100 ms, 0.07 and 0.07
 * (bench/results/2026-12-03-conns-trials.txt). */
#define FETCH_WAIT_MAX_MS "100"

/* The store consumer asks for this much before the broker answers (or for
 * FETCH_WAIT_MAX_MS, whichever comes first): hardly anybody waits on a
 * stored message (pushes come from the fan-out consumer, history reads and
 * chat lists merge the unstored tail), so it fetches, stores and commits
 * in batches of hundreds rather than one per produce request. At 10,000
 * msg/s that cut the broker's requests by a third and the store's writes
 * tenfold (bench/results/2026-12-03-store-fetch.txt). */
#define STORE_FETCH_MIN_BYTES "262144"

/* The fan-out consumer asks for this much before the broker answers, or
 * waits --kafka-fanout-wait ms, whichever comes first (with the wait 0: any
 * record at once, like the others). Without it every produce request (seven
 * or eight records at 10,000 msg/s) was a fetch of its own and a push batch
 * of its own. Gathering took natter's CPU per message down by about a
 * sixth and Kafka's by about a quarter at seed's stages, for ~3.5 ms more
 * end to end at the median at 10,000 msg/s and ~10 ms more at 1,000 msg/s
 * (where a fetch waits out the whole wait); an idle node's fan-out
 * consumer fetches 50 times a second instead of 10, about 2% of a core
 * more for the broker here (bench/results/2026-12-04-fanout-fetch.txt). */
#define FANOUT_FETCH_MIN_BYTES "8192"

static rd_kafka_t *new_consumer(log_kafka_t *k, const char *role, const char *group, const char *instance,
                                char *err, size_t errlen)
{
    int store = strcmp(role, "store") == 0;
    const char *min_bytes = store ? STORE_FETCH_MIN_BYTES : "1", *wait = FETCH_WAIT_MAX_MS;
    char fanout_wait[16];
    if (strcmp(role, "fanout") == 0 && k->cfg->kafka_fanout_wait_ms > 0) {
        snprintf(fanout_wait, sizeof(fanout_wait), "%u", k->cfg->kafka_fanout_wait_ms);
        min_bytes = FANOUT_FETCH_MIN_BYTES;
        wait = fanout_wait;
    }
    rd_kafka_conf_t *conf = base_conf(k, role, err, errlen);
    if (conf == NULL || set(conf, "group.id", group, err, errlen) ||
        (instance != NULL && set(conf, "group.instance.id", instance, err, errlen)) ||
        set(conf, "enable.auto.commit", "false", err, errlen) ||
        set(conf, "enable.auto.offset.store", "false", err, errlen) ||
        set(conf, "auto.offset.reset", "earliest", err, errlen) ||
        set(conf, "session.timeout.ms", "10000", err, errlen) ||
        set(conf, "heartbeat.interval.ms", "1000", err, errlen) ||
        set(conf, "fetch.min.bytes", min_bytes, err, errlen) || set(conf, "fetch.wait.max.ms", wait, err, errlen)) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (store) {
        rd_kafka_conf_set_opaque(conf, k);
        rd_kafka_conf_set_error_cb(conf, on_store_error);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Creates the topic name when it is missing, with configs (name, value
 * pairs, NULL-terminated; NULL for none); retries while the broker starts. */
static int ensure_topic(log_kafka_t *k, const char *name, const char *const *configs, char *err, size_t errlen)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)TOPIC_CREATE_DEADLINE_MS * 1000000u;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    do {
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, (int)k->cfg->kafka_partitions,
                                                        (int)k->cfg->kafka_replication, err, errlen);
        if (nt == NULL)
            return NATTER_EINVAL;
        for (const char *const *c = configs; c != NULL && *c != NULL; c += 2) {
            if (rd_kafka_NewTopic_set_config(nt, c[0], c[1]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_NewTopic_destroy(nt);
                snprintf(err, errlen, "kafka: cannot set %s on topic %s", c[0], name);
                return NATTER_EINVAL;
            }
        }
        rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(k->producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, NULL, 0);
        rd_kafka_AdminOptions_set_request_timeout(opts, 10000, NULL, 0);
        rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
        rd_kafka_CreateTopics(k->producer, &nt, 1, opts, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
        const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_topic_result_t **topics = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        rerr = ev == NULL ? RD_KAFKA_RESP_ERR__TIMED_OUT
               : rd_kafka_event_error(ev) ? rd_kafka_event_error(ev)
               : n == 1 ? rd_kafka_topic_result_error(topics[0])
                        : RD_KAFKA_RESP_ERR__FAIL;
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_NewTopic_destroy(nt);
        if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR || rerr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            return NATTER_OK;
        usleep(500000);
    } while (natter_mono_ns() < deadline);
    snprintf(err, errlen, "kafka: cannot create topic %s at %s: %s", name, k->cfg->kafka_brokers,
             rd_kafka_err2str(rerr));
    return NATTER_EUNAVAIL;
}

/* Partitions of the topic name into *out, once each has a leader (a topic
 * just created shows none for a moment). */
static int count_partitions(log_kafka_t *k, const char *name, int *out, char *err, size_t errlen)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)TOPIC_CREATE_DEADLINE_MS * 1000000u;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->producer, name, NULL);
    rd_kafka_resp_err_t rerr;
    int n = 0;
    do {
        const struct rd_kafka_metadata *md = NULL;
        rerr = rd_kafka_metadata(k->producer, 0, rkt, &md, 5000);
        n = 0;
        if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0) {
            n = md->topics[0].partition_cnt;
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                if (md->topics[0].partitions[i].leader < 0)
                    n = 0;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        if (n <= 0)
            usleep(200000);
    } while (n <= 0 && natter_mono_ns() < deadline);
    rd_kafka_topic_destroy(rkt);
    if (n <= 0 || n > MAX_PARTITIONS) {
        snprintf(err, errlen, "kafka: topic %s has %d partitions (%s)", name, n, rd_kafka_err2str(rerr));
        return NATTER_EUNAVAIL;
    }
    *out = n;
    return NATTER_OK;
}

static void produce_waiting(log_kafka_t *k, int32_t p, natter_msg_t **failed);

/* The hold (--kafka-hold, 5 ms; --kafka-hold-batch, 32): natter keeps a
 * partition's posts on its waiting list (the one held messages use) until
 * --kafka-hold-batch of them are in, which sends them from that append, or
 * until the hold is up, which the hold thread sees to. Kafka's CPU goes by
 * produce requests, and librdkafka's linger alone sends about one a
 * millisecond at any rate. This is the linger paid only where posts are
 * few, like librdkafka's batch.num.messages beside a longer linger, but
 * without that setting's cap on what one request carries: the producer
 * still takes everything queued, so a slow broker's backlog leaves in one
 * large request instead of five small ones a round trip. Measured on one
 * broker: the producer's requests fell from ~26,000 to ~9,000 over the
 * seed's short stages, the whole system's CPU a message by ~13% (one pair
 * over 256 connections: 95 against 128 µs), for ~2.3 ms more at the median
 * and the same p99; on
 * three brokers it took the seed whole where --kafka-linger 5 --kafka-batch
 * 32 took 6,676 msg/s of 10,000 (bench/results/2026-12-07-engine-cost-probe.txt).
 * The hold ends at once when the log shuts down or closes. */

/* Sends every partition's held posts that are due (all: every one); the earliest due
 * time left (0: none). */
static uint64_t hold_sweep(log_kafka_t *k, int all)
{
    uint64_t now = natter_mono_ns(), next = 0;
    for (int p = 0; p < k->partitions; p++) {
        produce_lock_t *pl = &k->produce_locks[p];
        natter_msg_t *failed = NULL;
        pthread_mutex_lock(&pl->lock);
        if (pl->due_ns != 0 && (all || pl->due_ns <= now)) {
            natter_count(&natter_m()->kafka_hold_by_time, 1);
            produce_waiting(k, p, &failed);
        } else if (pl->due_ns != 0 && (next == 0 || pl->due_ns < next))
            next = pl->due_ns;
        pthread_mutex_unlock(&pl->lock);
        natter_log_fail_all(failed);
    }
    return next;
}

static void *hold_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-kafka-hold");
    log_kafka_t *k = arg;
    pthread_mutex_lock(&k->hold_lock);
    while (!atomic_load(&k->stop_threads)) {
        k->hold_kicked = 0;
        pthread_mutex_unlock(&k->hold_lock);
        uint64_t next = hold_sweep(k, 0);
        pthread_mutex_lock(&k->hold_lock);
        if (atomic_load(&k->stop_threads))
            break;
        if (k->hold_kicked) /* begun during the sweep: its due time is not in next */
            continue;
        struct timespec ts; /* next is a natter_mono_ns time, on the condition's clock; a past one returns at once */
        if (next == 0)
            natter_mono_deadline(&ts, 100);
        else
            ts = natter_mono_timespec(next);
        pthread_cond_timedwait(&k->hold_wake, &k->hold_lock, &ts);
    }
    pthread_mutex_unlock(&k->hold_lock);
    return NULL;
}

static void *poll_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-kafka-dr");
    log_kafka_t *k = arg;
    while (!atomic_load(&k->stop_threads))
        rd_kafka_poll(k->producer, 100);
    return NULL;
}

/* Lag per partition: the high watermark (as the fan-out consumer last
 * fetched it) minus the store group's committed offset. */
static void measure_lag(log_kafka_t *k)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(k->partitions);
    for (int p = 0; p < k->partitions; p++)
        rd_kafka_topic_partition_list_add(list, k->topic, p);
    if (rd_kafka_committed(k->observer, list, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            int64_t lo = 0, hi = 0, committed = list->elems[i].offset;
            if (rd_kafka_get_watermark_offsets(k->fanout, k->topic, list->elems[i].partition, &lo, &hi) != 0)
                continue;
            if (committed >= 0 && list->elems[i].partition < MAX_PARTITIONS)
                atomic_store(&k->stored[list->elems[i].partition], committed);
            if (committed < 0)
                committed = lo;
            natter_metrics_set_partition_lag(list->elems[i].partition, hi > committed ? hi - committed : 0);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void *lag_main(void *arg)
{
    pthread_setname_np(pthread_self(), "natter-kafka-lag");
    log_kafka_t *k = arg;
    while (!atomic_load(&k->stop_threads)) {
        measure_lag(k);
        for (int i = 0; i < LAG_PERIOD_MS / 50 && !atomic_load(&k->stop_threads); i++)
            usleep(50000);
    }
    return NULL;
}

/* Each partition's low and high watermarks of the topic name, read from the
 * broker now (not resolved lazily by the fetcher, which could skip what is
 * posted in between). */
static int query_ends(rd_kafka_t *rk, const char *name, int partitions, int64_t *lo, int64_t *hi, char *err,
                      size_t errlen)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)TOPIC_CREATE_DEADLINE_MS * 1000000u;
    for (int p = 0; p < partitions; p++) {
        rd_kafka_resp_err_t rerr;
        /* a partition just created may not have settled its leader yet */
        while ((rerr = rd_kafka_query_watermark_offsets(rk, name, p, &lo[p], &hi[p], 5000)) &&
               natter_mono_ns() < deadline)
            usleep(100000);
        if (rerr) {
            snprintf(err, errlen, "kafka: offsets of %s/%d: %s", name, p, rd_kafka_err2str(rerr));
            return NATTER_EUNAVAIL;
        }
    }
    return NATTER_OK;
}

static int assign_at(rd_kafka_t *rk, const char *name, int partitions, const int64_t *from, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, name, p)->offset = from[p];
    rd_kafka_resp_err_t rerr = rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (rerr) {
        snprintf(err, errlen, "kafka: assign %s: %s", name, rd_kafka_err2str(rerr));
        return NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

/* Starts a consumer (ephemeral) at each partition's current end: every
 * record published after start-up is read. */
static int assign_all_from_end(rd_kafka_t *rk, const char *name, int partitions, char *err, size_t errlen)
{
    int64_t *lo = xcalloc((size_t)partitions, sizeof(*lo)), *hi = xcalloc((size_t)partitions, sizeof(*hi));
    int rc = query_ends(rk, name, partitions, lo, hi, err, errlen);
    if (rc == NATTER_OK)
        rc = assign_at(rk, name, partitions, hi, err, errlen);
    free(lo);
    free(hi);
    return rc;
}

/* Starts the fan-out consumer at the store group's committed offsets, so
 * its first polls replay the log's unstored tail (at most
 * NATTER_LOG_REPLAY_MAX records over all partitions, the newest) for
 * history reads, then go on with what is posted after start; live_from
 * (each partition's end now) tells the two apart. A partition the group
 * never committed replays from its start (none of it is stored); when the
 * committed offsets cannot be read, every partition starts at its end. */
static int assign_fanout(log_kafka_t *k, char *err, size_t errlen)
{
    int n = k->partitions;
    int64_t *lo = xcalloc((size_t)n, sizeof(*lo)), *from = xcalloc((size_t)n, sizeof(*from));
    int rc = query_ends(k->fanout, k->topic, n, lo, k->live_from, err, errlen);
    if (rc == NATTER_OK) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
        for (int p = 0; p < n; p++)
            rd_kafka_topic_partition_list_add(list, k->topic, p);
        rd_kafka_resp_err_t rerr = rd_kafka_committed(k->observer, list, 5000);
        if (rerr)
            fprintf(stderr, "natter: kafka: the store group's offsets (%s): fan-out starts at the end, with no "
                            "unstored tail for history reads\n", rd_kafka_err2str(rerr));
        int64_t keep = NATTER_LOG_REPLAY_MAX / n > 0 ? NATTER_LOG_REPLAY_MAX / n : 1;
        for (int p = 0; p < n; p++) {
            int64_t committed = rerr ? k->live_from[p] : list->elems[p].offset;
            from[p] = committed >= 0 ? committed : lo[p];
            if (from[p] < k->live_from[p] - keep)
                from[p] = k->live_from[p] - keep;
            if (from[p] > k->live_from[p])
                from[p] = k->live_from[p];
            if (!rerr && list->elems[p].offset >= 0)
                atomic_store(&k->stored[p], list->elems[p].offset);
        }
        rd_kafka_topic_partition_list_destroy(list);
        rc = assign_at(k->fanout, k->topic, n, from, err, errlen);
    }
    free(lo);
    free(from);
    return rc;
}

static int subscribe_store(log_kafka_t *k, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, k->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(k->store, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (rerr) {
        snprintf(err, errlen, "kafka: subscribe: %s", rd_kafka_err2str(rerr));
        return NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

/* The store consumer's static member id: a node restarted (after kill -9,
 * say) takes its partitions back at once instead of waiting out the dead
 * session. */
static void store_instance(const log_kafka_t *k, char *dst, size_t len)
{
    snprintf(dst, len, "%s-node-%u", k->cfg->kafka_group, k->cfg->node_id);
}

static int ephemeral_open(log_kafka_t *k, char *err, size_t errlen);
static void ephemeral_close(log_kafka_t *k);

static void destroy_consumer(rd_kafka_t *rk)
{
    if (rk != NULL) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
}

/* Sets closed and wakes whoever waits in fanout_wait_own. */
static void close_to_readers(log_kafka_t *k)
{
    pthread_mutex_lock(&k->fanout_lock);
    atomic_store(&k->closed, 1);
    pthread_cond_broadcast(&k->fanout_moved);
    pthread_mutex_unlock(&k->fanout_lock);
}

static void kafka_close(natter_log_t *log)
{
    log_kafka_t *k = (log_kafka_t *)log;
    close_to_readers(k);
    atomic_store(&k->stop_threads, 1);
    if (k->lag_thread)
        pthread_join(k->lag_thread, NULL);
    if (k->hold_thread) {
        pthread_mutex_lock(&k->hold_lock);
        pthread_cond_signal(&k->hold_wake);
        pthread_mutex_unlock(&k->hold_lock);
        pthread_join(k->hold_thread, NULL);
        hold_sweep(k, 1);
    }
    if (k->producer) {
        rd_kafka_flush(k->producer, (int)k->cfg->kafka_timeout_ms);
        if (k->poll_thread)
            pthread_join(k->poll_thread, NULL);
        rd_kafka_poll(k->producer, 0);
    }
    destroy_consumer(k->store);
    destroy_consumer(k->fanout);
    destroy_consumer(k->observer);
    ephemeral_close(k);
    if (k->dlq_producer != NULL) {
        rd_kafka_flush(k->dlq_producer, (int)k->cfg->kafka_timeout_ms);
        rd_kafka_destroy(k->dlq_producer);
    }
    if (k->producer) {
        rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->producer, 0); /* the purged messages' reports: their posters get 503 */
        if (k->producer_topic)
            rd_kafka_topic_destroy(k->producer_topic);
        rd_kafka_destroy(k->producer);
    }
    for (int p = 0; k->produce_locks != NULL && p < k->partitions; p++) {
        natter_log_fail_all(k->produce_locks[p].waiting); /* held and never released: nothing releases them now */
        pthread_mutex_destroy(&k->produce_locks[p].lock);
    }
    free(k->produce_locks);
    pthread_mutex_destroy(&k->status_lock);
    pthread_mutex_destroy(&k->fanout_lock);
    pthread_cond_destroy(&k->fanout_moved);
    pthread_mutex_destroy(&k->hold_lock);
    pthread_cond_destroy(&k->hold_wake);
}

static int kafka_open(natter_log_t *log, const natter_config_t *cfg, char *err, size_t errlen)
{
    log_kafka_t *k = (log_kafka_t *)log;
    char group[160], instance[160];
    k->cfg = cfg;
    pthread_mutex_init(&k->status_lock, NULL);
    pthread_mutex_init(&k->fanout_lock, NULL);
    pthread_mutex_init(&k->hold_lock, NULL);
    natter_mono_cond_init(&k->hold_wake);
    k->hold_ns = (uint64_t)cfg->kafka_hold_ms * 1000000u;
    k->hold_n = cfg->kafka_hold_batch;
    natter_mono_cond_init(&k->fanout_moved);
    snprintf(k->topic, sizeof(k->topic), "%s", cfg->kafka_topic);
    snprintf(k->dlq_topic, sizeof(k->dlq_topic), "%s-dead-letters", cfg->kafka_topic);
    natter_idgen_init(&k->ids, cfg->node_id);
    for (int p = 0; p < MAX_PARTITIONS; p++) {
        k->batch[p].min = k->batch[p].stop = -1;
        atomic_init(&k->stored[p], -1);
    }
    snprintf(group, sizeof(group), "%s-fanout-%u-%d", cfg->kafka_group, cfg->node_id, (int)getpid());
    store_instance(k, instance, sizeof(instance));
    if ((k->producer = new_producer(k, err, errlen)) == NULL ||
        ensure_topic(k, k->topic, k->cfg->kafka_replication >= 3 ? durable_topic : NULL, err, errlen) != NATTER_OK ||
        count_partitions(k, k->topic, &k->partitions, err, errlen) != NATTER_OK ||
        (k->store = new_consumer(k, "store", cfg->kafka_group, instance, err, errlen)) == NULL ||
        (k->fanout = new_consumer(k, "fanout", group, NULL, err, errlen)) == NULL ||
        (k->observer = new_consumer(k, "observer", cfg->kafka_group, NULL, err, errlen)) == NULL ||
        subscribe_store(k, err, errlen) != NATTER_OK ||
        assign_fanout(k, err, errlen) != NATTER_OK ||
        ephemeral_open(k, err, errlen) != NATTER_OK) {
        kafka_close(log);
        return NATTER_EUNAVAIL;
    }
    k->producer_topic = rd_kafka_topic_new(k->producer, k->topic, NULL);
    k->produce_locks = xcalloc((size_t)k->partitions, sizeof(produce_lock_t));
    for (int p = 0; p < k->partitions; p++)
        pthread_mutex_init(&k->produce_locks[p].lock, NULL);
    natter_metrics_set_partitions(k->partitions);
    pthread_create(&k->poll_thread, NULL, poll_main, k);
    pthread_create(&k->lag_thread, NULL, lag_main, k);
    if (k->hold_ns > 0)
        pthread_create(&k->hold_thread, NULL, hold_main, k);
    return NATTER_OK;
}

static int32_t partition_of(log_kafka_t *k, uint64_t chat_id, char key[NATTER_ID_STR_MAX], int *klen)
{
    *klen = natter_id_format(key, chat_id);
    return rd_kafka_msg_partitioner_consistent_random(k->producer_topic, key, (size_t)*klen, k->partitions, NULL,
                                                      NULL);
}

/* Under partition p's lock: hands msg to librdkafka; 0 or NATTER_EUNAVAIL
 * (then msg is still the caller's). */
static int produce(log_kafka_t *k, int32_t p, natter_msg_t *msg)
{
    char key[NATTER_ID_STR_MAX];
    uint8_t to[NATTER_RECORD_RECIPIENTS_MAX_BYTES];
    size_t len, tolen = natter_record_recipients(msg, to);
    int klen = natter_id_format(key, msg->chat_id);
    uint8_t *value = natter_record_encode(msg, &len);
    rd_kafka_vu_t vu[7] = {
        {.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = k->topic},
        {.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = p},
        {.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {key, (size_t)klen}},
        {.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {value, len}},
        {.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_FREE},
        {.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = msg},
        {.vtype = RD_KAFKA_VTYPE_HEADER, .u.header = {NATTER_RECORD_RECIPIENTS_HEADER, to, (ssize_t)tolen}},
    };
    rd_kafka_error_t *error = rd_kafka_produceva(k->producer, vu, tolen > 0 ? 7 : 6); /* the header when any */
    if (error != NULL) {
        int full = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__QUEUE_FULL;
        rd_kafka_error_destroy(error);
        free(value);
        return full ? NATTER_EFULL : NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

/* Under partition p's lock: produces the waiting messages up to the first
 * held one; those librdkafka refused are linked into *failed (their
 * appends had returned 0: their outcome is owed). */
static void produce_waiting(log_kafka_t *k, int32_t p, natter_msg_t **failed)
{
    produce_lock_t *pl = &k->produce_locks[p];
    pl->due_ns = 0;
    while (pl->waiting != NULL && !pl->waiting->log_held) {
        natter_msg_t *m = pl->waiting;
        pl->waiting = m->next;
        pl->nwaiting--;
        if (pl->waiting == NULL)
            pl->last = NULL;
        m->next = NULL;
        if (produce(k, p, m) != NATTER_OK) {
            m->next = *failed;
            *failed = m;
        }
    }
}

typedef enum { ISSUE_ID, KEEP_ID } id_policy_t;

/* Produces now, or queues behind a held message of the partition (or as one). */
static int enqueue(log_kafka_t *k, natter_msg_t *msg, id_policy_t ids, int held)
{
    char key[NATTER_ID_STR_MAX];
    int klen, rc = NATTER_OK;
    if (atomic_load(&k->closed))
        return NATTER_EUNAVAIL;
    if (natter_fault_check(NATTER_FAULT_LOG_PRODUCER_FATAL) != 0) /* a test's: what a broker's answer can cause */
        rd_kafka_test_fatal_error(k->producer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "injected by NATTER_FAULTS log.producer_fatal");
    int32_t p = partition_of(k, msg->chat_id, key, &klen);
    produce_lock_t *pl = &k->produce_locks[p];
    pthread_mutex_lock(&pl->lock);
    if (ids == ISSUE_ID) {
        msg->id = natter_idgen_next(&k->ids, natter_now_ms());
        msg->created_at_ms = natter_id_time_ms(msg->id);
    }
    msg->log_held = (uint8_t)held;
    natter_msg_t *failed = NULL;
    int began = 0;
    if (pl->waiting == NULL && !held && k->hold_ns == 0) {
        rc = produce(k, p, msg);
    } else {
        msg->next = NULL;
        if (pl->last != NULL)
            pl->last->next = msg;
        else
            pl->waiting = msg;
        pl->last = msg;
        pl->nwaiting++;
        if (k->hold_ns > 0 && !pl->waiting->log_held) {
            if (pl->nwaiting >= k->hold_n) {
                natter_count(&natter_m()->kafka_hold_by_count, 1);
                produce_waiting(k, p, &failed);
            } else if (pl->due_ns == 0)
                pl->due_ns = natter_mono_ns() + k->hold_ns, began = 1;
        }
    }
    pthread_mutex_unlock(&pl->lock);
    for (natter_msg_t **at = &failed; *at != NULL; at = &(*at)->next)
        if (*at == msg) { /* this append's own record: refused as without the hold, the caller keeps it */
            *at = msg->next;
            msg->next = NULL;
            rc = NATTER_EUNAVAIL;
            break;
        }
    if (began) {
        pthread_mutex_lock(&k->hold_lock);
        k->hold_kicked = 1;
        pthread_cond_signal(&k->hold_wake);
        pthread_mutex_unlock(&k->hold_lock);
    }
    natter_log_fail_all(failed);
    return rc;
}

static int kafka_append(natter_log_t *log, natter_msg_t *msg)
{
    return enqueue((log_kafka_t *)log, msg, ISSUE_ID, 0);
}

static int kafka_append_held(natter_log_t *log, natter_msg_t *msg)
{
    return enqueue((log_kafka_t *)log, msg, ISSUE_ID, 1);
}

static int kafka_append_existing(natter_log_t *log, natter_msg_t *msg)
{
    return enqueue((log_kafka_t *)log, msg, KEEP_ID, 0);
}

static void kafka_release(natter_log_t *log, natter_msg_t *msg, int status)
{
    log_kafka_t *k = (log_kafka_t *)log;
    char key[NATTER_ID_STR_MAX];
    int klen;
    natter_msg_t *failed = NULL;
    int32_t p = partition_of(k, msg->chat_id, key, &klen);
    produce_lock_t *pl = &k->produce_locks[p];
    pthread_mutex_lock(&pl->lock);
    msg->log_held = 0;
    if (status != NATTER_OK) { /* withdrawn: out of the queue, back to the caller */
        natter_msg_t **at = &pl->waiting, *prev = NULL;
        while (*at != msg)
            prev = *at, at = &(*at)->next;
        *at = msg->next;
        pl->nwaiting--;
        if (pl->last == msg)
            pl->last = prev;
        msg->next = NULL;
    }
    produce_waiting(k, p, &failed);
    pthread_mutex_unlock(&pl->lock);
    natter_log_fail_all(failed); /* outside the lock: callbacks take other locks */
}

/* Turns consumed records into a list of messages; records that are errors
 * or undecodable are skipped (still covered by the batch's offsets). */
/* ---- dead letters ---------------------------------------------------------- */

/* A dead letter's outcome, shared by its producer call and its delivery
 * report, which can come after the call gave up waiting (in a later flush):
 * the last of the two to let go frees it. */
typedef struct {
    atomic_int refs;
    atomic_int err; /* rd_kafka_resp_err_t; RD_KAFKA_RESP_ERR__IN_PROGRESS until reported */
} dead_letter_outcome_t;

static void outcome_release(dead_letter_outcome_t *o)
{
    if (atomic_fetch_sub(&o->refs, 1) == 1)
        free(o);
}

static void on_dead_letter_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk, (void)opaque;
    dead_letter_outcome_t *o = rkm->_private;
    atomic_store(&o->err, rkm->err);
    outcome_release(o);
}

/* The dead-letter topic and its producer (acks=all, idempotent), made on
 * first use: most nodes never need them. */
static int dead_letters_ready(log_kafka_t *k, char *err, size_t errlen)
{
    if (k->dlq_producer != NULL)
        return NATTER_OK;
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%u", k->cfg->kafka_timeout_ms);
    rd_kafka_conf_t *conf = base_conf(k, "dead-letters", err, errlen);
    if (conf == NULL || set(conf, "enable.idempotence", "true", err, errlen) ||
        set(conf, "acks", "all", err, errlen) || set(conf, "message.timeout.ms", timeout, err, errlen)) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NATTER_EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_dead_letter_delivery);
    if (ensure_topic(k, k->dlq_topic, k->cfg->kafka_replication >= 3 ? durable_topic : NULL, err, errlen) != NATTER_OK ||
        (k->dlq_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

/* Produces value (copied) to the dead-letter topic with its reason and
 * source as headers, and waits for the broker's answer. */
static int dead_letter_put(log_kafka_t *k, const void *value, size_t len, const void *key, size_t keylen,
                           int32_t partition, int64_t offset, const char *reason)
{
    char err[256], source[200];
    if (dead_letters_ready(k, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: kafka: dead letters: %s\n", err);
        return NATTER_EUNAVAIL;
    }
    snprintf(source, sizeof(source), "%s/%d/%lld", k->topic, (int)partition, (long long)offset);
    dead_letter_outcome_t *o = xmalloc(sizeof(*o));
    atomic_init(&o->refs, 2); /* this call's, and the delivery report's */
    atomic_init(&o->err, RD_KAFKA_RESP_ERR__IN_PROGRESS);
    rd_kafka_resp_err_t rerr = rd_kafka_producev(
        k->dlq_producer, RD_KAFKA_V_TOPIC(k->dlq_topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("natter-reason", reason, -1), RD_KAFKA_V_HEADER("natter-source", source, -1),
        RD_KAFKA_V_OPAQUE(o), RD_KAFKA_V_END);
    if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(o); /* not queued: no report will come */
        fprintf(stderr, "natter: kafka: dead letter: %s\n", rd_kafka_err2str(rerr));
        return NATTER_EUNAVAIL;
    }
    rd_kafka_flush(k->dlq_producer, (int)k->cfg->kafka_timeout_ms + 1000);
    rd_kafka_resp_err_t outcome = atomic_load(&o->err);
    outcome_release(o);
    if (outcome != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "natter: kafka: dead letter: %s\n", rd_kafka_err2str(outcome));
        return outcome == RD_KAFKA_RESP_ERR__IN_PROGRESS ? NATTER_ETIMEDOUT : NATTER_EUNAVAIL;
    }
    return NATTER_OK;
}

static int kafka_dead_letter(natter_log_t *log, const natter_msg_t *msg, const char *reason)
{
    log_kafka_t *k = (log_kafka_t *)log;
    size_t len;
    uint8_t *value = natter_record_encode(msg, &len);
    char key[24];
    int klen = snprintf(key, sizeof(key), "%llu", (unsigned long long)msg->chat_id);
    int rc = dead_letter_put(k, value, len, key, (size_t)klen, msg->partition, msg->offset, reason);
    free(value);
    return rc;
}

/* A record that does not decode can be neither stored nor pushed: its
 * bytes go to the dead letters as they are, and its partition moves on.
 * When they cannot be kept, the partition is not committed past it: span's
 * stop makes the batch's commit end before it and read it again. */
static void dead_letter_malformed(log_kafka_t *k, const rd_kafka_message_t *rkm, span_t *span)
{
    /* the log.dead_letter fault point, which log.c checks for the store's refusals */
    if (natter_fault_check(NATTER_FAULT_LOG_DEAD_LETTER) == 0 &&
        dead_letter_put(k, rkm->payload, rkm->len, rkm->key, rkm->key_len, rkm->partition, rkm->offset,
                        "malformed record") == NATTER_OK) {
        natter_count(&natter_m()->dead_letters, 1);
        fprintf(stderr, "natter: dead letter: a malformed record at %d/%lld\n", (int)rkm->partition,
                (long long)rkm->offset);
        return;
    }
    fprintf(stderr, "natter: kafka: a malformed record at %d/%lld could not be kept in the dead letters: "
                    "its partition is read again from it\n",
            (int)rkm->partition, (long long)rkm->offset);
    if (span != NULL && (span->stop < 0 || rkm->offset < span->stop))
        span->stop = rkm->offset;
}

static size_t collect(log_kafka_t *k, rd_kafka_message_t **rkms, size_t n, natter_msg_t **head, int track)
{
    natter_msg_t **tail = head;
    size_t taken = 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *rkm = rkms[i];
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "natter: kafka: consume: %s\n", rd_kafka_message_errstr(rkm));
        } else {
            span_t *s = NULL;
            if (track)
                atomic_store(&k->store_down_since_ns, 0);
            if (track && rkm->partition >= 0 && rkm->partition < MAX_PARTITIONS) {
                s = &k->batch[rkm->partition];
                if (s->min < 0) { /* the batch's first record here: a span of its own, not the last one's */
                    s->min = s->max = rkm->offset;
                } else {
                    if (rkm->offset < s->min)
                        s->min = rkm->offset;
                    if (rkm->offset > s->max)
                        s->max = rkm->offset;
                }
            }
            /* the recipients serve the fan-out only; the store consumer's
             * messages go without them */
            rd_kafka_headers_t *hdrs;
            const void *to = NULL;
            size_t tolen = 0;
            if (track || rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                rd_kafka_header_get_last(hdrs, NATTER_RECORD_RECIPIENTS_HEADER, &to, &tolen) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR) {
                to = NULL;
                tolen = 0;
            }
            natter_msg_t *m = natter_record_decode_to(rkm->payload, rkm->len, to, tolen);
            if (m == NULL && track) {
                dead_letter_malformed(k, rkm, s);
            } else if (m == NULL) {
                fprintf(stderr, "natter: kafka: skipping a malformed record at %d/%lld\n", (int)rkm->partition,
                        (long long)rkm->offset);
            } else {
                m->partition = rkm->partition;
                m->offset = rkm->offset;
                *tail = m;
                tail = &m->next;
                taken++;
            }
        }
        rd_kafka_message_destroy(rkm);
    }
    *tail = NULL;
    return taken;
}

/* First record up to timeout_ms, then the batch fills for up to the batch time. */
static size_t poll_batch(log_kafka_t *k, rd_kafka_t *rk, natter_msg_t **head, size_t max, int timeout_ms,
                         int track)
{
    rd_kafka_message_t *first = rd_kafka_consumer_poll(rk, timeout_ms);
    if (first == NULL)
        return 0;
    rd_kafka_message_t **rkms = xmalloc(max * sizeof(*rkms));
    rkms[0] = first;
    size_t n = 1;
    if (max > 1) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
        ssize_t more = rd_kafka_consume_batch_queue(q, (int)k->cfg->batch_time_ms, rkms + 1, max - 1);
        rd_kafka_queue_destroy(q);
        if (more > 0)
            n += (size_t)more;
    }
    size_t taken = collect(k, rkms, n, head, track);
    free(rkms);
    return taken;
}

static void kafka_commit(natter_log_t *log, natter_msg_t *head, int status);

/* A fatal consumer error ends that consumer for good. The one seen: the
 * broker gone longer than the session, so the group gave our static
 * member's slot to its own rejoin and fenced the old member's commit
 * (FENCED_INSTANCE_ID). The store consumer is then made anew, with the same
 * instance id; it resumes from the group's committed offsets, so a batch
 * not yet committed is read and stored again (stores ignore a known id). */
static void renew_store_if_fatal(log_kafka_t *k)
{
    char why[256], err[256], instance[160];
    if (rd_kafka_fatal_error(k->store, why, sizeof(why)) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    fprintf(stderr, "natter: kafka: store consumer failed for good (%s); starting a new one\n", why);
    pthread_mutex_lock(&k->status_lock);
    snprintf(k->store_fenced_why, sizeof(k->store_fenced_why), "%s", why);
    pthread_mutex_unlock(&k->status_lock);
    rd_kafka_destroy_flags(k->store, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    for (int p = 0; p < MAX_PARTITIONS; p++)
        k->batch[p].min = k->batch[p].stop = -1;
    store_instance(k, instance, sizeof(instance));
    while ((k->store = new_consumer(k, "store", k->cfg->kafka_group, instance, err, sizeof(err))) == NULL ||
           subscribe_store(k, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "natter: kafka: new store consumer: %s (retrying in 1 s)\n", err);
        if (k->store != NULL)
            rd_kafka_destroy_flags(k->store, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        k->store = NULL;
        if (atomic_load(&k->closed))
            return;
        sleep(1);
    }
    pthread_mutex_lock(&k->status_lock);
    k->store_fenced_why[0] = '\0';
    pthread_mutex_unlock(&k->status_lock);
}

static size_t kafka_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_kafka_t *k = (log_kafka_t *)log;
    if (atomic_load(&k->closed))
        return 0;
    renew_store_if_fatal(k);
    if (k->store == NULL)
        return 0;
    size_t n = poll_batch(k, k->store, head, max, timeout_ms, 1);
    if (n == 0)
        kafka_commit(log, NULL, NATTER_OK); /* a batch of only skipped records: move past it */
    return n;
}

/* The fan-out thread polls again: what its last poll gave is handed on
 * (pushed, in the unstored tail), and fanout_wait_own may count it read. */
static void fanout_handed_on(log_kafka_t *k)
{
    if (!k->fanout_given_new)
        return;
    k->fanout_given_new = 0;
    pthread_mutex_lock(&k->fanout_lock);
    for (int p = 0; p < k->partitions; p++) {
        if (k->fanout_read[p] != k->fanout_given[p]) {
            k->fanout_read[p] = k->fanout_given[p];
            k->fanout_stalled[p] = 0;
        }
    }
    if (k->fanout_waiters > 0)
        pthread_cond_broadcast(&k->fanout_moved);
    pthread_mutex_unlock(&k->fanout_lock);
}

/* This node's ids go past the newest any node's record brought (history is
 * in id order, pushes in the log's): a reply made here after a message from
 * a node whose clock is ahead gets a larger id. Not past one more than
 * IDS_FOLLOW_AHEAD_MS ahead of this clock: a node whose clock is far off
 * does not drag every other's ids, and created_at with them. */
#define IDS_FOLLOW_AHEAD_MS 10000

static void ids_follow(log_kafka_t *k, uint64_t newest)
{
    if (newest != 0 && natter_id_time_ms(newest) - natter_now_ms() <= IDS_FOLLOW_AHEAD_MS)
        natter_idgen_start_after(&k->ids, newest);
}

static size_t kafka_fanout_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_kafka_t *k = (log_kafka_t *)log;
    uint64_t newest = 0;
    if (atomic_load(&k->closed))
        return 0;
    fanout_handed_on(k);
    size_t n = poll_batch(k, k->fanout, head, max, timeout_ms, 0);
    for (natter_msg_t *m = *head; n > 0 && m != NULL; m = m->next) {
        if (m->id > newest)
            newest = m->id;
        m->replayed = 0;
        if (m->partition < 0 || m->partition >= k->partitions)
            continue;
        m->replayed = m->offset < k->live_from[m->partition];
        if (m->offset + 1 > k->fanout_given[m->partition])
            k->fanout_given[m->partition] = m->offset + 1;
        k->fanout_given_new = 1;
    }
    ids_follow(k, newest); /* before the batch is pushed: a reply to it comes after */
    return n;
}

/* Waits for the fan-out to pass what this process made durable in the
 * chat's partition. An own record always decodes, so the fan-out gives it
 * (a record it skips is never one of ours). A wait that timed out marks
 * the partition stalled: later waits there end at once until the fan-out
 * moves on in it, so a partition between leaders or a fan-out far behind
 * costs the worker pool one bounded wait, not one per read. */
static int kafka_fanout_wait_own(natter_log_t *log, uint64_t chat_id, int timeout_ms)
{
    log_kafka_t *k = (log_kafka_t *)log;
    char key[NATTER_ID_STR_MAX];
    int klen;
    int32_t p = partition_of(k, chat_id, key, &klen);
    int64_t want = atomic_load(&k->own_durable[p]);
    struct timespec until;
    natter_mono_deadline(&until, timeout_ms);
    int rc = NATTER_OK;
    pthread_mutex_lock(&k->fanout_lock);
    k->fanout_waiters++;
    while (rc == NATTER_OK && k->fanout_read[p] < want) {
        if (atomic_load(&k->closed)) {
            rc = NATTER_EUNAVAIL;
        } else if (k->fanout_stalled[p]) {
            rc = NATTER_ETIMEDOUT;
        } else if (pthread_cond_timedwait(&k->fanout_moved, &k->fanout_lock, &until) != 0 &&
                   k->fanout_read[p] < want) {
            k->fanout_stalled[p] = timeout_ms > 0; /* a look that does not wait marks nothing */
            rc = NATTER_ETIMEDOUT;
        }
    }
    k->fanout_waiters--;
    pthread_mutex_unlock(&k->fanout_lock);
    return rc;
}

static int64_t kafka_stored_offset(natter_log_t *log, int32_t partition)
{
    log_kafka_t *k = (log_kafka_t *)log;
    return partition >= 0 && partition < MAX_PARTITIONS ? atomic_load(&k->stored[partition]) : -1;
}

/* Stored: commit max+1 per partition (where a malformed record could not be
 * kept in the dead letters, up to it, and read on from it). Not stored: seek
 * back to the batch's first offsets so the records are read again. */
static void kafka_commit(natter_log_t *log, natter_msg_t *head, int status)
{
    log_kafka_t *k = (log_kafka_t *)log;
    (void)head;
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < MAX_PARTITIONS; p++) {
        span_t *s = &k->batch[p];
        if (s->min < 0)
            continue;
        if (status != NATTER_OK) {
            rd_kafka_topic_partition_list_add(seek, k->topic, p)->offset = s->min;
        } else if (s->stop >= 0) { /* stored up to a malformed record not kept: on from it */
            rd_kafka_topic_partition_list_add(commit, k->topic, p)->offset = s->stop;
            rd_kafka_topic_partition_list_add(seek, k->topic, p)->offset = s->stop;
        } else {
            rd_kafka_topic_partition_list_add(commit, k->topic, p)->offset = s->max + 1;
        }
        s->min = s->stop = -1;
    }
    if (commit->cnt > 0) {
        rd_kafka_resp_err_t rerr = rd_kafka_commit(k->store, commit, 0);
        if (rerr)
            fprintf(stderr, "natter: kafka: commit: %s (the batch will be stored again, once)\n",
                    rd_kafka_err2str(rerr));
    }
    if (seek->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(k->store, seek, 5000);
        if (e) {
            fprintf(stderr, "natter: kafka: seek back: %s\n", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(commit);
    rd_kafka_topic_partition_list_destroy(seek);
}

static int kafka_ping(natter_log_t *log);

static int kafka_consumer_status(natter_log_t *log, char *why, size_t len)
{
    log_kafka_t *k = (log_kafka_t *)log;
    pthread_mutex_lock(&k->status_lock);
    int fenced = k->store_fenced_why[0] != '\0';
    if (fenced)
        snprintf(why, len, "the store consumer was fenced (%s) and is rejoining its group", k->store_fenced_why);
    pthread_mutex_unlock(&k->status_lock);
    if (fenced)
        return NATTER_EUNAVAIL;
    uint64_t since = atomic_load(&k->store_down_since_ns);
    if (since == 0 || natter_mono_ns() - since < (uint64_t)k->cfg->kafka_timeout_ms * 1000000u)
        return NATTER_OK;
    if (kafka_ping(log) == NATTER_OK) { /* back, and nothing consumed since */
        atomic_compare_exchange_strong(&k->store_down_since_ns, &since, 0);
        return NATTER_OK;
    }
    snprintf(why, len, "the store consumer has reached no broker for %.1f s", (double)(natter_mono_ns() - since) / 1e9);
    return NATTER_EUNAVAIL;
}

static int kafka_ping(natter_log_t *log)
{
    log_kafka_t *k = (log_kafka_t *)log;
    if (kafka_failed(log, NULL, 0))
        return NATTER_EUNAVAIL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rerr = rd_kafka_metadata(k->producer, 0, NULL, &md, 1000);
    if (md)
        rd_kafka_metadata_destroy(md);
    return rerr == RD_KAFKA_RESP_ERR_NO_ERROR ? NATTER_OK : NATTER_EUNAVAIL;
}

static void kafka_shutdown(natter_log_t *log)
{
    log_kafka_t *k = (log_kafka_t *)log;
    close_to_readers(k);
    hold_sweep(k, 1); /* what --kafka-hold holds goes now */
    /* what was produced gets its report (202 or 503) before the loop stops */
    rd_kafka_flush(k->producer, (int)k->cfg->kafka_timeout_ms);
}

static int kafka_drained(natter_log_t *log)
{
    /* the rest stays in the broker for the next start: nothing to drain here */
    return atomic_load(&((log_kafka_t *)log)->closed);
}

/* ---- the ephemeral path --------------------------------------------------- */

static rd_kafka_t *new_ephemeral_producer(log_kafka_t *k, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = base_conf(k, "ephemeral-producer", err, errlen);
    if (conf == NULL || set(conf, "acks", "1", err, errlen) || set(conf, "linger.ms", "2", err, errlen) ||
        set(conf, "message.timeout.ms", "2000", err, errlen)) { /* a typing indicator later than this is moot */
        if (conf)
            rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static int ephemeral_open(log_kafka_t *k, char *err, size_t errlen)
{
    /* kept a minute: a node reads it from the end, nobody reads it later */
    static const char *const configs[] = {"retention.ms", "60000", "segment.ms", "60000", NULL};
    char group[160];
    snprintf(k->eph_topic, sizeof(k->eph_topic), "%s.ephemeral", k->topic);
    snprintf(group, sizeof(group), "%s-ephemeral-%u-%d", k->cfg->kafka_group, k->cfg->node_id, (int)getpid());
    if (ensure_topic(k, k->eph_topic, configs, err, errlen) != NATTER_OK ||
        count_partitions(k, k->eph_topic, &k->eph_partitions, err, errlen) != NATTER_OK ||
        (k->eph_producer = new_ephemeral_producer(k, err, errlen)) == NULL ||
        (k->eph_consumer = new_consumer(k, "ephemeral", group, NULL, err, errlen)) == NULL)
        return NATTER_EUNAVAIL;
    return assign_all_from_end(k->eph_consumer, k->eph_topic, k->eph_partitions, err, errlen);
}

static void ephemeral_close(log_kafka_t *k)
{
    destroy_consumer(k->eph_consumer);
    if (k->eph_producer != NULL)
        rd_kafka_destroy(k->eph_producer); /* what is still queued is dropped: it was ephemeral */
}

/* Keyed by chat (typing, reads) or by the publishing node (presence). */
static int kafka_publish(natter_log_t *log, natter_msg_t *ev)
{
    log_kafka_t *k = (log_kafka_t *)log;
    char key[NATTER_ID_STR_MAX];
    size_t len;
    if (atomic_load(&k->closed))
        return NATTER_EUNAVAIL;
    ev->id = natter_idgen_next(&k->ids, natter_now_ms());
    ev->created_at_ms = natter_id_time_ms(ev->id);
    int klen = natter_id_format(key, ev->chat_id ? ev->chat_id : k->cfg->node_id);
    uint8_t *value = natter_record_encode(ev, &len);
    rd_kafka_resp_err_t rerr = rd_kafka_producev(k->eph_producer, RD_KAFKA_V_TOPIC(k->eph_topic),
                                                 RD_KAFKA_V_KEY(key, (size_t)klen), RD_KAFKA_V_VALUE(value, len),
                                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
    if (rerr) {
        free(value);
        return NATTER_EUNAVAIL;
    }
    free(ev);
    return NATTER_OK;
}

static size_t kafka_ephemeral_poll(natter_log_t *log, natter_msg_t **head, size_t max, int timeout_ms)
{
    log_kafka_t *k = (log_kafka_t *)log;
    rd_kafka_poll(k->eph_producer, 0); /* its events: nothing waits on them, but they must not pile up */
    return poll_batch(k, k->eph_consumer, head, max, timeout_ms, 0);
}

static void kafka_ids_after(natter_log_t *log, uint64_t id)
{
    natter_idgen_start_after(&((log_kafka_t *)log)->ids, id);
}

const natter_log_ops_t natter_log_kafka = {
    .version = 10,
    .size = sizeof(log_kafka_t),
    .name = "kafka",
    .open = kafka_open,
    .close = kafka_close,
    .append = kafka_append,
    .poll = kafka_poll,
    .commit = kafka_commit,
    .ping = kafka_ping,
    .shutdown = kafka_shutdown,
    .drained = kafka_drained,
    .fanout_poll = kafka_fanout_poll,
    .append_held = kafka_append_held,
    .release = kafka_release,
    .append_existing = kafka_append_existing,
    .publish = kafka_publish,
    .ephemeral_poll = kafka_ephemeral_poll,
    .consumer_status = kafka_consumer_status,
    .dead_letter = kafka_dead_letter,
    .stored_offset = kafka_stored_offset,
    .fanout_wait_own = kafka_fanout_wait_own,
    .idle = NULL,
    .ids_after = kafka_ids_after,
    .failed = kafka_failed,
};
