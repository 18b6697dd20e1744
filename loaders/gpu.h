/* gpu.h — the loader's CUDA side: device probe, pinned host memory, one stream per filler,
 * the batch gather and normalise kernels, and the gpummap store's zero-copy gather. */
#ifndef IMGSET_GPU_H
#define IMGSET_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * Declared in every build, defined only where nvcc compiled loaders/gpu.cu and
 * loaders/store_gpummap.cu (the Makefile then defines IMGSET_HAVE_CUDA): C callers keep
 * their calls inside #ifdef IMGSET_HAVE_CUDA, so builds without CUDA link without them.
 * Everything that can fail returns -1 (or NULL) with imgset_fail(). Pointers marked
 * "device" are GPU memory (or host memory mapped for the GPU): never dereference them on
 * the host.
 */

#ifdef __cplusplus
extern "C" {
#endif

/* 0 when a CUDA device can be used; else -1 with imgset_fail("<who>: no CUDA device (why)"). */
int gpu_require_device(const char *who);

/* "GPU: <name>, <memory> GiB, compute X.Y, CUDA runtime / driver versions" for reports;
 * call after gpu_require_device() succeeded. */
void gpu_describe(char *out, size_t n);

/* The calling thread's CUDA device number (0 until it chooses one); -1 with imgset_fail(). */
int gpu_current_device(void);

/* Make `device` the calling thread's CUDA device; 0, or -1 with imgset_fail(). */
int gpu_use_device(int device);

/* Pinned (page-locked) host memory, so that copies from it are asynchronous and fast.
 * Free with gpu_host_free() (NULL is fine). */
void *gpu_host_alloc(size_t bytes);
void gpu_host_free(void *p);

/* Device memory. Free with gpu_device_free() (NULL is fine). */
void *gpu_device_alloc(size_t bytes);
void gpu_device_free(void *p);

/* Copy device memory to the host and wait for it (tests and digests). */
int gpu_download(void *dst, const void *src_device, size_t bytes);

/* A CUDA stream with two events that time the host-to-device transfer queued on it
 * (from the first transfer after a wait to the last one). Owned by one thread at a time. */
typedef struct GpuStream GpuStream;
GpuStream *gpu_stream_create(void);
void gpu_stream_destroy(GpuStream *s);   /* waits for the queued work; NULL is fine */

/* Queue a host-to-device copy of `bytes` (asynchronous when src is pinned); timed. */
int gpu_upload_async(GpuStream *s, void *dst_device, const void *src, size_t bytes);

/* Queue dst[i] = image indices[i] of images, for i < n; timed when images is host memory
 * mapped for the device (the gather is then the transfer). dst_device: (n, image_bytes);
 * images_device: (count, image_bytes), read-only; indices_device: (n,), each < count. */
int gpu_gather_async(GpuStream *s, uint8_t *dst_device, const uint8_t *images_device,
                     size_t image_bytes, const int64_t *indices_device, int n, int timed);

/* Queue dst = (src / 255 - mean[k]) / std[k], uint8 (n, h, w, c) to float (n, c, h, w),
 * rounded exactly as transform_to_float() does it on the CPU. */
int gpu_normalise_async(GpuStream *s, float *dst_device, const uint8_t *src_device, int n,
                        int32_t h, int32_t w, int32_t c, const float *mean, const float *std);

/*
 * Events on a consumer's stream, for memory that the consumer's queued kernels may still read
 * when it gives the memory back (a torch tensor dies as soon as its last kernel is queued).
 * gpu_event_record: an event that completes when the work queued so far on `stream` has — a
 * cudaStream_t, or 0 / 1 / 2 for the default / legacy default / per-thread default stream, as
 * DLPack's __dlpack__(stream=) numbers them; NULL with imgset_fail(). Any thread.
 * gpu_stream_wait_event: make s wait for e on the device (the host does not wait), then
 * destroy e. gpu_event_destroy: NULL is fine.
 */
typedef struct GpuEvent GpuEvent;
GpuEvent *gpu_event_record(uintptr_t stream);
int gpu_stream_wait_event(GpuStream *s, GpuEvent *e);
void gpu_event_destroy(GpuEvent *e);

/* Wait on the host for everything queued on a consumer's stream (numbered as above). */
int gpu_sync_consumer_stream(uintptr_t stream);

/* Wait for everything queued on s. *transfer_seconds (may be NULL) gets the time of the
 * transfers queued since the last wait, 0 when there were none. */
int gpu_stream_wait(GpuStream *s, double *transfer_seconds);

/*
 * The loader's device hook. When s is a gpummap store and `split` has one image shape,
 * gather images indices[0..n-1] straight from the registered mapping into dst_device
 * ((n, H, W, C) uint8) on `stream` (zero-copy: the GPU reads the page cache over PCIe),
 * fill labels[0..n-1] on the host, and return 1. indices (n,) are uploaded to
 * indices_device ((n,) device) on the stream: keep them pinned and unchanged until the
 * wait. The work is queued, not waited for: call gpu_stream_wait() before using dst_device.
 * Returns 0 (doing nothing) when s is another store or the split's sizes vary, -1 with
 * imgset_fail() naming the store, split and index on a bad index or a CUDA failure.
 */
int gpummap_gather(Store *s, int split, const int64_t *indices, int n, GpuStream *stream,
                   uint8_t *dst_device, int64_t *indices_device, int32_t *labels);

#ifdef __cplusplus
}
#endif

#endif
