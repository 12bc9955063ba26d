/* load_tls — TLS on natter-load's non-blocking sockets (OpenSSL), so that
 * an https:// target is reached over HTTPS and its WebSockets over WSS.
 *
 * One load_tls_t per process: the SSL_CTX (TLS 1.2 and later, ALPN
 * http/1.1, the server's certificate verified unless insecure) and one
 * peer per target: the name its certificate must carry (SNI too, when it
 * is a host name rather than an IP address) and the last session the
 * server gave, so that a new connection resumes it instead of paying a
 * full handshake where the server allows. A listener process makes its
 * own after the fork (load_tls_fork), starting from the sessions its
 * parent saved as bytes just before (load_tls_save_sessions): no OpenSSL
 * object crosses a fork.
 *
 * A connection (load_tls_conn_t) whose peer is NULL is plain: every call
 * passes straight to the socket, so load_http and load_ws have one path.
 * With edge-triggered epoll, a TLS connection may have bytes waiting where
 * epoll cannot see them (records OpenSSL has already read — SSL_pending —,
 * or bytes the handshake's last read left in the socket), and a read may
 * need the socket writable or a write readable: so on any of its events
 * the owner tries both directions (load_tls_events), a fill reads until
 * OpenSSL itself wants the socket, and a finished handshake is followed
 * by a fill and a flush at once.
 *
 * Errors are negative values: -errno, or one of the TLS values below;
 * load_strerror() says what any of them means.
 */
#ifndef NATTER_LOAD_TLS_H
#define NATTER_LOAD_TLS_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "load_io.h"

enum {
    /* -(LOAD_ETLS_VERIFY + v): the server's certificate failed verification
     * with OpenSSL's X509_V_ERR_* v (untrusted, expired, wrong name …) */
    LOAD_ETLS_VERIFY = 1 << 20,
    /* -(LOAD_ETLS + r): the handshake or a record failed otherwise, with
     * the SSL library's reason code r (0 when OpenSSL gave none) */
    LOAD_ETLS = 1 << 24,
};

typedef struct load_tls_opts {
    const char *ca_file; /* PEM certificates to trust; NULL: the system's */
    int insecure;        /* no certificate verification (benchmarks only) */
    int no_resume;       /* every connection a full handshake */
} load_tls_opts_t;

typedef struct load_tls load_tls_t;
typedef struct load_tls_peer load_tls_peer_t;

/* Where a connection goes (all borrowed). */
typedef struct load_dest {
    const struct sockaddr_in *addr;
    const char *host;     /* the Host header */
    load_tls_peer_t *tls; /* NULL: plain */
} load_dest_t;

/* A context with a peer per name (names[i] NULL: target i is plain). The
 * options and names are copied. NULL with a reason in err when the CA
 * file cannot be read or OpenSSL fails. */
load_tls_t *load_tls_new(const load_tls_opts_t *o, const char *const *names, size_t n, char *err, size_t errlen);
/* Target i's peer, or NULL when it is plain (or t is NULL). */
load_tls_peer_t *load_tls_peer(load_tls_t *t, size_t i);
/* Frees the context and its sessions; every connection on it must have
 * been closed. NULL is fine. */
void load_tls_free(load_tls_t *t);

/* Parent, just before fork(): keeps each peer's session as DER bytes. */
void load_tls_save_sessions(load_tls_t *t);
/* Child, just after fork(): a context of its own with the parent's
 * options and peers, starting from the saved sessions. It reads the
 * parent's object as plain memory (options, names, bytes) and calls
 * nothing on it. NULL with a reason in err. */
load_tls_t *load_tls_fork(const load_tls_t *parent, char *err, size_t errlen);

/* The TLS side of one connection. */
typedef struct load_tls_conn {
    SSL *ssl;              /* from the handshake's start to load_tls_close; NULL when plain */
    load_tls_peer_t *peer; /* NULL: plain */
    uint8_t ready;         /* bytes may flow (plain: once connected) */
    uint8_t resumed;       /* the handshake resumed a session */
} load_tls_conn_t;

void load_tls_conn_init(load_tls_conn_t *c, load_tls_peer_t *peer);
/* On each event of a connecting socket fd until it returns 1: the TCP
 * connect's outcome (once the socket is writable or failed), then, with a
 * peer, the TLS handshake, started and advanced. 1 when bytes may flow, 0
 * while it waits for the socket, or a negative error. */
int load_tls_connect(load_tls_conn_t *c, int fd, uint32_t events);
/* The events a handler should act on: for TLS every readiness means
 * "try reading and writing". */
uint32_t load_tls_events(const load_tls_conn_t *c, uint32_t events);
/* Writes b's pending bytes until done or the socket is full. 0 or a
 * negative error. b may grow and move between calls. */
int load_tls_flush(load_tls_conn_t *c, int fd, load_buf_t *b);
/* Reads into b until nothing more is available. Bytes read (> 0), 0 when
 * none were, or a negative error: -ECONNRESET when the stream ended. With
 * TLS an error may follow bytes already appended to b: callers look at
 * b's pending bytes as well as at the result. */
long load_tls_fill(load_tls_conn_t *c, int fd, load_buf_t *b);
/* Frees the connection's TLS state (before its fd is closed); the peer
 * stays, so the connection may connect again. */
void load_tls_close(load_tls_conn_t *c);

/* What an error value means, written into buf (cap bytes); returns buf.
 * A value >= 0 (a WebSocket close code, an HTTP status) is written as
 * its number. */
const char *load_strerror(int err, char *buf, size_t cap);
/* Whether err says the server's certificate failed verification. */
int load_tls_is_verify_error(int err);
/* What to do about a verification error (a sentence), or NULL. */
const char *load_tls_hint(int err);

#endif
