#include "core/throttle.h"
#include "core/util.h"

#include <stdlib.h>

#define CAP_MIN 64

void natter_throttle_init(natter_throttle_t *t, int64_t window, size_t max)
{
    t->slots = NULL;
    t->cap = t->len = 0;
    t->max = max < CAP_MIN / 2 ? CAP_MIN / 2 : max;
    t->window = window;
}

void natter_throttle_free(natter_throttle_t *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->len = 0;
}

static natter_throttle_slot_t *find(natter_throttle_slot_t *slots, size_t cap, uint64_t a, uint64_t b)
{
    size_t i = (size_t)natter_mix64(a ^ natter_mix64(b)) & (cap - 1);
    while (slots[i].last != 0 && (slots[i].a != a || slots[i].b != b))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* A table of cap slots holding the pairs still inside their window at now. */
static void rebuild(natter_throttle_t *t, size_t cap, int64_t now)
{
    natter_throttle_slot_t *slots = xcalloc(cap, sizeof(*slots));
    size_t len = 0;
    for (size_t i = 0; i < t->cap; i++) {
        natter_throttle_slot_t *s = &t->slots[i];
        if (s->last != 0 && now - s->last < t->window) {
            *find(slots, cap, s->a, s->b) = *s;
            len++;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->len = len;
}

/* Room for one more pair, at most 3/4 full, never past max pairs. */
static void make_room(natter_throttle_t *t, int64_t now)
{
    if (t->cap != 0 && (t->len + 1) * 4 <= t->cap * 3)
        return;
    size_t cap = t->cap ? t->cap : CAP_MIN;
    rebuild(t, cap, now); /* first, forget the pairs whose window is over */
    while ((t->len + 1) * 4 > cap * 3 && cap / 4 * 3 < t->max)
        cap *= 2;
    if (cap != t->cap)
        rebuild(t, cap, now);
    if ((t->len + 1) * 4 > t->cap * 3 || t->len >= t->max)
        rebuild(t, t->cap, INT64_MAX); /* every pair is live and there is no room: forget them all */
}

int natter_throttle_pass(natter_throttle_t *t, uint64_t a, uint64_t b, int64_t now)
{
    if (t->cap != 0) {
        natter_throttle_slot_t *s = find(t->slots, t->cap, a, b);
        if (s->last != 0) {
            if (now - s->last < t->window)
                return 0;
            s->last = now;
            return 1;
        }
    }
    make_room(t, now);
    natter_throttle_slot_t *s = find(t->slots, t->cap, a, b);
    *s = (natter_throttle_slot_t){.a = a, .b = b, .last = now};
    t->len++;
    return 1;
}
