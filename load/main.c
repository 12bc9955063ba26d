/* natter-load — natter's open-loop load generator. See usage() and
 * load_run.h for the map of the parts. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "load_scenario.h"

static void usage(FILE *f)
{
    fputs("usage: natter-load --target URL [--target URL ...] --scenario NAME [options]\n"
          "  --target URL         natter's base URL, e.g. http://127.0.0.1:8080 or https://127.0.0.1:8443\n"
          "                       (then its WebSockets are wss://); give it again for each node of a\n"
          "                       cluster (they share log and store): users, rooms and sockets are\n"
          "                       spread over them\n"
          "  --ca FILE            https: trust the PEM certificates in FILE (e.g. a test certificate)\n"
          "                       instead of the system's; the server's certificate must still name\n"
          "                       the target's host (or IP address)\n"
          "  --insecure           https: do not verify the server's certificate (benchmarks only)\n"
          "  --no-tls-resume      https: a full handshake for every connection (no session resumption)\n"
          "  --scenario NAME      seed | fanout | rooms | conns | max | sendonly | sendmax\n"
          "  --stages R:D,...     arrival-rate stages, each ramping linearly from the previous rate\n"
          "                       (default for seed and rooms: 1000:30s,1000:30s,10000:30s,10000:30s,0:10s;\n"
          "                       for conns: 1000:10s,1000:30s,0:5s; for max: START_RATE:HOLD per step,\n"
          "                       default 1000:5s); a 0:D stage holds every socket open and idle\n"
          "  --start-rate R       rate the first stage ramps from (default 0)\n"
          "  --send http|ws       post over keep-alive HTTP connections (default) or WebSocket sends\n"
          "  --api natter|seed    the server's API: natter's (default) or the original design's\n"
          "                       (form bodies, user_id cookie, /ws/connect/{user_id}, HTML pushes)\n"
          "  --http-conns N       HTTP connections for setup and posts (default 64), spread over the targets\n"
          "  --ws-window N        --send ws: sends a sender's socket has unanswered at most (default 32;\n"
          "                       natter closes a socket past its --ws-pending, 64 by default); the rest\n"
          "                       wait their turn, their latency counted from their scheduled time\n"
          "  --conns N            conns: WebSockets to open\n"
          "  --tabs T             conns: sockets per user (default 1; N must be a multiple)\n"
          "  --room-size S        conns: users per room (default 5)\n"
          "  --listeners N        listeners of seed/max/fanout (default 10 / 1000)\n"
          "  --rooms N            rooms of the rooms scenario (default 10000)\n"
          "  --users N            user pool of the rooms scenario (default 1000)\n"
          "  --sockets-per-process N  listener sockets one process holds before more are forked\n"
          "                       (default 15000; the machine's limit per process is RLIMIT_NOFILE)\n"
          "  --idle DURATION      hold every socket open and idle that long before the stages, reading\n"
          "                       the targets' /metrics only at its start and end (the summary's idle CPU)\n"
          "  --drain DURATION     how long to wait for deliveries after the last send (default 3s)\n"
          "  --typing R           besides the messages, R typing indicators a second in all, each sent on\n"
          "                       a random open listener socket for one of its chats (natter's API; they\n"
          "                       cost the server, never the delivery checks)\n"
          "  --tick DURATION      finest scheduler wake-up (default 100us written 0.1ms)\n"
          "  --json FILE          write {\"summary\":{...},\"series\":[...]}\n"
          "  --plot FILE.png      draw throughput and latency over time (needs gnuplot)\n"
          "  --quiet              no per-second lines\n"
          "exit status: 0 ok, 1 a delivery check failed (loss, duplicate, reorder), 2 usage or setup error\n",
          f);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0')
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Checks the scenario's options against each other; 0, or -1 (printed). */
static int check_opts(const load_opts_t *o)
{
    int conns = strcmp(o->scenario, "conns") == 0;
    if (conns && (o->sockets == 0 || o->tabs == 0 || o->room_size == 0 || o->sockets % o->tabs != 0)) {
        fprintf(stderr, "natter-load: conns needs --conns N > 0, a multiple of --tabs, and --room-size > 0\n");
        return -1;
    }
    if (!conns && o->sockets != 0) {
        fprintf(stderr, "natter-load: --conns is the conns scenario's WebSockets (HTTP connections: --http-conns)\n");
        return -1;
    }
    if (conns && o->send_ws) {
        fprintf(stderr, "natter-load: conns posts over HTTP (--send ws opens a socket per sending user)\n");
        return -1;
    }
    int sends_only = strcmp(o->scenario, "sendonly") == 0 || strcmp(o->scenario, "sendmax") == 0;
    if (o->send_ws && sends_only) {
        fprintf(stderr, "natter-load: sendonly and sendmax post over HTTP only\n");
        return -1;
    }
    if (sends_only && o->ntargets > 1) {
        fprintf(stderr, "natter-load: sendonly and sendmax take one --target\n");
        return -1;
    }
    if (o->sockets_per_process == 0) {
        fprintf(stderr, "natter-load: --sockets-per-process must be > 0\n");
        return -1;
    }
    return 0;
}

