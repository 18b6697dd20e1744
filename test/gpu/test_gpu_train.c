/* test_gpu_train.c — the trainer on the GPU: for the same weights and batch, the CUDA forward,
 * backward and SGD step agree with the CPU nn core; a short GPU training run reaches the CPU
 * run's accuracy; its checkpoint predicts on the CPU. Without a device: `--device cuda` is a
 * clear error, auto falls back to the CPU saying why, and the device tests are reported as
 * skipped with the reason. The Makefile also links this file against the host emulation of
 * CUDA in test/gpu/emu (test_gpu_train_emu), so that the comparisons run on every machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "fsutil.h"
#include "generate.h"
#include "gpu.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "nn.h"
#include "rng.h"
#include "store.h"
#include "tap.h"
#include "train.h"

/*
 * Tolerances (float32, where only the order of summation differs between the CPU's and the
 * GPU's kernels): each tensor's largest absolute difference, over the tensor's largest
 * magnitude. Logits and the loss: 1e-4; gradients: 2e-3 (batch norm's backward subtracts
 * nearly equal sums, which loses digits on both sides); parameters after one step: 1e-5.
 */
#define TOL_LOGITS 1e-4
#define TOL_GRADS 2e-3
#define TOL_PARAMS 1e-5
#define ACCURACY_SLACK 0.05   /* the GPU run's test accuracy may trail the CPU's by this */
/* Inputs are drawn again until every max-pooling window's two largest values (and a fused
 * block's maximum and ReLU's 0) are further apart than this, relative to the tensor's largest
 * magnitude: at a near-tie a correct GPU, summing in another order, may pick the other
 * element and send the gradient elsewhere. */
#define POOL_MARGIN 1e-6

typedef struct Case {
    const char *arch;
    int C, H, W, K, N;
    int workspace_mb;   /* IMGSET_CUDA_WORKSPACE_MB for this case, 0 = default */
    const char *what;
    int activation, loss;   /* graph.h, nn.h; 0 = ReLU, cross-entropy */
} Case;

static const Case cases[] = {
    {"mlp", 3, 8, 8, 5, 6, 0, "linear layers", ACT_RELU, LOSS_CCE},
    {"cnn-small", 3, 32, 32, 10, 4, 0, "fused conv-ReLU-pool blocks", ACT_RELU, LOSS_CCE},
    {"cnn-small", 1, 30, 30, 10, 5, 1, "odd sides; a 1 MB workspace: conv2 in chunks of 3 + 2",
     ACT_RELU, LOSS_CCE},
    {"resnet8", 3, 32, 32, 10, 8, 0, "batch norm, residual adds, global pooling", ACT_RELU,
     LOSS_CCE},
    {"resnet8", 3, 136, 136, 7, 2, 0, "stride-2 stem and a 2x2 max pool (136 -> 68 -> 34)",
     ACT_RELU, LOSS_CCE},
    {"densenet-tiny", 3, 16, 16, 10, 8, 0, "concatenation, average pooling", ACT_RELU, LOSS_CCE},
    {"mlp", 3, 8, 8, 5, 6, 0, "tanh, BCE of per-class sigmoids", ACT_TANH, LOSS_BCE},
    {"cnn-small", 3, 16, 16, 10, 4, 0, "conv, leaky ReLU, max-pool unfused; MSE of the softmax",
     ACT_LEAKY_RELU, LOSS_MSE},
    {"cnn-small", 1, 12, 12, 12, 4, 0, "sigmoid; MAE of the softmax", ACT_SIGMOID, LOSS_MAE},
};

/* Case c's model, with its activation (slope 0.1) and loss. */
static Model *case_model(const Case *c)
{
    ModelSpec spec;
    model_spec_default(&spec, c->arch, c->C, c->H, c->W, c->K);
    spec.activation = c->activation;
    spec.leaky_slope = 0.1f;
    spec.loss = c->loss;
    return model_create_spec(&spec, c->N, 7);
}
enum { CASES = sizeof cases / sizeof cases[0] };

/* The device tests after the per-case ones, named once for running and for skipping. */
static const char *const run_tests[] = {
    "cnn-small, 4 epochs on the GPU: test accuracy within 0.05 of the CPU run's",
    "the GPU run reports host-to-device copies, their bytes and AU in (0, 1]",
    "the GPU run's checkpoint predicts on the CPU with the GPU's test accuracy",
};
enum { RUN_TESTS = sizeof run_tests / sizeof run_tests[0] };

static char scratch[] = "/tmp/imgset-test-gpu-train.XXXXXX";

