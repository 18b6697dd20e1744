/* nn_cuda.cu — the nn core's layers as CUDA kernels and cuBLAS GEMMs (see nn_cuda.h). */
#include <stdio.h>

extern "C" {
#include "error.h"
#include "nn.h"
}
#include "gpu_launch.h"
#include "nn_cuda.h"

#define THREADS GPU_THREADS
#define MAX_BLOCKS (65535u * 64u)   /* grid-stride loops take the rest */

/* A grid-stride loop over i in [0, n): kernels stay correct for any grid size. */
#define FOR_EACH(i, n)                                                                  \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n);     \
         i += (size_t)gridDim.x * blockDim.x)

static unsigned blocks_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    return b < 1 ? 1u : b > MAX_BLOCKS ? MAX_BLOCKS : (unsigned)b;
}

/* 0 when the last launch was accepted, else -1 naming the kernel. */
static int launched(const char *kernel)
{
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess)
        return 0;
    return imgset_fail("cuda: kernel %s failed to launch: %s (%s)", kernel,
                       cudaGetErrorString(err), cudaGetErrorName(err));
}

#define LAUNCH(kernel, n, nn, ...)                                                      \
    (GPU_LAUNCH(kernel, blocks_for(n), (nn)->stream, __VA_ARGS__), launched(#kernel))

/* C (M, N) = alpha op(A) (M, K) · op(B) (K, N) + beta C, all row-major as cblas_sgemm in
 * nn_conv.c. cuBLAS is column-major, where a row-major matrix is its transpose: so compute
 * C^T = op(B)^T op(A)^T, i.e. swap the operands. */
static int gemm(const NnCuda *nn, int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cublasStatus_t st = cublasSgemm(nn->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                                    ldb, A, lda, &beta, C, ldc);
    if (st == CUBLAS_STATUS_SUCCESS)
        return 0;
    return imgset_fail("cublas: sgemm %dx%dx%d failed: %s", M, N, K, cublasGetStatusString(st));
}

/* ==== Convolution ====================================================================== */

/* col (C*KH*KW, n*OH*OW): row (c, kh, kw), column (image, oh, ow) — every image's columns
 * side by side, so that one GEMM convolves the whole chunk. */
__global__ void im2col_kernel(float *col, const float *inp, int n, int C, int H, int W, int KH,
                              int KW, int stride, int pad, int OH, int OW)
{
    size_t ohw = (size_t)OH * OW, cols = (size_t)n * ohw;
    FOR_EACH(i, (size_t)C * KH * KW * cols) {
        size_t row = i / cols, j = i % cols;
        int kw = (int)(row % KW), kh = (int)(row / KW % KH), c = (int)(row / ((size_t)KW * KH));
        size_t img = j / ohw, p = j % ohw;
        int h = (int)(p / OW) * stride - pad + kh, w = (int)(p % OW) * stride - pad + kw;
        col[i] = h >= 0 && h < H && w >= 0 && w < W
                     ? inp[((img * C + c) * H + h) * W + w] : 0.0f;
    }
}

/* dinp += the columns folded back: each input element gathers the column entries it fed
 * (no atomics, so the sum is the same on every run). */
__global__ void col2im_add_kernel(float *dinp, const float *col, int n, int C, int H, int W,
                                  int KH, int KW, int stride, int pad, int OH, int OW)
{
    size_t ohw = (size_t)OH * OW, cols = (size_t)n * ohw;
    FOR_EACH(i, (size_t)n * C * H * W) {
        int w = (int)(i % W), h = (int)(i / W % H), c = (int)(i / ((size_t)W * H) % C);
        size_t img = i / ((size_t)W * H * C);
        float s = 0.0f;
        for (int kh = 0; kh < KH; kh++) {
            int y = h + pad - kh;
            if (y < 0 || y % stride || y / stride >= OH)
                continue;
            for (int kw = 0; kw < KW; kw++) {
                int x = w + pad - kw;
                if (x < 0 || x % stride || x / stride >= OW)
                    continue;
                size_t row = ((size_t)c * KH + kh) * KW + kw;
                s += col[row * cols + img * ohw + (size_t)(y / stride) * OW + x / stride];
            }
        }
        dinp[i] += s;
    }
}

/* out (n, OC, OHW) = tmp (OC, n*OHW) rearranged, plus bias (OC) when there is one. */
__global__ void cn_to_nc_kernel(float *out, const float *tmp, const float *bias, int n, int OC,
                                size_t ohw)
{
    FOR_EACH(i, (size_t)n * OC * ohw) {
        size_t p = i % ohw, img = i / (ohw * OC);
        int oc = (int)(i / ohw % OC);
        out[i] = tmp[(size_t)oc * n * ohw + img * ohw + p] + (bias ? bias[oc] : 0.0f);
    }
}

/* tmp (OC, n*OHW) = dout (n, OC, OHW) rearranged. */
__global__ void nc_to_cn_kernel(float *tmp, const float *dout, int n, int OC, size_t ohw)
{
    FOR_EACH(i, (size_t)n * OC * ohw) {
        size_t p = i % ohw, img = i / (ohw * OC);
        int oc = (int)(i / ohw % OC);
        tmp[(size_t)oc * n * ohw + img * ohw + p] = dout[i];
    }
}

/* sums[r] += the sum of row r of m (rows, cols): one block per row, a tree in shared memory. */
__global__ void row_sums_add_kernel(float *sums, const float *m, size_t cols)
{
    __shared__ float part[THREADS];
    const float *row = m + (size_t)blockIdx.x * cols;
    float s = 0.0f;
    for (size_t j = threadIdx.x; j < cols; j += THREADS)
        s += row[j];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        sums[blockIdx.x] += part[0];
}

size_t cuda_conv2d_workspace_floats(int C, int H, int W, int OC, int KH, int KW, int stride,
                                    int pad, int chunk)
{
    size_t oh = (size_t)nn_out_size(H, KH, stride, pad);
    size_t ow = (size_t)nn_out_size(W, KW, stride, pad);
    return ((size_t)C * KH * KW + (size_t)OC) * oh * ow * (size_t)chunk;
}

int cuda_conv2d_forward(const NnCuda *nn, float *out, const float *inp, const float *weight,
                        const float *bias, float *work, int chunk, int N, int C, int H, int W,
                        int OC, int KH, int KW, int stride, int pad)
{
    int OH = nn_out_size(H, KH, stride, pad), OW = nn_out_size(W, KW, stride, pad);
    int ckk = C * KH * KW;
    size_t ohw = (size_t)OH * OW;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int n = N - n0 < chunk ? N - n0 : chunk, cols = (int)(n * ohw);
        float *col = work, *tmp = work + (size_t)ckk * cols;
        const float *x = inp + (size_t)n0 * C * H * W;
        if (LAUNCH(im2col_kernel, (size_t)ckk * cols, nn, col, x, n, C, H, W, KH, KW, stride,
                   pad, OH, OW) < 0 ||
            gemm(nn, 0, 0, OC, cols, ckk, 1.0f, weight, ckk, col, cols, 0.0f, tmp, cols) < 0 ||
            LAUNCH(cn_to_nc_kernel, (size_t)OC * cols, nn, out + (size_t)n0 * OC * ohw, tmp,
                   bias, n, OC, ohw) < 0)
            return -1;
    }
    return 0;
}

int cuda_conv2d_backward(const NnCuda *nn, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, float *work,
                         int chunk, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad)
{
    int OH = nn_out_size(H, KH, stride, pad), OW = nn_out_size(W, KW, stride, pad);
    int ckk = C * KH * KW;
    size_t ohw = (size_t)OH * OW;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int n = N - n0 < chunk ? N - n0 : chunk, cols = (int)(n * ohw);
        float *col = work, *dtmp = work + (size_t)ckk * cols;
        const float *x = inp + (size_t)n0 * C * H * W;
        if (LAUNCH(nc_to_cn_kernel, (size_t)OC * cols, nn, dtmp, dout + (size_t)n0 * OC * ohw,
                   n, OC, ohw) < 0)
            return -1;
        if (dbias) {
            GPU_LAUNCH(row_sums_add_kernel, OC, nn->stream, dbias, dtmp, (size_t)cols);
            if (launched("row_sums_add_kernel") < 0)
                return -1;
        }
        /* dweight (OC, ckk) += dtmp (OC, cols) · col^T (cols, ckk) */
        if (LAUNCH(im2col_kernel, (size_t)ckk * cols, nn, col, x, n, C, H, W, KH, KW, stride,
                   pad, OH, OW) < 0 ||
            gemm(nn, 0, 1, OC, ckk, cols, 1.0f, dtmp, cols, col, cols, 1.0f, dweight, ckk) < 0)
            return -1;
        if (!dinp)
            continue;
        /* the columns' gradient (ckk, cols) = weight^T (ckk, OC) · dtmp (OC, cols), into col */
        if (gemm(nn, 1, 0, ckk, cols, OC, 1.0f, weight, ckk, dtmp, cols, 0.0f, col, cols) < 0 ||
            LAUNCH(col2im_add_kernel, (size_t)n * C * H * W, nn, dinp + (size_t)n0 * C * H * W,
                   col, n, C, H, W, KH, KW, stride, pad, OH, OW) < 0)
            return -1;
    }
    return 0;
}

