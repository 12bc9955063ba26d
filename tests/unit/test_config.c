/* Unit tests for src/core/config.c: defaults < environment < argv, value checking, messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"

extern char **environ;

/* Every test starts from an environment without NATTER_* variables. */
static int clear_env(void **state)
{
    (void)state;
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e != NULL; e++)
            if (strncmp(*e, "NATTER_", 7) == 0) {
                size_t n = strcspn(*e, "=");
                if (n >= sizeof(name))
                    n = sizeof(name) - 1;
                memcpy(name, *e, n);
                name[n] = '\0';
                break;
            }
        if (name[0] == '\0')
            return 0;
        unsetenv(name);
    }
}

/* Loads with argv given as a NULL-terminated list after the program name. */
static int load(natter_config_t *cfg, char *err, size_t errlen, ...)
{
    char *argv[32] = {"natter"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    err[0] = '\0';
    return natter_config_load(cfg, argc, argv, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    natter_config_t c;
    char err[256];
    assert_int_equal(load(&c, err, sizeof(err), NULL), NATTER_OK);
    assert_string_equal(err, "");
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.log_backend, "local");
    assert_string_equal(c.store_backend, "sqlite");
    assert_int_equal(c.node_id, 0);
    assert_int_equal(c.batch_size, 1000);
    assert_int_equal(c.batch_time_ms, 1);
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.session_ttl_s, 604800);
    assert_int_equal(c.rate_limit, 10);
    assert_int_equal(c.rate_burst, 30);
    assert_int_equal(c.ws_queue, 1024);
    assert_int_equal(c.members_ttl_ms, 5000);
    assert_int_equal(c.max_body, 65536);
    assert_int_equal(c.log_queue, 100000);
    assert_string_equal(c.sqlite_sync, "full");

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c.threads, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus); /* 0: one loop per online CPU */
    assert_int_equal(c.worker_queue, 10000);
    assert_int_equal(c.ws_pending, 64);
    assert_int_equal(c.fanout_queue, 100000);
    assert_int_equal(c.kafka_fanout_wait_ms, 20);
    assert_int_equal(c.kafka_linger_ms, 1);
    assert_int_equal(c.kafka_batch, 10000);
    assert_int_equal(c.kafka_hold_ms, 5);
    assert_int_equal(c.kafka_hold_batch, 32);

    char line[2048], want[2048];
    natter_config_describe(&c, line, sizeof(line));
    snprintf(want, sizeof(want),
             "listen=127.0.0.1:8080 tls=off data-dir=./data log=local store=sqlite node-id=0 node-lease-ttl=10000ms batch-size=1000 "
             "batch-time=1ms threads=%u workers=4 worker-queue=10000 auth-workers=1 auth-queue=256 auth-rate-ip=60 "
             "auth-rate-user=10 session-ttl=604800s session-cache-ttl=10000ms "
             "argon2-memory=19456KiB argon2-passes=2 rate-limit=10 rate-burst=30 rate-limit-writes=120 rate-limit-reads=50 ws-queue=1024 ws-per-user=32 ws-pending=64 "
             "ws-ping-interval=30s ws-ping-timeout=10s ws-session-check=60s max-connections=0 fanout-queue=100000 members-ttl=5000ms max-members=1000 max-body=65536 max-header=16384 request-timeout=10000ms write-timeout=30000ms log-queue=100000 "
             "sqlite-sync=full kafka-brokers=127.0.0.1:9092 kafka-topic=chat-messages "
             "kafka-group=natter-store kafka-partitions=6 kafka-replication=1 kafka-timeout=5000ms "
             "kafka-linger=1ms kafka-batch=10000 kafka-hold=5ms kafka-hold-batch=32 kafka-fanout-wait=20ms cql-hosts=127.0.0.1:9042 cql-keyspace=natter cql-consistency=local_quorum "
             "cql-concurrency=16 cql-timeout=5000ms cql-bucket=86400s",
             c.threads);
    assert_string_equal(line, want);
}

