/*
 * The ephemeral path (see ephemeral.h). Map of this file:
 *   frames    the pushes it builds: typing, read, presence
 *   loops     a typing frame on its loop; sockets opened and closed
 *   workers   a typing frame the loop could not decide; read receipts;
 *             who is online
 *   thread    natter-ephemeral: polls the log's ephemeral path, pushes,
 *             keeps presence and tells the other nodes
 */
#include "gateway/ephemeral.h"
#include "core/error.h"
#include "core/id.h"
#include "core/jsonr.h"
#include "core/metrics.h"
#include "core/throttle.h"
#include "core/util.h"
#include "gateway/gateway.h"
#include "gateway/presence.h"
#include "ingest/api.h"
#include "loop.h"
#include "natter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONLINE_SHARDS 16
#define TICK_MS 100              /* presence is brought up to date at most this often */
#define POLL_MAX 256             /* records taken from the ephemeral path at once */
#define IDS_PER_RECORD 512       /* user ids in one presence record (about 10 KiB) */
#define THROTTLE_PAIRS 65536     /* (user, chat) pairs a typing throttle remembers */
#define BEAT_MIN_MS 250

typedef struct {
    uint64_t user;
    int delta;
} socket_delta_t;

/* A share of a map by user id, behind its own lock. Two are kept: who is
 * online (user id -> non-NULL), written by the thread and read by anyone,
 * and each user's WebSockets open on this node (user id -> count, as a
 * pointer-sized integer), changed by the loops as they open and close and
 * read by the workers that upgrade. */
typedef struct {
    pthread_mutex_t lock;
    natter_u64map_t users;
} __attribute__((aligned(64))) user_shard_t;

struct natter_ephemeral {
    natter_app_t *app;
    pthread_t thread;
    int started;
    atomic_int stop;
    int shared;       /* other nodes share the log: tell them about presence here */
    int64_t beat_ms;  /* how often they hear who is online here */

    pthread_mutex_t inbox_lock;
    natter_vec_t inbox; /* socket_delta_t, from the loops */

    natter_throttle_t *loop_typing; /* one per loop, each touched by its loop only */
    size_t nloops;

    /* the thread's own */
    natter_presence_t presence;
    natter_throttle_t typing;
    int64_t next_tick, next_beat;

    user_shard_t online[ONLINE_SHARDS];
    user_shard_t sockets[ONLINE_SHARDS];
};

static user_shard_t *shard_of(user_shard_t shards[ONLINE_SHARDS], uint64_t user)
{
    return &shards[natter_mix64(user) & (ONLINE_SHARDS - 1)];
}

static int64_t now_ms(void)
{
    return (int64_t)(natter_mono_ns() / 1000000u);
}

/* ------------------------------------------------------------ frames */

#define RAW(w, lit) natter_jsonw_raw((w), (lit), sizeof(lit) - 1)

static void id_field(natter_jsonw_t *w, const char *key, uint64_t id)
{
    natter_jsonw_raw(w, ",", 1);
    natter_jsonw_key(w, key);
    natter_jsonw_id(w, id);
}

static natter_frame_t *typing_frame(uint64_t chat, uint64_t user)
{
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    RAW(&w, "{\"type\":\"typing\"");
    id_field(&w, "chat_id", chat);
    id_field(&w, "user_id", user);
    RAW(&w, "}");
    return natter_frame_end(&w);
}

static natter_frame_t *read_frame(uint64_t chat, uint64_t user, uint64_t message)
{
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    RAW(&w, "{\"type\":\"read\"");
    id_field(&w, "chat_id", chat);
    id_field(&w, "user_id", user);
    id_field(&w, "message_id", message);
    RAW(&w, "}");
    return natter_frame_end(&w);
}

static natter_frame_t *membership_frame(uint64_t chat, uint64_t user, uint64_t by, const char *op, size_t oplen)
{
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    RAW(&w, "{\"type\":\"membership\"");
    id_field(&w, "chat_id", chat);
    id_field(&w, "user_id", user);
    id_field(&w, "by", by);
    RAW(&w, ",\"op\":\"");
    natter_jsonw_raw(&w, op, oplen); /* one of NATTER_MEMBERSHIP_OPS: nothing to escape */
    RAW(&w, "\"}");
    return natter_frame_end(&w);
}

