/* loader.c — the batch loader: sampler + prefetch worker pool + ring of slots + transforms. */
#include "loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "gpu.h"
#include "sampler.h"
#include "store.h"
#include "transform.h"

enum SlotState { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_FAILED, SLOT_IN_USE };

/* One batch's buffers: a ring slot's, or a kept batch's (loader_keep). */
typedef struct BatchBuffers {
    int64_t *indices;   /* (batch_size,) */
    int32_t *labels;    /* (batch_size,) */
    uint8_t *pixels;    /* (batch_size, H, W, C); pinned with LOADER_CUDA */
    float *data;        /* (batch_size, C, H, W) or NULL; NULL with LOADER_CUDA */
    uint8_t *device_pixels;   /* (batch_size, H, W, C) device, with LOADER_CUDA */
    float *device_data;       /* (batch_size, C, H, W) device, with LOADER_CUDA and want_float */
    int64_t *device_indices;  /* (batch_size,) device, for gathers on the device */
    GpuEvent *consumers[LOADER_MAX_CONSUMERS];  /* a released batch's consumers' streams: the
                                                 * device buffers are refilled after these */
    int nconsumers;
} BatchBuffers;

/* One batch in the ring. */
typedef struct Slot {
    enum SlotState state;
    Batch batch;
    BatchBuffers buf;
    char error[1024];   /* the worker's message when FAILED */
} Slot;

/*
 * The buffers outside the ring: the kept batches' and spare ones the ring takes in exchange
 * when a batch is kept. Kept batches may outlive the loader, so the pool is freed by whoever
 * lets go of it last (the loader at close, or the last loader_release).
 */
typedef struct BufferPool {
    pthread_mutex_t mutex;
    int refs;                 /* 1 while the loader is open, + 1 per kept batch */
    int kept;                 /* batches kept and not yet released */
    int closed;               /* the loader is gone: released buffers are freed */
    int nspare, max_spare;
    BatchBuffers *spare;      /* (max_spare,) */
    pid_t pid;                /* the process the buffers belong to */
    int device;               /* LOADER_HOST or LOADER_CUDA */
    int device_id;            /* the CUDA device of the device buffers, with LOADER_CUDA */
    int want_float;
    size_t batch_size, pixel_bytes, float_bytes;
} BufferPool;

struct LoaderKept {
    BufferPool *pool;
    BatchBuffers buf;
};

/* What one filler (a worker thread, or the caller when there are none) owns. */
typedef struct Filler {
    Loader *loader;
    Store *store;       /* its own handle: stores are used by one thread at a time */
    uint8_t *image;     /* one source image, grown as needed */
    size_t image_cap;
    uint8_t *scratch;   /* resize scratch / augmentation source */
    size_t scratch_cap;
    GpuStream *stream;          /* its own CUDA stream, with LOADER_CUDA */
    pthread_t thread;
} Filler;

struct Loader {
    LoaderOptions opt;
    char *uri;
    DatasetInfo info;
    ImageShape src_shape;     /* the split's fixed shape, or zeros when sizes vary */
    ImageShape out_shape;     /* after transforms */
    size_t out_bytes;         /* bytes of one output image */
    int device_gather;        /* LOADER_CUDA, and batches need no resize or augmentation:
                               * the store may gather them on the device */
    int device_id;            /* the CUDA device current at open, with LOADER_CUDA: the
                               * workers and every buffer use it */
    Sampler sampler;

    int nslots;
    Slot *slots;
    Slot *in_use;             /* the slot of the batch loader_next() returned last, or NULL */
    BufferPool *pool;
    int nworkers;
    int started;              /* workers started (on the first batch, not at open) */
    Filler *fillers;          /* nworkers of them, or one for the caller */

    pthread_mutex_t mutex;
    pthread_cond_t work;      /* a slot became free, or stop / new epoch */
    pthread_cond_t ready;     /* a slot was filled or failed */
    int64_t next_claim;       /* next batch number a worker may take */
    int64_t next_consume;     /* next batch number loader_next() returns */
    int filling;              /* slots being filled right now */
    int stop;
};

