/* nn_conv.c — the GEMM layers of the nn core: conv2d (im2col + sgemm per image) and linear. */
#include "nn.h"

#include <string.h>

#ifdef IMGSET_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "nn_simd.h"

/* C (M, N) = alpha * op(A) (M, K) · op(B) (K, N) + beta * C, row-major, as cblas_sgemm. */
static void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0 || K <= 0)   /* never reached by valid layers; cblas would complain */
        return;
#ifdef IMGSET_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
#else
    /* Portable fallback for builds without OpenBLAS: correct, not fast. */
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++)
            c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            if (a == 0.0f)
                continue;
            if (trans_b)
                for (int j = 0; j < N; j++)
                    c[j] += a * B[(size_t)j * ldb + k];
            else {
                const float *b = B + (size_t)k * ldb;
                for (int j = 0; j < N; j++)
                    c[j] += a * b[j];
            }
        }
    }
#endif
}

int nn_out_size(int size, int kernel, int stride, int pad)
{
    int span = size + 2 * pad - kernel;
    if (span < 0 || stride <= 0)
        return 0;
    return span / stride + 1;
}

/* 1 when the unfolding goes through a zero-padded copy of the image (stride 1 with padding):
 * then every row of the unfolded matrix is one plain copy. */
static int conv_uses_padded_copy(int stride, int pad)
{
    return stride == 1 && pad > 0;
}

size_t conv2d_scratch_floats(int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    size_t oh = (size_t)nn_out_size(H, KH, stride, pad);
    size_t ow = (size_t)nn_out_size(W, KW, stride, pad);
    size_t floats = (size_t)C * KH * KW * oh * ow;
    if (conv_uses_padded_copy(stride, pad))   /* the padded input, or the padded gradient */
        floats += (size_t)(C > OC ? C : OC) * (H + 2 * pad) * (W + 2 * pad);
    if (KH == 3 && KW == 3 && stride == 1 && pad == 1)   /* the direct kernels' dy^T, dW^T */
        floats += (size_t)OC * oh * ow + (size_t)C * 9 * OC;
    return floats;
}

/* 1 when the convolution reads the input as it is (1x1, stride 1, no padding): no im2col. */
static int conv_is_pointwise(int KH, int KW, int stride, int pad)
{
    return KH == 1 && KW == 1 && stride == 1 && pad == 0;
}

/* dst[0..n) = src[0..n), in 16-float blocks the compiler turns into vector moves. */
static inline void copy_floats(float *restrict dst, const float *restrict src, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        memcpy(dst + i, src + i, 64);
    for (; i < n; i++)
        dst[i] = src[i];
}

/* dst[0..n) += src[0..n). */
static inline void add_floats(float *restrict dst, const float *restrict src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] += src[i];
}

/* padded (C, H + 2 pad, W + 2 pad) = inp (C, H, W) with a border of zeros. */
static void pad_image(float *restrict padded, const float *restrict inp, int C, int H, int W,
                      int pad)
{
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    for (int c = 0; c < C; c++) {
        float *plane = padded + (size_t)c * Hp * Wp;
        memset(plane, 0, sizeof(float) * (size_t)pad * Wp);
        memset(plane + (size_t)(pad + H) * Wp, 0, sizeof(float) * (size_t)pad * Wp);
        for (int h = 0; h < H; h++) {
            float *row = plane + (size_t)(pad + h) * Wp;
            for (int i = 0; i < pad; i++)
                row[i] = row[pad + W + i] = 0.0f;
            copy_floats(row + pad, inp + ((size_t)c * H + h) * W, W);
        }
    }
}

/*
 * Unfold one image: col (C*KH*KW, OH*OW), row (c, kh, kw) holds, for every output position,
 * the input pixel under kernel tap (kh, kw) of channel c, or 0 in the padding.
 * inp (C, H, W); padded: scratch for the zero-padded copy (stride 1 with padding).
 */
