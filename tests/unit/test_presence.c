/* Unit tests for src/gateway/presence.c: this node's sockets with their
 * grace, other nodes' claims with their time to live, and the changes
 * reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gateway/presence.h"

#define GRACE 5000
#define TTL 10000

typedef struct {
    natter_presence_t p;
    char changes[256], ups[128], downs[128];
} fx_t;

static void tick(fx_t *f, int64_t now)
{
    natter_vec_t c, u, d;
    natter_vec_init(&c, sizeof(natter_presence_change_t));
    natter_vec_init(&u, sizeof(uint64_t));
    natter_vec_init(&d, sizeof(uint64_t));
    natter_presence_tick(&f->p, now, &c, &u, &d);
    f->changes[0] = f->ups[0] = f->downs[0] = '\0';
    for (size_t i = 0; i < c.len; i++) {
        natter_presence_change_t *x = NATTER_VEC_AT(&c, natter_presence_change_t, i);
        snprintf(f->changes + strlen(f->changes), 32, "%s%llu%s", i ? " " : "", (unsigned long long)x->user,
                 x->online ? "+" : "-");
    }
    for (size_t i = 0; i < u.len; i++)
        snprintf(f->ups + strlen(f->ups), 32, "%s%llu", i ? " " : "", (unsigned long long)*NATTER_VEC_AT(&u, uint64_t, i));
    for (size_t i = 0; i < d.len; i++)
        snprintf(f->downs + strlen(f->downs), 32, "%s%llu", i ? " " : "",
                 (unsigned long long)*NATTER_VEC_AT(&d, uint64_t, i));
    natter_vec_free(&c);
    natter_vec_free(&u);
    natter_vec_free(&d);
}

static int setup(void **state)
{
    static fx_t f;
    memset(&f, 0, sizeof(f));
    natter_presence_init(&f.p, 1, GRACE, TTL);
    f.p.sweep = 0; /* every tick walks every user: the tests tick at the times they mean */
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    natter_presence_free(&f->p);
    return 0;
}

/* One socket here: online at once, offline only after the grace. */
static void test_local_grace(void **state)
{
    fx_t *f = *state;
    natter_presence_local(&f->p, 7, +1, 1000);
    tick(f, 1000);
    assert_string_equal(f->changes, "7+");
    assert_string_equal(f->ups, "7");
    assert_true(natter_presence_online(&f->p, 7));
    natter_presence_local(&f->p, 7, +1, 1100); /* a second tab */
    natter_presence_local(&f->p, 7, -1, 1200);
    tick(f, 1300);
    assert_string_equal(f->changes, "");
    natter_presence_local(&f->p, 7, -1, 2000); /* the last one closes */
    tick(f, 2000);
    assert_string_equal(f->changes, "");
    tick(f, 2000 + GRACE - 1);
    assert_string_equal(f->changes, ""); /* still in the grace */
    assert_true(natter_presence_online(&f->p, 7));
    tick(f, 2000 + GRACE);
    assert_string_equal(f->changes, "7-");
    assert_string_equal(f->downs, "7");
    assert_false(natter_presence_online(&f->p, 7));
    assert_int_equal(f->p.users.len, 0); /* forgotten */
    assert_int_equal(f->p.sockets, 0);
}

/* A reload: the socket closes and another opens within the grace. */
static void test_reload_does_not_flicker(void **state)
{
    fx_t *f = *state;
    natter_presence_local(&f->p, 7, +1, 1000);
    tick(f, 1000);
    natter_presence_local(&f->p, 7, -1, 3000);
    tick(f, 3100);
    natter_presence_local(&f->p, 7, +1, 3500);
    tick(f, 3500);
    tick(f, 3000 + GRACE + 1);
    assert_string_equal(f->changes, "");
    assert_string_equal(f->downs, "");
    assert_true(natter_presence_online(&f->p, 7));
    natter_presence_local(&f->p, 8, -1, 4000); /* a close never opened: ignored */
    tick(f, 4000);
    assert_string_equal(f->changes, "");
}

