/* sampler.c — epoch shuffle, sharding and batching (see sampler.h for the rules). */
#include "sampler.h"

#include "error.h"

int sampler_init(Sampler *s, const SamplerOptions *opt)
{
    if (opt->batch_size < 1)
        return imgset_fail("sampler: batch size %d is not positive", opt->batch_size);
    if (opt->world < 1 || opt->rank < 0 || opt->rank >= opt->world)
        return imgset_fail("sampler: rank %d of world %d is out of range", opt->rank,
                           opt->world);
    s->opt = *opt;
    uint64_t batch = (uint64_t)opt->batch_size;
    s->rank_count = opt->count / (uint64_t)opt->world;
    s->batches = (int64_t)(opt->drop_last ? s->rank_count / batch
                                          : (s->rank_count + batch - 1) / batch);
    sampler_set_epoch(s, 0);
    return 0;
}

void sampler_set_epoch(Sampler *s, uint64_t epoch)
{
    s->epoch = epoch;
    permutation_init(&s->perm, s->opt.count, s->opt.seed, epoch);
}

int sampler_batch(const Sampler *s, int64_t batch, int64_t *indices)
{
    if (batch < 0 || batch >= s->batches)
        return -1;
    uint64_t first = (uint64_t)batch * (uint64_t)s->opt.batch_size;
    uint64_t end = first + (uint64_t)s->opt.batch_size;
    if (end > s->rank_count)
        end = s->rank_count;
    int n = 0;
    for (uint64_t q = first; q < end; q++) {
        uint64_t position = q * (uint64_t)s->opt.world + (uint64_t)s->opt.rank;
        indices[n++] = (int64_t)(s->opt.shuffle ? permutation_at(&s->perm, position) : position);
    }
    return n;
}
