/* model.c — the named architectures as op graphs, their memory, and the executor that runs
 * forward / backward / SGD over the nn core, split over a small thread pool. */
#include "model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "error.h"
#include "gpu.h"
#include "model_cuda.h"
#include "nn.h"
#include "rng.h"

#ifdef IMGSET_HAVE_OPENBLAS
#include <cblas.h>
#endif

#define MAX_PARAM_FLOATS ((size_t)1 << 28)   /* 1 GiB of weights: surely a wrong shape */
/* Per-image bytes a chunk of a convolutional segment may touch: about half an L2 cache. */
#define CHUNK_BYTES (768u * 1024u)
/* Images whose pre-pool gradients a fused conv block's backward holds at once, so that one
 * conv2d_backward call (one weight-gradient reduction) serves them all. */
#define FUSED_GROUP 4

/* ==== Building graphs ================================================================= */

typedef struct Builder {
    ModelGraph *g;
    int failed;
    ModelOp spare;   /* what add_op hands out after a failure: written, never read */
} Builder;

/* Record the first failure (imgset_fail was called); later calls become no-ops. */
static int build_fail(Builder *b)
{
    b->failed = 1;
    return 0;
}

static int add_act(Builder *b, int c, int h, int w)
{
    ModelGraph *g = b->g;
    if (b->failed)
        return 0;
    if (h <= 0 || w <= 0)
        return imgset_fail("model %s: input %dx%d is too small for this architecture",
                           g->spec.arch, g->spec.height, g->spec.width), build_fail(b);
    if (g->num_acts >= MODEL_MAX_ACTS)
        return imgset_fail("model %s: too many activations", g->spec.arch), build_fail(b);
    ModelAct *a = &g->acts[g->num_acts];
    a->c = c, a->h = h, a->w = w;
    a->size = (size_t)c * h * w;
    a->offset = g->act_floats;
    g->act_floats += a->size;
    return g->num_acts++;
}

static int add_tensor(Builder *b, const char *prefix, const char *suffix, int ndim,
                      int64_t d0, int64_t d1, int64_t d2, int64_t d3, int trainable)
{
    ModelGraph *g = b->g;
    if (b->failed)
        return -1;
    if (g->num_tensors >= MODEL_MAX_TENSORS)
        return imgset_fail("model %s: too many tensors", g->spec.arch), build_fail(b), -1;
    ModelTensor *t = &g->tensors[g->num_tensors];
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, suffix);
    int64_t dims[4] = {d0, d1, d2, d3};
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim)
            t->count *= (size_t)dims[i];
    }
    t->offset = g->param_floats;
    t->trainable = trainable;
    g->param_floats += t->count;
    if (trainable)
        g->trainable_floats += t->count;
    if (g->param_floats > MAX_PARAM_FLOATS)
        return imgset_fail("model %s: input %dx%dx%d needs more than %zu parameters",
                           g->spec.arch, g->spec.channels, g->spec.height, g->spec.width,
                           MAX_PARAM_FLOATS), build_fail(b), -1;
    return g->num_tensors++;
}

/* A new op of `kind` reading `in`, with every optional field unset. */
static ModelOp *add_op(Builder *b, int kind, int in)
{
    ModelGraph *g = b->g;
    if (b->failed)
        return &b->spare;
    if (g->num_ops >= MODEL_MAX_OPS) {
        imgset_fail("model %s: too many layers", g->spec.arch);
        build_fail(b);
        return &b->spare;
    }
    ModelOp *op = &g->ops[g->num_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->in = in, op->in2 = -1, op->out = -1;
    op->weight = op->bias = op->running_mean = op->running_var = -1;
    return op;
}

static int conv(Builder *b, const char *name, int in, int oc, int k, int stride, int pad,
                int bias)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, OP_CONV, in);
    op->kernel = k, op->stride = stride, op->pad = pad;
    op->weight = add_tensor(b, name, "weight", 4, oc, a.c, k, k, 1);
    if (bias)
        op->bias = add_tensor(b, name, "bias", 1, oc, 0, 0, 0, 1);
    op->out = add_act(b, oc, nn_out_size(a.h, k, stride, pad), nn_out_size(a.w, k, stride, pad));
    size_t scratch = conv2d_scratch_floats(a.c, a.h, a.w, oc, k, k, stride, pad);
    if (!b->failed && scratch > b->g->scratch_floats)
        b->g->scratch_floats = scratch;
    return op->out;
}

/* conv -> ReLU -> maxpool 2x2, fused (see OP_CONV_RELU_POOL). */
static int conv_relu_pool(Builder *b, const char *name, int in, int oc, int k, int stride,
                          int pad)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, OP_CONV_RELU_POOL, in);
    op->kernel = k, op->stride = stride, op->pad = pad;
    op->weight = add_tensor(b, name, "weight", 4, oc, a.c, k, k, 1);
    op->bias = add_tensor(b, name, "bias", 1, oc, 0, 0, 0, 1);
    int ch = nn_out_size(a.h, k, stride, pad), cw = nn_out_size(a.w, k, stride, pad);
    op->out = add_act(b, oc, ch / 2, cw / 2);
    if (b->failed)
        return op->out;
    ModelGraph *g = b->g;
    size_t scratch = conv2d_scratch_floats(a.c, a.h, a.w, oc, k, k, stride, pad);
    size_t tmp = (size_t)oc * ch * cw, argmax_bytes = (size_t)oc * (ch / 2) * (cw / 2);
    if (scratch > g->scratch_floats)
        g->scratch_floats = scratch;
    if (tmp > g->conv_tmp_floats)
        g->conv_tmp_floats = tmp;
    op->aux_offset = g->aux_floats;
    op->aux_size = (argmax_bytes + 3) / 4;
    g->aux_floats += op->aux_size;
    return op->out;
}

