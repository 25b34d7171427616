/* A cache of values by key (an org id) loaded from Postgres, stale ttl_ms
 * after they were loaded: each org's context (feature_loader.h) or its
 * risk rules and thresholds (services/scoring/deal_risks.h). A refreshing
 * cache reloads a stale value on a thread of its own, with a connection of
 * its own, and serves the stale value until the reload is done: the
 * caller's loop never waits for a reload, whose cost grows with the org
 * (the closed deals of its context, the won deals of its thresholds). Only
 * a missing key, or one invalidated, is loaded on the caller's connection.
 * A failed reload keeps the value the key has for another ttl_ms. One
 * caller thread: get, invalidate and clear are not thread-safe among
 * themselves. */
#ifndef DEALSCORE_REFRESH_CACHE_H
#define DEALSCORE_REFRESH_CACHE_H

#include <stddef.h>

#include "base/ttlcache.h"
#include "infra/pg.h"

/* Loads key's value on pg: returns 0 and *value (freed by the cache with
 * free_value), or a pg error class (DS_ERETRY, DS_EFATAL) with errstr. It
 * runs on the caller's thread or on the refresher's, so it uses only pg,
 * key and what ud points to, read-only. */
typedef int (*ds_refresh_load_fn)(ds_pg_t *pg, const char *key, void *ud, void **value, char *errstr,
                                  size_t errstr_size);

typedef struct {
    int ttl_ms;
    ds_refresh_load_fn load;
    ds_ttlcache_free_fn free_value;
    void *ud;         /* passed to load */
    const char *what; /* what a value is, for the log: "context", "risk thresholds" */
} ds_refresh_def_t;

typedef struct ds_refresh_cache_s ds_refresh_cache_t;

/* A cache that loads a missing or stale key on the caller's connection.
 * def is copied (what must outlive the cache). Free with
 * ds_refresh_cache_destroy. */
ds_refresh_cache_t *ds_refresh_cache_new(const ds_refresh_def_t *def);
/* A cache that reloads a stale key on a thread of its own, with its own
 * connection to url (application_name app_name). Panics if the thread
 * cannot start. For the workers. */
ds_refresh_cache_t *ds_refresh_cache_new_refreshing(const ds_refresh_def_t *def, const char *url,
                                                    const char *app_name);
/* Stops the refresher (waiting for the reload under way) and frees every
 * value; NULL does nothing. */
void ds_refresh_cache_destroy(ds_refresh_cache_t *c);
/* Returns key's value in *out (valid until the next get, invalidate or
 * clear of the same key, or destroy), loading it on pg when missing or
 * stale (a refreshing cache: when missing). Returns 0 or the load's error
 * class with errstr. */
int ds_refresh_cache_get(ds_refresh_cache_t *c, ds_pg_t *pg, const char *key, void **out, char *errstr,
                         size_t errstr_size);
/* Forgets key's value (NULL: every key's) and drops any reload of it asked
 * for or under way: the next get loads it on the caller's connection, with
 * the rows of then. */
void ds_refresh_cache_invalidate(ds_refresh_cache_t *c, const char *key);
/* Waits until the reloads asked for so far are done; the next get of each
 * key takes its reloaded value. */
void ds_refresh_cache_await_refreshes(ds_refresh_cache_t *c);

#endif
