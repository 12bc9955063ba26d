/* load_api — see load_api.h. */
#include "load_api.h"

#include <string.h>

const load_api_t *load_api_find(const char *name)
{
    static const load_api_t *const all[] = {&load_api_natter, &load_api_seed};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

static int digits(const char **p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    for (; *p < end && **p >= '0' && **p <= '9' && n < 20; (*p)++, n++)
        v = v * 10 + (uint64_t)(**p - '0');
    *out = v;
    return n > 0 ? 0 : -1;
}

int load_api_scan_content(const char *p, const char *end, uint64_t *t, uint64_t *seq)
{
    if (end - p < 2 || memcmp(p, "t=", 2) != 0)
        return -1;
    p += 2;
    if (digits(&p, end, t) != 0 || end - p < 3 || memcmp(p, " s=", 3) != 0)
        return -1;
    p += 3;
    return digits(&p, end, seq);
}
