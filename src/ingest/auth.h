/*
 * What guards logins (POST /sessions) and registrations (POST /users),
 * each of which costs an Argon2id hash (~20 ms of a core):
 *
 *   limits   per client address (checked on the event loop, before any
 *            work is queued) and per username from that address (checked
 *            by the hashing thread before it hashes): 429 with
 *            Retry-After. Per username and address, not per username: one
 *            address guessing a user's password must not lock that user
 *            out from every other;
 *   a pool   of hashing threads of its own (--auth-workers) with a bounded
 *            queue (--auth-queue; past it 503 busy), apart from the API
 *            workers, so a login flood cannot take the workers that
 *            cache-missing posts need, scheduled as SCHED_BATCH so a
 *            hash never preempts an event loop that wakes up;
 *   a dummy  hash of the configured cost: a login for an unknown user
 *            verifies against it, so it takes as long as a wrong password
 *            and gets the same answer.
 *
 * Thread-safe once initialised.
 */
#ifndef NATTER_AUTH_H
#define NATTER_AUTH_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/password.h"
#include "core/ratelimit.h"
#include "ingest/router.h"
#include "ingest/workers.h"

typedef struct natter_auth {
    natter_workers_t pool;
    natter_ratelimit_t per_address;
    natter_ratelimit_t per_username;
    uint64_t seed; /* keys the username hash */
    char dummy_hash[NATTER_PWHASH_MAX];
} natter_auth_t;

/* Starts the pool; 0, or NATTER_EIO when the dummy hash cannot be made. */
int natter_auth_init(natter_auth_t *a, const natter_config_t *cfg);
/* After natter_workers_stop(&a->pool). */
void natter_auth_free(natter_auth_t *a);
/* 1 for the actions that hash a password (they run on a->pool). */
int natter_auth_hashes(natter_action_t action);
/* The key of a client address's bucket (an IPv6 address counts by its /64,
 * what one client usually holds). */
uint64_t natter_auth_address_key(const natter_auth_t *a, const struct sockaddr *sa, socklen_t len);
/* Takes one attempt from that bucket: 0, or the seconds until another is
 * allowed. */
uint32_t natter_auth_take_address(natter_auth_t *a, uint64_t address, int64_t now_ms);
/* The same for a username from that address; a login that succeeds gives
 * its attempt back (natter_auth_refund_username): only failures use the
 * budget up. */
uint32_t natter_auth_take_username(natter_auth_t *a, const char *username, uint64_t address, int64_t now_ms);
void natter_auth_refund_username(natter_auth_t *a, const char *username, uint64_t address, int64_t now_ms);

#endif
