/* stats.h — per-channel statistics of a split's pixels in one pass over any store: minimum,
 * maximum, mean and standard deviation (what `imgset stats` prints and `imgset train
 * --normalize minmax` / `--mean auto` use). */
#ifndef IMGSET_STATS_H
#define IMGSET_STATS_H

#include <stdint.h>

#include "store.h"

typedef struct ChannelStats {
    int min, max;        /* pixel values, 0..255 */
    double mean, std;    /* of x / 255 over every pixel of the channel; std is the population
                          * std (numpy's default, ddof = 0); the scale --mean / --std take */
} ChannelStats;

typedef struct SplitStats {
    int channels;        /* of every image (0 for an empty split) */
    int64_t images;
    int64_t pixels;      /* per channel: the sum of every image's height x width */
    ChannelStats channel[IMGSET_MAX_CHANNELS];
} SplitStats;

/* Read every image of `split` of s once, in order (a batch at a time where the split has one
 * shape), and fill out. The sums are exact integers, so the result depends on the pixels
 * alone. progress (may be NULL) sees images done of the split's count; a non-zero return
 * stops with "interrupted". 0, or -1 with imgset_fail() (an image with another channel count
 * than the first is named). */
int split_stats(Store *s, int split, SplitStats *out, ProgressFn progress, void *progress_ctx);

#endif