static int batchnorm(Builder *b, const char *name, int in)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, OP_BATCHNORM, in);
    op->weight = add_tensor(b, name, "weight", 1, a.c, 0, 0, 0, 1);
    op->bias = add_tensor(b, name, "bias", 1, a.c, 0, 0, 0, 1);
    op->running_mean = add_tensor(b, name, "running_mean", 1, a.c, 0, 0, 0, 0);
    op->running_var = add_tensor(b, name, "running_var", 1, a.c, 0, 0, 0, 0);
    op->stat_offset = b->g->stat_floats;
    b->g->stat_floats += 2 * (size_t)a.c;
    op->out = add_act(b, a.c, a.h, a.w);
    return op->out;
}

static int relu(Builder *b, int in)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, OP_RELU, in);
    op->out = add_act(b, a.c, a.h, a.w);
    return op->out;
}

static int pool(Builder *b, int kind, int in, int k, int stride)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, kind, in);
    op->kernel = k, op->stride = stride;
    op->out = add_act(b, a.c, nn_out_size(a.h, k, stride, 0), nn_out_size(a.w, k, stride, 0));
    return op->out;
}

static int global_avgpool(Builder *b, int in)
{
    ModelOp *op = add_op(b, OP_GAP, in);
    op->out = add_act(b, b->g->acts[in].c, 1, 1);
    return op->out;
}

static int linear(Builder *b, const char *name, int in, int outputs)
{
    ModelOp *op = add_op(b, OP_LINEAR, in);
    op->weight = add_tensor(b, name, "weight", 2, outputs, (int64_t)b->g->acts[in].size, 0, 0, 1);
    op->bias = add_tensor(b, name, "bias", 1, outputs, 0, 0, 0, 1);
    op->out = add_act(b, outputs, 1, 1);
    return op->out;
}

static int add(Builder *b, int x, int y)
{
    const ModelAct a = b->g->acts[x];
    ModelOp *op = add_op(b, OP_ADD, x);
    op->in2 = y;
    op->out = add_act(b, a.c, a.h, a.w);
    return op->out;
}

static int concat(Builder *b, int x, int y)
{
    const ModelAct a = b->g->acts[x], c = b->g->acts[y];
    ModelOp *op = add_op(b, OP_CONCAT, x);
    op->in2 = y;
    op->out = add_act(b, a.c + c.c, a.h, a.w);
    return op->out;
}

static int build_mlp(Builder *b, int x, int K)
{
    x = relu(b, linear(b, "fc1", x, 256));
    x = relu(b, linear(b, "fc2", x, 128));
    return linear(b, "fc3", x, K);
}

static int build_cnn_small(Builder *b, int x, int K)
{
    x = conv_relu_pool(b, "conv1", x, 32, 3, 1, 1);
    x = conv_relu_pool(b, "conv2", x, 64, 3, 1, 1);
    x = relu(b, linear(b, "fc1", x, 128));
    return linear(b, "fc2", x, K);
}

/* The stem's stride and how many 2x2 max-pools follow it, so that the larger side after the
 * stem is at most 64. */
static int stem_shrink(const ModelGraph *g, int *pools)
{
    int side = g->spec.height > g->spec.width ? g->spec.height : g->spec.width;
    int stride = side > 64 ? 2 : 1;
    side = (side + stride - 1) / stride;
    *pools = 0;
    while (side > 64) {
        side /= 2;
        (*pools)++;
    }
    return stride;
}

/* ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU. */
static int basic_block(Builder *b, const char *name, int x, int channels, int stride)
{
    char n[MODEL_NAME_MAX];
    int y;
    snprintf(n, sizeof n, "%s.conv1", name);
    y = conv(b, n, x, channels, 3, stride, 1, 0);
    snprintf(n, sizeof n, "%s.bn1", name);
    y = relu(b, batchnorm(b, n, y));
    snprintf(n, sizeof n, "%s.conv2", name);
    y = conv(b, n, y, channels, 3, 1, 1, 0);
    snprintf(n, sizeof n, "%s.bn2", name);
    y = batchnorm(b, n, y);
    int shortcut = x;
    if (stride != 1 || b->g->acts[x].c != channels) {
        snprintf(n, sizeof n, "%s.shortcut.conv", name);
        shortcut = conv(b, n, x, channels, 1, stride, 0, 0);
        snprintf(n, sizeof n, "%s.shortcut.bn", name);
        shortcut = batchnorm(b, n, shortcut);
    }
    return relu(b, add(b, y, shortcut));
}

static int build_resnet8(Builder *b, int x, int K)
{
    int pools, stride = stem_shrink(b->g, &pools);
    x = relu(b, batchnorm(b, "stem.bn", conv(b, "stem.conv", x, 16, 3, stride, 1, 0)));
    for (int i = 0; i < pools; i++)
        x = pool(b, OP_MAXPOOL, x, 2, 2);
    x = basic_block(b, "layer1", x, 16, 1);
    x = basic_block(b, "layer2", x, 32, 2);
    x = basic_block(b, "layer3", x, 64, 2);
    return linear(b, "fc", global_avgpool(b, x), K);
}

enum { DENSE_GROWTH = 12, DENSE_LAYERS = 3, DENSE_BLOCKS = 3 };

