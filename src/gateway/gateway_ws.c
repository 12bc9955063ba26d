/*
 * WebSocket connections on h2o sockets, natter's own protocol code
 * (ws_codec.h), and fan-out to them.
 *
 * Map of this file:
 *   lifetime   h2o reports a socket's end through callbacks we may be inside
 *              of ourselves (mid fan-out, say). So a closed connection is
 *              only marked and unlinked there; it is freed from a zero-delay
 *              timer, never inside its own callback or while a list holding
 *              it is walked.
 *   send queue each socket's queue is a ring of references to shared frames
 *              (frame.h): a push is queued on every recipient socket
 *              without a copy. write_queue() hands h2o the control frames
 *              natter owes the client (pongs, a ping, the close) and up to
 *              WRITE_FRAMES_MAX queued frames as one gathered write (iovecs
 *              pointing into the frames); their references are dropped when
 *              the write completes.
 *   receive    what h2o read is parsed where it lies (ws_codec.h); a text
 *              frame is a "send": decided on this loop when the caches know
 *              the poster and the chat (post.h), else by a worker. The
 *              input buffer is given back whenever it is empty, so an idle
 *              socket holds none.
 *   closing    RFC 6455 §7: a close frame is answered with one; natter's own
 *              close (a violation, a policy, a slow reader, shutdown) sends
 *              one with its code and reason, then the TCP connection is
 *              closed once the frame is written or SLOW_CLOSE_GRACE_MS
 *              later, whichever comes first. After a violation nothing more
 *              is read.
 *   heartbeat  a socket silent for --ws-ping-interval is pinged; one that
 *              then stays silent for --ws-ping-timeout is closed (1001 "ping
 *              timeout") and freed. Any frame from the client counts.
 *   session    a socket ends with the session it was opened with: 4001
 *              "session ended" when its logout arrives (a session-end
 *              batch, from any node), "session expired" when the client
 *              sends or the heartbeat fires past the session's end. The
 *              loop keeps the sessions ended in the last ENDED_KEEP_MS, so
 *              a socket whose session was checked just before its logout,
 *              and whose upgrade completes after the logout came, closes
 *              too. That record is ephemeral and may be lost, so every
 *              --ws-session-check seconds a worker looks the loop's open
 *              sessions up in the store and ends those gone the same way.
 *   bounds     --ws-queue frames queued per socket (else 1008 "send queue
 *              full"), --ws-pending sends awaiting their answer (else 1008
 *              "too many frames in flight"), a few KiB of owed pongs.
 */
#include "gateway/gateway.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "core/util.h"
#include "gateway/ephemeral.h"
#include "gateway/ws_codec.h"
#include "ingest/api.h"
#include "ingest/http.h"
#include "ingest/post.h"
#include "loop.h"
#include "natter.h"

#include <h2o/http1.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define SLOW_CLOSE_GRACE_MS 5000
#define WRITE_FRAMES_MAX 64          /* frames gathered into one write */
#define WRITE_BYTES_MAX (64 * 1024) /* bytes gathered into one write, past the first frame */
#define RING_MIN 8                   /* a queue's first allocation; kept while the socket is busy */
#define CTRL_BYTES_MAX 4096          /* control frames owed to a client that does not read */
#define CTRL_KEEP 1024               /* a ctrl buffer larger than this is freed once written */
#define ENDED_MAX 4096               /* sessions ended lately that a loop keeps, newest first out last */
#define ENDED_KEEP_MS 60000          /* how long: past any upgrade between its check and its socket */
#define CHECK_CHUNK 256              /* sessions a worker looks up before it queues the rest behind other jobs */

