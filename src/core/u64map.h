/*
 * A hash map from uint64 keys to pointers: open addressing, linear probing,
 * backward-shift deletion (no tombstones). Not thread-safe: one owner.
 * Key 0 is reserved (ids are never 0).
 */
#ifndef NATTER_U64MAP_H
#define NATTER_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct natter_u64map {
    uint64_t *keys;
    void **vals;
    size_t cap; /* power of two, or 0 */
    size_t len;
} natter_u64map_t;

void natter_u64map_init(natter_u64map_t *m);
void natter_u64map_free(natter_u64map_t *m);
void *natter_u64map_get(const natter_u64map_t *m, uint64_t key);
/* Inserts or replaces; returns the previous value or NULL. */
void *natter_u64map_put(natter_u64map_t *m, uint64_t key, void *val);
/* Removes; returns the value that was there or NULL. */
void *natter_u64map_del(natter_u64map_t *m, uint64_t key);

/* Iterate: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ... ; no
 * insertions or deletions while iterating. */

#endif
