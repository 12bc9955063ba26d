#include "core/id.h"

#include <stdio.h>

void natter_idgen_init(natter_idgen_t *g, uint32_t node)
{
    g->node = node & NATTER_ID_NODE_MAX;
    g->last_ms = -1;
    g->seq = 0;
}

uint64_t natter_idgen_next(natter_idgen_t *g, int64_t now_ms)
{
    int64_t ms = now_ms - NATTER_ID_EPOCH_MS;
    if (ms < 0)
        ms = 0;
    if (ms > g->last_ms) {
        g->last_ms = ms;
        g->seq = 0;
    } else if (++g->seq > 0xFFF) {
        /* clock stepped back or 4096 ids this millisecond: borrow the next one */
        g->last_ms++;
        g->seq = 0;
    }
    return ((uint64_t)g->last_ms << 22) | ((uint64_t)g->node << 12) | g->seq;
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