static int build_densenet_tiny(Builder *b, int x, int K)
{
    char n[MODEL_NAME_MAX];
    int pools, stride = stem_shrink(b->g, &pools);
    x = conv(b, "stem.conv", x, 2 * DENSE_GROWTH, 3, stride, 1, 0);
    for (int i = 0; i < pools; i++)
        x = pool(b, OP_MAXPOOL, x, 2, 2);
    for (int block = 1; block <= DENSE_BLOCKS; block++) {
        for (int layer = 1; layer <= DENSE_LAYERS; layer++) {
            snprintf(n, sizeof n, "block%d.layer%d.bn", block, layer);
            int y = relu(b, batchnorm(b, n, x));
            snprintf(n, sizeof n, "block%d.layer%d.conv", block, layer);
            y = conv(b, n, y, DENSE_GROWTH, 3, 1, 1, 0);
            x = concat(b, x, y);
        }
        if (block == DENSE_BLOCKS)
            break;
        snprintf(n, sizeof n, "trans%d.bn", block);
        x = relu(b, batchnorm(b, n, x));
        snprintf(n, sizeof n, "trans%d.conv", block);
        x = conv(b, n, x, b->g->acts[x].c / 2, 1, 1, 0, 0);
        x = pool(b, OP_AVGPOOL, x, 2, 2);
    }
    x = relu(b, batchnorm(b, "final_bn", x));
    return linear(b, "fc", global_avgpool(b, x), K);
}

typedef struct Arch {
    const char *name;
    int (*build)(Builder *b, int input, int classes);
} Arch;

static const Arch archs[] = {
    {"mlp", build_mlp},
    {"cnn-small", build_cnn_small},
    {"resnet8", build_resnet8},
    {"densenet-tiny", build_densenet_tiny},
};

static const char *const arch_names[] = {"mlp", "cnn-small", "resnet8", "densenet-tiny", NULL};

const char *const *model_arch_names(void)
{
    return arch_names;
}

/* Mark, for each op input, whether the op is the first in backward order to write that
 * input's gradient (it then zeroes the gradient first; later writers add to it). */
static void mark_first_writers(ModelGraph *g)
{
    unsigned char seen[MODEL_MAX_ACTS] = {0};
    for (int i = g->num_ops - 1; i >= 0; i--) {
        ModelOp *op = &g->ops[i];
        op->zero_din = !seen[op->in];
        seen[op->in] = 1;
        if (op->in2 >= 0) {
            op->zero_din2 = !seen[op->in2];
            seen[op->in2] = 1;
        }
    }
}

int model_graph_build(ModelGraph *g, const char *arch, int C, int H, int W, int K)
{
    memset(g, 0, sizeof *g);
    const Arch *found = NULL;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(arch, archs[i].name) == 0)
            found = &archs[i];
    if (!found)
        return imgset_fail("unknown model \"%s\" (known: mlp, cnn-small, resnet8, "
                           "densenet-tiny)", arch);
    if (C < 1 || C > MODEL_MAX_CHANNELS || H < 1 || H > IMGSET_MAX_SIDE || W < 1 ||
        W > IMGSET_MAX_SIDE)
        return imgset_fail("model %s: bad input shape %dx%dx%d (channels 1..%d, sides 1..%d)",
                           arch, C, H, W, MODEL_MAX_CHANNELS, IMGSET_MAX_SIDE);
    if (K < 2 || K > IMGSET_MAX_CLASSES)
        return imgset_fail("model %s: bad number of classes %d (2..%d)", arch, K,
                           IMGSET_MAX_CLASSES);
    snprintf(g->spec.arch, sizeof g->spec.arch, "%s", arch);
    g->spec.channels = C, g->spec.height = H, g->spec.width = W, g->spec.classes = K;
    Builder b = {.g = g};
    add_act(&b, C, H, W);
    g->output = found->build(&b, 0, K);
    if (b.failed)
        return -1;
    mark_first_writers(g);
    return 0;
}

