#include "core/password.h"
#include "core/error.h"

#include <argon2.h>
#include <openssl/rand.h>

/* One lane; the cost comes from the configuration (default: OWASP's minimum
 * for Argon2id, 19 MiB and 2 passes, ~20 ms on one core here). */
enum { PW_LANES = 1, PW_SALT_LEN = 16, PW_HASH_LEN = 32 };

int natter_password_hash(const natter_password_cost_t *cost, const char *pw, size_t len,
                         char dst[NATTER_PWHASH_MAX])
{
    unsigned char salt[PW_SALT_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return NATTER_EIO;
    int rc = argon2id_hash_encoded(cost->passes, cost->memory_kib, PW_LANES, pw, len, salt, sizeof(salt), PW_HASH_LEN, dst,
                                   NATTER_PWHASH_MAX);
    return rc == ARGON2_OK ? NATTER_OK : NATTER_EIO;
}

int natter_password_verify(const char *phc, const char *pw, size_t len)
{
    return argon2id_verify(phc, pw, len) == ARGON2_OK;
}
