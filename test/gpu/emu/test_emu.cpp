/* test_emu.cpp — the host emulation of CUDA (test/gpu/emu) checked on kernels written for it:
 * blocks run with GPU_THREADS threads, a shared-memory tree reduction runs every round of its
 * tree, and the bugs the emulation exists to catch in nn_cuda.cu — a dropped __syncthreads,
 * an off-by-one in a reduction bound, a barrier only some threads reach — give a wrong
 * result or stop the program. Prints TAP. */
#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cuda_runtime.h"
#include "gpu_launch.h"
#include "tap.h"

enum { BLOCKS = 5 };

/* How a reduction kernel is (mis)written. */
enum Variant { CORRECT, NO_BARRIER_IN_TREE, NO_BARRIER_BEFORE_TREE, BOUND_OFF_BY_ONE };

/* sums[b] = the sum of block b's values, the way row_sums_add_kernel reduces. */
__global__ void reduce_kernel(float *sums, const float *values, int variant)
{
    __shared__ float part[GPU_THREADS + 1];
    part[threadIdx.x] = values[blockIdx.x * GPU_THREADS + threadIdx.x];
    if (threadIdx.x == 0)
        part[GPU_THREADS] = 1000.0f;   /* what an off-by-one bound reads */
    if (variant != NO_BARRIER_BEFORE_TREE)
        __syncthreads();
    for (unsigned half = GPU_THREADS / 2; half > 0; half /= 2) {
        if (variant == BOUND_OFF_BY_ONE ? threadIdx.x <= half : threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        if (variant != NO_BARRIER_IN_TREE)
            __syncthreads();
    }
    if (threadIdx.x == 0)
        sums[blockIdx.x] = part[0];
}

/* seen[b * blockDim + t] counts thread t of block b. */
__global__ void count_threads_kernel(int *seen)
{
    seen[blockIdx.x * blockDim.x + threadIdx.x] += 1;
}

/* Only the first half of the block reaches the barrier. */
__global__ void divergent_barrier_kernel(float *out)
{
    if (threadIdx.x < GPU_THREADS / 2)
        __syncthreads();
    out[threadIdx.x] = 1.0f;
}

static float *device_floats(size_t n)
{
    void *p = nullptr;
    cudaMalloc(&p, n * sizeof(float));
    return (float *)p;
}

/* Run reduce_kernel in `variant` on BLOCKS blocks of distinct values; 1 when every block's
 * sum is exact (the values are small integers, so float sums are exact in any order). */
static int reduction_exact(int variant)
{
    float *values = device_floats(BLOCKS * GPU_THREADS), *sums = device_floats(BLOCKS);
    for (int i = 0; i < BLOCKS * GPU_THREADS; i++)
        values[i] = (float)(i % 97);
    GPU_LAUNCH(reduce_kernel, BLOCKS, nullptr, sums, (const float *)values, variant);
    int exact = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < BLOCKS; b++) {
        double want = 0;
        for (int t = 0; t < GPU_THREADS; t++)
            want += values[b * GPU_THREADS + t];
        exact &= sums[b] == (float)want;
    }
    cudaFree(values);
    cudaFree(sums);
    return exact;
}

static void test_threads(void)
{
    void *p = nullptr;
    cudaMalloc(&p, BLOCKS * GPU_THREADS * sizeof(int));
    int *seen = (int *)p;
    for (int i = 0; i < BLOCKS * GPU_THREADS; i++)
        seen[i] = 0;
    GPU_LAUNCH(count_threads_kernel, BLOCKS, nullptr, seen);
    int once = blockDim.x == GPU_THREADS && gridDim.x == BLOCKS;
    for (int i = 0; i < BLOCKS * GPU_THREADS; i++)
        once &= seen[i] == 1;
    ok(once, "emu: a launch of %d blocks runs each with %d threads, every thread once", BLOCKS,
       GPU_THREADS);
    emu_launch(1, 2048, count_threads_kernel, seen);
    ok(cudaGetLastError() == cudaErrorInvalidConfiguration,
       "emu: a block of 2048 threads is refused, as on a GPU (at most 1024)");
    cudaFree(seen);
}

static void test_reductions(void)
{
    unsigned long before = emu_barrier_blocks();
    ok(reduction_exact(CORRECT) && emu_barrier_blocks() - before == BLOCKS,
       "emu: a shared-memory tree reduction over %d threads is exact, its %d blocks run with "
       "barriers", GPU_THREADS, BLOCKS);
    ok(!reduction_exact(NO_BARRIER_IN_TREE),
       "emu: a __syncthreads dropped from the tree's loop gives wrong sums");
    ok(!reduction_exact(NO_BARRIER_BEFORE_TREE),
       "emu: a __syncthreads dropped before the tree gives wrong sums");
    ok(!reduction_exact(BOUND_OFF_BY_ONE), "emu: a tree bound of <= for < gives wrong sums");
}

/* A barrier that half of the block never reaches stops the program, saying so. */
static void test_divergent_barrier(void)
{
    int pipe_fd[2];
    if (pipe(pipe_fd) != 0) {
        ok(0, "emu: pipe");
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        dup2(pipe_fd[1], 2);
        float *out = device_floats(GPU_THREADS);
        GPU_LAUNCH(divergent_barrier_kernel, 2, nullptr, out);
        _exit(0);
    }
    close(pipe_fd[1]);
    char message[512] = "";
    ssize_t got = read(pipe_fd[0], message, sizeof message - 1);
    message[got > 0 ? got : 0] = '\0';
    close(pipe_fd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    ok(WIFSIGNALED(status) && strstr(message, "__syncthreads"),
       "emu: a __syncthreads only half the block reaches stops the program (%s)",
       strtok(message, "\n") ? message : "no message");
}

int main(void)
{
    test_threads();
    test_reductions();
    test_divergent_barrier();
    return tap_done();
}
