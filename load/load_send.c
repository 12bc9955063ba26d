/* load_send — the open-loop sender (main thread).
 *
 * Every loop turn asks the schedule how many sends are due by now and hands
 * each due send, in order, to an idle keep-alive connection of its chat's
 * target; when that target's are all busy the rest wait (the backlog is
 * just the range of due but unsent numbers) and their latency still counts
 * from their scheduled time. The loop sleeps in
 * epoll until the next send is due (a timerfd, no finer than tick_ns, so a
 * high rate goes out in small batches rather than one wake-up per send).
 *
 * --send ws: each sending user posts over its own WebSocket
 * ({"type":"send"} → {"type":"ack"}), with at most --ws-window sends
 * unanswered on it, as a client that natter's --ws-pending must not close
 * keeps; past that the due sends wait in order, as they do for a free
 * HTTP connection.
 */
#include "load_report.h"
#include "load_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

enum { REQUEST_TIMEOUT_NS = 10 };

static void on_timer(load_io_t *io, uint32_t events)
{
    (void)events;
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        perror("natter-load: timerfd");
}

int load_send_init(load_t *L)
{
    L->epfd = epoll_create1(EPOLL_CLOEXEC);
    L->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L->epfd < 0 || L->timerfd < 0)
        return -1;
    L->timer_io.fd = L->timerfd;
    L->timer_io.on_event = on_timer;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &L->timer_io};
    epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->timerfd, &ev);
    L->nconns = L->o.http_conns > L->ntargets ? L->o.http_conns : L->ntargets;
    L->conns = load_xcalloc(L->nconns, sizeof(load_http_t));
    for (size_t t = 0; t < L->ntargets; t++)
        L->targets[t].idle = load_xcalloc(L->nconns / L->ntargets + 1, sizeof(load_http_t *));
    for (size_t i = 0; i < L->nconns; i++) {
        load_dest_t d = load_target_dest(L, i % L->ntargets, L->tls);
        load_http_init(&L->conns[i], L->epfd, &d);
        L->conns[i].user = L;
    }
    load_hist_init(&L->ack_total);
    load_hist_init(&L->ack_interval);
    load_hist_init(&L->ack_step);
    load_hist_init(&L->wait_total);
    load_hist_init(&L->answer_total);
    load_dest_t d0 = load_target_dest(L, 0, L->tls);
    load_scrape_init(&L->scrape, L->epfd, &d0, L->api->lag_metric, L->api->batches_metric);
    return 0;
}

void load_send_close_conns(load_t *L)
{
    for (size_t i = 0; i < L->nconns; i++)
        load_http_close(&L->conns[i]);
    load_http_close(&L->scrape.conn);
}

void load_send_free(load_t *L)
{
    for (size_t i = 0; i < L->nconns; i++)
        load_http_free(&L->conns[i]);
    for (size_t i = 0; i < L->nusers; i++) {
        load_ws_drop(&L->users[i].ws_send);
        load_ws_free(&L->users[i].ws_send);
    }
    for (size_t t = 0; t < L->ntargets; t++)
        free(L->targets[t].idle);
    load_scrape_free(&L->scrape);
    free(L->conns);
    close(L->timerfd);
    close(L->epfd);
}

/* --- results ---------------------------------------------------------------- */

static load_user_t *sender_of(load_t *L, uint64_t seq);

static void record_result(load_t *L, uint64_t seq, int status, uint64_t id)
{
    load_msg_t *m = &L->msgs[seq];
    if (m->status != 0)
        return; /* already settled (a late answer after a timeout) */
    uint64_t now = load_now_ns();
    m->id = id;
    L->inflight--;
    if (L->o.send_ws)
        sender_of(L, seq)->ws_unacked--;
    if (status < 0) {
        char why[160];
        if (L->total.errors < 5)
            fprintf(stderr, "natter-load: send %llu failed: %s\n", (unsigned long long)seq,
                    load_strerror(status, why, sizeof(why)));
        m->status = -1;
        L->total.errors++;
        L->interval.errors++;
        return;
    }
    m->status = (int16_t)(status < LOAD_STATUS_MAX ? status : LOAD_STATUS_MAX - 1);
    L->total.by_status[m->status]++;
    L->interval.by_status[m->status]++;
    if (status >= 200 && status < 300) {
        L->total.accepted++;
        L->interval.accepted++;
        uint64_t lat = now > m->sched_ns ? now - m->sched_ns : 0;
        load_hist_record(&L->ack_total, lat);
        load_hist_record(&L->ack_interval, lat);
        load_hist_record(&L->ack_step, lat);
    } else {
        L->total.rejected++;
        L->interval.rejected++;
    }
}

