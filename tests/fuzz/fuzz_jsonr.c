/*
 * libFuzzer target for src/core/jsonr.c, differential against jansson:
 * whatever the flat-object reader accepts, jansson (as the API calls it)
 * must accept too, with the same value for every key asked for. What the
 * reader hands back is jansson's alone, so it is not compared.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonr.h"
#include "core/util.h"

static const char *const keys[] = {"content", "client_id", "type", "chat_id", "a", ""};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    if (!natter_utf8_valid(body, size))
        return 0; /* the API checks UTF-8 before either parser */
    natter_jsonr_field_t f[NKEYS];
    for (size_t i = 0; i < NKEYS; i++)
        f[i].key = keys[i];
    char *scratch = malloc(size + 1);
    if (natter_jsonr_flat(body, size, f, NKEYS, scratch) == NATTER_JSONR_OK) {
        json_t *root = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root))
            abort(); /* the reader accepted what jansson refuses */
        for (size_t i = 0; i < NKEYS; i++) {
            json_t *v = json_object_get(root, keys[i]);
            switch (f[i].kind) {
            case NATTER_JSONR_ABSENT:
                if (v != NULL)
                    abort();
                break;
            case NATTER_JSONR_STRING:
                if (!json_is_string(v) || json_string_length(v) != f[i].len ||
                    memcmp(json_string_value(v), f[i].value, f[i].len) != 0)
                    abort();
                break;
            case NATTER_JSONR_OTHER:
                if (!json_is_true(v) && !json_is_false(v) && !json_is_null(v))
                    abort();
                break;
            }
        }
        json_decref(root);
    }
    free(scratch);
    return 0;
}
