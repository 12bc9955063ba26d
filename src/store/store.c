/*
 * The STORE core: the backend table, opening and closing, and the wrappers
 * every caller goes through.
 */
#include "store/store.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/metrics.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static const natter_store_ops_t *const backends[] = {&natter_store_sqlite, &natter_store_cql};

const natter_store_ops_t *natter_store_find(const char *name)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

static int has_metrics(const natter_store_ops_t *ops)
{
    return ops->version >= 2 && ops->metrics_render != NULL;
}

static void render_metrics(void *store, natter_metrics_append_fn append, void *out)
{
    natter_store_t *s = store;
    s->ops->metrics_render(s, append, out);
}

natter_store_t *natter_store_open(const natter_store_ops_t *ops, const natter_config_t *cfg, char *err,
                                  size_t errlen)
{
    natter_store_t *s = xcalloc(1, ops->size);
    s->ops = ops;
    if (ops->open(s, cfg, err, errlen) != 0) {
        free(s);
        return NULL;
    }
    if (has_metrics(ops))
        natter_metrics_set_extra(render_metrics, s);
    return s;
}

void natter_store_close(natter_store_t *s)
{
    if (s == NULL)
        return;
    if (has_metrics(s->ops))
        natter_metrics_set_extra(NULL, NULL);
    s->ops->close(s);
    free(s);
}

/* ------------------------------------------------------------ the wrappers */

/* Every wrapper: the fault layer first (core/fault.h), then the backend. */
#define FAULT(point)                                                                                                 \
    do {                                                                                                             \
        int fault_rc_ = natter_fault_check(NATTER_FAULT_##point);                                                    \
        if (fault_rc_ != 0)                                                                                          \
            return fault_rc_;                                                                                        \
    } while (0)

int natter_store_ping(natter_store_t *s)
{
    FAULT(STORE_PING);
    return s->ops->ping(s);
}

int natter_store_user_create(natter_store_t *s, const natter_user_t *u, int64_t now_ms)
{
    FAULT(STORE_USER_CREATE);
    return s->ops->user_create(s, u, now_ms);
}

int natter_store_user_by_name(natter_store_t *s, const char *username, natter_user_t *out)
{
    FAULT(STORE_USER_BY_NAME);
    return s->ops->user_by_name(s, username, out);
}

int natter_store_user_by_id(natter_store_t *s, uint64_t id, natter_user_t *out)
{
    FAULT(STORE_USER_BY_ID);
    return s->ops->user_by_id(s, id, out);
}

int natter_store_session_create(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], uint64_t user_id,
                                int64_t expires_at_ms)
{
    FAULT(STORE_SESSION_CREATE);
    return s->ops->session_create(s, hash, user_id, expires_at_ms);
}

int natter_store_session_user(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                              natter_user_t *out)
{
    FAULT(STORE_SESSION_USER);
    return s->ops->session_user(s, hash, now_ms, out);
}

int natter_store_session_user_id(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                                 uint64_t *user_id, int64_t *expires_at_ms)
{
    FAULT(STORE_SESSION_USER);
    if (s->ops->version >= 6 && s->ops->session_user_id != NULL)
        return s->ops->session_user_id(s, hash, now_ms, user_id, expires_at_ms);
    natter_user_t u;
    int rc = s->ops->session_user(s, hash, now_ms, &u);
    if (rc == NATTER_OK) {
        *user_id = u.id;
        *expires_at_ms = u.expires_at_ms;
    }
    return rc;
}

int natter_store_session_delete(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN])
{
    FAULT(STORE_SESSION_DELETE);
    return s->ops->session_delete(s, hash);
}

int natter_store_max_id(natter_store_t *s, uint64_t *out)
{
    if (s->ops->version < 7 || s->ops->max_id == NULL)
        return NATTER_EINVAL;
    return s->ops->max_id(s, out);
}

int natter_store_chat_create(natter_store_t *s, const natter_chat_t *chat, const uint64_t *members, size_t n)
{
    FAULT(STORE_CHAT_CREATE);
    return s->ops->chat_create(s, chat, members, n);
}

int natter_store_chat_get(natter_store_t *s, uint64_t chat_id, natter_chat_t *out)
{
    FAULT(STORE_CHAT_GET);
    return s->ops->chat_get(s, chat_id, out);
}

int natter_store_chat_member_ids(natter_store_t *s, uint64_t chat_id, natter_vec_t *out)
{
    FAULT(STORE_CHAT_MEMBER_IDS);
    return s->ops->chat_member_ids(s, chat_id, out);
}

int natter_store_chat_members(natter_store_t *s, uint64_t chat_id, natter_vec_t *out)
{
    FAULT(STORE_CHAT_MEMBERS);
    return s->ops->chat_members(s, chat_id, out);
}

int natter_store_member_add(natter_store_t *s, uint64_t chat_id, uint64_t user_id)
{
    FAULT(STORE_MEMBER_ADD);
    return s->ops->member_add(s, chat_id, user_id);
}

int natter_store_member_remove(natter_store_t *s, uint64_t chat_id, uint64_t user_id)
{
    FAULT(STORE_MEMBER_REMOVE);
    return s->ops->member_remove(s, chat_id, user_id);
}

int natter_store_user_chats(natter_store_t *s, uint64_t user_id, uint64_t before, uint32_t limit, natter_vec_t *out,
                            uint64_t *next)
{
    *next = 0; /* a fault's answer, too */
    FAULT(STORE_USER_CHATS);
    return s->ops->user_chats(s, user_id, before, limit, out, next);
}

