#include "core/vec.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void natter_vec_init(natter_vec_t *v, size_t item_size)
{
    v->items = NULL;
    v->len = v->cap = 0;
    v->size = item_size;
}

void *natter_vec_push(natter_vec_t *v)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 8;
        v->items = xrealloc(v->items, v->cap * v->size);
    }
    void *slot = (char *)v->items + v->len++ * v->size;
    memset(slot, 0, v->size);
    return slot;
}

void natter_vec_free(natter_vec_t *v)
{
    free(v->items);
    natter_vec_init(v, v->size);
}
