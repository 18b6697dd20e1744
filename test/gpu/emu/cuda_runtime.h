/* cuda_runtime.h (test/gpu/emu) — a host emulation of the part of the CUDA runtime the .cu
 * files use, so that their kernels run on machines without a GPU: "device" memory is host
 * memory that the emulator tracks; a launch runs its blocks one after another, each with its
 * threads (GPU_THREADS, 256, as on the device): a block whose threads never call
 * __syncthreads runs them one by one; in a block that does, every thread is a fiber and
 * __syncthreads a barrier — each waits until all of the block's threads have reached it, so
 * the shared-memory reductions run every round of their trees. Between barriers the threads
 * run in turn, in thread order in even blocks and in reverse in odd ones, so that a missing
 * barrier shows as a wrong result whichever way the race goes; a barrier that only some
 * threads reach stops the program. Streams and events are immediate. It checks what the real
 * runtime would not show on the host: every pointer a kernel gets and every copy's direction
 * must match the tracked allocations, and fresh device memory is filled with NaN bytes so
 * that reads of unwritten memory show; host memory registered for the device is device memory
 * at the same address. What it cannot check: warp-level behaviour, true parallel timing,
 * launch limits beyond the block size, speed. Used by test_gpu_emu, test_gpu_train_emu,
 * imgset_emu and test_emu (see the Makefile). */
#ifndef IMGSET_EMU_CUDA_RUNTIME_H
#define IMGSET_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorNotSupported = 801,
};
typedef struct EmuStream *cudaStream_t;
typedef struct EmuEvent *cudaEvent_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice,
};
#define cudaStreamNonBlocking 1
#define cudaEventDisableTiming 2
#define cudaHostAllocDefault 0
#define cudaHostRegisterMapped 2
#define cudaHostRegisterReadOnly 8

struct EmuDim {
    unsigned x, y, z;
};
extern thread_local EmuDim blockIdx, threadIdx, blockDim, gridDim;
struct uint4 {
    unsigned x, y, z, w;
};
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
};

#define __global__
#define __device__
/* One block runs at a time on a host thread, its threads (fibers) on that host thread: a
 * static thread_local is shared by exactly the block's threads. */
#define __shared__ static thread_local

/* The barrier of a block's threads (see above). */
void emu_syncthreads(void);
static inline void __syncthreads(void) { emu_syncthreads(); }
static inline float atomicAdd(float *p, float v)
{
    float old = *p;
    *p += v;
    return old;
}
static inline float __fmul_rn(float a, float b)
{
    volatile float r = a * b;
    return r;
}
static inline float __fadd_rn(float a, float b)
{
    volatile float r = a + b;
    return r;
}

/* 1 when [p, p + bytes) lies inside one live device allocation. */
int emu_is_device(const void *p, size_t bytes);
/* Report a misuse the real runtime would turn into a crash or garbage, and abort. */
void emu_fail(const char *what) __attribute__((noreturn));
extern thread_local int emu_last_error;

template <class T> static void emu_check_arg(T *p)
{
    if (p && !emu_is_device(p, 1))
        emu_fail("a kernel got a pointer that is not device memory");
}
template <class T> static void emu_check_arg(const T &) {}

/* Run block `block` of the current launch: body(ctx) once per thread, threadIdx.x set. */
void emu_run_block(unsigned block, unsigned threads, void (*body)(void *), void *ctx);

/* Blocks that have run with barriers (their threads as fibers) since the program started. */
unsigned long emu_barrier_blocks(void);

/* kernel<<<blocks, threads>>>(args...): every block in turn, each with its threads. */
template <class F, class... A>
static void emu_launch(size_t blocks, unsigned threads, F kernel, A... args)
{
    if (blocks == 0 || blocks > 2147483647u || threads == 0 || threads > 1024) {
        emu_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    int checks[] = {0, (emu_check_arg(args), 0)...};
    (void)checks;
    gridDim.x = (unsigned)blocks;
    blockDim.x = threads;
    auto thread_body = [&]() { kernel(args...); };
    using Body = decltype(thread_body);
    for (size_t b = 0; b < blocks; b++) {
        blockIdx.x = (unsigned)b;
        emu_run_block((unsigned)b, threads, [](void *p) { (*static_cast<Body *>(p))(); },
                      &thread_body);
    }
}

cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t);
const char *cudaGetErrorName(cudaError_t);
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaRuntimeGetVersion(int *);
cudaError_t cudaDriverGetVersion(int *);
cudaError_t cudaGetDevice(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *, int);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaEventCreate(cudaEvent_t *);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *, unsigned);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaEventElapsedTime(float *, cudaEvent_t, cudaEvent_t);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaHostAlloc(void **, size_t, unsigned);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaHostRegister(void *, size_t, unsigned);
cudaError_t cudaHostUnregister(void *);
cudaError_t cudaHostGetDevicePointer(void **, void *, unsigned);
cudaError_t cudaMemcpy(void *, const void *, size_t, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemset(void *, int, size_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);

#endif
