/*
 * WebSocket connections on h2o + wslay, and fan-out to them.
 *
 * Map of this file:
 *   lifetime   h2o reports a socket's end by calling our callback with a
 *              NULL message, sometimes from inside h2o_websocket_proceed()
 *              that we called ourselves (mid fan-out, say). So a closed
 *              connection is only marked and unlinked there; it is freed
 *              from a zero-delay timer, never inside its own callback or
 *              while a list holding it is walked.
 *   send queue each socket's queue is a ring of references to shared frames
 *              (frame.h): a push is queued on every recipient socket
 *              without a copy. write_queue() hands h2o up to
 *              WRITE_FRAMES_MAX of them as one gathered write (iovecs
 *              pointing into the frames); their references are dropped when
 *              the write completes.
 *   control    wslay is left only the control frames: pongs and close.
 *              natter replaces wslay's send callback (send_frames), which
 *              collects what wslay sends into the socket's ctrl buffer;
 *              those bytes lead the next write. wslay always gets all its
 *              bytes taken, so it never holds half a frame, and a control
 *              frame never splits a data frame.
 *   receive    a text frame is a "send": decided on this loop when the caches
 *              know the poster and the chat (post.h), else by a worker.
 *              Nothing calls into wslay while wslay is delivering a
 *              received frame to us (wslay is not re-entrant); writes of
 *              queued frames go straight to h2o, and h2o's own loop lets
 *              wslay send once the receive returns.
 *   bounds     --ws-queue frames queued per socket (else 1008 "send queue
 *              full"), --ws-pending sends awaiting their answer (else 1008
 *              "too many frames in flight", and no more reading), a few KiB
 *              of owed pongs; a closing socket is dropped SLOW_CLOSE_GRACE_MS
 *              later whether or not it read its close frame. An idle socket
 *              gives its queue and write buffers back.
 */
#include "gateway/gateway.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "core/util.h"
#include "ingest/api.h"
#include "ingest/http.h"
#include "ingest/post.h"
#include "loop.h"
#include "natter.h"

#include <h2o/websocket.h>
#include <stdlib.h>
#include <string.h>

#define SLOW_CLOSE_GRACE_MS 5000
#define WRITE_FRAMES_MAX 64            /* frames gathered into one write */
#define WRITE_BYTES_MAX (256 * 1024)   /* bytes gathered into one write, past the first frame */
#define RING_MIN 8                     /* a queue's first allocation; kept while the socket is busy */
#define CTRL_BYTES_MAX 4096            /* control frames owed to a client that does not read */
#define CTRL_QUEUED_MAX 32             /* control frames wslay may hold for such a client */
#define CTRL_KEEP 1024                 /* a ctrl buffer larger than this is freed once written */

/* Bytes natter owns until their write completes. */
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
    ws_conn_t *next_touched;  /* queued to during a fan-out, written after it */
    h2o_timeout_entry_t grace; /* closing: force-close when this fires */
    natter_frame_t **ring;     /* the send queue, oldest at head; cap a power of two or 0 */
    uint32_t cap, head, len;
    uint32_t inflight;         /* frames at head that h2o is writing now */
    wbuf_t ctrl;               /* control frames wslay sent, for the next write */
    wbuf_t ctrl_inflight;      /* control frames in h2o's write */
    uint32_t pending;          /* sends from this client not answered yet */
    uint16_t drain_close_code; /* a close to send once the queue is written (0: none) */
    char drain_close_reason[48];
    unsigned pumping : 1;      /* inside pump()'s wslay_event_send */
    unsigned receiving : 1;    /* inside wslay's receive: nothing may call into wslay */
    unsigned closing : 1;      /* close under way: nothing more is queued */
    unsigned touched : 1;
    unsigned dead : 1;         /* h2o reported the end: free soon */
};

struct natter_gateway {
    natter_loop_t *loop;
    natter_app_t *app;
    natter_u64map_t users; /* user id -> first ws_conn_t of that user */
    natter_u64map_t conns; /* conn id -> ws_conn_t */
    uint64_t next_id;
    ws_conn_t *dead;
    ws_conn_t *touched;
    h2o_timeout_t reap_timeout; /* 0 ms: next loop turn */
    h2o_timeout_entry_t reap;
    h2o_timeout_t grace_timeout;
};