static natter_frame_t *presence_frame(uint64_t user, int online)
{
    natter_jsonw_t w = {0};
    natter_frame_begin(&w);
    RAW(&w, "{\"type\":\"presence\",\"user_id\":");
    natter_jsonw_id(&w, user);
    if (online)
        RAW(&w, ",\"online\":true}");
    else
        RAW(&w, ",\"online\":false}");
    return natter_frame_end(&w);
}

/* {"type":"error","error":{code,message}} for a typing frame (messages are constants). */
static natter_frame_t *error_frame(const char *code, const char *message)
{
    char text[256];
    int n = snprintf(text, sizeof(text), "{\"type\":\"error\",\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                     message);
    return natter_frame_text(text, (size_t)n);
}

/* ------------------------------------------------------------ loops */

natter_ephemeral_t *natter_ephemeral_new(natter_app_t *app)
{
    natter_ephemeral_t *e = xcalloc(1, sizeof(*e));
    e->app = app;
    e->shared = natter_log_has_fanout(app->log);
    int64_t ttl = (int64_t)app->cfg.ws_ping_timeout_s * 1000;
    e->beat_ms = ttl / 4 > BEAT_MIN_MS ? ttl / 4 : BEAT_MIN_MS;
    atomic_init(&e->stop, 0);
    pthread_mutex_init(&e->inbox_lock, NULL);
    natter_vec_init(&e->inbox, sizeof(socket_delta_t));
    e->nloops = app->cfg.threads;
    e->loop_typing = xcalloc(e->nloops, sizeof(natter_throttle_t));
    for (size_t i = 0; i < e->nloops; i++)
        natter_throttle_init(&e->loop_typing[i], NATTER_TYPING_WINDOW_MS, THROTTLE_PAIRS);
    natter_presence_init(&e->presence, app->cfg.node_id, NATTER_PRESENCE_GRACE_MS, ttl);
    natter_throttle_init(&e->typing, NATTER_TYPING_WINDOW_MS, THROTTLE_PAIRS);
    for (int i = 0; i < ONLINE_SHARDS; i++) {
        pthread_mutex_init(&e->online[i].lock, NULL);
        natter_u64map_init(&e->online[i].users);
        pthread_mutex_init(&e->sockets[i].lock, NULL);
        natter_u64map_init(&e->sockets[i].users);
    }
    return e;
}

void natter_ephemeral_socket(natter_app_t *app, uint64_t user, int delta)
{
    natter_ephemeral_t *e = app->ephemeral;
    pthread_mutex_lock(&e->inbox_lock);
    *(socket_delta_t *)natter_vec_push(&e->inbox) = (socket_delta_t){user, delta};
    pthread_mutex_unlock(&e->inbox_lock);
    user_shard_t *sh = shard_of(e->sockets, user);
    pthread_mutex_lock(&sh->lock);
    uintptr_t n = (uintptr_t)natter_u64map_get(&sh->users, user) + (uintptr_t)(intptr_t)delta;
    if (n == 0)
        natter_u64map_del(&sh->users, user);
    else
        natter_u64map_put(&sh->users, user, (void *)n);
    pthread_mutex_unlock(&sh->lock);
}

size_t natter_ephemeral_sockets_here(natter_app_t *app, uint64_t user)
{
    natter_ephemeral_t *e = app->ephemeral;
    if (e == NULL)
        return 0;
    user_shard_t *sh = shard_of(e->sockets, user);
    pthread_mutex_lock(&sh->lock);
    size_t n = (size_t)(uintptr_t)natter_u64map_get(&sh->users, user);
    pthread_mutex_unlock(&sh->lock);
    return n;
}

static void publish(natter_app_t *app, unsigned kind, uint64_t chat, uint64_t user, uint64_t target,
                    const char *content, size_t len)
{
    natter_msg_t *ev = natter_msg_new(chat, user, content, len, "", 0);
    ev->kind = (uint8_t)kind;
    ev->target_id = target;
    if (natter_log_publish(app->log, ev) != NATTER_OK)
        free(ev); /* ephemeral: dropped, as a lost packet would be */
    else
        natter_count(&natter_m()->ephemeral_published, 1);
}

/* The frame's "type" and "chat_id": 1 when type is "typing". */
static int read_typing(const char *text, size_t len, uint64_t *chat, int *chat_ok)
{
    natter_jsonr_field_t f[2] = {{.key = "type"}, {.key = "chat_id"}};
    char scratch[512];
    json_t *root = NULL;
    if (len > sizeof(scratch) || natter_jsonr_flat(text, len, f, 2, scratch) != NATTER_JSONR_OK) {
        /* jsonr hands back what it is not sure of; jansson decides */
        if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) == NULL || !json_is_object(root)) {
            json_decref(root);
            return 0;
        }
        for (int i = 0; i < 2; i++) {
            json_t *v = json_object_get(root, f[i].key);
            f[i].kind = json_is_string(v) ? NATTER_JSONR_STRING : v ? NATTER_JSONR_OTHER : NATTER_JSONR_ABSENT;
            f[i].value = json_string_value(v);
            f[i].len = json_string_length(v);
        }
    }
    int typing = f[0].kind == NATTER_JSONR_STRING && f[0].len == 6 && memcmp(f[0].value, "typing", 6) == 0;
    *chat_ok = f[1].kind == NATTER_JSONR_STRING && natter_parse_u64(f[1].value, f[1].len, chat) == 0 && *chat != 0;
    json_decref(root);
    return typing;
}

