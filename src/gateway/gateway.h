/*
 * The gateway: every WebSocket of this node, by user, and the fan-out of
 * stored messages to them. Lives on the loop thread and nowhere else.
 *
 * Each socket has a bounded send queue (wslay's, --ws-queue messages). A
 * reader that lets it fill is sent close 1008 "send queue full" and dropped
 * a few seconds later whether or not it read that: its memory is bounded by
 * the queue, and the client catches up from history.
 */
#ifndef NATTER_GATEWAY_H
#define NATTER_GATEWAY_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>

#include "core/vec.h"

struct natter_app;
typedef struct natter_gateway natter_gateway_t;

/* One batch of messages to push, built by the store consumer, consumed by
 * the loop. Each item's frame is the complete text of the push frame. */
typedef struct natter_fanout_item {
    char *frame;
    size_t len;
    int64_t ingest_ns; /* wall clock, see natter_msg_t */
    natter_vec_t members; /* uint64_t user ids */
} natter_fanout_item_t;

typedef struct natter_fanout {
    h2o_multithread_message_t super;
    size_t n;
    natter_fanout_item_t items[];
} natter_fanout_t;

natter_gateway_t *natter_gateway_new(struct natter_app *app);
void natter_gateway_free(natter_gateway_t *gw);

/* Upgrades an authenticated request to a WebSocket of user_id. */
void natter_gateway_accept(natter_gateway_t *gw, h2o_req_t *req, const char *client_key, uint64_t user_id);
/* Sends a text frame to one socket, if it is still open. */
void natter_gateway_send(natter_gateway_t *gw, uint64_t conn_id, const char *text, size_t len);
/* The h2o receiver callback for natter_fanout_t messages. */
void natter_gateway_on_fanout(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);
/* Frees a fan-out batch (also for batches that never reached the loop). */
void natter_fanout_free(natter_fanout_t *f);
/* Sends close (code, reason) to every socket; returns how many are still open. */
size_t natter_gateway_close_all(natter_gateway_t *gw, uint16_t code, const char *reason);
/* Drops every socket at once, whatever it has queued. */
void natter_gateway_drop_all(natter_gateway_t *gw);

#endif
