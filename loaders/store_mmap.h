/* store_mmap.h — direct access to the mapped arrays of an `mmap:` store (for zero-copy gathers). */
#ifndef IMGSET_STORE_MMAP_H
#define IMGSET_STORE_MMAP_H

#include "store.h"

/* The `mmap:DIR` backend (DIR/{train,test}_{images,labels}.npy, ragged splits also
 * _{offsets,shapes}.npy, classes.txt, imgset.txt — see store_mmap.c). */
extern const StoreOps store_mmap_ops;

/*
 * One split of an open mmap store, as the loader sees it. Every pointer is owned by the
 * Store and stays valid until store_close(); pixels point into the read-only mapping of
 * DIR/<split>_images.npy (never write through them). Everything was validated at open:
 * shapes are within limits, offsets are consistent with shapes and inside pixels, labels
 * are in 0..num_classes-1 and there is one per image.
 *
 * Fixed split:  image i is pixels + i * H*W*C (shape = s->info.split[split].shape).
 * Ragged split: image i is pixels + offsets[i], offsets[i+1] - offsets[i] bytes, shape shapes[i].
 */
typedef struct MmapSplitView {
    int64_t count;              /* number of images (N) */
    const uint8_t *pixels;      /* fixed: (N, H, W, C); ragged: (offsets[N],) flat, uint8 */
    size_t pixel_bytes;         /* bytes at pixels */
    const int32_t *labels;      /* (N,) decoded to int32 whatever the file's label dtype */
    const int64_t *offsets;     /* (N + 1,) byte offsets into pixels; NULL when fixed */
    const ImageShape *shapes;   /* (N,); NULL when fixed */
} MmapSplitView;

/*
 * Fill *view for `split` of a store opened for reading with store_mmap_ops (or by a backend
 * that reuses its open and close, such as a GPU variant over the same files).
 * Returns 0, or -1 with imgset_fail() when s is not such a reader or split is bad.
 */
int store_mmap_split_view(Store *s, int split, MmapSplitView *view);

#endif