static int format_content(char *buf, size_t cap, uint64_t sched_ns, uint64_t seq)
{
    return snprintf(buf, cap, "t=%llu s=%llu", (unsigned long long)sched_ns, (unsigned long long)seq);
}

static load_user_t *sender_of(load_t *L, uint64_t seq)
{
    load_chat_t *c = &L->chats[seq % L->nchats];
    uint64_t cseq = seq / L->nchats;
    return &L->users[c->senders[cseq % c->nsenders]];
}

/* --- HTTP sends ----------------------------------------------------------- */

static void issue_http(load_t *L, load_http_t *c, uint64_t seq);

static load_target_t *target_of(load_t *L, uint64_t seq)
{
    return &L->targets[L->chats[seq % L->nchats].target];
}

static void make_idle(load_t *L, load_http_t *c)
{
    load_target_t *t = &L->targets[(size_t)(c - L->conns) % L->ntargets];
    t->idle[t->nidle++] = c;
}

static void on_posted(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    load_t *L = c->user;
    uint64_t seq = (uint64_t)(uintptr_t)arg, id = 0;
    if (L->api->post_ids && status >= 200 && status < 300 && load_scan_u64(body, len, "\"id\":\"", &id) != 0)
        id = 0;
    if (status >= 200 && status < 300 && L->msgs[seq].status == 0) {
        uint64_t now = load_now_ns(), sched = L->msgs[seq].sched_ns;
        load_hist_record(&L->wait_total, c->sent_ns > sched ? c->sent_ns - sched : 0);
        load_hist_record(&L->answer_total, now > c->sent_ns ? now - c->sent_ns : 0);
    }
    record_result(L, seq, status, id);
    /* keep the connection busy while the next due send goes to its target */
    uint64_t next = L->seq_base + L->issued;
    if (L->issued < L->seg_due && target_of(L, next) == &L->targets[(size_t)(c - L->conns) % L->ntargets]) {
        L->issued++;
        issue_http(L, c, next);
    } else {
        make_idle(L, c);
    }
}

static void issue_http(load_t *L, load_http_t *c, uint64_t seq)
{
    char body[128], content[64];
    format_content(content, sizeof(content), L->msgs[seq].sched_ns, seq);
    int n = L->api->message_body(body, sizeof(body), content);
    load_chat_t *chat = &L->chats[seq % L->nchats];
    L->inflight++;
    int rc = n < 0 ? -EMSGSIZE
                   : load_http_request(c, "POST", chat->path, sender_of(L, seq)->headers, body, (size_t)n, on_posted,
                                       (void *)(uintptr_t)seq);
    if (rc < 0) {
        record_result(L, seq, rc, 0);
        make_idle(L, c);
    }
}

/* Hands due sends, in order, to idle connections of their targets; stops
 * at the first whose target has none idle. */
static void issue_due_http(load_t *L, uint64_t due)
{
    while (L->issued < due) {
        load_target_t *t = target_of(L, L->seq_base + L->issued);
        if (t->nidle == 0)
            return;
        issue_http(L, t->idle[--t->nidle], L->seq_base + L->issued++);
    }
}

/* --- WebSocket sends ------------------------------------------------------ */

static void on_ack(load_ws_t *w, const char *data, size_t len)
{
    load_user_t *u = w->user;
    load_t *L = u->run;
    if (len > 16 && memcmp(data, "{\"type\":\"message\"", 17) == 0)
        return; /* a push of the chats this sender is in */
    uint64_t seq, id = 0;
    if (load_scan_u64(data, len, "\"client_id\":\"", &seq) != 0 || seq >= L->seq_end)
        return;
    if (memmem(data, len, "\"type\":\"ack\"", 12) != NULL) {
        load_scan_u64(data, len, "\"id\":\"", &id);
        record_result(L, seq, 202, id);
    } else {
        uint64_t status = 0;
        /* the error code is a name; map the common ones to their HTTP status */
        if (memmem(data, len, "rate_limited", 12))
            status = 429;
        else if (memmem(data, len, "unavailable", 11))
            status = 503;
        else
            status = 400;
        record_result(L, seq, (int)status, 0);
    }
}

static void on_send_open(load_ws_t *w)
{
    (void)w;
}

