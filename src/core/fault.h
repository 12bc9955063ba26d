/*
 * Fault injection: the seam through which tests reach failure paths, in
 * the shape of SQLite's os.c wrappers and test_vfs. Every wrapper around a
 * LOG or STORE method (log.c, store.c) asks natter_fault_check() first
 * (and one backend's append: log.producer_fatal, where the Kafka log has
 * librdkafka raise its idempotent producer's fatal error); a
 * point that is armed can make the Nth call after arming fail with a given
 * code (and the calls after it, up to a count), and can delay every call.
 *
 * Nothing is armed unless a test arms it: in-process tests call
 * natter_fault_arm(); a test of the real binary sets NATTER_FAULTS in its
 * environment (parsed once at start, see natter_fault_arm_spec). With
 * nothing armed a check is one relaxed atomic load.
 *
 * Thread-safe: any thread may check while another arms or clears.
 */
#ifndef NATTER_FAULT_H
#define NATTER_FAULT_H

#include <stddef.h>
#include <stdint.h>

/* X(enum suffix, spec name): one point per wrapped method. Only append. */
#define NATTER_FAULT_POINTS(X)                                                                                       \
    X(LOG_APPEND, "log.append")                                                                                      \
    X(LOG_POLL, "log.poll")                                                                                          \
    X(LOG_COMMIT, "log.commit")                                                                                      \
    X(LOG_PING, "log.ping")                                                                                          \
    X(STORE_PING, "store.ping")                                                                                      \
    X(STORE_USER_CREATE, "store.user_create")                                                                        \
    X(STORE_USER_BY_NAME, "store.user_by_name")                                                                      \
    X(STORE_USER_BY_ID, "store.user_by_id")                                                                          \
    X(STORE_SESSION_CREATE, "store.session_create")                                                                  \
    X(STORE_SESSION_USER, "store.session_user")                                                                      \
    X(STORE_SESSION_DELETE, "store.session_delete")                                                                  \
    X(STORE_CHAT_CREATE, "store.chat_create")                                                                        \
    X(STORE_CHAT_GET, "store.chat_get")                                                                              \
    X(STORE_CHAT_MEMBER_IDS, "store.chat_member_ids")                                                                \
    X(STORE_CHAT_MEMBERS, "store.chat_members")                                                                      \
    X(STORE_MEMBER_ADD, "store.member_add")                                                                          \
    X(STORE_MEMBER_REMOVE, "store.member_remove")                                                                    \
    X(STORE_USER_CHATS, "store.user_chats")                                                                          \
    X(STORE_MESSAGES_INSERT, "store.messages_insert")                                                                \
    X(STORE_MESSAGES_PAGE, "store.messages_page")                                                                    \
    X(STORE_MESSAGE_IN_CHAT, "store.message_in_chat")                                                                \
    X(STORE_READ_MARKER_ADVANCE, "store.read_marker_advance")                                                        \
    X(STORE_CLIENT_IDS_CLAIM, "store.client_ids_claim")                                                              \
    X(STORE_TICKET_CREATE, "store.ticket_create")                                                                    \
    X(STORE_TICKET_TAKE, "store.ticket_take")                                                                        \
    X(LOG_APPEND_HELD, "log.append_held")                                                                            \
    X(STORE_NODE_LEASE, "store.node_lease")                                                                          \
    X(STORE_MESSAGE_GET, "store.message_get")                                                                        \
    X(STORE_REACTIONS_RANGE, "store.reactions_range")                                                                \
    X(STORE_EVENTS_PAGE, "store.events_page")                                                                        \
    X(STORE_READ_MARKERS, "store.read_markers")                                                                      \
    X(STORE_USER_CHAT_IDS, "store.user_chat_ids")                                                                    \
    X(LOG_DEAD_LETTER, "log.dead_letter")                                                                            \
    X(LOG_FANOUT_POLL, "log.fanout_poll")                                                                           \
    X(LOG_PRODUCER_FATAL, "log.producer_fatal")                                                                     \
    X(LOG_PUBLISH, "log.publish")                                                                                    \
    X(STORE_RECORDS_SYNC, "store.records_sync")

#define NATTER_FAULT_ENUM_(name, str) NATTER_FAULT_##name,
typedef enum { NATTER_FAULT_POINTS(NATTER_FAULT_ENUM_) NATTER_FAULT_COUNT } natter_fault_point_t;
#undef NATTER_FAULT_ENUM_

typedef struct natter_fault {
    uint32_t nth;      /* the first call that fails, counted from 1 after arming; 0: none fails */
    uint32_t count;    /* calls that fail from the nth on; 0: every one from then on */
    int rc;            /* what they fail with: a NATTER_E* code */
    uint32_t delay_ms; /* every call waits this long before it goes on (or fails) */
    int hold;          /* every call waits, once counted, until natter_fault_release or natter_fault_clear */
} natter_fault_t;

/* Arms point p (replacing what was armed there) and restarts its count. */
void natter_fault_arm(natter_fault_point_t p, const natter_fault_t *f);
/* Disarms every point (and lets held calls go on). */
void natter_fault_clear(void);
/* Lets the calls held at p go on, and the calls after them. */
void natter_fault_release(natter_fault_point_t p);
/* Called by a wrapper before its backend: sleeps the point's delay, then
 * returns the code this call must fail with, or 0 to go on. */
int natter_fault_check(natter_fault_point_t p);
/* Calls of p checked since it was last armed (0 when never armed). */
uint64_t natter_fault_calls(natter_fault_point_t p);
/* The spec name of a point ("store.messages_insert"). */
const char *natter_fault_name(natter_fault_point_t p);

/* Arms points from text, as NATTER_FAULTS holds it: entries separated by
 * ';', each "POINT:KEY=VALUE[,KEY=VALUE...]" with keys nth, count, rc
 * (unavail, timedout, io, notfound, conflict, inval) and delay (ms), e.g.
 * "store.messages_insert:nth=1,count=3,rc=unavail;log.append:delay=50".
 * nth defaults to 1 when rc is given. Arms nothing and returns
 * NATTER_EINVAL with a reason in err when any entry is malformed. */
int natter_fault_arm_spec(const char *spec, char *err, size_t errlen);

#endif
