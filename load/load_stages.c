/* load_stages — see load_stages.h. */
#include "load_stages.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses a non-negative decimal number filling exactly [s, s+len). */
static int parse_number(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (!((buf[i] >= '0' && buf[i] <= '9') || buf[i] == '.'))
            return -1;
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + len || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

int load_stages_parse_duration(const char *s, size_t len, uint64_t *ns)
{
    size_t num = 0;
    while (num < len && ((s[num] >= '0' && s[num] <= '9') || s[num] == '.'))
        num++;
    double v, unit;
    if (parse_number(s, num, &v) != 0)
        return -1;
    const char *u = s + num;
    size_t ulen = len - num;
    if (ulen == 0 || (ulen == 1 && *u == 's'))
        unit = 1e9;
    else if (ulen == 2 && memcmp(u, "ms", 2) == 0)
        unit = 1e6;
    else if (ulen == 1 && *u == 'm')
        unit = 60e9;
    else if (ulen == 1 && *u == 'h')
        unit = 3600e9;
    else
        return -1;
    double total = v * unit;
    if (total < 1 || total > 1e15) /* at least 1 ns, at most ~11 days */
        return -1;
    *ns = (uint64_t)llround(total);
    return 0;
}

int load_stages_parse(const char *spec, load_stages_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p = spec;
    if (*p == '\0') {
        snprintf(err, errlen, "no stages");
        return -1;
    }
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (out->n == LOAD_STAGES_MAX) {
            snprintf(err, errlen, "more than %d stages", LOAD_STAGES_MAX);
            return -1;
        }
        load_stage_t *st = &out->s[out->n];
        if (colon == NULL || parse_number(p, (size_t)(colon - p), &st->rate) != 0 ||
            load_stages_parse_duration(colon + 1, len - (size_t)(colon + 1 - p), &st->dur_ns) != 0) {
            snprintf(err, errlen, "stage %zu \"%.*s\" is not RATE:DURATION (e.g. 1000:30s)", out->n + 1, (int)len, p);
            return -1;
        }
        out->n++;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

uint64_t load_stages_total_ns(const load_stages_t *st)
{
    uint64_t t = 0;
    for (size_t i = 0; i < st->n; i++)
        t += st->s[i].dur_ns;
    return t;
}