static void on_send_close(load_ws_t *w, int code)
{
    load_user_t *u = w->user;
    char why[160];
    fprintf(stderr, "natter-load: sender %s: socket closed (%s)\n", u->name, load_strerror(code, why, sizeof(why)));
}

static const load_ws_handler_t send_handler = {on_send_open, on_ack, on_send_close};

static int open_send_sockets(load_t *L)
{
    for (size_t c = 0; c < L->nchats; c++)
        for (size_t k = 0; k < L->chats[c].nsenders; k++) {
            load_user_t *u = &L->users[L->chats[c].senders[k]];
            if (u->ws_send.state != LOAD_WS_DOWN || u->ws_send.io.fd >= 0)
                continue;
            char path[128];
            load_dest_t d = load_target_dest(L, u->target, L->tls);
            snprintf(path, sizeof(path), "/ws?token=%s", u->cred);
            u->run = L;
            if (load_ws_open(&u->ws_send, L->epfd, &d, NULL, path, &send_handler, u) < 0)
                return -1;
        }
    uint64_t deadline = load_now_ns() + 30000000000ull;
    for (;;) {
        int pending = 0;
        for (size_t i = 0; i < L->nusers; i++)
            if (L->users[i].ws_send.io.fd >= 0 && L->users[i].ws_send.state != LOAD_WS_OPEN)
                pending++;
        if (pending == 0)
            return 0;
        if (load_now_ns() > deadline)
            return -1;
        load_poll(L, 100);
    }
}

static void issue_ws(load_t *L, uint64_t seq)
{
    load_chat_t *chat = &L->chats[seq % L->nchats];
    load_user_t *u = sender_of(L, seq);
    char frame[256], content[64];
    format_content(content, sizeof(content), L->msgs[seq].sched_ns, seq);
    int n = snprintf(frame, sizeof(frame),
                     "{\"type\":\"send\",\"chat_id\":\"%s\",\"content\":\"%s\",\"client_id\":\"%llu\"}", chat->id_str,
                     content, (unsigned long long)seq);
    L->inflight++;
    u->ws_unacked++;
    if (load_ws_send_text(&u->ws_send, frame, (size_t)n) != 0)
        record_result(L, seq, -ENOTCONN, 0);
}

/* Sends the due sends, in order, while their senders' windows have room. */
static void issue_due_ws(load_t *L, uint64_t due)
{
    while (L->issued < due && sender_of(L, L->seq_base + L->issued)->ws_unacked < L->o.ws_window)
        issue_ws(L, L->seq_base + L->issued++);
}

/* --- the loop ------------------------------------------------------------- */

static void grow_msgs(load_t *L, uint64_t end)
{
    if (end > L->msgs_cap) {
        size_t n = L->msgs_cap ? L->msgs_cap : 65536;
        while (n < end)
            n *= 2;
        L->msgs = load_xrealloc(L->msgs, n * sizeof(load_msg_t));
        memset(L->msgs + L->msgs_cap, 0, (n - L->msgs_cap) * sizeof(load_msg_t));
        L->msgs_cap = n;
    }
}

