/* load_run — the state of one natter-load run, shared by its parts:
 *
 *   load_setup.c     creates the users, sessions and chats through the API,
 *                    in the dialect of load_api.h (natter's or the original's)
 *   load_send.c      the open-loop sender (main thread): schedule → HTTP/WS sends
 *   load_listen.c    a listener set: the WebSockets of a range of listeners,
 *                    opened from spread source addresses, reconnected after
 *                    a close and caught up from history; it emits records
 *                    (load_wire.h) of what each socket saw
 *   load_gather.c    runs the listener sets — one thread, or child
 *                    processes past --sockets-per-process — and feeds their
 *                    records to load_track
 *   load_track.c     the delivery checks: exactly once, in order, per
 *                    listener, pushes and catch-up merged
 *   load_report.c    per-second lines, the summary, --json and --plot
 *   load_scrape.c    the server's /metrics: consumer lag each second, memory
 *                    and CPU of every target at the run's milestones
 *   load_tls.c       TLS for https:// targets under every connection above:
 *                    one context per process, sessions resumed
 *   load_scenario.c  what each scenario builds and how `max` steps the rate
 *
 * Users, listeners, chats. A user has a credential; a listener is one
 * WebSocket of a user (a user with T tabs has T listeners) on one target;
 * a chat has member users, the listeners that must get each of its
 * messages (each in a slot of the chat), and the users that post to it.
 * With several --target (nodes of one cluster), a user's home target is
 * user % ntargets, its tab k goes to (user + k) % ntargets, and a chat's
 * messages are all posted to its creator's home target (one node's ids
 * strictly increase, so a chat's id order is its log order).
 *
 * Threads and processes: the main thread owns everything but `lst` (what
 * load_track has gathered), which is behind lst.mu; the sender never
 * touches a listener's socket and the listener side never touches msgs[].
 * A child process is forked after setup and reads the run's state only.
 *
 * Message numbering: send `seq` (global across the run, also across `max`
 * steps) goes to chat seq % nchats as that chat's message seq / nchats, from
 * that chat's sender (seq / nchats) % nsenders. The content is
 * "t=<scheduled CLOCK_MONOTONIC ns> s=<seq>", so a listener needs nothing
 * from the sender to know what it received and when it was due.
 */
#ifndef NATTER_LOAD_RUN_H
#define NATTER_LOAD_RUN_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "load_api.h"
#include "load_hist.h"
#include "load_http.h"
#include "load_sched.h"
#include "load_scrape.h"
#include "load_tls.h"
#include "load_wire.h"
#include "load_ws.h"

enum { LOAD_TARGETS_MAX = 64 };

/* A server natter-load talks to (--target), with its HTTP connections. */
typedef struct load_target {
    const char *url;
    struct sockaddr_in addr;
    char host[300]; /* "HOST:PORT" */
    char name[256]; /* HOST: what its certificate must name */
    int tls;        /* https:// (then its peer in each process's load_tls_t has the same index) */
    int same_as; /* index of an earlier target with the same address, or -1 */
    load_http_t **idle; /* its connections that have no request in flight */
    size_t nidle;
    load_metrics_t before, open, after_idle, end; /* /metrics before the sockets, once open, after --idle, at the end */
} load_target_t;

struct load_user {
    char name[48]; /* <= 32 used: "nl<8 hex>_<n>" */
    char *cred;    /* the session token (natter) or user id (seed) */
    char *headers; /* request header lines with the credential (load_api_t) */
    uint32_t target;   /* home target: where its sender socket goes */
    load_ws_t ws_send; /* --send ws: the sender's socket (main thread) */
    size_t ws_unacked; /* its sends not yet answered (at most --ws-window) */
    void *run; /* the load_t */
};

/* One listening WebSocket and the chats whose messages it must get. */
typedef struct load_listener {
    uint32_t user, target;
    uint32_t *chats; /* chat indices, and the listener's slot in each */
    uint32_t *slots;
    size_t nchats;
} load_listener_t;

/* A growable bitmap of chat message numbers a listener has seen. */
typedef struct load_bits {
    uint64_t *w;
    size_t nwords;
} load_bits_t;

struct load_chat {
    char id_str[48]; /* the server's id: digits (natter) or a UUID (seed) */
    char path[80];   /* "/chats/<id>/messages" */
    uint32_t *members; /* users added at creation (the creator may be among them) */
    size_t nmembers;
    uint32_t *listeners; /* listener indices, one slot each */
    size_t nlisteners;
    uint32_t *senders; /* user indices that post */
    size_t nsenders;
    uint32_t creator;
    uint32_t target; /* where its messages are posted */
    /* load_track, per listener slot: seen (any way), seen by catch-up only
     * so far, the last id pushed */
    load_bits_t *seen, *caught_up;
    load_id_t *last_push;
};