void loader_options_default(LoaderOptions *o)
{
    memset(o, 0, sizeof *o);
    o->split = SPLIT_TRAIN;
    o->batch_size = 256;
    o->shuffle = 1;
    o->seed = 1;
    o->world = 1;
    o->crop_padding = 4;
    for (int k = 0; k < IMGSET_MAX_CHANNELS; k++)
        o->mean[k] = o->std[k] = 0.5f;
}

const DatasetInfo *loader_info(const Loader *l) { return &l->info; }
int64_t loader_batches(const Loader *l) { return l->sampler.batches; }
ImageShape loader_shape(const Loader *l) { return l->out_shape; }

/* Make room for `need` bytes in *buf. */
static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    uint8_t *bigger = realloc(*buf, need);
    if (!bigger)
        return imgset_fail("out of memory for a %zu-byte image buffer", need);
    *buf = bigger;
    *cap = need;
    return 0;
}

/* Read image `index` into out (out_shape), resizing / cropping when its size differs. */
static int fill_one_resized(Filler *f, int64_t index, uint8_t *out, int32_t *label)
{
    Loader *l = f->loader;
    ImageShape shape;
    if (store_read_image_grow(f->store, l->opt.split, index, &f->image, &f->image_cap, &shape,
                              label) < 0)
        return -1;
    if (shape.channels != l->out_shape.channels)
        return imgset_fail("%s: %s image %lld has %d channels, the loader makes %d", l->uri,
                           split_names[l->opt.split], (long long)index, shape.channels,
                           l->out_shape.channels);
    if (image_shape_equal(shape, l->out_shape)) {
        memcpy(out, f->image, l->out_bytes);
        return 0;
    }
    size_t need = transform_resize_crop_scratch(shape, l->out_shape.height, l->out_shape.width);
    if (grow(&f->scratch, &f->scratch_cap, need) < 0)
        return -1;
    transform_resize_crop(out, l->out_shape.height, l->out_shape.width, f->image, shape,
                          f->scratch);
    return 0;
}

/* Read the slot's n images into its pixels on the host, augment, and make the host float
 * batch when there is one. */
static int fill_host(Filler *f, Slot *slot, int n)
{
    Loader *l = f->loader;
    const LoaderOptions *o = &l->opt;
    if (l->src_shape.height && image_shape_equal(l->src_shape, l->out_shape)) {
        if (store_read_batch(f->store, o->split, slot->buf.indices, n, slot->buf.pixels,
                             slot->buf.labels) < 0)
            return -1;
    } else if (store_can_read_batch_resized(f->store)) {
        /* the store resizes (pg: the server, in one round trip, with our transform) */
        if (store_read_batch_resized(f->store, o->split, slot->buf.indices, n, l->out_shape,
                                     slot->buf.pixels, slot->buf.labels) < 0)
            return -1;
    } else {
        for (int i = 0; i < n; i++)
            if (fill_one_resized(f, slot->buf.indices[i],
                                 slot->buf.pixels + (size_t)i * l->out_bytes,
                                 &slot->buf.labels[i]) < 0)
                return -1;
    }
    const ImageShape s = l->out_shape;
    if (o->augment) {
        if (grow(&f->scratch, &f->scratch_cap, l->out_bytes) < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            /* The choices depend on (seed, epoch, image) only: the same with any worker count. */
            Rng rng = rng_make(o->seed ^ 0xA5A5A5A5u, l->sampler.epoch * 0x100000000ull +
                                                          (uint64_t)slot->buf.indices[i]);
            uint8_t *img = slot->buf.pixels + (size_t)i * l->out_bytes;
            memcpy(f->scratch, img, l->out_bytes);
            transform_random_crop_flip(img, f->scratch, s.height, s.width, s.channels,
                                       o->crop_padding, 1, &rng);
        }
    }
    if (slot->buf.data)
        transform_to_float(slot->buf.data, slot->buf.pixels, n, s.height, s.width, s.channels,
                           o->mean, o->std);
    return 0;
}

#ifdef IMGSET_HAVE_CUDA
/* Put the slot's n images into GPU memory (unless the store gathered them there already),
 * normalise them there, and wait: the slot is ready when this returns. */
