/* load_report — see load_report.h. */
#include "load_report.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

void load_report_header(load_t *L)
{
    if (L->o.quiet)
        return;
    printf("%7s %8s %8s %8s %6s %9s %8s %8s %8s %8s %5s %5s\n", "time_s", "offered", "accepted", "rejected", "errors",
           "delivered", "p50_ms", "p99_ms", "p999_ms", "max_ms", "dup", "reord");
    fflush(stdout);
}

void load_report_tick(load_t *L, uint64_t now)
{
    if (L->nseries == L->series_cap) {
        L->series_cap = L->series_cap ? L->series_cap * 2 : 256;
        L->series = load_xrealloc(L->series, L->series_cap * sizeof(*L->series));
    }
    load_series_point_t *p = &L->series[L->nseries++];
    memset(p, 0, sizeof(*p));
    double prev = L->nseries > 1 ? L->series[L->nseries - 2].t_s : 0;
    p->t_s = (double)(now - L->run_start_ns) / 1e9;
    p->dt_s = p->t_s - prev;
    p->c = L->interval;
    p->server = L->scrape.last;
    memset(&L->interval, 0, sizeof(L->interval));
    p->ack_p50_ms = ms(load_hist_quantile(&L->ack_interval, 0.5));
    p->ack_p99_ms = ms(load_hist_quantile(&L->ack_interval, 0.99));
    load_hist_init(&L->ack_interval);

    load_listen_state_t *st = &L->lst;
    pthread_mutex_lock(&st->mu);
    p->l = st->interval;
    p->sockets_open = st->open_now;
    memset(&st->interval, 0, sizeof(st->interval));
    p->p50_ms = ms(load_hist_quantile(&st->hist_interval, 0.5));
    p->p99_ms = ms(load_hist_quantile(&st->hist_interval, 0.99));
    p->p999_ms = ms(load_hist_quantile(&st->hist_interval, 0.999));
    p->max_ms = ms(st->hist_interval.max);
    load_hist_init(&st->hist_interval);
    pthread_mutex_unlock(&st->mu);

    if (L->o.quiet)
        return;
    printf("%7.1f %8llu %8llu %8llu %6llu %9llu %8.2f %8.2f %8.2f %8.2f %5llu %5llu", p->t_s,
           (unsigned long long)p->c.offered, (unsigned long long)p->c.accepted, (unsigned long long)p->c.rejected,
           (unsigned long long)p->c.errors, (unsigned long long)p->l.delivered, p->p50_ms, p->p99_ms, p->p999_ms,
           p->max_ms, (unsigned long long)p->l.duplicated, (unsigned long long)p->l.reordered);
    if (p->c.rejected > 0) {
        printf("  rejected:");
        for (int s = 0; s < LOAD_STATUS_MAX; s++)
            if (p->c.by_status[s] > 0 && (s < 200 || s >= 300))
                printf(" %d×%llu", s, (unsigned long long)p->c.by_status[s]);
    }
    printf("\n");
    fflush(stdout);
}

static json_t *by_status(const load_counts_t *c)
{
    json_t *o = json_object();
    for (int s = 0; s < LOAD_STATUS_MAX; s++)
        if (c->by_status[s] > 0 && (s < 200 || s >= 300)) {
            char k[16];
            snprintf(k, sizeof(k), "%d", s);
            json_object_set_new(o, k, json_integer((json_int_t)c->by_status[s]));
        }
    return o;
}

/* A value from /metrics, or null when unknown (-1). */
static json_t *known(double v)
{
    return v >= 0 ? json_real(v) : json_null();
}

/* How much one metric (the double at offset field of load_metrics_t) grew
 * from milestone from to milestone to, summed over distinct targets; -1
 * when a target lacks it at either. */
static double grew(load_t *L, enum load_milestone from, enum load_milestone to, size_t field)
{
    double sum = 0;
    for (size_t i = 0; i < L->ntargets; i++) {
        load_target_t *t = &L->targets[i];
        if (t->same_as >= 0)
            continue;
        double a = *(const double *)((const char *)load_target_metrics(t, from) + field);
        double b = *(const double *)((const char *)load_target_metrics(t, to) + field);
        if (a < 0 || b < 0)
            return -1;
        sum += b - a;
    }
    return sum;
}

static json_t *targets_json(const load_t *L)
{
    json_t *a = json_array();
    for (size_t i = 0; i < L->ntargets; i++) {
        const load_target_t *t = &L->targets[i];
        json_array_append_new(a, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "target", t->url,
                                           "rss_before_bytes", known(t->before.rss_bytes), "rss_open_bytes",
                                           known(t->open.rss_bytes), "rss_end_bytes", known(t->end.rss_bytes),
                                           "cpu_before_s", known(t->before.cpu_s), "cpu_open_s",
                                           known(t->open.cpu_s), "cpu_idle_end_s", known(t->after_idle.cpu_s),
                                           "cpu_end_s", known(t->end.cpu_s)));
    }
    return a;
}

