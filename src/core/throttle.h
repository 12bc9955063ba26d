/*
 * A throttle of pairs: at most one pass per (a, b) per window — what keeps
 * a typing indicator to one per user per chat every 2 s.
 *
 * One owner, no lock (each event loop has one, the ephemeral thread has
 * one). Bounded: it holds at most max pairs; when full it forgets the pairs
 * whose window is over, and if that is not enough, every pair (letting a
 * few extra through once rather than growing or refusing everyone).
 */
#ifndef NATTER_THROTTLE_H
#define NATTER_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct natter_throttle_slot {
    uint64_t a, b;
    int64_t last; /* when the pair last passed; 0: an empty slot */
} natter_throttle_slot_t;

typedef struct natter_throttle {
    natter_throttle_slot_t *slots; /* open addressing, linear probing; cap a power of two or 0 */
    size_t cap, len, max;
    int64_t window;
} natter_throttle_t;

/* window in the caller's time unit (natter passes milliseconds); max pairs held. */
void natter_throttle_init(natter_throttle_t *t, int64_t window, size_t max);
void natter_throttle_free(natter_throttle_t *t);
/* 1 when (a, b) has not passed within the window before now (now > 0),
 * and then it passes now; 0 when it is too soon. */
int natter_throttle_pass(natter_throttle_t *t, uint64_t a, uint64_t b, int64_t now);

#endif
