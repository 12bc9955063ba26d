/*
 * WebSocket connections on h2o + wslay, and fan-out to them.
 *
 * Lifetime: h2o reports a socket's end by calling our callback with a NULL
 * message, sometimes from inside h2o_websocket_proceed() that we called
 * ourselves (mid fan-out, say). So a closed connection is only marked and
 * unlinked there; it is freed from a zero-delay timer, never inside its own
 * callback or while a list holding it is walked.
 *
 * Writes: h2o 2.2's websocket hands wslay one frame per socket write and
 * refuses more while a write is in flight, so a socket gets one frame per
 * loop turn, one syscall each — a fan-out to a busy room crawls. natter
 * replaces wslay's send callback (send_frames): frames wslay gives up while
 * natter pumps a socket (pump()) are gathered and leave in one write of up
 * to WRITE_BATCH bytes; a frame wslay sends from inside h2o (a pong, the
 * reply to a close) is written at once, as h2o would. One write is in
 * flight per socket; its bytes live in the connection until it completes.
 * Nothing pumps while wslay is delivering a received frame to us (wslay is
 * not re-entrant: a nested receive would take the next frame for a
 * continuation of the one being delivered); h2o's own loop sends what was
 * queued once the receive returns.
 */
#include "gateway/gateway.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "core/util.h"
#include "ingest/api.h"
#include "natter.h"

#include <h2o/websocket.h>
#include <stdlib.h>
#include <string.h>

#define SLOW_CLOSE_GRACE_MS 5000
#define WRITE_BATCH (64 * 1024)

/* Bytes for a socket write: natter owns them until the write completes. */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf_t;

typedef struct ws_conn ws_conn_t;
struct ws_conn {
    natter_gateway_t *gw;
    h2o_websocket_conn_t *ws;
    uint64_t id;
    uint64_t user_id;
    ws_conn_t *next_of_user; /* the user's sockets, a singly linked list */
    ws_conn_t *next_dead;
    h2o_timeout_entry_t grace; /* slow reader: force-close when this fires */
    wbuf_t pending;            /* frames gathered for the next write */
    wbuf_t inflight;           /* the write h2o is doing now */
    int pumping;               /* inside pump()'s wslay_event_send */
    int receiving;             /* inside wslay's receive: pump() must not re-enter wslay */
    int closing;               /* close frame queued: push nothing more */
    int dead;                  /* h2o reported the end: free soon */
};

struct natter_gateway {
    natter_app_t *app;
    natter_u64map_t users; /* user id -> first ws_conn_t of that user */
    natter_u64map_t conns; /* conn id -> ws_conn_t */
    uint64_t next_id;
    ws_conn_t *dead;
    h2o_timeout_t reap_timeout; /* 0 ms: next loop turn */
    h2o_timeout_entry_t reap;
    h2o_timeout_t grace_timeout;
};

static void reap_dead(h2o_timeout_entry_t *entry);

natter_gateway_t *natter_gateway_new(natter_app_t *app)
{
    natter_gateway_t *gw = xcalloc(1, sizeof(*gw));
    gw->app = app;
    natter_u64map_init(&gw->users);
    natter_u64map_init(&gw->conns);
    gw->next_id = 1;
    h2o_timeout_init(app->h2o_ctx.loop, &gw->reap_timeout, 0);
    h2o_timeout_init(app->h2o_ctx.loop, &gw->grace_timeout, SLOW_CLOSE_GRACE_MS);
    gw->reap.cb = reap_dead;
    return gw;
}

static void unlink_conn(natter_gateway_t *gw, ws_conn_t *c)
{
    ws_conn_t *first = natter_u64map_get(&gw->users, c->user_id);
    if (first == c) {
        if (c->next_of_user)
            natter_u64map_put(&gw->users, c->user_id, c->next_of_user);
        else
            natter_u64map_del(&gw->users, c->user_id);
    } else {
        for (ws_conn_t *p = first; p != NULL; p = p->next_of_user)
            if (p->next_of_user == c) {
                p->next_of_user = c->next_of_user;
                break;
            }
    }
    natter_u64map_del(&gw->conns, c->id);
}

/* Marks a connection dead and schedules its release. Idempotent. */
static void conn_dead(ws_conn_t *c)
{
    natter_gateway_t *gw = c->gw;
    if (c->dead)
        return;
    c->dead = 1;
    unlink_conn(gw, c);
    if (h2o_timeout_is_linked(&c->grace))
        h2o_timeout_unlink(&c->grace);
    natter_count(&natter_metrics.ws_open, (uint64_t)-1);
    c->next_dead = gw->dead;
    gw->dead = c;
    if (!h2o_timeout_is_linked(&gw->reap))
        h2o_timeout_link(gw->app->h2o_ctx.loop, &gw->reap_timeout, &gw->reap);
}

