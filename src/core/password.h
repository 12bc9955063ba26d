/* Password hashing: Argon2id (libargon2) in the PHC string format. Slow by design:
 * call from a worker thread, never the event loop. */
#ifndef NATTER_PASSWORD_H
#define NATTER_PASSWORD_H

#include <stddef.h>

#define NATTER_PWHASH_MAX 128

/* Hashes with a fresh random salt into dst (NUL-terminated PHC string).
 * Returns 0 or NATTER_EIO. */
int natter_password_hash(const char *pw, size_t len, char dst[NATTER_PWHASH_MAX]);
/* 1 if pw matches the PHC string, 0 if not or if the string is malformed. */
int natter_password_verify(const char *phc, const char *pw, size_t len);

#endif
