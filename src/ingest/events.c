/*
 * The chat's events over HTTP (see events.h). Map of this file:
 *   checks   what every edit, delete and reaction checks before it is logged
 *   logging  the record, parked in the log; its outcome answered on the loop
 *   handlers one per action
 *   reading  the events feed, reactions in history, members' presence and
 *            read markers
 */
#include "ingest/events.h"
#include "core/error.h"
#include "core/id.h"
#include "core/util.h"
#include "gateway/ephemeral.h"
#include "ingest/reactions.h"
#include "loop.h"
#include "natter.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* waiting for a message just posted to reach the store: at most 1 s of a
 * worker, and only for an id from the last 2 s */
#define STORE_WAIT_STEPS 20
#define STORE_WAIT_STEP_MS 50
#define STORE_WAIT_AGE_MS 2000
#define STORE_WAIT_SKEW_MS 500

static json_t *json_id(uint64_t id)
{
    char s[NATTER_ID_STR_MAX];
    natter_id_format(s, id);
    return json_string(s);
}

static json_t *json_time(int64_t ms)
{
    char s[NATTER_TIME_LEN];
    natter_format_time(s, ms);
    return json_string(s);
}

/* ------------------------------------------------------------ checks */

/* The caller, a member of the route's chat; 0 or answered. */
static int member(natter_api_job_t *job, natter_user_t *me)
{
    if (natter_api_authenticate(job, me) != 0)
        return -1;
    return natter_api_chat_access(job, me->id, job->route.chat_id, NULL);
}

/* 1 when the message may have been posted but not stored yet: on a log
 * with its own fan-out (Kafka) the 202 comes from the broker and the store
 * has the message a batch later, so an edit right behind its post may come
 * first. The id says when the message was posted. */
static int maybe_in_flight(natter_api_job_t *job)
{
    int64_t age = natter_now_ms() - natter_id_time_ms(job->route.message_id);
    return natter_log_has_fanout(job->app->log) && age > -STORE_WAIT_SKEW_MS && age < STORE_WAIT_AGE_MS;
}

/* The route's message from the store, else from the log's unstored tail
 * (a message history shows, pushed and not stored yet: the store has it
 * before the change, which comes after it in the chat's order). */
static int lookup(natter_api_job_t *job, int first, natter_msg_t **out)
{
    int rc = natter_store_message_get(job->app->store, job->route.chat_id, job->route.message_id, out);
    if (rc == NATTER_ENOTFOUND) /* the first look waits for this node's own posts to be read, once */
        rc = natter_api_unstored_message(job, job->route.message_id, first, out);
    return rc;
}

/* The route's message as it is now (*out the caller's to free); 404 when
 * it is not a message of the chat, or is deleted and deleted_ok is 0. */
static int message(natter_api_job_t *job, int deleted_ok, natter_msg_t **out)
{
    *out = NULL;
    int rc = lookup(job, 1, out);
    /* A wait holds a worker up to a second, and an id says its own time:
     * ids made up to look fresh, sent a few a second, would put every
     * worker to sleep. At most half of them wait at once; past that the
     * message is not found. */
    natter_app_t *app = job->app;
    unsigned most = app->cfg.workers > 1 ? app->cfg.workers / 2 : 1;
    int waiting = 0;
    if (rc == NATTER_ENOTFOUND && maybe_in_flight(job)) {
        waiting = atomic_fetch_add(&app->in_flight_waits, 1) < most;
        if (!waiting) {
            atomic_fetch_sub(&app->in_flight_waits, 1);
            natter_count(&natter_m()->in_flight_waits_skipped, 1);
        }
    }
    for (int i = 0; waiting && rc == NATTER_ENOTFOUND && i < STORE_WAIT_STEPS && maybe_in_flight(job); i++) {
        struct timespec step = {0, STORE_WAIT_STEP_MS * 1000000L};
        nanosleep(&step, NULL);
        rc = lookup(job, 0, out);
    }
    if (waiting)
        atomic_fetch_sub(&app->in_flight_waits, 1);
    if (rc == NATTER_ENOTFOUND || (rc == NATTER_OK && (*out)->deleted && !deleted_ok)) {
        free(*out);
        *out = NULL;
        return natter_api_fail(job, 404, "not_found", "no such message in this chat");
    }
    return rc == NATTER_OK ? 0 : natter_api_fail_store(job, rc);
}

static int own(natter_api_job_t *job, const natter_msg_t *m, uint64_t me, const char *what)
{
    if (m->sender_id == me)
        return 0;
    char msg[80];
    snprintf(msg, sizeof(msg), "only its sender may %s a message", what);
    return natter_api_fail(job, 403, "forbidden", msg);
}

