/*
 * The ephemeral path: typing indicators, presence and read receipts. They
 * reach every node (through the log's ephemeral path, log.h) and are never
 * stored.
 *
 *   typing   a socket's {"type":"typing","chat_id"} is checked on its loop
 *            (a member? at most one per user and chat every 2 s from this
 *            loop) and published; every node's ephemeral thread pushes
 *            {"type":"typing","chat_id","user_id"} to the chat's other
 *            members, again at most one per user and chat every 2 s.
 *   reads    a worker that moved a read marker publishes it; every node
 *            pushes {"type":"read","chat_id","user_id","message_id"} to
 *            the chat's other members.
 *   sessions a logout is published; every node closes the WebSockets opened
 *            with that session (4001).
 *   presence the loops report each socket opened and closed; the ephemeral
 *            thread keeps who is online (gateway/presence.h), pushes
 *            {"type":"presence","user_id","online"} to the members of the
 *            chats a user shares when that changes, and, when other nodes
 *            share the log, tells them what changed here and sends a
 *            heartbeat of who is online here every --ws-ping-timeout/4.
 *
 * One thread (natter-ephemeral) owns presence and the delivery throttle;
 * each loop owns its own typing throttle; workers read who is online from
 * a sharded copy the thread keeps. Nothing here is on the message path.
 */
#ifndef NATTER_EPHEMERAL_H
#define NATTER_EPHEMERAL_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/frame.h"

struct natter_app;
struct natter_loop;
struct natter_api_job;
typedef struct natter_ephemeral natter_ephemeral_t;

#define NATTER_TYPING_WINDOW_MS 2000
#define NATTER_PRESENCE_GRACE_MS 5000

/* Main thread, before the loops start: the state (app->ephemeral). */
natter_ephemeral_t *natter_ephemeral_new(struct natter_app *app);
/* Main thread, once the loops run: starts the ephemeral thread. */
void natter_ephemeral_start(natter_ephemeral_t *e);
/* Main thread, draining: stops the thread (before the log shuts down). */
void natter_ephemeral_stop(natter_ephemeral_t *e);
/* Main thread, when no loop or worker runs any more. */
void natter_ephemeral_free(natter_ephemeral_t *e);

/* Any loop: a WebSocket of user opened (delta +1) or went (-1). */
void natter_ephemeral_socket(struct natter_app *app, uint64_t user, int delta);
/* Any thread: the user's WebSockets open on this node now. */
size_t natter_ephemeral_sockets_here(struct natter_app *app, uint64_t user);

typedef enum {
    NATTER_TYPING_NOT,    /* not a typing frame: a send, for post.c */
    NATTER_TYPING_DONE,   /* handled here; *reply, when set, is an error frame for the socket */
    NATTER_TYPING_WORKER, /* given to a worker (membership unknown here): its answer comes as a job's */
} natter_typing_result_t;

/* On a loop: a text frame [text, text+len) from socket conn_id of user. */
natter_typing_result_t natter_ephemeral_typing(struct natter_loop *loop, uint64_t user, uint64_t conn_id,
                                               const char *text, size_t len, natter_frame_t **reply);
/* On a worker: NATTER_A_WS_TYPING, a typing frame whose membership the
 * loop did not know: checks it, publishes it; answers an error, or nothing. */
void natter_ephemeral_typing_run(struct natter_api_job *job);
/* On a worker: user read chat up to message (the marker moved). */
void natter_ephemeral_read(struct natter_app *app, uint64_t chat, uint64_t user, uint64_t message);
/* On a worker: user logged out the session whose token hash is given; every
 * node closes the sockets opened with it (gateway.h). */
void natter_ephemeral_session_end(struct natter_app *app, uint64_t user, const uint8_t *session_hash);
/* On a worker: by added user to chat ("added"), removed user from it
 * ("removed") or created it with its members (user is by, "created"); the
 * store has the change. Every node drops the chat's cached members and
 * pushes {"type":"membership"} to the chat's members and to user. */
void natter_ephemeral_membership(struct natter_app *app, uint64_t chat, uint64_t by, uint64_t user, const char *op);
/* Any thread: 1 when user is online, as this node last knew. */
int natter_ephemeral_online(struct natter_app *app, uint64_t user);

#endif
