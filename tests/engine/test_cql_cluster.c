/*
 * The CQL client on a real three-node Cassandra ring, given one contact
 * point (NATTER_TEST_CQL=HOST:PORT of node 1; scripts/test-engines starts
 * the ring with `scripts/engine start cassandra --nodes 3` and names it in
 * NATTER_TEST_CQL_ENGINE, which this test kills and restarts a node of).
 *
 * What it shows: the ring is discovered from one node; every statement goes
 * to the node owning its token, told by the client's per-host counters and
 * checked against the tokens the nodes report themselves; DDL returns once
 * every node has the schema; with the owner killed, a statement goes to the
 * next replica clockwise, and an RF 1 keyspace proves the client's owner is
 * Cassandra's (its keys fail, the others' succeed); the dead node is marked
 * down and back up once restarted, and the ring tells the client's events
 * connection of it; a statement the nodes no longer know is
 * prepared again. Run under TSan by scripts/test-engines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/util.h"
#include "store/cql/cql_client.h"

#define NODES 3
#define KEYS 60

static cql_client_t *client;
static char err[512];
static char port[8];
static const char *engine_name;

typedef struct node {
    char address[64]; /* "127.0.0.I:PORT", as the client names its hosts */
    int64_t token;
} node_t;
static node_t ring[NODES]; /* by token */

static void must(int rc)
{
    if (rc != NATTER_OK)
        fail_msg("rc %d: %s", rc, err);
}

static void exec_schema(const char *q)
{
    cql_result_t res;
    must(cql_client_query(client, q, NULL, &res, err, sizeof(err)));
    cql_result_free(&res);
}

static int64_t token_of(int64_t k)
{
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)((uint64_t)k >> (56 - 8 * i));
    return cql_murmur3_token(be, 8);
}

/* The ring as the nodes tell it themselves (each its own system.local row,
 * asked until every node answered), not as the client computed it. */
static void read_ring_from_nodes(void)
{
    int found = 0;
    for (int tries = 0; tries < 60 && found < NODES; tries++) {
        cql_result_t res;
        must(cql_client_query(client, "SELECT broadcast_address, tokens FROM system.local", NULL, &res, err,
                              sizeof(err)));
        cql_slice_t addr, tokens, tok;
        cql_reader_t r;
        int32_t n;
        assert_int_equal(cql_rows_cell(&res.resp.rows, 0, 0, &addr), NATTER_OK);
        assert_int_equal(cql_rows_cell(&res.resp.rows, 0, 1, &tokens), NATTER_OK);
        assert_int_equal(addr.len, 4);
        assert_int_equal(cql_decode_collection(tokens, &r, &n), NATTER_OK);
        assert_int_equal(n, 1); /* num_tokens: 1 */
        tok = cql_read_bytes(&r);
        char name[64], text[32];
        snprintf(name, sizeof(name), "%u.%u.%u.%u:%s", addr.p[0], addr.p[1], addr.p[2], addr.p[3], port);
        snprintf(text, sizeof(text), "%.*s", (int)tok.len, (const char *)tok.p);
        cql_result_free(&res);
        int seen = 0;
        for (int i = 0; i < found; i++)
            seen |= strcmp(ring[i].address, name) == 0;
        if (!seen) {
            snprintf(ring[found].address, sizeof(ring[found].address), "%s", name);
            ring[found++].token = strtoll(text, NULL, 10);
        }
    }
    assert_int_equal(found, NODES);
    for (int i = 0; i < NODES; i++) /* sort by token */
        for (int j = i + 1; j < NODES; j++)
            if (ring[j].token < ring[i].token) {
                node_t t = ring[i];
                ring[i] = ring[j];
                ring[j] = t;
            }
}

/* Index in ring[] of the node owning a token: the first token at or after it. */
static int owner_of(int64_t token)
{
    for (int i = 0; i < NODES; i++)
        if (ring[i].token >= token)
            return i;
    return 0;
}

static cql_host_stats_t stats_of(const char *address)
{
    cql_host_stats_t hosts[16];
    size_t n = cql_client_hosts(client, hosts, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(hosts[i].address, address) == 0)
            return hosts[i];
    fail_msg("the client has no host %s", address);
    return hosts[0];
}

static int insert(cql_stmt_t *st, int64_t k, cql_consistency_t cl, int idempotent)
{
    cql_value_t v[2] = {cql_value_bigint(k), cql_value_text("x")};
    cql_query_params_t qp = {.consistency = cl, .values = v, .nvalues = 2};
    return cql_call_wait(cql_client_execute(client, st, &qp, token_of(k), idempotent), NULL, err, sizeof(err));
}

static void engine(const char *action, int node)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s cassandra --name %s --node %d >/dev/null",
             getenv("NATTER_ENGINE_SCRIPT") ? getenv("NATTER_ENGINE_SCRIPT") : "scripts/engine", action, engine_name,
             node);
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

