#include "store/store.h"
#include "core/metrics.h"
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

static int has_metrics(const natter_store_ops_t *ops)
{
    return ops->version >= 2 && ops->metrics_render != NULL;
}

static void render_metrics(void *store, natter_metrics_append_fn append, void *out)
{
    natter_store_t *s = store;
    s->ops->metrics_render(s, append, out);
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
    if (has_metrics(ops))
        natter_metrics_set_extra(render_metrics, s);
    return s;
}

void natter_store_close(natter_store_t *s)
{
    if (s == NULL)
        return;
    if (has_metrics(s->ops))
        natter_metrics_set_extra(NULL, NULL);
    s->ops->close(s);
    free(s);
}
