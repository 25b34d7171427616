/* A small deterministic random source for synthetic test data (the
 * splitmix64 step): the same seed gives the same numbers everywhere.
 * Header-only. */
#ifndef DS_TEST_RNG_H
#define DS_TEST_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s;
} rng_t;

/* Uniform in [0, 1), 53 bits. */
static inline double rng_u(rng_t *r) {
    r->s += 0x9E3779B97F4A7C15ULL;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

#endif
