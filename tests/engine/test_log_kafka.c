/*
 * The Kafka log against a real broker (NATTER_TEST_KAFKA=HOST:PORT[,...],
 * set by scripts/test-engines), with its threads all busy at once: four
 * threads append (each message acknowledged exactly once, from the poll
 * thread), the store consumer polls and commits, a fan-out reader polls,
 * and the lag thread measures, until every message has been through (half
 * of them carrying recipients, which the fan-out reader reads back as sent
 * and the store consumer, whose messages never need them, leaves out); then
 * the log closes under them. Then the dead letters: a record that does not
 * decode, met by the store consumer, and a record the store refused, both
 * read back from <topic>-dead-letters with their reasons and sources. Then
 * read-your-writes: a message once durable is waited for until the fan-out
 * handed it on, and a partition whose wait timed out is not waited on again
 * until the fan-out moves on there. --kafka-linger and --kafka-batch are
 * read back from what the producer did: a record alone waits the linger, and
 * the broker's own log files (NATTER_TEST_KAFKA_LOGS, its log.dirs) hold no
 * record batch larger than --kafka-batch (that log holds nothing: --kafka-hold
 * 0). --kafka-hold, on a log of its own:
 * a partition's posts wait until --kafka-hold-batch of them are in, or until
 * the hold is up, or the log closes, and every one is then made durable.
 * Last, a batch the store refused and whose retry read fewer records commits
 * only what the retry read: the log reopened gets the rest.
 * Built with ASan and with TSan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/message.h"
#include "core/metrics.h"
#include "core/util.h"
#include "log/log.h"
#include "log/record.h"

#include <librdkafka/rdkafka.h>

#define APPENDERS 4
#define PER_APPENDER 250
#define TOTAL (APPENDERS * PER_APPENDER)
#define LINGER_MS "100" /* --kafka-linger: long enough to tell from none */
#define BATCH 8 /* --kafka-batch: far fewer than the appenders queue within one linger */
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEADLINE_NS 120000000000ull /* generous: a group join and a fresh topic on a loaded machine */

static natter_config_t cfg;
static natter_log_t *klog;
static natter_log_t *hlog; /* the --kafka-hold tests' own */
static const char *broker_logs; /* the broker's log.dirs */
static atomic_int durable_ok, durable_failed, append_failed, fanned_out, recipients_wrong;