static void reap_dead(h2o_timeout_entry_t *entry)
{
    natter_gateway_t *gw = H2O_STRUCT_FROM_MEMBER(natter_gateway_t, reap, entry);
    while (gw->dead != NULL) {
        ws_conn_t *c = gw->dead;
        gw->dead = c->next_dead;
        h2o_websocket_close(c->ws);
        free(c->pending.p);
        free(c->inflight.p);
        free(c);
    }
}

static void wbuf_append(wbuf_t *b, const uint8_t *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = b->len + len > 2 * b->cap ? b->len + len : 2 * b->cap;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void pump(ws_conn_t *c);

static void on_written(h2o_socket_t *sock, const char *err)
{
    h2o_websocket_conn_t *ws = sock->data;
    ws_conn_t *c = ws->data;
    c->inflight.len = 0;
    if (c->inflight.cap > 16 * 1024) { /* a burst's buffer is not kept by an idle socket */
        free(c->inflight.p);
        c->inflight.p = NULL;
        c->inflight.cap = 0;
    }
    if (err != NULL) {
        conn_dead(c);
        return;
    }
    pump(c);
}

/* Starts the write of what c->pending holds (the socket is idle). */
static void write_pending(ws_conn_t *c)
{
    wbuf_t t = c->inflight;
    c->inflight = c->pending;
    c->pending = t;
    c->pending.len = 0;
    h2o_iovec_t buf = h2o_iovec_init(c->inflight.p, c->inflight.len);
    h2o_socket_write(c->ws->sock, &buf, 1, on_written);
}

/* wslay's send callback (see the top of the file). */
static ssize_t send_frames(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    h2o_websocket_conn_t *ws = user;
    ws_conn_t *c = ws->data;
    if (c->pumping || h2o_socket_is_writing(ws->sock)) {
        if (c->pending.len > 0 && c->pending.len + len > WRITE_BATCH) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        wbuf_append(&c->pending, data, len);
        return (ssize_t)len;
    }
    wbuf_append(&c->pending, data, len);
    write_pending(c);
    return (ssize_t)len;
}

/* Moves what wslay has queued into one write, then lets h2o read on; may
 * report the socket's end (conn_dead). */
static void pump(ws_conn_t *c)
{
    if (c->dead || c->ws->sock == NULL || c->receiving)
        return;
    if (!h2o_socket_is_writing(c->ws->sock)) {
        if (wslay_event_want_write(c->ws->ws_ctx)) {
            c->pumping = 1;
            int rc = wslay_event_send(c->ws->ws_ctx);
            c->pumping = 0;
            if (rc != 0) {
                conn_dead(c);
                return;
            }
        }
        if (c->pending.len > 0)
            write_pending(c);
    }
    h2o_websocket_proceed(c->ws);
}

static void grace_expired(h2o_timeout_entry_t *entry)
{
    ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(ws_conn_t, grace, entry);
    conn_dead(c);
}

static void close_with(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    wslay_event_queue_close(c->ws->ws_ctx, code, (const uint8_t *)reason, strlen(reason));
    h2o_timeout_link(c->gw->app->h2o_ctx.loop, &c->gw->grace_timeout, &c->grace);
    pump(c);
}

/* Closes the socket as a slow reader when its queue is full; 1 if it did. */
static int queue_full(ws_conn_t *c)
{
    if (wslay_event_get_queued_msg_count(c->ws->ws_ctx) < c->gw->app->cfg.ws_queue)
        return 0;
    natter_count(&natter_metrics.ws_slow_closed, 1);
    close_with(c, 1008, "send queue full");
    return 1;
}

/* Queues one text frame, unless the socket is closing or its queue is full. */
static int queue_text(ws_conn_t *c, const char *text, size_t len)
{
    if (c->closing || c->dead || queue_full(c))
        return 0;
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    return wslay_event_queue_msg(c->ws->ws_ctx, &msg) == 0;
}

/* One frame from the client, from inside wslay's receive. */
static void on_frame(ws_conn_t *c, const struct wslay_event_on_msg_recv_arg *arg)
{
    if (c->dead || c->closing || c->gw->app->stopping)
        return;
    /* a client that sends pings and never reads fills the queue with pongs */
    if (wslay_is_ctrl_frame(arg->opcode)) {
        queue_full(c);
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        static const char err[] = "{\"type\":\"error\",\"error\":{\"code\":\"invalid_request\","
                                  "\"message\":\"send JSON text frames\"}}";
        queue_text(c, err, sizeof(err) - 1);
        return;
    }
    natter_route_t route = {.action = NATTER_A_WS_SEND};
    natter_api_job_t *job = natter_api_job_new(c->gw->app, &route);
    job->body = xstrndup((const char *)arg->msg, arg->msg_length);
    job->body_len = arg->msg_length;
    job->ws_user_id = c->user_id;
    job->ws_conn_id = c->id;
    natter_workers_submit(&c->gw->app->workers, &job->work);
}

static void on_ws_message(h2o_websocket_conn_t *ws, const struct wslay_event_on_msg_recv_arg *arg)
{
    ws_conn_t *c = ws->data;
    if (arg == NULL) { /* h2o: the socket ended */
        conn_dead(c);
        return;
    }
    c->receiving = 1;
    on_frame(c, arg);
    c->receiving = 0;
}

void natter_gateway_accept(natter_gateway_t *gw, h2o_req_t *req, const char *client_key, uint64_t user_id)
{
    ws_conn_t *c = xcalloc(1, sizeof(*c));
    c->gw = gw;
    c->id = gw->next_id++;
    c->user_id = user_id;
    c->grace.cb = grace_expired;
    c->next_of_user = natter_u64map_get(&gw->users, user_id);
    natter_u64map_put(&gw->users, user_id, c);
    natter_u64map_put(&gw->conns, c->id, c);
    natter_count(&natter_metrics.ws_open, 1);
    c->ws = h2o_upgrade_to_websocket(req, client_key, c, on_ws_message);
    wslay_event_config_set_max_recv_msg_length(c->ws->ws_ctx, gw->app->cfg.max_body);
    c->ws->ws_callbacks.send_callback = send_frames;
    wslay_event_config_set_callbacks(c->ws->ws_ctx, &c->ws->ws_callbacks);
}

void natter_gateway_send(natter_gateway_t *gw, uint64_t conn_id, const char *text, size_t len)
{
    ws_conn_t *c = natter_u64map_get(&gw->conns, conn_id);
    if (c != NULL && queue_text(c, text, len))
        pump(c);
}

void natter_fanout_free(natter_fanout_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->items[i].frame);
        natter_vec_free(&f->items[i].members);
    }
    free(f);
}

