/* test_model.c — the models: shapes and parameter counts, forward / backward / SGD against the
 * PyTorch reference tensors in test/reference/, thread-count and run-to-run determinism, the
 * allocation-free inference path, bad arguments, and a short training run that must learn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "error.h"
#include "model.h"
#include "nn.h"
#include "rng.h"
#include "tap.h"

/*
 * Tolerance against PyTorch: for every compared tensor, max |ours - torch| must be at most
 * REF_TOL times max(max |torch|, 1e-3). Both run float32 with different summation orders;
 * the observed differences are ~1e-6 relative.
 */
#define REF_TOL 1e-4
#define REF_SEED 20240601ull

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

/* Fill m's parameters with make_reference.py's formula (see its docstring). */
static void fill_reference_params(Model *m)
{
    const ModelGraph *g = &m->graph;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *t = &g->tensors[i];
        char prefix[MODEL_NAME_MAX], probe[MODEL_NAME_MAX + 16];
        snprintf(prefix, sizeof prefix, "%s", t->name);
        char *dot = strrchr(prefix, '.');
        const char *kind = dot + 1;
        *dot = 0;
        snprintf(probe, sizeof probe, "%s.running_mean", prefix);
        int is_bn = model_graph_find(g, probe) >= 0;
        snprintf(probe, sizeof probe, "%s.weight", prefix);
        const ModelTensor *w = &g->tensors[model_graph_find(g, probe)];
        float bound = (float)(1.0 / sqrt((double)(w->count / (size_t)w->shape[0])));
        Rng rng = rng_make(REF_SEED, fnv1a64(t->name));
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->count; j++) {
            float u = rng_uniform(&rng);
            if (!is_bn)
                p[j] = (2.0f * u - 1.0f) * bound;
            else if (strcmp(kind, "weight") == 0 || strcmp(kind, "running_var") == 0)
                p[j] = 0.5f + u;
            else if (strcmp(kind, "bias") == 0)
                p[j] = (2.0f * u - 1.0f) * 0.5f;
            else
                p[j] = (2.0f * u - 1.0f) * 0.2f;
        }
    }
}

/* test/reference/<name>.safetensors under $IMGSET_ROOT, else the working directory, else
 * two levels above this binary (build/test/). */
static void reference_path(char *path, size_t cap, const char *name)
{
    const char *root = getenv("IMGSET_ROOT");
    snprintf(path, cap, "%s/test/reference/%s.safetensors", root ? root : ".", name);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return;
    }
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(path, cap, "%s/../../test/reference/%s.safetensors", exe, name);
}

/* A reference file, parsed. */
typedef struct Reference {
    uint8_t *bytes;
    void *arena;
    Safetensors st;
} Reference;

static int reference_open(Reference *r, const char *path)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    r->bytes = malloc(len);
    size_t got = fread(r->bytes, 1, len, f);
    fclose(f);
    size_t arena = safetensors_arena_size(r->bytes, len);
    r->arena = malloc(arena);
    if (got != len || safetensors_parse(&r->st, r->bytes, len, r->arena, arena, path))
        return -1;
    return 0;
}

static void reference_close(Reference *r)
{
    free(r->bytes);
    free(r->arena);
}

/* The reference tensor `name` as floats (caller frees), count in *n; NULL when missing. */
static float *reference_get(const Reference *r, const char *name, size_t *n)
{
    const SafetensorsTensor *t = safetensors_find(&r->st, name);
    if (!t)
        return NULL;
    *n = (size_t)(t->end - t->begin) / 4;
    float *x = malloc(*n * sizeof(float) + 4);
    if (safetensors_read_f32(&r->st, t, x, *n, name)) {
        free(x);
        return NULL;
    }
    return x;
}

/* Relative difference (see REF_TOL) of ours (n, taken every `stride`) against ref (n / stride). */
static double compare(const float *ours, size_t stride, const float *ref, size_t n)
{
    double worst = 0.0, scale = 1e-3;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(ours[i * stride] - ref[i]));
    return worst / scale;
}

