/* model_cuda.cu — the model executor on the GPU (see model_cuda.h): the graph's ops in order
 * over the whole batch, each one nn_cuda.cu call, on the model's own stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "error.h"
#include "model_cuda.h"
#include "nn.h"
}
#include "nn_cuda.h"

/* Most floats of im2col workspace a convolution may use: bigger batches go in chunks.
 * IMGSET_CUDA_WORKSPACE_MB (1..4096) overrides it (the tests make it small to check the
 * chunking). */
#define WORK_CAP_FLOATS ((size_t)1 << 25)   /* 128 MiB */

static size_t work_cap_floats(void)
{
    const char *mb = getenv("IMGSET_CUDA_WORKSPACE_MB");
    long v = mb ? strtol(mb, NULL, 10) : 0;
    v = v > 4096 ? 4096 : v;
    return v > 0 ? (size_t)v * (1024 * 1024 / sizeof(float)) : WORK_CAP_FLOATS;
}

/* The events of one training step. */
typedef struct StepEvents {
    cudaEvent_t start, forward_stop, backward_start, stop;
    int forward;    /* a training forward recorded start and forward_stop */
    int backward;   /* and a backward recorded backward_start */
    int pending;    /* stop recorded, the time not yet added to busy */
} StepEvents;

struct ModelCuda {
    const ModelGraph *g;       /* the host Model's graph, which outlives this */
    int max_batch;
    NnCuda nn;
    float *params, *grads, *velocity;   /* (g->param_floats) each */
    float *acts;               /* activations then their gradients, as graph.h lays them out */
    float *stats;              /* (g->stat_floats) BN saved mean / invstd */
    float *aux;                /* fused conv blocks' argmax bytes, as on the CPU (model.c) */
    float *work;               /* im2col workspace */
    float *conv_tmp;           /* (max_batch, g->conv_tmp_floats): a fused block's pre-pool
                                * output, then its gradient */
    float *act[MODEL_MAX_ACTS], *dact[MODEL_MAX_ACTS];
    int chunk[MODEL_MAX_OPS];  /* images per im2col GEMM, per conv op */
    /* A training step's GPU time: forward (start to forward_stop) plus backward and SGD
     * (backward_start to stop); the gap while the host computes the loss is not in it. Two
     * sets, used in turn, so that a step's time is read once the next forward has waited for
     * the stream anyway — never a wait of its own between steps. */
    StepEvents steps[2];
    int current;               /* the set of the step in progress */
    double busy;               /* seconds */
    char error[512];           /* a failure of a call that cannot report it (zero_grad, step),
                                * reported by the next forward or backward */
    int batch, training;       /* of the last forward */
};

static int cuda_failed(const char *what, cudaError_t err)
{
    cudaGetLastError();
    return imgset_fail("cuda: %s failed: %s (%s)", what, cudaGetErrorString(err),
                       cudaGetErrorName(err));
}

#define CHECK(call, what)                                          \
    do {                                                           \
        cudaError_t err_ = (call);                                 \
        if (err_ != cudaSuccess)                                   \
            return cuda_failed(what, err_);                        \
    } while (0)

static int device_alloc(float **p, size_t floats, const char *what)
{
    cudaError_t err = cudaMalloc((void **)p, (floats ? floats : 1) * sizeof(float));
    if (err == cudaSuccess)
        return 0;
    *p = NULL;
    cudaGetLastError();
    return imgset_fail("cuda: cannot allocate %zu MB of device memory for %s: %s",
                       floats * sizeof(float) >> 20, what, cudaGetErrorString(err));
}

static int is_conv(const ModelOp *op)
{
    return op->kind == OP_CONV || op->kind == OP_CONV_RELU_POOL;
}

static size_t conv_workspace(const ModelGraph *g, const ModelOp *op, int chunk)
{
    const ModelAct *a = &g->acts[op->in];
    int oc = (int)g->tensors[op->weight].shape[0];
    return cuda_conv2d_workspace_floats(a->c, a->h, a->w, oc, op->kernel, op->kernel, op->stride,
                                        op->pad, chunk);
}