/* Polls for a host's state; what it takes is bounded by gossip and the
 * client's back-off, not by this machine's speed, so the bound is generous. */
static void wait_host_up(const char *address, int up, int seconds)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)seconds * 1000000000u;
    while (stats_of(address).up != up && natter_mono_ns() < deadline)
        usleep(100000);
    assert_int_equal(stats_of(address).up, up);
}

static int setup(void **state)
{
    (void)state;
    const char *hosts = getenv("NATTER_TEST_CQL");
    engine_name = getenv("NATTER_TEST_CQL_ENGINE");
    if (hosts == NULL || engine_name == NULL || strchr(hosts, ',') != NULL) {
        fprintf(stderr, "NATTER_TEST_CQL (one contact point) and NATTER_TEST_CQL_ENGINE (the ring's name) are "
                        "needed\n");
        return -1;
    }
    snprintf(port, sizeof(port), "%s", strrchr(hosts, ':') ? strrchr(hosts, ':') + 1 : "9042");
    cql_client_config_t cfg = {.hosts = hosts, .conns_per_host = 2, .timeout_ms = 10000, .schema_wait_ms = 30000,
                               .user = getenv("NATTER_TEST_CQL_USER"), .password = getenv("NATTER_TEST_CQL_PASSWORD")};
    /* The client reads the ring from node 1's system.peers when it opens, and
     * a node the engine script has just reported up (its own CQL port
     * answers) may not be there yet on a loaded machine (it was not, once:
     * two hosts of three). So the client is opened again until node 1 knows
     * the whole ring, for at most two minutes; a client that never finds the
     * third node still fails test_ring_from_one_contact_point. */
    uint64_t deadline = natter_mono_ns() + 120ull * 1000000000u;
    for (;;) {
        if (cql_client_open(&client, &cfg, err, sizeof(err)) != NATTER_OK) {
            fprintf(stderr, "cannot open: %s\n", err);
            return -1;
        }
        cql_host_stats_t seen[16];
        if (cql_client_hosts(client, seen, 16) >= NODES || natter_mono_ns() >= deadline)
            return 0;
        cql_client_close(client);
        sleep(1);
    }
}

static int teardown(void **state)
{
    (void)state;
    cql_client_close(client);
    return 0;
}

static void test_ring_from_one_contact_point(void **state)
{
    (void)state;
    cql_host_stats_t hosts[16];
    assert_int_equal(cql_client_hosts(client, hosts, 16), NODES);
    for (int i = 0; i < NODES; i++)
        assert_int_equal(hosts[i].up, 1);
    read_ring_from_nodes();
    for (int i = 0; i < NODES; i++)
        assert_int_equal(stats_of(ring[i].address).up, 1);
}

/* Tables made one after another and used at once on every node: each node
 * knows each table as soon as its CREATE returned (the statement prepared
 * right after is known everywhere: no re-prepare, no error). */
static void test_schema_agreement_after_ddl(void **state)
{
    (void)state;
    exec_schema("DROP KEYSPACE IF EXISTS clustertest");
    exec_schema("CREATE KEYSPACE clustertest WITH replication = {'class':'SimpleStrategy','replication_factor':3}");
    exec_schema("DROP KEYSPACE IF EXISTS clustertest1");
    exec_schema("CREATE KEYSPACE clustertest1 WITH replication = {'class':'SimpleStrategy','replication_factor':1}");
    for (int t = 0; t < 4; t++) {
        char q[256];
        cql_stmt_t *st;
        snprintf(q, sizeof(q), "CREATE TABLE clustertest.t%d (k bigint PRIMARY KEY, v text)", t);
        exec_schema(q);
        snprintf(q, sizeof(q), "INSERT INTO clustertest.t%d (k, v) VALUES (?, ?)", t);
        must(cql_client_prepare(client, q, &st, err, sizeof(err)));
        uint64_t reprepares = 0;
        for (int i = 0; i < NODES; i++)
            reprepares += stats_of(ring[i].address).reprepares;
        for (int64_t k = 0; k < 12; k++) /* keys of every node */
            must(insert(st, k, CQL_ALL, 0));
        for (int i = 0; i < NODES; i++)
            reprepares -= stats_of(ring[i].address).reprepares;
        assert_int_equal(reprepares, 0);
    }
    exec_schema("CREATE TABLE clustertest.kv (k bigint PRIMARY KEY, v text)");
    exec_schema("CREATE TABLE clustertest1.kv (k bigint PRIMARY KEY, v text)");
}

