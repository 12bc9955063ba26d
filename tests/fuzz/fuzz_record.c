/* libFuzzer target for the Kafka record decoder: records come off the
 * network, and a decoded one must re-encode to the same bytes. The first
 * byte, when the input has more than one, says how many of the bytes after
 * it are the recipients header (record.h); the rest is the value. Either
 * way the value must decode as it does without the header. */
#include "log/record.h"

#include <stdlib.h>
#include <string.h>

/* The recipients decoded from to must be its ids, or none when it is malformed. */
static void check_recipients(const natter_msg_t *m, const uint8_t *to, size_t tolen)
{
    uint8_t again[NATTER_RECORD_RECIPIENTS_MAX_BYTES];
    size_t n = natter_record_recipients(m, again);
    if (n != 0 && (n != tolen || memcmp(again, to, n) != 0))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1) {
        size_t tolen = data[0] <= size - 1 ? data[0] : size - 1;
        const uint8_t *to = data + 1, *value = data + 1 + tolen;
        size_t vlen = size - 1 - tolen;
        natter_msg_t *with = natter_record_decode_to(value, vlen, to, tolen);
        natter_msg_t *without = natter_record_decode(value, vlen);
        if ((with == NULL) != (without == NULL))
            __builtin_trap();
        if (with != NULL)
            check_recipients(with, to, tolen);
        free(with);
        free(without);
    }
    natter_msg_t *m = natter_record_decode(data, size);
    if (m == NULL)
        return 0;
    size_t len;
    uint8_t *again = natter_record_encode(m, &len);
    if (len != size || memcmp(again, data, size) != 0)
        __builtin_trap();
    free(again);
    free(m);
    return 0;
}