/* The trainer's defaults for uri, with these epochs and batch size. */
static TrainConfig config_for(const char *uri, int epochs, int batch)
{
    TrainConfig c;
    train_config_default(&c);
    c.uri = uri;
    c.epochs = epochs;
    c.batch = batch;
    return c;
}

#ifdef IMGSET_HAVE_CUDA
/* max |a - b| / max |b| over n floats (0 when both are all zero). */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return mag > 0 ? diff / mag : diff;
}

/* The tensor of m whose `which` (params or grads) differs most from ref's; *worst gets the
 * relative difference. */
static const char *worst_tensor(const Model *got, const Model *ref, int grads, double *worst)
{
    const ModelGraph *g = &ref->graph;
    const char *name = "(none)";
    *worst = 0;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *t = &g->tensors[i];
        if (grads && !t->trainable)
            continue;
        const float *a = (grads ? got->grads : got->params) + t->offset;
        const float *b = (grads ? ref->grads : ref->params) + t->offset;
        double d = rel_diff(a, b, t->count);
        if (d > *worst || !isfinite(d))
            *worst = d, name = t->name;
    }
    return name;
}

/* Copy n host floats into new device memory (NULL with imgset_fail). */
static float *to_device(const float *x, size_t n)
{
    float *d = gpu_device_alloc(n * sizeof(float));
    GpuStream *s = gpu_stream_create();
    int rc = d && s && gpu_upload_async(s, d, x, n * sizeof(float)) == 0 &&
             gpu_stream_wait(s, NULL) == 0 ? 0 : -1;
    gpu_stream_destroy(s);
    if (rc < 0) {
        gpu_device_free(d);
        return NULL;
    }
    return d;
}

/* The smallest gap in one pooling op's windows (see POOL_MARGIN): planes of (H, W) floats,
 * windows `k` wide every `stride`; relu: the fused block, where ReLU's 0 counts as well. */
static double window_margin(const float *in, size_t planes, int H, int W, int k, int stride,
                            int relu)
{
    double scale = 0, margin = INFINITY;
    for (size_t i = 0; i < planes * H * W; i++)
        scale = fmax(scale, fabs((double)in[i]));
    int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
    for (size_t p = 0; p < planes; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double top1 = -INFINITY, top2 = -INFINITY;
                for (int kh = 0; kh < k; kh++)
                    for (int kw = 0; kw < k; kw++) {
                        double v = in[(p * H + oh * stride + kh) * W + ow * stride + kw];
                        if (v > top1)
                            top2 = top1, top1 = v;
                        else if (v > top2)
                            top2 = v;
                    }
                if (top1 == 0 && top2 == 0)
                    continue;   /* ReLU's exact zeros: the same on both sides, no gradient */
                double gap = top1 - top2;
                if (relu)
                    gap = top1 <= 0 ? -top1 : fmin(gap, top1);
                margin = fmin(margin, scale > 0 ? gap / scale : gap);
            }
    return margin;
}

/* The smallest pooling margin of case c's training forward of x, on a CPU copy of the
 * model (the fused blocks' pre-pool outputs computed again with conv2d_forward). */
static double pool_margin(const Case *c, const float *x)
{
    Model *m = case_model(c);
    if (!m || !model_forward(m, x, c->N, 1)) {
        model_free(m);
        return 0;
    }
    const ModelGraph *g = &m->graph;
    double margin = INFINITY;
    for (int i = 0; i < g->num_ops; i++) {
        const ModelOp *op = &g->ops[i];
        const ModelAct *a = &g->acts[op->in];
        const float *in = m->acts + a->offset * (size_t)m->max_batch;
        if (op->kind == OP_MAXPOOL) {
            margin = fmin(margin, window_margin(in, (size_t)c->N * a->c, a->h, a->w, op->kernel,
                                                op->stride, 0));
        } else if (op->kind == OP_CONV_RELU_POOL) {
            int oc = g->acts[op->out].c, k = op->kernel;
            int ch = nn_out_size(a->h, k, op->stride, op->pad);
            int cw = nn_out_size(a->w, k, op->stride, op->pad);
            float *pre = malloc(sizeof(float) * c->N * oc * ch * cw);
            float *col = malloc(sizeof(float) * conv2d_scratch_floats(a->c, a->h, a->w, oc, k, k,
                                                                      op->stride, op->pad));
            if (pre && col) {
                conv2d_forward(pre, in, m->params + g->tensors[op->weight].offset,
                               op->bias >= 0 ? m->params + g->tensors[op->bias].offset : NULL,
                               col, c->N, a->c, a->h, a->w, oc, k, k, op->stride, op->pad);
                margin = fmin(margin, window_margin(pre, (size_t)c->N * oc, ch, cw, 2, 2, 1));
            } else {
                margin = 0;
            }
            free(pre);
            free(col);
        }
    }
    model_free(m);
    return margin;
}