static int setup(void **state)
{
    (void)state;
    const char *brokers = getenv("NATTER_TEST_KAFKA");
    if (brokers == NULL) {
        fprintf(stderr, "NATTER_TEST_KAFKA is not set: no broker to test against\n");
        return -1;
    }
    broker_logs = getenv("NATTER_TEST_KAFKA_LOGS");
    if (broker_logs == NULL) {
        fprintf(stderr, "NATTER_TEST_KAFKA_LOGS is not set: the broker's log.dirs, to read its record batches\n");
        return -1;
    }
    char topic[64], err[256];
    snprintf(topic, sizeof(topic), "natter-logtest-%d-%lld", (int)getpid(), (long long)natter_now_ms());
    char *argv[] = {"natter", "--log", "kafka", "--kafka-brokers", (char *)brokers, "--kafka-topic", topic,
                    "--kafka-group", topic, "--kafka-partitions", "3", "--node-id", "7", "--batch-time", "5",
                    "--kafka-linger", LINGER_MS, "--kafka-batch", STR(BATCH), "--kafka-hold", "0", NULL};
    if (natter_config_load(&cfg, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    klog = xcalloc(1, natter_log_kafka.size);
    klog->ops = &natter_log_kafka;
    if (natter_log_kafka.open(klog, &cfg, err, sizeof(err)) != NATTER_OK) {
        fprintf(stderr, "open: %s\n", err);
        free(klog);
        klog = NULL;
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (hlog != NULL) { /* a hold test failed before it closed its log */
        natter_log_kafka.close(hlog);
        free(hlog);
    }
    if (klog == NULL) /* setup failed: nothing was opened */
        return 0;
    natter_log_kafka.close(klog);
    free(klog);
    return 0;
}

static void on_durable(natter_msg_t *msg, int status, void *arg)
{
    (void)msg, (void)arg;
    atomic_fetch_add(status == NATTER_OK ? &durable_ok : &durable_failed, 1);
}

static void *appender(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_APPENDER; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "t%d-%d", t, i);
        const uint64_t to[2] = {(uint64_t)(100 + t), (uint64_t)(i + 1)};
        natter_msg_t *m = natter_msg_new_to((uint64_t)(1 + (i % 16)), (uint64_t)(100 + t), text, (size_t)n, "", 0, to,
                                            i % 2 ? 2 : 0);
        m->on_durable = on_durable;
        if (natter_log_kafka.append(klog, m) != NATTER_OK) {
            free(m);
            atomic_fetch_add(&append_failed, 1);
        }
    }
    return NULL;
}

/* Odd messages carry two recipients (their appender and i + 1), even
 * ones none (appender): 1 when m came back so. */
static int recipients_as_sent(const natter_msg_t *m)
{
    int t, i;
    if (sscanf(m->content, "t%d-%d", &t, &i) != 2)
        return 0;
    if (i % 2 == 0)
        return m->nrecipients == 0;
    const uint64_t *to = natter_msg_recipients(m);
    return m->nrecipients == 2 && to[0] == (uint64_t)(100 + t) && to[1] == (uint64_t)(i + 1);
}

static void *fanout_reader(void *arg)
{
    (void)arg;
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (atomic_load(&fanned_out) < TOTAL && natter_mono_ns() < deadline) {
        natter_msg_t *head = NULL;
        natter_log_kafka.fanout_poll(klog, &head, 256, 100);
        while (head != NULL) {
            natter_msg_t *next = head->next;
            atomic_fetch_add(&fanned_out, 1);
            if (!recipients_as_sent(head))
                atomic_fetch_add(&recipients_wrong, 1);
            free(head);
            head = next;
        }
    }
    return NULL;
}

static int id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_everything_at_once(void **state)
{
    (void)state;
    pthread_t fan, app[APPENDERS];
    pthread_create(&fan, NULL, fanout_reader, NULL);
    for (int t = 0; t < APPENDERS; t++)
        pthread_create(&app[t], NULL, appender, (void *)(intptr_t)t);

    /* the store consumer, here: every message once, in batches, committed */
    uint64_t *ids = xcalloc(2 * TOTAL, sizeof(*ids));
    size_t nids = 0;
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (nids < TOTAL && natter_mono_ns() < deadline) {
        natter_msg_t *head = NULL;
        size_t n = natter_log_kafka.poll(klog, &head, 500, 200);
        for (natter_msg_t *m = head; m != NULL && n > 0; m = m->next) {
            if (nids < 2 * TOTAL)
                ids[nids++] = m->id;
            if (m->nrecipients != 0)
                atomic_fetch_add(&recipients_wrong, 1);
        }
        natter_log_kafka.commit(klog, head, NATTER_OK);
        while (head != NULL) {
            natter_msg_t *next = head->next;
            free(head);
            head = next;
        }
    }
    for (int t = 0; t < APPENDERS; t++)
        pthread_join(app[t], NULL);
    pthread_join(fan, NULL);
    while (atomic_load(&durable_ok) + atomic_load(&durable_failed) < TOTAL && natter_mono_ns() < deadline)
        usleep(10000);

    assert_int_equal(atomic_load(&append_failed), 0);
    assert_int_equal(atomic_load(&durable_failed), 0);
    assert_int_equal(atomic_load(&durable_ok), TOTAL);
    assert_int_equal(nids, TOTAL);
    qsort(ids, nids, sizeof(*ids), id_cmp);
    for (size_t i = 1; i < nids; i++)
        assert_true(ids[i] > ids[i - 1]); /* no message twice */
    assert_int_equal(atomic_load(&fanned_out), TOTAL);
    assert_int_equal(atomic_load(&recipients_wrong), 0);
    free(ids);
}

/* Produces bytes that are no record to the log's topic, as a foreign or
 * broken producer would. */
static void produce_garbage(const char *brokers, const char *topic)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("1", 1),
                                       RD_KAFKA_V_VALUE("not a record", 12), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* The value of header name of rkm, NUL-terminated into dst ("" when none). */
static void header(const rd_kafka_message_t *rkm, const char *name, char *dst, size_t len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t vlen = 0;
    dst[0] = '\0';
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(dst, len, "%.*s", (int)vlen, (const char *)v);
}

static void test_dead_letters(void **state)
{
    (void)state;
    const char *brokers = getenv("NATTER_TEST_KAFKA");
    char dlq[200], err[256];
    snprintf(dlq, sizeof(dlq), "%s-dead-letters", cfg.kafka_topic);

    /* a record that does not decode: the store consumer keeps it and moves
     * on; when the first try to keep it fails, it is read again and kept */
    natter_fault_arm(NATTER_FAULT_LOG_DEAD_LETTER, &(natter_fault_t){.nth = 1, .count = 1, .rc = NATTER_EUNAVAIL});
    produce_garbage(brokers, cfg.kafka_topic);
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (atomic_load(&natter_metrics.shared.dead_letters) < 1 && natter_mono_ns() < deadline) {
        natter_msg_t *head = NULL;
        assert_int_equal(natter_log_kafka.poll(klog, &head, 100, 200), 0); /* nothing else is there */
        natter_log_kafka.commit(klog, head, NATTER_OK);
    }
    assert_int_equal(atomic_load(&natter_metrics.shared.dead_letters), 1);
    assert_int_equal(natter_fault_calls(NATTER_FAULT_LOG_DEAD_LETTER), 2); /* the failed try, then the kept one */
    natter_fault_clear();

    /* a record the store refused */
    natter_msg_t *m = natter_msg_new(77, 5, "refused", 7, "c-1", 3);
    m->id = 123456789;
    m->created_at_ms = 1700000000000;
    m->partition = 1;
    m->offset = 42;
    assert_int_equal(natter_log_kafka.dead_letter(klog, m, "the store refused it: test"), NATTER_OK);

    /* both are in the dead-letter topic, with their reasons and sources */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[256];
    snprintf(group, sizeof(group), "%s-reader", dlq);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, dlq, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    int garbage = 0, refused = 0;
    while ((garbage == 0 || refused == 0) && natter_mono_ns() < deadline) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c, 500);
        if (rkm == NULL)
            continue;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char reason[128], source[256], want[256];
            header(rkm, "natter-reason", reason, sizeof(reason));
            header(rkm, "natter-source", source, sizeof(source));
            natter_msg_t *back = natter_record_decode(rkm->payload, rkm->len);
            if (back == NULL) {
                assert_int_equal(rkm->len, 12);
                assert_memory_equal(rkm->payload, "not a record", 12);
                assert_string_equal(reason, "malformed record");
                snprintf(want, sizeof(want), "%s/", cfg.kafka_topic);
                assert_int_equal(strncmp(source, want, strlen(want)), 0);
                garbage++;
            } else {
                assert_int_equal(back->id, m->id);
                assert_int_equal(back->chat_id, 77);
                assert_int_equal(back->sender_id, 5);
                assert_int_equal(back->content_len, 7);
                assert_memory_equal(back->content, "refused", 7);
                assert_string_equal(reason, "the store refused it: test");
                snprintf(want, sizeof(want), "%s/1/42", cfg.kafka_topic);
                assert_string_equal(source, want);
                free(back);
                refused++;
            }
        }
        rd_kafka_message_destroy(rkm);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(m);
    assert_int_equal(garbage, 1);
    assert_int_equal(refused, 1);
}

