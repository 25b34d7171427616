/* The string index (base/strindex.h): first positions, growth, the hash. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/strindex.h"

/* The string index gives each distinct key the position of its first add,
 * as a linear search would, over a full table of keys with many repeats
 * (a burst of changes to fewer deals), and -1 for keys never added. */
Test(strindex, keeps_the_first_position_of_each_key) {
    enum { ADDS = 5000, KEYS = 1200 };
    static char keys[KEYS][16];
    for (int k = 0; k < KEYS; k++) snprintf(keys[k], sizeof keys[k], "deal-%d", k);
    static const char *first[ADDS];
    ds_strindex_t x;
    ds_strindex_init(&x, ADDS);
    int npos = 0;
    uint64_t r = 2463534242ull;
    for (int i = 0; i < ADDS; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        const char *key = keys[r % KEYS];
        int want = -1;
        for (int j = 0; j < npos && want < 0; j++)
            if (strcmp(first[j], key) == 0) want = j;
        int got = ds_strindex_add(&x, key, npos);
        if (want < 0) {
            cr_assert_eq(got, npos, "add %d: a new key takes the position offered", i);
            first[npos] = key;
            npos++;
        } else {
            cr_assert_eq(got, want, "add %d: %s was first added at %d", i, key, want);
        }
    }
    cr_assert_gt(npos, 1000, "the draw covers most keys");
    cr_assert_lt(npos, ADDS, "and repeats them");
    for (int j = 0; j < npos; j++) cr_assert_eq(ds_strindex_find(&x, first[j]), j);
    cr_expect_eq(ds_strindex_find(&x, "deal-1200"), -1);
    cr_expect_eq(ds_strindex_find(&x, ""), -1);
    char copy[16];
    snprintf(copy, sizeof copy, "%s", first[7]);
    cr_expect_eq(ds_strindex_find(&x, copy), 7, "keys compare by content, not address");
    ds_strindex_free(&x);
    cr_expect_null(x.keys);
}

/* An index that starts as {0} grows as keys come (16 slots, then doubling
 * whenever it would be more than half full) and keeps every position. */
Test(strindex, grows_from_empty_and_keeps_positions) {
    enum { KEYS = 1000 };
    static char keys[KEYS][16];
    ds_strindex_t x = {0};
    cr_expect_eq(ds_strindex_find(&x, "deal-0"), -1, "an empty index finds nothing");
    for (int k = 0; k < KEYS; k++) {
        snprintf(keys[k], sizeof keys[k], "deal-%d", k);
        cr_assert_eq(ds_strindex_add(&x, keys[k], 3 * k), 3 * k);
        if (k == 7) cr_expect_eq(x.mask + 1, 16, "8 keys fit the first 16 slots");
        if (k == 8) cr_expect_eq(x.mask + 1, 32, "the 9th key doubles the table");
    }
    cr_expect_eq(x.n, KEYS);
    cr_expect_eq(x.mask + 1, 2048, "1000 keys: the smallest power of two at least twice as large");
    for (int k = 0; k < KEYS; k++) cr_assert_eq(ds_strindex_find(&x, keys[k]), 3 * k);
    cr_expect_eq(ds_strindex_add(&x, "deal-500", 7), 1500, "a key present keeps its position");
    cr_expect_eq(x.n, KEYS);
    cr_expect_eq(ds_strindex_find(&x, "deal-1000"), -1);
    ds_strindex_free(&x);
    cr_expect_null(x.pos);
    cr_expect_eq(x.n, 0);
}

/* init sizes the table for the keys announced: no growth up to capacity. */
Test(strindex, init_sizes_for_the_capacity) {
    ds_strindex_t x;
    ds_strindex_init(&x, 100);
    cr_expect_eq(x.mask + 1, 256);
    static char keys[100][8];
    for (int k = 0; k < 100; k++) {
        snprintf(keys[k], sizeof keys[k], "k%d", k);
        ds_strindex_add(&x, keys[k], k);
    }
    cr_expect_eq(x.mask + 1, 256, "100 keys in 256 slots: no growth");
    cr_expect_eq(ds_strindex_add(&x, "", 100), 100, "the empty string is a key like any other");
    cr_expect_eq(ds_strindex_find(&x, ""), 100);
    ds_strindex_free(&x);
}

/* FNV-1a 64 test vectors (the offset basis for "", then "a" and "foobar"). */
Test(strindex, hash_is_fnv1a_64) {
    cr_expect_eq(ds_strhash(""), 0xcbf29ce484222325ULL);
    cr_expect_eq(ds_strhash("a"), 0xaf63dc4c8601ec8cULL);
    cr_expect_eq(ds_strhash("foobar"), 0x85944171f73967e8ULL);
}
