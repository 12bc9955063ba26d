/* load_run — the state of one natter-load run, shared by its parts:
 *
 *   load_setup.c   creates the users, sessions and chats through the API,
 *                  in the dialect of load_api.h (natter's or the original's)
 *   load_send.c    the open-loop sender (main thread): schedule → HTTP/WS sends
 *   load_listen.c  the listener thread: WebSockets, latency, delivery checks
 *   load_report.c  per-second lines, the summary, --json and --plot
 *   load_scrape.c  the server's consumer lag from its /metrics, each second
 *   load_scenario.c  what each scenario builds and how `max` steps the rate
 *
 * Threads: the main thread owns everything but `lst` (the listener thread's
 * part), which is behind lst.mu; the sender never touches a listener's
 * WebSocket and the listener never touches msgs[].
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
#include "load_ws.h"

typedef struct load_user {
    char name[48]; /* <= 32 used: "nl<8 hex>_<n>" */
    char *cred;    /* the session token (natter) or user id (seed) */
    char *headers; /* request header lines with the credential (load_api_t) */
    uint32_t *chats; /* chats this user listens to, and its slot in each */
    uint32_t *slots;
    size_t nchats;
    load_ws_t ws;     /* the listener's socket (listener thread) */
    load_ws_t ws_send; /* --send ws: the sender's socket (main thread) */
    int listening;
    void *run; /* the load_t */
} load_user_t;

/* A growable bitmap of chat message numbers a listener has seen. */
typedef struct load_bits {
    uint64_t *w;
    size_t nwords;
} load_bits_t;

typedef struct load_chat {
    char id_str[48]; /* the server's id: digits (natter) or a UUID (seed) */
    char path[80];   /* "/chats/<id>/messages" */
    uint32_t *listeners; /* user indices with a listening socket */
    size_t nlisteners;
    uint32_t *senders; /* user indices that post */
    size_t nsenders;
    uint32_t creator;
    /* listener thread: per listener slot */
    load_bits_t *seen;
    uint64_t *last_id;
    uint64_t next_rank; /* a dialect without ids: order of first sighting */
} load_chat_t;

/* One scheduled send (main thread). */
typedef struct load_msg {
    uint64_t sched_ns; /* absolute CLOCK_MONOTONIC */
    uint64_t id;       /* from the 2xx answer */
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
} load_lcounts_t;

typedef struct load_listen_state {
    pthread_mutex_t mu;
    load_lcounts_t total, interval;
    load_hist_t hist_total, hist_interval, hist_step;
    int opened, failed; /* sockets open / failed to open */
    /* seq → id first seen by any listener (0 = none yet); a dialect
     * without ids numbers each chat's messages in the order first seen */
    uint64_t *first_id;
    size_t first_id_cap;
    uint64_t id_mismatch;
} load_listen_state_t;

typedef struct load_opts {
    const char *target;
    const char *scenario;
    const char *stages_spec;
    const char *json_path;
    const char *plot_path;
    int send_ws;
    size_t conns;
    size_t listeners; /* 0: the scenario's default */
    size_t rooms;     /* 0: default */
    size_t users;     /* rooms: the user pool; 0: default */
    uint64_t drain_ns;
    double start_rate;
    uint64_t tick_ns; /* scheduler wake-up granularity */
    int quiet;
} load_opts_t;

typedef struct load_series_point load_series_point_t;

typedef struct load {
    load_opts_t o;
    const load_api_t *api;
    struct sockaddr_in addr;
    char host[300];
    char run_id[16];
    int epfd, timerfd;
    load_io_t timer_io;

    load_user_t *users;
    size_t nusers;
    load_chat_t *chats;
    size_t nchats;

    load_http_t *conns;
    size_t nconns;
    load_http_t **idle;
    size_t nidle;

    /* schedule of the current segment */
    load_sched_t sched;
    uint64_t t0_ns;     /* the segment's time zero */
    uint64_t seq_base;  /* first seq of the segment */
    uint64_t seg_total; /* sends in the segment */
    uint64_t issued;    /* sends of the segment handed to a connection */
    uint64_t seg_due;   /* sends of the segment due so far */
    uint64_t drain_base; /* listener deliveries before the segment */
    uint64_t inflight;
    load_msg_t *msgs; /* by global seq */
    size_t msgs_cap;
    uint64_t seq_end; /* every seq below has a msgs[] entry */

    load_counts_t total, interval;
    load_hist_t ack_total, ack_interval, ack_step; /* ack_step: one max step */
    uint64_t run_start_ns, next_report_ns;
    load_series_point_t *series;
    size_t nseries, series_cap;
    load_scrape_t scrape;

    pthread_t listen_thread;
    int listen_efd; /* eventfd waking the listener thread */
    int lst_epfd;
    int listen_running;
    atomic_int listen_stop;
    load_listen_state_t lst;
} load_t;

/* load_setup.c: users (with sessions) and chats; 0 or -1 (printed). */
int load_setup_users(load_t *L, size_t n);
int load_setup_chats(load_t *L);
/* Replaces u's credential and its request header lines (both copied). */
void load_user_set_credential(load_user_t *u, const char *cred, const char *headers);
/* Sets a chat's id_str and path from the server's id; 0 or -1 (too long). */
int load_chat_set_id(load_chat_t *c, const char *id);
/* Runs the main epoll loop once (timeout ms); dispatches every event. */
void load_poll(load_t *L, int timeout_ms);

/* load_listen.c */
int load_listen_start(load_t *L);   /* opens every listener socket, waits until open */
void load_listen_stop(load_t *L);
/* Unique deliveries so far of accepted messages (under the lock). */
uint64_t load_listen_delivered(load_t *L);

typedef struct load_verdict {
    uint64_t accepted, expected, delivered, lost, duplicated, reordered, unexpected, id_mismatch, closed;
} load_verdict_t;
/* Checks every accepted message of seq in [from, to) against what each
 * listener of its chat saw. Call from the main thread. */
void load_listen_verify(load_t *L, uint64_t from, uint64_t to, load_verdict_t *v);

/* load_send.c: runs one segment of stages from seq L->seq_end, then waits
 * for the answers (not the deliveries). 0 or -1. */
int load_send_segment(load_t *L, const load_stages_t *stages, double start_rate);
/* Waits up to drain_ns until every accepted message of [from, seq_end) was
 * delivered to every listener of its chat. */
void load_send_drain(load_t *L, uint64_t from, uint64_t drain_ns);
int load_send_init(load_t *L);
void load_send_free(load_t *L);

#endif
