/*
 * The API handlers: one function per action, run on a worker thread (see
 * api.h for the job's journey), and what they share. Message posts live in
 * post.c. Each handler validates everything before it changes anything, so
 * a bad request changes nothing.
 */
#include "ingest/api.h"
#include "core/error.h"
#include "core/id.h"
#include "core/message.h"
#include "core/password.h"
#include "core/token.h"
#include "core/util.h"
#include "consumer/consumer.h"
#include "gateway/ephemeral.h"
#include "ingest/events.h"
#include "ingest/post.h"
#include "lease.h"
#include "loop.h"
#include "natter.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_LIMIT_DEFAULT 50
#define HISTORY_LIMIT_MAX 200
#define CHAT_NAME_MAX_CHARS 100
#define PASSWORD_MIN 8
#define PASSWORD_MAX 256
#define WS_TICKET_TTL_MS 30000
/* How long a read waits for this node's fan-out to pass the posts it has
 * acknowledged (log.h, fanout_wait_own): up to --kafka-fanout-wait (at
 * most NATTER_KAFKA_FANOUT_WAIT_MAX_MS, 20 by default) plus a few
 * milliseconds normally; the bound is for a fan-out far behind or a
 * partition between leaders (then the partition counts as stalled and
 * later reads there do not wait). */
#define OWN_WRITES_WAIT_MS 500
_Static_assert(OWN_WRITES_WAIT_MS >= 2 * NATTER_KAFKA_FANOUT_WAIT_MAX_MS,
               "a read must outwait the longest fan-out gathering and the fetch after it");

natter_api_job_t *natter_api_job_new(natter_loop_t *loop, const natter_route_t *route)
{
    natter_api_job_t *job = xcalloc(1, sizeof(*job));
    job->loop = loop;
    job->app = loop->app;
    job->route = *route;
    job->route.query = NULL; /* points into the request; a worker gets a copy */
    job->work.run = natter_api_run;
    return job;
}

void natter_api_job_free(natter_api_job_t *job)
{
    free(job->body);
    free(job->query);
    free(job->resp);
    free(job);
}

void natter_api_job_copy_request(natter_api_job_t *job, const char *body, size_t body_len, const char *query,
                                 size_t query_len)
{
    if (body != NULL && body_len > 0) {
        job->body = xstrndup(body, body_len);
        job->body_len = body_len;
    }
    if (query != NULL) {
        job->query = xstrndup(query, query_len);
        job->query_len = query_len;
    }
}

static void finish(natter_api_job_t *job)
{
    natter_loop_job_done(job->loop, job);
}

static int is_ws_send(const natter_api_job_t *job)
{
    return job->route.action == NATTER_A_WS_SEND || job->route.action == NATTER_A_WS_TYPING;
}

/* Sets the answer to a JSON value (stolen); NULL means no body. */
static void reply(natter_api_job_t *job, int status, json_t *body)
{
    free(job->resp);
    job->resp = NULL;
    job->resp_len = 0;
    job->status = status;
    if (body != NULL) {
        job->resp = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        job->resp_len = strlen(job->resp);
        json_decref(body);
    }
}

void natter_api_reply_json(natter_api_job_t *job, int status, json_t *body)
{
    reply(job, status, body);
}

void natter_api_reply_written(natter_api_job_t *job, int status, natter_jsonw_t *w)
{
    free(job->resp);
    job->status = status;
    job->resp = w->p;
    job->resp_len = w->len;
}

int natter_api_fail(natter_api_job_t *job, int status, const char *code, const char *message)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (is_ws_send(job)) {
        json_t *frame = json_pack("{s:s}", "type", "error");
        if (job->client_id_len > 0)
            json_object_set_new(frame, "client_id", json_stringn(job->client_id, job->client_id_len));
        json_object_set_new(frame, "error", err);
        if (job->retry_after > 0) /* what HTTP's Retry-After says */
            json_object_set_new(frame, "retry_after", json_integer(job->retry_after));
        reply(job, status, frame);
    } else {
        reply(job, status, json_pack("{s:o}", "error", err));
    }
    return -1;
}

int natter_api_fail_store(natter_api_job_t *job, int rc)
{
    if (rc == NATTER_EUNAVAIL || rc == NATTER_ETIMEDOUT)
        return natter_api_fail(job, 503, "unavailable", "the store is unavailable, try again");
    return natter_api_fail(job, 503, "unavailable", "the store failed to answer");
}

int natter_api_fail_log(natter_api_job_t *job, int rc)
{
    job->retry_after = 1;
    if (rc != NATTER_EFULL)
        return natter_api_fail(job, 503, "unavailable", "the message log is unavailable, try again");
    natter_count(&natter_m()->busy_rejected, 1);
    return natter_api_fail(job, 503, "busy", "the server is busy, try again");
}

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

