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
#include <string.h>

#define RAW(w, lit) natter_jsonw_raw((w), (lit), sizeof(lit) - 1)

/* ,"key":"id" */
static void id_field(natter_jsonw_t *w, const char *key, uint64_t id)
{
    natter_jsonw_raw(w, ",", 1);
    natter_jsonw_key(w, key);
    natter_jsonw_id(w, id);
}

/* An event's push, as docs/openapi.yaml's Ws*Event schemas say. */
static void write_event(natter_jsonw_t *w, const natter_msg_t *e)
{
    switch (e->kind) {
    case NATTER_EV_EDIT:
        RAW(w, "{\"type\":\"message_edited\",\"message\":");
        natter_msg_write_edited(w, e);
        break;
    case NATTER_EV_DELETE:
        RAW(w, "{\"type\":\"message_deleted\"");
        id_field(w, "chat_id", e->chat_id);
        id_field(w, "id", e->target_id);
        break;
    default: /* a reaction */
        RAW(w, "{\"type\":\"reaction\"");
        id_field(w, "chat_id", e->chat_id);
        id_field(w, "message_id", e->target_id);
        natter_jsonw_raw(w, ",", 1);
        natter_jsonw_key(w, "emoji");
        natter_jsonw_string(w, e->content, e->content_len);
        id_field(w, "user_id", e->sender_id);
        if (e->kind == NATTER_EV_REACT_ADD)
            RAW(w, ",\"op\":\"add\"");
        else
            RAW(w, ",\"op\":\"remove\"");
        break;
    }
    id_field(w, "event_id", e->id);
    natter_jsonw_raw(w, "}", 1);
}

static natter_frame_t *push_frame(const natter_msg_t *m)
{
    static const char head[] = "{\"type\":\"message\",\"message\":";
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    if (m->kind != NATTER_EV_MESSAGE) {
        write_event(&w, m);
        return natter_frame_end(&w);
    }
    natter_jsonw_raw(&w, head, sizeof(head) - 1);
    natter_msg_write_json(&w, m);
    natter_jsonw_raw(&w, "}", 1);
    return natter_frame_end(&w);
}

static natter_fanout_t *fanout_new(natter_app_t *app, size_t n)
{
    natter_fanout_t *f = xcalloc(1, sizeof(*f));
    atomic_init(&f->refs, 1);
    f->items = xcalloc(n ? n : 1, sizeof(natter_fanout_item_t));
    f->links = xcalloc(app->nloops, sizeof(natter_fanout_link_t));
    return f;
}

natter_fanout_t *natter_fanout_build(natter_app_t *app, const natter_msg_t *head)
{
    size_t n = 0;
    for (const natter_msg_t *m = head; m != NULL; m = m->next)
        n++;
    natter_fanout_t *f = fanout_new(app, n);
    natter_vec_t members, ids;
    natter_vec_init(&members, sizeof(uint64_t));
    natter_vec_init(&ids, sizeof(uint64_t));
    for (const natter_msg_t *m = head; m != NULL; m = m->next) {
        if (m->duplicate)
            continue; /* a repeat of a message pushed when it was stored */
        if (!natter_event_stored(m->kind) || m->unapplied)
            continue; /* an event the store applied without effect tells the members nothing */
        const uint64_t *to;
        size_t nto;
        if (m->nrecipients > 0) { /* the posting node's view of the chat: no lookup here */
            to = natter_msg_recipients(m);
            nto = m->nrecipients;
        } else if (natter_members_cache_get(&app->members, m->chat_id, &ids) == NATTER_OK) {
            to = ids.items;
            nto = ids.len;
        } else {
            continue; /* nobody is pushed this one; it is stored, clients catch up from history */
        }
        natter_fanout_item_t *it = &f->items[f->n++];
        it->frame = push_frame(m);
        it->ingest_ns = m->kind == NATTER_EV_MESSAGE ? m->ingest_ns : 0; /* the latency histogram is messages' */
        it->first_member = (uint32_t)members.len;
        it->nmembers = (uint32_t)nto;
        for (size_t i = 0; i < nto; i++)
            *(uint64_t *)natter_vec_push(&members) = to[i];
    }
    natter_vec_free(&ids);
    f->members = members.items; /* the vector's array is the batch's now */
    return f;
}

natter_fanout_t *natter_fanout_one(natter_app_t *app, natter_frame_t *frame, const uint64_t *members, size_t n,
                                   uint64_t skip_user)
{
    natter_fanout_t *f = fanout_new(app, 1);
    f->n = 1;
    f->items[0] = (natter_fanout_item_t){.frame = frame, .nmembers = (uint32_t)n, .skip_user = skip_user,
                                         .ephemeral = 1};
    f->members = xmalloc((n ? n : 1) * sizeof(uint64_t));
    memcpy(f->members, members, n * sizeof(uint64_t));
    return f;
}

natter_fanout_t *natter_fanout_session_end(natter_app_t *app, uint64_t user,
                                           const uint8_t session_hash[NATTER_TOKEN_HASH_LEN])
{
    natter_fanout_t *f = fanout_new(app, 1);
    f->n = 1;
    f->items[0] = (natter_fanout_item_t){.nmembers = 1, .ephemeral = 1};
    f->members = xmalloc(sizeof(uint64_t));
    f->members[0] = user;
    f->ends_session = 1;
    memcpy(f->session_hash, session_hash, NATTER_TOKEN_HASH_LEN);
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
        if (f->items[i].frame != NULL) /* a session end's has none */
            natter_frame_unref(f->items[i].frame);
    free(f->items);
    free(f->members);
    free(f->links);
    free(f);
}
