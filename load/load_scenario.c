/* load_scenario — see load_scenario.h. */
#include "load_scenario.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_report.h"

#define SEED_STAGES "1000:30s,1000:30s,10000:30s,10000:30s,0:10s"

const char *load_scenario_default_stages(const char *name)
{
    if (strcmp(name, "seed") == 0 || strcmp(name, "rooms") == 0)
        return SEED_STAGES;
    if (strcmp(name, "fanout") == 0)
        return "100:10s,100:20s,0:5s";
    if (strcmp(name, "max") == 0 || strcmp(name, "sendmax") == 0)
        return "1000:5s";
    if (strcmp(name, "sendonly") == 0)
        return "10000:5s,10000:10s";
    return NULL;
}

static uint32_t *one(uint32_t v)
{
    uint32_t *p = load_xmalloc(sizeof(*p));
    *p = v;
    return p;
}

/* Records that user u listens to chat c in slot. */
static void add_listening(load_user_t *u, uint32_t c, uint32_t slot)
{
    u->chats = load_xrealloc(u->chats, (u->nchats + 1) * sizeof(uint32_t));
    u->slots = load_xrealloc(u->slots, (u->nchats + 1) * sizeof(uint32_t));
    u->chats[u->nchats] = c;
    u->slots[u->nchats] = slot;
    u->nchats++;
}

/* One chat, n listeners (users 0..n-1) and a sender (user n). */
static int build_one_room(load_t *L, size_t n)
{
    if (load_setup_users(L, n + 1) != 0)
        return -1;
    L->nchats = 1;
    L->chats = load_xcalloc(1, sizeof(load_chat_t));
    load_chat_t *c = &L->chats[0];
    c->creator = (uint32_t)n;
    c->senders = one((uint32_t)n);
    c->nsenders = 1;
    c->listeners = load_xcalloc(n, sizeof(uint32_t));
    c->nlisteners = n;
    for (size_t i = 0; i < n; i++) {
        c->listeners[i] = (uint32_t)i;
        add_listening(&L->users[i], 0, (uint32_t)i);
    }
    return load_setup_chats(L);
}

enum { ROOM_MEMBERS = 5 };

static int build_rooms(load_t *L, size_t rooms, size_t users)
{
    if (users < ROOM_MEMBERS)
        users = ROOM_MEMBERS;
    if (load_setup_users(L, users) != 0)
        return -1;
    L->nchats = rooms;
    L->chats = load_xcalloc(rooms, sizeof(load_chat_t));
    for (size_t r = 0; r < rooms; r++) {
        load_chat_t *c = &L->chats[r];
        c->listeners = load_xcalloc(ROOM_MEMBERS, sizeof(uint32_t));
        c->nlisteners = ROOM_MEMBERS;
        for (size_t j = 0; j < ROOM_MEMBERS; j++) {
            c->listeners[j] = (uint32_t)((r * ROOM_MEMBERS + j) % users);
            add_listening(&L->users[c->listeners[j]], (uint32_t)r, (uint32_t)j);
        }
        c->creator = c->listeners[0];
        /* members post in turn; they are already members, so not listed twice */
        c->senders = c->listeners;
        c->nsenders = ROOM_MEMBERS;
    }
    /* build_chat lists listeners and senders; senders alias listeners here */
    for (size_t r = 0; r < rooms; r++)
        L->chats[r].nsenders = 0;
    int rc = load_setup_chats(L);
    for (size_t r = 0; r < rooms; r++)
        L->chats[r].nsenders = ROOM_MEMBERS;
    return rc;
}

static int build_sendonly(load_t *L)
{
    L->nusers = 1;
    L->users = load_xcalloc(1, sizeof(load_user_t));
    L->api->set_credential(&L->users[0], "natter-load-dummy-token");
    L->users[0].ws.io.fd = L->users[0].ws_send.io.fd = -1;
    L->nchats = 1;
    L->chats = load_xcalloc(1, sizeof(load_chat_t));
    load_chat_t *c = &L->chats[0];
    load_chat_set_id(c, "1");
    c->senders = one(0);
    c->nsenders = 1;
    return 0;
}

static int build(load_t *L)
{
    const char *s = L->o.scenario;
    if (strcmp(s, "seed") == 0 || strcmp(s, "max") == 0)
        return build_one_room(L, L->o.listeners ? L->o.listeners : 10);
    if (strcmp(s, "fanout") == 0)
        return build_one_room(L, L->o.listeners ? L->o.listeners : 1000);
    if (strcmp(s, "rooms") == 0)
        return build_rooms(L, L->o.rooms ? L->o.rooms : 10000, L->o.users ? L->o.users : 1000);
    if (strcmp(s, "sendonly") == 0 || strcmp(s, "sendmax") == 0)
        return build_sendonly(L);
    fprintf(stderr, "natter-load: unknown scenario %s\n", s);
    return -1;
}

