#include "core/config.h"
#include "core/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OPT_STR, OPT_U32, OPT_LISTEN, OPT_CHOICE } opt_kind_t;

typedef struct {
    const char *flag; /* without the leading "--" */
    opt_kind_t kind;
    size_t offset;
    size_t size;      /* buffer size for strings */
    uint32_t min, max;
    const char *choices; /* "a|b" for OPT_CHOICE */
    const char *def;
    const char *help;
} opt_t;

#define F(field) offsetof(natter_config_t, field), sizeof(((natter_config_t *)0)->field)

static const opt_t options[] = {
    {"listen", OPT_LISTEN, F(listen_host), 0, 0, NULL, "127.0.0.1:8080", "HOST:PORT to serve HTTP and WebSocket on"},
    {"tls-cert", OPT_STR, F(tls_cert), 0, 0, NULL, "-",
     "PEM certificate chain: serve HTTPS and WSS instead of plain HTTP ('-': none)"},
    {"tls-key", OPT_STR, F(tls_key), 0, 0, NULL, "-", "PEM private key of --tls-cert"},
    {"data-dir", OPT_STR, F(data_dir), 0, 0, NULL, "./data", "directory for the embedded store"},
    {"log", OPT_CHOICE, F(log_backend), 0, 0, "local|kafka", "local", "message log backend: local or kafka"},
    {"store", OPT_CHOICE, F(store_backend), 0, 0, "sqlite|cql", "sqlite", "store backend: sqlite or cql"},
    {"node-id", OPT_U32, F(node_id), 0, 1023, NULL, "0", "this node's id (0-1023), part of every id it issues"},
    {"node-lease-ttl", OPT_U32, F(node_lease_ttl_ms), 1000, 3600000, NULL, "10000",
     "ms a node's lease on its --node-id lives unrenewed (a dead node's id is free again after it)"},
    {"batch-size", OPT_U32, F(batch_size), 1, 100000, NULL, "1000", "most messages the store consumer writes per batch"},
    {"batch-time", OPT_U32, F(batch_time_ms), 0, 10000, NULL, "1", "least ms between the starts of two store batches (--log local; one as large as the last goes early when the loops run out of work); kafka: ms a batch may wait to fill"},
    {"threads", OPT_U32, F(threads), 0, 256, NULL, "0", "event loops, each with its own listener (0: one per online CPU)"},
    {"workers", OPT_U32, F(workers), 1, 256, NULL, "4", "API worker threads (store queries; hashing has its own pool, --auth-workers)"},
    {"worker-queue", OPT_U32, F(worker_queue), 1, 10000000, NULL, "10000",
     "jobs waiting for a worker before requests get 503"},
    {"auth-workers", OPT_U32, F(auth_workers), 1, 256, NULL, "1",
     "password-hashing threads for logins and registrations (apart from the API workers)"},
    {"auth-queue", OPT_U32, F(auth_queue), 1, 1000000, NULL, "256",
     "logins and registrations waiting for a hashing thread before they get 503"},
    {"auth-rate-ip", OPT_U32, F(auth_rate_ip), 0, 10000000, NULL, "60",
     "logins and registrations per client address per minute (0 = no limit)"},
    {"auth-rate-user", OPT_U32, F(auth_rate_user), 0, 10000000, NULL, "10",
     "failed logins and registrations per username and client address per minute (0 = no limit)"},
    {"session-ttl", OPT_U32, F(session_ttl_s), 60, 31536000, NULL, "604800", "seconds a session token stays valid"},
    {"argon2-memory", OPT_U32, F(argon2_memory_kib), 8, 4194304, NULL, "19456",
     "KiB of memory per Argon2id password hash (lower only for benchmarks)"},
    {"argon2-passes", OPT_U32, F(argon2_passes), 1, 16, NULL, "2", "passes of Argon2id per password hash"},
    {"rate-limit", OPT_U32, F(rate_limit), 0, 10000000, NULL, "10",
     "message posts (and edits, deletes, reactions) per user per second (0 = no limit)"},
    {"rate-burst", OPT_U32, F(rate_burst), 0, 10000000, NULL, "30", "posts a user may burst above the rate"},
    {"rate-limit-writes", OPT_U32, F(rate_limit_writes), 0, 10000000, NULL, "120",
     "WebSocket tickets, chats made and member changes per user per minute, in a burst too (0 = no limit)"},
    {"rate-limit-reads", OPT_U32, F(rate_limit_reads), 0, 10000000, NULL, "50",
     "reads (history, events, chat lists, a chat, a user, /me) per user per second, with a burst of four seconds' worth (0 = no limit)"},
    {"ws-queue", OPT_U32, F(ws_queue), 1, 1000000, NULL, "1024", "messages queued per WebSocket before it is closed as too slow"},
    {"ws-per-user", OPT_U32, F(ws_per_user), 0, 1000000, NULL, "32",
     "WebSockets one user may have open on this node, every tab and device (0 = no limit)"},
    {"ws-pending", OPT_U32, F(ws_pending), 1, 100000, NULL, "64",
     "sends a WebSocket may have awaiting their answer before it is closed (1008)"},
    {"ws-ping-interval", OPT_U32, F(ws_ping_interval_s), 1, 86400, NULL, "30",
     "seconds a WebSocket may be silent before natter pings it"},
    {"ws-ping-timeout", OPT_U32, F(ws_ping_timeout_s), 1, 86400, NULL, "10",
     "seconds a pinged WebSocket has to answer before it is closed (1001)"},
    {"ws-session-check", OPT_U32, F(ws_session_check_s), 0, 86400, NULL, "60",
     "seconds between two checks of the open WebSockets' sessions in the store: a logout whose record was lost closes them (0 = off)"},
    {"max-connections", OPT_U32, F(max_connections), 0, 10000000, NULL, "0",
     "HTTP connections and WebSockets together (0: what the file limit allows, less a reserve)"},
    {"fanout-queue", OPT_U32, F(fanout_queue), 1, 100000000, NULL, "100000",
     "pushed messages waiting per event loop before it closes (1013) the sockets it cannot serve"},
    {"members-ttl", OPT_U32, F(members_ttl_ms), 0, 3600000, NULL, "5000", "ms a chat's cached member list is trusted"},
    {"max-members", OPT_U32, F(max_members), 2, 1000000, NULL, "1000",
     "members a chat may have (every post is pushed to each, every presence change reaches them)"},
    {"session-cache-ttl", OPT_U32, F(session_cache_ttl_ms), 0, 3600000, NULL, "10000",
     "ms a looked-up session is trusted without the store (a logout elsewhere takes this long)"},
    {"max-body", OPT_U32, F(max_body), 256, 1048576, NULL, "65536",
     "largest request body in bytes (a 4,000-character message escaped as \\uXXXX pairs is ~48 KiB)"},
    {"max-header", OPT_U32, F(max_header), 1024, 400000, NULL, "16384",
     "largest request line and headers in bytes (past it: 431)"},
    {"request-timeout", OPT_U32, F(request_timeout_ms), 100, 3600000, NULL, "10000",
     "ms a request's line, headers and body may take to arrive (and a keep-alive connection may idle)"},
    {"write-timeout", OPT_U32, F(write_timeout_ms), 0, 3600000, NULL, "30000",
     "ms what natter sent may go unacknowledged (a client that stops reading) before the connection is closed; 0: the kernel's"},
    {"log-queue", OPT_U32, F(log_queue), 1, 10000000, NULL, "100000", "messages the local log holds before posts get 503"},
    {"kafka-brokers", OPT_STR, F(kafka_brokers), 0, 0, NULL, "127.0.0.1:9092", "Kafka/Redpanda bootstrap HOST:PORT[,...]"},
    {"kafka-topic", OPT_STR, F(kafka_topic), 0, 0, NULL, "chat-messages", "topic of the message log (created when missing)"},
    {"kafka-group", OPT_STR, F(kafka_group), 0, 0, NULL, "natter-store", "consumer group of the store consumers, shared by every node"},
    {"kafka-partitions", OPT_U32, F(kafka_partitions), 1, 1024, NULL, "6", "partitions when natter creates the topic"},
    {"kafka-replication", OPT_U32, F(kafka_replication), 1, 16, NULL, "1", "replication factor when natter creates the topic"},
    {"kafka-timeout", OPT_U32, F(kafka_timeout_ms), 100, 300000, NULL, "5000", "ms a post waits for the broker before 503"},
    {"kafka-linger", OPT_U32, F(kafka_linger_ms), 0, 1000, NULL, "1",
     "ms a post waits for others to share its produce request (librdkafka's linger.ms): longer is fewer, "
     "larger requests for the broker, for up to this much more per 202"},
    {"kafka-batch", OPT_U32, F(kafka_batch), 1, 1000000, NULL, "10000",
     "posts waiting for one partition that send its produce request before --kafka-linger is up, and the most "
     "one request carries (librdkafka's batch.num.messages)"},
    {"kafka-hold", OPT_U32, F(kafka_hold_ms), 0, 1000, NULL, "5",
     "ms natter holds a partition's posts before it hands them to the producer together, unless "
     "--kafka-hold-batch wait sooner (0: each at once): fewer produce requests where posts are few, "
     "without --kafka-batch's cap on one request"},
    {"kafka-hold-batch", OPT_U32, F(kafka_hold_batch), 1, 1000000, NULL, "32",
     "posts waiting for one partition that end --kafka-hold at once"},
    {"kafka-fanout-wait", OPT_U32, F(kafka_fanout_wait_ms), 0, NATTER_KAFKA_FANOUT_WAIT_MAX_MS, NULL, "20",
     "ms the broker may gather records (up to 8 KiB) for a node's pushes: fewer, larger fetches for up to this "
     "much push latency (0: each record at once)"},
    {"cql-hosts", OPT_STR, F(cql_hosts), 0, 0, NULL, "127.0.0.1:9042", "Cassandra/Scylla contact points HOST:PORT[,...]"},
    {"cql-keyspace", OPT_STR, F(cql_keyspace), 0, 0, NULL, "natter", "keyspace (created with the tables when missing)"},
    {"cql-replication", OPT_STR, F(cql_replication), 0, 0, NULL, "{'class':'SimpleStrategy','replication_factor':1}",
     "replication of the keyspace when natter creates it"},
    {"cql-consistency", OPT_CHOICE, F(cql_consistency), 0, 0, "one|quorum|local_quorum|all|local_one",
     "local_quorum", "consistency of reads and writes"},
    {"cql-user", OPT_STR, F(cql_user), 0, 0, NULL, "-", "PasswordAuthenticator user ('-': none)"},
    {"cql-password", OPT_STR, F(cql_password), 0, 0, NULL, "-", "PasswordAuthenticator password"},
    {"cql-concurrency", OPT_U32, F(cql_concurrency), 1, 1024, NULL, "16", "partition batches in flight per store batch"},
    {"cql-timeout", OPT_U32, F(cql_timeout_ms), 100, 120000, NULL, "5000", "ms a CQL request may take"},
    {"cql-bucket", OPT_U32, F(cql_bucket_s), 1, 31536000, NULL, "86400",
     "seconds of one chat per message partition (fixed when the keyspace is created)"},
    {"sqlite-sync", OPT_CHOICE, F(sqlite_sync), 0, 0, "full|normal", "full", "SQLite synchronous mode: full fsyncs every commit"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static void env_name(const opt_t *o, char *dst, size_t len)
{
    size_t i = (size_t)snprintf(dst, len, "NATTER_");
    for (const char *p = o->flag; *p && i + 1 < len; p++)
        dst[i++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    dst[i] = '\0';
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p += len + (bar != NULL);
    }
    return 0;
}

/* who: where the value came from ("--flag" or the environment variable), for the error. */
static int set_option(natter_config_t *cfg, const opt_t *o, const char *who, const char *v, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_CHOICE:
        if (!choice_ok(o->choices, v)) {
            snprintf(err, errlen, "%s: '%s' is not one of %s", who, v, o->choices);
            return NATTER_EINVAL;
        }
        /* fall through */
    case OPT_STR:
        if (strlen(v) >= o->size || v[0] == '\0') {
            snprintf(err, errlen, "%s: value empty or too long", who);
            return NATTER_EINVAL;
        }
        strcpy(field, v);
        return NATTER_OK;
    case OPT_U32: {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end != '\0' || n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: '%s' is not a number in %u..%u", who, v, o->min, o->max);
            return NATTER_EINVAL;
        }
        *(uint32_t *)field = (uint32_t)n;
        return NATTER_OK;
    }
    case OPT_LISTEN: { /* HOST:PORT, an IPv6 host in brackets ([::1]:8080) */
        const char *colon = strrchr(v, ':'), *host = v;
        char *end;
        unsigned long port = colon && isdigit((unsigned char)colon[1]) ? strtoul(colon + 1, &end, 10) : 0;
        size_t hlen = colon ? (size_t)(colon - v) : 0;
        if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') {
            host++;
            hlen -= 2;
        }
        if (port == 0 || hlen == 0 || hlen >= sizeof(cfg->listen_host) || *end != '\0' || port > 65535) {
            snprintf(err, errlen, "%s: '%s' is not HOST:PORT", who, v);
            return NATTER_EINVAL;
        }
        memcpy(cfg->listen_host, host, hlen);
        cfg->listen_host[hlen] = '\0';
        cfg->listen_port = (uint16_t)port;
        return NATTER_OK;
    }
    }
    return NATTER_EINVAL;
}

