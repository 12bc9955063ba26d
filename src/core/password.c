#include "core/password.h"
#include "core/error.h"

#include <argon2.h>
#include <openssl/rand.h>

/* OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane (~20 ms on one core here). */
enum { PW_T_COST = 2, PW_M_COST_KIB = 19456, PW_LANES = 1, PW_SALT_LEN = 16, PW_HASH_LEN = 32 };

int natter_password_hash(const char *pw, size_t len, char dst[NATTER_PWHASH_MAX])
{
    unsigned char salt[PW_SALT_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return NATTER_EIO;
    int rc = argon2id_hash_encoded(PW_T_COST, PW_M_COST_KIB, PW_LANES, pw, len, salt, sizeof(salt), PW_HASH_LEN, dst,
                                   NATTER_PWHASH_MAX);
    return rc == ARGON2_OK ? NATTER_OK : NATTER_EIO;
}

int natter_password_verify(const char *phc, const char *pw, size_t len)
{
    return argon2id_verify(phc, pw, len) == ARGON2_OK;
}
