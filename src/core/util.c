#include "core/util.h"
#include "core/error.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t n)
{
    fprintf(stderr, "natter: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

const char *natter_strerror(int rc)
{
    switch (rc) {
    case NATTER_OK: return "ok";
    case NATTER_EINVAL: return "invalid argument";
    case NATTER_ENOTFOUND: return "not found";
    case NATTER_ECONFLICT: return "conflict";
    case NATTER_EUNAVAIL: return "unavailable";
    case NATTER_EIO: return "i/o error";
    case NATTER_ETIMEDOUT: return "timed out";
    case NATTER_EFULL: return "queue full";
    default: return "unknown error";
    }
}

int64_t natter_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t natter_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t natter_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t natter_mono_ms(void)
{
    return (int64_t)(natter_mono_ns() / 1000000u);
}

void natter_mono_deadline(struct timespec *ts, int ms)
{
    *ts = natter_mono_timespec(natter_mono_ns() + (uint64_t)(ms > 0 ? ms : 0) * 1000000u);
}

struct timespec natter_mono_timespec(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
}

void natter_mono_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

void natter_sched_batch(void)
{
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &(struct sched_param){.sched_priority = 0});
}

/* Days since 1970-01-01 to a proleptic Gregorian date, by arithmetic on
 * 400-year eras (146,097 days each, years counted from March so the leap
 * day ends a year). Not gmtime_r: glibc's takes the process-wide tzset lock,
 * and this runs on every loop and the consumer for each message. */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
    days += 719468; /* 0000-03-01 to 1970-01-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;                                 /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);            /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                  /* [0, 11], 0 = March */
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

void natter_format_time(char *dst, int64_t ms)
{
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400;
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    /* by hand, not snprintf: this runs for every message answered or pushed */
    if (year < 0 || year > 9999)
        year = year < 0 ? 0 : 9999;
    const int parts[] = {year, month, day, (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60),
                         (int)(ms - secs * 1000)};
    const int widths[] = {4, 2, 2, 2, 2, 2, 3};
    const char seps[] = "--T::.Z";
    char *d = dst;
    for (int i = 0; i < 7; i++) {
        int v = parts[i] < 0 ? 0 : parts[i];
        for (int k = widths[i] - 1; k >= 0; k--, v /= 10)
            d[k] = (char)('0' + v % 10);
        d += widths[i];
        *d++ = seps[i];
    }
    *d = '\0';
}

int natter_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return NATTER_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return NATTER_EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            return NATTER_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return NATTER_OK;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

long natter_percent_decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++, n++) {
        int hi = 0, lo = 0;
        if (n == cap)
            return -1;
        if (src[i] != '%') {
            dst[n] = src[i];
            continue;
        }
        if (i + 2 >= len || (hi = hex_digit(src[i + 1])) < 0 || (lo = hex_digit(src[i + 2])) < 0)
            return -1;
        dst[n] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (long)n;
}

size_t natter_utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

uint32_t natter_utf8_next(const unsigned char *s, size_t *i)
{
    uint32_t c = s[*i];
    size_t more = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (more > 0)
        c &= 0x3F >> more;
    for ((*i)++; more > 0; more--, (*i)++)
        c = (c << 6) | (s[*i] & 0x3F);
    return c;
}

int natter_unicode_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000 || c == 0xFEFF;
}

int natter_utf8_blank(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;)
        if (!natter_unicode_space(natter_utf8_next(s, &i)))
            return 0;
    return 1;
}

int natter_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}
