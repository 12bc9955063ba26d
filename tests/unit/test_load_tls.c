/* Unit tests for load/load_tls.c: natter-load's TLS client, driven against
 * an OpenSSL server on the other end of a non-blocking socket pair, with a
 * certificate made here (no network, no files but the CA the client is
 * told to trust). What they hold the client to: the non-blocking
 * handshake, reads that leave nothing inside OpenSSL, writes that resume
 * from a moved buffer, verification (trust, IP and host name), session
 * resumption that survives how connections end, and the error values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load_tls.h"

enum { TRIES = 200 }; /* steps of a handshake, bounded: nothing here waits on a clock */

/* --- a certificate and a server -------------------------------------------- */

typedef struct cert {
    EVP_PKEY *key;
    X509 *x509;
    char path[64]; /* the certificate as PEM, for --ca */
} cert_t;

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
}

/* A self-signed P-256 certificate for 127.0.0.1, as the black-box tests make with openssl req. */
static void make_cert(cert_t *c)
{
    c->key = EVP_EC_gen("P-256");
    c->x509 = X509_new();
    assert_non_null(c->key);
    X509_set_version(c->x509, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->x509), 1);
    X509_gmtime_adj(X509_getm_notBefore(c->x509), -60);
    X509_gmtime_adj(X509_getm_notAfter(c->x509), 3600);
    X509_set_pubkey(c->x509, c->key);
    X509_NAME *name = X509_get_subject_name(c->x509);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(c->x509, name);
    add_ext(c->x509, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c->x509, NID_subject_alt_name, "IP:127.0.0.1");
    assert_true(X509_sign(c->x509, c->key, EVP_sha256()) > 0);
    strcpy(c->path, "/tmp/test_load_tls_XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_true(PEM_write_X509(f, c->x509) == 1);
    fclose(f);
}

static void free_cert(cert_t *c)
{
    unlink(c->path);
    X509_free(c->x509);
    EVP_PKEY_free(c->key);
}