#define MINE_CHAT 4242

static atomic_int mine_durable, mine_waiter_done;

static void on_mine_durable(natter_msg_t *msg, int status, void *arg)
{
    (void)msg, (void)arg;
    if (status == NATTER_OK)
        atomic_fetch_add(&mine_durable, 1);
}

/* Appends a message to MINE_CHAT and waits until it is durable. */
static void append_mine(const char *text)
{
    int before = atomic_load(&mine_durable);
    natter_msg_t *m = natter_msg_new(MINE_CHAT, 9, text, strlen(text), "", 0);
    m->on_durable = on_mine_durable;
    assert_int_equal(natter_log_kafka.append(klog, m), NATTER_OK);
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (atomic_load(&mine_durable) == before && natter_mono_ns() < deadline)
        usleep(10000);
    assert_int_equal(atomic_load(&mine_durable), before + 1);
}

static void *mine_waiter(void *arg)
{
    *(int *)arg = natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 60000);
    atomic_store(&mine_waiter_done, 1);
    return NULL;
}

/* Polls the fan-out until it gives MINE_CHAT's message text; 1 when it did. */
static int fanout_gives(const char *text)
{
    int found = 0;
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (!found && natter_mono_ns() < deadline) {
        natter_msg_t *head = NULL;
        natter_log_kafka.fanout_poll(klog, &head, 256, 100);
        while (head != NULL) {
            natter_msg_t *next = head->next;
            found |= head->chat_id == MINE_CHAT && head->content_len == strlen(text) &&
                     memcmp(head->content, text, head->content_len) == 0;
            free(head);
            head = next;
        }
    }
    return found;
}