/* ==== Linear ========================================================================== */

/* out (N, O) += bias (O) on every row. */
__global__ void add_bias_rows_kernel(float *out, const float *bias, size_t rows, int O)
{
    FOR_EACH(i, rows * O)
        out[i] += bias[i % O];
}

/* dbias (O) += the column sums of dout (N, O). */
__global__ void col_sums_add_kernel(float *dbias, const float *dout, int N, int O)
{
    FOR_EACH(o, (size_t)O) {
        float s = 0.0f;
        for (int n = 0; n < N; n++)
            s += dout[(size_t)n * O + o];
        dbias[o] += s;
    }
}

int cuda_linear_forward(const NnCuda *nn, float *out, const float *inp, const float *weight,
                        const float *bias, int N, int D, int O)
{
    if (gemm(nn, 0, 1, N, O, D, 1.0f, inp, D, weight, D, 0.0f, out, O) < 0)
        return -1;
    return bias ? LAUNCH(add_bias_rows_kernel, (size_t)N * O, nn, out, bias, (size_t)N, O) : 0;
}

int cuda_linear_backward(const NnCuda *nn, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, int N, int D,
                         int O)
{
    if (dbias && LAUNCH(col_sums_add_kernel, (size_t)O, nn, dbias, dout, N, O) < 0)
        return -1;
    if (gemm(nn, 1, 0, O, D, N, 1.0f, dout, O, inp, D, 1.0f, dweight, D) < 0)
        return -1;
    return dinp ? gemm(nn, 0, 0, N, D, O, 1.0f, dout, O, weight, D, 1.0f, dinp, D) : 0;
}

