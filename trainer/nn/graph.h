/* graph.h — the models by name (mlp, cnn-small, resnet8, densenet-tiny) as graphs of ops over
 * named tensors, built without allocation: what the trainer, the GPU executor and the
 * extension all run. */
#ifndef IMGSET_GRAPH_H
#define IMGSET_GRAPH_H

#include <stddef.h>
#include <stdint.h>

/*
 * Architectures (input N x C x H x W float32, output N x K logits; "act" is the spec's
 * activation, ReLU unless chosen):
 *   mlp            flatten -> linear 256 -> act -> linear 128 -> act -> linear K
 *   cnn-small      conv3x3 32 pad1 -> act -> maxpool2 -> conv3x3 64 pad1 -> act -> maxpool2
 *                  -> linear 128 -> act -> linear K                         (H, W >= 4)
 *                  (with ReLU each conv -> ReLU -> maxpool is one fused op, conv_relu_pool;
 *                  other activations run the three ops)
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
#define MODEL_NORM_CHANNELS 4  /* channels of an image (IMGSET_MAX_CHANNELS): normalisation */

/* The activation of mlp's and cnn-small's hidden layers (resnet8 and densenet-tiny use ReLU). */
enum ModelActivation { ACT_RELU, ACT_LEAKY_RELU, ACT_TANH, ACT_SIGMOID, ACT_COUNT };

/* How the mean and std of the input normalisation were chosen (ModelSpec.mean / std):
 * NORM_MEANSTD given (mean = std = 0.5 unless set) or measured on the training set;
 * NORM_MINMAX from the training set's per-channel minimum and maximum, so that they map
 * to -1 and 1 (the same formula, mean = (min + max) / 2, std = (max - min) / 2). */
enum ModelNormalize { NORM_MEANSTD, NORM_MINMAX, NORM_COUNT };

/*
 * What a model is: its architecture, the data shape it was built for, its hidden activation,
 * how its inputs are normalised, and the loss it was trained with (nn.h's NnLoss; inference
 * does not depend on it). A pixel x (0..255) of channel c enters as (x / 255 - mean[c]) /
 * std[c]. model_spec_default() gives ReLU, cross-entropy and mean = std = 0.5 (pixels to
 * [-1, 1]), which is also what a checkpoint without these keys means.
 */
typedef struct ModelSpec {
    char arch[MODEL_ARCH_MAX];
    int32_t channels, height, width;   /* input C, H, W */
    int32_t classes;                   /* K >= 2 */
    int activation;                    /* enum ModelActivation */
    float leaky_slope;                 /* ACT_LEAKY_RELU's negative slope, in [0, 1] */
    int loss;                          /* enum NnLoss (nn.h) */
    int normalize;                     /* enum ModelNormalize */
    float mean[MODEL_NORM_CHANNELS], std[MODEL_NORM_CHANNELS];  /* the first channels used */
} ModelSpec;

#define MODEL_LEAKY_SLOPE 0.01f   /* the default negative slope, as torch.nn.LeakyReLU */

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
    size_t offset;     /* per-image floats before this activation (layout: see graph.c) */
} ModelAct;

/*
 * Every kind of op, once. The enum below and each executor's table of forward and backward
 * functions are made from this list (pass.c on the CPU, model_cuda.cu on the GPU): a new
 * layer is one line here plus its functions `<name>_forward_op` / `<name>_backward_op` in
 * pass.c and `<name>_forward_gpu` / `<name>_backward_gpu` in model_cuda.cu — one missing does
 * not compile. What each kind reads of its ModelOp:
 *   conv            weight, bias (or -1), kernel, stride, pad
 *   batchnorm       weight = gamma, bias = beta, running_mean, running_var
 *   maxpool,avgpool kernel, stride
 *   gap             global average pool
 *   linear          weight, bias
 *   relu, tanh, sigmoid   element-wise
 *   leaky_relu      element-wise, slope
 *   add             in + in2
 *   concat          [in, in2] along channels
 *   conv_relu_pool  conv (weight, bias, kernel, stride, pad) -> ReLU -> 2x2 max-pool, one
 *                   image at a time through per-thread scratch: the pre-pool tensors are never
 *                   stored, the backward uses the pool's argmax bytes
 */
#define MODEL_OPS(X) \
    X(CONV, conv) \
    X(BATCHNORM, batchnorm) \
    X(RELU, relu) \
    X(MAXPOOL, maxpool) \
    X(AVGPOOL, avgpool) \
    X(GAP, gap) \
    X(LINEAR, linear) \
    X(ADD, add) \
    X(CONCAT, concat) \
    X(CONV_RELU_POOL, conv_relu_pool) \
    X(LEAKY_RELU, leaky_relu) \
    X(TANH, tanh) \
    X(SIGMOID, sigmoid)

/* What a ModelOp does: OP_CONV, OP_BATCHNORM, … in the order of MODEL_OPS. */
enum ModelOpKind {
#define MODEL_OP_KIND(KIND, name) OP_##KIND,
    MODEL_OPS(MODEL_OP_KIND)
#undef MODEL_OP_KIND
    OP_COUNT
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
    float slope;              /* leaky_relu: the negative slope */
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

/* spec for `arch`, input C x H x W and K classes, with the default activation (ReLU), loss
 * (cross-entropy) and normalisation (mean = std = 0.5 for every channel). */
void model_spec_default(ModelSpec *spec, const char *arch, int C, int H, int W, int K);

/* Build the graph of spec (copied into graph->spec); 0, or -1 with imgset_fail() (unknown
 * architecture, shape too small or too large, an activation the architecture does not take,
 * a slope outside [0, 1], a loss or normalisation out of range). Allocates nothing. */
int model_graph_build(ModelGraph *graph, const ModelSpec *spec);

/* The architecture names, NULL-terminated. */
const char *const *model_arch_names(void);

/* Names of activations ("relu", "leaky-relu", "tanh", "sigmoid") and normalisations
 * ("meanstd", "minmax"): the name of a value in range, or "?"; the value of a name, or -1. */
const char *model_activation_name(int activation);
int model_activation_from_name(const char *name);
const char *model_normalize_name(int normalize);
int model_normalize_from_name(const char *name);

/* The tensor called `name`, or -1. */
int model_graph_find(const ModelGraph *graph, const char *name);

#endif
