#include "ingest/reactions.h"
#include "core/id.h"

#include <string.h>

static json_t *id_string(uint64_t id)
{
    char s[NATTER_ID_STR_MAX];
    natter_id_format(s, id);
    return json_string(s);
}

/* One emoji's entry from its rows [rows, rows+n). */
static json_t *entry(const natter_reaction_row_t *rows, size_t n, uint64_t viewer)
{
    json_t *ids = json_array();
    int mine = 0;
    for (size_t i = 0; i < n && !mine; i++)
        mine = rows[i].user_id == viewer;
    if (mine)
        json_array_append_new(ids, id_string(viewer));
    for (size_t i = 0; i < n && json_array_size(ids) < NATTER_REACTION_USERS_MAX; i++)
        if (rows[i].user_id != viewer)
            json_array_append_new(ids, id_string(rows[i].user_id));
    return json_pack("{s:s, s:I, s:o}", "emoji", rows[0].emoji, "count", (json_int_t)n, "user_ids", ids);
}

json_t *natter_reactions_json(const natter_reaction_row_t *rows, size_t n, uint64_t viewer)
{
    json_t *arr = json_array();
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && strcmp(rows[j].emoji, rows[i].emoji) == 0; j++)
            ;
        json_array_append_new(arr, entry(rows + i, j - i, viewer));
    }
    return arr;
}

size_t natter_reactions_of_user(const natter_reaction_row_t *rows, size_t n, uint64_t viewer, const char *emoji,
                                int *has)
{
    size_t count = 0;
    *has = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].user_id != viewer)
            continue;
        count++;
        if (strcmp(rows[i].emoji, emoji) == 0)
            *has = 1;
    }
    return count;
}