static void reap_dead(h2o_timeout_entry_t *entry);

natter_gateway_t *natter_gateway_new(natter_loop_t *loop)
{
    natter_gateway_t *gw = xcalloc(1, sizeof(*gw));
    gw->loop = loop;
    gw->app = loop->app;
    natter_u64map_init(&gw->users);
    natter_u64map_init(&gw->conns);
    gw->next_id = 1;
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->reap_timeout, 0);
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->grace_timeout, SLOW_CLOSE_GRACE_MS);
    gw->reap.cb = reap_dead;
    return gw;
}

/* ------------------------------------------------------------ the send queue */

static natter_frame_t *ring_at(const ws_conn_t *c, uint32_t i)
{
    return c->ring[(c->head + i) & (c->cap - 1)];
}

static void ring_push(ws_conn_t *c, natter_frame_t *f)
{
    if (c->len == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : RING_MIN;
        natter_frame_t **ring = xmalloc(cap * sizeof(*ring));
        for (uint32_t i = 0; i < c->len; i++)
            ring[i] = ring_at(c, i);
        free(c->ring);
        c->ring = ring;
        c->cap = cap;
        c->head = 0;
    }
    c->ring[(c->head + c->len) & (c->cap - 1)] = f;
    c->len++;
}

/* Drops the n oldest frames; an empty queue gives its memory back unless small. */
static void ring_release(ws_conn_t *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        natter_frame_unref(c->ring[c->head]);
        c->head = (c->head + 1) & (c->cap - 1);
        c->len--;
    }
    if (c->len == 0 && c->cap > RING_MIN) {
        free(c->ring);
        c->ring = NULL;
        c->cap = c->head = 0;
    }
}

/* Drops what is queued but not being written. */
static void ring_drop_queued(ws_conn_t *c)
{
    for (uint32_t i = c->inflight; i < c->len; i++)
        natter_frame_unref(ring_at(c, i));
    c->len = c->inflight;
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

/* ------------------------------------------------------------ lifetime */

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
    if (c->touched) { /* it will not be written: out of the list before it is freed */
        ws_conn_t **p = &gw->touched;
        while (*p != c)
            p = &(*p)->next_touched;
        *p = c->next_touched;
        c->touched = 0;
    }
    if (h2o_timeout_is_linked(&c->grace))
        h2o_timeout_unlink(&c->grace);
    natter_count(&natter_m()->ws_open, (uint64_t)-1);
    c->next_dead = gw->dead;
    gw->dead = c;
    if (!h2o_timeout_is_linked(&gw->reap))
        h2o_timeout_link(gw->loop->h2o_ctx.loop, &gw->reap_timeout, &gw->reap);
}

static void reap_dead(h2o_timeout_entry_t *entry)
{
    natter_gateway_t *gw = H2O_STRUCT_FROM_MEMBER(natter_gateway_t, reap, entry);
    while (gw->dead != NULL) {
        ws_conn_t *c = gw->dead;
        gw->dead = c->next_dead;
        h2o_websocket_close(c->ws); /* closes the socket: a write in flight is abandoned */
        c->inflight = 0;
        ring_release(c, c->len);
        free(c->ring);
        free(c->ctrl.p);
        free(c->ctrl_inflight.p);
        free(c);
    }
}

/* ------------------------------------------------------------ writing */

static void pump(ws_conn_t *c);

static void on_written(h2o_socket_t *sock, const char *err)
{
    h2o_websocket_conn_t *ws = sock->data;
    ws_conn_t *c = ws->data;
    ring_release(c, c->inflight);
    c->inflight = 0;
    c->ctrl_inflight.len = 0;
    if (c->ctrl_inflight.cap > CTRL_KEEP) {
        free(c->ctrl_inflight.p);
        c->ctrl_inflight = (wbuf_t){0};
    }
    if (err != NULL) {
        conn_dead(c);
        return;
    }
    if (c->drain_close_code != 0 && c->len == 0) {
        wslay_event_queue_close(c->ws->ws_ctx, c->drain_close_code, (const uint8_t *)c->drain_close_reason,
                                strlen(c->drain_close_reason));
        c->drain_close_code = 0;
    }
    pump(c);
}

