/*
 * Message posts (see post.h): one validation, two ways in (the loop's hot
 * path and the worker), one way out (the message's outcome, answered by
 * the job's loop).
 */
#include "ingest/post.h"
#include "core/error.h"
#include "core/jsonr.h"
#include "core/metrics.h"
#include "core/token.h"
#include "core/util.h"
#include "loop.h"
#include "natter.h"

#include <stdlib.h>
#include <string.h>

/* The keys a post reads. */
enum { F_CONTENT, F_CLIENT_ID, F_TYPE, F_CHAT_ID, NFIELDS };

/* A body at most this long decodes its escapes on the stack. */
#define SCRATCH_ON_STACK 4096

/* A post's fields: read by jsonr when the body is a flat object (the usual
 * case), else by jansson; they point into the body, the scratch buffer or
 * root, which live as long as the post_body_t. */
typedef struct {
    natter_jsonr_field_t f[NFIELDS];
    json_t *root;  /* jansson's tree, when jansson read it */
    char *scratch; /* decoded escapes: the caller's stack buffer, or heap */
    char *heap;
    uint64_t chat_id; /* a WebSocket send names its chat; an HTTP post has it in the path */
} post_body_t;

static void body_init(post_body_t *p, char *stack, size_t len)
{
    memset(p, 0, sizeof(*p));
    p->f[F_CONTENT].key = "content";
    p->f[F_CLIENT_ID].key = "client_id";
    p->f[F_TYPE].key = "type";
    p->f[F_CHAT_ID].key = "chat_id";
    p->scratch = len <= SCRATCH_ON_STACK ? stack : (p->heap = xmalloc(len));
}

static void body_free(post_body_t *p)
{
    json_decref(p->root);
    free(p->heap);
}

/* The fields from jansson's tree, for a body jsonr left to it. */
static int read_with_jansson(natter_api_job_t *job, const char *body, size_t len, post_body_t *p)
{
    if ((p->root = natter_api_body_object(job, body, len)) == NULL)
        return -1;
    for (int i = 0; i < NFIELDS; i++) {
        json_t *v = json_object_get(p->root, p->f[i].key);
        p->f[i].kind = v == NULL ? NATTER_JSONR_ABSENT : json_is_string(v) ? NATTER_JSONR_STRING : NATTER_JSONR_OTHER;
        p->f[i].value = json_is_string(v) ? json_string_value(v) : NULL;
        p->f[i].len = json_is_string(v) ? json_string_length(v) : 0;
    }
    return 0;
}

static int is_ws(const natter_api_job_t *job)
{
    return job->route.action == NATTER_A_WS_SEND;
}

static int is_string(const post_body_t *p, int i)
{
    return p->f[i].kind == NATTER_JSONR_STRING;
}

/* A WebSocket send's client_id, when it is a string that fits, onto the job:
 * an error frame echoes it. */
static void echo_client_id(natter_api_job_t *job, const post_body_t *p)
{
    const natter_jsonr_field_t *cid = &p->f[F_CLIENT_ID];
    if (is_string(p, F_CLIENT_ID) && cid->len <= NATTER_CLIENT_ID_MAX) {
        job->client_id_len = cid->len;
        memcpy(job->client_id, cid->value, cid->len);
    }
}