VECTOR_CLONES
static void im2col(float *restrict col, float *restrict padded, const float *restrict inp,
                   int C, int H, int W, int KH, int KW, int stride, int pad, int OH, int OW)
{
    if (conv_uses_padded_copy(stride, pad)) {
        int Hp = H + 2 * pad, Wp = W + 2 * pad;
        pad_image(padded, inp, C, H, W, pad);
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                    const float *src = padded + ((size_t)c * Hp + kh) * Wp + kw;
                    for (int oh = 0; oh < OH; oh++, row += OW, src += Wp)
                        copy_floats(row, src, OW);
                }
        return;
    }
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                const float *plane = inp + (size_t)c * H * W;
                float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                /* Output columns whose input column iw = ow*stride - pad + kw is inside. */
                int lo = 0, hi = OW;
                while (lo < OW && lo * stride - pad + kw < 0)
                    lo++;
                while (hi > lo && (hi - 1) * stride - pad + kw >= W)
                    hi--;
                for (int oh = 0; oh < OH; oh++, row += OW) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) {
                        for (int ow = 0; ow < OW; ow++)
                            row[ow] = 0.0f;
                        continue;
                    }
                    const float *src = plane + (size_t)ih * W - pad + kw;
                    for (int ow = 0; ow < lo; ow++)
                        row[ow] = 0.0f;
                    for (int ow = lo; ow < hi; ow++)
                        row[ow] = src[ow * stride];
                    for (int ow = hi; ow < OW; ow++)
                        row[ow] = 0.0f;
                }
            }
}

/* The adjoint of im2col: add every entry of col (C*KH*KW, OH*OW) back onto the input pixel it
 * came from in dinp (C, H, W); padded: scratch as for im2col. */
VECTOR_CLONES
static void col2im_add(float *restrict dinp, float *restrict padded, const float *restrict col,
                       int C, int H, int W, int KH, int KW, int stride, int pad, int OH, int OW)
{
    if (conv_uses_padded_copy(stride, pad)) {
        int Hp = H + 2 * pad, Wp = W + 2 * pad;
        memset(padded, 0, sizeof(float) * (size_t)C * Hp * Wp);
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    const float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                    float *dst = padded + ((size_t)c * Hp + kh) * Wp + kw;
                    for (int oh = 0; oh < OH; oh++, row += OW, dst += Wp)
                        add_floats(dst, row, OW);
                }
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                add_floats(dinp + ((size_t)c * H + h) * W,
                           padded + ((size_t)c * Hp + h + pad) * Wp + pad, W);
        return;
    }
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *plane = dinp + (size_t)c * H * W;
                const float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                int lo = 0, hi = OW;
                while (lo < OW && lo * stride - pad + kw < 0)
                    lo++;
                while (hi > lo && (hi - 1) * stride - pad + kw >= W)
                    hi--;
                for (int oh = 0; oh < OH; oh++, row += OW) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    float *dst = plane + (size_t)ih * W - pad + kw;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow * stride] += row[ow];
                }
            }
}


/* ---- Direct 3x3 convolution (stride 1, padding 1) with AVX-512 --------------------------
 * For the common 3x3 "same" convolution, a register-tiled kernel beats im2col + sgemm: a tile
 * of 8 output channels x 2 rows x 16 columns stays in 16 vector registers while the padded
 * input rows stream through. The input gradient is the same kernel over the padded output
 * gradient with the weights transposed and flipped (addressed through strides, not copied).
 * Every output sums (bias or the old value), then c, kh, kw in order: deterministic. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_DIRECT_CONV 1

/* Weight of (output channel o, input channel c, tap kh, kw) at
 * base + o*so + c*sc + kh*skh + kw*skw. */
typedef struct Taps {
    const float *base;
    ptrdiff_t so, sc, skh, skw;
} Taps;

/* One tile: output channels [o0, o0 + OB), rows [h0, h0 + R), columns [w0, w0 + 16) under
 * mask m. out (O, H, W); padded (C, H + 2, W + 2). init: 0 zero, 1 bias, 2 the old output. */