/* Starts one write of the control bytes and as many queued frames as fit,
 * if the socket is idle. Never calls into wslay. */
static void write_queue(ws_conn_t *c)
{
    h2o_iovec_t iov[WRITE_FRAMES_MAX + 1];
    size_t n = 0, bytes = 0;
    uint32_t k = 0;
    if (c->dead || c->ws->sock == NULL || h2o_socket_is_writing(c->ws->sock))
        return;
    if (c->ctrl.len > 0) {
        wbuf_t t = c->ctrl_inflight;
        c->ctrl_inflight = c->ctrl;
        c->ctrl = t;
        c->ctrl.len = 0;
        iov[n++] = h2o_iovec_init(c->ctrl_inflight.p, c->ctrl_inflight.len);
    }
    for (; k < c->len && k < WRITE_FRAMES_MAX && (k == 0 || bytes < WRITE_BYTES_MAX); k++) {
        natter_frame_t *f = ring_at(c, k);
        iov[n++] = h2o_iovec_init(natter_frame_bytes(f), f->len);
        bytes += f->len;
    }
    if (n == 0)
        return;
    c->inflight = k;
    h2o_socket_write(c->ws->sock, iov, n, on_written);
}

/* wslay's send callback (see the top of the file): takes every byte. */
static ssize_t send_frames(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)ctx, (void)flags;
    h2o_websocket_conn_t *ws = user;
    ws_conn_t *c = ws->data;
    wbuf_append(&c->ctrl, data, len);
    if (!c->pumping)
        write_queue(c);
    return (ssize_t)len;
}

/* Lets wslay send its control frames, writes, then lets h2o read on; may
 * report the socket's end (conn_dead). */
static void pump(ws_conn_t *c)
{
    if (c->dead || c->ws->sock == NULL)
        return;
    if (c->receiving) {
        write_queue(c);
        return;
    }
    if (!h2o_socket_is_writing(c->ws->sock) && wslay_event_want_write(c->ws->ws_ctx)) {
        c->pumping = 1;
        int rc = wslay_event_send(c->ws->ws_ctx);
        c->pumping = 0;
        if (rc != 0) {
            conn_dead(c);
            return;
        }
    }
    write_queue(c);
    h2o_websocket_proceed(c->ws);
}

static void grace_expired(h2o_timeout_entry_t *entry)
{
    ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(ws_conn_t, grace, entry);
    conn_dead(c);
}

/* Closes now: what is queued and not being written is dropped, the close
 * frame goes next. stop_reading: the client broke a rule, nothing more it
 * sends is read. The caller pumps. */
static void close_now(ws_conn_t *c, uint16_t code, const char *reason, int stop_reading)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    ring_drop_queued(c);
    wslay_event_queue_close(c->ws->ws_ctx, code, (const uint8_t *)reason, strlen(reason));
    if (stop_reading)
        wslay_event_shutdown_read(c->ws->ws_ctx);
    h2o_timeout_link(c->gw->loop->h2o_ctx.loop, &c->gw->grace_timeout, &c->grace);
}

static void touch(ws_conn_t *c)
{
    if (!c->touched) {
        c->touched = 1;
        c->next_touched = c->gw->touched;
        c->gw->touched = c;
    }
}

/* Writes every socket touched since the last call. */
static void pump_touched(natter_gateway_t *gw)
{
    while (gw->touched != NULL) {
        ws_conn_t *c = gw->touched;
        gw->touched = c->next_touched;
        c->touched = 0;
        pump(c);
    }
}

/* Queues one frame (the caller's reference moves here) unless the socket is
 * closing or its queue is full (then closed as a slow reader); 1 if queued. */