/* Compare every trainable tensor of m (sampled as in make_reference.py) with prefix.<name>;
 * values = m->params or m->grads. Returns the worst relative difference, or 1e9 on mismatch. */
static double compare_tensors(const Model *m, const float *values, const Reference *r,
                              const char *prefix, const char **worst_name)
{
    double worst = 0.0;
    for (int i = 0; i < m->graph.num_tensors; i++) {
        const ModelTensor *t = &m->graph.tensors[i];
        char name[MODEL_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s.%s", prefix, t->name);
        size_t n, stride = t->count / 256 ? t->count / 256 : 1;
        float *ref = reference_get(r, name, &n);
        if (!t->trainable && !ref)
            continue;
        if (!ref || n != (t->count + stride - 1) / stride) {
            *worst_name = t->name;
            free(ref);
            return 1e9;
        }
        double d = compare(values + t->offset, stride, ref, n);
        if (d > worst) {
            worst = d;
            *worst_name = t->name;
        }
        free(ref);
    }
    return worst;
}

/* Run the reference procedure of make_reference.py on `name` with `threads` threads. */
static void test_reference(const char *name, int threads)
{
    char path[1024], what[96];
    reference_path(path, sizeof path, name);
    snprintf(what, sizeof what, "%s vs PyTorch, %d thread%s", name, threads,
             threads > 1 ? "s" : "");
    Reference r;
    if (reference_open(&r, path) < 0) {
        ok(0, "%s: read %s (%s)", what, path, imgset_error());
        reference_close(&r);
        return;
    }
    const char *arch = safetensors_meta(&r.st, "arch");
    int C = atoi(safetensors_meta(&r.st, "channels")), H = atoi(safetensors_meta(&r.st, "height"));
    int W = atoi(safetensors_meta(&r.st, "width")), K = atoi(safetensors_meta(&r.st, "classes"));
    int N = atoi(safetensors_meta(&r.st, "batch"));
    ModelSpec spec;
    model_spec_default(&spec, arch, C, H, W, K);
    const char *act = safetensors_meta(&r.st, "activation");   /* absent: relu, cce */
    const char *loss_name = safetensors_meta(&r.st, "loss");
    const char *slope = safetensors_meta(&r.st, "leaky_slope");
    if (act)
        spec.activation = model_activation_from_name(act);
    if (loss_name)
        spec.loss = nn_loss_from_name(loss_name);
    if (slope)
        spec.leaky_slope = strtof(slope, NULL);
    Model *m = model_create_spec(&spec, N, 1);
    if (!ok(m && model_set_threads(m, threads) == 0, "%s: create %s %dx%dx%d", what, arch, C, H,
            W)) {
        reference_close(&r);
        model_free(m);
        return;
    }
    fill_reference_params(m);
    size_t nx = (size_t)N * C * H * W, n;
    float *x = malloc(nx * sizeof(float));
    Rng rng = rng_make(REF_SEED, fnv1a64("input"));
    for (size_t i = 0; i < nx; i++)
        x[i] = 2.0f * rng_uniform(&rng) - 1.0f;
    float *labels_f = reference_get(&r, "labels", &n);
    int32_t labels[64];
    for (int i = 0; i < N; i++)
        labels[i] = (int32_t)labels_f[i];
    free(labels_f);

    float loss, *ref;
    const char *worst = "";
    const float *logits = model_forward(m, x, N, 1);
    model_zero_grad(m);
    model_loss(m, labels, &loss);
    model_backward(m);
    ref = reference_get(&r, "logits", &n);
    double d = compare(logits, 1, ref, n);
    ok(d < REF_TOL, "%s: training-mode logits (rel. diff %.2g)", what, d);
    free(ref);
    ref = reference_get(&r, "loss", &n);
    ok(fabs(loss - ref[0]) < REF_TOL * fabs(ref[0]), "%s: loss %.6f (torch %.6f)", what, loss,
       ref[0]);
    free(ref);
    d = compare_tensors(m, m->grads, &r, "grad", &worst);
    ok(d < REF_TOL, "%s: gradients of every parameter (worst rel. diff %.2g in %s)", what, d,
       worst);
    d = 0.0;
    int have_running = 0;
    for (int i = 0; i < m->graph.num_tensors; i++) {
        const ModelTensor *t = &m->graph.tensors[i];
        char rn[MODEL_NAME_MAX + 16];
        snprintf(rn, sizeof rn, "running.%s", t->name);
        if (t->trainable || !(ref = reference_get(&r, rn, &n)))
            continue;
        have_running = 1;
        d = fmax(d, n == t->count ? compare(m->params + t->offset, 1, ref, n) : 1e9);
        free(ref);
    }
    if (have_running)
        ok(d < REF_TOL, "%s: BN running statistics after the forward (rel. diff %.2g)", what, d);

    /* two SGD steps (Nesterov, weight decay), the second after a fresh forward / backward */
    SgdConfig sgd = {0.9f, 5e-4f, 1};
    model_sgd_step(m, 0.1f, &sgd);
    model_zero_grad(m);
    model_forward(m, x, N, 1);
    model_loss(m, labels, &loss);
    model_backward(m);
    model_sgd_step(m, 0.1f, &sgd);
    ref = reference_get(&r, "loss2", &n);
    ok(fabs(loss - ref[0]) < REF_TOL * fmax(fabs(ref[0]), 1e-2), "%s: loss after one SGD step "
       "%.6f (torch %.6f)", what, loss, ref[0]);
    free(ref);
    d = compare_tensors(m, m->params, &r, "after", &worst);
    ok(d < REF_TOL, "%s: parameters after two SGD steps (worst rel. diff %.2g in %s)", what, d,
       worst);

    logits = model_forward(m, x, N, 0);
    ref = reference_get(&r, "eval_logits", &n);
    d = compare(logits, 1, ref, n);
    ok(d < REF_TOL, "%s: evaluation-mode logits (rel. diff %.2g)", what, d);
    free(ref);

    if (threads == 1) {
        /* the extension's path: caller-owned workspace, no allocation inside */
        size_t ws = model_inference_workspace_floats(&m->graph, N);
        float *workspace = malloc(ws * sizeof(float)), *out = malloc(sizeof(float) * N * K);
        model_inference(&m->graph, m->params, x, N, workspace, out);
        ok(memcmp(out, logits, sizeof(float) * N * K) == 0,
           "%s: model_inference() equals the evaluation forward bit for bit", what);
        free(workspace);
        free(out);
    }
    free(x);
    model_free(m);
    reference_close(&r);
}

/* model_graph_build of the default spec for arch, C x H x W, K classes. */
static int build(ModelGraph *g, const char *arch, int C, int H, int W, int K)
{
    ModelSpec spec;
    model_spec_default(&spec, arch, C, H, W, K);
    return model_graph_build(g, &spec);
}

/* The number of ops of kind in g. */
static int count_ops(const ModelGraph *g, int kind)
{
    int n = 0;
    for (int i = 0; i < g->num_ops; i++)
        n += g->ops[i].kind == kind;
    return n;
}

/* Activations: which ops each builds, where they are taken, and what is refused. */
static void test_activation_graphs(void)
{
    static ModelGraph g;
    ModelSpec spec;
    static const int ops[ACT_COUNT] = {OP_RELU, OP_LEAKY_RELU, OP_TANH, OP_SIGMOID};
    for (int a = 0; a < ACT_COUNT; a++) {
        model_spec_default(&spec, "cnn-small", 1, 28, 28, 10);
        spec.activation = a;
        spec.leaky_slope = 0.2f;
        int rc = model_graph_build(&g, &spec);
        int fused = count_ops(&g, OP_CONV_RELU_POOL), convs = count_ops(&g, OP_CONV);
        int acts = count_ops(&g, ops[a]), pools = count_ops(&g, OP_MAXPOOL);
        ok(rc == 0 && g.trainable_floats == 421642 && g.acts[g.output].c == 10 &&
               (a == ACT_RELU ? fused == 2 && convs == 0 && acts == 1 && pools == 0
                              : fused == 0 && convs == 2 && acts == 3 && pools == 2) &&
               g.acts[g.ops[g.num_ops - 2].in].size == 128,
           "cnn-small with %s: %s, the same %zu parameters", model_activation_name(a),
           a == ACT_RELU ? "two fused conv-ReLU-pool blocks and one ReLU"
                         : "conv, activation, max-pool twice and one more activation",
           g.trainable_floats);
        model_spec_default(&spec, "mlp", 3, 8, 8, 4);
        spec.activation = a;
        spec.leaky_slope = 0.2f;
        rc = model_graph_build(&g, &spec);
        int slopes_ok = 1;
        for (int i = 0; i < g.num_ops; i++)
            if (g.ops[i].kind == OP_LEAKY_RELU)
                slopes_ok &= g.ops[i].slope == 0.2f;
        ok(rc == 0 && count_ops(&g, ops[a]) == 2 && slopes_ok,
           "mlp with %s: two of them, between its three linear layers",
           model_activation_name(a));
    }
    model_spec_default(&spec, "resnet8", 3, 32, 32, 10);
    spec.activation = ACT_TANH;
    ok(model_graph_build(&g, &spec) < 0 && strstr(imgset_error(), "mlp and cnn-small"),
       "resnet8 with tanh is refused: %s", imgset_error());
    model_spec_default(&spec, "mlp", 3, 8, 8, 4);
    spec.activation = ACT_LEAKY_RELU;
    spec.leaky_slope = -1.0f;
    ok(model_graph_build(&g, &spec) < 0 && strstr(imgset_error(), "slope"),
       "a negative leaky-relu slope is refused: %s", imgset_error());
    model_spec_default(&spec, "mlp", 3, 8, 8, 4);
    spec.loss = LOSS_COUNT;
    ok(model_graph_build(&g, &spec) < 0 && strstr(imgset_error(), "loss"),
       "an unknown loss is refused: %s", imgset_error());
    model_spec_default(&spec, "mlp", 3, 8, 8, 4);
    spec.std[2] = 0.0f;
    ok(model_graph_build(&g, &spec) < 0 && strstr(imgset_error(), "channel 2"),
       "a zero std is refused: %s", imgset_error());
    spec.std[2] = 0.5f;
    spec.mean[3] = NAN;   /* a fourth channel the 3-channel model does not have */
    ok(model_graph_build(&g, &spec) == 0, "normalisation of channels the input lacks is "
       "not looked at");
    ok(strcmp(model_activation_name(ACT_LEAKY_RELU), "leaky-relu") == 0 &&
       model_activation_from_name("tanh") == ACT_TANH && model_activation_from_name("TANH") < 0 &&
       model_normalize_from_name("minmax") == NORM_MINMAX && nn_loss_from_name("mae") == LOSS_MAE &&
       nn_loss_from_name("ce") < 0 && strcmp(nn_loss_name(LOSS_BCE), "bce") == 0,
       "names of activations, normalisations and losses both ways");
}

static void test_graphs(void)
{
    static const struct {
        const char *arch;
        int C, H, W, K;
        size_t params;
        int tensors;
    } cases[] = {
        {"mlp", 3, 32, 32, 10, 820874, 6},
        {"cnn-small", 3, 32, 32, 10, 545098, 8},
        {"cnn-small", 1, 28, 28, 10, 421642, 8},
        {"cnn-small", 3, 64, 64, 200, 2142472, 8},
        {"resnet8", 3, 32, 32, 10, 78042, 47},
        {"resnet8", 3, 512, 512, 10, 78042, 47},
        {"resnet8", 3, 64, 64, 200, 90392, 47},
        {"densenet-tiny", 3, 32, 32, 10, 46306, 62},
        {"densenet-tiny", 3, 512, 512, 10, 46306, 62},
    };
    static ModelGraph g;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = build(&g, cases[i].arch, cases[i].C, cases[i].H, cases[i].W,
                                   cases[i].K);
        ok(rc == 0 && g.trainable_floats == cases[i].params &&
           g.num_tensors == cases[i].tensors && g.acts[g.output].c == cases[i].K,
           "%s %dx%dx%d, %d classes: %zu parameters in %d tensors (PyTorch: %zu in %d)",
           cases[i].arch, cases[i].C, cases[i].H, cases[i].W, cases[i].K,
           rc ? 0 : g.trainable_floats, g.num_tensors, cases[i].params, cases[i].tensors);
    }
    ok(build(&g, "resnet8", 3, 512, 512, 10) == 0 && g.acts[g.ops[0].out].h == 256,
       "resnet8 on 512x512: the stem has stride 2 (256x256 after it)");
    ok(model_graph_find(&g, "layer2.shortcut.bn.running_var") >= 0 &&
       model_graph_find(&g, "layer1.shortcut.conv.weight") < 0,
       "resnet8: shortcut projection only where the shape changes");
    ok(build(&g, "cnn-huge", 3, 32, 32, 10) < 0 &&
       strstr(imgset_error(), "unknown model \"cnn-huge\""), "unknown architecture: %s",
       imgset_error());
    ok(build(&g, "cnn-small", 3, 3, 3, 10) < 0 && strstr(imgset_error(), "too small"),
       "cnn-small on 3x3 input: %s", imgset_error());
    ok(build(&g, "cnn-small", 3, 32, 32, 1) < 0 && strstr(imgset_error(), "classes"),
       "one class is refused: %s", imgset_error());
    ok(build(&g, "mlp", 0, 32, 32, 10) < 0 && strstr(imgset_error(), "shape"),
       "zero channels are refused: %s", imgset_error());
    ok(build(&g, "mlp", 3, 32, 99999, 10) < 0, "a side over the limit is refused");
    ok(build(&g, "cnn-small", 3, 8192, 8192, 10) < 0 &&
       strstr(imgset_error(), "parameters"), "a model with too many parameters is refused: %s",
       imgset_error());
    const char *const *names = model_arch_names();
    ok(names[0] && names[3] && !names[4], "four architecture names");
}

