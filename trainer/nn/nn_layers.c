/* nn_layers.c — the nn core's non-GEMM layers: pooling, batch norm, add, concat, dropout,
 * activations and softmax. */
#include "nn.h"

#include <math.h>
#include <string.h>

#include "rng.h"

#include "nn_simd.h"


/* 2x2 stride-2 max pooling, the common case, without the general window loops. */
VECTOR_CLONES
static void maxpool2x2_forward(float *restrict out, const float *restrict inp, int planes,
                               int H, int W, int OH, int OW)
{
    for (int p = 0; p < planes; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *y = out + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + (size_t)(2 * oh) * W, *r1 = r0 + W;
            float *yr = y + (size_t)oh * OW;
            for (int ow = 0; ow < OW; ow++) {
                float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                yr[ow] = nn_max4(a, b, c, d);
            }
        }
    }
}

#if defined(__GNUC__) && !defined(__clang__)
/* The helpers below pass vectors by value; they are static and inlined, so the calling
 * convention GCC warns about never matters. */
#pragma GCC diagnostic ignored "-Wpsabi"
/* Eight lanes of GCC's portable vectors: AVX registers in the AVX2 / AVX-512 clones, pairs of
 * SSE registers in the default one. Used where the auto-vectoriser gives up (2x2 windows). */
typedef float Float8 __attribute__((vector_size(32)));
typedef int32_t Int8 __attribute__((vector_size(32)));
typedef uint8_t Byte8 __attribute__((vector_size(8)));
#define HAVE_FLOAT8 1

static const Int8 even_lanes = {0, 2, 4, 6, 8, 10, 12, 14}, odd_lanes = {1, 3, 5, 7, 9, 11, 13, 15};
static const Int8 low_pairs = {0, 8, 1, 9, 2, 10, 3, 11}, high_pairs = {4, 12, 5, 13, 6, 14, 7, 15};

/* The 8 windows at columns [2*ow, 2*ow + 16) of rows r0, r1: a b on top, c d below. */
static inline void windows8(const float *r0, const float *r1, Float8 *a, Float8 *b, Float8 *c,
                            Float8 *d)
{
    Float8 x0, x1, y0, y1;
    memcpy(&x0, r0, 32), memcpy(&x1, r0 + 8, 32), memcpy(&y0, r1, 32), memcpy(&y1, r1 + 8, 32);
    *a = __builtin_shuffle(x0, x1, even_lanes), *b = __builtin_shuffle(x0, x1, odd_lanes);
    *c = __builtin_shuffle(y0, y1, even_lanes), *d = __builtin_shuffle(y0, y1, odd_lanes);
}

static inline Float8 select8(Int8 mask, Float8 yes, Float8 no)
{
    Int8 y, n;
    memcpy(&y, &yes, 32), memcpy(&n, &no, 32);
    Int8 r = (mask & y) | (~mask & n);
    Float8 f;
    memcpy(&f, &r, 32);
    return f;
}

/* nn_first_max4 (nn.h) for 8 windows at once, a code 0..3 (a, b, c, d): a wins ties against
 * b, c, d; b against c, d; c against d. Comparisons give -1 / 0 lanes. */
static inline Int8 first_max8(Float8 a, Float8 b, Float8 c, Float8 d)
{
    Int8 ga = (a >= b) & (a >= c) & (a >= d), gb = (b >= c) & (b >= d), gc = c >= d;
    Int8 k = 3 + gc;                      /* 2 when c >= d, else 3 */
    k = (gb & 1) | (~gb & k);
    return ~ga & k;
}

/* Add g to the window position selected by k, for 8 windows of rows d0, d1. */
static inline void add_at8(float *d0, float *d1, Int8 k, Float8 g)
{
    const Float8 zero = {0};
    Float8 ga = select8(k == 0, g, zero), gb = select8(k == 1, g, zero);
    Float8 gc = select8(k == 2, g, zero), gd = select8(k == 3, g, zero);
    Float8 z0, z1;
    memcpy(&z0, d0, 32), memcpy(&z1, d0 + 8, 32);
    z0 += __builtin_shuffle(ga, gb, low_pairs), z1 += __builtin_shuffle(ga, gb, high_pairs);
    memcpy(d0, &z0, 32), memcpy(d0 + 8, &z1, 32);
    memcpy(&z0, d1, 32), memcpy(&z1, d1 + 8, 32);
    z0 += __builtin_shuffle(gc, gd, low_pairs), z1 += __builtin_shuffle(gc, gd, high_pairs);
    memcpy(d1, &z0, 32), memcpy(d1 + 8, &z1, 32);
}
#endif

