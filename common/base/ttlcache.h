/* A cache of values by string key (an org id) that go stale ttl_ms after they
 * were put, or at once when invalidated: each org's context or model, loaded
 * from Postgres when missing or stale. The cache owns its values and frees
 * them with free_value when they are replaced, cleared or destroyed; keys are
 * copied. Times are monotonic microseconds from the caller (ds_mono_us()), so
 * a refresh can keep what it had and a test sets the clock. Not thread-safe. */
#ifndef DEALSCORE_TTLCACHE_H
#define DEALSCORE_TTLCACHE_H

#include <stdint.h>

typedef void (*ds_ttlcache_free_fn)(void *value);
typedef struct ds_ttlcache_s ds_ttlcache_t;

/* An empty cache; free_value may be NULL (values not freed). Free with
 * ds_ttlcache_destroy. */
ds_ttlcache_t *ds_ttlcache_new(int ttl_ms, ds_ttlcache_free_fn free_value);
/* Frees every value and the cache; NULL does nothing. */
void ds_ttlcache_destroy(ds_ttlcache_t *c);
/* key's value if it was put less than ttl_ms before now_us and not
 * invalidated since; else NULL. */
void *ds_ttlcache_get(const ds_ttlcache_t *c, const char *key, int64_t now_us);
/* key's value whatever its age, NULL if none: what a refresh may keep. */
void *ds_ttlcache_peek(const ds_ttlcache_t *c, const char *key);
/* Makes value key's value, fresh from now_us; the previous one is freed
 * unless it is value itself (a refresh that keeps it). */
void ds_ttlcache_put(ds_ttlcache_t *c, const char *key, void *value, int64_t now_us);
/* Frees key's value: get and peek give NULL until the next put. */
void ds_ttlcache_forget(ds_ttlcache_t *c, const char *key);
/* Makes key's value stale (NULL: every value); peek still gives it. */
void ds_ttlcache_invalidate(ds_ttlcache_t *c, const char *key);
/* Frees every value: the cache is empty after. */
void ds_ttlcache_clear(ds_ttlcache_t *c);

#endif
