#include "core/util.h"
#include "natter.h"

uint64_t natter_app_next_id(natter_app_t *app)
{
    pthread_mutex_lock(&app->ids_lock);
    uint64_t id = natter_idgen_next(&app->ids, natter_now_ms());
    pthread_mutex_unlock(&app->ids_lock);
    return id;
}
