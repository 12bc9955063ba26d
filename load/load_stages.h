/* load_stages — the arrival-rate stages of a run: "R:D,R:D,…".
 *
 * R is a rate in messages per second (a decimal number >= 0); D a duration:
 * a number followed by ms, s, m or h ("500ms", "30s", "1.5m"); a bare number
 * is seconds. Each stage ramps linearly from the rate the previous one ended
 * at (the first from the run's start rate) to R over D, as k6's
 * ramping-arrival-rate does: "1000:30s,1000:30s" ramps 0→1000 then holds.
 */
#ifndef NATTER_LOAD_STAGES_H
#define NATTER_LOAD_STAGES_H

#include <stddef.h>
#include <stdint.h>

enum { LOAD_STAGES_MAX = 64 };

typedef struct load_stage {
    double rate;     /* target rate at the end of the stage, msg/s */
    uint64_t dur_ns; /* > 0 */
} load_stage_t;

typedef struct load_stages {
    size_t n;
    load_stage_t s[LOAD_STAGES_MAX];
} load_stages_t;

/* Parses spec into out. Returns 0, or -1 with a reason in err (errlen bytes). */
int load_stages_parse(const char *spec, load_stages_t *out, char *err, size_t errlen);
/* Parses one duration ("30s", "500ms", "2m", "1h", "3"). Returns 0 or -1. */
int load_stages_parse_duration(const char *s, size_t len, uint64_t *ns);
/* Sum of every stage's duration. */
uint64_t load_stages_total_ns(const load_stages_t *st);

#endif
