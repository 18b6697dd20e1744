/* gpu_launch.h — how the .cu files launch kernels and how many threads a block has, spelled
 * once, so that test/gpu/emu can compile the very same sources for the host and run every
 * kernel there, with the same grid and the same 256 threads per block (threads that reach
 * __syncthreads wait for the block's others, as on a GPU), on machines without a GPU. */
#ifndef IMGSET_GPU_LAUNCH_H
#define IMGSET_GPU_LAUNCH_H

#define GPU_THREADS 256

#ifdef IMGSET_CUDA_EMULATION
#define GPU_LAUNCH(kernel, blocks, stream, ...) \
    emu_launch((blocks), GPU_THREADS, kernel, __VA_ARGS__)
#else
#define GPU_LAUNCH(kernel, blocks, stream, ...) \
    kernel<<<(blocks), GPU_THREADS, 0, (stream)>>>(__VA_ARGS__)
#endif

#endif
