/* load_io — see load_io.h. */
#include "load_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void oom(void)
{
    fputs("natter-load: out of memory\n", stderr);
    abort();
}

void *load_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

void *load_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom();
    return p;
}

void *load_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        oom();
    return p;
}

char *load_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(load_xmalloc(n), s, n);
}

char *load_buf_reserve(load_buf_t *b, size_t n)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off > 0) { /* compact before growing */
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + n)
                cap *= 2;
            b->p = load_xrealloc(b->p, cap);
            b->cap = cap;
        }
    }
    return b->p + b->len;
}

void load_buf_append(load_buf_t *b, const void *data, size_t n)
{
    memcpy(load_buf_reserve(b, n), data, n);
    b->len += n;
}

void load_buf_consume(load_buf_t *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void load_buf_free(load_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

int load_buf_flush(load_buf_t *b, int fd)
{
    while (b->off < b->len) {
        ssize_t n = send(fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        load_buf_consume(b, (size_t)n);
    }
    return 0;
}

long load_buf_fill(load_buf_t *b, int fd)
{
    long total = 0;
    for (;;) {
        char *dst = load_buf_reserve(b, 16384);
        size_t room = b->cap - b->len;
        ssize_t n = read(fd, dst, room);
        if (n > 0) {
            b->len += (size_t)n;
            total += n;
            if ((size_t)n < room)
                return total; /* short read: the socket is drained (ET: one more read would be EAGAIN) */
            continue;
        }
        if (n == 0)
            return total > 0 ? total : -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return total;
        return -errno;
    }
}

int load_io_connect(int epfd, const struct sockaddr_in *addr, const struct sockaddr_in *src, load_io_t *io)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src != NULL && (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
                        bind(fd, (const struct sockaddr *)src, sizeof(*src)) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    io->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        close(fd);
        io->fd = -1;
        return -e;
    }
    return fd;
}

int load_io_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

uint64_t load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int load_parse_url(const char *url, load_url_t *u)
{
    const char *p = url;
    memset(u, 0, sizeof(*u));
    if (strncmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncmp(p, "https://", 8) == 0) {
        p += 8;
        u->tls = 1;
    }
    const char *colon = strchr(p, ':');
    if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof(u->name))
        return -1;
    memcpy(u->name, p, (size_t)(colon - p));
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || colon[1] < '0' || colon[1] > '9' || port <= 0 || port > 65535 ||
        (*end != '\0' && strcmp(end, "/") != 0))
        return -1;
    u->addr.sin_family = AF_INET;
    u->addr.sin_port = htons((uint16_t)port);
    if (strcmp(u->name, "localhost") == 0)
        u->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, u->name, &u->addr.sin_addr) != 1)
        return -1;
    snprintf(u->hostport, sizeof(u->hostport), "%s:%ld", u->name, port);
    return 0;
}

int load_scan_u64(const char *s, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const char *k = memmem(s, len, key, klen);
    if (k == NULL)
        return -1;
    const char *p = k + klen, *end = s + len;
    uint64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0)
        return -1;
    *out = v;
    return 0;
}

int load_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