void model_cuda_free(ModelCuda *mc)
{
    if (!mc)
        return;
    if (mc->nn.stream)
        cudaStreamSynchronize(mc->nn.stream);
    float *buffers[] = {mc->params, mc->grads, mc->velocity, mc->acts, mc->stats, mc->aux,
                        mc->work, mc->conv_tmp};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (buffers[i])
            cudaFree(buffers[i]);
    if (mc->nn.blas)
        cublasDestroy(mc->nn.blas);
    for (int k = 0; k < 2; k++) {
        StepEvents *e = &mc->steps[k];
        cudaEvent_t events[] = {e->start, e->forward_stop, e->backward_start, e->stop};
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            if (events[i])
                cudaEventDestroy(events[i]);
    }
    if (mc->nn.stream)
        cudaStreamDestroy(mc->nn.stream);
    cudaGetLastError();
    free(mc);
}

/* Everything model_cuda_create does after the struct exists; -1 leaves mc for the caller to
 * free. */
static int setup(ModelCuda *mc, const float *params, const float *velocity)
{
    const ModelGraph *g = mc->g;
    size_t B = (size_t)mc->max_batch, work = 1, cap = work_cap_floats();
    for (int i = 0; i < g->num_ops; i++) {
        const ModelOp *op = &g->ops[i];
        if (!is_conv(op))
            continue;
        size_t per_image = conv_workspace(g, op, 1);
        size_t chunk = per_image ? cap / per_image : B;
        chunk = chunk < 1 ? 1 : chunk > B ? B : chunk;
        mc->chunk[i] = (int)chunk;
        if (per_image * chunk > work)
            work = per_image * chunk;
    }
    CHECK(cudaStreamCreateWithFlags(&mc->nn.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int k = 0; k < 2; k++) {
        StepEvents *e = &mc->steps[k];
        cudaEvent_t *events[] = {&e->start, &e->forward_stop, &e->backward_start, &e->stop};
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            CHECK(cudaEventCreate(events[i]), "cudaEventCreate");
    }
    cublasStatus_t st = cublasCreate(&mc->nn.blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        mc->nn.blas = NULL;   /* nothing for model_cuda_free to destroy */
        return imgset_fail("cublas: cublasCreate failed: %s", cublasGetStatusString(st));
    }
    if ((st = cublasSetStream(mc->nn.blas, mc->nn.stream)) != CUBLAS_STATUS_SUCCESS)
        return imgset_fail("cublas: cublasSetStream failed: %s", cublasGetStatusString(st));
    if (device_alloc(&mc->params, g->param_floats, "parameters") < 0 ||
        device_alloc(&mc->grads, g->param_floats, "gradients") < 0 ||
        device_alloc(&mc->velocity, g->param_floats, "momentum buffers") < 0 ||
        device_alloc(&mc->acts, 2 * g->act_floats * B, "activations") < 0 ||
        device_alloc(&mc->stats, g->stat_floats, "batch-norm statistics") < 0 ||
        device_alloc(&mc->aux, g->aux_floats * B, "max-pool argmax bytes") < 0 ||
        device_alloc(&mc->work, work, "im2col workspace") < 0 ||
        device_alloc(&mc->conv_tmp, g->conv_tmp_floats * B, "pre-pool outputs") < 0)
        return -1;
    for (int a = 0; a < g->num_acts; a++) {
        mc->act[a] = mc->acts + g->acts[a].offset * B;
        mc->dact[a] = a > 0 ? mc->acts + (g->act_floats + g->acts[a].offset) * B : NULL;
    }
    /* on the model's stream (which does not wait for the legacy default stream), then waited
     * for, so that the first forward reads the uploaded weights */
    size_t bytes = g->param_floats * sizeof(float);
    cudaStream_t s = mc->nn.stream;
    CHECK(cudaMemcpyAsync(mc->params, params, bytes, cudaMemcpyHostToDevice, s),
          "uploading parameters");
    CHECK(cudaMemcpyAsync(mc->velocity, velocity, bytes, cudaMemcpyHostToDevice, s),
          "uploading momentum buffers");
    CHECK(cudaMemsetAsync(mc->grads, 0, bytes, s), "zeroing gradients");
    CHECK(cudaStreamSynchronize(s), "uploading the model");
    return 0;
}

ModelCuda *model_cuda_create(const ModelGraph *g, int max_batch, const float *params,
                             const float *velocity)
{
    ModelCuda *mc = (ModelCuda *)calloc(1, sizeof *mc);
    if (!mc)
        return imgset_fail("model: out of memory"), (ModelCuda *)NULL;
    mc->g = g;
    mc->max_batch = max_batch;
    if (setup(mc, params, velocity) < 0) {
        imgset_fail_prefix("model %s on the GPU: ", g->spec.arch);
        model_cuda_free(mc);
        return NULL;
    }
    return mc;
}

static const float *param_of(const ModelCuda *mc, int tensor)
{
    return tensor >= 0 ? mc->params + mc->g->tensors[tensor].offset : NULL;
}

static float *grad_of(const ModelCuda *mc, int tensor)
{
    return tensor >= 0 ? mc->grads + mc->g->tensors[tensor].offset : NULL;
}

static uint8_t *argmax_of(const ModelCuda *mc, const ModelOp *op)
{
    return (uint8_t *)(mc->aux + op->aux_offset * (size_t)mc->max_batch);
}

static int op_forward(const ModelCuda *mc, const ModelOp *op, int N, int training)
{
    const ModelGraph *g = mc->g;
    const NnCuda *nn = &mc->nn;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = mc->act[op->in], *w = param_of(mc, op->weight), *b = param_of(mc, op->bias);
    float *y = mc->act[op->out];
    size_t n = (size_t)N * a->size;
    switch (op->kind) {
    case OP_CONV:
        return cuda_conv2d_forward(nn, y, x, w, b, mc->work, mc->chunk[op - g->ops], N, a->c,
                                   a->h, a->w, o->c, op->kernel, op->kernel, op->stride,
                                   op->pad);
    case OP_BATCHNORM: {
        float *rm = mc->params + g->tensors[op->running_mean].offset;
        float *rv = mc->params + g->tensors[op->running_var].offset;
        if (!training)
            return cuda_batchnorm_forward_eval(nn, y, x, w, b, rm, rv, N, a->c, a->h * a->w,
                                               MODEL_BN_EPS);
        float *mean = mc->stats + op->stat_offset;
        return cuda_batchnorm_forward_train(nn, y, mean, mean + a->c, rm, rv, x, w, b, N, a->c,
                                            a->h * a->w, MODEL_BN_MOMENTUM, MODEL_BN_EPS);
    }
    case OP_RELU:
        return cuda_relu_forward(nn, y, x, n);
    case OP_MAXPOOL:
        return cuda_maxpool2d_forward(nn, y, x, N, a->c, a->h, a->w, op->kernel, op->stride);
    case OP_AVGPOOL:
        return cuda_avgpool2d_forward(nn, y, x, N, a->c, a->h, a->w, op->kernel, op->stride);
    case OP_GAP:
        return cuda_global_avgpool_forward(nn, y, x, N, a->c, a->h * a->w);
    case OP_LINEAR:
        return cuda_linear_forward(nn, y, x, w, b, N, (int)a->size, o->c);
    case OP_ADD:
        return cuda_add_forward(nn, y, x, mc->act[op->in2], n);
    case OP_CONCAT:
        return cuda_concat_forward(nn, y, x, mc->act[op->in2], N, a->c, g->acts[op->in2].c,
                                   a->h * a->w);
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        if (cuda_conv2d_forward(nn, mc->conv_tmp, x, w, b, mc->work, mc->chunk[op - g->ops], N,
                                a->c, a->h, a->w, o->c, op->kernel, op->kernel, op->stride,
                                op->pad) < 0)
            return -1;
        return cuda_relu_maxpool2x2_forward(nn, y, training ? argmax_of(mc, op) : NULL,
                                            mc->conv_tmp, N, o->c, ch, cw);
    }
    }
    return imgset_fail("model: op kind %d has no GPU forward", op->kind);
}