/* User + system CPU seconds of who (RUSAGE_SELF or RUSAGE_CHILDREN). */
static double cpu_s(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

json_t *load_report_summary(load_t *L, const load_verdict_t *v, double duration_s, json_t *extra)
{
    const load_listen_state_t *st = &L->lst;
    const load_hist_t *h = &st->hist_total;
    double p50 = ms(load_hist_quantile(h, 0.5)), p99 = ms(load_hist_quantile(h, 0.99));
    double p999 = ms(load_hist_quantile(h, 0.999)), mx = ms(h->max);
    double ap50 = ms(load_hist_quantile(&L->ack_total, 0.5)), ap99 = ms(load_hist_quantile(&L->ack_total, 0.99));
    double wp99 = L->wait_total.count ? ms(load_hist_quantile(&L->wait_total, 0.99)) : -1;
    double np50 = L->answer_total.count ? ms(load_hist_quantile(&L->answer_total, 0.5)) : -1;
    double np99 = L->answer_total.count ? ms(load_hist_quantile(&L->answer_total, 0.99)) : -1;
    double connect_rate = L->connect_s > 0 ? (double)L->nlisteners / L->connect_s : 0;
    /* server memory per socket: the growth from before the sockets to once
     * they were open; CPU while they were held idle (--idle) */
    double rss = grew(L, LOAD_AT_BEFORE, LOAD_AT_OPEN, offsetof(load_metrics_t, rss_bytes));
    rss = rss >= 0 && L->nlisteners > 0 ? rss / (double)L->nlisteners : -1;
    double idle = L->idle_s > 0 ? grew(L, LOAD_AT_OPEN, LOAD_AT_IDLE, offsetof(load_metrics_t, cpu_s)) : -1;
    double idle_per_10k = idle >= 0 && L->nlisteners > 0 ? idle / (L->idle_s / 60) / ((double)L->nlisteners / 10000)
                                                         : -1;
    json_t *s = json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:f, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                          "s:I, s:I, s:I, s:{s:f, s:f, s:f, s:f, s:f}, s:{s:f, s:f}}",
                          "scenario", L->o.scenario, "send", L->o.send_ws ? "ws" : "http", "duration_s", duration_s,
                          "chats", (json_int_t)L->nchats, "listeners", (json_int_t)L->nlisteners, "offered",
                          (json_int_t)L->total.offered, "accepted_rate",
                          duration_s > 0 ? (double)v->accepted / duration_s : 0.0, "accepted",
                          (json_int_t)v->accepted, "rejected", by_status(&L->total), "rejected_total",
                          (json_int_t)L->total.rejected, "errors", (json_int_t)L->total.errors, "delivered",
                          (json_int_t)v->delivered, "expected_deliveries", (json_int_t)v->expected, "lost",
                          (json_int_t)v->lost, "duplicated", (json_int_t)v->duplicated, "reordered",
                          (json_int_t)v->reordered, "unexpected", (json_int_t)v->unexpected, "id_mismatch",
                          (json_int_t)v->id_mismatch, "listeners_closed", (json_int_t)v->closed, "foreign",
                          (json_int_t)st->total.foreign, "latency_ms", "p50", p50, "p99", p99, "p999", p999,
                          "max", mx, "mean", h->count ? ms(h->sum / h->count) : 0.0, "ack_latency_ms", "p50", ap50,
                          "p99", ap99);
    json_object_update_new(
        s, json_pack("{s:I, s:f, s:o, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:o}", "sockets_open",
                     (json_int_t)st->open_peak, "connect_rate", connect_rate, "server_rss_per_socket_bytes",
                     known(rss), "reconnects", (json_int_t)st->total.reconnects, "caught_up",
                     (json_int_t)st->total.caught_up, "overlap", (json_int_t)st->total.overlap, "catchup_failed",
                     (json_int_t)st->catchup_failed, "listener_processes", (json_int_t)L->listener_procs,
                     "setup_s", L->setup_s, "connect_s", L->connect_s, "users", (json_int_t)L->nusers, "targets",
                     targets_json(L)));
    json_object_set_new(s, "ack_parts_ms",
                        json_pack("{s:o, s:o, s:o}", "wait_p99", known(wp99), "answer_p50", known(np50), "answer_p99",
                                  known(np99)));
    json_object_update_new(s, json_pack("{s:f, s:o, s:o}", "idle_s", L->idle_s, "idle_server_cpu_s", known(idle),
                                        "idle_cpu_s_per_minute_per_10k_sockets", known(idle_per_10k)));
    /* the store: how long the end waited for it after the last delivery,
     * its lag then; the first target's resident memory at its peak (of
     * the per-second readings) */
    double rss_peak = -1;
    for (size_t i = 0; i < L->nseries; i++)
        if (L->series[i].server.rss_bytes > rss_peak)
            rss_peak = L->series[i].server.rss_bytes;
    json_object_update_new(s, json_pack("{s:o, s:o, s:o}", "store_drain_s", known(L->store_drain_s),
                                        "store_lag_end", known(L->ntargets ? L->targets[0].end.lag : -1),
                                        "server_rss_peak_bytes", known(rss_peak)));
    /* the generator's own CPU (every thread, and the listener processes it
     * reaped): whether it, not the server, set a rate's limit */
    double self_s = cpu_s(RUSAGE_SELF), children_s = cpu_s(RUSAGE_CHILDREN);
    json_object_set_new(s, "generator_cpu_s",
                        json_pack("{s:f, s:f}", "own", self_s, "listener_processes", children_s));
    /* listener opens over TLS, counted where they happened (in whichever process) */
    uint64_t opens = st->opened + st->total.reconnects;
    json_object_set_new(s, "tls", L->tls == NULL ? json_null()
                                                 : json_pack("{s:I, s:I}", "listener_opens", (json_int_t)opens,
                                                             "listener_resumed", (json_int_t)st->tls_resumed));
    if (extra != NULL) {
        json_object_update(s, extra);
        json_decref(extra);
    }
    printf("\nsummary (%s, %.1f s): offered %llu, accepted %llu (%.0f/s), rejected %llu, errors %llu\n",
           L->o.scenario, duration_s, (unsigned long long)L->total.offered, (unsigned long long)v->accepted,
           duration_s > 0 ? (double)v->accepted / duration_s : 0.0, (unsigned long long)L->total.rejected,
           (unsigned long long)L->total.errors);
    printf("  deliveries: %llu of %llu expected, lost %llu, duplicated %llu, reordered %llu, unexpected %llu, "
           "id mismatches %llu, listener sockets closed %llu\n",
           (unsigned long long)v->delivered, (unsigned long long)v->expected, (unsigned long long)v->lost,
           (unsigned long long)v->duplicated, (unsigned long long)v->reordered, (unsigned long long)v->unexpected,
           (unsigned long long)v->id_mismatch, (unsigned long long)v->closed);
    printf("  end-to-end latency from the scheduled send: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
           p50, p99, p999, mx);
    printf("  2xx answer latency from the scheduled send: p50 %.2f ms, p99 %.2f ms\n", ap50, ap99);
    if (np99 >= 0)
        printf("  of it: waiting for a free connection p99 %.2f ms; from the request handed over p50 %.2f ms, "
               "p99 %.2f ms\n",
               wp99, np50, np99);
    printf("  sockets: %llu open at the peak (%zu listener process%s), opened at %.0f/s, setup %.1f s; "
           "reconnects %llu (caught up %llu from history, %llu overlaps dropped)\n",
           (unsigned long long)st->open_peak, L->listener_procs ? L->listener_procs : 1,
           L->listener_procs > 1 ? "es" : "", connect_rate, L->setup_s,
           (unsigned long long)st->total.reconnects, (unsigned long long)st->total.caught_up,
           (unsigned long long)st->total.overlap);
    if (L->tls != NULL)
        printf("  TLS: %llu of %llu listener socket opens resumed a session\n", (unsigned long long)st->tls_resumed,
               (unsigned long long)opens);
    if (idle >= 0)
        printf("  idle: %.2f server CPU seconds over %.0f s with every socket open: %.3f CPU s a minute per 10,000 "
               "sockets\n",
               idle, L->idle_s, idle_per_10k);
    printf("  generator CPU: %.2f s (its own %.2f s, listener processes %.2f s)\n", self_s + children_s, self_s,
           children_s);
    if (rss >= 0)
        printf("  server memory per socket: %.0f bytes (RSS growth over %zu target%s while the sockets opened)\n", rss,
               L->ntargets, L->ntargets > 1 ? "s" : "");
    else
        printf("  server memory per socket: unknown (no process_resident_memory_bytes on /metrics)\n");
    fflush(stdout);
    return s;
}

