/* libFuzzer target for what natter-load reads off the network (over TLS
 * too: OpenSSL hands over the same bytes): an HTTP answer to a request
 * (load_http_process: status, headers, framing, keep-alive, cookies, one
 * answer after another), a WebSocket upgrade's answer and the frames after
 * it, or frames alone (load_ws_process), each message then read as a push
 * by both API dialects (natter's JSON, the original's HTML fragment with
 * its "msg-<timeuuid>" id), as a natter history page (a reconnected
 * listener's catch-up), as a /metrics exposition, and as a run of
 * child→parent records (load_wire). Every input goes through all three.
 * Nothing may crash; a push read as ours must carry the content it claims,
 * a seed push a version-1 UUID, and a history page's items ids that are
 * not "none". */
#include "load_api.h"
#include "load_http.h"
#include "load_scrape.h"
#include "load_wire.h"
#include "load_ws.h"

#include <stdlib.h>
#include <string.h>

static void on_item(void *arg, load_id_t id, int ours, uint64_t t, uint64_t seq)
{
    (void)arg;
    (void)ours;
    (void)t;
    (void)seq;
    if (load_id_is_none(id))
        __builtin_trap();
}

static void on_message(load_ws_t *w, const char *data, size_t len)
{
    (void)w;
    uint64_t t, seq;
    load_id_t id;
    const load_api_t *apis[] = {&load_api_natter, &load_api_seed};
    for (size_t i = 0; i < 2; i++)
        if (apis[i]->scan_push(data, len, &t, &seq, &id) == 0 && memmem(data, len, "t=", 2) == NULL)
            __builtin_trap();
    if (load_api_seed.scan_push(data, len, &t, &seq, &id) == 0 && memmem(data, len, "id=\"msg-", 8) == NULL)
        __builtin_trap();
    load_api_natter.scan_history(data, len, on_item, NULL);
    load_metrics_t m;
    load_scrape_parse(data, len, load_api_natter.lag_metric, load_api_natter.batches_metric, &m);
    load_scrape_parse(data, len, load_api_seed.lag_metric, NULL, &m);
    for (size_t off = 0; off + LOAD_WIRE_SIZE <= len; off += LOAD_WIRE_SIZE) {
        load_rec_t r;
        unsigned char again[LOAD_WIRE_SIZE];
        if (load_wire_decode((const unsigned char *)data + off, &r) == 0) {
            load_wire_encode(&r, again);
            if (memcmp(again, data + off, LOAD_WIRE_SIZE) != 0)
                __builtin_trap(); /* a record decodes to what encodes back to it */
        }
    }
}

static void on_open(load_ws_t *w)
{
    (void)w;
}

static void on_close(load_ws_t *w, int code)
{
    (void)w;
    (void)code;
}

static const load_ws_handler_t handler = {on_open, on_message, on_close};

/* Each answer is read as a body (a history page, a /metrics page); the
 * next request is "in flight" at once, so answers are read one after
 * another until the bytes or the connection end. */
static void on_answer(load_http_t *c, int status, const char *body, size_t len, void *arg)
{
    (void)arg;
    if (status < 0 || status > 999 || (body == NULL && len > 0)) /* three digits, and a body that is there */
        __builtin_trap();
    load_api_natter.scan_history(body, len, on_item, NULL);
    load_metrics_t m;
    load_scrape_parse(body, len, load_api_natter.lag_metric, load_api_natter.batches_metric, &m);
    c->cb = on_answer;
}

static void ws_stream(const uint8_t *data, size_t size, size_t cut, enum load_ws_state state)
{
    load_ws_t w;
    memset(&w, 0, sizeof(w));
    w.io.fd = -1; /* a ping's pong fails to write: the socket is "gone" */
    w.state = state;
    w.h = &handler;
    load_buf_append(&w.in, data, cut);
    if (load_ws_process(&w) == 0) {
        load_buf_append(&w.in, data + cut, size - cut);
        load_ws_process(&w);
    }
    load_ws_free(&w);
}

static void http_stream(const uint8_t *data, size_t size, size_t cut)
{
    load_http_t c;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    load_dest_t d = {&addr, "127.0.0.1:1", NULL};
    load_http_init(&c, -1, &d);
    c.state = LOAD_HTTP_BUSY;
    c.connected = 1;
    c.cb = on_answer;
    load_buf_append(&c.in, data, cut);
    if (load_http_process(&c) == 0) {
        load_buf_append(&c.in, data + cut, size - cut);
        load_http_process(&c);
    }
    load_http_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the stream arrives in two reads, split by the first byte */
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    ws_stream(data, size, cut, LOAD_WS_OPEN);
    ws_stream(data, size, cut, LOAD_WS_HANDSHAKE);
    http_stream(data, size, cut);
    return 0;
}
