/* sampler.h — which images form batch b of epoch e for rank r: the seeded shuffle, sharding
 * and drop-last rule shared by every loader and by the extension's imgset_batch(). */
#ifndef IMGSET_SAMPLER_H
#define IMGSET_SAMPLER_H

#include <stdint.h>

#include "permute.h"

/*
 * The sharding contract — the one statement of it; the extension's imgset_batch(), its
 * README and the CLI's --rank/--world follow it.
 * An epoch is a permutation of the split's positions [0, n) (identity when not shuffling),
 * a new one each epoch. Rank r of `world` takes the positions r, r + world, r + 2*world, …
 * below world * floor(n / world): every rank takes exactly floor(n / world) positions and
 * the n mod world tail of the permutation is dropped (PyTorch's
 * DistributedSampler(drop_last=True); with shuffling other images fall in the tail each
 * epoch). The ranks' slices are disjoint. With world == 1 nothing is dropped.
 * Each rank then cuts its slice into batches of batch_size in order; drop_last drops the
 * short final batch, keep-last keeps it. So every rank gets the same number of images and
 * of batches, which data-parallel training needs (ranks step together).
 */
typedef struct SamplerOptions {
    uint64_t count;       /* images in the split */
    int32_t batch_size;   /* >= 1 */
    int shuffle;          /* 0: dataset order */
    int drop_last;
    uint64_t seed;
    int32_t rank, world;  /* 0 <= rank < world */
} SamplerOptions;

typedef struct Sampler {
    SamplerOptions opt;
    uint64_t epoch;
    uint64_t rank_count;  /* positions every rank takes in an epoch: floor(n / world) */
    int64_t batches;      /* batches every rank gets in an epoch */
    Permutation perm;
} Sampler;

/* Check the options and set up epoch 0; 0 or -1 with imgset_fail() naming the bad value. */
int sampler_init(Sampler *s, const SamplerOptions *opt);

/* Switch to another epoch (the permutation depends on seed and epoch only). */
void sampler_set_epoch(Sampler *s, uint64_t epoch);

/* Dataset indices of batch `batch` (0 <= batch < s->batches) of the current epoch into
 * indices[0..batch_size-1]; returns how many (the last batch may be short), or -1 when the
 * batch number is out of range. */
int sampler_batch(const Sampler *s, int64_t batch, int64_t *indices);

#endif