/* Parses and validates; on failure the job is answered (400) and -1 returned. */
static int parse(natter_api_job_t *job, const char *body, size_t len, post_body_t *p)
{
    p->chat_id = job->route.chat_id;
    if (len == 0 || !natter_utf8_valid(body, len) ||
        natter_jsonr_flat(body, len, p->f, NFIELDS, p->scratch) != NATTER_JSONR_OK) {
        if (read_with_jansson(job, body, len, p) != 0)
            return -1;
    }
    const natter_jsonr_field_t *content = &p->f[F_CONTENT], *cid = &p->f[F_CLIENT_ID];
    if (is_ws(job)) {
        echo_client_id(job, p);
        const natter_jsonr_field_t *type = &p->f[F_TYPE], *chat = &p->f[F_CHAT_ID];
        if (!is_string(p, F_TYPE) || type->len != 4 || memcmp(type->value, "send", 4) != 0)
            return natter_api_fail(job, 400, "invalid_request", "type must be \"send\" or \"typing\"");
        if (!is_string(p, F_CHAT_ID) || natter_parse_u64(chat->value, chat->len, &p->chat_id) != 0 || p->chat_id == 0)
            return natter_api_fail(job, 400, "invalid_request", "chat_id must be a chat id string");
    }
    if (!is_string(p, F_CONTENT) || natter_utf8_blank(content->value, content->len))
        return natter_api_fail(job, 400, "invalid_request", "content must be a non-empty string");
    if (natter_utf8_count(content->value, content->len) > NATTER_CONTENT_MAX_CHARS)
        return natter_api_fail(job, 400, "content_too_long", "content is limited to 4000 characters");
    /* over HTTP client_id is optional; a WebSocket send needs it: its ack
     * names the send by it, in whatever order the acks come */
    if ((cid->kind != NATTER_JSONR_ABSENT || is_ws(job)) &&
        (!is_string(p, F_CLIENT_ID) || cid->len == 0 || cid->len > NATTER_CLIENT_ID_MAX))
        return natter_api_fail(job, 400, "invalid_request", "client_id must be a string of 1-64 bytes in UTF-8");
    return 0;
}

/* Runs on the thread that learns the outcome (the store consumer, the
 * log's delivery thread): records it and hands the job to its loop. */
static void post_durable(natter_msg_t *msg, int status, void *arg)
{
    natter_api_job_t *job = arg;
    int64_t now = natter_now_ns();
    natter_hist_observe(&natter_m()->log_append, now > msg->ingest_ns ? (uint64_t)(now - msg->ingest_ns) : 0);
    job->msg_id = msg->id;
    job->created_at_ms = msg->created_at_ms;
    job->durable_status = status;
    natter_loop_ack(job->loop, job);
}

static void client_key(const natter_api_job_t *job, natter_client_id_key_t *k)
{
    natter_client_id_key(k, job->sender_id, job->chat_id, job->client_id, job->client_id_len);
}

/* Answers a post that repeats a client_id with the first message, durable. */
static void answer_repeat(natter_api_job_t *job, uint64_t msg_id, int64_t created_at_ms)
{
    job->msg_id = msg_id;
    job->created_at_ms = created_at_ms;
    job->durable_status = NATTER_OK;
    natter_post_answer(job);
}

static void on_durable_of(natter_api_job_t *job, natter_msg_t *msg)
{
    msg->ingest_ns = natter_now_ns();
    msg->on_durable = post_durable;
    msg->durable_arg = job;
}

/* The post repeats holder's client_id (holder is the caller's no more): it
 * is answered with holder once holder is durable. Stored: at once. Not yet
 * (in the log, or its record lost): holder goes out again with its id, and
 * the answer waits for it; a store keeps one copy of an id. 1 when parked. */
static int repeat_of(natter_api_job_t *job, natter_msg_t *holder)
{
    natter_app_t *app = job->app;
    int rc = natter_store_message_in_chat(app->store, holder->chat_id, holder->id);
    if (rc == NATTER_OK || rc != NATTER_ENOTFOUND || holder->content_len == 0) {
        if (rc == NATTER_OK)
            answer_repeat(job, holder->id, holder->created_at_ms);
        else
            natter_api_fail_store(job, rc == NATTER_ENOTFOUND ? NATTER_EIO : rc);
        free(holder);
        return 0;
    }
    on_durable_of(job, holder);
    if ((rc = natter_log_append_existing(app->log, holder)) != NATTER_OK) {
        free(holder);
        natter_api_fail_log(job, rc);
        return 0;
    }
    return 1;
}

/* A post with a client_id on a log that claims at ingest: its message
 * takes its id in log order, held, and waits for the claimer (claims.h). */