int model_graph_find(const ModelGraph *g, const char *name)
{
    for (int i = 0; i < g->num_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return i;
    return -1;
}

/* ==== The executor ==================================================================== */

/* How a run of ops is split over threads. */
enum {
    SEG_SAMPLE,   /* per image, in small chunks of images (convolutional part) */
    SEG_DENSE,    /* per image, each thread's images at once (GEMMs over many rows) */
    SEG_BATCH,    /* batch norm in training mode: split by channel over the whole batch */
};

/* Everything one forward or backward needs; built on the stack, no allocation. */
typedef struct Pass {
    const ModelGraph *g;
    float *params;                        /* written only by training BN (running stats) */
    float *act[MODEL_MAX_ACTS];           /* (N, act size) each */
    float *dact[MODEL_MAX_ACTS];          /* gradients, NULL for the input */
    float *stats;                         /* BN saved mean / invstd */
    float *aux;                           /* argmax bytes of fused conv blocks, NULL: none */
    int capacity;                         /* images the activation memory is laid out for */
    float *scratch[MODEL_MAX_THREADS];    /* im2col, per thread */
    float *grads[MODEL_MAX_THREADS];      /* parameter gradients, per thread */
    int N, threads, training;
    int seg_begin, seg_end, seg_kind;     /* the ops [begin, end) of the current phase */
    int chunk;                            /* images per chunk for SEG_SAMPLE */
} Pass;

static int op_segment_kind(const ModelGraph *g, const ModelOp *op, int training)
{
    if (op->kind == OP_BATCHNORM && training)
        return SEG_BATCH;
    const ModelAct *out = &g->acts[op->out];
    if (op->kind == OP_LINEAR || (out->h == 1 && out->w == 1))
        return SEG_DENSE;
    return SEG_SAMPLE;
}

/* The end of the segment starting at op `begin`. Each training BN is a segment of its own. */
static int segment_end(const Pass *p, int begin, int *kind)
{
    const ModelGraph *g = p->g;
    *kind = op_segment_kind(g, &g->ops[begin], p->training);
    int end = begin + 1;
    if (*kind == SEG_BATCH)
        return end;
    while (end < g->num_ops && op_segment_kind(g, &g->ops[end], p->training) == *kind)
        end++;
    return end;
}

/* Images per chunk for a convolutional segment: its activations (and, for training, their
 * gradients) for one chunk stay within CHUNK_BYTES. */
static int segment_chunk(const Pass *p)
{
    size_t bytes = 0;
    for (int i = p->seg_begin; i < p->seg_end; i++)
        bytes += p->g->acts[p->g->ops[i].out].size * sizeof(float) * (p->training ? 2 : 1);
    size_t chunk = bytes ? CHUNK_BYTES / bytes : 1;
    return chunk < 1 ? 1 : chunk > 64 ? 64 : (int)chunk;
}

/* [*begin, *end) of `count` items for thread t of T: fixed, contiguous shares. */
static void share(int count, int t, int T, int *begin, int *end)
{
    *begin = (int)((int64_t)count * t / T);
    *end = (int)((int64_t)count * (t + 1) / T);
}

static float *at(float *base, int n, size_t size)
{
    return base ? base + (size_t)n * size : NULL;
}

/* The argmax bytes of fused conv block op for image n, or NULL when not kept (inference). */
static uint8_t *argmax_of(const Pass *p, const ModelOp *op, int n)
{
    if (!p->aux)
        return NULL;
    return (uint8_t *)(p->aux + op->aux_offset * (size_t)p->capacity + (size_t)n * op->aux_size);
}

/* Forward of one per-image op on images [n0, n0 + n). */
static void op_forward(const Pass *p, const ModelOp *op, int n0, int n, int t)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = at(p->act[op->in], n0, a->size);
    float *y = at(p->act[op->out], n0, o->size);
    const float *w = op->weight >= 0 ? p->params + g->tensors[op->weight].offset : NULL;
    const float *bias = op->bias >= 0 ? p->params + g->tensors[op->bias].offset : NULL;
    switch (op->kind) {
    case OP_CONV:
        conv2d_forward(y, x, w, bias, p->scratch[t], n, a->c, a->h, a->w, o->c, op->kernel,
                       op->kernel, op->stride, op->pad);
        break;
    case OP_BATCHNORM:   /* evaluation mode; training BN runs in batchnorm_phase() */
        batchnorm_forward_eval(y, x, w, bias, p->params + g->tensors[op->running_mean].offset,
                               p->params + g->tensors[op->running_var].offset, n, a->c,
                               a->h * a->w, MODEL_BN_EPS);
        break;
    case OP_RELU:
        relu_forward(y, x, (size_t)n * a->size);
        break;
    case OP_MAXPOOL:
        maxpool2d_forward(y, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_AVGPOOL:
        avgpool2d_forward(y, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_GAP:
        global_avgpool_forward(y, x, n, a->c, a->h * a->w);
        break;
    case OP_LINEAR:
        linear_forward(y, x, w, bias, n, (int)a->size, o->c);
        break;
    case OP_ADD:
        add_forward(y, x, at(p->act[op->in2], n0, a->size), (size_t)n * a->size);
        break;
    case OP_CONCAT:
        concat_forward(y, x, at(p->act[op->in2], n0, g->acts[op->in2].size), n, a->c,
                       g->acts[op->in2].c, a->h * a->w);
        break;
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        float *tmp = p->scratch[t] + g->scratch_floats;   /* (OC, ch, cw), one image */
        for (int i = 0; i < n; i++) {
            conv2d_forward(tmp, x + (size_t)i * a->size, w, bias, p->scratch[t], 1, a->c, a->h,
                           a->w, o->c, op->kernel, op->kernel, op->stride, op->pad);
            relu_maxpool2x2_forward(y + (size_t)i * o->size, argmax_of(p, op, n0 + i), tmp, 1,
                                    o->c, ch, cw);
        }
        break;
    }
    }
}

/* The gradient of op input `which` (op->in or op->in2) for images [n0, n0 + n), zeroed first
 * when this op is its first writer; NULL when not needed (the network input). */
static float *input_grad(const Pass *p, const ModelOp *op, int which, int zero, int n0, int n)
{
    size_t size = p->g->acts[which].size;
    float *d = at(p->dact[which], n0, size);
    if (d && zero)
        memset(d, 0, sizeof(float) * size * n);
    return d;
}

/* Backward of one per-image op on images [n0, n0 + n), parameter gradients into thread t's. */
static void op_backward(const Pass *p, const ModelOp *op, int n0, int n, int t)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = at(p->act[op->in], n0, a->size);
    const float *y = at(p->act[op->out], n0, o->size);
    const float *dy = at(p->dact[op->out], n0, o->size);
    float *dx = input_grad(p, op, op->in, op->zero_din, n0, n);
    const float *w = op->weight >= 0 ? p->params + g->tensors[op->weight].offset : NULL;
    float *dw = op->weight >= 0 ? p->grads[t] + g->tensors[op->weight].offset : NULL;
    float *db = op->bias >= 0 ? p->grads[t] + g->tensors[op->bias].offset : NULL;
    switch (op->kind) {
    case OP_CONV:
        conv2d_backward(dx, dw, db, p->scratch[t], dy, x, w, n, a->c, a->h, a->w, o->c,
                        op->kernel, op->kernel, op->stride, op->pad);
        break;
    case OP_BATCHNORM:
        batchnorm_backward_eval(dx, dw, db, dy, x, w,
                                p->params + g->tensors[op->running_mean].offset,
                                p->params + g->tensors[op->running_var].offset, n, a->c,
                                a->h * a->w, MODEL_BN_EPS);
        break;
    case OP_RELU:
        relu_backward(dx, dy, y, (size_t)n * a->size);
        break;
    case OP_MAXPOOL:
        maxpool2d_backward(dx, dy, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_AVGPOOL:
        avgpool2d_backward(dx, dy, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_GAP:
        global_avgpool_backward(dx, dy, n, a->c, a->h * a->w);
        break;
    case OP_LINEAR:
        linear_backward(dx, dw, db, dy, x, w, n, (int)a->size, o->c);
        break;
    case OP_ADD:
        add_backward(dx, input_grad(p, op, op->in2, op->zero_din2, n0, n), dy,
                     (size_t)n * a->size);
        break;
    case OP_CONCAT:
        concat_backward(dx, input_grad(p, op, op->in2, op->zero_din2, n0, n), dy, n, a->c,
                        g->acts[op->in2].c, a->h * a->w);
        break;
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        size_t conv_size = (size_t)o->c * ch * cw;
        /* (FUSED_GROUP, OC, ch, cw): the pre-pool gradients of a group of images */
        float *dtmp = p->scratch[t] + g->scratch_floats + g->conv_tmp_floats;
        for (int i = 0; i < n; i += FUSED_GROUP) {
            int group = n - i < FUSED_GROUP ? n - i : FUSED_GROUP;
            memset(dtmp, 0, sizeof(float) * conv_size * group);
            for (int j = 0; j < group; j++)
                relu_maxpool2x2_backward(dtmp + j * conv_size, dy + (size_t)(i + j) * o->size,
                                         y + (size_t)(i + j) * o->size,
                                         argmax_of(p, op, n0 + i + j), 1, o->c, ch, cw);
            conv2d_backward(dx ? dx + (size_t)i * a->size : NULL, dw, db, p->scratch[t], dtmp,
                            x + (size_t)i * a->size, w, group, a->c, a->h, a->w, o->c,
                            op->kernel, op->kernel, op->stride, op->pad);
        }
        break;
    }
    }
}

/* Training-mode batch norm, forward or backward, for thread t's share of the channels. */
static void batchnorm_phase(const Pass *p, const ModelOp *op, int t, int backward)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in];
    int c0, c1, HW = a->h * a->w, N = p->N;
    share(a->c, t, p->threads, &c0, &c1);
    if (c0 == c1)
        return;
    float *gamma = p->params + g->tensors[op->weight].offset;
    float *mean = p->stats + op->stat_offset, *invstd = mean + a->c;
    if (!backward) {
        batchnorm_forward_train(p->act[op->out], mean, invstd,
                                p->params + g->tensors[op->running_mean].offset,
                                p->params + g->tensors[op->running_var].offset, p->act[op->in],
                                gamma, p->params + g->tensors[op->bias].offset, N, a->c, HW, c0,
                                c1, MODEL_BN_MOMENTUM, MODEL_BN_EPS);
        return;
    }
    float *dx = p->dact[op->in];
    if (dx && op->zero_din)
        for (int n = 0; n < N; n++)
            memset(dx + ((size_t)n * a->c + c0) * HW, 0, sizeof(float) * (size_t)(c1 - c0) * HW);
    batchnorm_backward_train(dx, p->grads[t] + g->tensors[op->weight].offset,
                             p->grads[t] + g->tensors[op->bias].offset, p->dact[op->out],
                             p->act[op->in], gamma, mean, invstd, N, a->c, HW, c0, c1);
}

