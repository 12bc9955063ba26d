/* load_scrape — reads the server's own view from its /metrics (Prometheus
 * text), on a connection of its own:
 *
 *   each second, from the first target: the consumer lag (natter's
 *   natter_consumer_lag, the original's consumer_lag: the dialect names
 *   it), store batches in flight, and the process's CPU seconds and
 *   resident memory, for the series and the plot's lag panel;
 *   at the run's milestones (load_scrape_targets): memory and CPU of
 *   every target, for the per-socket memory and each node's cost.
 *
 * A server without any of them (the no-op anchor, a server without
 * /metrics) answers something else, and the per-second scraper stops asking
 * (after a 404, a page without them, or five failures in a row); the values
 * then stay unknown (-1).
 */
#ifndef NATTER_LOAD_SCRAPE_H
#define NATTER_LOAD_SCRAPE_H

#include <stddef.h>

#include "load_http.h"

/* What one scrape read; -1 where the page had no such series. */
typedef struct load_metrics {
    double lag, batches, cpu_s, rss_bytes;
} load_metrics_t;

/* Every value unknown: what a milestone holds until it is scraped (a run
 * without listeners, sendonly and sendmax, scrapes none). */
extern const load_metrics_t load_metrics_unknown;

typedef struct load_scrape {
    load_http_t conn;
    const char *lag_name, *batches_name; /* the dialect's; batches_name may be NULL */
    int off;    /* the server has no such metrics */
    int misses; /* failed answers in a row */
    load_metrics_t last;
} load_scrape_t;

void load_scrape_init(load_scrape_t *s, int epfd, const load_dest_t *d, const char *lag_name,
                      const char *batches_name);
/* Asks for /metrics unless a request is in flight or the scraper is off. */
void load_scrape_tick(load_scrape_t *s);
void load_scrape_free(load_scrape_t *s);

/* Reads the four values out of an exposition (lag and batches under the
 * given names; batches_name may be NULL). Exposed for the tests. */
void load_scrape_parse(const char *text, size_t len, const char *lag_name, const char *batches_name,
                       load_metrics_t *m);
/* The value of the metric name: its series labelled partition="all" when
 * there is one, else the sum of its series. 0, or -1 when it is absent. */
int load_scrape_value(const char *text, size_t len, const char *name, double *out);

#endif