json_t *natter_api_body_object(natter_api_job_t *job, const char *body, size_t len)
{
    json_error_t jerr;
    if (len == 0) {
        natter_api_fail(job, 400, "invalid_json", "a JSON object body is required");
        return NULL;
    }
    if (!natter_utf8_valid(body, len)) {
        natter_api_fail(job, 400, "invalid_json", "the body is not valid UTF-8");
        return NULL;
    }
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        char msg[200];
        if (strstr(jerr.text, "NUL") != NULL)
            snprintf(msg, sizeof(msg), "strings must not contain U+0000");
        else
            snprintf(msg, sizeof(msg), "malformed JSON: %s", jerr.text);
        natter_api_fail(job, 400, "invalid_json", msg);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        natter_api_fail(job, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

int natter_api_field_string(json_t *o, const char *key, const char **s, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return 0;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/* 0 when the request carries a well-formed bearer token, else answered 401. */
static int bearer(natter_api_job_t *job)
{
    if (job->token_len == 0)
        return natter_api_fail(job, 401, "unauthorized", "an Authorization: Bearer token is required");
    if (!natter_token_well_formed(job->token, job->token_len))
        return natter_api_fail(job, 401, "unauthorized", "the token is not valid");
    return 0;
}

/* A cached session's user: whole, or (id_only) its id and end alone. */
static int cached(natter_app_t *app, const char *token, int64_t now, int stale_ok, natter_user_t *u, int id_only)
{
    return id_only ? natter_session_cache_get_id(&app->sessions, token, now, stale_ok, &u->id)
                   : natter_session_cache_get(&app->sessions, token, now, stale_ok, u);
}

/* The caller's user from the session cache or the store; with id_only,
 * only u->id is filled (one store read fewer on Cassandra). store_first:
 * the store is asked even when the cache knows the session (a logout on
 * another node drops only that node's cache), the cache only when the
 * store is away. */
static int authenticate(natter_api_job_t *job, natter_user_t *u, int id_only, int store_first)
{
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    if (bearer(job) != 0)
        return -1;
    natter_app_t *app = job->app;
    int64_t now = natter_now_ms();
    if (!store_first && cached(app, job->token, now, 0, u, id_only))
        return 0;
    natter_token_hash(job->token, job->token_len, hash);
    uint64_t generation = natter_session_cache_generation(&app->sessions, job->token);
    int rc = id_only ? natter_store_session_user_id(app->store, hash, now, &u->id, &u->expires_at_ms)
                     : natter_store_session_user(app->store, hash, now, u);
    if (rc == NATTER_OK) {
        if (id_only)
            natter_session_cache_put_id(&app->sessions, job->token, u->id, u->expires_at_ms, generation);
        else
            natter_session_cache_put(&app->sessions, job->token, u, generation);
        return 0;
    }
    if (rc == NATTER_ENOTFOUND)
        return natter_api_fail(job, 401, "unauthorized", "the token is unknown or expired");
    if (cached(app, job->token, now, 1, u, id_only))
        return 0; /* the store is away: a session it confirmed before still holds */
    return natter_api_fail_store(job, rc);
}

int natter_api_authenticate(natter_api_job_t *job, natter_user_t *user)
{
    return authenticate(job, user, 0, 0);
}

int natter_api_authenticate_id(natter_api_job_t *job, uint64_t *user_id)
{
    natter_user_t u;
    int rc = authenticate(job, &u, 1, 0);
    if (rc == 0)
        *user_id = u.id;
    return rc;
}

int natter_api_chat_access(natter_api_job_t *job, uint64_t user_id, uint64_t chat_id, natter_chat_t *chat)
{
    natter_app_t *app = job->app;
    int member = natter_members_cache_has(&app->members, chat_id, user_id);
    if (member < 0)
        return natter_api_fail_store(job, member);
    if (member && chat == NULL)
        return 0;
    int rc = natter_store_chat_get(app->store, chat_id, chat ? chat : &(natter_chat_t){0});
    if (rc == NATTER_ENOTFOUND)
        return natter_api_fail(job, 404, "not_found", "no such chat");
    if (rc != NATTER_OK)
        return natter_api_fail_store(job, rc);
    return member ? 0 : natter_api_fail(job, 403, "forbidden", "you are not a member of this chat");
}

static json_t *json_user(const natter_user_t *u)
{
    return json_pack("{s:o, s:s}", "id", json_id(u->id), "username", u->username);
}

/* Validates the body's credentials (a new password's length too, when
 * creating), then takes an attempt from the username's limit (429 past
 * it): before any hash is computed, and not for a request refused anyway. */
static int validate_credentials(natter_api_job_t *job, json_t *body, int creating, const char **name, const char **pw,
                                size_t *pwlen)
{
    size_t nlen;
    if (!natter_api_field_string(body, "username", name, &nlen) || !natter_api_field_string(body, "password", pw, pwlen))
        return natter_api_fail(job, 400, "invalid_request", "username and password are required strings");
    if (!natter_username_valid(*name, nlen))
        return natter_api_fail(job, 400, "invalid_request", "username must be 1-32 characters of A-Z a-z 0-9 _ . -");
    if (creating && (*pwlen < PASSWORD_MIN || *pwlen > PASSWORD_MAX))
        return natter_api_fail(job, 400, "invalid_request", "password must be 8-256 bytes");
    if ((job->retry_after = natter_auth_take_username(&job->app->auth, *name, job->client_address, natter_mono_ms())) > 0)
        return natter_api_fail(job, 429, "rate_limited", "too many attempts for this username from this address, slow down");
    return 0;
}

static void user_create(natter_api_job_t *job)
{
    natter_app_t *app = job->app;
    json_t *body = natter_api_body_object(job, job->body, job->body_len);
    const char *name, *pw;
    size_t pwlen;
    natter_user_t u = {0};
    if (body == NULL || validate_credentials(job, body, 1, &name, &pw, &pwlen) != 0)
        goto Done;
    snprintf(u.username, sizeof(u.username), "%s", name);
    natter_password_cost_t cost = {app->cfg.argon2_memory_kib, app->cfg.argon2_passes};
    if (natter_password_hash(&cost, pw, pwlen, u.pwhash) != NATTER_OK) {
        natter_api_fail(job, 503, "unavailable", "could not hash the password");
        goto Done;
    }
    u.id = natter_app_next_id(app);
    int rc = natter_store_user_create(app->store, &u, natter_now_ms());
    if (rc == NATTER_ECONFLICT)
        natter_api_fail(job, 409, "username_taken", "that username is taken");
    else if (rc != NATTER_OK)
        natter_api_fail_store(job, rc);
    else
        reply(job, 201, json_user(&u));
Done:
    json_decref(body);
}

static void session_create(natter_api_job_t *job)
{
    natter_app_t *app = job->app;
    json_t *body = natter_api_body_object(job, job->body, job->body_len);
    const char *name, *pw;
    size_t pwlen;
    natter_user_t u;
    char token[NATTER_TOKEN_LEN + 1];
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    if (body == NULL || validate_credentials(job, body, 0, &name, &pw, &pwlen) != 0)
        goto Done;
    int rc = natter_store_user_by_name(app->store, name, &u);
    if (rc != NATTER_OK && rc != NATTER_ENOTFOUND) {
        natter_api_fail_store(job, rc);
        goto Done;
    }
    /* an unknown user costs the same hash as a wrong password, and gets the same answer */
    if (!natter_password_verify(rc == NATTER_OK ? u.pwhash : app->auth.dummy_hash, pw, pwlen) || rc != NATTER_OK) {
        natter_api_fail(job, 401, "invalid_credentials", "wrong username or password");
        goto Done;
    }
    natter_auth_refund_username(&app->auth, name, job->client_address, natter_mono_ms());
    if (natter_token_new(token) != NATTER_OK) {
        natter_api_fail(job, 503, "unavailable", "no randomness for a token");
        goto Done;
    }
    natter_token_hash(token, NATTER_TOKEN_LEN, hash);
    int64_t expires = natter_now_ms() + (int64_t)app->cfg.session_ttl_s * 1000;
    if ((rc = natter_store_session_create(app->store, hash, u.id, expires)) != NATTER_OK) {
        natter_api_fail_store(job, rc);
        goto Done;
    }
    u.expires_at_ms = expires; /* the client's next request here needs no store read */
    natter_session_cache_put(&app->sessions, token, &u, natter_session_cache_generation(&app->sessions, token));
    reply(job, 201,
          json_pack("{s:s, s:o, s:o}", "token", token, "user_id", json_id(u.id), "expires_at", json_time(expires)));
Done:
    json_decref(body);
}

static void session_delete(natter_api_job_t *job)
{
    natter_user_t u;
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    if (natter_api_authenticate(job, &u) != 0)
        return;
    natter_token_hash(job->token, job->token_len, hash);
    int rc = natter_store_session_delete(job->app->store, hash);
    if (rc != NATTER_OK) {
        natter_api_fail_store(job, rc);
        return;
    }
    /* after the delete: a lookup that read the store before it cannot put the session back */
    natter_session_cache_drop(&job->app->sessions, job->token);
    natter_ephemeral_session_end(job->app, u.id, hash);
    reply(job, 204, NULL);
}

static void me(natter_api_job_t *job)
{
    natter_user_t u;
    if (natter_api_authenticate(job, &u) == 0 && natter_api_reads_limited(job, u.id) == 0)
        reply(job, 200, json_user(&u));
}

/* Any user's name, to any user: a former member's messages stay in the
 * chat's history, and their sender is named by id only. */
static void user_get(natter_api_job_t *job)
{
    natter_user_t me, u;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_reads_limited(job, me.id) != 0)
        return;
    int rc = natter_store_user_by_id(job->app->store, job->route.user_id, &u);
    if (rc == NATTER_ENOTFOUND)
        natter_api_fail(job, 404, "not_found", "no such user");
    else if (rc != NATTER_OK)
        natter_api_fail_store(job, rc);
    else
        reply(job, 200, json_user(&u));
}

static json_t *json_chat(natter_api_job_t *job, const natter_chat_t *chat)
{
    natter_vec_t members;
    natter_vec_init(&members, sizeof(natter_user_t));
    int rc = natter_store_chat_members(job->app->store, chat->id, &members);
    if (rc != NATTER_OK) {
        natter_vec_free(&members);
        natter_api_fail_store(job, rc);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < members.len; i++)
        json_array_append_new(arr, json_user(NATTER_VEC_AT(&members, natter_user_t, i)));
    natter_vec_free(&members);
    if (natter_events_members_json(job, chat->id, arr) != 0) {
        json_decref(arr);
        return NULL;
    }
    return json_pack("{s:o, s:s, s:o, s:o}", "id", json_id(chat->id), "name", chat->name, "members", arr,
                     "created_at", json_time(chat->created_at_ms));
}

static int add_unique(natter_vec_t *ids, natter_vec_t *users, const natter_user_t *u)
{
    for (size_t i = 0; i < ids->len; i++)
        if (*NATTER_VEC_AT(ids, uint64_t, i) == u->id)
            return 0;
    *(uint64_t *)natter_vec_push(ids) = u->id;
    *(natter_user_t *)natter_vec_push(users) = *u;
    return 1;
}

static int by_username(const void *a, const void *b)
{
    return strcmp(((const natter_user_t *)a)->username, ((const natter_user_t *)b)->username);
}

/* A chat just stored, as GET /chats/{id} shows it, from what creating it
 * knew (its members by username, none has read anything): no store read
 * that could fail after the chat exists. */
static json_t *json_new_chat(natter_app_t *app, const natter_chat_t *chat, natter_vec_t *users)
{
    qsort(users->items, users->len, sizeof(natter_user_t), by_username);
    json_t *arr = json_array();
    for (size_t i = 0; i < users->len; i++) {
        const natter_user_t *u = NATTER_VEC_AT(users, natter_user_t, i);
        json_t *o = json_user(u);
        json_object_set_new(o, "online", json_boolean(natter_ephemeral_online(app, u->id)));
        json_object_set_new(o, "last_read_id", json_null());
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o, s:s, s:o, s:o}", "id", json_id(chat->id), "name", chat->name, "members", arr,
                     "created_at", json_time(chat->created_at_ms));
}

static int limited(natter_api_job_t *job, natter_ratelimit_t *rl, uint64_t user, const char *message)
{
    uint32_t wait = natter_ratelimit_take(rl, user, natter_mono_ms());
    if (wait == 0)
        return 0;
    job->retry_after = wait;
    return natter_api_fail(job, 429, "rate_limited", message);
}

int natter_api_rate_limit(natter_api_job_t *job, natter_ratelimit_t *rl, uint64_t user)
{
    return limited(job, rl, user, "too many changes, slow down");
}

int natter_api_reads_limited(natter_api_job_t *job, uint64_t user)
{
    return limited(job, &job->app->ratelimit_reads, user, "too many reads, slow down");
}

/* The API's writes other than posts (a WebSocket ticket, a chat, a member
 * change) each cost the store a durable write, and a chat or a member
 * added reaches other users' lists and sockets: --rate-limit-writes a
 * minute per user. */
static int writes_limited(natter_api_job_t *job, uint64_t user)
{
    return natter_api_rate_limit(job, &job->app->ratelimit_writes, user);
}

static void chat_create(natter_api_job_t *job)
{
    natter_app_t *app = job->app;
    natter_user_t me, u;
    natter_chat_t chat = {0};
    natter_vec_t ids, users;
    natter_vec_init(&ids, sizeof(uint64_t));
    natter_vec_init(&users, sizeof(natter_user_t));
    json_t *body = NULL, *members, *m;
    const char *name;
    size_t nlen, i;
    if (natter_api_authenticate(job, &me) != 0 || (body = natter_api_body_object(job, job->body, job->body_len)) == NULL)
        goto Done;
    if (!natter_api_field_string(body, "name", &name, &nlen) || natter_utf8_blank(name, nlen) ||
        natter_utf8_count(name, nlen) > CHAT_NAME_MAX_CHARS) {
        natter_api_fail(job, 400, "invalid_request", "name must be a string of 1-100 characters");
        goto Done;
    }
    members = json_object_get(body, "members");
    if (members != NULL && !json_is_array(members)) {
        natter_api_fail(job, 400, "invalid_request", "members must be an array of usernames");
        goto Done;
    }
    json_array_foreach(members, i, m) {
        if (!json_is_string(m) || !natter_username_valid(json_string_value(m), json_string_length(m))) {
            natter_api_fail(job, 400, "invalid_request", "members must be an array of usernames");
            goto Done;
        }
    }
    if (json_array_size(members) >= app->cfg.max_members) {
        char msg[96];
        snprintf(msg, sizeof(msg), "members: at most %u usernames (a chat has at most %u members)",
                 app->cfg.max_members - 1, app->cfg.max_members);
        natter_api_fail(job, 400, "invalid_request", msg);
        goto Done;
    }
    if (writes_limited(job, me.id) != 0)
        goto Done;
    add_unique(&ids, &users, &me);
    json_array_foreach(members, i, m) {
        int rc = natter_store_user_by_name(app->store, json_string_value(m), &u);
        if (rc == NATTER_ENOTFOUND) {
            char msg[96];
            snprintf(msg, sizeof(msg), "no user named '%s'", json_string_value(m));
            natter_api_fail(job, 404, "not_found", msg);
            goto Done;
        }
        if (rc != NATTER_OK) {
            natter_api_fail_store(job, rc);
            goto Done;
        }
        add_unique(&ids, &users, &u);
    }
    chat.id = natter_app_next_id(app);
    chat.created_by = me.id;
    chat.created_at_ms = natter_id_time_ms(chat.id);
    memcpy(chat.name, name, nlen);
    int rc = natter_store_chat_create(app->store, &chat, ids.items, ids.len);
    if (rc != NATTER_OK) {
        natter_api_fail_store(job, rc);
        goto Done;
    }
    natter_ephemeral_membership(app, chat.id, me.id, me.id, "created"); /* its members learn of it at once */
    reply(job, 201, json_new_chat(app, &chat, &users));
Done:
    natter_vec_free(&ids);
    natter_vec_free(&users);
    json_decref(body);
}

static void chat_get(natter_api_job_t *job)
{
    natter_user_t me;
    natter_chat_t chat;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_reads_limited(job, me.id) != 0 ||
        natter_api_chat_access(job, me.id, job->route.chat_id, &chat) != 0)
        return;
    json_t *out = json_chat(job, &chat);
    if (out != NULL)
        reply(job, 200, out);
}

