#include "core/u64map.h"
#include "core/util.h"

#include <stdlib.h>
#include <sys/types.h>

static size_t slot_of(uint64_t key, size_t cap)
{
    return (size_t)natter_mix64(key) & (cap - 1);
}

void natter_u64map_init(natter_u64map_t *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->len = 0;
}

void natter_u64map_free(natter_u64map_t *m)
{
    free(m->keys);
    free(m->vals);
    natter_u64map_init(m);
}

static ssize_t find(const natter_u64map_t *m, uint64_t key)
{
    if (m->cap == 0)
        return -1;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key)
            return (ssize_t)i;
        if (m->keys[i] == 0)
            return -1;
    }
}

void *natter_u64map_get(const natter_u64map_t *m, uint64_t key)
{
    ssize_t i = find(m, key);
    return i < 0 ? NULL : m->vals[i];
}

static void grow(natter_u64map_t *m)
{
    natter_u64map_t old = *m;
    m->cap = old.cap ? old.cap * 2 : 16;
    m->keys = xcalloc(m->cap, sizeof(uint64_t));
    m->vals = xcalloc(m->cap, sizeof(void *));
    m->len = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i])
            natter_u64map_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

void *natter_u64map_put(natter_u64map_t *m, uint64_t key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3)
        grow(m);
    size_t i = slot_of(key, m->cap);
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    void *prev = m->keys[i] == key ? m->vals[i] : NULL;
    if (m->keys[i] == 0)
        m->len++;
    m->keys[i] = key;
    m->vals[i] = val;
    return prev;
}

void *natter_u64map_del(natter_u64map_t *m, uint64_t key)
{
    ssize_t found = find(m, key);
    if (found < 0)
        return NULL;
    size_t i = (size_t)found, mask = m->cap - 1;
    void *val = m->vals[i];
    /* backward-shift: pull later entries of the probe run into the hole */
    for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m->keys[j], m->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = NULL;
    m->len--;
    return val;
}