natter_typing_result_t natter_ephemeral_typing(natter_loop_t *loop, uint64_t user, uint64_t conn_id, const char *text,
                                               size_t len, natter_frame_t **reply)
{
    natter_app_t *app = loop->app;
    uint64_t chat = 0;
    int chat_ok = 0;
    *reply = NULL;
    /* a send almost never says "typing": it then costs a scan, not a parse */
    if (memmem(text, len, "typing", 6) == NULL || !read_typing(text, len, &chat, &chat_ok))
        return NATTER_TYPING_NOT;
    if (!chat_ok) {
        *reply = error_frame("invalid_request", "chat_id must be a chat id string");
        return NATTER_TYPING_DONE;
    }
    /* first the throttle: whatever the chat, one frame per 2 s costs anything beyond it */
    if (!natter_throttle_pass(&app->ephemeral->loop_typing[loop->index], user, chat, now_ms())) {
        natter_count(&natter_m()->typing_dropped, 1);
        return NATTER_TYPING_DONE;
    }
    switch (natter_members_cache_peek(&app->members, chat, user)) {
    case 1:
        publish(app, NATTER_EV_TYPING, chat, user, 0, "", 0);
        return NATTER_TYPING_DONE;
    case 0:
        *reply = error_frame("forbidden", "you are not a member of this chat");
        return NATTER_TYPING_DONE;
    default:
        break;
    }
    natter_route_t route = {.action = NATTER_A_WS_TYPING, .chat_id = chat};
    natter_api_job_t *job = natter_api_job_new(loop, &route);
    job->ws_user_id = user;
    job->ws_conn_id = conn_id;
    if (natter_workers_submit(&app->workers, &job->work) != NATTER_OK) {
        natter_api_job_free(job); /* busy: a typing indicator is not worth a 503 */
        return NATTER_TYPING_DONE;
    }
    return NATTER_TYPING_WORKER;
}

/* ------------------------------------------------------------ workers */

void natter_ephemeral_typing_run(natter_api_job_t *job)
{
    if (natter_api_chat_access(job, job->ws_user_id, job->route.chat_id, NULL) != 0)
        return;
    publish(job->app, NATTER_EV_TYPING, job->route.chat_id, job->ws_user_id, 0, "", 0);
    job->status = 204; /* nothing to send back */
}

void natter_ephemeral_read(natter_app_t *app, uint64_t chat, uint64_t user, uint64_t message)
{
    publish(app, NATTER_EV_READ, chat, user, message, "", 0);
}

