/* load_tls — see load_tls.h.
 *
 * Map: the context and its peers (new, fork, free); the session cache (a
 * callback keeps each peer's newest session); a connection's handshake,
 * reads and writes; what the error values mean.
 */
#include "load_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

struct load_tls_peer {
    load_tls_t *tls;
    char *name; /* NULL: a plain target */
    int is_ip;  /* name is an IP address: checked as one, and no SNI (RFC 6066 has none for addresses) */
    SSL_SESSION *session; /* the newest resumable one, or NULL; under tls->mu */
    unsigned char *der;   /* the session saved for a fork */
    size_t der_len;
};

struct load_tls {
    SSL_CTX *ctx;
    load_tls_opts_t o; /* o.ca_file is ours */
    pthread_mutex_t mu; /* the peers' sessions: the listener thread and the main thread share them */
    load_tls_peer_t *peers;
    size_t n;
};

/* --- the context ----------------------------------------------------------- */

/* Keeps a copy of each new session as its peer's newest. A copy, because
 * the session handed over is the connection's own, and OpenSSL marks a
 * connection's own session not resumable when the connection fails (a
 * fatal alert, an end without a close_notify) or is freed without one —
 * which is how natter-load's connections end. For the same reason each
 * connection resumes from a copy of its own (start()). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    load_tls_peer_t *p = SSL_get_app_data(ssl);
    SSL_SESSION *copy = p != NULL && SSL_SESSION_is_resumable(sess) ? SSL_SESSION_dup(sess) : NULL;
    if (copy == NULL)
        return 0;
    pthread_mutex_lock(&p->tls->mu);
    SSL_SESSION *old = p->session;
    p->session = copy;
    pthread_mutex_unlock(&p->tls->mu);
    SSL_SESSION_free(old);
    return 0; /* sess's reference stays with OpenSSL */
}

static void openssl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s: %s", what, r ? r : "OpenSSL failed");
    ERR_clear_error();
}