/* One case: the same weights and batch through a CPU and a GPU model, compared after the
 * training forward, the backward, one SGD step and an evaluation forward. */
static void test_case(const Case *c)
{
    char name[160];
    snprintf(name, sizeof name, "%s %dx%dx%d, %d images, %s, %s (%s)", c->arch, c->C, c->H,
             c->W, c->N, model_activation_name(c->activation), nn_loss_name(c->loss), c->what);
    if (c->workspace_mb) {
        char mb[16];
        snprintf(mb, sizeof mb, "%d", c->workspace_mb);
        setenv("IMGSET_CUDA_WORKSPACE_MB", mb, 1);
    }
    size_t in = (size_t)c->N * c->C * c->H * c->W;
    float *x = malloc(in * sizeof(float)), *x_dev = NULL;
    int32_t *labels = malloc((size_t)c->N * sizeof *labels);
    Model *cpu = case_model(c), *gpu = case_model(c);
    double margin = 0;
    for (uint64_t attempt = 0; x && labels && attempt < 50 && margin < POOL_MARGIN; attempt++) {
        Rng rng = rng_make(11, attempt);
        for (size_t i = 0; i < in; i++)
            x[i] = 2.0f * rng_uniform(&rng) - 1.0f;
        for (int i = 0; i < c->N; i++)
            labels[i] = (int32_t)rng_below(&rng, (uint64_t)c->K);
        margin = pool_margin(c, x);
    }
    printf("# %s: smallest pooling margin %.2g\n", name, margin);
    int ready = margin >= POOL_MARGIN && cpu && gpu && model_set_threads(cpu, 2) == 0 &&
                model_use_device(gpu, MODEL_CUDA) == 0 && (x_dev = to_device(x, in));
    if (!ok(ready, "%s: set up both models: %s", name, ready ? "ok" : imgset_error()))
        goto done;

    SgdConfig sgd = {0.9f, 5e-4f, 0};
    size_t K = (size_t)c->K * c->N;
    float *want = malloc(K * sizeof(float)), *got_logits;
    const float *ref = model_forward(cpu, x, c->N, 1);
    memcpy(want, ref, K * sizeof(float));
    got_logits = (float *)model_forward(gpu, x_dev, c->N, 1);
    double d = got_logits ? rel_diff(got_logits, want, K) : INFINITY;
    ok(d <= TOL_LOGITS, "%s: training-forward logits agree (%.2g <= %.0e)%s%s", name, d,
       TOL_LOGITS, got_logits ? "" : ": ", got_logits ? "" : imgset_error());

    float loss_cpu = 0, loss_gpu = 0;
    int rc = model_loss(cpu, labels, &loss_cpu) | model_loss(gpu, labels, &loss_gpu);
    d = fabs((double)loss_gpu - loss_cpu) / fmax(fabs((double)loss_cpu), 1e-6);
    ok(rc == 0 && d <= TOL_LOGITS, "%s: loss %.6f on the GPU, %.6f on the CPU", name, loss_gpu,
       loss_cpu);

    model_zero_grad(cpu);
    model_zero_grad(gpu);
    rc = model_backward(cpu) | model_backward(gpu) | model_sync_host(gpu);
    const char *worst = worst_tensor(gpu, cpu, 1, &d);
    ok(rc == 0 && d <= TOL_GRADS, "%s: gradients agree (worst %s: %.2g <= %.0e)%s%s", name,
       worst, d, TOL_GRADS, rc ? ": " : "", rc ? imgset_error() : "");

    model_sgd_step(cpu, 0.05f, &sgd);
    model_sgd_step(gpu, 0.05f, &sgd);
    rc = model_sync_host(gpu);
    worst = worst_tensor(gpu, cpu, 0, &d);   /* BN running statistics included */
    ok(rc == 0 && d <= TOL_PARAMS, "%s: parameters after one SGD step agree (worst %s: %.2g)",
       name, worst, d);

    ref = model_forward(cpu, x, c->N, 0);
    memcpy(want, ref, K * sizeof(float));
    got_logits = (float *)model_forward(gpu, x_dev, c->N, 0);
    d = got_logits ? rel_diff(got_logits, want, K) : INFINITY;
    ok(d <= TOL_LOGITS, "%s: evaluation-forward logits agree after the step (%.2g)", name, d);
    free(want);

done:
    unsetenv("IMGSET_CUDA_WORKSPACE_MB");
    gpu_device_free(x_dev);
    model_free(cpu);
    model_free(gpu);
    free(x);
    free(labels);
}