static void print_help(void)
{
    char env[64];
    int width = (int)strlen("help"); /* the longest flag's: the texts start in one column */
    for (size_t i = 0; i < NOPTIONS; i++)
        if ((int)strlen(options[i].flag) > width)
            width = (int)strlen(options[i].flag);
    printf("usage: natter [options]\n\nA chat backend: HTTP and WebSocket in, a durable log, a batched store.\n\n"
           "options (each also read from the environment variable shown):\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        env_name(&options[i], env, sizeof(env));
        printf("  --%-*s %s\n  %-*s env %s, default %s\n", width, options[i].flag, options[i].help, width + 2, "", env,
               options[i].def);
    }
    printf("  --%-*s %s\n", width, "help", "print this help and exit");
}

/* 1 when argv sets the option (--flag VALUE or --flag=VALUE). */
static int on_command_line(const opt_t *o, int argc, char **argv)
{
    size_t n = strlen(o->flag);
    for (int a = 1; a < argc; a++)
        if (strncmp(argv[a], "--", 2) == 0 && strncmp(argv[a] + 2, o->flag, n) == 0 &&
            (argv[a][2 + n] == '\0' || argv[a][2 + n] == '='))
            return 1;
    return 0;
}

int natter_config_load(natter_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    char env[64], flag[64];
    memset(cfg, 0, sizeof(*cfg));
    for (int a = 1; a < argc; a++) /* first: a bad setting must not keep the help from showing */
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            print_help();
            return 1;
        }
    for (size_t i = 0; i < NOPTIONS; i++) {
        snprintf(flag, sizeof(flag), "--%s", options[i].flag);
        if (set_option(cfg, &options[i], flag, options[i].def, err, errlen) != NATTER_OK)
            return NATTER_EINVAL;
    }
    for (size_t i = 0; i < NOPTIONS; i++) { /* the command line wins: a variable it overrides is not read */
        env_name(&options[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v != NULL && !on_command_line(&options[i], argc, argv) &&
            set_option(cfg, &options[i], env, v, err, errlen) != NATTER_OK)
            return NATTER_EINVAL;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
            return NATTER_EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = NULL;
        for (size_t i = 0; i < NOPTIONS; i++)
            if (strlen(options[i].flag) == nlen && strncmp(options[i].flag, name, nlen) == 0)
                o = &options[i];
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            return NATTER_EINVAL;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (v == NULL) {
            snprintf(err, errlen, "option '--%s' needs a value", o->flag);
            return NATTER_EINVAL;
        }
        snprintf(flag, sizeof(flag), "--%s", o->flag);
        if (set_option(cfg, o, flag, v, err, errlen) != NATTER_OK)
            return NATTER_EINVAL;
    }
    if ((strcmp(cfg->tls_cert, "-") != 0) != (strcmp(cfg->tls_key, "-") != 0)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return NATTER_EINVAL;
    }
    if (cfg->kafka_hold_ms + cfg->kafka_linger_ms >= cfg->kafka_timeout_ms) { /* a post would time out waiting for its request */
        snprintf(err, errlen, "--kafka-hold and --kafka-linger (%u + %u ms) must be shorter than --kafka-timeout (%u ms)",
                 cfg->kafka_hold_ms, cfg->kafka_linger_ms, cfg->kafka_timeout_ms);
        return NATTER_EINVAL;
    }
    if (cfg->threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = cpus < 1 ? 1 : cpus > 256 ? 256 : (uint32_t)cpus;
    }
    return NATTER_OK;
}