/* The fan-out thread is back for more: the batch it was given is handed on. */
static void fanout_comes_back(void)
{
    natter_msg_t *head = NULL;
    natter_log_kafka.fanout_poll(klog, &head, 256, 0);
    natter_msg_free_list(head);
}

/* Read-your-writes: once a message is durable (its poster answered), a
 * read that waits (fanout_wait_own) goes on only after the fan-out thread
 * was given the record and polled again (it handed the batch on: pushed,
 * in the unstored tail); until then it waits, and a waiter wakes when that
 * poll comes. A wait that timed out marks the partition stalled: the next
 * ends at once, until the fan-out moves on there. */
static void test_read_your_writes(void **state)
{
    (void)state;
    append_mine("mine");
    /* durable, and no fan-out poll since: not read (a look without waiting marks nothing) */
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 0), NATTER_ETIMEDOUT);

    int waited = 1;
    pthread_t waiter;
    pthread_create(&waiter, NULL, mine_waiter, &waited);
    assert_true(fanout_gives("mine"));
    /* given, not yet handed on: a read still waits, and the waiter has not gone on */
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 0), NATTER_ETIMEDOUT);
    assert_int_equal(atomic_load(&mine_waiter_done), 0);
    fanout_comes_back();
    pthread_join(waiter, NULL);
    assert_int_equal(waited, NATTER_OK);
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 0), NATTER_OK);

    /* a fan-out that does not come: one wait times out, the next ends without
     * waiting out its minute (half of it is the line: nothing here takes that
     * long but the wait itself), until the fan-out moves on */
    append_mine("stalled");
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 20), NATTER_ETIMEDOUT);
    uint64_t asked = natter_mono_ns();
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 60000), NATTER_ETIMEDOUT);
    assert_true(natter_mono_ns() - asked < 30000000000ull);
    assert_true(fanout_gives("stalled"));
    fanout_comes_back();
    assert_int_equal(natter_log_kafka.fanout_wait_own(klog, MINE_CHAT, 60000), NATTER_OK);
}

/* --kafka-linger reaches the producer: a record alone in the producer's
 * queue waits the linger for others before its request goes, so it is not
 * durable sooner (a lower bound: a slow machine only makes it later). */
static void test_linger(void **state)
{
    (void)state;
    uint64_t sent = natter_mono_ns();
    append_mine("alone");
    assert_true(natter_mono_ns() - sent >= (uint64_t)atoi(LINGER_MS) * 1000000u);
}

static uint32_t be32_at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks the record batches (Kafka's on-disk format, magic 2: base offset 8
 * bytes, length 4, then leader epoch 4, magic 1, crc 4, attributes 2, last
 * offset delta 4, two timestamps 16, producer id 8, epoch 2, base sequence 4,
 * record count 4) of every segment of one partition: adds each batch's
 * record count to *records and raises *largest to the largest. */
static void read_batches(int partition, uint64_t *records, uint32_t *largest)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s-%d", broker_logs, cfg.kafka_topic, partition);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".log") != 0)
            continue;
        char path[800];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *seg = fopen(path, "rb");
        assert_non_null(seg);
        unsigned char h[61];
        while (fread(h, 1, sizeof(h), seg) == sizeof(h)) {
            assert_int_equal(h[16], 2); /* magic: a record batch */
            uint32_t count = be32_at(h + 57);
            *records += count;
            if (count > *largest)
                *largest = count;
            assert_int_equal(fseek(seg, (long)be32_at(h + 8) + 12 - (long)sizeof(h), SEEK_CUR), 0);
        }
        fclose(seg);
    }
    closedir(d);
}

/* --kafka-batch reaches the producer: the appenders queued hundreds of
 * records within one linger, yet the broker holds none of them in a batch
 * (one produce request's records of one partition) larger than BATCH. Runs
 * right after test_everything_at_once, before anything else writes the
 * topic. */