typedef struct ws_conn ws_conn_t;
struct ws_conn {
    natter_gateway_t *gw;
    h2o_socket_t *sock; /* NULL until the upgrade's answer is written */
    uint64_t id;
    uint64_t user_id;
    uint8_t session_hash[NATTER_TOKEN_HASH_LEN];
    int64_t session_expires_ms; /* 0: not known (a ticket kept by an older node) */
    ws_conn_t *next_of_user; /* the user's sockets, a singly linked list */
    ws_conn_t *next_dead;
    ws_conn_t *next_touched;  /* queued to during a fan-out, written after it */
    h2o_timeout_entry_t grace; /* closing: force-close when this fires */
    h2o_timeout_entry_t quiet; /* the heartbeat: silent for an interval, then pinged */
    natter_ws_parser_t parser;
    natter_frame_t **ring;     /* the send queue, oldest at head; cap a power of two or 0 */
    uint32_t cap, head, len;
    uint32_t inflight;         /* frames at head that h2o is writing now */
    natter_buf_t ctrl;         /* control frames for the next write */
    natter_buf_t ctrl_inflight; /* control frames in h2o's write (natter owns them until it completes) */
    uint32_t pending;          /* sends from this client not answered yet */
    uint32_t on_worker;        /* of them, sends a worker has: later ones wait in held, so the log keeps their order */
    natter_buf_t held;         /* sends waiting for those, each a uint32_t length and the frame's text */
    size_t held_off;           /* the first not yet dispatched */
    uint16_t drain_close_code; /* a close to send once the queue is written (0: none) */
    char drain_close_reason[48];
    unsigned pinged : 1;       /* a ping is out, no frame since */
    unsigned closing : 1;      /* natter's close is queued or sent: nothing more is queued */
    unsigned close_in_write : 1; /* that close frame is in the write h2o is doing */
    unsigned close_sent : 1;   /* that close frame is written */
    unsigned close_received : 1; /* the client's close came */
    unsigned not_reading : 1;  /* after a violation or the client's close: input is ignored */
    unsigned touched : 1;
    unsigned dead : 1;         /* gone: free soon */
    unsigned upgrading : 1;    /* its 101 is being written: h2o calls on_upgraded with it, alive or not */
    unsigned reaped : 1;       /* dead and reaped while upgrading: on_upgraded frees it */
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
    h2o_timeout_t quiet_timeout; /* --ws-ping-interval */
    h2o_timeout_t pong_timeout;  /* --ws-ping-timeout */
    natter_u64map_t ended;       /* a session's key (ended_key) -> when it ended (ms), ENDED_KEEP_MS */
    struct ended {
        uint64_t key;
        uint64_t at_ms;
    } *ended_ring; /* the same, oldest at ended_head, ENDED_MAX slots */
    uint32_t ended_head, ended_len;
    h2o_timeout_t check_timeout; /* --ws-session-check */
    h2o_timeout_entry_t check;
};

static void reap_dead(h2o_timeout_entry_t *entry);
static void check_sessions(h2o_timeout_entry_t *entry);

natter_gateway_t *natter_gateway_new(natter_loop_t *loop)
{
    natter_gateway_t *gw = xcalloc(1, sizeof(*gw));
    gw->loop = loop;
    gw->app = loop->app;
    natter_u64map_init(&gw->users);
    natter_u64map_init(&gw->conns);
    natter_u64map_init(&gw->ended);
    gw->next_id = 1;
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->reap_timeout, 0);
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->grace_timeout, SLOW_CLOSE_GRACE_MS);
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->quiet_timeout, (uint64_t)gw->app->cfg.ws_ping_interval_s * 1000);
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->pong_timeout, (uint64_t)gw->app->cfg.ws_ping_timeout_s * 1000);
    h2o_timeout_init(loop->h2o_ctx.loop, &gw->check_timeout, (uint64_t)gw->app->cfg.ws_session_check_s * 1000);
    gw->reap.cb = reap_dead;
    gw->check.cb = check_sessions;
    if (gw->app->cfg.ws_session_check_s > 0)
        h2o_timeout_link(loop->h2o_ctx.loop, &gw->check_timeout, &gw->check);
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

