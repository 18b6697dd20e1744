/* loader.h — batches for training from any store: a seeded sampler, a pool of prefetch
 * workers filling a ring of batch slots, and the transforms to the model's input. */
#ifndef IMGSET_LOADER_H
#define IMGSET_LOADER_H

#include <stdint.h>

#include "dataset.h"

typedef struct LoaderOptions {
    int split;              /* SPLIT_TRAIN or SPLIT_TEST */
    int32_t batch_size;
    int shuffle;            /* seeded permutation per epoch */
    int drop_last;
    uint64_t seed;
    int32_t rank, world;    /* sharding; world 1 = everything */
    int workers;            /* prefetch threads; 0 = load in the caller's thread */
    int slots;              /* ring size; 0 = 2 * workers (at least 2) */
    int32_t height, width;  /* model input size; 0 = the split's own (fixed-size sets) */
    int want_float;         /* also produce normalised float (N, C, H, W) */
    float mean[IMGSET_MAX_CHANNELS], std[IMGSET_MAX_CHANNELS];  /* per channel, on x/255 */
    int augment;            /* random crop with padding + horizontal flip */
    int32_t crop_padding;   /* pixels of zero padding for the random crop (e.g. 4) */
    int device;             /* LOADER_HOST, or LOADER_CUDA: batches end up in GPU memory */
} LoaderOptions;

/* Where batches are delivered. With LOADER_CUDA (builds with CUDA only) the loader needs a
 * device and makes Batch.device_pixels (and device_data with want_float, normalised on the
 * GPU instead of the CPU). A store that can gather on the device (gpummap:, fixed image
 * size, no augmentation) is read by the GPU straight from its registered mapping; every
 * other store is gathered on the host into pinned memory and copied on the filler's own
 * CUDA stream. */
enum { LOADER_HOST = 0, LOADER_CUDA = 1 };

/* Defaults: batch 256, shuffle, keep last, seed 1, world 1, no workers, mean = std = 0.5
 * (pixels to [-1, 1]), no augmentation, padding 4, host. */
void loader_options_default(LoaderOptions *o);

/* One batch, owned by the loader; valid until the next loader_next() or loader_close()
 * (or, once kept with loader_keep(), until loader_release()). */
typedef struct Batch {
    uint64_t epoch;
    int64_t number;         /* batch number within the epoch */
    int count;              /* images in this batch (<= batch_size) */
    ImageShape shape;       /* every image's shape after transforms */
    const int64_t *indices; /* (count,) positions in the split */
    const int32_t *labels;  /* (count,) */
    const uint8_t *pixels;  /* (count, H, W, C) uint8 after resize / augmentation; NULL when
                             * the store gathered the batch straight into GPU memory */
    const float *data;      /* (count, C, H, W) normalised: want_float on the host; else NULL */
    const uint8_t *device_pixels; /* (count, H, W, C) in GPU memory with LOADER_CUDA; else NULL */
    const float *device_data;     /* (count, C, H, W) in GPU memory with LOADER_CUDA and
                                   * want_float; else NULL */
    double copy_seconds;    /* time of this batch's host-to-device transfer (LOADER_CUDA) */
    double wait_seconds;    /* how long loader_next() waited for it */
} Batch;

typedef struct Loader Loader;

/* Open the store at uri (one handle per worker) and start epoch 0 at batch 0. The worker
 * threads start with the first loader_start_epoch() or loader_next(), not here.
 * NULL with imgset_fail(). */
Loader *loader_open(const char *uri, const LoaderOptions *options);

/* The data set (class names, counts) as the store reports it. */
const DatasetInfo *loader_info(const Loader *l);

/* Batches per epoch for this rank, and bytes of one image after transforms. */
int64_t loader_batches(const Loader *l);
ImageShape loader_shape(const Loader *l);

/* Go to `epoch`, continuing at batch `start_batch` (resume). Waits for batches in flight. */
int loader_start_epoch(Loader *l, uint64_t epoch, int64_t start_batch);

/* The next batch of the epoch: 1 and *out set, 0 at the end of the epoch, -1 on error
 * (imgset_fail names the store, split and index). */
int loader_next(Loader *l, const Batch **out);

/* Stop the workers, close the stores, free. NULL is fine. Kept batches stay valid. */
void loader_close(Loader *l);

/*
 * Keeping a batch past the next loader_next() (the Python package hands batches to PyTorch
 * without a copy this way). loader_keep() takes the buffers of the batch the last
 * loader_next() returned out of the ring: they stay valid and unchanged until
 * loader_release(), and the ring gets other buffers in exchange — spare ones released earlier,
 * or new ones, so the memory grows while many batches are kept and is never overwritten.
 * *batch gets that batch, pointing into the kept buffers.
 */
typedef struct LoaderKept LoaderKept;

/* Keep the batch the last loader_next() returned; call it from the thread that calls
 * loader_next(), before the next loader_next() or loader_start_epoch(). NULL with
 * imgset_fail() when there is no such batch or memory runs out. */
LoaderKept *loader_keep(Loader *l, Batch *batch);

/* Give a kept batch's buffers back. Thread-safe, from any thread, before or after
 * loader_close(); it touches nothing but the loader's buffer pool (no locks of the caller's).
 * In a child process after fork() it does nothing: the memory is the parent's. NULL is fine. */
void loader_release(LoaderKept *kept);

/* loader_release for a batch in GPU memory (LOADER_CUDA) whose consumer may still have kernels
 * queued that read it: the buffers are refilled only after each of events[0..n-1] (at most
 * LOADER_MAX_CONSUMERS; gpu_event_record on the consumers' streams, see gpu.h) has completed,
 * which the filler's stream waits for on the device. The loader owns the events from here. */
enum { LOADER_MAX_CONSUMERS = 8 };
typedef struct GpuEvent GpuEvent;
void loader_release_after(LoaderKept *kept, GpuEvent *const *events, int n);

/* Batches kept and not yet released, and spare buffer sets waiting for the ring. */
void loader_buffer_counts(const Loader *l, int *kept, int *spare);

#endif
