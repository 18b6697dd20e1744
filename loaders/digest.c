/* digest.c — per-split content digests over the store interface (XXH3-128). */
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "error.h"

/* Feed an int32 in little-endian order, so the digest does not depend on the host. */
static void update_i32(XXH3_state_t *st, int32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    XXH3_128bits_update(st, b, 4);
}

static void update_i64(XXH3_state_t *st, int64_t v)
{
    update_i32(st, (int32_t)(uint32_t)v);
    update_i32(st, (int32_t)(uint32_t)((uint64_t)v >> 32));
}

int digest_split(Store *s, int split, SplitDigest *out, ProgressFn progress, void *ctx)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return imgset_fail("out of memory");
    XXH3_128bits_reset(st);

    update_i32(st, s->info.num_classes);
    for (int32_t k = 0; k < s->info.num_classes; k++)
        XXH3_128bits_update(st, s->info.class_names[k], strlen(s->info.class_names[k]) + 1);

    int64_t n = s->info.split[split].count;
    update_i64(st, n);
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t pixel_bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        ImageShape shape;
        int32_t label;
        if (store_read_image_grow(s, split, i, &buf, &cap, &shape, &label) < 0)
            goto fail;
        update_i32(st, shape.height);
        update_i32(st, shape.width);
        update_i32(st, shape.channels);
        update_i32(st, label);
        XXH3_128bits_update(st, buf, image_shape_bytes(shape));
        pixel_bytes += image_shape_bytes(shape);
        if (progress && progress(ctx, i + 1, n)) {
            imgset_fail("%s: interrupted", s->uri);
            goto fail;
        }
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    out->count = n;
    out->pixel_bytes = pixel_bytes;
    snprintf(out->hex, sizeof out->hex, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    free(buf);
    XXH3_freeState(st);
    return 0;

fail:
    free(buf);
    XXH3_freeState(st);
    return -1;
}