/* The training loop end to end on the device: the loader's CUDA path (pinned slots, upload,
 * normalisation on the GPU), the model, the checkpoint's download, against the CPU. */
static void test_two_steps(const char *uri)
{
    char path_cpu[300], path_gpu[300];
    snprintf(path_cpu, sizeof path_cpu, "%s/two-cpu.safetensors", scratch);
    snprintf(path_gpu, sizeof path_gpu, "%s/two-gpu.safetensors", scratch);
    TrainConfig c = config_for(uri, 1, 32);
    c.stop_after = 2;
    c.evaluate = 0;
    TrainRun run;
    c.device = MODEL_CPU;
    c.save = path_cpu;
    int rc = train_run(&c, NULL, &run);
    c.device = MODEL_CUDA;
    c.save = path_gpu;
    rc |= train_run(&c, NULL, &run);
    CheckpointInfo info_cpu, info_gpu;
    Model *cpu = rc == 0 ? checkpoint_load(path_cpu, 1, &info_cpu) : NULL;
    Model *gpu = cpu ? checkpoint_load(path_gpu, 1, &info_gpu) : NULL;
    double d = INFINITY;
    const char *worst = gpu ? worst_tensor(gpu, cpu, 0, &d) : "(none)";
    ok(gpu && run.device == MODEL_CUDA && gpu->step == 2 && d <= 1e-3,
       "two SGD steps of imgset train through the loader on the GPU save the CPU's weights "
       "(worst %s: %.2g <= 1e-3)%s%s", worst, d, gpu ? "" : ": ", gpu ? "" : imgset_error());
    if (cpu)
        checkpoint_info_free(&info_cpu);
    if (gpu)
        checkpoint_info_free(&info_gpu);
    model_free(cpu);
    model_free(gpu);
}

/* Test accuracy of the last epoch, from the epoch callback. */
typedef struct Last {
    EpochReport r;
    int epochs;
} Last;

static void keep_epoch(void *ctx, const EpochReport *r)
{
    Last *last = ctx;
    last->r = *r;
    last->epochs++;
}

/* Accuracy of the checkpoint at path, evaluated on the CPU over the test split of uri. */
static int cpu_accuracy(const char *path, const char *uri, double *accuracy)
{
    CheckpointInfo info;
    Model *m = checkpoint_load(path, 250, &info);
    if (!m)
        return -1;
    checkpoint_info_free(&info);
    LoaderOptions o;
    loader_options_default(&o);
    o.split = SPLIT_TEST;
    o.batch_size = 250;
    o.shuffle = 0;
    o.want_float = 1;
    Loader *l = loader_open(uri, &o);
    int K = m->graph.spec.classes, rc = l ? 0 : -1;
    int64_t *confusion = calloc((size_t)K * K, sizeof *confusion);
    const Batch *b;
    while (rc == 0 && confusion && (rc = loader_next(l, &b)) == 1) {
        const float *logits = model_forward(m, b->data, b->count, 0);
        rc = logits ? 0 : -1;
        if (logits)
            confusion_add_logits(confusion, logits, b->labels, b->count, K);
    }
    if (confusion)
        *accuracy = confusion_accuracy(confusion, K);
    free(confusion);
    loader_close(l);
    model_free(m);
    return rc < 0 || !confusion ? -1 : 0;
}

static void test_training(const char *uri)
{
    char ckpt[300];
    snprintf(ckpt, sizeof ckpt, "%s/gpu.safetensors", scratch);
    TrainConfig c = config_for(uri, 4, 64);
    c.workers = 2;
    TrainRun run;
    Last cpu = {0}, gpu = {0};
    TrainCallbacks cb_cpu = {NULL, keep_epoch, NULL, &cpu}, cb_gpu = {NULL, keep_epoch, NULL, &gpu};
    c.device = MODEL_CPU;
    int rc_cpu = train_run(&c, &cb_cpu, &run);
    c.device = MODEL_CUDA;
    c.save = ckpt;
    int rc_gpu = train_run(&c, &cb_gpu, &run);
    double a_cpu = cpu.r.test_accuracy, a_gpu = gpu.r.test_accuracy;
    ok(rc_cpu == 0 && rc_gpu == 0 && run.device == MODEL_CUDA && gpu.epochs == 4 &&
           a_cpu > 0.4 && a_gpu >= a_cpu - ACCURACY_SLACK,
       "%s (GPU %.4f, CPU %.4f)%s%s", run_tests[0], a_gpu, a_cpu,
       rc_cpu || rc_gpu ? ": " : "", rc_cpu || rc_gpu ? imgset_error() : "");
    const EpochReport *r = &gpu.r;
    double au = r->wall > 0 ? r->compute / r->wall : 0;
    ok(rc_gpu == 0 && r->copy > 0 && r->copy_bytes == (double)r->images * 32 * 32 * 3 &&
           au > 0 && au <= 1.0 + 1e-9,
       "%s (%.4f s, %.0f bytes, %.0f GB/s, AU %.1f%%)", run_tests[1], r->copy, r->copy_bytes,
       r->copy > 0 ? r->copy_bytes / r->copy / 1e9 : 0.0, 100 * au);
    double a_host = -1;
    int rc = rc_gpu == 0 ? cpu_accuracy(ckpt, uri, &a_host) : -1;
    ok(rc == 0 && fabs(a_host - a_gpu) <= 0.004,
       "%s (CPU %.4f, GPU %.4f; at most 2 of 500 argmax flips)%s%s", run_tests[2], a_host,
       a_gpu, rc ? ": " : "", rc ? imgset_error() : "");
}
#endif