static void test_bad_calls(void)
{
    Model *m = model_create("cnn-small", 1, 8, 8, 3, 4, 1);
    ok(!model_create("cnn-small", 1, 8, 8, 3, 0, 1) && strstr(imgset_error(), "batch"),
       "max_batch 0 is refused: %s", imgset_error());
    float x[5 * 64] = {0};
    int32_t labels[4] = {0, 1, 2, 3};
    float loss;
    ok(model_loss(m, labels, &loss) < 0, "loss before a forward is an error");
    ok(!model_forward(m, x, 5, 1) && strstr(imgset_error(), "5 images"),
       "a batch over max_batch is refused: %s", imgset_error());
    model_forward(m, x, 4, 1);
    ok(model_loss(m, labels, &loss) < 0 && strstr(imgset_error(), "label 3"),
       "a label outside 0..K-1 is refused: %s", imgset_error());
    model_forward(m, x, 4, 0);
    ok(model_backward(m) < 0 && strstr(imgset_error(), "training forward"),
       "backward after an evaluation forward is refused");
    ok(model_set_threads(m, 0) < 0 && model_set_threads(m, MODEL_MAX_THREADS + 1) < 0,
       "thread counts outside 1..%d are refused", MODEL_MAX_THREADS);
    model_free(m);
    model_free(NULL);
}