/* Answers 409 chat_full (NATTER_ECONFLICT) when the chat has --max-members
 * and user is not one of them, or a store failure; NATTER_OK otherwise. By
 * the member list the node has: two adds at once may pass it by one. */
static int chat_full(natter_api_job_t *job, uint64_t user_id)
{
    natter_app_t *app = job->app;
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    int rc = natter_members_cache_get(&app->members, job->route.chat_id, &ids);
    int full = 0;
    if (rc == NATTER_OK && ids.len >= app->cfg.max_members) {
        full = 1;
        for (size_t i = 0; i < ids.len && full; i++)
            full = *NATTER_VEC_AT(&ids, uint64_t, i) != user_id;
    }
    natter_vec_free(&ids);
    if (rc != NATTER_OK) {
        natter_api_fail_store(job, rc);
        return rc;
    }
    if (!full)
        return NATTER_OK;
    char msg[64];
    snprintf(msg, sizeof(msg), "the chat has its %u members", app->cfg.max_members);
    natter_api_fail(job, 409, "chat_full", msg);
    return NATTER_ECONFLICT;
}

static void member_change(natter_api_job_t *job, int add)
{
    natter_app_t *app = job->app;
    natter_user_t me, u;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_chat_access(job, me.id, job->route.chat_id, NULL) != 0 ||
        writes_limited(job, me.id) != 0)
        return;
    int rc = natter_store_user_by_name(app->store, job->route.username, &u);
    if (rc == NATTER_ENOTFOUND) {
        natter_api_fail(job, 404, "not_found", "no such user");
        return;
    }
    if (rc == NATTER_OK && add && (rc = chat_full(job, u.id)) != NATTER_OK)
        return;
    if (rc == NATTER_OK)
        rc = add ? natter_store_member_add(app->store, job->route.chat_id, u.id)
                 : natter_store_member_remove(app->store, job->route.chat_id, u.id);
    natter_members_cache_invalidate(&app->members, job->route.chat_id);
    if (rc == NATTER_ECONFLICT) { /* a member already: nothing changed, nobody is told */
        reply(job, 204, NULL);
    } else if (rc == NATTER_ENOTFOUND) {
        natter_api_fail(job, 404, "not_found", "that user is not a member of this chat");
    } else if (rc != NATTER_OK) {
        natter_api_fail_store(job, rc);
    } else {
        natter_ephemeral_membership(app, job->route.chat_id, me.id, u.id, add ? "added" : "removed"); /* all nodes */
        reply(job, 204, NULL);
    }
}

