/* graph.c — the named architectures as op graphs: activations, tensors and their memory
 * layout, checked for size before anything is allocated. */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "error.h"
#include "nn.h"

_Static_assert(MODEL_NORM_CHANNELS == IMGSET_MAX_CHANNELS, "a normalisation per image channel");

#define MAX_PARAM_FLOATS ((size_t)1 << 28)   /* 1 GiB of weights: surely a wrong shape */

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

/* An element-wise op of `kind` after `in`. */
static ModelOp *elementwise(Builder *b, int kind, int in)
{
    const ModelAct a = b->g->acts[in];
    ModelOp *op = add_op(b, kind, in);
    op->out = add_act(b, a.c, a.h, a.w);
    return op;
}

static int relu(Builder *b, int in)
{
    return elementwise(b, OP_RELU, in)->out;
}

/* The spec's hidden activation after `in`. */
static int activation(Builder *b, int in)
{
    static const int kinds[ACT_COUNT] = {OP_RELU, OP_LEAKY_RELU, OP_TANH, OP_SIGMOID};
    ModelOp *op = elementwise(b, kinds[b->g->spec.activation], in);
    op->slope = b->g->spec.leaky_slope;
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
    x = activation(b, linear(b, "fc1", x, 256));
    x = activation(b, linear(b, "fc2", x, 128));
    return linear(b, "fc3", x, K);
}

/* conv3x3 pad 1 -> activation -> maxpool 2x2: one fused op for ReLU, else three. */
static int conv_block(Builder *b, const char *name, int x, int channels)
{
    if (b->g->spec.activation == ACT_RELU)
        return conv_relu_pool(b, name, x, channels, 3, 1, 1);
    return pool(b, OP_MAXPOOL, activation(b, conv(b, name, x, channels, 3, 1, 1, 1)), 2, 2);
}

static int build_cnn_small(Builder *b, int x, int K)
{
    x = conv_block(b, "conv1", x, 32);
    x = conv_block(b, "conv2", x, 64);
    x = activation(b, linear(b, "fc1", x, 128));
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
    int any_activation;   /* 0: ReLU only */
} Arch;

static const Arch archs[] = {
    {"mlp", build_mlp, 1},
    {"cnn-small", build_cnn_small, 1},
    {"resnet8", build_resnet8, 0},
    {"densenet-tiny", build_densenet_tiny, 0},
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

static const char *const activation_names[ACT_COUNT] = {"relu", "leaky-relu", "tanh", "sigmoid"};
static const char *const normalize_names[NORM_COUNT] = {"meanstd", "minmax"};

/* The index of name in names[0..n-1], or -1. */
static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *model_activation_name(int activation)
{
    return activation >= 0 && activation < ACT_COUNT ? activation_names[activation] : "?";
}

int model_activation_from_name(const char *name)
{
    return name_index(activation_names, ACT_COUNT, name);
}

const char *model_normalize_name(int normalize)
{
    return normalize >= 0 && normalize < NORM_COUNT ? normalize_names[normalize] : "?";
}

int model_normalize_from_name(const char *name)
{
    return name_index(normalize_names, NORM_COUNT, name);
}

void model_spec_default(ModelSpec *spec, const char *arch, int C, int H, int W, int K)
{
    memset(spec, 0, sizeof *spec);
    snprintf(spec->arch, sizeof spec->arch, "%s", arch);
    spec->channels = C, spec->height = H, spec->width = W, spec->classes = K;
    spec->activation = ACT_RELU;
    spec->leaky_slope = MODEL_LEAKY_SLOPE;
    spec->loss = LOSS_CCE;
    spec->normalize = NORM_MEANSTD;
    for (int c = 0; c < MODEL_NORM_CHANNELS; c++)
        spec->mean[c] = spec->std[c] = 0.5f;
}

/* 0 when what the spec says besides the shape is in range (activation for arch included);
 * -1 with imgset_fail(). */
static int check_recipe(const ModelSpec *s, const Arch *arch)
{
    if (s->activation < 0 || s->activation >= ACT_COUNT)
        return imgset_fail("model %s: unknown activation %d", s->arch, s->activation);
    if (s->activation != ACT_RELU && !arch->any_activation)
        return imgset_fail("model %s uses ReLU: the activation %s is for mlp and cnn-small",
                           s->arch, activation_names[s->activation]);
    if (!(s->leaky_slope >= 0.0f && s->leaky_slope <= 1.0f))
        return imgset_fail("model %s: leaky-relu slope %g outside [0, 1]", s->arch,
                           (double)s->leaky_slope);
    if (s->loss < 0 || s->loss >= LOSS_COUNT)
        return imgset_fail("model %s: unknown loss %d", s->arch, s->loss);
    if (s->normalize < 0 || s->normalize >= NORM_COUNT)
        return imgset_fail("model %s: unknown normalisation %d", s->arch, s->normalize);
    for (int c = 0; c < s->channels && c < MODEL_NORM_CHANNELS; c++)
        if (!isfinite(s->mean[c]) || !(s->std[c] > 0.0f) || !isfinite(s->std[c]))
            return imgset_fail("model %s: channel %d normalised with mean %g, std %g (a finite "
                               "mean and a positive std are needed)", s->arch, c,
                               (double)s->mean[c], (double)s->std[c]);
    return 0;
}

int model_graph_build(ModelGraph *g, const ModelSpec *spec_in)
{
    const ModelSpec copy = *spec_in, *spec = &copy;   /* spec_in may be g's own */
    const char *arch = spec->arch;
    int C = spec->channels, H = spec->height, W = spec->width, K = spec->classes;
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
    if (check_recipe(spec, found) < 0)
        return -1;
    g->spec = *spec;
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
