/* measure.h — one epoch through a loader, timed: what `imgset read` and the bench's loader-only
 * measurement both report (images, seconds, data-wait, first-batch latency, host-to-device). */
#ifndef IMGSET_MEASURE_H
#define IMGSET_MEASURE_H

#include <stdint.h>

#include "loader.h"

typedef struct EpochStats {
    int64_t images, batches;
    double seconds;               /* from the epoch's start to the last batch in hand */
    double wait_seconds;          /* summed data-wait of the batches (Batch.wait_seconds) */
    double first_batch_seconds;   /* from the start to the first batch in hand */
    double copy_seconds;          /* host-to-device transfers (LOADER_CUDA) */
} EpochStats;

/* Called for every batch; non-zero stops the epoch with that error (imgset_fail set). */
typedef int (*BatchVisitor)(void *ctx, const Batch *b);

/*
 * Start epoch `epoch` of l and take every batch, timing it into *st; visit (may be NULL) sees
 * each batch. A progress bar labelled `label` shows on a terminal (NULL: none). Ctrl-C stops
 * the epoch with "interrupted". 0, or -1 with imgset_fail().
 */
int measure_epoch(Loader *l, uint64_t epoch, const char *label, BatchVisitor visit, void *ctx,
                  EpochStats *st);

/* Images per second, MB of pixels per second and mean wait per batch (ms) of an epoch whose
 * images have image_bytes each. */
double epoch_images_per_s(const EpochStats *st);
double epoch_mb_per_s(const EpochStats *st, size_t image_bytes);
double epoch_wait_ms(const EpochStats *st);

#endif