/* Parses the --target URLs into L->targets; 0 or -1 (printed). */
static int set_targets(load_t *L)
{
    for (size_t i = 0; i < L->o.ntargets; i++) {
        load_target_t *t = &L->targets[i];
        load_url_t u;
        t->url = L->o.targets[i];
        t->same_as = -1;
        t->before = t->open = t->after_idle = t->end = load_metrics_unknown;
        if (load_parse_url(t->url, &u) != 0) {
            fprintf(stderr, "natter-load: --target must be http://HOST:PORT or https://HOST:PORT (HOST an IPv4 "
                            "address or localhost), got %s\n", t->url);
            return -1;
        }
        t->addr = u.addr;
        t->tls = u.tls;
        snprintf(t->host, sizeof(t->host), "%s", u.hostport);
        snprintf(t->name, sizeof(t->name), "%s", u.name);
        for (size_t j = 0; j < i && t->same_as < 0; j++)
            if (L->targets[j].addr.sin_addr.s_addr == t->addr.sin_addr.s_addr &&
                L->targets[j].addr.sin_port == t->addr.sin_port)
                t->same_as = (int)j;
    }
    L->ntargets = L->o.ntargets;
    return 0;
}

/* Makes this process's TLS context when a target is https://; 0 or -1
 * (printed). */
