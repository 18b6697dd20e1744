/* store_gpummap.cu — the `gpummap:DIR` store: the mmap store's files, registered with CUDA so
 * that batches are gathered by the GPU straight from the page cache (zero-copy). */
#include <cuda_runtime.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

extern "C" {
#include "error.h"
#include "gpu.h"
#include "store_mmap.h"
}

/*
 * Reading goes through the mmap backend's own functions (store_mmap_ops): this backend
 * only adds, per split, a CUDA registration of the mapped images (page-locked, mapped for
 * the device, read-only as the mapping is) and the device address of that mapping.
 * Writing is not offered: write the same files with `mmap:DIR`.
 */

/* One split's images as both sides see them. */
typedef struct GpuMmapSplit {
    MmapSplitView view;          /* host view, owned by the mmap backend */
    void *registered;            /* page-aligned start of the registered range, or NULL */
    const uint8_t *device_pixels;  /* view.pixels as the device addresses it */
    size_t image_bytes;          /* H*W*C of a fixed split; 0 when sizes vary */
} GpuMmapSplit;

typedef struct GpuMmapStore {
    void *mmap_impl;             /* the mmap backend's state (its s->impl) */
    GpuMmapSplit split[SPLIT_COUNT];
} GpuMmapStore;

extern "C" const StoreOps store_gpummap_ops;

/* s as the mmap backend knows it: the same Store with the mmap ops and state, so that its
 * functions (and store_mmap_split_view) can be called on it. A shallow copy: it shares
 * s's strings and info and must not outlive s. */
static Store mmap_self(const Store *s)
{
    Store inner = *s;
    inner.ops = &store_mmap_ops;
    inner.impl = ((GpuMmapStore *)s->impl)->mmap_impl;
    return inner;
}

static void gpummap_close(Store *s)
{
    GpuMmapStore *g = (GpuMmapStore *)s->impl;
    if (!g)
        return;
    /* Unregister before the mmap backend unmaps the files. */
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (g->split[i].registered)
            cudaHostUnregister(g->split[i].registered);
    if (g->mmap_impl) {
        Store inner = mmap_self(s);
        store_mmap_ops.close(&inner);
    }
    free(g);
    s->impl = NULL;
}

/* Register a split's mapped images with CUDA (whole pages) and find their device address. */
static int register_split(Store *s, int split, GpuMmapSplit *gs)
{
    if (gs->view.pixel_bytes == 0)
        return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)gs->view.pixels & ~(page - 1);
    uintptr_t end = ((uintptr_t)gs->view.pixels + gs->view.pixel_bytes + page - 1) & ~(page - 1);
    /* The mapping is PROT_READ: CUDA must be told it may not write there. */
    cudaError_t err = cudaHostRegister((void *)start, end - start,
                                       cudaHostRegisterMapped | cudaHostRegisterReadOnly);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return imgset_fail("%s: cannot register the %s images (%zu bytes) with CUDA: %s%s",
                           s->uri, split_names[split], gs->view.pixel_bytes,
                           cudaGetErrorString(err),
                           err == cudaErrorNotSupported
                               ? " (the device cannot map read-only host memory)" : "");
    }
    gs->registered = (void *)start;
    void *device = NULL;
    if ((err = cudaHostGetDevicePointer(&device, (void *)start, 0)) != cudaSuccess) {
        cudaGetLastError();
        return imgset_fail("%s: no device address for the %s images: %s", s->uri,
                           split_names[split], cudaGetErrorString(err));
    }
    gs->device_pixels = (const uint8_t *)device + ((uintptr_t)gs->view.pixels - start);
    return 0;
}

static int gpummap_open(Store *s, const char *location)
{
    if (gpu_require_device("gpummap") < 0)
        return -1;
    GpuMmapStore *g = (GpuMmapStore *)calloc(1, sizeof *g);
    if (!g)
        return imgset_fail("out of memory");
    if (store_mmap_ops.open(s, location) < 0) {
        free(g);
        return -1;
    }
    g->mmap_impl = s->impl;
    s->impl = g;
    Store inner = mmap_self(s);
    for (int split = 0; split < SPLIT_COUNT; split++) {
        GpuMmapSplit *gs = &g->split[split];
        const SplitInfo *info = &s->info.split[split];
        if (store_mmap_split_view(&inner, split, &gs->view) < 0 ||
            register_split(s, split, gs) < 0) {
            gpummap_close(s);
            return -1;
        }
        gs->image_bytes = split_is_fixed(info) ? image_shape_bytes(info->shape) : 0;
    }
    return 0;
}

static int gpummap_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    Store inner = mmap_self(s);
    return store_mmap_ops.image_shape(&inner, split, index, shape);
}

static int gpummap_read_image(Store *s, int split, int64_t index, uint8_t *dst,
                              size_t capacity, ImageShape *shape, int32_t *label)
{
    Store inner = mmap_self(s);
    return store_mmap_ops.read_image(&inner, split, index, dst, capacity, shape, label);
}

int gpummap_gather(Store *s, int split, const int64_t *indices, int n, GpuStream *stream,
                   uint8_t *dst_device, int64_t *indices_device, int32_t *labels)
{
    if (s->ops != &store_gpummap_ops || split < 0 || split >= SPLIT_COUNT)
        return 0;
    const GpuMmapSplit *gs = &((GpuMmapStore *)s->impl)->split[split];
    if (gs->image_bytes == 0)
        return 0;
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= gs->view.count)
            return imgset_fail("%s: %s index %" PRId64 " out of range (the split has %" PRId64
                               " images)", s->uri, split_names[split], indices[i],
                               gs->view.count);
        labels[i] = gs->view.labels[indices[i]];
    }
    if (gpu_upload_async(stream, indices_device, indices, (size_t)n * sizeof *indices) < 0 ||
        gpu_gather_async(stream, dst_device, gs->device_pixels, gs->image_bytes,
                         indices_device, n, 1) < 0) {
        gpu_stream_wait(stream, NULL);   /* nothing may still read indices after we fail */
        return imgset_fail_prefix("%s: %s batch: ", s->uri, split_names[split]);
    }
    return 1;
}

extern "C" const StoreOps store_gpummap_ops = {
    /* scheme */ "gpummap",
    /* alias */ NULL,
    /* summary */ "gpummap:DIR — the mmap store's files, registered with CUDA: batches are "
                  "gathered by the GPU straight from the page cache (read only)",
    /* open */ gpummap_open,
    /* image_shape */ gpummap_image_shape,
    /* read_image */ gpummap_read_image,
    /* close */ gpummap_close,
    /* create, write_image, commit, abort */ NULL, NULL, NULL, NULL,
    /* read_batch */ NULL,
};