/* *d = the gradient of activation `which` for N images, zeroed first when this op is its
 * first writer; NULL for the network's input. */
static int input_grad(const ModelCuda *mc, int which, int zero, int N, float **d)
{
    *d = mc->dact[which];
    if (*d && zero)
        CHECK(cudaMemsetAsync(*d, 0, sizeof(float) * mc->g->acts[which].size * N,
                              mc->nn.stream), "zeroing an activation's gradient");
    return 0;
}

static int op_backward(const ModelCuda *mc, const ModelOp *op, int N)
{
    const ModelGraph *g = mc->g;
    const NnCuda *nn = &mc->nn;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = mc->act[op->in], *y = mc->act[op->out], *dy = mc->dact[op->out];
    const float *w = param_of(mc, op->weight);
    float *dx, *dx2 = NULL;
    if (input_grad(mc, op->in, op->zero_din, N, &dx) < 0 ||
        ((op->kind == OP_ADD || op->kind == OP_CONCAT) &&
         input_grad(mc, op->in2, op->zero_din2, N, &dx2) < 0))
        return -1;
    float *dw = grad_of(mc, op->weight), *db = grad_of(mc, op->bias);
    size_t n = (size_t)N * a->size;
    switch (op->kind) {
    case OP_CONV:
        return cuda_conv2d_backward(nn, dx, dw, db, dy, x, w, mc->work, mc->chunk[op - g->ops], N,
                                    a->c, a->h, a->w, o->c, op->kernel, op->kernel, op->stride,
                                    op->pad);
    case OP_BATCHNORM: {
        const float *mean = mc->stats + op->stat_offset;
        return cuda_batchnorm_backward_train(nn, dx, dw, db, dy, x, w, mean, mean + a->c, N, a->c,
                                             a->h * a->w);
    }
    case OP_RELU:
        return cuda_relu_backward(nn, dx, dy, y, n);
    case OP_MAXPOOL:
        return cuda_maxpool2d_backward(nn, dx, dy, x, N, a->c, a->h, a->w, op->kernel,
                                       op->stride);
    case OP_AVGPOOL:
        return cuda_avgpool2d_backward(nn, dx, dy, N, a->c, a->h, a->w, op->kernel, op->stride);
    case OP_GAP:
        return cuda_global_avgpool_backward(nn, dx, dy, N, a->c, a->h * a->w);
    case OP_LINEAR:
        return cuda_linear_backward(nn, dx, dw, db, dy, x, w, N, (int)a->size, o->c);
    case OP_ADD:
        return cuda_add_backward(nn, dx, dx2, dy, n);
    case OP_CONCAT:
        return cuda_concat_backward(nn, dx, dx2, dy, N, a->c, g->acts[op->in2].c, a->h * a->w);
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        float *dtmp = mc->conv_tmp;   /* the pre-pool gradient (N, OC, ch, cw) */
        CHECK(cudaMemsetAsync(dtmp, 0, sizeof(float) * (size_t)N * o->c * ch * cw, nn->stream),
              "zeroing a pre-pool gradient");
        if (cuda_relu_maxpool2x2_backward(nn, dtmp, dy, y, argmax_of(mc, op), N, o->c, ch, cw) < 0)
            return -1;
        return cuda_conv2d_backward(nn, dx, dw, db, dtmp, x, w, mc->work, mc->chunk[op - g->ops],
                                    N, a->c, a->h, a->w, o->c, op->kernel, op->kernel,
                                    op->stride, op->pad);
    }
    }
    return imgset_fail("model: op kind %d has no GPU backward", op->kind);
}

