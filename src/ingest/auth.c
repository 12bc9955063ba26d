#include "ingest/auth.h"
#include "core/error.h"
#include "core/util.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/random.h>


int natter_auth_init(natter_auth_t *a, const natter_config_t *cfg)
{
    natter_password_cost_t cost = {cfg->argon2_memory_kib, cfg->argon2_passes};
    static const char dummy[] = "not anyone's password";
    if (natter_password_hash(&cost, dummy, sizeof(dummy) - 1, a->dummy_hash) != NATTER_OK)
        return NATTER_EIO;
    if (getrandom(&a->seed, sizeof(a->seed), 0) != sizeof(a->seed))
        a->seed = natter_mono_ns();
    natter_ratelimit_init_per_minute(&a->per_address, cfg->auth_rate_ip, 0);
    natter_ratelimit_init_per_minute(&a->per_username, cfg->auth_rate_user, 0);
    natter_workers_start_as(&a->pool, cfg->auth_workers, cfg->auth_queue, "natter-auth", 1);
    return NATTER_OK;
}

void natter_auth_free(natter_auth_t *a)
{
    natter_workers_free(&a->pool);
    natter_ratelimit_free(&a->per_address);
    natter_ratelimit_free(&a->per_username);
}

int natter_auth_hashes(natter_action_t action)
{
    return action == NATTER_A_SESSION_CREATE || action == NATTER_A_USER_CREATE;
}

/* FNV-1a over bytes, seeded, then mixed; never 0 (the limiter's empty key). */
static uint64_t key_of(uint64_t seed, const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    h = natter_mix64(h);
    return h ? h : 1;
}

uint64_t natter_auth_address_key(const natter_auth_t *a, const struct sockaddr *sa, socklen_t len)
{
    uint8_t key[17] = {0};
    size_t n = 0;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        n = 5;
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4mapped, 12) == 0) { /* an IPv4 client on a dual-stack listener */
            key[0] = 4;
            memcpy(key + 1, b + 12, 4);
            n = 5;
        } else {
            key[0] = 6;
            memcpy(key + 1, b, 8);
            n = 9;
        }
    } else { /* no address to tell clients apart (a Unix socket): one bucket */
        n = 1;
    }
    return key_of(a->seed, key, n);
}

uint32_t natter_auth_take_address(natter_auth_t *a, uint64_t address, int64_t now_ms)
{
    return natter_ratelimit_take(&a->per_address, address, now_ms);
}

/* The username's bucket for one client address: another address's failures
 * never use it up. */
static uint64_t username_key(const natter_auth_t *a, const char *username, uint64_t address)
{
    return key_of(~a->seed ^ address, username, strlen(username));
}

uint32_t natter_auth_take_username(natter_auth_t *a, const char *username, uint64_t address, int64_t now_ms)
{
    return natter_ratelimit_take(&a->per_username, username_key(a, username, address), now_ms);
}

void natter_auth_refund_username(natter_auth_t *a, const char *username, uint64_t address, int64_t now_ms)
{
    natter_ratelimit_refund(&a->per_username, username_key(a, username, address), now_ms);
}
