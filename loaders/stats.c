/* stats.c — per-channel min, max, mean and std of a split, from exact integer sums. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* Bytes of pixels read per batch from a fixed-shape split. */
#define BATCH_BYTES ((size_t)8 << 20)

/* Running sums of one channel: exact for up to 2^64 / 255^2 (2.8e14) pixels. */
typedef struct Sums {
    uint64_t sum, squares;
    int min, max;
} Sums;

/* Add `pixels` pixels of `channels` interleaved channels (H x W x C order). */
static void add_pixels(Sums *sums, const uint8_t *p, size_t pixels, int channels)
{
    for (int c = 0; c < channels; c++) {
        uint64_t sum = 0, squares = 0;
        int lo = sums[c].min, hi = sums[c].max;
        for (size_t i = 0; i < pixels; i++) {
            unsigned v = p[i * (size_t)channels + c];
            sum += v;
            squares += v * v;
            lo = (int)v < lo ? (int)v : lo;
            hi = (int)v > hi ? (int)v : hi;
        }
        sums[c].sum += sum, sums[c].squares += squares;
        sums[c].min = lo, sums[c].max = hi;
    }
}

/* Mean and population std of x / 255 from n pixels' sums: n * squares - sum^2 is exact in
 * 128 bits, so the variance is never negative. */
static void finish(ChannelStats *out, const Sums *s, int64_t n)
{
    unsigned __int128 nsq = (unsigned __int128)s->squares * (uint64_t)n;
    unsigned __int128 sq = (unsigned __int128)s->sum * s->sum;
    double var = (double)(nsq - sq) / ((double)n * (double)n);
    out->min = s->min;
    out->max = s->max;
    out->mean = (double)s->sum / (double)n / 255.0;
    out->std = sqrt(var) / 255.0;
}

/* Images [i, i + n) of a fixed-shape split, read as one batch, into sums. */
static int add_batch(Store *s, int split, int64_t i, int n, uint8_t *buf, int64_t *indices,
                     int32_t *labels, ImageShape shape, Sums *sums)
{
    for (int k = 0; k < n; k++)
        indices[k] = i + k;
    if (store_read_batch(s, split, indices, n, buf, labels) < 0)
        return -1;
    add_pixels(sums, buf, (size_t)n * shape.height * shape.width, shape.channels);
    return 0;
}

int split_stats(Store *s, int split, SplitStats *out, ProgressFn progress, void *progress_ctx)
{
    memset(out, 0, sizeof *out);
    const SplitInfo *info = &s->info.split[split];
    Sums sums[IMGSET_MAX_CHANNELS];
    for (int c = 0; c < IMGSET_MAX_CHANNELS; c++)
        sums[c] = (Sums){0, 0, 255, 0};
    int fixed = split_is_fixed(info);
    size_t image = fixed ? image_shape_bytes(info->shape) : 0;
    int per_batch = fixed && image ? (int)(BATCH_BYTES / image) : 1;
    per_batch = per_batch < 1 ? 1 : per_batch;
    uint8_t *buf = fixed ? malloc((size_t)per_batch * image) : NULL;
    int64_t *indices = malloc(sizeof *indices * (size_t)per_batch);
    int32_t *labels = malloc(sizeof *labels * (size_t)per_batch);
    size_t capacity = 0;
    int rc = (fixed && !buf) || !indices || !labels
                 ? imgset_fail("%s: out of memory for the statistics", s->uri) : 0;
    if (fixed)
        out->channels = info->shape.channels;
    for (int64_t i = 0; rc == 0 && i < info->count;) {
        int n = info->count - i < per_batch ? (int)(info->count - i) : per_batch;
        ImageShape shape = info->shape;
        int32_t label;
        if (fixed) {
            rc = add_batch(s, split, i, n, buf, indices, labels, shape, sums);
        } else if ((rc = store_read_image_grow(s, split, i, &buf, &capacity, &shape,
                                               &label)) == 0) {
            if (i == 0)
                out->channels = shape.channels;
            if (shape.channels != out->channels)
                rc = imgset_fail("%s: %s image %lld has %d channels, image 0 has %d", s->uri,
                                 split_names[split], (long long)i, shape.channels,
                                 out->channels);
            else
                add_pixels(sums, buf, (size_t)shape.height * shape.width, shape.channels);
        }
        if (rc == 0)
            out->pixels += (int64_t)n * shape.height * shape.width;
        i += n;
        if (rc == 0 && progress && progress(progress_ctx, i, info->count))
            rc = imgset_fail("%s: interrupted", s->uri);
    }
    free(buf);
    free(indices);
    free(labels);
    if (rc < 0)
        return -1;
    out->images = info->count;
    for (int c = 0; c < out->channels && out->pixels > 0; c++)
        finish(&out->channel[c], &sums[c], out->pixels);
    return 0;
}