static void test_env_overrides_default(void **state)
{
    (void)state;
    natter_config_t c;
    char err[256];
    setenv("NATTER_BATCH_SIZE", "50", 1);
    setenv("NATTER_DATA_DIR", "/tmp/x", 1);
    setenv("NATTER_LISTEN", "0.0.0.0:9000", 1);
    setenv("NATTER_SQLITE_SYNC", "normal", 1);
    setenv("NATTER_RATE_LIMIT", "0", 1);
    setenv("NATTER_KAFKA_FANOUT_WAIT", "0", 1);
    setenv("NATTER_KAFKA_LINGER", "2", 1);
    setenv("NATTER_KAFKA_BATCH", "64", 1);
    setenv("NATTER_KAFKA_HOLD", "7", 1);
    setenv("NATTER_KAFKA_HOLD_BATCH", "16", 1);
    assert_int_equal(load(&c, err, sizeof(err), NULL), NATTER_OK);
    assert_int_equal(c.kafka_batch, 64);
    assert_int_equal(c.kafka_hold_ms, 7);
    assert_int_equal(c.kafka_hold_batch, 16);
    assert_int_equal(c.kafka_fanout_wait_ms, 0);
    assert_int_equal(c.kafka_linger_ms, 2);
    assert_int_equal(c.batch_size, 50);
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.sqlite_sync, "normal");
    assert_int_equal(c.rate_limit, 0);
    assert_int_equal(c.workers, 4); /* untouched options keep their default */
}

static void test_argv_overrides_env(void **state)
{
    (void)state;
    natter_config_t c;
    char err[256];
    setenv("NATTER_BATCH_SIZE", "50", 1);
    setenv("NATTER_WORKERS", "8", 1);
    assert_int_equal(load(&c, err, sizeof(err), "--batch-size", "70", NULL), NATTER_OK);
    assert_int_equal(c.batch_size, 70);
    assert_int_equal(c.workers, 8);
    assert_int_equal(load(&c, err, sizeof(err), "--batch-size=71", NULL), NATTER_OK);
    assert_int_equal(c.batch_size, 71);
    /* the last occurrence on the command line wins */
    assert_int_equal(load(&c, err, sizeof(err), "--batch-size=1", "--batch-size", "2", NULL), NATTER_OK);
    assert_int_equal(c.batch_size, 2);
    /* a variable the command line overrides is not read: a bad one does not stop the start */
    setenv("NATTER_BATCH_SIZE", "abc", 1);
    assert_int_equal(load(&c, err, sizeof(err), "--batch-size", "5", NULL), NATTER_OK);
    assert_int_equal(c.batch_size, 5);
    assert_int_equal(load(&c, err, sizeof(err), "--batch-size=6", NULL), NATTER_OK);
    assert_int_equal(c.batch_size, 6);
    assert_int_equal(load(&c, err, sizeof(err), "--batch-time", "5", NULL), NATTER_EINVAL); /* not this one */
    assert_non_null(strstr(err, "NATTER_BATCH_SIZE"));
}

static void test_flag_forms(void **state)
{
    (void)state;
    natter_config_t c;
    char err[256];
    assert_int_equal(load(&c, err, sizeof(err), "--listen=[::1]:8081", "--data-dir", "/var/lib/natter",
                          "--node-id=1023", "--batch-time", "0", "--members-ttl=0", "--rate-burst=0",
                          "--log-queue=1", "--max-body=1048576", "--session-ttl=60", "--ws-queue", "1",
                          "--log=local", "--store", "sqlite", NULL),
                     NATTER_OK);
    assert_string_equal(c.listen_host, "::1"); /* what getaddrinfo takes */
    assert_int_equal(c.listen_port, 8081);
    assert_string_equal(c.data_dir, "/var/lib/natter");
    assert_int_equal(c.node_id, 1023);
    assert_int_equal(c.batch_time_ms, 0);
    assert_int_equal(c.members_ttl_ms, 0);
    assert_int_equal(c.rate_burst, 0);
    assert_int_equal(c.log_queue, 1);
    assert_int_equal(c.max_body, 1048576);
    assert_int_equal(c.session_ttl_s, 60);
    assert_int_equal(c.ws_queue, 1);
    /* '=' inside a value is part of the value */
    assert_int_equal(load(&c, err, sizeof(err), "--data-dir=/a=b", NULL), NATTER_OK);
    assert_string_equal(c.data_dir, "/a=b");
}