/* On Kafka a chat list also shows what this node pushed and no store has
 * yet (consumer/tail.h), as history does: each chat's messages newer than
 * the store's newest are unread unless the user sent them or marked them
 * read, and the newest is the chat's last message. Read after the store's
 * list: a message stored and gone from the tail in between shows on the
 * next read. Each chat's tail is read once this node's fan-out has what
 * the node posted there (read-your-writes), the waits sharing one bound. */
static void chats_merge_unstored(natter_app_t *app, uint64_t me, natter_vec_t *chats)
{
    uint64_t deadline = natter_mono_ns() + (uint64_t)OWN_WRITES_WAIT_MS * 1000000u;
    for (size_t i = 0; i < chats->len; i++) {
        natter_chat_summary_t *cs = NATTER_VEC_AT(chats, natter_chat_summary_t, i);
        natter_vec_t unstored;
        natter_vec_init(&unstored, sizeof(natter_msg_t *));
        uint64_t now = natter_mono_ns();
        int left_ms = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
        (void)natter_log_fanout_wait_own(app->log, cs->chat.id, left_ms);
        natter_tail_collect(app->tail, cs->chat.id, NATTER_TAIL_MESSAGES, cs->last ? cs->last->id : 0,
                            NATTER_CURSOR_NONE, &unstored);
        for (size_t j = 0; j < unstored.len; j++) {
            natter_msg_t *m = *NATTER_VEC_AT(&unstored, natter_msg_t *, j); /* ascending: the last is newest */
            cs->unread += m->sender_id != me && m->id > cs->read && cs->unread < NATTER_UNREAD_MAX;
            if (j + 1 < unstored.len) {
                free(m);
            } else {
                free(cs->last);
                cs->last = m;
            }
        }
        natter_vec_free(&unstored);
    }
    if (chats->len > 1)
        qsort(chats->items, chats->len, sizeof(natter_chat_summary_t), natter_chat_summary_by_activity);
}