/* Without a device: the errors and the fallback, then every device test skipped. */
static void test_without_device(const char *uri, const char *reason)
{
    TrainConfig c = config_for(uri, 1, 128);
    c.stop_after = 1;
    c.device = MODEL_CUDA;
    TrainRun run;
    int rc = train_run(&c, NULL, &run);
    ok(rc < 0 && strstr(imgset_error(), "no CUDA device"),
       "train --device cuda without a device fails: %s", imgset_error());
    c.device = TRAIN_AUTO;
    rc = train_run(&c, NULL, &run);
    ok(rc == 0 && run.device == MODEL_CPU && strstr(run.device_info, "no CUDA device"),
       "train with the device on auto falls back to the CPU and says why: \"%s\"",
       run.device_info);
    Model *m = model_create("cnn-small", 3, 32, 32, 10, 4, 1);
    float x[4 * 3 * 32 * 32] = {0};
    rc = m ? model_use_device(m, MODEL_CUDA) : 0;
    ok(m && rc < 0 && m->device == MODEL_CPU && model_forward(m, x, 4, 0),
       "model_use_device(cuda) without a device fails and the model still runs on the CPU");
    model_free(m);
    for (int i = 0; i < CASES; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s %dx%dx%d (%s, %s): GPU forward, loss, backward, step, "
                 "eval agree with the CPU", cases[i].arch, cases[i].C, cases[i].H, cases[i].W,
                 model_activation_name(cases[i].activation), nn_loss_name(cases[i].loss));
        skip(name, reason);
    }
    skip("two SGD steps of imgset train through the loader on the GPU save the CPU's weights",
         reason);
    for (int i = 0; i < RUN_TESTS; i++)
        skip(run_tests[i], reason);
}

int main(void)
{
    if (!mkdtemp(scratch))
        return perror("mkdtemp"), 1;
    char uri[256];
    snprintf(uri, sizeof uri, "mmap:%s/c", scratch);
    GenerateParams p = {"cifar10", 4000, 500, 3};
    Store *gen = generate_open(&p);
    int made = gen && store_copy(gen, uri, NULL, NULL) == 0;
    store_close(gen);
    if (ok(made, "make a test store%s%s", made ? "" : ": ", made ? "" : imgset_error())) {
#ifdef IMGSET_HAVE_CUDA
        if (gpu_require_device("gpu") == 0) {
            char gpu[256];
            gpu_describe(gpu, sizeof gpu);
            printf("# %s\n", gpu);
            int emulated = strstr(gpu, "host emulation") != NULL;   /* test_gpu_train_emu */
            if (emulated)   /* say so in every line */
                tap_prefix = "[host emulation, not a GPU] ";
            for (int i = 0; i < CASES; i++)
                test_case(&cases[i]);
            test_two_steps(uri);
            if (emulated)   /* the emulation runs kernels serially */
                for (int i = 0; i < RUN_TESTS; i++)
                    skip(run_tests[i], "the host emulation of the GPU is too slow for training "
                                       "runs: they run where there is a GPU (test/gpu/run.sh)");
            else
                test_training(uri);
        } else {
            char reason[512];   /* "no CUDA device (why)" */
            snprintf(reason, sizeof reason, "%s", strstr(imgset_error(), "no CUDA device"));
            test_without_device(uri, reason);
        }
#else
        test_without_device(uri, "no CUDA device (this build has no CUDA)");
#endif
    }
    if (fs_remove_tree(scratch) < 0)
        fprintf(stderr, "could not remove %s: %s\n", scratch, imgset_error());
    return tap_done();
}