static int queue_frame(ws_conn_t *c, natter_frame_t *f)
{
    if (c->closing || c->dead) {
        natter_frame_unref(f);
        return 0;
    }
    if (c->len >= c->gw->app->cfg.ws_queue) {
        natter_frame_unref(f);
        natter_count(&natter_m()->ws_slow_closed, 1);
        close_now(c, 1008, "send queue full", 0);
        touch(c);
        return 0;
    }
    ring_push(c, f);
    return 1;
}

void natter_gateway_send(natter_gateway_t *gw, uint64_t conn_id, natter_frame_t *frame, int answers)
{
    ws_conn_t *c = natter_u64map_get(&gw->conns, conn_id);
    if (c == NULL) {
        natter_frame_unref(frame);
        return;
    }
    if (answers && c->pending > 0)
        c->pending--;
    queue_frame(c, frame);
    if (c->receiving)
        write_queue(c); /* wslay's close, if any, leaves when the receive returns */
    else
        pump_touched(gw), pump(c);
}

void natter_gateway_fanout(natter_gateway_t *gw, const natter_fanout_t *f)
{
    uint64_t delivered = 0;
    for (size_t i = 0; i < f->n; i++) {
        const natter_fanout_item_t *it = &f->items[i];
        for (uint32_t m = 0; m < it->nmembers; m++) {
            uint64_t user = f->members[it->first_member + m];
            for (ws_conn_t *c = natter_u64map_get(&gw->users, user); c != NULL; c = c->next_of_user) {
                if (!queue_frame(c, natter_frame_ref(it->frame)))
                    continue;
                delivered++;
                touch(c);
            }
        }
    }
    pump_touched(gw);
    natter_count(&natter_m()->messages_delivered, delivered);
    int64_t now = natter_now_ns();
    for (size_t i = 0; i < f->n; i++) /* wall clocks of two nodes may disagree: never below zero */
        natter_hist_observe(&natter_m()->end_to_end,
                            now > f->items[i].ingest_ns ? (uint64_t)(now - f->items[i].ingest_ns) : 0);
}

/* ------------------------------------------------------------ receiving */

static void answer_now(ws_conn_t *c, natter_api_job_t *job)
{
    natter_http_answer(c->gw->loop, job);
}

/* A "send" frame: on this loop when the caches know enough, else a worker's. */
static void on_send(ws_conn_t *c, const uint8_t *text, size_t len)
{
    natter_gateway_t *gw = c->gw;
    if (c->pending >= gw->app->cfg.ws_pending) {
        natter_count(&natter_m()->ws_flood_closed, 1);
        close_now(c, 1008, "too many frames in flight", 1);
        return;
    }
    c->pending++;
    natter_route_t route = {.action = NATTER_A_WS_SEND};
    natter_api_job_t *job = natter_api_job_new(gw->loop, &route);
    job->ws_user_id = c->user_id;
    job->ws_conn_id = c->id;
    switch (natter_post_on_loop(job, (const char *)text, len)) {
    case NATTER_POST_ANSWERED:
        answer_now(c, job);
        return;
    case NATTER_POST_PARKED:
        return;
    case NATTER_POST_MISS:
        break;
    }
    natter_api_job_copy_request(job, (const char *)text, len, NULL, 0);
    if (natter_workers_submit(&gw->app->workers, &job->work) != NATTER_OK) {
        natter_count(&natter_m()->busy_rejected, 1);
        natter_api_fail(job, 503, "busy", "the server is busy, try again");
        answer_now(c, job);
    }
}

