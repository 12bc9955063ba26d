/*
 * A chat message on its way through the pipeline.
 *
 * Ingest allocates it (natter_msg_new), the log assigns its id and
 * created_at when it is appended, the store consumer owns it from the log's
 * poll until the batch is stored, committed and fanned out, then frees it.
 * on_durable fires exactly once per appended message, from whichever thread
 * learned the outcome: status 0 once the message is durable, a NATTER_E*
 * code when it never will be.
 */
#ifndef NATTER_MESSAGE_H
#define NATTER_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core/jsonw.h"

#define NATTER_CONTENT_MAX_CHARS 4000
#define NATTER_CLIENT_ID_MAX 64
/* A post repeating a (sender, chat, client_id) seen this recently is the
 * same message (docs/architecture.md, "Idempotent sends"). */
#define NATTER_CLIENT_ID_TTL_MS (24ll * 3600 * 1000)

typedef struct natter_msg natter_msg_t;
typedef void (*natter_msg_durable_cb)(natter_msg_t *msg, int status, void *arg);

struct natter_msg {
    natter_msg_t *next; /* link in a log queue or a batch */
    uint64_t id;
    uint64_t chat_id;
    uint64_t sender_id;
    int64_t created_at_ms;
    int64_t ingest_ns;  /* wall-clock ns when ingest accepted it (any node), for latency metrics */
    int32_t partition;  /* where a distributed log holds it (-1: none) */
    int64_t offset;
    natter_msg_durable_cb on_durable;
    void *durable_arg;
    uint8_t duplicate;    /* the store found its client_id claimed by another message: it is that one */
    uint8_t log_held;     /* the log's: appended held, not released yet (log.h) */
    size_t client_id_len; /* 0: none */
    char client_id[NATTER_CLIENT_ID_MAX + 1];
    size_t content_len;
    char content[]; /* NUL-terminated */
};

/* One allocation holding the content; free with free(). */
natter_msg_t *natter_msg_new(uint64_t chat_id, uint64_t sender_id, const char *content, size_t len,
                             const char *client_id, size_t client_id_len);

/* The message object of the API:
 * {"id","chat_id","sender_id","content","created_at","client_id"?}; the
 * caller owns the reference. */
json_t *natter_msg_json(const natter_msg_t *m);
/* The same object, written into w (the per-message hot paths). */
void natter_msg_write_json(natter_jsonw_t *w, const natter_msg_t *m);

#endif