/* A page of the caller's chats by activity, as history pages: ?limit
 * (1-200, 50) and ?before, the next_before of the page before. */
static void chats_list(natter_api_job_t *job)
{
    natter_user_t me;
    natter_vec_t chats;
    uint64_t after, before, limit, next = 0;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_reads_limited(job, me.id) != 0 ||
        natter_api_page_query(job, "message or chat", &after, &before, &limit) != 0)
        return;
    if (after != NATTER_CURSOR_NONE) {
        natter_api_fail(job, 400, "invalid_request", "the chat list pages with before (its next_before), not after");
        return;
    }
    natter_vec_init(&chats, sizeof(natter_chat_summary_t));
    int rc = natter_store_user_chats(job->app->store, me.id, before, (uint32_t)limit, &chats, &next);
    if (rc == NATTER_OK && job->app->tail != NULL)
        chats_merge_unstored(job->app, me.id, &chats);
    json_t *arr = json_array();
    for (size_t i = 0; i < chats.len; i++) {
        natter_chat_summary_t *cs = NATTER_VEC_AT(&chats, natter_chat_summary_t, i);
        json_array_append_new(arr, json_pack("{s:o, s:s, s:I, s:o, s:o}", "id", json_id(cs->chat.id), "name",
                                             cs->chat.name, "unread", (json_int_t)cs->unread, "last_message",
                                             cs->last ? natter_msg_json(cs->last) : json_null(), "created_at",
                                             json_time(cs->chat.created_at_ms)));
        free(cs->last);
    }
    natter_vec_free(&chats);
    if (rc != NATTER_OK) {
        json_decref(arr);
        natter_api_fail_store(job, rc);
        return;
    }
    reply(job, 200, json_pack("{s:o, s:b, s:o}", "chats", arr, "has_more", next != 0, "next_before",
                              next != 0 ? json_id(next) : json_null()));
}