/* Every statement is sent to the node that owns its token, and only there. */
static void test_statements_go_to_the_owner(void **state)
{
    (void)state;
    cql_stmt_t *st;
    must(cql_client_prepare(client, "INSERT INTO clustertest.kv (k, v) VALUES (?, ?)", &st, err, sizeof(err)));
    int per_node[NODES] = {0};
    for (int64_t k = 0; k < KEYS; k++) {
        uint64_t before[NODES];
        int own = owner_of(token_of(k));
        for (int i = 0; i < NODES; i++)
            before[i] = stats_of(ring[i].address).requests;
        must(insert(st, k, CQL_QUORUM, 1));
        for (int i = 0; i < NODES; i++)
            assert_int_equal(stats_of(ring[i].address).requests - before[i], i == own ? 1 : 0);
        per_node[own]++;
    }
    for (int i = 0; i < NODES; i++)
        assert_true(per_node[i] > 0); /* the keys covered every node */
}

/* Node 2 killed: marked down; its keys go to the next replica clockwise
 * (RF 3 at QUORUM: no error); with RF 1, exactly the keys the client says
 * node 2 owns fail; restarted, it is marked up and served again, a
 * statement it no longer knows is prepared again there, and a STATUS_CHANGE
 * (its DOWN or its UP) came on the client's events connection. */
static void test_owner_down_then_back(void **state)
{
    (void)state;
    int victim = -1;
    for (int i = 0; i < NODES; i++)
        if (strncmp(ring[i].address, "127.0.0.2:", 10) == 0)
            victim = i;
    assert_true(victim >= 0);
    int next = (victim + 1) % NODES;
    cql_stmt_t *rf3, *rf1;
    must(cql_client_prepare(client, "INSERT INTO clustertest.kv (k, v) VALUES (?, ?)", &rf3, err, sizeof(err)));
    must(cql_client_prepare(client, "INSERT INTO clustertest1.kv (k, v) VALUES (?, ?)", &rf1, err, sizeof(err)));

    cql_client_stats_t cs;
    cql_client_stats(client, &cs);
    uint64_t events = cs.events;
    engine("kill", 2);
    wait_host_up(ring[victim].address, 0, 30);
    uint64_t victim_requests = stats_of(ring[victim].address).requests;
    for (int64_t k = 0; k < KEYS; k++) {
        int own = owner_of(token_of(k));
        uint64_t before = stats_of(ring[next].address).requests;
        must(insert(rf3, k, CQL_QUORUM, 1));
        if (own == victim) /* the replica after the owner, clockwise */
            assert_int_equal(stats_of(ring[next].address).requests - before, 1);
        int rc = insert(rf1, k, CQL_ONE, 0);
        if (own == victim)
            assert_int_not_equal(rc, NATTER_OK); /* its only replica is down */
        else
            must(rc);
    }
    assert_int_equal(stats_of(ring[victim].address).requests, victim_requests);

    engine("start", 2);
    wait_host_up(ring[victim].address, 1, 60);
    uint64_t deadline = natter_mono_ns() + 60ull * 1000000000u; /* gossip's pace, not the machine's */
    for (cql_client_stats(client, &cs); cs.events == events && natter_mono_ns() < deadline;
         cql_client_stats(client, &cs))
        usleep(100000);
    assert_true(cs.events > events);
    uint64_t before = stats_of(ring[victim].address).requests, reprepares = stats_of(ring[victim].address).reprepares;
    int owned = 0;
    for (int64_t k = 0; k < KEYS; k++)
        if (owner_of(token_of(k)) == victim) {
            must(insert(rf3, k, CQL_QUORUM, 1));
            owned++;
        }
    assert_true(owned > 0);
    assert_true(stats_of(ring[victim].address).requests >= before + (uint64_t)owned);
    /* Cassandra 5 reloads prepared statements from system.prepared_statements
     * at start-up, so a restarted node usually knows them: told, not checked */
    fprintf(stderr, "(restarted node: %llu re-prepares)\n",
            (unsigned long long)(stats_of(ring[victim].address).reprepares - reprepares));
}

/* A schema change makes every node drop the statements of the table: the
 * next use of the statement meets UNPREPARED and is prepared again, on
 * whichever node answers it. */
static void test_reprepare_after_nodes_forget(void **state)
{
    (void)state;
    cql_stmt_t *st;
    must(cql_client_prepare(client, "INSERT INTO clustertest.kv (k, v) VALUES (?, ?)", &st, err, sizeof(err)));
    uint64_t before = 0, after = 0;
    for (int i = 0; i < NODES; i++)
        before += stats_of(ring[i].address).reprepares;
    exec_schema("ALTER TABLE clustertest.kv ADD extra text");
    for (int64_t k = 0; k < KEYS; k++)
        must(insert(st, k, CQL_QUORUM, 1));
    for (int i = 0; i < NODES; i++)
        after += stats_of(ring[i].address).reprepares;
    assert_true(after > before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_from_one_contact_point),
        cmocka_unit_test(test_schema_agreement_after_ddl),
        cmocka_unit_test(test_statements_go_to_the_owner),
        cmocka_unit_test(test_owner_down_then_back),
        cmocka_unit_test(test_reprepare_after_nodes_forget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
