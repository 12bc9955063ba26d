/* libFuzzer target for what natter-load reads off the network: WebSocket
 * frames from the server (load_ws_process), each message then read as a
 * push by both API dialects and as a /metrics exposition. Nothing may
 * crash, and a push read as ours must carry the content it claims. */
#include "load_api.h"
#include "load_scrape.h"
#include "load_ws.h"

#include <stdlib.h>
#include <string.h>

static void on_message(load_ws_t *w, const char *data, size_t len)
{
    (void)w;
    uint64_t t, seq, id;
    const load_api_t *apis[] = {&load_api_natter, &load_api_seed};
    for (size_t i = 0; i < 2; i++)
        if (apis[i]->scan_push(data, len, &t, &seq, &id) == 0 && memmem(data, len, "t=", 2) == NULL)
            __builtin_trap();
    double lag, batches;
    load_scrape_parse(data, len, &lag, &batches);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_ws_t w;
    memset(&w, 0, sizeof(w));
    w.io.fd = -1; /* a ping's pong fails to write: the socket is "gone" */
    w.state = LOAD_WS_OPEN;
    w.h = &handler;
    /* the stream arrives in two reads, split by the first byte */
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    load_buf_append(&w.in, data, cut);
    if (load_ws_process(&w) == 0) {
        load_buf_append(&w.in, data + cut, size - cut);
        load_ws_process(&w);
    }
    load_ws_free(&w);
    return 0;
}
