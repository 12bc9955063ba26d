/*
 * natter's configuration: one table of options, each with a command-line
 * flag and an environment twin (NATTER_ + the flag in upper snake case).
 * Precedence: default < environment < command line.
 */
#ifndef NATTER_CONFIG_H
#define NATTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* The longest --kafka-fanout-wait: a read waits for this node's fan-out
 * (read-your-writes) at most OWN_WRITES_WAIT_MS in api.c, which must leave
 * room for a whole wait and the fetch after it. */
#define NATTER_KAFKA_FANOUT_WAIT_MAX_MS 250

typedef struct natter_config {
    char listen_host[64];
    uint16_t listen_port;
    char tls_cert[512];     /* PEM certificate chain: serve HTTPS and WSS; "-" for plain HTTP */
    char tls_key[512];      /* its PEM private key */
    char data_dir[512];
    char log_backend[16];   /* "local" | "kafka" */
    char store_backend[16]; /* "sqlite" | "cql" */
    uint32_t node_id;
    uint32_t node_lease_ttl_ms; /* how long a node's lease on its id lives unrenewed */
    uint32_t batch_size;    /* messages per store batch, at most */
    uint32_t batch_time_ms; /* local: least time between two batches' starts; kafka: how long a batch may wait to fill */
    uint32_t threads;       /* event loops; 0 on the command line means one per online CPU */
    uint32_t workers;       /* API worker threads */
    uint32_t worker_queue;  /* jobs waiting for a worker before requests get 503 */
    uint32_t auth_workers;  /* password-hashing threads (logins, registrations), apart from the workers */
    uint32_t auth_queue;    /* logins and registrations waiting for one before they get 503 */
    uint32_t auth_rate_ip;  /* logins and registrations per client address per minute; 0 = off */
    uint32_t auth_rate_user; /* failed logins and registrations per username and client address per minute; 0 = off */
    uint32_t session_ttl_s;
    uint32_t argon2_memory_kib; /* Argon2id cost of new password hashes */
    uint32_t argon2_passes;
    uint32_t rate_limit;    /* message posts per user per second; 0 = off */
    uint32_t rate_burst;
    uint32_t rate_limit_writes; /* tickets, chats made, member changes per user per minute; 0 = off */
    uint32_t rate_limit_reads;  /* the API's reads per user per second, burst 4x; 0 = off */
    uint32_t ws_queue;      /* messages queued per WebSocket before it is closed as a slow reader */
    uint32_t ws_per_user;   /* WebSockets one user may have open on a node; 0 = no limit */
    uint32_t ws_pending;    /* sends a WebSocket may have awaiting their answer before it is closed */
    uint32_t ws_ping_interval_s; /* a WebSocket silent this long is pinged */
    uint32_t ws_ping_timeout_s;  /* and closed (1001) if it does not answer within this */
    uint32_t ws_session_check_s; /* the open WebSockets' sessions are looked up in the store this often; 0 = never */
    uint32_t max_connections;    /* HTTP connections and WebSockets together; 0: what the fd limit allows */
    uint32_t fanout_queue;  /* pushed messages waiting per event loop before it sheds sockets */
    uint32_t members_ttl_ms;
    uint32_t max_members;   /* members a chat may have */
    uint32_t session_cache_ttl_ms;
    uint32_t max_body;      /* request body bytes */
    uint32_t max_header;    /* request line and header bytes */
    uint32_t request_timeout_ms; /* a request's line, headers and body must arrive within this */
    uint32_t write_timeout_ms;   /* TCP_USER_TIMEOUT of every connection: sent data unacknowledged this long closes it */
    uint32_t log_queue;     /* messages the local log holds before ingest answers 503 */
    char sqlite_sync[8];    /* "full" | "normal" */
    char kafka_brokers[512];
    char kafka_topic[128];
    char kafka_group[128];  /* the store consumer group, shared by every node */
    uint32_t kafka_partitions;
    uint32_t kafka_replication;
    uint32_t kafka_timeout_ms; /* a post not acknowledged by the broker in this time gets 503 */
    uint32_t kafka_fanout_wait_ms; /* the broker gathers a node's pushes this long (or 8 KiB); 0: none */
    uint32_t kafka_linger_ms;      /* a post waits this long for others to share its produce request */
    uint32_t kafka_batch;          /* ... or until this many posts wait for one partition's request */
    uint32_t kafka_hold_ms;        /* natter holds a partition's posts this long before the producer (0: off) */
    uint32_t kafka_hold_batch;     /* ... or until this many wait */
    char cql_hosts[512];
    char cql_keyspace[49];
    char cql_replication[256];
    char cql_consistency[16];
    char cql_user[128];
    char cql_password[128];
    uint32_t cql_concurrency;  /* partition batches of one store batch in flight at once */
    uint32_t cql_timeout_ms;
    uint32_t cql_bucket_s;     /* a message partition spans this many seconds of one chat */
} natter_config_t;

/* Fills cfg with defaults, then the environment, then argv.
 * Returns 0, 1 when --help was printed (caller exits 0), or NATTER_EINVAL
 * with a message in err. */
int natter_config_load(natter_config_t *cfg, int argc, char **argv, char *err, size_t errlen);
/* One line describing the effective configuration, for the start-up log. */
void natter_config_describe(const natter_config_t *cfg, char *dst, size_t len);

#endif
