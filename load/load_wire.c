/* load_wire — see load_wire.h. */
#include "load_wire.h"

#include <string.h>

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void load_wire_encode(const load_rec_t *r, unsigned char *out)
{
    memset(out, 0, 4);
    out[0] = r->kind;
    put32(out + 4, r->listener);
    put64(out + 8, r->a);
    put64(out + 16, r->t);
    put64(out + 24, r->at);
    put64(out + 32, r->id.hi);
    put64(out + 40, r->id.lo);
}

int load_wire_decode(const unsigned char *in, load_rec_t *r)
{
    if (in[0] == 0 || in[0] >= LOAD_REC_KINDS || in[1] != 0 || in[2] != 0 || in[3] != 0)
        return -1;
    r->kind = in[0];
    r->listener = get32(in + 4);
    r->a = get64(in + 8);
    r->t = get64(in + 16);
    r->at = get64(in + 24);
    r->id.hi = get64(in + 32);
    r->id.lo = get64(in + 40);
    return 0;
}
