/*
 * One identity per node. Every id a node issues carries its --node-id, and
 * its Kafka store consumer's static membership is named after it: two live
 * nodes with one id would issue the same ids (one message silently
 * overwriting another) and fence each other's consumer in a loop. So while
 * it runs a node holds its id:
 *
 *   in its data dir    an exclusive lock on <data-dir>/node-<id>.lock, which
 *                      the kernel drops the moment the process dies; and a
 *                      holder token in <data-dir>/node-<id>.holder, made once,
 *                      that names this node;
 *   in the store       a lease (node id → holder) that lives --node-lease-ttl
 *                      ms and is renewed every third of that (store.h
 *                      node_lease; Cassandra: a lightweight transaction with
 *                      a TTL).
 *
 * At start a node takes the lease. Another holder's live lease is waited on
 * for one TTL: a dead node's lease runs out within it and is taken; a live
 * node renews it, and this one refuses to start, saying why. A node
 * restarted on its data dir has the same holder token and takes its own
 * lease back at once. A lease found taken by another holder while running
 * (this node could not renew it for a whole TTL, and another node with the
 * same id started meanwhile) stops the node: it drains and exits.
 */
#ifndef NATTER_LEASE_H
#define NATTER_LEASE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "natter.h"

#define NATTER_LEASE_HOLDER_MAX 64

typedef struct natter_lease {
    natter_app_t *app;
    int lock_fd;
    char holder[NATTER_LEASE_HOLDER_MAX + 1];
    int in_store;          /* the store keeps leases (node_lease) */
    atomic_int held;       /* renewed within the TTL */
    atomic_int lost;       /* another holder has it now */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
} natter_lease_t;

/* Takes the node's id (the data dir's lock, then the store's lease, waiting
 * up to one TTL on another holder) and starts renewing it. 0, or NATTER_E*
 * with a reason in err (NATTER_ECONFLICT: another live node holds it). */
int natter_lease_take(natter_lease_t *l, natter_app_t *app, char *err, size_t errlen);
/* Stops renewing and gives the lease and the lock back. */
void natter_lease_release(natter_lease_t *l);
/* 1 while this node's lease is current (for /readyz). */
int natter_lease_held(natter_lease_t *l);

#endif