uint64_t natter_chat_summary_activity(const natter_chat_summary_t *cs)
{
    return cs->last != NULL && cs->last->id > cs->chat.id ? cs->last->id : cs->chat.id;
}

int natter_chat_summary_by_activity(const void *a, const void *b)
{
    uint64_t ka = natter_chat_summary_activity(a), kb = natter_chat_summary_activity(b);
    return ka < kb ? 1 : ka > kb ? -1 : 0;
}

void natter_store_page_reverse(natter_vec_t *page, size_t first)
{
    if (page->len - first < 2) /* nothing to turn; an empty vector has no items to point into */
        return;
    natter_msg_t **m = (natter_msg_t **)page->items + first;
    for (size_t i = 0, j = page->len - first; i + 1 < j; i++, j--) {
        natter_msg_t *t = m[i];
        m[i] = m[j - 1];
        m[j - 1] = t;
    }
}

int natter_store_messages_page(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                               natter_vec_t *out, int *has_more)
{
    FAULT(STORE_MESSAGES_PAGE);
    return s->ops->messages_page(s, chat_id, after, before, limit, out, has_more);
}

int natter_store_message_in_chat(natter_store_t *s, uint64_t chat_id, uint64_t message_id)
{
    FAULT(STORE_MESSAGE_IN_CHAT);
    return s->ops->message_in_chat(s, chat_id, message_id);
}

int natter_store_read_marker_advance(natter_store_t *s, uint64_t user_id, uint64_t chat_id, uint64_t message_id)
{
    FAULT(STORE_READ_MARKER_ADVANCE);
    return s->ops->read_marker_advance(s, user_id, chat_id, message_id);
}

int natter_store_has_node_lease(natter_store_t *s)
{
    return s->ops->version >= 3 && s->ops->node_lease != NULL;
}

int natter_store_node_lease(natter_store_t *s, uint32_t node_id, const char *holder, uint32_t ttl_ms,
                            natter_lease_op_t op)
{
    FAULT(STORE_NODE_LEASE);
    return s->ops->node_lease(s, node_id, holder, ttl_ms, op);
}

int natter_store_client_ids_claim(natter_store_t *s, natter_msg_t *const *msgs, size_t n, int64_t now_ms, int *rc,
                                  natter_msg_t **holders)
{
    int fault = natter_fault_check(NATTER_FAULT_STORE_CLIENT_IDS_CLAIM);
    for (size_t i = 0; fault != 0 && i < n; i++)
        rc[i] = fault;
    return fault != 0 ? fault : s->ops->client_ids_claim(s, msgs, n, now_ms, rc, holders);
}

int natter_store_records_write(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms)
{
    FAULT(STORE_MESSAGES_INSERT);
    return s->ops->records_write(s, head, n, claim, now_ms);
}

int natter_store_has_records_sync(natter_store_t *s)
{
    return s->ops->version >= 9 && s->ops->records_sync != NULL;
}

int natter_store_records_write_unsynced(natter_store_t *s, natter_msg_t *head, size_t n, int claim, int64_t now_ms)
{
    FAULT(STORE_MESSAGES_INSERT);
    return s->ops->records_write_unsynced(s, head, n, claim, now_ms);
}

int natter_store_records_sync(natter_store_t *s)
{
    FAULT(STORE_RECORDS_SYNC);
    return s->ops->records_sync(s);
}

int natter_store_ticket_create(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], const natter_ticket_t *t,
                               int64_t expires_at_ms)
{
    FAULT(STORE_TICKET_CREATE);
    return s->ops->ticket_create(s, hash, t, expires_at_ms);
}

int natter_store_ticket_take(natter_store_t *s, const uint8_t hash[NATTER_TOKEN_HASH_LEN], int64_t now_ms,
                             natter_ticket_t *t)
{
    FAULT(STORE_TICKET_TAKE);
    return s->ops->ticket_take(s, hash, now_ms, t);
}

int natter_store_message_get(natter_store_t *s, uint64_t chat_id, uint64_t message_id, natter_msg_t **out)
{
    FAULT(STORE_MESSAGE_GET);
    return s->ops->message_get(s, chat_id, message_id, out);
}

int natter_store_reactions_range(natter_store_t *s, uint64_t chat_id, uint64_t first_id, uint64_t last_id,
                                 natter_vec_t *out)
{
    FAULT(STORE_REACTIONS_RANGE);
    return s->ops->reactions_range(s, chat_id, first_id, last_id, out);
}

int natter_store_events_page(natter_store_t *s, uint64_t chat_id, uint64_t after, uint64_t before, uint32_t limit,
                             natter_vec_t *out, int *has_more)
{
    FAULT(STORE_EVENTS_PAGE);
    return s->ops->events_page(s, chat_id, after, before, limit, out, has_more);
}

int natter_store_read_markers(natter_store_t *s, uint64_t chat_id, natter_vec_t *out)
{
    FAULT(STORE_READ_MARKERS);
    return s->ops->read_markers(s, chat_id, out);
}

int natter_store_user_chat_ids(natter_store_t *s, uint64_t user_id, natter_vec_t *out)
{
    FAULT(STORE_USER_CHAT_IDS);
    return s->ops->user_chat_ids(s, user_id, out);
}