void natter_config_describe(const natter_config_t *c, char *dst, size_t len)
{
    snprintf(dst, len,
             "listen=%s:%u tls=%s data-dir=%s log=%s store=%s node-id=%u node-lease-ttl=%ums batch-size=%u batch-time=%ums threads=%u workers=%u "
             "worker-queue=%u auth-workers=%u auth-queue=%u auth-rate-ip=%u auth-rate-user=%u "
             "session-ttl=%us session-cache-ttl=%ums argon2-memory=%uKiB argon2-passes=%u rate-limit=%u rate-burst=%u rate-limit-writes=%u rate-limit-reads=%u ws-queue=%u ws-per-user=%u ws-pending=%u ws-ping-interval=%us ws-ping-timeout=%us ws-session-check=%us max-connections=%u fanout-queue=%u members-ttl=%ums max-members=%u max-body=%u max-header=%u request-timeout=%ums write-timeout=%ums log-queue=%u "
             "sqlite-sync=%s kafka-brokers=%s kafka-topic=%s kafka-group=%s kafka-partitions=%u "
             "kafka-replication=%u kafka-timeout=%ums kafka-linger=%ums kafka-batch=%u kafka-hold=%ums kafka-hold-batch=%u kafka-fanout-wait=%ums cql-hosts=%s cql-keyspace=%s cql-consistency=%s "
             "cql-concurrency=%u cql-timeout=%ums cql-bucket=%us",
             c->listen_host, c->listen_port, strcmp(c->tls_cert, "-") != 0 ? "on" : "off", c->data_dir, c->log_backend, c->store_backend, c->node_id, c->node_lease_ttl_ms, c->batch_size,
             c->batch_time_ms, c->threads, c->workers, c->worker_queue, c->auth_workers, c->auth_queue, c->auth_rate_ip,
             c->auth_rate_user, c->session_ttl_s, c->session_cache_ttl_ms, c->argon2_memory_kib, c->argon2_passes, c->rate_limit, c->rate_burst, c->rate_limit_writes, c->rate_limit_reads, c->ws_queue, c->ws_per_user, c->ws_pending, c->ws_ping_interval_s, c->ws_ping_timeout_s, c->ws_session_check_s, c->max_connections, c->fanout_queue,
             c->members_ttl_ms, c->max_members, c->max_body, c->max_header, c->request_timeout_ms, c->write_timeout_ms, c->log_queue, c->sqlite_sync, c->kafka_brokers, c->kafka_topic,
             c->kafka_group, c->kafka_partitions, c->kafka_replication, c->kafka_timeout_ms, c->kafka_linger_ms, c->kafka_batch, c->kafka_hold_ms, c->kafka_hold_batch, c->kafka_fanout_wait_ms, c->cql_hosts,
             c->cql_keyspace, c->cql_consistency, c->cql_concurrency, c->cql_timeout_ms, c->cql_bucket_s);
}
