/*
 * libFuzzer target for src/gateway/ws_codec.c: arbitrary client bytes, fed
 * in pieces as reads would bring them. It must never read or write out of
 * bounds, never use more than it was given, never hand back a text message
 * that is not UTF-8 or a message over the limit, and once failed stay failed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "gateway/ws_codec.h"

#define LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 64 + 1; /* how much each "read" adds */
    data++, size--;
    natter_ws_parser_t p;
    natter_ws_parser_init(&p, LIMIT);
    uint8_t *in = malloc(size + 1);
    size_t have = 0, fed = 0;
    int failed = 0;
    while (fed < size || have > 0) {
        size_t add = size - fed < step ? size - fed : step;
        memcpy(in + have, data + fed, add);
        have += add, fed += add;
        for (;;) {
            natter_ws_event_t ev;
            size_t used;
            natter_ws_event_kind_t k = natter_ws_parse(&p, in, have, &used, &ev);
            if (used > have || (failed && k != NATTER_WS_FAIL))
                abort();
            if (k == NATTER_WS_FAIL) {
                failed = 1;
                if (ev.code != NATTER_WS_CLOSE_PROTOCOL && ev.code != NATTER_WS_CLOSE_BAD_DATA &&
                    ev.code != NATTER_WS_CLOSE_TOO_BIG)
                    abort();
                break;
            }
            if (k == NATTER_WS_TEXT && !natter_utf8_valid((const char *)ev.data, ev.len))
                abort();
            if ((k == NATTER_WS_TEXT || k == NATTER_WS_BINARY) && ev.len > LIMIT)
                abort();
            if (k == NATTER_WS_CLOSE && ev.code != NATTER_WS_CLOSE_NO_STATUS && !natter_ws_close_code_valid(ev.code))
                abort();
            if (k == NATTER_WS_NEED_MORE)
                break;
            memmove(in, in + used, have - used);
            have -= used;
        }
        if (failed || fed == size)
            break;
    }
    natter_ws_parser_free(&p);
    free(in);
    return 0;
}