static int finish_on_device(Filler *f, Slot *slot, int n, int gathered, double *copy_seconds)
{
    const Loader *l = f->loader;
    const ImageShape s = l->out_shape;
    int rc = 0;
    if (!gathered)
        rc = gpu_upload_async(f->stream, slot->buf.device_pixels, slot->buf.pixels,
                              (size_t)n * l->out_bytes);
    if (rc == 0 && slot->buf.device_data)
        rc = gpu_normalise_async(f->stream, slot->buf.device_data, slot->buf.device_pixels, n,
                                 s.height, s.width, s.channels, l->opt.mean, l->opt.std);
    /* Wait even after a failure: nothing queued may still use the slot's buffers. */
    if (gpu_stream_wait(f->stream, copy_seconds) < 0 || rc < 0)
        return imgset_fail_prefix("%s: %s batch: ", l->uri, split_names[l->opt.split]);
    return 0;
}
#endif

/* Fill slot with batch `number` of the current epoch. Runs without the mutex. */
static int fill_slot(Filler *f, Slot *slot, int64_t number)
{
    Loader *l = f->loader;
    int n = sampler_batch(&l->sampler, number, slot->buf.indices);
    if (n < 0)
        return imgset_fail("%s: batch %lld is out of range", l->uri, (long long)number);
    int gathered = 0;         /* 1 when the store put the batch into GPU memory itself */
    double copy_seconds = 0;
#ifdef IMGSET_HAVE_CUDA
    /* Kernels of the batch's last consumer may still read its device buffers: everything
     * this filler queues from here on waits for them (on the device). */
    for (; slot->buf.nconsumers > 0; slot->buf.nconsumers--)
        if (gpu_stream_wait_event(f->stream, slot->buf.consumers[slot->buf.nconsumers - 1]) < 0)
            return imgset_fail_prefix("%s: waiting for a batch's last reader: ", l->uri);
    if (l->device_gather &&
        (gathered = gpummap_gather(f->store, l->opt.split, slot->buf.indices, n, f->stream,
                                   slot->buf.device_pixels, slot->buf.device_indices,
                                   slot->buf.labels)) < 0)
        return -1;
#endif
    if (!gathered && fill_host(f, slot, n) < 0)
        return -1;
#ifdef IMGSET_HAVE_CUDA
    if (l->opt.device == LOADER_CUDA && finish_on_device(f, slot, n, gathered, &copy_seconds) < 0)
        return -1;
#endif
    slot->batch = (Batch){
        .epoch = l->sampler.epoch, .number = number, .count = n, .shape = l->out_shape,
        .indices = slot->buf.indices, .labels = slot->buf.labels,
        .pixels = gathered ? NULL : slot->buf.pixels, .data = slot->buf.data,
        .device_pixels = slot->buf.device_pixels, .device_data = slot->buf.device_data,
        .copy_seconds = copy_seconds,
    };
    return 0;
}

/* A worker: claim the next batch whose slot is free, fill it, mark it ready; until stop. */
static void *worker_main(void *arg)
{
    Filler *f = arg;
    Loader *l = f->loader;
#ifdef IMGSET_HAVE_CUDA
    /* A new thread starts on device 0; a failure here shows in the first CUDA call's error. */
    if (l->opt.device == LOADER_CUDA)
        gpu_use_device(l->device_id);
#endif
    pthread_mutex_lock(&l->mutex);
    for (;;) {
        while (!l->stop && !(l->next_claim < l->sampler.batches &&
                             l->slots[l->next_claim % l->nslots].state == SLOT_FREE))
            pthread_cond_wait(&l->work, &l->mutex);
        if (l->stop)
            break;
        int64_t number = l->next_claim++;
        Slot *slot = &l->slots[number % l->nslots];
        slot->state = SLOT_FILLING;
        l->filling++;
        pthread_mutex_unlock(&l->mutex);

        int rc = fill_slot(f, slot, number);
        if (rc < 0)
            snprintf(slot->error, sizeof slot->error, "%s", imgset_error());

        pthread_mutex_lock(&l->mutex);
        slot->state = rc < 0 ? SLOT_FAILED : SLOT_READY;
        l->filling--;
        pthread_cond_broadcast(&l->ready);
    }
    pthread_mutex_unlock(&l->mutex);
    return NULL;
}

/* Host memory for a batch's indices and pixels: pinned with LOADER_CUDA, for fast
 * asynchronous copies. NULL with imgset_fail(). */