/* ==== Pooling ========================================================================= */

/* The offset in one (H, W) plane of the first maximum of output (oh, ow)'s window. */
__device__ size_t window_argmax(const float *x, int W, int oh, int ow, int kernel, int stride)
{
    size_t best = (size_t)oh * stride * W + (size_t)ow * stride;
    float m = x[best];
    for (int kh = 0; kh < kernel; kh++)
        for (int kw = 0; kw < kernel; kw++) {
            size_t at = (size_t)(oh * stride + kh) * W + ow * stride + kw;
            if (x[at] > m)
                m = x[at], best = at;
        }
    return best;
}

__global__ void maxpool_forward_kernel(float *out, const float *inp, size_t planes, int H, int W,
                                       int OH, int OW, int kernel, int stride)
{
    FOR_EACH(i, planes * OH * OW) {
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        const float *x = inp + plane * H * W;
        out[i] = x[window_argmax(x, W, oh, ow, kernel, stride)];
    }
}

__global__ void maxpool_backward_kernel(float *dinp, const float *dout, const float *inp,
                                        size_t planes, int H, int W, int OH, int OW, int kernel,
                                        int stride)
{
    FOR_EACH(i, planes * OH * OW) {
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        size_t at = window_argmax(inp + plane * H * W, W, oh, ow, kernel, stride);
        atomicAdd(dinp + plane * H * W + at, dout[i]);   /* windows may overlap */
    }
}

int cuda_maxpool2d_forward(const NnCuda *nn, float *out, const float *inp, int N, int C, int H,
                           int W, int kernel, int stride)
{
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    size_t planes = (size_t)N * C;
    return LAUNCH(maxpool_forward_kernel, planes * OH * OW, nn, out, inp, planes, H, W, OH, OW,
                  kernel, stride);
}

int cuda_maxpool2d_backward(const NnCuda *nn, float *dinp, const float *dout, const float *inp,
                            int N, int C, int H, int W, int kernel, int stride)
{
    if (!dinp)
        return 0;
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    size_t planes = (size_t)N * C;
    return LAUNCH(maxpool_backward_kernel, planes * OH * OW, nn, dinp, dout, inp, planes, H, W,
                  OH, OW, kernel, stride);
}

