/* emu.cpp — the host emulation of the CUDA runtime and cuBLAS declared in cuda_runtime.h and
 * cublas_v2.h (test/gpu/emu): blocks of threads with __syncthreads as a barrier (fibers),
 * tracked "device" allocations, immediate copies and streams, wall-clock events, and
 * cublasSgemm through OpenBLAS. */
#include <atomic>
#include <cblas.h>
#include <mutex>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

thread_local EmuDim blockIdx, threadIdx, blockDim, gridDim;
thread_local int emu_last_error;

namespace {

/* A fiber's saved machine context and the switch between two of them. On x86-64 a few
 * instructions (callee-saved registers and the FPU/SSE control words, as a function call
 * keeps them): blocks with barriers switch millions of times per test run, and swapcontext's
 * signal-mask system call made that ten times slower. Elsewhere, ucontext. */
#if defined(__x86_64__)
extern "C" void emu_context_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl emu_context_switch
    .type emu_context_switch, @function
emu_context_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_context_switch, .-emu_context_switch
    .section .note.GNU-stack, "", @progbits
    .text
)");

struct Context {
    void *sp;
};

void context_switch(Context *save, Context *load) { emu_context_switch(&save->sp, load->sp); }

/* A context that starts entry() on [stack, stack + size) at its first switch: the frame
 * emu_context_switch pops (control words, six registers), then entry as its return address. */
void context_make(Context *c, char *stack, size_t size, void (*entry)(void))
{
    void **sp = (void **)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
    *--sp = nullptr;              /* entry's own return address: it never returns */
    *--sp = (void *)entry;
    for (int i = 0; i < 6; i++)   /* rbp, rbx, r12-r15 */
        *--sp = nullptr;
    uint32_t mxcsr;
    uint16_t fpu;
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpu));
    *--sp = (void *)((uint64_t)fpu << 32 | mxcsr);
    c->sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};

void context_switch(Context *save, Context *load) { swapcontext(&save->uc, &load->uc); }

void context_make(Context *c, char *stack, size_t size, void (*entry)(void))
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

/* The threads of the block a host thread is running. A block starts with thread 0 alone on a
 * fiber (the probe). If it ends without reaching __syncthreads, the block has no barrier and
 * the other threads run as plain calls (a barrier one of them reaches then is an error: thread
 * 0 did not reach it). If thread 0 reaches a barrier, every thread gets a fiber and the block
 * runs in rounds: each round resumes every waiting thread until its next barrier or its end. */
enum class ThreadState { waiting, done };
enum class BlockMode { probe, plain, barriers };

constexpr size_t fiber_stack_bytes = 256 << 10;

struct Fiber {
    Context context;
    char *stack = nullptr;
    ThreadState state = ThreadState::waiting;
};

struct BlockRun {
    Context scheduler;
    std::vector<Fiber> fibers;   /* grown to the largest block; stacks kept for reuse */
    BlockMode mode = BlockMode::probe;
    unsigned block = 0, current = 0;
    void (*body)(void *) = nullptr;
    void *ctx = nullptr;
    ~BlockRun()
    {
        for (Fiber &f : fibers)
            if (f.stack)
                munmap(f.stack, fiber_stack_bytes);
    }
};

thread_local BlockRun run;
std::atomic<unsigned long> barrier_blocks{0};

/* A fiber's entry: the thread run.current runs the kernel to its end, then hands back to the
 * scheduler for good. */
void fiber_main(void)
{
    unsigned t = run.current;
    run.body(run.ctx);
    run.fibers[t].state = ThreadState::done;
    context_switch(&run.fibers[t].context, &run.scheduler);
    emu_fail("a finished block thread was resumed");
}

/* Continue thread t where it waits (or start it): back here at its next barrier or end. */
void resume(unsigned t)
{
    run.current = t;
    threadIdx.x = t;
    context_switch(&run.scheduler, &run.fibers[t].context);
}

/* Start thread t on a fiber: it runs until its first barrier or its end. */
void start_fiber(unsigned t)
{
    Fiber &f = run.fibers[t];
    if (!f.stack) {
        void *p = mmap(nullptr, fiber_stack_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (p == MAP_FAILED)
            emu_fail("cannot map a fiber stack");
        f.stack = (char *)p;
    }
    f.state = ThreadState::waiting;
    context_make(&f.context, f.stack, fiber_stack_bytes, fiber_main);
    resume(t);
}

}  // namespace

void emu_syncthreads(void)
{
    if (run.mode == BlockMode::plain) {
        fprintf(stderr, "emu: block %u: thread %u reached __syncthreads, thread 0 did not\n",
                run.block, threadIdx.x);
        emu_fail("a __syncthreads that not every thread of the block reaches");
    }
    run.mode = BlockMode::barriers;
    unsigned t = run.current;
    run.fibers[t].state = ThreadState::waiting;
    context_switch(&run.fibers[t].context, &run.scheduler);
}

void emu_run_block(unsigned block, unsigned threads, void (*body)(void *), void *ctx)
{
    if (run.fibers.size() < threads)
        run.fibers.resize(threads);
    run.block = block;
    run.body = body;
    run.ctx = ctx;
    run.mode = BlockMode::probe;
    start_fiber(0);
    if (run.mode == BlockMode::probe) {   /* thread 0 ended without a barrier */
        run.mode = BlockMode::plain;
        for (unsigned t = 1; t < threads; t++) {
            threadIdx.x = t;
            body(ctx);
        }
        return;
    }
    barrier_blocks++;
    for (unsigned t = 1; t < threads; t++)   /* the others up to their first barrier */
        start_fiber(t);
    for (;;) {
        unsigned done = 0;
        for (unsigned t = 0; t < threads; t++)
            done += run.fibers[t].state == ThreadState::done;
        if (done == threads)
            return;
        if (done) {
            fprintf(stderr, "emu: block %u: %u of %u threads ended while the others wait at "
                            "__syncthreads\n", block, done, threads);
            emu_fail("a __syncthreads that not every thread of the block reaches");
        }
        for (unsigned k = 0; k < threads; k++)   /* even blocks in thread order, odd reversed */
            resume(block % 2 ? threads - 1 - k : k);
    }
}

unsigned long emu_barrier_blocks(void) { return barrier_blocks; }

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