static void arm_timer(load_t *L, uint64_t at_ns)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000u);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000u);
    timerfd_settime(L->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void maybe_report(load_t *L, uint64_t now)
{
    while (now >= L->next_report_ns) {
        load_scrape_tick(&L->scrape);
        load_report_tick(L, L->next_report_ns);
        L->next_report_ns += 1000000000u;
    }
}

/* Fails requests that have waited longer than the timeout (the connection
 * is closed: a late answer would arrive on a socket that is gone). With
 * --send ws a send unanswered that long is an error too (its socket may
 * have closed with it in flight, e.g. natter's 1008 past --ws-pending),
 * and a late ack is ignored: the segment ends rather than wait for it. */
static void expire(load_t *L, uint64_t now)
{
    const uint64_t timeout = (uint64_t)REQUEST_TIMEOUT_NS * 1000000000u;
    for (size_t i = 0; i < L->nconns; i++) {
        load_http_t *c = &L->conns[i];
        if (load_http_busy(c) && now > c->sent_ns && now - c->sent_ns > timeout)
            load_http_abort(c, -ETIMEDOUT);
    }
    for (; L->o.send_ws && L->ws_unanswered < L->seq_base + L->issued; L->ws_unanswered++) {
        const load_msg_t *m = &L->msgs[L->ws_unanswered];
        if (m->status == 0 && now < m->sched_ns + timeout)
            break; /* sends go out in order: the later ones are younger */
        if (m->status == 0)
            record_result(L, L->ws_unanswered, -ETIMEDOUT, 0);
    }
}

int load_send_segment(load_t *L, const load_stages_t *stages, double start_rate)
{
    if (L->o.send_ws && open_send_sockets(L) != 0) {
        fprintf(stderr, "natter-load: sender sockets did not open\n");
        return -1;
    }
    load_sched_init(&L->sched, stages, start_rate);
    L->seq_base = L->seq_end;
    L->seg_total = load_sched_total(&L->sched);
    L->issued = 0;
    L->seg_due = 0;
    grow_msgs(L, L->seq_base + L->seg_total);
    L->t0_ns = load_now_ns() + 5000000u;
    for (uint64_t i = 0; i < L->seg_total; i++)
        L->msgs[L->seq_base + i].sched_ns = L->t0_ns + load_sched_time_of(&L->sched, i);
    /* the listener thread reads seq_end to tell our pushes from strays */
    __atomic_store_n(&L->seq_end, L->seq_base + L->seg_total, __ATOMIC_RELEASE);
    for (size_t t = 0; t < L->ntargets; t++)
        L->targets[t].nidle = 0;
    for (size_t i = 0; i < L->nconns; i++)
        if (!load_http_busy(&L->conns[i]))
            make_idle(L, &L->conns[i]);
    uint64_t end_ns = L->t0_ns + load_sched_end_ns(&L->sched), last_expire = 0;
    for (;;) {
        uint64_t now = load_now_ns();
        uint64_t due = now >= L->t0_ns ? load_sched_due(&L->sched, now - L->t0_ns) : 0;
        if (due > L->seg_total)
            due = L->seg_total;
        if (due > L->seg_due) {
            L->total.offered += due - L->seg_due;
            L->interval.offered += due - L->seg_due;
            L->seg_due = due;
        }
        if (L->o.send_ws)
            issue_due_ws(L, due);
        else
            issue_due_http(L, due);
        maybe_report(L, now);
        if (now - last_expire > 1000000000u) {
            expire(L, now);
            last_expire = now;
        }
        if (L->issued == L->seg_total && L->inflight == 0 && now >= end_ns)
            break;
        uint64_t wake = L->next_report_ns;
        if (due < L->seg_total) {
            uint64_t next = L->t0_ns + load_sched_time_of(&L->sched, due);
            if (next < now + L->o.tick_ns)
                next = now + L->o.tick_ns;
            if (next < wake)
                wake = next;
        } else if (end_ns > now && end_ns < wake) {
            wake = end_ns;
        }
        if (L->issued < due)
            wake = L->next_report_ns; /* backlogged: an answer resumes sending */
        arm_timer(L, wake);
        load_poll(L, 1000);
    }
    return 0;
}

void load_send_drain(load_t *L, uint64_t from, uint64_t drain_ns)
{
    uint64_t expected = 0;
    size_t nrefused = 0, cap = 0;
    uint64_t *refused = NULL; /* what a listener may see anyway does not count towards expected */
    for (uint64_t seq = from; seq < L->seq_end; seq++) {
        if (L->msgs[seq].status >= 200 && L->msgs[seq].status < 300) {
            expected += L->chats[seq % L->nchats].nlisteners;
            continue;
        }
        if (nrefused == cap) {
            cap = cap ? cap * 2 : 64;
            refused = load_xrealloc(refused, cap * sizeof(*refused));
        }
        refused[nrefused++] = seq;
    }
    uint64_t deadline = load_now_ns() + drain_ns;
    for (;;) {
        uint64_t now = load_now_ns();
        maybe_report(L, now);
        if (load_track_step_delivered(L, refused, nrefused) >= expected || now >= deadline)
            break;
        arm_timer(L, now + 10000000u < L->next_report_ns ? now + 10000000u : L->next_report_ns);
        load_poll(L, 100);
    }
    free(refused);
}

void load_send_settle(load_t *L, uint64_t quiet_ns, uint64_t max_ns)
{
    uint64_t now = load_now_ns(), deadline = now + max_ns, changed = now;
    uint64_t seen = load_track_step_delivered(L, NULL, 0);
    while (now < deadline && now - changed < quiet_ns) {
        maybe_report(L, now);
        arm_timer(L, now + 10000000u < L->next_report_ns ? now + 10000000u : L->next_report_ns);
        load_poll(L, 100);
        now = load_now_ns();
        uint64_t d = load_track_step_delivered(L, NULL, 0);
        if (d != seen) {
            seen = d;
            changed = now;
        }
    }
}
