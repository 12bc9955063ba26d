/*
 * The gateway: one event loop's WebSockets, by user, and the fan-out of
 * pushes to them. Each loop has its own and is the only thread that
 * touches it.
 *
 * Each socket has a bounded send queue of shared frames (--ws-queue). A
 * reader that lets it fill is sent close 1008 "send queue full" and dropped
 * a few seconds later whether or not it read that: its memory is bounded by
 * the queue, and the client catches up from history. A client that sends
 * more frames than it has answers pending (--ws-pending) is closed with
 * 1008 the same way.
 */
#ifndef NATTER_GATEWAY_H
#define NATTER_GATEWAY_H

#include <h2o.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/message.h"
#include "gateway/frame.h"
#include "store/store.h"

struct natter_app;
struct natter_loop;
typedef struct natter_gateway natter_gateway_t;

/* One batch of pushes, built once by the thread that read the messages from
 * the log and shared by every loop: each loop pushes every item to its own
 * sockets of the item's members, then drops its reference; the last one
 * frees the batch. Sockets hold references to the frames, not the batch. */
typedef struct natter_fanout_item {
    natter_frame_t *frame; /* the push; one reference is the batch's */
    int64_t ingest_ns;     /* wall clock, see natter_msg_t; 0: not a message, not measured */
    uint32_t first_member, nmembers; /* the item's members in natter_fanout_t.members */
    uint64_t skip_user;    /* a member not pushed to (the typist of a typing push), or 0 */
    int ephemeral;         /* a typing, read or presence push (counted apart from messages) */
} natter_fanout_item_t;

struct natter_fanout;
typedef struct natter_fanout_link {
    h2o_multithread_message_t super; /* in one loop's queue */
    struct natter_fanout *batch;
} natter_fanout_link_t;

typedef struct natter_fanout {
    _Atomic uint32_t refs;
    size_t n;
    natter_fanout_item_t *items;
    uint64_t *members;           /* user ids */
    natter_fanout_link_t *links; /* one per loop */
    /* Not pushes: a session ended (logout). Each loop closes the sockets of
     * items[0]'s one member that were opened with that session. */
    int ends_session;
    uint8_t session_hash[NATTER_TOKEN_HASH_LEN];
} natter_fanout_t;

/* fanout.c, on the thread that read the messages: the batch's pushes (members
 * from the members cache; a message whose members cannot be had is not
 * pushed: it is stored, clients catch up from history), one reference.
 * Each record makes its kind's frame: a message "message", an edit
 * "message_edited", a delete "message_deleted", a reaction "reaction";
 * ephemeral kinds are left out (the ephemeral path pushes those). */
natter_fanout_t *natter_fanout_build(struct natter_app *app, const natter_msg_t *head);
/* A batch of one push (the frame's reference moves to it) to the given
 * members but skip_user (0: none); one reference. For the ephemeral path. */
natter_fanout_t *natter_fanout_one(struct natter_app *app, natter_frame_t *frame, const uint64_t *members, size_t n,
                                   uint64_t skip_user);
/* A batch that ends a session of user (see natter_fanout_t); one reference. */
natter_fanout_t *natter_fanout_session_end(struct natter_app *app, uint64_t user,
                                           const uint8_t session_hash[NATTER_TOKEN_HASH_LEN]);
/* Hands the batch to every loop (each takes its own reference, or sheds it
 * when its queue is full, see loop.h) and drops the caller's reference. */
void natter_fanout_dispatch(struct natter_app *app, natter_fanout_t *f);
void natter_fanout_unref(natter_fanout_t *f);

/* gateway_ws.c, on the gateway's loop only. */
natter_gateway_t *natter_gateway_new(struct natter_loop *loop);
/* Drops every socket at once and frees the gateway. */
void natter_gateway_free(natter_gateway_t *gw);
/* Upgrades an authenticated request to a WebSocket of session->user_id.
 * The socket ends with its session: closed 4001 "session ended" when a
 * logout of it reaches this node (a session-end batch), "session expired"
 * once its end has passed (checked when the client sends and at each
 * heartbeat). A session of all-zero hash and no end (a ticket kept by an
 * older node) is not checked. */
void natter_gateway_accept(natter_gateway_t *gw, h2o_req_t *req, const char *client_key,
                           const natter_ticket_t *session);
/* Makes a WebSocket of session->user_id on a connected socket of this loop
 * whose opening handshake is done, what natter_gateway_accept does once
 * its 101 is written: in-process tests drive the gateway over a socketpair
 * so. */
void natter_gateway_adopt(natter_gateway_t *gw, h2o_socket_t *sock, const natter_ticket_t *session);
/* Queues frame on one socket and writes it; the caller's reference moves to
 * the socket (a socket gone or closing drops it). answers: 0 a push;
 * NATTER_GATEWAY_ANSWER the frame answers a send from that socket;
 * NATTER_GATEWAY_ANSWER_FROM_WORKER it answers a send a worker had, and the
 * socket's sends held behind it go on. frame NULL: an answer with nothing
 * to send. */
#define NATTER_GATEWAY_ANSWER 1
#define NATTER_GATEWAY_ANSWER_FROM_WORKER 2
void natter_gateway_send(natter_gateway_t *gw, uint64_t conn_id, natter_frame_t *frame, int answers);
/* Pushes a batch to this loop's sockets, in batch order, then writes each
 * touched socket once (or, a session-end batch, closes that session's). */
void natter_gateway_fanout(natter_gateway_t *gw, const natter_fanout_t *f);
/* Closes (1013) every socket of these users: this loop had to drop pushes
 * meant for them. all: every socket of this loop. */
void natter_gateway_shed(natter_gateway_t *gw, const uint64_t *users, size_t n, int all);
/* Sends close (code, reason) to every socket once what it has queued is
 * written; returns how many are still open. */
size_t natter_gateway_close_all(natter_gateway_t *gw, uint16_t code, const char *reason);

#endif