static void test_batch(void **state)
{
    (void)state;
    uint64_t records = 0;
    uint32_t largest = 0;
    for (int p = 0; p < 3; p++)
        read_batches(p, &records, &largest);
    assert_int_equal(records, TOTAL);
    assert_true(largest > 0 && largest <= BATCH);
}

/* ---- --kafka-hold ---------------------------------------------------------- */

#define HOLD_MS 1000 /* long beside a loop of appends, so what sends them is known */
#define HOLD_BATCH 16
#define HOLD_CHAT 5151
static natter_config_t hcfg;
static atomic_int hold_durable, hold_failed;

static void on_hold_durable(natter_msg_t *msg, int status, void *arg)
{
    (void)msg, (void)arg;
    atomic_fetch_add(status == NATTER_OK ? &hold_durable : &hold_failed, 1);
}

static void open_hold_log(void)
{
    char topic[64], err[256];
    snprintf(topic, sizeof(topic), "natter-holdtest-%d-%lld", (int)getpid(), (long long)natter_now_ms());
    char *argv[] = {"natter", "--log", "kafka", "--kafka-brokers", cfg.kafka_brokers, "--kafka-topic", topic,
                    "--kafka-group", topic, "--kafka-partitions", "2", "--node-id", "8", "--kafka-linger", "0",
                    "--kafka-hold", STR(HOLD_MS), "--kafka-hold-batch", STR(HOLD_BATCH), NULL};
    assert_int_equal(natter_config_load(&hcfg, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, err, sizeof(err)),
                     NATTER_OK);
    hlog = xcalloc(1, natter_log_kafka.size);
    hlog->ops = &natter_log_kafka;
    assert_int_equal(natter_log_kafka.open(hlog, &hcfg, err, sizeof(err)), NATTER_OK);
}

static void append_held_post(int i)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "hold-%d", i);
    natter_msg_t *m = natter_msg_new(HOLD_CHAT, 9, text, (size_t)n, "", 0);
    m->on_durable = on_hold_durable;
    assert_int_equal(natter_log_kafka.append(hlog, m), NATTER_OK);
}

static void wait_hold_durable(int n)
{
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (atomic_load(&hold_durable) + atomic_load(&hold_failed) < n && natter_mono_ns() < deadline)
        usleep(10000);
    assert_int_equal(atomic_load(&hold_failed), 0);
    assert_int_equal(atomic_load(&hold_durable), n);
}

/* The batch ends the hold: fifteen posts wait; the sixteenth sends all
 * sixteen at once, inside its append, a second before the hold is up. */
static void test_hold_ends_at_its_batch(void **state)
{
    (void)state;
    open_hold_log();
    _Atomic uint64_t *by_count = &natter_metrics.shared.kafka_hold_by_count,
                     *by_time = &natter_metrics.shared.kafka_hold_by_time;
    for (int i = 0; i < HOLD_BATCH - 1; i++)
        append_held_post(i);
    assert_int_equal(atomic_load(by_count), 0);
    assert_int_equal(atomic_load(by_time), 0);
    append_held_post(HOLD_BATCH - 1);
    assert_int_equal(atomic_load(by_count), 1);
    assert_int_equal(atomic_load(by_time), 0);
    wait_hold_durable(HOLD_BATCH);
}

/* A post alone waits out the hold (a lower bound: a slow machine only
 * makes it later), then goes. */
static void test_hold_is_up_for_a_post_alone(void **state)
{
    (void)state;
    uint64_t sent = natter_mono_ns();
    append_held_post(100);
    wait_hold_durable(HOLD_BATCH + 1);
    assert_true(natter_mono_ns() - sent >= (uint64_t)HOLD_MS * 1000000u);
    assert_int_equal(atomic_load(&natter_metrics.shared.kafka_hold_by_time), 1);
    assert_int_equal(atomic_load(&natter_metrics.shared.kafka_hold_by_count), 1);
}

/* Closing sends what is held: each post appended is made durable, none
 * failed. */
static void test_hold_closes_with_its_posts_sent(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        append_held_post(200 + i);
    natter_log_kafka.close(hlog);
    free(hlog);
    hlog = NULL;
    wait_hold_durable(HOLD_BATCH + 4);
    assert_int_equal(atomic_load(&natter_metrics.shared.kafka_hold_by_time), 2);
}

#define SPAN 20
static atomic_int span_durable;