static int finish(load_t *L, double duration_s, json_t *extra)
{
    /* a last drain over everything, so late deliveries are not called lost */
    L->drain_base = 0;
    load_send_drain(L, 0, L->o.drain_ns);
    load_report_tick(L, load_now_ns()); /* the last, partial interval */
    load_verdict_t v;
    load_listen_verify(L, 0, L->seq_end, &v);
    load_listen_stop(L);
    json_t *summary = load_report_summary(L, &v, duration_s, extra);
    int rc = 0;
    if (L->o.json_path && load_report_json(L, summary, L->o.json_path) != 0)
        rc = 2;
    if (L->o.plot_path && load_report_plot(L, L->o.plot_path) != 0)
        rc = 2;
    json_decref(summary);
    if (v.lost || v.duplicated || v.reordered || v.id_mismatch || v.closed) {
        fprintf(stderr, "natter-load: FAILED: %llu lost, %llu duplicated, %llu reordered, %llu id mismatches, "
                        "%llu listener sockets closed\n",
                (unsigned long long)v.lost, (unsigned long long)v.duplicated, (unsigned long long)v.reordered,
                (unsigned long long)v.id_mismatch, (unsigned long long)v.closed);
        rc = 1;
    }
    return rc;
}

static int run_max(load_t *L, const load_stages_t *first)
{
    double rate = first->s[0].rate > 0 ? first->s[0].rate : 1000;
    uint64_t hold = first->s[0].dur_ns;
    double held = 0;
    json_t *steps = json_array();
    size_t listeners = L->chats[0].nlisteners;
    uint64_t start = load_now_ns();
    for (int step = 0; step < 60; step++) {
        load_stages_t st = {.n = 1, .s = {{.rate = rate, .dur_ns = hold}}};
        uint64_t from = L->seq_end;
        pthread_mutex_lock(&L->lst.mu);
        load_hist_init(&L->lst.hist_step);
        pthread_mutex_unlock(&L->lst.mu);
        load_hist_init(&L->ack_step);
        L->drain_base = load_listen_delivered(L);
        if (load_send_segment(L, &st, rate) != 0)
            return 1;
        load_send_drain(L, from, L->o.drain_ns);
        load_verdict_t v;
        load_listen_verify(L, from, L->seq_end, &v);
        /* with listeners: deliveries and their latency; without (sendmax):
         * answers and theirs */
        pthread_mutex_lock(&L->lst.mu);
        const load_hist_t *h = listeners ? &L->lst.hist_step : &L->ack_step;
        double p99 = (double)load_hist_quantile(h, 0.99) / 1e6;
        pthread_mutex_unlock(&L->lst.mu);
        uint64_t offered = L->seq_end - from;
        uint64_t got = listeners ? v.delivered : v.accepted;
        double ratio = offered ? (double)got / (double)(offered * (listeners ? listeners : 1)) : 0;
        int ok = ratio >= 0.999 && p99 <= 100.0;
        printf("max: step %d at %.0f msg/s: %llu offered, %llu accepted, %s %.4f%%, p99 %.2f ms → %s\n", step + 1,
               rate, (unsigned long long)offered, (unsigned long long)v.accepted, listeners ? "delivered" : "accepted",
               ratio * 100, p99, ok ? "held" : "did not hold");
        fflush(stdout);
        json_array_append_new(steps, json_pack("{s:f, s:I, s:I, s:f, s:f, s:b}", "rate", rate, "offered",
                                               (json_int_t)offered, "accepted", (json_int_t)v.accepted,
                                               "delivered_ratio", ratio, "p99_ms", p99, "held", ok));
        if (!ok)
            break;
        held = rate;
        rate = round(rate * 1.25);
    }
    printf("max: highest rate that held: %.0f msg/s\n", held);
    double dur = (double)(load_now_ns() - start) / 1e9;
    return finish(L, dur, json_pack("{s:f, s:o}", "max_rate_held", held, "steps", steps));
}

int load_scenario_run(load_t *L, const load_stages_t *stages)
{
    if (load_send_init(L) != 0 || build(L) != 0)
        return 2;
    if (load_listen_start(L) != 0)
        return 2;
    L->run_start_ns = load_now_ns();
    L->next_report_ns = L->run_start_ns + 1000000000u;
    load_report_header(L);
    int rc;
    if (strcmp(L->o.scenario, "max") == 0 || strcmp(L->o.scenario, "sendmax") == 0) {
        rc = run_max(L, stages);
    } else {
        uint64_t start = load_now_ns();
        if (load_send_segment(L, stages, L->o.start_rate) != 0)
            return 2;
        double dur = (double)(load_now_ns() - start) / 1e9;
        rc = finish(L, dur, NULL);
    }
    load_send_free(L);
    return rc;
}
