/* gpu_launch.h — how the .cu files launch kernels and how many threads a block has, spelled
 * once, so that test/gpu/emu can compile the very same sources for the host and run every
 * kernel there (one thread per block) on machines without a GPU. */
#ifndef IMGSET_GPU_LAUNCH_H
#define IMGSET_GPU_LAUNCH_H

#ifdef IMGSET_CUDA_EMULATION
#define GPU_THREADS 1
#define GPU_LAUNCH(kernel, blocks, stream, ...) emu_launch((blocks), kernel, __VA_ARGS__)
#else
#define GPU_THREADS 256
#define GPU_LAUNCH(kernel, blocks, stream, ...) \
    kernel<<<(blocks), GPU_THREADS, 0, (stream)>>>(__VA_ARGS__)
#endif

#endif