static void *batch_host_alloc(const BufferPool *p, size_t bytes)
{
#ifdef IMGSET_HAVE_CUDA
    if (p->device == LOADER_CUDA)
        return gpu_host_alloc(bytes);
#endif
    void *mem = malloc(bytes);
    if (!mem)
        imgset_fail("out of memory for a %zu-byte batch buffer", bytes);
    return mem;
}

static void batch_host_free(const BufferPool *p, void *mem)
{
#ifdef IMGSET_HAVE_CUDA
    if (p->device == LOADER_CUDA) {
        gpu_host_free(mem);
        return;
    }
#endif
    free(mem);
}

static void buffers_free(const BufferPool *p, BatchBuffers *b)
{
#ifdef IMGSET_HAVE_CUDA
    for (int i = 0; i < b->nconsumers; i++)
        gpu_event_destroy(b->consumers[i]);
#endif
    free(b->labels);
    batch_host_free(p, b->indices);
    batch_host_free(p, b->pixels);
    free(b->data);
#ifdef IMGSET_HAVE_CUDA
    gpu_device_free(b->device_pixels);
    gpu_device_free(b->device_data);
    gpu_device_free(b->device_indices);
#endif
    memset(b, 0, sizeof *b);
}

/* Allocate one batch's buffers: host ones always, device ones with LOADER_CUDA. 0, or -1
 * with imgset_fail() and nothing allocated. */
static int buffers_alloc(const BufferPool *p, BatchBuffers *b)
{
    size_t n = p->batch_size;
    int device = p->device == LOADER_CUDA;
    memset(b, 0, sizeof *b);
    if (!(b->labels = malloc(n * sizeof *b->labels))) {
        imgset_fail("out of memory for %zu labels", n);
        goto fail;
    }
    if (!(b->indices = batch_host_alloc(p, n * sizeof *b->indices)) ||
        !(b->pixels = batch_host_alloc(p, p->pixel_bytes)))
        goto fail;
    if (p->want_float && !device && !(b->data = malloc(p->float_bytes))) {
        imgset_fail("out of memory for a %zu-byte float batch", p->float_bytes);
        goto fail;
    }
#ifdef IMGSET_HAVE_CUDA
    if (device) {
        /* On the loader's device, whichever device the calling thread uses. */
        int previous = gpu_current_device();
        int ok = previous >= 0 && gpu_use_device(p->device_id) == 0 &&
                 (b->device_pixels = gpu_device_alloc(p->pixel_bytes)) &&
                 (b->device_indices = gpu_device_alloc(n * sizeof *b->device_indices)) &&
                 (!p->want_float || (b->device_data = gpu_device_alloc(p->float_bytes)));
        if (previous >= 0 && previous != p->device_id)
            gpu_use_device(previous);
        if (!ok)
            goto fail;
    }
#endif
    return 0;

fail:
    buffers_free(p, b);
    return -1;
}

/* A pool for batches of the loader's sizes, with room for max_spare spare buffer sets;
 * NULL with imgset_fail(). */
static BufferPool *pool_new(const Loader *l, size_t pixel_bytes, size_t float_bytes,
                            int max_spare)
{
    BufferPool *p = calloc(1, sizeof *p);
    if (!p || !(p->spare = calloc((size_t)max_spare, sizeof *p->spare))) {
        free(p);
        return imgset_fail("out of memory"), NULL;
    }
    pthread_mutex_init(&p->mutex, NULL);
    p->refs = 1;
    p->max_spare = max_spare;
    p->pid = getpid();
    p->device = l->opt.device;
    p->device_id = l->device_id;
    p->want_float = l->opt.want_float;
    p->batch_size = (size_t)l->opt.batch_size;
    p->pixel_bytes = pixel_bytes;
    p->float_bytes = float_bytes;
    return p;
}

/* Drop one reference (under the mutex); the last one frees the pool. */
static void pool_unref_locked(BufferPool *p)
{
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mutex);
    if (!last)
        return;
    for (int i = 0; i < p->nspare; i++)
        buffers_free(p, &p->spare[i]);
    free(p->spare);
    pthread_mutex_destroy(&p->mutex);
    free(p);
}