__attribute__((target("avx512f"), always_inline)) static inline void
direct_tile(float *out, const float *padded, Taps t, const float *bias, int init, int C, int H,
            int W, int o0, const int OB, int h0, const int R, int w0, __mmask16 m)
{
    size_t Wp = (size_t)W + 2, plane = ((size_t)H + 2) * Wp;
    __m512 acc[8][2];
    for (int o = 0; o < OB; o++)
        for (int r = 0; r < R; r++)
            acc[o][r] = init == 2 ? _mm512_maskz_loadu_ps(m, out + ((size_t)(o0 + o) * H + h0 + r) * W + w0)
                      : init == 1 ? _mm512_set1_ps(bias[o0 + o]) : _mm512_setzero_ps();
    for (int c = 0; c < C; c++) {
        const float *xp = padded + (size_t)c * plane + (size_t)h0 * Wp + w0;
        const float *wc = t.base + c * t.sc + o0 * t.so;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                __m512 x[2];
                for (int r = 0; r < R; r++)
                    x[r] = _mm512_maskz_loadu_ps(m, xp + (size_t)(r + kh) * Wp + kw);
                const float *wt = wc + kh * t.skh + kw * t.skw;
                for (int o = 0; o < OB; o++) {
                    __m512 w = _mm512_set1_ps(wt[o * t.so]);
                    for (int r = 0; r < R; r++)
                        acc[o][r] = _mm512_fmadd_ps(w, x[r], acc[o][r]);
                }
            }
    }
    for (int o = 0; o < OB; o++)
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(out + ((size_t)(o0 + o) * H + h0 + r) * W + w0, m, acc[o][r]);
}

/* out (O, H, W) from padded (C, H + 2, W + 2) and the taps; init as for direct_tile. */
__attribute__((target("avx512f"))) static void
conv3x3_direct(float *out, const float *padded, Taps t, const float *bias, int init, int C,
               int H, int W, int O)
{
    for (int w0 = 0; w0 < W; w0 += 16) {
        __mmask16 m = W - w0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (W - w0)) - 1);
        int o0 = 0;
        for (; o0 + 8 <= O; o0 += 8) {
            int h0 = 0;
            for (; h0 + 2 <= H; h0 += 2)
                direct_tile(out, padded, t, bias, init, C, H, W, o0, 8, h0, 2, w0, m);
            if (h0 < H)
                direct_tile(out, padded, t, bias, init, C, H, W, o0, 8, h0, 1, w0, m);
        }
        for (; o0 + 4 <= O; o0 += 4)
            for (int h0 = 0; h0 < H; h0 += 2)
                if (h0 + 2 <= H)
                    direct_tile(out, padded, t, bias, init, C, H, W, o0, 4, h0, 2, w0, m);
                else
                    direct_tile(out, padded, t, bias, init, C, H, W, o0, 4, h0, 1, w0, m);
        for (; o0 < O; o0++)
            for (int h0 = 0; h0 < H; h0 += 2)
                if (h0 + 2 <= H)
                    direct_tile(out, padded, t, bias, init, C, H, W, o0, 1, h0, 2, w0, m);
                else
                    direct_tile(out, padded, t, bias, init, C, H, W, o0, 1, h0, 1, w0, m);
    }
}

/* dwt (C, 3, 3, O) += sum over positions (h, w) of padded[c][h + kh][w + kw] * dyt[h][w][o]:
 * the weight gradient as outer products, vectorised over output channels (no horizontal
 * sums). A tile is one input channel x 9 taps x 32 output channels (18 registers); the
 * positions go in blocks of about 32 so that their dyt rows stay in the L1 cache while every
 * input channel passes over them. */
