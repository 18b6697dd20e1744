/* digest.h — a content digest per split, the same whichever store holds the data set. */
#ifndef IMGSET_DIGEST_H
#define IMGSET_DIGEST_H

#include "store.h"

/* 128-bit digest (XXH3-128) printed as 32 hex characters. */
typedef struct SplitDigest {
    int64_t count;
    uint64_t pixel_bytes;
    char hex[33];
} SplitDigest;

/*
 * Digest of one split: the class names (in label order), the image count, and for every image
 * in order its shape (H, W, C), label and pixels. The data set's name is not part of it (an
 * ImageFolder tree has none). 0 or -1 with imgset_fail().
 */
int digest_split(Store *s, int split, SplitDigest *out, ProgressFn progress, void *ctx);

#endif