/* The loader lets go of the pool: spare buffers are freed now, kept ones when released. */
static void pool_close(BufferPool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mutex);
    p->closed = 1;
    for (int i = 0; i < p->nspare; i++)
        buffers_free(p, &p->spare[i]);
    p->nspare = 0;
    pool_unref_locked(p);
}

LoaderKept *loader_keep(Loader *l, Batch *batch)
{
    Slot *slot = l->in_use;
    if (!slot)
        return imgset_fail("loader: no batch to keep (loader_next() returned none since the "
                           "last keep)"), NULL;
    LoaderKept *k = malloc(sizeof *k);
    if (!k)
        return imgset_fail("out of memory"), NULL;
    BufferPool *p = l->pool;
    BatchBuffers fresh;
    int have_spare = 0;
    pthread_mutex_lock(&p->mutex);
    if (p->nspare > 0) {
        fresh = p->spare[--p->nspare];
        have_spare = 1;
    }
    pthread_mutex_unlock(&p->mutex);
    if (!have_spare && buffers_alloc(p, &fresh) < 0) {
        free(k);
        return imgset_fail_prefix("loader: keeping a batch: "), NULL;
    }
    /* The slot is in use: no worker touches it, so its buffers can change hands here. */
    k->pool = p;
    k->buf = slot->buf;
    *batch = slot->batch;
    slot->buf = fresh;
    l->in_use = NULL;
    pthread_mutex_lock(&p->mutex);
    p->refs++;
    p->kept++;
    pthread_mutex_unlock(&p->mutex);
    return k;
}

void loader_release(LoaderKept *k)
{
    loader_release_after(k, NULL, 0);
}

void loader_release_after(LoaderKept *k, GpuEvent *const *events, int n)
{
    if (!k)
        return;
    BufferPool *p = k->pool;
    /* In a child after fork() the memory is the parent's copy and a worker may have held the
     * mutex at the fork: leave both alone. */
    if (p->pid != getpid())
        return;
    for (int i = 0; i < n && i < LOADER_MAX_CONSUMERS; i++)
        k->buf.consumers[k->buf.nconsumers++] = events[i];
    pthread_mutex_lock(&p->mutex);
    p->kept--;
    int spare = !p->closed && p->nspare < p->max_spare;
    if (spare)
        p->spare[p->nspare++] = k->buf;
    else
        buffers_free(p, &k->buf);
    free(k);
    pool_unref_locked(p);
}

void loader_buffer_counts(const Loader *l, int *kept, int *spare)
{
    pthread_mutex_lock(&l->pool->mutex);
    *kept = l->pool->kept;
    *spare = l->pool->nspare;
    pthread_mutex_unlock(&l->pool->mutex);
}

/* Free what loader_open allocated, after the workers have stopped. */
static void loader_free(Loader *l)
{
    for (int i = 0; i < (l->nworkers ? l->nworkers : 1) && l->fillers; i++) {
        store_close(l->fillers[i].store);
        free(l->fillers[i].image);
        free(l->fillers[i].scratch);
#ifdef IMGSET_HAVE_CUDA
        gpu_stream_destroy(l->fillers[i].stream);
#endif
    }
    free(l->fillers);
    for (int i = 0; i < l->nslots && l->slots && l->pool; i++)
        buffers_free(l->pool, &l->slots[i].buf);
    free(l->slots);
    pool_close(l->pool);
    dataset_info_free(&l->info);
    free(l->uri);
    pthread_mutex_destroy(&l->mutex);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    free(l);
}

