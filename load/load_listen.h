/* load_listen — a listener set: the WebSockets of listeners [from, to) of a
 * run, on an epoll of its own, in whichever thread or process runs it.
 *
 * It opens the sockets a window at a time (so a server's accept backlog is
 * not flooded), each from a source address of its own block of 127.0.0.0/8
 * when the target is on loopback (LOAD_LISTEN_PER_SOURCE listeners per
 * address, from 127.0.0.2 up), retrying a failed open with a backoff. It
 * reads every push and reports it. When an open socket closes (a slow
 * reader's 1008, a heartbeat timeout, a node going away), a dialect with
 * history gets it reopened after a short backoff and, once open, each of
 * the listener's chats read from history after the last id the listener
 * saw, page by page while more follow. Without history, the listener is
 * done.
 *
 * Everything it learns leaves as records (load_wire.h) through emit, in the
 * order the sockets saw it; the set itself judges nothing. It reads the
 * run's users, listeners, chats and targets and never writes them.
 */
#ifndef NATTER_LOAD_LISTEN_H
#define NATTER_LOAD_LISTEN_H

#include <stddef.h>

#include "load_run.h"

enum {
    LOAD_LISTEN_PER_SOURCE = 10000, /* well under the ~28k ports of one source/destination pair */
    LOAD_LISTEN_OPEN_TRIES = 8,     /* failed opens before a listener that never opened gives up */
};

typedef struct load_lset load_lset_t;
typedef void (*load_emit_fn)(void *arg, const load_rec_t *r);

/* A set over listeners [from, to) of L; opens nothing until the first
 * turn. Its https:// connections use tls, the TLS context of the process
 * it runs in (borrowed; NULL when every target is plain). emit(arg, r) is
 * called from load_lset_turn only. Returns NULL when no epoll could be
 * made. */
load_lset_t *load_lset_new(const load_t *L, size_t from, size_t to, load_tls_t *tls, load_emit_fn emit, void *arg);
/* Registers another fd on the set's epoll (its owner's wake-up or control
 * pipe): io->on_event is then called from load_lset_turn. 0 or -errno. */
int load_lset_watch(load_lset_t *s, load_io_t *io);
/* Waits up to timeout_ms for sockets and timers, and handles what came. */
void load_lset_turn(load_lset_t *s, int timeout_ms);
/* Closes every socket and connection without a record, frees the set. */
void load_lset_free(load_lset_t *s);

#endif
