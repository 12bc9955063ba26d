/* Unit tests for load/load_io.c: the --target URL parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "load_io.h"

static void test_http_and_https(void **state)
{
    (void)state;
    load_url_t u;
    assert_int_equal(load_parse_url("http://127.0.0.1:8080", &u), 0);
    assert_int_equal(u.tls, 0);
    assert_int_equal(ntohs(u.addr.sin_port), 8080);
    assert_int_equal(ntohl(u.addr.sin_addr.s_addr), 0x7F000001u);
    assert_string_equal(u.hostport, "127.0.0.1:8080");
    assert_string_equal(u.name, "127.0.0.1");

    assert_int_equal(load_parse_url("https://10.1.2.3:8443/", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(ntohs(u.addr.sin_port), 8443);
    assert_int_equal(ntohl(u.addr.sin_addr.s_addr), 0x0A010203u);
    assert_string_equal(u.hostport, "10.1.2.3:8443");
    assert_string_equal(u.name, "10.1.2.3");
}

static void test_localhost_keeps_its_name(void **state)
{
    (void)state;
    load_url_t u;
    assert_int_equal(load_parse_url("https://localhost:443", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_int_equal(ntohl(u.addr.sin_addr.s_addr), 0x7F000001u);
    assert_string_equal(u.name, "localhost"); /* what the certificate must name, and the SNI */
    assert_string_equal(u.hostport, "localhost:443");
}

static void test_no_scheme_is_plain(void **state)
{
    (void)state;
    load_url_t u;
    assert_int_equal(load_parse_url("127.0.0.1:1", &u), 0);
    assert_int_equal(u.tls, 0);
}

static void test_rejects(void **state)
{
    (void)state;
    load_url_t u;
    static const char *const bad[] = {
        "https://127.0.0.1",        /* no port */
        "https://:8443",            /* no host */
        "https://127.0.0.1:0",      /* port 0 */
        "https://127.0.0.1:65536",  /* past 65535 */
        "https://127.0.0.1:-5",     /* a sign */
        "https://127.0.0.1:80x",    /* junk after the port */
        "https://127.0.0.1:80/ws",  /* a path */
        "https://example.com:443",  /* only IPv4 or localhost: no resolver here */
        "ftp://127.0.0.1:21",       /* another scheme: read as a host "ftp" */
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(load_parse_url(bad[i], &u), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_and_https),
        cmocka_unit_test(test_localhost_keeps_its_name),
        cmocka_unit_test(test_no_scheme_is_plain),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
