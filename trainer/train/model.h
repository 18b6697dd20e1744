/* model.h — a model for training: its memory (one allocation per kind), forward / backward /
 * SGD over the nn core's passes split over a small thread pool, or on the GPU. */
#ifndef IMGSET_MODEL_H
#define IMGSET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "optim.h"
#include "pass.h"

typedef struct ModelRuntime ModelRuntime;

/*
 * A model for training. Memory is one allocation per kind (llm.c's
 * malloc_and_point_parameters): params, grads and velocity share graph.tensors' layout;
 * acts holds every activation, their gradients and the batch statistics for max_batch
 * images. Everything belongs to the model; model_free() releases it.
 */
typedef struct Model {
    ModelGraph graph;
    int max_batch;
    uint64_t seed;          /* the initialisation seed */
    float *params;          /* (graph.param_floats) */
    float *grads;           /* (graph.param_floats) accumulated by model_backward */
    float *velocity;        /* (graph.param_floats) SGD momentum buffers */
    float *acts;            /* activations, their gradients, batch statistics */
    int64_t step;           /* optimiser steps taken (model_sgd_step increments it) */
    int threads;            /* worker threads used by forward / backward / step */
    int batch;              /* N of the last forward, 0 before any */
    int training;           /* mode of the last forward */
    ModelRuntime *runtime;  /* private: thread pool and per-thread buffers */
    int device;             /* MODEL_CPU, or MODEL_CUDA after model_use_device() */
    struct ModelCuda *cuda; /* private: the GPU copy (model_cuda.h), NULL on the CPU */
} Model;

/* Where a model computes. */
enum { MODEL_CPU = 0, MODEL_CUDA = 1 };

/* A new model of spec, parameters initialised from seed (the same seed gives the same
 * weights). One thread until model_set_threads(). NULL with imgset_fail(). */
Model *model_create_spec(const ModelSpec *spec, int max_batch, uint64_t seed);

/* model_create_spec() with model_spec_default(arch, C, H, W, K): ReLU, cross-entropy,
 * mean = std = 0.5. */
Model *model_create(const char *arch, int C, int H, int W, int K, int max_batch, uint64_t seed);

/* Use `threads` threads (1..MODEL_MAX_THREADS) for forward, backward and steps: the batch is
 * split into fixed per-thread ranges, so results depend on the thread count but not on
 * timing. Sets OpenBLAS to one thread per caller (the model does the splitting).
 * 0, or -1 with imgset_fail(). */
int model_set_threads(Model *m, int threads);

/*
 * Compute on `device` from now on. MODEL_CUDA (builds with CUDA, where a device is there)
 * copies the parameters and momentum buffers to GPU memory; from then on model_forward takes
 * x in GPU memory and returns the logits on the host, and everything else runs on the GPU,
 * the loss included: the host's params, grads and velocity are stale until
 * model_sync_host(). MODEL_CPU copies them back and frees the GPU copy. 0, or -1 with
 * imgset_fail() (then nothing changed).
 */
int model_use_device(Model *m, int device);

/* Bring params, grads and velocity on the host up to date (checkpoints, tests); a no-op on
 * the CPU. 0, or -1 with imgset_fail(). */
int model_sync_host(Model *m);

/* Seconds the GPU spent on training steps since model_use_device(), timed with CUDA events
 * (waits for the last step); 0 on the CPU. */
double model_device_seconds(Model *m);

/* Forward x (N, C, H, W), 1 <= N <= max_batch; returns the logits (N, K) on the host, valid
 * until the next forward. training = 1: BN uses and updates batch statistics, the activations
 * are kept for model_backward (x is copied). On MODEL_CUDA x is GPU memory. */
const float *model_forward(Model *m, const float *x, int N, int training);

/* The spec's loss (nn.h's class_loss_forward: cross-entropy, BCE, MSE or MAE) of the last
 * forward's logits against labels (N): writes the mean loss to *loss and sets the logits'
 * gradient for model_backward. -1 with imgset_fail() when a label is outside [0, K) or there
 * was no forward. */
int model_loss(Model *m, const int32_t *labels, float *loss);

/* Zero the accumulated gradients. */
void model_zero_grad(Model *m);

/* Backpropagate the logits' gradient through the last training forward, adding to grads.
 * -1 with imgset_fail() when the last forward was not a training one. */
int model_backward(Model *m);

/* One SGD step on every trainable tensor with learning rate lr; increments m->step. On the
 * GPU zero_grad and the step are queued: a failure shows at the next forward. */
void model_sgd_step(Model *m, float lr, const SgdConfig *config);

/* Free the model and everything it owns. NULL is fine. */
void model_free(Model *m);

/* Number of trainable floats. */
size_t model_num_parameters(const Model *m);

/* The CPU kernel OpenBLAS chose ("SkylakeX", "Haswell", ...), or "none" without OpenBLAS. */
const char *model_blas_core(void);

/*
 * OpenBLAS 0.3.21 (Debian 12) does not recognise recent CPUs (e.g. family 6 model 207,
 * Emerald Rapids) and falls back to its slowest x86-64 kernels, 3-5x slower. The kernel is
 * chosen when the library loads, from the environment variable OPENBLAS_CORETYPE. When the
 * fallback was taken, OPENBLAS_CORETYPE is unset and the CPU has AVX-512 (or AVX2), this sets
 * OPENBLAS_CORETYPE=SkylakeX (or Haswell) and re-executes the program (/proc/self/exe with
 * argv): call it first thing in main(). Returns 0 when nothing needed doing; -1 with
 * imgset_fail() when the re-exec failed. Never call it inside a server backend.
 */
int model_blas_reexec(char **argv);

#endif