/* Add the time of finished step e to busy (waits for it; called when it is done). */
static int settle_step(ModelCuda *mc, StepEvents *e)
{
    if (!e->pending)
        return 0;
    float forward_ms = 0, backward_ms = 0;
    CHECK(cudaEventSynchronize(e->stop), "waiting for a training step");
    CHECK(cudaEventElapsedTime(&forward_ms, e->start, e->forward_stop), "timing a training step");
    CHECK(cudaEventElapsedTime(&backward_ms, e->backward_start, e->stop),
          "timing a training step");
    mc->busy += (forward_ms + backward_ms) / 1000.0;
    e->pending = 0;
    return 0;
}

/* Keep the failure of a call whose caller cannot be told (model_zero_grad, model_sgd_step). */
static void keep_error(ModelCuda *mc)
{
    if (!mc->error[0])
        snprintf(mc->error, sizeof mc->error, "%s", imgset_error());
}

/* -1 with the kept failure, if there is one. */
static int kept_error(const ModelCuda *mc)
{
    return mc->error[0] ? imgset_fail("%s", mc->error) : 0;
}

int model_cuda_forward(ModelCuda *mc, const float *x_device, int N, int training,
                       float *logits_host)
{
    const ModelGraph *g = mc->g;
    cudaStream_t s = mc->nn.stream;
    StepEvents *e = &mc->steps[mc->current];
    if (kept_error(mc) < 0 || settle_step(mc, e) < 0)   /* two steps back: long done */
        return -1;
    e->forward = e->backward = 0;
    if (training)
        CHECK(cudaEventRecord(e->start, s), "cudaEventRecord");
    /* the input is copied so that the loader may reuse its batch slot at once */
    CHECK(cudaMemcpyAsync(mc->act[0], x_device, sizeof(float) * g->acts[0].size * N,
                          cudaMemcpyDeviceToDevice, s), "copying the input batch");
    for (int i = 0; i < g->num_ops; i++)
        if (op_forward(mc, &g->ops[i], N, training) < 0)
            return -1;
    if (training) {
        CHECK(cudaEventRecord(e->forward_stop, s), "cudaEventRecord");
        e->forward = 1;
    }
    CHECK(cudaMemcpyAsync(logits_host, mc->act[g->output],
                          sizeof(float) * (size_t)N * g->spec.classes, cudaMemcpyDeviceToHost, s),
          "copying the logits to the host");
    CHECK(cudaStreamSynchronize(s), "the forward pass");
    if (settle_step(mc, &mc->steps[mc->current ^ 1]) < 0)   /* the last step: done by now */
        return -1;
    mc->batch = N;
    mc->training = training;
    return 0;
}

