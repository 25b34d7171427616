/* A set of UUIDs (text form in, 128 bits stored): open addressing with
 * linear probing and deletion by backward shift, so lookups stay short
 * after any number of removals. Not thread-safe. Zero-initialize a
 * ds_uuidset_t to get an empty set; ds_uuidset_clear frees it. */
#ifndef DEALSCORE_UUIDSET_H
#define DEALSCORE_UUIDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hi, lo;
} ds_uuid128_t;

typedef struct {
    ds_uuid128_t *slots; /* the nil UUID marks an empty slot */
    size_t cap, n;       /* cap: a power of two, or 0 */
} ds_uuidset_t;

/* Parses the 36-character text form (either case) into *out. False for
 * anything else, and for the nil UUID, which no set can hold. */
bool ds_uuid_parse128(const char *s, ds_uuid128_t *out);

/* False for a text that ds_uuid_parse128 rejects. */
bool ds_uuidset_has(const ds_uuidset_t *s, const char *uuid);
/* Adds uuid; returns false (and adds nothing) for a text ds_uuid_parse128
 * rejects. The table doubles at half full. */
bool ds_uuidset_add(ds_uuidset_t *s, const char *uuid);
/* Removes uuid if present. */
void ds_uuidset_remove(ds_uuidset_t *s, const char *uuid);
/* Empties the set and frees its memory. */
void ds_uuidset_clear(ds_uuidset_t *s);

#endif
