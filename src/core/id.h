/*
 * Message, user and chat ids: 64-bit, time-ordered, unique across nodes.
 *
 *   bit 63      0 (ids stay positive in signed 64-bit columns: SQLite, CQL bigint)
 *   bits 62..22 milliseconds since NATTER_ID_EPOCH_MS (41 bits: ~69 years)
 *   bits 21..12 node id (10 bits: 0..1023)
 *   bits 11..0  sequence within the millisecond (4096 per ms per node)
 *
 * One generator's ids strictly increase: when the sequence is exhausted or
 * the wall clock steps back, the generator borrows from the next
 * millisecond instead of reusing an id. Lock-free: any thread may call
 * natter_idgen_next at once (one compare-and-swap on the last id issued),
 * so the event loops issue ids without a shared lock.
 */
#ifndef NATTER_ID_H
#define NATTER_ID_H

#include <stdatomic.h>
#include <stdint.h>

#define NATTER_ID_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z */
#define NATTER_ID_NODE_MAX 1023
#define NATTER_ID_STR_MAX 21 /* 20 digits + NUL */

typedef struct natter_idgen {
    uint32_t node;
    _Atomic uint64_t last; /* the last id issued (0: none yet; 0 is never issued) */
} natter_idgen_t;

void natter_idgen_init(natter_idgen_t *g, uint32_t node);
/* Next id at wall-clock time now_ms (ms since the Unix epoch). */
uint64_t natter_idgen_next(natter_idgen_t *g, int64_t now_ms);
/* Every id issued from now on is greater than id (one the store holds: a
 * node restarted with its clock behind its last run would otherwise issue
 * ids it issued then); ids issued after a later millisecond than id's are
 * as before. */
void natter_idgen_start_after(natter_idgen_t *g, uint64_t id);

/* Unix ms at which an id was issued. */
int64_t natter_id_time_ms(uint64_t id);
uint32_t natter_id_node(uint64_t id);
/* Writes the decimal form; returns its length. */
int natter_id_format(char dst[NATTER_ID_STR_MAX], uint64_t id);

#endif