/* Add g at window position k of rows d0, d1 (scalar form of add_at8). */
static inline void add_at(float *d0, float *d1, int k, float g)
{
    d0[0] += k == 0 ? g : 0.0f;
    d0[1] += k == 1 ? g : 0.0f;
    d1[0] += k == 2 ? g : 0.0f;
    d1[1] += k == 3 ? g : 0.0f;
}

/* Backward of maxpool2x2_forward: each window's gradient goes to its first maximum. */
VECTOR_CLONES
static void maxpool2x2_backward(float *restrict dinp, const float *restrict dout,
                                const float *restrict inp, int planes, int H, int W, int OH,
                                int OW)
{
    for (int p = 0; p < planes; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *dx = dinp + (size_t)p * H * W;
        const float *dy = dout + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + (size_t)(2 * oh) * W, *r1 = r0 + W;
            float *d0 = dx + (size_t)(2 * oh) * W, *d1 = d0 + W;
            const float *g = dy + (size_t)oh * OW;
            int ow = 0;
#ifdef HAVE_FLOAT8
            for (; ow + 8 <= OW; ow += 8) {
                Float8 a, b, c, d, gr;
                windows8(r0 + 2 * ow, r1 + 2 * ow, &a, &b, &c, &d);
                memcpy(&gr, g + ow, 32);
                add_at8(d0 + 2 * ow, d1 + 2 * ow, first_max8(a, b, c, d), gr);
            }
#endif
            for (; ow < OW; ow++)
                add_at(d0 + 2 * ow, d1 + 2 * ow,
                       nn_first_max4(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]),
                       g[ow]);
        }
    }
}

void maxpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int kernel,
                       int stride)
{
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    if (kernel == 2 && stride == 2) {
        maxpool2x2_forward(out, inp, N * C, H, W, OH, OW);
        return;
    }
    for (int p = 0; p < N * C; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *y = out + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float m = -INFINITY;
                int first = 1;
                for (int kh = 0; kh < kernel; kh++)
                    for (int kw = 0; kw < kernel; kw++) {
                        float v = x[(size_t)(oh * stride + kh) * W + ow * stride + kw];
                        if (first || v > m)
                            m = v;
                        first = 0;
                    }
                y[(size_t)oh * OW + ow] = m;
            }
    }
}

void maxpool2d_backward(float *dinp, const float *dout, const float *inp, int N, int C, int H,
                        int W, int kernel, int stride)
{
    if (!dinp)
        return;
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    if (kernel == 2 && stride == 2) {
        maxpool2x2_backward(dinp, dout, inp, N * C, H, W, OH, OW);
        return;
    }
    for (int p = 0; p < N * C; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *dx = dinp + (size_t)p * H * W;
        const float *dy = dout + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                /* recompute the forward's argmax: the first maximum in row-major order */
                size_t best = (size_t)(oh * stride) * W + ow * stride;
                float m = x[best];
                for (int kh = 0; kh < kernel; kh++)
                    for (int kw = 0; kw < kernel; kw++) {
                        size_t i = (size_t)(oh * stride + kh) * W + ow * stride + kw;
                        if (x[i] > m) {
                            m = x[i];
                            best = i;
                        }
                    }
                dx[best] += dy[(size_t)oh * OW + ow];
            }
    }
}

VECTOR_CLONES
void relu_maxpool2x2_forward(float *restrict out, uint8_t *restrict argmax,
                             const float *restrict inp, int N, int C, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    for (int p = 0; p < N * C; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *y = out + (size_t)p * OH * OW;
        uint8_t *k = argmax ? argmax + (size_t)p * OH * OW : NULL;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + (size_t)(2 * oh) * W, *r1 = r0 + W;
            float *yr = y + (size_t)oh * OW;
            uint8_t *kr = k ? k + (size_t)oh * OW : NULL;
            int ow = 0;
#ifdef HAVE_FLOAT8
            const Float8 zero = {0};
            for (; ow + 8 <= OW; ow += 8) {
                Float8 a, b, c, d;
                windows8(r0 + 2 * ow, r1 + 2 * ow, &a, &b, &c, &d);
                Float8 m = a;
                m = select8(b > m, b, m);
                m = select8(c > m, c, m);
                m = select8(d > m, d, m);
                m = select8(m > zero, m, zero);
                memcpy(yr + ow, &m, 32);
                if (kr) {
                    Byte8 kb = __builtin_convertvector(first_max8(a, b, c, d), Byte8);
                    memcpy(kr + ow, &kb, 8);
                }
            }
#endif
            for (; ow < OW; ow++) {
                float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                float m = nn_max4(a, b, c, d);
                yr[ow] = m > 0.0f ? m : 0.0f;
                if (kr)
                    kr[ow] = (uint8_t)nn_first_max4(a, b, c, d);
            }
        }
    }
}

