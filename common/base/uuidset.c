#include "base/uuidset.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool ds_uuid_parse128(const char *s, ds_uuid128_t *out) {
    uint64_t w[2] = {0, 0};
    int k = 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
            continue;
        }
        int v = hexval((unsigned char)s[i]);
        if (v < 0) return false;
        w[k / 16] = w[k / 16] << 4 | (uint64_t)v;
        k++;
    }
    if (s[36] != '\0' || (w[0] == 0 && w[1] == 0)) return false;
    *out = (ds_uuid128_t){w[0], w[1]};
    return true;
}

static size_t home(const ds_uuid128_t *u, size_t cap) {
    uint64_t h = (u->hi ^ (u->lo * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (size_t)(h >> 17) & (cap - 1);
}

static bool eq(const ds_uuid128_t *a, const ds_uuid128_t *b) { return a->hi == b->hi && a->lo == b->lo; }
static bool empty(const ds_uuid128_t *a) { return a->hi == 0 && a->lo == 0; }

void ds_uuidset_clear(ds_uuidset_t *s) {
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* The slot of u, or of the empty slot that ends its probe run. */
static size_t find(const ds_uuidset_t *s, const ds_uuid128_t *u) {
    size_t i = home(u, s->cap);
    while (!empty(&s->slots[i]) && !eq(&s->slots[i], u)) i = (i + 1) & (s->cap - 1);
    return i;
}

bool ds_uuidset_has(const ds_uuidset_t *s, const char *uuid) {
    ds_uuid128_t u;
    if (!s->cap || !ds_uuid_parse128(uuid, &u)) return false;
    return !empty(&s->slots[find(s, &u)]);
}

bool ds_uuidset_add(ds_uuidset_t *s, const char *uuid) {
    ds_uuid128_t u;
    if (!ds_uuid_parse128(uuid, &u)) return false;
    if ((s->n + 1) * 2 > s->cap) {
        ds_uuidset_t g = {NULL, s->cap ? s->cap * 2 : 1024, 0};
        g.slots = ds_calloc(g.cap, sizeof *g.slots);
        for (size_t i = 0; i < s->cap; i++) {
            if (empty(&s->slots[i])) continue;
            g.slots[find(&g, &s->slots[i])] = s->slots[i];
            g.n++;
        }
        free(s->slots);
        *s = g;
    }
    size_t i = find(s, &u);
    if (empty(&s->slots[i])) {
        s->slots[i] = u;
        s->n++;
    }
    return true;
}

void ds_uuidset_remove(ds_uuidset_t *s, const char *uuid) {
    ds_uuid128_t u;
    if (!s->cap || !ds_uuid_parse128(uuid, &u)) return;
    size_t mask = s->cap - 1, hole = find(s, &u);
    if (empty(&s->slots[hole])) return;
    /* Backward shift: a later member of the probe run moves into the hole
     * unless its home lies cyclically in (hole, j]. */
    for (size_t j = (hole + 1) & mask; !empty(&s->slots[j]); j = (j + 1) & mask) {
        size_t h = home(&s->slots[j], s->cap);
        bool stays = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (stays) continue;
        s->slots[hole] = s->slots[j];
        hole = j;
    }
    s->slots[hole] = (ds_uuid128_t){0, 0};
    s->n--;
}
