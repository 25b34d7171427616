#include "base/strindex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

/* FNV-1a. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void ds_strindex_init(ds_strindex_t *x, size_t capacity) {
    size_t n = 16;
    while (n < capacity * 2) n *= 2;
    x->keys = ds_malloc(n * sizeof *x->keys);
    x->pos = ds_malloc(n * sizeof *x->pos);
    for (size_t i = 0; i < n; i++) x->pos[i] = -1;
    x->mask = n - 1;
}

static size_t slot_of(const ds_strindex_t *x, const char *key) {
    size_t s = hash_str(key) & x->mask;
    while (x->pos[s] >= 0 && strcmp(x->keys[s], key) != 0) s = (s + 1) & x->mask;
    return s;
}

int ds_strindex_find(const ds_strindex_t *x, const char *key) { return x->pos[slot_of(x, key)]; }

int ds_strindex_add(ds_strindex_t *x, const char *key, int pos) {
    size_t s = slot_of(x, key);
    if (x->pos[s] >= 0) return x->pos[s];
    x->keys[s] = key;
    x->pos[s] = pos;
    return pos;
}

void ds_strindex_free(ds_strindex_t *x) {
    free(x->keys);
    free(x->pos);
    *x = (ds_strindex_t){0};
}
