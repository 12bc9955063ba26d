/* libFuzzer target for the Kafka record decoder: records come off the
 * network, and a decoded one must re-encode to the same bytes. */
#include "log/record.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
