/* load_scenario — see load_scenario.h. */
#include "load_scenario.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    if (strcmp(name, "conns") == 0)
        return "1000:10s,1000:30s,0:5s";
    return NULL;
}

static uint32_t *one(uint32_t v)
{
    uint32_t *p = load_xmalloc(sizeof(*p));
    *p = v;
    return p;
}

/* A new listener: user's socket on target. Returns its index. */
static uint32_t add_listener(load_t *L, uint32_t user, uint32_t target)
{
    if ((L->nlisteners & (L->nlisteners - 1)) == 0) /* grow at powers of two */
        L->listeners = load_xrealloc(L->listeners, (L->nlisteners ? 2 * L->nlisteners : 1) * sizeof(load_listener_t));
    L->listeners[L->nlisteners] = (load_listener_t){.user = user, .target = target};
    return (uint32_t)L->nlisteners++;
}

/* Records that listener l gets chat c's messages in slot. */
static void listen_to(load_t *L, uint32_t l, uint32_t c, uint32_t slot)
{
    load_listener_t *li = &L->listeners[l];
    li->chats = load_xrealloc(li->chats, (li->nchats + 1) * sizeof(uint32_t));
    li->slots = load_xrealloc(li->slots, (li->nchats + 1) * sizeof(uint32_t));
    li->chats[li->nchats] = c;
    li->slots[li->nchats] = slot;
    li->nchats++;
}

/* Chat c made by creator, posted to at the creator's home target. */
static void chat_init(load_t *L, load_chat_t *c, uint32_t creator, size_t nlisteners)
{
    c->creator = creator;
    c->target = L->users[creator].target;
    c->listeners = load_xcalloc(nlisteners, sizeof(uint32_t));
    c->nlisteners = nlisteners;
}

/* One chat, n listeners (users 0..n-1, one socket each) and a sender
 * (user n, its creator), listed as members in that order. */
static int build_one_room(load_t *L, size_t n)
{
    if (load_setup_users(L, n + 1) != 0)
        return -1;
    L->nchats = 1;
    L->chats = load_xcalloc(1, sizeof(load_chat_t));
    load_chat_t *c = &L->chats[0];
    chat_init(L, c, (uint32_t)n, n);
    c->senders = one((uint32_t)n);
    c->nsenders = 1;
    c->members = load_xcalloc(n + 1, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        c->members[c->nmembers++] = (uint32_t)i;
        c->listeners[i] = add_listener(L, (uint32_t)i, L->users[i].target);
        listen_to(L, c->listeners[i], 0, (uint32_t)i);
    }
    c->members[c->nmembers++] = (uint32_t)n;
    return load_setup_chats(L);
}

/* rooms chats of room_size members drawn in turn from a pool of users,
 * each user one socket in all of its rooms; every member also posts. */
static int build_rooms(load_t *L, size_t rooms, size_t users, size_t room_size)
{
    if (users < room_size)
        users = room_size;
    if (load_setup_users(L, users) != 0)
        return -1;
    for (size_t u = 0; u < users; u++)
        add_listener(L, (uint32_t)u, L->users[u].target); /* listener u is user u */
    L->nchats = rooms;
    L->chats = load_xcalloc(rooms, sizeof(load_chat_t));
    for (size_t r = 0; r < rooms; r++) {
        load_chat_t *c = &L->chats[r];
        uint32_t first = (uint32_t)(r * room_size % users);
        chat_init(L, c, first, room_size);
        c->members = c->listeners; /* users and their listeners share indices here */
        c->nmembers = room_size;
        c->senders = c->listeners;
        c->nsenders = room_size;
        for (size_t j = 0; j < room_size; j++) {
            c->listeners[j] = (uint32_t)((r * room_size + j) % users);
            listen_to(L, c->listeners[j], (uint32_t)r, (uint32_t)j);
        }
    }
    return load_setup_chats(L);
}

/* sockets WebSockets as sockets/tabs users with tabs sockets each, users in
 * rooms of room_size (the last may be smaller). User u's tab k goes to
 * target (u + k) % ntargets, so consecutive users — a room — and one
 * user's tabs land on different targets. */
static int build_conns(load_t *L, size_t sockets, size_t tabs, size_t room_size)
{
    size_t users = sockets / tabs, rooms = (users + room_size - 1) / room_size;
    if (load_setup_users(L, users) != 0)
        return -1;
    L->nchats = rooms;
    L->chats = load_xcalloc(rooms, sizeof(load_chat_t));
    for (size_t r = 0; r < rooms; r++) {
        load_chat_t *c = &L->chats[r];
        size_t first = r * room_size, n = users - first < room_size ? users - first : room_size;
        chat_init(L, c, (uint32_t)first, n * tabs);
        c->members = load_xcalloc(n, sizeof(uint32_t));
        c->nmembers = n;
        c->senders = c->members;
        c->nsenders = n;
        for (size_t j = 0; j < n; j++) {
            uint32_t u = (uint32_t)(first + j);
            c->members[j] = u;
            for (size_t k = 0; k < tabs; k++) {
                uint32_t slot = (uint32_t)(j * tabs + k);
                c->listeners[slot] = add_listener(L, u, (uint32_t)((u + k) % L->ntargets));
                listen_to(L, c->listeners[slot], (uint32_t)r, slot);
            }
        }
    }
    return load_setup_chats(L);
}

