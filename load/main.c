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
    fputs("usage: natter-load --target URL --scenario NAME [options]\n"
          "  --target URL         natter's base URL, e.g. http://127.0.0.1:8080\n"
          "  --scenario NAME      seed | fanout | rooms | max | sendonly | sendmax\n"
          "  --stages R:D,...     arrival-rate stages, each ramping linearly from the previous rate\n"
          "                       (default for seed and rooms: 1000:30s,1000:30s,10000:30s,10000:30s,0:10s;\n"
          "                       for max: START_RATE:HOLD per step, default 1000:5s)\n"
          "  --start-rate R       rate the first stage ramps from (default 0)\n"
          "  --send http|ws       post over keep-alive HTTP connections (default) or WebSocket sends\n"
          "  --api natter|seed    the server's API: natter's (default) or the original design's\n"
          "                       (form bodies, user_id cookie, /ws/connect/{user_id}, HTML pushes)\n"
          "  --conns N            HTTP connections (default 64)\n"
          "  --listeners N        listeners of seed/max/fanout (default 10 / 1000)\n"
          "  --rooms N            rooms of the rooms scenario (default 10000)\n"
          "  --users N            user pool of the rooms scenario (default 1000)\n"
          "  --drain DURATION     how long to wait for deliveries after the last send (default 3s)\n"
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

int main(int argc, char **argv)
{
    static load_t L;
    L.o.conns = 64;
    L.o.drain_ns = 3000000000ull;
    L.o.tick_ns = 100000;
    const char *send = "http", *api = "natter", *drain = NULL, *tick = NULL, *start_rate = NULL;
    enum { O_TARGET = 1, O_SCEN, O_STAGES, O_JSON, O_PLOT, O_SEND, O_CONNS, O_LIST, O_ROOMS, O_USERS, O_DRAIN,
           O_TICK, O_START, O_QUIET, O_API, O_HELP };
    static const struct option opts[] = {
        {"target", required_argument, 0, O_TARGET}, {"scenario", required_argument, 0, O_SCEN},
        {"stages", required_argument, 0, O_STAGES}, {"json", required_argument, 0, O_JSON},
        {"plot", required_argument, 0, O_PLOT},     {"send", required_argument, 0, O_SEND},
        {"conns", required_argument, 0, O_CONNS},   {"listeners", required_argument, 0, O_LIST},
        {"rooms", required_argument, 0, O_ROOMS},   {"users", required_argument, 0, O_USERS},
        {"drain", required_argument, 0, O_DRAIN},   {"tick", required_argument, 0, O_TICK},
        {"start-rate", required_argument, 0, O_START}, {"quiet", no_argument, 0, O_QUIET},
        {"api", required_argument, 0, O_API},
        {"help", no_argument, 0, O_HELP},           {0, 0, 0, 0}};
    int c, bad = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_TARGET: L.o.target = optarg; break;
        case O_SCEN: L.o.scenario = optarg; break;
        case O_STAGES: L.o.stages_spec = optarg; break;
        case O_JSON: L.o.json_path = optarg; break;
        case O_PLOT: L.o.plot_path = optarg; break;
        case O_SEND: send = optarg; break;
        case O_API: api = optarg; break;
        case O_CONNS: bad |= parse_size(optarg, &L.o.conns) != 0 || L.o.conns == 0; break;
        case O_LIST: bad |= parse_size(optarg, &L.o.listeners) != 0; break;
        case O_ROOMS: bad |= parse_size(optarg, &L.o.rooms) != 0; break;
        case O_USERS: bad |= parse_size(optarg, &L.o.users) != 0; break;
        case O_DRAIN: drain = optarg; break;
        case O_TICK: tick = optarg; break;
        case O_START: start_rate = optarg; break;
        case O_QUIET: L.o.quiet = 1; break;
        case O_HELP: usage(stdout); return 0;
        default: bad = 1;
        }
    }
    if (bad || optind != argc || L.o.target == NULL || L.o.scenario == NULL) {
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
    if (L.o.send_ws && !L.api->has_ids) {
        fprintf(stderr, "natter-load: --send ws needs natter's API\n");
        return 2;
    }
    if ((drain && load_stages_parse_duration(drain, strlen(drain), &L.o.drain_ns) != 0) ||
        (tick && load_stages_parse_duration(tick, strlen(tick), &L.o.tick_ns) != 0)) {
        fprintf(stderr, "natter-load: bad duration\n");
        return 2;
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
        fprintf(stderr, "natter-load: unknown scenario %s (seed, fanout, rooms, max, sendonly, sendmax)\n", L.o.scenario);
        return 2;
    }
    load_stages_t stages;
    char err[256];
    if (load_stages_parse(spec, &stages, err, sizeof(err)) != 0) {
        fprintf(stderr, "natter-load: --stages: %s\n", err);
        return 2;
    }
    if (load_parse_url(L.o.target, &L.addr, L.host, sizeof(L.host)) != 0) {
        fprintf(stderr, "natter-load: --target must be http://IPV4:PORT, got %s\n", L.o.target);
        return 2;
    }
    if (L.o.send_ws && (strcmp(L.o.scenario, "sendonly") == 0 || strcmp(L.o.scenario, "sendmax") == 0)) {
        fprintf(stderr, "natter-load: sendonly and sendmax post over HTTP only\n");
        return 2;
    }
    snprintf(L.run_id, sizeof(L.run_id), "%lx", (unsigned long)((unsigned)getpid() ^ (unsigned)load_now_ns()) & 0xffffffffUL);
    signal(SIGPIPE, SIG_IGN);
    return load_scenario_run(&L, &stages);
}