VECTOR_CLONES
void relu_maxpool2x2_backward(float *restrict dinp, const float *restrict dout,
                              const float *restrict out, const uint8_t *restrict argmax, int N,
                              int C, int H, int W)
{
    if (!dinp)
        return;
    int OH = H / 2, OW = W / 2;
    for (int p = 0; p < N * C; p++) {
        float *dx = dinp + (size_t)p * H * W;
        const float *dy = dout + (size_t)p * OH * OW, *y = out + (size_t)p * OH * OW;
        const uint8_t *k = argmax + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            float *d0 = dx + (size_t)(2 * oh) * W, *d1 = d0 + W;
            const float *g = dy + (size_t)oh * OW, *yr = y + (size_t)oh * OW;
            const uint8_t *kr = k + (size_t)oh * OW;
            int ow = 0;
#ifdef HAVE_FLOAT8
            const Float8 zero = {0};
            for (; ow + 8 <= OW; ow += 8) {
                Float8 gr, v;
                Byte8 kb;
                memcpy(&gr, g + ow, 32), memcpy(&v, yr + ow, 32), memcpy(&kb, kr + ow, 8);
                add_at8(d0 + 2 * ow, d1 + 2 * ow, __builtin_convertvector(kb, Int8),
                        select8(v > zero, gr, zero));   /* the ReLU passes where out > 0 */
            }
#endif
            for (; ow < OW; ow++)
                add_at(d0 + 2 * ow, d1 + 2 * ow, kr[ow], yr[ow] > 0.0f ? g[ow] : 0.0f);
        }
    }
}

void avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int kernel,
                       int stride)
{
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    float scale = 1.0f / (float)(kernel * kernel);
    for (int p = 0; p < N * C; p++) {
        const float *x = inp + (size_t)p * H * W;
        float *y = out + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float s = 0.0f;
                for (int kh = 0; kh < kernel; kh++)
                    for (int kw = 0; kw < kernel; kw++)
                        s += x[(size_t)(oh * stride + kh) * W + ow * stride + kw];
                y[(size_t)oh * OW + ow] = s * scale;
            }
    }
}

void avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int kernel,
                        int stride)
{
    if (!dinp)
        return;
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    float scale = 1.0f / (float)(kernel * kernel);
    for (int p = 0; p < N * C; p++) {
        float *dx = dinp + (size_t)p * H * W;
        const float *dy = dout + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float g = dy[(size_t)oh * OW + ow] * scale;
                for (int kh = 0; kh < kernel; kh++)
                    for (int kw = 0; kw < kernel; kw++)
                        dx[(size_t)(oh * stride + kh) * W + ow * stride + kw] += g;
            }
    }
}

void global_avgpool_forward(float *out, const float *inp, int N, int C, int HW)
{
    for (int p = 0; p < N * C; p++) {
        out[p] = sum_floats(inp + (size_t)p * HW, (size_t)HW) / (float)HW;
    }
}

void global_avgpool_backward(float *dinp, const float *dout, int N, int C, int HW)
{
    if (!dinp)
        return;
    for (int p = 0; p < N * C; p++) {
        float g = dout[p] / (float)HW;
        float *dx = dinp + (size_t)p * HW;
        for (int i = 0; i < HW; i++)
            dx[i] += g;
    }
}