typedef struct fixture {
    cert_t cert, other; /* the server's, and one it does not use */
    SSL_CTX *server_ctx;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    make_cert(&f->cert);
    make_cert(&f->other);
    f->server_ctx = SSL_CTX_new(TLS_server_method());
    assert_true(SSL_CTX_use_certificate(f->server_ctx, f->cert.x509) == 1);
    assert_true(SSL_CTX_use_PrivateKey(f->server_ctx, f->cert.key) == 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    SSL_CTX_free(f->server_ctx);
    free_cert(&f->cert);
    free_cert(&f->other);
    free(f);
    return 0;
}

/* One client connection and the server's end of it. */
typedef struct pair {
    int cfd, sfd;
    SSL *srv;
    load_tls_conn_t c;
} pair_t;

static void pair_open(pair_t *p, fixture_t *f, load_tls_peer_t *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    p->cfd = sv[0];
    p->sfd = sv[1];
    p->srv = SSL_new(f->server_ctx);
    SSL_set_fd(p->srv, p->sfd);
    SSL_set_accept_state(p->srv);
    load_tls_conn_init(&p->c, peer);
}

static void pair_close(pair_t *p)
{
    load_tls_close(&p->c);
    SSL_free(p->srv);
    close(p->cfd);
    close(p->sfd);
}

/* Steps both ends until the client's handshake ends; the client's result. */
static int handshake(pair_t *p)
{
    int rc = 0, server_done = 0;
    for (int i = 0; i < TRIES && rc == 0; i++) {
        rc = load_tls_connect(&p->c, p->cfd, EPOLLOUT); /* a socket pair is connected from the start */
        if (!server_done) {
            int r = SSL_accept(p->srv);
            server_done = r == 1 || (SSL_get_error(p->srv, r) != SSL_ERROR_WANT_READ &&
                                     SSL_get_error(p->srv, r) != SSL_ERROR_WANT_WRITE);
        }
    }
    ERR_clear_error();
    return rc;
}

/* The server says something; the client reads it all in one fill (and
 * with it the session tickets that follow a TLS 1.3 handshake). */
static void exchange(pair_t *p)
{
    assert_int_equal(SSL_write(p->srv, "hello", 5), 5);
    load_buf_t b = {0};
    assert_int_equal(load_tls_fill(&p->c, p->cfd, &b), 5);
    assert_memory_equal(b.p + b.off, "hello", 5);
    load_buf_free(&b);
}

static load_tls_t *new_tls(const char *ca, int insecure, int no_resume, const char *name)
{
    const load_tls_opts_t o = {.ca_file = ca, .insecure = insecure, .no_resume = no_resume};
    const char *names[2] = {NULL, name}; /* target 0 plain, target 1 the server */
    char err[256];
    load_tls_t *t = load_tls_new(&o, names, 2, err, sizeof(err));
    assert_non_null(t);
    assert_null(load_tls_peer(t, 0));
    assert_non_null(load_tls_peer(t, 1));
    return t;
}

/* A connection to the server, its certificate trusted, handshake done. */
static load_tls_t *connected(fixture_t *f, pair_t *p)
{
    load_tls_t *t = new_tls(f->cert.path, 0, 0, "127.0.0.1");
    pair_open(p, f, load_tls_peer(t, 1));
    assert_int_equal(handshake(p), 1);
    return t;
}

static void disconnect(pair_t *p, load_tls_t *t)
{
    pair_close(p);
    load_tls_free(t);
}

/* --- the tests ------------------------------------------------------------- */

static void test_handshake_then_both_ways(void **state)
{
    pair_t p;
    load_tls_t *t = connected(*state, &p);
    assert_true(p.c.ready && !p.c.resumed);
    assert_int_equal(load_tls_events(&p.c, EPOLLIN), EPOLLIN | EPOLLOUT); /* try both on any event */
    exchange(&p);
    load_buf_t out = {0};
    load_buf_append(&out, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(load_tls_flush(&p.c, p.cfd, &out), 0);
    assert_int_equal(load_buf_pending(&out), 0);
    char got[64];
    assert_int_equal(SSL_read(p.srv, got, sizeof(got)), 18);
    assert_memory_equal(got, "GET / HTTP/1.1\r\n\r\n", 18);
    load_buf_free(&out);
    disconnect(&p, t);
}

/* Records the server sent together reach the caller in one fill: OpenSSL
 * reads ahead, so after the first record the rest wait inside it, where
 * epoll would never report them. */
static void test_fill_leaves_nothing_inside_openssl(void **state)
{
    pair_t p;
    load_tls_t *t = connected(*state, &p);
    static char big[40000];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 5; i++)
        assert_int_equal(SSL_write(p.srv, "record", 6), 6);
    assert_int_equal(SSL_write(p.srv, big, (int)sizeof(big)), (int)sizeof(big)); /* three records more */
    load_buf_t b = {0}; /* every byte is in the socket now: one fill, as after one edge, takes them all */
    assert_int_equal(load_tls_fill(&p.c, p.cfd, &b), 5 * 6 + (long)sizeof(big));
    assert_int_equal(SSL_pending(p.c.ssl), 0);
    assert_false(SSL_has_pending(p.c.ssl));
    assert_memory_equal(b.p + b.off, "recordrecord", 12);
    load_buf_free(&b);
    disconnect(&p, t);
}

/* A write larger than the socket takes waits (WANT_WRITE), and resumes
 * from the same bytes after the buffer grew and moved. */
static void test_flush_resumes_from_a_moved_buffer(void **state)
{
    pair_t p;
    load_tls_t *t = connected(*state, &p);
    int small = 4096;
    setsockopt(p.cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    load_buf_t out = {0};
    size_t total = 0;
    for (; total < 200000; total++)
        load_buf_append(&out, (const char[]){(char)('a' + total % 26)}, 1);
    assert_int_equal(load_tls_flush(&p.c, p.cfd, &out), 0);
    assert_true(load_buf_pending(&out) > 0); /* the socket is full */
    for (; total < 400000; total++) /* grows past its capacity: realloc may move it */
        load_buf_append(&out, (const char[]){(char)('a' + total % 26)}, 1);
    static char got[400000];
    size_t have = 0;
    for (int i = 0; i < 100000 && have < total; i++) {
        assert_int_equal(load_tls_flush(&p.c, p.cfd, &out), 0);
        int n = SSL_read(p.srv, got + have, (int)(sizeof(got) - have));
        if (n > 0)
            have += (size_t)n;
        ERR_clear_error();
    }
    assert_int_equal(have, total);
    assert_int_equal(load_buf_pending(&out), 0);
    for (size_t i = 0; i < total; i++)
        if (got[i] != (char)('a' + i % 26))
            fail_msg("byte %zu differs", i);
    load_buf_free(&out);
    disconnect(&p, t);
}

/* One connection to peer: the handshake, the server's greeting read (and
 * with it any session tickets) when asked, the end without a
 * close_notify. Whether it resumed a session. */
static int connect_once(fixture_t *f, load_tls_peer_t *peer, int read_tickets)
{
    pair_t p;
    pair_open(&p, f, peer);
    assert_int_equal(handshake(&p), 1);
    if (read_tickets)
        exchange(&p);
    int resumed = p.c.resumed;
    pair_close(&p);
    return resumed;
}

/* The second connection resumes the first's session, although the first
 * ended without a close_notify (as natter-load's connections end, and
 * OpenSSL then marks the connection's session not resumable); so does a
 * third, although the second ended before a new ticket came (still on
 * the session it resumed). */
static void test_sessions_resume(void **state)
{
    fixture_t *f = *state;
    load_tls_t *t = new_tls(f->cert.path, 0, 0, "127.0.0.1");
    assert_false(connect_once(f, load_tls_peer(t, 1), 1));
    assert_true(connect_once(f, load_tls_peer(t, 1), 0));
    assert_true(connect_once(f, load_tls_peer(t, 1), 0));
    load_tls_free(t);
}

static void test_no_resume_means_full_handshakes(void **state)
{
    fixture_t *f = *state;
    load_tls_t *t = new_tls(f->cert.path, 0, 1, "127.0.0.1");
    assert_false(connect_once(f, load_tls_peer(t, 1), 1));
    assert_false(connect_once(f, load_tls_peer(t, 1), 1));
    load_tls_free(t);
}

/* What a listener process gets: the parent's sessions as bytes, in a
 * context of its own. */
static void test_forked_context_resumes_saved_sessions(void **state)
{
    fixture_t *f = *state;
    load_tls_t *parent = new_tls(f->cert.path, 0, 0, "127.0.0.1");
    assert_false(connect_once(f, load_tls_peer(parent, 1), 1));
    load_tls_save_sessions(parent);
    char err[256];
    load_tls_t *child = load_tls_fork(parent, err, sizeof(err));
    assert_non_null(child);
    assert_null(load_tls_peer(child, 0));
    assert_true(connect_once(f, load_tls_peer(child, 1), 0));
    load_tls_free(child);
    load_tls_free(parent);
}

static int verify_code(int rc)
{
    return load_tls_is_verify_error(rc) ? -rc - LOAD_ETLS_VERIFY : -1;
}

static void test_verification(void **state)
{
    fixture_t *f = *state;
    struct {
        const char *ca, *name;
        int insecure, want; /* 1: connects, else the X509_V_ERR_* code */
    } cases[] = {
        {f->other.path, "127.0.0.1", 0, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT}, /* not the CA it trusts */
        {NULL, "127.0.0.1", 0, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},          /* the system's CAs */
        {f->cert.path, "127.0.0.2", 0, X509_V_ERR_IP_ADDRESS_MISMATCH},
        {f->cert.path, "localhost", 0, X509_V_ERR_HOSTNAME_MISMATCH},
        {f->other.path, "localhost", 1, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        load_tls_t *t = new_tls(cases[i].ca, cases[i].insecure, 0, cases[i].name);
        pair_t p;
        pair_open(&p, f, load_tls_peer(t, 1));
        int rc = handshake(&p);
        if (cases[i].want == 1)
            assert_int_equal(rc, 1);
        else
            assert_int_equal(verify_code(rc), cases[i].want);
        pair_close(&p);
        load_tls_free(t);
    }
}

static void test_end_of_stream(void **state)
{
    fixture_t *f = *state;
    load_tls_t *t = new_tls(f->cert.path, 0, 0, "127.0.0.1");
    for (int clean = 0; clean < 2; clean++) {
        pair_t p;
        pair_open(&p, f, load_tls_peer(t, 1));
        assert_int_equal(handshake(&p), 1);
        exchange(&p);
        assert_int_equal(SSL_write(p.srv, "bye", 3), 3);
        if (clean)
            SSL_shutdown(p.srv); /* a close_notify */
        shutdown(p.sfd, SHUT_WR);
        load_buf_t b = {0};
        assert_int_equal(load_tls_fill(&p.c, p.cfd, &b), -ECONNRESET);
        assert_int_equal(load_buf_pending(&b), 3); /* what came before the end is kept */
        load_buf_free(&b);
        pair_close(&p);
    }
    load_tls_free(t);
}

static void test_plain_passes_through(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    load_tls_conn_t c;
    load_tls_conn_init(&c, NULL);
    assert_int_equal(load_tls_connect(&c, sv[0], EPOLLOUT), 1);
    assert_null(c.ssl);
    assert_int_equal(load_tls_events(&c, EPOLLIN), EPOLLIN);
    load_buf_t b = {0};
    load_buf_append(&b, "abc", 3);
    assert_int_equal(load_tls_flush(&c, sv[0], &b), 0);
    assert_int_equal(load_tls_fill(&c, sv[1], &b), 3);
    assert_memory_equal(b.p + b.off, "abc", 3);
    load_buf_free(&b);
    load_tls_close(&c);
    close(sv[0]);
    close(sv[1]);
}

static void test_bad_ca_file(void **state)
{
    (void)state;
    const load_tls_opts_t o = {.ca_file = "/nonexistent/ca.pem"};
    const char *names[1] = {"127.0.0.1"};
    char err[256] = "";
    assert_null(load_tls_new(&o, names, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

static void test_strerror(void **state)
{
    (void)state;
    char buf[160];
    assert_string_equal(load_strerror(-ECONNREFUSED, buf, sizeof(buf)), "Connection refused");
    assert_string_equal(load_strerror(-(LOAD_ETLS_VERIFY + X509_V_ERR_HOSTNAME_MISMATCH), buf, sizeof(buf)),
                        "TLS: certificate verify failed: hostname mismatch");
    assert_string_equal(load_strerror(-(LOAD_ETLS + SSL_R_WRONG_VERSION_NUMBER), buf, sizeof(buf)),
                        "TLS: wrong version number");
    assert_string_equal(load_strerror(-LOAD_ETLS, buf, sizeof(buf)), "TLS: the handshake or a record failed");
    assert_string_equal(load_strerror(1008, buf, sizeof(buf)), "1008");
    assert_true(load_tls_is_verify_error(-(LOAD_ETLS_VERIFY + X509_V_ERR_CERT_HAS_EXPIRED)));
    assert_false(load_tls_is_verify_error(-(LOAD_ETLS + 1)));
    assert_false(load_tls_is_verify_error(-ECONNRESET));
    assert_false(load_tls_is_verify_error(401));
    assert_non_null(strstr(load_tls_hint(-(LOAD_ETLS_VERIFY + X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)), "--ca FILE"));
    assert_null(strstr(load_tls_hint(-(LOAD_ETLS_VERIFY + X509_V_ERR_IP_ADDRESS_MISMATCH)), "--ca"));
    assert_null(load_tls_hint(-(LOAD_ETLS + SSL_R_WRONG_VERSION_NUMBER)));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_then_both_ways),
        cmocka_unit_test(test_fill_leaves_nothing_inside_openssl),
        cmocka_unit_test(test_flush_resumes_from_a_moved_buffer),
        cmocka_unit_test(test_sessions_resume),
        cmocka_unit_test(test_no_resume_means_full_handshakes),
        cmocka_unit_test(test_forked_context_resumes_saved_sessions),
        cmocka_unit_test(test_verification),
        cmocka_unit_test(test_end_of_stream),
        cmocka_unit_test(test_plain_passes_through),
        cmocka_unit_test(test_bad_ca_file),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
