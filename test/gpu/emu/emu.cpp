/* emu.cpp — the host emulation of the CUDA runtime and cuBLAS declared in cuda_runtime.h and
 * cublas_v2.h (test/gpu/emu): tracked "device" allocations, immediate copies and streams,
 * wall-clock events, and cublasSgemm through OpenBLAS. */
#include <cblas.h>
#include <mutex>
#include <time.h>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

thread_local EmuDim blockIdx, threadIdx, blockDim, gridDim;
thread_local int emu_last_error;

namespace {

struct Allocation {
    char *p;
    size_t n;
    bool owned;   /* from cudaMalloc; false: host memory registered with cudaHostRegister */
};

std::mutex allocations_lock;
std::vector<Allocation> allocations;

double now_ms()
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* A copy's pointers must be where its kind says. */
void check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    int dst_device = emu_is_device(dst, n), src_device = emu_is_device(src, n);
    int want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    int want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dst_device != want_dst || src_device != want_src) {
        fprintf(stderr, "emu: copy of %zu bytes, kind %d: destination %s, source %s\n", n, kind,
                dst_device ? "device" : "host", src_device ? "device" : "host");
        emu_fail("a copy's pointers do not match its kind, or run out of their allocation");
    }
}

}  // namespace

int emu_is_device(const void *p, size_t bytes)
{
    std::lock_guard<std::mutex> guard(allocations_lock);
    for (const Allocation &a : allocations)
        if ((const char *)p >= a.p && (const char *)p + bytes <= a.p + a.n)
            return 1;
    return 0;
}

void emu_fail(const char *what)
{
    fprintf(stderr, "emu: %s\n", what);
    abort();
}

cudaError_t cudaGetLastError(void)
{
    int err = emu_last_error;
    emu_last_error = cudaSuccess;
    return err;
}

const char *cudaGetErrorString(cudaError_t err)
{
    return err == cudaErrorNotSupported ? "not supported by the emulator" : "emulated error";
}

const char *cudaGetErrorName(cudaError_t err)
{
    return err == cudaErrorNotSupported ? "cudaErrorNotSupported" : "cudaErrorEmulated";
}

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    *device = 0;
    return cudaSuccess;
}

/* One emulated device, number 0. */
cudaError_t cudaSetDevice(int device)
{
    return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int)
{
    snprintf(p->name, sizeof p->name, "host emulation (test/gpu/emu)");
    p->totalGlobalMem = (size_t)1 << 34;
    p->major = 0;
    p->minor = 0;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned)
{
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    free(s);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    *e = (cudaEvent_t)calloc(1, sizeof(double));
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned)
{
    return cudaEventCreate(e);
}

/* Streams are immediate here: everything recorded has completed. */
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned)
{
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
    *(double *)e = now_ms();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t stop)
{
    *ms = (float)(*(double *)stop - *(double *)start);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    free(e);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = malloc(n ? n : 1);
    if (!*p)
        return cudaErrorInvalidValue;
    memset(*p, 0xff, n);   /* NaN floats: reads of memory nobody wrote show */
    std::lock_guard<std::mutex> guard(allocations_lock);
    allocations.push_back({(char *)*p, n, true});
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    {
        std::lock_guard<std::mutex> guard(allocations_lock);
        for (size_t i = 0; i < allocations.size(); i++)
            if (allocations[i].p == p && allocations[i].owned) {
                allocations.erase(allocations.begin() + (long)i);
                free(p);
                return cudaSuccess;
            }
    }
    emu_fail("cudaFree of memory cudaMalloc did not return");
}

/* Pinned host memory is plain host memory here. */
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned)
{
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}

/* Host memory registered for the device (gpummap's mapped files) becomes device memory at
 * the same address, as with the unified addressing of a real GPU; the emulator does not own
 * it. */
cudaError_t cudaHostRegister(void *p, size_t n, unsigned)
{
    if (!p || !n)
        return cudaErrorInvalidValue;
    std::lock_guard<std::mutex> guard(allocations_lock);
    allocations.push_back({(char *)p, n, false});
    return cudaSuccess;
}

cudaError_t cudaHostUnregister(void *p)
{
    std::lock_guard<std::mutex> guard(allocations_lock);
    for (size_t i = 0; i < allocations.size(); i++)
        if (allocations[i].p == p && !allocations[i].owned) {
            allocations.erase(allocations.begin() + (long)i);
            return cudaSuccess;
        }
    return cudaErrorInvalidValue;
}

cudaError_t cudaHostGetDevicePointer(void **device, void *p, unsigned)
{
    if (!emu_is_device(p, 1))
        return cudaErrorInvalidValue;
    *device = p;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    check_copy(dst, src, n, kind);
    memcpy(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t)
{
    return cudaMemcpy(dst, src, n, kind);
}

cudaError_t cudaMemset(void *p, int value, size_t n)
{
    if (!emu_is_device(p, n))
        emu_fail("cudaMemset outside device memory");
    memset(p, value, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t)
{
    return cudaMemset(p, value, n);
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (cublasHandle_t)malloc(1);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

const char *cublasGetStatusString(cublasStatus_t st)
{
    return st == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE (emulated)"
                                             : "CUBLAS_STATUS_SUCCESS";
}

/* Column-major C (m, n) = alpha op(A) op(B) + beta C, refusing what cuBLAS refuses (negative
 * sizes, leading dimensions below the rows) and matrices that are not device memory. */
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc)
{
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (rows_a > 1 ? rows_a : 1) ||
        ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    int cols_a = ta == CUBLAS_OP_N ? k : m, cols_b = tb == CUBLAS_OP_N ? n : k;
    if (k > 0 && (!emu_is_device(A, ((size_t)lda * (cols_a - 1) + rows_a) * sizeof(float)) ||
                  !emu_is_device(B, ((size_t)ldb * (cols_b - 1) + rows_b) * sizeof(float))))
        emu_fail("cublasSgemm: A or B is not (wholly) device memory");
    if (!emu_is_device(C, ((size_t)ldc * (n - 1) + m) * sizeof(float)))
        emu_fail("cublasSgemm: C is not (wholly) device memory");
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A, lda, B, ldb,
                *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
