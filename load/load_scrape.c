/* load_scrape — see load_scrape.h. */
#include "load_scrape.h"

#include <stdlib.h>
#include <string.h>

void load_scrape_init(load_scrape_t *s, int epfd, const struct sockaddr_in *addr, const char *host)
{
    load_http_init(&s->conn, epfd, addr, host);
    s->off = 0;
    s->misses = 0;
    s->lag = -1;
    s->batches = -1;
}

void load_scrape_free(load_scrape_t *s)
{
    load_http_close(&s->conn);
    load_buf_free(&s->conn.in);
    load_buf_free(&s->conn.out);
}

/* The value after a sample's name and labels, if the line is a sample of
 * name; 0 or -1. */
static int sample(const char *line, const char *end, const char *name, const char **labels, size_t *labels_len,
                  double *v)
{
    size_t n = strlen(name);
    if ((size_t)(end - line) <= n || memcmp(line, name, n) != 0)
        return -1;
    const char *p = line + n;
    *labels = NULL;
    *labels_len = 0;
    if (*p == '{') {
        const char *close = memchr(p, '}', (size_t)(end - p));
        if (close == NULL)
            return -1;
        *labels = p + 1;
        *labels_len = (size_t)(close - p - 1);
        p = close + 1;
    }
    if (p >= end || *p != ' ')
        return -1;
    char num[64];
    size_t len = (size_t)(end - p - 1);
    if (len == 0 || len >= sizeof(num))
        return -1;
    memcpy(num, p + 1, len);
    num[len] = '\0';
    char *stop;
    *v = strtod(num, &stop);
    return stop == num ? -1 : 0;
}

void load_scrape_parse(const char *text, size_t len, double *lag, double *batches)
{
    double all = -1, sum = 0;
    int parts = 0;
    *batches = -1;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        const char *labels;
        size_t llen;
        double v;
        if (*p != '#') {
            if (sample(p, le, "natter_consumer_lag", &labels, &llen, &v) == 0) {
                if (labels == NULL || memmem(labels, llen, "partition=\"all\"", 15) != NULL)
                    all = v;
                else {
                    sum += v;
                    parts++;
                }
            } else if (sample(p, le, "natter_batches_in_flight", &labels, &llen, &v) == 0) {
                *batches = v;
            }
        }
        p = le + 1;
    }
    *lag = all >= 0 ? all : parts > 0 ? sum : -1;
}

static void on_metrics(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)c;
    load_scrape_t *s = arg;
    if (status < 0)
        return; /* the connection failed; ask again next second */
    double lag = -1, batches = -1;
    if (status == 200)
        load_scrape_parse(body, len, &lag, &batches);
    if (lag < 0 && batches < 0) {
        /* no such metrics here (404, another server's page); a passing
         * failure (a 503 while natter starts) is only a missing point */
        s->off = status == 404 || status == 200 || ++s->misses >= 5;
        return;
    }
    s->misses = 0;
    s->lag = lag;
    s->batches = batches;
}

void load_scrape_tick(load_scrape_t *s)
{
    if (s->off || load_http_busy(&s->conn))
        return;
    if (load_http_request(&s->conn, "GET", "/metrics", NULL, NULL, 0, on_metrics, s) != 0)
        s->off = 1;
}
