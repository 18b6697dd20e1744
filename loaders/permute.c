/* permute.c — a seeded random permutation evaluated position by position (see permute.h). */
#include "permute.h"

#include "rng.h"

/* A 64-bit mixer (the SplitMix64 finaliser) used as the Feistel round function. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void permutation_init(Permutation *p, uint64_t n, uint64_t seed, uint64_t epoch)
{
    uint64_t bits = 1;
    while (bits < 64 && (1ull << bits) < n)
        bits++;
    p->n = n;
    p->half_bits = (bits + 1) / 2;
    Rng r = rng_make(seed, epoch);
    for (int i = 0; i < 4; i++)
        p->keys[i] = rng_next(&r);
}

/* One pass of the Feistel network over [0, 4^half_bits). */
static uint64_t feistel(const Permutation *p, uint64_t x)
{
    uint64_t mask = (1ull << p->half_bits) - 1;
    uint64_t left = x >> p->half_bits, right = x & mask;
    for (int round = 0; round < 4; round++) {
        uint64_t next = left ^ (mix64(right ^ p->keys[round]) & mask);
        left = right;
        right = next;
    }
    return (left << p->half_bits) | right;
}

uint64_t permutation_at(const Permutation *p, uint64_t position)
{
    /* Cycle-walking: the network permutes a domain less than 4x larger than n, so re-applying
     * it until the value lands inside [0, n) takes under 4 steps on average and stays a
     * bijection on [0, n). */
    uint64_t x = position;
    do
        x = feistel(p, x);
    while (x >= p->n);
    return x;
}
