#include "gateway/frame.h"

#include <stdlib.h>
#include <string.h>

/* The payload starts here in the buffer; the header is written right before
 * it once the length is known, so the frame is one contiguous run. */
#define PAYLOAD_AT (sizeof(natter_frame_t) + NATTER_FRAME_HEADER_MAX)

void natter_frame_begin(natter_jsonw_t *w)
{
    static const char room[PAYLOAD_AT];
    natter_jsonw_raw(w, room, sizeof(room));
}

natter_frame_t *natter_frame_end(natter_jsonw_t *w)
{
    size_t len = w->len - PAYLOAD_AT;
    uint8_t hdr[NATTER_FRAME_HEADER_MAX];
    size_t h = 0;
    hdr[h++] = 0x81; /* FIN, text */
    if (len < 126) {
        hdr[h++] = (uint8_t)len;
    } else if (len < 65536) {
        hdr[h++] = 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            hdr[h++] = (uint8_t)((uint64_t)len >> shift);
    }
    natter_frame_t *f = (natter_frame_t *)w->p;
    f->off = (uint32_t)(PAYLOAD_AT - h);
    f->len = (uint32_t)(h + len);
    memcpy((uint8_t *)f + f->off, hdr, h);
    atomic_init(&f->refs, 1);
    w->p = NULL;
    w->len = w->cap = 0;
    return f;
}

natter_frame_t *natter_frame_text(const char *payload, size_t len)
{
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    natter_jsonw_raw(&w, payload, len);
    return natter_frame_end(&w);
}

void natter_frame_unref(natter_frame_t *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}
