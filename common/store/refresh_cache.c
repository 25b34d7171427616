/* A cache of values loaded from Postgres, reloaded off the caller's path;
 * see refresh_cache.h. */
#include "store/refresh_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/log.h"

/* A key to reload on the refresher's thread, then its reloaded value
 * (NULL: the reload failed) until the key's next get. */
typedef struct reload_s {
    char *key;
    void *value;
    bool dropped; /* invalidated while under way: its value is not kept */
    struct reload_s *next;
} reload_t;

struct ds_refresh_cache_s {
    ds_refresh_def_t def;
    ds_ttlcache_t *values; /* key -> value; the caller's thread only */
    /* The refresher (ds_refresh_cache_new_refreshing); mu guards what follows it. */
    bool refreshing;
    pthread_t thread;
    ds_pg_t *pg; /* the refresher's own connection */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    reload_t *asked;   /* keys to reload, oldest first */
    reload_t *loading; /* the key being reloaded */
    reload_t *done;    /* reloads awaiting their key's next get */
    bool stop;
};

ds_refresh_cache_t *ds_refresh_cache_new(const ds_refresh_def_t *def) {
    ds_refresh_cache_t *c = ds_calloc(1, sizeof *c);
    c->def = *def;
    c->values = ds_ttlcache_new(def->ttl_ms, def->free_value);
    return c;
}

static void reload_free(ds_refresh_cache_t *c, reload_t *r) {
    if (r->value) c->def.free_value(r->value);
    free(r->key);
    free(r);
}

/* Frees the reloads of key (NULL: all) in *list. */
static void reloads_drop(ds_refresh_cache_t *c, reload_t **list, const char *key) {
    while (*list) {
        reload_t *r = *list;
        if (key && strcmp(r->key, key) != 0) {
            list = &r->next;
            continue;
        }
        *list = r->next;
        reload_free(c, r);
    }
}

void ds_refresh_cache_destroy(ds_refresh_cache_t *c) {
    if (!c) return;
    if (c->refreshing) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        reloads_drop(c, &c->asked, NULL);
        reloads_drop(c, &c->done, NULL);
        ds_pg_destroy(c->pg);
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
    }
    ds_ttlcache_destroy(c->values);
    free(c);
}

void ds_refresh_cache_invalidate(ds_refresh_cache_t *c, const char *key) {
    if (key)
        ds_ttlcache_forget(c->values, key);
    else
        ds_ttlcache_clear(c->values);
    if (!c->refreshing) return;
    pthread_mutex_lock(&c->mu);
    reloads_drop(c, &c->asked, key);
    reloads_drop(c, &c->done, key);
    if (c->loading && (!key || strcmp(c->loading->key, key) == 0)) c->loading->dropped = true;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the refresher ---------------------------------------------------------- */

/* Reloads r's key on the refresher's connection; r->value stays NULL when
 * that fails. */
static void reload(ds_refresh_cache_t *c, reload_t *r) {
    char err[512];
    int rc = ds_pg_ensure(c->pg, 0, NULL, err, sizeof err);
    if (rc == 0) rc = c->def.load(c->pg, r->key, c->def.ud, &r->value, err, sizeof err);
    if (rc == 0) return;
    r->value = NULL;
    ds_warn("org %s: could not reload its %s (keeping what it has): %s", r->key, c->def.what, err);
    if (!ds_pg_is_connected(c->pg)) ds_pg_reset(c->pg);
}

/* Reloads the keys asked for, one at a time. */
static void *refresher_main(void *arg) {
    ds_refresh_cache_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && !c->asked) pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop) break;
        reload_t *r = c->asked;
        c->asked = r->next;
        c->loading = r;
        pthread_mutex_unlock(&c->mu);
        reload(c, r);
        pthread_mutex_lock(&c->mu);
        c->loading = NULL;
        if (r->dropped) {
            reload_free(c, r);
        } else {
            r->next = c->done;
            c->done = r;
        }
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

ds_refresh_cache_t *ds_refresh_cache_new_refreshing(const ds_refresh_def_t *def, const char *url,
                                                    const char *app_name) {
    ds_refresh_cache_t *c = ds_refresh_cache_new(def);
    char err[256];
    if (ds_pg_new(&c->pg, url, app_name, err, sizeof err) != 0)
        ds_panic("database url rejected after validation: %s", err);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->refreshing = true;
    if (pthread_create(&c->thread, NULL, refresher_main, c) != 0)
        ds_panic("could not start the %s refresher", def->what);
    return c;
}

void ds_refresh_cache_await_refreshes(ds_refresh_cache_t *c) {
    if (!c->refreshing) return;
    pthread_mutex_lock(&c->mu);
    while (c->asked || c->loading) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static reload_t *find_reload(reload_t *r, const char *key) {
    while (r && strcmp(r->key, key) != 0) r = r->next;
    return r;
}

/* Asks the refresher for key unless it was asked already. */
static void ask_reload(ds_refresh_cache_t *c, const char *key) {
    pthread_mutex_lock(&c->mu);
    if (!find_reload(c->asked, key) && !find_reload(c->loading, key) && !find_reload(c->done, key)) {
        reload_t *r = ds_calloc(1, sizeof *r);
        r->key = ds_strdup(key);
        reload_t **tail = &c->asked;
        while (*tail) tail = &(*tail)->next;
        *tail = r;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Puts key's reloaded value, if the refresher has one, into the cache
 * (after a failed reload, the value it has, fresh for another ttl). */
static void take_reload(ds_refresh_cache_t *c, const char *key, int64_t now_us) {
    pthread_mutex_lock(&c->mu);
    reload_t **p = &c->done;
    while (*p && strcmp((*p)->key, key) != 0) p = &(*p)->next;
    reload_t *r = *p;
    if (r) *p = r->next;
    pthread_mutex_unlock(&c->mu);
    if (!r) return;
    void *value = r->value ? r->value : ds_ttlcache_peek(c->values, key);
    if (value) ds_ttlcache_put(c->values, key, value, now_us);
    r->value = NULL; /* now owned by the cache */
    reload_free(c, r);
}

int ds_refresh_cache_get(ds_refresh_cache_t *c, ds_pg_t *pg, const char *key, void **out, char *errstr,
                         size_t errstr_size) {
    int64_t now = ds_mono_us();
    if (c->refreshing) take_reload(c, key, now);
    void *value = ds_ttlcache_get(c->values, key, now);
    if (!value && c->refreshing && (value = ds_ttlcache_peek(c->values, key)) != NULL) ask_reload(c, key);
    if (!value) {
        int rc = c->def.load(pg, key, c->def.ud, &value, errstr, errstr_size);
        if (rc != 0) return rc;
        ds_ttlcache_put(c->values, key, value, ds_mono_us());
    }
    *out = value;
    return DS_OK;
}