/* Validate the options against the data set and work out the output shape. */
static int loader_configure(Loader *l, const Store *s)
{
    const LoaderOptions *o = &l->opt;
    if (o->split < 0 || o->split >= SPLIT_COUNT)
        return imgset_fail("loader: bad split number %d", o->split);
    if (o->batch_size < 1 || o->batch_size > 1 << 20)
        return imgset_fail("loader: batch size %d is out of range 1..%d", o->batch_size, 1 << 20);
    if (o->workers < 0 || o->workers > 256)
        return imgset_fail("loader: %d workers is out of range 0..256", o->workers);
    if (o->augment && (o->crop_padding < 0 || o->crop_padding > 1024))
        return imgset_fail("loader: crop padding %d is out of range", o->crop_padding);
    const SplitInfo *sp = &s->info.split[o->split];
    l->src_shape = split_is_fixed(sp) ? sp->shape : (ImageShape){0, 0, 0};
    l->out_shape = l->src_shape;
    if (o->height || o->width) {
        l->out_shape.height = o->height;
        l->out_shape.width = o->width;
    }
    if (!l->out_shape.channels) {
        /* Mixed sizes: the channel count comes from the first image. */
        ImageShape first;
        if (sp->count > 0 && store_image_shape((Store *)s, o->split, 0, &first) < 0)
            return -1;
        l->out_shape.channels = sp->count > 0 ? first.channels : 3;
    }
    if (!l->out_shape.height)
        return imgset_fail("%s: the %s split has mixed image sizes: give the loader a target "
                           "size (e.g. --size 64)", l->uri, split_names[o->split]);
    if (!image_shape_valid(l->out_shape))
        return imgset_fail("loader: target size %dx%d is invalid", l->out_shape.height,
                           l->out_shape.width);
    for (int k = 0; k < l->out_shape.channels; k++)
        if (!(o->std[k] > 0))
            return imgset_fail("loader: std of channel %d must be positive", k);
    l->out_bytes = image_shape_bytes(l->out_shape);
    if (o->device != LOADER_HOST && o->device != LOADER_CUDA)
        return imgset_fail("loader: bad device number %d", o->device);
    l->device_gather = o->device == LOADER_CUDA && l->src_shape.height &&
                       image_shape_equal(l->src_shape, l->out_shape) && !o->augment;
    SamplerOptions so = {
        .count = (uint64_t)sp->count, .batch_size = o->batch_size, .shuffle = o->shuffle,
        .drop_last = o->drop_last, .seed = o->seed, .rank = o->rank, .world = o->world,
    };
    return sampler_init(&l->sampler, &so);
}

/* With LOADER_CUDA: check that there is a device and give every filler its own stream. */
static int loader_open_device(Loader *l)
{
    if (l->opt.device != LOADER_CUDA)
        return 0;
#ifdef IMGSET_HAVE_CUDA
    if (gpu_require_device("loader") < 0 || (l->device_id = gpu_current_device()) < 0)
        return -1;
    for (int i = 0; i < (l->nworkers ? l->nworkers : 1); i++)
        if (!(l->fillers[i].stream = gpu_stream_create()))
            return -1;
    return 0;
#else
    return imgset_fail("loader: no CUDA device (this build has no CUDA: nvcc was not found, "
                       "or NO_CUDA=1)");
#endif
}

Loader *loader_open(const char *uri, const LoaderOptions *options)
{
    Loader *l = calloc(1, sizeof *l);
    if (!l)
        return imgset_fail("out of memory"), NULL;
    l->opt = *options;
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    l->uri = strdup(uri);
    l->nworkers = options->workers;
    int nfillers = l->nworkers ? l->nworkers : 1;
    l->fillers = calloc((size_t)nfillers, sizeof *l->fillers);
    if (!l->uri || !l->fillers) {
        loader_free(l);
        return imgset_fail("out of memory"), NULL;
    }
    for (int i = 0; i < nfillers; i++) {
        l->fillers[i].loader = l;
        /* Readers spread over a data set's servers: rank first, then worker (a bad rank or
         * world is the sampler's to report). */
        int64_t reader = (int64_t)options->rank + (int64_t)options->world * i;
        if (options->rank < 0 || options->world < 1 || reader > INT32_MAX)
            reader = 0;
        if (!(l->fillers[i].store = store_open_reader(uri, (int)reader))) {
            loader_free(l);
            return NULL;
        }
    }
    if (dataset_info_copy(&l->info, &l->fillers[0].store->info) < 0 ||
        loader_configure(l, l->fillers[0].store) < 0 || loader_open_device(l) < 0) {
        loader_free(l);
        return NULL;
    }
    l->nslots = options->slots > 0 ? options->slots : 2 * l->nworkers;
    if (l->nslots < 2)
        l->nslots = 2;
    size_t b = (size_t)l->opt.batch_size, pixel_bytes, float_bytes;
    if (size_mul(b, l->out_bytes, &pixel_bytes) < 0 ||
        size_mul(pixel_bytes, sizeof(float), &float_bytes) < 0) {
        loader_free(l);
        return imgset_fail("loader: batch of %zu images of %zu bytes is too large", b,
                           l->out_bytes), NULL;
    }
    if (!(l->slots = calloc((size_t)l->nslots, sizeof *l->slots)) ||
        !(l->pool = pool_new(l, pixel_bytes, float_bytes, l->nslots))) {
        loader_free(l);
        return imgset_fail("out of memory"), NULL;
    }
    for (int i = 0; i < l->nslots; i++)
        if (buffers_alloc(l->pool, &l->slots[i].buf) < 0) {
            imgset_fail_prefix("loader: %d batch slots of %zu bytes: ", l->nslots, pixel_bytes);
            loader_free(l);
            return NULL;
        }
    return l;
}

