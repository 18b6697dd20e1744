/* gpu.cu — device probe, pinned and device memory, timed streams, gather and normalise kernels. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "error.h"
#include "gpu.h"
}
#include "gpu_launch.h"

#define THREADS GPU_THREADS   /* threads per block for both kernels */
#define MAX_BLOCKS 65535   /* the normalise kernel loops when there is more work */

struct GpuStream {
    cudaStream_t stream;
    cudaEvent_t transfer_start, transfer_stop;
    int timing;            /* 1 when a transfer was queued since the last wait */
};

/* imgset_fail() naming the CUDA call that failed and why; returns -1. */
static int cuda_fail(const char *what, cudaError_t err)
{
    cudaGetLastError();    /* clear it, so the next call does not report it again */
    return imgset_fail("cuda: %s failed: %s (%s)", what, cudaGetErrorString(err),
                       cudaGetErrorName(err));
}

int gpu_require_device(const char *who)
{
    int count = 0, runtime = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaSuccess && count > 0)
        return 0;
    cudaGetLastError();
    cudaRuntimeGetVersion(&runtime);
    if (err == cudaErrorInsufficientDriver)
        return imgset_fail("%s: no CUDA device (no NVIDIA driver loaded, or one older than this "
                           "CUDA %d.%d runtime)", who, runtime / 1000, runtime % 1000 / 10);
    if (err == cudaSuccess || err == cudaErrorNoDevice)
        return imgset_fail("%s: no CUDA device (the NVIDIA driver sees no GPU)", who);
    return imgset_fail("%s: no CUDA device (%s: %s)", who, cudaGetErrorName(err),
                       cudaGetErrorString(err));
}

void gpu_describe(char *out, size_t n)
{
    cudaDeviceProp p;
    int device = 0, runtime = 0, driver = 0;
    cudaGetDevice(&device);
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(out, n, "GPU: CUDA device %d (no properties)", device);
        return;
    }
    snprintf(out, n, "GPU: %s, %.0f GiB, compute %d.%d, CUDA runtime %d.%d, driver %d.%d",
             p.name, (double)p.totalGlobalMem / 1073741824.0, p.major, p.minor,
             runtime / 1000, runtime % 1000 / 10, driver / 1000, driver % 1000 / 10);
}

int gpu_current_device(void)
{
    int device = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err != cudaSuccess)
        return cuda_fail("cudaGetDevice", err);
    return device;
}

int gpu_use_device(int device)
{
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) {
        cuda_fail("cudaSetDevice", err);
        return imgset_fail_prefix("CUDA device %d: ", device);
    }
    return 0;
}