static SSL_CTX *make_ctx(const load_tls_opts_t *o, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
        openssl_reason(err, errlen, "cannot make a TLS context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* writes resume from a buffer that may have grown and moved; an idle
     * socket gives its record buffers back; reads take what the socket
     * has, not a record at a time */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                            : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            char what[300];
            snprintf(what, sizeof(what), "cannot read the CA file %s", o->ca_file ? o->ca_file : "(system)");
            openssl_reason(err, errlen, what);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    if (o->no_resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else {
        /* OpenSSL's client cache only calls back; the peers hold the sessions */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
    return ctx;
}

load_tls_t *load_tls_new(const load_tls_opts_t *o, const char *const *names, size_t n, char *err, size_t errlen)
{
    SSL_CTX *ctx = make_ctx(o, err, errlen);
    if (ctx == NULL)
        return NULL;
    load_tls_t *t = load_xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    t->o = *o;
    t->o.ca_file = o->ca_file ? load_xstrdup(o->ca_file) : NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->peers = load_xcalloc(n, sizeof(load_tls_peer_t));
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        load_tls_peer_t *p = &t->peers[i];
        struct in_addr a;
        p->tls = t;
        if (names[i] != NULL) {
            p->name = load_xstrdup(names[i]);
            p->is_ip = inet_pton(AF_INET, names[i], &a) == 1;
        }
    }
    return t;
}

load_tls_peer_t *load_tls_peer(load_tls_t *t, size_t i)
{
    return t != NULL && i < t->n && t->peers[i].name != NULL ? &t->peers[i] : NULL;
}

void load_tls_free(load_tls_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        SSL_SESSION_free(t->peers[i].session);
        free(t->peers[i].name);
        free(t->peers[i].der);
    }
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    free((char *)t->o.ca_file);
    free(t->peers);
    free(t);
}

void load_tls_save_sessions(load_tls_t *t)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        load_tls_peer_t *p = &t->peers[i];
        free(p->der);
        p->der = NULL;
        p->der_len = 0;
        int len = p->session ? i2d_SSL_SESSION(p->session, NULL) : 0;
        if (len <= 0)
            continue;
        unsigned char *der = load_xmalloc((size_t)len), *end = der;
        if (i2d_SSL_SESSION(p->session, &end) == len) {
            p->der = der;
            p->der_len = (size_t)len;
        } else {
            free(der);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

load_tls_t *load_tls_fork(const load_tls_t *parent, char *err, size_t errlen)
{
    const char **names = load_xcalloc(parent->n, sizeof(char *));
    for (size_t i = 0; i < parent->n; i++)
        names[i] = parent->peers[i].name;
    load_tls_t *t = load_tls_new(&parent->o, names, parent->n, err, errlen);
    free(names);
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        const unsigned char *der = parent->peers[i].der;
        if (der != NULL)
            t->peers[i].session = d2i_SSL_SESSION(NULL, &der, (long)parent->peers[i].der_len);
    }
    ERR_clear_error();
    return t;
}

/* --- a connection ---------------------------------------------------------- */

void load_tls_conn_init(load_tls_conn_t *c, load_tls_peer_t *peer)
{
    memset(c, 0, sizeof(*c));
    c->peer = peer;
}

/* The error value of a failed SSL call (e from SSL_get_error, sys the
 * errno right after the call); empties OpenSSL's error queue. */
static int failure(const load_tls_conn_t *c, int e, int sys)
{
    int rc;
    if (e == SSL_ERROR_ZERO_RETURN) {
        rc = -ECONNRESET; /* the server's close_notify */
    } else if (e == SSL_ERROR_SYSCALL) {
        rc = ERR_peek_error() == 0 && sys != 0 ? -sys : -ECONNRESET;
    } else {
        long v = c->peer->tls->o.insecure ? X509_V_OK : SSL_get_verify_result(c->ssl);
        int reason = 0;
        for (unsigned long q; (q = ERR_get_error()) != 0;)
            if (reason == 0 && ERR_GET_LIB(q) == ERR_LIB_SSL)
                reason = ERR_GET_REASON(q);
        if (v != X509_V_OK && v > 0 && v < LOAD_ETLS - LOAD_ETLS_VERIFY)
            rc = -(LOAD_ETLS_VERIFY + (int)v);
        else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            rc = -ECONNRESET; /* closed without a close_notify: an end like any other here */
        else
            rc = -(LOAD_ETLS + (reason < LOAD_ETLS ? reason : 0));
    }
    ERR_clear_error();
    return rc;
}

/* Makes the SSL of a connection whose TCP connect succeeded. */
static int start(load_tls_conn_t *c, int fd)
{
    load_tls_peer_t *p = c->peer;
    load_tls_t *t = p->tls;
    SSL *ssl = SSL_new(t->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_app_data(ssl, p);
    SSL_set_connect_state(ssl);
    if (!p->is_ip)
        SSL_set_tlsext_host_name(ssl, p->name);
    if (!t->o.insecure) {
        if (p->is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), p->name);
        else
            SSL_set1_host(ssl, p->name);
    }
    if (!t->o.no_resume) {
        pthread_mutex_lock(&t->mu);
        SSL_SESSION *copy = p->session != NULL ? SSL_SESSION_dup(p->session) : NULL;
        pthread_mutex_unlock(&t->mu);
        if (copy != NULL) {
            SSL_set_session(ssl, copy);
            SSL_SESSION_free(copy); /* the SSL holds its own reference */
        }
    }
    c->ssl = ssl;
    return 0;
}

int load_tls_connect(load_tls_conn_t *c, int fd, uint32_t events)
{
    if (c->ssl == NULL) { /* TCP still connecting */
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return 0;
        int rc = load_io_connect_result(fd);
        if (rc == 0 && c->peer == NULL) {
            c->ready = 1;
            return 1;
        }
        if (rc == 0)
            rc = start(c, fd);
        if (rc < 0)
            return rc;
    }
    ERR_clear_error();
    int r = SSL_connect(c->ssl), sys = errno;
    if (r == 1) {
        c->ready = 1;
        c->resumed = (uint8_t)SSL_session_reused(c->ssl);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return failure(c, e, sys);
}

uint32_t load_tls_events(const load_tls_conn_t *c, uint32_t events)
{
    return c->ssl != NULL ? events | EPOLLIN | EPOLLOUT : events;
}

int load_tls_flush(load_tls_conn_t *c, int fd, load_buf_t *b)
{
    if (c->ssl == NULL)
        return load_buf_flush(b, fd);
    while (load_buf_pending(b) > 0) {
        size_t n = load_buf_pending(b) < INT_MAX ? load_buf_pending(b) : INT_MAX;
        ERR_clear_error();
        int w = SSL_write(c->ssl, b->p + b->off, (int)n), sys = errno;
        if (w > 0) {
            load_buf_consume(b, (size_t)w);
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 0; /* the same bytes go again, first, on the next event */
        return failure(c, e, sys);
    }
    return 0;
}

long load_tls_fill(load_tls_conn_t *c, int fd, load_buf_t *b)
{
    if (c->ssl == NULL)
        return load_buf_fill(b, fd);
    long total = 0;
    /* A short SSL_read proves nothing (one record at a time, and more may
     * wait inside OpenSSL where epoll cannot see them): only WANT_READ
     * says that neither OpenSSL nor the socket holds anything more. */
    for (;;) {
        char *dst = load_buf_reserve(b, 16384);
        size_t room = b->cap - b->len;
        ERR_clear_error();
        int n = SSL_read(c->ssl, dst, room < INT_MAX ? (int)room : INT_MAX), sys = errno;
        if (n > 0) {
            b->len += (size_t)n;
            total += n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return total;
        return failure(c, e, sys);
    }
}

void load_tls_close(load_tls_conn_t *c)
{
    SSL_free(c->ssl); /* no close_notify: the socket closes next, and sessions are kept as copies */
    c->ssl = NULL;
    c->ready = 0;
    c->resumed = 0;
}

/* --- errors ---------------------------------------------------------------- */

const char *load_strerror(int err, char *buf, size_t cap)
{
    if (err <= -LOAD_ETLS) {
        OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
        int r = -err - LOAD_ETLS;
        const char *s = r ? ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, r)) : NULL;
        snprintf(buf, cap, "TLS: %s", s ? s : "the handshake or a record failed");
    } else if (err <= -LOAD_ETLS_VERIFY) {
        snprintf(buf, cap, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(-err - LOAD_ETLS_VERIFY));
    } else if (err < 0) {
        const char *s = strerror_r(-err, buf, cap); /* the GNU one: it may return a static string */
        if (s != buf)
            snprintf(buf, cap, "%s", s);
    } else {
        snprintf(buf, cap, "%d", err); /* a close code or an HTTP status */
    }
    return buf;
}

int load_tls_is_verify_error(int err)
{
    return err <= -LOAD_ETLS_VERIFY && err > -LOAD_ETLS;
}

const char *load_tls_hint(int err)
{
    if (!load_tls_is_verify_error(err))
        return NULL;
    int v = -err - LOAD_ETLS_VERIFY;
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return "the certificate does not name the --target's host; --insecure skips the check";
    return "trust its CA with --ca FILE; --insecure skips the check";
}