static int set_tls(load_t *L)
{
    const char *names[LOAD_TARGETS_MAX] = {0};
    int any = 0;
    for (size_t i = 0; i < L->ntargets; i++)
        if (L->targets[i].tls) {
            names[i] = L->targets[i].name;
            any = 1;
        }
    const load_tls_opts_t *o = &L->o.tls;
    if (!any && (o->ca_file || o->insecure || o->no_resume)) {
        fprintf(stderr, "natter-load: --ca, --insecure and --no-tls-resume are for https:// targets\n");
        return -1;
    }
    if (o->ca_file && o->insecure) {
        fprintf(stderr, "natter-load: --ca verifies the certificate and --insecure does not: give one of them\n");
        return -1;
    }
    if (!any)
        return 0;
    char err[512];
    L->tls = load_tls_new(o, names, L->ntargets, err, sizeof(err));
    if (L->tls == NULL) {
        fprintf(stderr, "natter-load: %s\n", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static load_t L;
    L.o.http_conns = 64;
    L.o.ws_window = 32;
    L.o.tabs = 1;
    L.o.room_size = 5;
    L.o.sockets_per_process = 15000;
    L.o.drain_ns = 3000000000ull;
    L.o.tick_ns = 100000;
    const char *send = "http", *api = "natter", *drain = NULL, *tick = NULL, *start_rate = NULL, *idle = NULL,
               *typing = NULL;
    enum { O_TARGET = 1, O_SCEN, O_STAGES, O_JSON, O_PLOT, O_SEND, O_HTTP_CONNS, O_CONNS, O_TABS, O_ROOM_SIZE,
           O_LIST, O_ROOMS, O_USERS, O_PER_PROCESS, O_DRAIN, O_IDLE, O_TICK, O_START, O_QUIET, O_API, O_CA,
           O_INSECURE, O_NO_RESUME, O_TYPING, O_WS_WINDOW, O_HELP };
    static const struct option opts[] = {
        {"target", required_argument, 0, O_TARGET},       {"scenario", required_argument, 0, O_SCEN},
        {"stages", required_argument, 0, O_STAGES},       {"json", required_argument, 0, O_JSON},
        {"plot", required_argument, 0, O_PLOT},           {"send", required_argument, 0, O_SEND},
        {"http-conns", required_argument, 0, O_HTTP_CONNS}, {"conns", required_argument, 0, O_CONNS},
        {"tabs", required_argument, 0, O_TABS},           {"room-size", required_argument, 0, O_ROOM_SIZE},
        {"listeners", required_argument, 0, O_LIST},      {"rooms", required_argument, 0, O_ROOMS},
        {"users", required_argument, 0, O_USERS},         {"sockets-per-process", required_argument, 0, O_PER_PROCESS},
        {"drain", required_argument, 0, O_DRAIN},         {"idle", required_argument, 0, O_IDLE},
        {"tick", required_argument, 0, O_TICK},
        {"start-rate", required_argument, 0, O_START},    {"quiet", no_argument, 0, O_QUIET},
        {"api", required_argument, 0, O_API},             {"help", no_argument, 0, O_HELP},
        {"ca", required_argument, 0, O_CA},               {"insecure", no_argument, 0, O_INSECURE},
        {"no-tls-resume", no_argument, 0, O_NO_RESUME},
        {"typing", required_argument, 0, O_TYPING},       {"ws-window", required_argument, 0, O_WS_WINDOW},
        {0, 0, 0, 0}};
    int c, bad = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_TARGET:
            if (L.o.ntargets == LOAD_TARGETS_MAX) {
                fprintf(stderr, "natter-load: at most %d --target\n", LOAD_TARGETS_MAX);
                return 2;
            }
            L.o.targets[L.o.ntargets++] = optarg;
            break;
        case O_SCEN: L.o.scenario = optarg; break;
        case O_STAGES: L.o.stages_spec = optarg; break;
        case O_JSON: L.o.json_path = optarg; break;
        case O_PLOT: L.o.plot_path = optarg; break;
        case O_SEND: send = optarg; break;
        case O_API: api = optarg; break;
        case O_HTTP_CONNS: bad |= parse_size(optarg, &L.o.http_conns) != 0 || L.o.http_conns == 0; break;
        case O_WS_WINDOW: bad |= parse_size(optarg, &L.o.ws_window) != 0 || L.o.ws_window == 0; break;
        case O_CONNS: bad |= parse_size(optarg, &L.o.sockets) != 0; break;
        case O_TABS: bad |= parse_size(optarg, &L.o.tabs) != 0; break;
        case O_ROOM_SIZE: bad |= parse_size(optarg, &L.o.room_size) != 0; break;
        case O_LIST: bad |= parse_size(optarg, &L.o.listeners) != 0; break;
        case O_ROOMS: bad |= parse_size(optarg, &L.o.rooms) != 0; break;
        case O_USERS: bad |= parse_size(optarg, &L.o.users) != 0; break;
        case O_PER_PROCESS: bad |= parse_size(optarg, &L.o.sockets_per_process) != 0; break;
        case O_DRAIN: drain = optarg; break;
        case O_IDLE: idle = optarg; break;
        case O_TICK: tick = optarg; break;
        case O_START: start_rate = optarg; break;
        case O_QUIET: L.o.quiet = 1; break;
        case O_CA: L.o.tls.ca_file = optarg; break;
        case O_INSECURE: L.o.tls.insecure = 1; break;
        case O_NO_RESUME: L.o.tls.no_resume = 1; break;
        case O_TYPING: typing = optarg; break;
        case O_HELP: usage(stdout); return 0;
        default: bad = 1;
        }
    }
    if (bad || optind != argc || L.o.ntargets == 0 || L.o.scenario == NULL) {
        usage(stderr);
        return 2;
    }
    if (strcmp(send, "http") != 0 && strcmp(send, "ws") != 0) {
        fprintf(stderr, "natter-load: --send is http or ws\n");
        return 2;
    }
    L.o.send_ws = strcmp(send, "ws") == 0;
    L.api = load_api_find(api);
    if (L.api == NULL) {
        fprintf(stderr, "natter-load: --api is natter or seed\n");
        return 2;
    }
    if (L.o.send_ws && !L.api->post_ids) {
        fprintf(stderr, "natter-load: --send ws needs natter's API\n");
        return 2;
    }
    if ((drain && load_stages_parse_duration(drain, strlen(drain), &L.o.drain_ns) != 0) ||
        (idle && load_stages_parse_duration(idle, strlen(idle), &L.o.idle_ns) != 0) ||
        (tick && load_stages_parse_duration(tick, strlen(tick), &L.o.tick_ns) != 0)) {
        fprintf(stderr, "natter-load: bad duration\n");
        return 2;
    }
    if (typing) {
        char *end;
        L.o.typing_rate = strtod(typing, &end);
        if (*end != '\0' || L.o.typing_rate < 0 || (L.o.typing_rate > 0 && !L.api->post_ids)) {
            fprintf(stderr, "natter-load: --typing is a rate of 0 or more, with natter's API\n");
            return 2;
        }
    }
    if (start_rate) {
        char *end;
        L.o.start_rate = strtod(start_rate, &end);
        if (*end != '\0' || L.o.start_rate < 0) {
            fprintf(stderr, "natter-load: bad --start-rate\n");
            return 2;
        }
    }
    const char *spec = L.o.stages_spec ? L.o.stages_spec : load_scenario_default_stages(L.o.scenario);
    if (spec == NULL) {
        fprintf(stderr, "natter-load: unknown scenario %s (seed, fanout, rooms, conns, max, sendonly, sendmax)\n",
                L.o.scenario);
        return 2;
    }
    load_stages_t stages;
    char err[256];
    if (load_stages_parse(spec, &stages, err, sizeof(err)) != 0) {
        fprintf(stderr, "natter-load: --stages: %s\n", err);
        return 2;
    }
    if (check_opts(&L.o) != 0 || set_targets(&L) != 0 || set_tls(&L) != 0)
        return 2;
    snprintf(L.run_id, sizeof(L.run_id), "%lx", (unsigned long)((unsigned)getpid() ^ (unsigned)load_now_ns()) & 0xffffffffUL);
    signal(SIGPIPE, SIG_IGN); /* a write to a closed socket is an error value, also inside OpenSSL */
    int rc = load_scenario_run(&L, &stages);
    load_tls_free(L.tls);
    return rc;
}
