/* Small helpers every module uses: allocation that aborts on OOM, clocks, time formatting. */
#ifndef NATTER_UTIL_H
#define NATTER_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A macro's value as a string literal (a constant in an SQL text). */
#define NATTER_STR_(x) #x
#define NATTER_STR(x) NATTER_STR_(x)

/* Allocation never returns NULL: on exhaustion it prints and aborts (see error.h). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Wall clock in milliseconds since the Unix epoch. */
int64_t natter_now_ms(void);
/* Wall clock in nanoseconds since the Unix epoch: comparable across nodes. */
int64_t natter_now_ns(void);
/* Monotonic clock in nanoseconds, for durations. */
uint64_t natter_mono_ns(void);
/* The same in milliseconds: what rate limits and throttles count in, so a
 * wall clock stepped back freezes none of them. */
int64_t natter_mono_ms(void);
/* The monotonic time ms from now (a negative ms is now), as
 * pthread_cond_timedwait takes it on a condition variable whose clock is
 * CLOCK_MONOTONIC. */
void natter_mono_deadline(struct timespec *ts, int ms);
/* A natter_mono_ns time as the timespec such a timed wait takes. */
struct timespec natter_mono_timespec(uint64_t ns);
/* Initialises a condition variable whose timed waits are on CLOCK_MONOTONIC
 * (deadlines from natter_mono_deadline; a wall clock step moves none). */
void natter_mono_cond_init(pthread_cond_t *cond);
/* Schedules the calling thread as SCHED_BATCH: when it wakes it does not
 * preempt the thread running on its core (an event loop), and it keeps the
 * same share of the CPU. On failure the thread stays scheduled as the
 * process is. */
void natter_sched_batch(void);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-27T21:30:00.123Z"); dst must hold NATTER_TIME_LEN bytes. */
#define NATTER_TIME_LEN 25
void natter_format_time(char *dst, int64_t ms);

/* Parses a decimal uint64 occupying exactly [s, s+len); 0 on success.
 * Rejects empty input, signs, leading '+', overflow and trailing bytes. */
int natter_parse_u64(const char *s, size_t len, uint64_t *out);

/* [src, src+len) percent-decoded (RFC 3986 §2.1: "%61" is "a", either case
 * of hex digits) into dst, at most cap bytes, not NUL-terminated: the
 * length, or -1 when an escape is malformed or the result does not fit. */
long natter_percent_decode(const char *src, size_t len, char *dst, size_t cap);

/* Mixes the bits of x (murmur3's finalizer): sequential or time-ordered ids
 * spread evenly over hash slots and shards. */
static inline uint64_t natter_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Number of Unicode code points in a valid UTF-8 string. */
size_t natter_utf8_count(const char *s, size_t len);
/* 1 if [s, s+len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int natter_utf8_valid(const char *s, size_t len);
/* The code point starting at s[*i] of valid UTF-8; advances *i past it. */
uint32_t natter_utf8_next(const unsigned char *s, size_t *i);
/* 1 for Unicode's White_Space code points and U+FEFF (what a JSON Schema
 * pattern's \s matches), which show as blank. */
int natter_unicode_space(uint32_t c);
/* 1 when valid UTF-8 [s, s+len) is empty or only such blanks. */
int natter_utf8_blank(const char *s, size_t len);

#endif
