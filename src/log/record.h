/*
 * The wire form of a log record in the distributed log (the Kafka record
 * value). Little-endian, versioned by its first byte. A message is written
 * as version 1, which every natter reads; an event (an edit, a delete, a
 * reaction, or an ephemeral kind) as version 2, which adds its kind and the
 * message it is about:
 *
 *   version 1 (a message):
 *     u8  1
 *     u64 id, u64 chat_id, u64 sender_id, i64 created_at_ms, i64 ingest_ns
 *     u8  client_id length, then its bytes (0..64)
 *     u32 content length, then its bytes (valid UTF-8, at most 16 KiB)
 *   version 2 (any kind):
 *     u8  2, u8 kind
 *     u64 id, u64 chat_id, u64 sender_id, i64 created_at_ms, i64 ingest_ns, u64 target_id
 *     u8  client_id length, then its bytes; u32 content length, then its bytes
 *
 * Keeping messages in version 1 lets a node that knows only version 1 go on
 * storing and pushing messages during a rolling upgrade (it skips the
 * events as records it cannot read).
 *
 * A message's recipients (message.h) travel beside the value, in the record
 * header "natter-to": n u64 ids, little-endian, 1 <= n <= 64. A node that
 * does not know the header ignores it; a header that is malformed is
 * ignored too (the message is whole without it: the fan-out reads the
 * chat's members itself).
 *
 * Records come off the network: decode checks every length, the kind, and
 * what the kind needs (a chat, a target, content of the right shape), and
 * rejects anything malformed rather than trusting the producer.
 */
#ifndef NATTER_RECORD_H
#define NATTER_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "core/message.h"

#define NATTER_RECORD_VERSION 1      /* messages */
#define NATTER_RECORD_VERSION_EVENT 2 /* events and ephemeral records */
#define NATTER_RECORD_CONTENT_MAX 16384
#define NATTER_RECORD_HEADER 42       /* version 1: bytes before client_id */
#define NATTER_RECORD_HEADER_EVENT 51 /* version 2: bytes before client_id */

/* Encodes into a malloc'd buffer; *len gets its size. */
uint8_t *natter_record_encode(const natter_msg_t *m, size_t *len);
#define NATTER_RECORD_RECIPIENTS_HEADER "natter-to"
#define NATTER_RECORD_RECIPIENTS_MAX_BYTES (NATTER_MSG_RECIPIENTS_MAX * 8)

/* Decodes a record; NULL when malformed. The message is malloc'd (free()),
 * its on_durable unset. */
natter_msg_t *natter_record_decode(const uint8_t *buf, size_t len);
/* The same with the value of its recipients header (to, tolen; NULL: none). */
natter_msg_t *natter_record_decode_to(const uint8_t *buf, size_t len, const uint8_t *to, size_t tolen);
/* The message's recipients as that header's value, into out (room for
 * NATTER_RECORD_RECIPIENTS_MAX_BYTES); its length, 0 when it carries none. */
size_t natter_record_recipients(const natter_msg_t *m, uint8_t *out);

#endif
