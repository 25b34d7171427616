/* The TTL cache (base/ttlcache.h): freshness by the caller's clock,
 * invalidation, and which values it frees when. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/ttlcache.h"

/* Values are small ints; the free callback records what it was given. */
static int freed[16], nfreed;
static void record_free(void *v) {
    cr_assert_lt(nfreed, 16);
    freed[nfreed++] = *(int *)v;
}

static int vals[] = {10, 11, 12, 13};

Test(ttlcache, a_value_is_fresh_for_ttl_ms_after_its_put) {
    ds_ttlcache_t *c = ds_ttlcache_new(5, record_free); /* 5 ms */
    cr_expect_null(ds_ttlcache_get(c, "org-a", 0), "nothing put yet");
    cr_expect_null(ds_ttlcache_peek(c, "org-a"));
    ds_ttlcache_put(c, "org-a", &vals[0], 1000);
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 1000), &vals[0]);
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 5999), &vals[0], "4999 us after the put: fresh");
    cr_expect_null(ds_ttlcache_get(c, "org-a", 6000), "5000 us after the put: stale");
    cr_expect_eq(ds_ttlcache_peek(c, "org-a"), &vals[0], "a stale value is still there to keep");
    cr_expect_null(ds_ttlcache_get(c, "org-b", 1000), "another key");
    /* A refresh that keeps the value: fresh again, not freed. */
    ds_ttlcache_put(c, "org-a", &vals[0], 6000);
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 10999), &vals[0]);
    cr_expect_eq(nfreed, 0);
    ds_ttlcache_destroy(c);
    cr_expect_eq(nfreed, 1);
    cr_expect_eq(freed[0], 10);
}

Test(ttlcache, replacing_clearing_and_destroying_free_each_value_once) {
    ds_ttlcache_t *c = ds_ttlcache_new(60000, record_free);
    ds_ttlcache_put(c, "org-a", &vals[0], 0);
    ds_ttlcache_put(c, "org-b", &vals[1], 0);
    ds_ttlcache_put(c, "org-a", &vals[2], 0);
    cr_expect_eq(nfreed, 1);
    cr_expect_eq(freed[0], 10, "the replaced value");
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 1), &vals[2]);
    ds_ttlcache_clear(c);
    cr_expect_eq(nfreed, 3);
    cr_expect_eq(freed[1] + freed[2], 11 + 12, "both values left, in some order");
    cr_expect_null(ds_ttlcache_peek(c, "org-a"), "empty after a clear");
    cr_expect_null(ds_ttlcache_peek(c, "org-b"));
    ds_ttlcache_put(c, "org-b", &vals[3], 0);
    cr_expect_eq(ds_ttlcache_get(c, "org-b", 0), &vals[3], "usable after a clear");
    ds_ttlcache_destroy(c);
    cr_expect_eq(nfreed, 4);
    cr_expect_eq(freed[3], 13);
    ds_ttlcache_destroy(NULL);
}

Test(ttlcache, invalidate_makes_one_or_every_value_stale) {
    ds_ttlcache_t *c = ds_ttlcache_new(60000, NULL);
    ds_ttlcache_put(c, "org-a", &vals[0], 0);
    ds_ttlcache_put(c, "org-b", &vals[1], 0);
    ds_ttlcache_invalidate(c, "org-a");
    ds_ttlcache_invalidate(c, "org-unknown");
    cr_expect_null(ds_ttlcache_get(c, "org-a", 1));
    cr_expect_eq(ds_ttlcache_get(c, "org-b", 1), &vals[1]);
    cr_expect_eq(ds_ttlcache_peek(c, "org-a"), &vals[0]);
    ds_ttlcache_put(c, "org-a", &vals[0], 2);
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 2), &vals[0], "a put makes it fresh again");
    ds_ttlcache_invalidate(c, NULL);
    cr_expect_null(ds_ttlcache_get(c, "org-a", 2));
    cr_expect_null(ds_ttlcache_get(c, "org-b", 2));
    cr_expect_eq(ds_ttlcache_peek(c, "org-b"), &vals[1]);
    ds_ttlcache_destroy(c); /* no free callback: nothing to record */
    cr_expect_eq(nfreed, 0);
}

/* Many keys: each finds its own value (the index grows under the cache). */
Test(ttlcache, many_orgs) {
    enum { N = 300 };
    static char keys[N][40];
    static int v[N];
    ds_ttlcache_t *c = ds_ttlcache_new(1, NULL);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "00000000-0000-4000-8000-%012d", i);
        v[i] = i;
        ds_ttlcache_put(c, keys[i], &v[i], i);
    }
    for (int i = 0; i < N; i++) cr_assert_eq(ds_ttlcache_peek(c, keys[i]), &v[i]);
    cr_expect_null(ds_ttlcache_get(c, keys[0], 1000), "put at 0 us: stale at 1000");
    cr_expect_eq(ds_ttlcache_get(c, keys[N - 1], 1000), &v[N - 1], "put at 299 us: fresh at 1000");
    ds_ttlcache_destroy(c);
}

/* A forgotten key's value is freed at once and neither get nor peek gives
 * it; the next put stores a value again, and clear frees only that one. */
Test(ttlcache, forget_frees_the_value_and_hides_the_key) {
    static int vals[] = {1, 2};
    nfreed = 0;
    ds_ttlcache_t *c = ds_ttlcache_new(60000, record_free);
    ds_ttlcache_put(c, "org-a", &vals[0], 0);
    ds_ttlcache_forget(c, "org-a");
    ds_ttlcache_forget(c, "org-unknown");
    cr_expect_eq(nfreed, 1);
    cr_expect_eq(freed[0], 1);
    cr_expect_null(ds_ttlcache_get(c, "org-a", 1));
    cr_expect_null(ds_ttlcache_peek(c, "org-a"));
    ds_ttlcache_put(c, "org-a", &vals[1], 2);
    cr_expect_eq(nfreed, 1, "no value to free under the forgotten key");
    cr_expect_eq(ds_ttlcache_get(c, "org-a", 2), &vals[1]);
    ds_ttlcache_destroy(c);
    cr_expect_eq(nfreed, 2);
    cr_expect_eq(freed[1], 2);
}
