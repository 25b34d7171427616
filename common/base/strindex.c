#include "base/strindex.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

uint64_t ds_strhash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64: offset basis, then the prime */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* A table of n slots (a power of two), all empty. */
static void alloc_slots(ds_strindex_t *x, size_t n) {
    x->keys = ds_malloc(n * sizeof *x->keys);
    x->pos = ds_malloc(n * sizeof *x->pos);
    for (size_t i = 0; i < n; i++) x->pos[i] = -1;
    x->mask = n - 1;
}

void ds_strindex_init(ds_strindex_t *x, size_t capacity) {
    size_t n = 16;
    while (n < capacity * 2) n *= 2;
    alloc_slots(x, n);
    x->n = 0;
}

static size_t slot_of(const ds_strindex_t *x, const char *key) {
    size_t s = ds_strhash(key) & x->mask;
    while (x->pos[s] >= 0 && strcmp(x->keys[s], key) != 0) s = (s + 1) & x->mask;
    return s;
}

int ds_strindex_find(const ds_strindex_t *x, const char *key) {
    return x->pos ? x->pos[slot_of(x, key)] : -1;
}

/* Doubles the table (or makes the first one) and puts every key back. */
static void grow(ds_strindex_t *x) {
    ds_strindex_t old = *x;
    alloc_slots(x, old.pos ? (old.mask + 1) * 2 : 16);
    for (size_t i = 0; old.pos && i <= old.mask; i++)
        if (old.pos[i] >= 0) {
            size_t s = slot_of(x, old.keys[i]);
            x->keys[s] = old.keys[i];
            x->pos[s] = old.pos[i];
        }
    free(old.keys);
    free(old.pos);
}

int ds_strindex_add(ds_strindex_t *x, const char *key, int pos) {
    if (!x->pos || (x->n + 1) * 2 > x->mask + 1) {
        int found = ds_strindex_find(x, key);
        if (found >= 0) return found;
        grow(x);
    }
    size_t s = slot_of(x, key);
    if (x->pos[s] >= 0) return x->pos[s];
    x->keys[s] = key;
    x->pos[s] = pos;
    x->n++;
    return pos;
}

void ds_strindex_free(ds_strindex_t *x) {
    free(x->keys);
    free(x->pos);
    *x = (ds_strindex_t){0};
}