static void expect_error(const char *want, ...)
{
    char *argv[8] = {"natter"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    natter_config_t c;
    char err[256] = "";
    assert_int_equal(natter_config_load(&c, argc, argv, err, sizeof(err)), NATTER_EINVAL);
    assert_string_equal(err, want);
}

static void test_bad_values_rejected(void **state)
{
    (void)state;
    expect_error("--batch-size: '0' is not a number in 1..100000", "--batch-size=0", NULL);
    expect_error("--batch-size: '100001' is not a number in 1..100000", "--batch-size=100001", NULL);
    expect_error("--batch-size: 'abc' is not a number in 1..100000", "--batch-size", "abc", NULL);
    expect_error("--batch-size: '' is not a number in 1..100000", "--batch-size=", NULL);
    expect_error("--batch-size: '-1' is not a number in 1..100000", "--batch-size=-1", NULL);
    expect_error("--batch-size: '12x' is not a number in 1..100000", "--batch-size=12x", NULL);
    expect_error("--batch-size: '99999999999999999999999' is not a number in 1..100000",
                 "--batch-size=99999999999999999999999", NULL);
    expect_error("--node-id: '1024' is not a number in 0..1023", "--node-id=1024", NULL);
    expect_error("--workers: '0' is not a number in 1..256", "--workers=0", NULL);
    expect_error("--session-ttl: '59' is not a number in 60..31536000", "--session-ttl=59", NULL);
    expect_error("--max-body: '255' is not a number in 256..1048576", "--max-body=255", NULL);
    expect_error("--kafka-fanout-wait: '251' is not a number in 0..250", "--kafka-fanout-wait=251", NULL);
    expect_error("--kafka-linger: '1001' is not a number in 0..1000", "--kafka-linger=1001", NULL);
    expect_error("--kafka-batch: '0' is not a number in 1..1000000", "--kafka-batch=0", NULL);
    expect_error("--kafka-hold and --kafka-linger (0 + 500 ms) must be shorter than --kafka-timeout (500 ms)",
                 "--kafka-hold=0", "--kafka-linger=500", "--kafka-timeout=500", NULL);
    expect_error("--kafka-hold: '1001' is not a number in 0..1000", "--kafka-hold=1001", NULL);
    expect_error("--kafka-hold-batch: '0' is not a number in 1..1000000", "--kafka-hold-batch=0", NULL);
    expect_error("--kafka-hold and --kafka-linger (300 + 200 ms) must be shorter than --kafka-timeout (500 ms)",
                 "--kafka-hold=300", "--kafka-linger=200", "--kafka-timeout=500", NULL);
    expect_error("--listen: 'localhost' is not HOST:PORT", "--listen=localhost", NULL);
    expect_error("--listen: ':8080' is not HOST:PORT", "--listen=:8080", NULL);
    expect_error("--listen: 'h:0' is not HOST:PORT", "--listen=h:0", NULL);
    expect_error("--listen: 'h:65536' is not HOST:PORT", "--listen=h:65536", NULL);
    expect_error("--listen: 'h:80x' is not HOST:PORT", "--listen=h:80x", NULL);
    expect_error("--listen: 'h:' is not HOST:PORT", "--listen=h:", NULL);
    expect_error("--listen: '[]:80' is not HOST:PORT", "--listen=[]:80", NULL);
    expect_error("--log: 'redis' is not one of local|kafka", "--log=redis", NULL);
    expect_error("--store: 'mysql' is not one of sqlite|cql", "--store", "mysql", NULL);
    expect_error("--sqlite-sync: 'off' is not one of full|normal", "--sqlite-sync=off", NULL);
    expect_error("--sqlite-sync: 'ful' is not one of full|normal", "--sqlite-sync=ful", NULL);
    expect_error("--sqlite-sync: 'fullx' is not one of full|normal", "--sqlite-sync=fullx", NULL);
    expect_error("--data-dir: value empty or too long", "--data-dir=", NULL);
    char longdir[600 + 12];
    memset(longdir, 'd', sizeof(longdir) - 1);
    memcpy(longdir, "--data-dir=", 11);
    longdir[sizeof(longdir) - 1] = '\0';
    expect_error("--data-dir: value empty or too long", longdir, NULL);
    char longhost[80];
    snprintf(longhost, sizeof(longhost), "--listen=%064d:80", 0); /* a 64-char host does not fit */
    char want[160];
    snprintf(want, sizeof(want), "--listen: '%s' is not HOST:PORT", longhost + 9);
    expect_error(want, longhost, NULL);
}

static void test_bad_env_rejected(void **state)
{
    (void)state;
    setenv("NATTER_BATCH_SIZE", "lots", 1);
    expect_error("NATTER_BATCH_SIZE: 'lots' is not a number in 1..100000", NULL); /* named as it was given */
    unsetenv("NATTER_BATCH_SIZE");
    setenv("NATTER_SQLITE_SYNC", "off", 1);
    expect_error("NATTER_SQLITE_SYNC: 'off' is not one of full|normal", NULL);
}

static void test_unknown_and_malformed_arguments(void **state)
{
    (void)state;
    expect_error("unknown option '--nope' (see --help)", "--nope", NULL);
    expect_error("unknown option '--nope=1' (see --help)", "--nope=1", NULL);
    expect_error("unknown option '--batch=5' (see --help)", "--batch=5", NULL);    /* no prefix matching */
    expect_error("unknown option '--batch-sizes=5' (see --help)", "--batch-sizes=5", NULL);
    expect_error("unknown option '--BATCH-SIZE=5' (see --help)", "--BATCH-SIZE=5", NULL);
    expect_error("unknown option '--=5' (see --help)", "--=5", NULL);
    expect_error("unexpected argument 'serve' (see --help)", "serve", NULL);
    expect_error("unexpected argument '-x' (see --help)", "-x", NULL);
    expect_error("option '--batch-size' needs a value", "--batch-size", NULL);
    expect_error("option '--listen' needs a value", "--workers=2", "--listen", NULL);
}

static void test_help(void **state)
{
    (void)state;
    natter_config_t c;
    char err[64];
    /* help goes to stdout; keep the test output readable */
    fflush(stdout);
    int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    int rc1 = load(&c, err, sizeof(err), "--help", NULL);
    int rc2 = load(&c, err, sizeof(err), "--workers=2", "-h", "--bogus", NULL);
    setenv("NATTER_THREADS", " 2", 1); /* a bad setting does not keep the help from showing */
    int rc3 = load(&c, err, sizeof(err), "--help", NULL);
    unsetenv("NATTER_THREADS");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(devnull);
    assert_int_equal(rc1, 1);
    assert_int_equal(rc2, 1);
    assert_int_equal(rc3, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_env_overrides_default, clear_env),
        cmocka_unit_test_setup(test_argv_overrides_env, clear_env),
        cmocka_unit_test_setup(test_flag_forms, clear_env),
        cmocka_unit_test_setup(test_bad_values_rejected, clear_env),
        cmocka_unit_test_setup(test_bad_env_rejected, clear_env),
        cmocka_unit_test_setup(test_unknown_and_malformed_arguments, clear_env),
        cmocka_unit_test_setup(test_help, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