/* One frame from the client, from inside wslay's receive. */
static void on_frame(ws_conn_t *c, const struct wslay_event_on_msg_recv_arg *arg)
{
    if (c->dead || c->closing || natter_app_stopping(c->gw->app))
        return;
    /* a client that pings and never reads makes wslay owe it pongs */
    if (wslay_is_ctrl_frame(arg->opcode)) {
        if (c->ctrl.len > CTRL_BYTES_MAX || wslay_event_get_queued_msg_count(c->ws->ws_ctx) > CTRL_QUEUED_MAX) {
            natter_count(&natter_m()->ws_slow_closed, 1);
            close_now(c, 1008, "send queue full", 1);
        }
        return;
    }
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        static const char err[] = "{\"type\":\"error\",\"error\":{\"code\":\"invalid_request\","
                                  "\"message\":\"send JSON text frames\"}}";
        queue_frame(c, natter_frame_text(err, sizeof(err) - 1));
        write_queue(c);
        return;
    }
    on_send(c, arg->msg, arg->msg_length);
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
    c->id = gw->next_id++; /* unique on this loop: jobs name their loop and their socket */
    c->user_id = user_id;
    c->grace.cb = grace_expired;
    c->next_of_user = natter_u64map_get(&gw->users, user_id);
    natter_u64map_put(&gw->users, user_id, c);
    natter_u64map_put(&gw->conns, c->id, c);
    natter_count(&natter_m()->ws_open, 1);
    c->ws = h2o_upgrade_to_websocket(req, client_key, c, on_ws_message);
    wslay_event_config_set_max_recv_msg_length(c->ws->ws_ctx, gw->app->cfg.max_body);
    c->ws->ws_callbacks.send_callback = send_frames;
    wslay_event_config_set_callbacks(c->ws->ws_ctx, &c->ws->ws_callbacks);
}

/* ------------------------------------------------------------ closing many */

/* The ids of every open socket: closing one may end others' entries in the
 * map, so callers walk ids, not the map. */
static void all_ids(natter_gateway_t *gw, natter_vec_t *ids)
{
    natter_vec_init(ids, sizeof(uint64_t));
    for (size_t i = 0; i < gw->conns.cap; i++)
        if (gw->conns.keys[i])
            *(uint64_t *)natter_vec_push(ids) = gw->conns.keys[i];
}

static void shed_conn(ws_conn_t *c)
{
    if (c->closing || c->dead)
        return;
    natter_count(&natter_m()->ws_shed_closed, 1);
    close_now(c, 1013, "server overloaded: catch up from history", 0);
    touch(c);
}

void natter_gateway_shed(natter_gateway_t *gw, const uint64_t *users, size_t n, int all)
{
    if (all) {
        natter_vec_t ids;
        all_ids(gw, &ids);
        for (size_t i = 0; i < ids.len; i++) {
            ws_conn_t *c = natter_u64map_get(&gw->conns, *NATTER_VEC_AT(&ids, uint64_t, i));
            if (c != NULL)
                shed_conn(c);
        }
        natter_vec_free(&ids);
    }
    for (size_t i = 0; i < n; i++)
        for (ws_conn_t *c = natter_u64map_get(&gw->users, users[i]); c != NULL; c = c->next_of_user)
            shed_conn(c);
    pump_touched(gw);
}

/* Closes once what is queued is written. */
static void close_after_drain(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    if (c->len == 0) {
        wslay_event_queue_close(c->ws->ws_ctx, code, (const uint8_t *)reason, strlen(reason));
    } else {
        c->drain_close_code = code;
        snprintf(c->drain_close_reason, sizeof(c->drain_close_reason), "%s", reason);
    }
    pump(c);
}

size_t natter_gateway_close_all(natter_gateway_t *gw, uint16_t code, const char *reason)
{
    natter_vec_t ids;
    all_ids(gw, &ids);
    for (size_t i = 0; i < ids.len; i++) {
        ws_conn_t *c = natter_u64map_get(&gw->conns, *NATTER_VEC_AT(&ids, uint64_t, i));
        if (c != NULL)
            close_after_drain(c, code, reason);
    }
    natter_vec_free(&ids);
    return gw->conns.len;
}

void natter_gateway_free(natter_gateway_t *gw)
{
    natter_vec_t ids;
    all_ids(gw, &ids);
    for (size_t i = 0; i < ids.len; i++) {
        ws_conn_t *c = natter_u64map_get(&gw->conns, *NATTER_VEC_AT(&ids, uint64_t, i));
        if (c != NULL)
            conn_dead(c);
    }
    natter_vec_free(&ids);
    reap_dead(&gw->reap);
    if (h2o_timeout_is_linked(&gw->reap))
        h2o_timeout_unlink(&gw->reap);
    natter_u64map_free(&gw->users);
    natter_u64map_free(&gw->conns);
    free(gw);
}
