/* rng.h — the project's seeded random numbers (SplitMix64), shared by generators, the
 * sampler and the extension so that every part draws the same numbers for the same seed. */
#ifndef IMGSET_RNG_H
#define IMGSET_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct Rng {
    uint64_t state;
} Rng;

/* A generator for a seed and a stream number (e.g. an image index): independent streams. */
static inline Rng rng_make(uint64_t seed, uint64_t stream)
{
    Rng r = {seed ^ (stream * 0x9E3779B97F4A7C15ull) ^ 0xD1B54A32D192ED03ull};
    return r;
}

/* Next 64 random bits (SplitMix64: Steele, Lea, Flood 2014). */
static inline uint64_t rng_next(Rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform float in [0, 1). */
static inline float rng_uniform(Rng *r)
{
    return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) for n > 0 (Lemire's multiply-shift; bias < 2^-32 for n < 2^32). */
static inline uint64_t rng_below(Rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Standard normal sample (Box–Muller, one of the pair). */
static inline float rng_normal(Rng *r)
{
    float u1 = ((float)(rng_next(r) >> 40) + 1.0f) * (1.0f / 16777217.0f);  /* (0, 1] */
    float u2 = rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

#endif
