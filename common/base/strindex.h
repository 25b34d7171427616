/* An index from strings to positions in the caller's array: FNV-1a, open
 * addressing with linear probing, kept at most half full by doubling as keys
 * are added. Keys are borrowed, not copied: they must outlive the index (a
 * caller that keeps its own copies, e.g. in the array the positions point
 * into, borrows them from there). {0} is an empty index. Not thread-safe.
 * The one string hash table of dealscore: a batch's messages per deal, result
 * rows matched to them, cohort keys, duplicate names. */
#ifndef DEALSCORE_STRINDEX_H
#define DEALSCORE_STRINDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char **keys;
    int *pos; /* -1: empty slot */
    size_t mask, n;
} ds_strindex_t;

/* An empty index sized for capacity keys without growing (more may be added). */
void ds_strindex_init(ds_strindex_t *x, size_t capacity);
/* The position of key, or -1. */
int ds_strindex_find(const ds_strindex_t *x, const char *key);
/* The position of key if present; else adds key at position pos (>= 0) and
 * returns pos. */
int ds_strindex_add(ds_strindex_t *x, const char *key, int pos);
/* Frees the table (not the keys); x is {0} after. */
void ds_strindex_free(ds_strindex_t *x);
/* The 64-bit FNV-1a hash of s. */
uint64_t ds_strhash(const char *s);

#endif
