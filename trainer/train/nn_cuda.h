/* nn_cuda.h — the nn core's layers on an NVIDIA GPU: the same functions as nn.h, on device
 * memory, queued on one stream (C++ header: included by the .cu files only). */
#ifndef IMGSET_NN_CUDA_H
#define IMGSET_NN_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Conventions are nn.h's: NCHW float32, forward functions overwrite their output, backward
 * functions ADD to every gradient (+=) and skip a NULL input gradient. Every pointer is device
 * memory. Each function queues its kernels (and cuBLAS calls) on `stream`, returns without
 * waiting, and returns 0, or -1 with imgset_fail() naming the CUDA or cuBLAS call that failed.
 * The cuBLAS handle must already be bound to `stream` (cublasSetStream).
 *
 * The arithmetic is float32 as on the CPU (cuBLAS in its default FP32 mode, not TF32), so
 * results agree with nn.h up to the order of summation.
 */
typedef struct NnCuda {
    cudaStream_t stream;
    cublasHandle_t blas;
} NnCuda;

/* Floats of workspace cuda_conv2d_forward / _backward need to run `chunk` images at once:
 * the unfolded input (C*KH*KW, chunk*OH*OW) and the output in channel-major order
 * (OC, chunk*OH*OW). */
size_t cuda_conv2d_workspace_floats(int C, int H, int W, int OC, int KH, int KW, int stride,
                                    int pad, int chunk);

/* Convolution by im2col + one cuBLAS GEMM per chunk of `chunk` images (the workspace's
 * size). out (N, OC, OH, OW); inp (N, C, H, W); weight (OC, C, KH, KW); bias (OC) or NULL. */
int cuda_conv2d_forward(const NnCuda *nn, float *out, const float *inp, const float *weight,
                        const float *bias, float *work, int chunk, int N, int C, int H, int W,
                        int OC, int KH, int KW, int stride, int pad);
/* dinp (N, C, H, W) or NULL; dweight (OC, C, KH, KW); dbias (OC) or NULL. */
int cuda_conv2d_backward(const NnCuda *nn, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, float *work,
                         int chunk, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad);

/* out (N, O) = inp (N, D) · weight (O, D)^T + bias (O); bias may be NULL. */
int cuda_linear_forward(const NnCuda *nn, float *out, const float *inp, const float *weight,
                        const float *bias, int N, int D, int O);
int cuda_linear_backward(const NnCuda *nn, float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight, int N, int D,
                         int O);

/* Max pooling without padding; ties go to the first maximum (row-major), as on the CPU. */
int cuda_maxpool2d_forward(const NnCuda *nn, float *out, const float *inp, int N, int C, int H,
                           int W, int kernel, int stride);
int cuda_maxpool2d_backward(const NnCuda *nn, float *dinp, const float *dout, const float *inp,
                            int N, int C, int H, int W, int kernel, int stride);

/* ReLU + 2x2 stride-2 max pooling, fused; argmax (N, C, H/2, W/2) bytes or NULL (nn.h). */
int cuda_relu_maxpool2x2_forward(const NnCuda *nn, float *out, uint8_t *argmax,
                                 const float *inp, int N, int C, int H, int W);
int cuda_relu_maxpool2x2_backward(const NnCuda *nn, float *dinp, const float *dout,
                                  const float *out, const uint8_t *argmax, int N, int C, int H,
                                  int W);

int cuda_avgpool2d_forward(const NnCuda *nn, float *out, const float *inp, int N, int C, int H,
                           int W, int kernel, int stride);
int cuda_avgpool2d_backward(const NnCuda *nn, float *dinp, const float *dout, int N, int C,
                            int H, int W, int kernel, int stride);

int cuda_global_avgpool_forward(const NnCuda *nn, float *out, const float *inp, int N, int C,
                                int HW);
int cuda_global_avgpool_backward(const NnCuda *nn, float *dinp, const float *dout, int N, int C,
                                 int HW);

/* Batch norm over (N, HW) per channel, every channel (nn.h's c_begin..c_end = 0..C). The
 * training forward's statistics are summed in double, like the CPU's. */
int cuda_batchnorm_forward_train(const NnCuda *nn, float *out, float *save_mean,
                                 float *save_invstd, float *running_mean, float *running_var,
                                 const float *inp, const float *gamma, const float *beta, int N,
                                 int C, int HW, float momentum, float eps);
int cuda_batchnorm_backward_train(const NnCuda *nn, float *dinp, float *dgamma, float *dbeta,
                                  const float *dout, const float *inp, const float *gamma,
                                  const float *save_mean, const float *save_invstd, int N, int C,
                                  int HW);
int cuda_batchnorm_forward_eval(const NnCuda *nn, float *out, const float *inp,
                                const float *gamma, const float *beta, const float *running_mean,
                                const float *running_var, int N, int C, int HW, float eps);

int cuda_relu_forward(const NnCuda *nn, float *out, const float *inp, size_t n);
int cuda_relu_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                       size_t n);
/* The other activations of nn.h: leaky ReLU's backward takes the forward's input, tanh's and
 * sigmoid's the forward's output. */
int cuda_leaky_relu_forward(const NnCuda *nn, float *out, const float *inp, size_t n,
                            float slope);
int cuda_leaky_relu_backward(const NnCuda *nn, float *dinp, const float *dout, const float *inp,
                             size_t n, float slope);
int cuda_tanh_forward(const NnCuda *nn, float *out, const float *inp, size_t n);
int cuda_tanh_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                       size_t n);
int cuda_sigmoid_forward(const NnCuda *nn, float *out, const float *inp, size_t n);
int cuda_sigmoid_backward(const NnCuda *nn, float *dinp, const float *dout, const float *out,
                          size_t n);
int cuda_add_forward(const NnCuda *nn, float *out, const float *a, const float *b, size_t n);
int cuda_add_backward(const NnCuda *nn, float *da, float *db, const float *dout, size_t n);
int cuda_concat_forward(const NnCuda *nn, float *out, const float *a, const float *b, int N,
                        int CA, int CB, int HW);
int cuda_concat_backward(const NnCuda *nn, float *da, float *db, const float *dout, int N,
                         int CA, int CB, int HW);

/* nn.h's classification loss `loss` of logits (N, K) against labels (N, device memory, in
 * range), one thread per row running nn.h's row functions: rows (N) receives each row's
 * summed loss (the caller adds them up and divides by nn_class_loss_count), probs (N, K)
 * the row's softmax or sigmoids, dlogits (N, K) is OVERWRITTEN with scale * the gradient. */
int cuda_class_loss(const NnCuda *nn, float *dlogits, double *rows, float *probs,
                    const float *logits, const int32_t *labels, int N, int K, int loss,
                    float scale);

/* optim.h's sgd_step on n device floats (torch.optim.SGD, dampening 0). */
int cuda_sgd_step(const NnCuda *nn, float *params, float *velocity, const float *grads,
                  size_t n, float lr, float momentum, float weight_decay, int nesterov);

#endif