/* One scheduled send (main thread). */
typedef struct load_msg {
    uint64_t sched_ns; /* absolute CLOCK_MONOTONIC */
    uint64_t id;       /* from the 2xx answer (dialects with post_ids) */
    int16_t status;    /* 0 not answered yet, HTTP status, or -1 error */
} load_msg_t;

enum { LOAD_STATUS_MAX = 600 };

/* Counters of one reporting interval or of the whole run. */
typedef struct load_counts {
    uint64_t offered, accepted, errors, rejected;
    uint64_t by_status[LOAD_STATUS_MAX];
} load_counts_t;

typedef struct load_lcounts {
    uint64_t delivered, duplicated, reordered, foreign, closed;
    uint64_t reconnects, caught_up, overlap;
} load_lcounts_t;

typedef struct load_listen_state {
    pthread_mutex_t mu;
    load_lcounts_t total, interval;
    load_hist_t hist_total, hist_interval, hist_step;
    /* The segment being judged (a max step, or the whole run at the end):
     * first deliveries of seqs from step_from on, and hist_step of their
     * latency. A late delivery of an earlier step counts in neither. */
    uint64_t step_from, step_delivered;
    uint64_t opened, failed;  /* listeners that opened / gave up at the start */
    uint64_t tls_resumed;     /* opens (first or again) whose TLS handshake resumed a session */
    uint64_t open_now, open_peak; /* sockets open */
    uint64_t syncs;           /* sync answers from listener processes */
    uint64_t catchup_failed;  /* chats whose catch-up gave up */
    /* seq → id first seen by any listener (none yet: {0, 0}) */
    load_id_t *first_id;
    size_t first_id_cap;
    uint64_t id_mismatch;
} load_listen_state_t;

typedef struct load_opts {
    const char *targets[LOAD_TARGETS_MAX];
    size_t ntargets;
    const char *scenario;
    const char *stages_spec;
    const char *json_path;
    const char *plot_path;
    int send_ws;
    size_t http_conns;
    size_t ws_window; /* --send ws: sends a sender socket has unanswered at most */
    size_t sockets;   /* conns: WebSockets to open */
    size_t tabs;      /* conns: sockets per user */
    size_t room_size; /* conns: users per room */
    size_t listeners; /* 0: the scenario's default */
    size_t rooms;     /* 0: default */
    size_t users;     /* rooms: the user pool; 0: default */
    size_t sockets_per_process;
    uint64_t drain_ns;
    uint64_t idle_ns; /* every socket held open and idle before the stages */
    double start_rate;
    uint64_t tick_ns; /* scheduler wake-up granularity */
    double typing_rate; /* typing frames a second over every listener, sent on their sockets (natter's API) */
    int quiet;
    load_tls_opts_t tls; /* for https:// targets */
} load_opts_t;

typedef struct load_series_point load_series_point_t;
typedef struct load_gather load_gather_t;

typedef struct load {
    load_opts_t o;
    const load_api_t *api;
    load_target_t targets[LOAD_TARGETS_MAX];
    size_t ntargets;
    load_tls_t *tls; /* this process's, when a target is https://; else NULL */
    char run_id[16];
    int epfd, timerfd;
    load_io_t timer_io;

    load_user_t *users;
    size_t nusers;
    load_listener_t *listeners;
    size_t nlisteners;
    load_chat_t *chats;
    size_t nchats;

    load_http_t *conns; /* conns[i] goes to target i % ntargets */
    size_t nconns;

    /* schedule of the current segment */
    load_sched_t sched;
    uint64_t t0_ns;     /* the segment's time zero */
    uint64_t seq_base;  /* first seq of the segment */
    uint64_t seg_total; /* sends in the segment */
    uint64_t issued;    /* sends of the segment handed to a connection */
    uint64_t seg_due;   /* sends of the segment due so far */
    uint64_t inflight;
    uint64_t ws_unanswered; /* --send ws: every send below it is settled (answered or timed out) */
    load_msg_t *msgs; /* by global seq */
    size_t msgs_cap;
    uint64_t seq_end; /* every seq below has a msgs[] entry */

    load_counts_t total, interval;
    load_hist_t ack_total, ack_interval, ack_step; /* ack_step: one max step */
    /* --send http, 2xx only: an ack's two parts, scheduled -> handed to a
     * connection (waiting for a free one: the generator's share) and handed
     * over -> answered (the server's and the network's) */
    load_hist_t wait_total, answer_total;
    uint64_t run_start_ns, next_report_ns;
    load_series_point_t *series;
    size_t nseries, series_cap;
    load_scrape_t scrape; /* target 0, each second */

    double setup_s;        /* users, sessions, chats */
    double connect_s;      /* from the first listener connect to the last open */
    double idle_s;         /* how long the sockets were held idle (--idle) */
    double store_drain_s;  /* after the last delivery, until the store's lag was 0 (-1: no lag metric, or never) */
    load_gather_t *gather; /* the listener thread or processes */
    size_t listener_procs; /* child processes holding listeners (0: a thread of this one) */
    load_listen_state_t lst;
} load_t;