__attribute__((target("avx512f"))) static void
conv3x3_direct_dweight(float *dwt, const float *padded, const float *dyt, int C, int H, int W,
                       int O)
{
    size_t Wp = (size_t)W + 2, plane = ((size_t)H + 2) * Wp;
    int rows_per_block = W >= 32 ? 1 : 32 / W;
    for (int h0 = 0; h0 < H; h0 += rows_per_block) {
        int h1 = h0 + rows_per_block < H ? h0 + rows_per_block : H;
        for (int c = 0; c < C; c++)
            for (int o0 = 0; o0 < O; o0 += 32) {
                int left = O - o0;
                __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                __mmask16 m1 = left >= 32 ? (__mmask16)0xFFFF
                             : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : (__mmask16)0;
                float *d = dwt + (size_t)c * 9 * O + o0;
                __m512 acc[9][2];
                for (int k = 0; k < 9; k++) {
                    acc[k][0] = _mm512_maskz_loadu_ps(m0, d + (size_t)k * O);
                    acc[k][1] = _mm512_maskz_loadu_ps(m1, d + (size_t)k * O + 16);
                }
                const float *xc = padded + (size_t)c * plane;
                for (int h = h0; h < h1; h++)
                    for (int w = 0; w < W; w++) {
                        const float *g = dyt + ((size_t)h * W + w) * O + o0;
                        __m512 g0 = _mm512_maskz_loadu_ps(m0, g);
                        __m512 g1 = _mm512_maskz_loadu_ps(m1, g + 16);
                        const float *x = xc + (size_t)h * Wp + w;
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                __m512 v = _mm512_set1_ps(x[(size_t)kh * Wp + kw]);
                                acc[kh * 3 + kw][0] = _mm512_fmadd_ps(v, g0, acc[kh * 3 + kw][0]);
                                acc[kh * 3 + kw][1] = _mm512_fmadd_ps(v, g1, acc[kh * 3 + kw][1]);
                            }
                    }
                for (int k = 0; k < 9; k++) {
                    _mm512_mask_storeu_ps(d + (size_t)k * O, m0, acc[k][0]);
                    _mm512_mask_storeu_ps(d + (size_t)k * O + 16, m1, acc[k][1]);
                }
            }
    }
}

/* dst (cols, rows) = src (rows, cols)^T, in 16 x 16 blocks that stay in the L1 cache; the
 * reads run along src's rows (a column walk with a 4 KiB stride would alias in the cache). */
static void transpose(float *restrict dst, const float *restrict src, int rows, int cols)
{
    for (int r0 = 0; r0 < rows; r0 += 16)
        for (int c0 = 0; c0 < cols; c0 += 16) {
            int r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

/* dst (cols, rows) += src (rows, cols)^T, blocked as transpose(). */
static void transpose_add(float *restrict dst, const float *restrict src, int rows, int cols)
{
    for (int r0 = 0; r0 < rows; r0 += 16)
        for (int c0 = 0; c0 < cols; c0 += 16) {
            int r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    dst[(size_t)c * rows + r] += src[(size_t)r * cols + c];
        }
}

/* 1 when conv2d takes the direct path: 3x3, stride 1, padding 1, on a CPU with AVX-512. */
static int conv_is_direct(int KH, int KW, int stride, int pad)
{
    return KH == 3 && KW == 3 && stride == 1 && pad == 1 && __builtin_cpu_supports("avx512f");
}
#endif

void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                    float *col, int N, int C, int H, int W, int OC, int KH, int KW,
                    int stride, int pad)
{
    int OH = nn_out_size(H, KH, stride, pad), OW = nn_out_size(W, KW, stride, pad);
    int K = C * KH * KW, P = OH * OW;
    int pointwise = conv_is_pointwise(KH, KW, stride, pad);
#ifdef HAVE_DIRECT_CONV
    if (conv_is_direct(KH, KW, stride, pad)) {
        Taps taps = {weight, (ptrdiff_t)C * 9, 9, 3, 1};
        for (int n = 0; n < N; n++) {
            pad_image(col, inp + (size_t)n * C * H * W, C, H, W, 1);
            conv3x3_direct(out + (size_t)n * OC * P, col, taps, bias, bias ? 1 : 0, C, H, W, OC);
        }
        return;
    }
#endif
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C * H * W;   /* (C, H, W) */
        float *y = out + (size_t)n * OC * P;             /* (OC, OH*OW) */
        const float *cols = x;                           /* (K, OH*OW) */
        if (!pointwise) {
            im2col(col, col + (size_t)K * P, x, C, H, W, KH, KW, stride, pad, OH, OW);
            cols = col;
        }
        if (bias)
            for (int oc = 0; oc < OC; oc++) {
                float b = bias[oc];   /* a local: y may not alias it, so the fill vectorises */
                float *row = y + (size_t)oc * P;
                for (int p = 0; p < P; p++)
                    row[p] = b;
            }
        /* y (OC, P) = weight (OC, K) · cols (K, P) [+ y] */
        gemm(0, 0, OC, P, K, 1.0f, weight, K, cols, P, bias ? 1.0f : 0.0f, y, P);
    }
}