void *gpu_host_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (err != cudaSuccess) {
        imgset_fail("cuda: cannot allocate %zu bytes of pinned host memory: %s", bytes,
                    cudaGetErrorString(err));
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void gpu_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

void *gpu_device_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        imgset_fail("cuda: cannot allocate %zu bytes of device memory: %s", bytes,
                    cudaGetErrorString(err));
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void gpu_device_free(void *p)
{
    if (p)
        cudaFree(p);
}

int gpu_download(void *dst, const void *src_device, size_t bytes)
{
    cudaError_t err = cudaMemcpy(dst, src_device, bytes, cudaMemcpyDeviceToHost);
    return err == cudaSuccess ? 0 : cuda_fail("cudaMemcpy (device to host)", err);
}

GpuStream *gpu_stream_create(void)
{
    GpuStream *s = (GpuStream *)calloc(1, sizeof *s);
    if (!s)
        return imgset_fail("out of memory"), (GpuStream *)NULL;
    cudaError_t err = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (err == cudaSuccess && (err = cudaEventCreate(&s->transfer_start)) == cudaSuccess &&
        (err = cudaEventCreate(&s->transfer_stop)) == cudaSuccess)
        return s;
    cuda_fail("creating a stream and its events", err);
    gpu_stream_destroy(s);
    return NULL;
}

void gpu_stream_destroy(GpuStream *s)
{
    if (!s)
        return;
    if (s->stream) {
        cudaStreamSynchronize(s->stream);
        cudaStreamDestroy(s->stream);
    }
    if (s->transfer_start)
        cudaEventDestroy(s->transfer_start);
    if (s->transfer_stop)
        cudaEventDestroy(s->transfer_stop);
    free(s);
}

/* Record the transfer's start event when this is the first transfer since the last wait. */
static int transfer_begin(GpuStream *s)
{
    if (s->timing)
        return 0;
    cudaError_t err = cudaEventRecord(s->transfer_start, s->stream);
    if (err != cudaSuccess)
        return cuda_fail("cudaEventRecord", err);
    s->timing = 1;
    return 0;
}

/* Move the transfer's stop event after the work just queued. */
static int transfer_end(GpuStream *s)
{
    cudaError_t err = cudaEventRecord(s->transfer_stop, s->stream);
    return err == cudaSuccess ? 0 : cuda_fail("cudaEventRecord", err);
}

int gpu_upload_async(GpuStream *s, void *dst_device, const void *src, size_t bytes)
{
    if (transfer_begin(s) < 0)
        return -1;
    cudaError_t err = cudaMemcpyAsync(dst_device, src, bytes, cudaMemcpyHostToDevice, s->stream);
    if (err != cudaSuccess)
        return cuda_fail("cudaMemcpyAsync (host to device)", err);
    return transfer_end(s);
}

/* One block per image: dst image i = images[indices[i]], 16 bytes per load when aligned. */
static __global__ void gather_kernel(uint8_t *dst, const uint8_t *images, size_t image_bytes,
                                     const int64_t *indices)
{
    const uint8_t *src = images + (size_t)indices[blockIdx.x] * image_bytes;
    uint8_t *out = dst + (size_t)blockIdx.x * image_bytes;
    if ((((uintptr_t)src | (uintptr_t)out | image_bytes) & 15) == 0) {
        const uint4 *src16 = (const uint4 *)src;
        uint4 *out16 = (uint4 *)out;
        for (size_t k = threadIdx.x; k < image_bytes / 16; k += blockDim.x)
            out16[k] = src16[k];
    } else {
        for (size_t k = threadIdx.x; k < image_bytes; k += blockDim.x)
            out[k] = src[k];
    }
}

int gpu_gather_async(GpuStream *s, uint8_t *dst_device, const uint8_t *images_device,
                     size_t image_bytes, const int64_t *indices_device, int n, int timed)
{
    if (n <= 0)
        return 0;
    if (timed && transfer_begin(s) < 0)
        return -1;
    GPU_LAUNCH(gather_kernel, n, s->stream, dst_device, images_device, image_bytes,
               indices_device);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return cuda_fail("the gather kernel's launch", err);
    return timed ? transfer_end(s) : 0;
}

/* Per-channel y = x * scale + shift, the factors transform_to_float() uses. */
typedef struct Normalise {
    float scale[IMGSET_MAX_CHANNELS], shift[IMGSET_MAX_CHANNELS];
} Normalise;

/* One thread per pixel (all its channels): dst (n, c, h, w) from src (n, h, w, c).
 * __fmul_rn/__fadd_rn keep the multiply and the add separately rounded (no fused
 * multiply-add), as the CPU computes them, so both give the same floats. */
static __global__ void normalise_kernel(float *dst, const uint8_t *src, size_t pixels,
                                        size_t plane, int c, Normalise f)
{
    for (size_t p = blockIdx.x * (size_t)blockDim.x + threadIdx.x; p < pixels;
         p += (size_t)gridDim.x * blockDim.x) {
        size_t image = p / plane, at = p % plane;
        float *out = dst + image * plane * c + at;
        for (int k = 0; k < c; k++)
            out[k * plane] = __fadd_rn(__fmul_rn((float)src[p * c + k], f.scale[k]), f.shift[k]);
    }
}

int gpu_normalise_async(GpuStream *s, float *dst_device, const uint8_t *src_device, int n,
                        int32_t h, int32_t w, int32_t c, const float *mean, const float *std)
{
    if (c < 1 || c > IMGSET_MAX_CHANNELS)
        return imgset_fail("gpu: %d channels is out of range 1..%d", c, IMGSET_MAX_CHANNELS);
    Normalise f;
    for (int k = 0; k < c; k++) {
        f.scale[k] = 1.0f / (255.0f * std[k]);
        f.shift[k] = -mean[k] / std[k];
    }
    size_t plane = (size_t)h * (size_t)w, pixels = plane * (size_t)n;
    if (pixels == 0)
        return 0;
    size_t blocks = (pixels + THREADS - 1) / THREADS;
    GPU_LAUNCH(normalise_kernel, blocks < MAX_BLOCKS ? (unsigned)blocks : MAX_BLOCKS,
               s->stream, dst_device, src_device, pixels, plane, c, f);
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? 0 : cuda_fail("the normalise kernel's launch", err);
}

GpuEvent *gpu_event_record(uintptr_t stream)
{
    cudaEvent_t e;
    cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
    if (err != cudaSuccess)
        return cuda_fail("cudaEventCreateWithFlags", err), (GpuEvent *)NULL;
    if ((err = cudaEventRecord(e, (cudaStream_t)stream)) != cudaSuccess) {
        cudaEventDestroy(e);
        return cuda_fail("cudaEventRecord on a consumer's stream", err), (GpuEvent *)NULL;
    }
    return (GpuEvent *)e;
}

int gpu_stream_wait_event(GpuStream *s, GpuEvent *e)
{
    cudaError_t err = cudaStreamWaitEvent(s->stream, (cudaEvent_t)e, 0);
    cudaEventDestroy((cudaEvent_t)e);
    return err == cudaSuccess ? 0 : cuda_fail("cudaStreamWaitEvent", err);
}

void gpu_event_destroy(GpuEvent *e)
{
    if (e)
        cudaEventDestroy((cudaEvent_t)e);
}

int gpu_sync_consumer_stream(uintptr_t stream)
{
    cudaError_t err = cudaStreamSynchronize((cudaStream_t)stream);
    return err == cudaSuccess ? 0 : cuda_fail("cudaStreamSynchronize (a consumer's)", err);
}

int gpu_stream_wait(GpuStream *s, double *transfer_seconds)
{
    if (transfer_seconds)
        *transfer_seconds = 0;
    cudaError_t err = cudaStreamSynchronize(s->stream);
    int timed = s->timing;
    s->timing = 0;
    if (err != cudaSuccess)
        return cuda_fail("a batch's copy or kernels", err);
    float ms = 0;
    if (timed && transfer_seconds) {
        if ((err = cudaEventElapsedTime(&ms, s->transfer_start, s->transfer_stop)) != cudaSuccess)
            return cuda_fail("cudaEventElapsedTime", err);
        *transfer_seconds = ms / 1e3;
    }
    return 0;
}