/* Where target i is, for a connection of a process whose TLS context is
 * tls (the main process's L->tls, or a listener process's own). */
static inline load_dest_t load_target_dest(const load_t *L, size_t i, load_tls_t *tls)
{
    return (load_dest_t){&L->targets[i].addr, L->targets[i].host, load_tls_peer(tls, i)};
}

/* load_setup.c: every https:// target answers over TLS before anything
 * else (so a certificate that fails verification stops the run here, in
 * every scenario, and the first session is there to resume); 0 or -1
 * (printed). */
int load_setup_check_tls(load_t *L);
/* load_setup.c: users (with sessions) and chats; 0 or -1 (printed). */
int load_setup_users(load_t *L, size_t n);
int load_setup_chats(load_t *L);
/* Replaces u's credential and its request header lines (both copied). */
void load_user_set_credential(load_user_t *u, const char *cred, const char *headers);
/* Sets a chat's id_str and path from the server's id; 0 or -1 (too long). */
int load_chat_set_id(load_chat_t *c, const char *id);
/* Runs the main epoll loop once (timeout ms); dispatches every event. */
void load_poll(load_t *L, int timeout_ms);

/* load_gather.c: the listeners' side as the main thread sees it. */
/* Opens every listener's socket (in a thread, or in child processes when
 * there are more than o.sockets_per_process) and waits until all are open;
 * 0, or -1 (printed). Sets L->connect_s and L->listener_procs. */
int load_listen_start(load_t *L);
/* Stops the listener thread or processes; closes their sockets. */
void load_listen_stop(load_t *L);
/* Waits (bounded) until every record a listener process produced before
 * now has been taken into lst; at once without processes. */
void load_listen_sync(load_t *L);

/* load_track.c: the delivery checks, fed with records under lst.mu. */
typedef struct load_verdict {
    uint64_t accepted, expected, delivered, lost, duplicated, reordered, unexpected, id_mismatch, closed;
} load_verdict_t;
/* Sets up lst and every chat's per-slot state. */
void load_track_init(load_t *L);
/* Takes one record into the checks; the caller holds lst.mu. */
void load_track_apply(load_t *L, const load_rec_t *r);
/* Judges deliveries from seq from on: from 0 (the whole run) or the next
 * seq to be sent (a max step; nothing of it delivered yet). Resets
 * hist_step. Takes lst.mu. */
void load_track_step(load_t *L, uint64_t from);
/* First deliveries of the step's seqs but those of the n seqs in refused
 * (messages not accepted, which a listener may see anyway: e.g. timed out
 * here, stored there). Takes lst.mu. */
uint64_t load_track_step_delivered(load_t *L, const uint64_t *refused, size_t n);
/* Checks every accepted message of seq in [from, to) against what each
 * listener of its chat saw. Call from the main thread after
 * load_listen_sync (it takes lst.mu). */
void load_track_verify(load_t *L, uint64_t from, uint64_t to, load_verdict_t *v);
void load_track_free(load_t *L);

/* load_scrape.c: reads every target's /metrics once, on the main loop
 * (each distinct address once, within 5 s), into the milestone's metrics
 * of each target (unknown values -1). */
enum load_milestone { LOAD_AT_BEFORE, LOAD_AT_OPEN, LOAD_AT_IDLE, LOAD_AT_END };
void load_scrape_targets(load_t *L, enum load_milestone at);
/* The target's metrics at a milestone. */
load_metrics_t *load_target_metrics(load_target_t *t, enum load_milestone at);

/* load_send.c: runs one segment of stages from seq L->seq_end, then waits
 * for the answers (not the deliveries). 0 or -1. */
int load_send_segment(load_t *L, const load_stages_t *stages, double start_rate);
/* Waits up to drain_ns until every accepted message of [from, seq_end) was
 * delivered to every listener of its chat. */
void load_send_drain(load_t *L, uint64_t from, uint64_t drain_ns);
/* Waits until the step's deliveries have stopped coming for quiet_ns (at
 * most max_ns): after a step that did not hold, so the next starts on a
 * server that has caught up, not behind the backlog of this one. */
void load_send_settle(load_t *L, uint64_t quiet_ns, uint64_t max_ns);
int load_send_init(load_t *L);
void load_send_free(load_t *L);
/* Closes every HTTP connection of the main loop (they reconnect on their
 * next request), so a child process forked now inherits none of them. */
void load_send_close_conns(load_t *L);

#endif
