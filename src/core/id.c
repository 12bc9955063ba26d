#include "core/id.h"

#include <stdio.h>

#define SEQ_MASK 0xFFFu

void natter_idgen_init(natter_idgen_t *g, uint32_t node)
{
    g->node = node & NATTER_ID_NODE_MAX;
    atomic_init(&g->last, 0);
}

/* The id after last: the next sequence number in its millisecond, or the
 * first of the next millisecond once 4096 are used (the clock stepped back
 * or this millisecond is busy: borrow the next one). */
static uint64_t successor(const natter_idgen_t *g, uint64_t last)
{
    if ((last & SEQ_MASK) != SEQ_MASK)
        return last + 1;
    return (((last >> 22) + 1) << 22) | ((uint64_t)g->node << 12);
}

uint64_t natter_idgen_next(natter_idgen_t *g, int64_t now_ms)
{
    int64_t ms = now_ms - NATTER_ID_EPOCH_MS;
    uint64_t fresh = ((uint64_t)(ms < 0 ? 0 : ms) << 22) | ((uint64_t)g->node << 12);
    uint64_t last = atomic_load_explicit(&g->last, memory_order_relaxed), next;
    do {
        next = fresh > last ? fresh : successor(g, last);
    } while (!atomic_compare_exchange_weak_explicit(&g->last, &last, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return next;
}

void natter_idgen_start_after(natter_idgen_t *g, uint64_t id)
{
    /* the last id of id's millisecond, as this node would have issued it:
     * the next is in the millisecond after, or at the clock's when later */
    uint64_t floor = ((id >> 22) << 22) | ((uint64_t)g->node << 12) | SEQ_MASK;
    uint64_t last = atomic_load_explicit(&g->last, memory_order_relaxed);
    while (last < floor &&
           !atomic_compare_exchange_weak_explicit(&g->last, &last, floor, memory_order_relaxed, memory_order_relaxed))
        ;
}

int64_t natter_id_time_ms(uint64_t id)
{
    return (int64_t)(id >> 22) + NATTER_ID_EPOCH_MS;
}

uint32_t natter_id_node(uint64_t id)
{
    return (uint32_t)(id >> 12) & NATTER_ID_NODE_MAX;
}

int natter_id_format(char dst[NATTER_ID_STR_MAX], uint64_t id)
{
    char tmp[NATTER_ID_STR_MAX];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id != 0);
    for (int i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    dst[n] = '\0';
    return n;
}
