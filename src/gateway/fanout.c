/*
 * Fan-out batches (gateway.h): built once by the thread that read the
 * messages from the log, shared by every event loop.
 */
#include "core/error.h"
#include "core/util.h"
#include "gateway/gateway.h"
#include "loop.h"
#include "natter.h"

#include <stdlib.h>

static natter_frame_t *push_frame(const natter_msg_t *m)
{
    static const char head[] = "{\"type\":\"message\",\"message\":";
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    natter_jsonw_raw(&w, head, sizeof(head) - 1);
    natter_msg_write_json(&w, m);
    natter_jsonw_raw(&w, "}", 1);
    return natter_frame_end(&w);
}

natter_fanout_t *natter_fanout_build(natter_app_t *app, const natter_msg_t *head)
{
    size_t n = 0;
    for (const natter_msg_t *m = head; m != NULL; m = m->next)
        n++;
    natter_fanout_t *f = xcalloc(1, sizeof(*f));
    atomic_init(&f->refs, 1);
    f->items = xcalloc(n ? n : 1, sizeof(natter_fanout_item_t));
    f->links = xcalloc(app->nloops, sizeof(natter_fanout_link_t));
    natter_vec_t members, ids;
    natter_vec_init(&members, sizeof(uint64_t));
    natter_vec_init(&ids, sizeof(uint64_t));
    for (const natter_msg_t *m = head; m != NULL; m = m->next) {
        if (m->duplicate)
            continue; /* a repeat of a message pushed when it was stored */
        if (natter_members_cache_get(&app->members, m->chat_id, &ids) != NATTER_OK)
            continue; /* nobody is pushed this one; it is stored, clients catch up from history */
        natter_fanout_item_t *it = &f->items[f->n++];
        it->frame = push_frame(m);
        it->ingest_ns = m->ingest_ns;
        it->first_member = (uint32_t)members.len;
        it->nmembers = (uint32_t)ids.len;
        for (size_t i = 0; i < ids.len; i++)
            *(uint64_t *)natter_vec_push(&members) = *NATTER_VEC_AT(&ids, uint64_t, i);
    }
    natter_vec_free(&ids);
    f->members = members.items; /* the vector's array is the batch's now */
    return f;
}

void natter_fanout_dispatch(natter_app_t *app, natter_fanout_t *f)
{
    if (f->n > 0) {
        atomic_fetch_add(&f->refs, (uint32_t)app->nloops);
        for (size_t i = 0; i < app->nloops; i++)
            natter_loop_fanout(app->loops[i], f);
    }
    natter_fanout_unref(f);
}

void natter_fanout_unref(natter_fanout_t *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < f->n; i++)
        natter_frame_unref(f->items[i].frame);
    free(f->items);
    free(f->members);
    free(f->links);
    free(f);
}
