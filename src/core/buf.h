/* A growable run of bytes: appended to, given back whole. */
#ifndef NATTER_BUF_H
#define NATTER_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct natter_buf {
    uint8_t *p; /* NULL until the first append */
    size_t len, cap;
} natter_buf_t;

/* Appends len bytes, growing the buffer (at least doubling) when needed. */
void natter_buf_append(natter_buf_t *b, const void *data, size_t len);
/* Frees the bytes; the buffer is empty again. */
void natter_buf_free(natter_buf_t *b);

#endif
