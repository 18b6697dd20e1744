/* nn_simd.h — private to the nn core's .c files: how their loops are compiled, and the one
 * reduction they share. Include it first thing after the system headers. */
#ifndef IMGSET_NN_SIMD_H
#define IMGSET_NN_SIMD_H

#include <stddef.h>

/* The element-wise and unfolding loops need GCC's -O3 vectoriser (the build uses -O2), and the
 * hottest get AVX2 / AVX-512 clones picked at load time; results are the same in every clone
 * and in every build (no reassociation; multiply-adds never contracted, even where the build's
 * flags would allow it, e.g. the extension's), so trainer and extension agree bit for bit.
 * Short row copies stay inline loops rather than memcpy / memset calls. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-tree-loop-distribute-patterns", "fp-contract=off")
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_THREAD__)   /* TSan cannot run ifunc resolvers at load time */
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Sum of x[0..n-1] in 16 interleaved partial sums (vectorisable, the same order every time). */
static inline float sum_floats(const float *x, size_t n)
{
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; i < n; i++)
        s += x[i];
    return s;
}

#endif
