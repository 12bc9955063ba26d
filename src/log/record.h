/*
 * The wire form of a message in the distributed log (the Kafka record
 * value). Little-endian, versioned by its first byte:
 *
 *   u8  version (1)
 *   u64 id, u64 chat_id, u64 sender_id, i64 created_at_ms, i64 ingest_ns
 *   u8  client_id length, then its bytes (0..64)
 *   u32 content length, then its bytes (valid UTF-8, at most 16 KiB)
 *
 * Records come off the network: decode checks every length and rejects
 * anything malformed rather than trusting the producer.
 */
#ifndef NATTER_RECORD_H
#define NATTER_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "core/message.h"

#define NATTER_RECORD_VERSION 1
#define NATTER_RECORD_CONTENT_MAX 16384
#define NATTER_RECORD_HEADER 42 /* bytes before client_id: version, five u64, the client_id length */

/* Encodes into a malloc'd buffer; *len gets its size. */
uint8_t *natter_record_encode(const natter_msg_t *m, size_t *len);
/* Decodes a record; NULL when malformed. The message is malloc'd (free()),
 * its on_durable unset. */
natter_msg_t *natter_record_decode(const uint8_t *buf, size_t len);

#endif
