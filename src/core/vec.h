/* A growable array of fixed-size items. */
#ifndef NATTER_VEC_H
#define NATTER_VEC_H

#include <stddef.h>

/* Free the items' own memory first, then natter_vec_free. */
typedef struct natter_vec {
    void *items;
    size_t len, cap, size;
} natter_vec_t;

void natter_vec_init(natter_vec_t *v, size_t item_size);
void *natter_vec_push(natter_vec_t *v); /* zeroed slot at the end */
void natter_vec_free(natter_vec_t *v);
#define NATTER_VEC_AT(v, type, i) (&((type *)(v)->items)[i])

#endif