/* Drops the n oldest frames; an empty queue gives its memory back. */
static void ring_release(ws_conn_t *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        natter_frame_unref(c->ring[c->head]);
        c->head = (c->head + 1) & (c->cap - 1);
        c->len--;
    }
    if (c->len == 0 && c->ring != NULL) {
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

static void unlink_timer(h2o_timeout_entry_t *e)
{
    if (h2o_timeout_is_linked(e))
        h2o_timeout_unlink(e);
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
    unlink_timer(&c->grace);
    unlink_timer(&c->quiet);
    natter_count(&natter_m()->ws_open, (uint64_t)-1);
    atomic_fetch_sub(&gw->app->websockets, 1);
    natter_ephemeral_socket(gw->app, c->user_id, -1);
    c->next_dead = gw->dead;
    gw->dead = c;
    if (!h2o_timeout_is_linked(&gw->reap))
        h2o_timeout_link(gw->loop->h2o_ctx.loop, &gw->reap_timeout, &gw->reap);
}

static void conn_free(ws_conn_t *c)
{
    if (c->sock != NULL) {
        c->sock->data = NULL;
        h2o_socket_close(c->sock); /* a write in flight is abandoned */
    }
    c->inflight = 0;
    ring_release(c, c->len);
    natter_ws_parser_free(&c->parser);
    natter_buf_free(&c->ctrl);
    natter_buf_free(&c->ctrl_inflight);
    natter_buf_free(&c->held);
    free(c);
}

/* A socket that died while its 101 was being written (closed by a logout,
 * a full queue or shedding, and its grace over) is h2o's until on_upgraded:
 * that frees it. */
static void reap_dead(h2o_timeout_entry_t *entry)
{
    natter_gateway_t *gw = H2O_STRUCT_FROM_MEMBER(natter_gateway_t, reap, entry);
    while (gw->dead != NULL) {
        ws_conn_t *c = gw->dead;
        gw->dead = c->next_dead;
        if (c->upgrading)
            c->reaped = 1;
        else
            conn_free(c);
    }
}

/* ------------------------------------------------------------ writing */

static void on_written(h2o_socket_t *sock, const char *err);

/* Starts one write of the control bytes and as many queued frames as fit,
 * if the socket is idle. */
static void write_queue(ws_conn_t *c)
{
    h2o_iovec_t iov[WRITE_FRAMES_MAX + 1];
    size_t n = 0, bytes = 0;
    uint32_t k = 0;
    if (c->dead || c->sock == NULL || h2o_socket_is_writing(c->sock))
        return;
    if (c->ctrl.len > 0) {
        natter_buf_t t = c->ctrl_inflight;
        c->ctrl_inflight = c->ctrl;
        c->ctrl = t;
        c->ctrl.len = 0;
        iov[n++] = h2o_iovec_init(c->ctrl_inflight.p, c->ctrl_inflight.len);
        if (c->closing && !c->close_sent && c->drain_close_code == 0)
            c->close_in_write = 1; /* a close frame goes last: nothing follows it */
    }
    for (; !c->close_in_write && k < c->len && k < WRITE_FRAMES_MAX && (k == 0 || bytes < WRITE_BYTES_MAX); k++) {
        natter_frame_t *f = ring_at(c, k);
        iov[n++] = h2o_iovec_init(natter_frame_bytes(f), f->len);
        bytes += f->len;
    }
    if (n == 0)
        return;
    c->inflight = k;
    h2o_socket_write(c->sock, iov, n, on_written);
}

/* Queues a control frame for the next write. */
static void queue_control(ws_conn_t *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t frame[NATTER_WS_CONTROL_MAX + 4];
    natter_buf_append(&c->ctrl, frame, natter_ws_control_frame(frame, opcode, payload, len));
}

static void queue_close_frame(ws_conn_t *c, uint16_t code, const char *reason)
{
    uint8_t frame[NATTER_WS_CONTROL_MAX + 4];
    natter_buf_append(&c->ctrl, frame, natter_ws_close_frame(frame, code, reason));
}

static void on_written(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    ring_release(c, c->inflight);
    c->inflight = 0;
    c->ctrl_inflight.len = 0;
    if (c->ctrl_inflight.cap > CTRL_KEEP)
        natter_buf_free(&c->ctrl_inflight);
    if (err != NULL) {
        conn_dead(c);
        return;
    }
    if (c->close_in_write) {
        c->close_in_write = 0;
        c->close_sent = 1;
        /* both closes are said (or the client broke the protocol): the server closes TCP first (§7.1.1) */
        if (c->close_received || c->not_reading) {
            conn_dead(c);
            return;
        }
    }
    if (c->drain_close_code != 0 && c->len == 0) {
        queue_close_frame(c, c->drain_close_code, c->drain_close_reason);
        c->drain_close_code = 0;
    }
    write_queue(c);
}

static void grace_expired(h2o_timeout_entry_t *entry)
{
    ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(ws_conn_t, grace, entry);
    conn_dead(c);
}

/* Reads nothing more from the client: what it has sent and sends is dropped. */
static void stop_reading(ws_conn_t *c)
{
    c->not_reading = 1;
    if (c->sock != NULL)
        h2o_socket_read_stop(c->sock);
}

/* Closes now: what is queued and not being written is dropped, the close
 * frame goes next. stop: the client broke a rule, nothing more it sends is
 * read (stop_reading), and TCP closes once the frame is written. The
 * caller writes (write_queue or touch). */
static void close_now(ws_conn_t *c, uint16_t code, const char *reason, int stop)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    ring_drop_queued(c);
    queue_close_frame(c, code, reason);
    if (stop)
        stop_reading(c);
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
static void write_touched(natter_gateway_t *gw)
{
    while (gw->touched != NULL) {
        ws_conn_t *c = gw->touched;
        gw->touched = c->next_touched;
        c->touched = 0;
        write_queue(c);
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
        close_now(c, NATTER_WS_CLOSE_POLICY, "send queue full", 0);
        touch(c);
        return 0;
    }
    ring_push(c, f);
    return 1;
}

static void dispatch_send(ws_conn_t *c, const uint8_t *text, size_t len);

/* A send a worker had is answered: the sends held behind it go, in order,
 * until one of them goes to a worker in turn. */
static void release_held(ws_conn_t *c)
{
    while (c->on_worker == 0 && c->held_off < c->held.len && !c->closing && !c->dead) {
        uint32_t len;
        memcpy(&len, c->held.p + c->held_off, sizeof(len));
        const uint8_t *text = c->held.p + c->held_off + sizeof(len);
        c->held_off += sizeof(len) + len;
        dispatch_send(c, text, len);
    }
    if (c->held_off == c->held.len) {
        c->held.len = c->held_off = 0;
        if (c->held.cap > CTRL_KEEP)
            natter_buf_free(&c->held);
    }
}

void natter_gateway_send(natter_gateway_t *gw, uint64_t conn_id, natter_frame_t *frame, int answers)
{
    ws_conn_t *c = natter_u64map_get(&gw->conns, conn_id);
    if (c == NULL) { /* closed meanwhile */
        if (frame != NULL)
            natter_frame_unref(frame);
        return;
    }
    if (answers && c->pending > 0)
        c->pending--;
    if (frame != NULL)
        queue_frame(c, frame);
    if (answers == NATTER_GATEWAY_ANSWER_FROM_WORKER && c->on_worker > 0 && --c->on_worker == 0)
        release_held(c);
    write_touched(gw);
    write_queue(c);
}

/* Its session is over: nothing more is read or pushed. */
static void session_close(ws_conn_t *c, const char *reason)
{
    if (c->closing || c->dead)
        return;
    natter_count(&natter_m()->ws_session_closed, 1);
    close_now(c, NATTER_WS_CLOSE_SESSION_ENDED, reason, 1);
    touch(c);
}

static uint64_t now_ms(const natter_gateway_t *gw)
{
    return h2o_now(gw->loop->h2o_ctx.loop); /* wall clock, read once per loop turn */
}

static int session_expired(const ws_conn_t *c)
{
    return c->session_expires_ms > 0 && now_ms(c->gw) >= (uint64_t)c->session_expires_ms;
}

/* A session hash is a SHA-256: its first 8 bytes name it among the few
 * sessions a loop keeps (0 is the map's reserved key). */
static uint64_t ended_key(const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    uint64_t key;
    memcpy(&key, hash, sizeof(key));
    return key ? key : 1;
}

static void ended_drop_oldest(natter_gateway_t *gw)
{
    struct ended *e = &gw->ended_ring[gw->ended_head];
    if ((uint64_t)(uintptr_t)natter_u64map_get(&gw->ended, e->key) == e->at_ms)
        natter_u64map_del(&gw->ended, e->key);
    gw->ended_head = (gw->ended_head + 1) % ENDED_MAX;
    gw->ended_len--;
}

static void ended_remember(natter_gateway_t *gw, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    uint64_t now = now_ms(gw);
    if (gw->ended_ring == NULL)
        gw->ended_ring = xcalloc(ENDED_MAX, sizeof(*gw->ended_ring));
    while (gw->ended_len > 0 &&
           (gw->ended_len == ENDED_MAX || gw->ended_ring[gw->ended_head].at_ms + ENDED_KEEP_MS <= now))
        ended_drop_oldest(gw);
    struct ended *e = &gw->ended_ring[(gw->ended_head + gw->ended_len++) % ENDED_MAX];
    e->key = ended_key(hash);
    e->at_ms = now;
    natter_u64map_put(&gw->ended, e->key, (void *)(uintptr_t)now);
}

static int ended_lately(const ws_conn_t *c)
{
    uint64_t at = (uint64_t)(uintptr_t)natter_u64map_get(&c->gw->ended, ended_key(c->session_hash));
    return at != 0 && at + ENDED_KEEP_MS > now_ms(c->gw);
}

static void end_session(natter_gateway_t *gw, uint64_t user, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    ended_remember(gw, hash);
    for (ws_conn_t *c = natter_u64map_get(&gw->users, user); c != NULL; c = c->next_of_user)
        if (memcmp(c->session_hash, hash, NATTER_TOKEN_HASH_LEN) == 0) /* a recheck also finds the expired */
            session_close(c, session_expired(c) ? "session expired" : "session ended");
    write_touched(gw);
}

void natter_gateway_fanout(natter_gateway_t *gw, const natter_fanout_t *f)
{
    uint64_t delivered = 0, ephemeral = 0;
    if (f->ends_session) {
        end_session(gw, f->members[0], f->session_hash);
        return;
    }
    int64_t now = natter_now_ns();
    for (size_t i = 0; i < f->n; i++) {
        const natter_fanout_item_t *it = &f->items[i];
        int queued = 0;
        for (uint32_t m = 0; m < it->nmembers; m++) {
            uint64_t user = f->members[it->first_member + m];
            if (user == it->skip_user)
                continue;
            for (ws_conn_t *c = natter_u64map_get(&gw->users, user); c != NULL; c = c->next_of_user) {
                if (!queue_frame(c, natter_frame_ref(it->frame)))
                    continue;
                queued = 1;
                if (it->ephemeral)
                    ephemeral++;
                else
                    delivered++;
                touch(c);
            }
        }
        /* once per message and loop that queued it (every loop sees every
         * batch); wall clocks of two nodes may disagree: never below zero */
        if (queued && it->ingest_ns != 0)
            natter_hist_observe(&natter_m()->end_to_end, now > it->ingest_ns ? (uint64_t)(now - it->ingest_ns) : 0);
    }
    write_touched(gw);
    natter_count(&natter_m()->messages_delivered, delivered);
    natter_count(&natter_m()->ephemeral_delivered, ephemeral);
}

/* ------------------------------------------------------------ sessions rechecked */

/* The loop's open sessions, looked up in the store by a worker: one gone
 * (logged out, expired) is ended on every loop as its logout's record
 * would have ended it. The job owns copies; it gives up for this round
 * when the store does not answer (sockets are not closed for an outage),
 * when the node stops, and once its interval is over. */
typedef struct {
    natter_job_t work;
    natter_app_t *app;
    uint64_t deadline_ns;
    size_t n, next;
    struct session_ref {
        uint64_t user;
        uint8_t hash[NATTER_TOKEN_HASH_LEN];
    } *refs;
} session_check_t;

static void check_run(natter_job_t *job)
{
    session_check_t *j = (session_check_t *)job;
    natter_app_t *app = j->app;
    size_t stop = j->next + CHECK_CHUNK < j->n ? j->next + CHECK_CHUNK : j->n;
    int rc = NATTER_OK;
    for (; j->next < stop && rc != NATTER_EUNAVAIL; j->next++) {
        const struct session_ref *r = &j->refs[j->next];
        uint64_t user;
        int64_t ends;
        if (natter_app_stopping(app) || natter_mono_ns() >= j->deadline_ns)
            rc = NATTER_EUNAVAIL;
        else if ((rc = natter_store_session_user_id(app->store, r->hash, natter_now_ms(), &user, &ends)) ==
                 NATTER_ENOTFOUND)
            natter_fanout_dispatch(app, natter_fanout_session_end(app, r->user, r->hash));
        else if (rc != NATTER_OK)
            rc = NATTER_EUNAVAIL; /* the store did not answer: no socket is closed for that */
    }
    if (rc != NATTER_EUNAVAIL && j->next < j->n && natter_workers_submit(&app->workers, &j->work) == NATTER_OK)
        return;
    free(j->refs);
    free(j);
}

static int hash_known(const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    for (size_t i = 0; i < NATTER_TOKEN_HASH_LEN; i++)
        if (hash[i] != 0)
            return 1;
    return 0; /* a ticket kept by a node older than store version 8 */
}

static void check_sessions(h2o_timeout_entry_t *entry)
{
    natter_gateway_t *gw = H2O_STRUCT_FROM_MEMBER(natter_gateway_t, check, entry);
    natter_app_t *app = gw->app;
    h2o_timeout_link(gw->loop->h2o_ctx.loop, &gw->check_timeout, &gw->check);
    if (gw->conns.len == 0 || natter_app_stopping(app))
        return;
    natter_u64map_t seen;
    natter_vec_t refs;
    natter_u64map_init(&seen);
    natter_vec_init(&refs, sizeof(struct session_ref));
    /* a round its job cuts short (its interval over, the workers' queue
     * full) leaves its tail unchecked: each round starts somewhere else */
    size_t from = (size_t)natter_mix64(natter_mono_ns());
    for (size_t k = 0; k < gw->conns.cap; k++) {
        size_t i = (from + k) & (gw->conns.cap - 1);
        const ws_conn_t *c = gw->conns.vals[i];
        if (gw->conns.keys[i] == 0 || c->closing || !hash_known(c->session_hash))
            continue;
        uint64_t key = ended_key(c->session_hash);
        if (natter_u64map_get(&seen, key) != NULL)
            continue;
        natter_u64map_put(&seen, key, (void *)c);
        struct session_ref *r = natter_vec_push(&refs);
        r->user = c->user_id;
        memcpy(r->hash, c->session_hash, NATTER_TOKEN_HASH_LEN);
    }
    natter_u64map_free(&seen);
    if (refs.len == 0) {
        natter_vec_free(&refs);
        return;
    }
    session_check_t *j = xcalloc(1, sizeof(*j));
    j->work.run = check_run;
    j->app = app;
    j->deadline_ns = natter_mono_ns() + (uint64_t)app->cfg.ws_session_check_s * 1000000000u;
    j->n = refs.len;
    j->refs = refs.items; /* the vector's array is the job's now */
    if (natter_workers_submit(&app->workers, &j->work) != NATTER_OK) { /* busy: the next round */
        free(j->refs);
        free(j);
    }
}

/* ------------------------------------------------------------ heartbeat */

static void quiet_expired(h2o_timeout_entry_t *entry)
{
    ws_conn_t *c = H2O_STRUCT_FROM_MEMBER(ws_conn_t, quiet, entry);
    natter_gateway_t *gw = c->gw;
    if (c->closing) /* its grace timer will end it */
        return;
    if (session_expired(c)) {
        session_close(c, "session expired");
        write_touched(gw);
        return;
    }
    if (c->pinged) {
        natter_count(&natter_m()->ws_ping_timeouts, 1);
        close_now(c, NATTER_WS_CLOSE_GOING_AWAY, "ping timeout", 1);
        write_queue(c);
        return;
    }
    c->pinged = 1;
    queue_control(c, NATTER_WS_OP_PING, NULL, 0);
    h2o_timeout_link(gw->loop->h2o_ctx.loop, &gw->pong_timeout, &c->quiet);
    write_queue(c);
}

/* The client said something: silent from now on. */
static void heard_from(ws_conn_t *c)
{
    c->pinged = 0;
    unlink_timer(&c->quiet);
    h2o_timeout_link(c->gw->loop->h2o_ctx.loop, &c->gw->quiet_timeout, &c->quiet);
}

/* ------------------------------------------------------------ receiving */

static void answer_now(ws_conn_t *c, natter_api_job_t *job)
{
    natter_http_answer(c->gw->loop, job);
}

/* A "send" frame, its turn come: on this loop when the caches know enough,
 * else a worker's (and the socket's later sends wait for its answer). */
static void dispatch_send(ws_conn_t *c, const uint8_t *text, size_t len)
{
    natter_gateway_t *gw = c->gw;
    natter_route_t route = {.action = NATTER_A_WS_SEND};
    natter_api_job_t *job = natter_api_job_new(gw->loop, &route);
    job->ws_user_id = c->user_id;
    job->ws_conn_id = c->id;
    if (natter_app_stopping(gw->app)) { /* as HTTP answers 503 then: the client resends elsewhere */
        natter_post_refuse(job, (const char *)text, len, 503, "unavailable", "the server is shutting down");
        answer_now(c, job);
        return;
    }
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
    job->ws_from_worker = 1;
    if (natter_workers_submit(&gw->app->workers, &job->work) != NATTER_OK) {
        natter_count(&natter_m()->busy_rejected, 1);
        job->ws_from_worker = 0;
        natter_api_fail(job, 503, "busy", "the server is busy, try again");
        answer_now(c, job);
        return;
    }
    c->on_worker++;
}

/* A "send" frame: dispatched now, or held while an earlier send of this
 * socket is on a worker (so that one socket's sends reach the log in the
 * order they were sent). Typing frames need no order and go at once. */
static void on_send(ws_conn_t *c, const uint8_t *text, size_t len)
{
    natter_gateway_t *gw = c->gw;
    if (c->pending >= gw->app->cfg.ws_pending) {
        natter_count(&natter_m()->ws_flood_closed, 1);
        close_now(c, NATTER_WS_CLOSE_POLICY, "too many frames in flight", 1);
        return;
    }
    c->pending++;
    natter_frame_t *reply;
    switch (natter_ephemeral_typing(gw->loop, c->user_id, c->id, (const char *)text, len, &reply)) {
    case NATTER_TYPING_DONE:
        c->pending--;
        if (reply != NULL)
            queue_frame(c, reply);
        return;
    case NATTER_TYPING_WORKER: /* answered as a send is: through its job */
        return;
    case NATTER_TYPING_NOT:
        break;
    }
    if (c->on_worker > 0) {
        uint32_t n = (uint32_t)len; /* at most --max-body */
        natter_buf_append(&c->held, &n, sizeof(n));
        natter_buf_append(&c->held, text, len);
        return;
    }
    dispatch_send(c, text, len);
}

static void on_close_frame(ws_conn_t *c, const natter_ws_event_t *ev)
{
    c->close_received = 1;
    stop_reading(c);
    if (c->close_sent) { /* the answer to ours: done */
        conn_dead(c);
        return;
    }
    if (!c->closing) { /* echo the client's code (§5.5.1); what was queued is not sent after a close */
        c->closing = 1;
        c->drain_close_code = 0;
        ring_drop_queued(c);
        if (ev->code == NATTER_WS_CLOSE_NO_STATUS)
            queue_control(c, NATTER_WS_OP_CLOSE, NULL, 0);
        else
            queue_close_frame(c, ev->code, "");
        h2o_timeout_link(c->gw->loop->h2o_ctx.loop, &c->gw->grace_timeout, &c->grace);
    }
}

/* One event from the parser; 0 to go on reading, -1 to stop. */
static int on_event(ws_conn_t *c, const natter_ws_event_t *ev)
{
    switch (ev->kind) {
    case NATTER_WS_TEXT:
        if (!c->closing)
            on_send(c, ev->data, ev->len);
        return 0;
    case NATTER_WS_BINARY:
        if (!c->closing) {
            static const char err[] = "{\"type\":\"error\",\"error\":{\"code\":\"invalid_request\","
                                      "\"message\":\"send JSON text frames\"}}";
            queue_frame(c, natter_frame_text(err, sizeof(err) - 1));
        }
        return 0;
    case NATTER_WS_PING:
        if (c->ctrl.len > CTRL_BYTES_MAX) { /* pings from a client that does not read our pongs */
            if (c->closing) { /* closed for something else while they piled up: read no more */
                stop_reading(c);
                return -1;
            }
            natter_count(&natter_m()->ws_slow_closed, 1);
            close_now(c, NATTER_WS_CLOSE_POLICY, "send queue full", 1);
            return -1;
        }
        if (!c->closing)
            queue_control(c, NATTER_WS_OP_PONG, ev->data, ev->len);
        return 0;
    case NATTER_WS_PONG:
    case NATTER_WS_FRAME:
        return 0;
    case NATTER_WS_CLOSE:
        on_close_frame(c, ev);
        return -1;
    case NATTER_WS_FAIL:
        natter_count(&natter_m()->ws_protocol_closed, 1);
        if (c->closing) /* ours is out already: just stop */
            stop_reading(c);
        else
            close_now(c, ev->code, ev->reason, 1);
        return -1;
    case NATTER_WS_NEED_MORE:
        break;
    }
    return -1;
}

/* Gives back the input buffer when it holds nothing (an idle socket keeps
 * none; the next read takes one from the thread's recycled buffers). */
static void release_input(h2o_socket_t *sock)
{
    if (sock->input->size == 0 && sock->input->capacity > 0) {
        h2o_buffer_dispose(&sock->input);
        h2o_buffer_init(&sock->input, &h2o_socket_buffer_prototype);
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    if (err != NULL) {
        conn_dead(c);
        return;
    }
    if (session_expired(c))
        session_close(c, "session expired");
    while (!c->dead && !c->not_reading && sock->input->size > 0) {
        natter_ws_event_t ev;
        size_t used;
        natter_ws_event_kind_t kind =
            natter_ws_parse(&c->parser, (uint8_t *)sock->input->bytes, sock->input->size, &used, &ev);
        if (kind == NATTER_WS_NEED_MORE)
            break;
        heard_from(c);
        int go_on = on_event(c, &ev) == 0;
        if (used > 0)
            h2o_buffer_consume(&sock->input, used);
        if (!go_on)
            break;
    }
    if (c->not_reading && !c->dead)
        h2o_buffer_consume(&sock->input, sock->input->size); /* ignored from here on */
    if (!c->dead)
        release_input(sock);
    write_touched(c->gw);
    write_queue(c);
}

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    ws_conn_t *c = data;
    c->upgrading = 0;
    if (c->dead) { /* ended before its socket came: touches nothing of the gateway (gone, at shutdown) */
        if (sock != NULL)
            h2o_socket_close(sock);
        if (c->reaped)
            conn_free(c);
        return;
    }
    if (sock == NULL) { /* the 101 could not be written */
        conn_dead(c);
        return;
    }
    c->sock = sock;
    sock->data = c;
    h2o_buffer_consume(&sock->input, reqsize);
    heard_from(c);
    if (ended_lately(c)) { /* its logout came while the upgrade was on its way: nothing it sends is read */
        session_close(c, "session ended"); /* (or closed it already, before it had a socket to write to) */
    } else {
        h2o_socket_read_start(sock, on_read);
        if (sock->input->size > 0) /* frames sent right behind the handshake */
            on_read(sock, NULL);
        else
            release_input(sock);
    }
    write_queue(c);
}

/* Sec-WebSocket-Accept (§4.2.2): base64 of SHA-1 of the key and the GUID. */
static void accept_key(char dst[29], const char *client_key)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t src[24 + sizeof(guid) - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(src, client_key, 24);
    memcpy(src + 24, guid, sizeof(guid) - 1);
    SHA1(src, sizeof(src), digest);
    h2o_base64_encode(dst, digest, sizeof(digest), 0);
    dst[28] = '\0';
}

static ws_conn_t *conn_new(natter_gateway_t *gw, const natter_ticket_t *session)
{
    uint64_t user_id = session->user_id;
    ws_conn_t *c = xcalloc(1, sizeof(*c));
    c->gw = gw;
    c->id = gw->next_id++; /* unique on this loop: jobs name their loop and their socket */
    c->user_id = user_id;
    memcpy(c->session_hash, session->session_hash, NATTER_TOKEN_HASH_LEN);
    c->session_expires_ms = session->session_expires_at_ms;
    c->grace.cb = grace_expired;
    c->quiet.cb = quiet_expired;
    natter_ws_parser_init(&c->parser, gw->app->cfg.max_body);
    c->next_of_user = natter_u64map_get(&gw->users, user_id);
    natter_u64map_put(&gw->users, user_id, c);
    natter_u64map_put(&gw->conns, c->id, c);
    natter_count(&natter_m()->ws_open, 1);
    atomic_fetch_add(&gw->app->websockets, 1);
    natter_ephemeral_socket(gw->app, user_id, +1);
    return c;
}

void natter_gateway_accept(natter_gateway_t *gw, h2o_req_t *req, const char *client_key,
                           const natter_ticket_t *session)
{
    ws_conn_t *c = conn_new(gw, session);
    char key[29];
    accept_key(key, client_key);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, key,
                          strlen(key));
    c->upgrading = 1;
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, c);
}