/* A few SGD steps of arch on fixed random data; the parameters afterwards (caller frees). */
static float *train_briefly(const char *arch, int threads, uint64_t seed, size_t *count)
{
    enum { N = 16, C = 3, H = 12, W = 12, K = 4 };
    Model *m = model_create(arch, C, H, W, K, N, seed);
    model_set_threads(m, threads);
    static float x[N * C * H * W];
    Rng rng = rng_make(3, 3);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = rng_normal(&rng);
    int32_t labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = i % K;
    SgdConfig sgd = {0.9f, 1e-4f, 0};
    for (int step = 0; step < 3; step++) {
        float loss;
        model_zero_grad(m);
        model_forward(m, x, N, 1);
        model_loss(m, labels, &loss);
        model_backward(m);
        model_sgd_step(m, 0.05f, &sgd);
    }
    *count = m->graph.param_floats;
    float *p = malloc(*count * sizeof(float));
    memcpy(p, m->params, *count * sizeof(float));
    model_free(m);
    return p;
}

static void test_determinism(void)
{
    static const char *const archs[] = {"cnn-small", "resnet8", "densenet-tiny", "mlp"};
    for (int a = 0; a < 4; a++) {
        size_t n;
        float *one = train_briefly(archs[a], 2, 5, &n), *two = train_briefly(archs[a], 2, 5, &n);
        float *single = train_briefly(archs[a], 1, 5, &n), *other = train_briefly(archs[a], 2, 6, &n);
        double d = 0.0, scale = 1e-6;
        for (size_t i = 0; i < n; i++) {
            d = fmax(d, fabs(one[i] - single[i]));
            scale = fmax(scale, fabs(single[i]));
        }
        ok(memcmp(one, two, n * sizeof(float)) == 0,
           "%s: two runs with the same seed and 2 threads end with identical weights", archs[a]);
        ok(d / scale < 1e-4, "%s: 1 and 2 threads agree to rounding (rel. %.2g)", archs[a],
           d / scale);
        ok(memcmp(one, other, n * sizeof(float)) != 0, "%s: another seed gives other weights",
           archs[a]);
        free(one), free(two), free(single), free(other);
    }
}

