/* nn.h — the nn core: layers, activations and losses as pure functions on caller-owned buffers. */
#ifndef IMGSET_NN_H
#define IMGSET_NN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every layer is a pair of free functions (llm.c's train_gpt2.c style):
 *   X_forward(out, inputs..., params..., dims...)
 *   X_backward(dinputs..., dparams..., dout, saved forward tensors..., dims...)
 * Outputs come first. Forward functions overwrite `out`; backward functions ACCUMULATE into
 * every gradient they get (+=), so the caller zeroes gradients once and may sum the
 * contributions of several consumers of a tensor. A NULL input-gradient pointer means "not
 * needed" (e.g. the network's input) and is skipped, which also saves the work.
 *
 * Layout is NCHW float32: N images, C channels, H rows, W columns, W fastest. A 2-D tensor
 * (N, D) is the same memory seen as N rows of D = C*H*W features ("flatten" is free).
 *
 * Nothing here allocates, prints, exits, starts threads or keeps state between calls: the
 * PostgreSQL extension links this very code for in-database inference. Matrix products go
 * through cblas_sgemm (OpenBLAS, whose thread count the caller sets); scratch memory is
 * passed in. Inputs are assumed valid (labels in range, sizes positive): callers check.
 */

/* Output side of a convolution or pooling window: floor((size + 2*pad - kernel) / stride) + 1,
 * or 0 when the window does not fit. */
int nn_out_size(int size, int kernel, int stride, int pad);

/* Floats of scratch conv2d_forward / conv2d_backward need (one image): the unfolded matrix,
 * C*KH*KW x OH*OW, plus, when the stride is 1 and there is padding, a zero-padded copy of the
 * image or of the output gradient, max(C, OC) x (H+2pad) x (W+2pad). */
size_t conv2d_scratch_floats(int C, int H, int W, int OC, int KH, int KW, int stride, int pad);

/* 2-D convolution, cross-correlation as in PyTorch: per image, im2col + GEMM, or for 3x3
 * stride-1 padding-1 convolutions on AVX-512 CPUs a direct register-tiled kernel.
 * out (N, OC, OH, OW); inp (N, C, H, W); weight (OC, C, KH, KW); bias (OC) or NULL;
 * col: conv2d_scratch_floats() floats of scratch. */
void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                    float *col, int N, int C, int H, int W, int OC, int KH, int KW,
                    int stride, int pad);

/* dinp (N, C, H, W) or NULL; dweight (OC, C, KH, KW); dbias (OC) or NULL; dout (N, OC, OH, OW);
 * inp and weight as in the forward; col: scratch as in the forward. */
void conv2d_backward(float *dinp, float *dweight, float *dbias, float *col, const float *dout,
                     const float *inp, const float *weight, int N, int C, int H, int W,
                     int OC, int KH, int KW, int stride, int pad);

/* Max pooling without padding; out (N, C, OH, OW), inp (N, C, H, W). Ties go to the first
 * (top-left) maximum, as PyTorch's CPU kernel does; the backward recomputes the argmax from
 * inp. Unlike PyTorch, a NaN is passed on only when it is a window's first element. */
void maxpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int kernel,
                       int stride);
void maxpool2d_backward(float *dinp, const float *dout, const float *inp, int N, int C, int H,
                        int W, int kernel, int stride);

/* ReLU followed by 2x2 stride-2 max pooling, fused (max-pooling commutes with ReLU):
 * out (N, C, H/2, W/2) = max(0, window maximum of inp (N, C, H, W)). argmax (N, C, H/2, W/2),
 * or NULL when no backward follows, receives each window's first maximum (0..3, row-major).
 * The backward adds dout to the argmax position where out > 0 (the ReLU's gradient), so the
 * pre-pool tensors need not be kept. Odd last rows / columns are dropped (floor). */
void relu_maxpool2x2_forward(float *out, uint8_t *argmax, const float *inp, int N, int C, int H,
                             int W);

/* One 2x2 window (a b / c d): its maximum, and the index 0..3 of its first maximum in
 * row-major order — the tie rule the CPU and the GPU (nn_cuda.cu) both follow. */
#ifdef __CUDACC__
#define NN_HOST_DEVICE __host__ __device__
#else
#define NN_HOST_DEVICE
#endif
static inline NN_HOST_DEVICE float nn_max4(float a, float b, float c, float d)
{
    float m = a;
    m = b > m ? b : m;
    m = c > m ? c : m;
    return d > m ? d : m;
}

static inline NN_HOST_DEVICE int nn_first_max4(float a, float b, float c, float d)
{
    int ga = (a >= b) & (a >= c) & (a >= d), gb = (b >= c) & (b >= d), gc = c >= d;
    return (1 - ga) * (1 + (1 - gb) * (2 - gc));
}
void relu_maxpool2x2_backward(float *dinp, const float *dout, const float *out,
                              const uint8_t *argmax, int N, int C, int H, int W);

/* Average pooling without padding; out (N, C, OH, OW), inp (N, C, H, W). */
void avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int kernel,
                       int stride);
void avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int kernel,
                        int stride);

/* Global average pooling: out (N, C) = mean over the HW positions of inp (N, C, HW). */
void global_avgpool_forward(float *out, const float *inp, int N, int C, int HW);
void global_avgpool_backward(float *dinp, const float *dout, int N, int C, int HW);

/* Fully connected: out (N, O) = inp (N, D) · weight (O, D)^T + bias (O); bias may be NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                    int D, int O);
/* dinp (N, D) or NULL; dweight (O, D); dbias (O) or NULL; dout (N, O). */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int D, int O);

/*
 * Batch normalisation over (N, HW) per channel, as torch.nn.BatchNorm2d (BatchNorm1d with
 * HW = 1). Training mode normalises with the batch mean and biased variance, saves the mean
 * and 1/sqrt(var + eps) for the backward, and updates the running statistics:
 * running = (1 - momentum) * running + momentum * batch (the variance unbiased, N*HW/(N*HW-1)).
 * Only channels [c_begin, c_end) are processed, so callers can split channels over threads.
 * out, inp (N, C, HW); save_mean, save_invstd, running_mean, running_var, gamma, beta (C).
 */
void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
                             float *running_mean, float *running_var, const float *inp,
                             const float *gamma, const float *beta, int N, int C, int HW,
                             int c_begin, int c_end, float momentum, float eps);
/* dinp (N, C, HW) or NULL; dgamma, dbeta (C); the rest as saved by the training forward. */
void batchnorm_backward_train(float *dinp, float *dgamma, float *dbeta, const float *dout,
                              const float *inp, const float *gamma, const float *save_mean,
                              const float *save_invstd, int N, int C, int HW, int c_begin,
                              int c_end);
/* Evaluation mode: normalise with the running statistics (per image; no state changes). */
void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int N, int C,
                            int HW, float eps);
void batchnorm_backward_eval(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *inp, const float *gamma, const float *running_mean,
                             const float *running_var, int N, int C, int HW, float eps);

/* Residual add: out (n) = a + b. Outputs must not alias inputs here and in the element-wise
 * activations below. */
void add_forward(float *out, const float *a, const float *b, size_t n);
/* da, db (n) or NULL each: += dout. */
void add_backward(float *da, float *db, const float *dout, size_t n);

/* Channel concatenation: out (N, CA + CB, HW) = [a (N, CA, HW), b (N, CB, HW)]. */
void concat_forward(float *out, const float *a, const float *b, int N, int CA, int CB, int HW);
void concat_backward(float *da, float *db, const float *dout, int N, int CA, int CB, int HW);

/*
 * Inverted dropout: each element is kept with probability 1 - p and scaled by 1 / (1 - p).
 * Image n of the batch draws from rng_make(seed, first_index + n), so the mask depends on
 * the seed and the image's index in the batch, not on how the batch is split over threads.
 * out, mask, inp (N, D); mask receives 0 or 1/(1-p), for the backward. p in [0, 1).
 */
void dropout_forward(float *out, float *mask, const float *inp, int N, int D, float p,
                     uint64_t seed, uint64_t first_index);
void dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* Element-wise activations on n floats. The backwards take what PyTorch keeps: relu, sigmoid
 * and tanh the forward's output, leaky_relu the forward's input. sigmoid and tanh use a
 * vectorisable exp, within a few float ulp of libm's expf / tanhf. */
void relu_forward(float *out, const float *inp, size_t n);
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);
void leaky_relu_forward(float *out, const float *inp, size_t n, float slope);
void leaky_relu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                         float slope);
void sigmoid_forward(float *out, const float *inp, size_t n);
void sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
void tanh_forward(float *out, const float *inp, size_t n);
void tanh_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Softmax over the last axis: out, inp (N, K). The backward takes the forward's output. */
void softmax_forward(float *out, const float *inp, int N, int K);
void softmax_backward(float *dinp, const float *dout, const float *out, int N, int K);

/*
 * Losses. Each forward returns the MEAN loss (over the batch for cross-entropy, over all
 * elements otherwise, as PyTorch's reduction="mean") computed in double; each backward adds
 * scale * d(mean loss)/d(input) to its gradient (scale = 1 for plain training).
 */

/*
 * The classification losses a model trains with, on logits (N, K) against labels (N) in
 * [0, K), that is against one-hot targets t (t[label] = 1, every other entry 0):
 *   LOSS_CCE  softmax cross-entropy, mean over the N rows            (F.cross_entropy)
 *   LOSS_BCE  binary cross-entropy of each class's sigmoid against t, one-vs-rest, mean over
 *             the N*K entries (F.binary_cross_entropy(sigmoid(x), t)); computed from the
 *             logits, so no log of 0 and no overflow for any logit
 *   LOSS_MSE  squared error of the softmax probabilities against t, mean over N*K
 *             (F.mse_loss(softmax(x), t))
 *   LOSS_MAE  absolute error of the same, mean over N*K (F.l1_loss(softmax(x), t)); its
 *             gradient where p == t is 0
 * A row at a time by the inline functions below, which the CPU (class_loss_forward and
 * class_loss_backward) and the GPU (nn_cuda.cu) both run.
 */