/* Reads an optional decimal query parameter; -1 (and a 400 saying it must
 * be `must`) when malformed. */
static int query_u64(natter_api_job_t *job, const char *name, const char *must, uint64_t *out)
{
    const char *v;
    char buf[32];
    size_t len;
    if (!natter_query_value(job->query, job->query_len, name, buf, sizeof(buf), &v, &len))
        return 0;
    if (natter_parse_u64(v, len, out) != 0) {
        char msg[80];
        snprintf(msg, sizeof(msg), "%s must be %s", name, must);
        return natter_api_fail(job, 400, "invalid_request", msg);
    }
    return 1;
}

int natter_api_page_query(natter_api_job_t *job, const char *what, uint64_t *after, uint64_t *before,
                          uint64_t *limit)
{
    *after = *before = NATTER_CURSOR_NONE;
    *limit = HISTORY_LIMIT_DEFAULT;
    int has_after, has_before;
    char id[48];
    snprintf(id, sizeof(id), "a decimal %s id", what);
    if ((has_after = query_u64(job, "after", id, after)) < 0 || (has_before = query_u64(job, "before", id, before)) < 0 ||
        query_u64(job, "limit", "a number, 1-200", limit) < 0)
        return -1;
    if (*limit < 1 || *limit > HISTORY_LIMIT_MAX)
        return natter_api_fail(job, 400, "invalid_request", "limit must be 1-200");
    /* given, a cursor is an id: never the value that stands for none */
    if ((has_after && *after > INT64_MAX) || (has_before && (*before == 0 || *before > INT64_MAX))) {
        char msg[80];
        snprintf(msg, sizeof(msg), "after and before must be %s ids", what);
        return natter_api_fail(job, 400, "invalid_request", msg);
    }
    return 0;
}

void natter_api_unstored(natter_api_job_t *job, natter_tail_kinds_t kinds, uint64_t after, uint64_t before, int wait,
                         natter_vec_t *out)
{
    natter_app_t *app = job->app;
    if (app->tail == NULL)
        return;
    if (wait)
        (void)natter_log_fanout_wait_own(app->log, job->route.chat_id, OWN_WRITES_WAIT_MS); /* reads on */
    natter_tail_collect(app->tail, job->route.chat_id, kinds, after, before, out);
}

int natter_api_unstored_message(natter_api_job_t *job, uint64_t message_id, int wait, natter_msg_t **out)
{
    natter_vec_t found;
    *out = NULL;
    if (message_id == 0 || message_id == UINT64_MAX)
        return NATTER_ENOTFOUND;
    natter_vec_init(&found, sizeof(natter_msg_t *));
    natter_api_unstored(job, NATTER_TAIL_MESSAGES, message_id - 1, message_id + 1, wait, &found);
    if (found.len > 0) /* the bounds leave message_id only, and the tail gives an id once */
        *out = *NATTER_VEC_AT(&found, natter_msg_t *, 0);
    natter_vec_free(&found);
    return *out != NULL ? NATTER_OK : NATTER_ENOTFOUND;
}