/* Thread t's part of the current segment: its share of the batch in chunks, ops in order
 * (forward) or in reverse (backward); a batch-statistics segment is split by channels. */
static void segment_phase(const Pass *p, int t, int backward)
{
    const ModelGraph *g = p->g;
    if (p->seg_kind == SEG_BATCH) {
        batchnorm_phase(p, &g->ops[p->seg_begin], t, backward);
        return;
    }
    int n0, n1;
    share(p->N, t, p->threads, &n0, &n1);
    int chunk = p->seg_kind == SEG_SAMPLE ? p->chunk : n1 - n0;
    for (int n = n0; n < n1; n += chunk) {
        int count = n1 - n < chunk ? n1 - n : chunk;
        if (backward)
            for (int i = p->seg_end - 1; i >= p->seg_begin; i--)
                op_backward(p, &g->ops[i], n, count, t);
        else
            for (int i = p->seg_begin; i < p->seg_end; i++)
                op_forward(p, &g->ops[i], n, count, t);
    }
}

static void forward_phase(void *arg, int t)
{
    segment_phase(arg, t, 0);
}

static void backward_phase(void *arg, int t)
{
    segment_phase(arg, t, 1);
}

/* ==== The thread pool ================================================================= */

typedef struct WorkerStart {
    struct ModelRuntime *rt;
    int t;
} WorkerStart;

struct ModelRuntime {
    int threads;
    int started;                   /* worker threads running (threads - 1 when all went well) */
    pthread_t workers[MODEL_MAX_THREADS];
    pthread_mutex_t mutex;
    pthread_cond_t wake, done;
    uint64_t generation;           /* bumped for every phase */
    int pending;                   /* workers still busy with the current phase */
    int quit;
    void (*job)(void *arg, int t);
    void *arg;
    float *memory;                 /* one allocation: per-thread scratch, then grads for t >= 1 */
    float *scratch[MODEL_MAX_THREADS];
    float *grads[MODEL_MAX_THREADS];
    WorkerStart starts[MODEL_MAX_THREADS];   /* each worker's argument */
};

static void *worker_main(void *arg)
{
    WorkerStart *start = arg;
    ModelRuntime *rt = start->rt;
    int t = start->t;
    uint64_t seen = 0;
    pthread_mutex_lock(&rt->mutex);
    for (;;) {
        while (!rt->quit && rt->generation == seen)
            pthread_cond_wait(&rt->wake, &rt->mutex);
        if (rt->quit)
            break;
        seen = rt->generation;
        pthread_mutex_unlock(&rt->mutex);
        rt->job(rt->arg, t);
        pthread_mutex_lock(&rt->mutex);
        if (--rt->pending == 0)
            pthread_cond_signal(&rt->done);
    }
    pthread_mutex_unlock(&rt->mutex);
    return NULL;
}

/* Run job(arg, t) for t = 0..threads-1 (t = 0 on the calling thread) and wait for all. */
static void run_phase(ModelRuntime *rt, int threads, void (*job)(void *, int), void *arg)
{
    if (!rt || threads <= 1) {
        job(arg, 0);
        return;
    }
    pthread_mutex_lock(&rt->mutex);
    rt->job = job, rt->arg = arg;
    rt->pending = threads - 1;
    rt->generation++;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mutex);
    job(arg, 0);
    pthread_mutex_lock(&rt->mutex);
    while (rt->pending > 0)
        pthread_cond_wait(&rt->done, &rt->mutex);
    pthread_mutex_unlock(&rt->mutex);
}