enum NnLoss { LOSS_CCE, LOSS_BCE, LOSS_MSE, LOSS_MAE, LOSS_COUNT };

/* "cce", "bce", "mse", "mae" for a loss in range, else "?"; the loss of a name, or -1. */
const char *nn_loss_name(int loss);
int nn_loss_from_name(const char *name);

/* The mean loss; probs (N, K) receives each row's softmax (the sigmoids for BCE), which the
 * backward takes. */
float class_loss_forward(int loss, float *probs, const float *logits, const int32_t *labels,
                         int N, int K);
void class_loss_backward(int loss, float *dlogits, const float *probs, const int32_t *labels,
                         int N, int K, float scale);

/* What the mean divides the rows' sums by: N for cross-entropy, N*K for the others. */
static inline NN_HOST_DEVICE double nn_class_loss_count(int loss, int N, int K)
{
    return loss == LOSS_CCE ? (double)N : (double)N * K;
}

/* One row's loss summed over its K entries (before the mean), in double; probs (K) receives
 * the row's softmax, or for BCE its sigmoids. */
static inline NN_HOST_DEVICE double nn_class_loss_row(int loss, float *probs, const float *x,
                                                      int label, int K)
{
    /* declarations first: the extension includes this under -Wdeclaration-after-statement */
    double total = 0.0, sum = 0.0;
    float m = x[0];
    int k;
    if (loss == LOSS_BCE) {
        for (k = 0; k < K; k++) {
            double v = x[k], t = k == label ? 1.0 : 0.0;
            probs[k] = (float)(1.0 / (1.0 + exp(-v)));
            /* max(v, 0) - v t + log(1 + exp(-|v|)): BCE of sigmoid(v) without overflow */
            total += (v > 0 ? v : 0) - v * t + log1p(exp(-fabs(v)));
        }
        return total;
    }
    for (k = 1; k < K; k++)
        m = x[k] > m ? x[k] : m;
    for (k = 0; k < K; k++) {
        probs[k] = expf(x[k] - m);   /* shifted by the maximum: no overflow */
        sum += probs[k];
    }
    for (k = 0; k < K; k++)
        probs[k] = (float)(probs[k] / sum);
    if (loss == LOSS_CCE)   /* -log softmax[label] = log(sum exp(x - m)) + m - x[label] */
        return log(sum) + m - x[label];
    for (k = 0; k < K; k++) {
        double d = (double)probs[k] - (k == label ? 1.0 : 0.0);
        total += loss == LOSS_MSE ? d * d : fabs(d);
    }
    return total;
}

/* d(row loss)/dp_k for MSE (2 (p - t)) and MAE (sign(p - t)). */
static inline NN_HOST_DEVICE float nn_class_loss_dprob(int loss, float p, int is_label)
{
    float d = p - (is_label ? 1.0f : 0.0f);
    return loss == LOSS_MSE ? 2.0f * d : (float)((d > 0.0f) - (d < 0.0f));
}

/* dx (K) += scale * d(row loss)/dx, from the row's probs of the forward. Cross-entropy and
 * BCE: p - t. MSE and MAE go back through the softmax: dx_j = p_j (g_j - sum_k p_k g_k),
 * g = 2 (p - t) or sign(p - t). */
static inline NN_HOST_DEVICE void nn_class_loss_grad_row(int loss, float *dx, const float *probs,
                                                         int label, int K, float scale)
{
    double dot = 0.0;
    int k;
    if (loss == LOSS_CCE || loss == LOSS_BCE) {
        for (k = 0; k < K; k++)
            dx[k] += scale * (probs[k] - (k == label ? 1.0f : 0.0f));
        return;
    }
    for (k = 0; k < K; k++)
        dot += (double)probs[k] * nn_class_loss_dprob(loss, probs[k], k == label);
    for (k = 0; k < K; k++)
        dx[k] += scale * probs[k] * (nn_class_loss_dprob(loss, probs[k], k == label) - (float)dot);
}

/* Binary cross-entropy on probabilities pred (n) in [0, 1] against target (n) in [0, 1];
 * each log is clamped at -100 as torch.nn.BCELoss does. */
float bce_forward(const float *pred, const float *target, size_t n);
void bce_backward(float *dpred, const float *pred, const float *target, size_t n, float scale);

/* Binary cross-entropy on logits (torch.nn.BCEWithLogitsLoss), numerically stable. */
float bce_logits_forward(const float *logits, const float *target, size_t n);
void bce_logits_backward(float *dlogits, const float *logits, const float *target, size_t n,
                         float scale);

/* Mean squared error and mean absolute error of pred (n) against target (n). The MAE's
 * gradient at pred == target is 0 (sign(0) = 0, as PyTorch). */
float mse_forward(const float *pred, const float *target, size_t n);
void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale);
float mae_forward(const float *pred, const float *target, size_t n);
void mae_backward(float *dpred, const float *pred, const float *target, size_t n, float scale);

#endif
