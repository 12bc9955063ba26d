#include "gateway/presence.h"
#include "core/util.h"

#include <stdlib.h>

typedef struct presence_entry {
    uint32_t sockets;      /* open here */
    int64_t grace_until;   /* no socket here: online here until then (0: not in a grace) */
    uint8_t up_here;       /* online here, as last told to the other nodes */
    uint8_t reported;      /* online, as last reported to this node's sockets */
    uint8_t dirty;         /* in natter_presence_t.dirty */
    uint8_t nclaims;
    struct {
        uint32_t node;
        int64_t until;
    } claims[NATTER_PRESENCE_NODES_MAX];
} presence_entry_t;

void natter_presence_init(natter_presence_t *p, uint32_t self, int64_t grace, int64_t ttl)
{
    natter_u64map_init(&p->users);
    natter_vec_init(&p->dirty, sizeof(uint64_t));
    p->self = self;
    p->sweep = NATTER_PRESENCE_SWEEP_MS;
    p->next_sweep = 0;
    p->grace = grace;
    p->ttl = ttl;
    p->sockets = 0;
}

void natter_presence_free(natter_presence_t *p)
{
    for (size_t i = 0; i < p->users.cap; i++)
        if (p->users.keys[i])
            free(p->users.vals[i]);
    natter_u64map_free(&p->users);
    natter_vec_free(&p->dirty);
}

static void mark(natter_presence_t *p, uint64_t user, presence_entry_t *e)
{
    if (!e->dirty) {
        e->dirty = 1;
        *(uint64_t *)natter_vec_push(&p->dirty) = user;
    }
}

static presence_entry_t *entry(natter_presence_t *p, uint64_t user)
{
    presence_entry_t *e = natter_u64map_get(&p->users, user);
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        natter_u64map_put(&p->users, user, e);
    }
    mark(p, user, e);
    return e;
}

void natter_presence_local(natter_presence_t *p, uint64_t user, int delta, int64_t now)
{
    presence_entry_t *e = delta > 0 || natter_u64map_get(&p->users, user) ? entry(p, user) : NULL;
    if (e == NULL || (delta < 0 && e->sockets == 0))
        return; /* a close without its open: nothing to take back */
    if (delta > 0) {
        e->sockets++;
        p->sockets++;
        e->grace_until = 0;
    } else {
        e->sockets--;
        p->sockets--;
        if (e->sockets == 0)
            e->grace_until = now + p->grace;
    }
}

void natter_presence_remote(natter_presence_t *p, uint32_t node, uint64_t user, int up, int64_t now)
{
    if (node == p->self)
        return;
    presence_entry_t *e = up || natter_u64map_get(&p->users, user) ? entry(p, user) : NULL;
    if (e == NULL)
        return;
    int at = -1, soonest = 0;
    for (int i = 0; i < e->nclaims; i++) {
        if (e->claims[i].node == node)
            at = i;
        if (e->claims[i].until < e->claims[soonest].until)
            soonest = i;
    }
    if (!up) {
        if (at >= 0)
            e->claims[at] = e->claims[--e->nclaims];
        return;
    }
    if (at < 0)
        at = e->nclaims < NATTER_PRESENCE_NODES_MAX ? e->nclaims++ : soonest;
    e->claims[at].node = node;
    e->claims[at].until = now + p->ttl;
}

static int here(const presence_entry_t *e, int64_t now)
{
    return e->sockets > 0 || (e->grace_until != 0 && now < e->grace_until);
}

/* Drops the claims that ran out; 1 when one is left. */
static int elsewhere(presence_entry_t *e, int64_t now)
{
    for (int i = 0; i < e->nclaims;)
        if (e->claims[i].until <= now)
            e->claims[i] = e->claims[--e->nclaims];
        else
            i++;
    return e->nclaims > 0;
}

/* Brings one user to now; 1 when they are offline everywhere (to forget). */
static int settle(presence_entry_t *e, uint64_t user, int64_t now, natter_vec_t *changes, natter_vec_t *ups,
                  natter_vec_t *downs)
{
    int local = here(e, now), online = elsewhere(e, now) || local;
    e->dirty = 0;
    if (!local)
        e->grace_until = 0;
    if (local != e->up_here) {
        e->up_here = (uint8_t)local;
        *(uint64_t *)natter_vec_push(local ? ups : downs) = user;
    }
    if (online != e->reported) {
        e->reported = (uint8_t)online;
        *(natter_presence_change_t *)natter_vec_push(changes) = (natter_presence_change_t){user, online};
    }
    return !online;
}

void natter_presence_tick(natter_presence_t *p, int64_t now, natter_vec_t *changes, natter_vec_t *ups,
                          natter_vec_t *downs)
{
    natter_vec_t gone;
    natter_vec_init(&gone, sizeof(uint64_t));
    for (size_t i = 0; i < p->dirty.len; i++) {
        uint64_t user = *NATTER_VEC_AT(&p->dirty, uint64_t, i);
        presence_entry_t *e = natter_u64map_get(&p->users, user);
        if (e != NULL && settle(e, user, now, changes, ups, downs))
            free(natter_u64map_del(&p->users, user));
    }
    p->dirty.len = 0;
    if (now >= p->next_sweep) {
        p->next_sweep = now + p->sweep;
        for (size_t i = 0; i < p->users.cap; i++)
            if (p->users.keys[i] && settle(p->users.vals[i], p->users.keys[i], now, changes, ups, downs))
                *(uint64_t *)natter_vec_push(&gone) = p->users.keys[i];
        for (size_t i = 0; i < gone.len; i++) /* not while walking the map */
            free(natter_u64map_del(&p->users, *NATTER_VEC_AT(&gone, uint64_t, i)));
    }
    natter_vec_free(&gone);
}

void natter_presence_here(natter_presence_t *p, int64_t now, natter_vec_t *out)
{
    for (size_t i = 0; i < p->users.cap; i++)
        if (p->users.keys[i] && here(p->users.vals[i], now))
            *(uint64_t *)natter_vec_push(out) = p->users.keys[i];
}

int natter_presence_online(const natter_presence_t *p, uint64_t user)
{
    const presence_entry_t *e = natter_u64map_get(&p->users, user);
    return e != NULL && e->reported;
}