static void runtime_free(ModelRuntime *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->mutex);
    rt->quit = 1;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mutex);
    for (int i = 0; i < rt->started; i++)
        pthread_join(rt->workers[i], NULL);
    pthread_mutex_destroy(&rt->mutex);
    pthread_cond_destroy(&rt->wake);
    pthread_cond_destroy(&rt->done);
    free(rt->memory);
    free(rt);
}

/* A runtime with `threads` threads and their buffers for graph g; NULL with imgset_fail(). */
static ModelRuntime *runtime_create(const ModelGraph *g, int threads, float *grads0)
{
    ModelRuntime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return imgset_fail("model: out of memory"), NULL;
    rt->threads = threads;
    pthread_mutex_init(&rt->mutex, NULL);
    pthread_cond_init(&rt->wake, NULL);
    pthread_cond_init(&rt->done, NULL);
    size_t scratch = g->scratch_floats + (1 + FUSED_GROUP) * g->conv_tmp_floats + 1;
    size_t per_thread, total;
    if (size_mul(scratch, (size_t)threads, &per_thread) ||
        size_mul(g->param_floats, (size_t)threads - 1, &total) ||
        size_add(total, per_thread, &total) || total > SIZE_MAX / sizeof(float) ||
        !(rt->memory = malloc(total * sizeof(float) + 1))) {
        runtime_free(rt);
        return imgset_fail("model %s: cannot allocate buffers for %d threads", g->spec.arch,
                           threads), NULL;
    }
    for (int t = 0; t < threads; t++) {
        rt->scratch[t] = rt->memory + (size_t)t * scratch;
        rt->grads[t] = t == 0 ? grads0
                              : rt->memory + per_thread + (size_t)(t - 1) * g->param_floats;
    }
    for (int t = 1; t < threads; t++) {
        rt->starts[t] = (WorkerStart){rt, t};
        if (pthread_create(&rt->workers[rt->started], NULL, worker_main, &rt->starts[t])) {
            runtime_free(rt);
            return imgset_fail("model: cannot start thread %d of %d", t + 1, threads), NULL;
        }
        rt->started++;
    }
    return rt;
}

/* ==== Passes =========================================================================== */

/* Point every activation and gradient of pass p into memory laid out for `capacity` images:
 * activations first, then (when grads is set) their gradients. */
static void point_acts(Pass *p, float *memory, int capacity, int with_grads)
{
    const ModelGraph *g = p->g;
    for (int a = 0; a < g->num_acts; a++) {
        p->act[a] = memory + g->acts[a].offset * capacity;
        p->dact[a] = with_grads && a > 0
                         ? memory + (g->act_floats + g->acts[a].offset) * capacity : NULL;
    }
}

/* Run every forward segment of pass p. */
static void run_forward(Pass *p, ModelRuntime *rt)
{
    for (int begin = 0; begin < p->g->num_ops;) {
        int kind, end = segment_end(p, begin, &kind);
        p->seg_begin = begin, p->seg_end = end, p->seg_kind = kind;
        p->chunk = segment_chunk(p);
        run_phase(rt, p->threads, forward_phase, p);
        begin = end;
    }
}

size_t model_inference_workspace_floats(const ModelGraph *g, int N)
{
    size_t total;
    if (N < 1 || size_mul(g->act_floats, (size_t)N, &total) ||
        size_add(total, g->stat_floats, &total) || size_add(total, g->scratch_floats, &total) ||
        size_add(total, g->conv_tmp_floats, &total) || total > SIZE_MAX / sizeof(float))
        return 0;
    return total;
}

void model_inference(const ModelGraph *g, const float *params, const float *x, int N,
                     float *workspace, float *logits)
{
    Pass p;
    memset(&p, 0, sizeof p);
    p.g = g;
    p.params = (float *)params;   /* evaluation mode never writes parameters */
    p.N = N, p.threads = 1, p.training = 0, p.capacity = N;
    point_acts(&p, workspace, N, 0);
    p.act[0] = (float *)x;        /* read only */
    p.stats = workspace + g->act_floats * N;
    p.scratch[0] = p.stats + g->stat_floats;
    run_forward(&p, NULL);
    memcpy(logits, p.act[g->output], sizeof(float) * (size_t)N * g->spec.classes);
}

/* ==== The training model ============================================================== */

/* Floats of Model.acts: activations and gradients for max_batch, BN statistics, the softmax
 * probabilities of the loss, then the fused conv blocks' argmax bytes. 0 on overflow. */
static size_t acts_floats(const ModelGraph *g, int max_batch)
{
    size_t per, total, probs;
    if (size_mul(g->act_floats, 2, &per) || size_add(per, g->aux_floats, &per) ||
        size_mul(per, (size_t)max_batch, &total) ||
        size_mul((size_t)g->spec.classes, (size_t)max_batch, &probs) ||
        size_add(total, probs, &total) || size_add(total, g->stat_floats, &total) ||
        total > SIZE_MAX / sizeof(float))
        return 0;
    return total;
}

static float *probs_of(const Model *m)
{
    return m->acts + 2 * m->graph.act_floats * m->max_batch + m->graph.stat_floats;
}

