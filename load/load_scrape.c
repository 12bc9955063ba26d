/* load_scrape — see load_scrape.h. */
#include "load_scrape.h"
#include "load_run.h"

#include <stdlib.h>
#include <string.h>

const load_metrics_t load_metrics_unknown = {-1, -1, -1, -1};

void load_scrape_init(load_scrape_t *s, int epfd, const load_dest_t *d, const char *lag_name,
                      const char *batches_name)
{
    load_http_init(&s->conn, epfd, d);
    s->lag_name = lag_name;
    s->batches_name = batches_name;
    s->off = 0;
    s->misses = 0;
    s->last = load_metrics_unknown;
}

void load_scrape_free(load_scrape_t *s)
{
    load_http_free(&s->conn);
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

int load_scrape_value(const char *text, size_t len, const char *name, double *out)
{
    double all = -1, sum = 0;
    int parts = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        const char *labels;
        size_t llen;
        double v;
        if (*p != '#' && sample(p, le, name, &labels, &llen, &v) == 0) {
            if (labels != NULL && memmem(labels, llen, "partition=\"all\"", 15) != NULL)
                all = v;
            else {
                sum += v;
                parts++;
            }
        }
        p = le + 1;
    }
    if (all < 0 && parts == 0)
        return -1;
    *out = all >= 0 ? all : sum;
    return 0;
}

void load_scrape_parse(const char *text, size_t len, const char *lag_name, const char *batches_name,
                       load_metrics_t *m)
{
    *m = load_metrics_unknown;
    load_scrape_value(text, len, lag_name, &m->lag);
    if (batches_name != NULL)
        load_scrape_value(text, len, batches_name, &m->batches);
    load_scrape_value(text, len, "process_cpu_seconds_total", &m->cpu_s);
    load_scrape_value(text, len, "process_resident_memory_bytes", &m->rss_bytes);
}

static void on_metrics(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)c;
    load_scrape_t *s = arg;
    if (status < 0)
        return; /* the connection failed; ask again next second */
    load_metrics_t m = load_metrics_unknown;
    if (status == 200)
        load_scrape_parse(body, len, s->lag_name, s->batches_name, &m);
    if (m.lag < 0 && m.batches < 0 && m.cpu_s < 0 && m.rss_bytes < 0) {
        /* no such metrics here (404, another server's page); a passing
         * failure (a 503 while natter starts) is only a missing point */
        s->off = status == 404 || status == 200 || ++s->misses >= 5;
        return;
    }
    s->misses = 0;
    s->last = m;
}

void load_scrape_tick(load_scrape_t *s)
{
    if (s->off || load_http_busy(&s->conn))
        return;
    if (load_http_request(&s->conn, "GET", "/metrics", NULL, NULL, 0, on_metrics, s) != 0)
        s->off = 1;
}

/* --- every target at a milestone ------------------------------------------ */

load_metrics_t *load_target_metrics(load_target_t *t, enum load_milestone at)
{
    switch (at) {
    case LOAD_AT_BEFORE:
        return &t->before;
    case LOAD_AT_OPEN:
        return &t->open;
    case LOAD_AT_IDLE:
        return &t->after_idle;
    default:
        return &t->end;
    }
}

typedef struct milestone_req {
    load_scrape_t s; /* its parse names and result */
    int done;
} milestone_req_t;

static void on_milestone(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)c;
    milestone_req_t *r = arg;
    if (status == 200)
        load_scrape_parse(body, len, r->s.lag_name, r->s.batches_name, &r->s.last);
    r->done = 1;
}

void load_scrape_targets(load_t *L, enum load_milestone at)
{
    milestone_req_t *reqs = load_xcalloc(L->ntargets, sizeof(*reqs));
    size_t pending = 0;
    for (size_t i = 0; i < L->ntargets; i++) {
        load_target_t *t = &L->targets[i];
        milestone_req_t *r = &reqs[i];
        load_dest_t d = load_target_dest(L, i, L->tls);
        load_scrape_init(&r->s, L->epfd, &d, L->api->lag_metric, L->api->batches_metric);
        r->done = t->same_as >= 0 ||
                  load_http_request(&r->s.conn, "GET", "/metrics", NULL, NULL, 0, on_milestone, r) != 0;
        pending += !r->done;
    }
    uint64_t deadline = load_now_ns() + 5000000000ull;
    while (pending > 0 && load_now_ns() < deadline) {
        load_poll(L, 100);
        pending = 0;
        for (size_t i = 0; i < L->ntargets; i++)
            pending += !reqs[i].done;
    }
    for (size_t i = 0; i < L->ntargets; i++) {
        load_target_t *t = &L->targets[i];
        size_t from = t->same_as >= 0 ? (size_t)t->same_as : i;
        *load_target_metrics(t, at) = reqs[from].s.last;
        load_scrape_free(&reqs[i].s);
    }
    free(reqs);
}
