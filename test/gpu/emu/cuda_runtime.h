/* cuda_runtime.h (test/gpu/emu) — a host emulation of the part of the CUDA runtime the .cu
 * files use, so that their kernels run on machines without a GPU: "device" memory is host
 * memory that the emulator tracks, every kernel runs serially, one thread per block
 * (gpu_launch.h sets GPU_THREADS to 1), streams and events are immediate. It checks what the
 * real runtime would not show on the host: every pointer a kernel gets and every copy's
 * direction must match the tracked allocations, and fresh device memory is filled with NaN
 * bytes so that reads of unwritten memory show; host memory registered for the device is
 * device memory at the same address. What it cannot check: races between threads of a block,
 * launch limits, timing. Used by test_gpu_emu and test_gpu_train_emu (see the Makefile). */
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
#define __shared__ static   /* one thread per block, blocks one after another */
static inline void __syncthreads(void) {}
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

/* kernel<<<blocks, 1>>>(args...): every block in turn. */
template <class F, class... A> static void emu_launch(size_t blocks, F kernel, A... args)
{
    if (blocks == 0 || blocks > 2147483647u) {
        emu_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    int checks[] = {0, (emu_check_arg(args), 0)...};
    (void)checks;
    gridDim.x = (unsigned)blocks;
    blockDim.x = 1;
    threadIdx.x = 0;
    for (size_t b = 0; b < blocks; b++) {
        blockIdx.x = (unsigned)b;
        kernel(args...);
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
