/* Unit tests for src/ingest/auth.c: which actions hash, the address and username limits, the dummy hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/error.h"
#include "core/password.h"
#include "ingest/auth.h"

#define T0 1800000000000LL

static natter_auth_t *make(uint32_t per_ip, uint32_t per_user)
{
    static natter_config_t cfg;
    static natter_auth_t a;
    memset(&cfg, 0, sizeof(cfg));
    cfg.argon2_memory_kib = 8;
    cfg.argon2_passes = 1;
    cfg.auth_workers = 1;
    cfg.auth_queue = 4;
    cfg.auth_rate_ip = per_ip;
    cfg.auth_rate_user = per_user;
    assert_int_equal(natter_auth_init(&a, &cfg), NATTER_OK);
    return &a;
}

static void done(natter_auth_t *a)
{
    natter_workers_stop(&a->pool);
    natter_auth_free(a);
}

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(1234)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
    inet_pton(AF_INET6, ip, &sa.sin6_addr);
    return sa;
}

#define KEY(a, sa) natter_auth_address_key((a), (const struct sockaddr *)&(sa), sizeof(sa))
#define TAKE(a, sa) natter_auth_take_address((a), KEY(a, sa), T0)

static void test_hashing_actions(void **state)
{
    (void)state;
    assert_true(natter_auth_hashes(NATTER_A_SESSION_CREATE));
    assert_true(natter_auth_hashes(NATTER_A_USER_CREATE));
    assert_false(natter_auth_hashes(NATTER_A_MESSAGE_POST));
    assert_false(natter_auth_hashes(NATTER_A_SESSION_DELETE));
    assert_false(natter_auth_hashes(NATTER_A_WS));
}

static void test_per_address(void **state)
{
    (void)state;
    natter_auth_t *a = make(3, 0);
    struct sockaddr_in one = v4("10.0.0.1"), two = v4("10.0.0.2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(TAKE(a, one), 0);
    assert_int_equal(TAKE(a, one), 20); /* 3 a minute: the next in 20 s */
    assert_int_equal(TAKE(a, two), 0);  /* another address has its own */
    /* the same address on another port, or mapped into IPv6, is the same client */
    struct sockaddr_in other_port = one;
    other_port.sin_port = htons(999);
    assert_true(TAKE(a, other_port) > 0);
    struct sockaddr_in6 mapped = v6("::ffff:10.0.0.1");
    assert_true(TAKE(a, mapped) > 0);
    done(a);
}

static void test_ipv6_counts_by_its_64(void **state)
{
    (void)state;
    natter_auth_t *a = make(2, 0);
    struct sockaddr_in6 x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff::9"), z = v6("2001:db8:1:3::1");
    assert_int_equal(TAKE(a, x), 0);
    assert_int_equal(TAKE(a, y), 0);
    assert_true(TAKE(a, x) > 0); /* the /64 is one client */
    assert_int_equal(TAKE(a, z), 0);
    done(a);
}

static void test_per_username_and_refund(void **state)
{
    (void)state;
    natter_auth_t *a = make(0, 2);
    struct sockaddr_in one = v4("10.0.0.1"), two = v4("10.0.0.2");
    uint64_t from = KEY(a, one), elsewhere = KEY(a, two);
    assert_int_equal(natter_auth_take_username(a, "alice", from, T0), 0);
    natter_auth_refund_username(a, "alice", from, T0); /* a login that succeeded does not count */
    assert_int_equal(natter_auth_take_username(a, "alice", from, T0), 0);
    assert_int_equal(natter_auth_take_username(a, "alice", from, T0), 0);
    assert_int_equal(natter_auth_take_username(a, "alice", from, T0), 30);
    assert_int_equal(natter_auth_take_username(a, "bob", from, T0), 0);
    /* one address's failures do not lock the user out from another */
    assert_int_equal(natter_auth_take_username(a, "alice", elsewhere, T0), 0);
    /* off: any number */
    for (int i = 0; i < 100; i++)
        assert_int_equal(TAKE(a, one), 0);
    done(a);
}

static void test_dummy_hash_verifies_like_a_real_one(void **state)
{
    (void)state;
    natter_auth_t *a = make(0, 0);
    assert_int_equal(strncmp(a->dummy_hash, "$argon2id$", 10), 0);
    assert_non_null(strstr(a->dummy_hash, "m=8,t=1")); /* the configured cost: the same time as a real check */
    assert_false(natter_password_verify(a->dummy_hash, "guess", 5));
    done(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashing_actions),
        cmocka_unit_test(test_per_address),
        cmocka_unit_test(test_ipv6_counts_by_its_64),
        cmocka_unit_test(test_per_username_and_refund),
        cmocka_unit_test(test_dummy_hash_verifies_like_a_real_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
