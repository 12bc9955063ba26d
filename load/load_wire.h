/* load_wire — what a listener set reports, one record per event, and the
 * fixed binary form a listener process writes it in to its parent (one
 * pipe per child; the parent decodes and applies them in order, so each
 * listener's events reach load_track in the order its socket saw them).
 *
 * A record is LOAD_WIRE_SIZE bytes, little-endian:
 *
 *   offset  size  field
 *        0     1  kind (load_rec_kind)
 *        1     3  zero
 *        4     4  listener index
 *        8     8  a: PUSH/HISTORY the seq; OPEN 1 for a reconnect, else 0;
 *                 DOWN/FAILED/CATCHUP_FAILED the close code or HTTP
 *                 status (or a negative errno, two's complement)
 *       16     8  t: PUSH/HISTORY the scheduled send time (ns); OPEN 1
 *                 when the socket's TLS handshake resumed a session
 *       24     8  at: when the event happened (CLOCK_MONOTONIC ns)
 *       32     8  id.hi   PUSH/HISTORY/HISTORY_DISORDER the message id
 *       40     8  id.lo
 *
 * CLOCK_MONOTONIC is one clock for every process of the machine, so a
 * latency computed from t and at is the same wherever it is computed.
 */
#ifndef NATTER_LOAD_WIRE_H
#define NATTER_LOAD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "load_api.h"

enum load_rec_kind {
    LOAD_REC_PUSH = 1,     /* a message of ours pushed on a socket */
    LOAD_REC_HISTORY,      /* a message of ours read by a catch-up */
    LOAD_REC_HISTORY_DISORDER, /* a history page's message not after the one before it */
    LOAD_REC_FOREIGN,      /* a push or history message that is not ours */
    LOAD_REC_OPEN,         /* a socket opened (a = 1: it reopened; t = 1: its TLS resumed) */
    LOAD_REC_DOWN,         /* an open socket closed (a = code) */
    LOAD_REC_FAILED,       /* a listener never opened and gave up (a = code) */
    LOAD_REC_CATCHUP_FAILED, /* a chat's catch-up gave up (a = status) */
    LOAD_REC_SYNC,         /* every record before it has been written */
    LOAD_REC_KINDS
};

enum { LOAD_WIRE_SIZE = 48 };

typedef struct load_rec {
    uint8_t kind;
    uint32_t listener;
    uint64_t a, t, at;
    load_id_t id;
} load_rec_t;

/* Writes r's LOAD_WIRE_SIZE bytes to out. */
void load_wire_encode(const load_rec_t *r, unsigned char *out);
/* Reads LOAD_WIRE_SIZE bytes; 0, or -1 when they are not a record (an
 * unknown kind or non-zero padding). */
int load_wire_decode(const unsigned char *in, load_rec_t *r);

#endif