/* Start the worker threads, on the first epoch or batch rather than at open: a loader that is
 * opened and never read has none. 0, or -1 with imgset_fail() (those started keep working). */
static int loader_start_workers(Loader *l)
{
    for (; l->started < l->nworkers; l->started++)
        if (pthread_create(&l->fillers[l->started].thread, NULL, worker_main,
                           &l->fillers[l->started]) != 0)
            return imgset_fail("loader: cannot start worker thread %d", l->started);
    return 0;
}

int loader_start_epoch(Loader *l, uint64_t epoch, int64_t start_batch)
{
    pthread_mutex_lock(&l->mutex);
    /* Let no worker claim more, wait for the fills in flight, then reset the ring. */
    l->next_claim = l->sampler.batches;
    while (l->filling > 0)
        pthread_cond_wait(&l->ready, &l->mutex);
    for (int i = 0; i < l->nslots; i++)
        l->slots[i].state = SLOT_FREE;
    l->in_use = NULL;
    sampler_set_epoch(&l->sampler, epoch);
    if (start_batch < 0 || start_batch > l->sampler.batches) {
        pthread_mutex_unlock(&l->mutex);
        return imgset_fail("loader: start batch %lld is out of range 0..%lld",
                           (long long)start_batch, (long long)l->sampler.batches);
    }
    l->next_claim = l->next_consume = start_batch;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mutex);
    return loader_start_workers(l);
}

int loader_next(Loader *l, const Batch **out)
{
    double start = monotonic_seconds();
    if (loader_start_workers(l) < 0)
        return -1;
    pthread_mutex_lock(&l->mutex);
    /* The batch handed out last time is given back now (its buffers, unless kept). */
    l->in_use = NULL;
    for (int i = 0; i < l->nslots; i++)
        if (l->slots[i].state == SLOT_IN_USE) {
            l->slots[i].state = SLOT_FREE;
            pthread_cond_broadcast(&l->work);
        }
    if (l->next_consume >= l->sampler.batches) {
        pthread_mutex_unlock(&l->mutex);
        return 0;
    }
    int64_t number = l->next_consume;
    Slot *slot = &l->slots[number % l->nslots];
    int rc = 0;
    if (l->nworkers == 0) {
        pthread_mutex_unlock(&l->mutex);
        rc = fill_slot(&l->fillers[0], slot, number);
        pthread_mutex_lock(&l->mutex);
        if (rc < 0)
            snprintf(slot->error, sizeof slot->error, "%s", imgset_error());
        slot->state = rc < 0 ? SLOT_FAILED : SLOT_READY;
    } else {
        while (slot->state != SLOT_READY && slot->state != SLOT_FAILED)
            pthread_cond_wait(&l->ready, &l->mutex);
    }
    if (slot->state == SLOT_FAILED) {
        /* Leave it FAILED: the epoch cannot go on past a batch that did not load. */
        pthread_mutex_unlock(&l->mutex);
        return imgset_fail("%s", slot->error);
    }
    slot->state = SLOT_IN_USE;
    l->in_use = slot;
    l->next_consume++;
    pthread_mutex_unlock(&l->mutex);
    slot->batch.wait_seconds = monotonic_seconds() - start;
    *out = &slot->batch;
    return 1;
}

void loader_close(Loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mutex);
    l->stop = 1;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mutex);
    for (int i = 0; i < l->started; i++)
        pthread_join(l->fillers[i].thread, NULL);
    loader_free(l);
}
