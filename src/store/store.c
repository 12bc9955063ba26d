#include "store/store.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

static const natter_store_ops_t *const backends[] = {&natter_store_sqlite, &natter_store_cql};

const natter_store_ops_t *natter_store_find(const char *name)
{
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

natter_store_t *natter_store_open(const natter_store_ops_t *ops, const natter_config_t *cfg, char *err,
                                  size_t errlen)
{
    natter_store_t *s = xcalloc(1, ops->size);
    s->ops = ops;
    if (ops->open(s, cfg, err, errlen) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void natter_store_close(natter_store_t *s)
{
    if (s == NULL)
        return;
    s->ops->close(s);
    free(s);
}

int natter_store_records_write(natter_store_t *s, natter_msg_t *head, size_t n)
{
    return s->ops->records_write(s, head, n);
}