__global__ void relu_maxpool2x2_forward_kernel(float *out, uint8_t *argmax, const float *inp,
                                               size_t planes, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    FOR_EACH(i, planes * OH * OW) {
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        const float *r0 = inp + plane * H * W + (size_t)(2 * oh) * W + 2 * ow, *r1 = r0 + W;
        float a = r0[0], b = r0[1], c = r1[0], d = r1[1];
        float m = nn_max4(a, b, c, d);
        out[i] = m > 0.0f ? m : 0.0f;
        if (argmax)
            argmax[i] = (uint8_t)nn_first_max4(a, b, c, d);
    }
}

/* Each input element lies in at most one window, so plain += is race-free. */
__global__ void relu_maxpool2x2_backward_kernel(float *dinp, const float *dout, const float *out,
                                                const uint8_t *argmax, size_t planes, int H,
                                                int W)
{
    int OH = H / 2, OW = W / 2;
    FOR_EACH(i, planes * OH * OW) {
        if (!(out[i] > 0.0f))
            continue;
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW), k = argmax[i];
        dinp[plane * H * W + (size_t)(2 * oh + k / 2) * W + 2 * ow + k % 2] += dout[i];
    }
}

int cuda_relu_maxpool2x2_forward(const NnCuda *nn, float *out, uint8_t *argmax,
                                 const float *inp, int N, int C, int H, int W)
{
    size_t planes = (size_t)N * C;
    return LAUNCH(relu_maxpool2x2_forward_kernel, planes * (H / 2) * (W / 2), nn, out, argmax,
                  inp, planes, H, W);
}

int cuda_relu_maxpool2x2_backward(const NnCuda *nn, float *dinp, const float *dout,
                                  const float *out, const uint8_t *argmax, int N, int C, int H,
                                  int W)
{
    if (!dinp)
        return 0;
    size_t planes = (size_t)N * C;
    return LAUNCH(relu_maxpool2x2_backward_kernel, planes * (H / 2) * (W / 2), nn, dinp, dout,
                  out, argmax, planes, H, W);
}

__global__ void avgpool_forward_kernel(float *out, const float *inp, size_t planes, int H, int W,
                                       int OH, int OW, int kernel, int stride)
{
    float scale = 1.0f / (float)(kernel * kernel);
    FOR_EACH(i, planes * OH * OW) {
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        const float *x = inp + plane * H * W;
        float s = 0.0f;
        for (int kh = 0; kh < kernel; kh++)
            for (int kw = 0; kw < kernel; kw++)
                s += x[(size_t)(oh * stride + kh) * W + ow * stride + kw];
        out[i] = s * scale;
    }
}

__global__ void avgpool_backward_kernel(float *dinp, const float *dout, size_t planes, int H,
                                        int W, int OH, int OW, int kernel, int stride)
{
    float scale = 1.0f / (float)(kernel * kernel);
    FOR_EACH(i, planes * OH * OW) {
        size_t plane = i / ((size_t)OH * OW);
        int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        float g = dout[i] * scale;
        for (int kh = 0; kh < kernel; kh++)
            for (int kw = 0; kw < kernel; kw++)
                atomicAdd(dinp + plane * H * W + (size_t)(oh * stride + kh) * W + ow * stride + kw,
                          g);
    }
}

int cuda_avgpool2d_forward(const NnCuda *nn, float *out, const float *inp, int N, int C, int H,
                           int W, int kernel, int stride)
{
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    size_t planes = (size_t)N * C;
    return LAUNCH(avgpool_forward_kernel, planes * OH * OW, nn, out, inp, planes, H, W, OH, OW,
                  kernel, stride);
}

int cuda_avgpool2d_backward(const NnCuda *nn, float *dinp, const float *dout, int N, int C,
                            int H, int W, int kernel, int stride)
{
    if (!dinp)
        return 0;
    int OH = nn_out_size(H, kernel, stride, 0), OW = nn_out_size(W, kernel, stride, 0);
    size_t planes = (size_t)N * C;
    return LAUNCH(avgpool_backward_kernel, planes * OH * OW, nn, dinp, dout, planes, H, W, OH,
                  OW, kernel, stride);
}

__global__ void gap_forward_kernel(float *out, const float *inp, size_t planes, int HW)
{
    FOR_EACH(p, planes) {
        const float *x = inp + p * HW;
        float s = 0.0f;
        for (int i = 0; i < HW; i++)
            s += x[i];
        out[p] = s / (float)HW;
    }
}

