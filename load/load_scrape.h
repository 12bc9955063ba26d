/* load_scrape — reads the server's own view while a run goes on: once a
 * second, GET /metrics on a connection of its own, and from it natter's
 * consumer lag (natter_consumer_lag, the "all" partition or the sum of the
 * partitions) and store batches in flight (natter_batches_in_flight), for
 * the series and the plot's lag panel. A server without them (the no-op
 * anchor, the original's API) answers something else, and the scraper
 * stops asking (after a 404, a page without them, or five failures in a
 * row); the values then stay unknown (-1).
 */
#ifndef NATTER_LOAD_SCRAPE_H
#define NATTER_LOAD_SCRAPE_H

#include <stddef.h>

#include "load_http.h"

typedef struct load_scrape {
    load_http_t conn;
    int off;         /* the server has no such metrics */
    int misses;      /* failed answers in a row */
    double lag;      /* last values read, -1 while unknown */
    double batches;
} load_scrape_t;

void load_scrape_init(load_scrape_t *s, int epfd, const struct sockaddr_in *addr, const char *host);
/* Asks for /metrics unless a request is in flight or the scraper is off. */
void load_scrape_tick(load_scrape_t *s);
void load_scrape_free(load_scrape_t *s);

/* Reads the two values out of a Prometheus text exposition; each is -1
 * when absent. Exposed for the tests. */
void load_scrape_parse(const char *text, size_t len, double *lag, double *batches);

#endif
