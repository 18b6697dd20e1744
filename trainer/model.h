/* model.h — the models by name (mlp, cnn-small, resnet8, densenet-tiny): graph, memory,
 * forward / backward / SGD over the nn core, and an allocation-free inference entry point. */
#ifndef IMGSET_MODEL_H
#define IMGSET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"

/*
 * Architectures (input N x C x H x W float32, output N x K logits):
 *   mlp            flatten -> linear 256 -> ReLU -> linear 128 -> ReLU -> linear K
 *   cnn-small      conv3x3 32 pad1 -> ReLU -> maxpool2 -> conv3x3 64 pad1 -> ReLU -> maxpool2
 *                  -> linear 128 -> ReLU -> linear K                        (H, W >= 4)
 *   resnet8        stem conv3x3 16 -> BN -> ReLU; three stages of one basic residual block
 *                  (conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU) with 16, 32, 64
 *                  channels, stride 1, 2, 2 (1x1 conv + BN shortcut where the shape
 *                  changes); global average pool; linear K
 *   densenet-tiny  stem conv3x3 24; three dense blocks of 3 layers (BN-ReLU-conv3x3 12,
 *                  concatenated: growth 12), joined by transitions (BN-ReLU-conv1x1 halving
 *                  the channels, avgpool2); BN -> ReLU -> global average pool -> linear K
 * For inputs larger than 64 per side, resnet8's and densenet-tiny's stem conv has stride 2
 * and is followed by 2x2 max-pools until the larger side is <= 64 (as ImageNet ResNets
 * shrink their input early). Convolutions followed by batch norm have no bias.
 * Parameter names follow PyTorch's state_dict ("conv1.weight", "layer2.bn1.running_var"),
 * initialised as PyTorch's defaults: conv / linear weights and biases uniform in
 * +-1/sqrt(fan_in) (kaiming_uniform_ with a = sqrt(5)), BN gamma 1, beta 0, running mean 0,
 * running variance 1; BN momentum 0.1, eps 1e-5.
 */

#define MODEL_ARCH_MAX 32      /* architecture names, including the NUL */
#define MODEL_NAME_MAX 48      /* tensor names, including the NUL */
#define MODEL_MAX_OPS 160
#define MODEL_MAX_ACTS 160
#define MODEL_MAX_TENSORS 128
#define MODEL_MAX_THREADS 64
#define MODEL_MAX_CHANNELS 64  /* input channels */

/* What a model is: its architecture and the data shape it was built for. */
typedef struct ModelSpec {
    char arch[MODEL_ARCH_MAX];
    int32_t channels, height, width;   /* input C, H, W */
    int32_t classes;                   /* K >= 2 */
} ModelSpec;

/* A named tensor of the parameter memory (weights, biases, BN running statistics). */
typedef struct ModelTensor {
    char name[MODEL_NAME_MAX];
    int ndim;
    int64_t shape[4];
    size_t offset;     /* in floats, into Model.params / grads / velocity */
    size_t count;      /* floats */
    int trainable;     /* 0 for BN running statistics: saved, never stepped */
} ModelTensor;

/* One activation (per image: C x H x W floats). */
typedef struct ModelAct {
    int32_t c, h, w;
    size_t size;       /* c*h*w */
    size_t offset;     /* per-image floats before this activation (layout: see model.c) */
} ModelAct;

/* What a ModelOp does (the CPU executor in model.c and the GPU one in model_cuda.cu). */
enum ModelOpKind {
    OP_CONV,        /* weight, bias (or -1), kernel, stride, pad */
    OP_BATCHNORM,   /* weight = gamma, bias = beta, running_mean, running_var */
    OP_RELU,
    OP_MAXPOOL,     /* kernel, stride */
    OP_AVGPOOL,     /* kernel, stride */
    OP_GAP,         /* global average pool */
    OP_LINEAR,      /* weight, bias */
    OP_ADD,         /* in + in2 */
    OP_CONCAT,      /* [in, in2] along channels */
    OP_CONV_RELU_POOL, /* conv (weight, bias, kernel, stride, pad) -> ReLU -> 2x2 max-pool, one
                        * image at a time through per-thread scratch: the pre-pool tensors are
                        * never stored, the backward uses the pool's argmax bytes */
};

#define MODEL_BN_MOMENTUM 0.1f
#define MODEL_BN_EPS 1e-5f