void natter_ephemeral_session_end(natter_app_t *app, uint64_t user, const uint8_t *session_hash)
{
    static const char digits[] = "0123456789abcdef";
    char hex[2 * NATTER_TOKEN_HASH_LEN];
    for (size_t i = 0; i < NATTER_TOKEN_HASH_LEN; i++) {
        hex[2 * i] = digits[session_hash[i] >> 4];
        hex[2 * i + 1] = digits[session_hash[i] & 15];
    }
    publish(app, NATTER_EV_SESSION_END, 0, user, 0, hex, sizeof(hex));
}

void natter_ephemeral_membership(natter_app_t *app, uint64_t chat, uint64_t by, uint64_t user, const char *op)
{
    publish(app, NATTER_EV_MEMBERSHIP, chat, by, user, op, strlen(op));
}

int natter_ephemeral_online(natter_app_t *app, uint64_t user)
{
    if (app->ephemeral == NULL)
        return 0;
    user_shard_t *sh = shard_of(app->ephemeral->online, user);
    pthread_mutex_lock(&sh->lock);
    int online = natter_u64map_get(&sh->users, user) != NULL;
    pthread_mutex_unlock(&sh->lock);
    return online;
}

/* ------------------------------------------------------------ thread */

/* The chat's members, pushed frame: from's own sockets too when to_from;
 * nothing when the chat's members cannot be had or from is not one of them. */
static void push_to_chat(natter_ephemeral_t *e, uint64_t chat, uint64_t from, int to_from, natter_frame_t *frame)
{
    natter_app_t *app = e->app;
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    int member = 0;
    if (natter_members_cache_get(&app->members, chat, &ids) == NATTER_OK)
        for (size_t i = 0; i < ids.len && !member; i++)
            member = *NATTER_VEC_AT(&ids, uint64_t, i) == from;
    if (member)
        natter_fanout_dispatch(app, natter_fanout_one(app, frame, ids.items, ids.len, to_from ? 0 : from));
    else
        natter_frame_unref(frame);
    natter_vec_free(&ids);
}

/* Tells the members of every chat user is in (but user) that their
 * presence changed; only when this node holds a socket to tell. */
static void push_presence(natter_ephemeral_t *e, uint64_t user, int online)
{
    natter_app_t *app = e->app;
    if (e->presence.sockets == 0)
        return;
    natter_vec_t chats, ids, all;
    natter_u64map_t seen;
    natter_vec_init(&chats, sizeof(uint64_t));
    natter_vec_init(&ids, sizeof(uint64_t));
    natter_vec_init(&all, sizeof(uint64_t));
    natter_u64map_init(&seen);
    if (natter_store_user_chat_ids(app->store, user, &chats) == NATTER_OK) {
        for (size_t c = 0; c < chats.len; c++) {
            ids.len = 0;
            if (natter_members_cache_get(&app->members, *NATTER_VEC_AT(&chats, uint64_t, c), &ids) != NATTER_OK)
                continue;
            for (size_t i = 0; i < ids.len; i++) {
                uint64_t m = *NATTER_VEC_AT(&ids, uint64_t, i);
                if (natter_u64map_put(&seen, m, &seen) == NULL)
                    *(uint64_t *)natter_vec_push(&all) = m;
            }
        }
    }
    if (all.len > 0)
        natter_fanout_dispatch(app, natter_fanout_one(app, presence_frame(user, online), all.items, all.len, user));
    natter_u64map_free(&seen);
    natter_vec_free(&all);
    natter_vec_free(&ids);
    natter_vec_free(&chats);
}

/* Another node's presence record: its users, as "id,id,...". */
static void on_presence(natter_ephemeral_t *e, const natter_msg_t *m, int64_t now)
{
    uint32_t node = natter_id_node(m->id);
    const char *p = m->content, *end = p + m->content_len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *q = comma ? comma : end;
        uint64_t user;
        if (natter_parse_u64(p, (size_t)(q - p), &user) == 0 && user != 0)
            natter_presence_remote(&e->presence, node, user, m->kind != NATTER_EV_PRESENCE_DOWN, now);
        p = q + 1;
    }
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A membership record: this node's cached members of the chat are stale
 * (the node that made the change dropped its own already); the chat's
 * members as the store has them now, and the user added or removed, are
 * told. */