static int build_sendonly(load_t *L)
{
    L->nusers = 1;
    L->users = load_xcalloc(1, sizeof(load_user_t));
    L->api->set_credential(&L->users[0], "natter-load-dummy-token");
    L->users[0].ws_send.io.fd = -1;
    L->nchats = 1;
    L->chats = load_xcalloc(1, sizeof(load_chat_t));
    load_chat_t *c = &L->chats[0];
    load_chat_set_id(c, "1");
    c->senders = one(0);
    c->nsenders = 1;
    return 0;
}

enum { ROOM_MEMBERS = 5 };

static int build(load_t *L)
{
    const char *s = L->o.scenario;
    if (strcmp(s, "seed") == 0 || strcmp(s, "max") == 0)
        return build_one_room(L, L->o.listeners ? L->o.listeners : 10);
    if (strcmp(s, "fanout") == 0)
        return build_one_room(L, L->o.listeners ? L->o.listeners : 1000);
    if (strcmp(s, "rooms") == 0)
        return build_rooms(L, L->o.rooms ? L->o.rooms : 10000, L->o.users ? L->o.users : 1000, ROOM_MEMBERS);
    if (strcmp(s, "conns") == 0)
        return build_conns(L, L->o.sockets, L->o.tabs, L->o.room_size);
    if (strcmp(s, "sendonly") == 0 || strcmp(s, "sendmax") == 0)
        return build_sendonly(L);
    fprintf(stderr, "natter-load: unknown scenario %s\n", s);
    return -1;
}

#define STORE_DRAIN_NS 120000000000ull /* how long the end waits for the store */

/* After the last delivery a server may still be storing (on Kafka a push
 * comes before its store write): the end's reading of every target waits,
 * at most STORE_DRAIN_NS, until the first target's consumer lag (the whole
 * store's, on a shared log) is 0, so the CPU read then holds the run's
 * store work. L->store_drain_s says how long it waited (-1 as it was when
 * the lag never came to 0). */
static void scrape_when_stored(load_t *L)
{
    uint64_t start = load_now_ns();
    for (;;) {
        load_scrape_targets(L, LOAD_AT_END);
        double lag = L->targets[0].end.lag;
        if (lag == 0)
            L->store_drain_s = (double)(load_now_ns() - start) / 1e9;
        if (lag <= 0 || load_now_ns() - start > STORE_DRAIN_NS)
            return;
        load_poll(L, 200);
    }
}