/* The pass over m's memory for its last forward (N images). */
static void model_pass(const Model *m, Pass *p, int N, int training)
{
    memset(p, 0, sizeof *p);
    p->g = &m->graph;
    p->params = m->params;
    p->N = N, p->threads = m->threads, p->training = training, p->capacity = m->max_batch;
    point_acts(p, m->acts, m->max_batch, 1);
    p->stats = m->acts + 2 * m->graph.act_floats * m->max_batch;
    p->aux = training ? probs_of(m) + (size_t)m->graph.spec.classes * m->max_batch : NULL;
    for (int t = 0; t < m->threads; t++) {
        p->scratch[t] = m->runtime->scratch[t];
        p->grads[t] = m->runtime->grads[t];
    }
}

/* Initialise every tensor as PyTorch's defaults, each from its own stream of seed. */
static void init_params(Model *m)
{
    const ModelGraph *g = &m->graph;
    for (int i = 0; i < g->num_ops; i++) {
        const ModelOp *op = &g->ops[i];
        if (op->kind == OP_BATCHNORM) {
            const int ones[2] = {op->weight, op->running_var};
            const int zeros[2] = {op->bias, op->running_mean};
            for (int k = 0; k < 2; k++) {
                const ModelTensor *t1 = &g->tensors[ones[k]], *t0 = &g->tensors[zeros[k]];
                for (size_t j = 0; j < t1->count; j++)
                    m->params[t1->offset + j] = 1.0f;
                memset(m->params + t0->offset, 0, sizeof(float) * t0->count);
            }
        } else if (op->kind == OP_CONV || op->kind == OP_LINEAR ||
                   op->kind == OP_CONV_RELU_POOL) {
            const ModelTensor *w = &g->tensors[op->weight];
            /* kaiming_uniform_(a=sqrt(5)) and the bias rule both give 1/sqrt(fan_in) */
            double fan_in = (double)(w->count / (size_t)w->shape[0]);
            float bound = (float)(1.0 / sqrt(fan_in));
            const int ids[2] = {op->weight, op->bias};
            for (int k = 0; k < 2; k++) {
                if (ids[k] < 0)
                    continue;
                const ModelTensor *t = &g->tensors[ids[k]];
                Rng rng = rng_make(m->seed, (uint64_t)ids[k]);
                for (size_t j = 0; j < t->count; j++)
                    m->params[t->offset + j] = (2.0f * rng_uniform(&rng) - 1.0f) * bound;
            }
        }
    }
}

Model *model_create(const char *arch, int C, int H, int W, int K, int max_batch, uint64_t seed)
{
    Model *m = calloc(1, sizeof *m);
    if (!m)
        return imgset_fail("model: out of memory"), NULL;
    if (model_graph_build(&m->graph, arch, C, H, W, K) < 0) {
        free(m);
        return NULL;
    }
    const ModelGraph *g = &m->graph;
    size_t acts = max_batch >= 1 ? acts_floats(g, max_batch) : 0;
    if (!acts) {
        free(m);
        return imgset_fail("model %s: bad batch size %d for input %dx%dx%d", arch, max_batch,
                           C, H, W), NULL;
    }
    m->max_batch = max_batch;
    m->seed = seed;
    m->threads = 1;
    m->params = malloc(sizeof(float) * g->param_floats);
    m->grads = calloc(g->param_floats, sizeof(float));
    m->velocity = calloc(g->param_floats, sizeof(float));
    m->acts = malloc(sizeof(float) * acts);
    if (!m->params || !m->grads || !m->velocity || !m->acts ||
        !(m->runtime = runtime_create(g, 1, m->grads))) {
        model_free(m);
        return imgset_fail("model %s: cannot allocate %zu MB for batch %d", arch,
                           (acts + 3 * g->param_floats) * sizeof(float) >> 20, max_batch), NULL;
    }
    init_params(m);
#ifdef IMGSET_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    return m;
}

int model_set_threads(Model *m, int threads)
{
    if (threads < 1 || threads > MODEL_MAX_THREADS)
        return imgset_fail("model: bad thread count %d (1..%d)", threads, MODEL_MAX_THREADS);
    if (threads == m->threads)
        return 0;
    ModelRuntime *rt = runtime_create(&m->graph, threads, m->grads);
    if (!rt)
        return -1;
    runtime_free(m->runtime);
    m->runtime = rt;
    m->threads = threads;
#ifdef IMGSET_HAVE_OPENBLAS
    openblas_set_num_threads(1);   /* the model splits the work itself */
#endif
    return 0;
}

const float *model_forward(Model *m, const float *x, int N, int training)
{
    if (N < 1 || N > m->max_batch)
        return imgset_fail("model: batch of %d images outside 1..%d", N, m->max_batch), NULL;
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        float *logits = m->acts + m->graph.acts[m->graph.output].offset * m->max_batch;
        if (model_cuda_forward(m->cuda, x, N, training, logits) < 0)
            return NULL;
        m->batch = N;
        m->training = training;
        return logits;
    }
#endif
    Pass p;
    model_pass(m, &p, N, training);
    if (training)
        memcpy(p.act[0], x, sizeof(float) * m->graph.acts[0].size * N);
    else
        p.act[0] = (float *)x;   /* read only */
    run_forward(&p, m->runtime);
    m->batch = N;
    m->training = training;
    return p.act[m->graph.output];
}

float *model_dlogits(Model *m)
{
    return m->acts + (m->graph.act_floats + m->graph.acts[m->graph.output].offset) * m->max_batch;
}

int model_loss(Model *m, const int32_t *labels, float *loss)
{
    int N = m->batch, K = m->graph.spec.classes;
    if (N < 1)
        return imgset_fail("model: loss before any forward");
    for (int n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return imgset_fail("model: label %d of image %d outside 0..%d", labels[n], n, K - 1);
    const float *logits = m->acts + m->graph.acts[m->graph.output].offset * m->max_batch;
    float *dlogits = model_dlogits(m), *probs = probs_of(m);
    *loss = softmax_cross_entropy_forward(probs, logits, labels, N, K);
    memset(dlogits, 0, sizeof(float) * (size_t)N * K);
    softmax_cross_entropy_backward(dlogits, probs, labels, N, K, 1.0f);
    return 0;
}

void model_zero_grad(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        model_cuda_zero_grad(m->cuda);
        return;
    }
#endif
    memset(m->grads, 0, sizeof(float) * m->graph.param_floats);
}