/* Other nodes' claims: up, renewed by heartbeats, down, or run out. */
static void test_remote_claims(void **state)
{
    fx_t *f = *state;
    natter_presence_remote(&f->p, 2, 9, 1, 1000);
    tick(f, 1000);
    assert_string_equal(f->changes, "9+");
    assert_string_equal(f->ups, ""); /* not this node's to tell */
    natter_presence_remote(&f->p, 2, 9, 1, 1000 + TTL - 1); /* a heartbeat renews */
    tick(f, 1000 + TTL + 10);
    assert_string_equal(f->changes, "");
    natter_presence_remote(&f->p, 3, 9, 1, 12000); /* and another node */
    natter_presence_remote(&f->p, 2, 9, 0, 12000); /* node 2 says down */
    tick(f, 12000);
    assert_string_equal(f->changes, "");        /* still on node 3 */
    tick(f, 12000 + TTL);                        /* node 3 died: its claim runs out */
    assert_string_equal(f->changes, "9-");
    /* this node's own records coming back are not claims */
    natter_presence_remote(&f->p, 1, 5, 1, 30000);
    tick(f, 30000);
    assert_string_equal(f->changes, "");
    natter_presence_remote(&f->p, 4, 5, 0, 30000); /* a down for someone unknown */
    tick(f, 30000);
    assert_string_equal(f->changes, "");
    assert_int_equal(f->p.users.len, 0);
}

/* Online here and elsewhere: offline only when both are over. */
static void test_here_and_elsewhere(void **state)
{
    fx_t *f = *state;
    natter_presence_local(&f->p, 7, +1, 1000);
    natter_presence_remote(&f->p, 2, 7, 1, 1000);
    tick(f, 1000);
    assert_string_equal(f->changes, "7+");
    natter_presence_local(&f->p, 7, -1, 2000);
    tick(f, 2000 + GRACE);
    assert_string_equal(f->changes, "");
    assert_string_equal(f->downs, "7"); /* down here, for the others */
    tick(f, 1000 + TTL);
    assert_string_equal(f->changes, "7-");
    /* more claims than kept: the one running out first gives way */
    for (uint32_t node = 10; node < 10 + NATTER_PRESENCE_NODES_MAX + 3; node++)
        natter_presence_remote(&f->p, node, 8, 1, 20000 + node);
    tick(f, 20000);
    assert_string_equal(f->changes, "8+");
    natter_vec_t here;
    natter_vec_init(&here, sizeof(uint64_t));
    natter_presence_local(&f->p, 3, +1, 20000);
    natter_presence_here(&f->p, 20000, &here);
    assert_int_equal(here.len, 1);
    assert_int_equal(*NATTER_VEC_AT(&here, uint64_t, 0), 3);
    natter_vec_free(&here);
}

/* Between sweeps, a tick settles what changed at once; what time alone
 * changes waits for the next sweep. */
static void test_sweep(void **state)
{
    fx_t *f = *state;
    f->p.sweep = 1000;
    natter_presence_local(&f->p, 7, +1, 100);
    tick(f, 100); /* the first tick sweeps; the next sweep is due at 1100 */
    assert_string_equal(f->changes, "7+");
    natter_presence_local(&f->p, 8, +1, 200);
    tick(f, 200); /* no sweep due: the new socket is settled anyway */
    assert_string_equal(f->changes, "8+");
    natter_presence_local(&f->p, 7, -1, 300); /* 7's grace ends at 300 + GRACE = 5300 */
    tick(f, 350);
    assert_string_equal(f->changes, "");
    for (int64_t t = 1100; t <= 5100; t += 1000) { /* sweeps, all inside the grace */
        tick(f, t);
        assert_string_equal(f->changes, "");
    }
    tick(f, 5400); /* the grace is over, but no sweep is due before 6100 */
    assert_string_equal(f->changes, "");
    assert_true(natter_presence_online(&f->p, 7));
    tick(f, 6100);
    assert_string_equal(f->changes, "7-");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_does_not_flicker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_here_and_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