/* cnn-small learns a small separable problem: class k has a bright 3x3 square in quadrant k
 * of a noisy 1x12x12 image. */
static void test_learns(void)
{
    enum { N = 32, H = 12, K = 4, STEPS = 60 };
    Model *m = model_create("cnn-small", 1, H, H, K, N, 11);
    model_set_threads(m, 2);
    static float x[N * H * H];
    int32_t labels[N];
    Rng rng = rng_make(8, 8);
    SgdConfig sgd = {0.9f, 0.0f, 0};
    float first = 0.0f, last = 0.0f, loss;
    int correct = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int n = 0; n < N; n++) {
            int k = (int)rng_below(&rng, K);
            labels[n] = k;
            int r0 = (k / 2) * 6 + 1 + (int)rng_below(&rng, 3), c0 = (k % 2) * 6 + 1 + (int)rng_below(&rng, 3);
            for (int i = 0; i < H * H; i++)
                x[n * H * H + i] = 0.3f * rng_normal(&rng);
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    x[n * H * H + (r0 + i) * H + c0 + j] += 1.0f;
        }
        model_zero_grad(m);
        const float *logits = model_forward(m, x, N, 1);
        model_loss(m, labels, &loss);
        if (step == 0)
            first = loss;
        if (step == STEPS - 1)
            for (int n = 0; n < N; n++) {
                int best = 0;
                for (int k = 1; k < K; k++)
                    best = logits[n * K + k] > logits[n * K + best] ? k : best;
                correct += best == labels[n];
            }
        last = loss;
        model_backward(m);
        model_sgd_step(m, 0.02f, &sgd);
    }
    ok(last < 0.25f * first && correct >= N * 3 / 4,
       "cnn-small learns a separable 4-class problem: loss %.3f -> %.3f, last batch %d/%d right",
       first, last, correct, N);
    model_free(m);
}

int main(void)
{
    test_graphs();
    test_bad_calls();
    test_activation_graphs();
    static const char *const refs[] = {"mlp", "cnn-small", "resnet8", "resnet8-large",
                                       "densenet-tiny", "mlp-leaky-relu-bce", "mlp-tanh-mse",
                                       "mlp-sigmoid-mae", "cnn-small-leaky-relu-mse",
                                       "cnn-small-tanh-mae", "cnn-small-sigmoid-bce"};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        test_reference(refs[i], 1);
        test_reference(refs[i], 2);
    }
    test_determinism();
    test_learns();
    return tap_done();
}