static natter_post_result_t hold_for_claim(natter_api_job_t *job, natter_msg_t *msg)
{
    natter_app_t *app = job->app;
    int rc = natter_log_append_held(app->log, msg);
    if (rc != NATTER_OK) {
        free(msg);
        natter_api_fail_log(job, rc);
        return NATTER_POST_ANSWERED;
    }
    job->held = msg;
    if (natter_claims_submit(&app->claims, job) != NATTER_OK) {
        job->held = NULL;
        natter_log_release(app->log, msg, NATTER_EUNAVAIL);
        free(msg);
        natter_count(&natter_m()->busy_rejected, 1);
        job->retry_after = 1;
        natter_api_fail(job, 503, "busy", "the server is busy, try again");
        return NATTER_POST_ANSWERED;
    }
    return NATTER_POST_PARKED;
}

void natter_post_claimed(natter_api_job_t *job, int rc, natter_msg_t *holder)
{
    natter_msg_t *msg = job->held;
    job->held = NULL;
    natter_log_release(job->app->log, msg, rc); /* won: it goes out, and is answered once durable */
    if (rc == NATTER_OK)
        return;
    free(msg);
    if (rc == NATTER_ECONFLICT && repeat_of(job, holder))
        return;
    if (rc != NATTER_ECONFLICT)
        natter_api_fail_store(job, rc);
    natter_loop_job_done(job->loop, job);
}

/* Rate-limits, answers a known repeat, and appends, the message carrying
 * the chat's nto members as its recipients (message.h): PARKED or ANSWERED. */
static natter_post_result_t append(natter_api_job_t *job, const post_body_t *p, uint64_t sender, const uint64_t *to,
                                   size_t nto)
{
    natter_app_t *app = job->app;
    uint32_t wait = natter_ratelimit_take(&app->ratelimit, sender, natter_mono_ms());
    if (wait > 0) {
        job->retry_after = wait;
        natter_api_fail(job, 429, "rate_limited", "too many messages, slow down");
        return NATTER_POST_ANSWERED;
    }
    const natter_jsonr_field_t *content = &p->f[F_CONTENT], *cid = &p->f[F_CLIENT_ID];
    job->chat_id = p->chat_id;
    job->sender_id = sender;
    job->client_id_len = is_string(p, F_CLIENT_ID) ? cid->len : 0;
    if (job->client_id_len > 0)
        memcpy(job->client_id, cid->value, job->client_id_len);
    int claims = job->client_id_len > 0 && natter_log_claims_at_ingest(app->log);
    if (job->client_id_len > 0) {
        natter_client_id_key_t k;
        uint64_t id;
        int64_t at;
        client_key(job, &k);
        if (natter_client_ids_get(&app->client_ids, &k, natter_now_ms(), &id, &at)) {
            answer_repeat(job, id, at);
            return NATTER_POST_ANSWERED;
        }
    }
    natter_msg_t *msg = natter_msg_new_to(p->chat_id, sender, content->value, content->len, job->client_id,
                                          job->client_id_len, to, nto);
    on_durable_of(job, msg);
    if (claims)
        return hold_for_claim(job, msg);
    int rc = natter_log_append(app->log, msg);
    if (rc != NATTER_OK) { /* full (--log-queue), or the broker away */
        free(msg);
        natter_api_fail_log(job, rc);
        return NATTER_POST_ANSWERED;
    }
    return NATTER_POST_PARKED;
}

/* The poster, from the session cache alone (no store): 1 and *user, or 0. */
static int cached_poster(natter_api_job_t *job, uint64_t *user)
{
    if (is_ws(job)) {
        *user = job->ws_user_id;
        return 1;
    }
    if (job->token_len == 0 || !natter_token_well_formed(job->token, job->token_len))
        return 0;
    return natter_session_cache_get_id(&job->app->sessions, job->token, natter_now_ms(), 0, user);
}

void natter_post_refuse(natter_api_job_t *job, const char *body, size_t len, int status, const char *code,
                        const char *message)
{
    post_body_t p;
    char stack[SCRATCH_ON_STACK];
    body_init(&p, stack, len);
    if (len > 0 && natter_utf8_valid(body, len) &&
        natter_jsonr_flat(body, len, p.f, NFIELDS, p.scratch) == NATTER_JSONR_OK)
        echo_client_id(job, &p);
    body_free(&p);
    natter_api_fail(job, status, code, message);
}