/* One layer of the graph; fields unused by a kind are -1 / 0. */
typedef struct ModelOp {
    int kind;                 /* enum ModelOpKind */
    int in, in2, out;         /* activation ids (in2: second input of add / concat) */
    int weight, bias;         /* tensor ids: conv / linear weight and bias, BN gamma and beta */
    int running_mean, running_var;   /* BN tensor ids */
    int kernel, stride, pad;
    size_t stat_offset;       /* BN: saved mean / invstd, floats into the batch statistics */
    size_t aux_offset;        /* conv-relu-pool: per-image floats before its argmax bytes */
    size_t aux_size;          /* conv-relu-pool: floats per image holding its argmax bytes */
    int zero_din, zero_din2;  /* 1: the first backward writer of that input's gradient */
} ModelOp;

/* The whole architecture for one spec: built without allocation, so the extension can keep
 * it in its own memory. */
typedef struct ModelGraph {
    ModelSpec spec;
    int num_ops, num_acts, num_tensors;
    ModelOp ops[MODEL_MAX_OPS];
    ModelAct acts[MODEL_MAX_ACTS];         /* acts[0] is the input, acts[output] the logits */
    ModelTensor tensors[MODEL_MAX_TENSORS];
    int output;
    size_t param_floats;     /* every tensor together */
    size_t trainable_floats; /* the trainable ones */
    size_t act_floats;       /* per image, every activation together */
    size_t stat_floats;      /* per batch: BN saved statistics */
    size_t scratch_floats;   /* per thread: the largest im2col buffer */
    size_t conv_tmp_floats;  /* per thread: the largest pre-pool output of a fused conv block */
    size_t aux_floats;       /* per image: argmax bytes of the fused conv blocks, in floats */
} ModelGraph;

/* Build the graph of `arch` for input C x H x W and K classes; 0, or -1 with imgset_fail()
 * (unknown architecture, shape too small or too large). Allocates nothing. */
int model_graph_build(ModelGraph *graph, const char *arch, int C, int H, int W, int K);

/* The architecture names, NULL-terminated. */
const char *const *model_arch_names(void);

/* The tensor called `name`, or -1. */
int model_graph_find(const ModelGraph *graph, const char *name);

/* ---- Inference with caller-owned memory (the extension's entry point) ---------------- */

/* Floats of workspace model_inference() needs for N images; 0 on overflow. */
size_t model_inference_workspace_floats(const ModelGraph *graph, int N);

/* Evaluation-mode forward (BN uses running statistics), single-threaded, no allocation:
 * logits (N, K) from x (N, C, H, W) with params laid out as graph->tensors.
 * workspace: model_inference_workspace_floats(graph, N) floats. */
void model_inference(const ModelGraph *graph, const float *params, const float *x, int N,
                     float *workspace, float *logits);

/* ---- Training ------------------------------------------------------------------------ */

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

/* A new model, parameters initialised from seed (the same seed gives the same weights).
 * One thread until model_set_threads(). NULL with imgset_fail(). */
Model *model_create(const char *arch, int C, int H, int W, int K, int max_batch, uint64_t seed);

/* Use `threads` threads (1..MODEL_MAX_THREADS) for forward, backward and steps: the batch is
 * split into fixed per-thread ranges, so results depend on the thread count but not on
 * timing. Sets OpenBLAS to one thread per caller (the model does the splitting).
 * 0, or -1 with imgset_fail(). */
int model_set_threads(Model *m, int threads);

/*
 * Compute on `device` from now on. MODEL_CUDA (builds with CUDA, where a device is there)
 * copies the parameters and momentum buffers to GPU memory; from then on model_forward takes
 * x in GPU memory, the logits and their gradient stay on the host (so model_loss and
 * model_dlogits work unchanged) and everything else runs on the GPU: the host's params,
 * grads and velocity are stale until model_sync_host(). MODEL_CPU copies them back and frees
 * the GPU copy. 0, or -1 with imgset_fail() (then nothing changed).
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

/* Softmax cross-entropy of the last forward's logits against labels (N): writes the mean
 * loss to *loss and sets the logits' gradient for model_backward. -1 with imgset_fail() when
 * a label is outside [0, K) or there was no forward. */
int model_loss(Model *m, const int32_t *labels, float *loss);

/* The logits' gradient (N, K) of the last forward, for a loss computed by the caller (it is
 * overwritten by model_loss). */
float *model_dlogits(Model *m);

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
