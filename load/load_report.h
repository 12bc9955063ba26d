/* load_report — what natter-load tells: one line a second while it runs,
 * a summary at the end, and on request the same as JSON (--json) and a
 * gnuplot chart of throughput in/out, the server's consumer lag (when its
 * /metrics has it) and latency over time (--plot). */
#ifndef NATTER_LOAD_REPORT_H
#define NATTER_LOAD_REPORT_H

#include <jansson.h>

#include "load_run.h"

struct load_series_point {
    double t_s; /* seconds since the run started (end of the interval) */
    double dt_s;
    load_counts_t c;
    load_lcounts_t l;
    double p50_ms, p99_ms, p999_ms, max_ms;
    double ack_p50_ms, ack_p99_ms;
    uint64_t sockets_open; /* at the end of the interval */
    load_metrics_t server; /* the first target's, from load_scrape; -1 unknown */
};

/* Closes the current interval: takes the sender's and the listeners'
 * interval counters, prints a line, appends a series point. */
void load_report_tick(load_t *L, uint64_t now);
void load_report_header(load_t *L);
/* Prints the summary; returns it as a JSON object (new reference). extra
 * (may be NULL, stolen) is merged into it. */
json_t *load_report_summary(load_t *L, const load_verdict_t *v, double duration_s, json_t *extra);
/* Writes {"summary":…, "series":[…]} to path. 0 or -1 (printed). */
int load_report_json(load_t *L, json_t *summary, const char *path);
/* Draws the series with gnuplot into a PNG at path. 0 or -1 (printed). */
int load_report_plot(load_t *L, const char *path);

#endif
