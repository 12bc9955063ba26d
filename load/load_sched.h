/* load_sched — the open-loop arrival schedule, a pure function of time.
 *
 * The rate r(t) follows the stages (linear ramps); N(t) = ∫0..t r is the
 * number of sends owed by time t. Send i (0-based) is due at the instant
 * N(t) = i + 1, so a stage issues floor(N(end)) - floor(N(start)) sends and
 * a constant rate R issues its first send 1/R after the stage starts. Nothing
 * here reads a clock: the caller asks "how many are due at t" and "when is
 * send i due", which is what the tests check and what keeps latency honest
 * (it is counted from load_sched_time_of(i), never from when the send left).
 */
#ifndef NATTER_LOAD_SCHED_H
#define NATTER_LOAD_SCHED_H

#include <stdint.h>

#include "load_stages.h"

typedef struct load_sched {
    load_stages_t stages;
    double start_rate;                   /* rate at t = 0 */
    uint64_t t0_ns[LOAD_STAGES_MAX + 1]; /* stage k spans [t0_ns[k], t0_ns[k+1]) */
    double n0[LOAD_STAGES_MAX + 1];      /* N at each stage start; n0[n] = N(end) */
    double r0[LOAD_STAGES_MAX];          /* rate at each stage start */
} load_sched_t;

void load_sched_init(load_sched_t *s, const load_stages_t *stages, double start_rate);
/* Number of sends due in [0, t_ns] (non-decreasing; constant after the end). */
uint64_t load_sched_due(const load_sched_t *s, uint64_t t_ns);
/* Every send of the whole schedule. */
uint64_t load_sched_total(const load_sched_t *s);
/* When send i (< load_sched_total) is due, in ns from the start. */
uint64_t load_sched_time_of(const load_sched_t *s, uint64_t i);
/* The offered rate at t_ns (msg/s). */
double load_sched_rate(const load_sched_t *s, uint64_t t_ns);
uint64_t load_sched_end_ns(const load_sched_t *s);

#endif
