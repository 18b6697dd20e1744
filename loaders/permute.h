/* permute.h — the epoch shuffle: a seeded bijection on [0, n), computed one position at a
 * time. The client's sampler and the extension's imgset_batch() compile this same file, so
 * both agree on which images form batch b of epoch e. */
#ifndef IMGSET_PERMUTE_H
#define IMGSET_PERMUTE_H

#include <stdint.h>

/* The keys of one epoch's permutation of [0, n). */
typedef struct Permutation {
    uint64_t n;
    uint64_t half_bits;     /* the Feistel network works on 2*half_bits bits >= log2(n) */
    uint64_t keys[4];       /* round keys derived from (seed, epoch) */
} Permutation;

/* Set up the permutation of [0, n) for (seed, epoch). n may be 0. */
void permutation_init(Permutation *p, uint64_t n, uint64_t seed, uint64_t epoch);

/* The element at `position` (0 <= position < n) of the shuffled order; a bijection on
 * [0, n). O(1) expected time: a 4-round Feistel network with cycle-walking. */
uint64_t permutation_at(const Permutation *p, uint64_t position);

#endif