/* Events cost the log and the store what a message costs: the same limit. */
static int rate_limited(natter_api_job_t *job, uint64_t me)
{
    return natter_api_rate_limit(job, &job->app->ratelimit, me);
}

/* ------------------------------------------------------------ logging */

/* On the thread that learns the outcome: writes the answer now, while the
 * record is at hand (an edit's answer is the edited message), and hands
 * the job to its loop. */
static void event_durable(natter_msg_t *e, int status, void *arg)
{
    natter_api_job_t *job = arg;
    job->durable_status = status;
    if (status == NATTER_OK && e->unapplied == NATTER_UNAPPLIED_GONE) { /* deleted after the check, before this */
        natter_api_fail(job, 404, "not_found", "no such message in this chat");
    } else if (status == NATTER_OK && e->kind == NATTER_EV_EDIT) {
        natter_jsonw_t w = {0};
        natter_msg_write_edited(&w, e);
        natter_api_reply_written(job, 200, &w);
    } else if (status == NATTER_OK) {
        natter_api_reply_json(job, 204, NULL);
    }
    natter_loop_ack(job->loop, job);
}

/* Logs an event about the route's message (an edit carries the message's
 * client_id, for its push); 1 when parked, 0 when answered (503: the log
 * would not take it). */
static int log_event(natter_api_job_t *job, unsigned kind, uint64_t me, const char *content, size_t len,
                     const char *client_id, size_t client_id_len)
{
    natter_msg_t *e = natter_msg_new(job->route.chat_id, me, content, len, client_id, client_id_len);
    e->kind = (uint8_t)kind;
    e->target_id = job->route.message_id;
    e->ingest_ns = natter_now_ns();
    e->on_durable = event_durable;
    e->durable_arg = job;
    int rc = natter_log_append(job->app->log, e);
    if (rc != NATTER_OK) {
        free(e);
        natter_api_fail_log(job, rc);
        return 0;
    }
    return 1;
}

int natter_events_parked(const natter_api_job_t *job)
{
    switch (job->route.action) {
    case NATTER_A_MESSAGE_EDIT:
    case NATTER_A_MESSAGE_DELETE:
    case NATTER_A_REACTION_ADD:
    case NATTER_A_REACTION_REMOVE: return 1;
    default: return 0;
    }
}

void natter_events_answer(natter_api_job_t *job)
{
    if (job->durable_status != NATTER_OK)
        natter_api_fail(job, 503, "unavailable", "the change could not be stored, try again");
}

/* ------------------------------------------------------------ handlers */

static int edit(natter_api_job_t *job)
{
    natter_user_t me;
    natter_msg_t *m = NULL;
    json_t *body = NULL;
    const char *content;
    size_t len;
    int parked = 0;
    if (natter_api_authenticate(job, &me) != 0 || (body = natter_api_body_object(job, job->body, job->body_len)) == NULL)
        goto Done;
    if (!natter_api_field_string(body, "content", &content, &len) || natter_utf8_blank(content, len)) {
        natter_api_fail(job, 400, "invalid_request", "content must be a non-empty string");
        goto Done;
    }
    if (natter_utf8_count(content, len) > NATTER_CONTENT_MAX_CHARS) {
        natter_api_fail(job, 400, "content_too_long", "content is limited to 4000 characters");
        goto Done;
    }
    if (natter_api_chat_access(job, me.id, job->route.chat_id, NULL) == 0 && message(job, 0, &m) == 0 &&
        own(job, m, me.id, "edit") == 0 && rate_limited(job, me.id) == 0)
        parked = log_event(job, NATTER_EV_EDIT, me.id, content, len, m->client_id, m->client_id_len);
Done:
    free(m);
    json_decref(body);
    return parked;
}

/* Deleting a deleted message (a retry whose answer was lost) is done already: 204. */
static int delete(natter_api_job_t *job)
{
    natter_user_t me;
    natter_msg_t *m = NULL;
    int parked = 0;
    if (member(job, &me) == 0 && message(job, 1, &m) == 0 && own(job, m, me.id, "delete") == 0) {
        if (m->deleted)
            natter_api_reply_json(job, 204, NULL);
        else if (rate_limited(job, me.id) == 0)
            parked = log_event(job, NATTER_EV_DELETE, me.id, "", 0, "", 0);
    }
    free(m);
    return parked;
}