static void on_span_durable(natter_msg_t *msg, int status, void *arg)
{
    (void)msg, (void)arg;
    if (status == NATTER_OK)
        atomic_fetch_add(&span_durable, 1);
}

/* Polls the store consumer (at most max a poll) until every "span-" record
 * not yet seen has come, or for 60 s; seen[i] marks span-i. 1 when all
 * came. With max small, one poll: the records of it are marked, no more. */
static int store_reads_spans(size_t max, int seen[SPAN], int once)
{
    uint64_t deadline = natter_mono_ns() + 60000000000ull;
    int all = 0;
    do {
        natter_msg_t *head = NULL;
        size_t n = natter_log_kafka.poll(klog, &head, max, 200);
        for (natter_msg_t *m = head; m != NULL; m = m->next) {
            int i;
            if (sscanf(m->content, "span-%d", &i) == 1 && i >= 0 && i < SPAN)
                seen[i] = 1;
        }
        if (!once || n > 0)
            natter_log_kafka.commit(klog, head, NATTER_OK);
        while (head != NULL) {
            natter_msg_t *next = head->next;
            free(head);
            head = next;
        }
        all = 1;
        for (int i = 0; i < SPAN; i++)
            all &= seen[i];
        if (once && n > 0)
            return all;
    } while (!all && natter_mono_ns() < deadline);
    return all;
}

/* A batch the store refused is read again from its first offsets; when the
 * retry's poll brings fewer records than the first, its commit must end at
 * what it read, not at the refused batch's end: a consumer that starts over
 * from the commit (a crash, a rebalance; here the log reopened) gets the
 * rest. It used to commit the refused batch's last offset + 1, and the rest
 * of those records, each acknowledged, were never stored. */
static void test_a_retry_commits_what_it_read(void **state)
{
    (void)state;
    for (int i = 0; i < SPAN; i++) {
        char text[16];
        int n = snprintf(text, sizeof(text), "span-%d", i);
        natter_msg_t *m = natter_msg_new(MINE_CHAT, 9, text, (size_t)n, "", 0);
        m->on_durable = on_span_durable;
        assert_int_equal(natter_log_kafka.append(klog, m), NATTER_OK);
    }
    uint64_t deadline = natter_mono_ns() + DEADLINE_NS;
    while (atomic_load(&span_durable) < SPAN && natter_mono_ns() < deadline)
        usleep(10000);
    assert_int_equal(atomic_load(&span_durable), SPAN);

    /* one batch holds them all (and whatever earlier tests left), refused */
    int seen[SPAN] = {0};
    natter_msg_t *batch = NULL, **tail = &batch;
    while (natter_mono_ns() < deadline) {
        natter_log_kafka.poll(klog, tail, 1000, 200);
        for (; *tail != NULL; tail = &(*tail)->next) {
            int i;
            if (sscanf((*tail)->content, "span-%d", &i) == 1 && i >= 0 && i < SPAN)
                seen[i] = 1;
        }
        int all = 1;
        for (int i = 0; i < SPAN; i++)
            all &= seen[i];
        if (all)
            break;
    }
    natter_log_kafka.commit(klog, batch, NATTER_EUNAVAIL);
    while (batch != NULL) {
        natter_msg_t *next = batch->next;
        free(batch);
        batch = next;
    }
    /* the retry reads a few of them again, stored this time */
    memset(seen, 0, sizeof(seen));
    store_reads_spans(3, seen, 1);
    int read_again = 0;
    for (int i = 0; i < SPAN; i++)
        read_again += seen[i];
    assert_true(read_again < SPAN);

    /* the consumer starts over from what was committed: the rest comes */
    char err[256];
    natter_log_kafka.close(klog);
    memset(klog, 0, natter_log_kafka.size); /* as a new node gets it */
    klog->ops = &natter_log_kafka;
    assert_int_equal(natter_log_kafka.open(klog, &cfg, err, sizeof(err)), NATTER_OK);
    assert_true(store_reads_spans(1000, seen, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_at_once),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_dead_letters),
        cmocka_unit_test(test_read_your_writes),
        cmocka_unit_test(test_linger),
        cmocka_unit_test(test_hold_ends_at_its_batch),
        cmocka_unit_test(test_hold_is_up_for_a_post_alone),
        cmocka_unit_test(test_hold_closes_with_its_posts_sent),
        cmocka_unit_test(test_a_retry_commits_what_it_read),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
