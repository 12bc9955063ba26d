/* load_sched — see load_sched.h. Within stage k, with τ the seconds since it
 * began, D its length, r its start and R its end rate:
 *   N(τ) = n0 + r τ + (R - r) τ² / (2D)
 * and its inverse, written so that it is stable for R < r as well:
 *   τ = 2 Δ / (r + sqrt(r² + 2 (R - r) Δ / D)),  Δ = n - n0. */
#include "load_sched.h"

#include <math.h>

/* Counts are compared with a little slack so that floating-point rounding
 * never makes a send due a hair late (N(t_i) computes to i + 1 - 1e-12). */
#define SLACK 1e-9

void load_sched_init(load_sched_t *s, const load_stages_t *stages, double start_rate)
{
    s->stages = *stages;
    s->start_rate = start_rate;
    double rate = start_rate, n = 0;
    uint64_t t = 0;
    for (size_t k = 0; k < stages->n; k++) {
        const load_stage_t *st = &stages->s[k];
        s->t0_ns[k] = t;
        s->n0[k] = n;
        s->r0[k] = rate;
        n += (rate + st->rate) / 2 * ((double)st->dur_ns / 1e9);
        t += st->dur_ns;
        rate = st->rate;
    }
    s->t0_ns[stages->n] = t;
    s->n0[stages->n] = n;
}

uint64_t load_sched_end_ns(const load_sched_t *s)
{
    return s->t0_ns[s->stages.n];
}

static double n_at(const load_sched_t *s, uint64_t t_ns)
{
    size_t n = s->stages.n;
    if (t_ns >= s->t0_ns[n])
        return s->n0[n];
    size_t k = 0;
    while (k + 1 < n && t_ns >= s->t0_ns[k + 1])
        k++;
    double D = (double)s->stages.s[k].dur_ns / 1e9;
    double tau = (double)(t_ns - s->t0_ns[k]) / 1e9;
    double r = s->r0[k], R = s->stages.s[k].rate;
    return s->n0[k] + r * tau + (R - r) * tau * tau / (2 * D);
}

uint64_t load_sched_due(const load_sched_t *s, uint64_t t_ns)
{
    return (uint64_t)floor(n_at(s, t_ns) + SLACK);
}

uint64_t load_sched_total(const load_sched_t *s)
{
    return (uint64_t)floor(s->n0[s->stages.n] + SLACK);
}

double load_sched_rate(const load_sched_t *s, uint64_t t_ns)
{
    size_t n = s->stages.n;
    if (n == 0 || t_ns >= s->t0_ns[n])
        return 0;
    size_t k = 0;
    while (k + 1 < n && t_ns >= s->t0_ns[k + 1])
        k++;
    double frac = (double)(t_ns - s->t0_ns[k]) / (double)s->stages.s[k].dur_ns;
    return s->r0[k] + (s->stages.s[k].rate - s->r0[k]) * frac;
}

uint64_t load_sched_time_of(const load_sched_t *s, uint64_t i)
{
    double target = (double)i + 1;
    size_t n = s->stages.n, k = 0;
    while (k + 1 < n && target > s->n0[k + 1] + SLACK)
        k++;
    double D = (double)s->stages.s[k].dur_ns / 1e9;
    double r = s->r0[k], R = s->stages.s[k].rate;
    double delta = target - s->n0[k];
    if (delta < 0)
        delta = 0;
    double disc = r * r + 2 * (R - r) * delta / D;
    if (disc < 0)
        disc = 0;
    double den = r + sqrt(disc);
    double tau = den > 0 ? 2 * delta / den : 0;
    uint64_t t = s->t0_ns[k] + (uint64_t)ceil(tau * 1e9 - 1e-3);
    if (t > s->t0_ns[k + 1])
        t = s->t0_ns[k + 1];
    return t;
}