__global__ void gap_backward_kernel(float *dinp, const float *dout, size_t planes, int HW)
{
    FOR_EACH(i, planes * HW)
        dinp[i] += dout[i / HW] / (float)HW;
}

int cuda_global_avgpool_forward(const NnCuda *nn, float *out, const float *inp, int N, int C,
                                int HW)
{
    return LAUNCH(gap_forward_kernel, (size_t)N * C, nn, out, inp, (size_t)N * C, HW);
}

int cuda_global_avgpool_backward(const NnCuda *nn, float *dinp, const float *dout, int N, int C,
                                 int HW)
{
    if (!dinp)
        return 0;
    return LAUNCH(gap_backward_kernel, (size_t)N * C * HW, nn, dinp, dout, (size_t)N * C, HW);
}

/* ==== Batch norm ====================================================================== */

/* The sum of every thread's v over the block (all threads get it). */
__device__ double block_sum(double v, double *part)
{
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    double total = part[0];
    __syncthreads();   /* part is reused by the next call */
    return total;
}

/* One block per channel c: two passes in double (mean, then variance), then normalise. */
__global__ void batchnorm_forward_train_kernel(float *out, float *save_mean, float *save_invstd,
                                               float *running_mean, float *running_var,
                                               const float *inp, const float *gamma,
                                               const float *beta, int N, int C, int HW,
                                               float momentum, float eps)
{
    __shared__ double part[THREADS];
    int c = blockIdx.x;
    size_t count = (size_t)N * HW;
    double sum = 0.0;
    for (size_t j = threadIdx.x; j < count; j += THREADS)
        sum += inp[((j / HW) * C + c) * HW + j % HW];
    double mean = block_sum(sum, part) / (double)count, sq = 0.0;
    for (size_t j = threadIdx.x; j < count; j += THREADS) {
        double d = inp[((j / HW) * C + c) * HW + j % HW] - mean;
        sq += d * d;
    }
    sq = block_sum(sq, part);
    double var = sq / (double)count;
    float invstd = (float)(1.0 / sqrt(var + eps));
    if (threadIdx.x == 0) {
        save_mean[c] = (float)mean;
        save_invstd[c] = invstd;
        double unbiased = count > 1 ? sq / (double)(count - 1) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
    float scale = gamma[c] * invstd, shift = beta[c] - (float)mean * scale;
    for (size_t j = threadIdx.x; j < count; j += THREADS) {
        size_t at = ((j / HW) * C + c) * HW + j % HW;
        out[at] = inp[at] * scale + shift;
    }
}

__global__ void batchnorm_backward_train_kernel(float *dinp, float *dgamma, float *dbeta,
                                                const float *dout, const float *inp,
                                                const float *gamma, const float *save_mean,
                                                const float *save_invstd, int N, int C, int HW)
{
    __shared__ double part[THREADS];
    int c = blockIdx.x;
    size_t count = (size_t)N * HW;
    float mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (size_t j = threadIdx.x; j < count; j += THREADS) {
        size_t at = ((j / HW) * C + c) * HW + j % HW;
        sum_dy += dout[at];
        sum_dy_xhat += dout[at] * ((inp[at] - mean) * invstd);
    }
    sum_dy = block_sum(sum_dy, part);
    sum_dy_xhat = block_sum(sum_dy_xhat, part);
    if (threadIdx.x == 0) {
        dgamma[c] += (float)sum_dy_xhat;
        dbeta[c] += (float)sum_dy;
    }
    if (!dinp)
        return;
    float k = gamma[c] * invstd;
    float mean_dy = (float)(sum_dy / (double)count);
    float mean_dy_xhat = (float)(sum_dy_xhat / (double)count);
    for (size_t j = threadIdx.x; j < count; j += THREADS) {
        size_t at = ((j / HW) * C + c) * HW + j % HW;
        float xhat = (inp[at] - mean) * invstd;
        dinp[at] += k * (dout[at] - mean_dy - xhat * mean_dy_xhat);
    }
}

__global__ void batchnorm_forward_eval_kernel(float *out, const float *inp, const float *gamma,
                                              const float *beta, const float *running_mean,
                                              const float *running_var, int N, int C, int HW,
                                              float eps)
{
    FOR_EACH(i, (size_t)N * C * HW) {
        int c = (int)(i / HW % C);
        float invstd = 1.0f / sqrtf(running_var[c] + eps);
        float scale = gamma[c] * invstd, shift = beta[c] - running_mean[c] * scale;
        out[i] = inp[i] * scale + shift;
    }
}

int cuda_batchnorm_forward_train(const NnCuda *nn, float *out, float *save_mean,
                                 float *save_invstd, float *running_mean, float *running_var,
                                 const float *inp, const float *gamma, const float *beta, int N,
                                 int C, int HW, float momentum, float eps)
{
    GPU_LAUNCH(batchnorm_forward_train_kernel, C, nn->stream, out, save_mean, save_invstd,
               running_mean, running_var, inp, gamma, beta, N, C, HW, momentum, eps);
    return launched("batchnorm_forward_train_kernel");
}

int cuda_batchnorm_backward_train(const NnCuda *nn, float *dinp, float *dgamma, float *dbeta,
                                  const float *dout, const float *inp, const float *gamma,
                                  const float *save_mean, const float *save_invstd, int N, int C,
                                  int HW)
{
    GPU_LAUNCH(batchnorm_backward_train_kernel, C, nn->stream, dinp, dgamma, dbeta, dout, inp,
               gamma, save_mean, save_invstd, N, C, HW);
    return launched("batchnorm_backward_train_kernel");
}

int cuda_batchnorm_forward_eval(const NnCuda *nn, float *out, const float *inp,
                                const float *gamma, const float *beta, const float *running_mean,
                                const float *running_var, int N, int C, int HW, float eps)
{
    return LAUNCH(batchnorm_forward_eval_kernel, (size_t)N * C * HW, nn, out, inp, gamma, beta,
                  running_mean, running_var, N, C, HW, eps);
}

/* ==== Element-wise ==================================================================== */

__global__ void relu_forward_kernel(float *out, const float *inp, size_t n)
{
    FOR_EACH(i, n) {
        float v = inp[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

__global__ void relu_backward_kernel(float *dinp, const float *dout, const float *out, size_t n)
{
    FOR_EACH(i, n)
        dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

__global__ void leaky_relu_forward_kernel(float *out, const float *inp, size_t n, float slope)
{
    FOR_EACH(i, n) {
        float v = inp[i];
        out[i] = v > 0.0f ? v : v * slope;
    }
}

__global__ void leaky_relu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                           size_t n, float slope)
{
    FOR_EACH(i, n)
        dinp[i] += inp[i] > 0.0f ? dout[i] : dout[i] * slope;
}

__global__ void tanh_forward_kernel(float *out, const float *inp, size_t n)
{
    FOR_EACH(i, n)
        out[i] = tanhf(inp[i]);
}

__global__ void tanh_backward_kernel(float *dinp, const float *dout, const float *out, size_t n)
{
    FOR_EACH(i, n)
        dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

__global__ void sigmoid_forward_kernel(float *out, const float *inp, size_t n)
{
    FOR_EACH(i, n)
        out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

__global__ void sigmoid_backward_kernel(float *dinp, const float *dout, const float *out,
                                        size_t n)
{
    FOR_EACH(i, n)
        dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

__global__ void add_forward_kernel(float *out, const float *a, const float *b, size_t n)
{
    FOR_EACH(i, n)
        out[i] = a[i] + b[i];
}

__global__ void add_backward_kernel(float *da, float *db, const float *dout, size_t n)
{
    FOR_EACH(i, n) {
        if (da)
            da[i] += dout[i];
        if (db)
            db[i] += dout[i];
    }
}

/* out (N, CA + CB, HW) = [a (N, CA, HW), b (N, CB, HW)]; backward = 1 runs it the other way,
 * adding out's gradient into a's and b's (either may be NULL). */
__global__ void concat_kernel(float *out, float *a, float *b, int N, int CA, int CB, int HW,
                              int backward)
{
    size_t per_a = (size_t)CA * HW, per_b = (size_t)CB * HW, per = per_a + per_b;
    FOR_EACH(i, (size_t)N * per) {
        size_t n = i / per, r = i % per;
        float *src = r < per_a ? (a ? a + n * per_a + r : NULL)
                               : (b ? b + n * per_b + (r - per_a) : NULL);
        if (!backward)
            out[i] = *src;
        else if (src)
            *src += out[i];
    }
}

int cuda_relu_forward(const NnCuda *nn, float *out, const float *inp, size_t n)
{
    return LAUNCH(relu_forward_kernel, n, nn, out, inp, n);
}

int cuda_relu_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                       size_t n)
{
    return dinp ? LAUNCH(relu_backward_kernel, n, nn, dinp, dout, out, n) : 0;
}

int cuda_leaky_relu_forward(const NnCuda *nn, float *out, const float *inp, size_t n,
                            float slope)
{
    return LAUNCH(leaky_relu_forward_kernel, n, nn, out, inp, n, slope);
}

int cuda_leaky_relu_backward(const NnCuda *nn, float *dinp, const float *dout, const float *inp,
                             size_t n, float slope)
{
    return dinp ? LAUNCH(leaky_relu_backward_kernel, n, nn, dinp, dout, inp, n, slope) : 0;
}

int cuda_tanh_forward(const NnCuda *nn, float *out, const float *inp, size_t n)
{
    return LAUNCH(tanh_forward_kernel, n, nn, out, inp, n);
}

int cuda_tanh_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                       size_t n)
{
    return dinp ? LAUNCH(tanh_backward_kernel, n, nn, dinp, dout, out, n) : 0;
}

int cuda_sigmoid_forward(const NnCuda *nn, float *out, const float *inp, size_t n)
{
    return LAUNCH(sigmoid_forward_kernel, n, nn, out, inp, n);
}

int cuda_sigmoid_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                          size_t n)
{
    return dinp ? LAUNCH(sigmoid_backward_kernel, n, nn, dinp, dout, out, n) : 0;
}

int cuda_add_forward(const NnCuda *nn, float *out, const float *a, const float *b, size_t n)
{
    return LAUNCH(add_forward_kernel, n, nn, out, a, b, n);
}

int cuda_add_backward(const NnCuda *nn, float *da, float *db, const float *dout, size_t n)
{
    return da || db ? LAUNCH(add_backward_kernel, n, nn, da, db, dout, n) : 0;
}

int cuda_concat_forward(const NnCuda *nn, float *out, const float *a, const float *b, int N,
                        int CA, int CB, int HW)
{
    return LAUNCH(concat_kernel, (size_t)N * (CA + CB) * HW, nn, out, (float *)a, (float *)b, N,
                  CA, CB, HW, 0);
}

int cuda_concat_backward(const NnCuda *nn, float *da, float *db, const float *dout, int N,
                         int CA, int CB, int HW)
{
    if (!da && !db)
        return 0;
    return LAUNCH(concat_kernel, (size_t)N * (CA + CB) * HW, nn, (float *)dout, da, db, N, CA,
                  CB, HW, 1);
}

/* ==== Loss ============================================================================ */

__global__ void class_loss_kernel(float *dlogits, double *rows, float *probs,
                                  const float *logits, const int32_t *labels, int N, int K,
                                  int loss, float scale)
{
    FOR_EACH(n, (size_t)N) {
        float *p = probs + n * K, *d = dlogits + n * K;
        rows[n] = nn_class_loss_row(loss, p, logits + n * K, labels[n], K);
        for (int k = 0; k < K; k++)
            d[k] = 0.0f;
        nn_class_loss_grad_row(loss, d, p, labels[n], K, scale);
    }
}

int cuda_class_loss(const NnCuda *nn, float *dlogits, double *rows, float *probs,
                    const float *logits, const int32_t *labels, int N, int K, int loss,
                    float scale)
{
    return LAUNCH(class_loss_kernel, (size_t)N, nn, dlogits, rows, probs, logits, labels, N, K,
                  loss, scale);
}

/* ==== SGD ============================================================================= */

__global__ void sgd_kernel(float *params, float *velocity, const float *grads, size_t n,
                           float lr, float mu, float wd, int nesterov)
{
    FOR_EACH(i, n) {
        float g = grads[i] + wd * params[i];
        if (mu != 0.0f) {
            velocity[i] = mu * velocity[i] + g;
            g = nesterov ? g + mu * velocity[i] : velocity[i];
        }
        params[i] -= lr * g;
    }
}

int cuda_sgd_step(const NnCuda *nn, float *params, float *velocity, const float *grads,
                  size_t n, float lr, float momentum, float weight_decay, int nesterov)
{
    return LAUNCH(sgd_kernel, n, nn, params, velocity, grads, n, lr, momentum, weight_decay,
                  nesterov);
}
