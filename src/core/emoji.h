/*
 * The emoji of a reaction: what PUT/DELETE
 * /chats/{id}/messages/{message_id}/reactions/{emoji} carry, percent-encoded,
 * in their last path segment.
 *
 * natter does not carry Unicode's emoji tables; it takes what any emoji
 * sequence is made of and refuses the rest:
 *   - 1 to 8 code points of valid UTF-8 (a family or a flag fits; a
 *     sentence does not);
 *   - no control characters, no white space, no invisible format
 *     characters (category Cf but the joiner and tags of a sequence), no
 *     blanks (Hangul fillers, U+2800) and no noncharacters; no combining
 *     mark (Mn, Mc, Me, from scripts/gen-unicode-marks) first;
 *   - from ASCII only the keycap bases 0-9, # and *;
 *   - at least one code point that shows on its own: something beyond
 *     ASCII other than the joiners and selectors (U+200D, U+FE00-FE0F,
 *     tags U+E0020-E007F), or a keycap (U+20E3).
 * So "👍", "❤️", "1️⃣", "🇫🇷" and "👩‍👩‍👧" pass; "", "+1", ":)", "a b" and a
 * lone U+FE0F do not.
 */
#ifndef NATTER_EMOJI_H
#define NATTER_EMOJI_H

#include <stddef.h>

#define NATTER_EMOJI_MAX_CHARS 8
#define NATTER_EMOJI_MAX_BYTES 32 /* 8 code points of at most 4 bytes */

/* 1 when [s, s+len) is an emoji by the rules above. */
int natter_emoji_valid(const char *s, size_t len);

/* Percent-decodes the path segment [seg, seg+len) into out, which holds
 * NATTER_EMOJI_MAX_BYTES + 1 bytes and is NUL-terminated, and checks the
 * result with natter_emoji_valid. Bytes that are not part of an escape are
 * taken as they are ('+' stays '+'). Returns 0 with *outlen, or -1 when an
 * escape is malformed, the result is too long or not an emoji (out is then
 * unspecified). */
int natter_emoji_from_path(const char *seg, size_t len, char *out, size_t *outlen);

#endif
