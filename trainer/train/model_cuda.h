/* model_cuda.h — a model's graph run on an NVIDIA GPU: device memory, forward, backward and
 * SGD with the CUDA layers of nn_cuda.cu. Used through model.h (model_use_device). */
#ifndef IMGSET_MODEL_CUDA_H
#define IMGSET_MODEL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Declared in every build, defined only where nvcc compiled trainer/train/model_cuda.cu (then
 * IMGSET_HAVE_CUDA is defined). The device memory mirrors the host Model's: parameters,
 * gradients and momentum buffers in graph.tensors' layout, activations and their gradients
 * in the CPU executor's layout for max_batch images. Everything is queued on the model's own
 * stream; the calls that hand results to the host wait for it. -1 / NULL with imgset_fail().
 */
typedef struct ModelCuda ModelCuda;

/* Device memory and a stream for g with up to max_batch images; the parameters and momentum
 * buffers are copied from the host arrays (param_floats each). */
ModelCuda *model_cuda_create(const ModelGraph *g, int max_batch, const float *params,
                             const float *velocity);
void model_cuda_free(ModelCuda *mc);   /* NULL is fine */

/* Forward x_device ((N, C, H, W) float32 in GPU memory) and copy the logits (N, K) to
 * logits_host (waits). training = 1 as model_forward. */
int model_cuda_forward(ModelCuda *mc, const float *x_device, int N, int training,
                       float *logits_host);

/* The classification loss `loss` (nn.h) of the last forward's N logits against labels_host
 * (N, on the host, in range) on the GPU: *value = the mean loss (waits), and the logits'
 * gradient is set, in device memory, for the backward. */
int model_cuda_loss(ModelCuda *mc, int loss, const int32_t *labels_host, int N, float *value);

/* Backpropagate the gradient model_cuda_loss set through the last training forward, adding
 * to the device gradients. Queued, not waited for. */
int model_cuda_backward(ModelCuda *mc, int N);

/* Zero the gradients; one SGD step on every trainable tensor. Both are queued; a failure is
 * also kept and reported again by the next forward or backward. */
int model_cuda_zero_grad(ModelCuda *mc);

int model_cuda_sgd_step(ModelCuda *mc, float lr, const SgdConfig *config);

/* Copy parameters, gradients and momentum buffers to the host (each may be NULL; waits). */
int model_cuda_download(ModelCuda *mc, float *params, float *grads, float *velocity);

/* Seconds the GPU spent on training steps since the model was created, timed with CUDA
 * events: each training forward, plus its loss, backward and SGD step (not the gap between
 * the forward and the loss, while the host looks at the logits); waits for the last step. */
double model_cuda_busy_seconds(ModelCuda *mc);

#ifdef __cplusplus
}
#endif

#endif
