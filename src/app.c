#include "core/util.h"
#include "natter.h"

uint64_t natter_app_next_id(natter_app_t *app)
{
    return natter_idgen_next(&app->ids, natter_now_ms());
}

int natter_app_stopping(natter_app_t *app)
{
    return atomic_load_explicit(&app->stopping, memory_order_relaxed);
}
