/* Unit tests for load/load_io.c: the --target URL parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "load_io.h"

static void test_parses(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int tls;
        uint32_t ip;
        uint16_t port;
        const char *hostport, *name; /* name: what the certificate must name, and the SNI when not an address */
    } good[] = {
        {"http://127.0.0.1:8080", 0, 0x7F000001u, 8080, "127.0.0.1:8080", "127.0.0.1"},
        {"https://10.1.2.3:8443/", 1, 0x0A010203u, 8443, "10.1.2.3:8443", "10.1.2.3"},
        {"https://localhost:443", 1, 0x7F000001u, 443, "localhost:443", "localhost"},
        {"127.0.0.1:1", 0, 0x7F000001u, 1, "127.0.0.1:1", "127.0.0.1"}, /* no scheme: plain */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        load_url_t u;
        assert_int_equal(load_parse_url(good[i].url, &u), 0);
        assert_int_equal(u.tls, good[i].tls);
        assert_int_equal(ntohl(u.addr.sin_addr.s_addr), good[i].ip);
        assert_int_equal(ntohs(u.addr.sin_port), good[i].port);
        assert_string_equal(u.hostport, good[i].hostport);
        assert_string_equal(u.name, good[i].name);
    }
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
        cmocka_unit_test(test_parses),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