/* Zero thread t's private gradients (t >= 1; thread 0 adds straight into m->grads). */
static void zero_thread_grads(void *arg, int t)
{
    const Pass *p = arg;
    if (t > 0)
        memset(p->grads[t], 0, sizeof(float) * p->g->param_floats);
}

/* Add the other threads' gradients into thread 0's, thread t taking its share of the floats,
 * always in thread order so the sum is the same on every run. */
static void reduce_grads(void *arg, int t)
{
    const Pass *p = arg;
    int b, e;
    share((int)((p->g->param_floats + 15) / 16), t, p->threads, &b, &e);
    size_t begin = (size_t)b * 16, end = (size_t)e * 16;
    if (end > p->g->param_floats)
        end = p->g->param_floats;
    for (int s = 1; s < p->threads; s++)
        for (size_t i = begin; i < end; i++)
            p->grads[0][i] += p->grads[s][i];
}

int model_backward(Model *m)
{
    if (m->batch < 1 || !m->training)
        return imgset_fail("model: backward needs a training forward first");
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_backward(m->cuda, model_dlogits(m), m->batch);
#endif
    Pass p;
    model_pass(m, &p, m->batch, 1);
    ModelRuntime *rt = m->runtime;
    run_phase(rt, p.threads, zero_thread_grads, &p);
    /* segments in reverse: find them forwards, then walk back */
    int starts[MODEL_MAX_OPS], count = 0;
    for (int begin = 0; begin < m->graph.num_ops;) {
        int kind;
        starts[count++] = begin;
        begin = segment_end(&p, begin, &kind);
    }
    for (int s = count - 1; s >= 0; s--) {
        int kind, end = segment_end(&p, starts[s], &kind);
        p.seg_begin = starts[s], p.seg_end = end, p.seg_kind = kind;
        p.chunk = segment_chunk(&p);
        run_phase(rt, p.threads, backward_phase, &p);
    }
    run_phase(rt, p.threads, reduce_grads, &p);
    return 0;
}

typedef struct StepArgs {
    Model *m;
    float lr;
    const SgdConfig *config;
} StepArgs;

/* Thread t's share of every trainable tensor. */
static void sgd_phase(void *arg, int t)
{
    const StepArgs *s = arg;
    const ModelGraph *g = &s->m->graph;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *tensor = &g->tensors[i];
        if (!tensor->trainable)
            continue;
        int b, e;
        share((int)tensor->count, t, s->m->threads, &b, &e);
        size_t o = tensor->offset + (size_t)b;
        sgd_step(s->m->params + o, s->m->velocity + o, s->m->grads + o, (size_t)(e - b), s->lr,
                 s->config);
    }
}

void model_sgd_step(Model *m, float lr, const SgdConfig *config)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        model_cuda_sgd_step(m->cuda, lr, config);
        m->step++;
        return;
    }
#endif
    StepArgs s = {m, lr, config};
    run_phase(m->runtime, m->threads, sgd_phase, &s);
    m->step++;
}

int model_use_device(Model *m, int device)
{
    if (device != MODEL_CPU && device != MODEL_CUDA)
        return imgset_fail("model: bad device number %d", device);
    if (device == m->device)
        return 0;
#ifdef IMGSET_HAVE_CUDA
    if (device == MODEL_CUDA) {
        if (gpu_require_device("model") < 0 ||
            !(m->cuda = model_cuda_create(&m->graph, m->max_batch, m->params, m->velocity)))
            return -1;
    } else {
        if (model_sync_host(m) < 0)
            return -1;
        model_cuda_free(m->cuda);
        m->cuda = NULL;
    }
    m->device = device;
    m->batch = 0;   /* the last forward's activations stay where they were computed */
    return 0;
#else
    return imgset_fail("model: no CUDA device (this build has no CUDA: nvcc was not found, or "
                       "NO_CUDA=1)");
#endif
}

int model_sync_host(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_download(m->cuda, m->params, m->grads, m->velocity);
#endif
    return 0;
}

double model_device_seconds(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_busy_seconds(m->cuda);
#endif
    return 0;
}

size_t model_num_parameters(const Model *m)
{
    return m->graph.trainable_floats;
}

void model_free(Model *m)
{
    if (!m)
        return;
#ifdef IMGSET_HAVE_CUDA
    model_cuda_free(m->cuda);
#endif
    runtime_free(m->runtime);
    free(m->params);
    free(m->grads);
    free(m->velocity);
    free(m->acts);
    free(m);
}

/* ==== OpenBLAS's CPU kernel =========================================================== */

const char *model_blas_core(void)
{
#ifdef IMGSET_HAVE_OPENBLAS
    return openblas_get_corename();
#else
    return "none";
#endif
}

/* 1 when OpenBLAS fell back to a kernel older than what this CPU can run. */
static int blas_core_is_fallback(const char *core)
{
    static const char *const old[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                      "Atom", "Sandybridge"};
    for (size_t i = 0; core && i < sizeof old / sizeof old[0]; i++)
        if (strcmp(core, old[i]) == 0)
            return 1;
    return 0;
}

int model_blas_reexec(char **argv)
{
#if defined(IMGSET_HAVE_OPENBLAS) && defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE") || !blas_core_is_fallback(openblas_get_corename()))
        return 0;
    const char *better = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") ? "Haswell" : NULL;
    if (!better)
        return 0;
    setenv("OPENBLAS_CORETYPE", better, 1);   /* read by OpenBLAS when the new image loads */
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    return imgset_fail("cannot re-execute with OPENBLAS_CORETYPE=%s: %m", better);
#else
    (void)argv;
    return 0;
#endif
}