static void messages_list(natter_api_job_t *job)
{
    natter_user_t me;
    uint64_t after, before, limit;
    if (natter_api_authenticate(job, &me) != 0 || natter_api_reads_limited(job, me.id) != 0 ||
        natter_api_chat_access(job, me.id, job->route.chat_id, NULL) != 0 ||
        natter_api_page_query(job, "message", &after, &before, &limit) != 0)
        return;
    natter_vec_t page, unstored;
    int has_more = 0;
    natter_vec_init(&page, sizeof(natter_msg_t *));
    natter_vec_init(&unstored, sizeof(natter_msg_t *));
    natter_api_unstored(job, NATTER_TAIL_MESSAGES, after, before, 1, &unstored); /* before the store: tail.h */
    int rc = natter_store_messages_page(job->app->store, job->route.chat_id, after, before,
                                                 (uint32_t)limit, &page, &has_more);
    if (rc == NATTER_OK)
        natter_tail_merge(&unstored, after, (uint32_t)limit, &page, &has_more);
    for (size_t i = 0; i < unstored.len; i++)
        free(*NATTER_VEC_AT(&unstored, natter_msg_t *, i));
    natter_vec_free(&unstored);
    json_t *arr = json_array();
    if (rc != NATTER_OK)
        natter_api_fail_store(job, rc);
    else
        rc = natter_events_history_json(job, job->route.chat_id, &page, me.id, arr);
    for (size_t i = 0; i < page.len; i++)
        free(*NATTER_VEC_AT(&page, natter_msg_t *, i));
    natter_vec_free(&page);
    if (rc != NATTER_OK) {
        json_decref(arr);
        return;
    }
    reply(job, 200, json_pack("{s:o, s:b}", "messages", arr, "has_more", has_more));
}

static void read_marker(natter_api_job_t *job)
{
    natter_app_t *app = job->app;
    natter_user_t me;
    json_t *body = NULL;
    const char *mid;
    size_t len;
    uint64_t message_id;
    if (natter_api_authenticate(job, &me) != 0 || (body = natter_api_body_object(job, job->body, job->body_len)) == NULL)
        goto Done;
    if (!natter_api_field_string(body, "message_id", &mid, &len) || natter_parse_u64(mid, len, &message_id) != 0) {
        natter_api_fail(job, 400, "invalid_request", "message_id must be a message id string");
        goto Done;
    }
    if (natter_api_chat_access(job, me.id, job->route.chat_id, NULL) != 0)
        goto Done;
    int rc = natter_store_message_in_chat(app->store, job->route.chat_id, message_id);
    if (rc == NATTER_ENOTFOUND && app->tail != NULL) {
        (void)natter_log_fanout_wait_own(app->log, job->route.chat_id, OWN_WRITES_WAIT_MS); /* reads on */
        if (natter_tail_has(app->tail, job->route.chat_id, message_id))
            rc = NATTER_OK; /* pushed, not stored yet: the marker is an id, and the store will have it */
    }
    if (rc == NATTER_OK)
        rc = natter_store_read_marker_advance(app->store, me.id, job->route.chat_id, message_id);
    if (rc == NATTER_OK) /* the members hear of a marker that moved, not of a repeat or an older id */
        natter_ephemeral_read(app, job->route.chat_id, me.id, message_id);
    if (rc == NATTER_ECONFLICT)
        reply(job, 204, NULL);
    else if (rc == NATTER_ENOTFOUND)
        natter_api_fail(job, 404, "not_found", "no such message in this chat");
    else if (rc != NATTER_OK)
        natter_api_fail_store(job, rc);
    else
        reply(job, 204, NULL);
Done:
    json_decref(body);
}

/* A ticket is taken (gone for every node) by the upgrade it authenticates,
 * which its session must outlive: a logout ends the tickets it made. */
static int ws_ticket_take(natter_api_job_t *job)
{
    static const uint8_t none[NATTER_TOKEN_HASH_LEN];
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    natter_ticket_t *t = &job->ws_session;
    if (!natter_token_well_formed(job->ticket, job->ticket_len))
        return natter_api_fail(job, 401, "unauthorized", "the ticket is not valid");
    natter_token_hash(job->ticket, job->ticket_len, hash);
    int64_t now = natter_now_ms();
    int rc = natter_store_ticket_take(job->app->store, hash, now, t);
    if (rc == NATTER_ENOTFOUND)
        return natter_api_fail(job, 401, "unauthorized", "the ticket is unknown, used or expired");
    if (rc == NATTER_OK && memcmp(t->session_hash, none, sizeof(none)) != 0) {
        uint64_t user;
        int64_t ends;
        rc = natter_store_session_user_id(job->app->store, t->session_hash, now, &user, &ends);
        if (rc == NATTER_ENOTFOUND || (rc == NATTER_OK && user != t->user_id))
            return natter_api_fail(job, 401, "unauthorized", "the session that made the ticket has ended");
    }
    return rc == NATTER_OK ? 0 : natter_api_fail_store(job, rc);
}

/* 0, or 429 when the user has --ws-per-user sockets open here already (by
 * the loops' count: two upgrades at once may pass it by one). */