/* Pushes one batch: every item to every socket of every member, in batch
 * order, then one write per touched socket. */
static void fanout(natter_gateway_t *gw, natter_fanout_t *f)
{
    natter_vec_t touched;
    natter_vec_init(&touched, sizeof(uint64_t));
    uint64_t delivered = 0;
    int64_t now;
    for (size_t i = 0; i < f->n; i++) {
        natter_fanout_item_t *it = &f->items[i];
        for (size_t m = 0; m < it->members.len; m++) {
            uint64_t user = *NATTER_VEC_AT(&it->members, uint64_t, m);
            for (ws_conn_t *c = natter_u64map_get(&gw->users, user); c != NULL; c = c->next_of_user) {
                if (!queue_text(c, it->frame, it->len))
                    continue;
                delivered++;
                *(uint64_t *)natter_vec_push(&touched) = c->id;
            }
        }
    }
    /* pump by id: a pump may end a socket, and ids of ended ones no longer resolve */
    for (size_t i = 0; i < touched.len; i++) {
        ws_conn_t *c = natter_u64map_get(&gw->conns, *NATTER_VEC_AT(&touched, uint64_t, i));
        if (c != NULL && wslay_event_want_write(c->ws->ws_ctx))
            pump(c);
    }
    natter_vec_free(&touched);
    natter_count(&natter_metrics.messages_delivered, delivered);
    now = natter_now_ns();
    for (size_t i = 0; i < f->n; i++) /* wall clocks of two nodes may disagree: never below zero */
        natter_hist_observe(&natter_metrics.end_to_end,
                               now > f->items[i].ingest_ns ? (uint64_t)(now - f->items[i].ingest_ns) : 0);
}

void natter_gateway_on_fanout(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    natter_app_t *app = H2O_STRUCT_FROM_MEMBER(natter_app_t, fanout, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        natter_fanout_t *f = H2O_STRUCT_FROM_MEMBER(natter_fanout_t, super.link, messages->next);
        h2o_linklist_unlink(&f->super.link);
        uint64_t started = natter_mono_ns();
        fanout(app->gateway, f);
        natter_hist_observe(&natter_metrics.broadcast, natter_mono_ns() - started);
        natter_fanout_free(f);
    }
}

size_t natter_gateway_close_all(natter_gateway_t *gw, uint16_t code, const char *reason)
{
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    for (size_t i = 0; i < gw->conns.cap; i++)
        if (gw->conns.keys[i])
            *(uint64_t *)natter_vec_push(&ids) = gw->conns.keys[i];
    for (size_t i = 0; i < ids.len; i++) {
        ws_conn_t *c = natter_u64map_get(&gw->conns, *NATTER_VEC_AT(&ids, uint64_t, i));
        if (c != NULL)
            close_with(c, code, reason);
    }
    natter_vec_free(&ids);
    return gw->conns.len;
}

void natter_gateway_drop_all(natter_gateway_t *gw)
{
    while (gw->conns.len > 0) {
        for (size_t i = 0; i < gw->conns.cap; i++) {
            if (gw->conns.keys[i]) {
                conn_dead(gw->conns.vals[i]);
                break; /* the map changed under the loop */
            }
        }
    }
    reap_dead(&gw->reap);
    if (h2o_timeout_is_linked(&gw->reap))
        h2o_timeout_unlink(&gw->reap);
}

void natter_gateway_free(natter_gateway_t *gw)
{
    natter_gateway_drop_all(gw);
    natter_u64map_free(&gw->users);
    natter_u64map_free(&gw->conns);
    free(gw);
}
