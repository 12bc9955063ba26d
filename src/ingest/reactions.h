/*
 * The "reactions" of a message in history: its stored reaction rows
 * (store.h, natter_reaction_row_t) grouped by emoji into
 * [{"emoji","count","user_ids"}]. Pure, so it is unit-tested alone.
 */
#ifndef NATTER_REACTIONS_H
#define NATTER_REACTIONS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define NATTER_REACTION_USERS_MAX 10 /* user ids listed per emoji; count says how many in all */

/* The reactions array of one message from its rows, which are one
 * message's, ordered by emoji then user id (as reactions_range gives
 * them). Emoji keep that order (bytewise: a chip does not move when its
 * count changes). Each lists up to NATTER_REACTION_USERS_MAX user ids:
 * viewer's first when viewer reacted with it (so a client knows what it
 * can take back), then the rest by id. A new reference (an empty array
 * for no rows). */
json_t *natter_reactions_json(const natter_reaction_row_t *rows, size_t n, uint64_t viewer);

/* How many of one message's rows are viewer's, and whether one of them is
 * emoji (1) or not (0). */
size_t natter_reactions_of_user(const natter_reaction_row_t *rows, size_t n, uint64_t viewer, const char *emoji,
                                int *has);

#endif