/* PUT and DELETE of a reaction: idempotent, so a reaction already there
 * (or already gone) is answered 204 without a record — when the store is
 * known to be current. On a log with its own fan-out (Kafka) a 204 means
 * the broker has the record and the store gets it a batch later, so the
 * store may not show an add or a remove answered a moment ago: there the
 * record is always logged (applying it again changes nothing, and a push
 * of a reaction already shown is a no-op for a client keeping them as
 * sets). */
static int react(natter_api_job_t *job, int add)
{
    natter_user_t me;
    natter_msg_t *m = NULL;
    natter_vec_t rows;
    natter_vec_init(&rows, sizeof(natter_reaction_row_t));
    int parked = 0;
    if (natter_api_authenticate(job, &me) != 0)
        goto Done;
    if (!job->route.emoji_ok) {
        natter_api_fail(job, 400, "invalid_request",
                        "the emoji must be 1-8 Unicode code points, percent-encoded UTF-8, "
                        "with no spaces, controls or invisible characters");
        goto Done;
    }
    if (natter_api_chat_access(job, me.id, job->route.chat_id, NULL) != 0 || message(job, 0, &m) != 0)
        goto Done;
    natter_store_t *store = job->app->store;
    int rc = natter_store_reactions_range(store, job->route.chat_id, m->id, m->id, &rows), has;
    if (rc != NATTER_OK) {
        natter_api_fail_store(job, rc);
        goto Done;
    }
    size_t mine = natter_reactions_of_user(rows.items, rows.len, me.id, job->route.emoji, &has);
    if (has == add && !natter_log_has_fanout(job->app->log))
        natter_api_reply_json(job, 204, NULL);
    else if (add && mine >= NATTER_REACTIONS_PER_USER_MAX)
        natter_api_fail(job, 400, "invalid_request", "at most 20 different reactions per user on one message");
    else if (rate_limited(job, me.id) == 0)
        parked = log_event(job, add ? NATTER_EV_REACT_ADD : NATTER_EV_REACT_REMOVE, me.id, job->route.emoji,
                           job->route.emoji_len, "", 0);
Done:
    natter_vec_free(&rows);
    free(m);
    return parked;
}

int natter_events_run(natter_api_job_t *job)
{
    switch (job->route.action) {
    case NATTER_A_MESSAGE_EDIT: return edit(job);
    case NATTER_A_MESSAGE_DELETE: return delete(job);
    case NATTER_A_REACTION_ADD: return react(job, 1);
    case NATTER_A_REACTION_REMOVE: return react(job, 0);
    default: natter_api_fail(job, 404, "not_found", "no such route"); return 0;
    }
}

/* ------------------------------------------------------------ reading */

static const char *feed_type(unsigned kind)
{
    switch (kind) {
    case NATTER_EV_EDIT: return "message_edited";
    case NATTER_EV_DELETE: return "message_deleted";
    default: return "reaction";
    }
}

/* One item of the feed (an events_page item, see store.h). */
static json_t *feed_item(const natter_msg_t *e)
{
    json_t *o = json_pack("{s:o, s:s, s:o, s:o, s:o, s:o}", "id", json_id(e->id), "type", feed_type(e->kind), "chat_id",
                          json_id(e->chat_id), "message_id", json_id(e->target_id), "user_id", json_id(e->sender_id),
                          "created_at", json_time(e->created_at_ms));
    if (e->kind == NATTER_EV_EDIT) {
        natter_msg_t *now = natter_msg_new(e->chat_id, e->sender_id, e->content, e->content_len, e->client_id,
                                           e->client_id_len);
        now->id = e->target_id;
        now->created_at_ms = natter_id_time_ms(e->target_id);
        now->edited_at_ms = e->edited_at_ms;
        now->deleted = e->deleted;
        json_object_set_new(o, "message", natter_msg_json(now));
        free(now);
    } else if (e->kind != NATTER_EV_DELETE) {
        json_object_set_new(o, "emoji", json_stringn(e->content, e->content_len));
        json_object_set_new(o, "op", json_string(e->kind == NATTER_EV_REACT_ADD ? "add" : "remove"));
    }
    return o;
}

