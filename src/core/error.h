/*
 * natter's error convention, for every layer below main():
 *
 *   functions return an int: NATTER_OK (0) on success, a negative NATTER_E*
 *   code on failure. Where a human-readable reason helps, the caller passes a
 *   buffer (char *err, size_t errlen) that the callee fills; the top decides
 *   whether to log, answer the client or exit. Nothing below main() exits.
 *
 * Out of memory: natter aborts (see xmalloc in util.h), like Redis and h2o.
 * A chat server that cannot allocate a message cannot make progress, and
 * checking every allocation would hide the real error paths.
 */
#ifndef NATTER_ERROR_H
#define NATTER_ERROR_H

enum {
    NATTER_OK = 0,
    NATTER_EINVAL = -1,      /* bad argument or input */
    NATTER_ENOTFOUND = -2,   /* no such row / id */
    NATTER_ECONFLICT = -3,   /* unique constraint: the row already exists */
    NATTER_EUNAVAIL = -4,    /* backend unreachable, full or shutting down */
    NATTER_EIO = -5,         /* backend failed in a way that is not transient */
    NATTER_ETIMEDOUT = -6,   /* backend did not answer in time */
    NATTER_EFULL = -7,       /* a bounded queue is full: try again soon */
};

/* A short constant name for a code, for logs. */
const char *natter_strerror(int rc);

#endif
