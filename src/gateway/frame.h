/*
 * A WebSocket frame as it goes on the wire (server to client: unmasked), in
 * one reference-counted allocation. A push is built once, by whoever reads
 * it from the log, and every event loop queues the same bytes on every
 * recipient socket: each socket holds one reference until its write of the
 * frame completed, and the last one out frees it. Nothing copies a frame
 * per recipient.
 *
 * References are atomic: loops on different threads hold the same frame.
 */
#ifndef NATTER_FRAME_H
#define NATTER_FRAME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/jsonw.h"

#define NATTER_FRAME_HEADER_MAX 10 /* 2 bytes, + 2 or 8 for the extended payload length */

typedef struct natter_frame {
    _Atomic uint32_t refs;
    uint32_t off; /* where the frame starts, from the start of this struct */
    uint32_t len; /* header + payload bytes */
} natter_frame_t;

/* Starts a text frame in w (which must be empty): what is written into w
 * after this call is the payload. */
void natter_frame_begin(natter_jsonw_t *w);
/* Ends the frame started in w: returns it with one reference, holding w's
 * buffer (w is empty again). */
natter_frame_t *natter_frame_end(natter_jsonw_t *w);
/* A text frame of the given payload, with one reference. */
natter_frame_t *natter_frame_text(const char *payload, size_t len);

static inline const uint8_t *natter_frame_bytes(const natter_frame_t *f)
{
    return (const uint8_t *)f + f->off;
}

static inline natter_frame_t *natter_frame_ref(natter_frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

/* Drops one reference; the last one frees the frame. */
void natter_frame_unref(natter_frame_t *f);

#endif
