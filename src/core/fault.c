#include "core/fault.h"
#include "core/error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One point's arming. Fields are written before `armed` is set (release)
 * and read after it is seen (acquire); a point re-armed while another
 * thread checks it may mix the two armings for that one call. */
typedef struct {
    atomic_int armed;
    _Atomic uint32_t nth, count, delay_ms;
    atomic_int rc, hold;
    _Atomic uint64_t calls;
} point_t;

static point_t points[NATTER_FAULT_COUNT];
static atomic_int any_armed; /* the fast path: nothing armed anywhere */

#define NATTER_FAULT_NAME_(name, str) str,
static const char *const names[NATTER_FAULT_COUNT] = {NATTER_FAULT_POINTS(NATTER_FAULT_NAME_)};
#undef NATTER_FAULT_NAME_

const char *natter_fault_name(natter_fault_point_t p)
{
    return p < NATTER_FAULT_COUNT ? names[p] : "?";
}

void natter_fault_arm(natter_fault_point_t p, const natter_fault_t *f)
{
    point_t *pt = &points[p];
    atomic_store(&pt->armed, 0);
    atomic_store(&pt->nth, f->nth);
    atomic_store(&pt->count, f->count);
    atomic_store(&pt->rc, f->rc);
    atomic_store(&pt->delay_ms, f->delay_ms);
    atomic_store(&pt->hold, f->hold);
    atomic_store(&pt->calls, 0);
    atomic_store_explicit(&pt->armed, 1, memory_order_release);
    atomic_store_explicit(&any_armed, 1, memory_order_release);
}

void natter_fault_clear(void)
{
    atomic_store(&any_armed, 0);
    for (size_t i = 0; i < NATTER_FAULT_COUNT; i++)
        atomic_store(&points[i].armed, 0);
}

void natter_fault_release(natter_fault_point_t p)
{
    atomic_store(&points[p].hold, 0);
}

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int natter_fault_check(natter_fault_point_t p)
{
    if (!atomic_load_explicit(&any_armed, memory_order_relaxed))
        return 0;
    point_t *pt = &points[p];
    if (!atomic_load_explicit(&pt->armed, memory_order_acquire))
        return 0;
    uint64_t call = atomic_fetch_add(&pt->calls, 1) + 1;
    uint32_t delay = atomic_load(&pt->delay_ms), nth = atomic_load(&pt->nth), count = atomic_load(&pt->count);
    if (delay > 0)
        sleep_ms(delay);
    while (atomic_load(&pt->hold) && atomic_load(&pt->armed))
        sleep_ms(1);
    if (nth == 0 || call < nth || (count > 0 && call >= (uint64_t)nth + count))
        return 0;
    return atomic_load(&pt->rc);
}

uint64_t natter_fault_calls(natter_fault_point_t p)
{
    return atomic_load(&points[p].calls);
}

/* ------------------------------------------------------------ the spec */

static const struct {
    const char *name;
    int rc;
} codes[] = {
    {"unavail", NATTER_EUNAVAIL}, {"timedout", NATTER_ETIMEDOUT}, {"io", NATTER_EIO},
    {"notfound", NATTER_ENOTFOUND}, {"conflict", NATTER_ECONFLICT}, {"inval", NATTER_EINVAL},
};

static int point_named(const char *s, size_t len)
{
    for (int i = 0; i < NATTER_FAULT_COUNT; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

/* A decimal number in [s, s+len), at most max; -1 when it is not one. */
static int64_t number(const char *s, size_t len, uint32_t max)
{
    int64_t v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/* One "KEY=VALUE" into f; 0 or -1. */
static int parse_setting(const char *s, size_t len, natter_fault_t *f, int *has_nth)
{
    const char *eq = memchr(s, '=', len);
    if (eq == NULL)
        return -1;
    size_t klen = (size_t)(eq - s), vlen = len - klen - 1;
    const char *v = eq + 1;
    int64_t n;
    if (klen == 2 && memcmp(s, "rc", 2) == 0) {
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
            if (strlen(codes[i].name) == vlen && memcmp(codes[i].name, v, vlen) == 0) {
                f->rc = codes[i].rc;
                return 0;
            }
        return -1;
    }
    if ((n = number(v, vlen, 3600000)) < 0)
        return -1;
    if (klen == 3 && memcmp(s, "nth", 3) == 0)
        f->nth = (uint32_t)n, *has_nth = 1;
    else if (klen == 5 && memcmp(s, "count", 5) == 0)
        f->count = (uint32_t)n;
    else if (klen == 5 && memcmp(s, "delay", 5) == 0)
        f->delay_ms = (uint32_t)n;
    else
        return -1;
    return 0;
}

/* One "POINT:SETTINGS" entry; 0 and *p, *f, or -1. */
static int parse_entry(const char *s, size_t len, int *p, natter_fault_t *f)
{
    const char *colon = memchr(s, ':', len);
    int has_nth = 0;
    memset(f, 0, sizeof(*f));
    if (colon == NULL || (*p = point_named(s, (size_t)(colon - s))) < 0)
        return -1;
    for (const char *q = colon + 1, *end = s + len; q < end;) {
        const char *comma = memchr(q, ',', (size_t)(end - q)), *e = comma ? comma : end;
        if (parse_setting(q, (size_t)(e - q), f, &has_nth) != 0)
            return -1;
        q = e + 1;
    }
    if (f->rc != 0 && !has_nth)
        f->nth = 1;
    if (f->nth > 0 && f->rc == 0)
        return -1; /* a failure needs its code */
    return 0;
}

int natter_fault_arm_spec(const char *spec, char *err, size_t errlen)
{
    int ps[NATTER_FAULT_COUNT];
    natter_fault_t fs[NATTER_FAULT_COUNT];
    size_t n = 0;
    for (const char *s = spec, *end = spec + strlen(spec); s < end;) {
        const char *semi = memchr(s, ';', (size_t)(end - s)), *e = semi ? semi : end;
        if (e > s) {
            if (n == NATTER_FAULT_COUNT || parse_entry(s, (size_t)(e - s), &ps[n], &fs[n]) != 0) {
                snprintf(err, errlen, "fault spec: cannot read '%.*s' (POINT:nth=N,count=N,rc=CODE,delay=MS)",
                         (int)(e - s), s);
                return NATTER_EINVAL;
            }
            n++;
        }
        s = e + 1;
    }
    for (size_t i = 0; i < n; i++)
        natter_fault_arm((natter_fault_point_t)ps[i], &fs[i]);
    return NATTER_OK;
}