void natter_gateway_adopt(natter_gateway_t *gw, h2o_socket_t *sock, const natter_ticket_t *session)
{
    on_upgraded(conn_new(gw, session), sock, 0);
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
    close_now(c, NATTER_WS_CLOSE_TRY_AGAIN, "server overloaded: catch up from history", 0);
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
    write_touched(gw);
}

/* Closes once what is queued is written. */
static void close_after_drain(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (c->closing || c->dead)
        return;
    c->closing = 1;
    if (c->len == 0) {
        queue_close_frame(c, code, reason);
    } else {
        c->drain_close_code = code;
        snprintf(c->drain_close_reason, sizeof(c->drain_close_reason), "%s", reason);
    }
    write_queue(c);
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
    unlink_timer(&gw->reap);
    unlink_timer(&gw->check);
    /* the loop runs once more after this (dispose): its timer list must not
     * lead into the freed gateway */
    h2o_loop_t *loop = gw->loop->h2o_ctx.loop;
    h2o_timeout_dispose(loop, &gw->reap_timeout);
    h2o_timeout_dispose(loop, &gw->grace_timeout);
    h2o_timeout_dispose(loop, &gw->quiet_timeout);
    h2o_timeout_dispose(loop, &gw->pong_timeout);
    h2o_timeout_dispose(loop, &gw->check_timeout);
    natter_u64map_free(&gw->users);
    natter_u64map_free(&gw->conns);
    natter_u64map_free(&gw->ended);
    free(gw->ended_ring);
    free(gw);
}