static int finish(load_t *L, double duration_s, json_t *extra)
{
    /* a last drain over everything, so late deliveries are not called lost */
    load_track_step(L, 0);
    load_send_drain(L, 0, L->o.drain_ns);
    load_report_tick(L, load_now_ns()); /* the last, partial interval */
    L->store_drain_s = -1; /* no reading of the store: sendonly and sendmax scrape nothing */
    if (L->nlisteners > 0)
        scrape_when_stored(L);
    load_verdict_t v;
    load_listen_sync(L);
    load_track_verify(L, 0, L->seq_end, &v);
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

#define MAX_SETTLE_QUIET_NS 1000000000ull /* after a step missed: a second with no delivery */
#define MAX_SETTLE_NS 30000000000ull      /* ... waited for 30 s at most */

/* One step of max: rate held for hold; 1 if it held (99.9% delivered, or
 * answered when there are no listeners, and p99 within 100 ms), 0 if not,
 * -1 if the generator failed. Its figures go to steps; again says it runs
 * a rate that just missed once more. */
static int max_step(load_t *L, int number, double rate, uint64_t hold, int again, json_t *steps)
{
    size_t listeners = L->chats[0].nlisteners;
    load_stages_t st = {.n = 1, .s = {{.rate = rate, .dur_ns = hold}}};
    uint64_t from = L->seq_end;
    load_track_step(L, from); /* the last step's late deliveries count in neither its drain nor its p99 */
    load_hist_init(&L->ack_step);
    if (load_send_segment(L, &st, rate) != 0)
        return -1;
    load_send_drain(L, from, L->o.drain_ns);
    load_verdict_t v;
    load_listen_sync(L);
    load_track_verify(L, from, L->seq_end, &v);
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
    printf("max: step %d at %.0f msg/s%s: %llu offered, %llu accepted, %s %.4f%%, p99 %.2f ms → %s\n", number, rate,
           again ? " (again)" : "", (unsigned long long)offered, (unsigned long long)v.accepted,
           listeners ? "delivered" : "accepted", ratio * 100, p99, ok ? "held" : "did not hold");
    fflush(stdout);
    json_t *step = json_pack("{s:f, s:I, s:I, s:f, s:f, s:b}", "rate", rate, "offered", (json_int_t)offered,
                             "accepted", (json_int_t)v.accepted, "delivered_ratio", ratio, "p99_ms", p99, "held", ok);
    if (again)
        json_object_set_new(step, "again", json_true());
    json_array_append_new(steps, step);
    if (!ok && listeners)
        load_send_settle(L, MAX_SETTLE_QUIET_NS, MAX_SETTLE_NS);
    return ok;
}

/* The ladder climbs by MAX_STEP until a rate does not hold twice in a row
 * (a step that misses is run once more at its rate, marked "again": one
 * stall of the machine's, a disk flush or a collector's pause, would
 * otherwise end the climb far below what the server holds); then the gap
 * between the last rate held and that one is split MAX_SPLITS times at its
 * geometric middle, each split keeping the half the middle's step decides.
 * The climb finds the range in few steps; the splits place the figure within
 * MAX_STEP^(1/2^MAX_SPLITS) (~6%), finer than one step of the climb. */
#define MAX_STEP 1.25
enum { MAX_CLIMB_STEPS = 60, MAX_SPLITS = 2 };

static int run_max(load_t *L, const load_stages_t *first)
{
    double rate = first->s[0].rate > 0 ? first->s[0].rate : 1000;
    uint64_t hold = first->s[0].dur_ns;
    double held = 0, missed = 0;
    json_t *steps = json_array();
    uint64_t start = load_now_ns();
    int number = 0, got = 1;
    while (got == 1 && number < MAX_CLIMB_STEPS) {
        got = max_step(L, ++number, rate, hold, 0, steps);
        if (got == 0 && number < MAX_CLIMB_STEPS)
            got = max_step(L, ++number, rate, hold, 1, steps);
        if (got == 1) {
            held = rate;
            rate = round(rate * MAX_STEP);
        } else if (got == 0) {
            missed = rate;
        }
    }
    for (int split = 0; got >= 0 && held > 0 && missed > 0 && split < MAX_SPLITS; split++) {
        double middle = round(sqrt(held * missed));
        if (middle <= held || middle >= missed)
            break;
        got = max_step(L, ++number, middle, hold, 0, steps);
        if (got == 1)
            held = middle;
        else if (got == 0)
            missed = middle;
    }
    if (got < 0) {
        json_decref(steps);
        load_listen_stop(L);
        return 1;
    }
    printf("max: highest rate that held: %.0f msg/s\n", held);
    double dur = (double)(load_now_ns() - start) / 1e9;
    return finish(L, dur, json_pack("{s:f, s:o}", "max_rate_held", held, "steps", steps));
}

/* Opens the listeners, measuring each target's memory before and once
 * they are open (after a second, so the server's buffers of the upgrades
 * have settled), then holds them idle for --idle, reading /metrics only at
 * its end (a scrape costs the server more than an idle socket); 0 or -1. */
static int open_listeners(load_t *L)
{
    if (L->nlisteners == 0)
        return load_listen_start(L);
    load_scrape_targets(L, LOAD_AT_BEFORE);
    if (load_listen_start(L) != 0)
        return -1;
    usleep(1000000);
    load_scrape_targets(L, LOAD_AT_OPEN);
    uint64_t start = load_now_ns();
    if (L->o.idle_ns > 0) {
        if (!L->o.quiet)
            fprintf(stderr, "natter-load: holding %zu sockets idle for %.0f s\n", L->nlisteners,
                    (double)L->o.idle_ns / 1e9);
        while (load_now_ns() - start < L->o.idle_ns)
            usleep(100000);
        L->idle_s = (double)(load_now_ns() - start) / 1e9;
    }
    load_scrape_targets(L, LOAD_AT_IDLE);
    return 0;
}

/* Opens the listeners and runs the stages; the exit status. The
 * delivery checks' state is freed at the end, whatever happened. */
static int listen_and_run(load_t *L, const load_stages_t *stages)
{
    int rc;
    if (open_listeners(L) != 0) {
        load_listen_stop(L);
        rc = 2;
    } else {
        L->run_start_ns = load_now_ns();
        L->next_report_ns = L->run_start_ns + 1000000000u;
        load_report_header(L);
        if (strcmp(L->o.scenario, "max") == 0 || strcmp(L->o.scenario, "sendmax") == 0) {
            rc = run_max(L, stages);
        } else {
            uint64_t start = load_now_ns();
            if (load_send_segment(L, stages, L->o.start_rate) != 0) {
                load_listen_stop(L);
                rc = 2;
            } else {
                rc = finish(L, (double)(load_now_ns() - start) / 1e9, NULL);
            }
        }
    }
    load_track_free(L);
    return rc;
}

int load_scenario_run(load_t *L, const load_stages_t *stages)
{
    uint64_t setup_start = load_now_ns();
    if (load_send_init(L) != 0)
        return 2;
    int rc = 2;
    if (load_setup_check_tls(L) == 0 && build(L) == 0) {
        L->setup_s = (double)(load_now_ns() - setup_start) / 1e9;
        rc = listen_and_run(L, stages);
    }
    load_send_free(L);
    return rc;
}