int model_cuda_backward(ModelCuda *mc, const float *dlogits_host, int N)
{
    const ModelGraph *g = mc->g;
    if (kept_error(mc) < 0)
        return -1;
    if (!mc->training || N != mc->batch)
        return imgset_fail("model: backward needs a training forward of %d images first", N);
    StepEvents *e = &mc->steps[mc->current];
    if (e->forward && !e->backward) {
        CHECK(cudaEventRecord(e->backward_start, mc->nn.stream), "cudaEventRecord");
        e->backward = 1;
    }
    CHECK(cudaMemcpyAsync(mc->dact[g->output], dlogits_host,
                          sizeof(float) * (size_t)N * g->spec.classes, cudaMemcpyHostToDevice,
                          mc->nn.stream), "copying the logits' gradient to the GPU");
    for (int i = g->num_ops - 1; i >= 0; i--)
        if (op_backward(mc, &g->ops[i], N) < 0)
            return -1;
    return 0;
}

int model_cuda_zero_grad(ModelCuda *mc)
{
    cudaError_t err =
        cudaMemsetAsync(mc->grads, 0, sizeof(float) * mc->g->param_floats, mc->nn.stream);
    if (err == cudaSuccess)
        return 0;
    cuda_failed("zeroing gradients", err);
    keep_error(mc);
    return -1;
}

int model_cuda_sgd_step(ModelCuda *mc, float lr, const SgdConfig *config)
{
    const ModelGraph *g = mc->g;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *t = &g->tensors[i];
        if (t->trainable &&
            cuda_sgd_step(&mc->nn, mc->params + t->offset, mc->velocity + t->offset,
                          mc->grads + t->offset, t->count, lr, config->momentum,
                          config->weight_decay, config->nesterov) < 0) {
            keep_error(mc);
            return -1;
        }
    }
    StepEvents *e = &mc->steps[mc->current];
    if (e->forward && e->backward) {
        cudaError_t err = cudaEventRecord(e->stop, mc->nn.stream);
        if (err != cudaSuccess) {
            cuda_failed("cudaEventRecord", err);
            keep_error(mc);
            return -1;
        }
        e->pending = 1;
        mc->current ^= 1;   /* the next step times itself with the other set */
    }
    e->forward = e->backward = 0;
    return 0;
}

int model_cuda_download(ModelCuda *mc, float *params, float *grads, float *velocity)
{
    if (kept_error(mc) < 0)   /* a failed step: never save half-updated weights */
        return -1;
    size_t bytes = sizeof(float) * mc->g->param_floats;
    cudaStream_t s = mc->nn.stream;
    if (params)
        CHECK(cudaMemcpyAsync(params, mc->params, bytes, cudaMemcpyDeviceToHost, s),
              "copying parameters to the host");
    if (grads)
        CHECK(cudaMemcpyAsync(grads, mc->grads, bytes, cudaMemcpyDeviceToHost, s),
              "copying gradients to the host");
    if (velocity)
        CHECK(cudaMemcpyAsync(velocity, mc->velocity, bytes, cudaMemcpyDeviceToHost, s),
              "copying momentum buffers to the host");
    CHECK(cudaStreamSynchronize(s), "copying the model to the host");
    return 0;
}

double model_cuda_busy_seconds(ModelCuda *mc)
{
    settle_step(mc, &mc->steps[0]);
    settle_step(mc, &mc->steps[1]);
    return mc->busy;
}
