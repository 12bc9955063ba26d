#include "core/buf.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void natter_buf_append(natter_buf_t *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = b->len + len > 2 * b->cap ? b->len + len : 2 * b->cap;
        b->p = xrealloc(b->p, b->cap);
    }
    if (len > 0)
        memcpy(b->p + b->len, data, len);
    b->len += len;
}

void natter_buf_free(natter_buf_t *b)
{
    free(b->p);
    *b = (natter_buf_t){0};
}