static int ws_per_user(natter_api_job_t *job, uint64_t user)
{
    uint32_t max = job->app->cfg.ws_per_user;
    if (max == 0 || natter_ephemeral_sockets_here(job->app, user) < max)
        return 0;
    char msg[80];
    snprintf(msg, sizeof(msg), "at most %u WebSockets per user on this node: close one", max);
    job->retry_after = 5;
    return natter_api_fail(job, 429, "rate_limited", msg);
}

/* With a ticket, or with a session token: the socket ends with that session. */
static void ws_auth(natter_api_job_t *job)
{
    natter_user_t me;
    if (job->ticket_len > 0) {
        if (ws_ticket_take(job) == 0 && ws_per_user(job, job->ws_session.user_id) == 0)
            job->status = 101;
    } else if (authenticate(job, &me, 0, 1) == 0 && ws_per_user(job, me.id) == 0) {
        /* a socket outlives the cache: the store said the session lives */
        job->ws_session.user_id = me.id;
        natter_token_hash(job->token, job->token_len, job->ws_session.session_hash);
        job->ws_session.session_expires_at_ms = me.expires_at_ms;
        job->status = 101;
    }
}

/* A WebSocket ticket: what a browser puts in the upgrade's URL instead of
 * its session token (URLs end up in proxies' and servers' logs). */
static void ws_ticket_create(natter_api_job_t *job)
{
    natter_user_t me;
    char ticket[NATTER_TOKEN_LEN + 1];
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    if (natter_api_authenticate(job, &me) != 0 || writes_limited(job, me.id) != 0)
        return;
    if (natter_token_new(ticket) != NATTER_OK) {
        natter_api_fail(job, 503, "unavailable", "no randomness for a ticket");
        return;
    }
    natter_token_hash(ticket, NATTER_TOKEN_LEN, hash);
    natter_ticket_t t = {.user_id = me.id, .session_expires_at_ms = me.expires_at_ms};
    natter_token_hash(job->token, job->token_len, t.session_hash);
    int64_t expires = natter_now_ms() + WS_TICKET_TTL_MS;
    int rc = natter_store_ticket_create(job->app->store, hash, &t, expires);
    if (rc != NATTER_OK)
        natter_api_fail_store(job, rc);
    else
        reply(job, 201, json_pack("{s:s, s:o}", "ticket", ticket, "expires_at", json_time(expires)));
}

static void readyz(natter_api_job_t *job)
{
    natter_app_t *app = job->app;
    char why[256];
    if (natter_store_ping(app->store) != NATTER_OK) /* first: an unreachable store also stops the lease */
        natter_api_fail(job, 503, "unavailable", "the store is unreachable");
    else if (!natter_lease_held(app->lease))
        natter_api_fail(job, 503, "unavailable", "this node's lease on its node id is not current");
    else if (natter_log_failed(app->log, why, sizeof(why)))
        natter_api_fail(job, 503, "unavailable", why);
    else if (natter_log_ping(app->log) != NATTER_OK)
        natter_api_fail(job, 503, "unavailable", "the message log is unreachable");
    else if (natter_consumer_status(app->consumer, why, sizeof(why)) != NATTER_OK)
        natter_api_fail(job, 503, "unavailable", why);
    else
        reply(job, 200, json_pack("{s:s}", "status", "ready"));
}

void natter_api_run(natter_job_t *work)
{
    natter_api_job_t *job = (natter_api_job_t *)work;
    switch (job->route.action) {
    case NATTER_A_USER_CREATE: user_create(job); break;
    case NATTER_A_SESSION_CREATE: session_create(job); break;
    case NATTER_A_SESSION_DELETE: session_delete(job); break;
    case NATTER_A_ME: me(job); break;
    case NATTER_A_USER_GET: user_get(job); break;
    case NATTER_A_CHATS_LIST: chats_list(job); break;
    case NATTER_A_CHAT_CREATE: chat_create(job); break;
    case NATTER_A_CHAT_GET: chat_get(job); break;
    case NATTER_A_MEMBER_ADD: member_change(job, 1); break;
    case NATTER_A_MEMBER_REMOVE: member_change(job, 0); break;
    case NATTER_A_MESSAGES_LIST: messages_list(job); break;
    case NATTER_A_MESSAGE_POST:
    case NATTER_A_WS_SEND:
        if (natter_post_run(job))
            return; /* parked in the log: its answer comes from the message's outcome */
        break;
    case NATTER_A_READ: read_marker(job); break;
    case NATTER_A_MESSAGE_EDIT:
    case NATTER_A_MESSAGE_DELETE:
    case NATTER_A_REACTION_ADD:
    case NATTER_A_REACTION_REMOVE:
        if (natter_events_run(job))
            return; /* parked in the log: its answer comes from the event's outcome */
        break;
    case NATTER_A_EVENTS_LIST: natter_events_list(job); break;
    case NATTER_A_WS_TYPING: natter_ephemeral_typing_run(job); break;
    case NATTER_A_WS: ws_auth(job); break;
    case NATTER_A_READYZ: readyz(job); break;
    case NATTER_A_WS_TICKET: ws_ticket_create(job); break;
    default: natter_api_fail(job, 404, "not_found", "no such route"); break;
    }
    finish(job);
}