void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
                             float *running_mean, float *running_var, const float *inp,
                             const float *gamma, const float *beta, int N, int C, int HW,
                             int c_begin, int c_end, float momentum, float eps)
{
    double count = (double)N * HW;
    for (int c = c_begin; c < c_end; c++) {
        /* two passes in double: the mean, then the variance around it */
        double sum = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                sum += x[i];
        }
        double mean = sum / count, sq = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                double d = x[i] - mean;
                sq += d * d;
            }
        }
        double var = sq / count;
        float invstd = (float)(1.0 / sqrt(var + eps));
        save_mean[c] = (float)mean;
        save_invstd[c] = invstd;
        double unbiased = count > 1 ? sq / (count - 1) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        float scale = gamma[c] * invstd, shift = beta[c] - (float)mean * scale;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * HW;
            float *y = out + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                y[i] = x[i] * scale + shift;
        }
    }
}

void batchnorm_backward_train(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *gamma, const float *save_mean,
                              const float *save_invstd, int N, int C, int HW, int c_begin,
                              int c_end)
{
    double count = (double)N * HW;
    for (int c = c_begin; c < c_end; c++) {
        float mean = save_mean[c], invstd = save_invstd[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * HW;
            const float *dy = dout + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                sum_dy += dy[i];
                sum_dy_xhat += dy[i] * ((x[i] - mean) * invstd);
            }
        }
        dgamma[c] += (float)sum_dy_xhat;
        dbeta[c] += (float)sum_dy;
        if (!dinp)
            continue;
        /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
        float k = gamma[c] * invstd;
        float mean_dy = (float)(sum_dy / count), mean_dy_xhat = (float)(sum_dy_xhat / count);
        for (int n = 0; n < N; n++) {
            const float *x = inp + ((size_t)n * C + c) * HW;
            const float *dy = dout + ((size_t)n * C + c) * HW;
            float *dx = dinp + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                float xhat = (x[i] - mean) * invstd;
                dx[i] += k * (dy[i] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float invstd = 1.0f / sqrtf(running_var[c] + eps);
            float scale = gamma[c] * invstd, shift = beta[c] - running_mean[c] * scale;
            const float *x = inp + ((size_t)n * C + c) * HW;
            float *y = out + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                y[i] = x[i] * scale + shift;
        }
}

void batchnorm_backward_eval(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *gamma, const float *running_mean,
                             const float *running_var, int N, int C, int HW, float eps)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float invstd = 1.0f / sqrtf(running_var[c] + eps);
            const float *x = inp + ((size_t)n * C + c) * HW;
            const float *dy = dout + ((size_t)n * C + c) * HW;
            float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
            for (int i = 0; i < HW; i++) {
                sum_dy += dy[i];
                sum_dy_xhat += dy[i] * (x[i] - running_mean[c]) * invstd;
            }
            dgamma[c] += sum_dy_xhat;
            dbeta[c] += sum_dy;
            if (dinp) {
                float *dx = dinp + ((size_t)n * C + c) * HW;
                float k = gamma[c] * invstd;
                for (int i = 0; i < HW; i++)
                    dx[i] += k * dy[i];
            }
        }
}

VECTOR_CLONES
void add_forward(float *restrict out, const float *restrict a, const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

VECTOR_CLONES
void add_backward(float *restrict da, float *restrict db, const float *restrict dout, size_t n)
{
    if (da)
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i];
    if (db)
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i];
}

void concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW)
{
    size_t na = (size_t)CA * HW, nb = (size_t)CB * HW;
    for (int n = 0; n < N; n++) {
        memcpy(out + n * (na + nb), a + n * na, sizeof(float) * na);
        memcpy(out + n * (na + nb) + na, b + n * nb, sizeof(float) * nb);
    }
}

void concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW)
{
    size_t na = (size_t)CA * HW, nb = (size_t)CB * HW;
    for (int n = 0; n < N; n++) {
        const float *g = dout + n * (na + nb);
        if (da)
            for (size_t i = 0; i < na; i++)
                da[n * na + i] += g[i];
        if (db)
            for (size_t i = 0; i < nb; i++)
                db[n * nb + i] += g[na + i];
    }
}

void dropout_forward(float *out, float *mask, const float *inp, int N, int D, float p,
                     uint64_t seed, uint64_t first_index)
{
    float keep_scale = 1.0f / (1.0f - p);
    for (int n = 0; n < N; n++) {
        Rng rng = rng_make(seed, first_index + (uint64_t)n);
        for (int i = 0; i < D; i++) {
            size_t k = (size_t)n * D + i;
            mask[k] = rng_uniform(&rng) < p ? 0.0f : keep_scale;
            out[k] = inp[k] * mask[k];
        }
    }
}

void dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
    if (dinp)
        for (size_t i = 0; i < n; i++)
            dinp[i] += dout[i] * mask[i];
}

VECTOR_CLONES
void relu_forward(float *restrict out, const float *restrict inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = inp[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

VECTOR_CLONES
void relu_backward(float *restrict dinp, const float *restrict dout, const float *restrict out,
                   size_t n)
{
    if (dinp)
        for (size_t i = 0; i < n; i++) {
            float d = dout[i];   /* loaded unconditionally, so the loop vectorises */
            dinp[i] += out[i] > 0.0f ? d : 0.0f;
        }
}

VECTOR_CLONES
void leaky_relu_forward(float *restrict out, const float *restrict inp, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++) {
        float v = inp[i];
        out[i] = v > 0.0f ? v : v * slope;
    }
}

VECTOR_CLONES
void leaky_relu_backward(float *restrict dinp, const float *restrict dout,
                         const float *restrict inp, size_t n, float slope)
{
    if (dinp)
        for (size_t i = 0; i < n; i++) {
            float d = dout[i];
            dinp[i] += inp[i] > 0.0f ? d : d * slope;
        }
}

/*
 * exp(x) for the activations' loops, in straight-line float arithmetic so that GCC
 * vectorises them (a call to expf would not be): x = n ln 2 + r with n = round(x / ln 2)
 * (the 1.5 * 2^23 trick rounds to nearest), ln 2 in two parts (Cephes's C1 + C2), e^r by
 * Cephes's degree-6 polynomial, times 2^n built in the exponent bits. Within 2 ulp of expf;
 * x is clamped to [-87.3, 88.3], where 2^n stays a normal float.
 */
static inline float vector_expf(float x)
{
    const float round = 12582912.0f;   /* 1.5 * 2^23 */
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    float t = x * 1.44269504088896341f + round;
    float n = t - round;
    int32_t tb, rb;
    memcpy(&tb, &t, 4), memcpy(&rb, &round, 4);
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t scale_bits = (tb - rb + 127) << 23;   /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &scale_bits, 4);
    return y * scale;
}

/* 1 / (1 + e^-x). */
static inline float vector_sigmoid(float x)
{
    return 1.0f / (1.0f + vector_expf(-x));
}

/* tanh(x): Cephes's odd polynomial for |x| < 0.625, else 1 - 2 / (e^2|x| + 1) with x's sign
 * (both computed, one chosen, so that the loop vectorises). */
static inline float vector_tanh(float x)
{
    float a = x < 0.0f ? -x : x, z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float large = 1.0f - 2.0f / (vector_expf(2.0f * a) + 1.0f);
    large = x < 0.0f ? -large : large;
    return a < 0.625f ? small : large;
}

VECTOR_CLONES
void sigmoid_forward(float *restrict out, const float *restrict inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = vector_sigmoid(inp[i]);
}

VECTOR_CLONES
void sigmoid_backward(float *restrict dinp, const float *restrict dout,
                      const float *restrict out, size_t n)
{
    if (dinp)
        for (size_t i = 0; i < n; i++)
            dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

VECTOR_CLONES
void tanh_forward(float *restrict out, const float *restrict inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = vector_tanh(inp[i]);
}

VECTOR_CLONES
void tanh_backward(float *restrict dinp, const float *restrict dout, const float *restrict out,
                   size_t n)
{
    if (dinp)
        for (size_t i = 0; i < n; i++)
            dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

void softmax_forward(float *out, const float *inp, int N, int K)
{
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * K;
        float *y = out + (size_t)n * K;
        float m = x[0];
        for (int k = 1; k < K; k++)
            m = x[k] > m ? x[k] : m;
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            y[k] = expf(x[k] - m);   /* shifted by the maximum: no overflow */
            sum += y[k];
        }
        float inv = (float)(1.0 / sum);
        for (int k = 0; k < K; k++)
            y[k] *= inv;
    }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int N, int K)
{
    if (!dinp)
        return;
    for (int n = 0; n < N; n++) {
        const float *y = out + (size_t)n * K, *dy = dout + (size_t)n * K;
        float dot = 0.0f;
        for (int k = 0; k < K; k++)
            dot += dy[k] * y[k];
        for (int k = 0; k < K; k++)
            dinp[(size_t)n * K + k] += y[k] * (dy[k] - dot);
    }
}