void conv2d_backward(float *dinp, float *dweight, float *dbias, float *col, const float *dout,
                     const float *inp, const float *weight, int N, int C, int H, int W,
                     int OC, int KH, int KW, int stride, int pad)
{
    int OH = nn_out_size(H, KH, stride, pad), OW = nn_out_size(W, KW, stride, pad);
    int K = C * KH * KW, P = OH * OW;
    int pointwise = conv_is_pointwise(KH, KW, stride, pad);
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int oc = 0; oc < OC; oc++)
                dbias[oc] += sum_floats(dout + ((size_t)n * OC + oc) * P, (size_t)P);
#ifdef HAVE_DIRECT_CONV
    if (conv_is_direct(KH, KW, stride, pad)) {
        /* scratch: the padded image (or gradient), dy^T (P, OC), dW^T (K, OC) */
        float *padded = col + (size_t)K * P;
        float *dyt = padded + (size_t)(C > OC ? C : OC) * (H + 2) * (W + 2);
        float *dwt = dyt + (size_t)OC * P;
        memset(dwt, 0, sizeof(float) * (size_t)K * OC);
        Taps flipped = {weight + 8, 9, (ptrdiff_t)C * 9, -3, -1};
        for (int n = 0; n < N; n++) {
            const float *dy = dout + (size_t)n * OC * P;    /* (OC, P) */
            transpose(dyt, dy, OC, P);
            pad_image(padded, inp + (size_t)n * C * H * W, C, H, W, 1);
            conv3x3_direct_dweight(dwt, padded, dyt, C, H, W, OC);
            if (dinp) {
                /* dx += dy (padded) correlated with the transposed, flipped kernel */
                pad_image(padded, dy, OC, OH, OW, 1);
                conv3x3_direct(dinp + (size_t)n * C * H * W, padded, flipped, NULL, 2, OC, H, W, C);
            }
        }
        transpose_add(dweight, dwt, K, OC);
        return;
    }
#endif
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C * H * W;     /* (C, H, W) */
        const float *dy = dout + (size_t)n * OC * P;       /* (OC, P) */
        const float *cols = x;
        if (!pointwise) {
            im2col(col, col + (size_t)K * P, x, C, H, W, KH, KW, stride, pad, OH, OW);
            cols = col;
        }
        /* dweight (OC, K) += dy (OC, P) · cols (K, P)^T */
        gemm(0, 1, OC, K, P, 1.0f, dy, P, cols, P, 1.0f, dweight, K);
        if (!dinp)
            continue;
        float *dx = dinp + (size_t)n * C * H * W;
        if (pointwise) {
            /* dx (C, P) += weight (OC, C)^T · dy (OC, P) */
            gemm(1, 0, K, P, OC, 1.0f, weight, K, dy, P, 1.0f, dx, P);
        } else {
            /* dcols (K, P) = weight (OC, K)^T · dy (OC, P), then fold back onto the image. */
            gemm(1, 0, K, P, OC, 1.0f, weight, K, dy, P, 0.0f, col, P);
            col2im_add(dx, col + (size_t)K * P, col, C, H, W, KH, KW, stride, pad, OH, OW);
        }
    }
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int D, int O)
{
    if (bias)
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * O, bias, sizeof(float) * O);
    /* out (N, O) = inp (N, D) · weight (O, D)^T [+ out] */
    gemm(0, 1, N, O, D, 1.0f, inp, D, weight, D, bias ? 1.0f : 0.0f, out, O);
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int D, int O)
{
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++)
                dbias[o] += dout[(size_t)n * O + o];
    /* dweight (O, D) += dout (N, O)^T · inp (N, D) */
    gemm(1, 0, O, D, N, 1.0f, dout, O, inp, D, 1.0f, dweight, D);
    /* dinp (N, D) += dout (N, O) · weight (O, D) */
    if (dinp)
        gemm(0, 0, N, D, O, 1.0f, dout, O, weight, D, 1.0f, dinp, D);
}
