/* measure.c — one timed epoch through a loader (see measure.h). */
#include "measure.h"

#include "clock.h"
#include "error.h"
#include "progress.h"

int measure_epoch(Loader *l, uint64_t epoch, const char *label, BatchVisitor visit, void *ctx,
                  EpochStats *st)
{
    *st = (EpochStats){0};
    if (loader_start_epoch(l, epoch, 0) < 0)
        return -1;
    Progress bar = {0};
    if (label)
        progress_start(&bar, label);
    double start = monotonic_seconds();   /* the prefetch starts with the epoch, unmeasured */
    const Batch *b;
    int got;
    while ((got = loader_next(l, &b)) == 1) {
        if (st->batches == 0)
            st->first_batch_seconds = monotonic_seconds() - start;
        st->images += b->count;
        st->wait_seconds += b->wait_seconds;
        st->copy_seconds += b->copy_seconds;
        st->batches++;
        if (visit && visit(ctx, b) != 0) {
            got = -1;
            break;
        }
        if (label ? progress_update(&bar, st->batches, loader_batches(l)) : interrupted()) {
            got = imgset_fail("interrupted");
            break;
        }
    }
    st->seconds = monotonic_seconds() - start;
    if (label)
        progress_finish(&bar);
    return got < 0 ? -1 : 0;
}

double epoch_images_per_s(const EpochStats *st)
{
    return st->seconds > 0 ? (double)st->images / st->seconds : 0;
}

double epoch_mb_per_s(const EpochStats *st, size_t image_bytes)
{
    return epoch_images_per_s(st) * (double)image_bytes / 1e6;
}

double epoch_wait_ms(const EpochStats *st)
{
    return st->batches ? 1e3 * st->wait_seconds / (double)st->batches : 0;
}