natter_post_result_t natter_post_on_loop(natter_api_job_t *job, const char *body, size_t len)
{
    uint64_t sender, to[NATTER_MSG_RECIPIENTS_MAX];
    size_t nto;
    post_body_t p;
    char stack[SCRATCH_ON_STACK];
    natter_post_result_t result = NATTER_POST_ANSWERED;
    if (!cached_poster(job, &sender))
        return NATTER_POST_MISS;
    body_init(&p, stack, len);
    if (parse(job, body, len, &p) == 0) {
        /* a member posts here (from a fresh entry, or an expired one another post is reloading);
         * not a member, or not known, is the worker's to say, and the worker reloads */
        if (natter_members_cache_peek_hot(&job->app->members, p.chat_id, sender, to, NATTER_MSG_RECIPIENTS_MAX,
                                          &nto) != 1)
            result = NATTER_POST_MISS;
        else
            result = append(job, &p, sender, to, nto);
    }
    body_free(&p);
    if (result == NATTER_POST_PARKED && natter_log_has_idle(job->app->log))
        job->loop->parked++;
    return result;
}

int natter_post_run(natter_api_job_t *job)
{
    uint64_t me;
    post_body_t p;
    char stack[SCRATCH_ON_STACK];
    int parked = 0;
    if (is_ws(job))
        me = job->ws_user_id;
    else if (natter_api_authenticate_id(job, &me) != 0)
        return 0;
    body_init(&p, stack, job->body_len);
    if (parse(job, job->body, job->body_len, &p) == 0) {
        /* a member in a fresh entry: one look answers and gives the recipients; otherwise the access
         * check loads the entry (or answers 403/404), and an invalidation since leaves them out */
        uint64_t to[NATTER_MSG_RECIPIENTS_MAX];
        size_t nto;
        int member = natter_members_cache_peek_ids(&job->app->members, p.chat_id, me, to,
                                                   NATTER_MSG_RECIPIENTS_MAX, &nto) == 1;
        if (member || natter_api_chat_access(job, me, p.chat_id, NULL) == 0) {
            if (!member && natter_members_cache_peek_ids(&job->app->members, p.chat_id, me, to,
                                                         NATTER_MSG_RECIPIENTS_MAX, &nto) != 1)
                nto = 0;
            parked = append(job, &p, me, to, nto) == NATTER_POST_PARKED;
        }
    }
    body_free(&p);
    return parked;
}

void natter_post_answer(natter_api_job_t *job)
{
    if (job->durable_status != NATTER_OK) {
        natter_api_fail(job, 503, "unavailable", "the message could not be stored, try again");
        return;
    }
    if (job->client_id_len > 0) { /* a repeat of it is answered from here on, without the store */
        natter_client_id_key_t k;
        client_key(job, &k);
        natter_client_ids_put(&job->app->client_ids, &k, natter_now_ms(), job->msg_id, job->created_at_ms);
    }
    /* written by hand: this is the answer to every message */
    natter_jsonw_t w = {0};
    int ack = is_ws(job);
    natter_jsonw_raw(&w, ack ? "{\"type\":\"ack\"," : "{", ack ? 14 : 1);
    natter_jsonw_key(&w, "id");
    natter_jsonw_id(&w, job->msg_id);
    natter_jsonw_raw(&w, ",", 1);
    natter_jsonw_key(&w, "chat_id");
    natter_jsonw_id(&w, job->chat_id);
    if (!ack) {
        natter_jsonw_raw(&w, ",", 1);
        natter_jsonw_key(&w, "sender_id");
        natter_jsonw_id(&w, job->sender_id);
        natter_jsonw_raw(&w, ",", 1);
        natter_jsonw_key(&w, "created_at");
        natter_jsonw_time(&w, job->created_at_ms);
    }
    if (job->client_id_len > 0) {
        natter_jsonw_raw(&w, ",", 1);
        natter_jsonw_key(&w, "client_id");
        natter_jsonw_string(&w, job->client_id, job->client_id_len);
    }
    natter_jsonw_raw(&w, "}", 1);
    natter_api_reply_written(job, ack ? 200 : 202, &w);
}
