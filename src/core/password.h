/* Password hashing: Argon2id (libargon2) in the PHC string format. Slow by design:
 * call from a worker thread, never the event loop. */
#ifndef NATTER_PASSWORD_H
#define NATTER_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#define NATTER_PWHASH_MAX 128

/* Argon2id's cost: memory in KiB and passes. The default is OWASP's
 * minimum; a benchmark that registers 100,000 users may lower it
 * (--argon2-memory, --argon2-passes), a production node never should. */
typedef struct natter_password_cost {
    uint32_t memory_kib;
    uint32_t passes;
} natter_password_cost_t;

/* Hashes with a fresh random salt into dst (NUL-terminated PHC string); the
 * cost is recorded in the string, so verifying needs no configuration.
 * Returns 0 or NATTER_EIO. */
int natter_password_hash(const natter_password_cost_t *cost, const char *pw, size_t len,
                         char dst[NATTER_PWHASH_MAX]);
/* 1 if pw matches the PHC string, 0 if not or if the string is malformed. */
int natter_password_verify(const char *phc, const char *pw, size_t len);

#endif
