/* Deterministic pseudo-random numbers for the simulator: splitmix64 for
 * seeding and stream derivation, xoshiro256** for the draws. Never rand() or
 * the clock, so the same seed always gives the same bytes. */
#ifndef SIM_RNG_H
#define SIM_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

static inline uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Mixes several words into one seed: used to give every org, deal and
 * checkpoint its own independent stream. */
static inline uint64_t rng_mix(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0xd1b54a32d192ed03ULL);
    return splitmix64(&x);
}

static inline void rng_seed(rng_t *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_u64(rng_t *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static inline double rng_uniform(rng_t *rng) { return (double)(rng_u64(rng) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift, tiny bias is
 * irrelevant here and keeps it branch-free). */
static inline uint32_t rng_below(rng_t *rng, uint32_t n) {
    return (uint32_t)(((rng_u64(rng) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform integer in [lo, hi]. */
static inline int rng_range(rng_t *rng, int lo, int hi) {
    return lo + (int)rng_below(rng, (uint32_t)(hi - lo + 1));
}

static inline int rng_bernoulli(rng_t *rng, double p) { return rng_uniform(rng) < p; }

/* Standard normal by Box-Muller (one value per call; the pair's second half
 * is dropped so the stream stays simple to reason about). */
static inline double rng_normal(rng_t *rng) {
    double u1 = rng_uniform(rng);
    double u2 = rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Poisson with a small mean (< ~30) by inversion. */
static inline int rng_poisson(rng_t *rng, double mean) {
    if (mean <= 0) return 0;
    double l = exp(-mean), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= rng_uniform(rng);
    } while (p > l && k < 200);
    return k - 1;
}

/* Poisson given l = exp(-mean), for callers that cache it. */
static inline int rng_poisson_l(rng_t *rng, double l) {
    double p = rng_uniform(rng);
    int k = 0;
    while (p > l && k < 200) {
        k++;
        p *= rng_uniform(rng);
    }
    return k;
}

/* Index drawn from unnormalised weights w[0..n). */
static inline int rng_pick(rng_t *rng, const double *w, int n) {
    double tot = 0;
    for (int i = 0; i < n; i++) tot += w[i];
    double x = rng_uniform(rng) * tot;
    for (int i = 0; i < n; i++) {
        if (x < w[i]) return i;
        x -= w[i];
    }
    return n - 1;
}

#endif