int load_report_json(load_t *L, json_t *summary, const char *path)
{
    json_t *series = json_array();
    for (size_t i = 0; i < L->nseries; i++) {
        const load_series_point_t *p = &L->series[i];
        json_t *pt = json_pack("{s:f, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "t_s",
                              p->t_s, "offered", (json_int_t)p->c.offered, "accepted", (json_int_t)p->c.accepted,
                              "rejected_total", (json_int_t)p->c.rejected, "rejected", by_status(&p->c), "errors",
                              (json_int_t)p->c.errors, "delivered", (json_int_t)p->l.delivered, "duplicated",
                              (json_int_t)p->l.duplicated, "reordered", (json_int_t)p->l.reordered, "p50_ms",
                              p->p50_ms, "p99_ms", p->p99_ms, "p999_ms", p->p999_ms, "max_ms", p->max_ms,
                              "ack_p50_ms", p->ack_p50_ms, "ack_p99_ms", p->ack_p99_ms);
        json_object_set_new(pt, "consumer_lag", known(p->server.lag));
        json_object_set_new(pt, "batches_in_flight", known(p->server.batches));
        json_object_set_new(pt, "server_cpu_s", known(p->server.cpu_s));
        json_object_set_new(pt, "server_rss_bytes", known(p->server.rss_bytes));
        json_object_set_new(pt, "sockets_open", json_integer((json_int_t)p->sockets_open));
        json_object_set_new(pt, "reconnects", json_integer((json_int_t)p->l.reconnects));
        json_array_append_new(series, pt);
    }
    json_t *doc = json_pack("{s:O, s:o}", "summary", summary, "series", series);
    int rc = json_dump_file(doc, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (rc != 0)
        fprintf(stderr, "natter-load: cannot write %s\n", path);
    return rc == 0 ? 0 : -1;
}

int load_report_plot(load_t *L, const char *path)
{
    char dat[] = "/tmp/natter-load-XXXXXX";
    int fd = mkstemp(dat);
    if (fd < 0) {
        perror("natter-load: plot data");
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    int have_lag = 0;
    for (size_t i = 0; i < L->nseries; i++) {
        const load_series_point_t *p = &L->series[i];
        double dt = p->dt_s > 0 ? p->dt_s : 1;
        have_lag |= p->server.lag >= 0;
        /* gnuplot reads "NaN" as a gap */
        fprintf(f, "%.3f %.1f %.1f %.1f %.3f %.3f %.3f %.3f %.0f %.0f\n", p->t_s, (double)p->c.offered / dt,
                (double)p->c.accepted / dt, (double)p->l.delivered / dt, p->p50_ms, p->p99_ms, p->p999_ms, p->max_ms,
                p->server.lag >= 0 ? p->server.lag : NAN, p->server.batches >= 0 ? p->server.batches : NAN);
    }
    fclose(f);
    char lag_panel[512] = "";
    if (have_lag)
        snprintf(lag_panel, sizeof(lag_panel),
                 "set ylabel 'messages'\nset y2label 'batches'\nset y2tics\n"
                 "plot '%s' using 1:9 with lines title 'consumer lag (server /metrics)', "
                 "'' using 1:10 axes x1y2 with lines title 'store batches in flight'\n"
                 "unset y2tics\nunset y2label\n",
                 dat);
    char script[4096];
    snprintf(script, sizeof(script),
             "set terminal png size 1200,%d\n"
             "set output '%s'\n"
             "set multiplot layout %d,1 title 'natter-load %s'\n"
             "set xlabel 'time (s)'\nset ylabel 'per second'\nset grid\nset key top left\n"
             "plot '%s' using 1:2 with lines title 'offered', '' using 1:3 with lines title 'accepted (2xx)', "
             "'' using 1:4 with lines title 'delivered (all listeners)'\n"
             "%s"
             "set ylabel 'latency (ms)'\nset logscale y\n"
             "plot '%s' using 1:($5>0?$5:1/0) with lines title 'p50', '' using 1:($6>0?$6:1/0) with lines title "
             "'p99', '' using 1:($7>0?$7:1/0) with lines title 'p99.9', '' using 1:($8>0?$8:1/0) with lines title "
             "'max'\n"
             "unset multiplot\n",
             have_lag ? 1200 : 800, path, have_lag ? 3 : 2, L->o.scenario, dat, lag_panel, dat);
    FILE *g = popen("gnuplot", "w");
    if (g == NULL) {
        perror("natter-load: gnuplot");
        unlink(dat);
        return -1;
    }
    fputs(script, g);
    int st = pclose(g);
    unlink(dat);
    if (st != 0) {
        fprintf(stderr, "natter-load: gnuplot failed (is gnuplot-nox installed?)\n");
        return -1;
    }
    return 0;
}
