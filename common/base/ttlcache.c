#include "base/ttlcache.h"

#include <stdbool.h>
#include <stdlib.h>

#include "base/common.h"
#include "base/strindex.h"

typedef struct {
    char *key;
    void *value;
    int64_t put_us;
    bool stale;
} entry_t;

struct ds_ttlcache_s {
    entry_t *v;
    size_t n, cap;
    ds_strindex_t index; /* key -> its place in v; keys borrowed from v */
    int64_t ttl_us;
    ds_ttlcache_free_fn free_value;
};

ds_ttlcache_t *ds_ttlcache_new(int ttl_ms, ds_ttlcache_free_fn free_value) {
    ds_ttlcache_t *c = ds_calloc(1, sizeof *c);
    c->ttl_us = (int64_t)ttl_ms * 1000;
    c->free_value = free_value;
    return c;
}

void ds_ttlcache_clear(ds_ttlcache_t *c) {
    for (size_t i = 0; i < c->n; i++) {
        if (c->free_value && c->v[i].value) c->free_value(c->v[i].value);
        free(c->v[i].key);
    }
    c->n = 0;
    ds_strindex_free(&c->index);
}

void ds_ttlcache_destroy(ds_ttlcache_t *c) {
    if (!c) return;
    ds_ttlcache_clear(c);
    free(c->v);
    free(c);
}

static entry_t *find(const ds_ttlcache_t *c, const char *key) {
    int i = ds_strindex_find(&c->index, key);
    return i < 0 ? NULL : &c->v[i];
}

void *ds_ttlcache_get(const ds_ttlcache_t *c, const char *key, int64_t now_us) {
    entry_t *e = find(c, key);
    return e && !e->stale && now_us - e->put_us < c->ttl_us ? e->value : NULL;
}

void *ds_ttlcache_peek(const ds_ttlcache_t *c, const char *key) {
    entry_t *e = find(c, key);
    return e ? e->value : NULL;
}

void ds_ttlcache_put(ds_ttlcache_t *c, const char *key, void *value, int64_t now_us) {
    entry_t *e = find(c, key);
    if (!e) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 8;
            c->v = ds_realloc(c->v, c->cap * sizeof *c->v);
        }
        e = &c->v[c->n];
        *e = (entry_t){.key = ds_strdup(key)};
        ds_strindex_add(&c->index, e->key, (int)c->n++);
    } else if (e->value != value && e->value && c->free_value) {
        c->free_value(e->value);
    }
    e->value = value;
    e->put_us = now_us;
    e->stale = false;
}

void ds_ttlcache_forget(ds_ttlcache_t *c, const char *key) {
    entry_t *e = find(c, key);
    if (!e) return;
    if (e->value && c->free_value) c->free_value(e->value);
    e->value = NULL;
}

void ds_ttlcache_invalidate(ds_ttlcache_t *c, const char *key) {
    if (key) {
        entry_t *e = find(c, key);
        if (e) e->stale = true;
        return;
    }
    for (size_t i = 0; i < c->n; i++) c->v[i].stale = true;
}