void natter_events_list(natter_api_job_t *job)
{
    natter_user_t me;
    uint64_t after, before, limit;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_reads_limited(job, me.id) != 0 ||
        natter_api_chat_access(job, me.id, job->route.chat_id, NULL) != 0 ||
        natter_api_page_query(job, "event", &after, &before, &limit) != 0)
        return;
    natter_vec_t page, unstored;
    int has_more = 0;
    natter_vec_init(&page, sizeof(natter_msg_t *));
    natter_vec_init(&unstored, sizeof(natter_msg_t *));
    natter_api_unstored(job, NATTER_TAIL_CHANGES, after, before, 1, &unstored); /* before the store: tail.h */
    for (size_t i = 0; i < unstored.len; i++) { /* an edit from the log: the message as it made it */
        natter_msg_t *e = *NATTER_VEC_AT(&unstored, natter_msg_t *, i);
        if (e->kind == NATTER_EV_EDIT)
            e->edited_at_ms = e->created_at_ms;
    }
    natter_store_t *store = job->app->store;
    int rc = natter_store_events_page(store, job->route.chat_id, after, before, (uint32_t)limit, &page, &has_more);
    if (rc == NATTER_OK)
        natter_tail_merge(&unstored, after, (uint32_t)limit, &page, &has_more);
    for (size_t i = 0; i < unstored.len; i++)
        free(*NATTER_VEC_AT(&unstored, natter_msg_t *, i));
    natter_vec_free(&unstored);
    json_t *arr = json_array();
    for (size_t i = 0; i < page.len; i++) {
        natter_msg_t *e = *NATTER_VEC_AT(&page, natter_msg_t *, i);
        json_array_append_new(arr, feed_item(e));
        free(e);
    }
    natter_vec_free(&page);
    if (rc != NATTER_OK) {
        json_decref(arr);
        natter_api_fail_store(job, rc);
        return;
    }
    natter_api_reply_json(job, 200, json_pack("{s:o, s:b}", "events", arr, "has_more", has_more));
}

int natter_events_history_json(natter_api_job_t *job, uint64_t chat_id, const natter_vec_t *page, uint64_t viewer,
                               json_t *arr)
{
    natter_vec_t rows;
    natter_vec_init(&rows, sizeof(natter_reaction_row_t));
    int rc = NATTER_OK;
    if (page->len > 0) {
        const natter_msg_t *first = *NATTER_VEC_AT(page, natter_msg_t *, 0),
                           *last = *NATTER_VEC_AT(page, natter_msg_t *, page->len - 1);
        natter_store_t *store = job->app->store;
        rc = natter_store_reactions_range(store, chat_id, first->id, last->id, &rows);
    }
    const natter_reaction_row_t *row = rows.items; /* NULL when there are none: indexed, never offset */
    size_t r = 0;
    for (size_t i = 0; i < page->len && rc == NATTER_OK; i++) {
        const natter_msg_t *m = *NATTER_VEC_AT(page, natter_msg_t *, i);
        while (r < rows.len && row[r].message_id < m->id) /* rows of a message not on the page */
            r++;
        size_t mine = r;
        while (r < rows.len && row[r].message_id == m->id)
            r++;
        json_t *o = natter_msg_json(m);
        if (r > mine) /* none: no "reactions" (a message's shape stays what its push was) */
            json_object_set_new(o, "reactions", natter_reactions_json(&row[mine], r - mine, viewer));
        json_array_append_new(arr, o);
    }
    natter_vec_free(&rows);
    return rc == NATTER_OK ? 0 : natter_api_fail_store(job, rc);
}

static int marker_cmp(const void *a, const void *b)
{
    uint64_t x = ((const natter_read_marker_t *)a)->user_id, y = ((const natter_read_marker_t *)b)->user_id;
    return (x > y) - (x < y);
}

/* Each member's read marker found by binary search: a chat may have
 * thousands of members, and every one of them a marker. */
int natter_events_members_json(natter_api_job_t *job, uint64_t chat_id, json_t *members)
{
    natter_vec_t markers;
    natter_vec_init(&markers, sizeof(natter_read_marker_t));
    natter_store_t *store = job->app->store;
    int rc = natter_store_read_markers(store, chat_id, &markers);
    if (markers.len > 1)
        qsort(markers.items, markers.len, sizeof(natter_read_marker_t), marker_cmp);
    size_t i;
    json_t *u;
    json_array_foreach(members, i, u) {
        natter_read_marker_t key = {0};
        json_t *id = json_object_get(u, "id");
        natter_parse_u64(json_string_value(id), json_string_length(id), &key.user_id);
        const natter_read_marker_t *r =
            markers.len > 0 ? bsearch(&key, markers.items, markers.len, sizeof(key), marker_cmp) : NULL;
        json_object_set_new(u, "online", json_boolean(natter_ephemeral_online(job->app, key.user_id)));
        json_object_set_new(u, "last_read_id", r != NULL ? json_id(r->message_id) : json_null());
    }
    natter_vec_free(&markers);
    return rc == NATTER_OK ? 0 : natter_api_fail_store(job, rc);
}