static void on_membership(natter_ephemeral_t *e, const natter_msg_t *m)
{
    natter_app_t *app = e->app;
    natter_vec_t ids;
    natter_vec_init(&ids, sizeof(uint64_t));
    natter_members_cache_invalidate(&app->members, m->chat_id);
    int in = 0;
    if (natter_members_cache_get(&app->members, m->chat_id, &ids) != NATTER_OK)
        ids.len = 0; /* the store away: the user is told all the same */
    for (size_t i = 0; i < ids.len && !in; i++)
        in = *NATTER_VEC_AT(&ids, uint64_t, i) == m->target_id;
    if (!in)
        *(uint64_t *)natter_vec_push(&ids) = m->target_id;
    natter_frame_t *frame = membership_frame(m->chat_id, m->target_id, m->sender_id, m->content, m->content_len);
    natter_fanout_dispatch(app, natter_fanout_one(app, frame, ids.items, ids.len, 0));
    natter_vec_free(&ids);
}

/* A session-end record: every loop closes that session's sockets. */
static void on_session_end(natter_ephemeral_t *e, const natter_msg_t *m)
{
    uint8_t hash[NATTER_TOKEN_HASH_LEN];
    if (m->content_len != 2 * NATTER_TOKEN_HASH_LEN)
        return;
    for (size_t i = 0; i < NATTER_TOKEN_HASH_LEN; i++) {
        int hi = hex_digit(m->content[2 * i]), lo = hex_digit(m->content[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        hash[i] = (uint8_t)(hi << 4 | lo);
    }
    natter_fanout_dispatch(e->app, natter_fanout_session_end(e->app, m->sender_id, hash));
}

static void on_record(natter_ephemeral_t *e, const natter_msg_t *m, int64_t now)
{
    switch (m->kind) {
    case NATTER_EV_TYPING:
        if (natter_throttle_pass(&e->typing, m->sender_id, m->chat_id, now))
            push_to_chat(e, m->chat_id, m->sender_id, 0, typing_frame(m->chat_id, m->sender_id));
        else
            natter_count(&natter_m()->typing_dropped, 1);
        break;
    case NATTER_EV_READ: /* the reader's other tabs and devices too: their unread counts follow */
        push_to_chat(e, m->chat_id, m->sender_id, 1, read_frame(m->chat_id, m->sender_id, m->target_id));
        break;
    case NATTER_EV_PRESENCE_UP:
    case NATTER_EV_PRESENCE_DOWN:
    case NATTER_EV_PRESENCE_BEAT:
        on_presence(e, m, now);
        break;
    case NATTER_EV_SESSION_END:
        on_session_end(e, m);
        break;
    case NATTER_EV_MEMBERSHIP:
        on_membership(e, m);
        break;
    default: /* what the log proper carries never comes this way */
        break;
    }
}

/* Publishes users as presence records of kind, IDS_PER_RECORD at a time. */
static void publish_users(natter_ephemeral_t *e, unsigned kind, const natter_vec_t *users)
{
    for (size_t i = 0; i < users->len; i += IDS_PER_RECORD) {
        natter_jsonw_t w = {0};
        for (size_t k = i; k < users->len && k < i + IDS_PER_RECORD; k++) {
            if (k > i)
                natter_jsonw_raw(&w, ",", 1);
            char id[NATTER_ID_STR_MAX];
            natter_jsonw_raw(&w, id, (size_t)natter_id_format(id, *NATTER_VEC_AT(users, uint64_t, k)));
        }
        publish(e->app, kind, 0, 0, 0, w.p, w.len);
        free(w.p);
    }
}

static void take_inbox(natter_ephemeral_t *e, int64_t now)
{
    pthread_mutex_lock(&e->inbox_lock);
    natter_vec_t inbox = e->inbox;
    natter_vec_init(&e->inbox, sizeof(socket_delta_t));
    pthread_mutex_unlock(&e->inbox_lock);
    for (size_t i = 0; i < inbox.len; i++) {
        socket_delta_t *d = NATTER_VEC_AT(&inbox, socket_delta_t, i);
        natter_presence_local(&e->presence, d->user, d->delta, now);
    }
    natter_vec_free(&inbox);
}

static void set_online(natter_ephemeral_t *e, uint64_t user, int online)
{
    user_shard_t *sh = shard_of(e->online, user);
    pthread_mutex_lock(&sh->lock);
    if (online)
        natter_u64map_put(&sh->users, user, e);
    else
        natter_u64map_del(&sh->users, user);
    pthread_mutex_unlock(&sh->lock);
}

/* Presence brought to now: what changed is pushed here and told to the
 * other nodes; and a heartbeat when it is due. */
static void presence_turn(natter_ephemeral_t *e, int64_t now)
{
    natter_vec_t changes, ups, downs;
    natter_vec_init(&changes, sizeof(natter_presence_change_t));
    natter_vec_init(&ups, sizeof(uint64_t));
    natter_vec_init(&downs, sizeof(uint64_t));
    take_inbox(e, now);
    natter_presence_tick(&e->presence, now, &changes, &ups, &downs);
    for (size_t i = 0; i < changes.len; i++) {
        natter_presence_change_t *c = NATTER_VEC_AT(&changes, natter_presence_change_t, i);
        set_online(e, c->user, c->online);
        push_presence(e, c->user, c->online);
        natter_count(&natter_m()->presence_changes, 1);
    }
    if (e->shared) {
        publish_users(e, NATTER_EV_PRESENCE_UP, &ups);
        publish_users(e, NATTER_EV_PRESENCE_DOWN, &downs);
        if (now >= e->next_beat) {
            natter_vec_t here;
            natter_vec_init(&here, sizeof(uint64_t));
            natter_presence_here(&e->presence, now, &here);
            publish_users(e, NATTER_EV_PRESENCE_BEAT, &here);
            natter_vec_free(&here);
            e->next_beat = now + e->beat_ms;
        }
    }
    natter_vec_free(&changes);
    natter_vec_free(&ups);
    natter_vec_free(&downs);
}

static void *ephemeral_main(void *arg)
{
    natter_ephemeral_t *e = arg;
    pthread_setname_np(pthread_self(), "natter-ephemeral");
    while (!atomic_load(&e->stop)) {
        natter_msg_t *head = NULL;
        natter_log_ephemeral_poll(e->app->log, &head, POLL_MAX, TICK_MS);
        int64_t now = now_ms();
        for (natter_msg_t *m = head, *next; m != NULL; m = next) {
            next = m->next;
            on_record(e, m, now);
            free(m);
            natter_count(&natter_m()->ephemeral_received, 1);
        }
        if (now >= e->next_tick) {
            presence_turn(e, now);
            e->next_tick = now + TICK_MS;
        }
    }
    return NULL;
}

void natter_ephemeral_start(natter_ephemeral_t *e)
{
    e->started = pthread_create(&e->thread, NULL, ephemeral_main, e) == 0;
}

void natter_ephemeral_stop(natter_ephemeral_t *e)
{
    if (!e->started)
        return;
    atomic_store(&e->stop, 1);
    pthread_join(e->thread, NULL);
    e->started = 0;
}

void natter_ephemeral_free(natter_ephemeral_t *e)
{
    if (e == NULL)
        return;
    natter_ephemeral_stop(e);
    for (size_t i = 0; i < e->nloops; i++)
        natter_throttle_free(&e->loop_typing[i]);
    free(e->loop_typing);
    natter_throttle_free(&e->typing);
    natter_presence_free(&e->presence);
    natter_vec_free(&e->inbox);
    pthread_mutex_destroy(&e->inbox_lock);
    for (int i = 0; i < ONLINE_SHARDS; i++) {
        natter_u64map_free(&e->online[i].users);
        pthread_mutex_destroy(&e->online[i].lock);
        natter_u64map_free(&e->sockets[i].users);
        pthread_mutex_destroy(&e->sockets[i].lock);
    }
    free(e);
}
