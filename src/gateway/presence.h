/*
 * Presence: who is online, as one node knows it. A user is online while at
 * least one of their WebSockets is open on any node.
 *
 * This node's part it counts itself (natter_presence_local, from its
 * loops); when a user's last socket here closes, they stay online here for
 * a grace (5 s), so a page reload does not flicker. The other nodes' parts
 * come through the log's ephemeral path: a node says "up" when a user's
 * first socket there opened, "down" when the last one's grace ran out, and
 * every heartbeat names every user online there. Each claim a node makes
 * holds for ttl (--ws-ping-timeout) unless renewed: a node that dies stops
 * renewing, and its users go offline everywhere within ttl.
 *
 * Not thread-safe: the ephemeral thread owns it (gateway/ephemeral.c).
 * Times are the caller's monotonic milliseconds. Memory: one entry per
 * user online (or announced) somewhere, each with at most
 * NATTER_PRESENCE_NODES_MAX other nodes' claims.
 *
 * Cost: a tick looks at the users whose sockets or claims changed since
 * the last one; what time alone changes (a grace over, a claim run out) it
 * finds by walking every user, once per NATTER_PRESENCE_SWEEP_MS — so a
 * grace or a claim ends up to that much late, and the walk costs O(users)
 * a second, not per tick.
 */
#ifndef NATTER_PRESENCE_H
#define NATTER_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/u64map.h"
#include "core/vec.h"

#define NATTER_PRESENCE_NODES_MAX 8   /* other nodes' claims kept per user; more: the one expiring first goes */
#define NATTER_PRESENCE_SWEEP_MS 1000 /* how often a tick walks every user */

typedef struct natter_presence {
    natter_u64map_t users; /* user id -> struct presence_entry */
    natter_vec_t dirty;    /* users whose sockets or claims changed since the last tick */
    uint32_t self;         /* this node's id: its own records coming back are not claims */
    int64_t grace, ttl;
    int64_t sweep, next_sweep; /* walk every user every sweep ms (tests set 0: every tick) */
    size_t sockets;        /* this node's open sockets, every user */
} natter_presence_t;

/* A user whose online state changed, to tell the members of their chats. */
typedef struct natter_presence_change {
    uint64_t user;
    int online;
} natter_presence_change_t;

void natter_presence_init(natter_presence_t *p, uint32_t self, int64_t grace, int64_t ttl);
void natter_presence_free(natter_presence_t *p);
/* A socket of user opened here (+1) or closed (-1). */
void natter_presence_local(natter_presence_t *p, uint64_t user, int delta, int64_t now);
/* Node's claim that user is online there (up: an "up" or a heartbeat,
 * holding for ttl from now), or no longer (a "down"). A claim of this node
 * itself is ignored. */
void natter_presence_remote(natter_presence_t *p, uint32_t node, uint64_t user, int up, int64_t now);
/* Brings everything to now. Appends to changes (natter_presence_change_t)
 * each user whose online state is not the one last reported here, and
 * reports it; to ups and downs (uint64_t) each user whose state on this
 * node flipped, for the other nodes; forgets users offline everywhere. */
void natter_presence_tick(natter_presence_t *p, int64_t now, natter_vec_t *changes, natter_vec_t *ups,
                          natter_vec_t *downs);
/* The users online on this node now (uint64_t items), for a heartbeat. */
void natter_presence_here(natter_presence_t *p, int64_t now, natter_vec_t *out);
/* 1 when user was online at the last tick. */
int natter_presence_online(const natter_presence_t *p, uint64_t user);

#endif
