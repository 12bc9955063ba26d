/* load_io — what every natter-load socket shares: the epoll handle shape,
 * growable byte buffers, non-blocking connect, the clock.
 *
 * Out-of-memory policy for all of natter-load: the allocators here abort
 * (a load generator that cannot allocate has nothing sensible to report).
 * Sockets are registered edge-triggered for EPOLLIN|EPOLLOUT once, so a
 * writer just writes until EAGAIN and resumes on the next EPOLLOUT.
 */
#ifndef NATTER_LOAD_IO_H
#define NATTER_LOAD_IO_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

typedef struct load_io load_io_t;
/* epoll_event.data.ptr of every registered fd points at one of these. */
struct load_io {
    int fd;
    void (*on_event)(load_io_t *io, uint32_t events);
};

/* A byte buffer: bytes [off, len) are pending; p is NULL until first use. */
typedef struct load_buf {
    char *p;
    size_t off, len, cap;
} load_buf_t;

void *load_xmalloc(size_t n);
void *load_xcalloc(size_t n, size_t size);
void *load_xrealloc(void *p, size_t n);
char *load_xstrdup(const char *s);

/* Makes room for n more bytes at p + len and returns that address. */
char *load_buf_reserve(load_buf_t *b, size_t n);
void load_buf_append(load_buf_t *b, const void *data, size_t n);
/* Drops n pending bytes from the front (compacting when empty). */
void load_buf_consume(load_buf_t *b, size_t n);
void load_buf_free(load_buf_t *b);
static inline size_t load_buf_pending(const load_buf_t *b) { return b->len - b->off; }

/* Writes pending bytes until done or EAGAIN. Returns 0, or -errno. */
int load_buf_flush(load_buf_t *b, int fd);
/* Reads (a socket or a pipe) until EAGAIN into b. Returns bytes read (> 0), 0 when nothing was
 * available, -ECONNRESET on EOF, or another -errno. */
long load_buf_fill(load_buf_t *b, int fd);

/* A non-blocking TCP socket connecting to addr with TCP_NODELAY, registered
 * on epfd edge-triggered with io as its data. With src (else NULL) it is
 * bound to that source address first, its port left to connect() (so one
 * source address has a port range per destination, not one in all).
 * Returns the fd or -errno. */
int load_io_connect(int epfd, const struct sockaddr_in *addr, const struct sockaddr_in *src, load_io_t *io);
/* 0 when a connecting socket has connected, else -errno (SO_ERROR). */
int load_io_connect_result(int fd);

/* CLOCK_MONOTONIC in ns: the one clock for scheduling and latency. */
uint64_t load_now_ns(void);

/* A --target URL, parsed. */
typedef struct load_url {
    struct sockaddr_in addr;
    char hostport[300]; /* "HOST:PORT", the Host header */
    char name[256];     /* HOST: what the server's certificate must name */
    int tls;            /* https:// */
} load_url_t;

/* Parses "http://HOST:PORT[/]" or "https://HOST:PORT[/]" (HOST an IPv4
 * address or "localhost"; no scheme is http). 0 or -1. */
int load_parse_url(const char *url, load_url_t *u);

/* Finds "key":"<digits>" in a JSON text and parses the digits; 0 or -1.
 * key must include its quotes and colon, e.g. "\"id\":\"". A fast scan
 * used on hot paths where natter's own compact output is read. */
int load_scan_u64(const char *s, size_t len, const char *key, uint64_t *out);
/* Parses exactly len decimal digits (no sign, no overflow); 0 or -1. */
int load_parse_u64(const char *s, size_t len, uint64_t *out);

/* picohttpparser's response parser, which libh2o-evloop exports without
 * installing its header: the HTTP client and the WebSocket handshake use it. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg,
                       size_t *msg_len, struct phr_header *headers, size_t *num_headers, size_t last_len);

#endif
