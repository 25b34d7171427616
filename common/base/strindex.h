/* An index from strings to positions: open addressing with linear probing
 * over a table sized once for at most `capacity` keys, at most half full.
 * Keys are borrowed, not copied: they must outlive the index. Used to
 * coalesce a batch's messages per deal and to match result rows to them in
 * linear time (a burst holds up to DEALSCORE_BURST_BATCH_SIZE messages). Not thread-safe. */
#ifndef DEALSCORE_STRINDEX_H
#define DEALSCORE_STRINDEX_H

#include <stddef.h>

typedef struct {
    const char **keys;
    int *pos; /* -1: empty slot */
    size_t mask;
} ds_strindex_t;

/* An empty index for up to capacity keys. */
void ds_strindex_init(ds_strindex_t *x, size_t capacity);
/* The position of key, or -1. */
int ds_strindex_find(const ds_strindex_t *x, const char *key);
/* The position of key if present; else adds key at position pos (at most
 * capacity keys in all) and returns pos. */
int ds_strindex_add(ds_strindex_t *x, const char *key, int pos);
void ds_strindex_free(ds_strindex_t *x);

#endif
