#include "core/message.h"
#include "core/id.h"
#include "core/util.h"

#include <stddef.h>
#include <string.h>

/* the recipients after the content are 8-byte aligned */
_Static_assert(offsetof(natter_msg_t, content) % 8 == 0, "natter_msg_t's content must start 8-byte aligned");

size_t natter_msg_size(const natter_msg_t *m)
{
    return sizeof(*m) + natter_msg_content_room(m->content_len) + m->nrecipients * sizeof(uint64_t);
}

natter_msg_t *natter_msg_new(uint64_t chat_id, uint64_t sender_id, const char *content, size_t len,
                             const char *client_id, size_t client_id_len)
{
    return natter_msg_new_to(chat_id, sender_id, content, len, client_id, client_id_len, NULL, 0);
}

void natter_msg_free_list(natter_msg_t *head)
{
    while (head != NULL) {
        natter_msg_t *next = head->next;
        free(head);
        head = next;
    }
}

natter_msg_t *natter_msg_new_to(uint64_t chat_id, uint64_t sender_id, const char *content, size_t len,
                                const char *client_id, size_t client_id_len, const uint64_t *recipients, size_t n)
{
    if (n > NATTER_MSG_RECIPIENTS_MAX)
        n = 0;
    natter_msg_t *m = xcalloc(1, sizeof(*m) + natter_msg_content_room(len) + n * sizeof(uint64_t));
    m->chat_id = chat_id;
    m->partition = -1;
    m->offset = -1;
    m->sender_id = sender_id;
    m->content_len = len;
    memcpy(m->content, content, len);
    if (client_id_len > NATTER_CLIENT_ID_MAX)
        client_id_len = NATTER_CLIENT_ID_MAX;
    m->client_id_len = client_id_len;
    if (client_id_len > 0)
        memcpy(m->client_id, client_id, client_id_len);
    m->nrecipients = (uint32_t)n;
    if (n > 0)
        memcpy(m->content + natter_msg_content_room(len), recipients, n * sizeof(uint64_t));
    return m;
}

json_t *natter_msg_json(const natter_msg_t *m)
{
    char id[NATTER_ID_STR_MAX], chat[NATTER_ID_STR_MAX], sender[NATTER_ID_STR_MAX], at[NATTER_TIME_LEN];
    natter_id_format(id, m->id);
    natter_id_format(chat, m->chat_id);
    natter_id_format(sender, m->sender_id);
    natter_format_time(at, m->created_at_ms);
    if (m->deleted)
        return json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", id, "chat_id", chat, "sender_id", sender, "created_at", at,
                         "deleted", 1);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s%, s:s}", "id", id, "chat_id", chat, "sender_id", sender, "content",
                          m->content, m->content_len, "created_at", at);
    if (m->edited_at_ms > 0) {
        natter_format_time(at, m->edited_at_ms);
        json_object_set_new(o, "edited_at", json_string(at));
    }
    if (m->client_id_len > 0)
        json_object_set_new(o, "client_id", json_stringn(m->client_id, m->client_id_len));
    return o;
}

/* The message object from its fields: a deleted one's slot has no content
 * (nor edited_at, nor client_id). */
static void write_message(natter_jsonw_t *w, uint64_t id, const natter_msg_t *m, int64_t created_at_ms,
                          int64_t edited_at_ms, int deleted)
{
    natter_jsonw_raw(w, "{", 1);
    natter_jsonw_key(w, "id");
    natter_jsonw_id(w, id);
    natter_jsonw_raw(w, ",", 1);
    natter_jsonw_key(w, "chat_id");
    natter_jsonw_id(w, m->chat_id);
    natter_jsonw_raw(w, ",", 1);
    natter_jsonw_key(w, "sender_id");
    natter_jsonw_id(w, m->sender_id);
    if (!deleted) {
        natter_jsonw_raw(w, ",", 1);
        natter_jsonw_key(w, "content");
        natter_jsonw_string(w, m->content, m->content_len);
    }
    natter_jsonw_raw(w, ",", 1);
    natter_jsonw_key(w, "created_at");
    natter_jsonw_time(w, created_at_ms);
    if (deleted) {
        natter_jsonw_raw(w, ",\"deleted\":true}", 16);
        return;
    }
    if (edited_at_ms > 0) {
        natter_jsonw_raw(w, ",", 1);
        natter_jsonw_key(w, "edited_at");
        natter_jsonw_time(w, edited_at_ms);
    }
    if (m->client_id_len > 0) {
        natter_jsonw_raw(w, ",", 1);
        natter_jsonw_key(w, "client_id");
        natter_jsonw_string(w, m->client_id, m->client_id_len);
    }
    natter_jsonw_raw(w, "}", 1);
}

void natter_msg_write_json(natter_jsonw_t *w, const natter_msg_t *m)
{
    write_message(w, m->id, m, m->created_at_ms, m->edited_at_ms, m->deleted);
}

void natter_msg_write_edited(natter_jsonw_t *w, const natter_msg_t *edit)
{
    write_message(w, edit->target_id, edit, natter_id_time_ms(edit->target_id), edit->created_at_ms, 0);
}

int natter_membership_op(const void *content, size_t len)
{
    static const char *const ops[] = NATTER_MEMBERSHIP_OPS;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (len == strlen(ops[i]) && memcmp(content, ops[i], len) == 0)
            return (int)i;
    return -1;
}
